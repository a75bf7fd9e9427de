// Package nic defines what every tamanet network driver offers the stack,
// and the protocol both sides keep.
//
// A driver owns two descriptor rings and one packet pool (Device.Pool). The
// receive side (Receive, Refill, RxKick) is driven by one goroutine, the
// poll loop. The transmit side (Transmit, Reclaim, TxKick) is driven by one
// goroutine at a time; the stack serialises its writers with one lock per
// batch, not per ring operation. The two sides may run concurrently with
// each other. Pool, Info, Stats and LinkUp may be called from any
// goroutine.
//
// Buffers move by ownership, never by copy, and always belong to the
// driver's pool; whoever holds one gives it back with alloc.Buffer.Free:
//
//   - Receive hands the caller a filled buffer whose body is one Ethernet
//     frame (no FCS); the caller owns it and frees it.
//   - Refill takes fresh buffers from the pool and posts them to the device.
//   - Transmit takes a buffer from the driver's pool whose body is one
//     Ethernet frame; on success the driver owns it until Reclaim frees
//     it.
//
// A poll step runs Reclaim, then Receive up to a budget, then Refill, then
// RxKick if Refill posted anything. Reclaim comes first so that transmit
// buffers are back in the pool before Refill needs them; one RxKick per
// step, and one TxKick per transmit batch, keep notifications to one per
// batch. The stack's link endpoint is the one place that runs this order.
//
// Drivers check every value the device wrote before using it, and count a
// bad one under exactly one Cause (Stats). What a driver cannot post it
// refuses without counting: Transmit returns a *Refusal (too short, too
// long for Info.MaxFrame, too little headroom, link down, ring full) and
// the caller, who still owns the buffer, counts the drop once as its own
// (a full ring is only counted as back-pressure, RingStats.Full).
//
// Slow-path work has its own optional interfaces, called from the poll
// goroutine with the transmit side held, never per packet: Maintainer
// (reset and recovery), LinkPoller (asking the PHY for the link state) and
// GroupFilter (the multicast filter).
//
// No method on the per-packet path allocates; this package has no gVisor
// types.
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

	// Transmit posts b, a buffer of Pool whose body is one Ethernet frame
	// with at least Info().Headroom bytes free in front. On success the
	// driver owns b. Otherwise it returns a *Refusal, counts no drop
	// (a full ring only in RingStats.Full), and b is still the caller's.
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

// LinkPoller is implemented by drivers that learn the link state only by
// asking (a PHY read over MDIO). PollLink reads it, publishes it for LinkUp
// and Stats, and re-programs the device when the negotiated speed or duplex
// changed; if that rebuilt the rings, PollLink has refilled and kicked the
// receive ring itself. It is slow-path work under Maintain's rules: the
// stack calls it from the poll goroutine with the transmit side held, about
// once a second, never per packet.
type LinkPoller interface {
	PollLink()
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
