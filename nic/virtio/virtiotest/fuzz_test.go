package virtiotest

import (
	"encoding/binary"
	"testing"
)

// FuzzTxHeader feeds the model's transmit side arbitrary virtio-net headers
// and packets under arbitrary negotiated offloads: it must never panic,
// never stage a frame longer than MaxFrame, and either drop the packet
// (counted in BadHeaders, Oversize or DeviceErrors) or put frames out.
func FuzzTxHeader(f *testing.F) {
	gso := make([]byte, 14+20+20+3000)
	binary.BigEndian.PutUint16(gso[12:], 0x0800)
	gso[14], gso[14+9], gso[34+12] = 0x45, 6, 5<<4
	hdr := make([]byte, hdrSize)
	hdr[hdrFlags], hdr[hdrGSOType] = hdrFNeedsCsum, gsoTCPv4
	binary.LittleEndian.PutUint16(hdr[hdrHdrLen:], 54)
	binary.LittleEndian.PutUint16(hdr[hdrGSOSize:], 1448)
	binary.LittleEndian.PutUint16(hdr[hdrCsumStart:], 34)
	binary.LittleEndian.PutUint16(hdr[hdrCsumOffset:], 16)
	f.Add(hdr, gso, uint8(0xff))
	f.Add(hdr, gso[:60], uint8(0xff))
	f.Add(hdr, gso, uint8(1))
	f.Add(make([]byte, hdrSize), gso[:100], uint8(0))
	hdr6 := append([]byte(nil), hdr...)
	hdr6[hdrGSOType] = gsoTCPv6 | gsoECN
	g6 := make([]byte, 14+40+20+2000)
	binary.BigEndian.PutUint16(g6[12:], 0x86dd)
	g6[14], g6[14+6], g6[54+12] = 0x60, 6, 5<<4
	f.Add(hdr6, g6, uint8(0xff))

	d := New(make([]byte, 4096), Options{})
	stage := make([][]byte, 64)
	stageN := make([]int, len(stage))
	for i := range stage {
		stage[i] = make([]byte, MaxFrame)
	}
	f.Fuzz(func(t *testing.T, h, p []byte, feat uint8) {
		if len(h) < hdrSize || len(p) > MaxTxPacket {
			return
		}
		d.drvFeatures = featureVersion1
		for i, b := range []uint64{FeatureCSUM, FeatureHostTSO4, FeatureHostTSO6, FeatureHostECN} {
			if feat&(1<<i) != 0 {
				d.drvFeatures |= b
			}
		}
		d.stats = Stats{}
		d.tx.active = false
		total := copy(d.tx.pkt, h[:hdrSize])
		total += copy(d.tx.pkt[total:], p)
		out := 0
		k, done := d.txFrameLocked(0, total, stage, stageN, 0)
		for i := 0; ; i++ {
			for j := 0; j < k; j++ {
				if stageN[j] > MaxFrame || stageN[j] < 0 {
					t.Fatalf("staged a %d-byte frame", stageN[j])
				}
			}
			out += k
			if done {
				break
			}
			if i > 1<<16 {
				t.Fatal("segmentation does not end")
			}
			k = d.segmentLocked(stage, stageN, 0)
			done = !d.tx.active
		}
		st := d.stats
		dropped := st.BadHeaders + st.Oversize + st.DeviceErrors
		if (out == 0) != (dropped == 1) || dropped > 1 {
			t.Fatalf("%d frames out, %d drops (%+v)", out, dropped, st)
		}
	})
}
