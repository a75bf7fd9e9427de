package stack

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tamanet/tamanet/alloc"
	"github.com/tamanet/tamanet/nic"
	"github.com/tamanet/tamanet/nic/nictest"
	"github.com/tamanet/tamanet/stack/stacktest"
)

var addrA, addrB = stacktest.AddrA, stacktest.AddrB

func newPool(t testing.TB, n int) *alloc.Pool {
	t.Helper()
	p, err := alloc.New(make([]byte, n*2048+alloc.Alignment), alloc.Config{Count: n})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// fakePair returns two running stacks joined by in-memory devices whose
// receive interrupt wakes the peer's poll loop.
func fakePair(t testing.TB) (a, b *Stack, da, db *nictest.Device) {
	t.Helper()
	pa, pb := newPool(t, 1024), newPool(t, 1024)
	da = nictest.New(pa, nictest.Config{MAC: stacktest.MACA})
	db = nictest.New(pb, nictest.Config{MAC: stacktest.MACB})
	nictest.Pipe(da, db)
	var err error
	if a, err = New(da, Config{Addr: addrA, Gateway: addrB.Addr()}); err != nil {
		t.Fatal(err)
	}
	if b, err = New(db, Config{Addr: addrB}); err != nil {
		t.Fatal(err)
	}
	da.OnReceive, db.OnReceive = a.Wake, b.Wake
	a.Start()
	b.Start()
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b, da, db
}

func TestConfigValidate(t *testing.T) {
	pool := newPool(t, 16)
	dev := nictest.New(pool, nictest.Config{MAC: [6]byte{2, 0, 0, 0, 0, 1}})
	bad := []struct {
		cfg  Config
		want string
	}{
		{Config{}, "no address"},
		{Config{Addr: netip.MustParsePrefix("fd00::1/64")}, "not IPv4"},
		{Config{Addr: netip.MustParsePrefix("10.0.0.1/0")}, "out of range"},
		{Config{Addr: netip.MustParsePrefix("0.0.0.0/24")}, "not a unicast"},
		{Config{Addr: netip.MustParsePrefix("224.0.0.1/24")}, "not a unicast"},
		{Config{Addr: netip.MustParsePrefix("10.0.0.0/24")}, "network or broadcast"},
		{Config{Addr: netip.MustParsePrefix("10.0.0.255/24")}, "network or broadcast"},
		{Config{Addr: addrA, Gateway: netip.MustParseAddr("10.0.1.1")}, "outside"},
		{Config{Addr: addrA, Gateway: addrA.Addr()}, "own address"},
		{Config{Addr: addrA, Gateway: netip.MustParseAddr("fd00::1")}, "not IPv4"},
		{Config{Addr: addrA, Tick: -1}, "negative tick"},
	}
	for _, c := range bad {
		_, err := New(dev, c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want %q", c.cfg, err, c.want)
		}
	}
	s, err := New(dev, Config{Addr: netip.MustParsePrefix("10.0.0.1/32")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.MAC().String() != "02:00:00:00:00:01" || s.Config().Tick != DefaultTick || s.Config().RxBudget != DefaultRxBudget {
		t.Fatalf("mac %v cfg %+v", s.MAC(), s.Config())
	}
}

func TestPing(t *testing.T) {
	a, b, _, _ := fakePair(t)
	stacktest.Ping(t, a, b, addrA.Addr(), addrB.Addr(), stacktest.PingCheck{Count: 5, Wait: 10 * time.Second, Total: 10 * time.Second})
	st := a.Stats()
	icmp, _ := st.TCPIP["icmp"].(map[string]any)
	if icmp == nil {
		t.Fatalf("no ICMP counters in %v", st.TCPIP)
	}
	if st.Endpoint.Rx.Packets == 0 || st.Endpoint.Tx.Packets == 0 || st.NIC.Tx.Kicks == 0 {
		t.Fatalf("stats %+v", st)
	}
	// A host that does not exist does not answer.
	short, cancel2 := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel2()
	if _, err := a.Ping(short, netip.MustParseAddr("10.0.0.9"), 1, nil); err == nil {
		t.Fatal("ping to an absent host succeeded")
	}
}

func TestUDP(t *testing.T) {
	a, b, _, _ := fakePair(t)
	stacktest.ServeEcho(t, b)
	stacktest.UDPEcho(t, a, stacktest.UDPCheck{Addr: "10.0.0.2:7", Sizes: []int{1, 100, 1472}, Wait: 20 * time.Second})
}

// dialEcho connects a to b's echo service (10.0.0.2:7) with 20 s to do
// it and 20 s for what follows; the connection closes with the test.
func dialEcho(t *testing.T, a *Stack) net.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := a.Dial(ctx, "tcp", "10.0.0.2:7")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return c
}

func TestTCP(t *testing.T) {
	a, b, _, _ := fakePair(t)
	stacktest.ServeEcho(t, b)
	c := dialEcho(t, a)
	if err := stacktest.EchoConn(c, 1<<20, 0); err != nil {
		t.Fatal(err)
	}
	if la := c.LocalAddr().(*net.TCPAddr); !la.IP.Equal(addrA.Addr().AsSlice()) {
		t.Fatalf("local address %v", la)
	}
	// A closed port refuses.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := a.Dial(ctx, "tcp", "10.0.0.2:9"); err == nil {
		t.Fatal("dial to a closed port succeeded")
	}
}

func TestSocketMapping(t *testing.T) {
	a, b, _, _ := fakePair(t)
	ctx := context.Background()
	// TCP listen through the SocketFunc signature, as tamago's net calls it
	// for net.Listen("tcp", ":8080") (family may be AF_INET6 for a wildcard).
	v, err := b.Socket(ctx, "tcp", syscall.AF_INET6, syscall.SOCK_STREAM, &net.TCPAddr{Port: 8080}, nil)
	if err != nil {
		t.Fatal(err)
	}
	l, ok := v.(net.Listener)
	if !ok {
		t.Fatalf("listen returned %T", v)
	}
	defer l.Close()
	go stacktest.EchoTCP(l)
	// TCP dial bound to a local port.
	v, err = a.Socket(ctx, "tcp4", syscall.AF_INET, syscall.SOCK_STREAM, &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 4242}, &net.TCPAddr{IP: net.IPv4(10, 0, 0, 2), Port: 8080})
	if err != nil {
		t.Fatal(err)
	}
	c := v.(net.Conn)
	if c.LocalAddr().(*net.TCPAddr).Port != 4242 {
		t.Fatalf("bound dial local %v", c.LocalAddr())
	}
	c.Write([]byte("hi"))
	buf := make([]byte, 2)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hi" {
		t.Fatalf("%q %v", buf, err)
	}
	c.Close()
	// UDP listen: a PacketConn whose ReadFrom yields *net.UDPAddr (tamago's
	// netFD.readFrom type-asserts it).
	v, err = b.Socket(ctx, "udp", syscall.AF_INET, syscall.SOCK_DGRAM, &net.UDPAddr{Port: 53}, nil)
	if err != nil {
		t.Fatal(err)
	}
	pc := v.(net.PacketConn)
	defer pc.Close()
	u, err := a.Socket(ctx, "udp", syscall.AF_INET, syscall.SOCK_DGRAM, nil, &net.UDPAddr{IP: net.IPv4(10, 0, 0, 2), Port: 53})
	if err != nil {
		t.Fatal(err)
	}
	uc := u.(net.Conn)
	defer uc.Close()
	uc.Write([]byte("q"))
	pc.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, from, err := pc.ReadFrom(buf)
	if err != nil || n != 1 {
		t.Fatal(err)
	}
	if ua, ok := from.(*net.UDPAddr); !ok || !ua.IP.Equal(net.IPv4(10, 0, 0, 1)) {
		t.Fatalf("from %#v", from)
	}
	// Refusals.
	for _, c := range []struct {
		network      string
		sotype       int
		laddr, raddr net.Addr
	}{
		{"tcp6", syscall.SOCK_STREAM, &net.TCPAddr{Port: 1}, nil},
		{"tcp", syscall.SOCK_STREAM, &net.TCPAddr{IP: net.ParseIP("fd00::1"), Port: 1}, nil},
		{"tcp", syscall.SOCK_RAW, &net.TCPAddr{Port: 1}, nil},
		{"tcp", syscall.SOCK_STREAM, &net.UnixAddr{Name: "x"}, nil},
	} {
		if v, err := a.Socket(ctx, c.network, syscall.AF_INET, c.sotype, c.laddr, c.raddr); err == nil {
			t.Errorf("%+v accepted: %T", c, v)
		}
	}
	// Nil typed addresses (tamago passes them for an unbound dial) are nil.
	if _, ok, err := fullAddr((*net.TCPAddr)(nil)); ok || err != nil {
		t.Fatalf("typed nil: %v %v", ok, err)
	}
}

