package virtiotest

import (
	"encoding/binary"
	"os"

	"github.com/tamanet/tamanet/nic/virtio/internal/vring"
)

const (
	queueRx = 0
	queueTx = 1
)

// Deliver hands the device one frame as if it arrived on the wire: faults
// apply, then it goes into a posted receive buffer or waits in the backlog.
// The frame is copied; the caller keeps it.
func (d *Device) Deliver(frame []byte) {
	d.mu.Lock()
	d.arriveLocked(frame)
	irq := d.takeIRQLocked()
	d.mu.Unlock()
	irq()
}

// arriveLocked applies the frame faults and queues the frame.
func (d *Device) arriveLocked(frame []byte) {
	if len(frame) > MaxFrame {
		d.stats.Oversize++
		return
	}
	f := &d.faults
	if f.Drop > 0 && d.rng.Float64() < f.Drop {
		d.stats.Dropped++
		return
	}
	if f.Corrupt > 0 && len(frame) > 0 && d.rng.Float64() < f.Corrupt {
		n := copy(d.scratch, frame)
		frame = d.scratch[:n]
		frame[d.rng.IntN(n)] ^= byte(1 + d.rng.IntN(255))
		d.stats.Corrupted++
	}
	if f.Reorder > 0 && d.heldN == 0 && d.rng.Float64() < f.Reorder {
		d.heldN = copy(d.held, frame)
		d.stats.Reordered++
		return
	}
	old := d.q[queueRx].usedIdx
	d.enqueueLocked(frame)
	if f.Duplicate > 0 && d.rng.Float64() < f.Duplicate {
		d.stats.Duplicated++
		d.enqueueLocked(frame)
	}
	if d.heldN > 0 {
		// The held frame goes after the one that overtook it.
		d.enqueueLocked(d.held[:d.heldN])
		d.heldN = 0
	}
	d.finishRxLocked(old)
}

// flushHeldLocked delivers a frame held back for reordering.
func (d *Device) flushHeldLocked() {
	if d.heldN == 0 {
		return
	}
	old := d.q[queueRx].usedIdx
	d.enqueueLocked(d.held[:d.heldN])
	d.heldN = 0
	d.finishRxLocked(old)
}

// enqueueLocked writes frame into the rx ring, or queues it behind earlier
// frames in the backlog, or drops it (counted) when the backlog is full.
func (d *Device) enqueueLocked(frame []byte) {
	if d.blLen == 0 && d.writeRxLocked(frame) {
		return
	}
	if d.blLen == len(d.backlog) {
		d.stats.BacklogDrops++
		return
	}
	i := (d.blHead + d.blLen) % len(d.backlog)
	d.blN[i] = copy(d.backlog[i], frame)
	d.blLen++
}

// drainLocked moves backlog frames into posted receive buffers.
func (d *Device) drainLocked() {
	old := d.q[queueRx].usedIdx
	for d.blLen > 0 {
		if !d.writeRxLocked(d.backlog[d.blHead][:d.blN[d.blHead]]) {
			break
		}
		d.blHead = (d.blHead + 1) % len(d.backlog)
		d.blLen--
	}
	d.finishRxLocked(old)
}

// finishRxLocked publishes new used entries and tells the driver whether a
// kick is needed: only while frames wait for buffers. If buffers turned up
// meanwhile, it drains again.
func (d *Device) finishRxLocked(old uint16) {
	q := &d.q[queueRx]
	if !q.ready {
		return
	}
	for {
		d.publish(q, old)
		old = q.usedIdx
		if q.broken {
			return
		}
		if d.blLen == 0 {
			d.wantNotify(q, false)
			return
		}
		d.wantNotifyAt(q, vring.Load16(q.avail, vring.AvailIdx))
		// Re-check after asking (§2.7.10): a buffer posted before the
		// driver could see the request would otherwise go unnoticed.
		if d.stalled || !d.live(q) || d.pending(q) <= 0 || !q.canComplete() {
			return
		}
		for d.blLen > 0 && d.writeRxLocked(d.backlog[d.blHead][:d.blN[d.blHead]]) {
			d.blHead = (d.blHead + 1) % len(d.backlog)
			d.blLen--
		}
	}
}

// wantNotifyAt asks for a kick once the driver's avail index passes idx.
func (d *Device) wantNotifyAt(q *vq, idx uint16) {
	if d.eventIdx() {
		vring.Store16(q.used, vring.AvailEvent(int(q.num)), idx)
		return
	}
	vring.Store16(q.used, vring.UsedFlags, 0)
}

