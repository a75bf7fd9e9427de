//go:build !race

package enet_test

const raceEnabled = false
