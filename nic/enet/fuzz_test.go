package enet

import (
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/tamanet/tamanet/alloc"
	"github.com/tamanet/tamanet/nic"
	"github.com/tamanet/tamanet/nic/enet/internal/bd"
	"github.com/tamanet/tamanet/nic/nictest"
)

// FuzzRxDescriptors plays the MAC itself: it writes the descriptors' control
// words in the rings the driver laid out, raises events in EIR and answers
// the PHY, so every value a MAC or PHY could present reaches the driver.
// Its MAC completes only descriptors it owns, in ring order, but may lie
// about W or lose its place; forged writes (fzSlot.forge) play a stale,
// duplicate or rewritten descriptor. fzOracle checks every buffer the
// driver takes off a ring against what the MAC really completed, and
// Maintain runs between the operations.

// fzRegsSize is the ENET register window fzRegs decodes (RM 22.5 memory map).
const fzRegsSize = 0x400

// fzRegs is an ENET register window: ECR.RESET self-clears, EIR is write-1-
// to-clear with events the fuzzer raises, and a graceful stop completes at
// once (EIR.GRA) so the driver never waits.
type fzRegs struct {
	r          [fzRegsSize / 4]uint32
	eir        uint32
	rdar, tdar int
	stuckReset bool // ECR.RESET never self-clears
}

func (f *fzRegs) Read32(off uint32) uint32 {
	switch off {
	case RegEIR:
		if f.r[RegTCR/4]&TCRGTS != 0 {
			f.eir |= EventGRA
		}
		return f.eir
	}
	if off >= fzRegsSize {
		return 0
	}
	return f.r[off/4]
}

func (f *fzRegs) Write32(off, v uint32) {
	switch off {
	case RegEIR:
		f.eir &^= v
		return
	case RegECR:
		if !f.stuckReset {
			v &^= ECRReset
		}
	case RegRDAR:
		f.rdar++
	case RegTDAR:
		f.tdar++
	}
	if off < fzRegsSize {
		f.r[off/4] = v
	}
}

// fzPHY is a clause 22 PHY at MDIO address addr whose registers the
// fuzzer sets; a reset completes at once. Other addresses read all ones.
// With failAfter > 0 every transfer from the failAfter-th on fails.
type fzPHY struct {
	reg       [32]uint16
	addr      int
	fail      bool
	ops       int
	failAfter int
}

var errFzMDIO = errors.New("fuzz: MDIO error")

func (p *fzPHY) failing() bool {
	p.ops++
	return p.fail || p.failAfter > 0 && p.ops >= p.failAfter
}

func (p *fzPHY) ReadPHY(phy, reg int) (uint16, error) {
	if p.failing() {
		return 0, errFzMDIO
	}
	if phy != p.addr {
		return 0xffff, nil
	}
	return p.reg[reg&31], nil
}

