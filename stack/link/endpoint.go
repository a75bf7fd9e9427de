// Package link is tamanet's gVisor link endpoint: a stack.LinkEndpoint over
// a nic.Device that handles Ethernet itself.
//
// It has no goroutine and no channel. The receive side is pulled by the
// caller's poll loop (Poll, which is Reclaim, Receive and Refill in the
// order the nic package gives): each received pool buffer is checked
// (length, destination address), copied once into a gVisor view — gVisor's
// buffer.View cannot wrap memory it does not own — freed at once, and
// delivered with DeliverNetworkPacket. ARP is gVisor's
// (CapabilityResolutionRequired).
//
// The transmit side is gVisor's queueing discipline calling Post, or any
// caller calling WritePackets, from whatever goroutine sends. The transmit
// mutex serialises writers, as the nic.Device contract asks (once per Post,
// once per WritePackets batch): each packet's Ethernet header and payload
// views are written once, in place, into a buffer of the device's pool
// whose headroom the driver keeps for its own header, and the buffer is
// posted with Transmit. One TxKick ends a WritePackets batch; the frames
// Post leaves wait for the poll step's Flush, so one TxKick covers what
// every writer posted between two steps.
//
// When the driver is a nic.Offloader whose device fills TCP checksums
// (Offloads.TxChecksum), the endpoint asks gVisor for host GSO
// (stack.GSOEndpoint): TCP hands down segments of up to 64 KiB with the
// pseudo-header sum in place. A segment the device cuts (TSO4, TSO6) goes
// to the driver as one chain of pool buffers with TxMeta asking for the
// checksum and the segmentation (gso.go); the endpoint cuts any other
// into frames whose checksums the device fills (segment.go). Otherwise
// gVisor's own GSO batches the segment work.
//
// The endpoint reads TCP headers in two places. Post keeps a plain ACK
// back for the step's Flush, so that a reply sent before then carries it
// instead (ack.go). And a plain ACK that arrives past a receive window
// gVisor announced as zero, which gVisor's TCP would drop unprocessed, is
// delivered at the window's edge (zerowindow.go).
//
// Drops are counted by cause (nic.Cause) in the endpoint's own counters,
// apart from the driver's. A frame the driver refuses (nic.Refusal) is
// counted here, once: the driver does not count it.
package link

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/tamanet/tamanet/alloc"
	"github.com/tamanet/tamanet/nic"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Options configures an Endpoint.
type Options struct {
	// Device is the driver. Required. Transmit buffers come from its
	// Pool.
	Device nic.Device
}

