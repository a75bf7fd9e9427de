// Package microvm is the tamanet board support for the QEMU microvm machine
// (GOOS=tamago GOARCH=amd64): memory layout, clock, console on COM1, the DMA
// region and the virtio-mmio network device.
//
// Importing the package initialises the hardware, as tamago boards do: it
// provides the runtime/goos hooks (Hwinit1, Nanotime, Printk, RamSize,
// Idle). New returns the Board, which hands out the DMA memory and brings
// up the network device (Board.NIC); the device's interrupt is wired by a
// method on the NIC it returns (NIC.EnableInterrupt).
//
// Unlike tamago's own board/qemu/microvm, the clock does not need kvmclock.
// Under KVM the TSC frequency comes from the hypervisor (CPUID), and
// kvmclock corrects a TSC that is not invariant. Without KVM (QEMU TCG) the
// TSC is timed against QEMU's local APIC timer, which counts nanoseconds of
// the host's monotonic clock and is computed when read, so it is exact even
// on a loaded host; if that timer does not count, against the periodic flag
// of the CMOS RTC ("-machine microvm,rtc=on"), which is set by a QEMU timer
// callback and drifts when the host is busy.
//
// The idle loop halts the CPU until the next timer, woken by a one-shot
// APIC timer interrupt, so an idle guest does not burn a host core; and the
// virtio-net interrupt can wake the poll loop (NIC.EnableInterrupt).
//
// Memory (with "-m 1G"): the image is linked at 0x10010000 and Go owns
// 0x10000000-0x3c000000; 0x3c000000-0x40000000 is tamago's DMA region, out
// of the Go heap, from which Board.DMA hands the network driver its rings
// and packet pool.
//
// On other platforms the package is empty.
package microvm
