//go:build linux

package stack

// One stack against the Linux network stack: the virtio driver over a
// device model whose wire is a tap in a private network namespace this
// test creates (tamanet-it-<pid>) and deletes. Linux is 10.0.0.2/24 on the
// tap, the stack 10.0.0.1/24; nothing is sent anywhere else.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// clientEnv, when set, makes the test binary a TCP echo client for the
// address it holds (see TestMain): the Linux side of TestLinuxTap, run
// inside the namespace with "ip netns exec".
const clientEnv = "TAMANET_IT_TCP_CLIENT"

func TestMain(m *testing.M) {
	if addr := os.Getenv(clientEnv); addr != "" {
		if err := linuxEchoClient(addr); err != nil {
			fmt.Fprintln(os.Stderr, "client:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// linuxEchoClient sends 1 MiB through the echo service at addr with the
// host's TCP and checks it comes back intact.
func linuxEchoClient(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	msg := make([]byte, 1<<20)
	rand.Read(msg)
	werr := make(chan error, 1)
	go func() { _, err := c.Write(msg); werr <- err }()
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if err := <-werr; err != nil {
		return err
	}
	if !bytes.Equal(got, msg) {
		return errors.New("echo differs")
	}
	fmt.Printf("echo ok %d bytes sha256 %x\n", len(msg), sha256.Sum256(msg))
	return nil
}

// openTap creates a tap device named name in the current namespace and
// returns its file (IFF_TAP|IFF_NO_PI: whole Ethernet frames, no prefix).
// The device can then be moved to another namespace; the file stays bound.
func openTap(name string) (*os.File, error) {
	fd, err := syscall.Open("/dev/net/tun", syscall.O_RDWR|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	// struct ifreq: 16-byte name, then the 16-bit flags (linux/if.h).
	var ifr [40]byte
	copy(ifr[:15], name)
	const iffTap, iffNoPI = 0x0002, 0x1000 // linux/if_tun.h
	*(*uint16)(unsafe.Pointer(&ifr[16])) = iffTap | iffNoPI
	const tunSetIff = 0x400454ca // _IOW('T', 202, int)
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), tunSetIff, uintptr(unsafe.Pointer(&ifr[0]))); e != 0 {
		syscall.Close(fd)
		return nil, fmt.Errorf("TUNSETIFF %s: %v", name, e)
	}
	// Non-blocking, so the file goes through Go's poller and Close
	// interrupts a pending Read.
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), "/dev/net/tun:"+name), nil
}

func run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestLinuxTap(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIP: needs root for a network namespace and a tap")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skip("SKIP: no /dev/net/tun")
	}
	for _, tool := range []string{"ip", "ping"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("SKIP: %s not installed", tool)
		}
	}
	ns := fmt.Sprintf("tamanet-it-%d", os.Getpid())
	dev := fmt.Sprintf("tnit%d", os.Getpid()%100000)
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Skipf("SKIP: cannot create a network namespace: %v %s", err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	tap, err := openTap(dev)
	if err != nil {
		t.Skipf("SKIP: cannot create a tap: %v", err)
	}
	// Into the namespace before it is up, so it never carries a frame in
	// the host's namespace; renamed tap0 there.
	run(t, "ip", "link", "set", dev, "netns", ns)
	run(t, "ip", "-n", ns, "link", "set", dev, "name", "tap0")
	run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	run(t, "ip", "-n", ns, "addr", "add", "10.0.0.2/24", "dev", "tap0")
	// No IPv6 on the tap: its router solicitations and DAD would only be
	// counted as noise by the stack.
	exec.Command("ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv6.conf.tap0.disable_ipv6=1").Run()
	run(t, "ip", "-n", ns, "link", "set", "tap0", "up")

	n := newVnode(t, [6]byte{2, 0, 0, 0, 0, 1}, netip.MustParsePrefix("10.0.0.1/24"), netip.MustParseAddr("10.0.0.2"))
	n.model.AttachTap(tap)
	n.s.Start()
	t.Cleanup(func() {
		n.close()
		n.model.Close()
	})
	l, err := n.s.Listen("tcp", ":7")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go echoTCP(l)

	out := run(t, "ip", "netns", "exec", ns, "ping", "-c", "5", "-i", "0.2", "-W", "2", "10.0.0.1")
	if !strings.Contains(out, " 0% packet loss") {
		t.Fatalf("ping from Linux:\n%s", out)
	}
	t.Logf("Linux ping: %s", lastLine(out))

	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), clientEnv+"=10.0.0.1:7")
	cout, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("Linux TCP client: %v\n%s", err, cout)
	}
	t.Logf("Linux TCP client: %s", bytes.TrimSpace(cout))

	// The stack reaches Linux too: ping the host side.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := n.s.Ping(ctx, netip.MustParseAddr("10.0.0.2"), 1, []byte("tamanet")); err != nil {
		t.Fatalf("ping from the stack to Linux: %v", err)
	}
	checkQuiet(t, n)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
