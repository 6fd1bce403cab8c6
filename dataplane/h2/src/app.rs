//! `H2App`: one HTTP/2 connection, h2 driven by hand (no runtime).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use h2::server::{Connection, Handshake, SendResponse};
use h2::{Ping, PingPong, Reason, RecvStream, SendStream};
use http::{Method, Request};
use sluice_app::proxy::Proxy;
use sluice_app::{App, Close, ConnContext, LoopDate, SharedStats, Time};

use crate::config::H2Config;
use crate::guard::{Flood, Guard};
use crate::io::{IoState, Sent, Transport, WakeFlag};
use crate::proxied::{self, Peer, Proxied};
use crate::routes::{self, Route, MAX_CHUNK};
use crate::scan::{Frame, Scanner, ACK, PING, RST_STREAM, SETTINGS, WINDOW_UPDATE};

/// Rounds of "poll the connection, then every stream" per call: past
/// them the app reports `wants_write()` and yields the loop to other
/// connections.
const MAX_ROUNDS: usize = 8;

/// Drives per `poll_write` call (each after draining the output into the
/// caller's buffer).
const MAX_WRITE_DRIVES: usize = 4;

enum State {
    Handshake(Handshake<Transport, Bytes>),
    Open(Connection<Transport, Bytes>),
    Done { abort: bool },
}

enum Body {
    /// `/bytes/N`: bytes left to send, offset of the next one.
    Bytes { remaining: u64, offset: u64 },
    /// `/echo`: request DATA not yet sent back (its receive window is
    /// released only once it is).
    Echo {
        recv: RecvStream,
        queue: VecDeque<Bytes>,
        queued: usize,
        recv_done: bool,
    },
}

/// A response being streamed.
struct Stream {
    send: SendStream<Bytes>,
    body: Body,
    /// Since when it has had bytes to send and no send window, while the
    /// connection's output was not blocked.
    stall_since: Option<Time>,
    /// Since when it has waited for request body bytes with nothing to
    /// send.
    quiet_since: Option<Time>,
}

enum Step {
    Waiting,
    /// Finished; true if the response went out whole.
    Done(bool),
}

impl Stream {
    fn poll(&mut self, cx: &mut Context<'_>, now: Time, out_blocked: bool) -> Step {
        let mut got = false;
        let step = match &mut self.body {
            Body::Bytes { remaining, offset } => poll_bytes(&mut self.send, remaining, offset, cx),
            Body::Echo {
                recv,
                queue,
                queued,
                recv_done,
            } => poll_echo(&mut self.send, recv, queue, queued, recv_done, &mut got, cx),
        };
        match step {
            Progress::Done(ok) => return Step::Done(ok),
            Progress::Sent => {
                self.stall_since = None;
                self.quiet_since = None;
            }
            Progress::Blocked => {
                self.quiet_since = None;
                // A connection whose output is not read is TCP's matter
                // (its send buffer), not a window stall.
                if out_blocked {
                    self.stall_since = None;
                } else {
                    self.stall_since.get_or_insert(now);
                }
            }
            Progress::Idle => {
                self.stall_since = None;
                if got {
                    self.quiet_since = None;
                } else {
                    self.quiet_since.get_or_insert(now);
                }
            }
        }
        Step::Waiting
    }

    fn queued(&self) -> usize {
        match &self.body {
            Body::Echo { queued, .. } => *queued,
            Body::Bytes { .. } => 0,
        }
    }
}

enum Progress {
    /// Nothing to send right now (an echo waiting for request data).
    Idle,
    /// Sent some, now waiting.
    Sent,
    /// Has bytes to send and no send capacity.
    Blocked,
    Done(bool),
}

/// Send capacity for up to `want` bytes: what is assigned, else asks h2.
pub(crate) fn capacity(
    send: &mut SendStream<Bytes>,
    want: usize,
    cx: &mut Context<'_>,
) -> Poll<Option<usize>> {
    let cap = send.capacity();
    if cap > 0 {
        return Poll::Ready(Some(cap));
    }
    send.reserve_capacity(want);
    match send.poll_capacity(cx) {
        Poll::Ready(Some(Ok(n))) => Poll::Ready(Some(n)),
        Poll::Ready(Some(Err(_)) | None) => Poll::Ready(None),
        Poll::Pending => Poll::Pending,
    }
}

