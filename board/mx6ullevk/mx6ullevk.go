//go:build tamago && arm

package mx6ullevk

import (
	"fmt"

	"github.com/usbarmory/tamago/board/nxp/mx6ullevk"
	soc "github.com/usbarmory/tamago/soc/nxp/imx6ul"

	"github.com/tamanet/tamanet/board/imx6ul"
	"github.com/tamanet/tamanet/nic/enet"
)

// PHYAddr is the MDIO address of ENET1's PHY.
const PHYAddr = 2

// KSZ8081RNB PHY (Microchip KSZ8081RNA/RNB data sheet, 4.0 "Register
// Descriptions").
const (
	phyID1        = 2
	kszID1        = 0x0022 // Micrel/Microchip OUI bits
	kszPHYCtrl2   = mx6ullevk.KSZ_PHYCTRL2
	kszCtrl2Value = 1<<mx6ullevk.CTRL2_HP_MDIX | 1<<mx6ullevk.CTRL2_RMII | 1<<mx6ullevk.CTRL2_LED
	// BMCR (IEEE 802.3 22.2.4.1): autonegotiation enable and restart.
	phyBMCR       = 0
	bmcrANEnable  = 1 << 12
	bmcrANRestart = 1 << 9
)

// New returns the board: ENET1 (the MAC QEMU's first "-net nic,model=imx.enet"
// is), whose KSZ8081RNB is strapped to MDIO address 2 (ENET2's to 1, on the
// same MDIO pads, so a scan would find the wrong one first); QEMU's PHY for
// ENET1 of mcimx6ul-evk answers at 2 too, and if nothing does, nic/enet
// scans. Call it once.
func New() *imx6ul.Board {
	return imx6ul.New(imx6ul.Spec{
		Name:    "mx6ullevk",
		ENET:    mx6ullevk.ENET1,
		IRQ:     soc.ENET1_IRQ,
		PHYAddr: PHYAddr,
		FixPHY:  fixPHY,
		// This board runs under QEMU (mcimx6ul-evk), whose imx.enet
		// checks no receive checksum, though its descriptors say
		// nothing went wrong, and inserts no IPv6 checksum: the
		// driver vouches for nothing and sums IPv6 itself. (Silicon
		// would do both, as on usbarmory.)
		RxChecksum:  false,
		TxChecksum6: false,
	})
}

// fixPHY puts a KSZ8081RNB back in 50 MHz RMII mode (PHY Control 2), as
// tamago's EnablePHY did before nic/enet reset the PHY, which may restore
// the strapped mode, and restarts negotiation. Other PHYs are left alone.
func fixPHY(d *enet.Driver) error {
	x := d.Extra()
	if x.NoPHY {
		return nil
	}
	if id1, err := d.ReadPHY(x.PHYAddr, phyID1); err != nil || id1 != kszID1 {
		return nil
	}
	if err := d.WritePHY(x.PHYAddr, kszPHYCtrl2, kszCtrl2Value); err != nil {
		return fmt.Errorf("PHY RMII clock: %w", err)
	}
	if err := d.WritePHY(x.PHYAddr, phyBMCR, bmcrANEnable|bmcrANRestart); err != nil {
		return fmt.Errorf("PHY autonegotiation: %w", err)
	}
	return nil
}
