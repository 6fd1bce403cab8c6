//! ARP (RFC 826). The view reads any hardware/protocol sizes; the repr
//! handles Ethernet/IPv4, the only combination the gateway speaks.
use core::net::Ipv4Addr;

use super::{get_array, get_u16, set_u16, EtherType, EthernetAddress};
use crate::WireError;

/// ARP opcode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ArpOperation(pub u16);

impl ArpOperation {
    pub const REQUEST: Self = Self(1);
    pub const REPLY: Self = Self(2);
}

const HTYPE: usize = 0;
const PTYPE: usize = 2;
const HLEN: usize = 4;
const PLEN: usize = 5;
const OPER: usize = 6;
const ADDRS: usize = 8;
/// Hardware type of Ethernet.
pub const HTYPE_ETHERNET: u16 = 1;
/// Length of an Ethernet/IPv4 ARP packet.
pub const ETHERNET_IPV4_LEN: usize = 28;

/// A view of an ARP packet.
#[derive(Debug, Clone)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Check that the fixed part and the four addresses fit (`Truncated`).
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        if b.len() < ADDRS {
            return Err(WireError::Truncated);
        }
        let need = ADDRS + 2 * (usize::from(b[HLEN]) + usize::from(b[PLEN]));
        if b.len() < need {
            return Err(WireError::Truncated);
        }
        Ok(Self { buffer })
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn hardware_type(&self) -> u16 {
        get_u16(self.buffer.as_ref(), HTYPE)
    }

    pub fn protocol_type(&self) -> EtherType {
        EtherType(get_u16(self.buffer.as_ref(), PTYPE))
    }

    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[HLEN]
    }

    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[PLEN]
    }

    pub fn operation(&self) -> ArpOperation {
        ArpOperation(get_u16(self.buffer.as_ref(), OPER))
    }

    fn field(&self, index: usize) -> &[u8] {
        let h = usize::from(self.hardware_len());
        let p = usize::from(self.protocol_len());
        let (at, len) = match index {
            0 => (ADDRS, h),
            1 => (ADDRS + h, p),
            2 => (ADDRS + h + p, h),
            _ => (ADDRS + 2 * h + p, p),
        };
        &self.buffer.as_ref()[at..at + len]
    }

    pub fn source_hardware_addr(&self) -> &[u8] {
        self.field(0)
    }

    pub fn source_protocol_addr(&self) -> &[u8] {
        self.field(1)
    }

    pub fn target_hardware_addr(&self) -> &[u8] {
        self.field(2)
    }

    pub fn target_protocol_addr(&self) -> &[u8] {
        self.field(3)
    }

    /// Length of the ARP packet (without Ethernet padding).
    pub fn packet_len(&self) -> usize {
        ADDRS + 2 * (usize::from(self.hardware_len()) + usize::from(self.protocol_len()))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    pub fn set_operation(&mut self, op: ArpOperation) {
        set_u16(self.buffer.as_mut(), OPER, op.0);
    }
}

/// An Ethernet/IPv4 ARP message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ArpRepr {
    pub operation: ArpOperation,
    pub source_hardware_addr: EthernetAddress,
    pub source_protocol_addr: Ipv4Addr,
    pub target_hardware_addr: EthernetAddress,
    pub target_protocol_addr: Ipv4Addr,
}

impl ArpRepr {
    /// Parse an Ethernet/IPv4 ARP packet; other hardware or protocol types
    /// are `Unsupported`, opcodes other than request/reply too.
    pub fn parse<T: AsRef<[u8]>>(p: &ArpPacket<T>) -> Result<Self, WireError> {
        if p.hardware_type() != HTYPE_ETHERNET
            || p.protocol_type() != EtherType::IPV4
            || p.hardware_len() != 6
            || p.protocol_len() != 4
        {
            return Err(WireError::Unsupported);
        }
        let op = p.operation();
        if op != ArpOperation::REQUEST && op != ArpOperation::REPLY {
            return Err(WireError::Unsupported);
        }
        let b = p.buffer.as_ref();
        Ok(Self {
            operation: op,
            source_hardware_addr: EthernetAddress(get_array(b, 8)),
            source_protocol_addr: Ipv4Addr::from(get_array::<4>(b, 14)),
            target_hardware_addr: EthernetAddress(get_array(b, 18)),
            target_protocol_addr: Ipv4Addr::from(get_array::<4>(b, 24)),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        ETHERNET_IPV4_LEN
    }

    /// Write the packet into the start of `buf`; returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let b = buf
            .get_mut(..ETHERNET_IPV4_LEN)
            .ok_or(WireError::Truncated)?;
        set_u16(b, HTYPE, HTYPE_ETHERNET);
        set_u16(b, PTYPE, EtherType::IPV4.0);
        b[HLEN] = 6;
        b[PLEN] = 4;
        set_u16(b, OPER, self.operation.0);
        b[8..14].copy_from_slice(&self.source_hardware_addr.0);
        b[14..18].copy_from_slice(&self.source_protocol_addr.octets());
        b[18..24].copy_from_slice(&self.target_hardware_addr.0);
        b[24..28].copy_from_slice(&self.target_protocol_addr.octets());
        Ok(ETHERNET_IPV4_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generic_sizes_and_errors() {
        // htype 6 (IEEE 802), ptype IPv4, hlen 2, plen 1.
        let raw = [0, 6, 8, 0, 2, 1, 0, 1, 0xa, 0xb, 1, 0xc, 0xd, 2];
        let p = ArpPacket::new_checked(&raw[..]).unwrap();
        assert_eq!(p.source_hardware_addr(), &[0xa, 0xb]);
        assert_eq!(p.source_protocol_addr(), &[1]);
        assert_eq!(p.target_hardware_addr(), &[0xc, 0xd]);
        assert_eq!(p.target_protocol_addr(), &[2]);
        assert_eq!(p.packet_len(), 14);
        assert_eq!(ArpRepr::parse(&p), Err(WireError::Unsupported));
        assert_eq!(
            ArpPacket::new_checked(&raw[..13]).unwrap_err(),
            WireError::Truncated
        );
        assert_eq!(
            ArpPacket::new_checked(&raw[..7]).unwrap_err(),
            WireError::Truncated
        );
    }

    #[test]
    fn unknown_opcode_unsupported() {
        let repr = ArpRepr {
            operation: ArpOperation(3),
            source_hardware_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
            source_protocol_addr: Ipv4Addr::new(198, 18, 0, 1),
            target_hardware_addr: EthernetAddress::default(),
            target_protocol_addr: Ipv4Addr::new(198, 18, 0, 2),
        };
        let mut buf = [0u8; 28];
        repr.emit(&mut buf).unwrap();
        let mut p = ArpPacket::new_checked(&mut buf[..]).unwrap();
        assert_eq!(ArpRepr::parse(&p), Err(WireError::Unsupported));
        p.set_operation(ArpOperation::REQUEST);
        let back = ArpRepr::parse(&p).unwrap();
        assert_eq!(back.operation, ArpOperation::REQUEST);
        assert_eq!(repr.emit(&mut [0u8; 27]), Err(WireError::Truncated));
    }
}
