// Command check validates the unikernel's build-time network configuration.
// The Makefile runs it before building the image, so that invalid IP, GW,
// MAC, DNS, FALLBACK, IP6 or OFFLOADS values fail the build with the reason:
//
//	go run ./internal/config/check -ip 10.0.0.1/24 -gw 10.0.0.2 -mac 02:00:00:00:00:01 -ip6 fd00::10:1/64
//	go run ./internal/config/check -ip dhcp -fallback 10.0.0.1/24 -gw 10.0.0.2 -mac 02:00:00:00:00:01 -dns 10.0.0.2
//
// It prints nothing and exits 0 when the values are valid, and prints the
// error and exits 1 otherwise (2 for a usage error).
package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/tamanet/tamanet/internal/config"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	ip := fs.String("ip", "", "IPv4 address with prefix length, e.g. 10.0.0.1/24")
	gw := fs.String("gw", "", "default gateway inside the prefix, or empty for none")
	mac := fs.String("mac", "", "unicast MAC address, e.g. 02:00:00:00:00:01")
	dns := fs.String("dns", "", "comma-separated IPv4 DNS servers, or empty")
	fallback := fs.String("fallback", "", "with -ip dhcp: static address with prefix length used when no server answers, or empty")
	ip6 := fs.String("ip6", "", "static IPv6 address with prefix length, e.g. fd00::10:1/64, or empty for none")
	offloads := fs.String("offloads", "on", "NIC checksum and segmentation offloads: on or off")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(stderr, "check: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if _, err := config.ParseValues(config.Values{IP: *ip, GW: *gw, MAC: *mac, DNS: *dns, Fallback: *fallback, IP6: *ip6, Offloads: *offloads}); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}
