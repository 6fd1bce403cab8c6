//! One HTTP/1.1 server connection: request bytes in, response bytes out.

use std::rc::Rc;
use std::sync::Arc;

use sluice_app::proxy::{BodyLen, ExchangeId, Headers, Proxy, ProxyRequest, ResponsePart, WakeKey};

use crate::chunked::{ChunkError, ChunkedDecoder};
use crate::config::{Limits, ServerConfig};
use crate::head::{self, BodyKind, Head, Method, Parsed, Route};
use crate::stats::Stats;
use sluice_app::LoopDate;

use sluice_app::routes::{PATTERN, PATTERN_LEN};

/// What the request-reading side is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Between requests or inside a request head.
    Head,
    /// Inside a request body.
    Body,
}

/// How the current request body is delimited.
#[derive(Clone, Copy, Debug)]
enum BodyReader {
    Length(u64),
    Chunked(ChunkedDecoder),
}

/// The response being produced after the bytes buffered in `out`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Active {
    None,
    /// `/bytes/N` body: bytes left, offset of the next byte modulo 251.
    Bytes {
        remaining: u64,
        phase: u8,
    },
    /// `/echo`: the request body goes back as the response body.
    Echo {
        /// The response is chunked (the request was).
        chunked: bool,
        /// Content-Length of the response, when not chunked.
        length: u64,
        /// The response head is in `out`.
        head_sent: bool,
        /// The request body has been read completely.
        input_done: bool,
        /// Bytes of the current output chunk still to copy.
        chunk_left: usize,
        /// Whether the request asked for the connection to close.
        close: bool,
        /// HTTP/1.0 request (keep-alive must be confirmed in the response).
        http10: bool,
    },
    /// The request went to the proxy; its response comes from a backend.
    Proxy {
        ex: ExchangeId,
        resp: ProxyResp,
        close: bool,
        http10: bool,
        head_only: bool,
        body: ReqBody,
    },
}

/// Where a proxied request's body is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReqBody {
    /// Still arriving from the client.
    Reading,
    /// All read; some may still wait in `proxy_body`.
    Read,
    /// All handed over, and the proxy told it ended.
    Ended,
}

/// Where a proxied response is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ProxyResp {
    AwaitHead,
    /// Head written; the body is chunked downstream (else copied as is:
    /// a Content-Length, or close-delimited for HTTP/1.0).
    Body {
        chunked: bool,
    },
}

/// Who the connection is, for proxied requests.
#[derive(Clone, Debug, Default)]
pub struct ProxyPeer {
    pub wake: WakeKey,
    pub client: Option<std::net::SocketAddr>,
    pub tls: bool,
    pub spiffe_id: Option<Arc<str>>,
    pub tls_handshake: Option<std::time::Duration>,
}

/// Request body bytes buffered on their way to the proxy.
const PROXY_BODY_BUFFER: usize = 64 * 1024;
/// Response bytes a proxied response may queue in `out` ahead of the
/// socket.
const PROXY_OUT_BUFFER: usize = 64 * 1024;

/// An HTTP/1.1 server connection, sans IO. See the crate docs for how to
/// drive it.
#[derive(Debug)]
pub struct ServerConn {
    lim: Limits,
    server: Arc<str>,
    date: LoopDate,
    /// A request head that arrived in pieces (never holds body bytes).
    inbuf: Vec<u8>,
    /// Offset of the first LF in `inbuf`, once one arrived.
    inbuf_line_end: Option<usize>,
    phase: Phase,
    body: BodyReader,
    /// Body bytes of the current request go to the echo buffer (else they
    /// are dropped).
    echo_sink: bool,
    /// Decoded body bytes of the current request so far.
    body_seen: u64,
    active: Active,
    /// Response bytes not yet handed to `poll_write`, from `out_pos`.
    out: Vec<u8>,
    out_pos: usize,
    /// Responses appended to `out` since it was last empty.
    queued: usize,
    /// Echoed body bytes not yet written, from `echo_pos`.
    echo: Vec<u8>,
    echo_pos: usize,
    /// No further request will be read: the connection closes once the
    /// output is written. Input that follows is dropped.
    no_more_requests: bool,
    eof: bool,
    stats: Stats,
    /// The loop's proxy (None: built-in routes only).
    proxy: Option<Rc<dyn Proxy>>,
    peer: ProxyPeer,
    /// Body bytes of the current request go to the proxy.
    proxy_sink: bool,
    proxy_body: Vec<u8>,
    /// A chunked request body's framing since its last data: at its end,
    /// the trailer section (bounded by the decoder's trailer limit).
    chunk_tail: Vec<u8>,
    /// The trailers of the proxied request's chunked body, for the proxy.
    proxy_trailers: Option<Headers>,
}

impl Drop for ServerConn {
    fn drop(&mut self) {
        if let (Active::Proxy { ex, .. }, Some(p)) = (self.active, &self.proxy) {
            p.cancel(ex);
        }
    }
}

impl ServerConn {
    /// A connection with the limits and server name of `cfg`, and its
    /// fixed `Date` value if any. Allocates nothing until bytes arrive.
    pub fn new(cfg: &ServerConfig) -> Self {
        let date = LoopDate::new();
        if let Some(d) = cfg.fixed_date {
            date.set(d);
        }
        Self::with_date(cfg, date)
    }

