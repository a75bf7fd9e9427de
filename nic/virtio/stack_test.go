package virtio_test

// Host integration of reset and recovery: two gVisor stacks back to back
// through two virtio-net device models, driven by the real driver, whose
// devices ask for a reset or wedge a ring in the middle of TCP transfers.

import (
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	"github.com/tamanet/tamanet/alloc"
	"github.com/tamanet/tamanet/nic"
	"github.com/tamanet/tamanet/nic/virtio"
	"github.com/tamanet/tamanet/nic/virtio/virtiotest"
	"github.com/tamanet/tamanet/stack"
	"github.com/tamanet/tamanet/stack/stacktest"
)

type vnode struct {
	pool     *alloc.Pool
	model    *virtiotest.Device
	drv      *virtio.Driver
	s        *stack.Stack
	baseline int
}

func newVnode(t *testing.T, mac [6]byte, addr netip.Prefix, gw netip.Addr) *vnode {
	t.Helper()
	pool, model, drv := stacktest.Virtio(t, virtiotest.Options{MAC: mac})
	s, err := stack.New(drv, stack.Config{Addr: addr, Gateway: gw})
	if err != nil {
		t.Fatal(err)
	}
	model.SetInterrupt(s.Wake)
	return &vnode{pool: pool, model: model, drv: drv, s: s, baseline: pool.InUse()}
}

func (n *vnode) stats() nic.Stats {
	var st nic.Stats
	n.drv.Stats(&st)
	return st
}

// TestStacksSurviveReset runs downloads and uploads between two stacks
// while, one after the other, B's device sets DEVICE_NEEDS_RESET, A's
// device wedges its tx used index, B's its rx used index, and A's device
// asks for a reset. The runners' Maintain must recover each (counted, with
// its reason, visible in the stack's stats JSON), the transfers must
// complete byte-exact (SHA-256 both ways), and afterwards both pools must be
// back at their baseline.
func TestStacksSurviveReset(t *testing.T) {
	a := newVnode(t, stacktest.MACA, stacktest.AddrA, stacktest.AddrB.Addr())
	b := newVnode(t, stacktest.MACB, stacktest.AddrB, stacktest.AddrA.Addr())
	virtiotest.Pipe(a.model, b.model)
	a.s.Start()
	b.s.Start()
	t.Cleanup(func() {
		a.s.Close()
		b.s.Close()
		a.drv.Close()
		b.drv.Close()
	})
	stacktest.StartServices(t, b.s)

	type event struct {
		name   string
		on     *vnode
		do     func()
		reason string
	}
	events := []event{
		{"B needs reset", b, b.model.RaiseNeedsReset, "device_needs_reset"},
		{"A tx index wedged", a, func() { a.model.ForgeUsed(1, 0x8000, true) }, "tx_used_index"},
		{"B rx index wedged", b, func() { b.model.ForgeUsed(0, 0x8000, true) }, "rx_used_index"},
		{"A needs reset", a, a.model.RaiseNeedsReset, "device_needs_reset"},
	}
	size := 24 << 20
	if testing.Short() || raceEnabled {
		size = 12 << 20
	}
	// One event every 1500 frames B receives, each once the previous
	// one was recovered from. Transfer rounds run until all have fired,
	// then one more.
	done, fin := make(chan struct{}), make(chan struct{})
	fired := 0
	var failure string
	stop := func() {
		select {
		case <-done:
		default:
			close(done)
		}
		<-fin
	}
	t.Cleanup(stop)
	go func() {
		defer close(fin)
		for i, e := range events {
			next := b.stats().Rx.Packets + 1500
			for b.stats().Rx.Packets < next {
				select {
				case <-done:
					return
				case <-time.After(time.Millisecond):
				}
			}
			before := e.on.stats().Resets
			e.do()
			deadline := time.Now().Add(5 * time.Second)
			for e.on.stats().Resets == before {
				if time.Now().After(deadline) {
					failure = e.name + ": no recovery within 5 s"
					return
				}
				time.Sleep(time.Millisecond)
			}
			if r := e.on.stats().ResetReason; r != e.reason {
				failure = e.name + ": reset reason " + r + ", want " + e.reason
				return
			}
			fired = i + 1
		}
	}()

	for round, last := 0, false; !last; round++ {
		select {
		case <-fin:
			last = true
		default:
			if round == 8 {
				stop()
				t.Fatalf("%d of %d events after %d transfer rounds", fired, len(events), round)
			}
		}
		stacktest.Download(t, a.s, stacktest.AddrB.Addr().String()+":"+stacktest.PortGen, size)
		stacktest.Upload(t, a.s, stacktest.AddrB.Addr().String()+":"+stacktest.PortSHA, size)
	}
	<-fin
	if failure != "" {
		t.Fatal(failure)
	}
	if fired != len(events) {
		t.Fatalf("%d of %d events fired", fired, len(events))
	}
	sa, sb := a.stats(), b.stats()
	t.Logf("A: %d resets (last %s), tx drops %v; B: %d resets (last %s), rx drops %v",
		sa.Resets, sa.ResetReason, sa.Tx.Drops, sb.Resets, sb.ResetReason, sb.Rx.Drops)
	if sa.Resets != 2 || sb.Resets != 2 {
		t.Fatalf("resets A %d, B %d; want 2 each", sa.Resets, sb.Resets)
	}
	if ma, mb := a.model.Stats(), b.model.Stats(); ma.Resets != 2 || mb.Resets != 2 {
		t.Fatalf("models saw %d and %d resets, want 2 each", ma.Resets, mb.Resets)
	}
	// /stats shows them: the stack's stats object carries the NIC's.
	js, err := json.Marshal(b.s.Stats())
	if err != nil {
		t.Fatal(err)
	}
	var shown struct {
		NIC struct {
			Resets      uint64 `json:"resets"`
			ResetReason string `json:"reset_reason"`
		} `json:"nic"`
	}
	if err := json.Unmarshal(js, &shown); err != nil || shown.NIC.Resets != 2 || shown.NIC.ResetReason != "rx_used_index" {
		t.Fatalf("stats JSON nic %+v (%v)", shown.NIC, err)
	}
	stacktest.CheckQuiet(t,
		stacktest.Quiet{Name: "A", Pool: a.pool, Baseline: a.baseline, Wake: a.s.Wake},
		stacktest.Quiet{Name: "B", Pool: b.pool, Baseline: b.baseline, Wake: b.s.Wake})
}
