//! h2c (prior knowledge) behaviours, with the `h2` crate as the client, and
//! gRPC-style responses.

mod common;

use std::future::Future;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::h2c::{connect, exchange, get, req};
use common::{noise, pattern, Backend, H1};
use h2::Reason;

/// Every h2 test runs under this bound.
fn run<F: Future<Output = ()>>(f: F) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(60), f)
            .await
            .expect("test timed out")
    });
}

#[test]
fn same_port_serves_http1_and_h2c() {
    let b = Backend::start(&["--name", "both"]);
    let r = H1::connect(b.addr()).get("/headers");
    assert_eq!(r.json()["version"], "http/1.1");
    run(async {
        let (mut c, _conn) = connect(b.addr()).await;
        let r = get(&mut c, "/headers").await;
        assert_eq!(r.head.status(), 200);
        assert_eq!(r.header("x-backend"), Some("both"));
        let j: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(j["version"], "h2");
        assert_eq!(j["authority"], "test");
        assert_eq!(j["method"], "GET");
    });
}

#[test]
fn streams_are_counted_per_connection() {
    let b = Backend::start(&[]);
    run(async {
        let (mut c, _conn) = connect(b.addr()).await;
        let first = get(&mut c, "/").await;
        assert_eq!(first.body, b"sluice-test-backend test\n");
        let id = first.header("x-conn-id").unwrap().to_string();
        for k in 2..=4 {
            let r = get(&mut c, "/").await;
            assert_eq!(r.header("x-request-count"), Some(k.to_string().as_str()));
            assert_eq!(r.header("x-conn-id"), Some(id.as_str()));
        }
    });
}

#[test]
fn echo_5mb_is_byte_exact() {
    let b = Backend::start(&[]);
    run(async {
        let (mut c, _conn) = connect(b.addr()).await;
        let body = noise(5 * 1024 * 1024);
        let request = req("POST", "/echo")
            .header("content-type", "application/x-test")
            .header("content-length", body.len())
            .body(())
            .unwrap();
        let r = exchange(&mut c, request, Bytes::from(body.clone()))
            .await
            .unwrap();
        assert_eq!(r.head.status(), 200);
        assert_eq!(r.header("content-type"), Some("application/x-test"));
        assert_eq!(
            r.header("content-length"),
            Some(body.len().to_string().as_str())
        );
        assert!(r.body == body, "echoed body differs");
    });
}

#[test]
fn headers_bytes_status_delay() {
    let b = Backend::start(&[]);
    run(async {
        let (mut c, _conn) = connect(b.addr()).await;
        let request = req("GET", "/headers")
            .header(
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            )
            .header("x-forwarded-for", "192.0.2.1")
            .body(())
            .unwrap();
        let r = exchange(&mut c, request, Bytes::new()).await.unwrap();
        let j: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            j["headers"]["traceparent"],
            serde_json::json!(["00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"])
        );
        assert_eq!(
            j["headers"]["x-forwarded-for"],
            serde_json::json!(["192.0.2.1"])
        );

        let r = get(&mut c, "/bytes?n=1000003").await;
        assert_eq!(r.header("content-length"), Some("1000003"));
        assert!(r.body == pattern(1_000_003));

        let r = get(&mut c, "/status?code=503").await;
        assert_eq!(r.head.status(), 503);
        assert_eq!(r.body, b"status 503\n");

        let t = Instant::now();
        let r = get(&mut c, "/delay?ms=300").await;
        assert!(t.elapsed() >= Duration::from_millis(300));
        assert_eq!(r.body, b"ok\n");
    });
}

#[test]
fn reset_is_rst_stream_internal_error() {
    let b = Backend::start(&[]);
    run(async {
        let (mut c, _conn) = connect(b.addr()).await;
        let err = exchange(&mut c, req("GET", "/reset").body(()).unwrap(), Bytes::new())
            .await
            .err()
            .expect("reset");
        assert_eq!(err.reason(), Some(Reason::INTERNAL_ERROR), "{err}");

        // After headers and 100 body bytes.
        let (resp, _) = c
            .clone()
            .ready()
            .await
            .unwrap()
            .send_request(req("GET", "/reset?after=100").body(()).unwrap(), true)
            .unwrap();
        let (head, mut body) = resp.await.unwrap().into_parts();
        assert_eq!(head.status, 200);
        let mut got = Vec::new();
        let err = loop {
            match body.data().await {
                Some(Ok(d)) => got.extend_from_slice(&d),
                Some(Err(e)) => break e,
                None => panic!("stream ended cleanly"),
            }
        };
        assert_eq!(err.reason(), Some(Reason::INTERNAL_ERROR));
        assert_eq!(got, pattern(100));

        // The connection survives its streams' resets.
        assert_eq!(get(&mut c, "/").await.head.status(), 200);
    });
}

