// Package bd is the layout of the ENET enhanced buffer descriptor (i.MX6ULL
// RM 22.6.14, "Enhanced buffer descriptors", selected by ECR.EN1588) shared
// by the driver and the device model, and the atomic access to its control
// word.
//
// An enhanced descriptor is 32 bytes; with ECR.DBSWP set the MAC reads and
// writes it little-endian. Its first 8 bytes are the legacy descriptor (RM
// 22.6.13):
//
//	offset  0: data length (16 bits)
//	offset  2: status / control (16 bits)
//	offset  4: data buffer pointer (32 bits)
//	offset  8: extended status / control (ESC, 32 bits)
//	offset 12: receive: payload checksum, header length, protocol type
//	offset 16: BDU: the MAC set bit 31 when it updated the descriptor
//	offset 20: 1588 timestamp; 24..31 reserved
//
// Length and status together form the control word at offset 0. Whoever
// hands a descriptor to the other side (the driver setting E/R, the device
// clearing it) writes the whole word with one atomic store, after every
// other write to the descriptor and its buffer; the other side reads it with
// one atomic load before reading anything else. That store/load pair is the
// ownership hand-over and the memory barrier.
package bd

import (
	"sync/atomic"
	"unsafe"
)

// Layout (i.MX6ULL RM 22.6.14, enhanced receive and transmit descriptors):
// the descriptor's size and the offsets of its buffer pointer, extended
// status/control word, receive protocol word and BDU word. Length and
// status are read and written together as the control word (Load, Store).
const (
	Size = 32
	Addr = 4
	ESC  = 8
	Prot = 12
	BDU  = 16
)

// Status bits common to rx and tx descriptors.
const (
	W = 1 << 13 // wrap: the next descriptor is at RDSR/TDSR
	L = 1 << 11 // last descriptor of a frame
)

// Receive status bits (i.MX6ULL RM Table 22-35).
const (
	E   = 1 << 15 // empty: owned by the MAC
	RO1 = 1 << 14
	RO2 = 1 << 12
	M   = 1 << 8 // miss (promiscuous)
	BC  = 1 << 7 // broadcast
	MC  = 1 << 6 // multicast
	LG  = 1 << 5 // frame length violation (> RCR.MAX_FL)
	NO  = 1 << 4 // non-octet aligned frame
	CR  = 1 << 2 // CRC or frame error
	OV  = 1 << 1 // FIFO overrun
	TR  = 1 << 0 // truncated (> FTRL)

	// RxErrors are the error bits, valid only when L is set.
	RxErrors = LG | NO | CR | OV | TR
)

// Transmit status bits (i.MX6ULL RM 22.6.13/22.6.14 transmit descriptor
// field definitions).
const (
	R  = 1 << 15 // ready: owned by the MAC
	TC = 1 << 10 // append the CRC
)

// Software bits: RO1/RO2 on receive, TO1/TO2 on transmit (the same bit
// positions). The MAC never writes them (RM Table 22-35, 22.6.13 transmit
// field definitions), so a completion carries them as the driver posted
// them.
const (
	Soft1 = RO1
	Soft2 = RO2
)

// Receive ESC bits (RM 22.6.14, enhanced receive descriptor). The MAC
// writes them in the last descriptor of a frame; the driver sets RxInt when
// it posts.
const (
	RxInt = 1 << 23 // raise EIR.RXB/RXF for this descriptor
	ICE   = 1 << 5  // IP header checksum error
	PCR   = 1 << 4  // protocol (TCP, UDP, ICMP) checksum error
	VLAN  = 1 << 2  // the frame has a VLAN tag
	IPv6  = 1 << 1  // the frame is IPv6
	Frag  = 1 << 0  // the frame is an IPv4 fragment
)

// Transmit ESC bits (RM 22.6.14, enhanced transmit descriptor), set by the
// driver in the first descriptor of a frame.
const (
	TxInt = 1 << 30 // raise EIR.TXB/TXF for this descriptor
	TS    = 1 << 29 // timestamp the frame (unused)
	PINS  = 1 << 28 // insert the protocol checksum (needs TACC.PROCHK)
	IINS  = 1 << 27 // insert the IPv4 header checksum (needs TACC.IPCHK)
)

// BDUDone is the BDU word's bit 31: the MAC has updated the descriptor.
const BDUDone = 1 << 31

// Word builds the control word from a length and a status.
func Word(length, status uint16) uint32 { return uint32(length) | uint32(status)<<16 }

// Split returns the length and status of a control word.
func Split(w uint32) (length, status uint16) { return uint16(w), uint16(w >> 16) }

// word returns the control word of the descriptor at off. off must be a
// multiple of Size inside mem and mem 4-byte aligned (rings are carved
// 64-byte aligned). Both targets (amd64, arm) are little-endian, so the
// native 32-bit word is the descriptor's little-endian length|status<<16.
func word(mem []byte, off int) *uint32 {
	w := mem[off : off+4] // bounds check without a (racy) read
	return (*uint32)(unsafe.Pointer(unsafe.SliceData(w)))
}

// Load reads the control word of the descriptor at off (acquire).
func Load(mem []byte, off int) uint32 { return atomic.LoadUint32(word(mem, off)) }

// Store writes the control word of the descriptor at off (release).
func Store(mem []byte, off int, w uint32) { atomic.StoreUint32(word(mem, off), w) }
