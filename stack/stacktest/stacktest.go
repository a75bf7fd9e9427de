// Package stacktest is test support for two stacks back to back, or one
// stack against Linux over a tap: the echo and checksum services, the checks
// every link must pass (ping both ways, UDP echo of every size, TCP
// transfers each way checked by SHA-256, concurrent echo connections), the
// check that every pool buffer came back, and the node builders: a
// virtio-net or ENET side to put a stack or an endpoint on (Virtio, ENET). The private network namespace a test against Linux
// runs in comes from internal/netns (ForTest).
//
// It works on the small interfaces Node and Pinger, which *stack.Stack and
// internal/baseline's Stack satisfy, and does not import package stack, so
// stack's own (internal) tests can use it.
//
// The addresses are those of the test network in the README: AddrA
// (10.0.0.1) is the side under test, AddrB (10.0.0.2) its peer, which runs the services.
package stacktest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/tamanet/tamanet/alloc"
)

// The two sides of the test network.
var (
	AddrA = netip.MustParsePrefix("10.0.0.1/24")
	AddrB = netip.MustParsePrefix("10.0.0.2/24")
	MACA  = [6]byte{2, 0, 0, 0, 0, 1}
	MACB  = [6]byte{2, 0, 0, 0, 0, 2}
	// Static IPv6 addresses of the test link. Their solicited-node
	// groups differ from those of the link-local (and SLAAC) addresses
	// the MACs give, so a filter that lacks them loses neighbour
	// discovery for them.
	Addr6A = netip.MustParsePrefix("fd00::10:1/64")
	Addr6B = netip.MustParsePrefix("fd00::10:2/64")
)

// LinkLocal returns the IPv6 link-local address of an interface with
// station address mac: fe80::/64 with the modified EUI-64 interface
// identifier (RFC 4291 appendix A, RFC 2464 section 5).
func LinkLocal(mac [6]byte) netip.Addr {
	return netip.AddrFrom16([16]byte{0: 0xfe, 1: 0x80,
		8: mac[0] ^ 2, 9: mac[1], 10: mac[2], 11: 0xff, 12: 0xfe, 13: mac[3], 14: mac[4], 15: mac[5]})
}

// WaitPing pings dst from p until it answers or wait passes: a fresh IPv6
// address answers once duplicate address detection is done (1 s).
func WaitPing(t testing.TB, p Pinger, dst netip.Addr, wait time.Duration) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for seq := uint16(0); ; seq++ {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		_, err := p.Ping(ctx, dst, seq, []byte("wait"))
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v does not answer pings after %v: %v", dst, wait, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Ports of the services StartServices runs.
const (
	PortEcho = "7"  // UDP and TCP echo
	PortSHA  = "9"  // TCP: reads a length and that many bytes, answers their SHA-256
	PortGen  = "19" // TCP: reads a length and a seed, sends that many bytes of Stream(seed)
)

// Node is what the services and checks need of a stack.
type Node interface {
	Dial(ctx context.Context, network, address string) (net.Conn, error)
	Listen(network, address string) (net.Listener, error)
	ListenPacket(network, address string) (net.PacketConn, error)
}

// Pinger is a Node that sends ICMP echo requests.
type Pinger interface {
	Node
	Ping(ctx context.Context, dst netip.Addr, seq uint16, payload []byte) (time.Duration, error)
}

// EchoUDP answers every datagram on pc with itself until pc is closed.
func EchoUDP(pc net.PacketConn) {
	buf := make([]byte, 65536)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		pc.WriteTo(buf[:n], from)
	}
}

// Serve accepts connections on l until it is closed and runs h on each in
// a goroutine of its own, closing the connection after.
func Serve(l net.Listener, h func(net.Conn)) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			h(c)
		}()
	}
}

// Echo sends back what c receives until EOF.
func Echo(c net.Conn) { io.Copy(c, c) }

// EchoTCP runs a TCP echo service on l until l is closed.
func EchoTCP(l net.Listener) { Serve(l, Echo) }

// ServeEcho runs UDP and TCP echo on PortEcho of n until the test ends.
func ServeEcho(tb testing.TB, n Node) {
	tb.Helper()
	pc, err := n.ListenPacket("udp", ":"+PortEcho)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { pc.Close() })
	go EchoUDP(pc)
	ServeTCP(tb, n, PortEcho, Echo)
}

