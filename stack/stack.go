// Package stack runs gVisor's TCP/IP stack over a tamanet driver.
//
// New joins a nic.Device, with the packet pool it owns, to a gVisor stack
// (IPv4, ARP, IPv6 with NDP and MLD, ICMP and ICMPv6, TCP, UDP) through the
// link endpoint of package github.com/tamanet/tamanet/stack/link,
// configures one interface and returns a Stack. The interface has a static IPv4 address
// and default route (or, with Config.Dynamic, none until SetIPv4 gives it
// one: see package stack/dhcp) and, with Config.IPv6, an IPv6 link-local
// address derived from the MAC (modified EUI-64, RFC 4291 appendix A),
// SLAAC addresses and default routers learnt from router advertisements
// (RFC 4861, RFC 4862), and optionally a static IPv6 address. Every IPv6
// address goes through duplicate address detection first. Where the device
// filters multicast (nic.GroupFilter), the stack keeps the filter set to
// the groups its IPv6 addresses need: all-nodes and one solicited-node
// group per address. Nothing runs
// until the caller drives the poll loop: either Poll, one bounded step at a
// time, or Start / Run, which call Poll back to back while there is work
// and otherwise sleep until the next tick or a Wake (e.g. from an interrupt
// handler). Once SetInterrupt says the device's interrupts reach Wake, an
// idle runner has no tick: it sleeps until Wake or its next maintenance
// step (MaintainInterval), and gVisor's own timers are Go timers.
//
// Applications reach the stack through the standard net package: on
// GOOS=tamago, Start installs Socket as net.SocketFunc. Socket, Listen,
// Dial and ListenPacket are also callable directly, which is how host tests
// use the stack.
//
// docs/architecture.md in the repository describes the layers under and
// over this package, who owns a packet buffer when, and the poll step.
package stack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tamanet/tamanet/nic"
	"github.com/tamanet/tamanet/stack/link"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	gvstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

// Defaults for Config.
const (
	// DefaultTick is how long the runner sleeps when a step found no work
	// and nothing woke it. It bounds the receive latency of a board without
	// an interrupt, and the cost of being idle (one step per tick).
	DefaultTick = time.Millisecond
	// DefaultRxBudget is how many frames one step receives at most, so one
	// step stays bounded and transmit reclaim gets its turn under load.
	DefaultRxBudget = 64
	// MaintainInterval is how often the runner gives the driver its
	// slow-path step (nic.Maintainer: reset and recovery checks).
	MaintainInterval = 250 * time.Millisecond
	// LinkPollInterval is how often Maintain polls a device that learns
	// its link state by asking (nic.LinkPoller): a cable change is seen
	// within about a second, and the PHY reads stay off the hot path.
	LinkPollInterval = time.Second
)

// NICID is the gVisor NIC id of the interface.
const NICID tcpip.NICID = 1

