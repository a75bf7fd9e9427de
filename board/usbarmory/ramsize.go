//go:build tamago && arm && !linkramsize

package usbarmory

// Without linkramsize tamago's board package gives Go all 512 MiB of DDR,
// the DMA region included: refuse to build.
var _ = build_with_tag_linkramsize