    /// A connection whose `Date` header copies the loop's `date` (set by
    /// the loop once a second).
    pub fn with_date(cfg: &ServerConfig, date: LoopDate) -> Self {
        ServerConn {
            lim: cfg.limits(),
            server: cfg.server_name.clone(),
            date,
            inbuf: Vec::new(),
            inbuf_line_end: None,
            phase: Phase::Head,
            body: BodyReader::Length(0),
            echo_sink: false,
            body_seen: 0,
            active: Active::None,
            out: Vec::new(),
            out_pos: 0,
            queued: 0,
            echo: Vec::new(),
            echo_pos: 0,
            no_more_requests: false,
            eof: false,
            stats: Stats::default(),
            proxy: None,
            peer: ProxyPeer::default(),
            proxy_sink: false,
            proxy_body: Vec::new(),
            chunk_tail: Vec::new(),
            proxy_trailers: None,
        }
    }

    /// Requests that a proxy route matches go to `proxy`.
    pub fn set_proxy(&mut self, proxy: Rc<dyn Proxy>, peer: ProxyPeer) {
        self.proxy = Some(proxy);
        self.peer = peer;
    }

    /// Takes bytes of the request stream from the front of `data` and
    /// returns how many it took. It may take fewer than offered (even none)
    /// when responses are waiting to be written: call again with the rest
    /// after `poll_write` made progress (see [`ServerConn::wants_read`]).
    /// After the connection decided to close, it takes and drops everything.
    pub fn on_read(&mut self, data: &[u8]) -> usize {
        let mut used = 0;
        while used < data.len() {
            let rest = &data[used..];
            if self.eof || (self.phase == Phase::Head && self.no_more_requests) {
                self.stats.discarded_bytes += rest.len() as u64;
                used = data.len();
                break;
            }
            let n = match self.phase {
                Phase::Head if self.can_start_request() => self.read_head(rest),
                Phase::Head => 0,
                Phase::Body => self.read_body(rest),
            };
            if n == 0 {
                break;
            }
            used += n;
        }
        self.stats.bytes_in += used as u64;
        used
    }

    /// The peer will send nothing more (its FIN). Call it once `on_read`
    /// has taken every byte before the FIN. Complete requests are still
    /// answered; a partial request is dropped; an echo still reading its
    /// body is cut short. The connection then closes once its output is
    /// written.
    pub fn on_read_eof(&mut self) {
        if self.eof {
            return;
        }
        self.eof = true;
        match self.phase {
            Phase::Head => self.clear_inbuf(),
            Phase::Body => {
                if self.proxy_sink {
                    // The body ends short: the backend must not take it
                    // as complete.
                    self.proxy_abort();
                    if let Active::Proxy { .. } = self.active {
                        self.active = Active::None;
                    }
                } else if self.echo_sink {
                    if let Active::Echo {
                        head_sent: true, ..
                    } = self.active
                    {
                        self.abort();
                    } else {
                        self.active = Active::None;
                    }
                }
                self.phase = Phase::Head;
            }
        }
        self.no_more_requests = true;
    }

    /// The caller's timer for this connection fired (keep-alive idle time or
    /// a request that takes too long to arrive). An idle connection is to be
    /// closed; one inside a request head gets 408; one inside a body is cut
    /// short. Afterwards `should_close` turns true once output is written.
    pub fn on_timeout(&mut self) {
        if self.no_more_requests {
            return;
        }
        if let Active::Proxy { resp, .. } = self.active {
            // Waiting on the backend (or the client's body) too long.
            self.proxy_abort();
            if resp == ProxyResp::AwaitHead {
                self.active = Active::None;
                self.reject(if self.phase == Phase::Body { 408 } else { 504 }, false);
            }
            self.phase = Phase::Head;
            self.no_more_requests = true;
            return;
        }
        match self.phase {
            Phase::Head if !self.inbuf.is_empty() => {
                self.clear_inbuf();
                self.reject(408, false);
            }
            Phase::Head => {}
            Phase::Body => {
                if self.echo_sink {
                    if let Active::Echo {
                        head_sent: true, ..
                    } = self.active
                    {
                        self.abort();
                    } else {
                        self.active = Active::None;
                        self.reject(408, false);
                    }
                }
                self.phase = Phase::Head;
            }
        }
        self.no_more_requests = true;
    }

