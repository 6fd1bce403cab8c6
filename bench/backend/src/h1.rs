//! A minimal HTTP/1.x server: keep-alive, Content-Length and chunked request
//! bodies (100-continue answered, trailer fields kept), Content-Length,
//! chunked or close-delimited responses.

use std::io::{self, Write as _};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::conn::{ConnInfo, Io};
use crate::routes::{self, Exchange, Headers, Len, Proto, ReqInfo};
use crate::stats::inc;
use crate::Ctx;

const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 128;
/// Trailer fields kept per request; more are read and dropped.
const MAX_TRAILERS: usize = MAX_HEADERS;
const READ_CHUNK: usize = 64 * 1024;
/// Longest chunk-size or trailer line accepted.
const MAX_LINE: usize = 8 * 1024;

enum BodyState {
    Length(u64),
    ChunkSize,
    ChunkData(u64),
    /// The CRLF after a chunk's data.
    ChunkEnd,
    Trailers,
    Done,
}

enum Out {
    NotStarted,
    Length(u64),
    Chunked,
    /// HTTP/1.0 without a length: the body ends when the connection does.
    Close,
    /// HEAD, 204, 304, or gRPC Trailers-Only: the head says it all.
    NoBody,
    Done,
}

struct Head {
    req: ReqInfo,
    body: BodyState,
    keep_alive: bool,
    expect_continue: bool,
}

enum HeadError {
    Bad(u16, &'static str),
    Io,
}

pub async fn serve(mut io: Io, mut buf: BytesMut, info: Arc<ConnInfo>, ctx: Arc<Ctx>) {
    inc(&ctx.stats.connections_http1);
    let mut count = 0u64;
    loop {
        let head = match read_head(&mut io, &mut buf, &ctx, &info, count + 1).await {
            Ok(Some(h)) => h,
            Ok(None) => {
                // Idle timeout or the client closed: a clean close.
                let _ = io.shutdown().await;
                return;
            }
            Err(HeadError::Io) => return,
            Err(HeadError::Bad(status, why)) => {
                let _ = write_error(&mut io, status, why, &ctx, &info, count + 1).await;
                return;
            }
        };
        count += 1;
        let last = ctx.max_requests.is_some_and(|m| count >= m);
        let mut ex = H1Exchange {
            io: &mut io,
            buf: &mut buf,
            body: head.body,
            expect_continue: head.expect_continue,
            head_only: head.req.method == "HEAD",
            keep_alive: head.keep_alive && !last,
            out: Out::NotStarted,
            close_after: false,
            reset: false,
            gone: false,
            trailers: Vec::new(),
            req: &head.req,
            ctx: &ctx,
        };
        let res = routes::serve(&mut ex, &ctx, &head.req).await;
        if ex.reset {
            // SO_LINGER 0 is set: dropping the socket sends RST.
            return;
        }
        if res.is_err() || ex.gone || !matches!(ex.out, Out::Done) {
            return;
        }
        if ex.close_after || !ex.keep_alive {
            let _ = io.shutdown().await;
            return;
        }
        // A client told to wait for 100 Continue that never got it may never
        // send the body: the connection cannot be reused.
        if ex.expect_continue && !matches!(ex.body, BodyState::Done) {
            return;
        }
        if ex.drain_rest().await.is_err() {
            return;
        }
    }
}

async fn fill(io: &mut Io, buf: &mut BytesMut) -> io::Result<()> {
    buf.reserve(READ_CHUNK);
    if io.read_buf(buf).await? == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

/// `Ok(None)`: the client closed between requests, or stayed idle past
/// --keepalive-timeout-secs.
async fn read_head(
    io: &mut Io,
    buf: &mut BytesMut,
    ctx: &Ctx,
    info: &Arc<ConnInfo>,
    count: u64,
) -> Result<Option<Head>, HeadError> {
    loop {
        if !buf.is_empty() {
            let mut hdrs = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut hdrs);
            match req.parse(buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let head = build_head(&req, info, count)?;
                    buf.advance(n);
                    return Ok(Some(head));
                }
                Ok(httparse::Status::Partial) => {
                    if buf.len() > MAX_HEAD {
                        return Err(HeadError::Bad(431, "request head too large"));
                    }
                }
                Err(httparse::Error::TooManyHeaders) => {
                    return Err(HeadError::Bad(431, "too many header fields"))
                }
                Err(_) => return Err(HeadError::Bad(400, "malformed request head")),
            }
        }
        let idle = buf.is_empty();
        buf.reserve(READ_CHUNK);
        let read = io.read_buf(buf);
        let got = match ctx.keepalive_timeout() {
            Some(t) if idle => match tokio::time::timeout(t, read).await {
                Ok(r) => r,
                Err(_) => return Ok(None),
            },
            _ => read.await,
        };
        match got {
            Ok(0) if buf.is_empty() => return Ok(None),
            Ok(0) | Err(_) => return Err(HeadError::Io),
            Ok(_) => {}
        }
    }
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &v[start..end]
}

