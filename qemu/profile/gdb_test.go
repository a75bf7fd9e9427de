package profile

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeStub is a gdb stub on the other end of a pipe. It parses the
// client's packets itself (independently of the client's code) and answers
// with what reply returns, framed as given (raw: already framed, so a test
// can send escapes, run-length encoding or a bad checksum).
type fakeStub struct {
	t       *testing.T
	c       net.Conn
	r       *bufio.Reader
	got     chan string // payloads received
	running bool
}

func newFake(t *testing.T, reply func(f *fakeStub, payload string)) (*GDB, *fakeStub) {
	a, b := socketPair(t)
	f := &fakeStub{t: t, c: b, r: bufio.NewReader(b), got: make(chan string, 10000)}
	go f.serve(reply)
	return NewGDB(a, 2*time.Second), f
}

// socketPair returns both ends of a unix socket connection: buffered, as
// QEMU's socket is, so that either side can write before the other reads.
func socketPair(t *testing.T) (net.Conn, net.Conn) {
	l, err := net.Listen("unix", filepath.Join(t.TempDir(), "gdb"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ch := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		ch <- c
	}()
	a, err := net.Dial("unix", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b := <-ch
	if b == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func sum(p string) string {
	var s byte
	for i := 0; i < len(p); i++ {
		s += p[i]
	}
	return fmt.Sprintf("%02x", s)
}

// send frames payload plainly; raw sends bytes as they are.
func (f *fakeStub) send(payload string) { f.raw("$" + payload + "#" + sum(payload)) }
func (f *fakeStub) raw(s string)        { f.c.Write([]byte(s)) }

func (f *fakeStub) serve(reply func(f *fakeStub, payload string)) {
	for {
		c, err := f.r.ReadByte()
		if err != nil {
			return
		}
		switch c {
		case '+':
			continue
		case '-':
			f.got <- "-"
			continue
		case 0x03:
			f.got <- "^C"
			reply(f, "^C")
			continue
		case '$':
		default:
			f.t.Errorf("stub: stray byte %q", c)
			continue
		}
		body, err := f.r.ReadString('#')
		if err != nil {
			return
		}
		body = body[:len(body)-1]
		cs := make([]byte, 2)
		if _, err := io.ReadFull(f.r, cs); err != nil {
			return
		}
		if string(cs) != sum(body) {
			f.t.Errorf("stub: checksum %s on %q, want %s", cs, body, sum(body))
			f.raw("-")
			continue
		}
		f.raw("+")
		// Undo the client's escapes.
		var p strings.Builder
		for i := 0; i < len(body); i++ {
			if body[i] == '}' && i+1 < len(body) {
				i++
				p.WriteByte(body[i] ^ 0x20)
				continue
			}
			p.WriteByte(body[i])
		}
		f.got <- p.String()
		reply(f, p.String())
	}
}

func TestFrame(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"g", "$g#67"},
		{"m10,4", "$m10,4#" + sum("m10,4")},
		// $, #, } and * are escaped as } c^0x20, and the checksum is
		// over the escaped bytes.
		{"a$b#c}d*", "$a}\x04b}\x03c}]d}\x0a#" + sum("a}\x04b}\x03c}]d}\x0a")},
	} {
		if got := string(frame(nil, c.in)); got != c.want {
			t.Errorf("frame(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestDecode(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"OK", "OK"},
		// "0* " is 0 and 3 more (' ' is 32, 32-29 = 3).
		{"0* ", "0000"},
		{"ab*\"c", "abbbbbbc"}, // '"' = 34: 5 more
		{"}\x03}\x04}]}\x0a", "#$}*"},
		{"x*}", strings.Repeat("x", 1+'}'-29)},
	} {
		got, err := decode(nil, []byte(c.in))
		if err != nil || string(got) != c.want {
			t.Errorf("decode(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"*!", "ab}", "ab*", "a*\x01"} {
		if got, err := decode(nil, []byte(bad)); err == nil {
			t.Errorf("decode(%q) = %q, want an error", bad, got)
		}
	}
}

// FuzzDecode: whatever the stub sends, decoding returns or fails, and
// never grows a packet more than run-length encoding allows.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{"OK", "0* ", "}\x03", "T05thread:01;", "a*~", "*", "}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		out, err := decode(nil, raw)
		if err == nil && len(out) > len(raw)*(126-29)/2+len(raw) {
			t.Fatalf("%d bytes from %d", len(out), len(raw))
		}
	})
}

func TestRegistersAndMemory(t *testing.T) {
	regs := make([]byte, 17*8)
	for i := 16; i < len(regs); i++ {
		regs[i] = byte(i)
	}
	mem := []byte{0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0}
	g, f := newFake(t, func(f *fakeStub, p string) {
		switch p {
		case "g":
			// Run-length encoded, as QEMU sends runs: 32 '0' digits
			// are "0" and 31 more ('<' is 60, 60-29 = 31).
			f.send("0*<" + hex.EncodeToString(regs[16:]))
		case "m1000,8", "m1000,4":
			// Eight '0': "0", 5 more ('"' is 34), "00".
			f.send("deadbeef0*\"00")
		case "m2000,4":
			f.send("E14")
		}
	})
	r, err := g.Registers()
	if err != nil || !bytes.Equal(r, regs) {
		t.Fatalf("registers %x, %v", r, err)
	}
	dst := make([]byte, 8)
	if err := g.ReadMemory(0x1000, dst); err != nil || !bytes.Equal(dst, mem) {
		t.Fatalf("m1000,8: %x, %v", dst, err)
	}
	if err := g.ReadMemory(0x2000, dst[:4]); err == nil || !strings.Contains(err.Error(), "error 14") {
		t.Fatalf("E14 reply: %v", err)
	}
	// A reply of the wrong length is an error, not a short read.
	if err := g.ReadMemory(0x1000, dst[:4]); err == nil {
		t.Fatal("8 bytes for a 4-byte read: no error")
	}
	for _, want := range []string{"g", "m1000,8", "m2000,4", "m1000,4"} {
		if p := <-f.got; p != want {
			t.Errorf("stub got %q, want %q", p, want)
		}
	}
}

func TestChecksumRetry(t *testing.T) {
	g, f := newFake(t, func(f *fakeStub, p string) {
		if p == "g" {
			// A corrupted reply, then its retransmission (a stub
			// resends on the client's '-').
			f.raw("$0102#00")
			f.send("0102")
		}
	})
	r, err := g.Registers()
	if err != nil || !bytes.Equal(r, []byte{1, 2}) {
		t.Fatalf("registers after a bad checksum: %x, %v", r, err)
	}
	if p := <-f.got; p != "g" {
		t.Fatalf("stub got %q", p)
	}
	if p := <-f.got; p != "-" {
		t.Fatalf("no nack for the bad checksum: stub got %q", p)
	}
}

func TestStopContinue(t *testing.T) {
	g, f := newFake(t, func(f *fakeStub, p string) {
		switch p {
		case "^C":
			if !f.running {
				f.t.Error("interrupted while stopped")
			}
			f.running = false
			// Console output first, then the stop reply.
			f.send("O48690a")
			f.send("T02thread:01;")
		case "c":
			f.running = true // no reply until it stops
		case "?":
			f.send("S05")
		case "QStartNoAckMode":
			f.send("OK")
		case "D":
			f.send("OK")
		}
	})
	// QEMU announces a stop when a debugger connects, before any
	// request: the client drops it while waiting for its ack.
	f.send("T02thread:01;")
	if err := g.StopStatus(); err != nil {
		t.Fatal(err)
	}
	if err := g.NoAck(); err != nil || g.Acking() {
		t.Fatalf("no-ack mode: %v, acking %v", err, g.Acking())
	}
	for range 3 {
		if err := g.Continue(); err != nil {
			t.Fatal(err)
		}
		if err := g.Stop(); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.Detach(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for len(f.got) > 0 {
		got = append(got, <-f.got)
	}
	want := "? QStartNoAckMode c ^C c ^C c ^C D"
	if strings.Join(got, " ") != want {
		t.Errorf("stub got %v, want %s", got, want)
	}
}

func TestExitedAndSilent(t *testing.T) {
	g, _ := newFake(t, func(f *fakeStub, p string) {
		if p == "^C" {
			f.send("W00")
		}
	})
	if err := g.Stop(); !errors.Is(err, ErrExited) {
		t.Errorf("W reply: %v, want ErrExited", err)
	}
	// A stub that never answers: an error after the timeout, not a hang.
	a, b := socketPair(t)
	go io.Copy(io.Discard, b)
	g = NewGDB(a, 100*time.Millisecond)
	start := time.Now()
	if err := g.Stop(); err == nil {
		t.Error("no stop reply, no error")
	}
	if _, err := g.Registers(); err == nil {
		t.Error("no ack, no error")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v", d)
	}
}

// replayConn is a net.Conn that reads a fixed byte string and swallows
// writes.
type replayConn struct {
	net.Conn
	r *bytes.Reader
}

func (c replayConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c replayConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c replayConn) SetDeadline(time.Time) error      { return nil }
func (c replayConn) Close() error                     { return nil }
func (c replayConn) LocalAddr() net.Addr              { return nil }
func (c replayConn) RemoteAddr() net.Addr             { return nil }
func (c replayConn) SetReadDeadline(time.Time) error  { return nil }
func (c replayConn) SetWriteDeadline(time.Time) error { return nil }

// FuzzStubReplies: whatever bytes the stub sends, the client's requests
// return, with an error at the latest when the bytes run out, and never
// panic.
func FuzzStubReplies(f *testing.F) {
	f.Add([]byte("+$T02thread:01;#04+$0102#03+$deadbeef#" + sum("deadbeef")))
	f.Add([]byte("$O41#" + sum("O41") + "$S05#b8+$E01#a6+$0*\"#" + sum("0*\"")))
	f.Add([]byte("-+$W00#b7"))
	f.Fuzz(func(t *testing.T, data []byte) {
		g := NewGDB(replayConn{r: bytes.NewReader(data)}, time.Second)
		for range 4 {
			g.Stop()
			g.Registers()
			g.ReadMemory(0x1000, make([]byte, 4))
		}
	})
}
