//go:build tamago && arm

package usbarmory

import (
	"fmt"

	"github.com/usbarmory/tamago/board/usbarmory/mk2"
	soc "github.com/usbarmory/tamago/soc/nxp/imx6ul"

	"github.com/tamanet/tamanet/board/imx6ul"
	"github.com/tamanet/tamanet/nic/enet"
)

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

// New returns the board: ENET2, the MAC wired to the Mk II LAN's Ethernet
// port. Call it once.
func New() *imx6ul.Board {
	_, model := mk2.Model()
	return imx6ul.New(imx6ul.Spec{
		Name:    "usbarmory",
		ENET:    mk2.ENET2,
		IRQ:     soc.ENET2_IRQ,
		PHYAddr: PHYAddr,
		FixPHY:  func(d *enet.Driver) error { return fixPHY(d, model) },
		Info:    map[string]string{"model": model},
		// The i.MX6UL's ENET checks receive checksums (with discard)
		// and inserts IPv6 ones (RM 22.4.x).
		RxChecksum:  true,
		TxChecksum6: true,
	})
}

// fixPHY puts the PHY back in 50 MHz RMII mode and restarts negotiation:
// tamago's mk2 EnablePHY set RCSR, and nic/enet's PHY reset may have
// brought it back to its strapped 25 MHz value.
func fixPHY(d *enet.Driver, model string) error {
	x := d.Extra()
	if x.NoPHY {
		// Not a Mk II LAN (β, γ): no PHY on ENET2's MDIO.
		fmt.Printf("usbarmory: WARNING: no Ethernet PHY answers on ENET2 (model %s); only the UA-MKII-LAN has one\n", model)
		return nil
	}
	if err := d.WritePHY(x.PHYAddr, phyRCSR, rcsrRMII50MHz|rcsrRxBuf2); err != nil {
		return fmt.Errorf("PHY RMII clock: %w", err)
	}
	if err := d.WritePHY(x.PHYAddr, phyBMCR, bmcrANEnable|bmcrANRestart); err != nil {
		return fmt.Errorf("PHY autonegotiation: %w", err)
	}
	return nil
}
