//go:build tamago && arm

package imx6ul

import (
	"sync/atomic"
	"unsafe"
)

// Regs is a 32-bit register window at a physical address (tamago maps
// peripherals flat, physical equals virtual). It implements enet.Regs.
// sync/atomic keeps the compiler from merging, reordering or dropping the
// accesses; on ARMv7 each is one LDR or STR of the register's width between
// DMBs. Go's DMB is inner-shareable only, and the ENET's DMA is outside that
// domain, so every write is preceded by a DSB SY as well: descriptors and
// frames written to DMA memory have reached it before a doorbell (RDAR,
// TDAR) makes the MAC read them, as Linux's wmb() before writel ensures.
type Regs uintptr

// dsb is a full-system data synchronisation barrier (barrier_arm.s).
func dsb()

// ptr turns the register's physical address into a pointer. The address
// is not Go memory, so no pointer arithmetic rule can be broken; unsafe.Add
// from nil says so without a uintptr-to-Pointer conversion.
func (r Regs) ptr(off uint32) *uint32 {
	return (*uint32)(unsafe.Add(nil, uintptr(r)+uintptr(off)))
}

// Read32 reads the 32-bit register at byte offset off.
func (r Regs) Read32(off uint32) uint32 { return atomic.LoadUint32(r.ptr(off)) }

// Write32 writes v to the 32-bit register at byte offset off.
func (r Regs) Write32(off, v uint32) {
	dsb()
	atomic.StoreUint32(r.ptr(off), v)
}
