// Command unikernel is the tamanet firmware: it brings up the board's
// network device, a packet pool in DMA memory and the gVisor stack, starts
// the services of package service through the standard net package, and
// prints one line on the console when it is ready:
//
//	tamanet: ready ip=10.0.0.1/24 mac=02:00:00:00:00:01 nic=virtio-net
//
// IPv6 is always on: a link-local address from the MAC, SLAAC addresses
// from router advertisements and the static IP6 address, if any; every
// service listens on both families.
//
// The network configuration is fixed at build time (see internal/config).
// If it is invalid, or any step of the bring-up fails, the firmware prints
// "tamanet: error: ..." and stops before any service runs.
//
// With IP=dhcp the interface starts without an address and a DHCP client
// (package stack/dhcp) configures it; the ready line shows the leased
// address (or the fallback's, when no server answered in time), and
// /stats shows the lease under "dhcp". Name resolution goes through Go's
// resolver with the DNS servers from the build (DNS=) and the lease
// (package stack/resolve), so net.Dial("tcp", "name:port") works from
// firmware code. Built with LOOKUP=name:port, the firmware runs a
// self-test that resolves and dials that name every 5 s and shows the
// outcome under "lookup" in /stats.
//
// The board comes from the target file selected by build tag (microvm, ...):
// each provides platform, which returns the target of its board package's
// New (targetOf).
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/tamanet/tamanet/alloc"
	"github.com/tamanet/tamanet/internal/config"
	"github.com/tamanet/tamanet/nic"
	"github.com/tamanet/tamanet/service"
	"github.com/tamanet/tamanet/stack"
	"github.com/tamanet/tamanet/stack/dhcp"
	"github.com/tamanet/tamanet/stack/resolve"
)

// lookupTarget is the self-test's "name:port", set at build time with
// -ldflags "-X main.lookupTarget=..." (make LOOKUP=...); "" means none.
var lookupTarget = ""

// dhcpFallbackAfter is how long the firmware waits for a lease before it
// uses the fallback address.
var dhcpFallbackAfter = dhcp.DefaultFallbackAfter

// target is what a board offers the firmware.
type target struct {
	// Board names the board in the log and in /stats.
	Board string
	// DMA is memory for the driver's rings and the packet pool, outside
	// the Go heap.
	DMA []byte
	// NewNIC brings up the network device with station address mac,
	// rings carved from arena and receive buffers from pool.
	NewNIC func(mac [6]byte, arena *alloc.Arena, pool *alloc.Pool) (boardNIC, error)
	// Info returns board facts (e.g. the clock source) for the index
	// page and /stats; it is called once the NIC is up.
	Info func() map[string]string
}

// boardNIC is a board's network device.
type boardNIC interface {
	nic.Device
	// EnableInterrupt is called once the stack runs, with the stack's
	// Wake: the board calls it when the NIC interrupts, and reports
	// whether it will.
	EnableInterrupt(wake func()) bool
}

// board is what a board package's New returns: board/microvm.Board, or
// board/imx6ul.Board for the i.MX6UL boards.
type board[N boardNIC] interface {
	Name() string
	DMA() []byte
	Info() map[string]string
	NIC(mac [6]byte, arena *alloc.Arena, pool *alloc.Pool) (N, error)
}

// targetOf is the target of board b.
func targetOf[N boardNIC](b board[N]) target {
	return target{
		Board: b.Name(),
		DMA:   b.DMA(),
		NewNIC: func(mac [6]byte, arena *alloc.Arena, pool *alloc.Pool) (boardNIC, error) {
			n, err := b.NIC(mac, arena, pool)
			if err != nil {
				return nil, err
			}
			return n, nil
		},
		Info: b.Info,
	}
}

// busyPoll is how long the poll loop keeps polling after traffic before the
// CPU halts. Waking a halted CPU by interrupt costs hundreds of µs under
// QEMU TCG; within this window replies and follow-up requests are picked up
// at once. An idle unikernel still halts.
const busyPoll = 2 * time.Millisecond

// poolConfig sizes the packet pool: both rings full plus plenty of frames
// in flight between the driver and gVisor. 2048 × 2 KiB = 4 MiB.
var poolConfig = alloc.Config{Count: 2048}

