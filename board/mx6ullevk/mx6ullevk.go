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
// receive buffers from pool. The PHY address is found by scanning MDIO:
// on the real board ENET1's KSZ8081RNB answers at 2 (strapped), and so does
// QEMU's PHY for ENET1 of mcimx6ul-evk. The driver is polled.
func NIC(mac net.HardwareAddr, arena *alloc.Arena, pool *alloc.Pool) (nic.Device, error) {
	d, err := imx6ul.NewENET(mx6ullevk.ENET1, mac, arena, pool, enet.Config{PHYAddr: enet.PHYAuto})
	if err != nil {
		return nil, fmt.Errorf("mx6ullevk: %w", err)
	}
	nicDriver = d
	x := d.Extra()
	if on, _ := imx6ul.HaltIdle(); on {
		Info["idle"] = "wfi"
	} else {
		Info["idle"] = "spin"
	}
	Info["enet"] = fmt.Sprintf("ENET1@%#x", ENET1Base)
	Info["phy"] = fmt.Sprintf("%d", x.PHYAddr)
	Info["soc"] = soc.Model()
	return d, nil
}
