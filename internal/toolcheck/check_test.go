package main

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tamanet/tamanet/internal/prereq"
)

// needDistribution skips a test that runs the TamaGo toolchain where it is
// not installed (make test-host machines); `make test` checks it is there
// before running any test.
func needDistribution(t *testing.T) string {
	t.Helper()
	root, err := prereq.ModuleRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	name, dir, err := prereq.Distribution(root)
	if err != nil {
		t.Fatal(err)
	}
	if err := prereq.CheckDistribution(name, dir); err != nil {
		t.Skipf("SKIP: needs the TamaGo distribution (make test requires it): %v", err)
	}
	return root
}

// copyModule copies the module's sources (go.mod, go.sum, .go and .s
// files) to a new directory.
func copyModule(t *testing.T, root string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() {
			if rel != "." && (strings.HasPrefix(d.Name(), ".") || rel == "build") {
				return filepath.SkipDir
			}
			return nil
		}
		switch filepath.Ext(p) {
		case ".go", ".s", ".mod", ".sum":
		default:
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join(dst, filepath.Dir(rel)), 0o755); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// inject appends a type error to a file.
func inject(t *testing.T, file string) {
	t.Helper()
	f, err := os.OpenFile(file, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("\nvar injectedTypeError int = \"not an int\"\n"); err != nil {
		t.Fatal(err)
	}
}

func board(t *testing.T, name string) Board {
	t.Helper()
	for _, b := range Boards {
		if b.Name == name {
			return b
		}
	}
	t.Fatalf("no board %s", name)
	return Board{}
}

// TestInjectedBoardTypeErrorFails: a type error in a tamago-only board file
// passes the host's go vet, and fails the tamago step for that board, on
// amd64 and on arm; the same packages without it pass.
func TestInjectedBoardTypeErrorFails(t *testing.T) {
	root := needDistribution(t)
	dir := copyModule(t, root)
	cases := []struct {
		board, pkg, file string
	}{
		{"microvm", "./board/microvm", "board/microvm/clock.go"},
		{"mx6ullevk", "./board/mx6ullevk", "board/mx6ullevk/mx6ullevk.go"},
	}
	for _, c := range cases {
		b := board(t, c.board)
		if err := CheckBoard(dir, b, []string{c.pkg}, io.Discard); err != nil {
			t.Fatalf("%s before the injection: %v", c.board, err)
		}
		inject(t, filepath.Join(dir, c.file))
		host := exec.Command("go", "vet", c.pkg)
		host.Dir = dir
		if out, err := host.CombinedOutput(); err != nil {
			t.Fatalf("host go vet %s fails on a tamago-only file (so the host already catches it): %v\n%s", c.pkg, err, out)
		}
		err := CheckBoard(dir, b, []string{c.pkg}, io.Discard)
		if err == nil {
			t.Fatalf("%s: the type error injected into %s passed", c.board, c.file)
		}
		if !strings.Contains(err.Error(), filepath.Base(c.file)) || !strings.Contains(err.Error(), `"not an int"`) {
			t.Fatalf("%s: the failure does not point at the injected error in %s:\n%v", c.board, c.file, err)
		}
		t.Logf("%s: %s", c.board, firstLines(err.Error(), 3))
	}
}

// TestFirmwarePackages: every board checks the firmware's packages, its
// own board among them, and none of the host-only ones.
func TestFirmwarePackages(t *testing.T) {
	root := needDistribution(t)
	tamago, err := tamagoTool(root)
	if err != nil {
		t.Fatal(err)
	}
	const mod = "github.com/tamanet/tamanet/"
	for _, b := range Boards {
		env := append(os.Environ(), "GOOS=tamago", "GOOSPKG="+tamagoModule, "GOARCH="+b.GOARCH, "GOARM="+b.GOARM)
		build, vet, err := firmwarePackages(root, tamago, env, b)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"board/" + b.Name, "nic/virtio", "nic/enet", "stack", "alloc"} {
			if !slices.Contains(build, mod+want) || !slices.Contains(vet, mod+want) {
				t.Errorf("%s: %s not checked", b.Name, want)
			}
		}
		if !slices.Contains(vet, mod+"cmd/unikernel") {
			t.Errorf("%s: cmd/unikernel not vetted", b.Name)
		}
		for _, p := range vet {
			if strings.HasPrefix(p, mod+"qemu/") {
				t.Errorf("%s: host-only %s checked for tamago", b.Name, p)
			}
		}
	}
}

func firstLines(s string, n int) string {
	l := strings.SplitN(s, "\n", n+1)
	return strings.Join(l[:min(n, len(l))], " | ")
}

// TestBoardsMatchMakefile: the configurations checked are the Makefile's
// TARGETs, with its GOARCH, tags and link address.
func TestBoardsMatchMakefile(t *testing.T) {
	root, err := prereq.ModuleRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	mk, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	// Blocks of `ifeq ($(TARGET),name)` / `else ifeq ($(TARGET),name)`.
	blocks := map[string]map[string]string{}
	var cur map[string]string
	for _, l := range strings.Split(string(mk), "\n") {
		l = strings.TrimSpace(l)
		if _, name, ok := strings.Cut(l, "ifeq ($(TARGET),"); ok {
			cur = map[string]string{}
			blocks[strings.TrimSuffix(name, ")")] = cur
			continue
		}
		if l == "else" || l == "endif" {
			cur = nil
		}
		if k, v, ok := strings.Cut(l, ":="); ok && cur != nil {
			cur[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	if len(blocks) != len(Boards) {
		t.Errorf("Makefile has targets %v, toolcheck %d boards", blocks, len(Boards))
	}
	for _, b := range Boards {
		m := blocks[b.Name]
		goarm := ""
		if v, ok := strings.CutPrefix(m["GOENV_T"], "GOARM="); ok {
			goarm = v
		}
		if m == nil || m["GOARCH_T"] != b.GOARCH || goarm != b.GOARM || m["TAGS"] != b.Tags || m["TEXT"] != b.Text {
			t.Errorf("board %+v, Makefile %v", b, m)
		}
	}
}
