//go:build tamago && arm

package imx6ul

import (
	soc "github.com/usbarmory/tamago/soc/nxp/imx6ul"

	"github.com/tamanet/tamanet/internal/wake"
	"github.com/tamanet/tamanet/nic/enet"
)

// NIC is the board's ENET controller, brought up by Board.NIC.
type NIC struct {
	*enet.Driver

	// irq is the controller's interrupt ID; g services it (nil until
	// EnableInterrupt). masked says the receive event is masked in EIMR.
	// Only the idle hook uses g and masked once EnableInterrupt returned.
	irq    int
	g      *wake.G
	masked bool
}

// irqNIC is the controller whose receive interrupt the idle hook arms.
// Package-level because tamago forces it: the scheduler's idle hook
// (runtime/goos.Idle) takes no argument. EnableInterrupt sets it once;
// only the idle hook reads it.
var irqNIC *NIC

// EnableInterrupt routes the controller's interrupt to the CPU, unmasks
// its receive-frame event (EIMR.RXF) and calls notify (the stack's Wake)
// on each, after acknowledging it at the MAC, so a frame that arrives
// while the CPU halts is handled at once instead of at the next poll tick.
// It reports false, and changes nothing, when the CPU does not halt when
// idle (the poll loop then finds frames as soon anyway), and on a second
// call.
//
// The event is armed only while the CPU halts, as NAPI does: the idle hook
// unmasks it before WFI. A frame ends the halt, since a pending interrupt
// ends WFI whether or not IRQs are unmasked in the CPSR (ARMv7-A ARM B1.8.13
// "Wait For Interrupt"); the hook then sees the line pending at the GIC,
// masks the event again and wakes the goroutine that acknowledges it and
// calls notify. While frames keep coming the poll loop runs and takes no
// interrupts. A frame that arrives while masked sets EIR.RXF, so unmasking
// raises the (level-sensitive) line at once and the halt ends straight
// away: none is missed.
//
// No IRQ exception is ever taken. tamago's arm.ServiceInterrupts would wake
// its goroutine with runtime.WakeG from the IRQ handler, whatever code it
// interrupted (package internal/wake says what that breaks); here an ENET
// interrupt after an alarm-ended halt could land in timer code. The idle
// hook wakes the goroutine between scheduling rounds on the only CPU.
func (n *NIC) EnableInterrupt(notify func()) bool {
	if !haltIdleOn || irqNIC != nil {
		return false
	}
	initGIC()
	d := n.Driver
	n.g = wake.Start(func() {
		d.AckInterrupt()
		notify()
	})
	n.masked = true // the idle hook arms it
	irqNIC = n
	soc.GIC.EnableInterrupt(n.irq, true)
	return true
}

// armNIC unmasks the ENET receive event before the CPU halts.
func armNIC() {
	if n := irqNIC; n != nil && n.masked {
		n.masked = false
		n.Driver.EnableInterrupts(enet.EventRXF)
	}
}

// serviceNIC runs in the idle hook after a halt, and before one to retry:
// if the ENET's line is pending at the GIC it masks the event, which lowers
// the line, and wakes the NIC goroutine. It reports whether it woke it.
func serviceNIC() bool {
	n := irqNIC
	if n == nil {
		return false
	}
	if !n.g.Pending() {
		if n.masked || !gicPending(n.irq) {
			return false
		}
		n.Driver.EnableInterrupts(0)
		n.masked = true
		n.g.Post()
	}
	return n.g.Wake()
}
