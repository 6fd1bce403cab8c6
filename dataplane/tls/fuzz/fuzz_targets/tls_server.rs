//! Arbitrary bytes, as a client would send them, through one TlsApp (a
//! real certificate, ALPN, tickets; an echo app behind it): no panic, the
//! app's invariants hold (sluice_tls::fuzz_server_bytes). Seeds are real
//! ClientHellos (openssl s_client with ALPN and SNI, TLS 1.3 and 1.2).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sluice_tls::fuzz_server_bytes(data);
});
