//! Proxied streams: requests a route matches go to a fake `Proxy` that
//! records every call and answers from a script. A wake is the test
//! driving the app again (as the TCP service does when the proxy queues
//! the connection's wake key).

mod common;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use common::*;
use sluice_app::proxy::{
    BodyLen, ExchangeId, Headers, Proxy, ProxyError, ProxyRequest, ResponsePart, WakeKey,
};
use sluice_app::{App, Close, ConnContext};
use sluice_h2::H2Config;

const INTERNAL_ERROR: u32 = 0x2;

type Part = Result<ResponsePart, ProxyError>;

/// One exchange as the fake proxy sees it.
#[derive(Default)]
struct Ex {
    body: Vec<u8>,
    end_body: u32,
    trailers: Option<Headers>,
    cancelled: bool,
    /// Its End or error was polled.
    done: bool,
    script: VecDeque<Part>,
}

/// Matches paths under `/api`; takes request body within `room`.
struct Fake {
    wake: WakeKey,
    matched: RefCell<Vec<Vec<u8>>>,
    requests: RefCell<Vec<ProxyRequest>>,
    ex: RefCell<Vec<Ex>>,
    /// Body bytes `send_body` may still take (backpressure).
    room: Cell<usize>,
    /// Calls on an exchange the proxy was done with, or in a wrong order.
    misuse: RefCell<Vec<String>>,
}

impl Fake {
    fn new() -> Rc<Self> {
        Rc::new(Fake {
            wake: WakeKey(42),
            matched: RefCell::default(),
            requests: RefCell::default(),
            ex: RefCell::default(),
            room: Cell::new(usize::MAX),
            misuse: RefCell::default(),
        })
    }

    fn script(&self, i: usize, parts: impl IntoIterator<Item = Part>) {
        self.ex.borrow_mut()[i].script.extend(parts);
    }

    fn started(&self) -> usize {
        self.ex.borrow().len()
    }

    fn body(&self, i: usize) -> Vec<u8> {
        self.ex.borrow()[i].body.clone()
    }

    fn cancelled(&self) -> Vec<usize> {
        let ex = self.ex.borrow();
        (0..ex.len()).filter(|&i| ex[i].cancelled).collect()
    }

    fn check(&self) {
        let m = self.misuse.borrow();
        assert!(m.is_empty(), "proxy misused: {m:?}");
    }

    fn live(&self, ex: ExchangeId, call: &str) -> bool {
        let e = self.ex.borrow();
        let ok = e
            .get(ex.index as usize)
            .is_some_and(|e| !e.done && !e.cancelled && ex.gen == 7);
        if !ok {
            self.misuse.borrow_mut().push(format!("{call} on {ex:?}"));
        }
        ok
    }
}

impl Proxy for Fake {
    fn matches(&self, _authority: Option<&[u8]>, _method: &[u8], path: &[u8]) -> bool {
        self.matched.borrow_mut().push(path.to_vec());
        path.starts_with(b"/api")
    }

    fn start(&self, req: ProxyRequest, wake: WakeKey) -> ExchangeId {
        assert_eq!(wake, self.wake);
        self.requests.borrow_mut().push(req);
        let mut ex = self.ex.borrow_mut();
        ex.push(Ex::default());
        ExchangeId {
            index: ex.len() as u32 - 1,
            gen: 7,
        }
    }

    fn send_body(&self, ex: ExchangeId, data: &[u8]) -> usize {
        if !self.live(ex, "send_body") {
            return data.len();
        }
        let e = &mut self.ex.borrow_mut()[ex.index as usize];
        if e.end_body > 0 {
            self.misuse
                .borrow_mut()
                .push("send_body after end_body".into());
        }
        let n = data.len().min(self.room.get());
        self.room.set(self.room.get() - n);
        e.body.extend_from_slice(&data[..n]);
        n
    }

    fn end_body(&self, ex: ExchangeId, trailers: Option<Headers>) {
        if self.live(ex, "end_body") {
            let e = &mut self.ex.borrow_mut()[ex.index as usize];
            e.end_body += 1;
            e.trailers = trailers;
        }
    }

