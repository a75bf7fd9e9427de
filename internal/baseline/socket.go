package baseline

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
)

// Socket has the signature of tamago's net.SocketFunc and maps sockets to
// gonet as the upstream glue does: a TCP listener without a remote
// address, a TCP connection with one, and a *gonet.UDPConn for datagrams.
// Only IPv4 is served.
func (s *Stack) Socket(ctx context.Context, network string, family, sotype int, laddr, raddr net.Addr) (interface{}, error) {
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
			return gonet.ListenTCP(s.gv, la, ipv4.ProtocolNumber)
		}
		if ctx == nil {
			ctx = context.Background()
		}
		if lok {
			return gonet.DialTCPWithBind(ctx, s.gv, la, ra, ipv4.ProtocolNumber)
		}
		return gonet.DialContextTCP(ctx, s.gv, ra, ipv4.ProtocolNumber)
	case syscall.SOCK_DGRAM:
		var lp, rp *tcpip.FullAddress
		if lok || !rok {
			lp = &la
		}
		if rok {
			rp = &ra
		}
		return gonet.DialUDP(s.gv, lp, rp, ipv4.ProtocolNumber)
	}
	return nil, fmt.Errorf("baseline: socket type %d: %w", sotype, syscall.EPROTONOSUPPORT)
}

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
		return fa, false, fmt.Errorf("baseline: unsupported address type %T", a)
	}
	fa.Port = uint16(port)
	if len(ip) == 0 || ip.IsUnspecified() {
		return fa, true, nil
	}
	ip4 := ip.To4()
	if ip4 == nil {
		return fa, false, errors.New("baseline: IPv6 is not supported")
	}
	fa.Addr = tcpip.AddrFrom4([4]byte(ip4))
	return fa, true, nil
}

// Listen is net.Listen on the stack ("tcp", "host:port").
func (s *Stack) Listen(network, address string) (net.Listener, error) {
	a, err := netip.ParseAddrPort(withHost(address))
	if err != nil {
		return nil, err
	}
	c, err := s.Socket(context.Background(), network, syscall.AF_INET, syscall.SOCK_STREAM, net.TCPAddrFromAddrPort(a), nil)
	if err != nil {
		return nil, err
	}
	return c.(net.Listener), nil
}

// ListenPacket is net.ListenPacket on the stack ("udp", "host:port").
func (s *Stack) ListenPacket(network, address string) (net.PacketConn, error) {
	a, err := netip.ParseAddrPort(withHost(address))
	if err != nil {
		return nil, err
	}
	c, err := s.Socket(context.Background(), network, syscall.AF_INET, syscall.SOCK_DGRAM, net.UDPAddrFromAddrPort(a), nil)
	if err != nil {
		return nil, err
	}
	return c.(net.PacketConn), nil
}

// Dial is net.Dial on the stack to a literal "ip:port" ("tcp" or "udp").
func (s *Stack) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	a, err := netip.ParseAddrPort(address)
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

// withHost turns ":port" into "0.0.0.0:port".
func withHost(address string) string {
	if len(address) > 0 && address[0] == ':' {
		return "0.0.0.0" + address
	}
	return address
}
