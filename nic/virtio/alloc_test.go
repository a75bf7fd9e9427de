package virtio

import (
	"encoding/binary"
	"sync"
	"testing"
	"time"

	"github.com/tamanet/tamanet/alloc"
	"github.com/tamanet/tamanet/nic/nictest"
	"github.com/tamanet/tamanet/nic/virtio/internal/vring"
	"github.com/tamanet/tamanet/nic/virtio/virtiotest"
)

// frame64 is a minimum-size Ethernet frame (no FCS) for the device model to
// deliver.
var frame64 = func() []byte {
	f := make([]byte, 60)
	copy(f, []byte{2, 0, 0, 0, 0, 0xb, 2, 0, 0, 0, 0, 0xa, 0x88, 0xb5})
	return f
}()

// allocRuns is how many frames each allocation test moves, one per run.
const allocRuns = 2000

// TestAllocsRx: receive -> buffer return -> refill -> kick allocates nothing
// (driver and device model together).
func TestAllocsRx(t *testing.T) {
	s := mustSide(t, virtiotest.Options{}, Config{})
	base := s.pool.InUse()
	got := 0
	nictest.NoAllocs(t, allocRuns, "receive -> return -> refill -> kick", func() {
		s.dev.Deliver(frame64)
		b := s.drv.Receive()
		if b == nil || b.Len() != len(frame64) {
			return
		}
		got++
		s.pool.Put(b)
		s.drv.Refill()
		s.drv.RxKick()
	})
	if got != allocRuns+1 || s.pool.InUse() != base {
		t.Fatalf("received %d of %d frames, pool in use %d (baseline %d)", got, allocRuns+1, s.pool.InUse(), base)
	}
}

// TestAllocsTx: transmit -> kick -> device -> reclaim allocates nothing.
func TestAllocsTx(t *testing.T) {
	s := mustSide(t, virtiotest.Options{}, Config{})
	sent := 0
	s.dev.SetOutput(func(f []byte) { sent++ })
	base := s.pool.InUse()
	reclaimed := 0
	nictest.NoAllocs(t, allocRuns, "transmit -> kick -> device -> reclaim", func() {
		b := s.pool.Get()
		if b == nil {
			return
		}
		b.Append(60)
		if err := s.drv.Transmit(b); err != nil {
			s.pool.Put(b)
			return
		}
		s.drv.TxKick()
		reclaimed += s.drv.Reclaim()
	})
	if sent != allocRuns+1 || reclaimed != allocRuns+1 || s.pool.InUse() != base {
		t.Fatalf("sent %d, reclaimed %d of %d, pool in use %d (baseline %d)", sent, reclaimed, allocRuns+1, s.pool.InUse(), base)
	}
}

// TestConcurrentRxTx drives rx on one goroutine and tx on another on both
// ends, as the stack does, for the race detector. The senders do not wait
// for the receivers, so frames may be dropped when a backlog fills: every
// frame is received in order or counted as dropped.
func TestConcurrentRxTx(t *testing.T) {
	a, b := pair(t, Config{RxRing: 64, TxRing: 64})
	const total = 20000
	var wg sync.WaitGroup
	tx := func(s *side) {
		defer wg.Done()
		for seq := 0; seq < total; {
			for i := 0; i < 16 && seq < total; i++ {
				bf := s.pool.Get()
				if bf == nil {
					break
				}
				fillFrame(t, bf, 60, uint32(seq))
				if s.drv.Transmit(bf) != nil {
					s.pool.Put(bf)
					break
				}
				seq++
			}
			s.drv.TxKick()
			s.drv.Reclaim()
		}
	}
	rx := func(s *side, got *int, order *bool) {
		defer wg.Done()
		wake := make(chan struct{}, 1)
		s.dev.SetInterrupt(func() {
			select {
			case wake <- struct{}{}:
			default:
			}
		})
		last := -1
		for uint64(*got)+s.dev.Stats().BacklogDrops < total {
			*got += recvAll(s, func(bf *alloc.Buffer) {
				seq := int(binary.BigEndian.Uint32(bf.Bytes()[14:]))
				if seq <= last {
					*order = false
				}
				last = seq
			})
			if s.dev.Backlog() == 0 {
				select {
				case <-wake:
				case <-time.After(10 * time.Millisecond):
				}
			}
		}
	}
	var gotA, gotB int
	orderA, orderB := true, true
	wg.Add(4)
	go rx(a, &gotA, &orderA)
	go rx(b, &gotB, &orderB)
	go tx(a)
	go tx(b)
	wg.Wait()
	da, db := a.dev.Stats(), b.dev.Stats()
	if gotA == 0 || gotB == 0 || uint64(gotA)+da.BacklogDrops != total || uint64(gotB)+db.BacklogDrops != total {
		t.Fatalf("received %d+%d dropped, %d+%d dropped, of %d", gotA, da.BacklogDrops, gotB, db.BacklogDrops, total)
	}
	if !orderA || !orderB {
		t.Fatal("frames out of order")
	}
	t.Logf("received %d and %d of %d; backlog drops %d and %d", gotA, gotB, total, da.BacklogDrops, db.BacklogDrops)
}

