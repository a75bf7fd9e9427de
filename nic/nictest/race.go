//go:build race

package nictest

const raceEnabled = true
