// Package netns makes the private network namespaces every test that sends
// packets runs in: a named namespace holding one tap device, the host side
// of the test network (10.0.0.2/24; the guest, a QEMU guest or a device
// model attached to the tap, is 10.0.0.1), with IPv6 off on the tap until
// EnableIPv6. It runs commands inside the namespace, opens the tap from
// inside it (Linux) and deletes it again, and ForTest does all of that for
// a test. qemu/vm boots its guests in one; the host tests of the stack and
// the drivers attach a device model to the tap.
//
// Nothing here sends a packet. Create refuses a namespace that exists
// already, so the Netns it returns, and the one Delete then removes, is
// always one its caller made.
package netns

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// Dir is where iproute2 (`ip netns add`) binds named namespaces.
const Dir = "/var/run/netns"

// DefaultHostAddr is the host side of the tap in the test namespace; the
// guest is 10.0.0.1 on the same /24.
const DefaultHostAddr = "10.0.0.2/24"

// DefaultTap is the tap device's name in a namespace ForTest creates.
const DefaultTap = "tap0"

// Netns is a named network namespace holding one tap device. All traffic
// to and from the guest stays inside it.
type Netns struct {
	// Name is the namespace name for `ip netns exec`.
	Name string
	// Tap is the tap device's name inside the namespace.
	Tap string
}

// ErrExists is returned when the namespace is already there, usually
// left behind by a run that was killed.
var ErrExists = errors.New("network namespace already exists")

// Exists reports whether a named namespace exists.
func Exists(name string) bool {
	_, err := os.Stat(filepath.Join(Dir, name))
	return err == nil
}

// FreeName returns the first of prefix0, prefix1, ... that does not
// exist yet.
func FreeName(prefix string) (string, error) {
	for i := 0; i < 100; i++ {
		n := fmt.Sprintf("%s%d", prefix, i)
		if !Exists(n) {
			return n, nil
		}
	}
	return "", fmt.Errorf("no free namespace name %s0..%s99: delete stale ones with `ip netns del`", prefix, prefix)
}

// RunPrefix returns the name prefix, base followed by this process's PID
// and a dash, for FreeName to number the namespaces of this run: ReapStale
// can then tell the namespaces of a run that was killed before its
// clean-up from those of a run still going.
func RunPrefix(base string) string {
	return fmt.Sprintf("%s%d-", base, os.Getpid())
}

// ReapStale deletes the namespaces that a RunPrefix(base) run left behind
// when it was killed: those named base, a PID, a dash and a number, whose
// process no longer exists and which hold no process. It returns the
// names it deleted. A namespace whose name does not parse, whose process
// is alive (or whose PID was reused), or that still holds a process is
// left alone.
func ReapStale(base string) ([]string, error) {
	ents, err := os.ReadDir(Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var reaped []string
	for _, e := range ents {
		pid, ok := runPID(e.Name(), base)
		if !ok {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			continue // the run is alive, or its PID was reused
		}
		out, err := exec.Command("ip", "netns", "pids", e.Name()).Output()
		if err != nil || len(strings.TrimSpace(string(out))) > 0 {
			continue // unreadable, or something still runs inside
		}
		if err := ip(context.Background(), "netns", "del", e.Name()); err != nil {
			return reaped, err
		}
		reaped = append(reaped, e.Name())
	}
	return reaped, nil
}

// runPID parses name as base, a PID, a dash and a number.
func runPID(name, base string) (int, bool) {
	rest, ok := strings.CutPrefix(name, base)
	if !ok {
		return 0, false
	}
	p, n, ok := strings.Cut(rest, "-")
	if !ok || !allDigits(p) || !allDigits(n) {
		return 0, false
	}
	pid, err := strconv.Atoi(p)
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, true
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// ip runs one iproute2 command and returns its error with its output.
func ip(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Create creates namespace name with loopback up and a tap device tap
// carrying hostAddr (e.g. "10.0.0.2/24"), IPv6 off on the tap. It refuses
// an existing namespace (ErrExists) rather than reuse or delete what another run may own. On
// error nothing is left behind.
func Create(ctx context.Context, name, tap, hostAddr string) (*Netns, error) {
	if name == "" || strings.ContainsAny(name, "/ \t") || name == "." || name == ".." {
		return nil, fmt.Errorf("bad namespace name %q", name)
	}
	if Exists(name) {
		return nil, fmt.Errorf("%w: %s (left by a crashed run? remove it with `ip netns del %s`)", ErrExists, name, name)
	}
	if err := ip(ctx, "netns", "add", name); err != nil {
		return nil, err
	}
	n := &Netns{Name: name, Tap: tap}
	steps := [][]string{
		{"-n", name, "link", "set", "lo", "up"},
		{"-n", name, "tuntap", "add", "dev", tap, "mode", "tap"},
		{"-n", name, "addr", "add", hostAddr, "dev", tap},
		{"-n", name, "link", "set", tap, "up"},
	}
	for i, s := range steps {
		if err := ip(ctx, s...); err != nil {
			n.Delete()
			return nil, err
		}
		if i == 1 {
			// No IPv6 on the tap: the guest is IPv4 only, and router
			// solicitations and DAD probes would only be noise in its
			// drop counters. Hosts without IPv6 have nothing to turn off.
			exec.CommandContext(ctx, "ip", "netns", "exec", name, "sh", "-c",
				"echo 1 > /proc/sys/net/ipv6/conf/"+tap+"/disable_ipv6").Run()
		}
	}
	return n, nil
}

// Command returns a command that runs name with args inside the namespace.
func (n *Netns) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// IP runs `ip -n NAME args...`.
func (n *Netns) IP(ctx context.Context, args ...string) error {
	return ip(ctx, append([]string{"-n", n.Name}, args...)...)
}

// Delete removes the namespace; its tap device goes with it. Deleting a
// namespace that is already gone is not an error.
func (n *Netns) Delete() error {
	if !Exists(n.Name) {
		return nil
	}
	return ip(context.Background(), "netns", "del", n.Name)
}

// EnableIPv6 turns IPv6 on for the namespace's tap (Create leaves it
// off) and gives the tap addr, e.g. "fd00::10:2/64", without duplicate
// address detection so it is usable at once. The tap keeps its link-local
// address; it accepts no router advertisements (it is the router side).
func (n *Netns) EnableIPv6(ctx context.Context, addr string) error {
	conf := "/proc/sys/net/ipv6/conf/" + n.Tap + "/"
	script := "echo 0 > " + conf + "accept_ra && echo 0 > " + conf + "disable_ipv6"
	if out, err := exec.CommandContext(ctx, "ip", "netns", "exec", n.Name, "sh", "-c", script).CombinedOutput(); err != nil {
		return fmt.Errorf("enable IPv6 on %s in %s: %v: %s", n.Tap, n.Name, err, out)
	}
	return n.IP(ctx, "-6", "addr", "add", addr, "dev", n.Tap, "nodad")
}
