//! The behaviours, chosen by path and query, written once against
//! [`Exchange`], which HTTP/1.1 and h2 each implement.

use std::borrow::Cow;
use std::io;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use bytes::Bytes;

use crate::conn::ConnInfo;
use crate::stats::inc;
use crate::Ctx;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Proto {
    Http10,
    Http11,
    H2,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Http10 => "http/1.0",
            Proto::Http11 => "http/1.1",
            Proto::H2 => "h2",
        }
    }
}

/// Response body length as announced in the head.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Len {
    /// `content-length: N`.
    Known(u64),
    /// Chunked on HTTP/1.1, close-delimited on HTTP/1.0, no length on h2.
    Unknown,
    /// No body and no content-length (gRPC Trailers-Only); h2 ends the stream
    /// with the head.
    Empty,
}

/// Field names are lowercase; most are fixed, echoed trailers are made.
pub type Headers = Vec<(Cow<'static, str>, Bytes)>;

pub struct ReqInfo {
    pub method: String,
    /// Path and query as received (origin form).
    pub target: String,
    pub proto: Proto,
    /// Lowercased names, in arrival order, repeats kept.
    pub headers: Vec<(String, Bytes)>,
    /// h2 `:authority` / `:scheme` (HTTP/1.x: none; see the host header).
    pub authority: Option<String>,
    pub scheme: Option<String>,
    /// The request body's length when the framing tells it up front.
    pub body_len: Option<u64>,
    pub conn: Arc<ConnInfo>,
    /// 1-based number of this request on its connection.
    pub count: u64,
}

impl ReqInfo {
    pub fn header(&self, name: &str) -> Option<&Bytes> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

/// One request/response exchange, as the behaviours drive it. The
/// implementation adds `x-backend`, `x-request-count`, `x-conn-id` and the
/// framing headers to every head.
pub(crate) trait Exchange {
    /// Next piece of the request body; `None` at its end. On h2 the previous
    /// piece's flow-control window is handed back only here, so a client
    /// sending faster than the echo is read gets backpressure.
    async fn body_chunk(&mut self) -> io::Result<Option<Bytes>>;
    /// The request's trailer fields (h2: a HEADERS frame after the DATA;
    /// HTTP/1.1: the fields after a chunked body's last chunk), lowercased,
    /// in arrival order; read with the end of the body, so empty until
    /// `body_chunk` has returned `None`.
    fn trailers(&self) -> &[(String, Bytes)];
    async fn head(&mut self, status: u16, headers: Headers, len: Len) -> io::Result<()>;
    async fn data(&mut self, data: Bytes) -> io::Result<()>;
    /// Ends the response, with trailers if any (h2; chunked HTTP/1.1).
    async fn finish(&mut self, trailers: Headers) -> io::Result<()>;
    /// HTTP/1.x: RST the TCP connection (after what was written has been
    /// acknowledged); h2: RST_STREAM(INTERNAL_ERROR).
    async fn reset(&mut self) -> io::Result<()>;
    /// After this response, HTTP/1.x closes the connection without having
    /// said `Connection: close`; h2 sends GOAWAY.
    fn close_after(&mut self);
    /// Returns once the client has gone (HTTP/1.x: EOF or error on the
    /// socket; h2: the stream was reset or the connection ended).
    async fn wait_gone(&mut self);
}

/// `/bytes`' pattern: byte i of a body is `(i * 31 + 7) % 251`.
pub fn pattern_byte(i: u64) -> u8 {
    (((i % 251) * 31 + 7) % 251) as u8
}

const PIECE: usize = 64 * 1024;

/// The pattern from 0 to PIECE + 251: it repeats every 251 bytes, so any
/// piece is a zero-copy slice of it.
static PATTERN: LazyLock<Bytes> =
    LazyLock::new(|| (0..(PIECE + 251) as u64).map(pattern_byte).collect());

fn pattern(offset: u64, len: usize) -> Bytes {
    let start = (offset % 251) as usize;
    PATTERN.slice(start..start + len)
}

/// Cap of `/echo?buffer=1`.
const MAX_BUFFERED: usize = 256 * 1024 * 1024;

pub async fn serve<E: Exchange>(ex: &mut E, ctx: &Ctx, req: &ReqInfo) -> io::Result<()> {
    ctx.stats.request(req.proto);
    if ctx.verbose {
        eprintln!(
            "conn {} req {} {} {} {}",
            req.conn.id,
            req.count,
            req.proto.as_str(),
            req.method,
            req.target
        );
    }
    if ctx.roll_failure() {
        inc(&ctx.stats.injected_failures);
        drain(ex).await?;
        return text(
            ex,
            ctx.fail_status,
            "injected failure\n".into(),
            vec![("x-injected-failure".into(), Bytes::from_static(b"1"))],
        )
        .await;
    }
    if req.proto == Proto::H2 && is_grpc(req) {
        inc(&ctx.stats.requests_grpc);
        return grpc(ex, req).await;
    }
    match route(ex, ctx, req).await? {
        Ok(()) => Ok(()),
        Err(msg) => {
            drain(ex).await?;
            text(ex, 400, format!("{msg}\n"), vec![]).await
        }
    }
}

/// Unwraps a query parameter, or ends the route with a 400 carrying the
/// message (nothing has been sent yet when parameters are read).
macro_rules! param {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(msg) => return Ok(Err(msg)),
        }
    };
}

