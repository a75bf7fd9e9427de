// Package virtiotest is a virtio-net device model for host tests: it plays
// the device side of the virtio-mmio version 2 registers (virtio 1.2 §4.2)
// and of the split virtqueues (§2.7) over the same memory the driver lays
// its rings and buffers in.
//
// A Device implements virtio.Regs. It resolves every address the driver
// hands it as an offset into the DMA memory slice given to New, and rejects
// (counts, never panics on) an address outside it. It works the rings when
// the driver writes QueueNotify, in the writer's goroutine, and when a frame
// arrives from its backend: Pipe links two models back to back, AttachTap
// links a model to a Linux tap, SetOutput hands transmitted frames to a
// function. Frames that arrive while no receive buffer is posted wait in a
// bounded backlog.
//
// Faults can be injected at run time from a seeded generator: dropped,
// duplicated, corrupted and reordered frames, bad used lengths, bad used ids,
// lying num_buffers and a stalled ring. The receive offloads (GUEST_CSUM,
// GUEST_TSO4/6, MRG_RXBUF) are offered when Options.Features has them. A test can also make the device ask for a reset
// (RaiseNeedsReset) or forge its used index, once or for good (ForgeUsed).
// Every injection is counted in Stats.
//
// The model allocates nothing per frame, so allocation tests of the driver
// can run against it.
package virtiotest

import (
	"encoding/binary"
	"math/rand/v2"
	"os"
	"sync"

	"github.com/tamanet/tamanet/alloc"
	"github.com/tamanet/tamanet/nic/internal/wire"
	"github.com/tamanet/tamanet/nic/virtio/internal/vring"
)

// Register offsets, status and feature bits, written out here from the spec
// (§4.2.2, §2.1, §5.1.3) rather than imported, so the model checks the
// driver against the spec and not against itself.
const (
	regMagic          = 0x000
	regVersion        = 0x004
	regDeviceID       = 0x008
	regVendorID       = 0x00c
	regDeviceFeatures = 0x010
	regDeviceFeatSel  = 0x014
	regDriverFeatures = 0x020
	regDriverFeatSel  = 0x024
	regQueueSel       = 0x030
	regQueueNumMax    = 0x034
	regQueueNum       = 0x038
	regQueueReady     = 0x044
	regQueueNotify    = 0x050
	regInterruptStat  = 0x060
	regInterruptACK   = 0x064
	regStatus         = 0x070
	regQueueDescLow   = 0x080
	regQueueDescHigh  = 0x084
	regQueueDrvLow    = 0x090
	regQueueDrvHigh   = 0x094
	regQueueDevLow    = 0x0a0
	regQueueDevHigh   = 0x0a4
	regConfigGen      = 0x0fc
	regConfig         = 0x100

	statusAcknowledge = 1
	statusDriver      = 2
	statusDriverOK    = 4
	statusFeaturesOK  = 8
	statusNeedsReset  = 64

	// Features is what the model offers by default: VIRTIO_NET_F_MTU (3),
	// VIRTIO_NET_F_MAC (5), VIRTIO_NET_F_STATUS (16),
	// VIRTIO_F_EVENT_IDX (29), VIRTIO_F_VERSION_1 (32).
	Features        = 1<<3 | 1<<5 | 1<<16 | 1<<29 | 1<<32
	featureEventIdx = 1 << 29
	featureVersion1 = 1 << 32

	// Receive offloads the model implements (§5.1.3), offered only when
	// Options.Features has them: VIRTIO_NET_F_GUEST_CSUM (1),
	// VIRTIO_NET_F_GUEST_TSO4 (7), VIRTIO_NET_F_GUEST_TSO6 (8),
	// VIRTIO_NET_F_MRG_RXBUF (15). RxOffloads is all of them.
	FeatureGuestCSUM = 1 << 1
	FeatureGuestTSO4 = 1 << 7
	FeatureGuestTSO6 = 1 << 8
	FeatureMrgRxBuf  = 1 << 15
	RxOffloads       = FeatureGuestCSUM | FeatureGuestTSO4 | FeatureGuestTSO6 | FeatureMrgRxBuf
	// FeatureGuestECN is VIRTIO_NET_F_GUEST_ECN (9): only a tap
	// (AttachTapVnet) writes GSO_ECN, so it is not in RxOffloads.
	FeatureGuestECN = 1 << 9

	// MaxGSOPacket is the longest joined packet the model writes: 65562
	// bytes with the header (§5.1.6.3.1).
	MaxGSOPacket = 65562 - hdrSize

	hdrSize         = 12 // struct virtio_net_hdr, VERSION_1 (§5.1.6)
	interruptUsed   = 1  // InterruptStatus bit 0: used buffer notification
	interruptConfig = 2  // InterruptStatus bit 1: configuration change

	// MaxFrame is the largest frame the model carries: 1514 bytes plus a
	// VLAN tag plus slack for a tap whose MTU is a little larger.
	MaxFrame = 1536
)

