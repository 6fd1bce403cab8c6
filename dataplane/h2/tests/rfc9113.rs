//! RFC 9113 behaviour checked frame by frame (h2spec is not available):
//! raw frames in, the server's exact answer (GOAWAY or RST_STREAM code)
//! out.

mod common;

use common::*;
use sluice_app::{App, Close};
use sluice_h2::{H2Config, PREFACE};

fn srv() -> Srv {
    Srv::handshaken(H2Config::default())
}

/// The connection ends with a GOAWAY carrying `code`, then closes
/// gracefully (the GOAWAY is flushed first).
fn expect_goaway(s: &mut Srv, code: u32) -> RawFrame {
    let f = s.frames();
    let g = goaway(&f)
        .unwrap_or_else(|| panic!("no GOAWAY in {f:?}"))
        .clone();
    assert_eq!(g.code(), code, "{f:?}");
    assert_eq!(g.stream, 0);
    assert_eq!(s.close(), Close::Graceful);
    g
}

fn expect_rst(s: &mut Srv, stream: u32, code: u32) {
    let f = s.frames();
    let r = f
        .iter()
        .find(|f| f.ty == RST_STREAM && f.stream == stream)
        .unwrap_or_else(|| panic!("no RST_STREAM on {stream} in {f:?}"));
    assert_eq!(r.code(), code, "{f:?}");
    assert!(goaway(&f).is_none(), "{f:?}");
    assert_eq!(s.close(), Close::No);
}

#[test]
fn bad_preface_resets() {
    let mut s = Srv::new(H2Config::default());
    s.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(s.close(), Close::Abort);
    assert_eq!(s.h2().protocol_errors, 1);
    assert_eq!(s.h2().connections, 0);
}

#[test]
fn eof_before_the_preface_is_not_an_error() {
    let mut s = Srv::new(H2Config::default());
    s.write(&PREFACE[..10]);
    s.app.on_read_eof(s.now);
    assert_ne!(s.close(), Close::No);
    assert_eq!(s.h2().protocol_errors, 0);
}

/// h2c: the listener sniffed the preface and hands it over, then the rest
/// arrives a byte at a time.
#[test]
fn h2c_preface_handed_over_then_bytewise() {
    let mut s = Srv::new(H2Config::default());
    assert_eq!(s.app.on_read(s.now, PREFACE), 24);
    let mut rest = settings(&[]);
    rest.extend(frame(SETTINGS, ACK, 0, &[]));
    rest.extend(request(1, "GET", "/health", true));
    for b in rest {
        s.write(&[b]);
    }
    let f = s.frames();
    let data: Vec<_> = f.iter().filter(|f| f.ty == DATA && f.stream == 1).collect();
    assert_eq!(data.len(), 1, "{f:?}");
    assert_eq!(data[0].payload, b"ok\n");
    assert_ne!(data[0].flags & END_STREAM, 0);
    assert!(f.iter().any(|f| f.ty == HEADERS && f.stream == 1));
    assert_eq!(s.close(), Close::No);
    assert!(s.app.is_idle());
}

#[test]
fn ping_is_answered_with_the_same_payload() {
    let mut s = srv();
    s.write(&ping(*b"12345678"));
    let f = s.frames();
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!((f[0].ty, f[0].flags, f[0].stream), (PING, ACK, 0));
    assert_eq!(f[0].payload, b"12345678");
}

#[test]
fn ping_of_wrong_length_is_a_frame_size_error() {
    let mut s = srv();
    s.write(&frame(PING, 0, 0, &[0; 7]));
    expect_goaway(&mut s, FRAME_SIZE_ERROR);
}

#[test]
fn ping_on_a_stream_is_a_protocol_error() {
    let mut s = srv();
    s.write(&frame(PING, 0, 1, &[0; 8]));
    expect_goaway(&mut s, PROTOCOL_ERROR);
    assert_eq!(s.h2().protocol_errors, 1);
}

#[test]
fn data_on_stream_0_is_a_protocol_error() {
    let mut s = srv();
    s.write(&frame(DATA, 0, 0, b"x"));
    expect_goaway(&mut s, PROTOCOL_ERROR);
    assert_eq!(s.h2().protocol_errors, 1);
    assert_eq!(s.h2().goaway_sent, 1);
}

