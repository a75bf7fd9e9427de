package vm

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tamanet/tamanet/internal/netns"
)

// ErrDnsmasqMissing is returned by StartDnsmasq when dnsmasq is not
// installed (Debian package dnsmasq-base; `make deps` installs it).
var ErrDnsmasqMissing = errors.New("dnsmasq not found")

// DnsmasqMinLease is the shortest lease dnsmasq hands out: shorter
// dhcp-range lease times are raised to it (dnsmasq(8), --dhcp-range).
const DnsmasqMinLease = 2 * time.Minute

// DHCPv4Range is a DHCPv4 address pool served on the tap.
type DHCPv4Range struct {
	// Start and End bound the pool, both inside the tap's subnet.
	Start, End netip.Addr
	// Lease is the lease time; 0 means dnsmasq's default (1 h). Values
	// below DnsmasqMinLease are raised to it by dnsmasq.
	Lease time.Duration
	// Router and DNS are sent as options 3 and 6. Unset means dnsmasq's
	// defaults: its own address on the tap for both.
	Router netip.Addr
	DNS    []netip.Addr
}

// HostRecord is a name dnsmasq answers from its own table (A and AAAA).
type HostRecord struct {
	Name  string
	Addrs []netip.Addr
}

// DnsmasqOptions says what dnsmasq serves. dnsmasq listens on the tap only,
// never reads /etc/resolv.conf or /etc/hosts, and has no upstream servers:
// names not in Hosts get no answer from anywhere else.
type DnsmasqOptions struct {
	// Tap is the interface to serve; "" means the namespace's tap.
	Tap string
	// DHCPv4, if set, turns on the DHCPv4 server for that pool.
	DHCPv4 *DHCPv4Range
	// Authoritative makes dnsmasq NAK requests for addresses it does not
	// hand out (a client moved from another network), instead of staying
	// silent (dnsmasq(8), --dhcp-authoritative).
	Authoritative bool
	// IPv6Prefix, if valid, turns on router advertisements for that prefix
	// with SLAAC and no DHCPv6 (mode ra-only: dnsmasq 2.90 sends the
	// prefix with A=1, L=1 and the RA with M=0, O=0). The tap must carry an
	// address inside the prefix: dnsmasq only advertises prefixes it has an
	// address in.
	IPv6Prefix netip.Prefix
	// RAInterval is the interval between unsolicited router
	// advertisements; 0 means dnsmasq's default.
	RAInterval time.Duration
	// Hosts are the names the DNS server answers.
	Hosts []HostRecord
	// DNSPort is the DNS port; 0 means 53, -1 turns DNS off.
	DNSPort int
	// Dir holds the lease file and the log; "" means a new temporary
	// directory, removed by Stop.
	Dir string
	// Extra is appended to the command line as is.
	Extra []string
}

// Dnsmasq is a dnsmasq process inside a test namespace. The caller stops it
// with Stop.
type Dnsmasq struct {
	cmd     *exec.Cmd
	args    []string
	dir     string
	ownDir  bool
	logFile string
	leases  string
	done    chan struct{}
	waitErr error
	once    sync.Once
	stopErr error
}