// ServeTCP runs h on the TCP connections to port of n, each with a 5 minute
// deadline, until the test ends.
func ServeTCP(tb testing.TB, n Node, port string, h func(net.Conn)) {
	tb.Helper()
	l, err := n.Listen("tcp", ":"+port)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { l.Close() })
	go Serve(l, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(5 * time.Minute))
		h(c)
	})
}

// StartServices runs on n until the test ends: UDP and TCP echo on
// PortEcho, the SHA-256 service on PortSHA and the stream generator on
// PortGen.
func StartServices(tb testing.TB, n Node) {
	tb.Helper()
	ServeEcho(tb, n)
	ServeTCP(tb, n, PortSHA, func(c net.Conn) {
		var hdr [8]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		h := sha256.New()
		if _, err := io.CopyN(h, c, int64(binary.BigEndian.Uint64(hdr[:]))); err != nil {
			return
		}
		c.Write(h.Sum(nil))
	})
	ServeTCP(tb, n, PortGen, func(c net.Conn) {
		var hdr [16]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		n := int64(binary.BigEndian.Uint64(hdr[:8]))
		io.Copy(c, io.LimitReader(Stream(binary.BigEndian.Uint64(hdr[8:])), n))
	})
}

// Stream is a deterministic pseudo-random byte stream.
func Stream(seed uint64) io.Reader {
	var s [32]byte
	binary.BigEndian.PutUint64(s[:], seed)
	return rand.NewChaCha8(s)
}

// StreamSum is the SHA-256 of the first n bytes of Stream(seed).
func StreamSum(seed uint64, n int) []byte {
	h := sha256.New()
	io.CopyN(h, Stream(seed), int64(n))
	return h.Sum(nil)
}

// PingCheck configures Ping.
type PingCheck struct {
	Count int           // echo requests each way
	Wait  time.Duration // for each reply
	Total time.Duration // for the whole check; 0: no limit
	// Lossy: a lost reply is not an error by itself; fewer than MinOK
	// replies of 2*Count are.
	Lossy bool
	MinOK int
}

// Ping pings b (at bAddr) from a and a (at aAddr) from b, alternately,
// Count times each way, with a 56-byte payload that changes with the
// sequence number.
func Ping(t *testing.T, a, b Pinger, aAddr, bAddr netip.Addr, c PingCheck) {
	t.Helper()
	ctx := context.Background()
	if c.Total > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Total)
		defer cancel()
	}
	type dir struct {
		from Pinger
		to   netip.Addr
	}
	ok := 0
	for i := 0; i < c.Count; i++ {
		payload := bytes.Repeat([]byte{byte(i), 0x5a}, 28)
		for _, d := range [2]dir{{a, bAddr}, {b, aAddr}} {
			pctx, pcancel := context.WithTimeout(ctx, c.Wait)
			_, err := d.from.Ping(pctx, d.to, uint16(i), payload)
			pcancel()
			if err == nil {
				ok++
			} else if !c.Lossy {
				t.Fatalf("ping %d -> %v: %v", i, d.to, err)
			}
		}
	}
	if ok < c.MinOK {
		t.Fatalf("%d of %d pings answered, want %d", ok, 2*c.Count, c.MinOK)
	}
}

// UDPCheck configures UDPEcho.
type UDPCheck struct {
	Addr  string        // the echo service
	Sizes []int         // payload sizes, in order
	Wait  time.Duration // for a reply before sending again
	// Lossy: a lost datagram is sent again, up to 20 times, instead of
	// failing the check.
	Lossy bool
}

// AllSizes returns every size from lo to hi.
func AllSizes(lo, hi int) []int {
	s := make([]int, 0, hi-lo+1)
	for n := lo; n <= hi; n++ {
		s = append(s, n)
	}
	return s
}

