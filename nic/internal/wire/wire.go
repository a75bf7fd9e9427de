// Package wire is the wire side that the device models of nic/virtio/virtiotest
// and nic/enet/enettest share: the backends a model sends to and receives
// from (a peer model, a Linux tap, an output function), the bounded backlog
// of frames waiting for a receive buffer, frame fault injection (seeded
// drop, duplicate, corrupt, reorder, each counted) and the interrupt hook.
//
// A model embeds a Port by value, hands it its lock and counters in Init,
// and keeps only its registers and rings: how a frame is written into the
// receive ring (Config.WriteRx), what follows receive work (Config.RxDone)
// and how frames are taken off the transmit ring (Config.FillTx).
//
// Methods whose name ends in Locked, and the accessors documented so, run
// with the model's lock held; the others take it. Nothing here allocates per
// frame.
package wire

import (
	"math/rand/v2"
	"os"
	"sync"
)

// stageLen is how many transmitted frames are handed over per pass.
const stageLen = 64

// Faults are the frame faults applied to frames arriving at a model, as
// probabilities in [0, 1].
type Faults struct {
	Drop      float64
	Duplicate float64
	Corrupt   float64 // flip one byte of the frame
	Reorder   float64 // hold a frame back and deliver it after the next
}

// Stats are the counters a Port keeps; a model's Stats embeds them.
type Stats struct {
	Interrupts   uint64
	BacklogDrops uint64 // arrived with no receive buffer and a full backlog
	Oversize     uint64 // larger than the model's MaxFrame

	Dropped, Duplicated, Corrupted, Reordered uint64
	Stalled                                   bool
}

// Config is what a model gives its Port.
type Config struct {
	// MaxFrame is the largest frame carried; longer ones are counted in
	// Oversize and dropped on arrival.
	MaxFrame int
	// Backlog is how many frames wait for a receive buffer before further
	// ones are dropped.
	Backlog int
	// WriteRx writes frame into the receive ring, with the lock held. It
	// reports false when no buffer can take the frame now (it waits in
	// the backlog) and true when the frame was written or lost for good
	// (counted by the model).
	WriteRx func(frame []byte) bool
	// RxDone, if set, runs with the lock held after frames went to
	// WriteRx through Deliver, Flush, SetFaults or Unstall.
	RxDone func()
	// FillTx, with the lock held, takes transmitted frames off the ring
	// into stage (stage[i][:n[i]], at most len(stage) of them) and returns
	// how many, and whether to call it again after handing them over.
	FillTx func(stage [][]byte, n []int) (k int, again bool)
}

// Port is the wire side of one device model. The zero value is not
// usable: call Init.
type Port struct {
	mu *sync.Mutex
	st *Stats
	c  Config

	backlog       [][]byte
	blN           []int
	blHead, blLen int
	held          []byte
	heldN         int
	scratch       []byte
	stalled       bool
	faults        Faults
	pcg           *rand.PCG
	rng           *rand.Rand
	irqPending    bool
	irq           func()

	// txMu serialises transmit processing, which hands frames to the
	// backend after dropping mu (so two piped models never hold each
	// other's mu).
	txMu   sync.Mutex
	stage  [][]byte
	stageN []int

	peer   *Port
	output func([]byte)
	tap    *os.File
	tapWG  sync.WaitGroup
}

// Init sets the port up: mu is the model's lock, st its counters.
func (p *Port) Init(mu *sync.Mutex, st *Stats, c Config) {
	p.mu, p.st, p.c = mu, st, c
	p.backlog = make([][]byte, c.Backlog)
	p.blN = make([]int, c.Backlog)
	for i := range p.backlog {
		p.backlog[i] = make([]byte, c.MaxFrame)
	}
	p.stage = make([][]byte, stageLen)
	p.stageN = make([]int, stageLen)
	for i := range p.stage {
		p.stage[i] = make([]byte, c.MaxFrame)
	}
	p.held = make([]byte, c.MaxFrame)
	p.scratch = make([]byte, c.MaxFrame)
	p.pcg = rand.NewPCG(0, 0)
	p.rng = rand.New(p.pcg)
}

// Rand is the seeded generator behind every fault, the model's own too, so
// one seed replays a run. Use it with the lock held.
func (p *Port) Rand() *rand.Rand { return p.rng }

