//! NewReno (RFC 5681 / RFC 6582 window rules, RFC 3465 ABC with L = 2). STUB: bodies come with the components branch.

use core::time::Duration;

use super::CongestionControl;
use crate::time::Time;

#[derive(Debug)]
pub struct NewReno {
    mss: u32,
}

impl NewReno {
    pub fn new(mss: u32, _now: Time) -> Self {
        Self { mss }
    }
}

impl CongestionControl for NewReno {
    fn window(&self) -> u32 {
        let _ = self.mss;
        todo!("components branch")
    }
    fn ssthresh(&self) -> u32 {
        todo!("components branch")
    }
    fn on_ack(&mut self, _now: Time, _acked: u32, _in_flight: u32, _rtt: Option<Duration>) {
        todo!("components branch")
    }
    fn on_congestion_event(&mut self, _now: Time, _in_flight: u32) {
        todo!("components branch")
    }
    fn on_recovery_end(&mut self, _now: Time) {
        todo!("components branch")
    }
    fn on_rto(&mut self, _now: Time, _in_flight: u32) {
        todo!("components branch")
    }
    fn on_idle_restart(&mut self, _now: Time) {
        todo!("components branch")
    }
}
