// Package mmio reads and writes memory-mapped device registers on tamago,
// where physical addresses equal virtual ones. Regs is a register window at a
// base address; it satisfies virtio.Regs and enet.Regs:
//
//	drv, err := virtio.New(mmio.New(0xfeb02e00), arena, pool, virtio.Config{})
//
// 32-bit loads and stores use sync/atomic: each is one aligned access of
// the register's width, and the compiler neither merges, elides nor
// reorders it against the other atomic accesses around it (the ring index
// stores that must reach memory before a doorbell write). sync/atomic has
// no 8- or 16-bit operations, so the narrower loads (device configuration
// space) are single plain accesses in functions the compiler does not
// inline, so that they are not merged or elided either. Barriers a bus
// needs beyond that (a DSB before an ARM doorbell) are the caller's. The
// implementation is built only for GOOS=tamago; elsewhere the package is
// empty.
package mmio
