package linuxguest

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseDepends(t *testing.T) {
	mi := []byte("license=GPL\x00depends=virtio,virtio_ring,net_failover\x00retpoline=Y\x00name=virtio_net\x00")
	if got := parseDepends(mi); !slices.Equal(got, []string{"virtio", "virtio_ring", "net_failover"}) {
		t.Errorf("depends %q", got)
	}
	if got := parseDepends([]byte("depends=\x00name=virtio\x00")); len(got) != 0 {
		t.Errorf("empty depends: %q", got)
	}
	if got := parseDepends([]byte("name=x\x00")); got != nil {
		t.Errorf("no depends: %q", got)
	}
}

// fakeModules lays out a lib/modules/VERSION tree with empty .ko files and
// answers their dependencies from deps.
func fakeModules(t *testing.T, files []string, builtin string, deps map[string][]string) *Modules {
	t.Helper()
	dir := t.TempDir()
	for _, f := range files {
		p := filepath.Join(dir, f)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "modules.builtin"), []byte(builtin), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := LoadModules(dir)
	if err != nil {
		t.Fatal(err)
	}
	m.depends = func(p string) ([]string, error) { return deps[modName(p)], nil }
	return m
}

func TestModulesOrder(t *testing.T) {
	m := fakeModules(t, []string{
		"kernel/drivers/virtio/virtio.ko", "kernel/drivers/virtio/virtio_ring.ko", "kernel/drivers/virtio/virtio_mmio.ko",
		"kernel/drivers/net/virtio_net.ko", "kernel/drivers/net/net_failover.ko", "kernel/net/core/failover.ko",
		"kernel/drivers/net/some-thing.ko",
	}, "kernel/drivers/tty/serial/8250/8250.ko\nkernel/net/ipv6/ipv6.ko\n", map[string][]string{
		"virtio_mmio":  {"virtio", "virtio_ring"},
		"virtio":       {"virtio_ring"},
		"virtio_net":   {"virtio", "virtio_ring", "net_failover", "ipv6"},
		"net_failover": {"failover"},
	})
	got, err := m.Order("virtio_mmio", "virtio_net", "8250", "some-thing")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"kernel/drivers/virtio/virtio_ring.ko", "kernel/drivers/virtio/virtio.ko", "kernel/drivers/virtio/virtio_mmio.ko",
		"kernel/net/core/failover.ko", "kernel/drivers/net/net_failover.ko", "kernel/drivers/net/virtio_net.ko",
		"kernel/drivers/net/some-thing.ko",
	}
	if !slices.Equal(got, want) {
		t.Errorf("order:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !m.Builtin("ipv6") || m.Builtin("virtio") {
		t.Error("Builtin")
	}
	if _, err := m.Order("fec"); err == nil || !strings.Contains(err.Error(), "fec") {
		t.Errorf("missing module: %v", err)
	}
	m.depends = func(p string) ([]string, error) {
		return map[string][]string{"virtio": {"virtio_ring"}, "virtio_ring": {"virtio"}}[modName(p)], nil
	}
	if _, err := m.Order("virtio"); err == nil || !strings.Contains(err.Error(), "cycle") {
		t.Errorf("cycle: %v", err)
	}
}

func TestInitScriptAndCmdline(t *testing.T) {
	s := InitScript(Specs["mx6ullevk"], DefaultNet)
	for _, want := range []string{
		"#!/bin/busybox sh\n",
		"mount -t devtmpfs dev /dev",
		`want="20b4000.ethernet"`,
		"ip link set dev $if address 02:00:00:00:00:01",
		"ip addr add 10.0.0.1/24 dev $if",
		"ip route add default via 10.0.0.2",
		"exec /linuxguest -if $if -nic linux-${drv##*/} -ip 10.0.0.1/24",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("init script lacks %q:\n%s", want, s)
		}
	}
	// The modules are loaded before the interface is looked for.
	if strings.Index(s, "insmod") > strings.Index(s, "/sys/class/net") {
		t.Error("interface looked for before the modules are loaded")
	}
	if c := KernelCmdline(Specs["microvm"]); !strings.HasPrefix(c, "console=ttyS0 ") || !strings.Contains(c, "rdinit=/init") {
		t.Errorf("microvm command line %q", c)
	}
	if c := KernelCmdline(Specs["mx6ullevk"]); !strings.HasPrefix(c, "console=ttymxc0,115200 ") {
		t.Errorf("mx6ullevk command line %q", c)
	}
	if p := TSCParams(2096033); p != " tsc_early_khz=2096033 tsc=reliable" {
		t.Errorf("TSCParams %q", p)
	}
}

func TestParseCPUInfo(t *testing.T) {
	ci := "processor\t: 0\ncpu MHz\t\t: 2096.033\nflags\t\t: fpu tsc constant_tsc nonstop_tsc\n\nprocessor\t: 1\ncpu MHz\t\t: 1800.000\n"
	if k, err := parseCPUInfoKHz(ci); err != nil || k != 2096033 {
		t.Errorf("kHz %d, %v", k, err)
	}
	if _, err := parseCPUInfoKHz("cpu MHz\t: 2000\nflags\t: fpu tsc\n"); err == nil {
		t.Error("a TSC without constant_tsc accepted")
	}
	if _, err := parseCPUInfoKHz("flags\t: constant_tsc\n"); err == nil {
		t.Error("no cpu MHz accepted")
	}
}

func TestKernelPackage(t *testing.T) {
	out := "linux-image-armmp:armhf\n  Depends: linux-image-6.1.0-57-armmp:armhf\n"
	if p := kernelPackage(out); p != "linux-image-6.1.0-57-armmp:armhf" {
		t.Errorf("%q", p)
	}
	if p := kernelPackage("linux-image-amd64\n  Recommends: foo\n"); p != "" {
		t.Errorf("%q", p)
	}
}
