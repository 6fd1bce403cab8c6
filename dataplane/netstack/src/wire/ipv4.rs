//! IPv4 (RFC 791), options allowed and carried verbatim.
use core::net::Ipv4Addr;

use super::{get_array, get_u16, set_u16, IpProtocol};
use crate::checksum;
use crate::WireError;

const VER_IHL: usize = 0;
const TOS: usize = 1;
const LENGTH: usize = 2;
const IDENT: usize = 4;
const FLAGS_FRAG: usize = 6;
const TTL: usize = 8;
const PROTOCOL: usize = 9;
const CHECKSUM: usize = 10;
const SRC: usize = 12;
const DST: usize = 16;
/// Length of an IPv4 header without options.
pub const HEADER_LEN: usize = 20;
/// Most option bytes a header can carry (IHL 15).
pub const MAX_OPTIONS_LEN: usize = 40;

const FLAG_RESERVED: u16 = 0x8000;
const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const FRAG_OFFSET_MASK: u16 = 0x1fff;

/// A view of an IPv4 packet.
#[derive(Debug, Clone)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Check version, IHL and total length against the buffer. The buffer may
    /// be longer than the packet (link-layer padding).
    ///
    /// Errors: `Truncated` when the buffer is shorter than the header or the
    /// total length; `Malformed` for a version other than 4, IHL < 5 or a
    /// total length below the header length.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let p = Self { buffer };
        if p.version() != 4 || p.header_len() < HEADER_LEN {
            return Err(WireError::Malformed);
        }
        let len = p.buffer.as_ref().len();
        if p.header_len() > len {
            return Err(WireError::Truncated);
        }
        let total = usize::from(p.total_len());
        if total < p.header_len() {
            return Err(WireError::Malformed);
        }
        if total > len {
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
        self.b()[VER_IHL] >> 4
    }

    /// Header length in bytes (IHL × 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.b()[VER_IHL] & 0x0f) * 4
    }

    #[inline]
    pub fn dscp(&self) -> u8 {
        self.b()[TOS] >> 2
    }

    #[inline]
    pub fn ecn(&self) -> u8 {
        self.b()[TOS] & 0x03
    }

    #[inline]
    pub fn total_len(&self) -> u16 {
        get_u16(self.b(), LENGTH)
    }

    #[inline]
    pub fn ident(&self) -> u16 {
        get_u16(self.b(), IDENT)
    }

    #[inline]
    pub fn reserved_flag(&self) -> bool {
        get_u16(self.b(), FLAGS_FRAG) & FLAG_RESERVED != 0
    }

    #[inline]
    pub fn dont_frag(&self) -> bool {
        get_u16(self.b(), FLAGS_FRAG) & FLAG_DF != 0
    }

    #[inline]
    pub fn more_frags(&self) -> bool {
        get_u16(self.b(), FLAGS_FRAG) & FLAG_MF != 0
    }

    /// Fragment offset in bytes.
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (get_u16(self.b(), FLAGS_FRAG) & FRAG_OFFSET_MASK) << 3
    }

    /// True for any fragment (MF set or a non-zero offset).
    #[inline]
    pub fn is_fragment(&self) -> bool {
        get_u16(self.b(), FLAGS_FRAG) & (FLAG_MF | FRAG_OFFSET_MASK) != 0
    }

    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.b()[TTL]
    }

    #[inline]
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol(self.b()[PROTOCOL])
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        get_u16(self.b(), CHECKSUM)
    }

    #[inline]
    pub fn src_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(get_array::<4>(self.b(), SRC))
    }

    #[inline]
    pub fn dst_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(get_array::<4>(self.b(), DST))
    }

    /// The option bytes (empty for IHL 5).
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.b()[HEADER_LEN..self.header_len()]
    }

    /// The header, options included.
    #[inline]
    pub fn header(&self) -> &[u8] {
        &self.b()[..self.header_len()]
    }

    /// The payload as the total length says (padding excluded).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.b()[self.header_len()..usize::from(self.total_len())]
    }

    /// True when the header checksum verifies.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::is_valid(checksum::sum(self.header()))
    }

    /// Pseudo-header sum for the transport checksum of this packet's payload.
    #[inline]
    pub fn pseudo_header_sum(&self) -> u16 {
        checksum::pseudo_header_v4(
            &self.src_addr(),
            &self.dst_addr(),
            self.next_header().0,
            self.total_len().wrapping_sub(self.header_len() as u16),
        )
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    #[inline]
    fn bm(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }

    /// Set version 4 and the header length (a multiple of 4, 20..=60).
    pub fn set_header_len(&mut self, len: usize) {
        self.bm()[VER_IHL] = 0x40 | ((len / 4) as u8 & 0x0f);
    }

    pub fn set_dscp_ecn(&mut self, dscp: u8, ecn: u8) {
        self.bm()[TOS] = (dscp << 2) | (ecn & 0x03);
    }

    pub fn set_total_len(&mut self, v: u16) {
        set_u16(self.bm(), LENGTH, v);
    }

    pub fn set_ident(&mut self, v: u16) {
        set_u16(self.bm(), IDENT, v);
    }

    /// Set DF, clear MF, the reserved bit and the fragment offset.
    pub fn set_dont_frag(&mut self, df: bool) {
        set_u16(self.bm(), FLAGS_FRAG, if df { FLAG_DF } else { 0 });
    }

    pub fn set_hop_limit(&mut self, v: u8) {
        self.bm()[TTL] = v;
    }

    pub fn set_next_header(&mut self, p: IpProtocol) {
        self.bm()[PROTOCOL] = p.0;
    }

    pub fn set_checksum(&mut self, v: u16) {
        set_u16(self.bm(), CHECKSUM, v);
    }

    pub fn set_src_addr(&mut self, a: Ipv4Addr) {
        self.bm()[SRC..SRC + 4].copy_from_slice(&a.octets());
    }

    pub fn set_dst_addr(&mut self, a: Ipv4Addr) {
        self.bm()[DST..DST + 4].copy_from_slice(&a.octets());
    }

    /// Recompute the header checksum.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.header());
        self.set_checksum(c);
    }

    /// Set the TTL and update the header checksum incrementally (RFC 1624).
    #[inline]
    pub fn set_hop_limit_incremental(&mut self, ttl: u8) {
        let b = self.bm();
        let old = get_u16(b, TTL);
        let new = u16::from(ttl) << 8 | (old & 0x00ff);
        b[TTL] = ttl;
        let c = checksum::update_u16(get_u16(b, CHECKSUM), old, new);
        set_u16(b, CHECKSUM, c);
    }

    /// Swap source and destination; neutral for every checksum.
    #[inline]
    pub fn swap_addrs(&mut self) {
        let b = self.bm();
        let (src, dst) = b[SRC..DST + 4].split_at_mut(4);
        src.swap_with_slice(dst);
    }

    /// The payload (as the total length says), mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (start, end) = (self.header_len(), usize::from(self.total_len()));
        &mut self.bm()[start..end]
    }
}

