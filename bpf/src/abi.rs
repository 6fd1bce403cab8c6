//! `#[repr(C)]` mirrors of bpf/include/sluice_abi.h.
//!
//! The header is the single declaration; every type here copies one C type
//! field for field, with no implicit padding. The tests at the bottom compare
//! each size and field offset, and every enumerator, with the BTF of the
//! compiled objects, so a change on one side only fails `cargo test`.
//!
//! Map keys and values travel to the kernel as bytes: [`AbiType::to_bytes`]
//! writes the fields in declaration order in native byte order, which is the
//! C layout because there is no padding. `__be16` fields hold network-order
//! values ([`Be16`]).

use std::fmt;
use std::net::IpAddr;

/// `SLUICE_MAX_QUEUES`: entries of the `xsks` map.
pub const MAX_QUEUES: u32 = 256;
/// `SLUICE_MAX_VIPS`: entries of the `vips` map.
pub const MAX_VIPS: u32 = 1024;
/// `SLUICE_MAX_LISTENERS`: entries of the `listeners` map.
pub const MAX_LISTENERS: u32 = 4096;

/// `SLUICE_HEALTH_WORDS`: 64-bit words of the mmapable `health` array map.
pub const HEALTH_WORDS: u32 = 4096;
/// `SLUICE_HEALTH_GENERATION`: word of the seqlock's sequence counter (odd
/// while the single writer is writing).
pub const HEALTH_GENERATION: usize = 0;
/// `SLUICE_HEALTH_FLAGS`: word of the `HEALTH_*` flags, stored whole, read
/// on its own by the XDP program.
pub const HEALTH_FLAGS: usize = 1;
/// `SLUICE_HEALTH_FIRST_CLUSTER_WORD`: first word of the per-cluster bitmaps
/// userspace lays out (words 2..8 are reserved, 0).
pub const HEALTH_FIRST_CLUSTER_WORD: usize = 8;
/// `SLUICE_HEALTH_ALL_EJECTED` (flags word): no cluster has an eligible
/// backend; the XDP program answers SYNs to TCP listeners with a RST.
pub const HEALTH_ALL_EJECTED: u64 = 1 << 0;

// The fixed words come before the clusters', which fit in the map.
const _: () = assert!(HEALTH_GENERATION < HEALTH_FIRST_CLUSTER_WORD);
const _: () = assert!(HEALTH_FLAGS < HEALTH_FIRST_CLUSTER_WORD);
const _: () = assert!(HEALTH_FIRST_CLUSTER_WORD < HEALTH_WORDS as usize);

/// `SLUICE_VIP_ANSWER_NEIGH`: answer ARP requests and neighbour solicitations.
pub const VIP_ANSWER_NEIGH: u32 = 1 << 0;
/// `SLUICE_VIP_ICMP_ECHO`: steer ICMP/ICMPv6 echo requests to the dataplane.
pub const VIP_ICMP_ECHO: u32 = 1 << 1;
/// `SLUICE_VIP_LOCAL_PORTS`: steer TCP/UDP to the configured local port range.
pub const VIP_LOCAL_PORTS: u32 = 1 << 2;

/// A C type mirrored here, encoded to and from the bytes libbpf passes to
/// the kernel.
pub trait AbiType: Sized {
    /// Name of the C type in sluice_abi.h (and in the objects' BTF).
    const C_NAME: &'static str;
    /// Appends the C representation of `self`.
    fn encode(&self, out: &mut Vec<u8>);
    /// Reads a value from exactly `size_of::<Self>()` bytes.
    fn decode(bytes: &[u8]) -> Option<Self>;

    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(std::mem::size_of::<Self>());
        self.encode(&mut out);
        debug_assert_eq!(out.len(), std::mem::size_of::<Self>());
        out
    }
}

/// A `__be16`: the value in network byte order, as it sits in the packet.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct Be16(u16);

impl Be16 {
    pub fn new(host: u16) -> Self {
        Self(u16::from_ne_bytes(host.to_be_bytes()))
    }
    pub fn get(self) -> u16 {
        u16::from_be_bytes(self.0.to_ne_bytes())
    }
    fn to_ne_bytes(self) -> [u8; 2] {
        self.0.to_ne_bytes()
    }
    fn from_ne_bytes(b: [u8; 2]) -> Self {
        Self(u16::from_ne_bytes(b))
    }
}

