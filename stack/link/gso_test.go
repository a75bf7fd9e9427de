package link

import (
	"bytes"
	"testing"

	"github.com/tamanet/tamanet/nic/nictest"
	"github.com/tamanet/tamanet/nic/virtio/virtiotest"
	"github.com/tamanet/tamanet/stack/stacktest"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// The endpoint's GSO: what it asks gVisor for, and a host GSO segment as
// gVisor hands it down going out as one chain the device cuts.

var (
	srcIP = tcpip.AddrFrom4([4]byte{10, 0, 0, 1})
	dstIP = tcpip.AddrFrom4([4]byte{10, 0, 0, 2})
)

// gsoPacket is a TCP segment over IPv4 of payload bytes as gVisor's host
// GSO builds it: headers pushed, the pseudo-header sum in the checksum
// field (tcp/connect.go buildTCPHdr), GSOOptions set.
func gsoPacket(ep *Endpoint, payload int, mss uint16) *stack.PacketBuffer {
	data := make([]byte, payload)
	for i := range data {
		data[i] = byte(i*7 + i>>9)
	}
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{
		ReserveHeaderBytes: int(ep.MaxHeaderLength()) + header.IPv4MinimumSize + header.TCPMinimumSize,
		Payload:            buffer.MakeWithData(data),
	})
	tcp := header.TCP(pkt.TransportHeader().Push(header.TCPMinimumSize))
	tcp.Encode(&header.TCPFields{SrcPort: 7, DstPort: 9, SeqNum: 1000, AckNum: 1, DataOffset: header.TCPMinimumSize,
		Flags: header.TCPFlagAck | header.TCPFlagPsh, WindowSize: 65535})
	tcp.SetChecksum(header.PseudoHeaderChecksum(header.TCPProtocolNumber, srcIP, dstIP, uint16(header.TCPMinimumSize+payload)))
	pkt.TransportProtocolNumber = header.TCPProtocolNumber
	pkt.GSOOptions = stack.GSO{Type: stack.GSOTCPv4, NeedsCsum: true, CsumOffset: header.TCPChecksumOffset,
		MSS: mss, L3HdrLen: header.IPv4MinimumSize, MaxSize: ep.GSOMaxSize()}
	return ipv4Out(ep, pkt, header.IPv4Fields{TotalLength: uint16(header.IPv4MinimumSize + header.TCPMinimumSize + payload),
		ID: 0x100, TTL: 64, Protocol: uint8(header.TCPProtocolNumber), SrcAddr: srcIP, DstAddr: dstIP})
}

// ipv4Out finishes pkt as gVisor hands it to the link: an IPv4 header of
// f with its checksum pushed, the route's link addresses, the Ethernet
// header.
func ipv4Out(ep *Endpoint, pkt *stack.PacketBuffer, f header.IPv4Fields) *stack.PacketBuffer {
	ip := header.IPv4(pkt.NetworkHeader().Push(header.IPv4MinimumSize))
	ip.Encode(&f)
	ip.SetChecksum(^ip.CalculateChecksum())
	pkt.NetworkProtocolNumber = header.IPv4ProtocolNumber
	pkt.EgressRoute.LocalLinkAddress = tcpip.LinkAddress(ourMAC[:])
	pkt.EgressRoute.RemoteLinkAddress = tcpip.LinkAddress(peerMAC[:])
	ep.AddHeader(pkt)
	return pkt
}

// TestSupportedGSO: host GSO over a device that fills checksums, limited
// to what the device cuts when it cuts TCP over IPv4 and IPv6; gVisor's
// GSO otherwise; CapabilityTXChecksumOffload exactly when the device fills
// checksums (txcsum.go).
func TestSupportedGSO(t *testing.T) {
	for _, tc := range []struct {
		features uint64
		want     stack.SupportedGSO
		max      uint32
	}{
		{virtiotest.TxOffloads, stack.HostGSOSupported, 1 << 16},
		{virtiotest.FeatureCSUM | virtiotest.FeatureHostTSO4, stack.HostGSOSupported, stack.GVisorGSOMaxSize},
		{virtiotest.FeatureCSUM, stack.HostGSOSupported, stack.GVisorGSOMaxSize},
		{0, stack.GVisorGSOSupported, stack.GVisorGSOMaxSize},
	} {
		_, _, drv := stacktest.Virtio(t, virtiotest.Options{MAC: ourMAC, Features: virtiotest.Features | tc.features})
		ep, err := New(&Options{Device: drv})
		if err != nil {
			t.Fatal(err)
		}
		if ep.SupportedGSO() != tc.want || ep.GSOMaxSize() != tc.max ||
			(ep.Capabilities()&stack.CapabilityTXChecksumOffload != 0) != (tc.features&virtiotest.FeatureCSUM != 0) {
			t.Errorf("features %#x: SupportedGSO %v, GSOMaxSize %d, capabilities %#x", tc.features, ep.SupportedGSO(), ep.GSOMaxSize(), ep.Capabilities())
		}
		drv.Close()
	}
	r := newRig(t, nictest.Config{}) // no Offloader
	if r.ep.SupportedGSO() != stack.GVisorGSOSupported {
		t.Errorf("without an Offloader: %v", r.ep.SupportedGSO())
	}
}