// Options configure a Device. Zero values take defaults.
type Options struct {
	// MAC in config space. Default 02:00:00:00:00:02.
	MAC [6]byte
	// MTU in config space. Default 1500.
	MTU uint16
	// Features offered. Default Features.
	Features uint64
	// QueueNumMax for both queues. Default 256; negative: 0 (no queue).
	QueueNumMax int
	// Backlog is how many frames wait for a receive buffer before further
	// ones are dropped. Default 256.
	Backlog int
	// Magic, Version and DeviceID override the identification registers
	// (0: the correct value), for testing a driver's checks.
	Magic, Version, DeviceID uint32
	// LinkDown starts the device with VIRTIO_NET_S_LINK_UP clear.
	LinkDown bool

	// MaxPacket is the longest frame the wire carries. Default MaxFrame;
	// up to MaxGSOPacket for joined TCP segments (GUEST_TSO4/6), which
	// arrive with Deliver or from a peer as one long frame. Every
	// backlog slot is this long: keep Backlog small with a large one.
	MaxPacket int
	// Vouch sets DATA_VALID on every frame written while GUEST_CSUM is
	// negotiated, without checking it: a corrupted frame (Faults.Corrupt)
	// is vouched for too. Checking is the device's responsibility, so
	// this models a broken device. Partial takes precedence for TCP and
	// UDP.
	Vouch bool
	// Partial writes TCP and UDP frames (not IP fragments) as a local
	// sender leaves them while GUEST_CSUM is negotiated: NEEDS_CSUM, with
	// csum_start and csum_offset naming the transport checksum, whose
	// field then holds only the pseudo-header sum (§5.1.6.4).
	Partial bool
}

// Faults configures fault injection. Rates are probabilities in [0, 1]
// applied per frame (Drop, Duplicate, Corrupt, Reorder: to frames arriving
// at this device) or per completion (BadLength, BadID: to used entries this
// device writes on either queue). A stalled ring is Stall / Unstall.
//
// A bad id is an extra used entry with an id out of range, so no buffer is
// lost with it. Extra entries could overrun the used ring of a driver that
// lags, and a driver may (rightly) refuse a used index that claims more
// completions than it has descriptors outstanding. So while injected
// entries may be unconsumed, the model completes only what certainly fits
// the ring and leaves the device holding at least as many descriptors as
// there are such entries; it holds the rest back until the driver's next
// post, its used_event or its next read of the Status register (the
// model's background work, see Read32) shows it caught up.
type Faults struct {
	Seed      uint64
	Drop      float64
	Duplicate float64
	Corrupt   float64 // flip one byte of the frame
	Reorder   float64 // hold a frame back and deliver it after the next
	BadLength float64 // report a used length out of range
	BadID     float64 // add a used entry with an id out of range
	// TxHeaderLie makes the virtio-net header of a transmitted packet
	// lie (a checksum field beyond the packet, a bad gso_type, gso_size
	// 0, hdr_len beyond the packet, GSO not negotiated) before the model
	// reads it, as a buggy driver would write it: the model must count
	// it in BadHeaders and drop it, and the driver get its buffers back.
	TxHeaderLie float64
	// NumBuffers lies in num_buffers (MRG_RXBUF only): 0, 0xffff, or
	// one more than the buffers used, at random.
	NumBuffers float64
}

