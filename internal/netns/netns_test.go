package netns

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestNetns(t *testing.T) {
	Require(t)
	ctx := context.Background()
	name, err := FreeName("tamanet-unit")
	if err != nil {
		t.Fatal(err)
	}
	ns, err := Create(ctx, name, "tap0", DefaultHostAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Delete()
	if !Exists(name) {
		t.Fatal("namespace not created")
	}
	if _, err := Create(ctx, name, "tap0", DefaultHostAddr); !errors.Is(err, ErrExists) {
		t.Fatalf("second create: %v, want ErrExists", err)
	}
	if n, _ := FreeName("tamanet-unit"); n == name {
		t.Fatalf("FreeName returned the taken %s", n)
	}
	out, err := ns.Command(ctx, "ip", "-4", "-o", "addr", "show", "dev", "tap0").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "10.0.0.2/24") {
		t.Fatalf("tap0 in namespace: %v %s", err, out)
	}
	if _, err := os.Stat("/proc/sys/net/ipv6"); err == nil {
		out, err := ns.Command(ctx, "cat", "/proc/sys/net/ipv6/conf/tap0/disable_ipv6").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "1" {
			t.Fatalf("IPv6 on tap0 not disabled: %v %s", err, out)
		}
	}
	if err := ns.Delete(); err != nil {
		t.Fatal(err)
	}
	if Exists(name) {
		t.Fatal("namespace survived Delete")
	}
	if err := ns.Delete(); err != nil {
		t.Fatalf("second Delete: %v", err)
	}
}

func TestCreateBadName(t *testing.T) {
	for _, name := range []string{"", ".", "..", "a/b", "a b"} {
		if _, err := Create(context.Background(), name, DefaultTap, DefaultHostAddr); err == nil || errors.Is(err, ErrExists) {
			t.Errorf("Create(%q): %v, want a bad-name error", name, err)
		}
	}
}

func TestRunPID(t *testing.T) {
	for _, c := range []struct {
		name string
		pid  int
		ok   bool
	}{
		{"tamanet-e2e-123-0", 123, true},
		{"tamanet-e2e-123-17", 123, true},
		{"tamanet-e2e-dhcp-123-0", 0, false}, // another base's
		{"tamanet-e2e-123", 0, false},
		{"tamanet-e2e-123-", 0, false},
		{"tamanet-e2e--0", 0, false},
		{"tamanet-e2e-0-0", 0, false},
		{"tamanet-e2e-12a-0", 0, false},
		{"tamanet-e2e-123-0-1", 0, false},
		{"tamanet0", 0, false},
	} {
		pid, ok := runPID(c.name, "tamanet-e2e-")
		if pid != c.pid || ok != c.ok {
			t.Errorf("runPID(%q) = %d, %v; want %d, %v", c.name, pid, ok, c.pid, c.ok)
		}
	}
}

// TestReapStale: of the namespaces a base's runs left, only that of a dead
// run that holds no process is deleted.
func TestReapStale(t *testing.T) {
	Require(t, "sleep")
	ctx := context.Background()
	base := RunPrefix("tamanet-reap-") // unique to this test process
	// A PID that has exited: a child that has been waited for.
	c := exec.Command("true")
	if err := c.Run(); err != nil {
		t.Fatal(err)
	}
	dead := c.Process.Pid
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", dead)); err == nil {
		t.Skipf("SKIP: PID %d was reused at once", dead)
	}
	names := map[string]bool{ // name: deleted
		fmt.Sprintf("%s%d-0", base, dead): true,
		fmt.Sprintf("%s%d-1", base, dead): false, // holds a process
		RunPrefix(base) + "0":             false, // this run, alive
		base + "x-0":                      false, // not a run's name
	}
	for n := range names {
		ns, err := Create(ctx, n, "tap0", DefaultHostAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer ns.Delete()
	}
	busy := exec.Command("ip", "netns", "exec", fmt.Sprintf("%s%d-1", base, dead), "sleep", "60")
	if err := busy.Start(); err != nil {
		t.Fatal(err)
	}
	defer busy.Wait()
	defer busy.Process.Kill()
	// ip netns exec execs sleep in place once it has entered the
	// namespace: wait until the namespace shows it.
	for i := 0; ; i++ {
		out, _ := exec.Command("ip", "netns", "pids", fmt.Sprintf("%s%d-1", base, dead)).Output()
		if len(strings.TrimSpace(string(out))) > 0 {
			break
		}
		if i == 100 {
			t.Fatal("the process never showed in its namespace")
		}
		time.Sleep(20 * time.Millisecond)
	}
	reaped, err := ReapStale(base)
	if err != nil {
		t.Fatal(err)
	}
	if len(reaped) != 1 || !names[reaped[0]] {
		t.Errorf("reaped %v", reaped)
	}
	for n, gone := range names {
		if Exists(n) == gone {
			t.Errorf("%s: exists %v, want %v", n, Exists(n), !gone)
		}
	}
}
