// Package portio reads and writes x86 I/O ports (the IN and OUT
// instructions) on GOOS=tamago GOARCH=amd64; on other platforms it is empty.
//
// tamago's own port helpers live in an internal package that other modules
// cannot import, so the project carries these few instructions itself. They
// are only meaningful at CPL 0, which is where a tamago image runs.
package portio
