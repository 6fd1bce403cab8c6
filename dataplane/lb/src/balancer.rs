//! One type for whichever policy a cluster is configured with.

use std::sync::Arc;

use crate::eligible::EligibleSet;
use crate::least_request::LeastRequest;
use crate::maglev::Maglev;
use crate::rng::SplitMix64;
use crate::wrr::RoundRobin;

/// A loop's balancer for one cluster.
#[derive(Clone, Debug)]
pub enum Balancer {
    RoundRobin(RoundRobin),
    LeastRequest(LeastRequest),
    /// The table is built once and shared by every loop; `rng` stands in
    /// for a key when a request has none (Envoy picks at random then too).
    Maglev {
        table: Arc<Maglev>,
        rng: SplitMix64,
    },
}

impl Balancer {
    /// Picks an eligible backend. `key_hash` ([`crate::hash_key`]) is used
    /// by Maglev only. No allocation.
    pub fn pick(&mut self, eligible: &EligibleSet, key_hash: Option<u64>) -> Option<usize> {
        match self {
            Balancer::RoundRobin(rr) => rr.pick(eligible),
            Balancer::LeastRequest(lr) => lr.pick(eligible),
            Balancer::Maglev { table, rng } => {
                let h = key_hash.unwrap_or_else(|| rng.next_u64());
                table.pick(h, eligible)
            }
        }
    }

    /// A request to `backend` was sent (least request counts it).
    pub fn start(&mut self, backend: usize) {
        if let Balancer::LeastRequest(lr) = self {
            lr.start(backend)
        }
    }

    /// A request to `backend` ended.
    pub fn finish(&mut self, backend: usize) {
        if let Balancer::LeastRequest(lr) = self {
            lr.finish(backend)
        }
    }
}