// Stats counts what the model did and what it injected. The embedded
// wire counters are Interrupts, BacklogDrops (arrived with no receive
// buffer and a full backlog), Oversize (larger than MaxFrame or than the
// posted buffer), Dropped, Duplicated, Corrupted, Reordered and Stalled.
type Stats struct {
	wire.Stats
	RxFrames, RxBytes uint64 // written into receive buffers
	TxFrames, TxBytes uint64 // taken from transmit buffers
	Notifies          [2]uint64
	DeviceErrors      uint64 // bad addresses, descriptors or indices from the driver

	BadLengths, BadIDs uint64
	// NumBufferLies counts Faults.NumBuffers injections; Joined counts
	// frames written as GSO packets (longer than the MTU), JoinedBytes
	// their bytes; RxCsum counts frames written with NEEDS_CSUM or
	// DATA_VALID.
	NumBufferLies, Joined, JoinedBytes, RxCsum uint64

	// A tap with IFF_VNET_HDR (AttachTapVnet): TapOffloads is the
	// TUN_F_* set it was last given, TapOffloadErrors counts settings
	// the kernel refused; RxBadHeaders counts frames dropped because the
	// kernel's header has flags or a GSO type the negotiated features
	// do not allow.
	TapOffloads, TapOffloadErrors, RxBadHeaders uint64

	// Transmit offloads: TxChains counts packets posted as a chain of
	// more than one descriptor, TxGSO packets the model segmented
	// (TSO) into TxSegments frames, TxCsum checksums it filled in
	// (NEEDS_CSUM). BadHeaders counts packets dropped for a header that
	// lies (checksum offsets beyond the packet, bad gso_type or
	// gso_size, hdr_len beyond the packet, an offload not negotiated),
	// as QEMU drops them; HeaderLies counts TxHeaderLie injections.
	TxChains, TxGSO, TxSegments, TxCsum uint64
	BadHeaders, HeaderLies              uint64

	// NeedsResets counts RaiseNeedsReset calls and device errors that
	// set DEVICE_NEEDS_RESET; Forged counts ForgeUsed calls; Resets
	// counts resets the driver made of a device it had started.
	NeedsResets, Forged, Resets uint64
}

// seg is one resolved descriptor buffer.
type seg struct{ off, n int }

// vq is the device side of one split virtqueue.
type vq struct {
	num                  uint32
	ready                bool
	descA, availA, usedA uint64
	desc, avail, used    []byte
	mask                 uint16
	lastAvail            uint16
	usedIdx              uint16
	pub                  uint16 // used index last published
	forge                uint16 // added to every published used index (ForgeUsed, sticky)
	broken               bool

	// Bookkeeping that keeps injected extra used entries from ever
	// overrunning the used ring. The driver's unconsumed entries are at
	// most the ids completed and not yet seen posted again (held, since
	// it cannot repost an id before consuming its entry) plus the
	// injected entries it may not have consumed yet (those at or after
	// lb, a lower bound of its consumption learnt from reposts).
	// entries counts used entries written; doneAt[id] is 1 + the
	// position of the entry that completed id, 0 once id is seen
	// posted again; bad holds 1 + the positions of injected entries
	// not yet known consumed, oldest first.
	entries uint64
	lb      uint64
	held    int
	doneAt  []uint64
	bad     []uint64
	seen    uint16 // avail entries before seen have been learnt from

	eventIdx bool // VIRTIO_F_EVENT_IDX negotiated: used_event is meaningful
	segs     []seg
	heads    []mrgHead // MRG_RXBUF: the buffers one packet takes
}

// Device is a virtio-net device model. Its methods are safe for concurrent
// use.
type Device struct {
	mu   sync.Mutex
	mem  []byte
	base uint64
	opt  Options

	devFeatSel, drvFeatSel uint32
	drvFeatures            uint64
	status                 uint32
	queueSel               uint32
	intStatus              uint32
	cfg                    [12]byte
	cfgGen                 uint32
	q                      [2]vq

	raw    []byte // DeliverRaw's header for the next frame written, or nil
	rawHdr [hdrSize]byte
	w      wire.Port // backends, backlog, frame faults, interrupt hook
	tx     txState   // transmit offloads (offload.go)
	vt     vnetTap   // a tap with IFF_VNET_HDR (offload.go)
	faults Faults
	rng    *rand.Rand // w.Rand()
	stats  Stats
}

// New returns a device model over mem, the DMA memory the driver allocates
// rings and buffers from (alloc.Arena.Memory()).
func New(mem []byte, opt Options) *Device {
	if opt.MAC == ([6]byte{}) {
		opt.MAC = [6]byte{0x02, 0, 0, 0, 0, 2}
	}
	if opt.MTU == 0 {
		opt.MTU = 1500
	}
	if opt.Features == 0 {
		opt.Features = Features
	}
	if opt.QueueNumMax == 0 {
		opt.QueueNumMax = 256
	}
	if opt.Backlog == 0 {
		opt.Backlog = 256
	}
	if opt.MaxPacket == 0 {
		opt.MaxPacket = MaxFrame
	}
	if opt.Magic == 0 {
		opt.Magic = 0x74726976
	}
	if opt.Version == 0 {
		opt.Version = 2
	}
	if opt.DeviceID == 0 {
		opt.DeviceID = 1
	}
	d := &Device{mem: mem, base: uint64(alloc.AddrOf(mem)), opt: opt}
	copy(d.cfg[0:6], opt.MAC[:])
	if !opt.LinkDown {
		d.cfg[6] = 1 // VIRTIO_NET_S_LINK_UP
	}
	d.cfg[8] = 1 // max_virtqueue_pairs
	binary.LittleEndian.PutUint16(d.cfg[10:], opt.MTU)
	d.w.Init(&d.mu, &d.stats.Stats, wire.Config{
		// Room for the kernel's header before each frame from a tap
		// (AttachTapVnet); writeRxLocked holds frames to MaxPacket.
		MaxFrame: hdrSize + opt.MaxPacket,
		Backlog:  opt.Backlog,
		WriteRx:  d.writeRxLocked,
		RxDone:   d.finishRxLocked,
		FillTx:   d.fillTxLocked,
	})
	d.rng = d.w.Rand()
	d.tx.pkt = make([]byte, hdrSize+MaxTxPacket)
	return d
}

