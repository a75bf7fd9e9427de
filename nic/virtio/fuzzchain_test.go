package virtio

import (
	"encoding/binary"
	"testing"

	"github.com/tamanet/tamanet/alloc"
	"github.com/tamanet/tamanet/nic"
	"github.com/tamanet/tamanet/nic/nictest"
	"github.com/tamanet/tamanet/nic/virtio/internal/vring"
)

// FuzzTxChains lets the fuzzer play the device side of the transmit ring
// while the driver posts descriptor chains (TransmitPacket) of up to a
// dozen buffers: it takes chains, completes them or any other id with any
// length, forges the used index, and the driver reclaims and runs
// Maintain. After every step: no buffer is lost, handed out twice or put
// twice (nictest.Ledger), the free descriptors are exactly the empty
// slots, and every descriptor of a chain the device took and has not
// completed still holds the buffer it was posted with.
func FuzzTxChains(f *testing.F) {
	f.Add([]byte{30, 0, 3, 0, 5, 1, 2, 0, 0, 5, 0, 11, 1, 3, 3, 0, 5, 6, 7})
	f.Add([]byte{60, 0, 11, 0, 11, 1, 3, 1, 0, 5, 2, 0, 0, 5, 2, 0, 0, 5})
	f.Add([]byte{20, 0, 2, 1, 4, 0x40, 5, 6, 5, 1, 2, 0, 0xff, 5})
	f.Fuzz(func(t *testing.T, data []byte) {
		in := &fzReader{b: data}
		count := 8 + int(in.u8()%64)
		arena := alloc.NewArena(make([]byte, (count+4)*2048+16*1024))
		pool, err := arena.Pool(alloc.Config{Count: count})
		if err != nil {
			t.Fatal(err)
		}
		regs := fzGood(16)
		d, err := New(regs, arena, pool, Config{RxRing: 2, TxRing: 16})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		if !d.Offloads().TSO4 {
			t.Fatal("TSO4 not negotiated on a device offering it")
		}
		tx := fzRingOf(t, arena.Memory(), &regs.q[queueTx])
		held := nictest.NewLedger(pool)
		// taken: chains the device took and has not completed, by
		// head: the buffer address of each descriptor.
		taken := map[uint16][]uint64{}
		var order []uint16
		check := func() {
			t.Helper()
			fzCheck(t, d, held)
			for head, addrs := range taken {
				id := head
				for i, a := range addrs {
					b := d.tx.bufs[id]
					if b == nil || uint64(b.BodyAddr()) != a && i > 0 || i == 0 && (uint64(b.Addr()) > a || a >= uint64(b.Addr())+uint64(b.Cap())) {
						t.Fatalf("chain %d: descriptor %d given up while the device holds it", head, id)
					}
					id = d.tx.link[id]
				}
			}
		}
		// takeAll: the device takes every published chain.
		takeAll := func() {
			for tx.num > 0 {
				head, ok := tx.takeAvail()
				if !ok {
					return
				}
				var addrs []uint64
				id := head
				for k := 0; k < tx.num; k++ {
					o := int(id) * vring.DescSize
					addrs = append(addrs, binary.LittleEndian.Uint64(tx.desc[o+vring.DescAddr:]))
					if binary.LittleEndian.Uint16(tx.desc[o+vring.DescFlags:])&vring.DescFNext == 0 {
						break
					}
					id = binary.LittleEndian.Uint16(tx.desc[o+vring.DescNext:])
				}
				taken[head] = addrs
				order = append(order, head)
			}
		}
		meta := &nic.TxMeta{NeedsCsum: true, CsumStart: 34, CsumOffset: 16, GSO: nic.GSOTCPv4, GSOSize: 1448, HdrLen: 54}
		bufs := make([]*alloc.Buffer, 0, 16)
		for steps := 0; len(in.b) > 0 && steps < 200; steps++ {
			switch in.u8() % 8 {
			case 0: // post a chain
				n := 1 + int(in.u8()%12)
				bufs = bufs[:0]
				for i := 0; i < n; i++ {
					b := pool.Get()
					if b == nil {
						break
					}
					if i > 0 {
						b.Reserve(0)
					}
					b.Append(60 + int(in.u8())*7)
					bufs = append(bufs, b)
				}
				if len(bufs) == 0 {
					continue
				}
				if err := d.TransmitPacket(bufs, meta); err != nil {
					if c := nic.CauseOf(err); c != nic.RingFull && c != nic.Runt && c != nic.LinkDown && c != nic.Oversize {
						t.Fatalf("chain of %d refused: %v", len(bufs), err)
					}
					for _, b := range bufs {
						b.Free()
					}
				}
			case 1:
				takeAll()
			case 2: // complete a taken chain
				if len(order) == 0 || tx.num == 0 {
					continue
				}
				i := int(in.u8()) % len(order)
				head := order[i]
				order = append(order[:i], order[i+1:]...)
				delete(taken, head)
				tx.putUsed(uint32(head), uint32(in.u8()))
			case 3: // a used entry with any id (inside a chain, never posted, beyond the ring)
				if tx.num == 0 {
					continue
				}
				// A device completes only what it took.
				takeAll()
				id := uint32(in.u8() % 20)
				if _, ok := taken[uint16(id)]; ok {
					continue // a real completion; case 2 does those
				}
				tx.putUsed(id, 0)
			case 4: // forge the used index
				if tx.num == 0 {
					continue
				}
				tx.usedIdx += uint16(in.u8() % 24)
				vring.Store16(tx.used, vring.UsedIdx, tx.usedIdx)
			case 5:
				d.Reclaim()
			case 6:
				before := regs.resets
				d.Maintain()
				if regs.resets != before {
					taken, order = map[uint16][]uint64{}, nil
					tx = fzRing{}
					if regs.q[queueTx].ready == 1 {
						tx = fzRingOf(t, arena.Memory(), &regs.q[queueTx])
					}
				}
			case 7:
				d.TxKick()
			}
			check()
		}
		d.Close()
		nictest.CheckEmpty(t, pool, "after Close")
	})
}
