package dhcp

import (
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"time"

	"github.com/gopacket/gopacket/layers"
)

// State is the client's state (RFC 2131 §4.4, figure 5). INIT-REBOOT and
// REBOOTING are not used: the firmware keeps no lease across boots.
type State int

const (
	Init State = iota
	Selecting
	Requesting
	Bound
	Renewing
	Rebinding
)

func (s State) String() string {
	switch s {
	case Init:
		return "init"
	case Selecting:
		return "selecting"
	case Requesting:
		return "requesting"
	case Bound:
		return "bound"
	case Renewing:
		return "renewing"
	case Rebinding:
		return "rebinding"
	}
	return "unknown"
}

// Event tells the caller of Next and Handle what to apply.
type Event int

const (
	// None: nothing to apply.
	None Event = iota
	// Acquired: a new lease (or one whose address, prefix, router or DNS
	// servers changed): apply Lease().
	Acquired
	// Renewed: the lease was extended with the same parameters.
	Renewed
	// Lost: the lease expired or the server refused it (NAK): remove the
	// address.
	Lost
	// FallbackDue: no lease came within Config.FallbackAfter of the
	// start: apply the static fallback. The client keeps trying.
	FallbackDue
)

func (e Event) String() string {
	return [...]string{"none", "acquired", "renewed", "lost", "fallback"}[e]
}

// Timing constants of RFC 2131.
const (
	// firstRetransmit and maxRetransmit bound the exponential backoff of
	// DISCOVER and REQUEST in INIT/SELECTING/REQUESTING (§4.1: 4 s,
	// doubled up to 64 s, randomised by ±1 s).
	firstRetransmit = 4 * time.Second
	maxRetransmit   = 64 * time.Second
	// minRenewRetransmit is the shortest wait between two REQUESTs in
	// RENEWING and REBINDING (§4.4.5: half the time left, down to 60 s).
	minRenewRetransmit = 60 * time.Second
	// requestTries is how many REQUESTs SELECTING sends for one offer
	// before it starts over with a DISCOVER (§3.1 item 5 leaves it open;
	// 4 tries span 4+8+16+32 s).
	requestTries = 4
	// nakDelay is the pause after a NAK before the next DISCOVER, so a
	// server that NAKs everything cannot make the client spin.
	nakDelay = time.Second
)

// MaxDNS is how many DNS servers a lease keeps.
const MaxDNS = 3

// Config configures a Client.
type Config struct {
	// MAC is the client's hardware address (chaddr, client identifier).
	MAC net.HardwareAddr
	// Hostname, if set, is sent as option 12.
	Hostname string
	// FallbackAfter is how long after the first DISCOVER without a lease
	// Next reports FallbackDue once; 0 never does.
	FallbackAfter time.Duration
	// Rand returns random numbers for transaction ids and backoff jitter
	// (default math/rand/v2). Tests make it deterministic.
	Rand func() uint32
}

// Lease is an address the client holds.
type Lease struct {
	// Addr is the leased address with the subnet's prefix length.
	Addr netip.Prefix
	// Router is the default gateway (invalid: none offered on-link).
	Router netip.Addr
	// DNS are the name servers offered, at most MaxDNS.
	DNS []netip.Addr
	// Server is the DHCP server's identifier (option 54).
	Server netip.Addr
	// Start is when the REQUEST that obtained the lease was first sent;
	// the lease times count from it (RFC 2131 §4.4.1).
	Start time.Time
	// Duration is the lease time; 0 means infinite.
	Duration time.Duration
	// T1 and T2 are the renewal and rebinding times after Start (0 for an
	// infinite lease).
	T1, T2 time.Duration
}

// Expiry returns when the lease ends (zero for an infinite lease).
func (l Lease) Expiry() time.Time {
	if l.Duration == 0 {
		return time.Time{}
	}
	return l.Start.Add(l.Duration)
}

func (l Lease) sameParams(o Lease) bool {
	if l.Addr != o.Addr || l.Router != o.Router || len(l.DNS) != len(o.DNS) {
		return false
	}
	for i := range l.DNS {
		if l.DNS[i] != o.DNS[i] {
			return false
		}
	}
	return true
}

