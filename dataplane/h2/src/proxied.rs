//! Streams whose response comes from the loop's reverse proxy
//! ([`sluice_app::proxy`]): the request head and body go to the proxy, the
//! response it pulls from a backend goes back on the stream.
//!
//! Backpressure both ways: request DATA the proxy has not taken stays
//! unreleased in the stream's receive window (the client stops sending),
//! and the response is pulled from the proxy only while little waits for
//! the client's send window (the proxy stops reading the backend).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use http::header::{HeaderValue, CONTENT_LENGTH, EXPECT, HOST, TE};
use http::{HeaderMap, Method};
use sluice_app::proxy::{
    BodyLen, ExchangeId, Headers, Proxy, ProxyError, ProxyRequest, ResponsePart, WakeKey,
};
use sluice_app::{ConnContext, LoopDate, SharedStats, Time};
use sluice_h2codec::frame::ErrorCode;

use crate::app::Stall;
use crate::server::{RequestHead, ServerConn};

/// Who the connection is, for the requests it hands to the proxy.
#[derive(Clone, Debug, Default)]
pub(crate) struct Peer {
    pub wake: WakeKey,
    pub client: Option<SocketAddr>,
    pub tls: bool,
    pub spiffe_id: Option<Arc<str>>,
    pub tls_handshake: Option<std::time::Duration>,
}

impl Peer {
    pub fn new(ctx: &ConnContext) -> Self {
        Peer {
            wake: ctx.wake,
            client: ctx.peer,
            tls: ctx.tls,
            tls_handshake: ctx.tls_handshake,
            spiffe_id: ctx.spiffe_id.clone(),
        }
    }
}

/// A request the connection handed out, on stream `key`.
pub(crate) struct NewRequest {
    pub key: u32,
    pub head: RequestHead,
    pub end_stream: bool,
}

