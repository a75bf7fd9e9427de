// Package enet drives the NXP ENET 10/100 Ethernet MAC of the i.MX6UL/6ULL
// (i.MX6ULL Reference Manual, chapter 22) as a nic.Device.
//
// The driver lays out enhanced buffer-descriptor rings (RM 22.6.14,
// ECR.EN1588; the legacy 8-byte layout is not used) in DMA memory taken
// from an alloc.Arena and points every descriptor straight at a pool
// buffer: a received frame goes up as the very buffer the MAC wrote it
// into, and the descriptor gets a fresh one; a transmitted frame is posted
// from the caller's buffer and the buffer returns to the pool at Reclaim.
// Nothing is copied through fixed bounce buffers. RDAR and TDAR are written
// once per batch (RxKick, TxKick).
//
// The MAC's accelerator (RM 22.4.x, TACC and RACC) does the checksum work
// the stack would: TransmitPacket (nic.Offloader) asks it, per frame, to
// insert the IPv4 header and TCP/UDP checksums (PINS, IINS); receive runs
// with RACC.SHIFT16, so a frame starts two bytes into its buffer and the IP
// header is 4-byte aligned without a copy; and where the board says the MAC
// really checks receive checksums (Config.RxChecksum: RACC.IPDIS/PRODIS
// discard a wrong one, the descriptor's ICE/PCR flag it), ReceivePacket
// vouches for the IPv4 and IPv6 TCP and UDP frames the MAC checked. See
// csum.go.
//
// Every receive error the MAC reports in the last descriptor of a frame (LG,
// NO, CR, OV, TR) is counted under its own nic.Cause, as are frames shorter
// than 42 or longer than 1518 bytes and lengths the device should not have
// written; a dropped frame's buffer goes back to the pool, never leaks.
// Transmit errors are counted from the event register (EIR: UN, LC, RL,
// BABT, EBERR), once per Reclaim: QEMU never writes the enhanced transmit
// descriptor's error bits, and EIR serves both.
//
// Completions are trusted only for what the driver posted. Every posting
// marks its descriptor with a generation (1, 2, 3, 1, … per slot) in the
// software bits the MAC never writes (RO1/RO2, TO1/TO2), and the driver
// keeps the buffer pointer it wrote. A descriptor handed back without its
// posting's generation (0, a zeroed or never-posted entry: nic.Stale;
// another, an earlier completion written again: nic.Duplicate) is not a
// completion: a receive descriptor goes back to the MAC as posted, a
// transmit one keeps its buffer until a reset.
// A completion whose W bit or pointer changed is dropped as nic.BadIndex or
// nic.BadID. Only the head descriptor is ever taken, so completions out of
// ring order are never consumed.
//
// Maintain (nic.Maintainer) resets the MAC (ECR.RESET) and rebuilds both
// rings when it finds a bus error, an untrusted transmit completion, frames
// posted longer than Config.TxTimeout, or a receive ring the MAC fills past
// an empty head; every reset is counted in nic.Stats.Resets with its reason.
// initMAC is the one place that programs the registers a reset clears.
//
// The PHY is reached over MDIO (clause 22): it is reset and set to
// autonegotiate at New; PollLink (nic.LinkPoller) reads link, speed and
// duplex and applies them to the MAC (TCR.FDEN, RCR.RMII_10T, RCR.DRT). The
// stack calls it on its slow path, once a second, so link polling costs
// nothing per packet.
//
// The driver behaves the same on the real MAC and on QEMU's imx.enet, which
// implements the enhanced descriptors (with ECR.EN1588), SHIFT16, a
// LAN9118-style PHY on MDIO, and RDAR/TDAR as described above. QEMU
// differs in the accelerator: it inserts IPv4 checksums only (none in IPv6
// frames) and checks none on receive; Config says which MAC the driver
// runs on.
package enet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tamanet/tamanet/alloc"
	"github.com/tamanet/tamanet/nic"
	"github.com/tamanet/tamanet/nic/enet/internal/bd"
)

// Defaults and limits.
const (
	// DefaultRing is the default ring size in descriptors.
	DefaultRing = 64
	// MaxRing bounds a ring: QEMU's imx.enet walks at most 1024
	// descriptors per transmit kick.
	MaxRing = 1024
	// DescSize is the size of one (enhanced) buffer descriptor, RM
	// 22.6.14: a ring takes DescSize bytes per descriptor.
	DescSize = bd.Size
	// MinFrame is the shortest frame (without FCS) Receive passes up: an
	// Ethernet header and an ARP packet or IPv4 header with 8 bytes.
	MinFrame = 42
	// MaxFrame is the longest frame without FCS, VLAN tag included.
	MaxFrame = alloc.MaxFrame
	// MaxFL is RCR.MAX_FL: the longest frame with its 4-byte FCS (RM
	// 22.5.9); longer frames are flagged LG.
	MaxFL = MaxFrame + 4
	// DefaultClockHz is the ENET module clock (ipg_clk_root, 66 MHz on
	// i.MX6UL) MSCR divides down to MDC.
	DefaultClockHz = 66_000_000
	// DefaultTxAlign is the transmit buffer alignment: Linux's fec driver
	// keeps ENET transmit buffers 16-byte aligned on ARM.
	DefaultTxAlign = 16
	// DefaultTxTimeout is how long posted transmit descriptors may go
	// without a completion, link up, before Maintain resets the MAC
	// (Linux's fec driver uses the same 2 s watchdog).
	DefaultTxTimeout = 2 * time.Second
	// PHYAuto asks New to scan the MDIO bus for the PHY.
	PHYAuto = -1
	// rxAlign: receive buffer pointers must be divisible by 16, and MRBR
	// is a multiple of 16 (RM 22.6.13, 22.5 ENETx_MRBR).
	rxAlign = 16
	// rxShift is what RACC.SHIFT16 writes in front of every received
	// frame (RM 22.5 ENETx_RACC): two bytes, counted in the descriptor's
	// length, that put the IP header after the 14-byte Ethernet header
	// on a 4-byte boundary.
	rxShift = 2
	// ringAlign: RDSR/TDSR need 8-byte alignment; a cache line is used.
	ringAlign = 64
	// mdcHz is the highest MDC frequency 802.3 22.2.2.13 allows.
	mdcHz = 2_500_000
)

