//go:build tamago && amd64

package microvm

import "github.com/tamanet/tamanet/internal/mmio"

// Local APIC timer registers (Intel SDM Vol. 3A §11.5.4 "APIC Timer",
// table 11-1 "Local APIC Register Address Map").
const (
	lapicBase        = 0xfee00000
	lapicLVTTimer    = 0x320
	lapicInitCount   = 0x380
	lapicCurrCount   = 0x390
	lapicDivideConf  = 0x3e0
	lapicLVTMasked   = 1 << 16
	lapicDivideByOne = 0b1011

	// qemuAPICHz is the rate of QEMU's emulated APIC timer: one count per
	// nanosecond of QEMU_CLOCK_VIRTUAL (APIC_BUS_CYCLE_NS = 1 in
	// target/i386/cpu.h), which without icount is the host's monotonic
	// clock. The current count is computed from that clock when read,
	// so unlike a flag set by a timer callback it is exact even on a
	// loaded host.
	qemuAPICHz = 1_000_000_000

	// lapicWindow is how long the TSC is timed, in APIC counts.
	lapicWindow = 25_000_000 // 25 ms

	// lapicSpinLimit bounds the wait for the window, in reads.
	lapicSpinLimit = 100_000_000
)

// lapic is the local APIC's register window. tamago maps 0xc0000000 to
// 0xffffffff uncached, and physical addresses are virtual ones. A value:
// using it allocates nothing, which the idle hook (haltIdle) relies on.
var lapic = mmio.Regs{Base: lapicBase}

// bracketed reads the APIC current count between two TSC reads, several
// times, and returns the sample whose two TSC reads were closest: the
// midpoint of that bracket is when the count was read, give or take half
// its width.
func bracketed(r mmio.Regs, counter func() uint64) (tsc uint64, count uint32, width uint64) {
	width = ^uint64(0)
	for range 8 {
		a := counter()
		c := r.Read32(lapicCurrCount)
		b := counter()
		if b-a < width {
			tsc, count, width = a+(b-a)/2, c, b-a
		}
	}
	return
}

// timeAPIC times the TSC (read with counter) against the local APIC timer,
// masked so that it raises no interrupt, over lapicWindow APIC counts. It
// returns the TSC ticks and APIC counts elapsed, or ok false when the timer
// does not count or the vCPU was descheduled at the wrong moment.
func timeAPIC(counter func() uint64) (ticks, counts uint64, ok bool) {
	r := lapic
	r.Write32(lapicLVTTimer, lapicLVTMasked)
	r.Write32(lapicDivideConf, lapicDivideByOne)
	r.Write32(lapicInitCount, ^uint32(0))
	defer r.Write32(lapicInitCount, 0)

	t0, c0, w0 := bracketed(r, counter)
	for i := 0; ; i++ {
		if i == lapicSpinLimit {
			return 0, 0, false
		}
		if c := r.Read32(lapicCurrCount); c0-c >= lapicWindow || c > c0 {
			break
		}
	}
	t1, c1, w1 := bracketed(r, counter)
	if c1 >= c0 || t1 <= t0 {
		return 0, 0, false
	}
	// A bracket wider than 1% of the window means the vCPU was
	// descheduled at the wrong moment: no good sample.
	if elapsed := t1 - t0; w0 > elapsed/100 || w1 > elapsed/100 {
		return 0, 0, false
	}
	return t1 - t0, uint64(c0 - c1), true
}

// calibrateTSCByAPIC times the TSC against QEMU's APIC timer and returns
// its frequency in Hz, or 0 when the timer does not count. It is only
// meaningful under QEMU without KVM, where the APIC timer's rate is known.
func calibrateTSCByAPIC(counter func() uint64) uint64 {
	ticks, counts, ok := timeAPIC(counter)
	if !ok {
		return 0
	}
	hz := ticks * qemuAPICHz / counts
	if hz < minTSCHz || hz > maxTSCHz {
		return 0
	}
	return hz
}

// measureAPICHz returns the APIC timer's rate given the TSC's, or 0.
func measureAPICHz(counter func() uint64, tscHz uint64) uint64 {
	for range 3 {
		if ticks, counts, ok := timeAPIC(counter); ok {
			return uint64(float64(counts) * float64(tscHz) / float64(ticks))
		}
	}
	return 0
}
