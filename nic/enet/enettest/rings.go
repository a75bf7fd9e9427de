package enettest

import (
	"encoding/binary"
	"hash/crc32"

	"github.com/tamanet/tamanet/nic/enet/internal/bd"
)

// maxDesc bounds one pass over a ring, as QEMU's IMX_MAX_DESC does.
const maxDesc = 1024

// checkRxLocked sets RDAR from the current receive descriptor: the MAC
// stays active while it is empty, and stops at a full one until the driver
// writes RDAR again (RM 22.5.3; QEMU imx_eth_enable_rx).
func (d *Device) checkRxLocked() {
	if d.halted {
		d.reg(regRDAR, 0)
		return
	}
	off := d.descLocked(d.rxPos)
	if off < 0 {
		return
	}
	_, st := bd.Split(bd.Load(d.mem, off))
	if st&bd.E != 0 {
		d.reg(regRDAR, active)
	} else {
		d.reg(regRDAR, 0)
	}
}

// writeRxLocked writes frame and its FCS into the receive descriptors from
// the current one on. It reports false when no empty descriptor can take
// it now (the frame should wait), and true when the frame was written or
// lost for good (counted).
func (d *Device) writeRxLocked(frame []byte) bool {
	if d.w.Stalled() || d.halted || d.get(regECR)&ecrEtherEn == 0 || d.get(regRDAR) == 0 {
		return false
	}
	off := d.descLocked(d.rxPos)
	if off < 0 {
		return true
	}
	if _, st := bd.Split(bd.Load(d.mem, off)); st&bd.E == 0 {
		d.reg(regRDAR, 0)
		return false
	}
	if !d.acceptLocked(frame) {
		d.stats.Filtered++
		return true
	}
	mrbr := int(d.get(regMRBR))
	if mrbr == 0 {
		d.stats.DeviceErrors++ // RM: MRBR must be set before ETHEREN
		return true
	}
	var esc uint32 // ICE, PCR, IPv6, FRAG for the last descriptor
	if d.opt.RxChecksum {
		var discard bool
		if esc, discard = d.checkCsumLocked(frame); discard {
			d.stats.ChecksumDiscards++
			return true
		}
	}
	if f := d.faults.ChecksumFlags; f > 0 && d.rng.Float64() < f {
		esc |= bd.ICE | bd.PCR
		d.stats.ChecksumFlagged++
	}
	var crc [4]byte
	tail := fcs(frame, &crc)
	// SHIFT16 (RM 22.5 RACC): two bytes before the frame, counted in
	// the length and, as QEMU has it, against FTRL and MAX_FL.
	shift := 0
	if d.get(regRACC)&raccShift16 != 0 {
		shift = 2
	}
	size := shift + len(frame) + 4
	var flags uint16
	if ftrl := int(d.get(regFTRL)); size > ftrl {
		size = ftrl
		flags |= bd.TR | bd.LG
	}
	if maxFL := int(d.get(regRCR) >> 16 & 0x3fff); size > maxFL {
		flags |= bd.LG
	}
	f := &d.faults
	if f.RxError > 0 && d.rng.Float64() < f.RxError {
		bits := f.RxErrorBits
		if bits == 0 {
			bits = RxErrorBits[d.rng.IntN(len(RxErrorBits))]
		}
		flags |= bits
		d.stats.RxErrors++
	}
	badLen := f.BadLength > 0 && d.rng.Float64() < f.BadLength

	addr := d.rxPos
	done := 0
	for done < size {
		off := d.descLocked(addr)
		if off < 0 {
			return true
		}
		_, st := bd.Split(bd.Load(d.mem, off))
		if st&bd.E == 0 {
			// Out of descriptors mid-frame: the rest is lost, as in
			// QEMU ("lost end of frame").
			d.stats.BacklogDrops++
			break
		}
		n := min(size-done, mrbr)
		buf := binary.LittleEndian.Uint32(d.mem[off+bd.Addr:])
		if buf%16 != 0 {
			d.stats.DeviceErrors++ // RM 22.6.13: divisible by 16
		}
		boff := d.resolve(buf, n)
		if boff < 0 {
			d.busErrorLocked()
			return true
		}
		// Copy bytes [done, done+n) of shift||frame||FCS.
		streamCopy(d.mem[boff:boff+n], done, shift, frame, tail)
		done += n
		length := uint16(n)
		st &^= bd.E | bd.L | bd.RxErrors
		posted := binary.LittleEndian.Uint32(d.mem[off+bd.ESC:])
		if done == size {
			st |= bd.L | flags
			if badLen {
				d.stats.BadLengths++
				if d.rng.IntN(2) == 0 {
					length = uint16(d.rng.IntN(4)) // shorter than the FCS
				} else {
					length = uint16(mrbr + 1 + d.rng.IntN(64)) // beyond the buffer
				}
			}
			if d.opt.RxChecksum {
				posted &^= bd.ICE | bd.PCR | bd.IPv6 | bd.Frag | bd.VLAN
			}
			binary.LittleEndian.PutUint32(d.mem[off+bd.ESC:], posted|esc)
			binary.LittleEndian.PutUint32(d.mem[off+bd.BDU:], bd.BDUDone)
			if posted&bd.RxInt != 0 {
				d.raiseLocked(eirRXF)
			}
		} else if posted&bd.RxInt != 0 {
			d.raiseLocked(eirRXB)
		}
		bd.Store(d.mem, off, bd.Word(length, st))
		addr = d.skipFrom(d.next(addr, st, regRDSR))
	}
	d.rxPos = addr
	d.stats.RxFrames++
	d.stats.RxBytes += uint64(len(frame))
	d.checkRxLocked()
	return true
}

