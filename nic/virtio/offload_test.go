package virtio

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/tamanet/tamanet/alloc"
	"github.com/tamanet/tamanet/nic"
	"github.com/tamanet/tamanet/nic/nictest"
	"github.com/tamanet/tamanet/nic/virtio/internal/vring"
	"github.com/tamanet/tamanet/nic/virtio/virtiotest"
)

// Transmit offloads against the device model: negotiation of every subset
// of CSUM / HOST_TSO4 / HOST_TSO6, NEEDS_CSUM filled by the device, TSO
// segments cut into valid frames, chains accounted by descriptor, lying
// headers counted and dropped, and no allocation on the way.

// csum is the Internet checksum's one's-complement sum of b added to s
// (RFC 1071), folded.
func csum(b []byte, s uint32) uint16 {
	for len(b) >= 2 {
		s += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

// pseudo is the folded sum of the TCP/UDP pseudo-header for frame f (IPv4
// RFC 9293 §3.1, IPv6 RFC 8200 §8.1) with transport length n.
func pseudo(f []byte, v6 bool, proto byte, n int) uint16 {
	var s uint32
	if v6 {
		s = uint32(csum(f[14+8:14+40], 0))
	} else {
		s = uint32(csum(f[14+12:14+20], 0))
	}
	return csum(nil, s+uint32(proto)+uint32(n))
}

// tcpPacket returns an Ethernet frame of TCP over IPv4 or IPv6 with
// payload bytes of pattern, the TCP checksum field holding the partial sum
// (the pseudo-header), as gVisor hands a GSO segment down.
func tcpPacket(v6 bool, payload int, seq uint32, flags byte) []byte {
	l3 := 20
	et := uint16(0x0800)
	if v6 {
		l3, et = 40, 0x86dd
	}
	f := make([]byte, 14+l3+20+payload)
	copy(f, []byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1})
	binary.BigEndian.PutUint16(f[12:], et)
	ip := f[14:]
	if v6 {
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:], uint16(20+payload))
		ip[6], ip[7] = 6, 64
		ip[8], ip[23] = 0xfd, 1
		ip[24], ip[39] = 0xfd, 2
	} else {
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(20+20+payload))
		binary.BigEndian.PutUint16(ip[4:], 0x1234)
		ip[6] = 0x40 // DF
		ip[8], ip[9] = 64, 6
		copy(ip[12:20], []byte{10, 0, 0, 1, 10, 0, 0, 2})
		binary.BigEndian.PutUint16(ip[10:], ^csum(ip[:20], 0))
	}
	tcp := ip[l3:]
	binary.BigEndian.PutUint16(tcp[0:], 7)
	binary.BigEndian.PutUint16(tcp[2:], 9)
	binary.BigEndian.PutUint32(tcp[4:], seq)
	binary.BigEndian.PutUint32(tcp[8:], 77)
	tcp[12] = 5 << 4
	tcp[13] = flags
	binary.BigEndian.PutUint16(tcp[14:], 65535)
	for i := range tcp[20:] {
		tcp[20+i] = byte(i*13 + i>>8)
	}
	binary.BigEndian.PutUint16(tcp[16:], pseudo(f, v6, 6, 20+payload))
	return f
}

// checkTCP checks a frame the device put on the wire: IP lengths and the
// IPv4 header checksum, and the TCP checksum. It returns the sequence
// number, the flags and the payload.
func checkTCP(t *testing.T, f []byte, v6 bool) (uint32, byte, []byte) {
	t.Helper()
	l3 := 20
	if v6 {
		l3 = 40
	}
	ip := f[14:]
	if v6 {
		if int(binary.BigEndian.Uint16(ip[4:])) != len(f)-14-40 {
			t.Fatalf("IPv6 payload length %d in a %d-byte frame", binary.BigEndian.Uint16(ip[4:]), len(f))
		}
	} else {
		if int(binary.BigEndian.Uint16(ip[2:])) != len(f)-14 {
			t.Fatalf("IPv4 total length %d in a %d-byte frame", binary.BigEndian.Uint16(ip[2:]), len(f))
		}
		if csum(ip[:20], 0) != 0xffff {
			t.Fatalf("IPv4 header checksum wrong")
		}
	}
	tcp := ip[l3:]
	if csum(tcp, uint32(pseudo(f, v6, 6, len(tcp)))) != 0xffff {
		t.Fatalf("TCP checksum wrong (%#04x) in a %d-byte frame", binary.BigEndian.Uint16(tcp[16:]), len(f))
	}
	return binary.BigEndian.Uint32(tcp[4:]), tcp[13], tcp[20:]
}