func TestConcurrentTCP(t *testing.T) {
	a, b, _, _ := fakePair(t)
	stacktest.ServeEcho(t, b)
	stacktest.EchoConns(t, a, "10.0.0.2:7", 16, 64<<10)
}

func TestStatsJSON(t *testing.T) {
	a, b, _, _ := fakePair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := a.Ping(ctx, addrB.Addr(), 1, []byte("x")); err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(a.Stats())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(js, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"uptime_seconds", "pool", "nic", "endpoint", "poll", "tcpip"} {
		if _, ok := m[k]; !ok {
			t.Fatalf("stats JSON lacks %q: %s", k, js)
		}
	}
	tcpip := m["tcpip"].(map[string]any)
	ip := tcpip["ip"].(map[string]any)
	if ip["packets_received"].(float64) < 1 || ip["packets_sent"].(float64) < 1 {
		t.Fatalf("ip counters %v", ip)
	}
	// Embedded counter groups are flattened into their parent.
	sent, _ := tcpip["icmp"].(map[string]any)["v4"].(map[string]any)["packets_sent"].(map[string]any)
	if sent["echo_request"].(float64) < 1 {
		t.Fatalf("icmp sent counters %v", sent)
	}
	drops := m["endpoint"].(map[string]any)["rx"].(map[string]any)["drops"].(map[string]any)
	if _, ok := drops[nic.Filtered.String()]; !ok {
		t.Fatalf("drops by cause missing: %v", drops)
	}
	_ = b
}

