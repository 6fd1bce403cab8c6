//! SYN cookies (RFC 4987 §3.6): answer a SYN without keeping state when the
//! listen backlog is full, and rebuild the connection from the ACK.
//!
//! The ISN carries a keyed MAC (SipHash-2-4 over the 4-tuple, the peer's
//! ISN and a 64-second counter) and an index into an MSS table; when the
//! peer sent timestamps, window scale and SACK-permitted ride in the low
//! [`TS_OPT_BITS`] bits of our TSval and come back in TSecr (the Linux
//! scheme). Every core of a host uses the same key, so any core can
//! validate a cookie. STUB: bodies come with the components branch.

use super::tuple::FourTuple;
use crate::time::Time;

/// Low bits of TSval that carry window scale and SACK-permitted.
pub const TS_OPT_BITS: u32 = 6;

/// What a cookie preserves of the peer's SYN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CookieOpts {
    /// The peer's MSS, rounded down to the cookie table.
    pub mss: u16,
    /// The peer's window scale (only when timestamps carry it).
    pub wscale: Option<u8>,
    pub sack_permitted: bool,
    pub timestamps: bool,
}

/// A cookie to send in a SYN-ACK.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cookie {
    /// Our ISN.
    pub isn: u32,
    /// Bits to put in the low [`TS_OPT_BITS`] of TSval (0 without timestamps).
    pub ts_bits: u32,
}

pub struct SynCookies {
    key: [u8; 16],
}

impl core::fmt::Debug for SynCookies {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SynCookies { key: <secret> }")
    }
}

impl SynCookies {
    pub fn new(key: [u8; 16]) -> Self {
        Self { key }
    }
    /// The cookie for a SYN from `tuple` with sequence number `peer_isn`.
    pub fn generate(
        &self,
        _now: Time,
        _tuple: &FourTuple,
        _peer_isn: u32,
        _opts: &CookieOpts,
    ) -> Cookie {
        let _ = self.key;
        todo!("components branch")
    }
    /// Check the ACK of a cookie SYN-ACK: `peer_isn` is the ACK's sequence
    /// number minus one, `our_isn` its acknowledgment number minus one,
    /// `tsecr` its echoed timestamp if any. Accepts cookies up to two
    /// counter periods old; returns what the SYN asked for.
    pub fn validate(
        &self,
        _now: Time,
        _tuple: &FourTuple,
        _peer_isn: u32,
        _our_isn: u32,
        _tsecr: Option<u32>,
    ) -> Option<CookieOpts> {
        todo!("components branch")
    }
}
