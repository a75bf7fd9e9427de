//go:build tamago && usbarmory

package main

import (
	"github.com/tamanet/tamanet/board/imx6ul"
	"github.com/tamanet/tamanet/board/usbarmory"
	"github.com/tamanet/tamanet/internal/config"
)

func platform() (target, error) {
	b := usbarmory.New()
	// The firmware refuses to start on a configuration error, which it
	// reports itself; here only the offloads switch matters.
	if cfg, err := config.Default(); err == nil {
		b.NoOffloads = cfg.NoOffloads
	}
	return targetOf[*imx6ul.NIC](b), nil
}
