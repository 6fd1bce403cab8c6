//! TCP segments (RFC 9293), all flags (including CWR/ECE and AccECN's AE).
use core::net::IpAddr;
use core::ops::{BitAnd, BitOr, BitOrAssign};

use super::tcp_option::{TcpOptions, TcpOptionsIter, MAX_OPTIONS_LEN};
use super::{get_u16, get_u32, set_u16, set_u32, IpProtocol, SeqNumber};
use crate::checksum;
use crate::WireError;

const SRC_PORT: usize = 0;
const DST_PORT: usize = 2;
const SEQ: usize = 4;
const ACK: usize = 8;
const OFF_FLAGS: usize = 12;
const WINDOW: usize = 14;
const CHECKSUM: usize = 16;
const URGENT: usize = 18;
/// Length of a TCP header without options.
pub const HEADER_LEN: usize = 20;

/// The 12 flag bits after the data offset (the 3 reserved bits included so
/// a segment re-emits unchanged).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u16);

impl TcpFlags {
    pub const FIN: Self = Self(0x001);
    pub const SYN: Self = Self(0x002);
    pub const RST: Self = Self(0x004);
    pub const PSH: Self = Self(0x008);
    pub const ACK: Self = Self(0x010);
    pub const URG: Self = Self(0x020);
    pub const ECE: Self = Self(0x040);
    pub const CWR: Self = Self(0x080);
    /// AccECN (RFC 9768), formerly NS.
    pub const AE: Self = Self(0x100);
    pub const NONE: Self = Self(0);
    const MASK: u16 = 0x0fff;

    #[inline]
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    pub const fn fin(self) -> bool {
        self.contains(Self::FIN)
    }
    pub const fn syn(self) -> bool {
        self.contains(Self::SYN)
    }
    pub const fn rst(self) -> bool {
        self.contains(Self::RST)
    }
    pub const fn psh(self) -> bool {
        self.contains(Self::PSH)
    }
    pub const fn ack(self) -> bool {
        self.contains(Self::ACK)
    }
    pub const fn urg(self) -> bool {
        self.contains(Self::URG)
    }
    pub const fn ece(self) -> bool {
        self.contains(Self::ECE)
    }
    pub const fn cwr(self) -> bool {
        self.contains(Self::CWR)
    }
    pub const fn ae(self) -> bool {
        self.contains(Self::AE)
    }
}

impl BitOr for TcpFlags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl BitOrAssign for TcpFlags {
    fn bitor_assign(&mut self, rhs: Self) {
        self.0 |= rhs.0;
    }
}

impl BitAnd for TcpFlags {
    type Output = Self;
    fn bitand(self, rhs: Self) -> Self {
        Self(self.0 & rhs.0)
    }
}

impl core::fmt::Debug for TcpFlags {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        const NAMES: [(TcpFlags, &str); 9] = [
            (TcpFlags::FIN, "F"),
            (TcpFlags::SYN, "S"),
            (TcpFlags::RST, "R"),
            (TcpFlags::PSH, "P"),
            (TcpFlags::ACK, "."),
            (TcpFlags::URG, "U"),
            (TcpFlags::ECE, "E"),
            (TcpFlags::CWR, "W"),
            (TcpFlags::AE, "A"),
        ];
        f.write_str("TcpFlags(")?;
        for (flag, name) in NAMES {
            if self.contains(flag) {
                f.write_str(name)?;
            }
        }
        write!(f, " {:#05x})", self.0)
    }
}

