// Package config holds the unikernel's network configuration: the IPv4
// address with its prefix (or DHCP), the default gateway, the MAC address,
// the DNS servers, with DHCP a static fallback, and an optional static IPv6
// address with its prefix (the IPv6 link-local and SLAAC addresses need no
// configuration).
//
// The values are fixed at build time. The Makefile passes IP, GW, MAC, DNS,
// FALLBACK, IP6 and OFFLOADS to the linker (-X) as defaultIP, defaultGW,
// defaultMAC, defaultDNS, defaultFallback, defaultIP6 and defaultOffloads,
// after running internal/config/check on
// them so that invalid values fail the build. The unikernel calls Default
// at boot and refuses to start on an error, so an image built without the
// check still never runs half-configured.
//
// IP=dhcp asks a DHCP server for the address (package stack/dhcp); then
// FALLBACK (an address with prefix, or empty for none) is used, with GW as
// its gateway, when no server answers. DNS is a comma-separated list of
// IPv4 name servers, used as they are with a static address and before a
// lease's own servers with DHCP. OFFLOADS=off turns the NIC's checksum and
// segmentation offloads off (for A/B runs and broken backends); on is the
// default.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// Build-time values, set with -ldflags "-X ...config.defaultIP=..." etc.
var (
	defaultIP       = "10.0.0.1/24"
	defaultGW       = "10.0.0.2"
	defaultMAC      = "02:00:00:00:00:01"
	defaultDNS      = ""
	defaultFallback = ""
	defaultIP6      = "fd00::10:1/64"
	defaultOffloads = "on"
)

// DHCP is the IP value that selects DHCP.
const DHCP = "dhcp"

// MaxDNS is how many DNS servers DNS may list.
const MaxDNS = 3

// Config is a validated network configuration.
type Config struct {
	// Addr is the interface's IPv4 address and prefix, e.g. 10.0.0.1/24.
	Addr netip.Prefix
	// Gateway is the next hop of the default route; the zero Addr means
	// no default route (only the local prefix is reachable).
	Gateway netip.Addr
	// MAC is the station address: 6 bytes, unicast, not all zeros.
	MAC net.HardwareAddr
	// DHCP means the address comes from a DHCP server; Addr and Gateway
	// are then the fallback (Addr invalid: no fallback).
	DHCP bool
	// DNS are name servers configured at build time.
	DNS []netip.Addr
	// Addr6 is the static IPv6 address and prefix, e.g. fd00::10:1/64;
	// the zero Prefix means none.
	Addr6 netip.Prefix
	// NoOffloads: the NIC driver negotiates no checksum or segmentation
	// offload (OFFLOADS=off).
	NoOffloads bool
}

// Values are the configuration as text, as the make variables give it.
type Values struct {
	IP, GW, MAC, DNS, Fallback, IP6 string
	// Offloads is "on" or "off"; empty means on.
	Offloads string
}

// Default parses and validates the values the image was built with.
func Default() (Config, error) {
	return ParseValues(Values{IP: defaultIP, GW: defaultGW, MAC: defaultMAC, DNS: defaultDNS, Fallback: defaultFallback, IP6: defaultIP6, Offloads: defaultOffloads})
}

// ParseValues parses and validates a whole configuration. IP "dhcp"
// selects DHCP: Fallback (empty for none) is then the static address and
// GW its gateway; GW is ignored without a fallback (the server gives the
// router). With a static IP, Fallback must be empty.
func ParseValues(v Values) (Config, error) {
	var c Config
	var err error
	fb := strings.TrimSpace(v.Fallback)
	if strings.EqualFold(strings.TrimSpace(v.IP), DHCP) {
		c.DHCP = true
		if fb != "" {
			if c.Addr, err = parseAddr(fb); err != nil {
				return Config{}, fmt.Errorf("config: FALLBACK%s", strings.TrimPrefix(err.Error(), "config: IP"))
			}
			if c.Gateway, err = parseGateway(v.GW, c.Addr); err != nil {
				return Config{}, err
			}
		}
		if c.MAC, err = parseMAC(v.MAC); err != nil {
			return Config{}, err
		}
	} else {
		if fb != "" {
			return Config{}, fmt.Errorf("config: FALLBACK %q: only with IP=dhcp", v.Fallback)
		}
		if c, err = Parse(v.IP, v.GW, v.MAC); err != nil {
			return Config{}, err
		}
	}
	if c.DNS, err = parseDNS(v.DNS); err != nil {
		return Config{}, err
	}
	if c.Addr6, err = ParseIP6(v.IP6); err != nil {
		return Config{}, err
	}
	switch strings.ToLower(strings.TrimSpace(v.Offloads)) {
	case "", "on":
	case "off":
		c.NoOffloads = true
	default:
		return Config{}, fmt.Errorf("config: OFFLOADS %q: on or off", v.Offloads)
	}
	return c, nil
}

