//! ICMPv6 (RFC 4443): echo request/reply, and neighbour solicitation /
//! advertisement (RFC 4861) with their link-layer address options.
use core::net::{IpAddr, Ipv6Addr};

use super::{get_array, get_u16, set_u16, EthernetAddress, IpProtocol};
use crate::checksum;
use crate::WireError;

const TYPE: usize = 0;
const CODE: usize = 1;
const CHECKSUM: usize = 2;
const IDENT: usize = 4;
const SEQ_NO: usize = 6;
const NDP_FLAGS: usize = 4;
const NDP_TARGET: usize = 8;
/// Type, code, checksum and the 4-byte message-specific word.
pub const HEADER_LEN: usize = 8;
/// Fixed part of a neighbour solicitation / advertisement.
pub const NDP_HEADER_LEN: usize = 24;

pub const TYPE_DST_UNREACHABLE: u8 = 1;
pub const TYPE_PACKET_TOO_BIG: u8 = 2;
pub const TYPE_TIME_EXCEEDED: u8 = 3;
pub const TYPE_ECHO_REQUEST: u8 = 128;
pub const TYPE_ECHO_REPLY: u8 = 129;
pub const TYPE_ROUTER_SOLICIT: u8 = 133;
pub const TYPE_ROUTER_ADVERT: u8 = 134;
pub const TYPE_NEIGHBOR_SOLICIT: u8 = 135;
pub const TYPE_NEIGHBOR_ADVERT: u8 = 136;

/// NDP option types used here.
pub const OPT_SOURCE_LL_ADDR: u8 = 1;
pub const OPT_TARGET_LL_ADDR: u8 = 2;

/// Flags of a neighbour advertisement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct NdpFlags(pub u8);

impl NdpFlags {
    pub const ROUTER: Self = Self(0x80);
    pub const SOLICITED: Self = Self(0x40);
    pub const OVERRIDE: Self = Self(0x20);
    const MASK: u8 = 0xe0;

    pub const fn contains(self, o: Self) -> bool {
        self.0 & o.0 == o.0
    }
}

impl core::ops::BitOr for NdpFlags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

const fn is_ndp(ty: u8) -> bool {
    matches!(ty, TYPE_NEIGHBOR_SOLICIT | TYPE_NEIGHBOR_ADVERT)
}

