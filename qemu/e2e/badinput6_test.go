package e2e

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// IPv6 bad input: the IPv4 cases' rules (counted, never a panic or a leak,
// services keep answering) for IPv6's own parsers: extension header chains,
// fragments, NDP, router advertisements, ICMPv6 errors. Every frame goes to
// the guest on the tap link, between link-local addresses, the static test
// prefix and the RA prefix.

const etherIP6 = 0x86dd

// ip6Frame builds Ethernet + IPv6 with payload from src to dst; a
// multicast dst gets its 33:33 group MAC (RFC 2464 section 7).
func (r *rawSocket) ip6Frame(srcMAC net.HardwareAddr, src, dst netip.Addr, nh, hop byte, payload []byte) []byte {
	f := make([]byte, 14+40+len(payload))
	if dst.IsMulticast() {
		d := dst.As16()
		copy(f[0:6], []byte{0x33, 0x33, d[12], d[13], d[14], d[15]})
	} else {
		copy(f[0:6], guestMAC)
	}
	if srcMAC == nil {
		srcMAC = r.mac
	}
	copy(f[6:12], srcMAC)
	binary.BigEndian.PutUint16(f[12:], etherIP6)
	ip := f[14:54]
	ip[0] = 6 << 4
	binary.BigEndian.PutUint16(ip[4:], uint16(len(payload)))
	ip[6], ip[7] = nh, hop
	s, d := src.As16(), dst.As16()
	copy(ip[8:24], s[:])
	copy(ip[24:40], d[:])
	copy(f[54:], payload)
	return f
}

// icmp6 returns an ICMPv6 message of type typ with body, checksummed for
// src and dst (RFC 4443 section 2.3).
func icmp6(src, dst netip.Addr, typ, code byte, body []byte) []byte {
	m := make([]byte, 4+len(body))
	m[0], m[1] = typ, code
	copy(m[4:], body)
	var pseudo [40]byte
	s, d := src.As16(), dst.As16()
	copy(pseudo[0:16], s[:])
	copy(pseudo[16:32], d[:])
	binary.BigEndian.PutUint32(pseudo[32:], uint32(len(m)))
	pseudo[39] = 58
	var sum uint32
	for i := 0; i < 40; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(pseudo[i:]))
	}
	binary.BigEndian.PutUint16(m[2:], checksum(m, sum))
	return m
}

// echo6 is an ICMPv6 echo request body: identifier, sequence, data.
func echo6(id, seq uint16, size int) []byte {
	b := make([]byte, 4+size)
	binary.BigEndian.PutUint16(b[0:], id)
	binary.BigEndian.PutUint16(b[2:], seq)
	for i := 4; i < len(b); i++ {
		b[i] = byte(i)
	}
	return b
}

// isEcho6Reply matches an ICMPv6 echo reply with identifier id.
func isEcho6Reply(id uint16) func([]byte) bool {
	return func(f []byte) bool {
		return len(f) >= 62 && binary.BigEndian.Uint16(f[12:]) == etherIP6 && f[20] == 58 && f[54] == 129 && binary.BigEndian.Uint16(f[58:]) == id
	}
}

// allDiff lists every counter that changed from a to b.
func allDiff(a, b map[string]float64) string {
	var out []string
	for k, v := range b {
		if v != a[k] && !strings.Contains(k, "uptime") && !strings.HasPrefix(k, "go.") && !strings.HasPrefix(k, "poll.") {
			out = append(out, fmt.Sprintf("%s +%v", k, v-a[k]))
		}
	}
	slices.Sort(out)
	return strings.Join(out, ", ")
}

// tapTxLost is what the host dropped on the way into the tap: its drop
// and error counters and its queueing disciplines' drops.
func tapTxLost(t *testing.T) float64 {
	t.Helper()
	_, dropped := qdiscStats(t)
	return dropped + tapDrops(t)
}

// tapDrops is the sum of the tap's own transmit drop and error counters.
func tapDrops(t *testing.T) float64 {
	t.Helper()
	var n float64
	for _, c := range []string{"tx_dropped", "tx_errors", "tx_fifo_errors", "tx_carrier_errors", "tx_aborted_errors"} {
		n += tapStat(t, c)
	}
	return n
}

