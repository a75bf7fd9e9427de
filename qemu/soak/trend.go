// Package soak holds the analysis side of the soak test (qemu/e2e
// TestSoak): a trend detector that tells a leak from noise in a sampled
// series, and the CSV and SVG writers for the samples.
//
// The detector is deliberately robust rather than clever: after a warm-up,
// it splits the samples into thirds and compares the median of the last
// third with the median of the first. A Go heap sampled between
// collections is a sawtooth and a pool under traffic jumps around; medians
// ignore both, while a leak moves the whole last third up. The slope
// (Theil–Sen: the median of all pairwise slopes) is reported alongside, to
// say how fast something grows.
package soak

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// Trend says how Upward judges a series.
type Trend struct {
	// Warmup is the leading fraction of the samples ignored (caches,
	// pools and connection tables filling up), 0 ≤ Warmup < 1.
	Warmup float64
	// Abs and Rel bound the allowed rise of the last third's median over
	// the first third's: max(Abs, Rel × |first|).
	Abs, Rel float64
}

// MinSamples is the fewest samples after the warm-up Upward judges.
const MinSamples = 6

// Verdict is what Upward found.
type Verdict struct {
	N           int     // samples judged (after the warm-up)
	First, Last float64 // medians of the first and last third
	Rise        float64 // Last - First
	Limit       float64 // the largest rise allowed
	Slope       float64 // Theil–Sen slope, units per second
	Upward      bool    // Rise > Limit
}

func (v Verdict) String() string {
	s := fmt.Sprintf("first third median %.6g, last third %.6g (rise %+.6g, limit %.6g, slope %+.4g/s, %d samples)",
		v.First, v.Last, v.Rise, v.Limit, v.Slope, v.N)
	if v.Upward {
		return "TRENDS UPWARD: " + s
	}
	return "flat: " + s
}

// Upward judges whether the series v, sampled at times t (seconds),
// trends upward. It fails when the series is too short to judge.
func (c Trend) Upward(t, v []float64) (Verdict, error) {
	if len(t) != len(v) {
		return Verdict{}, errors.New("soak: times and values differ in length")
	}
	if c.Warmup < 0 || c.Warmup >= 1 || c.Abs < 0 || c.Rel < 0 {
		return Verdict{}, fmt.Errorf("soak: bad trend parameters %+v", c)
	}
	skip := int(math.Ceil(c.Warmup * float64(len(v))))
	t, v = t[skip:], v[skip:]
	if len(v) < MinSamples {
		return Verdict{}, fmt.Errorf("soak: %d samples after the warm-up, need %d", len(v), MinSamples)
	}
	for i := range v {
		if math.IsNaN(v[i]) || math.IsInf(v[i], 0) || math.IsNaN(t[i]) {
			return Verdict{}, fmt.Errorf("soak: sample %d is not a number", skip+i)
		}
	}
	third := len(v) / 3
	d := Verdict{N: len(v), First: median(v[:third]), Last: median(v[len(v)-third:])}
	d.Rise = d.Last - d.First
	d.Limit = max(c.Abs, c.Rel*math.Abs(d.First))
	d.Slope = theilSen(t, v)
	d.Upward = d.Rise > d.Limit
	return d, nil
}

// median returns the median of v (v is not modified).
func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// theilSen returns the median of the slopes between all pairs of samples
// with distinct times (0 when there are none). A series of a few hundred
// samples has tens of thousands of pairs: cheap.
func theilSen(t, v []float64) float64 {
	slopes := make([]float64, 0, len(v)*(len(v)-1)/2)
	for i := range v {
		for j := i + 1; j < len(v); j++ {
			if dt := t[j] - t[i]; dt != 0 {
				slopes = append(slopes, (v[j]-v[i])/dt)
			}
		}
	}
	if len(slopes) == 0 {
		return 0
	}
	return median(slopes)
}

// Median returns the median of v, 0 for none.
func Median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	return median(v)
}
