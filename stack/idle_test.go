package stack

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/tamanet/tamanet/nic"
	"github.com/tamanet/tamanet/nic/nictest"
)

// maintained is a device that counts its maintenance steps.
type maintained struct {
	*nictest.Device
	calls atomic.Int64
}

func (m *maintained) Maintain() bool { m.calls.Add(1); return false }

// TestIdleInterrupt checks the runner's idle behaviour: ticking by default;
// with SetInterrupt, only the maintenance step (every MaintainInterval)
// and Wake make it step, and a Wake still gets a frame handled at once.
func TestIdleInterrupt(t *testing.T) {
	const tick = time.Millisecond
	pool := newPool(t, 64)
	dev := &maintained{Device: nictest.New(pool, nictest.Config{MAC: [6]byte{2, 0, 0, 0, 0, 1}, RxRing: 32})}
	s, err := New(dev, Config{Addr: addrA, Tick: tick})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Start()

	const window = 4 * MaintainInterval
	measure := func() (steps uint64, maint int64) {
		time.Sleep(20 * time.Millisecond) // settle
		s0, m0 := s.Stats().Poll.Steps, dev.calls.Load()
		time.Sleep(window)
		return s.Stats().Poll.Steps - s0, dev.calls.Load() - m0
	}

	ticking, maintTick := measure()
	// A 1 ms tick makes hundreds of steps in a second even on a loaded
	// machine.
	if ticking < 100 {
		t.Errorf("ticking: %d steps in %v, want hundreds", ticking, window)
	}

	s.SetInterrupt(true)
	if !s.Stats().Poll.Interrupt {
		t.Error("Stats().Poll.Interrupt false after SetInterrupt(true)")
	}
	idle, maintIdle := measure()
	// One step per maintenance, plus slack for timer jitter.
	if max := uint64(window/MaintainInterval) + 3; idle > max {
		t.Errorf("interrupt-driven idle: %d steps in %v, want at most %d", idle, window, max)
	}
	for name, m := range map[string]int64{"ticking": maintTick, "interrupt-driven": maintIdle} {
		want := int64(window / MaintainInterval)
		if m < want-1 || m > want+1 {
			t.Errorf("%s: %d maintenance steps in %v, want %d±1", name, m, window, want)
		}
	}

	// A frame and a Wake: handled at once, not at the next maintenance.
	f := make([]byte, 60)
	copy(f, []byte{2, 9, 9, 9, 9, 9}) // not for us: work, counted as filtered
	before := s.Stats().Endpoint.Rx.Drops[nic.Filtered]
	dev.Inject(f)
	s.Wake()
	deadline := time.Now().Add(50 * time.Millisecond)
	for s.Stats().Endpoint.Rx.Drops[nic.Filtered] == before {
		if time.Now().After(deadline) {
			t.Fatal("a Wake did not get the frame handled within 50 ms")
		}
		time.Sleep(time.Millisecond)
	}

	// Back to ticking.
	s.SetInterrupt(false)
	if again, _ := measure(); again < 100 {
		t.Errorf("ticking again: %d steps in %v, want hundreds", again, window)
	}
}
