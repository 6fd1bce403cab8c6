//! The HTTP/2 client of the reverse proxy's upstream connections: h2's
//! client driven without a runtime, over the same in-memory transport as
//! the server ([`crate::io`]).
//!
//! The proxy opens streams on it ([`H2Client::send_request`]), feeds
//! request bodies ([`H2Client::send_data`]), and takes what comes back as
//! [`H2Event`]s. Flow control is the backpressure: response DATA counts
//! against the stream's window until the proxy says the client took it
//! ([`H2Client::release`]), so a slow client slows its stream, not the
//! connection's other streams.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use bytes::Bytes;
use h2::client::{Connection, ResponseFuture, SendRequest};
use h2::{Reason, RecvStream, SendStream};
use http::header::HeaderName;
use http::uri::{Authority, PathAndQuery};
use http::{HeaderMap, Method, Request, Uri};

use crate::io::{IoState, Transport, WakeFlag};

/// Rounds of polling per drive (the rest waits for the next call).
const MAX_ROUNDS: usize = 8;

/// Settings of one upstream HTTP/2 connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct H2ClientConfig {
    /// Streams we open at most at once (the peer's SETTINGS may say fewer).
    pub max_streams: u32,
    /// Receive window of each stream: response bytes a backend may send
    /// before the client took them.
    pub stream_window: u32,
    pub connection_window: u32,
    /// Input bytes buffered before h2 reads them.
    pub read_cap: usize,
    /// Output bytes h2 may have written before the TCP connection took them.
    pub write_cap: usize,
}

impl Default for H2ClientConfig {
    fn default() -> Self {
        H2ClientConfig {
            max_streams: 100,
            stream_window: 256 * 1024,
            connection_window: 4 * 1024 * 1024,
            read_cap: 64 * 1024,
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
    /// A field h2 refuses (not a valid name or value).
    Invalid,
}

/// The request a stream carries. The authority and path are `Bytes` and
/// the fields a map, so a request kept for a retry is sent again without
/// copying them.
#[derive(Clone, Debug)]
pub struct ClientRequest<'a> {
    pub method: &'a [u8],
    pub scheme: &'a str,
    pub authority: Bytes,
    pub path: Bytes,
    /// No connection-specific fields (h2 refuses to send them).
    pub headers: HeaderMap,
    /// No body follows.
    pub end_stream: bool,
}

type Handshake = Pin<
    Box<dyn Future<Output = Result<(SendRequest<Bytes>, Connection<Transport, Bytes>), h2::Error>>>,
>;

// One per connection, and Open for nearly all its life: boxing it would
// only add an indirection.
#[allow(clippy::large_enum_variant)]
enum State {
    Handshake(Handshake),
    Open {
        send: SendRequest<Bytes>,
        conn: Connection<Transport, Bytes>,
    },
    Done,
}

/// Keys of the streams whose wakers fired: only those are polled (a
/// connection carries up to `max_streams` of them; polling them all on
/// every frame would cost O(streams) per frame).
#[derive(Debug, Default)]
struct ReadyKeys(std::sync::Mutex<Vec<u32>>);

impl ReadyKeys {
    fn push(&self, key: u32) {
        if let Ok(mut v) = self.0.lock() {
            v.push(key);
        }
    }

    fn take(&self, into: &mut Vec<u32>) {
        if let Ok(mut v) = self.0.lock() {
            std::mem::swap(&mut *v, into);
        }
    }
}

/// One stream's waker: queues its key (once until polled) and wakes the
/// connection.
#[derive(Debug)]
struct StreamWaker {
    key: u32,
    queued: AtomicBool,
    ready: Arc<ReadyKeys>,
    flag: Arc<WakeFlag>,
}

impl Wake for StreamWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::Relaxed) {
            self.ready.push(self.key);
        }
        self.flag.set();
    }
}

