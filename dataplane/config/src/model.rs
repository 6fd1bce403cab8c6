//! The configuration types. Field names are the TOML keys; every optional
//! key's default is in [`defaults`]. Deserializing checks shape only
//! (types, keywords, addresses, durations, unknown keys); the rules that
//! relate values to each other are in `validate.rs`.

use crate::duration::serde_duration;
use crate::keyword::keyword_enum;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// Every default in one place. Sections that are always present
/// (`pool`, `outlier`, `breaker`, `retry_budget`, `proxy`) take these
/// through their `Default` impls; `tls` and `health_check` take them when
/// the section is written. Four defaults follow another key so that
/// changing that key alone never breaks a rule: `pool.max_idle`,
/// `health_check.timeout`, `outlier.max_ejection`,
/// `retry_budget.backoff_max`.
pub mod defaults {
    use super::*;

    /// `listener.protocol`.
    pub const LISTENER_PROTOCOL: ListenerProtocol = ListenerProtocol::Http;

    /// `route.timeout`: the whole exchange, all tries included (Envoy's
    /// route default).
    pub const ROUTE_TIMEOUT: Duration = Duration::from_secs(15);
    /// `route.retries`: one retry, as Envoy does once a retry policy exists.
    pub const ROUTE_RETRIES: u32 = 1;
    /// `route.retry_on`: the conditions where the backend cannot have seen
    /// the request (safe for every method), and a reset before any
    /// response byte, which the proxy retries for idempotent methods only.
    pub const ROUTE_RETRY_ON: &[RetryOn] = &[
        RetryOn::ConnectFailure,
        RetryOn::RefusedStream,
        RetryOn::Reset,
    ];

    /// `cluster.protocol`.
    pub const CLUSTER_PROTOCOL: UpstreamProtocol = UpstreamProtocol::Http1;
    /// `cluster.lb`.
    pub const LB: LbPolicy = LbPolicy::RoundRobin;
    /// `cluster.connect_timeout`: TCP (and TLS) handshake to one endpoint.
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
    /// `cluster.idle_timeout`: close idle upstream connections before the
    /// backend does (nginx keeps 75 s; Node.js and Apache only 5 s, set
    /// this lower for those).
    pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
    /// Endpoint weight when written as a plain address.
    pub const ENDPOINT_WEIGHT: u32 = 1;
    /// Largest endpoint weight (keeps Maglev tables and WRR bounded).
    pub const MAX_ENDPOINT_WEIGHT: u32 = 10_000;

    /// `cluster.pool.max_connections`, per poll loop per endpoint.
    pub const POOL_MAX_CONNECTIONS: u32 = 64;
    /// `cluster.pool.max_streams_per_connection` (h2; the backend's
    /// SETTINGS_MAX_CONCURRENT_STREAMS lowers it further).
    pub const POOL_MAX_STREAMS_PER_CONNECTION: u32 = 100;
    /// `cluster.pool.max_idle`, per poll loop per endpoint (or
    /// `max_connections` if smaller).
    pub const POOL_MAX_IDLE: u32 = 16;

    /// `cluster.tls.ca`: Debian's system bundle.
    pub const TLS_CA: &str = "/etc/ssl/certs/ca-certificates.crt";

