//! ICMPv4 (RFC 792): echo request/reply and destination unreachable with
//! the embedded header of the datagram that caused it.
use super::ipv4::{Ipv4Packet, Ipv4Repr};
use super::{get_u16, set_u16};
use crate::checksum;
use crate::WireError;

const TYPE: usize = 0;
const CODE: usize = 1;
const CHECKSUM: usize = 2;
const IDENT: usize = 4;
const SEQ_NO: usize = 6;
/// Bytes before the message body (type, code, checksum, 4 bytes of "rest").
pub const HEADER_LEN: usize = 8;

pub const TYPE_ECHO_REPLY: u8 = 0;
pub const TYPE_DST_UNREACHABLE: u8 = 3;
pub const TYPE_ECHO_REQUEST: u8 = 8;
pub const TYPE_TIME_EXCEEDED: u8 = 11;

/// Destination-unreachable codes (RFC 792, RFC 1812).
pub mod unreachable {
    pub const NET: u8 = 0;
    pub const HOST: u8 = 1;
    pub const PROTOCOL: u8 = 2;
    pub const PORT: u8 = 3;
    pub const FRAG_NEEDED: u8 = 4;
    pub const ADMIN_PROHIBITED: u8 = 13;
}

/// A view of an ICMPv4 message. The buffer is the whole message (IP payload).
#[derive(Debug, Clone)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// `Truncated` for fewer than 8 bytes.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        if buffer.as_ref().len() < HEADER_LEN {
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

    /// Echo identifier (bytes 4..6).
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        get_u16(self.buffer.as_ref(), IDENT)
    }

    /// Echo sequence number (bytes 6..8).
    #[inline]
    pub fn echo_seq_no(&self) -> u16 {
        get_u16(self.buffer.as_ref(), SEQ_NO)
    }

    /// Bytes 4..6 of a destination unreachable (unused; RFC 4884 length).
    #[inline]
    pub fn unused(&self) -> u16 {
        get_u16(self.buffer.as_ref(), IDENT)
    }

    /// Next-hop MTU of a "fragmentation needed" message (RFC 1191).
    #[inline]
    pub fn next_hop_mtu(&self) -> u16 {
        get_u16(self.buffer.as_ref(), SEQ_NO)
    }

    /// The message body after the 8-byte header (echo data, or the embedded
    /// datagram of an error).
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    pub fn verify_checksum(&self) -> bool {
        checksum::is_valid(checksum::sum(self.buffer.as_ref()))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
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

    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.buffer.as_ref());
        self.set_checksum(c);
    }

    /// Change the type and update the checksum incrementally (RFC 1624).
    #[inline]
    pub fn set_msg_type_incremental(&mut self, ty: u8) {
        let b = self.buffer.as_mut();
        let old = get_u16(b, TYPE);
        let new = u16::from(ty) << 8 | (old & 0x00ff);
        b[TYPE] = ty;
        let mut c = checksum::update_u16(get_u16(b, CHECKSUM), old, new);
        // An all-zero message needs 0xffff, which eqn. 3 cannot produce.
        if c == 0
            && b[..CHECKSUM]
                .iter()
                .chain(&b[CHECKSUM + 2..])
                .all(|&x| x == 0)
        {
            c = 0xffff;
        }
        set_u16(b, CHECKSUM, c);
    }
}

/// A parsed ICMPv4 message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Icmpv4Repr<'a> {
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
    /// Destination unreachable. `header` is the embedded IPv4 header (its
    /// payload length is the original one, larger than what is embedded);
    /// `data` holds the embedded bytes after that header.
    DstUnreachable {
        code: u8,
        unused: u16,
        next_hop_mtu: u16,
        header: Ipv4Repr,
        data: &'a [u8],
    },
}