    fn poll_response(&self, ex: ExchangeId) -> Option<Part> {
        if !self.live(ex, "poll_response") {
            return None;
        }
        let e = &mut self.ex.borrow_mut()[ex.index as usize];
        let part = e.script.pop_front()?;
        if matches!(part, Ok(ResponsePart::End) | Err(_)) {
            e.done = true;
        }
        Some(part)
    }

    fn response_ready(&self, ex: ExchangeId) -> bool {
        self.live(ex, "response_ready") && !self.ex.borrow()[ex.index as usize].script.is_empty()
    }

    fn cancel(&self, ex: ExchangeId) {
        if self.live(ex, "cancel") {
            self.ex.borrow_mut()[ex.index as usize].cancelled = true;
        }
    }
}

fn ctx() -> ConnContext {
    ConnContext {
        tls: true,
        peer: Some("192.0.2.7:5555".parse().unwrap()),
        spiffe_id: Some(Arc::from("spiffe://example.org/client")),
        wake: WakeKey(42),
        ..ConnContext::default()
    }
}

fn srv(cfg: H2Config, fake: &Rc<Fake>) -> Srv {
    let p: Rc<dyn Proxy> = fake.clone();
    Srv::with_proxy(cfg, &ctx(), p)
}

fn h(pairs: &[(&str, &str)]) -> Headers {
    let mut map = Headers::new();
    for (n, v) in pairs {
        sluice_app::proxy::append(&mut map, n.as_bytes(), v.as_bytes());
    }
    map
}

fn head(status: u16, headers: &[(&str, &str)], body: BodyLen) -> Part {
    Ok(ResponsePart::Head {
        status,
        headers: h(headers),
        body,
    })
}

fn data(d: &[u8]) -> Part {
    Ok(ResponsePart::Data(d.to_vec()))
}

const CONNECTION_SPECIFIC: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
];

#[test]
fn get_with_headers_and_trailers_through() {
    let fake = Fake::new();
    let mut srv = srv(H2Config::default(), &fake);
    let (pipe, sp) = (Pipe::default(), Spawner::default());
    let got = Rc::new(RefCell::new(None));
    let g = Rc::clone(&got);
    let (p, s) = (pipe.clone(), sp.clone());
    let main = async move {
        let sr = connect(p, s, h2::client::Builder::new()).await;
        let req = http::Request::builder()
            .method("GET")
            .uri("http://a.example/api/x?y=1")
            .header("x-req", "1")
            .header("te", "trailers")
            .body(())
            .unwrap();
        let mut ready = sr.ready().await.unwrap();
        let (resp, _) = ready.send_request(req, true).unwrap();
        let (parts, mut rx) = resp.await.unwrap().into_parts();
        let mut body = Vec::new();
        while let Some(c) = rx.data().await {
            let c = c.unwrap();
            body.extend_from_slice(&c);
            let _ = rx.flow_control().release_capacity(c.len());
        }
        let trailers = rx.trailers().await.unwrap();
        *g.borrow_mut() = Some((parts, body, trailers));
    };
    let mut scripted = false;
    run(&mut srv, &pipe, &sp, main, &Run::default(), |_, _| {
        // The backend answers some rounds after the request came.
        if !scripted && fake.started() == 1 {
            scripted = true;
            fake.script(
                0,
                [
                    head(
                        200,
                        &[
                            ("content-type", "application/grpc"),
                            ("x-up", "1"),
                            ("x-up", "2"),
                            ("connection", "close"),
                            ("keep-alive", "timeout=5"),
                            ("transfer-encoding", "chunked"),
                            ("upgrade", "h2c"),
                            ("proxy-connection", "close"),
                            ("te", "gzip"),
                        ],
                        BodyLen::Streamed,
                    ),
                    data(b"hello "),
                    data(b"world"),
                    Ok(ResponsePart::Trailers(h(&[
                        ("grpc-status", "0"),
                        ("grpc-message", "fine"),
                        ("connection", "close"),
                    ]))),
                    Ok(ResponsePart::End),
                ],
            );
        }
    });
    let (parts, body, trailers) = got.borrow_mut().take().unwrap();
    assert_eq!(parts.status, 200);
    assert_eq!(parts.headers["content-type"], "application/grpc");
    let ups: Vec<_> = parts.headers.get_all("x-up").iter().collect();
    assert_eq!(ups, ["1", "2"]);
    for n in CONNECTION_SPECIFIC {
        assert!(!parts.headers.contains_key(n), "{n}: {:?}", parts.headers);
    }
    // A streamed body has no length downstream either.
    assert!(!parts.headers.contains_key("content-length"));
    assert_eq!(body, b"hello world");
    let t = trailers.expect("trailers");
    assert_eq!(t["grpc-status"], "0");
    assert_eq!(t["grpc-message"], "fine");
    assert!(!t.contains_key("connection"));

    let reqs = fake.requests.borrow();
    let r = &reqs[0];
    assert_eq!(r.method, b"GET");
    assert_eq!(r.path, b"/api/x?y=1");
    assert_eq!(r.authority.as_deref(), Some(&b"a.example"[..]));
    assert_eq!(r.headers, h(&[("x-req", "1")]));
    assert_eq!(r.body, BodyLen::None);
    assert_eq!(r.client, Some("192.0.2.7:5555".parse().unwrap()));
    assert!(r.tls);
    assert_eq!(r.version, 20);
    assert_eq!(r.spiffe_id.as_deref(), Some("spiffe://example.org/client"));
    let e = &fake.ex.borrow()[0];
    assert!(e.done && !e.cancelled);
    // No body: there is none to end.
    assert_eq!(e.end_body, 0);
    fake.check();
    let st = srv.stats.borrow();
    assert_eq!(st.http.requests, 1);
    assert_eq!(st.http.status_2xx, 1);
    assert_eq!(st.h2.streams, 1);
    drop(st);
    assert_eq!(srv.app.active_streams(), 0);
    assert!(srv.app.is_idle());
}

