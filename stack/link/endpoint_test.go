package link

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/tamanet/tamanet/alloc"
	"github.com/tamanet/tamanet/nic"
	"github.com/tamanet/tamanet/nic/nictest"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

var (
	ourMAC   = [6]byte{0x02, 0, 0, 0, 0, 1}
	peerMAC  = [6]byte{0x02, 0, 0, 0, 0, 2}
	otherMAC = [6]byte{0x02, 0, 0, 0, 0, 3}
)

// countingDispatcher records what the endpoint delivers without running
// gVisor, so allocation counts cover only our layers.
type countingDispatcher struct {
	n       int
	bytes   int
	proto   tcpip.NetworkProtocolNumber
	typ     tcpip.PacketType
	last    [64]byte // first bytes of the last network payload
	lastLen int
}

func (d *countingDispatcher) DeliverNetworkPacket(proto tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	d.n++
	d.proto = proto
	d.typ = pkt.PktType
	d.bytes += pkt.Data().Size()
	if len(pkt.LinkHeader().Slice()) != header.EthernetMinimumSize {
		panic("link header not consumed")
	}
	b, _ := pkt.Data().PullUp(min(pkt.Data().Size(), len(d.last)))
	d.lastLen = copy(d.last[:], b)
}

func (d *countingDispatcher) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}

type rig struct {
	pool *alloc.Pool
	dev  *nictest.Device
	ep   *Endpoint
	d    *countingDispatcher
}

func newRig(t testing.TB, cfg nictest.Config) *rig {
	t.Helper()
	pool, err := alloc.New(make([]byte, 600*2048+alloc.Alignment), alloc.Config{Count: 600})
	if err != nil {
		t.Fatal(err)
	}
	cfg.MAC = ourMAC
	dev := nictest.New(pool, cfg)
	ep, err := New(&Options{Device: dev})
	if err != nil {
		t.Fatal(err)
	}
	d := &countingDispatcher{}
	ep.Attach(d)
	dev.Refill()
	return &rig{pool: pool, dev: dev, ep: ep, d: d}
}

func frame(dst [6]byte, typ uint16, payload int) []byte {
	f := make([]byte, header.EthernetMinimumSize+payload)
	copy(f, dst[:])
	copy(f[6:], peerMAC[:])
	binary.BigEndian.PutUint16(f[12:], typ)
	for i := header.EthernetMinimumSize; i < len(f); i++ {
		f[i] = byte(i)
	}
	return f
}

