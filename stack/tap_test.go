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
	"testing"
	"time"

	"github.com/tamanet/tamanet/internal/tap"
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
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Skipf("SKIP: cannot create a network namespace: %v %s", err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	if out, err := exec.Command("ip", "-n", ns, "tuntap", "add", "dev", "tap0", "mode", "tap").CombinedOutput(); err != nil {
		t.Skipf("SKIP: cannot create a tap: %v %s", err, bytes.TrimSpace(out))
	}
	tapFile, err := tap.Open(ns, "tap0")
	if err != nil {
		t.Fatal(err)
	}
	run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	run(t, "ip", "-n", ns, "addr", "add", "10.0.0.2/24", "dev", "tap0")
	// No IPv6 on the tap: its router solicitations and DAD would only be
	// counted as noise by the stack.
	exec.Command("ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv6.conf.tap0.disable_ipv6=1").Run()
	run(t, "ip", "-n", ns, "link", "set", "tap0", "up")

	n := newVnode(t, [6]byte{2, 0, 0, 0, 0, 1}, netip.MustParsePrefix("10.0.0.1/24"), netip.MustParseAddr("10.0.0.2"))
	n.model.AttachTap(tapFile)
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
