package virtio

import (
	"encoding/binary"
	"testing"

	"github.com/tamanet/tamanet/alloc"
	"github.com/tamanet/tamanet/nic"
	"github.com/tamanet/tamanet/nic/nictest"
	"github.com/tamanet/tamanet/nic/virtio/internal/vring"
)

// The fuzz targets play the device themselves: fzRegs is a register window
// whose every value the fuzzer may choose, and the ring memory the driver
// lays out is written directly, so anything a device could put in the used
// rings or config space reaches the driver.

// fzRegs is a virtio-mmio register window backed by plain fields.
type fzRegs struct {
	magic, version, devID uint32
	features              [2]uint32 // offered, by DeviceFeaturesSel
	featSel               uint32
	drvFeatures           [2]uint32
	drvFeatSel            uint32
	refuseFeatures        bool // FEATURES_OK does not stick
	stuckReset            bool // status never reads back 0
	needsResetAt          uint32
	refuseQueue           [2]bool
	numMax                [2]uint32
	genStep               uint32 // added to ConfigGeneration on every read
	gen                   uint32
	config                [64]byte

	status uint32
	qsel   uint32
	q      [2]fzQueue
	notify [2]int
	badSel int // accesses to a queue register with QueueSel out of range
	// config reads not at the field's natural width (§4.2.2.2)
	badWidth int
	written  []uint32
	resets   int // resets that completed (status 0 written, not stuckReset)
}

type fzQueue struct {
	num                uint32
	desc, avail, used  uint64
	ready              uint32
	numAtReady         uint32
	readyWithoutFeatOK bool
	readyAfterDriverOK bool
}

func (r *fzRegs) cur() *fzQueue {
	if r.qsel < 2 {
		return &r.q[r.qsel]
	}
	r.badSel++
	return nil
}

func (r *fzRegs) Read32(off uint32) uint32 {
	switch off {
	case regMagic:
		return r.magic
	case regVersion:
		return r.version
	case regDeviceID:
		return r.devID
	case regDeviceFeatures:
		if r.featSel < 2 {
			return r.features[r.featSel]
		}
		return 0
	case regQueueNumMax:
		if r.qsel < 2 {
			return r.numMax[r.qsel]
		}
		return 0
	case regQueueReady:
		if q := r.cur(); q != nil {
			return q.ready
		}
		return 0
	case regStatus:
		if r.stuckReset {
			return r.status | StatusAcknowledge
		}
		return r.status
	case regConfigGen:
		r.gen += r.genStep
		return r.gen
	case regInterruptStat:
		return 1
	}
	if off >= regConfig && off < regConfig+uint32(len(r.config))-3 {
		return binary.LittleEndian.Uint32(r.config[off-regConfig:])
	}
	return 0
}

func (r *fzRegs) Write32(off, v uint32) {
	switch off {
	case regDeviceFeatSel:
		r.featSel = v
	case regDriverFeatSel:
		r.drvFeatSel = v
	case regDriverFeatures:
		if r.drvFeatSel < 2 {
			r.drvFeatures[r.drvFeatSel] = v
		}
	case regQueueSel:
		r.qsel = v
	case regQueueNum:
		if q := r.cur(); q != nil {
			q.num = v
		}
	case regQueueDescLow, regQueueDescHigh, regQueueDrvLow, regQueueDrvHigh, regQueueDevLow, regQueueDevHigh:
		q := r.cur()
		if q == nil {
			return
		}
		p := &q.desc
		switch off &^ 4 {
		case regQueueDrvLow:
			p = &q.avail
		case regQueueDevLow:
			p = &q.used
		}
		if off&4 == 0 {
			*p = *p&^0xffffffff | uint64(v)
		} else {
			*p = *p&0xffffffff | uint64(v)<<32
		}
	case regQueueReady:
		q := r.cur()
		if q == nil || r.refuseQueue[r.qsel] {
			return
		}
		q.ready = v & 1
		q.numAtReady = q.num
		q.readyWithoutFeatOK = r.status&StatusFeaturesOK == 0
		q.readyAfterDriverOK = r.status&StatusDriverOK != 0
	case regQueueNotify:
		if v < 2 {
			r.notify[v]++
		}
	case regStatus:
		r.written = append(r.written, v)
		if v == 0 {
			if !r.stuckReset {
				r.resets++
			}
			r.status = 0
			r.q = [2]fzQueue{}
			r.drvFeatures = [2]uint32{}
			return
		}
		if r.refuseFeatures {
			v &^= StatusFeaturesOK
		}
		if r.needsResetAt != 0 && v&r.needsResetAt != 0 {
			v |= StatusNeedsReset
		}
		r.status = v
	}
}

func (r *fzRegs) Read8(off uint32) uint8 {
	if off >= regConfig && off < regConfig+uint32(len(r.config)) {
		if o := off - regConfig; o >= cfgStatus && o < cfgMTU+2 {
			r.badWidth++ // a byte of a le16 field
		}
		return r.config[off-regConfig]
	}
	return 0
}

func (r *fzRegs) Read16(off uint32) uint16 {
	if off >= regConfig && off < regConfig+uint32(len(r.config))-1 {
		if o := off - regConfig; o%2 != 0 || o < cfgStatus {
			r.badWidth++ // misaligned, or into the u8 mac array
		}
		return binary.LittleEndian.Uint16(r.config[off-regConfig:])
	}
	return 0
}

