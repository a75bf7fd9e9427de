package enet_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/tamanet/tamanet/alloc"
	"github.com/tamanet/tamanet/nic"
	"github.com/tamanet/tamanet/nic/enet"
	"github.com/tamanet/tamanet/nic/enet/enettest"
	"github.com/tamanet/tamanet/nic/enet/internal/bd"
	"github.com/tamanet/tamanet/nic/nictest"
)

// ipSpec describes a test frame: IPv4 or IPv6, TCP (6) or UDP (17), payload
// bytes, an IPv4 fragment, IPv4 header options (4-byte words).
type ipSpec struct {
	v6      bool
	proto   byte
	payload int
	frag    bool
	options int
}

func (s ipSpec) String() string {
	v, p := "v4", "tcp"
	if s.v6 {
		v = "v6"
	}
	if s.proto == 17 {
		p = "udp"
	}
	x := ""
	if s.frag {
		x += "-frag"
	}
	if s.options > 0 {
		x += "-options"
	}
	return v + p + x
}

// csumOff is the checksum field's offset in the transport header.
func (s ipSpec) csumOff() int {
	if s.proto == 6 {
		return 16
	}
	return 6
}

// ipHdr is the IP header length.
func (s ipSpec) ipHdr() int {
	if s.v6 {
		return 40
	}
	return 20 + 4*s.options
}

// ipFrame builds an Ethernet frame from station a to b as s says, with
// correct IP and transport checksums (gVisor's checksum package: an
// oracle independent of the driver and the model).
func ipFrame(s ipSpec, rng *rand.Rand) []byte {
	th := 20
	if s.proto == 17 {
		th = 8
	}
	f := make([]byte, 14+s.ipHdr()+th+s.payload)
	copy(f, []byte{2, 0, 0, 0, 0, 0xb, 2, 0, 0, 0, 0, 0xa})
	ip := f[14:]
	seg := ip[s.ipHdr():]
	for i := th; i < len(seg); i++ {
		seg[i] = byte(rng.Uint32())
	}
	binary.BigEndian.PutUint16(seg[0:], 1000+uint16(rng.IntN(1000)))
	binary.BigEndian.PutUint16(seg[2:], 7)
	if s.proto == 6 {
		binary.BigEndian.PutUint32(seg[4:], rng.Uint32())
		seg[12] = 5 << 4
		seg[13] = 0x18
	} else {
		binary.BigEndian.PutUint16(seg[4:], uint16(len(seg)))
	}
	if s.v6 {
		binary.BigEndian.PutUint16(f[12:], 0x86dd)
		ip[0] = 6 << 4
		binary.BigEndian.PutUint16(ip[4:], uint16(len(seg)))
		ip[6], ip[7] = s.proto, 64
		copy(ip[8:], []byte{0xfd, 0, 15: 1})
		copy(ip[24:], []byte{0xfd, 0, 15: 2})
	} else {
		binary.BigEndian.PutUint16(f[12:], 0x0800)
		ip[0] = 4<<4 | byte(s.ipHdr()/4)
		binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
		binary.BigEndian.PutUint16(ip[4:], uint16(rng.Uint32()))
		if s.frag {
			binary.BigEndian.PutUint16(ip[6:], 1<<13) // MF, offset 0
		}
		ip[8], ip[9] = 64, s.proto
		copy(ip[12:], []byte{10, 0, 0, 1, 10, 0, 0, 2})
		for i := 20; i < s.ipHdr(); i++ {
			ip[i] = 1 // NOP options
		}
		binary.BigEndian.PutUint16(ip[10:], ^checksum.Checksum(ip[:s.ipHdr()], 0))
	}
	binary.BigEndian.PutUint16(seg[s.csumOff():], ^checksum.Checksum(seg, pseudo(s, f)))
	if s.proto == 17 && binary.BigEndian.Uint16(seg[6:]) == 0 {
		binary.BigEndian.PutUint16(seg[6:], 0xffff)
	}
	return f
}

func pseudo(s ipSpec, f []byte) uint16 {
	ip := f[14:]
	seg := uint16(len(f) - 14 - s.ipHdr())
	if s.v6 {
		return header.PseudoHeaderChecksum(tcpip.TransportProtocolNumber(s.proto),
			tcpip.AddrFrom16Slice(ip[8:24]), tcpip.AddrFrom16Slice(ip[24:40]), seg)
	}
	return header.PseudoHeaderChecksum(tcpip.TransportProtocolNumber(s.proto),
		tcpip.AddrFrom4Slice(ip[12:16]), tcpip.AddrFrom4Slice(ip[16:20]), seg)
}

