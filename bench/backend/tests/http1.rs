//! HTTP/1.1 behaviours, driven by the hand-written client in common/.

mod common;

use std::io::{ErrorKind, Write};
use std::time::{Duration, Instant};

use common::{noise, pattern, Backend, H1};

#[test]
fn default_response_carries_backend_count_and_conn_id() {
    let b = Backend::start(&["--name", "alpha"]);
    let mut c = H1::connect(b.addr());
    let r = c.get("/anything");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "sluice-test-backend alpha\n");
    assert_eq!(r.header("x-backend"), Some("alpha"));
    assert_eq!(r.header("x-request-count"), Some("1"));
    assert!(r.header("x-conn-id").is_some());
    assert_eq!(r.header("connection"), None);
}

#[test]
fn keep_alive_counts_requests_per_connection() {
    let b = Backend::start(&[]);
    let mut c = H1::connect(b.addr());
    let first = c.get("/");
    let conn_id = first.header("x-conn-id").unwrap().to_string();
    for k in 2..=4 {
        let r = c.get("/");
        assert_eq!(r.header("x-request-count"), Some(k.to_string().as_str()));
        assert_eq!(r.header("x-conn-id"), Some(conn_id.as_str()));
    }
    let mut other = H1::connect(b.addr());
    let r = other.get("/");
    assert_eq!(r.header("x-request-count"), Some("1"));
    assert_ne!(r.header("x-conn-id"), Some(conn_id.as_str()));
}

#[test]
fn echo_5mb_content_length_is_byte_exact() {
    let b = Backend::start(&[]);
    let mut c = H1::connect(b.addr());
    let body = noise(5 * 1024 * 1024);
    // A writer thread: the echo is full duplex, so the client reads while
    // it sends (socket buffers alone would not hold 5 MB each way).
    let mut w = c.stream.try_clone().unwrap();
    let mut req = H1::head_bytes(
        "POST",
        "/echo",
        &[("content-type", "application/x-test")],
        Some(body.len()),
    );
    req.extend_from_slice(&body);
    let writer = std::thread::spawn(move || w.write_all(&req).unwrap());
    let r = c.read_response(false).unwrap();
    writer.join().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-length"),
        Some(body.len().to_string().as_str())
    );
    assert_eq!(r.header("content-type"), Some("application/x-test"));
    assert!(r.body == body, "echoed body differs");
    // And the connection is still good.
    assert_eq!(c.get("/").header("x-request-count"), Some("2"));
}

#[test]
fn echo_chunked_request_comes_back_chunked() {
    let b = Backend::start(&[]);
    let mut c = H1::connect(b.addr());
    let body = noise(300_000);
    let mut req = b"POST /echo HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for piece in body.chunks(70_001) {
        req.extend_from_slice(format!("{:x};ext=1\r\n", piece.len()).as_bytes());
        req.extend_from_slice(piece);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\nx-trailer: yes\r\n\r\n");
    let mut w = c.stream.try_clone().unwrap();
    let writer = std::thread::spawn(move || w.write_all(&req).unwrap());
    let r = c.read_response(false).unwrap();
    writer.join().unwrap();
    assert!(r.chunked);
    assert!(r.body == body);
    // The request's trailers come back as the response's, prefixed.
    assert_eq!(r.trailers, [("x-echo-x-trailer".into(), "yes".into())]);
    assert_eq!(c.get("/").header("x-request-count"), Some("2"));
}

