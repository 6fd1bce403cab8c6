//! sans-IO packet layer of sluice: zero-copy views and emitters for the
//! protocols the gateway speaks, checksums, and the in-place reply builders of
//! the built-in services. No unsafe, no clocks, no sockets: bytes in, bytes out.
//!
//! - [`wire`]: a view (`XxxPacket<T: AsRef<[u8]>>`) and a repr (`XxxRepr`)
//!   per protocol: Ethernet with VLAN tags, ARP, IPv4, IPv6, ICMPv4, ICMPv6,
//!   UDP, TCP with options, and [`wire::SeqNumber`].
//! - [`checksum`]: full, pseudo-header and incremental internet checksums.
//! - [`frame`]: one-pass classification of a received frame.
//! - [`echo`]: checksum verification and in-place echo replies.
//!
//! Nothing here allocates; nothing panics on any input that passed the
//! corresponding `new_checked` / [`frame::classify`].
#![forbid(unsafe_code)]

pub mod checksum;
pub mod echo;
pub mod frame;
pub mod tcp;
pub mod time;
pub mod wire;

/// Why a frame was not accepted. Each variant is a drop counter in the
/// dataplane, so keep them few and meaningful.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// A header or the length it announces runs past the end of the frame.
    #[error("truncated")]
    Truncated,
    /// A field holds a value the protocol forbids (IPv4 IHL < 5, version...).
    #[error("malformed")]
    Malformed,
    /// An IPv4 header, UDP, TCP, ICMP or ICMPv6 checksum does not verify.
    #[error("bad checksum")]
    BadChecksum,
    /// Well-formed, but not something this layer handles (e.g. a fragment).
    #[error("unsupported")]
    Unsupported,
}
