//! [`ClusterHealth`]: the decision component for one cluster.

use sluice_netstack::time::Time;

use super::config::{HealthConfig, InitialHealth};
use super::outcome::{HealthCheck, Outcome, OutcomeKind};
use super::window::FailureWindow;
use crate::eligible::EligibleSet;
use crate::error::ConfigError;
use crate::rng::SplitMix64;

/// A backend's state as shown to a person (admin API, logs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BackendState {
    /// Takes traffic.
    Healthy,
    /// Failing active health checks: no traffic, whatever its outlier
    /// state ([`BackendView::ejected_until`] still shows an ejection).
    Unhealthy,
    /// Ejected by outlier detection until the given time.
    Ejected { until: Time },
    /// The ejection has ended; only probe requests are admitted. `probes`
    /// is the size of the current grant; what is left of it lives in the
    /// loops' shared counter ([`crate::ProbeTokens::remaining`]).
    HalfOpen { probes: u32 },
}

/// A backend's state and counters, for display.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BackendView {
    pub state: BackendState,
    pub active_healthy: bool,
    /// End of the current ejection, also while [`BackendState::Unhealthy`].
    pub ejected_until: Option<Time>,
    pub consecutive_5xx: u32,
    pub consecutive_gateway_failures: u32,
    /// Requests and failures in the failure-rate window (0 when off).
    pub window_requests: u64,
    pub window_failures: u64,
    /// Ejections in a row not yet forgiven: the next ejection lasts
    /// `base × 2^backoff_level`.
    pub backoff_level: u32,
    pub ejections_total: u64,
    /// Ejections refused by `max_ejection_percent`.
    pub ejections_blocked: u64,
}

/// The probe allowance published for a half-open backend. `seq` names the
/// grant (0: no grant); a new `seq` means fresh `tokens`. See
/// [`crate::ProbeTokens`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ProbeGrant {
    pub seq: u32,
    pub tokens: u32,
}

impl ProbeGrant {
    pub const NONE: ProbeGrant = ProbeGrant { seq: 0, tokens: 0 };
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outlier {
    Normal,
    Ejected { until: Time },
    HalfOpen { seq: u32, granted_at: Time },
}

#[derive(Clone, Debug)]
struct Backend {
    active_healthy: bool,
    check_passes: u32,
    check_fails: u32,
    outlier: Outlier,
    consecutive_5xx: u32,
    consecutive_gateway: u32,
    window: Option<FailureWindow>,
    backoff_level: u32,
    /// When one ejection is next forgiven (only while `Normal`).
    decay_at: Option<Time>,
    ejections_total: u64,
    ejections_blocked: u64,
}

impl Backend {
    fn new(config: &HealthConfig) -> Self {
        let active_healthy = config
            .active
            .is_none_or(|a| a.initial == InitialHealth::Healthy);
        Backend {
            active_healthy,
            check_passes: 0,
            check_fails: 0,
            outlier: Outlier::Normal,
            consecutive_5xx: 0,
            consecutive_gateway: 0,
            window: config
                .outlier
                .failure_rate
                .map(|r| FailureWindow::new(r.window, r.buckets)),
            backoff_level: 0,
            decay_at: None,
            ejections_total: 0,
            ejections_blocked: 0,
        }
    }

    fn reset_detection(&mut self) {
        self.consecutive_5xx = 0;
        self.consecutive_gateway = 0;
        if let Some(w) = &mut self.window {
            w.clear();
        }
    }

    fn eligible(&self) -> bool {
        self.active_healthy && !matches!(self.outlier, Outlier::Ejected { .. })
    }