/// IPv4 options kept inline (no allocation), at most 40 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Options {
    bytes: [u8; MAX_OPTIONS_LEN],
    len: u8,
}

impl Ipv4Options {
    pub const NONE: Self = Self {
        bytes: [0; MAX_OPTIONS_LEN],
        len: 0,
    };

    /// Options from raw bytes: at most 40 and a multiple of 4 (`Malformed`).
    pub fn new(raw: &[u8]) -> Result<Self, WireError> {
        if raw.len() > MAX_OPTIONS_LEN || !raw.len().is_multiple_of(4) {
            return Err(WireError::Malformed);
        }
        let mut bytes = [0; MAX_OPTIONS_LEN];
        bytes[..raw.len()].copy_from_slice(raw);
        Ok(Self {
            bytes,
            len: raw.len() as u8,
        })
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len).min(MAX_OPTIONS_LEN)]
    }

    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Default for Ipv4Options {
    fn default() -> Self {
        Self::NONE
    }
}

impl core::fmt::Debug for Ipv4Options {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("Ipv4Options")
            .field(&self.as_slice())
            .finish()
    }
}

/// A parsed IPv4 header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipv4Repr {
    pub src_addr: Ipv4Addr,
    pub dst_addr: Ipv4Addr,
    pub next_header: IpProtocol,
    /// Length of the payload (total length minus header length).
    pub payload_len: usize,
    pub hop_limit: u8,
    pub dscp: u8,
    pub ecn: u8,
    pub ident: u16,
    pub dont_frag: bool,
    pub options: Ipv4Options,
}