fn tokens(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|b| *b == b',').map(trim).filter(|t| !t.is_empty())
}

fn build_head(
    req: &httparse::Request<'_, '_>,
    info: &Arc<ConnInfo>,
    count: u64,
) -> Result<Head, HeadError> {
    let method = req.method.unwrap_or("GET").to_string();
    let mut target = req.path.unwrap_or("/").to_string();
    // Absolute form (a client talking to us as to a proxy): keep the path.
    if let Some(pos) = target.find("://") {
        let rest = &target[pos + 3..];
        target = rest
            .find('/')
            .map_or_else(|| "/".into(), |i| rest[i..].into());
    }
    let proto = if req.version == Some(0) {
        Proto::Http10
    } else {
        Proto::Http11
    };
    let mut headers = Vec::with_capacity(req.headers.len());
    let (mut close, mut keep_alive_token, mut expect_continue) = (false, false, false);
    let mut te: Option<bool> = None; // Some(last coding is chunked)
    let mut cl: Option<u64> = None;
    for h in req.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        match name.as_str() {
            "connection" => {
                for t in tokens(h.value) {
                    close |= t.eq_ignore_ascii_case(b"close");
                    keep_alive_token |= t.eq_ignore_ascii_case(b"keep-alive");
                }
            }
            "transfer-encoding" => {
                if let Some(last) = tokens(h.value).last() {
                    te = Some(last.eq_ignore_ascii_case(b"chunked"));
                }
            }
            "content-length" => {
                for t in tokens(h.value) {
                    let n = std::str::from_utf8(t)
                        .ok()
                        .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
                        .and_then(|s| s.parse::<u64>().ok())
                        .ok_or(HeadError::Bad(400, "bad content-length"))?;
                    if cl.is_some_and(|c| c != n) {
                        return Err(HeadError::Bad(400, "conflicting content-length"));
                    }
                    cl = Some(n);
                }
            }
            "expect" => {
                expect_continue |= trim(h.value).eq_ignore_ascii_case(b"100-continue");
            }
            _ => {}
        }
        headers.push((name, Bytes::copy_from_slice(h.value)));
    }
    // Both framings at once is the request-smuggling shape: refuse it.
    let (body, body_len) = match (te, cl) {
        (Some(_), Some(_)) => {
            return Err(HeadError::Bad(
                400,
                "both transfer-encoding and content-length",
            ))
        }
        (Some(true), None) => (BodyState::ChunkSize, None),
        (Some(false), None) => return Err(HeadError::Bad(501, "unsupported transfer-encoding")),
        (None, Some(n)) if n > 0 => (BodyState::Length(n), Some(n)),
        (None, _) => (BodyState::Done, Some(0)),
    };
    let keep_alive = !close && (proto == Proto::Http11 || keep_alive_token);
    Ok(Head {
        req: ReqInfo {
            method,
            target,
            proto,
            headers,
            authority: None,
            scheme: None,
            body_len,
            conn: info.clone(),
            count,
        },
        body,
        keep_alive,
        expect_continue: expect_continue && proto == Proto::Http11,
    })
}

async fn write_error(
    io: &mut Io,
    status: u16,
    why: &str,
    ctx: &Ctx,
    info: &ConnInfo,
    count: u64,
) -> io::Result<()> {
    let reason = reason(status);
    let msg = format!(
        "HTTP/1.1 {status} {reason}\r\nx-backend: {}\r\nx-request-count: {count}\r\nx-conn-id: {}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{why}\n",
        ctx.name,
        info.id,
        why.len() + 1
    );
    io.write_all(msg.as_bytes()).await?;
    io.shutdown().await
}

fn reason(status: u16) -> &'static str {
    http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Unknown")
}

fn other(msg: &'static str) -> io::Error {
    io::Error::other(msg)
}

