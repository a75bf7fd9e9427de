package profile

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
)

// buildChain builds testdata/chain for goarch and returns its path.
func buildChain(t *testing.T, goarch string, flags ...string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "chain-"+goarch)
	cmd := exec.Command("go", append(append([]string{"build", "-o", out}, flags...), "./testdata/chain")...)
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH="+goarch, "GOARM=7", "CGO_ENABLED=0")
	if o, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build chain for %s: %v\n%s", goarch, err, o)
	}
	return out
}

// fakeMem is memory at base; reads outside it give zeros, as unmapped
// guest memory would give garbage.
type fakeMem struct {
	base uint64
	data []byte
	mu   sync.Mutex
	n    int
}

func (m *fakeMem) ReadMemory(addr uint64, dst []byte) error {
	m.mu.Lock()
	m.n++
	m.mu.Unlock()
	clear(dst)
	for i := range dst {
		a := addr + uint64(i)
		if a >= m.base && a < m.base+uint64(len(m.data)) {
			dst[i] = m.data[a-m.base]
		}
	}
	return nil
}

func names(b *Binary, pcs []uint64) []string {
	var out []string
	for i, pc := range pcs {
		if i > 0 {
			pc-- // a return address: the call
		}
		fr := b.Frames(pc)
		if len(fr) == 0 {
			out = append(out, "?")
			continue
		}
		out = append(out, fr[len(fr)-1].Func)
	}
	return out
}

// chainRun is what the amd64 test program recorded in main.c.
type chainRun struct {
	SP, PC  uint64
	Stack   []uint64
	Callers []uint64
}

func (d chainRun) mem() *fakeMem {
	m := &fakeMem{base: d.SP, data: make([]byte, 8*len(d.Stack))}
	for i, w := range d.Stack {
		binary.LittleEndian.PutUint64(m.data[8*i:], w)
	}
	return m
}

// chainDump builds and runs the amd64 test program.
func chainDump(t *testing.T) (string, chainRun) {
	t.Helper()
	if runtime.GOARCH != "amd64" || runtime.GOOS != "linux" {
		t.Skip("SKIP: runs the amd64 test program natively: needs linux/amd64")
	}
	path := buildChain(t, "amd64")
	out, err := exec.Command(path).Output()
	if err != nil {
		t.Fatal(err)
	}
	var d chainRun
	if err := json.Unmarshal(out, &d); err != nil {
		t.Fatal(err)
	}
	if len(d.Stack) == 0 || d.Stack[len(d.Stack)-1] != d.Callers[len(d.Callers)-1] {
		t.Fatalf("the program did not find the outermost return address on its stack: %d words", len(d.Stack))
	}
	return path, d
}

// TestUnwindAMD64 unwinds a real stack: the test program, run natively,
// records its registers and stack in main.c and what runtime.Callers says
// its callers are; Unwind must find the same return addresses.
func TestUnwindAMD64(t *testing.T) {
	path, d := chainDump(t)
	b, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	mem := d.mem()
	got := b.Unwind(nil, Regs{PC: d.PC, SP: d.SP}, &stackCache{mem: mem}, 64)
	// got[0] is the PC in c; the rest are the callers' return
	// addresses, which runtime.Callers reports from b on.
	if len(got) < 2 || !slices.Equal(got[1:], d.Callers) {
		t.Fatalf("unwound %x (%v),\nruntime.Callers says %x (%v)", got, names(b, got), d.Callers, names(b, d.Callers))
	}
	want := []string{"main.c", "main.b", "main.a", "main.main", "runtime.main", "runtime.goexit"}
	if n := names(b, got); !slices.Equal(n, want) {
		t.Errorf("names %v, want %v", n, want)
	}
	// Stopped at the top (goexit), not by running out of stack.
	if n := b.Unwind(nil, Regs{PC: d.PC, SP: d.SP}, &stackCache{mem: mem}, 3); len(n) != 3 {
		t.Errorf("max 3: got %d entries", len(n))
	}
	// The stack is read in blocks, not word by word: a's frame is
	// about 3 KB, so a few blocks in all.
	if mem.n > 4 {
		t.Errorf("%d memory reads for one stack", mem.n)
	}
}