// Config sets up a Driver. Zero values take defaults.
type Config struct {
	// MAC is the station address written to PALR/PAUR. When zero the
	// address the controller holds after reset is kept (QEMU's -net nic
	// macaddr); New fails if that is zero too.
	MAC [6]byte
	// RxRing and TxRing are the ring sizes in descriptors, 2..MaxRing.
	// Default DefaultRing.
	RxRing, TxRing int
	// RMII selects the RMII interface (RCR.RMII_MODE); otherwise MII.
	RMII bool
	// PHYAddr is the PHY's MDIO address, or PHYAuto to scan. If the PHY
	// at PHYAddr does not answer, New scans; if none answers the link is
	// taken as up at 100 Mbit/s full duplex (Extra reports NoPHY).
	PHYAddr int
	// NoPHY skips the PHY entirely: link forced up, 100/full.
	NoPHY bool
	// MDIO is the management bus the PHY is on; nil means this
	// controller's own MMFR.
	MDIO MDIO
	// ClockHz is the module clock MSCR divides to MDC. Default
	// DefaultClockHz.
	ClockHz uint32
	// TxAlign is the alignment a transmit frame's first byte needs; a
	// frame that starts elsewhere is moved down inside its own buffer.
	// Default DefaultTxAlign.
	TxAlign int
	// TxTimeout is how long frames may stay posted with no transmit
	// completion, link up, before Maintain resets the MAC. Default
	// DefaultTxTimeout; negative disables that check.
	TxTimeout time.Duration
	// Barrier, when set, orders memory between the CPU and the MAC's DMA:
	// it runs after a descriptor's address is written and before its
	// E/R bit hands it to the MAC, and after a completed descriptor's
	// status is read and before its buffer is used. Go's atomics order
	// memory only among CPUs (DMB ISH on ARMv7), not against a bus
	// master, so a board whose descriptors the MAC may fetch while it
	// runs must pass a full barrier (DSB SY on i.MX6UL), as Linux's fec
	// driver does with dma_wmb/dma_rmb. Nil (host tests) means none.
	Barrier func()
	// RxChecksum: the MAC checks the IPv4 header and TCP/UDP checksums
	// of received frames (RACC.IPDIS/PRODIS discard a wrong one, ICE/PCR
	// flag it), so ReceivePacket may vouch for them. True for the real
	// i.MX6UL; false under QEMU, whose imx.enet checks nothing and
	// leaves ICE/PCR clear whatever the frame holds.
	RxChecksum bool
	// TxChecksum6: the MAC inserts TCP/UDP checksums in IPv6 frames
	// too (the real MAC). QEMU's imx.enet inserts IPv4 checksums only;
	// without TxChecksum6 the driver computes an IPv6 frame's checksum
	// itself.
	TxChecksum6 bool
	// NoOffloads turns the checksum accelerator off (A/B runs, a MAC
	// that gets it wrong): Offloads reports none, and the stack
	// computes and verifies every checksum.
	NoOffloads bool
}

// Extra are driver counters beyond nic.Stats.
type Extra struct {
	PHYAddr    int    `json:"phy_addr"` // -1: no PHY
	NoPHY      bool   `json:"no_phy"`
	Restarts   uint64 `json:"restarts"`    // MAC re-initialisations (speed/duplex change, every reset)
	TxRealign  uint64 `json:"tx_realign"`  // frames moved to meet TxAlign
	LinkPolls  uint64 `json:"link_polls"`  // PHY polls
	LinkFlaps  uint64 `json:"link_flaps"`  // up->down transitions seen
	MDIOErrors uint64 `json:"mdio_errors"` // failed PHY polls
}

// ErrConfig reports a bad Config or pool shape.
var ErrConfig = errors.New("enet: bad configuration")

// ErrReset is returned when ECR.RESET does not self-clear.
var ErrReset = errors.New("enet: MAC reset did not complete")

// ring is one buffer-descriptor ring.
type ring struct {
	desc []byte
	addr uintptr
	n    int
	// buf[i] is the pool buffer descriptor i points at while posted
	// (owned by the MAC) or completed but not yet consumed; nil when the
	// slot is empty.
	buf []*alloc.Buffer
	// want[i] is the W bit and the generation of slot i's current
	// posting, kept in the two software bits (see genMask). The MAC keeps
	// these bits as written, so a completion that carries others is
	// not this posting's: a zeroed or never-posted entry (generation 0)
	// or an earlier completion written again (another generation). want
	// survives a reset, so a completion from before one is still told
	// apart.
	want []uint16
}

// Posting generations live in the software bits (Soft1, Soft2): 1, 2, 3,
// 1, … with every posting of a slot, never 0, so a zeroed entry is never
// a completion, and one written back from either of the two postings
// before is told from the current one.
const genMask = bd.Soft1 | bd.Soft2

// genNext maps the generation bits, shifted down by 12 and masked with 5
// (Soft2 is bit 12, Soft1 bit 14), to the next generation.
var genNext = [6]uint16{0: bd.Soft2, 1: bd.Soft1, 4: bd.Soft1 | bd.Soft2, 5: bd.Soft2}

// nextPosting returns want with the next generation.
func nextPosting(want uint16) uint16 { return want&^genMask | genNext[want>>12&5] }

func (r *ring) wrap(i int) uint16 {
	if i == r.n-1 {
		return bd.W
	}
	return 0
}