// checksumsOK reports whether f's IPv4 header and transport checksums are
// right.
func checksumsOK(s ipSpec, f []byte) error {
	ip := f[14:]
	if !s.v6 && checksum.Checksum(ip[:s.ipHdr()], 0) != 0xffff {
		return errors.New("IPv4 header checksum wrong")
	}
	seg := ip[s.ipHdr():]
	if c := binary.BigEndian.Uint16(seg[s.csumOff():]); c == 0 {
		return errors.New("transport checksum zero")
	}
	if checksum.Checksum(seg, pseudo(s, f)) != 0xffff {
		return fmt.Errorf("transport checksum %#x wrong", binary.BigEndian.Uint16(seg[s.csumOff():]))
	}
	return nil
}

// meta is the checksum request for a frame s describes.
func meta(s ipSpec) *nic.TxMeta {
	return &nic.TxMeta{NeedsCsum: true, CsumStart: uint16(14 + s.ipHdr()), CsumOffset: uint16(s.csumOff())}
}

// sendPacket copies f into a pool buffer and posts it with TransmitPacket.
func sendPacket(t testing.TB, r *rig, f []byte, m *nic.TxMeta) error {
	t.Helper()
	b := r.pool.Get()
	if b == nil {
		t.Fatal("pool empty")
	}
	p, err := b.Append(len(f))
	if err != nil {
		t.Fatal(err)
	}
	copy(p, f)
	if err := r.drv.TransmitPacket([]*alloc.Buffer{b}, m); err != nil {
		r.pool.Put(b)
		return err
	}
	return nil
}

var txSpecs = []ipSpec{
	{proto: 6, payload: 1000}, {proto: 17, payload: 333}, {proto: 6, payload: 0},
	{v6: true, proto: 6, payload: 1400}, {v6: true, proto: 17, payload: 1}, {proto: 6, payload: 100, options: 2},
	{proto: 17, payload: 1472},
}

// TestTxChecksumInsertion: the stack leaves the checksums to the MAC
// (garbage in the fields, as a stack with offload leaves whatever it
// leaves); the frame on the wire carries right ones, on a MAC that inserts
// IPv6 checksums too (the real one) and on one that inserts IPv4 only
// (QEMU), where the driver sums IPv6 itself. The model counts what it
// inserted and would count a field the driver failed to clear.
func TestTxChecksumInsertion(t *testing.T) {
	for _, qemu := range []bool{false, true} {
		t.Run(fmt.Sprintf("qemu=%v", qemu), func(t *testing.T) {
			r := newRig(t, enettest.Options{TxChecksumIPv4: qemu}, enet.Config{TxChecksum6: !qemu})
			if o := r.drv.Offloads(); !o.TxChecksum || o.TxPartial || o.TSO4 || o.TSO6 || o.RxChecksum || o.MaxTxBuffers != 1 {
				t.Fatalf("Offloads %+v", o)
			}
			var out [][]byte
			r.dev.SetOutput(func(f []byte) { out = append(out, bytes.Clone(f)) })
			rng := rand.New(rand.NewPCG(1, 2))
			wantInserted := uint64(0)
			var sent [][]byte
			for _, s := range txSpecs {
				f := ipFrame(s, rng)
				sent = append(sent, bytes.Clone(f))
				// What a stack that leaves the checksums to the
				// device may leave in the fields.
				seg := f[14+s.ipHdr():]
				binary.BigEndian.PutUint16(seg[s.csumOff():], 0xbeef)
				if !s.v6 && s.options == 0 {
					// The MAC inserts the IPv4 header
					// checksum too (IINS); with options the
					// stack's stays.
					binary.BigEndian.PutUint16(f[24:], 0x1234)
				}
				if err := sendPacket(t, r, f, meta(s)); err != nil {
					t.Fatalf("%v: %v", s, err)
				}
				switch {
				case !s.v6 && s.options == 0:
					wantInserted += 2 // IINS and PINS
				case s.v6 && !qemu:
					wantInserted++ // PINS
				}
			}
			r.drv.TxKick()
			if len(out) != len(txSpecs) {
				t.Fatalf("%d frames on the wire, want %d", len(out), len(txSpecs))
			}
			for i, s := range txSpecs {
				if err := checksumsOK(s, out[i]); err != nil {
					t.Errorf("%v: %v", s, err)
				}
				if !bytes.Equal(out[i], sent[i]) {
					t.Errorf("%v: frame on the wire differs from the one built", s)
				}
			}
			if st := r.dev.Stats(); st.DeviceErrors != 0 || st.ChecksumsInserted != wantInserted {
				t.Errorf("model: %d device errors, %d checksums inserted, want 0 and %d", st.DeviceErrors, st.ChecksumsInserted, wantInserted)
			}
			if n := r.drv.Reclaim(); n != len(txSpecs) {
				t.Errorf("reclaimed %d", n)
			}
			nictest.CheckBaseline(t, r.pool, r.base, "after reclaim")
		})
	}
}

