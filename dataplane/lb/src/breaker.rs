//! Circuit-breaker counters of a cluster (Envoy's "circuit breaking"
//! thresholds): caps on connections, pending requests, active requests and
//! retries. An acquire over the cap returns [`Overflow`], which the
//! dataplane turns into a fast 503 and a counter; nothing queues here.
//!
//! Two forms with the same methods:
//! - [`LocalBreaker`]: one loop's share, plain integers
//!   ([`BreakerLimits::per_loop`] splits the cluster's limits). No shared
//!   cache line, but a loop can overflow while another has room, and a
//!   limit smaller than the loop count leaves some loops a share of 0.
//! - [`SharedBreaker`]: the cluster's limits enforced exactly across loops
//!   with one atomic counter per resource (share with `Arc`). Each acquire
//!   is a compare-and-swap on a cache line every loop writes.
//!
//! Every successful acquire must be matched by one release of the same
//! resource (connection closed, request left the pending queue, request or
//! retry finished).

use core::fmt;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::retry::RetryBudget;

/// A counted resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Resource {
    /// Connections to the cluster's backends.
    Connections,
    /// Requests waiting for a connection or stream.
    PendingRequests,
    /// Requests in flight (retries included).
    Requests,
    /// Retries in flight, capped by the [`RetryBudget`].
    Retries,
}

impl Resource {
    pub const ALL: [Resource; 4] = [
        Resource::Connections,
        Resource::PendingRequests,
        Resource::Requests,
        Resource::Retries,
    ];

    const fn idx(self) -> usize {
        self as usize
    }
}

/// An acquire refused because the resource is at its limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Overflow {
    pub resource: Resource,
}

impl fmt::Display for Overflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "circuit breaker overflow: {:?}", self.resource)
    }
}

impl std::error::Error for Overflow {}

/// Limits of one cluster (or one loop's share of them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerLimits {
    pub max_connections: u32,
    pub max_pending_requests: u32,
    pub max_requests: u32,
    /// Retries in flight are capped at
    /// `max(min_concurrency, percent × active requests)`.
    pub retry_budget: RetryBudget,
}

impl Default for BreakerLimits {
    /// Envoy's defaults: 1024 of each; a 20 % retry budget with at least 3.
    fn default() -> Self {
        BreakerLimits {
            max_connections: 1024,
            max_pending_requests: 1024,
            max_requests: 1024,
            retry_budget: RetryBudget::default(),
        }
    }
}

/// `total` split into `parts`, `index`'s share: the first `total % parts`
/// shares get one more, so the shares add up to `total`.
fn share(total: u32, parts: u32, index: u32) -> u32 {
    let parts = parts.max(1);
    total / parts + u32::from(index < total % parts)
}

impl BreakerLimits {
    /// Loop `index`'s share when `loops` loops each run a [`LocalBreaker`].
    /// The retry budget's percentage applies to each loop's own requests;
    /// its minimum is split like the other limits.
    pub fn per_loop(&self, loops: u32, index: u32) -> BreakerLimits {
        BreakerLimits {
            max_connections: share(self.max_connections, loops, index),
            max_pending_requests: share(self.max_pending_requests, loops, index),
            max_requests: share(self.max_requests, loops, index),
            retry_budget: RetryBudget {
                percent: self.retry_budget.percent,
                min_concurrency: share(self.retry_budget.min_concurrency, loops, index),
            },
        }
    }

    fn limit(&self, r: Resource, active_requests: u32) -> u32 {
        match r {
            Resource::Connections => self.max_connections,
            Resource::PendingRequests => self.max_pending_requests,
            Resource::Requests => self.max_requests,
            Resource::Retries => self.retry_budget.max_retries(active_requests),
        }
    }
}

/// One loop's breaker: plain counters.
#[derive(Clone, Debug)]
pub struct LocalBreaker {
    limits: BreakerLimits,
    in_use: [u32; 4],
    overflows: [u64; 4],
}

