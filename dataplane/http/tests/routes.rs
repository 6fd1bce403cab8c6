//! Byte-exact responses for every route and every error.

mod common;
use common::*;
use sluice_http::{ServerConfig, ServerConn};

fn ok(ctype: &str, len: usize, body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nServer: sluice\r\nDate: {DATE}\r\nContent-Type: {ctype}\r\nContent-Length: {len}\r\n\r\n{body}"
    )
}

/// An error response: always Content-Length and Connection: close.
fn err(status: u16, reason: &str, extra: &str, head: bool) -> String {
    let body = format!("{status} {reason}\n");
    format!(
        "HTTP/1.1 {status} {reason}\r\nServer: sluice\r\nDate: {DATE}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{}",
        body.len(),
        if head { "" } else { &body }
    )
}

/// Sends `req` in one piece and checks the exact response and whether the
/// connection then closes.
fn check(req: &str, want: &str, closes: bool) {
    let (out, conn) = exchange(req.as_bytes());
    assert_eq!(s(&out), want, "request {req:?}");
    assert_eq!(conn.should_close(), closes, "should_close after {req:?}");
    assert!(!conn.wants_write());
}

#[test]
fn health() {
    check(
        "GET /health HTTP/1.1\r\nHost: a\r\n\r\n",
        &ok("text/plain", 3, "ok\n"),
        false,
    );
    check(
        "HEAD /health HTTP/1.1\r\nHost: a\r\n\r\n",
        &ok("text/plain", 3, ""),
        false,
    );
    check(
        "GET /health?probe=1 HTTP/1.1\r\nHost: a\r\n\r\n",
        &ok("text/plain", 3, "ok\n"),
        false,
    );
    check(
        "GET http://example.com/health HTTP/1.1\r\nHost: example.com\r\n\r\n",
        &ok("text/plain", 3, "ok\n"),
        false,
    );
}

#[test]
fn bytes() {
    let (out, conn) = exchange(b"GET /bytes/300 HTTP/1.1\r\nHost: a\r\n\r\n");
    let mut want = ok("application/octet-stream", 300, "").into_bytes();
    want.extend_from_slice(&pattern(300));
    assert_eq!(out, want);
    assert!(conn.is_idle());
    check(
        "GET /bytes/0 HTTP/1.1\r\nHost: a\r\n\r\n",
        &ok("application/octet-stream", 0, ""),
        false,
    );
    check(
        "HEAD /bytes/1073741824 HTTP/1.1\r\nHost: a\r\n\r\n",
        &ok("application/octet-stream", 1073741824, ""),
        false,
    );
    check(
        "GET /bytes/17179869185 HTTP/1.1\r\nHost: a\r\n\r\n",
        &err(400, "Bad Request", "", false),
        true,
    );
    check(
        "GET /bytes/12a HTTP/1.1\r\nHost: a\r\n\r\n",
        &err(400, "Bad Request", "", false),
        true,
    );
    check(
        "HEAD /bytes/x HTTP/1.1\r\nHost: a\r\n\r\n",
        &err(400, "Bad Request", "", true),
        true,
    );
}

#[test]
fn bytes_limit_is_configurable() {
    let c = ServerConfig {
        max_bytes_route: 10,
        ..cfg()
    };
    let mut conn = ServerConn::new(&c);
    let out = drive(
        &mut conn,
        b"GET /bytes/10 HTTP/1.1\r\nHost: a\r\n\r\nGET /bytes/11 HTTP/1.1\r\nHost: a\r\n\r\n",
        &[],
        4096,
        false,
    );
    let mut want = ok("application/octet-stream", 10, "").into_bytes();
    want.extend_from_slice(&pattern(10));
    want.extend_from_slice(err(400, "Bad Request", "", false).as_bytes());
    assert_eq!(s(&out), s(&want));
    assert!(conn.should_close());
}

#[test]
fn echo_content_length() {
    check(
        "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world",
        &ok("application/octet-stream", 11, "hello world"),
        false,
    );
    check(
        "POST /echo HTTP/1.1\r\nHost: a\r\n\r\n",
        &ok("application/octet-stream", 0, ""),
        false,
    );
    check(
        "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
        &ok("application/octet-stream", 0, ""),
        false,
    );
}

