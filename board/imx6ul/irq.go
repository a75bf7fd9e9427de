//go:build tamago && arm

package imx6ul

import (
	"sync/atomic"

	"github.com/usbarmory/tamago/arm"
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
// The interrupt is only armed while the CPU is idle, as NAPI does: the
// handler masks the event (EIMR) before it wakes the poll loop, and the idle
// hook unmasks it before the next halt. While frames keep coming the poll
// loop runs and takes no interrupts. A frame that arrives while masked sets
// EIR.RXF, so unmasking raises the (level-sensitive) line at once and the
// halt ends straight away: none is missed.
//
// Interrupts go through tamago's arm.ServiceInterrupts, which wakes one
// goroutine per IRQ with IRQs masked until it has run. It wakes it with
// runtime.WakeG from the IRQ handler, which rewrites the goroutine's timer
// without the timer lock: safe inside the idle hook, where the interrupt
// mostly comes, but not when an alarm ended the halt and a frame arrives
// later, while the event is still armed. Masking the event again when the
// halt ends would close that window and lose interrupts: the goroutine
// reads the GIC's IAR only after the hook returns, and by then the masked
// line is low and IAR says spurious (1023).
func EnableENETInterrupt(d *enet.Driver, irq int, wake func()) bool {
	if d == nil || !haltIdleOn {
		return false
	}
	initGIC()
	go arm.ServiceInterrupts(func() {
		// Acknowledges at the GIC (IAR, EOIR); 1023 is spurious
		// (e.g. the idle alarm, already cancelled).
		if soc.GIC.GetInterrupt(true) == irq {
			d.EnableInterrupts(0)
			nicMasked.Store(true)
			d.AckInterrupt()
			wake()
		}
	})
	nicDriver = d
	nicMasked.Store(true) // the idle hook arms it
	soc.GIC.EnableInterrupt(irq, true)
	return true
}

var (
	// nicDriver is the driver whose receive interrupt the idle hook arms.
	nicDriver *enet.Driver
	// nicMasked says the receive event is masked in EIMR.
	nicMasked atomic.Bool
)

// armNIC unmasks the ENET receive event before the CPU halts.
func armNIC() {
	if nicDriver != nil && nicMasked.Load() {
		nicMasked.Store(false)
		nicDriver.EnableInterrupts(enet.EventRXF)
	}
}
