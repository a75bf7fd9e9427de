//go:build tamago

package stack

import "net"

// installSocketFunc makes s the socket implementation of tamago's net
// package.
func installSocketFunc(s *Stack) { net.SocketFunc = s.Socket }