fn poll_bytes(
    send: &mut SendStream<Bytes>,
    remaining: &mut u64,
    offset: &mut u64,
    cx: &mut Context<'_>,
) -> Progress {
    let mut sent = false;
    // h2 assigns at most max_send_buffer per stream, so this ends.
    while *remaining > 0 {
        let want = (*remaining).min(MAX_CHUNK as u64) as usize;
        let cap = match capacity(send, want, cx) {
            Poll::Ready(Some(c)) => c,
            Poll::Ready(None) => return Progress::Done(false),
            Poll::Pending => {
                return if sent {
                    Progress::Sent
                } else {
                    Progress::Blocked
                }
            }
        };
        let k = cap.min(want);
        let chunk = routes::pattern(*offset, k);
        *remaining -= k as u64;
        *offset += k as u64;
        if send.send_data(chunk, *remaining == 0).is_err() {
            return Progress::Done(false);
        }
        sent = true;
    }
    Progress::Done(true)
}

fn poll_echo(
    send: &mut SendStream<Bytes>,
    recv: &mut RecvStream,
    queue: &mut VecDeque<Bytes>,
    queued: &mut usize,
    recv_done: &mut bool,
    got: &mut bool,
    cx: &mut Context<'_>,
) -> Progress {
    // Taking DATA from h2 costs no memory: it is held either way, within
    // the receive window we do not release yet.
    while !*recv_done {
        match recv.poll_data(cx) {
            Poll::Ready(Some(Ok(b))) => {
                *got = true;
                if !b.is_empty() {
                    *queued += b.len();
                    queue.push_back(b);
                }
            }
            // Reset by the client, or a bad body (h2 reset the stream).
            Poll::Ready(Some(Err(_))) => return Progress::Done(false),
            Poll::Ready(None) => *recv_done = true,
            Poll::Pending => break,
        }
    }
    let mut sent = false;
    while *queued > 0 {
        let cap = match capacity(send, *queued, cx) {
            Poll::Ready(Some(c)) => c,
            Poll::Ready(None) => return Progress::Done(false),
            Poll::Pending => {
                return if sent {
                    Progress::Sent
                } else {
                    Progress::Blocked
                }
            }
        };
        let Some(front) = queue.front_mut() else {
            break;
        };
        let k = cap.min(front.len());
        let chunk = front.split_to(k);
        if front.is_empty() {
            queue.pop_front();
        }
        *queued -= k;
        let end = *recv_done && *queued == 0;
        if send.send_data(chunk, end).is_err() {
            return Progress::Done(false);
        }
        // The client may send as much again.
        let _ = recv.flow_control().release_capacity(k);
        sent = true;
        if end {
            return Progress::Done(true);
        }
    }
    if *recv_done {
        // The body ended after its last DATA went back (or was empty).
        return Progress::Done(send.send_data(Bytes::new(), true).is_ok());
    }
    if sent {
        Progress::Sent
    } else {
        Progress::Idle
    }
}

/// One HTTP/2 connection: h2's server driven without a runtime, the
/// built-in routes, and the flood bounds and timers h2 does not have.
/// See docs/http2.md.
pub struct H2App {
    cfg: Rc<H2Config>,
    date: LoopDate,
    stats: SharedStats,
    io: Rc<RefCell<IoState>>,
    flag: Arc<WakeFlag>,
    waker: Waker,
    state: State,
    ping: Option<PingPong>,
    streams: Vec<Stream>,
    /// Streams answered by the proxy.
    proxied: Vec<Proxied>,
    /// The loop's proxy (None: built-in routes only).
    proxy: Option<Rc<dyn Proxy>>,
    peer: Peer,
    scan: Scanner,
    guard: Guard,
    /// The output frames already accounted.
    seen: Sent,
    last_input: Time,
    ping_sent: Option<Time>,
    /// No stream since then.
    idle_since: Option<Time>,
    draining: bool,
    /// GOAWAY we decided on (`abrupt_shutdown`), and whether h2 has it.
    go_away: Option<Reason>,
    go_away_applied: bool,
    /// Input is dropped from now on.
    input_closed: bool,
    panicked: bool,
}

impl std::fmt::Debug for H2App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2App")
            .field("streams", &self.streams.len())
            .field("proxied", &self.proxied.len())
            .field("draining", &self.draining)
            .field("go_away", &self.go_away)
            .finish_non_exhaustive()
    }
}

