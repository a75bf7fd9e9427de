package link

import (
	"fmt"
	"strings"
	"testing"

	"github.com/tamanet/tamanet/nic/nictest"
	"github.com/tamanet/tamanet/nic/virtio/virtiotest"
	"github.com/tamanet/tamanet/stack/stacktest"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// tcpSegment is a TCP segment over IPv4 from port sport to port 9, as
// gVisor hands it to the link: headers pushed, no GSO.
func tcpSegment(ep *Endpoint, sport uint16, ack uint32, flags header.TCPFlags, payload int, opts []byte) *stack.PacketBuffer {
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{
		ReserveHeaderBytes: int(ep.MaxHeaderLength()) + header.IPv4MinimumSize + header.TCPMinimumSize + len(opts),
		Payload:            buffer.MakeWithData(make([]byte, payload)),
	})
	hl := header.TCPMinimumSize + len(opts)
	tcp := header.TCP(pkt.TransportHeader().Push(hl))
	tcp.Encode(&header.TCPFields{SrcPort: sport, DstPort: 9, SeqNum: 1000, AckNum: ack, DataOffset: uint8(hl),
		Flags: flags, WindowSize: 512})
	copy(tcp[header.TCPMinimumSize:], opts)
	pkt.TransportProtocolNumber = header.TCPProtocolNumber
	return ipv4Out(ep, pkt, header.IPv4Fields{TotalLength: uint16(header.IPv4MinimumSize + hl + payload),
		TTL: 64, Protocol: uint8(header.TCPProtocolNumber), SrcAddr: srcIP, DstAddr: dstIP})
}

// ackRig is an endpoint over the virtio model that records, per frame
// sent, "port/ack/flags/length".
type ackRig struct {
	ep    *Endpoint
	model *virtiotest.Device
	sent  []string
}

func newAckRig(t *testing.T) *ackRig {
	pool, model, drv := stacktest.Virtio(t, virtiotest.Options{MAC: ourMAC})
	ep, err := New(&Options{Device: drv})
	if err != nil {
		t.Fatal(err)
	}
	r := &ackRig{ep: ep, model: model}
	model.SetOutput(func(f []byte) {
		ip := header.IPv4(f[header.EthernetMinimumSize:])
		tcp := header.TCP(ip.Payload())
		r.sent = append(r.sent, fmt.Sprintf("%d/%d/%s/%d", tcp.SourcePort(), tcp.AckNumber(), strings.ReplaceAll(tcp.Flags().String(), " ", ""), len(tcp.Payload())))
	})
	ep.Attach(&countingDispatcher{})
	t.Cleanup(func() {
		ep.Close()
		for ep.Reclaim() > 0 {
		}
		if pool.InUse() != drv.Info().RxRing {
			t.Errorf("pool in use %d after the test, want the receive ring's %d", pool.InUse(), drv.Info().RxRing)
		}
	})
	return r
}

// post posts each segment and drops the test's reference.
func (r *ackRig) post(t *testing.T, pkts ...*stack.PacketBuffer) {
	t.Helper()
	for _, p := range pkts {
		if _, err := r.ep.Post(p); err != nil {
			t.Fatal(err)
		}
		p.DecRef()
	}
}

// check compares what the device sent with want, then reclaims, so the
// ring is idle (a frame posted next is kicked at once) and nothing kept
// waits any more: Reclaim, the poll step's start, posts kept ACKs.
func (r *ackRig) check(t *testing.T, what string, want ...string) {
	t.Helper()
	r.checkSent(t, what, want...)
	r.ep.Reclaim()
	r.checkSent(t, what+", then Reclaim")
}

// checkSent compares what the device sent with want and forgets it.
func (r *ackRig) checkSent(t *testing.T, what string, want ...string) {
	t.Helper()
	if fmt.Sprint(r.sent) != fmt.Sprint(want) {
		t.Fatalf("%s: sent %v, want %v", what, r.sent, want)
	}
	r.sent = r.sent[:0]
}

