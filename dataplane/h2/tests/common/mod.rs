//! Test helpers: a server harness over virtual time, a raw frame encoder
//! and decoder, a minimal HPACK encoder (literals only), and a tiny
//! executor that runs h2's client against an `H2App` in memory.
#![allow(dead_code)]

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use sluice_app::proxy::Proxy;
use sluice_app::{App, Close, ConnContext, LoopDate, SharedStats, Time};
use sluice_h2::{H2App, H2Config, PREFACE};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const PRIORITY: u8 = 0x2;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PUSH_PROMISE: u8 = 0x5;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;
pub const CONTINUATION: u8 = 0x9;

pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const PADDED: u8 = 0x8;

pub const NO_ERROR: u32 = 0x0;
pub const PROTOCOL_ERROR: u32 = 0x1;
pub const FLOW_CONTROL_ERROR: u32 = 0x3;
pub const STREAM_CLOSED: u32 = 0x5;
pub const FRAME_SIZE_ERROR: u32 = 0x6;
pub const REFUSED_STREAM: u32 = 0x7;
pub const CANCEL: u32 = 0x8;
pub const ENHANCE_YOUR_CALM: u32 = 0xb;

pub const SETTINGS_ENABLE_PUSH: u16 = 0x2;
pub const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
pub const SETTINGS_MAX_FRAME_SIZE: u16 = 0x5;

pub const DATE: &[u8; 29] = b"Thu, 01 Jan 1970 00:00:00 GMT";

// ---- raw frames ----

