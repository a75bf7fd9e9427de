// Package virtio drives a virtio-net device over virtio-mmio version 2
// (virtio 1.2 §4.2) with split virtqueues (§2.7) that it lays out and runs
// itself in DMA memory taken from an alloc.Arena.
//
// The Driver implements nic.Device. Receive buffers are pool buffers posted
// on the rx ring; a completed one goes up as that same buffer with its body
// set to the frame (no copy). Transmit buffers carry the frame as their body;
// the driver prepends the 12-byte virtio-net header in their headroom and
// posts them as one descriptor. Notifications are batched (RxKick, TxKick)
// and suppressed with VIRTIO_F_EVENT_IDX when the device offers it.
//
// The Driver also implements nic.Offloader. It negotiates VIRTIO_NET_F_CSUM
// and HOST_TSO4/6 when offered (each optional, all refused with
// Config.NoOffloads); TransmitPacket posts a packet of several pool buffers
// as one descriptor chain (VIRTQ_DESC_F_NEXT, §2.7.6) behind a header that
// asks for the checksum (NEEDS_CSUM) and segmentation (gso_type) the caller
// wants, so a 64 KiB TCP segment crosses the ring once.
// Receive offloads (GUEST_CSUM, MRG_RXBUF, GUEST_TSO4/6, GUEST_ECN) are
// negotiated when offered, unless Config.NoOffloads: Driver is a
// nic.Offloader, and ReceivePacket returns packets that span buffers with
// what the device said of their checksums (rx.go).
//
// Every value the device writes into the used rings (index, id, length) is
// checked; a bad one is counted under its nic.Cause and dropped, never a
// panic, and no buffer is lost. A completion is accepted only for a
// descriptor the driver posted and has not taken back, published after its
// post, and never more of them than descriptors are outstanding: a buffer
// is never handed out twice, nor while the device may still write it.
//
// Driver implements nic.Maintainer: Maintain resets the device and rebuilds
// both rings when the device sets DEVICE_NEEDS_RESET, a ring falls out of
// step, or the transmit ring stalls; every buffer the device held goes
// back to the pool, and the recovery is counted in nic.Stats.
//
// Register access goes through Regs, so the same code runs on tamago over
// MMIO (internal/mmio) and in host tests against virtiotest's device model.
package virtio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/tamanet/tamanet/alloc"
	"github.com/tamanet/tamanet/nic"
	"github.com/tamanet/tamanet/nic/virtio/internal/vring"
)

// DefaultRing is the default ring size in slots.
const DefaultRing = 256

// Config sets up a Driver. Zero values take defaults.
type Config struct {
	// RxRing and TxRing are the queue sizes, powers of two; the device's
	// QueueNumMax caps them. Default DefaultRing.
	RxRing, TxRing int
	// MAC is the station address, and wins over the device's: the
	// address a user configures is the one the firmware sends from,
	// whatever the device was started with. When zero, the device's
	// (VIRTIO_NET_F_MAC) is used, or 02:00:00:00:00:01 (locally
	// administered) when it offers none. Without VIRTIO_NET_F_CTRL_RX,
	// which the driver does not negotiate, the device does not filter
	// by address (receive filtering, virtio 1.2 §5.1.6.5.1), so any
	// address receives.
	MAC [6]byte
	// NoEventIdx refuses VIRTIO_F_EVENT_IDX even when offered (tests).
	NoEventIdx bool
	// NoOffloads refuses every offload feature (FeaturesOffload: CSUM,
	// GUEST_CSUM, HOST/GUEST_TSO4/6, ECN, MRG_RXBUF) even when offered:
	// for A/B runs and for a backend whose offloads are broken.
	NoOffloads bool
}

// Errors returned by New.
var (
	ErrMagic    = errors.New("virtio: bad magic value (not a virtio-mmio device)")
	ErrVersion  = errors.New("virtio: not a virtio-mmio version 2 device")
	ErrDevice   = errors.New("virtio: not a network device")
	ErrFeatures = errors.New("virtio: feature negotiation failed")
	ErrQueue    = errors.New("virtio: queue unavailable")
	ErrConfig   = errors.New("virtio: bad configuration")
)

// Wanted is the feature set the driver negotiates when offered, each bit
// optional but VERSION_1, the receive offloads (RxOffloads) included.
// HOST_ECN is not asked for: gVisor never hands down an ECN-marked GSO
// segment, so there is nothing for it to carry.
const Wanted = FeatureVersion1 | FeatureMAC | FeatureStatus | FeatureMTU | FeatureEventIdx |
	FeatureCSUM | FeatureHostTSO4 | FeatureHostTSO6 | RxOffloads

// MaxTxPacket is the longest packet TransmitPacket takes with TSO: an
// Ethernet header and a 64 KiB IP packet, as gVisor's GSO builds them.
const MaxTxPacket = 14 + 1<<16

// RxOffloads are the receive offloads the driver negotiates when offered,
// each optional: GUEST_CSUM (packets arrive vouched for, DATA_VALID, or with
// a partial checksum, NEEDS_CSUM), MRG_RXBUF (a packet spans several
// buffers) and, only with both of those (deps), GUEST_TSO4/6 and GUEST_ECN.
const RxOffloads = FeatureGuestCSUM | FeatureMrgRxBuf | FeatureGuestTSO4 | FeatureGuestTSO6 | FeatureGuestECN

