//! CUBIC (RFC 9438), in bytes and floating point.
//!
//! - Slow start as NewReno (the `cc` module doc); no HyStart.
//! - Congestion avoidance (§4.2–§4.5): the epoch starts at the first ACK
//!   after slow start or recovery; W_cubic(t) = C·(t − K)³ + W_max with
//!   C = 0.4 segments/s³, K = ∛((W_max − cwnd_epoch)/C); each ACK of
//!   `acked` bytes moves cwnd by (target − cwnd)·acked/cwnd towards
//!   target = W_cubic(t + SRTT) clamped to [cwnd, 1.5·cwnd], where SRTT is
//!   the controller's own 1/8 EWMA of the samples it is given (0 before
//!   the first).
//! - Reno-friendly region (§4.3): W_est starts at cwnd_epoch and grows by
//!   α·acked·MSS/cwnd (α = 3(1−β)/(1+β), 1 once W_est ≥ cwnd_prior);
//!   when W_cubic(t) < W_est, cwnd = W_est.
//! - Congestion event (§4.6, §4.7): fast convergence (W_max =
//!   cwnd·(1+β)/2 if cwnd < W_max, else cwnd), ssthresh = max(β·flight,
//!   2·MSS), cwnd = ssthresh, β = 0.7.
//! - RTO (§4.8): ssthresh as above, cwnd = 1 MSS; the next epoch has
//!   K = 0 and W_max = cwnd_epoch.
//! - Application-limited periods (§5.8, RFC 7661): ACKs that find the
//!   sender not window-limited do not grow cwnd, and the time between them
//!   is taken out of t (the epoch start moves forward), as is an idle
//!   period before [`CongestionControl::on_idle_restart`], which also
//!   limits cwnd to the initial window (RFC 5681 §4.1).

use core::time::Duration;

use super::{clamp_u32, initial_window, slow_start_increase, window_limited, CongestionControl};
use crate::time::Time;

/// C of RFC 9438, in segments per second cubed.
pub const C: f64 = 0.4;
/// β_cubic of RFC 9438.
pub const BETA: f64 = 0.7;
/// α_cubic = 3(1 − β)/(1 + β), the Reno-friendly additive increase.
const ALPHA: f64 = 3.0 * (1.0 - BETA) / (1.0 + BETA);
const MAX_WINDOW: f64 = u32::MAX as f64;

#[derive(Clone, Copy, Debug)]
struct Epoch {
    start: Time,
    /// K in seconds.
    k: f64,
    /// W_max used by this epoch (bytes).
    origin: f64,
    /// W_est (bytes).
    w_est: f64,
}

#[derive(Debug)]
pub struct Cubic {
    mss: u32,
    /// cwnd in bytes, fractional between ACKs.
    cwnd: f64,
    ssthresh: u64,
    /// W_max in bytes (0 before the first congestion event).
    w_max: f64,
    /// cwnd before the last reduction.
    cwnd_prior: f64,
    epoch: Option<Epoch>,
    /// The next epoch follows an RTO: K = 0, W_max = cwnd_epoch.
    after_rto: bool,
    in_recovery: bool,
    srtt: Option<Duration>,
    last_ack: Option<Time>,
}

impl Cubic {
    pub fn new(mss: u32, _now: Time) -> Self {
        let mss = mss.max(1);
        Self {
            mss,
            cwnd: f64::from(initial_window(mss)),
            ssthresh: u64::from(u32::MAX),
            w_max: 0.0,
            cwnd_prior: 0.0,
            epoch: None,
            after_rto: false,
            in_recovery: false,
            srtt: None,
            last_ack: None,
        }
    }
    pub fn mss(&self) -> u32 {
        self.mss
    }
    pub fn in_recovery(&self) -> bool {
        self.in_recovery
    }
    /// W_max in bytes: the window before the last reduction, lowered by
    /// fast convergence (0 before any congestion event).
    pub fn w_max(&self) -> u32 {
        clamp_u32(self.w_max.round() as u64)
    }
    /// K of the current congestion-avoidance epoch, if one has started.
    pub fn k(&self) -> Option<Duration> {
        self.epoch
            .map(|e| Duration::try_from_secs_f64(e.k).unwrap_or(Duration::MAX))
    }

