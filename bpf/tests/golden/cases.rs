//! The golden-packet table: addresses, frame shorthands and the cases.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::common::frames::*;
use sluice_bpf::{XdpAction, XdpCounter};

pub const GW_MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x00, 0x53, 0x01];
pub const PEER_MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x00, 0x53, 0x02];
pub const BCAST: [u8; 6] = [0xff; 6];
pub const ZERO_MAC: [u8; 6] = [0; 6];

pub const VIP4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// A VIP with no flags: no neighbour answers, no echo, no local ports.
pub const QUIET4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 3);
pub const PEER4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub const OTHER4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 200);
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 1);
pub const QUIET6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 3);
pub const PEER6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2);
pub const OTHER6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0xc8);

pub const UDP_LISTEN: u16 = 4433;
pub const TCP_LISTEN: u16 = 443;
pub const LOCAL_LO: u16 = 40000;
pub const LOCAL_HI: u16 = 40999;

/// One golden packet.
pub struct Case {
    pub name: &'static str,
    pub input: Vec<u8>,
    pub action: XdpAction,
    pub counter: XdpCounter,
    /// The exact frame sent back, for XDP_TX.
    pub output: Option<Vec<u8>>,
}

pub fn case(name: &'static str, input: Vec<u8>, action: XdpAction, counter: XdpCounter) -> Case {
    assert_eq!(
        counter.verdict(),
        action,
        "{name}: counter and verdict disagree"
    );
    Case {
        name,
        input,
        action,
        counter,
        output: None,
    }
}

pub fn tx(name: &'static str, input: Vec<u8>, counter: XdpCounter, output: Vec<u8>) -> Case {
    Case {
        output: Some(output),
        ..case(name, input, XdpAction::Tx, counter)
    }
}

// --- frame shorthands -------------------------------------------------------

pub fn v4_frame(vlans: &[(u16, u16)], ip: &V4, l4: &[u8]) -> Vec<u8> {
    eth(GW_MAC, PEER_MAC, vlans, ETH_P_IP, &ip.build(l4))
}

pub fn udp4(dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    let ip = V4::new(PEER4, dst, IPPROTO_UDP);
    let seg = udp(50000, dport, b"hello sluice");
    let seg = with_l4_checksum(seg.clone(), &ip.pseudo(seg.len()), 6);
    v4_frame(&[], &ip, &seg)
}

pub fn tcp4(dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    let ip = V4::new(PEER4, dst, IPPROTO_TCP);
    let seg = tcp_syn(50000, dport);
    let seg = with_l4_checksum(seg.clone(), &ip.pseudo(seg.len()), 16);
    v4_frame(&[], &ip, &seg)
}

pub fn echo4(dst: Ipv4Addr, ty: u8) -> Vec<u8> {
    let ip = V4::new(PEER4, dst, IPPROTO_ICMP);
    let m = icmp(ty, 0, &ECHO_BODY);
    let c = checksum(&m);
    let mut m = m;
    m[2..4].copy_from_slice(&c.to_be_bytes());
    v4_frame(&[], &ip, &m)
}

pub fn v6_frame(vlans: &[(u16, u16)], dst: Ipv6Addr, nexthdr: u8, payload: &[u8]) -> Vec<u8> {
    eth(
        GW_MAC,
        PEER_MAC,
        vlans,
        ETH_P_IPV6,
        &ipv6(PEER6, dst, nexthdr, 64, payload),
    )
}

pub fn udp6_seg(dst: Ipv6Addr, dport: u16) -> Vec<u8> {
    let seg = udp(50000, dport, b"hello sluice");
    with_l4_checksum(seg.clone(), &pseudo6(PEER6, dst, IPPROTO_UDP, seg.len()), 6)
}

pub fn udp6(dst: Ipv6Addr, dport: u16) -> Vec<u8> {
    v6_frame(&[], dst, IPPROTO_UDP, &udp6_seg(dst, dport))
}

pub fn tcp6(dst: Ipv6Addr, dport: u16) -> Vec<u8> {
    let seg = tcp_syn(50000, dport);
    let seg = with_l4_checksum(
        seg.clone(),
        &pseudo6(PEER6, dst, IPPROTO_TCP, seg.len()),
        16,
    );
    v6_frame(&[], dst, IPPROTO_TCP, &seg)
}