func TestReceiveFilterAndDeliver(t *testing.T) {
	r := newRig(t, nictest.Config{})
	base := r.pool.InUse()
	bcast := [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	mcast := [6]byte{0x01, 0x00, 0x5e, 0, 0, 1}
	cases := []struct {
		name  string
		frame []byte
		typ   tcpip.PacketType
		cause nic.Cause // NumCauses: delivered
	}{
		{"unicast to us", frame(ourMAC, 0x0800, 100), tcpip.PacketHost, nic.NumCauses},
		{"broadcast", frame(bcast, 0x0806, 28), tcpip.PacketBroadcast, nic.NumCauses},
		{"multicast", frame(mcast, 0x0800, 40), tcpip.PacketMulticast, nic.NumCauses},
		{"other host", frame(otherMAC, 0x0800, 100), 0, nic.Filtered},
		{"runt", frame(ourMAC, 0x0800, 0)[:10], 0, nic.Runt},
		{"oversize", frame(ourMAC, 0x0800, 1500+4+1), 0, nic.Oversize},
	}
	for _, c := range cases {
		before := *r.d
		var st Stats
		r.ep.Stats(&st)
		dropsBefore := st.Rx.Drops
		if !r.dev.Inject(c.frame) {
			t.Fatalf("%s: no posted buffer", c.name)
		}
		if rx, _ := r.ep.Poll(64); rx != 1 {
			t.Fatalf("%s: Poll received %d frames", c.name, rx)
		}
		r.ep.Stats(&st)
		if c.cause == nic.NumCauses {
			if r.d.n != before.n+1 {
				t.Fatalf("%s: not delivered", c.name)
			}
			if r.d.typ != c.typ || r.d.proto != tcpip.NetworkProtocolNumber(binary.BigEndian.Uint16(c.frame[12:])) {
				t.Fatalf("%s: delivered type %v proto %#x", c.name, r.d.typ, r.d.proto)
			}
			want := c.frame[header.EthernetMinimumSize:]
			if r.d.bytes-before.bytes != len(want) || !bytes.Equal(r.d.last[:r.d.lastLen], want[:r.d.lastLen]) {
				t.Fatalf("%s: payload differs", c.name)
			}
			if st.Rx.Drops != dropsBefore {
				t.Fatalf("%s: drops changed: %v", c.name, st.Rx.Drops)
			}
		} else {
			if r.d.n != before.n {
				t.Fatalf("%s: delivered", c.name)
			}
			if st.Rx.Drops[c.cause] != dropsBefore[c.cause]+1 || st.Rx.Drops.Total() != dropsBefore.Total()+1 {
				t.Fatalf("%s: drops %v, want one more %v", c.name, st.Rx.Drops, c.cause)
			}
		}
		if r.pool.InUse() != base {
			t.Fatalf("%s: pool in use %d, want %d (buffer not returned or refill missing)", c.name, r.pool.InUse(), base)
		}
	}
	// Detached: frames are dropped, buffers still returned.
	r.ep.Attach(nil)
	r.dev.Inject(frame(ourMAC, 0x0800, 60))
	r.ep.Poll(64)
	var st Stats
	r.ep.Stats(&st)
	if st.Rx.Drops[nic.LinkDown] != 1 || r.pool.InUse() != base {
		t.Fatalf("detached: drops %v in use %d", st.Rx.Drops, r.pool.InUse())
	}
}

func TestReceiveBudget(t *testing.T) {
	r := newRig(t, nictest.Config{})
	for i := 0; i < 100; i++ {
		r.dev.Inject(frame(ourMAC, 0x0800, 64))
	}
	if rx, _ := r.ep.Poll(64); rx != 64 {
		t.Fatalf("first step received %d, want the budget 64", rx)
	}
	if rx, _ := r.ep.Poll(64); rx != 36 {
		t.Fatalf("second step received %d, want 36", rx)
	}
	if r.d.n != 100 {
		t.Fatalf("delivered %d", r.d.n)
	}
}

// outPacket builds an outbound packet as gVisor's NIC hands it to
// WritePackets: network header and payload, then the Ethernet header added
// by AddHeader.
func outPacket(ep *Endpoint, payload int) *stack.PacketBuffer {
	data := make([]byte, payload)
	for i := range data {
		data[i] = byte(i * 7)
	}
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{
		ReserveHeaderBytes: int(ep.MaxHeaderLength()) + header.IPv4MinimumSize,
		Payload:            buffer.MakeWithData(data),
	})
	ip := pkt.NetworkHeader().Push(header.IPv4MinimumSize)
	for i := range ip {
		ip[i] = 0x45 + byte(i)
	}
	pkt.NetworkProtocolNumber = header.IPv4ProtocolNumber
	pkt.EgressRoute.LocalLinkAddress = tcpip.LinkAddress(ourMAC[:])
	pkt.EgressRoute.RemoteLinkAddress = tcpip.LinkAddress(peerMAC[:])
	ep.AddHeader(pkt)
	return pkt
}

func TestTransmit(t *testing.T) {
	r := newRig(t, nictest.Config{})
	base := r.pool.InUse()
	var got [][]byte
	r.dev.OnTransmit = func(f []byte) { got = append(got, append([]byte(nil), f...)) }
	var l stack.PacketBufferList
	p1, p2 := outPacket(r.ep, 10), outPacket(r.ep, 1480)
	defer p1.DecRef()
	defer p2.DecRef()
	l.PushBack(p1)
	l.PushBack(p2)
	kicks := func() uint64 { var s nic.Stats; r.dev.Stats(&s); return s.Tx.Kicks }
	k0 := kicks()
	n, err := r.ep.WritePackets(l)
	if n != 2 || err != nil {
		t.Fatalf("WritePackets = %d, %v", n, err)
	}
	if kicks() != k0+1 {
		t.Fatalf("%d kicks for one batch", kicks()-k0)
	}
	for i, p := range []*stack.PacketBuffer{p1, p2} {
		want := p.ToView().AsSlice()
		if !bytes.Equal(got[i], want) {
			t.Fatalf("frame %d differs from the packet", i)
		}
		eth := header.Ethernet(got[i])
		if eth.DestinationAddress() != tcpip.LinkAddress(peerMAC[:]) || eth.SourceAddress() != tcpip.LinkAddress(ourMAC[:]) || eth.Type() != header.IPv4ProtocolNumber {
			t.Fatalf("frame %d Ethernet header %x", i, got[i][:14])
		}
	}
	if r.pool.InUse() != base+2 {
		t.Fatalf("in use %d, want %d while the driver holds the frames", r.pool.InUse(), base+2)
	}
	if r.ep.Reclaim() != 2 || r.pool.InUse() != base {
		t.Fatalf("after reclaim in use %d, want %d", r.pool.InUse(), base)
	}
}