// chainOf copies pkt into pool buffers, the first behind the default
// headroom, each filled to its end.
func chainOf(t testing.TB, pool *alloc.Pool, pkt []byte) []*alloc.Buffer {
	t.Helper()
	var bufs []*alloc.Buffer
	for len(pkt) > 0 {
		b := pool.Get()
		if b == nil {
			t.Fatal("pool empty")
		}
		if len(bufs) > 0 {
			b.Reserve(0)
		}
		n := min(len(pkt), b.Cap()-b.Offset())
		body, _ := b.Append(n)
		copy(body, pkt)
		pkt = pkt[n:]
		bufs = append(bufs, b)
	}
	return bufs
}

func freeBufs(bufs []*alloc.Buffer) {
	for _, b := range bufs {
		b.Free()
	}
}

// collect sets the model's output to append copies of transmitted frames
// to *out.
func collect(dev *virtiotest.Device, out *[][]byte) {
	dev.SetOutput(func(f []byte) { *out = append(*out, bytes.Clone(f)) })
}

// TestTxOffloadSubsets negotiates every subset of the transmit offloads the
// model can offer, with and without Config.NoOffloads, and sends a plain
// frame, a frame asking for its checksum and TSO segments over IPv4 and
// IPv6: each offload works when negotiated and is refused (Malformed,
// buffers still the caller's) when not.
func TestTxOffloadSubsets(t *testing.T) {
	const (
		C  = virtiotest.FeatureCSUM
		T4 = virtiotest.FeatureHostTSO4
		T6 = virtiotest.FeatureHostTSO6
	)
	for _, offered := range []uint64{0, C, T4, T6, T4 | T6, C | T4, C | T6, C | T4 | T6} {
		for _, noOff := range []bool{false, true} {
			t.Run(fmt.Sprintf("offered=%#x/NoOffloads=%v", offered, noOff), func(t *testing.T) {
				s := mustSide(t, virtiotest.Options{Features: virtiotest.Features | offered}, Config{NoOffloads: noOff})
				var frames [][]byte
				collect(s.dev, &frames)
				base := s.pool.InUse()

				// TSO without CSUM is not negotiated (§5.1.3.1).
				want := offered
				if want&C == 0 || noOff {
					want = 0
				}
				if got := s.drv.Features() & (C | T4 | T6); got != want {
					t.Fatalf("negotiated %#x, want %#x", got, want)
				}
				off := s.drv.Offloads()
				if off.TxChecksum != (want&C != 0) || off.TxPartial != off.TxChecksum ||
					off.TSO4 != (want&T4 != 0) || off.TSO6 != (want&T6 != 0) {
					t.Fatalf("Offloads %+v for features %#x", off, want)
				}
				if want&(T4|T6) != 0 && (off.MaxTxPacket < 65536 || off.MaxTxBuffers < 33) {
					t.Fatalf("Offloads %+v cannot carry a 64 KiB segment", off)
				}

				send := func(pkt []byte, m *nic.TxMeta) error {
					t.Helper()
					bufs := chainOf(t, s.pool, pkt)
					if err := s.drv.TransmitPacket(bufs, m); err != nil {
						freeBufs(bufs)
						return err
					}
					s.drv.TxKick()
					if n := s.drv.Reclaim(); n != len(bufs) {
						t.Fatalf("Reclaim freed %d buffers of a %d-buffer chain", n, len(bufs))
					}
					return nil
				}

				// A plain frame goes out as it is.
				plain := tcpPacket(false, 100, 1, 0x18)
				frames = frames[:0]
				if err := send(plain, nil); err != nil || len(frames) != 1 || !bytes.Equal(frames[0], plain) {
					t.Fatalf("plain frame: err %v, %d frames out", err, len(frames))
				}

				// A frame asking for its TCP checksum.
				for _, v6 := range []bool{false, true} {
					pkt := tcpPacket(v6, 1000, 5, 0x18)
					start := len(pkt) - 1020
					frames = frames[:0]
					err := send(pkt, &nic.TxMeta{NeedsCsum: true, CsumStart: uint16(start), CsumOffset: 16})
					if want&C == 0 {
						if nic.CauseOf(err) != nic.Malformed {
							t.Fatalf("NEEDS_CSUM without CSUM: %v, want a Malformed refusal", err)
						}
						continue
					}
					if err != nil || len(frames) != 1 {
						t.Fatalf("checksum frame: err %v, %d frames out", err, len(frames))
					}
					checkTCP(t, frames[0], v6)
				}

				// TSO: about 60 KiB in 1448-byte segments.
				for _, v6 := range []bool{false, true} {
					const payload = 60000
					mss := 1448 // MTU 1500 less the IP and TCP headers
					if v6 {
						mss = 1440
					}
					pkt := tcpPacket(v6, payload, 1000, 0x19|0x80) // FIN PSH ACK CWR
					hl := len(pkt) - payload
					m := &nic.TxMeta{NeedsCsum: true, CsumStart: uint16(hl - 20), CsumOffset: 16,
						GSO: nic.GSOTCPv4, GSOSize: uint16(mss), HdrLen: uint16(hl)}
					feat := uint64(T4)
					if v6 {
						m.GSO, feat = nic.GSOTCPv6, T6
					}
					before := s.dev.Stats()
					frames = frames[:0]
					err := send(pkt, m)
					if want&feat == 0 {
						if nic.CauseOf(err) != nic.Malformed {
							t.Fatalf("TSO not negotiated: %v, want a Malformed refusal", err)
						}
						continue
					}
					if err != nil {
						t.Fatal(err)
					}
					if n := (payload + mss - 1) / mss; len(frames) != n {
						t.Fatalf("%d frames out, want %d", len(frames), n)
					}
					var got []byte
					for i, f := range frames {
						seq, flags, data := checkTCP(t, f, v6)
						if seq != 1000+uint32(len(got)) {
							t.Fatalf("frame %d: seq %d, want %d", i, seq, 1000+len(got))
						}
						last := i == len(frames)-1
						if (flags&0x09 != 0) != last || (flags&0x80 != 0) != (i == 0) || flags&0x10 == 0 {
							t.Fatalf("frame %d of %d: flags %#x", i, len(frames), flags)
						}
						if !last && len(data) != mss {
							t.Fatalf("frame %d: %d payload bytes, want %d", i, len(data), mss)
						}
						if !v6 && binary.BigEndian.Uint16(f[18:]) != 0x1234+uint16(i) {
							t.Fatalf("frame %d: IPv4 id %#x", i, binary.BigEndian.Uint16(f[18:]))
						}
						got = append(got, data...)
					}
					if !bytes.Equal(got, pkt[hl:]) {
						t.Fatal("segments do not join into the payload sent")
					}
					st := s.dev.Stats()
					if st.TxGSO != before.TxGSO+1 || st.TxChains != before.TxChains+1 || st.BadHeaders != 0 {
						t.Fatalf("model stats %+v", st)
					}
				}
				nictest.CheckBaseline(t, s.pool, base, "after the subsets")
			})
		}
	}
}

