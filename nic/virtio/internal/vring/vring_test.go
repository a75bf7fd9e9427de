package vring

import (
	"encoding/binary"
	"testing"
)

func TestNeedEvent(t *testing.T) {
	for _, c := range []struct {
		event, new, old uint16
		want            bool
	}{
		{0, 1, 0, true},           // first entry passes event 0
		{5, 5, 4, false},          // event not yet passed
		{5, 6, 4, true},           // passed within the batch
		{5, 6, 5, true},           // passed by exactly one
		{5, 7, 6, false},          // already passed before old
		{0xffff, 0, 0xfffe, true}, // across the wrap
		{0xfffe, 2, 0xfffd, true},
		{3, 2, 0xfffd, false}, // wrapped but not yet at event
		{0xfff0, 0x10, 0x8, false},
	} {
		if got := NeedEvent(c.event, c.new, c.old); got != c.want {
			t.Errorf("NeedEvent(%#x, %#x, %#x) = %v, want %v", c.event, c.new, c.old, got, c.want)
		}
	}
	// Exhaustive against the plain-integer definition on a window.
	for old := 0; old < 1<<16; old += 4099 {
		for k := 0; k < 300; k++ {
			nw := old + k
			for e := old - 5; e < nw+5; e++ {
				want := e >= old && e < nw // event index in [old, new)
				if got := NeedEvent(uint16(e), uint16(nw), uint16(old)); got != want {
					t.Fatalf("NeedEvent(%d, %d, %d) = %v", e, nw, old, got)
				}
			}
		}
	}
}

func TestLoadStore16(t *testing.T) {
	b := make([]byte, 16)
	Store16(b, 2, 0xbeef)
	Store16(b, 0, 0x1234)
	Store16(b, 14, 0xcafe)
	if binary.LittleEndian.Uint16(b[0:]) != 0x1234 || binary.LittleEndian.Uint16(b[2:]) != 0xbeef || binary.LittleEndian.Uint16(b[14:]) != 0xcafe {
		t.Fatalf("bytes % x", b)
	}
	if Load16(b, 2) != 0xbeef || Load16(b, 0) != 0x1234 || Load16(b, 14) != 0xcafe || Load16(b, 12) != 0 {
		t.Fatal("Load16 disagrees with the bytes")
	}
	defer func() {
		if recover() == nil {
			t.Fatal("out-of-range offset did not panic")
		}
	}()
	Load16(b, 16)
}

func TestLayout(t *testing.T) {
	// §2.7: for 256 entries the avail ring is 6+2*256 bytes and the used
	// ring 6+8*256; used_event and avail_event are their last fields.
	if AvailSize(256) != 4+512+4 || UsedEvent(256) != 4+512 || UsedSize(256) != 4+2048+4 || AvailEvent(256) != 4+2048 {
		t.Fatal("layout")
	}
	if AvailSlot(257, 255) != AvailRing+2 || UsedSlot(0xffff, 255) != UsedRing+8*255 {
		t.Fatal("slots")
	}
}