/// A view of an ICMPv6 message. The buffer is the whole message.
#[derive(Debug, Clone)]
pub struct Icmpv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// `Truncated` for fewer than 8 bytes, or fewer than 24 for a
    /// neighbour solicitation or advertisement (so `target_addr` is safe).
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN || (is_ndp(b[TYPE]) && b.len() < NDP_HEADER_LEN) {
            return Err(WireError::Truncated);
        }
        Ok(Self { buffer })
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[TYPE]
    }

    #[inline]
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[CODE]
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), CHECKSUM)
    }

    #[inline]
    pub fn echo_ident(&self) -> u16 {
        get_u16(self.buffer.as_ref(), IDENT)
    }

    #[inline]
    pub fn echo_seq_no(&self) -> u16 {
        get_u16(self.buffer.as_ref(), SEQ_NO)
    }

    /// Bytes after the 8-byte header.
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    /// Router/solicited/override flags of an advertisement.
    #[inline]
    pub fn ndp_flags(&self) -> NdpFlags {
        NdpFlags(self.buffer.as_ref()[NDP_FLAGS] & NdpFlags::MASK)
    }

    /// Target address of a neighbour solicitation or advertisement; for
    /// other types, bytes 8..24 when present, else unspecified.
    #[inline]
    pub fn target_addr(&self) -> Ipv6Addr {
        match self.buffer.as_ref().get(NDP_TARGET..NDP_HEADER_LEN) {
            Some(_) => Ipv6Addr::from(get_array::<16>(self.buffer.as_ref(), NDP_TARGET)),
            None => Ipv6Addr::UNSPECIFIED,
        }
    }

    /// The options area of a neighbour solicitation or advertisement
    /// (empty for other types).
    #[inline]
    pub fn ndp_options(&self) -> &[u8] {
        if is_ndp(self.msg_type()) {
            self.buffer.as_ref().get(NDP_HEADER_LEN..).unwrap_or(&[])
        } else {
            &[]
        }
    }

    /// Iterate over the NDP options.
    pub fn ndp_options_iter(&self) -> NdpOptionsIter<'_> {
        NdpOptionsIter {
            rest: self.ndp_options(),
        }
    }

    /// Verify the checksum with the IPv6 pseudo-header.
    pub fn verify_checksum(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        let b = self.buffer.as_ref();
        let ph = checksum::pseudo_header_v6(src, dst, IpProtocol::ICMPV6.0, b.len() as u32);
        checksum::is_valid(checksum::add(ph, checksum::sum(b)))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Packet<T> {
    pub fn set_msg_type(&mut self, v: u8) {
        self.buffer.as_mut()[TYPE] = v;
    }

    pub fn set_msg_code(&mut self, v: u8) {
        self.buffer.as_mut()[CODE] = v;
    }

    pub fn set_checksum(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), CHECKSUM, v);
    }

    pub fn set_echo_ident(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), IDENT, v);
    }

    pub fn set_echo_seq_no(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), SEQ_NO, v);
    }

    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }

    pub fn fill_checksum(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        self.set_checksum(0);
        let b = self.buffer.as_ref();
        let ph = checksum::pseudo_header_v6(src, dst, IpProtocol::ICMPV6.0, b.len() as u32);
        let c = checksum::finish(checksum::add(ph, checksum::sum(b)));
        self.set_checksum(c);
    }

    /// Change the type and update the checksum incrementally (RFC 1624).
    #[inline]
    pub fn set_msg_type_incremental(&mut self, ty: u8) {
        let b = self.buffer.as_mut();
        let old = get_u16(b, TYPE);
        let new = u16::from(ty) << 8 | (old & 0x00ff);
        b[TYPE] = ty;
        let c = checksum::update_u16(get_u16(b, CHECKSUM), old, new);
        set_u16(b, CHECKSUM, c);
    }
}

/// One NDP option.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NdpOption<'a> {
    SourceLinkLayerAddr(EthernetAddress),
    TargetLinkLayerAddr(EthernetAddress),
    Unknown { kind: u8, data: &'a [u8] },
}

/// Iterator over NDP options; yields an error and stops on a length of 0
/// (`Malformed`), an option running past the message (`Truncated`), or a
/// link-layer address option that is not 8 bytes (`Malformed`, Ethernet only).
#[derive(Clone, Debug)]
pub struct NdpOptionsIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for NdpOptionsIter<'a> {
    type Item = Result<NdpOption<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let r = parse_ndp_option(self.rest);
        match r {
            Ok((o, rest)) => {
                self.rest = rest;
                Some(Ok(o))
            }
            Err(e) => {
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}

fn parse_ndp_option(b: &[u8]) -> Result<(NdpOption<'_>, &[u8]), WireError> {
    let h = b.get(..2).ok_or(WireError::Truncated)?;
    let len = usize::from(h[1]) * 8;
    if len == 0 {
        return Err(WireError::Malformed);
    }
    let opt = b.get(..len).ok_or(WireError::Truncated)?;
    let o = match h[0] {
        OPT_SOURCE_LL_ADDR | OPT_TARGET_LL_ADDR => {
            if len != 8 {
                return Err(WireError::Malformed);
            }
            let a = EthernetAddress(get_array(opt, 2));
            if h[0] == OPT_SOURCE_LL_ADDR {
                NdpOption::SourceLinkLayerAddr(a)
            } else {
                NdpOption::TargetLinkLayerAddr(a)
            }
        }
        kind => NdpOption::Unknown {
            kind,
            data: &opt[2..],
        },
    };
    Ok((o, &b[len..]))
}

/// A parsed ICMPv6 message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Icmpv6Repr<'a> {
    EchoRequest {
        ident: u16,
        seq_no: u16,
        data: &'a [u8],
    },
    EchoReply {
        ident: u16,
        seq_no: u16,
        data: &'a [u8],
    },
    /// Neighbour solicitation with its source link-layer address option.
    NeighborSolicit {
        target_addr: Ipv6Addr,
        lladdr: Option<EthernetAddress>,
    },
    /// Neighbour advertisement with its target link-layer address option.
    NeighborAdvert {
        flags: NdpFlags,
        target_addr: Ipv6Addr,
        lladdr: Option<EthernetAddress>,
    },
}