// TestTransmitPacketRefusals: a TxMeta the device could not honour is
// refused as Malformed, counted nowhere, and the buffers stay the
// caller's.
func TestTransmitPacketRefusals(t *testing.T) {
	s := mustSide(t, virtiotest.Options{Features: virtiotest.Features | virtiotest.TxOffloads}, Config{})
	base := s.pool.InUse()
	pkt := tcpPacket(false, 4000, 1, 0x10)
	hl := len(pkt) - 4000
	good := nic.TxMeta{NeedsCsum: true, CsumStart: uint16(hl - 20), CsumOffset: 16, GSO: nic.GSOTCPv4, GSOSize: 1448, HdrLen: uint16(hl)}
	cases := map[string]func(m *nic.TxMeta){
		"csum field beyond the packet": func(m *nic.TxMeta) { m.CsumOffset = uint16(len(pkt)) },
		"csum start beyond the packet": func(m *nic.TxMeta) { m.CsumStart = 0xffff },
		"GSO without NEEDS_CSUM":       func(m *nic.TxMeta) { m.NeedsCsum = false },
		"GSO type unknown":             func(m *nic.TxMeta) { m.GSO = 9 },
		"gso_size 0":                   func(m *nic.TxMeta) { m.GSOSize = 0 },
		"hdr_len beyond the packet":    func(m *nic.TxMeta) { m.HdrLen = uint16(len(pkt) + 1) },
		"hdr_len before csum_start":    func(m *nic.TxMeta) { m.HdrLen = m.CsumStart },
		"frames longer than the MTU":   func(m *nic.TxMeta) { m.GSOSize = 1500 },
	}
	for name, lie := range cases {
		m := good
		lie(&m)
		bufs := chainOf(t, s.pool, pkt)
		err := s.drv.TransmitPacket(bufs, &m)
		if nic.CauseOf(err) != nic.Malformed {
			t.Errorf("%s: %v, want a Malformed refusal", name, err)
		}
		for _, b := range bufs {
			if b.Headroom() != bufs[0].Headroom() && b == bufs[0] {
				t.Errorf("%s: header prepended on a refusal", name)
			}
		}
		freeBufs(bufs)
	}
	// Too many buffers, and none at all.
	if err := s.drv.TransmitPacket(nil, nil); nic.CauseOf(err) != nic.Runt {
		t.Errorf("empty chain: %v", err)
	}
	var st nic.Stats
	s.drv.Stats(&st)
	if st.Tx.Drops.Total() != 0 || st.Tx.Packets != 0 {
		t.Errorf("refusals counted: %+v", st.Tx)
	}
	nictest.CheckBaseline(t, s.pool, base, "after refusals")
	if err := s.drv.TransmitPacket(chainOf(t, s.pool, pkt), &good); err != nil {
		t.Fatalf("good meta refused: %v", err)
	}
}