    /// `cluster.health_check.path`.
    pub const HEALTH_PATH: &str = "/healthz";
    /// `cluster.health_check.interval` (HAProxy's `inter`).
    pub const HEALTH_INTERVAL: Duration = Duration::from_secs(2);
    /// `cluster.health_check.timeout` (or `interval` if shorter).
    pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);
    /// `cluster.health_check.healthy_threshold` (HAProxy's `rise`).
    pub const HEALTHY_THRESHOLD: u32 = 2;
    /// `cluster.health_check.unhealthy_threshold` (HAProxy's `fall`).
    pub const UNHEALTHY_THRESHOLD: u32 = 3;
    /// `cluster.health_check.expected_status`: any 2xx.
    pub const EXPECTED_STATUS: StatusRange = StatusRange {
        first: 200,
        last: 299,
    };

    /// `cluster.outlier.enabled`: passive detection needs no backend
    /// cooperation, so it is on unless turned off.
    pub const OUTLIER_ENABLED: bool = true;
    /// `cluster.outlier.consecutive_5xx` (Envoy's default).
    pub const CONSECUTIVE_5XX: u32 = 5;
    /// `cluster.outlier.consecutive_gateway_failures` (Envoy's default).
    pub const CONSECUTIVE_GATEWAY_FAILURES: u32 = 5;
    /// `cluster.outlier.failure_rate_threshold`: fraction of failed
    /// requests in the window that ejects.
    pub const FAILURE_RATE_THRESHOLD: f64 = 0.5;
    /// `cluster.outlier.failure_rate_window`.
    pub const FAILURE_RATE_WINDOW: Duration = Duration::from_secs(10);
    /// `cluster.outlier.failure_rate_min_requests`: fewer requests in the
    /// window say nothing.
    pub const FAILURE_RATE_MIN_REQUESTS: u32 = 20;
    /// `cluster.outlier.base_ejection` (Envoy's), multiplied by the number
    /// of times the endpoint was ejected.
    pub const BASE_EJECTION: Duration = Duration::from_secs(30);
    /// `cluster.outlier.max_ejection` (Envoy's; or `base_ejection` if
    /// longer).
    pub const MAX_EJECTION: Duration = Duration::from_secs(300);
    /// `cluster.outlier.ejection_jitter`.
    pub const EJECTION_JITTER: Duration = Duration::from_secs(1);
    /// `cluster.outlier.max_ejection_percent`: never eject more than half
    /// a cluster on passive evidence.
    pub const MAX_EJECTION_PERCENT: u32 = 50;
    /// `cluster.outlier.half_open_probes`: requests let through to an
    /// endpoint whose ejection ended before it counts as healthy again.
    pub const HALF_OPEN_PROBES: u32 = 1;

    /// `cluster.breaker.*` (Envoy's thresholds), per poll loop per cluster.
    pub const BREAKER_MAX_CONNECTIONS: u32 = 1024;
    /// `cluster.breaker.max_pending_requests`.
    pub const BREAKER_MAX_PENDING_REQUESTS: u32 = 1024;
    /// `cluster.breaker.max_requests`.
    pub const BREAKER_MAX_REQUESTS: u32 = 1024;

    /// `cluster.retry_budget.percent` of active requests that may be
    /// retries (Envoy's).
    pub const RETRY_BUDGET_PERCENT: f64 = 20.0;
    /// `cluster.retry_budget.min_retries_concurrency` (Envoy's).
    pub const MIN_RETRIES_CONCURRENCY: u32 = 3;
    /// `cluster.retry_budget.backoff_base` (Envoy's).
    pub const BACKOFF_BASE: Duration = Duration::from_millis(25);
    /// `cluster.retry_budget.backoff_max` is this many times
    /// `backoff_base` unless written (Envoy's rule): 250 ms by default.
    pub const BACKOFF_MAX_FACTOR: u32 = 10;

    /// `proxy.request_id`: add `x-request-id` when the client sent none.
    pub const REQUEST_ID: bool = true;

    // serde wants functions for field defaults.
    pub(crate) fn listener_protocol() -> ListenerProtocol {
        LISTENER_PROTOCOL
    }
    pub(crate) fn route_timeout() -> Duration {
        ROUTE_TIMEOUT
    }
    pub(crate) fn route_retries() -> u32 {
        ROUTE_RETRIES
    }
    pub(crate) fn route_retry_on() -> Vec<RetryOn> {
        ROUTE_RETRY_ON.to_vec()
    }
    pub(crate) fn cluster_protocol() -> UpstreamProtocol {
        CLUSTER_PROTOCOL
    }
    pub(crate) fn lb() -> LbPolicy {
        LB
    }
    pub(crate) fn connect_timeout() -> Duration {
        CONNECT_TIMEOUT
    }
    pub(crate) fn idle_timeout() -> Duration {
        IDLE_TIMEOUT
    }
    pub(crate) fn endpoint_weight() -> u32 {
        ENDPOINT_WEIGHT
    }
}

// ---------------------------------------------------------------- listener

keyword_enum! {
    /// What a listener speaks to clients.
    pub enum ListenerProtocol {
        /// Cleartext: HTTP/1.1, or h2c when the connection opens with the
        /// HTTP/2 preface.
        Http = "http",
        /// TLS, then h2 or http/1.1 by ALPN.
        Tls = "tls",
    }
}

/// `[[listener]]`: an address the dataplane accepts connections on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// `IP:PORT`, `[V6]:PORT` for IPv6.
    #[serde(with = "serde_socket_addr")]
    pub address: SocketAddr,
    /// Default [`defaults::LISTENER_PROTOCOL`].
    #[serde(default = "defaults::listener_protocol")]
    pub protocol: ListenerProtocol,
}

// ------------------------------------------------------------------- route

keyword_enum! {
    /// A condition under which a request is tried again on another
    /// endpoint (`route.retry_on`).
    pub enum RetryOn {
        /// The connection to the endpoint failed or timed out; the request
        /// was never sent.
        ConnectFailure = "connect-failure",
        /// The h2 backend refused the stream (REFUSED_STREAM, or a GOAWAY
        /// below its id): not processed, per RFC 9113 §8.7.
        RefusedStream = "refused-stream",
        /// The connection was reset or closed before the response head:
        /// the backend may have acted on the request.
        Reset = "reset",
        /// The backend answered 503 Service Unavailable (overloaded or
        /// draining).
        Retriable503 = "retriable-503",
        /// Any 5xx response, and connect failures and resets.
        FiveXx = "5xx",
        /// 502, 503 or 504, and connect failures and resets.
        GatewayError = "gateway-error",
    }
}

