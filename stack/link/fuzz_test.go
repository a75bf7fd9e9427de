package link

import (
	"bytes"
	"testing"

	"github.com/tamanet/tamanet/alloc"
	"github.com/tamanet/tamanet/nic"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// fzDev is a transmit-only nic.Device whose answers the fuzzer sets: link
// state, ring size, MTU, headroom, and when posted frames complete. It
// checks the buffers it is handed.
type fzDev struct {
	t        *testing.T
	pool     *alloc.Pool
	info     nic.Info
	link     bool
	ring     []*alloc.Buffer // posted, oldest first
	size     int
	done     int // how many of ring have completed
	frames   [][]byte
	reclaims int
}

func (d *fzDev) Info() nic.Info         { return d.info }
func (d *fzDev) Pool() *alloc.Pool      { return d.pool }
func (d *fzDev) LinkUp() bool           { return d.link }
func (d *fzDev) Receive() *alloc.Buffer { return nil }
func (d *fzDev) Refill() int            { return 0 }
func (d *fzDev) RxKick()                {}
func (d *fzDev) TxKick()                {}
func (d *fzDev) Stats(s *nic.Stats)     {}
func (d *fzDev) Transmit(b *alloc.Buffer) error {
	if !d.pool.Owns(b) {
		d.t.Fatal("Transmit of a foreign buffer")
	}
	for _, p := range d.ring {
		if p == b {
			d.t.Fatalf("buffer %d posted twice", b.Index())
		}
	}
	if !d.link {
		return nic.ErrLinkDown
	}
	if n := b.Len(); n < 14 {
		return nic.ErrRunt
	} else if n > d.info.MaxFrame {
		return nic.ErrOversize
	}
	if len(d.ring) == d.size {
		return nic.ErrRingFull
	}
	if b.Headroom() < d.info.Headroom {
		d.t.Fatalf("frame posted with %d bytes headroom, device needs %d", b.Headroom(), d.info.Headroom)
	}
	d.ring = append(d.ring, b)
	d.frames = append(d.frames, bytes.Clone(b.Bytes()))
	return nil
}

func (d *fzDev) Reclaim() int {
	d.reclaims++
	n := d.done
	for _, b := range d.ring[:n] {
		if err := d.pool.Put(b); err != nil {
			d.t.Fatal(err)
		}
	}
	d.ring = append(d.ring[:0], d.ring[n:]...)
	d.done = 0
	return n
}

// fzPacket builds an outbound packet with a network header of nh bytes and
// a payload split into views at the given cut points, plus an Ethernet
// header when eth is set.
func fzPacket(ep *Endpoint, nh, payload int, cuts []int, eth bool) *stack.PacketBuffer {
	var pl buffer.Buffer
	data := make([]byte, payload)
	for i := range data {
		data[i] = byte(i*13 + payload)
	}
	prev := 0
	for _, c := range cuts {
		if c > prev && c < payload {
			pl.Append(buffer.NewViewWithData(data[prev:c]))
			prev = c
		}
	}
	if prev < payload {
		pl.Append(buffer.NewViewWithData(data[prev:]))
	}
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{
		ReserveHeaderBytes: int(ep.MaxHeaderLength()) + nh,
		Payload:            pl,
	})
	h := pkt.NetworkHeader().Push(nh)
	for i := range h {
		h[i] = 0x45 + byte(i)
	}
	pkt.NetworkProtocolNumber = header.IPv4ProtocolNumber
	if eth {
		pkt.EgressRoute.LocalLinkAddress = tcpip.LinkAddress(ourMAC[:])
		pkt.EgressRoute.RemoteLinkAddress = tcpip.LinkAddress(peerMAC[:])
		ep.AddHeader(pkt)
	}
	return pkt
}

type fzReader struct{ b []byte }