/// The request head as the proxy gets it: no `Host` (it is the
/// authority), no `te`, no length (it is `body`), no `expect`; and a
/// request with a connection-specific field never reaches it (h2 resets
/// the stream as malformed).
#[test]
fn request_fields_stripped() {
    let fake = Fake::new();
    let mut s = srv(H2Config::default(), &fake).handshake();
    let block = hpack(&[
        (":method", "POST"),
        (":scheme", "https"),
        (":path", "/api/up"),
        ("host", "h.example"),
        ("te", "trailers"),
        ("content-length", "3"),
        ("expect", "100-continue"),
        ("x-a", "b"),
    ]);
    s.write(&frame(HEADERS, END_HEADERS, 1, &block));
    s.write(&frame(DATA, END_STREAM, 1, b"abc"));
    fake.script(0, [head(204, &[], BodyLen::None), Ok(ResponsePart::End)]);
    s.pump();
    let f = s.frames();
    // `Expect: 100-continue` with a body: 100 Continue at once (a HEADERS
    // frame that does not end the stream), then the final response.
    let heads: Vec<_> = f
        .iter()
        .filter(|f| f.ty == HEADERS && f.stream == 1)
        .collect();
    assert_eq!(heads.len(), 2, "{f:?}");
    assert_eq!(heads[0].flags & END_STREAM, 0, "{f:?}");
    assert_ne!(heads[1].flags & END_STREAM, 0, "{f:?}");
    {
        let reqs = fake.requests.borrow();
        assert_eq!(reqs[0].authority.as_deref(), Some(&b"h.example"[..]));
        assert_eq!(reqs[0].headers, h(&[("x-a", "b")]));
        assert_eq!(reqs[0].body, BodyLen::Length(3));
    }
    assert_eq!(fake.body(0), b"abc");
    assert_eq!(fake.ex.borrow()[0].end_body, 1);

    let block = hpack(&[
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", "a"),
        (":path", "/api/x"),
        ("connection", "close"),
    ]);
    s.write(&frame(HEADERS, END_HEADERS | END_STREAM, 3, &block));
    let f = s.frames();
    let r = f.iter().find(|f| f.ty == RST_STREAM && f.stream == 3);
    assert_eq!(r.map(RawFrame::code), Some(PROTOCOL_ERROR), "{f:?}");
    assert_eq!(fake.started(), 1);
    fake.check();
    assert_eq!(s.http().status_2xx, 1);
}