// ParseIP6 parses and validates a static IPv6 address with prefix
// ("fd00::10:1/64"), or "" for none. The error names the value and says
// why.
func ParseIP6(s string) (netip.Prefix, error) {
	fail := func(why string) (netip.Prefix, error) {
		return netip.Prefix{}, fmt.Errorf("config: IP6 %q: %s", s, why)
	}
	s = strings.TrimSpace(s)
	if s == "" {
		return netip.Prefix{}, nil
	}
	if !strings.Contains(s, "/") {
		return fail("missing prefix length, e.g. fd00::10:1/64")
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return fail("not an address/prefix: " + unwrapParse(err))
	}
	a := p.Addr()
	switch {
	case !a.Is6() || a.Is4In6():
		return fail("not IPv6 (IP= takes the IPv4 address)")
	case p.Bits() < 1:
		return fail("prefix length /0 leaves no local network")
	case a.IsUnspecified():
		return fail("the unspecified address cannot be an interface address")
	case a.IsLoopback():
		return fail("the loopback address cannot be an interface address")
	case a.IsMulticast():
		return fail("a multicast address cannot be an interface address")
	case a.IsLinkLocalUnicast():
		return fail("the link-local address comes from the MAC; IP6 is for a routable one")
	}
	return p, nil
}

// Parse parses and validates an address with prefix ("10.0.0.1/24"), a
// gateway ("10.0.0.2", or "" for none) and a MAC ("02:00:00:00:00:01").
// The error names the value at fault and says why.
func Parse(ip, gw, mac string) (Config, error) {
	var c Config
	var err error
	if c.Addr, err = parseAddr(ip); err != nil {
		return Config{}, err
	}
	if c.Gateway, err = parseGateway(gw, c.Addr); err != nil {
		return Config{}, err
	}
	if c.MAC, err = parseMAC(mac); err != nil {
		return Config{}, err
	}
	return c, nil
}

// String formats c as the IP, GW and MAC make variables would set it
// (and, when set, DHCP with its fallback, DNS, IP6 and OFFLOADS=off).
func (c Config) String() string {
	gw := "none"
	if c.Gateway.IsValid() {
		gw = c.Gateway.String()
	}
	var s string
	switch {
	case !c.DHCP:
		s = fmt.Sprintf("ip=%v gw=%s mac=%v", c.Addr, gw, c.MAC)
	case c.Addr.IsValid():
		s = fmt.Sprintf("ip=dhcp fallback=%v gw=%s mac=%v", c.Addr, gw, c.MAC)
	default:
		s = fmt.Sprintf("ip=dhcp fallback=none mac=%v", c.MAC)
	}
	if len(c.DNS) > 0 {
		d := make([]string, len(c.DNS))
		for i, a := range c.DNS {
			d[i] = a.String()
		}
		s += " dns=" + strings.Join(d, ",")
	}
	if c.Addr6.IsValid() {
		s += fmt.Sprintf(" ip6=%v", c.Addr6)
	}
	if c.NoOffloads {
		s += " offloads=off"
	}
	return s
}

func parseDNS(s string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
		a, err := netip.ParseAddr(f)
		switch {
		case err != nil:
			return nil, fmt.Errorf("config: DNS %q: %q is not an IP address", s, f)
		case !a.Is4():
			return nil, fmt.Errorf("config: DNS %q: %v is not IPv4", s, a)
		case a.IsUnspecified() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
			return nil, fmt.Errorf("config: DNS %q: %v is not a unicast address", s, a)
		case len(out) == MaxDNS:
			return nil, fmt.Errorf("config: DNS %q: more than %d servers", s, MaxDNS)
		}
		out = append(out, a)
	}
	return out, nil
}

