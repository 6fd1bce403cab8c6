//! NewReno (RFC 5681 / RFC 6582 window rules, RFC 3465 ABC with L = 2).
//!
//! - Slow start: cwnd += min(acked, 2·MSS) per ACK, up to ssthresh.
//! - Congestion avoidance: ABC byte counting, cwnd += MSS once a window's
//!   worth of bytes (cwnd) has been acknowledged.
//! - Congestion event: ssthresh = max(FlightSize / 2, 2·MSS) (RFC 5681
//!   eq. 4), cwnd = ssthresh for the recovery and after it (RFC 6582 §3.2
//!   step 5, first option; no inflation, see the module doc of `cc`).
//! - RTO: same ssthresh, cwnd = 1 MSS.
//! - Idle restart: cwnd = min(cwnd, IW) (RFC 5681 §4.1).

use core::time::Duration;

use super::{clamp_u32, initial_window, slow_start_increase, window_limited, CongestionControl};
use crate::time::Time;

#[derive(Debug)]
pub struct NewReno {
    mss: u32,
    cwnd: u64,
    ssthresh: u64,
    /// RFC 3465 bytes_acked, in congestion avoidance.
    bytes_acked: u64,
    in_recovery: bool,
}

impl NewReno {
    pub fn new(mss: u32, _now: Time) -> Self {
        let mss = mss.max(1);
        Self {
            mss,
            cwnd: u64::from(initial_window(mss)),
            ssthresh: u64::from(u32::MAX),
            bytes_acked: 0,
            in_recovery: false,
        }
    }
    pub fn mss(&self) -> u32 {
        self.mss
    }
    pub fn in_recovery(&self) -> bool {
        self.in_recovery
    }
    fn loss_ssthresh(&self, in_flight: u32) -> u64 {
        (u64::from(in_flight) / 2)
            .max(2 * u64::from(self.mss))
            .min(u64::from(u32::MAX))
    }
}