    fn counts_as_ejected(&self) -> bool {
        self.outlier != Outlier::Normal
    }
}

/// Health and outlier decisions for one cluster: a sans-IO state machine.
///
/// Inputs, each taking `now` (time never runs backwards here: an earlier
/// `now` is treated as the latest seen):
/// - [`Self::record_outcomes`]: batches of request outcomes from the loops;
/// - [`Self::record_health_checks`]: active health check results;
/// - [`Self::tick`]: time passing (ejections ending, grants expiring,
///   ejections forgiven); call it at [`Self::next_deadline`] or on any
///   cadence, every input also advances time first.
///
/// Outputs, to publish after the inputs:
/// - [`Self::generation`]: changes exactly when one of the three below does;
/// - [`Self::eligible`] (healthy or half-open backends) and
///   [`Self::all_ineligible`];
/// - [`Self::half_open`] and [`Self::grants`]: which eligible backends
///   need a probe token per request, and their grants;
/// - [`Self::state`] / [`Self::view`] for display.
#[derive(Clone, Debug)]
pub struct ClusterHealth {
    config: HealthConfig,
    backends: Vec<Backend>,
    rng: SplitMix64,
    now: Time,
    next_seq: u32,
    generation: u64,
    eligible: EligibleSet,
    half_open: EligibleSet,
    grants: Vec<ProbeGrant>,
}

impl ClusterHealth {
    /// A cluster of `backends` backends, all in their initial state (no
    /// outlier history). `seed` seeds the ejection jitter.
    pub fn new(config: HealthConfig, backends: usize, seed: u64) -> Result<Self, ConfigError> {
        config.validate()?;
        if backends > usize::from(u16::MAX) {
            return Err(ConfigError::TooManyBackends(backends));
        }
        let list = (0..backends).map(|_| Backend::new(&config)).collect();
        let mut c = ClusterHealth {
            config,
            backends: list,
            rng: SplitMix64::new(seed),
            now: Time::ZERO,
            next_seq: 1,
            generation: 1,
            eligible: EligibleSet::none(backends),
            half_open: EligibleSet::none(backends),
            grants: vec![ProbeGrant::NONE; backends],
        };
        c.publish();
        c.generation = 1;
        Ok(c)
    }

    pub fn config(&self) -> &HealthConfig {
        &self.config
    }

    pub fn backends(&self) -> usize {
        self.backends.len()
    }

    /// Latest time seen.
    pub fn now(&self) -> Time {
        self.now
    }

    // ---- inputs ----

    /// Applies outcomes in order. Outcomes for an ejected backend are
    /// ignored (requests sent before the ejection finishing late); for a
    /// half-open backend the first success or failure decides.
    /// Out-of-range backends are ignored.
    pub fn record_outcomes(&mut self, now: Time, outcomes: &[Outcome]) {
        self.advance(now);
        for o in outcomes {
            if o.backend < self.backends.len() && o.count > 0 {
                self.apply(o.backend, o.kind, o.count);
            }
        }
        self.publish();
    }

    /// Applies active health check results in order (ignored when the
    /// config has no active checking).
    pub fn record_health_checks(&mut self, now: Time, checks: &[HealthCheck]) {
        self.advance(now);
        if let Some(active) = self.config.active {
            for c in checks {
                let Some(b) = self.backends.get_mut(c.backend) else {
                    continue;
                };
                if c.passed {
                    b.check_fails = 0;
                    b.check_passes = b.check_passes.saturating_add(1);
                    if !b.active_healthy && b.check_passes >= active.healthy_threshold {
                        b.active_healthy = true;
                        // Old passive failures predate the outage.
                        b.reset_detection();
                    }
                } else {
                    b.check_passes = 0;
                    b.check_fails = b.check_fails.saturating_add(1);
                    if b.active_healthy && b.check_fails >= active.unhealthy_threshold {
                        b.active_healthy = false;
                    }
                }
            }
        }
        self.publish();
    }

    /// Lets time pass.
    pub fn tick(&mut self, now: Time) {
        self.advance(now);
        self.publish();
    }

    /// Replaces the backend list (membership or order changed):
    /// `carry[i]` is the old index whose state new backend `i` keeps, or
    /// `None` for a new backend, which starts in its initial state.
    pub fn set_backends(&mut self, now: Time, carry: &[Option<usize>]) -> Result<(), ConfigError> {
        if carry.len() > usize::from(u16::MAX) {
            return Err(ConfigError::TooManyBackends(carry.len()));
        }
        self.advance(now);
        let mut old: Vec<Option<Backend>> = self.backends.drain(..).map(Some).collect();
        let config = &self.config;
        self.backends = carry
            .iter()
            .map(|c| {
                c.and_then(|i| old.get_mut(i).and_then(Option::take))
                    .unwrap_or_else(|| Backend::new(config))
            })
            .collect();
        self.publish();
        Ok(())
    }

    // ---- outputs ----

    /// Starts at 1; increases by one whenever the published state
    /// (eligible set, half-open set or grants) changes, and only then.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Backends a balancer may pick: actively healthy and not ejected
    /// (half-open ones included, see [`Self::half_open`]).
    pub fn eligible(&self) -> &EligibleSet {
        &self.eligible
    }

