package e2e

// The DHCP phase: after the static guest, TestMain boots an image built
// with IP=dhcp FALLBACK=10.0.0.1/24 LOOKUP=host.tamanet.test:7777 in a
// namespace of its own with dnsmasq (DHCP and DNS) on the tap, waits for
// the ready line with the leased address, and runs TestDHCP inside that
// namespace. dnsmasq serves only that tap and has no upstream servers.

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tamanet/tamanet/internal/netns"
	"github.com/tamanet/tamanet/internal/prereq"
	"github.com/tamanet/tamanet/qemu/vm"
)

const (
	envPhase   = "TAMANET_E2E_PHASE"
	envDnsmasq = "TAMANET_E2E_DNSMASQ_DIR"

	lookupName = "host.tamanet.test"
	lookupPort = 7777
	fallback   = "10.0.0.1/24"
	// dhcpLease is dnsmasq's shortest lease: T1 60 s, T2 105 s.
	dhcpLease = vm.DnsmasqMinLease
)

var (
	poolA = [2]netip.Addr{netip.MustParseAddr("10.0.0.10"), netip.MustParseAddr("10.0.0.20")}
	poolB = [2]netip.Addr{netip.MustParseAddr("10.0.0.100"), netip.MustParseAddr("10.0.0.110")}
)

