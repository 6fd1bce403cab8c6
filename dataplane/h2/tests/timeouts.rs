//! Keepalive PINGs, the idle, head and drain timers, over virtual time.

mod common;

use std::time::Duration;

use common::*;
use sluice_app::{App, Close};
use sluice_h2::H2Config;

const S: fn(u64) -> Duration = Duration::from_secs;

fn keepalive() -> H2Config {
    H2Config {
        ping_interval: Some(S(10)),
        ping_timeout: S(5),
        idle_timeout: None,
        ..H2Config::default()
    }
}

#[test]
fn unanswered_ping_resets_the_connection() {
    let mut s = Srv::handshaken(keepalive());
    s.advance(Duration::from_millis(9_900));
    assert!(s.frames().is_empty());
    s.advance(Duration::from_millis(200));
    let f = s.frames();
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!((f[0].ty, f[0].flags), (PING, 0));
    s.advance(Duration::from_millis(4_800));
    assert_eq!(s.close(), Close::No);
    s.advance(S(1));
    assert_eq!(s.close(), Close::Abort);
    assert_eq!(s.h2().ping_timeouts, 1);
    assert_eq!(s.app.deadline(), None);
}

#[test]
fn answered_pings_keep_the_connection() {
    let mut s = Srv::handshaken(keepalive());
    for _ in 0..10 {
        s.advance(S(10));
        let f = s.frames();
        assert_eq!((f.len(), f[0].ty), (1, PING), "{f:?}");
        s.advance(S(2));
        s.write(&frame(PING, ACK, 0, &f[0].payload));
        assert!(s.frames().is_empty());
    }
    assert_eq!(s.close(), Close::No);
    assert_eq!(s.h2().ping_timeouts, 0);
}

#[test]
fn traffic_means_no_ping() {
    let mut s = Srv::handshaken(keepalive());
    for i in 0..20u32 {
        s.advance(S(8));
        s.write(&request(1 + 2 * i, "GET", "/health", true));
        assert!(!s.frames().iter().any(|f| f.ty == PING));
    }
}

#[test]
fn idle_connection_gets_goaway_and_closes() {
    let mut s = Srv::handshaken(H2Config {
        idle_timeout: Some(S(60)),
        ..H2Config::default()
    });
    s.advance(S(30));
    s.write(&request(1, "GET", "/health", true));
    s.frames();
    s.advance(S(59));
    assert!(s.frames().is_empty());
    assert_eq!(s.close(), Close::No);
    s.advance(S(2));
    let f = s.frames();
    let g = goaway(&f).expect("GOAWAY");
    assert_eq!((g.code(), g.last_stream()), (NO_ERROR, 1));
    assert_eq!(s.close(), Close::Graceful);
    assert_eq!(s.http().idle_timeouts, 1);
    assert_eq!(s.h2().goaway_sent, 1);
}

#[test]
fn an_open_stream_is_not_idle() {
    let mut s = Srv::handshaken(H2Config {
        idle_timeout: Some(S(10)),
        ..H2Config::default()
    });
    s.write(&request(1, "POST", "/echo", false));
    for _ in 0..10 {
        s.advance(S(5));
        s.write(&frame(DATA, 0, 1, b"x"));
    }
    s.write(&frame(DATA, END_STREAM, 1, b""));
    assert!(goaway(&s.frames()).is_none());
    assert_eq!(s.close(), Close::No);
    s.advance(S(11));
    assert_eq!(s.close(), Close::Graceful);
}

#[test]
fn slow_header_block_times_out() {
    let mut s = Srv::handshaken(H2Config {
        head_timeout: S(10),
        idle_timeout: None,
        ..H2Config::default()
    });
    let block = request_block("GET", "/health");
    s.write(&frame(HEADERS, END_STREAM, 1, &block[..4]));
    s.advance(S(9));
    s.write(&frame(CONTINUATION, 0, 1, &block[4..8]));
    assert!(s.frames().is_empty());
    // Measured from the HEADERS frame, not the last CONTINUATION.
    s.advance(Duration::from_millis(1_500));
    let f = s.frames();
    assert_eq!(goaway(&f).expect("GOAWAY").code(), NO_ERROR);
    assert_eq!(s.close(), Close::Graceful);
    assert_eq!(s.http().head_timeouts, 1);
}

