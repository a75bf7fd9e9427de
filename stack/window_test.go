package stack

// A zero receive window with the peer ahead of it: gVisor's TCP still
// takes the peer's acknowledgments and window updates (link's zero-window
// ACK allowance), so the connection does not wedge.

import (
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/tamanet/tamanet/nic/virtio/virtiotest"
	"github.com/tamanet/tamanet/stack/link"
	"github.com/tamanet/tamanet/stack/stacktest"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/seqnum"
)

// segment is a TCP segment B sent, as the hand-made peer sees it.
type segment struct {
	seq, ack seqnum.Value
	flags    header.TCPFlags
	window   uint16
	length   int
	opts     []byte
}

// rawPeer is a TCP peer at A's address built by hand, so that it can send
// exactly the segments a test needs: what B transmits arrives on segs
// (ARP requests for A are answered).
type rawPeer struct {
	n    *vnode
	segs chan segment
}

func newRawPeer(t *testing.T, n *vnode) *rawPeer {
	p := &rawPeer{n: n, segs: make(chan segment, 4096)}
	n.model.SetOutput(func(f []byte) {
		if len(f) < header.EthernetMinimumSize {
			return
		}
		switch binary.BigEndian.Uint16(f[12:14]) {
		case uint16(header.ARPProtocolNumber):
			p.answerARP(f[header.EthernetMinimumSize:])
		case uint16(header.IPv4ProtocolNumber):
			ip := header.IPv4(f[header.EthernetMinimumSize:])
			if !ip.IsValid(len(ip)) || ip.TransportProtocol() != header.TCPProtocolNumber {
				return
			}
			tcp := header.TCP(ip.Payload())
			s := segment{seq: seqnum.Value(tcp.SequenceNumber()), ack: seqnum.Value(tcp.AckNumber()),
				flags: tcp.Flags(), window: tcp.WindowSize(), length: len(tcp.Payload()),
				opts: append([]byte(nil), tcp.Options()...)}
			select {
			case p.segs <- s:
			default:
				t.Error("peer: segment queue full")
			}
		}
	})
	return p
}

func (p *rawPeer) answerARP(b []byte) {
	req := header.ARP(b)
	if !req.IsValid() || req.Op() != header.ARPRequest {
		return
	}
	arp := make([]byte, header.ARPSize)
	a := header.ARP(arp)
	a.SetIPv4OverEthernet()
	a.SetOp(header.ARPReply)
	copy(a.HardwareAddressSender(), stacktest.MACA[:])
	copy(a.ProtocolAddressSender(), req.ProtocolAddressTarget())
	copy(a.HardwareAddressTarget(), req.HardwareAddressSender())
	copy(a.ProtocolAddressTarget(), req.ProtocolAddressSender())
	f := make([]byte, header.EthernetMinimumSize+len(arp))
	header.Ethernet(f).Encode(&header.EthernetFields{SrcAddr: tcpip.LinkAddress(stacktest.MACA[:]),
		DstAddr: tcpip.LinkAddress(stacktest.MACB[:]), Type: header.ARPProtocolNumber})
	copy(f[header.EthernetMinimumSize:], arp)
	p.n.model.Deliver(f)
}

// send delivers one segment from A's port 40002 to B's port 5002.
func (p *rawPeer) send(seq, ack seqnum.Value, flags header.TCPFlags, window uint16, opts, payload []byte) {
	src, dst := tcpip.AddrFrom4(addrA.Addr().As4()), tcpip.AddrFrom4(addrB.Addr().As4())
	tl := header.TCPMinimumSize + len(opts) + len(payload)
	ip := make([]byte, header.IPv4MinimumSize+tl)
	tcp := header.TCP(ip[header.IPv4MinimumSize:])
	tcp.Encode(&header.TCPFields{SrcPort: 40002, DstPort: 5002, SeqNum: uint32(seq), AckNum: uint32(ack),
		DataOffset: uint8(header.TCPMinimumSize + len(opts)), Flags: flags, WindowSize: window})
	copy(tcp[header.TCPMinimumSize:], opts)
	copy(tcp[header.TCPMinimumSize+len(opts):], payload)
	sum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(tl))
	tcp.SetChecksum(^checksum.Checksum(tcp, sum))
	h := header.IPv4(ip)
	h.Encode(&header.IPv4Fields{TotalLength: uint16(len(ip)), TTL: 64, Protocol: uint8(header.TCPProtocolNumber), SrcAddr: src, DstAddr: dst})
	h.SetChecksum(^h.CalculateChecksum())
	p.n.model.Deliver(ether(false, ip))
}

// next returns the next segment B sent, or false after wait.
func (p *rawPeer) next(t *testing.T, wait time.Duration) (segment, bool) {
	t.Helper()
	select {
	case s := <-p.segs:
		return s, true
	case <-time.After(wait):
		return segment{}, false
	}
}

// TestZeroWindowAckTaken: gVisor advertises its receive window rounded
// down to the window scale, so while B's reader stalls the edge it
// announces moves back by up to 2^scale-1 bytes. A peer that sent up to an
// edge announced earlier (as RFC 9293 §3.8.6 allows) is then ahead of B's
// RCV.NXT; gVisor drops those bytes, and once it announces a zero window
// it finds none of the peer's segments acceptable, since they carry the
// peer's sequence number. Here B has data to send that the peer's zero
// window holds back; the peer's ACK that opens its window must reach B's
// TCP all the same (RFC 9293 §3.10.7.4: special allowance for ACKs at a
// zero window), or B never sends. Without that allowance an application
// that writes before it reads (an echo) waits forever: this wedged
// TestOutageRecovery.
func TestZeroWindowAckTaken(t *testing.T) {
	// Segment sizes that are no multiple of the scale's 128 bytes, so the
	// rounded edge moves back as the window closes.
	for _, size := range []int{1000, 1100, 700} {
		if zeroWindowAckTaken(t, size) {
			return
		}
	}
	t.Fatal("no segment size made B announce a lower edge than before its window closed: the scenario was not reached")
}

