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
	FeatureCSUM      = 1 << 0  // VIRTIO_NET_F_CSUM: device completes partial checksums on transmit
	FeatureGuestCSUM = 1 << 1  // VIRTIO_NET_F_GUEST_CSUM: driver takes partial checksums on receive
	FeatureMTU       = 1 << 3  // VIRTIO_NET_F_MTU: config mtu is valid
	FeatureMAC       = 1 << 5  // VIRTIO_NET_F_MAC: config mac is valid
	FeatureGuestTSO4 = 1 << 7  // VIRTIO_NET_F_GUEST_TSO4: driver takes TCPv4 segments on receive
	FeatureGuestTSO6 = 1 << 8  // VIRTIO_NET_F_GUEST_TSO6
	FeatureGuestECN  = 1 << 9  // VIRTIO_NET_F_GUEST_ECN
	FeatureHostTSO4  = 1 << 11 // VIRTIO_NET_F_HOST_TSO4: device segments TCPv4 on transmit
	FeatureHostTSO6  = 1 << 12 // VIRTIO_NET_F_HOST_TSO6
	FeatureHostECN   = 1 << 13 // VIRTIO_NET_F_HOST_ECN: TSO with ECN (gso_type bit 0x80)
	FeatureMrgRxBuf  = 1 << 15 // VIRTIO_NET_F_MRG_RXBUF: a packet spans several receive buffers
	FeatureStatus    = 1 << 16 // VIRTIO_NET_F_STATUS: config status is valid
	FeatureEventIdx  = 1 << 29 // VIRTIO_F_EVENT_IDX (§2.7.10)
	FeatureVersion1  = 1 << 32 // VIRTIO_F_VERSION_1

	// FeaturesOffload is every offload feature: Config.NoOffloads
	// refuses them all.
	FeaturesOffload = FeatureCSUM | FeatureGuestCSUM | FeatureGuestTSO4 | FeatureGuestTSO6 |
		FeatureGuestECN | FeatureHostTSO4 | FeatureHostTSO6 | FeatureHostECN | FeatureMrgRxBuf
)

// struct virtio_net_hdr fields (virtio 1.2 §5.1.6): offsets, flags and
// gso_type values.
const (
	hdrFlags      = 0  // u8 flags
	hdrGSOType    = 1  // u8 gso_type
	hdrHdrLen     = 2  // le16 hdr_len
	hdrGSOSize    = 4  // le16 gso_size
	hdrCsumStart  = 6  // le16 csum_start
	hdrCsumOffset = 8  // le16 csum_offset
	hdrNumBuffers = 10 // le16 num_buffers

	HdrFNeedsCsum = 1 // VIRTIO_NET_HDR_F_NEEDS_CSUM
	HdrFDataValid = 2 // VIRTIO_NET_HDR_F_DATA_VALID
	HdrFRSCInfo   = 4 // VIRTIO_NET_HDR_F_RSC_INFO (needs RSC_EXT, never negotiated)

	GSONone  = 0    // VIRTIO_NET_HDR_GSO_NONE
	GSOTCPv4 = 1    // VIRTIO_NET_HDR_GSO_TCPV4
	GSOUDP   = 3    // VIRTIO_NET_HDR_GSO_UDP
	GSOTCPv6 = 4    // VIRTIO_NET_HDR_GSO_TCPV6
	GSOECN   = 0x80 // VIRTIO_NET_HDR_GSO_ECN

	// MaxGSOPacket is the longest packet, without the virtio-net header,
	// a device joins: the 65562-byte buffer §5.1.6.3.1 asks for with
	// GUEST_TSO and no MRG_RXBUF, less the 12-byte header.
	MaxGSOPacket = 65550
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