#[test]
fn echo_returns_request_trailers_prefixed() {
    let b = Backend::start(&[]);
    let mut c = H1::connect(b.addr());
    // Names lowercased, values trimmed, repeats and order kept, a line that
    // is no field dropped; an empty body may still have trailers.
    for body in [&b"hello"[..], b""] {
        let mut req =
            b"POST /echo HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
        if !body.is_empty() {
            req.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
            req.extend_from_slice(body);
            req.extend_from_slice(b"\r\n");
        }
        req.extend_from_slice(
            b"0\r\nX-Sum:  5 \r\nno colon here\r\nx-sum: 6\r\nContent-Length: 99\r\n\r\n",
        );
        c.stream.write_all(&req).unwrap();
        let r = c.read_response(false).unwrap();
        assert_eq!(r.status, 200);
        assert!(r.chunked);
        assert_eq!(r.body, body);
        let want: Vec<(String, String)> = [
            ("x-echo-x-sum", "5"),
            ("x-echo-x-sum", "6"),
            ("x-echo-content-length", "99"),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
        assert_eq!(r.trailers, want);
    }
    // Without trailers: none come back; ?trailers=1 answers a
    // Content-Length request chunked (its body could carry none).
    let r = c.request("POST", "/echo?trailers=1", &[], b"abc");
    assert!(r.chunked);
    assert_eq!(r.body, b"abc");
    assert!(r.trailers.is_empty());
    assert_eq!(r.header("content-length"), None);
    // /headers reports them.
    let req = b"POST /headers HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nx-sum: 3\r\n\r\n";
    c.stream.write_all(req).unwrap();
    let j = c.read_response(false).unwrap().json();
    assert_eq!(j["trailers"], serde_json::json!({"x-sum": ["3"]}));
    assert_eq!(j["body_bytes"], 3);
    assert_eq!(c.get("/headers").json()["trailers"], serde_json::json!({}));
}

#[test]
fn echo_buffered_and_expect_100_continue() {
    let b = Backend::start(&[]);
    let mut c = H1::connect(b.addr());
    let body = noise(100_000);
    let head = H1::head_bytes(
        "POST",
        "/echo?buffer=1",
        &[("expect", "100-continue")],
        Some(body.len()),
    );
    c.stream.write_all(&head).unwrap();
    let (status, _) = c.read_head().unwrap();
    assert_eq!(status, 100);
    c.stream.write_all(&body).unwrap();
    let r = c.read_response(false).unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body == body);
}

#[test]
fn headers_json_reports_what_arrived() {
    let b = Backend::start(&[]);
    let mut c = H1::connect(b.addr());
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = c.request(
        "POST",
        "/headers?x=1",
        &[
            ("X-Forwarded-For", "10.0.0.1"),
            ("x-forwarded-for", "10.0.0.2"),
            ("traceparent", tp),
            ("X-Request-Id", "abc-123"),
        ],
        b"12345",
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    let j = r.json();
    assert_eq!(j["method"], "POST");
    assert_eq!(j["path"], "/headers?x=1");
    assert_eq!(j["version"], "http/1.1");
    assert_eq!(j["backend"], "test");
    assert_eq!(j["body_bytes"], 5);
    assert_eq!(j["tls"], false);
    let h = &j["headers"];
    assert_eq!(
        h["x-forwarded-for"],
        serde_json::json!(["10.0.0.1", "10.0.0.2"])
    );
    assert_eq!(h["traceparent"], serde_json::json!([tp]));
    assert_eq!(h["x-request-id"], serde_json::json!(["abc-123"]));
    assert_eq!(h["host"], serde_json::json!(["test"]));
}

#[test]
fn bytes_pattern_content_length_chunked_and_head() {
    let b = Backend::start(&[]);
    let mut c = H1::connect(b.addr());
    let n = 1_000_003;
    let r = c.get(&format!("/bytes?n={n}"));
    assert_eq!(r.header("content-length"), Some(n.to_string().as_str()));
    assert!(r.body == pattern(n));
    let r = c.get("/bytes?n=70000&chunked=1");
    assert!(r.chunked);
    assert!(r.body == pattern(70000));
    let r = c.request("HEAD", "/bytes?n=100", &[], b"");
    assert_eq!(r.header("content-length"), Some("100"));
    assert!(r.body.is_empty());
    let r = c.get("/bytes?n=0");
    assert!(r.body.is_empty());
    assert_eq!(r.header("x-request-count"), Some("4"));
    assert_eq!(c.get("/bytes").status, 400);
}

#[test]
fn status_codes() {
    let b = Backend::start(&[]);
    let mut c = H1::connect(b.addr());
    let r = c.get("/status?code=503");
    assert_eq!(r.status, 503);
    assert_eq!(r.text(), "status 503\n");
    let r = c.get("/status?code=204");
    assert_eq!(r.status, 204);
    assert_eq!(r.header("content-length"), None);
    // The bodiless 204 left the connection usable.
    assert_eq!(c.get("/status?code=404").status, 404);
    assert_eq!(c.get("/status?code=99").status, 400);
    assert_eq!(c.get("/status?code=x").status, 400);
}

#[test]
fn delay_and_delay_then() {
    let b = Backend::start(&[]);
    let mut c = H1::connect(b.addr());
    let t = Instant::now();
    let r = c.get("/delay?ms=300");
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "ok\n");
    let t = Instant::now();
    let r = c.get("/delay?ms=200&then=/bytes?n=10&chunked=1");
    assert!(t.elapsed() >= Duration::from_millis(200));
    assert!(r.chunked);
    assert_eq!(r.body, pattern(10));
    let r = c.get("/delay?ms=1&then=%2Fstatus%3Fcode%3D418");
    assert_eq!(r.status, 418);
    // Only the last path segment counts: route prefixes are fine.
    assert_eq!(c.get("/svc-a/v1/status?code=410").status, 410);
    assert_eq!(c.get("/status/more").text(), "sluice-test-backend test\n");
}

