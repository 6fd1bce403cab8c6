//! A hierarchical timing wheel for many connections: one deadline per key
//! (a connection slot multiplexes its own timers into its earliest
//! deadline), O(1) set and cancel, no allocation after warm-up.
//!
//! Layout: [`LEVELS`] levels of 64 slots over ticks (level `L` slots span
//! 64^L ticks), and an overflow list for deadlines beyond 64^LEVELS ticks
//! of the wheel's time. An entry sits at the level of the highest 6-bit
//! group in which its tick differs from the wheel's tick (the layout of
//! tokio's timer wheel), so every entry of a lower level is earlier than
//! every entry of a higher one, the earliest slot is found with one
//! bit scan per level, and higher slots cascade down as time reaches them.
//! Slots are intrusive doubly-linked lists through a table indexed by key.
//!
//! Keys index that table: use dense keys (connection slot numbers); memory
//! is proportional to the largest key ever armed.
//!
//! Exactness: the wheel files an entry under the tick that contains its
//! deadline but keeps the deadline itself; a key fires in the first
//! [`TimerWheel::advance`] whose `now` is at or after its deadline, never
//! before, and [`TimerWheel::next_deadline`] is exact (not rounded to a
//! tick).

use core::cell::Cell;
use core::time::Duration;

use crate::time::Time;

/// Levels of 64 slots; beyond 64^LEVELS ticks, the overflow list.
pub const LEVELS: usize = 6;
const SLOTS: usize = 64;
const OVERFLOW: u16 = (LEVELS * SLOTS) as u16;
const UNARMED: u16 = u16::MAX;

#[derive(Clone, Copy, Debug)]
struct Entry {
    deadline: u64,
    /// Tick of the deadline, or the wheel's tick if that was later.
    when: u64,
    /// Slot index (level·64 + slot), OVERFLOW, or UNARMED.
    slot: u16,
    prev: Option<u32>,
    next: Option<u32>,
}

const EMPTY: Entry = Entry {
    deadline: 0,
    when: 0,
    slot: UNARMED,
    prev: None,
    next: None,
};

#[derive(Debug)]
pub struct TimerWheel {
    tick: Duration,
    tick_ns: u64,
    /// The wheel's tick: every slot before it has been processed.
    elapsed: u64,
    /// The latest `now` seen (advance never moves backwards).
    now: u64,
    entries: Vec<Entry>,
    heads: [Option<u32>; LEVELS * SLOTS + 1],
    occupied: [u64; LEVELS],
    len: usize,
    /// Lower bound of the overflow list's ticks (meaningless when empty).
    overflow_min: u64,
    /// Fired entries of one advance, sorted before they are handed out.
    scratch: Vec<(u64, u32)>,
    /// Cached exact next deadline: None when unknown.
    next_cache: Cell<Option<Option<Time>>>,
}