impl<'a> Icmpv6Repr<'a> {
    /// Parse a checked message sent from `src` to `dst`.
    ///
    /// Errors: `BadChecksum`; `Malformed` for a non-zero code on these types
    /// or a malformed NDP option; `Truncated` for an option past the end;
    /// `Unsupported` for other types. Unknown NDP options are skipped, as are
    /// reserved bits.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        p: &Icmpv6Packet<&'a T>,
        src: &Ipv6Addr,
        dst: &Ipv6Addr,
    ) -> Result<Self, WireError> {
        if !p.verify_checksum(src, dst) {
            return Err(WireError::BadChecksum);
        }
        let buf: &'a T = p.buffer;
        let bytes: &'a [u8] = buf.as_ref();
        let ty = p.msg_type();
        if matches!(
            ty,
            TYPE_ECHO_REQUEST | TYPE_ECHO_REPLY | TYPE_NEIGHBOR_SOLICIT | TYPE_NEIGHBOR_ADVERT
        ) && p.msg_code() != 0
        {
            return Err(WireError::Malformed);
        }
        let lladdr = |want: u8| -> Result<Option<EthernetAddress>, WireError> {
            let mut found = None;
            for o in p.ndp_options_iter() {
                match o? {
                    NdpOption::SourceLinkLayerAddr(a) if want == OPT_SOURCE_LL_ADDR => {
                        found = Some(a)
                    }
                    NdpOption::TargetLinkLayerAddr(a) if want == OPT_TARGET_LL_ADDR => {
                        found = Some(a)
                    }
                    _ => {}
                }
            }
            Ok(found)
        };
        match ty {
            TYPE_ECHO_REQUEST => Ok(Self::EchoRequest {
                ident: p.echo_ident(),
                seq_no: p.echo_seq_no(),
                data: &bytes[HEADER_LEN..],
            }),
            TYPE_ECHO_REPLY => Ok(Self::EchoReply {
                ident: p.echo_ident(),
                seq_no: p.echo_seq_no(),
                data: &bytes[HEADER_LEN..],
            }),
            TYPE_NEIGHBOR_SOLICIT => Ok(Self::NeighborSolicit {
                target_addr: p.target_addr(),
                lladdr: lladdr(OPT_SOURCE_LL_ADDR)?,
            }),
            TYPE_NEIGHBOR_ADVERT => Ok(Self::NeighborAdvert {
                flags: p.ndp_flags(),
                target_addr: p.target_addr(),
                lladdr: lladdr(OPT_TARGET_LL_ADDR)?,
            }),
            _ => Err(WireError::Unsupported),
        }
    }

    pub fn buffer_len(&self) -> usize {
        match self {
            Self::EchoRequest { data, .. } | Self::EchoReply { data, .. } => {
                HEADER_LEN + data.len()
            }
            Self::NeighborSolicit { lladdr, .. } | Self::NeighborAdvert { lladdr, .. } => {
                NDP_HEADER_LEN + if lladdr.is_some() { 8 } else { 0 }
            }
        }
    }

    /// Write the message, checksum included, into the start of `buf`;
    /// returns its length.
    pub fn emit(&self, buf: &mut [u8], src: &Ipv6Addr, dst: &Ipv6Addr) -> Result<usize, WireError> {
        let len = self.buffer_len();
        let b = buf.get_mut(..len).ok_or(WireError::Truncated)?;
        b[..HEADER_LEN].fill(0);
        let mut p = Icmpv6Packet::new_unchecked(b);
        match *self {
            Self::EchoRequest {
                ident,
                seq_no,
                data,
            }
            | Self::EchoReply {
                ident,
                seq_no,
                data,
            } => {
                p.set_msg_type(if matches!(self, Self::EchoRequest { .. }) {
                    TYPE_ECHO_REQUEST
                } else {
                    TYPE_ECHO_REPLY
                });
                p.set_echo_ident(ident);
                p.set_echo_seq_no(seq_no);
                p.data_mut().copy_from_slice(data);
            }
            Self::NeighborSolicit {
                target_addr,
                lladdr,
            } => {
                p.set_msg_type(TYPE_NEIGHBOR_SOLICIT);
                emit_ndp(&mut p, target_addr, lladdr, OPT_SOURCE_LL_ADDR);
            }
            Self::NeighborAdvert {
                flags,
                target_addr,
                lladdr,
            } => {
                p.set_msg_type(TYPE_NEIGHBOR_ADVERT);
                p.buffer[NDP_FLAGS] = flags.0 & NdpFlags::MASK;
                emit_ndp(&mut p, target_addr, lladdr, OPT_TARGET_LL_ADDR);
            }
        }
        p.fill_checksum(src, dst);
        Ok(len)
    }

    /// Parse with addresses given as `IpAddr` (`Malformed` unless both are IPv6).
    pub fn parse_ip<T: AsRef<[u8]> + ?Sized>(
        p: &Icmpv6Packet<&'a T>,
        src: &IpAddr,
        dst: &IpAddr,
    ) -> Result<Self, WireError> {
        match (src, dst) {
            (IpAddr::V6(s), IpAddr::V6(d)) => Self::parse(p, s, d),
            _ => Err(WireError::Malformed),
        }
    }
}

