//! The downstream server connection ([`ServerConn`]) frame by frame
//! against a scripted client: what the client "sends" is built with
//! sluice-h2codec's writers and HPACK encoder, what the server writes is
//! parsed and checked. Each test pins one rule of RFC 9113.

use http::HeaderMap;
use sluice_h2::{ServerConn, ServerConnConfig, ServerEvent};
use sluice_h2codec::frame::{self, setting, ErrorCode, Frame};
use sluice_h2codec::hpack::{Decoder, Encoder};

/// A frame the server wrote, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Wrote {
    Headers {
        stream: u32,
        end_stream: bool,
        fields: Vec<(String, String, bool)>,
        /// The block, as encoded.
        block: Vec<u8>,
        /// HEADERS + CONTINUATION frames it took.
        frames: usize,
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
}

const PE: u32 = ErrorCode::ProtocolError as u32;
const FCE: u32 = ErrorCode::FlowControlError as u32;

struct Client {
    conn: ServerConn,
    enc: Encoder,
    dec: Decoder,
    pending: Vec<u8>,
    /// A header block being assembled from CONTINUATION frames.
    open_block: Option<(u32, bool, Vec<u8>, usize)>,
}

impl Client {
    fn new(cfg: ServerConnConfig) -> Self {
        Client {
            conn: ServerConn::new(cfg),
            enc: Encoder::new(),
            dec: Decoder::new(4096),
            pending: Vec::new(),
            open_block: None,
        }
    }

    /// Everything the server wrote since the last call, parsed.
    fn wrote(&mut self) -> Vec<Wrote> {
        let mut buf = [0u8; 4096];
        loop {
            let n = self.conn.poll_write(&mut buf);
            if n == 0 {
                break;
            }
            self.pending.extend_from_slice(&buf[..n]);
        }
        let mut at = 0;
        let mut out = Vec::new();
        while let Some((r, used)) = frame::parse_from(&self.pending[at..], 1 << 20) {
            at += used;
            let f = r.expect("the server writes valid frames");
            let done = match f {
                Frame::Headers {
                    stream,
                    end_stream,
                    end_headers,
                    fragment,
                    ..
                } => {
                    assert!(self.open_block.is_none(), "HEADERS inside a block");
                    self.open_block = Some((stream, end_stream, fragment.to_vec(), 1));
                    end_headers
                }
                Frame::Continuation {
                    stream,
                    end_headers,
                    fragment,
                } => {
                    let b = self
                        .open_block
                        .as_mut()
                        .expect("CONTINUATION without HEADERS");
                    assert_eq!(b.0, stream);
                    b.2.extend_from_slice(fragment);
                    b.3 += 1;
                    end_headers
                }
                other => {
                    assert!(self.open_block.is_none(), "{other:?} inside a header block");
                    out.push(match other {
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
                        Frame::Settings { ack: false, params } => {
                            Wrote::Settings(params.iter().collect())
                        }
                        Frame::Ping { ack, data } => Wrote::Ping(ack, data),
                        Frame::WindowUpdate { stream, increment } => {
                            Wrote::Window(stream, increment)
                        }
                        Frame::GoAway {
                            last_stream, code, ..
                        } => Wrote::GoAway(last_stream, code),
                        other => panic!("unexpected frame {other:?}"),
                    });
                    false
                }
            };
            if done {
                let (stream, end_stream, block, frames) = self.open_block.take().unwrap();
                let mut fields = Vec::new();
                self.dec
                    .decode(&block, |f| {
                        fields.push((
                            String::from_utf8_lossy(f.name).into_owned(),
                            String::from_utf8_lossy(f.value).into_owned(),
                            f.never_index,
                        ))
                    })
                    .expect("valid HPACK");
                out.push(Wrote::Headers {
                    stream,
                    end_stream,
                    fields,
                    block,
                    frames,
                });
            }
        }
        self.pending.drain(..at);
        out
    }

    fn send(&mut self, bytes: &[u8]) {
        assert_eq!(self.conn.on_read(bytes), bytes.len());
    }

    fn block(&mut self, fields: &[(&str, &str)]) -> Vec<u8> {
        let mut block = Vec::new();
        self.enc.begin_block(&mut block);
        for (n, v) in fields {
            self.enc.encode(n.as_bytes(), v.as_bytes(), &mut block);
        }
        block
    }

    /// A HEADERS frame (one frame, END_HEADERS).
    fn headers(&mut self, stream: u32, fields: &[(&str, &str)], end_stream: bool) {
        let block = self.block(fields);
        let mut out = Vec::new();
        frame::write_headers(&mut out, stream, &block, end_stream, 1 << 20);
        self.send(&out);
    }

    fn request(&mut self, stream: u32, method: &str, path: &str, end_stream: bool) {
        self.headers(
            stream,
            &[
                (":method", method),
                (":scheme", "https"),
                (":authority", "example.com"),
                (":path", path),
            ],
            end_stream,
        );
    }

    fn data(&mut self, stream: u32, data: &[u8], end_stream: bool) {
        let mut out = Vec::new();
        if data.is_empty() && !end_stream {
            frame::write_head(&mut out, 0, frame::DATA, 0, stream);
        }
        frame::write_data(&mut out, stream, data, end_stream, 16_384);
        self.send(&out);
    }

    fn raw(&mut self, f: impl FnOnce(&mut Vec<u8>)) {
        let mut out = Vec::new();
        f(&mut out);
        self.send(&out);
    }

    fn events(&mut self) -> Vec<(u32, ServerEvent)> {
        std::iter::from_fn(|| self.conn.poll_event()).collect()
    }