    /// The eligible backends that are half-open: a loop must take a probe
    /// token before sending them a request.
    pub fn half_open(&self) -> &EligibleSet {
        &self.half_open
    }

    /// Per backend, its probe grant ([`ProbeGrant::NONE`] unless in
    /// [`Self::half_open`]).
    pub fn grants(&self) -> &[ProbeGrant] {
        &self.grants
    }

    /// No backend of the cluster is eligible (the XDP program refuses new
    /// connections to a VIP in this state).
    pub fn all_ineligible(&self) -> bool {
        self.eligible.is_none()
    }

    pub fn state(&self, backend: usize) -> Option<BackendState> {
        self.view(backend).map(|v| v.state)
    }

    pub fn view(&self, backend: usize) -> Option<BackendView> {
        let b = self.backends.get(backend)?;
        let state = match b.outlier {
            _ if !b.active_healthy => BackendState::Unhealthy,
            Outlier::Normal => BackendState::Healthy,
            Outlier::Ejected { until } => BackendState::Ejected { until },
            Outlier::HalfOpen { .. } => BackendState::HalfOpen {
                probes: self.config.outlier.half_open_probes,
            },
        };
        let (window_requests, window_failures) = b.window.as_ref().map_or((0, 0), |w| w.peek());
        Some(BackendView {
            state,
            active_healthy: b.active_healthy,
            ejected_until: match b.outlier {
                Outlier::Ejected { until } => Some(until),
                _ => None,
            },
            consecutive_5xx: b.consecutive_5xx,
            consecutive_gateway_failures: b.consecutive_gateway,
            window_requests,
            window_failures,
            backoff_level: b.backoff_level,
            ejections_total: b.ejections_total,
            ejections_blocked: b.ejections_blocked,
        })
    }

    /// The earliest time at which [`Self::tick`] would change something
    /// (an ejection ends, a grant expires, an ejection is forgiven).
    pub fn next_deadline(&self) -> Option<Time> {
        let timeout = self.config.outlier.probe_timeout;
        self.backends
            .iter()
            .filter_map(|b| match b.outlier {
                Outlier::Ejected { until } => Some(until),
                Outlier::HalfOpen { granted_at, .. } => Some(granted_at + timeout),
                Outlier::Normal => b.decay_at,
            })
            .min()
    }

    // ---- internals ----

    fn advance(&mut self, now: Time) {
        self.now = self.now.max(now);
        let now = self.now;
        let o = self.config.outlier;
        for i in 0..self.backends.len() {
            match self.backends[i].outlier {
                Outlier::Ejected { until } if now >= until => {
                    if o.half_open_probes == 0 {
                        self.heal(i, until);
                    } else {
                        let seq = self.new_seq();
                        self.backends[i].outlier = Outlier::HalfOpen {
                            seq,
                            granted_at: now,
                        };
                    }
                }
                Outlier::HalfOpen { granted_at, .. } if now >= granted_at + o.probe_timeout => {
                    let seq = self.new_seq();
                    self.backends[i].outlier = Outlier::HalfOpen {
                        seq,
                        granted_at: now,
                    };
                }
                _ => {}
            }
            // Forgive one ejection per base interval spent Normal (Envoy
            // decrements its ejection multiplier on each detection
            // interval the host is not ejected).
            let b = &mut self.backends[i];
            while let Some(at) = b.decay_at {
                if now < at {
                    break;
                }
                b.backoff_level = b.backoff_level.saturating_sub(1);
                b.decay_at = (b.backoff_level > 0).then(|| at + o.base_ejection);
            }
        }
    }

