// Package enettest is an NXP ENET device model for host tests: it plays the
// MAC side of the ENET registers (i.MX6ULL RM 22.5), the enhanced buffer
// descriptor rings (RM 22.6.14, ECR.EN1588; the legacy 8-byte layout is a
// device error) and a clause 22 PHY on MDIO, over the same memory the
// driver lays its rings and buffers in.
//
// The accelerator (RM 22.4.x, TACC/RACC): on transmit, PINS and IINS in a
// frame's descriptors insert the TCP/UDP and IPv4 header checksums into
// the frame on the wire, and the model checks what the manual asks of the
// driver (TACC enables, the checksum fields cleared, an IP frame the MAC
// can parse), counting a violation in Stats.DeviceErrors and sending what
// the real MAC would (a wrong checksum). Options.TxChecksumIPv4 makes it
// insert IPv4 checksums only, as QEMU does. On receive, RACC.SHIFT16
// writes two zero bytes before the frame, counted in the length, as QEMU
// does. With Options.RxChecksum the model checks IPv4 header and TCP/UDP
// checksums as the real MAC does: ICE/PCR (and IPv6, FRAG) in the last
// descriptor's ESC, and with RACC.IPDIS/PRODIS a wrong frame is discarded
// (Stats.ChecksumDiscards); without it the model checks nothing, as QEMU.
// Descriptors raise RXB/RXF and TXB/TXF only with their INT bit, and the
// last one of a frame gets BDU, as QEMU has it. Every register access is
// counted (Stats.RegReads, RegWrites).
//
// A Device implements enet.Regs. It follows what QEMU's imx.enet does with
// enhanced descriptors: RDAR makes the MAC look at the current receive
// descriptor and it stays active while the next one is empty; TDAR sends
// every ready transmit descriptor at once, in the writer's goroutine; the
// MAC writes the frame plus its 4-byte FCS and sets LG/TR when a frame is
// longer than RCR.MAX_FL/FTRL; clearing ECR.ETHEREN resets the descriptor
// pointers to RDSR/TDSR; MMFR transfers complete at once and set EIR.MII.
// Unlike QEMU it also checks the driver against the manual: ECR.DBSWP must
// be set (little-endian descriptors), rings 8-byte aligned, receive buffers
// 16-byte aligned, MMFR frames well formed; a violation is counted in
// Stats.DeviceErrors.
//
// Address recognition for group addresses is the MAC's (RM chapter 22,
// GAUR/GALR, "Hash table algorithm"): a multicast frame passes only when
// RCR.PROM is set or its destination hashes (enet.GroupHash) to a set bit
// of GAUR:GALR; broadcast always passes; the rest is counted in
// Stats.Filtered. (QEMU's imx.enet receives every multicast frame; the
// real MAC does not, so the model follows the manual.) Unicast frames for
// another station are delivered, so tests can show the driver and stack
// drop them.
//
// Every address the driver hands the model is resolved as an offset into
// the DMA memory slice given to New (modulo 2^32: descriptors hold 32-bit
// addresses); one outside it is counted, raises EIR.EBERR and stops the MAC
// as the real one does, never a panic.
//
// Backends: Pipe links two models back to back, AttachTap links a model to a
// Linux tap, SetOutput hands transmitted frames to a function. Frames that
// arrive while no receive descriptor is empty wait in a bounded backlog.
//
// Faults are injected from a seeded generator: dropped, duplicated,
// corrupted, reordered frames, bad lengths, checksum error flags (ICE/PCR)
// on good frames, receive error bits (LG, NO, CR,
// OV, TR), transmit errors in EIR, and a stalled MAC. Faults that need a
// reset to clear are injected on demand: a wedged transmit ring (WedgeTx),
// a receive pointer that loses its place (SkipRx), a receive side that
// stops as if its ring were full (StopRx), lost TDAR writes (LoseKicks),
// repeated bus errors (BusErrors), and descriptors written behind both
// sides' backs (Forge). Every injection is counted in Stats.
// The model allocates nothing per frame.
//
// The descriptor control word (length and status) is read and written with
// sync/atomic on both sides: it is where ownership changes hands.
package enettest