// Stalled reports whether the model is stalled (lock held).
func (p *Port) Stalled() bool { return p.stalled }

// Backlogged returns how many frames wait in the backlog (lock held).
func (p *Port) Backlogged() int { return p.blLen }

// ResetLocked forgets the backlog and a frame held for reordering, as a
// device reset does.
func (p *Port) ResetLocked() { p.blLen, p.heldN = 0, 0 }

// Pipe links a and b: what one transmits, the other receives.
func Pipe(a, b *Port) {
	a.mu.Lock()
	a.peer = b
	a.mu.Unlock()
	b.mu.Lock()
	b.peer = a
	b.mu.Unlock()
}

// SetOutput hands every transmitted frame to fn instead of a peer or tap.
func (p *Port) SetOutput(fn func(frame []byte)) {
	p.mu.Lock()
	p.output = fn
	p.mu.Unlock()
}

// SetInterrupt sets the function called, with no lock held, after the
// model raised an interrupt (RaiseLocked).
func (p *Port) SetInterrupt(fn func()) {
	p.mu.Lock()
	p.irq = fn
	p.mu.Unlock()
}

// RaiseLocked notes an interrupt for the next TakeIRQLocked.
func (p *Port) RaiseLocked() { p.irqPending = true }

func nop() {}

// TakeIRQLocked returns the interrupt hook to call after unlocking, or a
// no-op, and counts the interrupt.
func (p *Port) TakeIRQLocked() func() {
	if !p.irqPending || p.irq == nil {
		p.irqPending = false
		return nop
	}
	p.irqPending = false
	p.st.Interrupts++
	return p.irq
}

// unlock drops the lock and then runs a pending interrupt hook.
func (p *Port) unlock() {
	irq := p.TakeIRQLocked()
	p.mu.Unlock()
	irq()
}

// SetFaults replaces the frame faults and reseeds the generator from seed;
// model, if set, runs with the lock held first, to set the model's own
// fault rates. A frame held for reordering is delivered.
func (p *Port) SetFaults(seed uint64, f Faults, model func()) {
	p.mu.Lock()
	if model != nil {
		model()
	}
	p.faults = f
	p.pcg.Seed(seed, seed^0x9e3779b97f4a7c15)
	p.flushHeldLocked()
	p.unlock()
}

// Stall stops the model working either ring until Unstall.
func (p *Port) Stall() {
	p.mu.Lock()
	p.stalled = true
	p.st.Stalled = true
	p.mu.Unlock()
}

// Unstall resumes the model: it transmits what is posted and receives the
// backlog.
func (p *Port) Unstall() {
	p.mu.Lock()
	p.stalled = false
	p.st.Stalled = false
	p.mu.Unlock()
	p.Transmit()
	p.mu.Lock()
	p.DrainLocked()
	p.rxDone()
	p.unlock()
}

// Flush delivers a frame held back for reordering, if any.
func (p *Port) Flush() {
	p.mu.Lock()
	p.flushHeldLocked()
	p.unlock()
}

// Backlog returns the number of frames waiting for a receive buffer,
// counting one held back for reordering.
func (p *Port) Backlog() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.blLen + p.heldN
}

// Deliver hands the model one frame as if it arrived on the wire: faults
// apply, then it goes into the receive ring or waits in the backlog. The
// frame is copied; the caller keeps it.
func (p *Port) Deliver(frame []byte) {
	p.mu.Lock()
	if p.arriveLocked(frame) {
		p.rxDone()
	}
	p.unlock()
}

func (p *Port) rxDone() {
	if p.c.RxDone != nil {
		p.c.RxDone()
	}
}

// arriveLocked applies the frame faults and queues the frame. It reports
// whether anything went to the receive ring or backlog.
func (p *Port) arriveLocked(frame []byte) bool {
	if len(frame) > p.c.MaxFrame {
		p.st.Oversize++
		return false
	}
	f := &p.faults
	if f.Drop > 0 && p.rng.Float64() < f.Drop {
		p.st.Dropped++
		return false
	}
	if f.Corrupt > 0 && len(frame) > 0 && p.rng.Float64() < f.Corrupt {
		n := copy(p.scratch, frame)
		frame = p.scratch[:n]
		frame[p.rng.IntN(n)] ^= byte(1 + p.rng.IntN(255))
		p.st.Corrupted++
	}
	if f.Reorder > 0 && p.heldN == 0 && p.rng.Float64() < f.Reorder {
		p.heldN = copy(p.held, frame)
		p.st.Reordered++
		return false
	}
	p.enqueueLocked(frame)
	if f.Duplicate > 0 && p.rng.Float64() < f.Duplicate {
		p.st.Duplicated++
		p.enqueueLocked(frame)
	}
	if p.heldN > 0 {
		// The held frame goes after the one that overtook it.
		p.enqueueLocked(p.held[:p.heldN])
		p.heldN = 0
	}
	return true
}