// TestTxChecksumModelRules: the model holds the driver to the manual: a
// PINS/IINS frame whose checksum fields are not cleared goes out with wrong
// checksums and is counted, and so is PINS or IINS without the TACC
// enable. The descriptors are written here by hand, as a careless driver
// would.
func TestTxChecksumModelRules(t *testing.T) {
	r := newRig(t, enettest.Options{}, enet.Config{})
	var out [][]byte
	r.dev.SetOutput(func(f []byte) { out = append(out, bytes.Clone(f)) })
	s := ipSpec{proto: 6, payload: 200}
	f := ipFrame(s, rand.New(rand.NewPCG(3, 3))) // right checksums, fields not cleared
	b := r.pool.Get()
	p, _ := b.Append(len(f))
	copy(p, f)
	ring := r.ring(enet.RegTDSR, enet.DefaultRing)
	post := func(i int, esc uint32) {
		o := i * bd.Size
		binary.LittleEndian.PutUint32(ring[o+bd.Addr:], uint32(b.BodyAddr()))
		binary.LittleEndian.PutUint32(ring[o+bd.ESC:], esc)
		bd.Store(ring, o, bd.Word(uint16(len(f)), bd.R|bd.L|bd.TC))
		r.dev.Write32(enet.RegTDAR, enet.DescriptorActive)
	}
	post(0, bd.PINS|bd.IINS)
	if st := r.dev.Stats(); st.DeviceErrors != 2 || len(out) != 1 || checksumsOK(s, out[0]) == nil {
		t.Errorf("fields not cleared: %d device errors (want 2), frame checksums right: %v", st.DeviceErrors, len(out) == 1 && checksumsOK(s, out[0]) == nil)
	}
	r.dev.Write32(enet.RegTACC, 0)
	post(1, bd.PINS|bd.IINS)
	if st := r.dev.Stats(); st.DeviceErrors != 4 || len(out) != 2 || !bytes.Equal(out[1], f) {
		t.Errorf("TACC off: %d device errors (want 4), frame unchanged: %v", st.DeviceErrors, len(out) == 2 && bytes.Equal(out[1], f))
	}
	r.pool.Put(b)
}