    /// Preface, the client's SETTINGS, the server's opening consumed, its
    /// SETTINGS acknowledged.
    fn open(cfg: ServerConnConfig, settings: &[(u16, u32)]) -> Self {
        let mut c = Client::new(cfg);
        c.send(frame::PREFACE);
        let mut s = Vec::new();
        frame::write_settings(&mut s, settings);
        frame::write_settings_ack(&mut s);
        c.send(&s);
        let w = c.wrote();
        assert!(matches!(w[0], Wrote::Settings(_)), "{w:?}");
        assert_eq!(w.last(), Some(&Wrote::SettingsAck), "{w:?}");
        c
    }

    fn open_default() -> Self {
        Client::open(ServerConnConfig::default(), &[])
    }

    /// The key of the one request event expected now.
    fn request_key(&mut self) -> u32 {
        let ev = self.events();
        assert_eq!(ev.len(), 1, "{ev:?}");
        assert!(matches!(ev[0].1, ServerEvent::Request { .. }), "{ev:?}");
        ev[0].0
    }
}

fn cfg() -> ServerConnConfig {
    ServerConnConfig::default()
}

fn map(fields: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut m = HeaderMap::new();
    for (n, v) in fields {
        m.append(*n, v.parse().unwrap());
    }
    m
}

fn names(w: &Wrote) -> Vec<(String, String)> {
    match w {
        Wrote::Headers { fields, .. } => fields
            .iter()
            .map(|(n, v, _)| (n.clone(), v.clone()))
            .collect(),
        other => panic!("not HEADERS: {other:?}"),
    }
}

fn s(n: &str, v: &str) -> (String, String) {
    (n.to_string(), v.to_string())
}

#[test]
fn the_opening_announces_our_settings_and_the_connection_window() {
    let mut c = Client::new(ServerConnConfig {
        initial_stream_window: 100_000,
        connection_window: 1 << 20,
        max_frame_size: 32_768,
        max_concurrent_streams: 7,
        max_header_list_size: 8192,
        write_cap: 65_536,
    });
    assert_eq!(
        c.wrote(),
        vec![
            Wrote::Settings(vec![
                (setting::MAX_CONCURRENT_STREAMS, 7),
                (setting::INITIAL_WINDOW_SIZE, 100_000),
                (setting::MAX_FRAME_SIZE, 32_768),
                (setting::MAX_HEADER_LIST_SIZE, 8192),
            ]),
            Wrote::Window(0, (1 << 20) - 65_535),
        ]
    );
    // From H2Config: out-of-range values are clamped.
    let h = sluice_h2::H2Config {
        max_frame_size: 1,
        connection_window: 10,
        initial_stream_window: u32::MAX,
        ..sluice_h2::H2Config::default()
    };
    let sc = ServerConnConfig::from_h2(&h);
    assert_eq!(sc.max_frame_size, 16_384);
    assert_eq!(sc.connection_window, 65_535);
    assert_eq!(sc.initial_stream_window, (1 << 31) - 1);
}

#[test]
fn a_bad_preface_is_a_protocol_error() {
    let mut c = Client::new(cfg());
    c.wrote();
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(c.wrote(), vec![Wrote::GoAway(0, PE)]);
    assert_eq!(c.conn.ended(), Some(false));
}

#[test]
fn the_preface_may_come_byte_by_byte_or_be_consumed_by_the_listener() {
    let mut c = Client::new(cfg());
    c.wrote();
    let mut bytes = frame::PREFACE.to_vec();
    frame::write_settings(&mut bytes, &[]);
    for b in &bytes {
        c.send(std::slice::from_ref(b));
    }
    assert_eq!(c.wrote(), vec![Wrote::SettingsAck]);

    let mut c = Client {
        conn: ServerConn::new_after_preface(cfg()),
        ..Client::new(cfg())
    };
    c.wrote();
    c.raw(|o| frame::write_settings(o, &[]));
    assert_eq!(c.wrote(), vec![Wrote::SettingsAck]);
    assert_eq!(c.conn.ended(), None);
}

#[test]
fn the_first_frame_after_the_preface_must_be_settings() {
    let mut c = Client::new(cfg());
    c.wrote();
    c.send(frame::PREFACE);
    c.raw(|o| frame::write_ping(o, false, [1; 8]));
    assert_eq!(c.wrote(), vec![Wrote::GoAway(0, PE)]);
}

#[test]
fn a_request_and_its_response_with_status_fast_path_and_secrets_never_indexed() {
    let mut c = Client::open_default();
    c.headers(
        1,
        &[
            (":method", "GET"),
            (":scheme", "https"),
            (":authority", "example.com"),
            (":path", "/a?b"),
            ("user-agent", "t"),
            ("te", "trailers"),
        ],
        true,
    );
    let ev = c.events();
    assert_eq!(ev.len(), 1);
    let (k, ServerEvent::Request { head, end_stream }) = &ev[0] else {
        panic!("{ev:?}");
    };
    assert!(*end_stream);
    assert_eq!(head.method, http::Method::GET);
    assert_eq!(head.scheme.as_deref(), Some(&b"https"[..]));
    assert_eq!(head.authority.as_deref(), Some(&b"example.com"[..]));
    assert_eq!(&head.path[..], b"/a?b");
    assert_eq!(head.headers["user-agent"], "t");
    assert_eq!(c.conn.active(), 1);

    let mut secret: http::HeaderValue = "id=1".parse().unwrap();
    secret.set_sensitive(true);
    let mut fields = map(&[("server", "sluice"), ("connection", "close")]);
    fields.insert("set-cookie", secret);
    c.conn.send_response(*k, 200, &fields, true);
    let w = c.wrote();
    assert_eq!(w.len(), 1, "{w:?}");
    let Wrote::Headers {
        stream: 1,
        end_stream: true,
        fields,
        block,
        ..
    } = &w[0]
    else {
        panic!("{w:?}");
    };
    assert_eq!(block[0], 0x88, "static index 8 is :status 200");
    assert_eq!(
        fields,
        &vec![
            (":status".into(), "200".into(), false),
            ("server".into(), "sluice".into(), false),
            ("set-cookie".into(), "id=1".into(), true),
        ],
        "connection-specific fields dropped, secrets never indexed"
    );
    assert_eq!(c.conn.active(), 0);
    let counts = c.conn.take_frame_counts();
    assert_eq!((counts.requests, counts.responses), (1, 1));
}

