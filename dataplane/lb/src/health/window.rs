//! The sliding failure-rate window: a ring of fixed buckets.

use core::time::Duration;

use sluice_netstack::time::Time;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Bucket {
    requests: u32,
    failures: u32,
}

/// Requests and failures over the last `buckets` bucket widths. Bucket `k`
/// holds the outcomes recorded while `now / width == k` (absolute bucket
/// index): buckets move with the clock, not with the traffic, so a quiet
/// backend's old failures expire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FailureWindow {
    buckets: Box<[Bucket]>,
    width_ns: u64,
    /// Absolute index of the newest bucket.
    head: u64,
}

impl FailureWindow {
    /// `buckets ≥ 1`, `window ≥ buckets` ns (checked by the config).
    pub(crate) fn new(window: Duration, buckets: u32) -> Self {
        let n = u64::from(buckets.max(1));
        let window_ns = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
        FailureWindow {
            buckets: vec![Bucket::default(); n as usize].into_boxed_slice(),
            width_ns: (window_ns / n).max(1),
            head: 0,
        }
    }

    fn advance(&mut self, now: Time) {
        let idx = now.as_nanos() / self.width_ns;
        if idx <= self.head {
            return;
        }
        let n = self.buckets.len() as u64;
        // Clear every bucket that left the window; at most all of them.
        for k in 1..=(idx - self.head).min(n) {
            self.buckets[((self.head + k) % n) as usize] = Bucket::default();
        }
        self.head = idx;
    }

    pub(crate) fn add(&mut self, now: Time, requests: u32, failures: u32) {
        self.advance(now);
        let n = self.buckets.len() as u64;
        let b = &mut self.buckets[(self.head % n) as usize];
        b.requests = b.requests.saturating_add(requests);
        b.failures = b.failures.saturating_add(failures);
    }

    /// (requests, failures) in the window as of `now`.
    pub(crate) fn totals(&mut self, now: Time) -> (u64, u64) {
        self.advance(now);
        self.buckets.iter().fold((0, 0), |(r, f), b| {
            (r + u64::from(b.requests), f + u64::from(b.failures))
        })
    }

    /// (requests, failures) as of the last update, for display.
    pub(crate) fn peek(&self) -> (u64, u64) {
        self.buckets.iter().fold((0, 0), |(r, f), b| {
            (r + u64::from(b.requests), f + u64::from(b.failures))
        })
    }

    pub(crate) fn clear(&mut self) {
        self.buckets.fill(Bucket::default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_buckets_expire() {
        // 10 s in 10 buckets of 1 s.
        let mut w = FailureWindow::new(Duration::from_secs(10), 10);
        w.add(Time::from_millis(500), 10, 5);
        w.add(Time::from_millis(3_500), 4, 4);
        assert_eq!(w.totals(Time::from_millis(9_999)), (14, 9));
        // At 10 s bucket 0 (0..1 s) has left the window.
        assert_eq!(w.totals(Time::from_millis(10_000)), (4, 4));
        // Bucket 3 (3..4 s) leaves at 13 s.
        assert_eq!(w.totals(Time::from_millis(12_999)), (4, 4));
        assert_eq!(w.totals(Time::from_millis(13_000)), (0, 0));
        // A long silence clears everything without walking every gap.
        w.add(Time::from_millis(15_000), 1, 0);
        assert_eq!(w.totals(Time::from_millis(1_000_000_000)), (0, 0));
    }

    #[test]
    fn time_going_back_lands_in_the_newest_bucket() {
        let mut w = FailureWindow::new(Duration::from_secs(1), 4);
        w.add(Time::from_millis(900), 1, 1);
        w.add(Time::from_millis(100), 1, 0);
        assert_eq!(w.totals(Time::from_millis(900)), (2, 1));
        w.clear();
        assert_eq!(w.peek(), (0, 0));
    }
}
