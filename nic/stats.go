package nic

import (
	"encoding/json"
	"sync/atomic"
)

// Cause is why a driver dropped a frame or refused a device-provided value.
type Cause int

// Drop causes. Drivers count every drop under exactly one cause.
const (
	// BadLength: the device reported a used length out of range.
	BadLength Cause = iota
	// BadID: the device reported a descriptor id out of range.
	BadID
	// BadIndex: the device moved a ring index further than the ring holds.
	BadIndex
	// NoBuffer: the pool was empty when a slot needed a buffer.
	NoBuffer
	// Runt: a frame shorter than the minimum.
	Runt
	// Oversize: a frame longer than the maximum.
	Oversize
	// CRC: the MAC reported a frame check sequence error.
	CRC
	// Overrun: the MAC's FIFO overflowed.
	Overrun
	// Truncated: the frame was truncated (did not fit the buffer).
	Truncated
	// NonOctet: the frame was not a whole number of bytes.
	NonOctet
	// LengthViolation: the MAC reported a length violation.
	LengthViolation
	// RingFull: no transmit slot was free and the frame was dropped.
	// Drivers do not count this: Transmit refusing a frame for a full
	// ring leaves the buffer with the caller (see RingStats.Full); the
	// caller counts RingFull if it then gives up on the frame.
	RingFull
	// LinkDown: the link was down.
	LinkDown
	// TxError: the MAC reported a transmit error.
	TxError
	// Filtered: the frame was not for this station.
	Filtered
	// Malformed: a header the driver or stack parses was invalid.
	Malformed
	// Duplicate: the device completed a descriptor a second time; the
	// driver had already taken the first completion back.
	Duplicate
	// Stale: the device reported a completion for a descriptor the driver
	// has not posted (an old or zeroed ring entry, or a forged one).
	Stale
	// NumCauses is the number of causes.
	NumCauses
)

var causeNames = [NumCauses]string{
	BadLength:       "bad_length",
	BadID:           "bad_id",
	BadIndex:        "bad_index",
	NoBuffer:        "no_buffer",
	Runt:            "runt",
	Oversize:        "oversize",
	CRC:             "crc",
	Overrun:         "overrun",
	Truncated:       "truncated",
	NonOctet:        "non_octet",
	LengthViolation: "length_violation",
	RingFull:        "ring_full",
	LinkDown:        "link_down",
	TxError:         "tx_error",
	Filtered:        "filtered",
	Malformed:       "malformed",
	Duplicate:       "duplicate",
	Stale:           "stale",
}

// String returns the cause's name as shown in stats.
func (c Cause) String() string {
	if c < 0 || c >= NumCauses {
		return "unknown"
	}
	return causeNames[c]
}

// Drops counts drops by cause.
type Drops [NumCauses]uint64

// Total returns the sum over all causes.
func (d *Drops) Total() uint64 {
	var t uint64
	for _, v := range d {
		t += v
	}
	return t
}

// MarshalJSON renders every cause, zero or not, as an object keyed by name.
func (d Drops) MarshalJSON() ([]byte, error) {
	m := make(map[string]uint64)
	for i, v := range d {
		m[causeNames[i]] = v
	}
	return json.Marshal(m)
}

// RingStats is a snapshot of one ring's counters.
type RingStats struct {
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
	// Kicks counts notifications sent to the device; Suppressed counts
	// the ones the device said it did not need (EVENT_IDX).
	Kicks      uint64 `json:"kicks"`
	Suppressed uint64 `json:"kicks_suppressed"`
	// Full counts posts refused because the ring was full. The caller
	// kept those buffers; it is back-pressure, not loss.
	Full  uint64 `json:"ring_full"`
	Drops Drops  `json:"drops"`
}

// Stats is a snapshot of a device's counters.
type Stats struct {
	Name       string    `json:"name"`
	Link       bool      `json:"link"`
	SpeedMbps  int       `json:"speed_mbps,omitempty"`
	FullDuplex bool      `json:"full_duplex,omitempty"`
	Rx         RingStats `json:"rx"`
	Tx         RingStats `json:"tx"`
	// Resets counts recoveries: the driver reset the device and rebuilt
	// both rings (a device that asked for a reset, a ring it wedged, a
	// fatal error). ResetReason names the latest one.
	Resets      uint64 `json:"resets"`
	ResetReason string `json:"reset_reason,omitempty"`
}

// RingCounters are a ring's live counters. Each is updated by the goroutine
// that owns the ring and read atomically by Snapshot from any goroutine.
type RingCounters struct {
	Packets    atomic.Uint64
	Bytes      atomic.Uint64
	Kicks      atomic.Uint64
	Suppressed atomic.Uint64
	Full       atomic.Uint64
	drops      [NumCauses]atomic.Uint64
}

// Drop counts one drop for cause c.
func (r *RingCounters) Drop(c Cause) {
	if c >= 0 && c < NumCauses {
		r.drops[c].Add(1)
	}
}

// Dropped returns the count for cause c.
func (r *RingCounters) Dropped(c Cause) uint64 {
	if c < 0 || c >= NumCauses {
		return 0
	}
	return r.drops[c].Load()
}

// Count records one packet of n bytes.
func (r *RingCounters) Count(n int) {
	r.Packets.Add(1)
	r.Bytes.Add(uint64(n))
}

// Snapshot copies the counters into s.
func (r *RingCounters) Snapshot(s *RingStats) {
	s.Packets = r.Packets.Load()
	s.Bytes = r.Bytes.Load()
	s.Kicks = r.Kicks.Load()
	s.Suppressed = r.Suppressed.Load()
	s.Full = r.Full.Load()
	for i := range r.drops {
		s.Drops[i] = r.drops[i].Load()
	}
}
