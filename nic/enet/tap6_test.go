//go:build linux

package enet_test

// One IPv6 stack on the ENET driver and model (group hash filter on),
// attached to a Linux tap inside a private network namespace: Linux finds
// the static and link-local addresses by neighbour discovery (solicitations
// to their solicited-node groups), pings them and runs TCP both ways. All
// traffic stays on the tap link the test creates and deletes.

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tamanet/tamanet/internal/netns"
	"github.com/tamanet/tamanet/stack/stacktest"
)

// udpEcho6 sends argv[2] to UDP port 7 of argv[1] over IPv6 and prints the
// answer, trying up to 5 times.
const udpEcho6 = `import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.settimeout(1)
for _ in range(5):
    s.sendto(sys.argv[2].encode(), (sys.argv[1], 7))
    try:
        print(s.recv(2048).decode()); break
    except socket.timeout:
        pass
`

func TestTapLinuxIPv6(t *testing.T) {
	ns, f := netns.ForTest(t, "tamanet-enet6", "ping", "nc", "python3")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := ns.EnableIPv6(ctx, stacktest.Addr6B.String()); err != nil {
		t.Fatal(err)
	}
	n := newEnode6(t, stacktest.MACA, addrA, stacktest.Addr6A, true)
	n.model.AttachTap(f)
	n.s.Start()
	defer n.model.Close()
	stacktest.ServeEcho(t, n.s)

	// The stack answers once DAD (1 s) is done.
	stacktest.WaitPing(t, n.s, stacktest.Addr6B.Addr(), 10*time.Second)
	for _, dst := range []string{stacktest.Addr6A.Addr().String(), stacktest.LinkLocal(stacktest.MACA).String() + "%" + ns.Tap} {
		out := ns.Run(t, ctx, "ping", "-6", "-c", "5", "-i", "0.2", "-W", "2", dst)
		if !strings.Contains(out, " 0% packet loss") {
			t.Fatalf("ping %s:\n%s", dst, out)
		}
	}
	const msg = "tamanet over IPv6"
	out := ns.Run(t, ctx, "sh", "-c", "echo '"+msg+"' | nc -6 -q 2 -w 5 "+stacktest.Addr6A.Addr().String()+" 7")
	if strings.TrimSpace(out) != msg {
		t.Fatalf("TCP echo over IPv6: %q", out)
	}
	out = ns.Run(t, ctx, "python3", "-c", udpEcho6, stacktest.Addr6A.Addr().String(), msg)
	if strings.TrimSpace(out) != msg {
		t.Fatalf("UDP echo over IPv6: %q", out)
	}
	stacktest.CheckQuiet(t, n.quiet())
}
