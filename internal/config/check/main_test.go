package main

import (
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-ip", "10.0.0.1/24", "-gw", "10.0.0.2", "-mac", "02:00:00:00:00:01"}, 0, ""},
		{[]string{"-ip", "10.0.0.1/24", "-gw", "", "-mac", "02:00:00:00:00:01"}, 0, ""},
		{[]string{"-ip", "10.0.0.1/24", "-gw", "10.0.1.2", "-mac", "02:00:00:00:00:01"}, 1, `GW "10.0.1.2": outside`},
		{[]string{"-ip", "10.0.0.1", "-gw", "10.0.0.2", "-mac", "02:00:00:00:00:01"}, 1, "missing prefix length"},
		{[]string{"-ip", "10.0.0.1/24", "-gw", "10.0.0.2", "-mac", "01:00:5e:00:00:01"}, 1, "multicast"},
		{[]string{"-ip", "dhcp", "-fallback", "10.0.0.1/24", "-gw", "10.0.0.2", "-mac", "02:00:00:00:00:01", "-dns", "10.0.0.2"}, 0, ""},
		{[]string{"-ip", "dhcp", "-fallback", "10.0.0.1", "-mac", "02:00:00:00:00:01"}, 1, "FALLBACK"},
		{[]string{"-ip", "10.0.0.1/24", "-mac", "02:00:00:00:00:01", "-dns", "x"}, 1, "DNS"},
		{[]string{"-ip", "10.0.0.1/24", "-gw", "10.0.0.2", "-mac", "02:00:00:00:00:01", "-ip6", "fd00::10:1/64"}, 0, ""},
		{[]string{"-ip", "10.0.0.1/24", "-gw", "10.0.0.2", "-mac", "02:00:00:00:00:01", "-ip6", "10.0.0.3/24"}, 1, `IP6 "10.0.0.3/24": not IPv6`},
		{[]string{"-ip", "10.0.0.1/24", "extra"}, 2, "unexpected arguments"},
		{[]string{"-bogus"}, 2, "flag provided but not defined"},
	} {
		var out strings.Builder
		code := run(tc.args, &out)
		if code != tc.code {
			t.Errorf("run(%q) = %d, want %d (stderr %q)", tc.args, code, tc.code, out.String())
		}
		if tc.want == "" && out.Len() != 0 {
			t.Errorf("run(%q) printed %q, want nothing", tc.args, out.String())
		}
		if !strings.Contains(out.String(), tc.want) {
			t.Errorf("run(%q) printed %q, want it to contain %q", tc.args, out.String(), tc.want)
		}
	}
}
