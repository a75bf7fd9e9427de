//go:build tamago

package main

import (
	"net"

	"github.com/tamanet/tamanet/internal/baseline"
)

func installSocketFunc(s *baseline.Stack) { net.SocketFunc = s.Socket }
