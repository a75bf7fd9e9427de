package stack

import (
	"fmt"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	gvstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// IPv4 returns the interface's current IPv4 address and default gateway;
// the zero values mean none.
func (s *Stack) IPv4() (netip.Prefix, netip.Addr) {
	s.ipMu.Lock()
	defer s.ipMu.Unlock()
	return s.ip, s.gw
}

// SetIPv4 makes addr the interface's one IPv4 address, with a route to its
// prefix and, when gw is valid, a default route through gw; the address and
// IPv4 routes it had before are removed. Setting the address it already has
// keeps it (sockets bound to it live on) and only updates the routes. Routes
// of other protocols are left alone. The values are checked as Config's.
func (s *Stack) SetIPv4(addr netip.Prefix, gw netip.Addr) error {
	c := Config{Addr: addr, Gateway: gw}
	if err := c.validateAddr(); err != nil {
		return err
	}
	s.ipMu.Lock()
	defer s.ipMu.Unlock()
	if s.ip.IsValid() && s.ip != addr {
		s.gv.RemoveAddress(NICID, tcpip.AddrFrom4(s.ip.Addr().As4()))
		s.ip = netip.Prefix{}
	}
	s.removeIPv4Routes()
	if !s.ip.IsValid() {
		if err := s.addAddress(addr); err != nil {
			s.gw = netip.Addr{}
			return err
		}
		s.ip = addr
	}
	s.gw = gw
	s.gv.AddRoute(onLink(addr))
	if gw.IsValid() {
		s.gv.AddRoute(tcpip.Route{Destination: header.IPv4EmptySubnet, Gateway: tcpip.AddrFrom4(gw.As4()), NIC: NICID})
	}
	return nil
}

// ClearIPv4 removes the interface's IPv4 address and IPv4 routes (a lease
// that ended). Connections bound to the address stop working.
func (s *Stack) ClearIPv4() {
	s.ipMu.Lock()
	defer s.ipMu.Unlock()
	if s.ip.IsValid() {
		s.gv.RemoveAddress(NICID, tcpip.AddrFrom4(s.ip.Addr().As4()))
	}
	s.removeIPv4Routes()
	s.ip, s.gw = netip.Prefix{}, netip.Addr{}
}

// addAddress gives the interface the address p, IPv4 or IPv6.
func (s *Stack) addAddress(p netip.Prefix) error {
	pa := tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: addrWithPrefix(p)}
	if p.Addr().Is6() {
		pa.Protocol = ipv6.ProtocolNumber
	}
	if err := s.gv.AddProtocolAddress(NICID, pa, gvstack.AddressProperties{}); err != nil {
		return fmt.Errorf("stack: add address %v: %v", p, err)
	}
	return nil
}

// onLink is the route to p's subnet through the interface.
func onLink(p netip.Prefix) tcpip.Route {
	return tcpip.Route{Destination: addrWithPrefix(p).Subnet(), NIC: NICID}
}

func addrWithPrefix(p netip.Prefix) tcpip.AddressWithPrefix {
	return tcpip.AddressWithPrefix{Address: tcpip.AddrFromSlice(p.Addr().AsSlice()), PrefixLen: p.Bits()}
}

func (s *Stack) removeIPv4Routes() {
	s.gv.RemoveRoutes(func(r tcpip.Route) bool { return r.Destination.ID().BitLen() == 32 })
}