#[derive(Default)]
struct Stream {
    /// None only in a default value about to be replaced.
    waker: Option<(Arc<StreamWaker>, Waker)>,
    resp: Option<ResponseFuture>,
    send: Option<SendStream<Bytes>>,
    recv: Option<RecvStream>,
    /// Request body waiting for send window.
    body: VecDeque<Bytes>,
    body_bytes: usize,
    body_end: bool,
    /// Sent after the body, ending the stream (instead of an empty DATA
    /// frame with END_STREAM).
    trailers: Option<HeaderMap>,
    end_sent: bool,
    /// Response bytes handed out and not yet released.
    unreleased: usize,
}

/// One upstream HTTP/2 connection's client. Keys name streams; a key is
/// reused after its stream's last event.
pub struct H2Client {
    cfg: H2ClientConfig,
    io: Rc<RefCell<IoState>>,
    flag: Arc<WakeFlag>,
    waker: Waker,
    state: State,
    streams: Vec<Option<Stream>>,
    free: Vec<u32>,
    active: usize,
    events: VecDeque<(u32, H2Event)>,
    ready: Arc<ReadyKeys>,
    /// Scratch for the ready keys being polled.
    polling: Vec<u32>,
    /// The backend sent GOAWAY (or the connection ended): no new streams.
    going_away: bool,
    /// The connection ended; `Some(true)` for a clean end.
    ended: Option<bool>,
    panicked: bool,
}

