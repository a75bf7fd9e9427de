package virtio

import (
	"encoding/binary"

	"github.com/tamanet/tamanet/alloc"
	"github.com/tamanet/tamanet/nic"
	"github.com/tamanet/tamanet/nic/virtio/internal/vring"
)

// errMalformed refuses a packet whose TxMeta the device could not honour:
// offsets outside the packet, an offload not negotiated, a bad GSO size.
var errMalformed = &nic.Refusal{Cause: nic.Malformed}

// offloads derives what the negotiated transmit features offer (New, once,
// through setOffloads).
func (d *Driver) offloads() nic.Offloads {
	f := d.features
	o := nic.Offloads{
		TxChecksum:  f&FeatureCSUM != 0,
		TxPartial:   f&FeatureCSUM != 0, // §5.1.6.2: the device adds to the field's sum
		TSO4:        f&FeatureHostTSO4 != 0,
		TSO6:        f&FeatureHostTSO6 != 0,
		MaxTxPacket: d.info.MaxFrame,
	}
	if o.TSO4 || o.TSO6 {
		o.MaxTxPacket = MaxTxPacket
	}
	// The caller fills the first buffer behind its headroom and each
	// further one from offset 0; one more for a split that leaves a
	// short tail. Never more than the ring holds.
	size := d.pool.BufferSize()
	first := size - d.pool.DefaultHeadroom()
	o.MaxTxBuffers = 1
	if o.MaxTxPacket > first {
		o.MaxTxBuffers += (o.MaxTxPacket - first + size - 1) / size
	}
	o.MaxTxBuffers = min(o.MaxTxBuffers+1, d.tx.num)
	return o
}

// Offloads implements nic.Offloader: the offloads negotiated at New.
func (d *Driver) Offloads() nic.Offloads { return d.off }

// TransmitPacket implements nic.Offloader. It posts the buffers of bufs, in
// order, as one descriptor chain (§2.7.6, VIRTQ_DESC_F_NEXT) whose first
// descriptor starts with the virtio-net header, written into bufs[0]'s
// headroom from meta (§5.1.6.2). The chain takes len(bufs) descriptors; a
// ring without that many free refuses with nic.ErrRingFull. meta (nil: no
// offload) is checked against the packet and the negotiated features, and
// refused as nic.Malformed when the device could not honour it: a
// checksum whose field lies outside the packet, GSO without NEEDS_CSUM, a
// GSO type not negotiated, a zero gso_size, a hdr_len that is not inside
// the packet or makes frames longer than the MTU allows.
func (d *Driver) TransmitPacket(bufs []*alloc.Buffer, meta *nic.TxMeta) error {
	q := &d.tx
	nb := len(bufs)
	if nb == 0 {
		return nic.ErrRunt
	}
	total := 0
	for _, b := range bufs {
		if b.Len() == 0 {
			return errMalformed // a zero-length descriptor carries nothing
		}
		total += b.Len()
	}
	var m nic.TxMeta
	if meta != nil {
		m = *meta
	}
	limit := d.info.MaxFrame
	if m.GSO != nic.GSONone {
		limit = d.off.MaxTxPacket
	}
	switch {
	case total < 14:
		return nic.ErrRunt
	case !d.validMeta(&m, total):
		return errMalformed
	case total > limit || nb > d.off.MaxTxBuffers:
		return nic.ErrOversize
	case bufs[0].Headroom() < HeaderSize:
		return nic.ErrHeadroom
	case d.down.Load():
		return nic.ErrLinkDown
	case q.nfree < nb:
		d.txc.Full.Add(1) // back-pressure: the caller keeps bufs
		return nic.ErrRingFull
	}
	hdr, _ := bufs[0].Prepend(HeaderSize) // cannot fail: the headroom is there
	clear(hdr)
	if m.NeedsCsum {
		hdr[hdrFlags] = HdrFNeedsCsum
		binary.LittleEndian.PutUint16(hdr[hdrCsumStart:], m.CsumStart)
		binary.LittleEndian.PutUint16(hdr[hdrCsumOffset:], m.CsumOffset)
	}
	if m.GSO != nic.GSONone {
		hdr[hdrGSOType] = GSOTCPv4
		if m.GSO == nic.GSOTCPv6 {
			hdr[hdrGSOType] = GSOTCPv6
		}
		binary.LittleEndian.PutUint16(hdr[hdrHdrLen:], m.HdrLen)
		binary.LittleEndian.PutUint16(hdr[hdrGSOSize:], m.GSOSize)
	}
	// num_buffers stays 0: it is the device's, on receive (§5.1.6).
	q.postChain(bufs, q.postMark())
	q.publish()
	d.txc.Count(total)
	return nil
}

// validMeta reports whether the device can do what m asks for a packet of
// total bytes.
func (d *Driver) validMeta(m *nic.TxMeta, total int) bool {
	if m.NeedsCsum {
		// §5.1.6.2: NEEDS_CSUM only with VIRTIO_NET_F_CSUM; the
		// 16-bit field at csum_start+csum_offset inside the packet.
		if !d.off.TxChecksum || int(m.CsumStart)+int(m.CsumOffset)+2 > total {
			return false
		}
	}
	switch m.GSO {
	case nic.GSONone:
		return true
	case nic.GSOTCPv4:
		if !d.off.TSO4 {
			return false
		}
	case nic.GSOTCPv6:
		if !d.off.TSO6 {
			return false
		}
	default:
		return false
	}
	// §5.1.6.2: a GSO packet needs NEEDS_CSUM; hdr_len covers the
	// headers up to the TCP payload, behind csum_start, inside the
	// packet; every frame (headers and gso_size of payload, Ethernet
	// header but no VLAN tag) must fit the MTU.
	hl := int(m.HdrLen)
	return m.NeedsCsum && m.GSOSize > 0 && hl > int(m.CsumStart) && hl < total &&
		hl+int(m.GSOSize) <= 14+d.info.MTU
}

// postChain writes bufs as one descriptor chain, in order, and publishes
// its head in the next avail slot (the caller stores avail.idx). The
// caller has checked that len(bufs) descriptors are free.
func (q *queue) postChain(bufs []*alloc.Buffer, mark uint64) {
	q.nfree--
	head := q.free[q.nfree]
	id := head
	total := 0
	for i, b := range bufs {
		q.bufs[id] = b // owned by the device until Reclaim
		q.postedAt[id] = mark
		total += b.Len()
		var flags, next uint16
		if i < len(bufs)-1 {
			q.nfree--
			next = q.free[q.nfree]
			q.link[id] = next
			q.inner[next] = true
			q.ninner++
			flags = vring.DescFNext
		}
		o := int(id) * vring.DescSize
		desc := q.desc[o : o+vring.DescSize : o+vring.DescSize]
		binary.LittleEndian.PutUint64(desc[vring.DescAddr:], uint64(b.BodyAddr()))
		binary.LittleEndian.PutUint32(desc[vring.DescLen:], uint32(b.Len()))
		binary.LittleEndian.PutUint16(desc[vring.DescFlags:], flags)
		binary.LittleEndian.PutUint16(desc[vring.DescNext:], next)
		id = next
	}
	q.more[head] = uint16(len(bufs) - 1)
	q.blen[head] = uint32(total)
	// Descriptors first, then the ring slot (§2.7.13).
	s := vring.AvailSlot(q.availIdx, q.mask)
	binary.LittleEndian.PutUint16(q.avail[s:s+2], head)
	q.availIdx++
}
