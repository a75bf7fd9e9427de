package stack

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/tamanet/tamanet/nic/nictest"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

var (
	fuzzOurMAC  = tcpip.LinkAddress([]byte{2, 0, 0, 0, 0, 1})
	fuzzPeerMAC = tcpip.LinkAddress([]byte{2, 0, 0, 0, 0, 2})
	fuzzOurIP   = tcpip.AddrFrom4([4]byte{10, 0, 0, 1})
	fuzzPeerIP  = tcpip.AddrFrom4([4]byte{10, 0, 0, 2})
)

func ethFrame(dst tcpip.LinkAddress, typ tcpip.NetworkProtocolNumber, payload []byte) []byte {
	f := make([]byte, header.EthernetMinimumSize+len(payload))
	header.Ethernet(f).Encode(&header.EthernetFields{SrcAddr: fuzzPeerMAC, DstAddr: dst, Type: typ})
	copy(f[header.EthernetMinimumSize:], payload)
	return f
}

func ipv4Packet(proto tcpip.TransportProtocolNumber, transport []byte) []byte {
	p := make([]byte, header.IPv4MinimumSize+len(transport))
	ip := header.IPv4(p)
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(len(p)), TTL: 64, Protocol: uint8(proto),
		SrcAddr: fuzzPeerIP, DstAddr: fuzzOurIP,
	})
	ip.SetChecksum(^ip.CalculateChecksum())
	copy(p[header.IPv4MinimumSize:], transport)
	return p
}

// seedFrames are well-formed frames of each kind the stack answers: ARP
// request, ICMP echo, TCP SYN to the open port 7, UDP to port 7.
func seedFrames() [][]byte {
	arp := make([]byte, header.ARPSize)
	a := header.ARP(arp)
	a.SetIPv4OverEthernet()
	a.SetOp(header.ARPRequest)
	copy(a.HardwareAddressSender(), fuzzPeerMAC)
	copy(a.ProtocolAddressSender(), fuzzPeerIP.AsSlice())
	copy(a.ProtocolAddressTarget(), fuzzOurIP.AsSlice())

	icmp := make([]byte, header.ICMPv4MinimumSize+8)
	ic := header.ICMPv4(icmp)
	ic.SetType(header.ICMPv4Echo)
	ic.SetChecksum(^checksum.Checksum(icmp, 0))

	tcp := make([]byte, header.TCPMinimumSize)
	th := header.TCP(tcp)
	th.Encode(&header.TCPFields{SrcPort: 40000, DstPort: 7, SeqNum: 1, DataOffset: header.TCPMinimumSize, Flags: header.TCPFlagSyn, WindowSize: 65535})
	th.SetChecksum(^th.CalculateChecksum(header.PseudoHeaderChecksum(header.TCPProtocolNumber, fuzzPeerIP, fuzzOurIP, uint16(len(tcp)))))

	udp := make([]byte, header.UDPMinimumSize+4)
	uh := header.UDP(udp)
	uh.Encode(&header.UDPFields{SrcPort: 40000, DstPort: 7, Length: uint16(len(udp))})
	uh.SetChecksum(^uh.CalculateChecksum(checksum.Checksum(udp[header.UDPMinimumSize:], header.PseudoHeaderChecksum(header.UDPProtocolNumber, fuzzPeerIP, fuzzOurIP, uint16(len(udp))))))

	return [][]byte{
		ethFrame(header.EthernetBroadcastAddress, header.ARPProtocolNumber, arp),
		ethFrame(fuzzOurMAC, header.IPv4ProtocolNumber, ipv4Packet(header.ICMPv4ProtocolNumber, icmp)),
		ethFrame(fuzzOurMAC, header.IPv4ProtocolNumber, ipv4Packet(header.TCPProtocolNumber, tcp)),
		ethFrame(fuzzOurMAC, header.IPv4ProtocolNumber, ipv4Packet(header.UDPProtocolNumber, udp)),
		{1, 2, 3},
	}
}

// FuzzReceive feeds arbitrary frames through device, endpoint and gVisor:
// nothing panics, and every buffer (received, or taken for a reply) comes
// back to the pool.
func FuzzReceive(f *testing.F) {
	fuzzReceive(f, seedFrames(), Config{Addr: netip.MustParsePrefix("10.0.0.1/24")})
}

// fuzzReceive is FuzzReceive from the seeds given on a stack configured
// with cfg, with TCP and UDP listening on port 7.
func fuzzReceive(f *testing.F, seeds [][]byte, cfg Config) {
	for _, s := range seeds {
		f.Add(s)
	}
	pool := newPool(f, 128)
	dev := nictest.New(pool, nictest.Config{MAC: [6]byte([]byte(fuzzOurMAC)), RxRing: 32})
	s, err := New(dev, cfg)
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close()
	// Idle, only the posted receive ring is in use. Not measured after
	// New: with IPv6 the stack transmits (DAD, MLD) from New on.
	base := dev.Info().RxRing
	l, err := s.Listen("tcp", ":7")
	if err != nil {
		f.Fatal(err)
	}
	defer l.Close()
	pc, err := s.ListenPacket("udp", ":7")
	if err != nil {
		f.Fatal(err)
	}
	defer pc.Close()
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) > 2000 {
			return
		}
		dev.Inject(frame)
		// Receive and deliver, then reclaim the replies, which gVisor's
		// TCP may send from its own goroutines a little later.
		for deadline := time.Now().Add(2 * time.Second); ; {
			s.Poll()
			if pool.InUse() == base {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("pool in use %d after the frame, baseline %d", pool.InUse(), base)
			}
			time.Sleep(100 * time.Microsecond)
		}
	})
}

func TestSeedFramesAnswered(t *testing.T) {
	// The seeds are meaningful: each well-formed one makes the stack reply.
	pool := newPool(t, 128)
	dev := nictest.New(pool, nictest.Config{MAC: [6]byte([]byte(fuzzOurMAC)), RxRing: 32})
	var replies int // written by whichever goroutine transmits; read after polls
	var mu sync.Mutex
	dev.OnTransmit = func([]byte) { mu.Lock(); replies++; mu.Unlock() }
	count := func() int { mu.Lock(); defer mu.Unlock(); return replies }
	s, err := New(dev, Config{Addr: netip.MustParsePrefix("10.0.0.1/24")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	l, _ := s.Listen("tcp", ":7")
	defer l.Close()
	// Teach the stack the peer's MAC first, so replies need no ARP.
	s.GVisor().AddStaticNeighbor(NICID, header.IPv4ProtocolNumber, fuzzPeerIP, fuzzPeerMAC)
	for i, fr := range seedFrames()[:4] {
		before := count()
		dev.Inject(fr)
		for deadline := time.Now().Add(2 * time.Second); count() == before && time.Now().Before(deadline); {
			s.Poll()
			time.Sleep(100 * time.Microsecond)
		}
		time.Sleep(10 * time.Millisecond)
		s.Poll()
		// UDP to a port with no listener is answered too (ICMP port
		// unreachable), so every seed gets exactly one reply.
		if count() != before+1 {
			t.Errorf("seed %d: %d replies", i, count()-before)
		}
	}
}
