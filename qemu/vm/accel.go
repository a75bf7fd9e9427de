package vm

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"os"
	"strings"
	"syscall"
	"unsafe"
)

// Accel is a QEMU accelerator choice.
type Accel string

// Accelerators.
const (
	// Auto picks KVM when it can run the image, TCG otherwise.
	Auto Accel = "auto"
	// KVM runs the guest under /dev/kvm.
	KVM Accel = "kvm"
	// TCG runs the guest under QEMU's software emulation.
	TCG Accel = "tcg"
)

// ParseAccel parses "auto", "kvm" or "tcg".
func ParseAccel(s string) (Accel, error) {
	switch a := Accel(s); a {
	case Auto, KVM, TCG:
		return a, nil
	case "":
		return Auto, nil
	}
	return "", fmt.Errorf("unknown accelerator %q: use auto, kvm or tcg", s)
}

// KVM ioctls (linux/kvm.h, KVMIO = 0xAE).
const (
	kvmGetAPIVersion     = 0xAE00     // _IO(KVMIO, 0x00)
	kvmGetSupportedCPUID = 0xC008AE05 // _IOWR(KVMIO, 0x05, struct kvm_cpuid2)
	kvmAPIVersion        = 12
	cpuidEntrySize       = 40 // struct kvm_cpuid_entry2
	// CPUID 0x80000001 EDX bit 26: 1 GB pages (Intel SDM vol. 2A, CPUID).
	cpuidExtFeatures = 0x80000001
	pdpe1gbBit       = 1 << 26
)

// KVMProbe reports whether KVM can run a TamaGo amd64 image here, and why
// not. TamaGo's amd64 runtime maps memory with 1 GB pages, so both the host
// CPU and KVM's guest CPUID must offer them: a paravirtual /dev/kvm that does
// not (nested clouds) faults the image at boot.
func KVMProbe() (bool, string) {
	if !cpuinfoHasFlag("pdpe1gb") {
		return false, "host CPU lacks pdpe1gb (1 GB pages)"
	}
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false, err.Error()
	}
	defer f.Close()
	v, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), kvmGetAPIVersion, 0)
	if errno != 0 || v != kvmAPIVersion {
		return false, fmt.Sprintf("KVM_GET_API_VERSION: %d %v", v, errno)
	}
	const n = 256
	buf := make([]byte, 8+cpuidEntrySize*n)
	binary.LittleEndian.PutUint32(buf, n)
	_, _, errno = syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), kvmGetSupportedCPUID, uintptr(unsafe.Pointer(&buf[0])))
	if errno != 0 {
		return false, fmt.Sprintf("KVM_GET_SUPPORTED_CPUID: %v", errno)
	}
	nent := int(binary.LittleEndian.Uint32(buf))
	for i := 0; i < nent && i < n; i++ {
		e := buf[8+cpuidEntrySize*i:]
		if binary.LittleEndian.Uint32(e[0:]) == cpuidExtFeatures {
			if binary.LittleEndian.Uint32(e[24:])&pdpe1gbBit != 0 {
				return true, ""
			}
			return false, "KVM does not offer 1 GB pages (pdpe1gb) to guests"
		}
	}
	return false, "KVM reports no CPUID leaf 0x80000001"
}

func cpuinfoHasFlag(flag string) bool {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		line := s.Text()
		if !strings.HasPrefix(line, "flags") {
			continue
		}
		_, list, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		for _, f := range strings.Fields(list) {
			if f == flag {
				return true
			}
		}
		return false
	}
	return false
}

// ResolveAccel turns a requested accelerator into the one used for target.
// Arm targets always run under TCG. Auto picks KVM only when KVMProbe says it
// works. The returned note explains the choice.
func ResolveAccel(target Target, want Accel) (Accel, string) {
	if target.Arch() != "amd64" {
		if want == KVM {
			return TCG, "KVM cannot run an arm guest on this host: using TCG"
		}
		return TCG, "arm guest: TCG"
	}
	switch want {
	case KVM:
		return KVM, "KVM requested"
	case TCG:
		return TCG, "TCG requested"
	}
	if ok, why := KVMProbe(); ok {
		return KVM, "auto: KVM offers 1 GB pages"
	} else {
		return TCG, "auto: TCG (" + why + ")"
	}
}