// deps drops from f every feature whose prerequisites f lacks (virtio 1.2
// §5.1.3.1: HOST_TSO4/6 need CSUM, HOST_ECN a HOST_TSO, GUEST_TSO4/6 need
// GUEST_CSUM, GUEST_ECN a GUEST_TSO). GUEST_TSO
// is also dropped without MRG_RXBUF: joined segments would then need
// 65562-byte buffers (§5.1.6.3.1), and the pool's are 2 KiB.
func deps(f uint64) uint64 {
	if f&FeatureCSUM == 0 {
		f &^= FeatureHostTSO4 | FeatureHostTSO6
	}
	if f&(FeatureHostTSO4|FeatureHostTSO6) == 0 {
		f &^= FeatureHostECN
	}
	if f&FeatureGuestCSUM == 0 || f&FeatureMrgRxBuf == 0 {
		f &^= FeatureGuestTSO4 | FeatureGuestTSO6
	}
	if f&(FeatureGuestTSO4|FeatureGuestTSO6) == 0 {
		f &^= FeatureGuestECN
	}
	return f
}

// queue is one split virtqueue. It is owned by one goroutine at a time (the
// poll loop for rx, the transmitting goroutine for tx).
type queue struct {
	index uint32 // virtqueue number for QueueSel / QueueNotify
	num   int
	mask  uint16

	desc  []byte // descriptor table
	avail []byte // driver area
	used  []byte // device area

	descAddr, availAddr, usedAddr uintptr

	// bufs[id] is the pool buffer descriptor id points at while the
	// device owns it (posted, not yet completed); nil when id is free.
	bufs []*alloc.Buffer
	// blen[id] is the length posted in descriptor id, the upper bound
	// for the used length the device may report.
	blen []uint32
	// free is a stack of free descriptor ids, nfree of them.
	free  []uint16
	nfree int
	// Descriptor chains (transmit): more[head] is how many descriptors
	// follow head in its chain, link[id] the one after id; inner[id] is
	// set while id is posted as a descriptor that is not a chain's head,
	// ninner of them. Only a head completes; each descriptor of a chain
	// holds its own buffer in bufs.
	more   []uint16
	link   []uint16
	inner  []bool
	ninner int
	// chainLen is how many descriptors (and buffers) the last completion
	// next returned took back.
	chainLen int
	// postedAt[id] is postMark when id was last posted: one past the
	// position (in consumed) the used index had reached then. An entry
	// consumed with consumed still below it was published before the
	// post and cannot complete it. It is 0 while id has not been posted
	// since the ring was laid out, so a used entry for a free id is a
	// Duplicate (posted before, taken back) when it is set, Stale when not.
	postedAt []uint64
	consumed uint64 // used entries consumed, ever (see lastUsed)

	availIdx   uint16 // next avail index to publish (shadow of avail.idx)
	kickedIdx  uint16 // avail index at the last notify decision
	usedEvOff  int    // offset of used_event in avail
	usedEv     uint16 // last value written to used_event (armInterrupt)
	availEvOff int    // offset of avail_event in used
	badIndex   bool   // the device's used idx is currently out of range
	insane     bool   // Maintain saw the used idx out of range last time
	outOfStep  bool   // an entry older than its descriptor's post was seen
	// stallIdx and stalls watch for a device that stopped completing:
	// the used index at the last Maintain, and for how many calls in a
	// row it has not moved while descriptors were outstanding and every
	// completion was taken.
	stallIdx uint16
	stalls   int
}

// Driver is a virtio-net driver. It implements nic.Device.
type Driver struct {
	regs     Regs
	pool     *alloc.Pool
	info     nic.Info
	features uint64
	eventIdx bool

	rx, tx   queue
	rxc, txc nic.RingCounters
	rxOff    int // offset in a pool buffer where rx data (header) starts
	off      nic.Offloads
	mrg      bool // MRG_RXBUF: num_buffers is meaningful (§5.1.6.4)
	// one holds the single buffer Receive takes through ReceivePacket
	// when MRG_RXBUF is on; multi is its scratch for the rest.
	one   [1]*alloc.Buffer
	multi []*alloc.Buffer

	resets atomic.Uint64 // recoveries (Maintain)
	reason atomic.Uint32 // resetReason of the latest one
	// down is set while a recovery failed and the device is not
	// running; LinkUp reads it from any goroutine.
	down atomic.Bool
}

var (
	_ nic.Device     = (*Driver)(nil)
	_ nic.Maintainer = (*Driver)(nil)
	_ nic.Offloader  = (*Driver)(nil)
)

// Why Maintain reset the device, as shown in nic.Stats.ResetReason.
const (
	resetNone = iota
	resetNeedsReset
	resetRxIndex
	resetTxIndex
	resetRetry
	resetTxStalled
	numResetReasons
)

// txStallLimit is how many Maintain calls in a row (at the runner's 250 ms,
// 5 s) the transmit ring may hold frames the device completes none of before
// the driver gives up on it. A device that broke without saying so (QEMU
// marks a device broken on a driver error, raising only a configuration
// interrupt: no DEVICE_NEEDS_RESET reaches the Status register) stalls
// transmit for good; a working one completes a transmit in microseconds.
const txStallLimit = 20

