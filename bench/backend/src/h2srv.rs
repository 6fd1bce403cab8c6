//! h2 (prior knowledge, or ALPN h2 under TLS) on the `h2` crate: one task
//! drives the connection and accepts streams, one task per stream runs the
//! behaviour.

use std::future::poll_fn;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use http::{HeaderMap, HeaderName, HeaderValue, Response};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;

use crate::conn::ConnInfo;
use crate::routes::{self, Exchange, Headers, Len, Proto, ReqInfo};
use crate::stats::inc;
use crate::Ctx;

pub async fn serve<T>(io: T, info: Arc<ConnInfo>, ctx: Arc<Ctx>)
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    inc(&ctx.stats.connections_h2);
    let mut builder = h2::server::Builder::new();
    if let Some(n) = ctx.h2_max_streams {
        builder.max_concurrent_streams(n);
    }
    if let Some(w) = ctx.h2_window {
        builder.initial_window_size(w);
        builder.initial_connection_window_size(w);
    }
    let mut conn = match builder.handshake::<_, Bytes>(io).await {
        Ok(c) => c,
        Err(_) => return,
    };
    // /close asks for GOAWAY through this.
    let goaway = Arc::new(Notify::new());
    let mut shutting_down = false;
    let mut count = 0u64;
    loop {
        tokio::select! {
            // accept() is a poll_fn over the connection: cancel-safe.
            next = conn.accept() => match next {
                Some(Ok((req, respond))) => {
                    count += 1;
                    tokio::spawn(stream(req, respond, count, info.clone(), ctx.clone(), goaway.clone()));
                    if !shutting_down && ctx.max_requests.is_some_and(|m| count >= m) {
                        conn.graceful_shutdown();
                        shutting_down = true;
                    }
                }
                Some(Err(_)) | None => break,
            },
            _ = goaway.notified(), if !shutting_down => {
                conn.graceful_shutdown();
                shutting_down = true;
            }
        }
    }
}

async fn stream(
    req: http::Request<RecvStream>,
    respond: SendResponse<Bytes>,
    count: u64,
    conn: Arc<ConnInfo>,
    ctx: Arc<Ctx>,
    goaway: Arc<Notify>,
) {
    let (parts, recv) = req.into_parts();
    let body_len = if recv.is_end_stream() {
        Some(0)
    } else {
        // h2 itself checks the DATA frames against content-length.
        parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok())
    };
    let info = ReqInfo {
        method: parts.method.to_string(),
        target: parts
            .uri
            .path_and_query()
            .map_or_else(|| "/".to_string(), |p| p.as_str().to_string()),
        proto: Proto::H2,
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| (n.as_str().to_string(), Bytes::copy_from_slice(v.as_bytes())))
            .collect(),
        authority: parts.uri.authority().map(|a| a.to_string()),
        scheme: parts.uri.scheme_str().map(str::to_string),
        body_len,
        conn,
        count,
    };
    let mut ex = H2Exchange {
        recv,
        respond,
        send: None,
        pending_release: 0,
        body_done: false,
        trailers: Vec::new(),
        head_only: parts.method == http::Method::HEAD,
        done: false,
        goaway,
        ctx: &ctx,
        info: &info,
    };
    if let Err(e) = routes::serve(&mut ex, &ctx, &info).await {
        if ctx.verbose {
            eprintln!("conn {} stream {count}: {e}", info.conn.id);
        }
    }
}

fn h2_err(e: h2::Error) -> io::Error {
    io::Error::other(e)
}

struct H2Exchange<'a> {
    recv: RecvStream,
    respond: SendResponse<Bytes>,
    send: Option<SendStream<Bytes>>,
    /// Bytes of the last body piece handed out, whose window is returned on
    /// the next read.
    pending_release: usize,
    /// The request body (and its trailers, if any) has been read.
    body_done: bool,
    /// The request's trailers (a HEADERS frame after its DATA).
    trailers: Vec<(String, Bytes)>,
    head_only: bool,
    /// END_STREAM sent.
    done: bool,
    goaway: Arc<Notify>,
    ctx: &'a Ctx,
    info: &'a ReqInfo,
}

fn header_map(headers: Headers) -> io::Result<HeaderMap> {
    let mut map = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let value = HeaderValue::from_maybe_shared(value)
            .map_err(|_| io::Error::other(format!("bad value for {name}")))?;
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| io::Error::other(format!("bad field name {name}")))?;
        map.append(name, value);
    }
    Ok(map)
}

