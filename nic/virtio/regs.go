package virtio

// Regs is the register window of one virtio-mmio device: 32-bit control
// registers below 0x100 and the device configuration space from 0x100 on.
// Config fields are read at their natural width and alignment, as virtio
// 1.2 §4.2.2.2 requires: Read8 for u8 fields (mac), Read16 for le16 ones
// (status, mtu). internal/mmio implements it over MMIO on tamago;
// virtiotest.Device implements it as a device model in host tests.
type Regs interface {
	Read32(off uint32) uint32
	Write32(off, v uint32)
	Read8(off uint32) uint8
	// Read16 reads the 16-bit little-endian field at off, which is
	// 2-byte aligned, with one access.
	Read16(off uint32) uint16
}

// virtio-mmio version 2 register offsets (virtio 1.2 §4.2.2, table 4.1).
const (
	regMagic          = 0x000
	regVersion        = 0x004
	regDeviceID       = 0x008
	regDeviceFeatures = 0x010
	regDeviceFeatSel  = 0x014
	regDriverFeatures = 0x020
	regDriverFeatSel  = 0x024
	regQueueSel       = 0x030
	regQueueNumMax    = 0x034
	regQueueNum       = 0x038
	regQueueReady     = 0x044
	regQueueNotify    = 0x050
	regInterruptStat  = 0x060
	regInterruptACK   = 0x064
	regStatus         = 0x070
	regQueueDescLow   = 0x080
	regQueueDescHigh  = 0x084
	regQueueDrvLow    = 0x090 // available ring
	regQueueDrvHigh   = 0x094
	regQueueDevLow    = 0x0a0 // used ring
	regQueueDevHigh   = 0x0a4
	regConfigGen      = 0x0fc
	regConfig         = 0x100
)

// Magic is "virt" little-endian (§4.2.2); Version 2 is the non-legacy
// interface; device id 1 is a network card (§5).
const (
	Magic       = 0x74726976
	Version     = 2
	DeviceIDNet = 1
)

// Device status bits (§2.1).
const (
	StatusAcknowledge = 1
	StatusDriver      = 2
	StatusDriverOK    = 4
	StatusFeaturesOK  = 8
	StatusNeedsReset  = 64
	StatusFailed      = 128
)

// Feature bits the driver negotiates (§5.1.3 for the net device, §6 for
// reserved bits).
const (
	FeatureMTU      = 1 << 3  // VIRTIO_NET_F_MTU: config mtu is valid
	FeatureMAC      = 1 << 5  // VIRTIO_NET_F_MAC: config mac is valid
	FeatureStatus   = 1 << 16 // VIRTIO_NET_F_STATUS: config status is valid
	FeatureEventIdx = 1 << 29 // VIRTIO_F_EVENT_IDX (§2.7.10)
	FeatureVersion1 = 1 << 32 // VIRTIO_F_VERSION_1
)

// Net device configuration layout, struct virtio_net_config (§5.1.4).
const (
	cfgMAC    = 0  // u8 mac[6]
	cfgStatus = 6  // le16 status
	cfgMTU    = 10 // le16 mtu

	// NetStatusLinkUp is VIRTIO_NET_S_LINK_UP in config status.
	NetStatusLinkUp = 1
)

// Queue indices of the first queue pair (§5.1.2).
const (
	queueRx = 0
	queueTx = 1
)

// HeaderSize is the size of struct virtio_net_hdr with VIRTIO_F_VERSION_1
// (§5.1.6: num_buffers is always present): flags, gso_type, hdr_len,
// gso_size, csum_start, csum_offset, num_buffers.
const HeaderSize = 12
