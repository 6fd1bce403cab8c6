//! The sender's SACK scoreboard and the loss-recovery rules of RFC 6675
//! (IsLost, NextSeg, SetPipe) over u64 stream offsets.
//!
//! SACKed ranges above SND.UNA live in a `Vec` sized to `max_ranges` in
//! [`Scoreboard::new`]; no call after that allocates. When a new disjoint
//! block would exceed the bound, the highest range is forgotten (or the new
//! block, if it is the highest): losing SACK information only makes the
//! sender retransmit more, never less.
//!
//! HighRxt is kept as the end (exclusive) of the highest retransmitted
//! range; "S1 <= HighRxt" of RFC 6675 is `s < high_rxt` here.
//!
//! Two additions to RFC 6675, both about losses it cannot see:
//! - `lost_below`: after an RTO every hole below the RTO's SND.MAX is
//!   lost (RFC 6675 §5.1 keeps the SACK information), so NextSeg refills
//!   the holes only, not the whole window again.
//! - re-lost ranges: a retransmission the connection judged lost (data
//!   sent after it was SACKed, RACK's rule, RFC 8985 §6.2) goes out again
//!   before anything else, although it sits below HighRxt.

/// What one ACK changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AckUpdate {
    /// Bytes newly covered by SACK blocks.
    pub newly_sacked: u64,
    /// Whether any SACK block was new information (for dupack counting,
    /// RFC 6675 §2 "duplicate acknowledgment").
    pub sack_changed: bool,
}

#[derive(Clone, Debug)]
pub struct Scoreboard {
    max_ranges: usize,
    /// SACKed `[start, end)`, disjoint, non-adjacent, sorted, all above the
    /// last cumulative ACK.
    ranges: Vec<(u64, u64)>,
    /// Sum of the ranges' lengths.
    bytes: u64,
    /// End of the highest retransmitted range (0: none since the last RTO).
    high_rxt: u64,
    /// Retransmitted ranges judged lost again, sorted, disjoint, below
    /// `high_rxt`; at most `max_ranges` (more wait for the RTO).
    relost: Vec<(u64, u64)>,
}

impl Scoreboard {
    pub fn new(max_ranges: usize) -> Self {
        Self {
            max_ranges,
            ranges: Vec::with_capacity(max_ranges),
            bytes: 0,
            high_rxt: 0,
            relost: Vec::new(),
        }
    }

    /// Apply a cumulative ACK `una` and the ACK's SACK blocks (ignored when
    /// below `una` or above `nxt`, RFC 2018 §4 / RFC 6675 §4). A block that
    /// starts below `una` and ends above it counts only above `una`; a block
    /// that ends beyond `nxt`, or is empty, is bogus and ignored whole.
    pub fn on_ack(&mut self, una: u64, blocks: &[(u64, u64)], nxt: u64) -> AckUpdate {
        self.trim(una);
        let mut upd = AckUpdate::default();
        for &(s, e) in blocks {
            if e > nxt || s >= e {
                continue;
            }
            let s = s.max(una);
            if s >= e {
                // Entirely below una (e.g. a D-SACK, RFC 2883).
                continue;
            }
            let added = self.insert(s, e);
            if added > 0 {
                upd.newly_sacked += added;
                upd.sack_changed = true;
            }
        }
        upd
    }

    /// Forget everything below `una`.
    fn trim(&mut self, una: u64) {
        self.relost.retain_mut(|r| {
            r.0 = r.0.max(una);
            r.0 < r.1
        });
        let n = self.ranges.partition_point(|r| r.1 <= una);
        for r in &self.ranges[..n] {
            self.bytes -= r.1 - r.0;
        }
        self.ranges.drain(..n);
        if let Some(first) = self.ranges.first_mut() {
            if first.0 < una {
                self.bytes -= una - first.0;
                first.0 = una;
            }
        }
    }

