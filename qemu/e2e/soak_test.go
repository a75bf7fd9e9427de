package e2e

// The soak: mixed traffic against the booted guest for -soak (make soak
// DURATION=30m; make test runs two minutes on each target), /stats sampled
// every -soak-interval, and a verdict on the samples:
//
//   - the live Go heap, the goroutine count and the pool's occupancy must
//     not trend upward (package qemu/soak's detector: medians of the first
//     and last third after a warm-up);
//   - every service must keep answering (any failed TCP exchange, HTTP
//     request or burst of pings fails; UDP may lose a few datagrams);
//   - no counter may show a leak: once the traffic stops, the pool is back
//     to its idle occupancy, no TCP connection is left established, the
//     goroutines are back to their idle count, the pool never refused a
//     put, and the malformed frames were counted as drops.
//
// The samples go to build/soak-TARGET/soak.csv and soak.svg (memory, pool
// occupancy, throughput, drops, goroutines and connections over time), the
// figures to summary.txt.

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tamanet/tamanet/internal/prereq"
	"github.com/tamanet/tamanet/qemu/soak"
)

var (
	soakFlag     = flag.Duration("soak", 2*time.Minute, "TestSoak: how long to drive traffic (0 skips the soak)")
	soakInterval = flag.Duration("soak-interval", 5*time.Second, "TestSoak: /stats sampling period")
	soakOut      = flag.String("soak-out", "", "TestSoak: directory for soak.csv, soak.svg and summary.txt (default build/soak-TARGET)")
)

// Soak traffic rates: bounded, so the guest is busy but the sampling and
// the round trips still get through, and so two soaks can share a host.
const (
	soakBulkChunk   = 256 << 10 // bytes per bulk transfer
	soakBulkCap     = 16e6      // bit/s per direction, at most
	soakShortPeriod = 250 * time.Millisecond
	soakUDPPeriod   = 50 * time.Millisecond
	soakLongConns   = 4
	soakPingPeriod  = 15 * time.Second
	soakBadPeriod   = 10 * time.Second
	soakRRBatch     = 50
	soakOpTimeout   = 2 * time.Minute
	// soakUDPLossMax is the share of UDP round trips that may go
	// unanswered, and soakUDPRunMax how many in a row (each waits a
	// second): UDP promises nothing, and on a loaded host a TCG guest
	// loses a few per cent of them while bulk TCP shares the link (see
	// the summary's frame accounting). A service that stops answering
	// loses them all.
	soakUDPLossMax = 0.20
	soakUDPRunMax  = 10
)

// worker counts one traffic source's operations and failures.
type worker struct {
	name  string
	tcp   bool // failures fail the soak (UDP: only above soakUDPLossMax)
	ops   atomic.Int64
	fails atomic.Int64
	bytes atomic.Int64
	late  atomic.Int64 // answers that came after their timeout
	run   atomic.Int64 // longest run of failures in a row
	inRow int64        // current run (the worker's goroutine only)
	mu    sync.Mutex
	errs  []string // the first few failures
}

func (w *worker) ok(n int) {
	w.inRow = 0
	w.ops.Add(1)
	w.bytes.Add(int64(n))
}

func (w *worker) fail(err error) {
	w.ops.Add(1)
	w.fails.Add(1)
	if w.inRow++; w.inRow > w.run.Load() {
		w.run.Store(w.inRow)
	}
	w.mu.Lock()
	if len(w.errs) < 5 {
		w.errs = append(w.errs, time.Now().Format("15:04:05")+" "+err.Error())
	}
	w.mu.Unlock()
}

// sleepCtx sleeps d or until ctx is done; it reports whether to go on.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// soakColumns are the columns of the soak's table, one row a sample.
var soakColumns = []string{
	"t_s", "heap_live_bytes", "heap_sys_bytes", "heap_objects", "goroutines", "num_gc",
	"pool_in_use", "pool_high_water", "pool_exhausted",
	"rx_packets", "tx_packets", "rx_bytes", "tx_bytes", "rx_mbps", "tx_mbps",
	"drops", "drops_per_s", "malformed_sent", "tcp_established", "nic_resets",
	"client_ops", "client_failures",
}

