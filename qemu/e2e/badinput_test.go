package e2e

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// rawSocket sends and captures Ethernet frames on the namespace's tap
// device (AF_PACKET), i.e. straight into the guest's NIC.
type rawSocket struct {
	fd      int
	ifindex int
	mac     net.HardwareAddr
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func openRaw(t *testing.T) *rawSocket {
	t.Helper()
	ifi, err := net.InterfaceByName(tapName)
	if err != nil {
		t.Fatalf("tap %q: %v", tapName, err)
	}
	fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_RAW|syscall.SOCK_CLOEXEC, int(htons(syscall.ETH_P_ALL)))
	if err != nil {
		t.Fatalf("AF_PACKET socket: %v", err)
	}
	sa := &syscall.SockaddrLinklayer{Protocol: htons(syscall.ETH_P_ALL), Ifindex: ifi.Index}
	if err := syscall.Bind(fd, sa); err != nil {
		syscall.Close(fd)
		t.Fatalf("bind AF_PACKET to %s: %v", tapName, err)
	}
	tv := syscall.NsecToTimeval(int64(50 * time.Millisecond))
	syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)
	r := &rawSocket{fd: fd, ifindex: ifi.Index, mac: ifi.HardwareAddr}
	t.Cleanup(func() { syscall.Close(fd) })
	return r
}

func (r *rawSocket) send(t *testing.T, frame []byte) {
	t.Helper()
	sa := &syscall.SockaddrLinklayer{Ifindex: r.ifindex, Halen: 6}
	copy(sa.Addr[:], guestMAC)
	if err := syscall.Sendto(r.fd, frame, 0, sa); err != nil {
		t.Fatalf("send %d-byte frame: %v", len(frame), err)
	}
}

// capture returns the frames the guest sent during d that match.
func (r *rawSocket) capture(d time.Duration, match func([]byte) bool) [][]byte {
	var got [][]byte
	buf := make([]byte, 4096)
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		n, from, err := syscall.Recvfrom(r.fd, buf, 0)
		if err != nil {
			continue
		}
		if ll, ok := from.(*syscall.SockaddrLinklayer); ok && ll.Pkttype == syscall.PACKET_OUTGOING {
			continue
		}
		f := buf[:n]
		if n >= 14 && net.HardwareAddr(f[6:12]).String() == guestMAC.String() && match(f) {
			got = append(got, append([]byte(nil), f...))
		}
	}
	return got
}

var (
	hostIP4  = netip.MustParseAddr("10.0.0.2").As4()
	etherIP4 = uint16(0x0800)
)

func checksum(b []byte, sum uint32) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// ipv4Frame builds Ethernet + IPv4 (+ payload) from the host to the guest
// with correct checksums.
func (r *rawSocket) ipv4Frame(proto byte, payload []byte) []byte {
	f := make([]byte, 14+20+len(payload))
	copy(f[0:6], guestMAC)
	copy(f[6:12], r.mac)
	binary.BigEndian.PutUint16(f[12:], etherIP4)
	ip := f[14:34]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+len(payload)))
	binary.BigEndian.PutUint16(ip[4:], 0x7a7a)
	ip[8] = 64
	ip[9] = proto
	copy(ip[12:16], hostIP4[:])
	g := netip.MustParseAddr(guestIP).As4()
	copy(ip[16:20], g[:])
	binary.BigEndian.PutUint16(ip[10:], checksum(ip, 0))
	copy(f[34:], payload)
	return f
}

func icmpEcho(id, seq uint16, size int) []byte {
	p := make([]byte, 8+size)
	p[0] = 8 // echo request (RFC 792)
	binary.BigEndian.PutUint16(p[4:], id)
	binary.BigEndian.PutUint16(p[6:], seq)
	for i := 8; i < len(p); i++ {
		p[i] = byte(i)
	}
	binary.BigEndian.PutUint16(p[2:], checksum(p, 0))
	return p
}