    /// Add `[s, e)` (non-empty); the bytes it newly covers and keeps.
    fn insert(&mut self, s: u64, e: u64) -> u64 {
        let lo = self.ranges.partition_point(|r| r.1 < s);
        let hi = self.ranges.partition_point(|r| r.0 <= e);
        if lo == hi {
            if self.ranges.len() >= self.max_ranges {
                if lo == self.ranges.len() {
                    // The new block would be the highest: it goes.
                    return 0;
                }
                // Make room by forgetting the highest range.
                if let Some(last) = self.ranges.pop() {
                    self.bytes -= last.1 - last.0;
                }
            }
            // Within capacity: no reallocation.
            self.ranges.insert(lo, (s, e));
            self.bytes += e - s;
            return e - s;
        }
        let mut merged = (s, e);
        let mut covered = 0;
        for r in &self.ranges[lo..hi] {
            covered += r.1.min(e).saturating_sub(r.0.max(s));
            merged.0 = merged.0.min(r.0);
            merged.1 = merged.1.max(r.1);
            self.bytes -= r.1 - r.0;
        }
        self.bytes += merged.1 - merged.0;
        self.ranges[lo] = merged;
        self.ranges.drain(lo + 1..hi);
        (e - s) - covered
    }

    /// SACKed bytes in `[a, b)`.
    pub fn sacked_in(&self, a: u64, b: u64) -> u64 {
        self.ranges
            .iter()
            .map(|r| r.1.min(b).saturating_sub(r.0.max(a)))
            .sum()
    }

    /// The first offset at or above `from` that is not SACKed, and the end
    /// of the hole it starts (the next SACKed range, or `u64::MAX`).
    fn hole_at(&self, from: u64) -> (u64, u64) {
        let i = self.ranges.partition_point(|r| r.1 <= from);
        match self.ranges.get(i) {
            Some(r) if r.0 <= from => {
                let end = self.ranges.get(i + 1).map_or(u64::MAX, |n| n.0);
                (r.1, end)
            }
            Some(r) => (from, r.0),
            None => (from, u64::MAX),
        }
    }

    /// RFC 6675 IsLost(offset): `dupthresh` discontiguous SACKed segments
    /// of `mss` bytes, or more than (dupthresh-1)·mss SACKed bytes, above it.
    ///
    /// Segments are counted per SACKed range as ⌈bytes above `offset` /
    /// mss⌉, so small segments SACKed discontiguously each count.
    pub fn is_lost(&self, offset: u64, mss: u32, dupthresh: u32) -> bool {
        let mss = u64::from(mss.max(1));
        let from = offset.saturating_add(1);
        let mut segs = 0u64;
        let mut bytes = 0u64;
        for r in self.ranges.iter().rev() {
            if r.1 <= from {
                break;
            }
            let len = r.1 - r.0.max(from);
            bytes += len;
            segs += len.div_ceil(mss);
        }
        segs >= u64::from(dupthresh) || bytes > u64::from(dupthresh.saturating_sub(1)) * mss
    }

    /// RFC 6675 NextSeg (rules 1–3): the next range to send in recovery,
    /// `(start, len)`, len ≤ mss; `nxt` is SND.NXT, `end` is the end of the
    /// data the application has written. Every hole below `lost_below` is
    /// lost (after an RTO; 0 otherwise). Re-lost ranges come first.
    ///
    /// Rule 1 and 3 ranges stop short of the next SACKed byte; rule 2 does
    /// not look at the peer's window (the caller does). Rule 4 is not used.
    pub fn next_seg(
        &self,
        una: u64,
        nxt: u64,
        end: u64,
        mss: u32,
        dupthresh: u32,
        lost_below: u64,
    ) -> Option<(u64, u32)> {
        let mss = mss.max(1);
        let seg = |s: u64, e: u64| (s, (e - s).min(u64::from(mss)) as u32);
        for &(rs, re) in &self.relost {
            let (s, hole_end) = self.hole_at(rs.max(una));
            if s < re {
                return Some(seg(s, hole_end.min(re)));
            }
        }
        // (1.a): above HighRxt; (1.b): below the highest SACKed byte.
        let (s2, hole_end) = self.hole_at(una.max(self.high_rxt));
        if s2 < lost_below {
            return Some(seg(s2, hole_end.min(lost_below)));
        }
        let candidate = self.ranges.last().is_some_and(|last| s2 < last.0);
        // IsLost only gets weaker going up, so the first candidate decides.
        if candidate && self.is_lost(s2, mss, dupthresh) {
            return Some(seg(s2, hole_end));
        }
        if nxt < end {
            return Some(seg(nxt, end));
        }
        if candidate {
            return Some(seg(s2, hole_end));
        }
        None
    }

