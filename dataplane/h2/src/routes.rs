//! The built-in routes (docs/http.md) over HTTP/2: routing, response heads,
//! and the body sources of the streamed responses.

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, CONTENT_LENGTH, CONTENT_TYPE, DATE, SERVER};
use http::{Response, StatusCode};
use sluice_app::LoopDate;

pub(crate) use sluice_app::routes::Route;
use sluice_app::routes::{PATTERN, PATTERN_LEN};

/// Largest `/bytes` chunk handed to the connection at once.
pub(crate) const MAX_CHUNK: usize = PATTERN_LEN - 250;

/// `len` bytes of the `/bytes` body from `offset` (`len <= MAX_CHUNK`).
pub(crate) fn pattern(offset: u64, len: usize) -> Bytes {
    let at = (offset % 251) as usize;
    Bytes::from_static(&PATTERN[at..at + len.min(MAX_CHUNK)])
}

/// The route of a request path (the query is already off).
pub(crate) fn route(path: &str, max_bytes: u64) -> Route {
    sluice_app::routes::route(path.as_bytes(), max_bytes)
}

/// A response head with the headers every response has.
pub(crate) fn head(
    status: u16,
    content_type: &'static str,
    content_length: Option<u64>,
    date: &LoopDate,
) -> Response<()> {
    let mut r = Response::new(());
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = r.headers_mut();
    h.insert(SERVER, HeaderValue::from_static("sluice"));
    if let Some(d) = date.get() {
        if let Ok(v) = HeaderValue::from_bytes(&d) {
            h.insert(DATE, v);
        }
    }
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Some(n) = content_length {
        h.insert(CONTENT_LENGTH, HeaderValue::from(n));
    }
    r
}

/// An error response: its head and its `text/plain` body.
pub(crate) fn error(
    status: u16,
    allow: Option<&'static str>,
    date: &LoopDate,
) -> (Response<()>, Bytes) {
    let body: &'static [u8] = match status {
        400 => b"400 Bad Request\n",
        404 => b"404 Not Found\n",
        405 => b"405 Method Not Allowed\n",
        // What the proxy answers for a backend it could not use.
        502 => b"502 Bad Gateway\n",
        503 => b"503 Service Unavailable\n",
        504 => b"504 Gateway Timeout\n",
        _ => b"500 Internal Server Error\n",
    };
    let mut r = head(status, "text/plain", Some(body.len() as u64), date);
    if let Some(a) = allow {
        r.headers_mut().insert(ALLOW, HeaderValue::from_static(a));
    }
    (r, Bytes::from_static(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("/health", 10), Route::Health);
        assert_eq!(route("/echo", 10), Route::Echo);
        assert_eq!(route("/bytes/10", 10), Route::Bytes(10));
        assert_eq!(route("/bytes/007", 10), Route::Bytes(7));
        assert_eq!(route("/bytes/11", 10), Route::BadBytes);
        assert_eq!(route("/bytes/", 10), Route::BadBytes);
        assert_eq!(route("/bytes/+1", 10), Route::BadBytes);
        assert_eq!(
            route("/bytes/99999999999999999999999", u64::MAX),
            Route::BadBytes
        );
        assert_eq!(route("/bytes", 10), Route::NotFound);
        assert_eq!(route("/", 10), Route::NotFound);
    }

    #[test]
    fn pattern_matches_bytes_pattern() {
        for off in [0u64, 1, 250, 251, 252, 1 << 40] {
            let b = pattern(off, MAX_CHUNK);
            assert_eq!(b.len(), MAX_CHUNK);
            for (i, &x) in b.iter().enumerate() {
                assert_eq!(x, sluice_http::bytes_pattern(off + i as u64));
            }
        }
    }
}
