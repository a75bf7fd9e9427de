package soak

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// series samples f every 5 s for n samples, plus uniform noise of ±noise.
func series(n int, noise float64, seed uint64, f func(t float64) float64) (ts, vs []float64) {
	r := rand.New(rand.NewPCG(seed, 1))
	for i := range n {
		t := float64(i) * 5
		ts = append(ts, t)
		vs = append(vs, f(t)+noise*(2*r.Float64()-1))
	}
	return ts, vs
}

func TestUpward(t *testing.T) {
	heap := Trend{Warmup: 0.2, Abs: 1 << 20, Rel: 0.10}
	const mib = 1 << 20
	cases := []struct {
		name   string
		n      int
		noise  float64
		f      func(t float64) float64
		upward bool
	}{
		{"flat", 360, 0, func(float64) float64 { return 8 * mib }, false},
		{"flat noisy", 360, 3 * mib, func(float64) float64 { return 8 * mib }, false},
		// A Go heap between collections: a sawtooth from live to twice
		// live, period unrelated to the sampling.
		{"GC sawtooth", 360, 0, func(t float64) float64 { return 8*mib + 8*mib*math.Mod(t/37, 1) }, false},
		// Filling up during the warm-up, flat after.
		{"warm-up then flat", 360, mib / 2, func(t float64) float64 { return 8*mib + 4*mib*min(t/300, 1) }, false},
		{"shrinking", 360, mib / 2, func(t float64) float64 { return 16*mib - t*2000 }, false},
		// 2 KiB/s for 30 minutes: 3.6 MB over the run, the kind of
		// leak a soak exists to catch.
		{"slow leak", 360, mib / 2, func(t float64) float64 { return 8*mib + t*2048 }, true},
		{"slow leak under sawtooth", 360, 0, func(t float64) float64 { return 8*mib + 8*mib*math.Mod(t/37, 1) + t*4096 }, true},
		{"step after warm-up", 360, mib / 4, func(t float64) float64 {
			if t > 900 {
				return 12 * mib
			}
			return 8 * mib
		}, true},
		// The two-minute soak: 24 samples.
		{"short flat", 24, mib / 2, func(float64) float64 { return 6 * mib }, false},
		{"short leak", 24, mib / 4, func(t float64) float64 { return 6*mib + t*30000 }, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ts, vs := series(c.n, c.noise, 42, c.f)
			v, err := heap.Upward(ts, vs)
			if err != nil {
				t.Fatal(err)
			}
			if v.Upward != c.upward {
				t.Fatalf("Upward = %v, want %v: %v", v.Upward, c.upward, v)
			}
			if c.upward && (v.Slope <= 0 || !strings.HasPrefix(v.String(), "TRENDS UPWARD")) {
				t.Errorf("leak with slope %v: %v", v.Slope, v)
			}
			t.Log(v)
		})
	}
}

func TestUpwardSlope(t *testing.T) {
	ts, vs := series(100, 0, 1, func(t float64) float64 { return 3 + 0.5*t })
	v, err := Trend{}.Upward(ts, vs)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(v.Slope-0.5) > 1e-9 {
		t.Errorf("slope %v, want 0.5", v.Slope)
	}
	if !v.Upward {
		t.Errorf("a line rising with zero tolerance: %v", v)
	}
}

func TestUpwardErrors(t *testing.T) {
	ts, vs := series(10, 0, 1, func(float64) float64 { return 1 })
	if _, err := (Trend{Warmup: 0.5}).Upward(ts, vs); err == nil {
		t.Error("5 samples after warm-up judged")
	}
	if _, err := (Trend{}).Upward(ts, vs[:9]); err == nil {
		t.Error("mismatched lengths accepted")
	}
	if _, err := (Trend{Warmup: 1}).Upward(ts, vs); err == nil {
		t.Error("warm-up of everything accepted")
	}
	vs[7] = math.NaN()
	if _, err := (Trend{}).Upward(ts, vs); err == nil {
		t.Error("NaN sample accepted")
	}
}
