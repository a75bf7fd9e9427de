//go:build tamago && microvm

package main

import "github.com/tamanet/tamanet/board/microvm"

func platform() (target, error) {
	return targetOf[*microvm.NIC](microvm.New()), nil
}
