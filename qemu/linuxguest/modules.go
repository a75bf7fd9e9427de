package linuxguest

import (
	"bytes"
	"debug/elf"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Modules finds kernel modules under dir (lib/modules/VERSION of an
// extracted linux-image package, which ships no modules.dep: Debian's
// postinst runs depmod) and orders them for insmod.
type Modules struct {
	dir     string
	path    map[string]string // module name -> path relative to dir
	builtin map[string]bool
	// depends reads a module's dependencies (ModuleDepends; tests
	// replace it).
	depends func(path string) ([]string, error)
}

// modName is the kernel's name for a module file: base name without
// ".ko", '-' as '_'.
func modName(file string) string {
	return strings.ReplaceAll(strings.TrimSuffix(filepath.Base(file), ".ko"), "-", "_")
}

// LoadModules indexes the .ko files and modules.builtin under dir.
func LoadModules(dir string) (*Modules, error) {
	m := &Modules{dir: dir, path: map[string]string{}, builtin: map[string]bool{}, depends: ModuleDepends}
	err := filepath.WalkDir(filepath.Join(dir, "kernel"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".ko") {
			rel, _ := filepath.Rel(dir, p)
			m.path[modName(p)] = rel
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(dir, "modules.builtin"))
	if err != nil {
		return nil, err
	}
	for _, l := range strings.Fields(string(b)) {
		m.builtin[modName(l)] = true
	}
	return m, nil
}

// Builtin reports whether the kernel has module name built in.
func (m *Modules) Builtin(name string) bool { return m.builtin[name] }

// Order returns the module files (relative to the directory) needed to
// load names, each after the modules it depends on (the "depends=" of its
// .modinfo section), each once. Built-in modules are left out; a name that
// is neither built in nor a module is an error.
func (m *Modules) Order(names ...string) ([]string, error) {
	var out []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(n, from string) error
	visit = func(n, from string) error {
		n = strings.ReplaceAll(n, "-", "_")
		if m.builtin[n] || state[n] == 2 {
			return nil
		}
		if state[n] == 1 {
			return fmt.Errorf("modules: dependency cycle at %s", n)
		}
		rel, ok := m.path[n]
		if !ok {
			if from != "" {
				return fmt.Errorf("modules: %s (needed by %s) is neither built in nor a module", n, from)
			}
			return fmt.Errorf("modules: %s is neither built in nor a module", n)
		}
		state[n] = 1
		deps, err := m.depends(filepath.Join(m.dir, rel))
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(d, n); err != nil {
				return err
			}
		}
		state[n] = 2
		out = append(out, rel)
		return nil
	}
	for _, n := range names {
		if err := visit(n, ""); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// ModuleDepends returns the depends= entry of a module's .modinfo section
// (NUL-separated key=value strings, as modinfo(8) shows them).
func ModuleDepends(path string) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("modules: %w", err)
	}
	defer f.Close()
	s := f.Section(".modinfo")
	if s == nil {
		return nil, fmt.Errorf("modules: %s has no .modinfo", path)
	}
	b, err := s.Data()
	if err != nil {
		return nil, fmt.Errorf("modules: %s: %w", path, err)
	}
	return parseDepends(b), nil
}

func parseDepends(modinfo []byte) []string {
	for _, kv := range bytes.Split(modinfo, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			var out []string
			for _, d := range strings.Split(string(v), ",") {
				if d != "" {
					out = append(out, d)
				}
			}
			return out
		}
	}
	return nil
}
