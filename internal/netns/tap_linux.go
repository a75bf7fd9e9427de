//go:build linux

package netns

// Opening a tap that lives in a network namespace, for tests that connect a
// device model (nic/virtio/virtiotest, nic/enet/enettest) to the Linux
// network stack inside a private namespace. The namespace and the tap are
// made beforehand (Create), and OpenTap attaches a file descriptor to the
// tap from inside the namespace. The caller stays in its own namespace;
// only a short-lived, locked OS thread enters it.

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
	tunSetIff       = 0x400454ca // TUNSETIFF
	tunGetIff       = 0x800454d2 // TUNGETIFF
	iffTap          = 0x0002     // IFF_TAP
	iffNoPI         = 0x1000     // IFF_NO_PI: no packet information header
	iffVnet         = 0x4000     // IFF_VNET_HDR: a virtio-net header leads each frame
	tunSetVnetHdrSz = 0x400454d8 // TUNSETVNETHDRSZ
	tunSetOffload   = 0x400454d0 // TUNSETOFFLOAD
	// VnetHdrSize is the virtio-net header OpenTapVnet sets: struct
	// virtio_net_hdr with num_buffers (virtio 1.2 §5.1.6, VERSION_1).
	VnetHdrSize = 12
	ifNameSiz   = 16 // IFNAMSIZ
	ifreqSize   = 40 // sizeof(struct ifreq) on 64-bit and 32-bit
)

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
	return 0, fmt.Errorf("netns: setns not known on %s", runtime.GOARCH)
}

// OpenTap returns a file for the existing tap device name in network
// namespace netns ("" for the caller's own), opened with IFF_TAP|IFF_NO_PI: each read
// returns one Ethernet frame, each write sends one. The file is
// non-blocking underneath, so SetReadDeadline and Close interrupt a Read.
func OpenTap(netns, name string) (*os.File, error) { return openIn(netns, name, false) }

// OpenTapVnet is OpenTap with IFF_VNET_HDR: each read and write starts with
// a VnetHdrSize-byte virtio-net header (TUNSETVNETHDRSZ), so a writer can
// hand the kernel partial checksums and TSO segments to finish. Offloads
// towards the reader start off (TUNSETOFFLOAD 0): reads are whole,
// checksummed frames until SetTapOffload says otherwise. The tap must not
// be open elsewhere.
func OpenTapVnet(netns, name string) (*os.File, error) { return openIn(netns, name, true) }

func openIn(netns, name string, vnet bool) (*os.File, error) {
	if name == "" || len(name) >= ifNameSiz {
		return nil, fmt.Errorf("tap: bad interface name %q", name)
	}
	if netns == "" {
		return open(name, vnet)
	}
	var f *os.File
	err := Do(netns, func() error {
		var err error
		f, err = open(name, vnet)
		return err
	})
	return f, err
}

// Do runs fn on an OS thread of its own inside network namespace netns and
// returns its error, or the error entering the namespace. Sockets fn opens
// belong to netns for their life. The thread is never handed back: when fn
// returns, the runtime ends it instead of giving a thread in the wrong
// namespace to other code. The caller stays in its own namespace.
func Do(netns string, fn func() error) error {
	trap, err := setnsTrap()
	if err != nil {
		return err
	}
	if netns == "" || netns != filepath.Base(netns) || netns == "." || netns == ".." {
		return fmt.Errorf("netns: bad namespace name %q", netns)
	}
	ch := make(chan error, 1)
	go func() {
		// Locked and never unlocked: the thread ends with the goroutine.
		runtime.LockOSThread()
		ns, err := os.Open(filepath.Join(Dir, netns))
		if err != nil {
			ch <- fmt.Errorf("netns: namespace %q: %w", netns, err)
			return
		}
		_, _, e := syscall.RawSyscall(trap, ns.Fd(), syscall.CLONE_NEWNET, 0)
		ns.Close()
		if e != 0 {
			ch <- fmt.Errorf("netns: setns %q: %w", netns, e)
			return
		}
		ch <- fn()
	}()
	return <-ch
}

// Do runs fn inside the namespace (see the function Do).
func (n *Netns) Do(fn func() error) error { return Do(n.Name, fn) }

// open attaches to the tap name in the calling thread's namespace.
func open(name string, vnet bool) (*os.File, error) {
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
	flags := uint16(iffTap | iffNoPI)
	if vnet {
		flags |= iffVnet
	}
	binary.NativeEndian.PutUint16(req[ifNameSiz:], flags)
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), tunSetIff, uintptr(unsafe.Pointer(&req[0]))); e != 0 {
		syscall.Close(fd)
		return nil, fmt.Errorf("tap: TUNSETIFF %q: %w", name, e)
	}
	if vnet {
		sz := int32(VnetHdrSize)
		if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), tunSetVnetHdrSz, uintptr(unsafe.Pointer(&sz))); e != 0 {
			syscall.Close(fd)
			return nil, fmt.Errorf("tap: TUNSETVNETHDRSZ %q: %w", name, e)
		}
		if e := setOffload(uintptr(fd), 0); e != 0 {
			syscall.Close(fd)
			return nil, fmt.Errorf("tap: TUNSETOFFLOAD %q: %w", name, e)
		}
	}
	f := os.NewFile(uintptr(fd), "tap:"+name)
	if f == nil {
		syscall.Close(fd)
		return nil, errors.New("tap: bad file descriptor")
	}
	return f, nil
}

// setOffload is TUNSETOFFLOAD: its argument is the flags themselves, not a
// pointer to them.
func setOffload(fd uintptr, flags uint32) syscall.Errno {
	_, _, e := syscall.Syscall(syscall.SYS_IOCTL, fd, tunSetOffload, uintptr(flags))
	return e
}

// SetTapOffload sets which offloads the kernel may leave to the reader of
// f, a tap opened with IFF_VNET_HDR (OpenTapVnet), as a hypervisor does for
// the receive offloads its guest negotiated: a TunF* set; 0 for whole,
// checksummed frames. The kernel refuses TSO without TunFCsum and
// TunFTSOECN without TSO (tun's set_offload). A tap without IFF_VNET_HDR
// is refused anything but 0 here, as the kernel does not: its reader could
// not tell a partial checksum or a joined packet.
func SetTapOffload(f *os.File, flags uint32) error {
	if flags != 0 {
		_, fl, err := TapName(f)
		if err != nil {
			return err
		}
		if fl&iffVnet == 0 {
			return errors.New("tap: offloads without IFF_VNET_HDR")
		}
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var e syscall.Errno
	if err := rc.Control(func(fd uintptr) { e = setOffload(fd, flags) }); err != nil {
		return err
	}
	if e != 0 {
		return fmt.Errorf("tap: TUNSETOFFLOAD %#x: %w", flags, e)
	}
	return nil
}

// OpenTap returns a file for the namespace's tap (see the function OpenTap).
func (n *Netns) OpenTap() (*os.File, error) { return OpenTap(n.Name, n.Tap) }

// OpenTapVnet returns a file for the namespace's tap with IFF_VNET_HDR (see
// the function OpenTapVnet).
func (n *Netns) OpenTapVnet() (*os.File, error) { return OpenTapVnet(n.Name, n.Tap) }

// TapName returns the interface name and flags a tap file is attached to
// (TUNGETIFF).
func TapName(f *os.File) (string, uint16, error) {
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