// TestPlainAckWaitsForFlush: a plain ACK waits for Flush, and goes out
// then; a reply on the same connection that acknowledges as much takes
// its place (counted); a later ACK acknowledging more replaces it, one
// acknowledging the same does not (a duplicate ACK is a signal); ACKs with
// SACK blocks and segments with other flags are never kept; other
// connections' ACKs wait side by side, in order.
func TestPlainAckWaitsForFlush(t *testing.T) {
	r := newAckRig(t)
	ack, psh := header.TCPFlagAck, header.TCPFlagAck|header.TCPFlagPsh

	r.post(t, tcpSegment(r.ep, 1, 100, ack, 0, nil))
	r.checkSent(t, "a plain ACK before Flush")
	r.ep.Flush()
	r.check(t, "a plain ACK at Flush", "1/100/A/0")

	r.post(t, tcpSegment(r.ep, 1, 150, ack, 0, nil))
	r.checkSent(t, "a plain ACK before Reclaim")
	r.ep.Reclaim()
	r.check(t, "a plain ACK at Reclaim, the next step's start", "1/150/A/0")

	r.post(t, tcpSegment(r.ep, 1, 200, ack, 0, nil), tcpSegment(r.ep, 1, 200, psh, 10, nil))
	r.ep.Flush()
	r.check(t, "an ACK and the reply", "1/200/PA/10")

	// With host GSO gVisor sets GSOOptions on plain ACKs too.
	gsoAck := tcpSegment(r.ep, 1, 250, ack, 0, nil)
	gsoAck.GSOOptions = stack.GSO{Type: stack.GSOTCPv4, NeedsCsum: true, CsumOffset: header.TCPChecksumOffset,
		MSS: 1460, L3HdrLen: header.IPv4MinimumSize, MaxSize: 65536}
	r.post(t, gsoAck)
	r.checkSent(t, "a plain ACK with GSO options, before Flush")
	r.post(t, tcpSegment(r.ep, 1, 250, psh, 10, nil))
	r.ep.Flush()
	r.check(t, "a GSO-typed ACK and the reply", "1/250/PA/10")

	r.post(t, tcpSegment(r.ep, 1, 300, ack, 0, nil), tcpSegment(r.ep, 1, 400, ack, 0, nil))
	r.ep.Flush()
	r.check(t, "an ACK and one acknowledging more", "1/400/A/0")

	r.post(t, tcpSegment(r.ep, 1, 400, ack, 0, nil), tcpSegment(r.ep, 1, 400, ack, 0, nil))
	r.ep.Flush()
	r.check(t, "two ACKs of the same number", "1/400/A/0", "1/400/A/0")

	sack := make([]byte, 12)
	sack[0], sack[1] = header.TCPOptionNOP, header.TCPOptionNOP
	sack[2], sack[3] = header.TCPOptionSACK, 10
	r.post(t, tcpSegment(r.ep, 1, 500, ack, 0, sack))
	r.check(t, "an ACK with SACK blocks, at once", "1/500/A/0")

	r.post(t, tcpSegment(r.ep, 1, 600, ack, 0, nil), tcpSegment(r.ep, 1, 600, header.TCPFlagRst|ack, 0, nil))
	r.ep.Flush()
	r.check(t, "an ACK then a RST", "1/600/A/0", "1/600/RA/0")

	r.post(t, tcpSegment(r.ep, 1, 700, ack, 0, nil), tcpSegment(r.ep, 2, 50, ack, 0, nil), tcpSegment(r.ep, 2, 60, psh, 5, nil))
	r.ep.Flush()
	r.check(t, "two connections", "2/60/PA/5", "1/700/A/0")

	r.post(t, tcpSegment(r.ep, 1, 800, ack, 0, nil), tcpSegment(r.ep, 1, 700, psh, 5, nil))
	r.ep.Flush()
	r.check(t, "a reply acknowledging less", "1/800/A/0", "1/700/PA/5")

	for i := range MaxPendingAcks + 1 {
		r.post(t, tcpSegment(r.ep, uint16(10+i), 1, ack, 0, nil))
	}
	r.ep.Flush() // the last one could not wait: posted at once
	want := []string{fmt.Sprintf("%d/1/A/0", 10+MaxPendingAcks)}
	for i := range MaxPendingAcks {
		want = append(want, fmt.Sprintf("%d/1/A/0", 10+i))
	}
	r.check(t, "more connections than MaxPendingAcks", want...)

	var st Stats
	r.ep.Stats(&st)
	if st.TxAcksMerged != 4 {
		t.Errorf("TxAcksMerged %d, want 4", st.TxAcksMerged)
	}
	// Close releases what waits.
	r.post(t, tcpSegment(r.ep, 3, 1, ack, 0, nil))
}

// TestPlainAckAllocs: keeping an ACK and replacing it with the reply
// allocates nothing in the endpoint.
func TestPlainAckAllocs(t *testing.T) {
	r := newAckRig(t)
	ack := tcpSegment(r.ep, 1, 100, header.TCPFlagAck, 0, nil)
	reply := tcpSegment(r.ep, 1, 100, header.TCPFlagAck|header.TCPFlagPsh, 100, nil)
	defer ack.DecRef()
	defer reply.DecRef()
	sent := 0
	r.model.SetOutput(func([]byte) { sent++ })
	n := nictest.Allocs(1000, func() {
		r.ep.Post(ack)
		r.ep.Post(reply)
		r.ep.Flush()
		r.ep.Reclaim()
	})
	if n != 0 {
		t.Fatalf("%d allocations in 1000 rounds of an ACK and its reply", n)
	}
	var st Stats
	r.ep.Stats(&st)
	if st.TxAcksMerged < 1000 || sent != int(st.TxAcksMerged) {
		t.Fatalf("TxAcksMerged %d, %d frames sent, after 1000 rounds and a warm-up", st.TxAcksMerged, sent)
	}
}
