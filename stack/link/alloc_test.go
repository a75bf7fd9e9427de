package link

import (
	"testing"

	"github.com/tamanet/tamanet/alloc"
	"github.com/tamanet/tamanet/nic/enet"
	"github.com/tamanet/tamanet/nic/enet/enettest"
	"github.com/tamanet/tamanet/nic/nictest"

	"github.com/tamanet/tamanet/stack/stacktest"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// allocRuns is how many frames each allocation test moves, one per run,
// after 100 unchecked ones that warm gVisor's view and packet pools.
const (
	allocRuns   = 2000
	allocWarmup = 100
)

// checkRxAllocs: inject puts a frame on the device, the endpoint polls it
// off the driver, delivers it and returns the buffer to the pool; the whole
// path allocates nothing, every frame is delivered and the pool is back at
// its baseline.
func checkRxAllocs(t *testing.T, ep *Endpoint, d *countingDispatcher, pool *alloc.Pool, inject func([]byte)) {
	t.Helper()
	f := frame(ourMAC, 0x0800, 1000)
	step := func() {
		inject(f)
		ep.Poll(64)
	}
	for i := 0; i < allocWarmup; i++ {
		step()
	}
	base, n := pool.InUse(), d.n
	nictest.NoAllocs(t, allocRuns, "driver receive -> endpoint delivery -> buffer return", step)
	if d.n-n != allocRuns+1 || pool.InUse() != base {
		t.Fatalf("delivered %d of %d frames, pool in use %d (baseline %d)", d.n-n, allocRuns+1, pool.InUse(), base)
	}
}

// checkTxAllocs: the endpoint writes a packet into a pool buffer, the
// driver posts it and the device sends it, the endpoint reclaims the
// buffer; the whole path allocates nothing, sent reports every frame and
// the pool is back at its baseline.
func checkTxAllocs(t *testing.T, ep *Endpoint, pool *alloc.Pool, sent func() int) {
	t.Helper()
	pkt := outPacket(ep, 1000)
	defer pkt.DecRef()
	var l stack.PacketBufferList
	l.PushBack(pkt)
	written := 0
	step := func() {
		n, _ := ep.WritePackets(l)
		written += n
		ep.Reclaim()
	}
	for i := 0; i < allocWarmup; i++ {
		step()
	}
	base, s0 := pool.InUse(), sent()
	written = 0
	nictest.NoAllocs(t, allocRuns, "endpoint transmit -> driver post -> reclaim", step)
	if written != allocRuns+1 || sent()-s0 != allocRuns+1 || pool.InUse() != base {
		t.Fatalf("written %d, sent %d, of %d frames; pool in use %d (baseline %d)", written, sent()-s0, allocRuns+1, pool.InUse(), base)
	}
}

// Through the in-memory fake device.

func TestReceiveAllocs(t *testing.T) {
	r := newRig(t, nictest.Config{})
	checkRxAllocs(t, r.ep, r.d, r.pool, func(f []byte) { r.dev.Inject(f) })
}

func TestTransmitAllocs(t *testing.T) {
	r := newRig(t, nictest.Config{})
	sent := 0
	r.dev.OnTransmit = func([]byte) { sent++ }
	checkTxAllocs(t, r.ep, r.pool, func() int { return sent })
}

// Through the virtio driver and its device model.

func TestVirtioReceiveAllocs(t *testing.T) {
	r := newVirtioRig(t)
	checkRxAllocs(t, r.ep, r.d, r.pool, r.deliver)
}

func TestVirtioTransmitAllocs(t *testing.T) {
	r := newVirtioRig(t)
	checkTxAllocs(t, r.ep, r.pool, func() int { return r.out })
}

// Through the ENET driver and its device model: the descriptors, pool
// buffers and the model share one DMA region, as on the board.

func newEnetRig(t testing.TB) *drvRig {
	t.Helper()
	pool, model, drv := stacktest.ENET(t, enettest.Options{MAC: ourMAC, TxAlign: enet.DefaultTxAlign}, enet.Config{})
	t.Cleanup(func() { drv.Close() })
	return newDrvRig(t, pool, model, drv)
}

func TestEnetReceiveAllocs(t *testing.T) {
	r := newEnetRig(t)
	checkRxAllocs(t, r.ep, r.d, r.pool, r.deliver)
}

func TestEnetTransmitAllocs(t *testing.T) {
	r := newEnetRig(t)
	checkTxAllocs(t, r.ep, r.pool, func() int { return r.out })
}