// BenchmarkRx: one frame delivered by the model, received, returned to the
// pool, ring refilled and (suppressed) kick, in batches of 32.
func BenchmarkRx(b *testing.B) {
	s := mustSide(b, virtiotest.Options{}, Config{})
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n += 32 {
		for j := 0; j < 32 && n+j < b.N; j++ {
			s.dev.Deliver(frame64)
		}
		for bf := s.drv.Receive(); bf != nil; bf = s.drv.Receive() {
			s.pool.Put(bf)
		}
		s.drv.Refill()
		s.drv.RxKick()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/packet")
}

// BenchmarkTx: frames posted in batches of 32, one kick, the model copies
// them out, reclaim returns the buffers.
func BenchmarkTx(b *testing.B) {
	s := mustSide(b, virtiotest.Options{}, Config{})
	s.dev.SetOutput(func([]byte) {})
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n += 32 {
		for j := 0; j < 32 && n+j < b.N; j++ {
			bf := s.pool.Get()
			bf.Append(60)
			if err := s.drv.Transmit(bf); err != nil {
				b.Fatal(err)
			}
		}
		s.drv.TxKick()
		s.drv.Reclaim()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/packet")
}

// fakeComplete plays a minimal device for the driver-only benchmarks: it
// completes the next n posted descriptors of q in place, with used length
// n each, and publishes the used index. The model is stalled meanwhile.
func fakeComplete(q *queue, dev *devState, count int, n uint32) {
	for i := 0; i < count; i++ {
		s := vring.AvailSlot(dev.lastAvail, q.mask)
		id := binary.LittleEndian.Uint16(q.avail[s:])
		dev.lastAvail++
		u := vring.UsedSlot(dev.usedIdx, q.mask)
		binary.LittleEndian.PutUint32(q.used[u:], uint32(id))
		binary.LittleEndian.PutUint32(q.used[u+4:], n)
		dev.usedIdx++
	}
	vring.Store16(q.used, vring.UsedIdx, dev.usedIdx)
}

type devState struct{ lastAvail, usedIdx uint16 }

// BenchmarkRxDriver measures the driver alone on receive: Receive, Put,
// Refill and the kick decision, with completions written in place.
func BenchmarkRxDriver(b *testing.B) {
	s := mustSide(b, virtiotest.Options{}, Config{})
	s.dev.Stall()
	var dev devState
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n += 32 {
		k := min(32, b.N-n)
		fakeComplete(&s.drv.rx, &dev, k, HeaderSize+60)
		for bf := s.drv.Receive(); bf != nil; bf = s.drv.Receive() {
			s.pool.Put(bf)
		}
		s.drv.Refill()
		s.drv.RxKick()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/packet")
}

// BenchmarkTxDriver measures the driver alone on transmit: Transmit, the
// kick decision and Reclaim, with completions written in place.
func BenchmarkTxDriver(b *testing.B) {
	s := mustSide(b, virtiotest.Options{}, Config{})
	s.dev.Stall()
	var dev devState
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n += 32 {
		k := min(32, b.N-n)
		for j := 0; j < k; j++ {
			bf := s.pool.Get()
			bf.Append(60)
			if err := s.drv.Transmit(bf); err != nil {
				b.Fatal(err)
			}
		}
		s.drv.TxKick()
		fakeComplete(&s.drv.tx, &dev, k, 0)
		s.drv.Reclaim()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/packet")
}
