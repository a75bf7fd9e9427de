package virtio

import (
	"encoding/binary"
	"testing"

	"github.com/tamanet/tamanet/alloc"
	"github.com/tamanet/tamanet/nic"
	"github.com/tamanet/tamanet/nic/nictest"
	"github.com/tamanet/tamanet/nic/virtio/virtiotest"
)

// countRegs counts register accesses on the way to the model.
type countRegs struct {
	Regs
	n int
}

func (r *countRegs) Read32(off uint32) uint32 { r.n++; return r.Regs.Read32(off) }
func (r *countRegs) Write32(off, v uint32)    { r.n++; r.Regs.Write32(off, v) }
func (r *countRegs) Read8(off uint32) uint8   { r.n++; return r.Regs.Read8(off) }
func (r *countRegs) Read16(off uint32) uint16 { r.n++; return r.Regs.Read16(off) }

// exchange sends n frames from a to b and returns the sequence numbers b
// received, after refilling b's ring.
func exchange(t *testing.T, a, b *side, n int, first uint32) []uint32 {
	t.Helper()
	var got []uint32
	for i := 0; i < n; i++ {
		send(t, a, 64, first+uint32(i))
	}
	a.drv.TxKick()
	a.drv.Reclaim()
	recvAll(b, func(rb *alloc.Buffer) {
		got = append(got, binary.BigEndian.Uint32(rb.Bytes()[14:]))
	})
	return got
}

// recovered checks the driver counted exactly resets recoveries, the latest
// for reason, and the model saw as many resets.
func recovered(t *testing.T, s *side, resets uint64, reason string) {
	t.Helper()
	var st nic.Stats
	s.drv.Stats(&st)
	if st.Resets != resets || st.ResetReason != reason {
		t.Fatalf("resets %d (%q), want %d (%q)", st.Resets, st.ResetReason, resets, reason)
	}
	if ds := s.dev.Stats(); ds.Resets != resets {
		t.Fatalf("model saw %d resets, driver counted %d", ds.Resets, resets)
	}
}

// TestMaintainHealthy: on a working device Maintain reads one register and
// resets nothing.
func TestMaintainHealthy(t *testing.T) {
	a, b := pair(t, Config{RxRing: 64, TxRing: 64})
	cr := &countRegs{Regs: b.dev}
	b.drv.regs = cr
	if got := exchange(t, a, b, 10, 0); len(got) != 10 {
		t.Fatalf("received %d of 10", len(got))
	}
	cr.n = 0
	for i := 0; i < 1000; i++ {
		if b.drv.Maintain() {
			t.Fatal("reset a healthy device")
		}
	}
	if cr.n != 1000 {
		t.Fatalf("%d register accesses in 1000 Maintain calls, want one each", cr.n)
	}
	recovered(t, b, 0, "")
}

// TestMaintainAllocs: Maintain on a healthy device allocates nothing.
func TestMaintainAllocs(t *testing.T) {
	a, b := pair(t, Config{RxRing: 64, TxRing: 64})
	if got := exchange(t, a, b, 10, 0); len(got) != 10 {
		t.Fatalf("received %d of 10", len(got))
	}
	resets := 0
	nictest.NoAllocs(t, nictest.MinRuns, "Maintain on a healthy device", func() {
		if b.drv.Maintain() {
			resets++
		}
	})
	if resets != 0 {
		t.Fatalf("%d resets of a healthy device", resets)
	}
}

