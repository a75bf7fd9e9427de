//go:build linux && amd64

package enet_test

// One stack on the ENET driver and model, attached to a Linux tap inside a
// private network namespace, talking to the Linux stack: ping and TCP both
// ways, checked by SHA-256. All traffic stays in the namespace the test
// creates (guest 10.0.0.1, host side 10.0.0.2) and deletes.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/tamanet/tamanet/qemu/vm"
)

const (
	sysSetns    = 308 // setns(2) on linux/amd64
	cloneNewNet = 0x40000000
	tunSetIff   = 0x400454ca
	iffTap      = 0x0002
	iffNoPI     = 0x1000
)

// openTap opens tap in namespace ns from a thread that enters ns and is
// thrown away afterwards (its goroutine ends locked), so no other goroutine
// ever runs in the namespace. The tap stays bound to ns.
func openTap(ns, tap string) (*os.File, error) {
	type res struct {
		f   *os.File
		err error
	}
	ch := make(chan res, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		nsf, err := os.Open(filepath.Join("/var/run/netns", ns))
		if err != nil {
			ch <- res{err: err}
			return
		}
		defer nsf.Close()
		if _, _, e := syscall.RawSyscall(sysSetns, nsf.Fd(), cloneNewNet, 0); e != 0 {
			ch <- res{err: fmt.Errorf("setns: %w", e)}
			return
		}
		fd, err := syscall.Open("/dev/net/tun", syscall.O_RDWR|syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0)
		if err != nil {
			ch <- res{err: err}
			return
		}
		var ifr [40]byte
		copy(ifr[:16], tap)
		*(*uint16)(unsafe.Pointer(&ifr[16])) = iffTap | iffNoPI
		if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), tunSetIff, uintptr(unsafe.Pointer(&ifr[0]))); e != 0 {
			syscall.Close(fd)
			ch <- res{err: fmt.Errorf("TUNSETIFF %s: %w", tap, e)}
			return
		}
		ch <- res{f: os.NewFile(uintptr(fd), tap)}
	}()
	r := <-ch
	return r.f, r.err
}

func TestTapLinux(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIP: needs root for a network namespace and a tap")
	}
	for _, tool := range []string{"ip", "ping", "nc", "sha256sum"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("SKIP: %s not installed", tool)
		}
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skip("SKIP: no /dev/net/tun")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	name, err := vm.FreeNetnsName("tamanet-enet")
	if err != nil {
		t.Fatal(err)
	}
	ns, err := vm.CreateNetns(ctx, name, "tap0", vm.DefaultHostAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Delete()
	f, err := openTap(name, "tap0")
	if err != nil {
		t.Fatal(err)
	}

	n := newEnode(t, [6]byte{2, 0, 0, 0, 0, 1}, addrA, addrB.Addr())
	n.model.AttachTap(f)
	n.s.Start()
	defer func() {
		n.s.Close()
		n.model.Close()
		n.drv.Close()
	}()

	// sha: read to EOF, answer the hex SHA-256. gen: send a seeded stream.
	const size = 4 << 20
	serve := func(port string, h func(c io.ReadWriteCloser)) {
		l, err := n.s.Listen("tcp", ":"+port)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					c.SetDeadline(time.Now().Add(time.Minute))
					h(c)
				}()
			}
		}()
	}
	serve("9", func(c io.ReadWriteCloser) {
		h := sha256.New()
		io.Copy(h, c)
		io.WriteString(c, hex.EncodeToString(h.Sum(nil))+"\n")
	})
	serve("19", func(c io.ReadWriteCloser) { io.CopyN(c, stream(5), size) })

	run := func(name string, args ...string) string {
		t.Helper()
		out, err := ns.Command(ctx, name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
		return string(out)
	}
	t.Run("ping", func(t *testing.T) {
		out := run("ping", "-c", "5", "-i", "0.2", "-W", "2", "10.0.0.1")
		if !strings.Contains(out, " 0% packet loss") {
			t.Fatalf("ping:\n%s", out)
		}
	})
	t.Run("tcp-upload", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "up")
		data, err := io.ReadAll(io.LimitReader(stream(6), size))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, data, 0o600); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		got := strings.TrimSpace(run("sh", "-c", "nc -N -w 20 10.0.0.1 9 < "+file))
		sum := sha256.Sum256(data)
		if want := hex.EncodeToString(sum[:]); got != want {
			t.Fatalf("stack's SHA-256 %q, sent %s", got, want)
		}
		t.Logf("%d MiB Linux -> stack in %v", size>>20, time.Since(start).Round(time.Millisecond))
	})
	t.Run("tcp-download", func(t *testing.T) {
		start := time.Now()
		out := run("sh", "-c", "nc -d -w 20 10.0.0.1 19 | sha256sum")
		if want := hex.EncodeToString(streamSum(5, size)); !strings.HasPrefix(out, want) {
			t.Fatalf("Linux received SHA-256 %q, sent %s", out, want)
		}
		t.Logf("%d MiB stack -> Linux in %v", size>>20, time.Since(start).Round(time.Millisecond))
	})
	ms := n.model.Stats()
	if ms.DeviceErrors != 0 || ms.BusErrors != 0 {
		t.Errorf("device errors: %+v", ms)
	}
	checkQuiet(t, n)
}
