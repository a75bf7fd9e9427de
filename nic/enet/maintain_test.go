package enet_test

// Untrusted completions and recovery: the model forges descriptors, wedges
// a ring, loses kicks and raises bus errors; the driver must count each,
// never take a buffer the MAC may still hold, and come back by itself
// through Maintain with every buffer accounted for.

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/tamanet/tamanet/alloc"
	"github.com/tamanet/tamanet/nic"
	"github.com/tamanet/tamanet/nic/enet"
	"github.com/tamanet/tamanet/nic/enet/enettest"
	"github.com/tamanet/tamanet/nic/enet/internal/bd"
)

// desc reads the control word of descriptor i of the ring at RDSR (tx
// false) or TDSR.
func desc(r *rig, tx bool, i int) uint32 {
	reg := uint32(enet.RegRDSR)
	if tx {
		reg = enet.RegTDSR
	}
	off := int(r.dev.Reg(reg) - uint32(alloc.AddrOf(r.mem))) // 32-bit bus addresses, as the model resolves them
	return bd.Load(r.mem, off+i*bd.Size)
}

// collect records every frame the model sends.
func collect(r *rig) *[][]byte {
	var out [][]byte
	r.dev.SetOutput(func(f []byte) { out = append(out, bytes.Clone(f)) })
	return &out
}

// receiveOne delivers f and checks the driver hands up exactly f.
func receiveOne(t *testing.T, r *rig, f []byte) {
	t.Helper()
	r.dev.Deliver(f)
	b := r.drv.Receive()
	if b == nil {
		t.Fatal("no frame received")
	}
	if !bytes.Equal(b.Bytes(), f) {
		t.Fatalf("received %d bytes, not the %d delivered", b.Len(), len(f))
	}
	r.pool.Put(b)
	r.drv.Refill()
	r.drv.RxKick()
}

// deliverN delivers n frames (numbered from 2, after receiveOne's first)
// and returns them.
func deliverN(r *rig, n int, rng *rand.Rand) [][]byte {
	sent := make([][]byte, n)
	for i := range sent {
		sent[i] = frame(100+i, uint32(2+i), rng)
		r.dev.Deliver(sent[i])
	}
	return sent
}

// receiveAll checks the driver hands up exactly frames, in order, then
// refills and kicks the ring.
func receiveAll(t *testing.T, r *rig, frames [][]byte) {
	t.Helper()
	for i, f := range frames {
		b := r.drv.Receive()
		if b == nil || !bytes.Equal(b.Bytes(), f) {
			t.Fatalf("frame %d of %d not received intact", i, len(frames))
		}
		r.pool.Put(b)
	}
	r.drv.Refill()
	r.drv.RxKick()
}

// sendOne transmits f and checks the model sends exactly f and Reclaim
// frees it.
func sendOne(t *testing.T, r *rig, out *[][]byte, f []byte) {
	t.Helper()
	n := len(*out)
	if err := send(t, r, f); err != nil {
		t.Fatal(err)
	}
	r.drv.TxKick()
	if len(*out) != n+1 || !bytes.Equal((*out)[n], f) {
		t.Fatalf("%d frames sent, want %d, the last one intact", len(*out), n+1)
	}
	if got := r.drv.Reclaim(); got != 1 {
		t.Fatalf("reclaimed %d, want 1", got)
	}
}

// checkReset checks the reset count and reason, that the MAC is programmed
// again, and that the pool is back at its baseline.
func checkReset(t *testing.T, r *rig, resets uint64, reason string) {
	t.Helper()
	s := stats(r)
	if s.Resets != resets || s.ResetReason != reason {
		t.Fatalf("resets %d (%q), want %d (%q)", s.Resets, s.ResetReason, resets, reason)
	}
	mac := r.drv.Info().MAC
	if r.dev.Reg(enet.RegPALR) != uint32(mac[0])<<24|uint32(mac[1])<<16|uint32(mac[2])<<8|uint32(mac[3]) ||
		r.dev.Reg(enet.RegMRBR) == 0 || r.dev.Reg(enet.RegRDSR) == 0 || r.dev.Reg(enet.RegTDSR) == 0 ||
		r.dev.Reg(enet.RegECR)&enet.ECREtherEn == 0 || r.dev.Reg(enet.RegMSCR) == 0 {
		t.Fatalf("MAC not programmed after the reset: PALR %#x MRBR %d RDSR %#x TDSR %#x ECR %#x MSCR %#x",
			r.dev.Reg(enet.RegPALR), r.dev.Reg(enet.RegMRBR), r.dev.Reg(enet.RegRDSR), r.dev.Reg(enet.RegTDSR),
			r.dev.Reg(enet.RegECR), r.dev.Reg(enet.RegMSCR))
	}
	if st := r.pool.Stats(); st.InUse != r.base || st.RefusedPuts != 0 {
		t.Fatalf("pool in use %d, baseline %d, refused puts %d", st.InUse, r.base, st.RefusedPuts)
	}
}