import (
	"encoding/binary"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"sync"

	"github.com/tamanet/tamanet/alloc"
	"github.com/tamanet/tamanet/nic/enet/internal/bd"
	"github.com/tamanet/tamanet/nic/internal/wire"
)

// Register offsets and bits, written out from the manual (RM 22.5) rather
// than imported from the driver, so the model checks the driver against the
// manual and not against itself.
const (
	regEIR  = 0x004
	regEIMR = 0x008
	regRDAR = 0x010
	regTDAR = 0x014
	regECR  = 0x024
	regMMFR = 0x040
	regMSCR = 0x044
	regMIBC = 0x064
	regRCR  = 0x084
	regGAUR = 0x120
	regGALR = 0x124
	regTCR  = 0x0c4
	regPALR = 0x0e4
	regPAUR = 0x0e8
	regOPD  = 0x0ec
	regRDSR = 0x180
	regTDSR = 0x184
	regMRBR = 0x188
	regFTRL = 0x1b0
	regTACC = 0x1c0
	regRACC = 0x1c4
	regSize = 0x400

	taccIPChk  = 1 << 3
	taccProChk = 1 << 4

	raccIPDis   = 1 << 1
	raccProDis  = 1 << 2
	raccShift16 = 1 << 7

	eirBABT  = 1 << 29
	eirGRA   = 1 << 28
	eirTXF   = 1 << 27
	eirTXB   = 1 << 26
	eirRXF   = 1 << 25
	eirRXB   = 1 << 24
	eirMII   = 1 << 23
	eirEBERR = 1 << 22
	eirLC    = 1 << 21
	eirRL    = 1 << 20
	eirUN    = 1 << 19

	active = 1 << 24 // RDAR/TDAR

	ecrReset   = 1 << 0
	ecrEtherEn = 1 << 1
	ecrEN1588  = 1 << 4
	ecrDBSWP   = 1 << 8

	tcrGTS = 1 << 0

	rcrProm = 1 << 3
)

// Receive error bits of a receive descriptor (RM Table 22-35), for
// Faults.RxErrorBits and tests.
const (
	ErrLG = bd.LG // frame length violation
	ErrNO = bd.NO // non-octet aligned
	ErrCR = bd.CR // CRC error
	ErrOV = bd.OV // overrun
	ErrTR = bd.TR // truncated
)

// RxErrorBits lists the receive error bits.
var RxErrorBits = [...]uint16{ErrLG, ErrNO, ErrCR, ErrOV, ErrTR}

// txErrorBits are the EIR transmit errors Faults.TxError raises.
var txErrorBits = [...]uint32{eirLC, eirRL, eirUN, eirBABT}

// MaxFrame is the largest frame (without FCS) the model carries; QEMU's
// imx.enet caps frames at 2032 bytes with FCS.
const MaxFrame = 2028

// PHY identifiers the model reports (an SMSC/Microchip LAN8720A, the PHY
// of the USB armory Mk II LAN).
const (
	PHYID1 = 0x0007
	PHYID2 = 0xc0f1
)

// Options configure a Device. Zero values take defaults.
type Options struct {
	// MAC held in PALR/PAUR after reset. Default 02:00:00:00:00:02.
	MAC [6]byte
	// PHYAddr is the MDIO address the PHY answers at. Default 0.
	PHYAddr int
	// NoPHY: no PHY on the bus (every read returns 0xffff).
	NoPHY bool
	// LinkDown starts the device with the link down.
	LinkDown bool
	// Partner is the link partner's ability word (ANLPAR). Default
	// 100/10 full and half duplex.
	Partner uint16
	// PHYResetReads is how many BMCR reads still show RESET after a PHY
	// reset. Default 0.
	PHYResetReads int
	// Backlog is how many frames wait for an empty descriptor before
	// further ones are dropped. Default 256.
	Backlog int
	// TxAlign, when set, is the alignment the model demands of transmit
	// buffers; a misaligned one is counted in Stats.DeviceErrors.
	TxAlign int
	// RxChecksum makes the model check receive checksums as the real
	// MAC does (ICE/PCR, discard with RACC.IPDIS/PRODIS). Without it the
	// model checks nothing and leaves ESC as posted, as QEMU does.
	RxChecksum bool
	// TxChecksumIPv4 makes PINS insert checksums in IPv4 frames only,
	// as QEMU's imx.enet does; an IPv6 frame goes out as posted.
	TxChecksumIPv4 bool
}