#[test]
fn headers_on_an_even_stream_is_a_protocol_error() {
    let mut s = srv();
    s.write(&request(2, "GET", "/health", true));
    expect_goaway(&mut s, PROTOCOL_ERROR);
}

#[test]
fn decreasing_stream_ids_are_a_protocol_error() {
    let mut s = srv();
    s.write(&request(5, "GET", "/health", true));
    s.frames();
    s.write(&request(3, "GET", "/health", true));
    expect_goaway(&mut s, PROTOCOL_ERROR);
}

#[test]
fn data_on_a_closed_stream_is_stream_closed() {
    let mut s = srv();
    s.write(&request(1, "GET", "/health", true));
    let f = s.frames();
    assert!(f.iter().any(|f| f.ty == DATA && f.flags & END_STREAM != 0));
    // Stream 1 is closed both ways now (RFC 9113 §5.1: STREAM_CLOSED).
    s.write(&frame(DATA, 0, 1, b"late"));
    let f = s.frames();
    let code = f
        .iter()
        .find(|f| f.ty == GOAWAY || f.ty == RST_STREAM)
        .unwrap_or_else(|| panic!("{f:?}"))
        .code();
    assert_eq!(code, STREAM_CLOSED, "{f:?}");
}

/// RFC 9113 §5.1: DATA on a half-closed (remote) stream is a stream
/// error STREAM_CLOSED; the connection carries on.
#[test]
fn data_after_end_stream_resets_the_stream() {
    // Half-closed (remote): the response is still streaming.
    let mut s = srv();
    s.write(&settings(&[(SETTINGS_INITIAL_WINDOW_SIZE, 0)]));
    s.write(&request(1, "GET", "/bytes/100", true));
    s.frames();
    s.write(&frame(DATA, 0, 1, b"x"));
    expect_rst(&mut s, 1, STREAM_CLOSED);
}

/// §6.9: a stream error on a stream, a connection error on stream 0.
#[test]
fn window_update_of_zero() {
    let mut s = srv();
    s.write(&request(1, "POST", "/echo", false));
    s.frames();
    s.write(&window_update(1, 0));
    expect_rst(&mut s, 1, PROTOCOL_ERROR);

    let mut s = srv();
    s.write(&request(1, "POST", "/echo", false));
    s.frames();
    s.write(&window_update(0, 0));
    expect_goaway(&mut s, PROTOCOL_ERROR);
}

#[test]
fn frames_of_fixed_size_with_another_length() {
    for f in [
        frame(WINDOW_UPDATE, 0, 0, &[0, 0, 1]),
        frame(WINDOW_UPDATE, 0, 1, &[0, 0, 0, 1, 0]),
        frame(RST_STREAM, 0, 1, &[0, 0, 0, 8, 0]),
        frame(PING, ACK, 0, &[0; 9]),
    ] {
        let mut s = srv();
        s.write(&request(1, "POST", "/echo", false));
        s.frames();
        s.write(&f);
        expect_goaway(&mut s, FRAME_SIZE_ERROR);
        assert_eq!(s.h2().protocol_errors, 1);
    }
}

#[test]
fn settings_enable_push_must_be_0_or_1() {
    let mut s = srv();
    s.write(&settings(&[(SETTINGS_ENABLE_PUSH, 2)]));
    expect_goaway(&mut s, PROTOCOL_ERROR);
}

#[test]
fn settings_initial_window_size_over_2_31_minus_1() {
    let mut s = srv();
    s.write(&settings(&[(SETTINGS_INITIAL_WINDOW_SIZE, 1 << 31)]));
    expect_goaway(&mut s, FLOW_CONTROL_ERROR);
}

#[test]
fn settings_max_frame_size_out_of_range() {
    let mut s = srv();
    s.write(&settings(&[(SETTINGS_MAX_FRAME_SIZE, 16_383)]));
    expect_goaway(&mut s, PROTOCOL_ERROR);
}

#[test]
fn settings_of_bad_length_or_on_a_stream() {
    let mut s = srv();
    s.write(&frame(SETTINGS, 0, 0, &[0, 4, 0, 0, 0]));
    expect_goaway(&mut s, FRAME_SIZE_ERROR);
    let mut s = srv();
    s.write(&frame(SETTINGS, 0, 1, &[]));
    expect_goaway(&mut s, PROTOCOL_ERROR);
    let mut s = srv();
    s.write(&frame(SETTINGS, ACK, 0, &[0, 4, 0, 0, 0, 1]));
    expect_goaway(&mut s, FRAME_SIZE_ERROR);
}