pub fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    v.push(ty);
    v.push(flags);
    v.extend_from_slice(&stream.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

pub fn settings(params: &[(u16, u32)]) -> Vec<u8> {
    let mut p = Vec::new();
    for &(id, val) in params {
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(&val.to_be_bytes());
    }
    frame(SETTINGS, 0, 0, &p)
}

pub fn window_update(stream: u32, inc: u32) -> Vec<u8> {
    frame(WINDOW_UPDATE, 0, stream, &inc.to_be_bytes())
}

pub fn rst(stream: u32, code: u32) -> Vec<u8> {
    frame(RST_STREAM, 0, stream, &code.to_be_bytes())
}

pub fn ping(payload: [u8; 8]) -> Vec<u8> {
    frame(PING, 0, 0, &payload)
}

/// An HPACK header block of literals without indexing (RFC 7541 §6.2.2),
/// no Huffman: enough for a client.
pub fn hpack(headers: &[(&str, &str)]) -> Vec<u8> {
    fn int(out: &mut Vec<u8>, mut v: usize) {
        // 7-bit prefix, H = 0.
        if v < 127 {
            out.push(v as u8);
            return;
        }
        out.push(127);
        v -= 127;
        while v >= 128 {
            out.push((v % 128) as u8 | 0x80);
            v /= 128;
        }
        out.push(v as u8);
    }
    let mut out = Vec::new();
    for (n, v) in headers {
        out.push(0x00);
        int(&mut out, n.len());
        out.extend_from_slice(n.as_bytes());
        int(&mut out, v.len());
        out.extend_from_slice(v.as_bytes());
    }
    out
}

pub fn request_block(method: &str, path: &str) -> Vec<u8> {
    hpack(&[
        (":method", method),
        (":scheme", "http"),
        (":authority", "a"),
        (":path", path),
    ])
}

/// A request HEADERS frame (END_HEADERS; END_STREAM if `end`).
pub fn request(stream: u32, method: &str, path: &str, end: bool) -> Vec<u8> {
    let flags = END_HEADERS | if end { END_STREAM } else { 0 };
    frame(HEADERS, flags, stream, &request_block(method, path))
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawFrame {
    pub ty: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl RawFrame {
    fn u32_at(&self, at: usize) -> u32 {
        u32::from_be_bytes(self.payload[at..at + 4].try_into().unwrap())
    }

    /// Error code of a GOAWAY or RST_STREAM.
    pub fn code(&self) -> u32 {
        match self.ty {
            GOAWAY => self.u32_at(4),
            RST_STREAM => self.u32_at(0),
            t => panic!("no error code in frame type {t}"),
        }
    }

    pub fn last_stream(&self) -> u32 {
        assert_eq!(self.ty, GOAWAY);
        self.u32_at(0) & 0x7fff_ffff
    }
}

/// Takes the complete frames off the front of `buf`.
pub fn parse_frames(buf: &mut Vec<u8>) -> Vec<RawFrame> {
    let mut out = Vec::new();
    let mut at = 0;
    while buf.len() - at >= 9 {
        let h = &buf[at..at + 9];
        let len = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
        if buf.len() - at < 9 + len {
            break;
        }
        out.push(RawFrame {
            ty: h[3],
            flags: h[4],
            stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
            payload: buf[at + 9..at + 9 + len].to_vec(),
        });
        at += 9 + len;
    }
    buf.drain(..at);
    out
}

// ---- the server over virtual time ----

pub struct Srv {
    pub app: H2App,
    pub now: Time,
    pub stats: SharedStats,
    pub date: LoopDate,
    /// Client bytes the app has not taken yet.
    pub pending_in: Vec<u8>,
    /// Server bytes not parsed yet.
    pub out: Vec<u8>,
}

pub fn t0() -> Time {
    Time::from_millis(1_000_000)
}

impl Srv {
    pub fn new(cfg: H2Config) -> Self {
        Self::build(cfg, &ConnContext::default(), None)
    }

    /// A server whose requests go to `proxy` when it matches them.
    pub fn with_proxy(cfg: H2Config, ctx: &ConnContext, proxy: Rc<dyn Proxy>) -> Self {
        Self::build(cfg, ctx, Some(proxy))
    }

    fn build(cfg: H2Config, ctx: &ConnContext, proxy: Option<Rc<dyn Proxy>>) -> Self {
        let stats = SharedStats::default();
        let date = LoopDate::new();
        date.set(*DATE);
        let now = t0();
        let mut app = H2App::new(Rc::new(cfg), date.clone(), stats.clone(), ctx, now);
        if let Some(p) = proxy {
            app = app.with_proxy(p);
        }
        Srv {
            app,
            now,
            stats,
            date,
            pending_in: Vec::new(),
            out: Vec::new(),
        }
    }

    /// Preface, empty SETTINGS, then the ACK of the server's SETTINGS.
    pub fn handshaken(cfg: H2Config) -> Self {
        Srv::new(cfg).handshake()
    }

    /// Preface, empty SETTINGS, then the ACK of the server's SETTINGS.
    pub fn handshake(mut self) -> Self {
        let s = &mut self;
        let mut hello = PREFACE.to_vec();
        hello.extend(settings(&[]));
        s.write(&hello);
        let f = s.frames();
        assert_eq!(f[0].ty, SETTINGS, "{f:?}");
        assert_eq!(f[0].flags & ACK, 0);
        assert!(
            f.iter().any(|f| f.ty == SETTINGS && f.flags & ACK != 0),
            "{f:?}"
        );
        s.write(&frame(SETTINGS, ACK, 0, &[]));
        let rest = s.frames();
        assert!(rest.is_empty(), "{rest:?}");
        self
    }

    pub fn write(&mut self, bytes: &[u8]) {
        self.pending_in.extend_from_slice(bytes);
        self.pump();
    }

    /// Moves bytes both ways until nothing moves (the client reads
    /// everything at once).
    pub fn pump(&mut self) -> bool {
        let mut any = false;
        let mut buf = vec![0u8; 16 * 1024];
        for _ in 0..100_000 {
            let mut moved = false;
            if !self.pending_in.is_empty() && self.app.wants_read() {
                let n = self.app.on_read(self.now, &self.pending_in);
                assert!(n <= self.pending_in.len());
                self.pending_in.drain(..n);
                moved |= n > 0;
            }
            while self.app.wants_write() {
                let n = self.app.poll_write(self.now, &mut buf);
                if n == 0 {
                    break;
                }
                self.out.extend_from_slice(&buf[..n]);
                moved = true;
            }
            if !moved {
                break;
            }
            any = true;
        }
        // The loop would spin on an app that wants to write and does not.
        assert!(
            !self.app.wants_write(),
            "wants_write() with nothing to write"
        );
        any
    }

    pub fn frames(&mut self) -> Vec<RawFrame> {
        self.pump();
        parse_frames(&mut self.out)
    }

    /// Moves time on, firing the app's timers as they come due.
    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        for _ in 0..10_000 {
            match self.app.deadline() {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    self.app.on_timeout(self.now);
                    self.pump();
                }
                _ => break,
            }
        }
        self.now = end;
        self.pump();
    }

    pub fn close(&self) -> Close {
        self.app.close()
    }

    pub fn h2(&self) -> sluice_app::H2Stats {
        self.stats.borrow().h2
    }

    pub fn http(&self) -> sluice_app::HttpStats {
        self.stats.borrow().http
    }
}

/// The GOAWAY among `frames`, if any.
pub fn goaway(frames: &[RawFrame]) -> Option<&RawFrame> {
    frames.iter().find(|f| f.ty == GOAWAY)
}

// ---- h2's client over an in-memory pipe, and an executor ----

#[derive(Default)]
pub struct PipeState {
    pub c2s: Vec<u8>,
    pub s2c: Vec<u8>,
    pub s2c_pos: usize,
    /// Bytes the client may read this round (a slow reader); None: any.
    pub read_budget: Option<usize>,
}

pub type Pipe = Rc<RefCell<PipeState>>;

pub struct ClientIo(pub Pipe);

impl AsyncRead for ClientIo {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut p = self.0.borrow_mut();
        let avail = p.s2c.len() - p.s2c_pos;
        let budget = p.read_budget.unwrap_or(usize::MAX);
        let n = avail.min(buf.remaining()).min(budget);
        if n == 0 {
            // The executor polls every task every round: no waker needed.
            return Poll::Pending;
        }
        let at = p.s2c_pos;
        buf.put_slice(&p.s2c[at..at + n]);
        p.s2c_pos += n;
        if let Some(b) = &mut p.read_budget {
            *b -= n;
        }
        if p.s2c_pos == p.s2c.len() {
            p.s2c.clear();
            p.s2c_pos = 0;
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for ClientIo {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.0.borrow_mut().c2s.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

type Task = Pin<Box<dyn Future<Output = ()>>>;

/// Where tasks start other tasks.
#[derive(Clone, Default)]
pub struct Spawner(Rc<RefCell<Vec<Task>>>);

impl Spawner {
    pub fn spawn(&self, f: impl Future<Output = ()> + 'static) {
        self.0.borrow_mut().push(Box::pin(f));
    }
}

/// Options of a client run.
pub struct Run {
    /// Bytes the client reads per round (None: all).
    pub read_per_round: Option<usize>,
    /// Server bytes in flight to the client at most (a TCP send buffer):
    /// `poll_write` is not called beyond it.
    pub tcp_window: usize,
}

impl Default for Run {
    fn default() -> Self {
        Run {
            read_per_round: None,
            tcp_window: 256 * 1024,
        }
    }
}

/// Runs the spawned tasks (round-robin, every task every round) and moves
/// bytes between the client and the app, until the task `main` ends.
/// `hook` runs after every round (checks, drain, time). Panics if nothing
/// moves for many rounds.
pub fn run(
    srv: &mut Srv,
    pipe: &Pipe,
    spawner: &Spawner,
    main: impl Future<Output = ()> + 'static,
    opts: &Run,
    mut hook: impl FnMut(&mut Srv, u64),
) {
    let done = Rc::new(RefCell::new(false));
    let d = Rc::clone(&done);
    spawner.spawn(async move {
        main.await;
        *d.borrow_mut() = true;
    });
    let mut tasks: Vec<Task> = Vec::new();
    let mut cx = Context::from_waker(Waker::noop());
    let mut buf = vec![0u8; 16 * 1024];
    let mut stuck = 0;
    for round in 0u64.. {
        tasks.append(&mut spawner.0.borrow_mut());
        pipe.borrow_mut().read_budget = opts.read_per_round;
        let before = tasks.len();
        tasks.retain_mut(|t| t.as_mut().poll(&mut cx).is_pending());
        let mut moved = tasks.len() != before;
        if *done.borrow() {
            return;
        }
        // Client to server.
        let c2s = std::mem::take(&mut pipe.borrow_mut().c2s);
        srv.pending_in.extend_from_slice(&c2s);
        while !srv.pending_in.is_empty() && srv.app.wants_read() {
            let n = srv.app.on_read(srv.now, &srv.pending_in);
            if n == 0 {
                break;
            }
            srv.pending_in.drain(..n);
            moved = true;
        }
        // Server to client, within the "TCP" window.
        loop {
            let in_flight = {
                let p = pipe.borrow();
                p.s2c.len() - p.s2c_pos
            };
            if in_flight >= opts.tcp_window || !srv.app.wants_write() {
                break;
            }
            let room = (opts.tcp_window - in_flight).min(buf.len());
            let n = srv.app.poll_write(srv.now, &mut buf[..room]);
            if n == 0 {
                break;
            }
            pipe.borrow_mut().s2c.extend_from_slice(&buf[..n]);
            moved = true;
        }
        hook(srv, round);
        if moved {
            stuck = 0;
        } else {
            stuck += 1;
            assert!(stuck < 10_000, "stuck: nothing moves (round {round})");
        }
    }
}

/// A client connection (handshake done, its connection task spawned).
pub async fn connect(
    pipe: Pipe,
    spawner: Spawner,
    builder: h2::client::Builder,
) -> h2::client::SendRequest<Bytes> {
    let (sr, conn) = builder
        .handshake::<_, Bytes>(ClientIo(pipe))
        .await
        .expect("client handshake");
    spawner.spawn(async move {
        let _ = conn.await;
    });
    sr
}

pub struct Resp {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

/// Sends a request (with `body`, if any) and reads the whole response.
pub async fn fetch(
    sr: &mut h2::client::SendRequest<Bytes>,
    method: &str,
    path: &str,
    body: Option<Bytes>,
) -> Result<Resp, h2::Error> {
    let req = http::Request::builder()
        .method(method)
        .uri(format!("http://a{path}"))
        .body(())
        .unwrap();
    let mut ready = sr.clone().ready().await?;
    let (resp, mut tx) = ready.send_request(req, body.is_none())?;
    if let Some(b) = body {
        tx.send_data(b, true)?;
    }
    let resp = resp.await?;
    let (parts, mut rx) = resp.into_parts();
    let mut out = Vec::new();
    while let Some(chunk) = rx.data().await {
        let chunk = chunk?;
        out.extend_from_slice(&chunk);
        let _ = rx.flow_control().release_capacity(chunk.len());
    }
    Ok(Resp {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: out,
    })
}

/// A default h2 client builder with small windows.
pub fn client(stream_window: u32, conn_window: u32) -> h2::client::Builder {
    let mut b = h2::client::Builder::new();
    b.initial_window_size(stream_window)
        .initial_connection_window_size(conn_window);
    b
}

pub fn is_pattern(body: &[u8]) -> bool {
    body.iter()
        .enumerate()
        .all(|(i, &b)| b == sluice_http::bytes_pattern(i as u64))
}