#[test]
fn stream_ids_must_be_odd() {
    let mut c = Client::open_default();
    c.request(2, "GET", "/", true);
    assert_eq!(c.wrote(), vec![Wrote::GoAway(0, PE)]);
    assert_eq!(c.conn.ended(), Some(false));
}

#[test]
fn stream_ids_must_grow() {
    let mut c = Client::open_default();
    c.request(5, "GET", "/", true);
    let k = c.request_key();
    c.conn.send_response(k, 204, &HeaderMap::new(), true);
    c.wrote();
    c.request(3, "GET", "/", true);
    assert_eq!(c.wrote(), vec![Wrote::GoAway(5, PE)]);
    assert!(c.events().is_empty());
}

#[test]
fn headers_on_a_closed_stream_are_stream_closed_and_hpack_stays_in_step() {
    let mut c = Client::open_default();
    c.request(1, "GET", "/", true);
    let k = c.request_key();
    c.conn.send_response(k, 200, &HeaderMap::new(), true);
    c.wrote();
    // A request on stream 1 again, with a field the encoder indexes.
    c.headers(
        1,
        &[
            (":method", "GET"),
            (":scheme", "https"),
            (":path", "/"),
            ("x-new", "v"),
        ],
        true,
    );
    assert_eq!(
        c.wrote(),
        vec![Wrote::Rst(1, ErrorCode::StreamClosed as u32)]
    );
    assert!(c.events().is_empty());
    // The next block refers to "x-new" through the dynamic table.
    c.headers(
        3,
        &[
            (":method", "GET"),
            (":scheme", "https"),
            (":path", "/"),
            ("x-new", "v"),
        ],
        true,
    );
    let ev = c.events();
    let ServerEvent::Request { head, .. } = &ev[0].1 else {
        panic!("{ev:?}");
    };
    assert_eq!(head.headers["x-new"], "v");
    assert_eq!(c.conn.ended(), None);
}

#[test]
fn streams_beyond_the_limit_are_refused_and_hpack_stays_in_step() {
    let mut c = Client::open(
        ServerConnConfig {
            max_concurrent_streams: 2,
            ..cfg()
        },
        &[],
    );
    c.request(1, "POST", "/", false);
    c.request(3, "POST", "/", false);
    assert_eq!(c.events().len(), 2);
    c.headers(
        5,
        &[
            (":method", "POST"),
            (":scheme", "https"),
            (":path", "/"),
            ("x-five", "5"),
        ],
        false,
    );
    assert_eq!(
        c.wrote(),
        vec![Wrote::Rst(5, ErrorCode::RefusedStream as u32)]
    );
    assert!(c.events().is_empty());
    assert_eq!(c.conn.take_frame_counts().rst_stream_sent, 1);
    // Stream 1 ends: room for 7, whose x-five is a dynamic-table index.
    c.data(1, b"", true);
    let k = c.events()[0].0;
    c.conn.send_response(k, 200, &HeaderMap::new(), true);
    c.headers(
        7,
        &[
            (":method", "POST"),
            (":scheme", "https"),
            (":path", "/"),
            ("x-five", "5"),
        ],
        false,
    );
    let ev = c.events();
    let ServerEvent::Request { head, .. } = &ev[0].1 else {
        panic!("{ev:?}");
    };
    assert_eq!(head.headers["x-five"], "5");
}

#[test]
fn malformed_requests_are_reset_with_protocol_error() {
    let bad: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("no :path", vec![(":method", "GET"), (":scheme", "https")]),
        ("no :scheme", vec![(":method", "GET"), (":path", "/")]),
        ("no :method", vec![(":scheme", "https"), (":path", "/")]),
        (
            "empty :path",
            vec![(":method", "GET"), (":scheme", "https"), (":path", "")],
        ),
        (
            "two :path",
            vec![
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/"),
                (":path", "/"),
            ],
        ),
        (
            ":status in a request",
            vec![
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/"),
                (":status", "200"),
            ],
        ),
        (
            "pseudo after regular",
            vec![
                (":method", "GET"),
                (":scheme", "https"),
                ("x-a", "1"),
                (":path", "/"),
            ],
        ),
        (
            "uppercase name",
            vec![
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/"),
                ("X-A", "1"),
            ],
        ),
        (
            "connection-specific",
            vec![
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/"),
                ("connection", "keep-alive"),
            ],
        ),
        (
            "te other than trailers",
            vec![
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/"),
                ("te", "gzip"),
            ],
        ),
        (
            "CONNECT with :path",
            vec![
                (":method", "CONNECT"),
                (":authority", "h:443"),
                (":path", "/"),
            ],
        ),
        (
            "unknown pseudo",
            vec![
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/"),
                (":protocol", "websocket"),
            ],
        ),
        (
            "content-length with END_STREAM",
            vec![
                (":method", "POST"),
                (":scheme", "https"),
                (":path", "/"),
                ("content-length", "3"),
            ],
        ),
    ];
    for (why, fields) in bad {
        let mut c = Client::open_default();
        c.headers(1, &fields, true);
        assert_eq!(c.wrote(), vec![Wrote::Rst(1, PE)], "{why}");
        assert!(c.events().is_empty(), "{why}");
        assert_eq!(c.conn.ended(), None, "{why}");
    }
    // CONNECT with only :authority is valid.
    let mut c = Client::open_default();
    c.headers(1, &[(":method", "CONNECT"), (":authority", "h:443")], false);
    let ev = c.events();
    let ServerEvent::Request { head, .. } = &ev[0].1 else {
        panic!("{ev:?}");
    };
    assert_eq!(head.method, http::Method::CONNECT);
    assert!(head.path.is_empty() && head.scheme.is_none());
}