// checkCut checks that frames, taken off the wire, are segment pkt cut
// into valid frames of at most mss payload: IPv4 header checksums, total
// lengths and identifications counting up, TCP checksums, contiguous
// sequence numbers, PSH on the last frame only, and payloads that join
// into the segment's.
func checkCut(t *testing.T, frames [][]byte, pkt *stack.PacketBuffer, mss int) {
	t.Helper()
	payload := pkt.Data().Size()
	if len(frames) != (payload+mss-1)/mss {
		t.Fatalf("%d frames out, want %d", len(frames), (payload+mss-1)/mss)
	}
	var got []byte
	for i, f := range frames {
		ip := header.IPv4(f[header.EthernetMinimumSize:])
		if !ip.IsChecksumValid() || int(ip.TotalLength()) != len(ip) || ip.ID() != 0x100+uint16(i) {
			t.Fatalf("frame %d: bad IPv4 header (id %#x)", i, ip.ID())
		}
		tcp := header.TCP(ip.Payload())
		ps := header.PseudoHeaderChecksum(header.TCPProtocolNumber, srcIP, dstIP, uint16(len(tcp)))
		if checksum.Checksum(tcp, ps) != 0xffff {
			t.Fatalf("frame %d: bad TCP checksum", i)
		}
		if tcp.SequenceNumber() != 1000+uint32(len(got)) {
			t.Fatalf("frame %d: seq %d", i, tcp.SequenceNumber())
		}
		if len(tcp.Payload()) > mss || (tcp.Flags()&header.TCPFlagPsh != 0) != (i == len(frames)-1) {
			t.Fatalf("frame %d: %d bytes, flags %v", i, len(tcp.Payload()), tcp.Flags())
		}
		got = append(got, tcp.Payload()...)
	}
	if !bytes.Equal(got, pkt.Data().AsRange().ToSlice()) {
		t.Fatal("frames do not join into the segment")
	}
}

// TestWriteGSO: a 60000-byte host GSO segment leaves the endpoint as one
// chain the device cuts into 42 valid frames. Over a device that fills
// checksums but has no TSO, the endpoint cuts the same frames itself,
// each with the device filling its checksum, and counts them as cut.
func TestWriteGSO(t *testing.T) {
	pool, model, drv := stacktest.Virtio(t, virtiotest.Options{MAC: ourMAC, Features: virtiotest.Features | virtiotest.TxOffloads})
	r := newDrvRig(t, pool, model, drv)
	var frames [][]byte
	model.SetOutput(func(f []byte) { frames = append(frames, bytes.Clone(f)) })
	base := pool.InUse()
	const payload, mss = 60000, 1448
	pkt := gsoPacket(r.ep, payload, mss)
	defer pkt.DecRef()
	var l stack.PacketBufferList
	l.PushBack(pkt)
	if n, err := r.ep.WritePackets(l); n != 1 || err != nil {
		t.Fatalf("WritePackets: %d, %v", n, err)
	}
	r.ep.Reclaim()
	checkCut(t, frames, pkt, mss)
	if st := model.Stats(); st.TxGSO != 1 || st.TxChains != 1 {
		t.Fatalf("model: %d GSO packets, %d chains", st.TxGSO, st.TxChains)
	}
	nictest.CheckBaseline(t, pool, base, "after the segment")

	pool2, model2, drv2 := stacktest.Virtio(t, virtiotest.Options{MAC: ourMAC, Features: virtiotest.Features | virtiotest.FeatureCSUM})
	r2 := newDrvRig(t, pool2, model2, drv2)
	var frames2 [][]byte
	model2.SetOutput(func(f []byte) { frames2 = append(frames2, bytes.Clone(f)) })
	base2 := pool2.InUse()
	p2 := gsoPacket(r2.ep, payload, mss)
	defer p2.DecRef()
	var l2 stack.PacketBufferList
	l2.PushBack(p2)
	if n, err := r2.ep.WritePackets(l2); n != 1 || err != nil {
		t.Fatalf("segment over a device without TSO: %d sent, %v", n, err)
	}
	r2.ep.Reclaim()
	checkCut(t, frames2, p2, mss)
	var st Stats
	r2.ep.Stats(&st)
	if st.TxCut != uint64(len(frames2)) || st.Tx.Packets != uint64(len(frames2)) {
		t.Fatalf("endpoint: %d cut, %d sent, want %d", st.TxCut, st.Tx.Packets, len(frames2))
	}
	if ms := model2.Stats(); ms.TxGSO != 0 || ms.TxCsum != uint64(len(frames2)) {
		t.Fatalf("model: %d GSO packets, %d checksums filled", ms.TxGSO, ms.TxCsum)
	}
	nictest.CheckBaseline(t, pool2, base2, "after the cut segment")
}

// TestGSOAllocs: host GSO segments of 64 KiB and single frames, through
// the endpoint, the driver's chains and the model's segmentation, and back
// with Reclaim, allocate nothing over 2000 packets.
func TestGSOAllocs(t *testing.T) {
	pool, model, drv := stacktest.Virtio(t, virtiotest.Options{MAC: ourMAC, Features: virtiotest.Features | virtiotest.TxOffloads})
	r := newDrvRig(t, pool, model, drv)
	big, small := gsoPacket(r.ep, 65000, 1448), gsoPacket(r.ep, 500, 1448)
	defer big.DecRef()
	defer small.DecRef()
	var lb, ls stack.PacketBufferList
	lb.PushBack(big)
	ls.PushBack(small)
	i, written := 0, 0
	step := func() {
		l := lb
		if i%2 == 1 {
			l = ls
		}
		i++
		n, _ := r.ep.WritePackets(l)
		written += n
		r.ep.Reclaim()
	}
	for j := 0; j < allocWarmup; j++ {
		step()
	}
	base, out := pool.InUse(), r.out
	i, written = 0, 0
	nictest.NoAllocs(t, allocRuns, "endpoint GSO chain -> driver -> model segmentation -> reclaim", step)
	if want := (allocRuns+2)/2*45 + (allocRuns+1)/2; written != allocRuns+1 || r.out-out != want || pool.InUse() != base {
		t.Fatalf("written %d of %d, %d frames out (want %d), pool %d (baseline %d)", written, allocRuns+1, r.out-out, want, pool.InUse(), base)
	}
}