// fzReader hands out fuzz input bytes, zeros when they run out.
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
func (r *fzReader) u32() uint32 { return uint32(r.u16()) | uint32(r.u16())<<16 }

// fzRing is the device's view of one queue: its memory in the arena and
// how far the device got.
type fzRing struct {
	desc, avail, used []byte
	num               int
	lastAvail         uint16 // next avail entry the device takes
	usedIdx           uint16 // next used entry the device writes
}

func fzRingOf(t *testing.T, mem []byte, q *fzQueue) fzRing {
	t.Helper()
	base := uint64(alloc.AddrOf(mem))
	slice := func(addr uint64, n int) []byte {
		if addr < base || addr-base+uint64(n) > uint64(len(mem)) {
			t.Fatalf("queue memory %#x+%d outside the arena", addr, n)
		}
		o := int(addr - base)
		return mem[o : o+n : o+n]
	}
	n := int(q.num)
	return fzRing{
		desc:  slice(q.desc, vring.DescTableSize(n)),
		avail: slice(q.avail, vring.AvailSize(n)),
		used:  slice(q.used, vring.UsedSize(n)),
		num:   n,
	}
}

// putUsed writes one used element at the device's used index and publishes it.
func (r *fzRing) putUsed(id, n uint32) {
	s := vring.UsedSlot(r.usedIdx, uint16(r.num-1))
	binary.LittleEndian.PutUint32(r.used[s+vring.UsedElemID:], id)
	binary.LittleEndian.PutUint32(r.used[s+vring.UsedElemLen:], n)
	r.usedIdx++
	vring.Store16(r.used, vring.UsedIdx, r.usedIdx)
}

// takeAvail returns the next head the driver made available, if any.
func (r *fzRing) takeAvail() (uint16, bool) {
	if vring.Load16(r.avail, vring.AvailIdx) == r.lastAvail {
		return 0, false
	}
	s := vring.AvailSlot(r.lastAvail, uint16(r.num-1))
	r.lastAvail++
	return binary.LittleEndian.Uint16(r.avail[s:]), true
}

// fuzzOffered is what the fuzzers' well-behaved device offers: every wanted
// feature but the receive offloads, whose 64 KiB joined packets need a
// larger rx ring than the fuzzers' 8 slots (FuzzRxPacket covers them).
const fuzzOffered = Wanted &^ RxOffloads

// fzGood returns a register window of a well-behaved virtio-net device.
func fzGood(num uint32) *fzRegs {
	r := &fzRegs{magic: Magic, version: Version, devID: DeviceIDNet, numMax: [2]uint32{num, num}}
	r.features = [2]uint32{uint32(fuzzOffered & 0xffffffff), uint32(fuzzOffered >> 32)}
	copy(r.config[cfgMAC:], []byte{2, 0, 0, 0, 0, 0x42})
	r.config[cfgStatus] = NetStatusLinkUp
	binary.LittleEndian.PutUint16(r.config[cfgMTU:], 1500)
	return r
}

// fzCheck verifies the driver's bookkeeping against the pool: the shared
// ledger check (every buffer out of the pool is on exactly one ring or held
// by the test, no Put refused), and each ring's free-id stack lists
// exactly its empty slots.
func fzCheck(t *testing.T, d *Driver, l *nictest.Ledger) {
	t.Helper()
	inFlight := l.Check(t, d.rx.bufs, d.tx.bufs)
	for k, q := range [2]*queue{&d.rx, &d.tx} {
		if q.nfree+inFlight[k] != q.num {
			t.Fatalf("queue %d: %d free ids + %d in flight != %d slots", q.index, q.nfree, inFlight[k], q.num)
		}
		ids := make(map[uint16]bool)
		for _, id := range q.free[:q.nfree] {
			if int(id) >= q.num || ids[id] || q.bufs[id] != nil {
				t.Fatalf("queue %d: free id %d is out of range, listed twice or in use", q.index, id)
			}
			ids[id] = true
		}
	}
}

