package link

import (
	"testing"

	"github.com/tamanet/tamanet/alloc"
	"github.com/tamanet/tamanet/nic"
	"github.com/tamanet/tamanet/nic/virtio/virtiotest"
	"github.com/tamanet/tamanet/stack/stacktest"
)

// The same paths as the nictest rig, through the real virtio driver and its
// device model: the device writes a frame into a posted pool buffer, the
// driver hands it up, the endpoint delivers it; the endpoint writes a frame,
// the driver posts it, the device consumes it, the driver reclaims it.

// drvRig is an endpoint over a real driver and its device model.
type drvRig struct {
	pool    *alloc.Pool
	deliver func([]byte) // a frame from the wire into the device model
	ep      *Endpoint
	d       *countingDispatcher
	out     int // frames the device sent to the wire
}

// wireModel is the wire side of a device model (virtiotest, enettest).
type wireModel interface {
	Deliver(frame []byte)
	SetOutput(fn func(frame []byte))
}

// newDrvRig attaches an endpoint over drv, whose buffers come from pool,
// and counts the frames model sends.
func newDrvRig(t testing.TB, pool *alloc.Pool, model wireModel, drv nic.Device) *drvRig {
	t.Helper()
	ep, err := New(&Options{Device: drv})
	if err != nil {
		t.Fatal(err)
	}
	r := &drvRig{pool: pool, deliver: model.Deliver, ep: ep, d: &countingDispatcher{}}
	model.SetOutput(func([]byte) { r.out++ })
	ep.Attach(r.d)
	return r
}

func newVirtioRig(t testing.TB) *drvRig {
	t.Helper()
	pool, model, drv := stacktest.Virtio(t, virtiotest.Options{MAC: ourMAC})
	return newDrvRig(t, pool, model, drv)
}

func BenchmarkVirtioEndpointRx(b *testing.B) {
	r := newVirtioRig(b)
	benchRx(b, r.ep, r.d, r.deliver)
}

func BenchmarkVirtioEndpointTx(b *testing.B) {
	r := newVirtioRig(b)
	benchTx(b, r.ep)
	if r.out != b.N {
		b.Fatalf("device sent %d of %d", r.out, b.N)
	}
}