impl TimerWheel {
    /// A wheel starting at `now` with resolution `tick` (deadlines are
    /// rounded up to a tick: a timer never fires early). A zero tick is
    /// taken as 1 ns.
    pub fn new(now: Time, tick: Duration) -> Self {
        let tick_ns = u64::try_from(tick.as_nanos()).unwrap_or(u64::MAX).max(1);
        Self {
            tick,
            tick_ns,
            elapsed: now.as_nanos() / tick_ns,
            now: now.as_nanos(),
            entries: Vec::new(),
            heads: [None; LEVELS * SLOTS + 1],
            occupied: [0; LEVELS],
            len: 0,
            overflow_min: u64::MAX,
            scratch: Vec::new(),
            next_cache: Cell::new(Some(None)),
        }
    }
    /// A wheel that holds keys below `keys` without allocating later.
    pub fn with_capacity(now: Time, tick: Duration, keys: usize) -> Self {
        let mut w = Self::new(now, tick);
        w.entries.resize(keys, EMPTY);
        w.scratch.reserve(keys);
        w
    }
    pub fn tick(&self) -> Duration {
        self.tick
    }
    /// The latest `now` passed to [`TimerWheel::advance`] (or `new`).
    pub fn now(&self) -> Time {
        Time::from_nanos(self.now)
    }
    /// Arm (or re-arm) `key` for `deadline`; replaces any earlier deadline
    /// of the key. A deadline at or before the wheel's time fires at the
    /// next `advance`.
    pub fn set(&mut self, key: u32, deadline: Time) {
        let idx = key as usize;
        if idx >= self.entries.len() {
            self.entries.resize(idx + 1, EMPTY);
        }
        let was_armed = self.entries[idx].slot != UNARMED;
        let old = self.entries[idx].deadline;
        if was_armed {
            self.unlink(key);
        } else {
            self.len += 1;
        }
        let d = deadline.as_nanos();
        self.entries[idx].deadline = d;
        self.entries[idx].when = (d / self.tick_ns).max(self.elapsed);
        self.link(key);
        let t = Time::from_nanos(d);
        match self.next_cache.get() {
            Some(Some(min)) if was_armed && old == min.as_nanos() && d > old => {
                self.next_cache.set(None)
            }
            Some(Some(min)) => self.next_cache.set(Some(Some(min.min(t)))),
            Some(None) => self.next_cache.set(Some(Some(t))),
            None => {}
        }
    }
    /// Disarm `key`; a no-op if it is not armed.
    pub fn cancel(&mut self, key: u32) {
        let armed = self
            .entries
            .get(key as usize)
            .is_some_and(|e| e.slot != UNARMED);
        if armed {
            let d = self.entries[key as usize].deadline;
            self.unlink(key);
            self.entries[key as usize].slot = UNARMED;
            self.len -= 1;
            if let Some(Some(min)) = self.next_cache.get() {
                if min.as_nanos() == d {
                    self.next_cache.set(None);
                }
            }
        }
    }
    pub fn deadline(&self, key: u32) -> Option<Time> {
        self.entries
            .get(key as usize)
            .filter(|e| e.slot != UNARMED)
            .map(|e| Time::from_nanos(e.deadline))
    }
    /// The earliest armed deadline, for the poll loop's sleep.
    pub fn next_deadline(&self) -> Option<Time> {
        if let Some(cached) = self.next_cache.get() {
            return cached;
        }
        let found = self.find_next_deadline();
        self.next_cache.set(Some(found));
        found
    }
    /// Move the wheel to `now`; append every key whose deadline is at or
    /// before `now` to `expired` (in deadline order, ties by key) and
    /// disarm it.
    pub fn advance(&mut self, now: Time, expired: &mut Vec<u32>) {
        let now = now.as_nanos().max(self.now);
        self.now = now;
        let target = (now / self.tick_ns).max(self.elapsed);
        self.scratch.clear();
        if self.len == 0 {
            self.elapsed = target;
            return;
        }
        while let Some((level, slot)) = self.next_slot() {
            let start = self.slot_start(level, slot);
            if start > target {
                break;
            }
            self.elapsed = start;
            self.process_slot(level, slot, now, start == target);
            if start == target && level == 0 {
                break;
            }
        }
        self.elapsed = target;
        self.pull_overflow(now);
        if !self.scratch.is_empty() {
            self.scratch.sort_unstable();
            expired.extend(self.scratch.iter().map(|&(_, k)| k));
            self.scratch.clear();
            self.next_cache.set(None);
        }
    }
    /// Armed keys.
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The slot an entry with tick `when` belongs in, given the wheel's tick.
    fn slot_for(&self, when: u64) -> u16 {
        let masked = when ^ self.elapsed;
        if masked == 0 {
            return (when % SLOTS as u64) as u16;
        }
        let level = (63 - masked.leading_zeros()) as usize / 6;
        if level >= LEVELS {
            return OVERFLOW;
        }
        let slot = ((when >> (6 * level)) % SLOTS as u64) as usize;
        (level * SLOTS + slot) as u16
    }
    fn link(&mut self, key: u32) {
        let idx = key as usize;
        let when = self.entries[idx].when.max(self.elapsed);
        self.entries[idx].when = when;
        let slot = self.slot_for(when);
        let head = self.heads[slot as usize];
        self.entries[idx].slot = slot;
        self.entries[idx].prev = None;
        self.entries[idx].next = head;
        if let Some(h) = head {
            self.entries[h as usize].prev = Some(key);
        }
        self.heads[slot as usize] = Some(key);
        if slot == OVERFLOW {
            self.overflow_min = self.overflow_min.min(when);
        } else {
            let (level, s) = (slot as usize / SLOTS, slot as usize % SLOTS);
            self.occupied[level] |= 1 << s;
        }
    }
    /// Take `key` out of its slot's list (leaves `slot` as it was).
    fn unlink(&mut self, key: u32) {
        let e = self.entries[key as usize];
        match e.prev {
            Some(p) => self.entries[p as usize].next = e.next,
            None => self.heads[e.slot as usize] = e.next,
        }
        if let Some(n) = e.next {
            self.entries[n as usize].prev = e.prev;
        }
        if e.slot < OVERFLOW && self.heads[e.slot as usize].is_none() {
            let (level, s) = (e.slot as usize / SLOTS, e.slot as usize % SLOTS);
            self.occupied[level] &= !(1 << s);
        }
        if e.slot == OVERFLOW && self.heads[OVERFLOW as usize].is_none() {
            self.overflow_min = u64::MAX;
        }
    }
    /// The earliest occupied slot: lowest level, first slot at or after
    /// the wheel's position in it.
    fn next_slot(&self) -> Option<(usize, usize)> {
        (0..LEVELS).find_map(|level| {
            let pos = (self.elapsed >> (6 * level)) % SLOTS as u64;
            let bits = self.occupied[level] & (u64::MAX << pos);
            (bits != 0).then(|| (level, bits.trailing_zeros() as usize))
        })
    }
    /// First tick of `slot` of `level` in the wheel's current rotation.
    fn slot_start(&self, level: usize, slot: usize) -> u64 {
        let slot_span = 1u64 << (6 * level);
        let level_span = slot_span << 6; // 6·LEVELS ≤ 36 bits: no overflow
        (self.elapsed & !(level_span - 1)) + slot as u64 * slot_span
    }
    /// Fire or cascade every entry of a slot. In the slot of the current
    /// tick (`partial`), entries whose deadline is after `now` stay.
    fn process_slot(&mut self, level: usize, slot: usize, now: u64, partial: bool) {
        let idx = level * SLOTS + slot;
        let mut cur = self.heads[idx].take();
        self.occupied[level] &= !(1 << slot);
        while let Some(key) = cur {
            let e = self.entries[key as usize];
            cur = e.next;
            if e.deadline <= now {
                self.fire(key);
            } else if level == 0 && !partial {
                // A whole tick before `now` holds only earlier deadlines.
                self.fire(key);
            } else {
                self.link(key);
            }
        }
    }
    fn fire(&mut self, key: u32) {
        let e = &mut self.entries[key as usize];
        e.slot = UNARMED;
        self.scratch.push((e.deadline, key));
        self.len -= 1;
    }
    /// Move overflow entries that now fit in the levels (or are due).
    fn pull_overflow(&mut self, now: u64) {
        let fits = |when: u64, elapsed: u64| (when ^ elapsed) >> (6 * LEVELS) == 0;
        if self.heads[OVERFLOW as usize].is_none()
            || (!fits(self.overflow_min, self.elapsed) && self.overflow_min > self.elapsed)
        {
            return;
        }
        let mut cur = self.heads[OVERFLOW as usize].take();
        self.overflow_min = u64::MAX;
        while let Some(key) = cur {
            let e = self.entries[key as usize];
            cur = e.next;
            if e.deadline <= now {
                self.fire(key);
            } else {
                self.link(key);
            }
        }
    }
    fn find_next_deadline(&self) -> Option<Time> {
        let head = match self.next_slot() {
            Some((level, slot)) => self.heads[level * SLOTS + slot],
            None => self.heads[OVERFLOW as usize],
        };
        let mut min = None::<u64>;
        let mut cur = head;
        while let Some(key) = cur {
            let e = &self.entries[key as usize];
            min = Some(min.map_or(e.deadline, |m| m.min(e.deadline)));
            cur = e.next;
        }
        min.map(Time::from_nanos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Time {
        Time::from_millis(v)
    }

    fn run(w: &mut TimerWheel, now: Time) -> Vec<u32> {
        let mut v = Vec::new();
        w.advance(now, &mut v);
        v
    }

    #[test]
    fn fires_in_deadline_order_never_early() {
        let mut w = TimerWheel::new(ms(0), Duration::from_millis(1));
        assert!(w.is_empty());
        assert_eq!(w.next_deadline(), None);
        w.set(3, Time::from_micros(2500));
        w.set(1, ms(100));
        w.set(2, Time::from_micros(2100));
        w.set(7, ms(5000));
        assert_eq!(w.len(), 4);
        assert_eq!(w.next_deadline(), Some(Time::from_micros(2100)));
        assert_eq!(run(&mut w, Time::from_micros(2099)), Vec::<u32>::new());
        assert_eq!(run(&mut w, Time::from_micros(2100)), vec![2]);
        assert_eq!(w.next_deadline(), Some(Time::from_micros(2500)));
        assert_eq!(run(&mut w, Time::from_micros(2400)), Vec::<u32>::new());
        assert_eq!(run(&mut w, ms(99)), vec![3]);
        assert_eq!(w.deadline(1), Some(ms(100)));
        assert_eq!(w.deadline(3), None);
        assert_eq!(run(&mut w, ms(6000)), vec![1, 7]);
        assert!(w.is_empty());
        assert_eq!(w.next_deadline(), None);
    }

    #[test]
    fn rearm_cancel_and_past_deadlines() {
        let mut w = TimerWheel::new(ms(1000), Duration::from_millis(1));
        w.set(5, ms(1200));
        w.set(5, ms(1100)); // replaces
        assert_eq!(w.len(), 1);
        assert_eq!(w.deadline(5), Some(ms(1100)));
        w.set(5, ms(1300)); // later replaces too
        assert_eq!(w.next_deadline(), Some(ms(1300)));
        assert_eq!(run(&mut w, ms(1200)), Vec::<u32>::new());
        w.cancel(5);
        w.cancel(5);
        w.cancel(99);
        assert!(w.is_empty());
        assert_eq!(run(&mut w, ms(2000)), Vec::<u32>::new());
        // In the past: fires at the next advance even without moving time.
        w.set(1, ms(10));
        w.set(0, ms(2000));
        assert_eq!(w.next_deadline(), Some(ms(10)));
        assert_eq!(run(&mut w, ms(2000)), vec![1, 0]);
        // Time going backwards is taken as no movement.
        w.set(2, ms(1990));
        assert_eq!(run(&mut w, ms(5)), vec![2]);
    }

    #[test]
    fn ties_by_key_and_same_tick() {
        let mut w = TimerWheel::new(ms(0), Duration::from_millis(10));
        for k in [9, 4, 6] {
            w.set(k, ms(25));
        }
        w.set(1, ms(21));
        assert_eq!(run(&mut w, ms(24)), vec![1]);
        assert_eq!(run(&mut w, ms(25)), vec![4, 6, 9]);
    }

    #[test]
    fn far_deadlines_cascade_and_overflow() {
        let tick = Duration::from_micros(1);
        let mut w = TimerWheel::new(Time::ZERO, tick);
        let year = Time::from_millis(365 * 24 * 3600 * 1000);
        // 64^6 µs ≈ 19 h: a year is in the overflow list.
        w.set(1, year);
        w.set(2, Time::from_millis(3_600_000));
        w.set(3, Time::MAX);
        w.set(4, Time::from_micros(4097));
        assert_eq!(w.next_deadline(), Some(Time::from_micros(4097)));
        assert_eq!(run(&mut w, Time::from_micros(4096)), Vec::<u32>::new());
        assert_eq!(run(&mut w, Time::from_micros(4097)), vec![4]);
        assert_eq!(w.next_deadline(), Some(Time::from_millis(3_600_000)));
        w.cancel(2);
        assert_eq!(w.next_deadline(), Some(year));
        assert_eq!(
            run(&mut w, year - Duration::from_nanos(1)),
            Vec::<u32>::new()
        );
        assert_eq!(w.next_deadline(), Some(year));
        assert_eq!(run(&mut w, year), vec![1]);
        assert_eq!(w.next_deadline(), Some(Time::MAX));
        assert_eq!(run(&mut w, Time::MAX), vec![3]);
        assert!(w.is_empty());
    }

    #[test]
    fn capacity_and_odd_ticks() {
        let mut w = TimerWheel::with_capacity(ms(0), Duration::ZERO, 16);
        w.set(15, Time::from_nanos(3));
        w.set(100_000, Time::from_nanos(2));
        assert_eq!(run(&mut w, Time::from_nanos(3)), vec![100_000, 15]);
        let mut w = TimerWheel::new(ms(0), Duration::MAX);
        w.set(1, ms(5));
        assert_eq!(run(&mut w, ms(4)), Vec::<u32>::new());
        assert_eq!(run(&mut w, ms(5)), vec![1]);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;
        use std::collections::BTreeMap;

        #[derive(Clone, Debug)]
        enum Op {
            Set(u32, u64),
            Cancel(u32),
            Advance(u64),
        }

        fn op() -> impl Strategy<Value = Op> {
            let delta = prop_oneof![
                0u64..100,
                0u64..5_000,
                0u64..1 << 20,
                0u64..1 << 40,
                Just(u64::MAX),
            ];
            prop_oneof![
                (0u32..20, delta.clone()).prop_map(|(k, d)| Op::Set(k, d)),
                (0u32..20).prop_map(Op::Cancel),
                delta.prop_map(Op::Advance),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]
            #[test]
            fn never_early_never_late_never_lost(
                tick in prop_oneof![Just(1u64), Just(7), Just(1000), Just(1 << 20)],
                start in 0u64..1 << 30,
                ops in proptest::collection::vec(op(), 1..80),
            ) {
                let mut w = TimerWheel::new(Time::from_nanos(start), Duration::from_nanos(tick));
                let mut model: BTreeMap<u32, u64> = BTreeMap::new();
                let mut now = start;
                for op in ops {
                    match op {
                        Op::Set(k, d) => {
                            // Relative to now, sometimes in the past.
                            let at = if d == u64::MAX { d } else { now.saturating_add(d).saturating_sub(50) };
                            w.set(k, Time::from_nanos(at));
                            model.insert(k, at);
                        }
                        Op::Cancel(k) => {
                            w.cancel(k);
                            model.remove(&k);
                        }
                        Op::Advance(d) => {
                            now = now.saturating_add(d);
                            let mut got = Vec::new();
                            w.advance(Time::from_nanos(now), &mut got);
                            let mut due: Vec<(u64, u32)> = model
                                .iter()
                                .filter(|(_, &at)| at <= now)
                                .map(|(&k, &at)| (at, k))
                                .collect();
                            due.sort_unstable();
                            let want: Vec<u32> = due.iter().map(|&(_, k)| k).collect();
                            prop_assert_eq!(&got, &want);
                            for k in got {
                                model.remove(&k);
                            }
                        }
                    }
                    prop_assert_eq!(w.len(), model.len());
                    let min = model.values().min().copied().map(Time::from_nanos);
                    prop_assert_eq!(w.next_deadline(), min);
                    for k in 0..20 {
                        prop_assert_eq!(w.deadline(k), model.get(&k).copied().map(Time::from_nanos));
                    }
                }
            }
        }
    }
}
