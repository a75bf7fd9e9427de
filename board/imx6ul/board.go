//go:build tamago && arm

package imx6ul

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"strconv"

	"github.com/usbarmory/tamago/dma"
	tenet "github.com/usbarmory/tamago/soc/nxp/enet"
	soc "github.com/usbarmory/tamago/soc/nxp/imx6ul"

	"github.com/tamanet/tamanet/alloc"
	"github.com/tamanet/tamanet/nic/enet"
)

// Spec is what an i.MX6UL board has of its own: which ENET controller is
// wired to its Ethernet port, where the PHY answers and what it needs.
type Spec struct {
	// Name names the board in errors, the log and /stats.
	Name string
	// ENET is tamago's imx6ul.ENET1 or ENET2, with the board's
	// EnablePHY hook set (tamago's board package does that).
	ENET *tenet.ENET
	// IRQ is the controller's interrupt, soc.ENET1_IRQ or soc.ENET2_IRQ
	// (i.MX6ULL RM 3.2 "Cortex A7 interrupts").
	IRQ int
	// PHYAddr is the PHY's MDIO address, or enet.PHYAuto to scan.
	PHYAddr int
	// FixPHY, if set, runs once the driver is up: it sets up what the
	// driver's PHY reset undid. An error fails the bring-up.
	FixPHY func(d *enet.Driver) error
	// Info holds board facts for the firmware's index page and /stats.
	Info map[string]string
	// RxChecksum and TxChecksum6 say what the MAC's checksum accelerator
	// really does (enet.Config): true on silicon, which checks receive
	// checksums and inserts IPv6 ones; false under QEMU, whose imx.enet
	// checks nothing on receive and inserts IPv4 checksums only.
	RxChecksum, TxChecksum6 bool
}

// Board is an i.MX6UL board as the firmware uses it: its DMA memory and
// its ENET controller. The console, the clock and the idle hook are the
// runtime's and are set up when the packages are imported.
type Board struct {
	// NoOffloads makes NIC refuse the ENET's checksum accelerator
	// (enet.Config.NoOffloads): the OFFLOADS=off build.
	NoOffloads bool

	spec Spec
	dma  []byte
	nic  *NIC
}

// New returns the board s describes, with ArenaSize bytes of the DMA
// region reserved for the network driver's arena. Board packages call it
// once: the region has room for one.
func New(s Spec) *Board {
	_, mem := dma.Reserve(ArenaSize, 4096)
	return &Board{spec: s, dma: mem}
}

// Name returns the board's name (Spec.Name).
func (b *Board) Name() string { return b.spec.Name }

// DMA returns the memory for the network driver's arena (rings and packet
// pool): ArenaSize bytes of the DMA region, page aligned, outside Go's RAM.
func (b *Board) DMA() []byte { return b.dma }

// Info returns board facts for the firmware's index page and /stats: the
// SoC, the ENET controller, whether the CPU halts when idle, Spec.Info,
// and, once NIC has brought the controller up, the PHY's address.
func (b *Board) Info() map[string]string {
	info := maps.Clone(b.spec.Info)
	if info == nil {
		info = map[string]string{}
	}
	info["soc"] = soc.Model()
	info["idle"] = "spin"
	if haltIdleOn {
		info["idle"] = "wfi"
	}
	if c := b.spec.ENET; c != nil {
		info["enet"] = fmt.Sprintf("ENET%d@%#x", c.Index, c.Base)
	}
	if b.nic != nil {
		info["phy"] = strconv.Itoa(b.nic.Extra().PHYAddr)
	}
	return info
}

// NIC brings up the board's ENET controller with station address mac,
// rings from arena and receive buffers from pool, and runs Spec.FixPHY.
// The driver is polled until NIC.EnableInterrupt. The board has one
// controller, so NIC fails after it succeeded once.
//
// tamago's ENET.Init does the SoC side: it ungates the ENET clock (CCM
// CCGR0), runs the ENET PLL at 50 MHz as the RMII reference clock (CCM
// analog PLL_ENET, IOMUXC GPR1), and through the board's EnablePHY muxes
// the RMII and MDIO pads and sets the PHY up. nic/enet then resets the MAC
// and takes it over: none of tamago's rings or buffers are used.
func (b *Board) NIC(mac [6]byte, arena *alloc.Arena, pool *alloc.Pool) (*NIC, error) {
	if b.nic != nil {
		return nil, fmt.Errorf("%s: the ENET is already up", b.spec.Name)
	}
	d, err := b.newENET(mac, arena, pool)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.spec.Name, err)
	}
	if b.spec.FixPHY != nil {
		if err := b.spec.FixPHY(d); err != nil {
			d.Close()
			return nil, fmt.Errorf("%s: %w", b.spec.Name, err)
		}
	}
	b.nic = &NIC{Driver: d, irq: b.spec.IRQ}
	return b.nic, nil
}

func (b *Board) newENET(mac [6]byte, arena *alloc.Arena, pool *alloc.Pool) (*enet.Driver, error) {
	ctrl := b.spec.ENET
	if ctrl == nil {
		return nil, errors.New("imx6ul: no such ENET controller on this SoC")
	}
	// tamago's Init programs ctrl.MAC, or a random one when nil.
	ctrl.MAC = net.HardwareAddr(mac[:])
	ctrl.Init()

	cfg := enet.Config{MAC: mac, PHYAddr: b.spec.PHYAddr, RMII: ctrl.RMII,
		RxChecksum: b.spec.RxChecksum, TxChecksum6: b.spec.TxChecksum6, NoOffloads: b.NoOffloads}
	// Descriptors live in non-cacheable normal memory that the MAC reads
	// while it runs: order them against its DMA with a full barrier.
	cfg.Barrier = dsb
	if ctrl.Clock != nil {
		cfg.ClockHz = ctrl.Clock()
	}
	d, err := enet.New(Regs(ctrl.Base), arena, pool, cfg)
	if err != nil {
		return nil, fmt.Errorf("imx6ul: ENET%d at %#x: %w", ctrl.Index, ctrl.Base, err)
	}
	return d, nil
}
