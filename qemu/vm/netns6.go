package vm

import (
	"context"
	"fmt"
	"os/exec"
)

// EnableIPv6 turns IPv6 on for the namespace's tap (CreateNetns leaves it
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