// Config is the interface configuration.
type Config struct {
	// Addr is the IPv4 address and prefix, e.g. 10.0.0.1/24. Required
	// unless Dynamic is set.
	Addr netip.Prefix
	// Dynamic starts the interface without an IPv4 address (Addr and
	// Gateway unset): a DHCP client sets it later with SetIPv4.
	Dynamic bool
	// Gateway is the next hop of the default route. Optional; when set it
	// must be an IPv4 address inside Addr's prefix.
	Gateway netip.Addr
	// IPv6 turns IPv6 on: a link-local address from the MAC, SLAAC
	// addresses and default routers from router advertisements, NDP,
	// MLD and ICMPv6. IPv6 talks on its own (DAD, router solicitations,
	// MLD reports) from the moment New returns, which is why it is not
	// the default for the zero Config.
	IPv6 bool
	// Addr6 is an optional static IPv6 address and prefix, e.g.
	// fd00:0:0:1::1/64; it needs IPv6. The link-local address and SLAAC
	// addresses come on their own; this one is for networks without a
	// router.
	Addr6 netip.Prefix
	// Tick is the idle poll period (default DefaultTick).
	Tick time.Duration
	// RxBudget is the most frames one Poll step receives (default
	// DefaultRxBudget).
	RxBudget int
	// BusyPoll keeps the runner polling, yielding the processor between
	// steps, for this long after the last step that found work, before
	// it sleeps (as Linux's busy_poll). A reply that comes back within
	// the window is picked up at once instead of after an interrupt or a
	// tick, at the cost of CPU while traffic flows; an idle system still
	// sleeps. 0 (the default) sleeps as soon as a step finds nothing.
	BusyPoll time.Duration
	// RACK turns on gVisor's RACK-TLP loss detection (RFC 8985) for TCP.
	// It is off by default: gVisor's implementation walks every
	// unacknowledged segment on each ACK, which under an emulated CPU
	// dominates a bulk transfer from the guest, and after a burst loss it
	// recovers a few segments per timeout (2 MiB after a 400 ms outage:
	// about a minute, against about a second without it). Without RACK,
	// TCP finds losses with SACK (RFC 6675) and the retransmission timer,
	// and has no tail loss probe: a segment lost at the end of a burst
	// waits for the retransmission timeout (200 ms at least), so under
	// random loss short transfers are slower (BenchmarkLossRecovery: a
	// 1 MiB echo at 2% loss takes about 215 ms without RACK, 17 ms with).
	RACK bool
}

// Validate reports the first problem with c, with defaults applied.
func (c *Config) Validate() error {
	if c.Dynamic {
		if c.Addr.IsValid() || c.Gateway.IsValid() {
			return errors.New("stack: a dynamic configuration has no static address or gateway")
		}
		return c.validateRest()
	}
	return c.validateAddr()
}

// validateAddr checks the static address and gateway, then the rest.
func (c *Config) validateAddr() error {
	a := c.Addr.Addr()
	switch {
	case !c.Addr.IsValid():
		return errors.New("stack: no address configured (Config.Addr)")
	case !a.Is4():
		return fmt.Errorf("stack: address %v is not IPv4", c.Addr)
	case c.Addr.Bits() < 1 || c.Addr.Bits() > 32:
		return fmt.Errorf("stack: prefix length /%d out of range 1..32", c.Addr.Bits())
	case a.IsUnspecified() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return fmt.Errorf("stack: %v is not a unicast address", a)
	case c.Addr.Bits() <= 30 && (a == c.Addr.Masked().Addr() || a == lastAddr(c.Addr)):
		return fmt.Errorf("stack: %v is the network or broadcast address of %v", a, c.Addr.Masked())
	}
	if c.Gateway.IsValid() {
		switch {
		case !c.Gateway.Is4():
			return fmt.Errorf("stack: gateway %v is not IPv4", c.Gateway)
		case c.Gateway == a:
			return fmt.Errorf("stack: gateway %v is the interface's own address", c.Gateway)
		case !c.Addr.Contains(c.Gateway):
			return fmt.Errorf("stack: gateway %v is outside %v", c.Gateway, c.Addr.Masked())
		}
	}
	return c.validateRest()
}

func (c *Config) validateRest() error {
	if c.Addr6.IsValid() {
		if !c.IPv6 {
			return fmt.Errorf("stack: IPv6 address %v without Config.IPv6", c.Addr6)
		}
		if err := validAddr6(c.Addr6); err != nil {
			return err
		}
	}
	if c.BusyPoll < 0 {
		return fmt.Errorf("stack: negative busy-poll window %v", c.BusyPoll)
	}
	if c.Tick < 0 {
		return fmt.Errorf("stack: negative tick %v", c.Tick)
	}
	if c.RxBudget < 0 {
		return fmt.Errorf("stack: negative rx budget %d", c.RxBudget)
	}
	return nil
}