    /// Writes response bytes into `buf` and returns how many. Responses are
    /// generated as they are written: a `/bytes/N` body of any size needs no
    /// more memory than `buf`.
    pub fn poll_write(&mut self, buf: &mut [u8]) -> usize {
        self.pump_proxy();
        let mut n = 0;
        while n < buf.len() {
            if self.out_pos < self.out.len() {
                let k = (self.out.len() - self.out_pos).min(buf.len() - n);
                buf[n..n + k].copy_from_slice(&self.out[self.out_pos..self.out_pos + k]);
                n += k;
                self.out_pos += k;
                if self.out_pos == self.out.len() {
                    self.out.clear();
                    self.out_pos = 0;
                    self.queued = 0;
                }
                continue;
            }
            match self.active {
                Active::None => break,
                Active::Proxy { .. } => {
                    if !self.pump_proxy() {
                        break;
                    }
                }
                Active::Bytes { remaining, phase } => {
                    let want = ((buf.len() - n) as u64).min(remaining) as usize;
                    let mut off = phase as usize;
                    let mut done = 0;
                    while done < want {
                        let k = (want - done).min(PATTERN_LEN - off);
                        buf[n + done..n + done + k].copy_from_slice(&PATTERN[off..off + k]);
                        done += k;
                        off = (off + k) % 251;
                    }
                    n += done;
                    let remaining = remaining - done as u64;
                    self.active = if remaining == 0 {
                        Active::None
                    } else {
                        Active::Bytes {
                            remaining,
                            phase: off as u8,
                        }
                    };
                }
                Active::Echo {
                    chunked,
                    head_sent,
                    chunk_left,
                    ..
                } => {
                    if !head_sent {
                        break;
                    }
                    let avail = self.echo.len() - self.echo_pos;
                    if chunked && chunk_left == 0 {
                        if avail == 0 {
                            break;
                        }
                        push_hex(&mut self.out, avail as u64);
                        self.out.extend_from_slice(b"\r\n");
                        self.set_chunk_left(avail);
                        continue;
                    }
                    let limit = if chunked { chunk_left } else { avail };
                    let k = limit.min(avail).min(buf.len() - n);
                    if k == 0 {
                        break;
                    }
                    buf[n..n + k].copy_from_slice(&self.echo[self.echo_pos..self.echo_pos + k]);
                    n += k;
                    self.echo_pos += k;
                    if self.echo_pos == self.echo.len() {
                        self.echo.clear();
                        self.echo_pos = 0;
                    }
                    if chunked {
                        self.set_chunk_left(chunk_left - k);
                        if chunk_left == k {
                            self.out.extend_from_slice(b"\r\n");
                        }
                    }
                    self.settle();
                }
            }
        }
        self.settle();
        self.stats.bytes_out += n as u64;
        n
    }

    /// Ends an echo response whose body has been read and written: needs no
    /// room in the caller's buffer, so it is done as soon as possible (a
    /// `poll_write` that returns 0 must not be the one that unblocks reads).
    fn settle(&mut self) {
        if let Active::Echo {
            chunked,
            head_sent: true,
            input_done: true,
            chunk_left: 0,
            ..
        } = self.active
        {
            if self.echo_pos == self.echo.len() {
                if chunked {
                    self.out.extend_from_slice(b"0\r\n\r\n");
                }
                self.active = Active::None;
            }
        }
    }

    fn set_chunk_left(&mut self, left: usize) {
        if let Active::Echo { chunk_left, .. } = &mut self.active {
            *chunk_left = left;
        }
    }

    /// Whether `on_read` would take bytes now. False while earlier responses
    /// still have to be written (backpressure) and after EOF.
    pub fn wants_read(&self) -> bool {
        if self.eof {
            return false;
        }
        match self.phase {
            Phase::Head => self.no_more_requests || self.can_start_request(),
            Phase::Body if self.proxy_sink => self.proxy_body.len() < PROXY_BODY_BUFFER,
            Phase::Body => {
                !self.echo_sink || self.echo.len() - self.echo_pos < self.lim.echo_buffer_bytes
            }
        }
    }

    /// Whether `poll_write` has bytes to give now.
    pub fn wants_write(&self) -> bool {
        if self.out_pos < self.out.len() {
            return true;
        }
        match self.active {
            Active::None => false,
            Active::Proxy { ex, .. } => {
                !self.proxy_body.is_empty()
                    || self.proxy.as_ref().is_some_and(|p| p.response_ready(ex))
            }
            Active::Bytes { .. } => true,
            Active::Echo {
                head_sent,
                input_done,
                chunk_left,
                ..
            } => head_sent && (input_done || chunk_left > 0 || self.echo_pos < self.echo.len()),
        }
    }

    /// The connection is done: close it (send FIN). True once the last
    /// response is written after `Connection: close`, an HTTP/1.0 request
    /// without keep-alive, an error response, EOF or a timeout.
    pub fn should_close(&self) -> bool {
        self.no_more_requests
            && self.phase == Phase::Head
            && self.active == Active::None
            && self.out_pos == self.out.len()
    }

    /// Between requests with nothing buffered and nothing to write: the
    /// keep-alive idle timer may run.
    pub fn is_idle(&self) -> bool {
        self.phase == Phase::Head
            && self.inbuf.is_empty()
            && self.active == Active::None
            && self.out_pos == self.out.len()
            && !self.no_more_requests
    }

    /// Part of a request head has arrived, not all of it: the head deadline
    /// runs.
    pub fn head_pending(&self) -> bool {
        self.phase == Phase::Head && !self.inbuf.is_empty() && !self.no_more_requests
    }

    /// Read no further request (a drain): the connection closes once the
    /// requests already read are answered.
    pub fn stop_taking_requests(&mut self) {
        if self.phase == Phase::Head {
            self.clear_inbuf();
        }
        self.no_more_requests = true;
    }

    /// Counters of this connection.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Returns the counters and zeroes them (for summing per loop).
    pub fn take_stats(&mut self) -> Stats {
        std::mem::take(&mut self.stats)
    }

    /// Heap bytes held by this connection's buffers, plus its own size.
    pub fn memory_usage(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.inbuf.capacity()
            + self.out.capacity()
            + self.echo.capacity()
            + self.proxy_body.capacity()
    }

