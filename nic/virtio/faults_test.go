package virtio

import (
	"encoding/binary"
	"testing"

	"github.com/tamanet/tamanet/alloc"
	"github.com/tamanet/tamanet/nic"
	"github.com/tamanet/tamanet/nic/virtio/internal/vring"
	"github.com/tamanet/tamanet/nic/virtio/virtiotest"
)

// run sends total frames from a to b in batches, receiving as it goes, and
// returns the sequence numbers b received in order.
func run(t *testing.T, a, b *side, total, batch int) []uint32 {
	t.Helper()
	var got []uint32
	for seq := 0; seq < total; {
		for i := 0; i < batch && seq < total; i++ {
			send(t, a, 64, uint32(seq))
			seq++
		}
		a.drv.TxKick()
		a.drv.Reclaim()
		recvAll(b, func(rb *alloc.Buffer) {
			got = append(got, binary.BigEndian.Uint32(rb.Bytes()[14:]))
		})
	}
	// The driver's periodic step reads Status, which lets the model do
	// work it held back (completions behind injected entries).
	a.drv.Maintain()
	b.dev.Flush()
	recvAll(b, func(rb *alloc.Buffer) {
		got = append(got, binary.BigEndian.Uint32(rb.Bytes()[14:]))
	})
	a.drv.Reclaim()
	return got
}

