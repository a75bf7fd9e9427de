//go:build tamago && amd64

package microvm

import (
	"math"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/tamanet/tamanet/nic/virtio"
)

// nicVector is the interrupt vector the virtio-net device's GSI is routed
// to: below IRQ_WAKEUP's priority class, so the idle timer still gets
// through while a NIC interrupt waits for its end-of-interrupt.
const nicVector = 32 + VirtioNet0IRQ

// defined in idle_amd64.s
func nicHandler()
func nicHandlerAddr() uintptr

var (
	// nicDriver is the device NIC brought up, for its interrupt
	// goroutine.
	nicDriver *virtio.Driver
	// nicIRQs counts NIC interrupts taken by nicHandler; nicSeen is the
	// count the idle hook last passed on to nicG, the goroutine that
	// services them (0 until EnableNICInterrupt starts it).
	nicIRQs, nicSeen uint64
	nicG             uint
)

// EnableNICInterrupt routes the virtio-net device's interrupt to the CPU
// and calls wake (the stack's Wake) on each, after acknowledging it at the
// device, so a frame that arrives while the CPU halts is handled at once
// instead of at the next poll tick. It returns false, and changes nothing,
// where there is nothing to gain: the CPU does not halt when idle (the
// APIC timer could not be measured or its interrupt did not arrive), or NIC
// has not run.
//
// The interrupt gate only counts the interrupt and acknowledges it at the
// local APIC; the idle hook, which the interrupt brings out of its halt,
// wakes the servicing goroutine with runtime.Wake. tamago's own
// amd64.CPU.ServiceInterrupts calls runtime.WakeG from the interrupt
// itself, which rewrites the sleeping goroutine's timer without the timer
// lock, in whatever state the interrupted code left the timer heap: the
// runtime then died with "fatal error: bad ts" within 30 minutes of mixed
// traffic. The idle hook runs between scheduling rounds on the only CPU
// (the board starts no other), where no timer operation is in progress.
//
// The device raises its line until acknowledged and the I/O APIC entry is
// edge-triggered, so a missed interrupt only costs latency: the poll
// loop's tick still runs.
func EnableNICInterrupt(wake func()) bool {
	d := nicDriver
	if d == nil || !haltIdleOn || nicG != 0 {
		return false
	}
	gate := idtGate(nicVector)
	if gate == nil {
		return false
	}
	setGate(gate, nicHandlerAddr())
	started := make(chan struct{})
	go func() {
		gp, _ := runtime.GetG()
		atomic.StoreUint64(&nicSeen, atomic.LoadUint64(&nicIRQs))
		nicG = gp
		close(started)
		for {
			// Until the idle hook's runtime.Wake.
			time.Sleep(math.MaxInt64)
			d.AckInterrupt()
			wake()
		}
	}()
	<-started
	IOAPIC1.EnableInterrupt(VirtioNet0IRQ, nicVector)
	// Lower a line raised before now, so that the next completion makes
	// an edge.
	d.AckInterrupt()
	return true
}

// wakeNIC wakes the NIC goroutine when an interrupt came since it last
// did, and reports whether it did. It runs only in the idle hook.
func wakeNIC() bool {
	n := atomic.LoadUint64(&nicIRQs)
	if nicG == 0 || n == nicSeen {
		return false
	}
	// Wake fails when the goroutine is not asleep in its time.Sleep
	// yet (it is still servicing the last one): the count stays behind
	// and the next idle round tries again.
	if !runtime.Wake(nicG) {
		return false
	}
	nicSeen = n
	return true
}
