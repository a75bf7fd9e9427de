package link

import (
	"encoding/binary"

	"github.com/tamanet/tamanet/alloc"
	"github.com/tamanet/tamanet/nic"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Receive checksums: who verifies what.
//
// gVisor takes CapabilityRXChecksumOffload for the whole NIC: its
// nic.DeliverNetworkPacket sets pkt.RXChecksumValidated from
// Capabilities() on every delivery, overwriting anything the endpoint set,
// and with it set gVisor skips the IPv4 header checksum
// (ipv4 parseAndValidate) and every TCP, UDP and ICMP checksum; a
// reassembled IP packet inherits the flag of its first fragment
// (fragmentation's reassembler clones holes[0]).
//
// The endpoint therefore sets the capability per packet: Capabilities
// reports it only while a packet the device vouched for is being delivered
// (rxVouched), on the poll goroutine, which is the only caller of
// DeliverNetworkPacket for this NIC and delivers synchronously. Every other
// packet is delivered with the capability off, and gVisor verifies all of
// its checksums itself, after reassembly for fragments. Capabilities read
// on other goroutines (the transmit path asks for its TX bits) may see the
// RX bit during such a delivery; gVisor reads that bit nowhere else. Were a
// later gVisor to read it once at NIC creation, it would read it off:
// everything verified, slower, never wrong.
//
// A packet counts as vouched for only when all of these hold, checked on
// the copy gVisor will parse (the device cannot change it afterwards):
//   - the device said so (nic.RxMeta.Verified: DATA_VALID or NEEDS_CSUM)
//     and negotiated it (Offloads.RxChecksum);
//   - it is TCP or UDP straight after the IP header: not an IP fragment
//     (a device cannot have checked the transport checksum of a part), no
//     IPv6 extension header, not ICMP (the device's check is of "the"
//     transport checksum);
//   - for IPv4, the header checksum is right: DATA_VALID covers the
//     transport checksum only (as Linux reads it), and gVisor would skip
//     the header's.
// Anything else is delivered unvouched. A partial checksum (NEEDS_CSUM)
// must name exactly the TCP or UDP checksum field of such a packet:
// otherwise gVisor would verify a field that holds only a partial sum, so
// the packet is dropped (nic.Malformed). So is a joined segment (RxMeta.GSO)
// that is not TCP over the IP version its type says.

// Where the checksum field is in a TCP header (RFC 9293 §3.1) and a UDP
// header (RFC 768).
const (
	tcpChecksumOffset = 16
	udpChecksumOffset = 6
)

// CapabilityRXChecksumOffload is reported while a vouched packet is
// delivered; see above.
func (e *Endpoint) rxCaps() stack.LinkEndpointCapabilities {
	if e.rxVouched.Load() {
		return stack.CapabilityRXChecksumOffload
	}
	return 0
}

// receivePackets is Receive for a device that implements nic.Offloader.
func (e *Endpoint) receivePackets(d stack.NetworkDispatcher, mac *[6]byte, mtu uint32, budget int) int {
	n := 0
	for n < budget {
		k, meta := e.ol.ReceivePacket(e.rxBufs)
		if k == 0 {
			break
		}
		n++
		e.deliverPacket(d, mac, mtu, e.rxBufs[:k], &meta)
	}
	return n
}

// freeAll returns bufs to the pool and clears the slots.
func freeAll(bufs []*alloc.Buffer) {
	for i, b := range bufs {
		_ = b.Free()
		bufs[i] = nil
	}
}

// deliverPacket is deliver for a packet that may span buffers and carries
// the device's word on it. It owns bufs and returns them to the pool on
// every path before gVisor sees the packet.
func (e *Endpoint) deliverPacket(d stack.NetworkDispatcher, mac *[6]byte, mtu uint32, bufs []*alloc.Buffer, meta *nic.RxMeta) {
	total := 0
	for _, b := range bufs {
		total += b.Len()
	}
	limit := e.overhead + int(mtu)
	if meta.GSO != nic.GSONone {
		limit = e.off.MaxRxPacket
	}
	frame := bufs[0].Bytes()
	cause := nic.NumCauses
	var typ tcpip.PacketType
	switch {
	case d == nil:
		cause = nic.LinkDown
	case total < header.EthernetMinimumSize:
		cause = nic.Runt
	case total > limit:
		cause = nic.Oversize
	case len(frame) < header.EthernetMinimumSize:
		cause = nic.Malformed // the Ethernet header split over buffers
	case frame[0]&1 != 0:
		typ = tcpip.PacketMulticast
		if isBroadcast(frame[:6]) {
			typ = tcpip.PacketBroadcast
		}
	case [6]byte(frame[:6]) == *mac:
		typ = tcpip.PacketHost
	default:
		cause = nic.Filtered
	}
	if cause != nic.NumCauses {
		e.rx.Drop(cause)
		freeAll(bufs)
		return
	}
	proto := tcpip.NetworkProtocolNumber(binary.BigEndian.Uint16(frame[12:14]))

	// The one copy, into at most two views: gVisor pools views up to
	// buffer.MaxChunkSize and allocates longer ones.
	first := min(total, buffer.MaxChunkSize)
	v := buffer.NewView(first)
	var v2 *buffer.View
	if total > first {
		v2 = buffer.NewView(total - first)
	}
	for _, b := range bufs {
		p := b.Bytes()
		if room := first - v.Size(); room > 0 {
			c := min(room, len(p))
			_, _ = v.Write(p[:c])
			p = p[c:]
		}
		if len(p) > 0 {
			_, _ = v2.Write(p)
		}
	}
	freeAll(bufs)

	vouched, cause := e.vouch(v.AsSlice()[header.EthernetMinimumSize:], total-header.EthernetMinimumSize, proto, meta)
	if cause != nic.NumCauses {
		e.rx.Drop(cause)
		v.Release()
		if v2 != nil {
			v2.Release()
		}
		return
	}
	e.zeroWindowAck(v.AsSlice()[header.EthernetMinimumSize:], total-header.EthernetMinimumSize, proto, meta.NeedsCsum)
	e.rx.Count(total)
	payload := buffer.MakeWithView(v)
	if v2 != nil {
		_ = payload.Append(v2)
	}
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: payload})
	pkt.LinkHeader().Consume(header.EthernetMinimumSize)
	pkt.NetworkProtocolNumber = proto
	pkt.PktType = typ
	if vouched {
		e.rxVouched.Store(true)
		d.DeliverNetworkPacket(proto, pkt)
		e.rxVouched.Store(false)
	} else {
		d.DeliverNetworkPacket(proto, pkt)
	}
	pkt.DecRef()
}

