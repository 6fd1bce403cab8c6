//! Building test frames byte by byte, independently of the programs under
//! test: every header written field by field, checksums computed here.

#![allow(dead_code)]

use std::net::{Ipv4Addr, Ipv6Addr};

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;

/// RFC 1071 checksum of `data` (odd lengths padded with a zero byte).
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += word as u32;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Ethernet header with VLAN tags `(tpid, tci)` outermost first, then `payload`.
pub fn eth(
    dst: [u8; 6],
    src: [u8; 6],
    vlans: &[(u16, u16)],
    ethertype: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    for (tpid, tci) in vlans {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&tci.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Knobs of an IPv4 header.
#[derive(Clone, Debug)]
pub struct V4 {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub ttl: u8,
    /// Identification.
    pub id: u16,
    /// Flags and fragment offset, host order (0x2000 = MF).
    pub frag: u16,
    /// Options, a multiple of 4 bytes.
    pub options: Vec<u8>,
}

impl V4 {
    pub fn new(src: Ipv4Addr, dst: Ipv4Addr, proto: u8) -> Self {
        Self {
            src,
            dst,
            proto,
            ttl: 64,
            id: 0x1234,
            frag: 0x4000, // DF
            options: Vec::new(),
        }
    }

    /// Header and payload, with a correct header checksum.
    pub fn build(&self, payload: &[u8]) -> Vec<u8> {
        assert_eq!(self.options.len() % 4, 0);
        let hlen = 20 + self.options.len();
        let mut h = Vec::with_capacity(hlen + payload.len());
        h.push(0x40 | (hlen / 4) as u8);
        h.push(0);
        h.extend_from_slice(&((hlen + payload.len()) as u16).to_be_bytes());
        h.extend_from_slice(&self.id.to_be_bytes());
        h.extend_from_slice(&self.frag.to_be_bytes());
        h.push(self.ttl);
        h.push(self.proto);
        h.extend_from_slice(&[0, 0]);
        h.extend_from_slice(&self.src.octets());
        h.extend_from_slice(&self.dst.octets());
        h.extend_from_slice(&self.options);
        let c = checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h.extend_from_slice(payload);
        h
    }

    pub fn pseudo(&self, len: usize) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(&self.src.octets());
        p.extend_from_slice(&self.dst.octets());
        p.push(0);
        p.push(self.proto);
        p.extend_from_slice(&(len as u16).to_be_bytes());
        p
    }
}

/// IPv6 header (traffic class and flow label 0) and payload.
pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, nexthdr: u8, hop_limit: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    h.push(nexthdr);
    h.push(hop_limit);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h.extend_from_slice(payload);
    h
}

pub fn pseudo6(src: Ipv6Addr, dst: Ipv6Addr, nexthdr: u8, len: usize) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&(len as u32).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, nexthdr]);
    p
}

/// Fills in the checksum at `at` of an L4 segment, given its pseudo-header.
pub fn with_l4_checksum(mut seg: Vec<u8>, pseudo: &[u8], at: usize) -> Vec<u8> {
    seg[at..at + 2].copy_from_slice(&[0, 0]);
    let mut all = pseudo.to_vec();
    all.extend_from_slice(&seg);
    let c = checksum(&all);
    seg[at..at + 2].copy_from_slice(&c.to_be_bytes());
    seg
}

/// UDP header and payload, checksum left 0 (fill with [`with_l4_checksum`]).
pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

/// A 20-byte TCP SYN, checksum left 0.
pub fn tcp_syn(sport: u16, dport: u16) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&1000u32.to_be_bytes()); // seq
    t.extend_from_slice(&0u32.to_be_bytes()); // ack
    t.push(5 << 4); // data offset
    t.push(0x02); // SYN
    t.extend_from_slice(&65535u16.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent
    t
}

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_PSH: u8 = 0x08;
pub const TCP_ACK: u8 = 0x10;
pub const TCP_ECE: u8 = 0x40;
pub const TCP_CWR: u8 = 0x80;

/// A TCP segment, checksum left 0: `options` (a multiple of 4 bytes) and
/// `payload` after the 20-byte header; window 65535 unless RST.
pub fn tcp_seg(
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    assert_eq!(options.len() % 4, 0);
    let mut t = Vec::new();
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&seq.to_be_bytes());
    t.extend_from_slice(&ack.to_be_bytes());
    t.push((((20 + options.len()) / 4) as u8) << 4);
    t.push(flags);
    let window: u16 = if flags & TCP_RST != 0 { 0 } else { 65535 };
    t.extend_from_slice(&window.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent
    t.extend_from_slice(options);
    t.extend_from_slice(payload);
    t
}

