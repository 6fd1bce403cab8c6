//! HTTP/2 backends (h2c): the proxy's streams against the project's own
//! HTTP/2 server (sluice-h2's `H2App`, its built-in routes) as the
//! backend, bytes moved by the test in both directions.

use std::rc::Rc;

use sluice_app::{ConnContext, LoopDate, SharedStats};
use sluice_h2::{H2App, H2Config};

use super::*;

/// A backend connection: the server app and what it wrote that the
/// proxy has not taken yet.
struct Backend {
    app: H2App,
    to_proxy: Vec<u8>,
    /// Every byte the proxy sent.
    from_proxy: Vec<u8>,
}

impl Backend {
    fn new() -> Self {
        let date = LoopDate::new();
        date.set_unix_time(0);
        Backend {
            app: H2App::new(
                Rc::new(H2Config::default()),
                date,
                SharedStats::default(),
                &ConnContext::default(),
                Time::ZERO,
            ),
            to_proxy: Vec::new(),
            from_proxy: Vec::new(),
        }
    }
}

/// Moves bytes between connection `c` and its backend until nothing
/// moves; `deliver`: the backend's bytes reach the proxy.
fn pump(h: &mut Harness, c: usize, b: &mut Backend, deliver: bool) {
    for _ in 0..10_000 {
        let mut moved = false;
        let out = h.write(c);
        b.from_proxy.extend_from_slice(&out);
        let mut at = 0;
        while at < out.len() {
            let n = b.app.on_read(h.now, &out[at..]);
            assert!(n > 0, "backend stopped reading");
            at += n;
            moved = true;
        }
        let mut buf = [0u8; 16 * 1024];
        let n = b.app.poll_write(h.now, &mut buf);
        b.to_proxy.extend_from_slice(&buf[..n]);
        moved |= n > 0;
        if deliver && !b.to_proxy.is_empty() && h.conns[c].app.is_some() {
            let took = h.read(c, &b.to_proxy.clone());
            b.to_proxy.drain(..took);
            moved |= took > 0;
        }
        if !moved {
            return;
        }
    }
    panic!("pump does not settle");
}

fn h2c(cluster: &str) -> String {
    one_backend(&format!("protocol = \"h2c\"\n{cluster}"))
}

/// Status and body of an exchange's parts (data polled as it comes).
fn collect(parts: &[Part]) -> (u16, Vec<u8>, bool) {
    let mut status = 0;
    let mut body = Vec::new();
    let mut ended = false;
    for p in parts {
        match p {
            Ok(ResponsePart::Head { status: s, .. }) => status = *s,
            Ok(ResponsePart::Data(d)) => body.extend_from_slice(d),
            Ok(ResponsePart::End) => ended = true,
            Ok(ResponsePart::Trailers(_)) => {}
            Err(e) => panic!("exchange failed: {e:?}"),
        }
    }
    (status, body, ended)
}

#[test]
fn concurrent_requests_share_one_connection() {
    let mut h = Harness::new(&h2c(""));
    let exs: Vec<ExchangeId> = (0..20).map(|i| h.start(get("/bytes/50000"), i)).collect();
    let c = h.connect();
    assert!(h.connects.is_empty(), "one connection for 20 streams");
    let mut b = Backend::new();
    let mut parts: Vec<Vec<Part>> = vec![Vec::new(); exs.len()];
    for _ in 0..100 {
        pump(&mut h, c, &mut b, true);
        for (i, ex) in exs.iter().enumerate() {
            parts[i].extend(h.poll(*ex));
        }
        if parts
            .iter()
            .all(|p| p.iter().any(|x| matches!(x, Ok(ResponsePart::End))))
        {
            break;
        }
    }
    for p in &parts {
        let (status, body, ended) = collect(p);
        assert_eq!((status, body.len(), ended), (200, 50_000, true));
    }
    // A second round reuses the connection.
    let ex = h.start(get("/bytes/10"), 100);
    pump(&mut h, c, &mut b, true);
    let (status, body, _) = collect(&h.poll(ex));
    assert_eq!((status, body.len()), (200, 10));
    let s = h.proxy.stats();
    assert_eq!(s.upstream_connects, 1);
    assert_eq!(s.upstream_reuses, 20);
    assert_eq!(s.responses_2xx, 21);
    assert_eq!(s.active_exchanges, 0);
    assert_eq!(h.close(c), Close::No, "the connection stays for more");
}

