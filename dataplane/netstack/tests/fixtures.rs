//! Byte-exact tests on real Linux captures (tests/fixtures/*.pcap, made by
//! scripts/capture-fixtures.sh in two network namespaces with transmit
//! checksum offload off). Values asserted here are those of the committed
//! captures; re-capturing changes identifiers, sequence numbers and
//! timestamps, and these tests must then be updated.
mod common;

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use common::{all_fixture_frames, read_pcap};
use sluice_netstack::echo::{icmp_echo_in_place, udp_echo_in_place, verify_checksums};
use sluice_netstack::frame::{classify, L4};
use sluice_netstack::wire::icmpv4::unreachable;
use sluice_netstack::wire::{
    ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetAddress, EthernetFrame, EthernetRepr,
    Icmpv4Packet, Icmpv4Repr, Icmpv6Packet, Icmpv6Repr, IpProtocol, Ipv4Packet, Ipv4Repr,
    Ipv6Packet, Ipv6Repr, NdpFlags, SeqNumber, TcpFlags, TcpPacket, TcpRepr, TcpTimestamp,
    UdpPacket, UdpRepr, VlanStack,
};
use sluice_netstack::WireError;

const MAC_A: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 0x0a]);
const MAC_B: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 0x0b]);
const V4_A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const V4_B: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const V6_A: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 1);
const V6_B: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2);

fn mapped(a: Ipv4Addr) -> [u8; 16] {
    a.to_ipv6_mapped().octets()
}

/// Re-emit the Ethernet header of `f` and compare it byte for byte.
fn ethernet_round_trip(f: &[u8]) -> EthernetRepr {
    let eth = EthernetFrame::new_checked(f).unwrap();
    let repr = EthernetRepr::parse(&eth).unwrap();
    let mut out = [0u8; 22];
    let n = repr.emit(&mut out).unwrap();
    assert_eq!(&out[..n], &f[..n]);
    assert_eq!(n, eth.header_len());
    repr
}

#[test]
fn every_captured_frame_classifies_and_verifies() {
    let frames = all_fixture_frames();
    assert!(frames.len() > 40, "fixtures present");
    for (file, f) in &frames {
        match classify(f) {
            Ok(c) => {
                assert_eq!(verify_checksums(f, &c), Ok(()), "{file}: {c:?}");
                // Rewrites of a verified frame keep it verified.
                let mut g = f.clone();
                udp_echo_in_place(&mut g, &c);
                icmp_echo_in_place(&mut g, &c);
                assert_eq!(verify_checksums(&g, &c), Ok(()), "{file}: after rewrite");
            }
            Err(e) => {
                let eth = EthernetFrame::new_checked(&f[..]).unwrap();
                assert_eq!(eth.ethertype(), EtherType::ARP, "{file}: {e:?}");
                assert_eq!(e, WireError::Unsupported);
            }
        }
        // A corrupted byte inside the checksummed area never verifies.
        if let Ok(c) = classify(f) {
            let mut g = f.clone();
            let last = c.l4_offset + c.l4_len - 1;
            g[last] ^= 0x5a;
            assert_eq!(
                verify_checksums(&g, &c),
                Err(WireError::BadChecksum),
                "{file}"
            );
        }
    }
}

#[test]
fn arp_request_and_reply() {
    let frames = read_pcap("ping4.pcap");
    let arps: Vec<_> = frames
        .iter()
        .filter(|f| EthernetFrame::new_checked(&f[..]).unwrap().ethertype() == EtherType::ARP)
        .collect();
    assert_eq!(arps.len(), 2);
    let req = ethernet_round_trip(arps[0]);
    assert!(req.dst_addr.is_broadcast());
    assert_eq!(req.src_addr, MAC_A);
    let p = ArpPacket::new_checked(&arps[0][14..]).unwrap();
    let r = ArpRepr::parse(&p).unwrap();
    assert_eq!(
        r,
        ArpRepr {
            operation: ArpOperation::REQUEST,
            source_hardware_addr: MAC_A,
            source_protocol_addr: V4_A,
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: V4_B,
        }
    );
    let mut out = [0u8; 28];
    r.emit(&mut out).unwrap();
    assert_eq!(&out[..], &arps[0][14..42]);

    let p = ArpPacket::new_checked(&arps[1][14..]).unwrap();
    let r = ArpRepr::parse(&p).unwrap();
    assert_eq!(r.operation, ArpOperation::REPLY);
    assert_eq!(r.source_hardware_addr, MAC_B);
    assert_eq!(r.target_hardware_addr, MAC_A);
    r.emit(&mut out).unwrap();
    assert_eq!(&out[..], &arps[1][14..42]);
    assert_eq!(p.packet_len(), 28);
}