// FuzzUsedRing lets the fuzzer play the device side of both used rings:
// completions with any id and length (out of range, duplicated, not
// outstanding), used index jumps, avail_event and flags, link status, while
// the driver receives, refills, transmits and reclaims. After every step no
// buffer may be lost, handed out twice or put twice, a received frame must
// lie inside its buffer, and every consumed used entry is either delivered
// or counted under exactly one cause. An oracle (fzOracle) follows each
// queue from the device's side: every buffer the driver takes back must
// match exactly one descriptor it posted and the device completed.
func FuzzUsedRing(f *testing.F) {
	// Seeds: pool size, ring size, flags, then ops (see the switch).
	h := []byte{20, 3, 0} // 24 buffers, 16-slot rings, EVENT_IDX
	seed := func(head []byte, ops ...byte) []byte { return append(append([]byte(nil), head...), ops...) }
	f.Add(seed(h, 11, 64, 0, 2, 3, 4)) // a good frame, returned, refilled
	// Out-of-range id, good frame, its id again, runt, too long.
	f.Add(seed(h, 0, 100, 60, 0, 11, 64, 0, 0, 0, 60, 0, 11, 5, 0, 0, 2, 0xff, 0x7f, 2, 3, 4))
	// Used idx runs 32767 ahead (more than the ring), then comes back.
	f.Add(seed(h, 1, 0xff, 0x7f, 2, 1, 0x01, 0x80, 11, 64, 0, 2))
	// Tx: no headroom, good, runt, oversize; completion, duplicate, unknown id with a huge length.
	f.Add(seed(h, 5, 60, 0, 0, 5, 60, 0, 64, 5, 10, 0, 64, 5, 0xd0, 0x07, 64, 8, 12, 6, 0, 0, 0, 0, 0, 6, 5, 0xff, 0xff, 0xff, 0xff, 7))
	// Tiny pool and rings without EVENT_IDX; used flags NO_NOTIFY; link down and up.
	f.Add(seed([]byte{4, 1, 2}, 11, 64, 0, 11, 64, 0, 2, 4, 10, 0, 0, 0, 0, 136, 0, 0, 1, 0, 5, 60, 0, 64, 8, 13, 0, 13, 1))
	// Tx completed, reclaimed, completed again; tx used idx runs away.
	f.Add(seed(h, 5, 64, 0, 64, 5, 64, 0, 64, 8, 12, 12, 7, 6, 1, 0, 0, 0, 0, 7, 9, 0xff, 0x7f, 7))
	// Rx used idx forged one ahead before any completion: slot 0 was
	// never written; read as zeroes it would name id 0, a buffer the
	// device still holds.
	f.Add(seed(h, 1, 1, 0, 2, 3, 4))
	// One tx frame outstanding, tx used idx forged 8 ahead, reclaim.
	f.Add(seed(h, 5, 64, 0, 64, 8, 9, 8, 0, 7))
	// A frame received and refilled (descriptor 0 posted again), then
	// the index forged one ahead: the slot under it was never written;
	// read as zeroes it would name descriptor 0.
	f.Add(seed(h, 11, 64, 0, 2, 3, 4, 1, 1, 0, 2))
	// Ops from 0xf0: 0xf8 the device sets DEVICE_NEEDS_RESET, 0xfc it
	// refuses features from now on, 0xfe its reset hangs, 0xf0 Maintain.
	// Needs reset with a frame received and one transmitted in flight.
	f.Add(seed(h, 11, 64, 0, 5, 64, 0, 64, 8, 0xf8, 0xf0, 4, 11, 64, 0, 2, 3, 12, 7))
	// Tx index wedged past the ring: one Maintain sees it, the next resets.
	f.Add(seed(h, 5, 64, 0, 64, 8, 9, 0, 0x80, 7, 0xf0, 0xf0, 4, 5, 64, 0, 64, 8, 12, 7))
	// The reset hangs: nothing is released; then it completes.
	f.Add(seed(h, 0xf8, 0xfe, 0xf0, 2, 0xfe, 0xf0, 4, 11, 64, 0, 2))
	// The device refuses its features after the reset: the driver stays
	// down (transmit refused) until a later Maintain brings it back.
	f.Add(seed(h, 0xf8, 0xfc, 0xf0, 2, 5, 64, 0, 64, 0xfc, 0xf0, 4, 11, 64, 0, 2))
	f.Fuzz(func(t *testing.T, data []byte) {
		in := &fzReader{b: data}
		count := 4 + int(in.u8()%40)
		ringSize := 2 << (in.u8() % 4) // 2..16
		flags := in.u8()

		arena := alloc.NewArena(make([]byte, (count+4)*2048+16*1024))
		pool, err := arena.Pool(alloc.Config{Count: count})
		if err != nil {
			t.Fatal(err)
		}
		regs := fzGood(uint32(ringSize))
		d, err := New(regs, arena, pool, Config{RxRing: 16, TxRing: 16, NoEventIdx: flags&2 != 0})
		if err != nil {
			t.Fatalf("New on a good device: %v", err)
		}
		rx := fzRingOf(t, arena.Memory(), &regs.q[queueRx])
		tx := fzRingOf(t, arena.Memory(), &regs.q[queueTx])
		held := nictest.NewLedger(pool)
		fzCheck(t, d, held)
		orx, otx := newOracle(&d.rx, &rx), newOracle(&d.tx, &tx)
		orx.check(t)
		otx.check(t)

		var received, freed uint64
		dropsRx := func() uint64 {
			return d.rxc.Dropped(nic.BadID) + d.rxc.Dropped(nic.Stale) + d.rxc.Dropped(nic.Duplicate) +
				d.rxc.Dropped(nic.BadLength) + d.rxc.Dropped(nic.Runt)
		}
		var consumedRx, consumedTx uint64

		var resets uint64
		stuckTries := 0
		for steps := 0; len(in.b) > 0 && steps < 256; steps++ {
			op := in.u8()
			if op >= 0xf0 {
				// Reset and recovery: the device asks for a reset,
				// its reset hangs or it refuses the features again;
				// the driver's periodic Maintain.
				switch op & 0xf {
				case 8, 9, 10, 11:
					if regs.status != 0 {
						regs.status |= StatusNeedsReset
					}
				case 12, 13:
					regs.refuseFeatures = !regs.refuseFeatures
				case 14:
					regs.stuckReset = !regs.stuckReset
				default:
					if regs.stuckReset {
						// Each try waits out a reset
						// that never completes: a few
						// show the point.
						if stuckTries++; stuckTries > 2 {
							continue
						}
					}
					before := regs.resets
					reset := d.Maintain()
					var st nic.Stats
					d.Stats(&st)
					if reset {
						resets++
						if regs.status != StatusAcknowledge|StatusDriver|StatusFeaturesOK|StatusDriverOK {
							t.Fatalf("Maintain reset, device status %#x", regs.status)
						}
						if st.ResetReason == "" {
							t.Fatal("reset without a reason")
						}
					}
					if st.Resets != resets {
						t.Fatalf("%d resets counted, %d done", st.Resets, resets)
					}
					if regs.resets != before {
						// The device owns nothing now: every
						// buffer the rings held is the pool's.
						if st := pool.Stats(); st.InUse != held.Len() || d.rx.nfree != d.rx.num || d.tx.nfree != d.tx.num {
							t.Fatalf("after a reset %d buffers in use, %d held by the caller; %d/%d rx, %d/%d tx ids free",
								st.InUse, held.Len(), d.rx.nfree, d.rx.num, d.tx.nfree, d.tx.num)
						}
						orx.reset()
						otx.reset()
						rx, tx = fzRing{}, fzRing{}
						if regs.q[queueRx].ready == 1 && regs.q[queueTx].ready == 1 {
							rx = fzRingOf(t, arena.Memory(), &regs.q[queueRx])
							tx = fzRingOf(t, arena.Memory(), &regs.q[queueTx])
						} else if reset {
							t.Fatal("Maintain reported a reset with the queues not ready")
						}
					}
				}
				fzCheck(t, d, held)
				if rx.num > 0 {
					orx.check(t)
					otx.check(t)
				}
				continue
			}
			if rx.num == 0 {
				// Rings not rebuilt (the restart failed): only the
				// driver's own calls are meaningful until Maintain.
				switch op % 14 {
				case 2, 3, 4, 5, 7, 8, 13:
				default:
					continue
				}
			}
			switch op % 14 {
			case 0: // rx completion, id and length as given
				id := uint32(in.u8())
				if id >= 0x80 {
					id = in.u32()
				}
				orx.used(id)
				rx.putUsed(id, uint32(in.u16()))
			case 1: // rx used index jump
				rx.usedIdx += in.u16()
				vring.Store16(rx.used, vring.UsedIdx, rx.usedIdx)
			case 2: // receive everything
				before := d.rx.lastUsed()
				for i := 0; ; i++ {
					if i > 2*ringSize+2 {
						t.Fatal("Receive returned more frames than the ring holds")
					}
					b := d.Receive()
					if b == nil {
						break
					}
					held.HandOut(t, b)
					orx.handOut(t, b)
					if b.Offset() != pool.DefaultHeadroom()+HeaderSize {
						t.Fatalf("frame at %d+%d, want it after the headroom and the header", b.Offset(), b.Len())
					}
					received++
				}
				consumedRx += uint64(d.rx.lastUsed() - before)
			case 3: // the stack returns what it holds
				held.PutAll(t)
			case 4:
				d.Refill()
				d.RxKick()
			case 5: // transmit a frame of the given length and offset
				n := int(in.u16() % 2100)
				off := int(in.u8() % 80)
				b := pool.Get()
				if b == nil {
					break
				}
				if err := b.SetBody(off, min(n, b.Cap()-off)); err != nil {
					t.Fatal(err)
				}
				o, l := b.Offset(), b.Len()
				if err := d.Transmit(b); err != nil {
					if b.Offset() != o || b.Len() != l {
						t.Fatalf("failed Transmit changed the buffer: %d+%d -> %d+%d", o, l, b.Offset(), b.Len())
					}
					if err := pool.Put(b); err != nil {
						t.Fatal(err)
					}
					break
				}
				if l < 14 || l > d.info.MaxFrame || o < HeaderSize {
					t.Fatalf("Transmit accepted a %d-byte frame at offset %d", l, o)
				}
			case 6: // tx completion, id and length as given
				id := uint32(in.u8())
				if id >= 0x80 {
					id = in.u32()
				}
				otx.used(id)
				tx.putUsed(id, in.u32())
			case 7:
				before := d.tx.lastUsed()
				freed += uint64(d.Reclaim())
				consumedTx += uint64(d.tx.lastUsed() - before)
			case 8:
				d.TxKick()
			case 9: // tx used index jump
				tx.usedIdx += in.u16()
				vring.Store16(tx.used, vring.UsedIdx, tx.usedIdx)
			case 10: // avail_event and used flags, as a device may set them
				r := &rx
				if op&0x80 != 0 {
					r = &tx
				}
				vring.Store16(r.used, vring.AvailEvent(r.num), in.u16())
				vring.Store16(r.used, vring.UsedFlags, in.u16())
			case 11: // complete the next available rx buffer with a frame
				if id, ok := rx.takeAvail(); ok {
					orx.used(uint32(id))
					rx.putUsed(uint32(id), HeaderSize+uint32(in.u16()%1600))
				}
			case 12: // complete the next available tx buffer
				if id, ok := tx.takeAvail(); ok {
					otx.used(uint32(id))
					tx.putUsed(uint32(id), 0)
				}
			case 13: // link status flaps
				regs.config[cfgStatus] = in.u8()
				var s nic.Stats
				d.Stats(&s)
				// A driver whose recovery failed reports the link down.
				if s.Link != (!d.down.Load() && regs.config[cfgStatus]&NetStatusLinkUp != 0) {
					t.Fatalf("link %v with status %#x", s.Link, regs.config[cfgStatus])
				}
			}
			fzCheck(t, d, held)
			if rx.num > 0 {
				orx.check(t)
				otx.check(t)
			}
			if got := received + dropsRx(); got != consumedRx {
				t.Fatalf("rx: %d used entries consumed, %d delivered + %d dropped", consumedRx, received, dropsRx())
			}
			dropsTx := d.txc.Dropped(nic.BadID) + d.txc.Dropped(nic.Stale) + d.txc.Dropped(nic.Duplicate)
			if got := freed + dropsTx; got != consumedTx {
				t.Fatalf("tx: %d used entries consumed, %d freed + %d bad entries", consumedTx, freed, dropsTx)
			}
		}
		if regs.badSel != 0 || regs.badWidth != 0 {
			t.Fatalf("%d queue register accesses with QueueSel out of range, %d config reads at the wrong width", regs.badSel, regs.badWidth)
		}
		if regs.stuckReset {
			// A device whose reset hangs may still write into the
			// buffers it holds: Close must keep them out of the pool.
			// Once the reset completes, Close gives them back.
			posted := pool.InUse() - held.Len()
			d.Close()
			if got := pool.InUse() - held.Len(); got != posted {
				t.Fatalf("Close with a hung reset: %d buffers posted, %d still out of the pool", posted, got)
			}
			regs.stuckReset = false
		}
		d.Close()
		held.CheckClosed(t)
	})
}

