//! The per-packet work of the UDP echo service, three ways:
//! classify the frame, verify the IPv4 header and UDP checksums, and rewrite
//! the frame into its reply in place (swap MACs, addresses and ports,
//! TTL / hop limit 64, IPv4 header checksum kept valid).
//!
//! - `own`: `frame::classify` + `echo::verify_checksums` + `echo::udp_echo_in_place`.
//! - `smoltcp`: `smoltcp::wire` views for all of it (no incremental checksum
//!   in smoltcp: the IPv4 header checksum is recomputed).
//! - `etherparse`: `SlicedPacket::from_ethernet` and etherparse's checksum
//!   code to parse and verify; its slices are read-only, so the rewrite is
//!   hand-written on the offsets etherparse found.
//!
//! Frames: 64 bytes (the minimum; 60 on the wire plus FCS) and 1514 bytes (an
//! MTU-1500 IP packet), IPv4 and IPv6, untagged. Run with
//! `cargo bench -p sluice-netstack --bench echo`.
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sluice_netstack::wire::{
    EtherType, EthernetAddress, EthernetRepr, IpProtocol, Ipv4Repr, Ipv6Repr, UdpRepr, VlanStack,
};
use sluice_netstack::{checksum, echo, frame, WireError};

const SRC4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const DST4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const SRC6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 1);
const DST6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2);

/// A UDP frame of exactly `frame_len` bytes with valid checksums.
pub fn udp_frame(v6: bool, frame_len: usize) -> Vec<u8> {
    let ip_hdr = if v6 { 40 } else { 20 };
    let payload_len = frame_len - 14 - ip_hdr - 8;
    let mut f = vec![0u8; frame_len];
    let eth = EthernetRepr {
        src_addr: EthernetAddress([2, 0, 0, 0, 0, 0x0a]),
        dst_addr: EthernetAddress([2, 0, 0, 0, 0, 0x0b]),
        vlans: VlanStack::Untagged,
        ethertype: if v6 { EtherType::IPV6 } else { EtherType::IPV4 },
    };
    let mut at = eth.emit(&mut f).unwrap();
    let (src, dst) = if v6 {
        let ip = Ipv6Repr {
            src_addr: SRC6,
            dst_addr: DST6,
            next_header: IpProtocol::UDP,
            payload_len: 8 + payload_len,
            hop_limit: 64,
            traffic_class: 0,
            flow_label: 0x12345,
        };
        at += ip.emit(&mut f[at..]).unwrap();
        (IpAddr::V6(SRC6), IpAddr::V6(DST6))
    } else {
        let ip = Ipv4Repr {
            src_addr: SRC4,
            dst_addr: DST4,
            next_header: IpProtocol::UDP,
            payload_len: 8 + payload_len,
            hop_limit: 64,
            dscp: 0,
            ecn: 0,
            ident: 0x1234,
            dont_frag: true,
            options: Default::default(),
        };
        at += ip.emit(&mut f[at..]).unwrap();
        (IpAddr::V4(SRC4), IpAddr::V4(DST4))
    };
    let udp = UdpRepr {
        src_port: 40000,
        dst_port: 7,
        payload_len,
    };
    udp.emit(&mut f[at..], &src, &dst, |p| {
        for (i, b) in p.iter_mut().enumerate() {
            *b = i as u8;
        }
    })
    .unwrap();
    f
}

fn own(f: &mut [u8]) -> Result<(), WireError> {
    let c = frame::classify(f)?;
    echo::verify_checksums(f, &c)?;
    echo::udp_echo_in_place(f, &c);
    Ok(())
}

fn smoltcp_echo(f: &mut [u8]) -> Result<(), ()> {
    use smoltcp::wire::{
        EthernetFrame, EthernetProtocol, IpAddress, IpProtocol as P, Ipv4Packet, Ipv6Packet,
        UdpPacket,
    };
    let mut eth = EthernetFrame::new_checked(&mut *f).map_err(drop)?;
    match eth.ethertype() {
        EthernetProtocol::Ipv4 => {
            let mut ip = Ipv4Packet::new_checked(eth.payload_mut()).map_err(drop)?;
            if !ip.verify_checksum()
                || ip.next_header() != P::Udp
                || ip.more_frags()
                || ip.frag_offset() != 0
            {
                return Err(());
            }
            let (src, dst) = (ip.src_addr(), ip.dst_addr());
            {
                let mut udp = UdpPacket::new_checked(ip.payload_mut()).map_err(drop)?;
                if udp.checksum() != 0
                    && !udp.verify_checksum(&IpAddress::Ipv4(src), &IpAddress::Ipv4(dst))
                {
                    return Err(());
                }
                let (sp, dp) = (udp.src_port(), udp.dst_port());
                udp.set_src_port(dp);
                udp.set_dst_port(sp);
            }
            ip.set_src_addr(dst);
            ip.set_dst_addr(src);
            ip.set_hop_limit(64);
            ip.fill_checksum();
        }
        EthernetProtocol::Ipv6 => {
            let mut ip = Ipv6Packet::new_checked(eth.payload_mut()).map_err(drop)?;
            if ip.next_header() != P::Udp {
                return Err(());
            }
            let (src, dst) = (ip.src_addr(), ip.dst_addr());
            {
                let mut udp = UdpPacket::new_checked(ip.payload_mut()).map_err(drop)?;
                if !udp.verify_checksum(&IpAddress::Ipv6(src), &IpAddress::Ipv6(dst)) {
                    return Err(());
                }
                let (sp, dp) = (udp.src_port(), udp.dst_port());
                udp.set_src_port(dp);
                udp.set_dst_port(sp);
            }
            ip.set_src_addr(dst);
            ip.set_dst_addr(src);
            ip.set_hop_limit(64);
        }
        _ => return Err(()),
    }
    let (s, d) = (eth.src_addr(), eth.dst_addr());
    eth.set_src_addr(d);
    eth.set_dst_addr(s);
    Ok(())
}

