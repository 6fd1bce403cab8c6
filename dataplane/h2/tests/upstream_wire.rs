//! The upstream client ([`H2Client`]) frame by frame against a scripted
//! backend: what it writes is parsed and checked, what the backend
//! "sends" is built with sluice-h2codec's writers and HPACK encoder. Each
//! test pins one rule of RFC 9113 the client must keep.

use http::HeaderMap;
use sluice_h2::{ClientRequest, H2Client, H2ClientConfig, H2Event, StreamFailure};
use sluice_h2codec::frame::{self, setting, ErrorCode, Frame};
use sluice_h2codec::hpack::{Decoder, Encoder};

/// A frame the client wrote, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Wrote {
    Headers {
        stream: u32,
        end_stream: bool,
        fields: Vec<(String, String, bool)>,
    },
    Data {
        stream: u32,
        len: usize,
        end_stream: bool,
    },
    Rst(u32, u32),
    Settings(Vec<(u16, u32)>),
    SettingsAck,
    Ping(bool, [u8; 8]),
    Window(u32, u32),
    GoAway(u32, u32),
    Other(String),
}

struct Backend {
    client: H2Client,
    enc: Encoder,
    dec: Decoder,
    preface_seen: bool,
    pending: Vec<u8>,
}

impl Backend {
    fn new(cfg: H2ClientConfig) -> Self {
        Backend {
            client: H2Client::new(cfg),
            enc: Encoder::new(),
            dec: Decoder::new(4096),
            preface_seen: false,
            pending: Vec::new(),
        }
    }

    /// Everything the client wrote since the last call, parsed.
    fn wrote(&mut self) -> Vec<Wrote> {
        let mut buf = [0u8; 4096];
        loop {
            let n = self.client.poll_write(&mut buf);
            if n == 0 {
                break;
            }
            self.pending.extend_from_slice(&buf[..n]);
        }
        let mut at = 0;
        if !self.preface_seen {
            assert_eq!(&self.pending[..24], frame::PREFACE);
            self.preface_seen = true;
            at = 24;
        }
        let mut out = Vec::new();
        while let Some((r, used)) = frame::parse_from(&self.pending[at..], 1 << 20) {
            at += used;
            let f = r.expect("the client writes valid frames");
            out.push(match f {
                Frame::Headers {
                    stream,
                    end_stream,
                    end_headers,
                    fragment,
                    ..
                } => {
                    assert!(end_headers, "test blocks fit one frame");
                    let mut fields = Vec::new();
                    self.dec
                        .decode(fragment, |f| {
                            fields.push((
                                String::from_utf8_lossy(f.name).into_owned(),
                                String::from_utf8_lossy(f.value).into_owned(),
                                f.never_index,
                            ))
                        })
                        .expect("valid HPACK");
                    Wrote::Headers {
                        stream,
                        end_stream,
                        fields,
                    }
                }
                Frame::Data {
                    stream,
                    end_stream,
                    data,
                    ..
                } => Wrote::Data {
                    stream,
                    len: data.len(),
                    end_stream,
                },
                Frame::RstStream { stream, code } => Wrote::Rst(stream, code),
                Frame::Settings { ack: true, .. } => Wrote::SettingsAck,
                Frame::Settings { ack: false, params } => Wrote::Settings(params.iter().collect()),
                Frame::Ping { ack, data } => Wrote::Ping(ack, data),
                Frame::WindowUpdate { stream, increment } => Wrote::Window(stream, increment),
                Frame::GoAway {
                    last_stream, code, ..
                } => Wrote::GoAway(last_stream, code),
                other => Wrote::Other(format!("{other:?}")),
            });
        }
        self.pending.drain(..at);
        out
    }

    fn send(&mut self, bytes: &[u8]) {
        let took = self.client.on_read(bytes);
        assert_eq!(took, bytes.len());
    }

    /// A response head (or trailers) on `stream`.
    fn headers(&mut self, stream: u32, fields: &[(&str, &str)], end_stream: bool) -> Vec<u8> {
        let mut block = Vec::new();
        self.enc.begin_block(&mut block);
        for (n, v) in fields {
            self.enc.encode(n.as_bytes(), v.as_bytes(), &mut block);
        }
        let mut out = Vec::new();
        frame::write_headers(&mut out, stream, &block, end_stream, 16_384);
        out
    }

