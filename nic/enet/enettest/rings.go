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
	var crc [4]byte
	tail := fcs(frame, &crc)
	size := len(frame) + 4
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
		// Copy bytes [done, done+n) of frame||FCS.
		dst := d.mem[boff : boff+n]
		if done < len(frame) {
			c := copy(dst, frame[done:])
			copy(dst[c:], tail)
		} else {
			copy(dst, tail[done-len(frame):])
		}
		done += n
		length := uint16(n)
		st &^= bd.E | bd.L | bd.RxErrors
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
			d.raiseLocked(eirRXF)
		} else {
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
		if st&bd.L != 0 {
			if st&bd.TC == 0 {
				d.stats.DeviceErrors++ // the frame would go out without FCS
			}
			stageN[k] = frameN
			d.stats.TxFrames++
			d.stats.TxBytes += uint64(frameN)
			k++
			frameN = 0
			d.raiseLocked(eirTXF)
			if f := &d.faults; f.TxError > 0 && d.rng.Float64() < f.TxError {
				d.stats.TxErrors++
				d.raiseLocked(txErrorBits[d.rng.IntN(len(txErrorBits))])
			}
		}
		d.raiseLocked(eirTXB)
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
