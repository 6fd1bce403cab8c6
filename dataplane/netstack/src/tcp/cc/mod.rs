//! Congestion control: window arithmetic behind one trait, NewReno
//! (RFC 5681, RFC 6582 window rules, RFC 3465 ABC) and CUBIC (RFC 9438).
//!
//! Division of labour: the connection detects loss (duplicate ACKs, SACK,
//! RTO) and runs recovery (which segment to retransmit, RFC 6675 pipe or
//! NewReno partial ACKs); the controller only answers "how many bytes may
//! be in flight" and updates that number on the events below. All sizes
//! are bytes; `now` is the caller's time.
//!
//! Rules both controllers share:
//! - Slow start (cwnd < ssthresh) grows by min(acked, 2·MSS) per ACK
//!   (RFC 3465, L = 2) and stops at ssthresh; the rest of the ACK counts
//!   towards congestion avoidance.
//! - Growth needs a window-limited sender (RFC 7661): less than one MSS of
//!   the window was unused before the ACK, or, in slow start, at least
//!   half of it was in flight (Linux's rule, which tolerates ACK clocking).
//! - Recovery: [`CongestionControl::on_congestion_event`] sets
//!   cwnd = ssthresh; the caller's in-flight count is RFC 6675 pipe (or,
//!   without SACK, flight size minus one MSS per duplicate ACK, which is
//!   what the cwnd inflation of RFC 6582 amounts to). A second congestion
//!   event before [`CongestionControl::on_recovery_end`] is ignored (one
//!   reduction per window of data), as are `on_ack` calls in recovery.
//! - After an RTO: ssthresh from the flight size, cwnd = 1 MSS (the loss
//!   window of RFC 5681 §3.1).
//! - ssthresh and the post-loss cwnd never go below 2·MSS.

mod cubic;
mod newreno;

use core::time::Duration;

use crate::time::Time;

pub use cubic::Cubic;
pub use newreno::NewReno;

/// The events a connection reports to its congestion controller.
pub trait CongestionControl: core::fmt::Debug {
    /// Bytes that may be in flight (cwnd).
    fn window(&self) -> u32;

    /// Slow-start threshold.
    fn ssthresh(&self) -> u32;

    /// `acked` new bytes were cumulatively acknowledged outside recovery.
    /// `in_flight` is the flight size before this ACK; a controller grows
    /// the window only when the sender was window-limited (RFC 7661).
    /// `rtt` is a valid sample (Karn's rule applied by the caller), if any.
    fn on_ack(&mut self, now: Time, acked: u32, in_flight: u32, rtt: Option<Duration>);

    /// Loss detected by duplicate ACKs or SACK: fast recovery begins. Sets
    /// ssthresh and the window used during recovery.
    fn on_congestion_event(&mut self, now: Time, in_flight: u32);

    /// Fast recovery ended: the recovery point was acknowledged.
    fn on_recovery_end(&mut self, now: Time);

    /// A retransmission timeout fired (not for each backoff of the same
    /// loss: the caller reports the first only).
    fn on_rto(&mut self, now: Time, in_flight: u32);

    /// Sending resumes after an idle period longer than the RTO
    /// (RFC 5681 §4.1, RFC 9438 §5.8).
    fn on_idle_restart(&mut self, now: Time);
}

/// Which controller a connection uses (`--tcp-cc`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Algorithm {
    NewReno,
    #[default]
    Cubic,
}

/// A controller of either kind, without boxing.
#[derive(Debug)]
pub enum Controller {
    NewReno(NewReno),
    Cubic(Cubic),
}

impl Controller {
    /// A controller for a connection whose sender MSS is `mss`, with the
    /// RFC 6928 initial window min(10·MSS, max(2·MSS, 14600)).
    pub fn new(algorithm: Algorithm, mss: u32, now: Time) -> Self {
        match algorithm {
            Algorithm::NewReno => Controller::NewReno(NewReno::new(mss, now)),
            Algorithm::Cubic => Controller::Cubic(Cubic::new(mss, now)),
        }
    }
}

/// RFC 6928 initial window for a sender MSS (saturating; an MSS of 0 is
/// taken as 1).
pub fn initial_window(mss: u32) -> u32 {
    let mss = mss.max(1);
    mss.saturating_mul(10).min(mss.saturating_mul(2).max(14600))
}

/// RFC 7661: whether the sender used (nearly) all of `cwnd`, so that an
/// ACK may grow it.
pub(crate) fn window_limited(cwnd: u64, in_flight: u32, mss: u32, slow_start: bool) -> bool {
    let in_flight = u64::from(in_flight);
    in_flight + u64::from(mss) > cwnd || (slow_start && 2 * in_flight >= cwnd)
}

/// RFC 3465 slow start with L = 2: the increase for `acked` bytes.
pub(crate) fn slow_start_increase(acked: u32, mss: u32) -> u64 {
    u64::from(acked).min(2 * u64::from(mss))
}

/// Saturating u64 → u32 for window getters.
pub(crate) fn clamp_u32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

macro_rules! dispatch {
    ($self:ident, $c:ident => $e:expr) => {
        match $self {
            Controller::NewReno($c) => $e,
            Controller::Cubic($c) => $e,
        }
    };
}

impl CongestionControl for Controller {
    fn window(&self) -> u32 {
        dispatch!(self, c => c.window())
    }
    fn ssthresh(&self) -> u32 {
        dispatch!(self, c => c.ssthresh())
    }
    fn on_ack(&mut self, now: Time, acked: u32, in_flight: u32, rtt: Option<Duration>) {
        dispatch!(self, c => c.on_ack(now, acked, in_flight, rtt))
    }
    fn on_congestion_event(&mut self, now: Time, in_flight: u32) {
        dispatch!(self, c => c.on_congestion_event(now, in_flight))
    }
    fn on_recovery_end(&mut self, now: Time) {
        dispatch!(self, c => c.on_recovery_end(now))
    }
    fn on_rto(&mut self, now: Time, in_flight: u32) {
        dispatch!(self, c => c.on_rto(now, in_flight))
    }
    fn on_idle_restart(&mut self, now: Time) {
        dispatch!(self, c => c.on_idle_restart(now))
    }
}