// Pipe links a and b: what one transmits, the other receives.
func Pipe(a, b *Device) { wire.Pipe(&a.w, &b.w) }

// SetOutput hands every transmitted frame to fn instead of a peer or tap.
// fn runs in the transmitting goroutine and must not keep the slice.
func (d *Device) SetOutput(fn func(frame []byte)) { d.w.SetOutput(fn) }

// SetInterrupt sets the function called after the device posts used
// entries for which the driver asked to be interrupted (used_event with
// EVENT_IDX, VIRTQ_AVAIL_F_NO_INTERRUPT clear otherwise). It runs in the
// goroutine that caused the completion, with no lock held, and must not
// call back into the device or the driver synchronously: wake a poller.
func (d *Device) SetInterrupt(fn func()) { d.w.SetInterrupt(fn) }

// SetFaults replaces the fault configuration and reseeds the generator.
// A frame held for reordering is delivered first.
func (d *Device) SetFaults(f Faults) {
	d.w.SetFaults(f.Seed, wire.Faults{Drop: f.Drop, Duplicate: f.Duplicate,
		Corrupt: f.Corrupt, Reorder: f.Reorder}, func() { d.faults = f })
}

// Stall stops the device consuming either ring until Unstall: transmitted
// frames stay posted, arriving frames go to the backlog.
func (d *Device) Stall() { d.w.Stall() }

// Unstall resumes the device and works both rings.
func (d *Device) Unstall() { d.w.Unstall() }

// Flush delivers a frame held back for reordering, if any.
func (d *Device) Flush() { d.w.Flush() }

// SetLink sets VIRTIO_NET_S_LINK_UP and bumps the config generation.
func (d *Device) SetLink(up bool) {
	d.mu.Lock()
	if up {
		d.cfg[6] |= 1
	} else {
		d.cfg[6] &^= 1
	}
	d.cfgGen++
	d.mu.Unlock()
}

// Stats returns a snapshot of the counters.
func (d *Device) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stats
}

// Backlog returns the number of frames waiting for a receive buffer.
func (d *Device) Backlog() int { return d.w.Backlog() }

// Deliver hands the device one frame as if it arrived on the wire: faults
// apply, then it goes into a posted receive buffer or waits in the backlog.
// The frame is copied; the caller keeps it.
func (d *Device) Deliver(frame []byte) { d.w.Deliver(frame) }

// DeliverRaw is Deliver with the virtio-net header the test chooses, written
// as is but for num_buffers, which the model sets (and Faults.NumBuffers
// falsifies) with MRG_RXBUF. Frame faults should be off, and a buffer
// posted: the header goes with the next frame written.
func (d *Device) DeliverRaw(hdr, frame []byte) {
	d.mu.Lock()
	copy(d.rawHdr[:], hdr)
	d.raw = d.rawHdr[:]
	d.mu.Unlock()
	d.w.Deliver(frame)
}

// AttachTap makes the tap f the device's wire: a goroutine reads frames from
// f into the receive ring, transmitted frames are written to f. The device
// owns f from here; Close closes it.
func (d *Device) AttachTap(f *os.File) { d.w.AttachTap(f) }

// Close detaches and closes a tap attached with AttachTap or AttachTapVnet
// and waits for its reader to stop.
func (d *Device) Close() error {
	err := d.w.Close()
	if e := d.closeVnet(); err == nil {
		err = e
	}
	return err
}