// Driver is an ENET driver. It implements nic.Device.
type Driver struct {
	regs    Regs
	pool    *alloc.Pool
	mdio    MDIO
	mdioMu  sync.Mutex
	info    nic.Info
	rmii    bool
	txAlign int

	barrier func() // Config.Barrier or a no-op

	groupTable atomic.Uint64 // GAUR:GALR, see filter.go

	rx, tx ring
	rxOff  int // where the MAC writes rx data in a pool buffer (RxBD pointer)
	mrbr   int // bytes the MAC may write per rx descriptor

	offloads nic.Offloads
	rxCsum   bool // Config.RxChecksum and offloads on
	txCsum6  bool // Config.TxChecksum6

	// Receive side, owned by the poll goroutine.
	rxHead    int       // next descriptor to complete
	rxFill    int       // next descriptor to post
	rxPosted  bool      // posted since the last RDAR write
	rxInFrame bool      // inside a frame that spans descriptors: discard to L
	rxSpan    nic.Cause // the cause that frame is counted under at L
	rxTaken   uint64    // descriptors taken back from the MAC
	progMbps  int       // speed and duplex programmed into the MAC
	progFull  bool
	phy       int

	// Transmit side, owned by the transmitting goroutine.
	txHead   int // oldest posted descriptor
	txTail   int // next free descriptor
	txUsed   int
	txPosted bool
	txFreed  uint64 // descriptors reclaimed
	// txBad: the head descriptor carries a completion that is not its
	// posting's. The MAC may still read the buffer, so it stays posted
	// until Maintain resets the MAC.
	txBad bool

	// Maintain's state, on the poll goroutine with the gate held.
	txTimeout time.Duration
	lastTx    uint64    // txFreed at the last Maintain
	txStuck   time.Time // since when posted frames make no progress; zero: they do
	lastRx    uint64    // rxTaken at the last Maintain
	rxStrikes int       // consecutive Maintain calls that found the rx ring stuck
	mscr      uint32    // MSCR value, restored after a reset

	// gate keeps the transmit side and a MAC restart apart: a transmit
	// method holds bit 0 for its duration, a restart holds bit 1; neither
	// waits for the other on the hot path.
	gate atomic.Uint32

	linkUp atomic.Bool
	mbps   atomic.Int32
	full   atomic.Bool

	rxc, txc                 nic.RingCounters
	restarts, realign, polls atomic.Uint64
	resets                   atomic.Uint64
	reason                   atomic.Uint32 // resetReasons index of the latest reset
	eimr                     atomic.Uint32 // EnableInterrupts' mask, restored after a reset
	flaps, mdioErrs          atomic.Uint64
	noPHY                    bool
}

var (
	_ nic.Device     = (*Driver)(nil)
	_ nic.Maintainer = (*Driver)(nil)
	_ nic.LinkPoller = (*Driver)(nil)
	_ nic.Offloader  = (*Driver)(nil)
)

// New resets and initialises the MAC behind regs (ECR.RESET, RM 22.5.5),
// resets the PHY and starts autonegotiation, lays out both descriptor rings
// in arena memory, fills the receive ring from pool and enables the MAC.
// The link may still be down when New returns; PollLink (or Maintain) notices
// when it comes up.
func New(regs Regs, arena *alloc.Arena, pool *alloc.Pool, cfg Config) (*Driver, error) {
	if cfg.RxRing == 0 {
		cfg.RxRing = DefaultRing
	}
	if cfg.TxRing == 0 {
		cfg.TxRing = DefaultRing
	}
	for _, n := range [2]int{cfg.RxRing, cfg.TxRing} {
		if n < 2 || n > MaxRing {
			return nil, fmt.Errorf("%w: ring size %d not in [2, %d]", ErrConfig, n, MaxRing)
		}
	}
	if cfg.ClockHz == 0 {
		cfg.ClockHz = DefaultClockHz
	}
	if cfg.TxAlign == 0 {
		cfg.TxAlign = DefaultTxAlign
	}
	if cfg.TxAlign < 1 || cfg.TxAlign&(cfg.TxAlign-1) != 0 || cfg.TxAlign > alloc.Alignment {
		return nil, fmt.Errorf("%w: TxAlign %d", ErrConfig, cfg.TxAlign)
	}
	if cfg.TxTimeout == 0 {
		cfg.TxTimeout = DefaultTxTimeout
	}
	if cfg.PHYAddr < PHYAuto || cfg.PHYAddr > 31 {
		return nil, fmt.Errorf("%w: PHY address %d", ErrConfig, cfg.PHYAddr)
	}

	d := &Driver{regs: regs, pool: pool, rmii: cfg.RMII, txAlign: cfg.TxAlign, txTimeout: cfg.TxTimeout}
	d.barrier = cfg.Barrier
	if d.barrier == nil {
		d.barrier = func() {}
	}
	d.mdio = cfg.MDIO
	if d.mdio == nil {
		d.mdio = d
	}
	// Receive data starts 16-byte aligned after the pool's headroom, so
	// the stack can prepend headers when it turns the buffer around.
	d.rxOff = (pool.DefaultHeadroom() + rxAlign - 1) &^ (rxAlign - 1)
	d.mrbr = (pool.BufferSize() - d.rxOff) &^ (rxAlign - 1)
	if d.mrbr > MaxMRBR {
		d.mrbr = MaxMRBR
	}
	if d.mrbr < rxShift+MaxFL {
		return nil, fmt.Errorf("%w: pool buffers of %d bytes with %d headroom leave %d bytes, less than a %d-byte frame",
			ErrConfig, pool.BufferSize(), d.rxOff, d.mrbr, rxShift+MaxFL)
	}
	if !cfg.NoOffloads {
		d.offloads = nic.Offloads{TxChecksum: true, RxChecksum: cfg.RxChecksum}
		d.rxCsum, d.txCsum6 = cfg.RxChecksum, cfg.TxChecksum6
	}
	// One frame in one buffer each way: ENET has no segmentation, and
	// a frame fits a pool buffer (mrbr above).
	d.offloads.MaxTxPacket, d.offloads.MaxTxBuffers = MaxFrame, 1
	d.offloads.MaxRxPacket, d.offloads.MaxRxBuffers = MaxFrame, 1

	if !d.resetMAC() {
		return nil, ErrReset
	}

	mac := cfg.MAC
	if mac == ([6]byte{}) {
		lo, hi := regs.Read32(RegPALR), regs.Read32(RegPAUR)
		binary.BigEndian.PutUint32(mac[0:4], lo)
		binary.BigEndian.PutUint16(mac[4:6], uint16(hi>>16))
		if mac == ([6]byte{}) {
			return nil, fmt.Errorf("%w: no MAC address configured and none in PALR/PAUR", ErrConfig)
		}
	}
	if mac[0]&1 != 0 {
		return nil, fmt.Errorf("%w: MAC %x is multicast", ErrConfig, mac)
	}

	// MDC at most 2.5 MHz: MII_SPEED = ceil(clk / 5 MHz) - 1, hold time
	// 2 module clocks (RM 22.5.7).
	div := (cfg.ClockHz + 2*mdcHz - 1) / (2 * mdcHz)
	if div < 2 {
		div = 2
	}
	if div > 64 {
		div = 64
	}
	d.mscr = (div-1)<<mscrMIISpeedShift | 1<<mscrHoldTimeShift

	var err error
	if d.rx, err = newRing(arena, cfg.RxRing); err != nil {
		return nil, err
	}
	if d.tx, err = newRing(arena, cfg.TxRing); err != nil {
		return nil, err
	}

	d.info = nic.Info{Name: "enet", MAC: mac, MTU: MaxFrame - nic.FrameOverhead, MaxFrame: MaxFrame, RxRing: cfg.RxRing, TxRing: cfg.TxRing}
	// Until the PHY says otherwise the MAC runs 100 Mbit/s full duplex.
	d.progMbps, d.progFull = 100, true
	d.initMAC()

	d.Refill()
	d.enable()
	d.rxPosted = true
	d.RxKick()

	d.phy = -1
	if cfg.NoPHY {
		d.noPHY = true
	} else {
		d.phy = cfg.PHYAddr
		if d.phy == PHYAuto || !phyAnswers(d.mdio, d.phy) {
			d.phy = findPHY(d.mdio)
		}
		if d.phy < 0 {
			d.noPHY = true
		} else if err := resetPHY(d.mdio, d.phy); err != nil {
			d.Close()
			return nil, err
		}
	}
	if d.noPHY {
		d.setLink(linkState{up: true, mbps: 100, full: true})
	} else {
		d.PollLink()
	}
	return d, nil
}