// Faults configures fault injection. Rates are probabilities in [0, 1]
// applied per frame: Drop, Duplicate, Corrupt, Reorder, BadLength and
// RxError to frames arriving at this device, TxError to frames it sends.
type Faults struct {
	Seed      uint64
	Drop      float64
	Duplicate float64
	Corrupt   float64 // flip one byte of the frame (the FCS is computed after, like a bad sender)
	Reorder   float64 // hold a frame back and deliver it after the next
	BadLength float64 // write a descriptor length the driver must refuse
	RxError   float64 // set receive error bits in the last descriptor
	// RxErrorBits are the bits RxError sets; 0 picks one of
	// RxErrorBits at random per frame.
	RxErrorBits uint16
	TxError     float64 // raise one of EIR LC, RL, UN, BABT after a frame
	// ChecksumFlags sets ICE and PCR in the last descriptor of a frame
	// the model delivers, whatever its checksums: a MAC that flags
	// without discarding.
	ChecksumFlags float64
}

// Stats counts what the model did and what it injected. The embedded
// wire counters are Interrupts, BacklogDrops (arrived with no empty
// descriptor and a full backlog, or lost mid-frame), Oversize (longer than
// MaxFrame, not carried), Dropped, Duplicated, Corrupted, Reordered and
// Stalled.
type Stats struct {
	wire.Stats
	RxFrames, RxBytes uint64 // written into receive buffers (without FCS)
	TxFrames, TxBytes uint64 // taken from transmit descriptors
	RDARWrites        uint64
	TDARWrites        uint64
	DeviceErrors      uint64 // driver broke a rule of the manual (see package doc)
	BusErrors         uint64 // addresses outside the DMA memory (EIR.EBERR)
	MDIOReads         uint64
	MDIOWrites        uint64
	PHYResets         uint64

	BadLengths, RxErrors, TxErrors uint64

	// On-demand faults: WedgeTx, SkipRx and StopRx calls, TDAR writes
	// ignored, descriptors forged.
	TxWedges, RxSkips, RxStops, LostKicks, Forged uint64
	// Filtered counts multicast frames the group hash filter dropped.
	Filtered uint64

	// RegReads and RegWrites count register accesses (each an exit into
	// QEMU on the emulated board).
	RegReads, RegWrites uint64
	// ChecksumsInserted counts checksums the model inserted on transmit
	// (PINS and IINS each); ChecksumErrors counts received frames it
	// found a wrong checksum in (Options.RxChecksum), ChecksumDiscards
	// those it discarded for it (RACC.IPDIS/PRODIS), ChecksumFlagged the
	// frames Faults.ChecksumFlags marked.
	ChecksumsInserted, ChecksumErrors, ChecksumDiscards, ChecksumFlagged uint64
}

// phy is a clause 22 PHY: BMCR, BMSR, ID, ANAR, ANLPAR.
type phy struct {
	bmcr, anar uint16
	resetLeft  int
	link       bool
}

// Device is an ENET device model. Its methods are safe for concurrent use.
type Device struct {
	mu   sync.Mutex
	mem  []byte
	base uint32
	opt  Options

	regs   [regSize / 4]uint32
	rxPos  uint32 // address of the current receive descriptor
	txPos  uint32 // address of the current transmit descriptor
	phy    phy
	halted bool // bus error: stopped until ETHEREN is cleared

	txWedged  bool   // WedgeTx: no transmit until reset or ETHEREN clear
	rxSkip    uint32 // SkipRx: the descriptor the MAC passes over; 0: none
	lostKicks int    // TDAR writes still to ignore
	busFail   int    // descriptor fetches still to fail

	w      wire.Port // backends, backlog, frame faults, interrupt hook
	faults Faults
	rng    *rand.Rand // w.Rand()
	stats  Stats
}

