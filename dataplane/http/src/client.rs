//! One upstream HTTP/1.1 client connection, sans IO: the reverse proxy
//! queues a request ([`ClientConn::send_request`], [`ClientConn::write_body`],
//! [`ClientConn::finish_body`]), drains its bytes ([`ClientConn::poll_write`])
//! and feeds back what the backend sent ([`ClientConn::on_read`]), getting
//! the response as [`ClientEvent`]s. One request at a time (no pipelining):
//! a pooled keep-alive connection takes the next request once
//! [`ClientConn::reusable`].
//!
//! Response framing follows RFC 9112 §6.3. Body bytes go straight from the
//! caller's input to the callback; only a response head that arrives in
//! pieces is buffered.

use std::fmt;
use std::mem::MaybeUninit;

use crate::chunked::{ChunkError, ChunkedDecoder, MAX_CHUNK_EXT};
use crate::config::MAX_HEADERS_CAP;
use sluice_app::routes::parse_decimal;

/// How a request or response body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body (and none announced).
    None,
    /// `Content-Length` bytes. `Length(0)` differs from `None` in that the
    /// length is announced (a forwarded 200 needs it to be delimited).
    Length(u64),
    /// The chunked transfer coding.
    Chunked,
    /// Responses only: the body runs until the server closes.
    UntilClose,
}

/// Header or trailer fields as received (order and duplicates kept), names
/// and values in one buffer.
#[derive(Clone, Debug, Default)]
pub struct Fields {
    buf: Vec<u8>,
    /// Per field: start of its name, end of its name, end of its value (the
    /// value follows the name in `buf`).
    spans: Vec<[u32; 3]>,
}

impl Fields {
    /// The (name, value) pairs, in the order received.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.spans.iter().map(|&[a, b, c]| {
            (
                &self.buf[a as usize..b as usize],
                &self.buf[b as usize..c as usize],
            )
        })
    }

    /// The value of the first field called `name` (case-insensitive).
    pub fn get(&self, name: &[u8]) -> Option<&[u8]> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    fn clear(&mut self) {
        self.buf.clear();
        self.spans.clear();
    }

    /// Appends a field. Offsets fit u32: heads and trailers are bounded by
    /// limits clamped well below 4 GiB.
    fn push(&mut self, name: &[u8], value: &[u8]) {
        let a = self.buf.len() as u32;
        self.buf.extend_from_slice(name);
        let b = self.buf.len() as u32;
        self.buf.extend_from_slice(value);
        self.spans.push([a, b, self.buf.len() as u32]);
    }

    fn heap_bytes(&self) -> usize {
        self.buf.capacity() + self.spans.capacity() * std::mem::size_of::<[u32; 3]>()
    }
}

/// A final (non-1xx) response head.
#[derive(Clone, Debug)]
pub struct ResponseHead {
    pub status: u16,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version_minor: u8,
    /// How the body is delimited, given the request method (RFC 9112 §6.3).
    pub framing: BodyFraming,
    /// The server keeps the connection open after this response (1.1
    /// without `Connection: close`, or 1.0 with `Connection: keep-alive`,
    /// and a body not delimited by the close).
    pub keep_alive: bool,
    /// `Keep-Alive: timeout=N` (seconds), if the server sent it.
    pub keep_alive_timeout: Option<u32>,
    /// The header fields, as received; the reason phrase is stored in
    /// front of them in `fields.buf`.
    fields: Fields,
    reason_len: u32,
}

impl ResponseHead {
    fn new() -> Self {
        ResponseHead {
            status: 0,
            version_minor: 1,
            framing: BodyFraming::None,
            keep_alive: false,
            keep_alive_timeout: None,
            fields: Fields::default(),
            reason_len: 0,
        }
    }

    /// The header fields, as received (nothing removed: the proxy filters
    /// hop-by-hop fields itself, see [`is_hop_by_hop`]).
    pub fn headers(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.fields.iter()
    }

    /// The value of the first header field called `name` (case-insensitive).
    pub fn header(&self, name: &[u8]) -> Option<&[u8]> {
        self.fields.get(name)
    }

    /// The header fields.
    pub fn fields(&self) -> &Fields {
        &self.fields
    }

    /// The reason phrase (empty if absent or not ASCII).
    pub fn reason(&self) -> &[u8] {
        &self.fields.buf[..self.reason_len as usize]
    }
}

/// What [`ClientConn::on_read`] found in the response stream.
#[derive(Clone, Copy, Debug)]
pub enum ClientEvent<'a> {
    /// A 1xx interim response (not 101): forward or ignore it; the final
    /// head follows.
    Informational(u16),
    /// The final response head.
    Head(&'a ResponseHead),
    /// Decoded body bytes (chunk framing removed).
    Body(&'a [u8]),
    /// The trailer fields of a chunked response (only if there are some).
    Trailers(&'a Fields),
    /// The response is complete.
    End,
}

/// Why a client connection failed. After an error from `on_read` or
/// `on_read_eof` the connection takes no further request: close it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// The response head is not HTTP/1.x (includes obs-fold and status codes
    /// outside 100..=599).
    MalformedHead,
    /// The response head is over `max_head_bytes` or `max_headers`.
    HeadTooLarge,
    /// Content-Length invalid or conflicting, or Transfer-Encoding that
    /// cannot be trusted (with Content-Length, in HTTP/1.0, chunked twice).
    BadFraming,
    /// Bad chunked framing in the response body.
    BadChunk,
    /// The trailer section is over `max_trailer_bytes`.
    TrailersTooLarge,
    /// A 101 response: upgrades are never requested upstream.
    Upgrade,
    /// The server closed before the response ended.
    UnexpectedEof,
    /// Response bytes with no request to answer (before the request left,
    /// or after its response ended).
    Unsolicited,
    /// `send_request` while a request is outstanding or on a connection
    /// that cannot take another one.
    NotReusable,
    /// `send_request` with [`BodyFraming::UntilClose`] (responses only).
    BadRequestFraming,
    /// `finish_body` before all of a Content-Length request body was
    /// written: the server still waits for it, so the connection is dead.
    BodyIncomplete,
    /// `on_read` after an error or after EOF.
    Closed,
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClientError::MalformedHead => "malformed response head",
            ClientError::HeadTooLarge => "response head too large",
            ClientError::BadFraming => "invalid response body framing",
            ClientError::BadChunk => "malformed chunked response body",
            ClientError::TrailersTooLarge => "response trailers too large",
            ClientError::Upgrade => "unexpected 101 Switching Protocols",
            ClientError::UnexpectedEof => "server closed before the response ended",
            ClientError::Unsolicited => "response bytes with no request outstanding",
            ClientError::NotReusable => "connection cannot take a request now",
            ClientError::BadRequestFraming => "a request body cannot be delimited by close",
            ClientError::BodyIncomplete => "request body shorter than its Content-Length",
            ClientError::Closed => "connection already failed or closed",
        })
    }
}

impl std::error::Error for ClientError {}

/// Limits of one client connection.
#[derive(Clone, Copy, Debug)]
pub struct ClientLimits {
    /// Largest response head (status line and header fields).
    pub max_head_bytes: usize,
    /// Most header fields in a response head (at most 256).
    pub max_headers: usize,
    /// Largest trailer section of a chunked response.
    pub max_trailer_bytes: usize,
    /// Request bytes buffered ahead of `poll_write` past which `write_body`
    /// takes no more (backpressure).
    pub body_buffer: usize,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            max_head_bytes: 64 * 1024,
            max_headers: 128,
            max_trailer_bytes: 16 * 1024,
            body_buffer: 64 * 1024,
        }
    }
}

impl ClientLimits {
    /// Clamped to sane values (offsets in [`Fields`] are u32).
    fn clamped(self) -> Self {
        ClientLimits {
            max_head_bytes: self.max_head_bytes.clamp(64, 1 << 30),
            max_headers: self.max_headers.clamp(1, MAX_HEADERS_CAP),
            max_trailer_bytes: self.max_trailer_bytes.clamp(2, 1 << 30),
            // Room for a chunk header and its data.
            body_buffer: self.body_buffer.max(64),
        }
    }
}