fn find(frames: &[Vec<u8>], pred: impl Fn(&[u8]) -> bool) -> &[u8] {
    frames.iter().find(|f| pred(f)).expect("frame in fixture")
}

#[test]
fn ping4_request_reply_match_the_kernel() {
    let frames = read_pcap("ping4.pcap");
    let is_icmp =
        |ty: u8| move |f: &[u8]| f.len() > 34 && f[12..14] == [8, 0] && f[23] == 1 && f[34] == ty;
    let req = find(&frames, is_icmp(8));
    let rep = find(&frames, is_icmp(0));
    let c = classify(req).unwrap();
    assert_eq!(c.l3_offset, 14);
    assert_eq!(c.l4_offset, 34);
    assert_eq!(c.l4_len, 40);
    assert!(!c.ipv6);
    assert_eq!(c.src_addr, mapped(V4_A));
    assert_eq!(c.dst_addr, mapped(V4_B));
    assert_eq!(c.l4, L4::EchoRequest);
    verify_checksums(req, &c).unwrap();

    // Views and reprs, byte-exact.
    ethernet_round_trip(req);
    let ip = Ipv4Packet::new_checked(&req[14..]).unwrap();
    let ip_repr = Ipv4Repr::parse(&ip).unwrap();
    assert_eq!(ip_repr.ident, 60191);
    assert!(ip_repr.dont_frag);
    assert_eq!(ip_repr.hop_limit, 64);
    assert_eq!(ip_repr.payload_len, 40);
    let mut hdr = [0u8; 20];
    ip_repr.emit(&mut hdr).unwrap();
    assert_eq!(&hdr[..], &req[14..34]);
    let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
    let r = Icmpv4Repr::parse(&icmp).unwrap();
    let Icmpv4Repr::EchoRequest {
        ident,
        seq_no,
        data,
    } = r
    else {
        panic!("{r:?}")
    };
    assert_eq!((ident, seq_no), (14367, 1));
    assert_eq!(data.len(), 32); // 16-byte timestamp, then the -p pattern
    assert_eq!(&data[16..], b"cesluicesluicesl");
    let mut out = [0u8; 40];
    r.emit(&mut out).unwrap();
    assert_eq!(&out[..], ip.payload());

    // The in-place reply: the ICMP message equals the kernel's reply byte for
    // byte (incremental checksum == the kernel's full one), Ethernet too.
    let mut mine = req.to_vec();
    icmp_echo_in_place(&mut mine, &c);
    assert_eq!(&mine[34..], &rep[34..]);
    assert_eq!(&mine[..14], &rep[..14]);
    let (a, b) = (
        Ipv4Packet::new_checked(&mine[14..]).unwrap(),
        Ipv4Packet::new_checked(&rep[14..]).unwrap(),
    );
    assert_eq!((a.src_addr(), a.dst_addr()), (b.src_addr(), b.dst_addr()));
    assert_eq!(a.hop_limit(), 64);
    assert!(a.verify_checksum());
    verify_checksums(&mine, &classify(&mine).unwrap()).unwrap();
    assert_eq!(classify(&mine).unwrap().l4, L4::Other(0));
}