// TestTxChecksumRefusals: what the MAC cannot do is refused, uncounted,
// the buffer still the caller's, the frame untouched: segmentation, more
// than one buffer, offsets outside the frame or not a TCP/UDP checksum, a
// frame that is not IP, an IPv4 fragment; and any checksum request with
// NoOffloads.
func TestTxChecksumRefusals(t *testing.T) {
	r := newRig(t, enettest.Options{}, enet.Config{})
	rng := rand.New(rand.NewPCG(4, 4))
	v4 := ipSpec{proto: 6, payload: 100}
	frag := ipSpec{proto: 17, payload: 100, frag: true}
	raw := frame(200, 1, rng)
	cases := []struct {
		name string
		f    []byte
		m    *nic.TxMeta
	}{
		{"gso", ipFrame(v4, rng), &nic.TxMeta{GSO: nic.GSOTCPv4, GSOSize: 1000, HdrLen: 54}},
		{"offset beyond", ipFrame(v4, rng), &nic.TxMeta{NeedsCsum: true, CsumStart: 200, CsumOffset: 16}},
		{"not a transport checksum", ipFrame(v4, rng), &nic.TxMeta{NeedsCsum: true, CsumStart: 34, CsumOffset: 4}},
		{"start not after the IP header", ipFrame(v4, rng), &nic.TxMeta{NeedsCsum: true, CsumStart: 30, CsumOffset: 16}},
		{"protocol other than asked", ipFrame(v4, rng), &nic.TxMeta{NeedsCsum: true, CsumStart: 34, CsumOffset: 6}},
		{"not IP", raw, &nic.TxMeta{NeedsCsum: true, CsumStart: 34, CsumOffset: 16}},
		{"fragment", ipFrame(frag, rng), meta(frag)},
	}
	for _, c := range cases {
		before := bytes.Clone(c.f)
		b := r.pool.Get()
		p, _ := b.Append(len(c.f))
		copy(p, c.f)
		err := r.drv.TransmitPacket([]*alloc.Buffer{b}, c.m)
		if err == nil || nic.CauseOf(err) != nic.Malformed {
			t.Errorf("%s: %v, want a Malformed refusal", c.name, err)
		} else if !bytes.Equal(b.Bytes(), before) {
			t.Errorf("%s: refused frame changed", c.name)
		}
		if err == nil {
			continue
		}
		r.pool.Put(b)
	}
	b1, b2 := r.pool.Get(), r.pool.Get()
	b1.Append(60)
	b2.Append(60)
	if err := r.drv.TransmitPacket([]*alloc.Buffer{b1, b2}, nil); err == nil {
		t.Error("two buffers accepted")
	}
	r.pool.Put(b1)
	r.pool.Put(b2)
	if s := stats(r); s.Tx.Packets != 0 || s.Tx.Drops.Total() != 0 {
		t.Errorf("refusals counted: %+v", s.Tx)
	}
	nictest.CheckBaseline(t, r.pool, r.base, "after refusals")

	off := newRig(t, enettest.Options{}, enet.Config{NoOffloads: true, RxChecksum: true})
	if o := off.drv.Offloads(); o.TxChecksum || o.RxChecksum {
		t.Errorf("NoOffloads: %+v", o)
	}
	if racc, tacc := off.dev.Reg(enet.RegRACC), off.dev.Reg(enet.RegTACC); racc != enet.RACCShift16 || tacc != 0 {
		t.Errorf("NoOffloads: RACC %#x TACC %#x", racc, tacc)
	}
	if err := sendPacket(t, off, ipFrame(v4, rng), meta(v4)); nic.CauseOf(err) != nic.Malformed {
		t.Errorf("NoOffloads: checksum request %v", err)
	}
	if err := sendPacket(t, off, ipFrame(v4, rng), &nic.TxMeta{}); err != nil {
		t.Errorf("NoOffloads: plain frame %v", err)
	}
}

// TestRxShift16: with RACC.SHIFT16 the frame starts two bytes into the
// buffer, the descriptor's length counts those bytes and the FCS, and
// the driver hands up exactly the frame, its IP header 4-byte aligned.
func TestRxShift16(t *testing.T) {
	r := newRig(t, enettest.Options{}, enet.Config{})
	if r.dev.Reg(enet.RegRACC)&enet.RACCShift16 == 0 {
		t.Fatal("RACC.SHIFT16 not set")
	}
	rng := rand.New(rand.NewPCG(5, 5))
	for _, n := range []int{enet.MinFrame, 43, 60, 64, 65, 1000, 1513, 1514, 1517, enet.MaxFrame} {
		f := frame(n, uint32(n), rng)
		r.dev.Deliver(f)
		b := r.drv.Receive()
		if b == nil {
			t.Fatalf("%d bytes: nothing received (%+v)", n, stats(r).Rx)
		}
		if !bytes.Equal(b.Bytes(), f) {
			t.Errorf("%d bytes: received %d bytes, not the frame", n, b.Len())
		}
		if a := b.BodyAddr() + 14; a%4 != 0 {
			t.Errorf("%d bytes: IP header at %#x, not 4-byte aligned", n, a)
		}
		if b.Headroom() < r.pool.DefaultHeadroom() {
			t.Errorf("%d bytes: headroom %d", n, b.Headroom())
		}
		r.pool.Put(b)
		r.drv.Refill()
		r.drv.RxKick()
	}
	// One byte longer than MaxFrame: the driver drops it (MAX_FL leaves
	// room for the shift), counted once.
	r.dev.Deliver(frame(enet.MaxFrame+1, 0, rng))
	if b := r.drv.Receive(); b != nil {
		t.Fatalf("%d-byte frame delivered", b.Len())
	}
	if s := stats(r); s.Rx.Drops[nic.Oversize]+s.Rx.Drops[nic.LengthViolation] != 1 {
		t.Errorf("oversize frame: %+v", s.Rx)
	}
}