impl fmt::Debug for Be16 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.get())
    }
}

impl From<u16> for Be16 {
    fn from(host: u16) -> Self {
        Self::new(host)
    }
}

/// The 16-byte form of an address in the maps: IPv4 as `::ffff:a.b.c.d`.
pub fn addr16(addr: IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// Inverse of [`addr16`].
pub fn addr_from16(bytes: [u8; 16]) -> IpAddr {
    let v6 = std::net::Ipv6Addr::from(bytes);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let (head, tail) = self.0.split_at(N);
        self.0 = tail;
        head.try_into().expect("split_at gave N bytes")
    }
    fn u16(&mut self) -> u16 {
        u16::from_ne_bytes(self.take())
    }
    fn u32(&mut self) -> u32 {
        u32::from_ne_bytes(self.take())
    }
    fn u64(&mut self) -> u64 {
        u64::from_ne_bytes(self.take())
    }
    fn be16(&mut self) -> Be16 {
        Be16::from_ne_bytes(self.take())
    }
}

fn exact<T>(bytes: &[u8]) -> Option<Reader<'_>> {
    (bytes.len() == std::mem::size_of::<T>()).then_some(Reader(bytes))
}

/// `struct sluice_vip_key`
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct VipKey {
    pub addr: [u8; 16],
}

impl AbiType for VipKey {
    const C_NAME: &'static str = "sluice_vip_key";
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.addr);
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        let mut r = exact::<Self>(bytes)?;
        Some(Self { addr: r.take() })
    }
}

/// `struct sluice_vip_value`
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct VipValue {
    pub flags: u32,
}

impl AbiType for VipValue {
    const C_NAME: &'static str = "sluice_vip_value";
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.flags.to_ne_bytes());
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        let mut r = exact::<Self>(bytes)?;
        Some(Self { flags: r.u32() })
    }
}

/// `struct sluice_listener_key`
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct ListenerKey {
    pub addr: [u8; 16],
    pub port: Be16,
    /// `IPPROTO_TCP` or `IPPROTO_UDP`.
    pub proto: u8,
    pub pad: u8,
}

impl AbiType for ListenerKey {
    const C_NAME: &'static str = "sluice_listener_key";
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.addr);
        out.extend_from_slice(&self.port.to_ne_bytes());
        out.push(self.proto);
        out.push(self.pad);
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        let mut r = exact::<Self>(bytes)?;
        Some(Self {
            addr: r.take(),
            port: r.be16(),
            proto: r.take::<1>()[0],
            pad: r.take::<1>()[0],
        })
    }
}

/// `struct sluice_listener_value`
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct ListenerValue {
    pub service_id: u32,
}

impl AbiType for ListenerValue {
    const C_NAME: &'static str = "sluice_listener_value";
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.service_id.to_ne_bytes());
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        let mut r = exact::<Self>(bytes)?;
        Some(Self {
            service_id: r.u32(),
        })
    }
}

/// `struct sluice_config`, the single entry of the `config` map.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Config {
    /// Source MAC of ARP replies and neighbour adverts; all-zero disables them.
    pub mac: [u8; 6],
    pub local_port_lo: Be16,
    /// 0 disables the local port range.
    pub local_port_hi: Be16,
    pub pad: u16,
    pub flags: u32,
}

impl AbiType for Config {
    const C_NAME: &'static str = "sluice_config";
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.mac);
        out.extend_from_slice(&self.local_port_lo.to_ne_bytes());
        out.extend_from_slice(&self.local_port_hi.to_ne_bytes());
        out.extend_from_slice(&self.pad.to_ne_bytes());
        out.extend_from_slice(&self.flags.to_ne_bytes());
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        let mut r = exact::<Self>(bytes)?;
        Some(Self {
            mac: r.take(),
            local_port_lo: r.be16(),
            local_port_hi: r.be16(),
            pad: r.u16(),
            flags: r.u32(),
        })
    }
}

/// `struct sluice_counter`: packets and bytes of one counter (on one CPU,
/// or summed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

impl Counter {
    pub fn saturating_sub(self, earlier: Counter) -> Counter {
        Counter {
            packets: self.packets.saturating_sub(earlier.packets),
            bytes: self.bytes.saturating_sub(earlier.bytes),
        }
    }
}

