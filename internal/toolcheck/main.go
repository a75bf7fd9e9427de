// Command toolcheck is the first step of `make test`: it fails, with the
// reason and the command that fixes it, when this machine cannot build,
// boot and test the firmware, and it compiles and vets the firmware's
// packages for GOOS=tamago on every board, which the host toolchain never
// sees.
//
//	go run ./internal/toolcheck -prereq    # TamaGo distribution, root, /dev/net/tun, ip, QEMU
//	go run ./internal/toolcheck -tamago    # go build + go vet for every board configuration
//
// Machines that cannot run the firmware use `make test-host` instead.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/tamanet/tamanet/internal/prereq"
)

func main() {
	checkPrereq := flag.Bool("prereq", false, "check what building and booting the firmware needs")
	tamago := flag.Bool("tamago", false, "compile and vet every firmware package for each board with the TamaGo toolchain")
	flag.Parse()
	if !*checkPrereq && !*tamago {
		fmt.Fprintln(os.Stderr, "toolcheck: give -prereq and/or -tamago")
		os.Exit(2)
	}
	root, err := prereq.ModuleRoot(".")
	if err != nil {
		fail(err)
	}
	if *checkPrereq {
		problems := prereq.Check(root, true, "qemu-system-x86_64", "qemu-system-arm")
		for _, p := range problems {
			fmt.Fprintf(os.Stderr, "toolcheck: FAIL: %v\n", p)
		}
		if len(problems) > 0 {
			fmt.Fprintln(os.Stderr, "toolcheck: `make test` builds, boots and tests the firmware and cannot here; fix the above, or run `make test-host` (host tests only)")
			os.Exit(1)
		}
		fmt.Println("toolcheck: TamaGo distribution, root, /dev/net/tun, ip and QEMU present")
	}
	if *tamago {
		failed := 0
		for _, b := range Boards {
			fmt.Printf("toolcheck: compile, link the firmware, vet: GOOS=tamago GOARCH=%s%s -tags %s\n", b.GOARCH, goarmNote(b), b.Tags)
			if err := CheckBoard(root, b, nil, os.Stdout); err != nil {
				fmt.Fprintf(os.Stderr, "toolcheck: FAIL: %v\n", err)
				failed++
			}
		}
		if failed > 0 {
			os.Exit(1)
		}
	}
}

func goarmNote(b Board) string {
	if b.GOARM == "" {
		return ""
	}
	return " GOARM=" + b.GOARM
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "toolcheck: FAIL: %v\n", err)
	os.Exit(1)
}
