package resolve

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
)

func TestDialRoundRobin(t *testing.T) {
	var got []string
	r := New(func(ctx context.Context, network, address string) (net.Conn, error) {
		got = append(got, network+" "+address)
		return nil, errors.New("not really")
	})
	if _, err := r.Dial(context.Background(), "udp", "127.0.0.1:53"); !errors.Is(err, ErrNoServers) {
		t.Fatalf("no servers: %v", err)
	}
	r.SetServers([]netip.Addr{netip.MustParseAddr("10.0.0.2"), {}, netip.IPv4Unspecified(), netip.MustParseAddr("::ffff:10.0.0.3")})
	if s := r.Servers(); len(s) != 2 || s[1] != netip.MustParseAddr("10.0.0.3") {
		t.Fatalf("servers %v", s)
	}
	for _, n := range []string{"udp", "tcp", "udp4"} {
		r.Dial(context.Background(), n, "[::1]:53")
	}
	want := []string{"udp 10.0.0.2:53", "tcp 10.0.0.3:53", "udp 10.0.0.2:53"}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("dialled %v, want %v", got, want)
		}
	}
	if _, err := r.Dial(context.Background(), "unix", "x"); err == nil {
		t.Error("unix network accepted")
	}
	// A lookup through a resolver with no servers fails without
	// touching the network.
	r.SetServers(nil)
	if _, err := r.Resolver().LookupHost(context.Background(), "example.test"); err == nil {
		t.Error("lookup with no servers succeeded")
	}
}
