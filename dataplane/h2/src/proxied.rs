//! Streams whose response comes from the loop's reverse proxy
//! ([`sluice_app::proxy`]): the request head and body go to the proxy, the
//! response it pulls from a backend goes back on the stream.
//!
//! Backpressure both ways: request DATA the proxy has not taken stays
//! unreleased in h2's receive window (the client stops sending), and the
//! response is pulled from the proxy only while little waits for h2's send
//! window (the proxy stops reading the backend).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use http::header::{HeaderValue, CONTENT_LENGTH, EXPECT, HOST, TE};
use http::request::Parts;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use sluice_app::proxy::{
    BodyLen, ExchangeId, Headers, Proxy, ProxyError, ProxyRequest, ResponsePart, WakeKey,
};
use sluice_app::{ConnContext, LoopDate, SharedStats, Time};

use crate::app::capacity;
use crate::routes;

/// Response bytes a stream holds for h2's send window; past it the proxy
/// is not asked for more.
pub(crate) const OUT_BUFFER: usize = 64 * 1024;

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

/// Fields that describe one connection, not the message (RFC 9110 §7.6.1,
/// RFC 9113 §8.2.2): never forwarded either way (h2 refuses to send them).
pub fn connection_specific(name: &[u8]) -> bool {
    const FIELDS: [&[u8]; 6] = [
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"upgrade",
        b"te",
    ];
    FIELDS.iter().any(|f| name.eq_ignore_ascii_case(f))
}

/// The proxy request for a stream, if a route matches it. Its fields are
/// the stream's own map, moved (no copy per field).
fn request(
    proxy: &dyn Proxy,
    parts: &mut Parts,
    end_stream: bool,
    peer: &Peer,
) -> Option<ProxyRequest> {
    let path = parts.uri.path_and_query().map(|p| p.as_str())?;
    // CONNECT and `OPTIONS *` are not for a route.
    if !path.starts_with('/') {
        return None;
    }
    let authority = match parts.uri.authority() {
        Some(a) => Some(a.as_str().as_bytes()),
        None => parts.headers.get(HOST).map(|h| h.as_bytes()),
    };
    let method = parts.method.as_str().as_bytes();
    if !proxy.matches(authority, method, path.as_bytes()) {
        return None;
    }
    let body = if end_stream {
        BodyLen::None
    } else {
        // h2 has checked that the DATA frames add up to it.
        match parts
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| routes::parse_decimal(v.as_bytes()))
        {
            Some(n) => BodyLen::Length(n),
            None => BodyLen::Streamed,
        }
    };
    let (method, path, authority) = (
        method.to_vec(),
        path.as_bytes().to_vec(),
        authority.map(<[u8]>::to_vec),
    );
    let mut headers = std::mem::take(&mut parts.headers);
    // Host travels as the authority, the body's length as `body`. `Expect`
    // is not the backend's to answer: the proxy reads the body whatever it
    // says (as HTTP/1.1 downstream does). `te: trailers` is hop-by-hop (the
    // proxy sets it for gRPC); h2 has refused the other connection-specific
    // fields already.
    for name in [HOST, CONTENT_LENGTH, EXPECT, TE] {
        headers.remove(name);
    }
    Some(ProxyRequest {
        method,
        path,
        authority,
        headers,
        body,
        client: peer.client,
        tls: peer.tls,
        version: 20,
        spiffe_id: peer.spiffe_id.clone(),
        tls_handshake: peer.tls_handshake,
    })
}

