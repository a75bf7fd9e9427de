package profile

import (
	"encoding/binary"
	"errors"
)

// Memory reads the target's memory.
type Memory interface {
	ReadMemory(addr uint64, dst []byte) error
}

// stackCache reads the stack through Memory in aligned blocks, so that one
// sample costs one or two memory reads, not one per frame. Reset it between
// samples: the stack changes while the target runs.
type stackCache struct {
	mem   Memory
	n     int
	addrs [8]uint64
	valid [8]bool
	data  [8][stackBlock]byte
}

// stackBlock is the read size: the most QEMU reads for one m packet (half
// its 4096-byte packet buffer, a reply having two hex digits a byte).
const stackBlock = 2048

func (c *stackCache) reset() {
	c.n = 0
	c.valid = [8]bool{}
}

// word reads size (4 or 8) bytes, little-endian, at addr.
func (c *stackCache) word(addr uint64, size int) (uint64, error) {
	base := addr &^ (stackBlock - 1)
	if addr+uint64(size) > base+stackBlock {
		return 0, errors.New("unaligned stack word")
	}
	i := 0
	for ; i < len(c.addrs); i++ {
		if c.valid[i] && c.addrs[i] == base {
			break
		}
	}
	if i == len(c.addrs) {
		i = c.n % len(c.addrs)
		c.n++
		c.valid[i] = false
		if err := c.mem.ReadMemory(base, c.data[i][:]); err != nil {
			return 0, err
		}
		c.addrs[i], c.valid[i] = base, true
	}
	b := c.data[i][addr-base:]
	if size == 8 {
		return binary.LittleEndian.Uint64(b), nil
	}
	return uint64(binary.LittleEndian.Uint32(b)), nil
}

// Regs are the registers an unwind starts from. LR is ARM's link register
// (R14); amd64 has none.
type Regs struct {
	PC, SP, LR uint64
}

// Unwind appends to pcs the stack at regs, innermost first: the PC, then
// each caller's return address, at most max entries. It walks Go frames
// with the function table's SP delta (pcsp), as the runtime's own unwinder
// does (runtime/traceback.go, unwinder.next), so it needs no frame
// pointers and is right in prologues too:
//
//   - amd64: the frame top is SP + delta + 8; the return address is the
//     word below it, and the caller's SP is the frame top.
//   - arm: the frame top is SP + delta; a function with a frame keeps its
//     return address at 0(SP) (the prologue's MOVW.W R14, -n(R13)); the
//     innermost frame without one (a leaf, or before its prologue) has it
//     in LR.
//
// It stops at the top of a stack (goexit, mstart), at a function that sets
// SP itself (stack switches: systemstack, morestack), at a PC outside Go
// code, or when a read fails; so a sample on the system stack ends there.
func (b *Binary) Unwind(pcs []uint64, r Regs, mem *stackCache, max int) []uint64 {
	pc, sp := r.PC, r.SP
	for innermost := true; len(pcs) < max; innermost = false {
		pcs = append(pcs, pc)
		// A return address may be the first byte after the function
		// (a call that does not return): look up the call itself.
		at := pc
		if !innermost {
			at--
		}
		f, ok := b.funcAt(at)
		if !ok {
			break
		}
		flag := f.rec[fFlag]
		if flag&flagTopFrame != 0 || (flag&flagSPWrite != 0 && !innermost) {
			break
		}
		delta, ok := b.spDelta(f, at)
		if !ok || delta < 0 {
			break
		}
		var ret, top uint64
		var err error
		switch b.Arch {
		case "amd64":
			top = sp + uint64(delta) + 8
			ret, err = mem.word(top-8, 8)
		case "arm":
			top = sp + uint64(delta)
			if innermost && delta == 0 {
				ret = r.LR
			} else {
				ret, err = mem.word(sp, 4)
			}
		}
		if err != nil || ret < b.TextAddr || ret >= b.TextEnd {
			break
		}
		// Only an innermost leaf leaves SP where it is; anywhere else
		// that would be a loop.
		if top == sp && !innermost {
			break
		}
		pc, sp = ret, top
	}
	return pcs
}

// topFrame reports whether the return address ret is in a function that
// starts a stack (goexit, mstart, rt0_go) or switches to it (mcall,
// systemstack: the scheduler and the runtime run on the system stack).
func (b *Binary) topFrame(ret uint64) bool {
	f, ok := b.funcAt(ret - 1)
	return ok && f.rec[fFlag]&(flagTopFrame|flagSPWrite) != 0
}
