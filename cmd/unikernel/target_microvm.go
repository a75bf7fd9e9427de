//go:build tamago && microvm

package main

import (
	"fmt"

	"github.com/tamanet/tamanet/board/microvm"
)

func platform() (target, error) {
	return target{
		Board:        "microvm",
		DMA:          microvm.DMA(),
		NewNIC:       microvm.NIC,
		NICInterrupt: microvm.EnableNICInterrupt,
		Info: map[string]string{
			"clock":   microvm.ClockSource,
			"tsc_mhz": fmt.Sprintf("%.1f", float64(microvm.TSCHz())/1e6),
		},
	}, nil
}