    /// Frees the buffers if the connection is idle (for connections that
    /// stay idle long; the next request allocates them again).
    pub fn release_memory(&mut self) {
        if self.is_idle() || self.should_close() {
            self.inbuf = Vec::new();
            self.out = Vec::new();
            self.out_pos = 0;
            self.echo = Vec::new();
            self.echo_pos = 0;
            self.proxy_body = Vec::new();
        }
    }

    fn can_start_request(&self) -> bool {
        self.active == Active::None
            && !self.no_more_requests
            && self.out.len() - self.out_pos < self.lim.out_buffer_bytes
            && self.queued < self.lim.pipeline_depth
    }

    /// Reads (part of) a request head from `data`; returns bytes taken.
    fn read_head(&mut self, data: &[u8]) -> usize {
        let max = self.lim.max_header_bytes;
        if self.inbuf.is_empty() {
            // RFC 9112 §2.2: ignore empty lines before a request line.
            let mut skip = 0;
            loop {
                match data[skip..] {
                    [b'\n', ..] => skip += 1,
                    [b'\r', b'\n', ..] => skip += 2,
                    _ => break,
                }
            }
            if skip > 0 {
                return skip;
            }
            let window = &data[..data.len().min(max)];
            match head::parse(window, &self.lim) {
                Parsed::Complete(n, h) => {
                    self.begin(h, &window[..n]);
                    n
                }
                Parsed::Invalid(status) => {
                    self.reject(status, true);
                    data.len()
                }
                Parsed::Partial => {
                    let line_end = window.iter().position(|&b| b == b'\n');
                    if let Some(status) = self.partial_limit(window.len(), line_end) {
                        self.reject(status, true);
                        return data.len();
                    }
                    self.inbuf.extend_from_slice(window);
                    self.inbuf_line_end = line_end;
                    window.len()
                }
            }
        } else {
            let old = self.inbuf.len();
            let take = data.len().min(max - old);
            let new = &data[..take];
            self.inbuf.extend_from_slice(new);
            // Parse again only once a line ends (keeps byte-at-a-time
            // senders from costing a parse per byte).
            let lf = new.iter().position(|&b| b == b'\n');
            if self.inbuf_line_end.is_none() {
                self.inbuf_line_end = lf.map(|i| old + i);
            }
            let parsed = if lf.is_some() {
                head::parse(&self.inbuf, &self.lim)
            } else {
                Parsed::Partial
            };
            match parsed {
                Parsed::Complete(n, h) => {
                    debug_assert!(n > old);
                    let raw = std::mem::take(&mut self.inbuf);
                    self.clear_inbuf();
                    self.begin(h, &raw[..n]);
                    // Keep the buffer's capacity for the next head.
                    self.inbuf = raw;
                    self.inbuf.clear();
                    n.saturating_sub(old).max(1)
                }
                Parsed::Invalid(status) => {
                    self.clear_inbuf();
                    self.reject(status, true);
                    data.len()
                }
                Parsed::Partial => {
                    if let Some(status) = self.partial_limit(self.inbuf.len(), self.inbuf_line_end)
                    {
                        self.clear_inbuf();
                        self.reject(status, true);
                        return data.len();
                    }
                    take
                }
            }
        }
    }

    fn clear_inbuf(&mut self) {
        self.inbuf.clear();
        self.inbuf_line_end = None;
    }

    /// For an incomplete head of `len` bytes whose first LF is at
    /// `line_end`: the error status if it already breaks a limit.
    fn partial_limit(&self, len: usize, line_end: Option<usize>) -> Option<u16> {
        match line_end {
            None if len > self.lim.max_request_line_bytes => Some(414),
            Some(i) if i > self.lim.max_request_line_bytes => Some(414),
            None if len >= self.lim.max_header_bytes => Some(414),
            _ if len >= self.lim.max_header_bytes => Some(431),
            _ => None,
        }
    }