#[test]
fn stall_never_answers() {
    let b = Backend::start(&[]);
    run(async {
        let (c, _conn) = connect(b.addr()).await;
        let (resp, _) = c
            .clone()
            .ready()
            .await
            .unwrap()
            .send_request(req("GET", "/stall").body(()).unwrap(), true)
            .unwrap();
        assert!(tokio::time::timeout(Duration::from_millis(500), resp)
            .await
            .is_err());

        let (resp, _) = c
            .clone()
            .ready()
            .await
            .unwrap()
            .send_request(req("GET", "/stall?after=10").body(()).unwrap(), true)
            .unwrap();
        let (head, mut body) = resp.await.unwrap().into_parts();
        assert_eq!(head.status, 200);
        let mut got = Vec::new();
        while got.len() < 10 {
            got.extend_from_slice(&body.data().await.unwrap().unwrap());
        }
        assert_eq!(got, pattern(10));
        assert!(
            tokio::time::timeout(Duration::from_millis(500), body.data())
                .await
                .is_err()
        );
    });
}

#[test]
fn close_sends_goaway() {
    let b = Backend::start(&[]);
    run(async {
        let (mut c, conn) = connect(b.addr()).await;
        let r = get(&mut c, "/close").await;
        assert_eq!(r.head.status(), 200);
        assert_eq!(r.body, b"closing\n");
        // The server's GOAWAY ends the connection task.
        tokio::time::timeout(Duration::from_secs(5), conn)
            .await
            .expect("connection still open after /close")
            .unwrap()
            .ok();
        let late = exchange(&mut c, req("GET", "/").body(()).unwrap(), Bytes::new()).await;
        assert!(late.is_err());
    });
}

#[test]
fn max_requests_and_max_streams() {
    let b = Backend::start(&["--max-requests-per-conn", "2", "--h2-max-streams", "3"]);
    run(async {
        let tcp = tokio::net::TcpStream::connect(b.addr()).await.unwrap();
        let (mut c, mut conn) = h2::client::handshake(tcp).await.unwrap();
        // Drive the connection until the server's SETTINGS arrive.
        let first = tokio::select! {
            r = get(&mut c, "/") => r,
            _ = &mut conn => panic!("connection ended"),
        };
        assert_eq!(first.head.status(), 200);
        assert_eq!(conn.max_concurrent_send_streams(), 3);
        let task = tokio::spawn(conn);
        assert_eq!(get(&mut c, "/").await.header("x-request-count"), Some("2"));
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("connection still open after 2 requests")
            .unwrap()
            .ok();
    });
}

#[test]
fn head_request_has_no_body() {
    let b = Backend::start(&[]);
    run(async {
        let (mut c, _conn) = connect(b.addr()).await;
        let r = exchange(
            &mut c,
            req("HEAD", "/bytes?n=100").body(()).unwrap(),
            Bytes::new(),
        )
        .await
        .unwrap();
        assert_eq!(r.header("content-length"), Some("100"));
        assert!(r.body.is_empty());
    });
}

