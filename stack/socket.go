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
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	gvstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// ErrIPv6 is returned for sockets that need IPv6 on a stack that does not
// run it (Config.IPv6 off).
var ErrIPv6 = errors.New("stack: IPv6 is not enabled")

// ErrFamily is returned for an address of the wrong family for the network:
// an IPv6 address on "tcp4" or "udp4", an IPv4 one on "tcp6" or "udp6".
var ErrFamily = errors.New("stack: address family does not match the network")

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
// means any local address. The family follows the network and the
// addresses, as on Linux: "tcp4"/"udp4" are IPv4, "tcp6"/"udp6" IPv6 only
// (IPV6_V6ONLY); "tcp"/"udp" take the family of the address given, and with
// none (a wildcard listener, an unbound socket) open one dual-stack socket
// that serves IPv4 and IPv6 alike. An IPv4-mapped IPv6 address is IPv4. A
// link-local IPv6 address needs no zone: the stack has one interface.
//
// family matters for one case: a "udp" socket tamago's net package opened
// as AF_INET (which it does for a wildcard "udp" listener, having no
// IPv4-mapped addresses) is IPv4 only, because tamago's net converts each
// datagram's source address to the descriptor's family and would fail
// on an IPv6 sender. Such a program opens a "udp6" socket for IPv6
// beside it (service.Config.UDP6). Otherwise family is ignored.
func (s Sockets) Socket(ctx context.Context, network string, family, sotype int, laddr, raddr net.Addr) (interface{}, error) {
	la, lok, err := fullAddr(laddr)
	if err != nil {
		return nil, err
	}
	ra, rok, err := fullAddr(raddr)
	if err != nil {
		return nil, err
	}
	proto, v6only, err := netProto(network, la.Addr, ra.Addr, s.gv.NetworkProtocolInstance(ipv6.ProtocolNumber) != nil)
	if err != nil {
		return nil, err
	}
	switch sotype {
	case syscall.SOCK_STREAM:
		if !rok {
			return s.listenTCP(la, proto, v6only)
		}
		if ctx == nil {
			ctx = context.Background()
		}
		var c *gonet.TCPConn
		if lok {
			c, err = gonet.DialTCPWithBind(ctx, s.gv, la, ra, proto)
		} else {
			c, err = gonet.DialContextTCP(ctx, s.gv, ra, proto)
		}
		if err != nil {
			return nil, err
		}
		return c, nil
	case syscall.SOCK_DGRAM:
		if family == syscall.AF_INET && proto == ipv6.ProtocolNumber && !v6only && la.Addr.BitLen() == 0 && ra.Addr.BitLen() == 0 {
			proto = ipv4.ProtocolNumber
		}
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
		return s.dialUDP(lp, rp, proto, v6only)
	}
	return nil, fmt.Errorf("stack: socket type %d on %q: %w", sotype, network, syscall.EPROTONOSUPPORT)
}

// netProto picks the network protocol for a socket on network with local
// address la and remote address ra (zero when not given), and whether an
// IPv6 socket serves IPv6 only. has6 says whether the stack runs IPv6.
func netProto(network string, la, ra tcpip.Address, has6 bool) (tcpip.NetworkProtocolNumber, bool, error) {
	has := func(bits int) bool { return la.BitLen() == bits || ra.BitLen() == bits }
	if !has6 {
		switch {
		case network == "tcp6" || network == "udp6" || has(128):
			return 0, false, ErrIPv6
		case network == "tcp4" || network == "udp4" || network == "tcp" || network == "udp":
			return ipv4.ProtocolNumber, false, nil
		}
	}
	switch network {
	case "tcp4", "udp4":
		if has(128) {
			return 0, false, fmt.Errorf("stack: IPv6 address on %q: %w", network, ErrFamily)
		}
		return ipv4.ProtocolNumber, false, nil
	case "tcp6", "udp6":
		if has(32) {
			return 0, false, fmt.Errorf("stack: IPv4 address on %q: %w", network, ErrFamily)
		}
		return ipv6.ProtocolNumber, true, nil
	case "tcp", "udp":
		switch {
		case has(32) && has(128):
			return 0, false, fmt.Errorf("stack: IPv4 and IPv6 addresses on one %q socket: %w", network, ErrFamily)
		case has(32):
			return ipv4.ProtocolNumber, false, nil
		}
		return ipv6.ProtocolNumber, false, nil // IPv6, or dual-stack with no address
	}
	return 0, false, fmt.Errorf("stack: unsupported network %q", network)
}