func TestFaults(t *testing.T) {
	const total = 5000
	for _, c := range []struct {
		name  string
		f     virtiotest.Faults
		check func(t *testing.T, got []uint32, ds virtiotest.Stats, rx, tx *nic.Stats)
	}{
		{"drop", virtiotest.Faults{Drop: 0.05}, func(t *testing.T, got []uint32, ds virtiotest.Stats, rx, tx *nic.Stats) {
			if ds.Dropped == 0 || uint64(len(got)) != total-ds.Dropped {
				t.Fatalf("dropped %d, received %d of %d", ds.Dropped, len(got), total)
			}
		}},
		{"duplicate", virtiotest.Faults{Duplicate: 0.05}, func(t *testing.T, got []uint32, ds virtiotest.Stats, rx, tx *nic.Stats) {
			if ds.Duplicated == 0 || uint64(len(got)) != total+ds.Duplicated {
				t.Fatalf("duplicated %d, received %d of %d", ds.Duplicated, len(got), total)
			}
		}},
		{"corrupt", virtiotest.Faults{Corrupt: 0.05}, func(t *testing.T, got []uint32, ds virtiotest.Stats, rx, tx *nic.Stats) {
			if ds.Corrupted == 0 || len(got) != total {
				t.Fatalf("corrupted %d, received %d of %d", ds.Corrupted, len(got), total)
			}
		}},
		{"reorder", virtiotest.Faults{Reorder: 0.05}, func(t *testing.T, got []uint32, ds virtiotest.Stats, rx, tx *nic.Stats) {
			swapped := 0
			for i := 1; i < len(got); i++ {
				if got[i] < got[i-1] {
					swapped++
				}
			}
			if ds.Reordered == 0 || len(got) != total || uint64(swapped) != ds.Reordered {
				t.Fatalf("reordered %d, out of order %d, received %d of %d", ds.Reordered, swapped, len(got), total)
			}
		}},
		{"bad length", virtiotest.Faults{BadLength: 0.05}, func(t *testing.T, got []uint32, ds virtiotest.Stats, rx, tx *nic.Stats) {
			// Injected on b's rx completions and a's tx completions;
			// only rx loses the frame. a's tx counts the ones that
			// were too long (a used len 0 is fine for tx).
			if ds.BadLengths == 0 || rx.Rx.Drops[nic.BadLength] != ds.BadLengths || uint64(len(got)) != total-ds.BadLengths {
				t.Fatalf("injected %d, counted %d, received %d of %d", ds.BadLengths, rx.Rx.Drops[nic.BadLength], len(got), total)
			}
		}},
		{"bad id", virtiotest.Faults{BadID: 0.05}, func(t *testing.T, got []uint32, ds virtiotest.Stats, rx, tx *nic.Stats) {
			if ds.BadIDs == 0 || rx.Rx.Drops[nic.BadID] != ds.BadIDs || len(got) != total {
				t.Fatalf("injected %d, counted %d, received %d of %d", ds.BadIDs, rx.Rx.Drops[nic.BadID], len(got), total)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, b := pair(t, Config{RxRing: 64, TxRing: 64})
			baseA, baseB := a.pool.InUse(), b.pool.InUse()
			c.f.Seed = 42
			b.dev.SetFaults(c.f)
			got := run(t, a, b, total, 40)
			var rx, tx nic.Stats
			b.drv.Stats(&rx)
			a.drv.Stats(&tx)
			c.check(t, got, b.dev.Stats(), &rx, &tx)
			if rx.Rx.Drops[nic.BadIndex] != 0 {
				t.Fatalf("bad index on rx: %+v", rx.Rx.Drops)
			}
			atBaseline(t, a, b, baseA, baseB)
			closeEmpty(t, a, b)
		})
	}
}

// TestFaultsOnTx injects bad lengths and ids into transmit completions.
func TestFaultsOnTx(t *testing.T) {
	a, b := pair(t, Config{RxRing: 64, TxRing: 64})
	baseA := a.pool.InUse()
	a.dev.SetFaults(virtiotest.Faults{Seed: 7, BadLength: 0.1, BadID: 0.1})
	got := run(t, a, b, 3000, 40)
	if len(got) != 3000 {
		t.Fatalf("received %d of 3000", len(got))
	}
	ds := a.dev.Stats()
	var st nic.Stats
	a.drv.Stats(&st)
	if ds.BadIDs == 0 || st.Tx.Drops[nic.BadID] != ds.BadIDs {
		t.Fatalf("tx bad ids injected %d, counted %d", ds.BadIDs, st.Tx.Drops[nic.BadID])
	}
	// Only the over-long lengths are wrong for a transmit completion.
	if ds.BadLengths == 0 || st.Tx.Drops[nic.BadLength] == 0 || st.Tx.Drops[nic.BadLength] > ds.BadLengths {
		t.Fatalf("tx bad lengths injected %d, counted %d", ds.BadLengths, st.Tx.Drops[nic.BadLength])
	}
	if a.pool.InUse() != baseA {
		t.Fatalf("pool in use %d, baseline %d", a.pool.InUse(), baseA)
	}
}

func TestStall(t *testing.T) {
	a, b := pair(t, Config{RxRing: 64, TxRing: 64})
	baseA := a.pool.InUse()

	// A stalled receiver keeps frames in its backlog.
	b.dev.Stall()
	for i := 0; i < 10; i++ {
		send(t, a, 64, uint32(i))
	}
	a.drv.TxKick()
	a.drv.Reclaim()
	if n := recvAll(b, nil); n != 0 {
		t.Fatalf("stalled device delivered %d frames", n)
	}
	if b.dev.Backlog() != 10 {
		t.Fatalf("backlog %d, want 10", b.dev.Backlog())
	}
	b.dev.Unstall()
	if n := recvAll(b, nil); n != 10 {
		t.Fatalf("after unstall received %d, want 10", n)
	}

	// A stalled transmitter completes nothing; kicks after the first
	// are suppressed (EVENT_IDX) because it has not caught up.
	a.dev.Stall()
	var before nic.Stats
	a.drv.Stats(&before)
	for i := 0; i < 5; i++ {
		send(t, a, 64, uint32(i))
		a.drv.TxKick()
	}
	if n := a.drv.Reclaim(); n != 0 {
		t.Fatalf("stalled device completed %d tx", n)
	}
	var mid nic.Stats
	a.drv.Stats(&mid)
	if k, s := mid.Tx.Kicks-before.Tx.Kicks, mid.Tx.Suppressed-before.Tx.Suppressed; k != 1 || s != 4 {
		t.Fatalf("stalled tx: %d kicks %d suppressed, want 1 and 4", k, s)
	}
	a.dev.Unstall()
	if n := a.drv.Reclaim(); n != 5 {
		t.Fatalf("after unstall reclaimed %d, want 5", n)
	}
	if n := recvAll(b, nil); n != 5 {
		t.Fatalf("after unstall received %d, want 5", n)
	}
	if a.pool.InUse() != baseA {
		t.Fatalf("pool in use %d, baseline %d", a.pool.InUse(), baseA)
	}
}

// TestBacklogBounded fills a stalled receiver beyond its backlog.
func TestBacklogBounded(t *testing.T) {
	a := mustSide(t, virtiotest.Options{}, Config{})
	b := mustSide(t, virtiotest.Options{Backlog: 8}, Config{})
	virtiotest.Pipe(a.dev, b.dev)
	b.dev.Stall()
	for i := 0; i < 20; i++ {
		send(t, a, 64, uint32(i))
	}
	a.drv.TxKick()
	if st := b.dev.Stats(); st.BacklogDrops != 12 || b.dev.Backlog() != 8 {
		t.Fatalf("backlog %d, drops %d; want 8 and 12", b.dev.Backlog(), st.BacklogDrops)
	}
	b.dev.Unstall()
	if n := recvAll(b, nil); n != 8 {
		t.Fatalf("received %d, want 8", n)
	}
}

// TestUsedIDNotOutstanding writes used entries for ids the driver has not
// posted: a second completion of a descriptor already taken back
// (Duplicate), one for a descriptor never posted (Stale), one beyond the
// ring (BadID). None may be delivered.
func TestUsedIDNotOutstanding(t *testing.T) {
	a, b := pair(t, Config{RxRing: 8, TxRing: 8})
	send(t, a, 64, 1)
	a.drv.TxKick()
	rb := b.drv.Receive()
	if rb == nil {
		t.Fatal("no frame")
	}
	b.pool.Put(rb)
	// Descriptor 0 completed and is free now (not refilled): replay its
	// completion, then complete an id beyond the ring.
	b.dev.Stall()
	q := &b.drv.rx
	for i, id := range []uint32{0, 8} {
		s := vring.UsedSlot(q.lastUsed()+uint16(i), q.mask)
		binary.LittleEndian.PutUint32(q.used[s:], id)
		binary.LittleEndian.PutUint32(q.used[s+4:], 76)
	}
	vring.Store16(q.used, vring.UsedIdx, q.lastUsed()+2)
	if got := b.drv.Receive(); got != nil {
		t.Fatal("a completion for a descriptor not outstanding was delivered")
	}
	var st nic.Stats
	b.drv.Stats(&st)
	if st.Rx.Drops[nic.Duplicate] != 1 || st.Rx.Drops[nic.BadID] != 1 || st.Rx.Drops.Total() != 2 {
		t.Fatalf("rx drops %v, want one duplicate, one bad id", st.Rx.Drops)
	}

	// Tx: one descriptor posted, a completion for descriptor 5, which
	// never was: Stale; the posted one stays with the device.
	if a.drv.Reclaim() != 1 {
		t.Fatal("first frame not reclaimed")
	}
	a.dev.Stall()
	send(t, a, 64, 2)
	a.drv.TxKick()
	q = &a.drv.tx
	s := vring.UsedSlot(q.lastUsed(), q.mask)
	binary.LittleEndian.PutUint32(q.used[s:], 5)
	vring.Store16(q.used, vring.UsedIdx, q.lastUsed()+1)
	if n := a.drv.Reclaim(); n != 0 || a.drv.TxFree() != 7 {
		t.Fatalf("reclaimed %d, %d free; want 0 and 7", n, a.drv.TxFree())
	}
	a.drv.Stats(&st)
	if st.Tx.Drops[nic.Stale] != 1 || st.Tx.Drops.Total() != 1 {
		t.Fatalf("tx drops %v, want one stale", st.Tx.Drops)
	}
}

// TestForgedIndexStale forges the used index one entry ahead while every
// rx descriptor is posted: the slot under it was never written (poisoned
// at setup), so it is Stale and no buffer the device holds comes out.
// Forged further than descriptors are outstanding, it is BadIndex and
// nothing is consumed.
func TestForgedIndexStale(t *testing.T) {
	s := mustSide(t, virtiotest.Options{}, Config{RxRing: 8, TxRing: 8})
	s.dev.ForgeUsed(0, 1, false)
	if s.drv.Receive() != nil {
		t.Fatal("delivered a buffer for an entry the device never wrote")
	}
	var st nic.Stats
	s.drv.Stats(&st)
	if st.Rx.Drops[nic.Stale] != 1 || st.Rx.Drops.Total() != 1 || s.drv.rx.nfree != 0 {
		t.Fatalf("drops %v, %d rx descriptors free; want one stale, none free", st.Rx.Drops, s.drv.rx.nfree)
	}

	// Tx: one frame outstanding, the index forged 8 ahead, more than
	// are outstanding: nothing reclaimed, one BadIndex.
	s.dev.Stall()
	send(t, s, 64, 0)
	s.drv.TxKick()
	s.dev.ForgeUsed(1, 8, false)
	if n := s.drv.Reclaim(); n != 0 {
		t.Fatalf("reclaimed %d under a forged index", n)
	}
	s.drv.Stats(&st)
	if st.Tx.Drops[nic.BadIndex] != 1 || st.Tx.Drops.Total() != 1 || s.drv.TxFree() != 7 {
		t.Fatalf("tx drops %v, %d free; want one bad index, 7 free", st.Tx.Drops, s.drv.TxFree())
	}
}

// TestEntryBeforePost: a second completion of a descriptor the driver took
// back, published but not yet consumed when the driver posts that
// descriptor again, must not complete the new post: the device still holds
// that buffer. It is Stale, the buffer stays on the ring, and since the
// ring is out of step Maintain resets the device.
func TestEntryBeforePost(t *testing.T) {
	s := mustSide(t, virtiotest.Options{}, Config{RxRing: 8, TxRing: 8})
	base := s.pool.InUse()
	s.dev.Deliver(frame64)
	rb := s.drv.Receive()
	if rb == nil {
		t.Fatal("no frame")
	}
	s.pool.Put(rb)
	// Descriptor 0 is free: the device completes it again, and only
	// then does the driver post it (the only free one) anew.
	s.dev.Stall()
	q := &s.drv.rx
	slot := vring.UsedSlot(q.lastUsed(), q.mask)
	binary.LittleEndian.PutUint32(q.used[slot:], 0)
	binary.LittleEndian.PutUint32(q.used[slot+4:], 76)
	vring.Store16(q.used, vring.UsedIdx, q.lastUsed()+1)
	if n := s.drv.Refill(); n != 1 || q.bufs[0] == nil {
		t.Fatalf("refilled %d, descriptor 0 posted %v; want 1, true", n, q.bufs[0] != nil)
	}
	if s.drv.Receive() != nil {
		t.Fatal("an entry published before the post completed it")
	}
	var st nic.Stats
	s.drv.Stats(&st)
	if st.Rx.Drops[nic.Stale] != 1 || st.Rx.Drops.Total() != 1 || q.nfree != 0 {
		t.Fatalf("drops %v, %d rx descriptors free; want one stale, none free", st.Rx.Drops, q.nfree)
	}
	if !s.drv.Maintain() {
		t.Fatal("no reset of a ring out of step")
	}
	recovered(t, s, 1, "rx_used_index")
	s.dev.Unstall()
	s.drv.Refill()
	s.drv.RxKick()
	s.dev.Deliver(frame64)
	if rb := s.drv.Receive(); rb == nil {
		t.Fatal("no frame after the reset")
	} else {
		s.pool.Put(rb)
	}
	s.drv.Refill()
	if s.pool.InUse() != base {
		t.Fatalf("pool in use %d, baseline %d", s.pool.InUse(), base)
	}
}

// TestUsedIndexTooFar moves the used index further than the ring holds.
func TestUsedIndexTooFar(t *testing.T) {
	s := mustSide(t, virtiotest.Options{}, Config{RxRing: 8})
	s.dev.Stall()
	q := &s.drv.rx
	vring.Store16(q.used, vring.UsedIdx, q.lastUsed()+9)
	for i := 0; i < 3; i++ {
		if s.drv.Receive() != nil {
			t.Fatal("delivered a frame from a bad index")
		}
	}
	var st nic.Stats
	s.drv.Stats(&st)
	if st.Rx.Drops[nic.BadIndex] != 1 {
		t.Fatalf("bad index count %d, want 1 (one episode)", st.Rx.Drops[nic.BadIndex])
	}
	inUse := s.pool.InUse()
	s.drv.Close()
	if s.pool.InUse() != inUse-8 || s.pool.InUse() != 0 {
		t.Fatalf("pool in use %d after Close", s.pool.InUse())
	}
}

// TestEventIdxSuppression: with EVENT_IDX the device asks for rx kicks only
// when it runs out of buffers, so steady refills are not kicked; without it,
// VIRTQ_USED_F_NO_NOTIFY does the same. Kicks the driver counts must be the
// notifies the device saw.
func TestEventIdxSuppression(t *testing.T) {
	for _, noEvent := range []bool{false, true} {
		a, b := pair(t, Config{RxRing: 64, TxRing: 64, NoEventIdx: noEvent})
		if got := b.drv.Features()&FeatureEventIdx != 0; got == noEvent {
			t.Fatalf("EVENT_IDX negotiated %v with NoEventIdx %v", got, noEvent)
		}
		got := run(t, a, b, 2000, 16)
		if len(got) != 2000 {
			t.Fatalf("received %d", len(got))
		}
		var st nic.Stats
		b.drv.Stats(&st)
		ds := b.dev.Stats()
		if st.Rx.Kicks != ds.Notifies[0] {
			t.Fatalf("driver counted %d rx kicks, device saw %d", st.Rx.Kicks, ds.Notifies[0])
		}
		// 125 refills after init; the device never ran dry.
		if st.Rx.Kicks != 1 || st.Rx.Suppressed < 100 {
			t.Fatalf("noEvent=%v: rx kicks %d suppressed %d", noEvent, st.Rx.Kicks, st.Rx.Suppressed)
		}
		// When the device does run dry, the next refill is kicked.
		b.dev.Stall()
		for i := 0; i < 64; i++ {
			send(t, a, 64, uint32(i))
		}
		a.drv.TxKick()
		a.drv.Reclaim()
		b.dev.Unstall() // fills all 64 buffers, more wait in the backlog
		for i := 0; i < 10; i++ {
			send(t, a, 64, uint32(i))
		}
		a.drv.TxKick()
		a.drv.Reclaim()
		// The first drain's refill is kicked (the device asked), which
		// moves the backlog into the fresh buffers.
		if n1, n2 := recvAll(b, nil), recvAll(b, nil); n1 != 64 || n2 != 10 {
			t.Fatalf("received %d then %d, want 64 then 10 (backlog drained on kick)", n1, n2)
		}
		b.drv.Stats(&st)
		if st.Rx.Kicks < 2 || st.Rx.Kicks != b.dev.Stats().Notifies[0] {
			t.Fatalf("rx kicks %d, device saw %d", st.Rx.Kicks, b.dev.Stats().Notifies[0])
		}
	}
}

// TestInterrupt checks the model's interrupt hook honours used_event.
func TestInterrupt(t *testing.T) {
	a, b := pair(t, Config{})
	n := 0
	b.dev.SetInterrupt(func() { n++ })
	// used_event starts at 0: the first completion passes it.
	send(t, a, 64, 0)
	a.drv.TxKick()
	if n != 1 {
		t.Fatalf("interrupts %d after the first frame, want 1", n)
	}
	// Not re-armed: the next completion does not interrupt.
	send(t, a, 64, 1)
	a.drv.TxKick()
	if n != 1 {
		t.Fatalf("interrupts %d without re-arming, want 1", n)
	}
	// Draining the ring re-arms used_event = lastUsed.
	if got := recvAll(b, nil); got != 2 {
		t.Fatalf("received %d, want 2", got)
	}
	send(t, a, 64, 2)
	a.drv.TxKick()
	if n != 2 {
		t.Fatalf("interrupts %d after re-arming, want 2", n)
	}
	if s := b.drv.AckInterrupt(); s&1 == 0 {
		t.Fatalf("interrupt status %#x", s)
	}
	if s := b.drv.AckInterrupt(); s != 0 {
		t.Fatalf("interrupt status %#x after ack", s)
	}
}

// TestDeviceRejectsBadDescriptor posts a transmit descriptor pointing outside
// the DMA memory: the model counts it and asks for a reset, never touching
// the address.
func TestDeviceRejectsBadDescriptor(t *testing.T) {
	s := mustSide(t, virtiotest.Options{}, Config{})
	q := &s.drv.tx
	q.nfree--
	id := q.free[q.nfree]
	q.post(id, 0x10, 100, 0) // nowhere near the arena
	q.publish()
	s.drv.TxKick()
	if st := s.dev.Stats(); st.DeviceErrors != 1 || st.TxFrames != 0 {
		t.Fatalf("device stats %+v", st)
	}
	if s.dev.Read32(regStatus)&StatusNeedsReset == 0 {
		t.Fatal("device did not set DEVICE_NEEDS_RESET")
	}
	if s.drv.Reclaim() != 0 {
		t.Fatal("a refused descriptor was completed")
	}
	s.drv.Close()
	if s.pool.InUse() != 0 {
		t.Fatalf("pool in use %d after Close", s.pool.InUse())
	}
}

// TestTxFullRingBadIDs keeps the tx ring full while the device injects bad
// ids into tx completions. The model then has to hold completions back until
// the driver shows it consumed the injected entries; the driver's next post
// must reach it (not be suppressed), or the ring wedges.
func TestTxFullRingBadIDs(t *testing.T) {
	a, b := pair(t, Config{RxRing: 256, TxRing: 32})
	a.dev.SetFaults(virtiotest.Faults{Seed: 3, BadID: 0.2})
	baseA := a.pool.InUse()
	sent, seq := 0, uint32(0)
	for round := 0; round < 200; round++ {
		for a.drv.TxFree() > 0 {
			bf := a.pool.Get()
			fillFrame(t, bf, 60, seq)
			if err := a.drv.Transmit(bf); err != nil {
				t.Fatal(err)
			}
			seq++
			sent++
		}
		a.drv.TxKick()
		if a.drv.Reclaim() == 0 {
			t.Fatalf("round %d: tx ring wedged (device stats %+v)", round, a.dev.Stats())
		}
		recvAll(b, nil)
	}
	// Completions the model still holds back wait for the driver's
	// periodic Status read (Maintain), after which used_event shows it
	// consumed the injected entries.
	a.drv.Reclaim()
	if a.drv.Maintain() {
		t.Fatal("Maintain reset a working device")
	}
	a.drv.Reclaim()
	if a.pool.InUse() != baseA {
		t.Fatalf("pool in use %d, baseline %d", a.pool.InUse(), baseA)
	}
	var st nic.Stats
	a.drv.Stats(&st)
	if ds := a.dev.Stats(); ds.BadIDs == 0 || st.Tx.Drops[nic.BadID] != ds.BadIDs || st.Tx.Drops[nic.BadIndex] != 0 {
		t.Fatalf("bad ids injected %d, counted %d, bad index %d", ds.BadIDs, st.Tx.Drops[nic.BadID], st.Tx.Drops[nic.BadIndex])
	}
}