// New returns a device model over mem, the DMA memory the driver allocates
// rings and buffers from (alloc.Arena.Memory()).
func New(mem []byte, opt Options) *Device {
	if opt.MAC == ([6]byte{}) {
		opt.MAC = [6]byte{0x02, 0, 0, 0, 0, 2}
	}
	if opt.Partner == 0 {
		opt.Partner = 1<<8 | 1<<7 | 1<<6 | 1<<5 | 1
	}
	if opt.Backlog == 0 {
		opt.Backlog = 256
	}
	d := &Device{mem: mem, base: uint32(alloc.AddrOf(mem)), opt: opt}
	d.w.Init(&d.mu, &d.stats.Stats, wire.Config{
		MaxFrame: MaxFrame,
		Backlog:  opt.Backlog,
		WriteRx:  d.writeRxLocked,
		FillTx:   d.fillTxLocked,
	})
	d.rng = d.w.Rand()
	d.phy.link = !opt.LinkDown
	d.resetLocked()
	d.resetPHYLocked()
	d.phy.resetLeft = 0
	return d
}

// resetLocked puts the MAC registers in their reset state (RM 22.5 reset
// values, as QEMU has them).
func (d *Device) resetLocked() {
	clear(d.regs[:])
	d.reg(regECR, 0xf000_0000)
	d.reg(regMIBC, 0xc000_0000)
	d.reg(regRCR, 0x05ee_0001)
	d.reg(regOPD, 0x0001_0000)
	d.reg(regFTRL, 0x7ff)
	m := d.opt.MAC
	d.reg(regPALR, binary.BigEndian.Uint32(m[0:4]))
	d.reg(regPAUR, uint32(binary.BigEndian.Uint16(m[4:6]))<<16|0x8808)
	d.rxPos, d.txPos = 0, 0
	d.halted = false
	d.txWedged, d.rxSkip = false, 0
}

func (d *Device) reg(off, v uint32) { d.regs[off/4] = v }
func (d *Device) get(off uint32) uint32 {
	return d.regs[off/4]
}

func (d *Device) resetPHYLocked() {
	d.phy.bmcr = 1<<12 | 1<<13 // AN enable, 100 Mbit/s
	d.phy.anar = 1<<8 | 1<<7 | 1<<6 | 1<<5 | 1
	d.phy.resetLeft = d.opt.PHYResetReads
	d.stats.PHYResets++
}

// Pipe links a and b: what one transmits, the other receives.
func Pipe(a, b *Device) { wire.Pipe(&a.w, &b.w) }

// SetOutput hands every transmitted frame (without FCS) to fn instead of a
// peer or tap. fn runs in the transmitting goroutine and must not keep the
// slice.
func (d *Device) SetOutput(fn func(frame []byte)) { d.w.SetOutput(fn) }

// SetInterrupt sets the function called when an event is raised in EIR
// that EIMR unmasks. It runs in the goroutine that caused the event, with
// no lock held, and must not call back into the device or the driver
// synchronously: wake a poller.
func (d *Device) SetInterrupt(fn func()) { d.w.SetInterrupt(fn) }

// SetFaults replaces the fault configuration and reseeds the generator. A
// frame held for reordering is delivered first.
func (d *Device) SetFaults(f Faults) {
	d.w.SetFaults(f.Seed, wire.Faults{Drop: f.Drop, Duplicate: f.Duplicate,
		Corrupt: f.Corrupt, Reorder: f.Reorder}, func() { d.faults = f })
}

// Stall stops the MAC working either ring until Unstall: posted transmit
// frames stay posted, arriving frames go to the backlog.
func (d *Device) Stall() { d.w.Stall() }

