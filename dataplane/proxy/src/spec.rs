//! What one loop's proxy is built from: a validated configuration
//! (sluice-config), compiled to indices and plain values once, so the
//! request path compares bytes and never looks names up.

use std::net::SocketAddr;
use std::time::Duration;

use std::sync::Arc;

use sluice_config::{Config, HashOn, LbPolicy, RetryOn, Router};
use sluice_lb::{Backoff, BreakerLimits, Maglev, MaglevBackend, RetryBudget};
use sluice_tls::{UpstreamAlpn, UpstreamTlsConnector};

/// How a cluster picks a backend.
#[derive(Clone, Debug)]
pub enum Balance {
    RoundRobin,
    LeastRequest,
    /// The table is built once (the same on every loop and appliance for
    /// the same configuration) and shared.
    Maglev {
        table: Arc<Maglev>,
        hash_on: HashOn,
    },
}

#[derive(Clone, Debug)]
pub struct ClusterSpec {
    pub name: String,
    pub backends: Vec<SocketAddr>,
    pub weights: Vec<u32>,
    pub balance: Balance,
    /// The whole cluster's limits (each loop takes its share).
    pub breaker: BreakerLimits,
    pub backoff: Backoff,
    /// Connections per backend per loop, busy and idle.
    pub max_connections: usize,
    /// Idle connections kept per backend per loop.
    pub max_idle: usize,
    pub connect_timeout: Duration,
    /// An idle upstream connection is closed after this long; keep it
    /// below the backend's own keep-alive timeout.
    pub idle_timeout: Duration,
    /// HTTP/2 backends (h2c): streams multiplexed on few connections.
    pub h2: bool,
    /// Streams per HTTP/2 connection at most.
    pub max_streams: u32,
    /// `-tls` protocols: the TLS client of every connection (shared by
    /// the loops: its counters and session cache are the cluster's).
    pub tls: Option<Arc<UpstreamTlsConnector>>,
}

#[derive(Clone, Debug)]
pub struct RouteSpec {
    /// Index into [`ProxySpec::clusters`].
    pub cluster: usize,
    /// Total time for the request, retries included.
    pub timeout: Option<Duration>,
    /// Time for each try, until the response head.
    pub per_try_timeout: Option<Duration>,
    /// Extra tries for requests that are safe to repeat.
    pub retries: u32,
    /// Retry after a failed connect (`connect-failure`, `5xx`,
    /// `gateway-error`).
    pub retry_connect: bool,
    /// Retry an idempotent request whose connection broke before any
    /// response byte (`reset`, `5xx`, `gateway-error`).
    pub retry_reset: bool,
    /// Response statuses that send a request to another try instead of
    /// to the client: 503 for any request without a body
    /// (`retriable-503`: the backend says it did not take it); any 5xx
    /// (`5xx`) or 502/503/504 (`gateway-error`) for idempotent ones.
    pub retry_503: bool,
    pub retry_5xx: bool,
    pub retry_gateway_status: bool,
}

impl RouteSpec {
    /// Whether a response with `status` is retried for a request that is
    /// `idempotent` (and has no body: neither kind is replayable with one).
    pub fn retries_status(&self, status: u16, idempotent: bool, bodiless: bool) -> bool {
        if !bodiless {
            return false;
        }
        (status == 503 && (self.retry_503 || (idempotent && self.retry_gateway_status)))
            || (idempotent && self.retry_5xx && (500..600).contains(&status))
            || (idempotent && self.retry_gateway_status && matches!(status, 502 | 504))
    }
}

#[derive(Clone, Debug)]
pub struct ProxySpec {
    router: Router,
    /// By the configuration's route index.
    pub routes: Vec<RouteSpec>,
    pub clusters: Vec<ClusterSpec>,
    /// Header carrying the client's verified SPIFFE ID upstream.
    pub spiffe_header: Option<http::HeaderName>,
    /// Add `x-request-id` to requests without one.
    pub request_id: bool,
    /// Keep an access record per request (the access log is on).
    pub access_log: bool,
    /// Route prefixes, for reports.
    pub route_names: Vec<String>,
}