/// A request whose body ends with trailers; the whole response.
async fn with_trailers(
    c: &mut h2::client::SendRequest<Bytes>,
    request: http::Request<()>,
    body: &[u8],
    trailers: &[(&'static str, &str)],
) -> common::h2c::Full {
    *c = c.clone().ready().await.unwrap();
    let (resp, mut send) = c.send_request(request, false).unwrap();
    if !body.is_empty() {
        send.send_data(Bytes::copy_from_slice(body), false).unwrap();
    }
    let mut map = http::HeaderMap::new();
    for (n, v) in trailers {
        map.append(*n, v.parse().unwrap());
    }
    send.send_trailers(map).unwrap();
    let (head, mut recv) = resp.await.unwrap().into_parts();
    let body = common::h2c::body(&mut recv).await.unwrap();
    let trailers = recv.trailers().await.unwrap();
    common::h2c::Full {
        head: http::Response::from_parts(head, ()),
        body,
        trailers,
    }
}

#[test]
fn echo_returns_request_trailers_prefixed() {
    let b = Backend::start(&[]);
    run(async {
        let (mut c, _conn) = connect(b.addr()).await;
        let body = noise(200_000);
        let r = with_trailers(
            &mut c,
            req("POST", "/echo").body(()).unwrap(),
            &body,
            &[("x-sum", "5"), ("x-sum", "6"), ("x-other", "o")],
        )
        .await;
        assert_eq!(r.head.status(), 200);
        assert!(r.body == body, "echoed body differs");
        let t = r.trailers.expect("response trailers");
        let sums: Vec<_> = t.get_all("x-echo-x-sum").iter().collect();
        assert_eq!(sums, ["5", "6"]);
        assert_eq!(t["x-echo-x-other"], "o");
        assert_eq!(t.len(), 3, "{t:?}");

        // With a length too (h2 trailers need no chunking); and an empty
        // body with ?trailers=1, whose head cannot end the stream.
        let request = req("POST", "/echo")
            .header("content-length", "3")
            .body(())
            .unwrap();
        let r = with_trailers(&mut c, request, b"abc", &[("x-sum", "3")]).await;
        assert_eq!(r.header("content-length"), Some("3"));
        assert_eq!(r.body, b"abc");
        assert_eq!(r.trailers.expect("trailers")["x-echo-x-sum"], "3");
        let request = req("POST", "/echo?trailers=1")
            .header("content-length", "0")
            .body(())
            .unwrap();
        let r = with_trailers(&mut c, request, b"", &[("x-sum", "0")]).await;
        assert!(r.body.is_empty());
        assert_eq!(r.trailers.expect("trailers")["x-echo-x-sum"], "0");

        // No request trailers: none back.
        let r = exchange(
            &mut c,
            req("POST", "/echo").body(()).unwrap(),
            Bytes::from_static(b"xyz"),
        )
        .await
        .unwrap();
        assert_eq!(r.body, b"xyz");
        assert!(r.trailers.is_none());

        // /headers reports them.
        let r = with_trailers(
            &mut c,
            req("POST", "/headers").body(()).unwrap(),
            b"abcd",
            &[("x-sum", "4")],
        )
        .await;
        let j: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(j["trailers"], serde_json::json!({"x-sum": ["4"]}));
        assert_eq!(j["body_bytes"], 4);
    });
}

fn grpc_frame(msg: &[u8]) -> Bytes {
    let mut f = vec![0u8];
    f.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    f.extend_from_slice(msg);
    Bytes::from(f)
}

#[test]
fn grpc_echo_status_and_timeout() {
    let b = Backend::start(&[]);
    run(async {
        let (mut c, _conn) = connect(b.addr()).await;
        let frame = grpc_frame(b"hello grpc");
        let request = req("POST", "/grpc.test.Echo/Unary")
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("grpc-timeout", "1500m")
            .body(())
            .unwrap();
        let r = exchange(&mut c, request, frame.clone()).await.unwrap();
        assert_eq!(r.head.status(), 200);
        assert_eq!(r.header("content-type"), Some("application/grpc"));
        assert_eq!(r.header("x-received-grpc-timeout"), Some("1500m"));
        assert_eq!(r.body, frame);
        let t = r.trailers.expect("trailers");
        assert_eq!(t["grpc-status"], "0");

        // Status and message from the request; any path with the gRPC
        // content type counts.
        let request = req("POST", "/pkg.Svc/Method")
            .header("content-type", "application/grpc+proto")
            .header("x-grpc-status", "7")
            .header("x-grpc-message", "denied")
            .body(())
            .unwrap();
        let r = exchange(&mut c, request, frame.clone()).await.unwrap();
        assert_eq!(r.body, frame);
        let t = r.trailers.expect("trailers");
        assert_eq!(t["grpc-status"], "7");
        assert_eq!(t["grpc-message"], "denied");

        // Trailers-Only.
        let request = req("POST", "/grpc.test.Echo/Unary")
            .header("content-type", "application/grpc")
            .header("x-grpc-status", "5")
            .header("x-grpc-trailers-only", "1")
            .body(())
            .unwrap();
        let r = exchange(&mut c, request, frame.clone()).await.unwrap();
        assert_eq!(r.header("grpc-status"), Some("5"));
        assert!(r.body.is_empty());

        // A delay longer than the deadline: DEADLINE_EXCEEDED at the deadline.
        let request = req("POST", "/grpc.test.Echo/Unary")
            .header("content-type", "application/grpc")
            .header("grpc-timeout", "200m")
            .header("x-grpc-delay-ms", "5000")
            .body(())
            .unwrap();
        let t = Instant::now();
        let r = exchange(&mut c, request, frame).await.unwrap();
        assert!(t.elapsed() < Duration::from_secs(3));
        assert_eq!(r.header("grpc-status"), Some("4"));
    });
}
