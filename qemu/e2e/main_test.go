// Package e2e boots the real tamanet image under QEMU on a tap device in a
// private network namespace and tests it from the host side with standard
// tools and a Go client.
//
//	go test -count=1 -v ./qemu/e2e -args -target microvm -accel auto [-bench]
//
// TestMain boots the image once, then re-executes this test binary inside
// the namespace (`ip netns exec`), so every test's sockets are in the
// namespace and can reach nothing but the guest. A missing prerequisite
// (not root, no /dev/net/tun, no QEMU, no TamaGo distribution) fails the
// run with the reason and the fix, like anything else that goes wrong: a
// passing run means the firmware was built, booted and tested. Without
// -target (plain `go test ./...`) every test SKIPs and points at `make e2e`.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tamanet/tamanet/internal/netns"
	"github.com/tamanet/tamanet/internal/prereq"
	"github.com/tamanet/tamanet/qemu/vm"
)

var (
	targetFlag  = flag.String("target", "microvm", "board: microvm or mx6ullevk")
	accelFlag   = flag.String("accel", "auto", "accelerator: auto, kvm or tcg")
	imageFlag   = flag.String("image", "", "boot this image instead of building build/tamanet-TARGET")
	benchFlag   = flag.Bool("bench", false, "run TestSystemBenchmark")
	labelFlag   = flag.String("label", "tamanet", "TestSystemBenchmark's name for the image in its benchmark lines (make ab: old, new)")
	bootTimeout = flag.Duration("boot-timeout", 60*time.Second, "how long to wait for the ready line")
)

// Environment passed from the outer process to the one in the namespace.
const (
	envInner  = "TAMANET_E2E_INNER"
	envSerial = "TAMANET_E2E_SERIAL"
	envGuest  = "TAMANET_E2E_GUEST"
	envMAC    = "TAMANET_E2E_MAC"
	envNIC    = "TAMANET_E2E_NIC"
	envTap    = "TAMANET_E2E_TAP"
	envNetns  = "TAMANET_E2E_NETNS" // the namespace's name
	envImage  = "TAMANET_E2E_IMAGE"
)

// What the tests in the namespace know about the guest.
var (
	skipReason string // set when the suite runs without -target
	guestIP    string // e.g. "10.0.0.1"
	guestMAC   net.HardwareAddr
	guestNIC   string
	tapName    string
	serialPath string
	imagePath  string // the image QEMU runs (its -kernel), to find QEMU's process
)

func TestMain(m *testing.M) {
	flag.Parse()
	if os.Getenv(envInner) == "1" {
		guestIP = os.Getenv(envGuest)
		guestMAC, _ = net.ParseMAC(os.Getenv(envMAC))
		guestNIC = os.Getenv(envNIC)
		tapName = os.Getenv(envTap)
		serialPath = os.Getenv(envSerial)
		imagePath = os.Getenv(envImage)
		code := m.Run()
		stopIPv6Link()
		os.Exit(code)
	}
	os.Exit(outer(m))
}