// zeroWindowAckTaken runs the check with data segments of size bytes and
// reports whether the scenario arose.
func zeroWindowAckTaken(t *testing.T, size int) bool {
	n := newVnode(t, virtiotest.Options{MAC: stacktest.MACB}, Config{Addr: addrB, Gateway: addrA.Addr()})
	defer n.close()
	p := newRawPeer(t, n)
	n.s.Start()
	l, err := n.s.Listen("tcp", ":5002")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	reply := []byte("written before anything was read")
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		accepted <- c // never read
		_, _ = c.Write(reply)
	}()

	// Handshake: MSS 1460, window scale 7 offered so B scales its own.
	// The peer's window is zero, so B holds its reply back.
	opts := make([]byte, 8)
	header.EncodeMSSOption(1460, opts)
	opts[4] = header.TCPOptionNOP
	header.EncodeWSOption(7, opts[5:])
	iss := seqnum.Value(1000)
	p.send(iss, 0, header.TCPFlagSyn, 65535, opts, nil)
	var synack segment
	for {
		s, ok := p.next(t, 5*time.Second)
		if !ok {
			t.Fatal("no SYN-ACK")
		}
		if s.flags == header.TCPFlagSyn|header.TCPFlagAck {
			synack = s
			break
		}
	}
	so := header.ParseSynOptions(synack.opts, true)
	if so.WS <= 0 {
		t.Fatalf("B announced no window scale (%d): the rounding under test does not arise", so.WS)
	}
	scale := uint(so.WS)
	sndNxt, rcvNxt := iss+1, synack.seq+1
	p.send(sndNxt, rcvNxt, header.TCPFlagAck, 0, nil, nil)
	var c net.Conn
	select {
	case c = <-accepted:
		defer c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("B did not accept the connection")
	}

	// Send up to B's latest edge, and keep the highest edge it ever
	// announced. Far from that edge, in segments of size bytes; within
	// four scale units of it, 50 bytes at a time, so that B acknowledges
	// a sequence number less than one unit below its edge, where it
	// rounds its window down to zero.
	edge := sndNxt.Add(seqnum.Size(synack.window)) // a SYN's window is not scaled (RFC 7323 §2.2)
	maxEdge := edge
	zone := seqnum.Size(4 << scale)
	payload := make([]byte, size)
	var last segment
	for {
		target := edge
		if near := maxEdge - seqnum.Value(zone); !sndNxt.LessThan(near) {
			target = sndNxt.Add(min(50, sndNxt.Size(edge)))
		} else if near.LessThan(target) {
			target = near
		}
		for sndNxt.LessThan(target) {
			k := min(seqnum.Size(size), sndNxt.Size(target))
			p.send(sndNxt, rcvNxt, header.TCPFlagAck|header.TCPFlagPsh, 0, nil, payload[:k])
			sndNxt = sndNxt.Add(k)
		}
		// Take B's acknowledgments until it has all that was sent.
		for last.ack != sndNxt {
			s, ok := p.next(t, 2*time.Second)
			if !ok {
				t.Fatalf("segments of %d bytes: B acknowledged %d, %d sent, and went silent", size, last.ack, sndNxt)
			}
			if s.length > 0 && !s.seq.LessThan(rcvNxt) {
				t.Fatalf("B sent %d bytes into the peer's zero window", s.length)
			}
			if s.flags&header.TCPFlagAck == 0 {
				continue
			}
			last = s
			edge = s.ack.Add(seqnum.Size(s.window) << scale)
			if maxEdge.LessThan(edge) {
				maxEdge = edge
			}
		}
		if last.window == 0 {
			break
		}
	}
	if !last.ack.LessThan(maxEdge) {
		t.Logf("segments of %d bytes: B closed its window at the highest edge it announced (%d)", size, maxEdge)
		return false
	}
	gap := last.ack.Size(maxEdge)
	t.Logf("segments of %d bytes: zero window at %d, %d bytes below the edge B announced before (scale %d)", size, last.ack, gap, scale)

	// The bytes up to the earlier edge put the peer ahead of B's
	// RCV.NXT (gVisor drops them; the peer would send them again once
	// the window opens). Then the peer opens its own window.
	p.send(sndNxt, rcvNxt, header.TCPFlagAck|header.TCPFlagPsh, 0, nil, payload[:gap])
	sndNxt = sndNxt.Add(gap)
	var st0 link.Stats
	n.s.Endpoint().Stats(&st0)
	p.send(sndNxt, rcvNxt, header.TCPFlagAck, 512, nil, nil)
	deadline := time.Now().Add(5 * time.Second)
	for {
		s, ok := p.next(t, time.Until(deadline))
		if !ok {
			t.Fatalf("B did not send its reply after the peer opened its window with an ACK %d bytes past B's zero window at %d: B's TCP did not take it", gap, last.ack)
		}
		// A segment before rcvNxt is B probing the peer's zero window.
		if s.length > 0 && !s.seq.LessThan(rcvNxt) {
			if s.seq != rcvNxt || s.length != len(reply) {
				t.Fatalf("B sent %d bytes at %d, want its %d-byte reply at %d", s.length, s.seq, len(reply), rcvNxt)
			}
			break
		}
	}
	var st link.Stats
	n.s.Endpoint().Stats(&st)
	if d := st.RxZeroWindowAcks - st0.RxZeroWindowAcks; d != 1 {
		t.Errorf("RxZeroWindowAcks rose by %d, want 1", d)
	}
	return true
}