// TestForgedRx: a zeroed entry and an earlier completion written again at
// the receive head are counted (Stale, Duplicate), never handed up, and the
// descriptor goes back to the MAC, which fills it with the next frame.
func TestForgedRx(t *testing.T) {
	r := newRig(t, enettest.Options{}, enet.Config{RxRing: 2})
	rng := rand.New(rand.NewPCG(21, 21))

	r.dev.Forge(false, 0, 0)
	if b := r.drv.Receive(); b != nil {
		t.Fatal("a zeroed descriptor was handed up")
	}
	if s := stats(r); s.Rx.Drops[nic.Stale] != 1 {
		t.Fatalf("rx drops %v", s.Rx.Drops)
	}
	if _, st := bd.Split(desc(r, false, 0)); st&bd.E == 0 {
		t.Fatalf("descriptor 0 not given back to the MAC: status %#x", st)
	}
	receiveOne(t, r, frame(100, 1, rng))
	receiveOne(t, r, frame(200, 2, rng))

	// Slot 0's completion of frame 3 comes back after slot 0 was
	// posted again.
	f3 := frame(300, 3, rng)
	r.dev.Deliver(f3)
	old := desc(r, false, 0)
	if b := r.drv.Receive(); b == nil || !bytes.Equal(b.Bytes(), f3) {
		t.Fatal("frame 3 not received")
	} else {
		r.pool.Put(b)
	}
	receiveOne(t, r, frame(400, 4, rng))
	r.dev.Forge(false, 0, old)
	if b := r.drv.Receive(); b != nil {
		t.Fatal("a duplicate completion was handed up")
	}
	if s := stats(r); s.Rx.Drops[nic.Duplicate] != 1 || s.Rx.Packets != 4 {
		t.Fatalf("rx %+v", s.Rx)
	}
	receiveOne(t, r, frame(500, 5, rng))
	if r.drv.Maintain() {
		t.Fatal("Maintain reset a MAC that recovered")
	}
	if r.pool.InUse() != r.base || stats(r).Resets != 0 {
		t.Fatalf("pool %d, baseline %d", r.pool.InUse(), r.base)
	}
}

// TestForgedTx: a zeroed or duplicate completion at the transmit head does
// not free the buffer (the MAC may still read it); Maintain resets the MAC,
// which takes it back, and transmit resumes.
func TestForgedTx(t *testing.T) {
	for _, dup := range []bool{false, true} {
		r := newRig(t, enettest.Options{}, enet.Config{TxRing: 2})
		out := collect(r)
		rng := rand.New(rand.NewPCG(22, 22))
		sendOne(t, r, out, frame(60, 1, rng))
		sendOne(t, r, out, frame(61, 2, rng))
		old := desc(r, true, 0)

		r.dev.LoseKicks(1) // the next frame stays posted
		if err := send(t, r, frame(62, 3, rng)); err != nil {
			t.Fatal(err)
		}
		r.drv.TxKick()
		w, cause := uint32(0), nic.Stale
		if dup {
			w, cause = old, nic.Duplicate
		}
		r.dev.Forge(true, 0, w)
		if got := r.drv.Reclaim(); got != 0 {
			t.Fatalf("dup %v: reclaimed %d from a forged completion", dup, got)
		}
		if s := stats(r); s.Tx.Drops[cause] != 1 {
			t.Fatalf("dup %v: tx drops %v", dup, s.Tx.Drops)
		}
		if r.pool.InUse() != r.base+1 {
			t.Fatalf("dup %v: pool %d, want the posted frame out too", dup, r.pool.InUse())
		}
		if !r.drv.Maintain() {
			t.Fatalf("dup %v: Maintain did not reset", dup)
		}
		checkReset(t, r, 1, "tx completion untrusted")
		if s := stats(r); s.Tx.Drops[nic.LinkDown] != 1 {
			t.Fatalf("dup %v: tx drops %v", dup, s.Tx.Drops)
		}
		sendOne(t, r, out, frame(63, 4, rng))
		receiveOne(t, r, frame(64, 5, rng))
	}
}