// Endpoint is a stack.LinkEndpoint over a nic.Device.
type Endpoint struct {
	dev        nic.Device
	pool       *alloc.Pool
	txHeadroom int
	overhead   int // Info.MaxFrame - Info.MTU: header and VLAN tag

	// mu guards the fields gVisor may change at run time. The receive
	// path takes it once per batch, not per frame.
	mu         sync.RWMutex
	dispatcher stack.NetworkDispatcher
	addr       tcpip.LinkAddress
	mac        [6]byte
	mtu        uint32

	// txMu serialises the transmit side of the device: WritePackets
	// (one lock per batch), Post, Flush and Reclaim.
	txMu sync.Mutex
	// unkicked counts frames Post posted that no TxKick has covered yet.
	// Written under txMu; read without it by Flush, so an idle step
	// takes no lock.
	unkicked atomic.Uint32
	// inflight estimates the buffers on the transmit ring: posted (write,
	// writeChain) and not yet reclaimed, counted as Reclaim counts them,
	// one per buffer of a chain. Guarded by txMu. It only decides when Post kicks at
	// once, so an estimate that is off costs a kick or a step of latency,
	// nothing else; Maintain and PollLink reset it.
	inflight int

	// held is the packets Post held back while the transmit ring was
	// full (hold.go); guarded by txMu. nheld mirrors its length for
	// Flush's lock-free check; heldTotal counts every packet held.
	held      holdQueue
	nheld     atomic.Int32
	heldTotal atomic.Uint64
	// cutTotal counts the frames writeSegments cut (Stats.TxCut).
	cutTotal atomic.Uint64
	// acks are the plain ACKs Post keeps for Flush (ack.go), oldest
	// first; guarded by txMu. npending mirrors nacks for Flush's
	// lock-free check; acksMerged counts those a later segment replaced.
	acks       [MaxPendingAcks]pendingAck
	nacks      int
	npending   atomic.Int32
	acksMerged atomic.Uint64
	// zero notes the connections whose latest segment out announced a
	// zero receive window (zerowindow.go), oldest first; guarded by zmu,
	// not txMu, since the receive path reads them. nzero mirrors nzeroW
	// for the lock-free checks; zeroAcks and zeroEvicted are
	// Stats.RxZeroWindowAcks and Stats.ZeroWindowsEvicted.
	zmu         sync.Mutex
	zero        [MaxZeroWindows]zeroWindow
	nzeroW      int
	nzero       atomic.Int32
	zeroAcks    atomic.Uint64
	zeroEvicted atomic.Uint64

	// ol is the driver's nic.Offloader, nil when it has none; off its
	// Offloads, hostGSO whether gVisor is asked for host GSO, tso
	// whether the device cuts TCP over both IPv4 and IPv6. txBufs
	// is the scratch chain of one packet (under txMu), so a packet of
	// several buffers allocates nothing.
	ol      nic.Offloader
	off     nic.Offloads
	hostGSO bool
	tso     bool
	// txCsum: gVisor leaves transport checksums to the link, and the
	// endpoint to the device (txcsum.go). frags are the fragmented UDP
	// datagrams being summed (under txMu), fragAge orders them, and
	// fragDropped counts those given up (Stats.TxFragDropped).
	txCsum      bool
	frags       [MaxFragmented]pendingDatagram
	fragAge     uint64
	fragDropped atomic.Uint64
	txBufs      []*alloc.Buffer
	txMeta      nic.TxMeta // the packet's TxMeta, here so it does not escape

	rx, tx nic.RingCounters

	// rxBufs holds one received packet's buffers (Offloads.MaxRxBuffers;
	// poll goroutine only). rxVouched is set while a packet the device
	// vouched for is delivered (rxoffload.go).
	rxBufs    []*alloc.Buffer
	rxVouched atomic.Bool
}

// Compile-time checks.
var (
	_ stack.LinkEndpoint = (*Endpoint)(nil)
	_ stack.GSOEndpoint  = (*Endpoint)(nil)
)

// New returns an endpoint over opts.Device.
func New(opts *Options) (*Endpoint, error) {
	if opts == nil || opts.Device == nil || opts.Device.Pool() == nil {
		return nil, errors.New("link: a Device with a Pool is required")
	}
	info := opts.Device.Info()
	e := &Endpoint{
		dev:        opts.Device,
		pool:       opts.Device.Pool(),
		txHeadroom: info.Headroom,
		overhead:   info.MaxFrame - info.MTU,
		mtu:        uint32(info.MTU),
	}
	if e.mtu < header.IPv4MinimumMTU {
		return nil, fmt.Errorf("link: MTU %d below the IPv4 minimum %d", e.mtu, header.IPv4MinimumMTU)
	}
	if e.overhead < header.EthernetMinimumSize {
		return nil, fmt.Errorf("link: MaxFrame %d leaves no Ethernet header over MTU %d", info.MaxFrame, info.MTU)
	}
	// The largest frame plus the driver's headroom must fit one buffer.
	if need := e.txHeadroom + info.MaxFrame; need > e.pool.BufferSize() {
		return nil, fmt.Errorf("link: pool buffers of %d bytes cannot hold %d-byte headroom + %d-byte frame", e.pool.BufferSize(), e.txHeadroom, info.MaxFrame)
	}
	e.initOffloads()
	// The station address is the one the driver uses: configuration
	// reaches it through the driver's own Config.
	e.setAddr(tcpip.LinkAddress(info.MAC[:]))
	return e, nil
}

func (e *Endpoint) setAddr(addr tcpip.LinkAddress) error {
	if len(addr) != header.EthernetAddressSize {
		return fmt.Errorf("link: MAC %q is not %d bytes", addr, header.EthernetAddressSize)
	}
	e.addr = addr
	copy(e.mac[:], addr)
	return nil
}

// Device returns the driver under the endpoint.
func (e *Endpoint) Device() nic.Device { return e.dev }

