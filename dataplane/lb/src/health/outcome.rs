//! What the loops report about each request to a backend.

/// The result of one or more requests to a backend, reported by a loop.
///
/// `count` requests in a row had this result; a loop run-length encodes its
/// per-backend outcomes in the order they happened, so the consecutive
/// rules see the order each loop saw (outcomes of different loops are
/// interleaved in whatever order the main thread receives them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Outcome {
    /// Index of the backend in its cluster.
    pub backend: usize,
    pub kind: OutcomeKind,
    pub count: u32,
}

impl Outcome {
    pub const fn new(backend: usize, kind: OutcomeKind, count: u32) -> Self {
        Outcome {
            backend,
            kind,
            count,
        }
    }
}

/// How a request to a backend ended, as outlier detection counts it.
///
/// | kind | consecutive 5xx | consecutive gateway | window |
/// | --- | --- | --- | --- |
/// | `Success` | reset | reset | request |
/// | `Http5xx` | +1 | reset | request, failure |
/// | `GatewayFailure` | +1 | +1 | request, failure |
/// | `LocalOrigin` | — | — | — |
///
/// (Envoy's rules for its consecutive_5xx and consecutive_gateway_failure
/// detectors.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OutcomeKind {
    /// A response that is not a 5xx (1xx-4xx are the client's business).
    Success,
    /// A 5xx response other than the gateway codes.
    Http5xx,
    /// The backend, or the way to it, failed.
    GatewayFailure(GatewayFailure),
    /// Ended for a reason that says nothing about the backend: the client
    /// went away, the gateway's own deadline or a local circuit breaker.
    /// Ignored by detection; a half-open probe that ends this way is simply
    /// lost (see [`crate::OutlierConfig::probe_timeout`]).
    LocalOrigin,
}

/// The kinds of gateway failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GatewayFailure {
    /// TCP or TLS connection to the backend failed.
    ConnectFailure,
    /// The connection or stream was reset before the response completed.
    Reset,
    /// No response within the per-try timeout.
    Timeout,
    /// The backend answered 502, 503 or 504.
    Status(u16),
}

impl OutcomeKind {
    /// The kind of a complete response with this status.
    pub fn from_status(status: u16) -> Self {
        match status {
            502..=504 => OutcomeKind::GatewayFailure(GatewayFailure::Status(status)),
            500..=599 => OutcomeKind::Http5xx,
            _ => OutcomeKind::Success,
        }
    }

    /// Counts as a failure in the window and for the 5xx rule.
    pub fn is_failure(self) -> bool {
        matches!(self, OutcomeKind::Http5xx | OutcomeKind::GatewayFailure(_))
    }
}

/// One active health check result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HealthCheck {
    pub backend: usize,
    pub passed: bool,
}
