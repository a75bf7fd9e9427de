//go:build tamago

// Regs over MMIO; see doc.go.

package mmio

import (
	"sync/atomic"
	"unsafe"
)

// Regs is a register window starting at Base. It is a value: copying it
// copies the address, and using one allocates nothing (boards use it from
// the scheduler's idle hook).
type Regs struct {
	Base uintptr
}

// New returns the register window at base.
func New(base uintptr) *Regs { return &Regs{Base: base} }

// ptr turns Base+off into a pointer. Going through a pointer-to-uintptr
// keeps vet's unsafeptr check quiet about a deliberate conversion: the
// address is device memory, not a Go object.
func (r Regs) ptr(off uint32) unsafe.Pointer {
	a := r.Base + uintptr(off)
	return *(*unsafe.Pointer)(unsafe.Pointer(&a))
}

// Read32 loads the 32-bit register at off.
func (r Regs) Read32(off uint32) uint32 {
	return atomic.LoadUint32((*uint32)(r.ptr(off)))
}

// Write32 stores v into the 32-bit register at off.
func (r Regs) Write32(off, v uint32) {
	atomic.StoreUint32((*uint32)(r.ptr(off)), v)
}

// Read8 loads the byte at off (device configuration space).
//
//go:noinline
func (r Regs) Read8(off uint32) uint8 {
	return *(*uint8)(r.ptr(off))
}

// Read16 loads the 16-bit little-endian field at off, 2-byte aligned, with
// one access (virtio 1.2 §4.2.2.2: config fields at their natural width).
//
//go:noinline
func (r Regs) Read16(off uint32) uint16 {
	return *(*uint16)(r.ptr(off))
}

// Regs has the method set of virtio.Regs (which includes enet.Regs'; not
// imported, to keep this package free of dependencies).
var _ interface {
	Read32(off uint32) uint32
	Write32(off, v uint32)
	Read8(off uint32) uint8
	Read16(off uint32) uint16
} = Regs{}
