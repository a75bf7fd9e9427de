package stacktest

import (
	"testing"

	"github.com/tamanet/tamanet/alloc"
	"github.com/tamanet/tamanet/nic/virtio"
	"github.com/tamanet/tamanet/nic/virtio/virtiotest"
)

// Virtio returns one side of a host test's link: a 1024-buffer pool in a
// DMA arena, a virtio-net device model with opts, and the virtio driver
// over it, which has posted its receive ring. Nothing is wired, started
// or closed: the caller pipes the model to a peer or a tap, puts a stack
// on the driver and closes the driver after the stack.
func Virtio(tb testing.TB, opts virtiotest.Options) (*alloc.Pool, *virtiotest.Device, *virtio.Driver) {
	tb.Helper()
	arena := alloc.NewArena(make([]byte, 6<<20))
	pool, err := arena.Pool(alloc.Config{Count: 1024})
	if err != nil {
		tb.Fatal(err)
	}
	model := virtiotest.New(arena.Memory(), opts)
	drv, err := virtio.New(model, arena, pool, virtio.Config{})
	if err != nil {
		tb.Fatal(err)
	}
	return pool, model, drv
}
