package link

import (
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"testing"

	"github.com/tamanet/tamanet/nic"
	"github.com/tamanet/tamanet/nic/nictest"
	"github.com/tamanet/tamanet/nic/virtio/virtiotest"
	"github.com/tamanet/tamanet/stack/stacktest"
)

// txKicks is how many transmit batches the driver was told of: kicks sent
// plus kicks the device said it did not need.
func txKicks(ep *Endpoint) uint64 {
	var s nic.Stats
	ep.Device().Stats(&s)
	return s.Tx.Kicks + s.Tx.Suppressed
}

// TestPostDefersKick: over the virtio model, which sends only when
// notified, Post kicks a frame posted on an empty ring at once, leaves the
// frames posted behind it for one Flush (or Poll), kicks by itself once
// MaxUnkicked frames wait, and Flush with nothing waiting kicks nothing.
func TestPostDefersKick(t *testing.T) {
	r := newVirtioRig(t)
	base := r.pool.InUse()
	pkt := outPacket(r.ep, 1000)
	defer pkt.DecRef()
	post := func() bool {
		t.Helper()
		first, err := r.ep.Post(pkt)
		if err != nil {
			t.Fatal(err)
		}
		return first
	}
	k0 := txKicks(r.ep)
	if post() || r.out != 1 || txKicks(r.ep) != k0+1 {
		t.Fatalf("a frame on an empty ring: sent %d, %d kicks, want 1 and 1 at once", r.out, txKicks(r.ep)-k0)
	}
	// The first frame is in flight (not reclaimed): the next ones wait.
	if !post() || post() || post() {
		t.Fatal("first should report only the first waiting frame")
	}
	if r.out != 1 || txKicks(r.ep) != k0+1 {
		t.Fatalf("frames behind one in flight: sent %d, %d kicks, want 1 and 1", r.out, txKicks(r.ep)-k0)
	}
	r.ep.Flush()
	if r.out != 4 || txKicks(r.ep) != k0+2 {
		t.Fatalf("after Flush: sent %d, %d kicks, want 4 and 2", r.out, txKicks(r.ep)-k0)
	}
	r.ep.Flush()
	if txKicks(r.ep) != k0+2 {
		t.Fatal("Flush with nothing posted kicked")
	}
	// Poll reclaims, and so empties the ring: the next frame goes at
	// once again.
	if _, rec := r.ep.Poll(64); rec != 4 || r.pool.InUse() != base {
		t.Fatalf("Poll reclaimed %d, pool in use %d (baseline %d)", rec, r.pool.InUse(), base)
	}
	post()
	for range MaxUnkicked {
		post()
	}
	if r.out != 5+MaxUnkicked || txKicks(r.ep) != k0+4 {
		t.Fatalf("%d frames behind one: sent %d, %d kicks; want %d and 4", MaxUnkicked, r.out-4, txKicks(r.ep)-k0, 1+MaxUnkicked)
	}
	post() // waits behind the batch
	if r.out != 5+MaxUnkicked {
		t.Fatalf("sent %d, want %d", r.out, 5+MaxUnkicked)
	}
	r.ep.Poll(64) // reclaims and kicks what waits
	if r.out != 6+MaxUnkicked {
		t.Fatalf("Poll left a frame unkicked: sent %d, want %d", r.out, 6+MaxUnkicked)
	}
	r.ep.Poll(64)
	if r.pool.InUse() != base {
		t.Fatalf("pool in use %d, baseline %d", r.pool.InUse(), base)
	}
}

// TestPostRingFull: over a virtio ring of 8 descriptors, which the model
// completes only when notified, frames waiting unkicked fill the ring; Post
// then kicks before it reclaims, so the device completes them and the post
// succeeds instead of dropping the frame.
func TestPostRingFull(t *testing.T) {
	pool, model, drv := stacktest.Virtio(t, virtiotest.Options{MAC: ourMAC, QueueNumMax: 8})
	r := newDrvRig(t, pool, model, drv)
	pkt := outPacket(r.ep, 100)
	defer pkt.DecRef()
	const n = 20 // more than the ring, less than MaxUnkicked
	for i := range n {
		if _, err := r.ep.Post(pkt); err != nil {
			t.Fatalf("post %d: %v", i, err)
		}
	}
	r.ep.Flush()
	var s Stats
	r.ep.Stats(&s)
	if s.Tx.Packets != n || s.Tx.Drops[nic.RingFull] != 0 || r.out != n {
		t.Fatalf("sent %d of %d, stats %+v", r.out, n, s.Tx)
	}
}

