package link

import (
	"math/rand"
	"testing"

	"github.com/tamanet/tamanet/nic/nictest"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// windowOut is a segment gVisor sends from our port sport to the peer's
// port 9 acknowledging ack, announcing window.
func windowOut(ep *Endpoint, sport uint16, ack uint32, flags header.TCPFlags, window uint16) *stack.PacketBuffer {
	pkt := tcpSegment(ep, sport, ack, flags, 0, nil)
	header.TCP(pkt.TransportHeader().Slice()).SetWindowSize(window)
	return pkt
}

// ackIn is a frame from the peer's port 9 to our port dport: a TCP
// segment over IPv4 (or IPv6) with sequence number seq, flags and payload
// bytes of data, its checksums right.
func ackIn(v6 bool, dport uint16, seq uint32, flags header.TCPFlags, payload int) []byte {
	tl := header.TCPMinimumSize + payload
	tcp := header.TCP(make([]byte, tl))
	tcp.Encode(&header.TCPFields{SrcPort: 9, DstPort: dport, SeqNum: seq, AckNum: 77, DataOffset: header.TCPMinimumSize,
		Flags: flags, WindowSize: 300})
	for i := range tcp.Payload() {
		tcp.Payload()[i] = byte(i)
	}
	src, dst := dstIP, srcIP
	typ, nh := uint16(0x0800), header.IPv4MinimumSize
	if v6 {
		src, dst = peerIP6, ourIP6
		typ, nh = 0x86dd, header.IPv6MinimumSize
	}
	tcp.SetChecksum(^checksum.Checksum(tcp, header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(tl))))
	f := frame(ourMAC, typ, nh+tl)
	ip := f[header.EthernetMinimumSize:]
	if v6 {
		header.IPv6(ip).Encode(&header.IPv6Fields{PayloadLength: uint16(tl), TransportProtocol: header.TCPProtocolNumber,
			HopLimit: 64, SrcAddr: src, DstAddr: dst})
	} else {
		h := header.IPv4(ip)
		h.Encode(&header.IPv4Fields{TotalLength: uint16(nh + tl), TTL: 64, Protocol: uint8(header.TCPProtocolNumber), SrcAddr: src, DstAddr: dst})
		h.SetChecksum(^h.CalculateChecksum())
	}
	copy(ip[nh:], tcp)
	return f
}

var (
	ourIP6  = tcpip.AddrFrom16([16]byte{0xfd, 0, 15: 1})
	peerIP6 = tcpip.AddrFrom16([16]byte{0xfd, 0, 15: 2})
)

// windowOut6 is windowOut over IPv6.
func windowOut6(ep *Endpoint, sport uint16, ack uint32, window uint16) *stack.PacketBuffer {
	hl := header.IPv6MinimumSize + header.TCPMinimumSize
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{ReserveHeaderBytes: int(ep.MaxHeaderLength()) + hl, Payload: buffer.Buffer{}})
	tcp := header.TCP(pkt.TransportHeader().Push(header.TCPMinimumSize))
	tcp.Encode(&header.TCPFields{SrcPort: sport, DstPort: 9, SeqNum: 1000, AckNum: ack, DataOffset: header.TCPMinimumSize,
		Flags: header.TCPFlagAck, WindowSize: window})
	pkt.TransportProtocolNumber = header.TCPProtocolNumber
	header.IPv6(pkt.NetworkHeader().Push(header.IPv6MinimumSize)).Encode(&header.IPv6Fields{PayloadLength: header.TCPMinimumSize,
		TransportProtocol: header.TCPProtocolNumber, HopLimit: 64, SrcAddr: ourIP6, DstAddr: peerIP6})
	pkt.NetworkProtocolNumber = header.IPv6ProtocolNumber
	ep.AddHeader(pkt)
	return pkt
}

