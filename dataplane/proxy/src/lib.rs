//! sluice-proxy: one poll loop's reverse proxy, sans IO.
//!
//! Downstream apps (HTTP/1.1, HTTP/2, either behind TLS) see it through
//! [`sluice_app::proxy::Proxy`]: a request goes in, response parts come
//! out. Upstream, every backend connection is a TCP connection of the
//! loop's own stack: the proxy asks the TCP service to open one
//! ([`LoopProxy::take_connects`]), the service runs an [`UpstreamApp`] on it
//! once it is established, and the app feeds the proxy's exchanges.
//!
//! Nothing here reads a clock or touches a socket: time comes in as a
//! value, connections are opened and woken by the service through
//! [`LoopProxy::take_connects`] and [`LoopProxy::take_wakes`].
//!
//! Pools are per loop and per backend: idle connections are reused last in,
//! first out (the warmest connection, and the others age out), never more
//! than `max_connections` per backend, and a request waits for a connection
//! (up to `max_pending` per cluster) rather than opening one per request.
#![forbid(unsafe_code)]

pub mod board;
mod core;
pub mod record;
pub mod spec;
pub mod trace;
mod upstream;

pub use crate::core::{LoopProxy, ProxyStats};
pub use spec::{ClusterSpec, ProxySpec, RouteSpec};
pub use upstream::UpstreamApp;

/// Which upstream connection of the loop's proxy (index and generation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UpstreamId {
    pub index: u32,
    pub gen: u32,
}
