//go:build tamago && arm

package imx6ul

import (
	"github.com/usbarmory/tamago/dma"
	"github.com/usbarmory/tamago/soc/nxp/imx6ul"
)

// Short-descriptor first-level section attributes (ARM Architecture
// Reference Manual ARMv7-A/R, B3.5.1 "Short-descriptor translation table
// format descriptors", B3.8.2 "Short-descriptor format memory region
// attributes, without TEX remap"): TEX=0b001, C=0, B=0 is Normal memory,
// outer and inner non-cacheable. Unlike tamago's default for memory outside
// Go's RAM (Strongly-ordered), Normal memory allows unaligned accesses,
// which the network stack makes on packet bytes, and buffers writes;
// being non-cacheable, it needs no cache maintenance around DMA.
const (
	sectionType     = 1 << 1  // section descriptor
	sectionXN       = 1 << 4  // execute never
	sectionAPPriv   = 1 << 10 // AP[1:0] = 0b01: privileged read/write
	sectionTEXShift = 12
	normalNC        = 0b001 << sectionTEXShift

	dmaSectionFlags = sectionType | sectionXN | sectionAPPriv | normalNC
)

// initDMA maps the DMA region normal non-cacheable and makes it tamago's
// global DMA region in place of the on-chip RAM. The MMU is on from
// runtime start (imx6ul.Init, in Hwinit1); the region is outside Go's RAM.
func initDMA() {
	imx6ul.ARM.ConfigureMMU(DMAStart, DMAStart+DMASize, 0, dmaSectionFlags)
	if err := dma.Init(DMAStart, DMASize); err != nil {
		panic(err)
	}
}

// init sets the memory and the idle hook up at import, as tamago's boards
// initialise the SoC: they are the runtime's, not the firmware's, and
// cmd/baseline, which runs tamago's own ENET driver, relies on them too.
func init() {
	initDMA()
	enableHaltIdle()
}