// validAddr6 reports why p cannot be a static IPv6 interface address.
func validAddr6(p netip.Prefix) error {
	a := p.Addr()
	switch {
	case !a.Is6() || a.Is4In6():
		return fmt.Errorf("stack: address %v is not IPv6", p)
	case p.Bits() < 1:
		return fmt.Errorf("stack: prefix length /%d out of range 1..128", p.Bits())
	case a.IsUnspecified() || a.IsLoopback() || a.IsMulticast():
		return fmt.Errorf("stack: %v is not a unicast address", a)
	}
	return nil
}

// lastAddr returns the broadcast address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// Stack is one network interface running gVisor over a tamanet driver.
type Stack struct {
	Sockets // Socket, Listen, Dial, ListenPacket

	cfg   Config
	dev   nic.Device
	ep    *link.Endpoint
	gv    *gvstack.Stack
	start time.Time
	clock *stepClock // gVisor's clock; Run caches one reading per step

	wake    chan struct{} // one slot: a pending wake-up
	polling atomic.Bool   // guards Poll against concurrent callers
	irq     atomic.Bool   // the device's interrupts call Wake: no idle tick

	// ndpDirty is set when NDP changed addresses (SLAAC, DAD) or
	// routes (router advertisements), so the poll goroutine applies the
	// queued route changes and reprograms the device's multicast filter
	// at its next step (ndpUpdate).
	ndpDirty atomic.Bool
	routeMu  sync.Mutex
	routeOps []routeOp // queued by ndpEvents, guarded by routeMu
	groups   [][6]byte // the filter set last programmed; poll goroutine
	lastLink time.Time // the last link poll (Maintain); poll goroutine

	steps  atomic.Uint64 // Poll steps that ran
	busy   atomic.Uint64 // steps that found work
	sleeps atomic.Uint64 // idle sleeps of the runner
	wakes  atomic.Uint64 // sleeps ended by Wake

	ipMu sync.Mutex   // serialises SetIPv4 and ClearIPv4
	ip   netip.Prefix // current IPv4 address (zero: none)
	gw   netip.Addr   // current default gateway (zero: none)

	runMu  sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// New configures a gVisor stack on dev and posts the first receive buffers.
// The poll loop is not started.
func New(dev nic.Device, cfg Config) (*Stack, error) {
	if dev == nil {
		return nil, errors.New("stack: nil device")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Tick == 0 {
		cfg.Tick = DefaultTick
	}
	if cfg.RxBudget == 0 {
		cfg.RxBudget = DefaultRxBudget
	}
	ep, err := link.New(&link.Options{Device: dev})
	if err != nil {
		return nil, fmt.Errorf("stack: %w", err)
	}
	s := &Stack{cfg: cfg, dev: dev, ep: ep, clock: newStepClock(), wake: make(chan struct{}, 1)}
	s.start = s.clock.base
	s.lastLink = s.start
	opt := gvstack.Options{
		NetworkProtocols:   []gvstack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol},
		TransportProtocols: []gvstack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4},
		HandleLocal:        true,
		Clock:              s.clock,
	}
	if cfg.IPv6 {
		ndp := ipv6.DefaultNDPConfigurations() // RAs, SLAAC, default routers
		// No temporary (privacy) addresses (RFC 8981): this is a server,
		// and source selection prefers them (RFC 6724 rule 7), so an
		// unbound UDP service would answer from an address the client
		// never asked.
		ndp.AutoGenTempGlobalAddresses = false
		opt.NetworkProtocols = append(opt.NetworkProtocols, ipv6.NewProtocolWithOptions(ipv6.Options{
			NDPConfigs:       ndp,
			AutoGenLinkLocal: true,
			NDPDisp:          ndpEvents{s},
			DADConfigs:       gvstack.DefaultDADConfigurations(),
			MLD:              ipv6.MLDOptions{Enabled: true},
		}))
		opt.TransportProtocols = append(opt.TransportProtocols, icmp.NewProtocol6)
	}
	s.gv = gvstack.New(opt)
	s.Sockets = NewSockets(s.gv)
	if err := s.configure(); err != nil {
		s.gv.Close()
		return nil, err
	}
	if cfg.IPv6 {
		s.ndpUpdate()
	}
	ep.Refill()
	return s, nil
}

