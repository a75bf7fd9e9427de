package virtio

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/tamanet/tamanet/alloc"
	"github.com/tamanet/tamanet/nic"
	"github.com/tamanet/tamanet/nic/nictest"
	"github.com/tamanet/tamanet/nic/virtio/virtiotest"
)

// tcpFrame returns an Ethernet frame to the driver's station (02:..:0b is
// the model's default peer; the driver takes any address) carrying a TCP
// segment over IPv4 or IPv6 whose payload makes the frame n bytes long.
// Checksums are left 0: the driver does not read them.
func tcpFrame(v6 bool, n int, seq byte) []byte {
	if v6 {
		n = max(n, 54+20)
	}
	f := make([]byte, n)
	copy(f, []byte{2, 0, 0, 0, 0, 0xa, 2, 0, 0, 0, 0, 0xb})
	l4 := 14 + 20
	if v6 {
		binary.BigEndian.PutUint16(f[12:], 0x86dd)
		f[14] = 0x60
		binary.BigEndian.PutUint16(f[18:], uint16(n-54)) // payload length
		f[20] = 6                                        // TCP
		f[21] = 64
		l4 = 54
	} else {
		binary.BigEndian.PutUint16(f[12:], 0x0800)
		f[14] = 0x45
		binary.BigEndian.PutUint16(f[16:], uint16(n-14)) // total length
		f[22] = 64
		f[23] = 6 // TCP
	}
	f[l4+12] = 5 << 4 // data offset: 20 bytes
	for i := l4 + 20; i < n; i++ {
		f[i] = byte(i*13) ^ seq
	}
	return f
}

// recvPacket takes one packet with ReceivePacket and returns its bytes
// joined, freeing the buffers.
func recvPacket(t testing.TB, s *side) ([]byte, int, nic.RxMeta) {
	t.Helper()
	bufs := make([]*alloc.Buffer, s.drv.Offloads().MaxRxBuffers)
	n, meta := s.drv.ReceivePacket(bufs)
	var got []byte
	for _, b := range bufs[:n] {
		got = append(got, b.Bytes()...)
		b.Free()
	}
	return got, n, meta
}

func refill(s *side) {
	s.drv.Refill()
	s.drv.RxKick()
}

// TestRxOffloadSubsets offers every subset of the receive offloads the
// model implements, with and without Config.NoOffloads, and checks what
// is negotiated (virtio 1.2 §5.1.3.1 dependencies, and GUEST_TSO only with
// MRG_RXBUF), what Offloads reports, and that small, full and (when
// joined) 64 KiB frames of both IP versions arrive byte-exact with the
// right metadata, or are refused by the device when not negotiated, with
// the pool back at its baseline.
func TestRxOffloadSubsets(t *testing.T) {
	bits := []uint64{virtiotest.FeatureGuestCSUM, virtiotest.FeatureGuestTSO4, virtiotest.FeatureGuestTSO6, virtiotest.FeatureMrgRxBuf}
	for mask := 0; mask < 1<<len(bits); mask++ {
		for _, noOff := range []bool{false, true} {
			var offered uint64
			for i, b := range bits {
				if mask&(1<<i) != 0 {
					offered |= b
				}
			}
			if noOff && offered == 0 {
				continue
			}
			t.Run(fmt.Sprintf("offer-%#x-nooffloads-%v", offered, noOff), func(t *testing.T) {
				s := mustSide(t, virtiotest.Options{Features: virtiotest.Features | offered,
					MaxPacket: virtiotest.MaxGSOPacket, Backlog: 4, Vouch: true}, Config{NoOffloads: noOff})
				csum := offered&FeatureGuestCSUM != 0 && !noOff
				mrg := offered&FeatureMrgRxBuf != 0 && !noOff
				tso4 := csum && mrg && offered&FeatureGuestTSO4 != 0
				tso6 := csum && mrg && offered&FeatureGuestTSO6 != 0
				var want uint64
				for _, c := range []struct {
					on  bool
					bit uint64
				}{{csum, FeatureGuestCSUM}, {mrg, FeatureMrgRxBuf}, {tso4, FeatureGuestTSO4}, {tso6, FeatureGuestTSO6}} {
					if c.on {
						want |= c.bit
					}
				}
				if got := s.drv.Features() & RxOffloads; got != want {
					t.Fatalf("negotiated %#x, want %#x", got, want)
				}
				o := s.drv.Offloads()
				wantMax := s.drv.Info().MaxFrame
				if tso4 || tso6 {
					wantMax = MaxGSOPacket
				}
				if o.RxChecksum != csum || o.MaxRxPacket != wantMax || (o.MaxRxBuffers > 1) != (tso4 || tso6) {
					t.Fatalf("offloads %+v (csum %v, max %d, mrg %v)", o, csum, wantMax, mrg)
				}
				base := s.pool.InUse()
				type tc struct {
					v6  bool
					n   int
					gso uint8 // expected; 0xff: refused by the device
				}
				cases := []tc{{false, 60, nic.GSONone}, {false, 1514, nic.GSONone}, {true, 1514, nic.GSONone}}
				big := func(v6, on bool, typ uint8) tc {
					if !on {
						typ = 0xff
					}
					return tc{v6, 14 + 65535, typ}
				}
				cases = append(cases, big(false, tso4, nic.GSOTCPv4), big(true, tso6, nic.GSOTCPv6), tc{false, 9000, nic.GSOTCPv4})
				if !tso4 {
					cases[len(cases)-1].gso = 0xff
				}
				for i, c := range cases {
					if c.n > MaxGSOPacket {
						c.n = MaxGSOPacket
					}
					f := tcpFrame(c.v6, c.n, byte(i))
					oversize := s.dev.Stats().Oversize
					s.dev.Deliver(f)
					got, k, meta := recvPacket(t, s)
					refill(s)
					if c.gso == 0xff {
						if k != 0 || s.dev.Stats().Oversize != oversize+1 {
							t.Fatalf("case %d (%d bytes): not negotiated, but received %d buffers, device oversize %d", i, c.n, k, s.dev.Stats().Oversize)
						}
						continue
					}
					if !bytes.Equal(got, f) {
						t.Fatalf("case %d (%d bytes): received %d bytes in %d buffers, not the frame sent", i, c.n, len(got), k)
					}
					if meta.GSO != c.gso || meta.Verified != csum || meta.NeedsCsum {
						t.Fatalf("case %d: meta %+v, want GSO %d verified %v", i, meta, c.gso, csum)
					}
					if want := (HeaderSize + c.n + s.pool.BufferSize() - s.drv.rxOff - 1) / (s.pool.BufferSize() - s.drv.rxOff); mrg && k != want {
						t.Fatalf("case %d: %d buffers, want %d", i, k, want)
					}
				}
				nictest.CheckBaseline(t, s.pool, base, "after the frames")
				var st nic.Stats
				s.drv.Stats(&st)
				if st.Rx.Drops.Total() != 0 {
					t.Fatalf("drops %v", st.Rx.Drops)
				}
				s.drv.Close()
				nictest.CheckEmpty(t, s.pool, "after Close")
			})
		}
	}
}

