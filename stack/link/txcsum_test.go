package link

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/tamanet/tamanet/nic/nictest"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Fragmented UDP datagrams whose checksum gVisor left to the link: the
// endpoint sums them as their fragments pass (txcsum.go).

// udpDatagram is a UDP datagram of n bytes, header included, with its
// checksum left at 0 as gVisor leaves it under CapabilityTXChecksumOffload.
func udpDatagram(n int) []byte {
	d := make([]byte, n)
	for i := range d {
		d[i] = byte(i*13 + i>>8)
	}
	header.UDP(d).Encode(&header.UDPFields{SrcPort: 5000, DstPort: 7, Length: uint16(n)})
	return d
}

// fragPacket is the IPv4 fragment of d at offset off (more fragments
// follow when more), as ipv4 handleFragments writes it.
func fragPacket(ep *Endpoint, id uint16, d []byte, off, n int, more bool) *stack.PacketBuffer {
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{
		ReserveHeaderBytes: int(ep.MaxHeaderLength()) + header.IPv4MinimumSize,
		Payload:            buffer.MakeWithData(bytes.Clone(d[off : off+n])),
	})
	var flags uint8
	if more {
		flags = header.IPv4FlagMoreFragments
	}
	return ipv4Out(ep, pkt, header.IPv4Fields{TotalLength: uint16(header.IPv4MinimumSize + n), ID: id, Flags: flags,
		FragmentOffset: uint16(off), TTL: 64, Protocol: uint8(header.UDPProtocolNumber), SrcAddr: srcIP, DstAddr: dstIP})
}

// fragments cuts d into IPv4 fragments of at most 1480 bytes.
func fragments(ep *Endpoint, id uint16, d []byte) []*stack.PacketBuffer {
	var out []*stack.PacketBuffer
	for off := 0; off < len(d); off += 1480 {
		n := min(1480, len(d)-off)
		out = append(out, fragPacket(ep, id, d, off, n, off+n < len(d)))
	}
	return out
}

// reassemble joins the frames of datagram id by their offsets and checks
// that every byte of the datagram arrived; it returns the datagram.
func reassemble(t *testing.T, frames [][]byte, id uint16, n int) []byte {
	t.Helper()
	d := make([]byte, n)
	got := 0
	for _, f := range frames {
		ip := header.IPv4(f[header.EthernetMinimumSize:])
		if ip.ID() != id {
			continue
		}
		got += copy(d[ip.FragmentOffset():], ip.Payload())
	}
	if got != n {
		t.Fatalf("datagram %d: %d of %d bytes out", id, got, n)
	}
	return d
}

// udpValid reports whether datagram d carries a right, non-zero checksum.
func udpValid(d []byte) bool {
	ps := header.PseudoHeaderChecksum(header.UDPProtocolNumber, srcIP, dstIP, uint16(len(d)))
	return header.UDP(d).Checksum() != 0 && checksum.Checksum(d, ps) == 0xffff
}

func post(t *testing.T, ep *Endpoint, pkts ...*stack.PacketBuffer) {
	t.Helper()
	for _, p := range pkts {
		if _, err := ep.Post(p); err != nil {
			t.Fatalf("Post: %v", err)
		}
		p.DecRef()
	}
	ep.Flush()
}