#[test]
fn ping6_ndp_and_echo_match_the_kernel() {
    let frames = read_pcap("ping6.pcap");
    let icmp6 = |ty: u8| {
        move |f: &[u8]| f.len() > 54 && f[12..14] == [0x86, 0xdd] && f[20] == 58 && f[54] == ty
    };
    // Neighbour solicitation with a source link-layer address.
    let ns = find(&frames, icmp6(135));
    let ip = Ipv6Packet::new_checked(&ns[14..]).unwrap();
    let ip_repr = Ipv6Repr::parse(&ip).unwrap();
    assert_eq!(ip_repr.hop_limit, 255);
    assert_eq!(
        ip_repr.dst_addr,
        "ff02::1:ff00:2".parse::<Ipv6Addr>().unwrap()
    );
    let mut hdr = [0u8; 40];
    ip_repr.emit(&mut hdr).unwrap();
    assert_eq!(&hdr[..], &ns[14..54]);
    let p = Icmpv6Packet::new_checked(ip.payload()).unwrap();
    let r = Icmpv6Repr::parse(&p, &ip.src_addr(), &ip.dst_addr()).unwrap();
    assert_eq!(
        r,
        Icmpv6Repr::NeighborSolicit {
            target_addr: V6_B,
            lladdr: Some(MAC_A)
        }
    );
    let mut out = [0u8; 32];
    r.emit(&mut out, &ip.src_addr(), &ip.dst_addr()).unwrap();
    assert_eq!(&out[..], ip.payload());
    assert_eq!(classify(ns).unwrap().l4, L4::Other(135));

    // Neighbour advertisement, solicited + override, target link-layer address.
    let na = find(&frames, icmp6(136));
    let ip = Ipv6Packet::new_checked(&na[14..]).unwrap();
    let p = Icmpv6Packet::new_checked(ip.payload()).unwrap();
    let r = Icmpv6Repr::parse(&p, &ip.src_addr(), &ip.dst_addr()).unwrap();
    assert_eq!(
        r,
        Icmpv6Repr::NeighborAdvert {
            flags: NdpFlags::SOLICITED | NdpFlags::OVERRIDE,
            target_addr: V6_B,
            lladdr: Some(MAC_B)
        }
    );
    r.emit(&mut out, &ip.src_addr(), &ip.dst_addr()).unwrap();
    assert_eq!(&out[..], ip.payload());

    // Echo: the in-place reply equals the kernel's ICMPv6 message.
    let req = find(&frames, icmp6(128));
    let rep = find(&frames, icmp6(129));
    let c = classify(req).unwrap();
    assert!(c.ipv6);
    assert_eq!(c.l4, L4::EchoRequest);
    assert_eq!((c.l4_offset, c.l4_len), (54, 40));
    assert_eq!(c.src_addr, V6_A.octets());
    verify_checksums(req, &c).unwrap();
    let ip = Ipv6Packet::new_checked(&req[14..]).unwrap();
    let p = Icmpv6Packet::new_checked(ip.payload()).unwrap();
    let r = Icmpv6Repr::parse(&p, &V6_A, &V6_B).unwrap();
    assert!(matches!(
        r,
        Icmpv6Repr::EchoRequest {
            ident: 14412,
            seq_no: 1,
            ..
        }
    ));
    let mut out = [0u8; 40];
    r.emit(&mut out, &V6_A, &V6_B).unwrap();
    assert_eq!(&out[..], ip.payload());
    let mut mine = req.to_vec();
    icmp_echo_in_place(&mut mine, &c);
    assert_eq!(&mine[54..], &rep[54..]);
    assert_eq!(&mine[..14], &rep[..14]);
    assert_eq!(&mine[22..54], &rep[22..54]); // addresses swapped
    assert_eq!(mine[21], 64);
    verify_checksums(&mine, &c).unwrap();
}

#[test]
fn ipv6_hop_by_hop_is_skipped() {
    // MLDv2 reports the kernel sent while the interfaces came up: HBH with
    // router alert, then ICMPv6 type 143.
    let frames = read_pcap("ping4.pcap");
    let mld = find(&frames, |f| {
        f.len() > 54 && f[12..14] == [0x86, 0xdd] && f[20] == 0
    });
    let c = classify(mld).unwrap();
    assert_eq!(c.l4_offset, 14 + 40 + 8);
    assert_eq!(c.l4_len, 48);
    assert_eq!(c.l4, L4::Other(143));
    verify_checksums(mld, &c).unwrap();
    let ip = Ipv6Packet::new_checked(&mld[14..]).unwrap();
    assert_eq!(ip.upper_layer(), Ok((IpProtocol::ICMPV6, 48)));
    let p = Icmpv6Packet::new_checked(&mld[c.l4_offset..]).unwrap();
    assert_eq!(
        Icmpv6Repr::parse(&p, &ip.src_addr(), &ip.dst_addr()),
        Err(WireError::Unsupported)
    );
    // Router solicitation: not handled by the repr either.
    let rs = find(&frames, |f| {
        f.len() > 54 && f[12..14] == [0x86, 0xdd] && f[20] == 58 && f[54] == 133
    });
    assert_eq!(classify(rs).unwrap().l4, L4::Other(133));
}

