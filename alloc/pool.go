// Package alloc holds tamanet's packet buffer pool.
//
// A Pool carves a fixed number of fixed-size buffers out of one memory region
// handed in at construction: DMA memory on tamago, an ordinary []byte in host
// tests. Nothing is allocated after New returns. Get and Put are O(1),
// lock-free and safe for concurrent use, so the receive path (poll loop) and
// the transmit path (gVisor's writers) can share one pool.
//
// Each Buffer is a view with a prefix (headroom), a body and a suffix
// (tailroom): a layer prepends its header in place in front of the body, and
// a driver can post the whole buffer to a device and later mark the bytes the
// device wrote as the body. Operations that would leave the buffer are
// refused with an error; nothing is silently clipped or corrupted.
//
// Ownership is explicit: a buffer returned by Get belongs to the caller until
// it is handed to Put (or to a driver, which then owns it until it gives the
// buffer back). A second Put of the same buffer, or a Put of a buffer from
// another pool, is refused and counted in Stats.RefusedPuts.
package alloc

import (
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"
)

// Alignment is the alignment of every buffer in a pool: one cache line,
// which also satisfies the ENET requirement of 16-byte aligned receive
// buffers (i.MX6UL RM 22.6.13) and virtio's lack of any requirement.
const Alignment = 64

// MaxFrame is the largest Ethernet frame a buffer must hold: 1500 bytes of
// payload, 14 bytes of header, 4 bytes of VLAN tag (IEEE 802.3 maximum
// untagged 1518 includes the 4-byte FCS, which drivers strip).
const MaxFrame = 1518

// DefaultHeadroom is the prefix Get reserves in front of the body. It
// leaves room for a 12-byte virtio-net header (virtio 1.2 §5.1.6) plus
// link-layer headers, rounded so the body stays 2-byte aligned after a
// 14-byte Ethernet header.
const DefaultHeadroom = 64

// Config sets the shape of a Pool.
type Config struct {
	// Count is the number of buffers. Default 512.
	Count int
	// Size is the size of each buffer in bytes, rounded up to Alignment.
	// Default 2048; it must hold Headroom + MaxFrame.
	Size int
	// Headroom is the prefix Get reserves in front of the body.
	// Default DefaultHeadroom.
	Headroom int
}

func (c *Config) defaults() {
	if c.Count == 0 {
		c.Count = 512
	}
	if c.Size == 0 {
		c.Size = 2048
	}
	if c.Headroom == 0 {
		c.Headroom = DefaultHeadroom
	}
	c.Size = (c.Size + Alignment - 1) &^ (Alignment - 1)
}

// Errors returned by Buffer operations.
var (
	ErrNoRoom      = errors.New("alloc: operation exceeds buffer bounds")
	ErrForeign     = errors.New("alloc: buffer does not belong to this pool")
	ErrDoublePut   = errors.New("alloc: buffer already free (double put)")
	ErrRegionSmall = errors.New("alloc: region too small for the pool")
)

// Buffer states, held in Buffer.state and changed atomically so a double Put
// racing with a Put is still caught.
const (
	stateFree  = 0
	stateInUse = 1
)

// Buffer is one packet buffer. The zero value is not usable; buffers come
// from Pool.Get.
type Buffer struct {
	mem   []byte  // the whole buffer, len == cap == pool size
	addr  uintptr // physical (== virtual on tamago) address of mem[0]
	head  int     // body is mem[head:tail]
	tail  int
	pool  *Pool
	index int32
	state atomic.Uint32
}

// Bytes returns the body. The slice aliases the buffer: it is valid only while
// the caller owns the buffer.
func (b *Buffer) Bytes() []byte { return b.mem[b.head:b.tail] }

// Len returns the body length.
func (b *Buffer) Len() int { return b.tail - b.head }

// Headroom returns the bytes free in front of the body.
func (b *Buffer) Headroom() int { return b.head }

// Cap returns the whole buffer size.
func (b *Buffer) Cap() int { return len(b.mem) }

