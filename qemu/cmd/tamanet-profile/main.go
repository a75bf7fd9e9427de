// Command tamanet-profile samples a tamanet guest under QEMU and writes a
// pprof CPU profile (make profile). It boots the image with QEMU's gdb stub
// on a unix socket, runs a workload against it from the namespace, and
// meanwhile stops the guest -hz times a second to read its registers and
// stack, which it unwinds and symbolizes with the unstripped twin of the
// image (-symbols: same build without -s -w, checked to hold the same code).
//
//	go run ./qemu/cmd/tamanet-profile -target microvm -image build/tamanet-microvm \
//	    -symbols build/tamanet-microvm.sym -workload tx -seconds 20 -o prof.pb.gz
//	go tool pprof -top prof.pb.gz
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/tamanet/tamanet/internal/netns"
	"github.com/tamanet/tamanet/qemu/profile"
	"github.com/tamanet/tamanet/qemu/vm"
)

func main() { os.Exit(run()) }

func run() int {
	target := flag.String("target", "microvm", "board: microvm or mx6ullevk")
	image := flag.String("image", "", "firmware image (default build/tamanet-TARGET)")
	symbols := flag.String("symbols", "", "the unstripped twin of the image (default IMAGE.sym)")
	accel := flag.String("accel", "auto", "accelerator: auto, kvm or tcg")
	workload := flag.String("workload", "tx", "tx (host reads chargen), rx (host writes discard), rr (TCP echo round trips) or idle")
	seconds := flag.Float64("seconds", 20, "how long to sample")
	hz := flag.Int("hz", 100, "samples a second (1-1000)")
	depth := flag.Int("depth", 64, "most stack entries a sample records")
	baseline := flag.Float64("baseline", 5, "seconds of the workload without sampling after the sampled run, to measure the sampling's cost (0: none)")
	out := flag.String("o", "", "profile file (default build/profile-TARGET-WORKLOAD.pb.gz)")
	bootTimeout := flag.Duration("boot-timeout", 90*time.Second, "how long to wait for the ready line")
	flag.Parse()

	t, err := vm.ParseTarget(*target)
	if err != nil {
		return fail(err)
	}
	a, err := vm.ParseAccel(*accel)
	if err != nil {
		return fail(err)
	}
	if *hz < 1 || *hz > 1000 || *seconds <= 0 || *depth < 1 {
		return fail(errors.New("-hz must be 1-1000, -seconds and -depth positive"))
	}
	if *image == "" {
		*image = "build/tamanet-" + *target
	}
	if *symbols == "" {
		*symbols = *image + ".sym"
	}
	if *out == "" {
		*out = fmt.Sprintf("build/profile-%s-%s.pb.gz", *target, *workload)
	}
	if os.Geteuid() != 0 {
		return fail(errors.New("needs root to create the network namespace and tap device"))
	}

	// The twin must be the image's code at the image's addresses.
	img, err := profile.Open(*image)
	if err != nil {
		return fail(err)
	}
	bin, err := profile.Open(*symbols)
	if err != nil {
		return fail(err)
	}
	defer bin.Close()
	if err := img.SameCode(bin); err != nil {
		return fail(fmt.Errorf("%s is not the unstripped twin of %s: %w", *symbols, *image, err))
	}
	img.Close()
	if bin.Arch != t.Arch() {
		return fail(fmt.Errorf("%s is %s, target %s is %s", *image, bin.Arch, t, t.Arch()))
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()

	dir, err := os.MkdirTemp("", "tamanet-profile")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "gdb")
	v, err := vm.Start(ctx, vm.Options{Target: t, Image: *image, Accel: a, GDB: sock})
	if err != nil {
		return fail(err)
	}
	defer v.Close()
	acc, note := v.Accel()
	logf("namespace %s, accel %s (%s)", v.Netns().Name, acc, note)
	ready, err := v.WaitReady(ctx, *bootTimeout)
	if err != nil {
		return fail(err)
	}
	guest := ready.Addr().String()
	logf("guest up at %s (nic %s)", guest, ready.NIC)

	c, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		return fail(fmt.Errorf("gdb stub: %w", err))
	}
	g := profile.NewGDB(c, 10*time.Second)
	defer g.Close()
	// QEMU stops the guest when a debugger connects: ask why, turn acks
	// off, and let it run.
	if err := g.StopStatus(); err != nil {
		return fail(err)
	}
	if err := g.NoAck(); err != nil {
		return fail(err)
	}
	if g.Acking() {
		logf("the stub keeps acknowledging (no QStartNoAckMode)")
	}
	if err := g.Continue(); err != nil {
		return fail(err)
	}

	load, err := profile.StartLoad(*workload, v.Netns().Name, guest)
	if err != nil {
		return fail(err)
	}
	// Past the connection's slow start before measuring, as runLoad.
	sleep(ctx, warmup)
	before := load.Snapshot()
	var st profile.Stacks
	stats, serr := profile.Sample(ctx, g, bin, &st, *hz, secs(*seconds), *depth)
	r := load.Snapshot().Since(before)
	_, lerr := load.Stop()
	if serr != nil {
		return fail(fmt.Errorf("sampling: %w", serr))
	}
	// The stub takes packets only from a stopped guest: a byte that
	// arrives while it runs only stops it.
	if err := g.Stop(); err != nil {
		logf("stop: %v", err)
	} else if err := g.Detach(); err != nil {
		logf("detach: %v", err)
	}
	if lerr != nil {
		logf("%v (the profile is written all the same)", lerr)
	}
	g.Close()
	logf("with sampling:    %v", r)
	// The comparison runs after the sampled run, not before: a guest
	// just booted is not yet at its pace (mcimx6ul-evk's first seconds
	// of bulk were several times slower than the rest).
	if *baseline > 0 && *workload != "idle" {
		var s0, s1 map[string]float64
		var err0, err1 error
		b, err := runLoad(ctx, *workload, v, guest, secs(*baseline), func(end bool) {
			if end {
				s1, err1 = guestStats(v.Netns().Name, guest)
			} else {
				s0, err0 = guestStats(v.Netns().Name, guest)
			}
		})
		if err != nil {
			logf("without sampling: %v", err)
		} else {
			logf("without sampling: %v", b)
			// What the guest did per operation, from /stats (which the
			// two fetches add a little to).
			if err := errors.Join(err0, err1); err != nil {
				logf("/stats: %v", err)
			} else if b.Ops > 0 {
				logf("per %s operation (round trip, read or write), counted by the guest:", *workload)
				for _, k := range perOpStats {
					logf("  %-22s %8.2f", k, (s1[k]-s0[k])/float64(b.Ops))
				}
			}
		}
	}
	logf("%d samples (%d lost) in %v, %.0f/s; guest stopped %.1f%% of the time, %v a sample; stack depth mean %.1f, max %d",
		stats.Samples, stats.Errors, stats.Elapsed.Round(time.Millisecond), float64(stats.Samples)/stats.Elapsed.Seconds(),
		100*stats.StoppedShare(), perSample(stats), float64(stats.Frames)/float64(max(stats.Samples, 1)), stats.Depth)
	logf("%.1f%% of the stacks unwound to their top (goexit, mstart) or a stack switch (mcall, systemstack)", 100*float64(stats.Complete)/float64(max(stats.Samples, 1)))
	logf("a sample: %v for the stop reply, %v reading registers and %.1f stack blocks", per(stats.Halting, stats.Samples),
		per(stats.Reading, stats.Samples), float64(stats.Reads)/float64(max(stats.Samples, 1)))

	// A sample stands for the mean time between samples, which is longer
	// than 1/hz when the host is slow to stop the guest: then the
	// profile's total is the time sampled.
	period := time.Second / time.Duration(*hz)
	if stats.Samples > 0 {
		period = max(period, stats.Elapsed/time.Duration(stats.Samples))
	}
	p := st.Profile(bin, *symbols, period, stats.Elapsed)
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		return fail(err)
	}
	f, err := os.Create(*out)
	if err != nil {
		return fail(err)
	}
	if err := profile.WriteProfile(f, p); err != nil {
		f.Close()
		return fail(err)
	}
	if err := f.Close(); err != nil {
		return fail(err)
	}
	logf("wrote %s: go tool pprof -top %s", *out, *out)
	return 0
}

