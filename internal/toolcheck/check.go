package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
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
