package virtiotest

import (
	"encoding/binary"

	"github.com/tamanet/tamanet/nic/virtio/internal/vring"
)

const (
	queueRx = 0
	queueTx = 1
)

// drainLocked moves backlog frames into posted receive buffers.
func (d *Device) drainLocked() {
	d.w.DrainLocked()
	d.finishRxLocked()
}

// finishRxLocked publishes new used entries and tells the driver whether a
// kick is needed: only while frames wait for buffers. If buffers turned up
// meanwhile, it drains again.
func (d *Device) finishRxLocked() {
	q := &d.q[queueRx]
	if !q.ready {
		return
	}
	for {
		d.publish(q)
		if q.broken {
			return
		}
		if d.w.Backlogged() == 0 {
			d.wantNotify(q, false)
			return
		}
		d.wantNotifyAt(q, vring.Load16(q.avail, vring.AvailIdx))
		// Re-check after asking (§2.7.10): a buffer posted before the
		// driver could see the request would otherwise go unnoticed.
		if d.w.Stalled() || !d.live(q) || d.pending(q) <= 0 || !q.canComplete() {
			return
		}
		d.w.DrainLocked()
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
	if d.w.Stalled() || !d.live(q) || !q.canComplete() {
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

// fillTxLocked takes transmitted packets off the tx ring into stage for
// wire.Port.Transmit, which hands them to the backend with mu dropped. A
// packet is checked and its offloads done on the way (txPacketLocked); a
// TSO packet becomes several frames, and when the stage fills in the middle
// of one, the rest follows on the next call before its chain completes.
func (d *Device) fillTxLocked(stage [][]byte, stageN []int) (k int, again bool) {
	q := &d.q[queueTx]
	if d.w.Stalled() || !d.live(q) {
		return 0, false
	}
	for k < len(stage) {
		if d.tx.active {
			k = d.segmentLocked(stage, stageN, k)
			if d.tx.active {
				break // the stage is full
			}
			d.complete(q, uint32(d.tx.head), 0)
			continue
		}
		if !q.canComplete() || d.pending(q) <= 0 {
			break
		}
		head := q.takeHead()
		total, ok := d.chain(q, head, false)
		if !ok {
			q.broken = true
			d.deviceErrorLocked()
			break
		}
		if len(q.segs) > 1 {
			d.stats.TxChains++
		}
		var done bool
		k, done = d.txPacketLocked(q, head, total, stage, stageN, k)
		if done {
			// Nothing is written into a transmit buffer: used len 0.
			d.complete(q, uint32(head), 0)
		}
	}
	d.publish(q)
	more := false
	if !q.broken {
		// Kick on every new frame (a synchronous device works each
		// batch at once), then re-check (§2.7.10). When completions
		// are held back (canComplete), the next post is the news that
		// unblocks them: ask for it too, not only for entries beyond
		// those already pending.
		d.wantNotifyAt(q, vring.Load16(q.avail, vring.AvailIdx))
		more = d.tx.active || q.canComplete() && d.pending(q) > 0
	}
	return k, more || k == len(stage)
}