impl std::ops::Add for Counter {
    type Output = Counter;
    fn add(self, o: Counter) -> Counter {
        Counter {
            packets: self.packets.wrapping_add(o.packets),
            bytes: self.bytes.wrapping_add(o.bytes),
        }
    }
}

impl std::ops::AddAssign for Counter {
    fn add_assign(&mut self, o: Counter) {
        *self = *self + o;
    }
}

impl AbiType for Counter {
    const C_NAME: &'static str = "sluice_counter";
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.packets.to_ne_bytes());
        out.extend_from_slice(&self.bytes.to_ne_bytes());
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        let mut r = exact::<Self>(bytes)?;
        Some(Self {
            packets: r.u64(),
            bytes: r.u64(),
        })
    }
}

/// `struct sluice_reflector_config`, the single entry of `reflector_config`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct ReflectorConfig {
    pub addr: [u8; 16],
    /// 0 disables the reflector.
    pub port: Be16,
    pub pad: u16,
}

impl AbiType for ReflectorConfig {
    const C_NAME: &'static str = "sluice_reflector_config";
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.addr);
        out.extend_from_slice(&self.port.to_ne_bytes());
        out.extend_from_slice(&self.pad.to_ne_bytes());
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        let mut r = exact::<Self>(bytes)?;
        Some(Self {
            addr: r.take(),
            port: r.be16(),
            pad: r.u16(),
        })
    }
}

/// What an XDP program told the kernel to do with a packet (`enum xdp_action`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum XdpAction {
    Aborted = 0,
    Drop = 1,
    Pass = 2,
    Tx = 3,
    Redirect = 4,
}

impl XdpAction {
    pub fn from_code(code: u32) -> Option<Self> {
        Some(match code {
            0 => Self::Aborted,
            1 => Self::Drop,
            2 => Self::Pass,
            3 => Self::Tx,
            4 => Self::Redirect,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            Self::Aborted => "XDP_ABORTED",
            Self::Drop => "XDP_DROP",
            Self::Pass => "XDP_PASS",
            Self::Tx => "XDP_TX",
            Self::Redirect => "XDP_REDIRECT",
        }
    }
}

macro_rules! counter_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident : $c_enum:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $value:literal, $c_name:literal, $label:literal, $action:ident; )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u32)]
        pub enum $name {
            $( $(#[$vmeta])* $variant = $value, )*
        }

        impl $name {
            /// Name of the C enum in sluice_abi.h.
            pub const C_ENUM: &'static str = $c_enum;
            /// Every counter, in index order.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];
            /// Number of counters (the `*_COUNTER_MAX` enumerator).
            pub const COUNT: usize = Self::ALL.len();

            /// Index in the per-CPU counter array.
            pub fn index(self) -> u32 {
                self as u32
            }
            pub fn from_index(index: u32) -> Option<Self> {
                Self::ALL.get(index as usize).copied()
            }
            /// The enumerator's name in C, e.g. `SLUICE_PASS_NON_IP`.
            pub fn name(self) -> &'static str {
                match self { $($name::$variant => $c_name,)* }
            }
            /// Short lower-case name for metrics and logs, e.g. `pass_non_ip`.
            pub fn label(self) -> &'static str {
                match self { $($name::$variant => $label,)* }
            }
            /// What the program returns for packets counted here.
            pub fn verdict(self) -> XdpAction {
                match self { $($name::$variant => XdpAction::$action,)* }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.label())
            }
        }
    };
}

