package profile

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/tamanet/tamanet/internal/netns"
)

// Workloads, by the name make profile's WORKLOAD takes, against the
// firmware's services (package service).
var Workloads = []string{"tx", "rx", "rr", "idle"}

const (
	echoPort    = 7  // RFC 862
	discardPort = 9  // RFC 863
	chargenPort = 19 // RFC 864
	rrSize      = 64 // bytes per echo round trip
)

// Load is a running workload. Stop ends it.
type Load struct {
	name  string
	c     net.Conn
	start time.Time
	done  chan struct{}
	quit  chan struct{}
	mu    sync.Mutex
	bytes int64
	ops   int64
	err   error
}

// StartLoad starts workload name against guest (an IPv4 address) from
// inside network namespace ns, so its connection reaches nothing but the
// guest:
//
//   - tx: the host reads chargen, guest→host bulk;
//   - rx: the host writes to discard, host→guest bulk;
//   - rr: 64-byte TCP echo round trips, one at a time;
//   - idle: nothing.
func StartLoad(name, ns, guest string) (*Load, error) {
	l := &Load{name: name, done: make(chan struct{}), quit: make(chan struct{})}
	var port int
	switch name {
	case "tx":
		port = chargenPort
	case "rx":
		port = discardPort
	case "rr":
		port = echoPort
	case "idle":
		l.start = time.Now()
		close(l.done)
		return l, nil
	default:
		return nil, fmt.Errorf("unknown workload %q: use tx, rx, rr or idle", name)
	}
	addr := net.JoinHostPort(guest, strconv.Itoa(port))
	// The socket belongs to the namespace it was made in; the goroutines
	// using it may run on any thread.
	err := netns.Do(ns, func() error {
		var err error
		l.c, err = net.DialTimeout("tcp", addr, 10*time.Second)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("workload %s: %w", name, err)
	}
	l.start = time.Now()
	go l.run()
	return l, nil
}

func (l *Load) run() {
	defer close(l.done)
	buf := make([]byte, 64<<10)
	for i := range buf {
		buf[i] = byte(i)
	}
	var in [rrSize]byte
	for {
		select {
		case <-l.quit:
			return
		default:
		}
		// A stalled guest ends the workload, not the profiler.
		l.c.SetDeadline(time.Now().Add(10 * time.Second))
		var n int
		var err error
		switch l.name {
		case "tx":
			n, err = l.c.Read(buf)
		case "rx":
			n, err = l.c.Write(buf)
		case "rr":
			if _, err = l.c.Write(buf[:rrSize]); err == nil {
				n, err = io.ReadFull(l.c, in[:])
			}
		}
		l.mu.Lock()
		l.bytes += int64(n)
		l.ops++
		if err != nil && l.err == nil {
			select {
			case <-l.quit:
			default:
				l.err = err
			}
		}
		l.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// Result is what a workload did.
type Result struct {
	Name    string
	Bytes   int64
	Ops     int64 // reads, writes or round trips
	Elapsed time.Duration
}

func (r Result) String() string {
	s := r.Elapsed.Seconds()
	if s <= 0 {
		s = 1e-9
	}
	switch r.Name {
	case "tx", "rx":
		return fmt.Sprintf("%s: %d bytes in %v, %.1f Mbit/s", r.Name, r.Bytes, r.Elapsed.Round(time.Millisecond), float64(r.Bytes)*8/s/1e6)
	case "rr":
		return fmt.Sprintf("rr: %d round trips of %d bytes in %v, %.0f/s", r.Ops, rrSize, r.Elapsed.Round(time.Millisecond), float64(r.Ops)/s)
	}
	return fmt.Sprintf("%s: %v", r.Name, r.Elapsed.Round(time.Millisecond))
}

// Snapshot returns what the workload has done so far.
func (l *Load) Snapshot() Result {
	l.mu.Lock()
	defer l.mu.Unlock()
	return Result{Name: l.name, Bytes: l.bytes, Ops: l.ops, Elapsed: time.Since(l.start)}
}

// Since returns what was done between snapshot o and r.
func (r Result) Since(o Result) Result {
	return Result{Name: r.Name, Bytes: r.Bytes - o.Bytes, Ops: r.Ops - o.Ops, Elapsed: r.Elapsed - o.Elapsed}
}

// Stop ends the workload and returns what it did, or the error that ended
// it early.
func (l *Load) Stop() (Result, error) {
	select {
	case <-l.quit:
	default:
		close(l.quit)
	}
	if l.c != nil {
		l.c.Close()
	}
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	r := Result{Name: l.name, Bytes: l.bytes, Ops: l.ops, Elapsed: time.Since(l.start)}
	if l.err != nil && !errors.Is(l.err, net.ErrClosed) {
		return r, fmt.Errorf("workload %s: %w", l.name, l.err)
	}
	return r, nil
}