#[test]
fn content_length_must_match_the_data() {
    let post = |c: &mut Client, cl: &str| {
        c.headers(
            1,
            &[
                (":method", "POST"),
                (":scheme", "https"),
                (":path", "/"),
                ("content-length", cl),
            ],
            false,
        );
    };
    // Short at END_STREAM.
    let mut c = Client::open_default();
    post(&mut c, "5");
    c.data(1, b"abc", true);
    let ev = c.events();
    assert!(
        matches!(ev.last(), Some((_, ServerEvent::Reset(PE)))),
        "{ev:?}"
    );
    assert_eq!(c.wrote(), vec![Wrote::Rst(1, PE)]);
    // Longer than announced.
    let mut c = Client::open_default();
    post(&mut c, "2");
    c.data(1, b"abc", false);
    assert_eq!(c.wrote(), vec![Wrote::Rst(1, PE)]);
    // Exact.
    let mut c = Client::open_default();
    post(&mut c, "3");
    c.data(1, b"abc", true);
    let ev = c.events();
    assert!(matches!(ev.last(), Some((_, ServerEvent::End))), "{ev:?}");
    assert_eq!(c.wrote(), vec![]);
}

#[test]
fn a_head_above_the_header_list_limit_is_answered_431_and_hpack_stays_in_step() {
    let mut c = Client::open(
        ServerConnConfig {
            max_header_list_size: 2048,
            ..cfg()
        },
        &[],
    );
    let big = "x".repeat(3000);
    c.headers(
        1,
        &[
            (":method", "GET"),
            (":scheme", "https"),
            (":path", "/"),
            ("x-small", "s"),
            ("x-big", &big),
        ],
        false,
    );
    let w = c.wrote();
    assert_eq!(w.len(), 2, "{w:?}");
    assert_eq!(names(&w[0]), vec![s(":status", "431")]);
    assert!(matches!(
        w[0],
        Wrote::Headers {
            end_stream: true,
            ..
        }
    ));
    assert_eq!(w[1], Wrote::Rst(1, 0), "the body is not wanted");
    assert!(c.events().is_empty());
    c.headers(
        3,
        &[
            (":method", "GET"),
            (":scheme", "https"),
            (":path", "/"),
            ("x-small", "s"),
        ],
        true,
    );
    let ev = c.events();
    let ServerEvent::Request { head, .. } = &ev[0].1 else {
        panic!("{ev:?}");
    };
    assert_eq!(head.headers["x-small"], "s");
}

#[test]
fn continuation_frames_assemble_a_block() {
    let mut c = Client::open_default();
    let block = c.block(&[
        (":method", "GET"),
        (":scheme", "https"),
        (":path", "/split"),
        ("x-a", "1"),
    ]);
    let mut out = Vec::new();
    frame::write_headers(&mut out, 1, &block, true, 5);
    assert!(out.len() > block.len() + 18, "several frames");
    for b in &out {
        c.send(std::slice::from_ref(b));
    }
    let ev = c.events();
    let ServerEvent::Request { head, .. } = &ev[0].1 else {
        panic!("{ev:?}");
    };
    assert_eq!(&head.path[..], b"/split");
}

#[test]
fn nothing_may_interleave_with_continuation() {
    let mut c = Client::open_default();
    let block = c.block(&[(":method", "GET"), (":scheme", "https"), (":path", "/")]);
    c.raw(|o| frame::write_head(o, 3, frame::HEADERS, frame::END_STREAM, 1));
    c.send(&block[..3]);
    c.raw(|o| frame::write_ping(o, false, [0; 8]));
    assert_eq!(c.wrote(), vec![Wrote::GoAway(1, PE)]);
    assert_eq!(c.conn.ended(), Some(false));

    // A CONTINUATION of another stream.
    let mut c = Client::open_default();
    c.raw(|o| frame::write_head(o, 3, frame::HEADERS, frame::END_STREAM, 1));
    c.send(&block[..3]);
    c.raw(|o| frame::write_head(o, 0, frame::CONTINUATION, frame::END_HEADERS, 3));
    assert_eq!(c.wrote(), vec![Wrote::GoAway(1, PE)]);
}