func phyAnswers(m MDIO, phy int) bool {
	if phy < 0 {
		return false
	}
	id1, err := m.ReadPHY(phy, phyID1)
	return err == nil && id1 != 0xffff && id1 != 0
}

func newRing(arena *alloc.Arena, n int) (ring, error) {
	mem, addr, err := arena.Alloc(n*bd.Size, ringAlign)
	if err != nil {
		return ring{}, err
	}
	r := ring{desc: mem, addr: addr, n: n, buf: make([]*alloc.Buffer, n), want: make([]uint16, n)}
	for i := range r.want {
		r.want[i] = r.wrap(i) // generation 0: never posted
	}
	r.reset()
	return r, nil
}

// resetMAC resets the MAC (ECR.RESET, RM 22.5.5) and waits for the bit to
// self-clear; it reports whether it did. Every register is back at its
// reset value afterwards and ETHEREN is clear.
func (d *Driver) resetMAC() bool {
	d.regs.Write32(RegECR, ECRReset)
	for i := 0; i < 100000; i++ {
		if d.regs.Read32(RegECR)&ECRReset == 0 {
			return true
		}
	}
	return false
}

// initMAC programs every register ECR.RESET clears from the driver's
// state: New runs it once and every reset runs it again, so whatever is
// written here (station address, hash filters, ring addresses, speed and
// duplex, MDC divider, interrupt mask) survives a reset. ETHEREN must be
// clear.
func (d *Driver) initMAC() {
	regs := d.regs
	regs.Write32(RegEIMR, d.eimr.Load())
	regs.Write32(RegEIR, 0xffff_ffff) // W1C every stale event
	regs.Write32(RegMSCR, d.mscr)
	d.program()
	mac := d.info.MAC
	regs.Write32(RegPALR, binary.BigEndian.Uint32(mac[0:4]))
	regs.Write32(RegPAUR, uint32(binary.BigEndian.Uint16(mac[4:6]))<<16|0x8808)
	regs.Write32(RegIAUR, 0)
	regs.Write32(RegIALR, 0)
	d.writeGroupTable() // GAUR/GALR: the groups the stack asked for (filter.go)
	regs.Write32(RegTFWR, TFWRStrFwd)
	regs.Write32(RegMRBR, uint32(d.mrbr))
	// Truncate at the buffer size, so a frame never spans descriptors
	// on the real MAC and on QEMU, which truncates at FTRL with
	// enhanced descriptors (Receive discards a frame that spans them
	// all the same).
	regs.Write32(RegFTRL, uint32(d.mrbr))
	// Deliver frames with receive errors (they are counted); with
	// RxChecksum, discard those whose IPv4 header or TCP/UDP checksum is
	// wrong, so that a frame the MAC checked reaches the driver only
	// when it is right. Discard needs store-and-forward receive (RSFL
	// 0, its reset value, which the driver never changes).
	racc := uint32(RACCShift16)
	if d.rxCsum {
		racc |= RACCIPDis | RACCProDis
	}
	regs.Write32(RegRACC, racc)
	var tacc uint32
	if d.offloads.TxChecksum {
		tacc = TACCIPChk | TACCProChk
	}
	regs.Write32(RegTACC, tacc)
	regs.Write32(RegRDSR, uint32(d.rx.addr))
	regs.Write32(RegTDSR, uint32(d.tx.addr))
}

// reset clears every descriptor, keeping W on the last. The MAC must not be
// running. want is kept: the next posting of a slot takes the next
// generation.
func (r *ring) reset() {
	for i := 0; i < r.n; i++ {
		clear(r.desc[i*bd.Size+bd.Addr : (i+1)*bd.Size])
		bd.Store(r.desc, i*bd.Size, bd.Word(0, r.wrap(i)))
	}
}

// post writes every field of the descriptor at off but the control word:
// the buffer address, the extended status/control word esc, and zero in
// the words the MAC writes back (receive protocol information, BDU), so
// that nothing of an earlier posting is read as this one's.
func (r *ring) post(off int, addr uintptr, esc uint32) {
	d := r.desc[off : off+bd.Size]
	binary.LittleEndian.PutUint32(d[bd.Addr:], uint32(addr))
	binary.LittleEndian.PutUint32(d[bd.ESC:], esc)
	binary.LittleEndian.PutUint32(d[bd.Prot:], 0)
	binary.LittleEndian.PutUint32(d[bd.BDU:], 0)
}

