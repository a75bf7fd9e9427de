package netns

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
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
