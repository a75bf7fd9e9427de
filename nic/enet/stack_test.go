package enet_test

// Host integration: two gVisor stacks back to back through two ENET device
// models, driven by the real driver, with and without fault injection
// (mirrors stack's virtio back-to-back test).

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/tamanet/tamanet/alloc"
	"github.com/tamanet/tamanet/nic"
	"github.com/tamanet/tamanet/nic/enet"
	"github.com/tamanet/tamanet/nic/enet/enettest"
	"github.com/tamanet/tamanet/stack"
)

var (
	addrA = netip.MustParsePrefix("10.0.0.1/24")
	addrB = netip.MustParsePrefix("10.0.0.2/24")
)

// enode is one side: DMA memory, pool, device model, driver and stack.
type enode struct {
	pool     *alloc.Pool
	model    *enettest.Device
	drv      *enet.Driver
	s        *stack.Stack
	baseline int
}

func newEnode(t testing.TB, mac [6]byte, addr netip.Prefix, gw netip.Addr) *enode {
	t.Helper()
	mem := make([]byte, 4<<20)
	arena := alloc.NewArena(mem)
	pool, err := arena.Pool(alloc.Config{Count: 1024})
	if err != nil {
		t.Fatal(err)
	}
	model := enettest.New(arena.Memory(), enettest.Options{MAC: mac, TxAlign: enet.DefaultTxAlign})
	drv, err := enet.New(model, arena, pool, enet.Config{RxRing: 128, TxRing: 128})
	if err != nil {
		t.Fatal(err)
	}
	s, err := stack.New(drv, pool, stack.Config{Addr: addr, Gateway: gw})
	if err != nil {
		t.Fatal(err)
	}
	if s.MAC().String() != net.HardwareAddr(mac[:]).String() {
		t.Fatalf("stack MAC %v, want the device's %x", s.MAC(), mac)
	}
	// Frame-received and frame-sent events wake the poll loop.
	drv.EnableInterrupts(enet.EventRXF | enet.EventTXF)
	model.SetInterrupt(s.Wake)
	return &enode{pool: pool, model: model, drv: drv, s: s, baseline: pool.InUse()}
}

func enetPair(t testing.TB) (a, b *enode) {
	t.Helper()
	a = newEnode(t, [6]byte{2, 0, 0, 0, 0, 1}, addrA, addrB.Addr())
	b = newEnode(t, [6]byte{2, 0, 0, 0, 0, 2}, addrB, addrA.Addr())
	enettest.Pipe(a.model, b.model)
	a.s.Start()
	b.s.Start()
	t.Cleanup(func() {
		a.s.Close()
		b.s.Close()
		a.drv.Close()
		b.drv.Close()
	})
	return a, b
}

func faults(seed uint64) enettest.Faults {
	return enettest.Faults{
		Seed:      seed,
		Drop:      0.05,
		Duplicate: 0.02,
		Reorder:   0.02,
		Corrupt:   0.01,
		BadLength: 0.005,
		RxError:   0.005,
		TxError:   0.005,
	}
}

func tcpSize(withFaults bool) int {
	switch {
	case raceEnabled || testing.Short():
		return 1 << 20
	case withFaults:
		return 4 << 20
	}
	return 16 << 20
}

func TestStacksBackToBack(t *testing.T) {
	for _, withFaults := range []bool{false, true} {
		name := "clean"
		if withFaults {
			name = "faults"
		}
		t.Run(name, func(t *testing.T) {
			a, b := enetPair(t)
			if withFaults {
				a.model.SetFaults(faults(1))
				b.model.SetFaults(faults(2))
			}
			startServices(t, b.s)
			t.Run("ping", func(t *testing.T) { testPing(t, a.s, b.s, withFaults) })
			t.Run("udp-sizes", func(t *testing.T) { testUDP(t, a.s, withFaults) })
			size := tcpSize(withFaults)
			t.Run(fmt.Sprintf("tcp-%dKiB-upload", size>>10), func(t *testing.T) { testUpload(t, a.s, size) })
			t.Run(fmt.Sprintf("tcp-%dKiB-download", size>>10), func(t *testing.T) { testDownload(t, a.s, size) })
			t.Run("tcp-16-connections", func(t *testing.T) { testConns(t, a.s, 16) })
			if withFaults {
				a.model.SetFaults(enettest.Faults{})
				b.model.SetFaults(enettest.Faults{})
				b.model.Flush()
				a.model.Flush()
				checkFaultsCounted(t, a, b)
			}
			checkQuiet(t, a, b)
		})
	}
}

