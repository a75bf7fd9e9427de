//go:build tamago && mx6ullevk

package main

import (
	"net"

	"github.com/usbarmory/tamago/board/nxp/mx6ullevk"

	"github.com/tamanet/tamanet/internal/baseline"

	// tamanet's i.MX6UL memory layout: Go's RAM size for the linkramsize
	// tag and tamago's DMA region in external RAM, mapped normal
	// non-cacheable, which tamago's ENET driver allocates from.
	_ "github.com/tamanet/tamanet/board/imx6ul"
)

func platform() (board, error) {
	return board{Name: "mx6ullevk", NIC: func(mac net.HardwareAddr) (baseline.Device, map[string]string, func() any, error) {
		// As imx-enet's NIC.Init and tamago-example do: tamago's
		// ENET1 with its board hooks, default ring size (16), then
		// ENET.Start(false) lays out the rings; the glue polls Rx.
		eth := mx6ullevk.ENET1
		eth.MAC = append(net.HardwareAddr(nil), mac...)
		eth.Init()
		eth.Start(false)
		return eth, map[string]string{"driver": "tamago soc/nxp/enet"}, func() any { return eth.Stats }, nil
	}}, nil
}
