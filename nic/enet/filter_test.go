package enet_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/tamanet/tamanet/nic"
	"github.com/tamanet/tamanet/nic/enet"
	"github.com/tamanet/tamanet/nic/enet/enettest"
	"github.com/tamanet/tamanet/stack"
	"github.com/tamanet/tamanet/stack/stacktest"
)

// crcReg is the MAC's CRC-32 register after the 6 destination bytes,
// computed bit by bit as the manual describes the hash: initial value all
// ones, each bit least significant first, polynomial 0x04C11DB7
// (reflected 0xEDB88320), no final inversion.
func crcReg(mac [6]byte) uint32 {
	crc := ^uint32(0)
	for _, b := range mac {
		for i := 0; i < 8; i++ {
			bit := (uint32(b) >> i & 1) ^ (crc & 1)
			crc >>= 1
			if bit != 0 {
				crc ^= 0xEDB88320
			}
		}
	}
	return crc
}

func TestGroupHash(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	for i := 0; i < 1000; i++ {
		var m [6]byte
		for j := range m {
			m[j] = byte(rng.Uint32())
		}
		m[0] |= 1
		if got, want := enet.GroupHash(m), uint(crcReg(m)>>26); got != want {
			t.Fatalf("GroupHash(%x) = %d, want %d", m, got, want)
		}
	}
	groups := [][6]byte{{0x33, 0x33, 0, 0, 0, 1}, {0x33, 0x33, 0xff, 0, 0, 1}, {2, 0, 0, 0, 0, 1}}
	want := uint64(1)<<enet.GroupHash(groups[0]) | 1<<enet.GroupHash(groups[1])
	if got := enet.GroupTable(groups); got != want {
		t.Fatalf("GroupTable %#x, want %#x (the unicast entry ignored)", got, want)
	}
}

// TestGroupFilter: the model drops multicast the table does not pass, the
// driver programs the table, and a MAC restart (new link speed) keeps it.
func TestGroupFilter(t *testing.T) {
	r := newRig(t, enettest.Options{}, enet.Config{})
	mc := frame(100, 1, rand.New(rand.NewPCG(3, 3)))
	copy(mc, []byte{0x33, 0x33, 0xff, 0x10, 0, 1})
	receives := func() bool {
		r.dev.Deliver(mc)
		b := r.drv.Receive()
		if b == nil {
			return false
		}
		ok := bytes.Equal(b.Bytes(), mc)
		r.pool.Put(b)
		r.drv.Refill()
		r.drv.RxKick()
		return ok
	}
	if receives() || r.dev.Stats().Filtered != 1 {
		t.Fatalf("multicast passed an empty table: %+v", r.dev.Stats())
	}
	r.drv.SetGroups([][6]byte{[6]byte(mc[:6])})
	table := uint64(r.dev.Reg(enet.RegGAUR))<<32 | uint64(r.dev.Reg(enet.RegGALR))
	if table != 1<<enet.GroupHash([6]byte(mc[:6])) {
		t.Fatalf("GAUR:GALR %#x", table)
	}
	if !receives() {
		t.Fatal("programmed group not received")
	}
	// Broadcast needs no entry.
	bc := frame(100, 2, rand.New(rand.NewPCG(3, 4)))
	copy(bc, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	r.dev.Deliver(bc)
	if b := r.drv.Receive(); b == nil {
		t.Fatal("broadcast dropped")
	} else {
		r.pool.Put(b)
	}
	r.drv.Refill()
	r.drv.RxKick()
	// A restart (the link comes back at 10 Mbit/s) reprograms the MAC.
	r.dev.Write32(enet.RegGAUR, 0) // as a reset would leave it
	r.dev.Write32(enet.RegGALR, 0)
	r.dev.SetPartner(1<<5 | 1)
	r.drv.PollLink()
	if r.drv.Extra().Restarts != 1 {
		t.Fatalf("no restart: %+v", r.drv.Extra())
	}
	if got := uint64(r.dev.Reg(enet.RegGAUR))<<32 | uint64(r.dev.Reg(enet.RegGALR)); got != table {
		t.Fatalf("GAUR:GALR %#x after restart, want %#x", got, table)
	}
	if !receives() {
		t.Fatal("programmed group not received after restart")
	}
}

// noFilter hides the driver's nic.GroupFilter from the stack.
type noFilter struct{ nic.Device }

// newEnode6 is one IPv6 side; without filter the stack cannot program the
// group hash table.
func newEnode6(t testing.TB, mac [6]byte, addr, addr6 netip.Prefix, filter bool) *enode {
	t.Helper()
	var wrap func(nic.Device) nic.Device
	if !filter {
		wrap = func(d nic.Device) nic.Device { return noFilter{d} }
	}
	return newEnode(t, mac, stack.Config{Addr: addr, IPv6: true, Addr6: addr6}, enet.Config{RxRing: 128, TxRing: 128}, wrap)
}

func enetPair6(t testing.TB, filter bool) (a, b *enode) {
	a = newEnode6(t, stacktest.MACA, addrA, stacktest.Addr6A, filter)
	b = newEnode6(t, stacktest.MACB, addrB, stacktest.Addr6B, filter)
	enettest.Pipe(a.model, b.model)
	a.s.Start()
	b.s.Start()
	return a, b
}

func TestIPv6BackToBack(t *testing.T) {
	a, b := enetPair6(t, true)
	stacktest.WaitPing(t, a.s, stacktest.Addr6B.Addr(), 10*time.Second)
	stacktest.WaitPing(t, b.s, stacktest.LinkLocal(stacktest.MACA), 10*time.Second)
	for _, n := range []*enode{a, b} {
		table := uint64(n.model.Reg(enet.RegGAUR))<<32 | uint64(n.model.Reg(enet.RegGALR))
		if want := enet.GroupTable(n.s.Groups()); table != want || table == 0 {
			t.Fatalf("GAUR:GALR %#x, want %#x for %x", table, want, n.s.Groups())
		}
	}
	stacktest.Suite{
		A: a.s, B: b.s, AAddr: stacktest.Addr6A.Addr(), BAddr: stacktest.Addr6B.Addr(),
		Ping:    stacktest.PingCheck{Count: 10, Wait: time.Second, Total: 30 * time.Second},
		UDP:     stacktest.UDPCheck{Sizes: stacktest.AllSizes(1, 1452), Wait: 2 * time.Second},
		TCPSize: 4 << 20, Conns: 16, Each: 64 << 10,
	}.Run(t)
	stacktest.CheckQuiet(t, a.quiet(), b.quiet())
}

// TestIPv6NeedsGroupFilter: without the group hash table the MAC drops the
// neighbour solicitations for the static addresses (their solicited-node
// groups), so they stay unreachable, as on real hardware.
func TestIPv6NeedsGroupFilter(t *testing.T) {
	a, b := enetPair6(t, false)
	deadline := time.Now().Add(4 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		_, err := a.s.Ping(ctx, stacktest.Addr6B.Addr(), 1, nil)
		cancel()
		if err == nil {
			t.Fatal("static address reachable with no group filter programmed")
		}
	}
	if b.model.Stats().Filtered == 0 {
		t.Fatalf("model filtered nothing: %+v", b.model.Stats())
	}
	// The same link with the tables programmed works.
	a.drv.SetGroups(a.s.Groups())
	b.drv.SetGroups(b.s.Groups())
	stacktest.WaitPing(t, a.s, stacktest.Addr6B.Addr(), 10*time.Second)
}
