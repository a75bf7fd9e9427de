package vm

import (
	"fmt"
	"strings"
)

// Target is a board the image is built for.
type Target string

// Targets.
const (
	Microvm   Target = "microvm"
	MX6ULLEVK Target = "mx6ullevk"
	USBArmory Target = "usbarmory"
)

// ParseTarget parses a TARGET value that QEMU can boot.
func ParseTarget(s string) (Target, error) {
	switch t := Target(s); t {
	case Microvm, MX6ULLEVK:
		return t, nil
	case USBArmory:
		return "", fmt.Errorf("target usbarmory is real hardware, QEMU cannot boot it: use TARGET=mx6ullevk for the same SoC under QEMU")
	}
	return "", fmt.Errorf("unknown target %q: use microvm or mx6ullevk", s)
}

// Arch returns the Go architecture of the target.
func (t Target) Arch() string {
	if t == Microvm {
		return "amd64"
	}
	return "arm"
}

// NIC returns the nic= name the target's ready line carries.
func (t Target) NIC() string {
	if t == Microvm {
		return "virtio-net"
	}
	return "enet"
}

// QEMUBinary returns the QEMU system emulator for the target.
func (t Target) QEMUBinary() string {
	if t == Microvm {
		return "qemu-system-x86_64"
	}
	return "qemu-system-arm"
}

// Args returns QEMU's arguments (without the binary) for booting image on
// target with accel, the NIC on the tap device tap: microvm with one
// modern (non-legacy) virtio-mmio virtio-net device, or mcimx6ul-evk with
// ENET1 (the first -net nic) on the tap; the README shows both lines.
func Args(target Target, image string, accel Accel, tap string) []string {
	netdev := "tap,id=net0,ifname=" + tap + ",script=no,downscript=no"
	if target == Microvm {
		a := []string{
			"-machine", "microvm,x-option-roms=on,pit=off,pic=off,rtc=on",
			"-global", "virtio-mmio.force-legacy=false",
			"-m", "1G", "-nographic", "-monitor", "none",
			"-serial", "stdio", "-no-reboot",
			"-device", "virtio-net-device,netdev=net0",
			"-netdev", netdev,
			"-kernel", image,
		}
		if accel == KVM {
			return append(a, "-enable-kvm", "-cpu", "host,invtsc=on,kvmclock=on")
		}
		return append(a, "-accel", "tcg", "-cpu", "max")
	}
	// The first -net nic is ENET1, the one the board drives; the second
	// serial port exists on the SoC but is unused.
	return []string{
		"-machine", "mcimx6ul-evk", "-cpu", "cortex-a7", "-m", "512M",
		"-nographic", "-monitor", "none",
		"-serial", "stdio", "-serial", "null",
		"-net", "nic,model=imx.enet,netdev=net0",
		"-netdev", netdev,
		"-kernel", image,
	}
}

// Linux says how to boot a Linux kernel (the Options.Image) instead of a
// tamanet image, on the same machine and NIC as tamanet: the initramfs,
// the kernel command line and, on ARM, the device tree QEMU passes it
// (mcimx6ul-evk makes none of its own).
type Linux struct {
	Initrd, Append, DTB string
	// NICOptions are appended to the NIC's options (microvm: properties of
	// virtio-net-device such as csum=off), "" for none.
	NICOptions string
	// SecondENET puts the tap on the i.MX6UL's ENET2 (the second -net
	// nic) instead of ENET1, which keeps a NIC without a backend.
	SecondENET bool
}

// LinuxArgs returns QEMU's arguments for booting kernel with l on target:
// Args' command line with l's files and NIC options added.
func LinuxArgs(target Target, kernel string, accel Accel, tap string, l Linux) []string {
	a := Args(target, kernel, accel, tap)
	if l.NICOptions != "" {
		for i, s := range a {
			if i > 0 && (a[i-1] == "-device" || a[i-1] == "-net") && strings.HasSuffix(s, ",netdev=net0") {
				a[i] = s + "," + l.NICOptions
			}
		}
	}
	if l.SecondENET && target == MX6ULLEVK {
		for i, s := range a {
			if s == "-net" {
				a = append(a[:i], append([]string{"-net", "nic,model=imx.enet"}, a[i:]...)...)
				break
			}
		}
	}
	a = append(a, "-initrd", l.Initrd, "-append", l.Append)
	if l.DTB != "" {
		a = append(a, "-dtb", l.DTB)
	}
	return a
}
