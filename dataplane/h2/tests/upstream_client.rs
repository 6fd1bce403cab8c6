//! The upstream client ([`H2Client`]) against the crate's own server
//! ([`H2App`]) over an in-memory pipe: requests, bodies both ways past
//! the flow-control windows, releases, resets, and the server going away.

use std::rc::Rc;

use sluice_app::{App, ConnContext, LoopDate, SharedStats, Time};
use sluice_h2::{ClientRequest, H2App, H2Client, H2ClientConfig, H2Config, H2Event};

struct Pair {
    client: H2Client,
    server: H2App,
}

impl Pair {
    fn new(cfg: H2ClientConfig) -> Self {
        let date = LoopDate::new();
        date.set_unix_time(0);
        let server = H2App::new(
            Rc::new(H2Config::default()),
            date,
            SharedStats::default(),
            &ConnContext::default(),
            Time::ZERO,
        );
        Pair {
            client: H2Client::new(cfg),
            server,
        }
    }

    /// Moves bytes both ways until nothing moves (bounded).
    fn pump(&mut self) {
        let mut buf = vec![0u8; 16 * 1024];
        for _ in 0..10_000 {
            let mut moved = false;
            let n = self.client.poll_write(&mut buf);
            if n > 0 {
                let mut at = 0;
                while at < n {
                    let took = self.server.on_read(Time::ZERO, &buf[at..n]);
                    assert!(took > 0, "server stopped reading");
                    at += took;
                }
                moved = true;
            }
            let n = self.server.poll_write(Time::ZERO, &mut buf);
            if n > 0 {
                let mut at = 0;
                while at < n {
                    let took = self.client.on_read(&buf[at..n]);
                    assert!(took > 0, "client stopped reading");
                    at += took;
                }
                moved = true;
            }
            if !moved {
                return;
            }
        }
        panic!("pump did not settle");
    }

    /// Events of every stream so far; data released as it is taken.
    fn events(&mut self) -> Vec<(u32, H2Event)> {
        let mut out = Vec::new();
        while let Some((k, ev)) = self.client.poll_event() {
            if let H2Event::Data(d) = &ev {
                self.client.release(k, d.len());
            }
            out.push((k, ev));
        }
        out
    }
}

/// A request without fields (a `HeaderMap::new()` allocates nothing).
static NO_FIELDS: std::sync::LazyLock<http::HeaderMap> =
    std::sync::LazyLock::new(http::HeaderMap::new);