// Counters count messages and drops.
type Counters struct {
	Discovers uint64 `json:"discovers"`
	Requests  uint64 `json:"requests"`
	Offers    uint64 `json:"offers"`
	Acks      uint64 `json:"acks"`
	Naks      uint64 `json:"naks"`
	Renewals  uint64 `json:"renewals"`  // leases extended in RENEWING or REBINDING
	Expired   uint64 `json:"expired"`   // leases that ran out
	Fallbacks uint64 `json:"fallbacks"` // FallbackDue events
	// Dropped counts received messages ignored: malformed, not for this
	// client, wrong transaction, wrong server, unusable address, or not
	// expected in the current state.
	Dropped uint64 `json:"dropped"`
}

// Packet is a message to send.
type Packet struct {
	// Data is the DHCP message (the UDP payload).
	Data []byte
	// Src is the source address: the zero address before the client has
	// one.
	Src netip.Addr
	// Dst is the server (unicast, RENEWING) or 255.255.255.255.
	Dst netip.Addr
}

// Broadcast reports whether p goes to the limited broadcast address.
func (p Packet) Broadcast() bool { return p.Dst == broadcast }

// Client is the DHCPv4 client state machine of RFC 2131 with the clock
// outside: the caller passes the time to Next and Handle, sends the
// packets Next returns and applies the events. It is not safe for
// concurrent use.
type Client struct {
	cfg   Config
	state State

	started  time.Time // first Next call
	fellBack bool      // FallbackDue reported

	xid      uint32
	exchange time.Time // start of this exchange (secs field)
	next     time.Time // next (re)transmission or timer
	tries    int       // transmissions in this state
	naks     int       // NAKs in a row
	reqStart time.Time // first REQUEST of this exchange: lease start

	offer reply // the offer being requested (Requesting)
	lease Lease // valid in Bound, Renewing, Rebinding
	have  bool  // a lease is held

	counters Counters
}

// NewClient returns a client in state INIT; the first Next sends a
// DISCOVER.
func NewClient(cfg Config) (*Client, error) {
	if len(cfg.MAC) != 6 || cfg.MAC[0]&1 != 0 {
		return nil, errors.New("dhcp: the client needs a unicast 6-byte MAC")
	}
	if len(cfg.Hostname) > 255 {
		return nil, errors.New("dhcp: hostname longer than 255 bytes")
	}
	if cfg.FallbackAfter < 0 {
		return nil, errors.New("dhcp: negative FallbackAfter")
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Uint32
	}
	cfg.MAC = append(net.HardwareAddr(nil), cfg.MAC...)
	return &Client{cfg: cfg}, nil
}

// State returns the current state.
func (c *Client) State() State { return c.state }

// Lease returns the lease held; ok is false when there is none.
func (c *Client) Lease() (l Lease, ok bool) {
	l = c.lease
	l.DNS = append([]netip.Addr(nil), l.DNS...)
	return l, c.have
}

// Counters returns the message counters.
func (c *Client) Counters() Counters { return c.counters }

// backoff returns the wait before retransmission number tries+1 in the
// INIT-to-BOUND exchange: 4 s doubling to 64 s, ±1 s.
func (c *Client) backoff() time.Duration {
	d := firstRetransmit << min(c.tries, 4)
	d = min(d, maxRetransmit)
	jitter := time.Duration(c.cfg.Rand()%2001)*time.Millisecond - time.Second
	return d + jitter
}

func (c *Client) secs(now time.Time) uint16 {
	s := now.Sub(c.exchange) / time.Second
	return uint16(min(max(s, 0), 0xffff))
}

func (c *Client) newExchange(now time.Time) {
	c.xid = c.cfg.Rand()
	c.exchange = now
	c.tries = 0
}

// defaultTimes are T1 and T2 for a lease of d (RFC 2131 §4.4.5).
func defaultTimes(d time.Duration) (t1, t2 time.Duration) { return d / 2, d - d/8 }

// never is the timer of an infinite lease: no renewal.
var never = time.Unix(1<<62, 0)

var (
	zero      = netip.AddrFrom4([4]byte{})
	broadcast = netip.AddrFrom4([4]byte{255, 255, 255, 255})
)

