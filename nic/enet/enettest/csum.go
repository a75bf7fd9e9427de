package enettest

import (
	"encoding/binary"

	"github.com/tamanet/tamanet/nic/enet/internal/bd"
)

// The accelerator's view of a frame (i.MX6ULL RM 22.4.x): an IPv4 or IPv6
// frame straight after the Ethernet header, carrying TCP or UDP.

// ipFrame is what the accelerator parses of a frame.
type ipFrame struct {
	v6       bool
	hdr      []byte // the IPv4 header (nil for IPv6)
	addrs    []byte // source and destination address
	proto    byte
	frag     bool
	seg      []byte // the transport header and payload, by the IP length
	csumAt   int    // offset of the checksum field in seg; -1: not TCP/UDP
	parsedOK bool
}

func parseIP(frame []byte) (p ipFrame) {
	p.csumAt = -1
	if len(frame) < 14+20 {
		return p
	}
	ip := frame[14:]
	switch binary.BigEndian.Uint16(frame[12:]) {
	case 0x0800:
		hl := int(ip[0]&0xf) * 4
		total := int(binary.BigEndian.Uint16(ip[2:]))
		if ip[0]>>4 != 4 || hl < 20 || total < hl || total > len(ip) {
			return p
		}
		p.hdr, p.addrs, p.proto = ip[:hl], ip[12:20], ip[9]
		p.frag = binary.BigEndian.Uint16(ip[6:])&0x3fff != 0
		p.seg = ip[hl:total]
	case 0x86dd:
		if len(ip) < 40 || ip[0]>>4 != 6 {
			return p
		}
		end := 40 + int(binary.BigEndian.Uint16(ip[4:]))
		if end > len(ip) {
			return p
		}
		p.v6, p.addrs, p.proto = true, ip[8:40], ip[6]
		p.seg = ip[40:end]
	default:
		return p
	}
	p.parsedOK = true
	switch {
	case p.frag:
	case p.proto == 6 && len(p.seg) >= 20:
		p.csumAt = 16
	case p.proto == 17 && len(p.seg) >= 8:
		p.csumAt = 6
	}
	return p
}

// fold folds a 32-bit one's complement sum to 16 bits.
func fold(s uint32) uint16 {
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

func sum(b []byte, s uint32) uint32 {
	for len(b) >= 2 {
		s += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	return s
}

// protoSum is the one's complement sum of p's pseudo-header and segment,
// the checksum field as it is.
func (p *ipFrame) protoSum() uint16 {
	n := uint32(len(p.seg))
	return fold(sum(p.seg, sum(p.addrs, uint32(p.proto)+n>>16+n&0xffff)))
}

// insertLocked applies a transmit frame's PINS and IINS (its descriptors'
// ESC bits, or-ed) to frame, as the MAC does on the way out. A request the
// manual does not allow is counted in Stats.DeviceErrors and done as the
// MAC would: a nonzero checksum field is summed in, giving a wrong
// checksum; without the TACC enable nothing is inserted.
func (d *Device) insertLocked(frame []byte, esc uint32) {
	if esc&(bd.PINS|bd.IINS) == 0 {
		return
	}
	tacc := d.get(regTACC)
	p := parseIP(frame)
	if esc&bd.IINS != 0 {
		switch {
		case tacc&taccIPChk == 0 || p.hdr == nil:
			d.stats.DeviceErrors++ // not enabled, or not an IPv4 frame
		default:
			if p.hdr[10]|p.hdr[11] != 0 {
				d.stats.DeviceErrors++ // RM: the field must be cleared
			}
			binary.BigEndian.PutUint16(p.hdr[10:], ^fold(sum(p.hdr, 0)))
			d.stats.ChecksumsInserted++
		}
	}
	if esc&bd.PINS != 0 {
		switch {
		case tacc&taccProChk == 0 || p.csumAt < 0:
			d.stats.DeviceErrors++ // not enabled, or nothing the MAC can sum
		case p.v6 && d.opt.TxChecksumIPv4:
			// QEMU: IPv6 frames go out as they are.
		default:
			f := p.seg[p.csumAt : p.csumAt+2]
			if f[0]|f[1] != 0 {
				d.stats.DeviceErrors++ // RM: the field must be cleared
			}
			c := ^p.protoSum()
			if c == 0 && p.proto == 17 {
				c = 0xffff
			}
			binary.BigEndian.PutUint16(f, c)
			d.stats.ChecksumsInserted++
		}
	}
}

// checkCsumLocked checks a received frame's checksums as the real MAC does
// (Options.RxChecksum) and returns the ESC bits for its last descriptor and
// whether RACC tells the MAC to discard it.
func (d *Device) checkCsumLocked(frame []byte) (esc uint32, discard bool) {
	p := parseIP(frame)
	if !p.parsedOK {
		return 0, false
	}
	if p.v6 {
		esc |= bd.IPv6
	}
	if p.frag {
		esc |= bd.Frag
	}
	if p.hdr != nil && fold(sum(p.hdr, 0)) != 0xffff {
		esc |= bd.ICE
	}
	if p.csumAt >= 0 && !(p.proto == 17 && !p.v6 && p.seg[6]|p.seg[7] == 0) && p.protoSum() != 0xffff {
		esc |= bd.PCR
	}
	if esc&(bd.ICE|bd.PCR) != 0 {
		d.stats.ChecksumErrors++
	}
	racc := d.get(regRACC)
	discard = esc&bd.ICE != 0 && racc&raccIPDis != 0 || esc&bd.PCR != 0 && racc&raccProDis != 0
	return esc, discard
}