impl LocalBreaker {
    pub fn new(limits: BreakerLimits) -> Self {
        LocalBreaker {
            limits,
            in_use: [0; 4],
            overflows: [0; 4],
        }
    }

    pub fn limits(&self) -> &BreakerLimits {
        &self.limits
    }

    /// New limits (config reload); what is in use stays counted.
    pub fn set_limits(&mut self, limits: BreakerLimits) {
        self.limits = limits;
    }

    pub fn try_acquire(&mut self, r: Resource) -> Result<(), Overflow> {
        let limit = self.limits.limit(r, self.in_use[Resource::Requests.idx()]);
        let n = &mut self.in_use[r.idx()];
        if *n >= limit {
            self.overflows[r.idx()] += 1;
            return Err(Overflow { resource: r });
        }
        *n += 1;
        Ok(())
    }

    pub fn release(&mut self, r: Resource) {
        let n = &mut self.in_use[r.idx()];
        debug_assert!(*n > 0, "release of {r:?} without acquire");
        *n = n.saturating_sub(1);
    }

    pub fn in_use(&self, r: Resource) -> u32 {
        self.in_use[r.idx()]
    }

    /// Refused acquires so far.
    pub fn overflows(&self, r: Resource) -> u64 {
        self.overflows[r.idx()]
    }

    pub fn try_acquire_connection(&mut self) -> Result<(), Overflow> {
        self.try_acquire(Resource::Connections)
    }
    pub fn release_connection(&mut self) {
        self.release(Resource::Connections)
    }
    pub fn try_acquire_pending(&mut self) -> Result<(), Overflow> {
        self.try_acquire(Resource::PendingRequests)
    }
    pub fn release_pending(&mut self) {
        self.release(Resource::PendingRequests)
    }
    pub fn try_acquire_request(&mut self) -> Result<(), Overflow> {
        self.try_acquire(Resource::Requests)
    }
    pub fn release_request(&mut self) {
        self.release(Resource::Requests)
    }
    /// A retry is also a request: acquire both (the request first).
    pub fn try_acquire_retry(&mut self) -> Result<(), Overflow> {
        self.try_acquire(Resource::Retries)
    }
    pub fn release_retry(&mut self) {
        self.release(Resource::Retries)
    }
}

/// The cluster's breaker shared by every loop: one atomic per resource.
/// All operations are Relaxed: the counters guard no other memory, and
/// read-modify-writes of one atomic never lose an update. The retry limit
/// reads the request count separately, so it is approximate under
/// concurrency (as Envoy's is).
#[derive(Debug)]
pub struct SharedBreaker {
    limits: BreakerLimits,
    in_use: [AtomicU32; 4],
    overflows: [AtomicU64; 4],
}

impl SharedBreaker {
    pub fn new(limits: BreakerLimits) -> Self {
        SharedBreaker {
            limits,
            in_use: Default::default(),
            overflows: Default::default(),
        }
    }

    pub fn limits(&self) -> &BreakerLimits {
        &self.limits
    }