    fn apply(&mut self, i: usize, kind: OutcomeKind, count: u32) {
        let now = self.now;
        let b = &mut self.backends[i];
        match (b.outlier, kind) {
            (_, OutcomeKind::LocalOrigin) | (Outlier::Ejected { .. }, _) => return,
            (Outlier::HalfOpen { .. }, OutcomeKind::Success) => return self.heal(i, now),
            (Outlier::HalfOpen { .. }, _) => return self.eject(i),
            (Outlier::Normal, _) => {}
        }
        match kind {
            OutcomeKind::Success => {
                b.consecutive_5xx = 0;
                b.consecutive_gateway = 0;
            }
            OutcomeKind::Http5xx => {
                b.consecutive_5xx = b.consecutive_5xx.saturating_add(count);
                b.consecutive_gateway = 0;
            }
            OutcomeKind::GatewayFailure(_) => {
                b.consecutive_5xx = b.consecutive_5xx.saturating_add(count);
                b.consecutive_gateway = b.consecutive_gateway.saturating_add(count);
            }
            OutcomeKind::LocalOrigin => return, // handled above
        }
        let failures = if kind.is_failure() { count } else { 0 };
        let o = &self.config.outlier;
        let mut trip = o.consecutive_5xx.is_some_and(|t| b.consecutive_5xx >= t)
            || o.consecutive_gateway_failure
                .is_some_and(|t| b.consecutive_gateway >= t);
        if let (Some(r), Some(w)) = (&o.failure_rate, &mut b.window) {
            w.add(now, count, failures);
            let (req, fail) = w.totals(now);
            trip |= req >= u64::from(r.min_requests.max(1))
                && fail * 100 >= u64::from(r.threshold_percent) * req;
        }
        if trip {
            self.try_eject(i);
        }
    }

    /// Ejects `i` unless `max_ejection_percent` forbids it. A refused
    /// ejection leaves the counters as they are, so the next failure tries
    /// again (by then another backend may have returned).
    fn try_eject(&mut self, i: usize) {
        let pct = usize::from(self.config.outlier.max_ejection_percent);
        if pct == 0 {
            return;
        }
        // Half-open backends count: they are not trusted yet. At least
        // one ejection is always allowed, as in Envoy, so small clusters
        // (where 10 % rounds down to 0) are still protected.
        let cap = (self.backends.len() * pct / 100).max(1);
        let ejected = self
            .backends
            .iter()
            .filter(|b| b.counts_as_ejected())
            .count();
        if ejected + 1 > cap {
            let b = &mut self.backends[i];
            b.ejections_blocked = b.ejections_blocked.saturating_add(1);
            return;
        }
        self.eject(i);
    }

    /// Ejects `i` for `min(base × 2^level, max) + jitter`. Also used for a
    /// failed half-open probe, which is already counted against the cap.
    fn eject(&mut self, i: usize) {
        let o = self.config.outlier;
        let jitter = self.rng.duration_below(o.ejection_jitter);
        let b = &mut self.backends[i];
        let factor = 2u32.saturating_pow(b.backoff_level);
        let length = o.base_ejection.saturating_mul(factor).min(o.max_ejection);
        b.outlier = Outlier::Ejected {
            until: self.now + length + jitter,
        };
        b.backoff_level = b.backoff_level.saturating_add(1).min(32);
        b.decay_at = None;
        b.ejections_total = b.ejections_total.saturating_add(1);
        b.reset_detection();
    }

    /// Back to normal; forgiving starts one base interval after `since`.
    fn heal(&mut self, i: usize, since: Time) {
        let base = self.config.outlier.base_ejection;
        let b = &mut self.backends[i];
        b.outlier = Outlier::Normal;
        b.reset_detection();
        b.decay_at = (b.backoff_level > 0).then(|| since + base);
    }

    fn new_seq(&mut self) -> u32 {
        let s = self.next_seq;
        self.next_seq = self.next_seq.checked_add(1).unwrap_or(1); // 0 means "no grant"
        s
    }

    /// Recomputes the published state and bumps the generation if it
    /// changed.
    fn publish(&mut self) {
        let n = self.backends.len();
        let mut changed = self.eligible.backends() != n;
        if changed {
            self.eligible = EligibleSet::none(n);
            self.half_open = EligibleSet::none(n);
            self.grants = vec![ProbeGrant::NONE; n];
        }
        let probes = self.config.outlier.half_open_probes;
        for (i, b) in self.backends.iter().enumerate() {
            let eligible = b.eligible();
            let grant = match b.outlier {
                Outlier::HalfOpen { seq, .. } if eligible => ProbeGrant {
                    seq,
                    tokens: probes,
                },
                _ => ProbeGrant::NONE,
            };
            let half_open = grant != ProbeGrant::NONE;
            if self.eligible.contains(i) != eligible
                || self.half_open.contains(i) != half_open
                || self.grants[i] != grant
            {
                changed = true;
                self.eligible.set(i, eligible);
                self.half_open.set(i, half_open);
                self.grants[i] = grant;
            }
        }
        if changed {
            self.generation += 1;
        }
    }
}
