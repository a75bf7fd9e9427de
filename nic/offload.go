package nic

import "github.com/tamanet/tamanet/alloc"

// Offloads says which work a device does in place of the stack, as
// negotiated when the driver started. It does not change afterwards (a
// reset negotiates the same set). The zero value is a device that does
// none: every checksum is computed and verified by the stack, and every
// packet is one frame in one buffer.
type Offloads struct {
	// TxChecksum: the device fills the TCP and UDP checksum of a frame
	// posted with TxMeta.NeedsCsum (virtio-net VIRTIO_NET_F_CSUM; ENET
	// protocol checksum insertion).
	TxChecksum bool `json:"tx_checksum"`
	// TxPartial: for NeedsCsum the checksum field must already hold the
	// pseudo-header sum, and the device adds the rest from CsumStart
	// (virtio 1.2 §5.1.6.2). Otherwise the device computes the whole
	// checksum and the field must be zero (ENET, RM 22.6.5.3).
	TxPartial bool `json:"tx_partial"`
	// TSO4 and TSO6: the device cuts a TCP segment over IPv4 or IPv6
	// longer than one frame into frames of TxMeta.GSOSize payload
	// (virtio-net HOST_TSO4/HOST_TSO6).
	TSO4 bool `json:"tso4"`
	TSO6 bool `json:"tso6"`
	// MaxTxPacket is the longest packet TransmitPacket takes, without
	// the driver's own header: an Ethernet frame, or with TSO a segment
	// of up to 64 KiB. Info.MaxFrame when the device segments nothing.
	MaxTxPacket int `json:"max_tx_packet"`
	// MaxTxBuffers is the most buffers one TransmitPacket call takes.
	MaxTxBuffers int `json:"max_tx_buffers"`
	// RxChecksum: ReceivePacket reports per packet whether the device
	// vouched for its checksums (RxMeta.Verified).
	RxChecksum bool `json:"rx_checksum"`
	// MaxRxPacket is the longest packet ReceivePacket returns (without
	// the driver's header): more than Info.MaxFrame when the device joins
	// received segments (virtio-net GUEST_TSO4/6 with MRG_RXBUF).
	MaxRxPacket int `json:"max_rx_packet"`
	// MaxRxBuffers is the most buffers one received packet spans.
	MaxRxBuffers int `json:"max_rx_buffers"`
}

// GSO types for TxMeta.GSO and RxMeta.GSO.
const (
	GSONone  = 0
	GSOTCPv4 = 1
	GSOTCPv6 = 2
)

// TxMeta is what the stack asks the device to do for one posted packet.
// The zero value asks for nothing.
type TxMeta struct {
	// NeedsCsum: the device computes the checksum that starts at byte
	// CsumStart of the frame and is stored at CsumStart+CsumOffset.
	NeedsCsum  bool
	CsumStart  uint16
	CsumOffset uint16
	// GSO is GSONone or, for a segment longer than one frame, the TCP
	// type; GSOSize is then the TCP payload per frame and HdrLen the
	// length of the Ethernet, IP and TCP headers every frame repeats.
	GSO     uint8
	GSOSize uint16
	HdrLen  uint16
}

// RxMeta is what the device says of one received packet.
type RxMeta struct {
	// Verified: the device vouches for the packet's checksums (virtio-net
	// DATA_VALID, or NEEDS_CSUM: a local sender left it to be filled;
	// ENET: checked by the MAC with discard on error). When false the
	// stack verifies every checksum itself.
	Verified bool
	// GSO is GSONone for one frame, or the TCP type of a segment the
	// device joined from several frames (longer than Info.MaxFrame).
	GSO uint8
	// NeedsCsum: the packet came from a local sender that left its
	// transport checksum to be filled: the field at CsumStart+CsumOffset
	// holds only the pseudo-header sum (virtio-net NEEDS_CSUM,
	// virtio 1.2 §5.1.6.4). Verified is set too. The driver checked that
	// the field lies inside the packet; the stack checks that it is the
	// TCP or UDP checksum.
	NeedsCsum             bool
	CsumStart, CsumOffset uint16
}

// Offloader is implemented by drivers whose device can compute checksums,
// cut segments or join received frames. The endpoint uses it in place of
// Transmit and Receive when present; Offloads says which of its features
// are in use. The per-packet rules of Device hold: no allocation, one
// goroutine per side, refusals uncounted and the buffers still the
// caller's.
type Offloader interface {
	Offloads() Offloads
	// TransmitPacket posts the buffers of bufs, in order, as one packet:
	// their bodies joined are one Ethernet frame or, with meta.GSO, one
	// TCP segment for the device to cut. bufs[0] has Info().Headroom
	// free in front. On success the driver owns every buffer until
	// Reclaim; otherwise it returns a *Refusal and owns none.
	TransmitPacket(bufs []*alloc.Buffer, meta *TxMeta) error
	// ReceivePacket writes the buffers of the next received packet into
	// bufs, in order, and returns how many (0: nothing received) and what
	// the device said of it. len(bufs) must be at least
	// Offloads().MaxRxBuffers. The caller owns the buffers.
	ReceivePacket(bufs []*alloc.Buffer) (n int, meta RxMeta)
}
