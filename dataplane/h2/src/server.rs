//! The HTTP/2 server side of a downstream connection on sluice's own codec
//! (sluice-h2codec): a sans-IO state machine with no runtime, no wakers
//! and no locks, the counterpart of [`crate::H2Client`].
//!
//! The caller feeds the client's bytes ([`ServerConn::on_read`]), takes
//! requests as [`ServerEvent`]s and answers with
//! [`ServerConn::send_response`], [`ServerConn::send_data`] and
//! [`ServerConn::end_response`]. Flow control is the backpressure: request
//! DATA counts against the stream's window until the caller says it took
//! it ([`ServerConn::release`]); response DATA waits in its stream for the
//! client's windows and for room under the write cap.
//!
//! Rate limits on frames that cost work for nothing (floods) stay with
//! the caller: [`ServerConn::take_frame_counts`] says what came.

use std::collections::VecDeque;

use bytes::Bytes;
use http::{HeaderMap, Method};
use sluice_h2codec::frame::{self, setting, ErrorCode, Frame, FrameError, Head, Settings};
use sluice_h2codec::hpack::{Decoder, Encoder, Field};

use crate::fields;

/// HPACK table we let the client use (the default: we do not advertise
/// SETTINGS_HEADER_TABLE_SIZE).
const DECODER_TABLE: usize = 4096;
/// Streams we reset whose late frames are ignored (h2 keeps twice the
/// stream limit; a few in flight per stream is what an honest client has).
const RECENT_RESETS: usize = 64;
/// CONTINUATION frames one header block may take.
const MAX_CONTINUATIONS: u32 = 32;
/// Gaps in the client's stream ids remembered (see `ServerConn::skipped`).
const MAX_SKIPPED: usize = 16;

/// Settings of one downstream HTTP/2 connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerConnConfig {
    /// SETTINGS_INITIAL_WINDOW_SIZE: request body bytes a client may send
    /// on a stream before the caller released them.
    pub initial_stream_window: u32,
    /// Receive window of the whole connection.
    pub connection_window: u32,
    /// SETTINGS_MAX_FRAME_SIZE: larger frames are a FRAME_SIZE_ERROR.
    pub max_frame_size: u32,
    /// SETTINGS_MAX_CONCURRENT_STREAMS: more are refused (REFUSED_STREAM).
    pub max_concurrent_streams: u32,
    /// SETTINGS_MAX_HEADER_LIST_SIZE (RFC 7541 §4.1 sizes): a larger
    /// request head is answered 431; a header block assembled from
    /// CONTINUATION frames beyond twice this ends the connection.
    pub max_header_list_size: u32,
    /// Output bytes buffered before the transport took them; response
    /// bodies wait in their streams beyond it.
    pub write_cap: usize,
}

impl Default for ServerConnConfig {
    fn default() -> Self {
        ServerConnConfig::from_h2(&crate::H2Config::default())
    }
}

impl ServerConnConfig {
    /// The server's `--h2-*` settings, clamped to the ranges RFC 9113
    /// allows (never a panic on a configured value).
    pub fn from_h2(c: &crate::H2Config) -> Self {
        ServerConnConfig {
            initial_stream_window: c.initial_stream_window.min(frame::MAX_WINDOW),
            connection_window: c
                .connection_window
                .clamp(frame::DEFAULT_WINDOW, frame::MAX_WINDOW),
            max_frame_size: c
                .max_frame_size
                .clamp(frame::DEFAULT_MAX_FRAME_SIZE, frame::MAX_MAX_FRAME_SIZE),
            max_concurrent_streams: c.max_concurrent_streams,
            max_header_list_size: c.max_header_list_size.max(1024),
            write_cap: c.write_cap(),
        }
    }

    fn clamped(self) -> Self {
        ServerConnConfig {
            initial_stream_window: self.initial_stream_window.min(frame::MAX_WINDOW),
            connection_window: self
                .connection_window
                .clamp(frame::DEFAULT_WINDOW, frame::MAX_WINDOW),
            max_frame_size: self
                .max_frame_size
                .clamp(frame::DEFAULT_MAX_FRAME_SIZE, frame::MAX_MAX_FRAME_SIZE),
            write_cap: self.write_cap.max(1024),
            ..self
        }
    }
}

/// A request head, validated (RFC 9113 §8.3.1).
#[derive(Debug, Clone)]
pub struct RequestHead {
    pub method: Method,
    /// `None` only for CONNECT.
    pub scheme: Option<Bytes>,
    pub authority: Option<Bytes>,
    /// Empty only for CONNECT.
    pub path: Bytes,
    pub headers: HeaderMap,
    /// The content-length field, checked against the DATA received.
    pub content_length: Option<u64>,
}

/// What happened on a stream.
///
/// A stream's request side ends with `End` (or with `Request` whose
/// `end_stream` is set), or with `Reset`. The key is free for a new stream
/// once the request side ended *and* the response ended
/// ([`ServerConn::end_response`], or `send_response` with `end_stream`),
/// or right after `Reset`, or after [`ServerConn::reset`].
#[derive(Debug)]
pub enum ServerEvent {
    /// `end_stream`: the request has no body and no trailers (no `End`
    /// follows).
    Request {
        head: RequestHead,
        end_stream: bool,
    },
    Data(Bytes),
    /// The request's trailers; `End` follows.
    Trailers(HeaderMap),
    /// The request body is complete.
    End,
    /// The stream is gone: the client's RST_STREAM code, ours when we
    /// reset it for a protocol error, NO_ERROR when the response ended
    /// before the request did (§8.1: we told the client to stop sending),
    /// or the connection's error when it failed (CANCEL when it closed).
    /// The key is free after this event.
    Reset(u32),
}

/// Frames received (and RST_STREAM sent) since the last
/// [`ServerConn::take_frame_counts`], for the caller's flood bounds; and
/// the useful work that earns tokens back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameCounts {
    /// PING frames (ACKs excluded).
    pub ping: u32,
    /// SETTINGS frames (ACKs excluded).
    pub settings: u32,
    pub window_update: u32,
    /// PRIORITY and unknown frame types.
    pub priority: u32,
    /// DATA and HEADERS without END_STREAM, and CONTINUATION, that carry
    /// no payload.
    pub empty: u32,
    pub rst_stream_received: u32,
    /// RST_STREAM we sent because of the client (errors, refusals),
    /// not those the caller asked for.
    pub rst_stream_sent: u32,
    /// Requests accepted (streams opened).
    pub requests: u32,
    /// Responses whose END_STREAM went out.
    pub responses: u32,
    /// DATA frames written.
    pub data_sent: u32,
    /// HEADERS frames written (heads and trailers).
    pub headers_sent: u32,
}