// warmup is how long a workload runs before it is measured.
const warmup = time.Second

// runLoad runs workload name for warmup, then measures it for d.
func runLoad(ctx context.Context, name string, v *vm.VM, guest string, d time.Duration, at func(end bool)) (profile.Result, error) {
	l, err := profile.StartLoad(name, v.Netns().Name, guest)
	if err != nil {
		return profile.Result{}, err
	}
	sleep(ctx, warmup)
	at(false)
	before := l.Snapshot()
	sleep(ctx, d)
	r := l.Snapshot().Since(before)
	at(true)
	_, err = l.Stop()
	return r, err
}

// perOpStats are the /stats counters the unsampled run reports per
// operation: how often the poll loop stepped, found work, slept and was
// woken, read the clock and notified the device, and what crossed it.
var perOpStats = []string{"poll.steps", "poll.busy", "poll.sleeps", "poll.wakes", "poll.clock_reads",
	"nic.tx.kicks", "nic.rx.kicks", "endpoint.rx.packets", "endpoint.tx.packets", "endpoint.tx_held"}

// guestStats fetches the guest's /stats and returns its numeric leaves by
// dotted path. The connection is dialled inside namespace ns, on the
// thread netns.Do runs on (an http.Client would dial from another
// goroutine, outside the namespace); the request is made on it after.
func guestStats(ns, guest string) (map[string]float64, error) {
	var c net.Conn
	err := netns.Do(ns, func() error {
		var err error
		c, err = net.DialTimeout("tcp", net.JoinHostPort(guest, "80"), 10*time.Second)
		return err
	})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET /stats HTTP/1.0\r\nHost: "+guest+"\r\n\r\n"); err != nil {
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/stats: %s", resp.Status)
	}
	var v map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return nil, err
	}
	out := map[string]float64{}
	flatten("", v, out)
	return out, nil
}

func flatten(prefix string, v any, out map[string]float64) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if prefix != "" {
				k = prefix + "." + k
			}
			flatten(k, e, out)
		}
	case float64:
		out[prefix] = x
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func perSample(s profile.Stats) time.Duration { return per(s.Stopped, s.Samples) }

func per(d time.Duration, n int) time.Duration {
	if n == 0 {
		return 0
	}
	return (d / time.Duration(n)).Round(time.Microsecond)
}

func secs(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "tamanet-profile: "+format+"\n", args...)
}

func fail(err error) int {
	fmt.Fprintf(os.Stderr, "tamanet-profile: %v\n", err)
	return 1
}