// sockets opens the services' sockets.
type sockets struct {
	Listen       func(network, address string) (net.Listener, error)
	ListenPacket func(network, address string) (net.PacketConn, error)
	// Dial connects to a literal address (the resolver's name servers);
	// nil means net.Dialer.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
	// UDP6: a "udp" socket serves IPv4 only (tamago's net), so the echo
	// service opens a "udp6" one beside it.
	UDP6 bool
}

// firmware is a brought-up system.
type firmware struct {
	cfg      config.Config
	dev      boardNIC
	stack    *stack.Stack
	services *service.Services
	dhcp     *dhcp.Runner // nil with a static address
	resolver *resolve.Resolver
	lookup   *service.Lookup // nil without LOOKUP
}

// stats is /stats: the stack's counters plus the lease, the name servers
// and the lookup self-test.
type stats struct {
	stack.Stats
	DHCP   *dhcp.Status          `json:"dhcp,omitempty"`
	DNS    []string              `json:"dns"`
	Lookup *service.LookupStatus `json:"lookup,omitempty"`
}

func (fw *firmware) stats() any {
	st := stats{Stats: fw.stack.Stats(), DNS: []string{}}
	if fw.dhcp != nil {
		s := fw.dhcp.Status()
		st.DHCP = &s
	}
	for _, a := range fw.resolver.Servers() {
		st.DNS = append(st.DNS, a.String())
	}
	if fw.lookup != nil {
		s := fw.lookup.Status()
		st.Lookup = &s
	}
	return st
}

func main() {
	boot := time.Now()
	if _, err := run(platform, config.Default, nil, boot, os.Stdout); err != nil {
		fmt.Fprintf(os.Stdout, "tamanet: error: %v\n", err)
		// No half-configured system: stop the machine (on microvm a
		// triple fault, which QEMU's -no-reboot turns into an exit).
		os.Exit(1)
	}
	// Everything runs on goroutines from here on.
	select {}
}

// orNone formats p, or "none" for the zero Prefix.
func orNone(p netip.Prefix) string {
	if !p.IsValid() {
		return "none"
	}
	return p.String()
}

// run brings the system up: configuration, pool, NIC, stack, services, in
// that order, and prints the ready line on console once everything runs.
// socks nil means the standard net package, which reaches the stack
// through net.SocketFunc; host tests pass the stack's own methods instead.
func run(platform func() (target, error), configure func() (config.Config, error), socks func(*stack.Stack) sockets, boot time.Time, console io.Writer) (*firmware, error) {
	cfg, err := configure()
	if err != nil {
		return nil, err
	}
	t, err := platform()
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(console, "tamanet: board=%s %v\n", t.Board, cfg)

	fw := &firmware{cfg: cfg}
	arena := alloc.NewArena(t.DMA)
	pool, err := arena.Pool(poolConfig)
	if err != nil {
		return nil, fmt.Errorf("packet pool: %w", err)
	}
	// The driver sends from the configured address (config checked it is
	// 6 bytes) and reports it in its Info, which the stack uses.
	if fw.dev, err = t.NewNIC([6]byte(cfg.MAC), arena, pool); err != nil {
		return nil, fmt.Errorf("network device: %w", err)
	}
	scfg := stack.Config{
		Addr:     cfg.Addr,
		Gateway:  cfg.Gateway,
		IPv6:     true,
		Addr6:    cfg.Addr6,
		BusyPoll: busyPoll,
	}
	if cfg.DHCP {
		// The address comes from the DHCP client; cfg's is the fallback.
		scfg.Addr, scfg.Gateway, scfg.Dynamic = netip.Prefix{}, netip.Addr{}, true
	}
	fw.stack, err = stack.New(fw.dev, scfg)
	if err != nil {
		return nil, fmt.Errorf("stack: %w", err)
	}
	fw.stack.Start()
	irq := "off (polled)"
	if fw.dev.EnableInterrupt(fw.stack.Wake) {
		irq = "on"
		// Frames wake the poll loop: idle, it sleeps until one does
		// or maintenance is due, not every tick.
		fw.stack.SetInterrupt(true)
	}

	s := sockets{Listen: net.Listen, ListenPacket: net.ListenPacket, UDP6: true}
	if socks != nil {
		s = socks(fw.stack)
	}
	dial := s.Dial
	if dial == nil {
		dial = new(net.Dialer).DialContext
	}
	fw.resolver = resolve.New(dial)
	fw.resolver.SetServers(cfg.DNS)
	if socks == nil {
		// The firmware's own net package: net.Dial by name resolves
		// through the stack.
		fw.resolver.Install()
	}
	if cfg.DHCP {
		if err := fw.startDHCP(cfg, console); err != nil {
			fw.stack.Close()
			return nil, err
		}
	}
	addr, gw := fw.stack.IPv4()
	info := map[string]string{
		"board": t.Board,
		"nic":   fw.dev.Info().Name,
		"ip":    addr.String(),
		"mac":   fw.stack.MAC().String(),
	}
	if gw.IsValid() {
		info["gateway"] = gw.String()
	}
	if cfg.DHCP {
		info["ip_config"] = "dhcp"
	}
	info["ip6_link_local"] = fw.stack.LinkLocal().String()
	if cfg.Addr6.IsValid() {
		info["ip6"] = cfg.Addr6.String()
	}
	info["nic_interrupt"] = irq
	for k, v := range t.Info() {
		info[k] = v
	}
	fw.services, err = service.Start(service.Config{
		Listen:       s.Listen,
		ListenPacket: s.ListenPacket,
		UDP6:         s.UDP6,
		Ports:        service.DefaultPorts,
		Stats:        fw.stats,
		Info:         info,
		Boot:         boot,
		Logf:         func(format string, args ...any) { fmt.Fprintf(console, "tamanet: "+format+"\n", args...) },
	})
	if err != nil {
		fw.stopDHCP()
		fw.stack.Close()
		return nil, err
	}
	if lookupTarget != "" {
		// The firmware's self-test uses the standard library as any
		// firmware code would: net.DefaultResolver and net.Dialer. No
		// host test sets lookupTarget: there they would be the host's.
		fw.lookup, err = service.StartLookup(service.LookupConfig{Target: lookupTarget, LookupHost: net.DefaultResolver.LookupHost, Dial: new(net.Dialer).DialContext})
		if err != nil {
			fw.services.Close()
			fw.stopDHCP()
			fw.stack.Close()
			return nil, fmt.Errorf("LOOKUP=%q: %w", lookupTarget, err)
		}
	}

	fmt.Fprintf(console, "tamanet: ipv6 link-local=%v static=%s, SLAAC from router advertisements\n", fw.stack.LinkLocal(), orNone(cfg.Addr6))
	fmt.Fprintf(console, "tamanet: ready ip=%v mac=%v nic=%s\n", addr, fw.stack.MAC(), fw.dev.Info().Name)
	return fw, nil
}

