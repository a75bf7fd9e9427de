package stack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	gvstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// ErrIPv6 is returned for sockets that need IPv6, which the stack does not
// configure.
var ErrIPv6 = errors.New("stack: IPv6 is not supported")

// Sockets maps the standard net package's sockets onto a gVisor stack
// through gonet: Socket is tamago's net.SocketFunc, Listen, Dial and
// ListenPacket are their net counterparts. *Stack embeds one; the baseline
// firmware uses one over its own gVisor stack, so both serve sockets alike.
type Sockets struct {
	gv *gvstack.Stack
}

// NewSockets returns the socket mapping for gv.
func NewSockets(gv *gvstack.Stack) Sockets { return Sockets{gv: gv} }

// Socket opens a socket on the stack. It has the signature of tamago's
// net.SocketFunc, which calls it for net.Listen, net.Dial, net.ListenPacket
// and friends; the value returned is what tamago's net package expects:
//
//   - SOCK_STREAM, no remote address: a net.Listener (TCP listen on laddr);
//   - SOCK_STREAM, remote address: a net.Conn (TCP connect, bound to laddr
//     when it is given);
//   - SOCK_DGRAM: a *gonet.UDPConn, which is both net.Conn and
//     net.PacketConn (bound to laddr, connected to raddr when given).
//
// Addresses are *net.TCPAddr or *net.UDPAddr (or nil); an unspecified IP
// means any local address. Only IPv4 is served: "tcp6"/"udp6" networks and
// IPv6 addresses fail with ErrIPv6. family is not needed (tamago's net may
// pass AF_INET6 for a wildcard listen) and is ignored.
func (s Sockets) Socket(ctx context.Context, network string, family, sotype int, laddr, raddr net.Addr) (interface{}, error) {
	switch network {
	case "tcp6", "udp6":
		return nil, ErrIPv6
	}
	la, lok, err := fullAddr(laddr)
	if err != nil {
		return nil, err
	}
	ra, rok, err := fullAddr(raddr)
	if err != nil {
		return nil, err
	}
	switch sotype {
	case syscall.SOCK_STREAM:
		if !rok {
			l, err := gonet.ListenTCP(s.gv, la, ipv4.ProtocolNumber)
			if err != nil {
				return nil, err
			}
			return l, nil
		}
		if ctx == nil {
			ctx = context.Background()
		}
		var c *gonet.TCPConn
		if lok {
			c, err = gonet.DialTCPWithBind(ctx, s.gv, la, ra, ipv4.ProtocolNumber)
		} else {
			c, err = gonet.DialContextTCP(ctx, s.gv, ra, ipv4.ProtocolNumber)
		}
		if err != nil {
			return nil, err
		}
		return c, nil
	case syscall.SOCK_DGRAM:
		var lp, rp *tcpip.FullAddress
		if lok {
			lp = &la
		}
		if rok {
			rp = &ra
		}
		if lp == nil && rp == nil {
			lp = &la // an unbound, unconnected socket binds an ephemeral port
		}
		c, err := gonet.DialUDP(s.gv, lp, rp, ipv4.ProtocolNumber)
		if err != nil {
			return nil, err
		}
		return c, nil
	}
	return nil, fmt.Errorf("stack: socket type %d on %q: %w", sotype, network, syscall.EPROTONOSUPPORT)
}

// fullAddr converts a net address to a gVisor one; ok is false for a nil
// address.
func fullAddr(a net.Addr) (fa tcpip.FullAddress, ok bool, err error) {
	var ip net.IP
	var port int
	switch a := a.(type) {
	case nil:
		return fa, false, nil
	case *net.TCPAddr:
		if a == nil {
			return fa, false, nil
		}
		ip, port = a.IP, a.Port
	case *net.UDPAddr:
		if a == nil {
			return fa, false, nil
		}
		ip, port = a.IP, a.Port
	default:
		return fa, false, fmt.Errorf("stack: unsupported address type %T", a)
	}
	if port < 0 || port > 0xffff {
		return fa, false, fmt.Errorf("stack: port %d out of range", port)
	}
	fa.Port = uint16(port)
	if len(ip) == 0 || ip.IsUnspecified() {
		return fa, true, nil
	}
	ip4 := ip.To4()
	if ip4 == nil {
		return fa, false, ErrIPv6
	}
	fa.Addr = tcpip.AddrFrom4([4]byte(ip4))
	return fa, true, nil
}