// vouch decides whether gVisor may skip checksums for the packet whose
// network header starts at ip, size bytes long (ip may hold only the first
// part; see the comment at the top of the file). It
// returns a cause other than nic.NumCauses for a packet to drop: a partial
// checksum or joined segment that does not fit it.
func (e *Endpoint) vouch(ip []byte, size int, proto tcpip.NetworkProtocolNumber, meta *nic.RxMeta) (bool, nic.Cause) {
	if !meta.Verified && meta.GSO == nic.GSONone {
		return false, nic.NumCauses
	}
	l4, tproto, ok := transport(ip, size, proto)
	switch meta.GSO {
	case nic.GSONone:
	case nic.GSOTCPv4, nic.GSOTCPv6:
		want := header.IPv4ProtocolNumber
		if meta.GSO == nic.GSOTCPv6 {
			want = header.IPv6ProtocolNumber
		}
		if proto != want || l4 < 0 || tproto != header.TCPProtocolNumber {
			return false, nic.Malformed
		}
	}
	if meta.NeedsCsum {
		off := uint16(tcpChecksumOffset)
		if tproto == header.UDPProtocolNumber {
			off = udpChecksumOffset
		}
		if l4 < 0 || (tproto != header.TCPProtocolNumber && tproto != header.UDPProtocolNumber) ||
			int(meta.CsumStart) != header.EthernetMinimumSize+l4 || meta.CsumOffset != off {
			return false, nic.Malformed
		}
	}
	vouched := meta.Verified && e.off.RxChecksum && ok &&
		(tproto == header.TCPProtocolNumber || tproto == header.UDPProtocolNumber)
	return vouched, nic.NumCauses
}

// transport finds the transport header of an IPv4 or IPv6 packet of size
// bytes whose first len(ip) bytes are ip: its offset and protocol, or -1 for a fragment, an IPv6 extension header
// or a header that does not parse. ok also says that the IPv4 header
// checksum is right.
func transport(ip []byte, size int, proto tcpip.NetworkProtocolNumber) (l4 int, tproto tcpip.TransportProtocolNumber, ok bool) {
	switch proto {
	case header.IPv4ProtocolNumber:
		if len(ip) < header.IPv4MinimumSize {
			return -1, 0, false
		}
		h := header.IPv4(ip)
		hl := int(h.HeaderLength())
		if h.IsValid(size) && int(h.HeaderLength()) <= len(ip) && !h.More() && h.FragmentOffset() == 0 {
			return hl, h.TransportProtocol(), h.IsChecksumValid()
		}
	case header.IPv6ProtocolNumber:
		h := header.IPv6(ip)
		if len(ip) >= header.IPv6MinimumSize && h.IsValid(size) {
			switch t := h.TransportProtocol(); t {
			case header.TCPProtocolNumber, header.UDPProtocolNumber:
				return header.IPv6MinimumSize, t, true
			}
		}
	}
	return -1, 0, false
}