impl<'a> Icmpv4Repr<'a> {
    /// Parse a checked message.
    ///
    /// Errors: `BadChecksum`; `Malformed` for an echo with a non-zero code;
    /// for an unreachable, whatever the embedded header check returns
    /// (`Truncated`, `Malformed`, `BadChecksum`); `Unsupported` for other types.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(p: &Icmpv4Packet<&'a T>) -> Result<Self, WireError> {
        if !p.verify_checksum() {
            return Err(WireError::BadChecksum);
        }
        let buf: &'a T = p.buffer;
        let data = &buf.as_ref()[HEADER_LEN..];
        match (p.msg_type(), p.msg_code()) {
            (TYPE_ECHO_REQUEST, 0) => Ok(Self::EchoRequest {
                ident: p.echo_ident(),
                seq_no: p.echo_seq_no(),
                data,
            }),
            (TYPE_ECHO_REPLY, 0) => Ok(Self::EchoReply {
                ident: p.echo_ident(),
                seq_no: p.echo_seq_no(),
                data,
            }),
            (TYPE_ECHO_REQUEST | TYPE_ECHO_REPLY, _) => Err(WireError::Malformed),
            (TYPE_DST_UNREACHABLE, code) => {
                let (header, hlen) = parse_embedded(data)?;
                Ok(Self::DstUnreachable {
                    code,
                    unused: p.unused(),
                    next_hop_mtu: p.next_hop_mtu(),
                    header,
                    data: &data[hlen..],
                })
            }
            _ => Err(WireError::Unsupported),
        }
    }

    pub fn buffer_len(&self) -> usize {
        match self {
            Self::EchoRequest { data, .. } | Self::EchoReply { data, .. } => {
                HEADER_LEN + data.len()
            }
            Self::DstUnreachable { header, data, .. } => {
                HEADER_LEN + header.buffer_len() + data.len()
            }
        }
    }

    /// Write the message, checksum included, into the start of `buf`;
    /// returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let len = self.buffer_len();
        let b = buf.get_mut(..len).ok_or(WireError::Truncated)?;
        let mut p = Icmpv4Packet::new_unchecked(b);
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
                let ty = if matches!(self, Self::EchoRequest { .. }) {
                    TYPE_ECHO_REQUEST
                } else {
                    TYPE_ECHO_REPLY
                };
                p.set_msg_type(ty);
                p.set_msg_code(0);
                p.set_echo_ident(ident);
                p.set_echo_seq_no(seq_no);
                p.data_mut().copy_from_slice(data);
            }
            Self::DstUnreachable {
                code,
                unused,
                next_hop_mtu,
                ref header,
                data,
            } => {
                p.set_msg_type(TYPE_DST_UNREACHABLE);
                p.set_msg_code(code);
                p.set_echo_ident(unused);
                p.set_echo_seq_no(next_hop_mtu);
                let body = p.data_mut();
                let hlen = header.emit(body)?;
                body[hlen..].copy_from_slice(data);
            }
        }
        p.fill_checksum();
        Ok(len)
    }
}

