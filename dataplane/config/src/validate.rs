//! The rules that deserialization cannot check: references between
//! sections, uniqueness, ranges, and combinations. Each issue carries the
//! path of the value to blame, so the parser can point at it.

use crate::error::{key, Seg};
use crate::model::{
    defaults, is_token, Cluster, HealthCheck, LbPolicy, OutlierDetection, RetryBudget, Route,
    UpstreamTls,
};
use crate::{Config, DisplayDuration};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

pub(crate) struct Issue {
    pub(crate) segs: Vec<Seg>,
    pub(crate) message: String,
}

struct Issues {
    list: Vec<Issue>,
}

impl Issues {
    fn push(&mut self, segs: Vec<Seg>, message: impl Into<String>) {
        self.list.push(Issue {
            segs,
            message: message.into(),
        });
    }

    fn positive(&mut self, segs: Vec<Seg>, d: Duration) {
        if d.is_zero() {
            self.push(segs, "must be greater than 0");
        }
    }

    fn at_least_one(&mut self, segs: Vec<Seg>, n: u32) {
        if n == 0 {
            self.push(segs, "must be at least 1");
        }
    }
}

/// `base` followed by `keys`.
fn at(base: &[Seg], keys: &[&str]) -> Vec<Seg> {
    let mut segs = base.to_vec();
    segs.extend(keys.iter().map(|k| key(k)));
    segs
}

fn at_index(base: &[Seg], k: &str, i: usize) -> Vec<Seg> {
    let mut segs = at(base, &[k]);
    segs.push(Seg::Index(i));
    segs
}

/// A DNS name: lowercase labels of letters, digits, `-` and `_`, each 1 to
/// 63 bytes; no trailing dot, no port.
pub(crate) fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        })
}

/// `example.com` or `*.example.com`.
fn is_route_host(s: &str) -> bool {
    is_host_name(s.strip_prefix("*.").unwrap_or(s))
}

fn is_cluster_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// `spiffe://TRUST-DOMAIN[/PATH]` per the SPIFFE ID spec's character sets.
fn is_spiffe_id(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("spiffe://") else {
        return false;
    };
    let (domain, path) = match rest.split_once('/') {
        Some((d, p)) => (d, Some(p)),
        None => (rest, None),
    };
    let domain_ok = !domain.is_empty()
        && domain.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.' | b'_')
        });
    let path_ok = path.is_none_or(|p| {
        p.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        })
    });
    domain_ok && path_ok
}