// qdiscStats returns the frames the tap's root queueing discipline has
// handed to the tap driver ("Sent ... pkt") and the drops of all its
// queueing disciplines.
func qdiscStats(t *testing.T) (sent, dropped float64) {
	t.Helper()
	out, err := exec.Command("tc", "-s", "qdisc", "show", "dev", tapName).CombinedOutput()
	if err != nil {
		t.Fatalf("tc -s qdisc show dev %s: %v %s", tapName, err, out)
	}
	if m := regexp.MustCompile(`Sent \d+ bytes (\d+) pkt`).FindStringSubmatch(string(out)); m != nil {
		sent, _ = strconv.ParseFloat(m[1], 64)
	} else {
		t.Fatalf("tc -s qdisc show dev %s: no Sent line in %q", tapName, out)
	}
	for _, m := range regexp.MustCompile(`dropped (\d+)`).FindAllStringSubmatch(string(out), -1) {
		v, _ := strconv.ParseFloat(m[1], 64)
		dropped += v
	}
	return sent, dropped
}

// tapGap waits until QEMU has read everything the tap holds (the frames
// the queueing discipline handed to the tap and the frames QEMU read
// from it both unchanged for 2 s, at most limit) and returns the frames
// the tap took from its queue and neither handed to QEMU (tx_packets
// counts QEMU's reads) nor counted as dropped: frames another reader of
// the tap took (a QEMU started with fd 0 closed opens its tap as fd 0
// and its -serial stdio console then reads frames from it, one EINVAL
// read each). Nothing else may send to the guest while it waits, or the
// gap includes those frames.
func tapGap(t *testing.T, limit time.Duration) float64 {
	t.Helper()
	read := func() (sent, rx, gap float64) {
		sent, _ = qdiscStats(t)
		rx = tapStat(t, "tx_packets")
		return sent, rx, sent - rx - tapDrops(t)
	}
	sent, rx, gap := read()
	stable := time.Now()
	for end := time.Now().Add(limit); time.Now().Before(end) && time.Since(stable) < 2*time.Second; {
		time.Sleep(100 * time.Millisecond)
		s, r, g := read()
		if s != sent || r != rx {
			sent, rx, stable = s, r, time.Now()
		}
		gap = g
	}
	return gap
}

// sumStats adds the counters whose path ends in one of the suffixes.
func sumStats(m map[string]float64, suffixes ...string) float64 {
	var s float64
	for k, v := range m {
		for _, suf := range suffixes {
			if strings.HasSuffix(k, suf) {
				s += v
				break
			}
		}
	}
	return s
}

