package virtio

import (
	"encoding/binary"
	"fmt"

	"github.com/tamanet/tamanet/alloc"
	"github.com/tamanet/tamanet/nic"
	"github.com/tamanet/tamanet/nic/virtio/internal/vring"
)

// setOffloads derives d.off from the negotiated features, once the MTU and
// the rings are known: the transmit side from offloads, the receive side
// here.
func (d *Driver) setOffloads() error {
	f := d.features
	d.mrg = f&FeatureMrgRxBuf != 0
	o := d.offloads() // the transmit side
	o.RxChecksum = f&FeatureGuestCSUM != 0
	o.MaxRxPacket = d.info.MaxFrame
	o.MaxRxBuffers = 1
	if f&(FeatureGuestTSO4|FeatureGuestTSO6) != 0 {
		o.MaxRxPacket = MaxGSOPacket
	}
	if d.mrg {
		// A device fills each buffer before it takes the next one
		// (§5.1.6.4), so a packet spans at most this many; the header
		// is in the first only.
		per := d.pool.BufferSize() - d.rxOff
		o.MaxRxBuffers = (HeaderSize + o.MaxRxPacket + per - 1) / per
		if o.MaxRxBuffers > d.rx.num {
			// The device would wait for more buffers than the ring
			// holds: receive would stop for good.
			return fmt.Errorf("%w: rx ring of %d cannot hold a %d-byte joined packet (%d buffers); use a larger ring or NoOffloads",
				ErrConfig, d.rx.num, o.MaxRxPacket, o.MaxRxBuffers)
		}
	}
	d.off = o
	d.multi = make([]*alloc.Buffer, o.MaxRxBuffers)
	return nil
}

// ReceivePacket implements nic.Offloader: it takes the next received
// packet's buffers, in order, into bufs and returns how many, 0 when none
// is pending. The first buffer's body starts after the virtio-net header;
// the others' bodies are all packet data (§5.1.6.4: the header is only in
// the first). len(bufs) must be at least Offloads().MaxRxBuffers.
//
// Everything the device wrote is checked; a bad packet is counted under
// one cause, all its buffers go back to the pool, and the next packet is
// tried:
//   - a used length below the header, above the posted length, or 0 for
//     a buffer after the first: BadLength;
//   - num_buffers 0, above MaxRxBuffers, or more than the used entries
//     published (a conforming device publishes all of a packet's buffers
//     together, §5.1.6.4, so the rest will not come): Malformed;
//   - after a bad first entry (length or num_buffers) of a packet that
//     may span buffers, every entry published with it is dropped too
//     (resync), uncounted: where the next packet starts is unknown;
//   - flags or gso_type the negotiated features do not allow, a GSO
//     packet without gso_size, a partial checksum outside the packet:
//     Malformed;
//   - a packet shorter than an Ethernet header (Runt) or longer than
//     MaxRxPacket, or than Info.MaxFrame when not joined (Oversize).
//
// Partial data is never returned. No state is kept across calls: a packet
// is taken whole or dropped whole.
func (d *Driver) ReceivePacket(bufs []*alloc.Buffer) (int, nic.RxMeta) {
	q := &d.rx
	armed := false
	for {
		b, id, n, ok := q.next(&d.rxc)
		if !ok {
			if armed || q.badIndex {
				return 0, nic.RxMeta{}
			}
			// As in Receive: arm, then look once more (§2.7.10).
			q.armInterrupt(d.eventIdx)
			armed = true
			continue
		}
		if b == nil {
			continue // bad id, counted
		}
		// Entries published so far, this packet's first among them:
		// read after next, whose own read of the index it extends (the
		// device may publish more meanwhile, never fewer).
		visible := int(vring.Load16(q.used, vring.UsedIdx)-q.lastUsed()) + 1
		if n < HeaderSize || n > q.blen[id] {
			d.rxc.Drop(nic.BadLength)
			b.Free()
			d.resync(visible)
			continue
		}
		b.SetBody(d.rxOff, int(n)) // cannot fail: n <= posted length
		hdr := b.Bytes()[:HeaderSize:HeaderSize]
		nb := 1
		if d.mrg {
			nb = int(binary.LittleEndian.Uint16(hdr[hdrNumBuffers:]))
		}
		if nb < 1 || nb > d.off.MaxRxBuffers || nb > len(bufs) || nb > visible {
			d.rxc.Drop(nic.Malformed)
			b.Free()
			d.resync(visible)
			continue
		}
		meta, cause := d.parseHeader(hdr)
		bufs[0] = b
		total := int(n) - HeaderSize
		held, taken := 1, 1 // buffers in bufs; entries consumed
		for taken < nb {
			c, cid, cn, ok := q.next(&d.rxc)
			if !ok {
				// The index turned untrustworthy under us.
				cause = nic.Malformed
				break
			}
			taken++
			if c == nil {
				cause = nic.NumCauses // counted by next
				break
			}
			bufs[held] = c
			held++
			if cn == 0 || cn > q.blen[cid] {
				cause = nic.BadLength
				break
			}
			c.SetBody(d.rxOff, int(cn))
			total += int(cn)
		}
		whole := held == nb
		if whole && cause == nic.NumCauses {
			cause = d.checkPacket(&meta, total)
		}
		if !whole || cause != nic.NumCauses {
			if cause != nic.NumCauses {
				d.rxc.Drop(cause)
			}
			for i := range held {
				bufs[i].Free()
				bufs[i] = nil
			}
			if taken < nb && cause != nic.Malformed {
				// A bad entry inside the packet: the rest of it is
				// published; drop it too.
				d.discard(nb - taken)
			}
			continue
		}
		b.SetBody(d.rxOff+HeaderSize, int(n)-HeaderSize)
		d.rxc.Count(total)
		return nb, meta
	}
}

