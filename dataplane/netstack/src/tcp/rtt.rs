//! Round-trip time estimation and the retransmission timeout (RFC 6298),
//! with exponential backoff (Karn; samples of retransmitted segments are the
//! caller's to discard unless timestamps disambiguate them, RFC 7323 §4).
//! STUB: bodies come with the components branch.

use core::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RttConfig {
    /// RTO before any sample (RFC 6298 §2.1: 1 s).
    pub initial_rto: Duration,
    /// Lower bound (RFC 6298 says 1 s; Linux uses 200 ms, as do we).
    pub min_rto: Duration,
    /// Upper bound on the backed-off RTO (RFC 6298 §2.5 allows ≥ 60 s).
    pub max_rto: Duration,
    /// Clock granularity G of RFC 6298 §2.
    pub granularity: Duration,
}

impl Default for RttConfig {
    fn default() -> Self {
        Self {
            initial_rto: Duration::from_secs(1),
            min_rto: Duration::from_millis(200),
            max_rto: Duration::from_secs(120),
            granularity: Duration::from_millis(1),
        }
    }
}

#[derive(Clone, Debug)]
pub struct RttEstimator {
    config: RttConfig,
}

impl RttEstimator {
    pub fn new(config: RttConfig) -> Self {
        Self { config }
    }
    /// A new measurement (RFC 6298 §2.2 for the first, §2.3 after).
    pub fn on_sample(&mut self, _rtt: Duration) {
        todo!("components branch")
    }
    /// The RTO to arm now: the estimate, clamped, times the backoff.
    pub fn rto(&self) -> Duration {
        let _ = self.config;
        todo!("components branch")
    }
    /// The timer expired (RFC 6298 §5.5): double, up to max_rto.
    pub fn backoff(&mut self) {
        todo!("components branch")
    }
    /// New data was acknowledged: back to the un-backed-off RTO.
    pub fn reset_backoff(&mut self) {
        todo!("components branch")
    }
    /// How many times the RTO has been doubled since the last reset.
    pub fn backoffs(&self) -> u32 {
        todo!("components branch")
    }
    pub fn srtt(&self) -> Option<Duration> {
        todo!("components branch")
    }
    pub fn rttvar(&self) -> Option<Duration> {
        todo!("components branch")
    }
    /// Smallest sample seen (for CUBIC / HyStart and diagnostics).
    pub fn min_rtt(&self) -> Option<Duration> {
        todo!("components branch")
    }
}