// MTU implements stack.LinkEndpoint: the Ethernet payload size.
func (e *Endpoint) MTU() uint32 {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.mtu
}

// SetMTU implements stack.LinkEndpoint.
func (e *Endpoint) SetMTU(mtu uint32) {
	if need := e.txHeadroom + e.overhead + int(mtu); need > e.pool.BufferSize() {
		return // a frame that size would not fit a buffer; keep the old MTU
	}
	e.mu.Lock()
	e.mtu = mtu
	e.mu.Unlock()
}

// MaxHeaderLength implements stack.LinkEndpoint.
func (e *Endpoint) MaxHeaderLength() uint16 { return header.EthernetMinimumSize }

// LinkAddress implements stack.LinkEndpoint.
func (e *Endpoint) LinkAddress() tcpip.LinkAddress {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.addr
}

// SetLinkAddress implements stack.LinkEndpoint. An address that is not six
// bytes is ignored.
func (e *Endpoint) SetLinkAddress(addr tcpip.LinkAddress) {
	e.mu.Lock()
	_ = e.setAddr(addr)
	e.mu.Unlock()
}

// Capabilities implements stack.LinkEndpoint. gVisor computes transport
// checksums unless the device fills them (txcsum.go), and verifies them on
// every received packet but those the device vouched for (rxCaps,
// rxoffload.go).
func (e *Endpoint) Capabilities() stack.LinkEndpointCapabilities {
	c := stack.CapabilityResolutionRequired | e.rxCaps()
	if e.txCsum {
		c |= stack.CapabilityTXChecksumOffload
	}
	return c
}

// Attach implements stack.LinkEndpoint. A nil dispatcher detaches; frames
// received while detached are dropped (nic.LinkDown).
func (e *Endpoint) Attach(d stack.NetworkDispatcher) {
	e.mu.Lock()
	e.dispatcher = d
	e.mu.Unlock()
}

// IsAttached implements stack.LinkEndpoint.
func (e *Endpoint) IsAttached() bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.dispatcher != nil
}

// Wait implements stack.LinkEndpoint. The endpoint has no goroutines.
func (e *Endpoint) Wait() {}

// ARPHardwareType implements stack.LinkEndpoint.
func (e *Endpoint) ARPHardwareType() header.ARPHardwareType { return header.ARPHardwareEther }

// AddHeader implements stack.LinkEndpoint.
func (e *Endpoint) AddHeader(pkt *stack.PacketBuffer) {
	eth := header.Ethernet(pkt.LinkHeader().Push(header.EthernetMinimumSize))
	eth.Encode(&header.EthernetFields{
		SrcAddr: pkt.EgressRoute.LocalLinkAddress,
		DstAddr: pkt.EgressRoute.RemoteLinkAddress,
		Type:    pkt.NetworkProtocolNumber,
	})
}

// ParseHeader implements stack.LinkEndpoint.
func (e *Endpoint) ParseHeader(pkt *stack.PacketBuffer) bool {
	hdr, ok := pkt.LinkHeader().Consume(header.EthernetMinimumSize)
	if !ok {
		return false
	}
	pkt.NetworkProtocolNumber = header.Ethernet(hdr).Type()
	return true
}

// Close implements stack.LinkEndpoint. Packets still held back, and first
// fragments held for their checksum, are released.
func (e *Endpoint) Close() {
	e.txMu.Lock()
	e.releaseAcks()
	e.releaseHeld()
	e.releaseFragments()
	e.txMu.Unlock()
}

// SetOnCloseAction implements stack.LinkEndpoint.
func (e *Endpoint) SetOnCloseAction(func()) {}

// Poll runs one bounded step of the receive side and returns the frames
// received and the transmit buffers reclaimed. The order is the one place
// the nic.Device protocol is spelled out in code: Reclaim (under the
// transmit lock, after kicking what Post left) so transmit buffers are back
// in the pool before Refill needs them; Receive and deliver up to budget
// frames; then Refill, which posts fresh buffers on the slots Receive freed
// and kicks the device once; then Flush, which kicks the transmit side once
// for what the deliveries (and other writers) posted meanwhile.
// Only one goroutine may call Poll, Receive, Refill or Maintain.
func (e *Endpoint) Poll(budget int) (rx, reclaimed int) {
	reclaimed = e.Reclaim()
	rx = e.Receive(budget)
	e.Refill()
	e.Flush() // what the step's deliveries (replies, ACKs) posted
	return rx, reclaimed
}

