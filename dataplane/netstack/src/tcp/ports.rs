//! Ephemeral ports for active opens, chosen so that the owning core can be
//! recovered from the packet: core k of n uses only ports p with
//! p % n == k.

use core::ops::RangeInclusive;

#[derive(Clone, Debug)]
pub struct EphemeralPorts {
    range: RangeInclusive<u16>,
    core: u16,
    ncores: u16,
    /// The lowest port of `range` that belongs to this core.
    first: u32,
    /// How many ports of `range` belong to this core (> 0).
    count: u32,
    /// Index (among this core's ports) where the next search starts.
    cursor: u32,
}

impl EphemeralPorts {
    /// Ports of `range` that belong to `core` of `ncores`, tried starting at
    /// a point derived from `seed`. None if the range has no port for it
    /// (port 0 is never handed out).
    pub fn new(range: RangeInclusive<u16>, core: u16, ncores: u16, seed: u64) -> Option<Self> {
        let n = u32::from(ncores.max(1));
        let k = u32::from(core);
        if k >= n {
            return None;
        }
        let lo = u32::from(*range.start()).max(1);
        let hi = u32::from(*range.end());
        let first = lo + (k + n - lo % n) % n;
        if range.is_empty() || first > hi {
            return None;
        }
        let count = (hi - first) / n + 1;
        let cursor = (seed % u64::from(count)) as u32;
        Some(Self {
            range,
            core,
            ncores,
            first,
            count,
            cursor,
        })
    }

    /// The next port of this core for which `in_use` says false: the search
    /// starts after the port handed out last and visits each of this
    /// core's ports at most once. None when all are in use.
    pub fn allocate(&mut self, mut in_use: impl FnMut(u16) -> bool) -> Option<u16> {
        let n = u32::from(self.ncores.max(1));
        for i in 0..self.count {
            let idx = (self.cursor + i) % self.count;
            let p = self.first + idx * n;
            // first + (count-1)·n ≤ range end ≤ u16::MAX.
            let port = p as u16;
            debug_assert!(self.range.contains(&port));
            debug_assert_eq!(Self::owner(port, self.ncores), self.core);
            if !in_use(port) {
                self.cursor = (idx + 1) % self.count;
                return Some(port);
            }
        }
        None
    }

    /// How many ports this core owns.
    pub fn capacity(&self) -> u32 {
        self.count
    }

    /// The core that owns `port` among `ncores`.
    pub fn owner(port: u16, ncores: u16) -> u16 {
        port % ncores.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn owner_of_each_port() {
        assert_eq!(EphemeralPorts::owner(40_001, 4), 1);
        assert_eq!(EphemeralPorts::owner(40_001, 1), 0);
        assert_eq!(EphemeralPorts::owner(40_001, 0), 0);
    }

    #[test]
    fn small_range_exact() {
        // 10..=20 on core 2 of 4: 10, 14, 18.
        let mut p = EphemeralPorts::new(10..=20, 2, 4, 0).unwrap();
        assert_eq!(p.capacity(), 3);
        let mut used = BTreeSet::new();
        for want in [10, 14, 18] {
            let got = p.allocate(|x| used.contains(&x)).unwrap();
            assert_eq!(got, want);
            used.insert(got);
        }
        assert_eq!(p.allocate(|x| used.contains(&x)), None);
        used.remove(&14);
        assert_eq!(p.allocate(|x| used.contains(&x)), Some(14));
    }

    #[test]
    fn seed_picks_start() {
        let mut p = EphemeralPorts::new(10..=20, 2, 4, 4).unwrap();
        assert_eq!(p.allocate(|_| false), Some(14));
        assert_eq!(p.allocate(|_| false), Some(18));
        assert_eq!(p.allocate(|_| false), Some(10));
    }

    #[test]
    fn no_port_for_core() {
        assert!(EphemeralPorts::new(8..=10, 3, 4, 0).is_none());
        assert!(EphemeralPorts::new(10..=20, 4, 4, 0).is_none());
        #[allow(clippy::reversed_empty_ranges)]
        let empty = 20..=10;
        assert!(EphemeralPorts::new(empty, 0, 1, 0).is_none());
        assert!(EphemeralPorts::new(0..=0, 0, 1, 0).is_none());
        // Port 0 is skipped, port 65535 is usable.
        let mut p = EphemeralPorts::new(0..=65535, 0, 65535, 7).unwrap();
        assert_eq!(p.capacity(), 1);
        assert_eq!(p.allocate(|_| false), Some(65535));
        let mut one = EphemeralPorts::new(65535..=65535, 0, 1, 9).unwrap();
        assert_eq!(one.allocate(|_| false), Some(65535));
        assert_eq!(one.allocate(|_| true), None);
    }

    proptest! {
        #[test]
        fn owner_and_exhaustion(lo in 0u16..2000, len in 0u16..300, ncores in 0u16..9,
                                core in 0u16..9, seed: u64) {
            let hi = lo.saturating_add(len);
            let n = ncores.max(1);
            let mine: BTreeSet<u16> = (lo..=hi)
                .filter(|&p| p != 0 && core < n && p % n == core)
                .collect();
            let Some(mut ports) = EphemeralPorts::new(lo..=hi, core, ncores, seed) else {
                prop_assert!(mine.is_empty());
                return Ok(());
            };
            prop_assert_eq!(ports.capacity() as usize, mine.len());
            let mut used = BTreeSet::new();
            let mut calls = 0;
            while let Some(p) = ports.allocate(|x| { calls += 1; used.contains(&x) }) {
                prop_assert!(mine.contains(&p));
                prop_assert_eq!(EphemeralPorts::owner(p, ncores), core);
                prop_assert!(used.insert(p));
                prop_assert!(calls <= mine.len() * mine.len());
            }
            prop_assert_eq!(&used, &mine);
            // Exhausted: one pass, then None.
            let mut n = 0;
            prop_assert_eq!(ports.allocate(|_| { n += 1; true }), None);
            prop_assert_eq!(n, mine.len());
        }
    }
}
