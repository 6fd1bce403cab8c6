//! Arbitrary segments (raw, and built relative to an established
//! connection so they reach deep states), SYNs to a small backlog (SYN
//! cookies), application calls and clock advances, fed to one TCP
//! Endpoint with a listener and an established connection
//! (sluice_netstack::tcp::testing::exercise): no panic, every transmitted
//! packet parses with valid checksums, memory and connections stay within
//! their limits, and everything winds down to zero connections and zero
//! memory. Seeds: fuzz/seeds/tcpseg-*.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sluice_netstack::tcp::testing::exercise(data);
});
