// Package baseline is the networking path tamanet is measured against: the
// way TamaGo firmware joins a TamaGo driver to gVisor today (the pattern of
// usbarmory/imx-enet, usbarmory/go-net and tamago-example), rewritten here
// from that pattern for the benchmarks and the baseline firmware.
//
// gVisor's link/channel endpoint sits between the stack and a Device whose
// Rx returns a newly allocated copy of each received frame and whose Tx
// copies each frame into a fixed DMA buffer (tamago's soc/nxp/enet ENET),
// and glue code does Ethernet and moves the frames:
//
//   - receive: frame := dev.Rx() (allocated, copied out of DMA memory) →
//     NewPacketBuffer(MakeWithData(frame[14:])) (copied into gVisor's own
//     buffer) → channel.Endpoint.InjectInbound;
//   - transmit: a goroutine takes outbound packets with ReadContext
//     (TxGoroutine), or channel's WriteNotify hook takes them with Read in
//     the writer's goroutine (TxNotify, as imx-enet does); the Ethernet
//     header and the packet are written into a buffer (a copy) and handed
//     to dev.Tx (copied again, into the DMA buffer).
//
// Where the upstream glue is needlessly slow, this one is not, so the
// comparison measures the design rather than accidents: the transmit buffer
// is reused instead of grown with append per frame, packet buffers are
// released (DecRef), and the MTU is 1500 (imx-enet passes the 1518-byte
// frame size).
package baseline

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/tamanet/tamanet/stack"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	gvstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

// MTU is the IP MTU of the channel endpoint.
const MTU = 1500

// MaxFrame is the largest Ethernet frame the glue transmits (no FCS).
const MaxFrame = header.EthernetMinimumSize + MTU

// NICID is the gVisor NIC id of the interface.
const NICID tcpip.NICID = 1

// Device is what a TamaGo Ethernet driver offers (tamago's enet.ENET).
type Device interface {
	// Rx returns the next received frame in a newly allocated slice, or
	// nil when none is waiting.
	Rx() []byte
	// Tx copies frame into a transmit buffer and starts its transmission.
	Tx(frame []byte)
}

// TxMode selects how outbound packets leave the channel endpoint.
type TxMode int

const (
	// TxGoroutine: a goroutine takes packets with ReadContext.
	TxGoroutine TxMode = iota
	// TxNotify: channel's WriteNotify hook takes one packet with Read
	// in the goroutine that wrote it (imx-enet's NIC.Init).
	TxNotify
)

// Config configures a Stack.
type Config struct {
	// Addr is the IPv4 address and prefix. Required.
	Addr netip.Prefix
	// Gateway is the default route's next hop (optional).
	Gateway netip.Addr
	// MAC is the station address. Required.
	MAC net.HardwareAddr
	// Tx selects the transmit path.
	Tx TxMode
	// Queue is the channel endpoint's outbound queue length (default 256,
	// as imx-enet and go-net use).
	Queue int
	// Wait is called by the receive loop when Rx had nothing. The default
	// is runtime.Gosched, the busy poll of tamago's ENET.Start(true) and
	// go-net's Interface.Start; host benchmarks wait for the device's
	// signal instead, as tamago-example's interrupt handler does.
	Wait func(ctx context.Context)
}

// Stack is one interface: gVisor over a channel endpoint over a Device.
type Stack struct {
	// Sockets is tamanet's own net mapping (stack.Sockets): the socket
	// layer is not what the comparison measures, so both firmwares share it.
	stack.Sockets

	gv  *gvstack.Stack
	ep  *channel.Endpoint
	dev Device
	mac tcpip.LinkAddress
	cfg Config

	txMu  sync.Mutex // guards txBuf (TxNotify: many writers)
	txBuf [MaxFrame]byte

	rxFrames, txFrames, rxRunts, txTooBig atomic.Uint64

	runMu  sync.Mutex
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New configures a gVisor stack over a channel endpoint on dev. Nothing
// moves until Start.
func New(dev Device, cfg Config) (*Stack, error) {
	if dev == nil {
		return nil, errors.New("baseline: nil device")
	}
	if !cfg.Addr.IsValid() || !cfg.Addr.Addr().Is4() {
		return nil, fmt.Errorf("baseline: address %v is not an IPv4 prefix", cfg.Addr)
	}
	if len(cfg.MAC) != 6 {
		return nil, fmt.Errorf("baseline: MAC %v is not 6 bytes", cfg.MAC)
	}
	if cfg.Queue == 0 {
		cfg.Queue = 256
	}
	if cfg.Wait == nil {
		cfg.Wait = func(context.Context) { runtime.Gosched() }
	}
	s := &Stack{dev: dev, mac: tcpip.LinkAddress(cfg.MAC), cfg: cfg}
	s.ep = channel.New(cfg.Queue, MTU, s.mac)
	// The glue writes the Ethernet header, so gVisor must resolve link
	// addresses (ARP) itself.
	s.ep.LinkEPCapabilities |= gvstack.CapabilityResolutionRequired
	s.gv = gvstack.New(gvstack.Options{
		NetworkProtocols:   []gvstack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol},
		TransportProtocols: []gvstack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4},
		HandleLocal:        true,
	})
	s.Sockets = stack.NewSockets(s.gv)
	// SACK as tamanet's stack has it: the comparison is of the link path.
	sack := tcpip.TCPSACKEnabled(true)
	if err := s.gv.SetTransportProtocolOption(tcp.ProtocolNumber, &sack); err != nil {
		return nil, fmt.Errorf("baseline: SACK: %v", err)
	}
	if err := s.gv.CreateNIC(NICID, s.ep); err != nil {
		return nil, fmt.Errorf("baseline: create NIC: %v", err)
	}
	pa := tcpip.ProtocolAddress{
		Protocol: ipv4.ProtocolNumber,
		AddressWithPrefix: tcpip.AddressWithPrefix{
			Address:   tcpip.AddrFrom4(cfg.Addr.Addr().As4()),
			PrefixLen: cfg.Addr.Bits(),
		},
	}
	if err := s.gv.AddProtocolAddress(NICID, pa, gvstack.AddressProperties{}); err != nil {
		return nil, fmt.Errorf("baseline: add address: %v", err)
	}
	routes := []tcpip.Route{{Destination: pa.AddressWithPrefix.Subnet(), NIC: NICID}}
	if cfg.Gateway.IsValid() {
		routes = append(routes, tcpip.Route{Destination: header.IPv4EmptySubnet, Gateway: tcpip.AddrFrom4(cfg.Gateway.As4()), NIC: NICID})
	}
	s.gv.SetRouteTable(routes)
	if cfg.Tx == TxNotify {
		s.ep.AddNotify(notifier{s})
	}
	return s, nil
}

