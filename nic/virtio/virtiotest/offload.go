package virtiotest

import (
	"encoding/binary"
	"os"
	"sync"

	"github.com/tamanet/tamanet/internal/netns"
)

// Transmit offload feature bits (virtio 1.2 §5.1.3), for Options.Features.
const (
	FeatureCSUM     = 1 << 0  // VIRTIO_NET_F_CSUM
	FeatureHostTSO4 = 1 << 11 // VIRTIO_NET_F_HOST_TSO4
	FeatureHostTSO6 = 1 << 12 // VIRTIO_NET_F_HOST_TSO6
	FeatureHostECN  = 1 << 13 // VIRTIO_NET_F_HOST_ECN

	// TxOffloads is every transmit offload the model implements.
	TxOffloads = FeatureCSUM | FeatureHostTSO4 | FeatureHostTSO6

	// MaxTxPacket is the longest packet the model takes off the tx ring
	// with TSO: an Ethernet header and a 64 KiB IP packet.
	MaxTxPacket = 14 + 1<<16
)

// struct virtio_net_hdr (§5.1.6): offsets and values.
const (
	hdrFlags      = 0
	hdrGSOType    = 1
	hdrHdrLen     = 2
	hdrGSOSize    = 4
	hdrCsumStart  = 6
	hdrCsumOffset = 8

	hdrFNeedsCsum = 1    // VIRTIO_NET_HDR_F_NEEDS_CSUM
	hdrFDataValid = 2    // VIRTIO_NET_HDR_F_DATA_VALID
	gsoNone       = 0    // VIRTIO_NET_HDR_GSO_NONE
	gsoTCPv4      = 1    // VIRTIO_NET_HDR_GSO_TCPV4
	gsoTCPv6      = 4    // VIRTIO_NET_HDR_GSO_TCPV6
	gsoECN        = 0x80 // VIRTIO_NET_HDR_GSO_ECN
)

// txState is the model's transmit side: the packet being taken off the
// ring and, for TSO, how far its segmentation got.
type txState struct {
	pkt []byte // virtio-net header + packet, gathered from the chain

	// vnet: the backend is a tap opened with IFF_VNET_HDR; the header
	// goes through to the kernel with the packet, which does the
	// offloads itself.
	vnet bool

	active bool   // a TSO packet is being cut
	head   uint16 // its chain, completed when the last frame is out
	n      int    // packet length
	l4     int    // offset of the TCP header
	hl     int    // Ethernet + IP + TCP header length
	v6     bool
	mss    int
	off    int // payload offset of the next segment
	i      int // index of the next segment
}

func (d *Device) has(f uint64) bool { return d.drvFeatures&f != 0 }

// txPacketLocked checks the packet of the chain at head (total bytes in
// q.segs) and stages it at stage[k]: as it is, with its checksum filled in
// (NEEDS_CSUM), or cut into frames (TSO, which may continue in later calls:
// done false). A packet the model cannot carry is counted and dropped.
func (d *Device) txPacketLocked(q *vq, head uint16, total int, stage [][]byte, stageN []int, k int) (int, bool) {
	n := total - hdrSize
	switch {
	case n < 0:
		d.stats.DeviceErrors++
		return k, true
	case n > MaxTxPacket:
		d.stats.Oversize++
		return k, true
	}
	d.gather(q, 0, d.tx.pkt[:total])
	return d.txFrameLocked(head, total, stage, stageN, k)
}

// txFrameLocked is txPacketLocked for the packet gathered into d.tx.pkt.
func (d *Device) txFrameLocked(head uint16, total int, stage [][]byte, stageN []int, k int) (int, bool) {
	n := total - hdrSize
	t := &d.tx
	buf := t.pkt[:total]
	h, p := buf[:hdrSize], buf[hdrSize:]
	f := &d.faults
	if f.TxHeaderLie > 0 && d.rng.Float64() < f.TxHeaderLie {
		d.stats.HeaderLies++
		d.lie(h, n)
	}
	if !d.checkHeader(h, p) {
		d.stats.BadHeaders++
		return k, true
	}
	if t.vnet {
		// The kernel checks and does the offloads (virtio_net_hdr_to_skb).
		if total > len(stage[k]) {
			d.stats.Oversize++
			return k, true
		}
		stageN[k] = copy(stage[k], buf)
		if h[hdrGSOType] != gsoNone {
			d.stats.TxGSO++
		}
		d.stats.TxFrames++
		d.stats.TxBytes += uint64(n)
		return k + 1, true
	}
	if h[hdrGSOType] == gsoNone {
		if n > MaxFrame {
			d.stats.Oversize++
			return k, true
		}
		fr := stage[k][:n]
		copy(fr, p)
		if h[hdrFlags]&hdrFNeedsCsum != 0 {
			start := int(binary.LittleEndian.Uint16(h[hdrCsumStart:]))
			at := start + int(binary.LittleEndian.Uint16(h[hdrCsumOffset:]))
			// §5.1.6.2: the field holds the pseudo-header sum; the
			// device sums from csum_start to the end, field included.
			// A result of 0 goes out as 0xffff, as Linux does
			// (CSUM_MANGLED_0), which UDP needs (RFC 768).
			c := ^fold(sum(fr[start:], 0))
			if c == 0 {
				c = 0xffff
			}
			binary.BigEndian.PutUint16(fr[at:], c)
			d.stats.TxCsum++
		}
		stageN[k] = n
		d.stats.TxFrames++
		d.stats.TxBytes += uint64(n)
		return k + 1, true
	}
	t.active, t.head, t.n, t.off, t.i = true, head, n, 0, 0
	t.mss = int(binary.LittleEndian.Uint16(h[hdrGSOSize:]))
	d.stats.TxGSO++
	return d.segmentLocked(stage, stageN, k), !t.active
}

