//go:build tamago && amd64

package microvm

import (
	"sync/atomic"
	"unsafe"
)

// regs is a virtio-mmio register window. tamago maps 0xc0000000-0xffffffff
// uncached, and on tamago physical addresses are virtual ones, so the
// registers are read and written through plain pointers; sync/atomic
// keeps the compiler from merging or dropping the accesses, and on amd64
// each is a single MOV of the register's width.
type regs uintptr

func newRegs(base uintptr) regs { return regs(base) }

func (r regs) ptr(off uint32) unsafe.Pointer {
	return unsafe.Pointer(uintptr(r) + uintptr(off))
}

func (r regs) Read32(off uint32) uint32 { return atomic.LoadUint32((*uint32)(r.ptr(off))) }

func (r regs) Write32(off, v uint32) { atomic.StoreUint32((*uint32)(r.ptr(off)), v) }

//go:noinline
func (r regs) Read8(off uint32) uint8 { return *(*uint8)(r.ptr(off)) }

// Read16 is one 16-bit load (virtio 1.2 §4.2.2.2: le16 config fields are
// read at their natural width).
//
//go:noinline
func (r regs) Read16(off uint32) uint16 { return *(*uint16)(r.ptr(off)) }
