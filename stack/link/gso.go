package link

import (
	"github.com/tamanet/tamanet/alloc"
	"github.com/tamanet/tamanet/nic"

	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// initOffloads takes the driver's offloads, if it has any (New).
//
// Host GSO is asked for whenever the device fills TCP checksums: gVisor
// then hands every TCP packet down with only the pseudo-header sum in its
// checksum field (tcp/connect.go buildTCPHdr), segments longer than the
// MTU included, whatever the route's network. The device cuts the
// segments it can (TSO4, TSO6); the endpoint cuts the rest into frames and
// leaves each frame's checksum to the device (segment.go). With gVisor's
// own GSO instead, gVisor would cut them and sum every byte itself.
//
// A device that fills checksums has the endpoint claim
// stack.CapabilityTXChecksumOffload too, for UDP and the TCP packets sent
// without GSO options (txcsum.go).
func (e *Endpoint) initOffloads() {
	ol, ok := e.dev.(nic.Offloader)
	if !ok {
		return
	}
	e.ol = ol
	e.off = ol.Offloads()
	e.tso = e.off.TSO4 && e.off.TSO6 && e.off.TxChecksum && e.off.TxPartial &&
		e.off.MaxTxPacket > header.EthernetMinimumSize+int(e.mtu)
	e.hostGSO = e.off.TxChecksum
	e.txCsum = e.off.TxChecksum
	e.txBufs = make([]*alloc.Buffer, 0, max(e.off.MaxTxBuffers, 1))
	e.rxBufs = make([]*alloc.Buffer, max(e.off.MaxRxBuffers, 1))
}

// GSOMaxSize implements stack.GSOEndpoint: the longest IP packet gVisor
// may hand down, at most 64 KiB, or what the device cuts when it cuts
// every TCP segment.
func (e *Endpoint) GSOMaxSize() uint32 {
	if e.tso {
		return uint32(min(e.off.MaxTxPacket-header.EthernetMinimumSize, stack.GVisorGSOMaxSize))
	}
	return stack.GVisorGSOMaxSize
}

// SupportedGSO implements stack.GSOEndpoint: host GSO when the device
// fills TCP checksums (initOffloads), else gVisor's own, which builds a
// batch of MSS segments at once (tcp/connect.go sendTCPBatch) and hands
// them down one by one.
func (e *Endpoint) SupportedGSO() stack.SupportedGSO {
	if e.hostGSO {
		return stack.HostGSOSupported
	}
	return stack.GVisorGSOSupported
}

// devCuts reports whether the device cuts a TCP segment of gVisor GSO type
// typ and size bytes itself.
func (e *Endpoint) devCuts(typ stack.GSOType, size int) bool {
	if !e.off.TxPartial || size > e.off.MaxTxPacket {
		return false
	}
	return typ == stack.GSOTCPv4 && e.off.TSO4 || typ == stack.GSOTCPv6 && e.off.TSO6
}

// writeChain copies pkt into a chain of pool buffers and posts it with
// TransmitPacket, asking for the checksum and segmentation its GSO options
// want. Caller holds txMu. Once the ring stays full after a reclaim, *full
// is set and the rest of the batch is dropped without retrying.
func (e *Endpoint) writeChain(pkt *stack.PacketBuffer, maxFrame int, full *bool, sent *int) (nic.Cause, bool) {
	if *full {
		return nic.RingFull, false
	}
	size := pkt.Size()
	m := &e.txMeta
	*m = nic.TxMeta{}
	limit := maxFrame
	if g := &pkt.GSOOptions; e.hostGSO && g.NeedsCsum && (g.Type == stack.GSOTCPv4 || g.Type == stack.GSOTCPv6) {
		if pkt.Data().Size() > int(g.MSS) && !e.devCuts(g.Type, size) {
			return e.writeSegments(pkt, maxFrame, full, sent)
		}
		// The TCP checksum field holds the pseudo-header sum; the
		// device sums from the TCP header to the end (virtio 1.2
		// §5.1.6.2).
		m.NeedsCsum = true
		m.CsumStart = uint16(len(pkt.LinkHeader().Slice()) + len(pkt.NetworkHeader().Slice()))
		m.CsumOffset = g.CsumOffset
		if pkt.Data().Size() > int(g.MSS) {
			m.GSO = nic.GSOTCPv4
			if g.Type == stack.GSOTCPv6 {
				m.GSO = nic.GSOTCPv6
			}
			m.GSOSize = g.MSS
			m.HdrLen = uint16(pkt.HeaderSize())
			limit = e.off.MaxTxPacket
		}
	}
	if size > limit {
		return nic.Oversize, false
	}
	if size < header.EthernetMinimumSize {
		return nic.Runt, false
	}
	bufs, cause, ok := e.fill(pkt, size)
	if !ok {
		return cause, false
	}
	if e.txCsum && !m.NeedsCsum && len(bufs) == 1 {
		// gVisor left the transport checksum to the link (txcsum.go).
		if fr, ok := e.askChecksum(bufs[0].Bytes(), len(pkt.LinkHeader().Slice()), m); ok {
			return e.writeFragment(bufs[0], &fr, full)
		}
	}
	return e.post(bufs, m, size, full)
}

// post hands bufs, one packet of size bytes, to TransmitPacket with m,
// kicking and reclaiming once when the ring is full. It frees them if the
// driver refuses them. Caller holds txMu.
func (e *Endpoint) post(bufs []*alloc.Buffer, m *nic.TxMeta, size int, full *bool) (nic.Cause, bool) {
	cause, ok := e.transmit(bufs, m, size, full)
	if !ok {
		// A refusal: the buffers are still ours, nothing counted.
		freeAll(bufs)
	}
	return cause, ok
}

// transmit is post without the freeing: on a refusal the buffers are
// still the caller's.
func (e *Endpoint) transmit(bufs []*alloc.Buffer, m *nic.TxMeta, size int, full *bool) (nic.Cause, bool) {
	if *full {
		return nic.RingFull, false
	}
	// The buffers are ours until TransmitPacket succeeds.
	err := e.ol.TransmitPacket(bufs, m)
	if err == nic.ErrRingFull {
		// Frames Post left unkicked may be what fills the ring: the
		// device must hear of them before it can complete any.
		e.kickPosted()
		e.reclaim()
		err = e.ol.TransmitPacket(bufs, m)
		*full = err == nic.ErrRingFull
	}
	if err != nil {
		return nic.CauseOf(err), false
	}
	e.inflight += len(bufs)
	e.unkicked.Add(1)
	e.tx.Count(size)
	return 0, true
}

// fill takes pool buffers for size bytes into e.txBufs, the first with the
// driver's headroom in front and each filled to its end, and copies pkt
// into them.
func (e *Endpoint) fill(pkt *stack.PacketBuffer, size int) ([]*alloc.Buffer, nic.Cause, bool) {
	bufs := e.txBufs[:0]
	for left := size; left > 0; {
		if len(bufs) == cap(bufs) {
			freeAll(bufs)
			return nil, nic.Oversize, false
		}
		b := e.pool.Get()
		if b == nil {
			freeAll(bufs)
			return nil, nic.NoBuffer, false
		}
		var err error
		switch {
		case len(bufs) > 0:
			err = b.Reserve(0)
		case b.Headroom() < e.txHeadroom:
			err = b.Reserve(e.txHeadroom)
		}
		n := min(left, b.Cap()-b.Offset())
		if err == nil {
			_, err = b.Append(n)
		}
		if err != nil || n <= 0 {
			_ = b.Free()
			freeAll(bufs)
			return nil, nic.NoBuffer, false
		}
		bufs = append(bufs, b)
		left -= n
	}
	views, off := pkt.AsViewList()
	copied, bi := 0, 0
	dst := bufs[0].Bytes()
	for v := views.Front(); v != nil && copied < size; v = v.Next() {
		s := v.AsSlice()
		if off >= len(s) {
			off -= len(s)
			continue
		}
		s, off = s[off:], 0
		for len(s) > 0 && copied < size {
			if len(dst) == 0 {
				bi++
				dst = bufs[bi].Bytes()
			}
			n := copy(dst, s)
			dst, s = dst[n:], s[n:]
			copied += n
		}
	}
	if copied != size {
		freeAll(bufs)
		return nil, nic.Malformed, false
	}
	return bufs, 0, true
}
