//! Smooth weighted round robin, nginx's algorithm
//! (ngx_http_upstream_get_peer in ngx_http_upstream_round_robin.c).
//!
//! Each pick adds every eligible backend's weight to its `current`, takes
//! the backend with the largest `current` (the lowest index on a tie) and
//! subtracts the total eligible weight from it. Over any `W` consecutive
//! picks from a zero state (`W` the total eligible weight) backend `i` is
//! picked exactly `w_i` times, and the picks are interleaved rather than
//! bunched (weights 5,1,1 give a a b a c a a, not a a a a a b c).

use crate::eligible::EligibleSet;
use crate::error::{check_weights, ConfigError};

/// One loop's round-robin state for one cluster.
#[derive(Clone, Debug)]
pub struct RoundRobin {
    weights: Vec<u32>,
    current: Vec<i64>,
}

impl RoundRobin {
    /// `weights[i]` is backend `i`'s weight (at least 1).
    pub fn new(weights: &[u32]) -> Result<Self, ConfigError> {
        check_weights(weights)?;
        Ok(RoundRobin {
            weights: weights.to_vec(),
            current: vec![0; weights.len()],
        })
    }

    pub fn backends(&self) -> usize {
        self.weights.len()
    }

    /// The next backend among the eligible ones; `None` if none is.
    /// O(backends), no allocation.
    ///
    /// An ineligible backend's `current` is left as it was, so when it
    /// comes back it resumes near its old position instead of getting a
    /// burst; [`Self::reset`] starts everyone from zero.
    pub fn pick(&mut self, eligible: &EligibleSet) -> Option<usize> {
        let mut total: i64 = 0;
        let mut best: Option<usize> = None;
        for i in 0..self.weights.len() {
            if !eligible.contains(i) {
                continue;
            }
            let w = i64::from(self.weights[i]);
            self.current[i] += w;
            total += w;
            if best.is_none_or(|b| self.current[i] > self.current[b]) {
                best = Some(i);
            }
        }
        let b = best?;
        self.current[b] -= total;
        Some(b)
    }

    /// Forgets the rotation: the next picks are those of a new balancer.
    pub fn reset(&mut self) {
        self.current.fill(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_sequence() {
        // The sequence nginx documents for weights 5, 1, 1.
        let mut rr = RoundRobin::new(&[5, 1, 1]).unwrap();
        let all = EligibleSet::all(3);
        let seq: Vec<usize> = (0..7).map(|_| rr.pick(&all).unwrap()).collect();
        assert_eq!(seq, vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn skips_ineligible_and_reports_none() {
        let mut rr = RoundRobin::new(&[1, 1, 1]).unwrap();
        let mut e = EligibleSet::all(3);
        e.remove(1);
        for _ in 0..10 {
            assert_ne!(rr.pick(&e), Some(1));
        }
        assert_eq!(rr.pick(&EligibleSet::none(3)), None);
    }

    #[test]
    fn refuses_zero_weight_and_empty() {
        assert_eq!(RoundRobin::new(&[]).unwrap_err(), ConfigError::NoBackends);
        assert_eq!(
            RoundRobin::new(&[1, 0]).unwrap_err(),
            ConfigError::ZeroWeight(1)
        );
    }
}