// deliveredSeq injects f, polls, and returns the sequence number of the
// TCP segment delivered and whether its checksum verifies.
func deliveredSeq(t *testing.T, r *rig, f []byte) (uint32, bool) {
	t.Helper()
	n := r.d.n
	r.dev.Inject(f)
	r.ep.Poll(8)
	if r.d.n != n+1 {
		t.Fatalf("frame not delivered")
	}
	ip := r.d.last[:r.d.lastLen]
	src, dst := dstIP, srcIP
	var tcp header.TCP
	if r.d.proto == header.IPv6ProtocolNumber {
		src, dst = peerIP6, ourIP6
		tcp = header.TCP(ip[header.IPv6MinimumSize:])
	} else {
		tcp = header.TCP(ip[header.IPv4MinimumSize:])
	}
	if len(tcp) != header.TCPMinimumSize {
		t.Fatalf("delivered segment of %d bytes: the test expects a plain ACK", len(tcp))
	}
	ok := checksum.Checksum(tcp, header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(len(tcp)))) == 0xffff
	return tcp.SequenceNumber(), ok
}

// TestZeroWindowAck: once a segment out announces a zero window, a plain
// ACK of that connection up to 2^14 past its acknowledgment number is
// delivered at that number with a right checksum, and counted; an ACK at
// or behind it, one too far ahead, one with data or other flags, one of
// another connection, and any after a window reopened go through as they
// came.
func TestZeroWindowAck(t *testing.T) {
	r := newRig(t, nictest.Config{})
	ack, psh := header.TCPFlagAck, header.TCPFlagAck|header.TCPFlagPsh
	send := func(pkt *stack.PacketBuffer) {
		t.Helper()
		if _, err := r.ep.Post(pkt); err != nil {
			t.Fatal(err)
		}
		pkt.DecRef()
		r.ep.Flush()
		r.ep.Reclaim()
	}
	check := func(what string, f []byte, want uint32) {
		t.Helper()
		seq, ok := deliveredSeq(t, r, f)
		if seq != want || !ok {
			t.Errorf("%s: delivered seq %d (checksum right: %v), want %d", what, seq, ok, want)
		}
	}

	check("before any zero window", ackIn(false, 5002, 5112, ack, 0), 5112)
	send(windowOut(r.ep, 5002, 5000, ack, 0))
	check("a plain ACK 112 past a zero window", ackIn(false, 5002, 5112, ack, 0), 5000)
	check("with PSH", ackIn(false, 5002, 5001, psh, 0), 5000)
	check("16383 past", ackIn(false, 5002, 5000+1<<14-1, ack, 0), 5000)
	var st Stats
	r.ep.Stats(&st)
	if st.RxZeroWindowAcks != 3 || st.ZeroWindows != 1 {
		t.Errorf("RxZeroWindowAcks %d, ZeroWindows %d; want 3 and 1", st.RxZeroWindowAcks, st.ZeroWindows)
	}
	check("at RCV.NXT", ackIn(false, 5002, 5000, ack, 0), 5000)
	check("behind (a zero-window probe)", ackIn(false, 5002, 4999, ack, 0), 4999)
	check("2^14 past", ackIn(false, 5002, 5000+1<<14, ack, 0), 5000+1<<14)
	for _, fl := range []header.TCPFlags{ack | header.TCPFlagFin, ack | header.TCPFlagRst, ack | header.TCPFlagSyn, ack | header.TCPFlagUrg, header.TCPFlagRst} {
		check("flags "+fl.String(), ackIn(false, 5002, 5112, fl, 0), 5112)
	}
	n := r.d.n
	r.dev.Inject(ackIn(false, 5002, 5112, psh, 10))
	r.ep.Poll(8)
	if r.d.n != n+1 || header.TCP(r.d.last[header.IPv4MinimumSize:]).SequenceNumber() != 5112 {
		t.Errorf("a segment with data was changed or not delivered")
	}
	check("another connection", ackIn(false, 5003, 5112, ack, 0), 5112)
	r.ep.Stats(&st)
	if st.RxZeroWindowAcks != 3 {
		t.Errorf("RxZeroWindowAcks %d after segments left alone, want 3", st.RxZeroWindowAcks)
	}

	// A later zero window moves the number; a window ends the note.
	send(windowOut(r.ep, 5002, 6000, psh, 0))
	check("past the second zero window", ackIn(false, 5002, 6050, ack, 0), 6000)
	send(windowOut(r.ep, 5002, 6000, ack, 1))
	check("after the window opened", ackIn(false, 5002, 6050, ack, 0), 6050)

	// IPv6, and the same ports over IPv4 left alone.
	send(windowOut6(r.ep, 5004, 7000, 0))
	check("IPv6", ackIn(true, 5004, 7100, ack, 0), 7000)
	check("same ports over IPv4", ackIn(false, 5004, 7100, ack, 0), 7100)
	send(windowOut6(r.ep, 5004, 7000, 9))
	check("IPv6 after the window opened", ackIn(true, 5004, 7100, ack, 0), 7100)

	// A SYN or RST out ends the note too.
	send(windowOut(r.ep, 5005, 100, ack, 0))
	send(windowOut(r.ep, 5005, 100, ack|header.TCPFlagRst, 0))
	check("after a RST out", ackIn(false, 5005, 150, ack, 0), 150)
	r.ep.Stats(&st)
	if st.ZeroWindows != 0 {
		t.Errorf("ZeroWindows %d after every window reopened, want 0", st.ZeroWindows)
	}
}

