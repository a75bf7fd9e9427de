package profile

// A client for the GDB remote serial protocol (GDB manual, appendix E
// "GDB Remote Serial Protocol"), as much of it as sampling needs: stop the
// target (0x03), read its registers (g) and memory (m), let it go on (c).
// QEMU's gdb stub is the server.

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

// ErrExited is returned when the target reports that it has exited (W or X
// stop reply): QEMU quit.
var ErrExited = errors.New("gdb: target exited")

// GDB is a connection to a gdb stub. It is not safe for concurrent use.
type GDB struct {
	c       net.Conn
	r       *bufio.Reader
	timeout time.Duration
	noAck   bool
	out     []byte // frame being sent
	in      []byte // payload of the last packet received, decoded
	hex     []byte // decoded binary of the last g or m reply
}

// NewGDB wraps c. Every exchange must finish within timeout (a stub that
// stops answering is an error, not a hang).
func NewGDB(c net.Conn, timeout time.Duration) *GDB {
	return &GDB{c: c, r: bufio.NewReaderSize(c, 1<<16), timeout: timeout}
}

// Close closes the connection.
func (g *GDB) Close() error { return g.c.Close() }

// checksum is the modulo-256 sum of the payload's bytes (appendix E.1).
func checksum(p []byte) byte {
	var s byte
	for _, c := range p {
		s += c
	}
	return s
}

// escapable are the bytes a payload must escape as '}' c^0x20 (E.1).
func escapable(c byte) bool { return c == '$' || c == '#' || c == '}' || c == '*' }

// frame appends "$payload#cs" to dst, escaping what needs it.
func frame(dst []byte, payload string) []byte {
	dst = append(dst, '$')
	start := len(dst)
	for i := 0; i < len(payload); i++ {
		c := payload[i]
		if escapable(c) {
			dst = append(dst, '}', c^0x20)
			continue
		}
		dst = append(dst, c)
	}
	cs := checksum(dst[start:])
	return append(dst, '#', hexDigits[cs>>4], hexDigits[cs&15])
}

const hexDigits = "0123456789abcdef"

func (g *GDB) deadline() { g.c.SetDeadline(time.Now().Add(g.timeout)) }

// send writes one packet and, in ack mode, waits for its '+' (resending on
// '-', a few times).
func (g *GDB) send(payload string) error {
	g.out = frame(g.out[:0], payload)
	for try := 0; ; try++ {
		g.deadline()
		if _, err := g.c.Write(g.out); err != nil {
			return fmt.Errorf("gdb: send %q: %w", payload, err)
		}
		if g.noAck {
			return nil
		}
		c, err := g.ackByte()
		if err != nil {
			return fmt.Errorf("gdb: ack for %q: %w", payload, err)
		}
		switch {
		case c == '+':
			return nil
		case c == '-' && try < 3:
			continue
		default:
			return fmt.Errorf("gdb: ack for %q: got %q", payload, c)
		}
	}
}

// ackByte reads the next ack. A packet that arrives first is one the stub
// sent on its own (QEMU announces "T02" when a debugger connects, as the
// guest stops); it is acked and dropped.
func (g *GDB) ackByte() (byte, error) {
	for {
		c, err := g.r.ReadByte()
		if err != nil || c != '$' {
			return c, err
		}
		if _, err := g.r.ReadSlice('#'); err != nil {
			return 0, err
		}
		if _, err := g.r.Discard(2); err != nil {
			return 0, err
		}
		if _, err := g.c.Write([]byte{'+'}); err != nil {
			return 0, err
		}
	}
}

// recv reads one packet into g.in: skips anything before '$' (stray acks),
// checks the checksum (a bad one is nacked and the packet read again),
// undoes escapes and run-length encoding, and acks it in ack mode.
func (g *GDB) recv() ([]byte, error) {
	for try := 0; ; try++ {
		g.deadline()
		for {
			c, err := g.r.ReadByte()
			if err != nil {
				return nil, fmt.Errorf("gdb: receive: %w", err)
			}
			if c == '$' {
				break
			}
		}
		raw, err := g.r.ReadSlice('#')
		if err != nil {
			return nil, fmt.Errorf("gdb: receive: %w", err)
		}
		raw = raw[:len(raw)-1]
		var csb [2]byte
		if _, err := io.ReadFull(g.r, csb[:]); err != nil {
			return nil, fmt.Errorf("gdb: receive checksum: %w", err)
		}
		want, err := strconv.ParseUint(string(csb[:]), 16, 8)
		if err != nil || byte(want) != checksum(raw) {
			if g.noAck || try >= 3 {
				return nil, fmt.Errorf("gdb: bad checksum %q on %q", csb[:], raw)
			}
			if _, err := g.c.Write([]byte{'-'}); err != nil {
				return nil, err
			}
			continue
		}
		// raw points into the reader's buffer: decode before anything
		// else reads.
		g.in, err = decode(g.in[:0], raw)
		if err != nil {
			return nil, err
		}
		if !g.noAck {
			if _, err := g.c.Write([]byte{'+'}); err != nil {
				return nil, err
			}
		}
		return g.in, nil
	}
}

