package baseline

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/tamanet/tamanet/stack/stacktest"
)

// TestPairs checks that every compared path really carries traffic before
// it is timed: UDP echo at several sizes and a 1 MiB TCP echo, byte-exact.
func TestPairs(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			p := v.make(t)
			stacktest.ServeEcho(t, p.b)
			stacktest.UDPEcho(t, p.a, stacktest.UDPCheck{Addr: "10.0.0.2:7", Sizes: []int{1, 64, 1000, 1472}, Wait: 30 * time.Second})
			if err := stacktest.TCPEcho(p.a, "10.0.0.2:7", 1<<20, 0x5a); err != nil {
				t.Fatalf("TCP echo of 1 MiB: %v", err)
			}
			if d := p.drops(); d != 0 {
				t.Logf("%d frames dropped for want of a receive buffer", d)
			}
		})
	}
}

func TestNewChecks(t *testing.T) {
	dev := newSimENET()
	for _, c := range []Config{
		{MAC: macA[:]},
		{Addr: netip.MustParsePrefix("::1/64"), MAC: macA[:]},
		{Addr: addrA, MAC: net.HardwareAddr{1, 2, 3}},
	} {
		if _, err := New(dev, c); err == nil {
			t.Errorf("New(%+v) succeeded", c)
		}
	}
	if _, err := New(nil, Config{Addr: addrA, MAC: macA[:]}); err == nil {
		t.Error("New(nil device) succeeded")
	}
}

// TestRunt: a frame shorter than an Ethernet header is counted, not
// delivered.
func TestRunt(t *testing.T) {
	dev := newSimENET()
	s, err := New(dev, Config{Addr: addrA, MAC: macA[:]})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	dev.arrive([]byte{1, 2, 3})
	if n := s.RxOnce(); n != 1 {
		t.Fatalf("RxOnce = %d", n)
	}
	if c := s.Counters(); c.RxRunts != 1 || c.RxFrames != 0 {
		t.Fatalf("counters %+v", c)
	}
}
