//! IPv6 (RFC 8200) and the walk over its extension headers.
//!
//! Hop-by-hop options (first only), routing and destination options headers
//! are skipped without interpreting them; a fragment header is `Unsupported`
//! (the gateway does not reassemble). Routing headers are skipped even with
//! segments left, so a packet that still had hops to visit is treated as ours.
use core::net::Ipv6Addr;

use super::{get_array, get_u16, get_u32, set_u16, set_u32, IpProtocol};
use crate::checksum;
use crate::WireError;

const VER_TC_FLOW: usize = 0;
const LENGTH: usize = 4;
const NXT_HDR: usize = 6;
const HOP_LIMIT: usize = 7;
const SRC: usize = 8;
const DST: usize = 24;
/// Length of the fixed IPv6 header.
pub const HEADER_LEN: usize = 40;
/// Most extension headers walked before giving up (`Unsupported`).
pub const MAX_EXT_HEADERS: usize = 8;

/// A view of an IPv6 packet.
#[derive(Debug, Clone)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Check the version and that the payload length fits the buffer (which
    /// may be longer: link-layer padding).
    ///
    /// Errors: `Truncated` for a buffer shorter than 40 bytes or than the
    /// payload length says; `Malformed` for a version other than 6.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let p = Self { buffer };
        if p.version() != 6 {
            return Err(WireError::Malformed);
        }
        if HEADER_LEN + usize::from(p.payload_len()) > p.buffer.as_ref().len() {
            return Err(WireError::Truncated);
        }
        Ok(p)
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    #[inline]
    pub fn version(&self) -> u8 {
        self.b()[VER_TC_FLOW] >> 4
    }

    #[inline]
    pub fn traffic_class(&self) -> u8 {
        (get_u16(self.b(), VER_TC_FLOW) >> 4) as u8
    }

    #[inline]
    pub fn flow_label(&self) -> u32 {
        get_u32(self.b(), VER_TC_FLOW) & 0x000f_ffff
    }

    #[inline]
    pub fn payload_len(&self) -> u16 {
        get_u16(self.b(), LENGTH)
    }

    /// The next header field of the fixed header.
    #[inline]
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol(self.b()[NXT_HDR])
    }

    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.b()[HOP_LIMIT]
    }

    #[inline]
    pub fn src_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(get_array::<16>(self.b(), SRC))
    }

    #[inline]
    pub fn dst_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(get_array::<16>(self.b(), DST))
    }

    /// The payload (extension headers included) as the payload length says.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.b()[HEADER_LEN..HEADER_LEN + usize::from(self.payload_len())]
    }

    /// Walk the extension headers. Returns the upper-layer protocol and the
    /// offset of its header from the start of this packet.
    ///
    /// Errors: `Truncated` when an extension header runs past the payload;
    /// `Malformed` for a hop-by-hop header that is not first; `Unsupported`
    /// for a fragment header or more than [`MAX_EXT_HEADERS`] headers.
    pub fn upper_layer(&self) -> Result<(IpProtocol, usize), WireError> {
        walk_ext_headers(self.next_header(), self.payload(), HEADER_LEN)
    }

    /// Pseudo-header sum for an upper-layer `len` bytes long.
    #[inline]
    pub fn pseudo_header_sum(&self, next_header: IpProtocol, len: u32) -> u16 {
        checksum::pseudo_header_v6(&self.src_addr(), &self.dst_addr(), next_header.0, len)
    }
}