/// What the response-reading side expects.
#[derive(Clone, Copy, Debug)]
enum Reading {
    /// No response expected: every byte is unsolicited.
    Idle,
    /// A response head (also the final one after a 1xx).
    Head,
    /// Content-Length body: bytes left.
    Length(u64),
    Chunked(ChunkedDecoder),
    UntilClose,
}

/// What the request-writing side still takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sending {
    /// The request body is complete (or there is none).
    Done,
    /// Content-Length body: bytes left.
    Length(u64),
    Chunked,
}

/// One upstream HTTP/1.1 connection's protocol state, sans IO.
#[derive(Debug)]
pub struct ClientConn {
    lim: ClientLimits,
    reading: Reading,
    sending: Sending,
    /// A response head that arrived in pieces (never body bytes).
    inbuf: Vec<u8>,
    /// Request bytes not yet handed to `poll_write`, from `out_pos`.
    out: Vec<u8>,
    out_pos: usize,
    head: ResponseHead,
    trailers: Fields,
    /// Framing of a chunked response consumed since its last data: at the
    /// end, the last-chunk line and the trailer section, which the decoder
    /// validates but does not keep.
    chunk_tail: Vec<u8>,
    method_is_head: bool,
    /// Bytes of the current request handed out by `poll_write`.
    written: u64,
    response_started: bool,
    /// The last response allowed another request (true before the first).
    keep_alive: bool,
    /// EOF or an error: no further request, no further input.
    closed: bool,
}

impl ClientConn {
    /// A connection with these limits. Allocates nothing until used.
    pub fn new(limits: ClientLimits) -> Self {
        ClientConn {
            lim: limits.clamped(),
            reading: Reading::Idle,
            sending: Sending::Done,
            inbuf: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            head: ResponseHead::new(),
            trailers: Fields::default(),
            chunk_tail: Vec::new(),
            method_is_head: false,
            written: 0,
            response_started: false,
            keep_alive: true,
            closed: false,
        }
    }

    /// Queues a request. `head` is the complete request head
    /// (`"GET /x HTTP/1.1\r\n...\r\n\r\n"`, see [`write_request_head`]),
    /// whose Content-Length or `Transfer-Encoding: chunked` matches `body`.
    /// `method_is_head`: the response has no body whatever its headers say.
    /// Fails unless [`ClientConn::reusable`] (one request at a time).
    pub fn send_request(
        &mut self,
        head: &[u8],
        body: BodyFraming,
        method_is_head: bool,
    ) -> Result<(), ClientError> {
        if body == BodyFraming::UntilClose {
            return Err(ClientError::BadRequestFraming);
        }
        if !self.reusable() {
            return Err(ClientError::NotReusable);
        }
        self.sending = match body {
            BodyFraming::Length(n) if n > 0 => Sending::Length(n),
            BodyFraming::Chunked => Sending::Chunked,
            _ => Sending::Done,
        };
        self.reading = Reading::Head;
        self.method_is_head = method_is_head;
        self.written = 0;
        self.response_started = false;
        self.out.clear();
        self.out_pos = 0;
        self.out.extend_from_slice(head);
        Ok(())
    }

    /// Request body bytes; returns how many it took: all of `data` unless
    /// `limits.body_buffer` bytes wait for `poll_write` (backpressure), and
    /// never more than a Content-Length body has left (bytes beyond it are
    /// refused: see [`ClientConn::body_remaining`]). With chunked framing
    /// what it took becomes one chunk. Takes nothing when no body is open.
    pub fn write_body(&mut self, data: &[u8]) -> usize {
        if data.is_empty() {
            // An empty chunk would end a chunked body.
            return 0;
        }
        let room = self
            .lim
            .body_buffer
            .saturating_sub(self.out.len() - self.out_pos);
        match self.sending {
            Sending::Done => 0,
            Sending::Length(left) => {
                let n = (data.len().min(room) as u64).min(left) as usize;
                if n == 0 {
                    return 0;
                }
                self.make_room(n);
                self.out.extend_from_slice(&data[..n]);
                self.sending = if left == n as u64 {
                    Sending::Done
                } else {
                    Sending::Length(left - n as u64)
                };
                n
            }
            Sending::Chunked => {
                let want = data.len().min(room);
                let n = want.min(room.saturating_sub(hex_len(want as u64) + 4));
                if n == 0 {
                    return 0;
                }
                self.make_room(n + 20);
                push_hex(&mut self.out, n as u64);
                self.out.extend_from_slice(b"\r\n");
                self.out.extend_from_slice(&data[..n]);
                self.out.extend_from_slice(b"\r\n");
                n
            }
        }
    }

    /// Bytes a Content-Length request body still needs (None for chunked
    /// or when no body is open).
    pub fn body_remaining(&self) -> Option<u64> {
        match self.sending {
            Sending::Length(n) => Some(n),
            _ => None,
        }
    }

    /// The request body is complete. Chunked: writes the last chunk with
    /// `trailers` (which other framings cannot carry: ignored there).
    /// Content-Length: fails if bytes are missing, and the connection can
    /// take no further request. Does nothing if no body is open.
    pub fn finish_body(&mut self, trailers: &[(&[u8], &[u8])]) -> Result<(), ClientError> {
        match self.sending {
            Sending::Done => Ok(()),
            Sending::Length(_) => {
                self.sending = Sending::Done;
                self.closed = true;
                Err(ClientError::BodyIncomplete)
            }
            Sending::Chunked => {
                let len = 5 + trailers
                    .iter()
                    .map(|(n, v)| n.len() + v.len() + 4)
                    .sum::<usize>();
                self.make_room(len);
                self.out.extend_from_slice(b"0\r\n");
                for (name, value) in trailers {
                    self.out.extend_from_slice(name);
                    self.out.extend_from_slice(b": ");
                    self.out.extend_from_slice(value);
                    self.out.extend_from_slice(b"\r\n");
                }
                self.out.extend_from_slice(b"\r\n");
                self.sending = Sending::Done;
                Ok(())
            }
        }
    }

