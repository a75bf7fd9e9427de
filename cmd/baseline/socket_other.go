//go:build !tamago

package main

import "github.com/tamanet/tamanet/internal/baseline"

func installSocketFunc(*baseline.Stack) {}
