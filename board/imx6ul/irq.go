//go:build tamago && arm

package imx6ul

import (
	"math"
	"runtime"
	"time"

	soc "github.com/usbarmory/tamago/soc/nxp/imx6ul"

	"github.com/tamanet/tamanet/nic/enet"
)

// EnableENETInterrupt routes ENET interrupt irq (soc.ENET1_IRQ or
// soc.ENET2_IRQ, i.MX6ULL RM 3.2 "Cortex A7 interrupts") to the CPU,
// unmasks the receive-frame event of driver d (EIMR.RXF) and calls wake
// (the stack's Wake) on each, after acknowledging it at the MAC, so a frame
// that arrives while the CPU halts is handled at once instead of at the
// next poll tick. It reports false, and changes nothing, when the CPU does
// not halt when idle: the poll loop then finds frames as soon anyway.
//
// The event is armed only while the CPU halts, as NAPI does: the idle hook
// unmasks it before WFI. A frame ends the halt, since a pending interrupt
// ends WFI whether or not IRQs are unmasked in the CPSR (ARMv7-A ARM B1.8.13
// "Wait For Interrupt"); the hook then sees the line pending at the GIC,
// masks the event again and wakes the goroutine that acknowledges it and
// calls wake. While frames keep coming the poll loop runs and takes no
// interrupts. A frame that arrives while masked sets EIR.RXF, so unmasking
// raises the (level-sensitive) line at once and the halt ends straight
// away: none is missed.
//
// No IRQ exception is ever taken. tamago's arm.ServiceInterrupts would wake
// its goroutine with runtime.WakeG from the IRQ handler, which rewrites the
// goroutine's timer without the timer lock, whatever code it interrupted:
// on microvm the same path corrupted the timer heap ("fatal error: bad ts"),
// and here an ENET interrupt after an alarm-ended halt could land in timer
// code the same way. The idle hook calls runtime.Wake between scheduling
// rounds on the only CPU, where no timer code is in progress.
func EnableENETInterrupt(d *enet.Driver, irq int, wake func()) bool {
	if d == nil || !haltIdleOn || nicG != 0 {
		return false
	}
	initGIC()
	started := make(chan struct{})
	go func() {
		nicG, _ = runtime.GetG()
		close(started)
		for {
			// Until the idle hook's runtime.Wake.
			time.Sleep(math.MaxInt64)
			d.AckInterrupt()
			wake()
		}
	}()
	<-started
	nicDriver, nicIRQ = d, irq
	nicMasked = true // the idle hook arms it
	soc.GIC.EnableInterrupt(irq, true)
	return true
}

var (
	// nicDriver is the driver whose receive interrupt the idle hook arms,
	// nicIRQ its interrupt ID, nicG the goroutine that services it.
	nicDriver *enet.Driver
	nicIRQ    int
	nicG      uint
	// nicMasked says the receive event is masked in EIMR; nicPending
	// that the hook saw the interrupt and has not woken nicG yet. Only
	// the idle hook uses them.
	nicMasked, nicPending bool
)

// armNIC unmasks the ENET receive event before the CPU halts.
func armNIC() {
	if nicDriver != nil && nicMasked {
		nicMasked = false
		nicDriver.EnableInterrupts(enet.EventRXF)
	}
}

// serviceNIC runs in the idle hook after a halt, and before one to retry:
// if the ENET's line is pending at the GIC it masks the event, which lowers
// the line, and wakes nicG. It reports whether it woke nicG.
func serviceNIC() bool {
	if nicDriver == nil {
		return false
	}
	if !nicPending {
		if nicMasked || !gicPending(nicIRQ) {
			return false
		}
		nicDriver.EnableInterrupts(0)
		nicMasked, nicPending = true, true
	}
	// Wake fails while nicG is not asleep in its time.Sleep (still
	// servicing the last one): the next idle round tries again.
	if !runtime.Wake(nicG) {
		return false
	}
	nicPending = false
	return true
}