    /// Moves the pending request bytes to the front of `out` if appending
    /// `extra` would otherwise grow it.
    fn make_room(&mut self, extra: usize) {
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        } else if self.out_pos > 0 && self.out.len() + extra > self.out.capacity() {
            self.out.drain(..self.out_pos);
            self.out_pos = 0;
        }
    }

    /// Writes request bytes into `buf`; returns how many.
    pub fn poll_write(&mut self, buf: &mut [u8]) -> usize {
        let k = (self.out.len() - self.out_pos).min(buf.len());
        buf[..k].copy_from_slice(&self.out[self.out_pos..self.out_pos + k]);
        self.out_pos += k;
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        }
        self.written += k as u64;
        k
    }

    /// `poll_write` has bytes to give.
    pub fn wants_write(&self) -> bool {
        self.out_pos < self.out.len()
    }

    /// Takes response bytes from the server, calls `on_event` for what they
    /// complete, and returns how many it took (all of them: body bytes go
    /// straight to the callback, a partial head is buffered). Events before
    /// an error were delivered: an `Unsolicited` after `End` leaves that
    /// response intact, but the connection must close.
    pub fn on_read(
        &mut self,
        data: &[u8],
        on_event: &mut dyn FnMut(ClientEvent<'_>),
    ) -> Result<usize, ClientError> {
        if self.closed {
            return Err(ClientError::Closed);
        }
        let mut used = 0;
        while used < data.len() {
            let rest = &data[used..];
            let r = match self.reading {
                Reading::Idle => Err(ClientError::Unsolicited),
                // Sent before our request left: not its response (a 408 of
                // an idle keep-alive connection, say).
                Reading::Head if self.written == 0 => Err(ClientError::Unsolicited),
                Reading::Head => self.read_head(rest, on_event),
                Reading::Length(left) => {
                    let n = (rest.len() as u64).min(left) as usize;
                    on_event(ClientEvent::Body(&rest[..n]));
                    if left == n as u64 {
                        self.end(on_event);
                    } else {
                        self.reading = Reading::Length(left - n as u64);
                    }
                    Ok(n)
                }
                Reading::Chunked(dec) => self.read_chunked(rest, dec, on_event),
                Reading::UntilClose => {
                    on_event(ClientEvent::Body(rest));
                    Ok(rest.len())
                }
            };
            match r {
                Ok(n) => used += n,
                Err(e) => {
                    self.closed = true;
                    self.inbuf.clear();
                    return Err(e);
                }
            }
        }
        Ok(used)
    }

    /// The server closed (FIN), after `on_read` took everything before it.
    /// Ends an [`BodyFraming::UntilClose`] body (`End`); mid-response it is
    /// [`ClientError::UnexpectedEof`] (see
    /// [`ClientConn::request_bytes_written`] and
    /// [`ClientConn::response_started`] for whether to retry). Either way
    /// the connection takes no further request.
    pub fn on_read_eof(
        &mut self,
        on_event: &mut dyn FnMut(ClientEvent<'_>),
    ) -> Result<(), ClientError> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        match self.reading {
            Reading::Idle => Ok(()),
            Reading::UntilClose => {
                self.end(on_event);
                Ok(())
            }
            Reading::Head | Reading::Length(_) | Reading::Chunked(_) => {
                self.inbuf.clear();
                Err(ClientError::UnexpectedEof)
            }
        }
    }

    /// No exchange in progress and the last response allowed reuse (or
    /// there was none yet): the pool may send another request.
    pub fn reusable(&self) -> bool {
        !self.closed && self.keep_alive && self.idle()
    }

    /// Bytes of the current request handed out by `poll_write` (0: the
    /// backend cannot have seen it, so it may be retried elsewhere).
    pub fn request_bytes_written(&self) -> u64 {
        self.written
    }

    /// A byte of a response (1xx included) to the current request arrived.
    pub fn response_started(&self) -> bool {
        self.response_started
    }

    /// No exchange in progress: no request bytes to write, no request body
    /// open, no response awaited.
    pub fn idle(&self) -> bool {
        matches!(self.reading, Reading::Idle)
            && self.sending == Sending::Done
            && self.out_pos == self.out.len()
    }

    /// Heap bytes held by the buffers, plus the connection's own size.
    pub fn memory(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.inbuf.capacity()
            + self.out.capacity()
            + self.chunk_tail.capacity()
            + self.head.fields.heap_bytes()
            + self.trailers.heap_bytes()
    }

    /// Frees the buffers while idle (the next exchange allocates again).
    pub fn release_memory(&mut self) {
        if self.idle() {
            self.inbuf = Vec::new();
            self.out = Vec::new();
            self.out_pos = 0;
            self.chunk_tail = Vec::new();
            self.head.fields = Fields::default();
            self.head.reason_len = 0;
            self.trailers = Fields::default();
        }
    }

    fn end(&mut self, on_event: &mut dyn FnMut(ClientEvent<'_>)) {
        self.reading = Reading::Idle;
        on_event(ClientEvent::End);
    }

    /// Reads (part of) a response head; returns bytes taken.
    fn read_head(
        &mut self,
        data: &[u8],
        on_event: &mut dyn FnMut(ClientEvent<'_>),
    ) -> Result<usize, ClientError> {
        self.response_started = true;
        let max = self.lim.max_head_bytes;
        if self.inbuf.is_empty() {
            // Parse in place: most heads arrive in one read.
            let window = &data[..data.len().min(max)];
            if let Some(n) = self.parse_head(window, on_event)? {
                return Ok(n);
            }
            if window.len() >= max {
                return Err(ClientError::HeadTooLarge);
            }
            self.inbuf.extend_from_slice(window);
            return Ok(window.len());
        }
        let old = self.inbuf.len();
        let take = data.len().min(max - old);
        self.inbuf.extend_from_slice(&data[..take]);
        // Parse again only once a line ends (a byte-at-a-time server must
        // not cost a parse per byte).
        let parsed = if data[..take].contains(&b'\n') {
            let buf = std::mem::take(&mut self.inbuf);
            let r = self.parse_head(&buf, on_event);
            self.inbuf = buf;
            r?
        } else {
            None
        };
        match parsed {
            Some(n) => {
                // The buffered part held no complete head, so it ends in
                // what was just appended.
                debug_assert!(n > old);
                self.inbuf.clear();
                Ok(n - old)
            }
            None if self.inbuf.len() >= max => Err(ClientError::HeadTooLarge),
            None => Ok(take),
        }
    }

    /// Parses the head at the start of `buf`: None if incomplete, else its
    /// length, after delivering it (a 1xx as `Informational`).
    fn parse_head(
        &mut self,
        buf: &[u8],
        on_event: &mut dyn FnMut(ClientEvent<'_>),
    ) -> Result<Option<usize>, ClientError> {
        let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS_CAP];
        let mut resp = httparse::Response::new(&mut []);
        // Default config: bare LF accepted, obs-fold refused.
        let n = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut resp,
            buf,
            &mut slots[..self.lim.max_headers],
        ) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(ClientError::HeadTooLarge),
            Err(_) => return Err(ClientError::MalformedHead),
        };
        let status = resp.code.unwrap_or(0);
        match status {
            101 => return Err(ClientError::Upgrade),
            100..=199 => {
                on_event(ClientEvent::Informational(status));
                return Ok(Some(n));
            }
            200..=599 => {}
            _ => return Err(ClientError::MalformedHead),
        }
        let a = analyze(&resp, self.method_is_head)?;
        let h = &mut self.head;
        h.status = status;
        h.version_minor = resp.version.unwrap_or(1);
        h.framing = a.framing;
        h.keep_alive = a.keep_alive;
        h.keep_alive_timeout = a.keep_alive_timeout;
        h.fields.clear();
        let reason = resp.reason.unwrap_or("").as_bytes();
        h.fields.buf.extend_from_slice(reason);
        h.reason_len = reason.len() as u32;
        for f in resp.headers.iter() {
            h.fields.push(f.name.as_bytes(), f.value);
        }
        self.keep_alive = a.keep_alive;
        on_event(ClientEvent::Head(&self.head));
        match a.framing {
            BodyFraming::None | BodyFraming::Length(0) => self.end(on_event),
            BodyFraming::Length(n) => self.reading = Reading::Length(n),
            BodyFraming::Chunked => {
                self.chunk_tail.clear();
                self.reading = Reading::Chunked(ChunkedDecoder::new(self.lim.max_trailer_bytes));
            }
            BodyFraming::UntilClose => self.reading = Reading::UntilClose,
        }
        Ok(Some(n))
    }

    /// Reads chunked body bytes; returns bytes taken.
    fn read_chunked(
        &mut self,
        data: &[u8],
        mut dec: ChunkedDecoder,
        on_event: &mut dyn FnMut(ClientEvent<'_>),
    ) -> Result<usize, ClientError> {
        let p = dec.advance(data, usize::MAX).map_err(|e| match e {
            ChunkError::Malformed => ClientError::BadChunk,
            ChunkError::TrailerTooLarge => ClientError::TrailersTooLarge,
        })?;
        self.reading = Reading::Chunked(dec);
        if !p.data.is_empty() {
            // Data returns at its end: the framing before it was a size line.
            self.chunk_tail.clear();
            on_event(ClientEvent::Body(&data[p.data]));
            return Ok(p.consumed);
        }
        // Between two data runs lies one size line (bounded by the
        // decoder's extension limit, except for leading zeros) and, after
        // the last, the trailer section (bounded by max_trailer_bytes).
        if self.chunk_tail.len() + p.consumed
            > self.lim.max_trailer_bytes + MAX_CHUNK_EXT as usize + 256
        {
            return Err(ClientError::BadChunk);
        }
        self.chunk_tail.extend_from_slice(&data[..p.consumed]);
        if p.done {
            parse_trailers(&self.chunk_tail, &mut self.trailers);
            if !self.trailers.is_empty() {
                on_event(ClientEvent::Trailers(&self.trailers));
            }
            self.end(on_event);
        }
        Ok(p.consumed)
    }
}

/// What the connection needs to know about a final response head.
struct Analysis {
    framing: BodyFraming,
    keep_alive: bool,
    keep_alive_timeout: Option<u32>,
}

/// Framing and persistence of a final response (RFC 9112 §6.3, §9.3).
fn analyze(
    resp: &httparse::Response<'_, '_>,
    method_is_head: bool,
) -> Result<Analysis, ClientError> {
    let http10 = resp.version == Some(0);
    let mut content_length: Option<u64> = None;
    let mut te_present = false;
    let mut te_items = 0u32;
    let mut te_chunked = 0u32;
    let mut chunked_last = false;
    let mut conn_close = false;
    let mut conn_keep_alive = false;
    let mut keep_alive_timeout = None;
    for h in resp.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            // RFC 9110 §8.6: identical values may be taken as one;
            // differing ones mean the framing cannot be trusted.
            let mut any = false;
            for item in h.value.split(|&b| b == b',') {
                let v = parse_decimal(item.trim_ascii()).ok_or(ClientError::BadFraming)?;
                if content_length.is_some_and(|c| c != v) {
                    return Err(ClientError::BadFraming);
                }
                content_length = Some(v);
                any = true;
            }
            if !any {
                return Err(ClientError::BadFraming);
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            te_present = true;
            for item in list_items(h.value) {
                te_items += 1;
                chunked_last = item.eq_ignore_ascii_case(b"chunked");
                te_chunked += u32::from(chunked_last);
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            for item in list_items(h.value) {
                if item.eq_ignore_ascii_case(b"close") {
                    conn_close = true;
                } else if item.eq_ignore_ascii_case(b"keep-alive") {
                    conn_keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case(b"keep-alive") {
            keep_alive_timeout = keep_alive_timeout.or(parse_keep_alive_timeout(h.value));
        }
    }
    let framing = if te_present {
        // RFC 9112 §6.1/§6.3: with Content-Length, or in HTTP/1.0, the
        // framing is faulty (response splitting): refuse rather than guess.
        if content_length.is_some() || http10 || te_items == 0 || te_chunked > 1 {
            return Err(ClientError::BadFraming);
        }
        if chunked_last {
            BodyFraming::Chunked
        } else {
            BodyFraming::UntilClose
        }
    } else {
        match content_length {
            Some(n) => BodyFraming::Length(n),
            None => BodyFraming::UntilClose,
        }
    };
    let status = resp.code.unwrap_or(0);
    let framing = if method_is_head || status == 204 || status == 304 {
        BodyFraming::None
    } else {
        framing
    };
    Ok(Analysis {
        framing,
        keep_alive: !conn_close
            && (!http10 || conn_keep_alive)
            && framing != BodyFraming::UntilClose,
        keep_alive_timeout,
    })
}

/// `timeout=N` of a `Keep-Alive` value (`timeout=5, max=100`); N above
/// u32 is clamped.
fn parse_keep_alive_timeout(value: &[u8]) -> Option<u32> {
    list_items(value).find_map(|item| {
        let eq = item.iter().position(|&b| b == b'=')?;
        if !item[..eq].trim_ascii().eq_ignore_ascii_case(b"timeout") {
            return None;
        }
        let v = item[eq + 1..].trim_ascii();
        let v = v
            .strip_prefix(b"\"")
            .and_then(|v| v.strip_suffix(b"\""))
            .unwrap_or(v);
        parse_decimal(v).map(|n| n.min(u64::from(u32::MAX)) as u32)
    })
}

/// Trailer fields from the framing after a chunked body's last data:
/// `[CRLF] last-chunk-line trailer-lines CRLF`, already validated by the
/// decoder (CRLF line ends, `token ":" value`).
fn parse_trailers(tail: &[u8], out: &mut Fields) {
    out.clear();
    for (name, value) in trailer_fields(tail) {
        out.push(name, value);
    }
}

/// The `(name, value)` trailer fields in the framing that follows a
/// chunked body's last data (see [`parse_trailers`]).
pub(crate) fn trailer_fields(tail: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let tail = tail.strip_prefix(b"\r\n").unwrap_or(tail);
    let lines = match tail.iter().position(|&b| b == b'\n') {
        Some(lf) => &tail[lf + 1..],
        None => &[][..],
    };
    lines.split(|&b| b == b'\n').filter_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|&b| b == b':')?;
        Some((&line[..colon], line[colon + 1..].trim_ascii()))
    })
}

/// Items of a comma-separated header list, OWS trimmed, empty items skipped.
fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(|s| s.trim_ascii())
        .filter(|s| !s.is_empty())
}

