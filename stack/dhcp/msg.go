package dhcp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/tamanet/tamanet/stack"
)

// Ports (RFC 2131 §4.1).
const (
	ServerPort = 67
	ClientPort = 68
)

// flagBroadcast asks the server to broadcast its replies (RFC 2131 §4.1,
// figure 2): until the client has an address its stack drops unicast IP
// packets to the offered one.
const flagBroadcast = 0x8000

// maxMessageSize is what the client tells the server it accepts (RFC 2132
// §9.10): an Ethernet MTU less the IPv4 and UDP headers.
const maxMessageSize = 1500 - 20 - 8

// infinite is the lease time meaning "never expires" (RFC 2131 §3.3).
const infinite = 0xffffffff

// params are the options the client asks for (RFC 2132 §9.8).
var params = []byte{
	byte(layers.DHCPOptSubnetMask), byte(layers.DHCPOptRouter), byte(layers.DHCPOptDNS),
	byte(layers.DHCPOptLeaseTime), byte(layers.DHCPOptT1), byte(layers.DHCPOptT2),
}

// outgoing describes a message the client sends.
type outgoing struct {
	typ       layers.DHCPMsgType
	xid       uint32
	secs      uint16
	broadcast bool       // set the BROADCAST flag
	ciaddr    netip.Addr // client address (RENEWING, REBINDING)
	requested netip.Addr // option 50 (SELECTING, INIT-REBOOT)
	server    netip.Addr // option 54 (SELECTING)
}

