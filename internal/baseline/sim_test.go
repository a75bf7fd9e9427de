package baseline

import (
	"context"
	"sync"
	"sync/atomic"
)

// simENET models a TamaGo ENET driver and its MAC for host benchmarks, with
// the copies tamago's soc/nxp/enet makes: Tx copies the frame (padded to 8
// bytes) into the next fixed transmit buffer, and Rx returns a newly
// allocated copy of the next filled receive buffer (also rounded up to 8
// bytes, as bufferDescriptor.Data does). The "MAC" moves a transmitted frame
// to the peer the way virtiotest's model does for the virtio driver: a
// copy out of the transmit buffer into a staging buffer, then a copy into
// one of the peer's receive buffers, so the wire costs the same on both
// sides of the comparison.
//
// Receive buffering equals virtiotest's (256 ring slots plus a 256-frame
// backlog): rxSlots buffers; a frame arriving with all of them full is
// dropped and counted. An arrival signals irq (one slot, coalescing), which
// the glue's receive loop waits on, as tamago-example's receive interrupt
// handler does.
type simENET struct {
	mu    sync.Mutex
	tx    [txSlots][bufSize]byte
	txi   int
	stage [bufSize]byte

	rxMu   sync.Mutex
	rx     [rxSlots][bufSize]byte
	rxLen  [rxSlots]int
	rxHead int
	rxN    int

	peer *simENET
	irq  chan struct{}

	frames atomic.Uint64 // frames transmitted
	drops  atomic.Uint64 // frames that found no receive buffer
}

const (
	txSlots   = 16 // tamago's defaultRingSize
	rxSlots   = 512
	bufSize   = 1536 // MTU 1518 rounded up to bufferAlign (64)
	copyAlign = 8
)

func newSimENET() *simENET { return &simENET{irq: make(chan struct{}, 1)} }

func simPipe(a, b *simENET) { a.peer, b.peer = b, a }

func roundUp(n int) int { return (n + copyAlign - 1) &^ (copyAlign - 1) }

// Tx copies frame into the next transmit buffer and sends it.
func (d *simENET) Tx(frame []byte) {
	if len(frame) > 1518 {
		return
	}
	d.mu.Lock()
	buf := d.tx[d.txi][:roundUp(len(frame))]
	n := copy(buf, frame)
	clear(buf[n:])
	d.txi = (d.txi + 1) % txSlots
	// The MAC: DMA out of the transmit buffer, onto the wire.
	m := copy(d.stage[:], buf[:n])
	d.frames.Add(1)
	if d.peer != nil {
		d.peer.arrive(d.stage[:m])
	}
	d.mu.Unlock()
}

// arrive is the peer MAC writing a frame into a receive buffer.
func (d *simENET) arrive(frame []byte) {
	d.rxMu.Lock()
	if d.rxN == rxSlots {
		d.rxMu.Unlock()
		d.drops.Add(1)
		return
	}
	i := (d.rxHead + d.rxN) % rxSlots
	d.rxLen[i] = copy(d.rx[i][:], frame)
	d.rxN++
	d.rxMu.Unlock()
	select {
	case d.irq <- struct{}{}:
	default:
	}
}

// Rx returns a newly allocated copy of the next received frame, or nil.
func (d *simENET) Rx() []byte {
	d.rxMu.Lock()
	defer d.rxMu.Unlock()
	if d.rxN == 0 {
		return nil
	}
	i := d.rxHead
	n := roundUp(d.rxLen[i])
	buf := make([]byte, n)
	copy(buf, d.rx[i][:n])
	d.rxHead = (d.rxHead + 1) % rxSlots
	d.rxN--
	return buf
}

// wait is the receive loop's Wait: block until a frame arrives.
func (d *simENET) wait(ctx context.Context) {
	select {
	case <-d.irq:
	case <-ctx.Done():
	}
}
