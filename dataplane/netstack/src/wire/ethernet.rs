//! Ethernet II frames with up to two VLAN tags (802.1Q C-tag, 802.1ad S-tag).
//!
//! The frame check sequence is not part of the buffer (NICs and AF_XDP strip
//! it). A buffer may carry padding after the network-layer packet; the
//! network layer's own length field says where it ends.
use core::fmt;

use super::{get_array, get_u16, set_u16};
use crate::WireError;

/// A 48-bit MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct EthernetAddress(pub [u8; 6]);

impl EthernetAddress {
    pub const BROADCAST: Self = Self([0xff; 6]);

    pub const fn is_broadcast(&self) -> bool {
        matches!(self.0, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff])
    }

    /// Group bit set (multicast or broadcast).
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    pub const fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }

    pub const fn is_locally_administered(&self) -> bool {
        self.0[0] & 0x02 != 0
    }

    pub const fn octets(&self) -> [u8; 6] {
        self.0
    }
}

impl fmt::Debug for EthernetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for EthernetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// An EtherType (or, below 0x0600, an 802.3 length).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EtherType(pub u16);

impl EtherType {
    pub const IPV4: Self = Self(0x0800);
    pub const ARP: Self = Self(0x0806);
    pub const IPV6: Self = Self(0x86dd);
    /// 802.1Q customer tag.
    pub const VLAN: Self = Self(0x8100);
    /// 802.1ad service tag.
    pub const QINQ: Self = Self(0x88a8);
    /// Pre-standard S-tag TPID some switches still send.
    pub const QINQ_LEGACY: Self = Self(0x9100);

    /// True for the TPIDs that introduce a VLAN tag.
    pub const fn is_vlan_tpid(self) -> bool {
        matches!(self.0, 0x8100 | 0x88a8 | 0x9100)
    }
}

/// One VLAN tag: its TPID and the tag control information.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VlanTag {
    pub tpid: EtherType,
    pub tci: u16,
}

impl VlanTag {
    /// An 802.1Q C-tag.
    pub const fn c_tag(vid: u16, pcp: u8) -> Self {
        Self {
            tpid: EtherType::VLAN,
            tci: ((pcp as u16 & 0x7) << 13) | (vid & 0x0fff),
        }
    }

    /// An 802.1ad S-tag.
    pub const fn s_tag(vid: u16, pcp: u8) -> Self {
        Self {
            tpid: EtherType::QINQ,
            tci: ((pcp as u16 & 0x7) << 13) | (vid & 0x0fff),
        }
    }

    /// VLAN identifier (12 bits).
    pub const fn vid(&self) -> u16 {
        self.tci & 0x0fff
    }

    /// Priority code point (3 bits).
    pub const fn pcp(&self) -> u8 {
        (self.tci >> 13) as u8
    }

    /// Drop eligible indicator.
    pub const fn dei(&self) -> bool {
        self.tci & 0x1000 != 0
    }
}

/// The VLAN tags of a frame, outermost first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum VlanStack {
    #[default]
    Untagged,
    One(VlanTag),
    Two {
        outer: VlanTag,
        inner: VlanTag,
    },
}

impl VlanStack {
    pub const fn len(&self) -> usize {
        match self {
            Self::Untagged => 0,
            Self::One(_) => 1,
            Self::Two { .. } => 2,
        }
    }

    pub const fn is_empty(&self) -> bool {
        matches!(self, Self::Untagged)
    }

    /// Tag `i`, outermost first.
    pub const fn get(&self, i: usize) -> Option<VlanTag> {
        match (self, i) {
            (Self::One(t), 0) | (Self::Two { outer: t, .. }, 0) => Some(*t),
            (Self::Two { inner: t, .. }, 1) => Some(*t),
            _ => None,
        }
    }
}

const DST: usize = 0;
const SRC: usize = 6;
const TYPE: usize = 12;
/// Length of an untagged Ethernet II header.
pub const HEADER_LEN: usize = 14;
/// Length of one VLAN tag.
pub const TAG_LEN: usize = 4;
/// Most VLAN tags this layer accepts.
pub const MAX_TAGS: usize = 2;

