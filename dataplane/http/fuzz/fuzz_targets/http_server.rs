//! Arbitrary bytes, cut into arbitrary pieces, through one ServerConn as a
//! poll loop drives it, output drained through buffers of arbitrary size
//! (sluice_http::testing::exercise): no panic, no deadlock (input left
//! unread while nothing is to be written), bounded memory, on_read never
//! takes more than offered, poll_write never idles while wants_write,
//! output starts with a status line, and after EOF the connection closes.
//!
//! Input layout: 2 bytes of settings (limits, output buffer size, and a
//! token mode where bytes >= 0x80 stand for HTTP fragments), then pieces,
//! each a length byte and that many bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sluice_http::testing::exercise(data);
});