func dnsmasqOptions(pool [2]netip.Addr, dir string, authoritative bool) vm.DnsmasqOptions {
	return vm.DnsmasqOptions{
		DHCPv4:        &vm.DHCPv4Range{Start: pool[0], End: pool[1], Lease: dhcpLease},
		Authoritative: authoritative,
		Hosts:         []vm.HostRecord{{Name: lookupName, Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.2")}}},
		Dir:           dir,
	}
}

// wantDHCP reports whether -test.run selects test (and -bench, which
// runs only the benchmark, is off).
func wantDHCP(test string) bool {
	if *benchFlag {
		return false
	}
	f := flag.Lookup("test.run")
	if f == nil || f.Value.String() == "" {
		return true
	}
	re, err := regexp.Compile(f.Value.String())
	return err == nil && re.MatchString(test)
}

// dhcpPhase builds the DHCP image, boots it with dnsmasq for TestDHCP and
// without any server for TestDHCPBootFallback; it returns the exit code
// (0 when neither is selected).
func dhcpPhase(ctx, runCtx context.Context, target vm.Target, accel vm.Accel) int {
	withServer, without := wantDHCP("TestDHCP"), wantDHCP("TestDHCPBootFallback")
	if !withServer && !without {
		return 0
	}
	failf := func(format string, args ...any) int {
		fmt.Fprintf(os.Stderr, "FAIL: e2e: dhcp: "+format+"\n", args...)
		return 1
	}
	if !prereq.OnPath("dnsmasq") {
		return failf("dnsmasq not installed: run `make deps` (Debian package dnsmasq-base)")
	}
	root, err := prereq.ModuleRoot(".")
	if err != nil {
		return failf("%v", err)
	}
	image := filepath.Join(root, "build", "tamanet-"+string(target)+"-dhcp")
	fmt.Printf("e2e: dhcp: make build TARGET=%s IP=dhcp\n", target)
	out, err := exec.CommandContext(ctx, "make", "-C", root, "--no-print-directory", "build", "TARGET="+string(target),
		"IP=dhcp", "FALLBACK="+fallback, "GW=10.0.0.2", fmt.Sprintf("LOOKUP=%s:%d", lookupName, lookupPort), "IMAGE="+image).CombinedOutput()
	if err != nil {
		return failf("make: %v\n%s", err, out)
	}
	code := 0
	if withServer {
		code = dhcpBoot(ctx, runCtx, target, accel, image, true, "^TestDHCP$")
	}
	if without {
		if c := dhcpBoot(ctx, runCtx, target, accel, image, false, "^TestDHCPBootFallback$"); c != 0 {
			code = c
		}
	}
	return code
}

// dhcpBoot boots image in a namespace of its own, with dnsmasq on the tap
// until the ready line when server is set, and runs the tests run selects
// inside that namespace.
func dhcpBoot(ctx, runCtx context.Context, target vm.Target, accel vm.Accel, image string, server bool, run string) int {
	failf := func(format string, args ...any) int {
		fmt.Fprintf(os.Stderr, "FAIL: e2e: dhcp: "+format+"\n", args...)
		return 1
	}
	dir, err := os.MkdirTemp("", "tamanet-e2e-dhcp-")
	if err != nil {
		return failf("%v", err)
	}
	defer os.RemoveAll(dir)
	serial, err := os.Create(filepath.Join(dir, "serial.log"))
	if err != nil {
		return failf("%v", err)
	}
	defer serial.Close()
	ns, err := runNetns("tamanet-e2e-dhcp-")
	if err != nil {
		return failf("%v", err)
	}
	v, err := vm.Start(ctx, vm.Options{Target: target, Image: image, Accel: accel, Netns: ns, Console: serial})
	if err != nil {
		return failf("%v", err)
	}
	defer v.Close()
	// dnsmasq starts right after QEMU: the guest's DISCOVERs are
	// retransmitted until it answers. It is stopped before the tests,
	// which run their own on the same lease file.
	leases := filepath.Join(dir, "dnsmasq")
	os.Mkdir(leases, 0o755)
	var d *vm.Dnsmasq
	if server {
		if d, err = vm.StartDnsmasq(ctx, v.Netns(), dnsmasqOptions(poolA, leases, false)); err != nil {
			return failf("%v", err)
		}
	}
	start := time.Now()
	ready, err := v.WaitReady(ctx, *bootTimeout)
	log := ""
	if d != nil {
		d.Stop()
		log = d.Log()
	}
	if err != nil {
		return failf("boot: %v\ndnsmasq:\n%s", err, log)
	}
	fmt.Printf("e2e: dhcp: ready after %v: ip=%s (dhcp server: %v)\n", time.Since(start).Round(time.Millisecond), ready.Prefix, server)

	cmd, err := innerCommand(runCtx, v, ready, serial, image, append(os.Args[1:], "-test.run="+run),
		envPhase+"=dhcp", envDnsmasq+"="+leases)
	if err != nil {
		return failf("%v", err)
	}
	code := 0
	if err := cmd.Run(); err != nil {
		code = failf("%s: %v", run, err)
	}
	select {
	case <-v.Done():
		code = failf("QEMU exited during the tests: %v", v.Err())
	default:
	}
	if p := findPanic(v.Serial()); p != "" {
		code = failf("the serial log shows a panic:\n%s", p)
	}
	if code != 0 {
		fmt.Fprintf(os.Stderr, "e2e: dhcp: guest log:\n%s\n", tail(v.Log(), 8000))
	}
	if err := v.Close(); err != nil {
		code = failf("cleanup: %v", err)
	}
	return code
}

// dhcpStats fetches /stats from addr and returns its "dhcp" and "lookup"
// objects.
func dhcpStats(addr string) (dhcpStatus, lookupStatus, error) {
	var st struct {
		DHCP   dhcpStatus   `json:"dhcp"`
		Lookup lookupStatus `json:"lookup"`
		DNS    []string     `json:"dns"`
	}
	resp, err := httpClient.Get("http://" + net.JoinHostPort(addr, "80") + "/stats")
	if err != nil {
		return st.DHCP, st.Lookup, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return st.DHCP, st.Lookup, err
	}
	st.DHCP.dns = st.DNS
	return st.DHCP, st.Lookup, nil
}

type dhcpStatus struct {
	State        string   `json:"state"`
	Source       string   `json:"source"`
	Address      string   `json:"address"`
	Router       string   `json:"router"`
	DNS          []string `json:"dns"`
	Server       string   `json:"server"`
	LeaseSeconds float64  `json:"lease_seconds"`
	Requests     int      `json:"requests"`
	Acks         int      `json:"acks"`
	Naks         int      `json:"naks"`
	Renewals     int      `json:"renewals"`
	Expired      int      `json:"expired"`
	Discovers    int      `json:"discovers"`
	Fallbacks    int      `json:"fallbacks"`
	dns          []string // the resolver's servers (top-level "dns")
}

type lookupStatus struct {
	Target string   `json:"target"`
	Runs   int      `json:"runs"`
	OK     int      `json:"ok"`
	Addrs  []string `json:"addrs"`
	Remote string   `json:"remote"`
	Line   string   `json:"line"`
	Error  string   `json:"error"`
}

func inPool(p [2]netip.Addr, a netip.Addr) bool { return !a.Less(p[0]) && !p[1].Less(a) }

// waitLease waits up to limit for dnsmasq to hold one lease, from pool,
// and returns its address.
func waitLease(t *testing.T, d *vm.Dnsmasq, pool [2]netip.Addr, limit time.Duration) netip.Addr {
	t.Helper()
	for end := time.Now().Add(limit); time.Now().Before(end); time.Sleep(time.Second) {
		if ls, _ := d.Leases(); len(ls) == 1 && inPool(pool, ls[0].Addr) {
			return ls[0].Addr
		}
	}
	t.Fatalf("no lease from %v-%v within %v\n%s", pool[0], pool[1], limit, d.Log())
	return netip.Addr{}
}

// waitStats polls /stats at *addr until ok accepts it or d passes.
func waitStats(t *testing.T, what string, addr *string, d time.Duration, ok func(dhcpStatus, lookupStatus) bool) dhcpStatus {
	t.Helper()
	end := time.Now().Add(d)
	var s dhcpStatus
	var l lookupStatus
	var err error
	for time.Now().Before(end) {
		if s, l, err = dhcpStats(*addr); err == nil && ok(s, l) {
			return s
		}
		time.Sleep(time.Second)
	}
	t.Fatalf("%s: not within %v: last /stats dhcp %+v lookup %+v err %v", what, d, s, l, err)
	return s
}

// TestDHCP runs against the DHCP guest (see dhcpPhase): the lease and its
// renewal, name lookup and a dial by name from the guest, a NAK when the
// network changes, and the fallback when no server answers any more.
func TestDHCP(t *testing.T) {
	if os.Getenv(envPhase) != "dhcp" {
		t.Skip("SKIP: runs in the DHCP phase, against a guest of its own (TestMain boots it after this suite)")
	}
	needGuest(t)
	ns := &netns.Netns{Name: os.Getenv(envNetns), Tap: tapName}
	dir := os.Getenv(envDnsmasq)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	d, err := vm.StartDnsmasq(ctx, ns, dnsmasqOptions(poolA, dir, false))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { d.Stop() }()
	guest := guestIP
	ga := netip.MustParseAddr(guest)

	// The lease: the ready line's address is from the pool, /stats shows
	// the lease, dnsmasq has it.
	if !inPool(poolA, ga) {
		t.Fatalf("ready line address %v not from dnsmasq's pool", ga)
	}
	s, _, err := dhcpStats(guest)
	if err != nil {
		t.Fatal(err)
	}
	if s.Source != "dhcp" || s.State != "bound" || s.Address != guest+"/24" || s.Router != "10.0.0.2" ||
		s.Server != "10.0.0.2" || s.LeaseSeconds != dhcpLease.Seconds() || len(s.DNS) != 1 || s.DNS[0] != "10.0.0.2" ||
		len(s.dns) != 1 || s.dns[0] != "10.0.0.2" {
		t.Fatalf("/stats dhcp %+v dns %v", s, s.dns)
	}
	if ls, err := d.Leases(); err != nil || len(ls) != 1 || ls[0].Addr != ga || ls[0].MAC != guestMAC.String() || ls[0].Host != "tamanet" {
		t.Fatalf("dnsmasq leases %+v %v", ls, err)
	}
	if b, _ := os.ReadFile(serialPath); !strings.Contains(string(b), "tamanet: dhcp: bound ip="+guest+"/24") {
		t.Errorf("console has no lease line:\n%s", b)
	}

	// Name lookup and net.Dial by name from the guest: its self-test
	// resolves host.tamanet.test through dnsmasq and reads our line.
	token := make([]byte, 8)
	rand.Read(token)
	want := "tamanet-" + hex.EncodeToString(token)
	ln, err := net.Listen("tcp", fmt.Sprintf("10.0.0.2:%d", lookupPort))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, want+"\n")
			c.Close()
		}
	}()
	waitStats(t, "lookup self-test", &guest, 60*time.Second, func(_ dhcpStatus, l lookupStatus) bool {
		return l.Line == want && l.Error == "" && len(l.Addrs) == 1 && l.Addrs[0] == "10.0.0.2" && l.Remote == fmt.Sprintf("10.0.0.2:%d", lookupPort)
	})
	if !strings.Contains(d.Log(), "query[A] "+lookupName+" from "+guest) {
		t.Errorf("dnsmasq saw no query from the guest:\n%s", d.Log())
	}
	t.Logf("lookup: the guest resolved %s and read %q from it", lookupName, want)

	// Renewal at T1 (60 s into the 2 min lease), unicast to dnsmasq.
	s = waitStats(t, "renewal at T1", &guest, 100*time.Second, func(s dhcpStatus, _ lookupStatus) bool { return s.Renewals >= 1 })
	if s.Address != guest+"/24" || s.State != "bound" {
		t.Fatalf("after renewal %+v", s)
	}
	if !strings.Contains(d.Log(), "DHCPACK(tap0) "+guest) || strings.Count(d.Log(), "DHCPREQUEST(tap0) "+guest) < 1 {
		t.Errorf("dnsmasq log lacks the renewal:\n%s", d.Log())
	}
	t.Logf("renewal: %+v", s)

	// NAK: the network moves to another pool under an authoritative
	// server; the next renewal is refused and the guest takes an address
	// from the new pool.
	d.Stop()
	dirB := filepath.Join(dir, "b")
	os.Mkdir(dirB, 0o755)
	if d, err = vm.StartDnsmasq(ctx, ns, dnsmasqOptions(poolB, dirB, true)); err != nil {
		t.Fatal(err)
	}
	moved := waitLease(t, d, poolB, 150*time.Second)
	guest = moved.String()
	s = waitStats(t, "lease after NAK", &guest, 30*time.Second, func(s dhcpStatus, _ lookupStatus) bool {
		return s.Source == "dhcp" && s.Address == guest+"/24"
	})
	if s.Naks < 1 || !strings.Contains(d.Log(), "DHCPNAK(tap0) "+ga.String()) {
		t.Fatalf("no NAK seen: %+v\n%s", s, d.Log())
	}
	t.Logf("NAK: %v refused, now %v", ga, moved)

	// No server any more: at expiry (2 min after the last ACK) the guest
	// gives the address up and uses its fallback.
	d.Stop()
	guest = strings.TrimSuffix(fallback, "/24")
	s = waitStats(t, "fallback after expiry", &guest, 200*time.Second, func(s dhcpStatus, _ lookupStatus) bool {
		return s.Source == "fallback"
	})
	if s.Address != fallback || s.Expired < 1 || s.State == "bound" {
		t.Fatalf("after expiry %+v", s)
	}
	b, _ := os.ReadFile(serialPath)
	if !regexp.MustCompile(`tamanet: dhcp: \w+ ip=` + regexp.QuoteMeta(fallback) + ` \(fallback\)`).Match(b) {
		t.Errorf("console does not show the fallback:\n%s", tail(string(b), 2000))
	}
	t.Logf("fallback: %+v", s)
	// The guest is still alive and serving on the fallback address.
	c, err := net.DialTimeout("tcp", guest+":7", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "still here\n")
	if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || line != "still here\n" {
		t.Fatalf("echo on the fallback address: %q %v", line, err)
	}
}

