//! One-pass classification of an Ethernet frame (STUB: signatures only).
use crate::WireError;

/// Transport of a classified frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4 {
    Udp {
        src_port: u16,
        dst_port: u16,
    },
    Tcp {
        src_port: u16,
        dst_port: u16,
    },
    /// ICMP echo request (IPv4) or ICMPv6 echo request.
    EchoRequest,
    /// Any other protocol number / ICMP type.
    Other(u8),
}

/// Where the headers of a frame sit, found once and reused by the services
/// that rewrite the frame in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Classified {
    /// Offset of the IP header (after Ethernet and up to two VLAN tags).
    pub l3_offset: usize,
    /// Offset of the transport header.
    pub l4_offset: usize,
    /// Length of the transport header plus payload, as the IP header says.
    pub l4_len: usize,
    pub ipv6: bool,
    /// Source and destination, IPv4 as IPv4-mapped IPv6, as in the BPF maps.
    pub src_addr: [u8; 16],
    pub dst_addr: [u8; 16],
    pub l4: L4,
}

/// Classify an Ethernet II frame carrying IPv4 or IPv6.
pub fn classify(_frame: &[u8]) -> Result<Classified, WireError> {
    todo!("netstack helper")
}
