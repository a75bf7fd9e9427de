//go:build tamago && amd64

package microvm

import (
	"errors"
	"fmt"

	"github.com/usbarmory/tamago/dma"

	"github.com/tamanet/tamanet/alloc"
	"github.com/tamanet/tamanet/internal/mmio"
	"github.com/tamanet/tamanet/nic/virtio"
)

// Board is the microvm machine as the firmware uses it: its DMA memory
// and its one virtio-net device. The console, the clock and the idle hook
// are the runtime's and are set up when the package is imported.
type Board struct {
	dma []byte
	nic *NIC
	// NoOffloads makes NIC refuse every virtio-net offload
	// (virtio.Config.NoOffloads): the OFFLOADS=off build.
	NoOffloads bool
}

// New returns the board, with dmaArena bytes of tamago's DMA region
// reserved for the network driver's arena. Call it once: the region has
// room for one.
func New() *Board {
	_, mem := dma.Reserve(dmaArena, 4096)
	return &Board{dma: mem}
}

// Name returns "microvm".
func (b *Board) Name() string { return "microvm" }

// DMA returns the memory for the network driver's arena (rings and packet
// pool): 48 MiB of tamago's DMA region, outside the Go heap, page aligned.
func (b *Board) DMA() []byte { return b.dma }

// Info returns board facts for the firmware's index page and /stats: the
// clock source and the TSC's rate, and whether the CPU halts when idle.
func (b *Board) Info() map[string]string {
	idle := "spin"
	if haltIdleOn {
		idle = "hlt"
	}
	return map[string]string{
		"clock":   ClockSource,
		"tsc_mhz": fmt.Sprintf("%.1f", float64(tscHz)/1e6),
		"idle":    idle,
	}
}

// NIC brings up the virtio-net device at VirtioNet0Base with station
// address mac, rings from arena and receive buffers from pool. The address
// is the one the driver uses whatever the device offers (see
// virtio.Config.MAC). The driver is polled until NIC.EnableInterrupt. The
// board has one device, so NIC fails after it succeeded once.
func (b *Board) NIC(mac [6]byte, arena *alloc.Arena, pool *alloc.Pool) (*NIC, error) {
	if b.nic != nil {
		return nil, errors.New("microvm: the virtio-net device is already up")
	}
	d, err := virtio.New(mmio.New(VirtioNet0Base), arena, pool, virtio.Config{MAC: mac, NoOffloads: b.NoOffloads})
	if err != nil {
		return nil, fmt.Errorf("microvm: virtio-net at %#x: %w", VirtioNet0Base, err)
	}
	b.nic = &NIC{Driver: d}
	return b.nic, nil
}
