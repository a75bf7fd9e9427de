package link

import (
	"testing"

	"github.com/tamanet/tamanet/alloc"
	"github.com/tamanet/tamanet/nic/virtio"
	"github.com/tamanet/tamanet/nic/virtio/virtiotest"

	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// The same paths as the nictest rig, through the real virtio driver and its
// device model: the device writes a frame into a posted pool buffer, the
// driver hands it up, the endpoint delivers it; the endpoint writes a frame,
// the driver posts it, the device consumes it, the driver reclaims it.

type vrig struct {
	pool  *alloc.Pool
	model *virtiotest.Device
	ep    *Endpoint
	d     *countingDispatcher
	out   int // frames the device sent to the wire
}

func newVirtioRig(t testing.TB) *vrig {
	t.Helper()
	mem := make([]byte, 4<<20)
	arena := alloc.NewArena(mem)
	pool, err := arena.Pool(alloc.Config{Count: 1024})
	if err != nil {
		t.Fatal(err)
	}
	model := virtiotest.New(arena.Memory(), virtiotest.Options{MAC: ourMAC})
	drv, err := virtio.New(model, arena, pool, virtio.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ep, err := New(&Options{Device: drv, Pool: pool})
	if err != nil {
		t.Fatal(err)
	}
	r := &vrig{pool: pool, model: model, ep: ep, d: &countingDispatcher{}}
	model.SetOutput(func([]byte) { r.out++ })
	ep.Attach(r.d)
	return r
}

func TestVirtioReceiveAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("SKIP: allocation counts are not meaningful under -race (sync.Pool drops items)")
	}
	r := newVirtioRig(t)
	f := frame(ourMAC, 0x0800, 1000)
	base := r.pool.InUse()
	step := func() {
		r.model.Deliver(f)
		r.ep.Poll(64)
	}
	for i := 0; i < 100; i++ {
		step()
	}
	if a := testing.AllocsPerRun(1000, step); a != 0 {
		t.Fatalf("virtio receive -> endpoint delivery -> buffer return allocates %v per frame", a)
	}
	if r.d.n != 1101 || r.pool.InUse() != base {
		t.Fatalf("delivered %d, in use %d (baseline %d)", r.d.n, r.pool.InUse(), base)
	}
}

func TestVirtioTransmitAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("SKIP: allocation counts are not meaningful under -race (sync.Pool drops items)")
	}
	r := newVirtioRig(t)
	pkt := outPacket(r.ep, 1000)
	defer pkt.DecRef()
	var l stack.PacketBufferList
	l.PushBack(pkt)
	base := r.pool.InUse()
	step := func() {
		if n, _ := r.ep.WritePackets(l); n != 1 {
			panic("not sent")
		}
		r.ep.Reclaim()
	}
	step()
	if a := testing.AllocsPerRun(1000, step); a != 0 {
		t.Fatalf("endpoint transmit -> virtio post -> reclaim allocates %v per frame", a)
	}
	if r.out != 1002 || r.pool.InUse() != base {
		t.Fatalf("device sent %d, in use %d (baseline %d)", r.out, r.pool.InUse(), base)
	}
}

func BenchmarkVirtioEndpointRx(b *testing.B) {
	r := newVirtioRig(b)
	benchRx(b, r.ep, r.d, r.model.Deliver)
}

func BenchmarkVirtioEndpointTx(b *testing.B) {
	r := newVirtioRig(b)
	benchTx(b, r.ep)
	if r.out != b.N {
		b.Fatalf("device sent %d of %d", r.out, b.N)
	}
}
