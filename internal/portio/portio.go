//go:build tamago && amd64

package portio

// In8 reads one byte from port (IN AL, DX).
//
//go:noescape
func In8(port uint16) uint8

// Out8 writes one byte to port (OUT DX, AL).
//
//go:noescape
func Out8(port uint16, val uint8)
