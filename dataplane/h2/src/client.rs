//! The HTTP/2 client of the reverse proxy's upstream connections, on
//! sluice's own codec (sluice-h2codec): a sans-IO state machine with no
//! runtime, no wakers and no locks.
//!
//! The proxy opens streams on it ([`H2Client::send_request`]), feeds
//! request bodies ([`H2Client::send_data`]), and takes what comes back as
//! [`H2Event`]s. Flow control is the backpressure: response DATA counts
//! against the stream's window until the proxy says the client took it
//! ([`H2Client::release`]), so a slow client slows its stream, not the
//! connection's other streams.
//!
//! Why not the h2 crate: h2 keeps its streams behind a mutex, polls
//! futures per stream and builds `http` types for every field twice; on
//! the proxied path that was a third of the loop's time
//! (docs/benchmarks.md). Here a request's fields are HPACK-encoded
//! straight from the proxy's map into the output, and a response's are
//! decoded once into the map the proxy forwards.

use std::collections::VecDeque;

use bytes::Bytes;
use http::HeaderMap;
use sluice_h2codec::frame::{self, setting, ErrorCode, Frame, FrameError, Head, Settings};
use sluice_h2codec::hpack::{Decoder, Encoder, Field};

use crate::fields;

/// Our SETTINGS_MAX_HEADER_LIST_SIZE, and the bound on a header block
/// being assembled from CONTINUATION frames.
const MAX_HEADER_LIST: usize = 64 * 1024;
/// HPACK table the backend may use for what it sends us (the default).
const DECODER_TABLE: usize = 4096;

/// Settings of one upstream HTTP/2 connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct H2ClientConfig {
    /// Streams we open at most at once (the peer's SETTINGS may say fewer).
    pub max_streams: u32,
    /// Receive window of each stream: response bytes a backend may send
    /// before the client took them.
    pub stream_window: u32,
    pub connection_window: u32,
    /// Output bytes buffered before the TCP connection took them; request
    /// bodies wait in their streams beyond it.
    pub write_cap: usize,
}

impl Default for H2ClientConfig {
    fn default() -> Self {
        H2ClientConfig {
            max_streams: 100,
            stream_window: 256 * 1024,
            connection_window: 4 * 1024 * 1024,
            write_cap: 64 * 1024,
        }
    }
}

/// How a stream failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamFailure {
    /// The backend did not process it (RST_STREAM with REFUSED_STREAM, or
    /// above the last stream id of its GOAWAY): safe to send elsewhere.
    Refused,
    /// Reset by the backend, or the connection failed: it may have run.
    Reset,
    /// The backend broke the protocol.
    Protocol,
}

/// What happened on a stream. A stream's events end with `End` or
/// `Failed`; after either the key is free for a new stream.
#[derive(Debug)]
pub enum H2Event {
    Head {
        status: u16,
        headers: HeaderMap,
        /// The response has no body and no trailers (`End` follows).
        end_stream: bool,
    },
    Data(Bytes),
    Trailers(HeaderMap),
    End,
    Failed(StreamFailure),
}

/// Why a request could not be sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// No stream slot now (limit reached, GOAWAY, or the connection ended).
    NotReady,
    /// A field HTTP/2 cannot carry (connection-specific, or bytes a
    /// pseudo-header may not hold).
    Invalid,
}

/// The request a stream carries. Everything is borrowed: the fields are
/// encoded into the output at once, so a request kept for a retry is
/// never copied.
#[derive(Clone, Copy, Debug)]
pub struct ClientRequest<'a> {
    pub method: &'a [u8],
    pub scheme: &'a str,
    pub authority: &'a [u8],
    pub path: &'a [u8],
    /// No connection-specific fields (refused with `Invalid`).
    pub headers: &'a HeaderMap,
    /// No body follows.
    pub end_stream: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Recv {
    /// No final response head yet (1xx heads are skipped).
    Head,
    /// Head seen; DATA or trailers may come.
    Body,
}

#[derive(Debug)]
struct Stream {
    id: u32,
    recv: Recv,
    /// What we may still send (can go negative when the peer shrinks its
    /// initial window, RFC 9113 §6.9.2).
    send_window: i64,
    /// What the backend may still send before our next WINDOW_UPDATE.
    recv_window: i64,
    /// Released by the proxy and not yet given back in a WINDOW_UPDATE.
    credit: u32,
    /// Response bytes handed out and not yet released.
    unreleased: usize,
    /// Request body waiting for send window.
    body: VecDeque<Bytes>,
    body_bytes: usize,
    body_end: bool,
    /// Sent after the body, ending the stream (instead of an empty DATA
    /// frame with END_STREAM).
    trailers: Option<HeaderMap>,
    /// END_STREAM went out: our half is closed.
    end_sent: bool,
    /// The request was HEAD: a content-length in the response promises no
    /// body.
    head_request: bool,
    /// The response's content-length, checked against its DATA (§8.1.1).
    content_length: Option<u64>,
    received: u64,
}