    /// Starts answering a complete request head.
    fn begin(&mut self, h: Result<Head, u16>, raw: &[u8]) {
        self.stats.requests += 1;
        let h = match h {
            Ok(h) => h,
            Err(status) => {
                self.reject(status, false);
                return;
            }
        };
        if self.proxy.is_some() && self.begin_proxied(&h, raw) {
            return;
        }
        let close = !h.keep_alive;
        let head_only = h.method == Method::Head;
        let has_body = h.body != BodyKind::None;
        match (h.route, h.method) {
            (Route::Echo, Method::Post) => {
                if let BodyKind::Length(n) = h.body {
                    if n > self.lim.max_body_bytes {
                        self.reject_head(413, false, head_only);
                        return;
                    }
                }
                if h.expect_continue && has_body {
                    self.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                    self.stats.count_status(100);
                }
                if close {
                    self.no_more_requests = true;
                }
                self.active = Active::Echo {
                    chunked: h.body == BodyKind::Chunked,
                    length: match h.body {
                        BodyKind::Length(n) => n,
                        _ => 0,
                    },
                    head_sent: false,
                    input_done: false,
                    chunk_left: 0,
                    close,
                    http10: h.http10,
                };
                self.echo_sink = true;
                self.start_body(&h);
                if !has_body {
                    self.send_echo_head();
                    self.end_echo_input();
                }
                return;
            }
            (Route::Health, Method::Get | Method::Head) => {
                self.response_head(200, Some(3), b"text/plain", b"", close, h.http10);
                if !head_only {
                    self.out.extend_from_slice(b"ok\n");
                }
            }
            (Route::Bytes(n), Method::Get | Method::Head) => {
                self.response_head(
                    200,
                    Some(n),
                    b"application/octet-stream",
                    b"",
                    close,
                    h.http10,
                );
                if !head_only && n > 0 {
                    self.active = Active::Bytes {
                        remaining: n,
                        phase: 0,
                    };
                }
            }
            (Route::BadBytes, Method::Get | Method::Head) => {
                self.reject_head(400, false, head_only);
                return;
            }
            (Route::Health | Route::Bytes(_) | Route::BadBytes, _) => {
                self.reject_allow(b"Allow: GET, HEAD\r\n", head_only);
                return;
            }
            (Route::Echo, _) => {
                self.reject_allow(b"Allow: POST\r\n", head_only);
                return;
            }
            (Route::NotFound, _) => {
                self.reject_head(404, false, head_only);
                return;
            }
        }
        // A 2xx that does not read the body: drop the body, unless the
        // client waits for 100-continue (then it may or may not send it:
        // close instead of guessing).
        if close || (has_body && h.expect_continue) {
            self.no_more_requests = true;
        } else if has_body {
            self.echo_sink = false;
            self.start_body(&h);
        }
    }

    fn start_body(&mut self, h: &Head) {
        self.body_seen = 0;
        match h.body {
            BodyKind::None => {}
            BodyKind::Length(n) => {
                self.body = BodyReader::Length(n);
                self.phase = Phase::Body;
            }
            BodyKind::Chunked => {
                self.chunk_tail.clear();
                self.proxy_trailers = None;
                self.body = BodyReader::Chunked(ChunkedDecoder::new(self.lim.max_header_bytes));
                self.phase = Phase::Body;
            }
        }
    }

    /// Reads request body bytes; returns bytes taken.
    fn read_body(&mut self, data: &[u8]) -> usize {
        let room = if self.proxy_sink {
            PROXY_BODY_BUFFER.saturating_sub(self.proxy_body.len())
        } else if self.echo_sink {
            self.lim
                .echo_buffer_bytes
                .saturating_sub(self.echo.len() - self.echo_pos)
        } else {
            usize::MAX
        };
        match self.body {
            BodyReader::Length(remaining) => {
                let n = (data.len().min(room) as u64).min(remaining) as usize;
                if n == 0 {
                    return 0;
                }
                self.body_data(&data[..n]);
                let remaining = remaining - n as u64;
                self.body = BodyReader::Length(remaining);
                if remaining == 0 {
                    self.end_body();
                }
                n
            }
            BodyReader::Chunked(mut dec) => match dec.advance(data, room) {
                Ok(p) => {
                    self.body = BodyReader::Chunked(dec);
                    if !p.data.is_empty() {
                        let seen = self.body_seen + p.data.len() as u64;
                        if self.echo_sink && seen > self.lim.max_body_bytes {
                            self.body_error(413);
                            return data.len();
                        }
                        self.body_data(&data[p.data.clone()]);
                    }
                    if self.proxy_sink
                        && !self.keep_chunk_tail(&data[..p.consumed], !p.data.is_empty(), p.done)
                    {
                        // Zero-padded size lines without end.
                        self.body_error(400);
                        return data.len();
                    }
                    if p.done {
                        self.end_body();
                    }
                    p.consumed
                }
                Err(e) => {
                    self.body_error(match e {
                        ChunkError::Malformed => 400,
                        ChunkError::TrailerTooLarge => 431,
                    });
                    data.len()
                }
            },
        }
    }

    fn body_data(&mut self, bytes: &[u8]) {
        self.body_seen += bytes.len() as u64;
        self.stats.body_bytes_in += bytes.len() as u64;
        if self.proxy_sink {
            self.proxy_body.extend_from_slice(bytes);
            self.flush_proxy_body();
            return;
        }
        if self.echo_sink {
            if let Active::Echo {
                head_sent: false, ..
            } = self.active
            {
                self.send_echo_head();
            }
            if self.echo_pos == self.echo.len() {
                self.echo.clear();
                self.echo_pos = 0;
            } else if self.echo_pos > 0
                && self.echo.len() + bytes.len() > self.lim.echo_buffer_bytes
            {
                self.echo.drain(..self.echo_pos);
                self.echo_pos = 0;
            }
            self.echo.extend_from_slice(bytes);
        }
    }

    fn end_body(&mut self) {
        self.phase = Phase::Head;
        if self.proxy_sink {
            self.proxy_sink = false;
            if let Active::Proxy { body, .. } = &mut self.active {
                *body = ReqBody::Read;
            }
            self.flush_proxy_body();
            return;
        }
        if self.echo_sink {
            self.echo_sink = false;
            if let Active::Echo {
                head_sent: false, ..
            } = self.active
            {
                self.send_echo_head();
            }
            self.end_echo_input();
        }
    }

    fn end_echo_input(&mut self) {
        if let Active::Echo { input_done, .. } = &mut self.active {
            *input_done = true;
        }
        self.settle();
    }

