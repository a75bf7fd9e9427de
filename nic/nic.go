// Package nic defines what every tamanet network driver offers the stack.
//
// A driver owns two descriptor rings. The receive side (Receive, Refill,
// RxKick) is driven by one goroutine, the poll loop. The transmit side
// (Transmit, Reclaim, TxKick) is driven by one goroutine at a time; the stack
// serialises its writers with one lock per batch, not per ring operation.
// The two sides may run concurrently with each other. Stats and LinkUp may be
// called from any goroutine.
//
// Buffers move by ownership, never by copy:
//
//   - Receive hands the caller a filled pool buffer whose body is one
//     Ethernet frame (no FCS); the caller must Put it back to the pool.
//   - Refill takes fresh buffers from the pool and posts them to the device.
//   - Transmit takes a buffer whose body is one Ethernet frame; on success
//     the driver owns it until Reclaim returns it to the pool. On error the
//     caller still owns it.
//
// No method allocates; this package has no gVisor types.
package nic

import (
	"github.com/tamanet/tamanet/alloc"
)

// Refusal is the error Transmit returns for a frame it did not post. The
// caller still owns the buffer, and the driver has counted nothing: Cause
// says why, and the caller counts it once if it gives the frame up.
type Refusal struct {
	Cause Cause
}

// Error returns "nic: transmit refused: " and the cause's name.
func (r *Refusal) Error() string { return "nic: transmit refused: " + r.Cause.String() }

// The refusals Transmit returns. They are shared values, so refusing costs
// no allocation; test for one with errors.Is, or read its cause with
// CauseOf.
var (
	// ErrRingFull: no transmit slot is free; Reclaim may free some.
	ErrRingFull = &Refusal{Cause: RingFull}
	// ErrLinkDown: the link is down, or the device is being reset.
	ErrLinkDown = &Refusal{Cause: LinkDown}
	// ErrRunt: the frame is shorter than an Ethernet header.
	ErrRunt = &Refusal{Cause: Runt}
	// ErrOversize: the frame is longer than Info.MaxFrame.
	ErrOversize = &Refusal{Cause: Oversize}
	// ErrHeadroom: the buffer has less than Info.Headroom free in front
	// of the frame.
	ErrHeadroom = &Refusal{Cause: Malformed}
)

// CauseOf returns the cause of err as Transmit returns it: a Refusal's
// Cause, TxError for any other error. It does not unwrap, so that it never
// allocates.
func CauseOf(err error) Cause {
	if r, ok := err.(*Refusal); ok {
		return r.Cause
	}
	return TxError
}

// FrameOverhead is what a frame carries on top of its payload, FCS left
// out: the 14-byte Ethernet header (IEEE 802.3 clause 3.1.1) and a 4-byte
// 802.1Q VLAN tag (IEEE 802.1Q clause 9).
const FrameOverhead = 18

// Info describes a device. It does not change after initialisation.
type Info struct {
	// Name is the driver name shown in the ready line and stats
	// ("virtio-net", "enet").
	Name string
	// MAC is the station address.
	MAC [6]byte
	// MTU is the largest Ethernet payload the device sends and receives.
	MTU int
	// MaxFrame is the longest frame, without FCS, the device sends and
	// receives: MTU plus FrameOverhead. Transmit refuses longer ones.
	MaxFrame int
	// Headroom is the prefix a transmit buffer must have free in front of
	// the frame for the driver's own header (12 for virtio-net).
	Headroom int
	// RxRing and TxRing are the ring sizes in slots.
	RxRing, TxRing int
}

// Device is a network driver as the stack sees it.
type Device interface {
	// Info returns the device's fixed properties.
	Info() Info
	// Pool returns the pool the driver takes its receive buffers from and
	// returns its transmit buffers to. A transmit buffer must come from
	// it.
	Pool() *alloc.Pool
	// LinkUp reports the current link state.
	LinkUp() bool

	// Receive returns the next received frame, or nil when the receive
	// ring has nothing completed. The caller owns the returned buffer.
	Receive() *alloc.Buffer
	// Refill posts fresh pool buffers to every free receive slot and
	// returns how many it posted.
	Refill() int
	// RxKick tells the device about buffers posted since the last kick,
	// if the device asked to be told.
	RxKick()

	// Transmit posts b, whose body is one Ethernet frame with at least
	// Info().Headroom bytes free in front. On success the driver owns b.
	Transmit(b *alloc.Buffer) error
	// Reclaim returns completed transmit buffers to the pool and returns
	// how many it freed.
	Reclaim() int
	// TxKick tells the device about frames posted since the last kick, if
	// the device asked to be told.
	TxKick()

	// Stats fills s with a snapshot of the counters.
	Stats(s *Stats)
}

// Maintainer is implemented by drivers with slow-path work that must stay
// off the per-packet path: noticing a device that asked to be reset or
// wedged a ring, and recovering from it. The stack calls Maintain from the
// poll goroutine while it holds the transmit side, so Maintain owns both
// rings for the call; it runs every few hundred milliseconds, never per
// packet. It returns true when it reset the device and rebuilt the rings;
// buffers the device held are back in the pool by then, and the receive
// ring still has to be refilled and kicked.
type Maintainer interface {
	Maintain() (reset bool)
}

// GroupFilter is implemented by drivers whose device drops multicast frames
// unless it is told which group addresses to receive (a hash or exact
// filter). The stack calls SetGroups on the slow path, from the poll
// goroutine with the transmit side held, whenever the set changes: at start
// and when IPv6 gains or loses an address. groups is the whole set (IPv6
// needs all-nodes 33:33:00:00:00:01 and a solicited-node group
// 33:33:ff:xx:xx:xx per address, RFC 2464 section 7); the driver keeps what
// it needs of it across a device reset. A filter may let more groups through
// than asked (a hash collides), never fewer. Broadcast is always received.
type GroupFilter interface {
	SetGroups(groups [][6]byte)
}
