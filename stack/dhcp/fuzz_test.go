package dhcp

import (
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
)

// FuzzHandle feeds arbitrary server messages to a client in each state.
// The client must not panic, must drop (and count) what it does not use,
// and any lease it takes must be usable: a unicast IPv4 address that is
// neither the network nor the broadcast address of its prefix, a router
// inside the prefix, at most MaxDNS unicast DNS servers, T1 < T2 < lease.
func FuzzHandle(f *testing.F) {
	s := &fakeServer{t: &testing.T{}, addr: netip.MustParseAddr("10.0.0.15"), mask: []byte{255, 255, 255, 0}, lease: 120, server: serverIP}
	for _, typ := range []layers.DHCPMsgType{layers.DHCPMsgTypeOffer, layers.DHCPMsgTypeAck, layers.DHCPMsgTypeNak} {
		for st := uint8(0); st < 4; st++ {
			f.Add(st, s.reply(1000, typ, clientMAC))
		}
	}
	s.t1, s.t2 = 90, 30
	f.Add(uint8(3), s.reply(1000, layers.DHCPMsgTypeAck, clientMAC))
	f.Add(uint8(1), []byte{2, 1, 6, 0})
	f.Fuzz(func(t *testing.T, state uint8, msg []byte) {
		c, err := NewClient(Config{MAC: clientMAC, Rand: noJitter})
		if err != nil {
			t.Fatal(err)
		}
		srv := &fakeServer{t: t, addr: netip.MustParseAddr("10.0.0.15"), mask: []byte{255, 255, 255, 0}, lease: 120, server: serverIP}
		// Bring the client to a state: 0 selecting, 1 requesting,
		// 2 bound, 3 renewing.
		now := t0
		c.Next(now)
		if state%4 >= 1 {
			c.Handle(now, srv.reply(c.xid, layers.DHCPMsgTypeOffer, clientMAC))
			c.Next(now)
		}
		if state%4 >= 2 {
			c.Handle(now, srv.reply(c.xid, layers.DHCPMsgTypeAck, clientMAC))
		}
		if state%4 >= 3 {
			now = now.Add(60 * time.Second)
			c.Next(now)
		}
		// The fuzzer's message, with the transaction id made current
		// when it is long enough to carry one.
		if len(msg) >= 8 && state >= 4 {
			msg[4], msg[5], msg[6], msg[7] = byte(c.xid>>24), byte(c.xid>>16), byte(c.xid>>8), byte(c.xid)
		}
		before := c.Counters()
		ev := c.Handle(now, msg)
		after := c.Counters()
		if ev == None && after == before {
			// Used without an event: only an OFFER does that.
			if c.State() != Requesting {
				t.Fatalf("message neither dropped nor used: state %v", c.State())
			}
		}
		l, ok := c.Lease()
		if ok {
			a := l.Addr.Addr()
			// The broadcast address is the prefix's last: the next one
			// is outside it (worked out apart from the client's check).
			if !unicast(a) || l.Addr.Bits() < 1 || l.Addr.Bits() > 31 ||
				(l.Addr.Bits() <= 30 && (a == l.Addr.Masked().Addr() || !l.Addr.Contains(a.Next()))) {
				t.Fatalf("unusable lease address %v", l.Addr)
			}
			if l.Router.IsValid() && (!l.Addr.Contains(l.Router) || l.Router == a) {
				t.Fatalf("router %v for %v", l.Router, l.Addr)
			}
			if len(l.DNS) > MaxDNS {
				t.Fatalf("%d DNS servers", len(l.DNS))
			}
			for _, d := range l.DNS {
				if !unicast(d) {
					t.Fatalf("DNS server %v", d)
				}
			}
			if l.Duration > 0 && !(0 < l.T1 && l.T1 < l.T2 && l.T2 < l.Duration) {
				t.Fatalf("times T1 %v T2 %v lease %v", l.T1, l.T2, l.Duration)
			}
		}
		if ev == Acquired || ev == Renewed {
			if !ok || c.State() != Bound {
				t.Fatalf("%v without a bound lease", ev)
			}
		}
		// The client goes on: Next never panics and schedules ahead.
		if _, _, wake := c.Next(now); wake.Before(now) {
			t.Fatalf("next timer %v before now", wake)
		}
	})
}
