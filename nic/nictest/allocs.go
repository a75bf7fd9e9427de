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
	// Allocs counts the whole process: a goroutine that runs between two
	// calls of f (a device model's wire, a timer of an earlier test's
	// stack, the testing package) and allocates once is counted too. So
	// a count that is not zero is taken again, up to Attempts times in
	// all, and the check fails only if every count is: an allocation on
	// f's own path shows in every count (at least runs/2 for one every
	// second packet), a stray one from elsewhere does not.
	var counts []uint64
	for range Attempts {
		n := Allocs(runs, f)
		if n == 0 {
			return
		}
		counts = append(counts, n)
	}
	t.Errorf("%s: heap allocations in %d runs, counted %d times: %v, want none", what, runs, Attempts, counts)
}

// Attempts is how many times NoAllocs counts before it fails.
const Attempts = 3