/// `[[route]]`: which requests go to which cluster. See
/// [`Router`](crate::Router) for how one is chosen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Path prefix, starting with `/`; a plain string prefix as Envoy's
    /// `prefix` (`/api` also matches `/apis`; write `/api/` to stop at the
    /// segment).
    pub prefix: String,
    /// Host to match: exact (`example.com`) or a leading wildcard
    /// (`*.example.com`, which matches any name ending in `.example.com`
    /// but not `example.com` itself). Lowercased when read; absent
    /// matches any host.
    #[serde(
        default,
        deserialize_with = "lowercase_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub host: Option<String>,
    /// Method to match, exactly (methods are case-sensitive); absent
    /// matches any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Name of a `[[cluster]]`.
    pub cluster: String,
    /// Total time for the request, all tries included. Default
    /// [`defaults::ROUTE_TIMEOUT`].
    #[serde(default = "defaults::route_timeout", with = "serde_duration")]
    pub timeout: Duration,
    /// Bound on each try; absent means each try may use what is left of
    /// `timeout`.
    #[serde(
        default,
        with = "serde_duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub per_try_timeout: Option<Duration>,
    /// Tries after the first. Default [`defaults::ROUTE_RETRIES`]; the
    /// cluster's `retry_budget` still caps them.
    #[serde(default = "defaults::route_retries")]
    pub retries: u32,
    /// When to retry. Default [`defaults::ROUTE_RETRY_ON`].
    #[serde(default = "defaults::route_retry_on")]
    pub retry_on: Vec<RetryOn>,
}

impl Route {
    /// A route with every optional field at its default.
    pub fn new(prefix: impl Into<String>, cluster: impl Into<String>) -> Route {
        Route {
            prefix: prefix.into(),
            host: None,
            method: None,
            cluster: cluster.into(),
            timeout: defaults::ROUTE_TIMEOUT,
            per_try_timeout: None,
            retries: defaults::ROUTE_RETRIES,
            retry_on: defaults::ROUTE_RETRY_ON.to_vec(),
        }
    }
}

// ----------------------------------------------------------------- cluster

keyword_enum! {
    /// What the proxy speaks to a cluster's endpoints.
    pub enum UpstreamProtocol {
        /// HTTP/1.1 over TCP.
        Http1 = "http1",
        /// HTTP/2 with prior knowledge over TCP.
        H2c = "h2c",
        /// HTTP/1.1 over TLS (ALPN http/1.1).
        Http1Tls = "http1-tls",
        /// HTTP/2 over TLS (ALPN h2).
        H2Tls = "h2-tls",
    }
}

impl UpstreamProtocol {
    /// Whether connections are TLS (and `[cluster.tls]` is required).
    pub const fn is_tls(self) -> bool {
        matches!(self, UpstreamProtocol::Http1Tls | UpstreamProtocol::H2Tls)
    }

    /// Whether requests are multiplexed as HTTP/2 streams.
    pub const fn is_h2(self) -> bool {
        matches!(self, UpstreamProtocol::H2c | UpstreamProtocol::H2Tls)
    }
}

keyword_enum! {
    /// How a cluster picks an endpoint.
    pub enum LbPolicy {
        /// Weighted round robin.
        RoundRobin = "round_robin",
        /// Fewest outstanding requests of two random choices, weighted.
        LeastRequest = "least_request",
        /// Consistent hashing on `hash_on` (Maglev table).
        Maglev = "maglev",
    }
}

/// What Maglev hashes (`hash_on = "header:x-user"` or
/// `"client_address"`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HashOn {
    /// A request header's value (name lowercased); requests without it
    /// hash on the client address.
    Header(String),
    /// The client's IP address (not the port).
    ClientAddress,
}

impl FromStr for HashOn {
    type Err = String;

    fn from_str(s: &str) -> Result<HashOn, String> {
        if s == "client_address" {
            return Ok(HashOn::ClientAddress);
        }
        match s.strip_prefix("header:") {
            Some(name) if is_token(name) => Ok(HashOn::Header(name.to_ascii_lowercase())),
            Some(name) => Err(format!("{name:?} is not a valid header name")),
            None => Err(format!(
                "expected \"header:NAME\" or \"client_address\", found {s:?}"
            )),
        }
    }
}

impl fmt::Display for HashOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HashOn::Header(name) => write!(f, "header:{name}"),
            HashOn::ClientAddress => f.write_str("client_address"),
        }
    }
}

impl Serialize for HashOn {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HashOn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<HashOn, D::Error> {
        from_str_visitor(d, "\"header:NAME\" or \"client_address\"")
    }
}

/// One backend address with its weight. Written as `"IP:PORT"` (weight
/// [`defaults::ENDPOINT_WEIGHT`]) or `{ address = "IP:PORT", weight = 3 }`.
/// Addresses are IP literals: the dataplane resolves no names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// Where to connect.
    pub address: SocketAddr,
    /// Relative share of requests, 1 to [`defaults::MAX_ENDPOINT_WEIGHT`].
    pub weight: u32,
}

