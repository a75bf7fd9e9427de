package nictest

import (
	"runtime"
	"testing"
)

// MinRuns is the fewest runs NoAllocs accepts: one allocation in this many
// packets must show.
const MinRuns = 1000

// Allocs calls f once to warm up, then runs more times, and returns the
// number of heap allocations those runs made in total.
//
// Unlike testing.AllocsPerRun, which divides the count by the runs as
// integers (so one allocation every second run reads as zero), nothing is
// rounded away. Like it, Allocs sets GOMAXPROCS to 1 while counting, so no
// other goroutine runs in parallel with f; one that runs in between (f
// blocks, or the scheduler preempts it) and allocates is counted too,
// which can only make a check stricter.
func Allocs(runs int, f func()) uint64 {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	f()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := 0; i < runs; i++ {
		f()
	}
	runtime.ReadMemStats(&after)
	return after.Mallocs - before.Mallocs
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
