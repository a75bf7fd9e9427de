package enet

import (
	"encoding/binary"

	"github.com/tamanet/tamanet/nic"
	"github.com/tamanet/tamanet/nic/enet/internal/bd"
)

// The checksum accelerator (i.MX6ULL RM 22.4.x, "IP and TCP/UDP checksum
// accelerator"; TACC and RACC in RM 22.5).
//
// Transmit: a descriptor with PINS (and TACC.PROCHK) has the MAC compute
// the TCP or UDP checksum of an IP frame, pseudo-header included, and
// insert it; IINS (and TACC.IPCHK) the IPv4 header checksum. The MAC sums
// the field as it finds it, so it must be zero (RM, TACC field
// descriptions; Linux's fec clears it too, fec_enet_clear_csum). QEMU's
// imx.enet does the same for IPv4 frames without options or fragments and
// nothing for IPv6 (net_checksum_calculate), so IPv6 is the MAC's only with
// Config.TxChecksum6; otherwise, and for IPv4 with options, the driver
// computes the checksum itself.
//
// Receive: with RACC.IPDIS/PRODIS the MAC discards a frame whose IPv4
// header or TCP/UDP checksum is wrong, and flags ICE/PCR in the enhanced
// descriptor. It checks only what it parses: IPv4 and IPv6 TCP and UDP,
// not fragments (their checksum covers the reassembled packet). rxVouched
// vouches only for those frames, and only when the board says the MAC
// checks at all (Config.RxChecksum).

// Ethernet and IP facts the accelerator works with.
const (
	ethHdr        = 14
	etherTypeIPv4 = 0x0800
	etherTypeIPv6 = 0x86dd
	ipv4MinHdr    = 20
	ipv6Hdr       = 40
	protoTCP      = 6
	protoUDP      = 17
	csumOffTCP    = 16 // TCP checksum field offset (RFC 9293 3.1)
	csumOffUDP    = 6  // UDP checksum field offset (RFC 768)
)

// errMeta refuses a TransmitPacket call the driver cannot do: more than one
// buffer, segmentation, or checksum offsets that do not fit the frame.
var errMeta = &nic.Refusal{Cause: nic.Malformed}

// txChecksum prepares frame for the checksum meta asks for and returns the
// transmit descriptor's ESC bits: PINS (and IINS for IPv4) when the MAC
// inserts the checksum, with the fields it fills cleared; none when the
// driver computed it here. It changes frame only once it has accepted meta.
func (d *Driver) txChecksum(frame []byte, meta *nic.TxMeta) (uint32, error) {
	if meta.GSO != nic.GSONone || !d.offloads.TxChecksum {
		return 0, errMeta
	}
	n := len(frame)
	start, field := int(meta.CsumStart), int(meta.CsumStart)+int(meta.CsumOffset)
	var proto byte
	switch meta.CsumOffset {
	case csumOffTCP:
		proto = protoTCP
	case csumOffUDP:
		proto = protoUDP
	default:
		return 0, errMeta
	}
	if n < ethHdr+ipv4MinHdr || field+2 > n {
		return 0, errMeta
	}
	ip := frame[ethHdr:]
	switch binary.BigEndian.Uint16(frame[12:]) {
	case etherTypeIPv4:
		hl := int(ip[0]&0xf) * 4
		total := int(binary.BigEndian.Uint16(ip[2:]))
		if ip[0]>>4 != 4 || hl < ipv4MinHdr || start != ethHdr+hl || ip[9] != proto ||
			binary.BigEndian.Uint16(ip[6:])&0x3fff != 0 || // a fragment: no whole datagram to sum
			ethHdr+total > n || total < hl+int(meta.CsumOffset)+2 {
			return 0, errMeta
		}
		if hl != ipv4MinHdr {
			// QEMU assumes a 20-byte header: sum it here.
			softChecksum(frame[start:ethHdr+total], int(meta.CsumOffset), proto, ip[12:20])
			return 0, nil
		}
		ip[10], ip[11] = 0, 0
		frame[field], frame[field+1] = 0, 0
		return bd.PINS | bd.IINS, nil
	case etherTypeIPv6:
		end := ethHdr + ipv6Hdr + int(binary.BigEndian.Uint16(ip[4:]))
		if n < ethHdr+ipv6Hdr || ip[0]>>4 != 6 || start < ethHdr+ipv6Hdr || end > n || field+2 > end {
			return 0, errMeta
		}
		if d.txCsum6 && start == ethHdr+ipv6Hdr && ip[6] == proto {
			frame[field], frame[field+1] = 0, 0
			return bd.PINS, nil
		}
		// The MAC would not (QEMU), or might not parse the extension
		// headers: sum it here.
		softChecksum(frame[start:end], int(meta.CsumOffset), proto, ip[8:40])
		return 0, nil
	}
	return 0, errMeta
}

// softChecksum computes the TCP or UDP checksum of seg, the transport
// header and payload, over the pseudo-header of addrs (source and
// destination address), proto and len(seg), and stores it at off.
func softChecksum(seg []byte, off int, proto byte, addrs []byte) {
	seg[off], seg[off+1] = 0, 0
	s := sum16(addrs, uint32(proto)+uint32(len(seg))>>16+uint32(len(seg))&0xffff)
	s = sum16(seg, s)
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	c := ^uint16(s)
	if c == 0 && proto == protoUDP {
		c = 0xffff // RFC 768: zero means no checksum
	}
	binary.BigEndian.PutUint16(seg[off:], c)
}

// sum16 adds b as big-endian 16-bit words (an odd last byte padded with
// zero) to s, unfolded.
func sum16(b []byte, s uint32) uint32 {
	for len(b) >= 2 {
		s += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	return s
}

// rxVouched reports whether the MAC checked frame's checksums and found
// them right, given its last descriptor's ESC: an IPv4 (not a fragment) or
// IPv6 TCP or UDP frame without ICE or PCR. With RACC.IPDIS/PRODIS a wrong
// checksum never reaches a descriptor; ICE/PCR set all the same means the
// MAC did not discard it, and the stack checks. The frame's own headers
// decide what the MAC checked, not the descriptor's IPv6/FRAG bits alone:
// the driver vouches for nothing it cannot see was checkable.
func rxVouched(frame []byte, esc uint32) bool {
	if esc&(bd.ICE|bd.PCR|bd.Frag) != 0 || len(frame) < ethHdr+ipv4MinHdr {
		return false
	}
	// The IP length must fit the frame: a MAC that meets a length it
	// cannot follow may not have checked anything.
	ip := frame[ethHdr:]
	switch binary.BigEndian.Uint16(frame[12:]) {
	case etherTypeIPv4:
		hl, total := int(ip[0]&0xf)*4, int(binary.BigEndian.Uint16(ip[2:]))
		return ip[0]>>4 == 4 && hl >= ipv4MinHdr && total >= hl+8 && total <= len(ip) &&
			binary.BigEndian.Uint16(ip[6:])&0x3fff == 0 && (ip[9] == protoTCP || ip[9] == protoUDP)
	case etherTypeIPv6:
		return len(ip) >= ipv6Hdr && ip[0]>>4 == 6 && (ip[6] == protoTCP || ip[6] == protoUDP) &&
			binary.BigEndian.Uint16(ip[4:]) >= 8 &&
			ipv6Hdr+int(binary.BigEndian.Uint16(ip[4:])) <= len(ip)
	}
	return false
}