#[test]
fn slow_frame_header_times_out() {
    let mut s = Srv::handshaken(H2Config {
        head_timeout: S(10),
        idle_timeout: None,
        ..H2Config::default()
    });
    let h = request(1, "GET", "/health", true);
    s.write(&h[..5]);
    s.advance(S(11));
    assert_eq!(s.close(), Close::Graceful);
    assert_eq!(s.http().head_timeouts, 1);
}

#[test]
fn slow_preface_times_out() {
    let mut s = Srv::new(H2Config {
        head_timeout: S(10),
        idle_timeout: None,
        ..H2Config::default()
    });
    s.write(&sluice_h2::PREFACE[..5]);
    s.advance(S(11));
    assert_eq!(s.close(), Close::Graceful);
    assert_eq!(s.http().head_timeouts, 1);
}

#[test]
fn header_block_within_the_limit_is_fine() {
    let mut s = Srv::handshaken(H2Config {
        head_timeout: S(10),
        idle_timeout: None,
        ..H2Config::default()
    });
    let block = request_block("GET", "/health");
    s.write(&frame(HEADERS, END_STREAM, 1, &block[..4]));
    s.advance(S(9));
    s.write(&frame(CONTINUATION, END_HEADERS, 1, &block[4..]));
    let f = s.frames();
    assert!(f.iter().any(|f| f.ty == DATA && f.payload == b"ok\n"));
    s.advance(S(100));
    assert_eq!(s.close(), Close::No);
    assert_eq!(s.http().head_timeouts, 0);
}

#[test]
fn drain_of_an_idle_connection() {
    let mut s = Srv::handshaken(H2Config {
        idle_timeout: None,
        ..H2Config::default()
    });
    s.write(&request(1, "GET", "/health", true));
    s.frames();
    s.app.drain(s.now);
    let f = s.frames();
    let g = goaway(&f).expect("GOAWAY");
    assert_eq!((g.code(), g.last_stream()), (NO_ERROR, (1 << 31) - 1));
    let p = f.iter().find(|f| f.ty == PING).expect("shutdown PING");
    assert_eq!(s.close(), Close::No);
    s.write(&frame(PING, ACK, 0, &p.payload));
    let f = s.frames();
    let g = goaway(&f).expect("final GOAWAY");
    assert_eq!((g.code(), g.last_stream()), (NO_ERROR, 1));
    assert_eq!(s.close(), Close::Graceful);
    assert_eq!(s.h2().goaway_sent, 1);
    assert_eq!(s.http().idle_timeouts, 0);
}

#[test]
fn drain_without_an_answer_ends_after_the_ping_timeout() {
    let mut s = Srv::handshaken(H2Config {
        idle_timeout: None,
        ping_timeout: S(5),
        ..H2Config::default()
    });
    s.app.drain(s.now);
    assert!(goaway(&s.frames()).is_some());
    s.advance(S(4));
    assert_eq!(s.close(), Close::No);
    s.advance(S(2));
    assert_eq!(s.close(), Close::Graceful);
}

#[test]
fn drain_before_the_preface() {
    let mut s = Srv::new(H2Config::default());
    s.app.drain(s.now);
    s.pump();
    assert_eq!(s.close(), Close::Graceful);
}

#[test]
fn requests_racing_the_drain_are_answered() {
    // Sent before the client saw the GOAWAY (stream id below 2^31-1).
    let mut s = Srv::handshaken(H2Config::default());
    s.app.drain(s.now);
    s.frames();
    s.write(&request(1, "GET", "/health", true));
    let f = s.frames();
    assert!(
        f.iter().any(|f| f.ty == DATA && f.payload == b"ok\n"),
        "{f:?}"
    );
}

#[test]
fn echo_body_that_stops_is_reset() {
    let mut s = Srv::handshaken(H2Config {
        progress_timeout: S(60),
        idle_timeout: None,
        ..H2Config::default()
    });
    s.write(&request(1, "POST", "/echo", false));
    // A byte every 50 s keeps it going.
    for _ in 0..5 {
        s.advance(S(50));
        s.write(&frame(DATA, 0, 1, b"x"));
        assert!(s.frames().iter().any(|f| f.ty == DATA));
    }
    s.advance(S(59));
    assert_eq!(s.app.active_streams(), 1);
    s.advance(S(2));
    let f = s.frames();
    let r = f.iter().find(|f| f.ty == RST_STREAM).expect("RST_STREAM");
    assert_eq!((r.stream, r.code()), (1, CANCEL));
    assert_eq!(s.http().progress_timeouts, 1);
    assert_eq!(s.h2().stalled_streams, 0);
    assert_eq!(s.close(), Close::No);
}
