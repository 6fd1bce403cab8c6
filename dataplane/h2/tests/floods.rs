//! The flood bounds: each fires under abuse (GOAWAY ENHANCE_YOUR_CALM, its
//! counter, a graceful close once the GOAWAY is out) and stays quiet for
//! a client that does the same thing at a normal pace.

mod common;

use std::time::Duration;

use common::*;
use sluice_app::{App, Close};
use sluice_h2::H2Config;

fn cfg() -> H2Config {
    H2Config {
        idle_timeout: None,
        ..H2Config::default()
    }
}

fn srv() -> Srv {
    Srv::handshaken(cfg())
}

/// The connection was ended for a flood: GOAWAY ENHANCE_YOUR_CALM, then
/// a graceful close, and input is dropped from then on.
fn expect_calm(s: &mut Srv) {
    let f = s.frames();
    let g = goaway(&f).unwrap_or_else(|| panic!("no GOAWAY in {f:?}"));
    assert_eq!(g.code(), ENHANCE_YOUR_CALM, "{f:?}");
    assert_eq!(s.close(), Close::Graceful);
    assert_eq!(s.h2().goaway_sent, 1);
    assert_eq!(s.app.on_read(s.now, &ping([0; 8])), 17);
    assert!(s.frames().is_empty());
}

fn no_goaway(s: &mut Srv) -> Vec<RawFrame> {
    let f = s.frames();
    assert!(goaway(&f).is_none(), "{f:?}");
    assert_eq!(s.close(), Close::No);
    f
}

fn repeat(f: &[u8], n: usize) -> Vec<u8> {
    f.repeat(n)
}

#[test]
fn ping_flood() {
    let mut s = srv();
    s.write(&repeat(&ping([1; 8]), 150));
    expect_calm(&mut s);
    assert_eq!(s.h2().ping_floods, 1);
}

#[test]
fn pings_at_a_normal_pace() {
    let mut s = srv();
    // A burst at start-up, then one a second for five minutes.
    s.write(&repeat(&ping([1; 8]), 20));
    assert_eq!(no_goaway(&mut s).len(), 20);
    for _ in 0..300 {
        s.advance(Duration::from_secs(1));
        s.write(&ping([2; 8]));
        let f = no_goaway(&mut s);
        assert_eq!((f.len(), f[0].ty, f[0].flags), (1, PING, ACK));
    }
    assert_eq!(s.h2().ping_floods, 0);
}

#[test]
fn pings_while_downloading_earn_tokens() {
    // A BDP prober: a PING for every DATA frame it receives.
    let mut s = srv();
    s.write(&request(1, "GET", "/bytes/4000000", true));
    let mut done = false;
    let mut pings = 0;
    while !done {
        let f = no_goaway(&mut s);
        let mut reply = Vec::new();
        for d in f.iter().filter(|f| f.ty == DATA) {
            done |= d.flags & END_STREAM != 0;
            reply.extend(window_update(1, d.payload.len() as u32));
            reply.extend(window_update(0, d.payload.len() as u32));
            reply.extend(ping([3; 8]));
            pings += 1;
        }
        assert!(!reply.is_empty() || done);
        s.write(&reply);
    }
    assert!(pings > 200, "{pings}");
    assert_eq!(s.h2().ping_floods, 0);
    assert_eq!(s.h2().window_update_floods, 0);
}

#[test]
fn settings_flood() {
    let mut s = srv();
    s.write(&repeat(
        &settings(&[(SETTINGS_INITIAL_WINDOW_SIZE, 1000)]),
        40,
    ));
    expect_calm(&mut s);
    assert_eq!(s.h2().settings_floods, 1);
}

#[test]
fn settings_at_a_normal_pace() {
    let mut s = srv();
    for i in 0..60 {
        s.write(&settings(&[(SETTINGS_INITIAL_WINDOW_SIZE, 1000 + i)]));
        let f = no_goaway(&mut s);
        assert_eq!((f[0].ty, f[0].flags), (SETTINGS, ACK));
        s.advance(Duration::from_secs(1));
    }
    assert_eq!(s.h2().settings_floods, 0);
}

#[test]
fn window_update_flood() {
    let mut s = srv();
    s.write(&repeat(&window_update(0, 1), 300));
    expect_calm(&mut s);
    assert_eq!(s.h2().window_update_floods, 1);
}

#[test]
fn window_updates_for_every_data_frame_are_fine() {
    let mut s = srv();
    s.write(&settings(&[(SETTINGS_INITIAL_WINDOW_SIZE, 16_384)]));
    s.write(&request(1, "GET", "/bytes/3000000", true));
    let mut got = 0;
    let mut done = false;
    while !done {
        let f = no_goaway(&mut s);
        let mut reply = Vec::new();
        for d in f.iter().filter(|f| f.ty == DATA) {
            got += d.payload.len();
            done |= d.flags & END_STREAM != 0;
            // Tiny updates: two per DATA frame.
            let half = d.payload.len() as u32 / 2;
            for inc in [half, d.payload.len() as u32 - half] {
                reply.extend(window_update(1, inc));
                reply.extend(window_update(0, inc));
            }
        }
        assert!(!reply.is_empty() || done);
        s.write(&reply);
    }
    assert_eq!(got, 3_000_000);
    assert_eq!(s.h2().window_update_floods, 0);
}

