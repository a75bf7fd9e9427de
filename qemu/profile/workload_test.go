package profile

import (
	"io"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tamanet/tamanet/internal/netns"
)

// TestLoads runs each workload against chargen, discard and echo servers
// on the loopback of a private namespace, where the workloads' sockets
// are made.
func TestLoads(t *testing.T) {
	ns, tap := netns.ForTest(t, "tamanet-prof")
	defer tap.Close()
	var echoed, discarded atomic.Int64
	serve := map[int]func(net.Conn){
		chargenPort: func(c net.Conn) {
			b := make([]byte, 1460)
			for i := range b {
				b[i] = byte(' ' + i%95)
			}
			for {
				if _, err := c.Write(b); err != nil {
					return
				}
			}
		},
		discardPort: func(c net.Conn) { n, _ := io.Copy(io.Discard, c); discarded.Add(n) },
		echoPort:    func(c net.Conn) { n, _ := io.Copy(c, c); echoed.Add(n) },
	}
	for port, fn := range serve {
		var l net.Listener
		if err := ns.Do(func() (err error) {
			l, err = net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() { defer c.Close(); fn(c) }()
			}
		}()
	}
	for _, name := range Workloads {
		l, err := StartLoad(name, ns.Name, "127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
		mid := l.Snapshot()
		time.Sleep(200 * time.Millisecond)
		r, err := l.Stop()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		d := r.Since(mid)
		t.Logf("%v; last 200 ms: %v", r, d)
		if name == "idle" {
			if r.Bytes != 0 || r.Ops != 0 {
				t.Errorf("idle did something: %+v", r)
			}
			continue
		}
		if d.Bytes <= 0 || d.Ops <= 0 || d.Elapsed < 150*time.Millisecond || d.Elapsed > r.Elapsed {
			t.Errorf("%s: whole run %+v, second half %+v", name, r, d)
		}
	}
	time.Sleep(100 * time.Millisecond) // the servers see the close
	if e := echoed.Load(); e == 0 || e%rrSize != 0 {
		t.Errorf("echo server echoed %d bytes, want a multiple of %d", e, rrSize)
	}
	if discarded.Load() == 0 {
		t.Error("nothing reached discard")
	}
	if _, err := StartLoad("bulk", ns.Name, "127.0.0.1"); err == nil {
		t.Error("unknown workload started")
	}
}