// checkHeader reports whether the header h of packet p is one a device can
// honour (virtio 1.2 §5.1.6.2, §5.1.6.2.1). For TSO it also parses the
// Ethernet, IP and TCP headers into d.tx, as a device does: hdr_len is
// only a hint (without VIRTIO_NET_F_GUEST_HDRLEN), but it must not point
// beyond the packet.
func (d *Device) checkHeader(h, p []byte) bool {
	n := len(p)
	flags, gt := h[hdrFlags], h[hdrGSOType]
	if flags&^hdrFNeedsCsum != 0 {
		return false // DATA_VALID and RSC_INFO are the device's (§5.1.6.2.1)
	}
	if flags&hdrFNeedsCsum != 0 {
		start := int(binary.LittleEndian.Uint16(h[hdrCsumStart:]))
		off := int(binary.LittleEndian.Uint16(h[hdrCsumOffset:]))
		if !d.has(FeatureCSUM) || start+off+2 > n {
			return false
		}
	}
	if gt == gsoNone {
		return true
	}
	if gt&gsoECN != 0 && !d.has(FeatureHostECN) {
		return false
	}
	t := &d.tx
	switch gt &^ gsoECN {
	case gsoTCPv4:
		t.v6 = false
		if !d.has(FeatureHostTSO4) {
			return false
		}
	case gsoTCPv6:
		t.v6 = true
		if !d.has(FeatureHostTSO6) {
			return false
		}
	default:
		return false
	}
	if flags&hdrFNeedsCsum == 0 || binary.LittleEndian.Uint16(h[hdrGSOSize:]) == 0 ||
		int(binary.LittleEndian.Uint16(h[hdrHdrLen:])) > n {
		return false
	}
	// The headers, as the device finds them: Ethernet II, then IPv4
	// (RFC 791) or IPv6 without extension headers (RFC 8200), then TCP
	// (RFC 9293) for the GSO type.
	if n < 14 {
		return false
	}
	et := binary.BigEndian.Uint16(p[12:])
	l3 := 14
	if !t.v6 {
		if et != 0x0800 || n < l3+20 || p[l3]>>4 != 4 || p[l3+9] != 6 {
			return false
		}
		t.l4 = l3 + int(p[l3]&0xf)*4
		if p[l3]&0xf < 5 {
			return false
		}
	} else {
		if et != 0x86dd || n < l3+40 || p[l3]>>4 != 6 || p[l3+6] != 6 {
			return false
		}
		t.l4 = l3 + 40
	}
	if n < t.l4+20 {
		return false
	}
	t.hl = t.l4 + int(p[t.l4+12]>>4)*4
	if p[t.l4+12]>>4 < 5 || t.hl > n {
		return false
	}
	// Every frame must fit the wire.
	return t.hl+int(binary.LittleEndian.Uint16(h[hdrGSOSize:])) <= MaxFrame
}

