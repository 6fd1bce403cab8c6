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

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Instant;

use crossbeam::channel::{self, Receiver, Sender};
use sluice_config::{Config, StatusRange};
use sluice_lb::{
    ActiveHealthConfig, BackendState, ClusterHealth, EligibleSet, FailureRateConfig, HealthCheck,
    HealthConfig, InitialHealth, Outcome, OutlierConfig,
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

/// One active check: `GET path` with `Connection: close`; passes when the
/// status line arrives within `timeout` with an expected status. Kernel
/// sockets, from the health thread: checks are rare, and a check must not
/// depend on the loops it is judging.
pub fn check_once(
    addr: SocketAddr,
    host: &str,
    path: &str,
    timeout: Duration,
    expected: &[StatusRange],
) -> bool {
    let deadline = Instant::now() + timeout;
    let Ok(mut s) = TcpStream::connect_timeout(&addr, timeout) else {
        return false;
    };
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    let _ = s.set_write_timeout(Some(left()));
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: sluice-health-check\r\nConnection: close\r\n\r\n"
    );
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = [0u8; 256];
    let mut got = 0;
    while got < buf.len() && !buf[..got].contains(&b'\n') {
        if Instant::now() >= deadline {
            return false;
        }
        let _ = s.set_read_timeout(Some(left()));
        match s.read(&mut buf[got..]) {
            Ok(0) | Err(_) => return false,
            Ok(n) => got += n,
        }
    }
    // "HTTP/1.x NNN ..."
    let line = &buf[..got];
    let status = line
        .split(|&b| b == b' ')
        .nth(1)
        .and_then(|c| std::str::from_utf8(c).ok())
        .and_then(|c| c.trim().parse::<u16>().ok());
    line.starts_with(b"HTTP/1.") && status.is_some_and(|st| expected.iter().any(|r| r.contains(st)))
}

/// What one backend's active checks look like.
struct Target {
    cluster: usize,
    backend: usize,
    addr: SocketAddr,
    host: String,
    path: String,
    interval: Duration,
    timeout: Duration,
    expected: Vec<StatusRange>,
    next: Instant,
}

/// The active checker: one thread, the checks in turn, each backend every
/// `interval` (a check that times out delays the others by at most its
/// timeout).
fn spawn_checker(
    config: &Config,
    tx: Sender<(usize, HealthCheck)>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<Option<JoinHandle<()>>> {
    let mut targets = Vec::new();
    let start = Instant::now();
    for (ci, c) in config.clusters.iter().enumerate() {
        let Some(hc) = &c.health_check else {
            continue;
        };
        let n = c.endpoints.len().max(1) as u32;
        for (bi, e) in c.endpoints.iter().enumerate() {
            let host = hc
                .host
                .clone()
                .or_else(|| c.tls.as_ref().and_then(|t| t.sni.clone()))
                .unwrap_or_else(|| e.address.to_string());
            targets.push(Target {
                cluster: ci,
                backend: bi,
                addr: e.address,
                host,
                path: hc.path.clone(),
                interval: hc.interval,
                timeout: hc.timeout.min(hc.interval),
                expected: hc.expected_status.clone(),
                // Spread the first round over the interval.
                next: start + hc.interval * bi as u32 / n,
            });
        }
    }
    if targets.is_empty() {
        return Ok(None);
    }
    let h = std::thread::Builder::new()
        .name("sluice-hc".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let now = Instant::now();
                let Some(t) = targets.iter_mut().min_by_key(|t| t.next) else {
                    return;
                };
                if t.next > now {
                    std::thread::sleep((t.next - now).min(Duration::from_millis(50)));
                    continue;
                }
                t.next = now + t.interval;
                let passed = check_once(t.addr, &t.host, &t.path, t.timeout, &t.expected);
                let _ = tx.send((
                    t.cluster,
                    HealthCheck {
                        backend: t.backend,
                        passed,
                    },
                ));
            }
        })?;
    Ok(Some(h))
}

/// Every backend's state, as the reports show it (JSON).
pub type View = Arc<std::sync::Mutex<serde_json::Value>>;

fn view_of(
    clusters: &[ClusterHealth],
    names: &[(String, Vec<String>)],
    now: sluice_lb::Time,
) -> serde_json::Value {
    let mut rows = Vec::new();
    for (c, h) in clusters.iter().enumerate() {
        for b in 0..h.backends() {
            let Some(v) = h.view(b) else { continue };
            let state = match v.state {
                BackendState::Healthy => "healthy",
                BackendState::Unhealthy => "unhealthy",
                BackendState::Ejected { .. } => "ejected",
                BackendState::HalfOpen { .. } => "half_open",
            };
            rows.push(serde_json::json!({
                "cluster": names[c].0,
                "backend": names[c].1[b],
                "state": state,
                "ejected_for_s": v.ejected_until.map(|u| u.saturating_since(now).as_secs_f64()),
                "consecutive_5xx": v.consecutive_5xx,
                "consecutive_gateway_failures": v.consecutive_gateway_failures,
                "window_requests": v.window_requests,
                "window_failures": v.window_failures,
                "ejections": v.ejections_total,
                "ejections_blocked": v.ejections_blocked,
            }));
        }
    }
    serde_json::Value::Array(rows)
}

