//! Retry policy helpers: may this request be retried, is there budget for
//! it, and how long to wait first.

use core::time::Duration;

use crate::rng::SplitMix64;

/// Retries in flight are capped at `max(min_concurrency, percent × active
/// requests / 100)` (Envoy's retry budget), so retries add at most a fixed
/// fraction of load to a struggling cluster, yet a quiet cluster can still
/// retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryBudget {
    pub percent: u32,
    pub min_concurrency: u32,
}

impl Default for RetryBudget {
    /// Envoy's defaults: 20 %, at least 3.
    fn default() -> Self {
        RetryBudget {
            percent: 20,
            min_concurrency: 3,
        }
    }
}

impl RetryBudget {
    /// Retries allowed in flight with `active_requests` requests active
    /// (retries included), rounded down.
    pub fn max_retries(&self, active_requests: u32) -> u32 {
        let pct = u64::from(active_requests) * u64::from(self.percent) / 100;
        u32::try_from(pct)
            .unwrap_or(u32::MAX)
            .max(self.min_concurrency)
    }

    /// May one more retry start?
    pub fn allows(&self, active_requests: u32, retries_in_flight: u32) -> bool {
        retries_in_flight < self.max_retries(active_requests)
    }
}

/// Exponential backoff with full jitter (the AWS architecture blog's
/// "full jitter"): before retry `attempt` (0 for the first), wait a uniform
/// `[0, min(max, base × 2^attempt))`. Spreads a burst of failed requests
/// over the whole interval instead of retrying them in lockstep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    /// Envoy's defaults: 25 ms, capped at 10× that.
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(25),
            max: Duration::from_millis(250),
        }
    }
}

impl Backoff {
    /// The upper bound of retry `attempt`'s wait.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        self.base
            .saturating_mul(2u32.saturating_pow(attempt))
            .min(self.max)
    }

    /// The wait before retry `attempt`, drawn from the caller's PRNG.
    pub fn delay(&self, attempt: u32, rng: &mut SplitMix64) -> Duration {
        rng.duration_below(self.ceiling(attempt))
    }
}

/// How an attempt failed, as far as retrying is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RetryFailure {
    /// No connection to the backend: the request never left.
    ConnectFailure,
    /// The backend refused the stream without processing it: HTTP/2
    /// REFUSED_STREAM, or a stream above a GOAWAY's last stream id
    /// (RFC 9113 §8.7).
    Refused,
    /// The connection or stream was reset before any response byte.
    /// `request_sent`: whether any byte of the request was written.
    Reset { request_sent: bool },
    /// No response within the per-try timeout.
    Timeout,
    /// A complete error response head. `marked_retriable`: the backend
    /// said it did not process the request (a configured header on a 503).
    Status { code: u16, marked_retriable: bool },
}

/// RFC 9110 §9.2.2 idempotent methods (method names are case-sensitive).
pub fn is_idempotent(method: &[u8]) -> bool {
    matches!(
        method,
        b"GET" | b"HEAD" | b"OPTIONS" | b"TRACE" | b"PUT" | b"DELETE"
    )
}

/// May a request that failed this way be retried on another attempt?
///
/// - Never once response bytes have reached the client
///   (`response_started`): the client has seen part of an answer.
/// - Any method when the failure proves the backend did not process the
///   request: connect failure, refused stream, reset before the request
///   was sent, a 503 marked retriable.
/// - Otherwise only idempotent methods, and only for a reset after
///   sending, a timeout, or a 502/503/504 (gateway errors; other 5xx are
///   the application's answer and would most likely repeat).
pub fn is_retriable(method: &[u8], failure: RetryFailure, response_started: bool) -> bool {
    if response_started {
        return false;
    }
    match failure {
        RetryFailure::ConnectFailure
        | RetryFailure::Refused
        | RetryFailure::Reset {
            request_sent: false,
        }
        | RetryFailure::Status {
            code: 503,
            marked_retriable: true,
        } => true,
        RetryFailure::Reset { request_sent: true }
        | RetryFailure::Timeout
        | RetryFailure::Status {
            code: 502..=504, ..
        } => is_idempotent(method),
        RetryFailure::Status { .. } => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget() {
        let b = RetryBudget {
            percent: 20,
            min_concurrency: 3,
        };
        assert_eq!(b.max_retries(0), 3);
        assert_eq!(b.max_retries(14), 3);
        assert_eq!(b.max_retries(100), 20);
        assert!(b.allows(100, 19));
        assert!(!b.allows(100, 20));
        assert!(!b.allows(0, 3));
        assert_eq!(
            RetryBudget {
                percent: 1000,
                min_concurrency: 0
            }
            .max_retries(u32::MAX),
            u32::MAX
        );
    }

    #[test]
    fn backoff_doubles_caps_and_jitters_below_the_ceiling() {
        let b = Backoff {
            base: Duration::from_millis(10),
            max: Duration::from_millis(100),
        };
        let ceilings: Vec<u64> = (0..6).map(|a| b.ceiling(a).as_millis() as u64).collect();
        assert_eq!(ceilings, vec![10, 20, 40, 80, 100, 100]);
        assert_eq!(b.ceiling(1000), Duration::from_millis(100));
        let mut rng = SplitMix64::new(1);
        for attempt in 0..8 {
            let mut max_seen = Duration::ZERO;
            for _ in 0..500 {
                let d = b.delay(attempt, &mut rng);
                assert!(d < b.ceiling(attempt));
                max_seen = max_seen.max(d);
            }
            // Full jitter uses the whole interval.
            assert!(max_seen > b.ceiling(attempt) * 9 / 10);
        }
    }

    #[test]
    fn retriable_matrix() {
        use RetryFailure::*;
        let safe = [
            ConnectFailure,
            Refused,
            Reset {
                request_sent: false,
            },
            Status {
                code: 503,
                marked_retriable: true,
            },
        ];
        let idempotent_only = [
            Reset { request_sent: true },
            Timeout,
            Status {
                code: 502,
                marked_retriable: false,
            },
            Status {
                code: 503,
                marked_retriable: false,
            },
            Status {
                code: 504,
                marked_retriable: false,
            },
        ];
        let never = [
            Status {
                code: 500,
                marked_retriable: false,
            },
            Status {
                code: 500,
                marked_retriable: true,
            },
            Status {
                code: 404,
                marked_retriable: false,
            },
        ];
        for m in [
            &b"GET"[..],
            b"HEAD",
            b"OPTIONS",
            b"TRACE",
            b"PUT",
            b"DELETE",
        ] {
            assert!(is_idempotent(m));
            for f in safe.iter().chain(&idempotent_only) {
                assert!(is_retriable(m, *f, false), "{f:?}");
                assert!(!is_retriable(m, *f, true), "{f:?} after response bytes");
            }
            for f in never {
                assert!(!is_retriable(m, f, false));
            }
        }
        for m in [&b"POST"[..], b"PATCH", b"CONNECT", b"get"] {
            assert!(!is_idempotent(m));
            for f in safe {
                assert!(is_retriable(m, f, false), "{f:?}");
                assert!(!is_retriable(m, f, true));
            }
            for f in idempotent_only.iter().chain(&never) {
                assert!(!is_retriable(m, *f, false), "{f:?}");
            }
        }
    }
}