// TestNeedsResetRecovery: a device that sets DEVICE_NEEDS_RESET stops
// working both queues; Maintain resets it, every buffer it held is back in
// the pool, and after the refill traffic flows both ways again.
func TestNeedsResetRecovery(t *testing.T) {
	a, b := pair(t, Config{RxRing: 64, TxRing: 64})
	baseA, baseB := a.pool.InUse(), b.pool.InUse()
	if got := exchange(t, a, b, 20, 0); len(got) != 20 {
		t.Fatalf("received %d of 20 before", len(got))
	}
	b.dev.RaiseNeedsReset()
	if s := b.drv.AckInterrupt(); s&2 == 0 {
		t.Fatalf("interrupt status %#x: no configuration change", s)
	}
	if n := b.dev.Stats().NeedsResets; n != 1 {
		t.Fatalf("model counted %d needs-reset events, want 1", n)
	}
	// b neither receives nor transmits now: a's frames wait in its
	// backlog, b's own transmit stays posted.
	if got := exchange(t, a, b, 5, 100); len(got) != 0 {
		t.Fatalf("a device that needs a reset delivered %d frames", len(got))
	}
	send(t, b, 64, 7)
	b.drv.TxKick()
	if b.drv.Reclaim() != 0 || b.drv.TxFree() != 63 {
		t.Fatal("a device that needs a reset completed a transmit")
	}
	if !b.drv.Maintain() {
		t.Fatal("Maintain did not reset a device that needs it")
	}
	recovered(t, b, 1, "device_needs_reset")
	// The device owns nothing now: the 64 rx buffers and the frame
	// waiting to go out are the pool's again.
	if b.pool.InUse() != 0 || b.drv.TxFree() != 64 {
		t.Fatalf("after reset: pool in use %d, tx free %d; want 0 and 64", b.pool.InUse(), b.drv.TxFree())
	}
	if b.drv.Maintain() {
		t.Fatal("Maintain reset again without cause")
	}
	b.drv.Refill()
	b.drv.RxKick()
	if got := exchange(t, a, b, 30, 200); len(got) != 30 || got[0] != 200 || got[29] != 229 {
		t.Fatalf("after reset a->b received %v", got)
	}
	if got := exchange(t, b, a, 30, 300); len(got) != 30 || got[0] != 300 || got[29] != 329 {
		t.Fatalf("after reset b->a received %v", got)
	}
	atBaseline(t, a, b, baseA, baseB)
}

// TestWedgedIndexRecovery: a used index that stays out of range (more
// completions than descriptors outstanding) is a BadIndex episode; seen on
// two Maintain calls in a row, it is a wedged ring, reset and rebuilt.
func TestWedgedIndexRecovery(t *testing.T) {
	for _, c := range []struct {
		name   string
		queue  int
		reason string
	}{{"rx", 0, "rx_used_index"}, {"tx", 1, "tx_used_index"}} {
		t.Run(c.name, func(t *testing.T) {
			a, b := pair(t, Config{RxRing: 64, TxRing: 64})
			baseB := b.pool.InUse()
			s := b
			if c.queue == 1 {
				s = a
			}
			s.dev.ForgeUsed(c.queue, 0x8000, true)
			if n := s.dev.Stats().Forged; n != 1 {
				t.Fatalf("model counted %d forged indices, want 1", n)
			}
			got := exchange(t, a, b, 10, 0)
			// A wedged rx index delivers nothing; with a wedged tx
			// index the frames go out but none is reclaimed.
			if c.queue == 0 && len(got) != 0 || c.queue == 1 && (len(got) != 10 || a.drv.TxFree() != 54) {
				t.Fatalf("%d frames delivered, %d tx slots free under a wedged index", len(got), a.drv.TxFree())
			}
			var st nic.Stats
			s.drv.Stats(&st)
			r := &st.Rx
			if c.queue == 1 {
				r = &st.Tx
			}
			if r.Drops[nic.BadIndex] != 1 {
				t.Fatalf("drops %v, want one bad index episode", r.Drops)
			}
			if s.drv.Maintain() {
				t.Fatal("reset on the first sight of a bad index")
			}
			if !s.drv.Maintain() {
				t.Fatal("no reset on a used index that stayed out of range")
			}
			recovered(t, s, 1, c.reason)
			s.drv.Refill()
			s.drv.RxKick()
			if got := exchange(t, a, b, 20, 100); len(got) != 20 || got[0] != 100 {
				t.Fatalf("after reset received %v", got)
			}
			if got := exchange(t, b, a, 20, 200); len(got) != 20 || got[0] != 200 {
				t.Fatalf("after reset b->a received %v", got)
			}
			if b.pool.InUse() != baseB {
				t.Fatalf("pool in use %d, baseline %d", b.pool.InUse(), baseB)
			}
		})
	}
}

// TestTransientBadIndex: an index forged once, which the device's next
// publication corrects, costs one BadIndex and no reset.
func TestTransientBadIndex(t *testing.T) {
	a, b := pair(t, Config{RxRing: 64, TxRing: 64})
	b.dev.ForgeUsed(0, 1000, false)
	if b.drv.Receive() != nil {
		t.Fatal("delivered under a forged index")
	}
	if b.drv.Maintain() {
		t.Fatal("reset on the first sight of a bad index")
	}
	if got := exchange(t, a, b, 10, 0); len(got) != 10 {
		t.Fatalf("received %d of 10 after the index came back", len(got))
	}
	if b.drv.Maintain() || b.drv.Maintain() {
		t.Fatal("reset after the index came back")
	}
	var st nic.Stats
	b.drv.Stats(&st)
	if st.Rx.Drops[nic.BadIndex] != 1 || st.Resets != 0 {
		t.Fatalf("bad index %d, resets %d; want 1 and 0", st.Rx.Drops[nic.BadIndex], st.Resets)
	}
}

