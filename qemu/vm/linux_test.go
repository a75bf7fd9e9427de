package vm

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tamanet/tamanet/internal/netns"
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

// Start with Options.Linux runs LinuxArgs' command line.
func TestStartLinux(t *testing.T) {
	netns.Require(t)
	q := fakeQEMU(t, `while [ $# -gt 0 ]; do [ "$1" = -initrd ] && i=$2; [ "$1" = -append ] && a=$2; shift; done
echo "initrd $i append $a"
echo "tamanet: ready ip=10.0.0.1/24 mac=02:00:00:00:00:01 nic=linux-virtio_net"
exec sleep 60`)
	img := fakeImage(t)
	name, _ := netns.FreeName("tamanet-unit")
	v, err := Start(context.Background(), Options{Target: Microvm, Image: img, Accel: TCG, Netns: name, QEMU: q,
		Linux: &Linux{Initrd: "/x/initrd.cpio", Append: "console=ttyS0 rdinit=/init"}})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	r, err := v.WaitReady(context.Background(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if r.NIC != "linux-virtio_net" {
		t.Errorf("ready %+v", r)
	}
	if !strings.Contains(v.Serial(), "initrd /x/initrd.cpio append console=ttyS0 rdinit=/init") {
		t.Errorf("serial %q", v.Serial())
	}
	if !strings.Contains(v.CommandLine(), "-kernel "+img+" ") {
		t.Errorf("command line %s", v.CommandLine())
	}
}
