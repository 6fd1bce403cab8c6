//! sluice-tls: TLS termination in the poll loop.
//!
//! TLS is one more sluice [`App`](sluice_app::App): a [`TlsApp`] takes
//! ciphertext from the TCP service, runs rustls, and once the handshake is
//! done feeds plaintext to the application the ALPN protocol selects (made
//! by the loop's `AppFactory` with the ALPN, SNI and client SPIFFE ID in
//! its `ConnContext`). Everything is sans-IO like the rest of the data
//! path: no sockets, threads or clocks here; time comes in as
//! [`Time`](sluice_app::Time). (rustls itself reads the wall clock to check
//! certificate validity and ticket ages.)
//!
//! The pieces:
//! - [`TlsSettings`]: the `--tls-*` flags as plain data.
//! - [`TlsServer`]: certificates (chosen by SNI), protocol versions, ALPN,
//!   session ticket keys and client authentication, shared by every loop
//!   and reloaded whole on SIGHUP ([`TlsServer::reload`]).
//! - [`TlsLoop`]: a loop's handle; [`TlsLoop::accept`] makes the
//!   [`TlsApp`] of an accepted connection.
//! - [`UpstreamTlsConnector`]: the client side, one per upstream cluster
//!   (its `[cluster.tls]` section); [`UpstreamTlsConnector::connect`]
//!   makes the [`TlsClientApp`] of a connection to a backend.
//!
//! Why the rustls types stay private: rustls 0.24 replaces the buffered
//! sans-IO API used here (`ServerConnection`, `read_tls`/`write_tls`), and
//! this crate is meant to be the only thing that changes then.
//!
//! Policy, in short: TLS 1.3 only unless `--tls12` (then TLS 1.2 with
//! ECDHE and AEAD suites and the extended master secret); ALPN h2 then
//! http/1.1; no 0-RTT; no renegotiation (rustls has none); stateless
//! session tickets under keys that several processes can share
//! ([`tickets`] has the key file format); client
//! certificates and SPIFFE ID prefixes on demand. docs/tls.md is the
//! operator's view.
#![forbid(unsafe_code)]

mod app;
mod certs;
mod client;
mod client_auth;
mod conn;
mod error;
mod fuzzing;
mod server;
pub mod tickets;

pub use app::TlsApp;
pub use client::{TlsClientApp, UpstreamAlpn, UpstreamTlsConnector, UpstreamTlsStats};
pub use error::TlsError;
pub use server::{TlsLoop, TlsServer, TlsSettings};
pub use tickets::{new_ticket_key_line, TICKET_LIFETIME};

/// Feeds arbitrary bytes, as a client would send them, to one [`TlsApp`]
/// (for the cargo-fuzz target). Must never panic.
#[doc(hidden)]
pub fn fuzz_server_bytes(data: &[u8]) {
    fuzzing::server_bytes(data);
}