func TestSoak(t *testing.T) {
	if *soakFlag <= 0 {
		t.Skip("SKIP: -soak 0")
	}
	needGuest(t)
	if guestMAC == nil || tapName == "" {
		t.Fatal("guest MAC or tap unknown")
	}
	dur := *soakFlag
	out := *soakOut
	if out == "" {
		root, err := prereq.ModuleRoot(".")
		if err != nil {
			t.Fatal(err)
		}
		out = filepath.Join(root, "build", "soak-"+*targetFlag)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	// Keep the guest's console next to the samples: a crash's first
	// lines are what explain it.
	defer func() {
		if b, err := os.ReadFile(serialPath); err == nil {
			os.WriteFile(filepath.Join(out, "serial.log"), b, 0o644)
		}
	}()

	// Idle baseline: pool occupancy, goroutines, connections.
	baseInUse := quietInUse(t)
	base, err := fetchStatsQ("?gc=1")
	if err != nil {
		t.Fatalf("GET /stats: %v", err)
	}
	baseG := mustStat(t, base, "go.goroutines")
	baseEst, _ := stat(base, "tcp.current_established")
	t.Logf("idle baseline: pool in_use %v, goroutines %v, established %v, live heap %.2f MiB",
		baseInUse, baseG, baseEst, mustStat(t, base, "go.heap_alloc")/mib)

	// Oversize frames need the tap to take them; the guest's MSS and
	// our datagram sizes keep everything else at 1500.
	if out, err := exec.Command("ip", "link", "set", tapName, "mtu", "2000").CombinedOutput(); err != nil {
		t.Fatalf("raise %s MTU: %v %s", tapName, err, out)
	}
	defer exec.Command("ip", "link", "set", tapName, "mtu", "1500").Run()
	raw := openRaw(t)
	// The tap's counters: what the host handed QEMU for the guest
	// (tx) and took from it (rx), to place a loss on either side.
	tapDrops0 := tapDrops(t)
	tapTx0, tapRx0 := tapStat(t, "tx_packets"), tapStat(t, "rx_packets")

	ctx, cancel := context.WithTimeout(context.Background(), dur)
	defer cancel()
	var (
		wg        sync.WaitGroup
		workers   []*worker
		malformed atomic.Int64
	)
	spawn := func(name string, tcp bool, loop func(w *worker)) {
		w := &worker{name: name, tcp: tcp}
		workers = append(workers, w)
		wg.Add(1)
		go func() {
			defer wg.Done()
			loop(w)
		}()
	}
	start := time.Now()
	// A bulk worker moves soakBulkChunk at a time, no faster than
	// soakBulkCap.
	bulk := func(name string, transfer func(n int) (time.Duration, error)) {
		spawn(name, true, func(w *worker) {
			for ctx.Err() == nil {
				d, err := transfer(soakBulkChunk)
				if err != nil {
					w.fail(err)
					sleepCtx(ctx, time.Second)
					continue
				}
				w.ok(soakBulkChunk)
				sleepCtx(ctx, max(0, time.Duration(float64(soakBulkChunk)*8/soakBulkCap*float64(time.Second))-d))
			}
		})
	}
	bulk("bulk upload (discard)", pacedUpload)
	bulk("bulk download (chargen)", download)
	spawn("TCP round trips (one connection)", true, func(w *worker) { soakRR(ctx, w) })
	for i := range soakLongConns {
		spawn(fmt.Sprintf("long-lived echo %d", i), true, func(w *worker) { soakLong(ctx, w, uint64(i)) })
	}
	abandoned := &worker{name: "abandoned connections"}
	workers = append(workers, abandoned)
	spawn("short-lived connections", true, func(w *worker) { soakShort(ctx, w, abandoned) })
	spawn("UDP echo", false, func(w *worker) { soakUDP(ctx, w) })
	spawn("HTTP index", true, func(w *worker) {
		for sleepCtx(ctx, 2*time.Second) {
			if n, err := httpGet("/"); err != nil {
				w.fail(err)
			} else {
				w.ok(n)
			}
		}
	})
	spawn("ping", true, func(w *worker) {
		for sleepCtx(ctx, soakPingPeriod) {
			out, err := exec.CommandContext(context.Background(), "ping", "-n", "-q", "-c", "5", "-i", "0.2", "-W", "5", guestIP).CombinedOutput()
			if err != nil {
				w.fail(fmt.Errorf("ping: %v: %s", err, lastLines(string(out), 2)))
			} else {
				w.ok(0)
			}
		}
	})
	spawn("malformed frames", false, func(w *worker) {
		for sleepCtx(ctx, soakBadPeriod) {
			n, err := malformedBurst(raw, w.ops.Load())
			malformed.Add(int64(n))
			if err != nil {
				w.fail(err)
			} else {
				w.ok(n)
			}
		}
	})

	// Sample until the traffic stops.
	tb := &soak.Table{Columns: soakColumns}
	var prev map[string]float64
	var prevT float64
	badSamples, lastGood := 0, time.Now()
	missing := map[string]bool{}
	sample := func() {
		m, err := fetchStatsQ("?gc=1")
		if err != nil {
			badSamples++
			t.Errorf("sample at %v: GET /stats: %v", time.Since(start).Round(time.Second), err)
			return
		}
		lastGood = time.Now()
		now := time.Since(start).Seconds()
		// A counter /stats lacks would plot, and trend, as a flat zero.
		g := func(p string) float64 {
			v, ok := stat(m, p)
			if !ok && !missing[p] {
				missing[p] = true
				t.Errorf("/stats has no %s", p)
			}
			return v
		}
		rate := func(p string, scale float64) float64 {
			if prev == nil || now <= prevT {
				return 0
			}
			v, _ := stat(prev, p)
			return (g(p) - v) * scale / (now - prevT)
		}
		dropsPerS := 0.0
		if prev != nil && now > prevT {
			dropsPerS = (dropTotal(m) - dropTotal(prev)) / (now - prevT)
		}
		var ops, fails int64
		for _, w := range workers {
			ops += w.ops.Load()
			fails += w.fails.Load()
		}
		err = tb.Add(now, g("go.heap_alloc"), g("go.heap_sys"), g("go.heap_objects"), g("go.goroutines"), g("go.num_gc"),
			g("pool.in_use"), g("pool.high_water"), g("pool.exhausted"),
			g("nic.rx.packets"), g("nic.tx.packets"), g("nic.rx.bytes"), g("nic.tx.bytes"),
			rate("nic.rx.bytes", 8e-6), rate("nic.tx.bytes", 8e-6),
			dropTotal(m), dropsPerS, float64(malformed.Load()), g("tcp.current_established"), g("nic.resets"),
			float64(ops), float64(fails))
		if err != nil {
			t.Errorf("sample at %v: %v", time.Since(start).Round(time.Second), err)
		}
		prev, prevT = m, now
	}
	sample()
	tick := time.NewTicker(*soakInterval)
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-tick.C:
			sample()
			if time.Since(lastGood) > time.Minute {
				cancel()
				t.Errorf("the guest's HTTP service has not answered for %v: stopping the soak", time.Since(lastGood).Round(time.Second))
			}
		}
	}
	tick.Stop()
	sample()
	elapsed := time.Since(start)
	waitDone := make(chan struct{})
	go func() { wg.Wait(); close(waitDone) }()
	select {
	case <-waitDone:
	case <-time.After(soakOpTimeout + 30*time.Second):
		t.Errorf("traffic workers still running %v after the soak ended", soakOpTimeout+30*time.Second)
	}

	// Files first: a failing soak's plot is the most useful one.
	writeSoakFiles(t, out, tb)

	// Services kept answering.
	for _, w := range workers {
		ops, fails := w.ops.Load(), w.fails.Load()
		w.mu.Lock()
		errs := strings.Join(w.errs, "; ")
		w.mu.Unlock()
		t.Logf("%-34s %7d ops, %5d failed, %5d late, %8.1f MiB", w.name, ops, fails, w.late.Load(), float64(w.bytes.Load())/mib)
		switch {
		case w == abandoned:
		case ops == 0 && w.name != "ping" && w.name != "malformed frames":
			t.Errorf("%s: no operation in %v", w.name, elapsed.Round(time.Second))
		case w.tcp && fails > 0:
			t.Errorf("%s: %d of %d failed: %s", w.name, fails, ops, errs)
		case !w.tcp && float64(fails) > soakUDPLossMax*float64(ops):
			t.Errorf("%s: %d of %d failed (more than %.0f%%): %s", w.name, fails, ops, 100*soakUDPLossMax, errs)
		case !w.tcp && w.run.Load() >= soakUDPRunMax:
			t.Errorf("%s: %d failed in a row: %s", w.name, w.run.Load(), errs)
		}
	}

	// Trends.
	ts := tb.Column("t_s")
	checks := []struct {
		col   string
		trend soak.Trend
	}{
		// The live heap (after a collection): 1 MiB or 10%.
		{"heap_live_bytes", soak.Trend{Warmup: 0.25, Abs: 1 << 20, Rel: 0.10}},
		{"heap_objects", soak.Trend{Warmup: 0.25, Abs: 5000, Rel: 0.10}},
		// Abandoned connections live up to the services' idle timeout:
		// a plateau, not a trend.
		{"goroutines", soak.Trend{Warmup: 0.25, Abs: 10}},
		// Buffers in flight jump with the traffic; a leak of 64 is
		// a quarter of a receive ring.
		{"pool_in_use", soak.Trend{Warmup: 0.25, Abs: 64}},
	}
	var summary strings.Builder
	for _, c := range checks {
		v, err := c.trend.Upward(ts, tb.Column(c.col))
		if err != nil {
			t.Errorf("%s: %v", c.col, err)
			continue
		}
		fmt.Fprintf(&summary, "trend %s: %v\n", c.col, v)
		if v.Upward {
			t.Errorf("%s trends upward: %v", c.col, v)
		} else {
			t.Logf("%s: %v", c.col, v)
		}
	}

	// Counters after the traffic: back to idle. Abandoned connections
	// close once the services' idle timeout has passed.
	settle := time.Now().Add(90 * time.Second)
	var end map[string]float64
	for {
		end, err = fetchStatsQ("?gc=1")
		if err == nil {
			est, _ := stat(end, "tcp.current_established")
			if mustStat(t, end, "pool.in_use") <= baseInUse && est <= baseEst && mustStat(t, end, "go.goroutines") <= baseG {
				break
			}
		}
		if time.Now().After(settle) {
			break
		}
		time.Sleep(time.Second)
	}
	if err != nil {
		t.Fatalf("GET /stats after the soak: %v", err)
	}
	endEst, _ := stat(end, "tcp.current_established")
	if v := mustStat(t, end, "pool.in_use"); v > baseInUse {
		t.Errorf("pool in_use %v after the soak, idle baseline %v: buffers leaked", v, baseInUse)
	}
	if endEst > baseEst {
		t.Errorf("%v TCP connections still established after the soak (baseline %v); the guest's connections now: %s", endEst, baseEst, guestConns())
	}
	if v := mustStat(t, end, "go.goroutines"); v > baseG {
		t.Errorf("%v goroutines after the soak, %v before: goroutines leaked; the guest's goroutines:\n%s", v, baseG, guestGoroutines())
	}
	if v, _ := stat(end, "pool.refused_puts"); v > 0 {
		t.Errorf("pool refused %v puts (double put or foreign buffer)", v)
	}
	// Frame accounting across the tap: frames the host gave QEMU for the
	// guest against frames the guest's driver saw (delivered or
	// dropped), and the other way, to place a loss on the host's or
	// the guest's side.
	tapSent := tapStat(t, "tx_packets") - tapTx0
	guestRx := guestRxFrames(end) - guestRxFrames(base)
	linkLost := max(0, tapSent-guestRx)
	// Every malformed frame shows up in the drop counters, unless the
	// host's tap dropped it (its own counter) or it was lost before the
	// guest's NIC (the accounting above): a frame that reached the guest
	// and was not counted fails the soak.
	drops := dropTotal(end) - dropTotal(base)
	sent := float64(malformed.Load())
	if tapLost := tapDrops(t) - tapDrops0; drops+linkLost+tapLost < sent {
		t.Errorf("%v malformed frames sent, %v frames lost before the guest's NIC, %v dropped by the tap, drop counters rose by only %v (%s)", sent, linkLost, tapLost, drops, dropDiff(base, end))
	}

	// Figures.
	heap := tb.Column("heap_live_bytes")
	mbit := make([]float64, len(ts))
	for i, r := range tb.Column("rx_mbps") {
		mbit[i] = r + tb.Column("tx_mbps")[i]
	}
	third := max(1, (len(mbit)-1)/3)
	tpFirst, tpLast := soak.Median(mbit[1:1+third]), soak.Median(mbit[len(mbit)-third:])
	drift := 0.0
	if tpFirst > 0 {
		drift = 100 * (tpLast - tpFirst) / tpFirst
	}
	fmt.Fprintf(&summary, "target %s, nic %s, soak %v, %d samples every %v\n", *targetFlag, guestNIC, elapsed.Round(time.Second), len(ts), *soakInterval)
	fmt.Fprintf(&summary, "live heap: idle before %.2f MiB; under traffic first sample %.2f MiB, last %.2f MiB, max %.2f MiB; idle after %.2f MiB\n",
		mustStat(t, base, "go.heap_alloc")/mib, heap[0]/mib, heap[len(heap)-1]/mib, slices.Max(heap)/mib, mustStat(t, end, "go.heap_alloc")/mib)
	fmt.Fprintf(&summary, "pool: high water %v of %v buffers, idle in_use %v before and %v after, exhausted %v\n",
		mustStat(t, end, "pool.high_water"), mustStat(t, end, "pool.capacity"), baseInUse, mustStat(t, end, "pool.in_use"), tb.Column("pool_exhausted")[len(ts)-1])
	fmt.Fprintf(&summary, "throughput (guest rx+tx): median first third %.1f Mbit/s, last third %.1f Mbit/s, drift %+.1f%%\n", tpFirst, tpLast, drift)
	fmt.Fprintf(&summary, "malformed frames sent %d, drop counters +%v (%.1f%%: %s), NIC resets %v, frames the host's tap dropped towards the guest %v\n",
		malformed.Load(), drops, 100*drops/max(1, sent), dropDiff(base, end), mustStat(t, end, "nic.resets"), tapDrops(t)-tapDrops0)
	guestTx := mustStat(t, end, "nic.tx.packets") - mustStat(t, base, "nic.tx.packets")
	fmt.Fprintf(&summary, "frames host→guest: tap sent %v, guest NIC received %v (lost on the way %v); guest→host: guest sent %v, tap received %v (both include the /stats requests)\n",
		tapSent, guestRx, linkLost, guestTx, tapStat(t, "rx_packets")-tapRx0)
	var udp []string
	for k, v := range end {
		if strings.Contains(k, "tcpip.udp.") && v != base[k] {
			udp = append(udp, fmt.Sprintf("%s +%v", strings.TrimPrefix(k, "tcpip.udp."), v-base[k]))
		}
	}
	slices.Sort(udp)
	fmt.Fprintf(&summary, "guest UDP counters: %s\n", strings.Join(udp, ", "))
	for _, w := range workers {
		fmt.Fprintf(&summary, "%s: %d ops, %d failed (%.1f%%, at most %d in a row), %d late, %.1f MiB\n", w.name, w.ops.Load(), w.fails.Load(),
			100*float64(w.fails.Load())/float64(max(1, w.ops.Load())), w.run.Load(), w.late.Load(), float64(w.bytes.Load())/mib)
	}
	if err := os.WriteFile(filepath.Join(out, "summary.txt"), []byte(summary.String()), 0o644); err != nil {
		t.Error(err)
	}
	for _, l := range strings.Split(strings.TrimSpace(summary.String()), "\n") {
		fmt.Printf("soak figure: %s\n", l)
	}
	if badSamples > 0 {
		t.Errorf("%d /stats samples failed", badSamples)
	}

	// And everything still answers.
	checkServices(t)
}