#[test]
fn the_stream_limit_opens_more_connections_within_the_pool() {
    let mut h = Harness::new(&h2c(
        "[cluster.pool]\nmax_streams_per_connection = 2\nmax_connections = 2",
    ));
    let exs: Vec<ExchangeId> = (0..5).map(|i| h.start(get("/bytes/100"), i)).collect();
    assert_eq!(h.connects.len(), 2, "two connections of two streams each");
    let (u0, a0) = h.connects.remove(0);
    let (u1, a1) = h.connects.remove(0);
    let c0 = h.open(u0, a0);
    let c1 = h.open(u1, a1);
    let (mut b0, mut b1) = (Backend::new(), Backend::new());
    let mut done = 0;
    for _ in 0..20 {
        pump(&mut h, c0, &mut b0, true);
        pump(&mut h, c1, &mut b1, true);
        done += exs
            .iter()
            .filter(|ex| {
                h.poll(**ex)
                    .iter()
                    .any(|p| matches!(p, Ok(ResponsePart::End)))
            })
            .count();
        if done == 5 {
            break;
        }
    }
    assert_eq!(done, 5);
    assert_eq!(h.proxy.stats().upstream_connects, 2);
}

#[test]
fn a_request_body_is_streamed_byte_exact() {
    let mut h = Harness::new(&h2c(""));
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 253) as u8).collect();
    let ex = h.start(
        request("POST", "/echo", BodyLen::Length(payload.len() as u64)),
        1,
    );
    let c = h.connect();
    let mut b = Backend::new();
    let mut sent = 0;
    let mut parts = Vec::new();
    for _ in 0..1000 {
        if sent < payload.len() {
            sent += h.send_body(ex, &payload[sent..]);
            if sent == payload.len() {
                h.end_body(ex);
            }
        }
        pump(&mut h, c, &mut b, true);
        parts.extend(h.poll(ex));
        if parts.iter().any(|p| matches!(p, Ok(ResponsePart::End))) {
            break;
        }
    }
    let (status, body, ended) = collect(&parts);
    assert_eq!(status, 200);
    assert!(ended);
    assert_eq!(body, payload);
}

/// (type, flags, stream) of the frames in `bytes`, after the preface.
fn frames(bytes: &[u8]) -> Vec<(u8, u8, u32)> {
    let mut at = if bytes.starts_with(b"PRI * HTTP/2.0") {
        24
    } else {
        0
    };
    let mut out = Vec::new();
    while at + 9 <= bytes.len() {
        let len = u32::from_be_bytes([0, bytes[at], bytes[at + 1], bytes[at + 2]]) as usize;
        let stream = u32::from_be_bytes(bytes[at + 5..at + 9].try_into().unwrap()) & 0x7fff_ffff;
        out.push((bytes[at + 3], bytes[at + 4], stream));
        at += 9 + len;
    }
    out
}