// FuzzInit lets the fuzzer choose every register and config value a device
// presents at initialisation. New must either fail, leaving no buffer out of
// the pool, or return a driver whose negotiated state is consistent with
// what the device offered and which sends a frame and closes cleanly.
func FuzzInit(f *testing.F) {
	good := func(mut func(b []byte)) []byte {
		b := make([]byte, 48)
		binary.LittleEndian.PutUint32(b[0:], Magic)
		binary.LittleEndian.PutUint32(b[4:], Version)
		binary.LittleEndian.PutUint32(b[8:], DeviceIDNet)
		binary.LittleEndian.PutUint64(b[12:], fuzzOffered)
		b[20] = 0 // behaviour flags
		b[21], b[22] = 8, 8
		b[23] = 0 // genStep
		copy(b[24:], []byte{2, 0, 0, 0, 0, 1, NetStatusLinkUp, 0, 1, 0, 0xdc, 0x05})
		mut(b)
		return b
	}
	f.Add(good(func([]byte) {}))
	f.Add(good(func(b []byte) { b[0] = 0 }))                                          // bad magic
	f.Add(good(func(b []byte) { b[4] = 1 }))                                          // legacy
	f.Add(good(func(b []byte) { b[8] = 2 }))                                          // block device
	f.Add(good(func(b []byte) { binary.LittleEndian.PutUint64(b[12:], 1<<5) }))       // no VERSION_1
	f.Add(good(func(b []byte) { b[20] = 1 }))                                         // refuses features
	f.Add(good(func(b []byte) { b[20] = 8 }))                                         // needs reset at DRIVER_OK
	f.Add(good(func(b []byte) { b[21] = 0 }))                                         // no rx queue
	f.Add(good(func(b []byte) { b[22] = 1 }))                                         // tx queue too small
	f.Add(good(func(b []byte) { b[23] = 1 }))                                         // config never stable
	f.Add(good(func(b []byte) { b[34], b[35] = 20, 0 }))                              // MTU below 68
	f.Add(good(func(b []byte) { b[24] = 1 }))                                         // multicast MAC
	f.Add(good(func(b []byte) { copy(b[24:30], make([]byte, 6)) }))                   // zero MAC
	f.Add(good(func(b []byte) { b[34], b[35] = 0xff, 0xff }))                         // MTU 65535
	f.Add(good(func(b []byte) { binary.LittleEndian.PutUint64(b[12:], ^uint64(0)) })) // every feature
	f.Fuzz(func(t *testing.T, data []byte) {
		in := &fzReader{b: data}
		r := &fzRegs{magic: in.u32(), version: in.u32(), devID: in.u32()}
		r.features[0], r.features[1] = in.u32(), in.u32()
		fl := in.u8()
		r.refuseFeatures = fl&1 != 0
		r.refuseQueue = [2]bool{fl&2 != 0, fl&4 != 0}
		if fl&8 != 0 {
			r.needsResetAt = StatusDriverOK
		}
		if fl&16 != 0 {
			r.needsResetAt = StatusFeaturesOK
		}
		r.stuckReset = fl&0xe0 == 0xe0 // rare: costs a long wait
		r.numMax[0], r.numMax[1] = uint32(in.u8()), uint32(in.u8())
		if fl&32 != 0 && !r.stuckReset {
			r.numMax[0], r.numMax[1] = in.u32(), in.u32()
		}
		r.genStep = uint32(in.u8() & 1)
		for i := range r.config {
			r.config[i] = in.u8()
		}
		cfg := Config{RxRing: 8, TxRing: 8, NoEventIdx: fl&64 != 0}

		arena := alloc.NewArena(make([]byte, 64*2048+64*1024))
		pool, err := arena.Pool(alloc.Config{Count: 48})
		if err != nil {
			t.Fatal(err)
		}
		d, err := New(r, arena, pool, cfg)
		if r.badSel != 0 || r.badWidth != 0 {
			t.Fatalf("%d queue register accesses with QueueSel out of range, %d config reads at the wrong width", r.badSel, r.badWidth)
		}
		if err != nil {
			t.Logf("New: %v", err)
			nictest.CheckEmpty(t, pool, "New failed ("+err.Error()+")")
			if r.status&StatusDriverOK != 0 && r.status&StatusFailed == 0 && r.status != 0 {
				t.Fatalf("New failed (%v) but left the device running (status %#x)", err, r.status)
			}
			return
		}

		// The device is what New accepted.
		offered := uint64(r.features[0]) | uint64(r.features[1])<<32
		switch {
		case r.magic != Magic || r.version != Version || r.devID != DeviceIDNet:
			t.Fatalf("New accepted magic %#x version %d device %d", r.magic, r.version, r.devID)
		case r.refuseFeatures || r.refuseQueue[0] || r.refuseQueue[1]:
			t.Fatal("New accepted a device that refused features or a queue")
		case d.features&^(offered&Wanted) != 0 || d.features&FeatureVersion1 == 0:
			t.Fatalf("negotiated %#x, offered %#x", d.features, offered)
		case deps(d.features) != d.features:
			t.Fatalf("negotiated %#x: features without their prerequisites (virtio 1.2 §5.1.3.1)", d.features)
		case uint64(r.drvFeatures[0])|uint64(r.drvFeatures[1])<<32 != d.features:
			t.Fatalf("wrote features %#x, negotiated %#x", r.drvFeatures, d.features)
		case r.status != StatusAcknowledge|StatusDriver|StatusFeaturesOK|StatusDriverOK:
			t.Fatalf("status %#x after New", r.status)
		}
		for i, q := range r.q {
			n := int(q.numAtReady)
			if q.ready != 1 || n < 2 || n&(n-1) != 0 || n > 8 || uint32(n) > r.numMax[i] {
				t.Fatalf("queue %d ready %d with %d entries, max %d", i, q.ready, n, r.numMax[i])
			}
			if q.readyWithoutFeatOK || q.readyAfterDriverOK {
				t.Fatalf("queue %d made ready outside FEATURES_OK..DRIVER_OK", i)
			}
			fzRingOf(t, arena.Memory(), &r.q[i]) // inside the arena
		}
		info := d.Info()
		if info.MTU < 68 || info.MTU > 1500 {
			t.Fatalf("MTU %d", info.MTU)
		}
		if info.MAC[0]&1 != 0 || info.MAC == ([6]byte{}) {
			t.Fatalf("station address %x is not a unicast address", info.MAC)
		}
		if d.features&FeatureMAC != 0 && info.MAC != [6]byte(r.config[cfgMAC:cfgMAC+6]) {
			t.Fatalf("MAC %x, config has %x", info.MAC, r.config[:6])
		}
		if d.info.MaxFrame > pool.BufferSize()-pool.DefaultHeadroom() {
			t.Fatalf("max frame %d does not fit a buffer", d.info.MaxFrame)
		}

		// It works: a largest frame goes out and comes back at reclaim.
		b := pool.Get()
		if err := b.SetBody(pool.DefaultHeadroom(), d.info.MaxFrame); err != nil {
			t.Fatal(err)
		}
		if err := d.Transmit(b); err != nil {
			t.Fatalf("Transmit of a %d-byte frame: %v", d.info.MaxFrame, err)
		}
		d.TxKick()
		tx := fzRingOf(t, arena.Memory(), &r.q[queueTx])
		id, ok := tx.takeAvail()
		if !ok {
			t.Fatal("transmitted frame not made available")
		}
		tx.putUsed(uint32(id), 0)
		if d.Reclaim() != 1 {
			t.Fatal("completed frame not reclaimed")
		}
		d.LinkUp()
		if r.badWidth != 0 {
			t.Fatalf("%d config reads at the wrong width", r.badWidth)
		}
		d.Close()
		nictest.CheckEmpty(t, pool, "after Close")
	})
}

