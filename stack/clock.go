package stack

import (
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
)

// stepClock is the gVisor stack's clock (gvstack.Options.Clock): a
// tcpip.Clock that reads the time at most once per poll step while the
// runner is busy.
//
// gVisor's TCP reads the clock several times per segment: the receive time
// of every segment, the send time of every segment (RTT and RACK), every
// timestamp option, every timer it arms, congestion control. On tamago,
// time.Now goes through the runtime's nanotime, which under QEMU's TCG is
// a counter read and an emulated floating-point multiply on ARM: `make
// profile TARGET=mx6ullevk WORKLOAD=tx` put 9% of a bulk transfer's guest
// time under gVisor's clock reads before this cache.
//
// While the runner is busy, Run calls step once per poll step: one read,
// cached, and gVisor's reads until the next step return that value. The
// goroutines a step wakes (TCP's processors, socket readers and writers)
// run between two steps, so a cached value is as old as one round of them:
// the receive and send times of the segments one step handles are the
// step's time (each read a nanosecond on), as with a kernel's per-tick
// clock. When the runner goes to
// sleep (idle), reads go to the counter again, so a writer that runs while
// the loop sleeps sees the present. Every value handed out is at least the
// latest one handed out before (last only grows), so the clock is
// monotonic across goroutines, cached or not.
//
// Timers are the runtime's (time.AfterFunc), as tcpip.StdClock's, so they
// fire on time whatever the cache holds; a firing timer refreshes the cache
// before it calls its function, so gVisor's check that the timer really
// expired (tcp timer.checkExpiration: now against its target) sees the
// present and does not re-arm for a stale remainder.
type stepClock struct {
	base   time.Time    // wall and monotonic reading when the clock was made
	last   atomic.Int64 // latest reading handed out or cached: ns since base
	cached atomic.Bool  // the runner is busy: reads return last
	reads  atomic.Uint64
	// uncached makes step read without caching, as tcpip.StdClock would
	// (every read goes to the counter): the tests' comparison.
	uncached atomic.Bool
}

var _ tcpip.Clock = (*stepClock)(nil)

func newStepClock() *stepClock { return &stepClock{base: time.Now()} }

// read reads the counter and returns the new reading or, if a value as
// late was handed out meanwhile, a nanosecond past it.
func (c *stepClock) read() int64 {
	c.reads.Add(1)
	ns := int64(time.Since(c.base))
	for {
		l := c.last.Load()
		v := max(ns, l+1)
		if c.last.CompareAndSwap(l, v) {
			return v
		}
	}
}

// elapsed is the time since base: cached while the runner is busy. A
// cached read still moves the clock on by a nanosecond, so no two reads
// are equal: an interval gVisor measures within one step (a receiver's
// RTT sample, a send and its ACK) is never zero, which its code, written
// against a real clock, treats as "no sample". A step's thousands of
// nanoseconds are not caught up with: last only grows, and the next
// counter read takes over.
func (c *stepClock) elapsed() time.Duration {
	if c.cached.Load() {
		return time.Duration(c.last.Add(1))
	}
	return time.Duration(c.read())
}

// step reads the counter for a poll step, caches the reading for gVisor
// until the next step or idle, and returns it as a time.Time.
func (c *stepClock) step() time.Time {
	ns := c.read()
	c.cached.Store(!c.uncached.Load())
	return c.base.Add(time.Duration(ns))
}

// idle ends the cache: the runner is about to sleep or stop.
func (c *stepClock) idle() { c.cached.Store(false) }

// Reads returns how many times the clock read the counter.
func (c *stepClock) Reads() uint64 { return c.reads.Load() }

// Now implements tcpip.Clock: the wall time at New plus the time since.
func (c *stepClock) Now() time.Time { return c.base.Add(c.elapsed()) }

// NowMonotonic implements tcpip.Clock.
func (c *stepClock) NowMonotonic() tcpip.MonotonicTime {
	return tcpip.MonotonicTime{}.Add(c.elapsed())
}

// AfterFunc implements tcpip.Clock with a runtime timer, as
// tcpip.StdClock does; f runs after the cache is refreshed.
func (c *stepClock) AfterFunc(d time.Duration, f func()) tcpip.Timer {
	return tcpip.NewStdTimer(time.AfterFunc(d, func() {
		if c.cached.Load() {
			c.read()
		}
		f()
	}))
}
