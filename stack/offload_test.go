package stack

// Receive offloads end to end: the virtio driver with GUEST_CSUM,
// MRG_RXBUF and GUEST_TSO4/6 against the device model, the endpoint's
// per-packet checksum vouching (stack/link rxoffload.go), and gVisor.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
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

// joiner sits on the wire between two device models and does what a host
// with GRO, or a local sender with TSO, does before a virtio-net device
// hands a packet to the guest: it joins in-order TCP data segments of one
// flow into one segment of up to max bytes (IP lengths and checksums
// fixed), which the receiving model writes as a GSO packet over several
// buffers. Other frames pass unchanged; a partly joined segment goes out
// after a short delay.
type joiner struct {
	mu    sync.Mutex
	out   func([]byte)
	buf   []byte
	segs  int
	key   []byte
	next  uint32
	max   int
	timer *time.Timer
	sent  atomic.Uint64 // joined segments handed on
}

func newJoiner(out func([]byte), max int) *joiner {
	j := &joiner{out: out, buf: make([]byte, 0, 70000), key: make([]byte, 0, 40), max: max}
	j.timer = time.AfterFunc(time.Hour, func() {
		j.mu.Lock()
		j.flushLocked()
		j.mu.Unlock()
	})
	j.timer.Stop()
	return j
}

// tcpData returns where a frame's TCP header starts and its payload, or
// ok false when it is not a plain data segment (ACK, maybe PSH) of TCP
// over IPv4 without options or IPv6 without extension headers.
func tcpData(f []byte) (ipLen, l4 int, key []byte, seq uint32, payload int, ok bool) {
	if len(f) < 14+40 {
		return 0, 0, nil, 0, 0, false
	}
	switch binary.BigEndian.Uint16(f[12:]) {
	case 0x0800:
		ip := header.IPv4(f[14:])
		if ip.HeaderLength() != 20 || ip.Protocol() != 6 || ip.More() || ip.FragmentOffset() != 0 {
			return 0, 0, nil, 0, 0, false
		}
		ipLen, l4, key = int(ip.TotalLength()), 34, f[26:38]
	case 0x86dd:
		ip := header.IPv6(f[14:])
		if ip.NextHeader() != 6 {
			return 0, 0, nil, 0, 0, false
		}
		ipLen, l4, key = 40+int(ip.PayloadLength()), 54, f[22:58]
	default:
		return 0, 0, nil, 0, 0, false
	}
	if 14+ipLen > len(f) || ipLen < l4-14+20 {
		return 0, 0, nil, 0, 0, false
	}
	tcp := header.TCP(f[l4 : 14+ipLen])
	if tcp.Flags()&^(header.TCPFlagAck|header.TCPFlagPsh) != 0 || int(tcp.DataOffset()) > len(tcp) {
		return 0, 0, nil, 0, 0, false
	}
	payload = len(tcp) - int(tcp.DataOffset())
	return ipLen, l4, key, tcp.SequenceNumber(), payload, payload > 0
}

func (j *joiner) send(f []byte) {
	j.mu.Lock()
	defer j.mu.Unlock()
	_, l4, key, seq, payload, ok := tcpData(f)
	if !ok {
		j.flushLocked()
		j.out(f)
		return
	}
	if j.segs > 0 && (!bytes.Equal(key, j.key) || seq != j.next || len(j.buf)+payload > j.max) {
		j.flushLocked()
	}
	if j.segs == 0 {
		j.buf = append(j.buf[:0], f...)
		j.key = append(j.key[:0], key...)
	} else {
		// Only the payload: the first segment's headers stand for all.
		tcp := header.TCP(f[l4:])
		j.buf = append(j.buf, f[l4+int(tcp.DataOffset()):l4+int(tcp.DataOffset())+payload]...)
		if tcp.Flags()&header.TCPFlagPsh != 0 {
			jt := header.TCP(j.buf[l4:])
			jt.SetFlags(uint8(jt.Flags() | header.TCPFlagPsh))
		}
	}
	j.segs++
	j.next = seq + uint32(payload)
	j.timer.Reset(200 * time.Microsecond)
}