// segmentLocked cuts the TSO packet in d.tx into frames of at most mss
// payload bytes, into stage from k on, as a NIC does: each frame repeats
// the headers, with the IPv4 total length, id (+1 per frame) and header
// checksum, or the IPv6 payload length, fixed; the TCP sequence number
// advanced; FIN and PSH only on the last frame, CWR only on the first; the
// TCP checksum computed over the frame. It returns the new k and clears
// d.tx.active when the last frame is staged.
func (d *Device) segmentLocked(stage [][]byte, stageN []int, k int) int {
	t := &d.tx
	p := t.pkt[hdrSize : hdrSize+t.n]
	payload := t.n - t.hl
	l3, l4, hl := 14, t.l4, t.hl
	seq0 := binary.BigEndian.Uint32(p[l4+4:])
	for k < len(stage) && (t.off < payload || t.i == 0) {
		ln := min(t.mss, payload-t.off)
		f := stage[k][:hl+ln]
		copy(f, p[:hl])
		copy(f[hl:], p[hl+t.off:hl+t.off+ln])
		ip := f[l3:]
		if !t.v6 {
			binary.BigEndian.PutUint16(ip[2:], uint16(hl-l3+ln))
			binary.BigEndian.PutUint16(ip[4:], binary.BigEndian.Uint16(p[l3+4:])+uint16(t.i))
			ip[10], ip[11] = 0, 0
			binary.BigEndian.PutUint16(ip[10:], ^fold(sum(ip[:l4-l3], 0)))
		} else {
			binary.BigEndian.PutUint16(ip[4:], uint16(hl-l4+ln))
		}
		tcp := f[l4:]
		binary.BigEndian.PutUint32(tcp[4:], seq0+uint32(t.off))
		if t.off+ln < payload {
			tcp[13] &^= 0x01 | 0x08 // FIN, PSH
		}
		if t.i > 0 {
			tcp[13] &^= 0x80 // CWR
		}
		tcp[16], tcp[17] = 0, 0
		var ps uint32
		if !t.v6 {
			ps = sum(ip[12:20], 0)
		} else {
			ps = sum(ip[8:40], 0)
		}
		ps += 6 + uint32(len(tcp))
		binary.BigEndian.PutUint16(tcp[16:], ^fold(sum(tcp, ps)))
		stageN[k] = len(f)
		k++
		t.off += ln
		t.i++
		d.stats.TxSegments++
		d.stats.TxFrames++
		d.stats.TxBytes += uint64(len(f))
	}
	if t.off >= payload && t.i > 0 {
		t.active = false
	}
	return k
}

// lie rewrites header h of an n-byte packet so that it lies (TxHeaderLie).
func (d *Device) lie(h []byte, n int) {
	put := binary.LittleEndian.PutUint16
	switch d.rng.IntN(5) {
	case 0: // checksum field beyond the packet
		h[hdrFlags] |= hdrFNeedsCsum
		put(h[hdrCsumStart:], uint16(min(n, 0xffff)))
		put(h[hdrCsumOffset:], 6)
	case 1: // a GSO type that does not exist
		h[hdrGSOType] = 3
	case 2: // segments of no payload
		if h[hdrGSOType] == gsoNone {
			h[hdrGSOType] = gsoTCPv4
		}
		put(h[hdrGSOSize:], 0)
	case 3: // headers longer than the packet
		h[hdrFlags] |= hdrFNeedsCsum
		h[hdrGSOType] = gsoTCPv4
		put(h[hdrGSOSize:], 1000)
		put(h[hdrHdrLen:], uint16(min(n+1, 0xffff)))
	default: // ECN, which the model never offers unless asked
		if d.has(FeatureHostECN) {
			h[hdrGSOType] = 5
		} else {
			h[hdrGSOType] = gsoTCPv4 | gsoECN
		}
	}
}

