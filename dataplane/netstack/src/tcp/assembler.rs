//! Receive-side reassembly map: which byte ranges above the in-order point
//! have arrived (the bytes themselves live in the receive ring). Bounded in
//! ranges; produces SACK blocks in RFC 2018 §4 order (the block containing
//! the most recent arrival first).
//!
//! Offsets are u64 stream offsets (sequence number minus the peer's ISN+1,
//! unwrapped by the connection): no wraparound arithmetic here.
//!
//! Storage is a `Vec` sized to `max_ranges` in [`Assembler::new`]; no call
//! after that allocates.

/// Inserting would need more ranges than allowed: drop the segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooFragmented;

/// One received range `[start, end)`; `stamp` orders ranges by their most
/// recent arrival (higher is more recent).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Range {
    start: u64,
    end: u64,
    stamp: u64,
}

#[derive(Clone, Debug)]
pub struct Assembler {
    max_ranges: usize,
    /// Disjoint, non-adjacent, sorted by `start`; at most `max_ranges`.
    ranges: Vec<Range>,
    /// Arrival counter for `Range::stamp`.
    clock: u64,
    /// The in-order point last passed to [`Assembler::advance`] (or what it
    /// returned): nothing below it is kept.
    floor: u64,
    /// Sum of the ranges' lengths.
    bytes: u64,
}

impl Assembler {
    pub fn new(max_ranges: usize) -> Self {
        Self {
            max_ranges,
            ranges: Vec::with_capacity(max_ranges),
            clock: 0,
            floor: 0,
            bytes: 0,
        }
    }

    /// Record `[start, end)` as received (above the in-order point).
    /// Overlaps merge, and so do ranges that touch. Fails, changing
    /// nothing, when the range touches no held range and `max_ranges` are
    /// already held. Bytes below the in-order point are ignored.
    pub fn insert(&mut self, start: u64, end: u64) -> Result<(), TooFragmented> {
        let start = start.max(self.floor);
        if start >= end {
            return Ok(());
        }
        // First range that ends at or after `start` (could touch), and the
        // first that starts after `end` (cannot).
        let lo = self.ranges.partition_point(|r| r.end < start);
        let hi = self.ranges.partition_point(|r| r.start <= end);
        self.clock += 1;
        let stamp = self.clock;
        if lo == hi {
            if self.ranges.len() >= self.max_ranges {
                return Err(TooFragmented);
            }
            // Within capacity: no reallocation.
            self.ranges.insert(lo, Range { start, end, stamp });
            self.bytes += end - start;
            return Ok(());
        }
        let mut merged = Range { start, end, stamp };
        for r in &self.ranges[lo..hi] {
            merged.start = merged.start.min(r.start);
            merged.end = merged.end.max(r.end);
            self.bytes -= r.end - r.start;
        }
        self.bytes += merged.end - merged.start;
        self.ranges[lo] = merged;
        self.ranges.drain(lo + 1..hi);
        Ok(())
    }

    /// With the in-order point at `next`, return the new in-order point
    /// (the end of a range that starts at or before `next`), forgetting
    /// everything below it.
    pub fn advance(&mut self, next: u64) -> u64 {
        let mut new = next.max(self.floor);
        // Ranges that start at or before the in-order point are now in order
        // (they cannot chain: held ranges never touch).
        let n = self.ranges.partition_point(|r| r.start <= new);
        for r in &self.ranges[..n] {
            new = new.max(r.end);
            self.bytes -= r.end - r.start;
        }
        self.ranges.drain(..n);
        self.floor = new;
        new
    }

    /// Write up to `out.len()` SACK blocks `[start, end)`; most recent first:
    /// the block holding the latest arrival, then the others by how recently
    /// each last grew or was repeated (RFC 2018 §4).
    pub fn sack_blocks(&self, out: &mut [(u64, u64)]) -> usize {
        let mut below = u64::MAX;
        let mut n = 0;
        for slot in out.iter_mut() {
            // The most recent range older than the last one written.
            let Some(r) = self
                .ranges
                .iter()
                .filter(|r| r.stamp < below)
                .max_by_key(|r| r.stamp)
            else {
                break;
            };
            *slot = (r.start, r.end);
            below = r.stamp;
            n += 1;
        }
        n
    }