// Unstall resumes the MAC: it sends what is ready and receives the backlog
// into empty descriptors (as if RDAR and TDAR had stayed active).
func (d *Device) Unstall() { d.w.Unstall() }

// Flush delivers a frame held back for reordering, if any.
func (d *Device) Flush() { d.w.Flush() }

// WedgeTx wedges the transmit side the way a stuck uDMA does: descriptors
// the driver posts stay ready (R) and are never sent, whatever TDAR says,
// until the MAC is reset (ECR.RESET) or disabled (ETHEREN cleared).
func (d *Device) WedgeTx() {
	d.mu.Lock()
	d.txWedged = true
	d.stats.TxWedges++
	d.mu.Unlock()
}

// SkipRx makes the MAC lose its place in the receive ring: it passes over
// its current descriptor without completing it, now and on every later lap,
// so frames land past the descriptor the driver waits on and never in it.
// Only a MAC reset or disable ends it.
func (d *Device) SkipRx() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stats.RxSkips++
	d.rxSkip = d.rxPos
	d.rxPos = d.skipFrom(d.rxPos)
}

// skipFrom returns addr, or the descriptor after it when SkipRx made the
// MAC pass over addr.
func (d *Device) skipFrom(addr uint32) uint32 {
	if d.rxSkip == 0 || addr != d.rxSkip {
		return addr
	}
	off := d.resolve(addr, bd.Size)
	if off < 0 {
		return addr
	}
	_, st := bd.Split(bd.Load(d.mem, off))
	return d.next(addr, st, regRDSR)
}

// StopRx clears RDAR as the MAC does when it finds no empty descriptor,
// though there is one: arriving frames wait in the backlog until the
// driver writes RDAR again.
func (d *Device) StopRx() {
	d.mu.Lock()
	d.reg(regRDAR, 0)
	d.stats.RxStops++
	d.mu.Unlock()
}

// LoseKicks makes the MAC ignore the next n TDAR writes, as the i.MX6
// ENET can miss a TDAR write (errata ERR006358).
func (d *Device) LoseKicks(n int) {
	d.mu.Lock()
	d.lostKicks = n
	d.mu.Unlock()
}

// BusErrors makes the next n descriptor fetches fail with a bus error
// (EIR.EBERR, the MAC stops), as a faulty interconnect would.
func (d *Device) BusErrors(n int) {
	d.mu.Lock()
	d.busFail = n
	d.mu.Unlock()
}

// Forge writes the control word (length | status<<16) of descriptor i of
// the receive ring (tx false) or the transmit ring, as a stray write or a
// MAC writing back a stale copy would. The ring is the one at RDSR/TDSR;
// an index outside the memory is ignored.
func (d *Device) Forge(tx bool, i int, word uint32) {
	d.mu.Lock()
	defer d.mu.Unlock()
	base := d.get(regRDSR)
	if tx {
		base = d.get(regTDSR)
	}
	off := d.resolve(base+uint32(i)*bd.Size, bd.Size)
	if i < 0 || off < 0 {
		return
	}
	d.stats.Forged++
	bd.Store(d.mem, off, word)
}

// SetLink sets the PHY's link state (BMSR link status and autonegotiation
// complete).
func (d *Device) SetLink(up bool) {
	d.mu.Lock()
	d.phy.link = up
	d.mu.Unlock()
}

// SetPartner changes the link partner's abilities (ANLPAR), as a cable
// moved to another switch port would.
func (d *Device) SetPartner(anlpar uint16) {
	d.mu.Lock()
	d.opt.Partner = anlpar
	d.mu.Unlock()
}

// Stats returns a snapshot of the counters.
func (d *Device) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stats
}

// Backlog returns the number of frames waiting for an empty descriptor.
func (d *Device) Backlog() int { return d.w.Backlog() }

// Deliver hands the device one frame (without FCS) as if it arrived on the
// wire: faults apply, then it goes into empty receive descriptors or waits
// in the backlog. The frame is copied; the caller keeps it.
func (d *Device) Deliver(frame []byte) { d.w.Deliver(frame) }

