package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tamanet/tamanet/internal/netns"
	"github.com/tamanet/tamanet/qemu/vm"
)

// The IPv6 test link: the tap carries hostAddr6 in the static test prefix
// (the guest's IP6 default is fd00::10:1/64) and an address in raPrefix,
// which dnsmasq advertises for SLAAC. Nothing is sent beyond the tap link.
var (
	hostAddr6  = netip.MustParsePrefix("fd00::10:2/64")
	raPrefix   = netip.MustParsePrefix("fd00:0:0:2::/64")
	raHostAddr = netip.MustParsePrefix("fd00:0:0:2::2/64")
)

// ipv6Link is the namespace side of the IPv6 tests: IPv6 on the tap and
// dnsmasq sending router advertisements.
type ipv6Link struct {
	dnsmasq *vm.Dnsmasq
}

var (
	link6Once sync.Once
	link6     *ipv6Link
	link6Err  error
)

// setupIPv6 turns IPv6 on for the tap (netns.Create turned it off), adds
// the host addresses and starts dnsmasq as the link's router advertiser,
// once per run; the namespace's deletion undoes all of it.
func setupIPv6(t *testing.T) *ipv6Link {
	t.Helper()
	needGuest(t)
	link6Once.Do(func() { link6, link6Err = startIPv6Link() })
	if link6Err != nil {
		t.Fatal(link6Err)
	}
	return link6
}

func startIPv6Link() (*ipv6Link, error) {
	ctx := context.Background()
	ns := &netns.Netns{Name: os.Getenv(envNetns), Tap: tapName}
	for _, a := range []netip.Prefix{hostAddr6, raHostAddr} {
		if err := ns.EnableIPv6(ctx, a.String()); err != nil {
			return nil, err
		}
	}
	// Router advertisements every 4 s only: no DNS, no DHCP, this tap
	// only.
	d, err := vm.StartDnsmasq(ctx, ns, vm.DnsmasqOptions{IPv6Prefix: raPrefix, RAInterval: 4 * time.Second, DNSPort: -1})
	if err != nil {
		return nil, err
	}
	return &ipv6Link{dnsmasq: d}, nil
}

// log is what dnsmasq has logged, for a failure message.
func (l *ipv6Link) log() string { return l.dnsmasq.Log() }

// stopIPv6Link stops dnsmasq, which removes its directory (TestMain's
// inner run calls it at the end).
func stopIPv6Link() {
	if link6 != nil {
		link6.dnsmasq.Stop()
	}
}

// eui64 is the modified EUI-64 interface identifier of mac in prefix (RFC
// 4291 appendix A): what the guest's link-local and SLAAC addresses use.
func eui64(prefix netip.Prefix, mac net.HardwareAddr) netip.Addr {
	b := prefix.Addr().As16()
	b[8], b[9], b[10], b[11], b[12] = mac[0]^2, mac[1], mac[2], 0xff, 0xfe
	b[13], b[14], b[15] = mac[3], mac[4], mac[5]
	return netip.AddrFrom16(b)
}

// guestStatic6 reads the static IPv6 address from the firmware's console
// line "tamanet: ipv6 link-local=... static=ADDR/LEN, ...".
func guestStatic6(t *testing.T) (netip.Addr, bool) {
	t.Helper()
	b, err := os.ReadFile(serialPath)
	if err != nil {
		t.Fatalf("serial log: %v", err)
	}
	m := regexp.MustCompile(`tamanet: ipv6 link-local=(\S+) static=([^,\s]+)`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no IPv6 line on the console:\n%s", tail(string(b), 2000))
	}
	if ll := eui64(netip.MustParsePrefix("fe80::/64"), guestMAC); string(m[1]) != ll.String() {
		t.Errorf("console link-local %s, want %v (from MAC %v)", m[1], ll, guestMAC)
	}
	if string(m[2]) == "none" {
		return netip.Addr{}, false
	}
	p, err := netip.ParsePrefix(string(m[2]))
	if err != nil {
		t.Fatalf("console static address %q: %v", m[2], err)
	}
	return p.Addr(), true
}

