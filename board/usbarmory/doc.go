// Package usbarmory is the tamanet board support for the USB armory Mk II
// LAN (GOOS=tamago GOARCH=arm): its Ethernet port, ENET2 of the i.MX6UL
// through a TI DP83825I RMII PHY at MDIO address 0, and the fix-up of that
// PHY; the rest is board/imx6ul's, which New hands it to.
//
// Importing it imports tamago's board/usbarmory/mk2, which initialises the
// SoC at runtime start (runtime/goos hooks, MMU and caches, timers) and puts
// the console on UART2 (test pads on the Mk II LAN). Build with the
// linkramsize tag: Go's RAM size comes from board/imx6ul, which leaves the
// top 32 MiB of the 512 MiB of DDR for DMA.
//
// On other platforms the package is empty.
package usbarmory