/// Starts the decision thread. It stops when `stop` is set.
#[allow(clippy::too_many_arguments)]
pub fn spawn(
    spec: Arc<ProxySpec>,
    config: &Config,
    board: Arc<Board>,
    rx: Receiver<Batch>,
    clock: Clock,
    stop: Arc<AtomicBool>,
    seed: u64,
    view: View,
) -> anyhow::Result<JoinHandle<()>> {
    let mut clusters = Vec::with_capacity(config.clusters.len());
    for (i, c) in config.clusters.iter().enumerate() {
        let hc = HealthConfig {
            active: c.health_check.as_ref().map(|h| ActiveHealthConfig {
                healthy_threshold: h.healthy_threshold.max(1),
                unhealthy_threshold: h.unhealthy_threshold.max(1),
                initial: InitialHealth::Healthy,
            }),
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
    let (hc_tx, hc_rx) = channel::bounded(1024);
    let checker = spawn_checker(config, hc_tx, Arc::clone(&stop))?;
    let handle = std::thread::Builder::new()
        .name("sluice-health".into())
        .spawn(move || {
            run(
                clusters,
                names,
                board,
                rx,
                hc_rx,
                clock,
                Arc::clone(&stop),
                view,
            );
            if let Some(c) = checker {
                let _ = c.join();
            }
        })?;
    Ok(handle)
}

#[allow(clippy::too_many_arguments)]
fn run(
    mut clusters: Vec<ClusterHealth>,
    names: Vec<(String, Vec<String>)>,
    board: Arc<Board>,
    rx: Receiver<Batch>,
    mut hc_rx: Receiver<(usize, HealthCheck)>,
    clock: Clock,
    stop: Arc<AtomicBool>,
    view: View,
) {
    let mut last_view = Instant::now() - Duration::from_secs(1);
    let mut pending: Vec<Vec<Outcome>> = vec![Vec::new(); clusters.len()];
    let mut checks: Vec<Vec<HealthCheck>> = vec![Vec::new(); clusters.len()];
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
        let mut add = |b: Batch| {
            for (c, o) in b {
                if let Some(p) = pending.get_mut(c) {
                    p.push(o);
                }
            }
        };
        crossbeam::select! {
            recv(rx) -> b => match b {
                Ok(b) => add(b),
                Err(_) => break,
            },
            recv(hc_rx) -> c => match c {
                Ok((c, check)) => {
                    if let Some(v) = checks.get_mut(c) {
                        v.push(check);
                    }
                }
                // No active checks (their thread is gone or never ran): a
                // disconnected channel is always ready, and selecting on
                // it would spin this thread.
                Err(_) => hc_rx = crossbeam::channel::never(),
            },
            default(next) => {},
        }
        while let Ok(b) = rx.try_recv() {
            add(b);
        }
        while let Ok((c, check)) = hc_rx.try_recv() {
            if let Some(v) = checks.get_mut(c) {
                v.push(check);
            }
        }
        let now = clock.now();
        let mut changed = false;
        for (c, h) in clusters.iter_mut().enumerate() {
            if !pending[c].is_empty() {
                h.record_outcomes(now, &pending[c]);
                pending[c].clear();
            }
            if !checks[c].is_empty() {
                h.record_health_checks(now, &checks[c]);
                checks[c].clear();
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
        if changed || last_view.elapsed() >= Duration::from_secs(1) {
            last_view = Instant::now();
            if let Ok(mut v) = view.lock() {
                *v = view_of(&clusters, &names, now);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn serve_once(reply: &'static [u8]) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = l.accept() {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let _ = s.write_all(reply);
            }
        });
        addr
    }

    const OK: &[StatusRange] = &[StatusRange {
        first: 200,
        last: 299,
    }];

    #[test]
    fn checks_pass_on_expected_statuses_only() {
        let t = Duration::from_secs(2);
        let a = serve_once(b"HTTP/1.1 204 No Content\r\n\r\n");
        assert!(check_once(a, "h", "/healthz", t, OK));
        let a = serve_once(b"HTTP/1.1 503 Service Unavailable\r\n\r\n");
        assert!(!check_once(a, "h", "/healthz", t, OK));
        let a = serve_once(b"garbage\r\n");
        assert!(!check_once(a, "h", "/healthz", t, OK));
        // Nobody listening.
        let closed = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        assert!(!check_once(closed, "h", "/", t, OK));
    }

    #[test]
    fn a_silent_backend_fails_at_the_timeout() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let _keep = std::thread::spawn(move || {
            let c = l.accept();
            std::thread::sleep(Duration::from_secs(2));
            drop(c);
        });
        let start = Instant::now();
        assert!(!check_once(addr, "h", "/", Duration::from_millis(200), OK));
        assert!(start.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn outlier_settings_translate() {
        let mut o = sluice_config::OutlierDetection {
            failure_rate_threshold: 0.5,
            ..Default::default()
        };
        let c = outlier_config(&o);
        assert_eq!(c.failure_rate.unwrap().threshold_percent, 50);
        assert_eq!(c.consecutive_5xx, Some(o.consecutive_5xx));
        o.enabled = false;
        let c = outlier_config(&o);
        assert_eq!((c.consecutive_5xx, c.max_ejection_percent), (None, 0));
    }
}