/// Walk extension headers starting with `first` at the start of `payload`;
/// returned offsets are `payload`'s offset plus `base`.
pub(crate) fn walk_ext_headers(
    first: IpProtocol,
    payload: &[u8],
    base: usize,
) -> Result<(IpProtocol, usize), WireError> {
    let mut nh = first;
    let mut off = 0usize;
    for i in 0..=MAX_EXT_HEADERS {
        match nh {
            IpProtocol::HOP_BY_HOP if i > 0 => return Err(WireError::Malformed),
            IpProtocol::HOP_BY_HOP | IpProtocol::IPV6_ROUTING | IpProtocol::IPV6_DST_OPTS => {
                if i == MAX_EXT_HEADERS {
                    return Err(WireError::Unsupported);
                }
                let h = payload.get(off..off + 2).ok_or(WireError::Truncated)?;
                let len = (usize::from(h[1]) + 1) * 8;
                if off + len > payload.len() {
                    return Err(WireError::Truncated);
                }
                nh = IpProtocol(h[0]);
                off += len;
            }
            IpProtocol::IPV6_FRAGMENT => return Err(WireError::Unsupported),
            _ => return Ok((nh, base + off)),
        }
    }
    Err(WireError::Unsupported)
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    #[inline]
    fn bm(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }

    /// Write version 6, the traffic class and the flow label.
    pub fn set_version_tc_flow(&mut self, traffic_class: u8, flow_label: u32) {
        let v = 6 << 28 | u32::from(traffic_class) << 20 | (flow_label & 0x000f_ffff);
        set_u32(self.bm(), VER_TC_FLOW, v);
    }

    pub fn set_payload_len(&mut self, v: u16) {
        set_u16(self.bm(), LENGTH, v);
    }

    pub fn set_next_header(&mut self, p: IpProtocol) {
        self.bm()[NXT_HDR] = p.0;
    }

    pub fn set_hop_limit(&mut self, v: u8) {
        self.bm()[HOP_LIMIT] = v;
    }

    pub fn set_src_addr(&mut self, a: Ipv6Addr) {
        self.bm()[SRC..SRC + 16].copy_from_slice(&a.octets());
    }

    pub fn set_dst_addr(&mut self, a: Ipv6Addr) {
        self.bm()[DST..DST + 16].copy_from_slice(&a.octets());
    }

    /// Swap source and destination; neutral for every checksum.
    #[inline]
    pub fn swap_addrs(&mut self) {
        let (src, dst) = self.bm()[SRC..DST + 16].split_at_mut(16);
        src.swap_with_slice(dst);
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        &mut self.bm()[HEADER_LEN..end]
    }
}

/// A view of one hop-by-hop, routing or destination options header.
#[derive(Debug, Clone)]
pub struct Ipv6ExtHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6ExtHeader<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// `Truncated` when the header its length byte announces does not fit.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        if b.len() < 2 || b.len() < (usize::from(b[1]) + 1) * 8 {
            return Err(WireError::Truncated);
        }
        Ok(Self { buffer })
    }

    pub fn next_header(&self) -> IpProtocol {
        IpProtocol(self.buffer.as_ref()[0])
    }

    /// Length of the whole header in bytes.
    pub fn header_len(&self) -> usize {
        (usize::from(self.buffer.as_ref()[1]) + 1) * 8
    }

    /// The header's data after the next-header and length bytes.
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[2..self.header_len()]
    }
}

/// A parsed fixed IPv6 header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipv6Repr {
    pub src_addr: Ipv6Addr,
    pub dst_addr: Ipv6Addr,
    /// The fixed header's next header (may be an extension header).
    pub next_header: IpProtocol,
    pub payload_len: usize,
    pub hop_limit: u8,
    pub traffic_class: u8,
    pub flow_label: u32,
}

