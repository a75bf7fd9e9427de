package stack

import (
	"testing"
	"time"

	"github.com/tamanet/tamanet/nic/nictest"
)

// TestBusyPoll checks the runner's busy-poll window: after a step that found
// work it keeps stepping for BusyPoll, then sleeps on the tick again; with
// BusyPoll 0 it sleeps straight away.
func TestBusyPoll(t *testing.T) {
	const tick = 50 * time.Millisecond
	steps := func(window time.Duration) (during, after uint64) {
		pool := newPool(t, 64)
		dev := nictest.New(pool, nictest.Config{MAC: [6]byte{2, 0, 0, 0, 0, 1}, RxRing: 32})
		s, err := New(dev, Config{Addr: addrA, Tick: tick, BusyPoll: window})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		s.Start()
		time.Sleep(2 * tick) // settle into idle sleeps
		before := s.Stats().Poll.Steps
		f := make([]byte, 60)
		copy(f, []byte{2, 9, 9, 9, 9, 9}) // not for us: work, dropped
		dev.Inject(f)
		s.Wake()
		time.Sleep(window/2 + 5*time.Millisecond)
		mid := s.Stats().Poll.Steps
		time.Sleep(window + 10*time.Millisecond) // the window is over
		settled := s.Stats().Poll.Steps
		time.Sleep(2 * tick)
		return mid - before, s.Stats().Poll.Steps - settled
	}
	during, after := steps(40 * time.Millisecond)
	if during < 20 {
		t.Errorf("busy-poll window: %d steps in 25 ms, want many", during)
	}
	if after > 4 {
		t.Errorf("after the window: %d steps in %v, want at most a few ticks", after, 2*tick)
	}
	during, _ = steps(0)
	if during > 4 {
		t.Errorf("no busy poll: %d steps after one frame, want a few", during)
	}
}
