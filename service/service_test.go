package service

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// start runs all services on loopback with free ports.
func start(t *testing.T, stats func() any) *Services {
	t.Helper()
	s, err := Start(Config{
		Listen:       net.Listen,
		ListenPacket: net.ListenPacket,
		Host:         "127.0.0.1",
		Stats:        stats,
		Info:         map[string]string{"board": "host-test", "nic": "loopback"},
		Logf:         t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func dial(t *testing.T, network string, a net.Addr) net.Conn {
	t.Helper()
	c, err := net.DialTimeout(network, a.String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return c
}

func TestUDPEcho(t *testing.T) {
	s := start(t, nil)
	c := dial(t, "udp", s.UDPEcho)
	buf := make([]byte, 2048)
	for _, n := range []int{1, 2, 100, 1471, 1472} {
		msg := make([]byte, n)
		rand.Read(msg)
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		got, err := c.Read(buf)
		if err != nil {
			t.Fatalf("size %d: %v", n, err)
		}
		if !bytes.Equal(buf[:got], msg) {
			t.Fatalf("size %d: echoed %d bytes that differ", n, got)
		}
	}
}

func TestTCPEcho(t *testing.T) {
	s := start(t, nil)
	c := dial(t, "tcp", s.TCPEcho)
	const size = 4 << 20
	in := make([]byte, size)
	rand.Read(in)
	go func() {
		c.Write(in)
		c.(*net.TCPConn).CloseWrite()
	}()
	h := sha256.New()
	n, err := io.Copy(h, c)
	if err != nil {
		t.Fatal(err)
	}
	if sum := [32]byte(h.Sum(nil)); n != size || sum != sha256.Sum256(in) {
		t.Fatalf("echoed %d of %d bytes, sha256 %x, want %x", n, size, sum, sha256.Sum256(in))
	}
}

func TestTCPEchoConcurrent(t *testing.T) {
	s := start(t, nil)
	var wg sync.WaitGroup
	var bad atomic.Int32
	for i := range 32 {
		c := dial(t, "tcp", s.TCPEcho)
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := bytes.Repeat([]byte{byte(i)}, 64<<10)
			go c.Write(msg)
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
				bad.Add(1)
			}
		}()
	}
	wg.Wait()
	if n := bad.Load(); n != 0 {
		t.Fatalf("%d of 32 connections did not echo correctly", n)
	}
}

func TestDiscard(t *testing.T) {
	s := start(t, nil)
	c := dial(t, "tcp", s.Discard)
	data := make([]byte, 1<<20)
	for range 8 {
		if _, err := c.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	// Nothing comes back while the connection is open...
	c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	var one [1]byte
	if n, err := c.Read(one[:]); n != 0 || !isTimeout(err) {
		t.Fatalf("discard answered: n=%d err=%v", n, err)
	}
	// ...and the server closes after our end of stream.
	c.(*net.TCPConn).CloseWrite()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(one[:]); n != 0 || err != io.EOF {
		t.Fatalf("after CloseWrite: n=%d err=%v, want EOF", n, err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestChargen(t *testing.T) {
	s := start(t, nil)
	c := dial(t, "tcp", s.Chargen)
	r := bufio.NewReader(c)
	// Several cycles of 95 lines, across write boundaries.
	const lines = 3*380 + 7
	for i := range lines {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		var want strings.Builder
		for j := range 72 {
			want.WriteByte(byte(' ' + (i+j)%95))
		}
		want.WriteString("\r\n")
		if line != want.String() {
			t.Fatalf("line %d = %q, want %q", i, line, want.String())
		}
	}
	// Data sent to chargen is ignored, and the stream goes on.
	if _, err := c.Write([]byte("hello\r\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(io.Discard, r, 1<<20); err != nil {
		t.Fatal(err)
	}
}

func TestHTTP(t *testing.T) {
	var calls atomic.Int64
	s := start(t, func() any {
		n := calls.Add(1)
		return map[string]any{"pool": map[string]int64{"in_use": 3}, "polls": n}
	})
	base := "http://" + s.HTTP.String()

	resp, err := http.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "tamanet") ||
		!strings.Contains(string(body), "host-test") || !strings.Contains(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET / = %d %q:\n%s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}

	get := func() map[string]any {
		resp, err := http.Get(base + "/stats")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("GET /stats = %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		var m map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
			t.Fatalf("/stats is not JSON: %v", err)
		}
		return m
	}
	a := get()
	time.Sleep(20 * time.Millisecond)
	b := get()
	if a["polls"].(float64) != 1 || b["polls"].(float64) != 2 {
		t.Errorf("stack stats not fetched per request: %v then %v", a["polls"], b["polls"])
	}
	if a["pool"].(map[string]any)["in_use"].(float64) != 3 {
		t.Errorf("pool stats missing: %v", a["pool"])
	}
	if b["uptime_seconds"].(float64) <= a["uptime_seconds"].(float64) {
		t.Errorf("uptime did not increase: %v then %v", a["uptime_seconds"], b["uptime_seconds"])
	}
	g := a["go"].(map[string]any)
	if g["heap_alloc"].(float64) <= 0 || g["goroutines"].(float64) < 1 {
		t.Errorf("go memstats implausible: %v", g)
	}
	if a["info"].(map[string]any)["nic"] != "loopback" {
		t.Errorf("info missing: %v", a["info"])
	}

	// The page does not change between requests.
	resp, err = http.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	again, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(again, body) {
		t.Errorf("GET / changed between requests:\n%s\n---\n%s", body, again)
	}

	resp, err = http.Get(base + "/nothing")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("GET /nothing = %d, want 404", resp.StatusCode)
	}
}

// TestStatsNonObject checks that a provider returning something other than
// a JSON object still appears, under "stack".
func TestStatsNonObject(t *testing.T) {
	s := start(t, func() any { return []int{1, 2} })
	resp, err := http.Get("http://" + s.HTTP.String() + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	if st, ok := m["stack"].([]any); !ok || len(st) != 2 {
		t.Fatalf("stack = %#v", m["stack"])
	}
}

// closeCounter counts Close calls on listeners handed out by a fake Listen.
type closeCounter struct {
	net.Listener
	closed *atomic.Int32
}

func (c closeCounter) Close() error { c.closed.Add(1); return c.Listener.Close() }

// TestStartAllOrNothing checks that a listener that cannot be opened leaves
// nothing open and names the failing service.
func TestStartAllOrNothing(t *testing.T) {
	var opened, closed atomic.Int32
	var pcClosed atomic.Bool
	listen := func(network, address string) (net.Listener, error) {
		if opened.Load() == 2 { // echo and discard open, chargen fails
			return nil, errors.New("address in use")
		}
		l, err := net.Listen(network, address)
		if err != nil {
			return nil, err
		}
		opened.Add(1)
		return closeCounter{l, &closed}, nil
	}
	listenPacket := func(network, address string) (net.PacketConn, error) {
		pc, err := net.ListenPacket(network, address)
		if err != nil {
			return nil, err
		}
		return pcCloser{pc, &pcClosed}, nil
	}
	s, err := Start(Config{Listen: listen, ListenPacket: listenPacket, Host: "127.0.0.1"})
	if err == nil {
		s.Close()
		t.Fatal("Start succeeded with a failing listener")
	}
	if !strings.Contains(err.Error(), "chargen on tcp port 0") {
		t.Errorf("error %q does not name chargen", err)
	}
	if opened.Load() != 2 || closed.Load() != 2 || !pcClosed.Load() {
		t.Errorf("opened %d listeners, closed %d, udp closed %v: want all closed", opened.Load(), closed.Load(), pcClosed.Load())
	}
}

type pcCloser struct {
	net.PacketConn
	closed *atomic.Bool
}

func (p pcCloser) Close() error { p.closed.Store(true); return p.PacketConn.Close() }

func TestStartDisabledAndDefaults(t *testing.T) {
	if _, err := Start(Config{}); err == nil {
		t.Error("Start without Listen succeeded")
	}
	s, err := Start(Config{
		Listen: net.Listen, ListenPacket: net.ListenPacket, Host: "127.0.0.1",
		Ports: Ports{Echo: -1, Discard: -1, Chargen: -1, HTTP: 0},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.UDPEcho != nil || s.TCPEcho != nil || s.Discard != nil || s.Chargen != nil || s.HTTP == nil {
		t.Errorf("addresses %v %v %v %v %v: want only HTTP", s.UDPEcho, s.TCPEcho, s.Discard, s.Chargen, s.HTTP)
	}
	if DefaultPorts != (Ports{Echo: 7, Discard: 9, Chargen: 19, HTTP: 80}) {
		t.Errorf("DefaultPorts = %+v", DefaultPorts)
	}
}

// TestIdleTimeout: a connection on which nothing happens is closed after
// IdleTimeout; one that keeps talking is not.
func TestIdleTimeout(t *testing.T) {
	const idle = 300 * time.Millisecond
	s, err := Start(Config{Listen: net.Listen, ListenPacket: net.ListenPacket, Host: "127.0.0.1", IdleTimeout: idle, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, a := range []net.Addr{s.TCPEcho, s.Discard} {
		quiet := dial(t, "tcp", a)
		busy := dial(t, "tcp", a)
		start := time.Now()
		n := 0
		for ; time.Since(start) < 3*idle; n++ {
			if _, err := busy.Write([]byte("x")); err != nil {
				t.Fatalf("%v: busy connection: %v", a, err)
			}
			time.Sleep(idle / 4)
		}
		// The quiet one was closed by the service: EOF (or a reset).
		quiet.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadAll(quiet); err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("%v: quiet connection still open after %v (idle timeout %v)", a, time.Since(start), idle)
		}
		// The busy one still works.
		if a == s.TCPEcho {
			busy.SetReadDeadline(time.Now().Add(5 * time.Second))
			busy.Write([]byte("y"))
			want := strings.Repeat("x", n) + "y"
			if got, err := io.ReadAll(io.LimitReader(busy, int64(len(want)))); err != nil || string(got) != want {
				t.Errorf("busy echo connection: %q, %v", got, err)
			}
		}
	}
}

func TestStatsGC(t *testing.T) {
	s := start(t, nil)
	get := func(q string) uint32 {
		resp, err := http.Get("http://" + s.HTTP.String() + "/stats" + q)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var v struct {
			Go MemStats `json:"go"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
			t.Fatal(err)
		}
		return v.Go.NumGC
	}
	a := get("")
	b := get("?gc=1")
	if b <= a {
		t.Errorf("num_gc %d then %d with ?gc=1: no collection", a, b)
	}
}

// TestGoroutines: /debug/goroutines lists every goroutine, including one
// blocked in a service handler.
func TestGoroutines(t *testing.T) {
	s := start(t, nil)
	c, err := net.Dial("tcp", s.TCPEcho.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// One round trip: the handler is running and now blocks in Read.
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + s.HTTP.String() + "/debug/goroutines")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /debug/goroutines = %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{"goroutine ", "service.Echo", "service.goroutines"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/debug/goroutines lacks %q:\n%s", want, body)
		}
	}
}

// deadlineConn records the deadlines set on it; reads block until closed.
type deadlineConn struct {
	net.Conn
	mu          sync.Mutex
	read, write []time.Time
	reads       int
}

func (c *deadlineConn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

func (c *deadlineConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.read = append(c.read, t)
	return nil
}

func (c *deadlineConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.write = append(c.write, t)
	return nil
}

// TestIdleFromAccept: the idle limit holds from accept, before the handler
// reads or writes, and each deadline is d ahead on the monotonic clock.
// Before, the first deadline was set in Read only once the wall clock was
// past d/4, which on tamago (wall clock from boot) left a connection that
// went quiet in the first seconds without any deadline.
func TestIdleFromAccept(t *testing.T) {
	const d = time.Minute
	c := &deadlineConn{}
	var before []time.Time
	idle(func(ic net.Conn) {
		c.mu.Lock()
		before = append(before, c.read...)
		c.mu.Unlock()
	}, d)(c)
	if len(before) != 1 || len(c.write) != 1 {
		t.Fatalf("deadlines at accept: read %v, write %v; want one each", before, c.write)
	}
	if left := time.Until(before[0]); left < d-time.Second || left > d {
		t.Errorf("read deadline %v ahead, want %v", left, d)
	}
	if !strings.Contains(before[0].String(), " m=") {
		t.Error("read deadline has no monotonic reading")
	}
}