impl H2App {
    /// A connection whose first bytes (the client preface, maybe already
    /// read by the listener that sniffed it) come through `on_read`.
    pub fn new(
        cfg: Rc<H2Config>,
        date: LoopDate,
        stats: SharedStats,
        ctx: &ConnContext,
        now: Time,
    ) -> Self {
        let io = Rc::new(RefCell::new(IoState::new(cfg.write_cap())));
        let flag = Arc::new(WakeFlag::default());
        let waker = Waker::from(Arc::clone(&flag));
        let hs = cfg.builder().handshake(Transport(Rc::clone(&io)));
        let mut app = H2App {
            cfg,
            date,
            stats,
            io,
            flag,
            waker,
            state: State::Handshake(hs),
            ping: None,
            streams: Vec::new(),
            proxied: Vec::new(),
            proxy: None,
            peer: Peer::new(ctx),
            scan: Scanner::new(true),
            guard: Guard::default(),
            seen: Sent::default(),
            last_input: now,
            ping_sent: None,
            idle_since: Some(now),
            draining: false,
            go_away: None,
            go_away_applied: false,
            input_closed: false,
            panicked: false,
        };
        // h2 writes its SETTINGS before it reads the preface.
        app.drive(now);
        app
    }

    /// Requests that a proxy route matches go to `proxy` (with the wake
    /// key, peer address, TLS flag and SPIFFE ID of the `ConnContext` this
    /// app was made with); the others get the built-in routes.
    pub fn with_proxy(mut self, proxy: Rc<dyn Proxy>) -> Self {
        self.proxy = Some(proxy);
        self
    }

    /// h2 panicked inside this connection (it was aborted and its h2 state
    /// leaked rather than dropped). For the fuzz target.
    #[doc(hidden)]
    pub fn panicked(&self) -> bool {
        self.panicked
    }

    /// The client's verified SPIFFE ID, if it presented one (mTLS).
    pub fn peer_spiffe_id(&self) -> Option<&str> {
        self.peer.spiffe_id.as_deref()
    }

    /// Open streams with a response in progress (proxied ones included).
    pub fn active_streams(&self) -> usize {
        self.streams.len() + self.proxied.len()
    }

    fn count(&self, f: impl FnOnce(&mut sluice_app::AppStats)) {
        f(&mut self.stats.borrow_mut());
    }

    fn count_flood(&self, kind: Flood) {
        self.count(|s| {
            let h = &mut s.h2;
            match kind {
                Flood::Ping => h.ping_floods += 1,
                Flood::Settings => h.settings_floods += 1,
                Flood::WindowUpdate => h.window_update_floods += 1,
                Flood::Priority => h.priority_floods += 1,
                Flood::Empty => h.empty_frame_floods += 1,
                Flood::Reset | Flood::LocalReset => h.reset_floods += 1,
            }
        });
    }

    /// Ends the connection with a GOAWAY (sent as soon as h2 has the
    /// connection), reading nothing more.
    fn shut(&mut self, reason: Reason) {
        if self.go_away.is_none() {
            self.go_away = Some(reason);
        }
        self.input_closed = true;
        if matches!(self.state, State::Open(_)) {
            self.io.borrow_mut().discard_input();
        }
        self.flag.set();
    }

    /// Reset without a word (the peer is gone, or the transport failed).
    fn abort(&mut self) {
        self.finish(true);
    }

    fn finish(&mut self, abort: bool) {
        self.teardown(State::Done { abort });
        self.ping_sent = None;
        let mut io = self.io.borrow_mut();
        io.discard_input();
        if abort {
            io.discard_output();
        }
    }

    /// Drops h2's connection and stream handles. h2 (debug builds only)
    /// asserts in a destructor that no stream is still counted when its
    /// state goes, which a connection ended by an error or dropped
    /// mid-stream can break (hyperium/h2#907, a spurious assertion): that
    /// panic is contained here. After a panic inside h2 its state is
    /// leaked instead (its mutex is poisoned; dropping would panic again).
    ///
    /// Proxied exchanges still open are cancelled first: the client will
    /// never see their responses.
    fn teardown(&mut self, next: State) {
        let state = std::mem::replace(&mut self.state, next);
        let streams = std::mem::take(&mut self.streams);
        let mut proxied = std::mem::take(&mut self.proxied);
        if let Some(p) = &self.proxy {
            for s in &mut proxied {
                s.cancel(&**p);
            }
        }
        let ping = self.ping.take();
        if self.panicked {
            std::mem::forget((state, streams, proxied, ping));
            return;
        }
        let _ = catch_unwind(AssertUnwindSafe(move || {
            drop((streams, proxied, ping, state));
        }));
    }

