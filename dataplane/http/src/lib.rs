//! sluice-http: the sans-IO HTTP/1.1 server of the sluice dataplane.
//!
//! A [`ServerConn`] is one HTTP/1.1 connection's protocol state. The poll
//! loop feeds it the bytes its TCP stack received ([`ServerConn::on_read`],
//! [`ServerConn::on_read_eof`]) and drains the response bytes it produces
//! ([`ServerConn::poll_write`]). It never does I/O, never reads a clock (the
//! `Date` header value is handed in through the loop's [`LoopDate`]) and, once its
//! buffers have grown to their working size, allocates nothing per request.
//!
//! Built-in direct-response routes (docs/http.md):
//! `GET|HEAD /bytes/N`, `POST /echo`, `GET|HEAD /health`.
//!
//! Driving it with TCP backpressure:
//!
//! ```
//! use sluice_http::{ServerConfig, ServerConn};
//! let cfg = ServerConfig {
//!     fixed_date: Some(*b"Thu, 01 Jan 1970 00:00:00 GMT"),
//!     ..ServerConfig::default()
//! };
//! let mut conn = ServerConn::new(&cfg);
//! let mut rx: Vec<u8> = b"GET /health HTTP/1.1\r\nHost: a\r\n\r\n".to_vec();
//! let mut tx = Vec::new();
//! let mut buf = [0u8; 4096];
//! loop {
//!     let took = conn.on_read(&rx); // may take fewer bytes than offered
//!     rx.drain(..took);
//!     let n = conn.poll_write(&mut buf); // as much as the send window allows
//!     tx.extend_from_slice(&buf[..n]);
//!     if took == 0 && n == 0 {
//!         break; // blocked: wait for more input or more send space
//!     }
//! }
//! assert!(tx.starts_with(b"HTTP/1.1 200 OK\r\n"));
//! assert!(tx.ends_with(b"\r\n\r\nok\n"));
//! ```
#![forbid(unsafe_code)]

mod app;
mod chunked;
mod client;
mod config;
mod conn;
mod head;
mod stats;
#[doc(hidden)]
pub mod testing;

pub use app::{Http1App, Timeouts};
pub use client::{
    connection_tokens, is_hop_by_hop, write_request_head, BodyFraming, ClientConn, ClientError,
    ClientEvent, ClientLimits, Fields, ResponseHead,
};
pub use config::ServerConfig;
pub use conn::{ProxyPeer, ServerConn};
pub use sluice_app::{format_http_date, LoopDate};
pub use stats::Stats;

pub use sluice_app::routes::bytes_pattern;
