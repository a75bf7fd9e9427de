//go:build tamago && mx6ullevk

package main

import (
	"github.com/tamanet/tamanet/alloc"
	"github.com/tamanet/tamanet/board/mx6ullevk"
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
		Board: "mx6ullevk",
		DMA:   mx6ullevk.DMA(),
		NewNIC: func(arena *alloc.Arena, pool *alloc.Pool) (nic.Device, error) {
			return mx6ullevk.NIC(cfg.MAC, arena, pool)
		},
		Info:         mx6ullevk.Info,
		NICInterrupt: mx6ullevk.EnableNICInterrupt,
	}, nil
}
