package nictest

import (
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// MinRuns is the fewest runs NoAllocs accepts: one allocation in this many
// packets must show.
const MinRuns = 1000

// allocsMu serializes Allocs: each sets the process-wide GOMAXPROCS and
// MemProfileRate, and one restoring them while another counts would hide
// allocations from the other's profile.
var allocsMu sync.Mutex

// Allocs calls f once to warm up, then runs more times, and returns the
// number of heap allocations those runs made in total.
//
// Unlike testing.AllocsPerRun, which divides the count by the runs as
// integers (so one allocation every second run reads as zero), nothing is
// rounded away. Like it, Allocs sets GOMAXPROCS to 1 while counting, so no
// other goroutine runs in parallel with f.
//
// The count, runtime.MemStats.Mallocs, is process-wide: what another
// goroutine allocates when it runs in between (f blocks, or the scheduler
// preempts it), such as a timer of an earlier test, is in it too. So when
// it is not zero, Allocs counts again from a memory profile recorded at every
// allocation during the runs, and keeps only the allocations made under a
// call of f; allocations of goroutines f wakes (rather than calls into)
// are then not f's. Whatever the profile cannot tell apart still counts as
// f's: stacks it may have cut short, and tiny allocations packed into an
// existing block, which it never records. The result is never more than
// the process-wide count. This costs a GC per call, and two more when
// there were allocations.
func Allocs(runs int, f func()) uint64 {
	allocsMu.Lock()
	defer allocsMu.Unlock()
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	rate := runtime.MemProfileRate
	defer func() { runtime.MemProfileRate = rate }()

	// MemProfile is cumulative and shows allocations only as of the last
	// completed GC. Stop recording (the runtime records the first
	// allocation after a change of the rate whatever the rate: make it
	// here, not in f) and publish all recorded so far, so that the profile
	// after the runs differs from this snapshot only by what they
	// recorded, and the warm-up call is never counted, not even from a
	// cut-short stack. The warm-up runs after the GC, which empties
	// sync.Pools, to refill them before the runs.
	runtime.MemProfileRate = 0
	rateSink = new([2]*byte)
	runtime.GC()
	before := profiled()
	f()

	tiny := []metrics.Sample{{Name: tinyAllocsMetric}}
	metrics.Read(tiny) // the first read in a process allocates
	runtime.MemProfileRate = 1
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	// After ReadMemStats, which flushes the per-P tiny counts: f's runs
	// have not started, so a later flush can only add others'.
	metrics.Read(tiny)
	tiny0 := tiny[0].Value
	for i := 0; i < runs; i++ {
		callCounted(f)
	}
	runtime.ReadMemStats(&m1)
	metrics.Read(tiny)
	tiny1 := tiny[0].Value
	runtime.MemProfileRate = rate

	n := m1.Mallocs - m0.Mallocs
	if n == 0 || countedLo == countedHi ||
		tiny0.Kind() != metrics.KindUint64 || tiny1.Kind() != metrics.KindUint64 {
		return n // none, or no way to tell whose
	}
	// Two cycles: MemProfile may lag that many behind.
	runtime.GC()
	runtime.GC()
	own := profiled() - before + (tiny1.Uint64() - tiny0.Uint64())
	return min(n, own)
}

// tinyAllocsMetric counts tiny allocations packed into an existing block:
// runtime.MemStats.Mallocs has them, the memory profile does not.
const tinyAllocsMetric = "/gc/heap/tiny/allocs:objects"

// rateSink takes the allocation that makes the runtime see a new
// MemProfileRate.
var rateSink *[2]*byte

// callCounted calls f. It is never inlined, so its frame in a recorded
// stack marks an allocation made under f during the counted runs.
//
//go:noinline
func callCounted(f func()) {
	f()
}

// countedLo and countedHi bound callCounted's code: a return address pc
// in a stack is a call from it if countedLo <= pc-1 < countedHi.
var countedLo, countedHi = countedCode()

func countedCode() (lo, hi uintptr) {
	var pc [1]uintptr
	callCounted(func() { runtime.Callers(2, pc[:]) })
	fn := runtime.FuncForPC(pc[0] - 1)
	if fn == nil {
		return 0, 0
	}
	lo, hi = fn.Entry(), pc[0]-1
	for hi-lo < 1<<16 {
		if g := runtime.FuncForPC(hi); g == nil || g.Entry() != lo {
			break
		}
		hi++
	}
	return lo, hi
}

// profiled sums the allocations of every memory profile record that may be
// one made under callCounted.
func profiled() uint64 {
	n, _ := runtime.MemProfile(nil, true)
	var recs []runtime.MemProfileRecord
	for {
		recs = make([]runtime.MemProfileRecord, n+n/4+16)
		var ok bool
		if n, ok = runtime.MemProfile(recs, true); ok {
			recs = recs[:n]
			break
		}
	}
	var sum uint64
	for i := range recs {
		if counted(recs[i].Stack()) {
			sum += uint64(recs[i].AllocObjects)
		}
	}
	return sum
}

// counted reports whether a recorded stack has callCounted's frame, or
// may have lost it: a record keeps only the innermost recordDepth frames.
// (A stack that does not end at runtime.goexit is no sign of that: the
// scheduler runs timers, which start goroutines, on its own stack.)
func counted(stk []uintptr) bool {
	if len(stk) >= recordDepth {
		return true
	}
	for _, pc := range stk {
		if pc-1 >= countedLo && pc-1 < countedHi {
			return true
		}
	}
	return false
}

// recordDepth is the most frames a memory profile record keeps: as many as
// its Stack0 holds, or fewer if GODEBUG, read by the runtime at start,
// lowers profstackdepth.
var recordDepth = profileDepth(os.Getenv("GODEBUG"))

func profileDepth(godebug string) int {
	depth := 128 // the runtime's default
	for _, kv := range strings.Split(godebug, ",") {
		if v, ok := strings.CutPrefix(kv, "profstackdepth="); ok {
			if n, err := strconv.ParseInt(v, 10, 32); err == nil {
				depth = int(n)
			}
		}
	}
	return max(0, min(depth, len(runtime.MemProfileRecord{}.Stack0)))
}

// NoAllocs fails t unless runs calls of f, after one warm-up call, make no
// heap allocation at all. Each call should move at least one packet, and
// runs must be at least MinRuns. what names the path in the failure.
//
// Under the race detector allocation counts mean nothing (sync.Pool, which
// gVisor's buffers sit on, drops items at random there), so the test is
// skipped with that reason; `make test` runs these tests without -race.
func NoAllocs(t testing.TB, runs int, what string, f func()) {
	t.Helper()
	if raceEnabled {
		t.Skip("allocation counts need a build without -race")
	}
	if runs < MinRuns {
		t.Fatalf("%s: %d runs: allocation checks need at least %d", what, runs, MinRuns)
		return
	}
	if n := Allocs(runs, f); n != 0 {
		t.Errorf("%s: %d heap allocations in %d runs, want none", what, n, runs)
	}
}