pub fn echo6(dst: Ipv6Addr, ty: u8) -> Vec<u8> {
    let m = icmp(ty, 0, &ECHO_BODY);
    let m = with_l4_checksum(m.clone(), &pseudo6(PEER6, dst, IPPROTO_ICMPV6, m.len()), 2);
    v6_frame(&[], dst, IPPROTO_ICMPV6, &m)
}

pub fn arp_request(vlans: &[(u16, u16)], target: Ipv4Addr) -> Vec<u8> {
    eth(
        BCAST,
        PEER_MAC,
        vlans,
        ETH_P_ARP,
        &arp(1, PEER_MAC, PEER4, ZERO_MAC, target),
    )
}

pub fn arp_reply_from_gw(vlans: &[(u16, u16)], vip: Ipv4Addr) -> Vec<u8> {
    eth(
        PEER_MAC,
        GW_MAC,
        vlans,
        ETH_P_ARP,
        &arp(2, GW_MAC, vip, PEER_MAC, PEER4),
    )
}

/// NS from PEER6 for `target`, to its solicited-node group (or to `target`
/// itself when `unicast`), with hop limit `hl`.
pub fn ns_frame(
    vlans: &[(u16, u16)],
    target: Ipv6Addr,
    slla: bool,
    unicast: bool,
    hl: u8,
) -> Vec<u8> {
    let (group, group_mac) = solicited_node(target);
    let (dst, dst_mac) = if unicast {
        (target, GW_MAC)
    } else {
        (group, group_mac)
    };
    let m = ns(PEER6, dst, target, slla.then_some(PEER_MAC));
    eth(
        dst_mac,
        PEER_MAC,
        vlans,
        ETH_P_IPV6,
        &ipv6(PEER6, dst, IPPROTO_ICMPV6, hl, &m),
    )
}

pub fn na_frame(vlans: &[(u16, u16)], target: Ipv6Addr) -> Vec<u8> {
    let m = na(target, PEER6, target, GW_MAC);
    eth(
        PEER_MAC,
        GW_MAC,
        vlans,
        ETH_P_IPV6,
        &ipv6(target, PEER6, IPPROTO_ICMPV6, 255, &m),
    )
}

pub const VLAN: (u16, u16) = (ETH_P_8021Q, 100);
pub const QINQ: [(u16, u16); 2] = [(ETH_P_8021AD, 10), (ETH_P_8021Q, 100)];

pub fn pad_to(mut f: Vec<u8>, len: usize) -> Vec<u8> {
    f.resize(len.max(f.len()), 0);
    f
}

