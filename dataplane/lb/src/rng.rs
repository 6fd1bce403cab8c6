//! A tiny deterministic PRNG: SplitMix64.
//!
//! The crate reads no entropy of its own. Every component that needs
//! randomness (ejection jitter, power-of-two choices, retry backoff) owns a
//! [`SplitMix64`] seeded by its caller, so a test, or a replay of recorded
//! inputs, sees the same choices every run. Not for anything an attacker
//! must not predict.

use core::time::Duration;

/// SplitMix64 (Steele, Lea, Flood 2014; the seeding generator of
/// xoshiro): a 64-bit counter passed through a bijective finaliser.
/// Every seed, zero included, gives a full-period stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub const fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, n)`; 0 when `n` is 0.
    ///
    /// Lemire's multiply-shift without the rejection step: the bias is at
    /// most `n / 2^64`, far below anything a balancer or a jitter can show.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `[0, d)` at nanosecond resolution; zero when `d` is zero.
    /// Durations beyond `u64::MAX` nanoseconds (584 years) are clamped.
    pub fn duration_below(&mut self, d: Duration) -> Duration {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(self.below(ns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_stream() {
        // First outputs for seed 1234567 from the reference C code
        // (prng.di.unimi.it/splitmix64.c).
        let mut r = SplitMix64::new(1_234_567);
        assert_eq!(r.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(r.next_u64(), 3_203_168_211_198_807_973);
        assert_eq!(r.next_u64(), 9_817_491_932_198_370_423);
    }

    #[test]
    fn below_stays_in_range() {
        let mut r = SplitMix64::new(7);
        assert_eq!(r.below(0), 0);
        for n in [1u64, 2, 3, 10, 1000, u64::MAX] {
            for _ in 0..1000 {
                assert!(r.below(n) < n);
            }
        }
        let d = Duration::from_millis(5);
        for _ in 0..1000 {
            assert!(r.duration_below(d) < d);
        }
        assert_eq!(r.duration_below(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn below_is_roughly_uniform() {
        let mut r = SplitMix64::new(99);
        let mut hist = [0u32; 10];
        for _ in 0..100_000 {
            hist[r.below(10) as usize] += 1;
        }
        for h in hist {
            assert!((9_500..10_500).contains(&h), "{hist:?}");
        }
    }
}
