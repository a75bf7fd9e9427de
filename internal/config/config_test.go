package config

import (
	"net/netip"
	"strings"
	"testing"
)

func TestDefault(t *testing.T) {
	c, err := Default()
	if err != nil {
		t.Fatalf("Default: %v", err)
	}
	if want := netip.MustParsePrefix("10.0.0.1/24"); c.Addr != want {
		t.Errorf("Addr = %v, want %v", c.Addr, want)
	}
	if want := netip.MustParseAddr("10.0.0.2"); c.Gateway != want {
		t.Errorf("Gateway = %v, want %v", c.Gateway, want)
	}
	if got := c.MAC.String(); got != "02:00:00:00:00:01" {
		t.Errorf("MAC = %s, want 02:00:00:00:00:01", got)
	}
	if want := netip.MustParsePrefix("fd00::10:1/64"); c.Addr6 != want {
		t.Errorf("Addr6 = %v, want %v", c.Addr6, want)
	}
	if got, want := c.String(), "ip=10.0.0.1/24 gw=10.0.0.2 mac=02:00:00:00:00:01 ip6=fd00::10:1/64"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
}

func TestParseIP6(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{" fd00::10:1/64 ", "fd00::10:1/64"},
		{"2001:db8::1/48", "2001:db8::1/48"},
		{"fd00::1/128", "fd00::1/128"},
		{"fd00::1", "missing prefix length"},
		{"fd00::1/129", "not an address/prefix"},
		{"fd00::zz/64", "not an address/prefix"},
		{"10.0.0.1/24", "not IPv6"},
		{"::ffff:10.0.0.1/120", "not IPv6"},
		{"fd00::1/0", "/0"},
		{"::/64", "unspecified"},
		{"::1/128", "loopback"},
		{"ff02::1/64", "multicast"},
		{"fe80::1/64", "link-local"},
	} {
		p, err := ParseIP6(tc.in)
		switch {
		case err == nil && p.IsValid() && p.String() == tc.want:
		case err == nil && !p.IsValid() && tc.want == "":
		case err != nil && tc.want != "" && strings.Contains(err.Error(), tc.want) && strings.Contains(err.Error(), "IP6"):
		default:
			t.Errorf("ParseIP6(%q) = %v, %v; want %q", tc.in, p, err, tc.want)
		}
	}
}

// TestDefaultFollowsLinkerValues checks that Default reads the variables the
// Makefile sets with -X, and rejects bad ones.
func TestDefaultFollowsLinkerValues(t *testing.T) {
	saved := [4]string{defaultIP, defaultGW, defaultMAC, defaultIP6}
	t.Cleanup(func() { defaultIP, defaultGW, defaultMAC, defaultIP6 = saved[0], saved[1], saved[2], saved[3] })

	defaultIP, defaultGW, defaultMAC, defaultIP6 = "192.168.7.9/16", "192.168.0.1", "0a-1b-2c-3d-4e-5f", ""
	c, err := Default()
	if err != nil {
		t.Fatalf("Default: %v", err)
	}
	if got, want := c.String(), "ip=192.168.7.9/16 gw=192.168.0.1 mac=0a:1b:2c:3d:4e:5f"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}

	defaultGW = "10.0.0.2"
	if _, err := Default(); err == nil || !strings.Contains(err.Error(), "outside") {
		t.Errorf("Default with gateway outside the prefix: err = %v", err)
	}
}

func TestParseValid(t *testing.T) {
	for _, tc := range []struct{ ip, gw, mac, want string }{
		{"10.0.0.1/24", "10.0.0.2", "02:00:00:00:00:01", "ip=10.0.0.1/24 gw=10.0.0.2 mac=02:00:00:00:00:01"},
		{" 10.0.0.1/24 ", " 10.0.0.254", " 02:00:00:00:00:01 ", "ip=10.0.0.1/24 gw=10.0.0.254 mac=02:00:00:00:00:01"},
		{"10.0.0.1/24", "", "02:00:00:00:00:01", "ip=10.0.0.1/24 gw=none mac=02:00:00:00:00:01"},
		{"172.16.5.4/12", "172.31.255.254", "AA:BB:CC:DD:EE:FE", "ip=172.16.5.4/12 gw=172.31.255.254 mac=aa:bb:cc:dd:ee:fe"},
		{"10.0.0.0/31", "10.0.0.1", "02:00:00:00:00:01", "ip=10.0.0.0/31 gw=10.0.0.1 mac=02:00:00:00:00:01"},
		{"10.9.8.7/32", "", "02:00:00:00:00:01", "ip=10.9.8.7/32 gw=none mac=02:00:00:00:00:01"},
		{"10.0.0.1/24", "10.0.0.2", "0200.0000.0001", "ip=10.0.0.1/24 gw=10.0.0.2 mac=02:00:00:00:00:01"},
	} {
		c, err := Parse(tc.ip, tc.gw, tc.mac)
		if err != nil {
			t.Errorf("Parse(%q, %q, %q): %v", tc.ip, tc.gw, tc.mac, err)
			continue
		}
		if got := c.String(); got != tc.want {
			t.Errorf("Parse(%q, %q, %q) = %q, want %q", tc.ip, tc.gw, tc.mac, got, tc.want)
		}
	}
}