/// The table.
pub fn cases() -> Vec<Case> {
    use XdpAction::*;
    use XdpCounter::*;

    let mut t = vec![
        // --- ARP --------------------------------------------------------------
        tx(
            "ARP request for a VIP",
            arp_request(&[], VIP4),
            TxArpReply,
            arp_reply_from_gw(&[], VIP4),
        ),
        tx(
            "ARP request for a VIP, Ethernet padding kept",
            pad_to(arp_request(&[], VIP4), 60),
            TxArpReply,
            pad_to(arp_reply_from_gw(&[], VIP4), 60),
        ),
        tx(
            "ARP request for a VIP, 802.1Q tag kept",
            arp_request(&[VLAN], VIP4),
            TxArpReply,
            arp_reply_from_gw(&[VLAN], VIP4),
        ),
        tx(
            "ARP request for a VIP, QinQ tags kept",
            arp_request(&QINQ, VIP4),
            TxArpReply,
            arp_reply_from_gw(&QINQ, VIP4),
        ),
        case(
            "ARP request for a non-VIP",
            arp_request(&[], OTHER4),
            Pass,
            PassNeighOther,
        ),
        case(
            "ARP request for a VIP without ANSWER_NEIGH",
            arp_request(&[], QUIET4),
            Pass,
            PassNeighOther,
        ),
        case(
            "ARP reply about a VIP",
            eth(
                GW_MAC,
                PEER_MAC,
                &[],
                ETH_P_ARP,
                &arp(2, PEER_MAC, PEER4, GW_MAC, VIP4),
            ),
            Pass,
            PassNeighOther,
        ),
        case(
            "ARP truncated",
            arp_request(&[], VIP4)[..14 + 20].to_vec(),
            Drop,
            DropMalformedArp,
        ),
        case(
            "ARP with 8-byte hardware addresses",
            {
                let mut f = arp_request(&[], VIP4);
                f[14 + 4] = 8;
                f
            },
            Drop,
            DropMalformedArp,
        ),
        // --- IPv6 neighbour discovery -------------------------------------------
        tx(
            "NS for a VIP with source link-layer option",
            ns_frame(&[], VIP6, true, false, 255),
            TxNeighAdvert,
            na_frame(&[], VIP6),
        ),
        tx(
            "NS for a VIP without source link-layer option (frame grows)",
            ns_frame(&[], VIP6, false, true, 255),
            TxNeighAdvert,
            na_frame(&[], VIP6),
        ),
        tx(
            "NS for a VIP, 802.1Q tag kept",
            ns_frame(&[VLAN], VIP6, true, false, 255),
            TxNeighAdvert,
            na_frame(&[VLAN], VIP6),
        ),
        case(
            "DAD NS (unspecified source) for a VIP",
            {
                let (group, mac) = solicited_node(VIP6);
                let m = ns(Ipv6Addr::UNSPECIFIED, group, VIP6, None);
                eth(
                    mac,
                    PEER_MAC,
                    &[],
                    ETH_P_IPV6,
                    &ipv6(Ipv6Addr::UNSPECIFIED, group, IPPROTO_ICMPV6, 255, &m),
                )
            },
            Pass,
            PassNeighOther,
        ),
        case(
            "NS with hop limit 64",
            ns_frame(&[], VIP6, true, false, 64),
            Pass,
            PassNeighOther,
        ),
        case(
            "NS with a bad checksum",
            {
                let mut f = ns_frame(&[], VIP6, true, false, 255);
                f[14 + 40 + 2] ^= 0x55;
                f
            },
            Pass,
            PassNeighOther,
        ),
        case(
            "NS for a non-VIP",
            ns_frame(&[], OTHER6, true, false, 255),
            Pass,
            PassNeighOther,
        ),
        case(
            "NS for a VIP without ANSWER_NEIGH",
            ns_frame(&[], QUIET6, true, false, 255),
            Pass,
            PassNeighOther,
        ),
        case(
            "router solicitation",
            {
                let all_routers: Ipv6Addr = "ff02::2".parse().unwrap();
                let m = icmp(133, 0, &[0; 4]);
                let m = with_l4_checksum(
                    m.clone(),
                    &pseudo6(PEER6, all_routers, IPPROTO_ICMPV6, m.len()),
                    2,
                );
                eth(
                    [0x33, 0x33, 0, 0, 0, 2],
                    PEER_MAC,
                    &[],
                    ETH_P_IPV6,
                    &ipv6(PEER6, all_routers, IPPROTO_ICMPV6, 255, &m),
                )
            },
            Pass,
            PassNeighOther,
        ),
        // --- steering -------------------------------------------------------------
        case(
            "UDP to an IPv4 listener",
            udp4(VIP4, UDP_LISTEN),
            Redirect,
            RedirectListener,
        ),
        case(
            "TCP SYN to an IPv4 listener",
            tcp4(VIP4, TCP_LISTEN),
            Redirect,
            RedirectListener,
        ),
        case(
            "UDP to an IPv6 listener",
            udp6(VIP6, UDP_LISTEN),
            Redirect,
            RedirectListener,
        ),
        case(
            "TCP SYN to an IPv6 listener",
            tcp6(VIP6, TCP_LISTEN),
            Redirect,
            RedirectListener,
        ),
        case(
            "TCP to the UDP listener's port",
            tcp4(VIP4, UDP_LISTEN),
            Pass,
            PassVipUnbound,
        ),
        case(
            "UDP to a VIP, unbound port",
            udp4(VIP4, 9999),
            Pass,
            PassVipUnbound,
        ),
        case(
            "TCP to a VIP, local port range (low end)",
            tcp4(VIP4, LOCAL_LO),
            Redirect,
            RedirectLocalPort,
        ),
        case(
            "UDP to a VIP, local port range (high end)",
            udp4(VIP4, LOCAL_HI),
            Redirect,
            RedirectLocalPort,
        ),
        case(
            "TCP to an IPv6 VIP, local port range",
            tcp6(VIP6, 40500),
            Redirect,
            RedirectLocalPort,
        ),
        case(
            "TCP to a VIP, just above the local range",
            tcp4(VIP4, LOCAL_HI + 1),
            Pass,
            PassVipUnbound,
        ),
        case(
            "TCP to a VIP without LOCAL_PORTS, in range",
            tcp4(QUIET4, 40500),
            Pass,
            PassVipUnbound,
        ),
        case(
            "ICMP echo request to a VIP",
            echo4(VIP4, 8),
            Redirect,
            RedirectIcmpEcho,
        ),
        case(
            "ICMP echo reply to a VIP",
            echo4(VIP4, 0),
            Pass,
            PassVipUnbound,
        ),
        case(
            "ICMP echo request to a VIP without ICMP_ECHO",
            echo4(QUIET4, 8),
            Pass,
            PassVipUnbound,
        ),
        case(
            "ICMPv6 echo request to a VIP",
            echo6(VIP6, 128),
            Redirect,
            RedirectIcmpEcho,
        ),
        case(
            "ICMPv6 echo request to a VIP without ICMP_ECHO",
            echo6(QUIET6, 128),
            Pass,
            PassVipUnbound,
        ),
        case(
            "GRE to a VIP",
            v4_frame(&[], &V4::new(PEER4, VIP4, 47), &[0; 8]),
            Pass,
            PassVipUnbound,
        ),
        case(
            "UDP to a non-VIP",
            udp4(OTHER4, UDP_LISTEN),
            Pass,
            PassNotVip,
        ),
        case(
            "UDP to an IPv6 non-VIP",
            udp6(OTHER6, UDP_LISTEN),
            Pass,
            PassNotVip,
        ),
        case(
            "UDP to a listener with Ethernet padding after the IP packet",
            pad_to(udp4(VIP4, UDP_LISTEN), 80),
            Redirect,
            RedirectListener,
        ),
        case(
            "UDP to a listener, IPv4 with options",
            {
                let mut ip = V4::new(PEER4, VIP4, IPPROTO_UDP);
                ip.options = vec![0x94, 0x04, 0, 0, 1, 1, 1, 0]; // router alert, NOPs, EOL
                let seg = udp(50000, UDP_LISTEN, b"opt");
                let seg = with_l4_checksum(seg.clone(), &ip.pseudo(seg.len()), 6);
                v4_frame(&[], &ip, &seg)
            },
            Redirect,
            RedirectListener,
        ),
        case(
            "UDP to a listener behind an 802.1Q tag",
            {
                let ip = V4::new(PEER4, VIP4, IPPROTO_UDP);
                let seg = udp(50000, UDP_LISTEN, b"vlan");
                let seg = with_l4_checksum(seg.clone(), &ip.pseudo(seg.len()), 6);
                v4_frame(&[VLAN], &ip, &seg)
            },
            Redirect,
            RedirectListener,
        ),
        case(
            "UDP to an IPv6 listener behind QinQ tags",
            v6_frame(&QINQ, VIP6, IPPROTO_UDP, &udp6_seg(VIP6, UDP_LISTEN)),
            Redirect,
            RedirectListener,
        ),
        case(
            "three VLAN tags",
            eth(
                GW_MAC,
                PEER_MAC,
                &[QINQ[0], QINQ[1], VLAN],
                ETH_P_IP,
                &V4::new(PEER4, VIP4, IPPROTO_UDP).build(&udp(1, UDP_LISTEN, b"")),
            ),
            Pass,
            PassNonIp,
        ),
        // --- IPv6 extension headers ---------------------------------------------------
        case(
            "UDP to an IPv6 listener after hop-by-hop and destination options",
            {
                let mut p = ext_opts8(60);
                p.extend(ext_opts8(IPPROTO_UDP));
                p.extend(udp6_seg(VIP6, UDP_LISTEN));
                v6_frame(&[], VIP6, 0, &p)
            },
            Redirect,
            RedirectListener,
        ),
        case(
            "UDP to an IPv6 listener after a routing header with no segments left",
            {
                let mut p = ext_routing(IPPROTO_UDP, 0);
                p.extend(udp6_seg(VIP6, UDP_LISTEN));
                v6_frame(&[], VIP6, 43, &p)
            },
            Redirect,
            RedirectListener,
        ),
        case(
            "IPv6 routing header with segments left",
            {
                let mut p = ext_routing(IPPROTO_UDP, 1);
                p.extend(udp6_seg(VIP6, UDP_LISTEN));
                v6_frame(&[], VIP6, 43, &p)
            },
            Pass,
            PassVipUnbound,
        ),
        case(
            "five IPv6 extension headers (more than walked)",
            {
                let mut p = Vec::new();
                for _ in 0..4 {
                    p.extend(ext_opts8(60));
                }
                p.extend(ext_opts8(IPPROTO_UDP));
                p.extend(udp6_seg(VIP6, UDP_LISTEN));
                v6_frame(&[], VIP6, 60, &p)
            },
            Pass,
            PassVipUnbound,
        ),
        case(
            "IPv6 extension header truncated",
            v6_frame(&[], VIP6, 0, &[IPPROTO_UDP, 1, 1, 4, 0, 0, 0, 0]),
            Drop,
            DropMalformedIp,
        ),
        // --- fragments ----------------------------------------------------------------
        case(
            "IPv4 first fragment to a VIP",
            {
                let mut ip = V4::new(PEER4, VIP4, IPPROTO_UDP);
                ip.frag = 0x2000;
                v4_frame(&[], &ip, &udp(50000, UDP_LISTEN, b"frag"))
            },
            Drop,
            DropFragment,
        ),
        case(
            "IPv4 later fragment to a VIP",
            {
                let mut ip = V4::new(PEER4, VIP4, IPPROTO_UDP);
                ip.frag = 100;
                v4_frame(&[], &ip, b"more data")
            },
            Drop,
            DropFragment,
        ),
        case(
            "IPv4 fragment to a non-VIP",
            {
                let mut ip = V4::new(PEER4, OTHER4, IPPROTO_UDP);
                ip.frag = 0x2000;
                v4_frame(&[], &ip, &udp(50000, UDP_LISTEN, b"frag"))
            },
            Pass,
            PassNotVip,
        ),
        case(
            "IPv6 fragment header to a VIP",
            {
                let mut p = ext_fragment(IPPROTO_UDP);
                p.extend(udp6_seg(VIP6, UDP_LISTEN));
                v6_frame(&[], VIP6, 44, &p)
            },
            Drop,
            DropFragment,
        ),
        // --- malformed ----------------------------------------------------------------
        case(
            "Ethernet with a truncated VLAN tag",
            {
                let mut f = eth(GW_MAC, PEER_MAC, &[], ETH_P_8021Q, &[0]);
                f.truncate(15);
                f
            },
            Drop,
            DropMalformedEth,
        ),
        case(
            "non-IP ethertype (LLDP)",
            eth(GW_MAC, PEER_MAC, &[], 0x88cc, &[0; 46]),
            Pass,
            PassNonIp,
        ),
        case(
            "IPv4 header truncated",
            udp4(VIP4, UDP_LISTEN)[..14 + 12].to_vec(),
            Drop,
            DropMalformedIp,
        ),
        case(
            "IPv4 with IHL 4",
            {
                let mut f = udp4(VIP4, UDP_LISTEN);
                f[14] = 0x44;
                f
            },
            Drop,
            DropMalformedIp,
        ),
        case(
            "IPv4 ethertype carrying version 6",
            {
                let mut f = udp4(VIP4, UDP_LISTEN);
                f[14] = 0x65;
                f
            },
            Drop,
            DropMalformedIp,
        ),
        case(
            "IPv4 options longer than the frame",
            {
                let mut f = udp4(VIP4, UDP_LISTEN)[..14 + 24].to_vec();
                f[14] = 0x4f;
                f
            },
            Drop,
            DropMalformedIp,
        ),
        case(
            "IPv4 total length beyond the frame",
            {
                let mut f = udp4(VIP4, UDP_LISTEN);
                let tot = u16::from_be_bytes([f[16], f[17]]) + 1;
                f[16..18].copy_from_slice(&tot.to_be_bytes());
                f
            },
            Drop,
            DropMalformedIp,
        ),
        case(
            "IPv4 total length shorter than its header",
            {
                let mut f = udp4(VIP4, UDP_LISTEN);
                f[16..18].copy_from_slice(&16u16.to_be_bytes());
                f
            },
            Drop,
            DropMalformedIp,
        ),
        case(
            "IPv6 header truncated",
            udp6(VIP6, UDP_LISTEN)[..14 + 30].to_vec(),
            Drop,
            DropMalformedIp,
        ),
        case(
            "IPv6 payload length beyond the frame",
            {
                let mut f = udp6(VIP6, UDP_LISTEN);
                f.truncate(f.len() - 1);
                f
            },
            Drop,
            DropMalformedIp,
        ),
        case(
            "UDP header truncated, to a VIP",
            v4_frame(
                &[],
                &V4::new(PEER4, VIP4, IPPROTO_UDP),
                &udp(50000, UDP_LISTEN, b"")[..4],
            ),
            Drop,
            DropMalformedL4,
        ),
        case(
            "UDP header truncated, to a non-VIP",
            v4_frame(
                &[],
                &V4::new(PEER4, OTHER4, IPPROTO_UDP),
                &udp(50000, UDP_LISTEN, b"")[..4],
            ),
            Pass,
            PassNotVip,
        ),
        case(
            "UDP header cut by the IP total length (frame padded)",
            pad_to(
                v4_frame(
                    &[],
                    &V4::new(PEER4, VIP4, IPPROTO_UDP),
                    &udp(50000, UDP_LISTEN, b"")[..4],
                ),
                60,
            ),
            Drop,
            DropMalformedL4,
        ),
        case(
            "UDP length beyond the IP payload",
            {
                let mut seg = udp(50000, UDP_LISTEN, b"x");
                seg[4..6].copy_from_slice(&100u16.to_be_bytes());
                v4_frame(&[], &V4::new(PEER4, VIP4, IPPROTO_UDP), &seg)
            },
            Drop,
            DropMalformedL4,
        ),
        case(
            "TCP data offset 4",
            {
                let mut seg = tcp_syn(50000, TCP_LISTEN);
                seg[12] = 4 << 4;
                v4_frame(&[], &V4::new(PEER4, VIP4, IPPROTO_TCP), &seg)
            },
            Drop,
            DropMalformedL4,
        ),
        case(
            "TCP header truncated, IPv6",
            v6_frame(&[], VIP6, IPPROTO_TCP, &tcp_syn(50000, TCP_LISTEN)[..12]),
            Drop,
            DropMalformedL4,
        ),
        case(
            "ICMP echo truncated",
            v4_frame(&[], &V4::new(PEER4, VIP4, IPPROTO_ICMP), &[8, 0, 0, 0]),
            Drop,
            DropMalformedL4,
        ),
    ];
    t.retain(|c| !c.name.is_empty());
    t
}

