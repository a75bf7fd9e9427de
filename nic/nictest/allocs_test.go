package nictest

import (
	"fmt"
	"strings"
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
