package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	echoPort    = 7
	discardPort = 9
	chargenPort = 19
	httpPort    = 80
	mib         = 1 << 20
)

func TestPing(t *testing.T) {
	needGuest(t) // TestMain has checked that ping is installed
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// 100 echo requests 10 ms apart, each waited for up to 2 s, the whole
	// run bounded to 30 s.
	out, err := exec.CommandContext(ctx, "ping", "-n", "-c", "100", "-i", "0.01", "-W", "2", "-w", "30", guestIP).CombinedOutput()
	if err != nil {
		t.Fatalf("ping: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`(\d+) packets transmitted, (\d+) (?:packets )?received.*?([\d.]+)% packet loss`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("ping summary not found:\n%s", out)
	}
	if string(m[1]) != "100" || string(m[2]) != "100" || string(m[3]) != "0" {
		t.Fatalf("ping: %s transmitted, %s received, %s%% loss\n%s", m[1], m[2], m[3], out)
	}
	if rtt := regexp.MustCompile(`rtt [^\n]*`).Find(out); rtt != nil {
		t.Logf("ping: 100/100, %s", rtt)
	}
}

func TestUDPEchoAllSizes(t *testing.T) {
	needGuest(t)
	c, err := net.Dial("udp", guestAddr(echoPort))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	out := make([]byte, 1472)
	in := make([]byte, 2048)
	retries := 0
	deadline := time.Now().Add(3 * time.Minute)
	for size := 1; size <= 1472; size++ {
		for i := range out[:size] {
			out[i] = byte(rng.Uint32())
		}
		ok := false
		for try := 0; try < 5 && !ok; try++ {
			if time.Now().After(deadline) {
				t.Fatalf("UDP echo: out of time at size %d", size)
			}
			if try > 0 {
				retries++
			}
			if _, err := c.Write(out[:size]); err != nil {
				t.Fatalf("size %d: write: %v", size, err)
			}
			// Read until this datagram's echo or a timeout; a late echo
			// of an earlier try is skipped.
			c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			for {
				n, err := c.Read(in)
				if err != nil {
					break
				}
				if n == size && bytes.Equal(in[:n], out[:size]) {
					ok = true
					break
				}
				if n == size {
					t.Fatalf("size %d: echo differs from what was sent", size)
				}
			}
		}
		if !ok {
			t.Fatalf("size %d: no echo after 5 tries", size)
		}
	}
	t.Logf("UDP echo: sizes 1..1472 byte-exact, %d retransmissions", retries)
}

// echoTransfer sends n pseudo-random bytes through the TCP echo service and
// checks the SHA-256 of what comes back.
func echoTransfer(addr string, n int, seed uint64, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	sent := sha256.New()
	werr := make(chan error, 1)
	go func() {
		rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
		buf := make([]byte, 64<<10)
		left := n
		for left > 0 {
			k := min(left, len(buf))
			for i := 0; i < k; i += 8 {
				v := rng.Uint64()
				for j := 0; j < 8 && i+j < k; j++ {
					buf[i+j] = byte(v >> (8 * j))
				}
			}
			sent.Write(buf[:k])
			if _, err := c.Write(buf[:k]); err != nil {
				werr <- fmt.Errorf("write: %w", err)
				return
			}
			left -= k
		}
		werr <- c.(*net.TCPConn).CloseWrite()
	}()
	got := sha256.New()
	m, err := io.CopyN(got, c, int64(n))
	if err != nil {
		return fmt.Errorf("read after %d of %d bytes: %w", m, n, err)
	}
	if err := <-werr; err != nil {
		return err
	}
	// The service closes once it has echoed everything after our FIN.
	var extra [1]byte
	if k, err := c.Read(extra[:]); k != 0 || !errors.Is(err, io.EOF) {
		return fmt.Errorf("after %d bytes: read %d more, err %v; want EOF", n, k, err)
	}
	if !bytes.Equal(sent.Sum(nil), got.Sum(nil)) {
		return fmt.Errorf("SHA-256 mismatch: sent %x, got %x", sent.Sum(nil), got.Sum(nil))
	}
	return nil
}

// TestUDPEchoFragmented: datagrams longer than the MTU, echoed in IP
// fragments. With a device that fills checksums the guest leaves the UDP
// checksum to it for whole datagrams and sums fragmented ones itself; the
// host kernel drops a datagram whose checksum is wrong.
func TestUDPEchoFragmented(t *testing.T) {
	needGuest(t)
	for _, size := range []int{1473, 2000, 2961, 8000, 20000, 65000, 65507} {
		if err := udpEchoNet("udp4", guestAddr(echoPort), 3, size); err != nil {
			t.Fatal(err)
		}
	}
	m := stats(t)
	if d := m["endpoint.tx_frag_dropped"]; d != 0 {
		t.Errorf("%v fragmented datagrams dropped by the endpoint", d)
	}
}

func TestTCPEcho16MiB(t *testing.T) {
	needGuest(t)
	start := time.Now()
	if err := echoTransfer(guestAddr(echoPort), 16*mib, 7, 5*time.Minute); err != nil {
		t.Fatal(err)
	}
	d := time.Since(start)
	t.Logf("TCP echo: 16 MiB SHA-256 match in %v (%.1f Mbit/s each way)", d.Round(time.Millisecond), mbps(16*mib, d))
}

func TestTCPEchoConcurrent(t *testing.T) {
	needGuest(t)
	const conns, size = 32, 256 << 10
	var wg sync.WaitGroup
	errs := make([]error, conns)
	start := time.Now()
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = echoTransfer(guestAddr(echoPort), size, uint64(100+i), 3*time.Minute)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("connection %d: %v", i, err)
		}
	}
	t.Logf("TCP echo: %d concurrent connections × %d KiB in %v", conns, size>>10, time.Since(start).Round(time.Millisecond))
}

