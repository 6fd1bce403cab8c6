//! UDP (RFC 768; zero checksums per RFC 8200 §8.1 over IPv6).
use core::net::IpAddr;

use super::{get_u16, set_u16, IpProtocol};
use crate::checksum;
use crate::WireError;

const SRC_PORT: usize = 0;
const DST_PORT: usize = 2;
const LENGTH: usize = 4;
const CHECKSUM: usize = 6;
/// Length of the UDP header.
pub const HEADER_LEN: usize = 8;

/// A view of a UDP datagram.
#[derive(Debug, Clone)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Check the header and the length field against the buffer (which may
    /// be longer than the datagram).
    ///
    /// Errors: `Truncated` for a buffer shorter than 8 bytes or than the
    /// length field; `Malformed` for a length field below 8.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let len = usize::from(get_u16(b, LENGTH));
        if len < HEADER_LEN {
            return Err(WireError::Malformed);
        }
        if len > b.len() {
            return Err(WireError::Truncated);
        }
        Ok(Self { buffer })
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn src_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), SRC_PORT)
    }

    #[inline]
    pub fn dst_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), DST_PORT)
    }

    /// The length field (header plus payload).
    #[inline]
    pub fn len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), LENGTH)
    }

    /// True for a datagram with no payload.
    #[inline]
    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) <= HEADER_LEN
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), CHECKSUM)
    }

    /// The payload as the length field says.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.len())]
    }

    /// The datagram (header and payload) as the length field says.
    #[inline]
    pub fn datagram(&self) -> &[u8] {
        &self.buffer.as_ref()[..usize::from(self.len())]
    }

    /// Verify the checksum. A zero checksum means "none" over IPv4 and is
    /// invalid over IPv6.
    pub fn verify_checksum(&self, src: &IpAddr, dst: &IpAddr) -> bool {
        if self.checksum() == 0 {
            return src.is_ipv4();
        }
        let ph = checksum::pseudo_header(src, dst, IpProtocol::UDP.0, u32::from(self.len()));
        checksum::is_valid(checksum::add(ph, checksum::sum(self.datagram())))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    pub fn set_src_port(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), SRC_PORT, v);
    }

    pub fn set_dst_port(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), DST_PORT, v);
    }

    pub fn set_len(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), LENGTH, v);
    }

    pub fn set_checksum(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), CHECKSUM, v);
    }

    /// Swap the ports; neutral for the checksum.
    #[inline]
    pub fn swap_ports(&mut self) {
        let (s, d) = (self.src_port(), self.dst_port());
        self.set_src_port(d);
        self.set_dst_port(s);
    }

    /// Compute and store the checksum (a computed zero is sent as 0xffff).
    pub fn fill_checksum(&mut self, src: &IpAddr, dst: &IpAddr) {
        self.set_checksum(0);
        let ph = checksum::pseudo_header(src, dst, IpProtocol::UDP.0, u32::from(self.len()));
        let c = checksum::finish(checksum::add(ph, checksum::sum(self.datagram())));
        self.set_checksum(if c == 0 { 0xffff } else { c });
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

/// A parsed UDP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UdpRepr {
    pub src_port: u16,
    pub dst_port: u16,
    pub payload_len: usize,
}

impl UdpRepr {
    /// Parse a checked datagram; `BadChecksum` when the checksum fails.
    pub fn parse<T: AsRef<[u8]>>(
        p: &UdpPacket<T>,
        src: &IpAddr,
        dst: &IpAddr,
    ) -> Result<Self, WireError> {
        if !p.verify_checksum(src, dst) {
            return Err(WireError::BadChecksum);
        }
        Ok(Self {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
            payload_len: usize::from(p.len()) - HEADER_LEN,
        })
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    /// Write the datagram into the start of `buf`: the header, then
    /// `payload` fills the payload in place, then the checksum. Returns the
    /// datagram length. `Malformed` when it would exceed 65535 bytes.
    pub fn emit(
        &self,
        buf: &mut [u8],
        src: &IpAddr,
        dst: &IpAddr,
        payload: impl FnOnce(&mut [u8]),
    ) -> Result<usize, WireError> {
        let len = u16::try_from(self.buffer_len()).map_err(|_| WireError::Malformed)?;
        let b = buf
            .get_mut(..usize::from(len))
            .ok_or(WireError::Truncated)?;
        let mut p = UdpPacket::new_unchecked(b);
        p.set_src_port(self.src_port);
        p.set_dst_port(self.dst_port);
        p.set_len(len);
        payload(p.payload_mut());
        p.fill_checksum(src, dst);
        Ok(usize::from(len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::{Ipv4Addr, Ipv6Addr};

    fn v4() -> (IpAddr, IpAddr) {
        (
            IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)),
            IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2)),
        )
    }

