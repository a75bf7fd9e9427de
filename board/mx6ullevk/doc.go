// Package mx6ullevk is the tamanet board support for the NXP MCIMX6ULL-EVK
// and QEMU's mcimx6ul-evk machine (GOOS=tamago GOARCH=arm): what is its own
// on top of board/imx6ul, which New hands it to: ENET1, its PHY's MDIO
// address and the fix-up of its KSZ8081RNB.
//
// Importing it imports tamago's board/nxp/mx6ullevk, which initialises the
// SoC at runtime start (runtime/goos hooks, MMU and caches, generic timer)
// and puts the console on UART1 (QEMU's first "-serial"). Build with the
// linkramsize tag: Go's RAM size comes from board/imx6ul, which leaves the
// top 32 MiB of the 512 MiB of DDR for DMA.
//
// On other platforms the package is empty.
package mx6ullevk
