// Package nictest provides an in-memory nic.Device for tests of the layers
// above the drivers.
//
// A Device keeps the nic.Device contract (buffers move by ownership, Receive
// returns a pool buffer, Transmit owns the buffer until Reclaim) without any
// descriptor ring: posted receive buffers, completed receive buffers and
// completed transmit buffers sit in three fixed-size queues. Two devices can
// be joined with Pipe, so that a frame one transmits is copied into a buffer
// the other has posted, as a device's DMA would. Frames can also be injected
// directly (Inject) and transmitted frames observed (OnTransmit), for tests
// that drive one side by hand.
//
// The fake takes a mutex per operation; it is test scaffolding, not a model
// of how a real driver must behave. It does not allocate after New.
package nictest

import (
	"sync"
	"sync/atomic"

	"github.com/tamanet/tamanet/alloc"
	"github.com/tamanet/tamanet/nic"
)

// Config sets up a Device.
type Config struct {
	// MAC is the station address.
	MAC [6]byte
	// MTU defaults to 1500.
	MTU int
	// Headroom is the transmit headroom the fake demands, as a driver with
	// its own header would. Default 12 (a virtio-net header).
	Headroom int
	// RxRing and TxRing default to 256.
	RxRing, TxRing int
	// TxHold keeps transmitted frames unreclaimable until Complete is
	// called, so tests can fill the transmit ring.
	TxHold bool
}

// Device is an in-memory nic.Device.
type Device struct {
	info nic.Info
	pool *alloc.Pool
	hold bool

	rxMu   sync.Mutex
	posted queue // empty buffers the "device" may fill
	filled queue // received frames awaiting Receive

	txMu   sync.Mutex
	done   queue // transmitted buffers awaiting Reclaim
	queued int   // newest entries of done not yet completed (TxHold)

	peer atomic.Pointer[Device]
	link atomic.Bool

	// OnTransmit, if set, sees every transmitted frame before it is
	// completed. It must not keep the slice.
	OnTransmit func(frame []byte)
	// OnReceive, if set, is called after a frame lands in the receive
	// queue: the fake's interrupt line.
	OnReceive func()

	rx, tx nic.RingCounters
}

// compile-time check.
var _ nic.Device = (*Device)(nil)

// New returns a Device whose buffers come from pool.
func New(pool *alloc.Pool, cfg Config) *Device {
	if cfg.MTU == 0 {
		cfg.MTU = 1500
	}
	if cfg.Headroom == 0 {
		cfg.Headroom = 12
	}
	if cfg.RxRing == 0 {
		cfg.RxRing = 256
	}
	if cfg.TxRing == 0 {
		cfg.TxRing = 256
	}
	d := &Device{
		info: nic.Info{Name: "nictest", MAC: cfg.MAC, MTU: cfg.MTU, MaxFrame: cfg.MTU + nic.FrameOverhead, Headroom: cfg.Headroom,
			RxRing: cfg.RxRing, TxRing: cfg.TxRing},
		pool:   pool,
		hold:   cfg.TxHold,
		posted: newQueue(cfg.RxRing),
		filled: newQueue(cfg.RxRing),
		done:   newQueue(cfg.TxRing),
	}
	d.link.Store(true)
	return d
}

// Pipe joins a and b: what one transmits, the other receives.
func Pipe(a, b *Device) {
	a.peer.Store(b)
	b.peer.Store(a)
}

// SetLink sets the link state; Transmit fails with nic.ErrLinkDown while
// it is down.
func (d *Device) SetLink(up bool) { d.link.Store(up) }

// Info implements nic.Device.
func (d *Device) Info() nic.Info { return d.info }

// Pool implements nic.Device.
func (d *Device) Pool() *alloc.Pool { return d.pool }

// LinkUp implements nic.Device.
func (d *Device) LinkUp() bool { return d.link.Load() }