func TestBadInputIPv6(t *testing.T) {
	setupIPv6(t)
	static, ok := guestStatic6(t)
	if !ok {
		t.Fatal("the image has no static IPv6 address (built with IP6=); the bad-input cases need the default")
	}
	host := netip.MustParseAddr("fd00::10:2")
	ll := eui64(netip.MustParsePrefix("fe80::/64"), guestMAC)
	waitPing6(t, static.String(), 30*time.Second)
	raw := openRaw(t)
	baseline := quietInUse(t)
	t.Logf("pool in_use idle baseline: %v", baseline)

	// statsNoise is the QEMU-loss estimate of a group that sends
	// nothing: the /stats connections' own frames the tap has counted
	// but the guest's snapshot has not. The median of five.
	var noise []float64
	for range 5 {
		tx0 := tapStat(t, "tx_packets")
		a := stats(t)
		time.Sleep(100 * time.Millisecond)
		b := stats(t)
		noise = append(noise, (tapStat(t, "tx_packets")-tx0)-(b["nic.rx.packets"]-a["nic.rx.packets"]))
	}
	slices.Sort(noise)
	statsNoise := noise[2]
	t.Logf("stats connection noise: %v frames (of %v)", statsNoise, noise)
	// slack is how far the QEMU-loss estimate may be off: the noise
	// varies by a frame or two between readings (measured under TCG).
	const slack = 2

	// group sends n frames and checks the counters named by suffixes
	// (drops and invalid input when none are named) rose by n or more.
	group := func(name string, n int, frame func(i int) []byte, check func(), suffixes ...string) {
		t.Helper()
		count := func(m map[string]float64) float64 {
			if len(suffixes) == 0 {
				return dropTotal(m)
			}
			return sumStats(m, suffixes...)
		}
		tapBefore, tapTxBefore := tapTxLost(t), tapStat(t, "tx_packets")
		first := stats(t)
		before := count(first)
		// No /stats request from here until gap1: the tap's silent
		// losses in between are this group's frames.
		gap0 := tapGap(t, 10*time.Second)
		start := time.Now()
		for i := range n {
			raw.send(t, frame(i))
			if i%8 == 7 {
				// Paced so a TCG guest mostly keeps up; what the
				// tap still drops is counted there (tapDropped).
				time.Sleep(10 * time.Millisecond)
			}
		}
		if check != nil {
			check()
		}
		// A slow guest (arm under TCG) may still be working through
		// a flood that waits in the tap: up to 30 s for QEMU to read
		// it all.
		gap1 := tapGap(t, 30*time.Second)
		// A frame is counted by the guest, or it never reached the
		// guest's driver: dropped by the host's queue on the tap or by
		// the tap (their counters), or passed to QEMU and lost there:
		// the tap's sent frames less those the driver received, less
		// statsNoise (the frames of the /stats connections themselves
		// that fall between the tap's and the guest's readings),
		// within slack. A frame the tap loses without a count
		// (tapLost) is a failure of its own.
		var after, tapDropped, lost, tapLost float64
		var last map[string]float64
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
			last = stats(t)
			tapDropped = tapTxLost(t) - tapBefore
			lost = max(0, (tapStat(t, "tx_packets")-tapTxBefore)-(last["nic.rx.packets"]-first["nic.rx.packets"])-statsNoise)
			// The tap's silent losses: measured with nothing else
			// sending (gap1), never more than the gap now, so a
			// frame still on its way at gap1 is not taken as lost.
			tapLost = min(gap1, tapGap(t, 0)) - gap0
			if after = count(last); after-before+tapDropped+lost+slack >= float64(n) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		msg := fmt.Sprintf("%s: %d frames in %v, counters %v rose by %v, the host queue and tap dropped %v, the tap lost %v uncounted, QEMU lost %v (%s)",
			name, n, time.Since(start).Round(time.Millisecond), suffixes, after-before, tapDropped, tapLost, lost, dropDiff(first, last))
		if tapLost > 0 {
			// Nothing but QEMU's network backend may read the tap:
			// another reader takes frames no counter shows (a QEMU
			// started with fd 0 closed has the tap as its stdin).
			t.Errorf("%s: the tap lost %v frames without counting them: something besides QEMU's tap backend reads it", name, tapLost)
		}
		if after-before+tapDropped+lost+slack < float64(n) {
			t.Error(msg + "\nall counters that changed: " + allDiff(first, last))
		} else {
			t.Log(msg)
		}
	}
	noEchoReply := func(id uint16) func() {
		return func() {
			if got := raw.capture(500*time.Millisecond, isEcho6Reply(id)); len(got) > 0 {
				t.Errorf("guest answered %d bad echo requests (id %#x)", len(got), id)
			}
		}
	}

	// Runts: a header cut short, and a payload length that lies.
	group("runt IPv6", 20, func(i int) []byte {
		f := raw.ip6Frame(nil, host, static, 58, 64, icmp6(host, static, 128, 0, echo6(0x6101, uint16(i), 8)))
		switch i % 4 {
		case 0:
			return f[:14+20] // half an IPv6 header
		case 1:
			return f[:14+40+2] // ICMPv6 cut short
		case 2:
			binary.BigEndian.PutUint16(f[14+4:], 1000) // payload length beyond the frame
			return f
		default:
			binary.BigEndian.PutUint16(f[14+4:], 2) // payload length shorter than ICMPv6
			return f
		}
	}, noEchoReply(0x6101))

	// Lying extension headers: a hop-by-hop or destination options
	// header whose length runs past the packet, a truncated fragment
	// header, a routing header cut short.
	group("lying extension headers", 20, func(i int) []byte {
		inner := icmp6(host, static, 128, 0, echo6(0x6102, uint16(i), 8))
		var nh byte
		var ext []byte
		switch i % 4 {
		case 0:
			nh, ext = 0, []byte{58, 200, 1, 4, 0, 0, 0, 0} // hop-by-hop, 201×8 bytes
		case 1:
			nh, ext = 60, []byte{58, 255, 1, 4, 0, 0, 0, 0} // destination options
		case 2:
			nh, ext = 44, []byte{58, 0, 0} // fragment header, 3 of 8 bytes
			inner = nil
		default:
			nh, ext = 43, []byte{58, 16, 0, 1} // routing header cut short
			inner = nil
		}
		return raw.ip6Frame(nil, host, static, nh, 64, append(ext, inner...))
	}, noEchoReply(0x6102))

	// Bad ICMPv6 checksum on an otherwise valid echo request.
	group("bad ICMPv6 checksum", 10, func(i int) []byte {
		m := icmp6(host, static, 128, 0, echo6(0x6103, uint16(i), 32))
		m[2] ^= 0x5a
		return raw.ip6Frame(nil, host, static, 58, 64, m)
	}, noEchoReply(0x6103))

	// Fragment flood: first fragments that never complete, each its own
	// datagram, and overlapping pairs. gVisor holds them up to its
	// reassembly memory limit and times them out; all are counted as
	// received IPv6 packets.
	group("fragment flood", 600, func(i int) []byte {
		frag := make([]byte, 8+48)
		frag[0] = 17 // UDP inside
		off := uint16(0)
		if i%3 == 2 {
			off = 1 // overlaps the fragment before it
		}
		binary.BigEndian.PutUint16(frag[2:], off<<3|1) // more fragments
		binary.BigEndian.PutUint32(frag[4:], uint32(0x6104_0000+i/3*3))
		return raw.ip6Frame(nil, host, static, 44, 64, frag)
	}, nil, "ip.packets_received")

	// NDP that must be ignored (RFC 4861 section 7.1): hop limit below
	// 255, an ICMP code other than 0, an option of length 0, a message
	// cut short. Then neighbour advertisements claiming the guest's own
	// addresses for another MAC (a spoofer), and one for a multicast
	// target: the guest keeps its addresses and keeps answering.
	spoofMAC := net.HardwareAddr{0x02, 0xba, 0xd0, 0, 0, 1}
	group("invalid NDP", 40, func(i int) []byte {
		tgt := static.As16()
		ns := make([]byte, 4+16+8)
		copy(ns[4:], tgt[:])
		ns[20], ns[21] = 1, 1 // source link-layer address option
		copy(ns[22:], spoofMAC)
		code, hop, typ := byte(0), byte(255), byte(135)
		switch i % 4 {
		case 0:
			hop = 64
		case 1:
			code = 1
		case 2:
			ns[21] = 0 // option length 0
		default:
			ns = ns[:10] // shorter than a solicitation
		}
		// The solicited-node group of the static address (RFC 4291
		// section 2.7.1), which the guest has joined.
		dst := netip.AddrFrom16([16]byte{0: 0xff, 1: 0x02, 11: 1, 12: 0xff, 13: tgt[13], 14: tgt[14], 15: tgt[15]})
		return raw.ip6Frame(spoofMAC, host, dst, 58, hop, icmp6(host, dst, typ, code, ns))
	}, nil)
	// Override claims on the guest's addresses, well formed.
	for _, a := range []netip.Addr{static, ll, netip.MustParseAddr("ff02::1")} {
		tgt := a.As16()
		na := make([]byte, 4+16+8)
		na[0] = 0x20 // override
		copy(na[4:], tgt[:])
		na[20], na[21] = 2, 1 // target link-layer address option
		copy(na[22:], spoofMAC)
		for range 5 {
			raw.send(t, raw.ip6Frame(spoofMAC, netip.MustParseAddr("fe80::bad:1"), netip.MustParseAddr("ff02::1"), 58, 255,
				icmp6(netip.MustParseAddr("fe80::bad:1"), netip.MustParseAddr("ff02::1"), 136, 0, na)))
		}
	}

	// RA flood: router advertisements from 300 spoofed link-local routers
	// for the RA prefix. gVisor keeps at most 10 routers and prefixes;
	// the rest are counted and forgotten. The routers then withdraw
	// (router lifetime 0) so the guest is left as before.
	const routers = 300
	ra := func(i int, lifetime uint16) []byte {
		src := netip.AddrFrom16([16]byte{0: 0xfe, 1: 0x80, 12: 0x0b, 13: 0xad, 14: byte(i >> 8), 15: byte(i)})
		mac := net.HardwareAddr{0x02, 0xba, 0xd1, 0, byte(i >> 8), byte(i)}
		body := make([]byte, 12+32)
		body[0] = 64
		binary.BigEndian.PutUint16(body[2:], lifetime)
		opt := body[12:]
		opt[0], opt[1], opt[2], opt[3] = 3, 4, 64, 0xc0
		binary.BigEndian.PutUint32(opt[4:], 600)
		binary.BigEndian.PutUint32(opt[8:], 300)
		p := raPrefix.Addr().As16()
		copy(opt[16:], p[:])
		dst := netip.MustParseAddr("ff02::1")
		return raw.ip6Frame(mac, src, dst, 58, 255, icmp6(src, dst, 134, 0, body))
	}
	group("RA flood", routers, func(i int) []byte { return ra(i, 1800) }, nil, "icmp.v6.packets_received.router_advert")
	group("RA withdrawal", routers, func(i int) []byte { return ra(i, 0) }, nil, "icmp.v6.packets_received.router_advert")

	// ICMPv6 error storm: destination unreachable, packet too big (an MTU
	// below the IPv6 minimum), time exceeded and parameter problem, each
	// quoting a packet the guest might have sent to the host. None may
	// be answered with an error (RFC 4443 section 2.4 e).
	group("ICMPv6 error storm", 800, func(i int) []byte {
		quoted := make([]byte, 40+8)
		quoted[0] = 6 << 4
		binary.BigEndian.PutUint16(quoted[4:], 8)
		quoted[6], quoted[7] = 17, 64
		s, d := static.As16(), host.As16()
		copy(quoted[8:24], s[:])
		copy(quoted[24:40], d[:])
		binary.BigEndian.PutUint16(quoted[40:], 7)
		binary.BigEndian.PutUint16(quoted[42:], uint16(40000+i))
		body := append(make([]byte, 4), quoted...)
		typ, code := byte(1), byte(4) // port unreachable
		switch i % 4 {
		case 1:
			typ, code = 2, 0
			binary.BigEndian.PutUint32(body, 100) // MTU 100 < 1280
		case 2:
			typ, code = 3, 0
		case 3:
			typ, code = 4, 0
			binary.BigEndian.PutUint32(body, 6)
		}
		return raw.ip6Frame(nil, host, static, 58, 64, icmp6(host, static, typ, code, body))
	}, func() {
		if got := raw.capture(500*time.Millisecond, func(f []byte) bool {
			return len(f) >= 55 && binary.BigEndian.Uint16(f[12:]) == etherIP6 && f[20] == 58 && f[54] < 128
		}); len(got) > 0 {
			t.Errorf("guest answered the error storm with %d ICMPv6 errors", len(got))
		}
	}, "icmp.v6.packets_received.dst_unreachable", "icmp.v6.packets_received.packet_too_big",
		"icmp.v6.packets_received.time_exceeded", "icmp.v6.packets_received.param_problem")

	// A valid echo request built the same way is answered.
	raw.send(t, raw.ip6Frame(nil, host, static, 58, 64, icmp6(host, static, 128, 0, echo6(0x6105, 1, 32))))
	if got := raw.capture(time.Second, isEcho6Reply(0x6105)); len(got) != 1 {
		t.Errorf("valid raw ICMPv6 echo request: %d replies, want 1", len(got))
	}

	t.Run("ServicesStillAnswer", func(t *testing.T) {
		checkServices(t)
		for _, a := range []string{static.String(), ll.String() + "%" + tapName} {
			if out, err := exec.Command("ping", "-6", "-n", "-c", "3", "-i", "0.2", "-W", "2", a).CombinedOutput(); err != nil {
				t.Errorf("ping -6 %s: %v\n%s", a, err, out)
			}
		}
		// A full-size transfer: the packet-too-big storm must not have
		// pushed the path MTU below 1280 or wedged TCP.
		if err := echoTransfer(net.JoinHostPort(static.String(), "7"), 1<<20, 11, time.Minute); err != nil {
			t.Errorf("TCP echo over IPv6: %v", err)
		}
		if err := udpEcho6(net.JoinHostPort(static.String(), "7"), 3, 1452); err != nil {
			t.Errorf("UDP echo over IPv6: %v", err)
		}
		if addrs := fmt.Sprint(guestAddrs6()); strings.Contains(addrs, "bad") {
			t.Errorf("guest addresses after the flood: %s", addrs)
		}
	})

	t.Run("PoolBackToBaseline", func(t *testing.T) { poolBackToBaseline(t, baseline) })
}
