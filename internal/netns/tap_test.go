//go:build linux

package netns

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"testing"
	"time"
)

// arpRequest is who-has 10.0.0.2 tell 10.0.0.1 from 02:00:00:00:00:01.
func arpRequest() []byte {
	f := make([]byte, 42)
	copy(f[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(f[6:12], []byte{2, 0, 0, 0, 0, 1})
	binary.BigEndian.PutUint16(f[12:], 0x0806)
	binary.BigEndian.PutUint16(f[14:], 1)      // Ethernet
	binary.BigEndian.PutUint16(f[16:], 0x0800) // IPv4
	f[18], f[19] = 6, 4
	binary.BigEndian.PutUint16(f[20:], 1) // request
	copy(f[22:28], []byte{2, 0, 0, 0, 0, 1})
	copy(f[28:32], []byte{10, 0, 0, 1})
	copy(f[38:42], []byte{10, 0, 0, 2})
	return f
}

// isARPReply reports whether f answers arpRequest.
func isARPReply(f []byte) bool {
	return len(f) >= 42 && binary.BigEndian.Uint16(f[12:]) == 0x0806 &&
		binary.BigEndian.Uint16(f[20:]) == 2 && bytes.Equal(f[28:32], []byte{10, 0, 0, 2}) &&
		bytes.Equal(f[0:6], []byte{2, 0, 0, 0, 0, 1})
}

func TestOpenInNamespace(t *testing.T) {
	_, f := ForTest(t, "tamanet-tap-test")
	defer f.Close()
	name, flags, err := TapName(f)
	if err != nil || name != "tap0" || flags&(iffTap|iffNoPI) != iffTap|iffNoPI {
		t.Fatalf("attached to %q flags %#x err %v", name, flags, err)
	}
	// Linux in the namespace answers an ARP request written to the tap:
	// the file is attached to the tap inside ns, not to a new one.
	// The request is repeated, as ARP does, in case the first one
	// arrives while the link is still coming up.
	buf := make([]byte, 2048)
	replied := false
	for try := 0; try < 10 && !replied; try++ {
		if _, err := f.Write(arpRequest()); err != nil {
			t.Fatal(err)
		}
		f.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		for {
			n, err := f.Read(buf)
			if err != nil {
				break
			}
			if isARPReply(buf[:n]) {
				replied = true
				break
			}
		}
	}
	if !replied {
		t.Fatal("no ARP reply from the namespace")
	}
	// Close interrupts a blocked Read.
	done := make(chan error, 1)
	f.SetReadDeadline(time.Time{})
	go func() {
		for {
			if _, err := f.Read(buf); err != nil {
				done <- err
				return
			}
		}
	}()
	time.Sleep(50 * time.Millisecond)
	f.Close()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrClosed) {
			t.Fatalf("Read after Close: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not interrupt Read")
	}
}

func TestOpenErrors(t *testing.T) {
	ns, f := ForTest(t, "tamanet-tap-test")
	f.Close()
	if f, err := OpenTap(ns.Name, "nosuchtap"); err == nil {
		f.Close()
		t.Fatal("opened a tap that does not exist")
	}
	if f, err := OpenTap("tamanet-no-such-ns", "tap0"); err == nil {
		f.Close()
		t.Fatal("opened a tap in a namespace that does not exist")
	}
	if f, err := OpenTap("../etc", "tap0"); err == nil {
		f.Close()
		t.Fatal("accepted a namespace path")
	}
}

// TestSetTapOffload: the kernel takes every combination a hypervisor sets
// for a guest's receive offloads and refuses the ones if_tun.h rules out;
// a tap without IFF_VNET_HDR takes only 0.
func TestSetTapOffload(t *testing.T) {
	ns, plain := ForTest(t, "tamanet-tap-test")
	defer plain.Close()
	if err := SetTapOffload(plain, TunFCsum); err == nil {
		t.Error("TUN_F_CSUM set on a tap without IFF_VNET_HDR")
	}
	plain.Close()
	f, err := ns.OpenTapVnet()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, c := range []struct {
		flags uint32
		ok    bool
	}{
		{0, true},
		{TunFCsum, true},
		{TunFCsum | TunFTSO4, true},
		{TunFCsum | TunFTSO6, true},
		{TunFCsum | TunFTSO4 | TunFTSO6 | TunFTSOECN, true},
		{TunFTSO4, false},
		{TunFCsum | TunFTSOECN, false},
		{0x10000, false},
		{0, true},
	} {
		if err := SetTapOffload(f, c.flags); (err == nil) != c.ok {
			t.Errorf("TUNSETOFFLOAD %#x: %v", c.flags, err)
		}
	}
}
