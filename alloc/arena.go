package alloc

import "fmt"

// Arena hands out aligned, zeroed pieces of one memory region, once each and
// never back: drivers carve their descriptor rings from it, and the pool its
// buffers. On tamago the region is DMA memory outside the Go heap; in host
// tests it is a []byte that a device model shares with the driver.
type Arena struct {
	mem  []byte
	base uintptr
	off  int
}

// NewArena returns an arena over mem.
func NewArena(mem []byte) *Arena {
	return &Arena{mem: mem, base: AddrOf(mem)}
}

// Alloc returns size zeroed bytes aligned to align (a power of two) and
// their physical address.
func (a *Arena) Alloc(size, align int) ([]byte, uintptr, error) {
	if size <= 0 || align <= 0 || align&(align-1) != 0 {
		return nil, 0, fmt.Errorf("alloc: bad arena request size %d align %d", size, align)
	}
	start := a.off
	if r := int((a.base + uintptr(start)) % uintptr(align)); r != 0 {
		start += align - r
	}
	if start+size > len(a.mem) || start+size < start {
		return nil, 0, fmt.Errorf("%w: arena needs %d bytes at offset %d, has %d", ErrRegionSmall, size, start, len(a.mem))
	}
	a.off = start + size
	b := a.mem[start : start+size : start+size]
	clear(b)
	return b, a.base + uintptr(start), nil
}

// Pool carves a packet pool from the arena.
func (a *Arena) Pool(cfg Config) (*Pool, error) {
	cfg.defaults()
	mem, _, err := a.Alloc(cfg.Count*cfg.Size, Alignment)
	if err != nil {
		return nil, err
	}
	return New(mem, cfg)
}

// Memory returns the whole region, for a device model that must resolve the
// addresses a driver hands it.
func (a *Arena) Memory() []byte { return a.mem }

// Used returns the bytes handed out so far, alignment padding included.
func (a *Arena) Used() int { return a.off }
