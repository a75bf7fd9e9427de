//go:build !tamago

package baseline

// Benchmarks of tamanet against the baseline, two gVisor stacks back to
// back in one process, gVisor's own work included in every figure:
//
//	go test -run '^$' -bench . -benchmem ./internal/baseline
//
// Sub-benchmarks: tamanet (stack + virtio driver over the virtiotest model),
// channel (channel endpoint + glue, transmit goroutine, over simENET) and
// channel-notify (the same, transmitting from channel's WriteNotify hook).
// allocs/packet and B/packet are runtime.MemStats deltas (Mallocs,
// TotalAlloc) of the whole process over the timed loop, divided by the
// frames both devices transmitted in it (data and acknowledgements);
// cpu-ns/packet is the process's CPU time (getrusage) over the same loop
// per frame, which the other load on a shared machine disturbs less than
// wall time.

import (
	"context"
	"io"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tamanet/tamanet/stack/stacktest"
)

// memDelta measures allocations per frame over a timed loop.
type memDelta struct {
	m0     runtime.MemStats
	cpu0   time.Duration
	frames uint64
	p      *pair
}

func startMem(p *pair) *memDelta {
	d := &memDelta{p: p}
	runtime.ReadMemStats(&d.m0)
	d.cpu0 = cpuTime()
	d.frames = p.frames()
	return d
}

// cpuTime is the CPU time (user + system) the process has used: on a
// shared machine it is steadier than wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (d *memDelta) report(b *testing.B) {
	cpu := cpuTime() - d.cpu0
	var m1 runtime.MemStats
	runtime.ReadMemStats(&m1)
	frames := d.p.frames() - d.frames
	if frames == 0 {
		b.Fatal("no frames moved")
	}
	b.ReportMetric(float64(m1.Mallocs-d.m0.Mallocs)/float64(frames), "allocs/packet")
	b.ReportMetric(float64(m1.TotalAlloc-d.m0.TotalAlloc)/float64(frames), "B/packet")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(frames), "ns/packet")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(frames), "cpu-ns/packet")
}

// BenchmarkTCPBulk streams data over one TCP connection from a to a sink
// on b; one op is 256 KiB written, the timer stops once b has read it all.
func BenchmarkTCPBulk(b *testing.B) {
	const chunk = 256 << 10
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			p := v.make(b)
			l, err := p.b.Listen("tcp", ":9")
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			var got atomic.Int64
			done := make(chan struct{})
			go func() {
				defer close(done)
				c, err := l.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				buf := make([]byte, 64<<10)
				for {
					n, err := c.Read(buf)
					got.Add(int64(n))
					if err != nil {
						return
					}
				}
			}()
			c, err := p.a.Dial(context.Background(), "tcp", "10.0.0.2:9")
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			data := make([]byte, chunk)
			// Warm up: ARP, window growth.
			for range 8 {
				if _, err := c.Write(data); err != nil {
					b.Fatal(err)
				}
			}
			waitFor(b, &got, 8*chunk)
			b.SetBytes(chunk)
			b.ReportAllocs()
			md := startMem(p)
			b.ResetTimer()
			for range b.N {
				if _, err := c.Write(data); err != nil {
					b.Fatal(err)
				}
			}
			waitFor(b, &got, int64(8+b.N)*chunk)
			b.StopTimer()
			md.report(b)
			c.Close()
			<-done
		})
	}
}

// waitFor waits until n bytes have arrived (bounded).
func waitFor(b *testing.B, got *atomic.Int64, n int64) {
	deadline := time.Now().Add(time.Minute)
	for got.Load() < n {
		if time.Now().After(deadline) {
			b.Fatalf("received %d of %d bytes in a minute", got.Load(), n)
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// BenchmarkUDPRoundTrip is one 64-byte UDP echo from a to b and back per op.
func BenchmarkUDPRoundTrip(b *testing.B) {
	benchRR(b, "udp")
}

// BenchmarkTCPRoundTrip is one 64-byte TCP echo from a to b and back per op.
func BenchmarkTCPRoundTrip(b *testing.B) {
	benchRR(b, "tcp")
}

func benchRR(b *testing.B, network string) {
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			p := v.make(b)
			stacktest.ServeEcho(b, p.b)
			c, err := p.a.Dial(context.Background(), network, "10.0.0.2:7")
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			msg := make([]byte, 64)
			buf := make([]byte, 2048)
			c.SetDeadline(time.Now().Add(2 * time.Minute))
			rr := func() {
				if _, err := c.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, buf[:len(msg)]); err != nil {
					b.Fatal(err)
				}
			}
			for range 10 {
				rr()
			}
			b.ReportAllocs()
			md := startMem(p)
			b.ResetTimer()
			for range b.N {
				rr()
			}
			b.StopTimer()
			md.report(b)
		})
	}
}
