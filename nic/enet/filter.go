package enet

import (
	"hash/crc32"

	"github.com/tamanet/tamanet/nic"
)

// The group hash filter (i.MX6UL RM chapter 22, GAUR/GALR and "Hash table
// algorithm"): the MAC drops a multicast frame unless the bit its
// destination address hashes to is set in the 64-bit table GAUR:GALR
// (broadcast always passes, and everything with RCR.PROM). The hash is the
// top 6 bits of the CRC-32 the MAC computes over the 6 destination bytes,
// taken from the CRC register before the final inversion that makes the
// FCS; bit 5 picks GAUR (1) or GALR (0), bits 4:0 the bit in it. Linux's
// fec driver programs the same table the same way.

var _ nic.GroupFilter = (*Driver)(nil)

// GroupHash returns the group hash table bit (0..63) for the multicast
// address mac: bit n is bit n-32 of GAUR for n >= 32, else bit n of GALR.
func GroupHash(mac [6]byte) uint {
	// crc32.ChecksumIEEE inverts its result; the MAC's register holds
	// the value before that.
	return uint(^crc32.ChecksumIEEE(mac[:]) >> 26)
}

// GroupTable returns the GAUR:GALR table that passes every group address in
// groups (entries that are not group addresses are ignored).
func GroupTable(groups [][6]byte) uint64 {
	var t uint64
	for _, g := range groups {
		if g[0]&1 != 0 {
			t |= 1 << GroupHash(g)
		}
	}
	return t
}

// SetGroups implements nic.GroupFilter: it programs the group hash table
// for groups and keeps it, so initMAC (which New and every MAC restart
// run) writes it again. The stack calls it with the transmit side
// held, on the receive goroutine.
func (d *Driver) SetGroups(groups [][6]byte) {
	d.groupTable.Store(GroupTable(groups))
	d.writeGroupTable()
}

// writeGroupTable writes the kept table into GAUR and GALR.
func (d *Driver) writeGroupTable() {
	t := d.groupTable.Load()
	d.regs.Write32(RegGAUR, uint32(t>>32))
	d.regs.Write32(RegGALR, uint32(t))
}
