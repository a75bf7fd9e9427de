package stacktest

import (
	"testing"

	"github.com/tamanet/tamanet/alloc"
	"github.com/tamanet/tamanet/nic/enet"
	"github.com/tamanet/tamanet/nic/enet/enettest"
	"github.com/tamanet/tamanet/nic/virtio"
	"github.com/tamanet/tamanet/nic/virtio/virtiotest"
)

// The node builders: the construction below the stack, written once.
// DMA memory and a pool of PoolCount buffers in it (an arena), a device
// model resolving addresses over that memory, and the real driver over the
// model, which has posted its receive ring. Nothing is wired, started or
// closed: the caller pipes the model to a peer or a tap, puts a stack or an
// endpoint on the driver (pool.InUse() right then is the idle baseline) and
// closes the driver after it.

// PoolCount is the number of 2 KiB buffers in a builder's pool.
const PoolCount = 1024

// arenaSize holds the pool and both drivers' largest rings.
const arenaSize = 6 << 20

// newPool is the DMA memory and the pool carved from its start.
func newPool(tb testing.TB) (*alloc.Arena, *alloc.Pool) {
	tb.Helper()
	arena := alloc.NewArena(make([]byte, arenaSize))
	pool, err := arena.Pool(alloc.Config{Count: PoolCount})
	if err != nil {
		tb.Fatal(err)
	}
	return arena, pool
}

// Virtio returns one side of a host test's link on virtio-net: the pool,
// a virtio-net device model with opts, and the virtio driver over it with
// its default configuration.
func Virtio(tb testing.TB, opts virtiotest.Options) (*alloc.Pool, *virtiotest.Device, *virtio.Driver) {
	tb.Helper()
	arena, pool := newPool(tb)
	model := virtiotest.New(arena.Memory(), opts)
	drv, err := virtio.New(model, arena, pool, virtio.Config{})
	if err != nil {
		tb.Fatal(err)
	}
	return pool, model, drv
}

// ENET returns one side of a host test's link on the ENET: the pool, an
// ENET model with opts and the ENET driver over it configured with cfg.
// opts.TxAlign should be what the driver aligns to (enet.DefaultTxAlign
// unless cfg says otherwise), so the model checks it.
func ENET(tb testing.TB, opts enettest.Options, cfg enet.Config) (*alloc.Pool, *enettest.Device, *enet.Driver) {
	tb.Helper()
	arena, pool := newPool(tb)
	model := enettest.New(arena.Memory(), opts)
	drv, err := enet.New(model, arena, pool, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return pool, model, drv
}