// flushLocked hands on the segment being joined, with its IP length and
// the IP and TCP checksums made right for the whole.
func (j *joiner) flushLocked() {
	if j.segs == 0 {
		return
	}
	f := j.buf
	if j.segs > 1 {
		var src, dst tcpip.Address
		l4 := 34
		if binary.BigEndian.Uint16(f[12:]) == 0x0800 {
			ip := header.IPv4(f[14:])
			ip.SetTotalLength(uint16(len(f) - 14))
			ip.SetChecksum(0)
			ip.SetChecksum(^ip.CalculateChecksum())
			src, dst = ip.SourceAddress(), ip.DestinationAddress()
		} else {
			ip := header.IPv6(f[14:])
			ip.SetPayloadLength(uint16(len(f) - 54))
			src, dst = ip.SourceAddress(), ip.DestinationAddress()
			l4 = 54
		}
		tcp := header.TCP(f[l4:])
		tcp.SetChecksum(0)
		sum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(len(tcp)))
		tcp.SetChecksum(^checksum.Checksum(tcp, sum))
		j.sent.Add(1)
	}
	j.segs = 0
	j.out(f)
}

// offloadPair returns two running dual-stack nodes whose models offer every
// receive offload with opts' Vouch and Partial, wired through joiners.
func offloadPair(t *testing.T, vouch, partial bool) (a, b *vnode, ja, jb *joiner) {
	t.Helper()
	mk := func(mac [6]byte, addr netip.Prefix, gw netip.Addr, addr6 netip.Prefix) *vnode {
		o := offloadOpts(mac)
		o.Vouch, o.Partial = vouch, partial
		n := newVnode(t, o, Config{Addr: addr, Gateway: gw, IPv6: true, Addr6: addr6})
		if n.drv.Offloads().MaxRxPacket < 65000 {
			t.Fatalf("offloads %+v", n.drv.Offloads())
		}
		return n
	}
	a = mk(stacktest.MACA, addrA, addrB.Addr(), stacktest.Addr6A)
	b = mk(stacktest.MACB, addrB, addrA.Addr(), stacktest.Addr6B)
	ja = newJoiner(b.model.Deliver, 60000) // what A sends, joined, B receives
	jb = newJoiner(a.model.Deliver, 60000)
	a.model.SetOutput(ja.send)
	b.model.SetOutput(jb.send)
	a.s.Start()
	b.s.Start()
	t.Cleanup(func() { a.close(); b.close() })
	return a, b, ja, jb
}

// TestOffloadStacks runs TCP both ways and UDP (fragmented too) over IPv4
// and IPv6 between two stacks whose devices join TCP segments of up to
// 60000 bytes into GSO packets spread over mergeable buffers: unvouched
// (gVisor verifies every checksum of the joined segments), DATA_VALID and
// NEEDS_CSUM (gVisor verifies none). Transfers are SHA-256 checked; both
// models must have joined segments, and both pools end at their baseline.
func TestOffloadStacks(t *testing.T) {
	size := 8 << 20
	if raceEnabled || testing.Short() {
		size = 2 << 20
	}
	for _, m := range []struct {
		name           string
		vouch, partial bool
	}{{"unvouched", false, false}, {"data_valid", true, false}, {"needs_csum", false, true}} {
		t.Run(m.name, func(t *testing.T) {
			a, b, ja, jb := offloadPair(t, m.vouch, m.partial)
			stacktest.StartServices(t, b.s)
			stacktest.WaitPing(t, a.s, stacktest.Addr6B.Addr(), 10*time.Second)
			for _, dst := range []netip.Addr{addrB.Addr(), stacktest.Addr6B.Addr()} {
				at := func(port string) string { return net.JoinHostPort(dst.String(), port) }
				stacktest.Upload(t, a.s, at(stacktest.PortSHA), size)
				stacktest.Download(t, a.s, at(stacktest.PortGen), size)
				stacktest.UDPEcho(t, a.s, stacktest.UDPCheck{Addr: at(stacktest.PortEcho),
					Sizes: []int{1, 100, 1400, 1500, 3000, 8000, 20000}, Wait: 2 * time.Second})
			}
			as, bs := a.model.Stats(), b.model.Stats()
			t.Logf("joined: A sent %d, B sent %d; models wrote %d and %d GSO packets", ja.sent.Load(), jb.sent.Load(), bs.Joined, as.Joined)
			if as.Joined == 0 || bs.Joined == 0 {
				t.Fatalf("no GSO packets written (A %d, B %d)", as.Joined, bs.Joined)
			}
			for _, n := range []*vnode{a, b} {
				var st nic.Stats
				n.drv.Stats(&st)
				ep := n.s.Stats().Endpoint.Rx.Drops
				if st.Rx.Drops.Total() != 0 || ep.Total() != 0 {
					t.Errorf("%v: driver drops %v, endpoint drops %v", n.s.Config().Addr, st.Rx.Drops, ep)
				}
				if e := n.s.GVisor().Stats().TCP.ChecksumErrors.Value(); e != 0 {
					t.Errorf("%v: %d TCP checksum errors", n.s.Config().Addr, e)
				}
			}
			stacktest.CheckQuiet(t, a.quiet(), b.quiet())
		})
	}
}

