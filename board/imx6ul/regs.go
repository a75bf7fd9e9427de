//go:build tamago && arm

package imx6ul

import "github.com/tamanet/tamanet/internal/mmio"

// Regs is a 32-bit register window at a physical address (tamago maps
// peripherals flat, physical equals virtual). It implements enet.Regs over
// internal/mmio, whose sync/atomic accesses the compiler neither merges,
// reorders nor drops; on ARMv7 each is one LDR or STR of the register's
// width between DMBs. Go's DMB is inner-shareable only, and the ENET's DMA
// is outside that domain, so every write is preceded by a DSB SY as well:
// descriptors and frames written to DMA memory have reached it before a
// doorbell (RDAR, TDAR) makes the MAC read them, as Linux's wmb() before
// writel ensures.
type Regs uintptr

// dsb is a full-system data synchronisation barrier (barrier_arm.s).
func dsb()

// Read32 reads the 32-bit register at byte offset off.
func (r Regs) Read32(off uint32) uint32 { return mmio.Regs{Base: uintptr(r)}.Read32(off) }

// Write32 writes v to the 32-bit register at byte offset off.
func (r Regs) Write32(off, v uint32) {
	dsb()
	mmio.Regs{Base: uintptr(r)}.Write32(off, v)
}