/// The tokens of a `Connection` header value: header fields named there
/// are hop-by-hop too (RFC 9110 §7.6.1).
pub fn connection_tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    list_items(value)
}

/// Header fields that apply to one connection only and must not be
/// forwarded (RFC 9110 §7.6.1; Proxy-Authenticate/-Authorization are meant
/// for the proxy itself). Fields named in `Connection` come on top, see
/// [`connection_tokens`].
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    const HOP: [&[u8]; 9] = [
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authorization",
    ];
    HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// Appends an HTTP/1.1 request head: the request line, `headers` (minus any
/// Content-Length and Transfer-Encoding: the framing is `body`'s), then
/// `Content-Length` or `Transfer-Encoding: chunked` per `body`, and the
/// blank line. Method, target and fields are written as given: they must
/// hold no CR or LF (true of anything httparse accepted).
pub fn write_request_head<'a>(
    out: &mut Vec<u8>,
    method: &[u8],
    target: &[u8],
    headers: impl Iterator<Item = (&'a [u8], &'a [u8])>,
    body: &BodyFraming,
) {
    out.extend_from_slice(method);
    out.push(b' ');
    out.extend_from_slice(target);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        if name.eq_ignore_ascii_case(b"content-length")
            || name.eq_ignore_ascii_case(b"transfer-encoding")
        {
            continue;
        }
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    match body {
        BodyFraming::Length(n) => {
            out.extend_from_slice(b"Content-Length: ");
            push_dec(out, *n);
            out.extend_from_slice(b"\r\n");
        }
        BodyFraming::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        BodyFraming::None | BodyFraming::UntilClose => {}
    }
    out.extend_from_slice(b"\r\n");
}

