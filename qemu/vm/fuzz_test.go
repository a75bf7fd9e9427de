package vm

import (
	"regexp"
	"strings"
	"testing"
)

var fzMAC = regexp.MustCompile(`^[0-9a-f]{2}(:[0-9a-f]{2}){5}$`)
var fzNIC = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// FuzzParseReady feeds arbitrary serial lines to ParseReady. It must not
// panic; ok must say whether the line claims to be a ready line; an accepted
// line must carry each returned field (ip=, mac=, nic=) and the fields must
// format back into a line that parses to the same Ready.
func FuzzParseReady(f *testing.F) {
	f.Add("tamanet: ready ip=10.0.0.1/24 mac=02:00:00:00:00:01 nic=virtio-net\r\n")
	f.Add("noise tamanet: ready ip=10.0.0.1/24 mac=02:AA:00:00:00:01 nic=enet  ")
	f.Add("tamanet: ready ip=::1/128 mac=02:00:00:00:00:01 nic=virtio-net")
	f.Add("tamanet: ready ip=10.0.0.1 mac=02:00:00:00:00:01 nic=virtio-net")
	f.Add("tamanet: ready ip=10.0.0.1/24 mac=02:00:00:00:00 nic=virtio-net")
	f.Add("tamanet: ready ip=10.0.0.1/24 mac=02:00:00:00:00:01 nic=")
	f.Add("tamanet: ready ip=10.0.0.1/24 mac=02:00:00:00:00:01 nic=enet tamanet: ready ip=10.0.0.2/24 mac=02:00:00:00:00:02 nic=x")
	f.Add("tamanet: booting")
	f.Fuzz(func(t *testing.T, line string) {
		r, ok, err := ParseReady(line)
		if want := strings.Contains(strings.TrimRight(line, "\r\n"), "tamanet: ready "); ok != want {
			t.Fatalf("ok = %v for %q", ok, line)
		}
		if !ok || err != nil {
			if r != (Ready{}) {
				t.Fatalf("ok=%v err=%v with fields %+v", ok, err, r)
			}
			if !ok && err != nil {
				t.Fatalf("error %v for a line that is not a ready line", err)
			}
			return
		}
		if !r.Prefix.IsValid() || !r.Addr().Is4() || r.Prefix.Bits() < 0 {
			t.Fatalf("accepted prefix %v", r.Prefix)
		}
		if !fzMAC.MatchString(r.MAC) || !fzNIC.MatchString(r.NIC) {
			t.Fatalf("accepted mac %q nic %q", r.MAC, r.NIC)
		}
		low := strings.ToLower(line)
		if !strings.Contains(line, "ip="+r.Prefix.String()+" ") || !strings.Contains(low, "mac="+r.MAC+" ") ||
			!strings.Contains(line, "nic="+r.NIC) {
			t.Fatalf("fields %v %s %s not in %q", r.Prefix, r.MAC, r.NIC, line)
		}
		again, ok, err := ParseReady("tamanet: ready ip=" + r.Prefix.String() + " mac=" + r.MAC + " nic=" + r.NIC)
		if !ok || err != nil || again != r {
			t.Fatalf("round trip %+v -> %+v ok=%v err=%v", r, again, ok, err)
		}
	})
}
