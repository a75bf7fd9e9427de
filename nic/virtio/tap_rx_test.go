//go:build linux

package virtio_test

// Receive offloads against Linux itself: one stack on the virtio driver
// over the device model, whose tap is opened with IFF_VNET_HDR and given
// the receive offloads the driver negotiated, so the kernel hands over
// 64 KiB TCP packets with partial checksums, as to a QEMU guest.
// Everything stays in the namespace the test creates (guest 10.0.0.1, host
// side 10.0.0.2).

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tamanet/tamanet/internal/netns"
	"github.com/tamanet/tamanet/nic"
	"github.com/tamanet/tamanet/nic/virtio"
	"github.com/tamanet/tamanet/nic/virtio/virtiotest"
	"github.com/tamanet/tamanet/stack"
	"github.com/tamanet/tamanet/stack/stacktest"
)

// TestTapVnetRx: Linux sends 8 MiB over TCP to the stack, which checks
// its SHA-256. With the receive offloads negotiated most of the bytes
// must arrive as GSO packets; without them the kernel must hand over only
// plain frames (any flags or GSO type would be counted in RxBadHeaders).
func TestTapVnetRx(t *testing.T) {
	t.Run("offloads", func(t *testing.T) {
		tapVnetRx(t, virtiotest.Features|virtiotest.TxOffloads|virtiotest.RxOffloads,
			netns.TunFCsum|netns.TunFTSO4|netns.TunFTSO6)
	})
	t.Run("plain", func(t *testing.T) { tapVnetRx(t, virtiotest.Features, 0) })
}

func tapVnetRx(t *testing.T, features, wantTap uint64) {
	ns, plain := netns.ForTest(t, "tamanet-vrx", "nc")
	// The tap takes one file: reopen it with the virtio-net header.
	plain.Close()
	f, err := ns.OpenTapVnet()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// Each backlog slot holds a 64 KiB packet: keep the backlog short.
	pool, model, drv := stacktest.Virtio(t, virtiotest.Options{MAC: stacktest.MACA, Features: features,
		MaxPacket: virtiotest.MaxGSOPacket, Backlog: 64})
	s, err := stack.New(drv, stack.Config{Addr: stacktest.AddrA, Gateway: stacktest.AddrB.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	model.SetInterrupt(s.Wake)
	base := pool.InUse()
	model.AttachTapVnet(f)
	s.Start()
	var stop sync.Once
	closeDriver := func() {
		stop.Do(func() {
			s.Close()
			drv.Close()
		})
	}
	t.Cleanup(func() {
		model.Close()
		closeDriver()
	})
	gso := wantTap != 0
	if off := drv.Offloads(); off.RxChecksum != gso || (off.MaxRxPacket == virtio.MaxGSOPacket) != gso {
		t.Fatalf("offloads %+v", off)
	}
	if st := model.Stats(); st.TapOffloads != wantTap || st.TapOffloadErrors != 0 {
		t.Fatalf("tap offloads %#x (%d errors), want %#x", st.TapOffloads, st.TapOffloadErrors, wantTap)
	}

	const size = 8 << 20
	sums := make(chan [sha256.Size]byte, 1)
	stacktest.ServeTCP(t, s, "9", func(c net.Conn) {
		h := sha256.New()
		io.Copy(h, c)
		var sum [sha256.Size]byte
		h.Sum(sum[:0])
		select {
		case sums <- sum:
		default:
		}
		io.WriteString(c, hex.EncodeToString(sum[:])+"\n")
	})
	data, err := io.ReadAll(io.LimitReader(stacktest.Stream(7), size))
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "up")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(data)

	before := model.Stats()
	start := time.Now()
	out := strings.TrimSpace(ns.Run(t, ctx, "sh", "-c", "nc -N -w 20 10.0.0.1 9 < "+file))
	select {
	case got := <-sums:
		if got != want {
			t.Fatalf("stack's SHA-256 %x, Linux sent %x", got, want)
		}
	case <-ctx.Done():
		t.Fatal("the stack's server did not finish")
	}
	if out != hex.EncodeToString(want[:]) {
		t.Fatalf("nc printed %q, want the SHA-256 %x", out, want)
	}
	st := model.Stats()
	frames, bytes := st.RxFrames-before.RxFrames, st.RxBytes-before.RxBytes
	joined, joinedBytes := st.Joined-before.Joined, st.JoinedBytes-before.JoinedBytes
	csum := st.RxCsum - before.RxCsum
	t.Logf("%d MiB Linux -> stack in %v: %d frames, %d bytes; %d GSO packets holding %d bytes; %d with NEEDS_CSUM/DATA_VALID; %d backlog drops",
		size>>20, time.Since(start).Round(time.Millisecond), frames, bytes, joined, joinedBytes, csum, st.BacklogDrops)
	if gso {
		if joined == 0 || joinedBytes < size/2 {
			t.Errorf("%d GSO packets from the kernel carried %d of %d bytes: want most", joined, joinedBytes, size)
		}
		if csum == 0 {
			t.Errorf("no frame with NEEDS_CSUM or DATA_VALID")
		}
	} else if joined != 0 || csum != 0 {
		t.Errorf("no receive offloads, but %d GSO packets and %d checksum flags written", joined, csum)
	}
	if st.RxBadHeaders != 0 || st.BadHeaders != 0 || st.DeviceErrors != 0 || st.TapOffloadErrors != 0 {
		t.Errorf("model stats %+v", st)
	}
	ss := s.Stats()
	if m := ss.NIC.Rx.Drops[nic.Malformed] + ss.Endpoint.Rx.Drops[nic.Malformed]; m != 0 {
		t.Errorf("%d packets dropped as malformed (driver %v, endpoint %v)", m, ss.NIC.Rx.Drops, ss.Endpoint.Rx.Drops)
	}
	stacktest.CheckQuiet(t, stacktest.Quiet{Name: "stack", Pool: pool, Baseline: base, Wake: s.Wake})

	// Closing the driver resets the device, which takes the offloads
	// back from the tap.
	closeDriver()
	if st := model.Stats(); st.TapOffloads != 0 || st.TapOffloadErrors != 0 {
		t.Errorf("after reset: tap offloads %#x (%d errors), want 0", st.TapOffloads, st.TapOffloadErrors)
	}
}