impl CongestionControl for NewReno {
    fn window(&self) -> u32 {
        clamp_u32(self.cwnd)
    }
    fn ssthresh(&self) -> u32 {
        clamp_u32(self.ssthresh)
    }
    fn on_ack(&mut self, _now: Time, acked: u32, in_flight: u32, _rtt: Option<Duration>) {
        let slow_start = self.cwnd < self.ssthresh;
        if self.in_recovery
            || acked == 0
            || !window_limited(self.cwnd, in_flight, self.mss, slow_start)
        {
            return;
        }
        // No more than was in flight can be newly acknowledged.
        let mut acked = u64::from(acked.min(in_flight));
        if slow_start {
            let inc = slow_start_increase(clamp_u32(acked), self.mss);
            let grown = (self.cwnd + inc).min(self.ssthresh);
            acked -= grown - self.cwnd;
            self.cwnd = grown;
            if self.cwnd < self.ssthresh || acked == 0 {
                return;
            }
        }
        self.bytes_acked += acked;
        if self.bytes_acked >= self.cwnd {
            self.bytes_acked -= self.cwnd;
            self.cwnd = (self.cwnd + u64::from(self.mss)).min(u64::from(u32::MAX));
            // At most one MSS per ACK; what is left counts towards the next.
            self.bytes_acked = self.bytes_acked.min(self.cwnd);
        }
    }
    fn on_congestion_event(&mut self, _now: Time, in_flight: u32) {
        if self.in_recovery {
            return;
        }
        self.in_recovery = true;
        self.ssthresh = self.loss_ssthresh(in_flight);
        self.cwnd = self.ssthresh;
        self.bytes_acked = 0;
    }
    fn on_recovery_end(&mut self, _now: Time) {
        self.in_recovery = false;
        self.cwnd = self.ssthresh;
        self.bytes_acked = 0;
    }
    fn on_rto(&mut self, _now: Time, in_flight: u32) {
        self.in_recovery = false;
        self.ssthresh = self.loss_ssthresh(in_flight);
        self.cwnd = u64::from(self.mss);
        self.bytes_acked = 0;
    }
    fn on_idle_restart(&mut self, _now: Time) {
        self.cwnd = self.cwnd.min(u64::from(initial_window(self.mss)));
        self.bytes_acked = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSS: u32 = 1000;
    const T: Time = Time::ZERO;

    #[test]
    fn initial_window_rfc6928() {
        assert_eq!(initial_window(1000), 10_000);
        assert_eq!(initial_window(1460), 14_600);
        assert_eq!(initial_window(1500), 14_600);
        assert_eq!(initial_window(4000), 14_600);
        assert_eq!(initial_window(8960), 17_920);
        assert_eq!(initial_window(536), 5_360);
        assert_eq!(initial_window(0), 10);
        assert_eq!(initial_window(u32::MAX), u32::MAX);
        let r = NewReno::new(1460, T);
        assert_eq!((r.window(), r.ssthresh()), (14_600, u32::MAX));
    }

    #[test]
    fn slow_start_abc_l2() {
        let mut r = NewReno::new(MSS, T);
        // One ACK for three segments: at most 2·MSS.
        r.on_ack(T, 3000, 10_000, None);
        assert_eq!(r.window(), 12_000);
        r.on_ack(T, 500, 12_000, None);
        assert_eq!(r.window(), 12_500);
        // Not window-limited: less than half in flight.
        r.on_ack(T, 1000, 6000, None);
        assert_eq!(r.window(), 12_500);
        // Half in flight is enough in slow start.
        r.on_ack(T, 1000, 6250, None);
        assert_eq!(r.window(), 13_500);
    }

    #[test]
    fn congestion_avoidance_counts_bytes() {
        let mut r = NewReno::new(MSS, T);
        r.on_congestion_event(T, 20_000);
        assert_eq!((r.window(), r.ssthresh()), (10_000, 10_000));
        r.on_recovery_end(T);
        for _ in 0..9 {
            r.on_ack(T, 1000, 10_000, None);
        }
        assert_eq!(r.window(), 10_000);
        r.on_ack(T, 1000, 10_000, None);
        assert_eq!(r.window(), 11_000);
        // Not window-limited in CA: more than one MSS unused.
        for _ in 0..30 {
            r.on_ack(T, 1000, 9_000, None);
        }
        assert_eq!(r.window(), 11_000);
        for _ in 0..11 {
            r.on_ack(T, 1000, 10_500, None);
        }
        assert_eq!(r.window(), 12_000);
        // One huge ACK counts for no more than was in flight.
        r.on_ack(T, 1_000_000, 12_000, None);
        assert_eq!(r.window(), 13_000);
    }

    #[test]
    fn slow_start_hands_over_at_ssthresh() {
        let mut r = NewReno::new(MSS, T);
        r.on_rto(T, 9000); // ssthresh 4500, cwnd 1000
        assert_eq!((r.window(), r.ssthresh()), (1000, 4500));
        r.on_ack(T, 1000, 1000, None);
        r.on_ack(T, 2000, 2000, None);
        assert_eq!(r.window(), 4000);
        r.on_ack(T, 2000, 4000, None); // +500 to ssthresh, 1500 counted
        assert_eq!(r.window(), 4500);
        r.on_ack(T, 3000, 4500, None); // 4500 counted: +MSS
        assert_eq!(r.window(), 5500);
    }

    #[test]
    fn recovery_once_per_window_and_floors() {
        let mut r = NewReno::new(MSS, T);
        r.on_congestion_event(T, 3000);
        assert_eq!((r.window(), r.ssthresh()), (2000, 2000));
        assert!(r.in_recovery());
        r.on_congestion_event(T, 1000); // ignored
        r.on_ack(T, 1000, 2000, None); // ignored in recovery
        assert_eq!((r.window(), r.ssthresh()), (2000, 2000));
        r.on_recovery_end(T);
        assert!(!r.in_recovery());
        r.on_rto(T, 0);
        assert_eq!((r.window(), r.ssthresh()), (1000, 2000));
    }

    #[test]
    fn idle_restart_limits_to_iw() {
        let mut r = NewReno::new(MSS, T);
        for _ in 0..20 {
            let w = r.window();
            r.on_ack(T, 2000, w, None);
        }
        assert_eq!(r.window(), 50_000);
        r.on_idle_restart(T);
        assert_eq!(r.window(), 10_000);
        r.on_rto(T, 10_000);
        r.on_idle_restart(T);
        assert_eq!(r.window(), 1000);
    }

    #[test]
    fn no_overflow_at_extremes() {
        let mut r = NewReno::new(u32::MAX, T);
        for _ in 0..10 {
            r.on_ack(T, u32::MAX, u32::MAX, None);
        }
        assert_eq!(r.window(), u32::MAX);
        r.on_congestion_event(T, u32::MAX);
        r.on_recovery_end(T);
        for _ in 0..10 {
            r.on_ack(T, u32::MAX, u32::MAX, None);
        }
        assert_eq!(r.window(), u32::MAX);
    }
}
