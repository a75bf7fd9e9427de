package profile

// Reading a Go ELF image: its function table (.gopclntab) for unwinding
// (the stack pointer delta at a PC, from the function's pcsp table) and for
// naming a PC with its inlined frames. debug/gosym gives file and line; the
// pcsp, pcdata and funcdata tables it does not expose are decoded here,
// after the runtime's own reader (runtime/symtab.go, pcHeader, _func,
// pcvalue; runtime/symtabinl.go for the inline tree) of Go 1.20 and later.

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"debug/gosym"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
)

// Function flags (internal/abi FuncFlag).
const (
	flagTopFrame = 1 << 0 // the function is the top of its stack (goexit, mstart, rt0)
	flagSPWrite  = 1 << 1 // the function writes SP: its pcsp says nothing of the caller
)

// Table numbers (internal/abi).
const (
	pcdataInlTreeIndex = 2
	funcdataInlTree    = 3
	inlinedCallSize    = 16 // runtime.inlinedCall
)

// Binary is a Go executable's text and function table.
type Binary struct {
	Arch     string // "amd64" or "arm"
	PtrSize  int
	TextAddr uint64
	TextEnd  uint64
	// FuncSum is the SHA-256 of the function table (each function's
	// entry and name), to check that a stripped image and its
	// unstripped twin have the same functions at the same addresses.
	// (Their .text bytes may still differ: an ARM function's literal pool
	// holds data addresses, and the recorded -ldflags, which differ,
	// shift the data.)
	FuncSum [32]byte

	ef      *elf.File
	order   binary.ByteOrder
	tab     *gosym.Table
	pcln    []byte // .gopclntab
	nfunc   int
	quantum uint64 // instruction size unit of pc deltas (pcHeader.minLC)
	names   []byte // funcnametab
	pctab   []byte
	ftab    []byte // pclntable: functab, then the _func records
	gofunc  uint64 // go:func.*, base of funcdata offsets; 0: unknown (no inlining)
	secs    map[*elf.Section][]byte
}