// rxCase is a received frame and what should become of it.
type rxCase struct {
	name    string
	s       ipSpec
	corrupt func(f []byte) // nil: a right frame
	notIP   bool
}

var rxCases = []rxCase{
	{name: "v4 tcp", s: ipSpec{proto: 6, payload: 500}},
	{name: "v4 udp", s: ipSpec{proto: 17, payload: 64}},
	{name: "v6 tcp", s: ipSpec{v6: true, proto: 6, payload: 1000}},
	{name: "v6 udp", s: ipSpec{v6: true, proto: 17, payload: 20}},
	{name: "v4 tcp payload corrupt", s: ipSpec{proto: 6, payload: 500}, corrupt: func(f []byte) { f[len(f)-1] ^= 0x40 }},
	{name: "v4 udp header corrupt", s: ipSpec{proto: 17, payload: 64}, corrupt: func(f []byte) { f[14+20] ^= 1 }},
	{name: "v4 ip header corrupt", s: ipSpec{proto: 6, payload: 100}, corrupt: func(f []byte) { f[14+8]-- }},
	{name: "v6 tcp corrupt", s: ipSpec{v6: true, proto: 6, payload: 300}, corrupt: func(f []byte) { f[100] ^= 0xff }},
	{name: "v4 udp fragment", s: ipSpec{proto: 17, payload: 64, frag: true}},
	{name: "v4 udp fragment corrupt", s: ipSpec{proto: 17, payload: 64, frag: true}, corrupt: func(f []byte) { f[60] ^= 2 }},
	{name: "not IP", notIP: true},
}

// TestRxChecksum: what reaches the driver and what it vouches for, on
// the real MAC (it checks, and with RACC.IPDIS/PRODIS discards a wrong
// frame) and under QEMU (it checks nothing), with Config.RxChecksum as the
// board sets it and against it. Vouched means: checked by the MAC and
// right. Never is a corrupted frame vouched for.
func TestRxChecksum(t *testing.T) {
	for _, c := range []struct {
		macChecks, cfg bool
	}{{true, true}, {true, false}, {false, false}} {
		t.Run(fmt.Sprintf("mac-checks=%v/config=%v", c.macChecks, c.cfg), func(t *testing.T) {
			r := newRig(t, enettest.Options{RxChecksum: c.macChecks}, enet.Config{RxChecksum: c.cfg})
			if o := r.drv.Offloads(); o.RxChecksum != c.cfg || o.MaxRxBuffers != 1 {
				t.Fatalf("Offloads %+v", o)
			}
			wantRACC := uint32(enet.RACCShift16)
			if c.cfg {
				wantRACC |= enet.RACCIPDis | enet.RACCProDis
			}
			if got := r.dev.Reg(enet.RegRACC); got != wantRACC {
				t.Fatalf("RACC %#x, want %#x", got, wantRACC)
			}
			rng := rand.New(rand.NewPCG(6, 6))
			bufs := make([]*alloc.Buffer, 1)
			for _, rc := range rxCases {
				f := frame(100, 1, rng)
				if !rc.notIP {
					f = ipFrame(rc.s, rng)
				}
				if rc.corrupt != nil {
					rc.corrupt(f)
				}
				discards := r.dev.Stats().ChecksumDiscards
				r.dev.Deliver(f)
				n, m := r.drv.ReceivePacket(bufs)
				// The real MAC with discard drops a frame it
				// found wrong: a corrupt non-fragment.
				wantDiscard := c.macChecks && c.cfg && rc.corrupt != nil && !rc.s.frag
				wantVouch := c.cfg && !rc.notIP && !rc.s.frag && rc.corrupt == nil
				if wantDiscard {
					if n != 0 || r.dev.Stats().ChecksumDiscards != discards+1 {
						t.Errorf("%s: delivered (%d), not discarded by the MAC", rc.name, n)
					}
					continue
				}
				if n != 1 {
					t.Fatalf("%s: nothing received", rc.name)
				}
				if !bytes.Equal(bufs[0].Bytes(), f) {
					t.Errorf("%s: received frame differs", rc.name)
				}
				if m.Verified != wantVouch {
					t.Errorf("%s: Verified %v, want %v", rc.name, m.Verified, wantVouch)
				}
				if m.GSO != nic.GSONone {
					t.Errorf("%s: GSO %d", rc.name, m.GSO)
				}
				r.pool.Put(bufs[0])
				r.drv.Refill()
				r.drv.RxKick()
			}
			if n, _ := r.drv.ReceivePacket(bufs); n != 0 {
				t.Error("a frame more than delivered")
			}
			nictest.CheckBaseline(t, r.pool, r.base, "after receive")
		})
	}
}