impl Endpoint {
    /// An endpoint of default weight.
    pub fn new(address: SocketAddr) -> Endpoint {
        Endpoint {
            address,
            weight: defaults::ENDPOINT_WEIGHT,
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointTable {
    #[serde(with = "serde_socket_addr")]
    address: SocketAddr,
    #[serde(default = "defaults::endpoint_weight")]
    weight: u32,
}

impl Serialize for Endpoint {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // The short form whenever it says everything.
        if self.weight == defaults::ENDPOINT_WEIGHT {
            s.collect_str(&self.address)
        } else {
            EndpointTable {
                address: self.address,
                weight: self.weight,
            }
            .serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for Endpoint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Endpoint, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Endpoint;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"IP:PORT\" or { address = \"IP:PORT\", weight = N }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Endpoint, E> {
                parse_socket_addr(v).map(Endpoint::new).map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Endpoint, A::Error> {
                let t = EndpointTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Endpoint {
                    address: t.address,
                    weight: t.weight,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// `[cluster.pool]`: upstream connection pool, per poll loop per endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "PoolLimitsIn")]
pub struct PoolLimits {
    /// Open connections at most. Default
    /// [`defaults::POOL_MAX_CONNECTIONS`].
    pub max_connections: u32,
    /// Concurrent streams on one h2 connection. Default
    /// [`defaults::POOL_MAX_STREAMS_PER_CONNECTION`]; ignored for HTTP/1.
    pub max_streams_per_connection: u32,
    /// Idle connections kept for reuse; at most `max_connections`.
    /// Default [`defaults::POOL_MAX_IDLE`], or `max_connections` if
    /// smaller.
    pub max_idle: u32,
}

/// Relative defaults: a key left out takes a value that agrees with the
/// keys written, so changing one key never trips a rule on another's
/// default. The same shape serves the `[cluster.*]` sections below.
#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct PoolLimitsIn {
    max_connections: Option<u32>,
    max_streams_per_connection: Option<u32>,
    max_idle: Option<u32>,
}

impl From<PoolLimitsIn> for PoolLimits {
    fn from(i: PoolLimitsIn) -> PoolLimits {
        let max_connections = i.max_connections.unwrap_or(defaults::POOL_MAX_CONNECTIONS);
        PoolLimits {
            max_connections,
            max_streams_per_connection: i
                .max_streams_per_connection
                .unwrap_or(defaults::POOL_MAX_STREAMS_PER_CONNECTION),
            max_idle: i
                .max_idle
                .unwrap_or(defaults::POOL_MAX_IDLE.min(max_connections)),
        }
    }
}

impl Default for PoolLimits {
    fn default() -> PoolLimits {
        PoolLimitsIn::default().into()
    }
}

/// `[cluster.tls]`: how upstream TLS connections are verified. Required
/// exactly when the cluster's protocol ends in `-tls`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamTls {
    /// PEM file of the CAs that may sign the backends' certificates.
    /// Default [`defaults::TLS_CA`].
    pub ca: PathBuf,
    /// Server name sent and verified. Absent: no SNI is sent and the
    /// certificate must name the endpoint's IP address (unless
    /// `spiffe_id` is set).
    #[serde(
        deserialize_with = "lowercase_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub sni: Option<String>,
    /// PEM certificate chain presented to the backend (mTLS); with
    /// `client_key`, both or neither.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_key: Option<PathBuf>,
    /// SPIFFE ID the backend's certificate must carry as its one
    /// `spiffe://` URI SAN; when set it replaces the name check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spiffe_id: Option<String>,
}

impl Default for UpstreamTls {
    fn default() -> UpstreamTls {
        UpstreamTls {
            ca: PathBuf::from(defaults::TLS_CA),
            sni: None,
            client_cert: None,
            client_key: None,
            spiffe_id: None,
        }
    }
}

/// An inclusive range of HTTP status codes. Written as `200`, `"2xx"` or
/// `"200-399"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatusRange {
    /// Lowest code accepted.
    pub first: u16,
    /// Highest code accepted.
    pub last: u16,
}

impl StatusRange {
    /// Whether `status` is in the range.
    pub const fn contains(self, status: u16) -> bool {
        self.first <= status && status <= self.last
    }
}

impl FromStr for StatusRange {
    type Err = String;

    fn from_str(s: &str) -> Result<StatusRange, String> {
        let bad = || format!("expected a status like 200, \"2xx\" or \"200-399\", found {s:?}");
        let code = |t: &str| {
            if t.len() == 3 && t.bytes().all(|b| b.is_ascii_digit()) {
                t.parse::<u16>().map_err(|_| bad())
            } else {
                Err(bad())
            }
        };
        if let Some(class) = s.strip_suffix("xx") {
            let c = code(&format!("{class}00"))?;
            return Ok(StatusRange {
                first: c,
                last: c + 99,
            });
        }
        match s.split_once('-') {
            Some((a, b)) => Ok(StatusRange {
                first: code(a)?,
                last: code(b)?,
            }),
            None => {
                let c = code(s)?;
                Ok(StatusRange { first: c, last: c })
            }
        }
    }
}

impl fmt::Display for StatusRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else if self.first % 100 == 0 && self.last == self.first + 99 {
            write!(f, "{}xx", self.first / 100)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

impl Serialize for StatusRange {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.first == self.last {
            s.serialize_u16(self.first)
        } else {
            s.collect_str(self)
        }
    }
}

impl<'de> Deserialize<'de> for StatusRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<StatusRange, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = StatusRange;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a status like 200, \"2xx\" or \"200-399\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StatusRange, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<StatusRange, E> {
                u16::try_from(v)
                    .ok()
                    .filter(|c| (100..=999).contains(c))
                    .map(|c| StatusRange { first: c, last: c })
                    .ok_or_else(|| E::custom(format!("expected an HTTP status code, found {v}")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<StatusRange, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
        }
        d.deserialize_any(V)
    }
}

/// `[cluster.health_check]`: active HTTP checks; absent means none (an
/// endpoint is then healthy unless outlier detection ejects it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "HealthCheckIn")]
pub struct HealthCheck {
    /// Path of the GET request. Default [`defaults::HEALTH_PATH`].
    pub path: String,
    /// Host header of the check; absent: the cluster's `tls.sni`, else
    /// the endpoint address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Time between checks of one endpoint. Default
    /// [`defaults::HEALTH_INTERVAL`].
    #[serde(with = "serde_duration")]
    pub interval: Duration,
    /// A check without a response by then failed; at most `interval`.
    /// Default [`defaults::HEALTH_TIMEOUT`], or `interval` if shorter.
    #[serde(with = "serde_duration")]
    pub timeout: Duration,
    /// Consecutive passes that make an unhealthy endpoint healthy.
    /// Default [`defaults::HEALTHY_THRESHOLD`].
    pub healthy_threshold: u32,
    /// Consecutive failures that make a healthy endpoint unhealthy.
    /// Default [`defaults::UNHEALTHY_THRESHOLD`].
    pub unhealthy_threshold: u32,
    /// Statuses that pass. Default [`defaults::EXPECTED_STATUS`].
    pub expected_status: Vec<StatusRange>,
}

#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct HealthCheckIn {
    path: Option<String>,
    #[serde(deserialize_with = "lowercase_opt")]
    host: Option<String>,
    #[serde(deserialize_with = "serde_duration::option::deserialize")]
    interval: Option<Duration>,
    #[serde(deserialize_with = "serde_duration::option::deserialize")]
    timeout: Option<Duration>,
    healthy_threshold: Option<u32>,
    unhealthy_threshold: Option<u32>,
    expected_status: Option<Vec<StatusRange>>,
}

impl From<HealthCheckIn> for HealthCheck {
    fn from(i: HealthCheckIn) -> HealthCheck {
        let interval = i.interval.unwrap_or(defaults::HEALTH_INTERVAL);
        HealthCheck {
            path: i.path.unwrap_or_else(|| defaults::HEALTH_PATH.to_string()),
            host: i.host,
            interval,
            timeout: i.timeout.unwrap_or(defaults::HEALTH_TIMEOUT.min(interval)),
            healthy_threshold: i.healthy_threshold.unwrap_or(defaults::HEALTHY_THRESHOLD),
            unhealthy_threshold: i
                .unhealthy_threshold
                .unwrap_or(defaults::UNHEALTHY_THRESHOLD),
            expected_status: i
                .expected_status
                .unwrap_or_else(|| vec![defaults::EXPECTED_STATUS]),
        }
    }
}

impl Default for HealthCheck {
    fn default() -> HealthCheck {
        HealthCheckIn::default().into()
    }
}

/// `[cluster.outlier]`: passive ejection of failing endpoints. Each
/// detector is off when its threshold is 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "OutlierDetectionIn")]
pub struct OutlierDetection {
    /// `false` turns every detector off. Default
    /// [`defaults::OUTLIER_ENABLED`].
    pub enabled: bool,
    /// Consecutive 5xx (and connect failures, resets) that eject.
    pub consecutive_5xx: u32,
    /// Consecutive 502/503/504 (and connect failures, resets) that eject.
    pub consecutive_gateway_failures: u32,
    /// Fraction (0 to 1) of failed requests in `failure_rate_window` that
    /// ejects; 0 turns the detector off.
    pub failure_rate_threshold: f64,
    /// Sliding window of the failure rate.
    #[serde(with = "serde_duration")]
    pub failure_rate_window: Duration,
    /// Requests the window must hold before its rate counts.
    pub failure_rate_min_requests: u32,
    /// First ejection lasts this long; each further one of the same
    /// endpoint this much longer.
    #[serde(with = "serde_duration")]
    pub base_ejection: Duration,
    /// Ejections never last longer; at least `base_ejection`. Default
    /// [`defaults::MAX_EJECTION`], or `base_ejection` if longer.
    #[serde(with = "serde_duration")]
    pub max_ejection: Duration,
    /// Random extra ejection time up to this much, so endpoints ejected
    /// together do not return together.
    #[serde(with = "serde_duration")]
    pub ejection_jitter: Duration,
    /// Ejected endpoints stay below this share of the cluster (0 to 100).
    pub max_ejection_percent: u32,
    /// Requests let through after an ejection ends; all must succeed
    /// before the endpoint takes full traffic again.
    pub half_open_probes: u32,
}

#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct OutlierDetectionIn {
    enabled: Option<bool>,
    consecutive_5xx: Option<u32>,
    consecutive_gateway_failures: Option<u32>,
    failure_rate_threshold: Option<f64>,
    #[serde(deserialize_with = "serde_duration::option::deserialize")]
    failure_rate_window: Option<Duration>,
    failure_rate_min_requests: Option<u32>,
    #[serde(deserialize_with = "serde_duration::option::deserialize")]
    base_ejection: Option<Duration>,
    #[serde(deserialize_with = "serde_duration::option::deserialize")]
    max_ejection: Option<Duration>,
    #[serde(deserialize_with = "serde_duration::option::deserialize")]
    ejection_jitter: Option<Duration>,
    max_ejection_percent: Option<u32>,
    half_open_probes: Option<u32>,
}

impl From<OutlierDetectionIn> for OutlierDetection {
    fn from(i: OutlierDetectionIn) -> OutlierDetection {
        let base_ejection = i.base_ejection.unwrap_or(defaults::BASE_EJECTION);
        OutlierDetection {
            enabled: i.enabled.unwrap_or(defaults::OUTLIER_ENABLED),
            consecutive_5xx: i.consecutive_5xx.unwrap_or(defaults::CONSECUTIVE_5XX),
            consecutive_gateway_failures: i
                .consecutive_gateway_failures
                .unwrap_or(defaults::CONSECUTIVE_GATEWAY_FAILURES),
            failure_rate_threshold: i
                .failure_rate_threshold
                .unwrap_or(defaults::FAILURE_RATE_THRESHOLD),
            failure_rate_window: i
                .failure_rate_window
                .unwrap_or(defaults::FAILURE_RATE_WINDOW),
            failure_rate_min_requests: i
                .failure_rate_min_requests
                .unwrap_or(defaults::FAILURE_RATE_MIN_REQUESTS),
            base_ejection,
            max_ejection: i
                .max_ejection
                .unwrap_or(defaults::MAX_EJECTION.max(base_ejection)),
            ejection_jitter: i.ejection_jitter.unwrap_or(defaults::EJECTION_JITTER),
            max_ejection_percent: i
                .max_ejection_percent
                .unwrap_or(defaults::MAX_EJECTION_PERCENT),
            half_open_probes: i.half_open_probes.unwrap_or(defaults::HALF_OPEN_PROBES),
        }
    }
}

impl Default for OutlierDetection {
    fn default() -> OutlierDetection {
        OutlierDetectionIn::default().into()
    }
}

/// `[cluster.breaker]`: circuit-breaker thresholds, per poll loop per
/// cluster; past one, requests fail fast with 503.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CircuitBreaker {
    /// Connections to all endpoints of the cluster.
    pub max_connections: u32,
    /// Requests waiting for a connection or stream.
    pub max_pending_requests: u32,
    /// Requests in flight.
    pub max_requests: u32,
}