// MAC returns the station address.
func (s *Stack) MAC() net.HardwareAddr { return net.HardwareAddr(s.mac) }

// Counters are the glue's frame counters.
type Counters struct {
	RxFrames uint64 `json:"rx_frames"`
	TxFrames uint64 `json:"tx_frames"`
	RxRunts  uint64 `json:"rx_runts"`
	TxTooBig uint64 `json:"tx_too_big"`
	// TxQueued is how many packets wait in the channel endpoint.
	TxQueued int `json:"tx_queued"`
}

// Counters returns the glue's counters.
func (s *Stack) Counters() Counters {
	return Counters{
		RxFrames: s.rxFrames.Load(), TxFrames: s.txFrames.Load(),
		RxRunts: s.rxRunts.Load(), TxTooBig: s.txTooBig.Load(),
		TxQueued: s.ep.NumQueued(),
	}
}

// Start runs the receive loop (and, with TxGoroutine, the transmit
// goroutine) until Stop.
func (s *Stack) Start() {
	s.runMu.Lock()
	defer s.runMu.Unlock()
	if s.cancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for ctx.Err() == nil {
			if s.RxOnce() == 0 {
				s.cfg.Wait(ctx)
			}
		}
	}()
	if s.cfg.Tx == TxGoroutine {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for {
				pkt := s.ep.ReadContext(ctx)
				if pkt == nil {
					return
				}
				s.txMu.Lock()
				s.transmit(pkt)
				s.txMu.Unlock()
			}
		}()
	}
}

// Stop ends the loops started by Start and waits for them.
func (s *Stack) Stop() {
	s.runMu.Lock()
	cancel := s.cancel
	s.cancel = nil
	s.runMu.Unlock()
	if cancel != nil {
		cancel()
		s.wg.Wait()
	}
}

// Close stops the loops and tears the gVisor stack down.
func (s *Stack) Close() {
	s.Stop()
	s.gv.Close()
	s.gv.Wait()
}

// RxOnce hands every frame the device has to gVisor and returns how many.
func (s *Stack) RxOnce() int {
	n := 0
	for frame := s.dev.Rx(); frame != nil; frame = s.dev.Rx() {
		s.deliver(frame)
		n++
	}
	return n
}

// deliver injects one received frame: the payload is copied into a gVisor
// buffer, the header pushed in front of it.
func (s *Stack) deliver(frame []byte) {
	const hl = header.EthernetMinimumSize
	if len(frame) < hl {
		s.rxRunts.Add(1)
		return
	}
	proto := tcpip.NetworkProtocolNumber(binary.BigEndian.Uint16(frame[12:hl]))
	pkt := gvstack.NewPacketBuffer(gvstack.PacketBufferOptions{
		ReserveHeaderBytes: hl,
		Payload:            buffer.MakeWithData(frame[hl:]),
	})
	copy(pkt.LinkHeader().Push(hl), frame[:hl])
	s.rxFrames.Add(1)
	s.ep.InjectInbound(proto, pkt)
	pkt.DecRef()
}

// transmit writes the Ethernet header and pkt into txBuf and hands the
// frame to the device, which copies it into its DMA buffer. txMu is held.
func (s *Stack) transmit(pkt *gvstack.PacketBuffer) {
	defer pkt.DecRef()
	b := s.txBuf[:]
	n := copy(b, pkt.EgressRoute.RemoteLinkAddress)
	n += copy(b[n:], s.mac)
	binary.BigEndian.PutUint16(b[n:], uint16(pkt.NetworkProtocolNumber))
	n += 2
	for _, v := range pkt.AsSlices() {
		if n+len(v) > len(b) {
			s.txTooBig.Add(1)
			return
		}
		n += copy(b[n:], v)
	}
	s.txFrames.Add(1)
	s.dev.Tx(b[:n])
}

// notifier is the TxNotify hook.
type notifier struct{ s *Stack }

// WriteNotify transmits one queued packet in the writer's goroutine.
func (n notifier) WriteNotify() {
	pkt := n.s.ep.Read()
	if pkt == nil {
		return
	}
	n.s.txMu.Lock()
	n.s.transmit(pkt)
	n.s.txMu.Unlock()
}