var resetReasons = [numResetReasons]string{
	resetNeedsReset: "device_needs_reset",
	resetRxIndex:    "rx_used_index",
	resetTxIndex:    "tx_used_index",
	resetRetry:      "retry_after_failed_reset",
	resetTxStalled:  "tx_stalled",
}

// New initialises the device behind regs in the order of virtio 1.2 §3.1.1,
// lays out both queues in arena memory and fills the rx ring from pool.
func New(regs Regs, arena *alloc.Arena, pool *alloc.Pool, cfg Config) (*Driver, error) {
	if cfg.RxRing == 0 {
		cfg.RxRing = DefaultRing
	}
	if cfg.TxRing == 0 {
		cfg.TxRing = DefaultRing
	}
	for _, n := range [2]int{cfg.RxRing, cfg.TxRing} {
		if n < 2 || n > vring.MaxSize || n&(n-1) != 0 {
			return nil, fmt.Errorf("%w: ring size %d is not a power of two in [2, %d]", ErrConfig, n, vring.MaxSize)
		}
	}
	d := &Driver{regs: regs, pool: pool}
	d.rxOff = pool.DefaultHeadroom()
	if pool.BufferSize()-d.rxOff < HeaderSize+alloc.MaxFrame {
		return nil, fmt.Errorf("%w: pool buffers of %d bytes with %d headroom cannot hold header + %d-byte frame",
			ErrConfig, pool.BufferSize(), d.rxOff, alloc.MaxFrame)
	}

	if m := regs.Read32(regMagic); m != Magic {
		return nil, fmt.Errorf("%w: %#x", ErrMagic, m)
	}
	if v := regs.Read32(regVersion); v != Version {
		return nil, fmt.Errorf("%w: version %d", ErrVersion, v)
	}
	if id := regs.Read32(regDeviceID); id != DeviceIDNet {
		return nil, fmt.Errorf("%w: device id %d", ErrDevice, id)
	}

	want := uint64(Wanted)
	if cfg.NoEventIdx {
		want &^= FeatureEventIdx
	}
	if cfg.NoOffloads {
		want &^= FeaturesOffload
	}
	var err error
	if d.features, err = d.negotiate(want, false); err != nil {
		return nil, err
	}
	d.eventIdx = d.features&FeatureEventIdx != 0

	// Step 7: device-specific setup: queues, MAC, MTU.
	if err := d.setupQueue(&d.rx, queueRx, cfg.RxRing, arena); err != nil {
		d.fail()
		return nil, err
	}
	if err := d.setupQueue(&d.tx, queueTx, cfg.TxRing, arena); err != nil {
		d.fail()
		return nil, err
	}
	d.info = nic.Info{
		Name:     "virtio-net",
		MAC:      cfg.MAC,
		MTU:      1500,
		Headroom: HeaderSize,
		RxRing:   d.rx.num,
		TxRing:   d.tx.num,
	}
	switch {
	case cfg.MAC != [6]byte{}:
		// The caller's, as set above.
	case d.features&FeatureMAC != 0:
		d.readConfig(func() {
			for i := range d.info.MAC {
				d.info.MAC[i] = regs.Read8(regConfig + cfgMAC + uint32(i))
			}
		})
	default:
		d.info.MAC = [6]byte{0x02, 0, 0, 0, 0, 1}
	}
	// The address is the source of every frame sent: a group or all-zero
	// one (IEEE 802-2014 §8.2), from the device or the caller, is refused.
	if d.info.MAC[0]&1 != 0 || d.info.MAC == ([6]byte{}) {
		d.fail()
		return nil, fmt.Errorf("%w: MAC %x is not a unicast address", ErrConfig, d.info.MAC)
	}
	if d.features&FeatureMTU != 0 {
		var mtu int
		d.readConfig(func() { mtu = int(d.regs.Read16(regConfig + cfgMTU)) })
		// §5.1.4.1: the device's MTU is at least 68; the buffers
		// bound it from above.
		if mtu >= 68 && mtu < d.info.MTU {
			d.info.MTU = mtu
		}
	}
	// Never more than alloc.MaxFrame: the MTU is at most 1500.
	d.info.MaxFrame = d.info.MTU + nic.FrameOverhead
	if err := d.setOffloads(); err != nil {
		d.fail()
		return nil, err
	}

	// Post rx buffers before DRIVER_OK so the device can receive at once
	// (§3.1.1 allows buffers to be made available before step 8).
	d.Refill()

	// Step 8.
	regs.Write32(regStatus, StatusAcknowledge|StatusDriver|StatusFeaturesOK|StatusDriverOK)
	if s := regs.Read32(regStatus); s&StatusNeedsReset != 0 {
		d.Close()
		return nil, fmt.Errorf("%w: device needs reset after DRIVER_OK (status %#x)", ErrConfig, s)
	}
	d.RxKick()
	return d, nil
}

