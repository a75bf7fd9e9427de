//go:build tamago && amd64

package microvm

import (
	_ "unsafe"
)

// printk is the runtime's console: every byte of print, panic and the
// standard output goes out on COM1, polled (no interrupts). Lines end in a
// bare "\n", as on every tamago board.
//
//go:linkname printk runtime/goos.Printk
func printk(c byte) {
	if muted {
		return
	}
	UART0.Tx(c)
}