    fn v6() -> (IpAddr, IpAddr) {
        (
            IpAddr::V6("2001:2::1".parse::<Ipv6Addr>().unwrap()),
            IpAddr::V6("2001:2::2".parse::<Ipv6Addr>().unwrap()),
        )
    }

    #[test]
    fn emit_parse_round_trip() {
        for (s, d) in [v4(), v6()] {
            let repr = UdpRepr {
                src_port: 40000,
                dst_port: 7,
                payload_len: 5,
            };
            let mut buf = [0u8; 16];
            let n = repr
                .emit(&mut buf, &s, &d, |p| p.copy_from_slice(b"hello"))
                .unwrap();
            assert_eq!(n, 13);
            let p = UdpPacket::new_checked(&buf[..]).unwrap();
            assert_eq!(p.payload(), b"hello");
            assert!(p.verify_checksum(&s, &d));
            assert_eq!(UdpRepr::parse(&p, &s, &d).unwrap(), repr);
            // Swapping addresses or ports is checksum-neutral.
            assert!(p.verify_checksum(&d, &s));
        }
    }

    #[test]
    fn zero_checksum() {
        let (s, d) = v4();
        let mut buf = [0u8; 8];
        let mut p = UdpPacket::new_unchecked(&mut buf[..]);
        p.set_len(8);
        assert!(p.verify_checksum(&s, &d));
        let (s6, d6) = v6();
        assert!(!p.verify_checksum(&s6, &d6));
        assert_eq!(UdpRepr::parse(&p, &s6, &d6), Err(WireError::BadChecksum));
        assert!(p.is_empty());
    }

    #[test]
    fn computed_zero_is_sent_as_ffff() {
        // Find ports for which the computed checksum is 0: sum must be 0xffff.
        let (s, d) = v4();
        let mut buf = [0u8; 8];
        let mut p = UdpPacket::new_unchecked(&mut buf[..]);
        p.set_len(8);
        p.set_src_port(0);
        p.fill_checksum(&s, &d);
        let need = p.checksum(); // with src port 0, its ones'-complement fills the gap
        p.set_src_port(need);
        p.fill_checksum(&s, &d);
        assert_eq!(p.checksum(), 0xffff);
        assert!(p.verify_checksum(&s, &d));
    }

    #[test]
    fn errors() {
        let buf = [0u8, 1, 0, 2, 0, 12, 0, 0, 1, 2];
        assert_eq!(
            UdpPacket::new_checked(&buf[..7]).unwrap_err(),
            WireError::Truncated
        );
        assert_eq!(
            UdpPacket::new_checked(&buf[..]).unwrap_err(),
            WireError::Truncated
        );
        let bad = [0u8, 1, 0, 2, 0, 7, 0, 0];
        assert_eq!(
            UdpPacket::new_checked(&bad[..]).unwrap_err(),
            WireError::Malformed
        );
        let repr = UdpRepr {
            src_port: 1,
            dst_port: 2,
            payload_len: 65_530,
        };
        let (s, d) = v4();
        assert_eq!(
            repr.emit(&mut [0u8; 8], &s, &d, |_| ()),
            Err(WireError::Malformed)
        );
        let small = UdpRepr {
            payload_len: 4,
            ..repr
        };
        assert_eq!(
            small.emit(&mut [0u8; 11], &s, &d, |_| ()),
            Err(WireError::Truncated)
        );
    }
}
