package e2e

import (
	"fmt"
	"net"
	"os"
	"slices"
	"testing"
	"text/tabwriter"
	"time"
)

// TestSystemBenchmark measures the booted guest from the namespace and
// prints one table: TCP throughput both ways, TCP and UDP request/response
// latency, connections per second, each the median of several runs. It runs
// only with -bench (make bench).
func TestSystemBenchmark(t *testing.T) {
	if !*benchFlag {
		t.Skip("SKIP: system benchmark runs only with -args -bench (make bench)")
	}
	needGuest(t)
	// Idle first, before any traffic of ours: the host CPU QEMU uses
	// while the guest has nothing to do.
	quietInUse(t)
	idle, idleErr := idleCPU(imagePath, 10*time.Second)
	const runs = 5
	var up, down, cps []float64
	var tcp50, tcp99, udp50, udp99 []time.Duration
	for r := range runs {
		d, err := upload(32 * mib)
		if err != nil {
			t.Fatalf("run %d: upload: %v", r, err)
		}
		up = append(up, mbps(32*mib, d))
		if d, err = download(32 * mib); err != nil {
			t.Fatalf("run %d: download: %v", r, err)
		}
		down = append(down, mbps(32*mib, d))
		p50, p99, err := tcpRR(1000, 64)
		if err != nil {
			t.Fatalf("run %d: TCP request/response: %v", r, err)
		}
		tcp50, tcp99 = append(tcp50, p50), append(tcp99, p99)
		p50, p99, _, err = udpRR(1000, 64)
		if err != nil {
			t.Fatalf("run %d: UDP request/response: %v", r, err)
		}
		udp50, udp99 = append(udp50, p50), append(udp99, p99)
		c, err := connRate(200)
		if err != nil {
			t.Fatalf("run %d: connections: %v", r, err)
		}
		cps = append(cps, c)
		// One line per run in go test's benchmark format, so that
		// internal/benchsummary takes medians over runs and over
		// invocations (make ab alternates two images).
		fmt.Printf("BenchmarkSystem/%s/%s 1 %.1f up-Mbit/s %.1f down-Mbit/s %.0f tcp-p50-µs %.0f tcp-p99-µs %.0f udp-p50-µs %.0f udp-p99-µs %.0f conn/s\n",
			*targetFlag, *labelFlag, up[r], down[r], us(tcp50[r]), us(tcp99[r]), us(udp50[r]), us(udp99[r]), c)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "\nsystem benchmark (%s, median of %d runs)\tvalue\n", guestNIC, runs)
	fmt.Fprintf(tw, "TCP upload to discard (32 MiB)\t%.1f Mbit/s\n", medianF(up))
	fmt.Fprintf(tw, "TCP download from chargen (32 MiB)\t%.1f Mbit/s\n", medianF(down))
	fmt.Fprintf(tw, "TCP echo 64 B round trip p50 / p99\t%v / %v\n", medianD(tcp50).Round(time.Microsecond), medianD(tcp99).Round(time.Microsecond))
	fmt.Fprintf(tw, "UDP echo 64 B round trip p50 / p99\t%v / %v\n", medianD(udp50).Round(time.Microsecond), medianD(udp99).Round(time.Microsecond))
	fmt.Fprintf(tw, "TCP connect + 1-byte echo + close\t%.0f conn/s\n", medianF(cps))
	if idleErr != nil {
		fmt.Fprintf(tw, "host CPU of the idle guest (QEMU process, 10 s)\tnot measured: %v\n", idleErr)
	} else {
		fmt.Fprintf(tw, "host CPU of the idle guest (QEMU process, 10 s)\t%.1f %%\n", idle)
	}
	tw.Flush()
}

// connRate opens n connections one after another, exchanges one byte with
// the echo service on each and closes it; it returns connections per
// second.
func connRate(n int) (float64, error) {
	start := time.Now()
	b := []byte{'c'}
	for i := range n {
		c, err := net.DialTimeout("tcp", guestAddr(echoPort), 10*time.Second)
		if err != nil {
			return 0, fmt.Errorf("connection %d: %w", i, err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(b); err != nil {
			c.Close()
			return 0, fmt.Errorf("connection %d: %w", i, err)
		}
		if _, err := c.Read(b); err != nil {
			c.Close()
			return 0, fmt.Errorf("connection %d: %w", i, err)
		}
		c.Close()
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func medianF(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func medianD(v []time.Duration) time.Duration {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}