    fn send_echo_head(&mut self) {
        if let Active::Echo {
            chunked,
            length,
            head_sent,
            close,
            http10,
            ..
        } = self.active
        {
            if head_sent {
                return;
            }
            let len = if chunked { None } else { Some(length) };
            // HTTP/1.0 never gets here with a chunked body.
            self.response_head(200, len, b"application/octet-stream", b"", close, http10);
            if let Active::Echo { head_sent, .. } = &mut self.active {
                *head_sent = true;
            }
        }
    }

    /// The request body is bad (or over the echo limit).
    fn body_error(&mut self, status: u16) {
        self.stats.bad_requests += 1;
        self.phase = Phase::Head;
        if self.proxy_sink {
            self.proxy_abort();
            if let Active::Proxy {
                resp: ProxyResp::AwaitHead,
                ..
            } = self.active
            {
                self.active = Active::None;
                self.error_response(status, b"", false);
            }
        } else if self.echo_sink {
            self.echo_sink = false;
            if let Active::Echo {
                head_sent: true, ..
            } = self.active
            {
                self.abort();
            } else {
                self.active = Active::None;
                self.error_response(status, b"", false);
            }
        }
        self.no_more_requests = true;
    }

    /// Cuts the echo response short: what is already in `out` is written,
    /// then the connection closes.
    fn abort(&mut self) {
        self.stats.aborted += 1;
        self.active = Active::None;
        self.echo.clear();
        self.echo_pos = 0;
        self.no_more_requests = true;
    }

    /// Refuses a request: error response with `Connection: close`.
    fn reject(&mut self, status: u16, count_request: bool) {
        if count_request {
            self.stats.requests += 1;
        }
        self.reject_head(status, true, false);
    }

    fn reject_head(&mut self, status: u16, bad: bool, head_only: bool) {
        if bad || matches!(status, 400 | 413 | 414 | 417 | 431 | 501 | 505) {
            self.stats.bad_requests += 1;
        }
        self.error_response(status, b"", head_only);
        self.no_more_requests = true;
    }

    fn reject_allow(&mut self, allow: &[u8], head_only: bool) {
        self.error_response(405, allow, head_only);
        self.no_more_requests = true;
    }

    fn error_response(&mut self, status: u16, extra: &[u8], head_only: bool) {
        let reason = reason(status);
        let body_len = 3 + 1 + reason.len() + 1;
        self.response_head(
            status,
            Some(body_len as u64),
            b"text/plain",
            extra,
            true,
            false,
        );
        if !head_only {
            push_dec(&mut self.out, u64::from(status));
            self.out.push(b' ');
            self.out.extend_from_slice(reason);
            self.out.push(b'\n');
        }
    }

    // ---- proxied requests --------------------------------------------------

    /// Hands the request to the proxy if a route matches; false otherwise.
    fn begin_proxied(&mut self, h: &Head, raw: &[u8]) -> bool {
        let Some(proxy) = self.proxy.clone() else {
            return false;
        };
        let mut slots = [httparse::EMPTY_HEADER; crate::config::MAX_HEADERS_CAP];
        let mut req = httparse::Request::new(&mut slots[..self.lim.max_headers]);
        if !matches!(req.parse(raw), Ok(httparse::Status::Complete(_))) {
            return false;
        }
        let (Some(method), Some(target)) = (req.method, req.path) else {
            return false;
        };
        let host = req
            .headers
            .iter()
            .find(|x| x.name.eq_ignore_ascii_case("host"))
            .map(|x| x.value);
        if !target.starts_with('/') || !proxy.matches(host, method.as_bytes(), target.as_bytes()) {
            return false;
        }
        // Fields named by Connection are hop-by-hop too (RFC 9110 §7.6.1).
        let named: Vec<&[u8]> = req
            .headers
            .iter()
            .filter(|x| x.name.eq_ignore_ascii_case("connection"))
            .flat_map(|x| crate::client::connection_tokens(x.value))
            .collect();
        let mut headers = Headers::with_capacity(req.headers.len());
        for x in req.headers.iter() {
            let n = x.name.as_bytes();
            if !crate::client::is_hop_by_hop(n)
                && !n.eq_ignore_ascii_case(b"host")
                && !n.eq_ignore_ascii_case(b"content-length")
                && !n.eq_ignore_ascii_case(b"expect")
                && !named.iter().any(|c| n.eq_ignore_ascii_case(c))
            {
                sluice_app::proxy::append(&mut headers, n, x.value);
            }
        }
        let body = match h.body {
            BodyKind::None => BodyLen::None,
            BodyKind::Length(0) => BodyLen::None,
            BodyKind::Length(n) => BodyLen::Length(n),
            BodyKind::Chunked => BodyLen::Streamed,
        };
        let request = ProxyRequest {
            method: method.as_bytes().to_vec(),
            path: target.as_bytes().to_vec(),
            authority: host.map(<[u8]>::to_vec),
            headers,
            body,
            client: self.peer.client,
            tls: self.peer.tls,
            version: if h.http10 { 10 } else { 11 },
            spiffe_id: self.peer.spiffe_id.clone(),
            tls_handshake: self.peer.tls_handshake,
        };
        let ex = proxy.start(request, self.peer.wake);
        let has_body = body != BodyLen::None;
        if h.expect_continue && has_body {
            // The proxy reads the body whatever the backend would say.
            self.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            self.stats.count_status(100);
        }
        self.active = Active::Proxy {
            ex,
            resp: ProxyResp::AwaitHead,
            close: !h.keep_alive,
            http10: h.http10,
            head_only: h.method == Method::Head,
            body: if has_body {
                ReqBody::Reading
            } else {
                ReqBody::Ended
            },
        };
        if !h.keep_alive {
            self.no_more_requests = true;
        }
        if has_body {
            self.proxy_sink = true;
            self.start_body(h);
        }
        true
    }

