package baseline

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
	"time"
)

// TestPairs checks that every compared path really carries traffic before
// it is timed: UDP echo at several sizes and a 1 MiB TCP echo, byte-exact.
func TestPairs(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			p := v.make(t)
			serveEcho(t, p.b)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()

			u, err := p.a.Dial(ctx, "udp", "10.0.0.2:7")
			if err != nil {
				t.Fatal(err)
			}
			defer u.Close()
			u.SetDeadline(time.Now().Add(30 * time.Second))
			buf := make([]byte, 2048)
			for _, n := range []int{1, 64, 1000, 1472} {
				msg := bytes.Repeat([]byte{byte(n)}, n)
				if _, err := u.Write(msg); err != nil {
					t.Fatal(err)
				}
				k, err := u.Read(buf)
				if err != nil || !bytes.Equal(buf[:k], msg) {
					t.Fatalf("UDP echo of %d bytes: %d bytes back, %v", n, k, err)
				}
			}

			c, err := p.a.Dial(ctx, "tcp", "10.0.0.2:7")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(time.Minute))
			data := make([]byte, 1<<20)
			r := rand.New(rand.NewPCG(1, 2))
			for i := range data {
				data[i] = byte(r.Uint32())
			}
			go c.Write(data)
			back := make([]byte, len(data))
			if _, err := io.ReadFull(c, back); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(back, data) {
				t.Fatal("TCP echo: data differs")
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
