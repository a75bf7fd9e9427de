package microvm

import (
	"math/rand/v2"
	"testing"
)

// edges simulates TSC readings at n edges of a periodHz reference for a
// TSC of hz, each late by a random delay up to maxLate ticks, with the
// edges in skip missed.
func edges(r *rand.Rand, hz, periodHz uint64, n int, maxLate uint64, skip map[int]bool, bigLate map[int]uint64) []uint64 {
	var out []uint64
	base := uint64(123456789)
	for k := 0; len(out) < n; k++ {
		if skip[k] {
			continue
		}
		late := uint64(0)
		if maxLate > 0 {
			late = r.Uint64N(maxLate)
		}
		late += bigLate[k]
		out = append(out, base+uint64(k)*hz/periodHz+late)
	}
	return out
}

func TestTSCHzFromEdges(t *testing.T) {
	const hz, period = 2_500_000_000, 128
	r := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		name    string
		maxLate uint64 // jitter, in TSC ticks
		skip    map[int]bool
		bigLate map[int]uint64
		tol     float64 // relative
	}{
		{name: "exact", tol: 1e-9},
		{name: "jitter 20us", maxLate: 50_000, tol: 1e-3},
		// The endpoints late by 5 ms: the naive (last-first)/count is 2.7% off.
		{name: "late endpoints", maxLate: 5_000, bigLate: map[int]uint64{0: 0, 23: 12_500_000}, tol: 1e-3},
		{name: "late first", maxLate: 5_000, bigLate: map[int]uint64{0: 12_500_000, 1: 10_000_000}, tol: 1e-3},
		{name: "missed edges", maxLate: 5_000, skip: map[int]bool{3: true, 4: true, 17: true}, tol: 1e-3},
		{name: "several stalls", maxLate: 20_000, bigLate: map[int]uint64{2: 12_000_000, 9: 15_000_000, 15: 4_000_000, 21: 18_000_000}, tol: 2e-3},
		{name: "stall in the middle", maxLate: 5_000, bigLate: map[int]uint64{10: 9_000_000, 11: 1_000_000}, tol: 1e-3},
	} {
		got := tscHzFromEdges(edges(r, hz, period, 24, tc.maxLate, tc.skip, tc.bigLate), period)
		if err := float64(got)/hz - 1; err > tc.tol || err < -tc.tol {
			t.Errorf("%s: got %d Hz, want %d within %g (error %.2g)", tc.name, got, uint64(hz), tc.tol, err)
		}
	}
}

func TestTSCHzFromEdgesRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		tsc  []uint64
	}{
		{"too few", []uint64{1, 2, 3}},
		{"not increasing", []uint64{100, 200, 200, 300, 400}},
		{"backwards", []uint64{400, 300, 200, 100}},
		{"implausibly slow", []uint64{0, 1000, 2000, 3000, 4000, 5000}}, // 128 kHz
	} {
		if got := tscHzFromEdges(tc.tsc, 128); got != 0 {
			t.Errorf("%s: got %d Hz, want 0", tc.name, got)
		}
	}
}