// fillTxLocked sends every ready transmit descriptor from the current one
// on into stage for wire.Port.Transmit, which hands the frames to the
// backend with mu dropped.
func (d *Device) fillTxLocked(stage [][]byte, stageN []int) (k int, again bool) {
	if d.w.Stalled() || d.halted || d.txWedged || d.get(regECR)&ecrEtherEn == 0 {
		return 0, false
	}
	frameN := 0
	var frameESC uint32 // PINS, IINS of the frame's descriptors
	addr := d.txPos
	for range maxDesc {
		if k == len(stage) {
			break
		}
		off := d.descLocked(addr)
		if off < 0 {
			break
		}
		length, st := bd.Split(bd.Load(d.mem, off))
		if st&bd.R == 0 {
			break
		}
		n := int(length)
		if frameN+n > MaxFrame {
			n = MaxFrame - frameN
			d.raiseLocked(eirBABT)
		}
		buf := binary.LittleEndian.Uint32(d.mem[off+bd.Addr:])
		boff := d.resolve(buf, n)
		if boff < 0 {
			d.busErrorLocked()
			break
		}
		if a := d.opt.TxAlign; a > 0 && int(buf)%a != 0 {
			d.stats.DeviceErrors++
		}
		frameN += copy(stage[k][frameN:frameN+n], d.mem[boff:boff+n])
		esc := binary.LittleEndian.Uint32(d.mem[off+bd.ESC:])
		frameESC |= esc
		if st&bd.L != 0 {
			if st&bd.TC == 0 {
				d.stats.DeviceErrors++ // the frame would go out without FCS
			}
			// The accelerator works on the frame on its way out;
			// the buffer in memory stays as the driver wrote it.
			d.insertLocked(stage[k][:frameN], frameESC)
			frameESC = 0
			binary.LittleEndian.PutUint32(d.mem[off+bd.BDU:], bd.BDUDone)
			stageN[k] = frameN
			d.stats.TxFrames++
			d.stats.TxBytes += uint64(frameN)
			k++
			frameN = 0
			if esc&bd.TxInt != 0 {
				d.raiseLocked(eirTXF)
			}
			if f := &d.faults; f.TxError > 0 && d.rng.Float64() < f.TxError {
				d.stats.TxErrors++
				d.raiseLocked(txErrorBits[d.rng.IntN(len(txErrorBits))])
			}
		}
		if esc&bd.TxInt != 0 {
			d.raiseLocked(eirTXB)
		}
		bd.Store(d.mem, off, bd.Word(length, st&^bd.R))
		addr = d.next(addr, st, regTDSR)
	}
	d.txPos = addr
	if frameN > 0 {
		d.stats.DeviceErrors++ // a frame without its last descriptor
	}
	return k, k == len(stage)
}

// acceptLocked is the MAC's address recognition for group addresses: a
// multicast destination passes RCR.PROM or the GAUR:GALR hash table.
func (d *Device) acceptLocked(frame []byte) bool {
	if len(frame) < 6 || frame[0]&1 == 0 || d.get(regRCR)&rcrProm != 0 {
		return true
	}
	if frame[0]&frame[1]&frame[2]&frame[3]&frame[4]&frame[5] == 0xff {
		return true // broadcast
	}
	// The CRC register before the final inversion; top 6 bits.
	h := ^crc32.ChecksumIEEE(frame[:6]) >> 26
	table := uint64(d.get(regGAUR))<<32 | uint64(d.get(regGALR))
	return table>>h&1 != 0
}

// streamCopy fills dst with the bytes from pos on of the receive stream:
// shift zero bytes (SHIFT16), the frame, its FCS.
func streamCopy(dst []byte, pos, shift int, frame, tail []byte) {
	for len(dst) > 0 {
		var c int
		switch {
		case pos < shift:
			dst[0], c = 0, 1
		case pos < shift+len(frame):
			c = copy(dst, frame[pos-shift:])
		default:
			c = copy(dst, tail[pos-shift-len(frame):])
		}
		dst, pos = dst[c:], pos+c
	}
}
