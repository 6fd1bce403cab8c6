//! Dropping a connection in the common states does not even trip h2's
//! debug-build destructor assertions (hyperium/h2#907); the rarer states
//! that do are contained by the app.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use sluice_app::App;
use sluice_h2::H2Config;

#[test]
fn drops_in_every_state() {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = Arc::clone(&hits);
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        h.fetch_add(1, Ordering::Relaxed);
        eprintln!("panic seen: {info}");
    }));
    // Before the preface.
    drop(Srv::new(H2Config::default()));
    // Idle.
    drop(Srv::handshaken(H2Config::default()));
    // Streams open: a stalled /bytes, an /echo waiting for its body.
    let mut s = Srv::handshaken(H2Config::default());
    s.write(&settings(&[(SETTINGS_INITIAL_WINDOW_SIZE, 0)]));
    s.write(&request(1, "GET", "/bytes/100000", true));
    s.write(&request(3, "POST", "/echo", false));
    s.write(&frame(DATA, 0, 3, b"abc"));
    s.frames();
    let open = hits.load(Ordering::Relaxed);
    drop(s);
    let after_open = hits.load(Ordering::Relaxed) - open;
    // Ended by a protocol error with streams open.
    let mut s = Srv::handshaken(H2Config::default());
    s.write(&request(1, "POST", "/echo", false));
    s.write(&frame(DATA, 0, 0, b"x"));
    s.frames();
    drop(s);
    // Ping timeout with streams open.
    let mut s = Srv::handshaken(H2Config {
        ping_interval: Some(Duration::from_secs(1)),
        ..H2Config::default()
    });
    s.write(&settings(&[(SETTINGS_INITIAL_WINDOW_SIZE, 0)]));
    s.write(&request(1, "GET", "/bytes/100000", true));
    s.advance(Duration::from_secs(60));
    drop(s);
    std::panic::set_hook(prev);
    assert_eq!(after_open, 0);
    assert_eq!(hits.load(Ordering::Relaxed), 0);
}

/// The peer's FIN while one response streams and another waits for the
/// rest of its request body: h2 (debug builds) asserts while its state is
/// dropped. The app contains it, and the connection ends.
#[test]
fn eof_with_streams_half_open() {
    let mut s = Srv::handshaken(H2Config::default());
    s.write(&request(1, "GET", "/bytes/100000", false));
    s.write(&request(3, "PUT", "/bytes/7", false));
    s.app.on_read_eof(s.now);
    s.pump();
    assert_ne!(s.close(), sluice_app::Close::No);
    assert!(!s.app.panicked());
    drop(s);
}
