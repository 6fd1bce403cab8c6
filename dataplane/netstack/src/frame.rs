//! One-pass classification of an Ethernet frame.
//!
//! [`classify`] walks Ethernet (up to two VLAN tags), IPv4 or IPv6 (with
//! extension headers skipped) and the transport header once, validates every
//! length the rewriters rely on, and returns where the headers are. It does
//! not verify checksums: that is [`crate::echo::verify_checksums`].
use crate::wire::ethernet::EthernetFrame;
use crate::wire::ipv4::Ipv4Packet;
use crate::wire::ipv6::{self, Ipv6Packet};
use crate::wire::{get_array, get_u16, icmpv4, icmpv6, EtherType, IpProtocol};
use crate::WireError;

/// Transport of a classified frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4 {
    Udp {
        src_port: u16,
        dst_port: u16,
    },
    Tcp {
        src_port: u16,
        dst_port: u16,
    },
    /// ICMP echo request (IPv4) or ICMPv6 echo request, code 0.
    EchoRequest,
    /// Any other protocol number / ICMP type: for ICMP and ICMPv6 messages
    /// other than an echo request this is the ICMP type, for every other
    /// transport the IP protocol (next header) number.
    Other(u8),
}

/// Where the headers of a frame sit, found once and reused by the services
/// that rewrite the frame in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Classified {
    /// Offset of the IP header (after Ethernet and up to two VLAN tags).
    pub l3_offset: usize,
    /// Offset of the transport header.
    pub l4_offset: usize,
    /// Length of the transport header plus payload, as the IP header says.
    pub l4_len: usize,
    pub ipv6: bool,
    /// Source and destination, IPv4 as IPv4-mapped IPv6, as in the BPF maps.
    pub src_addr: [u8; 16],
    pub dst_addr: [u8; 16],
    pub l4: L4,
}

impl Classified {
    /// The transport header and payload (as the IP header says), if this
    /// `Classified` belongs to `frame`.
    #[inline]
    pub fn l4_bytes<'a>(&self, frame: &'a [u8]) -> Option<&'a [u8]> {
        frame.get(self.l4_offset..self.l4_offset.checked_add(self.l4_len)?)
    }
}

/// IPv4-mapped IPv6 address, built in a register (one 16-byte store).
#[inline]
fn mapped(v4: [u8; 4]) -> [u8; 16] {
    (0xffff_u128 << 32 | u128::from(u32::from_be_bytes(v4))).to_be_bytes()
}

/// Classify an Ethernet II frame carrying IPv4 or IPv6.
///
/// The frame may carry Ethernet padding after the IP packet. Errors:
/// - `Truncated`: a header, or the length the IP header announces, runs past
///   the frame; a transport header does not fit in the IP payload.
/// - `Malformed`: IP version mismatch, IPv4 IHL < 5 or total length below the
///   header length, UDP length below 8 or TCP data offset below 5, a
///   hop-by-hop header that is not first.
/// - `Unsupported`: non-IP EtherTypes (ARP included), more than two VLAN
///   tags, IPv4 fragments, an IPv6 fragment header, more than 8 extension
///   headers.
#[inline]
pub fn classify(frame: &[u8]) -> Result<Classified, WireError> {
    let eth = EthernetFrame::new_checked(frame)?;
    // `black_box` hides that the offset is 14, 18 or 22: knowing it, LLVM
    // stores the field as one byte plus zero bytes, and the full-width reload
    // in `verify_checksums` then stalls store forwarding (measured: a third
    // of the time of a 64-byte echo).
    let l3_offset = core::hint::black_box(eth.header_len());
    let ethertype = eth.ethertype();
    let l3 = &frame[l3_offset..];
    let (ipv6, src_addr, dst_addr, proto, l4_offset, l4_len) = match ethertype {
        EtherType::IPV4 => {
            let ip = Ipv4Packet::new_checked(l3)?;
            if ip.is_fragment() {
                return Err(WireError::Unsupported);
            }
            let hl = ip.header_len();
            (
                false,
                mapped(get_array(l3, 12)),
                mapped(get_array(l3, 16)),
                ip.next_header(),
                l3_offset + hl,
                usize::from(ip.total_len()) - hl,
            )
        }
        EtherType::IPV6 => {
            let ip = Ipv6Packet::new_checked(l3)?;
            // Fast path: no extension headers.
            let (proto, off) = match ip.next_header() {
                IpProtocol::HOP_BY_HOP
                | IpProtocol::IPV6_ROUTING
                | IpProtocol::IPV6_DST_OPTS
                | IpProtocol::IPV6_FRAGMENT => ip.upper_layer()?,
                nh => (nh, ipv6::HEADER_LEN),
            };
            (
                true,
                get_array(l3, 8),
                get_array(l3, 24),
                proto,
                l3_offset + off,
                ipv6::HEADER_LEN + usize::from(ip.payload_len()) - off,
            )
        }
        _ => return Err(WireError::Unsupported),
    };
    // In bounds: the IP checks above guarantee l4_offset + l4_len <= frame.len().
    let l4b = &frame[l4_offset..l4_offset + l4_len];
    let l4 = match proto {
        IpProtocol::UDP => {
            if l4b.len() < 8 {
                return Err(WireError::Truncated);
            }
            let ulen = usize::from(get_u16(l4b, 4));
            if ulen < 8 {
                return Err(WireError::Malformed);
            }
            if ulen > l4b.len() {
                return Err(WireError::Truncated);
            }
            L4::Udp {
                src_port: get_u16(l4b, 0),
                dst_port: get_u16(l4b, 2),
            }
        }
        IpProtocol::TCP => {
            if l4b.len() < 20 {
                return Err(WireError::Truncated);
            }
            let doff = usize::from(l4b[12] >> 4) * 4;
            if doff < 20 {
                return Err(WireError::Malformed);
            }
            if doff > l4b.len() {
                return Err(WireError::Truncated);
            }
            L4::Tcp {
                src_port: get_u16(l4b, 0),
                dst_port: get_u16(l4b, 2),
            }
        }
        IpProtocol::ICMP if !ipv6 => icmp(l4b, icmpv4::TYPE_ECHO_REQUEST)?,
        IpProtocol::ICMPV6 if ipv6 => icmp(l4b, icmpv6::TYPE_ECHO_REQUEST)?,
        IpProtocol(p) => L4::Other(p),
    };
    Ok(Classified {
        l3_offset,
        l4_offset,
        l4_len,
        ipv6,
        src_addr,
        dst_addr,
        l4,
    })
}

