//! The server connection ([`ServerConn`]) against the crate's own
//! upstream client ([`H2Client`]) over an in-memory pipe: many streams,
//! bodies both ways past the flow-control windows, trailers both ways,
//! resets from either side.

use std::collections::HashMap;

use http::HeaderMap;
use sluice_h2::{
    ClientRequest, H2Client, H2ClientConfig, H2Event, ServerConn, ServerConnConfig, ServerEvent,
    StreamFailure,
};
use sluice_h2codec::frame::ErrorCode;

/// What the scripted application behind the server does with a stream.
#[derive(Default)]
struct ServerStream {
    path: Vec<u8>,
    received: usize,
}

#[derive(Default)]
struct ClientStream {
    status: Option<u16>,
    body: Vec<u8>,
    trailers: Option<HeaderMap>,
    ended: bool,
    failed: Option<StreamFailure>,
}

struct Pair {
    client: H2Client,
    server: ServerConn,
    /// Server side: key -> stream. The application echoes request bodies
    /// back and mirrors trailers, except on paths that say otherwise.
    app: HashMap<u32, ServerStream>,
    resets_seen: Vec<(Vec<u8>, u32)>,
    /// Client side: key -> what came back.
    got: HashMap<u32, ClientStream>,
}

impl Pair {
    fn new(ccfg: H2ClientConfig, scfg: ServerConnConfig) -> Self {
        Pair {
            client: H2Client::new(ccfg),
            server: ServerConn::new(scfg),
            app: HashMap::new(),
            resets_seen: Vec::new(),
            got: HashMap::new(),
        }
    }

    fn serve(&mut self) -> bool {
        let mut moved = false;
        while let Some((k, ev)) = self.server.poll_event() {
            moved = true;
            match ev {
                ServerEvent::Request { head, end_stream } => {
                    let path = head.path.to_vec();
                    let mut h = HeaderMap::new();
                    h.insert("x-path", http::HeaderValue::from_bytes(&path).unwrap());
                    if path == b"/reset-by-server" {
                        self.server.send_response(k, 200, &h, false);
                        self.server.reset(k, ErrorCode::Cancel);
                        continue;
                    }
                    self.server.send_response(k, 200, &h, false);
                    if end_stream {
                        self.server.end_response(k, None);
                    }
                    self.app.insert(k, ServerStream { path, received: 0 });
                }
                ServerEvent::Data(d) => {
                    let s = self.app.get_mut(&k).expect("open stream");
                    s.received += d.len();
                    self.server.send_data(k, &d);
                    self.server.release(k, d.len());
                }
                ServerEvent::Trailers(t) => {
                    let mut back = t.clone();
                    back.insert("x-echoed", "1".parse().unwrap());
                    self.server.end_response(k, Some(&back));
                }
                ServerEvent::End => {
                    // Ends the response unless trailers did.
                    self.server.end_response(k, None);
                    self.app.remove(&k);
                }
                ServerEvent::Reset(code) => {
                    if let Some(s) = self.app.remove(&k) {
                        self.resets_seen.push((s.path, code));
                    }
                }
            }
        }
        moved
    }

    fn take_client_events(&mut self) -> bool {
        let mut moved = false;
        while let Some((k, ev)) = self.client.poll_event() {
            moved = true;
            let g = self.got.entry(k).or_default();
            match ev {
                H2Event::Head { status, .. } => g.status = Some(status),
                H2Event::Data(d) => {
                    g.body.extend_from_slice(&d);
                    self.client.release(k, d.len());
                }
                H2Event::Trailers(t) => g.trailers = Some(t),
                H2Event::End => g.ended = true,
                H2Event::Failed(f) => g.failed = Some(f),
            }
        }
        moved
    }

    /// Moves bytes both ways (in small pieces) and runs both ends until
    /// nothing moves.
    fn pump(&mut self) {
        let mut buf = vec![0u8; 5000];
        for _ in 0..100_000 {
            let mut moved = false;
            let n = self.client.poll_write(&mut buf);
            if n > 0 {
                assert_eq!(self.server.on_read(&buf[..n]), n);
                moved = true;
            }
            moved |= self.serve();
            let n = self.server.poll_write(&mut buf);
            if n > 0 {
                assert_eq!(self.client.on_read(&buf[..n]), n);
                moved = true;
            }
            moved |= self.take_client_events();
            assert_eq!(self.server.ended(), None, "the server failed");
            assert_eq!(self.client.ended(), None, "the client failed");
            if !moved {
                return;
            }
        }
        panic!("pump did not settle");
    }
}

fn body(seed: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * 31 + seed * 7) % 251) as u8)
        .collect()
}

