//! Least request by the power of two choices (Mitzenmacher), weighted.
//!
//! Two distinct eligible backends are drawn uniformly from the loop's
//! seeded PRNG; the one with the smaller `(active + 1) / weight` wins. The
//! `+ 1` counts the request being placed: between two idle backends the
//! heavier one wins, so at low load traffic still follows the weights.
//! Ties (equal load per weight) go to the higher weight, then to the first
//! draw: reproducible for a seed, and with no bias toward low indices.
//!
//! Active counts are this loop's own (each loop balances its own requests,
//! as Envoy's workers do): the loop calls [`LeastRequest::start`] when a
//! request is sent and [`LeastRequest::finish`] when it ends.

use crate::eligible::EligibleSet;
use crate::error::{check_weights, ConfigError};
use crate::rng::SplitMix64;

/// One loop's least-request state for one cluster.
#[derive(Clone, Debug)]
pub struct LeastRequest {
    weights: Vec<u32>,
    active: Vec<u32>,
    rng: SplitMix64,
}

impl LeastRequest {
    /// `weights[i]` is backend `i`'s weight (at least 1); `seed` seeds the
    /// choices (give each loop its own).
    pub fn new(weights: &[u32], seed: u64) -> Result<Self, ConfigError> {
        check_weights(weights)?;
        Ok(LeastRequest {
            weights: weights.to_vec(),
            active: vec![0; weights.len()],
            rng: SplitMix64::new(seed),
        })
    }

    pub fn backends(&self) -> usize {
        self.weights.len()
    }

    /// Picks an eligible backend; `None` if none is. Does not count the
    /// request: call [`Self::start`] once it is really sent (a pick may be
    /// refused by a breaker or a probe budget). No allocation.
    pub fn pick(&mut self, eligible: &EligibleSet) -> Option<usize> {
        let n = eligible.count() as u64;
        match n {
            0 => None,
            1 => eligible.nth(0),
            _ => {
                let ra = self.rng.below(n);
                let mut rb = self.rng.below(n - 1);
                if rb >= ra {
                    rb += 1; // distinct from `ra`, still uniform
                }
                let a = eligible.nth(ra as usize)?;
                let b = eligible.nth(rb as usize)?;
                Some(if self.prefers(b, a) { b } else { a })
            }
        }
    }

    /// True when `x` is strictly better than `y`.
    fn prefers(&self, x: usize, y: usize) -> bool {
        let (ax, wx) = (u64::from(self.active[x]) + 1, u64::from(self.weights[x]));
        let (ay, wy) = (u64::from(self.active[y]) + 1, u64::from(self.weights[y]));
        // ax/wx < ay/wy without division.
        let (lx, ly) = (ax * wy, ay * wx);
        lx < ly || (lx == ly && wx > wy)
    }

    /// A request to `backend` was sent.
    pub fn start(&mut self, backend: usize) {
        if let Some(a) = self.active.get_mut(backend) {
            *a = a.saturating_add(1);
        }
    }

    /// A request to `backend` ended (any outcome).
    pub fn finish(&mut self, backend: usize) {
        if let Some(a) = self.active.get_mut(backend) {
            debug_assert!(*a > 0, "finish without start on backend {backend}");
            *a = a.saturating_sub(1);
        }
    }

    /// Requests this loop has in flight to `backend`.
    pub fn active(&self, backend: usize) -> u32 {
        self.active.get(backend).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avoids_the_loaded_backend() {
        let mut lr = LeastRequest::new(&[1, 1], 1).unwrap();
        let all = EligibleSet::all(2);
        for _ in 0..5 {
            lr.start(0);
        }
        // With two backends both are always drawn: the idle one wins.
        for _ in 0..100 {
            assert_eq!(lr.pick(&all), Some(1));
        }
    }

    #[test]
    fn weight_scales_the_load() {
        // 3 active on weight 4 is (3+1)/4 = 1; 1 active on weight 1 is 2.
        let mut lr = LeastRequest::new(&[4, 1], 1).unwrap();
        for _ in 0..3 {
            lr.start(0);
        }
        lr.start(1);
        assert_eq!(lr.pick(&EligibleSet::all(2)), Some(0));
    }

    #[test]
    fn idle_tie_goes_to_the_heavier_backend() {
        let mut lr = LeastRequest::new(&[1, 3], 5).unwrap();
        for _ in 0..50 {
            assert_eq!(lr.pick(&EligibleSet::all(2)), Some(1));
        }
    }

    #[test]
    fn skips_ineligible() {
        let mut lr = LeastRequest::new(&[1; 8], 3).unwrap();
        let mut e = EligibleSet::all(8);
        for i in [0, 2, 3, 7] {
            e.remove(i);
        }
        let mut seen = [0u32; 8];
        for _ in 0..2000 {
            let b = lr.pick(&e).unwrap();
            seen[b] += 1;
            lr.start(b);
            if seen[b] % 2 == 0 {
                lr.finish(b);
            }
        }
        for i in [0, 2, 3, 7] {
            assert_eq!(seen[i], 0);
        }
        for i in [1, 4, 5, 6] {
            assert!(seen[i] > 300, "{seen:?}");
        }
        e = EligibleSet::none(8);
        assert_eq!(lr.pick(&e), None);
        e.insert(6);
        assert_eq!(lr.pick(&e), Some(6));
    }

    #[test]
    fn same_seed_same_choices() {
        let e = EligibleSet::all(10);
        let mut a = LeastRequest::new(&[1; 10], 42).unwrap();
        let mut b = LeastRequest::new(&[1; 10], 42).unwrap();
        for _ in 0..100 {
            let (x, y) = (a.pick(&e), b.pick(&e));
            assert_eq!(x, y);
            a.start(x.unwrap());
            b.start(y.unwrap());
        }
    }
}