impl Default for CircuitBreaker {
    fn default() -> CircuitBreaker {
        CircuitBreaker {
            max_connections: defaults::BREAKER_MAX_CONNECTIONS,
            max_pending_requests: defaults::BREAKER_MAX_PENDING_REQUESTS,
            max_requests: defaults::BREAKER_MAX_REQUESTS,
        }
    }
}

/// `[cluster.retry_budget]`: how many retries may be in flight, and how
/// long to wait before one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "RetryBudgetIn")]
pub struct RetryBudget {
    /// Retries in flight as a percentage (0 to 100) of requests in flight.
    pub percent: f64,
    /// Retries always allowed in flight, whatever the percentage says.
    pub min_retries_concurrency: u32,
    /// First backoff; each retry doubles it (full jitter).
    #[serde(with = "serde_duration")]
    pub backoff_base: Duration,
    /// Backoff never exceeds this; at least `backoff_base`. Default
    /// [`defaults::BACKOFF_MAX_FACTOR`] × `backoff_base` (Envoy's rule).
    #[serde(with = "serde_duration")]
    pub backoff_max: Duration,
}

#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RetryBudgetIn {
    percent: Option<f64>,
    min_retries_concurrency: Option<u32>,
    #[serde(deserialize_with = "serde_duration::option::deserialize")]
    backoff_base: Option<Duration>,
    #[serde(deserialize_with = "serde_duration::option::deserialize")]
    backoff_max: Option<Duration>,
}