#[test]
fn udp4_round_trip_and_echo() {
    let frames = read_pcap("udp4.pcap");
    let f = find(&frames, |f| {
        f.len() > 34 && f[12..14] == [8, 0] && f[23] == 17
    });
    let c = classify(f).unwrap();
    assert_eq!(
        c.l4,
        L4::Udp {
            src_port: 40000,
            dst_port: 7
        }
    );
    assert_eq!(c.l4_len, 27);
    verify_checksums(f, &c).unwrap();
    let (s, d) = (IpAddr::V4(V4_A), IpAddr::V4(V4_B));
    // Whole frame re-emitted from reprs, byte for byte.
    let eth = ethernet_round_trip(f);
    let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
    let ip_repr = Ipv4Repr::parse(&ip).unwrap();
    let udp = UdpPacket::new_checked(ip.payload()).unwrap();
    assert_ne!(udp.checksum(), 0);
    let udp_repr = UdpRepr::parse(&udp, &s, &d).unwrap();
    assert_eq!(udp.payload(), b"sluice udp4 fixture");
    let mut out = vec![0u8; f.len()];
    let mut at = eth.emit(&mut out).unwrap();
    at += ip_repr.emit(&mut out[at..]).unwrap();
    at += udp_repr
        .emit(&mut out[at..], &s, &d, |p| p.copy_from_slice(udp.payload()))
        .unwrap();
    assert_eq!(at, f.len());
    assert_eq!(out, f);

    let mut mine = f.to_vec();
    udp_echo_in_place(&mut mine, &c);
    let c2 = classify(&mine).unwrap();
    verify_checksums(&mine, &c2).unwrap();
    assert_eq!(
        c2.l4,
        L4::Udp {
            src_port: 7,
            dst_port: 40000
        }
    );
    assert_eq!((c2.src_addr, c2.dst_addr), (c.dst_addr, c.src_addr));
    assert_eq!(&mine[..6], &f[6..12]);
    // Echoing twice restores the original (TTL was already 64).
    udp_echo_in_place(&mut mine, &c2);
    assert_eq!(mine, f);
}

#[test]
fn icmp_port_unreachable_with_embedded_header() {
    for file in ["udp4.pcap", "unreach4.pcap"] {
        let frames = read_pcap(file);
        let f = find(&frames, |f| f.len() > 34 && f[23] == 1 && f[34] == 3);
        let c = classify(f).unwrap();
        assert_eq!(c.l4, L4::Other(3));
        verify_checksums(f, &c).unwrap();
        let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
        let p = Icmpv4Packet::new_checked(ip.payload()).unwrap();
        let r = Icmpv4Repr::parse(&p).unwrap();
        let Icmpv4Repr::DstUnreachable {
            code, header, data, ..
        } = r
        else {
            panic!("{r:?}")
        };
        assert_eq!(code, unreachable::PORT);
        assert_eq!((header.src_addr, header.dst_addr), (V4_A, V4_B));
        assert_eq!(header.next_header, IpProtocol::UDP);
        // The whole offending datagram is quoted: UDP header + payload.
        assert_eq!(data.len(), header.payload_len);
        let mut out = vec![0u8; ip.payload().len()];
        r.emit(&mut out).unwrap();
        assert_eq!(out, ip.payload());
    }
}

#[test]
fn udp6_and_ndp_without_option() {
    let frames = read_pcap("udp6.pcap");
    let f = find(&frames, |f| f.len() > 54 && f[20] == 17);
    let c = classify(f).unwrap();
    assert_eq!(
        c.l4,
        L4::Udp {
            src_port: 40001,
            dst_port: 7
        }
    );
    verify_checksums(f, &c).unwrap();
    let (s, d) = (IpAddr::V6(V6_A), IpAddr::V6(V6_B));
    let ip = Ipv6Packet::new_checked(&f[14..]).unwrap();
    let udp = UdpPacket::new_checked(ip.payload()).unwrap();
    let repr = UdpRepr::parse(&udp, &s, &d).unwrap();
    let mut out = [0u8; 27];
    repr.emit(&mut out, &s, &d, |p| p.copy_from_slice(udp.payload()))
        .unwrap();
    assert_eq!(&out[..], ip.payload());
    // Zero checksum over IPv6 is invalid.
    let mut z = f.to_vec();
    z[c.l4_offset + 6..c.l4_offset + 8].fill(0);
    assert_eq!(verify_checksums(&z, &c), Err(WireError::BadChecksum));
    let mut mine = f.to_vec();
    udp_echo_in_place(&mut mine, &c);
    verify_checksums(&mine, &classify(&mine).unwrap()).unwrap();

    // The advertisement answering a solicitation for a global address
    // carries no target link-layer option.
    let na = find(&frames, |f| f.len() > 54 && f[20] == 58 && f[54] == 136);
    let ip = Ipv6Packet::new_checked(&na[14..]).unwrap();
    let p = Icmpv6Packet::new_checked(ip.payload()).unwrap();
    let r = Icmpv6Repr::parse(&p, &ip.src_addr(), &ip.dst_addr()).unwrap();
    assert_eq!(
        r,
        Icmpv6Repr::NeighborAdvert {
            flags: NdpFlags::SOLICITED,
            target_addr: V6_A,
            lladdr: None
        }
    );
    let mut out = [0u8; 24];
    r.emit(&mut out, &ip.src_addr(), &ip.dst_addr()).unwrap();
    assert_eq!(&out[..], ip.payload());
}