/// Request trailers reach the proxy with the end of the body, minus the
/// fields a trailer may not carry.
#[test]
fn request_trailers_reach_the_proxy() {
    let fake = Fake::new();
    let mut s = srv(H2Config::default(), &fake).handshake();
    let block = hpack(&[
        (":method", "POST"),
        (":scheme", "https"),
        (":path", "/api/stream"),
        (":authority", "t.example"),
        ("content-type", "application/grpc"),
    ]);
    s.write(&frame(HEADERS, END_HEADERS, 1, &block));
    s.write(&frame(DATA, 0, 1, b"part"));
    s.pump();
    assert_eq!(fake.ex.borrow()[0].end_body, 0, "the body is still open");
    let trailers = hpack(&[("x-checksum", "abc"), ("x-count", "1")]);
    s.write(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &trailers));
    fake.script(0, [head(200, &[], BodyLen::None), Ok(ResponsePart::End)]);
    s.pump();
    assert_eq!(fake.body(0), b"part");
    {
        let ex = fake.ex.borrow();
        assert_eq!(ex[0].end_body, 1);
        assert_eq!(
            ex[0].trailers,
            Some(h(&[("x-checksum", "abc"), ("x-count", "1")]))
        );
    }
    fake.check();
}

/// A 1 MB body through a proxy that takes a few KiB per wake: every byte
/// arrives in order, and the client's windows never grow by more than the
/// proxy took.
#[test]
fn post_body_with_backpressure() {
    const LEN: usize = 1 << 20;
    let cfg = H2Config {
        initial_stream_window: 64 * 1024,
        connection_window: 128 * 1024,
        ..H2Config::default()
    };
    let (mut stream_win, mut conn_win) = (
        i64::from(cfg.initial_stream_window),
        i64::from(cfg.connection_window),
    );
    let fake = Fake::new();
    fake.room.set(5000);
    let mut s = srv(cfg, &fake).handshake();
    let body: Vec<u8> = (0..LEN).map(|i| (i * 7 % 251) as u8).collect();
    let block = hpack(&[
        (":method", "POST"),
        (":scheme", "http"),
        (":authority", "a"),
        (":path", "/api/upload"),
        ("content-length", &LEN.to_string()),
    ]);
    s.write(&frame(HEADERS, END_HEADERS, 1, &block));
    let (mut sent, mut released_stream, mut released_conn) = (0usize, 0i64, 0i64);
    let (mut window_stalls, mut peak) = (0, 0);
    for _ in 0..100_000 {
        // The client sends what its windows allow, in 16 KiB frames.
        while sent < LEN && stream_win > 0 && conn_win > 0 {
            let k = (LEN - sent)
                .min(16_384)
                .min(stream_win as usize)
                .min(conn_win as usize);
            let end = sent + k == LEN;
            let flags = if end { END_STREAM } else { 0 };
            s.write(&frame(DATA, flags, 1, &body[sent..sent + k]));
            sent += k;
            stream_win -= k as i64;
            conn_win -= k as i64;
        }
        if sent < LEN {
            window_stalls += 1;
        }
        for f in s.frames() {
            if f.ty == WINDOW_UPDATE {
                let inc = i64::from(u32::from_be_bytes(f.payload[..4].try_into().unwrap()));
                if f.stream == 1 {
                    stream_win += inc;
                    released_stream += inc;
                } else {
                    conn_win += inc;
                    released_conn += inc;
                }
            }
        }
        let taken = fake.body(0).len() as i64;
        assert!(released_stream <= taken, "{released_stream} > {taken}");
        assert!(released_conn <= taken, "{released_conn} > {taken}");
        peak = peak.max(s.app.memory());
        if fake.ex.borrow()[0].end_body > 0 {
            break;
        }
        // The proxy has room again, and wakes the connection.
        fake.room.set(fake.room.get() + 7000);
        s.pump();
    }
    assert_eq!(sent, LEN);
    assert!(fake.body(0) == body, "body differs");
    assert_eq!(fake.ex.borrow()[0].end_body, 1);
    assert!(window_stalls > 10, "backpressure never reached the client");
    // The stream never holds more than one DATA frame of its own.
    assert!(peak <= 128 * 1024, "peak {peak}");
    fake.script(0, [head(201, &[], BodyLen::None), Ok(ResponsePart::End)]);
    s.pump();
    let f = s.frames();
    assert!(
        f.iter()
            .any(|f| f.ty == HEADERS && f.stream == 1 && f.flags & END_STREAM != 0),
        "{f:?}"
    );
    assert_eq!(s.app.active_streams(), 0);
    fake.check();
}