/// Assembling a header block from HEADERS and CONTINUATION frames.
#[derive(Debug)]
struct Continuation {
    stream: u32,
    end_stream: bool,
}

/// One upstream HTTP/2 connection's client. Keys name streams; a key is
/// reused after its stream's last event.
pub struct H2Client {
    cfg: H2ClientConfig,
    /// Frames not yet taken by `poll_write`, from `out_at` on.
    out: Vec<u8>,
    out_at: usize,
    /// A frame split across reads (at most a header and our maximum
    /// frame size); whole frames are parsed where they lie.
    partial: Vec<u8>,
    decoder: Decoder,
    encoder: Encoder,
    /// The header block being assembled, and whose it is.
    block: Vec<u8>,
    continuation: Option<Continuation>,
    peer: Settings,
    conn_send_window: i64,
    conn_recv_window: i64,
    /// Released (or discarded) bytes not yet given back to the connection
    /// window.
    conn_credit: u32,
    streams: Vec<Option<Stream>>,
    /// (stream id, key) of the open streams, ascending by id (ids only
    /// grow, so a push keeps it sorted; a binary search finds a frame's).
    ids: Vec<(u32, u32)>,
    free: Vec<u32>,
    next_id: u32,
    events: VecDeque<(u32, H2Event)>,
    /// Streams with request body waiting for window.
    blocked: Vec<u32>,
    /// Request body bytes queued in all streams (`memory` is asked often).
    body_total: usize,
    /// The backend sent GOAWAY (or the connection ended): no new streams.
    going_away: bool,
    /// The connection ended; `Some(true)` for a clean end.
    ended: Option<bool>,
}

