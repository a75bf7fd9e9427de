//go:build tamago && arm

package imx6ul

import (
	"errors"
	"fmt"
	"net"

	tenet "github.com/usbarmory/tamago/soc/nxp/enet"

	"github.com/tamanet/tamanet/alloc"
	"github.com/tamanet/tamanet/nic/enet"
)

// NewENET brings up the ENET controller ctrl, one of tamago's
// imx6ul.ENET1 or ENET2 with the board's EnablePHY hook set, and returns the
// tamanet driver on it, with station address mac, rings from arena and
// receive buffers from pool.
//
// tamago's ENET.Init does the SoC side: it ungates the ENET clock (CCM
// CCGR0), runs the ENET PLL at 50 MHz as the RMII reference clock (CCM
// analog PLL_ENET, IOMUXC GPR1), and through the board's EnablePHY muxes the
// RMII and MDIO pads and sets the PHY up. nic/enet then resets the MAC and
// takes it over: none of tamago's rings or buffers are used. cfg.MAC,
// cfg.RMII and cfg.ClockHz are filled in from mac and ctrl.
func NewENET(ctrl *tenet.ENET, mac net.HardwareAddr, arena *alloc.Arena, pool *alloc.Pool, cfg enet.Config) (*enet.Driver, error) {
	if ctrl == nil {
		return nil, errors.New("imx6ul: no such ENET controller on this SoC")
	}
	if len(mac) != 6 {
		return nil, fmt.Errorf("imx6ul: MAC %v is not 6 bytes", mac)
	}
	// tamago's Init programs ctrl.MAC, or a random one when nil.
	ctrl.MAC = append(net.HardwareAddr(nil), mac...)
	ctrl.Init()

	cfg.MAC = [6]byte(mac)
	cfg.RMII = ctrl.RMII
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