// TestRxPartialChecksum: with Options.Partial the model writes TCP and UDP
// as a local sender leaves them (NEEDS_CSUM); ReceivePacket reports the
// checksum's place, and the field holds the pseudo-header sum.
func TestRxPartialChecksum(t *testing.T) {
	s := mustSide(t, virtiotest.Options{Features: virtiotest.Features | virtiotest.RxOffloads,
		MaxPacket: virtiotest.MaxGSOPacket, Backlog: 4, Partial: true}, Config{})
	for _, v6 := range []bool{false, true} {
		f := tcpFrame(v6, 3000, 1)
		s.dev.Deliver(f)
		got, _, meta := recvPacket(t, s)
		refill(s)
		l4 := 34
		if v6 {
			l4 = 54
		}
		if !meta.NeedsCsum || !meta.Verified || int(meta.CsumStart) != l4 || meta.CsumOffset != 16 || len(got) != len(f) {
			t.Fatalf("v6 %v: meta %+v, %d bytes", v6, meta, len(got))
		}
		if !bytes.Equal(got[:l4+16], f[:l4+16]) || !bytes.Equal(got[l4+18:], f[l4+18:]) {
			t.Fatalf("v6 %v: bytes other than the checksum changed", v6)
		}
	}
}

// TestRxHeaderLies: header fields the negotiated features do not allow,
// and packets whose length contradicts the header, are counted (one cause
// each) and dropped, all their buffers back in the pool.
func TestRxHeaderLies(t *testing.T) {
	s := mustSide(t, virtiotest.Options{Features: virtiotest.Features | virtiotest.FeatureGuestCSUM | virtiotest.FeatureMrgRxBuf | virtiotest.FeatureGuestTSO4,
		MaxPacket: virtiotest.MaxGSOPacket + 64, Backlog: 4}, Config{})
	base := s.pool.InUse()
	mk := func(flags, gso byte, gsoSize, start, off uint16, n int) []byte {
		h := make([]byte, HeaderSize)
		h[hdrFlags], h[hdrGSOType] = flags, gso
		binary.LittleEndian.PutUint16(h[hdrGSOSize:], gsoSize)
		binary.LittleEndian.PutUint16(h[hdrCsumStart:], start)
		binary.LittleEndian.PutUint16(h[hdrCsumOffset:], off)
		binary.LittleEndian.PutUint16(h[hdrNumBuffers:], 1)
		return h
	}
	for i, c := range []struct {
		name  string
		hdr   []byte
		n     int
		cause nic.Cause
	}{
		{"rsc_info flag", mk(HdrFRSCInfo, 0, 0, 0, 0, 0), 60, nic.Malformed},
		{"unknown flag", mk(0x40, 0, 0, 0, 0, 0), 60, nic.Malformed},
		{"gso udp", mk(0, GSOUDP, 1000, 0, 0, 0), 60, nic.Malformed},
		{"gso tcpv6 not negotiated", mk(0, GSOTCPv6, 1000, 0, 0, 0), 60, nic.Malformed},
		{"ecn not negotiated", mk(0, GSOTCPv4|GSOECN, 1000, 0, 0, 0), 60, nic.Malformed},
		{"ecn alone", mk(0, GSOECN, 0, 0, 0, 0), 60, nic.Malformed},
		{"gso without size", mk(0, GSOTCPv4, 0, 0, 0, 0), 60, nic.Malformed},
		{"csum beyond the packet", mk(HdrFNeedsCsum, 0, 0, 34, 30, 0), 60, nic.Malformed},
		{"csum in the ethernet header", mk(HdrFNeedsCsum, 0, 0, 4, 6, 0), 60, nic.Malformed},
		{"long frame not joined", mk(0, 0, 0, 0, 0, 0), 3000, nic.Oversize},
		{"joined beyond the maximum", mk(0, GSOTCPv4, 1000, 0, 0, 0), MaxGSOPacket + 1, nic.Oversize},
		{"runt", mk(0, 0, 0, 0, 0, 0), 10, nic.Runt},
	} {
		var before nic.Stats
		s.drv.Stats(&before)
		s.dev.DeliverRaw(c.hdr, tcpFrame(false, max(c.n, 54), byte(i))[:c.n])
		got, k, _ := recvPacket(t, s)
		refill(s)
		var after nic.Stats
		s.drv.Stats(&after)
		if k != 0 || len(got) != 0 || after.Rx.Drops[c.cause] != before.Rx.Drops[c.cause]+1 || after.Rx.Drops.Total() != before.Rx.Drops.Total()+1 {
			t.Fatalf("%s: received %d buffers; drops %v, want one more %v", c.name, k, after.Rx.Drops, c.cause)
		}
		nictest.CheckBaseline(t, s.pool, base, c.name)
	}
}