// UDPEcho sends a seeded random payload of each size to the echo service
// and checks each reply byte for byte. Stale or duplicated replies of
// other sizes are skipped; a reply of the right size with other bytes
// fails the check (with corruption injected, the UDP checksum must have
// dropped it).
func UDPEcho(t *testing.T, a Node, c UDPCheck) {
	t.Helper()
	conn, err := a.Dial(context.Background(), "udp", c.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rng := rand.New(rand.NewPCG(7, 7))
	buf := make([]byte, 1<<16)
	resends := 0
	for _, size := range c.Sizes {
		msg := make([]byte, size)
		for i := range msg {
			msg[i] = byte(rng.Uint32())
		}
		if size >= 2 {
			binary.BigEndian.PutUint16(msg, uint16(size)) // tags the reply
		}
		got := false
		for try := 0; try < 20 && !got; try++ {
			if try > 0 {
				resends++
				if !c.Lossy {
					t.Fatalf("size %d: no reply", size)
				}
			}
			if _, err := conn.Write(msg); err != nil {
				t.Fatalf("size %d: %v", size, err)
			}
			conn.SetReadDeadline(time.Now().Add(c.Wait))
			for {
				n, err := conn.Read(buf)
				if err != nil {
					break // timeout: send again
				}
				if n == size && bytes.Equal(buf[:n], msg) {
					got = true
					break
				}
				if n == size && size >= 2 {
					t.Fatalf("size %d: reply of the right size with different bytes", size)
				}
				// A stale duplicate of an earlier size: skip it.
			}
		}
		if !got {
			t.Fatalf("size %d: no reply after retries", size)
		}
	}
	t.Logf("%d sizes echoed byte-exact, %d resends", len(c.Sizes), resends)
}

// request connects to a TCP service within 30 s, gives the connection a
// 5 minute deadline and sends hdr.
func request(t *testing.T, a Node, addr string, hdr []byte) net.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := a.Dial(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Minute))
	if _, err := c.Write(hdr); err != nil {
		c.Close()
		t.Fatal(err)
	}
	return c
}

func logRate(t *testing.T, what string, size int, start time.Time) {
	el := time.Since(start)
	t.Logf("%d KiB %s in %v (%.0f Mbit/s)", size>>10, what, el.Round(time.Millisecond), float64(size)*8/el.Seconds()/1e6)
}

// Upload sends size bytes of Stream(11) to the SHA-256 service at addr and
// compares the digest it answers with the one sent.
func Upload(t *testing.T, a Node, addr string, size int) {
	t.Helper()
	start := time.Now()
	var hdr [8]byte
	binary.BigEndian.PutUint64(hdr[:], uint64(size))
	c := request(t, a, addr, hdr[:])
	defer c.Close()
	if _, err := io.CopyN(c, Stream(11), int64(size)); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, sha256.Size)
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if want := StreamSum(11, size); !bytes.Equal(got, want) {
		t.Fatalf("SHA-256 at the receiver %x, sent %x", got, want)
	}
	logRate(t, "up", size, start)
}

// Download asks the generator at addr for size bytes of Stream(13) and
// compares their digest with the one sent.
func Download(t *testing.T, a Node, addr string, size int) {
	t.Helper()
	start := time.Now()
	var hdr [16]byte
	binary.BigEndian.PutUint64(hdr[:8], uint64(size))
	binary.BigEndian.PutUint64(hdr[8:], 13)
	c := request(t, a, addr, hdr[:])
	defer c.Close()
	h := sha256.New()
	if n, err := io.CopyN(h, c, int64(size)); err != nil {
		t.Fatalf("after %d bytes: %v", n, err)
	}
	if got, want := h.Sum(nil), StreamSum(13, size); !bytes.Equal(got, want) {
		t.Fatalf("SHA-256 received %x, sent %x", got, want)
	}
	logRate(t, "down", size, start)
}

// EchoConn sends n bytes (a pattern of seed) through the echo service
// connected to c and checks they come back.
func EchoConn(c net.Conn, n int, seed byte) error {
	msg := make([]byte, n)
	for i := range msg {
		msg[i] = byte(i) ^ seed
	}
	werr := make(chan error, 1)
	go func() { _, err := c.Write(msg); werr <- err }()
	got := make([]byte, n)
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if err := <-werr; err != nil {
		return err
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("echo of %d bytes differs", n)
	}
	return nil
}

// EchoDeadline bounds one TCPEcho connection. It is as long as the bulk
// transfers' bound: under injected loss a segment lost several times in a
// row waits out TCP's exponential backoff (1+2+4+8+16+32 s already passes a
// minute), which is slow but not wrong. A wedged connection still fails.
const EchoDeadline = 5 * time.Minute

// TCPEcho dials the TCP echo service at addr and runs EchoConn, all within
// EchoDeadline.
func TCPEcho(a Node, addr string, n int, seed byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), EchoDeadline)
	defer cancel()
	c, err := a.Dial(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(EchoDeadline))
	return EchoConn(c, n, seed)
}