/// A view of a TCP segment. The buffer is the whole segment (an IP payload).
#[derive(Debug, Clone)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Errors: `Truncated` for a buffer shorter than 20 bytes or than the
    /// data offset; `Malformed` for a data offset below 5.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let p = Self { buffer };
        if p.header_len() < HEADER_LEN {
            return Err(WireError::Malformed);
        }
        if p.header_len() > p.buffer.as_ref().len() {
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
    pub fn src_port(&self) -> u16 {
        get_u16(self.b(), SRC_PORT)
    }

    #[inline]
    pub fn dst_port(&self) -> u16 {
        get_u16(self.b(), DST_PORT)
    }

    #[inline]
    pub fn seq_number(&self) -> SeqNumber {
        SeqNumber(get_u32(self.b(), SEQ))
    }

    #[inline]
    pub fn ack_number(&self) -> SeqNumber {
        SeqNumber(get_u32(self.b(), ACK))
    }

    /// Header length in bytes (data offset × 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.b()[OFF_FLAGS] >> 4) * 4
    }

    #[inline]
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(get_u16(self.b(), OFF_FLAGS) & TcpFlags::MASK)
    }

    #[inline]
    pub fn fin(&self) -> bool {
        self.flags().fin()
    }
    #[inline]
    pub fn syn(&self) -> bool {
        self.flags().syn()
    }
    #[inline]
    pub fn rst(&self) -> bool {
        self.flags().rst()
    }
    #[inline]
    pub fn psh(&self) -> bool {
        self.flags().psh()
    }
    #[inline]
    pub fn ack(&self) -> bool {
        self.flags().ack()
    }
    #[inline]
    pub fn urg(&self) -> bool {
        self.flags().urg()
    }
    #[inline]
    pub fn ece(&self) -> bool {
        self.flags().ece()
    }
    #[inline]
    pub fn cwr(&self) -> bool {
        self.flags().cwr()
    }

    #[inline]
    pub fn window_len(&self) -> u16 {
        get_u16(self.b(), WINDOW)
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        get_u16(self.b(), CHECKSUM)
    }

    #[inline]
    pub fn urgent_at(&self) -> u16 {
        get_u16(self.b(), URGENT)
    }

    /// The raw options area.
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.b()[HEADER_LEN..self.header_len()]
    }

    /// Iterate over the options.
    pub fn options_iter(&self) -> TcpOptionsIter<'_> {
        TcpOptionsIter::new(self.options())
    }

    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.b()[self.header_len()..]
    }

    /// Sequence space the segment occupies: payload plus one for SYN and FIN.
    pub fn segment_len(&self) -> usize {
        self.payload().len() + usize::from(self.syn()) + usize::from(self.fin())
    }

    /// Verify the checksum over the whole buffer with the pseudo-header.
    pub fn verify_checksum(&self, src: &IpAddr, dst: &IpAddr) -> bool {
        let len = self.b().len() as u32;
        let ph = checksum::pseudo_header(src, dst, IpProtocol::TCP.0, len);
        checksum::is_valid(checksum::add(ph, checksum::sum(self.b())))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    #[inline]
    fn bm(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }

    pub fn set_src_port(&mut self, v: u16) {
        set_u16(self.bm(), SRC_PORT, v);
    }

    pub fn set_dst_port(&mut self, v: u16) {
        set_u16(self.bm(), DST_PORT, v);
    }

    pub fn set_seq_number(&mut self, v: SeqNumber) {
        set_u32(self.bm(), SEQ, v.0);
    }

    pub fn set_ack_number(&mut self, v: SeqNumber) {
        set_u32(self.bm(), ACK, v.0);
    }

    /// Set the header length (a multiple of 4, 20..=60) and the flags.
    pub fn set_header_len_flags(&mut self, header_len: usize, flags: TcpFlags) {
        let v = ((header_len / 4) as u16 & 0xf) << 12 | (flags.0 & TcpFlags::MASK);
        set_u16(self.bm(), OFF_FLAGS, v);
    }

    pub fn set_flags(&mut self, flags: TcpFlags) {
        let hl = self.header_len();
        self.set_header_len_flags(hl, flags);
    }

    pub fn set_window_len(&mut self, v: u16) {
        set_u16(self.bm(), WINDOW, v);
    }

    pub fn set_checksum(&mut self, v: u16) {
        set_u16(self.bm(), CHECKSUM, v);
    }

    pub fn set_urgent_at(&mut self, v: u16) {
        set_u16(self.bm(), URGENT, v);
    }

    /// Swap the ports; neutral for the checksum.
    pub fn swap_ports(&mut self) {
        let (s, d) = (self.src_port(), self.dst_port());
        self.set_src_port(d);
        self.set_dst_port(s);
    }

    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        &mut self.bm()[HEADER_LEN..end]
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        &mut self.bm()[start..]
    }

    /// Compute and store the checksum over the whole buffer.
    pub fn fill_checksum(&mut self, src: &IpAddr, dst: &IpAddr) {
        self.set_checksum(0);
        let len = self.b().len() as u32;
        let ph = checksum::pseudo_header(src, dst, IpProtocol::TCP.0, len);
        let c = checksum::finish(checksum::add(ph, checksum::sum(self.b())));
        self.set_checksum(c);
    }
}