// TestZeroWindowEvict: past MaxZeroWindows connections the oldest note
// goes, counted, and the others stay.
func TestZeroWindowEvict(t *testing.T) {
	r := newRig(t, nictest.Config{})
	for i := 0; i <= MaxZeroWindows; i++ {
		pkt := windowOut(r.ep, uint16(6000+i), 1000, header.TCPFlagAck, 0)
		if _, err := r.ep.Post(pkt); err != nil {
			t.Fatal(err)
		}
		pkt.DecRef()
	}
	r.ep.Flush()
	var st Stats
	r.ep.Stats(&st)
	if st.ZeroWindowsEvicted != 1 || st.ZeroWindows != MaxZeroWindows {
		t.Errorf("ZeroWindowsEvicted %d, ZeroWindows %d; want 1 and %d", st.ZeroWindowsEvicted, st.ZeroWindows, MaxZeroWindows)
	}
	if seq, _ := deliveredSeq(t, r, ackIn(false, 6000, 1100, header.TCPFlagAck, 0)); seq != 1100 {
		t.Errorf("the evicted connection's ACK delivered at %d, want 1100 (unchanged)", seq)
	}
	for _, port := range []uint16{6001, 6000 + MaxZeroWindows} {
		if seq, _ := deliveredSeq(t, r, ackIn(false, port, 1100, header.TCPFlagAck, 0)); seq != 1000 {
			t.Errorf("port %d: ACK delivered at %d, want 1000", port, seq)
		}
	}
}

// TestReplace32: the incremental update gives the checksum a full
// recomputation gives, or its other one's-complement zero, which verifies
// the same.
func TestReplace32(t *testing.T) {
	rnd := rand.New(rand.NewSource(1))
	b := make([]byte, 40)
	for i := 0; i < 100000; i++ {
		rnd.Read(b)
		if i%7 == 0 {
			clear(b) // sums at the zeros' edge
		}
		old := uint32(b[4])<<24 | uint32(b[5])<<16 | uint32(b[6])<<8 | uint32(b[7])
		sum := ^checksum.Checksum(b, 0)
		nw := rnd.Uint32()
		if i%5 == 0 {
			nw = old + uint32(rnd.Intn(3)) - 1
		}
		b[4], b[5], b[6], b[7] = byte(nw>>24), byte(nw>>16), byte(nw>>8), byte(nw)
		got := replace32(sum, old, nw)
		want := ^checksum.Checksum(b, 0)
		if got != want && !(got^want == 0xffff && (got == 0 || want == 0)) {
			t.Fatalf("replace32(%#04x, %#x, %#x) = %#04x, recomputed %#04x", sum, old, nw, got, want)
		}
	}
}