func parseAddr(s string) (netip.Prefix, error) {
	fail := func(why string) (netip.Prefix, error) {
		return netip.Prefix{}, fmt.Errorf("config: IP %q: %s", s, why)
	}
	s = strings.TrimSpace(s)
	if s == "" {
		return fail("empty; want an IPv4 address with prefix length, e.g. 10.0.0.1/24")
	}
	if !strings.Contains(s, "/") {
		return fail("missing prefix length, e.g. 10.0.0.1/24")
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return fail("not an address/prefix: " + unwrapParse(err))
	}
	a := p.Addr()
	bits := p.Bits()
	switch {
	case !a.Is4():
		return fail("not IPv4 (the stack speaks IPv4 only)")
	case bits < 1:
		return fail("prefix length /0 leaves no local network")
	case a.IsUnspecified():
		return fail("the unspecified address cannot be an interface address")
	case a.IsLoopback():
		return fail("a loopback address cannot be an interface address")
	case a.IsMulticast():
		return fail("a multicast address cannot be an interface address")
	case a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return fail("the limited broadcast address cannot be an interface address")
	case bits <= 30 && a == p.Masked().Addr():
		return fail(fmt.Sprintf("this is the network address of %v", p.Masked()))
	case bits <= 30 && a == broadcast(p):
		return fail(fmt.Sprintf("this is the broadcast address of %v", p.Masked()))
	}
	return p, nil
}

func parseGateway(s string, addr netip.Prefix) (netip.Addr, error) {
	fail := func(why string) (netip.Addr, error) {
		return netip.Addr{}, fmt.Errorf("config: GW %q: %s", s, why)
	}
	s = strings.TrimSpace(s)
	if s == "" {
		return netip.Addr{}, nil
	}
	if strings.Contains(s, "/") {
		return fail("a gateway is a plain address, without prefix length")
	}
	g, err := netip.ParseAddr(s)
	if err != nil {
		return fail("not an IP address: " + unwrapParse(err))
	}
	switch {
	case !g.Is4():
		return fail("not IPv4")
	case g.IsUnspecified() || g.IsMulticast() || g.IsLoopback() || g == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return fail("not a unicast address")
	case g == addr.Addr():
		return fail("the gateway is the interface's own address")
	case !addr.Contains(g):
		return fail(fmt.Sprintf("outside the interface's network %v (IP=%v)", addr.Masked(), addr))
	case addr.Bits() <= 30 && (g == addr.Masked().Addr() || g == broadcast(addr)):
		return fail(fmt.Sprintf("the network or broadcast address of %v", addr.Masked()))
	}
	return g, nil
}

func parseMAC(s string) (net.HardwareAddr, error) {
	fail := func(why string) (net.HardwareAddr, error) {
		return nil, fmt.Errorf("config: MAC %q: %s", s, why)
	}
	s = strings.TrimSpace(s)
	if s == "" {
		return fail("empty; want six hex octets, e.g. 02:00:00:00:00:01")
	}
	m, err := net.ParseMAC(s)
	if err != nil {
		return fail("want six hex octets separated by ':' or '-', e.g. 02:00:00:00:00:01")
	}
	switch {
	case len(m) != 6:
		return fail(fmt.Sprintf("%d octets; an Ethernet MAC has 6", len(m)))
	case m[0]&1 != 0:
		// IEEE 802-2014 §8.2: the I/G bit set marks a group address.
		return fail("a multicast (group) address; the first octet must be even")
	case [6]byte(m) == [6]byte{}:
		return fail("all zeros")
	}
	return m, nil
}

// broadcast returns the last address of p.
func broadcast(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := ^uint32(0) >> p.Bits()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// unwrapParse shortens netip's messages, which repeat the whole input.
func unwrapParse(err error) string {
	for u := errors.Unwrap(err); u != nil; u = errors.Unwrap(u) {
		err = u
	}
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		return msg[i+2:]
	}
	return msg
}
