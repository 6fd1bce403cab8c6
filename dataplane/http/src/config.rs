//! Limits and identity of the server, shared by every connection of a loop.

use std::sync::Arc;

/// Upper bound of [`ServerConfig::max_headers`]: the header slots live on the
/// stack while a request head is parsed.
pub const MAX_HEADERS_CAP: usize = 256;

/// Configuration of the HTTP/1.1 server. Cheap to clone (the server name is
/// shared). `Send`: one configuration serves every loop; the `Date` value is
/// per loop ([`crate::ServerConn::with_date`]).
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Largest request head (request line and header fields, and also the
    /// trailer section of a chunked body) in bytes; beyond it: 431.
    pub max_header_bytes: usize,
    /// Longest request line in bytes; beyond it: 414.
    pub max_request_line_bytes: usize,
    /// Most header fields in a request head; beyond it: 431. At most
    /// [`MAX_HEADERS_CAP`] (larger values are clamped).
    pub max_headers: usize,
    /// Largest `POST /echo` request body; `None` streams any length. A
    /// Content-Length above it gets 413; a chunked body that grows past it
    /// gets 413 if the response has not started, else the response is cut
    /// short and the connection closed.
    pub max_body_bytes: Option<u64>,
    /// Largest N accepted by `GET /bytes/N`; beyond it: 400.
    pub max_bytes_route: u64,
    /// Most responses buffered ahead of the writer for pipelined requests;
    /// further requests wait in the caller's receive buffer.
    pub pipeline_depth: usize,
    /// Bytes of buffered responses past which no further pipelined request
    /// is parsed until the writer drains them.
    pub out_buffer_bytes: usize,
    /// Bytes of an echoed body held between `on_read` and `poll_write`;
    /// when full, `on_read` takes no more body bytes (backpressure).
    pub echo_buffer_bytes: usize,
    /// Value of the `Server` header; empty: no `Server` header.
    pub server_name: Arc<str>,
    /// A fixed `Date` header value for connections made with
    /// [`crate::ServerConn::new`] (tests); loops hand in their own
    /// [`sluice_app::LoopDate`] instead. None: no `Date` header.
    pub fixed_date: Option<[u8; 29]>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_header_bytes: 16 * 1024,
            max_request_line_bytes: 8 * 1024,
            max_headers: 64,
            max_body_bytes: None,
            max_bytes_route: 16 << 30,
            pipeline_depth: 32,
            out_buffer_bytes: 16 * 1024,
            echo_buffer_bytes: 32 * 1024,
            server_name: Arc::from("sluice"),
            fixed_date: None,
        }
    }
}

impl ServerConfig {
    /// The limits a connection copies, clamped to sane values.
    pub(crate) fn limits(&self) -> Limits {
        Limits {
            max_header_bytes: self.max_header_bytes.max(64),
            max_request_line_bytes: self.max_request_line_bytes.max(16),
            max_headers: self.max_headers.clamp(1, MAX_HEADERS_CAP),
            max_body_bytes: self.max_body_bytes.unwrap_or(u64::MAX),
            max_bytes_route: self.max_bytes_route,
            pipeline_depth: self.pipeline_depth.max(1),
            out_buffer_bytes: self.out_buffer_bytes.max(1),
            echo_buffer_bytes: self.echo_buffer_bytes.max(1),
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub max_header_bytes: usize,
    pub max_request_line_bytes: usize,
    pub max_headers: usize,
    pub max_body_bytes: u64,
    pub max_bytes_route: u64,
    pub pipeline_depth: usize,
    pub out_buffer_bytes: usize,
    pub echo_buffer_bytes: usize,
}