    /// Remember that `[start, end)` was retransmitted (HighRxt, for pipe);
    /// it is no longer re-lost.
    pub fn mark_retransmitted(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        self.high_rxt = self.high_rxt.max(end);
        if self.relost.is_empty() {
            return;
        }
        // Cut [start, end) out of the re-lost ranges (a range may split).
        let mut i = 0;
        while i < self.relost.len() {
            let (rs, re) = self.relost[i];
            if re <= start || rs >= end {
                i += 1;
                continue;
            }
            match (rs < start, re > end) {
                (true, true) => {
                    self.relost[i] = (rs, start);
                    if self.relost.len() < self.max_ranges {
                        self.relost.insert(i + 1, (end, re));
                    }
                    i += 2;
                }
                (true, false) => {
                    self.relost[i].1 = start;
                    i += 1;
                }
                (false, true) => {
                    self.relost[i].0 = end;
                    i += 1;
                }
                (false, false) => {
                    self.relost.remove(i);
                }
            }
        }
    }

    /// A retransmission of `[start, end)` is lost too: send it again first.
    /// Ignored (the RTO recovers it) when `max_ranges` are already held.
    pub fn mark_relost(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let lo = self.relost.partition_point(|r| r.1 < start);
        let hi = self.relost.partition_point(|r| r.0 <= end);
        if lo == hi {
            if self.relost.len() >= self.max_ranges {
                return;
            }
            if self.relost.capacity() == 0 {
                // First use on this connection; never grows after this.
                self.relost.reserve_exact(self.max_ranges);
            }
            self.relost.insert(lo, (start, end));
            return;
        }
        let s = start.min(self.relost[lo].0);
        let e = end.max(self.relost[hi - 1].1);
        self.relost[lo] = (s, e);
        self.relost.drain(lo + 1..hi);
    }

    /// Bytes in re-lost ranges not SACKed, within `[a, b)`.
    fn relost_unsacked(&self, a: u64, b: u64) -> u64 {
        self.relost
            .iter()
            .map(|&(s, e)| {
                let (s, e) = (s.max(a), e.min(b));
                if s < e {
                    (e - s) - self.sacked_in(s, e)
                } else {
                    0
                }
            })
            .sum()
    }

    /// RFC 6675 SetPipe: bytes considered in flight. Every un-SACKed byte
    /// of `[una, nxt)` counts once if not lost and once more if
    /// retransmitted (and that retransmission not judged lost). Every
    /// byte below `lost_below` is lost (see [`Scoreboard::next_seg`]).
    pub fn pipe(&self, una: u64, nxt: u64, mss: u32, dupthresh: u32, lost_below: u64) -> u64 {
        if nxt <= una {
            return 0;
        }
        // IsLost holds exactly below some point: find it.
        let (mut lo, mut hi) = (una, nxt);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.is_lost(mid, mss, dupthresh) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let unsacked = |a: u64, b: u64| {
            if a < b {
                (b - a) - self.sacked_in(a, b)
            } else {
                0
            }
        };
        let lo = lo.max(lost_below.min(nxt));
        let rxt_end = self.high_rxt.min(nxt);
        unsacked(lo, nxt) + unsacked(una, rxt_end) - self.relost_unsacked(una, rxt_end)
    }

    /// After an RTO (RFC 6675 §5.1): forget retransmission marks; keep or
    /// drop SACK information as the RFC allows (we keep it).
    pub fn on_rto(&mut self) {
        self.high_rxt = 0;
        self.relost.clear();
    }

    pub fn sacked_bytes(&self) -> u64 {
        self.bytes
    }