// --- refusal while every backend is ejected -------------------------------------

/// Sequence number of the test SYNs.
pub const SYN_SEQ: u32 = 0x1122_3344;

/// A TCP segment from PEER4:50000 over IPv4 with `ip`'s knobs, checksummed.
pub fn tcp4_frame(vlans: &[(u16, u16)], ip: &V4, seg: Vec<u8>) -> Vec<u8> {
    let seg = with_l4_checksum(seg.clone(), &ip.pseudo(seg.len()), 16);
    v4_frame(vlans, ip, &seg)
}

/// A TCP segment from PEER6 to `dst` over IPv6, after the extension headers
/// `ext` (whose first next-header value is `first`), checksummed.
pub fn tcp6_frame(
    vlans: &[(u16, u16)],
    dst: Ipv6Addr,
    first: u8,
    ext: &[u8],
    seg: Vec<u8>,
) -> Vec<u8> {
    let seg = with_l4_checksum(
        seg.clone(),
        &pseudo6(PEER6, dst, IPPROTO_TCP, seg.len()),
        16,
    );
    let mut payload = ext.to_vec();
    payload.extend(seg);
    v6_frame(vlans, dst, first, &payload)
}

/// A SYN from port 50000 to `dport` with typical options and `data`.
pub fn syn_seg(dport: u16, flags: u8, data: &[u8]) -> Vec<u8> {
    tcp_seg(50000, dport, SYN_SEQ, 0, flags, &SYN_OPTIONS, data)
}