// writeSoakFiles writes soak.csv and soak.svg under dir.
func writeSoakFiles(t *testing.T, dir string, tb *soak.Table) {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "soak.csv"))
	if err != nil {
		t.Error(err)
		return
	}
	if err := tb.WriteCSV(f); err != nil {
		t.Error(err)
	}
	f.Close()
	scale := func(col string, k float64) []float64 {
		v := tb.Column(col)
		for i := range v {
			v[i] *= k
		}
		return v
	}
	panels := []soak.Panel{
		{Title: "Go heap", Unit: "MiB", Lines: []soak.Line{
			{Name: "live (after GC)", Color: "#1f77b4", V: scale("heap_live_bytes", 1.0/mib)},
			{Name: "heap_sys", Color: "#aec7e8", V: scale("heap_sys_bytes", 1.0/mib)},
		}},
		{Title: "packet pool", Unit: "buffers", Lines: []soak.Line{
			{Name: "in use", Color: "#d62728", V: tb.Column("pool_in_use")},
			{Name: "high water", Color: "#ff9896", V: tb.Column("pool_high_water")},
		}},
		{Title: "throughput (guest NIC)", Unit: "Mbit/s", Lines: []soak.Line{
			{Name: "rx", Color: "#2ca02c", V: tb.Column("rx_mbps")},
			{Name: "tx", Color: "#98df8a", V: tb.Column("tx_mbps")},
		}},
		{Title: "drops", Unit: "per second", Lines: []soak.Line{
			{Name: "all drop counters", Color: "#9467bd", V: tb.Column("drops_per_s")},
		}},
		{Title: "goroutines and TCP connections", Unit: "count", Lines: []soak.Line{
			{Name: "goroutines", Color: "#8c564b", V: tb.Column("goroutines")},
			{Name: "established", Color: "#e377c2", V: tb.Column("tcp_established")},
		}},
	}
	g, err := os.Create(filepath.Join(dir, "soak.svg"))
	if err != nil {
		t.Error(err)
		return
	}
	defer g.Close()
	title := fmt.Sprintf("tamanet soak: %s (%s), %s", *targetFlag, guestNIC, time.Now().UTC().Format(time.RFC3339))
	if err := soak.WriteSVG(g, title, tb.Column("t_s"), panels); err != nil {
		t.Error(err)
	}
	t.Logf("soak samples: %s, plot: %s", f.Name(), g.Name())
}

