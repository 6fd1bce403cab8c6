//! `H2App`: one HTTP/2 connection on sluice's own server connection
//! ([`ServerConn`], on sluice-h2codec), with the built-in routes, the
//! proxy's streams, and the flood bounds and timers around it.

use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use sluice_app::proxy::Proxy;
use sluice_app::{App, Close, ConnContext, LoopDate, SharedStats, Time};
use sluice_h2codec::frame::ErrorCode;

use crate::config::H2Config;
use crate::guard::{Flood, Guard};
use crate::proxied::{self, Peer, Proxied};
use crate::routes::{self, Route, MAX_CHUNK};
use crate::scan::{Frame, Scanner, ACK, PING, RST_STREAM, SETTINGS, WINDOW_UPDATE};
use crate::server::{RequestHead, ServerConn, ServerConnConfig, ServerEvent};

/// The payload of the PING that follows the first GOAWAY of a drain.
const DRAIN_PING: [u8; 8] = *b"drain\0\0\0";

/// Drives per `poll_write` call (each after draining the output into the
/// caller's buffer).
const MAX_WRITE_DRIVES: usize = 4;

/// What answers a stream.
enum Handler {
    /// `/bytes/N`: bytes left to send, offset of the next one.
    Bytes {
        remaining: u64,
        offset: u64,
        stall: Stall,
    },
    /// `/echo`: request DATA not yet sent back (its receive window is
    /// released only once it is).
    Echo {
        queue: VecDeque<Bytes>,
        queued: usize,
        /// Handed to the connection and not released yet: released as the
        /// connection sends them, so the client's window bounds what waits.
        in_conn: usize,
        recv_done: bool,
        stall: Stall,
        /// Since when it has waited for request body with nothing to send.
        quiet_since: Option<Time>,
    },
    Proxied(Box<Proxied>),
}

impl Handler {
    fn stall_since(&self) -> Option<Time> {
        match self {
            Handler::Bytes { stall, .. } | Handler::Echo { stall, .. } => stall.since,
            Handler::Proxied(p) => p.stall.since,
        }
    }

    fn quiet_since(&self) -> Option<Time> {
        match self {
            Handler::Echo { quiet_since, .. } => *quiet_since,
            _ => None,
        }
    }

    fn memory(&self) -> usize {
        match self {
            Handler::Echo { queued, .. } => *queued,
            Handler::Proxied(p) => p.memory(),
            Handler::Bytes { .. } => 0,
        }
    }
}

/// One HTTP/2 connection. See docs/http2.md.
pub struct H2App {
    cfg: Rc<H2Config>,
    date: LoopDate,
    stats: SharedStats,
    conn: ServerConn,
    /// By the connection's stream key.
    handlers: Vec<Option<Handler>>,
    active: usize,
    /// The loop's proxy (None: built-in routes only).
    proxy: Option<Rc<dyn Proxy>>,
    peer: Peer,
    scan: Scanner,
    guard: Guard,
    established: bool,
    last_input: Time,
    ping_sent: Option<Time>,
    /// No stream since then.
    idle_since: Option<Time>,
    draining: bool,
    /// GOAWAY we decided on, and whether it was counted.
    go_away: Option<ErrorCode>,
    goaway_counted: bool,
    /// Input is dropped from now on.
    input_closed: bool,
    /// The connection is over; `true`: reset rather than closed.
    done: Option<bool>,
}