/// Hands a request to the proxy if one of its routes matches; gives it
/// back otherwise. Its fields are the stream's own map, moved (no
/// copy per field).
// The head handed back is moved once per stream: its size is moot.
#[allow(clippy::result_large_err)]
pub(crate) fn start(
    proxy: Option<&dyn Proxy>,
    peer: &Peer,
    stats: &SharedStats,
    conn: &mut ServerConn,
    req: NewRequest,
    out_buffer: usize,
) -> Result<Proxied, NewRequest> {
    let Some(p) = proxy else {
        return Err(req);
    };
    // CONNECT and `OPTIONS *` are not for a route.
    if !req.head.path.starts_with(b"/") {
        return Err(req);
    }
    let NewRequest {
        key,
        mut head,
        end_stream,
    } = req;
    let authority = match &head.authority {
        Some(a) => Some(&a[..]),
        None => head.headers.get(HOST).map(|h| h.as_bytes()),
    };
    let method = head.method.as_str().as_bytes();
    if !p.matches(authority, method, &head.path) {
        return Err(NewRequest {
            key,
            head,
            end_stream,
        });
    }
    let expects_continue = head
        .headers
        .get(EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let body = if end_stream {
        BodyLen::None
    } else {
        // The connection checks that the DATA frames add up to it.
        match head.content_length {
            Some(n) => BodyLen::Length(n),
            None => BodyLen::Streamed,
        }
    };
    let authority = authority.map(<[u8]>::to_vec);
    let mut headers = std::mem::take(&mut head.headers);
    // Host travels as the authority, the body's length as `body`. `Expect`
    // is not the backend's to answer: the proxy reads the body whatever it
    // says (as HTTP/1.1 downstream does). `te: trailers` is hop-by-hop (the
    // proxy sets it for gRPC); the connection has refused the other
    // connection-specific fields already.
    for name in [HOST, CONTENT_LENGTH, EXPECT, TE] {
        headers.remove(name);
    }
    let request = ProxyRequest {
        method: method.to_vec(),
        path: head.path.to_vec(),
        authority,
        headers,
        body,
        client: peer.client,
        tls: peer.tls,
        version: 20,
        spiffe_id: peer.spiffe_id.clone(),
        tls_handshake: peer.tls_handshake,
    };
    let ex = p.start(request, peer.wake);
    if expects_continue && body != BodyLen::None {
        // The proxy reads the body whatever the backend would say (as
        // HTTP/1.1 downstream does): the client need not wait for it.
        conn.send_informational(key, 100, &HeaderMap::new());
    }
    {
        let mut s = stats.borrow_mut();
        s.http.requests += 1;
        s.h2.streams += 1;
    }
    Ok(Proxied::new(
        ex,
        head.method == Method::HEAD,
        body,
        out_buffer,
    ))
}

/// End-to-end fields for the client: connection-specific ones (which a
/// backend may send over HTTP/1.1) and the length (set from the body)
/// dropped.
fn end_to_end(mut headers: Headers) -> HeaderMap {
    use http::header::{CONNECTION, TRANSFER_ENCODING, UPGRADE};
    for name in [CONNECTION, TE, TRANSFER_ENCODING, UPGRADE, CONTENT_LENGTH] {
        headers.remove(name);
    }
    for name in ["keep-alive", "proxy-connection"] {
        headers.remove(name);
    }
    headers
}

fn count_status(stats: &SharedStats, status: u16) {
    let mut s = stats.borrow_mut();
    let h = &mut s.http;
    match status {
        200..=299 => h.status_2xx += 1,
        400..=499 => h.status_4xx += 1,
        500..=599 => h.status_5xx += 1,
        _ => {}
    }
}

/// How a poll left a proxied stream.
pub(crate) enum Step {
    Waiting,
    /// Finished; true if the response went out whole.
    Done(bool),
}

/// One stream whose exchange is with the proxy.
pub(crate) struct Proxied {
    ex: ExchangeId,
    head_only: bool,
    /// Response bytes held for the client's send window (in the
    /// connection) past which the proxy is not asked for more.
    out_buffer: usize,
    /// Request DATA the proxy did not take yet. Its window is not
    /// released, so flow control holds the client back. In a RefCell
    /// because `wants_write` offers it to the proxy (see
    /// [`Proxied::offer_held`]).
    held: RefCell<VecDeque<Bytes>>,
    /// Taken by the proxy in `offer_held`: released at the next poll.
    unreleased: Cell<usize>,
    /// The request body ended (END_STREAM came).
    recv_done: bool,
    /// The request's trailers, handed over with the end of the body.
    trailers: Option<HeaderMap>,
    /// `end_body` was called (or there is no body to end).
    body_ended: bool,
    head_sent: bool,
    /// The proxy is done with the exchange (its `End` or error came out,
    /// or it was cancelled): it must not be cancelled again.
    ex_done: bool,
    /// No more response DATA is taken (the head ended the stream: HEAD,
    /// 204, 304, no body; or trailers or `End` came).
    closed: bool,
    /// The latest response DATA, held back until the next part shows
    /// whether it is the last (then END_STREAM rides on it).
    pending: Option<Vec<u8>>,
    /// END_STREAM went out.
    sent_end: bool,
    /// Response bytes waiting for the client's window, and since when.
    pub stall: Stall,
}

impl Proxied {
    fn new(ex: ExchangeId, head_only: bool, body: BodyLen, out_buffer: usize) -> Self {
        let no_body = body == BodyLen::None;
        Proxied {
            ex,
            head_only,
            out_buffer,
            held: RefCell::new(VecDeque::new()),
            unreleased: Cell::new(0),
            recv_done: no_body,
            trailers: None,
            body_ended: no_body,
            head_sent: false,
            ex_done: false,
            closed: false,
            pending: None,
            sent_end: false,
            stall: Stall::default(),
        }
    }

    pub fn memory(&self) -> usize {
        self.held.borrow().iter().map(Bytes::len).sum::<usize>()
            + self.pending.as_ref().map_or(0, Vec::len)
    }

    /// Request DATA from the client.
    pub fn push_body(&mut self, d: Bytes) {
        if !d.is_empty() {
            self.held.get_mut().push_back(d);
        }
    }

    pub fn set_trailers(&mut self, t: HeaderMap) {
        self.trailers = Some(t);
    }

    /// The request body is complete (trailers, if any, came before).
    pub fn end_of_body(&mut self) {
        self.recv_done = true;
    }

    /// Whether polling would move something now: the proxy has a
    /// response part we would take.
    pub fn response_ready(&self, p: &dyn Proxy, conn: &ServerConn, key: u32) -> bool {
        !self.ex_done && conn.unsent(key) <= self.out_buffer && p.response_ready(self.ex)
    }

    /// Offers held request body bytes to the proxy; true if it took some.
    ///
    /// The proxy wakes the connection when it has room again, but an app
    /// sees no wakes, only the service asking `wants_write`. So that is
    /// where held bytes are offered, answering yes only if some went: a
    /// backend slow to read the body never looks like output waiting (the
    /// service's send timeout), and the client gets the window back in the
    /// drive that follows.
    pub fn offer_held(&self, p: &dyn Proxy) -> bool {
        if self.ex_done || self.body_ended {
            return false;
        }
        let mut held = self.held.borrow_mut();
        let mut took = 0;
        while let Some(front) = held.front_mut() {
            let n = p.send_body(self.ex, front).min(front.len());
            front.advance(n);
            took += n;
            if !front.is_empty() {
                break;
            }
            held.pop_front();
        }
        self.unreleased.set(self.unreleased.get() + took);
        // Bytes taken earlier wait for the drive that releases them too.
        self.unreleased.get() > 0 || (self.recv_done && held.is_empty())
    }

    /// The client or the connection is gone: tell the proxy (once, and
    /// only while the exchange is its).
    pub fn cancel(&mut self, p: &dyn Proxy) {
        if !self.ex_done {
            self.ex_done = true;
            p.cancel(self.ex);
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn poll(
        &mut self,
        p: &dyn Proxy,
        conn: &mut ServerConn,
        key: u32,
        now: Time,
        out_blocked: bool,
        date: &LoopDate,
        stats: &SharedStats,
    ) -> Step {
        match self.step(p, conn, key, date, stats) {
            Ok(()) => {
                self.stall.update(conn, key, out_blocked, now);
                Step::Waiting
            }
            Err(ok) => {
                // The stream is over: an exchange still open goes too.
                self.cancel(p);
                Step::Done(ok)
            }
        }
    }

    /// One poll. Err(the response went out whole) when the stream is
    /// finished.
    fn step(
        &mut self,
        p: &dyn Proxy,
        conn: &mut ServerConn,
        key: u32,
        date: &LoopDate,
        stats: &SharedStats,
    ) -> Result<(), bool> {
        self.pump_body(p, conn, key);
        // While the window is closed, up to `out_buffer` is taken from the
        // proxy (its buffer drains, the backend keeps sending); past it,
        // the proxy is left alone.
        while !self.ex_done && conn.unsent(key) <= self.out_buffer {
            let Some(part) = p.poll_response(self.ex) else {
                if p.response_ready(self.ex) {
                    // Ready yet nothing: the proxy lost the exchange.
                    // Fail it rather than be asked to poll forever.
                    p.cancel(self.ex);
                    return Err(self.fail(conn, key, ProxyError::UpstreamReset, date, stats));
                }
                break;
            };
            self.take_part(p, conn, key, part, date, stats)?;
        }
        // Nothing more now: what is held goes (latency before frames).
        if let Some(d) = self.pending.take() {
            conn.send_bytes(key, Bytes::from(d), false, None);
        }
        // Done once the connection sent it all: until then a closed window
        // is this stream's stall.
        if self.sent_end && self.ex_done && conn.unsent(key) == 0 {
            return Err(true);
        }
        Ok(())
    }

    /// Moves request DATA to the proxy as far as it takes it, and ends the
    /// body once all of it went.
    fn pump_body(&mut self, p: &dyn Proxy, conn: &mut ServerConn, key: u32) {
        let released = self.unreleased.take();
        if self.ex_done {
            // Answered already (an early response): the rest of the body
            // is of no use (the connection resets the request side when
            // the response ends: RST_STREAM NO_ERROR).
            let held = self.held.get_mut();
            let n: usize = held.iter().map(Bytes::len).sum();
            held.clear();
            conn.release(key, n + released);
            return;
        }
        let mut took = released;
        let held = self.held.get_mut();
        while let Some(front) = held.front_mut() {
            let n = p.send_body(self.ex, front).min(front.len());
            front.advance(n);
            took += n;
            if !front.is_empty() {
                // The proxy is full; it wakes the connection when not.
                break;
            }
            held.pop_front();
        }
        if took > 0 {
            // The client may send as much again.
            conn.release(key, took);
        }
        if self.recv_done && held.is_empty() && !self.body_ended {
            self.body_ended = true;
            p.end_body(self.ex, self.trailers.take());
        }
    }

    /// Handles one response part from the proxy.
    fn take_part(
        &mut self,
        p: &dyn Proxy,
        conn: &mut ServerConn,
        key: u32,
        part: Result<ResponsePart, ProxyError>,
        date: &LoopDate,
        stats: &SharedStats,
    ) -> Result<(), bool> {
        let part = match part {
            Ok(part) => part,
            Err(e) => {
                // The proxy has forgotten the exchange.
                self.ex_done = true;
                return Err(self.fail(conn, key, e, date, stats));
            }
        };
        match part {
            ResponsePart::Head {
                status,
                headers,
                body,
            } if !self.head_sent => {
                // Interim responses are not passed on.
                if status < 200 {
                    return Ok(());
                }
                if status > 999 {
                    p.cancel(self.ex);
                    return Err(self.fail(conn, key, ProxyError::BadResponse, date, stats));
                }
                let no_body = matches!(status, 204 | 304);
                let mut fields = end_to_end(headers);
                let len = match body {
                    BodyLen::None => Some(0),
                    BodyLen::Length(n) => Some(n),
                    BodyLen::Streamed => None,
                };
                if let Some(n) = len.filter(|_| !no_body) {
                    fields.insert(CONTENT_LENGTH, HeaderValue::from(n));
                }
                let end = self.head_only || no_body || len == Some(0);
                count_status(stats, status);
                conn.send_response(key, status, &fields, end);
                self.head_sent = true;
                self.closed = end;
                self.sent_end = end;
            }
            ResponsePart::Data(d) if self.head_sent => {
                if !self.closed && !d.is_empty() {
                    if let Some(prev) = self.pending.replace(d) {
                        // Moved, not copied: the proxy's buffer becomes the frame's.
                        conn.send_bytes(key, Bytes::from(prev), false, None);
                    }
                }
            }
            ResponsePart::Trailers(t) if self.head_sent => {
                if !self.closed {
                    self.closed = true;
                    let last = self.pending.take().unwrap_or_default();
                    conn.send_bytes(key, Bytes::from(last), true, Some(end_to_end(t)));
                    self.sent_end = true;
                }
            }
            ResponsePart::End if self.head_sent => {
                self.ex_done = true;
                if !self.closed {
                    self.closed = true;
                    let last = self.pending.take().unwrap_or_default();
                    conn.send_bytes(key, Bytes::from(last), true, None);
                    self.sent_end = true;
                }
            }
            _ => {
                // Out of order (a proxy bug): give up on the stream.
                conn.reset(key, ErrorCode::InternalError);
                return Err(false);
            }
        }
        Ok(())
    }

    /// The exchange failed (the proxy is done with it): an error response
    /// before the head, a reset after it. Returns whether the response
    /// went out whole.
    fn fail(
        &mut self,
        conn: &mut ServerConn,
        key: u32,
        e: ProxyError,
        date: &LoopDate,
        stats: &SharedStats,
    ) -> bool {
        self.ex_done = true;
        if !self.head_sent {
            let status = e.status();
            count_status(stats, status);
            crate::app::error(conn, key, status, None, date, self.head_only);
            self.head_sent = true;
            self.sent_end = true;
            return true;
        }
        if self.sent_end {
            // Complete already (a HEAD, a 204): nothing is lost.
            return true;
        }
        // The client must see that the response is incomplete.
        conn.reset(key, ErrorCode::InternalError);
        false
    }
}