// fetchStatsQ is fetchStats with a query (e.g. "?gc=1").
func fetchStatsQ(q string) (map[string]float64, error) {
	return fetchStatsURL("http://" + guestAddr(httpPort) + "/stats" + q)
}

// guestConns lists the guest's TCP connections from /stats, one
// "local remote STATE" per line, or says why it cannot.
func guestConns() string {
	resp, err := httpClient.Get("http://" + guestAddr(httpPort) + "/stats")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	var st struct {
		TCP []struct{ Local, Remote, State string } `json:"tcp_connections"`
		N   int                                     `json:"tcp_connections_total"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return err.Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d", st.N)
	for _, c := range st.TCP {
		fmt.Fprintf(&b, "\n\t%s %s %s", c.Local, c.Remote, c.State)
	}
	return b.String()
}

// guestGoroutines returns the guest's goroutine dump (/debug/goroutines),
// or why it could not be fetched.
func guestGoroutines() string {
	resp, err := httpClient.Get("http://" + guestAddr(httpPort) + "/debug/goroutines")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// httpGet fetches path from the guest and returns the body's length.
func httpGet(path string) (int, error) {
	resp, err := httpClient.Get("http://" + guestAddr(httpPort) + path)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil {
		return int(n), err
	}
	if resp.StatusCode != http.StatusOK {
		return int(n), fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return int(n), nil
}

// soMaxPacingRate is SO_MAX_PACING_RATE (asm-generic/socket.h).
const soMaxPacingRate = 47

// pacedUpload is upload with the socket paced by the kernel to
// soakBulkCap: Linux then spreads the segments out instead of sending a
// congestion window back to back, bursts that a TCG guest's receive ring
// cannot absorb and that take the UDP datagrams and malformed frames
// sharing the link with them.
func pacedUpload(n int) (time.Duration, error) {
	d := net.Dialer{Timeout: 20 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, soMaxPacingRate, int(soakBulkCap/8))
		})
		return errors.Join(err, serr)
	}}
	return uploadVia(&d, n, soakOpTimeout)
}

// soakRR runs batches of 64-byte round trips on one connection for the
// whole soak, reconnecting only after a failure.
func soakRR(ctx context.Context, w *worker) {
	var c net.Conn
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	out := make([]byte, 64)
	in := make([]byte, 64)
	for ctx.Err() == nil {
		if c == nil {
			var err error
			if c, err = net.DialTimeout("tcp", guestAddr(echoPort), 20*time.Second); err != nil {
				w.fail(err)
				sleepCtx(ctx, time.Second)
				continue
			}
		}
		c.SetDeadline(time.Now().Add(soakOpTimeout))
		var err error
		for i := 0; i < soakRRBatch && err == nil; i++ {
			binary.LittleEndian.PutUint64(out, uint64(i))
			if _, err = c.Write(out); err == nil {
				_, err = io.ReadFull(c, in)
			}
			if err == nil && string(in) != string(out) {
				err = errors.New("echo differs")
			}
		}
		if err != nil {
			w.fail(fmt.Errorf("round trip: %w", err))
			c.Close()
			c = nil
			continue
		}
		w.ok(soakRRBatch * 64)
		sleepCtx(ctx, 200*time.Millisecond)
	}
}

// soakLong keeps one echo connection for the whole soak and sends it a
// message of random size every few seconds (well inside the services'
// idle timeout).
func soakLong(ctx context.Context, w *worker, seed uint64) {
	r := rand.New(rand.NewPCG(seed, 77))
	c, err := net.DialTimeout("tcp", guestAddr(echoPort), 20*time.Second)
	if err != nil {
		w.fail(err)
		return
	}
	defer c.Close()
	buf := make([]byte, 16<<10)
	in := make([]byte, len(buf))
	for sleepCtx(ctx, time.Duration(2+r.IntN(8))*time.Second) {
		n := 1 + r.IntN(len(buf))
		for i := range n {
			buf[i] = byte(r.Uint32())
		}
		c.SetDeadline(time.Now().Add(soakOpTimeout))
		if _, err := c.Write(buf[:n]); err != nil {
			w.fail(fmt.Errorf("long-lived write: %w", err))
			return
		}
		if _, err := io.ReadFull(c, in[:n]); err != nil {
			w.fail(fmt.Errorf("long-lived read: %w", err))
			return
		}
		if string(in[:n]) != string(buf[:n]) {
			w.fail(errors.New("long-lived echo differs"))
			return
		}
		w.ok(n)
	}
	// A clean end: FIN, and the service's FIN back.
	c.(*net.TCPConn).CloseWrite()
	c.SetDeadline(time.Now().Add(soakOpTimeout))
	if k, err := c.Read(in); k != 0 || !errors.Is(err, io.EOF) {
		w.fail(fmt.Errorf("long-lived close: read %d, %v; want EOF", k, err))
	}
}

// tcpRepair is TCP_REPAIR (linux/tcp.h): a socket closed in repair mode
// disappears without sending FIN or RST.
const tcpRepair = 19

// vanish closes c without telling the peer anything.
func vanish(c net.Conn) error {
	sc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := sc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_TCP, tcpRepair, 1)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("TCP_REPAIR: %w", serr)
	}
	return c.Close()
}

// soakShort opens a stream of short-lived echo connections, each one
// message of random size; some are abandoned instead of closed: aborted
// with RST, or dropped silently (no FIN, no RST) while idle, or dropped
// silently while chargen streams to them.
func soakShort(ctx context.Context, w, abandoned *worker) {
	r := rand.New(rand.NewPCG(5, 5))
	buf := make([]byte, 4096)
	in := make([]byte, len(buf))
	for i := 0; sleepCtx(ctx, soakShortPeriod); i++ {
		if i%40 == 39 {
			// Silently abandon a chargen stream mid-transfer: the
			// guest's next segment meets a port with no socket.
			c, err := net.DialTimeout("tcp", guestAddr(chargenPort), 20*time.Second)
			if err != nil {
				w.fail(err)
				continue
			}
			c.SetDeadline(time.Now().Add(soakOpTimeout))
			_, err = io.ReadFull(c, in[:1000])
			if err == nil {
				err = vanish(c)
			} else {
				c.Close()
			}
			if err != nil {
				w.fail(fmt.Errorf("chargen to abandon: %w", err))
			} else {
				abandoned.ok(0)
			}
			continue
		}
		c, err := net.DialTimeout("tcp", guestAddr(echoPort), 20*time.Second)
		if err != nil {
			w.fail(err)
			continue
		}
		c.SetDeadline(time.Now().Add(soakOpTimeout))
		n := 1 + r.IntN(len(buf))
		for j := range n {
			buf[j] = byte(r.Uint32())
		}
		_, err = c.Write(buf[:n])
		if err == nil {
			_, err = io.ReadFull(c, in[:n])
		}
		if err == nil && string(in[:n]) != string(buf[:n]) {
			err = errors.New("echo differs")
		}
		if err != nil {
			c.Close()
			w.fail(fmt.Errorf("short-lived echo of %d bytes: %w", n, err))
			continue
		}
		w.ok(n)
		switch i % 20 {
		case 7: // abort: RST, no FIN
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
			abandoned.ok(0)
		case 13: // vanish while idle: the guest hears nothing
			if err := vanish(c); err != nil {
				w.fail(err)
			} else {
				abandoned.ok(0)
			}
		default:
			c.(*net.TCPConn).CloseWrite()
			if k, err := c.Read(in); k != 0 || !errors.Is(err, io.EOF) {
				w.fail(fmt.Errorf("short-lived close: read %d, %v; want EOF", k, err))
			}
			c.Close()
		}
	}
}

// soakUDP sends datagrams of random size to the UDP echo service. A reply
// that does not come within a second is a failure, taken back if the
// reply turns up later (late, not lost); a reply that differs is one.
func soakUDP(ctx context.Context, w *worker) {
	c, err := net.Dial("udp", guestAddr(echoPort))
	if err != nil {
		w.fail(err)
		return
	}
	defer c.Close()
	r := rand.New(rand.NewPCG(9, 9))
	buf := make([]byte, 1472)
	in := make([]byte, 2048)
	var seq uint32
	overdue := map[uint32]bool{}
	for sleepCtx(ctx, soakUDPPeriod) {
		seq++
		n := 4 + r.IntN(len(buf)-4)
		binary.BigEndian.PutUint32(buf, seq)
		for j := 4; j < n; j++ {
			buf[j] = byte(seq) + byte(j)
		}
		if _, err := c.Write(buf[:n]); err != nil {
			w.fail(err)
			continue
		}
		c.SetReadDeadline(time.Now().Add(time.Second))
		for {
			k, err := c.Read(in)
			if err != nil {
				overdue[seq] = true
				w.fail(fmt.Errorf("datagram %d (%d bytes): %w", seq, n, err))
				break
			}
			if got := binary.BigEndian.Uint32(in); k < 4 || got != seq {
				if k >= 4 && overdue[got] {
					delete(overdue, got)
					w.fails.Add(-1)
					w.late.Add(1)
					w.bytes.Add(int64(k))
				}
				continue
			}
			if k != n || string(in[:k]) != string(buf[:n]) {
				w.fail(fmt.Errorf("datagram %d: %d bytes back for %d, or different", seq, k, n))
			} else {
				w.ok(n)
			}
			break
		}
	}
}

// malformedBurst sends one burst of the frames TestBadInput sends (runts,
// bad IPv4 and TCP checksums, oversize) plus IPv4 headers whose total
// length overruns the frame, and returns how many it sent. The guest must
// count each as a drop.
func malformedBurst(r *rawSocket, burst int64) (int, error) {
	var frames [][]byte
	id := uint16(0x6000 + burst%0x1000)
	for i := range 3 {
		f := r.ipv4Frame(1, icmpEcho(id, uint16(i), 0))
		frames = append(frames, f[:14], f[:14+10], f[:14+20+2])
	}
	for i := range 3 {
		f := r.ipv4Frame(1, icmpEcho(id, uint16(10+i), 32))
		f[14+10] ^= 0x5a // IPv4 header checksum
		frames = append(frames, f)
		seg := tcpSYN(41000+uint16(i), echoPort)
		seg[16] ^= 0x33 // TCP checksum
		frames = append(frames, r.ipv4Frame(syscall.IPPROTO_TCP, seg))
	}
	frames = append(frames, r.ipv4Frame(1, icmpEcho(id, 20, 1600-14-20-8)))
	for i := range 2 {
		f := r.ipv4Frame(1, icmpEcho(id, uint16(30+i), 16))
		ip := f[14:34]
		binary.BigEndian.PutUint16(ip[2:], uint16(len(f)-14+200)) // total length past the frame
		binary.BigEndian.PutUint16(ip[10:], 0)
		binary.BigEndian.PutUint16(ip[10:], checksum(ip, 0))
		frames = append(frames, f)
	}
	sa := &syscall.SockaddrLinklayer{Ifindex: r.ifindex, Halen: 6}
	copy(sa.Addr[:], guestMAC)
	for i, f := range frames {
		if err := syscall.Sendto(r.fd, f, 0, sa); err != nil {
			return i, fmt.Errorf("send %d-byte frame: %w", len(f), err)
		}
	}
	return len(frames), nil
}
