package service

import (
	"errors"
	"io"
	"net"
	"sync/atomic"
	"time"
)

// maxDatagram is the largest UDP payload over IPv4: 65535 minus the IPv4
// and UDP headers (RFC 768, RFC 791); IPv6's limit is a little larger
// (65527, RFC 8200 without jumbograms), but a datagram that size cannot
// leave this stack over IPv4 anyway.
const maxDatagram = 65535 - 20 - 8

// UDPEcho answers every datagram on pc with the same bytes (RFC 862) until
// pc is closed.
func UDPEcho(pc net.PacketConn) error {
	buf := make([]byte, maxDatagram)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if isTemporary(err) {
				continue
			}
			return err
		}
		// A failed reply (e.g. no ARP answer, buffer exhaustion) is
		// the client's loss, as with any UDP service.
		pc.WriteTo(buf[:n], from)
	}
}

// Serve accepts connections on l and runs handle on each in its own
// goroutine, which closes the connection when handle returns. It returns
// when l is closed.
func Serve(l net.Listener, handle func(net.Conn)) error {
	var backoff time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if !isTemporary(err) {
				return err
			}
			// e.g. out of buffers: back off rather than spin.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		go func() {
			defer c.Close()
			handle(c)
		}()
	}
}

// idle wraps handle so that its connection is closed once reads or writes
// stop making progress for d (no limit when d < 0). The limit runs from
// accept, so a peer that never sends is cut off too.
func idle(handle func(net.Conn), d time.Duration) func(net.Conn) {
	if d < 0 {
		return handle
	}
	return func(c net.Conn) {
		ic := &idleConn{Conn: c, d: d, start: time.Now()}
		c.SetDeadline(ic.start.Add(d))
		handle(ic)
	}
}

// idleConn keeps a read and a write deadline d ahead of the last progress.
// A deadline is a timer: it is moved only once a quarter of d has passed,
// not on every call, so a busy connection does not churn timers; a silent
// peer is cut off after between ¾d and d.
//
// Progress is measured on the monotonic clock from start, never on the
// wall clock: on tamago the wall clock counts from boot unless something
// sets it, and a zero "last moved" read as long ago only once the clock
// had passed d/4, so a peer that went quiet in the first seconds after
// boot kept its handler forever.
type idleConn struct {
	net.Conn
	d               time.Duration
	start           time.Time
	readAt, writeAt atomic.Int64 // when each deadline was last moved (ns since start)
}

func (c *idleConn) Read(p []byte) (int, error) {
	if now := time.Since(c.start); int64(now)-c.readAt.Load() > int64(c.d/4) {
		c.readAt.Store(int64(now))
		c.Conn.SetReadDeadline(c.start.Add(now + c.d))
	}
	return c.Conn.Read(p)
}

func (c *idleConn) Write(p []byte) (int, error) {
	if now := time.Since(c.start); int64(now)-c.writeAt.Load() > int64(c.d/4) {
		c.writeAt.Store(int64(now))
		c.Conn.SetWriteDeadline(c.start.Add(now + c.d))
	}
	return c.Conn.Write(p)
}

// copyBufSize is the per-connection buffer of echo and discard.
const copyBufSize = 32 << 10

// onlyReader and onlyWriter hide ReadFrom / WriteTo so that io.CopyBuffer
// uses the buffer it is given.
type onlyReader struct{ io.Reader }
type onlyWriter struct{ io.Writer }

// Echo sends back everything it reads from c (RFC 862) until the peer
// closes its side, then closes.
func Echo(c net.Conn) {
	io.CopyBuffer(onlyWriter{c}, onlyReader{c}, make([]byte, copyBufSize))
}

// Discard reads and drops everything from c (RFC 863) until the peer closes
// its side, then closes.
func Discard(c net.Conn) {
	io.CopyBuffer(io.Discard, onlyReader{c}, make([]byte, copyBufSize))
}

// Chargen writes the RFC 864 character pattern to c until the write fails
// (the peer went away). Data sent by the peer is read and dropped, as the
// RFC asks.
func Chargen(c net.Conn) {
	go io.CopyBuffer(io.Discard, onlyReader{c}, make([]byte, 512))
	for {
		if _, err := c.Write(chargenBlock); err != nil {
			return
		}
	}
}

// RFC 864: lines of 72 printable ASCII characters (codes 32 to 126, 95 of
// them), each starting one character further along the sequence, ended by
// CR LF. The pattern repeats every 95 lines.
const (
	chargenFirst = ' '
	chargenChars = 95
	chargenLine  = 72
)

// chargenBlock is four full cycles of the pattern (4 × 95 × 74 bytes), so
// every write ends on a cycle boundary and the stream is seamless.
var chargenBlock = func() []byte {
	const cycles = 4
	b := make([]byte, 0, cycles*chargenChars*(chargenLine+2))
	for range cycles {
		for line := range chargenChars {
			for i := range chargenLine {
				b = append(b, chargenFirst+byte((line+i)%chargenChars))
			}
			b = append(b, '\r', '\n')
		}
	}
	return b
}()

func isTemporary(err error) bool {
	var ne interface{ Temporary() bool }
	if errors.As(err, &ne) && ne.Temporary() {
		return true
	}
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}