func tcpSYN(sport, dport uint16) []byte {
	p := make([]byte, 20)
	binary.BigEndian.PutUint16(p[0:], sport)
	binary.BigEndian.PutUint16(p[2:], dport)
	binary.BigEndian.PutUint32(p[4:], 0x01020304)
	p[12] = 5 << 4
	p[13] = 0x02 // SYN
	binary.BigEndian.PutUint16(p[14:], 65535)
	g := netip.MustParseAddr(guestIP).As4()
	var pseudo [12]byte
	copy(pseudo[0:4], hostIP4[:])
	copy(pseudo[4:8], g[:])
	pseudo[9] = syscall.IPPROTO_TCP
	binary.BigEndian.PutUint16(pseudo[10:], uint16(len(p)))
	var s uint32
	for i := 0; i < 12; i += 2 {
		s += uint32(binary.BigEndian.Uint16(pseudo[i:]))
	}
	binary.BigEndian.PutUint16(p[16:], checksum(p, s))
	return p
}

// isEchoReply matches an ICMP echo reply with the given id.
func isEchoReply(id uint16) func([]byte) bool {
	return func(f []byte) bool {
		return len(f) >= 42 && binary.BigEndian.Uint16(f[12:]) == etherIP4 && f[23] == 1 && f[34] == 0 && binary.BigEndian.Uint16(f[38:]) == id
	}
}

// isTCPTo matches any TCP segment from the guest to port.
func isTCPTo(port uint16) func([]byte) bool {
	return func(f []byte) bool {
		return len(f) >= 54 && binary.BigEndian.Uint16(f[12:]) == etherIP4 && f[23] == syscall.IPPROTO_TCP && binary.BigEndian.Uint16(f[36:]) == port
	}
}

// dropTotal sums every counter /stats keeps for discarded input: the
// driver's and endpoint's drops by cause, and gVisor's malformed, invalid
// and checksum-error counters.
func dropTotal(m map[string]float64) float64 {
	var s float64
	for k, v := range m {
		parts := strings.Split(k, ".")
		last := parts[len(parts)-1]
		switch {
		case containsPart(parts, "drops"),
			strings.Contains(last, "malformed"),
			strings.Contains(last, "checksum_errors"),
			strings.HasPrefix(last, "invalid"):
			s += v
		}
	}
	return s
}

// dropDiff lists the drop counters that changed from a to b.
func dropDiff(a, b map[string]float64) string {
	var out []string
	for k, v := range b {
		if v != a[k] && dropTotal(map[string]float64{k: 1}) == 1 {
			out = append(out, fmt.Sprintf("%s +%v", k, v-a[k]))
		}
	}
	slices.Sort(out)
	return strings.Join(out, ", ")
}

func containsPart(parts []string, p string) bool {
	for _, x := range parts {
		if x == p {
			return true
		}
	}
	return false
}

// tapStats are the host tap's transmit counters: frames QEMU read from it
// and frames it dropped for want of room.
type tapStats struct{ txPackets, txDropped float64 }

func tapCounters(t *testing.T) tapStats {
	t.Helper()
	return tapStats{tapStat(t, "tx_packets"), tapStat(t, "tx_dropped")}
}