    /// Polls h2 and the streams until nothing moves, at most MAX_ROUNDS.
    fn drive(&mut self, now: Time) {
        if matches!(self.state, State::Done { .. }) {
            self.flag.take();
            return;
        }
        // A panic in h2 must not take the loop (every other connection)
        // down: this connection is reset instead. h2's state may be
        // inconsistent (its stream store mutex poisoned, so dropping a
        // handle would panic again): it is leaked, not dropped.
        let r = catch_unwind(AssertUnwindSafe(|| self.drive_rounds(now)));
        if r.is_err() {
            self.panicked = true;
            self.teardown(State::Done { abort: true });
            self.count(|s| s.h2.protocol_errors += 1);
            let mut io = self.io.borrow_mut();
            io.discard_input();
            io.discard_output();
        }
        // The last round may have ended the connection before accounting.
        self.account_sent(now);
    }

    fn drive_rounds(&mut self, now: Time) {
        let waker = self.waker.clone();
        let mut cx = Context::from_waker(&waker);
        for _ in 0..MAX_ROUNDS {
            self.flag.take();
            self.poll_conn(&mut cx, now);
            if matches!(self.state, State::Done { .. }) {
                return;
            }
            self.poll_streams(&mut cx, now);
            self.poll_ping(&mut cx);
            self.account_sent(now);
            if !self.flag.is_set() {
                return;
            }
        }
    }

    fn poll_conn(&mut self, cx: &mut Context<'_>, now: Time) {
        if let State::Handshake(hs) = &mut self.state {
            match Pin::new(hs).poll(cx) {
                Poll::Pending => return,
                Poll::Ready(Ok(mut conn)) => {
                    self.ping = conn.ping_pong();
                    self.state = State::Open(conn);
                    self.count(|s| s.h2.connections += 1);
                }
                Poll::Ready(Err(e)) => {
                    // Not HTTP/2 (RFC 9113 §3.4: no GOAWAY needed), or the
                    // peer left before its preface.
                    if !e.is_io() {
                        self.count(|s| s.h2.protocol_errors += 1);
                    }
                    self.abort();
                    return;
                }
            }
        }
        let State::Open(conn) = &mut self.state else {
            return;
        };
        if let (Some(reason), false) = (self.go_away, self.go_away_applied) {
            conn.abrupt_shutdown(reason);
            self.go_away_applied = true;
            self.io.borrow_mut().discard_input();
        }
        let ended = loop {
            match conn.poll_accept(cx) {
                Poll::Ready(Some(Ok((req, respond)))) => {
                    if self.go_away.is_some() {
                        // Processed before our GOAWAY: h2 still hands it
                        // out; refuse it (the client may retry).
                        let mut respond = respond;
                        respond.send_reset(Reason::REFUSED_STREAM);
                        continue;
                    }
                    let proxy = self.proxy.as_deref();
                    let (req, respond) =
                        match proxied::start(proxy, &self.peer, &self.stats, req, respond) {
                            Ok(s) => {
                                self.proxied.push(s);
                                self.idle_since = None;
                                continue;
                            }
                            Err(r) => r,
                        };
                    match start(&self.date, &self.cfg, &self.stats, req, respond) {
                        Started::Streaming(s) => {
                            self.streams.push(s);
                            self.idle_since = None;
                        }
                        Started::Complete => {
                            self.guard.completed(1, &self.cfg, now);
                            self.idle_since = self.idle_since.map(|_| now);
                        }
                        // Reset by the client before we answered.
                        Started::Failed => {}
                    }
                }
                Poll::Ready(Some(Err(e))) => break Some(Err(e)),
                Poll::Ready(None) => break Some(Ok(())),
                Poll::Pending => break None,
            }
        };
        match ended {
            None => {}
            Some(Ok(())) => self.finish(false),
            Some(Err(e)) => {
                let abort = e.is_io();
                if !abort && e.is_go_away() && !e.is_remote() {
                    let calm = e.reason() == Some(Reason::ENHANCE_YOUR_CALM);
                    if calm && self.go_away.is_none() {
                        // h2's own bounds: the accept queue of reset
                        // streams, the local reset count, CONTINUATION
                        // and small-DATA budgets.
                        self.count(|s| s.h2.h2_floods += 1);
                    } else if !calm && e.reason() != Some(Reason::NO_ERROR) {
                        self.count(|s| s.h2.protocol_errors += 1);
                    }
                }
                self.finish(abort);
            }
        }
    }

