package e2e

// tamanet against a Linux guest on the same QEMU machine and NIC, measured
// by the same client (TestCompareMeasure) in the same run:
//
//	go test -count=1 -v -timeout 60m -run '^TestLinuxCompare$' ./qemu/e2e -args -linux -linux-target microvm [-linux-rounds 3] [-compare-runs 2] [-image-b IMAGE -label-b LABEL] [-accel tcg]
//
// The Linux guest is Debian's kernel, busybox and cmd/linuxguest (the
// firmware's services) assembled by qemu/linuxguest, cached after the
// first run. The images boot alternately, -linux-rounds times, so that
// all see the same host load; each boot measures -compare-runs times, and
// the table shows medians over all of them. On microvm a second Linux
// guest runs with QEMU's virtio-net offloads off; -image-b adds another
// tamanet image (make bench: the OFFLOADS=off build, when the tree has
// that switch), for an offloads on/off A/B of each.

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/tamanet/tamanet/internal/prereq"
	"github.com/tamanet/tamanet/qemu/linuxguest"
	"github.com/tamanet/tamanet/qemu/vm"
)

var (
	linuxFlag   = flag.Bool("linux", false, "run TestLinuxCompare: tamanet against a Linux guest on -linux-target")
	linuxTarget = flag.String("linux-target", "microvm", "TestLinuxCompare's target: microvm or mx6ullevk")
	linuxRounds = flag.Int("linux-rounds", 3, "TestLinuxCompare: boots of each image, alternating")
	linuxImage  = flag.String("linux-image", "", "TestLinuxCompare: the tamanet image (default: make build TARGET=...)")
	imageB      = flag.String("image-b", "", "TestLinuxCompare: a second tamanet image (e.g. make OFFLOADS=off), measured alongside")
	labelB      = flag.String("label-b", "tamanet B", "TestLinuxCompare: the name of -image-b in the table")
)

// virtioOffloadsOff turns off every offload QEMU's virtio-net device
// offers (virtio 1.2 §5.1.3: VIRTIO_NET_F_CSUM, GUEST_CSUM, HOST_TSO4/6,
// GUEST_TSO4/6, MRG_RXBUF), for the second Linux reference.
const virtioOffloadsOff = "csum=off,guest_csum=off,host_tso4=off,host_tso6=off,guest_tso4=off,guest_tso6=off,mrg_rxbuf=off"

// linuxConfig is one column of the table.
type linuxConfig struct {
	name string
	o    vm.Options
	nic  string // the ready line's nic=
	s    samples
}

