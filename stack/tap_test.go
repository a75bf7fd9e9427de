//go:build linux

package stack

// One stack against the Linux network stack: the virtio driver over a
// device model whose wire is a tap in a private network namespace this
// test creates (netns.ForTest) and deletes. Linux is 10.0.0.2/24 on the
// tap, the stack 10.0.0.1/24; nothing is sent anywhere else.

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tamanet/tamanet/internal/netns"
	"github.com/tamanet/tamanet/nic/virtio/virtiotest"
	"github.com/tamanet/tamanet/stack/stacktest"
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
	if err := stacktest.EchoConn(c, 1<<20, 0x5a); err != nil {
		return err
	}
	fmt.Printf("echo ok %d bytes\n", 1<<20)
	return nil
}

func TestLinuxTap(t *testing.T) {
	ns, tapFile := netns.ForTest(t, "tamanet-it", "ping")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	run := func(args ...string) string {
		t.Helper()
		return ns.Run(t, ctx, args[0], args[1:]...)
	}

	n := newVnode(t, virtiotest.Options{MAC: stacktest.MACA}, Config{Addr: addrA, Gateway: addrB.Addr()})
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
	go stacktest.EchoTCP(l)

	out := run("ping", "-c", "5", "-i", "0.2", "-W", "2", "10.0.0.1")
	if !strings.Contains(out, " 0% packet loss") {
		t.Fatalf("ping from Linux:\n%s", out)
	}
	t.Logf("Linux ping: %s", lastLine(out))

	cmd := ns.Command(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), clientEnv+"=10.0.0.1:7")
	cout, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("Linux TCP client: %v\n%s", err, cout)
	}
	t.Logf("Linux TCP client: %s", bytes.TrimSpace(cout))

	// The stack reaches Linux too: ping the host side.
	pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
	defer pcancel()
	if _, err := n.s.Ping(pctx, addrB.Addr(), 1, []byte("tamanet")); err != nil {
		t.Fatalf("ping from the stack to Linux: %v", err)
	}
	stacktest.CheckQuiet(t, n.quiet())
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