    /// The highest SACKed offset (HighACK+), if any: the end (exclusive) of
    /// the highest SACKed range.
    pub fn highest_sacked(&self) -> Option<u64> {
        self.ranges.last().map(|r| r.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn on_ack_merges_trims_and_filters() {
        let mut sb = Scoreboard::new(8);
        let u = sb.on_ack(0, &[(100, 200), (300, 400)], 1000);
        assert_eq!(
            u,
            AckUpdate {
                newly_sacked: 200,
                sack_changed: true
            }
        );
        // Repeated: nothing new.
        let u = sb.on_ack(0, &[(300, 400), (100, 200)], 1000);
        assert_eq!(u, AckUpdate::default());
        // Growing one block.
        let u = sb.on_ack(0, &[(150, 250)], 1000);
        assert_eq!(u.newly_sacked, 50);
        assert_eq!(sb.sacked_bytes(), 250);
        // Above nxt, empty, and below una: ignored.
        let u = sb.on_ack(0, &[(900, 1001), (500, 500), (600, 500)], 1000);
        assert_eq!(u, AckUpdate::default());
        let u = sb.on_ack(120, &[(0, 120)], 1000);
        assert_eq!(u, AckUpdate::default());
        assert_eq!(sb.sacked_bytes(), 230);
        // Cumulative ACK into the middle of a range trims it.
        sb.on_ack(220, &[], 1000);
        assert_eq!(sb.sacked_bytes(), 130);
        assert_eq!(sb.ranges, vec![(220, 250), (300, 400)]);
        // A block straddling una counts above it only.
        let u = sb.on_ack(260, &[(200, 280)], 1000);
        assert_eq!(u.newly_sacked, 20);
        assert_eq!(sb.ranges, vec![(260, 280), (300, 400)]);
        assert_eq!(sb.highest_sacked(), Some(400));
        sb.on_ack(400, &[], 1000);
        assert_eq!(sb.highest_sacked(), None);
        assert_eq!(sb.sacked_bytes(), 0);
    }

    #[test]
    fn bounded_forgets_highest() {
        let mut sb = Scoreboard::new(2);
        sb.on_ack(0, &[(10, 20), (30, 40)], 100);
        // Highest new block: dropped.
        let u = sb.on_ack(0, &[(50, 60)], 100);
        assert_eq!(u, AckUpdate::default());
        // Lower new block: the highest range goes.
        let u = sb.on_ack(0, &[(0, 5)], 100);
        assert_eq!(u.newly_sacked, 5);
        assert_eq!(sb.ranges, vec![(0, 5), (10, 20)]);
        assert_eq!(sb.sacked_bytes(), 15);
        // Touching merges without eviction.
        sb.on_ack(0, &[(5, 10)], 100);
        assert_eq!(sb.ranges, vec![(0, 20)]);
        assert_eq!(
            Scoreboard::new(0).on_ack(0, &[(1, 2)], 9),
            AckUpdate::default()
        );
    }

    #[test]
    fn is_lost_rules() {
        let mss = 100;
        let mut sb = Scoreboard::new(8);
        // Three SACKed segments above 0: lost by count (and by bytes > 200).
        sb.on_ack(0, &[(100, 400)], 1000);
        assert!(sb.is_lost(0, mss, 3));
        assert!(sb.is_lost(99, mss, 3));
        // Above 100: 299 bytes, 3 segments.
        assert!(sb.is_lost(100, mss, 3));
        // Above 199: 200 bytes, 2 segments: not lost.
        assert!(!sb.is_lost(199, mss, 3));
        // Three small discontiguous segments: lost by count only.
        let mut sb = Scoreboard::new(8);
        sb.on_ack(0, &[(100, 110), (200, 210), (300, 310)], 1000);
        assert!(sb.is_lost(50, mss, 3));
        assert!(!sb.is_lost(150, mss, 3));
        assert!(!sb.is_lost(50, mss, 4));
        // Nothing SACKed: never lost (dupthresh ≥ 1).
        assert!(!Scoreboard::new(4).is_lost(0, mss, 1));
    }

    #[test]
    fn next_seg_rules() {
        let mss = 100;
        let mut sb = Scoreboard::new(8);
        // una 0, nxt 1000; 100..400 SACKed: 0..100 lost.
        sb.on_ack(0, &[(100, 400)], 1000);
        assert_eq!(sb.next_seg(0, 1000, 2000, mss, 3, 0), Some((0, 100)));
        sb.mark_retransmitted(0, 100);
        // Rule 1 has nothing more below the SACKed data: rule 2, new data.
        assert_eq!(sb.next_seg(0, 1000, 2000, mss, 3, 0), Some((1000, 100)));
        assert_eq!(sb.next_seg(0, 1000, 1050, mss, 3, 0), Some((1000, 50)));
        // No new data: rule 3 has no candidate below HighSACK either.
        assert_eq!(sb.next_seg(0, 1000, 1000, mss, 3, 0), None);

        // A hole that is not lost: rule 2 first, rule 3 without new data.
        let mut sb = Scoreboard::new(8);
        sb.on_ack(0, &[(150, 200)], 1000);
        assert_eq!(sb.next_seg(0, 1000, 2000, mss, 3, 0), Some((1000, 100)));
        assert_eq!(sb.next_seg(0, 1000, 1000, mss, 3, 0), Some((0, 100)));
        // Rule 1/3 segments stop at the next SACKed byte.
        sb.mark_retransmitted(0, 100);
        assert_eq!(sb.next_seg(0, 1000, 1000, mss, 3, 0), Some((100, 50)));
        // After an RTO the marks are gone.
        sb.on_rto();
        assert_eq!(sb.next_seg(0, 1000, 1000, mss, 3, 0), Some((0, 100)));
    }

    #[test]
    fn after_an_rto_every_hole_below_the_old_flight_is_lost() {
        let mss = 100;
        let mut sb = Scoreboard::new(8);
        // One SACKed block in the middle of a 1000-byte flight: IsLost
        // holds below it only, but after an RTO the holes on both sides
        // of it are lost up to the RTO's SND.MAX.
        sb.on_ack(0, &[(300, 400)], 1000);
        sb.on_rto();
        assert_eq!(sb.next_seg(0, 1000, 2000, mss, 3, 1000), Some((0, 100)));
        sb.mark_retransmitted(0, 300);
        // Over the SACKed block to the hole above it, not to new data.
        assert_eq!(sb.next_seg(0, 1000, 2000, mss, 3, 1000), Some((400, 100)));
        sb.mark_retransmitted(400, 1000);
        assert_eq!(sb.next_seg(0, 1000, 2000, mss, 3, 1000), Some((1000, 100)));
        // In flight: the 900 bytes retransmitted, nothing else.
        assert_eq!(sb.pipe(0, 1000, mss, 3, 1000), 900);
        // Without the RTO's mark, 400..1000 is not lost and counts too.
        assert_eq!(sb.pipe(0, 1000, mss, 3, 0), 1800);
    }

    #[test]
    fn relost_retransmissions_go_first_and_leave_the_pipe() {
        let mss = 100;
        let mut sb = Scoreboard::new(8);
        sb.on_ack(0, &[(500, 900)], 1000);
        sb.mark_retransmitted(0, 300);
        assert_eq!(sb.next_seg(0, 1000, 2000, mss, 3, 0), Some((300, 100)));
        // 300 retransmitted + 100 above the SACKed block (900..1000).
        assert_eq!(sb.pipe(0, 1000, mss, 3, 0), 400);
        // The retransmission of 100..200 is lost again: it goes before
        // 300..400 and no longer counts as in flight.
        sb.mark_relost(100, 200);
        assert_eq!(sb.pipe(0, 1000, mss, 3, 0), 300);
        assert_eq!(sb.next_seg(0, 1000, 2000, mss, 3, 0), Some((100, 100)));
        sb.mark_retransmitted(100, 150);
        assert_eq!(sb.next_seg(0, 1000, 2000, mss, 3, 0), Some((150, 50)));
        sb.mark_retransmitted(150, 200);
        assert_eq!(sb.next_seg(0, 1000, 2000, mss, 3, 0), Some((300, 100)));
        // A re-lost range the peer SACKs meanwhile is skipped, and one
        // below the cumulative ACK is forgotten.
        sb.mark_relost(0, 100);
        sb.mark_relost(200, 250);
        sb.on_ack(100, &[(200, 250)], 1000);
        assert_eq!(sb.next_seg(100, 1000, 2000, mss, 3, 0), Some((300, 100)));
        assert!(sb.relost.iter().all(|r| r.0 >= 100));
        // An RTO forgets them.
        sb.mark_relost(100, 200);
        sb.on_rto();
        assert!(sb.relost.is_empty());
    }

    #[test]
    fn relost_is_bounded_and_merges() {
        let mut sb = Scoreboard::new(2);
        sb.mark_relost(10, 20);
        sb.mark_relost(30, 40);
        sb.mark_relost(50, 60);
        assert_eq!(sb.relost, vec![(10, 20), (30, 40)]);
        sb.mark_relost(15, 35);
        assert_eq!(sb.relost, vec![(10, 40)]);
        sb.mark_retransmitted(20, 30);
        assert_eq!(sb.relost, vec![(10, 20), (30, 40)]);
    }

    #[test]
    fn pipe_rfc6675() {
        let mss = 100;
        let mut sb = Scoreboard::new(8);
        // Nothing SACKed: everything in flight.
        assert_eq!(sb.pipe(0, 1000, mss, 3, 0), 1000);
        assert_eq!(sb.pipe(5, 5, mss, 3, 0), 0);
        // 100..400 SACKed: 0..100 lost (0), 400..1000 not lost (600).
        sb.on_ack(0, &[(100, 400)], 1000);
        assert_eq!(sb.pipe(0, 1000, mss, 3, 0), 600);
        // Retransmitting the lost segment puts it back in the pipe.
        sb.mark_retransmitted(0, 100);
        assert_eq!(sb.pipe(0, 1000, mss, 3, 0), 700);
        sb.on_rto();
        assert_eq!(sb.pipe(0, 1000, mss, 3, 0), 600);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Send(u64),
        /// Advance una by this much (up to nxt), with blocks relative to
        /// una - 20.
        Ack(u64, Vec<(u64, u64)>),
        Rexmit(u64, u64),
        Rto,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            2 => (1u64..60).prop_map(Op::Send),
            5 => (
                prop_oneof![3 => Just(0u64), 1 => 1u64..40],
                proptest::collection::vec((0u64..150, 1u64..40), 0..4)
            )
                .prop_map(|(a, b)| Op::Ack(a, b)),
            1 => (0u64..80, 1u64..30).prop_map(|(s, l)| Op::Rexmit(s, l)),
            1 => Just(Op::Rto),
        ]
    }

    struct Model {
        sacked: BTreeSet<u64>,
        high_rxt: u64,
    }

    impl Model {
        fn is_lost(&self, s: u64, mss: u32, dt: u32) -> bool {
            let mss = u64::from(mss.max(1));
            let (mut segs, mut bytes, mut run, mut prev) = (0u64, 0u64, 0u64, None);
            for &o in self.sacked.range(s + 1..) {
                bytes += 1;
                if prev == Some(o - 1) {
                    run += 1;
                } else {
                    segs += run.div_ceil(mss);
                    run = 1;
                }
                prev = Some(o);
            }
            segs += run.div_ceil(mss);
            segs >= u64::from(dt) || bytes > u64::from(dt - 1) * mss
        }

        fn next_seg(&self, una: u64, nxt: u64, end: u64, mss: u32, dt: u32) -> Option<(u64, u32)> {
            let high = self.sacked.iter().next_back().copied();
            let seg = |s: u64| {
                let mut l = 0;
                while l < mss
                    && s + u64::from(l) < nxt
                    && !self.sacked.contains(&(s + u64::from(l)))
                {
                    l += 1;
                }
                (s, l)
            };
            let cands = (una.max(self.high_rxt)..nxt)
                .filter(|s| !self.sacked.contains(s) && high.is_some_and(|h| *s < h));
            if let Some(s) = cands.clone().find(|&s| self.is_lost(s, mss, dt)) {
                return Some(seg(s));
            }
            if nxt < end {
                return Some((nxt, (end - nxt).min(u64::from(mss)) as u32));
            }
            cands.clone().next().map(seg)
        }

        fn pipe(&self, una: u64, nxt: u64, mss: u32, dt: u32) -> u64 {
            (una..nxt)
                .filter(|s| !self.sacked.contains(s))
                .map(|s| u64::from(!self.is_lost(s, mss, dt)) + u64::from(s < self.high_rxt))
                .sum()
        }
    }

    proptest! {
        #[test]
        fn matches_model(ops in proptest::collection::vec(op(), 1..40),
                         mss in 1u32..12, dt in 1u32..5, extra in 0u64..30) {
            let mut sb = Scoreboard::new(1000);
            let mut m = Model { sacked: BTreeSet::new(), high_rxt: 0 };
            let (mut una, mut nxt) = (0u64, 20u64);
            for op in ops {
                match op {
                    Op::Send(n) => nxt += n,
                    Op::Ack(a, blocks) => {
                        una = (una + a).min(nxt);
                        let abs: Vec<(u64, u64)> = blocks
                            .iter()
                            .map(|&(s, l)| ((una + s).saturating_sub(20), (una + s + l).saturating_sub(20)))
                            .collect();
                        m.sacked.retain(|&o| o >= una);
                        let mut newly = 0;
                        for &(s, e) in &abs {
                            if e > nxt || s >= e {
                                continue;
                            }
                            for o in s.max(una)..e {
                                newly += u64::from(m.sacked.insert(o));
                            }
                        }
                        let u = sb.on_ack(una, &abs, nxt);
                        prop_assert_eq!(u, AckUpdate { newly_sacked: newly, sack_changed: newly > 0 });
                    }
                    Op::Rexmit(s, l) => {
                        sb.mark_retransmitted(una + s, una + s + l);
                        m.high_rxt = m.high_rxt.max(una + s + l);
                    }
                    Op::Rto => {
                        sb.on_rto();
                        m.high_rxt = 0;
                    }
                }
                prop_assert_eq!(sb.sacked_bytes(), m.sacked.len() as u64);
                prop_assert_eq!(sb.highest_sacked(), m.sacked.iter().next_back().map(|h| h + 1));
                for s in una.saturating_sub(2)..nxt + 2 {
                    prop_assert_eq!(sb.is_lost(s, mss, dt), m.is_lost(s, mss, dt), "is_lost({})", s);
                }
                for end in [nxt, nxt + extra] {
                    prop_assert_eq!(sb.next_seg(una, nxt, end, mss, dt, 0), m.next_seg(una, nxt, end, mss, dt));
                }
                prop_assert_eq!(sb.pipe(una, nxt, mss, dt, 0), m.pipe(una, nxt, mss, dt));
            }
        }

        #[test]
        fn bounded_is_a_subset(max in 0usize..5, ops in proptest::collection::vec(op(), 1..40)) {
            let mut sb = Scoreboard::new(max);
            let cap = sb.ranges.capacity();
            let mut full: BTreeSet<u64> = BTreeSet::new();
            let (mut una, mut nxt) = (0u64, 20u64);
            for op in ops {
                match op {
                    Op::Send(n) => nxt += n,
                    Op::Ack(a, blocks) => {
                        una = (una + a).min(nxt);
                        let abs: Vec<(u64, u64)> = blocks
                            .iter()
                            .map(|&(s, l)| ((una + s).saturating_sub(20), (una + s + l).saturating_sub(20)))
                            .filter(|&(s, e)| s < e && e <= nxt)
                            .collect();
                        full.retain(|&o| o >= una);
                        for &(s, e) in &abs {
                            full.extend(s.max(una)..e);
                        }
                        sb.on_ack(una, &abs, nxt);
                    }
                    Op::Rexmit(s, l) => sb.mark_retransmitted(una + s, una + s + l),
                    Op::Rto => sb.on_rto(),
                }
                prop_assert!(sb.ranges.len() <= max);
                prop_assert_eq!(sb.ranges.capacity(), cap);
                let mut total = 0;
                let mut prev_end = None;
                for &(s, e) in &sb.ranges {
                    prop_assert!(s < e && s >= una);
                    prop_assert!(prev_end.is_none_or(|p| p < s));
                    prev_end = Some(e);
                    total += e - s;
                    prop_assert!((s..e).all(|o| full.contains(&o)));
                }
                prop_assert_eq!(sb.sacked_bytes(), total);
            }
        }
    }
}
