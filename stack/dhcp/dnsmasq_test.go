//go:build linux

package dhcp

// The Runner on a real stack (virtio driver over a device model whose wire
// is a tap) against dnsmasq, in a private network namespace each test
// creates (netns.ForTest) and deletes. dnsmasq serves 10.0.0.0/24 from
// 10.0.0.2 on that tap only; nothing is sent anywhere else.

import (
	"bufio"
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tamanet/tamanet/internal/netns"
	"github.com/tamanet/tamanet/nic/virtio/virtiotest"
	"github.com/tamanet/tamanet/qemu/vm"
	"github.com/tamanet/tamanet/stack"
	"github.com/tamanet/tamanet/stack/resolve"
	"github.com/tamanet/tamanet/stack/stacktest"
)

var (
	hostAddr  = netip.MustParseAddr("10.0.0.2")
	peerName  = "peer.tamanet.test"
	poolStart = netip.MustParseAddr("10.0.0.10")
	poolEnd   = netip.MustParseAddr("10.0.0.20")
)

// setup makes the namespace, a dynamic stack on its tap, and returns
// them; everything is removed when the test ends.
func setup(t *testing.T) (*netns.Netns, *stack.Stack) {
	t.Helper()
	ns, tapFile := netns.ForTest(t, "tamanet-dhcp", "dnsmasq", "ping", "nc")
	_, model, drv := stacktest.Virtio(t, virtiotest.Options{MAC: stacktest.MACA})
	st, err := stack.New(drv, stack.Config{Dynamic: true})
	if err != nil {
		t.Fatal(err)
	}
	model.SetInterrupt(st.Wake)
	model.AttachTap(tapFile)
	st.Start()
	t.Cleanup(func() {
		st.Close()
		drv.Close()
		model.Close()
	})
	return ns, st
}

func startDnsmasq(t *testing.T, ns *netns.Netns, o vm.DnsmasqOptions) *vm.Dnsmasq {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, err := vm.StartDnsmasq(ctx, ns, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Stop() })
	return d
}

func defaultDnsmasq() vm.DnsmasqOptions {
	return vm.DnsmasqOptions{
		DHCPv4: &vm.DHCPv4Range{Start: poolStart, End: poolEnd, Lease: vm.DnsmasqMinLease},
		Hosts:  []vm.HostRecord{{Name: peerName, Addrs: []netip.Addr{hostAddr}}},
	}
}