// startServices: UDP echo on 7, TCP echo on 7, TCP sha on 9 (length, then
// bytes; answers their SHA-256), TCP gen on 19 (length and seed; sends that
// many bytes of the seeded stream).
func startServices(t testing.TB, s *stack.Stack) {
	t.Helper()
	pc, err := s.ListenPacket("udp", ":7")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
	serve := func(port string, h func(net.Conn)) {
		l, err := s.Listen("tcp", ":"+port)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					c.SetDeadline(time.Now().Add(5 * time.Minute))
					h(c)
				}()
			}
		}()
	}
	serve("7", func(c net.Conn) { io.Copy(c, c) })
	serve("9", func(c net.Conn) {
		var hdr [8]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		h := sha256.New()
		if _, err := io.CopyN(h, c, int64(binary.BigEndian.Uint64(hdr[:]))); err != nil {
			return
		}
		c.Write(h.Sum(nil))
	})
	serve("19", func(c net.Conn) {
		var hdr [16]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		n := int64(binary.BigEndian.Uint64(hdr[:8]))
		io.Copy(c, io.LimitReader(stream(binary.BigEndian.Uint64(hdr[8:])), n))
	})
}

func stream(seed uint64) io.Reader {
	var s [32]byte
	binary.BigEndian.PutUint64(s[:], seed)
	return rand.NewChaCha8(s)
}

func streamSum(seed uint64, n int) []byte {
	h := sha256.New()
	io.CopyN(h, stream(seed), int64(n))
	return h.Sum(nil)
}

func testPing(t *testing.T, a, b *stack.Stack, withFaults bool) {
	ok := 0
	const count = 20
	for i := 0; i < count; i++ {
		payload := bytes.Repeat([]byte{byte(i), 0x5a}, 28)
		for _, p := range [][2]*stack.Stack{{a, b}, {b, a}} {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, err := p[0].Ping(ctx, p[1].Config().Addr.Addr(), uint16(i), payload)
			cancel()
			if err == nil {
				ok++
			} else if !withFaults {
				t.Fatalf("ping %d %v -> %v: %v", i, p[0].Config().Addr, p[1].Config().Addr, err)
			}
		}
	}
	// With faults each round trip crosses ~8% loss each way (drop, error
	// bits, bad lengths) plus held-back (reordered) frames that arrive
	// after the ping gave up: most, not all, come back.
	if ok < 2*count/2 {
		t.Fatalf("%d of %d pings answered", ok, 2*count)
	}
}

// testUDP echoes payloads of 1..1472 bytes (every 7th size and the edges)
// and checks each reply byte for byte; with faults a lost datagram is sent
// again and a corrupted reply must never be accepted.
func testUDP(t *testing.T, a *stack.Stack, withFaults bool) {
	c, err := a.Dial(context.Background(), "udp", "10.0.0.2:7")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rng := rand.New(rand.NewPCG(7, 7))
	buf := make([]byte, 2048)
	for size := 1; size <= 1472; size++ {
		if size%7 != 0 && size > 20 && size < 1460 {
			continue
		}
		msg := make([]byte, size)
		for i := range msg {
			msg[i] = byte(rng.Uint32())
		}
		if size >= 2 {
			binary.BigEndian.PutUint16(msg, uint16(size))
		}
		got := false
		for try := 0; try < 20 && !got; try++ {
			if try > 0 && !withFaults {
				t.Fatalf("size %d: no reply", size)
			}
			if _, err := c.Write(msg); err != nil {
				t.Fatalf("size %d: %v", size, err)
			}
			wait := 2 * time.Second
			if withFaults {
				wait = 100 * time.Millisecond
			}
			c.SetReadDeadline(time.Now().Add(wait))
			for {
				n, err := c.Read(buf)
				if err != nil {
					break
				}
				if n == size && bytes.Equal(buf[:n], msg) {
					got = true
					break
				}
				if n == size && size >= 2 {
					t.Fatalf("size %d: reply of the right size with different bytes", size)
				}
			}
		}
		if !got {
			t.Fatalf("size %d: no reply after retries", size)
		}
	}
}

func dialB(t testing.TB, a *stack.Stack, port string) net.Conn {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := a.Dial(ctx, "tcp", "10.0.0.2:"+port)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Minute))
	return c
}

