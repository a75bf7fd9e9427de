package virtio

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/tamanet/tamanet/alloc"
	"github.com/tamanet/tamanet/nic"
	"github.com/tamanet/tamanet/nic/nictest"
	"github.com/tamanet/tamanet/nic/virtio/virtiotest"
)

// side is one driver on one device model with its own DMA memory and pool.
type side struct {
	drv  *Driver
	dev  *virtiotest.Device
	pool *alloc.Pool
}

func newSide(t testing.TB, opt virtiotest.Options, cfg Config) (*side, error) {
	t.Helper()
	arena := alloc.NewArena(make([]byte, 4<<20))
	pool, err := arena.Pool(alloc.Config{Count: 1024})
	if err != nil {
		t.Fatal(err)
	}
	dev := virtiotest.New(arena.Memory(), opt)
	drv, err := New(dev, arena, pool, cfg)
	if err != nil {
		return nil, err
	}
	return &side{drv: drv, dev: dev, pool: pool}, nil
}

func mustSide(t testing.TB, opt virtiotest.Options, cfg Config) *side {
	t.Helper()
	s, err := newSide(t, opt, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func pair(t testing.TB, cfg Config) (a, b *side) {
	t.Helper()
	a = mustSide(t, virtiotest.Options{MAC: [6]byte{2, 0, 0, 0, 0, 0xa}}, cfg)
	b = mustSide(t, virtiotest.Options{MAC: [6]byte{2, 0, 0, 0, 0, 0xb}}, cfg)
	virtiotest.Pipe(a.dev, b.dev)
	return a, b
}

// atBaseline fails t unless a's and b's pools hold baseA and baseB buffers:
// the posted receive rings, nothing leaked.
func atBaseline(t testing.TB, a, b *side, baseA, baseB int) {
	t.Helper()
	nictest.CheckBaseline(t, a.pool, baseA, "side a")
	nictest.CheckBaseline(t, b.pool, baseB, "side b")
}

// closeEmpty closes both drivers and fails t unless every buffer is back in
// the pools.
func closeEmpty(t testing.TB, a, b *side) {
	t.Helper()
	a.drv.Close()
	b.drv.Close()
	nictest.CheckEmpty(t, a.pool, "side a after Close")
	nictest.CheckEmpty(t, b.pool, "side b after Close")
}

// frame fills b's body with an Ethernet frame of n bytes carrying seq.
func fillFrame(t testing.TB, b *alloc.Buffer, n int, seq uint32) {
	body, err := b.Append(n)
	if err != nil {
		t.Fatal(err)
	}
	for i := range body {
		body[i] = byte(i*7 + int(seq))
	}
	copy(body[0:6], []byte{2, 0, 0, 0, 0, 0xb})
	copy(body[6:12], []byte{2, 0, 0, 0, 0, 0xa})
	binary.BigEndian.PutUint16(body[12:], 0x88b5) // IEEE 802 local experimental
	if n >= 18 {
		binary.BigEndian.PutUint32(body[14:], seq)
	}
}

// send transmits one frame of n bytes from s, reclaiming when the ring is full.
func send(t testing.TB, s *side, n int, seq uint32) {
	t.Helper()
	b := s.pool.Get()
	if b == nil {
		t.Fatal("pool empty")
	}
	fillFrame(t, b, n, seq)
	for {
		err := s.drv.Transmit(b)
		if err == nil {
			return
		}
		if !errors.Is(err, nic.ErrRingFull) {
			t.Fatal(err)
		}
		s.drv.TxKick()
		if s.drv.Reclaim() == 0 {
			t.Fatal("tx ring full and nothing to reclaim")
		}
	}
}

// recvAll drains s's rx ring, calling fn on every frame, then refills.
func recvAll(s *side, fn func(*alloc.Buffer)) int {
	n := 0
	for {
		b := s.drv.Receive()
		if b == nil {
			break
		}
		if fn != nil {
			fn(b)
		}
		s.pool.Put(b)
		n++
	}
	s.drv.Refill()
	s.drv.RxKick()
	return n
}

// TestMACPrecedence: a configured address wins over the device's; without
// one the device's is used, and without that the default.
func TestMACPrecedence(t *testing.T) {
	dev := [6]byte{0x52, 0x54, 0, 0x12, 0x34, 0x56}
	for _, tc := range []struct {
		name      string
		features  uint64
		cfg, want [6]byte
	}{
		{"configured over device", virtiotest.Features, [6]byte{2, 0, 0, 0, 0, 7}, [6]byte{2, 0, 0, 0, 0, 7}},
		{"device", virtiotest.Features, [6]byte{}, dev},
		{"configured, device offers none", virtiotest.Features &^ FeatureMAC, [6]byte{2, 0, 0, 0, 0, 7}, [6]byte{2, 0, 0, 0, 0, 7}},
		{"default", virtiotest.Features &^ FeatureMAC, [6]byte{}, [6]byte{2, 0, 0, 0, 0, 1}},
	} {
		s := mustSide(t, virtiotest.Options{MAC: dev, Features: tc.features}, Config{MAC: tc.cfg})
		if got := s.drv.Info().MAC; got != tc.want {
			t.Errorf("%s: MAC %x, want %x", tc.name, got, tc.want)
		}
	}
	if _, err := newSide(t, virtiotest.Options{MAC: dev}, Config{MAC: [6]byte{1, 0, 0, 0, 0, 1}}); err == nil {
		t.Error("a configured group address was accepted")
	}
}

func TestInit(t *testing.T) {
	s := mustSide(t, virtiotest.Options{MAC: [6]byte{2, 1, 2, 3, 4, 5}, MTU: 1400}, Config{RxRing: 128})
	want := uint64(FeatureVersion1 | FeatureMAC | FeatureStatus | FeatureMTU | FeatureEventIdx)
	if f := s.drv.Features(); f != want {
		t.Fatalf("features %#x, want %#x", f, want)
	}
	info := s.drv.Info()
	if info.MAC != [6]byte{2, 1, 2, 3, 4, 5} || info.MTU != 1400 || info.RxRing != 128 || info.TxRing != 256 || info.Headroom != HeaderSize {
		t.Fatalf("info %+v", info)
	}
	if !s.drv.LinkUp() {
		t.Fatal("link down")
	}
	s.dev.SetLink(false)
	if s.drv.LinkUp() {
		t.Fatal("link still up after SetLink(false)")
	}
	// The rx ring was filled at init, and the device was told.
	if s.pool.InUse() != 128 {
		t.Fatalf("pool in use %d after init, want 128", s.pool.InUse())
	}
	if st := s.dev.Stats(); st.Notifies[0] != 1 {
		t.Fatalf("rx notifies at init %d, want 1", st.Notifies[0])
	}
	s.drv.Close()
	if s.pool.InUse() != 0 {
		t.Fatalf("pool in use %d after Close", s.pool.InUse())
	}
}

func TestInitErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		opt  virtiotest.Options
		err  error
	}{
		{"magic", virtiotest.Options{Magic: 0x12345678}, ErrMagic},
		{"version", virtiotest.Options{Version: 1}, ErrVersion},
		{"device id", virtiotest.Options{DeviceID: 2}, ErrDevice},
		{"no VERSION_1", virtiotest.Options{Features: 1 << 5}, ErrFeatures},
		{"no queues", virtiotest.Options{QueueNumMax: -1}, ErrQueue},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := newSide(t, c.opt, Config{})
			if !errors.Is(err, c.err) {
				t.Fatalf("err %v, want %v", err, c.err)
			}
		})
	}
	if _, err := newSide(t, virtiotest.Options{}, Config{RxRing: 100}); !errors.Is(err, ErrConfig) {
		t.Fatalf("ring size 100: err %v", err)
	}
}

