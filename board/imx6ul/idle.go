//go:build tamago && arm

package imx6ul

import (
	"math"
	"runtime/goos"
	"time"

	"github.com/usbarmory/tamago/arm"
	soc "github.com/usbarmory/tamago/soc/nxp/imx6ul"
)

// Cortex-A7 MPCore private peripherals (Cortex-A7 MPCore TRM 8.2 "GIC
// memory map"; ARM GIC Architecture Specification v2, 4.3 "Distributor
// register descriptions").
const (
	gicdBase    = soc.GIC_BASE + 0x1000
	gicdISPENDR = 0x200 // set-pending registers, one bit per interrupt ID

	// timerPPI is the Secure physical timer's interrupt (ID 29, ARM
	// Generic Timer, Cortex-A7 MPCore TRM 8.1 "interrupt sources"):
	// tamago runs in the Secure state, where CNTP_* (arm.CPU.SetAlarm)
	// is the Secure physical timer.
	timerPPI = 29

	// minHalt is the shortest wait worth a halt: the wake-up takes a
	// timer interrupt, tens of microseconds under QEMU TCG.
	minHalt = 100_000 // ns
	// maxHalt bounds one halt, so the scheduler looks around now and
	// then even with no timer due.
	maxHalt = 10_000_000 // ns
)

var (
	gicOn      bool
	haltIdleOn bool
)

// initGIC brings the interrupt controller up once, all interrupts Secure
// (group 0, signalled as IRQ) and disabled.
func initGIC() {
	if !gicOn {
		soc.GIC.Init(true, false)
		gicOn = true
	}
}

// enableHaltIdle makes the scheduler halt the CPU (WFI) while it waits for
// a timer, woken by the generic timer's interrupt, instead of spinning
// (tamago's DefaultIdleGovernor only halts when no timer is due at all),
// which would burn a host core under QEMU and power on the board. It first
// checks that the timer's interrupt reaches the GIC: a halt nothing ends
// would hang the machine.
func enableHaltIdle() {
	if soc.ARM.Mode() != arm.SYS_MODE {
		return // not in control of the GIC (e.g. TrustZone Normal World)
	}
	initGIC()
	soc.GIC.EnableInterrupt(timerPPI, true)

	soc.ARM.SetAlarm(soc.ARM.GetTime() + 50_000)
	start := time.Now()
	ok := false
	for time.Since(start) < 20*time.Millisecond {
		if gicPending(timerPPI) {
			ok = true
			break
		}
	}
	soc.ARM.SetAlarm(0)
	if !ok {
		soc.GIC.DisableInterrupt(timerPPI)
		print("imx6ul: timer interrupt does not reach the GIC; idling by spinning\n")
		return
	}
	goos.Idle = haltIdle
	haltIdleOn = true
}

// gicPending reports whether interrupt id is pending at the GIC
// distributor (GICD_ISPENDRn).
func gicPending(id int) bool {
	return Regs(gicdBase).Read32(uint32(gicdISPENDR+4*(id/32)))&(1<<(id%32)) != 0
}

// haltIdle is the scheduler's idle hook: wait for the timer due at
// pollUntil (nanoseconds, the runtime's clock) in WFI, with the NIC's
// receive interrupt armed (see NIC.EnableInterrupt). The alarm's
// interrupt, or any other enabled one (the NIC's), ends the WFI whether or
// not IRQs are unmasked in the CPSR (they never are: no IRQ exception is
// taken); the alarm is then cancelled, which lowers its level-sensitive line
// again, and a pending NIC interrupt wakes its goroutine (serviceNIC).
func haltIdle(pollUntil int64) {
	if serviceNIC() {
		return
	}
	if pollUntil == math.MaxInt64 {
		armNIC()
		soc.ARM.WaitInterrupt()
		serviceNIC()
		return
	}
	now := soc.ARM.GetTime()
	wait := pollUntil - now
	if wait < minHalt {
		return
	}
	armNIC()
	soc.ARM.SetAlarm(now + min(wait, maxHalt))
	soc.ARM.WaitInterrupt()
	soc.ARM.SetAlarm(0)
	serviceNIC()
}