// encode builds the message with the library's DHCPv4 layer.
func (c *Client) encode(o outgoing) ([]byte, error) {
	d := &layers.DHCPv4{
		Operation:    layers.DHCPOpRequest,
		HardwareType: layers.LinkTypeEthernet,
		Xid:          o.xid,
		Secs:         o.secs,
		ClientHWAddr: c.cfg.MAC,
	}
	if o.broadcast {
		d.Flags = flagBroadcast
	}
	if o.ciaddr.IsValid() {
		d.ClientIP = o.ciaddr.AsSlice()
	}
	d.Options = append(d.Options, layers.NewDHCPOption(layers.DHCPOptMessageType, []byte{byte(o.typ)}))
	// Client identifier: hardware type 1 and the MAC (RFC 2132 §9.14).
	d.Options = append(d.Options, layers.NewDHCPOption(layers.DHCPOptClientID, append([]byte{1}, c.cfg.MAC...)))
	if o.requested.IsValid() {
		d.Options = append(d.Options, layers.NewDHCPOption(layers.DHCPOptRequestIP, o.requested.AsSlice()))
	}
	if o.server.IsValid() {
		d.Options = append(d.Options, layers.NewDHCPOption(layers.DHCPOptServerID, o.server.AsSlice()))
	}
	if o.typ == layers.DHCPMsgTypeDiscover || o.typ == layers.DHCPMsgTypeRequest {
		d.Options = append(d.Options,
			layers.NewDHCPOption(layers.DHCPOptParamsRequest, params),
			layers.NewDHCPOption(layers.DHCPOptMaxMessageSize, binary.BigEndian.AppendUint16(nil, maxMessageSize)))
		if c.cfg.Hostname != "" {
			d.Options = append(d.Options, layers.NewDHCPOption(layers.DHCPOptHostname, []byte(c.cfg.Hostname)))
		}
	}
	buf := gopacket.NewSerializeBuffer()
	if err := d.SerializeTo(buf, gopacket.SerializeOptions{FixLengths: true}); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// reply is a server message the client accepted as well formed.
type reply struct {
	typ    layers.DHCPMsgType
	xid    uint32
	yiaddr netip.Addr
	server netip.Addr   // option 54; invalid when absent
	mask   netip.Prefix // yiaddr with the prefix from option 1 (or its class)
	router netip.Addr   // first router inside mask; invalid when none
	dns    []netip.Addr
	lease  time.Duration // option 51; 0 when absent, -1 for infinite
	t1, t2 time.Duration // options 58, 59; 0 when absent
	msg    string        // option 56 (a NAK's reason)
}

// Reasons parse gives for dropping a message; each is counted.
var (
	errNotReply  = errors.New("not a BOOTREPLY for this client")
	errMalformed = errors.New("malformed message")
	errNoType    = errors.New("no DHCP message type")
	errBadAddr   = errors.New("offered address unusable")
)

// parse decodes a UDP payload from the server port. It accepts only
// replies to this client's hardware address and checks every field the
// client uses; it never keeps a reference to b.
func parse(b []byte, mac net.HardwareAddr) (reply, error) {
	var d layers.DHCPv4
	if err := d.DecodeFromBytes(b, gopacket.NilDecodeFeedback); err != nil {
		return reply{}, fmt.Errorf("%w: %v", errMalformed, err)
	}
	if d.Operation != layers.DHCPOpReply || d.HardwareType != layers.LinkTypeEthernet ||
		d.HardwareLen != 6 || string(d.ClientHWAddr) != string(mac) {
		return reply{}, errNotReply
	}
	r := reply{xid: d.Xid}
	r.yiaddr, _ = netip.AddrFromSlice(d.YourClientIP)
	var mask []byte
	for _, o := range d.Options {
		switch o.Type {
		case layers.DHCPOptMessageType:
			if len(o.Data) == 1 {
				r.typ = layers.DHCPMsgType(o.Data[0])
			}
		case layers.DHCPOptServerID:
			if len(o.Data) == 4 {
				r.server = netip.AddrFrom4([4]byte(o.Data))
			}
		case layers.DHCPOptSubnetMask:
			if len(o.Data) == 4 {
				mask = o.Data
			}
		case layers.DHCPOptRouter:
			for i := 0; i+4 <= len(o.Data); i += 4 {
				if a := netip.AddrFrom4([4]byte(o.Data[i:])); !r.router.IsValid() && unicast(a) {
					r.router = a
				}
			}
		case layers.DHCPOptDNS:
			for i := 0; i+4 <= len(o.Data) && len(r.dns) < MaxDNS; i += 4 {
				if a := netip.AddrFrom4([4]byte(o.Data[i:])); unicast(a) {
					r.dns = append(r.dns, a)
				}
			}
		case layers.DHCPOptLeaseTime:
			r.lease = seconds(o.Data)
		case layers.DHCPOptT1:
			r.t1 = seconds(o.Data)
		case layers.DHCPOptT2:
			r.t2 = seconds(o.Data)
		case layers.DHCPOptMessage:
			r.msg = printable(o.Data, 64)
		}
	}
	switch r.typ {
	case layers.DHCPMsgTypeOffer, layers.DHCPMsgTypeAck:
	case layers.DHCPMsgTypeNak:
		return r, nil
	case layers.DHCPMsgTypeUnspecified:
		return reply{}, errNoType
	default:
		return reply{}, errNotReply
	}
	if !r.yiaddr.Is4() || !unicast(r.yiaddr) {
		return reply{}, errBadAddr
	}
	bits := 0
	if mask != nil {
		m := binary.BigEndian.Uint32(mask)
		ones := 0
		for m&0x80000000 != 0 {
			ones, m = ones+1, m<<1
		}
		if m != 0 || ones == 0 || ones == 32 {
			// Non-contiguous (RFC 950 forbids them), /0 or /32.
			return reply{}, fmt.Errorf("%w: subnet mask %v", errMalformed, net.IP(mask))
		}
		bits = ones
	} else {
		bits = classful(r.yiaddr)
	}
	r.mask = netip.PrefixFrom(r.yiaddr, bits)
	// Only an address stack.SetIPv4 takes: not the subnet's network or
	// broadcast address.
	if (&stack.Config{Addr: r.mask}).Validate() != nil {
		return reply{}, errBadAddr
	}
	if r.router.IsValid() && (!r.mask.Contains(r.router) || r.router == r.yiaddr) {
		// A router off the local network cannot be reached; go without
		// a default route rather than fail the lease.
		r.router = netip.Addr{}
	}
	return r, nil
}

// seconds reads a 4-byte lease or renewal time; -1 is infinite, 0 absent.
func seconds(b []byte) time.Duration {
	if len(b) != 4 {
		return 0
	}
	v := binary.BigEndian.Uint32(b)
	if v == infinite {
		return -1
	}
	return time.Duration(v) * time.Second
}

// unicast reports whether a is usable as a host address.
func unicast(a netip.Addr) bool {
	return a.Is4() && !a.IsUnspecified() && !a.IsLoopback() && !a.IsMulticast() &&
		a != netip.AddrFrom4([4]byte{255, 255, 255, 255}) && a.As4()[0] != 0
}

// classful returns the natural mask length of a (RFC 1122 §3.3.1.1: a
// server that sends no subnet mask).
func classful(a netip.Addr) int {
	switch b := a.As4()[0]; {
	case b < 128:
		return 8
	case b < 192:
		return 16
	}
	return 24
}

// printable returns at most n printable ASCII characters of b.
func printable(b []byte, n int) string {
	out := make([]byte, 0, min(len(b), n))
	for _, c := range b {
		if len(out) == n {
			break
		}
		if c >= 0x20 && c < 0x7f {
			out = append(out, c)
		}
	}
	return string(out)
}