// newEndpoint opens a transport endpoint with the IPV6_V6ONLY option,
// which gonet's constructors do not set.
func (s Sockets) newEndpoint(trans tcpip.TransportProtocolNumber, proto tcpip.NetworkProtocolNumber, v6only bool, wq *waiter.Queue) (tcpip.Endpoint, error) {
	ep, terr := s.gv.NewEndpoint(trans, proto, wq)
	if terr != nil {
		return nil, errors.New(terr.String())
	}
	if proto == ipv6.ProtocolNumber {
		ep.SocketOptions().SetV6Only(v6only)
	}
	return ep, nil
}

// listenTCP is gonet.ListenTCP with the IPV6_V6ONLY option.
func (s Sockets) listenTCP(la tcpip.FullAddress, proto tcpip.NetworkProtocolNumber, v6only bool) (net.Listener, error) {
	var wq waiter.Queue
	ep, err := s.newEndpoint(tcp.ProtocolNumber, proto, v6only, &wq)
	if err != nil {
		return nil, err
	}
	op := "bind"
	terr := ep.Bind(la)
	if terr == nil {
		op = "listen"
		terr = ep.Listen(listenBacklog)
	}
	if terr != nil {
		ep.Close()
		return nil, &net.OpError{Op: op, Net: "tcp", Addr: netAddr(la, false), Err: errors.New(terr.String())}
	}
	return gonet.NewTCPListener(s.gv, &wq, ep), nil
}

// listenBacklog is gonet.ListenTCP's backlog.
const listenBacklog = 4096

// dialUDP is gonet.DialUDP with the IPV6_V6ONLY option.
func (s Sockets) dialUDP(la, ra *tcpip.FullAddress, proto tcpip.NetworkProtocolNumber, v6only bool) (*gonet.UDPConn, error) {
	var wq waiter.Queue
	ep, err := s.newEndpoint(udp.ProtocolNumber, proto, v6only, &wq)
	if err != nil {
		return nil, err
	}
	if la != nil {
		if terr := ep.Bind(*la); terr != nil {
			ep.Close()
			return nil, &net.OpError{Op: "bind", Net: "udp", Addr: netAddr(*la, true), Err: errors.New(terr.String())}
		}
	}
	if ra != nil {
		if terr := ep.Connect(*ra); terr != nil {
			ep.Close()
			return nil, &net.OpError{Op: "connect", Net: "udp", Addr: netAddr(*ra, true), Err: errors.New(terr.String())}
		}
	}
	return gonet.NewUDPConn(&wq, ep), nil
}

// netAddr is a as a net address, for error messages.
func netAddr(a tcpip.FullAddress, udp bool) net.Addr {
	ip := net.IP(a.Addr.AsSlice())
	if udp {
		return &net.UDPAddr{IP: ip, Port: int(a.Port)}
	}
	return &net.TCPAddr{IP: ip, Port: int(a.Port)}
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
	if ip4 := ip.To4(); ip4 != nil {
		fa.Addr = tcpip.AddrFrom4([4]byte(ip4))
		return fa, true, nil
	}
	if len(ip) != net.IPv6len {
		return fa, false, fmt.Errorf("stack: IP address of %d bytes", len(ip))
	}
	fa.Addr = tcpip.AddrFrom16([16]byte(ip))
	return fa, true, nil
}

// Listen is net.Listen on the stack: network "tcp", "tcp4" or "tcp6",
// address "host:port" with a literal host (IPv6 in brackets), which may be
// empty for a wildcard listener ("tcp": dual-stack).
func (s Sockets) Listen(network, address string) (net.Listener, error) {
	a, err := resolve(network, address)
	if err != nil {
		return nil, err
	}
	c, err := s.Socket(context.Background(), network, 0, syscall.SOCK_STREAM, net.TCPAddrFromAddrPort(a), nil)
	if err != nil {
		return nil, err
	}
	return c.(net.Listener), nil
}

