package stack

import (
	"testing"
	"time"

	"github.com/tamanet/tamanet/nic/nictest"
	"github.com/tamanet/tamanet/stack/link"
)

// linkPolled is a device that learns its link by asking (nic.LinkPoller)
// and counts the polls.
type linkPolled struct {
	*nictest.Device
	polls int
}

func (l *linkPolled) PollLink() { l.polls++ }

// TestLinkPoll checks that Maintain polls the link once LinkPollInterval
// has passed since the last poll, and not on every call.
func TestLinkPoll(t *testing.T) {
	pool := newPool(t, 64)
	dev := &linkPolled{Device: nictest.New(pool, nictest.Config{MAC: [6]byte{2, 0, 0, 0, 0, 1}, RxRing: 32})}
	s, err := New(dev, Config{Addr: addrA})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Maintain()
	if dev.polls != 0 {
		t.Fatalf("link polled %d times before LinkPollInterval passed", dev.polls)
	}
	s.lastLink = time.Now().Add(-LinkPollInterval)
	s.Maintain()
	s.Maintain()
	if dev.polls != 1 {
		t.Fatalf("link polled %d times, want 1", dev.polls)
	}
	if !s.Endpoint().PollLink() || dev.polls != 2 {
		t.Fatalf("Endpoint.PollLink: %d polls", dev.polls)
	}
	plain, err := link.New(&link.Options{Device: nictest.New(pool, nictest.Config{MAC: [6]byte{2, 0, 0, 0, 0, 2}})})
	if err != nil || plain.PollLink() {
		t.Fatalf("a device without PollLink polled: %v", err)
	}
}