// Refill posts fresh pool buffers on every free receive slot and, if it
// posted any, tells the device with one RxKick. Poll ends with it; the
// stack calls it once at start to fill the ring, Maintain after a reset.
func (e *Endpoint) Refill() {
	if e.dev.Refill() > 0 {
		e.dev.RxKick()
	}
}

// Maintain runs the device's slow-path step (nic.Maintainer) with the
// transmit side held, and refills the receive ring if the device was reset.
// It reports whether the device was reset. Only the goroutine that calls
// Poll may call Maintain.
func (e *Endpoint) Maintain() (reset bool) {
	m, ok := e.dev.(nic.Maintainer)
	if !ok {
		return false
	}
	e.txMu.Lock()
	reset = m.Maintain()
	if reset {
		// The device holds nothing now; the frames posted went back to
		// the pool.
		e.unkicked.Store(0)
	}
	e.inflight = 0 // see PollLink
	e.txMu.Unlock()
	if reset {
		e.Refill()
	}
	return reset
}

// PollLink runs the device's link poll (nic.LinkPoller) with the transmit
// side held, and reports whether the device polls its link at all. Only
// the goroutine that calls Poll may call PollLink.
func (e *Endpoint) PollLink() bool {
	p, ok := e.dev.(nic.LinkPoller)
	if !ok {
		return false
	}
	e.txMu.Lock()
	p.PollLink()
	// A link change may have restarted the device, which puts the frames
	// on its ring back in the pool without Reclaim: inflight would stay
	// high and lone frames would wait for the poll loop. Forgetting the
	// estimate here (and in Maintain) heals it; when frames were in
	// flight after all, it costs one early kick.
	e.inflight = 0
	e.txMu.Unlock()
	return true
}

// SetGroups gives the device its multicast filter set (nic.GroupFilter)
// with the transmit side held, and reports whether the device filters at
// all; a device without a filter receives every group already. Only the
// goroutine that calls Poll may call SetGroups.
func (e *Endpoint) SetGroups(groups [][6]byte) bool {
	f, ok := e.dev.(nic.GroupFilter)
	if !ok {
		return false
	}
	e.txMu.Lock()
	f.SetGroups(groups)
	e.txMu.Unlock()
	return true
}

// Reclaim returns completed transmit buffers to the pool. Plain ACKs Post
// kept are posted and frames Post left unkicked are kicked first, under
// the same lock: the poll step starts with Reclaim, so a kept ACK never
// waits behind the step's receive batch.
func (e *Endpoint) Reclaim() int {
	e.txMu.Lock()
	if e.nacks > 0 {
		e.mu.RLock()
		maxFrame := e.overhead + int(e.mtu)
		e.mu.RUnlock()
		e.postAcks(maxFrame)
	}
	e.kickPosted()
	n := e.reclaim()
	e.txMu.Unlock()
	return n
}

// reclaim calls the driver's Reclaim and keeps inflight. Caller holds
// txMu.
func (e *Endpoint) reclaim() int {
	n := e.dev.Reclaim()
	e.inflight = max(e.inflight-n, 0)
	return n
}

// MaxUnkicked is how many frames Post leaves on the ring before it kicks
// the device itself, without waiting for Flush: a long burst keeps the
// device busy while the rest is built, and a kick costs little against
// this many frames.
const MaxUnkicked = 32

