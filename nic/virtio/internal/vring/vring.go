// Package vring holds the split-virtqueue layout (virtio 1.2 §2.7) shared by
// the tamanet virtio-net driver and its device model: named offsets into the
// descriptor table and the available and used rings, atomic 16-bit access to
// their index fields, and the wrap-safe vring_need_event test.
//
// Ring fields are little-endian (virtio 1.2 §2.7, "le16"/"le32"). The atomic
// helpers read and write a whole aligned 32-bit word through sync/atomic and
// pick the 16-bit half, which relies on a little-endian CPU (amd64, arm,
// arm64: every tamago target).
package vring

import (
	"sync/atomic"
	"unsafe"
)

// Descriptor table entry, struct virtq_desc (virtio 1.2 §2.7.5): 16 bytes.
const (
	DescSize      = 16
	DescAddr      = 0  // le64 addr
	DescLen       = 8  // le32 len
	DescFlags     = 12 // le16 flags
	DescNext      = 14 // le16 next
	DescFNext     = 1  // VIRTQ_DESC_F_NEXT
	DescFWrite    = 2  // VIRTQ_DESC_F_WRITE: device writes the buffer
	DescFIndirect = 4  // VIRTQ_DESC_F_INDIRECT
)

// Available ring, struct virtq_avail (virtio 1.2 §2.7.6).
const (
	AvailFlags      = 0 // le16 flags
	AvailIdx        = 2 // le16 idx
	AvailRing       = 4 // le16 ring[num]
	AvailFNoIntr    = 1 // VIRTQ_AVAIL_F_NO_INTERRUPT
	availRingEntryB = 2
)

// Used ring, struct virtq_used (virtio 1.2 §2.7.8).
const (
	UsedFlags     = 0 // le16 flags
	UsedIdx       = 2 // le16 idx
	UsedRing      = 4 // struct virtq_used_elem ring[num]
	UsedElemSize  = 8
	UsedElemID    = 0 // le32 id
	UsedElemLen   = 4 // le32 len
	UsedFNoNotify = 1 // VIRTQ_USED_F_NO_NOTIFY
)

// MaxSize is the largest queue size a split virtqueue may have (§2.7).
const MaxSize = 32768

// DescTableSize returns the bytes of a descriptor table of num entries.
func DescTableSize(num int) int { return DescSize * num }

// AvailSize returns the bytes of an available ring of num entries, including
// used_event, rounded up to 4 so the last field's word is inside the slice.
func AvailSize(num int) int { return (AvailRing + availRingEntryB*num + 2 + 3) &^ 3 }

// UsedSize returns the bytes of a used ring of num entries, including
// avail_event, rounded up to 4.
func UsedSize(num int) int { return (UsedRing + UsedElemSize*num + 2 + 3) &^ 3 }

// AvailSlot returns the offset of ring[i] in the available ring.
func AvailSlot(i uint16, mask uint16) int { return AvailRing + availRingEntryB*int(i&mask) }

// UsedEvent returns the offset of used_event in an available ring of num
// entries (§2.7.10, VIRTIO_F_EVENT_IDX).
func UsedEvent(num int) int { return AvailRing + availRingEntryB*num }

// UsedSlot returns the offset of ring[i] in the used ring.
func UsedSlot(i uint16, mask uint16) int { return UsedRing + UsedElemSize*int(i&mask) }

// AvailEvent returns the offset of avail_event in a used ring of num entries.
func AvailEvent(num int) int { return UsedRing + UsedElemSize*num }

// word returns the aligned 32-bit word of b that holds the 16-bit field at
// off, and the shift of the field inside it. b must start 4-aligned; the
// index expression is bounds-checked so a bad offset panics on the caller's
// bug, never reaches outside b.
func word(b []byte, off int) (*uint32, uint) {
	w := off &^ 3
	b = b[w : w+4] // bounds check by slicing: no access the race detector would see
	return (*uint32)(unsafe.Pointer(unsafe.SliceData(b))), uint(off&2) * 8
}

// Load16 atomically loads the little-endian 16-bit field at off.
func Load16(b []byte, off int) uint16 {
	p, sh := word(b, off)
	return uint16(atomic.LoadUint32(p) >> sh)
}

// Store16 atomically stores v into the little-endian 16-bit field at off,
// leaving the other half of its word unchanged.
func Store16(b []byte, off int, v uint16) {
	p, sh := word(b, off)
	for {
		old := atomic.LoadUint32(p)
		nw := old&^(0xffff<<sh) | uint32(v)<<sh
		if atomic.CompareAndSwapUint32(p, old, nw) {
			return
		}
	}
}

// NeedEvent is vring_need_event (virtio 1.2 §2.7.10): whether moving an index
// from old to new passed event, computed modulo 2^16 so it stays right
// across wrap-around.
func NeedEvent(event, new, old uint16) bool {
	return new-event-1 < new-old
}