impl std::fmt::Debug for H2Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2Client")
            .field("active", &self.ids.len())
            .field("going_away", &self.going_away)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl H2Client {
    /// Starts the connection: the preface and SETTINGS are ready to write.
    pub fn new(cfg: H2ClientConfig) -> Self {
        let stream_window = cfg.stream_window.min(frame::MAX_WINDOW);
        let connection_window = cfg
            .connection_window
            .clamp(frame::DEFAULT_WINDOW, frame::MAX_WINDOW);
        let mut out = Vec::with_capacity(1024);
        out.extend_from_slice(frame::PREFACE);
        frame::write_settings(
            &mut out,
            &[
                (setting::ENABLE_PUSH, 0),
                (setting::INITIAL_WINDOW_SIZE, stream_window),
                (setting::MAX_HEADER_LIST_SIZE, MAX_HEADER_LIST as u32),
            ],
        );
        if connection_window > frame::DEFAULT_WINDOW {
            frame::write_window_update(&mut out, 0, connection_window - frame::DEFAULT_WINDOW);
        }
        H2Client {
            cfg: H2ClientConfig {
                stream_window,
                connection_window,
                ..cfg
            },
            out,
            out_at: 0,
            partial: Vec::new(),
            decoder: Decoder::new(DECODER_TABLE),
            encoder: {
                // Backends sit on a fast link: raw literals cost bytes
                // there, Huffman coding costs the loop's time.
                let mut e = Encoder::new();
                e.set_huffman(false);
                e
            },
            block: Vec::new(),
            continuation: None,
            peer: Settings::default(),
            conn_send_window: i64::from(frame::DEFAULT_WINDOW),
            conn_recv_window: i64::from(connection_window),
            conn_credit: 0,
            streams: Vec::new(),
            ids: Vec::new(),
            free: Vec::new(),
            next_id: 1,
            events: VecDeque::new(),
            blocked: Vec::new(),
            body_total: 0,
            going_away: false,
            ended: None,
        }
    }

    /// Streams open now.
    pub fn active(&self) -> usize {
        self.ids.len()
    }

    /// Streams that may be opened now: our limit and the peer's, less the
    /// open ones; none once the connection is going away.
    pub fn available(&self) -> usize {
        if self.going_away || self.ended.is_some() {
            return 0;
        }
        let peer = self.peer.max_concurrent_streams.unwrap_or(u32::MAX);
        // Stream ids run out at 2^31: the pool opens a new connection.
        if self.next_id > frame::MAX_WINDOW - 2 {
            return 0;
        }
        (self.cfg.max_streams.min(peer) as usize).saturating_sub(self.ids.len())
    }

    pub fn going_away(&self) -> bool {
        self.going_away || self.ended.is_some()
    }

    /// The connection is over (nothing more will be read; what is
    /// buffered may still be written).
    pub fn ended(&self) -> Option<bool> {
        self.ended
    }

    /// Opens a stream for `req`: its HEADERS are encoded into the output
    /// at once. Returns the stream's key.
    pub fn send_request(&mut self, req: ClientRequest<'_>) -> Result<u32, SendError> {
        if self.available() == 0 {
            return Err(SendError::NotReady);
        }
        if !valid_pseudo(req.method)
            || !valid_pseudo(req.authority)
            || !valid_pseudo(req.path)
            || req.path.is_empty()
            || req
                .headers
                .iter()
                .any(|(n, v)| fields::forbidden(n.as_str().as_bytes(), v.as_bytes()))
        {
            return Err(SendError::Invalid);
        }
        let id = self.next_id;
        self.next_id += 2;
        let at = frame::begin_headers(&mut self.out, id);
        let enc = &mut self.encoder;
        let out = &mut self.out;
        enc.begin_block(out);
        enc.encode(b":method", req.method, out);
        enc.encode(b":scheme", req.scheme.as_bytes(), out);
        enc.encode(b":authority", req.authority, out);
        enc.encode(b":path", req.path, out);
        for (name, value) in req.headers {
            let name = name.as_str().as_bytes();
            if value.is_sensitive() {
                enc.encode_never_indexed(name, value.as_bytes(), out);
            } else {
                enc.encode(name, value.as_bytes(), out);
            }
        }
        frame::finish_headers(out, at, req.end_stream, self.peer.max_frame_size);

        let key = match self.free.pop() {
            Some(k) => k,
            None => {
                self.streams.push(None);
                (self.streams.len() - 1) as u32
            }
        };
        self.streams[key as usize] = Some(Stream {
            id,
            recv: Recv::Head,
            send_window: i64::from(self.peer.initial_window_size),
            recv_window: i64::from(self.cfg.stream_window),
            credit: 0,
            unreleased: 0,
            body: VecDeque::new(),
            body_bytes: 0,
            body_end: req.end_stream,
            trailers: None,
            end_sent: req.end_stream,
            head_request: req.method == b"HEAD",
            content_length: None,
            received: 0,
        });
        self.ids.push((id, key));
        Ok(key)
    }

    /// Request body bytes for stream `key`; takes all of them (the caller
    /// bounds what it buffers). What the windows allow goes out at once.
    pub fn send_data(&mut self, key: u32, data: &[u8]) {
        let Some(s) = self.stream_mut(key) else {
            return;
        };
        if s.body_end || data.is_empty() {
            return;
        }
        s.body_bytes += data.len();
        s.body.push_back(Bytes::copy_from_slice(data));
        self.body_total += data.len();
        self.flush_body(key);
    }

    /// Body bytes of stream `key` not yet sent (waiting for window).
    pub fn unsent(&self, key: u32) -> usize {
        self.stream(key).map_or(0, |s| s.body_bytes)
    }

    /// The request body of `key` is complete; `trailers` follow it.
    pub fn end_request(&mut self, key: u32, trailers: Option<HeaderMap>) {
        let Some(s) = self.stream_mut(key) else {
            return;
        };
        if s.body_end {
            return;
        }
        s.body_end = true;
        s.trailers = trailers;
        self.flush_body(key);
    }

    /// The client took `n` response bytes of `key`: the backend may send
    /// that much more.
    pub fn release(&mut self, key: u32, n: usize) {
        let half_stream = self.cfg.stream_window / 2;
        let Some(s) = self.stream_mut(key) else {
            return;
        };
        let n = n.min(s.unreleased);
        s.unreleased -= n;
        let n = n as u32;
        s.credit += n;
        let (id, credit) = (s.id, s.credit);
        // Batched: one WINDOW_UPDATE per half window, not per DATA frame.
        if credit >= half_stream.max(1) {
            if let Some(s) = self.stream_mut(key) {
                s.credit = 0;
                s.recv_window += i64::from(credit);
            }
            frame::write_window_update(&mut self.out, id, credit);
        }
        self.credit_connection(n);
    }

    /// Abandons stream `key` (RST_STREAM CANCEL if it is still open): no
    /// further event comes for it, and its key is free.
    pub fn reset(&mut self, key: u32) {
        let queued_last = self
            .events
            .iter()
            .any(|(k, ev)| *k == key && matches!(ev, H2Event::End | H2Event::Failed(_)));
        self.events.retain(|(k, _)| *k != key);
        if queued_last {
            // It had ended already; its last event was never polled.
            self.free.push(key);
            return;
        }
        let Some(s) = self.streams.get_mut(key as usize).and_then(Option::take) else {
            return;
        };
        if self.ended.is_none() {
            frame::write_rst_stream(&mut self.out, s.id, ErrorCode::Cancel);
        }
        // What the proxy never released is the connection's again.
        self.credit_connection(s.unreleased as u32);
        self.body_total -= s.body_bytes;
        self.forget_id(s.id);
        self.blocked.retain(|k| *k != key);
        self.free.push(key);
    }

    /// Bytes from the backend; how many were taken (all, unless a frame
    /// split across reads does not fit the read buffer).
    pub fn on_read(&mut self, data: &[u8]) -> usize {
        let mut at = 0;
        while at < data.len() && self.ended.is_none() {
            if !self.partial.is_empty() {
                at += self.complete_partial(&data[at..]);
                continue;
            }
            match frame::parse_from(&data[at..], frame::DEFAULT_MAX_FRAME_SIZE) {
                Some((r, used)) => {
                    at += used;
                    self.on_frame_result(r);
                }
                None => {
                    // The start of a frame: kept until the rest comes.
                    at += self.complete_partial(&data[at..]);
                }
            }
        }
        // Once the connection ended, input is read and dropped.
        data.len()
    }

    /// Adds to the frame split across reads what it still lacks of
    /// `input`, and handles the frame once whole; bytes taken.
    fn complete_partial(&mut self, input: &[u8]) -> usize {
        let have = self.partial.len();
        let want = if have < frame::HEADER_LEN {
            frame::HEADER_LEN
        } else {
            let head = frame_head(&self.partial);
            frame::HEADER_LEN + head.len as usize
        };
        let n = (want - have).min(input.len());
        self.partial.extend_from_slice(&input[..n]);
        if self.partial.len() == frame::HEADER_LEN && have < frame::HEADER_LEN {
            // The length is known: refuse an oversized frame before
            // buffering it.
            let head = frame_head(&self.partial);
            if let Err(e) = frame::check_len(&head, frame::DEFAULT_MAX_FRAME_SIZE) {
                self.partial.clear();
                self.on_frame_error(e);
                return n;
            }
            if head.len > 0 {
                return n;
            }
        }
        if self.partial.len() < frame::HEADER_LEN
            || self.partial.len() < frame::HEADER_LEN + frame_head(&self.partial).len as usize
        {
            return n;
        }
        let buf = std::mem::take(&mut self.partial);
        if let Some((r, _)) = frame::parse_from(&buf, frame::DEFAULT_MAX_FRAME_SIZE) {
            self.on_frame_result(r);
        }
        self.partial = buf;
        self.partial.clear();
        n
    }

    pub fn on_read_eof(&mut self) {
        if self.ended.is_some() {
            return;
        }
        let clean = self.ids.is_empty();
        self.end_connection(StreamFailure::Reset, clean);
    }

    pub fn wants_read(&self) -> bool {
        self.ended.is_none()
    }

    pub fn wants_write(&self) -> bool {
        self.out.len() > self.out_at
    }

    /// Bytes for the backend.
    pub fn poll_write(&mut self, buf: &mut [u8]) -> usize {
        let pending = &self.out[self.out_at..];
        let n = pending.len().min(buf.len());
        buf[..n].copy_from_slice(&pending[..n]);
        self.out_at += n;
        if self.out_at == self.out.len() {
            self.out.clear();
            self.out_at = 0;
            if !self.blocked.is_empty() && self.ended.is_none() {
                // Room again: bodies held back by the write cap go on.
                self.flush_blocked();
            }
        }
        n
    }

    /// The next event of any stream.
    pub fn poll_event(&mut self) -> Option<(u32, H2Event)> {
        let (key, ev) = self.events.pop_front()?;
        if matches!(ev, H2Event::End | H2Event::Failed(_)) {
            // Only now: a key reused earlier would mix two streams' events.
            self.free.push(key);
        }
        Some((key, ev))
    }

    /// Bytes held: buffers, HPACK tables and queued bodies.
    pub fn memory(&self) -> usize {
        debug_assert_eq!(
            self.body_total,
            self.streams
                .iter()
                .flatten()
                .map(|s| s.body_bytes)
                .sum::<usize>()
        );
        let bodies = self.body_total;
        self.out.capacity()
            + self.partial.capacity()
            + self.block.capacity()
            + self.decoder.table_size()
            + DECODER_TABLE
            + bodies
    }

    pub fn release_memory(&mut self) {
        if self.out_at == self.out.len() {
            self.out = Vec::new();
            self.out_at = 0;
        }
        if self.continuation.is_none() {
            self.block = Vec::new();
        }
        if self.partial.is_empty() {
            self.partial = Vec::new();
        }
    }

    fn stream(&self, key: u32) -> Option<&Stream> {
        self.streams.get(key as usize)?.as_ref()
    }

    fn stream_mut(&mut self, key: u32) -> Option<&mut Stream> {
        self.streams.get_mut(key as usize)?.as_mut()
    }

    fn key_of(&self, id: u32) -> Option<u32> {
        let i = self.ids.binary_search_by_key(&id, |&(i, _)| i).ok()?;
        Some(self.ids[i].1)
    }

    fn forget_id(&mut self, id: u32) {
        if let Ok(i) = self.ids.binary_search_by_key(&id, |&(i, _)| i) {
            self.ids.remove(i);
        }
    }

    /// Gives `n` bytes back to the connection window, in batches.
    fn credit_connection(&mut self, n: u32) {
        self.conn_credit = self.conn_credit.saturating_add(n);
        if self.conn_credit >= (self.cfg.connection_window / 2).max(1) && self.ended.is_none() {
            frame::write_window_update(&mut self.out, 0, self.conn_credit);
            self.conn_recv_window += i64::from(self.conn_credit);
            self.conn_credit = 0;
        }
    }

    /// Queues a stream's last event and closes it; its key is freed when
    /// the caller has seen the event.
    fn finish(&mut self, key: u32, ev: H2Event) {
        self.events.push_back((key, ev));
        if let Some(s) = self.streams.get_mut(key as usize).and_then(Option::take) {
            self.body_total -= s.body_bytes;
            self.forget_id(s.id);
            self.blocked.retain(|k| *k != key);
            // Its key can no longer release what it holds: the connection
            // window gets it back now (the proxy's buffer bounds it).
            self.credit_connection(s.unreleased as u32);
        }
        if self.going_away && self.ids.is_empty() && self.ended.is_none() {
            // After a graceful GOAWAY the last stream closes the connection.
            self.ended = Some(true);
        }
    }

    /// Fails stream `key` with RST_STREAM(code) to the backend.
    fn reset_stream(&mut self, key: u32, code: ErrorCode, failure: StreamFailure) {
        if let Some(id) = self.stream(key).map(|s| s.id) {
            frame::write_rst_stream(&mut self.out, id, code);
        }
        self.finish(key, H2Event::Failed(failure));
    }

    /// Ends the connection: open streams fail with `failure`.
    fn end_connection(&mut self, failure: StreamFailure, clean: bool) {
        self.ended = Some(clean);
        self.going_away = true;
        let keys: Vec<u32> = self.ids.iter().map(|&(_, k)| k).collect();
        for k in keys {
            self.finish(k, H2Event::Failed(failure));
        }
        self.continuation = None;
        self.blocked.clear();
    }

    /// A connection error (RFC 9113 §5.4.1): GOAWAY, and everything open
    /// fails.
    fn connection_error(&mut self, code: ErrorCode) {
        // We accept no streams from the backend: the last one we processed
        // is 0.
        frame::write_goaway(&mut self.out, 0, code, b"");
        self.end_connection(StreamFailure::Protocol, false);
    }

    /// Sends what the windows and the write cap allow of `key`'s body,
    /// then its end (trailers or an empty END_STREAM DATA frame).
    fn flush_body(&mut self, key: u32) {
        let write_cap = self.cfg.write_cap;
        let max_frame = self.peer.max_frame_size;
        let Some(s) = self.streams.get_mut(key as usize).and_then(Option::as_mut) else {
            return;
        };
        while !s.body.is_empty() {
            let queued = s.body.len();
            let front = s.body.front_mut().expect("not empty");
            let room = write_cap.saturating_sub(self.out.len() - self.out_at);
            let window = s.send_window.min(self.conn_send_window);
            let n = (front.len() as i64).min(window).min(room as i64);
            if n <= 0 {
                if !self.blocked.contains(&key) {
                    self.blocked.push(key);
                }
                return;
            }
            let n = n as usize;
            let last = n == front.len() && queued == 1;
            let end = last && s.body_end && s.trailers.is_none();
            frame::write_data(&mut self.out, s.id, &front[..n], end, max_frame);
            s.send_window -= n as i64;
            self.conn_send_window -= n as i64;
            s.body_bytes -= n;
            self.body_total -= n;
            if n == front.len() {
                s.body.pop_front();
            } else {
                let _ = front.split_to(n);
            }
            if end {
                s.end_sent = true;
            }
        }
        if s.body_end && !s.end_sent {
            s.end_sent = true;
            match s.trailers.take() {
                Some(t) => {
                    let id = s.id;
                    let at = frame::begin_headers(&mut self.out, id);
                    self.encoder.begin_block(&mut self.out);
                    for (name, value) in &t {
                        let name = name.as_str().as_bytes();
                        if value.is_sensitive() {
                            self.encoder.encode_never_indexed(
                                name,
                                value.as_bytes(),
                                &mut self.out,
                            );
                        } else {
                            self.encoder.encode(name, value.as_bytes(), &mut self.out);
                        }
                    }
                    frame::finish_headers(&mut self.out, at, true, max_frame);
                }
                None => frame::write_data(&mut self.out, s.id, &[], true, max_frame),
            }
        }
        self.blocked.retain(|k| *k != key);
    }

    fn flush_blocked(&mut self) {
        let keys = std::mem::take(&mut self.blocked);
        for k in keys {
            self.flush_body(k);
        }
    }

    fn on_frame_result(&mut self, r: Result<Frame<'_>, FrameError>) {
        match r {
            Ok(f) => self.on_frame(f),
            Err(e) => self.on_frame_error(e),
        }
    }

    fn on_frame_error(&mut self, e: FrameError) {
        match e {
            FrameError::Connection(code) => self.connection_error(code),
            FrameError::Stream(id, code) => match self.key_of(id) {
                Some(k) => self.reset_stream(k, code, StreamFailure::Protocol),
                None => frame::write_rst_stream(&mut self.out, id, code),
            },
        }
    }

    fn on_frame(&mut self, f: Frame<'_>) {
        if let Some(c) = &self.continuation {
            // RFC 9113 §6.10: nothing may come between a HEADERS frame
            // without END_HEADERS and its CONTINUATIONs.
            match f {
                Frame::Continuation {
                    stream,
                    end_headers,
                    fragment,
                } if stream == c.stream => {
                    if self.block.len() + fragment.len() > MAX_HEADER_LIST {
                        return self.connection_error(ErrorCode::EnhanceYourCalm);
                    }
                    self.block.extend_from_slice(fragment);
                    if end_headers {
                        let c = self.continuation.take().expect("checked");
                        let block = std::mem::take(&mut self.block);
                        self.on_header_block(c.stream, &block, c.end_stream);
                        self.block = block;
                        self.block.clear();
                    }
                    return;
                }
                _ => return self.connection_error(ErrorCode::ProtocolError),
            }
        }
        match f {
            Frame::Data {
                stream,
                end_stream,
                data,
                flow_len,
            } => self.on_data(stream, end_stream, data, flow_len),
            Frame::Headers {
                stream,
                end_stream,
                end_headers,
                fragment,
                ..
            } => {
                if !self.is_ours(stream) {
                    return self.connection_error(ErrorCode::ProtocolError);
                }
                if end_headers {
                    self.on_header_block(stream, fragment, end_stream);
                } else {
                    self.block.clear();
                    self.block.extend_from_slice(fragment);
                    self.continuation = Some(Continuation { stream, end_stream });
                }
            }
            Frame::Continuation { .. } | Frame::PushPromise { .. } => {
                // No header block is open; push was disabled (§8.4).
                self.connection_error(ErrorCode::ProtocolError)
            }
            Frame::RstStream { stream, code } => {
                if !self.is_ours(stream) {
                    return self.connection_error(ErrorCode::ProtocolError);
                }
                if let Some(k) = self.key_of(stream) {
                    let failure = if code == ErrorCode::RefusedStream as u32 {
                        StreamFailure::Refused
                    } else {
                        StreamFailure::Reset
                    };
                    self.finish(k, H2Event::Failed(failure));
                }
            }
            Frame::Settings { ack, params } => {
                if ack {
                    return;
                }
                let before = self.peer;
                if let Err(e) = self.peer.apply(params) {
                    return self.on_frame_error(e);
                }
                frame::write_settings_ack(&mut self.out);
                if self.peer.header_table_size != before.header_table_size {
                    self.encoder
                        .set_peer_max_table_size(self.peer.header_table_size as usize);
                }
                let delta = i64::from(self.peer.initial_window_size)
                    - i64::from(before.initial_window_size);
                if delta != 0 {
                    for s in self.streams.iter_mut().flatten() {
                        s.send_window += delta;
                        if s.send_window > i64::from(frame::MAX_WINDOW) {
                            return self.connection_error(ErrorCode::FlowControlError);
                        }
                    }
                    if delta > 0 {
                        self.flush_all();
                    }
                }
            }
            Frame::Ping { ack, data } => {
                if !ack {
                    frame::write_ping(&mut self.out, true, data);
                }
            }
            Frame::GoAway {
                last_stream, code, ..
            } => {
                self.going_away = true;
                // Streams above its last id were never processed: safe to
                // send elsewhere, whatever the error code.
                let refused: Vec<u32> = self
                    .ids
                    .iter()
                    .filter(|&&(id, _)| id > last_stream)
                    .map(|&(_, k)| k)
                    .collect();
                for k in refused {
                    self.finish(k, H2Event::Failed(StreamFailure::Refused));
                }
                if code != ErrorCode::NoError as u32 {
                    // An error: the backend closes; what is left fails now.
                    self.end_connection(StreamFailure::Reset, false);
                } else if self.ids.is_empty() {
                    self.ended = Some(true);
                }
            }
            Frame::WindowUpdate { stream, increment } => {
                if stream == 0 {
                    self.conn_send_window += i64::from(increment);
                    if self.conn_send_window > i64::from(frame::MAX_WINDOW) {
                        return self.connection_error(ErrorCode::FlowControlError);
                    }
                    self.flush_all();
                    return;
                }
                if !self.is_ours(stream) {
                    return self.connection_error(ErrorCode::ProtocolError);
                }
                let Some(k) = self.key_of(stream) else {
                    return;
                };
                let over = self.stream_mut(k).is_some_and(|s| {
                    s.send_window += i64::from(increment);
                    s.send_window > i64::from(frame::MAX_WINDOW)
                });
                if over {
                    return self.reset_stream(
                        k,
                        ErrorCode::FlowControlError,
                        StreamFailure::Protocol,
                    );
                }
                self.flush_body(k);
            }
            Frame::Priority { .. } | Frame::Unknown { .. } => {}
        }
    }

    fn flush_all(&mut self) {
        let keys: Vec<u32> = self
            .ids
            .iter()
            .map(|&(_, k)| k)
            .filter(|&k| self.stream(k).is_some_and(|s| !s.end_sent))
            .collect();
        for k in keys {
            self.flush_body(k);
        }
    }

    /// A stream id we opened (open or closed since); frames on any other
    /// are a connection error (§5.1: idle, or a server-initiated id while
    /// push is off).
    fn is_ours(&self, id: u32) -> bool {
        id % 2 == 1 && id < self.next_id
    }

    fn on_data(&mut self, id: u32, end_stream: bool, data: &[u8], flow_len: u32) {
        self.conn_recv_window -= i64::from(flow_len);
        if self.conn_recv_window < 0 {
            return self.connection_error(ErrorCode::FlowControlError);
        }
        if !self.is_ours(id) {
            return self.connection_error(ErrorCode::ProtocolError);
        }
        let Some(k) = self.key_of(id) else {
            // A stream we closed: nobody takes these bytes.
            return self.credit_connection(flow_len);
        };
        let padding = flow_len - data.len() as u32;
        let s = self.streams[k as usize].as_mut().expect("open stream");
        s.recv_window -= i64::from(flow_len);
        if s.recv_window < 0 {
            self.credit_connection(padding);
            return self.reset_stream(k, ErrorCode::FlowControlError, StreamFailure::Protocol);
        }
        if s.recv != Recv::Body {
            // DATA before the response head (§8.1).
            self.credit_connection(flow_len);
            return self.reset_stream(k, ErrorCode::ProtocolError, StreamFailure::Protocol);
        }
        s.received += data.len() as u64;
        s.unreleased += data.len();
        // Padding is nobody's to release: give it back now.
        s.credit += padding;
        let over_length = s.content_length.is_some_and(|cl| {
            s.received > cl || (end_stream && s.received != cl && !s.head_request)
        });
        if !data.is_empty() {
            self.events
                .push_back((k, H2Event::Data(Bytes::copy_from_slice(data))));
        }
        self.credit_connection(padding);
        if over_length {
            return self.reset_stream(k, ErrorCode::ProtocolError, StreamFailure::Protocol);
        }
        if end_stream {
            self.end_response(k);
        }
    }

    /// The response is complete. If our request is still being sent, the
    /// backend answered early (§8.1): the rest is cancelled.
    fn end_response(&mut self, key: u32) {
        let open_request = self.stream(key).map(|s| (s.id, !s.end_sent));
        if let Some((id, true)) = open_request {
            frame::write_rst_stream(&mut self.out, id, ErrorCode::Cancel);
        }
        self.finish(key, H2Event::End);
    }

    fn on_header_block(&mut self, id: u32, block: &[u8], end_stream: bool) {
        let key = self.key_of(id);
        let recv = key.and_then(|k| self.stream(k)).map(|s| s.recv);
        let mut head = HeadBuilder::new(recv == Some(Recv::Body));
        let decoded = self.decoder.decode(block, |f| head.field(&f));
        if decoded.is_err() {
            // The HPACK state is lost: the connection cannot go on.
            return self.connection_error(ErrorCode::CompressionError);
        }
        let Some(key) = key else {
            // A stream we closed: decoded only to keep HPACK in step.
            return;
        };
        let Some(head) = head.finish() else {
            return self.reset_stream(key, ErrorCode::ProtocolError, StreamFailure::Protocol);
        };
        match head {
            Decoded::Trailers(map) => {
                if !end_stream {
                    return self.reset_stream(
                        key,
                        ErrorCode::ProtocolError,
                        StreamFailure::Protocol,
                    );
                }
                let short = self.stream(key).is_some_and(|s| {
                    s.content_length.is_some_and(|cl| cl != s.received) && !s.head_request
                });
                if short {
                    return self.reset_stream(
                        key,
                        ErrorCode::ProtocolError,
                        StreamFailure::Protocol,
                    );
                }
                self.events.push_back((key, H2Event::Trailers(map)));
                self.end_response(key);
            }
            Decoded::Response {
                status,
                headers,
                content_length,
            } => {
                if (100..200).contains(&status) {
                    // Interim responses are not forwarded (docs/proxy.md);
                    // one with END_STREAM is malformed (§8.1).
                    if end_stream {
                        self.reset_stream(key, ErrorCode::ProtocolError, StreamFailure::Protocol);
                    }
                    return;
                }
                let Some(s) = self.stream_mut(key) else {
                    return;
                };
                s.recv = Recv::Body;
                s.content_length = content_length;
                let empty_ok = s.head_request || status == 204 || status == 304;
                let short = end_stream && !empty_ok && content_length.is_some_and(|cl| cl > 0);
                self.events.push_back((
                    key,
                    H2Event::Head {
                        status,
                        headers,
                        end_stream,
                    },
                ));
                if short {
                    return self.reset_stream(
                        key,
                        ErrorCode::ProtocolError,
                        StreamFailure::Protocol,
                    );
                }
                if end_stream {
                    self.end_response(key);
                }
            }
        }
    }
}