/// A view of an Ethernet II frame.
#[derive(Debug, Clone)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wrap a buffer without checks; accessors may panic on a short buffer.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wrap a buffer and check that the header, with its tags, fits.
    ///
    /// Errors: `Truncated` when the header or a tag runs past the buffer,
    /// `Unsupported` for more than [`MAX_TAGS`] tags.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        let mut off = TYPE;
        let mut tags = 0;
        loop {
            if b.len() < off + 2 {
                return Err(WireError::Truncated);
            }
            if !EtherType(get_u16(b, off)).is_vlan_tpid() {
                break;
            }
            if tags == MAX_TAGS {
                return Err(WireError::Unsupported);
            }
            tags += 1;
            off += TAG_LEN;
        }
        Ok(Self { buffer })
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Number of VLAN tags (0..=2).
    #[inline]
    pub fn tag_count(&self) -> usize {
        let b = self.buffer.as_ref();
        if !EtherType(get_u16(b, TYPE)).is_vlan_tpid() {
            0
        } else if !EtherType(get_u16(b, TYPE + TAG_LEN)).is_vlan_tpid() {
            1
        } else {
            2
        }
    }

    /// Length of the header including tags: where the payload starts.
    #[inline]
    pub fn header_len(&self) -> usize {
        HEADER_LEN + TAG_LEN * self.tag_count()
    }

    #[inline]
    pub fn dst_addr(&self) -> EthernetAddress {
        EthernetAddress(get_array(self.buffer.as_ref(), DST))
    }

    #[inline]
    pub fn src_addr(&self) -> EthernetAddress {
        EthernetAddress(get_array(self.buffer.as_ref(), SRC))
    }

    /// Tag `i` (outermost first), if present.
    pub fn vlan_tag(&self, i: usize) -> Option<VlanTag> {
        if i >= self.tag_count() {
            return None;
        }
        let b = self.buffer.as_ref();
        let at = TYPE + i * TAG_LEN;
        Some(VlanTag {
            tpid: EtherType(get_u16(b, at)),
            tci: get_u16(b, at + 2),
        })
    }

    /// The tags, outermost first.
    pub fn vlans(&self) -> VlanStack {
        match (self.vlan_tag(0), self.vlan_tag(1)) {
            (Some(outer), Some(inner)) => VlanStack::Two { outer, inner },
            (Some(t), None) => VlanStack::One(t),
            _ => VlanStack::Untagged,
        }
    }

    /// The EtherType of the payload (after the tags).
    #[inline]
    pub fn ethertype(&self) -> EtherType {
        EtherType(get_u16(self.buffer.as_ref(), self.header_len() - 2))
    }

    /// Everything after the header, padding included.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    #[inline]
    pub fn set_dst_addr(&mut self, a: EthernetAddress) {
        self.buffer.as_mut()[DST..DST + 6].copy_from_slice(&a.0);
    }

    #[inline]
    pub fn set_src_addr(&mut self, a: EthernetAddress) {
        self.buffer.as_mut()[SRC..SRC + 6].copy_from_slice(&a.0);
    }

    /// Swap source and destination MAC in place.
    #[inline]
    pub fn swap_addrs(&mut self) {
        let b = self.buffer.as_mut();
        let (dst, rest) = b.split_at_mut(SRC);
        dst.swap_with_slice(&mut rest[..6]);
    }

    /// Set the payload EtherType (after the tags).
    #[inline]
    pub fn set_ethertype(&mut self, t: EtherType) {
        let at = self.header_len() - 2;
        set_u16(self.buffer.as_mut(), at, t.0);
    }

    /// Rewrite the TCI of tag `i`; does nothing when the frame has no such tag.
    pub fn set_vlan_tci(&mut self, i: usize, tci: u16) {
        if i < self.tag_count() {
            set_u16(self.buffer.as_mut(), TYPE + i * TAG_LEN + 2, tci);
        }
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let at = self.header_len();
        &mut self.buffer.as_mut()[at..]
    }
}

/// Parsed Ethernet header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EthernetRepr {
    pub src_addr: EthernetAddress,
    pub dst_addr: EthernetAddress,
    pub vlans: VlanStack,
    pub ethertype: EtherType,
}

