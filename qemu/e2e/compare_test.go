package e2e

// The comparison of tamanet with the baseline firmware (cmd/baseline:
// tamago's ENET driver + gVisor link/channel + copying glue) on QEMU's
// mcimx6ul-evk. It runs only on its own:
//
//	go test -count=1 -v -timeout 20m -run '^TestCompare$' ./qemu/e2e -args -compare [-compare-runs 5] [-accel tcg]
//
// TestCompare builds both images, then boots each in turn in a namespace of
// its own and re-executes this test binary there (TestCompareMeasure),
// which runs the measurements of TestSystemBenchmark -compare-runs times
// and writes the samples to a file; TestCompare prints one table with the
// medians side by side.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/tamanet/tamanet/internal/prereq"
	"github.com/tamanet/tamanet/qemu/vm"
)

var (
	compareFlag = flag.Bool("compare", false, "run TestCompare: tamanet against the baseline firmware on mcimx6ul-evk")
	compareRuns = flag.Int("compare-runs", 5, "measurement runs per image in TestCompare (medians are reported)")
	compareOut  = flag.String("compare-out", "", "internal: TestCompareMeasure writes its samples here")
	compareOurs = flag.String("compare-ours", "", "TestCompare: boot this tamanet image instead of building build/tamanet-mx6ullevk (relative to the repository root; for A/B of a change)")
	compareBase = flag.String("compare-baseline", "", "TestCompare: boot this baseline image instead of building build/baseline-mx6ullevk (relative to the repository root)")
)

// samples are one image's measurements, one entry per run.
type samples struct {
	NIC          string
	Up, Down     []float64 // Mbit/s
	TCP50, TCP99 []time.Duration
	UDP50, UDP99 []time.Duration
	CPS          []float64
	// IdleCPU is the host CPU the idle guest's QEMU process used, in
	// percent of one core, over 5 s starting 2 s after boot.
	IdleCPU float64
	// Guest Go heap allocations (count and bytes) over all runs and the
	// frames the guest received and sent meanwhile, from /stats.
	Mallocs, AllocBytes, Frames float64
}

// compareImage is one column of the table.
type compareImage struct {
	name  string // column title
	image string // path under the repository root
	nic   string // the ready line's nic=
	build func(ctx context.Context, root string) ([]byte, error)
}

func compareImages() []compareImage {
	return []compareImage{
		{"tamanet", "build/tamanet-mx6ullevk", "enet", func(ctx context.Context, root string) ([]byte, error) {
			return exec.CommandContext(ctx, "make", "-C", root, "--no-print-directory", "build", "TARGET=mx6ullevk").CombinedOutput()
		}},
		{"baseline (tamago enet + channel)", "build/baseline-mx6ullevk", "baseline-enet", func(ctx context.Context, root string) ([]byte, error) {
			cmd := exec.CommandContext(ctx, "sh", "-c", `TAMAGO=$(go tool -n github.com/usbarmory/tamago/cmd/tamago) && `+
				`GOOS=tamago GOOSPKG=github.com/usbarmory/tamago GOARCH=arm GOARM=7 $TAMAGO build `+
				`-tags mx6ullevk,linkramsize -trimpath -ldflags "-s -w -T 0x80010000 -R 0x1000" -o build/baseline-mx6ullevk ./cmd/baseline`)
			cmd.Dir = root
			return cmd.CombinedOutput()
		}},
	}
}