#[derive(Debug)]
struct Stream {
    id: u32,
    /// The client's END_STREAM came: no more DATA or trailers.
    recv_end: bool,
    /// The caller took the request side's last event (`End`, or a
    /// `Request` with `end_stream`).
    last_polled: bool,
    /// What we may still send (negative when the client shrinks its
    /// initial window, RFC 9113 §6.9.2).
    send_window: i64,
    /// What the client may still send before our next WINDOW_UPDATE.
    recv_window: i64,
    /// Released by the caller and not yet given back.
    credit: u32,
    /// Request bytes handed out and not yet released.
    unreleased: usize,
    content_length: Option<u64>,
    received: u64,
    /// The final response head went out.
    head_sent: bool,
    /// Response body waiting for window or room.
    body: VecDeque<Bytes>,
    /// Response body bytes written so far (progress, for stall timers).
    body_sent: u64,
    body_bytes: usize,
    /// The caller ended the response.
    body_end: bool,
    trailers: Option<HeaderMap>,
    /// Our END_STREAM went out.
    end_sent: bool,
}

enum Slot {
    Free,
    Open(Stream),
    /// Closed; its last event is still queued.
    Closing,
}

/// Assembling a header block from HEADERS and CONTINUATION frames.
#[derive(Debug)]
struct Continuation {
    stream: u32,
    end_stream: bool,
    /// The HEADERS opened a new stream.
    new: bool,
    /// CONTINUATION frames so far.
    frames: u32,
}

/// One downstream HTTP/2 connection's server. Keys name streams; a key
/// is reused after its stream is over (see [`ServerEvent`]).
pub struct ServerConn {
    cfg: ServerConnConfig,
    /// Preface bytes checked so far (24: all).
    preface_at: usize,
    /// A connection error we ended the connection with.
    error_sent: Option<ErrorCode>,
    /// A GOAWAY of ours went into the output.
    goaway_written: bool,
    /// Streams we reset lately, whose late frames are no error.
    recently_reset: VecDeque<u32>,
    /// A WINDOW_UPDATE (or SETTINGS) gave window during this read: the
    /// blocked streams are flushed at its end.
    window_opened: bool,
    /// The first frame after the preface (a SETTINGS, §3.4) came.
    settings_seen: bool,
    /// Our SETTINGS were acknowledged: the advertised stream window holds.
    settings_acked: bool,
    /// Frames not yet taken by `poll_write`, from `out_at` on.
    out: Vec<u8>,
    out_at: usize,
    /// A frame split across reads (at most a header and our maximum
    /// frame size); whole frames are parsed where they lie.
    partial: Vec<u8>,
    decoder: Decoder,
    encoder: Encoder,
    block: Vec<u8>,
    continuation: Option<Continuation>,
    peer: Settings,
    conn_send_window: i64,
    conn_recv_window: i64,
    conn_credit: u32,
    slots: Vec<Slot>,
    /// (stream id, key) of the open streams, ascending by id (client ids
    /// only grow, so a push keeps it sorted).
    ids: Vec<(u32, u32)>,
    free: Vec<u32>,
    /// The highest stream id the client opened (or tried to).
    last_client_id: u32,
    /// The latest ranges of ids the client skipped (first, last): a
    /// HEADERS there breaks §5.1.1 (PROTOCOL_ERROR), while one on an id
    /// that was used is on a closed stream (STREAM_CLOSED). Bounded:
    /// older gaps are forgotten and then count as closed streams.
    skipped: Vec<(u32, u32)>,
    events: VecDeque<(u32, ServerEvent)>,
    /// Bytes of DATA events not yet polled.
    queued_data: usize,
    /// Streams with response body waiting for window or room.
    blocked: Vec<u32>,
    /// We sent GOAWAY: streams above this id are ignored.
    goaway_last: Option<u32>,
    /// The client sent a graceful GOAWAY.
    peer_going_away: bool,
    ping_ack: Option<[u8; 8]>,
    counts: FrameCounts,
    ended: Option<bool>,
}

