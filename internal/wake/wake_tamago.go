//go:build tamago

package wake

import (
	"math"
	"runtime"
	"time"
)

// G is a goroutine that the idle hook wakes. Only the idle hook may call
// Post and Wake.
type G struct {
	g       uint
	pending bool
}

// Start starts a goroutine that calls f each time the idle hook wakes it,
// and returns once the goroutine runs, so that Wake can reach it.
func Start(f func()) *G {
	w := new(G)
	started := make(chan struct{})
	go func() {
		w.g, _ = runtime.GetG()
		close(started)
		for {
			// Until the idle hook's runtime.Wake.
			time.Sleep(math.MaxInt64)
			f()
		}
	}()
	<-started
	return w
}

// Post records that the goroutine is to run f once more; several Posts
// before a Wake that succeeds make one call.
func (w *G) Post() { w.pending = true }

// Pending reports whether a Post is outstanding.
func (w *G) Pending() bool { return w.pending }

// Wake wakes the goroutine if a Post is outstanding, and reports whether it
// did. runtime.Wake fails while the goroutine is not asleep in its
// time.Sleep (it is still running f for the last wake): the Post then stays
// outstanding and the next idle round tries again.
func (w *G) Wake() bool {
	if !w.pending || !runtime.Wake(w.g) {
		return false
	}
	w.pending = false
	return true
}
