package service

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// TestLookup runs the self-test against a listener on loopback, with a
// lookup that knows one name and a dial that goes by name through it: the
// name must be looked up, dialled by name, and the line read.
func TestLookup(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go Serve(ln, func(c net.Conn) { c.Write([]byte("pong\r\n")); c.Close() })
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	lookup := func(ctx context.Context, host string) ([]string, error) {
		if host == "peer.test" {
			return []string{"127.0.0.1"}, nil
		}
		return nil, fmt.Errorf("lookup %s: no such host", host)
	}
	var byName []string
	dial := func(ctx context.Context, network, address string) (net.Conn, error) {
		host, port, _ := net.SplitHostPort(address)
		byName = append(byName, host)
		addrs, err := lookup(ctx, host)
		if err != nil {
			return nil, err
		}
		return new(net.Dialer).DialContext(ctx, network, net.JoinHostPort(addrs[0], port))
	}
	l, err := StartLookup(LookupConfig{Target: "peer.test:" + port, LookupHost: lookup, Dial: dial, Interval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for l.Status().OK < 2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	l.Stop()
	s := l.Status()
	if s.OK < 2 || s.Runs != s.OK || s.Line != "pong" || len(s.Addrs) != 1 || s.Addrs[0] != "127.0.0.1" || s.Remote != ln.Addr().String() || s.Error != "" {
		t.Fatalf("status %+v", s)
	}
	if byName[0] != "peer.test" {
		t.Errorf("dialled %v, want by name", byName)
	}
	// An unknown name fails and says why.
	l2, err := StartLookup(LookupConfig{Target: "absent.test:" + port, LookupHost: lookup, Dial: dial, Interval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for l2.Status().Runs < 1 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	l2.Stop()
	if s := l2.Status(); s.OK != 0 || !strings.Contains(s.Error, "absent.test") {
		t.Fatalf("unknown name: %+v", s)
	}
	for _, bad := range []string{"", "noport", ":80"} {
		if _, err := StartLookup(LookupConfig{Target: bad, LookupHost: lookup, Dial: dial}); err == nil {
			t.Errorf("target %q accepted", bad)
		}
	}
}
