//! classify + verify_checksums + both echo rewrites must never panic, and
//! the rewrites must keep a verified frame verified. A second pass fills
//! every checksum first (with the wire views), so the "verified" branch is
//! reached for any well-formed input, and checks that fill and verify agree.
#![no_main]

use core::net::{IpAddr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use sluice_netstack::echo::{icmp_echo_in_place, udp_echo_in_place, verify_checksums};
use sluice_netstack::frame::{classify, Classified, L4};
use sluice_netstack::wire::{
    Icmpv4Packet, Icmpv6Packet, IpProtocol, Ipv4Packet, Ipv6Packet, TcpPacket, UdpPacket,
};

fuzz_target!(|data: &[u8]| {
    let Ok(c) = classify(data) else { return };
    check(data, &c);
    // A `Classified` used with a frame it does not describe (shorter, or with
    // the tail changed) must not panic either.
    for cut in [
        data.len() / 2,
        data.len().saturating_sub(1),
        c.l4_offset + 5,
    ] {
        let mut short = data[..cut.min(data.len())].to_vec();
        let _ = verify_checksums(&short, &c);
        udp_echo_in_place(&mut short, &c);
        icmp_echo_in_place(&mut short, &c);
        short.iter_mut().skip(c.l4_offset).for_each(|b| *b = 0);
        let _ = verify_checksums(&short, &c);
    }
    let mut fixed = data.to_vec();
    fill_checksums(&mut fixed, &c);
    assert_eq!(verify_checksums(&fixed, &c), Ok(()), "{c:?}");
    check(&fixed, &c);
});

fn check(data: &[u8], c: &Classified) {
    let verified = verify_checksums(data, c).is_ok();
    for rewrite in [udp_echo_in_place, icmp_echo_in_place] {
        let mut f = data.to_vec();
        rewrite(&mut f, c);
        assert_eq!(f.len(), data.len());
        let c2 = classify(&f).expect("a rewritten frame still classifies");
        assert_eq!(
            (c2.l3_offset, c2.l4_offset, c2.l4_len, c2.ipv6),
            (c.l3_offset, c.l4_offset, c.l4_len, c.ipv6)
        );
        let rewritten = f != data;
        if rewritten {
            assert_eq!((c2.src_addr, c2.dst_addr), (c.dst_addr, c.src_addr));
        }
        if verified {
            assert_eq!(verify_checksums(&f, &c2), Ok(()), "{c:?} -> {c2:?}");
        }
        // Echoing the reply again must not panic either.
        let mut g = f.clone();
        rewrite(&mut g, &c2);
    }
}

/// The transport protocol, found the way the frame says.
fn protocol(f: &[u8], c: &Classified) -> IpProtocol {
    if c.ipv6 {
        let ip = Ipv6Packet::new_checked(&f[c.l3_offset..]).unwrap();
        ip.upper_layer().unwrap().0
    } else {
        IpProtocol(f[c.l3_offset + 9])
    }
}

fn fill_checksums(f: &mut [u8], c: &Classified) {
    let proto = protocol(f, c);
    let (src, dst) = if c.ipv6 {
        (
            IpAddr::V6(Ipv6Addr::from(c.src_addr)),
            IpAddr::V6(Ipv6Addr::from(c.dst_addr)),
        )
    } else {
        let mut ip = Ipv4Packet::new_checked(&mut f[c.l3_offset..]).unwrap();
        ip.fill_checksum();
        (IpAddr::V4(ip.src_addr()), IpAddr::V4(ip.dst_addr()))
    };
    let l4 = &mut f[c.l4_offset..c.l4_offset + c.l4_len];
    match c.l4 {
        L4::Udp { .. } => {
            let mut p = UdpPacket::new_checked(l4).unwrap();
            p.fill_checksum(&src, &dst);
        }
        L4::Tcp { .. } => TcpPacket::new_checked(l4)
            .unwrap()
            .fill_checksum(&src, &dst),
        _ => match (proto, src, dst) {
            (IpProtocol::ICMP, IpAddr::V4(_), _) => {
                Icmpv4Packet::new_checked(l4).unwrap().fill_checksum()
            }
            (IpProtocol::ICMPV6, IpAddr::V6(s), IpAddr::V6(d)) => {
                // new_checked may refuse a short NS/NA; fill through an
                // unchecked view (only type/code/checksum are touched).
                Icmpv6Packet::new_unchecked(l4).fill_checksum(&s, &d)
            }
            _ => {}
        },
    }
}
