package linuxguest

import (
	"encoding/binary"
	"strings"
	"testing"
)

// fdtBuilder writes a flattened device tree (Devicetree Specification
// §5), independently of DeleteProps's reader.
type fdtBuilder struct {
	st, strs []byte
	offs     map[string]int
}

func (f *fdtBuilder) u32(v uint32) { f.st = binary.BigEndian.AppendUint32(f.st, v) }
func (f *fdtBuilder) pad() {
	for len(f.st)%4 != 0 {
		f.st = append(f.st, 0)
	}
}
func (f *fdtBuilder) begin(name string) {
	f.u32(fdtBeginNode)
	f.st = append(f.st, name+"\x00"...)
	f.pad()
}
func (f *fdtBuilder) end() { f.u32(fdtEndNode) }
func (f *fdtBuilder) prop(name string, val []byte) {
	if f.offs == nil {
		f.offs = map[string]int{}
	}
	off, ok := f.offs[name]
	if !ok {
		off = len(f.strs)
		f.offs[name] = off
		f.strs = append(f.strs, name+"\x00"...)
	}
	f.u32(fdtProp)
	f.u32(uint32(len(val)))
	f.u32(uint32(off))
	f.st = append(f.st, val...)
	f.pad()
}
func (f *fdtBuilder) blob() []byte {
	f.u32(fdtEnd)
	const hdr = 40
	rsv := make([]byte, 16) // an empty memory reservation map
	b := make([]byte, hdr)
	b = append(b, rsv...)
	structOff := len(b)
	b = append(b, f.st...)
	stringsOff := len(b)
	b = append(b, f.strs...)
	be := binary.BigEndian
	for i, v := range []uint32{fdtMagic, uint32(len(b)), uint32(structOff), uint32(stringsOff), hdr, 17, 16, 0, uint32(len(f.strs)), uint32(len(f.st))} {
		be.PutUint32(b[4*i:], v)
	}
	return b
}

// props lists "node-path:property" of every property, skipping NOPs.
func props(t *testing.T, b []byte) []string {
	t.Helper()
	be := binary.BigEndian
	st, so := int(be.Uint32(b[8:])), int(be.Uint32(b[12:]))
	var out, path []string
	for p := st; ; {
		switch be.Uint32(b[p:]) {
		case fdtBeginNode:
			i := strings.IndexByte(string(b[p+4:]), 0)
			path = append(path, string(b[p+4:p+4+i]))
			p += 4 + align4(i+1)
		case fdtEndNode:
			path = path[:len(path)-1]
			p += 4
		case fdtProp:
			l, off := int(be.Uint32(b[p+4:])), int(be.Uint32(b[p+8:]))
			n := string(b[so+off:])
			out = append(out, strings.Join(path, "/")+":"+n[:strings.IndexByte(n, 0)])
			p += 12 + align4(l)
		case fdtNop:
			p += 4
		case fdtEnd:
			return out
		default:
			t.Fatalf("token %#x at %d", be.Uint32(b[p:]), p)
		}
	}
}

func evkTree() []byte {
	var f fdtBuilder
	f.begin("")
	f.prop("model", []byte("Freescale i.MX6 UltraLiteLite 14x14 EVK Board\x00"))
	f.begin("soc")
	f.begin("bus@2100000")
	f.begin("ethernet@2188000")
	f.prop("phy-mode", []byte("rmii\x00"))
	f.prop("phy-supply", []byte{0, 0, 0, 9})
	f.prop("status", []byte("okay\x00"))
	f.end()
	f.end()
	f.begin("regulator-sd1-vmmc")
	f.prop("phy-supply", []byte{0, 0, 0, 7}) // not an ethernet node: kept
	f.end()
	f.begin("bus@2000000")
	f.begin("ethernet@20b4000")
	f.prop("phy-supply", []byte{0, 0, 0, 9})
	f.prop("phy-handle", []byte{0, 0, 0, 3, 1}) // odd length: padded
	f.end()
	f.end()
	f.end()
	f.end()
	return f.blob()
}

func TestDeleteProps(t *testing.T) {
	in := evkTree()
	out, n, err := DeleteProps(in, "phy-supply", "ethernet@2188000", "ethernet@20b4000")
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 || len(out) != len(in) {
		t.Fatalf("deleted %d, size %d -> %d", n, len(in), len(out))
	}
	got := strings.Join(props(t, out), "\n")
	want := strings.Join([]string{
		":model",
		"/soc/bus@2100000/ethernet@2188000:phy-mode",
		"/soc/bus@2100000/ethernet@2188000:status",
		"/soc/regulator-sd1-vmmc:phy-supply",
		"/soc/bus@2000000/ethernet@20b4000:phy-handle",
	}, "\n")
	if got != want {
		t.Errorf("properties:\n%s\nwant:\n%s", got, want)
	}
	if strings.Join(props(t, in), "\n") == got {
		t.Error("the input was modified")
	}
	// No suffix: every node.
	if _, n, _ := DeleteProps(in, "phy-supply"); n != 3 {
		t.Errorf("without suffixes deleted %d, want 3", n)
	}
}

func TestDeletePropsRefuses(t *testing.T) {
	good := evkTree()
	bad := func(name string, mutate func(b []byte) []byte) {
		t.Helper()
		b := mutate(append([]byte(nil), good...))
		if _, _, err := DeleteProps(b, "phy-supply"); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	be := binary.BigEndian
	bad("magic", func(b []byte) []byte { b[0] = 0; return b })
	bad("short", func(b []byte) []byte { return b[:20] })
	bad("totalsize", func(b []byte) []byte { return b[:len(b)-1] })
	bad("struct size", func(b []byte) []byte { be.PutUint32(b[36:], 1<<20); return b })
	bad("token", func(b []byte) []byte { be.PutUint32(b[be.Uint32(b[8:]):], 77); return b })
	bad("no end", func(b []byte) []byte {
		st, sz := be.Uint32(b[8:]), be.Uint32(b[36:])
		be.PutUint32(b[st+sz-4:], fdtNop)
		return b
	})
	bad("name offset", func(b []byte) []byte {
		// The first property follows the root's begin token and
		// its empty name (8 bytes).
		be.PutUint32(b[be.Uint32(b[8:])+16:], 1<<20)
		return b
	})
	bad("property length", func(b []byte) []byte {
		be.PutUint32(b[be.Uint32(b[8:])+12:], 1<<20)
		return b
	})
}

// FuzzDeleteProps: any blob is refused or edited in place, never a panic;
// an edited blob keeps its size, and a second pass finds nothing left to
// delete.
func FuzzDeleteProps(f *testing.F) {
	f.Add(evkTree())
	var empty fdtBuilder
	empty.begin("")
	empty.end()
	f.Add(empty.blob())
	f.Fuzz(func(t *testing.T, b []byte) {
		out, n, err := DeleteProps(b, "phy-supply", "ethernet@2188000")
		if err != nil {
			return
		}
		if len(out) != len(b) {
			t.Fatalf("size %d -> %d", len(b), len(out))
		}
		again, n2, err := DeleteProps(out, "phy-supply", "ethernet@2188000")
		if err != nil || n2 != 0 {
			t.Fatalf("second pass: %d deleted, %v (first: %d)", n2, err, n)
		}
		if string(again) != string(out) {
			t.Fatal("second pass changed the blob")
		}
	})
}
