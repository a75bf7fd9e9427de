//go:build race

package virtio_test

// raceEnabled shrinks the big transfers: the race detector slows gVisor
// down by an order of magnitude.
const raceEnabled = true
