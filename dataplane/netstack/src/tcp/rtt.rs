//! Round-trip time estimation and the retransmission timeout (RFC 6298),
//! with exponential backoff (Karn; samples of retransmitted segments are the
//! caller's to discard unless timestamps disambiguate them, RFC 7323 §4).
//!
//! Karn's algorithm (RFC 6298 §3) is the caller's job: do not call
//! [`RttEstimator::on_sample`] with a measurement taken from a segment that
//! was retransmitted, unless the timestamp echo (TSecr) identifies which
//! transmission was acknowledged. Likewise, keep the backed-off RTO until an
//! ACK of new data arrives, then [`RttEstimator::reset_backoff`].
//!
//! Arithmetic is in integer nanoseconds (alpha = 1/8, beta = 1/4, K = 4);
//! divisions truncate.

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
    /// SRTT and RTTVAR in ns, once there is a sample.
    estimate: Option<(u64, u64)>,
    min_rtt: Option<u64>,
    backoffs: u32,
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl RttEstimator {
    pub fn new(config: RttConfig) -> Self {
        Self {
            config,
            estimate: None,
            min_rtt: None,
            backoffs: 0,
        }
    }
    pub fn config(&self) -> &RttConfig {
        &self.config
    }
    /// A new measurement (RFC 6298 §2.2 for the first, §2.3 after).
    pub fn on_sample(&mut self, rtt: Duration) {
        let r = ns(rtt);
        self.min_rtt = Some(self.min_rtt.map_or(r, |m| m.min(r)));
        self.estimate = Some(match self.estimate {
            // SRTT <- R, RTTVAR <- R/2
            None => (r, r / 2),
            // RTTVAR <- (1 - 1/4)·RTTVAR + 1/4·|SRTT - R'|
            // SRTT   <- (1 - 1/8)·SRTT   + 1/8·R'
            // (RTTVAR first: it uses the old SRTT.) In u128: no overflow.
            Some((srtt, rttvar)) => {
                let (s, v, r) = (u128::from(srtt), u128::from(rttvar), u128::from(r));
                let var = (3 * v + s.abs_diff(r)) / 4;
                let srtt = (7 * s + r) / 8;
                (srtt as u64, var as u64)
            }
        });
    }
    /// The RTO before backoff: SRTT + max(G, 4·RTTVAR) (or the initial
    /// RTO before any sample), clamped to `[min_rto, max_rto]`.
    pub fn base_rto(&self) -> Duration {
        let raw = match self.estimate {
            None => ns(self.config.initial_rto),
            Some((srtt, rttvar)) => {
                srtt.saturating_add(ns(self.config.granularity).max(rttvar.saturating_mul(4)))
            }
        };
        // max then min (not clamp): a config with min > max must not panic;
        // max_rto wins.
        let clamped = raw
            .max(ns(self.config.min_rto))
            .min(ns(self.config.max_rto));
        Duration::from_nanos(clamped)
    }
    /// The RTO to arm now: the estimate, clamped, times the backoff.
    pub fn rto(&self) -> Duration {
        let base = ns(self.base_rto());
        let factor = 1u64.checked_shl(self.backoffs).unwrap_or(0);
        let rto = match factor {
            0 => u64::MAX,
            f => base.saturating_mul(f),
        };
        Duration::from_nanos(rto.min(ns(self.config.max_rto)).max(base))
    }
    /// The timer expired (RFC 6298 §5.5): double, up to max_rto.
    ///
    /// Counts every call, also once the RTO sits at max_rto, so that
    /// [`RttEstimator::backoffs`] can bound the retries of one loss.
    pub fn backoff(&mut self) {
        self.backoffs = self.backoffs.saturating_add(1);
    }
    /// New data was acknowledged: back to the un-backed-off RTO.
    pub fn reset_backoff(&mut self) {
        self.backoffs = 0;
    }
    /// How many times the RTO has been doubled since the last reset.
    pub fn backoffs(&self) -> u32 {
        self.backoffs
    }
    pub fn srtt(&self) -> Option<Duration> {
        self.estimate.map(|(s, _)| Duration::from_nanos(s))
    }
    pub fn rttvar(&self) -> Option<Duration> {
        self.estimate.map(|(_, v)| Duration::from_nanos(v))
    }
    /// Smallest sample seen (for CUBIC / HyStart and diagnostics), over
    /// the life of the estimator.
    pub fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt.map(Duration::from_nanos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn initial_rto_and_first_sample() {
        let mut e = RttEstimator::new(RttConfig::default());
        assert_eq!(e.rto(), ms(1000));
        assert_eq!((e.srtt(), e.rttvar(), e.min_rtt()), (None, None, None));
        e.on_sample(ms(100));
        assert_eq!(e.srtt(), Some(ms(100)));
        assert_eq!(e.rttvar(), Some(ms(50)));
        // 100 + max(1, 4·50) = 300
        assert_eq!(e.rto(), ms(300));
        assert_eq!(e.min_rtt(), Some(ms(100)));
    }

    #[test]
    fn later_samples_follow_rfc6298() {
        let mut e = RttEstimator::new(RttConfig::default());
        e.on_sample(ms(400));
        // RTTVAR = 3/4·200 + 1/4·|400-200| = 200; SRTT = 7/8·400 + 1/8·200 = 375
        e.on_sample(ms(200));
        assert_eq!(e.rttvar(), Some(ms(200)));
        assert_eq!(e.srtt(), Some(ms(375)));
        assert_eq!(e.rto(), ms(375 + 800));
        // RTTVAR = 3/4·200 + 1/4·|375-375| = 150; SRTT = 375
        e.on_sample(ms(375));
        assert_eq!(e.rttvar(), Some(ms(150)));
        assert_eq!(e.srtt(), Some(ms(375)));
        assert_eq!(e.min_rtt(), Some(ms(200)));
    }

    #[test]
    fn granularity_and_min_max_clamp() {
        let cfg = RttConfig {
            granularity: ms(10),
            ..RttConfig::default()
        };
        let mut e = RttEstimator::new(cfg);
        e.on_sample(Duration::from_micros(100));
        // 0.1 + max(10, 0.2) ms < 200 ms: the floor.
        assert_eq!(e.rto(), ms(200));
        let mut e = RttEstimator::new(RttConfig {
            min_rto: ms(1),
            ..cfg
        });
        for _ in 0..3 {
            e.on_sample(ms(20));
        }
        // RTTVAR decays to 10·(3/4)^2 = 5.625; 20 + max(10, 22.5) = 42.5
        assert_eq!(e.rttvar(), Some(Duration::from_micros(5625)));
        assert_eq!(e.rto(), Duration::from_micros(42_500));
        for _ in 0..3 {
            e.on_sample(ms(20));
        }
        // RTTVAR = 2.373046 ms (truncated): G wins. 20 + 10.
        assert_eq!(e.rttvar(), Some(Duration::from_nanos(2_373_046)));
        assert_eq!(e.rto(), ms(30));
        let mut e = RttEstimator::new(RttConfig::default());
        e.on_sample(Duration::from_secs(100));
        assert_eq!(e.rto(), Duration::from_secs(120));
    }

    #[test]
    fn backoff_doubles_to_max_and_resets() {
        let mut e = RttEstimator::new(RttConfig::default());
        e.on_sample(ms(100)); // 300 ms
        e.backoff();
        assert_eq!((e.rto(), e.backoffs()), (ms(600), 1));
        e.backoff();
        assert_eq!(e.rto(), ms(1200));
        for _ in 0..7 {
            e.backoff();
        }
        // 300·2^9 = 153.6 s > 120 s
        assert_eq!((e.rto(), e.backoffs()), (Duration::from_secs(120), 9));
        for _ in 0..100 {
            e.backoff();
        }
        assert_eq!((e.rto(), e.backoffs()), (Duration::from_secs(120), 109));
        e.reset_backoff();
        assert_eq!((e.rto(), e.backoffs()), (ms(300), 0));
        // Before any sample, from the initial RTO.
        let mut e = RttEstimator::new(RttConfig::default());
        e.backoff();
        e.backoff();
        assert_eq!(e.rto(), ms(4000));
    }

    #[test]
    fn odd_configs_and_inputs_do_not_panic() {
        let mut e = RttEstimator::new(RttConfig {
            initial_rto: Duration::MAX,
            min_rto: Duration::from_secs(10),
            max_rto: Duration::from_secs(1),
            granularity: Duration::MAX,
        });
        assert_eq!(e.rto(), Duration::from_secs(1));
        e.on_sample(Duration::MAX);
        e.on_sample(Duration::ZERO);
        for _ in 0..40 {
            e.backoff();
        }
        assert_eq!(e.rto(), Duration::from_secs(1));
        assert_eq!(e.min_rtt(), Some(Duration::ZERO));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn matches_the_formula(samples in proptest::collection::vec(0u64..10_000_000_000, 1..40)) {
                let cfg = RttConfig::default();
                let mut e = RttEstimator::new(cfg);
                let (mut srtt, mut var) = (samples[0] as f64, samples[0] as f64 / 2.0);
                e.on_sample(Duration::from_nanos(samples[0]));
                for &r in &samples[1..] {
                    let r = r as f64;
                    var = 0.75 * var + 0.25 * (srtt - r).abs();
                    srtt = 0.875 * srtt + 0.125 * r;
                    e.on_sample(Duration::from_nanos(r as u64));
                }
                // Integer truncation loses < 1 ns per step and decays.
                let got_s = e.srtt().unwrap().as_nanos() as f64;
                let got_v = e.rttvar().unwrap().as_nanos() as f64;
                prop_assert!((got_s - srtt).abs() <= 8.0, "{} vs {}", got_s, srtt);
                prop_assert!((got_v - var).abs() <= 8.0, "{} vs {}", got_v, var);
                let rto = got_s + (1e6f64).max(4.0 * got_v);
                let rto = rto.clamp(2e8, 1.2e11);
                prop_assert!((e.rto().as_nanos() as f64 - rto).abs() <= 1.0);
                prop_assert_eq!(e.min_rtt().unwrap().as_nanos() as u64, *samples.iter().min().unwrap());
                let base = e.rto();
                for k in 1..12u32 {
                    e.backoff();
                    let expect = (base * 2u32.pow(k)).min(cfg.max_rto);
                    prop_assert_eq!(e.rto(), expect);
                }
            }
        }
    }
}