fn emit_ndp(
    p: &mut Icmpv6Packet<&mut [u8]>,
    target: Ipv6Addr,
    lladdr: Option<EthernetAddress>,
    opt: u8,
) {
    let b = &mut p.buffer;
    b[NDP_TARGET..NDP_HEADER_LEN].copy_from_slice(&target.octets());
    if let Some(a) = lladdr {
        b[NDP_HEADER_LEN] = opt;
        b[NDP_HEADER_LEN + 1] = 1;
        b[NDP_HEADER_LEN + 2..NDP_HEADER_LEN + 8].copy_from_slice(&a.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs() -> (Ipv6Addr, Ipv6Addr) {
        ("2001:2::1".parse().unwrap(), "2001:2::2".parse().unwrap())
    }

    #[test]
    fn echo_round_trip_and_incremental() {
        let (s, d) = addrs();
        let r = Icmpv6Repr::EchoRequest {
            ident: 7,
            seq_no: 1,
            data: b"sluice!",
        };
        let mut buf = [0u8; 15];
        assert_eq!(r.emit(&mut buf, &s, &d).unwrap(), 15);
        let p = Icmpv6Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(Icmpv6Repr::parse(&p, &s, &d).unwrap(), r);
        assert_eq!(
            Icmpv6Repr::parse_ip(&p, &IpAddr::V6(s), &IpAddr::V6(d)).unwrap(),
            r
        );
        assert_eq!(
            Icmpv6Repr::parse_ip(&p, &IpAddr::V4([1, 2, 3, 4].into()), &IpAddr::V6(d)),
            Err(WireError::Malformed)
        );
        // Swapped addresses verify too (pseudo-header swap is neutral).
        assert!(p.verify_checksum(&d, &s));
        let mut p = Icmpv6Packet::new_checked(&mut buf[..]).unwrap();
        p.set_msg_type_incremental(TYPE_ECHO_REPLY);
        let inc = p.checksum();
        p.fill_checksum(&d, &s);
        assert_eq!(inc, p.checksum());
        assert_eq!(p.ndp_options(), &[] as &[u8]);
    }

    #[test]
    fn ndp_round_trip() {
        let (s, d) = addrs();
        let mac = EthernetAddress([2, 0, 0, 0, 0, 0xa]);
        for r in [
            Icmpv6Repr::NeighborSolicit {
                target_addr: d,
                lladdr: Some(mac),
            },
            Icmpv6Repr::NeighborSolicit {
                target_addr: d,
                lladdr: None,
            },
            Icmpv6Repr::NeighborAdvert {
                flags: NdpFlags::SOLICITED | NdpFlags::OVERRIDE,
                target_addr: s,
                lladdr: Some(mac),
            },
        ] {
            let mut buf = [0u8; 32];
            let n = r.emit(&mut buf, &s, &d).unwrap();
            let p = Icmpv6Packet::new_checked(&buf[..n]).unwrap();
            assert_eq!(Icmpv6Repr::parse(&p, &s, &d).unwrap(), r);
        }
    }

    #[test]
    fn errors() {
        let (s, d) = addrs();
        assert_eq!(
            Icmpv6Packet::new_checked(&[0u8; 7][..]).unwrap_err(),
            WireError::Truncated
        );
        let mut ns = [0u8; 23];
        ns[0] = TYPE_NEIGHBOR_SOLICIT;
        assert_eq!(
            Icmpv6Packet::new_checked(&ns[..]).unwrap_err(),
            WireError::Truncated
        );
        let build = |ty: u8, code: u8, opts: &[u8]| {
            let mut v = [0u8; 48];
            v[0] = ty;
            v[1] = code;
            v[24..24 + opts.len()].copy_from_slice(opts);
            let n = 24 + opts.len();
            let mut p = Icmpv6Packet::new_unchecked(&mut v[..n]);
            p.fill_checksum(&s, &d);
            (v, n)
        };
        let parse = |v: &[u8]| {
            let p = Icmpv6Packet::new_checked(v).unwrap();
            Icmpv6Repr::parse(&p, &s, &d).map(|_| ())
        };
        let (v, n) = build(TYPE_NEIGHBOR_SOLICIT, 1, &[]);
        assert_eq!(parse(&v[..n]), Err(WireError::Malformed));
        let (v, n) = build(TYPE_NEIGHBOR_SOLICIT, 0, &[1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(parse(&v[..n]), Err(WireError::Malformed)); // length 0
        let (v, n) = build(TYPE_NEIGHBOR_SOLICIT, 0, &[1, 2, 0, 0, 0, 0, 0, 0]);
        assert_eq!(parse(&v[..n]), Err(WireError::Truncated)); // 16 > 8
        let (v, n) = build(TYPE_NEIGHBOR_SOLICIT, 0, &[1]);
        assert_eq!(parse(&v[..n]), Err(WireError::Truncated));
        let mut two = [0u8; 16];
        two[0] = 2;
        two[1] = 2;
        let (v, n) = build(TYPE_NEIGHBOR_ADVERT, 0, &two);
        assert_eq!(parse(&v[..n]), Err(WireError::Malformed)); // TLLA of 16 bytes
                                                               // Unknown option skipped (nonce, type 14).
        let (v, n) = build(TYPE_NEIGHBOR_SOLICIT, 0, &[14, 1, 1, 2, 3, 4, 5, 6]);
        assert_eq!(parse(&v[..n]), Ok(()));
        let (v, n) = build(TYPE_ROUTER_ADVERT, 0, &[]);
        assert_eq!(parse(&v[..n]), Err(WireError::Unsupported));
        let (mut v, n) = build(TYPE_ECHO_REQUEST, 0, &[]);
        v[9] ^= 1;
        assert_eq!(parse(&v[..n]), Err(WireError::BadChecksum));
        let r = Icmpv6Repr::EchoReply {
            ident: 0,
            seq_no: 0,
            data: &[1, 2],
        };
        assert_eq!(r.emit(&mut [0u8; 9], &s, &d), Err(WireError::Truncated));
    }
}