// program writes RCR and TCR for the programmed speed and duplex. ETHEREN
// must be clear (RM 22.5.10: FDEN changes only while the MAC is disabled).
//
// MAX_FL leaves room for the SHIFT16 bytes: QEMU counts them in the frame
// length it checks against MAX_FL, and would flag a full-sized VLAN frame
// LG. Receive itself drops frames longer than MaxFrame.
func (d *Driver) program() {
	rcr := uint32(rxShift+MaxFL)<<RCRMaxFLSh | RCRMIIMode | RCRFCE
	if d.rmii {
		rcr |= RCRRMIIMode
		if d.progMbps == 10 {
			rcr |= RCRRMII10T
		}
	}
	var tcr uint32
	if d.progFull {
		tcr |= TCRFDEN
	} else {
		rcr |= RCRDRT
	}
	d.regs.Write32(RegRCR, rcr)
	d.regs.Write32(RegTCR, tcr)
}

// enable sets little-endian enhanced descriptors and ETHEREN (RM 22.5.5).
func (d *Driver) enable() {
	ecr := d.regs.Read32(RegECR)
	ecr &^= ECRSpeed | ECRReset
	d.regs.Write32(RegECR, ecr|ECREN1588|ECRDBSWP|ECREtherEn)
}

// disable stops the MAC gracefully: transmit stop (TCR.GTS, wait for
// EIR.GRA), then ETHEREN clear, which resets the descriptor pointers to
// RDSR/TDSR.
func (d *Driver) disable() {
	tcr := d.regs.Read32(RegTCR)
	d.regs.Write32(RegTCR, tcr|TCRGTS)
	start := time.Now()
	for d.regs.Read32(RegEIR)&EventGRA == 0 && time.Since(start) < 10*time.Millisecond {
	}
	d.regs.Write32(RegEIR, EventGRA)
	d.regs.Write32(RegECR, d.regs.Read32(RegECR)&^(ECREtherEn|ECRReset))
	d.regs.Write32(RegTCR, tcr&^TCRGTS)
}

// Close stops the MAC and returns every buffer still on either ring to the
// pool. The driver must not be used afterwards.
func (d *Driver) Close() {
	d.disable()
	d.dropRings()
}

// dropRings returns every ring buffer to the pool and empties both rings.
// The MAC must be disabled. Frames still queued for transmit are counted
// as link-down drops.
func (d *Driver) dropRings() {
	for i, b := range d.tx.buf {
		if b != nil {
			d.tx.buf[i] = nil
			b.Free()
			d.txc.Drop(nic.LinkDown)
		}
	}
	for i, b := range d.rx.buf {
		if b != nil {
			d.rx.buf[i] = nil
			b.Free()
		}
	}
	d.tx.reset()
	d.rx.reset()
	d.txHead, d.txTail, d.txUsed, d.txPosted, d.txBad = 0, 0, 0, false, false
	d.rxHead, d.rxFill, d.rxInFrame = 0, 0, false
}

// Reset reasons, shown in Stats.ResetReason.
const (
	noReset = iota
	resetBusError
	resetTxTimeout
	resetTxStale
	resetRxStuck
)

var resetReasons = [...]string{
	noReset:        "",
	resetBusError:  "bus error",               // EIR.EBERR: the uDMA stopped
	resetTxTimeout: "tx timeout",              // posted frames not sent within TxTimeout
	resetTxStale:   "tx completion untrusted", // a completion not of its posting at the head
	resetRxStuck:   "rx ring stuck",           // completions past an empty head, or RDAR off
}

// restart re-initialises the MAC (reinit) from the receive goroutine. It
// takes the transmit side's gate; if a transmit method holds it for long,
// it gives up and returns false.
func (d *Driver) restart(why uint32) bool {
	for i := 0; !d.gate.CompareAndSwap(0, 2); i++ {
		if i >= 1000 {
			return false
		}
		time.Sleep(10 * time.Microsecond)
	}
	d.reinit(why)
	d.gate.Store(0)
	d.RxKick()
	return true
}

// reinit stops the MAC, takes every buffer back from both rings (a frame
// still posted for transmit is counted as a link-down drop), resets the
// MAC (ECR.RESET), programs it again with initMAC and the programmed speed
// and duplex, refills the receive ring and enables it; the caller kicks
// RDAR. A reason other than noReset counts as a recovery in Stats.Resets.
// The caller holds the gate.
func (d *Driver) reinit(why uint32) {
	d.disable()
	d.dropRings()
	d.resetMAC() // if it does not self-clear, programming anyway is the best left to do
	d.initMAC()
	d.enable()
	d.Refill()
	d.rxPosted = true
	d.txStuck, d.rxStrikes = time.Time{}, 0 // txBad: dropRings
	d.lastTx, d.lastRx = d.txFreed, d.rxTaken
	d.restarts.Add(1)
	if why != noReset {
		d.reason.Store(why)
		d.resets.Add(1)
	}
}

// Info returns the device's fixed properties.
func (d *Driver) Info() nic.Info { return d.info }

// Pool returns the pool the driver's buffers come from.
func (d *Driver) Pool() *alloc.Pool { return d.pool }

// LinkUp reports the link state PollLink last read from the PHY.
func (d *Driver) LinkUp() bool { return d.linkUp.Load() }

// Stats fills s with a snapshot of the counters.
func (d *Driver) Stats(s *nic.Stats) {
	s.Name = d.info.Name
	s.Link = d.linkUp.Load()
	s.SpeedMbps = int(d.mbps.Load())
	s.FullDuplex = d.full.Load()
	d.rxc.Snapshot(&s.Rx)
	d.txc.Snapshot(&s.Tx)
	s.Resets = d.resets.Load()
	s.ResetReason = resetReasons[d.reason.Load()]
}

// Extra returns the driver's own counters.
func (d *Driver) Extra() Extra {
	return Extra{
		PHYAddr:    d.phy,
		NoPHY:      d.noPHY,
		Restarts:   d.restarts.Load(),
		TxRealign:  d.realign.Load(),
		LinkPolls:  d.polls.Load(),
		LinkFlaps:  d.flaps.Load(),
		MDIOErrors: d.mdioErrs.Load(),
	}
}

func (d *Driver) setLink(s linkState) {
	if d.linkUp.Load() && !s.up {
		d.flaps.Add(1)
	}
	d.mbps.Store(int32(s.mbps))
	d.full.Store(s.full)
	d.linkUp.Store(s.up)
}