func (s *Stack) configure() error {
	sack := tcpip.TCPSACKEnabled(true)
	if err := s.gv.SetTransportProtocolOption(tcp.ProtocolNumber, &sack); err != nil {
		return fmt.Errorf("stack: enable SACK: %v", err)
	}
	if !s.cfg.RACK {
		rec := tcpip.TCPRecovery(0)
		if err := s.gv.SetTransportProtocolOption(tcp.ProtocolNumber, &rec); err != nil {
			return fmt.Errorf("stack: turn RACK off: %v", err)
		}
	}
	if err := s.gv.CreateNICWithOptions(NICID, s.ep, gvstack.NICOptions{
		Name:  s.dev.Info().Name,
		QDisc: &batchQDisc{ep: s.ep, wake: s.Wake},
	}); err != nil {
		return fmt.Errorf("stack: create NIC: %v", err)
	}
	var routes []tcpip.Route
	if s.cfg.IPv6 {
		routes = append(routes, tcpip.Route{Destination: linkLocalSubnet, NIC: NICID})
	}
	if p := s.cfg.Addr6; p.IsValid() {
		if err := s.addAddress(p); err != nil {
			return err
		}
		routes = append(routes, onLink(p))
	}
	s.gv.SetRouteTable(routes)
	// A dynamic interface starts with no IPv4 address or route: SetIPv4
	// adds them later. A static one gets them the same way now.
	if !s.cfg.Dynamic {
		return s.SetIPv4(s.cfg.Addr, s.cfg.Gateway)
	}
	return nil
}

// linkLocalSubnet is fe80::/64 (RFC 4291 section 2.5.6).
var linkLocalSubnet = tcpip.AddressWithPrefix{
	Address:   tcpip.AddrFrom16([16]byte{0: 0xfe, 1: 0x80}),
	PrefixLen: 64,
}.Subnet()

// GVisor returns the gVisor stack, for options and endpoints this package
// does not wrap.
func (s *Stack) GVisor() *gvstack.Stack { return s.gv }

// NICID returns the gVisor NIC id of the interface.
func (s *Stack) NICID() tcpip.NICID { return NICID }

// Endpoint returns the link endpoint.
func (s *Stack) Endpoint() *link.Endpoint { return s.ep }

// Config returns the configuration with defaults applied.
func (s *Stack) Config() Config { return s.cfg }

// MAC returns the interface's station address.
func (s *Stack) MAC() net.HardwareAddr { return net.HardwareAddr(s.ep.LinkAddress()) }

// Poll runs one bounded step of the poll loop: reclaim transmit buffers
// (under the transmit lock), receive and deliver up to RxBudget frames,
// refill the receive ring, and kick the device once for each ring that has
// new postings (link.Endpoint.Poll). It returns the frames
// and buffers handled and when the next step is due: 0 when there was work
// (more may be waiting), the tick otherwise. Poll is safe to call from any
// goroutine; a call that overlaps another returns at once with no work.
func (s *Stack) Poll() (work int, next time.Duration) {
	if !s.polling.CompareAndSwap(false, true) {
		return 0, s.cfg.Tick
	}
	rx, reclaimed := s.ep.Poll(s.cfg.RxBudget)
	if s.ndpDirty.Load() {
		s.ndpUpdate()
	}
	s.polling.Store(false)
	s.steps.Add(1)
	if work = rx + reclaimed; work > 0 {
		s.busy.Add(1)
		return work, 0
	}
	return 0, s.cfg.Tick
}

// Maintain gives the driver its slow-path step (see nic.Maintainer) and
// reports whether it reset the device; the driver counts its resets
// (nic.Stats.Resets). Once LinkPollInterval has passed since the last link
// poll, it then polls the link (nic.LinkPoller). Run calls it every
// MaintainInterval; a caller that drives Poll itself calls it as often. It
// must not overlap Poll.
func (s *Stack) Maintain() bool {
	reset := s.ep.Maintain()
	if now := s.clock.Now(); now.Sub(s.lastLink) >= LinkPollInterval {
		s.lastLink = now
		s.ep.PollLink()
	}
	return reset
}