// Post writes pkt into a pool buffer and posts it, as WritePackets does
// for one packet, but does not kick the device: Flush (or the next Poll)
// does, once for every frame posted since, or Post itself once
// MaxUnkicked frames wait. A queueing discipline calls it per packet and
// has the poll loop call Flush, so one notification covers what every
// writer posted between two steps. A frame posted while the ring was
// empty is kicked at once: nothing is in flight, so the device is idle and
// a lone packet (a request, a reply) should not wait for the poll loop;
// the frames that follow it, while it is in flight, wait. first reports
// that pkt waits as the first frame since the last kick: the caller then
// makes sure a Flush comes.
func (e *Endpoint) Post(pkt *stack.PacketBuffer) (first bool, err tcpip.Error) {
	e.noteWindow(pkt)
	e.mu.RLock()
	maxFrame := e.overhead + int(e.mtu)
	e.mu.RUnlock()
	e.txMu.Lock()
	// A data segment can neither be kept nor replace a kept ACK when
	// none is kept: the common case of a bulk transfer skips the parse.
	if e.nacks > 0 || pkt.Data().Size() == 0 {
		if ti, ok := ackInfo(pkt); ok {
			if i := e.findAck(&ti.flow); i >= 0 {
				if ti.supersedes(&e.acks[i]) {
					e.dropAck(i)
				} else {
					// The kept ACK goes first: it may be a
					// duplicate ACK the peer counts.
					e.postAck(i, maxFrame)
				}
			}
			if ti.plainACK() && e.keepAck(pkt, &ti) {
				e.txMu.Unlock()
				return true, nil
			}
		}
	}
	idle := e.inflight == 0
	before := e.unkicked.Load()
	cause, ok, held := e.postOne(pkt, maxFrame)
	if n := e.unkicked.Load(); n > 0 {
		first = before == 0
		if (ok && !held && idle) || n >= MaxUnkicked {
			e.kickPosted()
			first = false
		}
	}
	e.txMu.Unlock()
	switch {
	case held:
		return true, nil
	case !ok:
		e.tx.Drop(cause)
		return false, txError(cause)
	}
	return first, nil
}

// postOne posts pkt behind the packets held back for a full ring, or holds
// it too: held reports that it waits for the next step. A packet the ring
// stays full for after a kick and a reclaim is held (the part of it not
// yet cut into frames) rather than dropped, as a queueing discipline holds
// one for a stopped Linux queue: dropping it would be a loss TCP has to
// recover from. ok is false, with the cause, for a packet refused, or one
// more than MaxHeld; the caller counts it. Caller holds txMu.
func (e *Endpoint) postOne(pkt *stack.PacketBuffer, maxFrame int) (cause nic.Cause, ok, held bool) {
	if e.held.n > 0 {
		// Packets held back go first, in order.
		e.drainHeld(maxFrame)
		if e.held.n > 0 {
			if !e.hold(pkt, 0) {
				return nic.RingFull, false, false
			}
			return 0, true, true
		}
	}
	full, sent := false, 0
	cause, ok = e.writeOne(pkt, maxFrame, &full, &sent)
	if !ok && cause == nic.RingFull && e.hold(pkt, sent) {
		return 0, true, true
	}
	return cause, ok, false
}

// Flush posts the packets Post held back while the ring was full, as far
// as the ring takes them, and kicks the device for the frames Post left
// unkicked, if any. It takes the transmit lock only when there are some,
// so an idle poll step writes no register and takes no lock.
func (e *Endpoint) Flush() {
	if e.unkicked.Load() == 0 && e.nheld.Load() == 0 && e.npending.Load() == 0 {
		return
	}
	e.mu.RLock()
	maxFrame := e.overhead + int(e.mtu)
	e.mu.RUnlock()
	e.txMu.Lock()
	if e.held.n > 0 {
		e.drainHeld(maxFrame)
	}
	e.postAcks(maxFrame)
	e.kickPosted()
	e.txMu.Unlock()
}

// kickPosted kicks the device if Post left frames unkicked. Caller holds
// txMu.
func (e *Endpoint) kickPosted() {
	if e.unkicked.Load() != 0 {
		e.unkicked.Store(0)
		e.dev.TxKick()
	}
}

// Receive takes up to budget frames from the device and delivers each to
// the attached dispatcher. It does not refill the device.
func (e *Endpoint) Receive(budget int) int {
	e.mu.RLock()
	d, mac, mtu := e.dispatcher, e.mac, e.mtu
	e.mu.RUnlock()
	if e.ol != nil {
		return e.receivePackets(d, &mac, mtu, budget)
	}
	n := 0
	for n < budget {
		b := e.dev.Receive()
		if b == nil {
			break
		}
		n++
		e.deliver(d, &mac, mtu, b)
	}
	return n
}

