package link

import (
	"github.com/tamanet/tamanet/nic"

	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// MaxHeld is how many packets Post holds back while the transmit ring is
// full. The ring's bytes, not its slots, are what runs out: 256 slots of
// 2 KiB pool buffers hold about 512 KiB, fewer than eight 64 KiB TSO
// segments, and gVisor's congestion window grows past that on a fast link.
// A packet dropped there is a loss TCP must recover from (SACK recovery,
// or a retransmission timeout for a tail), so Post keeps it for the next
// step instead; a queue full too drops it, counted as RingFull.
const MaxHeld = 256

// holdQueue is a fixed ring of held packets: no allocation per packet.
// sent is, per packet, the TCP payload already posted as frames cut from
// it (writeSegments), so a packet the ring stopped halfway resumes where
// it stopped.
type holdQueue struct {
	pkts    [MaxHeld]*stack.PacketBuffer
	sent    [MaxHeld]int
	head, n int
}

// hold keeps a reference to pkt at the queue's tail, with sent bytes of
// its payload already posted, or reports false when MaxHeld are waiting
// already. Caller holds txMu.
func (e *Endpoint) hold(pkt *stack.PacketBuffer, sent int) bool {
	q := &e.held
	if q.n == MaxHeld {
		return false
	}
	i := (q.head + q.n) % MaxHeld
	q.pkts[i] = pkt.IncRef()
	q.sent[i] = sent
	q.n++
	e.nheld.Store(int32(q.n))
	e.heldTotal.Add(1)
	return true
}

// drainHeld posts held packets, oldest first, until the ring is full
// again, and returns how many it posted; a packet the driver refuses for
// another reason is dropped and counted as Post would. The frames wait
// for the caller's kick. Caller holds txMu.
func (e *Endpoint) drainHeld(maxFrame int) int {
	q := &e.held
	posted := 0
	for q.n > 0 {
		pkt := q.pkts[q.head]
		full := false
		cause, ok := e.writeOne(pkt, maxFrame, &full, &q.sent[q.head])
		if !ok && cause == nic.RingFull {
			break
		}
		if ok {
			posted++
		} else {
			e.tx.Drop(cause)
		}
		q.pkts[q.head] = nil
		q.sent[q.head] = 0
		q.head = (q.head + 1) % MaxHeld
		q.n--
		pkt.DecRef()
	}
	e.nheld.Store(int32(q.n))
	return posted
}

// releaseHeld drops every held packet's reference, uncounted: the endpoint
// is closing. Caller holds txMu.
func (e *Endpoint) releaseHeld() {
	q := &e.held
	for q.n > 0 {
		q.pkts[q.head].DecRef()
		q.pkts[q.head] = nil
		q.head = (q.head + 1) % MaxHeld
		q.n--
	}
	e.nheld.Store(0)
}