func TestQueueNumMaxCaps(t *testing.T) {
	s := mustSide(t, virtiotest.Options{QueueNumMax: 64}, Config{})
	if i := s.drv.Info(); i.RxRing != 64 || i.TxRing != 64 {
		t.Fatalf("rings %d/%d, want 64/64", i.RxRing, i.TxRing)
	}
}

// TestDeviceRejectsForeignMemory gives the driver rings outside the memory
// the model can see: the model must refuse them (counted), not panic, and
// the driver must fail cleanly.
func TestDeviceRejectsForeignMemory(t *testing.T) {
	arena := alloc.NewArena(make([]byte, 4<<20))
	pool, err := arena.Pool(alloc.Config{Count: 512})
	if err != nil {
		t.Fatal(err)
	}
	dev := virtiotest.New(make([]byte, 1<<20), virtiotest.Options{})
	if _, err := New(dev, arena, pool, Config{}); err == nil {
		t.Fatal("New succeeded with rings outside the device's memory")
	}
	if dev.Stats().DeviceErrors == 0 {
		t.Fatal("device did not count the bad ring addresses")
	}
}

func TestPipeByteExact(t *testing.T) {
	a, b := pair(t, Config{})
	baseA, baseB := a.pool.InUse(), b.pool.InUse()
	for _, dir := range []struct{ from, to *side }{{a, b}, {b, a}} {
		seq := uint32(0)
		for n := 14; n <= 1518; n += 7 {
			send(t, dir.from, n, seq)
			if seq%16 == 15 || n+7 > 1518 {
				dir.from.drv.TxKick()
				dir.from.drv.Reclaim()
			}
			seq++
		}
		dir.from.drv.TxKick()
		dir.from.drv.Reclaim()
		got := 0
		recvAll(dir.to, func(rb *alloc.Buffer) {
			n := 14 + 7*got
			if rb.Len() != n {
				t.Fatalf("frame %d: len %d, want %d", got, rb.Len(), n)
			}
			exp := make([]byte, n)
			for i := range exp {
				exp[i] = byte(i*7 + got)
			}
			copy(exp[0:6], []byte{2, 0, 0, 0, 0, 0xb})
			copy(exp[6:12], []byte{2, 0, 0, 0, 0, 0xa})
			binary.BigEndian.PutUint16(exp[12:], 0x88b5)
			if n >= 18 {
				binary.BigEndian.PutUint32(exp[14:], uint32(got))
			}
			if !bytes.Equal(rb.Bytes(), exp) {
				t.Fatalf("frame %d differs", got)
			}
			got++
		})
		if got != int(seq) {
			t.Fatalf("received %d frames, sent %d", got, seq)
		}
	}
	atBaseline(t, a, b, baseA, baseB)
	var st nic.Stats
	b.drv.Stats(&st)
	if st.Rx.Drops.Total() != 0 || st.Tx.Drops.Total() != 0 {
		t.Fatalf("drops: %+v", st)
	}
}

