// Package microvm is the tamanet board support for the QEMU microvm machine
// (GOOS=tamago GOARCH=amd64): memory layout, clock, console on COM1, the DMA
// region and the virtio-mmio network device.
//
// Importing the package initialises the hardware, as tamago boards do: it
// provides the runtime/goos hooks (Hwinit1, Nanotime, Printk, RamSize).
//
// Unlike tamago's own board/qemu/microvm, the clock does not need kvmclock:
// under KVM the TSC frequency comes from the hypervisor (and kvmclock
// corrects it where the TSC is not invariant); without KVM (QEMU TCG) the
// TSC is calibrated against the periodic flag of the CMOS RTC, which QEMU
// provides with "-machine microvm,rtc=on".
//
// Memory (with "-m 1G"): the image is linked at 0x10010000 and Go owns
// 0x10000000-0x3c000000; 0x3c000000-0x40000000 is tamago's DMA region, out
// of the Go heap, from which DMA hands the network driver its rings and
// packet pool.
//
// On other platforms the package is empty.
package microvm
