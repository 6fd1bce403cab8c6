//! Receive-side reassembly map: which byte ranges above the in-order point
//! have arrived (the bytes themselves live in the receive ring). Bounded in
//! ranges; produces SACK blocks in RFC 2018 §4 order (the block containing
//! the most recent arrival first).
//!
//! Offsets are u64 stream offsets (sequence number minus the peer's ISN+1,
//! unwrapped by the connection): no wraparound arithmetic here.
//! STUB: bodies come with the components branch.

/// Inserting would need more ranges than allowed: drop the segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooFragmented;

#[derive(Clone, Debug)]
pub struct Assembler {
    max_ranges: usize,
}

impl Assembler {
    pub fn new(max_ranges: usize) -> Self {
        Self { max_ranges }
    }
    /// Record `[start, end)` as received (above the in-order point).
    /// Overlaps merge.
    pub fn insert(&mut self, _start: u64, _end: u64) -> Result<(), TooFragmented> {
        let _ = self.max_ranges;
        todo!("components branch")
    }
    /// With the in-order point at `next`, return the new in-order point
    /// (the end of a range that starts at or before `next`), forgetting
    /// everything below it.
    pub fn advance(&mut self, _next: u64) -> u64 {
        todo!("components branch")
    }
    /// Write up to `out.len()` SACK blocks `[start, end)`; most recent first.
    pub fn sack_blocks(&self, _out: &mut [(u64, u64)]) -> usize {
        todo!("components branch")
    }
    /// Bytes held out of order.
    pub fn buffered(&self) -> u64 {
        todo!("components branch")
    }
    pub fn is_empty(&self) -> bool {
        self.buffered() == 0
    }
}
