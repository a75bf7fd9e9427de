//go:build !tamago || !mx6ullevk

package main

import "errors"

func platform() (board, error) {
	return board{}, errors.New("no board: build with GOOS=tamago GOARCH=arm -tags mx6ullevk,linkramsize")
}