// TestOffloadCorruptionNeverDelivered: with the devices vouching for
// nothing and corrupting 2% of the frames (joined segments included) they
// write, TCP transfers both ways stay byte-exact and no UDP datagram,
// whole or fragmented, reaches a socket with other bytes (UDPEcho fails
// on one), over IPv4 and IPv6.
func TestOffloadCorruptionNeverDelivered(t *testing.T) {
	size := 2 << 20
	if raceEnabled || testing.Short() {
		size = 1 << 20
	}
	a, b, _, _ := offloadPair(t, false, false)
	stacktest.StartServices(t, b.s)
	stacktest.WaitPing(t, a.s, stacktest.Addr6B.Addr(), 10*time.Second)
	a.model.SetFaults(virtiotest.Faults{Seed: 1, Corrupt: 0.02})
	b.model.SetFaults(virtiotest.Faults{Seed: 2, Corrupt: 0.02})
	for _, dst := range []netip.Addr{addrB.Addr(), stacktest.Addr6B.Addr()} {
		at := func(port string) string { return net.JoinHostPort(dst.String(), port) }
		stacktest.Upload(t, a.s, at(stacktest.PortSHA), size)
		stacktest.Download(t, a.s, at(stacktest.PortGen), size)
		stacktest.UDPEcho(t, a.s, stacktest.UDPCheck{Addr: at(stacktest.PortEcho),
			Sizes: stacktest.AllSizes(1400, 1600), Wait: 30 * time.Millisecond, Lossy: true})
		stacktest.UDPEcho(t, a.s, stacktest.UDPCheck{Addr: at(stacktest.PortEcho),
			Sizes: []int{3000, 5000, 8000, 12000}, Wait: 30 * time.Millisecond, Lossy: true})
	}
	a.model.SetFaults(virtiotest.Faults{})
	b.model.SetFaults(virtiotest.Faults{})
	as, bs := a.model.Stats(), b.model.Stats()
	var errs uint64
	for _, n := range []*vnode{a, b} {
		g := n.s.GVisor().Stats()
		errs += g.TCP.ChecksumErrors.Value() + g.UDP.ChecksumErrors.Value() + g.IP.MalformedPacketsReceived.Value()
	}
	t.Logf("corrupted %d + %d frames (%d + %d joined written); gVisor checksum and malformed drops %d", as.Corrupted, bs.Corrupted, as.Joined, bs.Joined, errs)
	if as.Corrupted == 0 || bs.Corrupted == 0 || as.Joined+bs.Joined == 0 || errs == 0 {
		t.Fatal("corruption or joining not exercised")
	}
	stacktest.CheckQuiet(t, a.quiet(), b.quiet())
}

