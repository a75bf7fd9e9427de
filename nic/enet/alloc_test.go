package enet_test

import (
	"math/rand/v2"
	"testing"

	"github.com/tamanet/tamanet/nic/enet"
	"github.com/tamanet/tamanet/nic/enet/enettest"
	"github.com/tamanet/tamanet/nic/nictest"
)

// allocRuns is how many frames each allocation test moves, one per run.
const allocRuns = 2000

// TestAllocsRx: the model delivers, the driver receives, the buffer goes
// back to the pool, the ring is refilled and the kick decided: no
// allocation in any of it.
func TestAllocsRx(t *testing.T) {
	_, b := pipe(t, enet.Config{}, enet.Config{})
	f := frame(1000, 1, rand.New(rand.NewPCG(1, 1)))
	got := 0
	nictest.NoAllocs(t, allocRuns, "receive -> return -> refill -> kick", func() {
		b.dev.Deliver(f)
		buf := b.drv.Receive()
		if buf == nil {
			return
		}
		if buf.Len() == len(f) {
			got++
		}
		b.pool.Put(buf)
		b.drv.Refill()
		b.drv.RxKick()
	})
	if got != allocRuns+1 || b.pool.InUse() != b.base {
		t.Fatalf("received %d of %d frames, pool in use %d (baseline %d)", got, allocRuns+1, b.pool.InUse(), b.base)
	}
}

// TestAllocsTx: a frame written into a pool buffer, posted, kicked, sent by
// the model to the peer and reclaimed, the peer's receive of it, and both
// drivers' slow path (Maintain, normally every 250 ms): no allocation on
// either side.
func TestAllocsTx(t *testing.T) {
	a, b := pipe(t, enet.Config{}, enet.Config{})
	f := frame(1000, 1, rand.New(rand.NewPCG(1, 1)))
	a.dev.SetOutput(func([]byte) {})
	enettest.Pipe(a.dev, b.dev) // restore; output is used only without a peer
	reclaimed, got := 0, 0
	nictest.NoAllocs(t, allocRuns, "transmit -> kick -> reclaim, and the peer's receive", func() {
		buf := a.pool.Get()
		if buf == nil {
			return
		}
		p, _ := buf.Append(len(f))
		copy(p, f)
		if err := a.drv.Transmit(buf); err != nil {
			a.pool.Put(buf)
			return
		}
		a.drv.TxKick()
		reclaimed += a.drv.Reclaim()
		if rb := b.drv.Receive(); rb != nil {
			got++
			b.pool.Put(rb)
		}
		b.drv.Refill()
		b.drv.RxKick()
		if a.drv.Maintain() || b.drv.Maintain() {
			t.Error("Maintain reset a healthy device")
		}
	})
	if reclaimed != allocRuns+1 || got != allocRuns+1 {
		t.Fatalf("reclaimed %d, peer received %d, of %d frames", reclaimed, got, allocRuns+1)
	}
	if a.pool.InUse() != a.base || b.pool.InUse() != b.base {
		t.Fatalf("pools in use %d and %d, baselines %d and %d", a.pool.InUse(), b.pool.InUse(), a.base, b.base)
	}
}
