//! Arbitrary header blocks through one HPACK Decoder (table limit from
//! the first byte, blocks split by length bytes): no panic, the table
//! never above its limit, and every block it accepts, re-encoded by an
//! Encoder, decodes to the same fields (sluice_h2codec::hpack::fuzz_hpack).
//! Seeds are the RFC 7541 Appendix C.4 requests and C.6 responses.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sluice_h2codec::hpack::fuzz_hpack(data);
});