// Raw returns the whole buffer, prefix and suffix included, for a driver that
// posts it to a device.
func (b *Buffer) Raw() []byte { return b.mem }

// Addr returns the physical address of the buffer's first byte.
func (b *Buffer) Addr() uintptr { return b.addr }

// BodyAddr returns the physical address of the body's first byte.
func (b *Buffer) BodyAddr() uintptr { return b.addr + uintptr(b.head) }

// Offset returns the body's offset from the start of the buffer.
func (b *Buffer) Offset() int { return b.head }

// Index returns the buffer's index in its pool, 0 <= Index < Capacity.
func (b *Buffer) Index() int { return int(b.index) }

// Free returns b to the pool it came from, so whoever holds a buffer can
// give it back without knowing its pool. It is Pool.Put on that pool: a
// buffer already free is refused with ErrDoublePut and counted.
func (b *Buffer) Free() error {
	if b == nil || b.pool == nil {
		return ErrForeign
	}
	return b.pool.Put(b)
}

// Reserve empties the body and places it n bytes from the start.
func (b *Buffer) Reserve(n int) error {
	if n < 0 || n > len(b.mem) {
		return ErrNoRoom
	}
	b.head, b.tail = n, n
	return nil
}

// SetBody makes mem[off:off+n] the body, as a driver does after the device
// wrote n bytes at offset off.
func (b *Buffer) SetBody(off, n int) error {
	if off < 0 || n < 0 || off > len(b.mem) || n > len(b.mem)-off {
		return ErrNoRoom
	}
	b.head, b.tail = off, off+n
	return nil
}

// Prepend grows the body by n bytes at the front and returns those bytes.
func (b *Buffer) Prepend(n int) ([]byte, error) {
	if n < 0 || n > b.head {
		return nil, ErrNoRoom
	}
	b.head -= n
	return b.mem[b.head : b.head+n : b.head+n], nil
}

// Append grows the body by n bytes at the back and returns those bytes.
func (b *Buffer) Append(n int) ([]byte, error) {
	if n < 0 || n > len(b.mem)-b.tail {
		return nil, ErrNoRoom
	}
	b.tail += n
	return b.mem[b.tail-n : b.tail : b.tail], nil
}

// Stats is a snapshot of a pool's counters.
type Stats struct {
	Capacity    int    `json:"capacity"`
	BufferSize  int    `json:"buffer_size"`
	InUse       int    `json:"in_use"`
	HighWater   int    `json:"high_water"`
	Exhausted   uint64 `json:"exhausted"`
	RefusedPuts uint64 `json:"refused_puts"`
}

// Pool is a fixed set of equally sized buffers.
type Pool struct {
	bufs     []Buffer
	next     []int32       // free-list links: next[i] is the index after i, -1 ends
	top      atomic.Uint64 // tag<<32 | (index+1); 0 low half means empty
	size     int
	headroom int

	inUse     atomic.Int64
	highWater atomic.Int64
	exhausted atomic.Uint64
	refused   atomic.Uint64
}

// AddrOf returns the address of b's first byte. On tamago, where physical
// addresses equal virtual ones, it is the address a device must be given.
func AddrOf(b []byte) uintptr {
	if cap(b) == 0 {
		return 0
	}
	return uintptr(unsafe.Pointer(unsafe.SliceData(b)))
}