// deliver hands one received frame to d. It owns b and returns it to the
// pool on every path, before gVisor sees the packet.
func (e *Endpoint) deliver(d stack.NetworkDispatcher, mac *[6]byte, mtu uint32, b *alloc.Buffer) {
	frame := b.Bytes()
	cause := nic.NumCauses // no drop
	var typ tcpip.PacketType
	switch {
	case d == nil:
		cause = nic.LinkDown
	case len(frame) < header.EthernetMinimumSize:
		cause = nic.Runt
	case len(frame) > e.overhead+int(mtu):
		cause = nic.Oversize
	case frame[0]&1 != 0: // group bit: multicast or broadcast (IEEE 802 §8.2)
		typ = tcpip.PacketMulticast
		if isBroadcast(frame[:6]) {
			typ = tcpip.PacketBroadcast
		}
	case [6]byte(frame[:6]) == *mac:
		typ = tcpip.PacketHost // the zero value, spelled out
	default:
		cause = nic.Filtered
	}
	if cause != nic.NumCauses {
		e.rx.Drop(cause)
		_ = b.Free()
		return
	}
	proto := tcpip.NetworkProtocolNumber(binary.BigEndian.Uint16(frame[12:14]))
	// The one copy: gVisor owns its views. The pool buffer goes back now.
	v := buffer.NewViewWithData(frame)
	e.rx.Count(len(frame))
	_ = b.Free()
	e.zeroWindowAck(v.AsSlice()[header.EthernetMinimumSize:], v.Size()-header.EthernetMinimumSize, proto, false)
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithView(v)})
	pkt.LinkHeader().Consume(header.EthernetMinimumSize)
	pkt.NetworkProtocolNumber = proto
	pkt.PktType = typ
	d.DeliverNetworkPacket(proto, pkt)
	pkt.DecRef()
}

func isBroadcast(a []byte) bool {
	return a[0]&a[1]&a[2]&a[3]&a[4]&a[5] == 0xff
}

// WritePackets implements stack.LinkWriter. It takes the transmit lock once
// for the batch, writes each packet into its own pool buffer, posts it, and
// kicks the device once. A packet that cannot be sent is dropped and
// counted; the error of the last failure is returned with the number sent.
func (e *Endpoint) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	e.mu.RLock()
	mtu := e.mtu
	e.mu.RUnlock()
	maxFrame := e.overhead + int(mtu)

	e.txMu.Lock()
	e.postAcks(maxFrame) // in order: what Post kept goes first
	sent := 0
	full := false
	var terr tcpip.Error
	for _, pkt := range pkts.AsSlice() {
		e.noteWindow(pkt)
		cut := 0
		cause, ok := e.writeOne(pkt, maxFrame, &full, &cut)
		if ok {
			sent++
			continue
		}
		e.tx.Drop(cause)
		terr = txError(cause)
	}
	if e.unkicked.Load() > 0 {
		e.unkicked.Store(0) // this kick covers what Post left too
		e.dev.TxKick()
	}
	e.txMu.Unlock()
	return sent, terr
}

// txError is the gVisor error for a transmit drop of cause.
func txError(cause nic.Cause) tcpip.Error {
	switch cause {
	case nic.Oversize:
		return &tcpip.ErrMessageTooLong{}
	case nic.LinkDown:
		return &tcpip.ErrClosedForSend{}
	case nic.Malformed:
		return &tcpip.ErrMalformedHeader{}
	default:
		return &tcpip.ErrNoBufferSpace{}
	}
}

// writeOne posts pkt the way the device takes packets: as a chain with
// offload requests when it is a nic.Offloader (or as frames cut from it,
// segment.go), otherwise as one frame in one buffer. Every frame posted
// counts in unkicked. *sent is the TCP payload of pkt already posted as
// frames by an earlier call that the ring stopped; writeOne advances it
// when the ring stops it again. Caller holds txMu.
func (e *Endpoint) writeOne(pkt *stack.PacketBuffer, maxFrame int, full *bool, sent *int) (nic.Cause, bool) {
	if e.ol != nil {
		return e.writeChain(pkt, maxFrame, full, sent)
	}
	return e.write(pkt, maxFrame, full)
}