// TestDHCPBootFallback runs against a DHCP guest booted with no server on
// the wire (see dhcpPhase): it came up on its fallback address after the
// wait, says so, serves there, and keeps asking for a lease, which it
// takes once dnsmasq appears.
func TestDHCPBootFallback(t *testing.T) {
	if os.Getenv(envPhase) != "dhcp" {
		t.Skip("SKIP: runs in the DHCP phase, against a guest of its own (TestMain boots it after this suite)")
	}
	needGuest(t)
	if guestIP+"/24" != fallback {
		t.Fatalf("ready line address %s, want the fallback %s", guestIP, fallback)
	}
	b, _ := os.ReadFile(serialPath)
	if !strings.Contains(string(b), "tamanet: dhcp: asking for a lease (fallback "+fallback+" after 15s)") ||
		!regexp.MustCompile(`tamanet: dhcp: \w+ ip=`+regexp.QuoteMeta(fallback)+` \(fallback\)`).Match(b) {
		t.Fatalf("console:\n%s", b)
	}
	guest := guestIP
	s, _, err := dhcpStats(guest)
	if err != nil {
		t.Fatal(err)
	}
	if s.Source != "fallback" || s.Address != fallback || s.Router != "10.0.0.2" || s.Fallbacks != 1 || s.Discovers < 3 {
		t.Fatalf("/stats dhcp %+v", s)
	}
	// A server appears: the next DISCOVER (at most 64 s apart) gets a
	// lease, which replaces the fallback.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ns := &netns.Netns{Name: os.Getenv(envNetns), Tap: tapName}
	d, err := vm.StartDnsmasq(ctx, ns, dnsmasqOptions(poolA, os.Getenv(envDnsmasq), false))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop()
	leased := waitLease(t, d, poolA, 100*time.Second)
	guest = leased.String()
	waitStats(t, "lease after the fallback", &guest, 30*time.Second, func(s dhcpStatus, _ lookupStatus) bool {
		return s.Source == "dhcp" && s.Address == guest+"/24"
	})
	t.Logf("fallback %s at boot, then lease %s", fallback, leased)
}