    fn mss_f(&self) -> f64 {
        f64::from(self.mss)
    }
    /// W_cubic(t) in bytes for the epoch, `t` in seconds.
    fn w_cubic(&self, e: &Epoch, t: f64) -> f64 {
        let d = t - e.k;
        C * self.mss_f() * d * d * d + e.origin
    }
    fn loss_ssthresh(&self, in_flight: u32) -> u64 {
        // β = 7/10 in integers: no rounding surprises.
        let s = u64::from(in_flight) * 7 / 10;
        s.max(2 * u64::from(self.mss)).min(u64::from(u32::MAX))
    }
    fn start_epoch(&mut self, now: Time) -> Epoch {
        let cwnd = self.cwnd;
        let (k, origin) = if self.after_rto || self.w_max <= cwnd {
            // After an RTO (§4.8), or above the old W_max: a convex
            // curve from here.
            self.after_rto = false;
            self.w_max = cwnd;
            (0.0, cwnd)
        } else {
            (
                ((self.w_max - cwnd) / (C * self.mss_f())).cbrt(),
                self.w_max,
            )
        };
        let e = Epoch {
            start: now,
            k,
            origin,
            w_est: cwnd,
        };
        self.epoch = Some(e);
        e
    }
    fn congestion_avoidance(&mut self, now: Time, acked: u64) {
        let mut e = match self.epoch {
            Some(e) => e,
            None => self.start_epoch(now),
        };
        let t = (now - e.start).as_secs_f64();
        let rtt = self.srtt.map_or(0.0, |d| d.as_secs_f64());
        let acked = acked as f64;
        let cwnd = self.cwnd;
        let alpha = if e.w_est >= self.cwnd_prior {
            1.0
        } else {
            ALPHA
        };
        e.w_est += alpha * acked * self.mss_f() / cwnd;
        let target = self.w_cubic(&e, t + rtt).clamp(cwnd, 1.5 * cwnd);
        let next = if self.w_cubic(&e, t) < e.w_est {
            e.w_est
        } else {
            cwnd + (target - cwnd) * acked / cwnd
        };
        if !next.is_nan() {
            self.cwnd = next.clamp(cwnd, MAX_WINDOW);
        }
        self.epoch = Some(e);
    }
}

