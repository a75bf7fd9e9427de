//go:build race

package link

// raceEnabled: under -race, sync.Pool (behind gVisor's views and packet
// buffers) drops items at random, so allocation counts are meaningless.
const raceEnabled = true