// write copies pkt into a pool buffer and posts it. Caller holds txMu.
// Once the ring stays full after a reclaim, *full is set and the rest of
// the batch is dropped without retrying.
func (e *Endpoint) write(pkt *stack.PacketBuffer, maxFrame int, full *bool) (nic.Cause, bool) {
	if *full {
		return nic.RingFull, false
	}
	size := pkt.Size()
	if size > maxFrame {
		return nic.Oversize, false
	}
	if size < header.EthernetMinimumSize {
		return nic.Runt, false
	}
	b := e.pool.Get()
	if b == nil {
		return nic.NoBuffer, false
	}
	// b is ours until Transmit succeeds; every failure path puts it back.
	if b.Headroom() < e.txHeadroom {
		if err := b.Reserve(e.txHeadroom); err != nil {
			_ = b.Free()
			return nic.NoBuffer, false
		}
	}
	body, err := b.Append(size)
	if err != nil {
		_ = b.Free()
		return nic.Oversize, false
	}
	views, off := pkt.AsViewList()
	n := 0
	for v := views.Front(); v != nil && n < size; v = v.Next() {
		s := v.AsSlice()
		if off >= len(s) {
			off -= len(s)
			continue
		}
		n += copy(body[n:], s[off:])
		off = 0
	}
	if n != size {
		_ = b.Free()
		return nic.Malformed, false
	}
	err = e.dev.Transmit(b)
	if err == nic.ErrRingFull {
		// Frames Post left unkicked may be what fills the ring: the
		// device must hear of them before it can complete any.
		e.kickPosted()
		e.reclaim()
		err = e.dev.Transmit(b)
		*full = err == nic.ErrRingFull
	}
	if err != nil {
		// A refusal: b is still ours and the driver counted nothing.
		_ = b.Free()
		return nic.CauseOf(err), false
	}
	e.inflight++
	e.unkicked.Add(1)
	e.tx.Count(size)
	return 0, true
}

// Stats is a snapshot of the endpoint's own counters: frames delivered to
// gVisor (Rx) and handed to the driver (Tx), and drops by cause.
type Stats struct {
	Rx nic.RingStats `json:"rx"`
	Tx nic.RingStats `json:"tx"`
	// TxHeld counts packets Post held back because the transmit ring
	// was full (posted later by Flush, or dropped as ring_full when
	// MaxHeld were already waiting).
	TxHeld uint64 `json:"tx_held"`
	// TxCut counts the frames the endpoint cut from TCP segments longer
	// than one frame that the device could not cut itself (segment.go).
	TxCut uint64 `json:"tx_cut"`
	// TxFragDropped counts fragmented UDP datagrams whose held first
	// fragment was dropped (also counted as malformed): more than
	// MaxFragmented sent at once, or fragments out of order.
	TxFragDropped uint64 `json:"tx_frag_dropped"`
	// TxAcksMerged counts plain ACKs Post kept for the step's Flush that
	// a later segment of the same connection replaced (ack.go): frames
	// and doorbells not spent.
	TxAcksMerged uint64 `json:"tx_acks_merged"`
	// RxZeroWindowAcks counts plain ACKs that arrived past a zero receive
	// window and were delivered at its edge, so that gVisor's TCP takes
	// them (zerowindow.go).
	RxZeroWindowAcks uint64 `json:"rx_zero_window_acks"`
	// ZeroWindowsEvicted counts connections with a zero window that lost
	// that allowance because MaxZeroWindows others had one.
	ZeroWindowsEvicted uint64 `json:"zero_windows_evicted"`
	// ZeroWindows is how many connections' latest segment out announced
	// a zero receive window, now (at most MaxZeroWindows). A connection
	// that closed at a zero window stays here until evicted.
	ZeroWindows uint64 `json:"zero_windows"`
}

// Stats fills s.
func (e *Endpoint) Stats(s *Stats) {
	e.rx.Snapshot(&s.Rx)
	e.tx.Snapshot(&s.Tx)
	s.TxHeld = e.heldTotal.Load()
	s.TxCut = e.cutTotal.Load()
	s.TxFragDropped = e.fragDropped.Load()
	s.TxAcksMerged = e.acksMerged.Load()
	s.RxZeroWindowAcks = e.zeroAcks.Load()
	s.ZeroWindowsEvicted = e.zeroEvicted.Load()
	s.ZeroWindows = uint64(e.nzero.Load())
}