// TestMaintainLostKick: a TDAR write the MAC missed is repeated by the first
// Maintain that sees posted frames make no progress; no reset.
func TestMaintainLostKick(t *testing.T) {
	r := newRig(t, enettest.Options{}, enet.Config{TxRing: 8})
	out := collect(r)
	rng := rand.New(rand.NewPCG(23, 23))
	r.dev.LoseKicks(1)
	f := frame(80, 1, rng)
	if err := send(t, r, f); err != nil {
		t.Fatal(err)
	}
	r.drv.TxKick()
	if len(*out) != 0 || r.drv.Reclaim() != 0 {
		t.Fatal("the lost kick sent the frame")
	}
	if r.drv.Maintain() {
		t.Fatal("Maintain reset for a lost kick")
	}
	if len(*out) != 1 || !bytes.Equal((*out)[0], f) || r.drv.Reclaim() != 1 {
		t.Fatalf("Maintain did not kick again: %d frames sent", len(*out))
	}
	if s := stats(r); s.Resets != 0 || r.dev.Stats().LostKicks != 1 {
		t.Fatalf("resets %d, lost kicks %d", s.Resets, r.dev.Stats().LostKicks)
	}
}

// TestMaintainTxWedged: a transmit ring the MAC stopped working is reset
// after TxTimeout; the posted frames are counted as link-down drops, the
// registers (interrupt mask included) are programmed again, traffic
// resumes. While the link is down nothing is reset.
func TestMaintainTxWedged(t *testing.T) {
	r := newRig(t, enettest.Options{}, enet.Config{TxRing: 8, TxTimeout: 50 * time.Millisecond})
	r.drv.EnableInterrupts(enet.EventRXF)
	out := collect(r)
	rng := rand.New(rand.NewPCG(24, 24))
	r.dev.WedgeTx()
	for i := range 3 {
		if err := send(t, r, frame(70+i, uint32(i), rng)); err != nil {
			t.Fatal(err)
		}
	}
	r.drv.TxKick()
	if r.drv.Maintain() {
		t.Fatal("reset before TxTimeout")
	}
	time.Sleep(60 * time.Millisecond)
	if !r.drv.Maintain() {
		t.Fatal("no reset after TxTimeout")
	}
	checkReset(t, r, 1, "tx timeout")
	if s := stats(r); s.Tx.Drops[nic.LinkDown] != 3 || len(*out) != 0 {
		t.Fatalf("tx drops %v, %d sent", s.Tx.Drops, len(*out))
	}
	if r.dev.Reg(enet.RegEIMR) != enet.EventRXF {
		t.Fatalf("EIMR %#x after the reset", r.dev.Reg(enet.RegEIMR))
	}
	sendOne(t, r, out, frame(90, 9, rng))
	receiveOne(t, r, frame(91, 10, rng))

	// Link down: frames stuck on the ring are not the MAC's fault.
	r.dev.WedgeTx()
	if err := send(t, r, frame(92, 11, rng)); err != nil {
		t.Fatal(err)
	}
	r.drv.TxKick()
	r.dev.SetLink(false)
	r.drv.PollLink()
	r.drv.Maintain()
	time.Sleep(60 * time.Millisecond)
	if r.drv.Maintain() {
		t.Fatal("reset while the link is down")
	}
}