#[test]
fn errors_before_the_head() {
    let fake = Fake::new();
    let mut srv = srv(H2Config::default(), &fake);
    let (pipe, sp) = (Pipe::default(), Spawner::default());
    let got = Rc::new(RefCell::new(Vec::new()));
    let g = Rc::clone(&got);
    let (p, s) = (pipe.clone(), sp.clone());
    let main = async move {
        let mut sr = connect(p, s, h2::client::Builder::new()).await;
        for (m, path) in [
            ("GET", "/api/connect"),
            ("GET", "/api/overflow"),
            ("POST", "/api/timeout"),
            ("HEAD", "/api/head"),
        ] {
            let body = (m == "POST").then(|| Bytes::from_static(b"xyz"));
            let r = fetch(&mut sr, m, path, body).await.unwrap();
            g.borrow_mut().push(r);
        }
    };
    let mut answered = 0;
    run(&mut srv, &pipe, &sp, main, &Run::default(), |_, _| {
        while answered < fake.started() {
            let e = [
                ProxyError::ConnectFailed,
                ProxyError::Overflow,
                ProxyError::Timeout,
                ProxyError::NoHealthyBackend,
            ][answered];
            fake.script(answered, [Err(e)]);
            answered += 1;
        }
    });
    let got = got.borrow();
    let expect: [(u16, &[u8]); 4] = [
        (502, b"502 Bad Gateway\n"),
        (503, b"503 Service Unavailable\n"),
        (504, b"504 Gateway Timeout\n"),
        (503, b""),
    ];
    for (r, (status, body)) in got.iter().zip(expect) {
        assert_eq!(r.status, status);
        assert_eq!(r.body, body);
        assert_eq!(r.headers["content-type"], "text/plain");
        assert_eq!(r.headers["server"], "sluice");
    }
    assert_eq!(got.len(), 4);
    assert!(fake.cancelled().is_empty());
    fake.check();
    let st = srv.stats.borrow();
    assert_eq!(st.http.requests, 4);
    assert_eq!(st.http.status_5xx, 4);
}

#[test]
fn error_after_the_head_resets_the_stream() {
    let fake = Fake::new();
    let mut s = srv(H2Config::default(), &fake).handshake();
    s.write(&request(1, "GET", "/api/x", true));
    fake.script(0, [head(200, &[], BodyLen::Length(10)), data(b"abc")]);
    s.pump();
    let f = s.frames();
    assert_eq!(f.len(), 2, "{f:?}");
    assert_eq!(
        (f[0].ty, f[0].stream, f[0].flags & END_STREAM),
        (HEADERS, 1, 0)
    );
    assert_eq!((f[1].ty, &f[1].payload[..]), (DATA, &b"abc"[..]));
    assert_eq!(f[1].flags & END_STREAM, 0);
    fake.script(0, [Err(ProxyError::UpstreamReset)]);
    s.pump();
    let f = s.frames();
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!((f[0].ty, f[0].stream), (RST_STREAM, 1));
    assert_eq!(f[0].code(), INTERNAL_ERROR);
    // All at once: h2 drops what the reset makes moot; the client sees
    // the reset.
    s.write(&request(3, "GET", "/api/y", true));
    fake.script(
        1,
        [
            head(200, &[], BodyLen::Streamed),
            data(b"abc"),
            Err(ProxyError::BadResponse),
        ],
    );
    s.pump();
    let f = s.frames();
    let r = f.iter().find(|f| f.ty == RST_STREAM && f.stream == 3);
    assert_eq!(r.map(RawFrame::code), Some(INTERNAL_ERROR), "{f:?}");
    // The proxy ended the exchanges itself: nothing to cancel.
    assert!(fake.cancelled().is_empty());
    assert_eq!(s.close(), Close::No);
    assert_eq!(s.app.active_streams(), 0);
    assert_eq!(s.http().status_2xx, 2);
    fake.check();
}

