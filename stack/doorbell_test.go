package stack

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/tamanet/tamanet/alloc"
	"github.com/tamanet/tamanet/nic"
	"github.com/tamanet/tamanet/nic/enet"
	"github.com/tamanet/tamanet/nic/enet/enettest"
	"github.com/tamanet/tamanet/nic/virtio"
	"github.com/tamanet/tamanet/nic/virtio/virtiotest"
	"github.com/tamanet/tamanet/stack/stacktest"
)

// countingRegs counts the register accesses a driver makes: under QEMU
// each one is an exit into the emulator.
type countingRegs struct {
	virtio.Regs // the model; enet.Regs is its Read32 and Write32
	reads       atomic.Uint64
	writes      atomic.Uint64
}

func (r *countingRegs) Read32(off uint32) uint32 {
	r.reads.Add(1)
	return r.Regs.Read32(off)
}

func (r *countingRegs) Write32(off, v uint32) {
	r.writes.Add(1)
	r.Regs.Write32(off, v)
}

func (r *countingRegs) Read16(off uint32) uint16 {
	r.reads.Add(1)
	return r.Regs.Read16(off)
}

func (r *countingRegs) Read8(off uint32) uint8 {
	r.reads.Add(1)
	return r.Regs.Read8(off)
}

// enetRegs is countingRegs over the ENET model, which has no 8- and
// 16-bit registers.
type enetRegs struct{ *enettest.Device }

func (enetRegs) Read16(uint32) uint16 { panic("ENET: no 16-bit registers") }
func (enetRegs) Read8(uint32) uint8   { panic("ENET: no 8-bit registers") }

// TestIdleStepNoRegisterAccess: a poll step with nothing to do, after
// traffic went both ways (an ARP exchange, a UDP reply, reclaimed), writes
// no register and reads none, on either driver: no doorbell without a
// posting, no interrupt re-arm through a register.
func TestIdleStepNoRegisterAccess(t *testing.T) {
	for _, tc := range []struct {
		name string
		dev  func(t *testing.T, regs *countingRegs, arena *alloc.Arena, pool *alloc.Pool) (nic.Device, wire)
	}{
		{"virtio", func(t *testing.T, regs *countingRegs, arena *alloc.Arena, pool *alloc.Pool) (nic.Device, wire) {
			model := virtiotest.New(arena.Memory(), virtiotest.Options{MAC: stacktest.MACA})
			regs.Regs = model
			drv, err := virtio.New(regs, arena, pool, virtio.Config{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { drv.Close() })
			return drv, model
		}},
		{"enet", func(t *testing.T, regs *countingRegs, arena *alloc.Arena, pool *alloc.Pool) (nic.Device, wire) {
			model := enettest.New(arena.Memory(), enettest.Options{MAC: stacktest.MACA, TxAlign: enet.DefaultTxAlign})
			regs.Regs = enetRegs{model}
			drv, err := enet.New(regs, arena, pool, enet.Config{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { drv.Close() })
			return drv, model
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			arena := alloc.NewArena(make([]byte, 6<<20))
			pool, err := arena.Pool(alloc.Config{Count: stacktest.PoolCount})
			if err != nil {
				t.Fatal(err)
			}
			regs := &countingRegs{}
			dev, w := tc.dev(t, regs, arena, pool)
			s, err := New(dev, Config{Addr: addrA})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			// Traffic both ways: an ARP request and an ICMP echo
			// request, which the stack answers.
			sent := 0
			w.SetOutput(func([]byte) { sent++ })
			seeds := seedFrames()
			w.Deliver(seeds[0])
			w.Deliver(seeds[1])
			for range 10 {
				s.Poll()
				time.Sleep(time.Millisecond) // gVisor's goroutines answer
			}
			if sent < 2 {
				t.Fatalf("the stack sent %d frames, want an ARP reply and an echo reply", sent)
			}
			r0, w0 := regs.reads.Load(), regs.writes.Load()
			for range 1000 {
				if work, _ := s.Poll(); work != 0 {
					t.Fatalf("an idle step found %d work", work)
				}
			}
			if r, w := regs.reads.Load()-r0, regs.writes.Load()-w0; r != 0 || w != 0 {
				t.Fatalf("1000 idle steps read %d and wrote %d registers, want none", r, w)
			}
			// The counting works: a frame received is one refill
			// doorbell (RDAR on the ENET; virtio writes QueueNotify
			// only if the device asks, so at most one).
			w.Deliver(seeds[1])
			s.Poll()
			if tc.name == "enet" && regs.writes.Load()-w0 == 0 {
				t.Fatal("a step that refilled the ring wrote no doorbell")
			}
		})
	}
}

// wire is the wire side of a device model.
type wire interface {
	Deliver(frame []byte)
	SetOutput(fn func(frame []byte))
}
