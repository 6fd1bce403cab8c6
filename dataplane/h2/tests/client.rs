//! h2's own client against `H2App`, in memory over virtual time.

mod common;

use std::cell::RefCell;
use std::future::poll_fn;
use std::rc::Rc;

use bytes::Bytes;
use common::*;
use sluice_app::{App, Close};
use sluice_h2::H2Config;

fn setup(cfg: H2Config) -> (Srv, Pipe, Spawner) {
    (Srv::new(cfg), Pipe::default(), Spawner::default())
}

#[test]
fn health_and_headers() {
    let (mut srv, pipe, sp) = setup(H2Config::default());
    let got = Rc::new(RefCell::new(None));
    let g = Rc::clone(&got);
    let (p, s) = (pipe.clone(), sp.clone());
    let main = async move {
        let mut sr = connect(p, s, h2::client::Builder::new()).await;
        let r = fetch(&mut sr, "GET", "/health", None).await.unwrap();
        let h = fetch(&mut sr, "HEAD", "/health", None).await.unwrap();
        *g.borrow_mut() = Some((r, h));
    };
    run(&mut srv, &pipe, &sp, main, &Run::default(), |_, _| {});
    let (r, h) = got.borrow_mut().take().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"ok\n");
    assert_eq!(r.headers["server"], "sluice");
    assert_eq!(r.headers["date"].as_bytes(), DATE);
    assert_eq!(r.headers["content-type"], "text/plain");
    assert_eq!(r.headers["content-length"], "3");
    assert_eq!(h.status, 200);
    assert!(h.body.is_empty());
    assert_eq!(h.headers["content-length"], "3");
    let st = srv.stats.borrow();
    assert_eq!(st.http.requests, 2);
    assert_eq!(st.http.status_2xx, 2);
    assert_eq!(st.h2.connections, 1);
    assert_eq!(st.h2.streams, 2);
    drop(st);
    assert!(srv.app.is_idle());
    assert!(srv.app.memory() > sluice_h2::CODEC_BUFFERS);
    srv.app.release_idle_memory();
    // What is left is h2's own codec state, which it never gives back.
    assert_eq!(srv.app.memory(), sluice_h2::CODEC_BUFFERS);
}

#[test]
fn bytes_exact_with_small_windows() {
    for n in [0usize, 1, 16_384, 1_000_000] {
        let (mut srv, pipe, sp) = setup(H2Config::default());
        let got = Rc::new(RefCell::new(None));
        let g = Rc::clone(&got);
        let (p, s) = (pipe.clone(), sp.clone());
        let main = async move {
            let mut sr = connect(p, s, client(4096, 16_384)).await;
            let r = fetch(&mut sr, "GET", &format!("/bytes/{n}"), None)
                .await
                .unwrap();
            *g.borrow_mut() = Some(r);
        };
        let opts = Run {
            read_per_round: Some(3000),
            tcp_window: 20_000,
        };
        let mut peak = 0;
        run(&mut srv, &pipe, &sp, main, &opts, |srv, _| {
            peak = peak.max(srv.app.memory());
        });
        let r = got.borrow_mut().take().unwrap();
        assert_eq!(r.status, 200, "n={n}");
        assert_eq!(r.headers["content-type"], "application/octet-stream");
        assert_eq!(r.headers["content-length"], n.to_string().as_str());
        assert_eq!(r.body.len(), n);
        assert!(is_pattern(&r.body), "n={n}");
        // Never the whole body: the output buffer, one `max_send_buffer`
        // (64 KiB) of response ahead of the client's window, the HPACK
        // tables.
        assert!(peak <= 192 * 1024, "n={n} peak={peak}");
    }
}