// TestStatsConns checks that Stats lists an open connection on both sides
// with its addresses and state, leaves the listener out, and shows the
// closing side's state once the client closes.
func TestStatsConns(t *testing.T) {
	a, b, _, _ := fakePair(t)
	if st := b.Stats(); st.TCPTotal != 0 {
		t.Fatalf("before any connection: %d listed: %v", st.TCPTotal, st.TCP)
	}
	stacktest.ServeEcho(t, b)
	c := dialEcho(t, a)
	if err := stacktest.EchoConn(c, 1000, 0); err != nil {
		t.Fatal(err)
	}
	local := c.LocalAddr().String()
	for _, side := range []struct {
		s             *Stack
		local, remote string
	}{{a, local, "10.0.0.2:7"}, {b, "10.0.0.2:7", local}} {
		st := side.s.Stats()
		want := Conn{Local: side.local, Remote: side.remote, State: "ESTABLISHED"}
		if st.TCPTotal != 1 || len(st.TCP) != 1 || st.TCP[0] != want {
			t.Fatalf("%s: %d connections %v, want [%v]", side.local, st.TCPTotal, st.TCP, want)
		}
	}
	c.Close()
	// The client's FIN leaves it in FIN-WAIT or TIME-WAIT; the echo
	// server closes its side, so b's connection goes.
	deadline := time.Now().Add(10 * time.Second)
	for st := a.Stats(); len(st.TCP) != 1 || st.TCP[0].State == "ESTABLISHED"; st = a.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("after Close: %v", st.TCP)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSnake(t *testing.T) {
	for in, want := range map[string]string{
		"ICMP": "icmp", "PacketsReceived": "packets_received", "V4": "v4",
		"IPTablesPreroutingDropped": "ip_tables_prerouting_dropped", "TCP": "tcp",
		"MalformedRcvdPackets": "malformed_rcvd_packets", "ARP": "arp",
		"NICs": "nics", "ICMPv4PacketStats": "icmpv4_packet_stats", "TCPIP": "tcpip",
	} {
		if got := snake(in); got != want {
			t.Errorf("snake(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPollIdle(t *testing.T) {
	pool := newPool(t, 64)
	dev := nictest.New(pool, nictest.Config{MAC: [6]byte{2, 0, 0, 0, 0, 1}, RxRing: 32})
	s, err := New(dev, Config{Addr: addrA, Tick: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if work, next := s.Poll(); work != 0 || next != 5*time.Millisecond {
		t.Fatalf("idle poll: %d, %v", work, next)
	}
	// A frame for someone else is still work for the step.
	f := make([]byte, 60)
	copy(f, []byte{2, 9, 9, 9, 9, 9})
	dev.Inject(f)
	if work, next := s.Poll(); work != 1 || next != 0 {
		t.Fatalf("busy poll: %d, %v", work, next)
	}
	if st := s.Stats(); st.Endpoint.Rx.Drops[nic.Filtered] != 1 || st.Pool.InUse != 32 {
		t.Fatalf("stats %+v", st)
	}
	// The runner sleeps when idle and a Wake ends the sleep at once.
	s.Start()
	time.Sleep(30 * time.Millisecond)
	st := s.Stats()
	if st.Poll.Sleeps == 0 || st.Poll.Steps > 100 {
		t.Fatalf("idle runner: %+v", st.Poll)
	}
	s.Wake()
	time.Sleep(time.Millisecond)
	if s.Stats().Poll.Wakes == 0 {
		t.Fatal("Wake did not end the sleep")
	}
}

// BenchmarkStackUDPRoundTrip measures a UDP echo round trip through two
// full stacks (gVisor included) over the in-memory devices, and reports
// allocations per packet (two packets per round trip).
func BenchmarkStackUDPRoundTrip(b *testing.B) {
	a, s, _, _ := fakePair(b)
	stacktest.ServeEcho(b, s)
	c, err := a.Dial(context.Background(), "udp", "10.0.0.2:7")
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	msg := make([]byte, 64)
	buf := make([]byte, 2048)
	c.SetDeadline(time.Now().Add(time.Minute))
	c.Write(msg)
	c.Read(buf)
	b.ReportAllocs()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := c.Read(buf); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	runtime.ReadMemStats(&m1)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(2*b.N), "ns/packet")
	// All goroutines: both stacks, the echo server and the poll loops.
	b.ReportMetric(float64(m1.Mallocs-m0.Mallocs)/float64(2*b.N), "allocs/packet")
}
