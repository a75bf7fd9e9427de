package profile

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"
)

// regOffsets are byte offsets of PC, SP and LR in the g reply: QEMU's
// register files, as gdb's (gdb/features/i386/64bit-core.xml: rax, rbx,
// rcx, rdx, rsi, rdi, rbp, rsp, r8-r15, rip, 8 bytes each;
// gdb/features/arm/arm-core.xml: r0-r12, sp, lr, pc, 4 bytes each).
type regOffsets struct{ pc, sp, lr, size int }

func offsetsFor(arch string) (regOffsets, error) {
	switch arch {
	case "amd64":
		return regOffsets{pc: 16 * 8, sp: 7 * 8, lr: -1, size: 8}, nil
	case "arm":
		return regOffsets{pc: 15 * 4, sp: 13 * 4, lr: 14 * 4, size: 4}, nil
	}
	return regOffsets{}, fmt.Errorf("no register layout for %s", arch)
}

func (o regOffsets) read(g []byte, at int) (uint64, error) {
	if at < 0 {
		return 0, nil
	}
	if at+o.size > len(g) {
		return 0, fmt.Errorf("register reply of %d bytes, short of offset %d", len(g), at)
	}
	if o.size == 8 {
		return binary.LittleEndian.Uint64(g[at:]), nil
	}
	return uint64(binary.LittleEndian.Uint32(g[at:])), nil
}

// Stats says what sampling cost.
type Stats struct {
	Samples int           // stacks recorded
	Errors  int           // samples lost to a failed register read
	Elapsed time.Duration // wall time of the run
	Stopped time.Duration // of which the guest was stopped by us
	Halting time.Duration // of that, waiting for the stop reply
	Reading time.Duration // of that, reading registers and stack
	Reads   int           // memory reads over all samples
	Depth   int           // the deepest stack recorded
	Frames  int           // frames over all samples
	// Complete counts the stacks unwound to their top (goexit, mstart)
	// or to a switch to the system stack (mcall, systemstack): the rest
	// ended early (code outside Go, a failed read, max depth).
	Complete int
}

// StoppedShare is the fraction of the run the guest spent stopped for
// sampling: the profiler's overhead on the guest.
func (s Stats) StoppedShare() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Stopped) / float64(s.Elapsed)
}

// Sample stops the target every 1/hz until ctx ends or d has passed, and
// records its stack (at most depth entries) in st. The target must be
// running (Continue) on entry and is running again on return, unless an
// error is returned. When a sample takes longer than the period the next
// one waits a whole period, so the guest always runs between samples.
func Sample(ctx context.Context, g *GDB, b *Binary, st *Stacks, hz int, d time.Duration, depth int) (Stats, error) {
	off, err := offsetsFor(b.Arch)
	if err != nil {
		return Stats{}, err
	}
	var s Stats
	cache := &stackCache{mem: g}
	pcs := make([]uint64, 0, depth)
	period := time.Second / time.Duration(hz)
	start := time.Now()
	end := start.Add(d)
	next := start.Add(period)
	for {
		now := time.Now()
		if !now.Before(end) || ctx.Err() != nil {
			break
		}
		if wait := next.Sub(now); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
			continue
		}
		t0 := time.Now()
		if err := g.Stop(); err != nil {
			return s, err
		}
		t1 := time.Now()
		s.Halting += t1.Sub(t0)
		regs, err := g.Registers()
		if err != nil {
			s.Errors++
		} else {
			var r Regs
			r.PC, _ = off.read(regs, off.pc)
			r.SP, _ = off.read(regs, off.sp)
			r.LR, err = off.read(regs, off.lr)
			if err != nil {
				return s, err
			}
			cache.reset()
			pcs = b.Unwind(pcs[:0], r, cache, depth)
			s.Reads += cache.n
			st.Add(pcs)
			s.Samples++
			s.Frames += len(pcs)
			if b.topFrame(pcs[len(pcs)-1]) {
				s.Complete++
			}
			s.Depth = max(s.Depth, len(pcs))
		}
		t2 := time.Now()
		s.Reading += t2.Sub(t1)
		if err := g.Continue(); err != nil {
			return s, err
		}
		t3 := time.Now()
		s.Stopped += t3.Sub(t0)
		next = next.Add(period)
		if next.Before(t3) {
			next = t3.Add(period)
		}
	}
	s.Elapsed = time.Since(start)
	return s, nil
}
