//go:build tamago && amd64

package microvm

import (
	_ "unsafe"
)

// Memory layout inside the 1 GiB QEMU gives with "-m 1G". The amd64 package
// fixes the start of Go's RAM at 0x10000000 (runtime/goos.RamStart).
const (
	ramStart = 0x10000000
	// RAMSize is the memory given to the Go runtime (code, heap, stacks).
	RAMSize = dmaStart - ramStart

	dmaStart = 0x3c000000
	// DMASize is tamago's global DMA region, right after Go's RAM and up
	// to the end of the 1 GiB of guest RAM.
	DMASize = 0x04000000 // 64 MiB

	// dmaArena is the part of the DMA region New reserves for the
	// network driver; the rest stays with tamago's dma package for its
	// own small allocations.
	dmaArena = 48 << 20
)

//go:linkname ramSize runtime/goos.RamSize
var ramSize uint = RAMSize
