package stack

import (
	"net/netip"
	"testing"
	"time"

	"github.com/tamanet/tamanet/nic/nictest"
	"github.com/tamanet/tamanet/stack/stacktest"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

var (
	fuzzOurIP6  = tcpip.AddrFrom16(netip.MustParseAddr("fd00::10:1").As16())
	fuzzPeerIP6 = tcpip.AddrFrom16(netip.MustParseAddr("fd00::10:2").As16())
)

// ipv6Packet is IPv6 from the peer to dst with the given next header and
// payload; an ICMPv6 payload gets its checksum.
func ipv6Packet(dst tcpip.Address, nh uint8, hop uint8, payload []byte) []byte {
	p := make([]byte, header.IPv6MinimumSize+len(payload))
	header.IPv6(p).Encode(&header.IPv6Fields{PayloadLength: uint16(len(payload)), TransportProtocol: tcpip.TransportProtocolNumber(nh), HopLimit: hop, SrcAddr: fuzzPeerIP6, DstAddr: dst})
	copy(p[header.IPv6MinimumSize:], payload)
	if nh == uint8(header.ICMPv6ProtocolNumber) && len(payload) >= header.ICMPv6MinimumSize {
		h := header.ICMPv6(p[header.IPv6MinimumSize:])
		h.SetChecksum(header.ICMPv6Checksum(header.ICMPv6ChecksumParams{Header: h, Src: fuzzPeerIP6, Dst: dst}))
	}
	return p
}

// seedFrames6 are IPv6 frames of each kind the stack parses: echo request,
// neighbour solicitation for the static address, a router advertisement
// with a prefix, a fragment, a hop-by-hop header chain, an ICMPv6 error.
func seedFrames6() [][]byte {
	echo := make([]byte, 8+16)
	echo[0] = byte(header.ICMPv6EchoRequest)
	ns := make([]byte, 4+4+16+8)
	ns[0] = byte(header.ICMPv6NeighborSolicit)
	copy(ns[8:], fuzzOurIP6.AsSlice())
	ns[24], ns[25] = 1, 1
	copy(ns[26:], fuzzPeerMAC)
	ra := make([]byte, 16+32)
	ra[0] = byte(header.ICMPv6RouterAdvert)
	ra[4], ra[7] = 64, 60
	copy(ra[16:], []byte{3, 4, 64, 0xc0, 0, 0, 0x0e, 0x10, 0, 0, 0x07, 0x08})
	copy(ra[32:], netip.MustParseAddr("fd00:0:0:2::").AsSlice())
	frag := []byte{17, 0, 0, 1, 0, 0, 0, 9, 0x9c, 0x40, 0, 7, 0, 16, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8}
	hbh := append([]byte{58, 0, 1, 4, 0, 0, 0, 0}, echo...)
	unreach := make([]byte, 8+40+8)
	unreach[0], unreach[1] = byte(header.ICMPv6DstUnreachable), 4
	unreach[8] = 0x60
	allNodes := tcpip.LinkAddress([]byte{0x33, 0x33, 0, 0, 0, 1})
	snode := tcpip.LinkAddress([]byte{0x33, 0x33, 0xff, 0x10, 0, 1})
	return [][]byte{
		ethFrame(fuzzOurMAC, header.IPv6ProtocolNumber, ipv6Packet(fuzzOurIP6, 58, 64, echo)),
		ethFrame(snode, header.IPv6ProtocolNumber, ipv6Packet(header.SolicitedNodeAddr(fuzzOurIP6), 58, 255, ns)),
		ethFrame(allNodes, header.IPv6ProtocolNumber, ipv6Packet(header.IPv6AllNodesMulticastAddress, 58, 255, ra)),
		ethFrame(fuzzOurMAC, header.IPv6ProtocolNumber, ipv6Packet(fuzzOurIP6, 44, 64, frag)),
		ethFrame(fuzzOurMAC, header.IPv6ProtocolNumber, ipv6Packet(fuzzOurIP6, 0, 64, hbh)),
		ethFrame(fuzzOurMAC, header.IPv6ProtocolNumber, ipv6Packet(fuzzOurIP6, 58, 64, unreach)),
	}
}

// FuzzReceive6 is FuzzReceive with IPv6 on: arbitrary frames through
// device, endpoint and gVisor's IPv6, NDP and ICMPv6.
func FuzzReceive6(f *testing.F) {
	fuzzReceive(f, seedFrames6(), Config{Addr: netip.MustParsePrefix("10.0.0.1/24"), IPv6: true, Addr6: stacktest.Addr6A})
}

// TestSeedFrames6Answered: the echo request and the solicitation seeds are
// well formed (each gets an answer), so the fuzzer starts from frames the
// stack takes all the way in.
func TestSeedFrames6Answered(t *testing.T) {
	pool := newPool(t, 128)
	dev := nictest.New(pool, nictest.Config{MAC: [6]byte([]byte(fuzzOurMAC)), RxRing: 32})
	got := make(chan []byte, 64)
	dev.OnTransmit = func(f []byte) {
		select {
		case got <- append([]byte(nil), f...):
		default:
		}
	}
	s, err := New(dev, Config{Addr: netip.MustParsePrefix("10.0.0.1/24"), IPv6: true, Addr6: stacktest.Addr6A})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.GVisor().AddStaticNeighbor(NICID, header.IPv6ProtocolNumber, fuzzPeerIP6, fuzzPeerMAC)
	// DAD for the static address takes a second.
	deadline := time.Now().Add(5 * time.Second)
	for _, want := range []header.ICMPv6Type{header.ICMPv6EchoReply, header.ICMPv6NeighborAdvert} {
		fr := seedFrames6()[0]
		if want == header.ICMPv6NeighborAdvert {
			fr = seedFrames6()[1]
		}
		for answered := false; !answered; {
			if time.Now().After(deadline) {
				t.Fatalf("no ICMPv6 type %d answer", want)
			}
			dev.Inject(fr)
			for end := time.Now().Add(100 * time.Millisecond); time.Now().Before(end) && !answered; {
				s.Poll()
				select {
				case f := <-got:
					answered = len(f) > 54 && header.Ethernet(f).Type() == header.IPv6ProtocolNumber && f[20] == 58 && header.ICMPv6Type(f[54]) == want
				default:
					time.Sleep(time.Millisecond)
				}
			}
		}
	}
}