// TestRxNumBuffersLies: num_buffers 0, beyond MaxRxBuffers, or beyond the
// buffers the device published, on small and multi-buffer packets, is
// counted once as Malformed per packet and the packet dropped with every
// buffer published with it; the pool stays at its baseline and packets
// after the lies arrive intact.
func TestRxNumBuffersLies(t *testing.T) {
	s := mustSide(t, virtiotest.Options{Features: virtiotest.Features | virtiotest.RxOffloads,
		MaxPacket: virtiotest.MaxGSOPacket, Backlog: 4}, Config{})
	base := s.pool.InUse()
	s.dev.SetFaults(virtiotest.Faults{Seed: 5, NumBuffers: 1})
	const packets = 60
	for i := range packets {
		s.dev.Deliver(tcpFrame(i%2 == 1, []int{60, 1514, 9000, 40000}[i%4], byte(i)))
		if got, k, _ := recvPacket(t, s); k != 0 {
			t.Fatalf("packet %d: a lying num_buffers delivered %d bytes in %d buffers", i, len(got), k)
		}
		refill(s)
		nictest.CheckBaseline(t, s.pool, base, fmt.Sprintf("packet %d", i))
	}
	var st nic.Stats
	s.drv.Stats(&st)
	ds := s.dev.Stats()
	if ds.NumBufferLies != packets || st.Rx.Drops[nic.Malformed] != packets || st.Rx.Drops.Total() != packets {
		t.Fatalf("%d lies injected; drops %v", ds.NumBufferLies, st.Rx.Drops)
	}
	s.dev.SetFaults(virtiotest.Faults{})
	f := tcpFrame(false, 20000, 9)
	s.dev.Deliver(f)
	if got, _, _ := recvPacket(t, s); !bytes.Equal(got, f) {
		t.Fatalf("after the lies: %d bytes, not the frame sent", len(got))
	}
	refill(s)
	nictest.CheckBaseline(t, s.pool, base, "end")
}

