package prereq

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckDistribution: an absent distribution and each way of being half
// built are reported with the command that fixes them; a complete one
// passes.
func TestCheckDistribution(t *testing.T) {
	const name = "tamago-go1.26.0"
	tools := filepath.Join("pkg", "tool", hostTools())
	build := func(t *testing.T, goScript string, toolNames ...string) string {
		dir := filepath.Join(t.TempDir(), name)
		if err := os.MkdirAll(filepath.Join(dir, tools), 0o755); err != nil {
			t.Fatal(err)
		}
		if goScript != "" {
			os.MkdirAll(filepath.Join(dir, "bin"), 0o755)
			if err := os.WriteFile(filepath.Join(dir, "bin", "go"), []byte("#!/bin/sh\n"+goScript+"\n"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for _, n := range toolNames {
			if err := os.WriteFile(filepath.Join(dir, tools, n), nil, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	good := "echo go version go1.26.0 linux/amd64"
	all := []string{"compile", "link", "asm"}
	for _, c := range []struct {
		name string
		dir  func(t *testing.T) string
		want []string // substrings of the error; none: no error
	}{
		{"absent", func(t *testing.T) string { return filepath.Join(t.TempDir(), name) }, []string{"not installed", "go tool tamago version"}},
		{"no bin/go", func(t *testing.T) string { return build(t, "", all...) }, []string{"half built", "no bin/go", "rm -rf", "go tool tamago version"}},
		{"no compiler", func(t *testing.T) string { return build(t, good, "link", "asm") }, []string{"half built", "compile", "rm -rf"}},
		{"go fails", func(t *testing.T) string { return build(t, "exit 3", all...) }, []string{"half built", "bin/go version", "rm -rf"}},
		{"wrong version", func(t *testing.T) string { return build(t, "echo go version go1.25.0 linux/amd64", all...) }, []string{"half built", "go1.25.0", "rm -rf"}},
		{"complete", func(t *testing.T) string { return build(t, good, all...) }, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := c.dir(t)
			err := CheckDistribution(name, dir)
			if c.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q lacks %q", err, w)
				}
			}
			if !strings.Contains(err.Error(), dir) {
				t.Errorf("%q does not name %s", err, dir)
			}
		})
	}
}
