package service

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"time"
)

// LookupConfig configures the name-lookup self-test.
type LookupConfig struct {
	// Target is "name:port": the name is resolved, then dialled over TCP
	// by name, and one line is read from the connection.
	Target string
	// LookupHost resolves the name (e.g. net.DefaultResolver.LookupHost).
	LookupHost func(ctx context.Context, host string) ([]string, error)
	// Dial connects by name (e.g. net.Dialer.DialContext, which resolves
	// with net.DefaultResolver).
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
	// Interval between runs (default 5 s). Each run is bounded by it.
	Interval time.Duration
}

// LookupStatus is the outcome of the self-test, for /stats.
type LookupStatus struct {
	Target string   `json:"target"`
	Runs   uint64   `json:"runs"`
	OK     uint64   `json:"ok"`
	Addrs  []string `json:"addrs,omitempty"`  // last successful lookup
	Remote string   `json:"remote,omitempty"` // last connection's peer
	Line   string   `json:"line,omitempty"`   // last line read
	Error  string   `json:"error,omitempty"`  // last run's error, "" if it passed
}

// Lookup is a running self-test: it shows that firmware code resolves
// names and dials by name through the stack.
type Lookup struct {
	cfg    LookupConfig
	mu     sync.Mutex
	st     LookupStatus
	cancel context.CancelFunc
	done   chan struct{}
}

// StartLookup runs the self-test now and then every Interval until Stop.
func StartLookup(cfg LookupConfig) (*Lookup, error) {
	host, _, err := net.SplitHostPort(cfg.Target)
	if err != nil || host == "" {
		return nil, errors.New("service: lookup target must be name:port")
	}
	if cfg.LookupHost == nil || cfg.Dial == nil {
		return nil, errors.New("service: lookup needs LookupHost and Dial")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 5 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &Lookup{cfg: cfg, st: LookupStatus{Target: cfg.Target}, cancel: cancel, done: make(chan struct{})}
	go l.loop(ctx, host)
	return l, nil
}

// Status returns the last outcome.
func (l *Lookup) Status() LookupStatus {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.st
	s.Addrs = append([]string(nil), s.Addrs...)
	return s
}

// Stop ends the self-test.
func (l *Lookup) Stop() {
	l.cancel()
	<-l.done
}

func (l *Lookup) loop(ctx context.Context, host string) {
	defer close(l.done)
	t := time.NewTicker(l.cfg.Interval)
	defer t.Stop()
	for {
		l.run(ctx, host)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (l *Lookup) run(ctx context.Context, host string) {
	ctx, cancel := context.WithTimeout(ctx, l.cfg.Interval)
	defer cancel()
	addrs, err := l.cfg.LookupHost(ctx, host)
	var remote, line string
	if err == nil {
		var c net.Conn
		if c, err = l.cfg.Dial(ctx, "tcp", l.cfg.Target); err == nil {
			remote = c.RemoteAddr().String()
			dl, _ := ctx.Deadline()
			c.SetDeadline(dl)
			line, err = bufio.NewReader(io.LimitReader(c, 256)).ReadString('\n')
			c.Close()
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.st.Runs++
	if err != nil {
		l.st.Error = err.Error()
		return
	}
	l.st.OK++
	l.st.Error = ""
	l.st.Addrs, l.st.Remote, l.st.Line = addrs, remote, strings.TrimRight(line, "\r\n")
}
