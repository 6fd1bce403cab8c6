//! Property tests: for random reprs, parse(emit(x)) == x and
//! emit(parse(bytes)) == bytes; frames built from random reprs classify to
//! the right offsets, verify, and still verify after the echo rewrites.
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use sluice_netstack::echo::{icmp_echo_in_place, udp_echo_in_place, verify_checksums};
use sluice_netstack::frame::{classify, L4};
use sluice_netstack::wire::{
    ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetAddress, EthernetFrame, EthernetRepr,
    Icmpv4Packet, Icmpv4Repr, Icmpv6Packet, Icmpv6Repr, IpProtocol, Ipv4Options, Ipv4Packet,
    Ipv4Repr, Ipv6Packet, Ipv6Repr, NdpFlags, SackBlocks, SeqNumber, TcpFlags, TcpOptions,
    TcpPacket, TcpRepr, TcpTimestamp, UdpPacket, UdpRepr, VlanStack, VlanTag,
};

fn mac() -> impl Strategy<Value = EthernetAddress> {
    any::<[u8; 6]>().prop_map(EthernetAddress)
}

fn tag() -> impl Strategy<Value = VlanTag> {
    (
        prop_oneof![Just(0x8100u16), Just(0x88a8), Just(0x9100)],
        any::<u16>(),
    )
        .prop_map(|(tpid, tci)| VlanTag {
            tpid: EtherType(tpid),
            tci,
        })
}

fn vlans() -> impl Strategy<Value = VlanStack> {
    prop_oneof![
        Just(VlanStack::Untagged),
        tag().prop_map(VlanStack::One),
        (tag(), tag()).prop_map(|(outer, inner)| VlanStack::Two { outer, inner }),
    ]
}

fn ipv4_repr(payload_len: usize) -> impl Strategy<Value = Ipv4Repr> {
    (
        any::<[u8; 4]>(),
        any::<[u8; 4]>(),
        any::<u8>(),
        any::<u8>(),
        0u8..64,
        0u8..4,
        any::<u16>(),
        any::<bool>(),
        (0usize..=10).prop_flat_map(|n| proptest::collection::vec(any::<u8>(), n * 4)),
    )
        .prop_map(
            move |(s, d, proto, ttl, dscp, ecn, ident, df, opts)| Ipv4Repr {
                src_addr: s.into(),
                dst_addr: d.into(),
                next_header: IpProtocol(proto),
                payload_len,
                hop_limit: ttl,
                dscp,
                ecn,
                ident,
                dont_frag: df,
                options: Ipv4Options::new(&opts).unwrap(),
            },
        )
}

fn tcp_options() -> impl Strategy<Value = TcpOptions> {
    (
        proptest::option::of(any::<u16>()),
        proptest::option::of(any::<u8>()),
        any::<bool>(),
        proptest::option::of(any::<(u32, u32)>()),
        proptest::collection::vec(any::<(u32, u32)>(), 0..=4),
    )
        .prop_map(|(mss, ws, sp, ts, blocks)| {
            let mut o = TcpOptions {
                mss,
                window_scale: ws,
                sack_permitted: sp,
                sack_blocks: SackBlocks::EMPTY,
                timestamp: ts.map(|(tsval, tsecr)| TcpTimestamp { tsval, tsecr }),
            };
            // Keep only the SACK blocks that fit the 40-byte area.
            for (l, r) in blocks {
                let mut more = o;
                if more.sack_blocks.push((SeqNumber(l), SeqNumber(r))).is_ok()
                    && more.buffer_len() <= 40
                {
                    o = more;
                }
            }
            o
        })
}

