package stack

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tamanet/tamanet/nic/nictest"
	"github.com/tamanet/tamanet/nic/virtio/virtiotest"
	"github.com/tamanet/tamanet/stack/stacktest"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// wakeLater returns a device OnReceive hook that wakes the stack stored in
// p once there is one. With IPv6 a stack transmits (DAD) from New on, so
// the hook must be in place before New returns the stack it wakes.
func wakeLater(p *atomic.Pointer[Stack]) func() {
	return func() {
		if s := p.Load(); s != nil {
			s.Wake()
		}
	}
}

// fakePair6 is fakePair with IPv6 on and the static test addresses.
func fakePair6(t testing.TB) (a, b *Stack) {
	t.Helper()
	pa, pb := newPool(t, 1024), newPool(t, 1024)
	da := nictest.New(pa, nictest.Config{MAC: stacktest.MACA})
	db := nictest.New(pb, nictest.Config{MAC: stacktest.MACB})
	var wa, wb atomic.Pointer[Stack]
	da.OnReceive, db.OnReceive = wakeLater(&wa), wakeLater(&wb)
	nictest.Pipe(da, db)
	var err error
	if a, err = New(da, Config{Addr: addrA, IPv6: true, Addr6: stacktest.Addr6A}); err != nil {
		t.Fatal(err)
	}
	if b, err = New(db, Config{Addr: addrB, IPv6: true, Addr6: stacktest.Addr6B}); err != nil {
		t.Fatal(err)
	}
	wa.Store(a)
	wb.Store(b)
	a.Start()
	b.Start()
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func TestIPv6Groups(t *testing.T) {
	a, _ := fakePair6(t)
	want := [][6]byte{
		{0x33, 0x33, 0, 0, 0, 1},          // all-nodes
		{0x33, 0x33, 0xff, 0x00, 0x00, 1}, // fe80::ff:fe00:1 (from MACA)
		{0x33, 0x33, 0xff, 0x10, 0x00, 1}, // fd00::10:1
	}
	if g := a.Groups(); !slices.Equal(g, want) {
		t.Fatalf("groups %x, want %x", g, want)
	}
}

func TestIPv6BackToBack(t *testing.T) {
	a, b := fakePair6(t)
	stacktest.WaitPing(t, a, stacktest.Addr6B.Addr(), 10*time.Second)
	stacktest.WaitPing(t, b, stacktest.Addr6A.Addr(), 10*time.Second)
	// Link-local, derived from the MAC.
	stacktest.WaitPing(t, a, stacktest.LinkLocal(stacktest.MACB), 10*time.Second)
	suite6(a, b).Run(t)
}

// suite6 is the link check over the static IPv6 addresses, a at Addr6A
// the client.
func suite6(a, b stacktest.Pinger) stacktest.Suite {
	return stacktest.Suite{
		A: a, B: b, AAddr: stacktest.Addr6A.Addr(), BAddr: stacktest.Addr6B.Addr(),
		Ping: stacktest.PingCheck{Count: 10, Wait: time.Second, Total: 30 * time.Second},
		// 1452 = 1500 - 40 (IPv6) - 8 (UDP).
		UDP:     stacktest.UDPCheck{Sizes: stacktest.AllSizes(1, 1452), Wait: 2 * time.Second},
		TCPSize: 4 << 20, Conns: 16, Each: 64 << 10,
	}
}

// TestDualStack: a "tcp"/"udp" wildcard socket serves both families, as
// net.Listen(":7") does on Linux; "tcp6" is IPv6 only, "tcp4" IPv4 only.
func TestDualStack(t *testing.T) {
	a, b := fakePair6(t)
	stacktest.WaitPing(t, a, stacktest.Addr6B.Addr(), 10*time.Second)
	stacktest.ServeEcho(t, b) // "tcp" and "udp" on :7
	for _, dst := range []string{"10.0.0.2:7", "[fd00::10:2]:7", "[" + stacktest.LinkLocal(stacktest.MACB).String() + "]:7"} {
		for _, network := range []string{"tcp", "udp"} {
			if err := echoOnce(a, network, dst); err != nil {
				t.Errorf("%s %s: %v", network, dst, err)
			}
		}
	}
	l6, err := b.Listen("tcp6", ":8")
	if err != nil {
		t.Fatal(err)
	}
	defer l6.Close()
	go stacktest.EchoTCP(l6)
	l4, err := b.Listen("tcp4", ":9")
	if err != nil {
		t.Fatal(err)
	}
	defer l4.Close()
	go stacktest.EchoTCP(l4)
	for _, c := range []struct {
		dst string
		ok  bool
	}{{"[fd00::10:2]:8", true}, {"10.0.0.2:8", false}, {"10.0.0.2:9", true}, {"[fd00::10:2]:9", false}} {
		err := echoOnce(a, "tcp", c.dst)
		if (err == nil) != c.ok {
			t.Errorf("tcp %s: %v, want ok=%v", c.dst, err, c.ok)
		}
	}
	// Accepted connections report the peer's real address.
	pc, err := b.ListenPacket("udp6", "[fd00::10:2]:10")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	u, err := a.Dial(context.Background(), "udp6", "[fd00::10:2]:10")
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	u.Write([]byte("x"))
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 8)
	if _, from, err := pc.ReadFrom(buf); err != nil || !from.(*net.UDPAddr).IP.Equal(net.ParseIP("fd00::10:1")) {
		t.Fatalf("from %v: %v", from, err)
	}
}

