package linuxguest

import (
	"errors"
	"fmt"
	"io"
	"strings"
)

// CPIO writes an initramfs in the "newc" format the kernel unpacks
// (Documentation/driver-api/early-userspace/buffer-format.rst): per entry
// a 110-byte ASCII header of 13 eight-digit hex fields after the magic
// "070701", the NUL-terminated name, padding to 4 bytes, the data, padding
// to 4 bytes; the archive ends with the entry "TRAILER!!!". Entries carry
// owner root and mtime 0, so an archive depends only on its contents, and
// device nodes need no privileges to create: the kernel makes them.
type CPIO struct {
	w     io.Writer
	n     int64 // bytes written, for the padding
	ino   uint32
	names map[string]bool
	err   error
	done  bool
}

// NewCPIO returns a writer of a newc archive to w.
func NewCPIO(w io.Writer) *CPIO { return &CPIO{w: w, ino: 1, names: map[string]bool{}} }

// File types in c_mode (the st_mode bits, as cpio(5) "newc" stores them).
const (
	modeDir     = 0o040000
	modeFile    = 0o100000
	modeSymlink = 0o120000
	modeChar    = 0o020000
)

// Dir adds a directory.
func (c *CPIO) Dir(name string, perm uint32) error {
	return c.entry(name, modeDir|perm&0o7777, 0, 0, nil)
}

// File adds a regular file with contents data.
func (c *CPIO) File(name string, perm uint32, data []byte) error {
	return c.entry(name, modeFile|perm&0o7777, 0, 0, data)
}

// Symlink adds a symbolic link to target.
func (c *CPIO) Symlink(name, target string) error {
	return c.entry(name, modeSymlink|0o777, 0, 0, []byte(target))
}

// CharDev adds a character device node (e.g. /dev/console, 5:1).
func (c *CPIO) CharDev(name string, perm, major, minor uint32) error {
	return c.entry(name, modeChar|perm&0o7777, major, minor, nil)
}

// Close writes the trailer. It does not close the underlying writer.
func (c *CPIO) Close() error {
	if c.done {
		return c.err
	}
	c.entryRaw("TRAILER!!!", 0, 0, 0, nil, 0)
	c.done = true
	return c.err
}

func (c *CPIO) entry(name string, mode, major, minor uint32, data []byte) error {
	if c.err != nil {
		return c.err
	}
	if c.done {
		return errors.New("cpio: entry after Close")
	}
	name = strings.TrimPrefix(name, "/")
	if name == "" || name == "TRAILER!!!" || strings.Contains(name, "\x00") {
		return fmt.Errorf("cpio: bad name %q", name)
	}
	for _, p := range strings.Split(name, "/") {
		if p == "" || p == "." || p == ".." {
			return fmt.Errorf("cpio: name %q is not clean", name)
		}
	}
	if c.names[name] {
		return fmt.Errorf("cpio: %s added twice", name)
	}
	c.names[name] = true
	c.ino++
	c.entryRaw(name, mode, major, minor, data, c.ino)
	return c.err
}

func (c *CPIO) entryRaw(name string, mode, major, minor uint32, data []byte, ino uint32) {
	nlink := uint32(1)
	if mode&0o170000 == modeDir {
		nlink = 2
	}
	// magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor,
	// devminor, rdevmajor, rdevminor, namesize (with its NUL), check.
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		ino, mode, 0, 0, nlink, 0, len(data), 0, 0, major, minor, len(name)+1, 0)
	c.write([]byte(hdr))
	c.write([]byte(name + "\x00"))
	c.pad()
	c.write(data)
	c.pad()
}

func (c *CPIO) write(b []byte) {
	if c.err != nil {
		return
	}
	n, err := c.w.Write(b)
	c.n += int64(n)
	c.err = err
}

func (c *CPIO) pad() {
	if r := c.n % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}