impl std::fmt::Debug for H2App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2App")
            .field("streams", &self.active)
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
        let conn = ServerConn::new(ServerConnConfig::from_h2(&cfg));
        H2App {
            cfg,
            date,
            stats,
            conn,
            handlers: Vec::new(),
            active: 0,
            proxy: None,
            peer: Peer::new(ctx),
            scan: Scanner::new(true),
            guard: Guard::default(),
            established: false,
            last_input: now,
            ping_sent: None,
            idle_since: Some(now),
            draining: false,
            go_away: None,
            goaway_counted: false,
            input_closed: false,
            done: None,
        }
    }

    /// Requests that a proxy route matches go to `proxy` (with the wake
    /// key, peer address, TLS flag and SPIFFE ID of the `ConnContext` this
    /// app was made with); the others get the built-in routes.
    pub fn with_proxy(mut self, proxy: Rc<dyn Proxy>) -> Self {
        self.proxy = Some(proxy);
        self
    }

    /// Kept for the fuzz target: the connection is our own code now and
    /// has no foreign state to contain. Always false.
    #[doc(hidden)]
    pub fn panicked(&self) -> bool {
        false
    }

    /// The client's verified SPIFFE ID, if it presented one (mTLS).
    pub fn peer_spiffe_id(&self) -> Option<&str> {
        self.peer.spiffe_id.as_deref()
    }

    /// Open streams with a response in progress (proxied ones included).
    pub fn active_streams(&self) -> usize {
        self.active
    }

    /// A stream is open: being answered, or its response still going out.
    fn busy(&self) -> bool {
        self.active > 0 || self.conn.active() > 0
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

    /// Ends the connection with a GOAWAY(code), reading nothing more; the
    /// streams in progress are abandoned.
    fn shut(&mut self, code: ErrorCode) {
        if self.go_away.is_none() {
            self.go_away = Some(code);
        }
        self.input_closed = true;
        if self.conn.preface_received() {
            // A connection error, or (NO_ERROR) the graceful GOAWAY; either
            // way the streams end here.
            self.conn.go_away(code);
            self.count_goaway();
        }
        self.finish(false);
    }

    fn count_goaway(&mut self) {
        if !self.goaway_counted {
            self.goaway_counted = true;
            self.count(|s| s.h2.goaway_sent += 1);
        }
    }

    /// Reset without a word (the peer is gone, or the transport failed).
    fn abort(&mut self) {
        self.finish(true);
    }

    /// The connection is over: proxied exchanges still open are cancelled
    /// (the client will never see their responses).
    fn finish(&mut self, abort: bool) {
        if self.done.is_none() {
            self.done = Some(abort);
        }
        self.ping_sent = None;
        let handlers = std::mem::take(&mut self.handlers);
        if let Some(p) = &self.proxy {
            for h in handlers.into_iter().flatten() {
                if let Handler::Proxied(mut s) = h {
                    s.cancel(&**p);
                }
            }
        }
        self.active = 0;
    }

    fn handler_mut(&mut self, key: u32) -> Option<&mut Handler> {
        self.handlers.get_mut(key as usize)?.as_mut()
    }

    fn set_handler(&mut self, key: u32, h: Handler) {
        let k = key as usize;
        if self.handlers.len() <= k {
            self.handlers.resize_with(k + 1, || None);
        }
        if self.handlers[k].replace(h).is_none() {
            self.active += 1;
        }
    }

    fn remove_handler(&mut self, key: u32) -> Option<Handler> {
        let h = self.handlers.get_mut(key as usize)?.take()?;
        self.active -= 1;
        Some(h)
    }

    /// Handles what the connection parsed, then moves every stream, then
    /// accounts what went out.
    fn drive(&mut self, now: Time) {
        if self.done.is_some() {
            return;
        }
        if !self.established && self.conn.preface_received() {
            self.established = true;
            self.count(|s| s.h2.connections += 1);
        }
        while let Some((key, ev)) = self.conn.poll_event() {
            self.on_event(key, ev, now);
            if self.done.is_some() {
                return;
            }
        }
        match self.conn.take_ping_ack() {
            Some(DRAIN_PING) if self.draining => {
                // A round trip after the first GOAWAY: every stream the
                // client opened before seeing it has arrived. The final
                // GOAWAY names the last one; the connection ends when
                // they are done.
                self.conn.go_away(ErrorCode::NoError);
            }
            Some(_) => self.ping_sent = None,
            None => {}
        }
        self.poll_streams(now);
        self.account(now);
        if self.conn.goaway_written() {
            self.count_goaway();
        }
        if let Some(clean) = self.conn.ended() {
            // Errors the connection found itself (ours, from `shut`, are
            // counted where they were decided).
            let found = self.conn.error_sent().filter(|_| self.go_away.is_none());
            if let Some(code) = found {
                self.count_goaway();
                match code {
                    // Our own bounds (CONTINUATION flood).
                    ErrorCode::EnhanceYourCalm => self.count(|s| s.h2.h2_floods += 1),
                    ErrorCode::NoError => {}
                    _ => self.count(|s| s.h2.protocol_errors += 1),
                }
            } else if !self.established && !clean {
                self.count(|s| s.h2.protocol_errors += 1);
            }
            // Not HTTP/2 (a bad preface): RFC 9113 §3.4 needs no GOAWAY,
            // the connection is reset.
            let abort = !self.conn.preface_received();
            self.finish(abort);
            return;
        }
        // Idle from the moment the last stream closed, not from when its
        // handler handed over the last bytes.
        if self.busy() {
            self.idle_since = None;
        } else if self.idle_since.is_none() {
            self.idle_since = Some(now);
        }
    }

    fn on_event(&mut self, key: u32, ev: ServerEvent, now: Time) {
        match ev {
            ServerEvent::Request { head, end_stream } => {
                // Idle again from when this one is done.
                self.idle_since = None;
                if self.go_away.is_some() {
                    // Processed before our GOAWAY: refused (the client may
                    // retry elsewhere).
                    self.conn.reset(key, ErrorCode::RefusedStream);
                    return;
                }
                self.start(key, head, end_stream, now);
            }
            ServerEvent::Data(d) => {
                let n = d.len();
                match self.handler_mut(key) {
                    Some(Handler::Echo {
                        queue,
                        queued,
                        quiet_since,
                        ..
                    }) => {
                        *quiet_since = None;
                        if n > 0 {
                            *queued += n;
                            queue.push_back(d);
                        }
                    }
                    Some(Handler::Proxied(p)) => p.push_body(d),
                    // Nobody wants it (a route that answered already).
                    _ => self.conn.release(key, n),
                }
            }
            ServerEvent::Trailers(t) => {
                if let Some(Handler::Proxied(p)) = self.handler_mut(key) {
                    p.set_trailers(t);
                }
            }
            ServerEvent::End => match self.handler_mut(key) {
                Some(Handler::Echo {
                    recv_done,
                    quiet_since,
                    ..
                }) => {
                    *recv_done = true;
                    *quiet_since = None;
                }
                Some(Handler::Proxied(p)) => p.end_of_body(),
                _ => {}
            },
            ServerEvent::Reset(_) => {
                if let Some(Handler::Proxied(mut p)) = self.remove_handler(key) {
                    if let Some(proxy) = &self.proxy {
                        p.cancel(&**proxy);
                    }
                }
            }
        }
    }

    /// Answers a request: the proxy's if one of its routes matches, else
    /// a built-in route.
    fn start(&mut self, key: u32, head: RequestHead, end_stream: bool, now: Time) {
        let req = proxied::NewRequest {
            key,
            head,
            end_stream,
        };
        let req = match proxied::start(
            self.proxy.as_deref(),
            &self.peer,
            &self.stats,
            &mut self.conn,
            req,
            self.cfg.max_send_buffer,
        ) {
            Ok(p) => {
                self.set_handler(key, Handler::Proxied(Box::new(p)));
                return;
            }
            Err(req) => req,
        };
        match start(&self.date, &self.cfg, &self.stats, &mut self.conn, req) {
            Some(h) => self.set_handler(key, h),
            None => self.guard.completed(1, &self.cfg, now),
        }
    }

    fn poll_streams(&mut self, now: Time) {
        if self.active == 0 {
            return;
        }
        // The output full: a stream with bytes waiting then is waiting for
        // TCP, not for a window.
        let out_blocked = self.conn.output_full();
        let ahead = self.ahead();
        let mut completed = 0;
        for key in 0..self.handlers.len() as u32 {
            let Some(h) = self.handlers[key as usize].as_mut() else {
                continue;
            };
            let done = match h {
                Handler::Bytes {
                    remaining,
                    offset,
                    stall,
                } => {
                    while *remaining > 0 && self.conn.unsent(key) < ahead {
                        let k = (*remaining).min(MAX_CHUNK as u64) as usize;
                        let chunk = routes::pattern(*offset, k);
                        *remaining -= k as u64;
                        *offset += k as u64;
                        self.conn.send_bytes(key, chunk, *remaining == 0, None);
                    }
                    // Done once the connection sent it all: until then a
                    // closed window is this stream's stall.
                    stall.update(&self.conn, key, out_blocked, now);
                    let waiting = self.conn.unsent(key) > 0;
                    (*remaining == 0 && !waiting).then_some(true)
                }
                Handler::Echo {
                    queue,
                    queued,
                    in_conn,
                    recv_done,
                    stall,
                    quiet_since,
                } => {
                    let mut handed = false;
                    while self.conn.unsent(key) < ahead {
                        let Some(b) = queue.pop_front() else {
                            break;
                        };
                        *queued -= b.len();
                        *in_conn += b.len();
                        handed = true;
                        let last = *recv_done && queue.is_empty();
                        self.conn.send_bytes(key, b, last, None);
                    }
                    // What left: the client may send as much again.
                    let gone = *in_conn - self.conn.unsent(key).min(*in_conn);
                    if gone > 0 {
                        self.conn.release(key, gone);
                        *in_conn -= gone;
                    }
                    if handed || gone > 0 {
                        *quiet_since = None;
                    }
                    let finished = *recv_done && queue.is_empty();
                    if finished && !handed {
                        // The body ended after its last DATA went back (or
                        // was empty); a no-op once the end went.
                        self.conn.end_response(key, None);
                    }
                    stall.update(&self.conn, key, out_blocked, now);
                    let waiting = self.conn.unsent(key) > 0;
                    if !finished && !waiting && queue.is_empty() {
                        quiet_since.get_or_insert(now);
                    }
                    (finished && !waiting).then_some(true)
                }
                Handler::Proxied(p) => {
                    let proxy = self.proxy.as_deref().expect("proxied streams have a proxy");
                    match p.poll(
                        proxy,
                        &mut self.conn,
                        key,
                        now,
                        out_blocked,
                        &self.date,
                        &self.stats,
                    ) {
                        proxied::Step::Waiting => None,
                        proxied::Step::Done(ok) => Some(ok),
                    }
                }
            };
            if let Some(ok) = done {
                completed += u64::from(ok);
                self.remove_handler(key);
            }
        }
        self.guard.completed(completed, &self.cfg, now);
    }

    /// The output is drained: a stream with bytes still waiting now waits
    /// for the client's window (the stall timer runs).
    fn mark_stalls(&mut self, now: Time) {
        for (key, h) in self.handlers.iter_mut().enumerate() {
            let stall = match h {
                Some(Handler::Bytes { stall, .. } | Handler::Echo { stall, .. }) => stall,
                Some(Handler::Proxied(p)) => &mut p.stall,
                None => continue,
            };
            stall.update(&self.conn, key as u32, false, now);
        }
    }

    /// Work for the proxy's sake that nothing else shows: a response part
    /// it has ready, or held request body it now takes (see
    /// [`Proxied::offer_held`]).
    fn proxy_pending(&self) -> bool {
        let Some(p) = &self.proxy else {
            return false;
        };
        let mut any = false;
        for (key, h) in self.handlers.iter().enumerate() {
            if let Some(Handler::Proxied(s)) = h {
                // Every stream's held bytes are offered, not just the first's.
                any |= s.offer_held(&**p);
                any |= s.response_ready(&**p, &self.conn, key as u32);
            }
        }
        any
    }

    /// Response bytes a stream may hand the connection ahead of the
    /// client's windows.
    fn ahead(&self) -> usize {
        self.cfg.max_send_buffer.max(MAX_CHUNK)
    }

    /// Built-in streams with bytes to hand to the connection.
    fn streams_pending(&self) -> bool {
        let ahead = self.ahead();
        self.handlers.iter().enumerate().any(|(key, h)| match h {
            Some(Handler::Bytes { remaining, .. }) => {
                *remaining > 0 && self.conn.unsent(key as u32) < ahead
            }
            Some(Handler::Echo {
                queue,
                recv_done,
                in_conn,
                ..
            }) => {
                let unsent = self.conn.unsent(key as u32);
                *in_conn > unsent || ((!queue.is_empty() || *recv_done) && unsent < ahead)
            }
            _ => false,
        })
    }

    /// What went out and came in, for the flood bounds: credits for
    /// frames sent, and the resets the client made us send (MadeYouReset).
    fn account(&mut self, now: Time) {
        let c = self.conn.take_frame_counts();
        self.guard.frames_sent(
            u64::from(c.data_sent),
            u64::from(c.headers_sent),
            &self.cfg,
            now,
        );
        if c.rst_stream_sent > 0 && self.go_away.is_none() {
            if let Some(f) = self
                .guard
                .resets_sent(u64::from(c.rst_stream_sent), &self.cfg, now)
            {
                self.count_flood(f);
                self.shut(ErrorCode::EnhanceYourCalm);
            }
        }
    }

    /// When the connection is idle too long: `idle_timeout`, and while
    /// draining at most `ping_timeout`.
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
        if self.busy() {
            return None;
        }
        Some(self.idle_since? + self.idle_limit()?)
    }

    fn ping_deadline(&self) -> Option<Time> {
        if !self.established {
            return None;
        }
        match self.ping_sent {
            Some(t) => Some(t + self.cfg.ping_timeout),
            None => Some(self.last_input + self.cfg.ping_interval?),
        }
    }
}