#[test]
fn reset_is_econnreset() {
    let b = Backend::start(&[]);
    let mut c = H1::connect(b.addr());
    c.send("POST", "/reset", &[], b"some body");
    let err = c.read_response(false).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
}

#[test]
fn reset_after_n_bytes() {
    let b = Backend::start(&[]);
    let mut c = H1::connect(b.addr());
    c.send("GET", "/reset?after=1000&len=5000", &[], b"");
    let (status, headers) = c.read_head().unwrap();
    assert_eq!(status, 200);
    assert!(headers.contains(&("content-length".into(), "5000".into())));
    let (body, res) = c.read_to_end();
    assert_eq!(res.unwrap_err().kind(), ErrorKind::ConnectionReset);
    // The backend waits for the bytes to be acknowledged before the RST.
    assert_eq!(body, pattern(1000));
}

#[test]
fn stall_never_answers() {
    let b = Backend::start(&[]);
    let mut c = H1::connect(b.addr());
    c.stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    c.send("GET", "/stall", &[], b"");
    let err = c.read_response(false).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{err}"
    );

    let mut c = H1::connect(b.addr());
    c.send("GET", "/stall?after=10", &[], b"");
    let (status, headers) = c.read_head().unwrap();
    assert_eq!(status, 200);
    assert!(headers.contains(&("transfer-encoding".into(), "chunked".into())));
    c.stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let (got, res) = c.read_to_end();
    assert!(matches!(
        res.unwrap_err().kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut
    ));
    let mut want = b"a\r\n".to_vec();
    want.extend(pattern(10));
    want.extend(b"\r\n");
    assert_eq!(got, want);
}

#[test]
fn close_responds_then_closes_without_saying_so() {
    let b = Backend::start(&[]);
    let mut c = H1::connect(b.addr());
    let r = c.get("/close");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), None);
    assert!(c.closed_within(Duration::from_secs(5)));
}

#[test]
fn max_requests_per_conn() {
    let b = Backend::start(&["--max-requests-per-conn", "2"]);
    let mut c = H1::connect(b.addr());
    assert_eq!(c.get("/").header("connection"), None);
    assert_eq!(c.get("/").header("connection"), Some("close"));
    assert!(c.closed_within(Duration::from_secs(5)));
}

#[test]
fn keepalive_timeout_closes_idle_connections() {
    let b = Backend::start(&["--keepalive-timeout-secs", "1"]);
    let mut c = H1::connect(b.addr());
    let r = c.get("/");
    assert_eq!(r.header("keep-alive"), Some("timeout=1"));
    let t = Instant::now();
    assert!(c.closed_within(Duration::from_secs(5)));
    assert!(t.elapsed() >= Duration::from_millis(800));
}

#[test]
fn client_connection_close_and_http10() {
    let b = Backend::start(&[]);
    let mut c = H1::connect(b.addr());
    let r = c.request("GET", "/", &[("connection", "close")], b"");
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.closed_within(Duration::from_secs(5)));

    // HTTP/1.0 without a length: close-delimited body.
    let mut c = H1::connect(b.addr());
    c.stream
        .write_all(b"GET /bytes?n=5000&chunked=1 HTTP/1.0\r\n\r\n")
        .unwrap();
    let r = c.read_response(false).unwrap();
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(r.body, pattern(5000));
}

#[test]
fn malformed_framing_is_rejected() {
    let b = Backend::start(&[]);
    let mut c = H1::connect(b.addr());
    c.stream
        .write_all(b"POST /echo HTTP/1.1\r\nhost: t\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n")
        .unwrap();
    let r = c.read_response(false).unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(r.header("connection"), Some("close"));
}

#[test]
fn injected_failures_are_seeded() {
    let all = Backend::start(&["--fail-rate", "100", "--fail-status", "502"]);
    let r = H1::connect(all.addr()).get("/headers");
    assert_eq!(r.status, 502);
    assert_eq!(r.header("x-injected-failure"), Some("1"));

    let draws = |seed: &str| {
        let b = Backend::start(&["--fail-rate", "50", "--seed", seed]);
        let mut c = H1::connect(b.addr());
        (0..32).map(|_| c.get("/").status).collect::<Vec<_>>()
    };
    let a = draws("7");
    assert_eq!(a, draws("7"));
    assert!(a.contains(&503) && a.contains(&200), "{a:?}");
}
