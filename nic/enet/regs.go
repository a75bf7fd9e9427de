package enet

// Regs is the register window of one ENET controller, accessed as 32-bit
// words at byte offsets from its base (i.MX6ULL RM 22.5: all ENET registers
// are 32 bits wide and must be accessed as words). internal/mmio implements
// it over MMIO on tamago; enettest.Device implements it as a device model in
// host tests.
type Regs interface {
	Read32(off uint32) uint32
	Write32(off, v uint32)
}

// Register offsets (i.MX6ULL RM 22.5, "ENET memory map").
const (
	RegEIR  = 0x004 // 22.5.1 Interrupt Event Register (write 1 to clear)
	RegEIMR = 0x008 // 22.5.2 Interrupt Mask Register
	RegRDAR = 0x010 // 22.5.3 Receive Descriptor Active Register
	RegTDAR = 0x014 // 22.5.4 Transmit Descriptor Active Register
	RegECR  = 0x024 // 22.5.5 Ethernet Control Register
	RegMMFR = 0x040 // 22.5.6 MII Management Frame Register
	RegMSCR = 0x044 // 22.5.7 MII Speed Control Register
	RegRCR  = 0x084 // 22.5.9 Receive Control Register
	RegTCR  = 0x0c4 // 22.5.10 Transmit Control Register
	RegPALR = 0x0e4 // 22.5.11 Physical Address Lower Register
	RegPAUR = 0x0e8 // 22.5.12 Physical Address Upper Register
	RegIAUR = 0x118 // Descriptor Individual Upper Address (hash)
	RegIALR = 0x11c // Descriptor Individual Lower Address (hash)
	RegGAUR = 0x120 // Descriptor Group Upper Address (multicast hash)
	RegGALR = 0x124 // Descriptor Group Lower Address (multicast hash)
	RegTFWR = 0x144 // Transmit FIFO Watermark Register
	RegRDSR = 0x180 // Receive Descriptor Ring Start Register
	RegTDSR = 0x184 // Transmit Buffer Descriptor Ring Start Register
	RegMRBR = 0x188 // Maximum Receive Buffer Size Register
	RegFTRL = 0x1b0 // Frame Truncation Length Register
	RegTACC = 0x1c0 // Transmit Accelerator Function Configuration
	RegRACC = 0x1c4 // Receive Accelerator Function Configuration
)

// TACC bits (i.MX6ULL RM 22.5, ENETx_TACC). Checksum insertion needs
// store-and-forward transmit (TFWR.STRFWD), which initMAC sets.
const (
	TACCIPChk  = 1 << 3 // insert the IPv4 header checksum where a descriptor asks (IINS)
	TACCProChk = 1 << 4 // insert the TCP/UDP/ICMP checksum where a descriptor asks (PINS)
)

// RACC bits (i.MX6ULL RM 22.5, ENETx_RACC).
const (
	RACCIPDis   = 1 << 1 // discard frames with a wrong IPv4 header checksum
	RACCProDis  = 1 << 2 // discard frames with a wrong TCP/UDP/ICMP checksum
	RACCShift16 = 1 << 7 // write two bytes before each frame: the IP header lands 4-byte aligned
)

// EIR / EIMR event bits (i.MX6ULL RM 22.5.1, 22.5.2).
const (
	EventBABT  = 1 << 29 // babbling transmit error
	EventGRA   = 1 << 28 // graceful stop complete
	EventTXF   = 1 << 27 // transmit frame done
	EventTXB   = 1 << 26 // transmit buffer done
	EventRXF   = 1 << 25 // receive frame done
	EventRXB   = 1 << 24 // receive buffer done
	EventMII   = 1 << 23 // MII management transfer done
	EventEBERR = 1 << 22 // Ethernet bus error (DMA); the MAC stops
	EventLC    = 1 << 21 // late collision
	EventRL    = 1 << 20 // collision retry limit
	EventUN    = 1 << 19 // transmit FIFO underrun

	// EventTxErrors are the transmit errors the driver counts from EIR
	// as nic.TxError (QEMU writes no error bits into a transmit
	// descriptor, enhanced or legacy).
	EventTxErrors = EventBABT | EventLC | EventRL | EventUN | EventEBERR
)

// RDAR / TDAR (i.MX6ULL RM 22.5.3, 22.5.4): writing any value sets the
// active bit and makes the uDMA re-read the ring.
const DescriptorActive = 1 << 24

// ECR bits (i.MX6ULL RM 22.5.5).
const (
	ECRReset   = 1 << 0 // self-clearing MAC reset
	ECREtherEn = 1 << 1 // enable; clearing it resets the BD pointers to RDSR/TDSR
	ECREN1588  = 1 << 4 // enhanced 32-byte descriptors (RM 22.6.14); set
	ECRSpeed   = 1 << 5 // 1000 Mbit/s select; must stay 0 on the 10/100 i.MX6UL ENET
	ECRDBSWP   = 1 << 8 // descriptor byte swap: little-endian descriptors
)

// MMFR fields (i.MX6ULL RM 22.5.6; IEEE 802.3 clause 22 frame).
const (
	mmfrST     = 1 << 30 // start of frame, clause 22
	mmfrOpWr   = 1 << 28
	mmfrOpRd   = 2 << 28
	mmfrTA     = 2 << 16 // turnaround
	mmfrPAShft = 23
	mmfrRAShft = 18
)

// MSCR fields (i.MX6ULL RM 22.5.7): MDC = ipg_clk / ((MII_SPEED+1) * 2).
const (
	mscrMIISpeedShift = 1
	mscrHoldTimeShift = 8
)

// RCR fields (i.MX6ULL RM 22.5.9).
const (
	RCRLoop     = 1 << 0
	RCRDRT      = 1 << 1 // disable receive on transmit (half duplex)
	RCRMIIMode  = 1 << 2 // must be 1 (MII or RMII interface)
	RCRFCE      = 1 << 5 // flow control enable (pause frames)
	RCRRMIIMode = 1 << 8
	RCRRMII10T  = 1 << 9 // 10 Mbit/s in RMII mode
	RCRMaxFLSh  = 16     // MAX_FL, bits 29:16
)

// TCR bits (i.MX6ULL RM 22.5.10).
const (
	TCRGTS  = 1 << 0 // graceful transmit stop
	TCRFDEN = 1 << 2 // full duplex; change only while ECR.ETHEREN is 0
)

// TFWR bits: store and forward, so the MAC starts sending only once the
// whole frame is in its FIFO (no underrun from slow uncached memory).
const TFWRStrFwd = 1 << 8

// MRBR (i.MX6ULL RM 22.5, ENETx_MRBR): R_BUF_SIZE, bits 10:4, a multiple of 16.
const (
	mrbrMask = 0x7f0
	// MaxMRBR is the largest receive buffer size MRBR can express.
	MaxMRBR = mrbrMask
)