// tapStat reads one of the tap's counters (the test runs in the
// namespace, whose /sys shows its own devices): tx_packets (frames QEMU
// read from it), tx_dropped (frames dropped because QEMU did not read
// them), rx_packets (frames QEMU wrote to it).
func tapStat(t *testing.T, name string) float64 {
	t.Helper()
	b, err := os.ReadFile("/sys/class/net/" + tapName + "/statistics/" + name)
	if err != nil {
		t.Fatalf("tap counter %s: %v", name, err)
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
	if err != nil {
		t.Fatalf("tap counter %s %q: %v", name, b, err)
	}
	return v
}

// guestRxFrames is every frame the guest's driver took off its receive
// ring: passed up or dropped by cause (no_buffer counts refills, not
// frames).
func guestRxFrames(m map[string]float64) float64 {
	n, _ := stat(m, "nic.rx.packets")
	for k, v := range m {
		if strings.HasPrefix(k, "nic.rx.drops.") && k != "nic.rx.drops.no_buffer" {
			n += v
		}
	}
	return n
}

// quietInUse returns the pool's in-use count once it has been the same for
// several reads in a row (idle: only the posted receive buffers).
func quietInUse(t *testing.T) float64 {
	t.Helper()
	prev := -1.0
	same := 0
	for try := 0; try < 40; try++ {
		v := mustStat(t, stats(t), "pool.in_use")
		if v == prev {
			if same++; same >= 2 {
				return v
			}
		} else {
			same = 0
		}
		prev = v
		time.Sleep(250 * time.Millisecond)
	}
	return prev
}

func TestBadInput(t *testing.T) {
	needGuest(t)
	if guestMAC == nil {
		t.Fatal("guest MAC unknown")
	}
	raw := openRaw(t)
	baseline := quietInUse(t)
	t.Logf("pool in_use idle baseline: %v", baseline)

	// Each group is followed by /stats reads until its drops are counted
	// (up to 2 s); nothing is re-sent. Frames reach the guest in the
	// order sent, ahead of the /stats request that follows them, and the
	// guest counts each frame before it reads the next, so a shortfall
	// is a frame the guest did not count or one lost before it. The
	// message gives the tap's drops and the frame counts around the group
	// to help tell which.
	group := func(name string, n int, frames func(i int) []byte, check func()) {
		t.Helper()
		tap0 := tapCounters(t)
		first := stats(t)
		before := dropTotal(first)
		for i := range n {
			raw.send(t, frames(i))
		}
		if check != nil {
			check()
		}
		var after float64
		var last map[string]float64
		for try := 0; try < 20; try++ {
			last = stats(t)
			if after = dropTotal(last); after-before >= float64(n) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if after-before < float64(n) {
			tap1 := tapCounters(t)
			t.Errorf("%s: %d frames sent, drop counters rose by %v (%s); meanwhile the guest's driver took %v frames, "+
				"QEMU read %v from the tap and the tap dropped %v (HTTP /stats traffic included)",
				name, n, after-before, dropDiff(first, last), guestRxFrames(last)-guestRxFrames(first),
				tap1.txPackets-tap0.txPackets, tap1.txDropped-tap0.txDropped)
		} else {
			t.Logf("%s: %d frames sent, drop counters rose by %v (%s)", name, n, after-before, dropDiff(first, last))
		}
	}

	// Runt frames: a bare Ethernet header and headers cut short, the
	// least AF_PACKET will send (14 bytes) and up.
	group("runt frames", 12, func(i int) []byte {
		f := raw.ipv4Frame(1, icmpEcho(0x5201, uint16(i), 0))
		switch i % 3 {
		case 0:
			return f[:14]
		case 1:
			return f[:14+10] // half an IPv4 header
		default:
			return f[:14+20+2] // IPv4 header, truncated ICMP
		}
	}, nil)

	// Bad IPv4 header checksum on an otherwise valid echo request: the
	// guest must not answer it.
	const badIPID = 0x5202
	group("bad IPv4 checksum", 10, func(i int) []byte {
		f := raw.ipv4Frame(1, icmpEcho(badIPID, uint16(i), 32))
		f[14+10] ^= 0x5a
		return f
	}, func() {
		if got := raw.capture(500*time.Millisecond, isEchoReply(badIPID)); len(got) > 0 {
			t.Errorf("guest answered %d echo requests with a bad IPv4 checksum", len(got))
		}
	})

	// Bad TCP checksum on a SYN to the echo port: no SYN-ACK may come.
	const badTCPPort = 40777
	group("bad TCP checksum", 10, func(i int) []byte {
		seg := tcpSYN(badTCPPort+uint16(i), echoPort)
		seg[16] ^= 0x33
		return raw.ipv4Frame(syscall.IPPROTO_TCP, seg)
	}, func() {
		if got := raw.capture(500*time.Millisecond, func(f []byte) bool {
			for i := range uint16(10) {
				if isTCPTo(badTCPPort + i)(f) {
					return true
				}
			}
			return false
		}); len(got) > 0 {
			t.Errorf("guest answered %d SYNs with a bad TCP checksum", len(got))
		}
	})

	// Oversize: a 1600-byte frame, more than the 1514 an untagged
	// Ethernet frame may carry. The tap's MTU is raised for the moment
	// it takes to send it.
	const oversizeID = 0x5203
	if out, err := exec.Command("ip", "link", "set", tapName, "mtu", "2000").CombinedOutput(); err != nil {
		t.Fatalf("raise %s MTU: %v %s", tapName, err, out)
	}
	group("oversize frames", 4, func(i int) []byte {
		return raw.ipv4Frame(1, icmpEcho(oversizeID, uint16(i), 1600-14-20-8))
	}, func() {
		if got := raw.capture(500*time.Millisecond, isEchoReply(oversizeID)); len(got) > 0 {
			t.Errorf("guest answered %d oversize frames", len(got))
		}
	})
	if out, err := exec.Command("ip", "link", "set", tapName, "mtu", "1500").CombinedOutput(); err != nil {
		t.Fatalf("restore %s MTU: %v %s", tapName, err, out)
	}

	// A valid echo request built the same way is answered: the frames
	// above were refused for their faults, not for how they were made.
	raw.send(t, raw.ipv4Frame(1, icmpEcho(0x5204, 1, 32)))
	if got := raw.capture(time.Second, isEchoReply(0x5204)); len(got) != 1 {
		t.Errorf("valid raw echo request: %d replies, want 1", len(got))
	}

	t.Run("SYNToClosedPortGetsRST", func(t *testing.T) {
		_, err := net.DialTimeout("tcp", guestAddr(4242), 10*time.Second)
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("dial closed port: %v, want connection refused (RST)", err)
		}
	})
	t.Run("UDPToClosedPortGetsPortUnreachable", func(t *testing.T) {
		c, err := net.Dial("udp", guestAddr(4242))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// Linux reports an ICMP port unreachable for a connected UDP
		// socket as ECONNREFUSED on the next read.
		var last error
		for try := 0; try < 3; try++ {
			c.Write([]byte("anyone there?"))
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			_, last = c.Read(make([]byte, 64))
			if errors.Is(last, syscall.ECONNREFUSED) {
				return
			}
		}
		t.Fatalf("read after datagram to closed port: %v, want connection refused (ICMP port unreachable)", last)
	})

	t.Run("ServicesStillAnswer", func(t *testing.T) {
		checkServices(t)
	})

	t.Run("PoolBackToBaseline", func(t *testing.T) { poolBackToBaseline(t, baseline) })
}

// poolBackToBaseline waits up to 10 s for the pool's in-use count to fall
// back to baseline (the idle occupancy, quietInUse) and fails if it does
// not: a buffer the bad input leaked.
func poolBackToBaseline(t *testing.T, baseline float64) {
	t.Helper()
	var v float64
	for try := 0; try < 40; try++ {
		if v = mustStat(t, stats(t), "pool.in_use"); v <= baseline {
			t.Logf("pool in_use %v (baseline %v)", v, baseline)
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("pool in_use %v after the bad input, idle baseline %v", v, baseline)
}

// checkServices does one quick exchange with every service.
func checkServices(t *testing.T) {
	t.Helper()
	if out, err := exec.Command("ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", guestIP).CombinedOutput(); err != nil {
		t.Errorf("ping: %v\n%s", err, out)
	}
	if err := echoTransfer(guestAddr(echoPort), 100<<10, 99, 30*time.Second); err != nil {
		t.Errorf("TCP echo: %v", err)
	}
	if _, _, _, err := udpRR(5, 100); err != nil {
		t.Errorf("UDP echo: %v", err)
	}
	if _, err := upload(1 << 20); err != nil {
		t.Errorf("discard: %v", err)
	}
	if _, err := download(1 << 20); err != nil {
		t.Errorf("chargen: %v", err)
	}
	if _, err := fetchStats(); err != nil {
		t.Errorf("HTTP /stats: %v", err)
	}
}
