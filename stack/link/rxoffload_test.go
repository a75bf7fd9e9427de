package link

import (
	"encoding/binary"
	"testing"

	"github.com/tamanet/tamanet/nic/nictest"
	"github.com/tamanet/tamanet/nic/virtio/virtiotest"
	"github.com/tamanet/tamanet/stack/stacktest"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// tcp4Frame is an Ethernet frame to ourMAC carrying a TCP segment over
// IPv4 of n bytes in all, with a right IPv4 header checksum (the TCP
// checksum is left 0: nothing here verifies it). frag makes it a first
// fragment.
func tcp4Frame(n int, frag bool) []byte {
	f := frame(ourMAC, 0x0800, n-header.EthernetMinimumSize)
	ip := header.IPv4(f[header.EthernetMinimumSize:])
	fl := uint8(0)
	if frag {
		fl = header.IPv4FlagMoreFragments
	}
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(n - header.EthernetMinimumSize), TTL: 64, Flags: fl,
		Protocol: uint8(header.TCPProtocolNumber), SrcAddr: tcpip.AddrFrom4([4]byte{10, 0, 0, 2}), DstAddr: tcpip.AddrFrom4([4]byte{10, 0, 0, 1})})
	ip.SetChecksum(^ip.CalculateChecksum())
	tcp := f[header.EthernetMinimumSize+header.IPv4MinimumSize:]
	clear(tcp[:header.TCPMinimumSize])
	tcp[12] = 5 << 4
	return f
}

// newOffloadRig is newVirtioRig with every receive offload offered; vouch
// sets DATA_VALID on every frame.
func newOffloadRig(t testing.TB, vouch bool) *drvRig {
	t.Helper()
	pool, model, drv := stacktest.Virtio(t, virtiotest.Options{MAC: ourMAC, Features: virtiotest.Features | virtiotest.RxOffloads,
		MaxPacket: virtiotest.MaxGSOPacket, Backlog: 4, Vouch: vouch})
	t.Cleanup(drv.Close)
	return newDrvRig(t, pool, model, drv)
}

// TestVirtioOffloadReceiveAllocs: receive of one-buffer, 5-buffer and
// 34-buffer joined packets (the last copied into two views), vouched for,
// through driver, endpoint and the vouching check, allocates nothing; every
// packet is delivered whole and the pool is back at its baseline.
func TestVirtioOffloadReceiveAllocs(t *testing.T) {
	r := newOffloadRig(t, true)
	frames := [][]byte{tcp4Frame(1000, false), tcp4Frame(9000, false), tcp4Frame(14+65535, false)}
	bytes := 0
	// Every run moves one packet of each size, so that the one warm-up
	// run of nictest.Allocs, after it changed GOMAXPROCS, touches every
	// pool the runs use (sync.Pool allocates its per-P array on the
	// first use after such a change).
	step := func() {
		for _, f := range frames {
			bytes += len(f) - header.EthernetMinimumSize
			r.deliver(f)
			r.ep.Poll(64)
		}
	}
	for range allocWarmup {
		step()
	}
	base, n, b0 := r.pool.InUse(), r.d.n, r.d.bytes
	bytes = 0
	nictest.NoAllocs(t, allocRuns, "ReceivePacket (1, 5, 34 buffers) -> vouch -> deliver -> buffer return", step)
	if r.d.n-n != 3*(allocRuns+1) || r.d.bytes-b0 != bytes || r.pool.InUse() != base {
		t.Fatalf("delivered %d of %d packets, %d of %d bytes; pool in use %d (baseline %d)", r.d.n-n, 3*(allocRuns+1), r.d.bytes-b0, bytes, r.pool.InUse(), base)
	}
}

// capsDispatcher records whether the endpoint reported
// CapabilityRXChecksumOffload while delivering each packet, as gVisor's
// NIC reads it in DeliverNetworkPacket.
type capsDispatcher struct {
	ep  *Endpoint
	got []bool
}

func (d *capsDispatcher) DeliverNetworkPacket(_ tcpip.NetworkProtocolNumber, _ *stack.PacketBuffer) {
	d.got = append(d.got, d.ep.Capabilities()&stack.CapabilityRXChecksumOffload != 0)
}

func (d *capsDispatcher) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}

// TestRXChecksumOffloadPerPacket: the capability is on exactly while a
// packet the device vouched for and the endpoint accepts as vouched is
// delivered: TCP over IPv4 with DATA_VALID; not without it, not for a
// fragment, a bad IPv4 header checksum, ARP or ICMP; and off between
// deliveries.
func TestRXChecksumOffloadPerPacket(t *testing.T) {
	for _, vouch := range []bool{false, true} {
		r := newOffloadRig(t, vouch)
		d := &capsDispatcher{ep: r.ep}
		r.ep.Attach(d)
		badHdr := tcp4Frame(200, false)
		badHdr[header.EthernetMinimumSize+10] ^= 1
		icmp := tcp4Frame(200, false)
		icmp[header.EthernetMinimumSize+9] = uint8(header.ICMPv4ProtocolNumber)
		binary.BigEndian.PutUint16(icmp[header.EthernetMinimumSize+10:], 0)
		ip := header.IPv4(icmp[header.EthernetMinimumSize:])
		ip.SetChecksum(^ip.CalculateChecksum())
		in := []struct {
			name string
			f    []byte
			want bool
		}{
			{"tcp", tcp4Frame(200, false), vouch},
			{"joined tcp", tcp4Frame(30000, false), vouch},
			{"fragment", tcp4Frame(200, true), false},
			{"bad ip header checksum", badHdr, false},
			{"arp", frame(ourMAC, 0x0806, 28), false},
			{"icmp", icmp, false},
		}
		for _, c := range in {
			r.deliver(c.f)
		}
		r.ep.Poll(64)
		if len(d.got) != len(in) {
			t.Fatalf("vouch %v: %d delivered of %d", vouch, len(d.got), len(in))
		}
		for i, c := range in {
			if d.got[i] != c.want {
				t.Errorf("vouch %v, %s: RXChecksumOffload %v during delivery, want %v", vouch, c.name, d.got[i], c.want)
			}
		}
		if r.ep.Capabilities()&stack.CapabilityRXChecksumOffload != 0 {
			t.Errorf("vouch %v: RXChecksumOffload left on after delivery", vouch)
		}
		var st Stats
		r.ep.Stats(&st)
		if st.Rx.Drops.Total() != 0 {
			t.Errorf("drops %v", st.Rx.Drops)
		}
	}
}
