package stack

import (
	"bytes"
	"net/netip"
	"slices"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	gvstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// allNodesMAC is the Ethernet group of ff02::1 (RFC 2464 section 7), which
// router advertisements and DAD's neighbour advertisements go to.
var allNodesMAC = [6]byte{0x33, 0x33, 0, 0, 0, 1}

// Groups returns the Ethernet multicast groups the interface must receive
// for its IPv6 addresses (tentative ones included, so DAD sees a rival's
// solicitation): all-nodes, and the solicited-node group of every address
// (RFC 4861 section 7.2.1), sorted without repeats.
func (s *Stack) Groups() [][6]byte {
	groups := [][6]byte{allNodesMAC}
	for _, a := range s.addrs6() {
		var g [6]byte
		copy(g[:], header.EthernetAddressFromMulticastIPv6Address(header.SolicitedNodeAddr(a.Address)))
		groups = append(groups, g)
	}
	slices.SortFunc(groups, func(a, b [6]byte) int { return bytes.Compare(a[:], b[:]) })
	return slices.Compact(groups)
}

// addrs6 returns the interface's permanent IPv6 addresses: link-local,
// static and SLAAC, tentative or assigned.
func (s *Stack) addrs6() []tcpip.AddressWithPrefix {
	ep, err := s.gv.GetNetworkEndpoint(NICID, ipv6.ProtocolNumber)
	if err != nil {
		return nil
	}
	ae, ok := ep.(gvstack.AddressableEndpoint)
	if !ok {
		return nil
	}
	return ae.PermanentAddresses()
}

// LinkLocal returns the interface's IPv6 link-local address, derived from
// the MAC (modified EUI-64, RFC 4291 appendix A), or the zero Addr when
// IPv6 is off.
func (s *Stack) LinkLocal() netip.Addr {
	if !s.cfg.IPv6 {
		return netip.Addr{}
	}
	return netip.AddrFrom16(header.LinkLocalAddr(s.ep.LinkAddress()).As16())
}

// Addrs6 returns the interface's IPv6 addresses with their prefixes:
// link-local, static and SLAAC, including ones still in duplicate address
// detection.
func (s *Stack) Addrs6() []netip.Prefix {
	var out []netip.Prefix
	for _, a := range s.addrs6() {
		out = append(out, netip.PrefixFrom(netip.AddrFrom16(a.Address.As16()), a.PrefixLen))
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	return out
}

// routeOp is a route change NDP asked for: an on-link prefix or a router.
type routeOp struct {
	add bool
	r   tcpip.Route
}

// ndpUpdate applies what NDP learnt since the last step, on the poll
// goroutine: route changes (gVisor leaves routes to the integrator), then
// the device's multicast filter, when the group set changed.
func (s *Stack) ndpUpdate() {
	s.ndpDirty.Store(false) // before reading: a change from now on sets it again
	s.routeMu.Lock()
	ops := s.routeOps
	s.routeOps = nil
	s.routeMu.Unlock()
	for _, op := range ops {
		// Not r == op.r: a stored Route carries its list links.
		s.gv.RemoveRoutes(func(r tcpip.Route) bool {
			return r.Destination == op.r.Destination && r.Gateway == op.r.Gateway && r.NIC == op.r.NIC
		})
		if op.add {
			s.gv.AddRoute(op.r)
		}
	}
	g := s.Groups()
	if slices.Equal(g, s.groups) {
		return
	}
	if s.ep.SetGroups(g) {
		s.groups = g
	}
}

// ndpEvents is the stack's ipv6.NDPDispatcher. gVisor calls it with its own
// locks held and forbids calls into the stack, so it only records what
// changed (addresses, on-link prefixes, routers); the poll goroutine
// applies it (ndpUpdate). gVisor bounds the prefixes and routers it
// tracks, so the queue stays small.
type ndpEvents struct{ s *Stack }

var _ ipv6.NDPDispatcher = ndpEvents{}

func (n ndpEvents) changed() {
	n.s.ndpDirty.Store(true)
	n.s.Wake()
}

func (n ndpEvents) route(add bool, r tcpip.Route) {
	n.s.routeMu.Lock()
	n.s.routeOps = append(n.s.routeOps, routeOp{add: add, r: r})
	n.s.routeMu.Unlock()
	n.changed()
}

func (n ndpEvents) OnDuplicateAddressDetectionResult(tcpip.NICID, tcpip.Address, gvstack.DADResult) {
	n.changed()
}

// OnOffLinkRouteUpdated: a router (dest ::/0) or a more specific route
// from a router advertisement (RFC 4861 section 6.3.4, RFC 4191).
func (n ndpEvents) OnOffLinkRouteUpdated(nic tcpip.NICID, dest tcpip.Subnet, router tcpip.Address, _ header.NDPRoutePreference) {
	n.route(true, tcpip.Route{Destination: dest, Gateway: router, NIC: nic})
}

func (n ndpEvents) OnOffLinkRouteInvalidated(nic tcpip.NICID, dest tcpip.Subnet, router tcpip.Address) {
	n.route(false, tcpip.Route{Destination: dest, Gateway: router, NIC: nic})
}

// OnOnLinkPrefixDiscovered: a prefix with the L flag; its addresses are
// neighbours, reached without a router.
func (n ndpEvents) OnOnLinkPrefixDiscovered(nic tcpip.NICID, prefix tcpip.Subnet) {
	n.route(true, tcpip.Route{Destination: prefix, NIC: nic})
}

func (n ndpEvents) OnOnLinkPrefixInvalidated(nic tcpip.NICID, prefix tcpip.Subnet) {
	n.route(false, tcpip.Route{Destination: prefix, NIC: nic})
}

func (n ndpEvents) OnAutoGenAddress(tcpip.NICID, tcpip.AddressWithPrefix) gvstack.AddressDispatcher {
	n.changed()
	return nil
}
func (n ndpEvents) OnAutoGenAddressDeprecated(tcpip.NICID, tcpip.AddressWithPrefix) {}
func (n ndpEvents) OnAutoGenAddressInvalidated(tcpip.NICID, tcpip.AddressWithPrefix) {
	n.changed()
}
func (ndpEvents) OnRecursiveDNSServerOption(tcpip.NICID, []tcpip.Address, time.Duration) {}
func (ndpEvents) OnDNSSearchListOption(tcpip.NICID, []string, time.Duration)             {}
func (ndpEvents) OnDHCPv6Configuration(tcpip.NICID, ipv6.DHCPv6ConfigurationFromNDPRA)   {}
