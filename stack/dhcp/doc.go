// Package dhcp is a DHCPv4 client (RFC 2131) for a tamanet stack.
//
// Client is the protocol state machine with the clock outside it: the
// caller passes the time to Next and Handle, sends the packets Next returns
// and applies the events (Acquired, Renewed, Lost, FallbackDue). It goes
// INIT → SELECTING (DISCOVER, first usable OFFER) → REQUESTING (REQUEST) →
// BOUND (ACK), renews with the leasing server at T1 (RENEWING, unicast),
// asks any server at T2 (REBINDING, broadcast) and gives the address up at
// expiry or on a NAK. DISCOVER and REQUEST are retransmitted after 4, 8,
// 16, 32 and then every 64 s (±1 s); in RENEWING and REBINDING after half
// the time left, at least 60 s (RFC 2131 §4.1, §4.4.5). Tests drive it
// with a fake clock.
//
// Runner runs a Client on a *stack.Stack started with
// stack.Config{Dynamic: true}: it listens on the client port (68) of the
// interface, which receives the server's broadcast replies before there is
// an address, sends broadcasts as frames of their own from 0.0.0.0 and
// renewals through the socket, and applies a lease with Stack.SetIPv4
// (address, prefix, default route). With Options.Fallback, a static address
// is applied when no lease came within FallbackAfter or a lease was lost;
// a later lease replaces it. DNS servers from the lease are in Status and
// Client.Lease; package stack/resolve makes them the resolver's.
//
// Messages are encoded and decoded with the DHCPv4 layer of
// github.com/gopacket/gopacket/layers; this package checks every field it
// uses (the reply must be for this hardware address and transaction,
// addresses must be unicast and inside the offered subnet, masks
// contiguous) and counts what it drops.
//
// Not implemented: INIT-REBOOT (no lease survives a reboot), the ARP probe
// and DECLINE of an offered address in use (RFC 2131 §2.2 says SHOULD),
// DHCPINFORM, RELEASE on shutdown, classless static routes.
package dhcp
