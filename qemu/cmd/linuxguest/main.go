// Command linuxguest assembles the Linux guest for a target from Debian's
// packages (qemu/linuxguest), cached under ~/.cache/tamanet/linuxguest, and
// prints the files to boot:
//
//	go run ./qemu/cmd/linuxguest -target microvm
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/tamanet/tamanet/internal/prereq"
	"github.com/tamanet/tamanet/qemu/linuxguest"
)

func main() {
	target := flag.String("target", "microvm", "microvm or mx6ullevk")
	cache := flag.String("cache", "", "cache directory (default ~/.cache/tamanet/linuxguest)")
	flag.Parse()
	root, err := prereq.ModuleRoot(".")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	g, err := linuxguest.Build(context.Background(), linuxguest.Options{Target: *target, Cache: *cache, Root: root})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("kernel=%s\ninitrd=%s\n", g.Kernel, g.Initrd)
	if g.DTB != "" {
		fmt.Printf("dtb=%s\n", g.DTB)
	}
	fmt.Printf("append=%s\n", g.Append)
}
