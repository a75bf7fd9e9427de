//go:build linux

package virtio

import (
	"bytes"
	"encoding/binary"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/tamanet/tamanet/nic"
	"github.com/tamanet/tamanet/nic/nictest"
	"github.com/tamanet/tamanet/nic/virtio/virtiotest"
)

// vnetSide is a side whose model is attached with AttachTapVnet to one end
// of a SOCK_SEQPACKET socket pair standing in for a tap (one read, one
// packet): the other end, returned, writes what the kernel would. No root
// is needed, and TUNSETOFFLOAD fails, counted in TapOffloadErrors.
func vnetSide(t *testing.T, features uint64) (*side, *os.File) {
	t.Helper()
	s := mustSide(t, virtiotest.Options{Features: features, MaxPacket: virtiotest.MaxGSOPacket, Backlog: 4}, Config{})
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		// Non-blocking, so the runtime poller serves Read and Close
		// ends it.
		if err := syscall.SetNonblock(fd, true); err != nil {
			t.Fatal(err)
		}
	}
	peer := os.NewFile(uintptr(fds[1]), "vnet-peer")
	s.dev.AttachTapVnet(os.NewFile(uintptr(fds[0]), "vnet-dev"))
	t.Cleanup(func() {
		s.dev.Close()
		peer.Close()
	})
	return s, peer
}

// vnetHdr is a virtio-net header as the kernel writes it: num_buffers
// left as it was in the reader's buffer (here 0xffff), for the device to
// set.
func vnetHdr(flags, gso byte, hdrLen, gsoSize, start, off uint16) []byte {
	h := make([]byte, HeaderSize)
	h[hdrFlags], h[hdrGSOType] = flags, gso
	binary.LittleEndian.PutUint16(h[hdrHdrLen:], hdrLen)
	binary.LittleEndian.PutUint16(h[hdrGSOSize:], gsoSize)
	binary.LittleEndian.PutUint16(h[hdrCsumStart:], start)
	binary.LittleEndian.PutUint16(h[hdrCsumOffset:], off)
	binary.LittleEndian.PutUint16(h[hdrNumBuffers:], 0xffff)
	return h
}

