//go:build linux

package stacktest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/tamanet/tamanet/internal/tap"
	"github.com/tamanet/tamanet/qemu/vm"
)

// Netns creates a private network namespace named prefix-<pid> holding tap0
// at 10.0.0.2/24 (the host side of the test network), opens the tap from
// inside it and deletes the namespace when the test ends. The caller owns
// the returned file. Netns skips the test, saying why, when it does not
// run as root, when /dev/net/tun is missing, when one of tools (beside ip)
// is not installed, or when the kernel does not permit a namespace here;
// any other failure fails the test.
func Netns(t testing.TB, prefix string, tools ...string) (*vm.Netns, *os.File) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIP: needs root for a network namespace and a tap")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skip("SKIP: no /dev/net/tun")
	}
	for _, tool := range append([]string{"ip"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("SKIP: %s not installed", tool)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := fmt.Sprintf("%s-%d", prefix, os.Getpid())
	ns, err := vm.CreateNetns(ctx, name, "tap0", vm.DefaultHostAddr)
	switch {
	case err == nil:
	case strings.Contains(err.Error(), "Operation not permitted"):
		// Root without CAP_SYS_ADMIN/CAP_NET_ADMIN (an unprivileged
		// container): the prerequisite is missing, not broken.
		t.Skipf("SKIP: not permitted to create a network namespace with a tap: %v", err)
	default:
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Delete() })
	f, err := tap.Open(ns.Name, ns.Tap)
	if err != nil {
		t.Fatal(err)
	}
	return ns, f
}