// startDHCP runs the DHCP client and waits until the interface has an
// address: a lease, or the fallback after dhcpFallbackAfter. Without a
// fallback it waits for a lease as long as it takes.
func (fw *firmware) startDHCP(cfg config.Config, console io.Writer) error {
	var err error
	fw.dhcp, err = dhcp.Start(fw.stack, dhcp.Options{
		Hostname:        "tamanet",
		Fallback:        cfg.Addr,
		FallbackGateway: cfg.Gateway,
		FallbackAfter:   dhcpFallbackAfter,
		OnChange: func(st dhcp.Status) {
			servers := append([]netip.Addr(nil), cfg.DNS...)
			for _, d := range st.DNS {
				if a, err := netip.ParseAddr(d); err == nil {
					servers = append(servers, a)
				}
			}
			fw.resolver.SetServers(servers)
			if st.Source == "dhcp" {
				fmt.Fprintf(console, "tamanet: dhcp: %s ip=%s gw=%s dns=%v server=%s lease=%.0fs\n", st.State, st.Address, st.Router, st.DNS, st.Server, st.LeaseSeconds)
			} else {
				fmt.Fprintf(console, "tamanet: dhcp: %s ip=%s (%s)\n", st.State, st.Address, st.Source)
			}
		},
		Logf: func(format string, args ...any) { fmt.Fprintf(console, "tamanet: "+format+"\n", args...) },
	})
	if err != nil {
		return fmt.Errorf("dhcp: %w", err)
	}
	if cfg.Addr.IsValid() {
		fmt.Fprintf(console, "tamanet: dhcp: asking for a lease (fallback %v after %v)\n", cfg.Addr, dhcpFallbackAfter)
	} else {
		fmt.Fprintf(console, "tamanet: dhcp: asking for a lease (no fallback)\n")
	}
	<-fw.dhcp.Configured()
	return nil
}

func (fw *firmware) stopDHCP() {
	if fw.dhcp != nil {
		fw.dhcp.Stop()
	}
}