/// What the gateway must send back for a SYN from PEER4:50000 to VIP4:`port`:
/// RST|ACK, SEQ 0, ACK `ack`, no options, window 0; IPv4 id 0, DF, TTL 64.
pub fn rst4(vlans: &[(u16, u16)], port: u16, ack: u32) -> Vec<u8> {
    let mut ip = V4::new(VIP4, PEER4, IPPROTO_TCP);
    ip.id = 0;
    let seg = tcp_seg(port, 50000, 0, ack, TCP_RST | TCP_ACK, &[], &[]);
    let seg = with_l4_checksum(seg.clone(), &ip.pseudo(seg.len()), 16);
    eth(PEER_MAC, GW_MAC, vlans, ETH_P_IP, &ip.build(&seg))
}

/// The same for IPv6: hop limit 64, no extension headers.
pub fn rst6(vlans: &[(u16, u16)], port: u16, ack: u32) -> Vec<u8> {
    let seg = tcp_seg(port, 50000, 0, ack, TCP_RST | TCP_ACK, &[], &[]);
    let seg = with_l4_checksum(
        seg.clone(),
        &pseudo6(VIP6, PEER6, IPPROTO_TCP, seg.len()),
        16,
    );
    eth(
        PEER_MAC,
        GW_MAC,
        vlans,
        ETH_P_IPV6,
        &ipv6(VIP6, PEER6, IPPROTO_TCP, 64, &seg),
    )
}