// Next advances the timers to now. It returns a packet to send (Data nil
// when none), an event to apply, and when it wants to be called again
// (also after every Handle).
func (c *Client) Next(now time.Time) (Packet, Event, time.Time) {
	if c.started.IsZero() {
		c.started = now
		c.newExchange(now)
		c.next = now
	}
	if !c.fellBack && !c.have && c.cfg.FallbackAfter > 0 && !now.Before(c.started.Add(c.cfg.FallbackAfter)) {
		c.fellBack = true
		c.counters.Fallbacks++
		return Packet{}, FallbackDue, now
	}
	if c.have && c.lease.Duration > 0 && !now.Before(c.lease.Expiry()) {
		// §4.4.5: at expiry the client stops using the address.
		c.have = false
		c.lease = Lease{}
		c.counters.Expired++
		c.toInit(now)
		return Packet{}, Lost, now
	}
	if now.Before(c.next) {
		return Packet{}, None, c.fallbackTimer(c.next)
	}
	var p Packet
	switch c.state {
	case Init, Selecting:
		if c.state == Init {
			c.newExchange(now)
			c.state = Selecting
		}
		p = c.packet(outgoing{typ: layers.DHCPMsgTypeDiscover, xid: c.xid, secs: c.secs(now), broadcast: true}, zero, broadcast)
		c.counters.Discovers++
		c.next = now.Add(c.backoff())
		c.tries++
	case Requesting:
		if c.tries >= requestTries {
			c.toInit(now)
			return c.Next(now)
		}
		if c.tries == 0 {
			c.reqStart = now
		}
		p = c.packet(outgoing{typ: layers.DHCPMsgTypeRequest, xid: c.xid, secs: c.secs(now), broadcast: true,
			requested: c.offer.yiaddr, server: c.offer.server}, zero, broadcast)
		c.counters.Requests++
		c.next = now.Add(c.backoff())
		c.tries++
	case Bound:
		// T1: renew with the server that gave the lease (§4.4.5).
		c.state = Renewing
		c.newExchange(now)
		fallthrough
	case Renewing, Rebinding:
		t2 := c.lease.Start.Add(c.lease.T2)
		if c.state == Renewing && !now.Before(t2) {
			// T2: ask any server.
			c.state = Rebinding
			c.newExchange(now) // tries = 0: reqStart is set below
		}
		if c.tries == 0 {
			c.reqStart = now
		}
		limit := t2
		dst := c.lease.Server
		if c.state == Rebinding {
			limit, dst = c.lease.Expiry(), broadcast
		}
		// Not SELECTING: no server identifier, no requested address;
		// ciaddr carries the address (§4.3.2).
		p = c.packet(outgoing{typ: layers.DHCPMsgTypeRequest, xid: c.xid, secs: c.secs(now),
			ciaddr: c.lease.Addr.Addr()}, c.lease.Addr.Addr(), dst)
		c.counters.Requests++
		c.tries++
		wait := max(limit.Sub(now)/2, minRenewRetransmit)
		c.next = now.Add(wait)
		if c.next.After(limit) {
			c.next = limit
		}
	}
	return p, None, c.fallbackTimer(c.next)
}

// fallbackTimer returns the earlier of t and the pending fallback or
// expiry deadline.
func (c *Client) fallbackTimer(t time.Time) time.Time {
	if !c.fellBack && !c.have && c.cfg.FallbackAfter > 0 {
		if f := c.started.Add(c.cfg.FallbackAfter); f.Before(t) {
			t = f
		}
	}
	if c.have && c.lease.Duration > 0 {
		if e := c.lease.Expiry(); e.Before(t) {
			t = e
		}
	}
	return t
}

func (c *Client) packet(o outgoing, src, dst netip.Addr) Packet {
	b, err := c.encode(o)
	if err != nil {
		// The message is built from checked values only; a library
		// error here is a bug, reported as nothing sent.
		return Packet{}
	}
	return Packet{Data: b, Src: src, Dst: dst}
}

// toInit starts over with a DISCOVER at the time given.
func (c *Client) toInit(at time.Time) {
	c.state = Init
	c.offer = reply{}
	c.tries = 0
	c.next = at
}

