// Package linuxguest assembles a Linux guest from Debian's packages, to
// measure tamanet against Linux on the same QEMU machine: Debian's kernel
// (linux-image-amd64 for microvm, linux-image-armmp for mcimx6ul-evk),
// busybox-static, and cmd/linuxguest (the firmware's services built for
// Linux) as an uncompressed newc initramfs whose /init loads the NIC's
// modules, configures the interface like the firmware's and runs the
// services, which print the firmware's ready line.
//
// Build downloads the packages once into a cache directory per kernel
// version (apt-get download, dpkg-deb -x) and rebuilds only the
// initramfs on later calls; it prints each step.
package linuxguest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// Spec is what differs between the targets.
type Spec struct {
	// DebArch is Debian's architecture: amd64, armhf.
	DebArch string
	// KernelPkg is the metapackage naming the current kernel.
	KernelPkg string
	// GOARCH, GOARM build cmd/linuxguest.
	GOARCH, GOARM string
	// Modules are loaded by /init, with what they depend on, in order.
	Modules []string
	// DTB is the device tree in the kernel package ("" on x86).
	DTB string
	// Console is the kernel's console= for the first serial port.
	Console string
	// DTBNoPhySupply lists nodes (path suffixes) whose phy-supply
	// property Build deletes from the DTB (DeleteProps).
	DTBNoPhySupply []string
	// SecondNIC: the guest drives the SoC's second NIC, so QEMU must put
	// the tap there (vm.Linux.SecondENET).
	SecondNIC bool
	// IfDevice is a substring of the NIC's /sys/class/net/IF/device link
	// (its bus address), to pick the interface QEMU connects to the tap
	// when the device tree has several.
	IfDevice string
}

// Specs by vm target name.
var Specs = map[string]Spec{
	// microvm: virtio-mmio devices from ACPI (virtio_mmio), virtio-net.
	"microvm": {DebArch: "amd64", KernelPkg: "linux-image-amd64", GOARCH: "amd64",
		Modules: []string{"virtio_mmio", "virtio_net"}, Console: "ttyS0", IfDevice: ""},
	// mcimx6ul-evk: ENET1 at 0x02188000 (RM 2.2, memory map) is fec1 in
	// imx6ul.dtsi; its driver is fec.
	//
	// Linux drives ENET2 (fec2, 0x020b4000), and QEMU gets the tap on
	// its second NIC: the EVK's device tree puts ENET1's PHY (address 2)
	// on ENET2's MDIO bus, and with the tap on ENET1, QEMU 7.2 and this
	// tree, Linux attached that PHY and configured eth1 but no frame got
	// through ("no route to host" from the client); on ENET2, whose PHY
	// is on its own bus, everything works. The EVK's PHY supply
	// switches through a 74HC595 on GPIO-driven SPI, whose driver
	// Debian's kernel lacks, so both fec nodes lose phy-supply, or the
	// driver waits for the regulator for ever.
	"mx6ullevk": {DebArch: "armhf", KernelPkg: "linux-image-armmp", GOARCH: "arm", GOARM: "7",
		Modules: []string{"fec"}, DTB: "imx6ul-14x14-evk.dtb", Console: "ttymxc0,115200",
		DTBNoPhySupply: []string{"ethernet@2188000", "ethernet@20b4000"}, SecondNIC: true, IfDevice: "20b4000.ethernet"},
}

// Net is the interface configuration, the firmware's defaults.
type Net struct {
	Addr    netip.Prefix
	Gateway netip.Addr
	MAC     net.HardwareAddr
}

// DefaultNet is the Makefile's IP, GW and MAC.
var DefaultNet = Net{
	Addr:    netip.MustParsePrefix("10.0.0.1/24"),
	Gateway: netip.MustParseAddr("10.0.0.2"),
	MAC:     net.HardwareAddr{2, 0, 0, 0, 0, 1},
}

// Options for Build.
type Options struct {
	// Target is the vm target name: microvm or mx6ullevk.
	Target string
	// Cache is the cache directory; "" means $XDG_CACHE_HOME or
	// ~/.cache, then tamanet/linuxguest.
	Cache string
	// Root is the repository root (for cmd/linuxguest).
	Root string
	// Net configures the interface; zero means DefaultNet.
	Net Net
	// Log receives what Build does; nil means os.Stderr.
	Log io.Writer
}