func testUpload(t *testing.T, a *stack.Stack, size int) {
	c := dialB(t, a, "9")
	defer c.Close()
	start := time.Now()
	var hdr [8]byte
	binary.BigEndian.PutUint64(hdr[:], uint64(size))
	if _, err := c.Write(hdr[:]); err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(c, stream(11), int64(size)); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, sha256.Size)
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if want := streamSum(11, size); !bytes.Equal(got, want) {
		t.Fatalf("SHA-256 at the receiver %x, sent %x", got, want)
	}
	el := time.Since(start)
	t.Logf("%d KiB up in %v (%.0f Mbit/s)", size>>10, el.Round(time.Millisecond), float64(size)*8/el.Seconds()/1e6)
}

func testDownload(t *testing.T, a *stack.Stack, size int) {
	c := dialB(t, a, "19")
	defer c.Close()
	start := time.Now()
	var hdr [16]byte
	binary.BigEndian.PutUint64(hdr[:8], uint64(size))
	binary.BigEndian.PutUint64(hdr[8:], 13)
	if _, err := c.Write(hdr[:]); err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	if n, err := io.CopyN(h, c, int64(size)); err != nil {
		t.Fatalf("after %d bytes: %v", n, err)
	}
	if got, want := h.Sum(nil), streamSum(13, size); !bytes.Equal(got, want) {
		t.Fatalf("SHA-256 received %x, sent %x", got, want)
	}
	el := time.Since(start)
	t.Logf("%d KiB down in %v (%.0f Mbit/s)", size>>10, el.Round(time.Millisecond), float64(size)*8/el.Seconds()/1e6)
}

func testConns(t *testing.T, a *stack.Stack, conns int) {
	const each = 32 << 10
	var wg sync.WaitGroup
	for i := 0; i < conns; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c := dialB(t, a, "7")
			defer c.Close()
			msg := bytes.Repeat([]byte{byte(i)}, each)
			go c.Write(msg)
			got := make([]byte, each)
			if _, err := io.ReadFull(c, got); err != nil {
				t.Errorf("connection %d: %v", i, err)
				return
			}
			if !bytes.Equal(got, msg) {
				t.Errorf("connection %d: echo differs", i)
			}
		}(i)
	}
	wg.Wait()
}

// checkFaultsCounted: every injected receive error and bad length was
// counted by the driver under its cause.
func checkFaultsCounted(t *testing.T, a, b *enode) {
	for _, n := range []*enode{a, b} {
		ms := n.model.Stats()
		var ns nic.Stats
		n.drv.Stats(&ns)
		t.Logf("%v model: dropped %d dup %d reordered %d corrupted %d bad_len %d rx_err %d tx_err %d; driver rx drops %v tx drops %v",
			n.s.Config().Addr, ms.Dropped, ms.Duplicated, ms.Reordered, ms.Corrupted, ms.BadLengths, ms.RxErrors, ms.TxErrors, ns.Rx.Drops, ns.Tx.Drops)
		if ms.Dropped == 0 || ms.Duplicated == 0 || ms.Corrupted == 0 {
			t.Errorf("%v: faults were not injected: %+v", n.s.Config().Addr, ms)
		}
		errs := ns.Rx.Drops[nic.CRC] + ns.Rx.Drops[nic.LengthViolation] + ns.Rx.Drops[nic.NonOctet] +
			ns.Rx.Drops[nic.Overrun] + ns.Rx.Drops[nic.Truncated]
		if errs != ms.RxErrors {
			t.Errorf("%v: %d receive errors injected, %d counted", n.s.Config().Addr, ms.RxErrors, errs)
		}
		if ms.BadLengths > 0 && ns.Rx.Drops[nic.BadLength] == 0 {
			t.Errorf("%v: %d bad lengths injected, none counted", n.s.Config().Addr, ms.BadLengths)
		}
		if ms.DeviceErrors != 0 || ms.BusErrors != 0 {
			t.Errorf("%v: the driver broke a rule: %+v", n.s.Config().Addr, ms)
		}
	}
}

// checkQuiet waits for both sides to settle and checks every pool buffer
// came back: only the posted receive ring remains in use.
func checkQuiet(t *testing.T, nodes ...*enode) {
	deadline := time.Now().Add(10 * time.Second)
	for _, n := range nodes {
		for n.pool.InUse() != n.baseline && time.Now().Before(deadline) {
			n.s.Wake()
			time.Sleep(5 * time.Millisecond)
		}
		st := n.s.Stats()
		if st.Pool.InUse != n.baseline {
			t.Errorf("%v: pool in use %d after traffic, baseline %d", n.s.Config().Addr, st.Pool.InUse, n.baseline)
		}
		if st.Pool.RefusedPuts != 0 {
			t.Errorf("%v: %d refused puts", n.s.Config().Addr, st.Pool.RefusedPuts)
		}
	}
}