// negotiate runs virtio 1.2 §3.1.1 steps 1-6: reset, ACKNOWLEDGE, DRIVER,
// the features (offered & want, which must include VERSION_1), FEATURES_OK
// and its re-read. With again (a recovery) the device must still offer every
// feature negotiated before, and the same set is written; the caller has
// reset the device already. It returns the negotiated features.
func (d *Driver) negotiate(want uint64, again bool) (uint64, error) {
	regs := d.regs
	if !again {
		if err := d.reset(resetPolls); err != nil {
			return 0, err
		}
	}
	regs.Write32(regStatus, StatusAcknowledge)
	regs.Write32(regStatus, StatusAcknowledge|StatusDriver)

	regs.Write32(regDeviceFeatSel, 0)
	offered := uint64(regs.Read32(regDeviceFeatures))
	regs.Write32(regDeviceFeatSel, 1)
	offered |= uint64(regs.Read32(regDeviceFeatures)) << 32
	if offered&FeatureVersion1 == 0 {
		d.fail()
		return 0, fmt.Errorf("%w: device does not offer VIRTIO_F_VERSION_1 (features %#x)", ErrFeatures, offered)
	}
	if again && offered&want != want {
		d.fail()
		return 0, fmt.Errorf("%w: device no longer offers %#x (features %#x)", ErrFeatures, want&^offered, offered)
	}
	features := deps(offered & want)
	regs.Write32(regDriverFeatSel, 0)
	regs.Write32(regDriverFeatures, uint32(features))
	regs.Write32(regDriverFeatSel, 1)
	regs.Write32(regDriverFeatures, uint32(features>>32))
	regs.Write32(regStatus, StatusAcknowledge|StatusDriver|StatusFeaturesOK)
	if regs.Read32(regStatus)&StatusFeaturesOK == 0 {
		d.fail()
		return 0, fmt.Errorf("%w: device refused features %#x", ErrFeatures, features)
	}
	return features, nil
}

// How many Status reads reset waits for the device to finish a reset
// (§4.2.3.1). At initialisation and Close a slow device gets long; from
// Maintain, which runs on the poll goroutine, a reset that does not finish
// at once is looked at again on the next call instead of stalling the loop.
const (
	resetPolls         = 1000000
	maintainResetPolls = 1000
)

// reset writes 0 to Status and reads it up to polls times until it reads
// back 0 (§4.2.3.1).
func (d *Driver) reset(polls int) error {
	d.regs.Write32(regStatus, 0)
	for i := 0; i < polls; i++ {
		if d.regs.Read32(regStatus) == 0 {
			return nil
		}
	}
	return fmt.Errorf("%w: device did not reset", ErrConfig)
}

func (d *Driver) fail() {
	d.regs.Write32(regStatus, d.regs.Read32(regStatus)|StatusFailed)
}

// readConfig runs read until ConfigGeneration is the same before and after
// (§4.2.2, §2.5.1), so multi-byte fields are read consistently.
func (d *Driver) readConfig(read func()) {
	for i := 0; i < 100; i++ {
		g := d.regs.Read32(regConfigGen)
		read()
		if d.regs.Read32(regConfigGen) == g {
			return
		}
	}
}

// setupQueue sizes queue index against the device's QueueNumMax, lays its
// rings out in arena memory and hands them to the device.
func (d *Driver) setupQueue(q *queue, index uint32, num int, arena *alloc.Arena) error {
	r := d.regs
	r.Write32(regQueueSel, index)
	max := int(r.Read32(regQueueNumMax))
	if max == 0 {
		return fmt.Errorf("%w: queue %d not available (QueueNumMax 0)", ErrQueue, index)
	}
	for num > max {
		num >>= 1
	}
	if num < 2 {
		return fmt.Errorf("%w: queue %d QueueNumMax %d too small", ErrQueue, index, max)
	}
	var err error
	if q.desc, q.descAddr, err = arena.Alloc(vring.DescTableSize(num), 64); err != nil {
		return err
	}
	if q.avail, q.availAddr, err = arena.Alloc(vring.AvailSize(num), 64); err != nil {
		return err
	}
	if q.used, q.usedAddr, err = arena.Alloc(vring.UsedSize(num), 64); err != nil {
		return err
	}
	q.index = index
	q.num = num
	q.mask = uint16(num - 1)
	q.bufs = make([]*alloc.Buffer, num)
	q.blen = make([]uint32, num)
	q.postedAt = make([]uint64, num)
	q.free = make([]uint16, num)
	q.more = make([]uint16, num)
	q.link = make([]uint16, num)
	q.inner = make([]bool, num)
	q.usedEvOff = vring.UsedEvent(num)
	q.availEvOff = vring.AvailEvent(num)
	q.clear()
	return d.program(q)
}

// clear puts an empty queue in its initial state: every id free, indices
// 0, the ring memory zeroed and every used entry poisoned (usedPoison). It
// must not hold a buffer.
func (q *queue) clear() {
	for i := range q.free {
		q.free[i] = uint16(q.num - 1 - i) // pop order 0, 1, 2, ...
	}
	q.nfree = q.num
	clear(q.postedAt)
	clear(q.more)
	clear(q.inner)
	q.ninner = 0
	q.consumed = 0
	q.availIdx, q.kickedIdx, q.usedEv = 0, 0, 0 // avail is zeroed below
	q.badIndex, q.insane, q.outOfStep = false, false, false
	q.stallIdx, q.stalls = 0, 0
	clear(q.desc)
	clear(q.avail)
	clear(q.used)
	for i := 0; i < q.num; i++ {
		s := vring.UsedSlot(uint16(i), q.mask)
		binary.LittleEndian.PutUint32(q.used[s+vring.UsedElemID:], usedPoison)
	}
}