impl Ipv4Repr {
    /// Parse a checked packet.
    ///
    /// Errors: `BadChecksum` for a header checksum that does not verify;
    /// `Malformed` for the reserved flag; `Unsupported` for fragments.
    pub fn parse<T: AsRef<[u8]>>(p: &Ipv4Packet<T>) -> Result<Self, WireError> {
        if !p.verify_checksum() {
            return Err(WireError::BadChecksum);
        }
        Self::parse_header(p)
    }

    /// As [`parse`](Self::parse) without the checksum check.
    pub fn parse_header<T: AsRef<[u8]>>(p: &Ipv4Packet<T>) -> Result<Self, WireError> {
        if p.reserved_flag() {
            return Err(WireError::Malformed);
        }
        if p.is_fragment() {
            return Err(WireError::Unsupported);
        }
        Ok(Self {
            src_addr: p.src_addr(),
            dst_addr: p.dst_addr(),
            next_header: p.next_header(),
            payload_len: usize::from(p.total_len()).saturating_sub(p.header_len()),
            hop_limit: p.hop_limit(),
            dscp: p.dscp(),
            ecn: p.ecn(),
            ident: p.ident(),
            dont_frag: p.dont_frag(),
            options: Ipv4Options::new(p.options())?,
        })
    }

    /// Header length (with options).
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.options.len()
    }

    /// Write the header, checksum included, into the start of `buf`; returns
    /// the header length. `Malformed` when header plus payload exceed 65535.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let hlen = self.buffer_len();
        let total = u16::try_from(hlen + self.payload_len).map_err(|_| WireError::Malformed)?;
        let b = buf.get_mut(..hlen).ok_or(WireError::Truncated)?;
        let mut p = Ipv4Packet::new_unchecked(b);
        p.set_header_len(hlen);
        p.set_dscp_ecn(self.dscp, self.ecn);
        p.set_total_len(total);
        p.set_ident(self.ident);
        p.set_dont_frag(self.dont_frag);
        p.set_hop_limit(self.hop_limit);
        p.set_next_header(self.next_header);
        p.set_src_addr(self.src_addr);
        p.set_dst_addr(self.dst_addr);
        p.bm()[HEADER_LEN..hlen].copy_from_slice(self.options.as_slice());
        p.fill_checksum();
        Ok(hlen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Kernel echo request header (tests/fixtures/ping4.pcap) + 4 payload bytes.
    const PING_HDR: [u8; 24] = [
        0x45, 0x00, 0x00, 0x18, 0xeb, 0x1f, 0x40, 0x00, 0x40, 0x01, 0x00, 0x00, 0xc6, 0x12, 0x00,
        0x01, 0xc6, 0x12, 0x00, 0x02, 1, 2, 3, 4,
    ];

    fn packet() -> [u8; 24] {
        let mut b = PING_HDR;
        Ipv4Packet::new_unchecked(&mut b[..]).fill_checksum();
        b
    }

    #[test]
    fn accessors() {
        let b = packet();
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!((p.dscp(), p.ecn()), (0, 0));
        assert_eq!(p.total_len(), 24);
        assert_eq!(p.ident(), 0xeb1f);
        assert!(p.dont_frag() && !p.more_frags() && !p.reserved_flag() && !p.is_fragment());
        assert_eq!(p.frag_offset(), 0);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.next_header(), IpProtocol::ICMP);
        assert_eq!(p.src_addr(), Ipv4Addr::new(198, 18, 0, 1));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(198, 18, 0, 2));
        assert!(p.options().is_empty());
        assert_eq!(p.payload(), &[1, 2, 3, 4]);
        assert!(p.verify_checksum());
    }

    #[test]
    fn errors() {
        let b = packet();
        let err = |buf: &[u8]| Ipv4Packet::new_checked(buf).unwrap_err();
        assert_eq!(err(&b[..19]), WireError::Truncated);
        assert_eq!(err(&b[..23]), WireError::Truncated); // total length 24
        let mut v = b;
        v[0] = 0x65;
        assert_eq!(err(&v), WireError::Malformed); // version 6
        v[0] = 0x44;
        assert_eq!(err(&v), WireError::Malformed); // IHL 4
        v[0] = 0x47;
        assert_eq!(err(&v), WireError::Truncated); // IHL 7 = 28 > 24
        let mut v = b;
        v[3] = 19;
        assert_eq!(err(&v), WireError::Malformed); // total < header
        let mut v = b;
        v[11] ^= 1;
        let p = Ipv4Packet::new_checked(&v[..]).unwrap();
        assert_eq!(Ipv4Repr::parse(&p), Err(WireError::BadChecksum));
        let mut v = b;
        let mut p = Ipv4Packet::new_checked(&mut v[..]).unwrap();
        set_u16(p.bm(), FLAGS_FRAG, FLAG_MF);
        p.fill_checksum();
        assert_eq!(Ipv4Repr::parse(&p), Err(WireError::Unsupported));
        set_u16(p.bm(), FLAGS_FRAG, 1); // offset 8
        assert_eq!(p.frag_offset(), 8);
        p.fill_checksum();
        assert_eq!(Ipv4Repr::parse(&p), Err(WireError::Unsupported));
        set_u16(p.bm(), FLAGS_FRAG, FLAG_RESERVED);
        p.fill_checksum();
        assert_eq!(Ipv4Repr::parse(&p), Err(WireError::Malformed));
    }

    #[test]
    fn padding_is_not_payload() {
        let mut b = [0u8; 46];
        b[..24].copy_from_slice(&packet());
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.payload().len(), 4);
    }

    #[test]
    fn repr_round_trip_with_options() {
        let repr = Ipv4Repr {
            src_addr: Ipv4Addr::new(198, 18, 0, 1),
            dst_addr: Ipv4Addr::new(198, 19, 0, 1),
            next_header: IpProtocol::UDP,
            payload_len: 8,
            hop_limit: 3,
            dscp: 46,
            ecn: 1,
            ident: 0x1234,
            dont_frag: false,
            // Router alert (RFC 2113).
            options: Ipv4Options::new(&[0x94, 0x04, 0x00, 0x00]).unwrap(),
        };
        let mut buf = [0u8; 32];
        assert_eq!(repr.buffer_len(), 24);
        assert_eq!(repr.emit(&mut buf).unwrap(), 24);
        let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.options(), &[0x94, 4, 0, 0]);
        assert!(p.verify_checksum());
        assert_eq!(Ipv4Repr::parse(&p).unwrap(), repr);
        let mut again = [0u8; 32];
        Ipv4Repr::parse(&p).unwrap().emit(&mut again).unwrap();
        assert_eq!(again, buf);
        assert_eq!(repr.emit(&mut buf[..23]), Err(WireError::Truncated));
        let huge = Ipv4Repr {
            payload_len: 65_530,
            ..repr
        };
        assert_eq!(huge.emit(&mut buf), Err(WireError::Malformed));
        assert_eq!(Ipv4Options::new(&[1, 1, 1]), Err(WireError::Malformed));
        assert_eq!(Ipv4Options::new(&[1; 44]), Err(WireError::Malformed));
    }

    #[test]
    fn incremental_ttl_and_swap() {
        let mut b = packet();
        let mut p = Ipv4Packet::new_checked(&mut b[..]).unwrap();
        for ttl in [0u8, 1, 63, 64, 255] {
            p.set_hop_limit_incremental(ttl);
            assert!(p.verify_checksum(), "ttl {ttl}");
            let inc = p.checksum();
            p.fill_checksum();
            assert_eq!(inc, p.checksum());
        }
        p.swap_addrs();
        assert!(p.verify_checksum());
        assert_eq!(p.src_addr(), Ipv4Addr::new(198, 18, 0, 2));
        p.set_src_addr(Ipv4Addr::new(1, 2, 3, 4));
        p.set_dst_addr(Ipv4Addr::new(5, 6, 7, 8));
        p.set_ident(7);
        p.set_dscp_ecn(1, 2);
        p.set_next_header(IpProtocol::TCP);
        p.fill_checksum();
        assert!(p.verify_checksum());
        assert_eq!((p.dscp(), p.ecn(), p.ident()), (1, 2, 7));
        p.payload_mut()[0] = 9;
        assert_eq!(b[20], 9);
    }
}
