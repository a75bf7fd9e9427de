package nictest

import (
	"strings"
	"testing"

	"github.com/tamanet/tamanet/alloc"
)

// stopper is a recorder whose Fatalf stops the check, as FailNow would.
type stopper struct{ recorder }

type stopped struct{}

func (s *stopper) Fatalf(format string, args ...any) {
	s.recorder.Fatalf(format, args...)
	panic(stopped{})
}

func (s *stopper) Helper() {}

// fails runs check against a stopper and returns the failure, "" if none.
func fails(t *testing.T, check func(testing.TB)) (msg string) {
	t.Helper()
	s := &stopper{recorder{TB: t}}
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(stopped); !ok {
				panic(r)
			}
		}
		msg = strings.Join(s.failed, "; ")
	}()
	check(s)
	return ""
}

func TestLedger(t *testing.T) {
	newPool := func() *alloc.Pool {
		p, err := alloc.New(make([]byte, 8*2048+64), alloc.Config{Count: 8})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	pool := newPool()
	l := NewLedger(pool)
	rx := make([]*alloc.Buffer, 4)
	tx := make([]*alloc.Buffer, 2)
	rx[0], rx[2], tx[1] = pool.Get(), pool.Get(), pool.Get()
	if msg := fails(t, func(tb testing.TB) {
		if got := l.Check(tb, rx, tx); got[0] != 2 || got[1] != 1 {
			tb.Fatalf("posted %v, want [2 1]", got)
		}
	}); msg != "" {
		t.Fatalf("good rings: %s", msg)
	}

	// A frame handed out moves from a ring to the test.
	b := rx[0]
	rx[0] = nil
	if err := b.SetBody(pool.DefaultHeadroom(), 60); err != nil {
		t.Fatal(err)
	}
	if msg := fails(t, func(tb testing.TB) { l.HandOut(tb, b); l.Check(tb, rx, tx) }); msg != "" || !l.Holds(b) || l.Len() != 1 {
		t.Fatalf("hand-out: %q, holds %v, len %d", msg, l.Holds(b), l.Len())
	}

	for _, c := range []struct {
		name, want string
		check      func(testing.TB)
	}{
		{"handed out twice", "already held", func(tb testing.TB) { l.HandOut(tb, b) }},
		{"foreign buffer", "foreign", func(tb testing.TB) { l.HandOut(tb, newPool().Get()) }},
		{"runt", "frame at", func(tb testing.TB) {
			r := pool.Get()
			defer pool.Put(r)
			r.SetBody(pool.DefaultHeadroom(), 13)
			l.HandOut(tb, r)
		}},
		{"held and posted", "twice or also held", func(tb testing.TB) { l.Check(tb, []*alloc.Buffer{b}, rx, tx) }},
		{"posted twice", "twice", func(tb testing.TB) { l.Check(tb, rx, tx, []*alloc.Buffer{rx[2]}) }},
		{"foreign on a ring", "not the pool's", func(tb testing.TB) { l.Check(tb, rx, tx, []*alloc.Buffer{newPool().Get()}) }},
		{"lost", "pool in use 3, accounted for 2", func(tb testing.TB) { l.Check(tb, rx) }},
		{"not closed", "after Close", func(tb testing.TB) { l.CheckClosed(tb) }},
		{"not empty", "3 buffers in use", func(tb testing.TB) { CheckEmpty(tb, pool, "x") }},
	} {
		if msg := fails(t, c.check); !strings.Contains(msg, c.want) {
			t.Errorf("%s: failure %q, want %q", c.name, msg, c.want)
		}
	}

	// A refused Put shows in every check.
	if err := pool.Put(tx[1]); err != nil {
		t.Fatal(err)
	}
	pool.Put(tx[1])
	tx[1] = nil
	if msg := fails(t, func(tb testing.TB) { l.Check(tb, rx, tx) }); !strings.Contains(msg, "refused puts 1") {
		t.Errorf("refused put: failure %q", msg)
	}

	// Closed: the rings are empty, the test puts back what it holds.
	pool2 := newPool()
	l2 := NewLedger(pool2)
	h := pool2.Get()
	h.SetBody(pool2.DefaultHeadroom(), 14)
	if msg := fails(t, func(tb testing.TB) { l2.HandOut(tb, h); l2.CheckClosed(tb) }); msg != "" || l2.Len() != 0 || pool2.InUse() != 0 {
		t.Fatalf("close: %q, held %d, in use %d", msg, l2.Len(), pool2.InUse())
	}
}

// TestLedgerPacket: a packet over buffers may put less than an Ethernet
// header in its first buffer and a single byte in a later one, as a
// merged-buffer device may, but not an empty later buffer, a packet shorter
// than an Ethernet header, or a buffer twice.
func TestLedgerPacket(t *testing.T) {
	pool, err := alloc.New(make([]byte, 8*2048+64), alloc.Config{Count: 8})
	if err != nil {
		t.Fatal(err)
	}
	packet := func(lens ...int) []*alloc.Buffer {
		bufs := make([]*alloc.Buffer, len(lens))
		for i, n := range lens {
			bufs[i] = pool.Get()
			if err := bufs[i].SetBody(pool.DefaultHeadroom(), n); err != nil {
				t.Fatal(err)
			}
		}
		return bufs
	}
	for _, c := range []struct {
		name string
		lens []int
		want string // "" for accepted
	}{
		{"one frame", []int{60}, ""},
		{"short first, one byte last", []int{4, 9, 1}, ""},
		{"empty first", []int{0, 14}, ""},
		{"empty later", []int{20, 0}, "frame at"},
		{"runt", []int{6, 7}, "packet of 13 bytes in 2 buffers"},
	} {
		l := NewLedger(pool)
		bufs := packet(c.lens...)
		msg := fails(t, func(tb testing.TB) { l.HandOutPacket(tb, bufs) })
		switch {
		case c.want == "" && (msg != "" || l.Len() != len(bufs)):
			t.Errorf("%s: failure %q, holds %d of %d", c.name, msg, l.Len(), len(bufs))
		case c.want != "" && !strings.Contains(msg, c.want):
			t.Errorf("%s: failure %q, want %q", c.name, msg, c.want)
		}
		for _, b := range bufs {
			pool.Put(b)
		}
	}
	l := NewLedger(pool)
	bufs := packet(30)
	if msg := fails(t, func(tb testing.TB) { l.HandOutPacket(tb, []*alloc.Buffer{bufs[0], bufs[0]}) }); !strings.Contains(msg, "already held") {
		t.Errorf("a buffer twice in a packet: failure %q", msg)
	}
	pool.Put(bufs[0])
	CheckEmpty(t, pool, "after the cases")
}