func TestTransmitRingFullAndDrops(t *testing.T) {
	r := newRig(t, nictest.Config{TxRing: 4, TxHold: true})
	base := r.pool.InUse()
	pkt := outPacket(r.ep, 100)
	defer pkt.DecRef()
	var l stack.PacketBufferList
	for i := 0; i < 6; i++ {
		l.PushBack(pkt)
	}
	n, err := r.ep.WritePackets(l)
	if n != 4 {
		t.Fatalf("sent %d into a 4-slot ring", n)
	}
	if _, ok := err.(*tcpip.ErrNoBufferSpace); !ok {
		t.Fatalf("error %v, want ErrNoBufferSpace", err)
	}
	var st Stats
	r.ep.Stats(&st)
	if st.Tx.Drops[nic.RingFull] != 2 || st.Tx.Packets != 4 {
		t.Fatalf("stats %+v", st.Tx)
	}
	if r.pool.InUse() != base+4 {
		t.Fatalf("in use %d: dropped buffers leaked", r.pool.InUse())
	}
	// Completions free the ring: a retry after Reclaim inside WritePackets
	// succeeds.
	r.dev.Complete(4)
	var one stack.PacketBufferList
	one.PushBack(pkt)
	if n, err := r.ep.WritePackets(one); n != 1 || err != nil {
		t.Fatalf("after completion: %d, %v", n, err)
	}
	r.dev.Complete(1)
	r.ep.Reclaim()
	if r.pool.InUse() != base {
		t.Fatalf("in use %d, want %d", r.pool.InUse(), base)
	}
	// Link down is counted, not sent.
	r.dev.SetLink(false)
	if n, err := r.ep.WritePackets(one); n != 0 || err == nil {
		t.Fatalf("link down: %d, %v", n, err)
	}
	r.ep.Stats(&st)
	if st.Tx.Drops[nic.LinkDown] != 1 || r.pool.InUse() != base {
		t.Fatalf("link down: %v in use %d", st.Tx.Drops, r.pool.InUse())
	}
}

func TestOptions(t *testing.T) {
	pool, _ := alloc.New(make([]byte, 8*2048+64), alloc.Config{Count: 8})
	dev := nictest.New(pool, nictest.Config{MAC: ourMAC})
	if _, err := New(&Options{}); err == nil {
		t.Fatal("nil device accepted")
	}
	big := nictest.New(pool, nictest.Config{MAC: ourMAC, MTU: 9000})
	if _, err := New(&Options{Device: big}); err == nil {
		t.Fatal("MTU larger than a buffer accepted")
	}
	ep, err := New(&Options{Device: dev})
	if err != nil || ep.LinkAddress() != tcpip.LinkAddress(ourMAC[:]) || ep.MTU() != 1500 {
		t.Fatalf("device's address and MTU: %v %v %d", err, ep.LinkAddress(), ep.MTU())
	}
}

// benchRx feeds frame f to the endpoint through inject in batches of 32
// and polls once per batch; it reports ns/packet and checks delivery.
func benchRx(b *testing.B, ep *Endpoint, d *countingDispatcher, inject func([]byte)) {
	f := frame(ourMAC, 0x0800, 1400)
	const batch = 32
	b.ReportAllocs()
	b.SetBytes(int64(len(f)))
	b.ResetTimer()
	for i := 0; i < b.N; i += batch {
		n := min(batch, b.N-i)
		for j := 0; j < n; j++ {
			inject(f)
		}
		ep.Poll(64)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/packet")
	if d.n != b.N {
		b.Fatalf("delivered %d of %d", d.n, b.N)
	}
}

// benchTx writes b.N 1400-byte packets in batches of 32, reclaiming after
// each batch, and reports ns/packet. The caller checks what the device sent.
func benchTx(b *testing.B, ep *Endpoint) {
	pkt := outPacket(ep, 1400)
	defer pkt.DecRef()
	const batch = 32
	var l, one stack.PacketBufferList
	for i := 0; i < batch; i++ {
		l.PushBack(pkt)
	}
	one.PushBack(pkt)
	b.ReportAllocs()
	b.SetBytes(int64(pkt.Size()))
	b.ResetTimer()
	for i := 0; i < b.N; i += batch {
		if b.N-i >= batch {
			ep.WritePackets(l)
		} else {
			for j := i; j < b.N; j++ {
				ep.WritePackets(one)
			}
		}
		ep.Reclaim()
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/packet")
}

func BenchmarkEndpointRx(b *testing.B) {
	r := newRig(b, nictest.Config{})
	benchRx(b, r.ep, r.d, func(f []byte) { r.dev.Inject(f) })
}

func BenchmarkEndpointTx(b *testing.B) {
	r := newRig(b, nictest.Config{})
	sent := 0
	r.dev.OnTransmit = func([]byte) { sent++ }
	benchTx(b, r.ep)
	if sent != b.N {
		b.Fatalf("device sent %d of %d", sent, b.N)
	}
}
