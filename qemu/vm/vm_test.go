package vm

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tamanet/tamanet/internal/netns"
)

func TestParseReady(t *testing.T) {
	r, ok, err := ParseReady("tamanet: ready ip=10.0.0.1/24 mac=02:00:00:00:00:01 nic=virtio-net\r\n")
	if !ok || err != nil {
		t.Fatalf("ok=%v err=%v", ok, err)
	}
	if r.Prefix.String() != "10.0.0.1/24" || r.Addr().String() != "10.0.0.1" || r.MAC != "02:00:00:00:00:01" || r.NIC != "virtio-net" {
		t.Fatalf("parsed %+v", r)
	}
	r, ok, err = ParseReady("tamanet: ready ip=192.168.7.9/16 mac=02:AA:00:00:00:FF nic=enet")
	if !ok || err != nil || r.NIC != "enet" || r.MAC != "02:aa:00:00:00:ff" || r.Prefix.Bits() != 16 {
		t.Fatalf("enet line: %+v ok=%v err=%v", r, ok, err)
	}
	for _, l := range []string{"", "booting", "tamanet: starting", "tamanet: readying"} {
		if _, ok, _ := ParseReady(l); ok {
			t.Errorf("%q taken for a ready line", l)
		}
	}
	for _, l := range []string{
		"tamanet: ready ip=10.0.0.1 mac=02:00:00:00:00:01 nic=virtio-net",
		"tamanet: ready ip=10.0.0.300/24 mac=02:00:00:00:00:01 nic=virtio-net",
		"tamanet: ready ip=10.0.0.1/24 mac=02:00:00:00:01 nic=virtio-net",
		"tamanet: ready ip=10.0.0.1/24 mac=02:00:00:00:00:01",
		"tamanet: ready ip=fe80::1/64 mac=02:00:00:00:00:01 nic=enet",
	} {
		if _, ok, err := ParseReady(l); !ok || err == nil {
			t.Errorf("%q: ok=%v err=%v, want a malformed ready line", l, ok, err)
		}
	}
}

func TestArgs(t *testing.T) {
	tcg := strings.Join(Args(Microvm, "img", TCG, "tap0"), " ")
	want := "-machine microvm,x-option-roms=on,pit=off,pic=off,rtc=on -global virtio-mmio.force-legacy=false -m 1G -nographic -monitor none -serial stdio -no-reboot -device virtio-net-device,netdev=net0 -netdev tap,id=net0,ifname=tap0,script=no,downscript=no -kernel img"
	if tcg != want+" -accel tcg -cpu max" {
		t.Errorf("microvm tcg:\n%s", tcg)
	}
	kvm := strings.Join(Args(Microvm, "img", KVM, "tap0"), " ")
	if kvm != want+" -enable-kvm -cpu host,invtsc=on,kvmclock=on" {
		t.Errorf("microvm kvm:\n%s", kvm)
	}
	arm := strings.Join(Args(MX6ULLEVK, "img", TCG, "tap0"), " ")
	if arm != "-machine mcimx6ul-evk -cpu cortex-a7 -m 512M -nographic -monitor none -serial stdio -serial null -net nic,model=imx.enet,netdev=net0 -netdev tap,id=net0,ifname=tap0,script=no,downscript=no -kernel img" {
		t.Errorf("mx6ullevk:\n%s", arm)
	}
}

func TestTargetsAndAccel(t *testing.T) {
	if _, err := ParseTarget("usbarmory"); err == nil {
		t.Error("usbarmory accepted for QEMU")
	}
	if _, err := ParseTarget("pc"); err == nil {
		t.Error("unknown target accepted")
	}
	if tg, err := ParseTarget("mx6ullevk"); err != nil || tg.NIC() != "enet" || tg.QEMUBinary() != "qemu-system-arm" {
		t.Errorf("mx6ullevk: %v %v", tg, err)
	}
	if _, err := ParseAccel("hvf"); err == nil {
		t.Error("unknown accel accepted")
	}
	for _, want := range []Accel{Auto, KVM, TCG} {
		if a, _ := ResolveAccel(MX6ULLEVK, want); a != TCG {
			t.Errorf("arm with %s resolved to %s", want, a)
		}
	}
	if a, _ := ResolveAccel(Microvm, TCG); a != TCG {
		t.Errorf("tcg resolved to %s", a)
	}
	if a, _ := ResolveAccel(Microvm, KVM); a != KVM {
		t.Errorf("kvm resolved to %s", a)
	}
	ok, why := KVMProbe()
	a, note := ResolveAccel(Microvm, Auto)
	if ok != (a == KVM) {
		t.Errorf("auto resolved to %s (%s) but probe says %v (%s)", a, note, ok, why)
	}
	t.Logf("KVM probe: %v %s; auto -> %s", ok, why, a)
}

