//! Link-layer headers for the frames the TCP stack originates.
//!
//! Echo replies reuse the received frame and just swap MACs; a TCP segment
//! is built from scratch (a retransmission fires from a timer, long after
//! the frame that caused it was recycled), so the loop needs the Ethernet
//! header that reaches each peer. It has two sources:
//!
//! - **Resolved** (upstream destinations): the main thread looks up the
//!   kernel's route to each backend and keeps a *managed* neighbour entry
//!   for its next hop (docs/architecture.md, "Neighbours"); the kernel runs
//!   ARP/ND with its own states and refresh, and the loop is told the MAC.
//!   Frames never overwrite these entries.
//! - **Learned** (clients): taken from what the peer sends, but only from
//!   traffic the TCP engine validated: a new entry when a SYN (or a cookie
//!   ACK) made a connection, and a change of MAC or VLAN tags only from a
//!   segment that passed the acceptability and ACK checks of an open
//!   connection (`segments_validated`). A spoofed SYN cannot repoint an
//!   existing peer, and a spoofed segment outside the window changes
//!   nothing. A peer that moves (VRRP failover, new router MAC) is still
//!   followed at its next valid segment.
//!
//! Keyed by the peer's IP address in the form the BPF maps use (IPv4-mapped
//! IPv6). Bounded: when full, the learned entry least recently confirmed
//! makes room (a flood can only push out entries as old as itself; the
//! table is never flushed wholesale, and resolved entries are never
//! evicted).

use std::collections::{HashMap, VecDeque};

use sluice_netstack::frame::Classified;
use sluice_netstack::time::Time;