// New carves cfg.Count buffers of cfg.Size bytes from region. The region's
// start is aligned up to Alignment first; the region must stay valid and
// must not move for the pool's lifetime (Go heap memory never moves).
func New(region []byte, cfg Config) (*Pool, error) {
	cfg.defaults()
	if cfg.Count < 1 || cfg.Count > 1<<30 {
		return nil, fmt.Errorf("alloc: buffer count %d out of range", cfg.Count)
	}
	if cfg.Headroom < 0 || cfg.Headroom+MaxFrame > cfg.Size {
		return nil, fmt.Errorf("alloc: buffer size %d cannot hold headroom %d + %d-byte frame", cfg.Size, cfg.Headroom, MaxFrame)
	}
	base := AddrOf(region)
	skip := int((Alignment - base%Alignment) % Alignment)
	need := skip + cfg.Count*cfg.Size
	if len(region) < need {
		return nil, fmt.Errorf("%w: need %d bytes, have %d", ErrRegionSmall, need, len(region))
	}
	p := &Pool{
		bufs:     make([]Buffer, cfg.Count),
		next:     make([]int32, cfg.Count),
		size:     cfg.Size,
		headroom: cfg.Headroom,
	}
	base += uintptr(skip)
	region = region[skip:need:need]
	for i := range p.bufs {
		b := &p.bufs[i]
		off := i * cfg.Size
		b.mem = region[off : off+cfg.Size : off+cfg.Size]
		b.addr = base + uintptr(off)
		b.pool = p
		b.index = int32(i)
		if i+1 < cfg.Count {
			p.next[i] = int32(i + 1)
		} else {
			p.next[i] = -1
		}
	}
	p.top.Store(1) // tag 0, index 0
	return p, nil
}

// Get returns a free buffer with an empty body and the default headroom, or
// nil when the pool is exhausted (counted in Stats.Exhausted).
func (p *Pool) Get() *Buffer {
	for {
		old := p.top.Load()
		slot := uint32(old)
		if slot == 0 {
			p.exhausted.Add(1)
			return nil
		}
		i := int32(slot - 1)
		nx := atomic.LoadInt32(&p.next[i])
		tag := (old >> 32) + 1
		if p.top.CompareAndSwap(old, tag<<32|uint64(uint32(nx+1))) {
			b := &p.bufs[i]
			b.state.Store(stateInUse)
			b.head = p.headroom
			b.tail = p.headroom
			// The high-water mark is written only when it rises, so
			// steady state costs one load here.
			n := p.inUse.Add(1)
			for hw := p.highWater.Load(); n > hw && !p.highWater.CompareAndSwap(hw, n); hw = p.highWater.Load() {
			}
			return b
		}
	}
}

// Put returns b to the pool. A buffer of another pool, nil, or a buffer that
// is already free is refused with an error and counted.
func (p *Pool) Put(b *Buffer) error {
	if b == nil || b.pool != p || b.index < 0 || int(b.index) >= len(p.bufs) || &p.bufs[b.index] != b {
		p.refused.Add(1)
		return ErrForeign
	}
	if !b.state.CompareAndSwap(stateInUse, stateFree) {
		p.refused.Add(1)
		return ErrDoublePut
	}
	i := b.index
	for {
		old := p.top.Load()
		atomic.StoreInt32(&p.next[i], int32(uint32(old))-1)
		tag := (old >> 32) + 1
		if p.top.CompareAndSwap(old, tag<<32|uint64(uint32(i+1))) {
			break
		}
	}
	p.inUse.Add(-1)
	return nil
}

// Owns reports whether b is one of p's buffers.
func (p *Pool) Owns(b *Buffer) bool {
	return b != nil && b.pool == p && b.index >= 0 && int(b.index) < len(p.bufs) && &p.bufs[b.index] == b
}

// Capacity returns the number of buffers.
func (p *Pool) Capacity() int { return len(p.bufs) }

// BufferSize returns the size of each buffer.
func (p *Pool) BufferSize() int { return p.size }

// DefaultHeadroom returns the headroom Get gives a buffer.
func (p *Pool) DefaultHeadroom() int { return p.headroom }

// InUse returns the number of buffers currently handed out.
func (p *Pool) InUse() int { return int(p.inUse.Load()) }

// Stats returns a snapshot of the pool's counters.
func (p *Pool) Stats() Stats {
	return Stats{
		Capacity:    len(p.bufs),
		BufferSize:  p.size,
		InUse:       int(p.inUse.Load()),
		HighWater:   int(p.highWater.Load()),
		Exhausted:   p.exhausted.Load(),
		RefusedPuts: p.refused.Load(),
	}
}
