package nictest

import (
	"testing"

	"github.com/tamanet/tamanet/alloc"
)

// Ledger is the buffer accounting a driver test or fuzz target checks after
// every step: each buffer of the pool is owned by exactly one of the pool,
// one slot of one of the driver's rings, or the test (a frame the driver
// handed out that the test has not put back yet), and no Put was ever
// refused. The drivers' tests and fuzzers share it; what is particular to a
// driver (its free lists, its ring indices, an oracle following the device's
// side of the rings) they check on top of it.
//
// A Ledger is not safe for concurrent use; it allocates, so it has no place
// in an allocation test's measured loop.
type Ledger struct {
	pool *alloc.Pool
	held map[*alloc.Buffer]bool
}

// NewLedger returns a Ledger for pool, holding nothing.
func NewLedger(pool *alloc.Pool) *Ledger {
	return &Ledger{pool: pool, held: make(map[*alloc.Buffer]bool)}
}

// Len is the number of buffers the test holds.
func (l *Ledger) Len() int { return len(l.held) }

// Holds reports whether the test holds b.
func (l *Ledger) Holds(b *alloc.Buffer) bool { return l.held[b] }

// HandOut records b, which the driver's Receive returned, as held by the
// test. It fails t unless b is a buffer of the pool the test does not hold
// already (a buffer handed out twice, or one of another pool), and unless
// its body, a frame of at least an Ethernet header (14 bytes), lies inside
// the buffer.
func (l *Ledger) HandOut(t testing.TB, b *alloc.Buffer) {
	t.Helper()
	l.take(t, b, 14)
}

// HandOutPacket records the buffers of one packet an offloading driver's
// ReceivePacket returned, in order, as held by the test. Each must be a
// buffer of the pool the test does not hold already, with its body inside
// it; the packet must hold at least an Ethernet header (14 bytes), and
// every buffer after the first at least one byte. The first buffer may
// hold less than the Ethernet header: the stack, not the driver, drops a
// packet whose header a device split over buffers.
func (l *Ledger) HandOutPacket(t testing.TB, bufs []*alloc.Buffer) {
	t.Helper()
	total := 0
	for i, b := range bufs {
		least := 1
		if i == 0 {
			least = 0
		}
		l.take(t, b, least)
		total += b.Len()
	}
	if total < 14 {
		t.Fatalf("a packet of %d bytes in %d buffers handed out", total, len(bufs))
	}
}

// take records b as held, failing t unless it is a buffer of the pool not
// held already whose body of at least least bytes lies inside it.
func (l *Ledger) take(t testing.TB, b *alloc.Buffer, least int) {
	t.Helper()
	if !l.pool.Owns(b) || l.held[b] {
		t.Fatalf("the driver handed out a foreign or already held buffer %d", b.Index())
	}
	if b.Len() < least || b.Offset() < 0 || b.Offset()+b.Len() > b.Cap() {
		t.Fatalf("buffer %d handed out with a frame at %d+%d in a buffer of %d", b.Index(), b.Offset(), b.Len(), b.Cap())
	}
	l.held[b] = true
}

// PutAll gives every buffer the test holds back to the pool, as the stack
// does with what it received; a refused Put fails t.
func (l *Ledger) PutAll(t testing.TB) {
	t.Helper()
	for b := range l.held {
		if err := l.pool.Put(b); err != nil {
			t.Fatalf("put of a received buffer: %v", err)
		}
		delete(l.held, b)
	}
}

// Check fails t unless every buffer out of the pool is accounted for
// exactly once: held by the test, or on one slot of one of rings (each the
// driver's per-slot record of the buffer it posted there, nil for an empty
// slot), and no Put was refused. It returns how many slots of each ring
// hold a buffer.
func (l *Ledger) Check(t testing.TB, rings ...[]*alloc.Buffer) []int {
	t.Helper()
	seen := make(map[*alloc.Buffer]bool, len(l.held))
	for b := range l.held {
		seen[b] = true
	}
	out := len(l.held)
	posted := make([]int, len(rings))
	for r, slots := range rings {
		for i, b := range slots {
			if b == nil {
				continue
			}
			if !l.pool.Owns(b) {
				t.Fatalf("ring %d slot %d: buffer %d is not the pool's", r, i, b.Index())
			}
			if seen[b] {
				t.Fatalf("ring %d slot %d: buffer %d is on a ring twice or also held by the test", r, i, b.Index())
			}
			seen[b] = true
			posted[r]++
		}
		out += posted[r]
	}
	if st := l.pool.Stats(); st.InUse != out || st.RefusedPuts != 0 {
		t.Fatalf("pool in use %d, accounted for %d (%d held by the test, %v on the rings); refused puts %d",
			st.InUse, out, len(l.held), posted, st.RefusedPuts)
	}
	return posted
}

// CheckClosed is the check after the driver's Close: the only buffers out
// of the pool are those the test holds, and once it puts them back the pool
// is whole (see CheckEmpty).
func (l *Ledger) CheckClosed(t testing.TB) {
	t.Helper()
	if st := l.pool.Stats(); st.InUse != len(l.held) || st.RefusedPuts != 0 {
		t.Fatalf("after Close: %d in use, %d held by the test; refused puts %d", st.InUse, len(l.held), st.RefusedPuts)
	}
	l.PutAll(t)
	CheckEmpty(t, l.pool, "after Close, with every held buffer put back")
}

// CheckEmpty fails t unless every buffer of pool is back in it and no Put
// was refused: after a driver's New failed, or after its Close. what says
// when, in the failure.
func CheckEmpty(t testing.TB, pool *alloc.Pool, what string) {
	t.Helper()
	if st := pool.Stats(); st.InUse != 0 || st.RefusedPuts != 0 {
		t.Fatalf("%s: %d buffers in use, %d refused puts", what, st.InUse, st.RefusedPuts)
	}
}

// CheckBaseline fails t unless pool has exactly base buffers in use (a
// driver's posted receive ring when it is idle: nothing leaked, nothing
// put twice) and no Put was refused. what names the moment in the failure.
func CheckBaseline(t testing.TB, pool *alloc.Pool, base int, what string) {
	t.Helper()
	if st := pool.Stats(); st.InUse != base || st.RefusedPuts != 0 {
		t.Fatalf("%s: pool in use %d, baseline %d; refused puts %d", what, st.InUse, base, st.RefusedPuts)
	}
}