// TestRxChecksumFlagged: a frame whose descriptor carries ICE or PCR though
// the MAC was told to discard such frames is not vouched for: the stack
// checks it (here it is right, so it would pass).
func TestRxChecksumFlagged(t *testing.T) {
	r := newRig(t, enettest.Options{RxChecksum: true}, enet.Config{RxChecksum: true})
	r.dev.SetFaults(enettest.Faults{Seed: 1, ChecksumFlags: 1})
	rng := rand.New(rand.NewPCG(7, 7))
	bufs := make([]*alloc.Buffer, 1)
	for i := range 20 {
		r.dev.Deliver(ipFrame(ipSpec{proto: 6, payload: 100 + i}, rng))
		n, m := r.drv.ReceivePacket(bufs)
		if n != 1 || m.Verified {
			t.Fatalf("frame %d: n %d, Verified %v", i, n, m.Verified)
		}
		r.pool.Put(bufs[0])
		r.drv.Refill()
		r.drv.RxKick()
	}
	if st := r.dev.Stats(); st.ChecksumFlagged != 20 {
		t.Errorf("%d frames flagged", st.ChecksumFlagged)
	}
}

// TestRxCorruptedNotVouched: randomly corrupted frames (the model flips a
// byte anywhere, the FCS computed after, as from a bad sender) through a
// MAC that does not check (QEMU's) are never vouched for; through the real
// one with discard, every frame vouched for has right checksums, and the
// corrupted ones it caught were discarded.
func TestRxCorruptedNotVouched(t *testing.T) {
	for _, macChecks := range []bool{false, true} {
		t.Run(fmt.Sprintf("mac-checks=%v", macChecks), func(t *testing.T) {
			r := newRig(t, enettest.Options{RxChecksum: macChecks}, enet.Config{RxChecksum: macChecks})
			r.dev.SetFaults(enettest.Faults{Seed: 8, Corrupt: 0.5})
			rng := rand.New(rand.NewPCG(8, 8))
			bufs := make([]*alloc.Buffer, 1)
			vouched, bad := 0, 0
			for i := range 1000 {
				s := rxCases[i%4].s
				r.dev.Deliver(ipFrame(s, rng))
				n, m := r.drv.ReceivePacket(bufs)
				if n == 0 {
					continue
				}
				f := bufs[0].Bytes()
				err := checksumsOK(s, f)
				if err != nil {
					bad++
				}
				if m.Verified {
					vouched++
					if !macChecks {
						t.Fatalf("frame %d vouched for by a MAC that checks nothing", i)
					}
					if err != nil {
						t.Fatalf("frame %d vouched for with %v", i, err)
					}
				}
				r.pool.Put(bufs[0])
				r.drv.Refill()
				r.drv.RxKick()
			}
			st := r.dev.Stats()
			t.Logf("corrupted %d, discarded %d, delivered with bad checksums %d, vouched %d", st.Corrupted, st.ChecksumDiscards, bad, vouched)
			if st.Corrupted < 400 {
				t.Fatalf("only %d frames corrupted", st.Corrupted)
			}
			if macChecks && (st.ChecksumDiscards == 0 || vouched == 0) {
				t.Errorf("checking MAC: %d discarded, %d vouched", st.ChecksumDiscards, vouched)
			}
			if !macChecks && bad == 0 {
				t.Error("no corrupted frame reached the driver")
			}
		})
	}
}

