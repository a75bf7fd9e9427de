// Command unikernel is the tamanet firmware: it brings up the board's
// network device, a packet pool in DMA memory and the gVisor stack, starts
// the services of package service through the standard net package, and
// prints one line on the console when it is ready:
//
//	tamanet: ready ip=10.0.0.1/24 mac=02:00:00:00:00:01 nic=virtio-net
//
// The network configuration is fixed at build time (see internal/config).
// If it is invalid, or any step of the bring-up fails, the firmware prints
// "tamanet: error: ..." and stops before any service runs.
//
// The board comes from the target file selected by build tag (microvm, ...):
// each provides platform, which returns a target.
package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/tamanet/tamanet/alloc"
	"github.com/tamanet/tamanet/internal/config"
	"github.com/tamanet/tamanet/nic"
	"github.com/tamanet/tamanet/service"
	"github.com/tamanet/tamanet/stack"
)

// target is what a board offers the firmware.
type target struct {
	// Board names the board in the log and in /stats.
	Board string
	// DMA is memory for the driver's rings and the packet pool, outside
	// the Go heap.
	DMA []byte
	// NewNIC brings up the network device, with rings carved from arena
	// and receive buffers from pool.
	NewNIC func(arena *alloc.Arena, pool *alloc.Pool) (nic.Device, error)
	// Info adds board facts (e.g. the clock source) to the index page
	// and /stats.
	Info map[string]string
	// NICInterrupt, if set, is called once the stack runs, with the
	// stack's Wake: the board calls it when the NIC interrupts, and
	// reports whether it will.
	NICInterrupt func(wake func()) bool
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
}

// firmware is a brought-up system.
type firmware struct {
	cfg      config.Config
	pool     *alloc.Pool
	dev      nic.Device
	stack    *stack.Stack
	services *service.Services
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
	if fw.pool, err = arena.Pool(poolConfig); err != nil {
		return nil, fmt.Errorf("packet pool: %w", err)
	}
	if fw.dev, err = t.NewNIC(arena, fw.pool); err != nil {
		return nil, fmt.Errorf("network device: %w", err)
	}
	fw.stack, err = stack.New(fw.dev, fw.pool, stack.Config{
		Addr:     cfg.Addr,
		Gateway:  cfg.Gateway,
		MAC:      cfg.MAC,
		BusyPoll: busyPoll,
	})
	if err != nil {
		return nil, fmt.Errorf("stack: %w", err)
	}
	fw.stack.Start()
	irq := "off (polled)"
	if t.NICInterrupt != nil && t.NICInterrupt(fw.stack.Wake) {
		irq = "on"
		// Frames wake the poll loop: idle, it sleeps until one does
		// or maintenance is due, not every tick.
		fw.stack.SetInterrupt(true)
	}

	s := sockets{Listen: net.Listen, ListenPacket: net.ListenPacket}
	if socks != nil {
		s = socks(fw.stack)
	}
	info := map[string]string{
		"board": t.Board,
		"nic":   fw.dev.Info().Name,
		"ip":    cfg.Addr.String(),
		"mac":   fw.stack.MAC().String(),
	}
	if cfg.Gateway.IsValid() {
		info["gateway"] = cfg.Gateway.String()
	}
	info["nic_interrupt"] = irq
	for k, v := range t.Info {
		info[k] = v
	}
	fw.services, err = service.Start(service.Config{
		Listen:       s.Listen,
		ListenPacket: s.ListenPacket,
		Ports:        service.DefaultPorts,
		Stats:        func() any { return fw.stack.Stats() },
		Info:         info,
		Boot:         boot,
		Logf:         func(format string, args ...any) { fmt.Fprintf(console, "tamanet: "+format+"\n", args...) },
	})
	if err != nil {
		fw.stack.Close()
		return nil, err
	}

	fmt.Fprintf(console, "tamanet: ready ip=%v mac=%v nic=%s\n", cfg.Addr, fw.stack.MAC(), fw.dev.Info().Name)
	return fw, nil
}