// AttachTap makes the tap f the device's wire: a goroutine reads frames from
// f into the receive ring, transmitted frames are written to f. The device
// owns f from here; Close closes it.
func (d *Device) AttachTap(f *os.File) { d.w.AttachTap(f) }

// Close detaches and closes a tap attached with AttachTap and waits for its
// reader to stop.
func (d *Device) Close() error { return d.w.Close() }

// Reg returns a register's raw value, for tests.
func (d *Device) Reg(off uint32) uint32 {
	d.mu.Lock()
	defer d.mu.Unlock()
	if off >= regSize || off&3 != 0 {
		return 0
	}
	return d.get(off)
}

// raiseLocked sets EIR events and notes an interrupt if EIMR unmasks one.
func (d *Device) raiseLocked(ev uint32) {
	d.regs[regEIR/4] |= ev
	if ev&d.get(regEIMR) != 0 {
		d.w.RaiseLocked()
	}
}

// Read32 reads a register.
func (d *Device) Read32(off uint32) uint32 {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stats.RegReads++
	if off >= regSize || off&3 != 0 {
		d.stats.DeviceErrors++
		return 0
	}
	return d.get(off)
}

// Write32 writes a register. TDAR sends in the caller's goroutine.
func (d *Device) Write32(off, v uint32) {
	if off == regTDAR {
		d.mu.Lock()
		d.stats.RegWrites++
		d.stats.TDARWrites++
		on := d.get(regECR)&ecrEtherEn != 0
		if d.lostKicks > 0 {
			d.lostKicks--
			d.stats.LostKicks++
			on = false
		}
		d.mu.Unlock()
		if on {
			d.w.Transmit()
		}
		return
	}
	d.mu.Lock()
	d.stats.RegWrites++
	d.writeLocked(off, v)
	irq := d.w.TakeIRQLocked()
	d.mu.Unlock()
	irq()
}

func (d *Device) writeLocked(off, v uint32) {
	if off >= regSize || off&3 != 0 {
		d.stats.DeviceErrors++
		return
	}
	switch off {
	case regEIR:
		d.regs[off/4] &^= v // write 1 to clear
	case regEIMR:
		d.reg(off, v)
		if d.get(regEIR)&v != 0 {
			d.w.RaiseLocked()
		}
	case regRDAR:
		d.stats.RDARWrites++
		if d.get(regECR)&ecrEtherEn == 0 {
			d.reg(regRDAR, 0)
			return
		}
		d.checkRxLocked()
		d.w.DrainLocked()
	case regECR:
		if v&ecrReset != 0 {
			d.resetLocked()
			return
		}
		d.reg(off, v)
		if v&ecrEtherEn == 0 {
			d.reg(regRDAR, 0)
			d.reg(regTDAR, 0)
			d.rxPos = d.get(regRDSR)
			d.txPos = d.get(regTDSR)
			d.halted = false
			d.txWedged, d.rxSkip = false, 0
		} else if v&ecrDBSWP == 0 || v&ecrEN1588 == 0 {
			// Without DBSWP the real MAC reads descriptors
			// big-endian; without EN1588 it uses the legacy 8-byte
			// descriptors, which the model does not implement.
			d.stats.DeviceErrors++
		}
	case regMMFR:
		d.mdioLocked(v)
	case regMSCR:
		d.reg(off, v&0x7fe)
	case regTCR:
		d.reg(off, v)
		if v&tcrGTS != 0 {
			d.raiseLocked(eirGRA) // nothing in flight: stop completes at once
		}
	case regRDSR, regTDSR:
		if v&7 != 0 {
			d.stats.DeviceErrors++ // RM: 64-bit aligned
		}
		d.reg(off, v&^7)
		if off == regRDSR {
			d.rxPos = v &^ 7
		} else {
			d.txPos = v &^ 7
		}
	case regMRBR:
		d.reg(off, v&0x7f0)
	case regFTRL:
		d.reg(off, v&0x3fff)
	case regTACC:
		d.reg(off, v&0x19) // SHIFT16, IPCHK, PROCHK
	case regRACC:
		d.reg(off, v&0xc7) // PADREM, IPDIS, PRODIS, LINEDIS, SHIFT16
	default:
		d.reg(off, v)
	}
}

