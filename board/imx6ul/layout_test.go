package imx6ul

import (
	"testing"

	"github.com/tamanet/tamanet/alloc"
	"github.com/tamanet/tamanet/nic/enet"
)

// ddrSize is the DDR of every board this package serves (512 MiB).
const ddrSize = 512 << 20

func TestLayout(t *testing.T) {
	const mib = 1 << 20
	// uint64: the addresses overflow a 32-bit int.
	ramStart, ramSize, dmaStart, dmaSize := uint64(RAMStart), uint64(RAMSize), uint64(DMAStart), uint64(DMASize)
	if dmaStart%mib != 0 || dmaSize%mib != 0 {
		t.Errorf("DMA region %#x+%#x not in whole 1 MiB MMU sections", dmaStart, dmaSize)
	}
	if ramStart+ramSize != dmaStart {
		t.Errorf("Go's RAM ends at %#x, DMA region starts at %#x", ramStart+ramSize, dmaStart)
	}
	if dmaStart+dmaSize > ramStart+ddrSize {
		t.Errorf("DMA region ends at %#x, past the DDR's end %#x", dmaStart+dmaSize, ramStart+ddrSize)
	}
	if ArenaSize > DMASize {
		t.Errorf("arena %d bytes larger than the DMA region (%d)", ArenaSize, DMASize)
	}
}

// TestArenaHoldsFirmware carves what cmd/unikernel does from an arena of
// ArenaSize: the 2048-buffer pool and both ENET rings at their largest.
func TestArenaHoldsFirmware(t *testing.T) {
	mem := make([]byte, ArenaSize+4096)
	// Page aligned, as DMA reserves it.
	off := int((4096 - alloc.AddrOf(mem)%4096) % 4096)
	a := alloc.NewArena(mem[off : off+ArenaSize])
	if _, err := a.Pool(alloc.Config{Count: 2048}); err != nil {
		t.Fatalf("pool: %v", err)
	}
	for _, ring := range []string{"rx", "tx"} {
		if _, _, err := a.Alloc(enet.MaxRing*enet.DescSize, 64); err != nil {
			t.Fatalf("%s ring of %d descriptors: %v", ring, enet.MaxRing, err)
		}
	}
	t.Logf("arena: %d of %d bytes used", a.Used(), ArenaSize)
}
