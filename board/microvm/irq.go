//go:build tamago && amd64

package microvm

import (
	"sync/atomic"

	"github.com/tamanet/tamanet/internal/wake"
	"github.com/tamanet/tamanet/nic/virtio"
)

// nicVector is the interrupt vector the virtio-net device's GSI is routed
// to: below IRQ_WAKEUP's priority class, so the idle timer still gets
// through while a NIC interrupt waits for its end-of-interrupt.
const nicVector = 32 + VirtioNet0IRQ

// defined in idle_amd64.s
func nicHandler()
func nicHandlerAddr() uintptr

// NIC is the board's virtio-net device, brought up by Board.NIC.
type NIC struct {
	*virtio.Driver

	// g services the interrupt (nil until EnableInterrupt); seen is
	// the count of nicIRQs the idle hook last passed on to it.
	g    *wake.G
	seen uint64
}

// Package-level because tamago forces it: the interrupt gate is assembly
// without a context (nicIRQs), and the scheduler's idle hook
// (runtime/goos.Idle) takes no argument (irqNIC). EnableInterrupt sets
// irqNIC once; only the idle hook reads it.
var (
	// nicIRQs counts NIC interrupts taken by nicHandler.
	nicIRQs uint64
	// irqNIC is the device whose interrupt is on.
	irqNIC *NIC
)

// EnableInterrupt routes the device's interrupt to the CPU and calls notify
// (the stack's Wake) on each, after acknowledging it at the device, so a
// frame that arrives while the CPU halts is handled at once instead of at
// the next poll tick. It returns false, and changes nothing, where there is
// nothing to gain: the CPU does not halt when idle (the APIC timer could
// not be measured or its interrupt did not arrive); and on a second call.
//
// The interrupt gate only counts the interrupt and acknowledges it at the
// local APIC; the idle hook, which the interrupt brings out of its halt,
// wakes the servicing goroutine (package internal/wake says why not from
// the interrupt). The idle hook runs between scheduling rounds on the only
// CPU (the board starts no other).
//
// The device raises its line until acknowledged and the I/O APIC entry is
// edge-triggered, so a missed interrupt only costs latency: the poll
// loop's tick still runs.
func (n *NIC) EnableInterrupt(notify func()) bool {
	if !haltIdleOn || irqNIC != nil {
		return false
	}
	gate := idtGate(nicVector)
	if gate == nil {
		return false
	}
	setGate(gate, nicHandlerAddr())
	d := n.Driver
	n.seen = atomic.LoadUint64(&nicIRQs)
	n.g = wake.Start(func() {
		d.AckInterrupt()
		notify()
	})
	irqNIC = n
	IOAPIC1.EnableInterrupt(VirtioNet0IRQ, nicVector)
	// Lower a line raised before now, so that the next completion makes
	// an edge.
	d.AckInterrupt()
	return true
}

// wakeNIC wakes the NIC goroutine when an interrupt came since it last
// did, and reports whether it did. It runs only in the idle hook.
func wakeNIC() bool {
	n := irqNIC
	if n == nil {
		return false
	}
	if c := atomic.LoadUint64(&nicIRQs); c != n.seen {
		n.seen = c
		n.g.Post()
	}
	return n.g.Wake()
}