    /// Bytes held out of order.
    pub fn buffered(&self) -> u64 {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.buffered() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn blocks(a: &Assembler) -> Vec<(u64, u64)> {
        let mut out = [(0, 0); 64];
        let n = a.sack_blocks(&mut out);
        out[..n].to_vec()
    }

    #[test]
    fn merges_overlapping_and_adjacent() {
        let mut a = Assembler::new(4);
        a.insert(10, 20).unwrap();
        a.insert(30, 40).unwrap();
        assert_eq!(a.buffered(), 20);
        assert_eq!(blocks(&a), vec![(30, 40), (10, 20)]);
        // Adjacent on the left of the first, overlapping the second: one range.
        a.insert(20, 35).unwrap();
        assert_eq!(a.buffered(), 30);
        assert_eq!(blocks(&a), vec![(10, 40)]);
        // A duplicate inside changes nothing but recency.
        a.insert(50, 60).unwrap();
        a.insert(12, 13).unwrap();
        assert_eq!(blocks(&a), vec![(10, 40), (50, 60)]);
        assert_eq!(a.buffered(), 40);
        // Empty ranges are no-ops.
        a.insert(70, 70).unwrap();
        assert_eq!(a.buffered(), 40);
    }

    #[test]
    fn bounded_ranges() {
        let mut a = Assembler::new(2);
        a.insert(10, 20).unwrap();
        a.insert(30, 40).unwrap();
        assert_eq!(a.insert(50, 60), Err(TooFragmented));
        assert_eq!(a.insert(0, 5), Err(TooFragmented));
        assert_eq!(blocks(&a), vec![(30, 40), (10, 20)]);
        // Touching or overlapping still fits.
        a.insert(40, 45).unwrap();
        a.insert(5, 10).unwrap();
        assert_eq!(blocks(&a), vec![(5, 20), (30, 45)]);
        // Bridging reduces the count.
        a.insert(20, 30).unwrap();
        assert_eq!(blocks(&a), vec![(5, 45)]);
        a.insert(50, 60).unwrap();
        assert_eq!(a.buffered(), 50);

        let mut z = Assembler::new(0);
        assert_eq!(z.insert(1, 2), Err(TooFragmented));
        assert!(z.is_empty());
    }

    #[test]
    fn advance_delivers_and_forgets() {
        let mut a = Assembler::new(8);
        a.insert(10, 20).unwrap();
        a.insert(30, 40).unwrap();
        a.insert(50, 60).unwrap();
        assert_eq!(a.advance(5), 5);
        assert_eq!(a.buffered(), 30);
        assert_eq!(a.advance(10), 20);
        assert_eq!(a.buffered(), 20);
        // In-order point in the middle of a range.
        assert_eq!(a.advance(35), 40);
        assert_eq!(blocks(&a), vec![(50, 60)]);
        // Past everything.
        assert_eq!(a.advance(70), 70);
        assert!(a.is_empty());
        // Bytes below the in-order point are not held again.
        a.insert(60, 75).unwrap();
        assert_eq!(blocks(&a), vec![(70, 75)]);
        a.insert(10, 70).unwrap();
        assert_eq!(blocks(&a), vec![(70, 75)]);
        assert_eq!(a.advance(70), 75);
    }

    #[test]
    fn sack_order_rfc2018() {
        // RFC 2018 §4 example shape: the newest arrival's block first.
        let mut a = Assembler::new(8);
        a.insert(100, 200).unwrap();
        a.insert(300, 400).unwrap();
        a.insert(500, 600).unwrap();
        assert_eq!(blocks(&a), vec![(500, 600), (300, 400), (100, 200)]);
        a.insert(200, 250).unwrap();
        assert_eq!(blocks(&a), vec![(100, 250), (500, 600), (300, 400)]);
        let mut three = [(0, 0); 2];
        assert_eq!(a.sack_blocks(&mut three), 2);
        assert_eq!(three, [(100, 250), (500, 600)]);
        assert_eq!(a.sack_blocks(&mut []), 0);
    }

    #[test]
    fn no_reallocation() {
        let mut a = Assembler::new(4);
        let cap = a.ranges.capacity();
        for i in 0..100u64 {
            let _ = a.insert(i * 10 + 1, i * 10 + 5);
            if i % 7 == 0 {
                a.advance(i * 10);
            }
        }
        assert_eq!(a.ranges.capacity(), cap);
    }

    #[derive(Clone, Debug)]
    enum Op {
        /// Insert `[next + 1 + gap, .. + len)`.
        Insert(u64, u64),
        /// The in-order point moves by this many bytes (a segment at it).
        Deliver(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u64..60, 1u64..20).prop_map(|(g, l)| Op::Insert(g, l)),
            1 => (1u64..20).prop_map(Op::Deliver),
        ]
    }

    /// Maximal runs of `m` (offset -> last arrival), with each run's most
    /// recent arrival.
    fn runs(m: &BTreeMap<u64, u64>) -> Vec<(u64, u64, u64)> {
        let mut v: Vec<(u64, u64, u64)> = Vec::new();
        for (&o, &t) in m {
            match v.last_mut() {
                Some(r) if r.1 == o => {
                    r.1 = o + 1;
                    r.2 = r.2.max(t);
                }
                _ => v.push((o, o + 1, t)),
            }
        }
        v
    }

    proptest! {
        #[test]
        fn matches_model(max in 0usize..6, ops in proptest::collection::vec(op(), 1..80)) {
            let mut a = Assembler::new(max);
            // Model: received offsets above the in-order point, with the
            // time each last arrived.
            let mut m: BTreeMap<u64, u64> = BTreeMap::new();
            let mut next = 0u64;
            for (t, op) in ops.into_iter().enumerate() {
                let t = t as u64;
                match op {
                    Op::Insert(g, l) => {
                        let s = next + 1 + g;
                        let mut m2 = m.clone();
                        for o in s..s + l {
                            m2.insert(o, t);
                        }
                        let fits = runs(&m2).len() <= max;
                        let r = a.insert(s, s + l);
                        prop_assert_eq!(r.is_ok(), fits);
                        if fits {
                            m = m2;
                            let b = blocks(&a);
                            prop_assert!(b[0].0 <= s && s + l <= b[0].1);
                        }
                    }
                    Op::Deliver(l) => {
                        let mut n = next + l;
                        while m.remove(&n).is_some() {
                            n += 1;
                        }
                        m.retain(|&o, _| o >= n);
                        prop_assert_eq!(a.advance(next + l), n);
                        next = n;
                    }
                }
                prop_assert_eq!(a.buffered(), m.len() as u64);
                prop_assert_eq!(a.is_empty(), m.is_empty());
                let mut want = runs(&m);
                want.sort_by_key(|r| core::cmp::Reverse(r.2));
                let want: Vec<(u64, u64)> = want.iter().map(|r| (r.0, r.1)).collect();
                prop_assert_eq!(blocks(&a), want);
                prop_assert!(a.ranges.len() <= max);
            }
        }
    }
}