// resync drops, after a bad first entry, the other visible-1 entries
// published with it when packets span buffers: where the next packet starts
// is unknown, and a buffer in the middle of one must never be read as a
// header. They go uncounted: the bad entry was counted for all of them.
func (d *Driver) resync(visible int) {
	if d.mrg {
		d.discard(visible - 1)
	}
}

// discard takes up to n more used entries and frees their buffers, for the
// rest of a packet already counted as dropped.
func (d *Driver) discard(n int) {
	for range n {
		b, _, _, ok := d.rx.next(&d.rxc)
		if !ok {
			return
		}
		if b != nil {
			b.Free()
		}
	}
}

// parseHeader reads the receive header's flags and gso_type (§5.1.6.4) and
// returns what they say, or a cause other than nic.NumCauses when the
// negotiated features do not allow them.
func (d *Driver) parseHeader(hdr []byte) (m nic.RxMeta, cause nic.Cause) {
	f := d.features
	flags, gso := hdr[hdrFlags], hdr[hdrGSOType]
	// §5.1.6.4.1: without GUEST_CSUM the device sets flags to 0; with
	// it, only NEEDS_CSUM and DATA_VALID (RSC_INFO needs RSC_EXT).
	if flags&^(HdrFNeedsCsum|HdrFDataValid) != 0 || flags != 0 && f&FeatureGuestCSUM == 0 {
		return m, nic.Malformed
	}
	m.Verified = flags != 0
	if flags&HdrFNeedsCsum != 0 {
		m.NeedsCsum = true
		m.CsumStart = binary.LittleEndian.Uint16(hdr[hdrCsumStart:])
		m.CsumOffset = binary.LittleEndian.Uint16(hdr[hdrCsumOffset:])
	}
	switch gso &^ GSOECN {
	case GSONone:
		if gso != GSONone {
			return m, nic.Malformed // ECN without a type
		}
		return m, nic.NumCauses
	case GSOTCPv4:
		if f&FeatureGuestTSO4 == 0 {
			return m, nic.Malformed
		}
		m.GSO = nic.GSOTCPv4
	case GSOTCPv6:
		if f&FeatureGuestTSO6 == 0 {
			return m, nic.Malformed
		}
		m.GSO = nic.GSOTCPv6
	default:
		return m, nic.Malformed // UDP (UFO) or unknown: never negotiated
	}
	if gso&GSOECN != 0 && f&FeatureGuestECN == 0 {
		return m, nic.Malformed
	}
	if binary.LittleEndian.Uint16(hdr[hdrGSOSize:]) == 0 {
		return m, nic.Malformed
	}
	return m, nic.NumCauses
}

// checkPacket checks a whole packet's length against what its header says,
// and the partial checksum's place.
func (d *Driver) checkPacket(m *nic.RxMeta, total int) nic.Cause {
	switch {
	case total < 14:
		return nic.Runt
	case m.GSO == nic.GSONone && total > d.info.MaxFrame, total > d.off.MaxRxPacket:
		return nic.Oversize
	case m.NeedsCsum && (m.CsumStart < 14 || int(m.CsumStart)+int(m.CsumOffset)+2 > total):
		return nic.Malformed
	}
	return nic.NumCauses
}

// receiveOne is Receive with receive offloads negotiated.
func (d *Driver) receiveOne() *alloc.Buffer {
	for {
		n, meta := d.ReceivePacket(d.multi)
		if n == 1 && !meta.NeedsCsum {
			b := d.multi[0]
			d.multi[0] = nil
			return b
		}
		if n == 0 {
			return nil
		}
		for i := range n {
			d.multi[i].Free()
			d.multi[i] = nil
		}
		if n > 1 {
			d.rxc.Drop(nic.Oversize)
		} else {
			d.rxc.Drop(nic.Malformed)
		}
	}
}
