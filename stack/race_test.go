//go:build race

package stack

// raceEnabled shrinks the big transfers: the race detector slows gVisor
// down by an order of magnitude.
const raceEnabled = true