/// Longest header: Ethernet with two VLAN tags.
pub const MAX_L2_HEADER: usize = 14 + 2 * 4;
/// Length of an untagged Ethernet header: where the stack writes IP packets.
pub const ETH_HEADER: usize = 14;
/// A learned entry is re-stamped (moved to the young end of the eviction
/// order) at most this often, so a busy peer costs one queue push a
/// second, not one per segment.
const RESTAMP: std::time::Duration = std::time::Duration::from_secs(1);

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

    /// An untagged header from `src` to `dst` for IPv4 or IPv6.
    pub fn ethernet(dst: [u8; 6], src: [u8; 6], ipv6: bool) -> Self {
        let mut bytes = [0u8; MAX_L2_HEADER];
        bytes[..6].copy_from_slice(&dst);
        bytes[6..12].copy_from_slice(&src);
        let ethertype: u16 = if ipv6 { 0x86dd } else { 0x0800 };
        bytes[12..14].copy_from_slice(&ethertype.to_be_bytes());
        Self {
            bytes,
            len: ETH_HEADER as u8,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    header: L2Header,
    /// None: resolved through the kernel (never evicted, never learned
    /// over). Some: learned, last confirmed then.
    stamp: Option<Time>,
}

#[derive(Debug)]
pub struct Neighbours {
    map: HashMap<[u8; 16], Entry>,
    /// Learned entries oldest first, as (address, stamp); an element whose
    /// stamp no longer matches its entry is stale and skipped.
    order: VecDeque<([u8; 16], Time)>,
    capacity: usize,
    /// Learned entries pushed out to make room.
    pub evictions: u64,
    /// Learned entries whose MAC or tags changed on a validated segment.
    pub moves: u64,
    /// Frames that would have changed an entry but did not prove they come
    /// from the peer (a SYN for a known address, an unvalidated segment).
    pub refused: u64,
}

impl Neighbours {
    pub fn new(capacity: usize) -> Self {
        Self {
            map: HashMap::with_capacity(capacity.min(4096)),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            evictions: 0,
            moves: 0,
            refused: 0,
        }
    }

    /// A frame the engine answers or took without proof of origin (a SYN,
    /// a cookie ACK, a segment that failed the checks): remember how to
    /// reach its sender if the address is new; a known address is not
    /// repointed (a spoofed SYN must not hijack a live peer).
    pub fn learn_new(&mut self, now: Time, frame: &[u8], cls: &Classified) {
        let Some(h) = L2Header::reply_to(frame, cls) else {
            return;
        };
        match self.map.get(&cls.src_addr) {
            Some(e) if e.header == h => {}
            Some(_) => self.refused += 1,
            None => self.insert_learned(now, cls.src_addr, h),
        }
    }

    /// A segment of an open connection passed the engine's checks: the
    /// sender is the peer. Follow it if it moved; keep the entry young.
    #[inline]
    pub fn confirm(&mut self, now: Time, frame: &[u8], cls: &Classified) {
        let Some(e) = self.map.get_mut(&cls.src_addr) else {
            if let Some(h) = L2Header::reply_to(frame, cls) {
                self.insert_learned(now, cls.src_addr, h);
            }
            return;
        };
        let Some(stamp) = e.stamp else {
            return;
        };
        let Some(h) = L2Header::reply_to(frame, cls) else {
            return;
        };
        if e.header != h {
            e.header = h;
            self.moves += 1;
        }
        if now.saturating_since(stamp) >= RESTAMP {
            e.stamp = Some(now);
            self.order.push_back((cls.src_addr, now));
            self.compact();
        }
    }

    /// The kernel resolved (Some) or lost (None) the next hop of `addr`.
    pub fn set_resolved(&mut self, addr: [u8; 16], header: Option<L2Header>) {
        match header {
            Some(header) => {
                self.map.insert(
                    addr,
                    Entry {
                        header,
                        stamp: None,
                    },
                );
            }
            None => {
                if self.map.get(&addr).is_some_and(|e| e.stamp.is_none()) {
                    self.map.remove(&addr);
                }
            }
        }
    }

    fn insert_learned(&mut self, now: Time, addr: [u8; 16], header: L2Header) {
        while self.map.len() >= self.capacity {
            let Some((a, stamp)) = self.order.pop_front() else {
                // Everything is resolved: learn nothing more.
                self.refused += 1;
                return;
            };
            if self.map.get(&a).is_some_and(|e| e.stamp == Some(stamp)) {
                self.map.remove(&a);
                self.evictions += 1;
            }
        }
        self.map.insert(
            addr,
            Entry {
                header,
                stamp: Some(now),
            },
        );
        self.order.push_back((addr, now));
        self.compact();
    }

    /// Drop stale order records once they outnumber the entries.
    fn compact(&mut self) {
        if self.order.len() > 2 * self.capacity {
            let map = &self.map;
            self.order
                .retain(|(a, t)| map.get(a).is_some_and(|e| e.stamp == Some(*t)));
        }
    }

    #[inline]
    pub fn get(&self, addr: &[u8; 16]) -> Option<&L2Header> {
        self.map.get(addr).map(|e| &e.header)
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

    fn at(ms: u64) -> Time {
        Time::from_micros(ms * 1000)
    }

    /// `frame` from 198.18.0.`host`.
    fn from_host(tags: usize, src_mac: u8, host: u8) -> Vec<u8> {
        let mut f = frame(tags, src_mac);
        f[14 + 4 * tags + 15] = host;
        f
    }

    #[test]
    fn learns_swapped_macs_and_tags() {
        for tags in 0..=2 {
            let f = frame(tags, 0x11);
            let cls = classify(&f).unwrap();
            let mut n = Neighbours::new(8);
            n.learn_new(at(0), &f, &cls);
            let h = n.get(&cls.src_addr).unwrap();
            assert_eq!(h.len(), 14 + 4 * tags);
            assert_eq!(&h.as_bytes()[..6], &f[6..12]);
            assert_eq!(&h.as_bytes()[6..12], &f[..6]);
            assert_eq!(&h.as_bytes()[12..], &f[12..14 + 4 * tags]);
        }
    }

    #[test]
    fn only_validated_segments_repoint_a_peer() {
        let mut n = Neighbours::new(8);
        let a = frame(0, 0x11);
        let cls = classify(&a).unwrap();
        n.learn_new(at(0), &a, &cls);
        // A spoofed SYN (or an unvalidated segment) from another MAC.
        let b = frame(0, 0x22);
        n.learn_new(at(1), &b, &classify(&b).unwrap());
        n.learn_new(at(1), &b, &classify(&b).unwrap());
        assert_eq!(n.get(&cls.src_addr).unwrap().as_bytes()[5], 0x11);
        assert_eq!(n.refused, 2);
        // The peer really moved: its validated segment is followed.
        n.confirm(at(2), &b, &classify(&b).unwrap());
        assert_eq!(n.get(&cls.src_addr).unwrap().as_bytes()[5], 0x22);
        assert_eq!(n.moves, 1);
    }

    #[test]
    fn a_flood_evicts_the_oldest_learned_entry_and_never_a_resolved_one() {
        let mut n = Neighbours::new(3);
        let resolved = [9u8; 16];
        n.set_resolved(resolved, Some(L2Header::ethernet([1; 6], [2; 6], false)));
        let (a, b) = (from_host(0, 0x11, 1), from_host(0, 0x12, 2));
        n.learn_new(at(0), &a, &classify(&a).unwrap());
        n.learn_new(at(10), &b, &classify(&b).unwrap());
        // `a` stays busy: confirmed after the restamp period.
        n.confirm(at(2000), &a, &classify(&a).unwrap());
        for host in 3..50 {
            let f = from_host(0, 0x30, host);
            n.learn_new(at(3000 + u64::from(host)), &f, &classify(&f).unwrap());
        }
        assert_eq!(n.len(), 3, "bounded");
        assert!(n.get(&resolved).is_some(), "resolved entries stay");
        assert_eq!(n.evictions, 47);
        // A frame never overwrites a resolved entry.
        let mut over = frame(0, 0x44);
        over[14 + 12..14 + 16].copy_from_slice(&[0; 4]);
        n.set_resolved(resolved, None);
        assert!(n.get(&resolved).is_none());
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
