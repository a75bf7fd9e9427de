package linuxguest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// Flattened device tree tokens and header (Devicetree Specification
// v0.4, §5.2 header, §5.4 structure block).
const (
	fdtMagic     = 0xd00dfeed
	fdtBeginNode = 1
	fdtEndNode   = 2
	fdtProp      = 3
	fdtNop       = 4
	fdtEnd       = 9
)

// DeleteProps returns a copy of the flattened device tree dtb in which
// every property called name, in a node whose path has one of the given
// suffixes, is overwritten with FDT_NOP tokens (§5.4.1: NOPs are skipped
// by any parser), so nothing else in the blob moves. It returns how many
// properties it deleted.
func DeleteProps(dtb []byte, name string, nodeSuffixes ...string) ([]byte, int, error) {
	b := append([]byte(nil), dtb...)
	be := binary.BigEndian
	if len(b) < 40 || be.Uint32(b) != fdtMagic {
		return nil, 0, errors.New("fdt: not a flattened device tree")
	}
	if int(be.Uint32(b[4:])) != len(b) {
		return nil, 0, fmt.Errorf("fdt: totalsize %d, blob %d bytes", be.Uint32(b[4:]), len(b))
	}
	structOff, stringsOff := int(be.Uint32(b[8:])), int(be.Uint32(b[12:]))
	stringsSize, structSize := int(be.Uint32(b[32:])), int(be.Uint32(b[36:]))
	if structOff+structSize > len(b) || stringsOff+stringsSize > len(b) || structOff < 40 || stringsOff < 40 {
		return nil, 0, errors.New("fdt: blocks outside the blob")
	}
	strs := b[stringsOff : stringsOff+stringsSize]
	str := func(off int) (string, bool) {
		if off < 0 || off >= len(strs) {
			return "", false
		}
		i := strings.IndexByte(string(strs[off:]), 0)
		if i < 0 {
			return "", false
		}
		return string(strs[off : off+i]), true
	}
	var path []string
	n := 0
	p, end := structOff, structOff+structSize
	for p+4 <= end {
		tok := be.Uint32(b[p:])
		switch tok {
		case fdtBeginNode:
			i := strings.IndexByte(string(b[p+4:end]), 0)
			if i < 0 {
				return nil, 0, errors.New("fdt: unterminated node name")
			}
			path = append(path, string(b[p+4:p+4+i]))
			p += 4 + align4(i+1)
		case fdtEndNode:
			if len(path) == 0 {
				return nil, 0, errors.New("fdt: unbalanced end of node")
			}
			path = path[:len(path)-1]
			p += 4
		case fdtProp:
			if p+12 > end {
				return nil, 0, errors.New("fdt: truncated property")
			}
			l, off := int(be.Uint32(b[p+4:])), int(be.Uint32(b[p+8:]))
			size := 12 + align4(l)
			if l < 0 || p+size > end {
				return nil, 0, errors.New("fdt: property beyond the structure block")
			}
			pn, ok := str(off)
			if !ok {
				return nil, 0, errors.New("fdt: property name outside the strings block")
			}
			full := strings.Join(path, "/")
			if pn == name && hasAnySuffix(full, nodeSuffixes) {
				for q := p; q < p+size; q += 4 {
					be.PutUint32(b[q:], fdtNop)
				}
				n++
			}
			p += size
		case fdtNop:
			p += 4
		case fdtEnd:
			return b, n, nil
		default:
			return nil, 0, fmt.Errorf("fdt: unknown token %#x at %d", tok, p)
		}
	}
	return nil, 0, errors.New("fdt: no end token")
}

func hasAnySuffix(s string, suffixes []string) bool {
	if len(suffixes) == 0 {
		return true
	}
	for _, x := range suffixes {
		if strings.HasSuffix(s, x) {
			return true
		}
	}
	return false
}

func align4(n int) int { return (n + 3) &^ 3 }