// fzOracle follows one queue from the device's side of the protocol, so the
// fuzz target can check every buffer the driver gives up against what the
// device actually did. A descriptor is device-held from the moment the
// driver publishes it in the avail ring until the device writes a used
// entry for it (a completion); it is then completed until the driver takes
// it off its ring. A used entry for an id that is not device-held completes
// nothing: it is forged, stale or a duplicate.
//
// The checks: the driver never takes a device-held descriptor off its ring
// (that buffer would go up or back to the pool while the device may still
// write it), never publishes a descriptor that is device-held or completed
// and not yet taken back, and every completed descriptor is taken back at
// most once (a second completion entry for it finds it gone).
type fzOracle struct {
	q    *queue
	ring *fzRing
	// held[id] is the buffer address the device holds under descriptor
	// id; done[id] marks a completion the driver has not taken yet.
	held map[uint16]uint64
	done map[uint16]bool
	// posted[id] is the buffer the driver recorded for descriptor id
	// when it published it.
	posted map[uint16]*alloc.Buffer
	seen   uint16 // avail entries before seen have been learnt
}

func newOracle(q *queue, r *fzRing) *fzOracle {
	return &fzOracle{q: q, ring: r, held: make(map[uint16]uint64), done: make(map[uint16]bool), posted: make(map[uint16]*alloc.Buffer)}
}