// program hands q's rings to the device and enables the queue (§4.2.3.2).
func (d *Driver) program(q *queue) error {
	r := d.regs
	r.Write32(regQueueSel, q.index)
	if r.Read32(regQueueReady) != 0 {
		return fmt.Errorf("%w: queue %d already ready after reset", ErrQueue, q.index)
	}
	if max := r.Read32(regQueueNumMax); max < uint32(q.num) {
		return fmt.Errorf("%w: queue %d QueueNumMax %d below the ring's %d", ErrQueue, q.index, max, q.num)
	}
	r.Write32(regQueueNum, uint32(q.num))
	r.Write32(regQueueDescLow, uint32(q.descAddr))
	r.Write32(regQueueDescHigh, uint32(uint64(q.descAddr)>>32))
	r.Write32(regQueueDrvLow, uint32(q.availAddr))
	r.Write32(regQueueDrvHigh, uint32(uint64(q.availAddr)>>32))
	r.Write32(regQueueDevLow, uint32(q.usedAddr))
	r.Write32(regQueueDevHigh, uint32(uint64(q.usedAddr)>>32))
	r.Write32(regQueueReady, 1)
	if r.Read32(regQueueReady) != 1 || r.Read32(regStatus)&StatusNeedsReset != 0 {
		return fmt.Errorf("%w: device refused queue %d", ErrQueue, q.index)
	}
	return nil
}

// release returns every buffer posted on q, chains included, to the pool.
// Only after a reset: the device then owns nothing.
func (q *queue) release() {
	for id, b := range q.bufs {
		if b != nil {
			q.bufs[id] = nil
			b.Free()
		}
	}
	clear(q.more)
	clear(q.inner)
	q.ninner = 0
}

// Close resets the device, which then no longer touches the rings, and
// returns every buffer still posted on either ring to the pool. A device
// that does not finish its reset may still write into them, so they are
// then left out of the pool, as restart does. The driver must not be used
// afterwards.
func (d *Driver) Close() {
	if d.reset(resetPolls) != nil {
		return
	}
	d.rx.release()
	d.tx.release()
}

// Features returns the negotiated feature bits.
func (d *Driver) Features() uint64 { return d.features }

// Info returns the device's fixed properties.
func (d *Driver) Info() nic.Info { return d.info }

// Pool returns the pool the driver's buffers come from.
func (d *Driver) Pool() *alloc.Pool { return d.pool }

// LinkUp reports VIRTIO_NET_S_LINK_UP from config space; without
// VIRTIO_NET_F_STATUS the link is always up (§5.1.4).
func (d *Driver) LinkUp() bool {
	if d.down.Load() {
		return false
	}
	if d.features&FeatureStatus == 0 {
		return true
	}
	// One 16-bit read of the le16 field (§4.2.2.2: natural width).
	return d.regs.Read16(regConfig+cfgStatus)&NetStatusLinkUp != 0
}

// Stats fills s with a snapshot of the counters.
func (d *Driver) Stats(s *nic.Stats) {
	s.Name = d.info.Name
	s.Link = d.LinkUp()
	d.rxc.Snapshot(&s.Rx)
	d.txc.Snapshot(&s.Tx)
	s.Resets = d.resets.Load()
	s.ResetReason = resetReasons[d.reason.Load()]
}

// post writes descriptor id for a buffer region and publishes it in the next
// avail slot, without storing avail.idx (the caller does, once per batch).
// Order (§2.7.13): descriptor, then ring slot, then (later) the index.
func (q *queue) post(id uint16, addr uintptr, n uint32, flags uint16) {
	o := int(id) * vring.DescSize
	desc := q.desc[o : o+vring.DescSize : o+vring.DescSize]
	binary.LittleEndian.PutUint64(desc[vring.DescAddr:], uint64(addr))
	binary.LittleEndian.PutUint32(desc[vring.DescLen:], n)
	binary.LittleEndian.PutUint16(desc[vring.DescFlags:], flags)
	binary.LittleEndian.PutUint16(desc[vring.DescNext:], 0)
	s := vring.AvailSlot(q.availIdx, q.mask)
	binary.LittleEndian.PutUint16(q.avail[s:s+2], id)
	q.availIdx++
}

// publish makes every posted slot visible to the device. The atomic store
// orders the descriptor and slot writes before it.
func (q *queue) publish() { vring.Store16(q.avail, vring.AvailIdx, q.availIdx) }

// usedPoison is the id the driver writes into every used entry it has
// consumed (and into all of them at setup). No descriptor has it (ids are
// below vring.MaxSize), and a device writes a real id into an entry before
// it publishes it, so an entry still holding it under the used index is one
// the device never wrote: a stale entry exposed by a forged index.
//
// The used ring is the device's to write (virtio 1.2 §2.7.8), so this is a
// departure, kept because the driver's bookkeeping alone cannot find such
// an entry: left from one lap of the ring ago, it names the descriptor the
// driver consumed from that slot then, and an in-order device that
// completes the same descriptor into the same slot one lap later (a full rx
// ring refilled in order does so on every lap) writes exactly the same id.
// outstanding, postedAt and the ids the driver remembers are alike in both
// cases; only a value no device writes tells them apart. The cost is one
// 4-byte store per completion into the entry just read; next says why it
// cannot race the device.
const usedPoison = 0xffffffff

