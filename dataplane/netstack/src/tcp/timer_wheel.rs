//! A hierarchical timing wheel for many connections: one deadline per key
//! (a connection slot multiplexes its own timers into its earliest
//! deadline), O(1) set and cancel, no allocation after warm-up.
//! STUB: bodies come with the components branch.

use core::time::Duration;

use crate::time::Time;

#[derive(Debug)]
pub struct TimerWheel {
    tick: Duration,
}

impl TimerWheel {
    /// A wheel starting at `now` with resolution `tick` (deadlines are
    /// rounded up to a tick: a timer never fires early).
    pub fn new(now: Time, tick: Duration) -> Self {
        let _ = now;
        Self { tick }
    }
    /// Arm (or re-arm) `key` for `deadline`; replaces any earlier deadline
    /// of the key. A deadline at or before the wheel's time fires at the
    /// next `advance`.
    pub fn set(&mut self, _key: u32, _deadline: Time) {
        let _ = self.tick;
        todo!("components branch")
    }
    /// Disarm `key`; a no-op if it is not armed.
    pub fn cancel(&mut self, _key: u32) {
        todo!("components branch")
    }
    pub fn deadline(&self, _key: u32) -> Option<Time> {
        todo!("components branch")
    }
    /// The earliest armed deadline, for the poll loop's sleep.
    pub fn next_deadline(&self) -> Option<Time> {
        todo!("components branch")
    }
    /// Move the wheel to `now`; append every key whose deadline is at or
    /// before `now` to `expired` (in deadline order) and disarm it.
    pub fn advance(&mut self, _now: Time, _expired: &mut Vec<u32>) {
        todo!("components branch")
    }
    /// Armed keys.
    pub fn len(&self) -> usize {
        todo!("components branch")
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