// mdioLocked runs one clause 22 management frame (RM 22.5.6).
func (d *Device) mdioLocked(v uint32) {
	st, op, ta := v>>30, v>>28&3, v>>16&3
	pa, ra := int(v>>23&31), int(v>>18&31)
	if st != 1 || ta != 2 || (op != 1 && op != 2) {
		d.stats.DeviceErrors++
		d.reg(regMMFR, v)
		d.raiseLocked(eirMII)
		return
	}
	if op == 2 {
		d.stats.MDIOReads++
		d.reg(regMMFR, v&^0xffff|uint32(d.phyReadLocked(pa, ra)))
	} else {
		d.stats.MDIOWrites++
		d.reg(regMMFR, v)
		d.phyWriteLocked(pa, ra, uint16(v))
	}
	d.raiseLocked(eirMII)
}

func (d *Device) phyReadLocked(pa, ra int) uint16 {
	if d.opt.NoPHY || pa != d.opt.PHYAddr {
		return 0xffff
	}
	p := &d.phy
	switch ra {
	case 0:
		if p.resetLeft > 0 {
			p.resetLeft--
			return p.bmcr | 1<<15
		}
		return p.bmcr
	case 1:
		// 100/10 full/half capable, AN capable, extended capability.
		v := uint16(1<<14 | 1<<13 | 1<<12 | 1<<11 | 1<<3 | 1)
		if p.link && p.resetLeft == 0 {
			v |= 1 << 2
			if p.bmcr&(1<<12) != 0 {
				v |= 1 << 5
			}
		}
		return v
	case 2:
		return PHYID1
	case 3:
		return PHYID2
	case 4:
		return p.anar
	case 5:
		if !p.link {
			return 0
		}
		return d.opt.Partner
	}
	return 0
}

func (d *Device) phyWriteLocked(pa, ra int, v uint16) {
	if d.opt.NoPHY || pa != d.opt.PHYAddr {
		return
	}
	switch ra {
	case 0:
		if v&(1<<15) != 0 {
			d.resetPHYLocked()
			return
		}
		d.phy.bmcr = v &^ (1 << 9) // restart self-clears; AN completes at once
	case 4:
		d.phy.anar = v
	}
}

// resolve maps a 32-bit bus address and length to an offset in mem, or -1.
func (d *Device) resolve(addr uint32, n int) int {
	off := int64(addr - d.base)
	if n < 0 || off < 0 || off+int64(n) > int64(len(d.mem)) {
		return -1
	}
	return int(off)
}

// busErrorLocked stops the MAC as an AXI error does (EIR.EBERR).
func (d *Device) busErrorLocked() {
	d.stats.BusErrors++
	d.halted = true
	d.reg(regRDAR, 0)
	d.raiseLocked(eirEBERR)
}

// descLocked resolves the descriptor at addr and returns its offset, or -1
// after raising a bus error.
func (d *Device) descLocked(addr uint32) int {
	off := d.resolve(addr, bd.Size)
	if d.busFail > 0 {
		d.busFail--
		off = -1
	}
	if off < 0 || off&3 != 0 {
		d.busErrorLocked()
		return -1
	}
	return off
}

// next returns the address of the descriptor after the one at addr.
func (d *Device) next(addr uint32, status uint16, ringReg uint32) uint32 {
	if status&bd.W != 0 {
		return d.get(ringReg)
	}
	return addr + bd.Size
}

// fcs appends the Ethernet FCS (CRC-32, sent least significant byte
// first) of frame into dst and returns the 4 bytes.
func fcs(frame []byte, dst *[4]byte) []byte {
	binary.LittleEndian.PutUint32(dst[:], crc32.ChecksumIEEE(frame))
	return dst[:]
}