// TestRxLengthLies: bad used lengths on the buffers of multi-buffer
// packets (0, beyond the posted length, below the header on the first) are
// counted as BadLength once per packet; no partial packet is ever
// returned, and the pool stays at its baseline.
func TestRxLengthLies(t *testing.T) {
	s := mustSide(t, virtiotest.Options{Features: virtiotest.Features | virtiotest.RxOffloads,
		MaxPacket: virtiotest.MaxGSOPacket, Backlog: 4}, Config{})
	base := s.pool.InUse()
	s.dev.SetFaults(virtiotest.Faults{Seed: 9, BadLength: 0.2})
	good, bad := 0, 0
	for i := range 300 {
		f := tcpFrame(i%2 == 0, []int{60, 1514, 5000, 30000}[i%4], byte(i))
		var before nic.Stats
		s.drv.Stats(&before)
		s.dev.Deliver(f)
		got, k, _ := recvPacket(t, s)
		refill(s)
		var after nic.Stats
		s.drv.Stats(&after)
		switch d := after.Rx.Drops.Total() - before.Rx.Drops.Total(); {
		case k > 0 && d == 0 && bytes.Equal(got, f):
			good++
		case k == 0 && d == 1 && after.Rx.Drops[nic.BadLength] == before.Rx.Drops[nic.BadLength]+1:
			bad++
		default:
			t.Fatalf("packet %d (%d bytes): received %d bytes in %d buffers, drops %v -> %v", i, len(f), len(got), k, before.Rx.Drops, after.Rx.Drops)
		}
		nictest.CheckBaseline(t, s.pool, base, fmt.Sprintf("packet %d", i))
	}
	if good == 0 || bad == 0 || uint64(bad) > s.dev.Stats().BadLengths {
		t.Fatalf("%d good, %d dropped, %d lies injected", good, bad, s.dev.Stats().BadLengths)
	}
	t.Logf("%d packets intact, %d dropped for %d injected bad lengths", good, bad, s.dev.Stats().BadLengths)
}

// TestAllocsRxMerged: ReceivePacket of a 9000-byte packet spanning five
// buffers -> free -> refill -> kick allocates nothing.
func TestAllocsRxMerged(t *testing.T) {
	s := mustSide(t, virtiotest.Options{Features: virtiotest.Features | virtiotest.RxOffloads,
		MaxPacket: virtiotest.MaxGSOPacket, Backlog: 4}, Config{})
	f := tcpFrame(false, 9000, 1)
	bufs := make([]*alloc.Buffer, s.drv.Offloads().MaxRxBuffers)
	base := s.pool.InUse()
	got := 0
	nictest.NoAllocs(t, allocRuns, "ReceivePacket (5 buffers) -> free -> refill -> kick", func() {
		s.dev.Deliver(f)
		n, meta := s.drv.ReceivePacket(bufs)
		if n != 5 || meta.GSO != nic.GSOTCPv4 {
			return
		}
		got++
		for i := range n {
			bufs[i].Free()
			bufs[i] = nil
		}
		s.drv.Refill()
		s.drv.RxKick()
	})
	if got != allocRuns+1 || s.pool.InUse() != base {
		t.Fatalf("received %d of %d packets, pool in use %d (baseline %d)", got, allocRuns+1, s.pool.InUse(), base)
	}
}

// TestReceiveWithOffloads: Receive, for callers that want one frame per
// buffer, still returns one-buffer frames with offloads negotiated, and
// drops (counted) a joined packet (Oversize) and one with a partial
// checksum it cannot return as a plain frame (Malformed).
func TestReceiveWithOffloads(t *testing.T) {
	s := mustSide(t, virtiotest.Options{Features: virtiotest.Features | virtiotest.RxOffloads,
		MaxPacket: virtiotest.MaxGSOPacket, Backlog: 4, Partial: true}, Config{})
	base := s.pool.InUse()
	small := tcpFrame(false, 60, 1)
	small[23] = 17 // UDP: with Partial, NEEDS_CSUM
	plain := append([]byte(nil), frame64...)
	for _, c := range []struct {
		f     []byte
		ok    bool
		cause nic.Cause
	}{{plain, true, 0}, {tcpFrame(false, 9000, 2), false, nic.Oversize}, {small, false, nic.Malformed}} {
		var before, after nic.Stats
		s.drv.Stats(&before)
		s.dev.Deliver(c.f)
		b := s.drv.Receive()
		s.drv.Stats(&after)
		switch {
		case c.ok && (b == nil || !bytes.Equal(b.Bytes(), c.f)):
			t.Fatalf("%d-byte frame not returned whole", len(c.f))
		case !c.ok && (b != nil || after.Rx.Drops[c.cause] != before.Rx.Drops[c.cause]+1):
			t.Fatalf("%d-byte packet: returned %v, drops %v, want one more %v", len(c.f), b != nil, after.Rx.Drops, c.cause)
		}
		if b != nil {
			b.Free()
		}
		refill(s)
		nictest.CheckBaseline(t, s.pool, base, "after Receive")
	}
}
