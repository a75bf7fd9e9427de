// Package resolve points Go's DNS resolver at name servers chosen at run
// time, for firmware where there is no /etc/resolv.conf.
//
// On GOOS=tamago Go's resolver is the pure-Go one (no cgo, no nsswitch)
// and, with no /etc/resolv.conf to read, it would ask 127.0.0.1:53 and
// [::1]:53. A Resolver replaces that choice: its Dial ignores the address
// the resolver asks for and connects to the next configured server
// (round robin), through whatever dial function it was given; on tamago
// that is net.Dialer, which reaches the tamanet stack through
// net.SocketFunc. Install makes it the resolver of net.DefaultResolver, so
// that net.LookupHost, net.Dial("tcp", "name:port") and friends work:
//
//	r := resolve.New(new(net.Dialer).DialContext)
//	r.SetServers(lease.DNS) // from DHCP (stack/dhcp) or the build (DNS=)
//	r.Install()
//	c, err := net.Dial("tcp", "example.lan:80")
//
// SetServers may be called at any time (a DHCP renewal that changes the
// servers); a lookup with no server configured fails with ErrNoServers.
// Search domains and resolver options are Go's defaults (none, ndots 1,
// timeout 5 s, 2 attempts).
package resolve

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
)

// ErrNoServers is returned by Dial when no name server is configured.
var ErrNoServers = errors.New("resolve: no DNS servers configured")

// Port is the DNS port (RFC 1035 §4.2).
const Port = 53

// DialFunc opens a connection, as net.Dialer.DialContext.
type DialFunc func(ctx context.Context, network, address string) (net.Conn, error)

// Resolver hands Go's resolver connections to the configured servers.
type Resolver struct {
	dial    DialFunc
	mu      sync.Mutex
	servers []netip.Addr
	next    int // the server Dial takes next, modulo len(servers); guarded by mu
}

// New returns a resolver with no servers that dials with dial.
func New(dial DialFunc) *Resolver { return &Resolver{dial: dial} }

// SetServers replaces the name servers. Invalid and unspecified
// addresses are skipped.
func (r *Resolver) SetServers(servers []netip.Addr) {
	var s []netip.Addr
	for _, a := range servers {
		if a.IsValid() && !a.IsUnspecified() {
			s = append(s, a.Unmap())
		}
	}
	r.mu.Lock()
	r.servers = s
	r.mu.Unlock()
}

// Servers returns the configured name servers.
func (r *Resolver) Servers() []netip.Addr {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]netip.Addr(nil), r.servers...)
}

// Dial connects to the next configured server on the DNS port over
// network ("udp" or "tcp"); address, the server Go's resolver picked from
// its own defaults, is ignored.
func (r *Resolver) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	r.mu.Lock()
	n := len(r.servers)
	var srv netip.Addr
	if n > 0 {
		srv = r.servers[r.next%n]
		r.next++
	}
	r.mu.Unlock()
	if n == 0 {
		return nil, ErrNoServers
	}
	switch network {
	case "udp", "udp4", "udp6", "tcp", "tcp4", "tcp6":
	default:
		return nil, fmt.Errorf("resolve: network %q", network)
	}
	return r.dial(ctx, network[:3], netip.AddrPortFrom(srv, Port).String())
}

// Resolver returns a net.Resolver that uses r.
func (r *Resolver) Resolver() *net.Resolver { return &net.Resolver{PreferGo: true, Dial: r.Dial} }

// Install makes r the dialer of net.DefaultResolver (and so of net.Dial
// and net.Lookup*), with the pure-Go resolver. Call it once at start-up,
// before any lookup.
func (r *Resolver) Install() {
	net.DefaultResolver.PreferGo = true
	net.DefaultResolver.Dial = r.Dial
}