// TestDoorbells: a poll step that posted nothing writes no register at
// all, and reads none; receiving a batch and refilling writes RDAR once;
// a transmit batch writes TDAR once, and its Reclaim reads EIR once and
// writes nothing.
func TestDoorbells(t *testing.T) {
	a, b := pipe(t, enet.Config{}, enet.Config{})
	step := func(r *rig) (rx int) {
		r.drv.Reclaim()
		for r.drv.Receive() != nil {
			rx++
		}
		r.drv.Refill()
		r.drv.RxKick()
		r.drv.TxKick()
		return rx
	}
	// Give every received buffer back first so Refill has buffers.
	regs := func(r *rig) (reads, writes uint64) {
		s := r.dev.Stats()
		return s.RegReads, s.RegWrites
	}
	for range 3 {
		r0, w0 := regs(b)
		if n := step(b); n != 0 {
			t.Fatalf("idle step received %d", n)
		}
		if r1, w1 := regs(b); r1 != r0 || w1 != w0 {
			t.Errorf("idle step: %d register reads, %d writes", r1-r0, w1-w0)
		}
	}
	rng := rand.New(rand.NewPCG(9, 9))
	const batch = 8
	r0, w0 := regs(a)
	for i := range batch {
		if err := send(t, a, frame(200, uint32(i), rng)); err != nil {
			t.Fatal(err)
		}
	}
	a.drv.TxKick()
	a.drv.TxKick() // nothing posted since: no write
	if r1, w1 := regs(a); w1-w0 != 1 || r1 != r0 || a.dev.Stats().TDARWrites != 1 {
		t.Errorf("transmit batch of %d: %d writes (TDAR %d), %d reads", batch, w1-w0, a.dev.Stats().TDARWrites, r1-r0)
	}
	r0, w0 = regs(a)
	if n := a.drv.Reclaim(); n != batch {
		t.Fatalf("reclaimed %d", n)
	}
	if r1, w1 := regs(a); w1 != w0 || r1-r0 != 1 {
		t.Errorf("reclaim: %d writes, %d reads", w1-w0, r1-r0)
	}
	// The peer: one step takes the batch and writes RDAR once.
	rdar := b.dev.Stats().RDARWrites
	r0, w0 = regs(b)
	got := 0
	for {
		buf := b.drv.Receive()
		if buf == nil {
			break
		}
		got++
		b.pool.Put(buf)
	}
	b.drv.Refill()
	b.drv.RxKick()
	b.drv.RxKick()
	if r1, w1 := regs(b); got != batch || w1-w0 != 1 || r1 != r0 || b.dev.Stats().RDARWrites != rdar+1 {
		t.Errorf("receive batch of %d: %d writes, %d reads, RDAR %d", got, w1-w0, r1-r0, b.dev.Stats().RDARWrites-rdar)
	}
}

// TestAllocsOffload: checksum insertion on transmit and vouched receive,
// end to end over two models (the receiver a checking MAC): no allocation
// over allocRuns packets, IPv4 by the MAC and IPv6 summed by the driver
// (QEMU's MAC).
func TestAllocsOffload(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		t.Run(fmt.Sprintf("v6=%v", v6), func(t *testing.T) {
			a := newRig(t, enettest.Options{MAC: [6]byte{2, 0, 0, 0, 0, 0xa}, TxChecksumIPv4: true}, enet.Config{})
			b := newRig(t, enettest.Options{MAC: [6]byte{2, 0, 0, 0, 0, 0xb}, RxChecksum: true}, enet.Config{RxChecksum: true})
			enettest.Pipe(a.dev, b.dev)
			s := ipSpec{v6: v6, proto: 6, payload: 1000}
			f := ipFrame(s, rand.New(rand.NewPCG(10, 10)))
			m := meta(s)
			bufs := make([]*alloc.Buffer, 1)
			txb := make([]*alloc.Buffer, 1)
			vouched := 0
			nictest.NoAllocs(t, allocRuns, "TransmitPacket with checksum -> kick -> reclaim, ReceivePacket", func() {
				buf := a.pool.Get()
				if buf == nil {
					return
				}
				p, _ := buf.Append(len(f))
				copy(p, f)
				txb[0] = buf
				if err := a.drv.TransmitPacket(txb, m); err != nil {
					a.pool.Put(buf)
					return
				}
				a.drv.TxKick()
				a.drv.Reclaim()
				if n, rm := b.drv.ReceivePacket(bufs); n == 1 {
					if rm.Verified {
						vouched++
					}
					b.pool.Put(bufs[0])
				}
				b.drv.Refill()
				b.drv.RxKick()
			})
			if vouched != allocRuns+1 {
				t.Fatalf("%d of %d packets vouched for", vouched, allocRuns+1)
			}
			if st := b.dev.Stats(); st.ChecksumErrors != 0 || a.dev.Stats().DeviceErrors != 0 {
				t.Fatalf("checksum errors %d, device errors %d", st.ChecksumErrors, a.dev.Stats().DeviceErrors)
			}
		})
	}
}
