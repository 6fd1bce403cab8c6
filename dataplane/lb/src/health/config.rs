//! Settings of the decision component. Plain values (integers, durations,
//! enums) so the control process can carry them in its own config format.

use core::time::Duration;

use crate::error::ConfigError;

/// Health and outlier settings of one cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HealthConfig {
    /// Active health checking; `None` means none is done and every backend
    /// counts as passing.
    pub active: Option<ActiveHealthConfig>,
    pub outlier: OutlierConfig,
}

/// Thresholds for active health check results.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActiveHealthConfig {
    /// Consecutive passes that make an unhealthy backend healthy (≥ 1).
    pub healthy_threshold: u32,
    /// Consecutive failures that make a healthy backend unhealthy (≥ 1).
    pub unhealthy_threshold: u32,
    /// State of a backend before any check has run. `Unhealthy` keeps
    /// traffic off a new backend until it has passed `healthy_threshold`
    /// checks.
    pub initial: InitialHealth,
}

impl Default for ActiveHealthConfig {
    fn default() -> Self {
        ActiveHealthConfig {
            healthy_threshold: 2,
            unhealthy_threshold: 3,
            initial: InitialHealth::Healthy,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InitialHealth {
    #[default]
    Healthy,
    Unhealthy,
}

/// Passive outlier detection and ejection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutlierConfig {
    /// Eject after this many 5xx in a row (gateway failures count as 5xx);
    /// `None` turns the rule off.
    pub consecutive_5xx: Option<u32>,
    /// Eject after this many gateway failures in a row (connect failure,
    /// reset, timeout, 502/503/504); `None` turns the rule off.
    pub consecutive_gateway_failure: Option<u32>,
    /// Eject when the failure rate over a sliding window crosses a
    /// threshold; `None` turns the rule off.
    pub failure_rate: Option<FailureRateConfig>,
    /// First ejection's length; the `n`-th in a row lasts `base × 2^(n-1)`.
    /// Also the healthy time after which one ejection is forgiven.
    pub base_ejection: Duration,
    /// Cap on an ejection's length before jitter.
    pub max_ejection: Duration,
    /// A uniform `[0, jitter)` is added to every ejection so backends
    /// ejected together do not return together.
    pub ejection_jitter: Duration,
    /// At most this percentage of the cluster's backends is ejected (or
    /// half-open) at once, rounded down, but at least one backend may be;
    /// 0 turns ejection off entirely.
    pub max_ejection_percent: u8,
    /// Requests admitted to a backend whose ejection has ended before it is
    /// trusted again; 0 returns it straight to healthy.
    pub half_open_probes: u32,
    /// A half-open backend whose probes have produced no verdict for this
    /// long gets a fresh grant (probes can be lost: the client went away,
    /// a loop restarted).
    pub probe_timeout: Duration,
}

impl Default for OutlierConfig {
    /// Envoy's defaults where it has them: 5 consecutive 5xx, 30 s base,
    /// 300 s cap, 10 %.
    fn default() -> Self {
        OutlierConfig {
            consecutive_5xx: Some(5),
            consecutive_gateway_failure: None,
            failure_rate: None,
            base_ejection: Duration::from_secs(30),
            max_ejection: Duration::from_secs(300),
            ejection_jitter: Duration::ZERO,
            max_ejection_percent: 10,
            half_open_probes: 1,
            probe_timeout: Duration::from_secs(10),
        }
    }
}

/// Failure rate over a sliding window of fixed buckets: the window is
/// `buckets` sub-intervals of `window / buckets`, so it covers between
/// `window - window / buckets` and `window` of history, in bounded memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailureRateConfig {
    pub window: Duration,
    /// 1..=64.
    pub buckets: u32,
    /// Eject when failures are at least this percentage of requests (1..=100).
    pub threshold_percent: u8,
    /// …and the window holds at least this many requests.
    pub min_requests: u32,
}

impl Default for FailureRateConfig {
    /// Envoy's failure-percentage defaults (85 %, 50 requests) over 10 s.
    fn default() -> Self {
        FailureRateConfig {
            window: Duration::from_secs(10),
            buckets: 10,
            threshold_percent: 85,
            min_requests: 50,
        }
    }
}

impl HealthConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(a) = &self.active {
            if a.healthy_threshold == 0 || a.unhealthy_threshold == 0 {
                return Err(ConfigError::Invalid("health check thresholds must be ≥ 1"));
            }
        }
        let o = &self.outlier;
        if o.consecutive_5xx == Some(0) || o.consecutive_gateway_failure == Some(0) {
            return Err(ConfigError::Invalid(
                "consecutive failure thresholds must be ≥ 1 (None turns a rule off)",
            ));
        }
        if o.base_ejection.is_zero() {
            return Err(ConfigError::Invalid("base_ejection must be > 0"));
        }
        if o.max_ejection < o.base_ejection {
            return Err(ConfigError::Invalid("max_ejection must be ≥ base_ejection"));
        }
        if o.max_ejection_percent > 100 {
            return Err(ConfigError::Invalid("max_ejection_percent must be ≤ 100"));
        }
        if o.half_open_probes > 0 && o.probe_timeout.is_zero() {
            return Err(ConfigError::Invalid("probe_timeout must be > 0"));
        }
        if let Some(r) = &o.failure_rate {
            if !(1..=64).contains(&r.buckets) {
                return Err(ConfigError::Invalid("failure_rate.buckets must be 1..=64"));
            }
            if r.window.as_nanos() < u128::from(r.buckets) {
                return Err(ConfigError::Invalid("failure_rate.window too short"));
            }
            if !(1..=100).contains(&r.threshold_percent) {
                return Err(ConfigError::Invalid(
                    "failure_rate.threshold_percent must be 1..=100",
                ));
            }
        }
        Ok(())
    }
}