func (r *fzReader) u8() byte {
	if len(r.b) == 0 {
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *fzReader) u16() uint16 { return uint16(r.u8()) | uint16(r.u8())<<8 }

// FuzzTransmit sends batches of packets of any size and view layout through
// WritePackets to a device whose ring, link and MTU the fuzzer controls.
// Every packet is either sent byte for byte or counted under one cause;
// packets larger than the MTU allows or shorter than an Ethernet header
// never reach the device; the error is set exactly when something was
// dropped; and no pool buffer is lost or put twice.
func FuzzTransmit(f *testing.F) {
	// Header: pool size, ring size, device headroom and device MTU
	// choices; then ops.
	pkt := func(nh, payload int, eth bool, cuts ...int) []byte {
		b := []byte{byte(nh), byte(payload), byte(payload >> 8), byte(len(cuts))}
		for _, c := range cuts {
			b = append(b, byte(c), byte(c>>8))
		}
		if eth {
			return append(b, 1)
		}
		return append(b, 0)
	}
	batch := func(head []byte, pkts ...[]byte) []byte {
		b := append(append([]byte(nil), head...), 0, byte(len(pkts)))
		for _, p := range pkts {
			b = append(b, p...)
		}
		return b
	}
	h := []byte{14, 3, 1, 0} // 16 buffers, 4 slots, headroom 12, MTU 1500
	ip := pkt(20, 100, true)
	f.Add(batch(h, ip))
	f.Add(batch(h, pkt(20, 1480, true), pkt(20, 1484, true), pkt(20, 1485, true)))        // MTU, MTU+4 (VLAN room), one more
	f.Add(append(batch(h, ip, ip, ip, ip, ip, ip), 1, 7, 0, 1, 20, 64, 0, 0, 1))          // ring full, reclaim, again
	f.Add(batch(append(h, 2), ip))                                                        // link down
	f.Add(batch(h, pkt(4, 0, false), pkt(0, 13, false), pkt(0, 0, true)))                 // shorter than an Ethernet header
	f.Add(batch([]byte{3, 15, 2, 0}, pkt(20, 200, true, 10, 50, 90), ip, ip, ip, ip, ip)) // pool runs dry; split views
	// Device MTU 576, SetMTU(1500) above it, a 1234-byte frame the device
	// refuses; then SetMTU(65535), which does not fit a buffer.
	f.Add(append(batch([]byte{14, 3, 1, 1, 3, 0xdc, 0x05}, pkt(20, 1200, true)), 3, 0xff, 0xff))
	f.Fuzz(func(t *testing.T, data []byte) {
		in := &fzReader{b: data}
		count := 2 + int(in.u8()%40)
		ringSize := 1 + int(in.u8()%16)
		headroom := []int{0, 12, 64, 100}[in.u8()%4]
		devMTU := []int{1500, 576, 68, 9000}[in.u8()%4]

		pool, err := alloc.New(make([]byte, count*2048+64), alloc.Config{Count: count})
		if err != nil {
			t.Fatal(err)
		}
		dev := &fzDev{t: t, pool: pool, link: true, size: ringSize,
			info: nic.Info{Name: "fuzz", MAC: ourMAC, MTU: devMTU, MaxFrame: devMTU + nic.FrameOverhead, Headroom: headroom, TxRing: ringSize}}
		ep, err := New(&Options{Device: dev})
		if fits := headroom+dev.info.MaxFrame <= pool.BufferSize(); (err == nil) != fits {
			t.Fatalf("New with MTU %d, headroom %d, %d-byte buffers: %v", devMTU, headroom, pool.BufferSize(), err)
		}
		if err != nil {
			return
		}

		var st Stats
		for steps := 0; len(in.b) > 0 && steps < 64; steps++ {
			switch op := in.u8(); op % 4 {
			case 0: // a batch
				var l stack.PacketBufferList
				var pkts []*stack.PacketBuffer
				for k := max(1, int(in.u8()%7)); k > 0; k-- {
					nh := int(in.u8() % 61)
					payload := int(in.u16() % 10000)
					var cuts []int
					for c := int(in.u8() % 4); c > 0; c-- {
						cuts = append(cuts, int(in.u16()%10000))
					}
					p := fzPacket(ep, nh, payload, cuts, in.u8()&1 != 0)
					pkts = append(pkts, p)
					l.PushBack(p)
				}
				ep.Stats(&st)
				before := st.Tx
				inUse, posted, framesBefore := pool.InUse(), len(dev.ring), len(dev.frames)
				maxFrame := int(ep.MTU()) + nic.FrameOverhead
				n, terr := ep.WritePackets(l)
				ep.Stats(&st)
				dropped := st.Tx.Drops.Total() - before.Drops.Total()
				if n < 0 || n > len(pkts) || uint64(n) != st.Tx.Packets-before.Packets || uint64(n)+dropped != uint64(len(pkts)) {
					t.Fatalf("%d packets: %d sent, %d counted, %d dropped", len(pkts), n, st.Tx.Packets-before.Packets, dropped)
				}
				if (terr != nil) != (n < len(pkts)) {
					t.Fatalf("%d of %d sent, error %v", n, len(pkts), terr)
				}
				// The frames the device got are the sent packets, in order.
				got := dev.frames[framesBefore:]
				if len(got) != n {
					t.Fatalf("device got %d frames, %d sent", len(got), n)
				}
				i := 0
				for _, p := range pkts {
					size := p.Size()
					if size > maxFrame || size < header.EthernetMinimumSize {
						continue // must not have been sent: checked by matching below
					}
					if i < len(got) && bytes.Equal(got[i], p.ToView().AsSlice()) {
						i++
					}
				}
				if i != n {
					t.Fatalf("%d sent frames match packets in order, %d sent", i, n)
				}
				for _, p := range pkts {
					p.DecRef()
				}
				if pool.InUse() != inUse+(len(dev.ring)-posted) {
					t.Fatalf("pool in use %d -> %d while the device's ring went %d -> %d", inUse, pool.InUse(), posted, len(dev.ring))
				}
			case 1: // frames complete
				dev.done = min(len(dev.ring), int(in.u8()%8))
				ep.Reclaim()
			case 2:
				dev.link = !dev.link
			case 3:
				ep.SetMTU(uint32(in.u16()))
				if m := ep.MTU(); headroom+int(m)+nic.FrameOverhead > pool.BufferSize() {
					t.Fatalf("MTU %d does not fit a %d-byte buffer", m, pool.BufferSize())
				}
			}
			if pool.InUse() != len(dev.ring) || pool.Stats().RefusedPuts != 0 {
				t.Fatalf("pool in use %d, device holds %d, refused puts %d", pool.InUse(), len(dev.ring), pool.Stats().RefusedPuts)
			}
		}
		dev.done = len(dev.ring)
		ep.Reclaim()
		if pool.InUse() != 0 || pool.Stats().RefusedPuts != 0 {
			t.Fatalf("leak: %d in use, %d refused puts", pool.InUse(), pool.Stats().RefusedPuts)
		}
	})
}