// PollLink implements nic.LinkPoller: it reads link, speed and duplex from
// the PHY, publishes them in Stats and LinkUp, and re-programs the MAC
// (refilled and kicked) when the negotiated speed or duplex differs from
// what it runs. It also recovers from a DMA bus error (EIR.EBERR), which
// stops the MAC, by resetting it. Call it on the receive (poll) goroutine.
func (d *Driver) PollLink() {
	d.polls.Add(1)
	if d.busError() {
		d.restart(resetBusError)
	}
	if d.noPHY {
		return
	}
	s, err := readLink(d.mdio, d.phy)
	if err != nil {
		d.mdioErrs.Add(1)
		return
	}
	if s.up && (s.mbps != d.progMbps || s.full != d.progFull) {
		d.progMbps, d.progFull = s.mbps, s.full
		if !d.restart(noReset) {
			// Try again at the next poll.
			d.progMbps, d.progFull = 0, false
		}
	}
	d.setLink(s)
}

// Receive returns the next received frame, or nil when none is complete.
// The caller owns the returned buffer; its body is the frame without FCS.
func (d *Driver) Receive() *alloc.Buffer {
	b, _ := d.receive()
	return b
}

// receive is Receive, and returns the frame's last descriptor's extended
// status (ICE, PCR, ...) as well.
func (d *Driver) receive() (*alloc.Buffer, uint32) {
	r := &d.rx
	for range r.n {
		i := d.rxHead
		b := r.buf[i]
		if b == nil {
			return nil, 0 // not posted (pool was empty): the MAC stops here
		}
		off := i * bd.Size
		length, status := bd.Split(bd.Load(r.desc, off))
		if status&bd.E != 0 {
			return nil, 0
		}
		want := r.want[i]
		if (status^want)&genMask != 0 {
			d.rearm(i, status)
			return nil, 0
		}
		d.barrier() // the frame's bytes after the status that covers them
		// A completion of this posting: the MAC is done with the
		// descriptor, b goes up or back to the pool, and the slot
		// waits for Refill.
		r.buf[i] = nil
		d.rxTaken++
		d.rxHead++
		if d.rxHead == r.n {
			d.rxHead = 0
		}
		// The MAC never writes W or the buffer pointer (RM 22.6.13):
		// a completion that changed them says the MAC walks another
		// ring than the driver's or wrote the frame elsewhere; b holds
		// no frame.
		fault := nic.NumCauses
		switch {
		case status&bd.W != want&bd.W:
			fault = nic.BadIndex
		case binary.LittleEndian.Uint32(r.desc[off+bd.Addr:]) != uint32(b.Addr()+uintptr(d.rxOff)):
			fault = nic.BadID
		}
		if status&bd.L == 0 {
			// Part of a frame longer than one buffer: discard every
			// piece; the frame is counted once, at its last one.
			if !d.rxInFrame {
				d.rxInFrame, d.rxSpan = true, nic.Oversize
			}
			if fault != nic.NumCauses && d.rxSpan == nic.Oversize {
				d.rxSpan = fault
			}
			b.Free()
			continue
		}
		if fault == nic.NumCauses && d.rxInFrame && d.rxSpan != nic.Oversize {
			fault = d.rxSpan
		}
		if fault != nic.NumCauses {
			d.rxInFrame = false
			d.rxc.Drop(fault)
			b.Free()
			continue
		}
		if c, bad := rxCause(status, d.rxInFrame); bad {
			d.rxInFrame = false
			d.rxc.Drop(c)
			b.Free()
			continue
		}
		// The MAC counts the SHIFT16 bytes and leaves the FCS in
		// the buffer.
		n := int(length) - rxShift - 4
		switch {
		case int(length) > d.mrbr || n < 0:
			d.rxc.Drop(nic.BadLength)
		case n < MinFrame:
			d.rxc.Drop(nic.Runt)
		case n > MaxFrame:
			d.rxc.Drop(nic.Oversize)
		default:
			b.SetBody(d.rxOff+rxShift, n) // within mrbr: cannot fail
			d.rxc.Count(n)
			return b, binary.LittleEndian.Uint32(r.desc[off+bd.ESC:])
		}
		b.Free()
	}
	return nil, 0
}

// rearm hands rx slot i back to the MAC as posted after a completion (its
// status) that is not its posting's, counted under untrusted's cause. The
// MAC may still hold the buffer, so it stays on the slot and is never
// handed out; if the MAC has in fact moved past the slot, the ring is stuck
// behind it and Maintain resets the MAC.
func (d *Driver) rearm(i int, status uint16) {
	r := &d.rx
	d.rxc.Drop(untrusted(status))
	off := i * bd.Size
	r.post(off, r.buf[i].Addr()+uintptr(d.rxOff), bd.RxInt)
	d.barrier()
	bd.Store(r.desc, off, bd.Word(0, bd.E|r.want[i]))
	d.regs.Write32(RegRDAR, DescriptorActive) // a MAC stopped at the slot resumes
	d.rxc.Kicks.Add(1)
}

// untrusted is the cause a descriptor handed back without its posting's
// generation (status) is counted under: Stale for a zeroed or never-posted
// entry, Duplicate for an earlier posting's completion written again.
func untrusted(status uint16) nic.Cause {
	if status&genMask == 0 {
		return nic.Stale
	}
	return nic.Duplicate
}

// rxCause maps the error bits of a frame's last descriptor to one cause. TR
// and OV first: with either set the other bits are not meaningful (RM Table
// 22-35).
func rxCause(status uint16, spanned bool) (nic.Cause, bool) {
	switch {
	case status&bd.TR != 0:
		return nic.Truncated, true
	case status&bd.OV != 0:
		return nic.Overrun, true
	case status&bd.LG != 0:
		return nic.LengthViolation, true
	case status&bd.NO != 0:
		return nic.NonOctet, true
	case status&bd.CR != 0:
		return nic.CRC, true
	case spanned:
		return nic.Oversize, true
	}
	return 0, false
}

