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
// Every value the device writes into the used rings (index, id, length) is
// checked; a bad one is counted under its nic.Cause and dropped, never a
// panic, and no buffer is lost.
//
// Register access goes through Regs, so the same code runs on tamago over
// MMIO (internal/mmio) and in host tests against virtiotest's device model.
package virtio

import (
	"encoding/binary"
	"errors"
	"fmt"

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
	// MAC is used when the device does not offer VIRTIO_NET_F_MAC.
	// Default 02:00:00:00:00:01 (locally administered).
	MAC [6]byte
	// NoEventIdx refuses VIRTIO_F_EVENT_IDX even when offered (tests).
	NoEventIdx bool
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

// Wanted is the feature set the driver negotiates when offered. Checksum and
// GSO offloads stay off; the header layout already has room for them.
const Wanted = FeatureVersion1 | FeatureMAC | FeatureStatus | FeatureMTU | FeatureEventIdx

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

	availIdx   uint16 // next avail index to publish (shadow of avail.idx)
	lastUsed   uint16 // next used entry to consume
	kickedIdx  uint16 // avail index at the last notify decision
	usedEvOff  int    // offset of used_event in avail
	availEvOff int    // offset of avail_event in used
	badIndex   bool   // the device's used idx is currently out of range
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
	maxFrame int // largest frame Transmit accepts
}