/// Typical SYN options: MSS 1460, SACK permitted, timestamps, NOP, window scale 7.
pub const SYN_OPTIONS: [u8; 20] = [
    2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
];

/// ICMP (v4 or v6) message: type, code, checksum 0, then `rest`.
pub fn icmp(ty: u8, code: u8, rest: &[u8]) -> Vec<u8> {
    let mut m = vec![ty, code, 0, 0];
    m.extend_from_slice(rest);
    m
}

/// Echo identifier 0x4242, sequence 1, and 8 bytes of data.
pub const ECHO_BODY: [u8; 12] = [0x42, 0x42, 0, 1, b's', b'l', b'u', b'i', b'c', b'e', 0, 0];

/// ARP for Ethernet / IPv4.
pub fn arp(op: u16, sha: [u8; 6], spa: Ipv4Addr, tha: [u8; 6], tpa: Ipv4Addr) -> Vec<u8> {
    let mut a = Vec::new();
    a.extend_from_slice(&1u16.to_be_bytes());
    a.extend_from_slice(&ETH_P_IP.to_be_bytes());
    a.push(6);
    a.push(4);
    a.extend_from_slice(&op.to_be_bytes());
    a.extend_from_slice(&sha);
    a.extend_from_slice(&spa.octets());
    a.extend_from_slice(&tha);
    a.extend_from_slice(&tpa.octets());
    a
}

/// Solicited-node multicast address of `target`, and its multicast MAC.
pub fn solicited_node(target: Ipv6Addr) -> (Ipv6Addr, [u8; 6]) {
    let t = target.octets();
    let mut a = [0u8; 16];
    a[0] = 0xff;
    a[1] = 0x02;
    a[11] = 0x01;
    a[12] = 0xff;
    a[13..].copy_from_slice(&t[13..]);
    let mac = [0x33, 0x33, 0xff, t[13], t[14], t[15]];
    (Ipv6Addr::from(a), mac)
}

/// Neighbour solicitation (ICMPv6 message, checksummed) for `target`.
pub fn ns(src: Ipv6Addr, dst: Ipv6Addr, target: Ipv6Addr, slla: Option<[u8; 6]>) -> Vec<u8> {
    let mut m = vec![135, 0, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(&target.octets());
    if let Some(mac) = slla {
        m.extend_from_slice(&[1, 1]);
        m.extend_from_slice(&mac);
    }
    let p = pseudo6(src, dst, IPPROTO_ICMPV6, m.len());
    with_l4_checksum(m, &p, 2)
}

/// Neighbour advertisement (Solicited, Override) with a target link-layer
/// address option, checksummed: what the gateway must answer.
pub fn na(src: Ipv6Addr, dst: Ipv6Addr, target: Ipv6Addr, tlla: [u8; 6]) -> Vec<u8> {
    let mut m = vec![136, 0, 0, 0, 0x60, 0, 0, 0];
    m.extend_from_slice(&target.octets());
    m.extend_from_slice(&[2, 1]);
    m.extend_from_slice(&tlla);
    let p = pseudo6(src, dst, IPPROTO_ICMPV6, m.len());
    with_l4_checksum(m, &p, 2)
}

/// An IPv6 extension header (hop-by-hop or destination options) of 8 bytes:
/// next header, length 0, PadN option filling the rest.
pub fn ext_opts8(nexthdr: u8) -> Vec<u8> {
    vec![nexthdr, 0, 1, 4, 0, 0, 0, 0]
}

/// Type 4 (segment routing) header with `segments_left`, 8 bytes + one address.
pub fn ext_routing(nexthdr: u8, segments_left: u8) -> Vec<u8> {
    let mut h = vec![nexthdr, 2, 4, segments_left, 0, 0, 0, 0];
    h.extend_from_slice(&[0u8; 16]);
    h
}

/// Fragment header: offset 0, more fragments.
pub fn ext_fragment(nexthdr: u8) -> Vec<u8> {
    vec![nexthdr, 0, 0, 1, 0, 0, 0, 7]
}
