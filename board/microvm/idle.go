//go:build tamago && amd64

package microvm

import (
	"encoding/binary"
	"runtime/goos"
	"sync/atomic"
	"unsafe"

	"github.com/usbarmory/tamago/amd64"
)

// defined in idle_amd64.s
func cli()
func stiHlt()
func sidt(p *[10]byte)
func wakeHandler()
func wakeHandlerAddr() uintptr

const (
	// wakeVector is the interrupt vector of the idle timer: tamago's
	// IRQ_WAKEUP, whose gate (wakeHandler) just counts, acknowledges
	// and returns. It is the highest priority class, so an interrupt
	// still in service (not yet acknowledged) never holds it back.
	wakeVector = amd64.IRQ_WAKEUP

	// Gate descriptor (Intel SDM Vol. 3A §6.14.1, "64-Bit Mode IDT"):
	// 16 bytes, present 64-bit interrupt gate in the kernel code segment.
	gateSize      = 16
	gateSelector  = 1 << 3 // tamago's GDT: code descriptor at index 1
	gateInterrupt = 0x8e   // P=1, DPL=0, type 1110 (interrupt gate)

	// minHalt is the shortest wait worth a halt: waking takes a host
	// timer and an interrupt, tens of microseconds under TCG.
	minHalt = 100_000 // ns
	// maxHalt bounds one halt, so the scheduler looks around now and
	// then even with no timer due.
	maxHalt = 10_000_000 // ns
)

// wakeups counts idle timer interrupts taken by wakeHandler, so
// enableHaltIdle can see the first arrive; haltIdleOn says the idle loop
// halts.
var (
	wakeups    uint64
	haltIdleOn bool
)

// apicHz is the local APIC timer's rate, for the idle timer.
var apicHz uint64

// enableHaltIdle makes the scheduler halt the CPU while it waits for a
// timer, woken by a one-shot local APIC timer interrupt, instead of
// spinning (tamago's default for waits with a timer due), which would burn
// a host core while idle. hz is the APIC timer's rate.
func enableHaltIdle(hz uint64) {
	if hz == 0 {
		return
	}
	apicHz = hz
	gate := idtGate(wakeVector)
	if gate == nil {
		return
	}
	setGate(gate, wakeHandlerAddr())

	// The APIC must be software-enabled (spurious vector register, SDM
	// §11.4.7.2) for its timer to deliver interrupts.
	AMD64.LAPIC.Enable()
	r := lapic
	r.Write32(lapicInitCount, 0)
	r.Write32(lapicDivideConf, lapicDivideByOne)
	// One-shot mode (bits 17-18 = 00), unmasked.
	r.Write32(lapicLVTTimer, wakeVector)

	// Check that the interrupt arrives before relying on it to end a
	// halt: a halt it never ends would hang the machine.
	before := atomic.LoadUint64(&wakeups)
	r.Write32(lapicInitCount, uint32(max(apicHz/100_000, 1))) // 10 µs
	for range lapicSpinLimit {
		if atomic.LoadUint64(&wakeups) != before {
			goos.Idle = haltIdle
			haltIdleOn = true
			return
		}
	}
	r.Write32(lapicLVTTimer, lapicLVTMasked)
	print("microvm: idle timer interrupt does not arrive; idling by spinning\n")
}

// setGate makes gate a present 64-bit interrupt gate to handler.
func setGate(gate []byte, handler uintptr) {
	h := uint64(handler)
	binary.LittleEndian.PutUint16(gate[0:], uint16(h))
	binary.LittleEndian.PutUint16(gate[2:], gateSelector)
	gate[4] = 0 // IST
	gate[5] = gateInterrupt
	binary.LittleEndian.PutUint16(gate[6:], uint16(h>>16))
	binary.LittleEndian.PutUint32(gate[8:], uint32(h>>32))
	binary.LittleEndian.PutUint32(gate[12:], 0)
}

// idtGate returns the interrupt descriptor table entry of vector, or nil
// if the table does not have one.
func idtGate(vector int) []byte {
	var idtr [10]byte
	sidt(&idtr)
	limit := binary.LittleEndian.Uint16(idtr[0:])
	base := uintptr(binary.LittleEndian.Uint64(idtr[2:]))
	if int(limit) < (vector+1)*gateSize-1 || base == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Add(nil, base+uintptr(vector)*gateSize)), gateSize)
}

// haltIdle is the scheduler's idle hook: wait for the timer due at
// pollUntil (nanotime) by halting, or return at once for short waits. A
// NIC interrupt, before or during the halt, wakes the NIC goroutine
// (wakeNIC) and returns, so the scheduler runs it.
func haltIdle(pollUntil int64) {
	if wakeNIC() {
		return
	}
	wait := pollUntil - nanotime()
	if wait < minHalt {
		return
	}
	wait = min(wait, maxHalt)

	r := lapic
	count := max(uint64(wait)*apicHz/1e9, 1)
	cli()
	r.Write32(lapicInitCount, uint32(min(count, 1<<32-1)))
	stiHlt()
	r.Write32(lapicInitCount, 0)
	wakeNIC()
}