// Renew makes the next Next start renewing a held lease now instead of
// at T1 (as `dhclient` does when asked); without a lease it only makes
// the next DISCOVER go out now.
func (c *Client) Renew(now time.Time) {
	if c.state == Bound || c.state == Init || c.state == Selecting {
		c.next = now
	}
}

// Handle processes a message received on the client port at time now
// and returns the event to apply. Messages that do not fit the state are
// counted under Dropped and change nothing.
func (c *Client) Handle(now time.Time, b []byte) Event {
	r, err := parse(b, c.cfg.MAC)
	if err != nil || r.xid != c.xid {
		c.counters.Dropped++
		return None
	}
	switch r.typ {
	case layers.DHCPMsgTypeOffer:
		if c.state != Selecting || !r.server.IsValid() {
			c.counters.Dropped++
			return None
		}
		// The first usable offer wins (§4.4.1 allows any choice).
		c.counters.Offers++
		c.offer = r
		c.state = Requesting
		c.tries = 0
		c.next = now
		return None
	case layers.DHCPMsgTypeAck:
		return c.ack(now, r)
	case layers.DHCPMsgTypeNak:
		return c.nak(now, r)
	}
	c.counters.Dropped++
	return None
}

// answers reports whether the ACK or NAK r can answer the client's
// REQUEST: in REQUESTING only from the server offered (or one that does
// not name itself), in RENEWING and REBINDING from any server.
func (c *Client) answers(r reply) bool {
	switch c.state {
	case Requesting:
		return !r.server.IsValid() || r.server == c.offer.server
	case Renewing, Rebinding:
		return true
	}
	return false
}

func (c *Client) ack(now time.Time, r reply) Event {
	if !c.answers(r) {
		c.counters.Dropped++
		return None
	}
	// An ACK that does not name its server is from the one asked. One for
	// another address in RENEWING or REBINDING is a server moving us
	// mid-lease: a new lease, taken as it stands.
	switch {
	case r.server.IsValid():
	case c.state == Requesting:
		r.server = c.offer.server
	case r.yiaddr == c.lease.Addr.Addr():
		r.server = c.lease.Server
	}
	if r.lease == 0 {
		// §4.3.1: an ACK to a REQUEST carries the lease time.
		c.counters.Dropped++
		return None
	}
	l := Lease{Addr: r.mask, Router: r.router, DNS: r.dns, Server: r.server, Start: c.reqStart}
	if l.Start.IsZero() || l.Start.After(now) {
		l.Start = now
	}
	if r.lease > 0 {
		l.Duration = r.lease
		// §4.4.5 defaults: T1 = 0.5, T2 = 0.875 of the lease; the
		// server's values only if they are in order. T2 is the lease
		// less an eighth: seven eighths of a lease near 2^32 s would
		// overflow time.Duration on the way.
		l.T1, l.T2 = defaultTimes(l.Duration)
		if r.t2 > 0 && r.t2 < l.Duration {
			l.T2 = r.t2
		}
		if r.t1 > 0 && r.t1 < l.T2 {
			l.T1 = r.t1
		}
		if l.T1 >= l.T2 {
			l.T1, l.T2 = defaultTimes(l.Duration)
		}
	}
	c.counters.Acks++
	was, had := c.lease, c.have
	c.lease, c.have = l, true
	c.naks = 0
	c.tries = 0
	c.offer = reply{}
	c.state = Bound
	if l.Duration > 0 {
		c.next = l.Start.Add(l.T1)
	} else {
		c.next = never
	}
	if had && was.sameParams(l) {
		c.counters.Renewals++
		return Renewed
	}
	if had {
		c.counters.Renewals++
	}
	return Acquired
}

func (c *Client) nak(now time.Time, r reply) Event {
	if !c.answers(r) {
		c.counters.Dropped++
		return None
	}
	c.counters.Naks++
	c.naks++
	delay := min(nakDelay<<min(c.naks-1, 6), maxRetransmit)
	had := c.have
	c.have = false
	c.lease = Lease{}
	c.toInit(now.Add(delay))
	if had {
		return Lost
	}
	return None
}