// reset forgets everything: after a completed device reset the device holds
// nothing, and the driver lays the rings out again from index 0.
func (o *fzOracle) reset() {
	clear(o.held)
	clear(o.done)
	clear(o.posted)
	o.seen = 0
}

// used records a used entry the device writes for id.
func (o *fzOracle) used(id uint32) {
	if id < uint32(o.ring.num) {
		if _, ok := o.held[uint16(id)]; ok {
			delete(o.held, uint16(id))
			o.done[uint16(id)] = true
		}
	}
}

// check runs after every step: completions the driver took back are
// settled, device-held descriptors must still be on the driver's ring, and
// newly published descriptors become device-held.
func (o *fzOracle) check(t *testing.T) {
	t.Helper()
	for id := range o.done {
		if o.q.bufs[id] == nil {
			delete(o.done, id) // taken back exactly once
		}
	}
	for id, addr := range o.held {
		b := o.q.bufs[id]
		if b == nil || uint64(b.Addr()) > addr || addr >= uint64(b.Addr())+uint64(b.Cap()) {
			t.Fatalf("queue %d: driver gave up descriptor %d (buffer at %#x) that the device still holds", o.q.index, id, addr)
		}
	}
	idx := vring.Load16(o.ring.avail, vring.AvailIdx)
	if uint16(idx-o.seen) > uint16(o.ring.num) {
		t.Fatalf("queue %d: avail idx %d is %d past the last seen %d", o.q.index, idx, idx-o.seen, o.seen)
	}
	for ; o.seen != idx; o.seen++ {
		s := vring.AvailSlot(o.seen, uint16(o.ring.num-1))
		id := binary.LittleEndian.Uint16(o.ring.avail[s:])
		if int(id) >= o.ring.num {
			t.Fatalf("queue %d: driver published descriptor %d of %d", o.q.index, id, o.ring.num)
		}
		if _, ok := o.held[id]; ok || o.done[id] {
			t.Fatalf("queue %d: driver published descriptor %d again before taking back its completion", o.q.index, id)
		}
		o.held[id] = binary.LittleEndian.Uint64(o.ring.desc[int(id)*vring.DescSize+vring.DescAddr:])
		o.posted[id] = o.q.bufs[id]
	}
}