/// A stream's stall timer: runs while it has response bytes waiting and
/// none go out; restarts whenever some do (a window opened in time).
#[derive(Debug, Default)]
pub(crate) struct Stall {
    pub since: Option<Time>,
    last_sent: u64,
}

impl Stall {
    /// `out_blocked`: the connection's output is full, so waiting is
    /// TCP's matter, not a window stall.
    pub fn update(&mut self, conn: &ServerConn, key: u32, out_blocked: bool, now: Time) {
        let sent = conn.body_sent(key);
        if conn.unsent(key) == 0 || out_blocked {
            self.since = None;
        } else if sent != self.last_sent {
            self.since = Some(now);
        } else {
            self.since.get_or_insert(now);
        }
        self.last_sent = sent;
    }
}

enum Verdict {
    Ok,
    Flood(Flood),
    Malformed(ErrorCode),
}

/// Frame-level errors with the code RFC 9113 asks for, caught by the
/// scanner before the connection parses the frame.
fn malformed(f: &Frame) -> Option<ErrorCode> {
    let size = match f.ty {
        // §6.7
        PING => f.stream == 0 && f.len != 8,
        // §6.5
        SETTINGS => f.stream == 0 && (f.len % 6 != 0 || (f.has(ACK) && f.len != 0)),
        // §6.9, §6.4
        WINDOW_UPDATE => f.len != 4,
        RST_STREAM => f.stream != 0 && f.len != 4,
        _ => false,
    };
    if size {
        return Some(ErrorCode::FrameSizeError);
    }
    // §6.5.2
    if f.ty == SETTINGS && f.window_overflow {
        return Some(ErrorCode::FlowControlError);
    }
    None
}