#[test]
fn head_and_errors() {
    let (mut srv, pipe, sp) = setup(H2Config {
        max_bytes_route: 1000,
        ..H2Config::default()
    });
    let got = Rc::new(RefCell::new(Vec::new()));
    let g = Rc::clone(&got);
    let (p, s) = (pipe.clone(), sp.clone());
    let main = async move {
        let mut sr = connect(p, s, h2::client::Builder::new()).await;
        for (m, path) in [
            ("HEAD", "/bytes/1000"),
            ("GET", "/bytes/1001"),
            ("GET", "/bytes/abc"),
            ("GET", "/nope"),
            ("POST", "/health"),
            ("GET", "/echo"),
            ("DELETE", "/bytes/1"),
            ("HEAD", "/nope"),
            ("GET", "/bytes/5?x=1"),
        ] {
            let r = fetch(&mut sr, m, path, None).await.unwrap();
            g.borrow_mut().push((m, path, r));
        }
    };
    run(&mut srv, &pipe, &sp, main, &Run::default(), |_, _| {});
    let got = got.borrow();
    let expect: [(u16, Option<&str>, &[u8]); 9] = [
        (200, None, b""),
        (400, None, b"400 Bad Request\n"),
        (400, None, b"400 Bad Request\n"),
        (404, None, b"404 Not Found\n"),
        (405, Some("GET, HEAD"), b"405 Method Not Allowed\n"),
        (405, Some("POST"), b"405 Method Not Allowed\n"),
        (405, Some("GET, HEAD"), b"405 Method Not Allowed\n"),
        (404, None, b""),
        (200, None, &[0, 1, 2, 3, 4]),
    ];
    for ((m, path, r), (status, allow, body)) in got.iter().zip(expect) {
        assert_eq!(r.status, status, "{m} {path}");
        assert_eq!(r.body, body, "{m} {path}");
        assert_eq!(
            r.headers.get("allow").map(|v| v.to_str().unwrap()),
            allow,
            "{m} {path}"
        );
        assert_eq!(r.headers["server"], "sluice");
    }
    assert_eq!(got[0].2.headers["content-length"], "1000");
    assert_eq!(got[7].2.headers["content-length"], "14");
    let st = srv.stats.borrow().http;
    assert_eq!(st.requests, 9);
    assert_eq!(st.status_2xx, 2);
    assert_eq!(st.status_4xx, 7);
}

/// 8 MB through `/echo` with small windows and a client that reads
/// slowly: the server holds a few windows' worth, never the body.
#[test]
fn echo_8mb_streams_with_bounded_memory() {
    const LEN: usize = 8 << 20;
    let cfg = H2Config {
        initial_stream_window: 64 * 1024,
        connection_window: 128 * 1024,
        ..H2Config::default()
    };
    let (mut srv, pipe, sp) = setup(cfg);
    let got = Rc::new(RefCell::new(None));
    let g = Rc::clone(&got);
    let (p, s) = (pipe.clone(), sp.clone());
    let s2 = sp.clone();
    let main = async move {
        let sr = connect(p, s, client(16 * 1024, 32 * 1024)).await;
        let req = http::Request::builder()
            .method("POST")
            .uri("http://a/echo")
            .header("content-length", LEN.to_string())
            .body(())
            .unwrap();
        let mut sr = sr.ready().await.unwrap();
        let (resp, mut tx) = sr.send_request(req, false).unwrap();
        // The upload runs as its own task, paced by the server's window.
        s2.spawn(async move {
            let mut sent = 0usize;
            while sent < LEN {
                tx.reserve_capacity((LEN - sent).min(32 * 1024));
                let cap = poll_fn(|cx| tx.poll_capacity(cx)).await.unwrap().unwrap();
                let k = cap.min(LEN - sent);
                let chunk: Vec<u8> = (sent..sent + k).map(|i| (i * 7 % 256) as u8).collect();
                sent += k;
                tx.send_data(Bytes::from(chunk), sent == LEN).unwrap();
            }
        });
        let resp = resp.await.unwrap();
        assert_eq!(resp.headers()["content-length"], LEN.to_string().as_str());
        let mut rx = resp.into_body();
        let mut n = 0usize;
        let mut ok = true;
        while let Some(c) = rx.data().await {
            let c = c.unwrap();
            for &b in c.iter() {
                ok &= b == (n * 7 % 256) as u8;
                n += 1;
            }
            rx.flow_control().release_capacity(c.len()).unwrap();
        }
        *g.borrow_mut() = Some((n, ok));
    };
    let opts = Run {
        read_per_round: Some(8 * 1024),
        tcp_window: 64 * 1024,
    };
    let mut peak = 0;
    run(&mut srv, &pipe, &sp, main, &opts, |srv, _| {
        peak = peak.max(srv.app.memory());
    });
    assert_eq!(*got.borrow(), Some((LEN, true)));
    // Transport buffers (16 + 32 KiB, Vec growth aside) plus one stream
    // window of echo bytes.
    assert!(peak <= 256 * 1024, "peak {peak}");
    assert!(peak > 0);
}