    fn poll_streams(&mut self, cx: &mut Context<'_>, now: Time) {
        if self.streams.is_empty() && self.proxied.is_empty() {
            return;
        }
        let out_blocked = self.io.borrow().write_blocked();
        let mut completed = 0;
        self.streams
            .retain_mut(|s| match s.poll(cx, now, out_blocked) {
                Step::Waiting => true,
                Step::Done(ok) => {
                    completed += u64::from(ok);
                    false
                }
            });
        if let Some(p) = self.proxy.clone() {
            let (date, stats) = (&self.date, &self.stats);
            self.proxied
                .retain_mut(|s| match s.poll(&*p, cx, now, out_blocked, date, stats) {
                    proxied::Step::Waiting => true,
                    proxied::Step::Done(ok) => {
                        completed += u64::from(ok);
                        false
                    }
                });
        }
        self.guard.completed(completed, &self.cfg, now);
        if self.streams.is_empty() && self.proxied.is_empty() {
            self.idle_since = Some(now);
        }
    }

    /// Work for the proxy's sake that the flag does not show: a response
    /// part it has ready, or held request body it now takes (see
    /// [`Proxied::offer_held`]).
    fn proxy_pending(&self) -> bool {
        let Some(p) = &self.proxy else {
            return false;
        };
        // Every stream's held bytes are offered, not just the first's.
        let took = self
            .proxied
            .iter()
            .fold(false, |any, s| s.offer_held(&**p) | any);
        if took {
            // h2 must get the window back (and the body's end may follow):
            // the next drive does it.
            self.flag.set();
        }
        took || self.proxied.iter().any(|s| s.response_ready(&**p))
    }

    fn poll_ping(&mut self, cx: &mut Context<'_>) {
        if self.ping_sent.is_none() {
            return;
        }
        if let Some(pp) = &mut self.ping {
            if pp.poll_pong(cx).is_ready() {
                self.ping_sent = None;
            }
        }
    }

    /// What h2 wrote: credits for the flood bounds, our resets (the
    /// MadeYouReset bound), the first GOAWAY.
    fn account_sent(&mut self, now: Time) {
        let sent = self.io.borrow().sent;
        if sent == self.seen {
            return;
        }
        let seen = std::mem::replace(&mut self.seen, sent);
        self.guard.frames_sent(
            sent.data - seen.data,
            sent.headers - seen.headers,
            &self.cfg,
            now,
        );
        if seen.goaway.is_none() && sent.goaway.is_some() {
            self.count(|s| s.h2.goaway_sent += 1);
        }
        let resets = sent.resets - seen.resets;
        let open = matches!(self.state, State::Open(_));
        if resets > 0 && open && self.go_away.is_none() {
            if let Some(f) = self.guard.resets_sent(resets, &self.cfg, now) {
                self.count_flood(f);
                self.shut(Reason::ENHANCE_YOUR_CALM);
            }
        }
    }

    /// When the connection is idle too long: `idle_timeout`, and while
    /// draining at most `ping_timeout` (h2 waits for the answer to its
    /// shutdown PING, which a client may never send).
    fn idle_limit(&self) -> Option<Duration> {
        if self.draining {
            Some(match self.cfg.idle_timeout {
                Some(i) => i.min(self.cfg.ping_timeout),
                None => self.cfg.ping_timeout,
            })
        } else {
            self.cfg.idle_timeout
        }
    }

    fn head_deadline(&self) -> Option<Time> {
        self.scan.head_since().map(|t| t + self.cfg.head_timeout)
    }

    fn idle_deadline(&self) -> Option<Time> {
        if !self.streams.is_empty() || !self.proxied.is_empty() {
            return None;
        }
        Some(self.idle_since? + self.idle_limit()?)
    }

    fn ping_deadline(&self) -> Option<Time> {
        if !matches!(self.state, State::Open(_)) {
            return None;
        }
        match self.ping_sent {
            Some(t) => Some(t + self.cfg.ping_timeout),
            None => Some(self.last_input + self.cfg.ping_interval?),
        }
    }
}