impl From<RetryBudgetIn> for RetryBudget {
    fn from(i: RetryBudgetIn) -> RetryBudget {
        let backoff_base = i.backoff_base.unwrap_or(defaults::BACKOFF_BASE);
        RetryBudget {
            percent: i.percent.unwrap_or(defaults::RETRY_BUDGET_PERCENT),
            min_retries_concurrency: i
                .min_retries_concurrency
                .unwrap_or(defaults::MIN_RETRIES_CONCURRENCY),
            backoff_base,
            backoff_max: i.backoff_max.unwrap_or_else(|| {
                backoff_base
                    .checked_mul(defaults::BACKOFF_MAX_FACTOR)
                    .unwrap_or(Duration::MAX)
            }),
        }
    }
}

impl Default for RetryBudget {
    fn default() -> RetryBudget {
        RetryBudgetIn::default().into()
    }
}

/// `[[cluster]]`: a named set of endpoints and how to talk to them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// Unique name; letters, digits, `-`, `_`, `.`.
    pub name: String,
    /// Default [`defaults::CLUSTER_PROTOCOL`].
    #[serde(default = "defaults::cluster_protocol")]
    pub protocol: UpstreamProtocol,
    /// At least one.
    pub endpoints: Vec<Endpoint>,
    /// Default [`defaults::LB`].
    #[serde(default = "defaults::lb")]
    pub lb: LbPolicy,
    /// Required with `lb = "maglev"`, refused otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_on: Option<HashOn>,
    /// Local address upstream connections are made from; absent: the
    /// dataplane's address of the endpoint's family.
    #[serde(
        default,
        with = "serde_ip_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub source: Option<IpAddr>,
    /// Default [`defaults::CONNECT_TIMEOUT`].
    #[serde(default = "defaults::connect_timeout", with = "serde_duration")]
    pub connect_timeout: Duration,
    /// Default [`defaults::IDLE_TIMEOUT`]; keep it below the backend's
    /// keep-alive timeout.
    #[serde(default = "defaults::idle_timeout", with = "serde_duration")]
    pub idle_timeout: Duration,
    /// Connection pool limits.
    #[serde(default)]
    pub pool: PoolLimits,
    /// Upstream TLS; exactly when `protocol` ends in `-tls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<UpstreamTls>,
    /// Active health checks; absent means none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// Passive outlier detection; on by default.
    #[serde(default)]
    pub outlier: OutlierDetection,
    /// Circuit-breaker thresholds.
    #[serde(default)]
    pub breaker: CircuitBreaker,
    /// Retry budget and backoff.
    #[serde(default)]
    pub retry_budget: RetryBudget,
}