#[test]
fn priority_flood() {
    let mut s = srv();
    s.write(&repeat(&frame(PRIORITY, 0, 3, &[0, 0, 0, 0, 16]), 300));
    expect_calm(&mut s);
    assert_eq!(s.h2().priority_floods, 1);
}

#[test]
fn unknown_frame_flood() {
    let mut s = srv();
    s.write(&repeat(&frame(0xfa, 0, 0, b"x"), 300));
    expect_calm(&mut s);
    assert_eq!(s.h2().priority_floods, 1);
}

#[test]
fn priorities_with_requests_are_fine() {
    let mut s = srv();
    // Firefox used to open with a few PRIORITY frames on idle streams.
    for id in [3u32, 5, 7, 9, 11] {
        s.write(&frame(PRIORITY, 0, id, &[0, 0, 0, 0, 200]));
    }
    for i in 0..300u32 {
        let id = 13 + 2 * i;
        // PRIORITY and PRIORITY_UPDATE (RFC 9218) with every request.
        s.write(&frame(PRIORITY, 0, id, &[0, 0, 0, 0, 16]));
        s.write(&frame(
            0x10,
            0,
            0,
            &[&id.to_be_bytes()[..], b"u=3"].concat(),
        ));
        s.write(&request(id, "GET", "/health", true));
        no_goaway(&mut s);
    }
    assert_eq!(s.h2().priority_floods, 0);
    assert_eq!(s.http().requests, 300);
}

#[test]
fn empty_data_flood() {
    let mut s = srv();
    s.write(&request(1, "POST", "/echo", false));
    s.write(&repeat(&frame(DATA, 0, 1, &[]), 40));
    expect_calm(&mut s);
    assert_eq!(s.h2().empty_frame_floods, 1);
}

#[test]
fn empty_padded_data_flood() {
    let mut s = srv();
    s.write(&request(1, "POST", "/echo", false));
    s.write(&repeat(&frame(DATA, PADDED, 1, &[2, 0, 0]), 40));
    expect_calm(&mut s);
    assert_eq!(s.h2().empty_frame_floods, 1);
}

#[test]
fn empty_continuation_flood() {
    let mut s = srv();
    s.write(&frame(
        HEADERS,
        END_STREAM,
        1,
        &request_block("GET", "/health"),
    ));
    s.write(&repeat(&frame(CONTINUATION, 0, 1, &[]), 40));
    expect_calm(&mut s);
    assert_eq!(s.h2().empty_frame_floods, 1);
}

#[test]
fn empty_headers_flood() {
    let mut s = srv();
    for i in 0..40u32 {
        s.pending_in
            .extend(frame(HEADERS, END_HEADERS, 1 + 2 * i, &[]));
    }
    s.pump();
    expect_calm(&mut s);
    assert_eq!(s.h2().empty_frame_floods, 1);
}

#[test]
fn echo_with_some_empty_frames_is_fine() {
    let mut s = srv();
    for i in 0..20u32 {
        let id = 1 + 2 * i;
        s.write(&request(id, "POST", "/echo", false));
        for _ in 0..10 {
            s.write(&frame(DATA, 0, id, &[7; 100]));
            s.write(&frame(DATA, 0, id, &[]));
        }
        s.write(&frame(DATA, END_STREAM, id, &[]));
        let f = no_goaway(&mut s);
        let echoed: usize = f
            .iter()
            .filter(|f| f.ty == DATA && f.stream == id)
            .map(|f| f.payload.len())
            .sum();
        assert_eq!(echoed, 1000);
    }
    assert_eq!(s.h2().empty_frame_floods, 0);
}

/// CVE-2023-44487: streams opened and reset at once.
#[test]
fn rapid_reset() {
    let mut s = srv();
    let mut b = Vec::new();
    for i in 0..150u32 {
        let id = 1 + 2 * i;
        b.extend(request(id, "GET", "/bytes/100000", true));
        b.extend(rst(id, CANCEL));
    }
    s.write(&b);
    expect_calm(&mut s);
    assert_eq!(s.h2().reset_floods, 1);
}

#[test]
fn cancelling_some_requests_is_fine() {
    let mut s = srv();
    for i in 0..200u32 {
        let id = 1 + 2 * i;
        if i % 2 == 0 {
            s.write(&request(id, "GET", "/health", true));
        } else {
            s.write(&request(id, "GET", "/bytes/10000000", true));
            s.write(&rst(id, CANCEL));
        }
        no_goaway(&mut s);
    }
    assert_eq!(s.h2().reset_floods, 0);
    // The cancelled responses used the connection window; once the client
    // gives it back, the small responses queued behind it finish and
    // nothing stays open.
    s.write(&window_update(0, 1 << 30));
    no_goaway(&mut s);
    assert_eq!(s.app.active_streams(), 0);
}