counter_enum! {
    /// `enum sluice_xdp_counter`: the reason of the gateway's verdict. Every
    /// packet is counted once, under exactly one of these.
    pub enum XdpCounter: "sluice_xdp_counter" {
        /// Ethertype neither IPv4, IPv6 nor ARP (also a third VLAN tag).
        PassNonIp = 0, "SLUICE_PASS_NON_IP", "pass_non_ip", Pass;
        /// ARP or NDP not about a VIP with ANSWER_NEIGH.
        PassNeighOther = 1, "SLUICE_PASS_NEIGH_OTHER", "pass_neigh_other", Pass;
        /// IP to an address that is not a VIP.
        PassNotVip = 2, "SLUICE_PASS_NOT_VIP", "pass_not_vip", Pass;
        /// To a VIP, but no listener or flag matches.
        PassVipUnbound = 3, "SLUICE_PASS_VIP_UNBOUND", "pass_vip_unbound", Pass;
        /// (VIP, protocol, port) listener: into the queue's AF_XDP socket.
        RedirectListener = 4, "SLUICE_REDIRECT_LISTENER", "redirect_listener", Redirect;
        /// VIP with LOCAL_PORTS, port in the range: into the AF_XDP socket.
        RedirectLocalPort = 5, "SLUICE_REDIRECT_LOCAL_PORT", "redirect_local_port", Redirect;
        /// Echo request to a VIP with ICMP_ECHO: into the AF_XDP socket.
        RedirectIcmpEcho = 6, "SLUICE_REDIRECT_ICMP_ECHO", "redirect_icmp_echo", Redirect;
        /// ARP request for a VIP answered in place.
        TxArpReply = 7, "SLUICE_TX_ARP_REPLY", "tx_arp_reply", Tx;
        /// Neighbour solicitation for a VIP answered with an advertisement.
        TxNeighAdvert = 8, "SLUICE_TX_NEIGH_ADVERT", "tx_neigh_advert", Tx;
        /// Truncated Ethernet or VLAN header.
        DropMalformedEth = 9, "SLUICE_DROP_MALFORMED_ETH", "drop_malformed_eth", Drop;
        /// Truncated or non-Ethernet/IPv4 ARP.
        DropMalformedArp = 10, "SLUICE_DROP_MALFORMED_ARP", "drop_malformed_arp", Drop;
        /// IPv4/IPv6 header truncated, bad version, IHL or length; truncated
        /// IPv6 extension header to a VIP.
        DropMalformedIp = 11, "SLUICE_DROP_MALFORMED_IP", "drop_malformed_ip", Drop;
        /// Truncated or inconsistent TCP/UDP/ICMP header to a VIP.
        DropMalformedL4 = 12, "SLUICE_DROP_MALFORMED_L4", "drop_malformed_l4", Drop;
        /// IP fragment to a VIP (not reassembled).
        DropFragment = 13, "SLUICE_DROP_FRAGMENT", "drop_fragment", Drop;
        /// Steered, but no AF_XDP socket on the receiving queue.
        DropNoSocket = 14, "SLUICE_DROP_NO_SOCKET", "drop_no_socket", Drop;
        /// A helper failed (e.g. bpf_xdp_adjust_tail).
        AbortedInternal = 15, "SLUICE_ABORTED_INTERNAL", "aborted_internal", Aborted;
        /// SYN (no ACK, RST or FIN) to a TCP listener while the `health`
        /// flags say [`HEALTH_ALL_EJECTED`]: answered with a RST|ACK in
        /// place (appended after `AbortedInternal`, so no value moved).
        TxRstNoBackend = 16, "SLUICE_TX_RST_NO_BACKEND", "tx_rst_no_backend", Tx;
    }
}

counter_enum! {
    /// `enum sluice_reflector_counter`.
    pub enum ReflectorCounter: "sluice_reflector_counter" {
        /// UDP to (addr, port), sent back with XDP_TX.
        Reflected = 0, "SLUICE_REFLECTOR_REFLECTED", "reflected", Tx;
        /// Everything else, passed to the kernel.
        Passed = 1, "SLUICE_REFLECTOR_PASSED", "passed", Pass;
    }
}

/// `SLUICE_CHAOS_PPM_MAX`: a rate of one million parts per million is "always".
pub const CHAOS_PPM_MAX: u32 = 1_000_000;
/// `SLUICE_CHAOS_ALL_IP`: act on every IPv4/IPv6 packet, not only TCP.
pub const CHAOS_ALL_IP: u32 = 1 << 0;
/// `SLUICE_CHAOS_PORT`: only TCP/UDP with `port` as source or destination.
pub const CHAOS_PORT: u32 = 1 << 1;
/// `SLUICE_CHAOS_ADDR`: only packets with `addr` as source or destination.
pub const CHAOS_ADDR: u32 = 1 << 2;
/// `SLUICE_CHAOS_MSS`: rewrite the MSS option of SYNs and SYN-ACKs.
pub const CHAOS_MSS: u32 = 1 << 3;
/// `SLUICE_CHAOS_SYNACK_ALL`: `synack_drop` value that drops every SYN-ACK.
pub const CHAOS_SYNACK_ALL: u32 = u32::MAX;

