//go:build tamago && usbarmory

package main

import (
	"github.com/tamanet/tamanet/alloc"
	"github.com/tamanet/tamanet/board/usbarmory"
	"github.com/tamanet/tamanet/internal/config"
	"github.com/tamanet/tamanet/nic"
)

func platform() (target, error) {
	// The ENET filters unicast frames by its station address (PALR,
	// PAUR): program the address the stack will use.
	cfg, err := config.Default()
	if err != nil {
		return target{}, err
	}
	return target{
		Board: "usbarmory",
		DMA:   usbarmory.DMA(),
		NewNIC: func(arena *alloc.Arena, pool *alloc.Pool) (nic.Device, error) {
			return usbarmory.NIC(cfg.MAC, arena, pool)
		},
		Info:         usbarmory.Info,
		NICInterrupt: usbarmory.EnableNICInterrupt,
	}, nil
}