#[test]
fn request_trailers_follow_the_body_on_the_stream() {
    const HEADERS: u8 = 1;
    const DATA: u8 = 0;
    const END_STREAM: u8 = 1;
    let mut h = Harness::new(&h2c(""));
    let ex = h.start(request("POST", "/echo", BodyLen::Streamed), 1);
    let c = h.connect();
    let mut b = Backend::new();
    assert_eq!(h.send_body(ex, b"abc"), 3);
    h.end_body_with(ex, fields(&[("x-checksum", "abc")]));
    let mut parts = Vec::new();
    for _ in 0..100 {
        pump(&mut h, c, &mut b, true);
        parts.extend(h.poll(ex));
        if parts.iter().any(|p| matches!(p, Ok(ResponsePart::End))) {
            break;
        }
    }
    assert_eq!(collect(&parts), (200, b"abc".to_vec(), true));
    let on_stream: Vec<(u8, u8)> = frames(&b.from_proxy)
        .into_iter()
        .filter(|f| f.2 == 1)
        .map(|f| (f.0, f.1))
        .collect();
    // HEADERS, DATA that does not end the stream, then the trailers'
    // HEADERS with END_STREAM.
    assert_eq!(
        on_stream.first().map(|f| f.0),
        Some(HEADERS),
        "{on_stream:?}"
    );
    assert!(
        on_stream
            .iter()
            .any(|&(ty, fl)| ty == DATA && fl & END_STREAM == 0),
        "{on_stream:?}"
    );
    assert_eq!(
        on_stream.last(),
        Some(&(HEADERS, END_STREAM | 4)),
        "{on_stream:?}"
    );
}

#[test]
fn a_cancelled_exchange_resets_only_its_stream() {
    let mut h = Harness::new(&h2c(""));
    let big = h.start(get("/bytes/1000000"), 1);
    let small = h.start(get("/bytes/10"), 2);
    let c = h.connect();
    let mut b = Backend::new();
    pump(&mut h, c, &mut b, true);
    h.proxy.cancel(big);
    h.collect();
    pump(&mut h, c, &mut b, true);
    let (status, body, ended) = collect(&h.poll(small));
    assert_eq!((status, body.len(), ended), (200, 10, true));
    assert_eq!(h.close(c), Close::No, "the connection carries on");
    let again = h.start(get("/bytes/3"), 3);
    pump(&mut h, c, &mut b, true);
    let (status, body, _) = collect(&h.poll(again));
    assert_eq!((status, body.len()), (200, 3));
    assert_eq!(h.proxy.stats().upstream_connects, 1);
}

#[test]
fn a_grpc_deadline_answers_deadline_exceeded() {
    let mut h = Harness::new(&h2c(""));
    let mut req = request("POST", "/pkg.Svc/Call", BodyLen::None);
    sluice_app::proxy::append(&mut req.headers, b"content-type", b"application/grpc");
    sluice_app::proxy::append(&mut req.headers, b"grpc-timeout", b"100m");
    let ex = h.start(req, 1);
    let c = h.connect();
    let mut b = Backend::new();
    // The backend never answers (its bytes never arrive).
    pump(&mut h, c, &mut b, false);
    h.advance(ms(100));
    let parts = h.poll(ex);
    assert_eq!(
        parts,
        vec![
            head(
                200,
                &[
                    ("content-type", "application/grpc"),
                    ("grpc-status", "4"),
                    ("grpc-message", "deadline exceeded"),
                ],
                BodyLen::None
            ),
            end()
        ]
    );
    let s = h.proxy.stats();
    assert_eq!((s.timeouts, s.grpc_deadline_exceeded), (1, 1));
    assert_eq!(h.close(c), Close::No, "only the stream was reset");
}

#[test]
fn the_backend_closing_retries_idempotent_requests_elsewhere() {
    let mut h = Harness::new(&h2c(""));
    let ex = h.start(get("/bytes/10"), 1);
    let c = h.connect();
    let mut b = Backend::new();
    pump(&mut h, c, &mut b, false);
    // The connection dies before any response byte.
    h.gone(c);
    let (up, a) = h.advance_until_connect(Duration::from_secs(2));
    let c2 = h.open(up, a);
    let mut b2 = Backend::new();
    pump(&mut h, c2, &mut b2, true);
    let (status, body, ended) = collect(&h.poll(ex));
    assert_eq!((status, body.len(), ended), (200, 10, true));
    assert_eq!(h.proxy.stats().retries, 1);
}