// Refill posts a fresh pool buffer on every empty receive descriptor, in
// ring order, and returns how many it posted. An empty pool is counted as
// nic.NoBuffer; the MAC stops at the first unposted descriptor until a
// later Refill and RxKick.
func (d *Driver) Refill() int {
	r := &d.rx
	posted := 0
	for r.buf[d.rxFill] == nil {
		b := d.pool.Get()
		if b == nil {
			d.rxc.Drop(nic.NoBuffer)
			break
		}
		i := d.rxFill
		off := i * bd.Size
		w := nextPosting(r.want[i])
		r.want[i] = w
		r.buf[i] = b // owned by the MAC from the store below until a completion of this posting
		// RxInt: with enhanced descriptors the MAC raises RXB/RXF
		// only for descriptors that ask (RM 22.6.14; QEMU likewise).
		r.post(off, b.Addr()+uintptr(d.rxOff), bd.RxInt)
		d.barrier() // address before E
		bd.Store(r.desc, off, bd.Word(0, bd.E|w))
		d.rxFill++
		if d.rxFill == r.n {
			d.rxFill = 0
		}
		posted++
	}
	if posted > 0 {
		d.rxPosted = true
	}
	return posted
}

// RxKick writes RDAR if descriptors were posted since the last kick (RM
// 22.5.3: the uDMA stops at a full descriptor and resumes on RDAR).
func (d *Driver) RxKick() {
	if d.rxPosted {
		d.rxPosted = false
		d.regs.Write32(RegRDAR, DescriptorActive)
		d.rxc.Kicks.Add(1)
	}
}

// Transmit posts b, whose body is one Ethernet frame without FCS (the MAC
// appends it, TC). On success the driver owns b until Reclaim; a refusal
// (nic.Refusal) leaves b with the caller, uncounted.
func (d *Driver) Transmit(b *alloc.Buffer) error {
	if !d.gate.CompareAndSwap(0, 1) {
		return nic.ErrLinkDown // the MAC is being re-initialised
	}
	err := d.transmit(b, nil)
	d.gate.And(^uint32(1))
	return err
}

// transmit posts b, asking the accelerator for what meta says (nil:
// nothing).
func (d *Driver) transmit(b *alloc.Buffer, meta *nic.TxMeta) error {
	if !d.linkUp.Load() {
		return nic.ErrLinkDown
	}
	n := b.Len()
	if n < 14 {
		return nic.ErrRunt
	}
	if n > MaxFrame {
		return nic.ErrOversize
	}
	if d.txUsed == d.tx.n {
		d.txc.Full.Add(1) // back-pressure: the caller keeps b
		return nic.ErrRingFull
	}
	// TxInt: the MAC raises TXB/TXF only for descriptors that ask (RM
	// 22.6.14), as the legacy descriptors always did.
	esc := uint32(bd.TxInt)
	if meta != nil && (meta.NeedsCsum || meta.GSO != nic.GSONone) {
		x, err := d.txChecksum(b.Bytes(), meta)
		if err != nil {
			return err
		}
		esc |= x
	}
	if mis := int(b.BodyAddr() % uintptr(d.txAlign)); mis != 0 {
		// Move the frame down to the aligned offset in front of it,
		// inside the same buffer (copy handles the overlap).
		o := b.Offset() - mis
		raw := b.Raw()
		copy(raw[o:o+n], raw[o+mis:o+mis+n])
		b.SetBody(o, n)
		d.realign.Add(1)
	}
	r := &d.tx
	i := d.txTail
	off := i * bd.Size
	w := nextPosting(r.want[i])
	r.want[i] = w
	r.buf[i] = b // owned by the MAC from the store below until a completion of this posting
	r.post(off, b.BodyAddr(), esc)
	d.barrier() // frame and address before R
	bd.Store(r.desc, off, bd.Word(uint16(n), bd.R|bd.L|bd.TC|w))
	d.txTail++
	if d.txTail == r.n {
		d.txTail = 0
	}
	d.txUsed++
	d.txPosted = true
	d.txc.Count(n)
	return nil
}

// Reclaim returns transmitted buffers to the pool and returns how many it
// freed. Transmit errors the MAC flagged in EIR since the last call are
// counted as nic.TxError.
func (d *Driver) Reclaim() int {
	if !d.gate.CompareAndSwap(0, 1) {
		return 0
	}
	r := &d.tx
	freed := 0
	for d.txUsed > 0 && !d.txBad {
		i := d.txHead
		off := i * bd.Size
		_, status := bd.Split(bd.Load(r.desc, off))
		if status&bd.R != 0 {
			break
		}
		want := r.want[i]
		if (status^want)&genMask != 0 {
			// Not this posting's completion (see ring.want): the
			// MAC may still read b. It stays posted until Maintain
			// has stopped and reset the MAC.
			d.txBad = true
			d.txc.Drop(untrusted(status))
			break
		}
		b := r.buf[i]
		// The MAC is done with b. It never writes W or the pointer: a
		// completion that changed them sent something else.
		switch {
		case status&bd.W != want&bd.W:
			d.txc.Drop(nic.BadIndex)
		case binary.LittleEndian.Uint32(r.desc[off+bd.Addr:]) != uint32(b.BodyAddr()):
			d.txc.Drop(nic.BadID)
		}
		r.buf[i] = nil
		b.Free()
		d.txFreed++
		d.txHead++
		if d.txHead == r.n {
			d.txHead = 0
		}
		d.txUsed--
		freed++
	}
	if freed > 0 {
		const txErr = EventTxErrors &^ EventEBERR // EBERR: busError
		if e := d.regs.Read32(RegEIR) & txErr; e != 0 {
			d.regs.Write32(RegEIR, e)
			for ; e != 0; e &= e - 1 {
				d.txc.Drop(nic.TxError)
			}
		}
	}
	d.gate.And(^uint32(1))
	return freed
}

// Offloads implements nic.Offloader: checksum insertion (TxChecksum, the
// MAC computes the whole checksum), receive checksums where the MAC checks
// them (RxChecksum, Config.RxChecksum), one frame in one buffer each way.
func (d *Driver) Offloads() nic.Offloads { return d.offloads }

