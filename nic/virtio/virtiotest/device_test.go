package virtiotest

import (
	"testing"

	"github.com/tamanet/tamanet/alloc"
)

// setup negotiates features f on d and reports whether FEATURES_OK stuck.
func setup(d *Device, f uint64) bool {
	d.Write32(regStatus, 0)
	d.Write32(regStatus, statusAcknowledge|statusDriver)
	d.Write32(regDriverFeatSel, 0)
	d.Write32(regDriverFeatures, uint32(f))
	d.Write32(regDriverFeatSel, 1)
	d.Write32(regDriverFeatures, uint32(f>>32))
	d.Write32(regStatus, statusAcknowledge|statusDriver|statusFeaturesOK)
	return d.Read32(regStatus)&statusFeaturesOK != 0
}

func TestRegisters(t *testing.T) {
	d := New(make([]byte, 1<<16), Options{MAC: [6]byte{2, 9, 8, 7, 6, 5}, MTU: 9000})
	if d.Read32(regMagic) != 0x74726976 || d.Read32(regVersion) != 2 || d.Read32(regDeviceID) != 1 {
		t.Fatal("identification registers")
	}
	d.Write32(regDeviceFeatSel, 1)
	if d.Read32(regDeviceFeatures) != 1 { // VERSION_1 is bit 32
		t.Fatalf("features high word %#x", d.Read32(regDeviceFeatures))
	}
	for i, b := range []byte{2, 9, 8, 7, 6, 5} {
		if d.Read8(regConfig+uint32(i)) != b {
			t.Fatalf("mac byte %d", i)
		}
	}
	if d.Read16(regConfig+6)&1 == 0 || d.Read16(regConfig+10) != 9000 {
		t.Fatal("status / mtu in config space")
	}
	if d.Stats().DeviceErrors != 0 {
		t.Fatalf("%d device errors from natural-width config reads", d.Stats().DeviceErrors)
	}
	d.Read8(regConfig + 6)  // a byte of le16 status
	d.Read16(regConfig + 7) // misaligned
	d.Read16(regConfig + 4) // into the u8 mac array
	if d.Stats().DeviceErrors != 3 {
		t.Fatalf("%d device errors from 3 config reads at the wrong width", d.Stats().DeviceErrors)
	}
	if setup(d, 1<<5) {
		t.Fatal("FEATURES_OK accepted without VERSION_1")
	}
	if setup(d, Features|1<<0) {
		t.Fatal("FEATURES_OK accepted a feature not offered (CSUM)")
	}
	if !setup(d, Features) {
		t.Fatal("FEATURES_OK refused the offered features")
	}
	d.Write32(regStatus, 0)
	if d.Read32(regStatus) != 0 {
		t.Fatal("reset did not clear status")
	}
}

func TestQueueAddressChecks(t *testing.T) {
	mem := make([]byte, 1<<16)
	base := uint64(alloc.AddrOf(mem))
	for _, c := range []struct {
		name              string
		desc, avail, used uint64
		num               uint32
		ok                bool
	}{
		{"inside", base, base + 4096, base + 8192, 64, true},
		{"desc outside", base - 4096, base + 4096, base + 8192, 64, false},
		{"used past end", base, base + 4096, base + 1<<16 - 100, 64, false},
		{"misaligned avail", base, base + 4098, base + 8192, 64, false},
		{"wrapping address", base, ^uint64(0) - 10, base + 8192, 64, false},
		{"size not power of two", base, base + 4096, base + 8192, 48, false},
		{"size above max", base, base + 4096, base + 8192, 512, false},
	} {
		d := New(mem, Options{})
		if !setup(d, Features) {
			t.Fatal("features")
		}
		d.Write32(regQueueSel, 0)
		d.Write32(regQueueNum, c.num)
		d.Write32(regQueueDescLow, uint32(c.desc))
		d.Write32(regQueueDescHigh, uint32(c.desc>>32))
		d.Write32(regQueueDrvLow, uint32(c.avail))
		d.Write32(regQueueDrvHigh, uint32(c.avail>>32))
		d.Write32(regQueueDevLow, uint32(c.used))
		d.Write32(regQueueDevHigh, uint32(c.used>>32))
		d.Write32(regQueueReady, 1)
		ready := d.Read32(regQueueReady) == 1
		errs := d.Stats().DeviceErrors
		needsReset := d.Read32(regStatus)&statusNeedsReset != 0
		if ready != c.ok || (errs == 0) != c.ok || needsReset == c.ok {
			t.Errorf("%s: ready %v, device errors %d, needs reset %v", c.name, ready, errs, needsReset)
		}
	}
}

// TestTapOffloads: the tap gets exactly the negotiated receive offloads,
// and only combinations Linux takes (TSO needs CSUM, ECN needs TSO).
func TestTapOffloads(t *testing.T) {
	const csum, tso4, tso6, ecn = 1, 2, 4, 8 // TUN_F_* (<linux/if_tun.h>)
	for _, c := range []struct {
		f    uint64
		want uint32
	}{
		{0, 0},
		{FeatureMrgRxBuf, 0},
		{FeatureGuestTSO4 | FeatureGuestTSO6 | FeatureGuestECN, 0},
		{FeatureGuestCSUM, csum},
		{FeatureGuestCSUM | FeatureGuestECN, csum},
		{FeatureGuestCSUM | FeatureGuestTSO4, csum | tso4},
		{FeatureGuestCSUM | FeatureGuestTSO6 | FeatureGuestECN, csum | tso6 | ecn},
		{RxOffloads | TxOffloads | FeatureGuestECN, csum | tso4 | tso6 | ecn},
	} {
		if got := tapOffloads(c.f); got != c.want {
			t.Errorf("features %#x: tap offloads %#x, want %#x", c.f, got, c.want)
		}
	}
}
