//go:build tamago && amd64

package microvm

import (
	"github.com/tamanet/tamanet/internal/portio"
)

// MC146818A real-time clock as wired on PC-compatible machines (IBM PC AT
// Technical Reference, "Real-Time Clock and CMOS RAM"; MC146818A data
// sheet, "Register A".."Register C").
const (
	cmosIndex = 0x70
	cmosData  = 0x71

	// Bit 7 of the index port masks NMI on PC hardware; keep it set
	// while we own the RTC.
	cmosNMIOff = 0x80

	rtcRegA = 0x0a
	rtcRegB = 0x0b
	rtcRegC = 0x0c

	// Register A: DV2..DV0 = 010 selects the 32.768 kHz time base, and
	// RS3..RS0 the periodic rate, 32768 >> (RS-1) Hz.
	rtcRegADV32K  = 0x20
	rtcRegARateRS = 0x09 // 128 Hz, a 7.8125 ms period
	rtcPeriodHz   = 32768 >> (rtcRegARateRS - 1)

	// Register B, PIE: periodic interrupt enable. QEMU only runs the
	// periodic timer (and sets PF) while PIE is set; the interrupt itself
	// stays masked at the I/O APIC.
	rtcRegBPIE = 1 << 6

	// Register C, PF: periodic flag, cleared by reading register C.
	rtcRegCPF = 1 << 6
)

const (
	// calibrationEdges is how many periodic-flag edges the TSC is
	// timed at: 24 × 7.8125 ms ≈ 190 ms.
	calibrationEdges = 24

	// pfSpinLimit bounds the wait for one edge: a read of register C
	// takes well over 10 ns, so this is many periods even on fast hosts.
	pfSpinLimit = 50_000_000
)

func cmosRead(reg uint8) uint8 {
	portio.Out8(cmosIndex, cmosNMIOff|reg)
	return portio.In8(cmosData)
}

func cmosWrite(reg, val uint8) {
	portio.Out8(cmosIndex, cmosNMIOff|reg)
	portio.Out8(cmosData, val)
}

// waitPF spins until the RTC periodic flag is set, with the index port
// already pointing at register C. It reports false on timeout.
func waitPF() bool {
	for range pfSpinLimit {
		if portio.In8(cmosData)&rtcRegCPF != 0 {
			return true
		}
	}
	return false
}

// calibrateTSC reads the TSC (with counter) at calibrationEdges edges of
// the RTC periodic flag and returns its frequency in Hz, or 0 when there
// is no usable RTC. The RTC registers it touches are restored.
func calibrateTSC(counter func() uint64) uint64 {
	a := cmosRead(rtcRegA)
	b := cmosRead(rtcRegB)
	if a == 0xff && b == 0xff {
		// Nothing answers at the CMOS ports.
		return 0
	}

	cmosWrite(rtcRegA, a&^0x7f|rtcRegADV32K|rtcRegARateRS)
	cmosWrite(rtcRegB, b|rtcRegBPIE)
	defer func() {
		cmosWrite(rtcRegB, b)
		cmosWrite(rtcRegA, a)
		cmosRead(rtcRegC)
	}()

	// Clear a stale flag; the first edge seen after that is a real one.
	cmosRead(rtcRegC)
	var edges [calibrationEdges]uint64
	for i := range edges {
		if !waitPF() {
			return 0
		}
		edges[i] = counter()
	}
	return tscHzFromEdges(edges[:], rtcPeriodHz)
}