// Wake makes a sleeping runner take a step now. It never blocks and may be
// called from an interrupt hook; wake-ups while one is pending coalesce.
func (s *Stack) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// SetInterrupt tells the runner whether the device's interrupts reach Wake
// (a frame received, a transmit completed). While on, an idle runner does
// not poll every Tick: it sleeps until a Wake or its next maintenance step,
// so an idle system wakes a few times a second instead of every tick. An
// interrupt that gets lost then costs up to MaintainInterval of latency,
// not a stall. Boards turn it on once their interrupt hook is installed.
func (s *Stack) SetInterrupt(on bool) { s.irq.Store(on) }

// Run drives Poll until ctx is done: back to back while steps find work,
// otherwise sleeping until the step is due (the tick, or with SetInterrupt
// the next maintenance) or Wake is called.
func (s *Stack) Run(ctx context.Context) {
	t := time.NewTimer(time.Hour)
	t.Stop()
	defer t.Stop()
	defer s.clock.idle()
	var lastWork time.Time
	lastMaint := s.clock.step()
	for {
		// The step's one clock reading: gVisor's reads until the next
		// step or sleep return it (stepClock), and the loop's own
		// decisions below use it.
		now := s.clock.step()
		work, next := s.Poll()
		if now.Sub(lastMaint) >= MaintainInterval {
			lastMaint = now
			s.Maintain()
		}
		if work == 0 && s.cfg.BusyPoll > 0 && now.Sub(lastWork) < s.cfg.BusyPoll {
			// Within the busy-poll window: step again after letting
			// other goroutines run. Bounded by BusyPoll since the last
			// work, so an idle system falls through to sleep.
			if ctx.Err() != nil {
				return
			}
			runtime.Gosched()
			continue
		}
		if work > 0 {
			lastWork = now
		}
		if next <= 0 {
			if ctx.Err() != nil {
				return
			}
			// A step did work: let the goroutines it woke (gVisor's TCP
			// processors, socket readers and writers) run before the
			// next step. On tamago there is one P; without this yield a
			// busy receive ring starves them and gVisor's segment queues
			// overflow (dropped ACKs). This yields once per busy step;
			// idle, the loop sleeps below and never spins.
			runtime.Gosched()
			continue
		}
		if s.irq.Load() {
			// Interrupt-driven: the only thing due is maintenance.
			next = max(lastMaint.Add(MaintainInterval).Sub(now), next)
		}
		s.sleeps.Add(1)
		// Asleep, the loop refreshes nothing: gVisor reads the counter.
		s.clock.idle()
		t.Reset(next)
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
			s.wakes.Add(1)
			t.Stop()
		case <-t.C:
		}
	}
}

// Start runs the poll loop on a new goroutine (once; later calls do
// nothing until Stop) and, on tamago, installs the stack as
// net.SocketFunc.
func (s *Stack) Start() {
	s.runMu.Lock()
	defer s.runMu.Unlock()
	if s.cancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.done = cancel, make(chan struct{})
	go func(done chan struct{}) {
		defer close(done)
		s.Run(ctx)
	}(s.done)
	installSocketFunc(s)
}

// Stop ends the poll loop started by Start and waits for it.
func (s *Stack) Stop() {
	s.runMu.Lock()
	cancel, done := s.cancel, s.done
	s.cancel, s.done = nil, nil
	s.runMu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// Close stops the poll loop and tears down the gVisor stack. The device
// keeps the buffers it holds.
func (s *Stack) Close() {
	s.Stop()
	s.gv.Close()
	s.gv.Wait()
	s.ep.Flush() // what gVisor sent while closing (RSTs): no poll step comes
}