fn hex_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(4)
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An owned event, for comparing (adjacent body pieces merged).
    #[derive(Debug, PartialEq, Eq)]
    enum Ev {
        Info(u16),
        Head(u16, BodyFraming, bool),
        Body(Vec<u8>),
        Trailers(Vec<(Vec<u8>, Vec<u8>)>),
        End,
    }

    fn push_ev(evs: &mut Vec<Ev>, e: ClientEvent<'_>) {
        match e {
            ClientEvent::Informational(s) => evs.push(Ev::Info(s)),
            ClientEvent::Head(h) => evs.push(Ev::Head(h.status, h.framing, h.keep_alive)),
            ClientEvent::Body(b) => {
                assert!(!b.is_empty(), "empty body event");
                if let Some(Ev::Body(v)) = evs.last_mut() {
                    v.extend_from_slice(b);
                } else {
                    evs.push(Ev::Body(b.to_vec()));
                }
            }
            ClientEvent::Trailers(t) => evs.push(Ev::Trailers(
                t.iter().map(|(n, v)| (n.to_vec(), v.to_vec())).collect(),
            )),
            ClientEvent::End => evs.push(Ev::End),
        }
    }

    /// Feeds `data` in pieces cut at `cuts` (sorted offsets); every piece
    /// must be taken whole.
    fn feed_cuts(c: &mut ClientConn, data: &[u8], cuts: &[usize]) -> Result<Vec<Ev>, ClientError> {
        let mut evs = Vec::new();
        let mut pos = 0;
        for &end in cuts.iter().chain(std::iter::once(&data.len())) {
            let end = end.clamp(pos, data.len());
            let n = c.on_read(&data[pos..end], &mut |e| push_ev(&mut evs, e))?;
            assert_eq!(n, end - pos);
            pos = end;
        }
        Ok(evs)
    }

    fn feed(c: &mut ClientConn, data: &[u8]) -> Result<Vec<Ev>, ClientError> {
        feed_cuts(c, data, &[])
    }

    fn eof(c: &mut ClientConn) -> (Vec<Ev>, Result<(), ClientError>) {
        let mut evs = Vec::new();
        let r = c.on_read_eof(&mut |e| push_ev(&mut evs, e));
        (evs, r)
    }

    fn drain(c: &mut ClientConn) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 7]; // odd size: exercises partial writes
        loop {
            let n = c.poll_write(&mut buf);
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        assert!(!c.wants_write());
        out
    }

    const GET: &[u8] = b"GET /x HTTP/1.1\r\nHost: b\r\n\r\n";

    /// A connection with a GET sent and written.
    fn sent_get() -> ClientConn {
        let mut c = ClientConn::new(ClientLimits::default());
        c.send_request(GET, BodyFraming::None, false).unwrap();
        assert_eq!(drain(&mut c), GET);
        c
    }

    fn body(s: &[u8]) -> Ev {
        Ev::Body(s.to_vec())
    }

    #[test]
    fn get_with_length() {
        let mut c = ClientConn::new(ClientLimits::default());
        assert!(c.reusable() && c.idle() && !c.wants_write());
        c.send_request(GET, BodyFraming::None, false).unwrap();
        assert!(c.wants_write() && !c.idle() && !c.reusable());
        assert_eq!(c.request_bytes_written(), 0);
        assert_eq!(drain(&mut c), GET);
        assert_eq!(c.request_bytes_written(), GET.len() as u64);
        assert!(!c.response_started());
        let mut head = None;
        let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\nx-a: c\r\n\r\nhel";
        let n = c
            .on_read(resp, &mut |e| {
                if let ClientEvent::Head(h) = e {
                    head = Some(h.clone());
                }
            })
            .unwrap();
        assert_eq!(n, resp.len());
        let h = head.unwrap();
        assert_eq!((h.status, h.version_minor), (200, 1));
        assert_eq!(h.reason(), b"OK");
        assert_eq!(h.framing, BodyFraming::Length(5));
        assert!(h.keep_alive);
        assert_eq!(h.keep_alive_timeout, None);
        assert_eq!(h.header(b"x-A"), Some(&b"b"[..]));
        assert_eq!(h.header(b"content-length"), Some(&b"5"[..]));
        assert_eq!(h.header(b"nope"), None);
        let all: Vec<_> = h.headers().collect();
        assert_eq!(
            all,
            [
                (&b"Content-Length"[..], &b"5"[..]),
                (b"X-A", b"b"),
                (b"x-a", b"c")
            ]
        );
        assert_eq!(h.fields().len(), 3);
        assert!(c.response_started() && !c.reusable());
        assert_eq!(feed(&mut c, b"lo").unwrap(), [body(b"lo"), Ev::End]);
        assert!(c.reusable() && c.idle());
    }

    const CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
        5\r\nhello\r\n1;a=b\r\n \r\n00A\r\n0123456789\r\n0\r\nX-T: v 1\r\nY:w\r\n\r\n";

    fn chunked_expected() -> Vec<Ev> {
        vec![
            Ev::Head(200, BodyFraming::Chunked, true),
            body(b"hello 0123456789"),
            Ev::Trailers(vec![
                (b"X-T".to_vec(), b"v 1".to_vec()),
                (b"Y".to_vec(), b"w".to_vec()),
            ]),
            Ev::End,
        ]
    }

    #[test]
    fn chunked_split_at_every_boundary() {
        let mut c = sent_get();
        assert_eq!(feed(&mut c, CHUNKED).unwrap(), chunked_expected());
        assert!(c.reusable());
        // Byte by byte.
        let mut c = sent_get();
        let cuts: Vec<usize> = (1..CHUNKED.len()).collect();
        assert_eq!(
            feed_cuts(&mut c, CHUNKED, &cuts).unwrap(),
            chunked_expected()
        );
        assert!(c.reusable());
        // Every single cut, and every pair of cuts.
        for i in 0..=CHUNKED.len() {
            for j in i..=CHUNKED.len() {
                let mut c = sent_get();
                let evs = feed_cuts(&mut c, CHUNKED, &[i, j]).unwrap();
                assert_eq!(evs, chunked_expected(), "cuts {i} {j}");
            }
        }
    }

    #[test]
    fn chunked_without_trailers_has_no_trailer_event() {
        let mut c = sent_get();
        let evs = feed(
            &mut c,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            evs,
            [
                Ev::Head(200, BodyFraming::Chunked, true),
                body(b"abc"),
                Ev::End
            ]
        );
        let mut c = sent_get();
        let evs = feed(
            &mut c,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nA: 1\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            evs,
            [
                Ev::Head(200, BodyFraming::Chunked, true),
                Ev::Trailers(vec![(b"A".to_vec(), b"1".to_vec())]),
                Ev::End
            ]
        );
    }

    #[test]
    fn chunked_errors() {
        let mut c = sent_get();
        let r = feed(
            &mut c,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        );
        assert_eq!(r.unwrap_err(), ClientError::BadChunk);
        assert!(!c.reusable());
        assert_eq!(feed(&mut c, b"x").unwrap_err(), ClientError::Closed);
        let mut c = ClientConn::new(ClientLimits {
            max_trailer_bytes: 32,
            ..ClientLimits::default()
        });
        c.send_request(GET, BodyFraming::None, false).unwrap();
        drain(&mut c);
        let r = feed(
            &mut c,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-Long: 0123456789012345678901234567890123456789\r\n\r\n",
        );
        assert_eq!(r.unwrap_err(), ClientError::TrailersTooLarge);
    }

    #[test]
    fn head_request_has_no_body() {
        let mut c = ClientConn::new(ClientLimits::default());
        let req = b"HEAD /x HTTP/1.1\r\nHost: b\r\n\r\n";
        c.send_request(req, BodyFraming::None, true).unwrap();
        assert_eq!(drain(&mut c), req);
        let evs = feed(&mut c, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n").unwrap();
        assert_eq!(evs, [Ev::Head(200, BodyFraming::None, true), Ev::End]);
        assert!(c.reusable());
        // Transfer-Encoding: chunked on a HEAD response: no body either.
        c.send_request(req, BodyFraming::None, true).unwrap();
        drain(&mut c);
        let evs = feed(
            &mut c,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        )
        .unwrap();
        assert_eq!(evs, [Ev::Head(200, BodyFraming::None, true), Ev::End]);
        // The body a buggy server sends anyway is unsolicited.
        assert_eq!(
            feed(&mut c, b"0\r\n\r\n").unwrap_err(),
            ClientError::Unsolicited
        );
        assert!(!c.reusable());
    }

    #[test]
    fn no_content_and_not_modified() {
        for status in [204u16, 304] {
            let mut c = sent_get();
            let resp = format!("HTTP/1.1 {status} X\r\nContent-Length: 7\r\n\r\n");
            let evs = feed(&mut c, resp.as_bytes()).unwrap();
            assert_eq!(evs, [Ev::Head(status, BodyFraming::None, true), Ev::End]);
            assert!(c.reusable());
        }
        let mut c = sent_get();
        let evs = feed(&mut c, b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
        assert_eq!(evs, [Ev::Head(204, BodyFraming::None, true), Ev::End]);
    }

    #[test]
    fn informational_then_final() {
        let resp = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s>\r\n\r\n\
            HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let expected = [
            Ev::Info(100),
            Ev::Info(103),
            Ev::Head(200, BodyFraming::Length(2), true),
            body(b"ok"),
            Ev::End,
        ];
        let mut c = sent_get();
        assert_eq!(feed(&mut c, resp).unwrap(), expected);
        assert!(c.reusable());
        for cut in 0..resp.len() {
            let mut c = sent_get();
            assert_eq!(feed_cuts(&mut c, resp, &[cut]).unwrap(), expected);
        }
        let mut c = sent_get();
        let cuts: Vec<usize> = (1..resp.len()).collect();
        assert_eq!(feed_cuts(&mut c, resp, &cuts).unwrap(), expected);
    }

    #[test]
    fn switching_protocols_is_refused() {
        let mut c = sent_get();
        let r = feed(
            &mut c,
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
        );
        assert_eq!(r.unwrap_err(), ClientError::Upgrade);
        assert!(!c.reusable());
    }

    #[test]
    fn until_close_ends_at_eof() {
        let mut c = sent_get();
        let evs = feed_cuts(&mut c, b"HTTP/1.1 200 OK\r\n\r\nsome bytes", &[20, 22]).unwrap();
        assert_eq!(
            evs,
            [
                Ev::Head(200, BodyFraming::UntilClose, false),
                body(b"some bytes")
            ]
        );
        assert!(!c.idle());
        let (evs, r) = eof(&mut c);
        r.unwrap();
        assert_eq!(evs, [Ev::End]);
        assert!(c.idle() && !c.reusable());
        assert_eq!(
            c.send_request(GET, BodyFraming::None, false).unwrap_err(),
            ClientError::NotReusable
        );
        // A transfer coding other than chunked last: read until close too.
        let mut c = sent_get();
        let evs = feed(
            &mut c,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\nzz",
        )
        .unwrap();
        assert_eq!(
            evs,
            [Ev::Head(200, BodyFraming::UntilClose, false), body(b"zz")]
        );
    }

    #[test]
    fn eof_mid_response() {
        // Mid body.
        let mut c = sent_get();
        feed(&mut c, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab").unwrap();
        let (evs, r) = eof(&mut c);
        assert_eq!((evs, r), (vec![], Err(ClientError::UnexpectedEof)));
        assert!(!c.reusable());
        assert_eq!(feed(&mut c, b"cde").unwrap_err(), ClientError::Closed);
        // Mid chunked body.
        let mut c = sent_get();
        feed(
            &mut c,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        )
        .unwrap();
        assert_eq!(eof(&mut c).1, Err(ClientError::UnexpectedEof));
        // Mid head.
        let mut c = sent_get();
        feed(&mut c, b"HTTP/1.1 200 OK\r\n").unwrap();
        assert!(c.response_started());
        assert_eq!(eof(&mut c).1, Err(ClientError::UnexpectedEof));
        // Before any response byte: retryable if the request was idempotent.
        let mut c = sent_get();
        assert_eq!(eof(&mut c).1, Err(ClientError::UnexpectedEof));
        assert!(!c.response_started());
        assert_eq!(c.request_bytes_written(), GET.len() as u64);
        // Before the request left at all: retryable whatever it was.
        let mut c = ClientConn::new(ClientLimits::default());
        c.send_request(GET, BodyFraming::None, false).unwrap();
        assert_eq!(eof(&mut c).1, Err(ClientError::UnexpectedEof));
        assert_eq!(c.request_bytes_written(), 0);
        // Idle: the server closed a keep-alive connection; no error.
        let mut c = ClientConn::new(ClientLimits::default());
        assert_eq!(eof(&mut c), (vec![], Ok(())));
        assert!(!c.reusable());
        assert_eq!(eof(&mut c), (vec![], Ok(())));
    }

    #[test]
    fn framing_errors() {
        for resp in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: \r\n\r\n",
        ] {
            let mut c = sent_get();
            let mut evs = Vec::new();
            let r = c.on_read(resp, &mut |e| push_ev(&mut evs, e));
            assert_eq!(r, Err(ClientError::BadFraming), "{resp:?}");
            assert!(evs.is_empty());
            assert!(!c.reusable());
        }
        // Identical duplicates are one length.
        let mut c = sent_get();
        let evs = feed(
            &mut c,
            b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\ncontent-length: 2\r\n\r\nok",
        )
        .unwrap();
        assert_eq!(
            evs,
            [
                Ev::Head(200, BodyFraming::Length(2), true),
                body(b"ok"),
                Ev::End
            ]
        );
        // Content-Length: 0 is announced, unlike no body at all.
        let mut c = sent_get();
        let evs = feed(&mut c, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").unwrap();
        assert_eq!(evs, [Ev::Head(200, BodyFraming::Length(0), true), Ev::End]);
    }

    #[test]
    fn malformed_heads() {
        for resp in [
            &b"HTTP/1.1 200 OK\r\nA: b\r\n folded\r\n\r\n"[..],
            b"HTTP/2.0 200 OK\r\n\r\n",
            b"HTTP/1.1 20 OK\r\n\r\n",
            b"HTTP/1.1 099 X\r\n\r\n",
            b"HTTP/1.1 600 X\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nA : b\r\n\r\n",
            b"ICY 200 OK\r\n\r\n",
            b"\x00\x01",
        ] {
            let mut c = sent_get();
            assert_eq!(
                feed(&mut c, resp).unwrap_err(),
                ClientError::MalformedHead,
                "{resp:?}"
            );
        }
        // Bare LF line ends, no reason phrase.
        let mut c = sent_get();
        let evs = feed(&mut c, b"HTTP/1.1 200\nContent-Length: 1\nA: b\n\nx").unwrap();
        assert_eq!(
            evs,
            [
                Ev::Head(200, BodyFraming::Length(1), true),
                body(b"x"),
                Ev::End
            ]
        );
    }

    #[test]
    fn head_limits() {
        let lim = ClientLimits {
            max_head_bytes: 100,
            max_headers: 2,
            ..ClientLimits::default()
        };
        let mut big = b"HTTP/1.1 200 OK\r\n".to_vec();
        big.extend_from_slice(&[b'a'; 200]);
        for cuts in [&[][..], &[10], &[10, 50, 99, 100, 101]] {
            let mut c = ClientConn::new(lim);
            c.send_request(GET, BodyFraming::None, false).unwrap();
            drain(&mut c);
            let mut evs = Vec::new();
            let mut pos = 0;
            let mut err = None;
            for &end in cuts.iter().chain(std::iter::once(&big.len())) {
                match c.on_read(&big[pos..end], &mut |e| push_ev(&mut evs, e)) {
                    Ok(n) => pos += n,
                    Err(e) => {
                        err = Some(e);
                        break;
                    }
                }
            }
            assert_eq!(err, Some(ClientError::HeadTooLarge));
            assert!(c.memory() < 1000);
        }
        let mut c = ClientConn::new(lim);
        c.send_request(GET, BodyFraming::None, false).unwrap();
        drain(&mut c);
        let r = feed(&mut c, b"HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n");
        assert_eq!(r.unwrap_err(), ClientError::HeadTooLarge);
    }

    #[test]
    fn persistence() {
        let cases: [(&[u8], bool); 6] = [
            (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", true),
            (
                b"HTTP/1.1 200 OK\r\nConnection: x, Close\r\nContent-Length: 0\r\n\r\n",
                false,
            ),
            (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false),
            (
                b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n",
                true,
            ),
            // Read until close: never reusable.
            (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n", false),
            (b"HTTP/1.1 304 OK\r\n\r\n", true),
        ];
        for (resp, keep) in cases {
            let mut c = sent_get();
            let evs = feed(&mut c, resp).unwrap();
            let Ev::Head(_, _, ka) = evs[0] else {
                panic!("{evs:?}")
            };
            assert_eq!(ka, keep, "{resp:?}");
            if evs.last() == Some(&Ev::End) {
                assert_eq!(c.reusable(), keep, "{resp:?}");
            }
            if !keep {
                assert_eq!(
                    c.send_request(GET, BodyFraming::None, false),
                    Err(ClientError::NotReusable)
                );
            }
        }
    }

    #[test]
    fn keep_alive_timeout() {
        let timeout = |v: &str| {
            let mut c = sent_get();
            let resp = format!("HTTP/1.1 200 OK\r\nKeep-Alive: {v}\r\nContent-Length: 0\r\n\r\n");
            let mut t = None;
            c.on_read(resp.as_bytes(), &mut |e| {
                if let ClientEvent::Head(h) = e {
                    t = Some(h.keep_alive_timeout);
                }
            })
            .unwrap();
            t.unwrap()
        };
        assert_eq!(timeout("timeout=5, max=100"), Some(5));
        assert_eq!(timeout("max=100, Timeout = 7"), Some(7));
        assert_eq!(timeout("timeout=\"9\""), Some(9));
        assert_eq!(timeout("timeout=99999999999"), Some(u32::MAX));
        assert_eq!(timeout("max=3"), None);
        assert_eq!(timeout("timeout=x"), None);
        assert_eq!(timeout(""), None);
    }

    #[test]
    fn chunked_request_body() {
        let mut c = ClientConn::new(ClientLimits::default());
        let head = b"POST /u HTTP/1.1\r\nHost: b\r\nTransfer-Encoding: chunked\r\n\r\n";
        c.send_request(head, BodyFraming::Chunked, false).unwrap();
        assert_eq!(c.write_body(b"hello"), 5);
        assert_eq!(c.write_body(b""), 0); // never an empty (last) chunk
        let mut big = [b'z'; 17];
        big[0] = b'a';
        assert_eq!(c.write_body(&big), 17);
        assert!(!c.idle());
        c.finish_body(&[(b"X-Sum", b"abc"), (b"Y", b"")]).unwrap();
        let mut want = head.to_vec();
        want.extend_from_slice(
            b"5\r\nhello\r\n11\r\nazzzzzzzzzzzzzzzz\r\n0\r\nX-Sum: abc\r\nY: \r\n\r\n",
        );
        assert_eq!(drain(&mut c), want);
        assert_eq!(c.write_body(b"late"), 0);
        c.finish_body(&[]).unwrap(); // idempotent
        assert!(!c.reusable()); // the response is still due
        feed(&mut c, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").unwrap();
        assert!(c.reusable());
        // No trailers.
        c.send_request(head, BodyFraming::Chunked, false).unwrap();
        c.finish_body(&[]).unwrap();
        let mut want = head.to_vec();
        want.extend_from_slice(b"0\r\n\r\n");
        assert_eq!(drain(&mut c), want);
    }

    #[test]
    fn length_request_body() {
        let mut c = ClientConn::new(ClientLimits::default());
        let head = b"PUT /u HTTP/1.1\r\nHost: b\r\nContent-Length: 5\r\n\r\n";
        c.send_request(head, BodyFraming::Length(5), false).unwrap();
        assert_eq!(c.body_remaining(), Some(5));
        assert_eq!(c.write_body(b"abc"), 3);
        assert_eq!(c.body_remaining(), Some(2));
        // Bytes beyond the declared length are refused.
        assert_eq!(c.write_body(b"defgh"), 2);
        assert_eq!(c.body_remaining(), None);
        assert_eq!(c.write_body(b"gh"), 0);
        c.finish_body(&[(b"Ignored", b"x")]).unwrap();
        let mut want = head.to_vec();
        want.extend_from_slice(b"abcde");
        assert_eq!(drain(&mut c), want);
        feed(&mut c, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").unwrap();
        assert!(c.reusable());
        // Short.
        c.send_request(head, BodyFraming::Length(5), false).unwrap();
        assert_eq!(c.write_body(b"abc"), 3);
        assert_eq!(c.finish_body(&[]), Err(ClientError::BodyIncomplete));
        drain(&mut c);
        assert!(!c.reusable());
        assert_eq!(
            c.send_request(GET, BodyFraming::None, false),
            Err(ClientError::NotReusable)
        );
        // UntilClose is for responses only.
        let mut c = ClientConn::new(ClientLimits::default());
        assert_eq!(
            c.send_request(head, BodyFraming::UntilClose, false),
            Err(ClientError::BadRequestFraming)
        );
        assert!(c.reusable());
    }

    #[test]
    fn write_body_backpressure() {
        let lim = ClientLimits {
            body_buffer: 100,
            ..ClientLimits::default()
        };
        let head = b"POST /u HTTP/1.1\r\nHost: b\r\nTransfer-Encoding: chunked\r\n\r\n";
        let data: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        for framing in [BodyFraming::Chunked, BodyFraming::Length(1000)] {
            let mut c = ClientConn::new(lim);
            c.send_request(head, framing, false).unwrap();
            let mut wire = Vec::new();
            let mut fed = 0;
            let mut buf = [0u8; 33];
            let mut stalls = 0;
            while fed < data.len() {
                let n = c.write_body(&data[fed..]);
                assert!(n <= 100);
                if n == 0 {
                    stalls += 1;
                    // Full: the pending bytes are at the limit (up to the
                    // framing of one chunk).
                    assert!(c.wants_write());
                    let k = c.poll_write(&mut buf);
                    wire.extend_from_slice(&buf[..k]);
                }
                fed += n;
            }
            assert!(stalls > 5);
            c.finish_body(&[]).unwrap();
            wire.extend_from_slice(&drain(&mut c));
            let body = &wire[head.len()..];
            let decoded = if framing == BodyFraming::Chunked {
                let mut d = ChunkedDecoder::new(100);
                let mut out = Vec::new();
                let mut pos = 0;
                loop {
                    let p = d.advance(&body[pos..], usize::MAX).unwrap();
                    out.extend_from_slice(&body[pos..][p.data]);
                    pos += p.consumed;
                    if p.done {
                        break;
                    }
                }
                assert_eq!(pos, body.len());
                out
            } else {
                body.to_vec()
            };
            assert_eq!(decoded, data);
            assert_eq!(c.request_bytes_written(), wire.len() as u64);
        }
    }

    #[test]
    fn unsolicited_bytes() {
        // Nothing sent.
        let mut c = ClientConn::new(ClientLimits::default());
        assert_eq!(
            feed(&mut c, b"HTTP/1.1 408 Request Timeout\r\n\r\n").unwrap_err(),
            ClientError::Unsolicited
        );
        assert!(!c.reusable());
        // Request queued, not yet written.
        let mut c = ClientConn::new(ClientLimits::default());
        c.send_request(GET, BodyFraming::None, false).unwrap();
        assert_eq!(feed(&mut c, b"H").unwrap_err(), ClientError::Unsolicited);
        assert!(!c.response_started());
        assert_eq!(c.request_bytes_written(), 0);
        // After the response ended, in the same read: the response is whole.
        let mut c = sent_get();
        let mut evs = Vec::new();
        let r = c.on_read(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n\r\n",
            &mut |e| push_ev(&mut evs, e),
        );
        assert_eq!(r, Err(ClientError::Unsolicited));
        assert_eq!(
            evs,
            [
                Ev::Head(200, BodyFraming::Length(2), true),
                body(b"ok"),
                Ev::End
            ]
        );
        assert!(!c.reusable());
    }

    #[test]
    fn reuse_for_a_second_request() {
        let mut c = sent_get();
        let resp1 =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\nT: 1\r\n\r\n";
        let evs = feed(&mut c, resp1).unwrap();
        assert_eq!(evs.last(), Some(&Ev::End));
        assert!(c.reusable());
        let post = b"POST /p HTTP/1.1\r\nHost: b\r\nContent-Length: 3\r\n\r\n";
        c.send_request(post, BodyFraming::Length(3), false).unwrap();
        assert_eq!(c.request_bytes_written(), 0);
        assert!(!c.response_started());
        assert_eq!(
            c.send_request(GET, BodyFraming::None, false),
            Err(ClientError::NotReusable)
        );
        assert_eq!(c.write_body(b"xyz"), 3);
        let mut want = post.to_vec();
        want.extend_from_slice(b"xyz");
        assert_eq!(drain(&mut c), want);
        let evs = feed(
            &mut c,
            b"HTTP/1.1 201 Created\r\nKeep-Alive: timeout=3\r\nContent-Length: 4\r\n\r\ndone",
        )
        .unwrap();
        assert_eq!(
            evs,
            [
                Ev::Head(201, BodyFraming::Length(4), true),
                body(b"done"),
                Ev::End
            ]
        );
        assert!(c.reusable());
        // A third, whose response has no trailers: the old ones are gone.
        c.send_request(GET, BodyFraming::None, false).unwrap();
        drain(&mut c);
        let evs = feed(
            &mut c,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(evs, [Ev::Head(200, BodyFraming::Chunked, true), Ev::End]);
    }

    #[test]
    fn early_response_waits_for_the_request_body() {
        let mut c = ClientConn::new(ClientLimits::default());
        let head = b"POST /u HTTP/1.1\r\nHost: b\r\nTransfer-Encoding: chunked\r\n\r\n";
        c.send_request(head, BodyFraming::Chunked, false).unwrap();
        c.write_body(b"part");
        drain(&mut c);
        let evs = feed(&mut c, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").unwrap();
        assert_eq!(evs.last(), Some(&Ev::End));
        // The request body is still open: not reusable yet.
        assert!(!c.reusable() && !c.idle());
        c.finish_body(&[]).unwrap();
        assert!(!c.reusable());
        drain(&mut c);
        assert!(c.reusable());
    }

    #[test]
    fn memory_is_released_while_idle() {
        let mut c = ClientConn::new(ClientLimits::default());
        let empty = c.memory();
        c.send_request(GET, BodyFraming::None, false).unwrap();
        drain(&mut c);
        let resp = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Pad: aaaaaaaaaaaaaaaa\r\n\r\n1\r\na\r\n0\r\nT: 1\r\n\r\n";
        let cuts: Vec<usize> = (1..resp.len()).collect();
        feed_cuts(&mut c, resp, &cuts).unwrap();
        assert!(c.memory() > empty);
        c.release_memory();
        assert_eq!(c.memory(), empty);
        // Not while an exchange is in progress.
        c.send_request(GET, BodyFraming::None, false).unwrap();
        let busy = c.memory();
        c.release_memory();
        assert_eq!(c.memory(), busy);
        assert_eq!(drain(&mut c), GET);
    }

    #[test]
    fn request_head_helpers() {
        let mut out = Vec::new();
        let headers: [(&[u8], &[u8]); 3] = [
            (b"Host", b"a.b"),
            (b"content-length", b"99"),
            (b"X-Y", b"z"),
        ];
        write_request_head(
            &mut out,
            b"POST",
            b"/p?q=1",
            headers.iter().copied(),
            &BodyFraming::Length(12),
        );
        assert_eq!(
            out,
            b"POST /p?q=1 HTTP/1.1\r\nHost: a.b\r\nX-Y: z\r\nContent-Length: 12\r\n\r\n"
        );
        out.clear();
        let te: [(&[u8], &[u8]); 1] = [(b"Transfer-Encoding", b"chunked")];
        write_request_head(
            &mut out,
            b"PUT",
            b"/",
            te.iter().copied(),
            &BodyFraming::Chunked,
        );
        assert_eq!(out, b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        out.clear();
        write_request_head(
            &mut out,
            b"GET",
            b"/",
            std::iter::empty(),
            &BodyFraming::None,
        );
        assert_eq!(out, b"GET / HTTP/1.1\r\n\r\n");

        for h in [
            &b"Connection"[..],
            b"keep-alive",
            b"Proxy-Connection",
            b"TE",
            b"Trailer",
            b"transfer-encoding",
            b"Upgrade",
            b"Proxy-Authenticate",
            b"proxy-authorization",
        ] {
            assert!(is_hop_by_hop(h), "{h:?}");
        }
        for h in [&b"Host"[..], b"Content-Length", b"Trailers", b"TEE", b""] {
            assert!(!is_hop_by_hop(h), "{h:?}");
        }
        let toks: Vec<&[u8]> = connection_tokens(b" close ,, X-Foo,\tkeep-alive ").collect();
        assert_eq!(toks, [&b"close"[..], b"X-Foo", b"keep-alive"]);
        assert_eq!(connection_tokens(b" , ").count(), 0);
    }

    #[test]
    fn hex_lengths() {
        for v in [0u64, 1, 15, 16, 255, 256, 4095, 4096, u64::MAX] {
            let mut s = Vec::new();
            push_hex(&mut s, v);
            assert_eq!(hex_len(v), s.len(), "{v}");
        }
    }

    /// Response bytes that look like HTTP (shared by the fuzz properties).
    fn responseish() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(b"HTTP/1.1 200 OK\r\n".to_vec()),
            Just(b"HTTP/1.0 204 X\r\n".to_vec()),
            Just(b"HTTP/1.1 100 Continue\r\n\r\n".to_vec()),
            Just(b"HTTP/1.1 101 S\r\n".to_vec()),
            Just(b"Content-Length: 3\r\n".to_vec()),
            Just(b"Content-Length: 99999999999999999999\r\n".to_vec()),
            Just(b"Transfer-Encoding: chunked\r\n".to_vec()),
            Just(b"Transfer-Encoding: gzip\r\n".to_vec()),
            Just(b"Connection: close\r\n".to_vec()),
            Just(b"Keep-Alive: timeout=5\r\n".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"\n".to_vec()),
            Just(b" folded\r\n".to_vec()),
            Just(b"5\r\nhello\r\n".to_vec()),
            Just(b"ffffffffffffffffff\r\n".to_vec()),
            Just(b"0\r\nT: v\r\n\r\n".to_vec()),
            Just(b"0\r\n\r\n".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..8),
        ];
        proptest::collection::vec(piece, 0..24).prop_map(|v| v.concat())
    }

    proptest! {
        #[test]
        fn chunked_random_splits(cuts in proptest::collection::vec(0..CHUNKED.len(), 0..12)) {
            let mut cuts = cuts;
            cuts.sort_unstable();
            let mut c = sent_get();
            prop_assert_eq!(feed_cuts(&mut c, CHUNKED, &cuts).unwrap(), chunked_expected());
            prop_assert!(c.reusable());
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            data in prop_oneof![proptest::collection::vec(any::<u8>(), 0..300), responseish()],
            cuts in proptest::collection::vec(0..400usize, 0..8),
            head in any::<bool>(),
            tiny in any::<bool>(),
            eof_at_end in any::<bool>(),
        ) {
            let lim = if tiny {
                ClientLimits { max_head_bytes: 64, max_headers: 2, max_trailer_bytes: 8, body_buffer: 64 }
            } else {
                ClientLimits::default()
            };
            let mut c = ClientConn::new(lim);
            c.send_request(GET, BodyFraming::None, head).unwrap();
            drain(&mut c);
            let mut cuts = cuts;
            cuts.sort_unstable();
            let mut pos = 0;
            let mut ends = 0;
            let mut failed = false;
            for end in cuts.into_iter().chain(std::iter::once(data.len())) {
                let end = end.clamp(pos, data.len());
                let r = c.on_read(&data[pos..end], &mut |e| {
                    if let ClientEvent::End = e {
                        ends += 1;
                    }
                });
                match r {
                    Ok(n) => {
                        prop_assert_eq!(n, end - pos);
                        pos = end;
                    }
                    Err(_) => {
                        failed = true;
                        prop_assert!(!c.reusable());
                        break;
                    }
                }
                // A response either is still running or ended exactly once.
                prop_assert!(ends <= 1);
                if c.reusable() {
                    prop_assert_eq!(ends, 1);
                    // Reuse must work, and its response is independent.
                    c.send_request(GET, BodyFraming::None, head).unwrap();
                    drain(&mut c);
                    ends = 0;
                }
            }
            if eof_at_end {
                let _ = c.on_read_eof(&mut |_| {});
                prop_assert!(!c.reusable());
            }
            if failed {
                prop_assert_eq!(c.on_read(b"x", &mut |_| {}), Err(ClientError::Closed));
            }
            let _ = c.memory();
            c.release_memory();
        }
    }
}