/// `struct sluice_chaos_config`, the single entry of `chaos_config`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct ChaosConfigValue {
    pub addr: [u8; 16],
    pub flags: u32,
    pub drop_ppm: u32,
    pub synack_drop: u32,
    pub rst_ppm: u32,
    pub rst_seq_offset: u32,
    pub corrupt_ppm: u32,
    pub dup_ppm: u32,
    pub port: Be16,
    /// Host order.
    pub mss: u16,
}

impl AbiType for ChaosConfigValue {
    const C_NAME: &'static str = "sluice_chaos_config";
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.addr);
        for v in [
            self.flags,
            self.drop_ppm,
            self.synack_drop,
            self.rst_ppm,
            self.rst_seq_offset,
            self.corrupt_ppm,
            self.dup_ppm,
        ] {
            out.extend_from_slice(&v.to_ne_bytes());
        }
        out.extend_from_slice(&self.port.to_ne_bytes());
        out.extend_from_slice(&self.mss.to_ne_bytes());
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        let mut r = exact::<Self>(bytes)?;
        Some(Self {
            addr: r.take(),
            flags: r.u32(),
            drop_ppm: r.u32(),
            synack_drop: r.u32(),
            rst_ppm: r.u32(),
            rst_seq_offset: r.u32(),
            corrupt_ppm: r.u32(),
            dup_ppm: r.u32(),
            port: r.be16(),
            mss: r.u16(),
        })
    }
}

/// `struct sluice_chaos_state`, the single entry of `chaos_state`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct ChaosState {
    pub synacks: u64,
}

impl AbiType for ChaosState {
    const C_NAME: &'static str = "sluice_chaos_state";
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.synacks.to_ne_bytes());
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        let mut r = exact::<Self>(bytes)?;
        Some(Self { synacks: r.u64() })
    }
}

/// `enum sluice_chaos_counter`: indices of `chaos_counters`. A packet counts
/// once in `Seen` (or `EgressSeen`) and once per action taken on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u32)]
pub enum ChaosCounter {
    /// Ingress packets that match the filter.
    Seen = 0,
    /// Dropped by the drop rate.
    Dropped = 1,
    /// SYN-ACKs dropped (all, or the first N).
    SynackDropped = 2,
    /// SYNs and SYN-ACKs whose MSS option was rewritten.
    MssRewritten = 3,
    /// TCP segments turned into RSTs.
    RstForged = 4,
    /// Segments with a flipped byte (stale checksum).
    Corrupted = 5,
    /// Egress packets that match the filter (tc program).
    EgressSeen = 6,
    /// Egress packets sent twice.
    Duplicated = 7,
}

impl ChaosCounter {
    /// Name of the C enum in sluice_abi.h.
    pub const C_ENUM: &'static str = "sluice_chaos_counter";
    /// Every counter, in index order.
    pub const ALL: &'static [ChaosCounter] = &[
        Self::Seen,
        Self::Dropped,
        Self::SynackDropped,
        Self::MssRewritten,
        Self::RstForged,
        Self::Corrupted,
        Self::EgressSeen,
        Self::Duplicated,
    ];
    pub const COUNT: usize = Self::ALL.len();

    pub fn index(self) -> u32 {
        self as u32
    }
    /// The enumerator's name in C, e.g. `SLUICE_CHAOS_SEEN`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Seen => "SLUICE_CHAOS_SEEN",
            Self::Dropped => "SLUICE_CHAOS_DROPPED",
            Self::SynackDropped => "SLUICE_CHAOS_SYNACK_DROPPED",
            Self::MssRewritten => "SLUICE_CHAOS_MSS_REWRITTEN",
            Self::RstForged => "SLUICE_CHAOS_RST_FORGED",
            Self::Corrupted => "SLUICE_CHAOS_CORRUPTED",
            Self::EgressSeen => "SLUICE_CHAOS_EGRESS_SEEN",
            Self::Duplicated => "SLUICE_CHAOS_DUPLICATED",
        }
    }
    /// Short lower-case name for output, e.g. `synack_dropped`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Seen => "seen",
            Self::Dropped => "dropped",
            Self::SynackDropped => "synack_dropped",
            Self::MssRewritten => "mss_rewritten",
            Self::RstForged => "rst_forged",
            Self::Corrupted => "corrupted",
            Self::EgressSeen => "egress_seen",
            Self::Duplicated => "duplicated",
        }
    }
}