/// The path without its query, for the built-in routes.
fn path_only(path: &[u8]) -> &str {
    let end = path.iter().position(|&b| b == b'?').unwrap_or(path.len());
    std::str::from_utf8(&path[..end]).unwrap_or("")
}

/// Answers a request with a built-in route: a complete response right
/// away (None), or a handler that streams one.
fn start(
    date: &LoopDate,
    cfg: &H2Config,
    stats: &SharedStats,
    conn: &mut ServerConn,
    req: proxied::NewRequest,
) -> Option<Handler> {
    let proxied::NewRequest {
        key,
        head,
        end_stream,
    } = req;
    let method = &head.method;
    let head_only = *method == Method::HEAD;
    let get = *method == Method::GET || head_only;
    let route = routes::route(path_only(&head.path), cfg.max_bytes_route);
    let status;
    let mut handler = None;
    match (route, get, *method == Method::POST) {
        (Route::Health, true, _) => {
            status = 200;
            let r = routes::head(200, "text/plain", Some(3), date);
            respond(conn, key, &r, (!head_only).then_some(b"ok\n"));
        }
        (Route::Bytes(n), true, _) => {
            status = 200;
            let r = routes::head(200, "application/octet-stream", Some(n), date);
            let streamed = !head_only && n > 0;
            conn.send_response(key, 200, r.headers(), !streamed);
            if streamed {
                handler = Some(Handler::Bytes {
                    remaining: n,
                    offset: 0,
                    stall: Stall::default(),
                });
            }
        }
        (Route::BadBytes, true, _) => {
            status = 400;
            error(conn, key, 400, None, date, head_only);
        }
        (Route::Health | Route::Bytes(_) | Route::BadBytes, false, _) => {
            status = 405;
            error(conn, key, 405, Some("GET, HEAD"), date, head_only);
        }
        (Route::Echo, _, true) => {
            status = 200;
            let r = routes::head(200, "application/octet-stream", head.content_length, date);
            conn.send_response(key, 200, r.headers(), end_stream);
            if !end_stream {
                handler = Some(Handler::Echo {
                    queue: VecDeque::new(),
                    queued: 0,
                    in_conn: 0,
                    recv_done: false,
                    stall: Stall::default(),
                    quiet_since: None,
                });
            }
        }
        (Route::Echo, _, false) => {
            status = 405;
            error(conn, key, 405, Some("POST"), date, head_only);
        }
        (Route::NotFound, _, _) => {
            status = 404;
            error(conn, key, 404, None, date, head_only);
        }
    }
    let mut s = stats.borrow_mut();
    s.http.requests += 1;
    s.h2.streams += 1;
    match status {
        200..=299 => s.http.status_2xx += 1,
        400..=499 => s.http.status_4xx += 1,
        _ => s.http.status_5xx += 1,
    }
    handler
}

