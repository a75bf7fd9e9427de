package vm

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"
)

// Ready is what the firmware's ready line announces.
type Ready struct {
	// Prefix is the interface address with its prefix length.
	Prefix netip.Prefix
	// MAC is the station address as printed (aa:bb:cc:dd:ee:ff).
	MAC string
	// NIC is the driver name ("virtio-net", "enet").
	NIC string
}

// Addr returns the guest's address.
func (r Ready) Addr() netip.Addr { return r.Prefix.Addr() }

// readyRE matches the one ready line the firmware prints:
// "tamanet: ready ip=10.0.0.1/24 mac=02:00:00:00:00:01 nic=virtio-net".
var readyRE = regexp.MustCompile(`tamanet: ready ip=(\S+) mac=([0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}) nic=([A-Za-z0-9_-]+)\s*$`)

// ParseReady parses a ready line. ok is false when line is not one; err is
// set when it is one but its fields are invalid.
func ParseReady(line string) (r Ready, ok bool, err error) {
	line = strings.TrimRight(line, "\r\n")
	if !strings.Contains(line, "tamanet: ready ") {
		return Ready{}, false, nil
	}
	m := readyRE.FindStringSubmatch(line)
	if m == nil {
		return Ready{}, true, fmt.Errorf("malformed ready line %q", line)
	}
	p, err := netip.ParsePrefix(m[1])
	if err != nil || !p.Addr().Is4() {
		return Ready{}, true, fmt.Errorf("ready line %q: bad ip=%q", line, m[1])
	}
	return Ready{Prefix: p, MAC: strings.ToLower(m[2]), NIC: m[3]}, true, nil
}
