//go:build linux

// Command linuxguest runs the firmware's services (package service: echo,
// discard, chargen, HTTP and UDP echo on the same ports) on Linux's own
// stack. It is /init's last step in the Linux guest that qemu/linuxguest
// assembles, the reference tamanet is measured against on the same QEMU
// machine; /init has configured the interface. It prints the firmware's
// ready line, so the same tools find it:
//
//	tamanet: ready ip=10.0.0.1/24 mac=02:00:00:00:00:01 nic=linux-virtio_net
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tamanet/tamanet/service"
)

func main() {
	boot := time.Now()
	ifName := flag.String("if", "eth0", "the interface /init configured")
	nicName := flag.String("nic", "linux", "the nic= of the ready line")
	ip := flag.String("ip", "10.0.0.1/24", "the address /init gave the interface, for the ready line")
	flag.Parse()

	ifi, err := net.InterfaceByName(*ifName)
	if err != nil {
		fmt.Printf("tamanet: error: %v\n", err)
		os.Exit(1)
	}
	info := map[string]string{"board": "linux", "nic": *nicName, "ip": *ip, "mac": ifi.HardwareAddr.String(), "kernel": kernelRelease()}
	_, err = service.Start(service.Config{
		Listen:       net.Listen,
		ListenPacket: net.ListenPacket,
		Ports:        service.DefaultPorts,
		Stats:        func() any { return stats(*ifName) },
		Info:         info,
		Boot:         boot,
		Logf:         func(format string, args ...any) { fmt.Printf("tamanet: "+format+"\n", args...) },
	})
	if err != nil {
		fmt.Printf("tamanet: error: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("tamanet: ready ip=%s mac=%s nic=%s\n", *ip, ifi.HardwareAddr, *nicName)
	select {}
}

func kernelRelease() string {
	b, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return strings.TrimSpace(string(b))
}

// stats is /stats: the interface's counters from sysfs, under the names
// tamanet's /stats uses for its NIC's (nic.rx.packets, nic.tx.packets).
func stats(ifName string) any {
	read := func(name string) uint64 {
		b, _ := os.ReadFile(filepath.Join("/sys/class/net", ifName, "statistics", name))
		v, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		return v
	}
	type dir struct {
		Packets uint64 `json:"packets"`
		Bytes   uint64 `json:"bytes"`
		Dropped uint64 `json:"dropped"`
		Errors  uint64 `json:"errors"`
	}
	return map[string]any{
		"nic": map[string]dir{
			"rx": {read("rx_packets"), read("rx_bytes"), read("rx_dropped"), read("rx_errors")},
			"tx": {read("tx_packets"), read("tx_bytes"), read("tx_dropped"), read("tx_errors")},
		},
	}
}