// handOut checks a buffer Receive returned: it must be the buffer of a
// descriptor the device completed and the driver has not taken back yet,
// and it settles that completion.
func (o *fzOracle) handOut(t *testing.T, b *alloc.Buffer) {
	t.Helper()
	for id := range o.done {
		if o.posted[id] == b {
			delete(o.done, id)
			return
		}
	}
	t.Fatalf("queue %d: buffer %d handed out without a completion of the descriptor it was posted under", o.q.index, b.Index())
}

// FuzzRxPacket plays a device with every receive offload negotiated
// (GUEST_CSUM, MRG_RXBUF, GUEST_TSO4/6, GUEST_ECN) that writes any header
// (flags, gso_type, gso_size, csum_start, csum_offset, num_buffers) into
// the first buffer of a packet, completes any number of buffers with any
// used length, and publishes them at once or one by one, while the driver
// takes packets with ReceivePacket. Every packet returned must agree with
// its header and the negotiated limits, consist of buffers the device
// completed, in the order it completed them, and no buffer may be lost or
// handed out twice (nictest.Ledger after every step).
func FuzzRxPacket(f *testing.F) {
	hdr := func(flags, gso byte, gsoSize, start, off, nb uint16) []byte {
		return []byte{flags, gso, 0, 0, byte(gsoSize), byte(gsoSize >> 8), byte(start), byte(start >> 8), byte(off), byte(off >> 8), byte(nb), byte(nb >> 8)}
	}
	pkt := func(k byte, publish byte, h []byte, lens ...uint16) []byte {
		b := append([]byte{0, k, publish}, h...)
		for _, n := range lens {
			b = append(b, byte(n), byte(n>>8))
		}
		return append(b, 1) // receive
	}
	// One small packet; a 3-buffer joined TCPv4 packet with a partial
	// checksum; num_buffers 0, beyond the buffers, beyond the published;
	// a bad length in the middle.
	f.Add(pkt(1, 0, hdr(0, 0, 0, 0, 0, 1), 72))
	f.Add(pkt(3, 0, hdr(1, 1, 1448, 34, 16, 3), 1984, 1984, 500))
	f.Add(pkt(1, 0, hdr(2, 0, 0, 0, 0, 0), 100))
	f.Add(pkt(2, 0, hdr(0, 4, 1000, 0, 0, 40), 1984, 1984))
	f.Add(pkt(2, 1, hdr(0, 1, 1000, 0, 0, 3), 1984, 1984))
	f.Add(pkt(3, 0, hdr(2, 1, 1000, 0, 0, 3), 1984, 0, 100))
	f.Fuzz(func(t *testing.T, data []byte) {
		in := &fzReader{b: data}
		arena := alloc.NewArena(make([]byte, 80*2048+64*1024))
		pool, err := arena.Pool(alloc.Config{Count: 72})
		if err != nil {
			t.Fatal(err)
		}
		regs := fzGood(64)
		regs.features[0] |= uint32(RxOffloads)
		d, err := New(regs, arena, pool, Config{RxRing: 64, TxRing: 2})
		if err != nil {
			t.Fatalf("New on a good device: %v", err)
		}
		o := d.Offloads()
		if d.Features()&RxOffloads != RxOffloads || o.MaxRxBuffers < 34 || o.MaxRxPacket != MaxGSOPacket {
			t.Fatalf("features %#x, offloads %+v", d.Features(), o)
		}
		rx := fzRingOf(t, arena.Memory(), &regs.q[queueRx])
		mem := arena.Memory()
		base := uint64(alloc.AddrOf(mem))
		held := nictest.NewLedger(pool)
		bufs := make([]*alloc.Buffer, o.MaxRxBuffers)
		// The entries the device completed, in order, that the driver
		// has not consumed yet: used index and buffer address.
		type completion struct {
			idx  uint16
			addr uintptr
		}
		var done []completion
		for steps := 0; len(in.b) > 0 && steps < 64; steps++ {
			switch in.u8() % 4 {
			case 0: // the device writes a packet over k buffers
				k := 1 + int(in.u8()%40)
				oneByOne := in.u8()&1 != 0
				var h [HeaderSize]byte
				for i := range h {
					h[i] = in.u8()
				}
				for j := 0; j < k; j++ {
					head, ok := rx.takeAvail()
					if !ok {
						break
					}
					if int(head) >= rx.num {
						t.Fatalf("driver posted id %d", head)
					}
					desc := rx.desc[int(head)*vring.DescSize:]
					addr := binary.LittleEndian.Uint64(desc[vring.DescAddr:])
					n := binary.LittleEndian.Uint32(desc[vring.DescLen:])
					off := int(addr - base)
					buf := mem[off : off+int(n)]
					for i := range buf {
						buf[i] = byte(i + j)
					}
					if j == 0 {
						copy(buf, h[:])
					}
					done = append(done, completion{rx.usedIdx, uintptr(addr)})
					s := vring.UsedSlot(rx.usedIdx, uint16(rx.num-1))
					binary.LittleEndian.PutUint32(rx.used[s+vring.UsedElemID:], uint32(head))
					binary.LittleEndian.PutUint32(rx.used[s+vring.UsedElemLen:], uint32(in.u16()))
					rx.usedIdx++
					if oneByOne {
						vring.Store16(rx.used, vring.UsedIdx, rx.usedIdx)
					}
				}
				vring.Store16(rx.used, vring.UsedIdx, rx.usedIdx)
			case 1: // the driver takes what it can
				for i := 0; i < 64; i++ {
					n, meta := d.ReceivePacket(bufs)
					if n > o.MaxRxBuffers {
						t.Fatalf("%d buffers, most %d", n, o.MaxRxBuffers)
					}
					// The driver consumes entries in order and
					// returns as soon as it has a good packet: the
					// packet is the last n entries it consumed, and
					// every entry before them was dropped. (A
					// buffer's address alone does not say which
					// completion it came from: buffers are reposted.)
					end := d.rx.lastUsed()
					for len(done) > 0 && int16(end-uint16(n)-done[0].idx) > 0 {
						done = done[1:]
					}
					if n == 0 {
						break
					}
					if len(done) < n {
						t.Fatalf("a %d-buffer packet from %d completions", n, len(done))
					}
					total := 0
					for j, b := range bufs[:n] {
						total += b.Len()
						c := done[j]
						want := c.addr
						if j == 0 {
							want += HeaderSize
						}
						if c.idx != end-uint16(n-j) || b.BodyAddr() != want {
							t.Fatalf("buffer %d of a packet is not the entry %d the driver consumed for it", j, end-uint16(n-j))
						}
					}
					done = done[n:]
					held.HandOutPacket(t, bufs[:n])
					// (HandOutPacket failed a packet under 14 bytes.)
					switch {
					case meta.GSO == nic.GSONone && total > d.Info().MaxFrame, total > o.MaxRxPacket:
						t.Fatalf("%d-byte packet, GSO %d", total, meta.GSO)
					case meta.NeedsCsum && (meta.CsumStart < 14 || int(meta.CsumStart)+int(meta.CsumOffset)+2 > total):
						t.Fatalf("partial checksum at %d+%d in %d bytes", meta.CsumStart, meta.CsumOffset, total)
					case meta.NeedsCsum && !meta.Verified:
						t.Fatal("NEEDS_CSUM not reported as verified")
					}
					for j := range bufs[:n] {
						bufs[j] = nil
					}
				}
			case 2:
				held.PutAll(t)
			case 3:
				d.Refill()
				d.RxKick()
			}
			fzCheck(t, d, held)
		}
		held.PutAll(t)
		d.Close()
		held.CheckClosed(t)
	})
}