/// Hands a request to the proxy if one of its routes matches; gives it
/// back otherwise.
// The request handed back is moved once per stream: its size is moot.
#[allow(clippy::result_large_err)]
pub(crate) fn start(
    proxy: Option<&dyn Proxy>,
    peer: &Peer,
    stats: &SharedStats,
    req: Request<RecvStream>,
    respond: SendResponse<Bytes>,
) -> Result<Proxied, (Request<RecvStream>, SendResponse<Bytes>)> {
    let Some(p) = proxy else {
        return Err((req, respond));
    };
    let (mut parts, recv) = req.into_parts();
    let end = recv.is_end_stream();
    let expects_continue = parts
        .headers
        .get(EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let Some(request) = request(p, &mut parts, end, peer) else {
        return Err((Request::from_parts(parts, recv), respond));
    };
    let body = request.body;
    let ex = p.start(request, peer.wake);
    let mut respond = respond;
    if expects_continue && body != BodyLen::None {
        // The proxy reads the body whatever the backend would say (as
        // HTTP/1.1 downstream does): the client need not wait for it. A
        // stream already reset fails here and again, visibly, later.
        let mut go_on = Response::new(());
        *go_on.status_mut() = StatusCode::CONTINUE;
        let _ = respond.send_informational(go_on);
    }
    {
        let mut s = stats.borrow_mut();
        s.http.requests += 1;
        s.h2.streams += 1;
    }
    Ok(Proxied::new(ex, &parts.method, body, recv, respond))
}

/// End-to-end fields as h2 takes them: connection-specific ones (which a
/// backend may send over HTTP/1.1) and the length (set from the body)
/// dropped.
fn end_to_end(mut headers: Headers) -> HeaderMap {
    use http::header::{CONNECTION, TE, TRANSFER_ENCODING, UPGRADE};
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

enum Resp {
    AwaitHead(SendResponse<Bytes>),
    Body(SendStream<Bytes>),
}

/// What ends the response once the queue is sent.
enum Tail {
    Eos,
    Trailers(HeaderMap),
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
    /// The request body from h2, until it ended and all of it went.
    recv: Option<RecvStream>,
    recv_done: bool,
    /// DATA taken from h2 that the proxy did not take yet. Its window is
    /// not released, so h2's flow control holds the client back. In a
    /// RefCell because `wants_write` offers it to the proxy (see
    /// [`Proxied::offer_held`]).
    held: RefCell<Bytes>,
    /// Taken by the proxy in `offer_held`: released at the next poll.
    unreleased: Cell<usize>,
    /// `end_body` was called (or there is no body to end).
    body_ended: bool,
    resp: Resp,
    /// The proxy is done with the exchange (its `End` or error came out,
    /// or it was cancelled): it must not be cancelled again.
    ex_done: bool,
    /// No more response DATA is taken (the head ended the stream: HEAD,
    /// 204, 304, no body; or trailers or `End` came).
    closed: bool,
    /// Response bytes waiting for h2's send window.
    queue: VecDeque<Bytes>,
    queued: usize,
    /// Sent once the queue is.
    tail: Option<Tail>,
    /// END_STREAM went out.
    sent_end: bool,
    /// Since when it has had bytes to send and no send window, while the
    /// connection's output was not blocked.
    pub stall_since: Option<Time>,
}

impl Proxied {
    pub fn new(
        ex: ExchangeId,
        method: &Method,
        body: BodyLen,
        recv: RecvStream,
        respond: SendResponse<Bytes>,
    ) -> Self {
        let no_body = body == BodyLen::None;
        Proxied {
            ex,
            head_only: method == Method::HEAD,
            recv: (!no_body).then_some(recv),
            recv_done: no_body,
            held: RefCell::new(Bytes::new()),
            unreleased: Cell::new(0),
            body_ended: no_body,
            resp: Resp::AwaitHead(respond),
            ex_done: false,
            closed: false,
            queue: VecDeque::new(),
            queued: 0,
            tail: None,
            sent_end: false,
            stall_since: None,
        }
    }

    pub fn memory(&self) -> usize {
        self.queued + self.held.borrow().len()
    }

    /// Whether polling would move something now: the proxy has a
    /// response part we would take.
    pub fn response_ready(&self, p: &dyn Proxy) -> bool {
        !self.ex_done && self.queued <= OUT_BUFFER && p.response_ready(self.ex)
    }

    /// Offers held request body bytes to the proxy; true if it took some.
    ///
    /// The proxy wakes the connection when it has room again, but an app
    /// sees no wakes, only the service asking `wants_write`. So that is
    /// where held bytes are offered, answering yes only if some went: a
    /// backend slow to read the body never looks like output waiting (the
    /// service's send timeout), and h2 gets the window back in the drive
    /// that follows.
    pub fn offer_held(&self, p: &dyn Proxy) -> bool {
        if self.ex_done || self.body_ended {
            return false;
        }
        let mut held = self.held.borrow_mut();
        if held.is_empty() {
            return false;
        }
        let n = p.send_body(self.ex, &held).min(held.len());
        held.advance(n);
        self.unreleased.set(self.unreleased.get() + n);
        n > 0
    }

    /// The client or the connection is gone: tell the proxy (once, and
    /// only while the exchange is its).
    pub fn cancel(&mut self, p: &dyn Proxy) {
        if !self.ex_done {
            self.ex_done = true;
            p.cancel(self.ex);
        }
    }

    /// Resets the stream (it stalled); the exchange is cancelled.
    pub fn reset(&mut self, p: &dyn Proxy, reason: Reason) {
        self.cancel(p);
        match &mut self.resp {
            Resp::AwaitHead(r) => r.send_reset(reason),
            Resp::Body(s) => s.send_reset(reason),
        }
    }

    pub fn poll(
        &mut self,
        p: &dyn Proxy,
        cx: &mut Context<'_>,
        now: Time,
        out_blocked: bool,
        date: &LoopDate,
        stats: &SharedStats,
    ) -> Step {
        match self.step(p, cx, date, stats) {
            Ok(blocked) => {
                if blocked && !out_blocked {
                    self.stall_since.get_or_insert(now);
                } else {
                    // Sent, or nothing to send; and a connection whose
                    // output is not read is TCP's matter, not a stall.
                    self.stall_since = None;
                }
                Step::Waiting
            }
            Err(ok) => {
                // The stream is over: an exchange still open goes too.
                self.cancel(p);
                Step::Done(ok)
            }
        }
    }

    /// One poll. Ok(blocked on the send window with nothing sent);
    /// Err(the response went out whole) when the stream is finished.
    fn step(
        &mut self,
        p: &dyn Proxy,
        cx: &mut Context<'_>,
        date: &LoopDate,
        stats: &SharedStats,
    ) -> Result<bool, bool> {
        // A RST_STREAM from the client (or a GOAWAY) ends the exchange.
        let reset = match &mut self.resp {
            Resp::AwaitHead(r) => r.poll_reset(cx).is_ready(),
            Resp::Body(s) => s.poll_reset(cx).is_ready(),
        };
        if reset {
            return Err(false);
        }
        self.pump_body(p, cx)?;
        let mut sent = false;
        loop {
            // Pull first, so that an `End` that is ready rides on the last
            // DATA frame. While the window is closed, up to OUT_BUFFER is
            // taken from the proxy (its buffer drains, the backend keeps
            // sending); past it, the proxy is left alone.
            let mut full = false;
            while !self.ex_done {
                if self.queued > OUT_BUFFER {
                    full = true;
                    break;
                }
                let Some(part) = p.poll_response(self.ex) else {
                    if p.response_ready(self.ex) {
                        // Ready yet nothing: the proxy lost the exchange.
                        // Fail it rather than be asked to poll forever.
                        p.cancel(self.ex);
                        return Err(self.fail(ProxyError::UpstreamReset, date, stats));
                    }
                    break;
                };
                self.take_part(p, part, date, stats)?;
            }
            let blocked = match self.flush(cx)? {
                Flushed::Blocked => true,
                Flushed::Sent => {
                    sent = true;
                    false
                }
                Flushed::Empty => false,
            };
            if self.queued == 0 {
                if let Some(tail) = self.tail.take() {
                    let Resp::Body(send) = &mut self.resp else {
                        return Err(false);
                    };
                    let ok = match tail {
                        Tail::Eos => send.send_data(Bytes::new(), true).is_ok(),
                        Tail::Trailers(t) => send.send_trailers(t).is_ok(),
                    };
                    if !ok {
                        return Err(false);
                    }
                    self.sent_end = true;
                }
                if self.sent_end && self.ex_done {
                    return Err(true);
                }
            }
            // Room again after a full queue: pull more.
            if !(full && self.queued <= OUT_BUFFER) {
                return Ok(blocked && !sent);
            }
        }
    }

    /// Moves request DATA from h2 to the proxy as far as it takes it, and
    /// ends the body once all of it went. Err: the request stream failed
    /// (reset, or malformed and reset by h2).
    fn pump_body(&mut self, p: &dyn Proxy, cx: &mut Context<'_>) -> Result<(), bool> {
        if self.ex_done {
            // Answered already (an early response): the rest of the body
            // is of no use, and h2 resets the request side when the
            // stream ends (RST_STREAM NO_ERROR).
            self.recv = None;
            self.held.get_mut().clear();
            return Ok(());
        }
        let Some(recv) = &mut self.recv else {
            return Ok(());
        };
        let release = |recv: &mut RecvStream, n: usize| {
            if n > 0 {
                // The client may send as much again.
                let _ = recv.flow_control().release_capacity(n);
            }
        };
        release(recv, self.unreleased.take());
        let held = self.held.get_mut();
        loop {
            if !held.is_empty() {
                let n = p.send_body(self.ex, held).min(held.len());
                held.advance(n);
                release(recv, n);
                if !held.is_empty() {
                    // The proxy is full; it wakes the connection when not.
                    break;
                }
            }
            if self.recv_done {
                break;
            }
            match recv.poll_data(cx) {
                Poll::Ready(Some(Ok(b))) => *held = b,
                Poll::Ready(Some(Err(_))) => return Err(false),
                Poll::Ready(None) => self.recv_done = true,
                Poll::Pending => break,
            }
        }
        if self.recv_done && held.is_empty() {
            // The DATA ended; trailers, if the client sent any, follow.
            let trailers = match recv.poll_trailers(cx) {
                Poll::Ready(Ok(t)) => t,
                Poll::Ready(Err(_)) => return Err(false),
                Poll::Pending => return Ok(()),
            };
            self.recv = None;
            self.body_ended = true;
            p.end_body(self.ex, trailers);
        }
        Ok(())
    }

    /// Handles one response part from the proxy.
    fn take_part(
        &mut self,
        p: &dyn Proxy,
        part: Result<ResponsePart, ProxyError>,
        date: &LoopDate,
        stats: &SharedStats,
    ) -> Result<(), bool> {
        let part = match part {
            Ok(part) => part,
            Err(e) => {
                // The proxy has forgotten the exchange.
                self.ex_done = true;
                return Err(self.fail(e, date, stats));
            }
        };
        match (part, &mut self.resp) {
            (
                ResponsePart::Head {
                    status,
                    headers,
                    body,
                },
                Resp::AwaitHead(respond),
            ) => {
                // Interim responses are not passed on.
                if status < 200 {
                    return Ok(());
                }
                let Ok(code) = StatusCode::from_u16(status) else {
                    p.cancel(self.ex);
                    return Err(self.fail(ProxyError::BadResponse, date, stats));
                };
                let no_body = matches!(status, 204 | 304);
                let mut r = Response::new(());
                *r.status_mut() = code;
                *r.headers_mut() = end_to_end(headers);
                let len = match body {
                    BodyLen::None => Some(0),
                    BodyLen::Length(n) => Some(n),
                    BodyLen::Streamed => None,
                };
                if let Some(n) = len.filter(|_| !no_body) {
                    r.headers_mut().insert(CONTENT_LENGTH, HeaderValue::from(n));
                }
                let end = self.head_only || no_body || len == Some(0);
                count_status(stats, status);
                // Err: the stream is gone.
                let send = respond.send_response(r, end).map_err(|_| false)?;
                self.resp = Resp::Body(send);
                self.closed = end;
                self.sent_end = end;
            }
            (ResponsePart::Data(d), Resp::Body(_)) => {
                if !self.closed && !d.is_empty() {
                    self.queued += d.len();
                    self.queue.push_back(Bytes::from(d));
                }
            }
            (ResponsePart::Trailers(t), Resp::Body(_)) => {
                if !self.closed {
                    self.closed = true;
                    self.tail = Some(Tail::Trailers(end_to_end(t)));
                }
            }
            (ResponsePart::End, Resp::Body(_)) => {
                self.ex_done = true;
                if !self.closed {
                    self.closed = true;
                    self.tail = Some(Tail::Eos);
                }
            }
            (_, resp) => {
                // Out of order (a proxy bug): give up on the stream.
                match resp {
                    Resp::AwaitHead(r) => r.send_reset(Reason::INTERNAL_ERROR),
                    Resp::Body(s) => s.send_reset(Reason::INTERNAL_ERROR),
                }
                return Err(false);
            }
        }
        Ok(())
    }

    /// The exchange failed (the proxy is done with it): an error response
    /// before the head, a reset after it. Returns whether the response
    /// went out whole.
    fn fail(&mut self, e: ProxyError, date: &LoopDate, stats: &SharedStats) -> bool {
        self.ex_done = true;
        match &mut self.resp {
            Resp::AwaitHead(respond) => {
                let status = e.status();
                count_status(stats, status);
                let (r, body) = routes::error(status, None, date);
                if self.head_only {
                    respond.send_response(r, true).is_ok()
                } else {
                    respond
                        .send_response(r, false)
                        .is_ok_and(|mut s| s.send_data(body, true).is_ok())
                }
            }
            // Complete already (a HEAD, a 204): nothing is lost.
            Resp::Body(_) if self.sent_end => true,
            Resp::Body(send) => {
                // The client must see that the response is incomplete.
                send.send_reset(Reason::INTERNAL_ERROR);
                false
            }
        }
    }

    /// Sends queued response bytes as h2's send window allows. Err: the
    /// stream is gone.
    fn flush(&mut self, cx: &mut Context<'_>) -> Result<Flushed, bool> {
        let Resp::Body(send) = &mut self.resp else {
            return Ok(Flushed::Empty);
        };
        let mut sent = false;
        while self.queued > 0 {
            let cap = match capacity(send, self.queued, cx) {
                Poll::Ready(Some(c)) => c,
                Poll::Ready(None) => return Err(false),
                Poll::Pending if sent => return Ok(Flushed::Sent),
                Poll::Pending => return Ok(Flushed::Blocked),
            };
            let Some(front) = self.queue.front_mut() else {
                break;
            };
            let k = cap.min(front.len());
            let chunk = front.split_to(k);
            if front.is_empty() {
                self.queue.pop_front();
            }
            self.queued -= k;
            // The last bytes carry END_STREAM when nothing else follows.
            let end = self.queued == 0 && matches!(self.tail, Some(Tail::Eos));
            send.send_data(chunk, end).map_err(|_| false)?;
            if end {
                self.tail = None;
                self.sent_end = true;
            }
            sent = true;
        }
        Ok(if sent { Flushed::Sent } else { Flushed::Empty })
    }
}

enum Flushed {
    /// Nothing queued.
    Empty,
    Sent,
    /// Bytes queued, no window.
    Blocked,
}
