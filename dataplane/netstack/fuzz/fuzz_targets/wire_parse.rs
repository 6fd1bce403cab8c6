//! Every view and repr parser on arbitrary bytes: no panics, every accessor
//! of a checked view callable, and when a repr parses, emitting it and
//! parsing again gives the same repr; for the reprs that keep every bit,
//! the emitted bytes equal the input.
//!
//! The parsers run on the raw input and on the layers an Ethernet walk
//! finds, so frame-shaped seeds (tests/fixtures) reach every layer. Reprs
//! that check a checksum are also tried on a copy whose checksum was filled
//! first, or random bytes would rarely get past the checksum.
#![no_main]

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use sluice_netstack::wire::{
    ArpPacket, ArpRepr, EtherType, EthernetFrame, EthernetRepr, Icmpv4Packet, Icmpv4Repr,
    Icmpv6Packet, Icmpv6Repr, Ipv4Packet, Ipv4Repr, Ipv6ExtHeader, Ipv6Packet, Ipv6Repr,
    TcpOptions, TcpOptionsIter, TcpPacket, TcpRepr, UdpPacket, UdpRepr,
};

/// Equal except for the checksum field at `at..at + 2`: a checksum of
/// 0x0000 and one of 0xffff both verify when the data sums to zero, and the
/// emitters always write the canonical one.
fn assert_eq_but_checksum(emitted: &[u8], input: &[u8], at: usize) {
    assert_eq!(emitted.len(), input.len());
    assert_eq!(&emitted[..at], &input[..at]);
    assert_eq!(&emitted[at + 2..], &input[at + 2..]);
}

const A4: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));
const B4: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));
const A6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 1);
const B6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2);

fuzz_target!(|data: &[u8]| {
    all_l3(data);
    all_l4(data, &A4, &B4);
    all_l4(data, &IpAddr::V6(A6), &IpAddr::V6(B6));
    ethernet(data);
});

fn ethernet(data: &[u8]) {
    let Ok(eth) = EthernetFrame::new_checked(data) else {
        return;
    };
    let _ = (eth.src_addr(), eth.dst_addr(), eth.vlans(), eth.tag_count());
    let _ = (eth.vlan_tag(0), eth.vlan_tag(1), eth.vlan_tag(2));
    let repr = EthernetRepr::parse(&eth).unwrap();
    let mut buf = vec![0u8; repr.buffer_len()];
    assert_eq!(repr.emit(&mut buf), Ok(eth.header_len()));
    assert_eq!(&buf[..], &data[..eth.header_len()]);
    let payload = eth.payload();
    match eth.ethertype() {
        EtherType::IPV4 => {
            if let Ok(ip) = Ipv4Packet::new_checked(payload) {
                let (s, d) = (IpAddr::V4(ip.src_addr()), IpAddr::V4(ip.dst_addr()));
                all_l4(ip.payload(), &s, &d);
            }
        }
        EtherType::IPV6 => {
            if let Ok(ip) = Ipv6Packet::new_checked(payload) {
                if let Ok((_, off)) = ip.upper_layer() {
                    let end = 40 + usize::from(ip.payload_len());
                    let (s, d) = (IpAddr::V6(ip.src_addr()), IpAddr::V6(ip.dst_addr()));
                    all_l4(&payload[off..end], &s, &d);
                }
            }
        }
        _ => {}
    }
}

fn all_l3(data: &[u8]) {
    if let Ok(p) = ArpPacket::new_checked(data) {
        let _ = (
            p.hardware_type(),
            p.protocol_type(),
            p.operation(),
            p.packet_len(),
        );
        let _ = (p.source_hardware_addr(), p.source_protocol_addr());
        let _ = (p.target_hardware_addr(), p.target_protocol_addr());
        if let Ok(r) = ArpRepr::parse(&p) {
            let mut buf = [0u8; 28];
            assert_eq!(r.emit(&mut buf), Ok(28));
            assert_eq!(&buf[..], &data[..28]);
        }
    }
    if let Ok(p) = Ipv4Packet::new_checked(data) {
        let _ = (
            p.version(),
            p.dscp(),
            p.ecn(),
            p.ident(),
            p.dont_frag(),
            p.more_frags(),
        );
        let _ = (
            p.frag_offset(),
            p.hop_limit(),
            p.next_header(),
            p.checksum(),
        );
        let _ = (
            p.options(),
            p.payload(),
            p.verify_checksum(),
            p.pseudo_header_sum(),
        );
        let hl = p.header_len();
        let mut fixed = data.to_vec();
        Ipv4Packet::new_checked(&mut fixed[..])
            .unwrap()
            .fill_checksum();
        for bytes in [data, &fixed[..]] {
            let p = Ipv4Packet::new_checked(bytes).unwrap();
            if let Ok(r) = Ipv4Repr::parse(&p) {
                let mut buf = vec![0u8; r.buffer_len()];
                assert_eq!(r.emit(&mut buf), Ok(hl));
                assert_eq_but_checksum(&buf, &bytes[..hl], 10);
            }
        }
    }
    if let Ok(p) = Ipv6Packet::new_checked(data) {
        let _ = (
            p.traffic_class(),
            p.flow_label(),
            p.hop_limit(),
            p.payload(),
        );
        let _ = p.upper_layer();
        let r = Ipv6Repr::parse(&p).unwrap();
        let mut buf = [0u8; 40];
        assert_eq!(r.emit(&mut buf), Ok(40));
        assert_eq!(&buf[..], &data[..40]);
    }
    if let Ok(h) = Ipv6ExtHeader::new_checked(data) {
        let _ = (h.next_header(), h.header_len(), h.data());
    }
}

