//go:build linux

package enet_test

// One stack on the ENET driver and model, attached to a Linux tap inside a
// private network namespace, talking to the Linux stack: ping and TCP both
// ways, checked by SHA-256. All traffic stays in the namespace the test
// creates (guest 10.0.0.1, host side 10.0.0.2) and deletes.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tamanet/tamanet/internal/netns"
	"github.com/tamanet/tamanet/nic/enet"
	"github.com/tamanet/tamanet/stack"
	"github.com/tamanet/tamanet/stack/stacktest"
)

func TestTapLinux(t *testing.T) {
	ns, f := netns.ForTest(t, "tamanet-enet", "ping", "nc", "sha256sum")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	n := newEnode(t, stacktest.MACA, stack.Config{Addr: addrA, Gateway: addrB.Addr()}, enet.Config{RxRing: 128, TxRing: 128}, nil)
	n.model.AttachTap(f)
	n.s.Start()
	defer n.model.Close()

	// sha: read to EOF, answer the hex SHA-256. gen: send a seeded stream.
	const size = 4 << 20
	stacktest.ServeTCP(t, n.s, "9", func(c net.Conn) {
		h := sha256.New()
		io.Copy(h, c)
		io.WriteString(c, hex.EncodeToString(h.Sum(nil))+"\n")
	})
	stacktest.ServeTCP(t, n.s, "19", func(c net.Conn) { io.CopyN(c, stacktest.Stream(5), size) })

	t.Run("ping", func(t *testing.T) {
		out := ns.Run(t, ctx, "ping", "-c", "5", "-i", "0.2", "-W", "2", "10.0.0.1")
		if !strings.Contains(out, " 0% packet loss") {
			t.Fatalf("ping:\n%s", out)
		}
	})
	t.Run("tcp-upload", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "up")
		data, err := io.ReadAll(io.LimitReader(stacktest.Stream(6), size))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, data, 0o600); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		got := strings.TrimSpace(ns.Run(t, ctx, "sh", "-c", "nc -N -w 20 10.0.0.1 9 < "+file))
		sum := sha256.Sum256(data)
		if want := hex.EncodeToString(sum[:]); got != want {
			t.Fatalf("stack's SHA-256 %q, sent %s", got, want)
		}
		t.Logf("%d MiB Linux -> stack in %v", size>>20, time.Since(start).Round(time.Millisecond))
	})
	t.Run("tcp-download", func(t *testing.T) {
		start := time.Now()
		out := ns.Run(t, ctx, "sh", "-c", "nc -d -w 20 10.0.0.1 19 | sha256sum")
		if want := hex.EncodeToString(stacktest.StreamSum(5, size)); !strings.HasPrefix(out, want) {
			t.Fatalf("Linux received SHA-256 %q, sent %s", out, want)
		}
		t.Logf("%d MiB stack -> Linux in %v", size>>20, time.Since(start).Round(time.Millisecond))
	})
	ms := n.model.Stats()
	if ms.DeviceErrors != 0 || ms.BusErrors != 0 {
		t.Errorf("device errors: %+v", ms)
	}
	stacktest.CheckQuiet(t, n.quiet())
}