// echoOnce sends one message to an echo service and checks the answer.
func echoOnce(n *Stack, network, addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := n.Dial(ctx, network, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return stacktest.EchoConn(c, 100, 3)
}

func TestIPv6SocketRefusals(t *testing.T) {
	a, _ := fakePair6(t)
	ctx := context.Background()
	for _, c := range []struct {
		network      string
		laddr, raddr net.Addr
	}{
		{"tcp4", &net.TCPAddr{IP: net.ParseIP("fd00::1"), Port: 1}, nil},
		{"tcp6", &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 1}, nil},
		{"tcp", &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1)}, &net.TCPAddr{IP: net.ParseIP("fd00::2"), Port: 1}},
		{"tcp", &net.TCPAddr{IP: net.IP{1, 2, 3}, Port: 1}, nil},
	} {
		if v, err := a.Socket(ctx, c.network, syscall.AF_INET6, syscall.SOCK_STREAM, c.laddr, c.raddr); err == nil {
			t.Errorf("%+v accepted: %T", c, v)
		}
	}
	// Without Config.IPv6, IPv6 sockets fail with ErrIPv6.
	pool := newPool(t, 64)
	s, err := New(nictest.New(pool, nictest.Config{MAC: stacktest.MACA, RxRing: 16}), Config{Addr: addrA})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Listen("tcp6", ":1"); err != ErrIPv6 {
		t.Errorf("tcp6 without IPv6: %v", err)
	}
	if _, err := s.Ping(ctx, netip.MustParseAddr("fd00::1"), 1, nil); err != ErrIPv6 {
		t.Errorf("ping6 without IPv6: %v", err)
	}
	if _, err := New(nictest.New(pool, nictest.Config{MAC: stacktest.MACB}), Config{Addr: addrA, Addr6: stacktest.Addr6A}); err == nil {
		t.Error("Addr6 without IPv6 accepted")
	}
}

// TestIPv6Virtio runs the IPv6 suite over two virtio-net device models.
// Without VIRTIO_NET_F_CTRL_RX the device has no receive filter to program
// (QEMU's virtio-net starts promiscuous, and only the control queue turns
// that off), so the driver does not negotiate it and gets all multicast.
func TestIPv6Virtio(t *testing.T) {
	// VIRTIO_NET_F_CTRL_VQ and VIRTIO_NET_F_CTRL_RX (virtio 1.2 section
	// 5.1.3), offered as QEMU does.
	const featureCtrlRx = 1<<17 | 1<<18
	mk := func(mac [6]byte, addr, addr6 netip.Prefix) *vnode {
		n := newVnode(t, virtiotest.Options{MAC: mac, Features: virtiotest.Features | featureCtrlRx}, Config{Addr: addr, IPv6: true, Addr6: addr6})
		t.Cleanup(n.close)
		if n.drv.Features()&(1<<18) != 0 {
			t.Fatal("driver negotiated VIRTIO_NET_F_CTRL_RX")
		}
		return n
	}
	a := mk(stacktest.MACA, addrA, stacktest.Addr6A)
	b := mk(stacktest.MACB, addrB, stacktest.Addr6B)
	virtiotest.Pipe(a.model, b.model)
	a.s.Start()
	b.s.Start()
	stacktest.WaitPing(t, a.s, stacktest.Addr6B.Addr(), 10*time.Second)
	suite6(a.s, b.s).Run(t)
	stacktest.CheckQuiet(t, a.quiet(), b.quiet())
}