// TestZeroWindowAckAllocs: while a zero window is noted, receiving plain
// ACKs that are moved allocates nothing in our layers.
func TestZeroWindowAckAllocs(t *testing.T) {
	r := newRig(t, nictest.Config{})
	pkt := windowOut(r.ep, 5002, 5000, header.TCPFlagAck, 0)
	if _, err := r.ep.Post(pkt); err != nil {
		t.Fatal(err)
	}
	pkt.DecRef()
	f := ackIn(false, 5002, 5112, header.TCPFlagAck, 0)
	step := func() {
		r.dev.Inject(f)
		r.ep.Poll(8)
	}
	for i := 0; i < allocWarmup; i++ {
		step()
	}
	var st0, st Stats
	r.ep.Stats(&st0)
	nictest.NoAllocs(t, allocRuns, "a plain ACK past a zero window, moved and delivered", step)
	r.ep.Stats(&st)
	if d := st.RxZeroWindowAcks - st0.RxZeroWindowAcks; d != allocRuns+1 {
		t.Fatalf("%d ACKs moved, want %d", d, allocRuns+1)
	}
}

// FuzzZeroWindowAck: with a zero window noted, zeroWindowAck on any bytes
// never panics, and changes nothing but the sequence number and checksum
// of a TCP plain ACK of the noted connection, moved back to the noted
// number, its checksum as right or wrong as before.
func FuzzZeroWindowAck(f *testing.F) {
	f.Add(ackIn(false, 5002, 5112, header.TCPFlagAck, 0)[header.EthernetMinimumSize:], false)
	f.Add(ackIn(true, 5002, 5112, header.TCPFlagAck, 0)[header.EthernetMinimumSize:], true)
	f.Add(ackIn(false, 5002, 5112, header.TCPFlagAck, 3)[header.EthernetMinimumSize:], false)
	r := newRig(f, nictest.Config{})
	for _, pkt := range []*stack.PacketBuffer{windowOut(r.ep, 5002, 5000, header.TCPFlagAck, 0), windowOut6(r.ep, 5002, 5000, 0)} {
		if _, err := r.ep.Post(pkt); err != nil {
			f.Fatal(err)
		}
		pkt.DecRef()
	}
	f.Fuzz(func(t *testing.T, ip []byte, v6 bool) {
		proto, src, dst, nh := header.IPv4ProtocolNumber, dstIP, srcIP, header.IPv4MinimumSize
		if v6 {
			proto, src, dst, nh = header.IPv6ProtocolNumber, peerIP6, ourIP6, header.IPv6MinimumSize
		}
		// The TCP segment as the IP header bounds it; nil if it does not.
		segment := func(b []byte) header.TCP {
			if len(b) < nh {
				return nil
			}
			end := int(header.IPv4(b).TotalLength())
			if v6 {
				end = nh + int(header.IPv6(b).PayloadLength())
			}
			if end < nh || end > len(b) {
				return nil
			}
			return header.TCP(b[nh:end])
		}
		sumOK := func(b []byte) bool {
			tcp := segment(b)
			return checksum.Checksum(tcp, header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(len(tcp)))) == 0xffff
		}
		orig := append([]byte(nil), ip...)
		before := sumOK(ip)
		r.ep.zeroWindowAck(ip, len(ip), proto, false)
		changed := false
		for i := range ip {
			if ip[i] == orig[i] {
				continue
			}
			changed = true
			if o := i - nh; o < 4 || (o >= 8 && o < 16) || o >= 18 {
				t.Fatalf("byte %d changed", i)
			}
		}
		if !changed {
			return
		}
		tcp := segment(ip)
		if len(tcp) < header.TCPMinimumSize || tcp.SequenceNumber() != 5000 || tcp.DestinationPort() != 5002 || tcp.SourcePort() != 9 ||
			len(tcp) != int(tcp.DataOffset()) || tcp.Flags()&(header.TCPFlagSyn|header.TCPFlagFin|header.TCPFlagRst) != 0 {
			t.Fatalf("moved a segment that is not a plain ACK of the noted connection to %d: %x", tcp.SequenceNumber(), ip)
		}
		if after := sumOK(ip); after != before {
			t.Fatalf("checksum right before %v, after %v", before, after)
		}
	})
}