impl CongestionControl for Cubic {
    fn window(&self) -> u32 {
        clamp_u32(self.cwnd as u64)
    }
    fn ssthresh(&self) -> u32 {
        clamp_u32(self.ssthresh)
    }
    fn on_ack(&mut self, now: Time, acked: u32, in_flight: u32, rtt: Option<Duration>) {
        if let Some(r) = rtt {
            self.srtt = Some(match self.srtt {
                None => r,
                Some(s) => (s - s / 8).saturating_add(r / 8),
            });
        }
        let last = self.last_ack.replace(now);
        if self.in_recovery || acked == 0 {
            return;
        }
        let cwnd = self.cwnd as u64;
        let slow_start = cwnd < self.ssthresh;
        if !window_limited(cwnd, in_flight, self.mss, slow_start) {
            // Application-limited: this interval does not count in t.
            if let (Some(e), Some(last)) = (self.epoch.as_mut(), last) {
                e.start += now - last;
            }
            return;
        }
        let mut acked = u64::from(acked.min(in_flight));
        if slow_start {
            let inc = slow_start_increase(clamp_u32(acked), self.mss);
            let grown = (cwnd + inc).min(self.ssthresh);
            acked -= grown - cwnd;
            self.cwnd = grown as f64;
            if grown < self.ssthresh || acked == 0 {
                return;
            }
        }
        self.congestion_avoidance(now, acked);
    }
    fn on_congestion_event(&mut self, _now: Time, in_flight: u32) {
        if self.in_recovery {
            return;
        }
        self.in_recovery = true;
        // §4.7 fast convergence.
        self.w_max = if self.cwnd < self.w_max {
            self.cwnd * (1.0 + BETA) / 2.0
        } else {
            self.cwnd
        };
        self.cwnd_prior = self.cwnd;
        self.ssthresh = self.loss_ssthresh(in_flight);
        self.cwnd = self.ssthresh as f64;
        self.epoch = None;
    }
    fn on_recovery_end(&mut self, _now: Time) {
        self.in_recovery = false;
        self.cwnd = self.ssthresh as f64;
        self.epoch = None;
    }
    fn on_rto(&mut self, _now: Time, in_flight: u32) {
        self.in_recovery = false;
        self.cwnd_prior = self.cwnd;
        self.ssthresh = self.loss_ssthresh(in_flight);
        self.cwnd = self.mss_f();
        self.epoch = None;
        self.after_rto = true;
    }
    fn on_idle_restart(&mut self, now: Time) {
        if let (Some(e), Some(last)) = (self.epoch.as_mut(), self.last_ack) {
            e.start += now - last;
        }
        self.last_ack = Some(now);
        let iw = f64::from(initial_window(self.mss));
        if self.cwnd > iw {
            self.cwnd = iw;
            self.epoch = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSS: u32 = 1000;

    fn ms(v: u64) -> Time {
        Time::from_millis(v)
    }

    /// A controller after one loss at cwnd = in_flight = `w` bytes.
    fn after_loss(w: u32) -> Cubic {
        let mut c = Cubic::new(MSS, ms(0));
        c.cwnd = f64::from(w);
        c.on_congestion_event(ms(0), w);
        c.on_recovery_end(ms(0));
        c
    }

    #[test]
    fn initial_state() {
        let c = Cubic::new(MSS, ms(0));
        assert_eq!((c.window(), c.ssthresh(), c.w_max()), (10_000, u32::MAX, 0));
        assert_eq!(c.k(), None);
        assert!((ALPHA - 0.9 / 1.7).abs() < 1e-15);
    }

    #[test]
    fn reduction_and_fast_convergence() {
        let mut c = Cubic::new(MSS, ms(0));
        c.on_congestion_event(ms(0), 10_000);
        assert_eq!((c.window(), c.ssthresh(), c.w_max()), (7000, 7000, 10_000));
        c.on_congestion_event(ms(1), 5000); // same recovery: ignored
        assert_eq!(c.window(), 7000);
        c.on_recovery_end(ms(2));
        // Lost again below W_max: W_max = 7000·1.7/2.
        c.on_congestion_event(ms(3), 7000);
        assert_eq!((c.window(), c.ssthresh(), c.w_max()), (4900, 4900, 5950));
        c.on_recovery_end(ms(4));
        // Flight below the floor: 2·MSS.
        c.on_congestion_event(ms(5), 1000);
        assert_eq!((c.window(), c.ssthresh()), (2000, 2000));
    }

    #[test]
    fn epoch_k_and_reno_friendly_first_ack() {
        let mut c = after_loss(10_000);
        assert_eq!(c.window(), 7000);
        c.on_ack(ms(10), 1000, 7000, None);
        // K = ∛(3000 / (0.4·1000)) = ∛7.5
        assert_eq!(c.k(), Some(Duration::from_secs_f64(7.5f64.cbrt())));
        // W_cubic(0) = 7000 < W_est = 7000 + α·1000·1000/7000 = 7075.6
        assert_eq!(c.window(), 7075);
    }

    #[test]
    fn approaches_w_max_at_k_then_probes_beyond() {
        // 100 segments lost; an ACK per segment over a 100 ms RTT.
        let mut c = after_loss(100_000);
        let mut now = ms(0);
        let mut at_k = None;
        let k = (30_000.0f64 / 400.0).cbrt(); // 4.217 s
        while now < Time::from_millis(2 * (k * 1000.0) as u64) {
            let n = (c.window() / MSS).max(1);
            for _ in 0..n {
                now += Duration::from_micros(100_000 / u64::from(n));
                let w = c.window();
                c.on_ack(now, MSS, w, Some(Duration::from_millis(100)));
            }
            if at_k.is_none() && now.as_nanos() as f64 >= k * 1e9 {
                at_k = Some(c.window());
            }
        }
        let at_k = at_k.unwrap();
        // Concave approach: near W_max at K (within 3%), never far above.
        assert!((97_000..=103_000).contains(&at_k), "{at_k}");
        // Convex probing by 2K: W_cubic(2K) = 100000 + 30000.
        assert!(c.window() > 120_000, "{}", c.window());
    }

    #[test]
    fn target_capped_at_one_and_a_half_windows() {
        let mut c = after_loss(10_000);
        c.on_ack(ms(0), 1000, 7000, None);
        let w0 = c.cwnd;
        // Far past K: the cubic target is huge; growth per ACK is at most
        // 0.5·acked.
        c.on_ack(ms(3_600_000), 1000, 7075, None);
        assert!((c.cwnd - (w0 + 500.0)).abs() < 1e-6, "{}", c.cwnd);
    }

    #[test]
    fn rto_then_convex_from_the_new_epoch() {
        let mut c = Cubic::new(MSS, ms(0));
        c.on_rto(ms(0), 20_000);
        assert_eq!((c.window(), c.ssthresh()), (1000, 14_000));
        // Slow start back to ssthresh.
        let mut now = ms(0);
        while c.window() < 14_000 {
            now += Duration::from_millis(1);
            let w = c.window();
            c.on_ack(now, 1000, w, None);
        }
        assert_eq!(c.window(), 14_000);
        // CA starts at the next ACK with K = 0 and W_max = 14000.
        c.on_ack(now, 1, 14_000, None);
        assert_eq!(c.k(), Some(Duration::ZERO));
        assert_eq!(c.w_max(), 14_000);
        let w = c.window();
        // One second later W_cubic = 14000 + 400: the cubic term is
        // ahead of W_est (which gained about α·MSS per window).
        c.on_ack(now + Duration::from_secs(1), 1000, w, None);
        assert!(
            c.window() > 14_000 && c.window() <= 14_400,
            "{}",
            c.window()
        );
    }

    #[test]
    fn app_limited_time_is_not_counted() {
        let mut a = after_loss(100_000);
        let mut b = after_loss(100_000);
        let ack = |c: &mut Cubic, t: Time| {
            let w = c.window();
            c.on_ack(t, MSS, w, None)
        };
        ack(&mut a, ms(0));
        ack(&mut b, ms(0));
        // b is application-limited for 10 s (nothing near the window).
        for i in 1..=10 {
            b.on_ack(ms(i * 1000), MSS, 1000, None);
        }
        assert_eq!(b.window(), a.window());
        for i in 1..=50u64 {
            ack(&mut a, ms(i * 100));
            ack(&mut b, ms(10_000 + i * 100));
            assert_eq!(a.window(), b.window());
        }
        // An idle period (cwnd below the IW, so not cut) does not count
        // either.
        let mut a = after_loss(12_000);
        let mut b = after_loss(12_000);
        ack(&mut a, ms(0));
        ack(&mut b, ms(0));
        b.on_idle_restart(ms(50_000));
        for i in 1..=20u64 {
            ack(&mut a, ms(i * 100));
            ack(&mut b, ms(50_000 + i * 100));
            assert_eq!(a.window(), b.window());
        }
        assert!(a.window() > 8400);
    }

    #[test]
    fn idle_restart_limits_to_iw() {
        let mut c = Cubic::new(MSS, ms(0));
        for i in 0..20 {
            let w = c.window();
            c.on_ack(ms(i), 2000, w, None);
        }
        assert_eq!(c.window(), 50_000);
        c.on_idle_restart(ms(10_000));
        assert_eq!(c.window(), 10_000);
    }

    #[test]
    fn recovery_ignores_acks() {
        let mut c = Cubic::new(MSS, ms(0));
        c.on_congestion_event(ms(0), 10_000);
        c.on_ack(ms(1), 1000, 7000, Some(Duration::from_millis(5)));
        assert_eq!(c.window(), 7000);
        assert!(c.in_recovery());
        c.on_rto(ms(2), 7000);
        assert!(!c.in_recovery());
        assert_eq!((c.window(), c.ssthresh()), (1000, 4900));
    }

    #[test]
    fn extremes_do_not_panic() {
        let mut c = Cubic::new(u32::MAX, Time::MAX);
        c.on_ack(Time::MAX, u32::MAX, u32::MAX, Some(Duration::MAX));
        c.on_congestion_event(Time::ZERO, u32::MAX);
        c.on_recovery_end(Time::ZERO);
        c.on_ack(Time::ZERO, u32::MAX, u32::MAX, Some(Duration::ZERO));
        c.on_ack(Time::MAX, u32::MAX, u32::MAX, None);
        assert!(c.window() >= c.ssthresh());
        let mut c = Cubic::new(0, Time::ZERO);
        c.on_rto(Time::ZERO, 0);
        c.on_ack(Time::MAX, 1, 1, None);
        c.on_idle_restart(Time::ZERO);
        assert!(c.window() >= 1);
    }

    #[test]
    fn controller_dispatches() {
        use super::super::{Algorithm, Controller};
        let mut c = Controller::new(Algorithm::default(), 1460, ms(0));
        assert!(matches!(c, Controller::Cubic(_)));
        assert_eq!(c.window(), 14_600);
        c.on_congestion_event(ms(0), 14_600);
        assert_eq!(c.ssthresh(), 10_220);
        let mut r = Controller::new(Algorithm::NewReno, 1460, ms(0));
        r.on_congestion_event(ms(0), 14_600);
        assert_eq!(r.ssthresh(), 7300);
    }
}