#[test]
fn settings_are_acked_and_unknown_ones_ignored() {
    let mut s = srv();
    s.write(&settings(&[(0x99, 7), (SETTINGS_INITIAL_WINDOW_SIZE, 100)]));
    let f = s.frames();
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!((f[0].ty, f[0].flags), (SETTINGS, ACK));
}

#[test]
fn continuation_without_headers_is_a_protocol_error() {
    let mut s = srv();
    s.write(&frame(
        CONTINUATION,
        END_HEADERS,
        1,
        &request_block("GET", "/"),
    ));
    expect_goaway(&mut s, PROTOCOL_ERROR);
}

#[test]
fn other_frame_inside_a_header_block_is_a_protocol_error() {
    let mut s = srv();
    s.write(&frame(HEADERS, 0, 1, &request_block("GET", "/health")));
    s.write(&ping([0; 8]));
    expect_goaway(&mut s, PROTOCOL_ERROR);
}

#[test]
fn headers_and_continuation_make_one_request() {
    let mut s = srv();
    let block = request_block("GET", "/health");
    let (a, b) = block.split_at(5);
    s.write(&frame(HEADERS, END_STREAM, 1, a));
    s.write(&frame(CONTINUATION, END_HEADERS, 1, b));
    let f = s.frames();
    assert!(
        f.iter().any(|f| f.ty == DATA && f.payload == b"ok\n"),
        "{f:?}"
    );
}

#[test]
fn exceeding_max_concurrent_streams_is_refused() {
    let mut s = Srv::handshaken(H2Config {
        max_concurrent_streams: 2,
        ..H2Config::default()
    });
    s.write(&request(1, "POST", "/echo", false));
    s.write(&request(3, "POST", "/echo", false));
    s.frames();
    s.write(&request(5, "POST", "/echo", false));
    expect_rst(&mut s, 5, REFUSED_STREAM);
    assert_eq!(s.app.active_streams(), 2);
}

#[test]
fn frame_larger_than_max_frame_size() {
    let mut s = srv();
    s.write(&request(1, "POST", "/echo", false));
    s.frames();
    s.write(&frame(DATA, 0, 1, &vec![0; 16_385]));
    expect_goaway(&mut s, FRAME_SIZE_ERROR);
}

#[test]
fn window_overflow_is_a_flow_control_error() {
    let mut s = srv();
    s.write(&request(1, "POST", "/echo", false));
    s.frames();
    s.write(&window_update(1, (1 << 31) - 1));
    expect_rst(&mut s, 1, FLOW_CONTROL_ERROR);
    s.write(&window_update(0, (1 << 31) - 1));
    expect_goaway(&mut s, FLOW_CONTROL_ERROR);
}

#[test]
fn data_beyond_the_receive_window_is_a_flow_control_error() {
    let mut s = Srv::handshaken(H2Config {
        initial_stream_window: 65_535,
        connection_window: 65_535,
        ..H2Config::default()
    });
    // Nobody reads the echo: the client ignores our DATA and window.
    s.write(&settings(&[(SETTINGS_INITIAL_WINDOW_SIZE, 0)]));
    s.write(&request(1, "POST", "/echo", false));
    s.frames();
    for _ in 0..4 {
        s.write(&frame(DATA, 0, 1, &[0; 16_384]));
    }
    s.write(&frame(DATA, 0, 1, &[0; 16_384]));
    let f = s.frames();
    let err = f
        .iter()
        .find(|f| f.ty == GOAWAY || f.ty == RST_STREAM)
        .unwrap_or_else(|| panic!("{f:?}"));
    assert_eq!(err.code(), FLOW_CONTROL_ERROR, "{f:?}");
}

#[test]
fn push_promise_from_a_client_is_a_protocol_error() {
    let mut s = srv();
    s.write(&frame(PUSH_PROMISE, END_HEADERS, 1, &[0, 0, 0, 2]));
    expect_goaway(&mut s, PROTOCOL_ERROR);
}

