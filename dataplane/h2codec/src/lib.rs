//! sluice-h2codec: the HTTP/2 wire codec of sluice's proxied path.
//!
//! Two sans-IO layers, each usable alone:
//! - [`frame`]: the frame layer of RFC 9113 §4 and §6: parsing with every
//!   size and stream-id rule checked, and writers into a `Vec<u8>`;
//! - [`hpack`]: RFC 7541 field compression: a decoder that hands out
//!   borrowed fields (no allocation per field) and an encoder with a
//!   static-table fast path and a dynamic table for fields that repeat.
//!
//! Why by hand: the profile of TLS h2 → h2c proxying showed half of the
//! loop's time in the h2 and http crates (docs/benchmarks.md). See
//! docs/architecture.md, "The HTTP/2 codec".
#![forbid(unsafe_code)]

pub mod frame;
pub mod hpack;
