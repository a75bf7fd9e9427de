//go:build linux

// Package tap opens a Linux tap device that lives in a network namespace, for
// tests that connect a device model (nic/virtio/virtiotest) to the Linux
// network stack inside a private namespace.
//
// The namespace and the tap are made beforehand, e.g.
//
//	ip netns add NS
//	ip -n NS tuntap add dev NAME mode tap
//
// and Open attaches a file descriptor to the tap from inside NS. The caller
// stays in its own namespace; only a short-lived, locked OS thread enters NS.
package tap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"unsafe"
)

// From <linux/if_tun.h>.
const (
	tunSetIff = 0x400454ca // TUNSETIFF
	tunGetIff = 0x800454d2 // TUNGETIFF
	iffTap    = 0x0002     // IFF_TAP
	iffNoPI   = 0x1000     // IFF_NO_PI: no packet information header
	ifNameSiz = 16         // IFNAMSIZ
	ifreqSize = 40         // sizeof(struct ifreq) on 64-bit and 32-bit
)

// NetnsDir is where `ip netns add` binds named namespaces.
const NetnsDir = "/var/run/netns"

// setnsTrap returns the setns(2) system call number for this architecture;
// package syscall does not export it everywhere.
func setnsTrap() (uintptr, error) {
	switch runtime.GOARCH {
	case "amd64":
		return 308, nil
	case "arm64", "riscv64", "loong64":
		return 268, nil
	case "arm":
		return 375, nil
	case "386":
		return 346, nil
	}
	return 0, fmt.Errorf("tap: setns not known on %s", runtime.GOARCH)
}

// Open returns a file for the existing tap device name in network namespace
// netns ("" for the caller's own), opened with IFF_TAP|IFF_NO_PI: each read
// returns one Ethernet frame, each write sends one. The file is
// non-blocking underneath, so SetReadDeadline and Close interrupt a Read.
func Open(netns, name string) (*os.File, error) {
	if name == "" || len(name) >= ifNameSiz {
		return nil, fmt.Errorf("tap: bad interface name %q", name)
	}
	if netns == "" {
		return open(name)
	}
	type result struct {
		f   *os.File
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// The thread enters netns and is never unlocked: when this
		// goroutine ends, the runtime ends the thread with it instead
		// of handing a thread in the wrong namespace to other code.
		runtime.LockOSThread()
		f, err := enterAndOpen(netns, name)
		ch <- result{f, err}
	}()
	r := <-ch
	return r.f, r.err
}

func enterAndOpen(netns, name string) (*os.File, error) {
	trap, err := setnsTrap()
	if err != nil {
		return nil, err
	}
	if netns != filepath.Base(netns) || netns == "." || netns == ".." {
		return nil, fmt.Errorf("tap: bad namespace name %q", netns)
	}
	ns, err := os.Open(filepath.Join(NetnsDir, netns))
	if err != nil {
		return nil, fmt.Errorf("tap: namespace %q: %w", netns, err)
	}
	defer ns.Close()
	if _, _, e := syscall.RawSyscall(trap, ns.Fd(), syscall.CLONE_NEWNET, 0); e != 0 {
		return nil, fmt.Errorf("tap: setns %q: %w", netns, e)
	}
	return open(name)
}

// open attaches to the tap name in the calling thread's namespace.
func open(name string) (*os.File, error) {
	// TUNSETIFF would create a new, non-persistent tap for a name that
	// does not exist: insist that it does.
	if _, err := net.InterfaceByName(name); err != nil {
		return nil, fmt.Errorf("tap: no interface %q: %w", name, err)
	}
	fd, err := syscall.Open("/dev/net/tun", syscall.O_RDWR|syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("tap: /dev/net/tun: %w", err)
	}
	var req [ifreqSize]byte
	copy(req[:ifNameSiz-1], name)
	binary.NativeEndian.PutUint16(req[ifNameSiz:], iffTap|iffNoPI)
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), tunSetIff, uintptr(unsafe.Pointer(&req[0]))); e != 0 {
		syscall.Close(fd)
		return nil, fmt.Errorf("tap: TUNSETIFF %q: %w", name, e)
	}
	f := os.NewFile(uintptr(fd), "tap:"+name)
	if f == nil {
		syscall.Close(fd)
		return nil, errors.New("tap: bad file descriptor")
	}
	return f, nil
}

// Name returns the interface name and flags a tap file is attached to
// (TUNGETIFF).
func Name(f *os.File) (string, uint16, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return "", 0, err
	}
	var req [ifreqSize]byte
	var e syscall.Errno
	if err := rc.Control(func(fd uintptr) {
		_, _, e = syscall.Syscall(syscall.SYS_IOCTL, fd, tunGetIff, uintptr(unsafe.Pointer(&req[0])))
	}); err != nil {
		return "", 0, err
	}
	if e != 0 {
		return "", 0, fmt.Errorf("tap: TUNGETIFF: %w", e)
	}
	n := 0
	for n < ifNameSiz && req[n] != 0 {
		n++
	}
	return string(req[:n]), binary.NativeEndian.Uint16(req[ifNameSiz:]), nil
}
