package dhcp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/tamanet/tamanet/stack"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
)

// Options configure a Runner.
type Options struct {
	// Hostname, if set, is sent to the server (option 12).
	Hostname string
	// Fallback, if valid, is the static address used when no lease came
	// within FallbackAfter, and again when a lease is lost; a later lease
	// replaces it. FallbackGateway is its default route (optional).
	Fallback        netip.Prefix
	FallbackGateway netip.Addr
	// FallbackAfter defaults to DefaultFallbackAfter when Fallback is set.
	FallbackAfter time.Duration
	// OnChange, if set, is called from the runner's goroutine after every
	// change it made to the interface, with the new status.
	OnChange func(Status)
	// Logf, if set, reports errors applying a configuration.
	Logf func(format string, args ...any)
}

// DefaultFallbackAfter is how long the runner waits for a lease before it
// applies the fallback address: about three DISCOVERs (0, 4, 12 s).
const DefaultFallbackAfter = 15 * time.Second

// Status is what the runner shows, e.g. in /stats.
type Status struct {
	// State is the client's state (init, selecting, ..., bound).
	State string `json:"state"`
	// Source says where the interface's address comes from: "dhcp",
	// "fallback" or "none".
	Source string `json:"source"`
	// Address, Router and DNS are what the interface uses now.
	Address string   `json:"address,omitempty"`
	Router  string   `json:"router,omitempty"`
	DNS     []string `json:"dns,omitempty"`
	// The lease, when one is held: the server, its length, how long ago
	// it started and when it is renewed, rebound and ends, in seconds
	// from now (0 length: infinite).
	Server           string  `json:"server,omitempty"`
	LeaseSeconds     float64 `json:"lease_seconds,omitempty"`
	LeaseAgeSeconds  float64 `json:"lease_age_seconds,omitempty"`
	RenewInSeconds   float64 `json:"renew_in_seconds,omitempty"`
	RebindInSeconds  float64 `json:"rebind_in_seconds,omitempty"`
	ExpiresInSeconds float64 `json:"expires_in_seconds,omitempty"`
	Counters
	// ApplyErrors counts configurations the stack refused.
	ApplyErrors uint64 `json:"apply_errors"`
}

// Runner runs a Client on a stack's interface: it sends and receives the
// client's messages through the stack and applies leases with
// stack.SetIPv4.
type Runner struct {
	st   *stack.Stack
	c    *Client
	o    Options
	conn *gonet.UDPConn

	mu          sync.Mutex
	lease       Lease
	have        bool
	fallback    bool
	state       State
	counters    Counters
	applyErrors uint64
	configured  chan struct{} // closed once an address is applied
	confOnce    sync.Once
	renew       chan struct{} // Renew's request to the run goroutine

	cancel context.CancelFunc
	done   chan struct{}
}