fn err(
    status: u16,
    allow: Option<&'static str>,
    date: &LoopDate,
) -> (http::Response<()>, Option<Bytes>) {
    let (r, b) = routes::error(status, allow, date);
    (r, Some(b))
}

enum Started {
    Streaming(Stream),
    Complete,
    Failed,
}

enum Verdict {
    Ok,
    Flood(Flood),
    Malformed(Reason),
}

/// Frame-level errors h2 reports with another code than RFC 9113 asks for
/// (it says PROTOCOL_ERROR for all of them); caught here so the GOAWAY
/// carries the right one.
fn malformed(f: &Frame) -> Option<Reason> {
    let size = match f.ty {
        // §6.7; a PING on a stream is h2's PROTOCOL_ERROR.
        PING => f.stream == 0 && f.len != 8,
        // §6.5
        SETTINGS => f.stream == 0 && (f.len % 6 != 0 || (f.has(ACK) && f.len != 0)),
        // §6.9, §6.4
        WINDOW_UPDATE => f.len != 4,
        RST_STREAM => f.stream != 0 && f.len != 4,
        _ => false,
    };
    if size {
        return Some(Reason::FRAME_SIZE_ERROR);
    }
    // §6.5.2
    if f.ty == SETTINGS && f.window_overflow {
        return Some(Reason::FLOW_CONTROL_ERROR);
    }
    None
}

/// Answers a request: a complete response right away, or a stream that
/// sends one.
fn start(
    date: &LoopDate,
    cfg: &H2Config,
    stats: &SharedStats,
    req: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
) -> Started {
    let (parts, body) = req.into_parts();
    // RFC 9113 §8.3.1: a request without :path is malformed (h2 lets it
    // through).
    if parts.uri.path().is_empty() && parts.method != Method::CONNECT {
        respond.send_reset(Reason::PROTOCOL_ERROR);
        return Started::Failed;
    }
    let head_only = parts.method == Method::HEAD;
    let get = parts.method == Method::GET || head_only;
    let route = routes::route(parts.uri.path(), cfg.max_bytes_route);
    let (status, resp, streamed) = match (route, get, parts.method == Method::POST) {
        (Route::Health, true, _) => {
            let body = (!head_only).then(|| Bytes::from_static(b"ok\n"));
            (
                200,
                Ok((routes::head(200, "text/plain", Some(3), date), body)),
                None,
            )
        }
        (Route::Bytes(n), true, _) => {
            let r = routes::head(200, "application/octet-stream", Some(n), date);
            let streamed = (!head_only && n > 0).then_some(Body::Bytes {
                remaining: n,
                offset: 0,
            });
            (200, Err(r), streamed)
        }
        (Route::BadBytes, true, _) => (400, Ok(err(400, None, date)), None),
        (Route::Health | Route::Bytes(_) | Route::BadBytes, false, _) => {
            (405, Ok(err(405, Some("GET, HEAD"), date)), None)
        }
        (Route::Echo, _, true) => {
            let len = parts
                .headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| routes::parse_decimal(v.as_bytes()));
            let r = routes::head(200, "application/octet-stream", len, date);
            let streamed = (!body.is_end_stream()).then_some(Body::Echo {
                recv: body,
                queue: VecDeque::new(),
                queued: 0,
                recv_done: false,
            });
            (200, Err(r), streamed)
        }
        (Route::Echo, _, false) => (405, Ok(err(405, Some("POST"), date)), None),
        (Route::NotFound, _, _) => (404, Ok(err(404, None, date)), None),
    };
    {
        let mut s = stats.borrow_mut();
        s.http.requests += 1;
        s.h2.streams += 1;
        match status {
            200..=299 => s.http.status_2xx += 1,
            400..=499 => s.http.status_4xx += 1,
            _ => s.http.status_5xx += 1,
        }
    }
    match resp {
        // A complete response: head and (small) body handed to h2 now.
        Ok((r, body)) => {
            let sent = match body.filter(|_| !head_only) {
                None => respond.send_response(r, true).is_ok(),
                Some(b) => respond
                    .send_response(r, false)
                    .is_ok_and(|mut send| send.send_data(b, true).is_ok()),
            };
            if sent {
                Started::Complete
            } else {
                Started::Failed
            }
        }
        // A streamed body, or none (HEAD, `/bytes/0`, an empty POST).
        Err(r) => match (respond.send_response(r, streamed.is_none()), streamed) {
            (Ok(send), Some(body)) => Started::Streaming(Stream {
                send,
                body,
                stall_since: None,
                quiet_since: None,
            }),
            (Ok(_), None) => Started::Complete,
            (Err(_), _) => Started::Failed,
        },
    }
}

