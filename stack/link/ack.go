package link

import (
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/seqnum"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Plain ACKs wait for the step's Flush.
//
// gVisor's TCP has no delayed ACK: once it has processed the segments that
// arrived, it sends an ACK at once, before the application has read them.
// For a request and its reply that is two frames and two doorbells where a
// kernel sends one: the reply carries the same acknowledgment. So Post
// keeps a plain ACK (no data, no SYN, FIN or RST, no SACK blocks) back
// until the step's Flush, and a later segment of the same connection that
// carries data (or a FIN) and acknowledges as much, or a later plain ACK
// that acknowledges more, takes its place: the ACK is released, counted in
// Stats.TxAcksMerged. Post wakes the runner for the ACK, which goes out at
// that step's Flush or, at the latest, its Reclaim, before the step
// receives more: a reply written before then goes out alone, kicked at
// once on an idle ring. (Held behind a receive batch, a receiver's ACKs
// came late and bunched, and the sender's bursts overflowed the ring.)
//
// An ACK with SACK blocks reports out-of-order data (RFC 2018) and a
// repeated acknowledgment number may be a duplicate ACK the peer counts
// for fast retransmit (RFC 5681 §3.2), so neither is ever replaced: an ACK
// with SACK blocks is not kept, and a plain ACK that acknowledges no more
// than the one kept goes out after it.

// MaxPendingAcks is how many connections can have a plain ACK waiting for
// the step's Flush; one more is posted at once.
const MaxPendingAcks = 16

// flowKey names a TCP connection as the headers spell it: the IP version,
// the addresses and the ports.
type flowKey struct {
	v6   bool
	addr [32]byte
	port [4]byte
}

// tcpInfo is what ackInfo reads from an outgoing TCP segment.
type tcpInfo struct {
	flow  flowKey
	ack   seqnum.Value
	flags header.TCPFlags
	data  bool // carries payload
	sack  bool // carries SACK blocks
}

// pendingAck is one plain ACK waiting for Flush.
type pendingAck struct {
	pkt  *stack.PacketBuffer
	flow flowKey
	ack  seqnum.Value
}

// ackInfo reads the TCP fields of pkt; ok is false for anything that is
// not a whole TCP segment over IPv4 or IPv6 with its headers in place.
func ackInfo(pkt *stack.PacketBuffer) (ti tcpInfo, ok bool) {
	th, ok := outTCP(pkt, &ti.flow)
	if !ok {
		return ti, false
	}
	ti.ack = seqnum.Value(th.AckNumber())
	ti.flags = th.Flags()
	// Not GSOOptions: with host GSO gVisor sets them on every segment,
	// plain ACKs included.
	ti.data = pkt.Data().Size() > 0
	ti.sack = hasSACK(th.Options())
	return ti, true
}

// outTCP returns the TCP header of pkt, a segment gVisor sends, and sets
// *flow to its connection; ok is false for anything that is not TCP over
// IPv4 or IPv6 with its headers in place.
func outTCP(pkt *stack.PacketBuffer, flow *flowKey) (th header.TCP, ok bool) {
	if pkt.TransportProtocolNumber != header.TCPProtocolNumber {
		return nil, false
	}
	nh := pkt.NetworkHeader().Slice()
	*flow = flowKey{}
	switch pkt.NetworkProtocolNumber {
	case header.IPv4ProtocolNumber:
		if len(nh) < header.IPv4MinimumSize {
			return nil, false
		}
		copy(flow.addr[:8], nh[12:20])
	case header.IPv6ProtocolNumber:
		if len(nh) < header.IPv6MinimumSize {
			return nil, false
		}
		flow.v6 = true
		copy(flow.addr[:], nh[8:40])
	default:
		return nil, false
	}
	th = header.TCP(pkt.TransportHeader().Slice())
	if len(th) < header.TCPMinimumSize || int(th.DataOffset()) > len(th) || int(th.DataOffset()) < header.TCPMinimumSize {
		return nil, false
	}
	copy(flow.port[:], th[:4])
	return th, true
}

// hasSACK reports whether TCP options opts hold a SACK block option
// (RFC 2018 §3, kind 5).
func hasSACK(opts []byte) bool {
	for i := 0; i < len(opts); {
		switch opts[i] {
		case header.TCPOptionEOL:
			return false
		case header.TCPOptionNOP:
			i++
			continue
		case header.TCPOptionSACK:
			return true
		}
		if i+1 >= len(opts) || opts[i+1] < 2 {
			return false
		}
		i += int(opts[i+1])
	}
	return false
}

// plainACK reports whether ti is an ACK that Post may keep back.
func (ti *tcpInfo) plainACK() bool {
	return !ti.data && !ti.sack && ti.flags&^header.TCPFlagPsh == header.TCPFlagAck
}

// supersedes reports whether ti, sent after p on the same connection,
// tells the peer all p does.
func (ti *tcpInfo) supersedes(p *pendingAck) bool {
	if ti.flags&header.TCPFlagAck == 0 || ti.flags&(header.TCPFlagRst|header.TCPFlagSyn) != 0 || ti.ack.LessThan(p.ack) {
		return false
	}
	if ti.data || ti.flags&header.TCPFlagFin != 0 {
		return true
	}
	return ti.plainACK() && p.ack.LessThan(ti.ack)
}

// findAck returns the index of the pending ACK of flow, or -1. Caller
// holds txMu.
func (e *Endpoint) findAck(flow *flowKey) int {
	for i := 0; i < e.nacks; i++ {
		if e.acks[i].flow == *flow {
			return i
		}
	}
	return -1
}

// dropAck releases pending ACK i, superseded. Caller holds txMu.
func (e *Endpoint) dropAck(i int) {
	e.acks[i].pkt.DecRef()
	e.removeAck(i)
	e.acksMerged.Add(1)
}

// removeAck takes pending ACK i off the list, keeping the others in order.
// Caller holds txMu.
func (e *Endpoint) removeAck(i int) {
	copy(e.acks[i:e.nacks], e.acks[i+1:e.nacks])
	e.nacks--
	e.acks[e.nacks] = pendingAck{}
	e.npending.Store(int32(e.nacks))
}

// keepAck keeps pkt, a plain ACK of ti.flow, for Flush; false when
// MaxPendingAcks are waiting. Caller holds txMu.
func (e *Endpoint) keepAck(pkt *stack.PacketBuffer, ti *tcpInfo) bool {
	if e.nacks == MaxPendingAcks {
		return false
	}
	e.acks[e.nacks] = pendingAck{pkt: pkt.IncRef(), flow: ti.flow, ack: ti.ack}
	e.nacks++
	e.npending.Store(int32(e.nacks))
	return true
}

// postAcks posts the pending ACKs in the order they were kept, held back
// like any packet if the ring is full. Caller holds txMu.
func (e *Endpoint) postAcks(maxFrame int) {
	for e.nacks > 0 {
		e.postAck(0, maxFrame)
	}
}

// postAck takes pending ACK i off the list and posts it (postOne),
// counting a drop. Caller holds txMu.
func (e *Endpoint) postAck(i, maxFrame int) {
	pkt := e.acks[i].pkt
	e.removeAck(i)
	if cause, ok, _ := e.postOne(pkt, maxFrame); !ok {
		e.tx.Drop(cause)
	}
	pkt.DecRef()
}

// releaseAcks drops every pending ACK's reference, uncounted: the
// endpoint is closing. Caller holds txMu.
func (e *Endpoint) releaseAcks() {
	for e.nacks > 0 {
		e.acks[0].pkt.DecRef()
		e.removeAck(0)
	}
}
