package enet_test

// Host integration: two gVisor stacks back to back through two ENET device
// models, driven by the real driver, with and without fault injection
// (mirrors stack's virtio back-to-back test).

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/tamanet/tamanet/alloc"
	"github.com/tamanet/tamanet/nic"
	"github.com/tamanet/tamanet/nic/enet"
	"github.com/tamanet/tamanet/nic/enet/enettest"
	"github.com/tamanet/tamanet/stack"
	"github.com/tamanet/tamanet/stack/stacktest"
)

var addrA, addrB = stacktest.AddrA, stacktest.AddrB

// enode is one side: DMA memory, pool, device model, driver and stack.
type enode struct {
	pool     *alloc.Pool
	model    *enettest.Device
	drv      *enet.Driver
	s        *stack.Stack
	baseline int
}

func newEnode(t testing.TB, mac [6]byte, addr netip.Prefix, gw netip.Addr) *enode {
	t.Helper()
	mem := make([]byte, 4<<20)
	arena := alloc.NewArena(mem)
	pool, err := arena.Pool(alloc.Config{Count: 1024})
	if err != nil {
		t.Fatal(err)
	}
	model := enettest.New(arena.Memory(), enettest.Options{MAC: mac, TxAlign: enet.DefaultTxAlign})
	drv, err := enet.New(model, arena, pool, enet.Config{RxRing: 128, TxRing: 128})
	if err != nil {
		t.Fatal(err)
	}
	s, err := stack.New(drv, pool, stack.Config{Addr: addr, Gateway: gw})
	if err != nil {
		t.Fatal(err)
	}
	if s.MAC().String() != net.HardwareAddr(mac[:]).String() {
		t.Fatalf("stack MAC %v, want the device's %x", s.MAC(), mac)
	}
	// Frame-received and frame-sent events wake the poll loop.
	drv.EnableInterrupts(enet.EventRXF | enet.EventTXF)
	model.SetInterrupt(s.Wake)
	return &enode{pool: pool, model: model, drv: drv, s: s, baseline: pool.InUse()}
}

// quiet is n for stacktest.CheckQuiet.
func (n *enode) quiet() stacktest.Quiet {
	return stacktest.Quiet{Name: n.s.Config().Addr.String(), Pool: n.pool, Baseline: n.baseline, Wake: n.s.Wake}
}

func enetPair(t testing.TB) (a, b *enode) {
	t.Helper()
	a = newEnode(t, stacktest.MACA, addrA, addrB.Addr())
	b = newEnode(t, stacktest.MACB, addrB, addrA.Addr())
	enettest.Pipe(a.model, b.model)
	a.s.Start()
	b.s.Start()
	t.Cleanup(func() {
		a.s.Close()
		b.s.Close()
		a.drv.Close()
		b.drv.Close()
	})
	return a, b
}

func faults(seed uint64) enettest.Faults {
	return enettest.Faults{
		Seed:      seed,
		Drop:      0.05,
		Duplicate: 0.02,
		Reorder:   0.02,
		Corrupt:   0.01,
		BadLength: 0.005,
		RxError:   0.005,
		TxError:   0.005,
	}
}

func tcpSize(withFaults bool) int {
	switch {
	case raceEnabled || testing.Short():
		return 1 << 20
	case withFaults:
		return 4 << 20
	}
	return 16 << 20
}

// udpSizes are the UDP payload sizes echoed: every 7th and the edges.
func udpSizes() []int {
	var sizes []int
	for size := 1; size <= 1472; size++ {
		if size%7 == 0 || size <= 20 || size >= 1460 {
			sizes = append(sizes, size)
		}
	}
	return sizes
}

func TestStacksBackToBack(t *testing.T) {
	stacktest.CleanAndFaults(t, func(t *testing.T, withFaults bool) {
		a, b := enetPair(t)
		if withFaults {
			a.model.SetFaults(faults(1))
			b.model.SetFaults(faults(2))
		}
		suite := stacktest.Suite{
			A: a.s, B: b.s, AAddr: addrA.Addr(), BAddr: addrB.Addr(),
			Ping: stacktest.PingCheck{Count: 20, Wait: time.Second},
			UDP:  stacktest.UDPCheck{Sizes: udpSizes(), Wait: 2 * time.Second},
			// 16 connections of 32 KiB each.
			TCPSize: tcpSize(withFaults), Conns: 16, Each: 32 << 10,
		}
		if withFaults {
			// Each round trip crosses ~8% loss each way (drop,
			// error bits, bad lengths) plus held-back (reordered)
			// frames that arrive after the ping gave up: most, not
			// all, pings come back.
			suite.Ping.Lossy, suite.Ping.MinOK = true, 2*20/2
			suite.UDP.Wait, suite.UDP.Lossy = 100*time.Millisecond, true
		}
		suite.Run(t)
		if withFaults {
			a.model.SetFaults(enettest.Faults{})
			b.model.SetFaults(enettest.Faults{})
			b.model.Flush()
			a.model.Flush()
			checkFaultsCounted(t, a, b)
		}
		stacktest.CheckQuiet(t, a.quiet(), b.quiet())
	})
}

// checkFaultsCounted: every injected receive error and bad length was
// counted by the driver under its cause.
func checkFaultsCounted(t *testing.T, a, b *enode) {
	for _, n := range []*enode{a, b} {
		ms := n.model.Stats()
		var ns nic.Stats
		n.drv.Stats(&ns)
		t.Logf("%v model: dropped %d dup %d reordered %d corrupted %d bad_len %d rx_err %d tx_err %d; driver rx drops %v tx drops %v",
			n.s.Config().Addr, ms.Dropped, ms.Duplicated, ms.Reordered, ms.Corrupted, ms.BadLengths, ms.RxErrors, ms.TxErrors, ns.Rx.Drops, ns.Tx.Drops)
		if ms.Dropped == 0 || ms.Duplicated == 0 || ms.Corrupted == 0 {
			t.Errorf("%v: faults were not injected: %+v", n.s.Config().Addr, ms)
		}
		errs := ns.Rx.Drops[nic.CRC] + ns.Rx.Drops[nic.LengthViolation] + ns.Rx.Drops[nic.NonOctet] +
			ns.Rx.Drops[nic.Overrun] + ns.Rx.Drops[nic.Truncated]
		if errs != ms.RxErrors {
			t.Errorf("%v: %d receive errors injected, %d counted", n.s.Config().Addr, ms.RxErrors, errs)
		}
		if ms.BadLengths > 0 && ns.Rx.Drops[nic.BadLength] == 0 {
			t.Errorf("%v: %d bad lengths injected, none counted", n.s.Config().Addr, ms.BadLengths)
		}
		if ms.DeviceErrors != 0 || ms.BusErrors != 0 {
			t.Errorf("%v: the driver broke a rule: %+v", n.s.Config().Addr, ms)
		}
	}
}