// TestMaintainRxSkipped: the MAC loses its place in the receive ring and
// fills descriptors past the empty head. The driver takes none of them out
// of order; the second Maintain that sees it resets, and frames flow again.
func TestMaintainRxSkipped(t *testing.T) {
	r := newRig(t, enettest.Options{}, enet.Config{RxRing: 8})
	rng := rand.New(rand.NewPCG(25, 25))
	receiveOne(t, r, frame(100, 1, rng))
	if r.drv.Maintain() {
		t.Fatal("reset a healthy MAC")
	}
	r.dev.SkipRx()
	// More frames than the ring holds: the MAC fills the 7 descriptors
	// past the head, passes over the head again and stops; 3 wait.
	sent := deliverN(r, 10, rng)
	if b := r.drv.Receive(); b != nil {
		t.Fatal("a frame was taken past the empty head")
	}
	if r.dev.Backlog() != 3 {
		t.Fatalf("backlog %d, want 3", r.dev.Backlog())
	}
	if r.drv.Maintain() {
		t.Fatal("reset at the first sight")
	}
	if !r.drv.Maintain() {
		t.Fatal("no reset at the second")
	}
	// The 7 frames on the ring went with it; the 3 that waited arrive.
	receiveAll(t, r, sent[7:])
	checkReset(t, r, 1, "rx ring stuck")
	for i := range 10 {
		receiveOne(t, r, frame(100+i, uint32(10+i), rng))
	}
	if r.drv.Maintain() || r.drv.Maintain() {
		t.Fatal("reset while frames flow")
	}
}

// TestMaintainRDAR: a receive side that stopped (RDAR off) with an empty
// descriptor at the head is kicked again by Maintain, without a reset, and
// the frames that waited arrive.
func TestMaintainRDAR(t *testing.T) {
	r := newRig(t, enettest.Options{}, enet.Config{RxRing: 8})
	rng := rand.New(rand.NewPCG(28, 28))
	receiveOne(t, r, frame(100, 1, rng))
	r.drv.Maintain()
	r.dev.StopRx()
	sent := deliverN(r, 3, rng)
	if b := r.drv.Receive(); b != nil || r.dev.Backlog() != 3 {
		t.Fatalf("frames received while RDAR is off (backlog %d)", r.dev.Backlog())
	}
	if r.drv.Maintain() {
		t.Fatal("reset where a kick does")
	}
	receiveAll(t, r, sent)
	if s := stats(r); s.Resets != 0 || r.pool.InUse() != r.base {
		t.Fatalf("resets %d, pool %d of %d", s.Resets, r.pool.InUse(), r.base)
	}
}

// TestMaintainBusErrors: bus errors that come back right after a reset are
// reset again each time, until the MAC runs.
func TestMaintainBusErrors(t *testing.T) {
	r := newRig(t, enettest.Options{}, enet.Config{TxRing: 4})
	out := collect(r)
	rng := rand.New(rand.NewPCG(26, 26))
	r.dev.BusErrors(3)
	if err := send(t, r, frame(60, 1, rng)); err != nil {
		t.Fatal(err)
	}
	r.drv.TxKick() // the fetch fails
	resets := uint64(0)
	for r.drv.Maintain() {
		resets++
		if resets > 5 {
			t.Fatal("resetting without end")
		}
	}
	if resets != 3 || r.dev.Stats().BusErrors != 3 {
		t.Fatalf("%d resets for %d bus errors, want 3", resets, r.dev.Stats().BusErrors)
	}
	checkReset(t, r, 3, "bus error")
	sendOne(t, r, out, frame(60, 2, rng))
	receiveOne(t, r, frame(60, 3, rng))
}

// TestMaintainIdle: on a healthy idle or busy link Maintain never resets.
func TestMaintainIdle(t *testing.T) {
	r := newRig(t, enettest.Options{}, enet.Config{TxTimeout: time.Nanosecond})
	out := collect(r)
	rng := rand.New(rand.NewPCG(27, 27))
	for i := range 100 {
		if r.drv.Maintain() {
			t.Fatalf("reset at step %d", i)
		}
		if i%3 == 0 {
			sendOne(t, r, out, frame(60+i, uint32(i), rng))
		}
		if i%5 == 0 {
			receiveOne(t, r, frame(60+i, uint32(i), rng))
		}
	}
	if s := stats(r); s.Resets != 0 || s.ResetReason != "" {
		t.Fatalf("stats %+v", s)
	}
}