// Listen is net.Listen on the stack: network "tcp" or "tcp4", address
// "host:port" (host may be empty).
func (s Sockets) Listen(network, address string) (net.Listener, error) {
	a, err := resolve(network, address)
	if err != nil {
		return nil, err
	}
	c, err := s.Socket(context.Background(), network, syscall.AF_INET, syscall.SOCK_STREAM, &net.TCPAddr{IP: a.Addr().AsSlice(), Port: int(a.Port())}, nil)
	if err != nil {
		return nil, err
	}
	return c.(net.Listener), nil
}

// Dial is net.Dial on the stack for "tcp", "tcp4", "udp" and "udp4" to a
// literal "ip:port".
func (s Sockets) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	a, err := resolve(network, address)
	if err != nil {
		return nil, err
	}
	var c interface{}
	switch network {
	case "udp", "udp4":
		c, err = s.Socket(ctx, network, syscall.AF_INET, syscall.SOCK_DGRAM, nil, net.UDPAddrFromAddrPort(a))
	default:
		c, err = s.Socket(ctx, network, syscall.AF_INET, syscall.SOCK_STREAM, nil, net.TCPAddrFromAddrPort(a))
	}
	if err != nil {
		return nil, err
	}
	return c.(net.Conn), nil
}

// ListenPacket is net.ListenPacket on the stack: "udp" or "udp4".
func (s Sockets) ListenPacket(network, address string) (net.PacketConn, error) {
	a, err := resolve(network, address)
	if err != nil {
		return nil, err
	}
	c, err := s.Socket(context.Background(), network, syscall.AF_INET, syscall.SOCK_DGRAM, &net.UDPAddr{IP: a.Addr().AsSlice(), Port: int(a.Port())}, nil)
	if err != nil {
		return nil, err
	}
	return c.(net.PacketConn), nil
}

// resolve parses a literal IPv4 "host:port"; an empty host is the zero
// address.
func resolve(network, address string) (netip.AddrPort, error) {
	switch network {
	case "tcp", "tcp4", "udp", "udp4":
	case "tcp6", "udp6":
		return netip.AddrPort{}, ErrIPv6
	default:
		return netip.AddrPort{}, fmt.Errorf("stack: unsupported network %q", network)
	}
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return netip.AddrPort{}, err
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("stack: bad port %q", port)
	}
	ip := netip.IPv4Unspecified()
	if host != "" {
		if ip, err = netip.ParseAddr(host); err != nil {
			return netip.AddrPort{}, fmt.Errorf("stack: %q is not an IP literal", host)
		}
		ip = ip.Unmap()
		if !ip.Is4() {
			return netip.AddrPort{}, ErrIPv6
		}
	}
	return netip.AddrPortFrom(ip, uint16(p)), nil
}

// Ping sends one ICMP echo request with the given sequence number and
// payload to dst and waits for the matching reply or ctx. It returns the
// round-trip time.
func (s *Stack) Ping(ctx context.Context, dst netip.Addr, seq uint16, payload []byte) (time.Duration, error) {
	if !dst.Is4() {
		return 0, ErrIPv6
	}
	var wq waiter.Queue
	ep, terr := s.gv.NewEndpoint(icmp.ProtocolNumber4, ipv4.ProtocolNumber, &wq)
	if terr != nil {
		return 0, fmt.Errorf("stack: ping endpoint: %v", terr)
	}
	defer ep.Close()
	entry, ch := waiter.NewChannelEntry(waiter.ReadableEvents)
	wq.EventRegister(&entry)
	defer wq.EventUnregister(&entry)

	msg := make([]byte, header.ICMPv4MinimumSize+len(payload))
	icmpHdr := header.ICMPv4(msg)
	icmpHdr.SetType(header.ICMPv4Echo)
	icmpHdr.SetSequence(seq)
	copy(msg[header.ICMPv4MinimumSize:], payload)
	to := tcpip.FullAddress{Addr: tcpip.AddrFrom4(dst.As4())}
	start := time.Now()
	var r bytes.Reader
	r.Reset(msg)
	if _, terr := ep.Write(&r, tcpip.WriteOptions{To: &to}); terr != nil {
		return 0, fmt.Errorf("stack: ping %v: %v", dst, terr)
	}
	for {
		var out bytes.Buffer
		_, terr := ep.Read(&out, tcpip.ReadOptions{})
		if _, ok := terr.(*tcpip.ErrWouldBlock); ok {
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}
		if terr != nil {
			return 0, fmt.Errorf("stack: ping %v: %v", dst, terr)
		}
		reply := header.ICMPv4(out.Bytes())
		if len(reply) >= header.ICMPv4MinimumSize && reply.Type() == header.ICMPv4EchoReply &&
			reply.Sequence() == seq && bytes.Equal(reply.Payload(), payload) {
			return time.Since(start), nil
		}
	}
}
