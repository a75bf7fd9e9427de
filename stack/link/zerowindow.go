package link

import (
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/seqnum"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Acknowledgments past a zero window.
//
// gVisor's TCP tests an incoming segment against its latest receive window
// rounded down to the window scale (tcp.receiver.acceptable), while the
// edges it announced before were rounded from larger windows: as a reader
// stalls, the announced edge moves back by up to 2^scale-1 bytes. A peer
// that sent up to an earlier edge, as it may (RFC 9293 §3.8.6), is then
// ahead of RCV.NXT; gVisor drops those bytes, and once the window rounds
// to zero it finds none of the peer's segments acceptable, since a
// zero-length segment is acceptable to a zero window only at RCV.NXT
// exactly and the peer's ACKs carry its SND.NXT. gVisor drops them
// unprocessed: it never learns that its own data was acknowledged or that
// the peer's window opened, and an application that writes before it
// reads (an echo) waits forever behind a window that never opens.
//
// RFC 9293 §3.10.7.4 asks for this allowance: "If the RCV.WND is zero, no
// segments will be acceptable, but special allowance should be made to
// accept valid ACKs, URGs, and RSTs." The endpoint makes it for ACKs. It
// notes each connection whose latest segment out announced a zero window,
// with the acknowledgment number it carried (gVisor's RCV.NXT, which
// cannot move while the window is zero). A plain ACK in on such a
// connection (no data; no SYN, FIN, RST or URG) whose sequence number is
// past RCV.NXT by less than 2^14, the largest scale (RFC 7323 §2.3), so by
// less than one rounding, is delivered with RCV.NXT as its sequence number
// and its TCP checksum updated (RFC 1624). It carries no data: gVisor
// takes it as the acknowledgment and window update it is, and nothing
// else changes. Any later segment out with a window, a SYN or a RST ends
// the note. The allowance costs nothing while no window is zero: one
// atomic load per frame received, a two-byte read per segment sent.

// MaxZeroWindows is how many connections with a zero receive window the
// endpoint keeps a note of; a new one replaces the oldest
// (Stats.ZeroWindowsEvicted).
const MaxZeroWindows = 16

// zeroWindowReach is how far past RCV.NXT a plain ACK may start and still
// be taken at a zero window: gVisor's rounding moves its announced edge
// back by less than 2^scale, and the scale is at most 14 (RFC 7323 §2.3).
const zeroWindowReach = 1 << 14

// zeroWindow is a connection whose latest segment out announced a zero
// window: its flow as outgoing headers spell it, and the acknowledgment
// number of that segment.
type zeroWindow struct {
	flow flowKey
	ack  seqnum.Value
}

// noteWindow notes whether pkt, a segment gVisor sends, announces a zero
// receive window. Unless some window is zero it reads only the window
// field.
func (e *Endpoint) noteWindow(pkt *stack.PacketBuffer) {
	if pkt.TransportProtocolNumber != header.TCPProtocolNumber {
		return
	}
	th := header.TCP(pkt.TransportHeader().Slice())
	if len(th) < header.TCPMinimumSize {
		return
	}
	flags := th.Flags()
	zero := th.WindowSize() == 0 && flags&header.TCPFlagAck != 0 && flags&(header.TCPFlagSyn|header.TCPFlagRst) == 0
	if !zero && e.nzero.Load() == 0 {
		return
	}
	var flow flowKey
	if _, ok := outTCP(pkt, &flow); !ok {
		return
	}
	ack := seqnum.Value(th.AckNumber())
	e.zmu.Lock()
	defer e.zmu.Unlock()
	i := e.findZero(&flow)
	switch {
	case zero && i >= 0:
		e.zero[i].ack = ack
	case zero:
		if e.nzeroW == MaxZeroWindows {
			e.removeZero(0)
			e.zeroEvicted.Add(1)
		}
		e.zero[e.nzeroW] = zeroWindow{flow: flow, ack: ack}
		e.nzeroW++
		e.nzero.Store(int32(e.nzeroW))
	case i >= 0:
		e.removeZero(i)
	}
}

// findZero returns the index of flow's note, or -1. Caller holds zmu.
func (e *Endpoint) findZero(flow *flowKey) int {
	for i := 0; i < e.nzeroW; i++ {
		if e.zero[i].flow == *flow {
			return i
		}
	}
	return -1
}

// removeZero removes note i, keeping the others oldest first. Caller
// holds zmu.
func (e *Endpoint) removeZero(i int) {
	copy(e.zero[i:e.nzeroW], e.zero[i+1:e.nzeroW])
	e.nzeroW--
	e.zero[e.nzeroW] = zeroWindow{}
	e.nzero.Store(int32(e.nzeroW))
}

// zeroWindowAck applies the allowance to a received packet: ip is its
// network header onward, in the copy gVisor will parse, of a packet size
// bytes long (ip may hold only its first part). partial says that the TCP
// checksum field holds a partial sum for the device to finish
// (nic.RxMeta.NeedsCsum), which moving the sequence number does not
// change.
func (e *Endpoint) zeroWindowAck(ip []byte, size int, proto tcpip.NetworkProtocolNumber, partial bool) {
	if e.nzero.Load() == 0 {
		return
	}
	l4, tproto, ok := transport(ip, size, proto)
	if !ok || l4 < 0 || tproto != header.TCPProtocolNumber || len(ip) < l4+header.TCPMinimumSize {
		return
	}
	th := header.TCP(ip[l4:])
	flags := th.Flags()
	if flags&header.TCPFlagAck == 0 || flags&(header.TCPFlagSyn|header.TCPFlagFin|header.TCPFlagRst|header.TCPFlagUrg) != 0 {
		return
	}
	// No data: the IP header's length ends where the TCP header does.
	var l4len int
	var flow flowKey
	if proto == header.IPv4ProtocolNumber {
		h := header.IPv4(ip)
		l4len = int(h.TotalLength()) - l4
		copy(flow.addr[:4], ip[16:20]) // the outgoing flow: our address first
		copy(flow.addr[4:8], ip[12:16])
	} else {
		l4len = int(header.IPv6(ip).PayloadLength())
		flow.v6 = true
		copy(flow.addr[:16], ip[24:40])
		copy(flow.addr[16:], ip[8:24])
	}
	if doff := int(th.DataOffset()); doff < header.TCPMinimumSize || l4len != doff {
		return
	}
	copy(flow.port[:2], th[2:4])
	copy(flow.port[2:], th[:2])
	seq := seqnum.Value(th.SequenceNumber())
	e.zmu.Lock()
	i := e.findZero(&flow)
	var rcvNxt seqnum.Value
	if i >= 0 {
		rcvNxt = e.zero[i].ack
	}
	e.zmu.Unlock()
	if i < 0 || !rcvNxt.LessThan(seq) || !seq.LessThan(rcvNxt.Add(zeroWindowReach)) {
		return
	}
	th.SetSequenceNumber(uint32(rcvNxt))
	if !partial {
		th.SetChecksum(replace32(th.Checksum(), uint32(seq), uint32(rcvNxt)))
	}
	e.zeroAcks.Add(1)
}

// replace32 updates the Internet checksum sum of data in which the
// 16-bit-aligned 32-bit word old became new (RFC 1624 eqn. 3,
// HC' = ~(~HC + ~m + m'), once per 16-bit half).
func replace32(sum uint16, old, new uint32) uint16 {
	x := ^sum
	x = checksum.Combine(x, ^uint16(old>>16))
	x = checksum.Combine(x, ^uint16(old))
	x = checksum.Combine(x, uint16(new>>16))
	x = checksum.Combine(x, uint16(new))
	return ^x
}
