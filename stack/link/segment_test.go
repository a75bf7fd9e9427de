package link

import (
	"bytes"
	"testing"

	"github.com/tamanet/tamanet/nic"
	"github.com/tamanet/tamanet/nic/enet"
	"github.com/tamanet/tamanet/nic/enet/enettest"
	"github.com/tamanet/tamanet/nic/nictest"
	"github.com/tamanet/tamanet/nic/virtio/virtiotest"
	"github.com/tamanet/tamanet/stack/stacktest"

	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// The endpoint's own segmentation (segment.go), over the two devices that
// fill checksums without cutting segments: virtio-net with CSUM alone, and
// the ENET's checksum accelerator.

// cutRig is an endpoint over a device that fills checksums but has no TSO,
// with the frames it sends kept, and a way to stall and restart it.
type cutRig struct {
	*drvRig
	frames         *[][]byte
	stall, unstall func()
}

// newCutRigs returns the two rigs with rings of ring slots; keep says
// whether frames are kept (which allocates) or only counted.
func newCutRigs(t *testing.T, ring int, keep bool) map[string]cutRig {
	rigs := map[string]cutRig{}
	{
		pool, model, drv := stacktest.Virtio(t, virtiotest.Options{MAC: ourMAC, QueueNumMax: ring, Features: virtiotest.Features | virtiotest.FeatureCSUM})
		r := newDrvRig(t, pool, model, drv)
		var frames [][]byte
		if keep {
			model.SetOutput(func(f []byte) { frames = append(frames, bytes.Clone(f)) })
		}
		rigs["virtio"] = cutRig{r, &frames, model.Stall, model.Unstall}
	}
	{
		pool, model, drv := stacktest.ENET(t, enettest.Options{MAC: ourMAC, TxAlign: enet.DefaultTxAlign}, enet.Config{TxRing: ring})
		t.Cleanup(func() { drv.Close() })
		r := newDrvRig(t, pool, model, drv)
		var frames [][]byte
		if keep {
			model.SetOutput(func(f []byte) { frames = append(frames, bytes.Clone(f)) })
		}
		rigs["enet"] = cutRig{r, &frames, model.Stall, model.Unstall}
	}
	return rigs
}

// TestCutResumesAfterFullRing: a 60000-byte segment posted into a ring of
// 16 slots while the device completes nothing goes out as 16 frames, and
// the rest is held, not dropped. Poll steps, once the device works again,
// post the rest from where the ring stopped it: 42 valid frames, none
// repeated or missing, in order, after which a second segment leaves
// whole. Every buffer is back in the pool.
func TestCutResumesAfterFullRing(t *testing.T) {
	for name, r := range newCutRigs(t, 16, true) {
		t.Run(name, func(t *testing.T) {
			if r.ep.SupportedGSO() != stack.HostGSOSupported {
				t.Fatalf("SupportedGSO %v over a device that fills checksums", r.ep.SupportedGSO())
			}
			base := r.pool.InUse()
			const payload, mss = 60000, 1448
			pkt := gsoPacket(r.ep, payload, mss)
			defer pkt.DecRef()
			r.stall()
			if first, err := r.ep.Post(pkt); err != nil || !first {
				t.Fatalf("Post: %v, %v", first, err)
			}
			var s Stats
			r.ep.Stats(&s)
			if s.TxHeld != 1 || s.TxCut != 16 || s.Tx.Drops[nic.RingFull] != 0 {
				t.Fatalf("stalled ring of 16: held %d, cut %d, ring_full drops %d; want 1, 16, 0", s.TxHeld, s.TxCut, s.Tx.Drops[nic.RingFull])
			}
			r.unstall()
			for range 10 {
				r.ep.Poll(64)
			}
			checkCut(t, *r.frames, pkt, mss)
			*r.frames = nil
			if _, err := r.ep.Post(pkt); err != nil {
				t.Fatal(err)
			}
			for range 10 {
				r.ep.Poll(64)
			}
			checkCut(t, *r.frames, pkt, mss)
			r.ep.Stats(&s)
			if s.TxCut != 84 || s.Tx.Packets != 84 || s.Tx.Drops[nic.RingFull] != 0 {
				t.Fatalf("cut %d, sent %d, ring_full drops %d; want 84, 84, 0", s.TxCut, s.Tx.Packets, s.Tx.Drops[nic.RingFull])
			}
			nictest.CheckBaseline(t, r.pool, base, "after the cut segments")
		})
	}
}

// TestCutRefusesBadHeaders: a GSO packet whose network header the
// endpoint cannot rewrite (an IPv4 fragment, a protocol other than TCP)
// or whose MSS does not fit a frame is dropped and counted, and no
// buffer is lost.
func TestCutRefusesBadHeaders(t *testing.T) {
	r := newCutRigs(t, 64, true)["virtio"]
	base := r.pool.InUse()
	for _, tc := range []struct {
		name  string
		patch func(*stack.PacketBuffer)
		cause nic.Cause
	}{
		{"fragment", func(p *stack.PacketBuffer) {
			header.IPv4(p.NetworkHeader().Slice()).SetFlagsFragmentOffset(header.IPv4FlagMoreFragments, 0)
		}, nic.Malformed},
		{"udp", func(p *stack.PacketBuffer) { p.NetworkHeader().Slice()[9] = uint8(header.UDPProtocolNumber) }, nic.Malformed},
		{"mss", func(p *stack.PacketBuffer) { p.GSOOptions.MSS = 1600 }, nic.Oversize},
		{"zero mss", func(p *stack.PacketBuffer) { p.GSOOptions.MSS = 0 }, nic.Oversize},
	} {
		pkt := gsoPacket(r.ep, 20000, 1448)
		tc.patch(pkt)
		var s0, s1 Stats
		r.ep.Stats(&s0)
		var l stack.PacketBufferList
		l.PushBack(pkt)
		if n, err := r.ep.WritePackets(l); n != 0 || err == nil {
			t.Errorf("%s: %d sent, %v", tc.name, n, err)
		}
		pkt.DecRef()
		r.ep.Stats(&s1)
		if s1.Tx.Drops[tc.cause] != s0.Tx.Drops[tc.cause]+1 || s1.TxCut != s0.TxCut {
			t.Errorf("%s: drops %v, cut %d", tc.name, s1.Tx.Drops, s1.TxCut)
		}
	}
	r.ep.Reclaim()
	if len(*r.frames) != 0 {
		t.Fatalf("%d frames out", len(*r.frames))
	}
	nictest.CheckBaseline(t, r.pool, base, "after the refusals")
}

// TestCutAllocs: cutting 64 KiB segments and sending single frames,
// through the driver and its model and back with Reclaim, allocates
// nothing over 2000 packets, on both devices.
func TestCutAllocs(t *testing.T) {
	for name, r := range newCutRigs(t, 64, false) {
		t.Run(name, func(t *testing.T) {
			n := 0
			big, small := gsoPacket(r.ep, 65000, 1448), gsoPacket(r.ep, 500, 1448)
			defer big.DecRef()
			defer small.DecRef()
			var lb, ls stack.PacketBufferList
			lb.PushBack(big)
			ls.PushBack(small)
			i, written := 0, 0
			step := func() {
				l := lb
				if i%2 == 1 {
					l = ls
				}
				i++
				n, _ = r.ep.WritePackets(l)
				written += n
				r.ep.Reclaim()
			}
			for range allocWarmup {
				step()
			}
			var s0 Stats
			r.ep.Stats(&s0)
			base := r.pool.InUse()
			i, written = 0, 0
			nictest.NoAllocs(t, allocRuns, name+": endpoint cut -> driver -> model -> reclaim", step)
			var s1 Stats
			r.ep.Stats(&s1)
			if want := uint64((allocRuns+2)/2*45 + (allocRuns+1)/2); written != allocRuns+1 || s1.Tx.Packets-s0.Tx.Packets != want || r.pool.InUse() != base {
				t.Fatalf("written %d of %d, %d frames sent (want %d), pool %d (baseline %d)", written, allocRuns+1, s1.Tx.Packets-s0.Tx.Packets, want, r.pool.InUse(), base)
			}
		})
	}
}