impl Exchange for H2Exchange<'_> {
    async fn body_chunk(&mut self) -> io::Result<Option<Bytes>> {
        if self.pending_release > 0 {
            let _ = self
                .recv
                .flow_control()
                .release_capacity(self.pending_release);
            self.pending_release = 0;
        }
        if self.body_done {
            return Ok(None);
        }
        match self.recv.data().await {
            None => {
                // The stream ended, or a trailing HEADERS frame is next.
                self.body_done = true;
                if let Some(t) = self.recv.trailers().await.map_err(h2_err)? {
                    self.trailers = t
                        .iter()
                        .map(|(n, v)| {
                            (n.as_str().to_string(), Bytes::copy_from_slice(v.as_bytes()))
                        })
                        .collect();
                }
                Ok(None)
            }
            Some(Ok(b)) => {
                self.pending_release = b.len();
                Ok(Some(b))
            }
            Some(Err(e)) => Err(h2_err(e)),
        }
    }

    fn trailers(&self) -> &[(String, Bytes)] {
        &self.trailers
    }

    async fn head(&mut self, status: u16, headers: Headers, len: Len) -> io::Result<()> {
        let bodiless = status < 200 || status == 204 || status == 304;
        let mut map = header_map(headers)?;
        map.insert(
            "x-backend",
            HeaderValue::from_str(&self.ctx.name).map_err(io::Error::other)?,
        );
        map.insert("x-request-count", HeaderValue::from(self.info.count));
        map.insert("x-conn-id", HeaderValue::from(self.info.conn.id));
        if let (Len::Known(n), false) = (len, bodiless) {
            map.insert(http::header::CONTENT_LENGTH, HeaderValue::from(n));
        }
        let mut resp = Response::builder()
            .status(status)
            .body(())
            .map_err(io::Error::other)?;
        *resp.headers_mut() = map;
        let end = self.head_only || bodiless || matches!(len, Len::Known(0) | Len::Empty);
        let send = self.respond.send_response(resp, end).map_err(h2_err)?;
        self.send = Some(send);
        self.done = end;
        Ok(())
    }

    async fn data(&mut self, mut data: Bytes) -> io::Result<()> {
        if self.done {
            return Ok(());
        }
        let send = self
            .send
            .as_mut()
            .ok_or_else(|| io::Error::other("body before head"))?;
        // h2 buffers whatever it is given; asking for window first keeps
        // what is buffered here to one piece.
        while !data.is_empty() {
            send.reserve_capacity(data.len());
            let cap = match poll_fn(|cx| send.poll_capacity(cx)).await {
                Some(Ok(0)) => continue,
                Some(Ok(n)) => n,
                Some(Err(e)) => return Err(h2_err(e)),
                None => return Err(io::Error::other("stream closed")),
            };
            let piece = data.split_to(cap.min(data.len()));
            send.send_data(piece, false).map_err(h2_err)?;
        }
        Ok(())
    }

    async fn finish(&mut self, trailers: Headers) -> io::Result<()> {
        if self.done {
            return Ok(());
        }
        self.done = true;
        let send = self
            .send
            .as_mut()
            .ok_or_else(|| io::Error::other("finish before head"))?;
        if trailers.is_empty() {
            send.send_data(Bytes::new(), true).map_err(h2_err)
        } else {
            send.send_trailers(header_map(trailers)?).map_err(h2_err)
        }
    }

    async fn reset(&mut self) -> io::Result<()> {
        match self.send.as_mut() {
            Some(send) => {
                // RST_STREAM drops the stream's queued DATA; the connection
                // task needs a moment to write what ?after=N sent. Best
                // effort: h2 tells no one when a frame has left.
                tokio::time::sleep(Duration::from_millis(100)).await;
                send.send_reset(Reason::INTERNAL_ERROR);
            }
            None => self.respond.send_reset(Reason::INTERNAL_ERROR),
        }
        Ok(())
    }

    fn close_after(&mut self) {
        // notify_one keeps a permit if the connection task is not waiting.
        self.goaway.notify_one();
    }

    async fn wait_gone(&mut self) {
        // Resolves on the client's RST_STREAM, or with an error once the
        // connection is gone.
        let _ = match self.send.as_mut() {
            Some(send) => poll_fn(|cx| send.poll_reset(cx)).await,
            None => poll_fn(|cx| self.respond.poll_reset(cx)).await,
        };
    }
}