impl std::fmt::Debug for H2Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2Client")
            .field("active", &self.active)
            .field("going_away", &self.going_away)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl H2Client {
    /// Starts the connection: the preface and SETTINGS are ready to write.
    pub fn new(cfg: H2ClientConfig) -> Self {
        let io = Rc::new(RefCell::new(IoState::new(cfg.write_cap)));
        let flag = Arc::new(WakeFlag::default());
        let waker = Waker::from(Arc::clone(&flag));
        let hs = h2::client::Builder::new()
            .enable_push(false)
            .initial_window_size(cfg.stream_window)
            .initial_connection_window_size(cfg.connection_window)
            .initial_max_send_streams(cfg.max_streams as usize)
            .handshake::<_, Bytes>(Transport(Rc::clone(&io)));
        let mut c = H2Client {
            cfg,
            io,
            flag,
            waker,
            state: State::Handshake(Box::pin(hs)),
            streams: Vec::new(),
            free: Vec::new(),
            active: 0,
            events: VecDeque::new(),
            ready: Arc::default(),
            polling: Vec::new(),
            going_away: false,
            ended: None,
            panicked: false,
        };
        c.drive();
        c
    }

    /// Streams open now.
    pub fn active(&self) -> usize {
        self.active
    }

    /// Streams that may be opened now: our limit and the peer's, less the
    /// open ones; none once the connection is going away.
    pub fn available(&self) -> usize {
        if self.going_away || self.ended.is_some() {
            return 0;
        }
        let peer = match &self.state {
            State::Open { conn, .. } => conn.max_concurrent_send_streams(),
            State::Handshake(_) => self.cfg.max_streams as usize,
            State::Done => 0,
        };
        (self.cfg.max_streams as usize)
            .min(peer)
            .saturating_sub(self.active)
    }

    pub fn going_away(&self) -> bool {
        self.going_away || self.ended.is_some()
    }

    /// The connection is over (nothing more will be read or written).
    pub fn ended(&self) -> Option<bool> {
        self.ended
    }

    /// Opens a stream for `req`; its key.
    pub fn send_request(&mut self, req: ClientRequest<'_>) -> Result<u32, SendError> {
        if self.available() == 0 {
            return Err(SendError::NotReady);
        }
        let end_stream = req.end_stream;
        let request = build_request(req).ok_or(SendError::Invalid)?;
        let waker = self.waker.clone();
        let mut cx = Context::from_waker(&waker);
        let State::Open { send, .. } = &mut self.state else {
            // h2's handshake future resolves on its first poll (it only
            // queues the preface): no request waits for it.
            return Err(SendError::NotReady);
        };
        let r = catch_unwind(AssertUnwindSafe(|| match send.poll_ready(&mut cx) {
            Poll::Ready(Ok(())) => send
                .send_request(request, end_stream)
                .map_err(|_| SendError::NotReady),
            _ => Err(SendError::NotReady),
        }));
        if matches!(r, Ok(Err(_))) {
            // Refused after the backend's GOAWAY (or a pending open):
            // this connection takes no more streams.
            self.going_away = true;
        }
        let (resp, tx) = match r {
            Ok(r) => r?,
            Err(_) => {
                self.fail_all();
                return Err(SendError::NotReady);
            }
        };
        let key = match self.free.pop() {
            Some(k) => k,
            None => {
                self.streams.push(None);
                (self.streams.len() - 1) as u32
            }
        };
        let sw = Arc::new(StreamWaker {
            key,
            queued: AtomicBool::new(false),
            ready: Arc::clone(&self.ready),
            flag: Arc::clone(&self.flag),
        });
        let waker = Waker::from(Arc::clone(&sw));
        // Polled once to register its wakers.
        sw.wake_by_ref();
        self.streams[key as usize] = Some(Stream {
            waker: Some((sw, waker)),
            resp: Some(resp),
            send: (!end_stream).then_some(tx),
            body_end: end_stream,
            end_sent: end_stream,
            ..Stream::default()
        });
        self.active += 1;
        self.flag.set();
        Ok(key)
    }

    /// Request body bytes for stream `key`; takes all of them (the caller
    /// bounds what it buffers).
    pub fn send_data(&mut self, key: u32, data: &[u8]) {
        if let Some(s) = self.stream_mut(key) {
            if !s.body_end && !data.is_empty() {
                s.body_bytes += data.len();
                s.body.push_back(Bytes::copy_from_slice(data));
                if let Some((w, _)) = &s.waker {
                    w.wake_by_ref();
                }
            }
        }
    }

    /// Body bytes of stream `key` not yet sent (waiting for window).
    pub fn unsent(&self, key: u32) -> usize {
        self.stream(key).map_or(0, |s| s.body_bytes)
    }

    /// The request body of `key` is complete; `trailers` follow it.
    pub fn end_request(&mut self, key: u32, trailers: Option<HeaderMap>) {
        if let Some(s) = self.stream_mut(key) {
            s.body_end = true;
            s.trailers = trailers;
            if let Some((w, _)) = &s.waker {
                w.wake_by_ref();
            }
        }
    }

    /// The client took `n` response bytes of `key`: the backend may send
    /// that much more.
    pub fn release(&mut self, key: u32, n: usize) {
        if let Some(s) = self.stream_mut(key) {
            let n = n.min(s.unreleased);
            s.unreleased -= n;
            if let Some(r) = &mut s.recv {
                let _ = r.flow_control().release_capacity(n);
                self.flag.set();
            }
        }
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
        let Some(mut s) = self.streams.get_mut(key as usize).and_then(Option::take) else {
            return;
        };
        if let Some(tx) = &mut s.send {
            tx.send_reset(Reason::CANCEL);
        }
        // Dropping the handles of an open stream resets it (CANCEL).
        self.drop_stream(s);
        self.free.push(key);
        self.active = self.active.saturating_sub(1);
        self.flag.set();
    }

    fn drop_stream(&self, s: Stream) {
        if self.panicked {
            std::mem::forget(s);
        } else {
            let _ = catch_unwind(AssertUnwindSafe(move || drop(s)));
        }
    }

    /// Bytes from the backend; how many were taken.
    pub fn on_read(&mut self, data: &[u8]) -> usize {
        if self.ended.is_some() {
            return data.len();
        }
        let room = self
            .cfg
            .read_cap
            .saturating_sub(self.io.borrow().buffered_in());
        let n = room.min(data.len());
        self.io.borrow_mut().push_input(&data[..n]);
        self.drive();
        n
    }

    pub fn on_read_eof(&mut self) {
        self.io.borrow_mut().set_eof();
        self.drive();
    }

    pub fn wants_read(&self) -> bool {
        self.ended.is_none() && self.io.borrow().buffered_in() < self.cfg.read_cap
    }

    pub fn wants_write(&self) -> bool {
        let io = self.io.borrow();
        io.buffered_out() > 0 || (self.ended.is_none() && !io.write_blocked() && self.flag.is_set())
    }

    /// Bytes for the backend.
    pub fn poll_write(&mut self, buf: &mut [u8]) -> usize {
        let mut n = 0;
        for _ in 0..4 {
            n += self.io.borrow_mut().take_output(&mut buf[n..]);
            if n == buf.len() || !self.flag.is_set() || self.ended.is_some() {
                break;
            }
            self.drive();
        }
        n
    }

    /// The next event of any stream.
    pub fn poll_event(&mut self) -> Option<(u32, H2Event)> {
        let (key, ev) = self.events.pop_front()?;
        if matches!(ev, H2Event::End | H2Event::Failed(_)) && self.ended.is_none() {
            // Only now: a key reused earlier would mix two streams' events.
            self.free.push(key);
        }
        Some((key, ev))
    }

    /// Bytes held: the transport's buffers, h2's codec buffers, bodies.
    pub fn memory(&self) -> usize {
        let bodies: usize = self.streams.iter().flatten().map(|s| s.body_bytes).sum();
        self.io.borrow().capacity() + crate::CODEC_BUFFERS + bodies
    }

    pub fn release_memory(&mut self) {
        self.io.borrow_mut().release_empty();
    }

    fn stream(&self, key: u32) -> Option<&Stream> {
        self.streams.get(key as usize)?.as_ref()
    }

    fn stream_mut(&mut self, key: u32) -> Option<&mut Stream> {
        self.streams.get_mut(key as usize)?.as_mut()
    }

    /// Polls h2 and the streams until nothing moves, at most MAX_ROUNDS.
    /// A panic inside h2 ends this connection only (its state is leaked,
    /// as the server does: dropping it could panic again).
    pub fn drive(&mut self) {
        if self.ended.is_some() {
            self.flag.take();
            return;
        }
        let r = catch_unwind(AssertUnwindSafe(|| self.drive_rounds()));
        if r.is_err() {
            self.panicked = true;
            self.fail_all();
        }
    }

    fn drive_rounds(&mut self) {
        let waker = self.waker.clone();
        let mut cx = Context::from_waker(&waker);
        for _ in 0..MAX_ROUNDS {
            self.flag.take();
            self.poll_conn(&mut cx);
            if self.ended.is_some() {
                return;
            }
            self.poll_streams(false);
            if !self.flag.is_set() {
                return;
            }
        }
    }

    fn poll_conn(&mut self, cx: &mut Context<'_>) {
        if let State::Handshake(hs) = &mut self.state {
            match hs.as_mut().poll(cx) {
                Poll::Pending => return,
                Poll::Ready(Ok((send, conn))) => self.state = State::Open { send, conn },
                Poll::Ready(Err(_)) => {
                    self.fail_all();
                    return;
                }
            }
        }
        let State::Open { conn, .. } = &mut self.state else {
            return;
        };
        match Pin::new(conn).poll(cx) {
            Poll::Pending => {}
            Poll::Ready(r) => {
                // The streams' handles see the cause; they are polled once
                // more to collect it.
                self.going_away = true;
                self.poll_streams(true);
                self.end_connection(r.is_ok());
            }
        }
    }

    fn end_connection(&mut self, clean: bool) {
        for key in 0..self.streams.len() as u32 {
            if self.stream(key).is_some() {
                self.finish(key, H2Event::Failed(StreamFailure::Reset));
            }
        }
        self.ended = Some(clean);
        self.going_away = true;
        let state = std::mem::replace(&mut self.state, State::Done);
        let streams = std::mem::take(&mut self.streams);
        if self.panicked {
            std::mem::forget((state, streams));
        } else {
            // hyperium/h2#907: a debug assertion may fire when handles
            // outlive a failed connection; contained as the server does.
            let _ = catch_unwind(AssertUnwindSafe(move || drop((streams, state))));
        }
        self.free.clear();
        // Keys stay valid for the events still queued.
        self.streams = Vec::new();
        let mut io = self.io.borrow_mut();
        io.discard_input();
    }

    fn fail_all(&mut self) {
        let keys: Vec<u32> = (0..self.streams.len() as u32)
            .filter(|k| self.stream(*k).is_some())
            .collect();
        for k in keys {
            self.finish(k, H2Event::Failed(StreamFailure::Protocol));
        }
        self.panicked = true;
        self.end_connection(false);
        self.io.borrow_mut().discard_output();
    }

    /// Queues a stream's last event; its key is freed when the caller
    /// has seen it.
    fn finish(&mut self, key: u32, ev: H2Event) {
        self.events.push_back((key, ev));
        if let Some(s) = self.streams.get_mut(key as usize).and_then(Option::take) {
            self.drop_stream(s);
            self.active = self.active.saturating_sub(1);
        }
    }

    /// Polls the streams whose wakers fired (`all`: every stream, to
    /// collect the cause when the connection ends).
    fn poll_streams(&mut self, all: bool) {
        let mut keys = std::mem::take(&mut self.polling);
        keys.clear();
        self.ready.take(&mut keys);
        if all {
            keys = (0..self.streams.len() as u32).collect();
        }
        for &key in &keys {
            let Some(s) = self.stream_mut(key) else {
                continue;
            };
            let Some((sw, waker)) = s.waker.clone() else {
                continue;
            };
            sw.queued.store(false, Ordering::Relaxed);
            let mut cx = Context::from_waker(&waker);
            let mut out: Vec<H2Event> = Vec::new();
            let mut last: Option<H2Event> = None;
            poll_send(s, &mut cx, &mut last);
            if last.is_none() {
                poll_recv(s, &mut cx, &mut out, &mut last);
            }
            for ev in out {
                self.events.push_back((key, ev));
            }
            if let Some(ev) = last {
                self.finish(key, ev);
            }
        }
        self.polling = keys;
    }
}

