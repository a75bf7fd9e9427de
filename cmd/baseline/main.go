// Command baseline is the firmware tamanet is compared against: the same
// services as cmd/unikernel (package service, the configuration of
// internal/config, the same ready line with nic=baseline-enet), networked
// the way TamaGo firmware is today: tamago's own ENET driver
// (soc/nxp/enet: fixed DMA buffers, a copy in and out of them, a newly
// allocated slice per received frame), gVisor's link/channel endpoint and
// the copying glue of package internal/baseline, and net.SocketFunc over
// gonet.
//
// It exists only to be measured against tamanet (make bench, qemu/e2e
// -compare). Build it for QEMU's mcimx6ul-evk:
//
//	TAMAGO=$(go tool -n github.com/usbarmory/tamago/cmd/tamago)
//	GOOS=tamago GOOSPKG=github.com/usbarmory/tamago GOARCH=arm GOARM=7 $TAMAGO build \
//	  -tags mx6ullevk,linkramsize -trimpath -ldflags "-s -w -T 0x80010000 -R 0x1000" \
//	  -o build/baseline-mx6ullevk ./cmd/baseline
//
// The memory layout is tamanet's (board/imx6ul: tamago's DMA region in
// external RAM), so tamago's driver keeps its rings and buffers in the same
// kind of memory as tamanet's; everything on the packet path is tamago's
// and gVisor's.
package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/tamanet/tamanet/internal/baseline"
	"github.com/tamanet/tamanet/internal/config"
	"github.com/tamanet/tamanet/service"
)

// NIC is the name in the ready line.
const NIC = "baseline-enet"

// txMode selects the glue's transmit path: "notify" (channel's WriteNotify
// hook, as imx-enet and go-net do) or "goroutine" (ReadContext in a
// goroutine). Set with -ldflags "-X main.txMode=goroutine".
var txMode = "notify"

func main() {
	boot := time.Now()
	if err := run(config.Default, boot, os.Stdout); err != nil {
		fmt.Fprintf(os.Stdout, "tamanet: error: %v\n", err)
		os.Exit(1)
	}
	select {}
}

// board is what a target file offers: it brings the NIC up with station
// address mac and returns it with facts for /stats.
type board struct {
	Name string
	NIC  func(mac net.HardwareAddr) (baseline.Device, map[string]string, func() any, error)
}

func run(configure func() (config.Config, error), boot time.Time, console io.Writer) error {
	cfg, err := configure()
	if err != nil {
		return err
	}
	if cfg.DHCP {
		return errors.New("the baseline firmware takes a static address only: build it without IP=dhcp")
	}
	b, err := platform()
	if err != nil {
		return err
	}
	fmt.Fprintf(console, "tamanet: board=%s %v (baseline: tamago driver + gVisor link/channel, tx=%s)\n", b.Name, cfg, txMode)
	dev, info, devStats, err := b.NIC(cfg.MAC)
	if err != nil {
		return fmt.Errorf("network device: %w", err)
	}
	mode := baseline.TxNotify
	if txMode == "goroutine" {
		mode = baseline.TxGoroutine
	}
	s, err := baseline.New(dev, baseline.Config{Addr: cfg.Addr, Gateway: cfg.Gateway, MAC: cfg.MAC, Tx: mode})
	if err != nil {
		return err
	}
	s.Start()
	installSocketFunc(s)

	if info == nil {
		info = map[string]string{}
	}
	info["board"] = b.Name
	info["nic"] = NIC
	info["ip"] = cfg.Addr.String()
	info["mac"] = s.MAC().String()
	info["tx"] = txMode
	_, err = service.Start(service.Config{
		Listen:       net.Listen,
		ListenPacket: net.ListenPacket,
		Ports:        service.DefaultPorts,
		Stats: func() any {
			st := map[string]any{"glue": s.Counters()}
			if devStats != nil {
				st["device"] = devStats()
			}
			return st
		},
		Info: info,
		Boot: boot,
		Logf: func(format string, args ...any) { fmt.Fprintf(console, "tamanet: "+format+"\n", args...) },
	})
	if err != nil {
		s.Close()
		return err
	}
	fmt.Fprintf(console, "tamanet: ready ip=%v mac=%v nic=%s\n", cfg.Addr, s.MAC(), NIC)
	return nil
}
