//go:build linux

package stack

// IPv6 against the Linux stack: the virtio driver over a device model on a
// tap in a private namespace (deleted afterwards). Linux finds the stack's
// static and link-local addresses by neighbour discovery, pings them and
// runs a TCP echo through them; the stack pings Linux. Only the tap link's
// addresses are used.

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tamanet/tamanet/internal/netns"
	"github.com/tamanet/tamanet/nic/virtio/virtiotest"
	"github.com/tamanet/tamanet/stack/stacktest"
)

func TestLinuxTapIPv6(t *testing.T) {
	ns, tapFile := netns.ForTest(t, "tamanet-it6", "ping")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := ns.EnableIPv6(ctx, stacktest.Addr6B.String()); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		return ns.Run(t, ctx, args[0], args[1:]...)
	}

	n := newVnode(t, virtiotest.Options{MAC: stacktest.MACA}, Config{Addr: addrA, IPv6: true, Addr6: stacktest.Addr6A})
	n.model.AttachTap(tapFile)
	n.s.Start()
	t.Cleanup(func() { n.close(); n.model.Close() })
	s := n.s
	stacktest.ServeEcho(t, s)

	stacktest.WaitPing(t, s, stacktest.Addr6B.Addr(), 10*time.Second)
	for _, dst := range []string{stacktest.Addr6A.Addr().String(), stacktest.LinkLocal(stacktest.MACA).String() + "%" + ns.Tap} {
		out := run("ping", "-6", "-c", "5", "-i", "0.2", "-W", "2", dst)
		if !strings.Contains(out, " 0% packet loss") {
			t.Fatalf("ping -6 %s from Linux:\n%s", dst, out)
		}
	}
	cmd := ns.Command(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), clientEnv+"=[fd00::10:1]:7")
	cout, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("Linux TCP client over IPv6: %v\n%s", err, cout)
	}
	t.Logf("Linux TCP client over IPv6: %s", bytes.TrimSpace(cout))
	stacktest.CheckQuiet(t, n.quiet())
}
