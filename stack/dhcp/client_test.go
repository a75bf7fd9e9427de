package dhcp

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

var (
	clientMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	serverIP  = netip.MustParseAddr("10.0.0.2")
	t0        = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
)

// fakeServer is an in-process DHCP server: it answers the client's
// messages as RFC 2131 §4.3 says, with knobs for the tests.
type fakeServer struct {
	t      *testing.T
	addr   netip.Addr // address it hands out
	mask   []byte     // option 1; nil leaves it out
	lease  uint32     // seconds
	t1, t2 uint32     // 0 leaves the option out
	nak    bool       // NAK every REQUEST
	silent bool       // answer nothing
	server netip.Addr // its identifier
	seen   []layers.DHCPMsgType
}

func newServer(t *testing.T) *fakeServer {
	return &fakeServer{t: t, addr: netip.MustParseAddr("10.0.0.15"), mask: []byte{255, 255, 255, 0}, lease: 120, server: serverIP}
}

// decode parses a client message with the library.
func decode(t *testing.T, b []byte) (*layers.DHCPv4, map[layers.DHCPOpt][]byte) {
	t.Helper()
	var d layers.DHCPv4
	if err := d.DecodeFromBytes(b, gopacket.NilDecodeFeedback); err != nil {
		t.Fatalf("client sent a malformed message: %v", err)
	}
	opts := map[layers.DHCPOpt][]byte{}
	for _, o := range d.Options {
		opts[o.Type] = o.Data
	}
	return &d, opts
}

func (s *fakeServer) answer(req []byte) []byte {
	d, opts := decode(s.t, req)
	typ := layers.DHCPMsgType(opts[layers.DHCPOptMessageType][0])
	s.seen = append(s.seen, typ)
	if s.silent {
		return nil
	}
	var rt layers.DHCPMsgType
	switch typ {
	case layers.DHCPMsgTypeDiscover:
		rt = layers.DHCPMsgTypeOffer
	case layers.DHCPMsgTypeRequest:
		rt = layers.DHCPMsgTypeAck
		if s.nak {
			rt = layers.DHCPMsgTypeNak
		}
	default:
		return nil
	}
	return s.reply(d.Xid, rt, d.ClientHWAddr)
}

func (s *fakeServer) reply(xid uint32, rt layers.DHCPMsgType, mac net.HardwareAddr) []byte {
	r := &layers.DHCPv4{Operation: layers.DHCPOpReply, HardwareType: layers.LinkTypeEthernet, Xid: xid, ClientHWAddr: mac, Flags: flagBroadcast}
	r.Options = append(r.Options, layers.NewDHCPOption(layers.DHCPOptMessageType, []byte{byte(rt)}),
		layers.NewDHCPOption(layers.DHCPOptServerID, s.server.AsSlice()))
	if rt != layers.DHCPMsgTypeNak {
		r.YourClientIP = s.addr.AsSlice()
		if s.mask != nil {
			r.Options = append(r.Options, layers.NewDHCPOption(layers.DHCPOptSubnetMask, s.mask))
		}
		r.Options = append(r.Options,
			layers.NewDHCPOption(layers.DHCPOptRouter, []byte{10, 0, 0, 2}),
			layers.NewDHCPOption(layers.DHCPOptDNS, []byte{10, 0, 0, 2, 0, 0, 0, 0, 10, 0, 0, 3}),
			layers.NewDHCPOption(layers.DHCPOptLeaseTime, binary.BigEndian.AppendUint32(nil, s.lease)))
		if s.t1 != 0 {
			r.Options = append(r.Options, layers.NewDHCPOption(layers.DHCPOptT1, binary.BigEndian.AppendUint32(nil, s.t1)))
		}
		if s.t2 != 0 {
			r.Options = append(r.Options, layers.NewDHCPOption(layers.DHCPOptT2, binary.BigEndian.AppendUint32(nil, s.t2)))
		}
	} else {
		r.Options = append(r.Options, layers.NewDHCPOption(layers.DHCPOptMessage, []byte("wrong network")))
	}
	b := gopacket.NewSerializeBuffer()
	if err := r.SerializeTo(b, gopacket.SerializeOptions{FixLengths: true}); err != nil {
		s.t.Fatal(err)
	}
	return b.Bytes()
}

