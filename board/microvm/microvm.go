//go:build tamago && amd64

package microvm

import (
	"runtime/goos"
	_ "unsafe"

	"github.com/usbarmory/tamago/amd64"
	"github.com/usbarmory/tamago/dma"
	"github.com/usbarmory/tamago/kvm/pvclock"
	"github.com/usbarmory/tamago/soc/intel/ioapic"
	"github.com/usbarmory/tamago/soc/intel/uart"
)

// Peripheral addresses of the QEMU microvm machine (QEMU hw/i386/microvm.c,
// docs/system/i386/microvm.rst).
const (
	// COM1 is the first 16550 UART, the console.
	COM1 = 0x3f8

	// I/O APICs: GSI 0-23 and 24-47.
	IOAPIC0Base = 0xfec00000
	IOAPIC1Base = 0xfec10000

	// VirtioMMIOBase is the first of microvm's virtio-mmio transports,
	// 512 bytes apart. QEMU fills them from the top, so the single
	// "-device virtio-net-device" lands in slot 23.
	VirtioMMIOBase = 0xfeb00000
	// VirtioNet0Base is the register block of that device.
	VirtioNet0Base = VirtioMMIOBase + 0x2e00
	// VirtioNet0IRQ is its GSI, routed to the CPU by NIC.EnableInterrupt.
	VirtioNet0IRQ = 47
)

// Peripheral instances.
var (
	// AMD64 is the boot processor.
	AMD64 = &amd64.CPU{
		// GetTime reads the raw TSC as nanoseconds until Init has
		// found the TSC frequency.
		TimerMultiplier: 1,
	}

	IOAPIC0 = &ioapic.IOAPIC{Index: 0, Base: IOAPIC0Base, GSIBase: 0}
	IOAPIC1 = &ioapic.IOAPIC{Index: 1, Base: IOAPIC1Base, GSIBase: 24}

	// UART0 is COM1, the console.
	UART0 = &uart.UART{Index: 1, Base: COM1}
)

// ClockSource says where the clock's rate comes from: "kvmclock" (KVM
// gives the TSC frequency and kvmclock keeps the time), "cpuid" (KVM
// reports the TSC frequency), "apic" (the TSC timed against QEMU's APIC
// timer, the TCG case), "rtc" (timed against the CMOS RTC's periodic flag)
// or "none" (nothing worked; 1 GHz is assumed).
var ClockSource = "none"

// muted drops console output while amd64.CPU.Init runs: without KVM it
// prints a warning that the TSC frequency is unknown, which Init then
// fixes by calibrating against the RTC.
var muted bool

//go:linkname nanotime runtime/goos.Nanotime
func nanotime() int64 {
	return AMD64.GetTime()
}

// Init runs early in the runtime's start-up, after the world has started:
// CPU, interrupt controllers, console and clock.
//
//go:linkname Init runtime/goos.Hwinit1
func Init() {
	muted = true
	AMD64.Init()
	muted = false

	IOAPIC0.Init()
	IOAPIC1.Init()
	UART0.Init()

	initClock()

	goos.Exit = func(int32) {
		// QEMU's microvm has no reset or power-off device a guest can
		// use: a triple fault ends the machine, and with -no-reboot
		// QEMU exits.
		amd64.Fault()
	}
}

// initClock makes sure the TSC frequency is known and keeps nanotime
// continuous across the change of rate (it ran on raw TSC ticks so far).
func initClock() {
	f := AMD64.Features()
	hz := uint64(AMD64.Freq())

	plausible := hz >= minTSCHz && hz <= maxTSCHz

	switch {
	case f.KVM && plausible && f.KVMClockMSR != 0:
		ClockSource = "kvmclock"
	case f.KVM && plausible:
		ClockSource = "cpuid"
	default:
		// Without KVM (QEMU TCG) the CPUID frequency leaves are
		// absent or describe the host CPU, not the rate of the TSC
		// QEMU emulates: measure it.
		if hz = calibrateTSCByAPIC(AMD64.Counter); hz != 0 {
			ClockSource = "apic"
		} else if hz = calibrateTSC(AMD64.Counter); hz != 0 {
			ClockSource = "rtc"
		} else {
			// No source at all: assume 1 GHz so that timers are
			// at least plausible.
			hz = 1_000_000_000
			ClockSource = "none"
			print("microvm: WARNING: TSC frequency unknown, assuming 1 GHz\n")
		}
	}

	elapsed := AMD64.GetTime()
	AMD64.TimerMultiplier = 1e9 / float64(hz)
	AMD64.SetTime(elapsed)
	tscHz = hz
}

// tscHz is the TSC frequency the clock runs on.
var tscHz uint64

// TSCHz returns the TSC frequency the clock runs on.
func TSCHz() uint64 { return tscHz }

func init() {
	// Trap CPU exceptions (vectors 0-31); this also loads tamago's IDT.
	AMD64.EnableExceptions()

	// Halt when idle, woken by the APIC timer: its rate is 1 GHz where
	// it timed the TSC, and is measured against the TSC otherwise.
	if ClockSource == "apic" {
		enableHaltIdle(qemuAPICHz)
	} else {
		enableHaltIdle(measureAPICHz(AMD64.Counter, tscHz))
	}

	// tamago's global DMA region, outside Go's RAM.
	if err := dma.Init(dmaStart, DMASize); err != nil {
		panic(err)
	}

	// Under KVM, kvmclock corrects a TSC that is not invariant; without
	// KVM there is nothing to do (tamago's pvclock.Init would panic).
	if f := AMD64.Features(); f.KVM && f.KVMClockMSR != 0 {
		pvclock.Init(AMD64)
	}
}