#[inline]
fn icmp(l4b: &[u8], echo_request: u8) -> Result<L4, WireError> {
    match l4b {
        [ty, 0, _, _, _, _, _, _, ..] if *ty == echo_request => Ok(L4::EchoRequest),
        [ty, _, _, _, _, _, _, _, ..] => Ok(L4::Other(*ty)),
        _ => Err(WireError::Truncated),
    }
}

/// The IP protocol (upper-layer next header) of a classified frame,
/// re-read from the frame; `None` if `c` does not fit `frame`.
pub(crate) fn l4_protocol(frame: &[u8], c: &Classified) -> Option<IpProtocol> {
    if c.ipv6 {
        let l3 = frame.get(c.l3_offset..)?;
        let ip = Ipv6Packet::new_checked(l3).ok()?;
        ip.upper_layer().ok().map(|(p, _)| p)
    } else {
        frame.get(c.l3_offset + 9).map(|&p| IpProtocol(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Minimal valid frames for error-path tests; the fixture tests in
    /// tests/ cover real captures.
    fn udp4(payload: usize) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 8 + payload];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        let tl = (20 + 8 + payload) as u16;
        f[16..18].copy_from_slice(&tl.to_be_bytes());
        f[22] = 64;
        f[23] = 17;
        f[26..30].copy_from_slice(&[198, 18, 0, 1]);
        f[30..34].copy_from_slice(&[198, 18, 0, 2]);
        f[34..36].copy_from_slice(&1234u16.to_be_bytes());
        f[36..38].copy_from_slice(&7u16.to_be_bytes());
        f[38..40].copy_from_slice(&((8 + payload) as u16).to_be_bytes());
        f
    }

    fn ip6(next: u8, l4: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 40];
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        f[14] = 0x60;
        f[18..20].copy_from_slice(&(l4.len() as u16).to_be_bytes());
        f[20] = next;
        f[21] = 64;
        f[22..24].copy_from_slice(&[0x20, 0x01]);
        f[37] = 1;
        f[38..40].copy_from_slice(&[0x20, 0x01]);
        f[53] = 2;
        f.extend_from_slice(l4);
        f
    }

    #[test]
    fn udp4_ok_with_padding() {
        let mut f = udp4(4);
        f.extend_from_slice(&[0; 10]);
        let c = classify(&f).unwrap();
        assert_eq!(c.l3_offset, 14);
        assert_eq!(c.l4_offset, 34);
        assert_eq!(c.l4_len, 12);
        assert!(!c.ipv6);
        assert_eq!(
            &c.src_addr[..12],
            &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]
        );
        assert_eq!(&c.src_addr[12..], &[198, 18, 0, 1]);
        assert_eq!(
            c.l4,
            L4::Udp {
                src_port: 1234,
                dst_port: 7
            }
        );
        assert_eq!(c.l4_bytes(&f).unwrap().len(), 12);
    }

    #[test]
    fn error_paths_v4() {
        let f = udp4(4);
        let e = |f: &[u8]| classify(f).unwrap_err();
        assert_eq!(e(&f[..13]), WireError::Truncated); // Ethernet
        assert_eq!(e(&f[..33]), WireError::Truncated); // IPv4 header
        assert_eq!(e(&f[..45]), WireError::Truncated); // total length
        let mut v = f.clone();
        v[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(e(&v), WireError::Unsupported); // ARP
        let mut v = f.clone();
        v[14] = 0x65;
        assert_eq!(e(&v), WireError::Malformed); // version
        v[14] = 0x44;
        assert_eq!(e(&v), WireError::Malformed); // IHL 4
        let mut v = f.clone();
        v[17] = 10;
        assert_eq!(e(&v), WireError::Malformed); // total < IHL
        let mut v = f.clone();
        v[20] = 0x20; // MF
        assert_eq!(e(&v), WireError::Unsupported);
        let mut v = f.clone();
        v[21] = 0x01; // offset
        assert_eq!(e(&v), WireError::Unsupported);
        let mut v = f.clone();
        v[39] = 7; // UDP length 7
        assert_eq!(e(&v), WireError::Malformed);
        v[39] = 13; // UDP length > IP payload
        assert_eq!(e(&v), WireError::Truncated);
        let mut v = udp4(0);
        v[17] = 27; // IP payload 7 bytes: UDP header cut
        assert_eq!(e(&v), WireError::Truncated);
        // TCP header cut / bad data offset / options past the end.
        let mut v = udp4(11);
        v[23] = 6;
        assert_eq!(e(&v), WireError::Truncated); // 20 bytes of L4 needed
        let mut v = udp4(16);
        v[23] = 6;
        v[46] = 0x40;
        assert_eq!(e(&v), WireError::Malformed);
        v[46] = 0x70;
        assert_eq!(e(&v), WireError::Truncated);
        v[46] = 0x50;
        assert!(matches!(classify(&v).unwrap().l4, L4::Tcp { .. }));
        // ICMP shorter than 8 bytes.
        let mut v = udp4(0);
        v[23] = 1;
        v[17] = 27;
        assert_eq!(e(&v), WireError::Truncated);
        // Other protocol: no L4 validation.
        let mut v = udp4(0);
        v[23] = 47;
        v[17] = 20;
        assert_eq!(classify(&v).unwrap().l4, L4::Other(47));
        assert_eq!(classify(&v).unwrap().l4_len, 0);
    }

    #[test]
    fn icmp_kinds() {
        let mut v = udp4(0);
        v[23] = 1;
        v[34] = 8;
        v[35] = 0;
        assert_eq!(classify(&v).unwrap().l4, L4::EchoRequest);
        v[35] = 1;
        assert_eq!(classify(&v).unwrap().l4, L4::Other(8));
        v[34] = 0;
        assert_eq!(classify(&v).unwrap().l4, L4::Other(0));
        let f = ip6(58, &[128, 0, 0, 0, 0, 0, 0, 0]);
        let c = classify(&f).unwrap();
        assert_eq!(c.l4, L4::EchoRequest);
        assert!(c.ipv6);
        assert_eq!(c.src_addr[15], 1);
        assert_eq!(c.l4_offset, 54);
        // ICMPv4 type 8 inside IPv6 is just "protocol 1".
        let f = ip6(1, &[8, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(classify(&f).unwrap().l4, L4::Other(1));
    }

    #[test]
    fn error_paths_v6() {
        let f = ip6(17, &[0, 1, 0, 2, 0, 8, 0, 0]);
        let e = |f: &[u8]| classify(f).unwrap_err();
        assert!(classify(&f).is_ok());
        assert_eq!(e(&f[..53]), WireError::Truncated);
        assert_eq!(e(&f[..61]), WireError::Truncated);
        let mut v = f.clone();
        v[14] = 0x40;
        assert_eq!(e(&v), WireError::Malformed);
        // Fragment header.
        let frag = ip6(44, &[17, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2, 0, 8, 0, 0]);
        assert_eq!(e(&frag), WireError::Unsupported);
        // Destination options (8 bytes) then UDP.
        let dst = ip6(60, &[17, 0, 1, 4, 0, 0, 0, 0, 0, 1, 0, 2, 0, 8, 0, 0]);
        let c = classify(&dst).unwrap();
        assert_eq!(c.l4_offset, 14 + 40 + 8);
        assert_eq!(c.l4_len, 8);
        // Extension header running past the payload.
        let cut = ip6(60, &[17, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(e(&cut), WireError::Truncated);
        // Double tag then IPv6: offsets move by 8.
        let mut tagged = f[..12].to_vec();
        tagged.extend_from_slice(&[0x88, 0xa8, 0, 200, 0x81, 0, 0x01, 0x2c]);
        tagged.extend_from_slice(&f[12..]);
        let c = classify(&tagged).unwrap();
        assert_eq!((c.l3_offset, c.l4_offset), (22, 62));
        assert_eq!(l4_protocol(&tagged, &c), Some(IpProtocol::UDP));
        assert_eq!(
            l4_protocol(&dst, &classify(&dst).unwrap()),
            Some(IpProtocol::UDP)
        );
    }
}