/// Headers the proxy manages per hop or per message: a configured header
/// with one of these names would corrupt the exchange.
const RESERVED_HEADERS: &[&str] = &[
    "connection",
    "content-length",
    "host",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn header_name_problem(name: &str) -> Option<String> {
    if !is_token(name) || name.bytes().any(|b| b.is_ascii_uppercase()) {
        Some(format!("{name:?} is not a valid lowercase header name"))
    } else if RESERVED_HEADERS.contains(&name) {
        Some(format!(
            "{name:?} is managed by the proxy and cannot be used here"
        ))
    } else {
        None
    }
}

fn same_family(a: IpAddr, b: IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4()
}

impl Config {
    pub(crate) fn issues(&self) -> Vec<Issue> {
        let mut v = Issues { list: Vec::new() };
        self.check_listeners(&mut v);
        self.check_routes(&mut v);
        let mut names: HashMap<&str, usize> = HashMap::new();
        for (i, c) in self.clusters.iter().enumerate() {
            let base = vec![key("cluster"), Seg::Index(i)];
            if let Some(first) = names.insert(&c.name, i) {
                names.insert(&c.name, first);
                v.push(
                    at(&base, &["name"]),
                    format!(
                        "duplicate cluster name {:?} (also cluster[{first}])",
                        c.name
                    ),
                );
            }
            check_cluster(c, &base, &mut v);
        }
        self.check_proxy(&mut v);
        v.list
    }

    fn check_listeners(&self, v: &mut Issues) {
        let mut seen: HashMap<SocketAddr, usize> = HashMap::new();
        for (i, l) in self.listeners.iter().enumerate() {
            let segs = vec![key("listener"), Seg::Index(i), key("address")];
            if l.address.port() == 0 {
                v.push(segs.clone(), "port must not be 0");
            }
            if let Some(first) = seen.insert(l.address, i) {
                seen.insert(l.address, first);
                v.push(
                    segs,
                    format!(
                        "duplicate listener address {} (also listener[{first}])",
                        l.address
                    ),
                );
            }
        }
    }

    fn check_routes(&self, v: &mut Issues) {
        let clusters: HashSet<&str> = self.clusters.iter().map(|c| c.name.as_str()).collect();
        let mut seen: HashMap<(Option<&str>, Option<&str>, &str), usize> = HashMap::new();
        for (i, r) in self.routes.iter().enumerate() {
            let base = vec![key("route"), Seg::Index(i)];
            check_route(r, &base, v);
            if !clusters.contains(r.cluster.as_str()) {
                let mut known: Vec<&str> = self.clusters.iter().map(|c| c.name.as_str()).collect();
                known.sort_unstable();
                let hint = if known.is_empty() {
                    "no [[cluster]] is defined".to_string()
                } else {
                    format!("clusters: {}", known.join(", "))
                };
                v.push(
                    at(&base, &["cluster"]),
                    format!("unknown cluster {:?} ({hint})", r.cluster),
                );
            }
            let k = (r.host.as_deref(), r.method.as_deref(), r.prefix.as_str());
            if let Some(first) = seen.insert(k, i) {
                seen.insert(k, first);
                v.push(
                    at(&base, &["prefix"]),
                    format!(
                        "same host, method and prefix as route[{first}], so this route would never match"
                    ),
                );
            }
        }
    }

    fn check_proxy(&self, v: &mut Issues) {
        let p = &self.proxy;
        if let Some(h) = &p.spiffe_header {
            if let Some(problem) = header_name_problem(h) {
                v.push(vec![key("proxy"), key("spiffe_header")], problem);
            }
        }
        if p.access_log.as_deref() == Some("") {
            v.push(
                vec![key("proxy"), key("access_log")],
                "must be a file path or \"-\" for standard output",
            );
        }
    }
}

fn check_route(r: &Route, base: &[Seg], v: &mut Issues) {
    if !r.prefix.starts_with('/') {
        v.push(
            at(base, &["prefix"]),
            format!("must start with '/', found {:?}", r.prefix),
        );
    } else if r
        .prefix
        .chars()
        .any(|c| c == '?' || c == '#' || c.is_whitespace() || c.is_control())
    {
        // The query is stripped before matching, so such a prefix could
        // never match.
        v.push(
            at(base, &["prefix"]),
            format!(
                "{:?}: a path prefix cannot contain '?', '#', spaces or control characters",
                r.prefix
            ),
        );
    }
    if let Some(h) = &r.host {
        if !is_route_host(h) {
            v.push(
                at(base, &["host"]),
                format!(
                    "expected a lowercase host name like \"example.com\" or \"*.example.com\" (no port), found {h:?}"
                ),
            );
        }
    }
    if let Some(m) = &r.method {
        if !is_token(m) {
            v.push(
                at(base, &["method"]),
                format!("expected an HTTP method like \"GET\", found {m:?}"),
            );
        }
    }
    v.positive(at(base, &["timeout"]), r.timeout);
    if let Some(t) = r.per_try_timeout {
        if t.is_zero() {
            v.push(at(base, &["per_try_timeout"]), "must be greater than 0");
        } else if t > r.timeout {
            v.push(
                at(base, &["per_try_timeout"]),
                format!(
                    "{} is longer than the route's timeout {}",
                    DisplayDuration(t),
                    DisplayDuration(r.timeout)
                ),
            );
        }
    }
    for (k, cond) in r.retry_on.iter().enumerate() {
        if r.retry_on[..k].contains(cond) {
            v.push(
                at_index(base, "retry_on", k),
                format!("{:?} is listed twice", cond.as_str()),
            );
        }
    }
}

fn check_cluster(c: &Cluster, base: &[Seg], v: &mut Issues) {
    if !is_cluster_name(&c.name) {
        v.push(
            at(base, &["name"]),
            format!(
                "expected letters, digits, '-', '_' or '.', found {:?}",
                c.name
            ),
        );
    }
    if c.endpoints.is_empty() {
        v.push(
            at(base, &["endpoints"]),
            "at least one endpoint is required",
        );
    }
    for (k, e) in c.endpoints.iter().enumerate() {
        let segs = at_index(base, "endpoints", k);
        let ip = e.address.ip();
        if e.address.port() == 0 {
            v.push(segs.clone(), format!("{}: port must not be 0", e.address));
        }
        if ip.is_unspecified() || ip.is_multicast() {
            v.push(
                segs.clone(),
                format!(
                    "{}: cannot connect to an unspecified or multicast address",
                    e.address
                ),
            );
        }
        if c.endpoints[..k].iter().any(|o| o.address == e.address) {
            v.push(segs.clone(), format!("{} is listed twice", e.address));
        }
        if !(1..=defaults::MAX_ENDPOINT_WEIGHT).contains(&e.weight) {
            let mut w = segs;
            w.push(key("weight"));
            v.push(
                w,
                format!(
                    "must be between 1 and {}, found {}",
                    defaults::MAX_ENDPOINT_WEIGHT,
                    e.weight
                ),
            );
        }
        if let Some(src) = c.source {
            if !same_family(src, ip) {
                v.push(
                    at(base, &["source"]),
                    format!(
                        "source {src} and endpoint {} are of different address families",
                        e.address
                    ),
                );
            }
        }
    }
    if let Some(src) = c.source {
        if src.is_unspecified() || src.is_multicast() {
            v.push(
                at(base, &["source"]),
                format!("{src}: a source address must be a unicast address of this host"),
            );
        }
    }
    match (c.lb, &c.hash_on) {
        (LbPolicy::Maglev, None) => v.push(
            at(base, &["lb"]),
            "lb \"maglev\" needs hash_on (\"header:NAME\" or \"client_address\")",
        ),
        (LbPolicy::Maglev, Some(crate::HashOn::Header(h))) => {
            if let Some(problem) = header_name_problem(h) {
                v.push(at(base, &["hash_on"]), problem);
            }
        }
        (LbPolicy::Maglev, Some(crate::HashOn::ClientAddress)) => {}
        (lb, Some(_)) => v.push(
            at(base, &["hash_on"]),
            format!(
                "hash_on is only used with lb \"maglev\" (lb is {:?})",
                lb.as_str()
            ),
        ),
        (_, None) => {}
    }
    v.positive(at(base, &["connect_timeout"]), c.connect_timeout);
    v.positive(at(base, &["idle_timeout"]), c.idle_timeout);

    let pool = &c.pool;
    v.at_least_one(at(base, &["pool", "max_connections"]), pool.max_connections);
    v.at_least_one(
        at(base, &["pool", "max_streams_per_connection"]),
        pool.max_streams_per_connection,
    );
    // Skipped when max_connections is 0: that error says it already.
    if pool.max_connections > 0 && pool.max_idle > pool.max_connections {
        v.push(
            at(base, &["pool", "max_idle"]),
            format!(
                "{} is more than pool.max_connections {}",
                pool.max_idle, pool.max_connections
            ),
        );
    }

    match (&c.tls, c.protocol.is_tls()) {
        (None, true) => v.push(
            at(base, &["protocol"]),
            format!(
                "protocol {:?} needs a [cluster.tls] section",
                c.protocol.as_str()
            ),
        ),
        (Some(_), false) => v.push(
            at(base, &["tls"]),
            format!(
                "[cluster.tls] is only used with protocol \"http1-tls\" or \"h2-tls\" (protocol is {:?})",
                c.protocol.as_str()
            ),
        ),
        (Some(tls), true) => check_tls(tls, &at(base, &["tls"]), v),
        (None, false) => {}
    }
    if let Some(hc) = &c.health_check {
        check_health(hc, &at(base, &["health_check"]), v);
    }
    check_outlier(&c.outlier, &at(base, &["outlier"]), v);
    let b = &c.breaker;
    v.at_least_one(at(base, &["breaker", "max_connections"]), b.max_connections);
    v.at_least_one(
        at(base, &["breaker", "max_pending_requests"]),
        b.max_pending_requests,
    );
    v.at_least_one(at(base, &["breaker", "max_requests"]), b.max_requests);
    check_budget(&c.retry_budget, &at(base, &["retry_budget"]), v);
}

fn check_tls(tls: &UpstreamTls, base: &[Seg], v: &mut Issues) {
    if tls.ca.as_os_str().is_empty() {
        v.push(at(base, &["ca"]), "must be the path of a PEM file");
    }
    match (&tls.client_cert, &tls.client_key) {
        (Some(_), None) => v.push(
            at(base, &["client_cert"]),
            "client_cert needs client_key (both or neither)",
        ),
        (None, Some(_)) => v.push(
            at(base, &["client_key"]),
            "client_key needs client_cert (both or neither)",
        ),
        _ => {}
    }
    if let Some(sni) = &tls.sni {
        if !is_host_name(sni) {
            v.push(
                at(base, &["sni"]),
                format!("expected a lowercase host name like \"backend.example\", found {sni:?}"),
            );
        }
    }
    if let Some(id) = &tls.spiffe_id {
        if !is_spiffe_id(id) {
            v.push(
                at(base, &["spiffe_id"]),
                format!("expected \"spiffe://TRUST-DOMAIN/PATH\", found {id:?}"),
            );
        }
    }
}

fn check_health(hc: &HealthCheck, base: &[Seg], v: &mut Issues) {
    if !hc.path.starts_with('/') || hc.path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        v.push(
            at(base, &["path"]),
            format!("expected a path starting with '/', found {:?}", hc.path),
        );
    }
    if let Some(h) = &hc.host {
        if h.is_empty() || h.chars().any(|c| c.is_whitespace() || c.is_control()) {
            v.push(
                at(base, &["host"]),
                format!("{h:?} is not a valid Host header"),
            );
        }
    }
    v.positive(at(base, &["interval"]), hc.interval);
    v.positive(at(base, &["timeout"]), hc.timeout);
    if hc.timeout > hc.interval {
        v.push(
            at(base, &["timeout"]),
            format!(
                "{} is longer than health_check.interval {}",
                DisplayDuration(hc.timeout),
                DisplayDuration(hc.interval)
            ),
        );
    }
    v.at_least_one(at(base, &["healthy_threshold"]), hc.healthy_threshold);
    v.at_least_one(at(base, &["unhealthy_threshold"]), hc.unhealthy_threshold);
    if hc.expected_status.is_empty() {
        v.push(
            at(base, &["expected_status"]),
            "at least one status is required",
        );
    }
    for (k, r) in hc.expected_status.iter().enumerate() {
        if r.first > r.last || r.first < 100 || r.last > 599 {
            v.push(
                at_index(base, "expected_status", k),
                format!("{r}: expected statuses between 100 and 599, low to high"),
            );
        }
    }
}