impl Ipv6Repr {
    pub fn parse<T: AsRef<[u8]>>(p: &Ipv6Packet<T>) -> Result<Self, WireError> {
        Ok(Self {
            src_addr: p.src_addr(),
            dst_addr: p.dst_addr(),
            next_header: p.next_header(),
            payload_len: usize::from(p.payload_len()),
            hop_limit: p.hop_limit(),
            traffic_class: p.traffic_class(),
            flow_label: p.flow_label(),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Write the fixed header into the start of `buf`; returns 40.
    /// `Malformed` for a payload over 65535 bytes (no jumbograms).
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let plen = u16::try_from(self.payload_len).map_err(|_| WireError::Malformed)?;
        let b = buf.get_mut(..HEADER_LEN).ok_or(WireError::Truncated)?;
        let mut p = Ipv6Packet::new_unchecked(b);
        p.set_version_tc_flow(self.traffic_class, self.flow_label);
        p.set_payload_len(plen);
        p.set_next_header(self.next_header);
        p.set_hop_limit(self.hop_limit);
        p.set_src_addr(self.src_addr);
        p.set_dst_addr(self.dst_addr);
        Ok(HEADER_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repr() -> Ipv6Repr {
        Ipv6Repr {
            src_addr: "2001:2::1".parse().unwrap(),
            dst_addr: "2001:2::2".parse().unwrap(),
            next_header: IpProtocol::UDP,
            payload_len: 8,
            hop_limit: 64,
            traffic_class: 0xb8,
            flow_label: 0xcd2e9,
        }
    }

    #[test]
    fn repr_round_trip_and_accessors() {
        let mut buf = [0u8; 48];
        assert_eq!(repr().emit(&mut buf).unwrap(), 40);
        assert_eq!(&buf[..4], &[0x6b, 0x8c, 0xd2, 0xe9]);
        let p = Ipv6Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0xb8);
        assert_eq!(p.flow_label(), 0xcd2e9);
        assert_eq!(p.payload().len(), 8);
        assert_eq!(p.upper_layer(), Ok((IpProtocol::UDP, 40)));
        assert_eq!(Ipv6Repr::parse(&p).unwrap(), repr());
        let big = Ipv6Repr {
            payload_len: 70_000,
            ..repr()
        };
        assert_eq!(big.emit(&mut buf), Err(WireError::Malformed));
        assert_eq!(repr().emit(&mut buf[..39]), Err(WireError::Truncated));
    }

    #[test]
    fn errors() {
        let mut buf = [0u8; 48];
        repr().emit(&mut buf).unwrap();
        let err = |b: &[u8]| Ipv6Packet::new_checked(b).unwrap_err();
        assert_eq!(err(&buf[..39]), WireError::Truncated);
        assert_eq!(err(&buf[..47]), WireError::Truncated);
        let mut v = buf;
        v[0] = 0x40;
        assert_eq!(err(&v), WireError::Malformed);
    }

    #[test]
    fn ext_header_walk() {
        // HBH (8 bytes) -> dst opts (16 bytes) -> routing (8) -> TCP
        let mut pl = [0u8; 40];
        pl[0] = IpProtocol::IPV6_DST_OPTS.0;
        pl[1] = 0;
        pl[8] = IpProtocol::IPV6_ROUTING.0;
        pl[9] = 1;
        pl[24] = IpProtocol::TCP.0;
        pl[25] = 0;
        assert_eq!(
            walk_ext_headers(IpProtocol::HOP_BY_HOP, &pl, 40),
            Ok((IpProtocol::TCP, 72))
        );
        // Truncated: the routing header says 16 bytes.
        pl[25] = 1;
        assert_eq!(
            walk_ext_headers(IpProtocol::HOP_BY_HOP, &pl[..38], 40),
            Err(WireError::Truncated)
        );
        assert_eq!(
            walk_ext_headers(IpProtocol::HOP_BY_HOP, &pl[..1], 40),
            Err(WireError::Truncated)
        );
        // HBH not first.
        pl[24] = IpProtocol::HOP_BY_HOP.0;
        pl[25] = 0;
        assert_eq!(
            walk_ext_headers(IpProtocol::HOP_BY_HOP, &pl, 40),
            Err(WireError::Malformed)
        );
        // Fragment.
        pl[24] = IpProtocol::IPV6_FRAGMENT.0;
        assert_eq!(
            walk_ext_headers(IpProtocol::HOP_BY_HOP, &pl, 40),
            Err(WireError::Unsupported)
        );
        // Too many: nine destination-options headers in a row.
        let mut chain = [0u8; 80];
        for h in chain.chunks_mut(8) {
            h[0] = IpProtocol::IPV6_DST_OPTS.0;
        }
        assert_eq!(
            walk_ext_headers(IpProtocol::IPV6_DST_OPTS, &chain, 40),
            Err(WireError::Unsupported)
        );
        // No next header.
        assert_eq!(
            walk_ext_headers(IpProtocol::IPV6_NO_NEXT, &[], 40),
            Ok((IpProtocol::IPV6_NO_NEXT, 40))
        );
        let h = Ipv6ExtHeader::new_checked(&pl[8..]).unwrap();
        assert_eq!(h.next_header(), IpProtocol::IPV6_ROUTING);
        assert_eq!(h.header_len(), 16);
        assert_eq!(h.data().len(), 14);
        assert!(Ipv6ExtHeader::new_checked(&pl[8..20]).is_err());
        assert!(Ipv6ExtHeader::new_checked(&pl[8..9]).is_err());
    }

    #[test]
    fn setters() {
        let mut buf = [0u8; 48];
        repr().emit(&mut buf).unwrap();
        let mut p = Ipv6Packet::new_checked(&mut buf[..]).unwrap();
        p.swap_addrs();
        assert_eq!(p.src_addr(), repr().dst_addr);
        assert_eq!(p.dst_addr(), repr().src_addr);
        p.set_hop_limit(1);
        p.set_next_header(IpProtocol::TCP);
        p.payload_mut()[0] = 7;
        assert_eq!((p.hop_limit(), p.next_header()), (1, IpProtocol::TCP));
        assert_eq!(buf[40], 7);
    }
}
