//! Time as the protocol engines see it: a value passed in by the caller.
//!
//! Engines never read a clock. The poll loop converts its monotonic clock
//! into [`Time`] once per iteration; tests drive a virtual clock. `Time` is
//! nanoseconds since an arbitrary epoch chosen by the caller.

use core::ops::{Add, AddAssign, Sub};
use core::time::Duration;

/// A point in time, in nanoseconds since the caller's epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(u64);

impl Time {
    pub const ZERO: Time = Time(0);
    /// Later than any time an engine will see; "never" for deadlines.
    pub const MAX: Time = Time(u64::MAX);

    pub const fn from_nanos(ns: u64) -> Self {
        Time(ns)
    }

    pub const fn from_micros(us: u64) -> Self {
        Time(us.saturating_mul(1_000))
    }

    pub const fn from_millis(ms: u64) -> Self {
        Time(ms.saturating_mul(1_000_000))
    }

    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    pub const fn as_micros(self) -> u64 {
        self.0 / 1_000
    }

    pub const fn as_millis(self) -> u64 {
        self.0 / 1_000_000
    }

    /// Time since `earlier`, or zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Time) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    pub fn checked_add(self, d: Duration) -> Option<Time> {
        u64::try_from(d.as_nanos())
            .ok()
            .and_then(|ns| self.0.checked_add(ns))
            .map(Time)
    }
}

impl Add<Duration> for Time {
    type Output = Time;

    /// Saturates at [`Time::MAX`].
    fn add(self, d: Duration) -> Time {
        self.checked_add(d).unwrap_or(Time::MAX)
    }
}

impl AddAssign<Duration> for Time {
    fn add_assign(&mut self, d: Duration) {
        *self = *self + d;
    }
}

impl Sub<Time> for Time {
    type Output = Duration;

    /// Saturates at zero: time does not run backwards for an engine.
    fn sub(self, earlier: Time) -> Duration {
        self.saturating_since(earlier)
    }
}

impl Sub<Duration> for Time {
    type Output = Time;

    fn sub(self, d: Duration) -> Time {
        Time(
            self.0
                .saturating_sub(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let t = Time::from_millis(5);
        assert_eq!(t + Duration::from_millis(2), Time::from_millis(7));
        assert_eq!(t - Time::from_millis(7), Duration::ZERO);
        assert_eq!(Time::from_millis(7) - t, Duration::from_millis(2));
        assert_eq!(Time::MAX + Duration::from_secs(1), Time::MAX);
        assert_eq!(t - Duration::from_secs(1), Time::ZERO);
        assert!(Time::ZERO < t && t < Time::MAX);
        assert_eq!(Time::from_micros(1500).as_millis(), 1);
    }
}