// checkPostAllocs: frames posted with Post, four per step, kicked by one
// Poll that also reclaims them, allocate nothing.
func checkPostAllocs(t *testing.T, r *drvRig) {
	t.Helper()
	pkt := outPacket(r.ep, 1000)
	defer pkt.DecRef()
	step := func() {
		for range 4 {
			if _, err := r.ep.Post(pkt); err != nil {
				t.Fatal(err)
			}
		}
		r.ep.Poll(64)
	}
	for range allocWarmup {
		step()
	}
	base, out := r.pool.InUse(), r.out
	nictest.NoAllocs(t, allocRuns, "Post x4 -> Poll (kick, reclaim)", step)
	r.ep.Poll(64)
	if r.out-out != 4*(allocRuns+1) || r.pool.InUse() != base {
		t.Fatalf("sent %d of %d, pool in use %d (baseline %d)", r.out-out, 4*(allocRuns+1), r.pool.InUse(), base)
	}
}

func TestVirtioPostAllocs(t *testing.T) { checkPostAllocs(t, newVirtioRig(t)) }
func TestEnetPostAllocs(t *testing.T)   { checkPostAllocs(t, newEnetRig(t)) }

// TestPostHoldsWhenFull: while the device completes nothing, Post puts as
// many frames on the ring as it holds and keeps the rest back, without a
// drop; once the device works again, poll steps post the held ones in
// order and every frame leaves. Past MaxHeld waiting, a frame is dropped
// and counted as ring_full.
func TestPostHoldsWhenFull(t *testing.T) {
	pool, model, drv := stacktest.Virtio(t, virtiotest.Options{MAC: ourMAC, QueueNumMax: 8})
	r := newDrvRig(t, pool, model, drv)
	base := pool.InUse()
	var pkts []*stack.PacketBuffer
	for i := range 20 {
		p := outPacket(r.ep, 100+i) // the length tells the order
		defer p.DecRef()
		pkts = append(pkts, p)
	}
	var lens []int
	model.SetOutput(func(f []byte) { lens = append(lens, len(f)) })
	model.Stall()
	for i, p := range pkts {
		if _, err := r.ep.Post(p); err != nil {
			t.Fatalf("post %d: %v", i, err)
		}
	}
	var s Stats
	r.ep.Stats(&s)
	if s.TxHeld != 12 || s.Tx.Drops[nic.RingFull] != 0 {
		t.Fatalf("ring of 8, 20 posted: held %d, ring_full drops %d; want 12, 0", s.TxHeld, s.Tx.Drops[nic.RingFull])
	}
	model.Unstall()
	for range 10 {
		r.ep.Poll(64)
	}
	r.ep.Stats(&s)
	if len(lens) != 20 || s.Tx.Packets != 20 || s.Tx.Drops[nic.RingFull] != 0 {
		t.Fatalf("after the device came back: %d frames out, %d sent, %d dropped; want 20, 20, 0", len(lens), s.Tx.Packets, s.Tx.Drops[nic.RingFull])
	}
	for i := 1; i < len(lens); i++ {
		if lens[i] <= lens[i-1] {
			t.Fatalf("frames out of order: lengths %v", lens)
		}
	}
	nictest.CheckBaseline(t, pool, base, "after the held frames left")

	// Overflow: the ring's 8, MaxHeld held, 5 dropped.
	model.Stall()
	for i := range 8 + MaxHeld + 5 {
		if _, err := r.ep.Post(pkts[0]); err != nil && i < 8+MaxHeld {
			t.Fatalf("post %d: %v", i, err)
		}
	}
	r.ep.Stats(&s)
	if s.Tx.Drops[nic.RingFull] != 5 {
		t.Fatalf("ring_full drops %d past MaxHeld, want 5", s.Tx.Drops[nic.RingFull])
	}
	model.Unstall()
	for range 100 {
		r.ep.Poll(64)
	}
	if len(lens) != 20+8+MaxHeld {
		t.Fatalf("%d frames out, want %d", len(lens), 20+8+MaxHeld)
	}
	nictest.CheckBaseline(t, pool, base, "after the overflow")
}