#[test]
fn unknown_frame_types_are_ignored() {
    let mut s = srv();
    s.write(&frame(0xfa, 0xff, 1, b"whatever"));
    s.write(&request(1, "GET", "/health", true));
    let f = s.frames();
    assert!(
        f.iter().any(|f| f.ty == DATA && f.payload == b"ok\n"),
        "{f:?}"
    );
    assert!(goaway(&f).is_none());
}

/// §8.1.1: a malformed request is a stream error PROTOCOL_ERROR; h2 makes
/// some of them connection errors (§5.4.1 allows it).
#[test]
fn malformed_requests_are_protocol_errors() {
    let mut upper = request_block("GET", "/health");
    upper.extend(hpack(&[("X-Upper", "1")]));
    let mut conn = request_block("GET", "/health");
    conn.extend(hpack(&[("connection", "close")]));
    let mut te = request_block("GET", "/health");
    te.extend(hpack(&[("te", "gzip")]));
    let cases = [
        // No :path (h2 lets it through; the app resets the stream).
        hpack(&[(":method", "GET"), (":scheme", "http")]),
        // No :method.
        hpack(&[(":scheme", "http"), (":path", "/")]),
        // A response pseudo-header.
        hpack(&[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":status", "200"),
        ]),
        upper,
        conn,
        te,
    ];
    for (i, block) in cases.iter().enumerate() {
        let mut s = srv();
        s.write(&frame(HEADERS, END_HEADERS | END_STREAM, 1, block));
        let f = s.frames();
        let err = f
            .iter()
            .find(|f| f.ty == GOAWAY || (f.ty == RST_STREAM && f.stream == 1))
            .unwrap_or_else(|| panic!("case {i}: {f:?}"));
        assert_eq!(err.code(), PROTOCOL_ERROR, "case {i}: {f:?}");
        assert!(
            !f.iter().any(|f| f.ty == HEADERS),
            "case {i}: answered {f:?}"
        );
        if err.ty == RST_STREAM {
            // The connection lives on.
            s.write(&request(3, "GET", "/health", true));
            let f = s.frames();
            assert!(
                f.iter().any(|f| f.ty == DATA && f.stream == 3),
                "case {i}: {f:?}"
            );
        }
    }
}

#[test]
fn content_length_mismatch_resets_the_echo() {
    let mut s = srv();
    let mut block = request_block("POST", "/echo");
    block.extend(hpack(&[("content-length", "5")]));
    s.write(&frame(HEADERS, END_HEADERS, 1, &block));
    s.write(&frame(DATA, END_STREAM, 1, b"abc"));
    let f = s.frames();
    let r = f
        .iter()
        .find(|f| f.ty == RST_STREAM && f.stream == 1)
        .unwrap_or_else(|| panic!("{f:?}"));
    assert_eq!(r.code(), PROTOCOL_ERROR);
    assert_eq!(s.app.active_streams(), 0);
}

#[test]
fn client_goaway_ends_the_connection_gracefully() {
    let mut s = srv();
    s.write(&frame(GOAWAY, 0, 0, &[0, 0, 0, 0, 0, 0, 0, 0]));
    s.frames();
    assert_eq!(s.close(), Close::Graceful);
    assert_eq!(s.h2().protocol_errors, 0);
}

#[test]
fn echo_over_raw_frames() {
    let mut s = srv();
    s.write(&request(1, "POST", "/echo", false));
    s.write(&frame(DATA, 0, 1, b"hello "));
    s.write(&frame(DATA, PADDED, 1, &[3, b'w', b'o', 0, 0, 0]));
    s.write(&frame(DATA, END_STREAM, 1, b"rld"));
    let f = s.frames();
    let body: Vec<u8> = f
        .iter()
        .filter(|f| f.ty == DATA && f.stream == 1)
        .flat_map(|f| f.payload.clone())
        .collect();
    assert_eq!(body, b"hello world");
    let last = f.iter().rfind(|f| f.ty == DATA).unwrap();
    assert_ne!(last.flags & END_STREAM, 0);
    // The window consumed (padding included) came back.
    let wu: u32 = f
        .iter()
        .filter(|f| f.ty == WINDOW_UPDATE && f.stream == 0)
        .map(|f| u32::from_be_bytes(f.payload[..4].try_into().unwrap()))
        .sum();
    assert!(wu <= 6 + 6 + 3, "{f:?}");
}
