//! Token bucket, e.g. for RFC 5961 §7 challenge ACKs and for RSTs.
//! STUB: bodies come with the components branch.

use crate::time::Time;

#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate_per_sec: u32,
    burst: u32,
}

impl TokenBucket {
    /// `rate_per_sec` tokens per second, at most `burst` saved; starts full.
    pub fn new(rate_per_sec: u32, burst: u32, _now: Time) -> Self {
        Self {
            rate_per_sec,
            burst,
        }
    }
    /// Take one token if there is one.
    pub fn try_take(&mut self, _now: Time) -> bool {
        let _ = (self.rate_per_sec, self.burst);
        todo!("components branch")
    }
}
