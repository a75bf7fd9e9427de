package netns

import (
	"os"
	"os/exec"
	"testing"
)

// Require skips the test, saying why, unless it can make a network
// namespace with a tap: it runs as root, /dev/net/tun exists, and ip and
// every one of tools are installed.
func Require(t testing.TB, tools ...string) {
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
}
