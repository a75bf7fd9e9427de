//go:build tamago && arm

package mx6ullevk

import (
	"fmt"
	"net"

	"github.com/usbarmory/tamago/board/nxp/mx6ullevk"
	soc "github.com/usbarmory/tamago/soc/nxp/imx6ul"

	"github.com/tamanet/tamanet/alloc"
	"github.com/tamanet/tamanet/board/imx6ul"
	"github.com/tamanet/tamanet/nic"
	"github.com/tamanet/tamanet/nic/enet"
)

// ENET1Base is the register block of ENET1 (i.MX6ULL RM 2.2, "AIPS-2 memory
// map"), the MAC QEMU's first "-net nic,model=imx.enet" is.
const ENET1Base = soc.ENET1_BASE

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

// Info holds board facts for the firmware's index page and /stats; NIC
// adds the PHY it found.
var Info = map[string]string{}

// nicDriver is the driver NIC brought up, for EnableNICInterrupt.
var nicDriver *enet.Driver

// EnableNICInterrupt makes ENET1's receive interrupt call wake (the stack's
// Wake); see imx6ul.EnableENETInterrupt.
func EnableNICInterrupt(wake func()) bool {
	return imx6ul.EnableENETInterrupt(nicDriver, soc.ENET1_IRQ, wake)
}

// DMA returns the memory for the network driver's rings and packet pool,
// outside Go's RAM (see board/imx6ul).
func DMA() []byte { return imx6ul.DMA() }

// NIC brings up ENET1 with station address mac, rings from arena and
// receive buffers from pool. ENET1's KSZ8081RNB is strapped to MDIO
// address 2 (ENET2's to 1, on the same MDIO pads, so a scan would find the
// wrong one first), and QEMU's PHY for ENET1 of mcimx6ul-evk answers at 2
// too; if nothing does, nic/enet scans.
//
// tamago's EnablePHY puts a KSZ8081RNB in 50 MHz RMII mode (PHY Control
// 2); nic/enet then resets the PHY, which may restore the strapped mode, so
// on that PHY the register is written again and negotiation restarted.
func NIC(mac net.HardwareAddr, arena *alloc.Arena, pool *alloc.Pool) (nic.Device, error) {
	d, err := imx6ul.NewENET(mx6ullevk.ENET1, mac, arena, pool, enet.Config{PHYAddr: PHYAddr})
	if err != nil {
		return nil, fmt.Errorf("mx6ullevk: %w", err)
	}
	nicDriver = d
	x := d.Extra()
	if imx6ul.HaltIdle() {
		Info["idle"] = "wfi"
	} else {
		Info["idle"] = "spin"
	}
	Info["enet"] = fmt.Sprintf("ENET1@%#x", ENET1Base)
	Info["phy"] = fmt.Sprintf("%d", x.PHYAddr)
	Info["soc"] = soc.Model()
	if x.NoPHY {
		return d, nil
	}
	if id1, err := d.ReadPHY(x.PHYAddr, phyID1); err == nil && id1 == kszID1 {
		if err := d.WritePHY(x.PHYAddr, kszPHYCtrl2, kszCtrl2Value); err != nil {
			d.Close()
			return nil, fmt.Errorf("mx6ullevk: PHY RMII clock: %w", err)
		}
		if err := d.WritePHY(x.PHYAddr, phyBMCR, bmcrANEnable|bmcrANRestart); err != nil {
			d.Close()
			return nil, fmt.Errorf("mx6ullevk: PHY autonegotiation: %w", err)
		}
	}
	return d, nil
}
