//! The sender's SACK scoreboard and the loss-recovery rules of RFC 6675
//! (IsLost, NextSeg, SetPipe) over u64 stream offsets.
//! STUB: bodies come with the components branch.

/// What one ACK changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AckUpdate {
    /// Bytes newly covered by SACK blocks.
    pub newly_sacked: u64,
    /// Whether any SACK block was new information (for dupack counting,
    /// RFC 6675 §2 "duplicate acknowledgment").
    pub sack_changed: bool,
}

#[derive(Clone, Debug)]
pub struct Scoreboard {
    max_ranges: usize,
}

impl Scoreboard {
    pub fn new(max_ranges: usize) -> Self {
        Self { max_ranges }
    }
    /// Apply a cumulative ACK `una` and the ACK's SACK blocks (ignored when
    /// below `una` or above `nxt`, RFC 2018 §4 / RFC 6675 §4).
    pub fn on_ack(&mut self, _una: u64, _blocks: &[(u64, u64)], _nxt: u64) -> AckUpdate {
        let _ = self.max_ranges;
        todo!("components branch")
    }
    /// RFC 6675 IsLost(offset): `dupthresh` discontiguous SACKed segments
    /// of `mss` bytes, or more than (dupthresh-1)·mss SACKed bytes, above it.
    pub fn is_lost(&self, _offset: u64, _mss: u32, _dupthresh: u32) -> bool {
        todo!("components branch")
    }
    /// RFC 6675 NextSeg (rules 1–3): the next range to send in recovery,
    /// `(start, len)`, len ≤ mss; `nxt` is SND.NXT, `end` is the end of the
    /// data the application has written.
    pub fn next_seg(
        &self,
        _una: u64,
        _nxt: u64,
        _end: u64,
        _mss: u32,
        _dupthresh: u32,
    ) -> Option<(u64, u32)> {
        todo!("components branch")
    }
    /// Remember that `[start, end)` was retransmitted (HighRxt, for pipe).
    pub fn mark_retransmitted(&mut self, _start: u64, _end: u64) {
        todo!("components branch")
    }
    /// RFC 6675 SetPipe: bytes considered in flight.
    pub fn pipe(&self, _una: u64, _nxt: u64, _mss: u32, _dupthresh: u32) -> u64 {
        todo!("components branch")
    }
    /// After an RTO (RFC 6675 §5.1): forget retransmission marks; keep or
    /// drop SACK information as the RFC allows (we keep it).
    pub fn on_rto(&mut self) {
        todo!("components branch")
    }
    pub fn sacked_bytes(&self) -> u64 {
        todo!("components branch")
    }
    /// The highest SACKed offset (HighACK+), if any.
    pub fn highest_sacked(&self) -> Option<u64> {
        todo!("components branch")
    }
}
