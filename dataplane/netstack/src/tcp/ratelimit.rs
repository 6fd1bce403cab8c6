//! Token bucket, e.g. for RFC 5961 §7 challenge ACKs and for RSTs.
//!
//! Integer arithmetic over [`Time`] nanoseconds: credit is kept in units of
//! 1/1e9 token, so `elapsed_ns · rate_per_sec` is added exactly and nothing
//! drifts however often the bucket is polled.

use crate::time::Time;

/// Credit units per token (one token per second at rate 1 is 1e9 ns).
const UNIT: u64 = 1_000_000_000;

#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate_per_sec: u32,
    burst: u32,
    /// Credit in units of 1/UNIT token, at most `burst · UNIT`.
    credit: u64,
    /// When credit was last brought up to date.
    last: Time,
}

impl TokenBucket {
    /// `rate_per_sec` tokens per second, at most `burst` saved; starts full.
    pub fn new(rate_per_sec: u32, burst: u32, now: Time) -> Self {
        Self {
            rate_per_sec,
            burst,
            credit: Self::cap(burst),
            last: now,
        }
    }

    fn cap(burst: u32) -> u64 {
        // u32::MAX · 1e9 < u64::MAX.
        u64::from(burst) * UNIT
    }

    /// Take one token if there is one.
    pub fn try_take(&mut self, now: Time) -> bool {
        self.refill(now);
        if self.credit >= UNIT {
            self.credit -= UNIT;
            true
        } else {
            false
        }
    }

    fn refill(&mut self, now: Time) {
        if now <= self.last {
            // Time does not run backwards here; never move `last` back.
            return;
        }
        let elapsed = now.as_nanos() - self.last.as_nanos();
        self.last = now;
        let cap = Self::cap(self.burst);
        let add = u128::from(elapsed) * u128::from(self.rate_per_sec);
        let room = cap.saturating_sub(self.credit);
        self.credit += u64::try_from(add).unwrap_or(u64::MAX).min(room);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn drain(b: &mut TokenBucket, now: Time) -> u32 {
        let mut n = 0;
        while b.try_take(now) {
            n += 1;
        }
        n
    }

    #[test]
    fn starts_full_and_caps_at_burst() {
        let t0 = Time::from_millis(1000);
        let mut b = TokenBucket::new(10, 5, t0);
        assert_eq!(drain(&mut b, t0), 5);
        // An hour later: still only a burst.
        assert_eq!(drain(&mut b, t0 + core::time::Duration::from_secs(3600)), 5);
    }

    #[test]
    fn refill_is_exact() {
        let t0 = Time::ZERO;
        let mut b = TokenBucket::new(3, 10, t0);
        assert_eq!(drain(&mut b, t0), 10);
        // 3/s: one token every 333_333_333.33 ns.
        assert!(!b.try_take(Time::from_nanos(333_333_333)));
        assert!(b.try_take(Time::from_nanos(333_333_334)));
        assert!(!b.try_take(Time::from_nanos(666_666_666)));
        assert!(b.try_take(Time::from_nanos(666_666_667)));
        assert!(b.try_take(Time::from_nanos(1_000_000_000)));
        assert!(!b.try_take(Time::from_nanos(1_000_000_000)));
    }

    #[test]
    fn no_drift_when_polled_often() {
        // 7 tokens/s polled every 10 µs for 10 s: exactly 70 tokens (the
        // burst of 2 keeps the cap from cutting off fractional credit).
        let mut b = TokenBucket::new(7, 2, Time::ZERO);
        assert_eq!(drain(&mut b, Time::ZERO), 2);
        let mut got = 0;
        for i in 1..=1_000_000u64 {
            if b.try_take(Time::from_micros(i * 10)) {
                got += 1;
            }
        }
        assert_eq!(got, 70);
    }

    #[test]
    fn zero_rate_and_zero_burst() {
        let mut b = TokenBucket::new(0, 2, Time::ZERO);
        assert_eq!(drain(&mut b, Time::ZERO), 2);
        assert_eq!(drain(&mut b, Time::from_millis(1_000_000)), 0);
        let mut z = TokenBucket::new(1000, 0, Time::ZERO);
        assert_eq!(drain(&mut z, Time::from_millis(1_000_000)), 0);
    }

    #[test]
    fn time_going_back_gives_nothing() {
        let mut b = TokenBucket::new(1, 1, Time::from_millis(5000));
        assert!(b.try_take(Time::from_millis(5000)));
        assert!(!b.try_take(Time::from_millis(1000)));
        assert!(!b.try_take(Time::from_millis(5999)));
        assert!(b.try_take(Time::from_millis(6000)));
    }

    #[test]
    fn huge_values_do_not_overflow() {
        let mut b = TokenBucket::new(u32::MAX, u32::MAX, Time::ZERO);
        assert!(b.try_take(Time::MAX));
        let mut b = TokenBucket::new(u32::MAX, 1, Time::ZERO);
        assert!(b.try_take(Time::ZERO));
        assert!(b.try_take(Time::MAX));
    }

    proptest! {
        /// Every answer matches an exact-rational model of the bucket, and
        /// tokens granted never exceed burst + rate·t.
        #[test]
        fn matches_model(rate in 0u32..5000, burst in 0u32..50,
                         steps in proptest::collection::vec((0u64..50_000_000, 0u32..4), 1..200)) {
            let mut b = TokenBucket::new(rate, burst, Time::ZERO);
            // Model in exact rationals: credit·1e9.
            let cap = u128::from(burst) * 1_000_000_000;
            let mut credit = cap;
            let mut now = 0u64;
            let mut granted = 0u128;
            for (dt, takes) in steps {
                now += dt;
                credit = (credit + u128::from(dt) * u128::from(rate)).min(cap);
                for _ in 0..takes {
                    let want = credit >= 1_000_000_000;
                    if want {
                        credit -= 1_000_000_000;
                        granted += 1;
                    }
                    prop_assert_eq!(b.try_take(Time::from_nanos(now)), want);
                }
            }
            prop_assert!(granted * 1_000_000_000
                <= cap + u128::from(now) * u128::from(rate));
        }
    }
}