/// Bytes written but not yet acknowledged by the peer (SIOCOUTQ).
fn unacked(tcp: &TcpStream) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: TIOCOUTQ on a TCP socket writes one c_int through the pointer,
    // which points at a live local; the fd stays open for the call because
    // `tcp` is borrowed.
    let r = unsafe { libc::ioctl(tcp.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n.max(0) as usize)
}

struct H1Exchange<'a> {
    io: &'a mut Io,
    buf: &'a mut BytesMut,
    body: BodyState,
    expect_continue: bool,
    head_only: bool,
    keep_alive: bool,
    out: Out,
    close_after: bool,
    reset: bool,
    gone: bool,
    /// The request's trailer fields, as the chunked body's end is read.
    trailers: Vec<(String, Bytes)>,
    req: &'a ReqInfo,
    ctx: &'a Ctx,
}

/// One trailer line (CRLF excluded) as a field: the name lowercased, the
/// value without surrounding whitespace. `None` for a line that is not a
/// field (no colon, or a name that is not a token).
fn trailer_field(line: &[u8]) -> Option<(String, Bytes)> {
    let colon = line.iter().position(|b| *b == b':')?;
    let name = http::HeaderName::from_bytes(&line[..colon]).ok()?;
    let value = trim(&line[colon + 1..]);
    Some((name.as_str().to_string(), Bytes::copy_from_slice(value)))
}

impl H1Exchange<'_> {
    async fn next_body(&mut self) -> io::Result<Option<Bytes>> {
        let (io, buf) = (&mut *self.io, &mut *self.buf);
        loop {
            match self.body {
                BodyState::Done => return Ok(None),
                BodyState::Length(n) | BodyState::ChunkData(n) => {
                    if buf.is_empty() {
                        fill(io, buf).await?;
                    }
                    let take = (buf.len() as u64).min(n);
                    let left = n - take;
                    self.body = match self.body {
                        BodyState::Length(_) if left == 0 => BodyState::Done,
                        BodyState::Length(_) => BodyState::Length(left),
                        _ if left == 0 => BodyState::ChunkEnd,
                        _ => BodyState::ChunkData(left),
                    };
                    return Ok(Some(buf.split_to(take as usize).freeze()));
                }
                BodyState::ChunkSize => match httparse::parse_chunk_size(buf) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        buf.advance(used);
                        self.body = if size == 0 {
                            BodyState::Trailers
                        } else {
                            BodyState::ChunkData(size)
                        };
                    }
                    Ok(httparse::Status::Partial) if buf.len() <= MAX_LINE => fill(io, buf).await?,
                    _ => return Err(io::Error::new(io::ErrorKind::InvalidData, "bad chunk size")),
                },
                BodyState::ChunkEnd => {
                    if buf.len() < 2 {
                        fill(io, buf).await?;
                        continue;
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "chunk not followed by CRLF",
                        ));
                    }
                    buf.advance(2);
                    self.body = BodyState::ChunkSize;
                }
                BodyState::Trailers => match buf.windows(2).position(|w| w == b"\r\n") {
                    // The empty line ends the trailer section.
                    Some(0) => {
                        buf.advance(2);
                        self.body = BodyState::Done;
                    }
                    Some(i) => {
                        // Kept (the first MAX_TRAILERS fields) for /echo and
                        // /headers; a line that is no field is dropped.
                        if self.trailers.len() < MAX_TRAILERS {
                            self.trailers.extend(trailer_field(&buf[..i]));
                        }
                        buf.advance(i + 2);
                    }
                    None if buf.len() <= MAX_LINE => fill(io, buf).await?,
                    None => {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "trailer line too long",
                        ))
                    }
                },
            }
        }
    }

    async fn drain_rest(&mut self) -> io::Result<()> {
        while self.next_body().await?.is_some() {}
        Ok(())
    }
}

