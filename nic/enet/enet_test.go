package enet_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tamanet/tamanet/alloc"
	"github.com/tamanet/tamanet/nic"
	"github.com/tamanet/tamanet/nic/enet"
	"github.com/tamanet/tamanet/nic/enet/enettest"
	"github.com/tamanet/tamanet/nic/enet/internal/bd"
	"github.com/tamanet/tamanet/nic/nictest"
)

type rig struct {
	arena *alloc.Arena
	pool  *alloc.Pool
	dev   *enettest.Device
	drv   *enet.Driver
	base  int // pool buffers in use right after New (the posted rx ring)
	mem   []byte
}

func newRig(t testing.TB, opt enettest.Options, cfg enet.Config) *rig {
	t.Helper()
	// One DMA region, as on the board: rings from an arena at its start,
	// the pool after it; the model resolves addresses over all of it.
	mem := make([]byte, 2<<20)
	const ringMem = 64 << 10
	r := &rig{arena: alloc.NewArena(mem[:ringMem]), dev: enettest.New(mem, opt), mem: mem}
	pool, err := alloc.New(mem[ringMem:], alloc.Config{Count: 512})
	if err != nil {
		t.Fatal(err)
	}
	r.pool = pool
	r.drv, err = enet.New(r.dev, r.arena, pool, cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.base = pool.InUse()
	if s := r.dev.Stats(); s.DeviceErrors != 0 || s.BusErrors != 0 {
		t.Fatalf("device errors after New: %+v", s)
	}
	return r
}

func pipe(t testing.TB, cfgA, cfgB enet.Config) (a, b *rig) {
	a = newRig(t, enettest.Options{MAC: [6]byte{2, 0, 0, 0, 0, 0xa}}, cfgA)
	b = newRig(t, enettest.Options{MAC: [6]byte{2, 0, 0, 0, 0, 0xb}}, cfgB)
	enettest.Pipe(a.dev, b.dev)
	return a, b
}

// frame builds an Ethernet frame of n bytes with a sequence number and
// pseudo-random payload.
func frame(n int, seq uint32, rng *rand.Rand) []byte {
	f := make([]byte, n)
	copy(f, []byte{2, 0, 0, 0, 0, 0xb, 2, 0, 0, 0, 0, 0xa})
	if n >= 14 {
		binary.BigEndian.PutUint16(f[12:], 0x88b5) // local experimental
	}
	if n >= 18 {
		binary.BigEndian.PutUint32(f[14:], seq)
	}
	for i := 18; i < n; i++ {
		f[i] = byte(rng.Uint32())
	}
	return f
}

// send copies f into a pool buffer and transmits it.
func send(t testing.TB, r *rig, f []byte) error {
	t.Helper()
	b := r.pool.Get()
	if b == nil {
		t.Fatal("pool empty")
	}
	p, err := b.Append(len(f))
	if err != nil {
		t.Fatal(err)
	}
	copy(p, f)
	if err := r.drv.Transmit(b); err != nil {
		r.pool.Put(b)
		return err
	}
	return nil
}

func stats(r *rig) nic.Stats {
	var s nic.Stats
	r.drv.Stats(&s)
	return s
}

// settle reclaims, receives and refills until nothing moves.
func drain(r *rig, got func([]byte)) {
	for {
		r.drv.Reclaim()
		b := r.drv.Receive()
		if b == nil {
			r.drv.Refill()
			r.drv.RxKick()
			if b = r.drv.Receive(); b == nil {
				return
			}
		}
		if got != nil {
			got(b.Bytes())
		}
		r.pool.Put(b)
	}
}

func TestInit(t *testing.T) {
	mac := [6]byte{0x02, 0x11, 0x22, 0x33, 0x44, 0x55}
	r := newRig(t, enettest.Options{}, enet.Config{MAC: mac, RxRing: 16, TxRing: 8})
	d := r.dev
	ecr := d.Reg(enet.RegECR)
	if ecr&enet.ECREtherEn == 0 || ecr&enet.ECRDBSWP == 0 || ecr&enet.ECREN1588 == 0 {
		t.Errorf("ECR %#x: want ETHEREN and DBSWP, enhanced descriptors", ecr)
	}
	rcr := d.Reg(enet.RegRCR)
	// MAX_FL leaves room for the two SHIFT16 bytes QEMU counts in.
	if fl := rcr >> 16 & 0x3fff; fl != enet.MaxFL+2 {
		t.Errorf("RCR.MAX_FL %d, want %d", fl, enet.MaxFL+2)
	}
	if racc, tacc := d.Reg(enet.RegRACC), d.Reg(enet.RegTACC); racc != enet.RACCShift16 || tacc != enet.TACCIPChk|enet.TACCProChk {
		t.Errorf("RACC %#x TACC %#x: want SHIFT16 and no discard (Config.RxChecksum off), checksum insertion on", racc, tacc)
	}
	if rcr&enet.RCRMIIMode == 0 || rcr&enet.RCRRMIIMode != 0 || rcr&enet.RCRLoop != 0 {
		t.Errorf("RCR %#x: want MII mode, no loopback", rcr)
	}
	if d.Reg(enet.RegTCR)&enet.TCRFDEN == 0 {
		t.Error("TCR.FDEN clear")
	}
	if m := d.Reg(enet.RegMRBR); m%16 != 0 || m < enet.MaxFL+2 {
		t.Errorf("MRBR %d", m)
	}
	if d.Reg(enet.RegPALR) != 0x02112233 || d.Reg(enet.RegPAUR)>>16 != 0x4455 {
		t.Errorf("PALR %#x PAUR %#x", d.Reg(enet.RegPALR), d.Reg(enet.RegPAUR))
	}
	if d.Reg(enet.RegRDSR)%8 != 0 || d.Reg(enet.RegTDSR)%8 != 0 || d.Reg(enet.RegRDSR) == d.Reg(enet.RegTDSR) {
		t.Errorf("RDSR %#x TDSR %#x", d.Reg(enet.RegRDSR), d.Reg(enet.RegTDSR))
	}
	if d.Reg(enet.RegRDAR) == 0 {
		t.Error("receive not active after New")
	}
	// MDC = 66 MHz / ((MII_SPEED+1)*2) must not exceed 2.5 MHz.
	ms := d.Reg(enet.RegMSCR) >> 1 & 0x3f
	if ms == 0 || 66_000_000/((ms+1)*2) > 2_500_000 {
		t.Errorf("MSCR.MII_SPEED %d", ms)
	}
	if r.base != 16 {
		t.Errorf("%d buffers posted, want 16", r.base)
	}
	info := r.drv.Info()
	if info.MAC != mac || info.Name != "enet" || info.RxRing != 16 || info.TxRing != 8 {
		t.Errorf("info %+v", info)
	}
	s := stats(r)
	if !s.Link || s.SpeedMbps != 100 || !s.FullDuplex || !r.drv.LinkUp() {
		t.Errorf("link stats %+v", s)
	}
	x := r.drv.Extra()
	if x.PHYAddr != 0 || x.NoPHY || x.Restarts != 0 {
		t.Errorf("extra %+v", x)
	}
	if ds := d.Stats(); ds.PHYResets < 2 || ds.MDIOWrites == 0 {
		t.Errorf("PHY not reset over MDIO: %+v", ds)
	}
}

func TestMACFromDevice(t *testing.T) {
	r := newRig(t, enettest.Options{MAC: [6]byte{0x52, 0x54, 0, 0x12, 0x34, 0x56}}, enet.Config{})
	if m := r.drv.Info().MAC; m != [6]byte{0x52, 0x54, 0, 0x12, 0x34, 0x56} {
		t.Fatalf("MAC %x", m)
	}
}

func TestConfigErrors(t *testing.T) {
	mem := make([]byte, 1<<20)
	dev := enettest.New(mem, enettest.Options{})
	arena := alloc.NewArena(mem[:64<<10])
	pool, err := alloc.New(mem[64<<10:], alloc.Config{Count: 16})
	if err != nil {
		t.Fatal(err)
	}
	for _, cfg := range []enet.Config{{RxRing: 1}, {TxRing: enet.MaxRing + 1}, {TxAlign: 3}, {PHYAddr: 32}} {
		if _, err := enet.New(dev, arena, pool, cfg); !errors.Is(err, enet.ErrConfig) {
			t.Errorf("config %+v: %v", cfg, err)
		}
	}
	// A pool whose buffers cannot hold a full frame after the headroom.
	small, err := alloc.New(mem[64<<10:], alloc.Config{Count: 4, Size: 1600, Headroom: 80})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := enet.New(dev, arena, small, enet.Config{}); !errors.Is(err, enet.ErrConfig) {
		t.Errorf("small buffers: %v", err)
	}
}

func TestPHY(t *testing.T) {
	t.Run("scan", func(t *testing.T) {
		r := newRig(t, enettest.Options{PHYAddr: 5, PHYResetReads: 3}, enet.Config{PHYAddr: enet.PHYAuto})
		if x := r.drv.Extra(); x.PHYAddr != 5 || x.NoPHY {
			t.Fatalf("extra %+v", x)
		}
		if !r.drv.LinkUp() {
			t.Fatal("link down")
		}
	})
	t.Run("wrong address falls back to scan", func(t *testing.T) {
		r := newRig(t, enettest.Options{PHYAddr: 1}, enet.Config{PHYAddr: 7})
		if x := r.drv.Extra(); x.PHYAddr != 1 {
			t.Fatalf("extra %+v", x)
		}
	})
	t.Run("no PHY", func(t *testing.T) {
		r := newRig(t, enettest.Options{NoPHY: true}, enet.Config{})
		s := stats(r)
		if x := r.drv.Extra(); !x.NoPHY || x.PHYAddr != -1 || !s.Link || s.SpeedMbps != 100 || !s.FullDuplex {
			t.Fatalf("extra %+v stats %+v", x, s)
		}
	})
	t.Run("link down and up", func(t *testing.T) {
		r := newRig(t, enettest.Options{}, enet.Config{})
		r.dev.SetLink(false)
		r.drv.PollLink()
		if r.drv.LinkUp() || stats(r).Link {
			t.Fatal("link still up")
		}
		if err := send(t, r, frame(60, 0, rand.New(rand.NewPCG(1, 1)))); !errors.Is(err, nic.ErrLinkDown) {
			t.Fatalf("transmit with link down: %v", err)
		}
		if s := stats(r); s.Tx.Drops[nic.LinkDown] != 0 {
			t.Fatalf("link-down refusal counted as a drop: %+v", s.Tx.Drops)
		}
		r.dev.SetLink(true)
		r.drv.PollLink()
		if !r.drv.LinkUp() || r.drv.Extra().LinkFlaps != 1 {
			t.Fatalf("link %v extra %+v", r.drv.LinkUp(), r.drv.Extra())
		}
		nictest.CheckBaseline(t, r.pool, r.base, "driver idle")
	})
	t.Run("polled by PollLink only", func(t *testing.T) {
		r := newRig(t, enettest.Options{}, enet.Config{})
		polls := r.drv.Extra().LinkPolls
		r.dev.SetLink(false)
		r.drv.Refill()
		if r.drv.Maintain(); !r.drv.LinkUp() || r.drv.Extra().LinkPolls != polls {
			t.Fatalf("link polled from Maintain: up %v extra %+v", r.drv.LinkUp(), r.drv.Extra())
		}
		r.drv.PollLink()
		if r.drv.LinkUp() || r.drv.Extra().LinkPolls != polls+1 {
			t.Fatalf("link not polled: up %v extra %+v", r.drv.LinkUp(), r.drv.Extra())
		}
		// A speed change found there re-programs the MAC at once, and
		// is not a reset.
		r.dev.SetPartner(1<<5 | 1) // 10BASE-T half duplex only
		r.dev.SetLink(true)
		r.drv.PollLink()
		if r.drv.Maintain() {
			t.Fatal("a speed change reset the MAC again")
		}
		if s := stats(r); !s.Link || s.SpeedMbps != 10 || s.FullDuplex || r.drv.Extra().Restarts != 1 || s.Resets != 0 {
			t.Fatalf("stats %+v extra %+v", s, r.drv.Extra())
		}
		receiveOne(t, r, frame(100, 1, rand.New(rand.NewPCG(1, 3))))
		nictest.CheckBaseline(t, r.pool, r.base, "driver idle")
	})
	t.Run("half duplex 10 RMII", func(t *testing.T) {
		r := newRig(t, enettest.Options{}, enet.Config{RMII: true})
		r.dev.SetPartner(1<<5 | 1) // 10BASE-T half duplex only
		r.drv.PollLink()
		s := stats(r)
		if !s.Link || s.SpeedMbps != 10 || s.FullDuplex {
			t.Fatalf("stats %+v", s)
		}
		rcr, tcr := r.dev.Reg(enet.RegRCR), r.dev.Reg(enet.RegTCR)
		if tcr&enet.TCRFDEN != 0 || rcr&enet.RCRDRT == 0 || rcr&enet.RCRRMIIMode == 0 || rcr&enet.RCRRMII10T == 0 {
			t.Fatalf("RCR %#x TCR %#x", rcr, tcr)
		}
		if r.drv.Extra().Restarts != 1 || r.dev.Reg(enet.RegECR)&enet.ECREtherEn == 0 {
			t.Fatalf("extra %+v ECR %#x", r.drv.Extra(), r.dev.Reg(enet.RegECR))
		}
		if r.pool.InUse() != r.base {
			t.Fatalf("pool in use %d after restart, want %d", r.pool.InUse(), r.base)
		}
		// The restarted MAC still receives.
		f := frame(100, 1, rand.New(rand.NewPCG(1, 2)))
		r.dev.Deliver(f)
		b := r.drv.Receive()
		if b == nil || !bytes.Equal(b.Bytes(), f) {
			t.Fatal("no frame after restart")
		}
		r.pool.Put(b)
		if r.dev.Stats().DeviceErrors != 0 {
			t.Fatalf("device errors %+v", r.dev.Stats())
		}
	})
	t.Run("no common ability", func(t *testing.T) {
		r := newRig(t, enettest.Options{}, enet.Config{})
		r.dev.SetPartner(1 << 9) // 100BASE-T4 only
		r.drv.PollLink()
		if r.drv.LinkUp() {
			t.Fatal("link up without a common mode")
		}
	})
}

// TestPipe sends frames of every interesting size both ways between two
// piped models, far more than the rings hold, and checks them byte for byte
// and in order.
func TestPipe(t *testing.T) {
	a, b := pipe(t, enet.Config{RxRing: 8, TxRing: 4}, enet.Config{RxRing: 8, TxRing: 4})
	rng := rand.New(rand.NewPCG(7, 7))
	sizes := []int{42, 43, 60, 64, 127, 128, 1000, 1499, 1514, 1517, 1518}
	for _, dir := range []struct {
		name     string
		src, dst *rig
	}{{"a->b", a, b}, {"b->a", b, a}} {
		t.Run(dir.name, func(t *testing.T) {
			var sent [][]byte
			var got [][]byte
			for i := 0; i < 200; i++ {
				f := frame(sizes[i%len(sizes)], uint32(i), rng)
				for {
					err := send(t, dir.src, f)
					if err == nil {
						break
					}
					if !errors.Is(err, nic.ErrRingFull) {
						t.Fatal(err)
					}
					dir.src.drv.TxKick()
					dir.src.drv.Reclaim()
					drain(dir.dst, func(p []byte) { got = append(got, bytes.Clone(p)) })
				}
				sent = append(sent, f)
				if i%3 == 0 {
					dir.src.drv.TxKick()
				}
				if i%7 == 0 {
					drain(dir.dst, func(p []byte) { got = append(got, bytes.Clone(p)) })
				}
			}
			dir.src.drv.TxKick()
			for range 10 {
				drain(dir.dst, func(p []byte) { got = append(got, bytes.Clone(p)) })
				dir.src.drv.Reclaim()
			}
			if len(got) != len(sent) {
				t.Fatalf("received %d of %d frames (backlog %d)", len(got), len(sent), dir.dst.dev.Backlog())
			}
			for i := range sent {
				if !bytes.Equal(got[i], sent[i]) {
					t.Fatalf("frame %d differs (len %d vs %d)", i, len(got[i]), len(sent[i]))
				}
			}
			ss, ds := stats(dir.src), stats(dir.dst)
			if ss.Tx.Packets != uint64(len(sent)) || ds.Rx.Packets < uint64(len(sent)) {
				t.Fatalf("tx %+v rx %+v", ss.Tx, ds.Rx)
			}
			if ss.Tx.Drops.Total() != 0 || ds.Rx.Drops.Total() != 0 {
				t.Fatalf("unexpected drops: tx %+v rx %+v", ss.Tx.Drops, ds.Rx.Drops)
			}
			if ss.Tx.Kicks == 0 || ss.Tx.Kicks >= uint64(len(sent)) {
				t.Fatalf("tx kicks %d for %d frames: not batched", ss.Tx.Kicks, len(sent))
			}
		})
	}
	for _, r := range []*rig{a, b} {
		nictest.CheckBaseline(t, r.pool, r.base, "driver idle")
		if s := r.dev.Stats(); s.DeviceErrors != 0 || s.BusErrors != 0 {
			t.Fatalf("device errors %+v", s)
		}
		if r.drv.TxFree() != 4 {
			t.Fatalf("tx free %d", r.drv.TxFree())
		}
	}
}

// TestRxErrors injects each receive error bit and checks it is counted under
// its own cause, and that the buffers come back.
func TestRxErrors(t *testing.T) {
	r := newRig(t, enettest.Options{}, enet.Config{RxRing: 8})
	rng := rand.New(rand.NewPCG(3, 3))
	cases := []struct {
		bits  uint16
		cause nic.Cause
	}{
		{enettest.ErrLG, nic.LengthViolation},
		{enettest.ErrNO, nic.NonOctet},
		{enettest.ErrCR, nic.CRC},
		{enettest.ErrOV, nic.Overrun},
		{enettest.ErrTR, nic.Truncated},
		// With TR or OV the other bits are not meaningful.
		{enettest.ErrTR | enettest.ErrCR | enettest.ErrLG, nic.Truncated},
		{enettest.ErrOV | enettest.ErrCR, nic.Overrun},
		{enettest.ErrNO | enettest.ErrCR, nic.NonOctet},
	}
	want := nic.Drops{}
	for _, c := range cases {
		r.dev.SetFaults(enettest.Faults{RxError: 1, RxErrorBits: c.bits})
		for i := 0; i < 11; i++ { // more than the ring: wraps
			r.dev.Deliver(frame(100, uint32(i), rng))
			if b := r.drv.Receive(); b != nil {
				t.Fatalf("bits %#x: errored frame passed up", c.bits)
			}
			r.drv.Refill()
			r.drv.RxKick()
		}
		want[c.cause] += 11
		if got := stats(r).Rx.Drops; got != want {
			t.Fatalf("bits %#x: drops %v, want %v", c.bits, got, want)
		}
	}
	r.dev.SetFaults(enettest.Faults{})
	f := frame(200, 9, rng)
	r.dev.Deliver(f)
	b := r.drv.Receive()
	if b == nil || !bytes.Equal(b.Bytes(), f) {
		t.Fatal("good frame after errors lost")
	}
	r.pool.Put(b)
	r.drv.Refill()
	nictest.CheckBaseline(t, r.pool, r.base, "driver idle")
}

// TestLengths checks runts, oversize frames, frames spanning descriptors
// and lengths the device must not report.
func TestLengths(t *testing.T) {
	r := newRig(t, enettest.Options{}, enet.Config{RxRing: 8})
	rng := rand.New(rand.NewPCG(4, 4))
	recv := func(n int) bool {
		t.Helper()
		f := frame(n, 0, rng)
		r.dev.Deliver(f)
		b := r.drv.Receive()
		r.drv.Refill()
		r.drv.RxKick()
		if b == nil {
			return false
		}
		if !bytes.Equal(b.Bytes(), f) {
			t.Fatalf("frame of %d bytes differs", n)
		}
		r.pool.Put(b)
		return true
	}
	drops := func() nic.Drops { return stats(r).Rx.Drops }
	for _, n := range []int{14, 20, 41} {
		if recv(n) {
			t.Fatalf("%d-byte runt passed up", n)
		}
	}
	if d := drops(); d[nic.Runt] != 3 || d.Total() != 3 {
		t.Fatalf("drops %v", d)
	}
	for _, n := range []int{42, 1518} {
		if !recv(n) {
			t.Fatalf("%d-byte frame dropped: %v", n, drops())
		}
	}
	// Longer than MAX_FL: the MAC flags LG.
	if recv(1519) {
		t.Fatal("1519-byte frame passed up")
	}
	if d := drops(); d[nic.LengthViolation] != 1 {
		t.Fatalf("drops %v", d)
	}
	// A MAC that does not flag it (MAX_FL raised): the driver's own
	// check drops it as oversize.
	r.dev.Write32(enet.RegRCR, r.dev.Reg(enet.RegRCR)|0x3fff<<16)
	if recv(1530) {
		t.Fatal("1530-byte frame passed up")
	}
	if d := drops(); d[nic.Oversize] != 1 {
		t.Fatalf("drops %v", d)
	}
	// Frames longer than a buffer span descriptors when FTRL allows
	// (as in QEMU, which ignores FTRL): every piece is discarded and the
	// frame counted once.
	r.dev.Write32(enet.RegFTRL, 0x7ff)
	for i := 0; i < 5; i++ {
		if recv(2020) {
			t.Fatal("spanning frame passed up")
		}
	}
	if d := drops(); d[nic.Oversize] != 6 {
		t.Fatalf("drops %v", d)
	}
	// With MAX_FL back, the spanning frame carries LG in its last piece.
	r.dev.Write32(enet.RegRCR, r.dev.Reg(enet.RegRCR)&^(0x3fff<<16)|enet.MaxFL<<16)
	if recv(2020) {
		t.Fatal("spanning frame passed up")
	}
	if d := drops(); d[nic.LengthViolation] != 2 || d[nic.Oversize] != 6 {
		t.Fatalf("drops %v", d)
	}
	// Truncation at FTRL (restored by the driver's value).
	r.dev.Write32(enet.RegFTRL, r.dev.Reg(enet.RegMRBR))
	if recv(2020) {
		t.Fatal("truncated frame passed up")
	}
	if d := drops(); d[nic.Truncated] != 1 {
		t.Logf("FTRL %d MRBR %d", r.dev.Reg(enet.RegFTRL), r.dev.Reg(enet.RegMRBR))
		t.Fatalf("drops %v", d)
	}
	// Lengths the device must not write.
	r.dev.SetFaults(enettest.Faults{Seed: 1, BadLength: 1})
	for i := 0; i < 20; i++ {
		if recv(100) {
			t.Fatal("bad length passed up")
		}
	}
	if d := drops(); d[nic.BadLength] != 20 {
		t.Fatalf("drops %v", d)
	}
	r.dev.SetFaults(enettest.Faults{})
	if !recv(100) {
		t.Fatal("good frame lost after faults")
	}
	nictest.CheckBaseline(t, r.pool, r.base, "driver idle")
}

func TestTransmitChecks(t *testing.T) {
	r := newRig(t, enettest.Options{TxAlign: 16}, enet.Config{TxRing: 4})
	var out [][]byte
	r.dev.SetOutput(func(f []byte) { out = append(out, bytes.Clone(f)) })
	rng := rand.New(rand.NewPCG(5, 5))
	if err := send(t, r, frame(13, 0, rng)); !errors.Is(err, nic.ErrRunt) {
		t.Fatalf("13-byte frame: %v", err)
	}
	if err := send(t, r, frame(1519, 0, rng)); !errors.Is(err, nic.ErrOversize) {
		t.Fatalf("1519-byte frame: %v", err)
	}
	// A frame that does not start 16-byte aligned is moved, not copied
	// elsewhere.
	b := r.pool.Get()
	b.Reserve(37)
	f := frame(300, 1, rng)
	p, _ := b.Append(len(f))
	copy(p, f)
	if err := r.drv.Transmit(b); err != nil {
		t.Fatal(err)
	}
	if b.BodyAddr()%16 != 0 {
		t.Fatalf("body at %#x not aligned", b.BodyAddr())
	}
	for i := 0; i < 3; i++ {
		if err := send(t, r, frame(60, uint32(i), rng)); err != nil {
			t.Fatal(err)
		}
	}
	if err := send(t, r, frame(60, 9, rng)); !errors.Is(err, nic.ErrRingFull) {
		t.Fatalf("full ring: %v", err)
	}
	if n := r.drv.Reclaim(); n != 0 {
		t.Fatalf("reclaimed %d before the kick", n)
	}
	r.drv.TxKick()
	if n := r.drv.Reclaim(); n != 4 {
		t.Fatalf("reclaimed %d, want 4", n)
	}
	if len(out) != 4 || !bytes.Equal(out[0], f) {
		t.Fatalf("output %d frames", len(out))
	}
	// The refused frames are the caller's to count, not the driver's.
	s := stats(r)
	if s.Tx.Packets != 4 || s.Tx.Drops.Total() != 0 || s.Tx.Full != 1 || s.Tx.Kicks != 1 {
		t.Fatalf("tx stats %+v", s.Tx)
	}
	if r.drv.Extra().TxRealign != 1 || r.dev.Stats().DeviceErrors != 0 {
		t.Fatalf("extra %+v device %+v", r.drv.Extra(), r.dev.Stats())
	}
	nictest.CheckBaseline(t, r.pool, r.base, "driver idle")
}

func TestTxErrors(t *testing.T) {
	r := newRig(t, enettest.Options{}, enet.Config{})
	r.dev.SetOutput(func([]byte) {})
	r.dev.SetFaults(enettest.Faults{Seed: 2, TxError: 1})
	rng := rand.New(rand.NewPCG(6, 6))
	for i := 0; i < 30; i++ {
		if err := send(t, r, frame(100, uint32(i), rng)); err != nil {
			t.Fatal(err)
		}
		r.drv.TxKick()
		if r.drv.Reclaim() != 1 {
			t.Fatal("not reclaimed")
		}
	}
	if s := stats(r); s.Tx.Drops[nic.TxError] != 30 || r.dev.Stats().TxErrors != 30 {
		t.Fatalf("tx errors %d, device raised %d", s.Tx.Drops[nic.TxError], r.dev.Stats().TxErrors)
	}
}

// TestBusError points TDSR outside DMA memory behind the driver's back: the
// model raises EBERR and stops, PollLink resets the MAC, traffic resumes.
func TestBusError(t *testing.T) {
	r := newRig(t, enettest.Options{}, enet.Config{TxRing: 4})
	var out int
	r.dev.SetOutput(func([]byte) { out++ })
	r.dev.Write32(enet.RegECR, r.dev.Reg(enet.RegECR)&^enet.ECREtherEn)
	r.dev.Write32(enet.RegTDSR, 0x10)
	r.dev.Write32(enet.RegECR, r.dev.Reg(enet.RegECR)|enet.ECREtherEn)
	rng := rand.New(rand.NewPCG(8, 8))
	if err := send(t, r, frame(60, 0, rng)); err != nil {
		t.Fatal(err)
	}
	r.drv.TxKick()
	if ds := r.dev.Stats(); ds.BusErrors != 1 || r.dev.Reg(enet.RegEIR)&enet.EventEBERR == 0 {
		t.Fatalf("no bus error: %+v", ds)
	}
	r.drv.PollLink()
	if x := r.drv.Extra(); x.Restarts != 1 {
		t.Fatalf("extra %+v", x)
	}
	if s := stats(r); s.Tx.Drops[nic.TxError] != 1 || s.Tx.Drops[nic.LinkDown] != 1 || s.Resets != 1 || s.ResetReason != "bus error" {
		t.Fatalf("tx drops %v, resets %d (%q)", s.Tx.Drops, s.Resets, s.ResetReason)
	}
	if err := send(t, r, frame(60, 1, rng)); err != nil {
		t.Fatal(err)
	}
	r.drv.TxKick()
	if r.drv.Reclaim() != 1 || out != 1 {
		t.Fatalf("no transmit after restart (out %d)", out)
	}
	r.dev.Deliver(frame(60, 2, rng))
	if b := r.drv.Receive(); b == nil {
		t.Fatal("no receive after restart")
	} else {
		r.pool.Put(b)
	}
	r.drv.Refill()
	nictest.CheckBaseline(t, r.pool, r.base, "driver idle")
}

// TestFaults runs traffic through every fault the model injects, a stall
// included, and checks nothing panics, every frame that arrives intact is
// byte-exact, and no buffer leaks.
func TestFaults(t *testing.T) {
	a, b := pipe(t, enet.Config{RxRing: 16, TxRing: 16}, enet.Config{RxRing: 16, TxRing: 16})
	b.dev.SetFaults(enettest.Faults{Seed: 42, Drop: 0.05, Duplicate: 0.05, Corrupt: 0.05,
		Reorder: 0.05, BadLength: 0.05, RxError: 0.05})
	a.dev.SetFaults(enettest.Faults{Seed: 43, TxError: 0.05})
	rng := rand.New(rand.NewPCG(9, 9))
	sent := map[uint32][]byte{}
	good, bad := 0, 0
	check := func(p []byte) {
		seq := binary.BigEndian.Uint32(p[14:])
		if f, ok := sent[seq]; ok && bytes.Equal(f, p) {
			good++
		} else {
			bad++ // corrupted on the way: counted, not lost track of
		}
	}
	for i := 0; i < 2000; i++ {
		f := frame(42+rng.IntN(1477), uint32(i), rng)
		sent[uint32(i)] = f
		if i == 500 {
			b.dev.Stall()
		}
		if i == 700 {
			b.dev.Unstall()
		}
		for {
			err := send(t, a, f)
			if err == nil {
				break
			}
			if !errors.Is(err, nic.ErrRingFull) {
				t.Fatal(err)
			}
			a.drv.TxKick()
			a.drv.Reclaim()
			drain(b, check)
		}
		if i%8 == 0 {
			a.drv.TxKick()
			drain(b, check)
		}
	}
	a.drv.TxKick()
	b.dev.Flush()
	for range 10 {
		drain(b, check)
		a.drv.Reclaim()
	}
	ds := b.dev.Stats()
	s := stats(b)
	t.Logf("good %d bad %d; device %+v; drops %v", good, bad, ds, s.Rx.Drops)
	if good < 1500 {
		t.Fatalf("only %d good frames", good)
	}
	if ds.RxErrors == 0 || ds.BadLengths == 0 || ds.Dropped == 0 || ds.Duplicated == 0 || ds.Reordered == 0 || ds.Corrupted == 0 {
		t.Fatalf("faults not all injected: %+v", ds)
	}
	errs := s.Rx.Drops[nic.CRC] + s.Rx.Drops[nic.LengthViolation] + s.Rx.Drops[nic.NonOctet] +
		s.Rx.Drops[nic.Overrun] + s.Rx.Drops[nic.Truncated]
	if errs != ds.RxErrors || s.Rx.Drops[nic.BadLength] == 0 {
		t.Fatalf("rx error drops %d, device injected %d; drops %v", errs, ds.RxErrors, s.Rx.Drops)
	}
	if stats(a).Tx.Drops[nic.TxError] == 0 {
		t.Fatal("tx errors not counted")
	}
	for _, r := range []*rig{a, b} {
		nictest.CheckBaseline(t, r.pool, r.base, "driver idle")
		if r.pool.Stats().RefusedPuts != 0 {
			t.Fatal("refused puts: a buffer was put twice")
		}
		if r.dev.Stats().DeviceErrors != 0 {
			t.Fatalf("device errors %+v", r.dev.Stats())
		}
	}
}

// TestConcurrent runs both directions at once with a poll goroutine and a
// transmit goroutine per driver; go test -race checks the descriptor
// hand-over. The senders keep at most a window of frames in flight so the
// model's backlog never overflows (there is no flow control on the wire).
func TestConcurrent(t *testing.T) {
	a, b := pipe(t, enet.Config{RxRing: 32, TxRing: 16}, enet.Config{RxRing: 32, TxRing: 16})
	const n, window = 3000, 128
	var recvd [2]atomic.Int64
	rigs := [2]*rig{a, b}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for k, r := range rigs {
		wg.Add(2)
		go func() { // poll goroutine
			defer wg.Done()
			for {
				got := 0
				for {
					buf := r.drv.Receive()
					if buf == nil {
						break
					}
					if buf.Len() != 64 || buf.Bytes()[5] != 0xb {
						t.Errorf("bad frame of %d bytes", buf.Len())
					}
					r.pool.Put(buf)
					got++
				}
				r.drv.Refill()
				r.drv.RxKick()
				recvd[k].Add(int64(got))
				select {
				case <-stop:
					return
				default:
				}
				if got == 0 {
					time.Sleep(10 * time.Microsecond)
				}
			}
		}()
		go func() { // transmit goroutine
			defer wg.Done()
			peer := &recvd[1-k]
			f := frame(64, 0, rand.New(rand.NewPCG(1, 1)))
			for i := 0; i < n; {
				r.drv.Reclaim()
				if int64(i)-peer.Load() >= window {
					r.drv.TxKick()
					time.Sleep(10 * time.Microsecond)
					continue
				}
				buf := r.pool.Get()
				if buf == nil {
					time.Sleep(10 * time.Microsecond)
					continue
				}
				p, _ := buf.Append(len(f))
				copy(p, f)
				if err := r.drv.Transmit(buf); err != nil {
					r.pool.Put(buf)
					r.drv.TxKick()
					continue
				}
				i++
				if i%4 == 0 {
					r.drv.TxKick()
				}
			}
			r.drv.TxKick()
			for r.drv.TxFree() < 16 {
				r.drv.Reclaim()
				time.Sleep(10 * time.Microsecond)
			}
		}()
	}
	deadline := time.Now().Add(20 * time.Second)
	for recvd[0].Load() < n || recvd[1].Load() < n {
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wg.Wait()
	for k, r := range rigs {
		if got := recvd[k].Load(); got != n {
			t.Errorf("rig %d received %d of %d; device %+v", k, got, n, r.dev.Stats())
		}
		if r.pool.InUse() != r.base {
			t.Errorf("pool in use %d, want %d", r.pool.InUse(), r.base)
		}
	}
}

func BenchmarkRx(b *testing.B) {
	r := newRig(b, enettest.Options{}, enet.Config{RxRing: 256})
	f := frame(1000, 1, rand.New(rand.NewPCG(1, 1)))
	const batch = 32
	b.ReportAllocs()
	b.SetBytes(int64(len(f)))
	b.ResetTimer()
	for i := 0; i < b.N; i += batch {
		k := min(batch, b.N-i)
		for j := 0; j < k; j++ {
			r.dev.Deliver(f)
		}
		for j := 0; j < k; j++ {
			buf := r.drv.Receive()
			if buf == nil {
				b.Fatal("no frame")
			}
			r.pool.Put(buf)
		}
		r.drv.Refill()
		r.drv.RxKick()
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/packet")
}

func BenchmarkTx(b *testing.B) {
	r := newRig(b, enettest.Options{}, enet.Config{TxRing: 256})
	r.dev.SetOutput(func([]byte) {})
	f := frame(1000, 1, rand.New(rand.NewPCG(1, 1)))
	const batch = 32
	b.ReportAllocs()
	b.SetBytes(int64(len(f)))
	b.ResetTimer()
	for i := 0; i < b.N; i += batch {
		k := min(batch, b.N-i)
		for j := 0; j < k; j++ {
			buf := r.pool.Get()
			p, _ := buf.Append(len(f))
			copy(p, f)
			if err := r.drv.Transmit(buf); err != nil {
				b.Fatal(err)
			}
		}
		r.drv.TxKick()
		r.drv.Reclaim()
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/packet")
}

// ring returns the descriptor ring memory the driver programmed into reg.
func (r *rig) ring(reg uint32, n int) []byte {
	off := int(r.dev.Reg(reg) - uint32(alloc.AddrOf(r.mem)))
	return r.mem[off : off+n*bd.Size]
}

// BenchmarkRxDriver measures the driver alone: the benchmark plays the MAC
// by completing descriptors in place (the model is stalled, so RDAR costs
// only a register write).
func BenchmarkRxDriver(b *testing.B) {
	const n, batch = 256, 32
	r := newRig(b, enettest.Options{}, enet.Config{RxRing: n})
	r.dev.Stall()
	ring := r.ring(enet.RegRDSR, n)
	pos := 0
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += batch {
		k := min(batch, b.N-i)
		for j := 0; j < k; j++ {
			off := pos * bd.Size
			_, st := bd.Split(bd.Load(ring, off))
			bd.Store(ring, off, bd.Word(1004, st&^bd.E|bd.L))
			pos = (pos + 1) % n
		}
		for j := 0; j < k; j++ {
			buf := r.drv.Receive()
			if buf == nil {
				b.Fatal("no frame")
			}
			r.pool.Put(buf)
		}
		r.drv.Refill()
		r.drv.RxKick()
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/packet")
}

// BenchmarkTxDriver measures Transmit + TxKick + Reclaim alone; the
// benchmark completes the descriptors as the MAC would.
func BenchmarkTxDriver(b *testing.B) {
	const n, batch = 256, 32
	r := newRig(b, enettest.Options{}, enet.Config{TxRing: n})
	r.dev.Stall()
	ring := r.ring(enet.RegTDSR, n)
	pos := 0
	bufs := make([]*alloc.Buffer, batch)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += batch {
		k := min(batch, b.N-i)
		for j := 0; j < k; j++ {
			bufs[j] = r.pool.Get()
			bufs[j].Append(1000)
		}
		for j := 0; j < k; j++ {
			if err := r.drv.Transmit(bufs[j]); err != nil {
				b.Fatal(err)
			}
		}
		r.drv.TxKick()
		for j := 0; j < k; j++ {
			off := pos * bd.Size
			l, st := bd.Split(bd.Load(ring, off))
			bd.Store(ring, off, bd.Word(l, st&^bd.R))
			pos = (pos + 1) % n
		}
		if r.drv.Reclaim() != k {
			b.Fatal("reclaim")
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/packet")
}

// TestPoolExhaustion empties the pool so Refill cannot post: the MAC stops
// at the unposted descriptor, arriving frames wait in the model's backlog,
// and once buffers come back every frame is received in order.
func TestPoolExhaustion(t *testing.T) {
	r := newRig(t, enettest.Options{}, enet.Config{RxRing: 8})
	var held []*alloc.Buffer
	for b := r.pool.Get(); b != nil; b = r.pool.Get() {
		held = append(held, b)
	}
	rng := rand.New(rand.NewPCG(10, 10))
	var sent [][]byte
	for i := 0; i < 20; i++ {
		f := frame(60+i, uint32(i), rng)
		sent = append(sent, f)
		r.dev.Deliver(f)
	}
	var got [][]byte
	for {
		b := r.drv.Receive()
		if b == nil {
			break
		}
		got = append(got, bytes.Clone(b.Bytes()))
		held = append(held, b) // keep it: the pool stays empty
	}
	if len(got) != 8 || r.drv.Refill() != 0 || stats(r).Rx.Drops[nic.NoBuffer] == 0 {
		t.Fatalf("received %d with an empty pool (drops %v)", len(got), stats(r).Rx.Drops)
	}
	r.drv.RxKick()
	if r.dev.Backlog() != 12 {
		t.Fatalf("backlog %d, want 12", r.dev.Backlog())
	}
	for _, b := range held {
		r.pool.Put(b)
	}
	drain(r, func(p []byte) { got = append(got, bytes.Clone(p)) })
	if len(got) != len(sent) {
		t.Fatalf("received %d of %d", len(got), len(sent))
	}
	for i := range sent {
		if !bytes.Equal(got[i], sent[i]) {
			t.Fatalf("frame %d differs", i)
		}
	}
	if r.pool.InUse() != r.base || r.dev.Stats().BacklogDrops != 0 {
		t.Fatalf("pool in use %d, want %d; device %+v", r.pool.InUse(), r.base, r.dev.Stats())
	}
}

func TestInterrupt(t *testing.T) {
	r := newRig(t, enettest.Options{}, enet.Config{})
	var irqs atomic.Int32
	r.dev.SetInterrupt(func() { irqs.Add(1) })
	r.dev.Deliver(frame(60, 0, rand.New(rand.NewPCG(1, 1))))
	if irqs.Load() != 0 {
		t.Fatal("interrupt while masked")
	}
	if e := r.drv.AckInterrupt(); e&enet.EventRXF == 0 {
		t.Fatalf("EIR events %#x, want RXF", e)
	}
	if e := r.drv.AckInterrupt(); e != 0 {
		t.Fatalf("events %#x after ack", e)
	}
	r.drv.EnableInterrupts(enet.EventRXF)
	r.dev.Deliver(frame(60, 1, rand.New(rand.NewPCG(1, 1))))
	if irqs.Load() != 1 {
		t.Fatalf("%d interrupts, want 1", irqs.Load())
	}
	drain(r, nil)
	if r.pool.InUse() != r.base {
		t.Fatalf("pool in use %d", r.pool.InUse())
	}
}
