// Command tamanet-qemu boots a tamanet image under QEMU on a tap device in a
// private network namespace, waits for its ready line, tells how to reach
// it, and stays attached to the serial console until QEMU exits or Ctrl-C.
// The namespace and QEMU are always removed on the way out.
//
//	go run ./qemu/cmd/tamanet-qemu -target microvm -image build/tamanet-microvm -accel auto
//
// With -dhcp (make qemu IP=dhcp) dnsmasq runs in the namespace on the tap:
// DHCP for 10.0.0.10-10.0.0.100 and DNS for the name host.tamanet.test
// (10.0.0.2, the host side), with no upstream servers.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tamanet/tamanet/qemu/vm"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

func main() {
	os.Exit(run())
}

func run() int {
	target := flag.String("target", "microvm", "board: microvm or mx6ullevk")
	image := flag.String("image", "", "firmware image (default build/tamanet-TARGET)")
	accel := flag.String("accel", "auto", "accelerator: auto, kvm or tcg")
	netns := flag.String("netns", "", "namespace name (default: first free tamanet0, tamanet1, ...)")
	timeout := flag.Duration("timeout", 60*time.Second, "how long to wait for the ready line")
	dhcp := flag.Bool("dhcp", false, "run dnsmasq (DHCP and DNS) on the tap, for images built with IP=dhcp")
	lease := flag.Duration("lease", time.Hour, "DHCP lease time with -dhcp (dnsmasq's minimum is 2m)")
	flag.Parse()

	t, err := vm.ParseTarget(*target)
	if err != nil {
		return fail(err)
	}
	a, err := vm.ParseAccel(*accel)
	if err != nil {
		return fail(err)
	}
	if *image == "" {
		*image = "build/tamanet-" + *target
	}
	if os.Geteuid() != 0 {
		return fail(errors.New("needs root to create the network namespace and tap device"))
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()

	v, err := vm.Start(ctx, vm.Options{
		Target:  t,
		Image:   *image,
		Accel:   a,
		Netns:   *netns,
		Console: os.Stdout,
		Stdin:   os.Stdin,
	})
	if err != nil {
		return fail(err)
	}
	defer func() {
		if err := v.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "tamanet-qemu: cleanup: %v\n", err)
		} else {
			fmt.Fprintf(os.Stderr, "tamanet-qemu: QEMU stopped, namespace %s deleted\n", v.Netns().Name)
		}
	}()
	if *netns == "" && v.Netns().Name != "tamanet0" {
		fmt.Fprintf(os.Stderr, "tamanet-qemu: tamanet0 is taken (another run, or left by a crashed one: `ip netns del tamanet0`), using %s\n", v.Netns().Name)
	}
	if *dhcp {
		d, err := vm.StartDnsmasq(ctx, v.Netns(), vm.DnsmasqOptions{
			DHCPv4: &vm.DHCPv4Range{Start: netip.MustParseAddr("10.0.0.10"), End: netip.MustParseAddr("10.0.0.100"), Lease: *lease},
			Hosts:  []vm.HostRecord{{Name: "host.tamanet.test", Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.2")}}},
		})
		if err != nil {
			return fail(err)
		}
		defer d.Stop()
		fmt.Fprintf(os.Stderr, "tamanet-qemu: dnsmasq on tap0: DHCP 10.0.0.10-10.0.0.100 (lease %v), DNS host.tamanet.test = 10.0.0.2\n", *lease)
	}
	acc, note := v.Accel()
	fmt.Fprintf(os.Stderr, "tamanet-qemu: namespace %s, tap0 10.0.0.2/24, accel %s (%s)\n", v.Netns().Name, acc, note)
	fmt.Fprintf(os.Stderr, "tamanet-qemu: %s\n", v.CommandLine())

	r, err := v.WaitReady(ctx, *timeout)
	if err != nil {
		// The serial output was already shown as it arrived; the
		// error repeats it so a captured log has it in one place.
		return fail(err)
	}
	ns := v.Netns().Name
	ip := r.Addr()
	// IPv6 on the tap: the host side gets fd00::10:2/64 in the default
	// IP6 prefix; the unikernel has its link-local address and IP6.
	ipv6 := ""
	if err := v.Netns().EnableIPv6(ctx, "fd00::10:2/64"); err != nil {
		fmt.Fprintf(os.Stderr, "tamanet-qemu: no IPv6 on the tap: %v\n", err)
	} else if mac, err := net.ParseMAC(r.MAC); err == nil && len(mac) == 6 {
		// The guest derives it the same way (stack.LinkLocal).
		ll := header.LinkLocalAddr(tcpip.LinkAddress(mac))
		ipv6 = fmt.Sprintf("    ip netns exec %[1]s ping -6 %[2]s%%%[3]s   # IPv6 link-local, from the MAC\n"+
			"    ip netns exec %[1]s curl -6 'http://[fd00::10:1]/'   # IPv6, the static IP6= address (default)\n", ns, ll, v.Netns().Tap)
	}
	fmt.Fprintf(os.Stderr, `
tamanet-qemu: the unikernel is up at %[2]s (mac %[3]s, nic %[4]s). From another shell:
    ip netns exec %[1]s ping %[2]s
    ip netns exec %[1]s curl http://%[2]s/
    ip netns exec %[1]s curl http://%[2]s/stats
    ip netns exec %[1]s nc %[2]s 7        # TCP echo (also UDP: nc -u)
    ip netns exec %[1]s nc %[2]s 19       # chargen
%[5]sCtrl-C stops QEMU and deletes the namespace.

`, ns, ip, r.MAC, r.NIC, ipv6+dhcpNote(*dhcp))

	select {
	case <-v.Done():
		if err := v.Err(); err != nil {
			fmt.Fprintf(os.Stderr, "tamanet-qemu: QEMU exited: %v\n", err)
			return 1
		}
		return 0
	case <-ctx.Done():
		fmt.Fprintln(os.Stderr, "\ntamanet-qemu: interrupted")
		return 130
	}
}

func dhcpNote(on bool) string {
	if !on {
		return ""
	}
	return "The address is dnsmasq's lease: see \"dhcp\" in /stats; the guest resolves host.tamanet.test.\n"
}

func fail(err error) int {
	fmt.Fprintf(os.Stderr, "tamanet-qemu: %v\n", err)
	return 1
}
