package netns

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// forTestSeq makes the names ForTest picks unique within the process; the
// process id makes them unique among test binaries running at once.
var forTestSeq atomic.Uint32

// ForTest creates a private network namespace named prefix-<pid>-<n>
// holding DefaultTap at DefaultHostAddr (the host side of the test
// network), opens the tap from inside it and deletes the namespace when the
// test ends. The caller owns the returned file (a device model's AttachTap
// takes it over). An existing namespace of that name is refused, never
// reused or deleted.
//
// ForTest skips the test, saying why, when it does not run as root, when
// /dev/net/tun is missing, when one of tools (beside ip) is not installed,
// or when the kernel does not permit a namespace here; any other failure
// fails the test.
func ForTest(t testing.TB, prefix string, tools ...string) (*Netns, *os.File) {
	t.Helper()
	Require(t, tools...)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := fmt.Sprintf("%s-%d-%d", prefix, os.Getpid(), forTestSeq.Add(1))
	ns, err := Create(ctx, name, DefaultTap, DefaultHostAddr)
	switch {
	case err == nil:
	case strings.Contains(err.Error(), "Operation not permitted"):
		// Root without CAP_SYS_ADMIN/CAP_NET_ADMIN (an unprivileged
		// container): the prerequisite is missing, not broken.
		t.Skipf("SKIP: not permitted to create a network namespace with a tap: %v", err)
	default:
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ns.Delete(); err != nil {
			t.Errorf("delete namespace: %v", err)
		}
	})
	f, err := ns.OpenTap()
	if err != nil {
		t.Fatal(err)
	}
	return ns, f
}

// Run runs name with args inside the namespace and returns its combined
// output; a failure fails t (the test or subtest that calls it).
func (n *Netns) Run(t testing.TB, ctx context.Context, name string, args ...string) string {
	t.Helper()
	out, err := n.Command(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}