fn check_outlier(o: &OutlierDetection, base: &[Seg], v: &mut Issues) {
    if !(0.0..=1.0).contains(&o.failure_rate_threshold) {
        v.push(
            at(base, &["failure_rate_threshold"]),
            format!(
                "must be between 0 and 1 (a fraction; 0 turns it off), found {}",
                o.failure_rate_threshold
            ),
        );
    }
    v.positive(at(base, &["failure_rate_window"]), o.failure_rate_window);
    v.positive(at(base, &["base_ejection"]), o.base_ejection);
    if o.max_ejection < o.base_ejection {
        v.push(
            at(base, &["max_ejection"]),
            format!(
                "{} is shorter than outlier.base_ejection {}",
                DisplayDuration(o.max_ejection),
                DisplayDuration(o.base_ejection)
            ),
        );
    }
    if o.max_ejection_percent > 100 {
        v.push(
            at(base, &["max_ejection_percent"]),
            format!(
                "must be between 0 and 100, found {}",
                o.max_ejection_percent
            ),
        );
    }
    v.at_least_one(at(base, &["half_open_probes"]), o.half_open_probes);
}

fn check_budget(b: &RetryBudget, base: &[Seg], v: &mut Issues) {
    if !(0.0..=100.0).contains(&b.percent) {
        v.push(
            at(base, &["percent"]),
            format!("must be between 0 and 100, found {}", b.percent),
        );
    }
    v.positive(at(base, &["backoff_base"]), b.backoff_base);
    if b.backoff_max < b.backoff_base {
        v.push(
            at(base, &["backoff_max"]),
            format!(
                "{} is shorter than retry_budget.backoff_base {}",
                DisplayDuration(b.backoff_max),
                DisplayDuration(b.backoff_base)
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names() {
        for ok in [
            "example.com",
            "a-b.example_1.com",
            "localhost",
            "198.18.0.100",
        ] {
            assert!(is_host_name(ok), "{ok}");
        }
        for bad in [
            "",
            "Example.com",
            "a..b",
            "a.",
            ".a",
            "a:80",
            "*.a",
            "[::1]",
            &"a".repeat(64),
        ] {
            assert!(!is_host_name(bad), "{bad}");
        }
        assert!(is_route_host("*.example.com"));
        assert!(!is_route_host("*example.com"));
        assert!(!is_route_host("*"));
        assert!(!is_route_host("a.*.com"));
    }

    #[test]
    fn spiffe_ids() {
        for ok in [
            "spiffe://example.org",
            "spiffe://example.org/ns/prod/sa/api",
        ] {
            assert!(is_spiffe_id(ok), "{ok}");
        }
        for bad in [
            "example.org/api",
            "spiffe://",
            "spiffe://Example.org/a",
            "spiffe://example.org/",
            "spiffe://example.org//a",
            "spiffe://example.org/a/../b",
            "spiffe://example.org/a b",
        ] {
            assert!(!is_spiffe_id(bad), "{bad}");
        }
    }

    #[test]
    fn header_names() {
        assert_eq!(header_name_problem("x-client-spiffe-id"), None);
        assert!(header_name_problem("X-Id").is_some());
        assert!(header_name_problem("transfer-encoding").is_some());
        assert!(header_name_problem(":path").is_some());
    }
}
