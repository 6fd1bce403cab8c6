//! Arbitrary bytes after the client preface, in pieces and over virtual
//! time, through one H2App (h2 driven by sluice, with its frame scanner and
//! flood bounds): no panic inside h2 or sluice, bounded memory, every
//! timeout moves its deadline or closes (sluice_h2::fuzz_frames). Seeds
//! are real clients' opening frames (curl, nghttp: SETTINGS,
//! WINDOW_UPDATE, PRIORITY, HEADERS, DATA).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sluice_h2::fuzz_frames(data);
});
