package vm

import (
	"strings"
	"testing"
)

func TestLinuxArgs(t *testing.T) {
	base := strings.Join(Args(Microvm, "vmlinuz", TCG, "tap0"), " ")
	got := strings.Join(LinuxArgs(Microvm, "vmlinuz", TCG, "tap0", Linux{Initrd: "initrd.cpio", Append: "console=ttyS0 quiet"}), " ")
	if got != base+" -initrd initrd.cpio -append console=ttyS0 quiet" {
		t.Errorf("microvm:\n%s", got)
	}
	// Each argument stays one argument: the command line is not split.
	a := LinuxArgs(Microvm, "vmlinuz", TCG, "tap0", Linux{Initrd: "i", Append: "console=ttyS0 quiet"})
	if a[len(a)-2] != "-append" || a[len(a)-1] != "console=ttyS0 quiet" {
		t.Errorf("microvm: -append argument %q", a[len(a)-2:])
	}

	off := LinuxArgs(Microvm, "vmlinuz", TCG, "tap0", Linux{Initrd: "i", Append: "a", NICOptions: "csum=off,mrg_rxbuf=off"})
	if i := indexOf(off, "-device"); i < 0 || off[i+1] != "virtio-net-device,netdev=net0,csum=off,mrg_rxbuf=off" {
		t.Errorf("microvm NIC options: %s", strings.Join(off, " "))
	}
	if strings.Count(strings.Join(off, " "), "csum=off") != 1 {
		t.Errorf("NIC options added more than once: %s", strings.Join(off, " "))
	}

	arm := LinuxArgs(MX6ULLEVK, "vmlinuz", TCG, "tap0", Linux{Initrd: "i", Append: "console=ttymxc0,115200", DTB: "evk.dtb", NICOptions: "x=1"})
	if i := indexOf(arm, "-net"); i < 0 || arm[i+1] != "nic,model=imx.enet,netdev=net0,x=1" {
		t.Errorf("mx6ullevk NIC: %s", strings.Join(arm, " "))
	}
	if j := strings.Join(arm, " "); !strings.HasSuffix(j, "-kernel vmlinuz -initrd i -append console=ttymxc0,115200 -dtb evk.dtb") || !strings.HasPrefix(j, "-machine mcimx6ul-evk ") {
		t.Errorf("mx6ullevk:\n%s", j)
	}

	// Linux on mcimx6ul-evk drives ENET2: the tap moves to the second
	// -net nic, the first keeps no backend.
	two := strings.Join(LinuxArgs(MX6ULLEVK, "vmlinuz", TCG, "tap0", Linux{Initrd: "i", Append: "a", SecondENET: true}), " ")
	if !strings.Contains(two, "-serial null -net nic,model=imx.enet -net nic,model=imx.enet,netdev=net0 -netdev tap,id=net0,") {
		t.Errorf("mx6ullevk, second ENET:\n%s", two)
	}
	if strings.Count(two, "-net nic") != 2 {
		t.Errorf("mx6ullevk, second ENET: %d NICs:\n%s", strings.Count(two, "-net nic"), two)
	}
	if vmx := strings.Join(LinuxArgs(Microvm, "vmlinuz", TCG, "tap0", Linux{Initrd: "i", Append: "a", SecondENET: true}), " "); strings.Count(vmx, " -device ") != 1 || strings.Contains(vmx, "imx.enet") {
		t.Errorf("microvm with SecondENET:\n%s", vmx)
	}
}

func indexOf(a []string, s string) int {
	for i, x := range a {
		if x == s {
			return i
		}
	}
	return -1
}