// waitPing6 pings addr until it answers or wait passes.
func waitPing6(t *testing.T, addr string, wait time.Duration) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		out, err := exec.Command("ping", "-6", "-n", "-c", "1", "-W", "1", addr).CombinedOutput()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not answer ping -6 after %v: %v\n%s", addr, wait, err, out)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// guestAddrs6 returns the IPv6 addresses /stats lists, or the error.
func guestAddrs6() []string {
	resp, err := httpClient.Get("http://" + guestAddr(80) + "/stats")
	if err != nil {
		return []string{err.Error()}
	}
	defer resp.Body.Close()
	var st struct {
		IPv6 []string `json:"ipv6"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return []string{err.Error()}
	}
	return st.IPv6
}

// ping6Within reports whether addr answers a ping within wait.
func ping6Within(addr string, wait time.Duration) bool {
	for deadline := time.Now().Add(wait); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		if exec.Command("ping", "-6", "-n", "-c", "1", "-W", "1", addr).Run() == nil {
			return true
		}
	}
	return false
}

// udpEcho6 sends n datagrams of size bytes to addr's echo port and checks
// each answer; a lost one is sent again, up to 5 times.
func udpEcho6(addr string, n, size int) error { return udpEchoNet("udp6", addr, n, size) }

// udpEchoNet sends n datagrams of size bytes over network ("udp4",
// "udp6") to the echo service at addr and checks each echo, with up to 5
// tries each.
func udpEchoNet(network, addr string, n, size int) error {
	c, err := net.Dial(network, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, size+1)
	for i := range n {
		msg := []byte(strings.Repeat(string(rune('a'+i%26)), size))
		ok := false
		for try := 0; try < 5 && !ok; try++ {
			if _, err := c.Write(msg); err != nil {
				return err
			}
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			m, err := c.Read(buf)
			ok = err == nil && string(buf[:m]) == string(msg)
		}
		if !ok {
			return fmt.Errorf("datagram %d of %d bytes: no matching echo", i, size)
		}
	}
	return nil
}

func TestIPv6(t *testing.T) {
	l := setupIPv6(t)
	ll := eui64(netip.MustParsePrefix("fe80::/64"), guestMAC)
	slaac := eui64(raPrefix, guestMAC)
	static, hasStatic := guestStatic6(t)

	t.Run("LinkLocalPing", func(t *testing.T) {
		waitPing6(t, ll.String()+"%"+tapName, 20*time.Second)
		out, err := exec.Command("ping", "-6", "-n", "-c", "5", "-i", "0.2", "-W", "2", ll.String()+"%"+tapName).CombinedOutput()
		if err != nil || !strings.Contains(string(out), " 0% packet loss") {
			t.Fatalf("ping -6 %v: %v\n%s", ll, err, out)
		}
	})
	t.Run("StaticPing", func(t *testing.T) {
		if !hasStatic {
			t.Skip("SKIP: the image was built with IP6= (no static IPv6 address)")
		}
		waitPing6(t, static.String(), 20*time.Second)
	})
	t.Run("SLAAC", func(t *testing.T) {
		// dnsmasq advertises every few seconds; the guest forms
		// prefix + EUI-64, runs DAD (1 s) and then answers.
		if !ping6Within(slaac.String(), 60*time.Second) {
			m := stats(t)
			var ra []string
			for k, v := range m {
				if strings.Contains(k, "v6") && (strings.Contains(k, "router") || strings.Contains(k, "invalid")) {
					ra = append(ra, fmt.Sprintf("%s=%v", k, v))
				}
			}
			slices.Sort(ra)
			t.Fatalf("SLAAC address %v does not answer ping -6 after 60 s; guest addresses %v, counters %v\ndnsmasq:\n%s", slaac, guestAddrs6(), ra, l.log())
		}
		resp, err := httpClient.Get("http://[" + slaac.String() + "]/stats")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var st struct {
			IPv6 []string `json:"ipv6"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			t.Fatal(err)
		}
		want := netip.PrefixFrom(slaac, 64).String()
		if !slices.Contains(st.IPv6, want) || !slices.Contains(st.IPv6, netip.PrefixFrom(ll, 64).String()) {
			t.Fatalf("/stats ipv6 %v, want %s and the link-local address among them\ndnsmasq:\n%s", st.IPv6, want, l.log())
		}
		t.Logf("guest addresses %v", st.IPv6)
	})
	addrs := []netip.Addr{slaac}
	if hasStatic {
		addrs = append(addrs, static)
	}
	for _, a := range addrs {
		host := a.String()
		t.Run("Curl-"+host, func(t *testing.T) {
			out, err := exec.Command("curl", "-6", "-sS", "--max-time", "20", "-o", "/dev/null", "-w", "%{http_code}", "http://["+host+"]/").CombinedOutput()
			if err != nil || string(out) != "200" {
				t.Fatalf("curl -6: %v %s", err, out)
			}
		})
		t.Run("TCPEcho-"+host, func(t *testing.T) {
			if err := echoTransfer(net.JoinHostPort(host, "7"), 1<<20, 6, time.Minute); err != nil {
				t.Fatal(err)
			}
		})
		t.Run("UDPEcho-"+host, func(t *testing.T) {
			// Past 1452 bytes the echo comes back in fragments, whose
			// UDP checksum the guest sums as they leave.
			for _, size := range []int{1, 100, 1232, 1452, 1453, 3000, 20000, 65000} {
				if err := udpEcho6(net.JoinHostPort(host, "7"), 5, size); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
	t.Run("BothFamilies", func(t *testing.T) {
		// The same dual-stack listeners answer IPv4 as well.
		if err := echoTransfer(guestAddr(echoPort), 64<<10, 8, 30*time.Second); err != nil {
			t.Fatalf("IPv4 TCP echo: %v", err)
		}
		if _, err := fetchStats(); err != nil {
			t.Fatalf("IPv4 HTTP: %v", err)
		}
	})
}