// TestResetUnderFaults resets the receiver every few batches while frames
// flow with injected faults: every reset is counted, no buffer leaks, and
// what arrives is what was sent, in order, each at most once (frames in
// flight at a reset are lost).
func TestResetUnderFaults(t *testing.T) {
	a, b := pair(t, Config{RxRing: 64, TxRing: 64})
	baseA, baseB := a.pool.InUse(), b.pool.InUse()
	b.dev.SetFaults(virtiotest.Faults{Seed: 5, BadLength: 0.02, BadID: 0.05})
	a.dev.SetFaults(virtiotest.Faults{Seed: 6, BadID: 0.05})
	var got []uint32
	seq, resets := uint32(0), uint64(0)
	for round := 0; round < 100; round++ {
		for i := 0; i < 30; i++ {
			send(t, a, 64, seq)
			seq++
		}
		a.drv.TxKick()
		a.drv.Reclaim()
		switch round % 7 {
		case 3:
			b.dev.RaiseNeedsReset()
		case 5:
			a.dev.RaiseNeedsReset()
		}
		for _, s := range []*side{a, b} {
			if s.drv.Maintain() {
				s.drv.Refill()
				s.drv.RxKick()
				resets++
			}
		}
		recvAll(b, func(rb *alloc.Buffer) {
			got = append(got, binary.BigEndian.Uint32(rb.Bytes()[14:]))
		})
	}
	if resets != 28 {
		t.Fatalf("%d resets, want 28", resets)
	}
	for i := 1; i < len(got); i++ {
		if got[i] <= got[i-1] {
			t.Fatalf("frame %d after %d: out of order or twice", got[i], got[i-1])
		}
	}
	t.Logf("received %d of %d frames across %d resets", len(got), seq, resets)
	// A reset loses at most the 30 frames of its round (on a's tx ring
	// or in b's rx ring); a bad length loses its frame.
	if lost := uint64(seq) - uint64(len(got)); lost > resets*30+b.dev.Stats().BadLengths {
		t.Fatalf("received %d of %d: more lost than %d resets and the bad lengths explain", len(got), seq, resets)
	}
	b.dev.SetFaults(virtiotest.Faults{})
	a.dev.SetFaults(virtiotest.Faults{})
	a.drv.Maintain() // background work the model held back
	a.drv.Reclaim()
	recvAll(b, nil)
	atBaseline(t, a, b, baseA, baseB)
	closeEmpty(t, a, b)
}

// TestTxStallRecovery: a device that stops completing transmits without
// saying so (as QEMU's does once it marked itself broken) is reset after
// txStallLimit Maintain calls; a slow one, or one whose completions wait
// for the driver, is not.
func TestTxStallRecovery(t *testing.T) {
	a, b := pair(t, Config{RxRing: 64, TxRing: 64})
	a.dev.Stall()
	for i := 0; i < 5; i++ {
		send(t, a, 64, uint32(i))
	}
	a.drv.TxKick()
	for i := 1; i < txStallLimit; i++ {
		if a.drv.Maintain() {
			t.Fatalf("reset after %d calls, limit %d", i, txStallLimit)
		}
	}
	// The device completes one: the count starts again.
	a.dev.Unstall()
	a.dev.Stall()
	send(t, a, 64, 5)
	a.drv.TxKick()
	if a.drv.TxFree() != 58 {
		t.Fatalf("%d tx slots free, want 58 (one completion not yet taken)", a.drv.TxFree())
	}
	for i := 0; i < 2*txStallLimit; i++ {
		if a.drv.Maintain() {
			t.Fatal("reset while a completion waited for the driver")
		}
	}
	if a.drv.Reclaim() != 5 {
		t.Fatal("completions not reclaimed")
	}
	send(t, a, 64, 6)
	a.drv.TxKick()
	for i := 1; i < txStallLimit; i++ {
		if a.drv.Maintain() {
			t.Fatalf("reset after %d calls, limit %d", i, txStallLimit)
		}
	}
	if !a.drv.Maintain() {
		t.Fatal("no reset of a transmit ring stalled for the limit")
	}
	recovered(t, a, 1, "tx_stalled")
	a.dev.Unstall()
	a.drv.Refill()
	a.drv.RxKick()
	recvAll(b, nil)
	if got := exchange(t, a, b, 10, 100); len(got) != 10 || got[0] != 100 {
		t.Fatalf("after reset received %v", got)
	}
}