#[test]
fn echo_chunked() {
    let te = "HTTP/1.1 200 OK\r\nServer: sluice\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
    check(
        "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
        &format!("{te}b\r\nhello world\r\n0\r\n\r\n"),
        false,
    );
    check(
        "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        &format!("{te}0\r\n\r\n"),
        false,
    );
    // Pieces as they arrive become chunks as they go out.
    let mut conn = ServerConn::new(&cfg());
    let req = b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    let split = req.len() - 18;
    let out = drive(&mut conn, req, &[split], 4096, false);
    assert_eq!(
        s(&out),
        format!("{te}5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    );
}

#[test]
fn chunked_errors() {
    // Before any data: a clean 400.
    check(
        "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        &err(400, "Bad Request", "", false),
        true,
    );
    check(
        "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\n",
        &err(400, "Bad Request", "", false),
        true,
    );
    // After the response started: cut short, connection closes.
    let (out, conn) = exchange(
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n",
    );
    assert!(
        s(&out).ends_with("Transfer-Encoding: chunked\r\n\r\n"),
        "{}",
        s(&out)
    );
    assert!(conn.should_close());
    assert_eq!(conn.stats().aborted, 1);
}

#[test]
fn expect_continue() {
    check(
        "POST /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
        &format!(
            "HTTP/1.1 100 Continue\r\n\r\n{}",
            ok("application/octet-stream", 2, "hi")
        ),
        false,
    );
    // The 100 goes out before the body arrives.
    let mut conn = ServerConn::new(&cfg());
    let out = drive(
        &mut conn,
        b"POST /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
        &[],
        4096,
        false,
    );
    assert_eq!(s(&out), "HTTP/1.1 100 Continue\r\n\r\n");
    // Over the body limit: 413, no 100.
    let c = ServerConfig {
        max_body_bytes: Some(1),
        ..cfg()
    };
    let mut conn = ServerConn::new(&c);
    let out = drive(
        &mut conn,
        b"POST /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
        &[],
        4096,
        false,
    );
    assert_eq!(s(&out), err(413, "Content Too Large", "", false));
    assert!(conn.should_close());
    check(
        "POST /echo HTTP/1.1\r\nHost: a\r\nExpect: something\r\nContent-Length: 2\r\n\r\nhi",
        &err(417, "Expectation Failed", "", false),
        true,
    );
}

#[test]
fn chunked_echo_over_limit() {
    let c = ServerConfig {
        max_body_bytes: Some(4),
        ..cfg()
    };
    let mut conn = ServerConn::new(&c);
    let out = drive(
        &mut conn,
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        &[],
        4096,
        false,
    );
    assert_eq!(s(&out), err(413, "Content Too Large", "", false));
    assert!(conn.should_close());
}

#[test]
fn not_found_and_method_not_allowed() {
    check(
        "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        &err(404, "Not Found", "", false),
        true,
    );
    check(
        "HEAD /nope HTTP/1.1\r\nHost: a\r\n\r\n",
        &err(404, "Not Found", "", true),
        true,
    );
    check(
        "POST /health HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
        &err(405, "Method Not Allowed", "Allow: GET, HEAD\r\n", false),
        true,
    );
    check(
        "DELETE /bytes/5 HTTP/1.1\r\nHost: a\r\n\r\n",
        &err(405, "Method Not Allowed", "Allow: GET, HEAD\r\n", false),
        true,
    );
    check(
        "GET /echo HTTP/1.1\r\nHost: a\r\n\r\n",
        &err(405, "Method Not Allowed", "Allow: POST\r\n", false),
        true,
    );
    check(
        "HEAD /echo HTTP/1.1\r\nHost: a\r\n\r\n",
        &err(405, "Method Not Allowed", "Allow: POST\r\n", true),
        true,
    );
}

#[test]
fn malformed_and_framing_errors() {
    let bad = err(400, "Bad Request", "", false);
    for req in [
        "garbage\r\n\r\n",
        "GET / HTTP/1.1\r\n\r\n",
        "GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "GET /health HTTP/1.1\r\nHost : a\r\n\r\n",
        "GET /health HTTP/1.1\r\nHost: a\r\n folded: x\r\n\r\n",
        "GET  /health HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /health HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "GET /health HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
        "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
        "POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        "\x16\x03\x01\x02\x00\x01\x00\x01\x7c\x03\x03",
    ] {
        let (out, conn) = exchange(req.as_bytes());
        assert_eq!(s(&out), bad, "request {req:?}");
        assert!(conn.should_close());
        assert_eq!(conn.stats().bad_requests, 1, "{req:?}");
    }
    check(
        "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        &err(501, "Not Implemented", "", false),
        true,
    );
    check(
        "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
        &err(501, "Not Implemented", "", false),
        true,
    );
    check(
        "GET /health HTTP/1.2\r\nHost: a\r\n\r\n",
        &err(505, "HTTP Version Not Supported", "", false),
        true,
    );
}

#[test]
fn limits() {
    // Request line too long.
    let long = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(9000));
    check(&long, &err(414, "URI Too Long", "", false), true);
    // ...also detected before the line ends.
    let (out, _) = exchange(format!("GET /{}", "a".repeat(9000)).as_bytes());
    assert_eq!(s(&out), err(414, "URI Too Long", "", false));
    // Header section too large, in one piece and in pieces.
    let big = format!(
        "GET /health HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
        "b".repeat(17000)
    );
    check(
        &big,
        &err(431, "Request Header Fields Too Large", "", false),
        true,
    );
    let mut conn = ServerConn::new(&cfg());
    let splits: Vec<usize> = (1..big.len()).step_by(1000).collect();
    let out = drive(&mut conn, big.as_bytes(), &splits, 4096, false);
    assert_eq!(
        s(&out),
        err(431, "Request Header Fields Too Large", "", false)
    );
    // Too many header fields.
    let mut many = String::from("GET /health HTTP/1.1\r\nHost: a\r\n");
    for i in 0..64 {
        many.push_str(&format!("X-{i}: v\r\n"));
    }
    many.push_str("\r\n");
    check(
        &many,
        &err(431, "Request Header Fields Too Large", "", false),
        true,
    );
    // Exactly at the limits: fine.
    let mut fits = String::from("GET /health HTTP/1.1\r\nHost: a\r\n");
    for i in 0..63 {
        fits.push_str(&format!("X-{i}: v\r\n"));
    }
    fits.push_str("\r\n");
    check(&fits, &ok("text/plain", 3, "ok\n"), false);
    let c = ServerConfig {
        max_header_bytes: 100,
        ..cfg()
    };
    let req = format!(
        "GET /health HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
        "v".repeat(100 - 38)
    );
    assert_eq!(req.len(), 100);
    let mut conn = ServerConn::new(&c);
    assert_eq!(
        s(&drive(&mut conn, req.as_bytes(), &[], 4096, false)),
        ok("text/plain", 3, "ok\n")
    );
    let req = format!(
        "GET /health HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
        "v".repeat(101 - 38)
    );
    let mut conn = ServerConn::new(&c);
    assert_eq!(
        s(&drive(&mut conn, req.as_bytes(), &[], 4096, false)),
        err(431, "Request Header Fields Too Large", "", false)
    );
}

#[test]
fn persistence() {
    check(
        "GET /health HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        &{
            let mut r = ok("text/plain", 3, "ok\n");
            r = r.replace(
                "Content-Length: 3\r\n",
                "Content-Length: 3\r\nConnection: close\r\n",
            );
            r
        },
        true,
    );
    check(
        "GET /health HTTP/1.0\r\n\r\n",
        &ok("text/plain", 3, "ok\n").replace(
            "Content-Length: 3\r\n",
            "Content-Length: 3\r\nConnection: close\r\n",
        ),
        true,
    );
    check(
        "GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        &ok("text/plain", 3, "ok\n").replace(
            "Content-Length: 3\r\n",
            "Content-Length: 3\r\nConnection: keep-alive\r\n",
        ),
        false,
    );
    check(
        "POST /echo HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nhi",
        &ok("application/octet-stream", 2, "hi").replace(
            "Content-Length: 2\r\n",
            "Content-Length: 2\r\nConnection: keep-alive\r\n",
        ),
        false,
    );
    check(
        "POST /echo HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi",
        &ok("application/octet-stream", 2, "hi").replace(
            "Content-Length: 2\r\n",
            "Content-Length: 2\r\nConnection: close\r\n",
        ),
        true,
    );
    // Input after Connection: close is dropped.
    let (out, conn) = exchange(b"GET /health HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /health HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(out.windows(6).filter(|w| w == b"200 OK").count(), 1);
    assert!(conn.should_close());
    assert_eq!(conn.stats().requests, 1);
}