// TestFragmentChecksum: the first fragment is held until the last one has
// been summed, then leaves just before it with the datagram's checksum, on
// both devices; more datagrams at once than MaxFragmented evict the
// oldest, and fragments out of order give theirs up, each counted and
// sent on without a checksum; Close returns the held fragments.
func TestFragmentChecksum(t *testing.T) {
	for name, r := range newCutRigs(t, 64, true) {
		t.Run(name, func(t *testing.T) {
			if r.ep.Capabilities()&stack.CapabilityTXChecksumOffload == 0 {
				t.Fatal("no CapabilityTXChecksumOffload over a device that fills checksums")
			}
			base := r.pool.InUse()
			d := udpDatagram(4000)
			fr := fragments(r.ep, 1, d)
			post(t, r.ep, fr[0])
			r.ep.Reclaim()
			if len(*r.frames) != 0 || r.pool.InUse() != base+1 {
				t.Fatalf("first fragment: %d frames out, pool %d (baseline %d); want it held", len(*r.frames), r.pool.InUse(), base)
			}
			post(t, r.ep, fr[1], fr[2])
			r.ep.Reclaim()
			if len(*r.frames) != 3 || header.IPv4((*r.frames)[1][header.EthernetMinimumSize:]).FragmentOffset() != 0 {
				t.Fatalf("%d frames out, want 3 with the first second", len(*r.frames))
			}
			if got := reassemble(t, *r.frames, 1, len(d)); !udpValid(got) {
				t.Fatal("the datagram's UDP checksum is wrong")
			}
			nictest.CheckBaseline(t, r.pool, base, "after the datagram")

			// MaxFragmented+1 datagrams at once: the oldest is given up.
			*r.frames = nil
			var rest [][]*stack.PacketBuffer
			for id := uint16(10); id < 10+MaxFragmented+1; id++ {
				fr := fragments(r.ep, id, d)
				post(t, r.ep, fr[0])
				rest = append(rest, fr[1:])
			}
			var s Stats
			r.ep.Stats(&s)
			if s.TxFragDropped != 1 {
				t.Fatalf("%d datagrams dropped, want 1", s.TxFragDropped)
			}
			for _, fr := range rest {
				post(t, r.ep, fr...)
			}
			r.ep.Reclaim()
			for id := uint16(11); id < 10+MaxFragmented+1; id++ {
				if got := reassemble(t, *r.frames, id, len(d)); !udpValid(got) {
					t.Fatalf("datagram %d: wrong UDP checksum", id)
				}
			}
			nictest.CheckBaseline(t, r.pool, base, "after the evicted datagram")

			// Out of order: the last fragment before the middle one.
			fr = fragments(r.ep, 30, d)
			post(t, r.ep, fr[0], fr[2], fr[1])
			r.ep.Stats(&s)
			if s.TxFragDropped != 2 {
				t.Fatalf("%d datagrams dropped, want 2", s.TxFragDropped)
			}
			r.ep.Reclaim()
			nictest.CheckBaseline(t, r.pool, base, "after the datagram out of order")

			// A first fragment whose last never comes is returned by
			// Close.
			post(t, r.ep, fragments(r.ep, 40, d)[0])
			r.ep.Close()
			nictest.CheckBaseline(t, r.pool, base, "after Close")
		})
	}
}

// TestFragmentChecksumRingFull: the last fragment meets a full ring while
// the first waits to go before it; it is held, written again once the
// device works, and the datagram leaves whole with its checksum summed
// once.
func TestFragmentChecksumRingFull(t *testing.T) {
	for name, r := range newCutRigs(t, 4, true) {
		t.Run(name, func(t *testing.T) {
			base := r.pool.InUse()
			d := udpDatagram(1480*5 + 100)
			fr := fragments(r.ep, 7, d)
			r.stall()
			post(t, r.ep, fr...) // the first held, four on the ring, the last held back
			var s Stats
			r.ep.Stats(&s)
			if s.TxHeld == 0 {
				t.Fatal("nothing held back by the full ring")
			}
			r.unstall()
			for range 10 {
				r.ep.Poll(64)
			}
			if len(*r.frames) != len(fr) {
				t.Fatalf("%d frames out, want %d", len(*r.frames), len(fr))
			}
			if got := reassemble(t, *r.frames, 7, len(d)); !udpValid(got) {
				t.Fatal("the datagram's UDP checksum is wrong")
			}
			r.ep.Stats(&s)
			if s.TxFragDropped != 0 {
				t.Fatalf("%d datagrams dropped", s.TxFragDropped)
			}
			nictest.CheckBaseline(t, r.pool, base, "after the datagram")
		})
	}
}

