// Package service holds the unikernel's network services, written against
// the standard net interfaces so that the same code runs on the stack (via
// net.Listen and net.ListenPacket, which reach gVisor through
// net.SocketFunc on GOOS=tamago) and in host tests over loopback sockets:
//
//   - echo (RFC 862) on UDP and TCP port 7,
//   - discard (RFC 863) on TCP port 9,
//   - chargen (RFC 864) on TCP port 19, an endless stream,
//   - HTTP on port 80: an index page and /stats as JSON.
//
// Every service listens on both families: with an empty Config.Host it
// opens one wildcard "tcp" or "udp" socket per service, which is
// dual-stack on the tamanet stack (as on Linux), so IPv4 and IPv6 clients
// reach the same listener. Under tamago's net package a wildcard "udp"
// socket serves IPv4 only; Config.UDP6 adds a "udp6" echo socket there.
//
// StartLookup runs a name-lookup self-test (resolve a name, dial it by
// name, read a line) whose outcome the firmware shows in /stats.
//
// Start opens every listener before serving any: it either returns running
// services or an error with nothing left open.
package service

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"
)

// Ports are the ports the services listen on. A zero port asks the system
// for a free one (host tests); a negative one disables the service.
type Ports struct {
	Echo    int // UDP and TCP echo
	Discard int
	Chargen int
	HTTP    int
}

// DefaultPorts are the well-known ports.
var DefaultPorts = Ports{Echo: 7, Discard: 9, Chargen: 19, HTTP: 80}

// Config says how to open sockets and what to show.
type Config struct {
	// Listen and ListenPacket open sockets, e.g. net.Listen and
	// net.ListenPacket.
	Listen       func(network, address string) (net.Listener, error)
	ListenPacket func(network, address string) (net.PacketConn, error)
	// Host is the address to bind ("" for all).
	Host string
	// UDP6 also opens a "udp6" echo socket on the echo port. Set it
	// where a "udp" socket cannot serve IPv6: tamago's net package gives
	// a wildcard "udp" socket an IPv4 descriptor.
	UDP6 bool
	// Ports to listen on; use DefaultPorts for the well-known ones.
	Ports Ports
	// Stats returns the stack's counters, marshalled into /stats. It may
	// be nil.
	Stats func() any
	// Info is shown on the index page and under "info" in /stats, e.g.
	// board, nic, ip, mac.
	Info map[string]string
	// Boot is the moment uptime counts from (default: when Start runs).
	Boot time.Time
	// Logf reports service errors that end a listener (default: none).
	Logf func(format string, args ...any)
	// IdleTimeout closes an echo, discard or chargen connection on
	// which reads or writes have made no progress for this long (at
	// least ¾ of it; default DefaultIdleTimeout; negative: never). A peer that vanished without
	// FIN or RST would otherwise hold its goroutine, buffer and TCP
	// state for good.
	IdleTimeout time.Duration
}

// DefaultIdleTimeout is Config.IdleTimeout's default.
const DefaultIdleTimeout = time.Minute

// Services are running services.
type Services struct {
	// Addresses the services listen on (nil when disabled).
	UDPEcho, UDPEcho6, TCPEcho, Discard, Chargen, HTTP net.Addr

	cfg     Config
	closers []interface{ Close() error }
	wg      sync.WaitGroup
	closeMu sync.Once
}

// Start opens all listeners and serves them in goroutines. If any listener
// cannot be opened, the ones already opened are closed and the error says
// which one failed.
func Start(cfg Config) (*Services, error) {
	if cfg.Listen == nil || cfg.ListenPacket == nil {
		return nil, errors.New("service: Config.Listen and Config.ListenPacket are required")
	}
	if cfg.Boot.IsZero() {
		cfg.Boot = time.Now()
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	s := &Services{cfg: cfg}

	var (
		udpEcho, udpEcho6             net.PacketConn
		tcpEcho, discard, chargen, hl net.Listener
		err                           error
	)
	listen := func(name string, port int, l *net.Listener) {
		if err != nil || port < 0 {
			return
		}
		if *l, err = cfg.Listen("tcp", s.addr(port)); err != nil {
			err = fmt.Errorf("service: %s on tcp port %d: %w", name, port, err)
			return
		}
		s.closers = append(s.closers, *l)
	}
	if cfg.Ports.Echo >= 0 {
		if udpEcho, err = cfg.ListenPacket("udp", s.addr(cfg.Ports.Echo)); err != nil {
			err = fmt.Errorf("service: echo on udp port %d: %w", cfg.Ports.Echo, err)
		} else {
			s.closers = append(s.closers, udpEcho)
		}
	}
	if cfg.UDP6 && cfg.Ports.Echo >= 0 && err == nil {
		if udpEcho6, err = cfg.ListenPacket("udp6", s.addr(cfg.Ports.Echo)); err != nil {
			err = fmt.Errorf("service: echo on udp6 port %d: %w", cfg.Ports.Echo, err)
		} else {
			s.closers = append(s.closers, udpEcho6)
		}
	}
	listen("echo", cfg.Ports.Echo, &tcpEcho)
	listen("discard", cfg.Ports.Discard, &discard)
	listen("chargen", cfg.Ports.Chargen, &chargen)
	listen("http", cfg.Ports.HTTP, &hl)
	if err != nil {
		s.Close()
		return nil, err
	}

	if udpEcho != nil {
		s.UDPEcho = udpEcho.LocalAddr()
		s.run("udp echo", func() error { return UDPEcho(udpEcho) })
	}
	if udpEcho6 != nil {
		s.UDPEcho6 = udpEcho6.LocalAddr()
		s.run("udp6 echo", func() error { return UDPEcho(udpEcho6) })
	}
	if tcpEcho != nil {
		s.TCPEcho = tcpEcho.Addr()
		s.run("tcp echo", func() error { return Serve(tcpEcho, idle(Echo, cfg.IdleTimeout)) })
	}
	if discard != nil {
		s.Discard = discard.Addr()
		s.run("discard", func() error { return Serve(discard, idle(Discard, cfg.IdleTimeout)) })
	}
	if chargen != nil {
		s.Chargen = chargen.Addr()
		s.run("chargen", func() error { return Serve(chargen, idle(Chargen, cfg.IdleTimeout)) })
	}
	if hl != nil {
		s.HTTP = hl.Addr()
		srv := newHTTPServer(cfg)
		s.closers = append(s.closers, srv)
		s.run("http", func() error { return srv.Serve(hl) })
	}
	return s, nil
}

func (s *Services) addr(port int) string {
	return net.JoinHostPort(s.cfg.Host, strconv.Itoa(port))
}

func (s *Services) run(name string, serve func() error) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := serve(); err != nil && !isClosed(err) {
			s.cfg.Logf("service: %s stopped: %v", name, err)
		}
	}()
}

// Close closes every listener and waits for the serving loops to return.
// Connections already accepted finish on their own.
func (s *Services) Close() error {
	var errs []error
	s.closeMu.Do(func() {
		for _, c := range s.closers {
			if err := c.Close(); err != nil && !isClosed(err) {
				errs = append(errs, err)
			}
		}
	})
	s.wg.Wait()
	return errors.Join(errs...)
}

func isClosed(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, errServerClosed)
}