proptest! {
    #[test]
    fn ethernet(src in mac(), dst in mac(), vlans in vlans(), ty in 0x0600u16..) {
        prop_assume!(!EtherType(ty).is_vlan_tpid());
        let r = EthernetRepr { src_addr: src, dst_addr: dst, vlans, ethertype: EtherType(ty) };
        let mut buf = [0u8; 22];
        let n = r.emit(&mut buf).unwrap();
        let f = EthernetFrame::new_checked(&buf[..n]).unwrap();
        prop_assert_eq!(EthernetRepr::parse(&f).unwrap(), r);
        prop_assert_eq!(f.header_len(), n);
    }

    #[test]
    fn arp(op in 1u16..=2, sha in mac(), tha in mac(), spa in any::<[u8; 4]>(), tpa in any::<[u8; 4]>()) {
        let r = ArpRepr {
            operation: ArpOperation(op),
            source_hardware_addr: sha,
            source_protocol_addr: spa.into(),
            target_hardware_addr: tha,
            target_protocol_addr: tpa.into(),
        };
        let mut buf = [0u8; 28];
        r.emit(&mut buf).unwrap();
        prop_assert_eq!(ArpRepr::parse(&ArpPacket::new_checked(&buf[..]).unwrap()).unwrap(), r);
    }

    #[test]
    fn ipv4(r in (0usize..2000).prop_flat_map(ipv4_repr)) {
        let mut buf = vec![0u8; r.buffer_len() + r.payload_len];
        let n = r.emit(&mut buf).unwrap();
        let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(Ipv4Repr::parse(&p).unwrap(), r);
        let mut again = vec![0u8; n];
        Ipv4Repr::parse(&p).unwrap().emit(&mut again).unwrap();
        prop_assert_eq!(&again[..], &buf[..n]);
    }

    #[test]
    fn ipv6(s in any::<[u8; 16]>(), d in any::<[u8; 16]>(), nh in any::<u8>(), len in 0usize..2000,
            hl in any::<u8>(), tc in any::<u8>(), fl in 0u32..0x10_0000) {
        let r = Ipv6Repr { src_addr: s.into(), dst_addr: d.into(), next_header: IpProtocol(nh),
            payload_len: len, hop_limit: hl, traffic_class: tc, flow_label: fl };
        let mut buf = vec![0u8; 40 + len];
        r.emit(&mut buf).unwrap();
        prop_assert_eq!(Ipv6Repr::parse(&Ipv6Packet::new_checked(&buf[..]).unwrap()).unwrap(), r);
    }

    #[test]
    fn udp(sp in any::<u16>(), dp in any::<u16>(), payload in proptest::collection::vec(any::<u8>(), 0..300),
           v6 in any::<bool>(), s in any::<[u8; 16]>(), d in any::<[u8; 16]>()) {
        let (src, dst) = addrs(v6, s, d);
        let r = UdpRepr { src_port: sp, dst_port: dp, payload_len: payload.len() };
        let mut buf = vec![0u8; r.buffer_len()];
        r.emit(&mut buf, &src, &dst, |p| p.copy_from_slice(&payload)).unwrap();
        let p = UdpPacket::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(UdpRepr::parse(&p, &src, &dst).unwrap(), r);
        prop_assert_eq!(p.payload(), &payload[..]);
        prop_assert_ne!(p.checksum(), 0);
    }

    #[test]
    fn tcp(sp in any::<u16>(), dp in any::<u16>(), seq in any::<u32>(), ack in any::<u32>(),
           flags in 0u16..0x1000, win in any::<u16>(), urg in any::<u16>(), options in tcp_options(),
           payload in proptest::collection::vec(any::<u8>(), 0..300),
           v6 in any::<bool>(), s in any::<[u8; 16]>(), d in any::<[u8; 16]>()) {
        let (src, dst) = addrs(v6, s, d);
        let r = TcpRepr { src_port: sp, dst_port: dp, seq_number: SeqNumber(seq),
            ack_number: SeqNumber(ack), flags: TcpFlags(flags), window_len: win,
            urgent_pointer: urg, options, payload_len: payload.len() };
        let mut buf = vec![0u8; r.buffer_len()];
        let n = r.emit(&mut buf, &src, &dst, |p| p.copy_from_slice(&payload)).unwrap();
        let p = TcpPacket::new_checked(&buf[..n]).unwrap();
        let back = TcpRepr::parse(&p, &src, &dst).unwrap();
        prop_assert_eq!(back, r);
        let mut again = vec![0u8; n];
        back.emit(&mut again, &src, &dst, |pl| pl.copy_from_slice(&payload)).unwrap();
        prop_assert_eq!(again, buf);
    }

    #[test]
    fn icmp(ident in any::<u16>(), seq in any::<u16>(), data in proptest::collection::vec(any::<u8>(), 0..100),
            s in any::<[u8; 16]>(), d in any::<[u8; 16]>(), target in any::<[u8; 16]>(),
            ll in proptest::option::of(mac()), flags in 0u8..8) {
        let r4 = Icmpv4Repr::EchoRequest { ident, seq_no: seq, data: &data };
        let mut buf = vec![0u8; r4.buffer_len()];
        r4.emit(&mut buf).unwrap();
        prop_assert_eq!(Icmpv4Repr::parse(&Icmpv4Packet::new_checked(&buf[..]).unwrap()).unwrap(), r4);
        let (s, d) = (Ipv6Addr::from(s), Ipv6Addr::from(d));
        for r6 in [
            Icmpv6Repr::EchoReply { ident, seq_no: seq, data: &data },
            Icmpv6Repr::NeighborSolicit { target_addr: target.into(), lladdr: ll },
            Icmpv6Repr::NeighborAdvert { flags: NdpFlags(flags << 5), target_addr: target.into(), lladdr: ll },
        ] {
            let mut buf = vec![0u8; r6.buffer_len()];
            r6.emit(&mut buf, &s, &d).unwrap();
            let p = Icmpv6Packet::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(Icmpv6Repr::parse(&p, &s, &d).unwrap(), r6);
        }
    }

    /// A frame built from reprs: classify finds it, verify accepts it, the
    /// echo rewrites keep it valid, and echoing twice gives it back.
    #[test]
    fn frames_classify_and_echo(vlans in vlans(), v6 in any::<bool>(), s in any::<[u8; 16]>(),
                                d in any::<[u8; 16]>(), kind in 0u8..3, sp in any::<u16>(), dp in any::<u16>(),
                                payload in proptest::collection::vec(any::<u8>(), 0..200), pad in 0usize..20,
                                opts in (0usize..=10).prop_flat_map(|n| proptest::collection::vec(any::<u8>(), n * 4))) {
        let (src, dst) = addrs(v6, s, d);
        let l4_len = match kind { 0 => 8, 1 => 20, _ => 8 } + payload.len();
        let proto = match (kind, v6) { (0, _) => IpProtocol::UDP, (1, _) => IpProtocol::TCP,
            (_, false) => IpProtocol::ICMP, (_, true) => IpProtocol::ICMPV6 };
        let mut f = vec![0u8; 22 + 60 + l4_len + pad];
        let eth = EthernetRepr { src_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
            dst_addr: EthernetAddress([2, 0, 0, 0, 0, 2]), vlans,
            ethertype: if v6 { EtherType::IPV6 } else { EtherType::IPV4 } };
        let l3 = eth.emit(&mut f).unwrap();
        let l4 = l3 + match (src, dst) {
            (IpAddr::V4(s4), IpAddr::V4(d4)) => Ipv4Repr { src_addr: s4, dst_addr: d4,
                next_header: proto, payload_len: l4_len, hop_limit: 64, dscp: 0, ecn: 0,
                ident: 1, dont_frag: true, options: Ipv4Options::new(&opts).unwrap() }
                .emit(&mut f[l3..]).unwrap(),
            (IpAddr::V6(s6), IpAddr::V6(d6)) => Ipv6Repr { src_addr: s6, dst_addr: d6,
                next_header: proto, payload_len: l4_len, hop_limit: 64, traffic_class: 0,
                flow_label: 0 }.emit(&mut f[l3..]).unwrap(),
            _ => unreachable!(),
        };
        let seg = &mut f[l4..l4 + l4_len];
        match kind {
            0 => { UdpRepr { src_port: sp, dst_port: dp, payload_len: payload.len() }
                .emit(seg, &src, &dst, |p| p.copy_from_slice(&payload)).unwrap(); }
            1 => { TcpRepr { src_port: sp, dst_port: dp, seq_number: SeqNumber(1), ack_number: SeqNumber(2),
                flags: TcpFlags::ACK, window_len: 1, urgent_pointer: 0, options: TcpOptions::default(),
                payload_len: payload.len() }.emit(seg, &src, &dst, |p| p.copy_from_slice(&payload)).unwrap(); }
            _ => match (src, dst) {
                (IpAddr::V6(s6), IpAddr::V6(d6)) => { Icmpv6Repr::EchoRequest { ident: sp, seq_no: dp, data: &payload }
                    .emit(seg, &s6, &d6).unwrap(); }
                _ => { Icmpv4Repr::EchoRequest { ident: sp, seq_no: dp, data: &payload }.emit(seg).unwrap(); }
            },
        }
        let c = classify(&f).unwrap();
        prop_assert_eq!((c.l3_offset, c.l4_offset, c.l4_len, c.ipv6), (l3, l4, l4_len, v6));
        let want = match kind { 0 => L4::Udp { src_port: sp, dst_port: dp },
            1 => L4::Tcp { src_port: sp, dst_port: dp }, _ => L4::EchoRequest };
        prop_assert_eq!(c.l4, want);
        prop_assert_eq!(verify_checksums(&f, &c), Ok(()));
        let orig = f.clone();
        udp_echo_in_place(&mut f, &c);
        icmp_echo_in_place(&mut f, &c);
        let c2 = classify(&f).unwrap();
        prop_assert_eq!(verify_checksums(&f, &c2), Ok(()));
        if kind == 1 {
            prop_assert_eq!(&f, &orig); // TCP: neither rewriter applies
        } else {
            prop_assert_eq!((c2.src_addr, c2.dst_addr), (c.dst_addr, c.src_addr));
        }
        if kind == 0 {
            udp_echo_in_place(&mut f, &c2);
            prop_assert_eq!(f, orig);
        }
    }
}

fn addrs(v6: bool, s: [u8; 16], d: [u8; 16]) -> (IpAddr, IpAddr) {
    if v6 {
        (IpAddr::V6(s.into()), IpAddr::V6(d.into()))
    } else {
        let s4: [u8; 4] = s[..4].try_into().unwrap();
        let d4: [u8; 4] = d[..4].try_into().unwrap();
        (
            IpAddr::V4(Ipv4Addr::from(s4)),
            IpAddr::V4(Ipv4Addr::from(d4)),
        )
    }
}