    fn events(&mut self) -> Vec<(u32, H2Event)> {
        std::iter::from_fn(|| self.client.poll_event()).collect()
    }

    /// The handshake: the client's preface and SETTINGS, ours, the acks.
    fn open(cfg: H2ClientConfig, settings: &[(u16, u32)]) -> Self {
        let mut b = Backend::new(cfg);
        let first = b.wrote();
        assert!(matches!(first[0], Wrote::Settings(_)), "{first:?}");
        let mut s = Vec::new();
        frame::write_settings(&mut s, settings);
        frame::write_settings_ack(&mut s);
        b.send(&s);
        assert_eq!(b.wrote(), vec![Wrote::SettingsAck]);
        b
    }
}

static NO_FIELDS: std::sync::LazyLock<HeaderMap> = std::sync::LazyLock::new(HeaderMap::new);

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

#[test]
fn the_opening_says_no_push_our_windows_and_the_connection_window() {
    let mut b = Backend::new(H2ClientConfig {
        stream_window: 100_000,
        connection_window: 1 << 20,
        ..H2ClientConfig::default()
    });
    let w = b.wrote();
    assert_eq!(
        w,
        vec![
            Wrote::Settings(vec![
                (setting::ENABLE_PUSH, 0),
                (setting::INITIAL_WINDOW_SIZE, 100_000),
                (setting::MAX_HEADER_LIST_SIZE, 64 * 1024),
            ]),
            Wrote::Window(0, (1 << 20) - 65_535),
        ]
    );
}

#[test]
fn a_request_is_encoded_once_with_pseudo_fields_first_and_secrets_never_indexed() {
    let mut b = Backend::open(H2ClientConfig::default(), &[]);
    let mut fields = HeaderMap::new();
    fields.insert("x-one", "1".parse().unwrap());
    let mut secret: http::HeaderValue = "Bearer t".parse().unwrap();
    secret.set_sensitive(true);
    fields.insert("authorization", secret);
    let k = b
        .client
        .send_request(ClientRequest {
            headers: &fields,
            ..get(b"/a?b")
        })
        .unwrap();
    let w = b.wrote();
    let s = |n: &str, v: &str, never: bool| (n.to_string(), v.to_string(), never);
    assert_eq!(
        w,
        vec![Wrote::Headers {
            stream: 1,
            end_stream: true,
            fields: vec![
                s(":method", "GET", false),
                s(":scheme", "http", false),
                s(":authority", "backend", false),
                s(":path", "/a?b", false),
                s("x-one", "1", false),
                s("authorization", "Bearer t", true),
            ],
        }]
    );
    // Stream ids go up by two; keys are ours.
    let k2 = b.client.send_request(get(b"/")).unwrap();
    assert_ne!(k, k2);
    assert!(matches!(b.wrote()[0], Wrote::Headers { stream: 3, .. }));
}

#[test]
fn connection_specific_fields_are_refused_not_sent() {
    let mut b = Backend::open(H2ClientConfig::default(), &[]);
    let mut fields = HeaderMap::new();
    fields.insert("connection", "close".parse().unwrap());
    let r = b.client.send_request(ClientRequest {
        headers: &fields,
        ..get(b"/")
    });
    assert_eq!(r, Err(sluice_h2::SendError::Invalid));
    assert_eq!(b.wrote(), vec![]);
    assert!(
        b.client.send_request(get(b"/\n")).is_err(),
        "control byte in :path"
    );
}

