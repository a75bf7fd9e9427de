package stack

import (
	"github.com/tamanet/tamanet/stack/link"

	"gvisor.dev/gvisor/pkg/tcpip"
	gvstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// batchQDisc is the NIC's queueing discipline (gvstack.NICOptions.QDisc).
//
// gVisor hands a queueing discipline one packet at a time, whoever sends:
// TCP's segments (also those sendTCPBatch cuts from one GSO segment), ACKs,
// UDP, ICMP. Its default discipline wraps each packet in a list of its own
// (an allocation) and calls WritePackets, so every packet paid one
// notification of the device. This one copies the packet into a pool
// buffer and posts it at once (link.Endpoint.Post), in the order gVisor
// wrote it, but leaves the notification to the poll loop: the step ends
// with link.Endpoint.Flush, which kicks once for everything posted since.
// The first packet after a kick wakes the runner, so a sleeping loop comes
// round at once; on tamago's single processor it runs when the writer
// yields, by which time the writer has posted its whole burst. Packets a
// step's deliveries cause (replies, ACKs written in the poll goroutine) go
// out with the same step's flush. A packet is on the ring when WritePacket
// returns and only its doorbell waits (at most link.MaxUnkicked frames
// wait for one), unless the ring was full: then the endpoint holds it for
// the next step (link.MaxHeld) rather than drop it.
type batchQDisc struct {
	ep   *link.Endpoint
	wake func()
}

// WritePacket implements gvstack.QueueingDiscipline.
func (q *batchQDisc) WritePacket(pkt *gvstack.PacketBuffer) tcpip.Error {
	first, err := q.ep.Post(pkt)
	if first {
		q.wake()
	}
	return err
}

// Close implements gvstack.QueueingDiscipline. Nothing is queued.
func (q *batchQDisc) Close() {}