#[test]
fn a_hundred_concurrent_streams() {
    let (mut srv, pipe, sp) = setup(H2Config::default());
    let done = Rc::new(RefCell::new(0));
    let (p, s) = (pipe.clone(), sp.clone());
    let (d, s2) = (Rc::clone(&done), sp.clone());
    let main = async move {
        let sr = connect(p, s, client(8 * 1024, 1 << 20)).await;
        let all = Rc::new(RefCell::new(0));
        for i in 0..100 {
            let mut sr = sr.clone();
            let (d, all) = (Rc::clone(&d), Rc::clone(&all));
            s2.spawn(async move {
                let n = 20_000 + i;
                let r = fetch(&mut sr, "GET", &format!("/bytes/{n}"), None)
                    .await
                    .unwrap();
                assert_eq!(r.status, 200);
                assert_eq!(r.body.len(), n);
                assert!(is_pattern(&r.body));
                *d.borrow_mut() += 1;
                *all.borrow_mut() += 1;
            });
        }
        poll_fn(|_| {
            if *all.borrow() == 100 {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
        .await;
    };
    let mut peak_streams = 0;
    run(&mut srv, &pipe, &sp, main, &Run::default(), |srv, _| {
        peak_streams = peak_streams.max(srv.app.active_streams());
    });
    assert_eq!(*done.borrow(), 100);
    assert!(peak_streams > 50, "{peak_streams}");
    assert!(peak_streams <= 100);
    assert_eq!(srv.stats.borrow().h2.streams, 100);
}

/// SIGTERM: GOAWAY, the stream in flight finishes, then a graceful close.
#[test]
fn drain_finishes_the_stream_in_flight() {
    const N: usize = 1_000_000;
    let (mut srv, pipe, sp) = setup(H2Config::default());
    let got = Rc::new(RefCell::new(None));
    let g = Rc::clone(&got);
    let (p, s) = (pipe.clone(), sp.clone());
    let main = async move {
        let mut sr = connect(p, s, client(16 * 1024, 64 * 1024)).await;
        let r = fetch(&mut sr, "GET", &format!("/bytes/{N}"), None).await;
        // After the GOAWAY, new requests are refused by the client itself
        // or by the server.
        let after = fetch(&mut sr, "GET", "/health", None).await;
        *g.borrow_mut() = Some((r.map(|r| r.body), after.is_err()));
    };
    let opts = Run {
        read_per_round: Some(4096),
        tcp_window: 16 * 1024,
    };
    let mut drained_at = None;
    run(&mut srv, &pipe, &sp, main, &opts, |srv, round| {
        if round == 50 {
            assert_eq!(srv.app.active_streams(), 1);
            srv.app.drain(srv.now);
            drained_at = Some(round);
        }
    });
    assert!(drained_at.is_some());
    let (body, refused) = got.borrow_mut().take().unwrap();
    let body = body.unwrap();
    assert_eq!(body.len(), N);
    assert!(is_pattern(&body));
    assert!(refused);
    // The connection ends once the client has answered the shutdown PING
    // and the output is flushed.
    let mut buf = vec![0u8; 65536];
    for _ in 0..100 {
        let c2s = std::mem::take(&mut pipe.borrow_mut().c2s);
        if !c2s.is_empty() {
            srv.app.on_read(srv.now, &c2s);
        }
        while srv.app.poll_write(srv.now, &mut buf) > 0 {}
    }
    assert_eq!(srv.app.close(), Close::Graceful);
    let h2 = srv.stats.borrow().h2;
    assert_eq!(h2.goaway_sent, 1);
    assert_eq!(h2.protocol_errors, 0);
}