/// A request whose body contradicts its content-length: h2 resets the
/// stream.
fn bad_length(id: u32) -> Vec<u8> {
    let mut block = request_block("POST", "/echo");
    block.extend(hpack(&[("content-length", "5")]));
    let mut v = frame(HEADERS, END_HEADERS, id, &block);
    v.extend(frame(DATA, END_STREAM, id, b"abc"));
    v
}

/// MadeYouReset (CVE-2025-8671): the client makes the server reset
/// streams.
#[test]
fn made_you_reset() {
    let mut s = srv();
    let mut b = Vec::new();
    for i in 0..150u32 {
        b.extend(bad_length(1 + 2 * i));
    }
    s.write(&b);
    expect_calm(&mut s);
    assert_eq!(s.h2().reset_floods, 1);
}

#[test]
fn a_few_server_resets_are_fine() {
    let mut s = srv();
    for i in 0..60u32 {
        s.write(&bad_length(1 + 2 * i));
        let f = no_goaway(&mut s);
        assert!(f.iter().any(|f| f.ty == RST_STREAM), "{f:?}");
        s.advance(Duration::from_millis(200));
    }
    assert_eq!(s.h2().reset_floods, 0);
}

#[test]
fn stalled_stream_is_reset() {
    let mut s = srv();
    s.write(&settings(&[(SETTINGS_INITIAL_WINDOW_SIZE, 0)]));
    s.write(&request(1, "GET", "/bytes/1000", true));
    let f = no_goaway(&mut s);
    assert!(f.iter().any(|f| f.ty == HEADERS && f.stream == 1));
    s.advance(Duration::from_secs(29));
    no_goaway(&mut s);
    assert_eq!(s.app.active_streams(), 1);
    s.advance(Duration::from_secs(2));
    let f = no_goaway(&mut s);
    let r = f.iter().find(|f| f.ty == RST_STREAM).expect("RST_STREAM");
    assert_eq!((r.stream, r.code()), (1, CANCEL));
    assert_eq!(s.h2().stalled_streams, 1);
    assert_eq!(s.app.active_streams(), 0);
    // The connection carries on.
    s.write(&settings(&[(SETTINGS_INITIAL_WINDOW_SIZE, 65_535)]));
    s.write(&request(3, "GET", "/health", true));
    assert!(no_goaway(&mut s)
        .iter()
        .any(|f| f.ty == DATA && f.stream == 3));
}

#[test]
fn a_window_opened_in_time_is_not_a_stall() {
    let mut s = srv();
    s.write(&settings(&[(SETTINGS_INITIAL_WINDOW_SIZE, 0)]));
    s.write(&request(1, "GET", "/bytes/1000", true));
    s.frames();
    s.advance(Duration::from_secs(20));
    s.write(&window_update(1, 600));
    let got: usize = s
        .frames()
        .iter()
        .filter(|f| f.ty == DATA)
        .map(|f| f.payload.len())
        .sum();
    assert_eq!(got, 600);
    // The clock restarts once the window is used up again.
    s.advance(Duration::from_secs(25));
    s.write(&window_update(1, 400));
    let f = no_goaway(&mut s);
    let d: Vec<_> = f.iter().filter(|f| f.ty == DATA).collect();
    assert_eq!(d.iter().map(|f| f.payload.len()).sum::<usize>(), 400);
    assert_ne!(d.last().unwrap().flags & END_STREAM, 0);
    assert_eq!(s.h2().stalled_streams, 0);
}

#[test]
fn floods_are_measured_over_time() {
    // The same 150 PINGs, spread over 15 seconds: fine.
    let mut s = srv();
    for _ in 0..15 {
        s.write(&repeat(&ping([1; 8]), 10));
        no_goaway(&mut s);
        s.advance(Duration::from_secs(1));
    }
    assert_eq!(s.h2().ping_floods, 0);
}

#[test]
fn limits_can_be_turned_off() {
    let mut s = Srv::handshaken(H2Config {
        ping_flood: sluice_h2::FloodLimit::OFF,
        ..cfg()
    });
    s.write(&repeat(&ping([1; 8]), 1000));
    assert_eq!(no_goaway(&mut s).len(), 1000);
}

#[test]
fn flood_in_the_first_read() {
    // The preface, SETTINGS and the flood arrive together: the handshake
    // still completes so that the GOAWAY can go out.
    let mut s = Srv::new(cfg());
    let mut b = sluice_h2::PREFACE.to_vec();
    b.extend(settings(&[]));
    b.extend(repeat(&ping([1; 8]), 150));
    s.write(&b);
    let f = s.frames();
    assert_eq!(f[0].ty, SETTINGS);
    assert_eq!(goaway(&f).expect("GOAWAY").code(), ENHANCE_YOUR_CALM);
    assert!(!f.iter().any(|f| f.ty == PING));
    assert_eq!(s.close(), Close::Graceful);
    assert_eq!(s.h2().ping_floods, 1);
}
