package stack

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/tamanet/tamanet/stack/link"
	"github.com/tamanet/tamanet/stack/stacktest"
)

// TestReplyCarriesAck: in request/reply round trips over two stacks,
// the echo side's ACK of each request is replaced by its reply
// (link.Stats.TxAcksMerged) and not sent, so it sends about one frame per
// round trip, not two; the echo is still exact.
func TestReplyCarriesAck(t *testing.T) {
	a, b := virtioPair(t)
	stacktest.ServeEcho(t, b.s)
	c, err := a.s.Dial(context.Background(), "tcp", "10.0.0.2:7")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	var before link.Stats
	b.s.Endpoint().Stats(&before)
	const n = 200
	out, in := make([]byte, 64), make([]byte, 64)
	for i := range n {
		out[0] = byte(i)
		if _, err := c.Write(out); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, in); err != nil {
			t.Fatal(err)
		}
		if in[0] != byte(i) {
			t.Fatalf("round trip %d: echo %d", i, in[0])
		}
	}
	var after link.Stats
	b.s.Endpoint().Stats(&after)
	merged, frames := after.TxAcksMerged-before.TxAcksMerged, after.Tx.Packets-before.Tx.Packets
	t.Logf("%d round trips: the echo side sent %d frames, %d ACKs replaced by the reply", n, frames, merged)
	// Most are, but on a loaded host under -race the runner's Flush
	// can come between the ACK and the reply more often.
	if merged < n/10 {
		t.Errorf("%d of %d ACKs replaced by the reply, want at least %d", merged, n, n/10)
	}
	// A merged ACK is one not sent: replies and ACKs together are at
	// most 2n frames (a few more for window updates).
	if frames+merged > 2*n+10 {
		t.Errorf("%d frames sent and %d ACKs counted as merged, for %d replies: merged ACKs were sent too", frames, merged, n)
	}
}