/// A complete response: head, and a small body on one DATA frame with
/// END_STREAM.
fn respond(conn: &mut ServerConn, key: u32, r: &http::Response<()>, body: Option<&[u8]>) {
    let status = r.status().as_u16();
    match body {
        None => conn.send_response(key, status, r.headers(), true),
        Some(b) => {
            conn.send_response(key, status, r.headers(), false);
            conn.send_last_data(key, b, None);
        }
    }
}

pub(crate) fn error(
    conn: &mut ServerConn,
    key: u32,
    status: u16,
    allow: Option<&'static str>,
    date: &LoopDate,
    head_only: bool,
) {
    let (r, body) = routes::error(status, allow, date);
    respond(conn, key, &r, (!head_only).then_some(&body[..]));
}

impl Drop for H2App {
    /// Exchanges still open are cancelled: nobody will read them.
    fn drop(&mut self) {
        self.finish(true);
    }
}

impl App for H2App {
    fn on_read(&mut self, now: Time, data: &[u8]) -> usize {
        if self.input_closed || self.done.is_some() {
            return data.len();
        }
        self.last_input = now;
        // Frames written since the last drive (bodies flushed as the
        // output drained) earn their tokens before this input is judged.
        self.account(now);
        if self.done.is_some() {
            return data.len();
        }
        let preface = self.scan.preface_left().min(data.len());
        let (cfg, guard) = (&*self.cfg, &mut self.guard);
        let mut verdict = Verdict::Ok;
        let mut ok_len = data.len();
        self.scan.feed(data, now, |f| {
            verdict = match malformed(f) {
                Some(r) => Verdict::Malformed(r),
                None => guard
                    .on_frame(f, cfg, now)
                    .map_or(Verdict::Ok, Verdict::Flood),
            };
            matches!(verdict, Verdict::Ok)
        });
        if !matches!(verdict, Verdict::Ok) {
            // The connection never sees the offending frame: only the
            // preface (so that a GOAWAY can be sent).
            ok_len = preface;
        }
        self.conn.on_read(&data[..ok_len]);
        match verdict {
            Verdict::Flood(kind) => {
                self.drive(now);
                self.count_flood(kind);
                self.shut(ErrorCode::EnhanceYourCalm);
            }
            Verdict::Malformed(code) => {
                self.drive(now);
                self.count(|s| s.h2.protocol_errors += 1);
                self.shut(code);
            }
            Verdict::Ok => self.drive(now),
        }
        data.len()
    }