/// A parsed TCP header. `ack_number` is kept as sent even without ACK.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TcpRepr {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq_number: SeqNumber,
    pub ack_number: SeqNumber,
    pub flags: TcpFlags,
    pub window_len: u16,
    pub urgent_pointer: u16,
    pub options: TcpOptions,
    pub payload_len: usize,
}

impl TcpRepr {
    /// Parse a checked segment: `BadChecksum` when the checksum fails,
    /// `Malformed` for malformed options.
    pub fn parse<T: AsRef<[u8]>>(
        p: &TcpPacket<T>,
        src: &IpAddr,
        dst: &IpAddr,
    ) -> Result<Self, WireError> {
        if !p.verify_checksum(src, dst) {
            return Err(WireError::BadChecksum);
        }
        Ok(Self {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
            seq_number: p.seq_number(),
            ack_number: p.ack_number(),
            flags: p.flags(),
            window_len: p.window_len(),
            urgent_pointer: p.urgent_at(),
            options: TcpOptions::parse(p.options())?,
            payload_len: p.payload().len(),
        })
    }

    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.options.buffer_len()
    }

    pub fn buffer_len(&self) -> usize {
        self.header_len() + self.payload_len
    }

    /// Sequence space: payload plus one each for SYN and FIN.
    pub fn segment_len(&self) -> usize {
        self.payload_len + usize::from(self.flags.syn()) + usize::from(self.flags.fin())
    }

    /// Write the segment into the start of `buf`: header and options, then
    /// `payload` fills the payload in place, then the checksum. Returns the
    /// segment length. `Malformed` when the options exceed 40 bytes.
    pub fn emit(
        &self,
        buf: &mut [u8],
        src: &IpAddr,
        dst: &IpAddr,
        payload: impl FnOnce(&mut [u8]),
    ) -> Result<usize, WireError> {
        if self.options.buffer_len() > MAX_OPTIONS_LEN {
            return Err(WireError::Malformed);
        }
        let hlen = self.header_len();
        let len = self.buffer_len();
        let b = buf.get_mut(..len).ok_or(WireError::Truncated)?;
        let mut p = TcpPacket::new_unchecked(b);
        p.set_src_port(self.src_port);
        p.set_dst_port(self.dst_port);
        p.set_seq_number(self.seq_number);
        p.set_ack_number(self.ack_number);
        p.set_header_len_flags(hlen, self.flags);
        p.set_window_len(self.window_len);
        p.set_urgent_at(self.urgent_pointer);
        self.options.emit(p.options_mut())?;
        payload(p.payload_mut());
        p.fill_checksum(src, dst);
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tcp_option::{SackBlocks, TcpTimestamp};
    use core::net::Ipv4Addr;

    fn addrs() -> (IpAddr, IpAddr) {
        (
            IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)),
            IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2)),
        )
    }

    fn repr() -> TcpRepr {
        TcpRepr {
            src_port: 40002,
            dst_port: 8080,
            seq_number: SeqNumber(1),
            ack_number: SeqNumber(2),
            flags: TcpFlags::PSH | TcpFlags::ACK,
            window_len: 63,
            urgent_pointer: 0,
            options: TcpOptions {
                timestamp: Some(TcpTimestamp { tsval: 7, tsecr: 8 }),
                sack_blocks: SackBlocks::new(&[(SeqNumber(100), SeqNumber(200))]).unwrap(),
                ..Default::default()
            },
            payload_len: 3,
        }
    }

    #[test]
    fn round_trip_and_accessors() {
        let (s, d) = addrs();
        let mut buf = [0u8; 64];
        let n = repr()
            .emit(&mut buf, &s, &d, |p| p.copy_from_slice(b"abc"))
            .unwrap();
        assert_eq!(n, 20 + 24 + 3);
        let p = TcpPacket::new_checked(&buf[..n]).unwrap();
        assert_eq!(p.header_len(), 44);
        assert!(p.psh() && p.ack() && !p.syn() && !p.fin() && !p.rst());
        assert!(!p.urg() && !p.ece() && !p.cwr());
        assert_eq!(p.payload(), b"abc");
        assert_eq!(p.segment_len(), 3);
        assert!(p.verify_checksum(&s, &d));
        assert_eq!(TcpRepr::parse(&p, &s, &d).unwrap(), repr());
        assert_eq!(p.options_iter().count(), 6); // NOP NOP TS NOP NOP SACK
                                                 // Wrong pseudo-header.
        let other = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 3));
        assert_eq!(TcpRepr::parse(&p, &s, &other), Err(WireError::BadChecksum));
    }

    #[test]
    fn flags_all_bits() {
        let (s, d) = addrs();
        let mut r = repr();
        r.flags = TcpFlags(0x0fff);
        r.payload_len = 0;
        let mut buf = [0u8; 64];
        let n = r.emit(&mut buf, &s, &d, |_| ()).unwrap();
        let p = TcpPacket::new_checked(&buf[..n]).unwrap();
        assert_eq!(p.flags(), TcpFlags(0x0fff));
        assert!(p.flags().ae());
        assert_eq!(p.segment_len(), 2);
        assert_eq!(r.segment_len(), 2);
        assert_eq!(
            format!("{:?}", TcpFlags::SYN | TcpFlags::ACK),
            "TcpFlags(S. 0x012)"
        );
    }

    #[test]
    fn errors() {
        let (s, d) = addrs();
        let mut buf = [0u8; 64];
        let n = repr().emit(&mut buf, &s, &d, |_| ()).unwrap();
        assert_eq!(
            TcpPacket::new_checked(&buf[..19]).unwrap_err(),
            WireError::Truncated
        );
        assert_eq!(
            TcpPacket::new_checked(&buf[..43]).unwrap_err(),
            WireError::Truncated
        );
        let mut v = buf;
        v[12] = 0x40;
        assert_eq!(
            TcpPacket::new_checked(&v[..n]).unwrap_err(),
            WireError::Malformed
        );
        // A malformed option with a correct checksum is Malformed.
        let mut v = buf;
        let mut p = TcpPacket::new_checked(&mut v[..n]).unwrap();
        p.options_mut()[0] = 2; // MSS kind where a NOP was: length byte 1
        p.fill_checksum(&s, &d);
        assert_eq!(TcpRepr::parse(&p, &s, &d), Err(WireError::Malformed));
        let mut big = repr();
        big.options.mss = Some(1460);
        big.options.sack_blocks = SackBlocks::new(&[(SeqNumber(1), SeqNumber(2)); 3]).unwrap();
        assert_eq!(
            big.emit(&mut buf, &s, &d, |_| ()),
            Err(WireError::Malformed)
        );
        assert_eq!(
            repr().emit(&mut buf[..46], &s, &d, |_| ()),
            Err(WireError::Truncated)
        );
    }

    #[test]
    fn setters() {
        let (s, d) = addrs();
        let mut buf = [0u8; 64];
        let n = repr().emit(&mut buf, &s, &d, |_| ()).unwrap();
        let mut p = TcpPacket::new_checked(&mut buf[..n]).unwrap();
        p.swap_ports();
        assert!(p.verify_checksum(&d, &s));
        p.set_flags(TcpFlags::RST);
        p.set_seq_number(SeqNumber(9));
        p.set_ack_number(SeqNumber(10));
        p.set_window_len(11);
        p.set_urgent_at(12);
        p.payload_mut()[0] = b'z';
        assert_eq!(p.header_len(), 44);
        assert!(p.rst() && !p.ack());
        assert_eq!((p.src_port(), p.dst_port()), (8080, 40002));
        assert_eq!(
            (p.seq_number(), p.ack_number()),
            (SeqNumber(9), SeqNumber(10))
        );
        assert_eq!((p.window_len(), p.urgent_at()), (11, 12));
        assert_eq!(p.payload()[0], b'z');
    }
}
