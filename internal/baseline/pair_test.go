package baseline

import (
	"net/netip"
	"testing"

	"github.com/tamanet/tamanet/nic/virtio"
	"github.com/tamanet/tamanet/nic/virtio/virtiotest"
	"github.com/tamanet/tamanet/stack"
	"github.com/tamanet/tamanet/stack/stacktest"
)

// node is what the benchmarks need of either stack.
type node = stacktest.Node

// pair is two stacks back to back, 10.0.0.1 (a) and 10.0.0.2 (b).
type pair struct {
	a, b node
	// frames returns the frames both devices transmitted so far.
	frames func() uint64
	// drops returns frames the wire or a receive path dropped.
	drops func() uint64
}

var (
	addrA, addrB = stacktest.AddrA, stacktest.AddrB
	macA, macB   = stacktest.MACA, stacktest.MACB
)

// variants are the paths compared, by sub-benchmark name.
var variants = []struct {
	name string
	make func(testing.TB) *pair
}{
	{"tamanet", tamanetPair},
	{"channel", func(tb testing.TB) *pair { return channelPair(tb, TxGoroutine) }},
	{"channel-notify", func(tb testing.TB) *pair { return channelPair(tb, TxNotify) }},
}

// tamanetPair wires two tamanet stacks through two virtio-net device models
// driven by the virtio driver, as stack's integration tests do.
func tamanetPair(tb testing.TB) *pair {
	type side struct {
		model *virtiotest.Device
		drv   *virtio.Driver
		s     *stack.Stack
	}
	mk := func(mac [6]byte, addr netip.Prefix) side {
		_, model, drv := stacktest.Virtio(tb, virtiotest.Options{MAC: mac})
		s, err := stack.New(drv, stack.Config{Addr: addr})
		if err != nil {
			tb.Fatal(err)
		}
		model.SetInterrupt(s.Wake)
		return side{model, drv, s}
	}
	a, b := mk(macA, addrA), mk(macB, addrB)
	virtiotest.Pipe(a.model, b.model)
	a.s.Start()
	b.s.Start()
	tb.Cleanup(func() {
		a.s.Close()
		b.s.Close()
		a.drv.Close()
		b.drv.Close()
	})
	return &pair{
		a: a.s, b: b.s,
		frames: func() uint64 { return a.model.Stats().TxFrames + b.model.Stats().TxFrames },
		drops: func() uint64 {
			sa, sb := a.model.Stats(), b.model.Stats()
			return sa.BacklogDrops + sb.BacklogDrops
		},
	}
}

// channelPair wires two baseline stacks (channel endpoint + glue) through
// two simulated TamaGo ENET devices.
func channelPair(tb testing.TB, mode TxMode) *pair {
	mk := func(mac [6]byte, addr netip.Prefix) (*Stack, *simENET) {
		dev := newSimENET()
		s, err := New(dev, Config{Addr: addr, MAC: mac[:], Tx: mode, Wait: dev.wait})
		if err != nil {
			tb.Fatal(err)
		}
		return s, dev
	}
	a, da := mk(macA, addrA)
	b, db := mk(macB, addrB)
	simPipe(da, db)
	a.Start()
	b.Start()
	tb.Cleanup(func() {
		a.Close()
		b.Close()
	})
	return &pair{
		a: a, b: b,
		frames: func() uint64 { return da.frames.Load() + db.frames.Load() },
		drops:  func() uint64 { return da.drops.Load() + db.drops.Load() },
	}
}