impl EthernetRepr {
    pub fn parse<T: AsRef<[u8]>>(frame: &EthernetFrame<T>) -> Result<Self, WireError> {
        Ok(Self {
            src_addr: frame.src_addr(),
            dst_addr: frame.dst_addr(),
            vlans: frame.vlans(),
            ethertype: frame.ethertype(),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + TAG_LEN * self.vlans.len()
    }

    /// Write the header into the start of `buf` (at least `buffer_len()` bytes);
    /// returns the header length, where the payload goes.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let len = self.buffer_len();
        let b = buf.get_mut(..len).ok_or(WireError::Truncated)?;
        b[DST..DST + 6].copy_from_slice(&self.dst_addr.0);
        b[SRC..SRC + 6].copy_from_slice(&self.src_addr.0);
        let mut at = TYPE;
        for i in 0..self.vlans.len() {
            if let Some(t) = self.vlans.get(i) {
                set_u16(b, at, t.tpid.0);
                set_u16(b, at + 2, t.tci);
                at += TAG_LEN;
            }
        }
        set_u16(b, at, self.ethertype.0);
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNTAGGED: [u8; 16] = [
        0x02, 0, 0, 0, 0, 0x0b, 0x02, 0, 0, 0, 0, 0x0a, 0x08, 0x00, 0x45, 0x00,
    ];

    #[test]
    fn untagged_accessors() {
        let f = EthernetFrame::new_checked(&UNTAGGED[..]).unwrap();
        assert_eq!(f.dst_addr(), EthernetAddress([2, 0, 0, 0, 0, 0x0b]));
        assert_eq!(f.src_addr(), EthernetAddress([2, 0, 0, 0, 0, 0x0a]));
        assert_eq!(f.tag_count(), 0);
        assert_eq!(f.vlan_tag(0), None);
        assert_eq!(f.ethertype(), EtherType::IPV4);
        assert_eq!(f.header_len(), 14);
        assert_eq!(f.payload(), &[0x45, 0x00]);
    }

    #[test]
    fn errors() {
        assert_eq!(
            EthernetFrame::new_checked(&UNTAGGED[..13]).unwrap_err(),
            WireError::Truncated
        );
        let mut tagged = [0u8; 30];
        tagged[12..14].copy_from_slice(&[0x81, 0x00]);
        assert_eq!(
            EthernetFrame::new_checked(&tagged[..17]).unwrap_err(),
            WireError::Truncated
        );
        tagged[16..18].copy_from_slice(&[0x81, 0x00]);
        tagged[20..22].copy_from_slice(&[0x88, 0xa8]);
        assert_eq!(
            EthernetFrame::new_checked(&tagged[..]).unwrap_err(),
            WireError::Unsupported
        );
        tagged[20..22].copy_from_slice(&[0x86, 0xdd]);
        let f = EthernetFrame::new_checked(&tagged[..]).unwrap();
        assert_eq!(f.tag_count(), 2);
        assert_eq!(f.ethertype(), EtherType::IPV6);
    }

    #[test]
    fn setters_and_swap() {
        let mut buf = UNTAGGED;
        let mut f = EthernetFrame::new_checked(&mut buf[..]).unwrap();
        f.swap_addrs();
        assert_eq!(f.dst_addr(), EthernetAddress([2, 0, 0, 0, 0, 0x0a]));
        assert_eq!(f.src_addr(), EthernetAddress([2, 0, 0, 0, 0, 0x0b]));
        f.set_dst_addr(EthernetAddress::BROADCAST);
        f.set_ethertype(EtherType::ARP);
        f.set_vlan_tci(0, 5); // no tag: no effect
        assert!(f.dst_addr().is_broadcast() && f.dst_addr().is_multicast());
        assert_eq!(f.ethertype(), EtherType::ARP);
        f.payload_mut()[0] = 0x60;
        assert_eq!(buf[14], 0x60);
    }

    #[test]
    fn repr_round_trip_qinq() {
        let repr = EthernetRepr {
            src_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
            dst_addr: EthernetAddress([2, 0, 0, 0, 0, 2]),
            vlans: VlanStack::Two {
                outer: VlanTag::s_tag(200, 0),
                inner: VlanTag::c_tag(300, 5),
            },
            ethertype: EtherType::IPV6,
        };
        let mut buf = [0u8; 22];
        assert_eq!(repr.emit(&mut buf).unwrap(), 22);
        assert_eq!(
            &buf[12..22],
            &[0x88, 0xa8, 0x00, 0xc8, 0x81, 0x00, 0xa1, 0x2c, 0x86, 0xdd]
        );
        let f = EthernetFrame::new_checked(&buf[..]).unwrap();
        let back = EthernetRepr::parse(&f).unwrap();
        assert_eq!(back, repr);
        assert_eq!(back.vlans.get(1).unwrap().vid(), 300);
        assert_eq!(back.vlans.get(1).unwrap().pcp(), 5);
        assert!(!back.vlans.get(1).unwrap().dei());
        assert_eq!(repr.emit(&mut buf[..21]), Err(WireError::Truncated));
    }
}