impl Cluster {
    /// A cluster with every optional field at its default; a `-tls`
    /// protocol gets a default `[cluster.tls]` section.
    pub fn new(
        name: impl Into<String>,
        protocol: UpstreamProtocol,
        endpoints: Vec<Endpoint>,
    ) -> Cluster {
        Cluster {
            name: name.into(),
            protocol,
            endpoints,
            lb: defaults::LB,
            hash_on: None,
            source: None,
            connect_timeout: defaults::CONNECT_TIMEOUT,
            idle_timeout: defaults::IDLE_TIMEOUT,
            pool: PoolLimits::default(),
            tls: protocol.is_tls().then(UpstreamTls::default),
            health_check: None,
            outlier: OutlierDetection::default(),
            breaker: CircuitBreaker::default(),
            retry_budget: RetryBudget::default(),
        }
    }
}

// ------------------------------------------------------------------- proxy

/// `[proxy]`: settings for all proxied requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxySettings {
    /// Header that carries the client's verified SPIFFE ID (mTLS
    /// listeners) to the backend; any such header from the client is
    /// removed first. Absent: the ID is not forwarded.
    #[serde(
        deserialize_with = "lowercase_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub spiffe_header: Option<String>,
    /// Access log file, `-` for standard output; absent: no access log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_log: Option<String>,
    /// Add `x-request-id` to requests that lack one. Default
    /// [`defaults::REQUEST_ID`].
    pub request_id: bool,
}

impl Default for ProxySettings {
    fn default() -> ProxySettings {
        ProxySettings {
            spiffe_header: None,
            access_log: None,
            request_id: defaults::REQUEST_ID,
        }
    }
}

// ------------------------------------------------------------------ helpers

/// RFC 9110 `token` (header names, methods).
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Parses `IP:PORT` / `[V6]:PORT` with a message that shows the expected
/// form and says why a name will not do.
pub(crate) fn parse_socket_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>().map_err(|_| {
        let hint = if s.parse::<std::net::Ipv4Addr>().is_ok() {
            " (the port is missing)"
        } else if !s.starts_with('[') && s.matches(':').count() > 1 {
            // "2001:2::10:80" is itself a valid IPv6 address.
            " (write IPv6 as [ADDR]:PORT)"
        } else if s.bytes().any(|b| b.is_ascii_alphabetic()) {
            " (host names are not resolved: use an IP address)"
        } else {
            ""
        };
        format!(
            "expected IP:PORT like \"198.18.1.10:8080\" or \"[2001:2::10]:8080\", found {s:?}{hint}"
        )
    })
}