// TestTCPEchoLatency measures round trips on one echo connection; the
// guest's ACK of each request should mostly be replaced by the reply
// (endpoint.tx_acks_merged), one frame per round trip, not two.
func TestTCPEchoLatency(t *testing.T) {
	needGuest(t)
	const n = 500
	before := stats(t)["endpoint.tx_acks_merged"]
	p50, p99, err := tcpRR(n, 64)
	if err != nil {
		t.Fatal(err)
	}
	merged := stats(t)["endpoint.tx_acks_merged"] - before
	t.Logf("TCP echo round trip (64 bytes, %d samples): p50 %v, p99 %v; %v ACKs replaced by the reply", n, p50, p99, merged)
	fmt.Printf("e2e figure: TCP echo round trip p50 %v p99 %v, ACKs merged %v of %d\n", p50, p99, merged, n)
	if merged < n/4 {
		t.Errorf("%v of %d round trips had the guest's ACK replaced by its reply, want at least %d", merged, n, n/4)
	}
}

// tcpRR measures n request/response round trips of size bytes on one TCP
// echo connection.
func tcpRR(n, size int) (p50, p99 time.Duration, err error) {
	c, err := net.DialTimeout("tcp", guestAddr(echoPort), 10*time.Second)
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	out := bytes.Repeat([]byte{'x'}, size)
	in := make([]byte, size)
	samples := make([]time.Duration, 0, n)
	for range n {
		t0 := time.Now()
		if _, err := c.Write(out); err != nil {
			return 0, 0, err
		}
		if _, err := io.ReadFull(c, in); err != nil {
			return 0, 0, err
		}
		samples = append(samples, time.Since(t0))
		if !bytes.Equal(in, out) {
			return 0, 0, errors.New("echo differs")
		}
	}
	p50, p99 = percentiles(samples)
	return p50.Round(time.Microsecond), p99.Round(time.Microsecond), nil
}