// FuzzTxChecksum posts IPv4 and IPv6 packets of any protocol, length
// fields and fragment fields, whole, cut into fragments or not, through
// an endpoint over a device that fills checksums, with the device
// stalling and resuming: nothing panics, every whole UDP or TCP packet
// with consistent lengths leaves with a right checksum, and after Close
// every pool buffer is back.
func FuzzTxChecksum(f *testing.F) {
	f.Add([]byte{0, 17, 0, 0x20, 0, 1, 200, 0, 17, 0, 0, 0, 1, 200, 0})
	f.Add([]byte{1, 17, 0, 1, 0, 7, 100, 0, 17, 0, 0x10, 0, 7, 50, 0, 2, 0})
	f.Add([]byte{0, 6, 0, 0, 0, 0, 40, 0, 4, 1, 17, 0, 0x20, 0, 3, 200, 5, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := newCutRigs(t, 8, true)["virtio"]
		base := r.pool.InUse()
		checked := 0
		in := &fzReader{b: data}
		for steps := 0; len(in.b) > 0 && steps < 64; steps++ {
			v6 := in.u8()&1 != 0
			proto := in.u8()
			frag := in.u16()
			id := in.u8() % 4
			n := int(in.u16() % 2000)
			lie := in.u8()
			body := make([]byte, n)
			for i := range body {
				body[i] = byte(i * 7)
			}
			var l3 []byte
			if v6 {
				h := make([]byte, header.IPv6MinimumSize)
				h[0] = 6 << 4
				h[6], h[7] = proto, 64
				copy(h[8:], bytes.Repeat([]byte{0xfd}, 32))
				if frag&0x8000 != 0 { // a fragment header in front of the body
					fh := []byte{proto, 0, byte(frag >> 8 &^ 0x80), byte(frag), 0, 0, 0, id}
					h[6] = uint8(header.IPv6FragmentHeader)
					body = append(fh, body...)
				}
				binary.BigEndian.PutUint16(h[4:], uint16(len(body))+uint16(lie%3)*uint16(lie))
				l3 = append(h, body...)
			} else {
				h := header.IPv4(make([]byte, header.IPv4MinimumSize))
				h.Encode(&header.IPv4Fields{TotalLength: uint16(header.IPv4MinimumSize+len(body)) + uint16(lie%3)*uint16(lie),
					ID: uint16(id), TTL: 64, Protocol: proto, SrcAddr: srcIP, DstAddr: dstIP})
				binary.BigEndian.PutUint16(h[6:], frag&0x3fff)
				h.SetChecksum(^h.CalculateChecksum())
				l3 = append([]byte(h), body...)
			}
			if lie%5 == 4 {
				l3[0] = l3[0]&0xf0 | lie>>4 // IHL or traffic class garbage
			}
			pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{
				ReserveHeaderBytes: int(r.ep.MaxHeaderLength()),
				Payload:            buffer.MakeWithData(l3),
			})
			pkt.NetworkProtocolNumber = header.IPv4ProtocolNumber
			if v6 {
				pkt.NetworkProtocolNumber = header.IPv6ProtocolNumber
			}
			pkt.EgressRoute.LocalLinkAddress = tcpip.LinkAddress(ourMAC[:])
			pkt.EgressRoute.RemoteLinkAddress = tcpip.LinkAddress(peerMAC[:])
			r.ep.AddHeader(pkt)
			_, _ = r.ep.Post(pkt)
			pkt.DecRef()
			switch in.u8() % 4 {
			case 0:
				r.stall()
			case 1:
				r.unstall()
			}
			r.ep.Poll(64)
			for ; checked < len(*r.frames); checked++ {
				if !wholeChecksumOK((*r.frames)[checked]) {
					t.Fatalf("frame %d left with a wrong checksum: % x", checked, (*r.frames)[checked])
				}
			}
		}
		r.unstall()
		for range 20 {
			r.ep.Poll(64)
		}
		for ; checked < len(*r.frames); checked++ {
			if !wholeChecksumOK((*r.frames)[checked]) {
				t.Fatalf("frame %d left with a wrong checksum: % x", checked, (*r.frames)[checked])
			}
		}
		r.ep.Close()
		nictest.CheckBaseline(t, r.pool, base, "after Close")
	})
}

// wholeChecksumOK reports whether frame f, when it is an IPv4 or IPv6
// packet of TCP or UDP, whole (no fragment, lengths that match the frame),
// carries a right transport checksum; any other frame passes.
func wholeChecksumOK(f []byte) bool {
	if len(f) < header.EthernetMinimumSize+header.IPv4MinimumSize {
		return true
	}
	ip := f[header.EthernetMinimumSize:]
	var proto byte
	var t, addrs []byte
	switch binary.BigEndian.Uint16(f[12:]) {
	case uint16(header.IPv4ProtocolNumber):
		hl := int(ip[0]&0xf) * 4
		if ip[0]>>4 != 4 || hl < header.IPv4MinimumSize || int(binary.BigEndian.Uint16(ip[2:])) != len(ip) ||
			hl > len(ip) || binary.BigEndian.Uint16(ip[6:])&0x3fff != 0 {
			return true
		}
		proto, t, addrs = ip[9], ip[hl:], ip[12:20]
	case uint16(header.IPv6ProtocolNumber):
		if len(ip) < header.IPv6MinimumSize || ip[0]>>4 != 6 || int(binary.BigEndian.Uint16(ip[4:]))+header.IPv6MinimumSize != len(ip) {
			return true
		}
		proto, t, addrs = ip[6], ip[header.IPv6MinimumSize:], ip[8:40]
	default:
		return true
	}
	switch {
	case proto == uint8(header.TCPProtocolNumber) && len(t) >= header.TCPMinimumSize,
		proto == uint8(header.UDPProtocolNumber) && len(t) >= header.UDPMinimumSize:
	default:
		return true
	}
	s := checksum.Combine(checksum.Checksum(addrs, 0), uint16(proto))
	s = checksum.Combine(s, uint16(len(t)))
	return checksum.Checksum(t, s) == 0xffff
}