func TestParseInvalid(t *testing.T) {
	const ip, gw, mac = "10.0.0.1/24", "10.0.0.2", "02:00:00:00:00:01"
	for _, tc := range []struct{ ip, gw, mac, want string }{
		{"", gw, mac, `IP "": empty`},
		{"10.0.0.1", gw, mac, "missing prefix length"},
		{"10.0.0.1/33", gw, mac, "not an address/prefix"},
		{"10.0.0.256/24", gw, mac, "not an address/prefix"},
		{"ten/8", gw, mac, "not an address/prefix"},
		{"fd00::1/64", "", mac, "not IPv4"},
		{"10.0.0.1/0", "", mac, "/0"},
		{"0.0.0.0/24", "", mac, "unspecified"},
		{"127.0.0.1/8", "", mac, "loopback"},
		{"224.0.0.1/24", "", mac, "multicast"},
		{"10.0.0.0/24", gw, mac, "network address of 10.0.0.0/24"},
		{"10.0.0.255/24", gw, mac, "broadcast address of 10.0.0.0/24"},
		{ip, "10.0.1.2", mac, `GW "10.0.1.2": outside the interface's network 10.0.0.0/24`},
		{ip, "10.0.0.1", mac, "own address"},
		{ip, "10.0.0.2/24", mac, "without prefix length"},
		{ip, "gateway", mac, "not an IP address"},
		{ip, "fd00::2", mac, "not IPv4"},
		{ip, "10.0.0.255", mac, "broadcast"},
		{ip, "10.0.0.0", mac, "network"},
		{ip, gw, "", `MAC "": empty`},
		{ip, gw, "02:00:00:00:00", "six hex octets"},
		{ip, gw, "02:00:00:00:00:0g", "six hex octets"},
		{ip, gw, "01:00:5e:00:00:01", "multicast"},
		{ip, gw, "ff:ff:ff:ff:ff:ff", "multicast"},
		{ip, gw, "00:00:00:00:00:00", "all zeros"},
		{ip, gw, "02:00:00:00:00:00:00:01", "8 octets"},
	} {
		c, err := Parse(tc.ip, tc.gw, tc.mac)
		if err == nil {
			t.Errorf("Parse(%q, %q, %q) = %v, want an error containing %q", tc.ip, tc.gw, tc.mac, c, tc.want)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "config: ") {
			t.Errorf("Parse(%q, %q, %q) error %q, want it to contain %q", tc.ip, tc.gw, tc.mac, err, tc.want)
		}
		if c.Addr.IsValid() || c.Gateway.IsValid() || c.MAC != nil {
			t.Errorf("Parse(%q, %q, %q) returned a partial config %v with its error", tc.ip, tc.gw, tc.mac, c)
		}
	}
}

func TestParseValues(t *testing.T) {
	for _, tc := range []struct {
		v    Values
		want string
	}{
		{Values{IP: "10.0.0.1/24", GW: "10.0.0.2", MAC: "02:00:00:00:00:01"}, "ip=10.0.0.1/24 gw=10.0.0.2 mac=02:00:00:00:00:01"},
		{Values{IP: "10.0.0.1/24", GW: "10.0.0.2", MAC: "02:00:00:00:00:01", DNS: "10.0.0.2, 9.9.9.9"}, "ip=10.0.0.1/24 gw=10.0.0.2 mac=02:00:00:00:00:01 dns=10.0.0.2,9.9.9.9"},
		{Values{IP: "dhcp", GW: "10.0.0.2", MAC: "02:00:00:00:00:01"}, "ip=dhcp fallback=none mac=02:00:00:00:00:01"},
		{Values{IP: " DHCP ", GW: "10.0.0.2", MAC: "02:00:00:00:00:01", Fallback: "10.0.0.1/24"}, "ip=dhcp fallback=10.0.0.1/24 gw=10.0.0.2 mac=02:00:00:00:00:01"},
		{Values{IP: "dhcp", MAC: "02:00:00:00:00:01", Fallback: "192.168.1.5/24", DNS: "192.168.1.1"}, "ip=dhcp fallback=192.168.1.5/24 gw=none mac=02:00:00:00:00:01 dns=192.168.1.1"},
	} {
		c, err := ParseValues(tc.v)
		if err != nil {
			t.Errorf("%+v: %v", tc.v, err)
			continue
		}
		if got := c.String(); got != tc.want {
			t.Errorf("%+v = %q, want %q", tc.v, got, tc.want)
		}
		if c.DHCP != strings.Contains(tc.want, "dhcp") {
			t.Errorf("%+v: DHCP %v", tc.v, c.DHCP)
		}
	}
	for _, tc := range []struct {
		v    Values
		want string
	}{
		{Values{IP: "10.0.0.1/24", MAC: "02:00:00:00:00:01", Fallback: "10.0.0.1/24"}, "only with IP=dhcp"},
		{Values{IP: "dhcp", MAC: "02:00:00:00:00:01", Fallback: "10.0.0.1"}, `FALLBACK "10.0.0.1": missing prefix length`},
		{Values{IP: "dhcp", GW: "10.0.1.2", MAC: "02:00:00:00:00:01", Fallback: "10.0.0.1/24"}, "outside"},
		{Values{IP: "dhcp", MAC: "01:00:00:00:00:01"}, "multicast"},
		{Values{IP: "dhcp", MAC: "02:00:00:00:00:01", DNS: "10.0.0.2,fd00::1"}, "not IPv4"},
		{Values{IP: "dhcp", MAC: "02:00:00:00:00:01", DNS: "resolver.lan"}, "not an IP address"},
		{Values{IP: "dhcp", MAC: "02:00:00:00:00:01", DNS: "0.0.0.0"}, "not a unicast"},
		{Values{IP: "dhcp", MAC: "02:00:00:00:00:01", DNS: "1.1.1.1,1.0.0.1,8.8.8.8,8.8.4.4"}, "more than 3"},
		{Values{IP: "dhcpx", MAC: "02:00:00:00:00:01"}, `IP "dhcpx"`},
	} {
		if _, err := ParseValues(tc.v); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want %q", tc.v, err, tc.want)
		}
	}
}
