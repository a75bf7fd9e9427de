package stack

// Receive offloads end to end: the virtio driver with GUEST_CSUM,
// MRG_RXBUF and GUEST_TSO4/6 against the device model, the endpoint's
// per-packet checksum vouching (stack/link rxoffload.go), and gVisor.

import (
	"encoding/binary"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/tamanet/tamanet/nic"
	"github.com/tamanet/tamanet/nic/virtio/virtiotest"
	"github.com/tamanet/tamanet/stack/stacktest"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// offloadOpts is a device model offering every receive offload, able to
// carry joined segments.
func offloadOpts(mac [6]byte) virtiotest.Options {
	return virtiotest.Options{MAC: mac, Features: virtiotest.Features | virtiotest.RxOffloads,
		MaxPacket: virtiotest.MaxGSOPacket, Backlog: 32}
}

// udpPacket builds the IP packet (no Ethernet header) of a UDP datagram
// from A to B, IPv4 or IPv6, with a right checksum unless badSum.
func udpPacket(v6 bool, payload []byte, port uint16, badSum bool) (ip []byte, l4 int) {
	var src, dst tcpip.Address
	hl := header.IPv4MinimumSize
	if v6 {
		src, dst = tcpip.AddrFrom16(stacktest.Addr6A.Addr().As16()), tcpip.AddrFrom16(stacktest.Addr6B.Addr().As16())
		hl = header.IPv6MinimumSize
	} else {
		src, dst = tcpip.AddrFrom4(addrA.Addr().As4()), tcpip.AddrFrom4(addrB.Addr().As4())
	}
	ulen := header.UDPMinimumSize + len(payload)
	ip = make([]byte, hl+ulen)
	u := header.UDP(ip[hl:])
	u.Encode(&header.UDPFields{SrcPort: 40000, DstPort: port, Length: uint16(ulen)})
	copy(u.Payload(), payload)
	sum := header.PseudoHeaderChecksum(header.UDPProtocolNumber, src, dst, uint16(ulen))
	u.SetChecksum(^checksum.Checksum(u, sum))
	if badSum {
		u.Payload()[len(payload)-1] ^= 0x40 // the sum no longer matches
	}
	if v6 {
		header.IPv6(ip).Encode(&header.IPv6Fields{PayloadLength: uint16(ulen), TransportProtocol: header.UDPProtocolNumber, HopLimit: 64, SrcAddr: src, DstAddr: dst})
	} else {
		h := header.IPv4(ip)
		h.Encode(&header.IPv4Fields{TotalLength: uint16(len(ip)), TTL: 64, Protocol: uint8(header.UDPProtocolNumber), SrcAddr: src, DstAddr: dst})
		h.SetChecksum(^h.CalculateChecksum())
	}
	return ip, hl
}

// ether puts an Ethernet header from A to B in front of ip.
func ether(v6 bool, ip []byte) []byte {
	f := make([]byte, 14+len(ip))
	copy(f, stacktest.MACB[:])
	copy(f[6:], stacktest.MACA[:])
	typ := uint16(header.IPv4ProtocolNumber)
	if v6 {
		typ = uint16(header.IPv6ProtocolNumber)
	}
	binary.BigEndian.PutUint16(f[12:], typ)
	copy(f[14:], ip)
	return f
}

// fragments cuts an IP packet built by udpPacket into two fragments at an
// 8-byte boundary of its payload (RFC 791 §2.3, RFC 8200 §4.5).
func fragments(v6 bool, ip []byte, id uint32) [][]byte {
	if !v6 {
		h := header.IPv4(ip)
		payload := ip[header.IPv4MinimumSize:]
		cut := len(payload) / 2 &^ 7
		var out [][]byte
		for i, part := range [][]byte{payload[:cut], payload[cut:]} {
			f := make([]byte, header.IPv4MinimumSize+len(part))
			g := header.IPv4(f)
			fl, off := uint8(header.IPv4FlagMoreFragments), uint16(0)
			if i == 1 {
				fl, off = 0, uint16(cut)
			}
			g.Encode(&header.IPv4Fields{TotalLength: uint16(len(f)), ID: uint16(id), Flags: fl, FragmentOffset: off,
				TTL: 64, Protocol: h.Protocol(), SrcAddr: h.SourceAddress(), DstAddr: h.DestinationAddress()})
			g.SetChecksum(^g.CalculateChecksum())
			copy(f[header.IPv4MinimumSize:], part)
			out = append(out, ether(false, f))
		}
		return out
	}
	h := header.IPv6(ip)
	payload := ip[header.IPv6MinimumSize:]
	cut := len(payload) / 2 &^ 7
	var out [][]byte
	for i, part := range [][]byte{payload[:cut], payload[cut:]} {
		f := make([]byte, header.IPv6MinimumSize+8+len(part))
		header.IPv6(f).Encode(&header.IPv6Fields{PayloadLength: uint16(8 + len(part)), TransportProtocol: header.IPv6FragmentHeader,
			HopLimit: 64, SrcAddr: h.SourceAddress(), DstAddr: h.DestinationAddress()})
		fh := f[header.IPv6MinimumSize:]
		fh[0] = uint8(header.UDPProtocolNumber)
		off := uint16(0)
		if i == 1 {
			off = uint16(cut)
		}
		m := uint16(1)
		if i == 1 {
			m = 0
		}
		binary.BigEndian.PutUint16(fh[2:], off|m) // offset in 8-byte units << 3 is off itself
		binary.BigEndian.PutUint32(fh[4:], id)
		copy(f[header.IPv6MinimumSize+8:], part)
		out = append(out, ether(true, f))
	}
	return out
}

// vhdr is a virtio-net receive header with flags and, for NEEDS_CSUM,
// csum_start and csum_offset (virtio 1.2 §5.1.6).
func vhdr(flags byte, start, off uint16) []byte {
	h := make([]byte, 12)
	h[0] = flags
	binary.LittleEndian.PutUint16(h[6:], start)
	binary.LittleEndian.PutUint16(h[8:], off)
	return h
}

const (
	fNeedsCsum = 1 // VIRTIO_NET_HDR_F_NEEDS_CSUM
	fDataValid = 2 // VIRTIO_NET_HDR_F_DATA_VALID
)

// TestChecksumVouching delivers hand-made UDP frames to a stack through the
// virtio driver, each with the receive header the test chooses, and checks
// which reach the socket: every checksum the device did not vouch for is
// verified by gVisor (a bad one never reaches the socket: IPv4 and IPv6,
// whole and fragmented); a packet the device vouched for (DATA_VALID, or
// NEEDS_CSUM with the field partial) is not verified again, except an IPv4
// header, and except a fragment, which is never trusted, so its
// reassembled datagram is verified; a NEEDS_CSUM that does not name the
// UDP checksum is dropped and counted.
//
// A corrupted frame the device vouched for reaches the socket: checking is
// the device's responsibility, and that case shows the trust is real.
func TestChecksumVouching(t *testing.T) {
	n := newVnode(t, offloadOpts(stacktest.MACB), Config{Addr: addrB, IPv6: true, Addr6: stacktest.Addr6B})
	t.Cleanup(n.close)
	n.model.SetOutput(func([]byte) {})
	n.s.Start()
	if o := n.drv.Offloads(); !o.RxChecksum || o.MaxRxBuffers < 2 {
		t.Fatalf("offloads %+v", o)
	}
	pc, err := n.s.ListenPacket("udp", ":5000")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	buf := make([]byte, 1<<16)
	recv := func(wait time.Duration) []string {
		var got []string
		pc.SetReadDeadline(time.Now().Add(wait))
		for {
			k, _, err := pc.ReadFrom(buf)
			if err != nil {
				return got
			}
			got = append(got, string(buf[:k]))
		}
	}
	// IPv6 needs its address past DAD (1 s): send a good datagram until
	// one arrives.
	for i := 0; ; i++ {
		ip, _ := udpPacket(true, []byte("warm-up"), 5000, false)
		n.model.DeliverRaw(vhdr(0, 0, 0), ether(true, ip))
		if got := recv(100 * time.Millisecond); len(got) > 0 {
			break
		}
		if i == 50 {
			t.Fatal("no IPv6 datagram received")
		}
	}

	type tc struct {
		name    string
		v6      bool
		size    int
		bad     bool // UDP checksum wrong
		badIP   bool // IPv4 header checksum wrong
		frag    bool
		flags   byte
		partial bool // NEEDS_CSUM with the field holding the pseudo-header sum
		wrongAt bool // NEEDS_CSUM naming another field
		want    bool
	}
	var cases []tc
	for _, v6 := range []bool{false, true} {
		fam := "v4"
		if v6 {
			fam = "v6"
		}
		cases = append(cases,
			tc{name: fam + " good unvouched", v6: v6, size: 100, want: true},
			tc{name: fam + " bad unvouched", v6: v6, size: 100, bad: true},
			tc{name: fam + " bad DATA_VALID (device's fault)", v6: v6, size: 100, bad: true, flags: fDataValid, want: true},
			tc{name: fam + " good fragmented unvouched", v6: v6, size: 2400, frag: true, want: true},
			tc{name: fam + " bad fragmented unvouched", v6: v6, size: 2400, frag: true, bad: true},
			tc{name: fam + " bad fragmented DATA_VALID", v6: v6, size: 2400, frag: true, bad: true, flags: fDataValid},
			tc{name: fam + " partial NEEDS_CSUM", v6: v6, size: 100, partial: true, flags: fNeedsCsum, want: true},
			tc{name: fam + " NEEDS_CSUM elsewhere", v6: v6, size: 100, partial: true, wrongAt: true, flags: fNeedsCsum},
		)
	}
	cases = append(cases, tc{name: "v4 bad header checksum DATA_VALID", size: 100, badIP: true, flags: fDataValid})

	malformed := func() uint64 { return n.s.Stats().Endpoint.Rx.Drops[nic.Malformed] }
	before := malformed()
	var want []string
	for i, c := range cases {
		payload := make([]byte, c.size)
		for j := range payload {
			payload[j] = byte(j * 7)
		}
		tag := fmt.Sprintf("%02d %s", i, c.name)
		copy(payload, tag)
		ip, l4 := udpPacket(c.v6, payload, 5000, c.bad)
		if c.badIP {
			ip[10] ^= 0xff
		}
		if c.want {
			want = append(want, tag)
		}
		if c.frag {
			for _, f := range fragments(c.v6, ip, uint32(i+1)) {
				n.model.DeliverRaw(vhdr(c.flags, 0, 0), f)
			}
			continue
		}
		h := vhdr(c.flags, 0, 0)
		if c.partial {
			// As a local sender leaves it: the field holds the
			// pseudo-header sum only.
			u := header.UDP(ip[l4:])
			var sum uint16
			if c.v6 {
				h6 := header.IPv6(ip)
				sum = header.PseudoHeaderChecksum(header.UDPProtocolNumber, h6.SourceAddress(), h6.DestinationAddress(), u.Length())
			} else {
				h4 := header.IPv4(ip)
				sum = header.PseudoHeaderChecksum(header.UDPProtocolNumber, h4.SourceAddress(), h4.DestinationAddress(), u.Length())
			}
			u.SetChecksum(sum)
			off := uint16(6)
			if c.wrongAt {
				off = 4 // the length field
			}
			h = vhdr(c.flags, uint16(14+l4), off)
		}
		n.model.DeliverRaw(h, ether(c.v6, ip))
	}
	got := recv(time.Second)
	slices.Sort(got)
	for i := range got {
		got[i] = got[i][:min(len(got[i]), 60)]
		if k := indexTag(got[i]); k >= 0 && k < len(cases) {
			got[i] = fmt.Sprintf("%02d %s", k, cases[k].name)
		}
	}
	if !slices.Equal(got, want) {
		t.Logf("stats %+v", n.s.Stats().TCPIP)
		t.Fatalf("datagrams received:\n%q\nwant:\n%q", got, want)
	}
	if d := malformed() - before; d != 2 {
		t.Fatalf("endpoint counted %d malformed, want 2 (the NEEDS_CSUM naming another field)", d)
	}
	gs := n.s.GVisor().Stats()
	if e := gs.UDP.ChecksumErrors.Value(); e < 6 {
		t.Fatalf("gVisor counted %d UDP checksum errors, want at least the 6 unvouched or fragmented bad datagrams", e)
	}
}

// indexTag returns the case whose tag starts s, or -1.
func indexTag(s string) int {
	var k int
	if _, err := fmt.Sscanf(s, "%02d", &k); err != nil {
		return -1
	}
	return k
}