// lastUsed returns the ring index of the next used entry to consume: the
// low half of consumed, the driver's count of every entry it consumed.
func (q *queue) lastUsed() uint16 { return uint16(q.consumed) }

// outstanding returns how many descriptor chains the driver has posted and
// not taken back: the most completions the device can have pending.
func (q *queue) outstanding() int { return q.num - q.nfree - q.ninner }

// next returns the next used entry, validated, or ok == false when none is
// pending. A bad entry is consumed, counted on c and reported with ok true
// and b == nil.
//
// An entry is accepted only for a descriptor the driver posted and has not
// taken back, so a buffer is never handed out twice nor while the device
// still holds it: a used index claiming more completions than descriptors
// are outstanding is not trusted at all (BadIndex, nothing consumed; see
// Maintain), an entry the device never wrote is Stale, a second one for a
// descriptor already taken back is a Duplicate, an id beyond the ring or
// inside a chain (not its head) BadID. A chain comes back whole: b is its
// head's buffer, and the buffers of the rest go back to the pool here
// (chainLen counts them all).
func (q *queue) next(c *nic.RingCounters) (b *alloc.Buffer, id uint16, n uint32, ok bool) {
	usedIdx := vring.Load16(q.used, vring.UsedIdx)
	pending := usedIdx - q.lastUsed()
	if pending == 0 {
		q.badIndex = false
		return nil, 0, 0, false
	}
	if int(pending) > q.outstanding() {
		// More completions than descriptors the device holds: the
		// index is forged or the ring is out of step, and any entry
		// under it may be one the device never wrote. Count the
		// episode once and consume nothing until it is sane again.
		if !q.badIndex {
			q.badIndex = true
			c.Drop(nic.BadIndex)
		}
		return nil, 0, 0, false
	}
	q.badIndex = false
	s := vring.UsedSlot(q.lastUsed(), q.mask)
	elem := q.used[s : s+vring.UsedElemSize : s+vring.UsedElemSize]
	rawID := binary.LittleEndian.Uint32(elem[vring.UsedElemID:])
	n = binary.LittleEndian.Uint32(elem[vring.UsedElemLen:])
	// The device writes this slot again num completions later. Without
	// a new post it cannot get there: it holds at most num-1
	// descriptors (this one is the driver's now), less the completions
	// already pending after this entry, and every post comes after this
	// store. So poisoning it now cannot race the device.
	binary.LittleEndian.PutUint32(elem[vring.UsedElemID:], usedPoison)
	q.consumed++ // one past this entry's position
	switch {
	case rawID == usedPoison:
		c.Drop(nic.Stale)
		return nil, 0, 0, true
	case rawID >= uint32(q.num):
		c.Drop(nic.BadID)
		return nil, 0, 0, true
	case q.bufs[rawID] == nil:
		// Not posted: a second completion of one taken back, else
		// a stale entry.
		if q.postedAt[rawID] != 0 {
			c.Drop(nic.Duplicate)
		} else {
			c.Drop(nic.Stale)
		}
		return nil, 0, 0, true
	case q.consumed < q.postedAt[rawID]:
		// Posted, but this entry was published before the post: an
		// old one. Its real completion may still come; if the index
		// moved back, it would land below postedAt too and the
		// buffer would stay on the ring, so the ring is out of step
		// and Maintain resets it.
		c.Drop(nic.Stale)
		q.outOfStep = true
		return nil, 0, 0, true
	case q.inner[rawID]:
		// Only a chain's head is completed (§2.7.8: id is the head
		// of the chain); the chain stays posted.
		c.Drop(nic.BadID)
		return nil, 0, 0, true
	}
	id = uint16(rawID)
	b = q.bufs[id]
	q.bufs[id] = nil
	q.free[q.nfree] = id
	q.nfree++
	q.chainLen = 1
	for k, cur := q.more[id], id; k > 0; k-- {
		cur = q.link[cur]
		nb := q.bufs[cur]
		q.bufs[cur] = nil
		q.inner[cur] = false
		q.ninner--
		q.free[q.nfree] = cur
		q.nfree++
		q.chainLen++
		nb.Free()
	}
	q.more[id] = 0
	return b, id, n, true
}

// postMark returns one past the position the used index has reached, for
// postedAt (never 0). Everything published so far counts, forged or not: a
// completion of a descriptor posted now can only be published after it.
func (q *queue) postMark() uint64 {
	return q.consumed + uint64(vring.Load16(q.used, vring.UsedIdx)-q.lastUsed()) + 1
}

// armInterrupt asks the device to signal the next completion: with
// EVENT_IDX used_event = lastUsed (§2.7.10); otherwise interrupts stay on.
// Receive and Refill both arm; the store is skipped when used_event already
// holds lastUsed, so an idle poll step writes nothing to the ring.
func (q *queue) armInterrupt(eventIdx bool) {
	if eventIdx && q.usedEv != q.lastUsed() {
		q.usedEv = q.lastUsed()
		vring.Store16(q.avail, q.usedEvOff, q.usedEv)
	}
}

