//go:build linux

package virtio

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/tamanet/tamanet/internal/netns"
	"github.com/tamanet/tamanet/nic/virtio/virtiotest"
)

// TestTapARP runs the driver on a device model backed by a tap in a private
// namespace: an ARP request for the namespace's 10.0.0.2 goes out through
// the tx ring, Linux's reply comes back through the rx ring.
func TestTapARP(t *testing.T) {
	_, f := netns.ForTest(t, "tamanet-virtio-tap")
	s := mustSide(t, virtiotest.Options{MAC: [6]byte{2, 0, 0, 0, 0, 1}}, Config{})
	s.dev.AttachTap(f)
	defer s.dev.Close()
	wake := make(chan struct{}, 1)
	s.dev.SetInterrupt(func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	})
	base := s.pool.InUse()

	mac := s.drv.Info().MAC
	deadline := time.Now().Add(5 * time.Second)
	replied := false
	for !replied && time.Now().Before(deadline) {
		b := s.pool.Get()
		req, _ := b.Append(42)
		copy(req[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
		copy(req[6:12], mac[:])
		binary.BigEndian.PutUint16(req[12:], 0x0806)
		binary.BigEndian.PutUint16(req[14:], 1)
		binary.BigEndian.PutUint16(req[16:], 0x0800)
		req[18], req[19] = 6, 4
		binary.BigEndian.PutUint16(req[20:], 1)
		copy(req[22:28], mac[:])
		copy(req[28:32], []byte{10, 0, 0, 1})
		copy(req[38:42], []byte{10, 0, 0, 2})
		if err := s.drv.Transmit(b); err != nil {
			t.Fatal(err)
		}
		s.drv.TxKick()
		s.drv.Reclaim()
		wait := time.After(300 * time.Millisecond)
	poll:
		for {
			for rb := s.drv.Receive(); rb != nil; rb = s.drv.Receive() {
				p := rb.Bytes()
				if len(p) >= 42 && bytes.Equal(p[0:6], mac[:]) && binary.BigEndian.Uint16(p[12:]) == 0x0806 &&
					binary.BigEndian.Uint16(p[20:]) == 2 && bytes.Equal(p[28:32], []byte{10, 0, 0, 2}) {
					replied = true
				}
				s.pool.Put(rb)
			}
			s.drv.Refill()
			s.drv.RxKick()
			if replied {
				break
			}
			select {
			case <-wake:
			case <-wait:
				break poll
			}
		}
	}
	if !replied {
		t.Fatal("no ARP reply from Linux through the tap")
	}
	s.drv.Reclaim()
	if s.pool.InUse() != base {
		t.Fatalf("pool in use %d, baseline %d", s.pool.InUse(), base)
	}
	if st := s.dev.Stats(); st.TxFrames == 0 || st.RxFrames == 0 {
		t.Fatalf("model stats %+v", st)
	}
}
