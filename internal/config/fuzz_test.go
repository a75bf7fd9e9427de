package config

import (
	"net/netip"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary IP, GW and MAC strings to Parse. It must not
// panic; whatever it accepts must be a usable interface configuration (an
// IPv4 host address inside its prefix, a unicast gateway inside that prefix
// and not the address itself, a unicast 6-byte MAC) and must parse again to
// the same Config from its own String form.
func FuzzParse(f *testing.F) {
	f.Add("10.0.0.1/24", "10.0.0.2", "02:00:00:00:00:01")
	f.Add("192.168.7.9/16", "", "0a-1b-2c-3d-4e-5f")
	f.Add(" 10.0.0.1/31 ", "10.0.0.0", "0200.0000.0001")
	f.Add("10.0.0.1/32", "10.0.0.1", "02:00:00:00:00:01")
	f.Add("10.0.0.0/24", "10.0.0.255", "01:00:5e:00:00:01")
	f.Add("255.255.255.255/8", "0.0.0.0", "00:00:00:00:00:00")
	f.Add("::ffff:10.0.0.1/120", "::ffff:10.0.0.2", "02:00:00:00:00:01:02:03")
	f.Add("10.0.0.1/0", "224.0.0.1", "")
	f.Add("127.0.0.1/8", "10.0.0.2/24", "zz:00:00:00:00:01")
	f.Fuzz(func(t *testing.T, ip, gw, mac string) {
		c, err := Parse(ip, gw, mac)
		if err != nil {
			if c.Addr.IsValid() || c.Gateway.IsValid() || c.MAC != nil {
				t.Fatalf("error %v with a partly filled Config %+v", err, c)
			}
			if !strings.HasPrefix(err.Error(), "config: ") {
				t.Fatalf("error %q does not say it is a config error", err)
			}
			return
		}
		a, bits := c.Addr.Addr(), c.Addr.Bits()
		netw := c.Addr.Masked().Addr()
		bcast := broadcast(c.Addr)
		switch {
		case !a.Is4() || bits < 1 || bits > 32:
			t.Fatalf("accepted %v: not an IPv4 prefix", c.Addr)
		case a.IsUnspecified() || a.IsLoopback() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
			t.Fatalf("accepted %v: not a unicast host address", a)
		case bits <= 30 && (a == netw || a == bcast):
			t.Fatalf("accepted %v: network or broadcast address of its prefix", c.Addr)
		}
		if g := c.Gateway; g.IsValid() {
			switch {
			case !g.Is4() || g.Zone() != "":
				t.Fatalf("accepted gateway %v: not IPv4", g)
			case !c.Addr.Contains(g) || g == a:
				t.Fatalf("accepted gateway %v for %v", g, c.Addr)
			case g.IsUnspecified() || g.IsLoopback() || g.IsMulticast():
				t.Fatalf("accepted gateway %v: not unicast", g)
			case bits <= 30 && (g == netw || g == bcast):
				t.Fatalf("accepted gateway %v: network or broadcast address of %v", g, c.Addr)
			}
		} else if strings.TrimSpace(gw) != "" {
			t.Fatalf("gateway %q accepted as none", gw)
		}
		if len(c.MAC) != 6 || c.MAC[0]&1 != 0 || [6]byte(c.MAC) == [6]byte{} {
			t.Fatalf("accepted MAC %v", c.MAC)
		}

		// Round trip through the canonical forms.
		g := ""
		if c.Gateway.IsValid() {
			g = c.Gateway.String()
		}
		c2, err := Parse(c.Addr.String(), g, c.MAC.String())
		if err != nil {
			t.Fatalf("canonical form of an accepted config refused: %v", err)
		}
		if c2.Addr != c.Addr || c2.Gateway != c.Gateway || c2.MAC.String() != c.MAC.String() || c2.String() != c.String() {
			t.Fatalf("round trip %v -> %v", c, c2)
		}
	})
}

// FuzzParseValues feeds arbitrary make variables to ParseValues. It must
// not panic; an accepted DHCP configuration has either no fallback or a
// valid one, an accepted static one is what Parse accepts, DNS holds at
// most MaxDNS unicast IPv4 servers, and String's form parses again to the
// same configuration.
func FuzzParseValues(f *testing.F) {
	f.Add("dhcp", "10.0.0.2", "02:00:00:00:00:01", "10.0.0.2", "10.0.0.1/24")
	f.Add("DHCP", "", "02:00:00:00:00:01", "", "")
	f.Add("10.0.0.1/24", "10.0.0.2", "02:00:00:00:00:01", "1.1.1.1, 8.8.8.8", "")
	f.Add("dhcp", "10.0.1.2", "02:00:00:00:00:01", "fd00::1", "10.0.0.1")
	f.Fuzz(func(t *testing.T, ip, gw, mac, dns, fb string) {
		c, err := ParseValues(Values{IP: ip, GW: gw, MAC: mac, DNS: dns, Fallback: fb})
		if err != nil {
			if !strings.HasPrefix(err.Error(), "config: ") {
				t.Fatalf("error %q does not say it is a config error", err)
			}
			return
		}
		if !c.DHCP {
			if _, err := Parse(ip, gw, mac); err != nil {
				t.Fatalf("static values accepted here but not by Parse: %v", err)
			}
		} else if c.Addr.IsValid() {
			gw := ""
			if c.Gateway.IsValid() {
				gw = c.Gateway.String()
			}
			if _, err := Parse(c.Addr.String(), gw, c.MAC.String()); err != nil {
				t.Fatalf("fallback %v via %v not a valid static configuration: %v", c.Addr, c.Gateway, err)
			}
		} else if c.Gateway.IsValid() {
			t.Fatalf("gateway %v without a fallback", c.Gateway)
		}
		if len(c.DNS) > MaxDNS {
			t.Fatalf("%d DNS servers", len(c.DNS))
		}
		for _, a := range c.DNS {
			if !a.Is4() || a.IsUnspecified() || a.IsMulticast() {
				t.Fatalf("DNS server %v", a)
			}
		}
		// Round trip through the canonical form.
		v := Values{MAC: c.MAC.String()}
		if c.DHCP {
			v.IP = DHCP
			if c.Addr.IsValid() {
				v.Fallback = c.Addr.String()
			}
		} else {
			v.IP = c.Addr.String()
		}
		if c.Gateway.IsValid() {
			v.GW = c.Gateway.String()
		}
		for i, a := range c.DNS {
			if i > 0 {
				v.DNS += ","
			}
			v.DNS += a.String()
		}
		c2, err := ParseValues(v)
		if err != nil || c2.String() != c.String() {
			t.Fatalf("%q does not round-trip: %q %v", c.String(), c2.String(), err)
		}
	})
}
