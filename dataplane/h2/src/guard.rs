//! Flood bounds: a rate limit per kind of frame, fed by the frame scanner
//! before the connection parses the bytes (and by the connection's count
//! for the resets we send).

use sluice_app::Time;

use crate::config::{FloodLimit, H2Config};
use crate::scan::{
    Frame, CONTINUATION, DATA, END_STREAM, HEADERS, PING, PRIORITY, RST_STREAM, SETTINGS,
    WINDOW_UPDATE,
};

/// The kind of flood that ended a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flood {
    Ping,
    Settings,
    WindowUpdate,
    Priority,
    Empty,
    Reset,
    LocalReset,
}

/// A token bucket as GCRA: `tat` is when the bucket would be full again.
/// An event is allowed if, after it, the bucket is not more than `burst`
/// events behind; a credit moves `tat` back (never before now: the bucket
/// holds at most `burst`).
#[derive(Clone, Copy, Debug, Default)]
struct Gcra {
    tat: u128,
}

impl Gcra {
    fn interval(lim: FloodLimit) -> u128 {
        if lim.per_sec == 0 {
            // No refill: an interval longer than any connection lives.
            1 << 80
        } else {
            1_000_000_000 / u128::from(lim.per_sec)
        }
    }

    fn take(&mut self, lim: FloodLimit, now: Time) -> bool {
        if lim.is_off() {
            return true;
        }
        let now = u128::from(now.as_nanos());
        let t = Self::interval(lim);
        let next = self.tat.max(now) + t;
        if next - now > t * u128::from(lim.burst) {
            return false;
        }
        self.tat = next;
        true
    }

    fn credit(&mut self, lim: FloodLimit, n: u64, now: Time) {
        if n == 0 || lim.is_off() {
            return;
        }
        let now = u128::from(now.as_nanos());
        let back = Self::interval(lim).saturating_mul(u128::from(n));
        self.tat = self.tat.saturating_sub(back).max(now);
    }
}

#[derive(Debug, Default)]
pub(crate) struct Guard {
    ping: Gcra,
    settings: Gcra,
    window_update: Gcra,
    priority: Gcra,
    empty: Gcra,
    reset: Gcra,
    local_reset: Gcra,
}

impl Guard {
    /// Accounts an inbound frame; Some if it is one too many.
    pub fn on_frame(&mut self, f: &Frame, c: &H2Config, now: Time) -> Option<Flood> {
        let ok = match f.ty {
            PING => self.ping.take(c.ping_flood, now),
            // An ACK answers our SETTINGS.
            SETTINGS if f.flags & crate::scan::ACK != 0 => true,
            SETTINGS => self.settings.take(c.settings_flood, now),
            WINDOW_UPDATE => self.window_update.take(c.window_update_flood, now),
            RST_STREAM => self.reset.take(c.reset_flood, now),
            DATA | HEADERS | CONTINUATION => {
                // An empty DATA or HEADERS with END_STREAM ends a stream: useful.
                let wasteful = f.empty && (f.ty == CONTINUATION || !f.has(END_STREAM));
                if wasteful {
                    self.empty.take(c.empty_frame_flood, now)
                } else {
                    if f.ty != CONTINUATION {
                        self.empty.credit(c.empty_frame_flood, 1, now);
                    }
                    if f.ty == HEADERS {
                        self.window_update.credit(c.window_update_flood, 1, now);
                        self.priority.credit(c.priority_flood, 2, now);
                    }
                    true
                }
            }
            // PRIORITY (deprecated by RFC 9113), PRIORITY_UPDATE (0x10) and
            // unknown extension frames: read and dropped.
            PRIORITY => self.priority.take(c.priority_flood, now),
            ty if ty > CONTINUATION => self.priority.take(c.priority_flood, now),
            // PUSH_PROMISE and GOAWAY from a client end the connection anyway.
            _ => true,
        };
        if ok {
            return None;
        }
        Some(match f.ty {
            PING => Flood::Ping,
            SETTINGS => Flood::Settings,
            WINDOW_UPDATE => Flood::WindowUpdate,
            RST_STREAM => Flood::Reset,
            DATA | HEADERS | CONTINUATION => Flood::Empty,
            _ => Flood::Priority,
        })
    }

    /// We sent DATA and HEADERS frames: a client may answer them (WINDOW_UPDATE
    /// for the data, a PING to measure the bandwidth-delay product).
    pub fn frames_sent(&mut self, data: u64, headers: u64, c: &H2Config, now: Time) {
        // Clients answer a DATA frame with a stream and a connection
        // update, some with several; Envoy allows 10 per DATA frame.
        self.window_update
            .credit(c.window_update_flood, data.saturating_mul(8), now);
        self.ping.credit(c.ping_flood, data + headers, now);
    }

    /// A response finished normally: resets (either way) are expected now
    /// and then from a client that completes its requests.
    pub fn completed(&mut self, n: u64, c: &H2Config, now: Time) {
        self.reset.credit(c.reset_flood, n, now);
        self.local_reset.credit(c.local_reset_flood, n, now);
    }

    /// We sent `n` RST_STREAM frames.
    pub fn resets_sent(&mut self, n: u64, c: &H2Config, now: Time) -> Option<Flood> {
        for _ in 0..n {
            if !self.local_reset.take(c.local_reset_flood, now) {
                return Some(Flood::LocalReset);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcra_allows_the_burst_then_the_rate() {
        let lim = FloodLimit::new(3, 2);
        let mut g = Gcra::default();
        let t0 = Time::from_millis(10_000);
        assert!(g.take(lim, t0));
        assert!(g.take(lim, t0));
        assert!(g.take(lim, t0));
        assert!(!g.take(lim, t0));
        // 2/s: one more after 500 ms, not before.
        assert!(!g.take(lim, Time::from_millis(10_499)));
        assert!(g.take(lim, Time::from_millis(10_500)));
        assert!(!g.take(lim, Time::from_millis(10_500)));
        // A credit gives one back, never more than the burst.
        g.credit(lim, 1, Time::from_millis(10_500));
        assert!(g.take(lim, Time::from_millis(10_500)));
        g.credit(lim, 1000, Time::from_millis(20_000));
        for _ in 0..3 {
            assert!(g.take(lim, Time::from_millis(20_000)));
        }
        assert!(!g.take(lim, Time::from_millis(20_000)));
    }

    #[test]
    fn gcra_without_refill_and_off() {
        let lim = FloodLimit::new(2, 0);
        let mut g = Gcra::default();
        assert!(g.take(lim, Time::ZERO));
        assert!(g.take(lim, Time::ZERO));
        assert!(!g.take(lim, Time::from_millis(u64::MAX / 2_000_000)));
        let mut g = Gcra::default();
        for _ in 0..10_000 {
            assert!(g.take(FloodLimit::OFF, Time::ZERO));
        }
    }
}
