package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// Board is one GOOS=tamago build configuration, as the Makefile builds it.
type Board struct {
	Name   string
	GOARCH string
	GOARM  string
	Tags   string
	Text   string // link address of .text (the Makefile's TEXT)
}

// Boards are the Makefile's TARGETs.
var Boards = []Board{
	{Name: "microvm", GOARCH: "amd64", Tags: "microvm", Text: "0x10010000"},
	{Name: "mx6ullevk", GOARCH: "arm", GOARM: "7", Tags: "mx6ullevk,linkramsize", Text: "0x80010000"},
	{Name: "usbarmory", GOARCH: "arm", GOARM: "7", Tags: "usbarmory,linkramsize", Text: "0x80010000"},
}

// hostOnly are the package trees that run on the build machine only (the
// QEMU runner and the end-to-end suite use Linux system calls): they are
// built and vetted by the host toolchain, not for tamago.
var hostOnly = []string{"qemu"}

const tamagoModule = "github.com/usbarmory/tamago"

// moduleRoot walks up from dir to the directory holding go.mod.
func moduleRoot(dir string) (string, error) {
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

// prerequisites returns every reason this machine cannot build and boot
// the firmware under QEMU on a tap in a private namespace.
func prerequisites(root string) []error {
	var errs []error
	if name, dir, err := Distribution(root); err != nil {
		errs = append(errs, err)
	} else if err := CheckDistribution(name, dir); err != nil {
		errs = append(errs, err)
	}
	if os.Geteuid() != 0 {
		errs = append(errs, errors.New("not root: the end-to-end tests create a network namespace and a tap device: run `make test` as root"))
	}
	if f, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0); err != nil {
		errs = append(errs, fmt.Errorf("cannot open /dev/net/tun (%v): load the tun module (`modprobe tun`), or give the container the device (e.g. `docker run --device /dev/net/tun --cap-add NET_ADMIN`)", err))
	} else {
		f.Close()
	}
	for _, c := range []struct{ cmd, pkg string }{
		{"ip", "iproute2"},
		{"qemu-system-x86_64", "qemu-system-x86"},
		{"qemu-system-arm", "qemu-system-arm"},
	} {
		if !onPath(c.cmd) {
			errs = append(errs, fmt.Errorf("%s not installed: run `make deps` as root, or `apt-get install %s`", c.cmd, c.pkg))
		}
	}
	return errs
}

// onPath looks cmd up on PATH and in the sbin directories.
func onPath(cmd string) bool {
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

// firmware is the command linked for every board.
const firmware = "./cmd/unikernel"

// CheckBoard, with `go tool tamago` for board b: compiles pkgs (default:
// every package of the module in root but the host-only ones; commands are
// type-checked by vet only, since most link for one board or none), links
// the firmware as the Makefile does, and vets pkgs with their tests. It
// returns an error carrying the compiler's, linker's or vet's output when
// any fails. Their output otherwise goes to w.
func CheckBoard(root string, b Board, pkgs []string, w io.Writer) error {
	env := append(os.Environ(), "GOOS=tamago", "GOOSPKG="+tamagoModule, "GOARCH="+b.GOARCH)
	if b.GOARM != "" {
		env = append(env, "GOARM="+b.GOARM)
	}
	tamago, err := tamagoTool(root)
	if err != nil {
		return err
	}
	build, vet := pkgs, pkgs
	if pkgs == nil {
		if build, vet, err = firmwarePackages(root, tamago, env, b); err != nil {
			return err
		}
	}
	out, err := os.MkdirTemp("", "toolcheck-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(out)
	steps := [][]string{append([]string{"build", "-tags", b.Tags}, build...)}
	if pkgs == nil {
		steps = append(steps, []string{"build", "-tags", b.Tags, "-ldflags", "-T " + b.Text + " -R 0x1000", "-o", filepath.Join(out, "firmware"), firmware})
	}
	steps = append(steps, append([]string{"vet", "-tags", b.Tags}, vet...))
	for _, args := range steps {
		cmd := exec.Command(tamago, args...)
		cmd.Dir, cmd.Env = root, env
		o, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: go %s failed for GOOS=tamago GOARCH=%s -tags %s (%v):\n%s", b.Name, strings.Join(args[:3], " "), b.GOARCH, b.Tags, err, o)
		}
		w.Write(o)
	}
	return nil
}

// tamagoTool returns the path of the tamago command pinned in go.mod. It
// is looked up by the host go command, without GOOS=tamago, which that
// command does not know.
func tamagoTool(root string) (string, error) {
	cmd := exec.Command("go", "tool", "-n", tamagoModule+"/cmd/tamago")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go tool -n %s/cmd/tamago: %v", tamagoModule, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// firmwarePackages lists the module's packages as the tamago toolchain
// sees them for b, less the host-only trees: all of them to vet, and the
// non-main ones to compile.
func firmwarePackages(root, tamago string, env []string, b Board) (build, vet []string, err error) {
	cmd := exec.Command(tamago, "list", "-tags", b.Tags, "-f", "{{.ImportPath}} {{.Module.Path}} {{.Name}}", "./...")
	cmd.Dir, cmd.Env = root, env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, nil, fmt.Errorf("%s: go list for tamago: %v\n%s", b.Name, err, stderr.Bytes())
	}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(l)
		if len(f) != 3 {
			continue
		}
		path, mod, name := f[0], f[1], f[2]
		rel := strings.TrimPrefix(strings.TrimPrefix(path, mod), "/")
		if isHostOnly(rel) {
			continue
		}
		vet = append(vet, path)
		if name != "main" {
			build = append(build, path)
		}
	}
	if len(build) == 0 || len(vet) == 0 {
		return nil, nil, fmt.Errorf("%s: no packages to check", b.Name)
	}
	return build, vet, nil
}

func isHostOnly(rel string) bool {
	for _, h := range hostOnly {
		if rel == h || strings.HasPrefix(rel, h+"/") {
			return true
		}
	}
	return false
}

// hostTools is the pkg/tool subdirectory of a distribution built here.
func hostTools() string { return runtime.GOOS + "_" + runtime.GOARCH }