async fn route<E: Exchange>(
    ex: &mut E,
    ctx: &Ctx,
    req: &ReqInfo,
) -> io::Result<Result<(), String>> {
    let mut target = req.target.clone();
    loop {
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let q = Query::parse(query);
        // The last segment picks the behaviour, so a proxy that keeps a
        // route prefix (`/svc-a/echo`) still reaches it.
        match path.rsplit('/').next().unwrap_or("") {
            "echo" => echo(ex, req, q.flag("buffer"), q.flag("trailers")).await?,
            "headers" => headers(ex, ctx, req).await?,
            "bytes" => {
                let n = param!(q.need("n"));
                let len = if q.flag("chunked") {
                    Len::Unknown
                } else {
                    Len::Known(n)
                };
                drain(ex).await?;
                ex.head(200, octet_stream(), len).await?;
                send_pattern(ex, n).await?;
                ex.finish(vec![]).await?;
            }
            "status" => {
                let code = param!(q.need("code"));
                if !(200..=999).contains(&code) {
                    return Ok(Err(format!("bad code {code}: 200..=999")));
                }
                drain(ex).await?;
                text(ex, code as u16, format!("status {code}\n"), vec![]).await?;
            }
            "delay" => {
                let ms = param!(q.need("ms"));
                let then = q.then.clone();
                tokio::time::sleep(Duration::from_millis(ms)).await;
                if let Some(next) = then {
                    target = next;
                    continue;
                }
                drain(ex).await?;
                text(ex, 200, "ok\n".into(), vec![]).await?;
            }
            "reset" => {
                let after = param!(q.opt("after"));
                let len = param!(q.opt("len"));
                drain(ex).await?;
                inc(&ctx.stats.resets);
                if let Some(n) = after {
                    ex.head(200, octet_stream(), len.map_or(Len::Unknown, Len::Known))
                        .await?;
                    send_pattern(ex, n).await?;
                }
                ex.reset().await?;
            }
            "stall" => {
                let after = param!(q.opt("after"));
                let len = param!(q.opt("len"));
                drain(ex).await?;
                if let Some(n) = after {
                    ex.head(200, octet_stream(), len.map_or(Len::Unknown, Len::Known))
                        .await?;
                    send_pattern(ex, n).await?;
                }
                ex.wait_gone().await;
            }
            "close" => {
                drain(ex).await?;
                text(ex, 200, "closing\n".into(), vec![]).await?;
                ex.close_after();
            }
            _ => {
                drain(ex).await?;
                let body = format!("sluice-test-backend {}\n", ctx.name);
                text(ex, 200, body, vec![]).await?;
            }
        }
        return Ok(Ok(()));
    }
}

fn octet_stream() -> Headers {
    vec![(
        "content-type".into(),
        Bytes::from_static(b"application/octet-stream"),
    )]
}

/// Reads and drops the rest of the request body; returns its length.
async fn drain<E: Exchange>(ex: &mut E) -> io::Result<u64> {
    let mut n = 0;
    while let Some(c) = ex.body_chunk().await? {
        n += c.len() as u64;
    }
    Ok(n)
}

async fn text<E: Exchange>(
    ex: &mut E,
    status: u16,
    body: String,
    mut headers: Headers,
) -> io::Result<()> {
    if !headers.iter().any(|(n, _)| *n == "content-type") {
        headers.push(("content-type".into(), Bytes::from_static(b"text/plain")));
    }
    ex.head(status, headers, Len::Known(body.len() as u64))
        .await?;
    ex.data(Bytes::from(body)).await?;
    ex.finish(vec![]).await
}

async fn send_pattern<E: Exchange>(ex: &mut E, n: u64) -> io::Result<()> {
    let mut off = 0;
    while off < n {
        let len = (n - off).min(PIECE as u64) as usize;
        ex.data(pattern(off, len)).await?;
        off += len as u64;
    }
    Ok(())
}

