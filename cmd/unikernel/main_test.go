package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tamanet/tamanet/alloc"
	"github.com/tamanet/tamanet/internal/config"
	"github.com/tamanet/tamanet/nic"
	"github.com/tamanet/tamanet/nic/virtio"
	"github.com/tamanet/tamanet/nic/virtio/virtiotest"
	"github.com/tamanet/tamanet/stack"
	"github.com/tamanet/tamanet/stack/stacktest"
)

// console is a concurrency-safe io.Writer.
type console struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.b.Write(p)
}

func (c *console) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.b.String()
}

// stackSockets makes the services listen on the stack directly: on the
// host, net.Listen would be the host's network.
func stackSockets(s *stack.Stack) sockets {
	return sockets{Listen: s.Listen, ListenPacket: s.ListenPacket, Dial: s.Dial}
}

// client is the host side (10.0.0.2): a second stack on a virtio device
// model, piped to the firmware's.
type client struct {
	model *virtiotest.Device
	s     *stack.Stack
}

// clientConfig is the client's stack configuration in the IPv4 tests.
var clientConfig = stack.Config{Addr: netip.MustParsePrefix("10.0.0.2/24")}

func newClient(t *testing.T, cfg stack.Config) *client {
	t.Helper()
	_, model, drv := stacktest.Virtio(t, virtiotest.Options{MAC: [6]byte{2, 0, 0, 0, 0, 2}})
	s, err := stack.New(drv, cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(func() { s.Close(); drv.Close() })
	return &client{model: model, s: s}
}

// getStats gets the firmware's /stats at url over c's stack and decodes
// it into v.
func (c *client) getStats(t *testing.T, url string, v any) {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return c.s.Dial(ctx, network, addr)
		},
	}}
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

// hostBoard is a host "board": DMA from the heap and a virtio-net device
// model joined to c's.
type hostBoard struct{ c *client }

func (hostBoard) Name() string            { return "host-test" }
func (hostBoard) DMA() []byte             { return make([]byte, 16<<20) }
func (hostBoard) Info() map[string]string { return map[string]string{"clock": "host"} }
func (b hostBoard) NIC(mac [6]byte, arena *alloc.Arena, pool *alloc.Pool) (polled, error) {
	model := virtiotest.New(arena.Memory(), virtiotest.Options{MAC: [6]byte{0x52, 0x54, 0, 0x12, 0x34, 0x56}})
	virtiotest.Pipe(model, b.c.model)
	d, err := virtio.New(model, arena, pool, virtio.Config{MAC: mac})
	return polled{d}, err
}

// platformFor is the platform of a hostBoard on c, counting its calls.
func platformFor(c *client, calls *int) func() (target, error) {
	return func() (target, error) {
		*calls++
		return targetOf[polled](hostBoard{c}), nil
	}
}

// polled is a device without an interrupt.
type polled struct{ nic.Device }

func (polled) EnableInterrupt(func()) bool { return false }