// sum adds b as big-endian 16-bit words (an odd last byte padded with
// zero) to s, the Internet checksum's one's-complement sum (RFC 1071),
// unfolded.
func sum(b []byte, s uint32) uint32 {
	for len(b) >= 2 {
		s += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
		if s >= 1<<31 {
			s = s&0xffff + s>>16
		}
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	return s
}

func fold(s uint32) uint16 {
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

// vnetTap is the device's tap with IFF_VNET_HDR (AttachTapVnet).
type vnetTap struct {
	f  *os.File       // nil when none is attached, or after Close
	rx bool           // frames from the wire start with a virtio-net header
	wg sync.WaitGroup // the reader
}

// tapReadSize holds anything one read of a tap returns: the header and a
// GSO packet of up to 64 KiB of IP (the kernel's GSO_LEGACY_MAX_SIZE) with
// its link header, with room to spare.
const tapReadSize = 1 << 17

// AttachTapVnet makes f, a tap opened with IFF_VNET_HDR and a 12-byte
// header (netns.OpenTapVnet), the device's wire, as AttachTap does, but
// with the virtio-net header passed through both ways, as QEMU does with a
// tap. A transmitted packet goes to the kernel with the driver's header,
// so Linux itself checks it, fills checksums and segments TSO packets. On
// receive, the tap is given the receive offloads the driver negotiated
// (TUNSETOFFLOAD: GUEST_CSUM, GUEST_TSO4/6, GUEST_ECN), set again on every
// FEATURES_OK and cleared on reset, and the kernel's header goes with its
// frame into the receive ring; a header the features do not allow is
// counted in RxBadHeaders and the frame dropped. With GUEST_TSO4/6 offered,
// Options.MaxPacket should be MaxGSOPacket, or joined packets are dropped
// as Oversize. From here on, frames given to Deliver start with a header
// too, as the kernel's do.
func (d *Device) AttachTapVnet(f *os.File) {
	d.w.SetStageSize(hdrSize + MaxTxPacket)
	d.mu.Lock()
	d.tx.vnet = true
	d.vt.f, d.vt.rx = f, true
	var off uint32
	if d.status&statusFeaturesOK != 0 {
		off = tapOffloads(d.drvFeatures) // negotiated before the tap came
	}
	d.setTapOffloadLocked(off)
	d.mu.Unlock()
	d.w.SetOutput(func(p []byte) { f.Write(p) })
	d.vt.wg.Add(1)
	go d.readTap(f)
}

// readTap delivers what the kernel hands over on f, header and frame, until
// f is closed.
func (d *Device) readTap(f *os.File) {
	defer d.vt.wg.Done()
	buf := make([]byte, tapReadSize)
	for {
		n, err := f.Read(buf)
		if err != nil {
			return
		}
		switch {
		case n > len(buf):
			// tun returns the packet's length even when only what
			// fit was copied.
			d.mu.Lock()
			d.stats.Oversize++
			d.mu.Unlock()
		case n >= hdrSize:
			d.w.Deliver(buf[:n])
		}
	}
}

// closeVnet closes a tap attached with AttachTapVnet and waits for its
// reader.
func (d *Device) closeVnet() error {
	d.mu.Lock()
	f := d.vt.f
	d.vt.f = nil
	d.mu.Unlock()
	if f == nil {
		return nil
	}
	d.w.SetOutput(nil)
	err := f.Close()
	d.vt.wg.Wait()
	return err
}

// tapOffloads maps negotiated receive features to the tap's offloads, as
// QEMU does: GUEST_CSUM to TUN_F_CSUM, GUEST_TSO4/6 to TUN_F_TSO4/6,
// GUEST_ECN to TUN_F_TSO_ECN (virtio 1.2 §5.1.3, <linux/if_tun.h>). The
// kernel refuses TSO without TUN_F_CSUM and TUN_F_TSO_ECN without TSO, and
// so does §5.1.3.1 for the features: those are left out.
func tapOffloads(f uint64) uint32 {
	if f&FeatureGuestCSUM == 0 {
		return 0
	}
	o := uint32(netns.TunFCsum)
	if f&FeatureGuestTSO4 != 0 {
		o |= netns.TunFTSO4
	}
	if f&FeatureGuestTSO6 != 0 {
		o |= netns.TunFTSO6
	}
	if f&FeatureGuestECN != 0 && o != netns.TunFCsum {
		o |= netns.TunFTSOECN
	}
	return o
}

// setTapOffloadLocked gives the tap, if one is attached, the offloads o.
func (d *Device) setTapOffloadLocked(o uint32) {
	if d.vt.f == nil {
		return
	}
	if err := netns.SetTapOffload(d.vt.f, o); err != nil {
		d.stats.TapOffloadErrors++
		return
	}
	d.stats.TapOffloads = uint64(o)
}

// tapHeaderOK reports whether the kernel's header h for an n-byte frame is
// one the device may write with the negotiated features (virtio 1.2
// §5.1.6.4.1): flags only with GUEST_CSUM, and only NEEDS_CSUM and
// DATA_VALID (RSC_INFO needs RSC_EXT); a checksum field inside the frame;
// GSO only TCPV4 or TCPV6 with GUEST_TSO4 or GUEST_TSO6, GSO_ECN with
// GUEST_ECN, NEEDS_CSUM and a gso_size. The tap's offloads should keep the
// kernel from sending anything else.
func (d *Device) tapHeaderOK(h []byte, n int) bool {
	flags, gt := h[hdrFlags], h[hdrGSOType]
	if flags&^(hdrFNeedsCsum|hdrFDataValid) != 0 || flags != 0 && !d.has(FeatureGuestCSUM) {
		return false
	}
	if flags&hdrFNeedsCsum != 0 {
		start := int(binary.LittleEndian.Uint16(h[hdrCsumStart:]))
		off := int(binary.LittleEndian.Uint16(h[hdrCsumOffset:]))
		if start+off+2 > n {
			return false
		}
	}
	switch gt &^ gsoECN {
	case gsoNone:
		return gt == gsoNone
	case gsoTCPv4:
		if !d.has(FeatureGuestTSO4) {
			return false
		}
	case gsoTCPv6:
		if !d.has(FeatureGuestTSO6) {
			return false
		}
	default:
		return false
	}
	if gt&gsoECN != 0 && !d.has(FeatureGuestECN) {
		return false
	}
	return flags&hdrFNeedsCsum != 0 && binary.LittleEndian.Uint16(h[hdrGSOSize:]) != 0
}