// Dial is net.Dial on the stack for "tcp", "udp" and their "4" and "6"
// forms to a literal "ip:port".
func (s Sockets) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	a, err := resolve(network, address)
	if err != nil {
		return nil, err
	}
	var c interface{}
	switch network {
	case "udp", "udp4", "udp6":
		c, err = s.Socket(ctx, network, 0, syscall.SOCK_DGRAM, nil, net.UDPAddrFromAddrPort(a))
	default:
		c, err = s.Socket(ctx, network, 0, syscall.SOCK_STREAM, nil, net.TCPAddrFromAddrPort(a))
	}
	if err != nil {
		return nil, err
	}
	return c.(net.Conn), nil
}

// ListenPacket is net.ListenPacket on the stack: "udp", "udp4" or "udp6".
func (s Sockets) ListenPacket(network, address string) (net.PacketConn, error) {
	a, err := resolve(network, address)
	if err != nil {
		return nil, err
	}
	c, err := s.Socket(context.Background(), network, 0, syscall.SOCK_DGRAM, net.UDPAddrFromAddrPort(a), nil)
	if err != nil {
		return nil, err
	}
	return c.(net.PacketConn), nil
}

// resolve parses a literal "host:port"; an empty host is the zero Addr
// (any address), a zone on an IPv6 host is dropped (one interface).
func resolve(network, address string) (netip.AddrPort, error) {
	switch network {
	case "tcp", "tcp4", "tcp6", "udp", "udp4", "udp6":
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
	var ip netip.Addr
	if host != "" {
		if ip, err = netip.ParseAddr(host); err != nil {
			return netip.AddrPort{}, fmt.Errorf("stack: %q is not an IP literal", host)
		}
		ip = ip.WithZone("").Unmap()
	}
	return netip.AddrPortFrom(ip, uint16(p)), nil
}

// Ping sends one ICMP or ICMPv6 echo request with the given sequence number
// and payload to dst and waits for the matching reply or ctx. It returns
// the round-trip time.
func (s *Stack) Ping(ctx context.Context, dst netip.Addr, seq uint16, payload []byte) (time.Duration, error) {
	dst = dst.WithZone("").Unmap()
	if !dst.IsValid() {
		return 0, errors.New("stack: ping: no address")
	}
	if dst.Is6() && !s.cfg.IPv6 {
		return 0, ErrIPv6
	}
	tproto, nproto := icmp.ProtocolNumber4, ipv4.ProtocolNumber
	reqType, replyType := uint8(header.ICMPv4Echo), uint8(header.ICMPv4EchoReply)
	to := tcpip.FullAddress{Addr: tcpip.AddrFromSlice(dst.AsSlice())}
	if dst.Is6() {
		tproto, nproto = icmp.ProtocolNumber6, ipv6.ProtocolNumber
		reqType, replyType = uint8(header.ICMPv6EchoRequest), uint8(header.ICMPv6EchoReply)
		if dst.IsLinkLocalUnicast() || dst.IsLinkLocalMulticast() {
			to.NIC = NICID
		}
	}
	var wq waiter.Queue
	ep, terr := s.gv.NewEndpoint(tproto, nproto, &wq)
	if terr != nil {
		return 0, fmt.Errorf("stack: ping endpoint: %v", terr)
	}
	defer ep.Close()
	entry, ch := waiter.NewChannelEntry(waiter.ReadableEvents)
	wq.EventRegister(&entry)
	defer wq.EventUnregister(&entry)

	// ICMPv4 and ICMPv6 echo share the layout: type, code, checksum,
	// identifier, sequence (RFC 792, RFC 4443 section 4.1); gVisor's
	// ping endpoints fill in the identifier and checksum.
	msg := make([]byte, header.ICMPv4MinimumSize+len(payload))
	icmpHdr := header.ICMPv4(msg)
	icmpHdr.SetType(header.ICMPv4Type(reqType))
	icmpHdr.SetSequence(seq)
	copy(msg[header.ICMPv4MinimumSize:], payload)
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
		if len(reply) >= header.ICMPv4MinimumSize && uint8(reply.Type()) == replyType &&
			reply.Sequence() == seq && bytes.Equal(reply.Payload(), payload) {
			return time.Since(start), nil
		}
	}
}
