package main

import (
	"context"
	"io"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tamanet/tamanet/internal/config"
	"github.com/tamanet/tamanet/stack"
	"github.com/tamanet/tamanet/stack/stacktest"
)

// tamagoSockets opens sockets as tamago's net package does: the family of
// a "udp" wildcard socket is AF_INET (tamago's net has no IPv4-mapped
// addresses), "udp6" is AF_INET6.
func tamagoSockets(s *stack.Stack) sockets {
	return sockets{
		Listen: s.Listen,
		ListenPacket: func(network, address string) (net.PacketConn, error) {
			ap, err := netip.ParseAddrPort(strings.Replace(address, ":", "0.0.0.0:", 1))
			if network == "udp6" {
				ap, err = netip.ParseAddrPort("[::]" + address)
			}
			if err != nil {
				return nil, err
			}
			family := syscall.AF_INET
			if network == "udp6" {
				family = syscall.AF_INET6
			}
			c, err := s.Socket(context.Background(), network, family, syscall.SOCK_DGRAM, net.UDPAddrFromAddrPort(ap), nil)
			if err != nil {
				return nil, err
			}
			return c.(net.PacketConn), nil
		},
		UDP6: true,
	}
}

// TestFirmwareIPv6: every service answers on both families, over the static
// IPv6 address and the link-local one, and /stats lists the addresses;
// with sockets as tamago's net opens them (UDP echo on "udp" and "udp6")
// and with one dual-stack socket per service.
func TestFirmwareIPv6(t *testing.T) {
	t.Run("tamago-sockets", func(t *testing.T) { testFirmwareIPv6(t, tamagoSockets) })
	t.Run("dual-stack", func(t *testing.T) { testFirmwareIPv6(t, stackSockets) })
}

func testFirmwareIPv6(t *testing.T, socks func(*stack.Stack) sockets) {
	c := newClient(t, stack.Config{Addr: clientConfig.Addr, IPv6: true, Addr6: netip.MustParsePrefix("fd00::10:2/64")})
	cs := c.s

	var calls int
	var out console
	fw, err := run(platformFor(c, &calls), config.Default, socks, time.Now(), &out)
	if err != nil {
		t.Fatalf("run: %v\nconsole:\n%s", err, out.String())
	}
	t.Cleanup(func() { fw.services.Close(); fw.stack.Close() })
	ll := stacktest.LinkLocal([6]byte{2, 0, 0, 0, 0, 1})
	if want := "tamanet: ipv6 link-local=" + ll.String() + " static=fd00::10:1/64"; !strings.Contains(out.String(), want) {
		t.Fatalf("console:\n%s\nwant a line with %q", out.String(), want)
	}
	stacktest.WaitPing(t, cs, netip.MustParseAddr("fd00::10:1"), 10*time.Second)
	stacktest.WaitPing(t, cs, ll, 10*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, host := range []string{"10.0.0.1", "fd00::10:1", ll.String()} {
		for _, network := range []string{"tcp", "udp"} {
			conn, err := cs.Dial(ctx, network, net.JoinHostPort(host, "7"))
			if err != nil {
				t.Fatalf("%s echo at %s: %v", network, host, err)
			}
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			if err := stacktest.EchoConn(conn, 1000, 9); err != nil {
				t.Errorf("%s echo at %s: %v", network, host, err)
			}
			conn.Close()
		}
		conn, err := cs.Dial(ctx, "tcp", net.JoinHostPort(host, "19"))
		if err != nil {
			t.Fatalf("chargen at %s: %v", host, err)
		}
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		if n, err := io.ReadFull(conn, make([]byte, 10000)); err != nil {
			t.Errorf("chargen at %s: %d bytes, %v", host, n, err)
		}
		conn.Close()
	}
	var st struct {
		IPv6 []string          `json:"ipv6"`
		Info map[string]string `json:"info"`
	}
	c.getStats(t, "http://[fd00::10:1]/stats", &st)
	if strings.Join(st.IPv6, " ") != "fd00::10:1/64 "+ll.String()+"/64" || st.Info["ip6"] != "fd00::10:1/64" || st.Info["ip6_link_local"] != ll.String() {
		t.Errorf("/stats ipv6 %v info %v", st.IPv6, st.Info)
	}
}