// Guest is a Linux guest ready to boot.
type Guest struct {
	Kernel, Initrd, DTB string
	// Append is the kernel command line.
	Append string
	// Version is the kernel's (6.1.0-57-amd64).
	Version string
	// SecondNIC: the tap belongs on the machine's second NIC (Spec).
	SecondNIC bool
}

// DefaultCache returns ~/.cache/tamanet/linuxguest (or under
// $XDG_CACHE_HOME).
func DefaultCache() (string, error) {
	d, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "tamanet", "linuxguest"), nil
}

// Build assembles the guest for o.Target, downloading what the cache does
// not hold yet.
func Build(ctx context.Context, o Options) (*Guest, error) {
	spec, ok := Specs[o.Target]
	if !ok {
		return nil, fmt.Errorf("linuxguest: no Linux guest for target %q", o.Target)
	}
	if o.Log == nil {
		o.Log = os.Stderr
	}
	if o.Net.MAC == nil {
		o.Net = DefaultNet
	}
	if o.Cache == "" {
		c, err := DefaultCache()
		if err != nil {
			return nil, err
		}
		o.Cache = c
	}
	logf := func(format string, args ...any) { fmt.Fprintf(o.Log, "linuxguest: "+format+"\n", args...) }
	run := func(dir, name string, args ...string) ([]byte, error) {
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir = dir
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return out, fmt.Errorf("linuxguest: %s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.Bytes())
		}
		return out, nil
	}

	if err := ensureArch(ctx, spec.DebArch, logf, run); err != nil {
		return nil, err
	}
	pkg := spec.KernelPkg + ":" + spec.DebArch
	out, err := run("", "apt-cache", "depends", pkg)
	if err != nil {
		return nil, err
	}
	kpkg := kernelPackage(string(out))
	if kpkg == "" {
		return nil, fmt.Errorf("linuxguest: apt-cache depends %s names no linux-image package:\n%s", pkg, out)
	}
	version := strings.TrimPrefix(strings.TrimSuffix(kpkg, ":"+spec.DebArch), "linux-image-")
	dir := filepath.Join(o.Cache, version)
	rootfs := filepath.Join(dir, "root")
	marker := filepath.Join(dir, "extracted")
	if _, err := os.Stat(marker); err == nil {
		logf("using cached %s (%s)", kpkg, dir)
	} else {
		debs := filepath.Join(dir, "debs")
		if err := os.MkdirAll(debs, 0o755); err != nil {
			return nil, err
		}
		os.RemoveAll(rootfs)
		want := []string{"linux-image-" + version + ":" + spec.DebArch, "busybox-static:" + spec.DebArch}
		logf("apt-get download %s (into %s)", strings.Join(want, " "), debs)
		// As root apt drops to _apt, which cannot write the cache.
		if _, err := run(debs, "apt-get", append([]string{"-q", "-o", "APT::Sandbox::User=root", "download"}, want...)...); err != nil {
			return nil, err
		}
		files, _ := filepath.Glob(filepath.Join(debs, "*.deb"))
		for _, f := range files {
			logf("dpkg-deb -x %s", filepath.Base(f))
			if _, err := run("", "dpkg-deb", "-x", f, rootfs); err != nil {
				return nil, err
			}
		}
		if err := os.WriteFile(marker, []byte(strings.Join(want, "\n")+"\n"), 0o644); err != nil {
			return nil, err
		}
	}
	g := &Guest{Version: version, Kernel: filepath.Join(rootfs, "boot", "vmlinuz-"+version), SecondNIC: spec.SecondNIC}
	if _, err := os.Stat(g.Kernel); err != nil {
		return nil, fmt.Errorf("linuxguest: %w (remove %s to download again)", err, dir)
	}
	if spec.DTB != "" {
		src := filepath.Join(rootfs, "usr", "lib", "linux-image-"+version, spec.DTB)
		dtb, err := os.ReadFile(src)
		if err != nil {
			return nil, fmt.Errorf("linuxguest: %w (remove %s to download again)", err, dir)
		}
		if len(spec.DTBNoPhySupply) > 0 {
			var n int
			if dtb, n, err = DeleteProps(dtb, "phy-supply", spec.DTBNoPhySupply...); err != nil {
				return nil, fmt.Errorf("linuxguest: %s: %w", src, err)
			}
			logf("%s: deleted %d phy-supply properties (%s)", spec.DTB, n, strings.Join(spec.DTBNoPhySupply, ", "))
		}
		g.DTB = filepath.Join(dir, strings.TrimSuffix(spec.DTB, ".dtb")+"-tamanet.dtb")
		if err := os.WriteFile(g.DTB, dtb, 0o644); err != nil {
			return nil, err
		}
	}

	mods, err := LoadModules(filepath.Join(rootfs, "lib", "modules", version))
	if err != nil {
		return nil, fmt.Errorf("linuxguest: %w", err)
	}
	order, err := mods.Order(spec.Modules...)
	if err != nil {
		return nil, fmt.Errorf("linuxguest: %w", err)
	}
	logf("modules for %s: %s", strings.Join(spec.Modules, ", "), strings.Join(order, " "))

	bin := filepath.Join(dir, "linuxguest")
	logf("go build ./cmd/linuxguest (GOOS=linux GOARCH=%s%s, static)", spec.GOARCH, map[bool]string{true: " GOARM=" + spec.GOARM}[spec.GOARM != ""])
	gb := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./cmd/linuxguest")
	gb.Dir = o.Root
	gb.Env = append(os.Environ(), "GOOS=linux", "GOARCH="+spec.GOARCH, "GOARM="+spec.GOARM, "CGO_ENABLED=0", "GOFLAGS=")
	if b, err := gb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("linuxguest: go build ./cmd/linuxguest: %v\n%s", err, b)
	}

	var buf bytes.Buffer
	if err := WriteInitramfs(&buf, InitramfsFiles{
		Busybox: filepath.Join(rootfs, "bin", "busybox"),
		Guest:   bin,
		ModDir:  mods.dir,
		Modules: order,
		Init:    InitScript(spec, o.Net),
	}); err != nil {
		return nil, fmt.Errorf("linuxguest: %w", err)
	}
	g.Initrd = filepath.Join(dir, "initrd-"+o.Target+".cpio")
	tmp := g.Initrd + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o644); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, g.Initrd); err != nil {
		return nil, err
	}
	logf("initramfs %s (%d KiB)", g.Initrd, buf.Len()/1024)
	g.Append = KernelCmdline(spec)
	if spec.DebArch == "amd64" {
		khz, err := HostTSCkHz()
		if err != nil {
			return nil, fmt.Errorf("linuxguest: %w", err)
		}
		g.Append += TSCParams(khz)
	}
	logf("kernel command line: %s", g.Append)
	return g, nil
}