#[test]
fn no_server_or_date_header_when_unset() {
    let c = ServerConfig {
        server_name: "".into(),
        ..ServerConfig::default()
    };
    let mut conn = ServerConn::new(&c);
    let out = drive(
        &mut conn,
        b"GET /health HTTP/1.1\r\nHost: a\r\n\r\n",
        &[],
        4096,
        false,
    );
    assert_eq!(
        s(&out),
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n"
    );
}

#[test]
fn empty_lines_before_request_are_ignored() {
    check(
        "\r\n\r\nGET /health HTTP/1.1\r\nHost: a\r\n\r\n",
        &ok("text/plain", 3, "ok\n"),
        false,
    );
}

#[test]
fn eof_and_timeout() {
    // Half-close after a complete request: answered, then close.
    let mut conn = ServerConn::new(&cfg());
    let out = drive(
        &mut conn,
        b"GET /health HTTP/1.1\r\nHost: a\r\n\r\n",
        &[],
        4096,
        true,
    );
    assert_eq!(s(&out), ok("text/plain", 3, "ok\n"));
    assert!(conn.should_close());
    // A partial request at EOF: dropped.
    let mut conn = ServerConn::new(&cfg());
    let out = drive(&mut conn, b"GET /health HTTP/1.1\r\nHo", &[], 4096, true);
    assert!(out.is_empty());
    assert!(conn.should_close());
    // EOF in an echo body: cut short.
    let mut conn = ServerConn::new(&cfg());
    let out = drive(
        &mut conn,
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nhello",
        &[],
        4096,
        true,
    );
    assert_eq!(s(&out), ok("application/octet-stream", 10, "hello"));
    assert!(conn.should_close());
    assert_eq!(conn.stats().aborted, 1);
    // Timeout in a head: 408.
    let mut conn = ServerConn::new(&cfg());
    drive(&mut conn, b"GET /health HT", &[], 4096, false);
    assert!(!conn.is_idle());
    conn.on_timeout();
    let out = drive(&mut conn, b"", &[], 4096, false);
    assert_eq!(s(&out), err(408, "Request Timeout", "", false));
    assert!(conn.should_close());
    // Timeout when idle: just close.
    let mut conn = ServerConn::new(&cfg());
    assert!(conn.is_idle());
    conn.on_timeout();
    assert!(conn.should_close());
}

#[test]
fn stats_count_requests_and_classes() {
    let mut conn = ServerConn::new(&cfg());
    drive(
        &mut conn,
        b"GET /health HTTP/1.1\r\nHost: a\r\n\r\nPOST /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nxGET /x HTTP/1.1\r\nHost: a\r\n\r\n",
        &[],
        4096,
        false,
    );
    let st = *conn.stats();
    assert_eq!(st.requests, 3);
    assert_eq!(
        (st.status_1xx, st.status_2xx, st.status_4xx, st.status_5xx),
        (1, 2, 1, 0)
    );
    assert_eq!(st.responses(), 4);
    assert_eq!(st.body_bytes_in, 1);
    assert_eq!(st.bad_requests, 0);
    let total: sluice_http::Stats = [st, st].into_iter().sum();
    assert_eq!(total.requests, 6);
    assert_eq!(conn.take_stats(), st);
    assert_eq!(conn.stats().requests, 0);
}

#[test]
fn config_is_send_and_sync() {
    // One configuration serves every loop; a connection stays on its loop
    // (it shares the loop's Date value, so it is deliberately not Send).
    fn check<T: Send + Sync>() {}
    check::<ServerConfig>();
}
