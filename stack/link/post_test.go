package link

import (
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