// DnsmasqArgs returns dnsmasq's command line (without the binary) for o,
// writing its lease file and log into dir.
func DnsmasqArgs(o DnsmasqOptions, tap, dir string) ([]string, error) {
	if o.Tap != "" {
		tap = o.Tap
	}
	if tap == "" || strings.ContainsAny(tap, ", /\t") {
		return nil, fmt.Errorf("dnsmasq: bad interface %q", tap)
	}
	port := o.DNSPort
	switch {
	case port == 0:
		port = 53
	case port == -1:
		port = 0
	case port < 0 || port > 65535:
		return nil, fmt.Errorf("dnsmasq: bad DNS port %d", o.DNSPort)
	}
	a := []string{
		"--keep-in-foreground",
		"--conf-file=/dev/null",
		"--no-resolv", "--no-hosts", "--no-poll",
		"--interface=" + tap, "--except-interface=lo", "--bind-interfaces",
		"--pid-file=",
		"--user=root", "--group=root",
		"--port=" + strconv.Itoa(port),
		"--log-facility=" + filepath.Join(dir, "dnsmasq.log"),
		"--dhcp-leasefile=" + filepath.Join(dir, "dnsmasq.leases"),
	}
	if port != 0 {
		a = append(a, "--log-queries")
	}
	if r := o.DHCPv4; r != nil {
		if !r.Start.Is4() || !r.End.Is4() || r.End.Less(r.Start) {
			return nil, fmt.Errorf("dnsmasq: bad DHCPv4 range %v-%v", r.Start, r.End)
		}
		rng := r.Start.String() + "," + r.End.String()
		if r.Lease > 0 {
			rng += "," + strconv.FormatInt(int64((r.Lease+time.Second-1)/time.Second), 10)
		}
		a = append(a, "--dhcp-range="+rng, "--log-dhcp")
		if r.Router.IsValid() {
			if !r.Router.Is4() {
				return nil, fmt.Errorf("dnsmasq: router %v is not IPv4", r.Router)
			}
			a = append(a, "--dhcp-option=option:router,"+r.Router.String())
		}
		if len(r.DNS) > 0 {
			s := make([]string, len(r.DNS))
			for i, d := range r.DNS {
				if !d.Is4() {
					return nil, fmt.Errorf("dnsmasq: DNS server %v is not IPv4", d)
				}
				s[i] = d.String()
			}
			a = append(a, "--dhcp-option=option:dns-server,"+strings.Join(s, ","))
		}
		if o.Authoritative {
			a = append(a, "--dhcp-authoritative")
		}
	}
	if p := o.IPv6Prefix; p.IsValid() {
		if !p.Addr().Is6() || p.Bits() != 64 {
			return nil, fmt.Errorf("dnsmasq: SLAAC needs an IPv6 /64, not %v", p)
		}
		a = append(a, "--enable-ra", "--dhcp-range="+p.Masked().Addr().String()+",ra-only,64")
		if o.RAInterval > 0 {
			a = append(a, "--ra-param="+tap+","+strconv.Itoa(int((o.RAInterval+time.Second-1)/time.Second)))
		}
	}
	for _, h := range o.Hosts {
		if h.Name == "" || strings.ContainsAny(h.Name, ", /\t") || len(h.Addrs) == 0 {
			return nil, fmt.Errorf("dnsmasq: bad host record %q %v", h.Name, h.Addrs)
		}
		s := h.Name
		for _, ad := range h.Addrs {
			if !ad.IsValid() {
				return nil, fmt.Errorf("dnsmasq: bad address for %q", h.Name)
			}
			s += "," + ad.String()
		}
		a = append(a, "--host-record="+s)
	}
	return append(a, o.Extra...), nil
}

