//! Per-connection counters, summable per loop.

use std::ops::{Add, AddAssign};

/// Counters of one connection (or, summed, of many).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Request heads parsed (valid or not).
    pub requests: u64,
    /// Responses by status class: 1xx (100 Continue), 2xx, 3xx, 4xx, 5xx.
    pub status_1xx: u64,
    /// 2xx responses.
    pub status_2xx: u64,
    /// 3xx responses.
    pub status_3xx: u64,
    /// 4xx responses.
    pub status_4xx: u64,
    /// 5xx responses.
    pub status_5xx: u64,
    /// Requests refused as malformed or over a limit (the connection closes).
    pub bad_requests: u64,
    /// Responses cut short after they started (body error or EOF mid-echo).
    pub aborted: u64,
    /// Bytes taken by `on_read`.
    pub bytes_in: u64,
    /// Bytes produced by `poll_write`.
    pub bytes_out: u64,
    /// Request body (content) bytes decoded.
    pub body_bytes_in: u64,
    /// Bytes taken and dropped after the connection stopped reading requests.
    pub discarded_bytes: u64,
}

impl Stats {
    /// All responses.
    pub fn responses(&self) -> u64 {
        self.status_1xx + self.status_2xx + self.status_3xx + self.status_4xx + self.status_5xx
    }

    pub(crate) fn count_status(&mut self, status: u16) {
        match status / 100 {
            1 => self.status_1xx += 1,
            2 => self.status_2xx += 1,
            3 => self.status_3xx += 1,
            4 => self.status_4xx += 1,
            _ => self.status_5xx += 1,
        }
    }
}

impl AddAssign<&Stats> for Stats {
    fn add_assign(&mut self, o: &Stats) {
        self.requests += o.requests;
        self.status_1xx += o.status_1xx;
        self.status_2xx += o.status_2xx;
        self.status_3xx += o.status_3xx;
        self.status_4xx += o.status_4xx;
        self.status_5xx += o.status_5xx;
        self.bad_requests += o.bad_requests;
        self.aborted += o.aborted;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.body_bytes_in += o.body_bytes_in;
        self.discarded_bytes += o.discarded_bytes;
    }
}

impl AddAssign for Stats {
    fn add_assign(&mut self, o: Stats) {
        *self += &o;
    }
}

impl Add for Stats {
    type Output = Stats;
    fn add(mut self, o: Stats) -> Stats {
        self += &o;
        self
    }
}

impl std::iter::Sum for Stats {
    fn sum<I: Iterator<Item = Stats>>(iter: I) -> Stats {
        iter.fold(Stats::default(), Add::add)
    }
}
