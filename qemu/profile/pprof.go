package profile

import (
	"encoding/binary"
	"io"
	"path/filepath"
	"time"

	"github.com/google/pprof/profile"
)

// Stacks counts sampled stacks (from Unwind: the PC, then return
// addresses).
type Stacks struct {
	counts map[string]int64
	order  []string // first-seen order, so output is deterministic
}

// Add counts one sample of the stack pcs.
func (s *Stacks) Add(pcs []uint64) {
	if s.counts == nil {
		s.counts = map[string]int64{}
	}
	k := make([]byte, 8*len(pcs))
	for i, pc := range pcs {
		binary.LittleEndian.PutUint64(k[8*i:], pc)
	}
	key := string(k)
	if _, ok := s.counts[key]; !ok {
		s.order = append(s.order, key)
	}
	s.counts[key]++
}

// Len returns the number of samples added.
func (s *Stacks) Len() int64 {
	var n int64
	for _, c := range s.counts {
		n += c
	}
	return n
}

// Profile turns the stacks into a pprof CPU profile symbolized with b:
// each sample is worth period of CPU time; duration is the wall time
// sampled. Callers' locations are at their return address minus one, the
// call instruction, as pprof expects; inlined calls become extra lines of
// one location, innermost first.
func (s *Stacks) Profile(b *Binary, image string, period, duration time.Duration) *profile.Profile {
	m := &profile.Mapping{
		ID: 1, Start: b.TextAddr, Limit: b.TextEnd, File: filepath.Base(image),
		HasFunctions: true, HasFilenames: true, HasLineNumbers: true, HasInlineFrames: true,
	}
	p := &profile.Profile{
		SampleType: []*profile.ValueType{
			{Type: "samples", Unit: "count"},
			{Type: "cpu", Unit: "nanoseconds"},
		},
		PeriodType:    &profile.ValueType{Type: "cpu", Unit: "nanoseconds"},
		Period:        period.Nanoseconds(),
		DurationNanos: duration.Nanoseconds(),
		Mapping:       []*profile.Mapping{m},
	}
	locs := map[uint64]*profile.Location{}
	funcs := map[[2]string]*profile.Function{}
	function := func(name, file string, start int64) *profile.Function {
		k := [2]string{name, file}
		if f, ok := funcs[k]; ok {
			return f
		}
		f := &profile.Function{ID: uint64(len(p.Function) + 1), Name: name, SystemName: name, Filename: file, StartLine: start}
		funcs[k] = f
		p.Function = append(p.Function, f)
		return f
	}
	location := func(addr uint64) *profile.Location {
		if l, ok := locs[addr]; ok {
			return l
		}
		l := &profile.Location{ID: uint64(len(p.Location) + 1), Address: addr}
		if addr >= m.Start && addr < m.Limit {
			l.Mapping = m
		}
		for _, fr := range b.Frames(addr) {
			l.Line = append(l.Line, profile.Line{Function: function(fr.Func, fr.File, 0), Line: int64(fr.Line)})
		}
		if len(l.Line) == 0 {
			// Outside Go code: the address alone.
			l.Line = append(l.Line, profile.Line{Function: function("?", "", 0)})
		}
		locs[addr] = l
		p.Location = append(p.Location, l)
		return l
	}
	for _, key := range s.order {
		n := len(key) / 8
		sm := &profile.Sample{Value: []int64{s.counts[key], s.counts[key] * period.Nanoseconds()}}
		for i := range n {
			addr := binary.LittleEndian.Uint64([]byte(key[8*i:]))
			if i > 0 {
				addr--
			}
			sm.Location = append(sm.Location, location(addr))
		}
		p.Sample = append(p.Sample, sm)
	}
	return p
}

// WriteProfile writes p gzip'd, as go tool pprof reads it.
func WriteProfile(w io.Writer, p *profile.Profile) error {
	if err := p.CheckValid(); err != nil {
		return err
	}
	return p.Write(w)
}
