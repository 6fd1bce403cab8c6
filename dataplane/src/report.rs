//! Counter reports: every --stats-interval and at exit, as a human table or
//! one JSON object per line (stdout; logs go to stderr).

use std::io::Write;
use std::time::Duration;

use serde_json::{json, Map, Value};
use sluice_bpf::{XdpCounter, XdpCounters};

use crate::cli::StatsFormat;
use crate::stats::{final_table, interval_lines, Counters, QueueLabel};
use sluice_proxy::record::Latency;

/// How interval reports are printed.
#[derive(Clone, Copy, Debug)]
pub struct ReportStyle {
    pub format: StatsFormat,
    /// The TCP stack runs: the human form adds a TCP line per queue.
    pub tcp: bool,
}

/// Latency of the proxied requests finished in an interval, with the names
/// of routes and clusters.
pub struct LatencyReport<'a> {
    pub latency: &'a Latency,
    pub routes: &'a [String],
    pub clusters: &'a [String],
}

fn quantiles(h: &hdrhistogram::Histogram<u64>) -> Value {
    json!({
        "count": h.len(),
        "p50_us": h.value_at_quantile(0.5),
        "p90_us": h.value_at_quantile(0.9),
        "p99_us": h.value_at_quantile(0.99),
        "max_us": h.max(),
    })
}

fn latency_json(l: &LatencyReport<'_>) -> Value {
    let rows = |hs: &[hdrhistogram::Histogram<u64>], names: &[String]| -> Value {
        Value::Array(
            hs.iter()
                .zip(names)
                .filter(|(h, _)| !h.is_empty())
                .map(|(h, n)| {
                    let mut v = quantiles(h);
                    v["name"] = json!(n);
                    v
                })
                .collect(),
        )
    };
    json!({
        "routes": rows(&l.latency.routes, l.routes),
        "clusters": rows(&l.latency.clusters, l.clusters),
    })
}

fn latency_lines(l: &LatencyReport<'_>) -> String {
    let mut out = String::new();
    for (kind, hs, names) in [
        ("route", &l.latency.routes, l.routes),
        ("cluster", &l.latency.clusters, l.clusters),
    ] {
        for (h, n) in hs.iter().zip(names) {
            if h.is_empty() {
                continue;
            }
            out.push_str(&format!(
                "  latency {kind} {n}: {} requests, p50 {} us, p90 {} us, p99 {} us, max {} us\n",
                h.len(),
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.9),
                h.value_at_quantile(0.99),
                h.max()
            ));
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
pub fn interval_report(
    style: ReportStyle,
    elapsed: Duration,
    period: Duration,
    labels: &[QueueLabel],
    now: &[Counters],
    before: &[Counters],
    xdp: Option<&XdpCounters>,
    latency: Option<&LatencyReport<'_>>,
    backends: Option<&Value>,
) {
    let text = match style.format {
        StatsFormat::Human => {
            let mut t = interval_lines(elapsed, period, labels, now, before, style.tcp);
            if let Some(l) = latency {
                t.push_str(&latency_lines(l));
            }
            for b in backends.and_then(Value::as_array).into_iter().flatten() {
                if b["state"] != "healthy" {
                    t.push_str(&format!(
                        "  backend {} of {}: {}\n",
                        b["backend"].as_str().unwrap_or("?"),
                        b["cluster"].as_str().unwrap_or("?"),
                        b["state"].as_str().unwrap_or("?")
                    ));
                }
            }
            t
        }
        StatsFormat::Json => {
            let v = json!({
                "type": "interval",
                "elapsed_s": elapsed.as_secs_f64(),
                "queues": queues_json(labels, now),
                "total": sum(now),
                "xdp": xdp.map(xdp_json),
                "latency": latency.map(latency_json),
                "backends": backends,
            });
            format!("{v}\n")
        }
    };
    emit(&text);
}

pub fn final_report(
    format: StatsFormat,
    labels: &[QueueLabel],
    counters: &[Counters],
    xdp: Option<&XdpCounters>,
) {
    let text = match format {
        StatsFormat::Human => {
            let mut t = String::from("\nfinal counters\n");
            t.push_str(&final_table(labels, counters));
            if let Some(x) = xdp {
                t.push_str("\nXDP program (packets, bytes; non-zero only)\n");
                for (name, p, b) in xdp_rows(x) {
                    if p > 0 {
                        t.push_str(&format!("{name:<26} {p:>16} {b:>16}\n"));
                    }
                }
            }
            t
        }
        StatsFormat::Json => {
            let total = sum(counters);
            let v = json!({
                "type": "final",
                "queues": queues_json(labels, counters),
                "total": total,
                "balanced": total.balanced(),
                "ns_per_packet": total.ns_per_packet(),
                "user_ns_per_packet": total.user_ns_per_packet(),
                "xdp": xdp.map(xdp_json),
            });
            format!("{v}\n")
        }
    };
    emit(&text);
}

fn sum(counters: &[Counters]) -> Counters {
    let mut total = Counters::default();
    counters.iter().for_each(|c| total.add(c));
    total
}

fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

fn queues_json(labels: &[QueueLabel], counters: &[Counters]) -> Value {
    Value::Array(
        labels
            .iter()
            .zip(counters)
            .map(|(l, c)| {
                let mut m = Map::new();
                m.insert("queue".into(), json!(l.queue));
                m.insert("core".into(), json!(l.core));
                for (name, _, v) in c.fields() {
                    m.insert(name.into(), json!(v));
                }
                Value::Object(m)
            })
            .collect(),
    )
}

fn xdp_rows(x: &XdpCounters) -> Vec<(&'static str, u64, u64)> {
    x.iter()
        .map(|(c, v): (XdpCounter, _)| (c.label(), v.packets, v.bytes))
        .collect()
}

fn xdp_json(x: &XdpCounters) -> Value {
    let mut m = Map::new();
    for (name, p, b) in xdp_rows(x) {
        m.insert(name.into(), json!({ "packets": p, "bytes": b }));
    }
    Value::Object(m)
}