// armFunc is a function of the arm test program: where it starts, its
// frame size from its prologue, and its code.
type armFunc struct {
	entry, end uint64
	frame      uint64 // N of the prologue's MOVW.W R14, -N(R13); 0: none
	code       []byte
}

func armLookup(t *testing.T, b *Binary, name string) armFunc {
	t.Helper()
	f := b.tab.LookupFunc(name)
	if f == nil {
		t.Fatalf("no function %s", name)
	}
	text := b.data(f.Entry)
	fn := armFunc{entry: f.Entry, end: f.End, code: text[:f.End-f.Entry]}
	for off := 0; off+4 <= len(fn.code); off += 4 {
		w := binary.LittleEndian.Uint32(fn.code[off:])
		// STR R14, [R13, #-N]! (ARM ARM A8.8.204, encoding A1, P=1 U=0 W=1):
		// the return address at the new SP, SP lowered by N.
		if w&0xfffff000 == 0xe52de000 {
			fn.frame = uint64(w & 0xfff)
			break
		}
	}
	return fn
}

// callTo returns the return address of f's BL to target (ARM ARM A8.8.25,
// encoding A1: cond 1011 imm24, target = PC+8+imm24*4).
func (f armFunc) callTo(t *testing.T, target uint64) uint64 {
	t.Helper()
	for off := 0; off+4 <= len(f.code); off += 4 {
		w := binary.LittleEndian.Uint32(f.code[off:])
		if w>>24 != 0xeb {
			continue
		}
		imm := int64(int32(w<<8) >> 8)
		at := f.entry + uint64(off)
		if uint64(int64(at)+8+imm*4) == target {
			return at + 4
		}
	}
	t.Fatalf("no BL to %#x in the function at %#x", target, f.entry)
	return 0
}

// TestUnwindARM unwinds a stack laid out as the arm test program's own
// machine code lays it out: each prologue's STR R14, [R13, #-N]! puts the
// return address at SP and the caller's SP at SP+N, the BLs give the
// return addresses, and the innermost function, a leaf without a frame,
// has its return address in LR.
func TestUnwindARM(t *testing.T) {
	path := buildChain(t, "arm")
	b, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.Arch != "arm" {
		t.Fatalf("arch %s", b.Arch)
	}
	leaf := armLookup(t, b, "main.leaf")
	c := armLookup(t, b, "main.c")
	bf := armLookup(t, b, "main.b")
	a := armLookup(t, b, "main.a")
	m := armLookup(t, b, "main.main")
	if leaf.frame != 0 {
		t.Fatalf("main.leaf has a frame of %d: the test wants a leaf without one", leaf.frame)
	}
	for _, f := range []armFunc{c, bf, a, m} {
		if f.frame == 0 {
			t.Fatalf("no prologue found in the function at %#x", f.entry)
		}
	}
	if a.frame < 3000 {
		// The 12-bit immediate form holds up to 4095; a has 3000 bytes
		// of locals.
		t.Fatalf("main.a's frame %d, want its 3000-byte array in it", a.frame)
	}
	retC := c.callTo(t, leaf.entry)
	retB := bf.callTo(t, c.entry)
	retA := a.callTo(t, bf.entry)
	retM := m.callTo(t, a.entry)
	// The pcsp table must agree with the prologue at each call.
	for _, x := range []struct {
		f   armFunc
		ret uint64
	}{{c, retC}, {bf, retB}, {a, retA}, {m, retM}} {
		fn, ok := b.funcAt(x.ret - 1)
		if !ok {
			t.Fatalf("no function at %#x", x.ret-1)
		}
		if d, ok := b.spDelta(fn, x.ret-1); !ok || uint64(d) != x.f.frame {
			t.Errorf("pcsp at %#x: %d, the prologue says %d", x.ret-1, d, x.f.frame)
		}
	}

	const base = 0x20000
	mem := &fakeMem{base: base, data: make([]byte, 16<<10)}
	put := func(addr, v uint64) { binary.LittleEndian.PutUint32(mem.data[addr-base:], uint32(v)) }
	// Stopped at leaf's first instruction: SP is c's, LR points into c.
	sp := uint64(base)
	put(sp, retB) // c's return address, at c's SP
	sp += c.frame
	put(sp, retA)
	sp += bf.frame
	put(sp, retM)
	sp += a.frame
	put(sp, 0) // main's return address: none, the unwind stops

	got := b.Unwind(nil, Regs{PC: leaf.entry, SP: base, LR: retC}, &stackCache{mem: mem}, 64)
	want := []uint64{leaf.entry, retC, retB, retA, retM}
	if !slices.Equal(got, want) {
		t.Fatalf("unwound %x (%v), want %x", got, names(b, got), want)
	}
	if n := names(b, got); !slices.Equal(n, []string{"main.leaf", "main.c", "main.b", "main.a", "main.main"}) {
		t.Errorf("names %v", n)
	}

	// Stopped inside c's body (after its prologue): LR is stale, the
	// return address comes from the stack.
	got = b.Unwind(nil, Regs{PC: retC - 4, SP: base, LR: 0xdead}, &stackCache{mem: mem}, 64)
	if w := append([]uint64{retC - 4}, want[2:]...); !slices.Equal(got, w) {
		t.Fatalf("from c's body: %x, want %x", got, w)
	}
}