// udpRR measures n request/response round trips of size bytes against the
// UDP echo service; a lost datagram is retried and its sample dropped.
func udpRR(n, size int) (p50, p99 time.Duration, lost int, err error) {
	c, err := net.Dial("udp", guestAddr(echoPort))
	if err != nil {
		return 0, 0, 0, err
	}
	defer c.Close()
	out := bytes.Repeat([]byte{'u'}, size)
	in := make([]byte, 2048)
	samples := make([]time.Duration, 0, n)
	for len(samples) < n {
		if lost > n/10 {
			return 0, 0, lost, fmt.Errorf("%d of %d datagrams lost", lost, len(samples)+lost)
		}
		t0 := time.Now()
		if _, err := c.Write(out); err != nil {
			return 0, 0, lost, err
		}
		c.SetReadDeadline(time.Now().Add(time.Second))
		k, err := c.Read(in)
		if err != nil {
			lost++
			continue
		}
		samples = append(samples, time.Since(t0))
		if k != size {
			return 0, 0, lost, fmt.Errorf("echo of %d bytes has %d", size, k)
		}
	}
	p50, p99 = percentiles(samples)
	return p50.Round(time.Microsecond), p99.Round(time.Microsecond), lost, nil
}

func percentiles(s []time.Duration) (p50, p99 time.Duration) {
	s = slices.Clone(s)
	slices.Sort(s)
	at := func(q float64) time.Duration { return s[min(len(s)-1, int(q*float64(len(s))))] }
	return at(0.50), at(0.99)
}

func mbps(n int, d time.Duration) float64 { return float64(n) * 8 / d.Seconds() / 1e6 }

// upload writes n bytes to the discard service and returns the time until
// the service has read them all and closed (its EOF answers ours).
func upload(n int) (time.Duration, error) {
	return uploadVia(&net.Dialer{Timeout: 10 * time.Second}, n, 5*time.Minute)
}

// uploadVia is upload on a connection from d, all of it within limit.
func uploadVia(d *net.Dialer, n int, limit time.Duration) (time.Duration, error) {
	c, err := d.Dial("tcp", guestAddr(discardPort))
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(limit))
	buf := bytes.Repeat([]byte("tamanet discard "), 4096)
	start := time.Now()
	for left := n; left > 0; {
		k, err := c.Write(buf[:min(left, len(buf))])
		if err != nil {
			return 0, fmt.Errorf("write after %d bytes: %w", n-left, err)
		}
		left -= k
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return 0, err
	}
	if k, err := c.Read(buf); k != 0 || !errors.Is(err, io.EOF) {
		return 0, fmt.Errorf("discard answered %d bytes, err %v; want EOF", k, err)
	}
	return time.Since(start), nil
}

// download reads exactly n bytes from chargen, checks them against the RFC
// 864 pattern, and closes.
func download(n int) (time.Duration, error) {
	c, err := net.DialTimeout("tcp", guestAddr(chargenPort), 10*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Minute))
	buf := make([]byte, 64<<10)
	start := time.Now()
	pos := 0
	for pos < n {
		k, err := c.Read(buf[:min(n-pos, len(buf))])
		if bad := checkChargen(buf[:k], pos); bad >= 0 {
			return 0, fmt.Errorf("chargen byte %d is %q, breaks the RFC 864 pattern", bad, buf[bad-pos])
		}
		pos += k
		if err != nil {
			return 0, fmt.Errorf("read after %d of %d bytes: %w", pos, n, err)
		}
	}
	return time.Since(start), nil
}

// checkChargen returns the stream offset of the first byte of b (which
// starts at stream offset off) that is not the RFC 864 pattern: 95-line
// cycles of 72 printable characters, line k starting at ' '+k, then CR LF.
func checkChargen(b []byte, off int) int {
	const line = 74
	for i, c := range b {
		p := off + i
		l, col := p/line, p%line
		var want byte
		switch {
		case col == 72:
			want = '\r'
		case col == 73:
			want = '\n'
		default:
			want = byte(' ' + (l+col)%95)
		}
		if c != want {
			return p
		}
	}
	return -1
}

