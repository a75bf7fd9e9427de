package stack

import (
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
)

// TestStepClockCache: while cached, reads return the step's reading (a
// nanosecond on per read, never the same twice) and read no counter; a
// step advances it; idle goes back to the counter.
func TestStepClockCache(t *testing.T) {
	c := newStepClock()
	now := c.step()
	r0 := c.Reads()
	m0 := c.NowMonotonic()
	prev := m0
	for range 1000 {
		m := c.NowMonotonic()
		if !prev.Before(m) || m.Sub(m0) > 3*time.Microsecond || c.Now().Sub(now) > 3*time.Microsecond {
			t.Fatalf("a cached read is %v past the step's, the previous read %v", m.Sub(m0), prev.Sub(m0))
		}
		prev = m
	}
	if c.Reads() != r0 {
		t.Fatalf("%d counter reads while cached", c.Reads()-r0)
	}
	time.Sleep(2 * time.Millisecond)
	next := c.step()
	if d := next.Sub(now); d < 2*time.Millisecond {
		t.Fatalf("a step 2 ms later advanced the clock by %v", d)
	}
	if c.NowMonotonic().Sub(m0) < 2*time.Millisecond {
		t.Fatal("NowMonotonic did not follow the step")
	}
	if d := c.Now().Sub(next); d < 0 || d > 3*time.Microsecond {
		t.Fatalf("Now is %v from the step's reading", d)
	}
	c.idle()
	r1 := c.Reads()
	a := c.NowMonotonic()
	time.Sleep(time.Millisecond)
	if b := c.NowMonotonic(); b.Sub(a) < time.Millisecond || c.Reads() != r1+2 {
		t.Fatalf("idle: reads %v apart, %d counter reads; want the present each time", b.Sub(a), c.Reads()-r1)
	}
	// Wall time: base plus the monotonic elapsed time.
	if d := time.Since(c.Now()); d < 0 || d > time.Second {
		t.Fatalf("Now is %v off the wall clock", d)
	}
}

// TestStepClockMonotonic: readers on several goroutines, while another
// steps and idles the clock in turn, never see it go back.
func TestStepClockMonotonic(t *testing.T) {
	c := newStepClock()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan string, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var last tcpip.MonotonicTime
			for {
				select {
				case <-stop:
					return
				default:
				}
				m := c.NowMonotonic()
				if !last.Before(m) {
					errs <- "NowMonotonic went back or stood still"
					return
				}
				last = m
			}
		}()
	}
	for i := range 20000 {
		if i%2 == 0 {
			c.step()
		} else {
			c.idle()
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
}

// TestStepClockTimer: a timer armed while the cache holds an old reading
// fires on time, and its function sees the present, not the cache.
func TestStepClockTimer(t *testing.T) {
	c := newStepClock()
	c.step() // cached from here on; nobody steps again
	start := time.Now()
	m0 := c.NowMonotonic()
	seen := make(chan tcpip.MonotonicTime, 1)
	c.AfterFunc(20*time.Millisecond, func() { seen <- c.NowMonotonic() })
	select {
	case m := <-seen:
		if el := time.Since(start); el < 20*time.Millisecond {
			t.Fatalf("fired after %v", el)
		}
		if d := m.Sub(m0); d < 20*time.Millisecond {
			t.Fatalf("the timer's function sees %v since arming, want at least 20ms", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the timer did not fire")
	}
	// Stop and Reset are the runtime timer's.
	fired := make(chan struct{}, 1)
	tm := c.AfterFunc(time.Hour, func() { fired <- struct{}{} })
	tm.Reset(time.Millisecond)
	select {
	case <-fired:
	case <-time.After(5 * time.Second):
		t.Fatal("Reset did not bring the timer forward")
	}
	tm = c.AfterFunc(time.Millisecond, func() { fired <- struct{}{} })
	if !tm.Stop() {
		t.Fatal("Stop of a pending timer")
	}
	select {
	case <-fired:
		t.Fatal("a stopped timer fired")
	case <-time.After(20 * time.Millisecond):
	}
}