// Receive implements nic.Device.
func (d *Device) Receive() *alloc.Buffer {
	d.rxMu.Lock()
	b := d.filled.pop()
	d.rxMu.Unlock()
	return b
}

// Refill implements nic.Device.
func (d *Device) Refill() int {
	d.rxMu.Lock()
	defer d.rxMu.Unlock()
	n := 0
	for d.posted.n+d.filled.n < d.info.RxRing {
		b := d.pool.Get()
		if b == nil {
			d.rx.Drop(nic.NoBuffer)
			break
		}
		d.posted.push(b)
		n++
	}
	return n
}

// RxKick implements nic.Device.
func (d *Device) RxKick() { d.rx.Kicks.Add(1) }

// Inject copies frame into a posted receive buffer, as the device would,
// and reports whether there was one. Counted like a received frame.
func (d *Device) Inject(frame []byte) bool {
	d.rxMu.Lock()
	b := d.posted.pop()
	if b == nil {
		d.rxMu.Unlock()
		d.rx.Drop(nic.NoBuffer)
		return false
	}
	if len(frame) > b.Cap() {
		d.posted.push(b)
		d.rxMu.Unlock()
		d.rx.Drop(nic.Oversize)
		return false
	}
	n := copy(b.Raw(), frame)
	_ = b.SetBody(0, n)
	d.filled.push(b)
	d.rxMu.Unlock()
	d.rx.Count(n)
	if f := d.OnReceive; f != nil {
		f()
	}
	return true
}

// Transmit implements nic.Device.
func (d *Device) Transmit(b *alloc.Buffer) error {
	if !d.link.Load() {
		return nic.ErrLinkDown
	}
	switch {
	case b.Len() < 14:
		return nic.ErrRunt
	case b.Len() > d.info.MaxFrame:
		return nic.ErrOversize
	case b.Headroom() < d.info.Headroom:
		return nic.ErrHeadroom
	}
	d.txMu.Lock()
	if d.done.n >= d.info.TxRing { // done holds completed and held frames
		d.txMu.Unlock()
		return nic.ErrRingFull
	}
	if d.hold {
		d.queued++
	}
	d.done.push(b)
	d.txMu.Unlock()
	d.tx.Count(b.Len())
	if f := d.OnTransmit; f != nil {
		f(b.Bytes())
	}
	if p := d.peer.Load(); p != nil {
		p.Inject(b.Bytes())
	}
	return nil
}

// Complete makes up to n held transmit buffers reclaimable (TxHold).
func (d *Device) Complete(n int) {
	d.txMu.Lock()
	d.queued -= min(n, d.queued)
	d.txMu.Unlock()
}

// Reclaim implements nic.Device.
func (d *Device) Reclaim() int {
	d.txMu.Lock()
	defer d.txMu.Unlock()
	n := 0
	for d.done.n > d.queued {
		if err := d.pool.Put(d.done.pop()); err != nil {
			d.tx.Drop(nic.BadID)
		}
		n++
	}
	return n
}

// TxKick implements nic.Device.
func (d *Device) TxKick() { d.tx.Kicks.Add(1) }

// Stats implements nic.Device.
func (d *Device) Stats(s *nic.Stats) {
	s.Name = d.info.Name
	s.Link = d.link.Load()
	d.rx.Snapshot(&s.Rx)
	d.tx.Snapshot(&s.Tx)
}

// queue is a fixed-capacity FIFO of buffers.
type queue struct {
	b    []*alloc.Buffer
	head int
	n    int
}

func newQueue(n int) queue { return queue{b: make([]*alloc.Buffer, n)} }

func (q *queue) push(b *alloc.Buffer) {
	q.b[(q.head+q.n)%len(q.b)] = b
	q.n++
}

func (q *queue) pop() *alloc.Buffer {
	if q.n == 0 {
		return nil
	}
	b := q.b[q.head]
	q.b[q.head] = nil
	q.head = (q.head + 1) % len(q.b)
	q.n--
	return b
}