#[test]
fn a_continuation_flood_is_cut_off() {
    let mut c = Client::open(
        ServerConnConfig {
            max_header_list_size: 4096,
            ..cfg()
        },
        &[],
    );
    c.raw(|o| frame::write_head(o, 0, frame::HEADERS, 0, 1));
    let chunk = vec![0x40u8; 1000];
    let mut sent = 0;
    while c.conn.ended().is_none() {
        let mut o = Vec::new();
        frame::write_head(&mut o, chunk.len(), frame::CONTINUATION, 0, 1);
        o.extend_from_slice(&chunk);
        c.send(&o);
        sent += chunk.len();
        assert!(sent < 100_000, "never cut off");
    }
    assert!(sent <= 16_384 + 1000, "bounded: {sent}");
    assert_eq!(
        c.wrote(),
        vec![Wrote::GoAway(1, ErrorCode::EnhanceYourCalm as u32)]
    );
    assert!(c.conn.memory() < 64 * 1024);
}

#[test]
fn a_block_dribbled_in_tiny_continuations_is_cut_off() {
    // One byte per frame (CVE-2024-27316's variant): far below the size
    // bound, so the frame count must catch it.
    let mut c = Client::open(cfg(), &[]);
    c.raw(|o| frame::write_head(o, 0, frame::HEADERS, 0, 1));
    let mut frames = 0;
    while c.conn.ended().is_none() {
        let mut o = Vec::new();
        frame::write_head(&mut o, 1, frame::CONTINUATION, 0, 1);
        o.push(0x40);
        c.send(&o);
        frames += 1;
        assert!(frames < 1000, "never cut off");
    }
    assert!(frames <= 64, "cut off after {frames} frames");
    assert_eq!(
        c.wrote(),
        vec![Wrote::GoAway(1, ErrorCode::EnhanceYourCalm as u32)]
    );
}

#[test]
fn response_data_waits_for_the_client_windows() {
    let mut c = Client::open(cfg(), &[(setting::INITIAL_WINDOW_SIZE, 1000)]);
    c.request(1, "GET", "/", true);
    let k = c.request_key();
    c.conn.send_response(k, 200, &HeaderMap::new(), false);
    c.conn.send_data(k, &[7u8; 2500]);
    let w = c.wrote();
    assert_eq!(
        w[1..],
        [Wrote::Data {
            stream: 1,
            len: 1000,
            end_stream: false
        }]
    );
    assert_eq!(c.conn.unsent(k), 1500);
    c.conn.end_response(k, None);
    assert_eq!(c.wrote(), vec![]);
    c.raw(|o| frame::write_window_update(o, 1, 1000));
    assert_eq!(
        c.wrote(),
        vec![Wrote::Data {
            stream: 1,
            len: 1000,
            end_stream: false
        }]
    );
    // §6.9.2: a larger initial window applies to open streams at once.
    c.raw(|o| frame::write_settings(o, &[(setting::INITIAL_WINDOW_SIZE, 1500)]));
    assert_eq!(
        c.wrote(),
        vec![
            Wrote::SettingsAck,
            Wrote::Data {
                stream: 1,
                len: 500,
                end_stream: true
            }
        ]
    );
    assert_eq!(c.conn.unsent(k), 0);
    assert_eq!(c.conn.active(), 0);
}

#[test]
fn a_smaller_initial_window_can_make_the_stream_window_negative() {
    let mut c = Client::open(cfg(), &[(setting::INITIAL_WINDOW_SIZE, 1000)]);
    c.request(1, "GET", "/", true);
    let k = c.request_key();
    c.conn.send_response(k, 200, &HeaderMap::new(), false);
    c.conn.send_data(k, &[7u8; 1000]);
    c.wrote();
    // 1000 sent; the window drops to -500.
    c.raw(|o| frame::write_settings(o, &[(setting::INITIAL_WINDOW_SIZE, 500)]));
    c.conn.send_data(k, &[7u8; 100]);
    c.raw(|o| frame::write_window_update(o, 1, 500));
    assert_eq!(c.wrote(), vec![Wrote::SettingsAck], "still at 0");
    c.raw(|o| frame::write_window_update(o, 1, 60));
    assert_eq!(
        c.wrote(),
        vec![Wrote::Data {
            stream: 1,
            len: 60,
            end_stream: false
        }]
    );
}

#[test]
fn the_connection_send_window_bounds_all_streams() {
    let mut c = Client::open(cfg(), &[(setting::INITIAL_WINDOW_SIZE, 1 << 20)]);
    c.request(1, "GET", "/", true);
    c.request(3, "GET", "/", true);
    let ev = c.events();
    let (k1, k3) = (ev[0].0, ev[1].0);
    c.conn.send_response(k1, 200, &HeaderMap::new(), false);
    c.conn.send_response(k3, 200, &HeaderMap::new(), false);
    c.conn.send_data(k1, &vec![1u8; 60_000]);
    c.conn.send_data(k3, &vec![3u8; 60_000]);
    let sent: usize = c
        .wrote()
        .iter()
        .map(|w| match w {
            Wrote::Data { len, .. } => *len,
            _ => 0,
        })
        .sum();
    assert_eq!(sent, 65_535);
    c.raw(|o| frame::write_window_update(o, 0, 100_000));
    let sent: usize = c
        .wrote()
        .iter()
        .map(|w| match w {
            Wrote::Data { len, .. } => *len,
            _ => 0,
        })
        .sum();
    assert_eq!(sent, 120_000 - 65_535);
}

#[test]
fn data_is_split_at_the_client_max_frame_size_and_bounded_by_the_write_cap() {
    let mut c = Client::open(
        ServerConnConfig {
            write_cap: 40_000,
            ..cfg()
        },
        &[(setting::INITIAL_WINDOW_SIZE, 1 << 20)],
    );
    c.raw(|o| frame::write_window_update(o, 0, 1 << 20));
    c.request(1, "GET", "/", true);
    let k = c.request_key();
    c.conn.send_response(k, 200, &HeaderMap::new(), false);
    c.conn.send_data(k, &vec![0u8; 100_000]);
    // Not drained yet: at most the write cap is buffered.
    assert!(c.conn.unsent(k) >= 100_000 - 40_000);
    let mut total = 0;
    loop {
        let w = c.wrote();
        if w.is_empty() {
            break;
        }
        for f in w {
            if let Wrote::Data { len, .. } = f {
                assert!(len <= 16_384, "{len}");
                total += len;
            }
        }
    }
    assert_eq!(total, 100_000);
    assert_eq!(c.conn.unsent(k), 0);
}

