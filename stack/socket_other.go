//go:build !tamago

package stack

// installSocketFunc does nothing off tamago: the host's net package has its
// own sockets. Host code calls Socket, Listen, Dial or ListenPacket.
func installSocketFunc(*Stack) {}
