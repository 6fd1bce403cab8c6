//! Shared fixtures: a config with every rule off but the one under test,
//! a virtual clock in milliseconds, outcome shorthands.
#![allow(dead_code)]

use std::time::Duration;

use sluice_lb::{
    ClusterHealth, GatewayFailure, HealthCheck, HealthConfig, Outcome, OutcomeKind, OutlierConfig,
    Time,
};

pub const BASE: Duration = Duration::from_secs(10);

pub fn ms(ms: u64) -> Time {
    Time::from_millis(ms)
}

pub fn secs(s: u64) -> Time {
    Time::from_millis(s * 1000)
}

/// Consecutive 5xx at 5, 10 s base, 300 s cap, no jitter, no cap on
/// ejections, no half-open.
pub fn outlier() -> OutlierConfig {
    OutlierConfig {
        consecutive_5xx: Some(5),
        consecutive_gateway_failure: None,
        failure_rate: None,
        base_ejection: BASE,
        max_ejection: Duration::from_secs(300),
        ejection_jitter: Duration::ZERO,
        max_ejection_percent: 100,
        half_open_probes: 0,
        probe_timeout: Duration::from_secs(5),
    }
}

pub fn cluster(outlier: OutlierConfig, backends: usize) -> ClusterHealth {
    ClusterHealth::new(
        HealthConfig {
            active: None,
            outlier,
        },
        backends,
        42,
    )
    .unwrap()
}

pub fn record(c: &mut ClusterHealth, now: Time, backend: usize, kind: OutcomeKind, n: u32) {
    c.record_outcomes(now, &[Outcome::new(backend, kind, n)]);
}

pub fn http5xx(c: &mut ClusterHealth, now: Time, backend: usize, n: u32) {
    record(c, now, backend, OutcomeKind::Http5xx, n)
}

pub fn ok(c: &mut ClusterHealth, now: Time, backend: usize, n: u32) {
    record(c, now, backend, OutcomeKind::Success, n)
}

pub fn reset(c: &mut ClusterHealth, now: Time, backend: usize, n: u32) {
    record(
        c,
        now,
        backend,
        OutcomeKind::GatewayFailure(GatewayFailure::Reset),
        n,
    )
}

pub fn check(c: &mut ClusterHealth, now: Time, backend: usize, passed: bool) {
    c.record_health_checks(now, &[HealthCheck { backend, passed }]);
}