#[test]
fn a_large_response_head_is_split_into_continuation_frames() {
    let mut c = Client::open_default();
    c.request(1, "GET", "/", true);
    let k = c.request_key();
    let big: http::HeaderValue = "v".repeat(40_000).parse().unwrap();
    let mut fields = HeaderMap::new();
    fields.insert("x-big", big);
    c.conn.send_response(k, 200, &fields, true);
    let w = c.wrote();
    let Wrote::Headers {
        frames, fields: f, ..
    } = &w[0]
    else {
        panic!("{w:?}");
    };
    assert_eq!(*frames, 3, "40 KB at 16 KiB a frame");
    assert_eq!(f[1].1.len(), 40_000);
}

#[test]
fn request_data_beyond_the_stream_window_is_a_flow_control_error() {
    let mut c = Client::open(
        ServerConnConfig {
            initial_stream_window: 65_535,
            ..cfg()
        },
        &[],
    );
    c.request(1, "POST", "/", false);
    let k = c.request_key();
    c.data(1, &vec![0u8; 65_535], false);
    assert_eq!(c.wrote(), vec![]);
    c.data(1, b"x", false);
    assert_eq!(c.wrote(), vec![Wrote::Rst(1, FCE)]);
    let ev = c.events();
    assert!(matches!(ev.last(), Some((kk, ServerEvent::Reset(FCE))) if *kk == k));
    assert_eq!(c.conn.ended(), None);
}

#[test]
fn request_data_beyond_the_connection_window_ends_the_connection() {
    let mut c = Client::open(
        ServerConnConfig {
            initial_stream_window: 1 << 20,
            connection_window: 65_535,
            ..cfg()
        },
        &[],
    );
    c.request(1, "POST", "/", false);
    c.request(3, "POST", "/", false);
    c.data(1, &vec![0u8; 40_000], false);
    c.data(3, &vec![0u8; 25_535], false);
    assert_eq!(c.wrote(), vec![]);
    c.data(3, b"x", false);
    assert_eq!(c.wrote(), vec![Wrote::GoAway(3, FCE)]);
    assert_eq!(c.conn.ended(), Some(false));
}

#[test]
fn released_request_data_is_given_back_in_batches() {
    let mut c = Client::open(
        ServerConnConfig {
            initial_stream_window: 10_000,
            connection_window: 100_000,
            ..cfg()
        },
        &[],
    );
    c.request(1, "POST", "/", false);
    let k = c.request_key();
    c.data(1, &[0u8; 4000], false);
    c.conn.release(k, 4000);
    assert_eq!(c.wrote(), vec![], "below half the window");
    c.data(1, &[0u8; 1000], false);
    c.conn.release(k, 1000);
    assert_eq!(c.wrote(), vec![Wrote::Window(1, 5000)]);
    // The stream may now take 10 000 more: no error.
    c.data(1, &[0u8; 10_000], false);
    assert_eq!(c.wrote(), vec![]);
    c.conn.release(k, 10_000);
    assert_eq!(
        c.wrote(),
        vec![Wrote::Window(1, 10_000)],
        "connection: 15 000 < 50 000"
    );
    for _ in 0..4 {
        c.data(1, &[0u8; 9_000], false);
        c.conn.release(k, 9_000);
    }
    let w = c.wrote();
    assert!(w.contains(&Wrote::Window(0, 51_000)), "{w:?}");
}

#[test]
fn ping_is_acknowledged_and_ours_is_answered() {
    let mut c = Client::open_default();
    c.raw(|o| frame::write_ping(o, false, *b"12345678"));
    assert_eq!(c.wrote(), vec![Wrote::Ping(true, *b"12345678")]);
    c.conn.ping(*b"abcdefgh");
    assert_eq!(c.wrote(), vec![Wrote::Ping(false, *b"abcdefgh")]);
    assert_eq!(c.conn.take_ping_ack(), None);
    c.raw(|o| frame::write_ping(o, true, *b"abcdefgh"));
    assert_eq!(c.wrote(), vec![]);
    assert_eq!(c.conn.take_ping_ack(), Some(*b"abcdefgh"));
    assert_eq!(c.conn.take_frame_counts().ping, 1);
}

#[test]
fn settings_are_acknowledged_and_the_table_size_applies_to_our_encoder() {
    let mut c = Client::open_default();
    c.raw(|o| frame::write_settings(o, &[(setting::HEADER_TABLE_SIZE, 0)]));
    assert_eq!(c.wrote(), vec![Wrote::SettingsAck]);
    c.dec.set_max_table_size(0);
    c.request(1, "GET", "/", true);
    let k = c.request_key();
    c.conn.send_response(k, 200, &map(&[("x-a", "1")]), true);
    let w = c.wrote();
    let Wrote::Headers { block, .. } = &w[0] else {
        panic!("{w:?}");
    };
    assert_eq!(block[0], 0x20, "dynamic table size update to 0 first");
    // Invalid settings are a connection error.
    c.raw(|o| frame::write_settings(o, &[(setting::MAX_FRAME_SIZE, 10)]));
    assert_eq!(c.wrote(), vec![Wrote::GoAway(1, PE)]);
}