// fakeQEMU writes a stand-in emulator script and returns its path.
func fakeQEMU(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "fake-qemu")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func fakeImage(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "image")
	if err := os.WriteFile(p, []byte("not an image"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestStartReadyAndClose(t *testing.T) {
	netns.Require(t)
	// The stand-in checks it runs inside the namespace (tap0 present) and
	// gets the kernel argument, then behaves like a booting guest.
	q := fakeQEMU(t, `ip link show tap0 >/dev/null || exit 3
while [ $# -gt 0 ]; do [ "$1" = -kernel ] && k=$2; shift; done
echo "booting $k"
echo "tamanet: ready ip=10.0.0.1/24 mac=02:00:00:00:00:01 nic=virtio-net"
exec sleep 60`)
	img := fakeImage(t)
	name, _ := netns.FreeName("tamanet-unit")
	v, err := Start(context.Background(), Options{Target: Microvm, Image: img, Accel: TCG, Netns: name, QEMU: q})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	r, err := v.WaitReady(context.Background(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if r.Addr().String() != "10.0.0.1" || r.NIC != "virtio-net" {
		t.Fatalf("ready %+v", r)
	}
	if !strings.Contains(v.Serial(), "booting "+img) {
		t.Fatalf("serial %q", v.Serial())
	}
	if a, _ := v.Accel(); a != TCG || !slices.Contains(strings.Fields(v.CommandLine()), "tcg") {
		t.Fatalf("accel %s, command %s", a, v.CommandLine())
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-v.Done():
	default:
		t.Fatal("QEMU still running after Close")
	}
	if netns.Exists(name) {
		t.Fatal("namespace survived Close")
	}
}

func TestStartFailures(t *testing.T) {
	netns.Require(t)
	img := fakeImage(t)
	t.Run("exits", func(t *testing.T) {
		q := fakeQEMU(t, `echo "panic: boom"; exit 1`)
		v, err := Start(context.Background(), Options{Target: Microvm, Image: img, Accel: TCG, QEMU: q})
		if err != nil {
			t.Fatal(err)
		}
		defer v.Close()
		_, err = v.WaitReady(context.Background(), 10*time.Second)
		if err == nil || !strings.Contains(err.Error(), "panic: boom") || !strings.Contains(err.Error(), "exited") {
			t.Fatalf("err %v", err)
		}
		name := v.Netns().Name
		v.Close()
		if netns.Exists(name) {
			t.Fatal("namespace survived")
		}
	})
	t.Run("timeout", func(t *testing.T) {
		q := fakeQEMU(t, `echo "stuck in boot"; exec sleep 60`)
		v, err := Start(context.Background(), Options{Target: Microvm, Image: img, Accel: TCG, QEMU: q})
		if err != nil {
			t.Fatal(err)
		}
		defer v.Close()
		_, err = v.WaitReady(context.Background(), 500*time.Millisecond)
		if err == nil || !strings.Contains(err.Error(), "stuck in boot") || !strings.Contains(err.Error(), "no ready line") {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("malformed", func(t *testing.T) {
		q := fakeQEMU(t, `echo "tamanet: ready ip=10.0.0.1 nic=x"; exec sleep 60`)
		v, err := Start(context.Background(), Options{Target: Microvm, Image: img, Accel: TCG, QEMU: q})
		if err != nil {
			t.Fatal(err)
		}
		defer v.Close()
		if _, err = v.WaitReady(context.Background(), 5*time.Second); err == nil {
			t.Fatal("malformed ready line accepted")
		}
	})
	t.Run("cancel", func(t *testing.T) {
		q := fakeQEMU(t, `exec sleep 60`)
		ctx, cancel := context.WithCancel(context.Background())
		v, err := Start(ctx, Options{Target: Microvm, Image: img, Accel: TCG, QEMU: q})
		if err != nil {
			t.Fatal(err)
		}
		name := v.Netns().Name
		cancel()
		select {
		case <-v.Done():
		case <-time.After(10 * time.Second):
			t.Fatal("QEMU survived context cancel")
		}
		v.Close()
		if netns.Exists(name) {
			t.Fatal("namespace survived")
		}
	})
	t.Run("missing", func(t *testing.T) {
		_, err := Start(context.Background(), Options{Target: Microvm, Image: img, QEMU: "no-such-qemu-binary"})
		if !errors.Is(err, ErrQEMUMissing) {
			t.Fatalf("err %v, want ErrQEMUMissing", err)
		}
		_, err = Start(context.Background(), Options{Target: Microvm, Image: "/nonexistent/image"})
		if err == nil {
			t.Fatal("missing image accepted")
		}
	})
	t.Run("exists", func(t *testing.T) {
		name, _ := netns.FreeName("tamanet-unit")
		ns, err := netns.Create(context.Background(), name, "tap0", netns.DefaultHostAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer ns.Delete()
		_, err = Start(context.Background(), Options{Target: Microvm, Image: img, Netns: name, QEMU: fakeQEMU(t, "exit 0")})
		if !errors.Is(err, netns.ErrExists) {
			t.Fatalf("err %v, want ErrExists", err)
		}
		if !netns.Exists(name) {
			t.Fatal("Start deleted a namespace it did not create")
		}
	})
}

// TestStartStdin checks what QEMU gets as descriptor 0. With Options.Stdin
// nil it must be /dev/null, open: were it closed, QEMU would open the tap
// as fd 0, where `-serial stdio` also reads, and lose frames.
func TestStartStdin(t *testing.T) {
	netns.Require(t)
	img := fakeImage(t)
	q := fakeQEMU(t, `echo "fd0=$(readlink /proc/$$/fd/0 || echo closed)"
echo "tamanet: ready ip=10.0.0.1/24 mac=02:00:00:00:00:01 nic=virtio-net"
exec sleep 60`)
	in, err := os.Create(filepath.Join(t.TempDir(), "console-in"))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	for _, c := range []struct {
		name  string
		stdin *os.File
		want  string
	}{
		{"nil", nil, "fd0=/dev/null"},
		{"file", in, "fd0=" + in.Name()},
	} {
		t.Run(c.name, func(t *testing.T) {
			v, err := Start(context.Background(), Options{Target: Microvm, Image: img, Accel: TCG, QEMU: q, Stdin: c.stdin})
			if err != nil {
				t.Fatal(err)
			}
			defer v.Close()
			if _, err := v.WaitReady(context.Background(), 10*time.Second); err != nil {
				t.Fatal(err)
			}
			if got := strings.SplitN(v.Serial(), "\n", 2)[0]; got != c.want {
				t.Fatalf("QEMU's descriptor 0: %q, want %q", got, c.want)
			}
		})
	}
}

// TestStartGDB: Options.GDB puts QEMU's gdb stub on that unix socket.
func TestStartGDB(t *testing.T) {
	netns.Require(t)
	q := fakeQEMU(t, `while [ $# -gt 0 ]; do [ "$1" = -gdb ] && g=$2; shift; done
echo "gdb $g"
echo "tamanet: ready ip=10.0.0.1/24 mac=02:00:00:00:00:01 nic=virtio-net"
exec sleep 60`)
	sock := filepath.Join(t.TempDir(), "gdb")
	name, _ := netns.FreeName("tamanet-unit")
	v, err := Start(context.Background(), Options{Target: MX6ULLEVK, Image: fakeImage(t), Accel: TCG, Netns: name, QEMU: q, GDB: sock})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if _, err := v.WaitReady(context.Background(), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if want := "gdb unix:" + sock + ",server=on,wait=off"; !strings.Contains(v.Serial(), want) {
		t.Fatalf("serial %q, want %q", v.Serial(), want)
	}
}
