//! sluice-lb: the upstream decisions of the proxy, sans-IO.
//!
//! No clocks, threads, sockets or syscalls, and no entropy of its own: time
//! is a [`Time`] passed in (nanoseconds since the caller's epoch, the same
//! type as the rest of the dataplane) and randomness comes from a
//! [`SplitMix64`] the caller seeds. The only shared-memory pieces are std
//! atomics ([`ProbeTokens`], [`SharedBreaker`]).
//!
//! # What runs where
//!
//! **Per loop, on the request path** (no allocation, no locks):
//! - a [`Balancer`] per cluster: [`RoundRobin`] (nginx's smooth weighted
//!   round robin), [`LeastRequest`] (weighted power of two choices) or a
//!   shared [`Maglev`] table looked up with [`hash_key`];
//! - a [`LoopView`]: the loop's copy of the cluster's published eligible
//!   and half-open sets, refreshed when the generation changes;
//!   [`LoopView::pick_admitted`] runs the balancer and takes a probe token
//!   ([`ProbeTokens`]) when the pick is half-open;
//! - circuit breakers ([`LocalBreaker`] with a per-loop share, or one
//!   [`SharedBreaker`]) whose [`Overflow`] becomes a fast 503;
//! - retry helpers: [`is_retriable`], [`RetryBudget`] (through the
//!   breaker's `Retries` resource), [`Backoff`] with full jitter.
//!
//! **On the dataplane's main thread** (for now):
//! - one [`ClusterHealth`] per cluster, the decision component. Loops send
//!   it run-length batches of [`Outcome`]s; health checkers send
//!   [`HealthCheck`] results; it ticks at [`ClusterHealth::next_deadline`].
//!   After each input, if [`ClusterHealth::generation`] changed, the main
//!   thread calls [`ProbeTokens::sync`] with [`ClusterHealth::grants`], then
//!   publishes the eligible and half-open words, the all-ineligible flag
//!   (the XDP program refuses SYNs to a VIP whose backends are all
//!   ineligible) and finally the generation (Release).
//! - [`Maglev::build`] when membership or weights change.
//!
//! **In the control process** (later): the same [`ClusterHealth`], fed by
//! the outcomes the dataplanes stream to it; its inputs ([`Outcome`],
//! [`HealthCheck`], `now`) and outputs (generation, bitmap words, grants,
//! [`BackendView`]) are plain values so they cross a socket as they are,
//! and it publishes into BPF maps instead of process memory. Nothing in
//! the loops changes: they read a generation, two bitmaps and a token
//! counter per backend wherever those live.
//!
//! # Probe admission across loops
//!
//! When an ejection ends, the backend turns half-open: it is set in both
//! the eligible and the half-open bitmaps and gets a [`ProbeGrant`] of
//! `half_open_probes` tokens under a fresh grant number. The main thread
//! installs grants in [`ProbeTokens`] (one `AtomicU64` per backend:
//! grant number and tokens left), rewriting a slot only when the grant
//! number changes. A loop whose balancer picks a half-open backend takes a
//! token with one CAS; if none is left it drops the backend from its own
//! copy of the eligible set and picks again. So at most `half_open_probes`
//! requests reach the backend in total, whatever the number of loops, with
//! no lock and no message on the request path. The first probe outcome
//! decides: a success heals the backend (counters reset), a failure ejects
//! it again with the next, doubled, backoff. Probes that end without a
//! verdict ([`OutcomeKind::LocalOrigin`]) are replaced by a new grant after
//! `probe_timeout`.
//!
//! # Ejection rules
//!
//! See [`OutlierConfig`]: consecutive 5xx, consecutive gateway failures,
//! failure rate over a bucketed window; ejection for `min(base ×
//! 2^level, max) + jitter`, where `level` counts ejections not yet forgiven
//! (one is forgiven per `base` of time spent healthy); never more than
//! `max_ejection_percent` of the cluster ejected or half-open, but always
//! at least one backend may be (Envoy's rule).
//!
//! Maglev's hash is XXH64 ([`hash`] says why and which seeds).
//!
//! # Example
//!
//! ```
//! use sluice_lb::*;
//!
//! // Main thread: the decision component and the loops' token counters.
//! let config = HealthConfig::default(); // 5 consecutive 5xx eject
//! let mut health = ClusterHealth::new(config, 3, 7).unwrap();
//! let tokens = ProbeTokens::new(3);
//!
//! // A loop: its balancer and its copy of the published sets.
//! let mut rr = RoundRobin::new(&[1, 1, 1]).unwrap();
//! let mut view = LoopView::new(3);
//! view.refresh_from(&health);
//!
//! // Backend 1 answers 5xx five times in a row.
//! let now = Time::from_millis(5);
//! health.record_outcomes(now, &[Outcome::new(1, OutcomeKind::Http5xx, 5)]);
//! tokens.sync(health.grants());
//! assert!(view.refresh_from(&health)); // a new generation
//! for _ in 0..10 {
//!     let b = view.pick_admitted(&tokens, |e| rr.pick(e)).unwrap();
//!     assert_ne!(b, 1);
//! }
//! ```

#![forbid(unsafe_code)]

mod balancer;
mod breaker;
mod eligible;
mod error;
pub mod hash;
mod health;
mod least_request;
mod maglev;
mod retry;
mod rng;
mod wrr;

pub use balancer::Balancer;
pub use breaker::{BreakerLimits, LocalBreaker, Overflow, Resource, SharedBreaker};
pub use eligible::EligibleSet;
pub use error::ConfigError;
pub use hash::hash_key;
pub use health::{
    ActiveHealthConfig, BackendState, BackendView, ClusterHealth, FailureRateConfig,
    GatewayFailure, HealthCheck, HealthConfig, InitialHealth, LoopView, Outcome, OutcomeKind,
    OutlierConfig, ProbeGrant, ProbeTokens,
};
pub use least_request::LeastRequest;
pub use maglev::{Maglev, MaglevBackend};
pub use retry::{is_idempotent, is_retriable, Backoff, RetryBudget, RetryFailure};
pub use rng::SplitMix64;
pub use sluice_netstack::time::Time;
pub use wrr::RoundRobin;