impl std::fmt::Debug for ServerConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConn")
            .field("active", &self.ids.len())
            .field("goaway_last", &self.goaway_last)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl ServerConn {
    /// A connection whose client preface is still to come: our SETTINGS
    /// (and the connection WINDOW_UPDATE) are ready to write at once,
    /// which §3.4 allows before the preface arrived.
    pub fn new(cfg: ServerConnConfig) -> Self {
        let cfg = cfg.clamped();
        let mut out = Vec::with_capacity(256);
        frame::write_settings(
            &mut out,
            &[
                (setting::MAX_CONCURRENT_STREAMS, cfg.max_concurrent_streams),
                (setting::INITIAL_WINDOW_SIZE, cfg.initial_stream_window),
                (setting::MAX_FRAME_SIZE, cfg.max_frame_size),
                (setting::MAX_HEADER_LIST_SIZE, cfg.max_header_list_size),
            ],
        );
        if cfg.connection_window > frame::DEFAULT_WINDOW {
            frame::write_window_update(&mut out, 0, cfg.connection_window - frame::DEFAULT_WINDOW);
        }
        ServerConn {
            cfg,
            preface_at: 0,
            error_sent: None,
            goaway_written: false,
            recently_reset: VecDeque::new(),
            window_opened: false,
            settings_seen: false,
            settings_acked: false,
            out,
            out_at: 0,
            partial: Vec::new(),
            decoder: Decoder::new(DECODER_TABLE),
            encoder: Encoder::new(),
            block: Vec::new(),
            continuation: None,
            peer: Settings::default(),
            conn_send_window: i64::from(frame::DEFAULT_WINDOW),
            conn_recv_window: i64::from(cfg.connection_window),
            conn_credit: 0,
            slots: Vec::new(),
            ids: Vec::new(),
            free: Vec::new(),
            last_client_id: 0,
            skipped: Vec::new(),
            events: VecDeque::new(),
            queued_data: 0,
            blocked: Vec::new(),
            goaway_last: None,
            peer_going_away: false,
            ping_ack: None,
            counts: FrameCounts::default(),
            ended: None,
        }
    }

    /// A connection whose preface the listener already consumed (h2c
    /// with prior knowledge): the next bytes are frames.
    pub fn new_after_preface(cfg: ServerConnConfig) -> Self {
        let mut c = ServerConn::new(cfg);
        c.preface_at = frame::PREFACE.len();
        c
    }

    /// The client's preface and first SETTINGS came: it speaks HTTP/2.
    pub fn established(&self) -> bool {
        self.settings_seen
    }

    /// The output holds `write_cap` bytes or more: the transport is not
    /// taking them (the client reads slowly, or TCP's window is shut).
    pub fn output_full(&self) -> bool {
        self.out.len() - self.out_at >= self.cfg.write_cap
    }

    /// A GOAWAY of ours was written (any kind).
    pub fn goaway_written(&self) -> bool {
        self.goaway_written
    }

    /// The client's 24-byte preface came whole.
    pub fn preface_received(&self) -> bool {
        self.preface_at == frame::PREFACE.len()
    }

    /// The error code of the GOAWAY we sent for a connection error.
    pub fn error_sent(&self) -> Option<ErrorCode> {
        self.error_sent
    }

    /// Streams open now.
    pub fn active(&self) -> usize {
        self.ids.len()
    }

    /// The connection is over (nothing more is read; what is buffered
    /// should still be written); `Some(true)` for a clean end.
    pub fn ended(&self) -> Option<bool> {
        self.ended
    }

    /// Bytes from the client; all are taken (a frame split across reads
    /// is kept until it is whole, bounded by our maximum frame size).
    pub fn on_read(&mut self, data: &[u8]) -> usize {
        let mut at = 0;
        if self.preface_at < frame::PREFACE.len() && self.ended.is_none() {
            let n = (frame::PREFACE.len() - self.preface_at).min(data.len());
            if data[..n] != frame::PREFACE[self.preface_at..self.preface_at + n] {
                // Not HTTP/2 (§3.4).
                self.connection_error(ErrorCode::ProtocolError);
                return data.len();
            }
            self.preface_at += n;
            at = n;
        }
        let max = self.cfg.max_frame_size;
        while at < data.len() && self.ended.is_none() {
            if !self.partial.is_empty() {
                at += self.complete_partial(&data[at..]);
                continue;
            }
            match frame::parse_from(&data[at..], max) {
                Some((r, used)) => {
                    at += used;
                    self.on_frame_result(r);
                }
                None => at += self.complete_partial(&data[at..]),
            }
        }
        if std::mem::take(&mut self.window_opened) && self.ended.is_none() {
            self.flush_blocked();
        }
        data.len()
    }

    /// Adds to the frame split across reads what it still lacks of
    /// `input`, and handles the frame once whole; bytes taken.
    fn complete_partial(&mut self, input: &[u8]) -> usize {
        let max = self.cfg.max_frame_size;
        let have = self.partial.len();
        let want = if have < frame::HEADER_LEN {
            frame::HEADER_LEN
        } else {
            frame::HEADER_LEN + frame_head(&self.partial).len as usize
        };
        let n = (want - have).min(input.len());
        self.partial.extend_from_slice(&input[..n]);
        if self.partial.len() == frame::HEADER_LEN && have < frame::HEADER_LEN {
            // The length is known: refuse an oversized frame before
            // buffering it.
            let head = frame_head(&self.partial);
            if let Err(e) = frame::check_len(&head, max) {
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
        if let Some((r, _)) = frame::parse_from(&buf, max) {
            self.on_frame_result(r);
        }
        self.partial = buf;
        self.partial.clear();
        n
    }

    /// The client closed its side: open streams are reset (CANCEL).
    pub fn on_read_eof(&mut self) {
        if self.ended.is_some() {
            return;
        }
        let clean = self.ids.is_empty();
        self.end_connection(ErrorCode::Cancel as u32, clean);
    }

    pub fn wants_write(&self) -> bool {
        self.out.len() > self.out_at
    }

    /// Bytes for the client.
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
    pub fn poll_event(&mut self) -> Option<(u32, ServerEvent)> {
        let (key, ev) = self.events.pop_front()?;
        let last = match &ev {
            ServerEvent::Data(d) => {
                self.queued_data -= d.len();
                false
            }
            ServerEvent::Request { end_stream, .. } => *end_stream,
            ServerEvent::End | ServerEvent::Reset(_) => true,
            ServerEvent::Trailers(_) => false,
        };
        if last {
            match self.slots.get_mut(key as usize) {
                Some(Slot::Open(s)) => s.last_polled = true,
                Some(Slot::Closing) if !self.events.iter().any(|(k, _)| *k == key) => {
                    // Only now: a key reused earlier would mix two
                    // streams' events.
                    self.slots[key as usize] = Slot::Free;
                    self.free.push(key);
                }
                _ => {}
            }
        }
        Some((key, ev))
    }

    /// An interim response (1xx, not 101) before the final one, e.g. 100
    /// Continue for a request that expects it.
    pub fn send_informational(&mut self, key: u32, status: u16, headers: &HeaderMap) {
        let ok = self.stream(key).is_some_and(|s| !s.head_sent);
        if !ok || !(100..200).contains(&status) || status == 101 {
            return;
        }
        self.write_head(key, Some(status), headers, false);
    }

    /// The final response head; `end_stream`: no body follows. Heads
    /// (and 1xx heads and trailers) are encoded into the output at once,
    /// not held back by the write cap: HPACK state must follow the order
    /// of the blocks, and the caller bounds how many heads it sends.
    pub fn send_response(&mut self, key: u32, status: u16, headers: &HeaderMap, end_stream: bool) {
        let ok = self.stream(key).is_some_and(|s| !s.head_sent);
        if !ok || !(200..1000).contains(&status) {
            return;
        }
        if let Some(s) = self.stream_mut(key) {
            s.head_sent = true;
            s.body_end = end_stream;
        }
        self.write_head(key, Some(status), headers, end_stream);
        if end_stream {
            self.on_end_sent(key);
        }
    }

    /// Response body bytes for `key` (after its head); all are taken, the
    /// caller bounds what it hands over by [`ServerConn::unsent`]. What
    /// the windows and the write cap allow goes out at once.
    pub fn send_data(&mut self, key: u32, data: &[u8]) {
        if !data.is_empty() {
            self.send_bytes(key, Bytes::copy_from_slice(data), false, None);
        }
    }

    /// The last response body bytes of `key`, then its end (`trailers`,
    /// or END_STREAM on the last DATA frame: no empty frame after it).
    pub fn send_last_data(&mut self, key: u32, data: &[u8], trailers: Option<&HeaderMap>) {
        self.send_bytes(key, Bytes::copy_from_slice(data), true, trailers.cloned());
    }

    /// [`ServerConn::send_data`] (`last`: [`ServerConn::send_last_data`])
    /// for bytes the caller already holds as `Bytes`: kept, not copied
    /// (a static pattern, request DATA echoed back).
    pub fn send_bytes(&mut self, key: u32, data: Bytes, last: bool, trailers: Option<HeaderMap>) {
        let Some(s) = self.stream_mut(key) else {
            return;
        };
        if !s.head_sent || s.body_end {
            return;
        }
        if !data.is_empty() {
            s.body_bytes += data.len();
            s.body.push_back(data);
        }
        if last {
            s.body_end = true;
            s.trailers = trailers.filter(|t| !t.is_empty());
        } else if s.body.is_empty() {
            return;
        }
        self.flush_body(key);
    }

    /// Response body bytes of `key` written so far.
    pub fn body_sent(&self, key: u32) -> u64 {
        self.stream(key).map_or(0, |s| s.body_sent)
    }

    /// Response body bytes of `key` waiting for window or room.
    pub fn unsent(&self, key: u32) -> usize {
        self.stream(key).map_or(0, |s| s.body_bytes)
    }

    /// The response of `key` is complete; `trailers` follow its body.
    pub fn end_response(&mut self, key: u32, trailers: Option<&HeaderMap>) {
        let Some(s) = self.stream_mut(key) else {
            return;
        };
        if !s.head_sent || s.body_end {
            return;
        }
        s.body_end = true;
        s.trailers = trailers.filter(|t| !t.is_empty()).cloned();
        self.flush_body(key);
    }

    /// The caller took `n` request body bytes of `key`: the client may
    /// send that much more. Given back in batches (half a window), not
    /// one WINDOW_UPDATE per DATA frame.
    pub fn release(&mut self, key: u32, n: usize) {
        // The window the client works with: ours once it acknowledged our
        // SETTINGS, the default before.
        let window = if self.settings_acked {
            self.cfg.initial_stream_window
        } else {
            self.cfg.initial_stream_window.min(frame::DEFAULT_WINDOW)
        };
        let half = i64::from((window / 2).max(1));
        let Some(s) = self.stream_mut(key) else {
            return;
        };
        let n = n.min(s.unreleased);
        s.unreleased -= n;
        let n = n as u32;
        s.credit += n;
        // Batched (one update per half window), unless the client is down
        // to less than half: then what was taken goes back at once, or a
        // slow consumer would leave it waiting for a batch it cannot fill.
        let due = i64::from(s.credit) >= half || (s.credit > 0 && s.recv_window < half);
        let update = (due && !s.recv_end).then_some((s.id, s.credit));
        if let Some((id, credit)) = update {
            s.credit = 0;
            s.recv_window += i64::from(credit);
            frame::write_window_update(&mut self.out, id, credit);
        }
        self.credit_connection(n);
    }

    /// Abandons stream `key` with RST_STREAM(code) if it is still open:
    /// no further event comes for it, and its key is free.
    pub fn reset(&mut self, key: u32, code: ErrorCode) {
        if !matches!(
            self.slots.get(key as usize),
            Some(Slot::Open(_) | Slot::Closing)
        ) {
            return;
        }
        self.drop_events(key);
        if let Slot::Open(s) = std::mem::replace(&mut self.slots[key as usize], Slot::Free) {
            if self.ended.is_none() {
                frame::write_rst_stream(&mut self.out, s.id, code);
                self.remember_reset(s.id);
            }
            self.forget(key, &s);
        }
        self.free.push(key);
        self.after_close();
    }

    /// GOAWAY with the highest stream id processed. NO_ERROR drains: the
    /// open streams go on, new ones are ignored (the client retries them
    /// elsewhere), and the connection ends cleanly when the last one is
    /// over. Any other code ends the connection now.
    pub fn go_away(&mut self, code: ErrorCode) {
        if self.ended.is_some() {
            return;
        }
        if code != ErrorCode::NoError {
            return self.connection_error(code);
        }
        if self.goaway_last.is_some() {
            return;
        }
        self.goaway_last = Some(self.last_client_id);
        frame::write_goaway(&mut self.out, self.last_client_id, code, b"");
        self.goaway_written = true;
        self.after_close();
    }

    /// The first step of a graceful shutdown (RFC 9113 §6.8): a GOAWAY
    /// with the largest stream id, so the client opens no new stream but
    /// the ones already in flight are still taken. The final GOAWAY
    /// ([`ServerConn::go_away`]) follows a round trip later.
    pub fn announce_go_away(&mut self) {
        if self.ended.is_none() && self.goaway_last.is_none() {
            frame::write_goaway(&mut self.out, frame::MAX_WINDOW, ErrorCode::NoError, b"");
            self.goaway_written = true;
        }
    }

    /// A PING to the client (keepalive, or to measure the round trip);
    /// its ACK comes back through [`ServerConn::take_ping_ack`].
    pub fn ping(&mut self, data: [u8; 8]) {
        if self.ended.is_none() {
            frame::write_ping(&mut self.out, false, data);
        }
    }

    pub fn take_ping_ack(&mut self) -> Option<[u8; 8]> {
        self.ping_ack.take()
    }

    /// Frame counts since the last call (see [`FrameCounts`]).
    pub fn take_frame_counts(&mut self) -> FrameCounts {
        std::mem::take(&mut self.counts)
    }

    /// Bytes held: buffers, HPACK tables, queued bodies and request DATA
    /// not yet polled.
    pub fn memory(&self) -> usize {
        let bodies: usize = self
            .slots
            .iter()
            .map(|s| match s {
                Slot::Open(s) => s.body_bytes,
                _ => 0,
            })
            .sum();
        self.out.capacity()
            + self.partial.capacity()
            + self.block.capacity()
            + crate::CODEC_BUFFERS
            + bodies
            + self.queued_data
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
        match self.slots.get(key as usize)? {
            Slot::Open(s) => Some(s),
            _ => None,
        }
    }

    fn stream_mut(&mut self, key: u32) -> Option<&mut Stream> {
        match self.slots.get_mut(key as usize)? {
            Slot::Open(s) => Some(s),
            _ => None,
        }
    }

    fn key_of(&self, id: u32) -> Option<u32> {
        let i = self.ids.binary_search_by_key(&id, |&(i, _)| i).ok()?;
        Some(self.ids[i].1)
    }

    /// Never opened by the client (§5.1 "idle"; even ids are the
    /// server's, and we push nothing): frames there are a connection
    /// error.
    fn is_idle(&self, id: u32) -> bool {
        id % 2 == 0 || id > self.last_client_id
    }

    /// A new stream `id`: the ids skipped below it were never used.
    fn skip_to(&mut self, id: u32) {
        let first = if self.last_client_id == 0 {
            1
        } else {
            self.last_client_id + 2
        };
        if id > first {
            if self.skipped.len() == MAX_SKIPPED {
                self.skipped.remove(0);
            }
            self.skipped.push((first, id - 2));
        }
        self.last_client_id = id;
    }

    fn never_opened(&self, id: u32) -> bool {
        self.skipped.iter().any(|&(a, b)| (a..=b).contains(&id))
    }

    fn drop_events(&mut self, key: u32) {
        let mut dropped = 0;
        self.events.retain(|(k, ev)| {
            if *k != key {
                return true;
            }
            if let ServerEvent::Data(d) = ev {
                dropped += d.len();
            }
            false
        });
        self.queued_data -= dropped;
    }

    /// A stream we reset: its frames in flight are ignored for a while
    /// (the last RECENT_RESETS such streams).
    fn remember_reset(&mut self, id: u32) {
        if self.recently_reset.len() == RECENT_RESETS {
            self.recently_reset.pop_front();
        }
        self.recently_reset.push_back(id);
    }

    /// Bookkeeping of a stream taken out of its slot.
    fn forget(&mut self, key: u32, s: &Stream) {
        if let Ok(i) = self.ids.binary_search_by_key(&s.id, |&(i, _)| i) {
            self.ids.remove(i);
        }
        self.blocked.retain(|k| *k != key);
        // Its key can no longer release what it holds: the connection
        // window gets it back now (the caller's buffers bound it).
        self.credit_connection(s.unreleased as u32);
    }

    /// After a stream closed: a drain ends with the last stream.
    fn after_close(&mut self) {
        if (self.goaway_last.is_some() || self.peer_going_away)
            && self.ids.is_empty()
            && self.ended.is_none()
        {
            if self.goaway_last.is_none() {
                // The client said goodbye: answered with the last stream we
                // processed, so it knows what ran (§6.8: a GOAWAY before
                // closing).
                self.goaway_last = Some(self.last_client_id);
                frame::write_goaway(&mut self.out, self.last_client_id, ErrorCode::NoError, b"");
                self.goaway_written = true;
            }
            self.ended = Some(true);
        }
    }

    /// Both sides ended: the stream is over; the key is free once the
    /// caller took its last event.
    fn close_stream(&mut self, key: u32) {
        let Some(slot) = self.slots.get_mut(key as usize) else {
            return;
        };
        let Slot::Open(s) = std::mem::replace(slot, Slot::Closing) else {
            return;
        };
        if s.last_polled {
            self.slots[key as usize] = Slot::Free;
            self.free.push(key);
        }
        self.forget(key, &s);
        self.after_close();
    }

    /// The stream fails: `Reset(code)` for the caller, RST_STREAM(code) to
    /// the client when `send`.
    fn fail_stream(&mut self, key: u32, code: u32, send: bool) {
        let Some(slot) = self.slots.get_mut(key as usize) else {
            return;
        };
        let Slot::Open(s) = std::mem::replace(slot, Slot::Closing) else {
            return;
        };
        if send {
            frame::write_rst_stream(&mut self.out, s.id, error_code(code));
            if code != ErrorCode::NoError as u32 {
                self.counts.rst_stream_sent += 1;
            }
            let id = s.id;
            self.remember_reset(id);
        }
        self.events.push_back((key, ServerEvent::Reset(code)));
        self.forget(key, &s);
        self.after_close();
    }

    /// RST_STREAM for a stream the caller does not know (refused,
    /// malformed head, closed).
    fn reset_id(&mut self, id: u32, code: ErrorCode) {
        frame::write_rst_stream(&mut self.out, id, code);
        self.counts.rst_stream_sent += 1;
    }

    /// Our END_STREAM went out.
    fn on_end_sent(&mut self, key: u32) {
        self.counts.responses += 1;
        let Some(s) = self.stream_mut(key) else {
            return;
        };
        s.end_sent = true;
        if s.recv_end {
            self.close_stream(key);
        } else {
            // §8.1: the response is complete while the client still
            // sends; RST_STREAM NO_ERROR after END_STREAM tells it to stop.
            self.fail_stream(key, ErrorCode::NoError as u32, true);
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

    fn end_connection(&mut self, code: u32, clean: bool) {
        self.ended = Some(clean);
        let keys: Vec<u32> = self.ids.iter().map(|&(_, k)| k).collect();
        for k in keys {
            self.fail_stream(k, code, false);
        }
        self.continuation = None;
        self.blocked.clear();
    }

    /// A connection error (§5.4.1): GOAWAY with the last stream we
    /// processed, and every open stream is reset.
    fn connection_error(&mut self, code: ErrorCode) {
        self.error_sent = Some(code);
        let last = self.goaway_last.unwrap_or(self.last_client_id);
        frame::write_goaway(&mut self.out, last, code, b"");
        self.goaway_written = true;
        self.end_connection(code as u32, false);
    }

    /// Encodes a response head or trailers (`status: None`) of `key`.
    fn write_head(&mut self, key: u32, status: Option<u16>, headers: &HeaderMap, end: bool) {
        let Some(id) = self.stream(key).map(|s| s.id) else {
            return;
        };
        let out = &mut self.out;
        let enc = &mut self.encoder;
        let at = frame::begin_headers(out, id);
        enc.begin_block(out);
        if let Some(status) = status {
            // The static table holds 200, 204, 206, 304, 400, 404, 500:
            // one byte each (0x88 for 200).
            enc.encode(b":status", &status_bytes(status), out);
        }
        for (name, value) in headers {
            let name = name.as_str().as_bytes();
            // Never sent: HTTP/2 forbids them (§8.2.2).
            if fields::forbidden(name, value.as_bytes()) {
                continue;
            }
            if value.is_sensitive() {
                enc.encode_never_indexed(name, value.as_bytes(), out);
            } else {
                enc.encode(name, value.as_bytes(), out);
            }
        }
        frame::finish_headers(out, at, end, self.peer.max_frame_size);
        self.counts.headers_sent += 1;
    }

    /// Sends what the windows and the write cap allow of `key`'s body,
    /// then its end (trailers or an empty END_STREAM DATA frame).
    fn flush_body(&mut self, key: u32) {
        let write_cap = self.cfg.write_cap;
        let max_frame = self.peer.max_frame_size;
        let Some(Slot::Open(s)) = self.slots.get_mut(key as usize) else {
            return;
        };
        if s.end_sent {
            return;
        }
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
            let end = n == front.len() && queued == 1 && s.body_end && s.trailers.is_none();
            frame::write_data(&mut self.out, s.id, &front[..n], end, max_frame);
            self.counts.data_sent += n.div_ceil(max_frame as usize) as u32;
            s.send_window -= n as i64;
            self.conn_send_window -= n as i64;
            s.body_bytes -= n;
            s.body_sent += n as u64;
            if n == front.len() {
                s.body.pop_front();
            } else {
                let _ = front.split_to(n);
            }
            if end {
                self.blocked.retain(|k| *k != key);
                return self.on_end_sent(key);
            }
        }
        self.blocked.retain(|k| *k != key);
        if !s.body_end {
            return;
        }
        match s.trailers.take() {
            Some(t) => self.write_head(key, None, &t, true),
            None => {
                frame::write_data(&mut self.out, s.id, &[], true, max_frame);
                self.counts.data_sent += 1;
            }
        }
        self.on_end_sent(key);
    }

    /// Streams waiting for window or room, in turn: one served now goes
    /// behind those not served yet, so a stream with a large body does
    /// not take every connection WINDOW_UPDATE for itself.
    fn flush_blocked(&mut self) {
        let keys = std::mem::take(&mut self.blocked);
        for (i, &k) in keys.iter().enumerate() {
            let full = self.out.len() - self.out_at >= self.cfg.write_cap;
            if self.conn_send_window <= 0 || full || self.ended.is_some() {
                // The rest keep their turn, ahead of those just served.
                let served = std::mem::take(&mut self.blocked);
                self.blocked = keys[i..].to_vec();
                self.blocked
                    .extend(served.into_iter().filter(|k| !keys[i..].contains(k)));
                return;
            }
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
                Some(k) => self.fail_stream(k, code as u32, true),
                None => self.reset_id(id, code),
            },
        }
    }

    fn on_frame(&mut self, f: Frame<'_>) {
        if !self.settings_seen {
            // §3.4: the preface ends with a SETTINGS frame.
            if !matches!(f, Frame::Settings { ack: false, .. }) {
                return self.connection_error(ErrorCode::ProtocolError);
            }
            self.settings_seen = true;
        }
        if let Some(c) = &self.continuation {
            // §6.10: nothing may come between a HEADERS frame without
            // END_HEADERS and its CONTINUATIONs.
            return match f {
                Frame::Continuation {
                    stream,
                    end_headers,
                    fragment,
                } if stream == c.stream => {
                    if fragment.is_empty() {
                        self.counts.empty += 1;
                    }
                    // CONTINUATION flood (CVE-2024-27316): the assembled
                    // block is bounded, not only its decoded size.
                    let bound = (self.cfg.max_header_list_size as usize * 2)
                        .max(frame::DEFAULT_MAX_FRAME_SIZE as usize);
                    // And their count: a block dribbled in tiny fragments
                    // costs a frame's work per byte. An honest block of the
                    // largest list size takes a few frames.
                    let frames = c.frames + 1;
                    if self.block.len() + fragment.len() > bound || frames > MAX_CONTINUATIONS {
                        return self.connection_error(ErrorCode::EnhanceYourCalm);
                    }
                    if let Some(c) = &mut self.continuation {
                        c.frames = frames;
                    }
                    self.block.extend_from_slice(fragment);
                    if end_headers {
                        let c = self.continuation.take().expect("checked");
                        let block = std::mem::take(&mut self.block);
                        self.on_header_block(c.stream, &block, c.end_stream, c.new);
                        self.block = block;
                        self.block.clear();
                    }
                }
                _ => self.connection_error(ErrorCode::ProtocolError),
            };
        }
        match f {
            Frame::Data {
                stream,
                end_stream,
                data,
                flow_len,
            } => {
                if data.is_empty() && !end_stream {
                    self.counts.empty += 1;
                }
                self.on_data(stream, end_stream, data, flow_len)
            }
            Frame::Headers {
                stream,
                end_stream,
                end_headers,
                fragment,
                ..
            } => {
                if fragment.is_empty() && !end_stream {
                    self.counts.empty += 1;
                }
                if stream % 2 == 0 {
                    return self.connection_error(ErrorCode::ProtocolError);
                }
                // A new stream, or trailers (or a closed one): ids only
                // grow (§5.1.1), so any id not above the last is not new.
                let new = stream > self.last_client_id;
                if new {
                    self.skip_to(stream);
                } else if self.never_opened(stream) {
                    // A lower id than one opened before (§5.1.1).
                    return self.connection_error(ErrorCode::ProtocolError);
                }
                if end_headers {
                    self.on_header_block(stream, fragment, end_stream, new);
                } else {
                    self.block.clear();
                    self.block.extend_from_slice(fragment);
                    self.continuation = Some(Continuation {
                        stream,
                        end_stream,
                        new,
                        frames: 0,
                    });
                }
            }
            Frame::Continuation { .. } | Frame::PushPromise { .. } => {
                // No header block is open; clients cannot push (§8.4).
                self.connection_error(ErrorCode::ProtocolError)
            }
            Frame::RstStream { stream, code } => {
                self.counts.rst_stream_received += 1;
                if self.is_idle(stream) {
                    return self.connection_error(ErrorCode::ProtocolError);
                }
                if let Some(k) = self.key_of(stream) {
                    self.fail_stream(k, code, false);
                }
            }
            Frame::Settings { ack: true, .. } => self.on_settings_ack(),
            Frame::Settings { ack: false, params } => {
                self.counts.settings += 1;
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
                    for slot in &mut self.slots {
                        if let Slot::Open(s) = slot {
                            s.send_window += delta;
                            if s.send_window > i64::from(frame::MAX_WINDOW) {
                                return self.connection_error(ErrorCode::FlowControlError);
                            }
                        }
                    }
                    if delta > 0 {
                        self.flush_blocked();
                    }
                }
            }
            Frame::Ping { ack, data } => {
                if ack {
                    self.ping_ack = Some(data);
                } else {
                    self.counts.ping += 1;
                    frame::write_ping(&mut self.out, true, data);
                }
            }
            Frame::GoAway { code, .. } => {
                if code != ErrorCode::NoError as u32 {
                    // The client gives up on the connection.
                    self.end_connection(code, false);
                } else {
                    self.peer_going_away = true;
                    self.after_close();
                }
            }
            Frame::WindowUpdate { stream, increment } => {
                self.counts.window_update += 1;
                if stream == 0 {
                    self.conn_send_window += i64::from(increment);
                    if self.conn_send_window > i64::from(frame::MAX_WINDOW) {
                        return self.connection_error(ErrorCode::FlowControlError);
                    }
                    self.window_opened = true;
                    return;
                }
                if self.is_idle(stream) {
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
                    return self.fail_stream(k, ErrorCode::FlowControlError as u32, true);
                }
                // Sent once the whole read is handled: a client that
                // opens the window in small steps gets one larger DATA
                // frame, not one per step (silly window syndrome).
                self.window_opened = true;
            }
            Frame::Priority { .. } | Frame::Unknown { .. } => self.counts.priority += 1,
        }
    }

    /// Our SETTINGS took effect: a stream window below the default
    /// (granted until then, §6.9.2) shrinks the open streams' windows.
    fn on_settings_ack(&mut self) {
        if self.settings_acked {
            return;
        }
        self.settings_acked = true;
        let shrink =
            i64::from(frame::DEFAULT_WINDOW.saturating_sub(self.cfg.initial_stream_window));
        if shrink > 0 {
            for slot in &mut self.slots {
                if let Slot::Open(s) = slot {
                    s.recv_window -= shrink;
                }
            }
        }
    }

    fn on_data(&mut self, id: u32, end_stream: bool, data: &[u8], flow_len: u32) {
        self.conn_recv_window -= i64::from(flow_len);
        if self.conn_recv_window < 0 {
            return self.connection_error(ErrorCode::FlowControlError);
        }
        if self.is_idle(id) {
            return self.connection_error(ErrorCode::ProtocolError);
        }
        let Some(k) = self.key_of(id) else {
            // A closed stream: nobody takes these bytes, the connection
            // window gets them back. Frames still in flight when we reset
            // it are ignored (§5.1); otherwise the client sent DATA after
            // its END_STREAM and hears STREAM_CLOSED.
            self.credit_connection(flow_len);
            if !self.recently_reset.contains(&id) {
                self.reset_id(id, ErrorCode::StreamClosed);
            }
            return;
        };
        let padding = flow_len - data.len() as u32;
        let Some(s) = self.stream_mut(k) else {
            return;
        };
        if s.recv_end {
            // §5.1 half-closed (remote).
            self.credit_connection(flow_len);
            return self.fail_stream(k, ErrorCode::StreamClosed as u32, true);
        }
        s.recv_window -= i64::from(flow_len);
        if s.recv_window < 0 {
            self.credit_connection(flow_len);
            return self.fail_stream(k, ErrorCode::FlowControlError as u32, true);
        }
        s.received += data.len() as u64;
        s.unreleased += data.len();
        // Padding is nobody's to release: given back now.
        s.credit += padding;
        let bad_length = s
            .content_length
            .is_some_and(|cl| s.received > cl || (end_stream && s.received != cl));
        if end_stream {
            s.recv_end = true;
        }
        if !data.is_empty() {
            self.queued_data += data.len();
            self.events
                .push_back((k, ServerEvent::Data(Bytes::copy_from_slice(data))));
        }
        self.credit_connection(padding);
        if bad_length {
            // §8.1.1: content-length and the DATA disagree.
            return self.fail_stream(k, ErrorCode::ProtocolError as u32, true);
        }
        if end_stream {
            self.recv_ended(k);
        }
    }

    /// The request side is complete: `End`, and the stream closes if the
    /// response already did.
    fn recv_ended(&mut self, key: u32) {
        self.events.push_back((key, ServerEvent::End));
        if self.stream(key).is_some_and(|s| s.end_sent) {
            self.close_stream(key);
        }
    }

    fn on_header_block(&mut self, id: u32, block: &[u8], end_stream: bool, new: bool) {
        let key = self.key_of(id);
        let trailers = key.is_some();
        let mut head = HeadBuilder::new(trailers, self.cfg.max_header_list_size as usize);
        if self.decoder.decode(block, |f| head.field(&f)).is_err() {
            // The HPACK state is lost: the connection cannot go on.
            return self.connection_error(ErrorCode::CompressionError);
        }
        if let Some(key) = key {
            return self.on_trailers(key, head, end_stream);
        }
        if !new {
            // A stream that is over (§5.1): decoded only to keep HPACK in
            // step.
            return self.reset_id(id, ErrorCode::StreamClosed);
        }
        if self.goaway_last.is_some_and(|last| id > last) {
            // Above our GOAWAY: ignored, the client retries it elsewhere.
            return;
        }
        if self.ids.len() >= self.cfg.max_concurrent_streams as usize {
            return self.reset_id(id, ErrorCode::RefusedStream);
        }
        if head.too_large {
            // Answered, not reset: the client learns why (RFC 6585).
            let at = frame::begin_headers(&mut self.out, id);
            self.encoder.begin_block(&mut self.out);
            self.encoder.encode(b":status", b"431", &mut self.out);
            frame::finish_headers(&mut self.out, at, true, self.peer.max_frame_size);
            if !end_stream {
                // §8.1: the rest of the request is not wanted.
                frame::write_rst_stream(&mut self.out, id, ErrorCode::NoError);
            }
            return;
        }
        let Some(req) = head.finish_request() else {
            return self.reset_id(id, ErrorCode::ProtocolError);
        };
        if end_stream && req.content_length.is_some_and(|cl| cl > 0) {
            // §8.1.1: a body was announced and none came.
            return self.reset_id(id, ErrorCode::ProtocolError);
        }
        let recv_window = if self.settings_acked {
            self.cfg.initial_stream_window
        } else {
            self.cfg.initial_stream_window.max(frame::DEFAULT_WINDOW)
        };
        let key = match self.free.pop() {
            Some(k) => k,
            None => {
                self.slots.push(Slot::Free);
                (self.slots.len() - 1) as u32
            }
        };
        self.slots[key as usize] = Slot::Open(Stream {
            id,
            recv_end: end_stream,
            last_polled: false,
            send_window: i64::from(self.peer.initial_window_size),
            recv_window: i64::from(recv_window),
            credit: 0,
            unreleased: 0,
            content_length: req.content_length,
            received: 0,
            head_sent: false,
            body: VecDeque::new(),
            body_sent: 0,
            body_bytes: 0,
            body_end: false,
            trailers: None,
            end_sent: false,
        });
        self.ids.push((id, key));
        self.counts.requests += 1;
        self.events.push_back((
            key,
            ServerEvent::Request {
                head: req,
                end_stream,
            },
        ));
    }

    fn on_trailers(&mut self, key: u32, head: HeadBuilder, end_stream: bool) {
        let Some(s) = self.stream(key) else {
            return;
        };
        if s.recv_end {
            // §5.1 half-closed (remote).
            return self.fail_stream(key, ErrorCode::StreamClosed as u32, true);
        }
        let short = s.content_length.is_some_and(|cl| cl != s.received);
        // Trailers end the stream (§8.1); no pseudo-fields (§8.3).
        let map = match head.finish_trailers() {
            Some(map) if end_stream && !short => map,
            _ => return self.fail_stream(key, ErrorCode::ProtocolError as u32, true),
        };
        if let Some(s) = self.stream_mut(key) {
            s.recv_end = true;
        }
        self.events.push_back((key, ServerEvent::Trailers(map)));
        self.recv_ended(key);
    }
}

/// Collects a request head (or trailers) as the decoder hands out its
/// fields, checking RFC 9113 §8.3.1 and §8.2: each request pseudo-field
/// at most once and before any regular field, no other pseudo-field,
/// lowercase names, no connection-specific fields, `te` only "trailers".
struct HeadBuilder {
    trailers: bool,
    limit: usize,
    method: Option<Method>,
    scheme: Option<Bytes>,
    authority: Option<Bytes>,
    path: Option<Bytes>,
    headers: HeaderMap,
    content_length: Option<u64>,
    malformed: bool,
    regular_seen: bool,
    size: usize,
    /// Above the header list limit: the rest of the block is decoded (for
    /// HPACK) but not kept.
    too_large: bool,
}

impl HeadBuilder {
    fn new(trailers: bool, limit: usize) -> Self {
        HeadBuilder {
            trailers,
            limit,
            method: None,
            scheme: None,
            authority: None,
            path: None,
            headers: HeaderMap::with_capacity(12),
            content_length: None,
            malformed: false,
            regular_seen: false,
            size: 0,
            too_large: false,
        }
    }

    fn field(&mut self, f: &Field<'_>) {
        self.size += f.name.len() + f.value.len() + 32;
        if self.size > self.limit {
            self.too_large = true;
        }
        if self.malformed || self.too_large {
            return;
        }
        if f.value.iter().any(|&b| b == 0 || b == b'\r' || b == b'\n') {
            // §8.2.1.
            self.malformed = true;
            return;
        }
        if f.name.first() == Some(&b':') {
            self.pseudo(f);
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

    fn pseudo(&mut self, f: &Field<'_>) {
        if self.trailers || self.regular_seen || !visible(f.value) {
            self.malformed = true;
            return;
        }
        let value = Some(Bytes::copy_from_slice(f.value));
        let slot = match f.name {
            b":method" => {
                if self.method.is_some() {
                    self.malformed = true;
                    return;
                }
                self.method = Method::from_bytes(f.value).ok();
                self.malformed = self.method.is_none();
                return;
            }
            b":scheme" => &mut self.scheme,
            b":authority" => &mut self.authority,
            b":path" => &mut self.path,
            // :status, :protocol (we do not offer extended CONNECT) or
            // unknown.
            _ => {
                self.malformed = true;
                return;
            }
        };
        if slot.is_some() {
            self.malformed = true;
            return;
        }
        *slot = value;
    }

    fn finish_request(self) -> Option<RequestHead> {
        if self.malformed {
            return None;
        }
        let method = self.method?;
        let path = if method == Method::CONNECT {
            // §8.5: only :authority.
            if self.scheme.is_some() || self.path.is_some() || self.authority.is_none() {
                return None;
            }
            Bytes::new()
        } else {
            self.scheme.as_ref()?;
            self.path.filter(|p| !p.is_empty())?
        };
        Some(RequestHead {
            method,
            scheme: self.scheme,
            authority: self.authority,
            path,
            headers: self.headers,
            content_length: self.content_length,
        })
    }

    fn finish_trailers(self) -> Option<HeaderMap> {
        (!self.malformed && !self.too_large).then_some(self.headers)
    }
}

fn frame_head(b: &[u8]) -> Head {
    let mut h = [0u8; frame::HEADER_LEN];
    h.copy_from_slice(&b[..frame::HEADER_LEN]);
    Head::parse(&h)
}

fn status_bytes(status: u16) -> [u8; 3] {
    [
        b'0' + (status / 100 % 10) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
    ]
}

fn parse_u64(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0u64, |a, d| a * 10 + u64::from(d - b'0')))
}

/// Bytes a request pseudo-field may carry: no spaces or controls.
fn visible(v: &[u8]) -> bool {
    v.iter().all(|&b| b > 0x20 && b != 0x7f)
}

/// The code to write for a wire value (unknown ones never come from us).
fn error_code(code: u32) -> ErrorCode {
    ErrorCode::from_u32(code).unwrap_or(ErrorCode::InternalError)
}