#[test]
fn window_update_overflow_is_a_flow_control_error() {
    let mut c = Client::open_default();
    c.request(1, "GET", "/", true);
    let k = c.request_key();
    c.conn.send_response(k, 200, &HeaderMap::new(), false);
    c.wrote();
    c.raw(|o| frame::write_window_update(o, 1, frame::MAX_WINDOW));
    assert_eq!(c.wrote(), vec![Wrote::Rst(1, FCE)]);
    assert!(matches!(
        c.events().last(),
        Some((_, ServerEvent::Reset(FCE)))
    ));
    assert_eq!(c.conn.ended(), None);
    c.raw(|o| frame::write_window_update(o, 0, frame::MAX_WINDOW));
    assert_eq!(c.wrote(), vec![Wrote::GoAway(1, FCE)]);
    assert_eq!(c.conn.ended(), Some(false));
}

#[test]
fn a_client_reset_frees_the_stream_and_later_data_is_credited_back() {
    let mut c = Client::open(
        ServerConnConfig {
            initial_stream_window: 1 << 20,
            connection_window: 65_535,
            ..cfg()
        },
        &[],
    );
    c.request(1, "POST", "/", false);
    let k = c.request_key();
    c.raw(|o| frame::write_rst_stream(o, 1, ErrorCode::Cancel));
    let ev = c.events();
    assert!(
        matches!(ev[..], [(kk, ServerEvent::Reset(8))] if kk == k),
        "{ev:?}"
    );
    assert_eq!(c.conn.active(), 0);
    // The key is free: calls on it do nothing.
    c.conn.send_response(k, 200, &HeaderMap::new(), true);
    assert_eq!(c.wrote(), vec![]);
    // DATA in flight still counts against the connection window, and is
    // given back: 3 x 30 000 would overflow 65 535 otherwise.
    for _ in 0..3 {
        c.data(1, &vec![0u8; 30_000], false);
    }
    assert_eq!(c.conn.ended(), None);
    let credited: u32 = c
        .wrote()
        .iter()
        .map(|w| match w {
            Wrote::Window(0, n) => *n,
            _ => 0,
        })
        .sum();
    assert!(credited >= 90_000 - 32_767, "{credited}");
    assert!(c.events().is_empty());
    let counts = c.conn.take_frame_counts();
    assert_eq!(counts.rst_stream_received, 1);
    // The key is reused for the next stream.
    c.request(3, "GET", "/", true);
    assert_eq!(c.request_key(), k);
}

#[test]
fn push_promise_from_a_client_is_a_protocol_error() {
    let mut c = Client::open_default();
    c.request(1, "GET", "/", false);
    c.raw(|o| {
        frame::write_head(o, 4, frame::PUSH_PROMISE, frame::END_HEADERS, 1);
        o.extend_from_slice(&2u32.to_be_bytes());
    });
    assert_eq!(c.wrote(), vec![Wrote::GoAway(1, PE)]);
    assert!(matches!(
        c.events().last(),
        Some((_, ServerEvent::Reset(PE)))
    ));
}

#[test]
fn trailers_both_ways() {
    let mut c = Client::open_default();
    c.request(1, "POST", "/", false);
    let k = c.request_key();
    c.data(1, b"body", false);
    c.headers(1, &[("x-checksum", "abc")], true);
    let ev = c.events();
    assert!(matches!(&ev[0].1, ServerEvent::Data(d) if &d[..] == b"body"));
    assert!(matches!(&ev[1].1, ServerEvent::Trailers(t) if t["x-checksum"] == "abc"));
    assert!(matches!(&ev[2].1, ServerEvent::End));
    c.conn.send_response(k, 200, &HeaderMap::new(), false);
    c.conn.send_data(k, b"resp");
    c.conn.end_response(k, Some(&map(&[("grpc-status", "0")])));
    let w = c.wrote();
    assert_eq!(w.len(), 3, "{w:?}");
    assert_eq!(
        w[1],
        Wrote::Data {
            stream: 1,
            len: 4,
            end_stream: false
        }
    );
    assert!(matches!(
        w[2],
        Wrote::Headers {
            stream: 1,
            end_stream: true,
            ..
        }
    ));
    assert_eq!(names(&w[2]), vec![s("grpc-status", "0")]);
    assert_eq!(c.conn.active(), 0);
}

#[test]
fn trailers_must_end_the_stream_and_carry_no_pseudo_fields() {
    let mut c = Client::open_default();
    c.request(1, "POST", "/", false);
    c.request_key();
    c.headers(1, &[("x-a", "1")], false);
    assert_eq!(c.wrote(), vec![Wrote::Rst(1, PE)]);
    assert!(matches!(c.events()[..], [(_, ServerEvent::Reset(PE))]));

    let mut c = Client::open_default();
    c.request(1, "POST", "/", false);
    c.request_key();
    c.headers(1, &[(":path", "/")], true);
    assert_eq!(c.wrote(), vec![Wrote::Rst(1, PE)]);
}

#[test]
fn an_early_response_resets_the_rest_of_the_request_with_no_error() {
    let mut c = Client::open_default();
    c.request(1, "POST", "/", false);
    let k = c.request_key();
    c.conn.send_response(k, 413, &HeaderMap::new(), true);
    let w = c.wrote();
    assert!(matches!(
        w[0],
        Wrote::Headers {
            end_stream: true,
            ..
        }
    ));
    assert_eq!(w[1], Wrote::Rst(1, 0), "after END_STREAM");
    assert!(matches!(c.events()[..], [(_, ServerEvent::Reset(0))]));
    // A request that ended first is not reset.
    c.request(3, "POST", "/", false);
    let k = c.request_key();
    c.data(3, b"x", true);
    c.events();
    c.conn.send_response(k, 200, &HeaderMap::new(), true);
    assert_eq!(c.wrote().len(), 1);
}

