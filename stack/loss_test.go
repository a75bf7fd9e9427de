package stack

// TCP loss recovery with gVisor's RACK on and off (Config.RACK), two stacks
// back to back over the virtio device models: random loss, and an outage
// of the link in the middle of a transfer.

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tamanet/tamanet/nic/nictest"
	"github.com/tamanet/tamanet/nic/virtio/virtiotest"
	"github.com/tamanet/tamanet/stack/stacktest"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

func TestRACKOption(t *testing.T) {
	for _, rack := range []bool{false, true} {
		pool := newPool(t, 64)
		s, err := New(nictest.New(pool, nictest.Config{MAC: stacktest.MACA, RxRing: 16}), Config{Addr: addrA, RACK: rack})
		if err != nil {
			t.Fatal(err)
		}
		var rec tcpip.TCPRecovery
		if err := s.GVisor().TransportProtocolOption(tcp.ProtocolNumber, &rec); err != nil {
			t.Fatal(err)
		}
		s.Close()
		if on := rec&tcpip.TCPRACKLossDetection != 0; on != rack {
			t.Errorf("Config.RACK %v: gVisor's TCPRecovery %#x", rack, rec)
		}
	}
}

// outage drops every frame both models carry for d, once a has
// transmitted after more frames from now, in the background; wait blocks
// until the link is back.
func outage(a, b *vnode, after uint64, d time.Duration) (wait func()) {
	var wg sync.WaitGroup
	wg.Add(1)
	start := a.model.Stats().TxFrames
	go func() {
		defer wg.Done()
		for deadline := time.Now().Add(stacktest.EchoDeadline); a.model.Stats().TxFrames < start+after; {
			if time.Now().After(deadline) {
				return
			}
			time.Sleep(100 * time.Microsecond)
		}
		a.model.SetFaults(virtiotest.Faults{Seed: 1, Drop: 1})
		b.model.SetFaults(virtiotest.Faults{Seed: 2, Drop: 1})
		time.Sleep(d)
		a.model.SetFaults(virtiotest.Faults{})
		b.model.SetFaults(virtiotest.Faults{})
	}()
	return wg.Wait
}

// TestOutageRecovery: with the default configuration (RACK off) a TCP
// echo survives a 400 ms outage of the link in its middle byte-exact, and
// the pools are back at baseline.
func TestOutageRecovery(t *testing.T) {
	a, b := virtioPair(t)
	stacktest.ServeEcho(t, b.s)
	wait := outage(a, b, 200, 400*time.Millisecond)
	start := time.Now()
	if err := stacktest.TCPEcho(a.s, "10.0.0.2:7", 2<<20, 3); err != nil {
		t.Fatal(err)
	}
	wait()
	if ms := a.model.Stats(); ms.Dropped == 0 {
		t.Fatalf("the outage dropped nothing: %+v", ms)
	}
	t.Logf("2 MiB echoed across a 400 ms outage in %v", time.Since(start).Round(time.Millisecond))
	stacktest.CheckQuiet(t, a.quiet(), b.quiet())
}

// BenchmarkLossRecovery echoes 1 MiB per operation with RACK off and on,
// under 2% random loss each way and across a 200 ms outage. The bytes per
// second it reports are the echo's payload.
func BenchmarkLossRecovery(b *testing.B) {
	const size = 1 << 20
	for _, rack := range []bool{false, true} {
		for _, loss := range []string{"random2pct", "outage200ms"} {
			b.Run(fmt.Sprintf("rack=%v/%s", rack, loss), func(bb *testing.B) {
				x, y := virtioPairWith(bb, Config{RACK: rack})
				stacktest.ServeEcho(bb, y.s)
				if loss == "random2pct" {
					x.model.SetFaults(virtiotest.Faults{Seed: 1, Drop: 0.02})
					y.model.SetFaults(virtiotest.Faults{Seed: 2, Drop: 0.02})
				}
				bb.SetBytes(size)
				bb.ResetTimer()
				for i := range bb.N {
					wait := func() {}
					if loss == "outage200ms" {
						wait = outage(x, y, 100, 200*time.Millisecond)
					}
					if err := stacktest.TCPEcho(x.s, "10.0.0.2:7", size, byte(i)); err != nil {
						bb.Fatal(err)
					}
					wait()
				}
			})
		}
	}
}