fn get(path: &'static [u8]) -> ClientRequest<'static> {
    ClientRequest {
        method: b"GET",
        scheme: "http",
        authority: b"backend",
        path,
        headers: &NO_FIELDS,
        end_stream: true,
    }
}

fn body_of(events: &[(u32, H2Event)], key: u32) -> (u16, Vec<u8>, bool) {
    let mut status = 0;
    let mut body = Vec::new();
    let mut ended = false;
    for (k, ev) in events {
        if *k != key {
            continue;
        }
        match ev {
            H2Event::Head { status: s, .. } => status = *s,
            H2Event::Data(d) => body.extend_from_slice(d),
            H2Event::End => ended = true,
            H2Event::Failed(f) => panic!("stream {key} failed: {f:?}"),
            H2Event::Trailers(_) => {}
        }
    }
    (status, body, ended)
}

#[test]
fn many_streams_on_one_connection_with_bodies_past_the_windows() {
    let mut p = Pair::new(H2ClientConfig {
        stream_window: 16 * 1024,
        connection_window: 64 * 1024,
        ..H2ClientConfig::default()
    });
    p.pump();
    let mut all = Vec::new();
    let mut keys = Vec::new();
    for _ in 0..10 {
        keys.push(p.client.send_request(get(b"/bytes/100000")).unwrap());
    }
    assert_eq!(p.client.active(), 10);
    for _ in 0..200 {
        p.pump();
        let evs = p.events();
        if evs.is_empty() && p.client.active() == 0 {
            break;
        }
        all.extend(evs);
    }
    for k in keys {
        let (status, body, ended) = body_of(&all, k);
        assert_eq!(status, 200);
        assert_eq!(body.len(), 100_000);
        assert!(ended);
    }
    assert_eq!(p.client.active(), 0);
    assert!(p.client.available() > 0);
}

#[test]
fn request_body_flows_through_the_send_window() {
    let mut p = Pair::new(H2ClientConfig::default());
    p.pump();
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let k = p
        .client
        .send_request(ClientRequest {
            method: b"POST",
            end_stream: false,
            ..get(b"/echo")
        })
        .unwrap();
    p.client.send_data(k, &payload);
    p.client.end_request(k, None);
    let mut all = Vec::new();
    for _ in 0..200 {
        p.pump();
        let evs = p.events();
        if evs.is_empty() && p.client.active() == 0 {
            break;
        }
        all.extend(evs);
    }
    let (status, body, ended) = body_of(&all, k);
    assert_eq!(status, 200);
    assert!(ended);
    assert_eq!(body, payload);
    assert_eq!(p.client.unsent(k), 0);
}

#[test]
fn a_reset_stream_frees_its_slot_and_the_connection_goes_on() {
    let mut p = Pair::new(H2ClientConfig {
        max_streams: 2,
        ..H2ClientConfig::default()
    });
    p.pump();
    let a = p.client.send_request(get(b"/bytes/1000000")).unwrap();
    let _b = p.client.send_request(get(b"/bytes/10")).unwrap();
    assert_eq!(p.client.available(), 0);
    assert!(p.client.send_request(get(b"/health")).is_err());
    p.client.reset(a);
    assert_eq!(p.client.available(), 1);
    p.pump();
    let c = p.client.send_request(get(b"/bytes/5")).unwrap();
    let mut all = Vec::new();
    for _ in 0..100 {
        p.pump();
        let evs = p.events();
        if evs.is_empty() {
            break;
        }
        all.extend(evs);
    }
    // Nothing of the abandoned stream arrives under its (reused) key.
    let (status, body, _) = body_of(&all, c);
    assert_eq!((status, body.len()), (200, 5));
}

#[test]
fn server_eof_fails_open_streams_and_ends_the_connection() {
    let mut p = Pair::new(H2ClientConfig::default());
    p.pump();
    let k = p.client.send_request(get(b"/bytes/10")).unwrap();
    // The request never reaches the server: the connection just ends.
    p.client.on_read_eof();
    let evs = p.events();
    assert!(
        evs.iter()
            .any(|(key, ev)| *key == k && matches!(ev, H2Event::Failed(_))),
        "{evs:?}"
    );
    assert!(p.client.ended().is_some());
    assert_eq!(p.client.available(), 0);
}

#[test]
fn a_body_fed_in_small_pieces_uses_the_window_left_over() {
    // Regression: h2's poll_capacity is Ready only when the window grows;
    // capacity left from an earlier grant must still be used.
    let mut p = Pair::new(H2ClientConfig::default());
    p.pump();
    let k = p
        .client
        .send_request(ClientRequest {
            method: b"POST",
            end_stream: false,
            ..get(b"/echo")
        })
        .unwrap();
    let payload: Vec<u8> = (0..150_000u32).map(|i| (i % 241) as u8).collect();
    let mut all = Vec::new();
    for piece in payload.chunks(1000) {
        p.client.send_data(k, piece);
        p.pump();
        all.extend(p.events());
    }
    p.client.end_request(k, None);
    for _ in 0..100 {
        p.pump();
        let evs = p.events();
        if evs.is_empty() && p.client.active() == 0 {
            break;
        }
        all.extend(evs);
    }
    let (status, body, ended) = body_of(&all, k);
    assert_eq!((status, ended), (200, true));
    assert_eq!(body, payload);
}
