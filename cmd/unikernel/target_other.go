//go:build !tamago || !(microvm || mx6ullevk || usbarmory)

package main

import "errors"

// platform on a build without a board says so: the firmware only runs as a
// tamago image built for a target (make TARGET=...).
func platform() (target, error) {
	return target{}, errors.New("no board: build with GOOS=tamago and a target tag (make TARGET=microvm)")
}