// TestWrapAround runs more than 65536 frames so every 16-bit index wraps.
func TestWrapAround(t *testing.T) {
	a, b := pair(t, Config{RxRing: 64, TxRing: 64})
	baseA, baseB := a.pool.InUse(), b.pool.InUse()
	const total = 70000
	next := uint32(0)
	for seq := uint32(0); seq < total; {
		for i := 0; i < 48 && seq < total; i++ {
			send(t, a, 60, seq)
			seq++
		}
		a.drv.TxKick()
		a.drv.Reclaim()
		recvAll(b, func(rb *alloc.Buffer) {
			if got := binary.BigEndian.Uint32(rb.Bytes()[14:]); got != next {
				t.Fatalf("frame seq %d, want %d", got, next)
			}
			next++
		})
	}
	a.drv.Reclaim()
	if next != total {
		t.Fatalf("received %d of %d", next, total)
	}
	atBaseline(t, a, b, baseA, baseB)
	// Both indices went round the 16-bit space at least once.
	if b.drv.rx.lastUsed() != uint16(total%65536) || a.drv.tx.lastUsed() != uint16(total%65536) {
		t.Fatalf("indices: rx lastUsed %d, tx lastUsed %d", b.drv.rx.lastUsed(), a.drv.tx.lastUsed())
	}
}

// TestTxRingFullIsBackPressure: a post refused for a full ring leaves the
// buffer with the caller and is counted as ring_full, not as a drop.
func TestTxRingFullIsBackPressure(t *testing.T) {
	a, _ := pair(t, Config{RxRing: 256, TxRing: 8})
	for a.drv.TxFree() > 0 {
		send(t, a, 60, 0)
	}
	b := a.pool.Get()
	fillFrame(t, b, 60, 1)
	if err := a.drv.Transmit(b); !errors.Is(err, nic.ErrRingFull) {
		t.Fatalf("transmit on a full ring: %v", err)
	}
	if err := a.pool.Put(b); err != nil {
		t.Fatalf("refused buffer not the caller's: %v", err)
	}
	var st nic.Stats
	a.drv.Stats(&st)
	if st.Tx.Full != 1 || st.Tx.Drops.Total() != 0 {
		t.Fatalf("ring full counted as %d, drops %+v", st.Tx.Full, st.Tx.Drops)
	}
}