impl fmt::Display for ChaosCounter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Name of the `*_COUNTER_MAX` enumerator closing each counter enum.
pub const XDP_COUNTER_MAX_NAME: &str = "SLUICE_XDP_COUNTER_MAX";
pub const REFLECTOR_COUNTER_MAX_NAME: &str = "SLUICE_REFLECTOR_COUNTER_MAX";
pub const CHAOS_COUNTER_MAX_NAME: &str = "SLUICE_CHAOS_COUNTER_MAX";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn be16_holds_network_order() {
        let p = Be16::new(0x1234);
        assert_eq!(p.to_ne_bytes(), [0x12, 0x34]);
        assert_eq!(p.get(), 0x1234);
    }

    #[test]
    fn encode_decode_round_trip() {
        let key = ListenerKey {
            addr: addr16("198.18.0.1".parse().unwrap()),
            port: Be16::new(443),
            proto: 6,
            pad: 0,
        };
        let bytes = key.to_bytes();
        assert_eq!(
            &bytes[10..20],
            &[0xff, 0xff, 198, 18, 0, 1, 0x01, 0xbb, 6, 0]
        );
        assert_eq!(ListenerKey::decode(&bytes), Some(key));
        let cfg = Config {
            mac: [2, 0, 0, 0, 0, 1],
            local_port_lo: Be16::new(40000),
            local_port_hi: Be16::new(50000),
            pad: 0,
            flags: 7,
        };
        assert_eq!(Config::decode(&cfg.to_bytes()), Some(cfg));
        assert_eq!(Config::decode(&[0; 3]), None);
    }

    #[test]
    fn addresses_map_both_ways() {
        for a in ["198.18.0.1", "2001:2::1", "::1"] {
            let ip: IpAddr = a.parse().unwrap();
            assert_eq!(addr_from16(addr16(ip)), ip);
        }
    }

    #[test]
    fn chaos_config_round_trips() {
        let cfg = ChaosConfigValue {
            addr: addr16("2001:2::1".parse().unwrap()),
            flags: CHAOS_ALL_IP | CHAOS_MSS,
            drop_ppm: 300_000,
            synack_drop: CHAOS_SYNACK_ALL,
            rst_ppm: 1,
            rst_seq_offset: 7,
            corrupt_ppm: 2,
            dup_ppm: 3,
            port: Be16::new(8080),
            mss: 536,
        };
        let bytes = cfg.to_bytes();
        assert_eq!(bytes.len(), 48);
        assert_eq!(&bytes[44..46], &[0x1f, 0x90]);
        assert_eq!(ChaosConfigValue::decode(&bytes), Some(cfg));
        for (i, c) in ChaosCounter::ALL.iter().enumerate() {
            assert_eq!(c.index() as usize, i);
            assert!(c.name().ends_with(&c.label().to_uppercase()));
        }
    }

    #[test]
    fn counters_are_dense() {
        for (i, c) in XdpCounter::ALL.iter().enumerate() {
            assert_eq!(c.index() as usize, i);
            assert_eq!(XdpCounter::from_index(i as u32), Some(*c));
            assert!(c.name().ends_with(&c.label().to_uppercase()));
        }
        assert_eq!(XdpCounter::from_index(XdpCounter::COUNT as u32), None);
    }

    #[test]
    fn appended_counters_keep_earlier_values() {
        // Readers of older pins index by value: new counters only go at the end.
        assert_eq!(XdpCounter::AbortedInternal.index(), 15);
        assert_eq!(XdpCounter::TxRstNoBackend.index(), 16);
        assert_eq!(XdpCounter::TxRstNoBackend.verdict(), XdpAction::Tx);
        assert_eq!(XdpCounter::TxRstNoBackend.label(), "tx_rst_no_backend");
        assert_eq!(XdpCounter::COUNT, 17);
    }
}