// Receive returns the next received frame, or nil when none is pending. The
// caller owns the returned buffer; its body is the Ethernet frame.
//
// With receive offloads negotiated (GUEST_CSUM, MRG_RXBUF) Receive is
// ReceivePacket that gives up packets it cannot return as one frame: one
// spanning buffers is dropped as nic.Oversize, one with a partial checksum
// (NEEDS_CSUM) as nic.Malformed. Use ReceivePacket, or Config.NoOffloads.
func (d *Driver) Receive() *alloc.Buffer {
	if d.mrg || d.off.RxChecksum {
		return d.receiveOne()
	}
	q := &d.rx
	armed := false
	for {
		b, id, n, ok := q.next(&d.rxc)
		if !ok {
			if armed || q.badIndex {
				return nil
			}
			// Ask for an interrupt on the next completion, then look
			// once more: one may have landed before the request was
			// visible (§2.7.10 driver requirements).
			q.armInterrupt(d.eventIdx)
			armed = true
			continue
		}
		if b == nil {
			continue // bad id, counted
		}
		// The buffer is back in the driver's hands: it goes up, or
		// back to the pool, never both.
		if n < HeaderSize || n > q.blen[id] {
			d.rxc.Drop(nic.BadLength)
			b.Free()
			continue
		}
		frame := int(n) - HeaderSize
		if frame < 14 {
			d.rxc.Drop(nic.Runt)
			b.Free()
			continue
		}
		// Cannot fail: n <= posted length, which fits the buffer.
		b.SetBody(d.rxOff+HeaderSize, frame)
		d.rxc.Count(frame)
		return b
	}
}

// Refill posts a fresh pool buffer on every free rx descriptor and returns
// how many it posted. An empty pool is counted as nic.NoBuffer.
func (d *Driver) Refill() int {
	q := &d.rx
	if d.down.Load() {
		return 0
	}
	posted := 0
	var mark uint64
	if q.nfree > 0 {
		mark = q.postMark()
	}
	for q.nfree > 0 {
		b := d.pool.Get()
		if b == nil {
			d.rxc.Drop(nic.NoBuffer)
			break
		}
		q.nfree--
		id := q.free[q.nfree]
		n := uint32(b.Cap() - d.rxOff)
		q.bufs[id] = b // the device owns b from here until completion
		q.postedAt[id] = mark
		q.blen[id] = n
		q.post(id, b.Addr()+uintptr(d.rxOff), n, vring.DescFWrite)
		posted++
	}
	if posted > 0 {
		q.publish()
	}
	// Keep used_event current every poll step, not only when the ring
	// drains, so the device's next completion can wake an idle poller
	// and the device always knows roughly how far the driver got.
	q.armInterrupt(d.eventIdx)
	return posted
}

// kick notifies the device of slots published since the last kick, unless
// it said it does not need to know (EVENT_IDX avail_event, or
// VIRTQ_USED_F_NO_NOTIFY without it).
func (d *Driver) kick(q *queue, c *nic.RingCounters) {
	if q.availIdx == q.kickedIdx {
		return
	}
	old := q.kickedIdx
	q.kickedIdx = q.availIdx
	var need bool
	if d.eventIdx {
		// The atomic store of avail.idx happened before this atomic
		// load, the fence §2.7.10 asks for.
		need = vring.NeedEvent(vring.Load16(q.used, q.availEvOff), q.availIdx, old)
	} else {
		need = vring.Load16(q.used, vring.UsedFlags)&vring.UsedFNoNotify == 0
	}
	if need {
		d.regs.Write32(regQueueNotify, q.index)
		c.Kicks.Add(1)
	} else {
		c.Suppressed.Add(1)
	}
}

// RxKick notifies the device of rx buffers posted since the last kick.
func (d *Driver) RxKick() { d.kick(&d.rx, &d.rxc) }

// TxKick notifies the device of frames posted since the last kick.
func (d *Driver) TxKick() { d.kick(&d.tx, &d.txc) }

// Transmit posts b, whose body is one Ethernet frame, with the virtio-net
// header prepended in its headroom. On success the driver owns b until
// Reclaim; a refusal (nic.Refusal) leaves b with the caller, unchanged and
// uncounted.
func (d *Driver) Transmit(b *alloc.Buffer) error {
	q := &d.tx
	switch n := b.Len(); {
	case n < 14:
		return nic.ErrRunt
	case n > d.info.MaxFrame:
		return nic.ErrOversize
	case b.Headroom() < HeaderSize:
		return nic.ErrHeadroom
	case d.down.Load():
		return nic.ErrLinkDown
	case q.nfree == 0:
		d.txc.Full.Add(1) // back-pressure: the caller keeps b
		return nic.ErrRingFull
	}
	frame := b.Len()
	hdr, _ := b.Prepend(HeaderSize) // cannot fail: the headroom is there
	// No offloads negotiated: flags 0, GSO_NONE, num_buffers 0 (§5.1.6.2).
	clear(hdr)
	mark := q.postMark()
	q.nfree--
	id := q.free[q.nfree]
	q.postedAt[id] = mark
	q.bufs[id] = b // owned by the device until Reclaim
	q.blen[id] = uint32(b.Len())
	q.post(id, b.BodyAddr(), uint32(b.Len()), 0)
	q.publish()
	d.txc.Count(frame)
	return nil
}

