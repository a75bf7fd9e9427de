package virtio_test

// Two gVisor stacks back to back through two virtio-net device models,
// with and without the transmit offloads: large TCP transfers both ways,
// checked by SHA-256; with TSO the segments longer than the MTU that
// crossed the rings as descriptor chains, with CSUM alone the frames the
// endpoint cut from them with their checksums left to the device.

import (
	"net/netip"
	"testing"
	"time"

	"github.com/tamanet/tamanet/nic/virtio/virtiotest"
	"github.com/tamanet/tamanet/stack"
	"github.com/tamanet/tamanet/stack/stacktest"
)

func TestStacksTxOffloads(t *testing.T) {
	for _, tc := range []struct {
		name     string
		features uint64
		tso      bool
		csum     bool
		faults   bool
	}{
		{"tso", virtiotest.Features | virtiotest.TxOffloads, true, true, false},
		{"tso-faults", virtiotest.Features | virtiotest.TxOffloads, true, true, true},
		{"csum-only", virtiotest.Features | virtiotest.FeatureCSUM, false, true, false},
		{"none", virtiotest.Features, false, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			node := func(mac [6]byte, addr, peer, addr6 netip.Prefix) *vnode {
				pool, model, drv := stacktest.Virtio(t, virtiotest.Options{MAC: mac, Features: tc.features})
				s, err := stack.New(drv, stack.Config{Addr: addr, Gateway: peer.Addr(), IPv6: true, Addr6: addr6})
				if err != nil {
					t.Fatal(err)
				}
				model.SetInterrupt(s.Wake)
				// Idle, the pool lends only the receive ring: IPv6
				// may have frames in flight already.
				return &vnode{pool: pool, model: model, drv: drv, s: s, baseline: drv.Info().RxRing}
			}
			a := node(stacktest.MACA, stacktest.AddrA, stacktest.AddrB, stacktest.Addr6A)
			b := node(stacktest.MACB, stacktest.AddrB, stacktest.AddrA, stacktest.Addr6B)
			virtiotest.Pipe(a.model, b.model)
			a.s.Start()
			b.s.Start()
			t.Cleanup(func() {
				a.s.Close()
				b.s.Close()
				a.drv.Close()
				b.drv.Close()
			})
			stacktest.StartServices(t, b.s)
			size := 16 << 20
			if testing.Short() || raceEnabled || tc.faults {
				size = 4 << 20
			}
			if tc.faults {
				// Bad used entries on the rings that carry the chains,
				// and a lossy wire both ways.
				wire := virtiotest.Faults{Drop: 0.005, Duplicate: 0.005, Corrupt: 0.005, Reorder: 0.005, BadLength: 0.01, BadID: 0.02}
				wire.Seed = 11
				a.model.SetFaults(wire)
				wire.Seed = 12
				b.model.SetFaults(wire)
			}
			at := stacktest.AddrB.Addr().String() + ":"
			stacktest.Upload(t, a.s, at+stacktest.PortSHA, size)
			stacktest.Download(t, a.s, at+stacktest.PortGen, size)
			// Over IPv6: host GSO hands down TCPv6 segments.
			stacktest.WaitPing(t, a.s, stacktest.Addr6B.Addr(), 10*time.Second)
			gso := a.model.Stats().TxGSO
			stacktest.Upload(t, a.s, "["+stacktest.Addr6B.Addr().String()+"]:"+stacktest.PortSHA, 4<<20)
			if v6 := a.model.Stats().TxGSO - gso; tc.tso != (v6 > 0) {
				t.Errorf("%d TSO packets over IPv6", v6)
			}
			// UDP, whole and fragmented, over both: with CSUM gVisor
			// leaves every checksum to the link, and the endpoint sums
			// the fragmented datagrams itself (stack/link txcsum.go).
			csum := a.model.Stats().TxCsum
			sizes := []int{1, 100, 1472, 1473, 3000, 8000, 20000, 65000}
			if tc.faults {
				sizes = sizes[:6]
			}
			for _, dst := range []netip.Addr{stacktest.AddrB.Addr(), stacktest.Addr6B.Addr()} {
				stacktest.UDPEcho(t, a.s, stacktest.UDPCheck{Addr: netip.AddrPortFrom(dst, 7).String(), Sizes: sizes,
					Wait: 2 * time.Second, Lossy: tc.faults})
			}
			if n := a.model.Stats().TxCsum - csum; tc.csum != (n > 0) {
				t.Errorf("%d UDP checksums filled by the device", n)
			}
			for _, n := range []*vnode{a, b} {
				st := n.s.Stats().Endpoint
				// (The faults corrupt frames: those fail their checksum.)
				if g := n.s.GVisor().Stats().UDP.ChecksumErrors.Value(); g != 0 && !tc.faults || st.TxFragDropped != 0 {
					t.Errorf("%v: %d UDP checksum errors, %d fragmented datagrams dropped", n.s.Config().Addr, g, st.TxFragDropped)
				}
			}

			for _, n := range []*vnode{a, b} {
				st := n.model.Stats()
				t.Logf("tx: %d frames, %d chains, %d TSO packets cut into %d frames, %d checksums filled, %d bad headers",
					st.TxFrames, st.TxChains, st.TxGSO, st.TxSegments, st.TxCsum, st.BadHeaders)
				if st.BadHeaders != 0 || st.DeviceErrors != 0 || tc.faults && st.BadIDs == 0 {
					t.Errorf("model stats %+v", st)
				}
				if tc.tso {
					// Each side sent size bytes: most of it must have
					// crossed the ring as segments longer than the MTU.
					if st.TxGSO == 0 || st.TxChains == 0 || st.TxSegments < uint64(size/2/1448) {
						t.Errorf("TSO: %d packets, %d chains, %d segments for %d bytes", st.TxGSO, st.TxChains, st.TxSegments, size)
					}
				} else if st.TxGSO != 0 || st.TxChains != 0 {
					t.Errorf("TSO used without TSO: %+v", st)
				}
				// With CSUM the endpoint cuts what the device does not
				// and the device fills every TCP checksum: most of the
				// frames of size bytes. Without it the device fills none.
				if tc.csum && !tc.tso && st.TxCsum < uint64(size/1448) || !tc.csum && st.TxCsum != 0 {
					t.Errorf("%d checksums filled by the device for %d bytes", st.TxCsum, size)
				}
			}
			stacktest.CheckQuiet(t,
				stacktest.Quiet{Name: "A", Pool: a.pool, Baseline: a.baseline, Wake: a.s.Wake},
				stacktest.Quiet{Name: "B", Pool: b.pool, Baseline: b.baseline, Wake: b.s.Wake})
		})
	}
}
