//! Link-layer headers for the frames the TCP stack originates.
//!
//! Echo replies reuse the received frame and just swap MACs; a TCP segment
//! is built from scratch (a retransmission fires from a timer, long after
//! the frame that caused it was recycled), so the loop needs the Ethernet
//! header that reaches the peer. It learns it from what the peer sends:
//! the source MAC, the MAC the peer addressed us with, and the VLAN tags
//! the frame carried. Every frame of a flow refreshes its entry, so a peer
//! that moves (new router MAC, VRRP failover) is followed at once.
//!
//! Keyed by the peer's IP address in the form the BPF maps use (IPv4-mapped
//! IPv6). Bounded: spoofed sources must not grow it without limit. When it
//! is full, it is cleared and relearned from the next frames; with real
//! peers behind a router that loses nothing, as every live flow sends again.

use std::collections::HashMap;

use sluice_netstack::frame::Classified;

/// Longest header: Ethernet with two VLAN tags.
pub const MAX_L2_HEADER: usize = 14 + 2 * 4;
/// Length of an untagged Ethernet header: where the stack writes IP packets.
pub const ETH_HEADER: usize = 14;

/// The Ethernet header (with VLAN tags) that reaches one peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L2Header {
    bytes: [u8; MAX_L2_HEADER],
    len: u8,
}

impl L2Header {
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The reply header for a received frame: MACs swapped, tags and
    /// EtherType kept. None if the frame's L2 header is not plain Ethernet
    /// with at most two tags.
    pub fn reply_to(frame: &[u8], cls: &Classified) -> Option<Self> {
        let l3 = cls.l3_offset;
        if !(ETH_HEADER..=MAX_L2_HEADER).contains(&l3) || frame.len() < l3 {
            return None;
        }
        let mut bytes = [0u8; MAX_L2_HEADER];
        bytes[..6].copy_from_slice(&frame[6..12]);
        bytes[6..12].copy_from_slice(&frame[..6]);
        bytes[12..l3].copy_from_slice(&frame[12..l3]);
        Some(Self {
            bytes,
            len: l3 as u8,
        })
    }
}

#[derive(Debug)]
pub struct Neighbours {
    map: HashMap<[u8; 16], L2Header>,
    capacity: usize,
    /// Times the table was full and cleared.
    pub flushes: u64,
}

impl Neighbours {
    pub fn new(capacity: usize) -> Self {
        Self {
            map: HashMap::with_capacity(capacity.min(4096)),
            capacity: capacity.max(1),
            flushes: 0,
        }
    }

    /// Remember how to reach the sender of `frame`.
    #[inline]
    pub fn learn(&mut self, frame: &[u8], cls: &Classified) {
        let Some(h) = L2Header::reply_to(frame, cls) else {
            return;
        };
        if let Some(known) = self.map.get_mut(&cls.src_addr) {
            if *known != h {
                *known = h;
            }
            return;
        }
        if self.map.len() >= self.capacity {
            self.map.clear();
            self.flushes += 1;
        }
        self.map.insert(cls.src_addr, h);
    }

    #[inline]
    pub fn get(&self, addr: &[u8; 16]) -> Option<&L2Header> {
        self.map.get(addr)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Put `l2` in front of an IP packet of `ip_len` bytes that was written at
/// `buf[ETH_HEADER..]`, moving the packet when the header is longer (VLAN
/// tags). Returns the frame length, or None if it does not fit.
pub fn frame_ip_packet(buf: &mut [u8], l2: &L2Header, ip_len: usize) -> Option<usize> {
    let hl = l2.len();
    let total = hl + ip_len;
    if total > buf.len() || ETH_HEADER + ip_len > buf.len() {
        return None;
    }
    if hl != ETH_HEADER {
        buf.copy_within(ETH_HEADER..ETH_HEADER + ip_len, hl);
    }
    buf[..hl].copy_from_slice(l2.as_bytes());
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_netstack::frame::classify;

    /// A minimal IPv4/UDP frame with `tags` VLAN tags from 198.18.0.1.
    fn frame(tags: usize, src_mac: u8) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 0xaa, 0x02, 0, 0, 0, 0, src_mac];
        for t in 0..tags {
            f.extend_from_slice(&[0x81, 0x00, 0x00, 10 + t as u8]);
        }
        f.extend_from_slice(&[0x08, 0x00]);
        let ip = [
            0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0, 198, 18, 0, 1, 198, 18, 0, 100,
        ];
        f.extend_from_slice(&ip);
        f.extend_from_slice(&[0x30, 0x39, 0, 7, 0, 8, 0, 0]);
        f
    }

    #[test]
    fn learns_swapped_macs_and_tags() {
        for tags in 0..=2 {
            let f = frame(tags, 0x11);
            let cls = classify(&f).unwrap();
            let mut n = Neighbours::new(8);
            n.learn(&f, &cls);
            let h = n.get(&cls.src_addr).unwrap();
            assert_eq!(h.len(), 14 + 4 * tags);
            assert_eq!(&h.as_bytes()[..6], &f[6..12]);
            assert_eq!(&h.as_bytes()[6..12], &f[..6]);
            assert_eq!(&h.as_bytes()[12..], &f[12..14 + 4 * tags]);
        }
    }

    #[test]
    fn follows_a_moved_peer_and_stays_bounded() {
        let mut n = Neighbours::new(1);
        let a = frame(0, 0x11);
        let cls = classify(&a).unwrap();
        n.learn(&a, &cls);
        let b = frame(0, 0x22);
        n.learn(&b, &classify(&b).unwrap());
        assert_eq!(n.get(&cls.src_addr).unwrap().as_bytes()[5], 0x22);
        assert_eq!(n.len(), 1);
        let mut other = frame(0, 0x33);
        other[14 + 15] = 2; // source 198.18.0.2
        n.learn(&other, &classify(&other).unwrap());
        assert_eq!((n.len(), n.flushes), (1, 1));
    }

    #[test]
    fn frames_with_and_without_tags() {
        let f = frame(2, 0x11);
        let h = L2Header::reply_to(&f, &classify(&f).unwrap()).unwrap();
        let mut buf = vec![0u8; 64];
        buf[14..18].copy_from_slice(&[1, 2, 3, 4]);
        assert_eq!(frame_ip_packet(&mut buf, &h, 4), Some(26));
        assert_eq!(&buf[..22], h.as_bytes());
        assert_eq!(&buf[22..26], &[1, 2, 3, 4]);
        let mut small = vec![0u8; 20];
        assert_eq!(frame_ip_packet(&mut small, &h, 4), None);
    }
}
