package microvm

import "slices"

// Plausible TSC frequencies; anything else means the reference is broken.
const (
	minTSCHz = 50_000_000
	maxTSCHz = 20_000_000_000
)

// tscHzFromEdges estimates the TSC frequency from the TSC values read when
// successive edges of a reference clock of periodHz were seen.
//
// Each reading is late by however long the edge took to become visible
// (under QEMU TCG the flag is set by a timer callback on a loaded host, and
// the vCPU may be descheduled), never early, and an edge may be missed
// altogether. So the estimate trusts no single reading: the median gap
// gives a rough period, which numbers the periods between any two readings
// at least half the run apart; each such pair gives an estimate, and the
// median of those is the answer. A few late or missing readings only
// move the pairs they end, a minority. It returns 0 when the readings make
// no sense.
func tscHzFromEdges(tsc []uint64, periodHz uint64) uint64 {
	n := len(tsc)
	if n < 4 || periodHz == 0 {
		return 0
	}
	gaps := make([]float64, n-1)
	for i := 1; i < n; i++ {
		if tsc[i] <= tsc[i-1] {
			return 0
		}
		gaps[i-1] = float64(tsc[i] - tsc[i-1])
	}
	rough := median(gaps)

	var est []float64
	for i := 0; i < n; i++ {
		for j := i + n/2; j < n; j++ {
			span := float64(tsc[j] - tsc[i])
			if k := float64(int64(span/rough + 0.5)); k >= 1 {
				est = append(est, span/k)
			}
		}
	}
	if len(est) == 0 {
		return 0
	}
	hz := uint64(median(est)*float64(periodHz) + 0.5)
	if hz < minTSCHz || hz > maxTSCHz {
		return 0
	}
	return hz
}

// median sorts v and returns its middle element.
func median(v []float64) float64 {
	slices.Sort(v)
	return v[len(v)/2]
}
