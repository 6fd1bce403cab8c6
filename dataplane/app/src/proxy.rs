//! The seam between a downstream HTTP connection (HTTP/1.1 or HTTP/2, with
//! or without TLS) and the loop's reverse proxy.
//!
//! A downstream app asks [`Proxy::matches`] for each request; when a route
//! matches it hands the request over with [`Proxy::start`], streams the
//! request body with [`Proxy::send_body`] (which may take fewer bytes:
//! backpressure up to the client), and pulls the response with
//! [`Proxy::poll_response`]. The proxy never calls back into the app: when
//! something changes for an exchange it queues the app's [`WakeKey`], and
//! the TCP service pumps that connection. So an app may call the proxy from
//! inside `on_read` or `poll_write` without re-entrancy.
//!
//! Fields travel as an [`http::HeaderMap`] (names lowercased, values as
//! received): HTTP/2 decodes into one and encodes from one, so an h2 to h2
//! exchange hands the same map through without a copy per field. The
//! downstream codec has already removed its hop-by-hop fields (RFC 9110
//! §7.6.1).

use std::net::SocketAddr;
use std::sync::Arc;

/// What the TCP service uses to find a connection again (its slot and
/// generation): the proxy queues it when the connection has work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WakeKey(pub u64);

/// One request in flight through the proxy, as the proxy numbers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ExchangeId {
    pub index: u32,
    pub gen: u32,
}

/// How much body follows a head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyLen {
    None,
    Length(u64),
    /// Chunked (HTTP/1.1) or DATA frames without content-length (HTTP/2).
    Streamed,
}

pub use http::header::{HeaderName, HeaderValue};

/// A message's fields (no pseudo-headers, no hop-by-hop fields).
pub type Headers = http::HeaderMap;

/// Adds a field given as bytes; one that is not a valid field name or
/// value is dropped (both HTTP/1.1 parsing and HPACK decoding have already
/// refused them, so only a field built by hand can be).
pub fn append(headers: &mut Headers, name: &[u8], value: &[u8]) {
    if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
        headers.append(n, v);
    }
}

/// A request handed to the proxy.
#[derive(Clone, Debug)]
pub struct ProxyRequest {
    pub method: Vec<u8>,
    /// Origin form: path and query.
    pub path: Vec<u8>,
    /// `Host` or `:authority`.
    pub authority: Option<Vec<u8>>,
    /// End-to-end fields (no `Host`, no hop-by-hop, no pseudo-headers).
    pub headers: Headers,
    pub body: BodyLen,
    /// The downstream peer.
    pub client: Option<SocketAddr>,
    pub tls: bool,
    /// 11 or 20.
    pub version: u8,
    /// The client certificate's verified SPIFFE ID (mTLS).
    pub spiffe_id: Option<Arc<str>>,
    /// The TLS handshake of the connection that carried the request.
    pub tls_handshake: Option<std::time::Duration>,
}

/// A piece of the response, in order: `Head`, any `Data`, maybe
/// `Trailers`, then `End`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponsePart {
    Head {
        status: u16,
        headers: Headers,
        body: BodyLen,
    },
    Data(Vec<u8>),
    Trailers(Headers),
    End,
}

/// Why an exchange failed. Before the response head was handed out, the
/// app answers with [`ProxyError::status`]; after it, the app aborts the
/// response (HTTP/1.1 closes the connection, HTTP/2 resets the stream).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyError {
    /// A circuit breaker is full (pending or active requests).
    Overflow,
    /// No backend can take the request (all ejected or unhealthy).
    NoHealthyBackend,
    /// Connecting to every backend tried failed.
    ConnectFailed,
    /// The backend reset or closed the connection before the response
    /// ended.
    UpstreamReset,
    /// The backend's response was not valid HTTP.
    BadResponse,
    /// The route's timeout passed.
    Timeout,
    /// The request body was malformed or ended early downstream.
    BadRequest,
}

impl ProxyError {
    /// The status a client sees when the error comes before the response.
    pub fn status(self) -> u16 {
        match self {
            Self::Overflow | Self::NoHealthyBackend => 503,
            Self::ConnectFailed | Self::UpstreamReset | Self::BadResponse => 502,
            Self::Timeout => 504,
            Self::BadRequest => 400,
        }
    }
}

/// The loop's reverse proxy, as downstream apps see it. Methods take
/// `&self`: the proxy is shared by every connection of the loop.
pub trait Proxy {
    /// Whether a route sends this request to a cluster.
    fn matches(&self, authority: Option<&[u8]>, method: &[u8], path: &[u8]) -> bool;

    /// Start an exchange (at the loop's current time, which the service
    /// keeps the proxy told of). Errors (overflow, no backend) come out of
    /// `poll_response`, so there is one path for them.
    fn start(&self, req: ProxyRequest, wake: WakeKey) -> ExchangeId;

    /// Request body bytes; returns how many were taken (fewer when the
    /// exchange's buffer is full: call again after a wake).
    fn send_body(&self, ex: ExchangeId, data: &[u8]) -> usize;

    /// The request body is complete, with the client's trailers if it
    /// sent any (an HTTP/1.1 backend gets them only on a chunked body).
    fn end_body(&self, ex: ExchangeId, trailers: Option<Headers>);

    /// The next piece of the response, if one is ready.
    fn poll_response(&self, ex: ExchangeId) -> Option<Result<ResponsePart, ProxyError>>;

    /// Whether `poll_response` has something now.
    fn response_ready(&self, ex: ExchangeId) -> bool;

    /// The downstream is gone or gave up: forget the exchange (the
    /// upstream connection is reset if a response was still coming).
    fn cancel(&self, ex: ExchangeId);
}

impl std::fmt::Debug for dyn Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Proxy")
    }
}

/// A proxy that never matches: for loops without routes, and tests.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoProxy;

impl Proxy for NoProxy {
    fn matches(&self, _: Option<&[u8]>, _: &[u8], _: &[u8]) -> bool {
        false
    }
    fn start(&self, _: ProxyRequest, _: WakeKey) -> ExchangeId {
        ExchangeId { index: 0, gen: 0 }
    }
    fn send_body(&self, _: ExchangeId, data: &[u8]) -> usize {
        data.len()
    }
    fn end_body(&self, _: ExchangeId, _: Option<Headers>) {}
    fn poll_response(&self, _: ExchangeId) -> Option<Result<ResponsePart, ProxyError>> {
        Some(Err(ProxyError::NoHealthyBackend))
    }
    fn response_ready(&self, _: ExchangeId) -> bool {
        true
    }
    fn cancel(&self, _: ExchangeId) {}
}
