//! Golden-packet tests (Katran style): a table of frames, each with the
//! verdict, the one counter it must increment, and for XDP_TX the exact frame
//! the program must send back. Run through BPF_PROG_TEST_RUN against the
//! loaded (not attached) programs with their maps filled in. Needs root.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsFd;

use common::frames::*;
use libbpf_rs::MapCore;
use sluice_bpf::abi;
use sluice_bpf::{
    GatewayProgram, L4Proto, ReflectorCounter, ReflectorProgram, XdpAction, XdpCounter,
    VIP_ANSWER_NEIGH, VIP_ICMP_ECHO, VIP_LOCAL_PORTS,
};

const GW_MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x00, 0x53, 0x01];
const PEER_MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x00, 0x53, 0x02];
const BCAST: [u8; 6] = [0xff; 6];
const ZERO_MAC: [u8; 6] = [0; 6];

const VIP4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// A VIP with no flags: no neighbour answers, no echo, no local ports.
const QUIET4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 3);
const PEER4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const OTHER4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 200);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 1);
const QUIET6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 3);
const PEER6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2);
const OTHER6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0xc8);

const UDP_LISTEN: u16 = 4433;
const TCP_LISTEN: u16 = 443;
const LOCAL_LO: u16 = 40000;
const LOCAL_HI: u16 = 40999;

/// One golden packet.
struct Case {
    name: &'static str,
    input: Vec<u8>,
    action: XdpAction,
    counter: XdpCounter,
    /// The exact frame sent back, for XDP_TX.
    output: Option<Vec<u8>>,
}