// decode appends raw, with escapes ('}' c^0x20) and run-length encoding
// ("c*n": c repeated n-29 more times, E.1) undone, to dst.
func decode(dst, raw []byte) ([]byte, error) {
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch c {
		case '}':
			if i+1 >= len(raw) {
				return dst, errors.New("gdb: escape at end of packet")
			}
			i++
			dst = append(dst, raw[i]^0x20)
		case '*':
			if len(dst) == 0 || i+1 >= len(raw) {
				return dst, errors.New("gdb: bad run-length encoding")
			}
			i++
			n := int(raw[i]) - 29
			if n < 0 || n > 126-29 {
				return dst, fmt.Errorf("gdb: bad run length %q", raw[i])
			}
			prev := dst[len(dst)-1]
			for range n {
				dst = append(dst, prev)
			}
		default:
			dst = append(dst, c)
		}
	}
	return dst, nil
}

// command sends payload and returns the reply, with an "Enn" reply as an
// error.
func (g *GDB) command(payload string) ([]byte, error) {
	if err := g.send(payload); err != nil {
		return nil, err
	}
	p, err := g.recv()
	if err != nil {
		return nil, err
	}
	if len(p) == 3 && p[0] == 'E' {
		return nil, fmt.Errorf("gdb: %q: error %s", payload, p[1:])
	}
	return p, nil
}

// NoAck asks for no-acknowledgment mode (QStartNoAckMode), which halves
// the messages per exchange. A stub that does not support it keeps acking.
func (g *GDB) NoAck() error {
	p, err := g.command("QStartNoAckMode")
	if err != nil {
		return err
	}
	if string(p) == "OK" {
		g.noAck = true
	}
	return nil
}

// Acking reports whether the connection is still in acknowledgment mode.
func (g *GDB) Acking() bool { return !g.noAck }

// Stop interrupts the running target (the 0x03 byte, E.8) and waits for its
// stop reply (T or S packet, e.g. "T02thread:01;" or "S05"). Console output
// packets (O...) are skipped.
func (g *GDB) Stop() error {
	g.deadline()
	if _, err := g.c.Write([]byte{0x03}); err != nil {
		return fmt.Errorf("gdb: interrupt: %w", err)
	}
	return g.waitStop()
}

// StopStatus asks why the target is stopped (?), the first thing to do on
// a new connection, which stops the target.
func (g *GDB) StopStatus() error {
	if err := g.send("?"); err != nil {
		return err
	}
	return g.waitStop()
}

func (g *GDB) waitStop() error {
	for {
		p, err := g.recv()
		if err != nil {
			return err
		}
		if len(p) == 0 {
			return errors.New("gdb: empty stop reply")
		}
		switch p[0] {
		case 'T', 'S':
			return nil
		case 'W', 'X':
			return ErrExited
		case 'O':
			continue
		}
		return fmt.Errorf("gdb: unexpected stop reply %q", p)
	}
}

// Continue lets the target run (c). The stub answers only when the target
// stops again, so there is no reply to wait for.
func (g *GDB) Continue() error { return g.send("c") }

// Registers reads the general registers (g) in the target's order and byte
// order (gdb's register file for the architecture). The slice is reused by
// the next call.
func (g *GDB) Registers() ([]byte, error) {
	p, err := g.command("g")
	if err != nil {
		return nil, err
	}
	return g.unhex(p)
}

// ReadMemory reads len(dst) bytes at addr (m addr,length).
func (g *GDB) ReadMemory(addr uint64, dst []byte) error {
	var cmd [40]byte
	b := append(cmd[:0], 'm')
	b = strconv.AppendUint(b, addr, 16)
	b = append(b, ',')
	b = strconv.AppendUint(b, uint64(len(dst)), 16)
	p, err := g.command(string(b))
	if err != nil {
		return err
	}
	m, err := g.unhex(p)
	if err != nil {
		return err
	}
	if len(m) != len(dst) {
		return fmt.Errorf("gdb: read %d bytes at %#x: got %d", len(dst), addr, len(m))
	}
	copy(dst, m)
	return nil
}

func (g *GDB) unhex(p []byte) ([]byte, error) {
	if len(p)%2 != 0 {
		return nil, fmt.Errorf("gdb: odd hex reply %q", p)
	}
	n := len(p) / 2
	if cap(g.hex) < n {
		g.hex = make([]byte, n)
	}
	g.hex = g.hex[:n]
	// QEMU answers 'x' digits for registers it cannot read; they read
	// as zero here.
	for i := range p {
		if p[i] == 'x' || p[i] == 'X' {
			p[i] = '0'
		}
	}
	if _, err := hex.Decode(g.hex, p); err != nil {
		return nil, fmt.Errorf("gdb: hex reply: %w", err)
	}
	return g.hex, nil
}

// Detach lets the target run on without the debugger (D).
func (g *GDB) Detach() error {
	p, err := g.command("D")
	if err != nil {
		return err
	}
	if string(p) != "OK" {
		return fmt.Errorf("gdb: detach: %q", p)
	}
	return nil
}