func (p *fzPHY) WritePHY(phy, reg int, v uint16) error {
	if p.failing() {
		return errFzMDIO
	}
	if phy != p.addr {
		return nil
	}
	if reg == phyBMCR {
		v &^= bmcrReset
	}
	p.reg[reg&31] = v
	return nil
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

// rxDropCauses are the causes under which Receive drops a completed frame.
var rxDropCauses = []nic.Cause{nic.BadLength, nic.Runt, nic.Oversize, nic.CRC, nic.Overrun,
	nic.Truncated, nic.NonOctet, nic.LengthViolation, nic.BadIndex, nic.BadID}

// fzCheck verifies the bookkeeping: the shared ledger check (every buffer
// out of the pool is on exactly one ring or held by the test, no Put
// refused), and the transmit ring holds exactly txUsed buffers from txHead
// on.
func fzCheck(t *testing.T, d *Driver, l *nictest.Ledger) {
	t.Helper()
	l.Check(t, d.rx.buf, d.tx.buf)
	for i := 0; i < d.tx.n; i++ {
		inUse := (i-d.txHead+d.tx.n)%d.tx.n < d.txUsed
		if (d.tx.buf[i] != nil) != inUse {
			t.Fatalf("tx slot %d: buffer %v, head %d used %d", i, d.tx.buf[i] != nil, d.txHead, d.txUsed)
		}
	}
}

// fzSlot is the oracle's view of one descriptor: the posting the driver
// made and what the MAC did with it since. The fuzzer knows which writes
// are the MAC's own completions and which are forged (a zeroed entry, an
// earlier completion written again, a rewritten buffer pointer), so it can
// tell what the driver may release and hand out, whatever the driver sees.
type fzSlot struct {
	buf   *alloc.Buffer // posted buffer; nil when the driver has none there
	seq   int           // postings of this slot so far
	addr  uint32        // buffer pointer the driver posted
	word  uint32        // control word the driver posted
	done  bool          // the MAC completed this posting: it is finished with buf
	valid bool          // ... through the posted pointer: buf holds the MAC's frame
	last  uint32        // control word of the latest completion
	lastN int           // the posting it completed
	lastR uint64        // ring rebuilds (Extra.Restarts) when it was made
}

// fzOracle checks every buffer the driver takes off a ring against the
// postings and completions it saw: a buffer leaves a ring (handed out,
// dropped or freed) only after the MAC completed its posting, unless the
// MAC was stopped and the ring rebuilt; a received buffer is handed out only
// for a completion written through the pointer the driver posted, once.
type fzOracle struct {
	rx, tx []fzSlot
}

// observe compares the rings with the oracle's view after an operation:
// buffers gone from a slot must have been completed (or the rings were
// rebuilt: rebuilt), new buffers are new postings, and a slot whose
// ownership bit is set again belongs to the MAC.
func (o *fzOracle) observe(t *testing.T, d *Driver, rebuilt bool) {
	t.Helper()
	for k, r := range [2]*ring{&d.rx, &d.tx} {
		slots, own, name := o.rx, uint16(bd.E), "rx"
		if k == 1 {
			slots, own, name = o.tx, bd.R, "tx"
		}
		for i := range slots {
			s, cur := &slots[i], r.buf[i]
			if s.buf != nil && (cur != s.buf || rebuilt) {
				if !s.done && !rebuilt {
					t.Fatalf("%s slot %d: buffer %d taken back before the MAC completed it (posting %d)", name, i, s.buf.Index(), s.seq)
				}
				s.buf, s.done, s.valid = nil, false, false
			}
			_, status := bd.Split(bd.Load(r.desc, i*bd.Size))
			switch {
			case cur == nil:
			case s.buf == nil:
				s.buf, s.seq = cur, s.seq+1
				s.addr = binary.LittleEndian.Uint32(r.desc[i*bd.Size+bd.Addr:])
				s.word = bd.Load(r.desc, i*bd.Size)
				s.done, s.valid = false, false
			case status&own != 0:
				s.done, s.valid = false, false // (re)armed: the MAC's
			}
		}
	}
}

// handOut checks a received buffer against its slot's completion.
func (o *fzOracle) handOut(t *testing.T, b *alloc.Buffer) {
	t.Helper()
	for i := range o.rx {
		if s := &o.rx[i]; s.buf == b {
			if !s.done || !s.valid {
				t.Fatalf("rx slot %d: buffer %d handed out without a completion through its pointer (done %v, posting %d)", i, b.Index(), s.done, s.seq)
			}
			s.valid = false
			return
		}
	}
	t.Fatalf("buffer %d handed out, not posted on any rx slot", b.Index())
}

// complete is the MAC completing the slot at i (its ownership bit set)
// with control word w. A completion of the word the driver posted is
// remembered for forge to write again; one of a forged word is not (what
// it carries is the forger's, not an earlier posting's).
func (s *fzSlot) complete(desc []byte, i int, w uint32, rebuilds uint64) {
	s.done = true
	s.valid = s.buf != nil && binary.LittleEndian.Uint32(desc[i*bd.Size+bd.Addr:]) == s.addr
	if s.buf != nil && bd.Load(desc, i*bd.Size) == s.word {
		s.last, s.lastN, s.lastR = w, s.seq, rebuilds
	}
	bd.Store(desc, i*bd.Size, w)
}

// forge writes a descriptor behind the MAC's and the driver's back: kind 0
// zeroes it (a stale entry), 1 writes the completion of the slot's previous
// posting again (a duplicate), 2 rewrites the buffer pointer, 3 writes any
// word with the ownership bit own set (hands the slot to the MAC).
//
// The oracle sees the rings between operations only, and a rebuild posts
// every slot again unseen: a duplicate is forged only across at most one
// rebuild (rebuilds now), so it is at most two postings old. Older ones
// are out of reach of any two-bit mark the MAC would keep.
func (s *fzSlot) forge(desc []byte, i int, kind byte, own uint16, in *fzReader, rebuilds uint64) {
	o := i * bd.Size
	switch kind % 4 {
	case 0:
		bd.Store(desc, o, 0)
	case 1:
		if s.buf != nil && s.lastN == s.seq-1 && s.lastN > 0 && rebuilds-s.lastR <= 1 {
			bd.Store(desc, o, s.last)
		}
	case 2:
		a := binary.LittleEndian.Uint32(desc[o+bd.Addr:])
		binary.LittleEndian.PutUint32(desc[o+bd.Addr:], a+16*uint32(1+in.u8()))
	case 3:
		bd.Store(desc, o, bd.Word(in.u16(), in.u16()|own))
	}
}

// fzFrames are frame beginnings the fuzzer's MAC writes into a receive
// buffer: IPv4 TCP, an IPv4 UDP fragment, IPv6 UDP, ARP.
var fzFrames = [][]byte{
	{12: 0x08, 0, 0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 53: 0},
	{12: 0x08, 0, 0x45, 0, 0, 40, 0, 0, 0x20, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 53: 0},
	{12: 0x86, 0xdd, 0x60, 0, 0, 0, 0, 8, 17, 64, 61: 0},
	{12: 0x08, 0x06, 41: 0},
}

// fzVouched checks a frame ReceivePacket vouched for: the board said the
// MAC checks, its descriptor (still in the ring, not yet refilled) carries
// no checksum error or fragment mark, and the frame is IPv4 or IPv6 TCP or
// UDP that fits the frame.
func fzVouched(t *testing.T, d *Driver, cfg Config, before []*alloc.Buffer, b *alloc.Buffer) {
	t.Helper()
	i := 0
	for i < len(before) && before[i] != b {
		i++
	}
	if i == len(before) {
		t.Fatal("vouched-for buffer not from the ring")
	}
	esc := binary.LittleEndian.Uint32(d.rx.desc[i*bd.Size+bd.ESC:])
	f := b.Bytes()
	ok := cfg.RxChecksum && !cfg.NoOffloads && esc&(bd.ICE|bd.PCR|bd.Frag) == 0 && len(f) >= 54
	if ok {
		switch binary.BigEndian.Uint16(f[12:]) {
		case 0x0800:
			ok = (f[23] == 6 || f[23] == 17) && f[20]&0x3f|f[21] == 0 &&
				14+int(binary.BigEndian.Uint16(f[16:])) <= len(f)
		case 0x86dd:
			ok = (f[20] == 6 || f[20] == 17) && 54+int(binary.BigEndian.Uint16(f[18:])) <= len(f)
		default:
			ok = false
		}
	}
	if !ok {
		t.Fatalf("vouched for a frame (ESC %#x, config %v): % x", esc, cfg.RxChecksum, f[:min(len(f), 60)])
	}
}

// macRxBits are the status bits a MAC writes in a receive descriptor it
// completes (RM Table 22-35); it keeps the others as the driver wrote them.
const macRxBits = bd.L | bd.M | bd.BC | bd.MC | bd.RxErrors

func FuzzRxDescriptors(f *testing.F) {
	le := func(v uint16) []byte { return []byte{byte(v), byte(v >> 8)} }
	seed := func(head []byte, ops ...[]byte) []byte {
		for _, o := range ops {
			head = append(head, o...)
		}
		return head
	}
	rx := func(length, status uint16) []byte {
		return append(append([]byte{0}, le(length)...), le(status)...)
	}
	recv := []byte{2}
	// Header: pool size, rx ring, tx ring, flags.
	h := []byte{30, 4, 4, 0}
	f.Add(seed(h, rx(64, bd.L), recv, []byte{3, 4}))                                                                        // one good frame
	f.Add(seed(h, rx(64, bd.L|bd.CR), rx(64, bd.L|bd.OV|bd.LG), rx(64, bd.L|bd.TR), recv))                                  // errors
	f.Add(seed(h, rx(0, bd.L), rx(45, bd.L), rx(1523, bd.L), rx(3000, bd.L), recv))                                         // lengths
	f.Add(seed(h, rx(1000, 0), rx(1000, 0), rx(100, bd.L), rx(64, bd.L), recv, []byte{4}))                                  // spanned frame
	f.Add(seed(h, []byte{5, 60, 0, 0, 5, 10, 0, 3, 5, 0xff, 0x0f, 1, 6, 0, 8}))                                             // tx, short, long, completion
	f.Add(seed(h, []byte{5, 60, 0, 0, 9, 0x40, 0, 10, 5, 60, 0, 0, 6, 0, 8}))                                               // bus error restarts the MAC
	f.Add(seed([]byte{30, 4, 4, 1}, []byte{11, 0, 0, 10, 5, 60, 0, 0, 43, 0x40, 0, 11, 0x24, 0, 10, 5, 60, 0, 0, 6, 0, 8})) // PHY link down
	f.Add(seed([]byte{6, 4, 4, 0}, rx(64, bd.L), recv, rx(64, bd.L), recv, []byte{4, 3, 4}))
	f.Add(seed(h, []byte{5, 60, 0, 0, 6, 0, 129, 0x08, 0x08, 8}))   // underrun and TXF in EIR, acknowledged, counted
	f.Add(seed([]byte{30, 4, 4, 8}, []byte{5, 100, 0, 3, 6, 0, 8})) // 16-byte TxAlign: frame moved down
	// Forged completions the driver must not trust (each failed before
	// the driver checked the software bits, W and the pointer).
	f.Add(seed(h, []byte{1, 0, 0}, recv))                                                                            // rx: zeroed entry at the head (Stale)
	f.Add(seed([]byte{30, 0, 4, 0}, rx(64, bd.L), rx(64, bd.L), recv, []byte{3, 4, 1, 0, 1}, recv))                  // rx: previous completion again (Duplicate)
	f.Add(seed(h, []byte{1, 0, 2, 0}, rx(64, bd.L), recv))                                                           // rx: pointer rewritten (BadID)
	f.Add(seed(h, []byte{0x84, 64, 0, 0, 8}, recv, []byte{3, 4}))                                                    // rx: wrap bit lied about (BadIndex)
	f.Add(seed(h, []byte{5, 60, 0, 0, 7, 0, 0, 8, 0x82, 0x82, 8}))                                                   // tx: zeroed entry at the head; Maintain resets
	f.Add(seed([]byte{30, 4, 0, 0}, []byte{5, 60, 0, 0, 6, 0, 8, 5, 60, 0, 0, 5, 60, 0, 0, 7, 0, 1, 6, 0, 8, 0x82})) // tx: duplicate completion
	f.Add(seed(h, []byte{5, 60, 0, 0, 0x82, 0x82, 0x82}))                                                            // tx never completes: TDAR again, then reset
	f.Add(seed(h, []byte{0x48}, rx(64, bd.L), recv, []byte{0x82, 0x82}, recv))                                       // rx: completion past an empty head: reset
	// The accelerator: a checked IPv4 TCP frame (vouched for with
	// RxChecksum), one flagged ICE, an ARP frame, each taken by
	// ReceivePacket.
	acc := func(esc, kind byte) []byte {
		return append(append(append([]byte{36}, le(70)...), le(bd.L)...), esc, kind, 0, 0)
	}
	f.Add(seed([]byte{30, 4, 4, 0x80}, acc(0, 0), []byte{26}, acc(0x20, 0), []byte{26}, acc(0, 3), []byte{26, 3, 4}))
	f.Add(seed([]byte{30, 4, 4, 0}, acc(0, 0), []byte{26}, acc(0, 2), []byte{26, 3, 4}))
	// A bus error and a speed change in one link poll: two rebuilds the
	// oracle does not see one by one (see fzSlot.forge).
	f.Add([]byte("0001000001002900#009A0\"12120"))
	f.Fuzz(func(t *testing.T, data []byte) {
		in := &fzReader{b: data}
		count := 4 + int(in.u8()%40)
		rxN := 2 + int(in.u8()%15)
		txN := 2 + int(in.u8()%15)
		flags := in.u8()

		arena := alloc.NewArena(make([]byte, (count+2)*2048+4096))
		pool, err := arena.Pool(alloc.Config{Count: count})
		if err != nil {
			t.Fatal(err)
		}
		regs := &fzRegs{}
		phy := &fzPHY{}
		phy.reg[phyID1] = 0x0022
		phy.reg[phyBMSR] = bmsrLink | bmsrANComplete
		phy.reg[phyANLPAR] = an100FD
		cfg := Config{
			MAC:     [6]byte{2, 0, 0, 0, 0, 1},
			RxRing:  rxN,
			TxRing:  txN,
			NoPHY:   flags&1 == 0,
			MDIO:    phy,
			TxAlign: 1 << ((flags >> 1) % 7), // 1..64
			// The second Maintain that sees no transmit progress
			// resets.
			TxTimeout: time.Nanosecond,
			// The accelerator: whether the driver trusts the
			// MAC's receive checks.
			RxChecksum:  flags&0x80 != 0,
			TxChecksum6: flags&0x40 != 0,
		}
		d, err := New(regs, arena, pool, cfg)
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		held := nictest.NewLedger(pool)
		fzCheck(t, d, held)

		macRx, macTx := 0, 0 // where the MAC's DMA pointers are
		var lastConsumed, received, accepted, freed, refusedDown, refusedShort, refusedLong uint64
		rxDrops := func() (n uint64) {
			for _, c := range rxDropCauses {
				n += d.rxc.Dropped(c)
			}
			return n
		}
		before := make([]*alloc.Buffer, rxN)

		o := &fzOracle{rx: make([]fzSlot, rxN), tx: make([]fzSlot, txN)}
		o.observe(t, d, false)
		for steps := 0; len(in.b) > 0 && steps < 256; steps++ {
			r0 := d.restarts.Load()
			switch op := in.u8(); op % 12 {
			case 0: // the MAC completes its current rx descriptor
				if op&0x40 != 0 {
					// A MAC that loses its place: it moves on
					// without completing this one.
					if macRx++; macRx == rxN {
						macRx = 0
					}
					break
				}
				length, bits := in.u16(), in.u16()
				_, status := bd.Split(bd.Load(d.rx.desc, macRx*bd.Size))
				if status&bd.E == 0 {
					break // not the MAC's: it stops here
				}
				w := status&^(bd.E|macRxBits) | bits&macRxBits
				if op&0x80 != 0 {
					w ^= bd.W // a MAC that lies about the wrap bit
				}
				if op&0x20 != 0 {
					// What the accelerator says (ICE, PCR,
					// IPv6, FRAG, any) and a frame for it to
					// say it of, one byte changed.
					o := macRx*bd.Size + bd.ESC
					binary.LittleEndian.PutUint32(d.rx.desc[o:], bd.RxInt|uint32(in.u8())&0x3f)
					if b := d.rx.buf[macRx]; b != nil {
						body := b.Raw()[d.rxOff+rxShift:]
						n := copy(body, fzFrames[in.u8()%byte(len(fzFrames))])
						body[int(in.u8())%n] ^= in.u8()
					}
				}
				o.rx[macRx].complete(d.rx.desc, macRx, bd.Word(length, w), d.restarts.Load())
				if macRx++; macRx == rxN || status&bd.W != 0 {
					macRx = 0
				}
			case 1: // a forged rx descriptor
				i := int(in.u8()) % rxN
				o.rx[i].forge(d.rx.desc, i, in.u8(), bd.E, in, d.restarts.Load())
			case 2: // receive everything
				copy(before, d.rx.buf)
				for {
					var b *alloc.Buffer
					var m nic.RxMeta
					if op&0x10 != 0 {
						var bufs [1]*alloc.Buffer
						n, mm := d.ReceivePacket(bufs[:])
						if n == 0 {
							break
						}
						b, m = bufs[0], mm
					} else if b = d.Receive(); b == nil {
						break
					}
					if m.Verified {
						fzVouched(t, d, cfg, before, b)
					}
					held.HandOut(t, b)
					if b.Len() < MinFrame || b.Len() > MaxFrame || b.Offset() != d.rxOff+rxShift || b.Offset()+b.Len() > b.Cap() {
						t.Fatalf("frame at %d+%d in a buffer of %d", b.Offset(), b.Len(), b.Cap())
					}
					o.handOut(t, b)
					received++
				}
				for i, b := range before {
					if b == nil || d.rx.buf[i] != nil {
						continue
					}
					length, status := bd.Split(bd.Load(d.rx.desc, i*bd.Size))
					if status&bd.E != 0 {
						t.Fatalf("rx slot %d consumed while the MAC owns it", i)
					}
					if status&bd.L != 0 {
						lastConsumed++
					}
					if held.Holds(b) && (status&(bd.L|bd.RxErrors) != bd.L || int(length)-rxShift-4 != b.Len()) {
						t.Fatalf("delivered %d bytes from a descriptor with length %d status %#x", b.Len(), length, status)
					}
				}
			case 3: // the stack returns what it holds
				held.PutAll(t)
			case 4:
				d.Refill()
				d.RxKick()
			case 5: // transmit a frame of the given length at the given offset
				n := int(in.u16() % 2100)
				off := int(in.u8() % 80)
				b := pool.Get()
				if b == nil {
					break
				}
				if err := b.SetBody(off, min(n, b.Cap()-off)); err != nil {
					t.Fatal(err)
				}
				body := b.Bytes()
				for i := range body {
					body[i] = byte(i*7 + 1)
				}
				l := b.Len()
				err := d.Transmit(b)
				switch {
				case err == nil:
					if l < 14 || l > MaxFrame || !d.linkUp.Load() {
						t.Fatalf("Transmit accepted %d bytes, link %v", l, d.linkUp.Load())
					}
					if b.Len() != l || b.BodyAddr()%uintptr(d.txAlign) != 0 {
						t.Fatalf("posted %d of %d bytes at %#x, alignment %d", b.Len(), l, b.BodyAddr(), d.txAlign)
					}
					for i, v := range b.Bytes() {
						if v != byte(i*7+1) {
							t.Fatalf("frame byte %d changed while aligning", i)
						}
					}
					i := (d.txTail - 1 + txN) % txN
					o := i * bd.Size
					length, status := bd.Split(bd.Load(d.tx.desc, o))
					if d.tx.buf[i] != b || int(length) != l || status&(bd.R|bd.L) != bd.R|bd.L ||
						binary.LittleEndian.Uint32(d.tx.desc[o+bd.Addr:]) != uint32(b.BodyAddr()) {
						t.Fatalf("tx descriptor %d: length %d status %#x for %d bytes", i, length, status, l)
					}
					accepted++
				case errors.Is(err, nic.ErrLinkDown):
					refusedDown++
				case errors.Is(err, nic.ErrRunt):
					refusedShort++
				case errors.Is(err, nic.ErrOversize):
					refusedLong++
				}
				if err != nil {
					if err := pool.Put(b); err != nil {
						t.Fatal(err)
					}
				}
			case 6: // the MAC completes its current tx descriptor
				length, status := bd.Split(bd.Load(d.tx.desc, macTx*bd.Size))
				if status&bd.R != 0 {
					if in.u8()&1 != 0 {
						length = in.u16()
					}
					o.tx[macTx].complete(d.tx.desc, macTx, bd.Word(length, status&^bd.R), d.restarts.Load())
					if macTx++; macTx == txN || status&bd.W != 0 {
						macTx = 0
					}
				}
			case 7: // a forged tx descriptor
				i := int(in.u8()) % txN
				o.tx[i].forge(d.tx.desc, i, in.u8(), bd.R, in, d.restarts.Load())
			case 8:
				freed += uint64(d.Reclaim())
				d.TxKick()
			case 9: // events: transmit errors, bus error, anything
				regs.eir |= uint32(in.u16()) << 16
				if op&0x80 != 0 {
					e := regs.eir
					if got := d.AckInterrupt(); got != e&(EventRXF|EventRXB|EventTXF|EventTXB) || regs.eir != e&^got {
						t.Fatalf("AckInterrupt with EIR %#x returned %#x, left %#x", e, got, regs.eir)
					}
				}
				var s nic.Stats
				d.Stats(&s)
				if s.Link != d.LinkUp() || s.Tx.Packets != accepted {
					t.Fatalf("stats %+v", s)
				}
			case 10: // link poll (restarts on bus error or speed change), or Maintain
				if op&0x80 == 0 {
					d.PollLink()
					break
				}
				rs := d.resets.Load()
				if reset := d.Maintain(); reset != (d.resets.Load() == rs+1) {
					t.Fatalf("Maintain returned %v, resets %d -> %d", reset, rs, d.resets.Load())
				}
			case 11: // the PHY changes its mind
				reg := []int{phyBMSR, phyBMCR, phyANLPAR, phyANAR}[op>>4&3]
				phy.reg[reg] = in.u16()
				phy.fail = op&0x80 != 0
			}
			rebuilt := d.restarts.Load() != r0
			if rebuilt {
				macRx, macTx = 0, 0 // ETHEREN cleared: pointers back to RDSR/TDSR
			}
			o.observe(t, d, rebuilt)
			fzCheck(t, d, held)
			if lastConsumed != received+rxDrops() {
				t.Fatalf("rx: %d frames ended, %d delivered + %d dropped", lastConsumed, received, rxDrops())
			}
			// Transmit: every accepted frame is still posted, freed at
			// Reclaim, or dropped (link down) by a MAC restart. A
			// refusal is the caller's to count, never the driver's.
			restartDrops := d.txc.Dropped(nic.LinkDown)
			if accepted != freed+uint64(d.txUsed)+restartDrops {
				t.Fatalf("tx: %d accepted, %d freed, %d posted, %d dropped at restart", accepted, freed, d.txUsed, restartDrops)
			}
			if d.txc.Dropped(nic.Runt) != 0 || d.txc.Dropped(nic.Oversize) != 0 {
				t.Fatalf("tx: %d short, %d long and %d link-down frames refused, counted runt %d oversize %d",
					refusedShort, refusedLong, refusedDown, d.txc.Dropped(nic.Runt), d.txc.Dropped(nic.Oversize))
			}
			if d.txc.Packets.Load() != accepted {
				t.Fatalf("tx: %d accepted, %d counted", accepted, d.txc.Packets.Load())
			}
		}
		d.Close()
		held.CheckClosed(t)
	})
}

// FuzzInit lets the fuzzer choose the configuration and what the MAC and
// PHY answer at initialisation: a reset that never completes, the address
// in PALR/PAUR, where the PHY sits, its registers, MDIO failures. New must
// fail with no buffer out of the pool, or return a driver with a unicast
// address, a sane register setup and a full receive ring, which closes
// cleanly.
func FuzzInit(f *testing.F) {
	f.Add(uint32(0), uint32(0), uint8(0), uint8(0), uint8(4), uint8(4), uint16(0), uint16(0x022), uint8(0))
	f.Add(uint32(0x02000000), uint32(0x00010000), uint8(1), uint8(0), uint8(4), uint8(4), uint16(0), uint16(0x022), uint8(0)) // MAC from PALR/PAUR
	f.Add(uint32(0x01000000), uint32(0x00010000), uint8(1), uint8(0), uint8(4), uint8(4), uint16(0), uint16(0x022), uint8(0)) // multicast there
	f.Add(uint32(0), uint32(0), uint8(1), uint8(0), uint8(4), uint8(4), uint16(0), uint16(0x022), uint8(0))                   // none there
	f.Add(uint32(0), uint32(0), uint8(2), uint8(0), uint8(4), uint8(4), uint16(0), uint16(0x022), uint8(0))                   // reset never completes
	f.Add(uint32(0), uint32(0), uint8(0), uint8(7), uint8(4), uint8(4), uint16(0), uint16(0x022), uint8(0))                   // PHY elsewhere: scan
	f.Add(uint32(0), uint32(0), uint8(0), uint8(0), uint8(4), uint8(4), uint16(0), uint16(0xffff), uint8(0))                  // no PHY answers
	f.Add(uint32(0), uint32(0), uint8(0), uint8(0), uint8(4), uint8(4), uint16(3), uint16(0x022), uint8(0))                   // MDIO fails mid-reset
	f.Add(uint32(0), uint32(0), uint8(0), uint8(0), uint8(0), uint8(255), uint16(0), uint16(0x022), uint8(0))                 // bad ring sizes
	f.Add(uint32(0), uint32(0), uint8(4), uint8(0), uint8(40), uint8(4), uint16(0), uint16(0x022), uint8(4))                  // RMII, pool smaller than the ring
	f.Fuzz(func(t *testing.T, palr, paur uint32, flags, phyAddr, rxN, txN uint8, failAfter, id1 uint16, align uint8) {
		regs := &fzRegs{}
		regs.r[RegPALR/4], regs.r[RegPAUR/4] = palr, paur
		stuck := flags&2 != 0
		regs.stuckReset = stuck
		phy := &fzPHY{addr: int(phyAddr % 40), failAfter: int(failAfter % 64)}
		phy.reg[phyID1] = id1
		phy.reg[phyBMSR] = bmsrLink | bmsrANComplete
		phy.reg[phyANLPAR] = an100FD | an10HD
		cfg := Config{
			RxRing:  int(rxN) - 1,
			TxRing:  int(txN) - 1,
			RMII:    flags&4 != 0,
			PHYAddr: int(phyAddr%34) - 1,
			MDIO:    phy,
			TxAlign: int(align % 70),
			NoPHY:   flags&8 != 0,
		}
		if flags&1 == 0 {
			cfg.MAC = [6]byte{2, 0, 0, 0, 0, 1}
		}
		arena := alloc.NewArena(make([]byte, 34*2048+32*1024))
		pool, err := arena.Pool(alloc.Config{Count: 32})
		if err != nil {
			t.Fatal(err)
		}
		d, err := New(regs, arena, pool, cfg)
		if err != nil {
			nictest.CheckEmpty(t, pool, "New failed ("+err.Error()+")")
			if regs.r[RegECR/4]&ECREtherEn != 0 {
				t.Fatalf("New failed (%v) and left the MAC enabled", err)
			}
			return
		}
		ringOK := func(asked, got int) bool {
			if asked == 0 {
				return got == DefaultRing
			}
			return asked >= 2 && asked <= MaxRing && got == asked
		}
		if stuck || !ringOK(cfg.RxRing, d.rx.n) || !ringOK(cfg.TxRing, d.tx.n) {
			t.Fatalf("New accepted reset stuck %v, rings %d/%d, made %d/%d", stuck, cfg.RxRing, cfg.TxRing, d.rx.n, d.tx.n)
		}
		mac := d.Info().MAC
		if mac[0]&1 != 0 || mac == ([6]byte{}) {
			t.Fatalf("station address %x", mac)
		}
		if w := uint32(mac[0])<<24 | uint32(mac[1])<<16 | uint32(mac[2])<<8 | uint32(mac[3]); regs.r[RegPALR/4] != w ||
			regs.r[RegPAUR/4]>>16 != uint32(mac[4])<<8|uint32(mac[5]) {
			t.Fatalf("PALR/PAUR %#x/%#x for %x", regs.r[RegPALR/4], regs.r[RegPAUR/4], mac)
		}
		if m := int(regs.r[RegMRBR/4]); m%16 != 0 || m < rxShift+MaxFL || m > pool.BufferSize()-d.rxOff || m != d.mrbr {
			t.Fatalf("MRBR %d, driver %d, buffer %d - %d", m, d.mrbr, pool.BufferSize(), d.rxOff)
		}
		if regs.r[RegRDSR/4]%8 != 0 || regs.r[RegTDSR/4]%8 != 0 || regs.r[RegECR/4]&(ECREtherEn|ECREN1588) != ECREtherEn|ECREN1588 ||
			regs.r[RegRACC/4]&RACCShift16 == 0 {
			t.Fatalf("RDSR %#x TDSR %#x ECR %#x", regs.r[RegRDSR/4], regs.r[RegTDSR/4], regs.r[RegECR/4])
		}
		posted := 0
		for i, b := range d.rx.buf {
			if b == nil {
				continue
			}
			posted++
			_, status := bd.Split(bd.Load(d.rx.desc, i*bd.Size))
			esc := binary.LittleEndian.Uint32(d.rx.desc[i*bd.Size+bd.ESC:])
			if status&bd.E == 0 || (status&bd.W != 0) != (i == d.rx.n-1) || esc != bd.RxInt {
				t.Fatalf("rx descriptor %d status %#x ESC %#x", i, status, esc)
			}
		}
		if want := min(d.rx.n, pool.Capacity()); posted != want || pool.InUse() != posted {
			t.Fatalf("%d rx buffers posted, %d in use, want %d", posted, pool.InUse(), want)
		}
		var s nic.Stats
		d.Stats(&s)
		if s.Link != d.LinkUp() || (d.noPHY && !s.Link) {
			t.Fatalf("link %v, no PHY %v", s.Link, d.noPHY)
		}
		d.Close()
		nictest.CheckEmpty(t, pool, "after Close")
	})
}

// FuzzChecksum feeds txChecksum any frame and checksum request, and
// rxVouched any frame and descriptor ESC: neither panics, txChecksum
// either refuses with the frame untouched or accepts a request whose
// field lies inside the frame's IP packet (PINS set, or computed here),
// and rxVouched vouches only for IPv4/IPv6 TCP/UDP without ICE/PCR/FRAG.
func FuzzChecksum(f *testing.F) {
	v4 := append([]byte{12: 0x08, 0, 0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2}, make([]byte, 20)...)
	v6 := append([]byte{12: 0x86, 0xdd, 0x60, 0, 0, 0, 0, 8, 17, 64}, make([]byte, 40)...)
	f.Add(v4, uint16(34), uint16(16), uint32(0), true)
	f.Add(v6, uint16(54), uint16(6), uint32(0), false)
	f.Add(v6, uint16(54), uint16(6), uint32(bd.PCR), true)
	f.Fuzz(func(t *testing.T, frame []byte, start, off uint16, esc uint32, v6hw bool) {
		d := &Driver{offloads: nic.Offloads{TxChecksum: true}, txCsum6: v6hw}
		before := append([]byte(nil), frame...)
		x, err := d.txChecksum(frame, &nic.TxMeta{NeedsCsum: true, CsumStart: start, CsumOffset: off})
		if err != nil {
			if string(before) != string(frame) {
				t.Fatal("refused frame changed")
			}
		} else if int(start)+int(off)+2 > len(frame) || (off != 6 && off != 16) || x&^(bd.PINS|bd.IINS) != 0 {
			t.Fatalf("accepted start %d offset %d in %d bytes, ESC %#x", start, off, len(frame), x)
		}
		if rxVouched(frame, esc) {
			ok := esc&(bd.ICE|bd.PCR|bd.Frag) == 0 && len(frame) >= 42
			if ok && frame[12] == 0x08 && frame[13] == 0 {
				ok = frame[23] == 6 || frame[23] == 17
			} else if ok && frame[12] == 0x86 && frame[13] == 0xdd {
				ok = frame[20] == 6 || frame[20] == 17
			} else {
				ok = false
			}
			if !ok {
				t.Fatalf("vouched for ESC %#x, % x", esc, frame)
			}
		}
	})
}