// Start opens the client port on st's interface and runs the client on a
// goroutine until Stop. st is normally created with stack.Config.Dynamic.
func Start(st *stack.Stack, o Options) (*Runner, error) {
	if o.Fallback.IsValid() && o.FallbackAfter == 0 {
		o.FallbackAfter = DefaultFallbackAfter
	}
	if !o.Fallback.IsValid() {
		o.FallbackAfter = 0
	}
	c, err := NewClient(Config{MAC: st.MAC(), Hostname: o.Hostname, FallbackAfter: o.FallbackAfter})
	if err != nil {
		return nil, err
	}
	// The wildcard client port on the interface receives broadcast
	// replies before there is an address and unicast ones after.
	conn, err := gonet.DialUDP(st.GVisor(), &tcpip.FullAddress{NIC: st.NICID(), Port: ClientPort}, nil, ipv4.ProtocolNumber)
	if err != nil {
		return nil, fmt.Errorf("dhcp: client port: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Runner{st: st, c: c, o: o, conn: conn, configured: make(chan struct{}), renew: make(chan struct{}, 1), cancel: cancel, done: make(chan struct{})}
	go r.run(ctx)
	return r, nil
}

// Stop ends the client and closes its port; the interface keeps its
// address.
func (r *Runner) Stop() {
	r.cancel()
	r.conn.Close()
	<-r.done
}

// Renew asks the client to renew its lease now rather than at T1 (or to
// send its next DISCOVER now).
func (r *Runner) Renew() {
	select {
	case r.renew <- struct{}{}:
	default:
	}
	r.conn.SetReadDeadline(time.Now())
}

// Configured is closed once the interface has an address, from a lease
// or the fallback.
func (r *Runner) Configured() <-chan struct{} { return r.configured }

// Status returns the current status.
func (r *Runner) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := Status{State: r.state.String(), Source: "none", Counters: r.counters, ApplyErrors: r.applyErrors}
	now := time.Now()
	switch {
	case r.have:
		l := r.lease
		s.Source = "dhcp"
		s.Address = l.Addr.String()
		if l.Router.IsValid() {
			s.Router = l.Router.String()
		}
		for _, d := range l.DNS {
			s.DNS = append(s.DNS, d.String())
		}
		s.Server = l.Server.String()
		s.LeaseAgeSeconds = now.Sub(l.Start).Seconds()
		if l.Duration > 0 {
			s.LeaseSeconds = l.Duration.Seconds()
			s.RenewInSeconds = l.Start.Add(l.T1).Sub(now).Seconds()
			s.RebindInSeconds = l.Start.Add(l.T2).Sub(now).Seconds()
			s.ExpiresInSeconds = l.Expiry().Sub(now).Seconds()
		}
	case r.fallback:
		s.Source = "fallback"
		s.Address = r.o.Fallback.String()
		if r.o.FallbackGateway.IsValid() {
			s.Router = r.o.FallbackGateway.String()
		}
	}
	return s
}

func (r *Runner) run(ctx context.Context) {
	defer close(r.done)
	buf := make([]byte, 1500)
	for ctx.Err() == nil {
		now := time.Now()
		select {
		case <-r.renew:
			r.c.Renew(now)
		default:
		}
		p, ev, wake := r.c.Next(now)
		if p.Data != nil {
			r.send(p)
		}
		r.apply(ev)
		if ev != None {
			continue
		}
		r.conn.SetReadDeadline(wake)
		if len(r.renew) > 0 {
			continue // Renew came after the select above
		}
		n, from, err := r.conn.ReadFrom(buf)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// A receive error other than the deadline: count and go on.
			r.c.counters.Dropped++
			continue
		}
		if ua, ok := from.(*net.UDPAddr); !ok || ua.Port != ServerPort {
			r.c.counters.Dropped++
			continue
		}
		r.apply(r.c.Handle(time.Now(), buf[:n]))
	}
}

// send transmits p: unicast through the socket, broadcast as a frame of
// its own so that it can leave from 0.0.0.0 before there is an address.
func (r *Runner) send(p Packet) {
	if !p.Broadcast() {
		r.conn.WriteTo(p.Data, &net.UDPAddr{IP: p.Dst.AsSlice(), Port: ServerPort})
		return
	}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: p.Src.AsSlice(), DstIP: p.Dst.AsSlice()}
	udp := &layers.UDP{SrcPort: ClientPort, DstPort: ServerPort}
	udp.SetNetworkLayerForChecksum(ip)
	b := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(b, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ip, udp, gopacket.Payload(p.Data)); err != nil {
		return
	}
	r.st.GVisor().WritePacketToRemote(r.st.NICID(), tcpip.LinkAddress("\xff\xff\xff\xff\xff\xff"), ipv4.ProtocolNumber, buffer.MakeWithData(b.Bytes()))
}

// apply makes the interface match the event.
func (r *Runner) apply(ev Event) {
	l, have := r.c.Lease()
	r.mu.Lock()
	r.state, r.counters = r.c.State(), r.c.Counters()
	r.mu.Unlock()
	var err error
	switch ev {
	case None:
		return
	case Acquired, Renewed:
		err = r.st.SetIPv4(l.Addr, l.Router)
		r.mu.Lock()
		r.lease, r.have, r.fallback = l, have, false
		r.mu.Unlock()
	case Lost, FallbackDue:
		r.mu.Lock()
		r.lease, r.have = Lease{}, false
		r.mu.Unlock()
		if r.o.Fallback.IsValid() {
			err = r.st.SetIPv4(r.o.Fallback, r.o.FallbackGateway)
			r.mu.Lock()
			r.fallback = err == nil
			r.mu.Unlock()
		} else {
			r.st.ClearIPv4()
		}
	}
	if err != nil {
		r.mu.Lock()
		r.applyErrors++
		r.mu.Unlock()
		if r.o.Logf != nil {
			r.o.Logf("dhcp: %v: %v", ev, err)
		}
	} else if ev == Acquired || ev == FallbackDue || (ev == Lost && r.o.Fallback.IsValid()) {
		r.confOnce.Do(func() { close(r.configured) })
	}
	if r.o.OnChange != nil {
		r.o.OnChange(r.Status())
	}
}