// ensureArch makes a foreign Debian architecture known to apt (as root:
// dpkg --add-architecture, apt-get update).
func ensureArch(ctx context.Context, arch string, logf func(string, ...any), run func(string, string, ...string) ([]byte, error)) error {
	native, err := run("", "dpkg", "--print-architecture")
	if err != nil {
		return err
	}
	if strings.TrimSpace(string(native)) == arch {
		return nil
	}
	foreign, err := run("", "dpkg", "--print-foreign-architectures")
	if err != nil {
		return err
	}
	if slices.Contains(strings.Fields(string(foreign)), arch) {
		return nil
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("linuxguest: apt does not know Debian's %s packages: as root, run dpkg --add-architecture %s && apt-get update", arch, arch)
	}
	logf("dpkg --add-architecture %s && apt-get update", arch)
	if _, err := run("", "dpkg", "--add-architecture", arch); err != nil {
		return err
	}
	_, err = run("", "apt-get", "-q", "update")
	return err
}

// kernelPackage returns the linux-image-VERSION package that apt-cache
// depends' output names.
func kernelPackage(out string) string {
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == "Depends:" && strings.HasPrefix(f[1], "linux-image-") {
			return f[1]
		}
	}
	return ""
}

// KernelCmdline is the guest kernel's command line: console on the first
// serial port, few messages (they share the console with the ready line),
// and a reboot, which QEMU's -no-reboot turns into an exit, if /init
// ends.
func KernelCmdline(s Spec) string {
	return "console=" + s.Console + " loglevel=4 panic=-1 rdinit=/init"
}

// TSCParams tells the x86 kernel the TSC's rate. QEMU's microvm, as
// tamanet boots it (pit=off, no HPET, no ACPI PM timer), gives Linux
// nothing to calibrate the TSC against, and it stops booting ("tsc:
// Unable to calibrate against PIT"); tamanet itself times the TSC against
// the RTC. Under TCG the guest's TSC is the host's (QEMU reads the host's
// counter), so the host's rate is the guest's; with it the kernel also
// times the local APIC timer against the TSC.
func TSCParams(khz int) string {
	return fmt.Sprintf(" tsc_early_khz=%d tsc=reliable", khz)
}

