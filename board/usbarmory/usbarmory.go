//go:build tamago && arm

package usbarmory

import (
	"fmt"
	"net"

	"github.com/usbarmory/tamago/board/usbarmory/mk2"
	soc "github.com/usbarmory/tamago/soc/nxp/imx6ul"

	"github.com/tamanet/tamanet/alloc"
	"github.com/tamanet/tamanet/board/imx6ul"
	"github.com/tamanet/tamanet/nic"
	"github.com/tamanet/tamanet/nic/enet"
)

// ENET2Base is the register block of ENET2 (i.MX6ULL RM 2.2, "AIPS-1 memory
// map"), the MAC wired to the Mk II LAN's Ethernet port.
const ENET2Base = soc.ENET2_BASE

// DP83825I PHY (TI DP83825I data sheet, 8.6 "Register Maps").
const (
	// PHYAddr is the PHY's MDIO address as strapped on the Mk II LAN.
	PHYAddr = mk2.PHY_ADDR
	// phyRCSR is the RMII and status register; RMII_CS (bit 7) selects
	// the 50 MHz reference clock the SoC drives (ENET2_REF_CLK), bit 0
	// a 2-bit receive elastic buffer.
	phyRCSR       = mk2.DP_RCSR
	rcsrRMII50MHz = 1 << mk2.RCSR_RMII_CS
	rcsrRxBuf2    = 1 << mk2.RCSR_RX_BUF
	// BMCR (IEEE 802.3 22.2.4.1): autonegotiation enable and restart.
	phyBMCR       = 0
	bmcrANEnable  = 1 << 12
	bmcrANRestart = 1 << 9
)

// Info holds board facts for the firmware's index page and /stats; NIC
// fills it in.
var Info = map[string]string{}

// nicDriver is the driver NIC brought up, for EnableNICInterrupt.
var nicDriver *enet.Driver

// EnableNICInterrupt makes ENET2's receive interrupt call wake (the stack's
// Wake); see imx6ul.EnableENETInterrupt.
func EnableNICInterrupt(wake func()) bool {
	return imx6ul.EnableENETInterrupt(nicDriver, soc.ENET2_IRQ, wake)
}

// DMA returns the memory for the network driver's rings and packet pool,
// outside Go's RAM (see board/imx6ul).
func DMA() []byte { return imx6ul.DMA() }

// NIC brings up ENET2 with station address mac, rings from arena and
// receive buffers from pool. The driver is polled.
//
// tamago's mk2 EnablePHY muxes the RMII and MDIO pads and puts the PHY in
// 50 MHz RMII mode; nic/enet then resets the PHY to start
// autonegotiation, and the reset may bring RCSR back to its strapped
// 25 MHz value, so RCSR is written again and negotiation restarted.
func NIC(mac net.HardwareAddr, arena *alloc.Arena, pool *alloc.Pool) (nic.Device, error) {
	_, model := mk2.Model()
	Info["model"] = model
	Info["soc"] = soc.Model()
	d, err := imx6ul.NewENET(mk2.ENET2, mac, arena, pool, enet.Config{PHYAddr: PHYAddr})
	if err != nil {
		return nil, fmt.Errorf("usbarmory (%s): %w", model, err)
	}
	nicDriver = d
	x := d.Extra()
	if imx6ul.HaltIdle() {
		Info["idle"] = "wfi"
	} else {
		Info["idle"] = "spin"
	}
	Info["enet"] = fmt.Sprintf("ENET2@%#x", ENET2Base)
	Info["phy"] = fmt.Sprintf("%d", x.PHYAddr)
	if x.NoPHY {
		// Not a Mk II LAN (β, γ): no PHY on ENET2's MDIO.
		fmt.Printf("usbarmory: WARNING: no Ethernet PHY answers on ENET2 (model %s); only the UA-MKII-LAN has one\n", model)
		return d, nil
	}
	if err := d.WritePHY(x.PHYAddr, phyRCSR, rcsrRMII50MHz|rcsrRxBuf2); err != nil {
		d.Close()
		return nil, fmt.Errorf("usbarmory: PHY RMII clock: %w", err)
	}
	if err := d.WritePHY(x.PHYAddr, phyBMCR, bmcrANEnable|bmcrANRestart); err != nil {
		d.Close()
		return nil, fmt.Errorf("usbarmory: PHY autonegotiation: %w", err)
	}
	return d, nil
}
