package linuxguest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// entry is one member of a newc archive as the kernel's unpacker
// (init/initramfs.c) reads it.
type entry struct {
	name          string
	mode          uint32
	nlink         uint32
	rmaj, rmin    uint32
	data          []byte
	ino, uid, gid uint32
}

// readNewc parses a newc archive, checking magic, hex fields, the name's
// NUL and the 4-byte alignment of header, name and data, and that it ends
// with the trailer.
func readNewc(t *testing.T, b []byte) []entry {
	t.Helper()
	var out []entry
	off := 0
	for {
		if off%4 != 0 {
			t.Fatalf("header at %d is not 4-byte aligned", off)
		}
		if len(b)-off < 110 {
			t.Fatalf("truncated header at %d", off)
		}
		h := b[off : off+110]
		if string(h[:6]) != "070701" {
			t.Fatalf("magic %q at %d", h[:6], off)
		}
		f := make([]uint32, 13)
		for i := range f {
			v, err := strconv.ParseUint(string(h[6+8*i:14+8*i]), 16, 32)
			if err != nil {
				t.Fatalf("field %d at %d: %v", i, off, err)
			}
			f[i] = uint32(v)
		}
		namesize, filesize := int(f[11]), int(f[6])
		name := b[off+110 : off+110+namesize]
		if name[len(name)-1] != 0 {
			t.Fatalf("name at %d not NUL-terminated", off)
		}
		off = align4(off + 110 + namesize)
		e := entry{name: string(name[:len(name)-1]), ino: f[0], mode: f[1], uid: f[2], gid: f[3], nlink: f[4], rmaj: f[9], rmin: f[10]}
		e.data = b[off : off+filesize]
		off = align4(off + filesize)
		if e.name == "TRAILER!!!" {
			if off != len(b) {
				t.Fatalf("%d bytes after the trailer", len(b)-off)
			}
			return out
		}
		out = append(out, e)
	}
}

func TestCPIO(t *testing.T) {
	var buf bytes.Buffer
	c := NewCPIO(&buf)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.Dir("bin", 0o755))
	must(c.File("/bin/x", 0o755, []byte("hello"))) // a leading slash is dropped
	must(c.Symlink("bin/sh", "x"))
	must(c.CharDev("dev/console", 0o600, 5, 1))
	must(c.File("empty", 0o644, nil))
	must(c.Close())

	// The first header byte for byte: inode 2, a directory 0755, nlink 2,
	// name "bin" plus NUL (4 bytes), then padding to 116.
	want := "070701" + "00000002" + "000041ED" + "00000000" + "00000000" + "00000002" + "00000000" + "00000000" +
		"00000000" + "00000000" + "00000000" + "00000000" + "00000004" + "00000000" + "bin\x00"
	if got := buf.String()[:len(want)]; got != want {
		t.Fatalf("first header\n got %q\nwant %q", got, want)
	}

	es := readNewc(t, buf.Bytes())
	got := make([]string, len(es))
	inos := map[uint32]bool{}
	for i, e := range es {
		got[i] = fmt.Sprintf("%s %o %d:%d %q", e.name, e.mode, e.rmaj, e.rmin, e.data)
		if e.uid != 0 || e.gid != 0 {
			t.Errorf("%s: owner %d:%d, want root", e.name, e.uid, e.gid)
		}
		if inos[e.ino] {
			t.Errorf("%s: inode %d used twice", e.name, e.ino)
		}
		inos[e.ino] = true
	}
	wantEntries := []string{
		`bin 40755 0:0 ""`,
		`bin/x 100755 0:0 "hello"`,
		`bin/sh 120777 0:0 "x"`,
		`dev/console 20600 5:1 ""`,
		`empty 100644 0:0 ""`,
	}
	if strings.Join(got, "\n") != strings.Join(wantEntries, "\n") {
		t.Errorf("entries:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantEntries, "\n"))
	}
}

func TestCPIORefuses(t *testing.T) {
	for _, name := range []string{"", "/", "a/../b", "a//b", "./a", "TRAILER!!!", "a\x00b"} {
		c := NewCPIO(new(bytes.Buffer))
		if err := c.File(name, 0o644, nil); err == nil {
			t.Errorf("name %q accepted", name)
		}
	}
	c := NewCPIO(new(bytes.Buffer))
	if err := c.File("a", 0o644, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Dir("a", 0o755); err == nil {
		t.Error("a second entry named a accepted")
	}
	c.Close()
	if err := c.File("b", 0o644, nil); err == nil {
		t.Error("entry after Close accepted")
	}
}

func TestWriteInitramfs(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	bb, guest := write("busybox", "BB"), write("guest", "GUEST")
	write("mods/kernel/a/dep.ko", "DEP")
	write("mods/kernel/b/nic.ko", "NIC")
	var buf bytes.Buffer
	err := WriteInitramfs(&buf, InitramfsFiles{Busybox: bb, Guest: guest, ModDir: filepath.Join(dir, "mods"),
		Modules: []string{"kernel/a/dep.ko", "kernel/b/nic.ko"}, Init: "#!/bin/busybox sh\n"})
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]entry{}
	for _, e := range readNewc(t, buf.Bytes()) {
		files[e.name] = e
	}
	for name, want := range map[string]string{"init": "#!/bin/busybox sh\n", "bin/busybox": "BB", "linuxguest": "GUEST",
		"lib/modules/dep.ko": "DEP", "lib/modules/nic.ko": "NIC", "modules": "lib/modules/dep.ko\nlib/modules/nic.ko\n"} {
		if e, ok := files[name]; !ok || string(e.data) != want {
			t.Errorf("%s: %q, want %q", name, e.data, want)
		}
	}
	if files["init"].mode != modeFile|0o755 || files["linuxguest"].mode&0o111 == 0 {
		t.Errorf("init mode %o, linuxguest %o: not executable", files["init"].mode, files["linuxguest"].mode)
	}
	if c := files["dev/console"]; c.mode != modeChar|0o600 || c.rmaj != 5 || c.rmin != 1 {
		t.Errorf("dev/console: mode %o %d:%d", c.mode, c.rmaj, c.rmin)
	}
	for _, d := range []string{"proc", "sys", "dev"} {
		if files[d].mode&0o170000 != modeDir {
			t.Errorf("%s is not a directory", d)
		}
	}
	if err := WriteInitramfs(new(bytes.Buffer), InitramfsFiles{Busybox: bb, Guest: guest, ModDir: dir, Modules: []string{"missing.ko"}}); err == nil {
		t.Error("a missing module was not an error")
	}
}