// flushHeldLocked delivers a frame held back for reordering.
func (p *Port) flushHeldLocked() {
	if p.heldN == 0 {
		return
	}
	p.enqueueLocked(p.held[:p.heldN])
	p.heldN = 0
	p.rxDone()
}

// enqueueLocked writes frame into the receive ring, or queues it behind
// earlier frames in the backlog, or drops it (counted) when the backlog is
// full.
func (p *Port) enqueueLocked(frame []byte) {
	if p.blLen == 0 && p.c.WriteRx(frame) {
		return
	}
	if p.blLen == len(p.backlog) {
		p.st.BacklogDrops++
		return
	}
	i := (p.blHead + p.blLen) % len(p.backlog)
	p.blN[i] = copy(p.backlog[i], frame)
	p.blLen++
}

// DrainLocked moves backlog frames into the receive ring until WriteRx
// refuses one. It does not run RxDone.
func (p *Port) DrainLocked() {
	for p.blLen > 0 {
		if !p.c.WriteRx(p.backlog[p.blHead][:p.blN[p.blHead]]) {
			return
		}
		p.blHead = (p.blHead + 1) % len(p.backlog)
		p.blLen--
	}
}

// Transmit takes transmitted frames off the ring (FillTx) and hands them to
// the backend, a stage of them at a time, with the lock dropped while
// handing over. The caller must not hold the lock.
func (p *Port) Transmit() {
	p.txMu.Lock()
	defer p.txMu.Unlock()
	for {
		p.mu.Lock()
		k, again := p.c.FillTx(p.stage, p.stageN)
		peer, tap, out := p.peer, p.tap, p.output
		p.unlock()
		for i := 0; i < k; i++ {
			f := p.stage[i][:p.stageN[i]]
			switch {
			case peer != nil:
				peer.Deliver(f)
			case tap != nil:
				tap.Write(f)
			case out != nil:
				out(f)
			}
		}
		if !again {
			return
		}
	}
}

// AttachTap makes the tap f the model's wire: a goroutine reads frames from
// f into the receive ring, transmitted frames are written to f. The port
// owns f from here; Close closes it.
func (p *Port) AttachTap(f *os.File) { p.AttachTapHdr(f, 0) }

// SetStageSize makes every transmit stage buffer n bytes long, for a model
// that hands its backend more than one frame's bytes (a virtio-net header
// and a TSO packet for a tap with IFF_VNET_HDR). Set it before traffic.
func (p *Port) SetStageSize(n int) {
	p.txMu.Lock()
	defer p.txMu.Unlock()
	for i := range p.stage {
		p.stage[i] = make([]byte, n)
	}
}

// AttachTapHdr is AttachTap for a tap whose reads start with a hdr-byte
// header (IFF_VNET_HDR): the reader drops it before a frame arrives. What
// the model stages for transmit goes to f as it is, header included.
func (p *Port) AttachTapHdr(f *os.File, hdr int) {
	p.mu.Lock()
	p.tap = f
	p.mu.Unlock()
	p.tapWG.Add(1)
	go func() {
		defer p.tapWG.Done()
		buf := make([]byte, 65536)
		for {
			n, err := f.Read(buf)
			if err != nil {
				return
			}
			if n >= hdr {
				p.Deliver(buf[hdr:n])
			}
		}
	}()
}

// Close detaches and closes a tap attached with AttachTap and waits for its
// reader to stop.
func (p *Port) Close() error {
	p.mu.Lock()
	f := p.tap
	p.tap = nil
	p.mu.Unlock()
	if f == nil {
		return nil
	}
	err := f.Close()
	p.tapWG.Wait()
	return err
}