impl Drop for H2Client {
    fn drop(&mut self) {
        let state = std::mem::replace(&mut self.state, State::Done);
        let streams = std::mem::take(&mut self.streams);
        if self.panicked {
            std::mem::forget((state, streams));
        } else {
            let _ = catch_unwind(AssertUnwindSafe(move || drop((streams, state))));
        }
    }
}

/// Moves request body into the send window, and ends the body.
fn poll_send(s: &mut Stream, cx: &mut Context<'_>, last: &mut Option<H2Event>) {
    let Some(tx) = &mut s.send else {
        return;
    };
    while let Some(front) = s.body.front_mut() {
        tx.reserve_capacity(s.body_bytes);
        // poll_capacity is Ready only when capacity grew since it was last
        // polled: what is left over from then is in `capacity()`.
        let cap = match tx.capacity() {
            0 => match tx.poll_capacity(cx) {
                Poll::Ready(Some(Ok(n))) => n,
                Poll::Ready(Some(Err(e))) => {
                    *last = Some(H2Event::Failed(failure(&e)));
                    return;
                }
                Poll::Ready(None) | Poll::Pending => return,
            },
            n => n,
        };
        if cap == 0 {
            return;
        }
        let chunk = if front.len() <= cap {
            s.body.pop_front().expect("front exists")
        } else {
            front.split_to(cap)
        };
        s.body_bytes -= chunk.len();
        let end = s.body_end && s.body.is_empty() && s.trailers.is_none();
        if let Err(e) = tx.send_data(chunk, end) {
            *last = Some(H2Event::Failed(failure(&e)));
            return;
        }
        if end {
            s.end_sent = true;
            tx.reserve_capacity(0);
            return;
        }
    }
    if s.body_end && !s.end_sent {
        s.end_sent = true;
        let sent = match s.trailers.take() {
            Some(t) => tx.send_trailers(t),
            None => tx.send_data(Bytes::new(), true),
        };
        if let Err(e) = sent {
            *last = Some(H2Event::Failed(failure(&e)));
        }
    }
}