enum Decoded {
    Response {
        status: u16,
        headers: HeaderMap,
        content_length: Option<u64>,
    },
    Trailers(HeaderMap),
}

/// Collects a response head (or trailers) as the decoder hands out its
/// fields, checking RFC 9113 §8.3.2: exactly one `:status` before any
/// regular field, lowercase names, no connection-specific fields.
struct HeadBuilder {
    trailers: bool,
    status: Option<u16>,
    headers: HeaderMap,
    content_length: Option<u64>,
    malformed: bool,
    regular_seen: bool,
    size: usize,
}

impl HeadBuilder {
    fn new(trailers: bool) -> Self {
        HeadBuilder {
            trailers,
            status: None,
            headers: HeaderMap::with_capacity(12),
            content_length: None,
            malformed: false,
            regular_seen: false,
            size: 0,
        }
    }

    fn field(&mut self, f: &Field<'_>) {
        if self.malformed {
            return;
        }
        self.size += f.name.len() + f.value.len() + 32;
        if self.size > MAX_HEADER_LIST {
            self.malformed = true;
            return;
        }
        if f.name.first() == Some(&b':') {
            if self.trailers || self.regular_seen || self.status.is_some() || f.name != b":status" {
                self.malformed = true;
                return;
            }
            self.status = parse_status(f.value);
            self.malformed = self.status.is_none();
            return;
        }
        self.regular_seen = true;
        if fields::forbidden(f.name, f.value) {
            self.malformed = true;
            return;
        }
        let (Some(name), Some(value)) = (fields::name_of(f), fields::value_of(f)) else {
            self.malformed = true;
            return;
        };
        if name == http::header::CONTENT_LENGTH {
            let n = parse_u64(f.value);
            if n.is_none() || (self.content_length.is_some() && self.content_length != n) {
                self.malformed = true;
                return;
            }
            self.content_length = n;
        }
        self.headers.append(name, value);
    }