fn all_l4(data: &[u8], src: &IpAddr, dst: &IpAddr) {
    let (s6, d6) = match (src, dst) {
        (IpAddr::V6(s), IpAddr::V6(d)) => (*s, *d),
        _ => (A6, B6),
    };
    // ICMPv4
    if let Ok(p) = Icmpv4Packet::new_checked(data) {
        let _ = (p.msg_type(), p.msg_code(), p.echo_ident(), p.echo_seq_no());
        let _ = (p.unused(), p.next_hop_mtu(), p.data(), p.verify_checksum());
        let mut fixed = data.to_vec();
        Icmpv4Packet::new_checked(&mut fixed[..])
            .unwrap()
            .fill_checksum();
        for bytes in [data, &fixed[..]] {
            let p = Icmpv4Packet::new_checked(bytes).unwrap();
            if let Ok(r) = Icmpv4Repr::parse(&p) {
                let mut buf = vec![0u8; r.buffer_len()];
                assert_eq!(r.emit(&mut buf), Ok(bytes.len()));
                assert_eq_but_checksum(&buf, bytes, 2);
            }
        }
    }
    // ICMPv6
    if let Ok(p) = Icmpv6Packet::new_checked(data) {
        let _ = (p.msg_type(), p.msg_code(), p.echo_ident(), p.echo_seq_no());
        let _ = (p.data(), p.ndp_flags(), p.target_addr(), p.ndp_options());
        let _ = p.ndp_options_iter().count();
        let mut fixed = data.to_vec();
        Icmpv6Packet::new_checked(&mut fixed[..])
            .unwrap()
            .fill_checksum(&s6, &d6);
        for bytes in [data, &fixed[..]] {
            let p = Icmpv6Packet::new_checked(bytes).unwrap();
            if let Ok(r) = Icmpv6Repr::parse(&p, &s6, &d6) {
                let mut buf = vec![0u8; r.buffer_len()];
                let n = r.emit(&mut buf, &s6, &d6).unwrap();
                let q = Icmpv6Packet::new_checked(&buf[..n]).unwrap();
                assert_eq!(Icmpv6Repr::parse(&q, &s6, &d6), Ok(r));
                if matches!(
                    r,
                    Icmpv6Repr::EchoRequest { .. } | Icmpv6Repr::EchoReply { .. }
                ) {
                    assert_eq_but_checksum(&buf, bytes, 2);
                }
            }
        }
    }
    // UDP
    if let Ok(p) = UdpPacket::new_checked(data) {
        let _ = (
            p.src_port(),
            p.dst_port(),
            p.payload(),
            p.verify_checksum(src, dst),
        );
        let len = usize::from(p.len());
        let mut fixed = data.to_vec();
        UdpPacket::new_checked(&mut fixed[..])
            .unwrap()
            .fill_checksum(src, dst);
        for bytes in [data, &fixed[..]] {
            let p = UdpPacket::new_checked(bytes).unwrap();
            if let Ok(r) = UdpRepr::parse(&p, src, dst) {
                let mut buf = vec![0u8; r.buffer_len()];
                let n = r
                    .emit(&mut buf, src, dst, |pl| pl.copy_from_slice(p.payload()))
                    .unwrap();
                assert_eq!(n, len);
                let q = UdpPacket::new_checked(&buf[..]).unwrap();
                assert_eq!(UdpRepr::parse(&q, src, dst), Ok(r));
                if p.checksum() != 0 {
                    assert_eq_but_checksum(&buf, &bytes[..len], 6);
                }
            }
        }
    }
    // TCP
    if let Ok(p) = TcpPacket::new_checked(data) {
        let _ = (p.seq_number(), p.ack_number(), p.flags(), p.window_len());
        let _ = (
            p.urgent_at(),
            p.payload(),
            p.segment_len(),
            p.verify_checksum(src, dst),
        );
        let _ = p.options_iter().count();
        let mut fixed = data.to_vec();
        TcpPacket::new_checked(&mut fixed[..])
            .unwrap()
            .fill_checksum(src, dst);
        for bytes in [data, &fixed[..]] {
            let p = TcpPacket::new_checked(bytes).unwrap();
            if let Ok(r) = TcpRepr::parse(&p, src, dst) {
                let mut buf = vec![0u8; r.buffer_len()];
                match r.emit(&mut buf, src, dst, |pl| pl.copy_from_slice(p.payload())) {
                    Ok(n) => {
                        let q = TcpPacket::new_checked(&buf[..n]).unwrap();
                        assert_eq!(TcpRepr::parse(&q, src, dst), Ok(r));
                        if q.options() == p.options() {
                            assert_eq_but_checksum(&buf, bytes, 16);
                        }
                    }
                    // Options that fit as sent may not fit in our layout
                    // (e.g. MSS + timestamps + 3 SACK blocks, packed).
                    Err(e) => assert!(r.options.buffer_len() > 40, "{e:?} {r:?}"),
                }
            }
        }
    }
    // TCP options on their own.
    let _ = TcpOptionsIter::new(data).count();
    if let Ok(o) = TcpOptions::parse(data) {
        if o.buffer_len() <= 40 {
            let mut buf = [0u8; 40];
            let n = o.emit(&mut buf).unwrap();
            assert_eq!(TcpOptions::parse(&buf[..n]), Ok(o));
        }
    }
}