/// The response head, body and trailers as they come.
fn poll_recv(
    s: &mut Stream,
    cx: &mut Context<'_>,
    out: &mut Vec<H2Event>,
    last: &mut Option<H2Event>,
) {
    if let Some(resp) = &mut s.resp {
        match Pin::new(resp).poll(cx) {
            Poll::Pending => return,
            Poll::Ready(Err(e)) => {
                *last = Some(H2Event::Failed(failure(&e)));
                return;
            }
            Poll::Ready(Ok(r)) => {
                s.resp = None;
                let (parts, body) = r.into_parts();
                let end_stream = body.is_end_stream();
                out.push(H2Event::Head {
                    status: parts.status.as_u16(),
                    headers: parts.headers,
                    end_stream,
                });
                if end_stream {
                    *last = Some(H2Event::End);
                    return;
                }
                s.recv = Some(body);
            }
        }
    }
    let Some(rx) = &mut s.recv else {
        return;
    };
    loop {
        match rx.poll_data(cx) {
            Poll::Pending => return,
            Poll::Ready(Some(Ok(d))) => {
                s.unreleased += d.len();
                if !d.is_empty() {
                    out.push(H2Event::Data(d));
                }
            }
            Poll::Ready(Some(Err(e))) => {
                *last = Some(H2Event::Failed(failure(&e)));
                return;
            }
            Poll::Ready(None) => break,
        }
    }
    match rx.poll_trailers(cx) {
        Poll::Pending => {}
        Poll::Ready(Ok(t)) => {
            if let Some(t) = t {
                out.push(H2Event::Trailers(t));
            }
            *last = Some(H2Event::End);
        }
        Poll::Ready(Err(e)) => *last = Some(H2Event::Failed(failure(&e))),
    }
}