impl ProxySpec {
    /// Compiles a validated configuration. Errors name what this build
    /// cannot do yet.
    pub fn from_config(config: &Config) -> Result<Self, String> {
        let mut clusters = Vec::with_capacity(config.clusters.len());
        for c in &config.clusters {
            let tls = match (&c.tls, c.protocol.is_tls()) {
                (Some(t), true) => {
                    let alpn = if c.protocol.is_h2() {
                        UpstreamAlpn::H2
                    } else {
                        UpstreamAlpn::Http1
                    };
                    // The handshake gets as long as the TCP connect.
                    let connector = UpstreamTlsConnector::new(t, alpn, c.connect_timeout)
                        .map_err(|e| format!("cluster \"{}\": tls: {e}", c.name))?;
                    Some(Arc::new(connector))
                }
                _ => None,
            };
            let weights: Vec<u32> = c.endpoints.iter().map(|e| e.weight.max(1)).collect();
            let balance = match c.lb {
                LbPolicy::RoundRobin => Balance::RoundRobin,
                LbPolicy::LeastRequest => Balance::LeastRequest,
                LbPolicy::Maglev => {
                    let keys: Vec<String> =
                        c.endpoints.iter().map(|e| e.address.to_string()).collect();
                    let backends: Vec<MaglevBackend<'_>> = keys
                        .iter()
                        .zip(&weights)
                        .map(|(k, w)| MaglevBackend {
                            address: k,
                            weight: *w,
                        })
                        .collect();
                    let table = Maglev::build(&backends, Maglev::DEFAULT_TABLE_SIZE)
                        .map_err(|e| format!("cluster \"{}\": maglev: {e}", c.name))?;
                    Balance::Maglev {
                        table: Arc::new(table),
                        hash_on: c.hash_on.clone().unwrap_or(HashOn::ClientAddress),
                    }
                }
            };
            let budget = &c.retry_budget;
            clusters.push(ClusterSpec {
                name: c.name.clone(),
                backends: c.endpoints.iter().map(|e| e.address).collect(),
                weights,
                balance,
                breaker: BreakerLimits {
                    max_connections: c.breaker.max_connections,
                    max_pending_requests: c.breaker.max_pending_requests,
                    max_requests: c.breaker.max_requests,
                    retry_budget: RetryBudget {
                        percent: budget.percent.round().clamp(0.0, 100.0) as u32,
                        min_concurrency: budget.min_retries_concurrency,
                    },
                },
                backoff: Backoff {
                    base: budget.backoff_base,
                    max: budget.backoff_max,
                },
                max_connections: c.pool.max_connections.max(1) as usize,
                max_idle: c.pool.max_idle as usize,
                connect_timeout: c.connect_timeout,
                idle_timeout: c.idle_timeout,
                h2: c.protocol.is_h2(),
                max_streams: c.pool.max_streams_per_connection.max(1),
                tls,
            });
        }
        let routes = config
            .routes
            .iter()
            .map(|r| RouteSpec {
                cluster: config
                    .clusters
                    .iter()
                    .position(|c| c.name == r.cluster)
                    .unwrap_or(usize::MAX),
                timeout: Some(r.timeout).filter(|t| !t.is_zero()),
                per_try_timeout: r.per_try_timeout.filter(|t| !t.is_zero()),
                retries: r.retries,
                retry_connect: r.retry_on.iter().any(|o| {
                    matches!(
                        o,
                        RetryOn::ConnectFailure | RetryOn::FiveXx | RetryOn::GatewayError
                    )
                }),
                retry_reset: r
                    .retry_on
                    .iter()
                    .any(|o| matches!(o, RetryOn::Reset | RetryOn::FiveXx | RetryOn::GatewayError)),
                retry_503: r.retry_on.contains(&RetryOn::Retriable503),
                retry_5xx: r.retry_on.contains(&RetryOn::FiveXx),
                retry_gateway_status: r.retry_on.contains(&RetryOn::GatewayError),
            })
            .collect();
        Ok(Self {
            router: Router::new(config),
            routes,
            clusters,
            spiffe_header: config
                .proxy
                .spiffe_header
                .as_ref()
                .and_then(|h| http::HeaderName::from_bytes(h.as_bytes()).ok()),
            request_id: config.proxy.request_id,
            access_log: config.proxy.access_log.is_some(),
            route_names: config
                .routes
                .iter()
                .map(|r| match &r.host {
                    Some(h) => format!("{h}{}", r.prefix),
                    None => r.prefix.clone(),
                })
                .collect(),
        })
    }

    /// The route of a request (see sluice_config::router for the rules).
    pub fn route(&self, authority: Option<&[u8]>, method: &[u8], path: &[u8]) -> Option<usize> {
        let host = match authority {
            Some(a) => Some(std::str::from_utf8(a).ok()?),
            None => None,
        };
        let method = std::str::from_utf8(method).ok()?;
        let path = std::str::from_utf8(path).ok()?;
        self.router.route(host, method, path).map(|m| m.route)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiles_routes_and_clusters() {
        let config = Config::from_toml_str(
            r#"
            [[route]]
            prefix = "/api"
            cluster = "api"
            timeout = "500ms"
            retries = 2
            [[route]]
            prefix = "/"
            host = "a.example"
            cluster = "web"
            [[cluster]]
            name = "api"
            endpoints = ["198.18.0.3:8080"]
            [[cluster]]
            name = "web"
            endpoints = ["198.18.0.3:8081", "[2001:2::3]:8081"]
            [cluster.pool]
            max_connections = 8
            "#,
            "t.toml",
        )
        .unwrap();
        let spec = ProxySpec::from_config(&config).unwrap();
        assert_eq!(spec.route(None, b"GET", b"/api/x"), Some(0));
        assert_eq!(spec.route(Some(b"a.example:80"), b"GET", b"/x"), Some(1));
        assert_eq!(spec.route(Some(b"b.example"), b"GET", b"/x"), None);
        assert_eq!(spec.routes[0].timeout, Some(Duration::from_millis(500)));
        assert_eq!(spec.routes[0].retries, 2);
        assert_eq!(spec.clusters[1].backends.len(), 2);
        assert_eq!(spec.clusters[1].max_connections, 8);
    }

    #[test]
    fn tls_setup_errors_name_the_cluster_and_file() {
        let config = Config::from_toml_str(
            r#"
            [[route]]
            prefix = "/"
            cluster = "grpc"
            [[cluster]]
            name = "grpc"
            protocol = "h2-tls"
            endpoints = ["198.18.0.3:50051"]
            [cluster.tls]
            ca = "/nonexistent/ca.pem"
            "#,
            "t.toml",
        )
        .unwrap();
        let e = ProxySpec::from_config(&config).unwrap_err();
        assert!(
            e.starts_with("cluster \"grpc\": tls: ") && e.contains("/nonexistent/ca.pem"),
            "{e}"
        );
    }
}
