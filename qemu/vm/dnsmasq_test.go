//go:build linux && amd64

package vm

import (
	"context"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tamanet/tamanet/internal/netns"
)

func TestDnsmasqArgs(t *testing.T) {
	a, err := DnsmasqArgs(DnsmasqOptions{
		DHCPv4: &DHCPv4Range{
			Start: netip.MustParseAddr("10.0.0.10"), End: netip.MustParseAddr("10.0.0.20"),
			Lease: 90 * time.Second, Router: netip.MustParseAddr("10.0.0.2"),
			DNS: []netip.Addr{netip.MustParseAddr("10.0.0.2")},
		},
		Authoritative: true,
		IPv6Prefix:    netip.MustParsePrefix("fd00:0:0:1::5/64"),
		RAInterval:    3 * time.Second,
		Hosts:         []HostRecord{{Name: "peer.test", Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("fd00:0:0:1::2")}}},
	}, "tap0", "/d")
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(a, " ")
	for _, w := range []string{
		"--no-resolv", "--no-hosts", "--interface=tap0", "--except-interface=lo", "--bind-interfaces",
		"--port=53", "--log-facility=/d/dnsmasq.log", "--dhcp-leasefile=/d/dnsmasq.leases",
		"--dhcp-range=10.0.0.10,10.0.0.20,90", "--dhcp-option=option:router,10.0.0.2",
		"--dhcp-option=option:dns-server,10.0.0.2", "--dhcp-authoritative",
		"--enable-ra", "--dhcp-range=fd00:0:0:1::,ra-only,64", "--ra-param=tap0,3",
		"--host-record=peer.test,10.0.0.2,fd00:0:0:1::2",
	} {
		if !strings.Contains(" "+got+" ", " "+w+" ") {
			t.Errorf("missing %s in\n%s", w, got)
		}
	}
	a, err = DnsmasqArgs(DnsmasqOptions{DNSPort: -1}, "tap1", "/d")
	if err != nil || !strings.Contains(strings.Join(a, " "), "--port=0") || strings.Contains(strings.Join(a, " "), "dhcp-range") {
		t.Errorf("DNS off, no DHCP: %v %v", a, err)
	}
	for _, o := range []DnsmasqOptions{
		{Tap: "tap0,x"},
		{DNSPort: 70000},
		{DHCPv4: &DHCPv4Range{Start: netip.MustParseAddr("10.0.0.20"), End: netip.MustParseAddr("10.0.0.10")}},
		{DHCPv4: &DHCPv4Range{Start: netip.MustParseAddr("fd00::1"), End: netip.MustParseAddr("fd00::2")}},
		{DHCPv4: &DHCPv4Range{Start: netip.MustParseAddr("10.0.0.10"), End: netip.MustParseAddr("10.0.0.20"), Router: netip.MustParseAddr("fd00::1")}},
		{IPv6Prefix: netip.MustParsePrefix("10.0.0.0/24")},
		{IPv6Prefix: netip.MustParsePrefix("fd00::/48")},
		{Hosts: []HostRecord{{Name: "a,b", Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.2")}}}},
		{Hosts: []HostRecord{{Name: "a"}}},
	} {
		if _, err := DnsmasqArgs(o, "tap0", "/d"); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

// netnsResolver returns a resolver whose queries leave from inside
// namespace ns: one goroutine locked into ns opens every socket.
func netnsResolver(t *testing.T, ns string) *net.Resolver {
	type req struct {
		network, addr string
		reply         chan any
	}
	reqs := make(chan req)
	ready := make(chan error, 1)
	go func() {
		err := netns.Do(ns, func() error {
			ready <- nil
			for r := range reqs {
				c, err := net.Dial(r.network, r.addr)
				if err != nil {
					r.reply <- err
				} else {
					r.reply <- c
				}
			}
			return nil
		})
		if err != nil {
			ready <- err
		}
	}()
	if err := <-ready; err != nil {
		t.Fatalf("setns %s: %v", ns, err)
	}
	t.Cleanup(func() { close(reqs) })
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		r := req{network, "10.0.0.2:53", make(chan any, 1)}
		reqs <- r
		switch v := (<-r.reply).(type) {
		case net.Conn:
			return v, nil
		default:
			return nil, v.(error)
		}
	}}
}

// TestDnsmasq runs dnsmasq in a namespace of its own, asks its DNS server
// for a host record and a name it does not have, and checks Stop removes
// everything.
func TestDnsmasq(t *testing.T) {
	netns.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name, err := netns.FreeName("tamanet-dnsmasq")
	if err != nil {
		t.Fatal(err)
	}
	ns, err := netns.Create(ctx, name, "tap0", netns.DefaultHostAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Delete()
	d, err := StartDnsmasq(ctx, ns, DnsmasqOptions{
		DHCPv4: &DHCPv4Range{Start: netip.MustParseAddr("10.0.0.10"), End: netip.MustParseAddr("10.0.0.20"), Lease: DnsmasqMinLease},
		Hosts:  []HostRecord{{Name: "peer.tamanet.test", Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.2")}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop()
	dir := d.dir
	if !strings.Contains(d.Log(), "DHCP, IP range 10.0.0.10 -- 10.0.0.20, lease time 2m") {
		t.Errorf("no DHCP range in the log:\n%s", d.Log())
	}
	r := netnsResolver(t, ns.Name)
	addrs, err := r.LookupNetIP(ctx, "ip4", "peer.tamanet.test")
	if err != nil || len(addrs) != 1 || addrs[0] != netip.MustParseAddr("10.0.0.2") {
		t.Errorf("lookup peer.tamanet.test: %v %v\n%s", addrs, err, d.Log())
	}
	if addrs, err := r.LookupNetIP(ctx, "ip4", "nowhere.tamanet.test"); err == nil {
		t.Errorf("lookup of an unknown name answered %v (dnsmasq must not forward)", addrs)
	}
	if !strings.Contains(d.Log(), "query[A] peer.tamanet.test from 10.0.0.2") {
		t.Errorf("query not logged:\n%s", d.Log())
	}
	if ls, err := d.Leases(); err != nil || len(ls) != 0 {
		t.Errorf("leases before any client: %v %v", ls, err)
	}
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.Done():
	default:
		t.Error("dnsmasq still running after Stop")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s left behind (%v)", dir, err)
	}
}