// TestFramesInlined checks that inlined calls become frames of their own:
// the gVisor-heavy profiles are unreadable without it.
func TestFramesInlined(t *testing.T) {
	path := buildChain(t, runtime.GOARCH)
	b, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	src, err := os.ReadFile("testdata/chain/main.go")
	if err != nil {
		t.Fatal(err)
	}
	line := 0
	for i, l := range bytes.Split(src, []byte("\n")) {
		if bytes.Contains(l, []byte("json.NewEncoder(os.Stdout)")) {
			line = i + 1
		}
	}
	// json.NewEncoder is small and inlined into main.main.
	m := b.tab.LookupFunc("main.main")
	for pc := m.Entry; pc < m.End; pc++ {
		fr := b.Frames(pc)
		if len(fr) < 2 || fr[0].Func != "encoding/json.NewEncoder" {
			continue
		}
		last := fr[len(fr)-1]
		if !strings.HasSuffix(fr[0].File, "encoding/json/stream.go") || last.Func != "main.main" ||
			!strings.HasSuffix(last.File, "testdata/chain/main.go") || last.Line != line {
			t.Fatalf("frames at %#x: %+v, want json.NewEncoder in stream.go inlined at main.go:%d", pc, fr, line)
		}
		return
	}
	t.Fatal("no PC in main.main shows json.NewEncoder inlined")
}

// TestSameCode: a build with -s -w is the same code as one without (what
// make profile relies on); another build is not.
func TestSameCode(t *testing.T) {
	full := buildChain(t, "arm")
	stripped := buildChain(t, "arm", "-ldflags=-s -w")
	other := buildChain(t, "arm", "-gcflags=-N -l")
	open := func(p string) *Binary {
		b, err := Open(p)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b
	}
	a, s, o := open(full), open(stripped), open(other)
	if err := s.SameCode(a); err != nil {
		t.Errorf("stripped and unstripped: %v", err)
	}
	if err := o.SameCode(a); err == nil {
		t.Error("a build without optimizations has the same code")
	}
	if a.gofunc == 0 || s.gofunc != 0 {
		t.Errorf("go:func.* at %#x unstripped, %#x stripped: want it only where there is a symbol table", a.gofunc, s.gofunc)
	}
}
