// Package imx6ul is what the tamanet i.MX6UL/6ULL boards (board/mx6ullevk,
// board/usbarmory) share, on top of tamago's soc/nxp/imx6ul: the memory
// layout that moves the DMA region to external RAM, a register window for
// the ENET MAC, and the Board: the bring-up of an ENET controller with the
// tamanet driver (nic/enet) and its interrupt. A board package describes
// only what is its own (Spec: the ENET instance, its interrupt, the PHY's
// address and fix-up) and returns New(spec).
//
// Memory (512 MiB of DDR at 0x80000000, as on the MCIMX6ULL-EVK, the USB
// armory Mk II and QEMU's mcimx6ul-evk with "-m 512M"): the image is linked
// at 0x80010000 and Go owns 0x80000000-0x9e000000 (RAMSize, which the
// linkramsize build tag lets this package set); the last 32 MiB,
// 0x9e000000-0xa0000000, is tamago's DMA region, mapped normal
// non-cacheable so that the ENET's bus-master accesses and the CPU see the
// same bytes without cache maintenance. tamago's default DMA region on this
// SoC is the 128 KiB on-chip RAM, too small for a packet pool.
//
// Idle: the CPU halts (WFI) while the scheduler waits for a timer, woken by
// the generic timer's alarm, instead of spinning as tamago does when a timer
// is due. NIC.EnableInterrupt lets the ENET receive interrupt end the halt
// and wake the poll loop; it is armed only while the CPU is idle.
//
// On other platforms the package is empty, except for the layout
// constants.
package imx6ul
