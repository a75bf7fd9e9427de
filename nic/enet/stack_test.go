package enet_test

// Host integration: two gVisor stacks back to back through two ENET device
// models, driven by the real driver, with and without fault injection
// (mirrors stack's virtio back-to-back test).

import (
	"net"
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

// newEnode is one side, its stack configured with scfg. The stack sees the
// driver through wrap when wrap is not nil (to hide an interface from it).
// The stack and driver are closed when the test ends.
func newEnode(t testing.TB, mac [6]byte, scfg stack.Config, cfg enet.Config, wrap func(nic.Device) nic.Device) *enode {
	t.Helper()
	return newEnodeModel(t, enettest.Options{MAC: mac, TxAlign: enet.DefaultTxAlign}, scfg, cfg, wrap)
}

// newEnodeModel is newEnode with the model's options (opt.MAC the station
// address).
func newEnodeModel(t testing.TB, opt enettest.Options, scfg stack.Config, cfg enet.Config, wrap func(nic.Device) nic.Device) *enode {
	t.Helper()
	mac := opt.MAC
	pool, model, drv := stacktest.ENET(t, opt, cfg)
	base := pool.InUse() // the posted ring, before the stack sends anything
	var dev nic.Device = drv
	if wrap != nil {
		dev = wrap(drv)
	}
	s, err := stack.New(dev, scfg)
	if err != nil {
		t.Fatal(err)
	}
	if s.MAC().String() != net.HardwareAddr(mac[:]).String() {
		t.Fatalf("stack MAC %v, want the device's %x", s.MAC(), mac)
	}
	// Frame-received and frame-sent events wake the poll loop.
	drv.EnableInterrupts(enet.EventRXF | enet.EventTXF)
	model.SetInterrupt(s.Wake)
	t.Cleanup(func() { s.Close(); drv.Close() })
	return &enode{pool: pool, model: model, drv: drv, s: s, baseline: base}
}

// quiet is n for stacktest.CheckQuiet.
func (n *enode) quiet() stacktest.Quiet {
	return stacktest.Quiet{Name: n.s.Config().Addr.String(), Pool: n.pool, Baseline: n.baseline, Wake: n.s.Wake}
}

func enetPair(t testing.TB) (a, b *enode) {
	t.Helper()
	return enetPairConfig(t, enet.Config{RxRing: 128, TxRing: 128})
}

func enetPairConfig(t testing.TB, cfg enet.Config) (a, b *enode) {
	t.Helper()
	a = newEnode(t, stacktest.MACA, stack.Config{Addr: addrA, Gateway: addrB.Addr()}, cfg, nil)
	b = newEnode(t, stacktest.MACB, stack.Config{Addr: addrB, Gateway: addrA.Addr()}, cfg, nil)
	enettest.Pipe(a.model, b.model)
	a.s.Start()
	b.s.Start()
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
	rxErrs := func(ns *nic.Stats) uint64 {
		return ns.Rx.Drops[nic.CRC] + ns.Rx.Drops[nic.LengthViolation] + ns.Rx.Drops[nic.NonOctet] +
			ns.Rx.Drops[nic.Overrun] + ns.Rx.Drops[nic.Truncated]
	}
	for _, n := range []*enode{a, b} {
		ms := n.model.Stats()
		var ns nic.Stats
		n.drv.Stats(&ns)
		// The last frames Flush delivered may still wait in the
		// receive ring for the poll loop.
		for deadline := time.Now().Add(5 * time.Second); rxErrs(&ns) != ms.RxErrors && time.Now().Before(deadline); {
			n.s.Wake()
			time.Sleep(time.Millisecond)
			n.drv.Stats(&ns)
		}
		t.Logf("%v model: dropped %d dup %d reordered %d corrupted %d bad_len %d rx_err %d tx_err %d; driver rx drops %v tx drops %v",
			n.s.Config().Addr, ms.Dropped, ms.Duplicated, ms.Reordered, ms.Corrupted, ms.BadLengths, ms.RxErrors, ms.TxErrors, ns.Rx.Drops, ns.Tx.Drops)
		if ms.Dropped == 0 || ms.Duplicated == 0 || ms.Corrupted == 0 {
			t.Errorf("%v: faults were not injected: %+v", n.s.Config().Addr, ms)
		}
		if errs := rxErrs(&ns); errs != ms.RxErrors {
			t.Errorf("%v: %d receive errors injected, %d counted", n.s.Config().Addr, ms.RxErrors, errs)
		}
		if ms.BadLengths > 0 && ns.Rx.Drops[nic.BadLength] == 0 {
			t.Errorf("%v: %d bad lengths injected, none counted", n.s.Config().Addr, ms.BadLengths)
		}
		if ms.DeviceErrors != 0 || ms.BusErrors != 0 {
			t.Errorf("%v: the driver broke a rule: %+v", n.s.Config().Addr, ms)
		}
		// Lost, duplicated, corrupted frames and error bits are not
		// a MAC that needs a reset.
		if ns.Resets != 0 || ns.Rx.Drops[nic.Stale]+ns.Rx.Drops[nic.Duplicate]+ns.Tx.Drops[nic.Stale]+ns.Tx.Drops[nic.Duplicate] != 0 {
			t.Errorf("%v: %d resets (%s), untrusted completions counted: rx %v tx %v", n.s.Config().Addr, ns.Resets, ns.ResetReason, ns.Rx.Drops, ns.Tx.Drops)
		}
	}
}

// TestResetMidTransfer: TCP transfers each way survive MAC resets in their
// middle byte-exact. During the upload A's transmit ring wedges and B's MAC
// loses its place in its receive ring; during the download the same happens
// the other way round, and bus errors hit A. The stacks' own Maintain
// (every 250 ms) finds and resets each; the pools are back at baseline
// afterwards.
func TestResetMidTransfer(t *testing.T) {
	a, b := enetPairConfig(t, enet.Config{RxRing: 128, TxRing: 128, TxTimeout: 100 * time.Millisecond})
	stacktest.StartServices(t, b.s)
	size := 8 << 20
	if raceEnabled || testing.Short() {
		size = 2 << 20
	}
	at := func(port string) string { return net.JoinHostPort(addrB.Addr().String(), port) }

	// inject runs f once n has sent or received (rx) frames more frames
	// from now; the returned channel is closed when it has.
	inject := func(n *enode, rx bool, frames uint64, f func()) <-chan struct{} {
		count := func() uint64 {
			if st := n.model.Stats(); rx {
				return st.RxFrames
			} else {
				return st.TxFrames
			}
		}
		start := count()
		fired := make(chan struct{})
		go func() {
			deadline := time.Now().Add(time.Minute)
			for count() < start+frames && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			f()
			close(fired)
		}()
		return fired
	}
	midway := func(what string, fired ...<-chan struct{}) {
		for _, c := range fired {
			select {
			case <-c:
			default:
				t.Fatalf("%s: a fault was injected only after the transfer ended", what)
			}
		}
	}
	resets := func(n *enode) nic.Stats {
		var s nic.Stats
		n.drv.Stats(&s)
		return s
	}

	f1 := inject(a, false, 300, a.model.WedgeTx)
	f2 := inject(b, true, 600, b.model.SkipRx)
	stacktest.Upload(t, a.s, at(stacktest.PortSHA), size)
	midway("upload", f1, f2)
	sa, sb := resets(a), resets(b)
	t.Logf("after upload: A resets %d (%s), B resets %d (%s)", sa.Resets, sa.ResetReason, sb.Resets, sb.ResetReason)
	if sa.Resets != 1 || sa.ResetReason != "tx timeout" || sb.Resets != 1 || sb.ResetReason != "rx ring stuck" {
		t.Fatalf("after the upload: A %d resets (%q), B %d (%q)", sa.Resets, sa.ResetReason, sb.Resets, sb.ResetReason)
	}

	f1 = inject(b, false, 300, b.model.WedgeTx)
	f2 = inject(a, true, 600, func() {
		a.model.SkipRx()
		// The bus errors come 300 frames after that ring was reset,
		// not 300 after the skip: injected while it is still stuck, a
		// reset for them clears the skip before Maintain has seen it
		// twice, and no "rx ring stuck" reset is counted. The frame
		// counts are polled, so both could fire in the same poll.
		for deadline := time.Now().Add(time.Minute); resets(a).Resets < 2 && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
	})
	f3 := make(chan struct{})
	go func() {
		<-f2
		<-inject(a, true, 300, func() { a.model.BusErrors(2) })
		close(f3)
	}()
	stacktest.Download(t, a.s, at(stacktest.PortGen), size)
	midway("download", f1, f2, f3)
	sa, sb = resets(a), resets(b)
	t.Logf("after download: A resets %d (%s), B resets %d (%s)", sa.Resets, sa.ResetReason, sb.Resets, sb.ResetReason)
	if sa.Resets != 4 || sa.ResetReason != "bus error" || sb.Resets != 2 || sb.ResetReason != "tx timeout" {
		t.Fatalf("after the download: A %d resets (%q), B %d (%q)", sa.Resets, sa.ResetReason, sb.Resets, sb.ResetReason)
	}
	for _, n := range []*enode{a, b} {
		if ms := n.model.Stats(); ms.DeviceErrors != 0 {
			t.Errorf("%v: the driver broke a rule: %+v", n.s.Config().Addr, ms)
		}
	}
	stacktest.CheckQuiet(t, a.quiet(), b.quiet())
}

// TestStacksCheckingMAC: two stacks over MACs that check receive
// checksums and discard wrong frames (the real i.MX6UL with
// Config.RxChecksum: RACC.IPDIS/PRODIS). Everything gVisor sends passes the
// check, so the suite runs as over QEMU's MAC; frames corrupted on the way
// are discarded by the MAC (counted in the model, not the driver) and TCP
// recovers them.
func TestStacksCheckingMAC(t *testing.T) {
	cfg := enet.Config{RxRing: 128, TxRing: 128, RxChecksum: true}
	opt := func(mac [6]byte) enettest.Options {
		return enettest.Options{MAC: mac, TxAlign: enet.DefaultTxAlign, RxChecksum: true}
	}
	a := newEnodeModel(t, opt(stacktest.MACA), stack.Config{Addr: addrA, Gateway: addrB.Addr()}, cfg, nil)
	b := newEnodeModel(t, opt(stacktest.MACB), stack.Config{Addr: addrB, Gateway: addrA.Addr()}, cfg, nil)
	enettest.Pipe(a.model, b.model)
	a.s.Start()
	b.s.Start()
	a.model.SetFaults(enettest.Faults{Seed: 11, Corrupt: 0.02})
	b.model.SetFaults(enettest.Faults{Seed: 12, Corrupt: 0.02})
	suite := stacktest.Suite{
		A: a.s, B: b.s, AAddr: addrA.Addr(), BAddr: addrB.Addr(),
		Ping:    stacktest.PingCheck{Count: 20, Wait: time.Second, Lossy: true, MinOK: 10},
		UDP:     stacktest.UDPCheck{Sizes: udpSizes(), Wait: 100 * time.Millisecond, Lossy: true},
		TCPSize: 1 << 20, Conns: 4, Each: 32 << 10,
	}
	suite.Run(t)
	a.model.SetFaults(enettest.Faults{})
	b.model.SetFaults(enettest.Faults{})
	for _, n := range []*enode{a, b} {
		ms := n.model.Stats()
		t.Logf("%v: corrupted %d, checksum errors %d, discarded %d", n.s.Config().Addr, ms.Corrupted, ms.ChecksumErrors, ms.ChecksumDiscards)
		if ms.ChecksumDiscards == 0 || ms.ChecksumDiscards != ms.ChecksumErrors || ms.DeviceErrors != 0 {
			t.Errorf("%v: %d checksum errors, %d discarded, %d device errors", n.s.Config().Addr, ms.ChecksumErrors, ms.ChecksumDiscards, ms.DeviceErrors)
		}
	}
	stacktest.CheckQuiet(t, a.quiet(), b.quiet())
}
