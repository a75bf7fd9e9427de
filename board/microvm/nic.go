//go:build tamago && amd64

package microvm

import (
	"fmt"

	"github.com/tamanet/tamanet/alloc"
	"github.com/tamanet/tamanet/internal/mmio"
	"github.com/tamanet/tamanet/nic"
	"github.com/tamanet/tamanet/nic/virtio"
)

// NIC brings up the virtio-net device at VirtioNet0Base: its rings come
// from arena and its receive buffers from pool. The driver is polled; the
// device's interrupt (VirtioNet0IRQ) stays masked unless EnableNICInterrupt
// is called.
func NIC(arena *alloc.Arena, pool *alloc.Pool) (nic.Device, error) {
	d, err := virtio.New(mmio.New(VirtioNet0Base), arena, pool, virtio.Config{})
	if err != nil {
		return nil, fmt.Errorf("microvm: virtio-net at %#x: %w", VirtioNet0Base, err)
	}
	nicDriver = d
	return d, nil
}
