package link

import (
	"encoding/binary"

	"github.com/tamanet/tamanet/nic"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Software segmentation: a TCP segment longer than one frame, handed down
// by gVisor's host GSO, that the device will not cut itself (it fills
// checksums but has no TSO for the segment's network, or the segment is
// longer than it takes). The endpoint cuts it into frames as a TSO device
// would and leaves each frame's TCP checksum to the device, so the guest
// sums none of the payload: gVisor's own GSO would build a packet per
// frame and sum every byte in software.

// TCP flags the cut changes (RFC 9293 §3.1; RFC 3168 §6.1 for CWR).
const (
	tcpFlagFIN = 0x01
	tcpFlagPSH = 0x08
	tcpFlagCWR = 0x80
)

// writeSegments posts pkt as frames of at most its GSO MSS of payload,
// from payload offset *sent on, advancing *sent past every frame posted.
// Each frame repeats the headers, with the fields a TSO device rewrites
// set as Linux's tcp_gso_segment sets them: the IPv4 total length,
// identification (one more per frame) and header checksum, or the IPv6
// payload length; the sequence number advanced by the payload before the
// frame; FIN and PSH kept on the last frame only and CWR on the first
// only; the pseudo-header sum of the frame's own length in the checksum
// field, with NeedsCsum for the device to add the rest.
//
// A full ring stops the cut with RingFull and *sent where it stopped: the
// caller holds the packet and resumes it later. Any other failure drops
// the frames not yet posted. Caller holds txMu.
func (e *Endpoint) writeSegments(pkt *stack.PacketBuffer, maxFrame int, full *bool, sent *int) (nic.Cause, bool) {
	l2 := len(pkt.LinkHeader().Slice())
	nh := pkt.NetworkHeader().Slice()
	l3 := len(nh)
	l4 := len(pkt.TransportHeader().Slice())
	hdr := l2 + l3 + l4
	total := pkt.Data().Size()
	mss := int(pkt.GSOOptions.MSS)
	if l2 < header.EthernetMinimumSize || l4 < header.TCPMinimumSize || hdr != pkt.HeaderSize() || !segmentable(nh) {
		return nic.Malformed, false
	}
	if mss <= 0 || hdr+mss > maxFrame {
		return nic.Oversize, false
	}
	m := &e.txMeta
	*m = nic.TxMeta{NeedsCsum: true, CsumStart: uint16(l2 + l3), CsumOffset: header.TCPChecksumOffset}
	for *sent < total {
		n := min(mss, total-*sent)
		size := hdr + n
		b := e.pool.Get()
		if b == nil {
			return nic.NoBuffer, false
		}
		var err error
		if b.Headroom() < e.txHeadroom {
			err = b.Reserve(e.txHeadroom)
		}
		if err == nil {
			_, err = b.Append(size)
		}
		if err != nil {
			_ = b.Free()
			return nic.NoBuffer, false
		}
		f := b.Bytes()
		if copyPacket(pkt, f[:hdr], 0) != hdr || copyPacket(pkt, f[hdr:], hdr+*sent) != n {
			_ = b.Free()
			return nic.Malformed, false
		}
		cutFrame(f[l2:], l3, l4, n, *sent, *sent+n == total, *sent/mss)
		if cause, ok := e.post(append(e.txBufs[:0], b), m, size, full); !ok {
			return cause, false // post freed b
		}
		e.cutTotal.Add(1)
		*sent += n
	}
	return 0, true
}

// segmentable reports whether nh is a network header writeSegments can
// rewrite: IPv4 carrying TCP, its length what its IHL says and not a
// fragment, or IPv6 without extension headers carrying TCP.
func segmentable(nh []byte) bool {
	if len(nh) < header.IPv4MinimumSize {
		return false
	}
	switch nh[0] >> 4 {
	case header.IPv4Version:
		return int(nh[0]&0xf)*4 == len(nh) && nh[9] == uint8(header.TCPProtocolNumber) &&
			binary.BigEndian.Uint16(nh[6:])&0x3fff == 0
	case header.IPv6Version:
		return len(nh) == header.IPv6MinimumSize && nh[6] == uint8(header.TCPProtocolNumber)
	}
	return false
}

// cutFrame rewrites the IP and TCP headers at the front of ip (checked by
// segmentable), of l3 and l4 bytes, for a frame of n payload bytes that
// starts at payload offset off of its segment and is the frame's index-th.
func cutFrame(ip []byte, l3, l4, n, off int, last bool, index int) {
	tcpLen := uint16(l4 + n)
	var sum uint16
	if ip[0]>>4 == header.IPv4Version {
		binary.BigEndian.PutUint16(ip[2:], uint16(l3)+tcpLen)
		binary.BigEndian.PutUint16(ip[4:], binary.BigEndian.Uint16(ip[4:])+uint16(index))
		ip[10], ip[11] = 0, 0
		binary.BigEndian.PutUint16(ip[10:], ^checksum.Checksum(ip[:l3], 0))
		sum = checksum.Checksum(ip[12:20], 0)
	} else {
		binary.BigEndian.PutUint16(ip[4:], tcpLen)
		sum = checksum.Checksum(ip[8:40], 0)
	}
	tcp := ip[l3:]
	binary.BigEndian.PutUint32(tcp[4:], binary.BigEndian.Uint32(tcp[4:])+uint32(off))
	if !last {
		tcp[13] &^= tcpFlagFIN | tcpFlagPSH
	}
	if off > 0 {
		tcp[13] &^= tcpFlagCWR
	}
	sum = checksum.Combine(sum, uint16(header.TCPProtocolNumber))
	sum = checksum.Combine(sum, tcpLen)
	binary.BigEndian.PutUint16(tcp[header.TCPChecksumOffset:], sum)
}

// copyPacket copies pkt's bytes from offset at (headers included) into
// dst, as many as fit, and returns how many it copied.
func copyPacket(pkt *stack.PacketBuffer, dst []byte, at int) int {
	views, off := pkt.AsViewList()
	off += at
	n := 0
	for v := views.Front(); v != nil && n < len(dst); v = v.Next() {
		s := v.AsSlice()
		if off >= len(s) {
			off -= len(s)
			continue
		}
		n += copy(dst[n:], s[off:])
		off = 0
	}
	return n
}
