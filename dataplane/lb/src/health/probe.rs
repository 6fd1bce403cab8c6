//! Probe admission across loops, without locks on the request path.
//!
//! The decision component grants a half-open backend `half_open_probes`
//! tokens under a grant number ([`ProbeGrant`]). The main thread copies
//! grants into [`ProbeTokens`], one `AtomicU64` per backend holding
//! `(seq << 32) | remaining`; each loop takes a token with one
//! compare-and-swap before sending a request to a half-open backend. At
//! most `tokens` requests are admitted per grant, whichever loops send
//! them. Syncing is idempotent: a slot is rewritten only when the grant
//! number changes, so republishing never refills a grant.
//!
//! Order on the main thread: [`ProbeTokens::sync`] first, then publish the
//! new generation with Release; a loop that reads the generation with
//! Acquire then sees the tokens. The counters themselves need only Relaxed:
//! read-modify-writes of one atomic are totally ordered, so no token is
//! taken twice.
//!
//! [`LoopView`] is a loop's copy of the published sets; when a probe is
//! refused (tokens gone) the loop clears the backend from its own copy and
//! picks again, until the next generation.

use core::sync::atomic::{AtomicU64, Ordering};

use super::cluster::{ClusterHealth, ProbeGrant};
use crate::eligible::EligibleSet;

/// Shared probe-token counters of one cluster (share with `Arc`).
#[derive(Debug)]
pub struct ProbeTokens {
    slots: Box<[AtomicU64]>,
}

fn pack(g: ProbeGrant) -> u64 {
    (u64::from(g.seq) << 32) | u64::from(g.tokens)
}

impl ProbeTokens {
    pub fn new(backends: usize) -> Self {
        ProbeTokens {
            slots: (0..backends).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    pub fn backends(&self) -> usize {
        self.slots.len()
    }

    /// Main thread: installs `grants` (indexed by backend, as
    /// [`ClusterHealth::grants`]). A slot whose grant number is unchanged
    /// keeps what the loops left of it.
    pub fn sync(&self, grants: &[ProbeGrant]) {
        for (slot, g) in self.slots.iter().zip(grants) {
            if slot.load(Ordering::Relaxed) >> 32 != u64::from(g.seq) {
                slot.store(pack(*g), Ordering::Relaxed);
            }
        }
    }

    /// Loop: takes one probe token for `backend`; false when the grant is
    /// used up (or there is none).
    pub fn try_take(&self, backend: usize) -> bool {
        let Some(slot) = self.slots.get(backend) else {
            return false;
        };
        slot.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
            (v & 0xFFFF_FFFF != 0).then(|| v - 1)
        })
        .is_ok()
    }

    /// Tokens left of `backend`'s current grant.
    pub fn remaining(&self, backend: usize) -> u32 {
        self.slots
            .get(backend)
            .map_or(0, |s| s.load(Ordering::Relaxed) as u32)
    }
}

/// A loop's copy of one cluster's published eligibility.
#[derive(Clone, Debug)]
pub struct LoopView {
    generation: u64,
    eligible: EligibleSet,
    half_open: EligibleSet,
}

impl LoopView {
    /// Nothing eligible and generation 0 (never published): the first
    /// [`Self::refresh`] always copies.
    pub fn new(backends: usize) -> Self {
        LoopView {
            generation: 0,
            eligible: EligibleSet::none(backends),
            half_open: EligibleSet::none(backends),
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Copies published words if `generation` differs from the copy's.
    /// No allocation. Returns whether it copied.
    pub fn refresh(&mut self, generation: u64, eligible: &[u64], half_open: &[u64]) -> bool {
        if generation == self.generation {
            return false;
        }
        self.generation = generation;
        self.eligible.copy_from_words(eligible);
        self.half_open.copy_from_words(half_open);
        true
    }

    /// [`Self::refresh`] straight from the decision component (same
    /// thread: tests, or a single-loop deployment).
    pub fn refresh_from(&mut self, health: &ClusterHealth) -> bool {
        self.refresh(
            health.generation(),
            health.eligible().words(),
            health.half_open().words(),
        )
    }

    /// What the balancers should pick from.
    pub fn eligible(&self) -> &EligibleSet {
        &self.eligible
    }

    /// May a request go to `backend` (a balancer's pick)? Healthy backends
    /// always; a half-open one if a probe token is left, else it is
    /// removed from this copy until the next generation and the caller
    /// picks again.
    pub fn admit(&mut self, backend: usize, tokens: &ProbeTokens) -> bool {
        if !self.eligible.contains(backend) {
            return false;
        }
        if !self.half_open.contains(backend) || tokens.try_take(backend) {
            return true;
        }
        self.eligible.remove(backend);
        false
    }

    /// Runs `pick` over the eligible set until its choice is admitted, or
    /// it returns `None`. Terminates: every refusal removes a backend.
    pub fn pick_admitted(
        &mut self,
        tokens: &ProbeTokens,
        mut pick: impl FnMut(&EligibleSet) -> Option<usize>,
    ) -> Option<usize> {
        loop {
            let b = pick(&self.eligible)?;
            if !self.eligible.contains(b) {
                // A pick outside the set is a balancer bug: stop, not spin.
                return None;
            }
            if self.admit(b, tokens) {
                return Some(b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_per_grant_not_per_sync() {
        let t = ProbeTokens::new(2);
        let g = [ProbeGrant { seq: 7, tokens: 2 }, ProbeGrant::NONE];
        t.sync(&g);
        assert!(!t.try_take(1));
        assert!(t.try_take(0));
        t.sync(&g); // republishing the same grant does not refill it
        assert!(t.try_take(0));
        assert!(!t.try_take(0));
        assert_eq!(t.remaining(0), 0);
        t.sync(&[ProbeGrant { seq: 8, tokens: 1 }, ProbeGrant::NONE]);
        assert!(t.try_take(0));
        assert!(!t.try_take(0));
        assert!(!t.try_take(5));
    }

    #[test]
    fn tokens_across_threads() {
        let t = std::sync::Arc::new(ProbeTokens::new(1));
        t.sync(&[ProbeGrant {
            seq: 1,
            tokens: 100,
        }]);
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let t = t.clone();
                std::thread::spawn(move || (0..1000).filter(|_| t.try_take(0)).count())
            })
            .collect();
        let taken: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(taken, 100);
    }
}
