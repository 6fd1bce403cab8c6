//! Request heads: httparse for the syntax, then the HTTP/1.1 semantics this
//! server needs (framing per RFC 9112 §6, connection persistence, routing).

use std::mem::MaybeUninit;

use crate::config::{Limits, MAX_HEADERS_CAP};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Head,
    Post,
    Other,
}

pub(crate) use sluice_app::routes::{parse_decimal, Route};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyKind {
    None,
    Length(u64),
    Chunked,
}

/// What the connection needs to know about a well-formed request head.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Head {
    pub method: Method,
    pub route: Route,
    pub http10: bool,
    pub keep_alive: bool,
    pub body: BodyKind,
    pub expect_continue: bool,
}

/// Outcome of parsing the bytes buffered for a head.
#[derive(Debug)]
pub(crate) enum Parsed {
    /// More bytes are needed.
    Partial,
    /// A complete head of this many bytes: the request, or the status that
    /// refuses it.
    Complete(usize, Result<Head, u16>),
    /// Not HTTP/1.x: refuse with this status.
    Invalid(u16),
}

/// Parses the head at the start of `buf` (no empty lines before it).
pub(crate) fn parse(buf: &[u8], lim: &Limits) -> Parsed {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS_CAP];
    let mut req = httparse::Request::new(&mut []);
    match req.parse_with_uninit_headers(buf, &mut slots[..lim.max_headers]) {
        Ok(httparse::Status::Complete(n)) => {
            let line = buf.iter().position(|&b| b == b'\n').unwrap_or(n);
            if line > lim.max_request_line_bytes {
                return Parsed::Complete(n, Err(414));
            }
            Parsed::Complete(n, analyze(&req, lim))
        }
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => Parsed::Invalid(431),
        Err(httparse::Error::Version) if version_looks_http(buf) => Parsed::Invalid(505),
        Err(_) => Parsed::Invalid(400),
    }
}

/// `METHOD SP target SP HTTP/d.d` with an unsupported version.
fn version_looks_http(buf: &[u8]) -> bool {
    let line = buf
        .split(|&b| b == b'\r' || b == b'\n')
        .next()
        .unwrap_or(buf);
    let mut parts = line.split(|&b| b == b' ');
    let (_, _, v) = (parts.next(), parts.next(), parts.next());
    matches!(v, Some([b'H', b'T', b'T', b'P', b'/', a, b'.', b]) if a.is_ascii_digit() && b.is_ascii_digit())
        && parts.next().is_none()
}

/// Items of a comma-separated header list, OWS trimmed, empty items skipped.
fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(|s| s.trim_ascii())
        .filter(|s| !s.is_empty())
}

