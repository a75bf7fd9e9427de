//go:build tamago && arm

package imx6ul

import (
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
// Interrupts go through tamago's arm.ServiceInterrupts, which wakes one
// goroutine per IRQ with IRQs masked until it has run; the ENET line is
// level-sensitive and stays raised until the event is acknowledged, so no
// event is lost, and a late one only costs latency.
func EnableENETInterrupt(d *enet.Driver, irq int, wake func()) bool {
	if d == nil || !haltIdleOn {
		return false
	}
	initGIC()
	go arm.ServiceInterrupts(func() {
		// Acknowledges at the GIC (IAR, EOIR); 1023 is spurious
		// (e.g. the idle alarm, already cancelled).
		if soc.GIC.GetInterrupt(true) == irq {
			d.AckInterrupt()
			wake()
		}
	})
	d.EnableInterrupts(enet.EventRXF)
	soc.GIC.EnableInterrupt(irq, true)
	return true
}