async fn echo<E: Exchange>(
    ex: &mut E,
    req: &ReqInfo,
    buffer: bool,
    trailers: bool,
) -> io::Result<()> {
    let mut headers = Vec::new();
    if let Some(ct) = req.header("content-type") {
        headers.push(("content-type".into(), ct.clone()));
    }
    if buffer {
        // For clients (or proxies) that send the whole body before reading.
        let mut body = Vec::new();
        while let Some(c) = ex.body_chunk().await? {
            if body.len() + c.len() > MAX_BUFFERED {
                drain(ex).await?;
                return text(ex, 413, "body over 256 MiB\n".into(), vec![]).await;
            }
            body.extend_from_slice(&c);
        }
        let len = if trailers {
            Len::Unknown
        } else {
            Len::Known(body.len() as u64)
        };
        ex.head(200, headers, len).await?;
        ex.data(Bytes::from(body)).await?;
        let echoed = echoed_trailers(ex.trailers());
        return ex.finish(echoed).await;
    }
    // Full duplex: each piece goes back out before the next is read. The
    // first is read before the head so an `Expect: 100-continue` gets its
    // 100 (a final head first could keep the client from sending).
    let first = ex.body_chunk().await?;
    let len = match req.body_len {
        Some(n) if !trailers => Len::Known(n),
        _ => Len::Unknown,
    };
    ex.head(200, headers, len).await?;
    if let Some(c) = first {
        ex.data(c).await?;
        while let Some(c) = ex.body_chunk().await? {
            ex.data(c).await?;
        }
    }
    let echoed = echoed_trailers(ex.trailers());
    ex.finish(echoed).await
}

/// Prefix of the request trailers `/echo` sends back as response trailers.
const ECHO_TRAILER_PREFIX: &str = "x-echo-";

/// `/echo`'s response trailers: each request trailer as `x-echo-NAME`, so
/// they are visibly the request's and none can frame the response.
fn echoed_trailers(request: &[(String, Bytes)]) -> Headers {
    request
        .iter()
        .map(|(n, v)| (format!("{ECHO_TRAILER_PREFIX}{n}").into(), v.clone()))
        .collect()
}

/// Lowercased name -> list of values, in order.
fn fields_json(fields: &[(String, Bytes)]) -> serde_json::Map<String, serde_json::Value> {
    let mut map = serde_json::Map::new();
    for (name, value) in fields {
        let list = map
            .entry(name.clone())
            .or_insert_with(|| serde_json::Value::Array(Vec::new()));
        if let serde_json::Value::Array(list) = list {
            list.push(String::from_utf8_lossy(value).into_owned().into());
        }
    }
    map
}

async fn headers<E: Exchange>(ex: &mut E, ctx: &Ctx, req: &ReqInfo) -> io::Result<()> {
    let body_bytes = drain(ex).await?;
    let map = fields_json(&req.headers);
    let trailers = fields_json(ex.trailers());
    let doc = serde_json::json!({
        "backend": ctx.name,
        "method": req.method,
        "path": req.target,
        "version": req.proto.as_str(),
        "authority": req.authority,
        "scheme": req.scheme,
        "tls": req.conn.tls,
        "alpn": req.conn.alpn,
        "client_cert": req.conn.client_cert,
        "client_spiffe_id": req.conn.client_spiffe_id,
        "peer": req.conn.peer.to_string(),
        "local": req.conn.local.map(|a| a.to_string()),
        "conn_id": req.conn.id,
        "request_count": req.count,
        "body_bytes": body_bytes,
        "headers": map,
        "trailers": trailers,
    });
    let mut body = serde_json::to_string_pretty(&doc).unwrap_or_default();
    body.push('\n');
    text(
        ex,
        200,
        body,
        vec![(
            "content-type".into(),
            Bytes::from_static(b"application/json"),
        )],
    )
    .await
}

fn is_grpc(req: &ReqInfo) -> bool {
    req.target.starts_with("/grpc.")
        || req
            .header("content-type")
            .is_some_and(|ct| ct.starts_with(b"application/grpc"))
}