func TestCompare(t *testing.T) {
	if !*compareFlag {
		t.Skip("SKIP: the comparison runs only with -args -compare (make bench TARGET=mx6ullevk)")
	}
	if os.Getenv(envInner) == "1" {
		t.Skip("SKIP: -compare boots its own guests: run it without -target/-image/-bench")
	}
	// Asked for with -compare: a missing prerequisite fails, as in the
	// rest of the suite.
	if reason := prerequisites(vm.MX6ULLEVK, *compareOurs == "" || *compareBase == ""); reason != "" {
		t.Fatal(reason)
	}
	accel, err := vm.ParseAccel(*accelFlag)
	if err != nil {
		t.Fatal(err)
	}
	root, err := prereq.ModuleRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := signalContext(t)
	defer stop()

	images := compareImages()
	for i, given := range []string{*compareOurs, *compareBase} {
		if given != "" {
			images[i].image, images[i].build = given, nil // relative: to the repository root
		}
	}
	for _, im := range images {
		if im.build == nil {
			continue
		}
		if out, err := im.build(ctx, root); err != nil {
			t.Fatalf("build %s: %v\n%s", im.image, err, out)
		}
	}
	results := make([]samples, len(images))
	for i, im := range images {
		image := im.image
		if !filepath.IsAbs(image) {
			image = filepath.Join(root, image)
		}
		results[i] = measureImage(t, ctx, accel, image, im.nic)
	}

	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "\ncomparison on mcimx6ul-evk (QEMU TCG), median of %d runs\t%s\t%s\tratio\n", *compareRuns, images[0].name, images[1].name)
	ours, base := results[0], results[1]
	row := func(name string, a, b float64, unit string, higherBetter bool) {
		r := a / b
		if !higherBetter {
			r = b / a
		}
		fmt.Fprintf(tw, "%s\t%.1f %s\t%.1f %s\t%.2fx\n", name, a, unit, b, unit, r)
	}
	us := func(d []time.Duration) float64 { return float64(medianD(d)) / 1e3 }
	row("TCP upload to discard (32 MiB)", medianF(ours.Up), medianF(base.Up), "Mbit/s", true)
	row("TCP download from chargen (32 MiB)", medianF(ours.Down), medianF(base.Down), "Mbit/s", true)
	row("TCP echo 64 B round trip p50", us(ours.TCP50), us(base.TCP50), "µs", false)
	row("TCP echo 64 B round trip p99", us(ours.TCP99), us(base.TCP99), "µs", false)
	row("UDP echo 64 B round trip p50", us(ours.UDP50), us(base.UDP50), "µs", false)
	row("UDP echo 64 B round trip p99", us(ours.UDP99), us(base.UDP99), "µs", false)
	row("TCP connect + 1-byte echo + close", medianF(ours.CPS), medianF(base.CPS), "conn/s", true)
	if ours.IdleCPU > 0 && base.IdleCPU > 0 {
		row("host CPU of the idle guest (QEMU process)", ours.IdleCPU, base.IdleCPU, "%", false)
	}
	if ours.Frames > 0 && base.Frames > 0 {
		row("guest heap allocations per frame (all runs)", ours.Mallocs/ours.Frames, base.Mallocs/base.Frames, "", false)
		row("guest heap bytes per frame (all runs)", ours.AllocBytes/ours.Frames, base.AllocBytes/base.Frames, "B", false)
	}
	tw.Flush()
	fmt.Println("ratio: tamanet's advantage (>1: tamanet better; throughput ours/baseline, latency and allocations baseline/ours)")
}

