package stack

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tamanet/tamanet/nic/nictest"
	"github.com/tamanet/tamanet/stack/stacktest"
)

// TestDynamicIPv4 starts a stack with no address, then sets, replaces and
// clears it at run time, checking each step from a peer stack.
func TestDynamicIPv4(t *testing.T) {
	pa, pb := newPool(t, 1024), newPool(t, 1024)
	da := nictest.New(pa, nictest.Config{MAC: stacktest.MACA})
	db := nictest.New(pb, nictest.Config{MAC: stacktest.MACB})
	nictest.Pipe(da, db)
	a, err := New(da, Config{Dynamic: true})
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(db, Config{Addr: addrB})
	if err != nil {
		t.Fatal(err)
	}
	da.OnReceive, db.OnReceive = a.Wake, b.Wake
	a.Start()
	b.Start()
	t.Cleanup(func() { a.Close(); b.Close() })

	ping := func(from *Stack, to netip.Addr) error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := from.Ping(ctx, to, 1, []byte("dyn"))
		return err
	}
	if p, g := a.IPv4(); p.IsValid() || g.IsValid() {
		t.Fatalf("dynamic stack starts with %v via %v", p, g)
	}
	if ping(a, addrB.Addr()) == nil {
		t.Fatal("an address-less stack sent a ping")
	}

	if err := a.SetIPv4(addrA, addrB.Addr()); err != nil {
		t.Fatal(err)
	}
	if err := ping(b, addrA.Addr()); err != nil {
		t.Fatalf("after SetIPv4(%v): %v", addrA, err)
	}
	// And A reaches B: its own address is the source.
	if err := ping(a, addrB.Addr()); err != nil {
		t.Fatalf("A to B: %v", err)
	}
	// Renewing with the same values keeps the address.
	if err := a.SetIPv4(addrA, addrB.Addr()); err != nil {
		t.Fatal(err)
	}
	if err := ping(b, addrA.Addr()); err != nil {
		t.Fatalf("after a same-value SetIPv4: %v", err)
	}

	moved := netip.MustParsePrefix("10.0.0.77/24")
	if err := a.SetIPv4(moved, netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	if p, g := a.IPv4(); p != moved || g.IsValid() {
		t.Fatalf("IPv4() = %v %v, want %v and no gateway", p, g, moved)
	}
	if err := ping(b, moved.Addr()); err != nil {
		t.Fatalf("new address: %v", err)
	}
	if ping(b, addrA.Addr()) == nil {
		t.Error("the replaced address still answers")
	}
	if n := len(a.GVisor().GetRouteTable()); n != 1 {
		t.Errorf("route table after replacing: %v", a.GVisor().GetRouteTable())
	}

	a.ClearIPv4()
	if p, _ := a.IPv4(); p.IsValid() {
		t.Errorf("IPv4() after Clear = %v", p)
	}
	if ping(b, moved.Addr()) == nil {
		t.Error("a cleared address still answers")
	}
	if n := len(a.GVisor().GetRouteTable()); n != 0 {
		t.Errorf("routes left after ClearIPv4: %v", a.GVisor().GetRouteTable())
	}

	for _, c := range []struct {
		p    netip.Prefix
		gw   netip.Addr
		want string
	}{
		{netip.MustParsePrefix("10.0.0.0/24"), netip.Addr{}, "network or broadcast"},
		{addrA, netip.MustParseAddr("10.9.0.1"), "outside"},
		{netip.Prefix{}, netip.Addr{}, "no address"},
	} {
		if err := a.SetIPv4(c.p, c.gw); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("SetIPv4(%v, %v) = %v, want %q", c.p, c.gw, err, c.want)
		}
	}
	if _, err := New(da, Config{Dynamic: true, Addr: addrA}); err == nil {
		t.Error("Dynamic with a static address accepted")
	}
}

// TestStaticIPv4: a static address and gateway from Config are in place
// after New as SetIPv4 leaves them: IPv4 reports them and the table holds
// the on-link route and the default route through the gateway.
func TestStaticIPv4(t *testing.T) {
	pool := newPool(t, 64)
	s, err := New(nictest.New(pool, nictest.Config{MAC: stacktest.MACA, RxRing: 16}), Config{Addr: addrA, Gateway: addrB.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if p, g := s.IPv4(); p != addrA || g != addrB.Addr() {
		t.Errorf("IPv4() = %v %v, want %v %v", p, g, addrA, addrB.Addr())
	}
	var got []string
	for _, r := range s.GVisor().GetRouteTable() {
		got = append(got, r.Destination.String()+" via "+r.Gateway.String())
	}
	if want := []string{"10.0.0.0/24 via ", "0.0.0.0/0 via 10.0.0.2"}; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("routes %q, want %q", got, want)
	}
}
