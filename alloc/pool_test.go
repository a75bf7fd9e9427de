package alloc

import (
	"errors"
	"sync"
	"testing"
)

func newPool(t testing.TB, count int) *Pool {
	t.Helper()
	p, err := New(make([]byte, count*2048+Alignment), Config{Count: count})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestGetPutAndExhaustion(t *testing.T) {
	p := newPool(t, 4)
	var got []*Buffer
	seen := map[int]bool{}
	for i := 0; i < 4; i++ {
		b := p.Get()
		if b == nil {
			t.Fatalf("Get %d returned nil", i)
		}
		if seen[b.Index()] {
			t.Fatalf("buffer %d handed out twice", b.Index())
		}
		seen[b.Index()] = true
		if b.Addr()%Alignment != 0 {
			t.Fatalf("buffer %d address %#x not %d-aligned", b.Index(), b.Addr(), Alignment)
		}
		if b.Len() != 0 || b.Headroom() != DefaultHeadroom {
			t.Fatalf("fresh buffer: len %d headroom %d", b.Len(), b.Headroom())
		}
		got = append(got, b)
	}
	if p.Get() != nil {
		t.Fatal("Get on an empty pool returned a buffer")
	}
	s := p.Stats()
	if s.InUse != 4 || s.HighWater != 4 || s.Exhausted != 1 {
		t.Fatalf("stats after exhaustion: %+v", s)
	}
	for _, b := range got {
		if err := p.Put(b); err != nil {
			t.Fatal(err)
		}
	}
	if s := p.Stats(); s.InUse != 0 || s.HighWater != 4 {
		t.Fatalf("stats after puts: %+v", s)
	}
}

func TestRefusedPuts(t *testing.T) {
	p, q := newPool(t, 2), newPool(t, 2)
	b := p.Get()
	if err := p.Put(b); err != nil {
		t.Fatal(err)
	}
	if err := p.Put(b); !errors.Is(err, ErrDoublePut) {
		t.Fatalf("double put: %v", err)
	}
	c := q.Get()
	if err := p.Put(c); !errors.Is(err, ErrForeign) {
		t.Fatalf("foreign put: %v", err)
	}
	if err := p.Put(nil); !errors.Is(err, ErrForeign) {
		t.Fatalf("nil put: %v", err)
	}
	var fake Buffer
	if err := p.Put(&fake); !errors.Is(err, ErrForeign) {
		t.Fatalf("fake put: %v", err)
	}
	if s := p.Stats(); s.RefusedPuts != 4 || s.InUse != 0 {
		t.Fatalf("stats: %+v", s)
	}
	// The double put must not have corrupted the free list: both buffers
	// come back exactly once.
	x, y := p.Get(), p.Get()
	if x == nil || y == nil || x == y || p.Get() != nil {
		t.Fatalf("free list corrupted: %v %v", x, y)
	}
}

func TestFree(t *testing.T) {
	p, q := newPool(t, 2), newPool(t, 2)
	b, c := p.Get(), q.Get()
	if err := b.Free(); err != nil {
		t.Fatal(err)
	}
	if err := c.Free(); err != nil {
		t.Fatal(err)
	}
	if p.InUse() != 0 || q.InUse() != 0 {
		t.Fatalf("in use after Free: %d, %d", p.InUse(), q.InUse())
	}
	if err := b.Free(); !errors.Is(err, ErrDoublePut) {
		t.Fatalf("double Free: %v", err)
	}
	var nilBuf, fake *Buffer = nil, new(Buffer)
	if err := nilBuf.Free(); !errors.Is(err, ErrForeign) {
		t.Fatalf("nil Free: %v", err)
	}
	if err := fake.Free(); !errors.Is(err, ErrForeign) {
		t.Fatalf("fake Free: %v", err)
	}
	if s := p.Stats(); s.RefusedPuts != 1 {
		t.Fatalf("stats: %+v", s)
	}
}

func TestBufferViewBounds(t *testing.T) {
	p := newPool(t, 1)
	b := p.Get()
	hdr, err := b.Prepend(14)
	if err != nil || len(hdr) != 14 || b.Headroom() != DefaultHeadroom-14 {
		t.Fatalf("prepend: %v len %d headroom %d", err, len(hdr), b.Headroom())
	}
	if _, err := b.Prepend(DefaultHeadroom); !errors.Is(err, ErrNoRoom) {
		t.Fatalf("prepend past start: %v", err)
	}
	tail, err := b.Append(100)
	if err != nil || len(tail) != 100 || b.Len() != 114 {
		t.Fatalf("append: %v", err)
	}
	copy(tail, "payload")
	tailroom := b.Cap() - b.Offset() - b.Len()
	if _, err := b.Append(tailroom + 1); !errors.Is(err, ErrNoRoom) {
		t.Fatalf("append past end: %v", err)
	}
	if string(b.Bytes()[14:21]) != "payload" {
		t.Fatalf("body %q", b.Bytes()[14:21])
	}
	if err := b.SetBody(10, b.Cap()); !errors.Is(err, ErrNoRoom) {
		t.Fatalf("set body past end: %v", err)
	}
	if err := b.SetBody(0, b.Cap()); err != nil || b.Len() != b.Cap() || b.BodyAddr() != b.Addr() {
		t.Fatalf("set whole body: %v", err)
	}
	if err := b.Reserve(DefaultHeadroom); err != nil || b.Len() != 0 || b.Headroom() != DefaultHeadroom {
		t.Fatalf("reserve: %v", err)
	}
	if _, err := b.Append(b.Cap() - DefaultHeadroom); err != nil {
		t.Fatal(err)
	}
	// A returned header slice must not be able to grow into the body.
	if err := b.Reserve(DefaultHeadroom); err != nil {
		t.Fatal(err)
	}
	h, _ := b.Prepend(4)
	if cap(h) != 4 {
		t.Fatalf("prepended slice cap %d", cap(h))
	}
}

func TestConfigErrors(t *testing.T) {
	if _, err := New(make([]byte, 100), Config{Count: 4}); !errors.Is(err, ErrRegionSmall) {
		t.Fatalf("small region: %v", err)
	}
	if _, err := New(make([]byte, 1<<20), Config{Count: 4, Size: 1024}); err == nil {
		t.Fatal("buffer too small for a frame was accepted")
	}
}

func TestConcurrentGetPut(t *testing.T) {
	p := newPool(t, 64)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var held []*Buffer
			for i := 0; i < 20000; i++ {
				if b := p.Get(); b != nil {
					b.Raw()[0]++
					held = append(held, b)
				}
				if len(held) > 5 || (i%3 == 0 && len(held) > 0) {
					if err := p.Put(held[0]); err != nil {
						t.Error(err)
						return
					}
					held = held[1:]
				}
			}
			for _, b := range held {
				if err := p.Put(b); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if s := p.Stats(); s.InUse != 0 || s.RefusedPuts != 0 {
		t.Fatalf("after concurrent use: %+v", s)
	}
	n := 0
	for p.Get() != nil {
		n++
	}
	if n != 64 {
		t.Fatalf("free list holds %d buffers, want 64", n)
	}
}

func TestArena(t *testing.T) {
	a := NewArena(make([]byte, 1<<16))
	b1, a1, err := a.Alloc(10, 16)
	if err != nil || a1%16 != 0 || len(b1) != 10 {
		t.Fatal(err)
	}
	_, a2, err := a.Alloc(100, 4096)
	if err != nil || a2%4096 != 0 || a2 < a1+10 {
		t.Fatalf("%v %#x", err, a2)
	}
	if _, _, err := a.Alloc(1<<16, 1); !errors.Is(err, ErrRegionSmall) {
		t.Fatalf("oversize: %v", err)
	}
	if _, _, err := a.Alloc(1, 3); err == nil {
		t.Fatal("non power of two alignment accepted")
	}
}

func BenchmarkGetPut(b *testing.B) {
	p := newPool(b, 64)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		p.Put(p.Get())
	}
}