impl Drop for H2App {
    fn drop(&mut self) {
        self.teardown(State::Done { abort: true });
    }
}

impl App for H2App {
    fn on_read(&mut self, now: Time, data: &[u8]) -> usize {
        if self.input_closed || matches!(self.state, State::Done { .. }) {
            return data.len();
        }
        let room = self
            .cfg
            .read_cap()
            .saturating_sub(self.io.borrow().buffered_in());
        let take = room.min(data.len());
        if take == 0 {
            return 0;
        }
        let chunk = &data[..take];
        self.last_input = now;
        let preface = self.scan.preface_left().min(take);
        let (cfg, guard) = (&*self.cfg, &mut self.guard);
        let mut verdict = Verdict::Ok;
        self.scan.feed(chunk, now, |f| {
            verdict = match malformed(f) {
                Some(r) => Verdict::Malformed(r),
                None => guard
                    .on_frame(f, cfg, now)
                    .map_or(Verdict::Ok, Verdict::Flood),
            };
            matches!(verdict, Verdict::Ok)
        });
        if let Verdict::Ok = verdict {
            self.io.borrow_mut().push_input(chunk);
        } else {
            // h2 never sees the frame: only the preface (so that the
            // handshake completes and a GOAWAY can be sent).
            self.io.borrow_mut().push_input(&chunk[..preface]);
            match verdict {
                Verdict::Flood(kind) => {
                    self.count_flood(kind);
                    self.shut(Reason::ENHANCE_YOUR_CALM);
                }
                Verdict::Malformed(r) => {
                    self.count(|s| s.h2.protocol_errors += 1);
                    self.shut(r);
                }
                Verdict::Ok => {}
            }
        }
        self.drive(now);
        take
    }

    fn on_read_eof(&mut self, now: Time) {
        self.io.borrow_mut().set_eof();
        self.drive(now);
    }

    fn poll_write(&mut self, now: Time, buf: &mut [u8]) -> usize {
        let mut n = 0;
        let mut drives = 0;
        loop {
            n += self.io.borrow_mut().take_output(&mut buf[n..]);
            if n == buf.len()
                || drives == MAX_WRITE_DRIVES
                || !(self.flag.is_set() || self.proxy_pending())
            {
                break;
            }
            self.drive(now);
            drives += 1;
        }
        n
    }

    fn wants_read(&self) -> bool {
        !self.input_closed
            && !matches!(self.state, State::Done { .. })
            && self.io.borrow().buffered_in() < self.cfg.read_cap()
    }

    fn wants_write(&self) -> bool {
        let io = self.io.borrow();
        let pollable = !matches!(self.state, State::Done { .. });
        io.buffered_out() > 0
            || (pollable && !io.write_blocked() && (self.flag.is_set() || self.proxy_pending()))
    }