// outer boots the guest and runs the tests in its namespace. It always
// stops QEMU and deletes the namespace before returning.
func outer(m *testing.M) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	target, err := vm.ParseTarget(*targetFlag)
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 2
	}
	accel, err := vm.ParseAccel(*accelFlag)
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 2
	}
	// `go test ./...` (make test-host) reaches this package without
	// arguments; the suite then leaves the booting to `make e2e`, which
	// runs it right after with -args -target.
	explicit := false
	flag.Visit(func(f *flag.Flag) {
		if f.Name == "target" || f.Name == "image" || f.Name == "bench" {
			explicit = true
		}
	})
	if !explicit {
		skipReason = "SKIP: the end-to-end suite runs with `make e2e` (go test ./qemu/e2e -args -target TARGET)"
		return m.Run()
	}
	if missing := prerequisites(target, *imageFlag == ""); missing != "" {
		fmt.Fprintf(os.Stderr, "FAIL: e2e: %s\n", missing)
		return 1
	}
	image := *imageFlag
	if image == "" {
		image, err = buildImage(ctx, target)
		if err != nil {
			fmt.Fprintf(os.Stderr, "FAIL: e2e: %v\n", err)
			return 1
		}
	}

	dir, err := os.MkdirTemp("", "tamanet-e2e-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: e2e: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	serial, err := os.Create(filepath.Join(dir, "serial.log"))
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: e2e: %v\n", err)
		return 1
	}
	defer serial.Close()

	ns, err := runNetns("tamanet-e2e-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: e2e: %v\n", err)
		return 1
	}
	v, err := vm.Start(ctx, vm.Options{Target: target, Image: image, Accel: accel, Netns: ns, Console: serial})
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: e2e: %v\n", err)
		return 1
	}
	defer v.Close()
	a, note := v.Accel()
	fmt.Printf("e2e: target %s, image %s, accel %s (%s), namespace %s\n", target, image, a, note, ns)
	start := time.Now()
	ready, err := v.WaitReady(ctx, *bootTimeout)
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: e2e: boot: %v\n", err)
		return 1
	}
	fmt.Printf("e2e: ready after %v: ip=%s mac=%s nic=%s\n", time.Since(start).Round(time.Millisecond), ready.Prefix, ready.MAC, ready.NIC)
	if ready.NIC != target.NIC() {
		fmt.Fprintf(os.Stderr, "FAIL: e2e: ready line says nic=%s, want %s for %s\n", ready.NIC, target.NIC(), target)
		return 1
	}

	// The tests run in the namespace, bounded by go test's own timeout
	// less a margin for the cleanup here.
	runCtx := ctx
	if f := flag.Lookup("test.timeout"); f != nil {
		if d, err := time.ParseDuration(f.Value.String()); err == nil && d > 2*time.Minute {
			var cancel context.CancelFunc
			runCtx, cancel = context.WithTimeout(ctx, d-time.Minute)
			defer cancel()
		}
	}
	cmd, err := innerCommand(runCtx, v, ready, serial, image, skipArgs(os.Args[1:], leftOut()))
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: e2e: %v\n", err)
		return 1
	}
	runErr := cmd.Run()

	code := 0
	if runErr != nil {
		code = 1
		if ee := (*exec.ExitError)(nil); errors.As(runErr, &ee) && ee.ExitCode() > 0 {
			code = ee.ExitCode()
		}
	}
	select {
	case <-v.Done():
		fmt.Fprintf(os.Stderr, "FAIL: e2e: QEMU exited during the tests: %v\n", v.Err())
		code = 1
	default:
	}
	if p := findPanic(v.Serial()); p != "" {
		fmt.Fprintf(os.Stderr, "FAIL: e2e: the serial log shows a panic:\n%s\n", p)
		code = 1
	}
	if code != 0 {
		fmt.Fprintf(os.Stderr, "e2e: tests failed (%v); guest log:\n%s\n", runErr, tail(v.Log(), 8000))
	}
	if err := v.Close(); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: e2e: cleanup: %v\n", err)
		code = 1
	}
	if c := dhcpPhase(ctx, runCtx, target, accel); c != 0 {
		code = c
	}
	if c := linuxPhase(ctx, runCtx, target, accel); c != 0 {
		code = c
	}
	return code
}

// innerCommand returns the command that runs this test binary with args
// in v's namespace, telling it (TestMain's inner branch) about the guest
// that ready describes, its console log serial and its image, and
// anything in env besides. It gets SIGQUIT when ctx ends, so a hung test
// leaves its goroutines' stacks.
func innerCommand(ctx context.Context, v *vm.VM, ready vm.Ready, serial *os.File, image string, args []string, env ...string) (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := v.Netns().Command(ctx, self, args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.Env = append(append(os.Environ(),
		envInner+"=1",
		envSerial+"="+serial.Name(),
		envGuest+"="+ready.Addr().String(),
		envMAC+"="+ready.MAC,
		envNIC+"="+ready.NIC,
		envTap+"="+v.Netns().Tap,
		envNetns+"="+v.Netns().Name,
		envImage+"="+image,
	), env...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGQUIT) }
	cmd.WaitDelay = 10 * time.Second
	return cmd, nil
}

// prerequisites says what is missing to run QEMU for target on a tap in
// a namespace and, with build, to build its image, and how to get it; ""
// when nothing is. ping is needed too: the services' checks use it.
func prerequisites(target vm.Target, build bool) string {
	root, err := prereq.ModuleRoot(".")
	if err != nil {
		return err.Error()
	}
	errs := prereq.Check(root, build, target.QEMUBinary(), "ping")
	if len(errs) == 0 {
		return ""
	}
	return errors.Join(errs...).Error() + "\n(machines that cannot run the firmware use `make test-host`)"
}

// buildImage builds build/tamanet-TARGET with the Makefile (go's cache
// makes a rebuild of an unchanged tree cheap, and a stale image is never
// tested). prerequisites has checked the TamaGo distribution.
func buildImage(ctx context.Context, target vm.Target) (image string, err error) {
	root, err := prereq.ModuleRoot(".")
	if err != nil {
		return "", err
	}
	image = filepath.Join(root, "build", "tamanet-"+string(target))
	fmt.Printf("e2e: make build TARGET=%s\n", target)
	cmd := exec.CommandContext(ctx, "make", "-C", root, "--no-print-directory", "build", "TARGET="+string(target))
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("make build TARGET=%s: %v\n%s", target, err, out)
	}
	return image, nil
}

