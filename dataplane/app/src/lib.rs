//! sluice-app: the one interface between a poll loop's TCP service and the
//! application that serves an accepted connection.
//!
//! The TCP service owns segments, timers, neighbours and handoff; an
//! [`App`] sees a byte stream: bytes in ([`App::on_read`]), bytes out
//! ([`App::poll_write`]), one deadline ([`App::deadline`]), the memory it
//! holds ([`App::memory`]) and how it wants the connection to end
//! ([`App::close`]). Apps are sans-IO: time is passed in, nothing here
//! reads a clock or touches a socket. TLS is itself an `App` that wraps
//! another one (chosen by ALPN), so every application runs with or without
//! it.
//!
//! The service drives an app like this, until neither side moves:
//!
//! 1. while `poll_write` yields bytes and the send buffer has room, write
//!    them to TCP;
//! 2. while `wants_read` and TCP has bytes, `on_read` them (an app may
//!    take fewer than offered: the rest stays in TCP's receive buffer,
//!    which is backpressure on the peer);
//! 3. after the peer's FIN is read, `on_read_eof` once;
//! 4. re-arm the connection's timer at `deadline()`; when it fires, call
//!    `on_timeout`;
//! 5. when `close()` says so, FIN after the queued output (then linger),
//!    or reset.
#![forbid(unsafe_code)]

mod date;
pub mod proxy;
pub mod routes;
mod stats;

pub use date::{format_http_date, LoopDate};
pub use sluice_netstack::time::Time;
pub use stats::{AppStats, H2Stats, HttpStats, SharedStats, TlsStats};

/// How an application wants its connection to end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Close {
    /// Keep going.
    No,
    /// Send FIN once every byte from `poll_write` is written, then read and
    /// drop input until the peer's FIN (lingering close).
    Graceful,
    /// Reset now (a protocol violation, a flood): queued output is dropped.
    Abort,
}

/// What the service knows about a connection when it picks an app for it.
#[derive(Clone, Debug, Default)]
pub struct ConnContext {
    /// The ALPN protocol TLS agreed on (`b"h2"`, `b"http/1.1"`), if any.
    pub alpn: Option<Vec<u8>>,
    /// The server name the client asked for (TLS SNI).
    pub sni: Option<String>,
    /// The verified SPIFFE ID of the client certificate (mTLS), handed to
    /// requests (the proxy forwards it).
    pub spiffe_id: Option<std::sync::Arc<str>>,
    /// The connection arrived over TLS.
    pub tls: bool,
    /// The client's address and port.
    pub peer: Option<std::net::SocketAddr>,
    /// How the proxy names this connection when it has work for it.
    pub wake: proxy::WakeKey,
    /// How long the TLS handshake took (from the connection's accept).
    pub tls_handshake: Option<std::time::Duration>,
}

/// One connection's application protocol, sans IO.
///
/// Not `Send`: an app lives and dies on the loop that accepted its
/// connection (it may hold per-loop state such as the [`LoopDate`]).
pub trait App {
    /// Offers received bytes; returns how many the app took from the front
    /// of `data`. Fewer than offered (even none) means "not now": call
    /// again with the rest after `poll_write` made progress.
    fn on_read(&mut self, now: Time, data: &[u8]) -> usize;

    /// The peer finished sending (its FIN was read).
    fn on_read_eof(&mut self, now: Time);

    /// Writes up to `buf.len()` bytes to send; returns how many.
    fn poll_write(&mut self, now: Time, buf: &mut [u8]) -> usize;

    /// Whether `on_read` would take bytes now.
    fn wants_read(&self) -> bool;

    /// Whether `poll_write` has bytes (or may produce some) now.
    fn wants_write(&self) -> bool;

    /// When `on_timeout` is due, if ever. Read again after every call that
    /// changes the app.
    fn deadline(&self) -> Option<Time>;

    /// The deadline passed. The app decides (a 408, a GOAWAY, a close).
    fn on_timeout(&mut self, now: Time);

    /// Bytes the app holds in buffers (counted in the loop's memory budget).
    fn memory(&self) -> usize;

    /// How the connection should end, if it should.
    fn close(&self) -> Close;

    /// Between requests, holding no request or response state: the
    /// keep-alive idle state.
    fn is_idle(&self) -> bool;

    /// Gives back buffers an idle connection does not need (called when the
    /// app turns idle; the next request allocates them again).
    fn release_idle_memory(&mut self);

    /// Stop taking new requests and finish the ones in flight (SIGTERM):
    /// HTTP/2 sends GOAWAY, HTTP/1.1 answers with `Connection: close`.
    fn drain(&mut self, now: Time);
}

/// Makes the app of a new connection. A factory belongs to one loop; the
/// apps it makes count into that loop's [`SharedStats`].
pub trait AppFactory {
    /// The app of a connection described by `ctx`, made at `now`.
    fn make(&self, ctx: &ConnContext, now: Time) -> Box<dyn App>;
}

impl<F: Fn(&ConnContext, Time) -> Box<dyn App>> AppFactory for F {
    fn make(&self, ctx: &ConnContext, now: Time) -> Box<dyn App> {
        self(ctx, now)
    }
}
