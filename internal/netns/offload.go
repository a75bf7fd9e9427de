package netns

// Offloads the kernel may leave to the reader of a tap opened with
// IFF_VNET_HDR (SetTapOffload), from <linux/if_tun.h>: the receive side of
// the virtio-net header (virtio 1.2 §5.1.6.4).
const (
	TunFCsum   = 0x01 // TUN_F_CSUM: partial checksums (NEEDS_CSUM)
	TunFTSO4   = 0x02 // TUN_F_TSO4: TCP over IPv4 joined (GSO_TCPV4); needs TunFCsum
	TunFTSO6   = 0x04 // TUN_F_TSO6: TCP over IPv6 joined (GSO_TCPV6); needs TunFCsum
	TunFTSOECN = 0x08 // TUN_F_TSO_ECN: joined TCP with CWR set (GSO_ECN); needs TSO
)