var _ nic.Device = (*Driver)(nil)

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
	if cfg.MAC == ([6]byte{}) {
		cfg.MAC = [6]byte{0x02, 0, 0, 0, 0, 1}
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

	// §3.1.1 steps 1-3: reset, then ACKNOWLEDGE, then DRIVER.
	if err := d.reset(); err != nil {
		return nil, err
	}
	regs.Write32(regStatus, StatusAcknowledge)
	regs.Write32(regStatus, StatusAcknowledge|StatusDriver)

	// Steps 4-6: features, FEATURES_OK, re-read.
	regs.Write32(regDeviceFeatSel, 0)
	offered := uint64(regs.Read32(regDeviceFeatures))
	regs.Write32(regDeviceFeatSel, 1)
	offered |= uint64(regs.Read32(regDeviceFeatures)) << 32
	if offered&FeatureVersion1 == 0 {
		d.fail()
		return nil, fmt.Errorf("%w: device does not offer VIRTIO_F_VERSION_1 (features %#x)", ErrFeatures, offered)
	}
	want := uint64(Wanted)
	if cfg.NoEventIdx {
		want &^= FeatureEventIdx
	}
	d.features = offered & want
	regs.Write32(regDriverFeatSel, 0)
	regs.Write32(regDriverFeatures, uint32(d.features))
	regs.Write32(regDriverFeatSel, 1)
	regs.Write32(regDriverFeatures, uint32(d.features>>32))
	regs.Write32(regStatus, StatusAcknowledge|StatusDriver|StatusFeaturesOK)
	if regs.Read32(regStatus)&StatusFeaturesOK == 0 {
		d.fail()
		return nil, fmt.Errorf("%w: device refused features %#x", ErrFeatures, d.features)
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
	if d.features&FeatureMAC != 0 {
		d.readConfig(func() {
			for i := range d.info.MAC {
				d.info.MAC[i] = regs.Read8(regConfig + cfgMAC + uint32(i))
			}
		})
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
	// 14-byte Ethernet header plus a 4-byte VLAN tag, and never more
	// than a transmit buffer holds after its header.
	d.maxFrame = d.info.MTU + 18

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

// reset writes 0 to Status and waits for it to read back 0 (§4.2.3.1).
func (d *Driver) reset() error {
	d.regs.Write32(regStatus, 0)
	for i := 0; i < 1000000; i++ {
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

func (d *Driver) setupQueue(q *queue, index uint32, num int, arena *alloc.Arena) error {
	r := d.regs
	r.Write32(regQueueSel, index)
	if r.Read32(regQueueReady) != 0 {
		return fmt.Errorf("%w: queue %d already ready after reset", ErrQueue, index)
	}
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
	q.free = make([]uint16, num)
	for i := range q.free {
		q.free[i] = uint16(num - 1 - i) // pop order 0, 1, 2, ...
	}
	q.nfree = num
	q.usedEvOff = vring.UsedEvent(num)
	q.availEvOff = vring.AvailEvent(num)

	r.Write32(regQueueNum, uint32(num))
	r.Write32(regQueueDescLow, uint32(q.descAddr))
	r.Write32(regQueueDescHigh, uint32(uint64(q.descAddr)>>32))
	r.Write32(regQueueDrvLow, uint32(q.availAddr))
	r.Write32(regQueueDrvHigh, uint32(uint64(q.availAddr)>>32))
	r.Write32(regQueueDevLow, uint32(q.usedAddr))
	r.Write32(regQueueDevHigh, uint32(uint64(q.usedAddr)>>32))
	r.Write32(regQueueReady, 1)
	if r.Read32(regQueueReady) != 1 || r.Read32(regStatus)&StatusNeedsReset != 0 {
		return fmt.Errorf("%w: device refused queue %d", ErrQueue, index)
	}
	return nil
}

// Close resets the device, which then no longer touches the rings, and
// returns every buffer still posted on either ring to the pool. The driver
// must not be used afterwards.
func (d *Driver) Close() {
	d.regs.Write32(regStatus, 0)
	for i := 0; i < 1000000 && d.regs.Read32(regStatus) != 0; i++ {
	}
	for _, q := range [2]*queue{&d.rx, &d.tx} {
		for id, b := range q.bufs {
			if b != nil {
				q.bufs[id] = nil
				d.pool.Put(b)
			}
		}
	}
}

// Features returns the negotiated feature bits.
func (d *Driver) Features() uint64 { return d.features }

// Info returns the device's fixed properties.
func (d *Driver) Info() nic.Info { return d.info }

// LinkUp reports VIRTIO_NET_S_LINK_UP from config space; without
// VIRTIO_NET_F_STATUS the link is always up (§5.1.4).
func (d *Driver) LinkUp() bool {
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

// next returns the next used entry, validated, or ok == false when none is
// pending. A bad entry is consumed, counted on c and reported with ok true
// and b == nil.
func (q *queue) next(c *nic.RingCounters) (b *alloc.Buffer, id uint16, n uint32, ok bool) {
	usedIdx := vring.Load16(q.used, vring.UsedIdx)
	pending := usedIdx - q.lastUsed
	if pending == 0 {
		q.badIndex = false
		return nil, 0, 0, false
	}
	if int(pending) > q.num {
		// The device claims more completions than the ring holds:
		// nothing in it can be trusted. Count the episode once and
		// consume nothing until the index is sane again.
		if !q.badIndex {
			q.badIndex = true
			c.Drop(nic.BadIndex)
		}
		return nil, 0, 0, false
	}
	q.badIndex = false
	s := vring.UsedSlot(q.lastUsed, q.mask)
	elem := q.used[s : s+vring.UsedElemSize : s+vring.UsedElemSize]
	rawID := binary.LittleEndian.Uint32(elem[vring.UsedElemID:])
	n = binary.LittleEndian.Uint32(elem[vring.UsedElemLen:])
	q.lastUsed++
	if rawID >= uint32(q.num) || q.bufs[rawID] == nil {
		c.Drop(nic.BadID)
		return nil, 0, 0, true
	}
	id = uint16(rawID)
	b = q.bufs[id]
	q.bufs[id] = nil
	q.free[q.nfree] = id
	q.nfree++
	return b, id, n, true
}

// armInterrupt asks the device to signal the next completion: with
// EVENT_IDX used_event = lastUsed (§2.7.10); otherwise interrupts stay on.
func (q *queue) armInterrupt(eventIdx bool) {
	if eventIdx {
		vring.Store16(q.avail, q.usedEvOff, q.lastUsed)
	}
}

// Receive returns the next received frame, or nil when none is pending. The
// caller owns the returned buffer; its body is the Ethernet frame.
func (d *Driver) Receive() *alloc.Buffer {
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
			d.pool.Put(b)
			continue
		}
		frame := int(n) - HeaderSize
		if frame < 14 {
			d.rxc.Drop(nic.Runt)
			d.pool.Put(b)
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
	posted := 0
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
// Reclaim; on error the caller keeps it, unchanged.
func (d *Driver) Transmit(b *alloc.Buffer) error {
	q := &d.tx
	if n := b.Len(); n < 14 || n > d.maxFrame {
		if n < 14 {
			d.txc.Drop(nic.Runt)
		} else {
			d.txc.Drop(nic.Oversize)
		}
		return nic.ErrFrameSize
	}
	if q.nfree == 0 {
		d.txc.Full.Add(1) // back-pressure: the caller keeps b
		return nic.ErrRingFull
	}
	frame := b.Len()
	hdr, err := b.Prepend(HeaderSize)
	if err != nil {
		d.txc.Drop(nic.Malformed)
		return err
	}
	// No offloads negotiated: flags 0, GSO_NONE, num_buffers 0 (§5.1.6.2).
	clear(hdr)
	q.nfree--
	id := q.free[q.nfree]
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
	freed := 0
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
		d.pool.Put(b)
		freed++
	}
	if freed > 0 {
		q.armInterrupt(d.eventIdx)
	}
	return freed
}

// NeedsReset reports whether the device set DEVICE_NEEDS_RESET (§2.1.2),
// e.g. after the driver handed it a descriptor it could not use.
func (d *Driver) NeedsReset() bool {
	return d.regs.Read32(regStatus)&StatusNeedsReset != 0
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
