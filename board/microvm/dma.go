//go:build tamago && amd64

package microvm

import (
	"sync"

	"github.com/usbarmory/tamago/dma"
)

var (
	dmaOnce sync.Once
	dmaMem  []byte
)

// DMA returns the memory for the network driver's arena (rings and packet
// pool): 48 MiB of tamago's DMA region, outside the Go heap, page aligned.
// Every call returns the same region.
func DMA() []byte {
	dmaOnce.Do(func() {
		_, dmaMem = dma.Reserve(dmaArena, 4096)
	})
	return dmaMem
}