/// The refusals expected while ALL_EJECTED is set: (case, SYN sequence number,
/// SYN data length) for the explicit RST checks.
pub fn refusal_cases() -> Vec<(Case, u32, u32)> {
    use XdpCounter::*;
    let v4 = V4::new(PEER4, VIP4, IPPROTO_TCP);
    let mut v4_opts = v4.clone();
    v4_opts.options = vec![0x94, 0x04, 0, 0]; // router alert
    let syn = |data: &[u8]| syn_seg(TCP_LISTEN, TCP_SYN, data);
    vec![
        (
            tx(
                "IPv4 SYN, all ejected",
                tcp4_frame(&[], &v4, syn(b"")),
                TxRstNoBackend,
                rst4(&[], TCP_LISTEN, SYN_SEQ + 1),
            ),
            SYN_SEQ,
            0,
        ),
        (
            tx(
                "IPv4 SYN without options, Ethernet padding, all ejected",
                pad_to(
                    tcp4_frame(
                        &[],
                        &v4,
                        tcp_seg(50000, TCP_LISTEN, 7, 0, TCP_SYN, &[], &[]),
                    ),
                    60,
                ),
                TxRstNoBackend,
                rst4(&[], TCP_LISTEN, 8),
            ),
            7,
            0,
        ),
        (
            tx(
                "IPv4 ECN SYN behind 802.1Q, IP options dropped, all ejected",
                tcp4_frame(
                    &[VLAN],
                    &v4_opts,
                    syn_seg(TCP_LISTEN, TCP_SYN | TCP_ECE | TCP_CWR, b""),
                ),
                TxRstNoBackend,
                rst4(&[VLAN], TCP_LISTEN, SYN_SEQ + 1),
            ),
            SYN_SEQ,
            0,
        ),
        (
            tx(
                "IPv4 SYN with data (ACK covers it), all ejected",
                tcp4_frame(&[], &v4, syn(b"GET / HTTP/1.1\r\n")),
                TxRstNoBackend,
                rst4(&[], TCP_LISTEN, SYN_SEQ + 1 + 16),
            ),
            SYN_SEQ,
            16,
        ),
        (
            tx(
                "IPv4 SYN, sequence number wraps, all ejected",
                tcp4_frame(
                    &[],
                    &v4,
                    tcp_seg(50000, TCP_LISTEN, u32::MAX, 0, TCP_SYN, &SYN_OPTIONS, &[]),
                ),
                TxRstNoBackend,
                rst4(&[], TCP_LISTEN, 0),
            ),
            u32::MAX,
            0,
        ),
        (
            tx(
                "IPv6 SYN, all ejected",
                tcp6_frame(&[], VIP6, IPPROTO_TCP, &[], syn(b"")),
                TxRstNoBackend,
                rst6(&[], TCP_LISTEN, SYN_SEQ + 1),
            ),
            SYN_SEQ,
            0,
        ),
        (
            tx(
                "IPv6 SYN behind QinQ after a hop-by-hop header, all ejected",
                tcp6_frame(&QINQ, VIP6, 0, &ext_opts8(IPPROTO_TCP), syn(b"")),
                TxRstNoBackend,
                rst6(&QINQ, TCP_LISTEN, SYN_SEQ + 1),
            ),
            SYN_SEQ,
            0,
        ),
    ]
}