func TestDiscardUpload64MiB(t *testing.T) {
	needGuest(t)
	d, err := upload(64 * mib)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("upload to discard: 64 MiB in %v, %.1f Mbit/s", d.Round(time.Millisecond), mbps(64*mib, d))
	fmt.Printf("e2e figure: upload %.1f Mbit/s\n", mbps(64*mib, d))
	// Whether a connection is left noted at a zero window (a note that
	// outlives its connection costs the receive path a check per frame),
	// and how many ACKs have needed the link's allowance past one.
	s := stats(t)
	t.Logf("zero receive windows: %.0f noted now, %.0f ACKs taken past one so far",
		s["endpoint.zero_windows"], s["endpoint.rx_zero_window_acks"])
}

func TestChargenDownload64MiB(t *testing.T) {
	needGuest(t)
	before := stats(t)
	d, err := download(64 * mib)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("download from chargen: 64 MiB in %v, %.1f Mbit/s", d.Round(time.Millisecond), mbps(64*mib, d))
	fmt.Printf("e2e figure: download %.1f Mbit/s\n", mbps(64*mib, d))
	checkCut(t, before, stats(t), 64*mib)
}

// checkCut checks who cut the guest's TCP segments into frames during a
// bulk send of n bytes, from /stats before and after: the device when it
// has TSO for IPv4 (virtio-net HOST_TSO4), else the endpoint, into frames
// whose checksums the device fills, when the device fills checksums (the
// ENET's accelerator, virtio-net CSUM alone), else gVisor, with no frame
// counted as cut.
func checkCut(t *testing.T, before, after map[string]float64, n int) {
	t.Helper()
	cut := after["endpoint.tx_cut"] - before["endpoint.tx_cut"]
	frames := after["endpoint.tx.packets"] - before["endpoint.tx.packets"]
	t.Logf("offloads tx_checksum=%v tso4=%v: %.0f frames sent, %.0f cut by the endpoint",
		after["offloads.tx_checksum"], after["offloads.tso4"], frames, cut)
	switch {
	case after["offloads.tx_checksum"] == 1 && after["offloads.tso4"] == 0:
		// Nearly all of n went out in full-sized frames cut from
		// larger segments.
		if want := float64(n) / 1500 / 2; cut < want {
			t.Errorf("the endpoint cut %.0f frames for %d bytes, want at least %.0f", cut, n, want)
		}
	default:
		if cut != 0 {
			t.Errorf("the endpoint cut %.0f frames, with tso4=%v tx_checksum=%v", cut, after["offloads.tso4"], after["offloads.tx_checksum"])
		}
	}
}

func TestHTTP(t *testing.T) {
	needGuest(t)
	resp, err := httpClient.Get("http://" + guestAddr(httpPort) + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || !strings.Contains(strings.ToLower(string(body)), "tamanet") {
		t.Fatalf("GET /: %s\n%s", resp.Status, tail(string(body), 500))
	}
	// The same page through curl, the tool a user would use.
	if _, err := exec.LookPath("curl"); err == nil {
		out, err := exec.Command("curl", "-sS", "-f", "-m", "20", "http://"+guestAddr(httpPort)+"/").CombinedOutput()
		if err != nil || !bytes.Equal(out, body) {
			t.Fatalf("curl GET /: %v\n%s", err, tail(string(out), 500))
		}
	}
	resp, err = httpClient.Get("http://" + guestAddr(httpPort) + "/no-such-page")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Fatalf("GET /no-such-page: %s, want 404", resp.Status)
	}

	a := stats(t)
	// Traffic between the reads: a few echoes.
	for i := range 5 {
		if err := echoTransfer(guestAddr(echoPort), 1000, uint64(i), 30*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	b := stats(t)
	for _, k := range []string{"uptime_seconds", "nic.rx.packets", "nic.tx.packets", "nic.rx.bytes", "nic.tx.bytes", "endpoint.rx.packets", "endpoint.tx.packets", "tcpip.tcp.passive_connection_openings"} {
		va, oka := stat(a, k)
		vb, okb := stat(b, k)
		if !okb {
			t.Errorf("/stats has no %s", k)
			continue
		}
		if oka && vb <= va {
			t.Errorf("/stats %s did not increase: %v then %v", k, va, vb)
		}
	}
	for _, k := range []string{"pool.capacity", "pool.in_use", "pool.high_water"} {
		mustStat(t, b, k)
	}
}