// Reclaim returns completed transmit buffers to the pool and returns how many
// it freed.
func (d *Driver) Reclaim() int {
	q := &d.tx
	freed, start := 0, q.lastUsed()
	for {
		b, id, n, ok := q.next(&d.txc)
		if !ok {
			break
		}
		if b == nil {
			continue // bad id, counted
		}
		// The device writes nothing into a transmit buffer, so the
		// used length should be 0; a larger one than posted is
		// counted, and the buffer comes back all the same.
		if n > q.blen[id] {
			d.txc.Drop(nic.BadLength)
		}
		b.Free()
		freed += q.chainLen
	}
	if q.lastUsed() != start {
		q.armInterrupt(d.eventIdx)
	}
	return freed
}

// Maintain implements nic.Maintainer: the slow-path check for a device that
// needs a reset, and the recovery. It must be called from the goroutine that
// owns the receive ring, with the transmit side held, every few hundred
// milliseconds; a call that finds nothing wrong reads the Status register
// once and reads the used indices from memory.
//
// It resets the device and brings it back (virtio 1.2 §2.1.2: a driver that
// sees DEVICE_NEEDS_RESET resets the device; §3.1.1: initialisation again)
// when the device set DEVICE_NEEDS_RESET, or when a ring is out of step (a
// used index that claimed more completions than descriptors outstanding on
// two consecutive calls, or a used entry published before the post of the
// descriptor it names): a ring the driver cannot trust again without a
// reset; or when the transmit ring held frames for txStallLimit calls in a
// row without the device completing any (a device broken without a word).
// After the reset the device owns nothing, so every buffer posted on either
// ring goes back to the pool: frames in flight are lost, as on a link flap.
// The rings are rebuilt empty in the same memory with the same features;
// the caller refills and kicks the receive ring. It reports whether it reset the
// device; each recovery is counted in Stats (Resets, ResetReason).
func (d *Driver) Maintain() bool {
	reason := resetNone
	status := d.regs.Read32(regStatus)
	rxBad, txBad := d.rx.checkIndex(), d.tx.checkIndex()
	txStalled := d.tx.checkStall()
	switch {
	case d.down.Load():
		reason = resetRetry
	case status&StatusNeedsReset != 0:
		reason = resetNeedsReset
	case rxBad:
		reason = resetRxIndex
	case txBad:
		reason = resetTxIndex
	case txStalled:
		reason = resetTxStalled
	default:
		return false
	}
	if err := d.restart(); err != nil {
		// The device is not running; the next call tries again.
		// Nothing is posted meanwhile (Refill, Transmit) and the
		// link reads down.
		d.down.Store(true)
		return false
	}
	d.down.Store(false)
	d.reason.Store(uint32(reason))
	d.resets.Add(1)
	return true
}

// checkIndex reports whether q's ring is out of step with the device: its
// used index claims more completions than descriptors outstanding now and
// did so at the previous call too, or an entry older than the post of the
// descriptor it names was seen.
func (q *queue) checkIndex() bool {
	pending := vring.Load16(q.used, vring.UsedIdx) - q.lastUsed()
	bad := int(pending) > q.outstanding()
	wedged := bad && q.insane || q.outOfStep
	q.insane = bad
	return wedged
}

// checkStall reports whether q's used index has not moved for txStallLimit
// calls in a row while the device held descriptors and had nothing pending.
func (q *queue) checkStall() bool {
	idx := vring.Load16(q.used, vring.UsedIdx)
	if idx != q.stallIdx || idx != q.lastUsed() || q.outstanding() == 0 {
		q.stallIdx, q.stalls = idx, 0
		return false
	}
	q.stalls++
	return q.stalls >= txStallLimit
}

// restart resets the device, returns every buffer it held to the pool and
// runs initialisation again (§3.1.1) on the same ring memory.
func (d *Driver) restart() error {
	if err := d.reset(maintainResetPolls); err != nil {
		// The device may still be using the rings: leave every
		// buffer where it is rather than hand it out.
		return err
	}
	// From here the device owns nothing (§2.1.2 reset): the buffers it
	// held are the pool's again.
	d.rx.release()
	d.tx.release()
	d.rx.clear()
	d.tx.clear()
	if _, err := d.negotiate(d.features, true); err != nil {
		return err
	}
	for _, q := range [2]*queue{&d.rx, &d.tx} {
		if err := d.program(q); err != nil {
			d.fail()
			return err
		}
	}
	d.regs.Write32(regStatus, StatusAcknowledge|StatusDriver|StatusFeaturesOK|StatusDriverOK)
	if d.regs.Read32(regStatus)&StatusNeedsReset != 0 {
		return fmt.Errorf("%w: device needs reset after DRIVER_OK", ErrConfig)
	}
	return nil
}

// TxFree returns the number of free transmit slots.
func (d *Driver) TxFree() int { return d.tx.nfree }

// AckInterrupt reads and acknowledges the device's interrupt status
// (§4.2.2 InterruptStatus / InterruptACK) and returns it.
func (d *Driver) AckInterrupt() uint32 {
	s := d.regs.Read32(regInterruptStat)
	if s != 0 {
		d.regs.Write32(regInterruptACK, s)
	}
	return s
}
