//go:build tamago && mx6ullevk

package main

import (
	"github.com/tamanet/tamanet/board/imx6ul"
	"github.com/tamanet/tamanet/board/mx6ullevk"
)

func platform() (target, error) {
	return targetOf[*imx6ul.NIC](mx6ullevk.New()), nil
}