    /// Keeps the framing after a proxied chunked body's last data, and at
    /// the body's end reads its trailers for the proxy. The decoder has
    /// validated the bytes and bounded the trailer section and a size
    /// line's extensions; false if the framing since the last data is
    /// longer than those allow (leading zeros).
    fn keep_chunk_tail(&mut self, consumed: &[u8], had_data: bool, done: bool) -> bool {
        if had_data {
            // The framing before the data was a size line.
            self.chunk_tail.clear();
            return true;
        }
        let bound = self.lim.max_header_bytes + crate::chunked::MAX_CHUNK_EXT as usize + 256;
        if self.chunk_tail.len() + consumed.len() > bound {
            return false;
        }
        self.chunk_tail.extend_from_slice(consumed);
        if done {
            let mut trailers = Headers::new();
            for (n, v) in crate::client::trailer_fields(&self.chunk_tail) {
                sluice_app::proxy::append(&mut trailers, n, v);
            }
            self.proxy_trailers = (!trailers.is_empty()).then_some(trailers);
            self.chunk_tail = Vec::new();
        }
        true
    }

    /// Hands buffered request body bytes to the proxy, and the body's end
    /// once all of it went.
    fn flush_proxy_body(&mut self) {
        let (Active::Proxy { ex, body, .. }, Some(p)) = (self.active, &self.proxy) else {
            self.proxy_body.clear();
            return;
        };
        if !self.proxy_body.is_empty() {
            let n = p.send_body(ex, &self.proxy_body);
            self.proxy_body.drain(..n);
        }
        if body == ReqBody::Read && self.proxy_body.is_empty() {
            p.end_body(ex, self.proxy_trailers.take());
            if let Active::Proxy { body, .. } = &mut self.active {
                *body = ReqBody::Ended;
            }
        }
    }

    /// Moves the proxied response into `out` (within its bound); true if
    /// anything moved.
    fn pump_proxy(&mut self) -> bool {
        if !matches!(self.active, Active::Proxy { .. }) {
            return false;
        }
        self.flush_proxy_body();
        let Some(p) = self.proxy.clone() else {
            return false;
        };
        let mut moved = false;
        while let Active::Proxy {
            ex,
            resp,
            close,
            http10,
            head_only,
            ..
        } = self.active
        {
            if self.out.len() - self.out_pos >= PROXY_OUT_BUFFER {
                break;
            }
            let Some(part) = p.poll_response(ex) else {
                break;
            };
            moved = true;
            match (part, resp) {
                (
                    Ok(ResponsePart::Head {
                        status,
                        headers,
                        body,
                    }),
                    ProxyResp::AwaitHead,
                ) => {
                    let chunked =
                        self.write_proxy_head(status, &headers, body, close, http10, head_only);
                    if let Active::Proxy { resp, .. } = &mut self.active {
                        *resp = ProxyResp::Body { chunked };
                    }
                }
                (Ok(ResponsePart::Data(d)), ProxyResp::Body { chunked }) => {
                    if head_only || d.is_empty() {
                        continue;
                    }
                    if chunked {
                        push_hex(&mut self.out, d.len() as u64);
                        self.out.extend_from_slice(b"\r\n");
                        self.out.extend_from_slice(&d);
                        self.out.extend_from_slice(b"\r\n");
                    } else {
                        self.out.extend_from_slice(&d);
                    }
                }
                (Ok(ResponsePart::Trailers(t)), ProxyResp::Body { chunked: true }) => {
                    if !head_only {
                        self.out.extend_from_slice(b"0\r\n");
                        write_fields(&mut self.out, &t);
                        self.out.extend_from_slice(b"\r\n");
                    }
                    if let Active::Proxy { resp, .. } = &mut self.active {
                        *resp = ProxyResp::Body { chunked: false };
                    }
                }
                (Ok(ResponsePart::Trailers(_)), _) => {}
                (Ok(ResponsePart::End), ProxyResp::Body { chunked }) => {
                    if chunked && !head_only {
                        self.out.extend_from_slice(b"0\r\n\r\n");
                    }
                    self.active = Active::None;
                    if close {
                        self.no_more_requests = true;
                    }
                }
                (Err(e), ProxyResp::AwaitHead) => {
                    self.proxy_sink = false;
                    self.proxy_body.clear();
                    self.active = Active::None;
                    // The request body may still be arriving: do not read
                    // it as a request.
                    self.phase = Phase::Head;
                    self.error_response(e.status(), b"", head_only);
                    self.no_more_requests = true;
                }
                (Err(_), ProxyResp::Body { .. }) => {
                    // The backend failed mid-response: cut the client off
                    // so it sees the response is incomplete.
                    self.abort();
                }
                (Ok(_), _) => {
                    // Out of order (a proxy bug): end the connection.
                    p.cancel(ex);
                    self.abort();
                }
            }
        }
        moved
    }

