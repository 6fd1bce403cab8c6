//! Zero-copy packet views and their parsed forms.
//!
//! Every protocol has the same two layers, as in smoltcp's `wire`:
//!
//! - a view `XxxPacket<T: AsRef<[u8]>>` over a byte buffer. `new_checked`
//!   validates every length the accessors rely on; after it succeeds no
//!   accessor panics. `new_unchecked` skips that (accessors may then panic on a
//!   short buffer). Setters need `T: AsMut<[u8]>` and write in place.
//! - a `XxxRepr`, the validated, owned (or borrowing) form with `parse`,
//!   `buffer_len` and `emit`. `emit` writes into a caller buffer of at least
//!   `buffer_len()` bytes; checksums are filled by `emit` when the repr owns the
//!   whole packet, otherwise by the packet's `fill_checksum`.
//!
//! Nothing here allocates. Errors are the crate's [`WireError`](crate::WireError).
pub mod arp;
pub mod ethernet;
pub mod icmpv4;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod seq;
pub mod tcp;
pub mod tcp_option;
pub mod udp;

pub use arp::{ArpOperation, ArpPacket, ArpRepr};
pub use ethernet::{EtherType, EthernetAddress, EthernetFrame, EthernetRepr, VlanStack, VlanTag};
pub use icmpv4::{Icmpv4Packet, Icmpv4Repr};
pub use icmpv6::{Icmpv6Packet, Icmpv6Repr, NdpFlags, NdpOption};
pub use ipv4::{Ipv4Options, Ipv4Packet, Ipv4Repr};
pub use ipv6::{Ipv6ExtHeader, Ipv6Packet, Ipv6Repr};
pub use seq::SeqNumber;
pub use tcp::{TcpFlags, TcpPacket, TcpRepr};
pub use tcp_option::{SackBlocks, TcpOption, TcpOptions, TcpOptionsIter, TcpTimestamp};
pub use udp::{UdpPacket, UdpRepr};

/// An IP protocol / IPv6 next-header number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpProtocol(pub u8);

impl IpProtocol {
    pub const HOP_BY_HOP: Self = Self(0);
    pub const ICMP: Self = Self(1);
    pub const TCP: Self = Self(6);
    pub const UDP: Self = Self(17);
    pub const IPV6_ROUTING: Self = Self(43);
    pub const IPV6_FRAGMENT: Self = Self(44);
    pub const ESP: Self = Self(50);
    pub const AH: Self = Self(51);
    pub const ICMPV6: Self = Self(58);
    pub const IPV6_NO_NEXT: Self = Self(59);
    pub const IPV6_DST_OPTS: Self = Self(60);
}

impl From<u8> for IpProtocol {
    fn from(v: u8) -> Self {
        Self(v)
    }
}

impl From<IpProtocol> for u8 {
    fn from(v: IpProtocol) -> Self {
        v.0
    }
}

// Big-endian field access. Callers guarantee the range is in bounds (a view
// after `new_checked`); with `new_unchecked` these may panic, as documented.
#[inline(always)]
pub(crate) fn get_u16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline(always)]
pub(crate) fn get_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline(always)]
pub(crate) fn set_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[inline(always)]
pub(crate) fn set_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

#[inline(always)]
pub(crate) fn get_array<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&b[at..at + N]);
    out
}