func waitFor(t *testing.T, what string, d time.Duration, ok func() bool, log func() string) {
	t.Helper()
	end := time.Now().Add(d)
	for !ok() {
		if time.Now().After(end) {
			t.Fatalf("%s: not within %v\n%s", what, d, log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func ping(t *testing.T, ns *netns.Netns, addr netip.Addr) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := ns.Command(ctx, "ping", "-c", "2", "-W", "5", addr.String()).CombinedOutput()
	if err != nil {
		return &pingError{string(out)}
	}
	return nil
}

type pingError struct{ out string }

func (e *pingError) Error() string { return "ping: " + e.out }

// TestDnsmasqLease: a lease from dnsmasq is applied (address, prefix,
// router, DNS), shows in the status and dnsmasq's lease file, the address
// answers pings, a renewal extends it, and the lease's DNS server resolves
// a name for a TCP connection back into the namespace.
func TestDnsmasqLease(t *testing.T) {
	ns, st := setup(t)
	d := startDnsmasq(t, ns, defaultDnsmasq())
	var changes []Status
	r, err := Start(st, Options{Hostname: "tamanet-test", OnChange: func(s Status) { changes = append(changes, s) }})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	select {
	case <-r.Configured():
	case <-time.After(30 * time.Second):
		t.Fatalf("no lease in 30 s: %+v\n%s", r.Status(), d.Log())
	}
	s := r.Status()
	addr, err := netip.ParsePrefix(s.Address)
	if err != nil || s.Source != "dhcp" || s.State != "bound" || addr.Bits() != 24 ||
		addr.Addr().Less(poolStart) || poolEnd.Less(addr.Addr()) || s.Router != "10.0.0.2" || s.Server != "10.0.0.2" ||
		len(s.DNS) != 1 || s.DNS[0] != "10.0.0.2" || s.LeaseSeconds != 120 || s.RenewInSeconds <= 0 || s.RenewInSeconds > 60 {
		t.Fatalf("status %+v", s)
	}
	if p, gw := st.IPv4(); p != addr || gw != hostAddr {
		t.Fatalf("stack has %v via %v, lease %v", p, gw, addr)
	}
	leases, err := d.Leases()
	if err != nil || len(leases) != 1 || leases[0].Addr != addr.Addr() || leases[0].MAC != st.MAC().String() || leases[0].Host != "tamanet-test" {
		t.Fatalf("dnsmasq leases %+v %v\n%s", leases, err, d.Log())
	}
	if err := ping(t, ns, addr.Addr()); err != nil {
		t.Fatal(err)
	}

	// Renew now instead of at T1: unicast REQUEST, ACK, same address.
	before := r.Status()
	r.Renew()
	waitFor(t, "renewal", 20*time.Second, func() bool { return r.Status().Renewals > before.Renewals }, d.Log)
	if s := r.Status(); s.Address != before.Address || s.State != "bound" || s.LeaseAgeSeconds > 10 {
		t.Fatalf("after renewal %+v", s)
	}
	if !strings.Contains(d.Log(), "DHCPREQUEST(tap0) "+addr.Addr().String()) {
		t.Errorf("dnsmasq saw no renewal REQUEST:\n%s", d.Log())
	}

	// Name resolution through the lease's DNS server, then a TCP
	// connection by that name to a listener in the namespace.
	res := resolve.New(st.Dial)
	var dns []netip.Addr
	for _, a := range r.Status().DNS {
		dns = append(dns, netip.MustParseAddr(a))
	}
	res.SetServers(dns)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ips, err := res.Resolver().LookupNetIP(ctx, "ip4", peerName)
	if err != nil || len(ips) != 1 || ips[0] != hostAddr {
		t.Fatalf("lookup %s: %v %v\n%s", peerName, ips, err, d.Log())
	}
	if _, err := res.Resolver().LookupNetIP(ctx, "ip4", "absent.tamanet.test"); err == nil {
		t.Error("an unknown name resolved")
	}
	nc := ns.Command(ctx, "nc", "-l", "-N", hostAddr.String(), "7777")
	nc.Stdin = strings.NewReader("pong\n")
	if err := nc.Start(); err != nil {
		t.Fatal(err)
	}
	defer nc.Process.Kill()
	var c net.Conn
	waitFor(t, "connect to the listener", 10*time.Second, func() bool {
		c, err = st.Dial(ctx, "tcp", net.JoinHostPort(ips[0].String(), "7777"))
		return err == nil
	}, func() string { return err.Error() })
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "pong\n" {
		t.Fatalf("read %q %v", line, err)
	}
	if len(changes) < 2 || changes[0].Source != "dhcp" {
		t.Errorf("OnChange calls %+v", changes)
	}
}

// TestDnsmasqNAK: the server is replaced by one (authoritative) for
// another pool; the renewal of the old address is refused with a NAK, the
// client drops the address and takes a new lease from the new pool.
func TestDnsmasqNAK(t *testing.T) {
	ns, st := setup(t)
	d := startDnsmasq(t, ns, defaultDnsmasq())
	r, err := Start(st, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	waitFor(t, "first lease", 30*time.Second, func() bool { return r.Status().Source == "dhcp" }, d.Log)
	first := r.Status().Address
	d.Stop()

	o := defaultDnsmasq()
	o.DHCPv4.Start, o.DHCPv4.End = netip.MustParseAddr("10.0.0.100"), netip.MustParseAddr("10.0.0.110")
	o.Authoritative = true
	d2 := startDnsmasq(t, ns, o)
	r.Renew()
	waitFor(t, "NAK", 20*time.Second, func() bool { return r.Status().Naks > 0 }, d2.Log)
	waitFor(t, "new lease", 40*time.Second, func() bool {
		s := r.Status()
		return s.Source == "dhcp" && s.Address != first
	}, d2.Log)
	s := r.Status()
	if !strings.HasPrefix(s.Address, "10.0.0.1") || len(s.Address) < len("10.0.0.100/24") {
		t.Fatalf("new lease %+v not from the new pool", s)
	}
	p, _ := st.IPv4()
	if p.String() != s.Address {
		t.Fatalf("stack has %v, status %v", p, s.Address)
	}
	if err := ping(t, ns, p.Addr()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(d2.Log(), "DHCPNAK") {
		t.Errorf("no NAK in dnsmasq's log:\n%s", d2.Log())
	}
}

// TestDnsmasqFallback: with no server the fallback address is applied
// after FallbackAfter; once dnsmasq starts, a lease replaces it.
func TestDnsmasqFallback(t *testing.T) {
	ns, st := setup(t)
	fb := netip.MustParsePrefix("10.0.0.1/24")
	r, err := Start(st, Options{Fallback: fb, FallbackGateway: hostAddr, FallbackAfter: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	start := time.Now()
	select {
	case <-r.Configured():
	case <-time.After(20 * time.Second):
		t.Fatalf("no fallback: %+v", r.Status())
	}
	if el := time.Since(start); el < 2*time.Second {
		t.Fatalf("fallback after %v, before FallbackAfter", el)
	}
	if s := r.Status(); s.Source != "fallback" || s.Address != fb.String() || s.Router != "10.0.0.2" || s.Fallbacks != 1 {
		t.Fatalf("status %+v", s)
	}
	if err := ping(t, ns, fb.Addr()); err != nil {
		t.Fatal(err)
	}
	d := startDnsmasq(t, ns, defaultDnsmasq())
	r.Renew() // the next DISCOVER now, not after the backoff
	waitFor(t, "lease after fallback", 30*time.Second, func() bool { return r.Status().Source == "dhcp" }, d.Log)
	p, _ := st.IPv4()
	if p == fb || p.Addr().Less(poolStart) || poolEnd.Less(p.Addr()) {
		t.Fatalf("stack has %v after the lease", p)
	}
	if ping(t, ns, fb.Addr()) == nil {
		t.Error("the fallback address still answers")
	}
}
