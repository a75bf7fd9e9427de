// Package wake is the goroutine through which a tamanet board turns a NIC
// interrupt, seen by the scheduler's idle hook, into a call on an ordinary
// goroutine (board/microvm, board/imx6ul).
//
// The goroutine sleeps in time.Sleep until the idle hook wakes it with
// runtime.Wake. tamago's own interrupt service wakes a goroutine with
// runtime.WakeG from the interrupt handler, which rewrites the goroutine's
// timer without the timer lock, in whatever state the interrupted code left
// the timer heap: the runtime then dies with "fatal error: bad ts". The idle
// hook runs between scheduling rounds on the only CPU, where no timer code
// is in progress, so the boards wake the goroutine from there, and only
// from there.
//
// On other platforms the package is empty.
package wake
