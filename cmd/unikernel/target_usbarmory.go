//go:build tamago && usbarmory

package main

import (
	"github.com/tamanet/tamanet/board/imx6ul"
	"github.com/tamanet/tamanet/board/usbarmory"
)

func platform() (target, error) {
	return targetOf[*imx6ul.NIC](usbarmory.New()), nil
}
