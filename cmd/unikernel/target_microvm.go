//go:build tamago && microvm

package main

import (
	"github.com/tamanet/tamanet/board/microvm"
	"github.com/tamanet/tamanet/internal/config"
)

func platform() (target, error) {
	b := microvm.New()
	// The firmware refuses to start on a configuration error, which it
	// reports itself; here only the offloads switch matters.
	if cfg, err := config.Default(); err == nil {
		b.NoOffloads = cfg.NoOffloads
	}
	return targetOf[*microvm.NIC](b), nil
}
