//go:build linux

package virtio_test

// TSO against Linux itself: one stack on the virtio driver over the device
// model, whose tap is opened with IFF_VNET_HDR, so the virtio-net header
// the driver writes goes to the kernel with each packet and Linux checks
// it, fills the checksums and cuts the 64 KiB segments. Everything stays in
// the namespace the test creates (guest 10.0.0.1, host side 10.0.0.2).

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
	"github.com/tamanet/tamanet/nic/virtio/virtiotest"
	"github.com/tamanet/tamanet/stack"
	"github.com/tamanet/tamanet/stack/stacktest"
)

func TestTapVnetTSO(t *testing.T) {
	ns, plain := netns.ForTest(t, "tamanet-vtso", "nc", "sha256sum", "ping")
	// The tap takes one file: reopen it with the virtio-net header.
	plain.Close()
	f, err := ns.OpenTapVnet()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	pool, model, drv := stacktest.Virtio(t, virtiotest.Options{MAC: stacktest.MACA, Features: virtiotest.Features | virtiotest.TxOffloads})
	s, err := stack.New(drv, stack.Config{Addr: stacktest.AddrA, Gateway: stacktest.AddrB.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	model.SetInterrupt(s.Wake)
	base := pool.InUse()
	model.AttachTapVnet(f)
	s.Start()
	t.Cleanup(func() {
		model.Close()
		s.Close()
		drv.Close()
	})
	if off := drv.Offloads(); !off.TSO4 || !off.TSO6 || !off.TxChecksum {
		t.Fatalf("offloads %+v", off)
	}

	const size = 8 << 20
	stacktest.ServeTCP(t, s, "9", func(c net.Conn) {
		h := sha256.New()
		io.Copy(h, c)
		io.WriteString(c, hex.EncodeToString(h.Sum(nil))+"\n")
	})
	stacktest.ServeTCP(t, s, "19", func(c net.Conn) { io.CopyN(c, stacktest.Stream(5), size) })

	t.Run("ping", func(t *testing.T) {
		out := ns.Run(t, ctx, "ping", "-c", "3", "-i", "0.2", "-W", "2", "10.0.0.1")
		if !strings.Contains(out, " 0% packet loss") {
			t.Fatalf("ping:\n%s", out)
		}
	})
	t.Run("tcp-download-tso", func(t *testing.T) {
		before := model.Stats()
		start := time.Now()
		out := ns.Run(t, ctx, "sh", "-c", "nc -d -w 20 10.0.0.1 19 | sha256sum")
		if want := hex.EncodeToString(stacktest.StreamSum(5, size)); !strings.HasPrefix(out, want) {
			t.Fatalf("Linux received SHA-256 %q, sent %s", out, want)
		}
		st := model.Stats()
		t.Logf("%d MiB stack -> Linux in %v: %d packets, %d of them TSO segments for the kernel to cut",
			size>>20, time.Since(start).Round(time.Millisecond), st.TxFrames-before.TxFrames, st.TxGSO-before.TxGSO)
		if st.TxGSO-before.TxGSO < 10 {
			t.Fatalf("%d TSO segments went to the kernel", st.TxGSO-before.TxGSO)
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
		got := strings.TrimSpace(ns.Run(t, ctx, "sh", "-c", "nc -N -w 20 10.0.0.1 9 < "+file))
		sum := sha256.Sum256(data)
		if want := hex.EncodeToString(sum[:]); got != want {
			t.Fatalf("stack's SHA-256 %q, sent %s", got, want)
		}
	})
	if st := model.Stats(); st.BadHeaders != 0 || st.DeviceErrors != 0 {
		t.Errorf("model stats %+v", st)
	}
	stacktest.CheckQuiet(t, stacktest.Quiet{Name: "stack", Pool: pool, Baseline: base, Wake: s.Wake})
}