/// Every TCP segment of a capture: classify, verify, repr round trip.
fn tcp_segments(file: &str) -> Vec<(TcpRepr, Vec<u8>)> {
    let mut out = Vec::new();
    for f in read_pcap(file) {
        let Ok(c) = classify(&f) else { continue };
        let L4::Tcp { src_port, dst_port } = c.l4 else {
            continue;
        };
        verify_checksums(&f, &c).unwrap();
        let (s, d) = if c.ipv6 {
            (IpAddr::V6(c.src_addr.into()), IpAddr::V6(c.dst_addr.into()))
        } else {
            (
                IpAddr::V4(Ipv4Addr::from(
                    <[u8; 4]>::try_from(&c.src_addr[12..]).unwrap(),
                )),
                IpAddr::V4(Ipv4Addr::from(
                    <[u8; 4]>::try_from(&c.dst_addr[12..]).unwrap(),
                )),
            )
        };
        let seg = &f[c.l4_offset..c.l4_offset + c.l4_len];
        let p = TcpPacket::new_checked(seg).unwrap();
        let r = TcpRepr::parse(&p, &s, &d).unwrap();
        assert_eq!((r.src_port, r.dst_port), (src_port, dst_port));
        // emit(parse(bytes)) == bytes: Linux's option layout is ours.
        let mut buf = vec![0u8; seg.len()];
        let n = r
            .emit(&mut buf, &s, &d, |pl| pl.copy_from_slice(p.payload()))
            .unwrap();
        assert_eq!(n, seg.len());
        assert_eq!(buf, seg, "{file}: {r:?}");
        out.push((r, f));
    }
    out
}

#[test]
fn tcp4_handshake_options_and_data() {
    let segs = tcp_segments("tcp4.pcap");
    assert_eq!(segs.len(), 11);
    let syn = &segs[0].0;
    assert_eq!(syn.flags, TcpFlags::SYN);
    assert_eq!(syn.seq_number, SeqNumber(1_353_920_655));
    assert_eq!(syn.window_len, 64240);
    assert_eq!(syn.options.mss, Some(1460));
    assert!(syn.options.sack_permitted);
    assert_eq!(syn.options.window_scale, Some(10));
    assert_eq!(
        syn.options.timestamp,
        Some(TcpTimestamp {
            tsval: 2_895_600_840,
            tsecr: 0
        })
    );
    let synack = &segs[1].0;
    assert_eq!(synack.flags, TcpFlags::SYN | TcpFlags::ACK);
    assert_eq!(synack.ack_number, syn.seq_number + 1);
    assert_eq!(
        synack.options.timestamp.unwrap().tsecr,
        syn.options.timestamp.unwrap().tsval
    );
    let data = segs.iter().find(|(r, _)| r.payload_len > 0).unwrap();
    assert!(data.0.flags.psh() && data.0.flags.ack());
    assert_eq!(data.0.payload_len, 12);
    assert_eq!(data.0.options.mss, None);
    assert!(data.0.options.timestamp.is_some());
    let fins = segs.iter().filter(|(r, _)| r.flags.fin()).count();
    assert_eq!(fins, 2);
    // Views on the SYN.
    let f = &segs[0].1;
    let p = TcpPacket::new_checked(&f[34..]).unwrap();
    assert_eq!(p.header_len(), 40);
    assert_eq!(p.segment_len(), 1);
    assert_eq!(p.options_iter().count(), 5);
    assert!(p.syn() && !p.ack());
}

#[test]
fn tcp6_handshake() {
    let segs = tcp_segments("tcp6.pcap");
    assert_eq!(segs.len(), 11);
    assert_eq!(segs[0].0.options.mss, Some(1440));
    assert_eq!(segs[0].0.seq_number, SeqNumber(2_564_891_735));
    assert_eq!(segs[0].0.window_len, 64800);
}