// Open reads path. It needs .text and .gopclntab; the symbol table (for
// the inline tree) is used when present.
func Open(path string) (*Binary, error) {
	ef, err := elf.Open(path)
	if err != nil {
		return nil, err
	}
	b, err := newBinary(ef)
	if err != nil {
		ef.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, nil
}

// Close releases the file.
func (b *Binary) Close() error { return b.ef.Close() }

func newBinary(ef *elf.File) (*Binary, error) {
	b := &Binary{ef: ef, order: ef.ByteOrder, secs: map[*elf.Section][]byte{}}
	switch ef.Machine {
	case elf.EM_X86_64:
		b.Arch, b.PtrSize = "amd64", 8
	case elf.EM_ARM:
		b.Arch, b.PtrSize = "arm", 4
	default:
		return nil, fmt.Errorf("unsupported machine %v", ef.Machine)
	}
	text := ef.Section(".text")
	if text == nil {
		return nil, errors.New("no .text section")
	}
	b.TextAddr, b.TextEnd = text.Addr, text.Addr+text.Size
	sec := ef.Section(".gopclntab")
	var err error
	if sec == nil {
		return nil, errors.New("no .gopclntab section")
	}
	if b.pcln, err = sec.Data(); err != nil {
		return nil, fmt.Errorf(".gopclntab: %w", err)
	}
	if b.tab, err = gosym.NewTable(nil, gosym.NewLineTable(b.pcln, b.TextAddr)); err != nil {
		return nil, fmt.Errorf(".gopclntab: %w", err)
	}
	if err := b.parseHeader(); err != nil {
		return nil, err
	}
	h := sha256.New()
	for i := 0; i < b.nfunc; i++ {
		f, ok := b.funcAt(b.TextAddr + uint64(b.order.Uint32(b.ftab[i*8:])))
		if !ok {
			return nil, fmt.Errorf(".gopclntab: function %d not found at its own entry", i)
		}
		fmt.Fprintf(h, "%x %s\n", f.entry, b.name(int32(f.u32(fNameOff))))
	}
	h.Sum(b.FuncSum[:0])
	if syms, err := ef.Symbols(); err == nil {
		for _, s := range syms {
			if s.Name == "go:func.*" {
				b.gofunc = s.Value
				break
			}
		}
	}
	return b, nil
}

// parseHeader reads runtime.pcHeader: magic, pad, minLC, ptrSize, then
// nfunc, nfiles, (unused), and the offsets of funcnametab, cutab, filetab,
// pctab and pclntable, each pointer-sized.
func (b *Binary) parseHeader() error {
	p := b.pcln
	if len(p) < 8+8*b.PtrSize {
		return errors.New(".gopclntab: short header")
	}
	magic := b.order.Uint32(p)
	if magic != 0xfffffff1 { // Go 1.20 and later (internal/abi Go120PCLnTabMagic)
		return fmt.Errorf(".gopclntab: magic %#x, want the Go 1.20+ format", magic)
	}
	if int(p[7]) != b.PtrSize {
		return fmt.Errorf(".gopclntab: pointer size %d", p[7])
	}
	b.quantum = uint64(p[6])
	word := func(i int) uint64 {
		o := 8 + i*b.PtrSize
		if b.PtrSize == 8 {
			return b.order.Uint64(p[o:])
		}
		return uint64(b.order.Uint32(p[o:]))
	}
	b.nfunc = int(word(0))
	off := func(o uint64) ([]byte, error) {
		if o > uint64(len(p)) {
			return nil, errors.New(".gopclntab: offset out of range")
		}
		return p[o:], nil
	}
	var err error
	if b.names, err = off(word(3)); err != nil {
		return err
	}
	if b.pctab, err = off(word(6)); err != nil {
		return err
	}
	if b.ftab, err = off(word(7)); err != nil {
		return err
	}
	if len(b.ftab) < (b.nfunc+1)*8 {
		return errors.New(".gopclntab: short function table")
	}
	return nil
}

// SameCode reports an error unless o has the same functions at the same
// addresses as b.
func (b *Binary) SameCode(o *Binary) error {
	if b.Arch != o.Arch || b.TextAddr != o.TextAddr || b.TextEnd != o.TextEnd {
		return fmt.Errorf("text differs: %s [%#x,%#x) and %s [%#x,%#x)", b.Arch, b.TextAddr, b.TextEnd, o.Arch, o.TextAddr, o.TextEnd)
	}
	if b.FuncSum != o.FuncSum {
		return errors.New("the functions differ in name or address: not the same build")
	}
	return nil
}

// fn is one _func record.
type fn struct {
	entry uint64
	rec   []byte // the _func record and its pcdata/funcdata arrays
}

// _func field offsets (runtime/runtime2.go).
const (
	fEntryOff  = 0
	fNameOff   = 4
	fPCSP      = 16
	fNPCData   = 28
	fFuncID    = 40
	fFlag      = 41
	fNFuncData = 43
	fArrays    = 44
)

// funcAt finds the function containing pc.
func (b *Binary) funcAt(pc uint64) (fn, bool) {
	if pc < b.TextAddr || pc >= b.TextEnd {
		return fn{}, false
	}
	off := pc - b.TextAddr
	// functab: nfunc+1 pairs (entryoff, funcoff); the last entry is the
	// end of text.
	ent := func(i int) uint32 { return b.order.Uint32(b.ftab[i*8:]) }
	i := sort.Search(b.nfunc, func(i int) bool { return uint64(ent(i+1)) > off })
	if i >= b.nfunc || uint64(ent(i)) > off {
		return fn{}, false
	}
	fo := b.order.Uint32(b.ftab[i*8+4:])
	if uint64(fo)+fArrays > uint64(len(b.ftab)) {
		return fn{}, false
	}
	rec := b.ftab[fo:]
	return fn{entry: b.TextAddr + uint64(b.order.Uint32(rec[fEntryOff:])), rec: rec}, true
}

func (f fn) u32(o int) uint32 { return binary.LittleEndian.Uint32(f.rec[o:]) }

// pcvalue decodes the pc-value table at off in pctab for the function f
// and returns the value at pc (runtime pcvalue and step): pairs of
// zig-zag value delta and pc delta (in quanta), both varints, the value
// starting at -1 and the pc at the entry.
func (b *Binary) pcvalue(f fn, off uint32, pc uint64) (int32, bool) {
	if off == 0 || uint64(off) >= uint64(len(b.pctab)) {
		return -1, false
	}
	p := b.pctab[off:]
	val, cur := int32(-1), f.entry
	for first := true; ; first = false {
		uv, n := binary.Uvarint(p)
		if n <= 0 || (uv == 0 && !first) {
			return -1, false
		}
		p = p[n:]
		val += int32(-(uint32(uv) & 1) ^ (uint32(uv) >> 1))
		pd, n := binary.Uvarint(p)
		if n <= 0 {
			return -1, false
		}
		p = p[n:]
		cur += pd * b.quantum
		if pc < cur {
			return val, true
		}
	}
}

// spDelta is the stack pointer's distance below the function's frame top
// at pc: what the function has pushed and allocated (pcsp).
func (b *Binary) spDelta(f fn, pc uint64) (int32, bool) {
	return b.pcvalue(f, f.u32(fPCSP), pc)
}

func (b *Binary) name(off int32) string {
	if off < 0 || int(off) >= len(b.names) {
		return "?"
	}
	s := b.names[off:]
	if i := bytes.IndexByte(s, 0); i >= 0 {
		s = s[:i]
	}
	return string(s)
}

// Frame is one source-level frame at a PC.
type Frame struct {
	Func string
	File string
	Line int
	// Entry is the start of the (outermost) function's code.
	Entry uint64
}

// Frames returns the source frames at pc, innermost (inlined) first; the
// last is the function the code belongs to. Empty when pc is in no Go
// function.
func (b *Binary) Frames(pc uint64) []Frame {
	f, ok := b.funcAt(pc)
	if !ok {
		return nil
	}
	outer := b.name(int32(f.u32(fNameOff)))
	var tree []byte
	npc := f.u32(fNPCData)
	if b.gofunc != 0 && pcdataInlTreeIndex < npc && funcdataInlTree < uint32(f.rec[fNFuncData]) {
		if uint64(fArrays)+uint64(npc)*4+(funcdataInlTree+1)*4 <= uint64(len(f.rec)) {
			if o := f.u32(fArrays + int(npc)*4 + funcdataInlTree*4); o != ^uint32(0) {
				tree = b.data(b.gofunc + uint64(o))
			}
		}
	}
	var out []Frame
	for depth := 0; depth < 100; depth++ {
		file, line, _ := b.tab.PCToLine(pc)
		idx := int32(-1)
		if tree != nil {
			idx, _ = b.pcvalue(f, f.u32(fArrays+pcdataInlTreeIndex*4), pc)
		}
		if idx < 0 || (int(idx)+1)*inlinedCallSize > len(tree) {
			return append(out, Frame{Func: outer, File: file, Line: line, Entry: f.entry})
		}
		call := tree[int(idx)*inlinedCallSize:]
		out = append(out, Frame{Func: b.name(int32(b.order.Uint32(call[4:]))), File: file, Line: line, Entry: f.entry})
		pc = f.entry + uint64(int32(b.order.Uint32(call[8:])))
	}
	return out
}

// data returns the file bytes from address addr to the end of the section
// holding it; nil if no section does.
func (b *Binary) data(addr uint64) []byte {
	for _, s := range b.ef.Sections {
		if s.Type == elf.SHT_NOBITS || addr < s.Addr || addr >= s.Addr+s.Size {
			continue
		}
		d, ok := b.secs[s]
		if !ok {
			var err error
			if d, err = s.Data(); err != nil {
				return nil
			}
			b.secs[s] = d
		}
		if addr-s.Addr >= uint64(len(d)) {
			return nil
		}
		return d[addr-s.Addr:]
	}
	return nil
}