// badSYN builds the Ethernet frame of a TCP SYN from A to B's port 5001, over
// IPv4 or IPv6, with its checksum wrong.
func badSYN(v6 bool) []byte {
	var src, dst tcpip.Address
	hl := header.IPv4MinimumSize
	if v6 {
		src, dst = tcpip.AddrFrom16(stacktest.Addr6A.Addr().As16()), tcpip.AddrFrom16(stacktest.Addr6B.Addr().As16())
		hl = header.IPv6MinimumSize
	} else {
		src, dst = tcpip.AddrFrom4(addrA.Addr().As4()), tcpip.AddrFrom4(addrB.Addr().As4())
	}
	ip := make([]byte, hl+header.TCPMinimumSize)
	tcp := header.TCP(ip[hl:])
	tcp.Encode(&header.TCPFields{SrcPort: 40001, DstPort: 5001, SeqNum: 1000, DataOffset: header.TCPMinimumSize,
		Flags: header.TCPFlagSyn, WindowSize: 65535})
	sum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, header.TCPMinimumSize)
	tcp.SetChecksum(^checksum.Checksum(tcp, sum) + 1) // off by one
	if v6 {
		header.IPv6(ip).Encode(&header.IPv6Fields{PayloadLength: header.TCPMinimumSize, TransportProtocol: header.TCPProtocolNumber, HopLimit: 64, SrcAddr: src, DstAddr: dst})
	} else {
		h := header.IPv4(ip)
		h.Encode(&header.IPv4Fields{TotalLength: uint16(len(ip)), TTL: 64, Protocol: uint8(header.TCPProtocolNumber), SrcAddr: src, DstAddr: dst})
		h.SetChecksum(^h.CalculateChecksum())
	}
	return ether(v6, ip)
}

// TestChecksumVouchingTCP: a TCP segment with a wrong checksum is dropped
// by gVisor's check (counted in its TCP checksum errors) when the device
// did not vouch for it, over IPv4 and IPv6, and taken as valid when it did
// (DATA_VALID: the device's responsibility).
func TestChecksumVouchingTCP(t *testing.T) {
	n := newVnode(t, offloadOpts(stacktest.MACB), Config{Addr: addrB, IPv6: true, Addr6: stacktest.Addr6B})
	t.Cleanup(n.close)
	n.model.SetOutput(func([]byte) {})
	n.s.Start()
	l, err := n.s.Listen("tcp", ":5001")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	tcpStats := n.s.GVisor().Stats().TCP
	wait := func(what string, c *tcpip.StatCounter, want uint64) {
		t.Helper()
		for i := 0; c.Value() != want; i++ {
			if i == 300 {
				t.Fatalf("%s: %d, want %d", what, c.Value(), want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	for _, v6 := range []bool{false, true} {
		errs, valid := tcpStats.ChecksumErrors.Value(), tcpStats.ValidSegmentsReceived.Value()
		// Until the IPv6 address has passed DAD (1 s) nothing reaches
		// TCP: send again until one is counted.
		for i := 0; tcpStats.ChecksumErrors.Value() == errs; i++ {
			if i == 40 {
				t.Fatalf("v6 %v unvouched: no checksum error counted", v6)
			}
			n.model.DeliverRaw(vhdr(0, 0, 0), badSYN(v6))
			time.Sleep(100 * time.Millisecond)
		}
		errs++
		if e, v := tcpStats.ChecksumErrors.Value(), tcpStats.ValidSegmentsReceived.Value(); e != errs || v != valid {
			t.Fatalf("v6 %v unvouched: checksum errors %d, valid %d; want %d, %d", v6, e, v, errs, valid)
		}
		n.model.DeliverRaw(vhdr(fDataValid, 0, 0), badSYN(v6))
		wait(fmt.Sprintf("v6 %v DATA_VALID: valid segments", v6), tcpStats.ValidSegmentsReceived, valid+1)
		if e := tcpStats.ChecksumErrors.Value(); e != errs {
			t.Fatalf("v6 %v: %d checksum errors after the vouched segment, want %d", v6, e, errs)
		}
	}
}
