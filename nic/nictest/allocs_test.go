package nictest

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
)

var sink *[64]byte

// everyN returns a function that allocates once on every n-th call, the
// first of them n calls after the warm-up call.
func everyN(n int) func() {
	calls := 0
	return func() {
		if calls > 0 && calls%n == 0 {
			sink = new([64]byte)
		}
		calls++
	}
}

// recorder is a testing.TB that keeps failures instead of failing.
type recorder struct {
	testing.TB
	failed []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.failed = append(r.failed, fmt.Sprintf(format, args...))
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = append(r.failed, fmt.Sprintf(format, args...))
}

func TestAllocsCountsExactly(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts need a build without -race")
	}
	for _, c := range []struct{ every, runs, want int }{
		{1000, 1000, 1},
		{2, 1000, 500},
		{1, 1000, 1000},
	} {
		// testing.AllocsPerRun reports the first two as 0 and 0: it
		// divides the count by the runs as integers.
		if got := Allocs(c.runs, everyN(c.every)); got != uint64(c.want) {
			t.Errorf("one allocation every %d calls, %d runs: counted %d, want %d", c.every, c.runs, got, c.want)
		}
	}
}

// TestNoAllocsOneIn1000: a path that allocates once in 1000 packets fails
// the check; one that never allocates passes it.
func TestNoAllocsOneIn1000(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts need a build without -race")
	}
	r := &recorder{TB: t}
	NoAllocs(r, 1000, "one in 1000", everyN(1000))
	if len(r.failed) != 1 || !strings.Contains(r.failed[0], "1 heap allocations in 1000 runs") {
		t.Errorf("one allocation in 1000 runs: failures %q, want one reporting it", r.failed)
	}

	r = &recorder{TB: t}
	NoAllocs(r, 1000, "none", func() {})
	if len(r.failed) != 0 {
		t.Errorf("allocation-free path failed: %q", r.failed)
	}

	r = &recorder{TB: t}
	NoAllocs(r, MinRuns-1, "short", func() {})
	if len(r.failed) != 1 || !strings.Contains(r.failed[0], "at least 1000") {
		t.Errorf("%d runs accepted: failures %q", MinRuns-1, r.failed)
	}
}

// deep calls alloc under depth more frames of its own.
//
//go:noinline
func deep(depth int, alloc func()) {
	if depth == 0 {
		alloc()
		return
	}
	deep(depth-1, alloc)
}

var tinySink *uint32

// TestAllocsCountsOwn: every allocation under f counts, however deep in
// its calls (40 frames cut the recorded stack short) and also when tiny
// ones are packed into a shared block.
func TestAllocsCountsOwn(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts need a build without -race")
	}
	checkCountsOwn(t)
}

const shallowProfile = "profstackdepth=12"

// TestAllocsCountsOwnShallowProfile: so they do when GODEBUG makes the
// profile keep fewer frames than a record holds. The test runs itself in
// a child process started with that setting.
func TestAllocsCountsOwnShallowProfile(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts need a build without -race")
	}
	if os.Getenv("GODEBUG") == shallowProfile {
		if recordDepth != 12 {
			t.Fatalf("GODEBUG=%s: record depth %d, want 12", shallowProfile, recordDepth)
		}
		checkCountsOwn(t)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestAllocsCountsOwnShallowProfile$", "-test.count=1")
	cmd.Env = append(os.Environ(), "GODEBUG="+shallowProfile)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("GODEBUG=%s: %v\n%s", shallowProfile, err, out)
	}
}

func TestProfileDepth(t *testing.T) {
	for godebug, want := range map[string]int{
		"":                                       32,
		"profstackdepth=16":                      16,
		"x=1,profstackdepth=8,profstackdepth=64": 32,
		"profstackdepth=8,profstackdepth=x":      8,
		"profstackdepth=-1":                      0,
	} {
		if got := profileDepth(godebug); got != want {
			t.Errorf("GODEBUG=%q: depth %d, want %d", godebug, got, want)
		}
	}
}

func checkCountsOwn(t *testing.T) {
	t.Helper()
	const runs = 1000
	for _, c := range []struct {
		name  string
		depth int
		alloc func()
	}{
		{"direct", 0, func() { sink = new([64]byte) }},
		{"10 calls deep", 10, func() { sink = new([64]byte) }},
		{"40 calls deep", 40, func() { sink = new([64]byte) }},
		{"tiny", 0, func() { tinySink = new(uint32) }},
		{"tiny, 40 calls deep", 40, func() { tinySink = new(uint32) }},
	} {
		if got := Allocs(runs, func() { deep(c.depth, c.alloc) }); got != runs {
			t.Errorf("%s: one allocation per call, %d runs: counted %d", c.name, runs, got)
		}
	}
}

// stray starts a goroutine that allocates in a loop, yielding after each
// allocation, and returns the count of its allocations so far and a stop
// function that ends it.
func stray() (made func() int64, stop func()) {
	var n atomic.Int64
	var done atomic.Bool
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		for !done.Load() {
			straySink = new([64]byte)
			n.Add(1)
			runtime.Gosched()
		}
	}()
	return n.Load, func() {
		done.Store(true)
		<-exited
	}
}

var straySink *[64]byte

// yielding returns an f for Allocs that calls own, then yields, so that
// under GOMAXPROCS(1) other goroutines run during the counted runs, and a
// check that one made allocations while they did.
func yielding(t *testing.T, made func() int64, own func()) (f func(), check func()) {
	calls := 0
	var first, last int64
	f = func() {
		if calls == 1 { // the first counted run
			first = made()
		}
		calls++
		own()
		runtime.Gosched()
		last = made()
	}
	return f, func() {
		t.Helper()
		if last == first {
			t.Fatalf("the other goroutine allocated nothing during the counted runs")
		}
	}
}

var bigSink *[64 << 10]byte

// allocDeep allocates 16 MiB in 64 KiB blocks 40 calls deep: enough that
// the default MemProfileRate records some, with stacks cut short.
func allocDeep() {
	for range 256 {
		deep(40, func() { bigSink = new([64 << 10]byte) })
	}
}

// TestAllocsIgnoresOtherGoroutines: allocations another goroutine makes
// while f runs are not f's, whether f allocates nothing or once per call;
// nor are those of the warm-up call or from before Allocs, even where
// their recorded stacks are cut short.
func TestAllocsIgnoresOtherGoroutines(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts need a build without -race")
	}
	const runs = 1000
	for _, c := range []struct {
		name   string
		before func()
		own    func(call int)
		want   uint64
	}{
		{"f allocates nothing", nil, func(int) {}, 0},
		{"f allocates once per call", nil, func(int) { sink = new([64]byte) }, runs},
		{"f allocates deep in the warm-up only", nil, func(call int) {
			if call == 0 {
				allocDeep()
			}
		}, 0},
		{"f allocates nothing, after deep allocations", allocDeep, func(int) {}, 0},
	} {
		if c.before != nil {
			c.before()
		}
		made, stop := stray()
		call := 0
		f, check := yielding(t, made, func() { c.own(call); call++ })
		got := Allocs(runs, f)
		stop()
		check()
		if got != c.want {
			t.Errorf("%s, another goroutine allocating: counted %d, want %d", c.name, got, c.want)
		}
	}
}
