package virtio_test

import (
	"context"
	"io"
	"net"
	"net/netip"
	"testing"

	"github.com/tamanet/tamanet/nic/virtio/virtiotest"
	"github.com/tamanet/tamanet/stack"
	"github.com/tamanet/tamanet/stack/stacktest"
)

// BenchmarkBulkTCP moves 1 MiB per op from stack A to stack B over two
// device models back to back, with the transmit offloads (TSO, checksums
// filled by the model) and without: ns/op is per MiB, allocs/op counts
// gVisor's and ours per MiB, and the model's frames per MiB are reported.
func BenchmarkBulkTCP(b *testing.B) {
	for _, bc := range []struct {
		name     string
		features uint64
	}{
		{"offloads", virtiotest.Features | virtiotest.TxOffloads},
		{"none", virtiotest.Features},
	} {
		b.Run(bc.name, func(b *testing.B) {
			node := func(mac [6]byte, addr, peer netip.Prefix) (*stack.Stack, *virtiotest.Device) {
				_, model, drv := stacktest.Virtio(b, virtiotest.Options{MAC: mac, Features: bc.features})
				s, err := stack.New(drv, stack.Config{Addr: addr, Gateway: peer.Addr()})
				if err != nil {
					b.Fatal(err)
				}
				model.SetInterrupt(s.Wake)
				b.Cleanup(func() { s.Close(); drv.Close() })
				return s, model
			}
			sa, ma := node(stacktest.MACA, stacktest.AddrA, stacktest.AddrB)
			sb, mb := node(stacktest.MACB, stacktest.AddrB, stacktest.AddrA)
			virtiotest.Pipe(ma, mb)
			sa.Start()
			sb.Start()
			const mib = 1 << 20
			// The sink answers one byte per MiB received.
			stacktest.ServeTCP(b, sb, "9", func(c net.Conn) {
				buf := make([]byte, mib)
				for {
					if _, err := io.ReadFull(c, buf); err != nil {
						return
					}
					if _, err := c.Write(buf[:1]); err != nil {
						return
					}
				}
			})
			c, err := sa.Dial(context.Background(), "tcp", stacktest.AddrB.Addr().String()+":9")
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			data := make([]byte, mib)
			ack := make([]byte, 1)
			b.SetBytes(mib)
			b.ReportAllocs()
			b.ResetTimer()
			before := ma.Stats()
			for i := 0; i < b.N; i++ {
				if _, err := c.Write(data); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, ack); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			st := ma.Stats()
			b.ReportMetric(float64(st.TxFrames-before.TxFrames)/float64(b.N), "frames/MiB")
			b.ReportMetric(float64(st.TxGSO-before.TxGSO)/float64(b.N), "tso/MiB")
		})
	}
}