// writeRxLocked writes frame into the next posted receive buffer. It
// reports false when no buffer can take it now (the frame should wait), and
// true when the frame was written or dropped for good (counted).
func (d *Device) writeRxLocked(frame []byte) bool {
	q := &d.q[queueRx]
	if d.stalled || !d.live(q) || !q.canComplete() {
		return false
	}
	if d.pending(q) <= 0 {
		return false
	}
	head := q.takeHead()
	total, ok := d.chain(q, head, true)
	if !ok {
		q.broken = true
		d.deviceErrorLocked()
		return false
	}
	if total < hdrSize+len(frame) {
		// Too big for the buffer: drop it, leave the buffer posted.
		q.lastAvail--
		d.stats.Oversize++
		return true
	}
	// struct virtio_net_hdr_v1 (§5.1.6.4): no flags, GSO_NONE,
	// num_buffers 1.
	var hdr [hdrSize]byte
	binary.LittleEndian.PutUint16(hdr[10:], 1)
	d.scatter(q, hdr[:], frame)
	d.complete(q, uint32(head), uint32(hdrSize+len(frame)))
	d.stats.RxFrames++
	d.stats.RxBytes += uint64(len(frame))
	return true
}

// scatter copies a then b into the buffers in q.segs.
func (d *Device) scatter(q *vq, a, b []byte) {
	si, so := 0, 0
	for _, src := range [2][]byte{a, b} {
		for len(src) > 0 {
			s := q.segs[si]
			n := copy(d.mem[s.off+so:s.off+s.n], src)
			src = src[n:]
			so += n
			if so == s.n {
				si++
				so = 0
			}
		}
	}
}

// gather copies the bytes of q.segs after skip into dst.
func (d *Device) gather(q *vq, skip int, dst []byte) int {
	n := 0
	for _, s := range q.segs {
		if skip >= s.n {
			skip -= s.n
			continue
		}
		n += copy(dst[n:], d.mem[s.off+skip:s.off+s.n])
		skip = 0
	}
	return n
}

// processTx takes transmitted frames off the tx ring and hands them to the
// backend, a stage of them at a time, with mu dropped while handing over.
func (d *Device) processTx() {
	d.txMu.Lock()
	defer d.txMu.Unlock()
	for {
		d.mu.Lock()
		q := &d.q[queueTx]
		if d.stalled || !d.live(q) {
			d.mu.Unlock()
			return
		}
		old := q.usedIdx
		k := 0
		for k < len(d.stage) && q.canComplete() && d.pending(q) > 0 {
			head := q.takeHead()
			total, ok := d.chain(q, head, false)
			if !ok {
				q.broken = true
				d.deviceErrorLocked()
				break
			}
			n := total - hdrSize
			switch {
			case n < 0:
				d.stats.DeviceErrors++
			case n > MaxFrame:
				d.stats.Oversize++
			default:
				d.stageN[k] = d.gather(q, hdrSize, d.stage[k][:n])
				d.stats.TxFrames++
				d.stats.TxBytes += uint64(n)
				k++
			}
			// Nothing is written into a transmit buffer: used len 0.
			d.complete(q, uint32(head), 0)
		}
		d.publish(q, old)
		more := false
		if !q.broken {
			// Kick on every new frame (a synchronous device works
			// each batch at once), then re-check (§2.7.10). When
			// completions are held back (canComplete), the next
			// post is the news that unblocks them: ask for it too,
			// not only for entries beyond those already pending.
			d.wantNotifyAt(q, vring.Load16(q.avail, vring.AvailIdx))
			more = q.canComplete() && d.pending(q) > 0
		}
		peer, tap, out := d.peer, d.tap, d.output
		irq := d.takeIRQLocked()
		d.mu.Unlock()
		irq()
		for i := 0; i < k; i++ {
			f := d.stage[i][:d.stageN[i]]
			switch {
			case peer != nil:
				peer.Deliver(f)
			case tap != nil:
				tap.Write(f)
			case out != nil:
				out(f)
			}
		}
		if !more && k < len(d.stage) {
			return
		}
	}
}

// AttachTap makes the tap f the device's wire: a goroutine reads frames from
// f into the receive ring, transmitted frames are written to f. The device
// owns f from here; Close closes it.
func (d *Device) AttachTap(f *os.File) {
	d.mu.Lock()
	d.tap = f
	d.mu.Unlock()
	d.tapWG.Add(1)
	go func() {
		defer d.tapWG.Done()
		buf := make([]byte, 65536)
		for {
			n, err := f.Read(buf)
			if err != nil {
				return
			}
			d.Deliver(buf[:n])
		}
	}()
}

// Close detaches and closes a tap attached with AttachTap and waits for its
// reader to stop.
func (d *Device) Close() error {
	d.mu.Lock()
	f := d.tap
	d.tap = nil
	d.mu.Unlock()
	if f == nil {
		return nil
	}
	err := f.Close()
	d.tapWG.Wait()
	return err
}