    pub fn try_acquire(&self, r: Resource) -> Result<(), Overflow> {
        let requests = self.in_use[Resource::Requests.idx()].load(Ordering::Relaxed);
        let limit = self.limits.limit(r, requests);
        match self.in_use[r.idx()].fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            (n < limit).then_some(n + 1)
        }) {
            Ok(_) => Ok(()),
            Err(_) => {
                self.overflows[r.idx()].fetch_add(1, Ordering::Relaxed);
                Err(Overflow { resource: r })
            }
        }
    }

    pub fn release(&self, r: Resource) {
        let prev = self.in_use[r.idx()]
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        debug_assert!(prev.is_ok(), "release of {r:?} without acquire");
    }

    pub fn in_use(&self, r: Resource) -> u32 {
        self.in_use[r.idx()].load(Ordering::Relaxed)
    }

    pub fn overflows(&self, r: Resource) -> u64 {
        self.overflows[r.idx()].load(Ordering::Relaxed)
    }

    pub fn try_acquire_connection(&self) -> Result<(), Overflow> {
        self.try_acquire(Resource::Connections)
    }
    pub fn release_connection(&self) {
        self.release(Resource::Connections)
    }
    pub fn try_acquire_pending(&self) -> Result<(), Overflow> {
        self.try_acquire(Resource::PendingRequests)
    }
    pub fn release_pending(&self) {
        self.release(Resource::PendingRequests)
    }
    pub fn try_acquire_request(&self) -> Result<(), Overflow> {
        self.try_acquire(Resource::Requests)
    }
    pub fn release_request(&self) {
        self.release(Resource::Requests)
    }
    /// A retry is also a request: acquire both (the request first).
    pub fn try_acquire_retry(&self) -> Result<(), Overflow> {
        self.try_acquire(Resource::Retries)
    }
    pub fn release_retry(&self) {
        self.release(Resource::Retries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> BreakerLimits {
        BreakerLimits {
            max_connections: 2,
            max_pending_requests: 1,
            max_requests: 10,
            retry_budget: RetryBudget {
                percent: 20,
                min_concurrency: 1,
            },
        }
    }

    #[test]
    fn local_caps_and_counts_overflows() {
        let mut b = LocalBreaker::new(limits());
        assert!(b.try_acquire_connection().is_ok());
        assert!(b.try_acquire_connection().is_ok());
        assert_eq!(
            b.try_acquire_connection(),
            Err(Overflow {
                resource: Resource::Connections
            })
        );
        assert_eq!(b.overflows(Resource::Connections), 1);
        b.release_connection();
        assert!(b.try_acquire_connection().is_ok());
        assert!(b.try_acquire_pending().is_ok());
        assert!(b.try_acquire_pending().is_err());
        assert_eq!(b.in_use(Resource::PendingRequests), 1);
    }

    #[test]
    fn retries_follow_the_budget() {
        let mut b = LocalBreaker::new(limits());
        // No requests: the minimum of 1 retry.
        assert!(b.try_acquire_retry().is_ok());
        assert!(b.try_acquire_retry().is_err());
        // 10 requests: 20 % is 2.
        for _ in 0..10 {
            b.try_acquire_request().unwrap();
        }
        assert!(b.try_acquire_retry().is_ok());
        assert!(b.try_acquire_retry().is_err());
        assert_eq!(b.in_use(Resource::Retries), 2);
        b.release_retry();
        assert_eq!(b.in_use(Resource::Retries), 1);
    }

    #[test]
    fn shared_caps_across_threads() {
        let b = std::sync::Arc::new(SharedBreaker::new(limits()));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || {
                    (0..100).filter(|_| b.try_acquire_request().is_ok()).count()
                })
            })
            .collect();
        let ok: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(ok, 10);
        assert_eq!(b.in_use(Resource::Requests), 10);
        assert_eq!(b.overflows(Resource::Requests), 390);
        for _ in 0..10 {
            b.release_request();
        }
        assert_eq!(b.in_use(Resource::Requests), 0);
    }

    #[test]
    fn per_loop_shares_add_up() {
        let l = BreakerLimits {
            max_connections: 10,
            max_pending_requests: 3,
            max_requests: 1024,
            retry_budget: RetryBudget::default(),
        };
        let shares: Vec<BreakerLimits> = (0..4).map(|i| l.per_loop(4, i)).collect();
        assert_eq!(
            shares.iter().map(|s| s.max_connections).collect::<Vec<_>>(),
            vec![3, 3, 2, 2]
        );
        assert_eq!(
            shares
                .iter()
                .map(|s| s.max_pending_requests)
                .collect::<Vec<_>>(),
            vec![1, 1, 1, 0]
        );
        assert_eq!(shares.iter().map(|s| s.max_requests).sum::<u32>(), 1024);
    }
}