fn analyze(req: &httparse::Request<'_, '_>, lim: &Limits) -> Result<Head, u16> {
    let http10 = req.version == Some(0);
    let mut content_length: Option<u64> = None;
    let mut te_present = false;
    let mut te_chunked = 0u32;
    let mut te_other = false;
    let mut conn_close = false;
    let mut conn_keep_alive = false;
    let mut expect_continue = false;
    let mut expect_other = false;
    let mut hosts = 0u32;
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            // RFC 9110 §8.6: a list of identical values may be taken as one;
            // differing values (in one field or several) are an error.
            let mut any = false;
            for item in h.value.split(|&b| b == b',') {
                let v = parse_decimal(item.trim_ascii()).ok_or(400u16)?;
                if content_length.is_some_and(|c| c != v) {
                    return Err(400);
                }
                content_length = Some(v);
                any = true;
            }
            if !any {
                return Err(400);
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            te_present = true;
            for item in list_items(h.value) {
                if item.eq_ignore_ascii_case(b"chunked") {
                    te_chunked += 1;
                } else {
                    te_other = true;
                }
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            for item in list_items(h.value) {
                if item.eq_ignore_ascii_case(b"close") {
                    conn_close = true;
                } else if item.eq_ignore_ascii_case(b"keep-alive") {
                    conn_keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case(b"expect") {
            if h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue") {
                expect_continue = true;
            } else {
                expect_other = true;
            }
        } else if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
        }
    }
    // RFC 9112 §3.2: exactly one Host in HTTP/1.1, at most one otherwise.
    if hosts > 1 || (!http10 && hosts == 0) {
        return Err(400);
    }
    let body = if te_present {
        // RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0, or with
        // Content-Length, means faulty framing (request smuggling).
        if http10 || content_length.is_some() {
            return Err(400);
        }
        if te_other {
            return Err(501);
        }
        if te_chunked != 1 {
            return Err(400);
        }
        BodyKind::Chunked
    } else {
        match content_length {
            None | Some(0) => BodyKind::None,
            Some(n) => BodyKind::Length(n),
        }
    };
    // RFC 9110 §10.1.1: a 100-continue in an HTTP/1.0 request is ignored.
    if !http10 && expect_other {
        return Err(417);
    }
    let method = match req.method.unwrap_or("") {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        _ => Method::Other,
    };
    Ok(Head {
        method,
        route: route(req.path.unwrap_or("").as_bytes(), lim),
        http10,
        keep_alive: !conn_close && (!http10 || conn_keep_alive),
        body,
        expect_continue: expect_continue && !http10,
    })
}

/// The route of a request target (origin-form or absolute-form; the query
/// is ignored).
fn route(target: &[u8], lim: &Limits) -> Route {
    let mut path = target;
    for scheme in [&b"http://"[..], b"https://"] {
        if path.len() >= scheme.len() && path[..scheme.len()].eq_ignore_ascii_case(scheme) {
            let rest = &path[scheme.len()..];
            path = match rest.iter().position(|&b| b == b'/') {
                Some(i) => &rest[i..],
                None => b"/",
            };
            break;
        }
    }
    if let Some(q) = path.iter().position(|&b| b == b'?') {
        path = &path[..q];
    }
    sluice_app::routes::route(path, lim.max_bytes_route)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ServerConfig;

    fn head(s: &str) -> Result<Head, u16> {
        match parse(s.as_bytes(), &ServerConfig::default().limits()) {
            Parsed::Complete(n, h) => {
                assert_eq!(n, s.len());
                h
            }
            Parsed::Invalid(st) => Err(st),
            Parsed::Partial => panic!("partial: {s:?}"),
        }
    }

    #[test]
    fn routes() {
        let lim = ServerConfig::default().limits();
        assert_eq!(route(b"/health", &lim), Route::Health);
        assert_eq!(route(b"/health?x=1", &lim), Route::Health);
        assert_eq!(route(b"http://a.b:80/echo", &lim), Route::Echo);
        assert_eq!(route(b"HTTP://a.b", &lim), Route::NotFound);
        assert_eq!(route(b"/bytes/0", &lim), Route::Bytes(0));
        assert_eq!(route(b"/bytes/007", &lim), Route::Bytes(7));
        assert_eq!(route(b"/bytes/17179869184", &lim), Route::Bytes(16 << 30));
        assert_eq!(route(b"/bytes/17179869185", &lim), Route::BadBytes);
        assert_eq!(
            route(b"/bytes/99999999999999999999999", &lim),
            Route::BadBytes
        );
        assert_eq!(route(b"/bytes/+1", &lim), Route::BadBytes);
        assert_eq!(route(b"/bytes/", &lim), Route::BadBytes);
        assert_eq!(route(b"/bytes", &lim), Route::NotFound);
        assert_eq!(route(b"/health/", &lim), Route::NotFound);
        assert_eq!(route(b"*", &lim), Route::NotFound);
    }

    #[test]
    fn framing() {
        let h = head(
            "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\n",
        )
        .unwrap();
        assert_eq!(h.body, BodyKind::Length(5));
        assert_eq!(
            head(
                "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"
            )
            .unwrap_err(),
            400
        );
        assert_eq!(
            head("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n").unwrap_err(),
            400
        );
        assert_eq!(
            head("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n").unwrap_err(),
            400
        );
        assert_eq!(
            head("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n").unwrap_err(),
            400
        );
        assert_eq!(
            head("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n")
                .unwrap_err(),
            400
        );
        let h =
            head("POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ChUnKeD\r\n\r\n").unwrap();
        assert_eq!(h.body, BodyKind::Chunked);
        assert_eq!(head("POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n").unwrap_err(), 400);
        assert_eq!(
            head("POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n")
                .unwrap_err(),
            501
        );
        assert_eq!(
            head("POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n").unwrap_err(),
            501
        );
        assert_eq!(head("POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap_err(), 400);
        assert_eq!(
            head("POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\n\r\n").unwrap_err(),
            400
        );
        assert_eq!(
            head("POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap_err(),
            400
        );
        assert_eq!(head("GET / HTTP/1.1\r\n\r\n").unwrap_err(), 400);
        assert_eq!(
            head("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n").unwrap_err(),
            400
        );
        assert_eq!(
            head("GET / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n").unwrap_err(),
            417
        );
        assert_eq!(head("GET / HTTP/1.2\r\nHost: a\r\n\r\n").unwrap_err(), 505);
        assert_eq!(head("GET / HTTP/2.0\r\nHost: a\r\n\r\n").unwrap_err(), 505);
        assert_eq!(head("GET / FOO/1.1\r\nHost: a\r\n\r\n").unwrap_err(), 400);
        assert_eq!(head("GET  / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap_err(), 400);
        assert_eq!(head("GET / HTTP/1.1\r\nHost : a\r\n\r\n").unwrap_err(), 400);
        assert_eq!(
            head("GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n").unwrap_err(),
            400
        );
    }

    #[test]
    fn persistence() {
        assert!(
            head("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
                .unwrap()
                .keep_alive
        );
        assert!(
            !head("GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, Close\r\n\r\n")
                .unwrap()
                .keep_alive
        );
        assert!(!head("GET / HTTP/1.0\r\n\r\n").unwrap().keep_alive);
        assert!(
            head("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                .unwrap()
                .keep_alive
        );
        let h = head(
            "POST /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n",
        )
        .unwrap();
        assert!(h.expect_continue);
        assert!(
            !head("POST /echo HTTP/1.0\r\nExpect: 100-continue\r\n\r\n")
                .unwrap()
                .expect_continue
        );
    }
}