// TestVnetRxHeaders: after AttachTapVnet the model writes the kernel's
// header with its frame, num_buffers its own, when the negotiated features
// allow the header; otherwise it counts it in RxBadHeaders and drops the
// frame, and the driver sees nothing. The tap offloads are set on attach
// and on reset (here they fail: no tap).
func TestVnetRxHeaders(t *testing.T) {
	type tc struct {
		name string
		hdr  []byte
		f    []byte
		ok   bool
	}
	csum4 := vnetHdr(HdrFNeedsCsum, 0, 0, 0, 34, 16)
	valid := vnetHdr(HdrFDataValid, 0, 0, 0, 0, 0)
	tso4 := vnetHdr(HdrFNeedsCsum, GSOTCPv4, 54, 1448, 34, 16)
	tso6 := vnetHdr(HdrFNeedsCsum, GSOTCPv6, 74, 1428, 54, 16)
	for _, c := range []struct {
		name     string
		features uint64
		cases    []tc
	}{
		{"offloads", virtiotest.Features | virtiotest.RxOffloads, []tc{
			{"plain", vnetHdr(0, 0, 0, 0, 0, 0), tcpFrame(false, 60, 1), true},
			{"data valid", valid, tcpFrame(false, 1514, 2), true},
			{"needs csum", csum4, tcpFrame(false, 1514, 3), true},
			{"tso4", tso4, tcpFrame(false, 30000, 4), true},
			{"tso6", tso6, tcpFrame(true, MaxGSOPacket, 5), true},
			{"rsc_info", vnetHdr(HdrFRSCInfo, 0, 0, 0, 0, 0), tcpFrame(false, 60, 6), false},
			{"gso udp", vnetHdr(HdrFNeedsCsum, GSOUDP, 42, 1000, 34, 6), tcpFrame(false, 3000, 7), false},
			{"ecn not negotiated", vnetHdr(HdrFNeedsCsum, GSOTCPv4|GSOECN, 54, 1448, 34, 16), tcpFrame(false, 3000, 8), false},
			{"ecn alone", vnetHdr(0, GSOECN, 0, 0, 0, 0), tcpFrame(false, 60, 9), false},
			{"gso without needs_csum", vnetHdr(0, GSOTCPv4, 54, 1448, 0, 0), tcpFrame(false, 3000, 10), false},
			{"gso without size", vnetHdr(HdrFNeedsCsum, GSOTCPv4, 54, 0, 34, 16), tcpFrame(false, 3000, 11), false},
			{"csum beyond the frame", vnetHdr(HdrFNeedsCsum, 0, 0, 0, 50, 16), tcpFrame(false, 60, 12), false},
		}},
		{"ecn", virtiotest.Features | virtiotest.RxOffloads | virtiotest.FeatureGuestECN, []tc{
			{"tso4 ecn", vnetHdr(HdrFNeedsCsum, GSOTCPv4|GSOECN, 54, 1448, 34, 16), tcpFrame(false, 3000, 1), true},
			{"ecn alone", vnetHdr(0, GSOECN, 0, 0, 0, 0), tcpFrame(false, 60, 2), false},
		}},
		{"none", virtiotest.Features, []tc{
			{"plain", vnetHdr(0, 0, 0, 0, 0, 0), tcpFrame(false, 1514, 1), true},
			{"data valid", valid, tcpFrame(false, 1514, 2), false},
			{"needs csum", csum4, tcpFrame(false, 1514, 3), false},
			{"tso4", tso4, tcpFrame(false, 1514, 4), false},
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, peer := vnetSide(t, c.features)
			if st := s.dev.Stats(); st.TapOffloadErrors != 1 || st.TapOffloads != 0 {
				t.Fatalf("attach: tap offloads %#x, %d errors; want one failed setting", st.TapOffloads, st.TapOffloadErrors)
			}
			base := s.pool.InUse()
			for _, k := range c.cases {
				before := s.dev.Stats()
				s.dev.Deliver(append(append([]byte(nil), k.hdr...), k.f...))
				got, n, meta := recvPacket(t, s)
				refill(s)
				st := s.dev.Stats()
				if !k.ok {
					if n != 0 || st.RxBadHeaders != before.RxBadHeaders+1 || st.RxFrames != before.RxFrames {
						t.Fatalf("%s: received %d buffers, bad headers %d -> %d", k.name, n, before.RxBadHeaders, st.RxBadHeaders)
					}
					continue
				}
				if !bytes.Equal(got, k.f) || st.RxBadHeaders != before.RxBadHeaders {
					t.Fatalf("%s: received %d of %d bytes in %d buffers, bad headers %d", k.name, len(got), len(k.f), n, st.RxBadHeaders)
				}
				flags, gso := k.hdr[hdrFlags], k.hdr[hdrGSOType]
				wantGSO := map[byte]uint8{0: nic.GSONone, GSOTCPv4: nic.GSOTCPv4, GSOTCPv6: nic.GSOTCPv6}[gso&^GSOECN]
				if meta.Verified != (flags != 0) || meta.NeedsCsum != (flags&HdrFNeedsCsum != 0) || meta.GSO != wantGSO ||
					meta.NeedsCsum && (meta.CsumStart != binary.LittleEndian.Uint16(k.hdr[hdrCsumStart:]) || meta.CsumOffset != 16) {
					t.Fatalf("%s: meta %+v for header % x", k.name, meta, k.hdr)
				}
				if gso != 0 && (st.Joined != before.Joined+1 || st.JoinedBytes != before.JoinedBytes+uint64(len(k.f))) {
					t.Fatalf("%s: joined %d (%d bytes) -> %d (%d bytes)", k.name, before.Joined, before.JoinedBytes, st.Joined, st.JoinedBytes)
				}
			}

			// Through the reader, as from a tap: the first case.
			before := s.dev.Stats()
			k := c.cases[0]
			if _, err := peer.Write(append(append([]byte(nil), k.hdr...), k.f...)); err != nil {
				t.Fatal(err)
			}
			var got []byte
			for deadline := time.Now().Add(5 * time.Second); got == nil && time.Now().Before(deadline); {
				got, _, _ = recvPacket(t, s)
				refill(s)
				if got == nil {
					time.Sleep(time.Millisecond)
				}
			}
			if !bytes.Equal(got, k.f) || s.dev.Stats().RxFrames != before.RxFrames+1 {
				t.Fatalf("from the socket: received %d of %d bytes", len(got), len(k.f))
			}
			nictest.CheckBaseline(t, s.pool, base, "after the frames")

			// A reset sets the tap's offloads again (to 0).
			s.drv.Close()
			if st := s.dev.Stats(); st.TapOffloadErrors != 2 {
				t.Fatalf("reset: %d failed offload settings, want 2", st.TapOffloadErrors)
			}
		})
	}
}