    fn deadline(&self) -> Option<Time> {
        if matches!(self.state, State::Done { .. }) || self.go_away.is_some() {
            return None;
        }
        let (c, streams) = (&self.cfg, self.streams.iter());
        let proxied = self.proxied.iter().filter_map(|s| s.stall_since);
        let stall = streams
            .flat_map(|s| {
                let stall = s.stall_since.map(|t| t + c.stall_timeout);
                let quiet = s.quiet_since.map(|t| t + c.progress_timeout);
                stall.into_iter().chain(quiet)
            })
            .chain(proxied.map(|t| t + c.stall_timeout))
            .min();
        [
            self.ping_deadline(),
            self.head_deadline(),
            self.idle_deadline(),
            stall,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn on_timeout(&mut self, now: Time) {
        if matches!(self.state, State::Done { .. }) || self.go_away.is_some() {
            return;
        }
        let open = matches!(self.state, State::Open(_));
        if self
            .ping_sent
            .is_some_and(|t| t + self.cfg.ping_timeout <= now)
        {
            self.count(|s| s.h2.ping_timeouts += 1);
            self.abort();
            return;
        }
        if self.head_deadline().is_some_and(|d| d <= now) {
            self.count(|s| s.http.head_timeouts += 1);
            if open {
                self.shut(Reason::NO_ERROR);
            } else {
                self.finish(false);
            }
        } else if self.idle_deadline().is_some_and(|d| d <= now) {
            if !self.draining {
                self.count(|s| s.http.idle_timeouts += 1);
            }
            if open {
                self.shut(Reason::NO_ERROR);
            } else {
                self.finish(false);
            }
        } else {
            let (stall, quiet) = (self.cfg.stall_timeout, self.cfg.progress_timeout);
            let (mut stalled, mut quieted) = (0, 0);
            self.streams.retain_mut(|s| {
                let window = s.stall_since.is_some_and(|t| t + stall <= now);
                let body = s.quiet_since.is_some_and(|t| t + quiet <= now);
                if window || body {
                    s.send.send_reset(Reason::CANCEL);
                    stalled += u64::from(window);
                    quieted += u64::from(!window);
                }
                !(window || body)
            });
            // A proxied response stalls the same way (its backend's
            // silence is the proxy's timeout, not ours).
            if let Some(p) = self.proxy.clone() {
                self.proxied.retain_mut(|s| {
                    let window = s.stall_since.is_some_and(|t| t + stall <= now);
                    if window {
                        s.reset(&*p, Reason::CANCEL);
                        stalled += 1;
                    }
                    !window
                });
            }
            if stalled + quieted > 0 {
                self.count(|s| {
                    s.h2.stalled_streams += stalled;
                    s.http.progress_timeouts += quieted;
                });
                self.flag.set();
                if self.streams.is_empty() && self.proxied.is_empty() {
                    self.idle_since = Some(now);
                }
            }
            if self.ping_sent.is_none()
                && self
                    .cfg
                    .ping_interval
                    .is_some_and(|i| self.last_input + i <= now)
            {
                // Even if h2 refuses (the connection is closing), the PING
                // counts as sent: its timeout ends the connection.
                if let Some(pp) = &mut self.ping {
                    let _ = pp.send_ping(Ping::opaque());
                }
                self.ping_sent = Some(now);
                self.flag.set();
            }
        }
        self.drive(now);
    }

    /// Approximate: the transport buffers' allocations, the echo bytes
    /// taken from h2 and not yet sent back, and the proxied streams'
    /// request bytes not yet taken by the proxy and response bytes not yet
    /// handed to h2. h2's own buffers (a frame being read, DATA not yet
    /// polled, up to `max_send_buffer` queued per stream) are bounded by
    /// the windows and settings but not counted.
    fn memory(&self) -> usize {
        // h2 reports none of its own allocations; its codec buffers are
        // the bulk of them and live as long as the connection.
        crate::CODEC_BUFFERS
            + self.io.borrow().capacity()
            + self.streams.iter().map(Stream::queued).sum::<usize>()
            + self.proxied.iter().map(Proxied::memory).sum::<usize>()
    }

    fn close(&self) -> Close {
        match self.state {
            State::Done { abort: true } => Close::Abort,
            State::Done { abort: false } if self.io.borrow().buffered_out() == 0 => Close::Graceful,
            _ => Close::No,
        }
    }

    fn is_idle(&self) -> bool {
        let io = self.io.borrow();
        matches!(self.state, State::Open(_))
            && self.streams.is_empty()
            && self.proxied.is_empty()
            && io.buffered_in() == 0
            && io.buffered_out() == 0
            && self.scan.head_since().is_none()
    }

    /// Frees the transport buffers (h2's own, a few KiB, stay).
    fn release_idle_memory(&mut self) {
        if self.is_idle() {
            self.io.borrow_mut().release_empty();
        }
    }

    fn drain(&mut self, now: Time) {
        if self.draining {
            return;
        }
        self.draining = true;
        if self.streams.is_empty() && self.proxied.is_empty() {
            self.idle_since = Some(now);
        }
        match &mut self.state {
            // GOAWAY, then a PING; once answered, the final GOAWAY, and the
            // end when the streams are done.
            State::Open(conn) => conn.graceful_shutdown(),
            // No preface yet: nothing to finish.
            State::Handshake(_) => self.finish(false),
            State::Done { .. } => {}
        }
        self.flag.set();
        self.drive(now);
    }
}