// lastLines returns the last n non-empty lines of s joined with " | ".
func lastLines(s string, n int) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep[max(0, len(keep)-n):], " | ")
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "...\n" + s[len(s)-n:]
}

// panicRE matches what a Go runtime crash or a tamago exception prints.
var panicRE = regexp.MustCompile(`(?m)^.*(panic:|fatal error:|unexpected fault|exception: |goroutine \d+ \[running\]).*$`)

// findPanic returns the serial log from the first panic line on, or "".
func findPanic(serial string) string {
	loc := panicRE.FindStringIndex(serial)
	if loc == nil {
		return ""
	}
	return tail(serial[loc[0]:], 4000)
}

// needGuest skips the test when the suite runs without -target.
func needGuest(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
	if guestIP == "" {
		t.Fatal("no guest address: TestMain did not boot the image")
	}
}

func guestAddr(port int) string { return net.JoinHostPort(guestIP, strconv.Itoa(port)) }

// stats fetches /stats and flattens its numeric leaves into dotted paths
// ("nic.rx.packets", "tcpip.tcp.checksum_errors"); booleans become 0 or 1.
func stats(t *testing.T) map[string]float64 {
	t.Helper()
	var m map[string]float64
	var err error
	for try := 0; try < 3; try++ {
		if m, err = fetchStats(); err == nil {
			return m
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("GET /stats: %v", err)
	return nil
}

var httpClient = &http.Client{
	Timeout:   15 * time.Second,
	Transport: &http.Transport{DisableKeepAlives: true},
}

func fetchStats() (map[string]float64, error) {
	return fetchStatsURL("http://" + guestAddr(80) + "/stats")
}

func fetchStatsURL(url string) (map[string]float64, error) {
	resp, err := httpClient.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %s: %s", resp.Status, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return nil, fmt.Errorf("Content-Type %q", ct)
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("invalid JSON: %v: %s", err, tail(string(body), 400))
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("not a JSON object: %s", tail(string(body), 400))
	}
	out := map[string]float64{}
	flatten("", obj, out)
	return out, nil
}

func flatten(prefix string, v any, out map[string]float64) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			flatten(p, e, out)
		}
	case []any:
		for i, e := range x {
			flatten(fmt.Sprintf("%s.%d", prefix, i), e, out)
		}
	case json.Number:
		if f, err := x.Float64(); err == nil {
			out[prefix] = f
		}
	case bool:
		out[prefix] = 0
		if x {
			out[prefix] = 1
		}
	}
}

// stat returns the counter at path, matched as a whole or as a suffix of
// a longer path ("pool.in_use" finds "stack.pool.in_use"); ok is false when
// it is absent.
func stat(m map[string]float64, path string) (float64, bool) {
	if v, ok := m[path]; ok {
		return v, true
	}
	for k, v := range m {
		if strings.HasSuffix(k, "."+path) {
			return v, true
		}
	}
	return 0, false
}

func mustStat(t *testing.T, m map[string]float64, path string) float64 {
	t.Helper()
	v, ok := stat(m, path)
	if !ok {
		t.Fatalf("/stats has no %s", path)
	}
	return v
}

// leftOut selects the tests the static guest's run leaves out rather
// than reporting them skipped: the DHCP and Linux phases' (dhcpPhase and
// linuxPhase run them against guests of their own), the comparisons'
// (TestCompare and TestLinuxCompare boot their own guests, with -compare or
// -linux and no -target) and, without -bench, the system benchmark (make
// bench runs it).
func leftOut() string {
	p := "^(TestDHCP|TestDHCPBootFallback|TestCompare|TestCompareMeasure|TestLinuxCompare|TestLinuxSmoke"
	if !*benchFlag {
		p += "|TestSystemBenchmark"
	}
	return p + ")$"
}

// skipArgs returns args with pattern added to its -test.skip, keeping a
// pattern the caller gave (a second -test.skip flag would replace it).
func skipArgs(args []string, pattern string) []string {
	out := make([]string, 0, len(args)+1)
	merged := false
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "-test.skip="); ok {
			if v != "" {
				pattern = v + "|" + pattern
			}
			a, merged = "-test.skip="+pattern, true
		}
		out = append(out, a)
	}
	if !merged {
		out = append(out, "-test.skip="+pattern)
	}
	return out
}

// runNetns deletes the namespaces of base that killed runs left behind,
// saying so, and returns a free name for this run's next one.
func runNetns(base string) (string, error) {
	reaped, err := netns.ReapStale(base)
	for _, n := range reaped {
		fmt.Printf("e2e: deleted namespace %s, left by a run that was killed\n", n)
	}
	if err != nil {
		return "", err
	}
	return netns.FreeName(netns.RunPrefix(base))
}