fn case(name: &'static str, input: Vec<u8>, action: XdpAction, counter: XdpCounter) -> Case {
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

fn tx(name: &'static str, input: Vec<u8>, counter: XdpCounter, output: Vec<u8>) -> Case {
    Case {
        output: Some(output),
        ..case(name, input, XdpAction::Tx, counter)
    }
}

// --- frame shorthands -------------------------------------------------------

fn v4_frame(vlans: &[(u16, u16)], ip: &V4, l4: &[u8]) -> Vec<u8> {
    eth(GW_MAC, PEER_MAC, vlans, ETH_P_IP, &ip.build(l4))
}

fn udp4(dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    let ip = V4::new(PEER4, dst, IPPROTO_UDP);
    let seg = udp(50000, dport, b"hello sluice");
    let seg = with_l4_checksum(seg.clone(), &ip.pseudo(seg.len()), 6);
    v4_frame(&[], &ip, &seg)
}

fn tcp4(dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    let ip = V4::new(PEER4, dst, IPPROTO_TCP);
    let seg = tcp_syn(50000, dport);
    let seg = with_l4_checksum(seg.clone(), &ip.pseudo(seg.len()), 16);
    v4_frame(&[], &ip, &seg)
}

fn echo4(dst: Ipv4Addr, ty: u8) -> Vec<u8> {
    let ip = V4::new(PEER4, dst, IPPROTO_ICMP);
    let m = icmp(ty, 0, &ECHO_BODY);
    let c = checksum(&m);
    let mut m = m;
    m[2..4].copy_from_slice(&c.to_be_bytes());
    v4_frame(&[], &ip, &m)
}

fn v6_frame(vlans: &[(u16, u16)], dst: Ipv6Addr, nexthdr: u8, payload: &[u8]) -> Vec<u8> {
    eth(
        GW_MAC,
        PEER_MAC,
        vlans,
        ETH_P_IPV6,
        &ipv6(PEER6, dst, nexthdr, 64, payload),
    )
}

fn udp6_seg(dst: Ipv6Addr, dport: u16) -> Vec<u8> {
    let seg = udp(50000, dport, b"hello sluice");
    with_l4_checksum(seg.clone(), &pseudo6(PEER6, dst, IPPROTO_UDP, seg.len()), 6)
}

fn udp6(dst: Ipv6Addr, dport: u16) -> Vec<u8> {
    v6_frame(&[], dst, IPPROTO_UDP, &udp6_seg(dst, dport))
}

fn tcp6(dst: Ipv6Addr, dport: u16) -> Vec<u8> {
    let seg = tcp_syn(50000, dport);
    let seg = with_l4_checksum(
        seg.clone(),
        &pseudo6(PEER6, dst, IPPROTO_TCP, seg.len()),
        16,
    );
    v6_frame(&[], dst, IPPROTO_TCP, &seg)
}

fn echo6(dst: Ipv6Addr, ty: u8) -> Vec<u8> {
    let m = icmp(ty, 0, &ECHO_BODY);
    let m = with_l4_checksum(m.clone(), &pseudo6(PEER6, dst, IPPROTO_ICMPV6, m.len()), 2);
    v6_frame(&[], dst, IPPROTO_ICMPV6, &m)
}

fn arp_request(vlans: &[(u16, u16)], target: Ipv4Addr) -> Vec<u8> {
    eth(
        BCAST,
        PEER_MAC,
        vlans,
        ETH_P_ARP,
        &arp(1, PEER_MAC, PEER4, ZERO_MAC, target),
    )
}

fn arp_reply_from_gw(vlans: &[(u16, u16)], vip: Ipv4Addr) -> Vec<u8> {
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
fn ns_frame(vlans: &[(u16, u16)], target: Ipv6Addr, slla: bool, unicast: bool, hl: u8) -> Vec<u8> {
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

fn na_frame(vlans: &[(u16, u16)], target: Ipv6Addr) -> Vec<u8> {
    let m = na(target, PEER6, target, GW_MAC);
    eth(
        PEER_MAC,
        GW_MAC,
        vlans,
        ETH_P_IPV6,
        &ipv6(target, PEER6, IPPROTO_ICMPV6, 255, &m),
    )
}

const VLAN: (u16, u16) = (ETH_P_8021Q, 100);
const QINQ: [(u16, u16); 2] = [(ETH_P_8021AD, 10), (ETH_P_8021Q, 100)];

fn pad_to(mut f: Vec<u8>, len: usize) -> Vec<u8> {
    f.resize(len.max(f.len()), 0);
    f
}

/// The table.
fn cases() -> Vec<Case> {
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

/// A loaded gateway with the test VIPs, listeners and config, and an AF_XDP
/// socket registered for queue 0.
struct Fixture {
    prog: GatewayProgram,
    _socket: sluice_xsk::probe::ProbeSocket,
}

fn fixture() -> Fixture {
    common::require_root();
    common::init_tracing();
    let prog = GatewayProgram::load().expect("loading the gateway program");
    let maps = prog.maps();
    maps.set_config(GW_MAC, Some((LOCAL_LO, LOCAL_HI))).unwrap();
    let all = VIP_ANSWER_NEIGH | VIP_ICMP_ECHO | VIP_LOCAL_PORTS;
    for (vip, flags) in [
        (IpAddr::V4(VIP4), all),
        (IpAddr::V6(VIP6), all),
        (IpAddr::V4(QUIET4), 0),
        (IpAddr::V6(QUIET6), 0),
    ] {
        maps.add_vip(vip, flags).unwrap();
    }
    for vip in [IpAddr::V4(VIP4), IpAddr::V6(VIP6)] {
        maps.add_listener(vip, L4Proto::Udp, UDP_LISTEN, 1).unwrap();
        maps.add_listener(vip, L4Proto::Tcp, TCP_LISTEN, 2).unwrap();
    }
    let socket = common::private_probe_socket();
    maps.register_socket(0, socket.as_fd()).unwrap();
    Fixture {
        prog,
        _socket: socket,
    }
}

fn hex(b: &[u8]) -> String {
    b.chunks(16)
        .map(|l| {
            l.iter()
                .map(|x| format!("{x:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs one case; returns a description of what went wrong, if anything.
fn run_case(prog: &GatewayProgram, c: &Case) -> Option<String> {
    let before = prog.maps().counters().unwrap();
    let run = prog.test_run(&c.input).unwrap();
    let delta = prog.maps().counters().unwrap().since(&before);
    let mut errors = Vec::new();

    if run.action() != Some(c.action) {
        errors.push(format!(
            "verdict {:?} (code {}), expected {:?}",
            run.action(),
            run.code,
            c.action
        ));
    }
    for (counter, v) in delta.iter() {
        let want = if counter == c.counter {
            abi::Counter {
                packets: 1,
                bytes: c.input.len() as u64,
            }
        } else {
            abi::Counter::default()
        };
        if v != want {
            errors.push(format!(
                "counter {} moved by {v:?}, expected {want:?}",
                counter.name()
            ));
        }
    }
    let expected = c.output.as_ref().unwrap_or(&c.input);
    if &run.frame != expected {
        errors.push(format!(
            "frame differs\n  got:\n{}\n  expected:\n{}",
            hex(&run.frame),
            hex(expected)
        ));
    }
    (!errors.is_empty()).then(|| format!("{}: {}", c.name, errors.join("; ")))
}

#[test]
fn golden_packets() {
    let fx = fixture();
    let cases = cases();
    let failures: Vec<String> = cases.iter().filter_map(|c| run_case(&fx.prog, c)).collect();
    assert!(
        failures.is_empty(),
        "{} of {} golden packets failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    eprintln!("{} golden packets passed", cases.len());
}

#[test]
fn steered_without_socket_is_dropped() {
    let fx = fixture();
    fx.prog.maps().unregister_socket(0).unwrap();
    fx.prog.maps().unregister_socket(0).unwrap(); // idempotent
    let cases = [
        case(
            "UDP to a listener, no socket",
            udp4(VIP4, UDP_LISTEN),
            XdpAction::Drop,
            XdpCounter::DropNoSocket,
        ),
        case(
            "TCP to the local range, no socket",
            tcp6(VIP6, LOCAL_LO),
            XdpAction::Drop,
            XdpCounter::DropNoSocket,
        ),
        case(
            "echo request, no socket",
            echo4(VIP4, 8),
            XdpAction::Drop,
            XdpCounter::DropNoSocket,
        ),
    ];
    let failures: Vec<String> = cases.iter().filter_map(|c| run_case(&fx.prog, c)).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn map_changes_take_effect() {
    let fx = fixture();
    let maps = fx.prog.maps();

    assert!(maps
        .remove_listener(IpAddr::V4(VIP4), L4Proto::Udp, UDP_LISTEN)
        .unwrap());
    assert!(!maps
        .remove_listener(IpAddr::V4(VIP4), L4Proto::Udp, UDP_LISTEN)
        .unwrap());
    let c = case(
        "removed listener",
        udp4(VIP4, UDP_LISTEN),
        XdpAction::Pass,
        XdpCounter::PassVipUnbound,
    );
    assert_eq!(run_case(&fx.prog, &c), None);

    assert_eq!(
        maps.vip(IpAddr::V4(VIP4)).unwrap(),
        Some(VIP_ANSWER_NEIGH | VIP_ICMP_ECHO | VIP_LOCAL_PORTS)
    );
    assert!(maps.remove_vip(IpAddr::V4(VIP4)).unwrap());
    assert_eq!(maps.vip(IpAddr::V4(VIP4)).unwrap(), None);
    let c = case(
        "removed VIP",
        tcp4(VIP4, TCP_LISTEN),
        XdpAction::Pass,
        XdpCounter::PassNotVip,
    );
    assert_eq!(run_case(&fx.prog, &c), None);

    // A zero MAC switches the neighbour responder off.
    maps.set_config([0; 6], None).unwrap();
    let c = case(
        "ARP, responder off",
        arp_request(&[], QUIET4),
        XdpAction::Pass,
        XdpCounter::PassNeighOther,
    );
    assert_eq!(run_case(&fx.prog, &c), None);
    let c = case(
        "NS, responder off",
        ns_frame(&[], VIP6, true, false, 255),
        XdpAction::Pass,
        XdpCounter::PassNeighOther,
    );
    assert_eq!(run_case(&fx.prog, &c), None);
    // And no local port range.
    let c = case(
        "local range off",
        tcp6(VIP6, LOCAL_LO),
        XdpAction::Pass,
        XdpCounter::PassVipUnbound,
    );
    assert_eq!(run_case(&fx.prog, &c), None);

    assert!(
        maps.add_vip(IpAddr::V4(VIP4), 1 << 7).is_err(),
        "unknown flags are refused"
    );
    assert!(
        maps.set_config(GW_MAC, Some((10, 5))).is_err(),
        "empty ranges are refused"
    );
    assert!(maps
        .register_socket(sluice_bpf::MAX_QUEUES, fx._socket.as_fd())
        .is_err());
}

#[test]
fn loaded_maps_match_the_abi() {
    use std::mem::size_of;
    common::require_root();
    let prog = GatewayProgram::load().unwrap();
    assert_eq!(
        prog.maps().config().unwrap(),
        abi::Config::default(),
        "the config starts zeroed"
    );
    let expected = [
        ("xsks", 4, 4, abi::MAX_QUEUES),
        (
            "vips",
            size_of::<abi::VipKey>(),
            size_of::<abi::VipValue>(),
            abi::MAX_VIPS,
        ),
        (
            "listeners",
            size_of::<abi::ListenerKey>(),
            size_of::<abi::ListenerValue>(),
            abi::MAX_LISTENERS,
        ),
        ("config", 4, size_of::<abi::Config>(), 1),
        (
            "counters",
            4,
            size_of::<abi::Counter>(),
            XdpCounter::COUNT as u32,
        ),
    ];
    let handles = prog.maps().raw_handles();
    assert_eq!(handles.len(), expected.len());
    for ((name, map), (want_name, key, value, entries)) in handles.iter().zip(expected) {
        assert_eq!(*name, want_name);
        assert_eq!(
            (
                map.key_size() as usize,
                map.value_size() as usize,
                map.max_entries()
            ),
            (key, value, entries),
            "map {name}: (key size, value size, entries)"
        );
    }
}

// --- reflector ------------------------------------------------------------------

#[test]
fn reflector_golden_packets() {
    common::require_root();
    common::init_tracing();
    let prog = ReflectorProgram::load().unwrap();
    let port = 7777;
    let run = |frame: &[u8]| {
        let before = prog.counters().unwrap();
        let r = prog.test_run(frame).unwrap();
        let after = prog.counters().unwrap();
        let moved: Vec<_> = ReflectorCounter::ALL
            .iter()
            .filter(|&&c| after[c].packets != before[c].packets)
            .copied()
            .collect();
        (r, moved)
    };

    // Disabled until a target is set.
    let (r, moved) = run(&udp4(VIP4, port));
    assert_eq!(
        (r.action(), moved),
        (Some(XdpAction::Pass), vec![ReflectorCounter::Passed])
    );

    // IPv4: MACs, addresses and ports swapped, TTL 64, checksums valid.
    prog.set_target(SocketAddr::new(IpAddr::V4(VIP4), port))
        .unwrap();
    let mut ip = V4::new(PEER4, VIP4, IPPROTO_UDP);
    ip.ttl = 3;
    let seg = udp(50000, port, b"reflect me");
    let seg = with_l4_checksum(seg.clone(), &ip.pseudo(seg.len()), 6);
    let input = eth(GW_MAC, PEER_MAC, &[], ETH_P_IP, &ip.build(&seg));
    let back_ip = V4 {
        src: VIP4,
        dst: PEER4,
        ttl: 64,
        ..ip.clone()
    };
    let back_seg = udp(port, 50000, b"reflect me");
    let back_seg = with_l4_checksum(back_seg.clone(), &back_ip.pseudo(back_seg.len()), 6);
    assert_eq!(&back_seg[6..8], &seg[6..8], "swapping is checksum-neutral");
    let expected = eth(PEER_MAC, GW_MAC, &[], ETH_P_IP, &back_ip.build(&back_seg));
    let (r, moved) = run(&input);
    assert_eq!(
        (r.action(), moved),
        (Some(XdpAction::Tx), vec![ReflectorCounter::Reflected])
    );
    assert_eq!(hex(&r.frame), hex(&expected), "reflected IPv4 frame");

    // Other port, other address, a fragment: passed.
    for (what, f) in [
        ("other port", udp4(VIP4, port + 1)),
        ("other address", udp4(OTHER4, port)),
        ("TCP", tcp4(VIP4, port)),
        ("fragment", {
            let mut ip = V4::new(PEER4, VIP4, IPPROTO_UDP);
            ip.frag = 0x2000;
            v4_frame(&[], &ip, &udp(50000, port, b"frag"))
        }),
    ] {
        let (r, moved) = run(&f);
        assert_eq!(
            (r.action(), moved),
            (Some(XdpAction::Pass), vec![ReflectorCounter::Passed]),
            "{what}"
        );
        assert_eq!(r.frame, f, "{what}: frame untouched");
    }

    // IPv6, behind a VLAN tag.
    prog.set_target(SocketAddr::new(IpAddr::V6(VIP6), port))
        .unwrap();
    let seg = udp(50000, port, b"reflect me");
    let seg = with_l4_checksum(
        seg.clone(),
        &pseudo6(PEER6, VIP6, IPPROTO_UDP, seg.len()),
        6,
    );
    let input = eth(
        GW_MAC,
        PEER_MAC,
        &[VLAN],
        ETH_P_IPV6,
        &ipv6(PEER6, VIP6, IPPROTO_UDP, 5, &seg),
    );
    let back = udp(port, 50000, b"reflect me");
    let back = with_l4_checksum(
        back.clone(),
        &pseudo6(VIP6, PEER6, IPPROTO_UDP, back.len()),
        6,
    );
    let expected = eth(
        PEER_MAC,
        GW_MAC,
        &[VLAN],
        ETH_P_IPV6,
        &ipv6(VIP6, PEER6, IPPROTO_UDP, 64, &back),
    );
    let (r, moved) = run(&input);
    assert_eq!(
        (r.action(), moved),
        (Some(XdpAction::Tx), vec![ReflectorCounter::Reflected])
    );
    assert_eq!(hex(&r.frame), hex(&expected), "reflected IPv6 frame");
}

#[test]
fn checksum_of_rfc1071_example() {
    // RFC 1071 section 3: the words sum to 0xddf2; the checksum is its complement.
    let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
    assert_eq!(checksum(&data), !0xddf2);
}
