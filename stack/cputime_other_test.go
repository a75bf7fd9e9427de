//go:build !unix

package stack

import "time"

// cpuTime is 0 where the process's CPU time cannot be read (GOOS=tamago,
// which only vets these tests): the benchmark's CPU figures read 0 there.
func cpuTime() time.Duration { return 0 }