#[test]
fn client_reset_and_connection_end_cancel() {
    let fake = Fake::new();
    let mut s = srv(H2Config::default(), &fake).handshake();
    // Reset while the request body is coming.
    s.write(&request(1, "POST", "/api/a", false));
    s.write(&frame(DATA, 0, 1, b"ab"));
    assert_eq!(fake.body(0), b"ab");
    s.write(&rst(1, CANCEL));
    assert_eq!(fake.cancelled(), [0]);
    // Reset in the middle of the response.
    s.write(&request(3, "GET", "/api/b", true));
    fake.script(1, [head(200, &[], BodyLen::Streamed), data(b"part")]);
    s.pump();
    assert!(s.frames().iter().any(|f| f.ty == DATA && f.stream == 3));
    s.write(&rst(3, CANCEL));
    assert_eq!(fake.cancelled(), [0, 1]);
    assert_eq!(s.app.active_streams(), 0);
    // The connection ends (the peer's FIN) with an exchange open.
    s.write(&request(5, "GET", "/api/c", true));
    assert_eq!(s.app.active_streams(), 1);
    s.app.on_read_eof(s.now);
    s.pump();
    assert_ne!(s.close(), Close::No);
    assert_eq!(fake.cancelled(), [0, 1, 2]);
    // Dropped with an exchange open.
    let mut s = srv(H2Config::default(), &fake).handshake();
    s.write(&request(1, "GET", "/api/d", true));
    assert_eq!(fake.started(), 4);
    drop(s);
    assert_eq!(fake.cancelled(), [0, 1, 2, 3]);
    fake.check();
}

#[test]
fn other_paths_get_the_built_in_routes() {
    let fake = Fake::new();
    let mut srv = srv(H2Config::default(), &fake);
    let (pipe, sp) = (Pipe::default(), Spawner::default());
    let got = Rc::new(RefCell::new(Vec::new()));
    let g = Rc::clone(&got);
    let (p, s) = (pipe.clone(), sp.clone());
    let main = async move {
        let mut sr = connect(p, s, h2::client::Builder::new()).await;
        let r = fetch(&mut sr, "GET", "/health", None).await.unwrap();
        g.borrow_mut().push(r);
        let body = Some(Bytes::from_static(b"echo me"));
        let r = fetch(&mut sr, "POST", "/echo", body).await.unwrap();
        g.borrow_mut().push(r);
    };
    run(&mut srv, &pipe, &sp, main, &Run::default(), |_, _| {});
    let got = got.borrow();
    assert_eq!((got[0].status, &got[0].body[..]), (200, &b"ok\n"[..]));
    assert_eq!((got[1].status, &got[1].body[..]), (200, &b"echo me"[..]));
    assert_eq!(
        *fake.matched.borrow(),
        [b"/health".to_vec(), b"/echo".to_vec()]
    );
    assert_eq!(fake.started(), 0);
}