// TestTxChainAccounting: a chain takes one descriptor per buffer from the
// ring's free count, a ring with fewer free than a chain needs refuses it
// (RingFull), and Reclaim gives every descriptor and buffer of a completed
// chain back.
func TestTxChainAccounting(t *testing.T) {
	s := mustSide(t, virtiotest.Options{Features: virtiotest.Features | virtiotest.TxOffloads}, Config{TxRing: 128})
	base := s.pool.InUse()
	frames := 0
	s.dev.SetOutput(func([]byte) { frames++ })
	pkt := tcpPacket(true, 64000, 1, 0x10)
	hl := len(pkt) - 64000
	m := nic.TxMeta{NeedsCsum: true, CsumStart: uint16(hl - 20), CsumOffset: 16, GSO: nic.GSOTCPv6, GSOSize: 1440, HdrLen: uint16(hl)}
	s.dev.Stall()
	posted, n := 0, 0
	for {
		bufs := chainOf(t, s.pool, pkt)
		n = len(bufs)
		free := s.drv.TxFree()
		err := s.drv.TransmitPacket(bufs, &m)
		if err != nil {
			freeBufs(bufs)
			if err != nic.ErrRingFull || free >= n {
				t.Fatalf("with %d free descriptors a %d-buffer chain got %v", free, n, err)
			}
			break
		}
		if s.drv.TxFree() != free-n {
			t.Fatalf("free descriptors %d -> %d for a %d-buffer chain", free, s.drv.TxFree(), n)
		}
		posted++
	}
	s.drv.TxKick()
	if posted != 128/n {
		t.Fatalf("%d chains of %d fit a 128-slot ring, want %d", posted, n, 128/n)
	}
	s.dev.Unstall()
	if got := s.drv.Reclaim(); got != posted*n {
		t.Fatalf("Reclaim freed %d buffers, want %d", got, posted*n)
	}
	if s.drv.TxFree() != 128 || frames != posted*45 {
		t.Fatalf("free %d after reclaim, %d frames out (want %d)", s.drv.TxFree(), frames, posted*45)
	}
	nictest.CheckBaseline(t, s.pool, base, "after chains")
	s.drv.Close()
	nictest.CheckEmpty(t, s.pool, "after Close")
}