// signalContext is cancelled on SIGINT/SIGTERM, so QEMU and the namespace
// are cleaned up on Ctrl-C.
func signalContext(t *testing.T) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	if dl, ok := t.Deadline(); ok {
		ctx, cancel = context.WithDeadline(ctx, dl.Add(-30*time.Second))
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		select {
		case <-sig:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, func() { signal.Stop(sig); cancel() }
}

// measureImage boots image in a namespace of its own, runs
// TestCompareMeasure inside it and returns its samples.
func measureImage(t *testing.T, ctx context.Context, accel vm.Accel, image, nic string) samples {
	t.Helper()
	return measureVM(t, ctx, vm.Options{Target: vm.MX6ULLEVK, Image: image, Accel: accel}, nic, true)
}

// measureVM boots o (Netns and Console are its own) and measures it as
// measureImage does; idle says whether to measure the idle guest's host
// CPU first.
func measureVM(t *testing.T, ctx context.Context, o vm.Options, nic string, idle bool) samples {
	t.Helper()
	image := o.Image
	dir := t.TempDir()
	serial, err := os.Create(filepath.Join(dir, "serial.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer serial.Close()
	ns, err := runNetns("tamanet-cmp-")
	if err != nil {
		t.Fatal(err)
	}
	o.Netns, o.Console = ns, serial
	v, err := vm.Start(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := v.Close(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}()
	ready, err := v.WaitReady(ctx, *bootTimeout)
	if err != nil {
		t.Fatalf("%s: boot: %v", image, err)
	}
	if ready.NIC != nic {
		t.Fatalf("%s: ready line says nic=%s, want %s", image, ready.NIC, nic)
	}
	a, note := v.Accel()
	fmt.Printf("compare: %s up (nic=%s, accel %s: %s, namespace %s)\n", filepath.Base(image), ready.NIC, a, note, ns)

	// Idle CPU once boot has settled (the first ARP and neighbour
	// exchanges), over long enough that a few wake-ups a second show.
	var idleCPUPct float64
	if idle {
		time.Sleep(2 * time.Second)
		var idleErr error
		if idleCPUPct, idleErr = idleCPU(image, 5*time.Second); idleErr != nil {
			t.Logf("%s: idle CPU not measured: %v", image, idleErr)
		}
	}

	out := filepath.Join(dir, "samples.json")
	cmd, err := innerCommand(ctx, v, ready, serial, image, []string{"-test.run=^TestCompareMeasure$", "-test.count=1", "-test.v",
		"-compare-out=" + out, fmt.Sprintf("-compare-runs=%d", *compareRuns)})
	if err != nil {
		t.Fatal(err)
	}
	runErr := cmd.Run()
	if p := findPanic(v.Serial()); p != "" {
		t.Fatalf("%s: the serial log shows a panic:\n%s", image, p)
	}
	if runErr != nil {
		t.Fatalf("%s: measurement: %v\nguest log:\n%s", image, runErr, tail(v.Log(), 4000))
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var s samples
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	if len(s.Up) == 0 {
		t.Fatalf("%s: no samples", image)
	}
	s.IdleCPU = idleCPUPct
	return s
}

// TestCompareMeasure runs inside a namespace TestCompare made: the
// measurements of TestSystemBenchmark, -compare-runs times, samples to
// -compare-out.
func TestCompareMeasure(t *testing.T) {
	if *compareOut == "" {
		t.Skip("SKIP: run by TestCompare (-args -compare)")
	}
	needGuest(t)
	s := samples{NIC: guestNIC}
	before, err := fetchStats()
	if err != nil {
		t.Fatalf("GET /stats: %v", err)
	}
	for r := range *compareRuns {
		d, err := upload(32 * mib)
		if err != nil {
			t.Fatalf("run %d: upload: %v", r, err)
		}
		s.Up = append(s.Up, mbps(32*mib, d))
		if d, err = download(32 * mib); err != nil {
			t.Fatalf("run %d: download: %v", r, err)
		}
		s.Down = append(s.Down, mbps(32*mib, d))
		p50, p99, err := tcpRR(1000, 64)
		if err != nil {
			t.Fatalf("run %d: TCP request/response: %v", r, err)
		}
		s.TCP50, s.TCP99 = append(s.TCP50, p50), append(s.TCP99, p99)
		p50, p99, _, err = udpRR(1000, 64)
		if err != nil {
			t.Fatalf("run %d: UDP request/response: %v", r, err)
		}
		s.UDP50, s.UDP99 = append(s.UDP50, p50), append(s.UDP99, p99)
		c, err := connRate(200)
		if err != nil {
			t.Fatalf("run %d: connections: %v", r, err)
		}
		s.CPS = append(s.CPS, c)
		t.Logf("run %d: up %.1f down %.1f Mbit/s, TCP RR p50 %v, UDP RR p50 %v, %.0f conn/s", r, s.Up[r], s.Down[r], s.TCP50[r], s.UDP50[r], c)
	}
	after, err := fetchStats()
	if err != nil {
		t.Fatalf("GET /stats: %v", err)
	}
	delta := func(path string) float64 {
		a, ok1 := stat(after, path)
		b, ok2 := stat(before, path)
		if !ok1 || !ok2 {
			return 0
		}
		return a - b
	}
	s.Mallocs, s.AllocBytes = delta("go.mallocs"), delta("go.total_alloc")
	// tamanet: the driver's ring counters; the baseline: the glue's.
	s.Frames = delta("nic.rx.packets") + delta("nic.tx.packets") + delta("glue.rx_frames") + delta("glue.tx_frames")
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(*compareOut, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// idleCPU finds the QEMU process running image (by its -kernel argument)
// and returns the CPU time it used over d, in percent of one core.
func idleCPU(image string, d time.Duration) (float64, error) {
	pid, err := qemuPID(image)
	if err != nil {
		return 0, err
	}
	t0, err := procCPU(pid)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	time.Sleep(d)
	t1, err := procCPU(pid)
	if err != nil {
		return 0, err
	}
	return 100 * (t1 - t0).Seconds() / time.Since(start).Seconds(), nil
}

// qemuPID returns the QEMU process running image. Two soaks or benchmarks
// of one tree boot the same image path: the one in this process's network
// namespace (the guest the tests in it talk to) wins.
func qemuPID(image string) (int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	self, _ := os.Readlink("/proc/self/ns/net")
	first := 0
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if len(args) == 0 || !strings.HasPrefix(filepath.Base(args[0]), "qemu-system") {
			continue
		}
		for i := 0; i+1 < len(args); i++ {
			if args[i] == "-kernel" && args[i+1] == image {
				if ns, _ := os.Readlink(filepath.Join("/proc", e.Name(), "ns", "net")); ns != "" && ns == self {
					return pid, nil
				}
				if first == 0 {
					first = pid
				}
			}
		}
	}
	if first == 0 {
		return 0, fmt.Errorf("no QEMU process with -kernel %s", image)
	}
	return first, nil
}

// procCPU returns a process's user + system CPU time from /proc/PID/stat.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the parenthesised command name; utime and stime are
	// fields 14 and 15 of the whole line, in clock ticks (USER_HZ, 100).
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("bad /proc stat times")
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}
