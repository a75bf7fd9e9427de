package alloc_test

import (
	"testing"

	"github.com/tamanet/tamanet/alloc"
	"github.com/tamanet/tamanet/nic/nictest"
)

// TestGetPutAllocs: Get, a prefix and a body, Put: no allocation over 4096
// buffers' worth of packets, on a pool small enough to cycle each buffer
// many times.
func TestGetPutAllocs(t *testing.T) {
	p, err := alloc.New(make([]byte, 8*2048+alloc.Alignment), alloc.Config{Count: 8})
	if err != nil {
		t.Fatal(err)
	}
	bad := 0
	nictest.NoAllocs(t, 4096, "Get -> Prepend -> Append -> Put", func() {
		b := p.Get()
		if b == nil {
			bad++
			return
		}
		_, e1 := b.Prepend(14)
		_, e2 := b.Append(100)
		if e1 != nil || e2 != nil || p.Put(b) != nil {
			bad++
		}
	})
	if bad != 0 || p.InUse() != 0 {
		t.Fatalf("%d runs failed, %d buffers in use", bad, p.InUse())
	}
}