// TransmitPacket implements nic.Offloader: it posts bufs[0], one Ethernet
// frame, as Transmit does, and with meta.NeedsCsum has the MAC insert its
// TCP or UDP checksum (and an IPv4 header's) on the way out (txChecksum).
// It refuses more than one buffer, segmentation (the ENET has no TSO) and
// a meta that does not fit the frame.
func (d *Driver) TransmitPacket(bufs []*alloc.Buffer, meta *nic.TxMeta) error {
	if len(bufs) != 1 {
		return errMeta
	}
	if !d.gate.CompareAndSwap(0, 1) {
		return nic.ErrLinkDown // the MAC is being re-initialised
	}
	err := d.transmit(bufs[0], meta)
	d.gate.And(^uint32(1))
	return err
}

// ReceivePacket implements nic.Offloader: Receive, and whether the MAC
// vouches for the frame's checksums (rxVouched).
func (d *Driver) ReceivePacket(bufs []*alloc.Buffer) (int, nic.RxMeta) {
	if len(bufs) == 0 {
		return 0, nic.RxMeta{}
	}
	b, esc := d.receive()
	if b == nil {
		return 0, nic.RxMeta{}
	}
	bufs[0] = b
	return 1, nic.RxMeta{Verified: d.rxCsum && rxVouched(b.Bytes(), esc)}
}

// TxKick writes TDAR if frames were posted since the last kick (RM 22.5.4).
func (d *Driver) TxKick() {
	if !d.gate.CompareAndSwap(0, 1) {
		return
	}
	if d.txPosted {
		d.txPosted = false
		d.regs.Write32(RegTDAR, DescriptorActive)
		d.txc.Kicks.Add(1)
	}
	d.gate.And(^uint32(1))
}

// TxFree returns the number of free transmit descriptors.
func (d *Driver) TxFree() int { return d.tx.n - d.txUsed }

// EnableInterrupts unmasks the EIR events in mask (EIMR, RM 22.5.2), e.g.
// EventRXF|EventTXF for a board that wakes its poll loop from the IRQ.
// The mask is restored after a reset.
func (d *Driver) EnableInterrupts(mask uint32) {
	d.eimr.Store(mask)
	d.regs.Write32(RegEIMR, mask)
}

// Maintain implements nic.Maintainer: every few hundred milliseconds, off
// the per-packet path, it looks for a MAC that needs a reset and does it
// (reinit). It reads EIR on every call; while posted frames make no
// progress, the transmit head descriptor; while no frame came in since the
// last call, the receive head descriptor, RDAR and, with RDAR on, every
// receive descriptor (rxStuck). Reasons:
//   - EIR.EBERR: a DMA bus error stopped the uDMA;
//   - an untrusted transmit completion holds the ring (see Reclaim);
//   - frames posted, link up, and no transmit completion for TxTimeout;
//     the first call that sees no progress writes TDAR again, in case
//     the MAC missed the kick;
//   - the receive head still empty (E) while a later posted descriptor
//     is complete or RDAR is off: the MAC walks elsewhere in the ring.
//     Seen on two calls in a row; the first writes RDAR again.
//
// It returns true when it reset the MAC; both rings are rebuilt then and
// the receive ring refilled and kicked. It runs on the poll goroutine; if a
// transmit is in progress it skips this round. It does not poll the PHY:
// PollLink does.
func (d *Driver) Maintain() bool {
	if !d.gate.CompareAndSwap(0, 2) {
		return false
	}
	now := time.Now()
	why := d.check(now)
	if why != noReset {
		d.reinit(why)
	}
	d.gate.Store(0)
	d.RxKick() // after a reset: the refilled ring
	return why != noReset
}

// check finds the reason for a reset, or noReset. The gate is held.
func (d *Driver) check(now time.Time) uint32 {
	if d.busError() {
		return resetBusError
	}
	if d.txBad {
		return resetTxStale
	}
	stuck := d.txUsed > 0 && d.txFreed == d.lastTx && d.linkUp.Load()
	if stuck {
		_, status := bd.Split(bd.Load(d.tx.desc, d.txHead*bd.Size))
		stuck = status&bd.R != 0 // a completion Reclaim has not taken yet is progress
	}
	d.lastTx = d.txFreed
	switch {
	case !stuck:
		d.txStuck = time.Time{}
	case d.txStuck.IsZero():
		d.txStuck = now
		d.regs.Write32(RegTDAR, DescriptorActive)
	case d.txTimeout > 0 && now.Sub(d.txStuck) >= d.txTimeout:
		return resetTxTimeout
	}

	if d.rxTaken != d.lastRx || !d.rxStuck() {
		d.rxStrikes = 0
	} else if d.rxStrikes++; d.rxStrikes >= 2 {
		return resetRxStuck
	} else {
		d.regs.Write32(RegRDAR, DescriptorActive)
	}
	d.lastRx = d.rxTaken
	return noReset
}

// busError reports, acknowledges and counts EIR.EBERR: a DMA bus error
// stopped the uDMA, and only a reset starts it again.
func (d *Driver) busError() bool {
	e := d.regs.Read32(RegEIR) & EventEBERR
	if e == 0 {
		return false
	}
	d.regs.Write32(RegEIR, e)
	d.txc.Drop(nic.TxError)
	return true
}

// rxStuck reports a receive ring the MAC walks differently from the
// driver: the head is posted and empty, yet RDAR is off (the MAC found no
// empty descriptor where it looks) or another posted descriptor is
// complete (the MAC fills descriptors strictly in ring order, RM 22.6.13).
func (d *Driver) rxStuck() bool {
	r := &d.rx
	if r.buf[d.rxHead] == nil {
		return false // the pool ran dry: Refill's business
	}
	if _, status := bd.Split(bd.Load(r.desc, d.rxHead*bd.Size)); status&bd.E == 0 {
		return false // a completion Receive has not taken yet
	}
	if d.regs.Read32(RegRDAR) == 0 {
		return true
	}
	for i := range r.n {
		if _, status := bd.Split(bd.Load(r.desc, i*bd.Size)); r.buf[i] != nil && status&bd.E == 0 {
			return true
		}
	}
	return false
}

// AckInterrupt reads the frame events (RXF, RXB, TXF, TXB) from EIR,
// acknowledges them and returns them. Error events stay for Reclaim and
// PollLink to count.
func (d *Driver) AckInterrupt() uint32 {
	e := d.regs.Read32(RegEIR) & (EventRXF | EventRXB | EventTXF | EventTXB)
	if e != 0 {
		d.regs.Write32(RegEIR, e)
	}
	return e
}