/// Segments steered as usual even while ALL_EJECTED is set.
pub fn not_refused_cases() -> Vec<Case> {
    use XdpAction::*;
    use XdpCounter::*;
    let v4 = V4::new(PEER4, VIP4, IPPROTO_TCP);
    let seg = |flags: u8| tcp_seg(50000, TCP_LISTEN, SYN_SEQ, 99, flags, &[], b"x");
    vec![
        case(
            "IPv4 ACK to a listener, all ejected",
            tcp4_frame(&[], &v4, seg(TCP_ACK)),
            Redirect,
            RedirectListener,
        ),
        case(
            "IPv4 PSH|ACK to a listener, all ejected",
            tcp4_frame(&[], &v4, seg(TCP_PSH | TCP_ACK)),
            Redirect,
            RedirectListener,
        ),
        case(
            "IPv6 ACK to a listener, all ejected",
            tcp6_frame(&[], VIP6, IPPROTO_TCP, &[], seg(TCP_ACK)),
            Redirect,
            RedirectListener,
        ),
        case(
            "IPv4 SYN-ACK to a listener, all ejected",
            tcp4_frame(&[], &v4, seg(TCP_SYN | TCP_ACK)),
            Redirect,
            RedirectListener,
        ),
        case(
            "IPv4 SYN|RST to a listener, all ejected",
            tcp4_frame(&[], &v4, seg(TCP_SYN | TCP_RST)),
            Redirect,
            RedirectListener,
        ),
        case(
            "IPv6 SYN|FIN to a listener, all ejected",
            tcp6_frame(&[], VIP6, IPPROTO_TCP, &[], seg(TCP_SYN | TCP_FIN)),
            Redirect,
            RedirectListener,
        ),
        case(
            "IPv4 RST to a listener, all ejected",
            tcp4_frame(&[], &v4, seg(TCP_RST)),
            Redirect,
            RedirectListener,
        ),
        case(
            "UDP to a listener, all ejected",
            udp4(VIP4, UDP_LISTEN),
            Redirect,
            RedirectListener,
        ),
        case(
            "IPv4 SYN to the local port range, all ejected",
            tcp4_frame(&[], &v4, syn_seg(LOCAL_LO, TCP_SYN, b"")),
            Redirect,
            RedirectLocalPort,
        ),
        case(
            "IPv6 SYN to an unbound port, all ejected",
            tcp6_frame(&[], VIP6, IPPROTO_TCP, &[], syn_seg(9999, TCP_SYN, b"")),
            Pass,
            PassVipUnbound,
        ),
        case(
            "IPv4 SYN to a non-VIP, all ejected",
            tcp4_frame(
                &[],
                &V4::new(PEER4, OTHER4, IPPROTO_TCP),
                syn_seg(TCP_LISTEN, TCP_SYN, b""),
            ),
            Pass,
            PassNotVip,
        ),
        case(
            "IPv4 SYN to a listener, data offset beyond the segment, all ejected",
            {
                let mut s = syn_seg(TCP_LISTEN, TCP_SYN, b"");
                s[12] = 15 << 4;
                tcp4_frame(&[], &v4, s)
            },
            Drop,
            DropMalformedL4,
        ),
    ]
}
