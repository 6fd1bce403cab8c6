//! Congestion control: window arithmetic behind one trait, NewReno
//! (RFC 5681, RFC 6582 window rules, RFC 3465 ABC) and CUBIC (RFC 9438).
//!
//! Division of labour: the connection detects loss (duplicate ACKs, SACK,
//! RTO) and runs recovery (which segment to retransmit, RFC 6675 pipe or
//! NewReno partial ACKs); the controller only answers "how many bytes may
//! be in flight" and updates that number on the events below. All sizes
//! are bytes; `now` is the caller's time.
//!
//! STUB: signatures for the engine to code against; bodies come with the
//! components branch.

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

/// RFC 6928 initial window for a sender MSS.
pub fn initial_window(mss: u32) -> u32 {
    (10 * mss).min((2 * mss).max(14600))
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