// Read32 reads a register. A real device works its rings in the background;
// the model does its held-back work (completions waiting for the driver to
// catch up, frames waiting for buffers) when the driver reads Status, as a
// driver does periodically to look for DEVICE_NEEDS_RESET.
func (d *Device) Read32(off uint32) uint32 {
	if off == regStatus {
		d.background()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	switch off {
	case regMagic:
		return d.opt.Magic
	case regVersion:
		return d.opt.Version
	case regDeviceID:
		return d.opt.DeviceID
	case regVendorID:
		return 0x554d4551 // "QEMU", as QEMU reports
	case regDeviceFeatures:
		if d.devFeatSel > 1 {
			return 0
		}
		return uint32(d.opt.Features >> (32 * d.devFeatSel))
	case regQueueNumMax:
		if d.queueSel > 1 || d.opt.QueueNumMax < 0 {
			return 0
		}
		return uint32(d.opt.QueueNumMax)
	case regQueueReady:
		if d.queueSel > 1 {
			return 0
		}
		if d.q[d.queueSel].ready {
			return 1
		}
		return 0
	case regInterruptStat:
		return d.intStatus
	case regStatus:
		return d.status
	case regConfigGen:
		return d.cfgGen
	}
	if off >= regConfig && off+4 <= regConfig+uint32(len(d.cfg)) {
		return binary.LittleEndian.Uint32(d.cfg[off-regConfig:])
	}
	return 0
}

// cfgLE16 is where the le16 fields of struct virtio_net_config start
// (status, max_virtqueue_pairs, mtu; virtio 1.2 §5.1.4); before it is the
// u8 mac array.
const cfgLE16 = 6

// Read8 reads a byte of config space. A byte of a le16 field is counted as
// a device error: virtio 1.2 §4.2.2.2 has the driver read 16-bit fields
// with one aligned 16-bit access.
func (d *Device) Read8(off uint32) uint8 {
	d.mu.Lock()
	defer d.mu.Unlock()
	if off >= regConfig && off < regConfig+uint32(len(d.cfg)) {
		if off-regConfig >= cfgLE16 {
			d.stats.DeviceErrors++
		}
		return d.cfg[off-regConfig]
	}
	return 0
}

// Read16 reads a le16 field of config space. A misaligned read, or one
// into the u8 mac array, is counted as a device error (§4.2.2.2).
func (d *Device) Read16(off uint32) uint16 {
	d.mu.Lock()
	defer d.mu.Unlock()
	if off >= regConfig && off+2 <= regConfig+uint32(len(d.cfg)) {
		o := off - regConfig
		if o%2 != 0 || o < cfgLE16 {
			d.stats.DeviceErrors++
		}
		return binary.LittleEndian.Uint16(d.cfg[o:])
	}
	return 0
}

// Write32 writes a register. A QueueNotify works the rings in the caller's
// goroutine.
func (d *Device) Write32(off, v uint32) {
	if off == regQueueNotify {
		d.notify(v)
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	q := &d.q[d.queueSel&1]
	qok := d.queueSel <= 1 && !q.ready
	switch off {
	case regDeviceFeatSel:
		d.devFeatSel = v
	case regDriverFeatSel:
		d.drvFeatSel = v
	case regDriverFeatures:
		if d.drvFeatSel <= 1 && d.status&statusFeaturesOK == 0 {
			sh := 32 * d.drvFeatSel
			d.drvFeatures = d.drvFeatures&^(0xffffffff<<sh) | uint64(v)<<sh
		}
	case regQueueSel:
		d.queueSel = v
	case regQueueNum:
		if qok {
			q.num = v
		}
	case regQueueDescLow:
		if qok {
			q.descA = q.descA&^0xffffffff | uint64(v)
		}
	case regQueueDescHigh:
		if qok {
			q.descA = q.descA&0xffffffff | uint64(v)<<32
		}
	case regQueueDrvLow:
		if qok {
			q.availA = q.availA&^0xffffffff | uint64(v)
		}
	case regQueueDrvHigh:
		if qok {
			q.availA = q.availA&0xffffffff | uint64(v)<<32
		}
	case regQueueDevLow:
		if qok {
			q.usedA = q.usedA&^0xffffffff | uint64(v)
		}
	case regQueueDevHigh:
		if qok {
			q.usedA = q.usedA&0xffffffff | uint64(v)<<32
		}
	case regQueueReady:
		if d.queueSel <= 1 {
			if v&1 == 0 {
				q.ready = false
			} else if !q.ready {
				d.setupLocked(q)
			}
		}
	case regInterruptACK:
		d.intStatus &^= v
	case regStatus:
		d.writeStatusLocked(v)
	}
}

func (d *Device) writeStatusLocked(v uint32) {
	if v == 0 {
		// Reset (§2.1.2, §4.2.3.1): forget everything negotiated.
		if d.status&statusDriverOK != 0 {
			d.stats.Resets++
		}
		d.status = 0
		d.drvFeatures = 0
		d.intStatus = 0
		d.q = [2]vq{}
		d.tx.active = false
		d.w.ResetLocked()
		d.setTapOffloadLocked(0)
		return
	}
	if v&statusFeaturesOK != 0 && d.status&statusFeaturesOK == 0 {
		// Accept only a subset of what was offered that includes
		// VERSION_1 (§3.1.1 step 5, §6.1).
		if d.drvFeatures&^d.opt.Features != 0 || d.drvFeatures&featureVersion1 == 0 {
			v &^= statusFeaturesOK
		} else {
			d.setTapOffloadLocked(tapOffloads(d.drvFeatures))
		}
	}
	// DEVICE_NEEDS_RESET is the device's to set; only a reset clears it.
	d.status = v | d.status&statusNeedsReset
}

// setupLocked resolves a queue's rings when the driver sets QueueReady.
func (d *Device) setupLocked(q *vq) {
	n := q.num
	if n == 0 || n > uint32(d.opt.QueueNumMax) || n&(n-1) != 0 {
		d.deviceErrorLocked()
		return
	}
	var ok1, ok2, ok3 bool
	q.desc, ok1 = d.resolve(q.descA, vring.DescTableSize(int(n)), 16)
	q.avail, ok2 = d.resolve(q.availA, vring.AvailSize(int(n)), 4)
	q.used, ok3 = d.resolve(q.usedA, vring.UsedSize(int(n)), 4)
	if !ok1 || !ok2 || !ok3 {
		d.deviceErrorLocked()
		return
	}
	q.mask = uint16(n - 1)
	q.doneAt = make([]uint64, n)
	q.bad = make([]uint64, 0, n)
	q.eventIdx = d.eventIdx()
	q.segs = make([]seg, 0, n)
	q.heads = make([]mrgHead, 0, n)
	q.ready = true
}

// deviceErrorLocked counts a driver error the device cannot work with and
// sets DEVICE_NEEDS_RESET (§2.1.2).
func (d *Device) deviceErrorLocked() {
	d.stats.DeviceErrors++
	if d.status&statusNeedsReset == 0 {
		d.stats.NeedsResets++
	}
	d.status |= statusNeedsReset
}

// resolve maps a driver address to a slice of mem, or reports false when
// [addr, addr+n) is not inside mem or addr is misaligned. (The 4-byte
// alignment the model asks of the avail ring is stricter than §2.7's 2: its
// index word is read with 32-bit atomics.)
func (d *Device) resolve(addr uint64, n int, align uint64) ([]byte, bool) {
	if addr < d.base || addr%align != 0 {
		return nil, false
	}
	off := addr - d.base
	if off > uint64(len(d.mem)) || uint64(n) > uint64(len(d.mem))-off {
		return nil, false
	}
	return d.mem[off : off+uint64(n) : off+uint64(n)], true
}

// offset is resolve for a data buffer, as an offset into mem.
func (d *Device) offset(addr uint64, n uint32) (int, bool) {
	if addr < d.base {
		return 0, false
	}
	off := addr - d.base
	if off > uint64(len(d.mem)) || uint64(n) > uint64(len(d.mem))-off {
		return 0, false
	}
	return int(off), true
}

func (d *Device) live(q *vq) bool {
	return q.ready && !q.broken && d.status&statusDriverOK != 0 && d.status&statusNeedsReset == 0
}

func (d *Device) eventIdx() bool { return d.drvFeatures&featureEventIdx != 0 }

// background works both rings as a notify would, without counting one,
// when work is waiting: frames in the backlog or transmit descriptors
// posted and not taken.
func (d *Device) background() {
	d.mu.Lock()
	rx, tx := &d.q[queueRx], &d.q[queueTx]
	if !(d.live(rx) && d.w.Backlogged() > 0) && !(d.live(tx) && tx.deviceHeld() > 0) {
		d.mu.Unlock()
		return
	}
	d.drainLocked()
	irq := d.w.TakeIRQLocked()
	d.mu.Unlock()
	irq()
	d.w.Transmit()
}

// RaiseNeedsReset sets DEVICE_NEEDS_RESET (virtio 1.2 §2.1.2) as a device
// that hit an internal error does, and sends a configuration change
// notification (InterruptStatus bit 1, §4.2.2). The device works neither
// queue until the driver resets it.
func (d *Device) RaiseNeedsReset() {
	d.mu.Lock()
	d.stats.NeedsResets++
	d.status |= statusNeedsReset
	d.intStatus |= interruptConfig
	d.w.RaiseLocked()
	irq := d.w.TakeIRQLocked()
	d.mu.Unlock()
	irq()
}

// ForgeUsed moves queue's published used index delta entries beyond what
// the device wrote, without writing entries: the driver sees stale ring
// slots under it. With sticky the offset stays on every later publication
// too (a wedged ring that only a reset clears); without it the next
// completion publishes the true index again.
func (d *Device) ForgeUsed(queue int, delta uint16, sticky bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	q := &d.q[queue&1]
	if !q.ready {
		return
	}
	d.stats.Forged++
	if sticky {
		q.forge = delta
	}
	vring.Store16(q.used, vring.UsedIdx, q.pub+delta)
}

// notify handles a QueueNotify write.
func (d *Device) notify(v uint32) {
	d.mu.Lock()
	if v <= 1 {
		d.stats.Notifies[v]++
	}
	d.drainLocked()
	irq := d.w.TakeIRQLocked()
	d.mu.Unlock()
	irq()
	// Any notify also retries transmit work held back earlier.
	d.w.Transmit()
}

// chain walks the descriptor chain at head into q.segs, checking that
// every descriptor is in range, in memory and of the wanted direction.
// It returns the total length, or ok false (counted) for a bad chain.
func (d *Device) chain(q *vq, head uint16, write bool) (total int, ok bool) {
	q.segs = q.segs[:0]
	id := head
	for i := uint32(0); i < q.num; i++ {
		if uint32(id) >= q.num {
			return 0, false
		}
		o := int(id) * vring.DescSize
		desc := q.desc[o : o+vring.DescSize]
		addr := binary.LittleEndian.Uint64(desc[vring.DescAddr:])
		n := binary.LittleEndian.Uint32(desc[vring.DescLen:])
		flags := binary.LittleEndian.Uint16(desc[vring.DescFlags:])
		if flags&vring.DescFIndirect != 0 || (flags&vring.DescFWrite != 0) != write {
			return 0, false
		}
		off, good := d.offset(addr, n)
		if !good {
			return 0, false
		}
		q.segs = append(q.segs, seg{off, int(n)}) // cap num: no growth
		total += int(n)
		if flags&vring.DescFNext == 0 {
			return total, true
		}
		id = binary.LittleEndian.Uint16(desc[vring.DescNext:])
	}
	return 0, false // a loop
}

// pending returns how many avail entries wait, or -1 (counted, queue
// marked broken) when the driver's index is beyond the ring.
func (d *Device) pending(q *vq) int {
	n := vring.Load16(q.avail, vring.AvailIdx) - q.lastAvail
	if uint32(n) > q.num {
		q.broken = true
		d.deviceErrorLocked()
		return -1
	}
	return int(n)
}

// takeHead consumes the next avail entry and learns from it.
func (q *vq) takeHead() uint16 {
	s := vring.AvailSlot(q.lastAvail, q.mask)
	head := binary.LittleEndian.Uint16(q.avail[s:])
	q.learn(head)
	q.lastAvail++
	return head
}

// learn notes that the driver posted head again, so it has consumed the
// used entry that last completed head.
func (q *vq) learn(head uint16) {
	if uint32(head) >= q.num || q.doneAt[head] == 0 {
		return
	}
	if q.doneAt[head] > q.lb {
		q.lb = q.doneAt[head]
	}
	q.doneAt[head] = 0
	q.held--
}

// learnAhead learns from avail entries posted but not yet taken, each once.
func (q *vq) learnAhead(availIdx uint16) {
	pending := availIdx - q.lastAvail
	if uint32(pending) > q.num {
		return
	}
	if q.seen-q.lastAvail > pending {
		q.seen = q.lastAvail
	}
	for ; q.seen != availIdx; q.seen++ {
		s := vring.AvailSlot(q.seen, q.mask)
		q.learn(binary.LittleEndian.Uint16(q.avail[s:]))
	}
}

// learnUsedEvent learns the driver's consumption from used_event
// (VIRTIO_F_EVENT_IDX), which the tamanet driver sets to the next entry it
// will consume whenever it consumed some. The 16-bit value is taken as the
// latest count with those low bits; that is right as long as the driver
// rewrote it within the last 65536-num entries, which it does every poll.
func (q *vq) learnUsedEvent() {
	v := vring.Load16(q.avail, vring.UsedEvent(int(q.num)))
	c := q.entries - uint64(uint16(q.entries)-v)
	if c > q.lb && q.entries-c <= uint64(q.num) {
		q.lb = c
	}
}

// unconsumedBound returns an upper bound of the used entries the driver
// has not consumed yet: the held ids plus the injected entries not known
// consumed, or the entries after lb, whichever is smaller.
func (q *vq) unconsumedBound() int {
	q.learnAhead(vring.Load16(q.avail, vring.AvailIdx))
	if q.eventIdx && (len(q.bad) > 0 || q.entries-q.lb > uint64(q.held)) {
		q.learnUsedEvent()
	}
	n := 0
	for n < len(q.bad) && q.bad[n] <= q.lb {
		n++
	}
	if n > 0 {
		q.bad = q.bad[:copy(q.bad, q.bad[n:])]
	}
	if d := q.entries - q.lb; d < uint64(q.held+len(q.bad)) {
		return int(d)
	}
	return q.held + len(q.bad)
}

// deviceHeld returns how many descriptors the driver made available that
// the device has not taken (and so not completed) yet.
func (q *vq) deviceHeld() int {
	n := vring.Load16(q.avail, vring.AvailIdx) - q.lastAvail
	if uint32(n) > q.num {
		return 0
	}
	return int(n)
}

// canComplete reports whether the device may complete one more descriptor:
// the entry certainly fits the used ring, and the device still holds, after
// it, at least as many descriptors as injected entries may be unconsumed,
// so the driver never sees more pending entries than it has descriptors
// outstanding. Without injected entries it always may when a descriptor is
// pending (that descriptor is not among the held ones).
func (q *vq) canComplete() bool {
	return q.unconsumedBound()+1 <= int(q.num) && len(q.bad) <= q.deviceHeld()-1
}

// complete writes one used entry (slot first, index after).
func (d *Device) complete(q *vq, id uint32, n uint32) { d.completeN(q, id, n, true) }

// completeN is complete for one buffer of a packet: first is the one with
// the header. An injected bad length for a later buffer is 0 or too long,
// never hdrSize-1, which is a valid length there.
func (d *Device) completeN(q *vq, id uint32, n uint32, first bool) {
	f := &d.faults
	if f.BadLength > 0 && d.rng.Float64() < f.BadLength {
		d.stats.BadLengths++
		switch d.rng.IntN(3) {
		case 0:
			n = 0
		case 1:
			n = hdrSize - 1
			if !first {
				n = 0
			}
		default:
			n = 1 << 20
		}
	}
	d.putUsed(q, id, n)
	if uint32(id) < q.num {
		if q.doneAt[id] == 0 {
			q.held++
		}
		q.doneAt[id] = q.entries // 1 + position just written
	}
	// An injected entry must fit the same bound as a completion: one
	// more entry in the used ring, and no more injected ones than the
	// device still holds descriptors.
	if f.BadID > 0 && d.rng.Float64() < f.BadID && q.canComplete() {
		d.stats.BadIDs++
		d.putUsed(q, q.num+uint32(d.rng.IntN(1<<16)), 0)
		q.bad = append(q.bad, q.entries) // cap num, never grows: bounded by canComplete
	}
}

func (d *Device) putUsed(q *vq, id, n uint32) {
	s := vring.UsedSlot(q.usedIdx, q.mask)
	binary.LittleEndian.PutUint32(q.used[s+vring.UsedElemID:], id)
	binary.LittleEndian.PutUint32(q.used[s+vring.UsedElemLen:], n)
	q.usedIdx++
	q.entries++
}

// publish stores the used index and decides on an interrupt (§2.7.10).
func (d *Device) publish(q *vq) {
	old := q.pub
	if q.usedIdx == old {
		return
	}
	q.pub = q.usedIdx
	vring.Store16(q.used, vring.UsedIdx, q.usedIdx+q.forge)
	var need bool
	if d.eventIdx() {
		need = vring.NeedEvent(vring.Load16(q.avail, vring.UsedEvent(int(q.num))), q.usedIdx, old)
	} else {
		need = vring.Load16(q.avail, vring.AvailFlags)&vring.AvailFNoIntr == 0
	}
	if need {
		d.intStatus |= interruptUsed
		d.w.RaiseLocked()
	}
}

// wantNotify tells the driver whether the device needs a kick for new
// entries on q: with EVENT_IDX by avail_event = lastAvail (kick on the
// next one) or by leaving it behind (no kick), else by VIRTQ_USED_F_NO_NOTIFY.
func (d *Device) wantNotify(q *vq, want bool) {
	if d.eventIdx() {
		if want {
			vring.Store16(q.used, vring.AvailEvent(int(q.num)), q.lastAvail)
		}
		return
	}
	var fl uint16
	if !want {
		fl = vring.UsedFNoNotify
	}
	vring.Store16(q.used, vring.UsedFlags, fl)
}