#[test]
fn a_response_split_byte_by_byte_gives_the_same_events() {
    let mut b = Backend::open(H2ClientConfig::default(), &[]);
    let k = b.client.send_request(get(b"/")).unwrap();
    b.wrote();
    let mut bytes = b.headers(
        1,
        &[(":status", "200"), ("content-length", "5"), ("server", "t")],
        false,
    );
    frame::write_data(&mut bytes, 1, b"hello", true, 16_384);
    for byte in &bytes {
        b.send(std::slice::from_ref(byte));
    }
    let ev = b.events();
    assert_eq!(ev.len(), 3, "{ev:?}");
    match &ev[0] {
        (
            key,
            H2Event::Head {
                status,
                headers,
                end_stream,
            },
        ) => {
            assert_eq!((*key, *status, *end_stream), (k, 200, false));
            assert_eq!(headers["server"], "t");
            assert_eq!(headers["content-length"], "5");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(&ev[1], (_, H2Event::Data(d)) if &d[..] == b"hello"));
    assert!(matches!(ev[2], (_, H2Event::End)));
    assert_eq!(b.client.active(), 0);
}

#[test]
fn interim_responses_are_skipped_and_trailers_end_the_stream() {
    let mut b = Backend::open(H2ClientConfig::default(), &[]);
    let k = b.client.send_request(get(b"/")).unwrap();
    let mut bytes = b.headers(1, &[(":status", "103"), ("link", "</a>")], false);
    bytes.extend(b.headers(1, &[(":status", "200")], false));
    frame::write_data(&mut bytes, 1, b"x", false, 16_384);
    bytes.extend(b.headers(1, &[("grpc-status", "0")], true));
    b.send(&bytes);
    let ev = b.events();
    assert!(
        matches!(ev[0], (_, H2Event::Head { status: 200, .. })),
        "{ev:?}"
    );
    assert!(matches!(&ev[1], (_, H2Event::Data(d)) if &d[..] == b"x"));
    assert!(matches!(&ev[2], (key, H2Event::Trailers(t)) if *key == k && t["grpc-status"] == "0"));
    assert!(matches!(ev[3], (_, H2Event::End)));
}

#[test]
fn malformed_responses_reset_only_their_stream() {
    type Case<'a> = (&'a [(&'a str, &'a str)], bool, &'a str);
    let cases: &[Case] = &[
        (
            &[(":status", "200"), ("Upper", "x")],
            true,
            "uppercase name",
        ),
        (
            &[("x", "1"), (":status", "200")],
            true,
            "pseudo after regular",
        ),
        (
            &[(":status", "200"), ("connection", "close")],
            true,
            "connection-specific",
        ),
        (
            &[(":status", "200"), ("content-length", "3")],
            true,
            "content-length without body",
        ),
        (&[(":path", "/")], true, "request pseudo in a response"),
    ];
    for (fields, end, why) in cases {
        let mut b = Backend::open(H2ClientConfig::default(), &[]);
        let k = b.client.send_request(get(b"/")).unwrap();
        let other = b.client.send_request(get(b"/")).unwrap();
        b.wrote();
        let bytes = b.headers(1, fields, *end);
        b.send(&bytes);
        let ev = b.events();
        assert!(
            ev.iter()
                .any(|(key, e)| *key == k && matches!(e, H2Event::Failed(StreamFailure::Protocol))),
            "{why}: {ev:?}"
        );
        assert_eq!(
            b.wrote(),
            vec![Wrote::Rst(1, ErrorCode::ProtocolError as u32)],
            "{why}"
        );
        // The connection and the other stream go on.
        let ok = b.headers(3, &[(":status", "204")], true);
        b.send(&ok);
        let ev = b.events();
        assert!(
            matches!(ev[..], [(k2, H2Event::Head { status: 204, .. }), (_, H2Event::End)] if k2 == other),
            "{why}: {ev:?}"
        );
    }
}

#[test]
fn a_body_longer_than_its_content_length_is_a_protocol_failure() {
    let mut b = Backend::open(H2ClientConfig::default(), &[]);
    let k = b.client.send_request(get(b"/")).unwrap();
    b.wrote();
    let mut bytes = b.headers(1, &[(":status", "200"), ("content-length", "2")], false);
    frame::write_data(&mut bytes, 1, b"abc", true, 16_384);
    b.send(&bytes);
    let ev = b.events();
    assert!(
        matches!(ev.last(), Some((key, H2Event::Failed(StreamFailure::Protocol))) if *key == k),
        "{ev:?}"
    );
}

#[test]
fn goaway_refuses_the_streams_above_its_last_id_and_the_rest_finish() {
    let mut b = Backend::open(H2ClientConfig::default(), &[]);
    let k1 = b.client.send_request(get(b"/")).unwrap();
    let k3 = b.client.send_request(get(b"/")).unwrap();
    b.wrote();
    let mut g = Vec::new();
    frame::write_goaway(&mut g, 1, ErrorCode::NoError, b"");
    b.send(&g);
    let ev = b.events();
    assert!(
        matches!(ev[..], [(k, H2Event::Failed(StreamFailure::Refused))] if k == k3),
        "{ev:?}"
    );
    assert!(b.client.going_away());
    assert_eq!(b.client.available(), 0);
    assert_eq!(b.client.ended(), None, "stream 1 still runs");
    let done = b.headers(1, &[(":status", "200")], true);
    b.send(&done);
    let ev = b.events();
    assert!(
        matches!(ev[..], [(k, H2Event::Head { .. }), (_, H2Event::End)] if k == k1),
        "{ev:?}"
    );
    assert_eq!(b.client.ended(), Some(true), "the last stream closes it");
}

#[test]
fn refused_stream_resets_are_safe_to_retry_and_others_are_not() {
    let mut b = Backend::open(H2ClientConfig::default(), &[]);
    let k1 = b.client.send_request(get(b"/")).unwrap();
    let k3 = b.client.send_request(get(b"/")).unwrap();
    let mut r = Vec::new();
    frame::write_rst_stream(&mut r, 1, ErrorCode::RefusedStream);
    frame::write_rst_stream(&mut r, 3, ErrorCode::InternalError);
    b.send(&r);
    let ev = b.events();
    assert!(
        matches!(ev[..], [
        (a, H2Event::Failed(StreamFailure::Refused)),
        (c, H2Event::Failed(StreamFailure::Reset)),
    ] if a == k1 && c == k3),
        "{ev:?}"
    );
}

#[test]
fn pings_are_answered_and_the_peer_stream_limit_holds() {
    let mut b = Backend::open(
        H2ClientConfig::default(),
        &[(setting::MAX_CONCURRENT_STREAMS, 1)],
    );
    assert_eq!(b.client.available(), 1);
    b.client.send_request(get(b"/")).unwrap();
    assert_eq!(b.client.available(), 0);
    assert!(b.client.send_request(get(b"/")).is_err());
    let mut p = Vec::new();
    frame::write_ping(&mut p, false, *b"12345678");
    b.send(&p);
    let w = b.wrote();
    assert_eq!(w.last(), Some(&Wrote::Ping(true, *b"12345678")));
}

#[test]
fn request_body_waits_for_window_and_a_larger_initial_window_releases_it() {
    // The backend starts every stream with a 10-byte window.
    let mut b = Backend::open(
        H2ClientConfig::default(),
        &[(setting::INITIAL_WINDOW_SIZE, 10)],
    );
    let k = b
        .client
        .send_request(ClientRequest {
            method: b"POST",
            end_stream: false,
            ..get(b"/")
        })
        .unwrap();
    b.client.send_data(k, &[7u8; 25]);
    b.client.end_request(k, None);
    let w = b.wrote();
    assert_eq!(
        w[1..],
        [Wrote::Data {
            stream: 1,
            len: 10,
            end_stream: false
        }]
    );
    assert_eq!(b.client.unsent(k), 15);
    // SETTINGS raising the initial window grows open streams' windows
    // by the difference (RFC 9113 §6.9.2).
    let mut s = Vec::new();
    frame::write_settings(&mut s, &[(setting::INITIAL_WINDOW_SIZE, 20)]);
    b.send(&s);
    let w = b.wrote();
    assert_eq!(
        w,
        vec![
            Wrote::SettingsAck,
            Wrote::Data {
                stream: 1,
                len: 10,
                end_stream: false
            }
        ]
    );
    let mut u = Vec::new();
    frame::write_window_update(&mut u, 1, 100);
    b.send(&u);
    assert_eq!(
        b.wrote(),
        vec![Wrote::Data {
            stream: 1,
            len: 5,
            end_stream: true
        }]
    );
    assert_eq!(b.client.unsent(k), 0);
}

#[test]
fn released_bytes_are_given_back_in_batches_and_ended_streams_return_theirs() {
    let cfg = H2ClientConfig {
        stream_window: 1000,
        connection_window: 65_535,
        ..H2ClientConfig::default()
    };
    let mut b = Backend::open(cfg, &[]);
    let k = b.client.send_request(get(b"/")).unwrap();
    b.wrote();
    let mut bytes = b.headers(1, &[(":status", "200")], false);
    frame::write_data(&mut bytes, 1, &[1u8; 400], false, 16_384);
    frame::write_data(&mut bytes, 1, &[1u8; 400], false, 16_384);
    b.send(&bytes);
    b.events();
    b.client.release(k, 400);
    assert_eq!(b.wrote(), vec![], "below half the stream window");
    b.client.release(k, 400);
    assert_eq!(b.wrote(), vec![Wrote::Window(1, 800)]);
    // 600 more, never released: the stream ends, and the connection gets
    // them back anyway (the key can no longer release them).
    let mut bytes = Vec::new();
    frame::write_data(&mut bytes, 1, &[1u8; 600], true, 16_384);
    b.send(&bytes);
    b.events();
    // 1400 of 65535 so far: below the batching threshold.
    assert_eq!(b.wrote(), vec![]);
    // Drive enough ended streams through to pass half the window.
    for i in 0..40u32 {
        let id = 3 + 2 * i;
        b.client.send_request(get(b"/")).unwrap();
        let mut bytes = b.headers(id, &[(":status", "200")], false);
        frame::write_data(&mut bytes, id, &[1u8; 900], true, 16_384);
        b.send(&bytes);
        b.events();
    }
    let w = b.wrote();
    assert!(
        w.iter()
            .any(|f| matches!(f, Wrote::Window(0, n) if *n >= 32_767)),
        "{w:?}"
    );
}

#[test]
fn data_on_an_idle_stream_is_a_connection_error() {
    let mut b = Backend::open(H2ClientConfig::default(), &[]);
    let k = b.client.send_request(get(b"/")).unwrap();
    b.wrote();
    let mut bytes = Vec::new();
    frame::write_data(&mut bytes, 5, b"x", false, 16_384);
    b.send(&bytes);
    assert_eq!(
        b.wrote(),
        vec![Wrote::GoAway(0, ErrorCode::ProtocolError as u32)]
    );
    let ev = b.events();
    assert!(matches!(ev[..], [(key, H2Event::Failed(StreamFailure::Protocol))] if key == k));
    assert_eq!(b.client.ended(), Some(false));
}

#[test]
fn a_bad_hpack_block_ends_the_connection_with_compression_error() {
    let mut b = Backend::open(H2ClientConfig::default(), &[]);
    b.client.send_request(get(b"/")).unwrap();
    b.wrote();
    let mut bytes = Vec::new();
    // Index 0 is never valid (RFC 7541 §6.1).
    frame::write_headers(&mut bytes, 1, &[0x80], false, 16_384);
    b.send(&bytes);
    assert_eq!(
        b.wrote(),
        vec![Wrote::GoAway(0, ErrorCode::CompressionError as u32)]
    );
}

#[test]
fn a_reset_key_gets_no_more_events_and_late_frames_are_ignored() {
    let mut b = Backend::open(H2ClientConfig::default(), &[]);
    let k = b.client.send_request(get(b"/")).unwrap();
    b.wrote();
    b.client.reset(k);
    assert_eq!(b.wrote(), vec![Wrote::Rst(1, ErrorCode::Cancel as u32)]);
    // The backend had already answered: decoded (HPACK stays in step),
    // then dropped; the DATA goes back to the connection window.
    let mut bytes = b.headers(1, &[(":status", "200"), ("x-late", "1")], false);
    frame::write_data(&mut bytes, 1, &[0u8; 100], true, 16_384);
    b.send(&bytes);
    assert!(b.events().is_empty());
    let k2 = b.client.send_request(get(b"/")).unwrap();
    let bytes = b.headers(3, &[(":status", "200"), ("x-late", "1")], true);
    b.send(&bytes);
    let ev = b.events();
    assert!(
        matches!(&ev[0], (key, H2Event::Head { headers, .. }) if *key == k2 && headers["x-late"] == "1"),
        "{ev:?}"
    );
}