#[test]
fn informational_responses_come_before_the_final_one() {
    let mut c = Client::open_default();
    c.headers(
        1,
        &[
            (":method", "POST"),
            (":scheme", "https"),
            (":path", "/"),
            ("expect", "100-continue"),
        ],
        false,
    );
    let k = c.request_key();
    c.conn.send_informational(k, 100, &HeaderMap::new());
    c.conn.send_response(k, 200, &HeaderMap::new(), false);
    c.conn.send_informational(k, 103, &HeaderMap::new());
    let w = c.wrote();
    assert_eq!(w.len(), 2, "no 1xx after the final head: {w:?}");
    assert_eq!(names(&w[0]), vec![s(":status", "100")]);
    assert!(matches!(
        w[0],
        Wrote::Headers {
            end_stream: false,
            ..
        }
    ));
    assert_eq!(names(&w[1]), vec![s(":status", "200")]);
}

#[test]
fn a_graceful_goaway_drains() {
    let mut c = Client::open_default();
    c.request(1, "GET", "/", true);
    let k = c.request_key();
    c.conn.go_away(ErrorCode::NoError);
    assert_eq!(c.wrote(), vec![Wrote::GoAway(1, 0)]);
    // Above the last id: ignored.
    c.request(3, "GET", "/", true);
    assert!(c.events().is_empty());
    assert_eq!(c.wrote(), vec![]);
    assert_eq!(c.conn.ended(), None);
    c.conn.send_response(k, 200, &HeaderMap::new(), true);
    assert_eq!(c.wrote().len(), 1);
    assert_eq!(c.conn.ended(), Some(true));
}

#[test]
fn frames_that_cost_work_are_counted() {
    let mut c = Client::open_default();
    c.take_counts_reset();
    c.raw(|o| {
        frame::write_settings(o, &[]);
        frame::write_window_update(o, 0, 1);
        frame::write_head(o, 5, frame::PRIORITY, 0, 9);
        o.extend_from_slice(&[0, 0, 0, 1, 0]);
        frame::write_head(o, 0, 0xfa, 0, 0);
    });
    c.request(1, "POST", "/", false);
    c.data(1, b"", false);
    c.data(1, b"", false);
    let n = c.conn.take_frame_counts();
    assert_eq!(n.settings, 1);
    assert_eq!(n.window_update, 1);
    assert_eq!(n.priority, 2);
    assert_eq!(n.empty, 2);
    assert_eq!(n.requests, 1);
    assert_eq!(c.conn.take_frame_counts().settings, 0);
}

#[test]
fn eof_resets_open_streams() {
    let mut c = Client::open_default();
    c.request(1, "POST", "/", false);
    c.request_key();
    c.conn.on_read_eof();
    assert!(matches!(c.events()[..], [(_, ServerEvent::Reset(8))]));
    assert_eq!(c.conn.ended(), Some(false));
}

impl Client {
    fn take_counts_reset(&mut self) {
        self.conn.take_frame_counts();
    }
}

#[test]
fn streams_waiting_for_the_connection_window_take_turns() {
    let mut c = Client::open(cfg(), &[(setting::INITIAL_WINDOW_SIZE, 1 << 20)]);
    c.request(1, "GET", "/", true);
    c.request(3, "GET", "/", true);
    let ev = c.events();
    let (k1, k3) = (ev[0].0, ev[1].0);
    c.conn.send_response(k1, 200, &HeaderMap::new(), false);
    c.conn.send_response(k3, 200, &HeaderMap::new(), false);
    c.conn.send_data(k1, &vec![1u8; 200_000]);
    c.conn.send_data(k3, &vec![3u8; 200_000]);
    c.wrote();
    // Small updates: each goes to the stream whose turn it is.
    let mut by_stream = [0usize; 2];
    for _ in 0..4 {
        c.raw(|o| frame::write_window_update(o, 0, 1000));
        for w in c.wrote() {
            if let Wrote::Data { stream, len, .. } = w {
                by_stream[(stream / 2) as usize] += len;
            }
        }
    }
    assert_eq!(by_stream, [2000, 2000]);
}

#[test]
fn late_data_on_a_stream_we_reset_is_ignored_but_data_after_end_stream_is_not() {
    let mut c = Client::open(cfg(), &[]);
    c.request(1, "POST", "/up", false);
    let k = c.request_key();
    c.conn.reset(k, ErrorCode::Cancel);
    assert_eq!(c.wrote(), vec![Wrote::Rst(1, ErrorCode::Cancel as u32)]);
    // Frames the client sent before it saw our reset: no error, no count.
    c.data(1, b"in flight", false);
    c.data(1, b"more", true);
    assert_eq!(c.wrote(), vec![]);
    assert_eq!(c.conn.take_frame_counts().rst_stream_sent, 0);
    // A stream the client ended itself: DATA after its END_STREAM is
    // STREAM_CLOSED (RFC 9113 §5.1).
    c.request(3, "GET", "/", true);
    let k = c.request_key();
    c.conn.send_response(k, 204, &http::HeaderMap::new(), true);
    c.wrote();
    c.data(3, b"late", false);
    assert_eq!(
        c.wrote(),
        vec![Wrote::Rst(3, ErrorCode::StreamClosed as u32)]
    );
}