#[test]
fn many_streams_with_bodies_past_the_windows_and_trailers_both_ways() {
    let mut p = Pair::new(
        H2ClientConfig {
            max_streams: 100,
            stream_window: 70_000,
            connection_window: 200_000,
            write_cap: 32 * 1024,
        },
        ServerConnConfig {
            initial_stream_window: 65_535,
            connection_window: 150_000,
            max_concurrent_streams: 50,
            write_cap: 24 * 1024,
            ..ServerConnConfig::default()
        },
    );
    let none = HeaderMap::new();
    let mut keys = Vec::new();
    for i in 0..40usize {
        let path = format!("/s{i}");
        let with_body = i % 4 != 0;
        let k = p
            .client
            .send_request(ClientRequest {
                method: if with_body { b"POST" } else { b"GET" },
                scheme: "http",
                authority: b"h",
                path: path.as_bytes(),
                headers: &none,
                end_stream: !with_body,
            })
            .unwrap();
        keys.push((k, i, with_body));
    }
    // Bodies in pieces, pumped as they go (the client's windows throttle).
    for round in 0..10 {
        for &(k, i, with_body) in &keys {
            if with_body {
                p.client
                    .send_data(k, &body(i, 300_000)[round * 30_000..][..30_000]);
            }
        }
        p.pump();
    }
    for &(k, i, with_body) in &keys {
        if with_body {
            let t = (i % 2 == 0).then(|| {
                let mut t = HeaderMap::new();
                t.insert("x-sum", format!("{i}").parse().unwrap());
                t
            });
            p.client.end_request(k, t);
        }
    }
    p.pump();
    for &(k, i, with_body) in &keys {
        let g = &p.got[&k];
        assert_eq!(g.status, Some(200), "stream {i}");
        assert!(g.ended, "stream {i} ended");
        assert_eq!(g.failed, None, "stream {i}");
        if with_body {
            assert_eq!(g.body.len(), 300_000, "stream {i}");
            assert!(g.body == body(i, 300_000), "stream {i} body");
        } else {
            assert!(g.body.is_empty());
        }
        if with_body && i % 2 == 0 {
            let t = g.trailers.as_ref().expect("trailers");
            assert_eq!(t["x-sum"], format!("{i}").as_str());
            assert_eq!(t["x-echoed"], "1");
        } else {
            assert!(g.trailers.is_none(), "stream {i}");
        }
    }
    assert_eq!(p.server.active(), 0);
    assert_eq!(p.client.active(), 0);
    // Everything given back: the connection holds no body, only its
    // HPACK tables once the buffers are released.
    p.server.release_memory();
    assert!(
        p.server.memory() <= 2 * 4096,
        "server holds {}",
        p.server.memory()
    );
}

#[test]
fn resets_from_either_side_leave_the_other_streams_alone() {
    let mut p = Pair::new(H2ClientConfig::default(), ServerConnConfig::default());
    let none = HeaderMap::new();
    let open = |p: &mut Pair, path: &'static [u8]| {
        p.client
            .send_request(ClientRequest {
                method: b"POST",
                scheme: "http",
                authority: b"h",
                path,
                headers: &none,
                end_stream: false,
            })
            .unwrap()
    };
    let a = open(&mut p, b"/a");
    let gone = open(&mut p, b"/cancelled");
    let by_server = open(&mut p, b"/reset-by-server");
    p.client.send_data(a, &[1u8; 100_000]);
    p.client.send_data(gone, &[2u8; 100_000]);
    p.pump();
    p.client.reset(gone);
    p.pump();
    assert_eq!(
        p.resets_seen,
        vec![(b"/cancelled".to_vec(), ErrorCode::Cancel as u32)]
    );
    assert_eq!(
        p.got.get(&by_server).and_then(|g| g.failed),
        Some(StreamFailure::Reset)
    );
    p.client.send_data(a, &[1u8; 100_000]);
    p.client.end_request(a, None);
    p.pump();
    let g = &p.got[&a];
    assert!(g.ended && g.failed.is_none());
    assert_eq!(g.body.len(), 200_000);
    assert_eq!(p.server.active(), 0);
    // The connection goes on: a new stream after the resets.
    let b = p
        .client
        .send_request(ClientRequest {
            method: b"GET",
            scheme: "http",
            authority: b"h",
            path: b"/after",
            headers: &none,
            end_stream: true,
        })
        .unwrap();
    p.pump();
    assert!(p.got[&b].ended);
    // A graceful GOAWAY: the client stops opening streams, the server
    // ends cleanly.
    p.server.go_away(ErrorCode::NoError);
    let mut buf = vec![0u8; 1024];
    let n = p.server.poll_write(&mut buf);
    p.client.on_read(&buf[..n]);
    assert!(p.client.going_away());
    assert_eq!(p.server.ended(), Some(true));
}