    /// Writes a proxied response head to `out`; returns whether the body
    /// is chunked downstream.
    fn write_proxy_head(
        &mut self,
        status: u16,
        headers: &Headers,
        body: BodyLen,
        close: bool,
        http10: bool,
        head_only: bool,
    ) -> bool {
        self.stats.count_status(status);
        self.queued += 1;
        let no_body = matches!(status, 100..=199 | 204 | 304);
        let (length, chunked, close) = match body {
            _ if no_body => (None, false, close),
            BodyLen::None => (Some(0), false, close),
            BodyLen::Length(n) => (Some(n), false, close),
            // HTTP/1.0 has no chunked: the body ends with the connection.
            BodyLen::Streamed if http10 => (None, false, true),
            BodyLen::Streamed => (None, !head_only, close),
        };
        let o = &mut self.out;
        o.extend_from_slice(b"HTTP/1.1 ");
        push_dec(o, u64::from(status));
        o.push(b' ');
        o.extend_from_slice(reason(status));
        o.extend_from_slice(b"\r\n");
        write_fields(o, headers);
        if let Some(n) = length {
            o.extend_from_slice(b"Content-Length: ");
            push_dec(o, n);
            o.extend_from_slice(b"\r\n");
        } else if chunked || (head_only && body == BodyLen::Streamed && !http10) {
            o.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
        }
        if close {
            o.extend_from_slice(b"Connection: close\r\n");
            self.no_more_requests = true;
        } else if http10 {
            o.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        o.extend_from_slice(b"\r\n");
        chunked
    }

    /// Gives up on the proxied exchange: the backend connection is reset if
    /// the response was still coming; a response already started is cut.
    fn proxy_abort(&mut self) {
        self.proxy_sink = false;
        self.proxy_body.clear();
        if let (Active::Proxy { ex, resp, .. }, Some(p)) = (self.active, &self.proxy) {
            p.cancel(ex);
            if resp != ProxyResp::AwaitHead {
                self.abort();
            }
        }
    }

    /// Appends a response head to `out`.
    fn response_head(
        &mut self,
        status: u16,
        content_length: Option<u64>,
        content_type: &[u8],
        extra: &[u8],
        close: bool,
        http10_keep_alive: bool,
    ) {
        self.stats.count_status(status);
        self.queued += 1;
        let o = &mut self.out;
        o.extend_from_slice(b"HTTP/1.1 ");
        push_dec(o, u64::from(status));
        o.push(b' ');
        o.extend_from_slice(reason(status));
        o.extend_from_slice(b"\r\n");
        if !self.server.is_empty() {
            o.extend_from_slice(b"Server: ");
            o.extend_from_slice(self.server.as_bytes());
            o.extend_from_slice(b"\r\n");
        }
        if let Some(d) = self.date.get() {
            o.extend_from_slice(b"Date: ");
            o.extend_from_slice(&d);
            o.extend_from_slice(b"\r\n");
        }
        o.extend_from_slice(b"Content-Type: ");
        o.extend_from_slice(content_type);
        o.extend_from_slice(b"\r\n");
        match content_length {
            Some(n) => {
                o.extend_from_slice(b"Content-Length: ");
                push_dec(o, n);
                o.extend_from_slice(b"\r\n");
            }
            None => o.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        }
        o.extend_from_slice(extra);
        if close {
            o.extend_from_slice(b"Connection: close\r\n");
        } else if http10_keep_alive {
            o.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        o.extend_from_slice(b"\r\n");
    }
}

fn reason(status: u16) -> &'static [u8] {
    match status {
        100 => b"Continue",
        200 => b"OK",
        201 => b"Created",
        202 => b"Accepted",
        204 => b"No Content",
        206 => b"Partial Content",
        301 => b"Moved Permanently",
        302 => b"Found",
        303 => b"See Other",
        304 => b"Not Modified",
        307 => b"Temporary Redirect",
        308 => b"Permanent Redirect",
        400 => b"Bad Request",
        401 => b"Unauthorized",
        403 => b"Forbidden",
        404 => b"Not Found",
        405 => b"Method Not Allowed",
        408 => b"Request Timeout",
        409 => b"Conflict",
        413 => b"Content Too Large",
        414 => b"URI Too Long",
        417 => b"Expectation Failed",
        429 => b"Too Many Requests",
        431 => b"Request Header Fields Too Large",
        500 => b"Internal Server Error",
        501 => b"Not Implemented",
        502 => b"Bad Gateway",
        503 => b"Service Unavailable",
        504 => b"Gateway Timeout",
        505 => b"HTTP Version Not Supported",
        _ => b"Error",
    }
}

fn push_dec(out: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

/// `name: value` lines of `fields` (names as HTTP/2 and `HeaderMap` keep
/// them: lowercase, which HTTP/1.1 reads case-insensitively).
fn write_fields(o: &mut Vec<u8>, fields: &Headers) {
    for (n, v) in fields {
        o.extend_from_slice(n.as_str().as_bytes());
        o.extend_from_slice(b": ");
        o.extend_from_slice(v.as_bytes());
        o.extend_from_slice(b"\r\n");
    }
}

fn push_hex(out: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 16];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b"0123456789abcdef"[(v & 15) as usize];
        v >>= 4;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}