/// A large response to a slow reader: byte-exact, and the app holds at
/// most about OUT_BUFFER of it (the rest stays with the proxy).
#[test]
fn large_response_to_a_slow_client() {
    const LEN: usize = 300_000;
    let fake = Fake::new();
    let mut srv = srv(H2Config::default(), &fake);
    let (pipe, sp) = (Pipe::default(), Spawner::default());
    let got = Rc::new(RefCell::new(None));
    let g = Rc::clone(&got);
    let (p, s) = (pipe.clone(), sp.clone());
    let main = async move {
        let mut sr = connect(p, s, client(4096, 16_384)).await;
        let r = fetch(&mut sr, "GET", "/api/big", None).await.unwrap();
        let h = fetch(&mut sr, "HEAD", "/api/big", None).await.unwrap();
        *g.borrow_mut() = Some((r, h));
    };
    let opts = Run {
        read_per_round: Some(3000),
        tcp_window: 20_000,
    };
    let (mut scripted, mut peak, mut left_at_peak) = (0, 0, 0);
    run(&mut srv, &pipe, &sp, main, &opts, |srv, _| {
        if scripted == 0 && fake.started() == 1 {
            scripted = 1;
            let mut parts = vec![head(200, &[], BodyLen::Length(LEN as u64))];
            for i in (0..LEN).step_by(10_000) {
                let chunk: Vec<u8> = (i..i + 10_000).map(|j| (j % 251) as u8).collect();
                parts.push(Ok(ResponsePart::Data(chunk)));
            }
            parts.push(Ok(ResponsePart::End));
            fake.script(0, parts);
        }
        if scripted == 1 && fake.started() == 2 {
            scripted = 2;
            let parts = [head(200, &[], BodyLen::Length(5)), Ok(ResponsePart::End)];
            fake.script(1, parts);
        }
        if srv.app.memory() > peak {
            peak = srv.app.memory();
            left_at_peak = fake.ex.borrow().first().map_or(0, |e| e.script.len());
        }
    });
    let (r, h) = got.borrow_mut().take().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-length"], LEN.to_string().as_str());
    assert_eq!(r.body.len(), LEN);
    assert!(r
        .body
        .iter()
        .enumerate()
        .all(|(i, &b)| b == (i % 251) as u8));
    assert_eq!(h.headers["content-length"], "5");
    assert!(h.body.is_empty());
    // Transport buffers, and OUT_BUFFER plus one part.
    assert!(peak <= 160 * 1024, "peak {peak}");
    assert!(
        left_at_peak > 10,
        "the app drained the proxy ({left_at_peak} left)"
    );
    fake.check();
}

/// Draining: a proxied stream in progress still completes.
#[test]
fn drain_lets_a_proxied_stream_finish() {
    let fake = Fake::new();
    let mut s = srv(H2Config::default(), &fake).handshake();
    s.write(&request(1, "GET", "/api/slow", true));
    s.app.drain(s.now);
    let f = s.frames();
    assert!(goaway(&f).is_some(), "{f:?}");
    fake.script(0, [head(200, &[], BodyLen::Streamed), data(b"late")]);
    fake.script(0, [Ok(ResponsePart::End)]);
    s.pump();
    let f = s.frames();
    let d = f.iter().find(|f| f.ty == DATA && f.stream == 1).unwrap();
    assert_eq!(d.payload, b"late");
    assert_ne!(d.flags & END_STREAM, 0, "{f:?}");
    assert!(fake.cancelled().is_empty());
    assert_eq!(s.app.active_streams(), 0);
    fake.check();
}

/// A proxied response that gets no send window for `stall_timeout` is
/// reset like a built-in one, and its exchange cancelled.
#[test]
fn stalled_response_is_reset_and_cancelled() {
    let fake = Fake::new();
    let cfg = H2Config::default();
    let stall = cfg.stall_timeout;
    let mut s = srv(cfg, &fake).handshake();
    s.write(&settings(&[(SETTINGS_INITIAL_WINDOW_SIZE, 0)]));
    s.write(&request(1, "GET", "/api/x", true));
    fake.script(0, [head(200, &[], BodyLen::Streamed), data(b"stuck")]);
    s.pump();
    let f = s.frames();
    assert!(f.iter().any(|f| f.ty == HEADERS && f.stream == 1), "{f:?}");
    assert!(s.app.memory() >= sluice_h2::CODEC_BUFFERS + 5);
    s.advance(stall + std::time::Duration::from_secs(1));
    let f = s.frames();
    let r = f.iter().find(|f| f.ty == RST_STREAM && f.stream == 1);
    assert_eq!(r.map(RawFrame::code), Some(CANCEL), "{f:?}");
    assert_eq!(fake.cancelled(), [0]);
    assert_eq!(s.h2().stalled_streams, 1);
    assert_eq!(s.app.active_streams(), 0);
    fake.check();
}
