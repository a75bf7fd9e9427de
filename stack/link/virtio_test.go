package link

import (
	"testing"

	"github.com/tamanet/tamanet/alloc"
	"github.com/tamanet/tamanet/nic/virtio"
	"github.com/tamanet/tamanet/nic/virtio/virtiotest"
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