fn failure(e: &h2::Error) -> StreamFailure {
    if e.reason() == Some(Reason::REFUSED_STREAM) {
        return StreamFailure::Refused;
    }
    // A graceful GOAWAY fails only the streams above its last stream id:
    // the backend never processed them.
    if e.is_go_away() && e.is_remote() && e.reason() == Some(Reason::NO_ERROR) {
        return StreamFailure::Refused;
    }
    if e.is_reset() || e.is_io() || e.is_go_away() {
        return StreamFailure::Reset;
    }
    StreamFailure::Protocol
}

/// Fields the proxy makes new for every request.
fn unique_per_request(n: &HeaderName) -> bool {
    matches!(n.as_str(), "traceparent" | "x-request-id" | "grpc-timeout")
}

fn build_request(r: ClientRequest<'_>) -> Option<Request<()>> {
    let uri = Uri::builder()
        .scheme(r.scheme)
        .authority(Authority::from_maybe_shared(r.authority).ok()?)
        .path_and_query(PathAndQuery::from_maybe_shared(r.path).ok()?)
        .build()
        .ok()?;
    let mut req = Request::builder()
        .method(Method::from_bytes(r.method).ok()?)
        .uri(uri)
        .body(())
        .ok()?;
    let mut headers = r.headers;
    for (n, v) in headers.iter_mut() {
        if unique_per_request(n) {
            // Never indexed: a value no later request repeats would only
            // churn the HPACK table (and cost the encoder a table search).
            v.set_sensitive(true);
        }
    }
    *req.headers_mut() = headers;
    Some(req)
}
