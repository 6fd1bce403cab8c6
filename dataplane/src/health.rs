//! The decision component on the dataplane's main side: outlier detection
//! from every loop's outcomes, published on the health board the loops
//! (and the XDP program) read.
//!
//! Each loop sends run-length batches of outcomes (response classes,
//! connect failures, resets, timeouts per backend) every report tick. The
//! `sluice-health` thread feeds them to one `sluice_lb::ClusterHealth` per
//! cluster, ticks the clusters at their deadlines (ejections ending,
//! half-open probes timing out), and when a cluster's generation changes
//! it installs the probe grants and publishes the eligible and half-open
//! sets. The control process takes this component over later: its inputs
//! and outputs are plain values.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam::channel::{Receiver, RecvTimeoutError};
use sluice_config::Config;
use sluice_lb::{
    BackendState, ClusterHealth, EligibleSet, FailureRateConfig, HealthConfig, Outcome,
    OutlierConfig,
};
use sluice_proxy::board::Board;
use sluice_proxy::ProxySpec;
use tracing::{info, warn};

use crate::tcp_service::Clock;

/// A loop's outcomes since its last batch: (cluster, outcome).
pub type Batch = Vec<(usize, Outcome)>;

/// Batches in flight from the loops before one is dropped (counted).
pub const BATCH_QUEUE: usize = 1024;

/// The outlier settings of a cluster in sluice-lb's terms.
pub fn outlier_config(o: &sluice_config::OutlierDetection) -> OutlierConfig {
    if !o.enabled {
        return OutlierConfig {
            consecutive_5xx: None,
            consecutive_gateway_failure: None,
            failure_rate: None,
            max_ejection_percent: 0,
            ..OutlierConfig::default()
        };
    }
    let nonzero = |n: u32| (n > 0).then_some(n);
    OutlierConfig {
        consecutive_5xx: nonzero(o.consecutive_5xx),
        consecutive_gateway_failure: nonzero(o.consecutive_gateway_failures),
        failure_rate: (o.failure_rate_threshold > 0.0).then(|| FailureRateConfig {
            window: o.failure_rate_window,
            buckets: 10,
            threshold_percent: (o.failure_rate_threshold * 100.0).round().clamp(1.0, 100.0) as u8,
            min_requests: o.failure_rate_min_requests,
        }),
        base_ejection: o.base_ejection,
        max_ejection: o.max_ejection.max(o.base_ejection),
        ejection_jitter: o.ejection_jitter,
        max_ejection_percent: o.max_ejection_percent.min(100) as u8,
        half_open_probes: o.half_open_probes,
        ..OutlierConfig::default()
    }
}

fn describe(s: BackendState) -> String {
    match s {
        BackendState::Healthy => "healthy".into(),
        BackendState::Unhealthy => "unhealthy (active checks)".into(),
        BackendState::Ejected { .. } => "ejected".into(),
        BackendState::HalfOpen { probes } => format!("half-open ({probes} probes)"),
    }
}

/// Starts the decision thread. It stops when `stop` is set.
pub fn spawn(
    spec: Arc<ProxySpec>,
    config: &Config,
    board: Arc<Board>,
    rx: Receiver<Batch>,
    clock: Clock,
    stop: Arc<AtomicBool>,
    seed: u64,
) -> anyhow::Result<JoinHandle<()>> {
    let mut clusters = Vec::with_capacity(config.clusters.len());
    for (i, c) in config.clusters.iter().enumerate() {
        let hc = HealthConfig {
            active: None,
            outlier: outlier_config(&c.outlier),
        };
        let h = ClusterHealth::new(hc, c.endpoints.len(), seed ^ i as u64)
            .map_err(|e| anyhow::anyhow!("cluster \"{}\": outlier settings: {e}", c.name))?;
        clusters.push(h);
    }
    let names: Vec<(String, Vec<String>)> = spec
        .clusters
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                c.backends.iter().map(ToString::to_string).collect(),
            )
        })
        .collect();
    let handle = std::thread::Builder::new()
        .name("sluice-health".into())
        .spawn(move || run(clusters, names, board, rx, clock, stop))?;
    Ok(handle)
}

fn run(
    mut clusters: Vec<ClusterHealth>,
    names: Vec<(String, Vec<String>)>,
    board: Arc<Board>,
    rx: Receiver<Batch>,
    clock: Clock,
    stop: Arc<AtomicBool>,
) {
    let mut pending: Vec<Vec<Outcome>> = vec![Vec::new(); clusters.len()];
    let mut generations: Vec<u64> = clusters.iter().map(ClusterHealth::generation).collect();
    let mut states: Vec<Vec<Option<BackendState>>> = clusters
        .iter()
        .map(|h| (0..h.backends()).map(|i| h.state(i)).collect())
        .collect();
    while !stop.load(Ordering::Relaxed) {
        let now = clock.now();
        let next = clusters
            .iter()
            .filter_map(ClusterHealth::next_deadline)
            .min()
            .map_or(Duration::from_millis(100), |d| {
                d.saturating_since(now).min(Duration::from_millis(100))
            });
        match rx.recv_timeout(next) {
            Ok(batch) => {
                let mut add = |b: Batch| {
                    for (c, o) in b {
                        if let Some(p) = pending.get_mut(c) {
                            p.push(o);
                        }
                    }
                };
                add(batch);
                while let Ok(b) = rx.try_recv() {
                    add(b);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        let now = clock.now();
        let mut changed = false;
        for (c, h) in clusters.iter_mut().enumerate() {
            if !pending[c].is_empty() {
                h.record_outcomes(now, &pending[c]);
                pending[c].clear();
            }
            h.tick(now);
            if h.generation() != generations[c] {
                generations[c] = h.generation();
                changed = true;
                board.tokens(c).sync(h.grants());
                for (b, seen) in states[c].iter_mut().enumerate() {
                    let s = h.state(b);
                    if s != *seen {
                        *seen = s;
                        if let Some(s) = s {
                            info!(
                                cluster = %names[c].0,
                                backend = %names[c].1[b],
                                "backend {}",
                                describe(s)
                            );
                        }
                    }
                }
            }
        }
        if changed {
            let sets: Vec<(&EligibleSet, &EligibleSet)> = clusters
                .iter()
                .map(|h| (h.eligible(), h.half_open()))
                .collect();
            board.publish(&sets);
            if board.all_ejected() {
                warn!("no cluster has an eligible backend: new connections are refused until one returns");
            }
        }
    }
}
