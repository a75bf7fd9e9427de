//go:build tamago && amd64

package microvm

import (
	"time"

	"github.com/tamanet/tamanet/nic/virtio"
)

// nicVector is the interrupt vector the virtio-net device's GSI is routed
// to: below IRQ_WAKEUP's priority class, so the idle timer still gets
// through while a NIC interrupt waits for its end-of-interrupt.
const nicVector = 32 + VirtioNet0IRQ

// nicDriver is the device NIC brought up, for its interrupt handler.
var nicDriver *virtio.Driver

// EnableNICInterrupt routes the virtio-net device's interrupt to the CPU
// and calls wake (the stack's Wake) on each, after acknowledging it at the
// device, so a frame that arrives while the CPU halts is handled at once
// instead of at the next poll tick. It returns false, and changes nothing,
// where there is nothing to gain: the CPU does not halt when idle (the
// APIC timer could not be measured or its interrupt did not arrive), or NIC
// has not run.
//
// Interrupts go through tamago's amd64.CPU.ServiceInterrupts, which wakes
// a goroutine per interrupt. The device raises its line until acknowledged
// and the I/O APIC entry is edge-triggered, so a missed interrupt only
// costs latency: the poll loop's tick still runs.
func EnableNICInterrupt(wake func()) bool {
	d := nicDriver
	if d == nil || !haltIdleOn {
		return false
	}
	go AMD64.ServiceInterrupts(func(vector int) {
		if vector == nicVector {
			d.AckInterrupt()
			wake()
		}
	})
	// Unmask only once ServiceInterrupts has installed the gates for
	// vectors 32-255: an interrupt without a gate is a fault.
	for range 100 {
		if g := idtGate(nicVector); g != nil && g[5]&0x80 != 0 {
			IOAPIC1.EnableInterrupt(VirtioNet0IRQ, nicVector)
			// Lower a line raised before now, so that the next
			// completion makes an edge.
			d.AckInterrupt()
			return true
		}
		time.Sleep(time.Millisecond)
	}
	return false
}