    fn on_read_eof(&mut self, now: Time) {
        self.conn.on_read_eof();
        self.drive(now);
        self.finish(false);
    }

    fn poll_write(&mut self, now: Time, buf: &mut [u8]) -> usize {
        let mut n = 0;
        let mut drives = 0;
        loop {
            n += self.conn.poll_write(&mut buf[n..]);
            if n == buf.len()
                || drives == MAX_WRITE_DRIVES
                || self.done.is_some()
                || !(self.streams_pending() || self.proxy_pending())
            {
                break;
            }
            self.drive(now);
            drives += 1;
        }
        if !self.conn.output_full() && self.done.is_none() {
            self.mark_stalls(now);
        }
        n
    }

    /// Not while the output is full: a client that does not read stops
    /// being read (what it sends could only add to the output).
    fn wants_read(&self) -> bool {
        !self.input_closed && self.done.is_none() && !self.conn.output_full()
    }

    fn wants_write(&self) -> bool {
        self.conn.wants_write()
            || (self.done.is_none() && (self.streams_pending() || self.proxy_pending()))
    }

    fn deadline(&self) -> Option<Time> {
        if self.done.is_some() || self.go_away.is_some() {
            return None;
        }
        let c = &self.cfg;
        let stall = self
            .handlers
            .iter()
            .flatten()
            .flat_map(|h| {
                let stall = h.stall_since().map(|t| t + c.stall_timeout);
                let quiet = h.quiet_since().map(|t| t + c.progress_timeout);
                stall.into_iter().chain(quiet)
            })
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
        if self.done.is_some() || self.go_away.is_some() {
            return;
        }
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
            self.shut(ErrorCode::NoError);
        } else if self.idle_deadline().is_some_and(|d| d <= now) {
            if !self.draining {
                self.count(|s| s.http.idle_timeouts += 1);
            }
            self.shut(ErrorCode::NoError);
        } else {
            let (stall, quiet) = (self.cfg.stall_timeout, self.cfg.progress_timeout);
            let (mut stalled, mut quieted) = (0, 0);
            for key in 0..self.handlers.len() as u32 {
                let Some(h) = self.handlers[key as usize].as_ref() else {
                    continue;
                };
                let window = h.stall_since().is_some_and(|t| t + stall <= now);
                let body = h.quiet_since().is_some_and(|t| t + quiet <= now);
                if !(window || body) {
                    continue;
                }
                stalled += u64::from(window);
                quieted += u64::from(!window);
                if let Some(Handler::Proxied(mut p)) = self.remove_handler(key) {
                    // A proxied response stalls the same way (its
                    // backend's silence is the proxy's timeout, not ours).
                    if let Some(proxy) = &self.proxy {
                        p.cancel(&**proxy);
                    }
                }
                self.conn.reset(key, ErrorCode::Cancel);
            }
            if stalled + quieted > 0 {
                self.count(|s| {
                    s.h2.stalled_streams += stalled;
                    s.http.progress_timeouts += quieted;
                });
            }
            if self.ping_sent.is_none()
                && self
                    .cfg
                    .ping_interval
                    .is_some_and(|i| self.last_input + i <= now)
            {
                self.conn.ping(*b"sluice\0\0");
                self.ping_sent = Some(now);
            }
        }
        self.drive(now);
    }

    /// The connection's buffers and HPACK tables, the echo bytes not yet
    /// sent back, and the proxied streams' request bytes not yet taken by
    /// the proxy.
    fn memory(&self) -> usize {
        self.conn.memory()
            + self
                .handlers
                .iter()
                .flatten()
                .map(Handler::memory)
                .sum::<usize>()
    }

    fn close(&self) -> Close {
        match self.done {
            Some(true) => Close::Abort,
            Some(false) if !self.conn.wants_write() => Close::Graceful,
            _ => Close::No,
        }
    }

    fn is_idle(&self) -> bool {
        self.established
            && self.done.is_none()
            && !self.busy()
            && !self.conn.wants_write()
            && self.scan.head_since().is_none()
    }

    /// Frees the connection's buffers (the HPACK tables stay).
    fn release_idle_memory(&mut self) {
        if self.is_idle() {
            self.conn.release_memory();
        }
    }

    fn drain(&mut self, now: Time) {
        if self.draining {
            return;
        }
        self.draining = true;
        if !self.established {
            // No preface yet: nothing to finish.
            self.finish(false);
            return;
        }
        if !self.busy() {
            self.idle_since = Some(now);
        }
        // RFC 9113 §6.8: GOAWAY with the largest id and a PING; on its
        // answer the final GOAWAY (see `drive`). A client that never
        // answers is bounded by the idle limit (`ping_timeout` while
        // draining).
        self.conn.announce_go_away();
        self.conn.ping(DRAIN_PING);
        self.count_goaway();
        self.drive(now);
    }
}
