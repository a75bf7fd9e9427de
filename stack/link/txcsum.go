package link

import (
	"encoding/binary"

	"github.com/tamanet/tamanet/alloc"
	"github.com/tamanet/tamanet/nic"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// Transmit checksums left to the device.
//
// Over a device that fills checksums (Offloads.TxChecksum) the endpoint
// claims stack.CapabilityTXChecksumOffload, and gVisor sums no TCP or UDP
// checksum: a TCP packet without host GSO options (SYN, ACK, RST) and
// every UDP datagram come down with 0 in the field. For a frame that holds
// its whole transport packet, the endpoint puts the pseudo-header sum in
// the field and asks the device for the rest (NeedsCsum), as gVisor's
// host GSO does for TCP.
//
// A UDP datagram longer than the MTU comes down as IP fragments, one per
// write (ipv4 and ipv6 handleFragments), and no frame holds it whole. The
// endpoint sums it as the fragments pass, in order, and holds back the
// first fragment, which carries the UDP header, until the last one is
// summed; it then fills in the checksum and sends the first fragment just
// before the last. Receivers reassemble fragments in any order (RFC 791
// §3.2, RFC 8200 §4.5). An IPv6 datagram must not leave with checksum 0
// (RFC 8200 §8.1), and an IPv4 one should not leave unprotected.

// MaxFragmented is how many fragmented UDP datagrams the endpoint sums at
// once, each holding its first fragment. gVisor writes one datagram's
// fragments in one loop, so more than one is pending only when several
// goroutines send long datagrams at the same moment; one more evicts the
// oldest, whose first fragment is then dropped (Stats.TxFragDropped).
const MaxFragmented = 4

// fragment is what askChecksum found in a frame that is an IP fragment of
// a UDP datagram.
type fragment struct {
	key     fragKey
	off     int  // the fragment's offset in the datagram, in bytes
	more    bool // more fragments follow
	payload int  // where its part of the datagram starts in the frame
}

// fragKey names a datagram: IP version, identification, source and
// destination (RFC 791 §3.2; RFC 8200 §4.5).
type fragKey struct {
	v6    bool
	id    uint32
	addrs [32]byte
}

// pendingDatagram is a fragmented datagram being summed. A slot with
// neither first nor posted is free.
type pendingDatagram struct {
	first  *alloc.Buffer // its first fragment while held
	key    fragKey
	sum    uint16 // pseudo-header and every fragment summed so far
	field  int    // the UDP checksum field's offset in first
	next   int    // the datagram offset the next fragment must have
	posted bool   // first has been posted; the last fragment is not yet
	age    uint64
}

// askChecksum prepares f, a frame whose link header is l2 bytes, for the
// device to fill its TCP or UDP checksum, and sets m to ask for it. A UDP
// fragment is left as it is and returned with ok set; any other frame
// (not IP, another protocol, a malformed header) is left as it is.
func (e *Endpoint) askChecksum(f []byte, l2 int, m *nic.TxMeta) (fr fragment, ok bool) {
	if l2 < header.EthernetMinimumSize || len(f) < l2+header.IPv4MinimumSize {
		return fr, false
	}
	ip := f[l2:]
	var (
		proto   byte
		l3, end int
		addrs   []byte
	)
	switch binary.BigEndian.Uint16(f[l2-2:]) {
	case uint16(header.IPv4ProtocolNumber):
		l3, end = int(ip[0]&0xf)*4, int(binary.BigEndian.Uint16(ip[2:]))
		if ip[0]>>4 != 4 || l3 < header.IPv4MinimumSize || end < l3 || end > len(ip) {
			return fr, false
		}
		proto, addrs = ip[9], ip[12:20]
		if frag := binary.BigEndian.Uint16(ip[6:]); frag&0x3fff != 0 {
			fr = fragment{off: int(frag&0x1fff) * 8, more: frag&0x2000 != 0, payload: l2 + l3}
			fr.key.id = uint32(binary.BigEndian.Uint16(ip[4:]))
			copy(fr.key.addrs[:], addrs)
			return fr, proto == uint8(header.UDPProtocolNumber) && end > l3
		}
	case uint16(header.IPv6ProtocolNumber):
		if len(ip) < header.IPv6MinimumSize || ip[0]>>4 != 6 {
			return fr, false
		}
		l3, end = header.IPv6MinimumSize, header.IPv6MinimumSize+int(binary.BigEndian.Uint16(ip[4:]))
		if end > len(ip) {
			return fr, false
		}
		proto, addrs = ip[6], ip[8:40]
		if proto == uint8(header.IPv6FragmentHeader) {
			// The fragment header (RFC 8200 §4.5) right after the
			// fixed one is the only extension header gVisor puts
			// in front of UDP.
			if end < l3+header.IPv6FragmentHeaderSize {
				return fr, false
			}
			fh := ip[l3:]
			offm := binary.BigEndian.Uint16(fh[2:])
			fr = fragment{off: int(offm &^ 7), more: offm&1 != 0, payload: l2 + l3 + header.IPv6FragmentHeaderSize}
			fr.key = fragKey{v6: true, id: binary.BigEndian.Uint32(fh[4:])}
			copy(fr.key.addrs[:], addrs)
			return fr, fh[0] == uint8(header.UDPProtocolNumber) && end > l3+header.IPv6FragmentHeaderSize
		}
	default:
		return fr, false
	}
	field := l2 + l3
	switch proto {
	case uint8(header.TCPProtocolNumber):
		field += header.TCPChecksumOffset
		if end-l3 < header.TCPMinimumSize {
			return fr, false
		}
	case uint8(header.UDPProtocolNumber):
		field += udpChecksumOffset
		if end-l3 < header.UDPMinimumSize {
			return fr, false
		}
	default:
		return fr, false
	}
	sum := checksum.Combine(checksum.Checksum(addrs, 0), uint16(proto))
	binary.BigEndian.PutUint16(f[field:], checksum.Combine(sum, uint16(end-l3)))
	*m = nic.TxMeta{NeedsCsum: true, CsumStart: uint16(l2 + l3), CsumOffset: uint16(field - l2 - l3)}
	return fr, false
}

// writeFragment posts b, a frame that is fragment fr of a UDP datagram
// whose checksum gVisor left to the link (askChecksum). The first
// fragment is held and summed; a middle one is posted and summed; the last
// one is summed, then the first is posted with the checksum filled in, and
// the last after it. The sums of a fragment are added only once it is
// posted, so a fragment the full ring sends back to be held is summed once
// when it is written again. A fragment of no datagram being summed (its
// first was dropped) is posted as it is. Caller holds txMu.
func (e *Endpoint) writeFragment(b *alloc.Buffer, fr *fragment, full *bool) (nic.Cause, bool) {
	f := b.Bytes()
	bufs := append(e.txBufs[:0], b)
	m := &e.txMeta
	*m = nic.TxMeta{}
	if fr.off == 0 {
		if !fr.more || len(f) < fr.payload+header.UDPMinimumSize {
			return e.post(bufs, m, len(f), full) // not a datagram that needs one
		}
		p := e.pendingSlot(fr.key)
		udp := f[fr.payload:]
		sum := checksum.Combine(checksum.Checksum(fr.key.addrs[:addrLen(fr.key.v6)], 0), uint16(header.UDPProtocolNumber))
		sum = checksum.Combine(sum, binary.BigEndian.Uint16(udp[4:])) // the datagram's length
		udp[6], udp[7] = 0, 0
		e.fragAge++
		*p = pendingDatagram{first: b, key: fr.key, sum: checksum.Checksum(udp, sum),
			field: fr.payload + udpChecksumOffset, next: len(udp), age: e.fragAge}
		return 0, true // held; it leaves with the last fragment
	}
	p := e.findPending(fr.key)
	if p != nil && p.next != fr.off {
		// Out of order: the sum cannot be finished.
		e.dropPending(p)
		p = nil
	}
	if p == nil {
		return e.post(bufs, m, len(f), full)
	}
	part := f[fr.payload:]
	if !fr.more && !p.posted {
		sum := ^checksum.Checksum(part, p.sum)
		if sum == 0 {
			sum = 0xffff // RFC 768: zero means no checksum
		}
		first := p.first
		binary.BigEndian.PutUint16(first.Bytes()[p.field:], sum)
		cause, ok := e.transmit(append(e.txBufs[:0], first), m, first.Len(), full)
		if !ok && cause == nic.RingFull {
			// Still held; the last fragment is written again.
			_ = b.Free()
			return cause, false
		}
		if !ok {
			e.dropPending(p)
			return e.post(append(e.txBufs[:0], b), m, len(f), full)
		}
		p.first, p.posted = nil, true
		bufs = append(e.txBufs[:0], b)
	}
	cause, ok := e.post(bufs, m, len(f), full)
	if ok {
		if fr.more {
			p.sum = checksum.Checksum(part, p.sum)
			p.next += len(part)
		} else {
			*p = pendingDatagram{}
		}
	}
	return cause, ok
}

// addrLen is the length of a datagram's source and destination.
func addrLen(v6 bool) int {
	if v6 {
		return 32
	}
	return 8
}

// findPending returns the datagram named key being summed, or nil.
func (e *Endpoint) findPending(key fragKey) *pendingDatagram {
	for i := range e.frags {
		if p := &e.frags[i]; (p.first != nil || p.posted) && p.key == key {
			return p
		}
	}
	return nil
}

// pendingSlot returns a slot for a new datagram named key: the one a
// datagram of the same name left (its last fragment never came), a free
// one, or the oldest, evicted.
func (e *Endpoint) pendingSlot(key fragKey) *pendingDatagram {
	if p := e.findPending(key); p != nil {
		e.dropPending(p)
		return p
	}
	var old *pendingDatagram
	for i := range e.frags {
		p := &e.frags[i]
		if p.first == nil && !p.posted {
			return p
		}
		if old == nil || p.age < old.age {
			old = p
		}
	}
	e.dropPending(old)
	return old
}

// dropPending gives up datagram p: its held first fragment, if not yet
// posted, goes back to the pool, counted.
func (e *Endpoint) dropPending(p *pendingDatagram) {
	if p.first != nil {
		_ = p.first.Free()
		e.fragDropped.Add(1)
		e.tx.Drop(nic.Malformed)
	}
	*p = pendingDatagram{}
}

// releaseFragments frees every held first fragment, uncounted: the
// endpoint is closing. Caller holds txMu.
func (e *Endpoint) releaseFragments() {
	for i := range e.frags {
		if p := &e.frags[i]; p.first != nil {
			_ = p.first.Free()
		}
		e.frags[i] = pendingDatagram{}
	}
}