#[test]
fn vlan_and_qinq_keep_tags_through_echo() {
    for (file, l3, vlans) in [
        (
            "vlan.pcap",
            18,
            VlanStack::One(sluice_netstack::wire::VlanTag::c_tag(100, 5)),
        ),
        (
            "qinq.pcap",
            22,
            VlanStack::Two {
                outer: sluice_netstack::wire::VlanTag::s_tag(200, 0),
                inner: sluice_netstack::wire::VlanTag::c_tag(300, 0),
            },
        ),
    ] {
        let frames = read_pcap(file);
        assert_eq!(frames.len(), 2);
        let (req, rep) = (&frames[0], &frames[1]);
        let eth = ethernet_round_trip(req);
        assert_eq!(eth.vlans, vlans);
        assert_eq!(eth.ethertype, EtherType::IPV4);
        let c = classify(req).unwrap();
        assert_eq!(c.l3_offset, l3);
        assert_eq!(c.l4_offset, l3 + 20);
        assert_eq!(c.l4, L4::EchoRequest);
        verify_checksums(req, &c).unwrap();
        let mut mine = req.clone();
        icmp_echo_in_place(&mut mine, &c);
        assert_eq!(&mine[..l3], &rep[..l3], "{file}: Ethernet + tags");
        assert_eq!(&mine[c.l4_offset..], &rep[c.l4_offset..], "{file}: ICMP");
        verify_checksums(&mine, &c).unwrap();
    }
}

#[test]
fn rewriters_never_panic_on_mismatched_classified() {
    let frames = read_pcap("udp4.pcap");
    let f = find(&frames, |f| f.len() > 34 && f[23] == 17);
    let c = classify(f).unwrap();
    for cut in 0..f.len() {
        let mut g = f[..cut].to_vec();
        udp_echo_in_place(&mut g, &c);
        assert!(verify_checksums(&g, &c).is_err());
        let mut e = c;
        e.l4 = L4::EchoRequest;
        icmp_echo_in_place(&mut g, &e);
        e.ipv6 = true;
        icmp_echo_in_place(&mut g, &e);
        let _ = verify_checksums(&g, &e);
    }
    // A UDP length below 8 behind the back of `classify`.
    let mut g = f.to_vec();
    g[c.l4_offset + 4..c.l4_offset + 6].fill(0);
    assert_eq!(verify_checksums(&g, &c), Err(WireError::Malformed));
    let mut huge = c;
    huge.l4_offset = usize::MAX - 2;
    huge.l4_len = 10;
    let mut g = f.to_vec();
    udp_echo_in_place(&mut g, &huge);
    assert_eq!(verify_checksums(&g, &huge), Err(WireError::Truncated));
    huge.l3_offset = usize::MAX;
    udp_echo_in_place(&mut g, &huge);
    assert_eq!(verify_checksums(&g, &huge), Err(WireError::Truncated));
}

#[test]
fn echo_reply_of_an_all_zero_message_gets_ffff() {
    // Echo request id 0, seq 0, no data: the reply is all zeros and only a
    // checksum of 0xffff verifies (RFC 1624 eqn. 3 alone would give 0).
    let frames = read_pcap("ping4.pcap");
    let req = find(&frames, |f| f.len() > 34 && f[23] == 1 && f[34] == 8);
    let mut f = req[..42].to_vec();
    f[16..18].copy_from_slice(&28u16.to_be_bytes());
    let mut ip = Ipv4Packet::new_checked(&mut f[14..]).unwrap();
    ip.fill_checksum();
    f[36..42].fill(0);
    let mut icmp = Icmpv4Packet::new_checked(&mut f[34..]).unwrap();
    icmp.fill_checksum();
    assert_eq!(icmp.checksum(), 0xf7ff);
    let c = classify(&f).unwrap();
    verify_checksums(&f, &c).unwrap();
    let mut view_copy = f.clone();
    icmp_echo_in_place(&mut f, &c);
    assert_eq!(&f[36..38], &[0xff, 0xff]);
    verify_checksums(&f, &classify(&f).unwrap()).unwrap();
    let mut p = Icmpv4Packet::new_checked(&mut view_copy[34..]).unwrap();
    p.set_msg_type_incremental(0);
    assert_eq!(p.checksum(), 0xffff);
}