// EchoConns runs conns TCPEcho connections of each bytes at once and logs
// the slowest, so a retransmission tail shows in the test output.
func EchoConns(t testing.TB, a Node, addr string, conns, each int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	took := make([]time.Duration, conns)
	for i := 0; i < conns; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			start := time.Now()
			if err := TCPEcho(a, addr, each, byte(i)); err != nil {
				errs <- fmt.Errorf("connection %d: %w", i, err)
			}
			took[i] = time.Since(start)
		}(i)
	}
	wg.Wait()
	close(errs)
	slowest := 0
	for i := range took {
		if took[i] > took[slowest] {
			slowest = i
		}
	}
	t.Logf("%d connections of %d bytes: slowest (connection %d) took %v", conns, each, slowest, took[slowest].Round(time.Millisecond))
	for err := range errs {
		t.Error(err)
	}
}

// Suite is the check of a link between two stacks: A at AAddr is the
// client, B at BAddr runs StartServices.
type Suite struct {
	A, B         Pinger
	AAddr, BAddr netip.Addr
	Ping         PingCheck
	UDP          UDPCheck // Addr defaults to BAddr's echo service
	TCPSize      int      // bytes each way
	Conns, Each  int      // concurrent echo connections and bytes each
	// OnFail, if set, runs when a step fails; then the remaining steps
	// are skipped (the link is likely wedged).
	OnFail func(t *testing.T)
}

// Run starts the services on B and runs the steps as subtests: ping,
// udp-sizes, tcp-<size>KiB-upload, tcp-<size>KiB-download,
// tcp-<conns>-connections.
func (s Suite) Run(t *testing.T) {
	t.Helper()
	StartServices(t, s.B)
	at := func(port string) string { return net.JoinHostPort(s.BAddr.String(), port) }
	if s.UDP.Addr == "" {
		s.UDP.Addr = at(PortEcho)
	}
	steps := []struct {
		name string
		f    func(t *testing.T)
	}{
		{"ping", func(t *testing.T) { Ping(t, s.A, s.B, s.AAddr, s.BAddr, s.Ping) }},
		{"udp-sizes", func(t *testing.T) { UDPEcho(t, s.A, s.UDP) }},
		{fmt.Sprintf("tcp-%dKiB-upload", s.TCPSize>>10), func(t *testing.T) { Upload(t, s.A, at(PortSHA), s.TCPSize) }},
		{fmt.Sprintf("tcp-%dKiB-download", s.TCPSize>>10), func(t *testing.T) { Download(t, s.A, at(PortGen), s.TCPSize) }},
		{fmt.Sprintf("tcp-%d-connections", s.Conns), func(t *testing.T) { EchoConns(t, s.A, at(PortEcho), s.Conns, s.Each) }},
	}
	for _, st := range steps {
		if !t.Run(st.name, st.f) && s.OnFail != nil {
			s.OnFail(t)
			t.FailNow()
		}
	}
}

// CleanAndFaults runs f as the subtests "clean" (withFaults false) and
// "faults" (true).
func CleanAndFaults(t *testing.T, f func(t *testing.T, withFaults bool)) {
	t.Run("clean", func(t *testing.T) { f(t, false) })
	t.Run("faults", func(t *testing.T) { f(t, true) })
}

// Quiet is one side for CheckQuiet.
type Quiet struct {
	Name     string // in messages
	Pool     *alloc.Pool
	Baseline int    // buffers in use when idle (the posted receive ring)
	Wake     func() // wakes the stack's poll loop
}

// CheckQuiet waits up to 10 s for every side to settle and checks that
// every pool buffer came back (only the baseline remains in use) and that
// no put was refused (a double or foreign put).
func CheckQuiet(t testing.TB, sides ...Quiet) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, q := range sides {
		for q.Pool.InUse() != q.Baseline && time.Now().Before(deadline) {
			q.Wake()
			time.Sleep(5 * time.Millisecond)
		}
		st := q.Pool.Stats()
		if st.InUse != q.Baseline {
			t.Errorf("%s: pool in use %d after traffic, baseline %d (stats %+v)", q.Name, st.InUse, q.Baseline, st)
		}
		if st.RefusedPuts != 0 {
			t.Errorf("%s: %d refused puts (double or foreign put)", q.Name, st.RefusedPuts)
		}
	}
}