func TestFirmware(t *testing.T) {
	c := newClient(t, clientConfig)
	var calls int
	var out console
	fw, err := run(platformFor(c, &calls), config.Default, stackSockets, time.Now(), &out)
	if err != nil {
		t.Fatalf("run: %v\nconsole:\n%s", err, out.String())
	}
	t.Cleanup(func() { fw.services.Close(); fw.stack.Close() })

	// The ready line, exactly, last; the configured MAC overrides the
	// device's own.
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if want := "tamanet: ready ip=10.0.0.1/24 mac=02:00:00:00:00:01 nic=virtio-net"; lines[len(lines)-1] != want {
		t.Fatalf("console:\n%s\nwant last line %q", out.String(), want)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// TCP echo.
	conn, err := c.s.Dial(ctx, "tcp", "10.0.0.1:7")
	if err != nil {
		t.Fatal(err)
	}
	msg := make([]byte, 256<<10)
	rand.Read(msg)
	go conn.Write(msg)
	got := make([]byte, len(msg))
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.ReadFull(conn, got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("tcp echo: %v, equal %v", err, bytes.Equal(got, msg))
	}
	conn.Close()

	// UDP echo.
	pc, err := c.s.ListenPacket("udp", "10.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	dst := net.UDPAddrFromAddrPort(netip.MustParseAddrPort("10.0.0.1:7"))
	pc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := pc.WriteTo([]byte("ping over udp"), dst); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	n, _, err := pc.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "ping over udp" {
		t.Fatalf("udp echo: %q, %v", buf[:n], err)
	}

	// /stats: the stack's counters, Go's and the board's info.
	var st map[string]any
	c.getStats(t, "http://10.0.0.1/stats", &st)
	for _, k := range []string{"pool", "nic", "endpoint", "tcpip", "go", "uptime_seconds", "info"} {
		if _, ok := st[k]; !ok {
			t.Errorf("/stats has no %q", k)
		}
	}
	info := st["info"].(map[string]any)
	if info["board"] != "host-test" || info["clock"] != "host" || info["nic"] != "virtio-net" || info["mac"] != "02:00:00:00:00:01" {
		t.Errorf("/stats info = %v", info)
	}
}

// TestInvalidConfig checks that a bad configuration stops the firmware
// before the board is touched: no NIC, no services, no ready line.
func TestInvalidConfig(t *testing.T) {
	var calls int
	var out console
	bad := func() (config.Config, error) { return config.Parse("10.0.0.1/24", "10.0.1.2", "02:00:00:00:00:01") }
	fw, err := run(platformFor(nil, &calls), bad, stackSockets, time.Now(), &out)
	if err == nil || fw != nil {
		t.Fatalf("run with a bad gateway succeeded")
	}
	if !strings.Contains(err.Error(), "outside") || calls != 0 || strings.Contains(out.String(), "ready") {
		t.Fatalf("err %v, platform calls %d, console %q", err, calls, out.String())
	}
}

// TestNICFailure checks that a device that does not come up is an error,
// not a half-configured system.
func TestNICFailure(t *testing.T) {
	var out console
	p := func() (target, error) {
		return target{
			Board: "host-test",
			DMA:   make([]byte, 16<<20),
			NewNIC: func([6]byte, *alloc.Arena, *alloc.Pool) (boardNIC, error) {
				return nil, errors.New("no device here")
			},
		}, nil
	}
	_, err := run(p, config.Default, stackSockets, time.Now(), &out)
	if err == nil || !strings.Contains(err.Error(), "network device: no device here") || strings.Contains(out.String(), "ready") {
		t.Fatalf("err %v, console %q", err, out.String())
	}
}

// TestServiceFailure checks that a service that cannot listen stops the
// bring-up with an error and no ready line.
func TestServiceFailure(t *testing.T) {
	c := newClient(t, clientConfig)
	var calls int
	var out console
	failing := func(s *stack.Stack) sockets {
		return sockets{
			Listen:       func(string, string) (net.Listener, error) { return nil, errors.New("no sockets") },
			ListenPacket: s.ListenPacket,
		}
	}
	_, err := run(platformFor(c, &calls), config.Default, failing, time.Now(), &out)
	if err == nil || !strings.Contains(err.Error(), "no sockets") || strings.Contains(out.String(), "ready") {
		t.Fatalf("err %v, console %q", err, out.String())
	}
}

// TestNoBoard checks the host build's platform, which has no board.
func TestNoBoard(t *testing.T) {
	if _, err := platform(); err == nil || !strings.Contains(err.Error(), "GOOS=tamago") {
		t.Fatalf("platform() on the host: %v", err)
	}
}

// TestFirmwareDHCPFallback: an IP=dhcp image with no DHCP server on the
// wire comes up on its fallback address after the wait, says so in the
// console and in /stats, and serves there.
func TestFirmwareDHCPFallback(t *testing.T) {
	saved := dhcpFallbackAfter
	dhcpFallbackAfter = time.Second
	t.Cleanup(func() { dhcpFallbackAfter = saved })
	c := newClient(t, clientConfig)
	var calls int
	var out console
	cfg := func() (config.Config, error) {
		return config.ParseValues(config.Values{IP: "dhcp", Fallback: "10.0.0.1/24", GW: "10.0.0.2", MAC: "02:00:00:00:00:01", DNS: "10.0.0.2"})
	}
	start := time.Now()
	fw, err := run(platformFor(c, &calls), cfg, stackSockets, time.Now(), &out)
	if err != nil {
		t.Fatalf("run: %v\nconsole:\n%s", err, out.String())
	}
	t.Cleanup(func() { fw.services.Close(); fw.dhcp.Stop(); fw.stack.Close() })
	if el := time.Since(start); el < time.Second {
		t.Errorf("ready after %v, before the fallback wait", el)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if want := "tamanet: ready ip=10.0.0.1/24 mac=02:00:00:00:00:01 nic=virtio-net"; lines[len(lines)-1] != want {
		t.Fatalf("console:\n%s\nwant last line %q", out.String(), want)
	}
	if !strings.Contains(out.String(), "tamanet: dhcp: selecting ip=10.0.0.1/24 (fallback)") {
		t.Errorf("console does not report the fallback:\n%s", out.String())
	}
	var st struct {
		DHCP struct {
			Source, Address, Router string
			Discovers               int
		}
		DNS  []string
		Info map[string]string
	}
	c.getStats(t, "http://10.0.0.1/stats", &st)
	if st.DHCP.Source != "fallback" || st.DHCP.Address != "10.0.0.1/24" || st.DHCP.Router != "10.0.0.2" || st.DHCP.Discovers < 1 ||
		len(st.DNS) != 1 || st.DNS[0] != "10.0.0.2" || st.Info["ip_config"] != "dhcp" || st.Info["ip"] != "10.0.0.1/24" {
		t.Errorf("/stats: %+v", st)
	}
}

// interrupting is a device whose EnableInterrupt is enable.
type interrupting struct {
	boardNIC
	enable func(wake func()) bool
}

func (d interrupting) EnableInterrupt(wake func()) bool { return d.enable(wake) }

// TestNICInterrupt: when the NIC's EnableInterrupt takes the stack's Wake
// and says it will call it, the poll loop stops ticking when idle; when it
// says it will not, the loop keeps its tick.
func TestNICInterrupt(t *testing.T) {
	for _, on := range []bool{true, false} {
		c := newClient(t, clientConfig)
		var calls int
		var wake func()
		base := platformFor(c, &calls)
		platform := func() (target, error) {
			tg, err := base()
			newNIC := tg.NewNIC
			tg.NewNIC = func(mac [6]byte, arena *alloc.Arena, pool *alloc.Pool) (boardNIC, error) {
				d, err := newNIC(mac, arena, pool)
				return interrupting{d, func(w func()) bool { wake = w; return on }}, err
			}
			return tg, err
		}
		var out console
		fw, err := run(platform, config.Default, stackSockets, time.Now(), &out)
		if err != nil {
			t.Fatalf("run: %v\nconsole:\n%s", err, out.String())
		}
		if wake == nil {
			t.Fatal("EnableInterrupt not called with a wake function")
		}
		wake() // must not block, whatever the loop is doing
		if got := fw.stack.Stats().Poll.Interrupt; got != on {
			t.Errorf("hook returned %v: stack interrupt-driven = %v", on, got)
		}
		fw.services.Close()
		fw.stack.Close()
	}
}
