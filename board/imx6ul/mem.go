//go:build tamago && arm && linkramsize

package imx6ul

import (
	_ "unsafe"
)

// ramSize is the memory given to the Go runtime (code, heap, stacks): all
// of the DDR below the DMA region. tamago's board packages define it only
// without the linkramsize tag.
//
//go:linkname ramSize runtime/goos.RamSize
var ramSize uint = RAMSize
