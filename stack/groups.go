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

// updateGroups programs the device's multicast filter with Groups when the
// set changed. It runs on the poll goroutine.
func (s *Stack) updateGroups() {
	s.groupsDirty.Store(false) // before reading: a change from now on sets it again
	g := s.Groups()
	if slices.Equal(g, s.groups) {
		return
	}
	if s.ep.SetGroups(g) {
		s.groups = g
	}
}

// ndpEvents is the stack's ipv6.NDPDispatcher. gVisor calls it with its own
// locks held, so it only flags that the address set changed; the poll
// goroutine does the rest.
type ndpEvents struct{ s *Stack }

var _ ipv6.NDPDispatcher = ndpEvents{}

func (n ndpEvents) changed() {
	n.s.groupsDirty.Store(true)
	n.s.Wake()
}

func (n ndpEvents) OnDuplicateAddressDetectionResult(tcpip.NICID, tcpip.Address, gvstack.DADResult) {
	n.changed()
}
func (ndpEvents) OnOffLinkRouteUpdated(tcpip.NICID, tcpip.Subnet, tcpip.Address, header.NDPRoutePreference) {
}
func (ndpEvents) OnOffLinkRouteInvalidated(tcpip.NICID, tcpip.Subnet, tcpip.Address) {}
func (ndpEvents) OnOnLinkPrefixDiscovered(tcpip.NICID, tcpip.Subnet)                 {}
func (ndpEvents) OnOnLinkPrefixInvalidated(tcpip.NICID, tcpip.Subnet)                {}
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