impl Exchange for H1Exchange<'_> {
    async fn body_chunk(&mut self) -> io::Result<Option<Bytes>> {
        // 100 Continue only while no final head has gone out; after one, a
        // client still waiting for it may not send the body (see serve()).
        if self.expect_continue
            && matches!(self.out, Out::NotStarted)
            && !matches!(self.body, BodyState::Done)
        {
            self.expect_continue = false;
            self.io.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
            self.io.flush().await?;
        }
        self.next_body().await
    }

    fn trailers(&self) -> &[(String, Bytes)] {
        &self.trailers
    }

    async fn head(&mut self, status: u16, headers: Headers, len: Len) -> io::Result<()> {
        if !matches!(self.out, Out::NotStarted) {
            return Err(other("response head sent twice"));
        }
        let mut h = Vec::with_capacity(512);
        write!(
            h,
            "HTTP/1.1 {status} {}\r\nx-backend: {}\r\nx-request-count: {}\r\nx-conn-id: {}\r\n",
            reason(status),
            self.ctx.name,
            self.req.count,
            self.req.conn.id
        )?;
        for (name, value) in &headers {
            h.extend_from_slice(name.as_bytes());
            h.extend_from_slice(b": ");
            h.extend_from_slice(value);
            h.extend_from_slice(b"\r\n");
        }
        let bodiless = status < 200 || status == 204 || status == 304;
        self.out = match len {
            _ if bodiless => Out::NoBody,
            Len::Known(n) => {
                write!(h, "content-length: {n}\r\n")?;
                if self.head_only || n == 0 {
                    Out::NoBody
                } else {
                    Out::Length(n)
                }
            }
            Len::Empty => {
                h.extend_from_slice(b"content-length: 0\r\n");
                Out::NoBody
            }
            Len::Unknown if self.req.proto == Proto::Http11 => {
                h.extend_from_slice(b"transfer-encoding: chunked\r\n");
                if self.head_only {
                    Out::NoBody
                } else {
                    Out::Chunked
                }
            }
            Len::Unknown => {
                self.keep_alive = false;
                if self.head_only {
                    Out::NoBody
                } else {
                    Out::Close
                }
            }
        };
        if !self.keep_alive {
            h.extend_from_slice(b"connection: close\r\n");
        } else {
            if self.req.proto == Proto::Http10 {
                h.extend_from_slice(b"connection: keep-alive\r\n");
            }
            if let Some(n) = self.ctx.keepalive_secs {
                write!(h, "keep-alive: timeout={n}\r\n")?;
            }
        }
        h.extend_from_slice(b"\r\n");
        self.io.write_all(&h).await?;
        self.io.flush().await
    }

    async fn data(&mut self, data: Bytes) -> io::Result<()> {
        match &mut self.out {
            Out::NotStarted | Out::Done => return Err(other("body outside a response")),
            Out::NoBody => return Ok(()),
            Out::Length(rem) => {
                if data.len() as u64 > *rem {
                    return Err(other("body longer than its content-length"));
                }
                *rem -= data.len() as u64;
                self.io.write_all(&data).await?;
            }
            Out::Chunked => {
                if data.is_empty() {
                    return Ok(());
                }
                // One write per chunk: size line, data, CRLF.
                let mut c = Vec::with_capacity(data.len() + 20);
                write!(c, "{:x}\r\n", data.len())?;
                c.extend_from_slice(&data);
                c.extend_from_slice(b"\r\n");
                self.io.write_all(&c).await?;
            }
            Out::Close => self.io.write_all(&data).await?,
        }
        self.io.flush().await
    }

    async fn finish(&mut self, trailers: Headers) -> io::Result<()> {
        match self.out {
            Out::NotStarted | Out::Done => return Err(other("finish outside a response")),
            Out::Length(rem) if rem > 0 => {
                return Err(other("body shorter than its content-length"))
            }
            Out::Chunked => {
                let mut t = b"0\r\n".to_vec();
                for (name, value) in &trailers {
                    t.extend_from_slice(name.as_bytes());
                    t.extend_from_slice(b": ");
                    t.extend_from_slice(value);
                    t.extend_from_slice(b"\r\n");
                }
                t.extend_from_slice(b"\r\n");
                self.io.write_all(&t).await?;
            }
            Out::Length(_) | Out::Close | Out::NoBody => {}
        }
        self.out = Out::Done;
        self.io.flush().await
    }

    async fn reset(&mut self) -> io::Result<()> {
        self.io.flush().await?;
        // close() with SO_LINGER 0 throws away unsent data: let what was
        // written (?after=N) reach the client first, within a bound.
        let deadline = Instant::now() + Duration::from_secs(2);
        while unacked(self.io.tcp()).unwrap_or(0) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        self.io.tcp().set_zero_linger()?;
        self.reset = true;
        Ok(())
    }

    fn close_after(&mut self) {
        self.close_after = true;
    }

    async fn wait_gone(&mut self) {
        self.gone = true;
        let mut scratch = vec![0u8; 16 * 1024];
        while let Ok(n) = self.io.read(&mut scratch).await {
            if n == 0 {
                return;
            }
        }
    }
}