func TestLinuxCompare(t *testing.T) {
	if !*linuxFlag {
		t.Skip("SKIP: the Linux comparison runs only with -args -linux (make bench)")
	}
	if os.Getenv(envInner) == "1" {
		t.Skip("SKIP: -linux boots its own guests: run it without -target/-image/-bench")
	}
	target, err := vm.ParseTarget(*linuxTarget)
	if err != nil {
		t.Fatal(err)
	}
	if reason := prerequisites(target, *linuxImage == ""); reason != "" {
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

	image := *linuxImage
	if image == "" {
		if image, err = buildImage(ctx, target); err != nil {
			t.Fatal(err)
		}
	}
	abs := func(p string) string {
		if filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(root, p)
	}
	g, err := linuxguest.Build(ctx, linuxguest.Options{Target: string(target), Root: root, Log: os.Stdout})
	if err != nil {
		t.Fatal(err)
	}
	linux := &vm.Linux{Initrd: g.Initrd, Append: g.Append, DTB: g.DTB, SecondENET: g.SecondNIC}
	linuxNIC := "linux-virtio_net"
	if target == vm.MX6ULLEVK {
		linuxNIC = "linux-fec"
	}

	cfgs := []*linuxConfig{{name: "tamanet", o: vm.Options{Target: target, Image: abs(image), Accel: accel}, nic: target.NIC()}}
	if *imageB != "" {
		cfgs = append(cfgs, &linuxConfig{name: *labelB, o: vm.Options{Target: target, Image: abs(*imageB), Accel: accel}, nic: target.NIC()})
	}
	cfgs = append(cfgs, &linuxConfig{name: "Linux " + g.Version, o: vm.Options{Target: target, Image: g.Kernel, Accel: accel, Linux: linux}, nic: linuxNIC})
	linuxOff := -1
	if target == vm.Microvm {
		off := *linux
		off.NICOptions = virtioOffloadsOff
		linuxOff = len(cfgs)
		cfgs = append(cfgs, &linuxConfig{name: "Linux, offloads off", o: vm.Options{Target: target, Image: g.Kernel, Accel: accel, Linux: &off}, nic: linuxNIC})
	}
	linuxOn := len(cfgs) - 1
	if linuxOff >= 0 {
		linuxOn = linuxOff - 1
	}

	for r := range *linuxRounds {
		for _, c := range cfgs {
			start := time.Now()
			s := measureVM(t, ctx, c.o, c.nic, false)
			c.s.Up, c.s.Down = append(c.s.Up, s.Up...), append(c.s.Down, s.Down...)
			c.s.TCP50, c.s.TCP99 = append(c.s.TCP50, s.TCP50...), append(c.s.TCP99, s.TCP99...)
			c.s.UDP50, c.s.UDP99 = append(c.s.UDP50, s.UDP50...), append(c.s.UDP99, s.UDP99...)
			c.s.CPS = append(c.s.CPS, s.CPS...)
			fmt.Printf("linux-compare: round %d/%d, %s: up %.1f down %.1f Mbit/s (%v)\n", r+1, *linuxRounds, c.name, medianF(s.Up), medianF(s.Down), time.Since(start).Round(time.Second))
		}
	}
	tamanetOff := -1
	if *imageB != "" {
		tamanetOff = 1
	}
	printLinuxTable(os.Stdout, string(target), cfgs, linuxOn, linuxOff, tamanetOff)
}

// linuxRows are the table's measurements: name, value of a column, unit.
var linuxRows = []struct {
	name string
	unit string
	prec int // decimals
	val  func(s samples) float64
}{
	{"TCP host→guest (upload to discard, 32 MiB)", "Mbit/s", 1, func(s samples) float64 { return medianF(s.Up) }},
	{"TCP guest→host (download from chargen, 32 MiB)", "Mbit/s", 1, func(s samples) float64 { return medianF(s.Down) }},
	{"TCP echo 64 B round trip p50", "µs", 0, func(s samples) float64 { return us(medianD(s.TCP50)) }},
	{"TCP echo 64 B round trip p99", "µs", 0, func(s samples) float64 { return us(medianD(s.TCP99)) }},
	{"UDP echo 64 B round trip p50", "µs", 0, func(s samples) float64 { return us(medianD(s.UDP50)) }},
	{"UDP echo 64 B round trip p99", "µs", 0, func(s samples) float64 { return us(medianD(s.UDP99)) }},
	{"TCP connect + 1-byte echo + close", "conn/s", 0, func(s samples) float64 { return medianF(s.CPS) }},
}

// printLinuxTable prints each column's medians, the ratio of tamanet (the
// first column) to Linux (column linuxOn) and, where a column with offloads
// off exists (linuxOff for Linux, tamanetOff for tamanet; -1: none), the
// on/off A/B.
func printLinuxTable(w io.Writer, target string, cfgs []*linuxConfig, linuxOn, linuxOff, tamanetOff int) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	runs := len(cfgs[0].s.Up)
	fmt.Fprintf(tw, "\ntamanet vs Linux on %s (QEMU, same options), median of %d runs\t", target, runs)
	for _, c := range cfgs {
		fmt.Fprintf(tw, "%s\t", c.name)
	}
	fmt.Fprintf(tw, "tamanet/Linux\t\n")
	for _, r := range linuxRows {
		fmt.Fprintf(tw, "%s\t", r.name)
		for _, c := range cfgs {
			fmt.Fprintf(tw, "%.*f %s\t", r.prec, r.val(c.s), r.unit)
		}
		fmt.Fprintf(tw, "%.2fx\t\n", r.val(cfgs[0].s)/r.val(cfgs[linuxOn].s))
	}
	tw.Flush()
	fmt.Fprintln(w, "tamanet/Linux: throughput and conn/s above 1, round trips below 1 mean tamanet is ahead")

	var ab []string
	if tamanetOff >= 0 {
		ab = append(ab, fmt.Sprintf("%s/%s", cfgs[0].name, cfgs[tamanetOff].name))
	}
	if linuxOff >= 0 {
		ab = append(ab, fmt.Sprintf("%s/%s", cfgs[linuxOn].name, cfgs[linuxOff].name))
	}
	if len(ab) == 0 {
		return
	}
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "\noffloads on/off A/B on %s\t%s\t\n", target, strings.Join(ab, "\t"))
	for _, r := range linuxRows {
		fmt.Fprintf(tw, "%s\t", r.name)
		if tamanetOff >= 0 {
			fmt.Fprintf(tw, "%.2fx\t", r.val(cfgs[0].s)/r.val(cfgs[tamanetOff].s))
		}
		if linuxOff >= 0 {
			fmt.Fprintf(tw, "%.2fx\t", r.val(cfgs[linuxOn].s)/r.val(cfgs[linuxOff].s))
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
}

// linuxPhase boots the Linux guest on microvm, after the suite's own
// guest, and runs TestLinuxSmoke against it: the guest make bench measures
// tamanet against still boots and answers. It returns the exit code (0
// when the test is not selected or the target is not microvm, where the
// ARM kernel's boot alone takes longer than this phase should).
func linuxPhase(ctx, runCtx context.Context, target vm.Target, accel vm.Accel) int {
	if target != vm.Microvm || !wantDHCP("TestLinuxSmoke") {
		return 0
	}
	failf := func(format string, args ...any) int {
		fmt.Fprintf(os.Stderr, "FAIL: e2e: linux: "+format+"\n", args...)
		return 1
	}
	root, err := prereq.ModuleRoot(".")
	if err != nil {
		return failf("%v", err)
	}
	start := time.Now()
	g, err := linuxguest.Build(ctx, linuxguest.Options{Target: string(target), Root: root, Log: os.Stdout})
	if err != nil {
		return failf("%v", err)
	}
	dir, err := os.MkdirTemp("", "tamanet-e2e-linux-")
	if err != nil {
		return failf("%v", err)
	}
	defer os.RemoveAll(dir)
	serial, err := os.Create(filepath.Join(dir, "serial.log"))
	if err != nil {
		return failf("%v", err)
	}
	defer serial.Close()
	ns, err := runNetns("tamanet-e2e-linux-")
	if err != nil {
		return failf("%v", err)
	}
	v, err := vm.Start(ctx, vm.Options{Target: target, Image: g.Kernel, Accel: accel, Netns: ns, Console: serial,
		Linux: &vm.Linux{Initrd: g.Initrd, Append: g.Append, DTB: g.DTB}})
	if err != nil {
		return failf("%v", err)
	}
	defer v.Close()
	ready, err := v.WaitReady(ctx, *bootTimeout)
	if err != nil {
		return failf("boot: %v", err)
	}
	fmt.Printf("e2e: linux: Linux %s ready %v after the assembly began: ip=%s nic=%s\n", g.Version, time.Since(start).Round(time.Millisecond), ready.Prefix, ready.NIC)
	cmd, err := innerCommand(runCtx, v, ready, serial, g.Kernel, append(os.Args[1:], "-test.run=^TestLinuxSmoke$"), envPhase+"=linux")
	if err != nil {
		return failf("%v", err)
	}
	code := 0
	if err := cmd.Run(); err != nil {
		code = failf("TestLinuxSmoke: %v\n%s", err, tail(v.Log(), 8000))
	}
	if err := v.Close(); err != nil {
		code = failf("cleanup: %v", err)
	}
	return code
}

// TestLinuxSmoke runs against the Linux guest linuxPhase booted: the
// ready line names Linux's driver, and the TCP and UDP echo services and
// /stats answer.
func TestLinuxSmoke(t *testing.T) {
	if os.Getenv(envPhase) != "linux" {
		t.Skip("SKIP: runs in the e2e suite's Linux phase (microvm)")
	}
	needGuest(t)
	if guestNIC != "linux-virtio_net" {
		t.Fatalf("ready line says nic=%s, want linux-virtio_net", guestNIC)
	}
	if _, _, err := tcpRR(10, 64); err != nil {
		t.Fatalf("TCP echo: %v", err)
	}
	if _, _, _, err := udpRR(10, 64); err != nil {
		t.Fatalf("UDP echo: %v", err)
	}
	st := stats(t)
	if rx := mustStat(t, st, "nic.rx.packets"); rx < 20 {
		t.Errorf("/stats: nic.rx.packets %v after 20 echoes", rx)
	}
}

// TestLinuxTable checks the table's ratios: tamanet over the Linux column
// (not over the offloads-off one), and each on/off pair.
func TestLinuxTable(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var d []time.Duration
		for _, x := range v {
			d = append(d, time.Duration(x)*time.Microsecond)
		}
		return d
	}
	col := func(name string, up, down float64, tcp50 int) *linuxConfig {
		return &linuxConfig{name: name, s: samples{
			Up: []float64{up, up / 2, up * 2}, Down: []float64{down}, CPS: []float64{100},
			TCP50: ms(tcp50), TCP99: ms(1000), UDP50: ms(300), UDP99: ms(900),
		}}
	}
	cfgs := []*linuxConfig{col("tamanet", 300, 100, 400), col("tamanet off", 150, 50, 400), col("Linux", 600, 400, 200), col("Linux off", 200, 200, 400)}
	var b strings.Builder
	printLinuxTable(&b, "microvm", cfgs, 2, 3, 1)
	out := b.String()
	row := func(prefix string) []string {
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(strings.TrimSpace(l), prefix) {
				return strings.Fields(strings.TrimPrefix(strings.TrimSpace(l), prefix))
			}
		}
		t.Fatalf("no row %q in:\n%s", prefix, out)
		return nil
	}
	// The first table: four columns, then tamanet/Linux.
	up := row("TCP host→guest (upload to discard, 32 MiB)")
	if len(up) != 9 || up[0] != "300.0" || up[8] != "0.50x" {
		t.Errorf("upload row %q", up)
	}
	if r := row("TCP echo 64 B round trip p50"); r[len(r)-1] != "2.00x" || r[0] != "400" {
		t.Errorf("TCP p50 row %q", r)
	}
	// The A/B table comes second: its rows repeat the names.
	ab := out[strings.Index(out, "offloads on/off A/B"):]
	if !strings.Contains(ab, "tamanet/tamanet off") || !strings.Contains(ab, "Linux/Linux off") {
		t.Errorf("A/B header:\n%s", ab)
	}
	for _, l := range strings.Split(ab, "\n") {
		if f := strings.Fields(l); strings.Contains(l, "guest→host") && strings.Join(f[len(f)-2:], " ") != "2.00x 2.00x" {
			t.Errorf("A/B download row %q", l)
		}
	}
	// Without offloads-off columns there is no A/B table.
	b.Reset()
	printLinuxTable(&b, "mx6ullevk", []*linuxConfig{cfgs[0], cfgs[2]}, 1, -1, -1)
	if strings.Contains(b.String(), "A/B") {
		t.Errorf("A/B table without the columns:\n%s", b.String())
	}
}
