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
		n := d.w.Backlogged()
		d.w.DrainLocked()
		if d.w.Backlogged() == n {
			// The next frame needs more buffers than are posted
			// (MRG_RXBUF): the kick asked for above brings them.
			return
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

// writeRxLocked writes frame into the next posted receive buffer, or with
// MRG_RXBUF into as many as it needs. It reports false when no buffer can
// take it now (the frame should wait), and true when the frame was written
// or dropped for good (counted). From a tap with IFF_VNET_HDR the frame
// starts with the kernel's header, which is written with it.
func (d *Device) writeRxLocked(frame []byte) bool {
	q := &d.q[queueRx]
	if d.w.Stalled() || !d.live(q) || !q.canComplete() {
		return false
	}
	if d.pending(q) <= 0 {
		return false
	}
	// struct virtio_net_hdr_v1 (§5.1.6.4): num_buffers 1 unless merged.
	var hdr [hdrSize]byte
	if d.vt.rx {
		if len(frame) < hdrSize {
			d.stats.RxBadHeaders++
			return true
		}
		// The kernel writes struct virtio_net_hdr and skips
		// num_buffers, which is the device's to set.
		copy(hdr[:10], frame)
		frame = frame[hdrSize:]
	}
	binary.LittleEndian.PutUint16(hdr[10:], 1)
	if len(frame) > d.opt.MaxPacket {
		d.stats.Oversize++
		return true
	}
	csum, ok := partial{at: -1}, true
	switch {
	case d.vt.rx:
		if !d.tapHeaderOK(hdr[:], len(frame)) {
			d.stats.RxBadHeaders++
			return true
		}
	case d.raw != nil:
		copy(hdr[:], d.raw)
		binary.LittleEndian.PutUint16(hdr[10:], 1)
		d.raw = nil
	default:
		csum, ok = d.rxHeader(hdr[:], frame)
	}
	if !ok {
		d.stats.Oversize++
		return true
	}
	if d.drvFeatures&FeatureMrgRxBuf != 0 {
		return d.writeMergedLocked(q, hdr[:], frame, csum)
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
	d.scatter(q, hdr[:], frame)
	d.poke(q, 0, csum)
	d.complete(q, uint32(head), uint32(hdrSize+len(frame)))
	d.countRx(hdr[:], len(frame))
	return true
}

// countRx counts a frame of n bytes written with hdr.
func (d *Device) countRx(hdr []byte, n int) {
	d.stats.RxFrames++
	d.stats.RxBytes += uint64(n)
	if hdr[hdrGSOType] != gsoNone {
		d.stats.Joined++
		d.stats.JoinedBytes += uint64(n)
	}
	if hdr[hdrFlags] != 0 {
		d.stats.RxCsum++
	}
}

// mrgHead is one buffer a merged packet takes: its head id and length.
type mrgHead struct {
	id uint16
	n  int
}

// writeMergedLocked writes hdr and frame over as many posted buffers as
// they need, each filled before the next is taken, sets num_buffers, and
// completes them all; finishRxLocked publishes them together (§5.1.6.4).
// When not enough buffers are posted, it takes none and the frame waits.
func (d *Device) writeMergedLocked(q *vq, hdr, frame []byte, csum partial) bool {
	need := hdrSize + len(frame)
	q.heads = q.heads[:0]
	got, avail := 0, d.pending(q)
	for got < need && len(q.heads) < avail {
		head := q.takeHead()
		total, ok := d.chain(q, head, true)
		if !ok {
			q.broken = true
			d.deviceErrorLocked()
			return false
		}
		q.heads = append(q.heads, mrgHead{head, total}) // cap num: no growth
		got += total
	}
	if got < need || !q.canCompleteN(len(q.heads)) {
		q.lastAvail -= uint16(len(q.heads)) // taken back: wait for more
		if len(q.heads) == int(q.num) {
			d.stats.Oversize++ // can never fit: drop it
			return true
		}
		return false
	}
	nb := uint16(len(q.heads))
	f := &d.faults
	if f.NumBuffers > 0 && d.rng.Float64() < f.NumBuffers {
		d.stats.NumBufferLies++
		switch d.rng.IntN(3) {
		case 0:
			nb = 0
		case 1:
			nb = 0xffff
		default:
			nb++
		}
	}
	binary.LittleEndian.PutUint16(hdr[10:], nb)
	src := [2][]byte{hdr, frame}
	si, pos := 0, 0
	for i, h := range q.heads {
		d.chain(q, h.id, true) // checked above
		w := 0
		for _, sg := range q.segs {
			so := 0
			for so < sg.n && si < 2 {
				c := copy(d.mem[sg.off+so:sg.off+sg.n], src[si])
				src[si] = src[si][c:]
				so += c
				w += c
				if len(src[si]) == 0 {
					si++
				}
			}
		}
		d.poke(q, pos, csum)
		pos += w
		d.completeN(q, uint32(h.id), uint32(w), i == 0)
	}
	d.countRx(hdr, len(frame))
	return true
}

// canCompleteN is canComplete for n completions at once.
func (q *vq) canCompleteN(n int) bool {
	return q.unconsumedBound()+n <= int(q.num) && len(q.bad) <= q.deviceHeld()
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

// partial is a checksum field to overwrite after the frame is written: at
// byte at of the header-and-frame stream, with val; at < 0 for none.
type partial struct {
	at  int
	val uint16
}

// poke writes c's field where it falls in q.segs, whose first byte is byte
// base of the stream; bytes outside them are left (another buffer's).
func (d *Device) poke(q *vq, base int, c partial) {
	if c.at < 0 {
		return
	}
	v := [2]byte{byte(c.val >> 8), byte(c.val)}
	for i, b := range v {
		p := c.at + i - base
		if p < 0 {
			continue
		}
		for _, sg := range q.segs {
			if p < sg.n {
				d.mem[sg.off+p] = b
				break
			}
			p -= sg.n
		}
	}
}

// rxHeader fills flags and the GSO fields of hdr for frame as the
// negotiated features allow (§5.1.6.4): DATA_VALID with Options.Vouch;
// NEEDS_CSUM and the partial checksum with Options.Partial; for a frame
// longer than the MTU, the GSO type of its TCP segment. It reports false
// for a frame the driver cannot take (too long, not joinable).
func (d *Device) rxHeader(hdr, frame []byte) (partial, bool) {
	c := partial{at: -1}
	f := d.drvFeatures
	long := len(frame) > 14+int(d.opt.MTU)
	t := parseL4(frame)
	if long {
		switch {
		case t.proto != 6 || t.frag:
			return c, false
		case t.v6 && f&FeatureGuestTSO6 != 0:
			hdr[1] = 4 // VIRTIO_NET_HDR_GSO_TCPV6
		case !t.v6 && f&FeatureGuestTSO4 != 0:
			hdr[1] = 1 // VIRTIO_NET_HDR_GSO_TCPV4
		default:
			return c, false
		}
		hl := t.l4 + t.l4hdr
		binary.LittleEndian.PutUint16(hdr[2:], uint16(hl))                     // hdr_len
		binary.LittleEndian.PutUint16(hdr[4:], uint16(int(d.opt.MTU)-(hl-14))) // gso_size
	}
	if f&FeatureGuestCSUM == 0 {
		return c, true
	}
	if d.opt.Partial && (t.proto == 6 || t.proto == 17) && !t.frag {
		off := 16 // TCP checksum (RFC 9293 §3.1)
		if t.proto == 17 {
			off = 6 // UDP checksum (RFC 768)
		}
		hdr[0] = 1 // VIRTIO_NET_HDR_F_NEEDS_CSUM
		binary.LittleEndian.PutUint16(hdr[6:], uint16(t.l4))
		binary.LittleEndian.PutUint16(hdr[8:], uint16(off))
		c = partial{at: hdrSize + t.l4 + off, val: t.pseudo}
		return c, true
	}
	if d.opt.Vouch {
		hdr[0] = 2 // VIRTIO_NET_HDR_F_DATA_VALID
	}
	return c, true
}

// l4 is what rxHeader needs of a frame's IP and transport headers.
type l4 struct {
	v6     bool
	frag   bool   // an IP fragment, or IPv6 with extension headers
	proto  int    // 6 TCP, 17 UDP, -1 none
	l4     int    // transport header offset in the frame
	l4hdr  int    // TCP header length
	pseudo uint16 // folded pseudo-header sum (RFC 9293 §3.1, RFC 8200 §8.1)
}

func parseL4(fr []byte) l4 {
	t := l4{proto: -1}
	if len(fr) < 14 {
		return t
	}
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(b[i])<<8 | uint32(b[i+1])
		}
	}
	switch binary.BigEndian.Uint16(fr[12:]) {
	case 0x0800:
		if len(fr) < 34 {
			return t
		}
		ip := fr[14:]
		ihl := int(ip[0]&15) * 4
		tot := int(binary.BigEndian.Uint16(ip[2:]))
		if ihl < 20 || tot < ihl || len(ip) < tot {
			return t
		}
		t.frag = binary.BigEndian.Uint16(ip[6:])&0x3fff != 0
		t.proto = int(ip[9])
		t.l4 = 14 + ihl
		add(ip[12:20])
		sum += uint32(t.proto) + uint32(tot-ihl)
	case 0x86dd:
		if len(fr) < 54 {
			return t
		}
		ip := fr[14:]
		t.v6 = true
		t.proto = int(ip[6])
		t.frag = t.proto != 6 && t.proto != 17
		t.l4 = 54
		add(ip[8:40])
		sum += uint32(t.proto) + uint32(binary.BigEndian.Uint16(ip[4:]))
	default:
		return t
	}
	if t.proto == 6 && len(fr) >= t.l4+20 {
		t.l4hdr = int(fr[t.l4+12]>>4) * 4
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	t.pseudo = uint16(sum)
	return t
}