// HostTSCkHz returns the host CPU's TSC rate from /proc/cpuinfo ("cpu
// MHz", which is the TSC's rate where the flags say constant_tsc).
func HostTSCkHz() (int, error) {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0, err
	}
	return parseCPUInfoKHz(string(b))
}

func parseCPUInfoKHz(cpuinfo string) (int, error) {
	mhz, constant := 0.0, false
	for _, l := range strings.Split(cpuinfo, "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "cpu MHz":
			if mhz == 0 {
				fmt.Sscanf(strings.TrimSpace(v), "%g", &mhz)
			}
		case "flags":
			constant = constant || slices.Contains(strings.Fields(v), "constant_tsc")
		}
	}
	if mhz <= 0 || !constant {
		return 0, errors.New("/proc/cpuinfo gives no constant TSC rate (cpu MHz and the constant_tsc flag), which the Linux guest on microvm needs under TCG")
	}
	return int(mhz*1000 + 0.5), nil
}

// InitScript is the guest's /init: mount the kernel's file systems, load
// the NIC's modules, wait for its interface, configure it as the firmware
// configures its own (address, gateway, station address) and run the
// services, which print the ready line.
func InitScript(s Spec, n Net) string {
	var b strings.Builder
	b.WriteString(`#!/bin/busybox sh
bb=/bin/busybox
$bb mount -t proc proc /proc
$bb mount -t sysfs sys /sys
$bb mount -t devtmpfs dev /dev
for m in $(cat /modules); do $bb insmod /$m || echo "linuxguest: insmod $m failed"; done
`)
	fmt.Fprintf(&b, "want=%q\n", s.IfDevice)
	fmt.Fprintf(&b, `if=
i=0
while [ -z "$if" ] && [ $i -lt 300 ]; do
	for d in /sys/class/net/*; do
		n=${d##*/}
		[ "$n" = lo ] && continue
		l=$($bb readlink $d/device)
		case "$l" in *"$want"*) if=$n; break;; esac
	done
	[ -z "$if" ] && $bb usleep 100000
	i=$((i+1))
done
if [ -z "$if" ]; then echo "linuxguest: error: no network interface"; $bb ls -l /sys/class/net; exec $bb sh; fi
$bb ip link set dev $if address %s
$bb ip link set dev $if up
$bb ip addr add %s dev $if
$bb ip route add default via %s
drv=$($bb readlink /sys/class/net/$if/device/driver)
exec /linuxguest -if $if -nic linux-${drv##*/} -ip %s
`, n.MAC, n.Addr, n.Gateway, n.Addr)
	return b.String()
}

// InitramfsFiles is what goes into the initramfs.
type InitramfsFiles struct {
	Busybox, Guest string // paths on the host
	ModDir         string
	Modules        []string // relative to ModDir, in load order
	Init           string
}

// WriteInitramfs writes the newc archive: /init, /bin/busybox,
// /linuxguest, the modules under /lib/modules (and their order in
// /modules), the mount points and /dev/console, which the kernel opens
// for /init's standard streams before devtmpfs is mounted.
func WriteInitramfs(w io.Writer, f InitramfsFiles) error {
	c := NewCPIO(w)
	for _, d := range []string{"bin", "dev", "proc", "sys", "lib", "lib/modules", "tmp"} {
		if err := c.Dir(d, 0o755); err != nil {
			return err
		}
	}
	if err := c.CharDev("dev/console", 0o600, 5, 1); err != nil {
		return err
	}
	if err := c.File("init", 0o755, []byte(f.Init)); err != nil {
		return err
	}
	for name, src := range map[string]string{"bin/busybox": f.Busybox, "linuxguest": f.Guest} {
		b, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		if err := c.File(name, 0o755, b); err != nil {
			return err
		}
	}
	var list []string
	for _, m := range f.Modules {
		b, err := os.ReadFile(filepath.Join(f.ModDir, m))
		if err != nil {
			return err
		}
		name := "lib/modules/" + filepath.Base(m)
		if err := c.File(name, 0o644, b); err != nil {
			return err
		}
		list = append(list, name)
	}
	if err := c.File("modules", 0o644, []byte(strings.Join(list, "\n")+"\n")); err != nil {
		return err
	}
	return c.Close()
}
