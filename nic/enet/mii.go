package enet

import (
	"errors"
	"fmt"
	"time"
)

// MDIO reads and writes clause 22 PHY registers. The Driver implements it
// over its own MMFR; Config.MDIO may name another controller's bus when the
// PHY hangs off that one (on i.MX6UL both PHYs often share ENET2's MDIO).
type MDIO interface {
	ReadPHY(phy, reg int) (uint16, error)
	WritePHY(phy, reg int, v uint16) error
}

// ErrMDIO is returned when an MII management transfer does not complete.
var ErrMDIO = errors.New("enet: MDIO transfer timed out")

// PHY registers and bits (IEEE 802.3 clause 22.2.4).
const (
	phyBMCR   = 0 // basic mode control
	phyBMSR   = 1 // basic mode status
	phyID1    = 2
	phyID2    = 3
	phyANAR   = 4 // autonegotiation advertisement
	phyANLPAR = 5 // link partner ability

	bmcrReset     = 1 << 15
	bmcrSpeed100  = 1 << 13
	bmcrANEnable  = 1 << 12
	bmcrANRestart = 1 << 9
	bmcrFullDup   = 1 << 8

	bmsrANComplete = 1 << 5
	bmsrLink       = 1 << 2

	anSelector802_3 = 0x01
	an10HD          = 1 << 5
	an10FD          = 1 << 6
	an100HD         = 1 << 7
	an100FD         = 1 << 8
	anPause         = 1 << 10
)

// mdioTimeout bounds one MII transfer: 64 bits at 2.5 MHz take 25.6 us.
const mdioTimeout = 10 * time.Millisecond

// ReadPHY reads clause 22 register reg of the PHY at address phy through
// this controller's MMFR (i.MX6ULL RM 22.5.6).
func (d *Driver) ReadPHY(phy, reg int) (uint16, error) {
	v, err := d.mmfr(mmfrOpRd, phy, reg, 0)
	return uint16(v), err
}

// WritePHY writes clause 22 register reg of the PHY at address phy.
func (d *Driver) WritePHY(phy, reg int, v uint16) error {
	_, err := d.mmfr(mmfrOpWr, phy, reg, v)
	return err
}

func (d *Driver) mmfr(op uint32, phy, reg int, data uint16) (uint32, error) {
	if phy < 0 || phy > 31 || reg < 0 || reg > 31 {
		return 0, fmt.Errorf("enet: PHY address %d register %d out of range", phy, reg)
	}
	d.mdioMu.Lock()
	defer d.mdioMu.Unlock()
	// EIR.MII is set when the transfer completes; clear a stale one first.
	d.regs.Write32(RegEIR, EventMII)
	d.regs.Write32(RegMMFR, mmfrST|op|uint32(phy)<<mmfrPAShft|uint32(reg)<<mmfrRAShft|mmfrTA|uint32(data))
	start := time.Now()
	for d.regs.Read32(RegEIR)&EventMII == 0 {
		if time.Since(start) > mdioTimeout {
			return 0, ErrMDIO
		}
	}
	d.regs.Write32(RegEIR, EventMII)
	return d.regs.Read32(RegMMFR) & 0xffff, nil
}

// findPHY returns the first address in 0..31 whose ID registers answer, or
// -1 when none does (no PHY, or the bus is not wired to this MAC).
func findPHY(m MDIO) int {
	for a := 0; a < 32; a++ {
		id1, err1 := m.ReadPHY(a, phyID1)
		id2, err2 := m.ReadPHY(a, phyID2)
		if err1 != nil || err2 != nil {
			continue
		}
		if (id1 != 0xffff && id1 != 0) || (id2 != 0xffff && id2 != 0) {
			return a
		}
	}
	return -1
}

// resetPHY resets the PHY (BMCR.RESET self-clears within 0.5 s, 802.3
// 22.2.4.1.1), advertises 10/100 half and full duplex with pause, and
// starts autonegotiation. It does not wait for the link: PollLink does.
func resetPHY(m MDIO, phy int) error {
	if err := m.WritePHY(phy, phyBMCR, bmcrReset); err != nil {
		return err
	}
	start := time.Now()
	for {
		v, err := m.ReadPHY(phy, phyBMCR)
		if err != nil {
			return err
		}
		if v&bmcrReset == 0 {
			break
		}
		if time.Since(start) > 500*time.Millisecond {
			return fmt.Errorf("enet: PHY %d stays in reset", phy)
		}
		time.Sleep(time.Millisecond)
	}
	adv := uint16(anSelector802_3 | an10HD | an10FD | an100HD | an100FD | anPause)
	if err := m.WritePHY(phy, phyANAR, adv); err != nil {
		return err
	}
	return m.WritePHY(phy, phyBMCR, bmcrANEnable|bmcrANRestart)
}

// linkState is what the PHY reports.
type linkState struct {
	up   bool
	mbps int
	full bool
}

// readLink reads the PHY's link, speed and duplex: from the highest common
// ability of ANAR and ANLPAR after autonegotiation (802.3 Annex 28B.3
// priority), or from BMCR when autonegotiation is off.
func readLink(m MDIO, phy int) (linkState, error) {
	var s linkState
	bmsr, err := m.ReadPHY(phy, phyBMSR)
	if err != nil {
		return s, err
	}
	bmcr, err := m.ReadPHY(phy, phyBMCR)
	if err != nil {
		return s, err
	}
	if bmsr&bmsrLink == 0 {
		return s, nil
	}
	if bmcr&bmcrANEnable == 0 {
		s.up = true
		s.mbps = 10
		if bmcr&bmcrSpeed100 != 0 {
			s.mbps = 100
		}
		s.full = bmcr&bmcrFullDup != 0
		return s, nil
	}
	if bmsr&bmsrANComplete == 0 {
		return s, nil // link pulses, but negotiation still running
	}
	anar, err := m.ReadPHY(phy, phyANAR)
	if err != nil {
		return s, err
	}
	lpa, err := m.ReadPHY(phy, phyANLPAR)
	if err != nil {
		return s, err
	}
	common := anar & lpa
	s.up = true
	switch {
	case common&an100FD != 0:
		s.mbps, s.full = 100, true
	case common&an100HD != 0:
		s.mbps, s.full = 100, false
	case common&an10FD != 0:
		s.mbps, s.full = 10, true
	case common&an10HD != 0:
		s.mbps, s.full = 10, false
	default:
		// No common ability: the link is not usable.
		s.up = false
	}
	return s, nil
}