// TestTxHeaderLies: with every header made to lie on the way to the model
// (Faults.TxHeaderLie), each packet is counted in BadHeaders and dropped,
// none reaches the wire, and the driver gets every buffer back; with the
// fault off again, packets flow.
func TestTxHeaderLies(t *testing.T) {
	s := mustSide(t, virtiotest.Options{Features: virtiotest.Features | virtiotest.TxOffloads}, Config{})
	base := s.pool.InUse()
	frames := 0
	s.dev.SetOutput(func([]byte) { frames++ })
	s.dev.SetFaults(virtiotest.Faults{Seed: 3, TxHeaderLie: 1})
	gso := tcpPacket(false, 20000, 1, 0x10)
	hl := len(gso) - 20000
	small := tcpPacket(false, 300, 1, 0x10)
	const n = 300
	for i := 0; i < n; i++ {
		var bufs []*alloc.Buffer
		var m *nic.TxMeta
		switch i % 3 {
		case 0:
			bufs = chainOf(t, s.pool, small)
		case 1:
			bufs = chainOf(t, s.pool, small)
			m = &nic.TxMeta{NeedsCsum: true, CsumStart: 34, CsumOffset: 16}
		default:
			bufs = chainOf(t, s.pool, gso)
			m = &nic.TxMeta{NeedsCsum: true, CsumStart: 34, CsumOffset: 16, GSO: nic.GSOTCPv4, GSOSize: 1448, HdrLen: uint16(hl)}
		}
		if err := s.drv.TransmitPacket(bufs, m); err != nil {
			t.Fatal(err)
		}
		s.drv.TxKick()
		s.drv.Reclaim()
	}
	st := s.dev.Stats()
	if st.HeaderLies != n || st.BadHeaders != n || frames != 0 {
		t.Fatalf("%d lies, %d bad headers counted, %d frames out; want %d, %d, 0", st.HeaderLies, st.BadHeaders, frames, n, n)
	}
	nictest.CheckBaseline(t, s.pool, base, "after lies")
	s.dev.SetFaults(virtiotest.Faults{})
	if err := s.drv.TransmitPacket(chainOf(t, s.pool, gso), &nic.TxMeta{NeedsCsum: true, CsumStart: 34, CsumOffset: 16, GSO: nic.GSOTCPv4, GSOSize: 1448, HdrLen: uint16(hl)}); err != nil {
		t.Fatal(err)
	}
	s.drv.TxKick()
	s.drv.Reclaim()
	if frames != 14 {
		t.Fatalf("%d frames after the fault, want 14", frames)
	}
	nictest.CheckBaseline(t, s.pool, base, "after recovery")
}

// TestAllocsTransmitPacket: posting chains (64 KiB TSO segments and small
// frames asking for their checksum), kicking, the model segmenting and
// checksumming, and Reclaim allocate nothing, over 2000 packets.
func TestAllocsTransmitPacket(t *testing.T) {
	s := mustSide(t, virtiotest.Options{Features: virtiotest.Features | virtiotest.TxOffloads}, Config{})
	base := s.pool.InUse()
	frames := 0
	s.dev.SetOutput(func([]byte) { frames++ })
	big := tcpPacket(false, 65000, 1, 0x10)
	hl := len(big) - 65000
	small := tcpPacket(true, 200, 1, 0x10)
	mBig := &nic.TxMeta{NeedsCsum: true, CsumStart: 34, CsumOffset: 16, GSO: nic.GSOTCPv4, GSOSize: 1448, HdrLen: uint16(hl)}
	mSmall := &nic.TxMeta{NeedsCsum: true, CsumStart: 54, CsumOffset: 16}
	bufs := make([]*alloc.Buffer, 0, 64)
	fill := func(pkt []byte) []*alloc.Buffer {
		bufs = bufs[:0]
		for len(pkt) > 0 {
			b := s.pool.Get()
			if len(bufs) > 0 {
				b.Reserve(0)
			}
			n := min(len(pkt), b.Cap()-b.Offset())
			body, _ := b.Append(n)
			copy(body, pkt)
			pkt = pkt[n:]
			bufs = append(bufs, b)
		}
		return bufs
	}
	i, failed, want := 0, 0, 0
	nictest.NoAllocs(t, allocRuns, "chain -> TransmitPacket -> kick -> segment -> reclaim", func() {
		var err error
		if i%2 == 0 {
			err = s.drv.TransmitPacket(fill(big), mBig)
			want += 45
		} else {
			err = s.drv.TransmitPacket(fill(small), mSmall)
			want++
		}
		if err != nil {
			failed++
			freeBufs(bufs)
		}
		i++
		s.drv.TxKick()
		s.drv.Reclaim()
	})
	if failed != 0 || frames != want {
		t.Fatalf("%d refused, %d frames out, want %d", failed, frames, want)
	}
	nictest.CheckBaseline(t, s.pool, base, "after allocation runs")
}