fn from_str_visitor<'de, D, T>(d: D, expecting: &'static str) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr<Err = String>,
{
    struct V<T>(&'static str, std::marker::PhantomData<T>);
    impl<T: FromStr<Err = String>> Visitor<'_> for V<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            v.parse().map_err(E::custom)
        }
    }
    d.deserialize_str(V(expecting, std::marker::PhantomData))
}

fn lowercase_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.map(|s| s.to_ascii_lowercase()))
}

mod serde_socket_addr {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(a: &SocketAddr, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(a)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = SocketAddr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an address string like \"198.18.1.10:8080\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SocketAddr, E> {
                parse_socket_addr(v).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

mod serde_ip_opt {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(a: &Option<IpAddr>, s: S) -> Result<S::Ok, S::Error> {
        match a {
            Some(a) => s.collect_str(a),
            None => s.serialize_none(),
        }
    }

    struct Wrapped(IpAddr);

    impl<'de> Deserialize<'de> for Wrapped {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Wrapped, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = IpAddr;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("an IP address string like \"198.18.0.100\"")
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<IpAddr, E> {
                    v.parse().map_err(|_| {
                        E::custom(format!(
                            "expected an IP address like \"198.18.0.100\" or \"2001:2::100\" (no port), found {v:?}"
                        ))
                    })
                }
            }
            d.deserialize_str(V).map(Wrapped)
        }
    }

    /// `None` for an absent key or a JSON `null`.
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<IpAddr>, D::Error> {
        Ok(Option::<Wrapped>::deserialize(d)?.map(|w| w.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_parse_and_print() {
        for lb in LbPolicy::ALL {
            assert_eq!(lb.as_str().parse::<LbPolicy>(), Ok(*lb));
            assert_eq!(lb.to_string(), lb.as_str());
        }
        assert_eq!(
            "5XX".parse::<RetryOn>(),
            Err("expected one of connect-failure, refused-stream, reset, retriable-503, 5xx, gateway-error, found \"5XX\"".to_string())
        );
        assert!(UpstreamProtocol::H2Tls.is_tls() && UpstreamProtocol::H2Tls.is_h2());
        assert!(!UpstreamProtocol::H2c.is_tls() && UpstreamProtocol::H2c.is_h2());
        assert!(UpstreamProtocol::Http1Tls.is_tls() && !UpstreamProtocol::Http1.is_h2());
    }

    #[test]
    fn status_ranges() {
        let r = |s: &str| s.parse::<StatusRange>();
        assert_eq!(
            r("200"),
            Ok(StatusRange {
                first: 200,
                last: 200
            })
        );
        assert_eq!(
            r("3xx"),
            Ok(StatusRange {
                first: 300,
                last: 399
            })
        );
        assert_eq!(
            r("200-399"),
            Ok(StatusRange {
                first: 200,
                last: 399
            })
        );
        for bad in ["", "2x", "xx", "20", "2000", "200-", "-200", "a00-299"] {
            assert!(r(bad).is_err(), "{bad}");
        }
        for s in ["200", "3xx", "200-399", "250-299"] {
            assert_eq!(r(s).unwrap().to_string(), s);
        }
        assert!(r("2xx").unwrap().contains(204));
        assert!(!r("2xx").unwrap().contains(300));
    }

    #[test]
    fn hash_on() {
        assert_eq!("client_address".parse(), Ok(HashOn::ClientAddress));
        assert_eq!("header:X-User".parse(), Ok(HashOn::Header("x-user".into())));
        assert_eq!(
            "header:".parse::<HashOn>(),
            Err("\"\" is not a valid header name".to_string())
        );
        assert_eq!(HashOn::Header("x-user".into()).to_string(), "header:x-user");
    }

    #[test]
    fn endpoints_serialize_short_when_they_can() {
        let e = Endpoint::new("[2001:2::10]:80".parse().unwrap());
        assert_eq!(serde_json::to_string(&e).unwrap(), "\"[2001:2::10]:80\"");
        let w = Endpoint { weight: 5, ..e };
        let json = serde_json::to_string(&w).unwrap();
        assert_eq!(json, r#"{"address":"[2001:2::10]:80","weight":5}"#);
        assert_eq!(serde_json::from_str::<Endpoint>(&json).unwrap(), w);
        let e = serde_json::from_str::<Endpoint>("7")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("invalid type: integer `7`, expected \"IP:PORT\" or {"),
            "{e}"
        );
    }

    #[test]
    fn constructors_match_the_serde_defaults() {
        let r: Route = serde_json::from_str(r#"{"prefix":"/","cluster":"c"}"#).unwrap();
        assert_eq!(r, Route::new("/", "c"));
        let c: Cluster =
            serde_json::from_str(r#"{"name":"c","endpoints":["198.18.1.10:80"]}"#).unwrap();
        assert_eq!(
            c,
            Cluster::new(
                "c",
                defaults::CLUSTER_PROTOCOL,
                vec![Endpoint::new("198.18.1.10:80".parse().unwrap())]
            )
        );
    }
}