// routerAdvert builds a router advertisement from fe80::1 (MAC rmac) to
// all-nodes with one prefix information option (L and A set) for prefix
// (RFC 4861 section 4.2 and 4.6.2).
func routerAdvert(rmac [6]byte, prefix netip.Prefix, lifetime uint16) []byte {
	const raLen = 16 + 32 // RA body + prefix information option
	f := make([]byte, 14+40+raLen)
	copy(f[0:6], []byte{0x33, 0x33, 0, 0, 0, 1})
	copy(f[6:12], rmac[:])
	binary.BigEndian.PutUint16(f[12:], 0x86dd)
	ip := header.IPv6(f[14:])
	src, dst := tcpip.AddrFrom16([16]byte{0: 0xfe, 1: 0x80, 15: 1}), header.IPv6AllNodesMulticastAddress
	ip.Encode(&header.IPv6Fields{PayloadLength: raLen, TransportProtocol: header.ICMPv6ProtocolNumber, HopLimit: 255, SrcAddr: src, DstAddr: dst})
	ra := f[14+40:]
	ra[0] = byte(header.ICMPv6RouterAdvert)
	ra[4] = 64                                   // cur hop limit
	binary.BigEndian.PutUint16(ra[6:], lifetime) // router lifetime, s
	opt := ra[16:]
	opt[0], opt[1] = 3, 4                      // prefix information, 4×8 bytes
	opt[2], opt[3] = byte(prefix.Bits()), 0xc0 // L, A
	binary.BigEndian.PutUint32(opt[4:], 3600)  // valid lifetime
	binary.BigEndian.PutUint32(opt[8:], 1800)  // preferred lifetime
	a := prefix.Addr().As16()
	copy(opt[16:], a[:])
	h := header.ICMPv6(ra)
	h.SetChecksum(header.ICMPv6Checksum(header.ICMPv6ChecksumParams{Header: h, Src: src, Dst: dst}))
	return f
}

// TestRouterAdvertisement: an RA gives a SLAAC address in its prefix, an
// on-link route for the prefix and a default route via the router, and
// the solicited-node group of the new address joins the filter set.
func TestRouterAdvertisement(t *testing.T) {
	pool := newPool(t, 128)
	dev := nictest.New(pool, nictest.Config{MAC: stacktest.MACA, RxRing: 32})
	var ws atomic.Pointer[Stack]
	dev.OnReceive = wakeLater(&ws)
	s, err := New(dev, Config{Addr: addrA, IPv6: true})
	if err != nil {
		t.Fatal(err)
	}
	ws.Store(s)
	s.Start()
	defer s.Close()
	prefix := netip.MustParsePrefix("fd00:0:0:2::/64")
	rmac := [6]byte{2, 0, 0, 0, 0, 0x99}
	// The RA must come after the link-local address passed DAD (1 s):
	// gVisor ignores RAs before.
	slaac := netip.MustParseAddr("fd00:0:0:2:0:ff:fe00:1")
	deadline := time.Now().Add(10 * time.Second)
	for !slices.Contains(s.Addrs6(), netip.PrefixFrom(slaac, 64)) {
		if time.Now().After(deadline) {
			t.Fatalf("no SLAAC address %v after RAs: %v", slaac, s.Addrs6())
		}
		dev.Inject(routerAdvert(rmac, prefix, 1800))
		time.Sleep(300 * time.Millisecond)
	}
	// Routes come at the next poll step.
	deadline = time.Now().Add(5 * time.Second)
	var onLink, dflt bool
	for !(onLink && dflt) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		onLink, dflt = false, false
		for _, r := range s.GVisor().GetRouteTable() {
			onLink = onLink || (r.Destination.String() == "fd00:0:0:2::/64" && r.Gateway.BitLen() == 0)
			dflt = dflt || (r.Destination.Prefix() == 0 && r.Destination.ID().BitLen() == 128 && r.Gateway == tcpip.AddrFrom16([16]byte{0: 0xfe, 1: 0x80, 15: 1}))
		}
	}
	if !onLink || !dflt {
		t.Fatalf("routes after RA: %v", s.GVisor().GetRouteTable())
	}
	// A router lifetime of 0 withdraws the default route.
	deadline = time.Now().Add(5 * time.Second)
	for {
		dev.Inject(routerAdvert(rmac, prefix, 0))
		time.Sleep(50 * time.Millisecond)
		dflt = false
		for _, r := range s.GVisor().GetRouteTable() {
			dflt = dflt || r.Gateway.BitLen() == 128
		}
		if !dflt {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("default route still there after a zero router lifetime: %v (RAs received %v)", s.GVisor().GetRouteTable(), s.GVisor().Stats().ICMP.V6.PacketsReceived.RouterAdvert.Value())
		}
	}
}
