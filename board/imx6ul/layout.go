package imx6ul

// Memory layout (i.MX6ULL RM 2.2 "ARM platform memory map": MMDC, the DDR
// controller, maps external RAM from 0x80000000).
const (
	// RAMStart is the start of external RAM and of Go's RAM
	// (tamago's runtime/goos.RamStart on this SoC).
	RAMStart = 0x80000000
	// RAMSize is Go's RAM: everything below DMAStart.
	RAMSize = DMAStart - RAMStart

	// DMAStart is the start of the DMA region, the top 32 MiB of 512 MiB
	// of DDR. It is 1 MiB aligned: the MMU maps it in 1 MiB sections.
	DMAStart = 0x9e000000
	// DMASize is the size of the DMA region.
	DMASize = 32 << 20

	// ArenaSize is the part of the DMA region DMA hands the network
	// driver (rings and packet pool); the rest stays with tamago's dma
	// package for its own allocations.
	ArenaSize = 24 << 20
)
