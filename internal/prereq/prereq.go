// Package prereq says what this machine lacks to build the firmware and
// boot it under QEMU on a tap in a private network namespace, and how to
// get it. `make test`'s first step (internal/toolcheck -prereq) and the
// end-to-end suite (qemu/e2e) both ask it, so they agree on what is
// needed and on the TamaGo distribution go.mod pins.
package prereq

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

const tamagoModule = "github.com/usbarmory/tamago"

// ModuleRoot walks up from dir to the directory holding go.mod.
func ModuleRoot(dir string) (string, error) {
	d, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		p := filepath.Dir(d)
		if p == d {
			return "", errors.New("go.mod not found: run from inside the tamanet module")
		}
		d = p
	}
}

// Distribution returns the name and directory of the TamaGo Go distribution
// that `go tool tamago` runs for the tamago module version in go.mod:
// tamago-goX.Y.Z in the user cache directory (where the tool puts it).
func Distribution(root string) (name, dir string, err error) {
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Version}}", tamagoModule)
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return "", "", fmt.Errorf("go list -m %s: %v", tamagoModule, err)
	}
	v := strings.TrimSpace(string(out))
	if !strings.HasPrefix(v, "v1.") || strings.Contains(v, "-") {
		return "", "", fmt.Errorf("tamago module version %q: expected a release v1.X.Y", v)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", "", err
	}
	name = "tamago-go" + strings.TrimPrefix(v, "v")
	return name, filepath.Join(cache, "tamago-go", name), nil
}

// CheckDistribution reports whether dir holds a complete TamaGo
// distribution called name, and if not, what to do.
//
// `go tool tamago` clones and builds the distribution only when dir does
// not exist: a directory left by an interrupted clone or build makes every
// later run fail, so a half-built one must be removed before it is
// installed again.
func CheckDistribution(name, dir string) error {
	install := fmt.Sprintf("run `go tool tamago version` where GitHub is reachable (it clones github.com/usbarmory/tamago-go at %s into %s and builds it), or copy a built %s there", name, dir, name)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("TamaGo distribution %s not installed (%s missing): %s", name, dir, install)
	} else if err != nil {
		return fmt.Errorf("TamaGo distribution %s: %v", name, err)
	}
	halfBuilt := func(why string) error {
		return fmt.Errorf("TamaGo distribution %s in %s is half built (%s): unless a build of it is running now, remove it with `rm -rf %s`, then %s", name, dir, why, dir, install)
	}
	gobin := filepath.Join(dir, "bin", "go")
	if _, err := os.Stat(gobin); err != nil {
		return halfBuilt("no bin/go")
	}
	tools := filepath.Join(dir, "pkg", "tool", hostTools())
	for _, t := range []string{"compile", "link", "asm"} {
		if _, err := os.Stat(filepath.Join(tools, t)); err != nil {
			return halfBuilt("no pkg/tool/" + filepath.Base(tools) + "/" + t)
		}
	}
	cmd := exec.Command(gobin, "version")
	cmd.Env = append(os.Environ(), "GOROOT="+dir, "GOTOOLCHAIN=local")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return halfBuilt(fmt.Sprintf("bin/go version: %v: %s", err, bytes.TrimSpace(out)))
	}
	if want := "go" + strings.TrimPrefix(name, "tamago-go") + " "; !strings.Contains(string(out), want) {
		return halfBuilt(fmt.Sprintf("bin/go version says %q, want %s", strings.TrimSpace(string(out)), strings.TrimSpace(want)))
	}
	return nil
}

// hostTools is the pkg/tool subdirectory of a distribution built here.
func hostTools() string { return runtime.GOOS + "_" + runtime.GOARCH }

// Debian packages of the commands Check looks for.
var debian = map[string]string{
	"ip":                 "iproute2",
	"ping":               "iputils-ping",
	"qemu-system-x86_64": "qemu-system-x86",
	"qemu-system-arm":    "qemu-system-arm",
}

// Check returns every reason this machine cannot boot the firmware under
// QEMU on a tap in a private namespace and, with build, build it (the
// TamaGo distribution of the module in root). cmds are the commands needed
// besides ip: the QEMU binaries, and for the end-to-end suite ping.
func Check(root string, build bool, cmds ...string) []error {
	var errs []error
	if build {
		if name, dir, err := Distribution(root); err != nil {
			errs = append(errs, err)
		} else if err := CheckDistribution(name, dir); err != nil {
			errs = append(errs, err)
		}
	}
	if os.Geteuid() != 0 {
		errs = append(errs, errors.New("not root: the end-to-end tests create a network namespace and a tap device: run them as root"))
	}
	if f, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0); err != nil {
		errs = append(errs, fmt.Errorf("cannot open /dev/net/tun (%v): load the tun module (`modprobe tun`), or give the container the device (e.g. `docker run --device /dev/net/tun --cap-add NET_ADMIN`)", err))
	} else {
		f.Close()
	}
	for _, c := range append([]string{"ip"}, cmds...) {
		if !OnPath(c) {
			how := "run `make deps` as root"
			if p, ok := debian[c]; ok {
				how += ", or `apt-get install " + p + "`"
			}
			errs = append(errs, fmt.Errorf("%s not installed: %s", c, how))
		}
	}
	return errs
}

// OnPath looks cmd up on PATH and in the sbin directories.
func OnPath(cmd string) bool {
	if _, err := exec.LookPath(cmd); err == nil {
		return true
	}
	for _, d := range []string{"/usr/sbin", "/sbin"} {
		if _, err := os.Stat(filepath.Join(d, cmd)); err == nil {
			return true
		}
	}
	return false
}