/// Parse the IPv4 header embedded in an ICMP error: the header must be
/// complete and valid, but its total length may exceed what is embedded.
fn parse_embedded(data: &[u8]) -> Result<(Ipv4Repr, usize), WireError> {
    if data.len() < super::ipv4::HEADER_LEN {
        return Err(WireError::Truncated);
    }
    let hdr = Ipv4Packet::new_unchecked(data);
    let hlen = hdr.header_len();
    if hdr.version() != 4 || hlen < super::ipv4::HEADER_LEN {
        return Err(WireError::Malformed);
    }
    if hlen > data.len() {
        return Err(WireError::Truncated);
    }
    if usize::from(hdr.total_len()) < hlen {
        return Err(WireError::Malformed);
    }
    // Checked above: the header fits, so header() cannot panic.
    let hp = Ipv4Packet::new_unchecked(&data[..hlen]);
    if !checksum::is_valid(checksum::sum(hp.header())) {
        return Err(WireError::BadChecksum);
    }
    // parse_header reads only header fields, all within `hlen`.
    Ok((Ipv4Repr::parse_header(&hp)?, hlen))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::IpProtocol;
    use core::net::Ipv4Addr;

    #[test]
    fn echo_round_trip_and_incremental() {
        let r = Icmpv4Repr::EchoRequest {
            ident: 14367,
            seq_no: 1,
            data: b"sluice",
        };
        let mut buf = [0u8; 14];
        assert_eq!(r.emit(&mut buf).unwrap(), 14);
        let p = Icmpv4Packet::new_checked(&buf[..]).unwrap();
        assert!(p.verify_checksum());
        assert_eq!(Icmpv4Repr::parse(&p).unwrap(), r);
        let mut p = Icmpv4Packet::new_checked(&mut buf[..]).unwrap();
        p.set_msg_type_incremental(TYPE_ECHO_REPLY);
        assert!(p.verify_checksum());
        let inc = p.checksum();
        p.fill_checksum();
        assert_eq!(inc, p.checksum());
        let p = Icmpv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(
            Icmpv4Repr::parse(&p).unwrap(),
            Icmpv4Repr::EchoReply {
                ident: 14367,
                seq_no: 1,
                data: b"sluice"
            }
        );
    }

    #[test]
    fn errors() {
        assert_eq!(
            Icmpv4Packet::new_checked(&[0u8; 7][..]).unwrap_err(),
            WireError::Truncated
        );
        let r = Icmpv4Repr::EchoRequest {
            ident: 1,
            seq_no: 2,
            data: &[],
        };
        let mut buf = [0u8; 8];
        r.emit(&mut buf).unwrap();
        let mut bad = buf;
        bad[7] ^= 1;
        let p = Icmpv4Packet::new_checked(&bad[..]).unwrap();
        assert_eq!(Icmpv4Repr::parse(&p), Err(WireError::BadChecksum));
        let mut code = buf;
        let mut p = Icmpv4Packet::new_checked(&mut code[..]).unwrap();
        p.set_msg_code(1);
        p.fill_checksum();
        let p = Icmpv4Packet::new_checked(&code[..]).unwrap();
        assert_eq!(Icmpv4Repr::parse(&p), Err(WireError::Malformed));
        let mut other = buf;
        let mut p = Icmpv4Packet::new_checked(&mut other[..]).unwrap();
        p.set_msg_type(TYPE_TIME_EXCEEDED);
        p.fill_checksum();
        let p = Icmpv4Packet::new_checked(&other[..]).unwrap();
        assert_eq!(Icmpv4Repr::parse(&p), Err(WireError::Unsupported));
        assert_eq!(r.emit(&mut buf[..7]), Err(WireError::Truncated));
    }

    #[test]
    fn unreachable_embedded_errors() {
        let header = Ipv4Repr {
            src_addr: Ipv4Addr::new(198, 18, 0, 1),
            dst_addr: Ipv4Addr::new(198, 18, 0, 2),
            next_header: IpProtocol::UDP,
            payload_len: 100,
            hop_limit: 64,
            dscp: 0,
            ecn: 0,
            ident: 1,
            dont_frag: true,
            options: Default::default(),
        };
        let r = Icmpv4Repr::DstUnreachable {
            code: unreachable::FRAG_NEEDED,
            unused: 0,
            next_hop_mtu: 1400,
            header,
            data: &[0x9c, 0x44, 0, 9, 0, 108, 0, 0],
        };
        let mut buf = [0u8; 36];
        assert_eq!(r.emit(&mut buf).unwrap(), 36);
        let p = Icmpv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.next_hop_mtu(), 1400);
        assert_eq!(Icmpv4Repr::parse(&p).unwrap(), r);
        let reparse = |mutate: &dyn Fn(&mut [u8])| {
            let mut v = buf;
            mutate(&mut v);
            let mut p = Icmpv4Packet::new_checked(&mut v[..]).unwrap();
            p.fill_checksum();
            let p = Icmpv4Packet::new_checked(&v[..]).unwrap();
            Icmpv4Repr::parse(&p).map(|_| ())
        };
        assert_eq!(reparse(&|b| b[8] = 0x65), Err(WireError::Malformed));
        assert_eq!(reparse(&|b| b[8] = 0x44), Err(WireError::Malformed));
        assert_eq!(reparse(&|b| b[8] = 0x4f), Err(WireError::Truncated));
        assert_eq!(reparse(&|b| b[11] = 10), Err(WireError::Malformed));
        assert_eq!(reparse(&|b| b[20] ^= 1), Err(WireError::BadChecksum));
        let short = Icmpv4Packet::new_checked(&buf[..27]).unwrap();
        // Checksum fails first on a cut message; build a valid short one.
        assert!(Icmpv4Repr::parse(&short).is_err());
        let mut cut = [0u8; 27];
        cut.copy_from_slice(&buf[..27]);
        let mut p = Icmpv4Packet::new_checked(&mut cut[..]).unwrap();
        p.fill_checksum();
        let p = Icmpv4Packet::new_checked(&cut[..]).unwrap();
        assert_eq!(Icmpv4Repr::parse(&p), Err(WireError::Truncated));
    }
}