// StartDnsmasq starts dnsmasq inside ns, bound to its tap only, and waits
// until it has set up its sockets. On error nothing is left running.
func StartDnsmasq(ctx context.Context, ns *netns.Netns, o DnsmasqOptions) (*Dnsmasq, error) {
	bin, err := exec.LookPath("dnsmasq")
	if err != nil {
		if bin, err = exec.LookPath("/usr/sbin/dnsmasq"); err != nil {
			return nil, fmt.Errorf("%w (install dnsmasq-base with `make deps`)", ErrDnsmasqMissing)
		}
	}
	d := &Dnsmasq{dir: o.Dir, done: make(chan struct{})}
	if d.dir == "" {
		if d.dir, err = os.MkdirTemp("", "tamanet-dnsmasq-"); err != nil {
			return nil, err
		}
		d.ownDir = true
	}
	d.logFile = filepath.Join(d.dir, "dnsmasq.log")
	d.leases = filepath.Join(d.dir, "dnsmasq.leases")
	args, err := DnsmasqArgs(o, ns.Tap, d.dir)
	if err != nil {
		d.cleanup()
		return nil, err
	}
	d.args = append([]string{bin}, args...)
	// `ip netns exec` execs dnsmasq in place: the process is dnsmasq.
	d.cmd = exec.Command("ip", append([]string{"netns", "exec", ns.Name}, d.args...)...)
	var stderr strings.Builder
	d.cmd.Stdout, d.cmd.Stderr = &stderr, &stderr
	d.cmd.WaitDelay = 2 * time.Second
	if err := startLocked(d.cmd, func(err error) {
		d.waitErr = err
		close(d.done)
	}); err != nil {
		d.cleanup()
		return nil, fmt.Errorf("start dnsmasq: %w", err)
	}
	// dnsmasq logs "started" once its sockets are bound.
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if strings.Contains(d.Log(), "started, version") {
			return d, nil
		}
		select {
		case <-d.done:
			err := fmt.Errorf("dnsmasq exited at start (%v): %s\n%s\n%s", d.waitErr, d.CommandLine(), strings.TrimSpace(stderr.String()), d.Log())
			d.cleanup()
			return nil, err
		case <-deadline.C:
			err := fmt.Errorf("dnsmasq did not start within 10 s: %s\n%s", d.CommandLine(), d.Log())
			d.Stop()
			return nil, err
		case <-ctx.Done():
			d.Stop()
			return nil, ctx.Err()
		case <-tick.C:
		}
	}
}

// CommandLine returns dnsmasq's command line as run inside the namespace.
func (d *Dnsmasq) CommandLine() string { return strings.Join(d.args, " ") }

// Log returns what dnsmasq has logged so far (queries and DHCP included).
func (d *Dnsmasq) Log() string {
	b, _ := os.ReadFile(d.logFile)
	return string(b)
}

// Done is closed when dnsmasq has exited.
func (d *Dnsmasq) Done() <-chan struct{} { return d.done }

// DnsmasqLease is one line of dnsmasq's lease file.
type DnsmasqLease struct {
	Expiry time.Time // zero for an infinite lease
	MAC    string
	Addr   netip.Addr
	Host   string // "" when the client sent none
}

// Leases returns the DHCPv4 leases dnsmasq has written to its lease file.
func (d *Dnsmasq) Leases() ([]DnsmasqLease, error) {
	f, err := os.Open(d.leases)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var ls []DnsmasqLease
	s := bufio.NewScanner(f)
	for s.Scan() {
		// expiry mac address hostname client-id; DHCPv6 lines start
		// with "duid" or carry an IPv6 address.
		fs := strings.Fields(s.Text())
		if len(fs) < 4 || fs[0] == "duid" {
			continue
		}
		addr, err := netip.ParseAddr(fs[2])
		if err != nil || !addr.Is4() {
			continue
		}
		exp, err := strconv.ParseInt(fs[0], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("dnsmasq lease file: %q", s.Text())
		}
		l := DnsmasqLease{MAC: strings.ToLower(fs[1]), Addr: addr}
		if exp != 0 {
			l.Expiry = time.Unix(exp, 0)
		}
		if fs[3] != "*" {
			l.Host = fs[3]
		}
		ls = append(ls, l)
	}
	return ls, s.Err()
}

// Stop stops dnsmasq (SIGTERM, then SIGKILL after 3 s) and removes the
// directory StartDnsmasq made. Safe to call more than once.
func (d *Dnsmasq) Stop() error {
	d.once.Do(func() {
		terminate(d.cmd.Process, d.done)
		d.stopErr = d.cleanup()
	})
	return d.stopErr
}

func (d *Dnsmasq) cleanup() error {
	if d.ownDir {
		return os.RemoveAll(d.dir)
	}
	return nil
}
