//go:build !linux

package netns

import (
	"errors"
	"os"
)

// SetTapOffload sets a tap's receive offloads; taps are Linux only.
func SetTapOffload(f *os.File, flags uint32) error {
	return errors.ErrUnsupported
}
