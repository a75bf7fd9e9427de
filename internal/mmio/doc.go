// Package mmio reads and writes memory-mapped device registers on tamago,
// where physical addresses equal virtual ones. Regs is a register window at a
// base address; it satisfies virtio.Regs:
//
//	drv, err := virtio.New(mmio.New(0xfeb02e00), arena, pool, virtio.Config{})
//
// 32-bit loads use sync/atomic (one aligned access, ordered with the ring
// index stores around it); stores and 8- and 16-bit loads are single plain accesses
// in functions the compiler does not inline, so they are neither merged nor
// elided. The implementation is built only for GOOS=tamago; elsewhere the
// package is empty.
package mmio