// TestTxChainForgedCompletions: a used entry naming a descriptor inside a
// chain (not its head) is counted as BadID and frees nothing; the head's
// completion frees the whole chain; a second completion of the head is a
// Duplicate. The device is stalled and the test plays it, writing the used
// ring itself.
func TestTxChainForgedCompletions(t *testing.T) {
	s := mustSide(t, virtiotest.Options{Features: virtiotest.Features | virtiotest.TxOffloads}, Config{})
	base := s.pool.InUse()
	s.dev.Stall()
	pkt := tcpPacket(false, 5000, 1, 0x10)
	bufs := chainOf(t, s.pool, pkt)
	if len(bufs) != 3 {
		t.Fatalf("%d buffers, want 3", len(bufs))
	}
	if err := s.drv.TransmitPacket(bufs, &nic.TxMeta{NeedsCsum: true, CsumStart: 34, CsumOffset: 16, GSO: nic.GSOTCPv4, GSOSize: 1448, HdrLen: 54}); err != nil {
		t.Fatal(err)
	}
	q := &s.drv.tx
	head := binary.LittleEndian.Uint16(q.avail[vring.AvailSlot(0, q.mask):])
	inner := q.link[head]
	complete := func(i uint16, id uint16) {
		o := vring.UsedSlot(i, q.mask)
		binary.LittleEndian.PutUint32(q.used[o+vring.UsedElemID:], uint32(id))
		binary.LittleEndian.PutUint32(q.used[o+vring.UsedElemLen:], 0)
		vring.Store16(q.used, vring.UsedIdx, i+1)
	}
	drops := func(c nic.Cause) uint64 {
		var st nic.Stats
		s.drv.Stats(&st)
		return st.Tx.Drops[c]
	}
	complete(0, inner)
	if n := s.drv.Reclaim(); n != 0 || drops(nic.BadID) != 1 || s.drv.TxFree() != q.num-3 {
		t.Fatalf("inner completion: freed %d, bad ids %d, free %d", n, drops(nic.BadID), s.drv.TxFree())
	}
	complete(1, head)
	if n := s.drv.Reclaim(); n != 3 || s.drv.TxFree() != q.num {
		t.Fatalf("head completion: freed %d, free %d", n, s.drv.TxFree())
	}
	nictest.CheckBaseline(t, s.pool, base, "after the chain")
	// One more frame outstanding, on another descriptor, so the
	// forged entry is not beyond what the device holds.
	fb := s.pool.Get()
	fillFrame(t, fb, 60, 1)
	if err := s.drv.Transmit(fb); err != nil {
		t.Fatal(err)
	}
	if id := binary.LittleEndian.Uint16(q.avail[vring.AvailSlot(1, q.mask):]); id == head {
		t.Fatalf("frame reposted on the chain's head %d", id)
	}
	complete(2, head)
	if n := s.drv.Reclaim(); n != 0 || drops(nic.Duplicate) != 1 {
		t.Fatalf("second head completion: freed %d, duplicates %d", n, drops(nic.Duplicate))
	}
	nictest.CheckBaseline(t, s.pool, base+1, "after forged completions")
	s.drv.Close()
	nictest.CheckEmpty(t, s.pool, "after Close")
}