// noJitter makes the backoff exact: Rand()%2001 == 1000 is +0 ms.
func noJitter() uint32 { return 1000 }

func newClient(t *testing.T, fallback time.Duration) *Client {
	t.Helper()
	c, err := NewClient(Config{MAC: clientMAC, Hostname: "tamanet", FallbackAfter: fallback, Rand: noJitter})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// step calls Next at now, hands a packet to the server and its answer
// back to the client, and returns the packet sent and the events.
func step(t *testing.T, c *Client, s *fakeServer, now time.Time) (Packet, Event, Event) {
	p, ev, hev, _ := stepw(t, c, s, now)
	return p, ev, hev
}

// stepw is step that also returns when the client wants the next call.
func stepw(t *testing.T, c *Client, s *fakeServer, now time.Time) (Packet, Event, Event, time.Time) {
	t.Helper()
	p, ev, wake := c.Next(now)
	if p.Data == nil {
		return p, ev, None, wake
	}
	ans := s.answer(p.Data)
	if ans == nil {
		return p, ev, None, wake
	}
	return p, ev, c.Handle(now, ans), c.next
}

// bind runs the client from INIT to BOUND at t0.
func bind(t *testing.T, c *Client, s *fakeServer) Lease {
	t.Helper()
	p, _, hev := step(t, c, s, t0)
	if !p.Broadcast() || p.Src != zero || hev != None || c.State() != Requesting {
		t.Fatalf("DISCOVER: src %v dst %v event %v state %v", p.Src, p.Dst, hev, c.State())
	}
	d, opts := decode(t, p.Data)
	if d.Flags != flagBroadcast || string(d.ClientHWAddr) != string(clientMAC) || string(opts[layers.DHCPOptHostname]) != "tamanet" ||
		layers.DHCPMsgType(opts[layers.DHCPOptMessageType][0]) != layers.DHCPMsgTypeDiscover {
		t.Fatalf("DISCOVER fields: flags %#x chaddr %v options %v", d.Flags, d.ClientHWAddr, d.Options)
	}
	p, _, hev = step(t, c, s, t0)
	d, opts = decode(t, p.Data)
	if !p.Broadcast() || string(opts[layers.DHCPOptRequestIP]) != string(s.addr.AsSlice()) ||
		string(opts[layers.DHCPOptServerID]) != string(serverIP.AsSlice()) || !net.IP(d.ClientIP).Equal(net.IPv4zero) && d.ClientIP != nil {
		t.Fatalf("REQUEST in SELECTING: dst %v options %v ciaddr %v", p.Dst, d.Options, d.ClientIP)
	}
	if hev != Acquired || c.State() != Bound {
		t.Fatalf("after ACK: event %v state %v", hev, c.State())
	}
	l, ok := c.Lease()
	if !ok {
		t.Fatal("no lease after ACK")
	}
	return l
}

func TestLeaseAndRenewal(t *testing.T) {
	s := newServer(t)
	c := newClient(t, 0)
	l := bind(t, c, s)
	want := Lease{Addr: netip.MustParsePrefix("10.0.0.15/24"), Router: serverIP, Server: serverIP, Start: t0,
		Duration: 120 * time.Second, T1: 60 * time.Second, T2: 105 * time.Second}
	if l.Addr != want.Addr || l.Router != want.Router || l.Server != want.Server || !l.Start.Equal(t0) ||
		l.Duration != want.Duration || l.T1 != want.T1 || l.T2 != want.T2 {
		t.Fatalf("lease %+v, want %+v", l, want)
	}
	// 0.0.0.0 in the DNS list is skipped.
	if len(l.DNS) != 2 || l.DNS[0] != serverIP || l.DNS[1] != netip.MustParseAddr("10.0.0.3") {
		t.Errorf("DNS %v", l.DNS)
	}
	// Nothing to do until T1.
	if p, ev, wake := c.Next(t0.Add(59 * time.Second)); p.Data != nil || ev != None || !wake.Equal(t0.Add(60*time.Second)) {
		t.Fatalf("before T1: sent=%v ev=%v wake=%v", p.Data != nil, ev, wake)
	}
	// T1: a unicast REQUEST to the server from the leased address,
	// with ciaddr and without server id or requested address.
	t1 := t0.Add(60 * time.Second)
	p, _, hev := step(t, c, s, t1)
	d, opts := decode(t, p.Data)
	if p.Dst != serverIP || p.Src != l.Addr.Addr() || !net.IP(d.ClientIP).Equal(l.Addr.Addr().AsSlice()) ||
		opts[layers.DHCPOptRequestIP] != nil || opts[layers.DHCPOptServerID] != nil {
		t.Fatalf("renewal REQUEST: %v -> %v ciaddr %v options %v", p.Src, p.Dst, d.ClientIP, d.Options)
	}
	if hev != Renewed || c.State() != Bound {
		t.Fatalf("renewal: event %v state %v", hev, c.State())
	}
	l2, _ := c.Lease()
	if !l2.Start.Equal(t1) || !l2.Expiry().Equal(t1.Add(120*time.Second)) {
		t.Errorf("renewed lease starts %v ends %v", l2.Start, l2.Expiry())
	}
	if cs := c.Counters(); cs.Discovers != 1 || cs.Requests != 2 || cs.Offers != 1 || cs.Acks != 2 || cs.Renewals != 1 || cs.Dropped != 0 {
		t.Errorf("counters %+v", cs)
	}
	// The server's T1 and T2 are used when in order.
	s2 := newServer(t)
	s2.lease, s2.t1, s2.t2 = 3600, 600, 1200
	c2 := newClient(t, 0)
	if l := bind(t, c2, s2); l.T1 != 600*time.Second || l.T2 != 1200*time.Second {
		t.Errorf("server T1/T2: %v %v", l.T1, l.T2)
	}
	// Out of order ones are replaced by the defaults.
	s3 := newServer(t)
	s3.lease, s3.t1, s3.t2 = 3600, 3000, 1000
	c3 := newClient(t, 0)
	if l := bind(t, c3, s3); l.T1 != 1800*time.Second || l.T2 != 3150*time.Second {
		t.Errorf("bad server T1/T2 not replaced: %v %v", l.T1, l.T2)
	}
}

// TestRebindAndExpiry: the server stops answering after the lease; the
// client renews at T1 with retransmissions of half the time left (at
// least 60 s), rebinds by broadcast at T2 and gives the address up at
// expiry, then starts over.
func TestRebindAndExpiry(t *testing.T) {
	s := newServer(t)
	s.lease = 3600
	c := newClient(t, 0)
	l := bind(t, c, s)
	s.silent = true
	type tx struct {
		at    time.Duration
		state State
		bcast bool
	}
	var got []tx
	now := t0
	for i := 0; i < 100; i++ {
		p, ev, wake := c.Next(now)
		if ev == Lost {
			if now.Sub(t0) != time.Hour {
				t.Fatalf("lease lost at %v, want 1h", now.Sub(t0))
			}
			break
		}
		if p.Data != nil {
			s.answer(p.Data)
			got = append(got, tx{now.Sub(t0), c.State(), p.Broadcast()})
			if p.Src != l.Addr.Addr() {
				t.Errorf("at %v sent from %v", now.Sub(t0), p.Src)
			}
		}
		now = wake
	}
	want := []tx{
		{1800 * time.Second, Renewing, false}, // T1; T2 at 3150 s
		{2475 * time.Second, Renewing, false}, // +(3150-1800)/2
		{2812500 * time.Millisecond, Renewing, false},
		{2981250 * time.Millisecond, Renewing, false},
		{3065625 * time.Millisecond, Renewing, false},
		{3125625 * time.Millisecond, Renewing, false}, // the minimum 60 s
		{3150 * time.Second, Rebinding, true},         // T2
		{3375 * time.Second, Rebinding, true},
		{3487500 * time.Millisecond, Rebinding, true},
		{3547500 * time.Millisecond, Rebinding, true},
	}
	if len(got) != len(want) {
		t.Fatalf("transmissions:\n%v\nwant\n%v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("transmission %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	if _, ok := c.Lease(); ok || c.State() != Init || c.Counters().Expired != 1 {
		t.Fatalf("after expiry: state %v counters %+v", c.State(), c.Counters())
	}
	// It starts over: a DISCOVER right away.
	s.silent = false
	p, _, _ := step(t, c, s, now)
	if _, opts := decode(t, p.Data); layers.DHCPMsgType(opts[layers.DHCPOptMessageType][0]) != layers.DHCPMsgTypeDiscover {
		t.Fatalf("after expiry sent %v", opts)
	}
}

// TestRebindingAck: a server answering the broadcast in REBINDING
// extends the lease.
func TestRebindingAck(t *testing.T) {
	s := newServer(t)
	s.lease = 3600
	c := newClient(t, 0)
	bind(t, c, s)
	s.silent = true
	now := t0.Add(1800 * time.Second)
	for c.State() != Rebinding {
		_, _, _, wake := stepw(t, c, s, now)
		now = wake
	}
	s.silent = false
	s.server = netip.MustParseAddr("10.0.0.3") // another server answers
	p, _, hev := step(t, c, s, now)
	if !p.Broadcast() || hev != Renewed || c.State() != Bound {
		t.Fatalf("rebinding: broadcast=%v event %v state %v", p.Broadcast(), hev, c.State())
	}
	if l, _ := c.Lease(); l.Server != s.server {
		t.Errorf("lease server %v, want the one that answered", l.Server)
	}
}

func TestNAK(t *testing.T) {
	// NAK in REQUESTING: no lease, back to INIT, DISCOVER after a pause.
	s := newServer(t)
	s.nak = true
	c := newClient(t, 0)
	step(t, c, s, t0) // DISCOVER, OFFER
	_, _, hev := step(t, c, s, t0)
	if hev != None || c.State() != Init || c.Counters().Naks != 1 {
		t.Fatalf("NAK in REQUESTING: event %v state %v", hev, c.State())
	}
	if p, _, wake := c.Next(t0); p.Data != nil || !wake.Equal(t0.Add(nakDelay)) {
		t.Fatalf("after NAK: sent=%v next at %v", p.Data != nil, wake.Sub(t0))
	}
	// Repeated NAKs back off.
	now := t0.Add(nakDelay)
	step(t, c, s, now)
	step(t, c, s, now)
	if _, _, wake := c.Next(now); !wake.Equal(now.Add(2 * nakDelay)) {
		t.Fatalf("second NAK: next after %v", wake.Sub(now))
	}

	// NAK in RENEWING: the lease is lost at once.
	s = newServer(t)
	c = newClient(t, 0)
	bind(t, c, s)
	s.nak = true
	_, _, hev = step(t, c, s, t0.Add(60*time.Second))
	if hev != Lost || c.State() != Init {
		t.Fatalf("NAK in RENEWING: event %v state %v", hev, c.State())
	}
	if _, ok := c.Lease(); ok {
		t.Fatal("lease kept after NAK")
	}
	// A NAK from another server while requesting is ignored.
	s = newServer(t)
	c = newClient(t, 0)
	step(t, c, s, t0)
	other := newServer(t)
	other.server = netip.MustParseAddr("10.0.0.9")
	if ev := c.Handle(t0, other.reply(c.xid, layers.DHCPMsgTypeNak, clientMAC)); ev != None || c.State() != Requesting || c.Counters().Dropped != 1 {
		t.Fatalf("foreign NAK: event %v state %v counters %+v", ev, c.State(), c.Counters())
	}
}

// TestBackoff: with no server, DISCOVERs go out at 0, 4, 12, 28, 60 s and
// then every 64 s, each ±1 s.
func TestBackoff(t *testing.T) {
	c := newClient(t, 0)
	var at []time.Duration
	now := t0
	for len(at) < 8 {
		p, _, wake := c.Next(now)
		if p.Data != nil {
			at = append(at, now.Sub(t0))
		}
		now = wake
	}
	want := []time.Duration{0, 4, 12, 28, 60, 124, 188, 252}
	for i := range want {
		if at[i] != want[i]*time.Second {
			t.Fatalf("DISCOVERs at %v, want %v s", at, want)
		}
	}
	// Jitter stays within ±1 s.
	var n uint32
	c, _ = NewClient(Config{MAC: clientMAC, Rand: func() uint32 { n += 7919; return n }})
	now = t0
	var last time.Time
	for i := 0; i < 20; i++ {
		p, _, wake := c.Next(now)
		if p.Data != nil && !last.IsZero() {
			gap := now.Sub(last)
			base := firstRetransmit << min(i-1, 4)
			base = min(base, maxRetransmit)
			if gap < base-time.Second || gap > base+time.Second {
				t.Errorf("gap %v outside %v±1s", gap, base)
			}
		}
		if p.Data != nil {
			last = now
		}
		now = wake
	}
}

// TestRequestGivesUp: an offer whose REQUESTs get no answer is dropped
// after requestTries and the client discovers again.
func TestRequestGivesUp(t *testing.T) {
	s := newServer(t)
	c := newClient(t, 0)
	step(t, c, s, t0)
	s.silent = true
	now := t0
	var types []layers.DHCPMsgType
	for len(types) < requestTries+1 {
		p, _, wake := c.Next(now)
		if p.Data != nil {
			_, opts := decode(t, p.Data)
			types = append(types, layers.DHCPMsgType(opts[layers.DHCPOptMessageType][0]))
		}
		now = wake
	}
	for i := 0; i < requestTries; i++ {
		if types[i] != layers.DHCPMsgTypeRequest {
			t.Fatalf("sent %v", types)
		}
	}
	if types[requestTries] != layers.DHCPMsgTypeDiscover {
		t.Fatalf("after %d REQUESTs sent %v", requestTries, types[requestTries])
	}
}

func TestFallback(t *testing.T) {
	s := newServer(t)
	s.silent = true
	c := newClient(t, 10*time.Second)
	now := t0
	var fell []time.Duration
	for now.Before(t0.Add(70 * time.Second)) {
		_, ev, _, wake := stepw(t, c, s, now)
		if ev == FallbackDue {
			fell = append(fell, now.Sub(t0))
		}
		now = wake
	}
	if len(fell) != 1 || fell[0] != 10*time.Second {
		t.Fatalf("FallbackDue at %v, want once at 10s", fell)
	}
	// DISCOVERs went on after the fallback.
	if d := c.Counters().Discovers; d < 4 {
		t.Fatalf("%d DISCOVERs in 70 s", d)
	}
	// A server that appears later gives a lease.
	s.silent = false
	for c.State() != Bound {
		_, _, _, wake := stepw(t, c, s, now)
		now = wake
	}
	if _, ok := c.Lease(); !ok {
		t.Fatal("no lease after the server came")
	}
	// A lease in time means no fallback.
	s = newServer(t)
	c = newClient(t, 10*time.Second)
	bind(t, c, s)
	for now := t0; now.Before(t0.Add(30 * time.Second)); now = now.Add(time.Second) {
		if _, ev, _ := step(t, c, s, now); ev == FallbackDue {
			t.Fatal("fallback with a lease")
		}
	}
}

// TestDrops: replies that do not fit are counted and change nothing.
func TestDrops(t *testing.T) {
	s := newServer(t)
	c := newClient(t, 0)
	c.Next(t0) // DISCOVER: SELECTING
	xid := c.xid
	other := net.HardwareAddr{2, 0, 0, 0, 0, 9}
	bad := map[string][]byte{
		"short":        {1, 2, 3},
		"wrong xid":    s.reply(xid+1, layers.DHCPMsgTypeOffer, clientMAC),
		"wrong mac":    s.reply(xid, layers.DHCPMsgTypeOffer, other),
		"ack selected": s.reply(xid, layers.DHCPMsgTypeAck, clientMAC),
	}
	s.mask = []byte{255, 0, 255, 0}
	bad["non-contiguous mask"] = s.reply(xid, layers.DHCPMsgTypeOffer, clientMAC)
	s.mask = []byte{255, 255, 255, 0}
	s.addr = netip.MustParseAddr("10.0.0.255")
	bad["broadcast address"] = s.reply(xid, layers.DHCPMsgTypeOffer, clientMAC)
	s.addr = netip.MustParseAddr("224.0.0.1")
	bad["multicast address"] = s.reply(xid, layers.DHCPMsgTypeOffer, clientMAC)
	s.addr = netip.MustParseAddr("10.0.0.15")
	req := s.reply(xid, layers.DHCPMsgTypeOffer, clientMAC)
	req[0] = byte(layers.DHCPOpRequest)
	bad["BOOTREQUEST"] = req
	n := uint64(0)
	for name, b := range bad {
		if ev := c.Handle(t0, b); ev != None || c.State() != Selecting {
			t.Errorf("%s: event %v state %v", name, ev, c.State())
		}
		n++
		if c.Counters().Dropped != n {
			t.Errorf("%s: not counted (%d)", name, c.Counters().Dropped)
		}
	}
	// An ACK without a lease time is dropped too.
	c.Handle(t0, s.reply(xid, layers.DHCPMsgTypeOffer, clientMAC))
	c.Next(t0) // REQUEST
	s.lease = 0
	ack := s.reply(c.xid, layers.DHCPMsgTypeAck, clientMAC)
	if ev := c.Handle(t0, stripOption(t, ack, layers.DHCPOptLeaseTime)); ev != None || c.State() != Requesting {
		t.Errorf("ACK without lease time: event %v state %v", ev, c.State())
	}
	// No subnet mask: the natural mask of the class (10/8), and the router
	// inside it is kept.
	s = newServer(t)
	s.mask = nil
	c = newClient(t, 0)
	if l := bind(t, c, s); l.Addr != netip.MustParsePrefix("10.0.0.15/8") || l.Router != serverIP {
		t.Errorf("without mask: %v via %v", l.Addr, l.Router)
	}
	// A router outside the subnet is dropped, the lease kept.
	s = newServer(t)
	s.mask = []byte{255, 255, 255, 252}
	s.addr = netip.MustParseAddr("10.0.0.13")
	c = newClient(t, 0)
	if l := bind(t, c, s); l.Router.IsValid() {
		t.Errorf("off-link router kept: %v", l.Router)
	}
}

// stripOption removes one option from an encoded message.
func stripOption(t *testing.T, b []byte, opt layers.DHCPOpt) []byte {
	var d layers.DHCPv4
	if err := d.DecodeFromBytes(b, gopacket.NilDecodeFeedback); err != nil {
		t.Fatal(err)
	}
	var keep layers.DHCPOptions
	for _, o := range d.Options {
		if o.Type != opt {
			keep = append(keep, o)
		}
	}
	d.Options = keep
	buf := gopacket.NewSerializeBuffer()
	if err := d.SerializeTo(buf, gopacket.SerializeOptions{FixLengths: true}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestNewClientChecks(t *testing.T) {
	for _, cfg := range []Config{
		{},
		{MAC: net.HardwareAddr{1, 0, 0, 0, 0, 1}},
		{MAC: clientMAC, FallbackAfter: -1},
	} {
		if _, err := NewClient(cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
}

// TestInfiniteLease: a lease of 0xffffffff seconds is never renewed and
// never expires.
func TestInfiniteLease(t *testing.T) {
	s := newServer(t)
	s.lease = infinite
	c := newClient(t, 0)
	l := bind(t, c, s)
	if l.Duration != 0 || l.T1 != 0 || l.T2 != 0 || !l.Expiry().IsZero() {
		t.Fatalf("infinite lease %+v", l)
	}
	later := t0.Add(100 * 365 * 24 * time.Hour)
	if p, ev, wake := c.Next(later); p.Data != nil || ev != None || !wake.After(later) || c.State() != Bound {
		t.Fatalf("a century later: sent=%v event %v wake %v state %v", p.Data != nil, ev, wake, c.State())
	}
}
