//! sluice-h2: the HTTP/2 server and upstream client of the sluice
//! dataplane, on sluice's own codec (sluice-h2codec).
//!
//! [`H2App`] is an [`App`](sluice_app::App): a [`ServerConn`] (the
//! sans-IO HTTP/2 server connection: frames, HPACK, streams, flow
//! control) driven by the poll loop, with what a gateway adds around it:
//! the built-in routes (docs/http.md), keepalive PINGs, idle and head
//! timeouts, a graceful two-step drain, and rate bounds on the frames that
//! cost work without doing any (floods), counted by a frame scanner over
//! the input before the connection parses it. With
//! [`H2App::with_proxy`], requests a proxy route matches are streamed to
//! the loop's reverse proxy instead, with HTTP/2 flow control as the
//! backpressure both ways. [`H2Client`] is the proxy's upstream side.
//!
//! Serving a connection whose preface the listener already read (h2c):
//!
//! ```
//! use std::rc::Rc;
//! use sluice_app::{App, ConnContext, LoopDate, SharedStats, Time};
//! use sluice_h2::{H2App, H2Config};
//!
//! let stats = SharedStats::default();
//! let mut app = H2App::new(
//!     Rc::new(H2Config::default()),
//!     LoopDate::new(),
//!     stats.clone(),
//!     &ConnContext::default(),
//!     Time::ZERO,
//! );
//! assert_eq!(app.on_read(Time::ZERO, sluice_h2::PREFACE), 24);
//! let mut out = [0u8; 1024];
//! let n = app.poll_write(Time::ZERO, &mut out);
//! assert_eq!(out[3], 0x4); // our SETTINGS frame
//! assert!(n >= 9);
//! assert_eq!(stats.borrow().h2.connections, 1);
//! ```
#![forbid(unsafe_code)]

mod app;
mod client;
mod config;
mod fields;
mod guard;
mod proxied;
mod routes;
mod scan;
mod server;

pub use app::H2App;
pub use client::{ClientRequest, H2Client, H2ClientConfig, H2Event, SendError, StreamFailure};
pub use config::{FloodLimit, H2Config};
pub use server::{FrameCounts, RequestHead, ServerConn, ServerConnConfig, ServerEvent};

/// Bytes a connection holds for as long as it lives: its two HPACK
/// dynamic tables (4 KiB each, the RFC's default size, which we neither
/// raise for clients nor let backends raise). Counted in every
/// connection's [`sluice_app::App::memory`], so the loop's memory budget
/// sees them.
pub const CODEC_BUFFERS: usize = 2 * 4096;

/// The client connection preface (RFC 9113 §3.4): a plaintext listener
/// that sees it picks HTTP/2 (h2c with prior knowledge).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Feeds arbitrary bytes (after a valid preface) to an [`H2App`] as a
/// client would, in pieces and over virtual time, and checks the app's
/// invariants. The body of the cargo-fuzz target.
#[doc(hidden)]
pub fn fuzz_frames(data: &[u8]) {
    use sluice_app::{App, Close, ConnContext, LoopDate, SharedStats, Time};
    use std::rc::Rc;
    use std::time::Duration;

    let cfg = H2Config {
        ping_interval: Some(Duration::from_secs(5)),
        ..H2Config::default()
    };
    // Output, a partial frame, a header block being assembled, the HPACK
    // tables, request DATA not yet taken (the connection window) and
    // response bytes ahead of the windows.
    let bound = cfg.write_cap()
        + 2 * cfg.max_frame_size as usize
        + 2 * cfg.max_header_list_size as usize
        + CODEC_BUFFERS
        + cfg.connection_window as usize
        + (cfg.max_concurrent_streams as usize + 1) * (cfg.max_send_buffer + 64 * 1024);
    let date = LoopDate::new();
    date.set_unix_time(0);
    let mut now = Time::ZERO;
    let mut app = H2App::new(
        Rc::new(cfg),
        date,
        SharedStats::default(),
        &ConnContext::default(),
        now,
    );
    let (step, data) = match data.split_first() {
        Some((&s, rest)) => (usize::from(s % 64) + 1, rest),
        None => (1, data),
    };
    let mut input: Vec<u8> = PREFACE.to_vec();
    input.extend_from_slice(data);
    let mut at = 0;
    let mut out = vec![0u8; 4096];
    let mut idle_rounds = 0;
    while idle_rounds < 8 {
        let mut moved = false;
        if at < input.len() && app.wants_read() {
            let end = (at + step).min(input.len());
            let took = app.on_read(now, &input[at..end]);
            assert!(took <= end - at);
            at += took;
            moved |= took > 0;
        } else if at == input.len() {
            app.on_read_eof(now);
            at += 1;
            moved = true;
        }
        while app.wants_write() {
            let n = app.poll_write(now, &mut out);
            assert!(n <= out.len());
            if n == 0 {
                break;
            }
            moved = true;
        }
        // Time moves in small steps while input flows, then jumps to the
        // next deadline (timeouts are part of what is fuzzed).
        now += Duration::from_millis(10);
        if !moved {
            if let Some(d) = app.deadline() {
                now = now.max(d);
            }
        }
        if app.deadline().is_some_and(|d| d <= now) {
            app.on_timeout(now);
            // A timeout acts: the deadline moves on (or the app closes).
            assert!(app.deadline().is_none_or(|d| d > now), "timer spins");
            moved = true;
        }
        assert!(app.memory() <= bound, "memory {} > {bound}", app.memory());
        assert!(!app.panicked(), "h2 panicked");
        if app.close() != Close::No {
            break;
        }
        idle_rounds = if moved { 0 } else { idle_rounds + 1 };
    }
}