fn etherparse_echo(f: &mut [u8]) -> Result<(), ()> {
    use etherparse::checksum::Sum16BitWords;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};
    let base = f.as_ptr() as usize;
    let (l3, l4, v6) = {
        let p = SlicedPacket::from_ethernet(f).map_err(drop)?;
        let Some(TransportSlice::Udp(udp)) = &p.transport else {
            return Err(());
        };
        let l4 = udp.slice().as_ptr() as usize - base;
        match &p.net {
            Some(NetSlice::Ipv4(ip)) => {
                let h = ip.header();
                if Sum16BitWords::new().add_slice(h.slice()).ones_complement() != 0
                    || ip.is_payload_fragmented()
                {
                    return Err(());
                }
                if udp.checksum() != 0 {
                    let c = udp
                        .to_header()
                        .calc_checksum_ipv4_raw(h.source(), h.destination(), udp.payload())
                        .map_err(drop)?;
                    if c != udp.checksum() {
                        return Err(());
                    }
                }
                (h.slice().as_ptr() as usize - base, l4, false)
            }
            Some(NetSlice::Ipv6(ip)) => {
                let h = ip.header();
                let c = udp
                    .to_header()
                    .calc_checksum_ipv6_raw(h.source(), h.destination(), udp.payload())
                    .map_err(drop)?;
                if c != udp.checksum() {
                    return Err(());
                }
                (h.slice().as_ptr() as usize - base, l4, true)
            }
            _ => return Err(()),
        }
    };
    // Hand-written rewrite on the offsets etherparse found.
    let (d, s) = f[..12].split_at_mut(6);
    d.swap_with_slice(s);
    let (sp, dp) = f[l4..l4 + 4].split_at_mut(2);
    sp.swap_with_slice(dp);
    if v6 {
        f[l3 + 7] = 64;
        let (a, b) = f[l3 + 8..l3 + 40].split_at_mut(16);
        a.swap_with_slice(b);
    } else {
        let old = u16::from_be_bytes([f[l3 + 8], f[l3 + 9]]);
        f[l3 + 8] = 64;
        let new = u16::from_be_bytes([f[l3 + 8], f[l3 + 9]]);
        let c = checksum::update_u16(u16::from_be_bytes([f[l3 + 10], f[l3 + 11]]), old, new);
        f[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
        let (a, b) = f[l3 + 12..l3 + 20].split_at_mut(4);
        a.swap_with_slice(b);
    }
    Ok(())
}

fn bench_echo(c: &mut Criterion) {
    for (v6, name) in [(false, "ipv4"), (true, "ipv6")] {
        for len in [64usize, 1514] {
            let mut g = c.benchmark_group(format!("udp_echo/{name}/{len}"));
            g.throughput(Throughput::Elements(1));
            let template = udp_frame(v6, len);
            // Each implementation must accept the frame and produce the same reply.
            let mut a = template.clone();
            let mut b = template.clone();
            let mut e = template.clone();
            own(&mut a).unwrap();
            smoltcp_echo(&mut b).unwrap();
            etherparse_echo(&mut e).unwrap();
            assert_eq!(a, b, "smoltcp rewrite differs");
            assert_eq!(a, e, "etherparse rewrite differs");
            // The rewrite is its own inverse (TTL stays 64), so the same
            // buffer is echoed back and forth without copying.
            let mut buf = template.clone();
            g.bench_function("own", |bch| bch.iter(|| own(black_box(&mut buf)).unwrap()));
            let mut buf = template.clone();
            g.bench_function("smoltcp", |bch| {
                bch.iter(|| smoltcp_echo(black_box(&mut buf)).unwrap())
            });
            let mut buf = template.clone();
            g.bench_function("etherparse", |bch| {
                bch.iter(|| etherparse_echo(black_box(&mut buf)).unwrap())
            });
            g.finish();
        }
    }
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_echo
}
criterion_main!(benches);
