package config

import (
	"strings"
	"testing"
)

// TestOffloads: OFFLOADS is on by default, off turns the offloads off (and
// shows in String), anything else is refused with the reason.
func TestOffloads(t *testing.T) {
	base := Values{IP: "10.0.0.1/24", GW: "10.0.0.2", MAC: "02:00:00:00:00:01"}
	for _, tc := range []struct {
		v   string
		off bool
		err string
	}{
		{"", false, ""}, {"on", false, ""}, {" ON ", false, ""}, {"off", true, ""}, {"Off", true, ""},
		{"no", false, `OFFLOADS "no": on or off`}, {"1", false, "on or off"},
	} {
		v := base
		v.Offloads = tc.v
		c, err := ParseValues(v)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("OFFLOADS=%q: error %v, want %q", tc.v, err, tc.err)
			}
			continue
		}
		if err != nil || c.NoOffloads != tc.off || strings.Contains(c.String(), "offloads=off") != tc.off {
			t.Errorf("OFFLOADS=%q: NoOffloads %v, String %q, err %v", tc.v, c.NoOffloads, c, err)
		}
	}
	saved := defaultOffloads
	t.Cleanup(func() { defaultOffloads = saved })
	for _, d := range []string{"on", "off"} {
		defaultOffloads = d
		if c, err := Default(); err != nil || c.NoOffloads != (d == "off") {
			t.Errorf("built with OFFLOADS=%s: NoOffloads %v, err %v", d, c.NoOffloads, err)
		}
	}
}