    fn finish(self) -> Option<Decoded> {
        if self.malformed {
            return None;
        }
        if self.trailers {
            return Some(Decoded::Trailers(self.headers));
        }
        Some(Decoded::Response {
            status: self.status?,
            headers: self.headers,
            content_length: self.content_length,
        })
    }
}

fn frame_head(b: &[u8]) -> Head {
    let mut h = [0u8; frame::HEADER_LEN];
    h.copy_from_slice(&b[..frame::HEADER_LEN]);
    Head::parse(&h)
}

fn parse_status(v: &[u8]) -> Option<u16> {
    if v.len() != 3 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let s = v.iter().fold(0u16, |a, d| a * 10 + u16::from(d - b'0'));
    // 101 has no meaning in HTTP/2 (§8.6).
    (s >= 100 && s != 101).then_some(s)
}

fn parse_u64(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0u64, |a, d| a * 10 + u64::from(d - b'0')))
}

/// Bytes a pseudo-header may carry to a backend: visible ASCII (no
/// spaces, controls, or bytes a backend's parser would split on).
fn valid_pseudo(v: &[u8]) -> bool {
    v.iter().all(|&b| b > 0x20 && b < 0x7f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_parsing_follows_rfc9113() {
        assert_eq!(parse_status(b"200"), Some(200));
        assert_eq!(parse_status(b"103"), Some(103));
        assert_eq!(parse_status(b"101"), None);
        assert_eq!(parse_status(b"099"), None);
        assert_eq!(parse_status(b"20"), None);
        assert_eq!(parse_status(b"2x0"), None);
    }

    #[test]
    fn head_builder_rejects_malformed_responses() {
        let f = |name: &'static [u8], value: &'static [u8]| Field {
            name,
            value,
            static_name: None,
            never_index: false,
        };
        let mut h = HeadBuilder::new(false);
        h.field(&f(b"server", b"x"));
        h.field(&f(b":status", b"200"));
        assert!(h.finish().is_none(), "pseudo after regular");

        let mut h = HeadBuilder::new(false);
        h.field(&f(b":status", b"200"));
        h.field(&f(b"Server", b"x"));
        assert!(h.finish().is_none(), "uppercase name");

        let mut h = HeadBuilder::new(false);
        h.field(&f(b":status", b"200"));
        h.field(&f(b"connection", b"close"));
        assert!(h.finish().is_none(), "connection-specific");

        let mut h = HeadBuilder::new(true);
        h.field(&f(b":status", b"200"));
        assert!(h.finish().is_none(), "pseudo in trailers");

        let mut h = HeadBuilder::new(false);
        h.field(&f(b":status", b"200"));
        h.field(&f(b"content-length", b"5"));
        h.field(&f(b"content-length", b"6"));
        assert!(h.finish().is_none(), "conflicting content-length");

        let mut h = HeadBuilder::new(false);
        h.field(&f(b":status", b"204"));
        h.field(&f(b"x-a", b"1"));
        match h.finish() {
            Some(Decoded::Response {
                status, headers, ..
            }) => {
                assert_eq!(status, 204);
                assert_eq!(headers["x-a"], "1");
            }
            _ => panic!("valid head refused"),
        }
    }
}