/// `grpc-timeout`: 1 to 8 digits and a unit (H M S m u n).
fn parse_grpc_timeout(v: &[u8]) -> Option<Duration> {
    let (unit, digits) = v.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// gRPC-shaped echo: the request's length-prefixed messages come back as
/// they are, then trailers. Request headers steer it: `x-grpc-status` /
/// `x-grpc-message` (trailers), `x-grpc-trailers-only: 1` (one HEADERS
/// frame, no body), `x-grpc-delay-ms` (wait first; if `grpc-timeout` is
/// shorter, answer DEADLINE_EXCEEDED when it runs out, as a server honouring
/// the deadline would). `grpc-timeout` as received is reported in
/// `x-received-grpc-timeout`.
async fn grpc<E: Exchange>(ex: &mut E, req: &ReqInfo) -> io::Result<()> {
    let ct = req
        .header("content-type")
        .cloned()
        .unwrap_or_else(|| Bytes::from_static(b"application/grpc"));
    let mut headers: Headers = vec![("content-type".into(), ct)];
    let timeout = req.header("grpc-timeout");
    if let Some(t) = timeout {
        headers.push(("x-received-grpc-timeout".into(), t.clone()));
    }
    let mut trailers: Headers = vec![(
        "grpc-status".into(),
        req.header("x-grpc-status")
            .cloned()
            .unwrap_or_else(|| Bytes::from_static(b"0")),
    )];
    if let Some(m) = req.header("x-grpc-message") {
        trailers.push(("grpc-message".into(), m.clone()));
    }
    let delay = req
        .header("x-grpc-delay-ms")
        .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse().ok())
        .map(Duration::from_millis);
    if let Some(delay) = delay {
        let budget = timeout.and_then(|t| parse_grpc_timeout(t));
        if let Some(budget) = budget.filter(|b| *b < delay) {
            tokio::time::sleep(budget).await;
            drain(ex).await?;
            headers.push(("grpc-status".into(), Bytes::from_static(b"4")));
            headers.push((
                "grpc-message".into(),
                Bytes::from_static(b"deadline exceeded"),
            ));
            return ex.head(200, headers, Len::Empty).await;
        }
        tokio::time::sleep(delay).await;
    }
    if req
        .header("x-grpc-trailers-only")
        .is_some_and(|v| v.as_ref() == b"1")
    {
        drain(ex).await?;
        headers.extend(trailers);
        return ex.head(200, headers, Len::Empty).await;
    }
    ex.head(200, headers, Len::Unknown).await?;
    while let Some(c) = ex.body_chunk().await? {
        ex.data(c).await?;
    }
    ex.finish(trailers).await
}

/// `a=1&b=2`, except that `then=` takes the rest of the query (so
/// `/delay?ms=5&then=/bytes?n=3&chunked=1` nests a whole target), percent-
/// decoded.
struct Query<'a> {
    pairs: Vec<(&'a str, &'a str)>,
    then: Option<String>,
}

impl<'a> Query<'a> {
    fn parse(mut rest: &'a str) -> Self {
        let mut pairs = Vec::new();
        let mut then = None;
        while !rest.is_empty() {
            if let Some(v) = rest.strip_prefix("then=") {
                then = Some(percent_decode(v));
                break;
            }
            let (seg, tail) = rest.split_once('&').unwrap_or((rest, ""));
            pairs.push(seg.split_once('=').unwrap_or((seg, "")));
            rest = tail;
        }
        Query { pairs, then }
    }

    fn get(&self, key: &str) -> Option<&'a str> {
        self.pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    fn opt(&self, key: &str) -> Result<Option<u64>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| format!("bad {key}={v}: want a number")),
        }
    }

    fn need(&self, key: &str) -> Result<u64, String> {
        self.opt(key)?.ok_or_else(|| format!("missing {key}="))
    }

    fn flag(&self, key: &str) -> bool {
        self.get(key).is_some_and(|v| v != "0" && v != "false")
    }
}

fn percent_decode(s: &str) -> String {
    fn hex(c: u8) -> Option<u8> {
        (c as char).to_digit(16).map(|d| d as u8)
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_then_takes_the_rest() {
        let q = Query::parse("ms=5&then=/bytes?n=3&chunked=1");
        assert_eq!(q.need("ms"), Ok(5));
        assert_eq!(q.then.as_deref(), Some("/bytes?n=3&chunked=1"));
        let q = Query::parse("ms=5&then=%2Fstatus%3Fcode%3D404");
        assert_eq!(q.then.as_deref(), Some("/status?code=404"));
        assert!(Query::parse("n=x").need("n").is_err());
        assert!(Query::parse("").need("n").is_err());
    }

    #[test]
    fn pattern_slices_match_the_formula() {
        for off in [0u64, 1, 250, 251, 1_000_003] {
            let p = pattern(off, 1000);
            for (j, b) in p.iter().enumerate() {
                let i = off + j as u64;
                assert_eq!(*b, ((i * 31 + 7) % 251) as u8);
            }
        }
    }

    #[test]
    fn grpc_timeouts() {
        assert_eq!(
            parse_grpc_timeout(b"100m"),
            Some(Duration::from_millis(100))
        );
        assert_eq!(parse_grpc_timeout(b"2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout(b"123456789m"), None);
        assert_eq!(parse_grpc_timeout(b"m"), None);
        assert_eq!(parse_grpc_timeout(b"10x"), None);
    }
}
