//! Settings of the HTTP/2 server: plain data from the command line, shared
//! (in an `Rc`) by every connection of a loop.

use std::time::Duration;

/// A rate limit on one kind of frame: `burst` frames at once, then
/// `per_sec` a second (a token bucket, kept as a GCRA "theoretical arrival
/// time", so it needs one integer per connection and no timer). Some kinds
/// also earn tokens from useful work (see docs/http2.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FloodLimit {
    pub burst: u32,
    /// Refill rate; 0: the burst is all a connection ever gets (besides
    /// tokens earned by work).
    pub per_sec: u32,
}

impl FloodLimit {
    /// No limit.
    pub const OFF: FloodLimit = FloodLimit {
        burst: u32::MAX,
        per_sec: u32::MAX,
    };

    pub const fn new(burst: u32, per_sec: u32) -> Self {
        FloodLimit { burst, per_sec }
    }

    pub fn is_off(&self) -> bool {
        self.burst == u32::MAX
    }
}

/// Configuration of the HTTP/2 server (`--h2-*` flags, docs/http2.md).
/// Out-of-range values are clamped to what RFC 9113 allows when a
/// connection starts, never rejected with a panic.
#[derive(Clone, Debug)]
pub struct H2Config {
    /// SETTINGS_INITIAL_WINDOW_SIZE we advertise: how much request body a
    /// client may send on one stream before we release it. `/echo` holds at
    /// most this much per stream.
    pub initial_stream_window: u32,
    /// Receive window of the whole connection (a WINDOW_UPDATE on stream 0
    /// right after the handshake): bounds the request body bytes held for
    /// all streams together.
    pub connection_window: u32,
    /// SETTINGS_MAX_FRAME_SIZE (16 KiB to 16 MiB - 1); larger frames:
    /// FRAME_SIZE_ERROR.
    pub max_frame_size: u32,
    /// SETTINGS_MAX_CONCURRENT_STREAMS; more: RST_STREAM REFUSED_STREAM.
    pub max_concurrent_streams: u32,
    /// SETTINGS_MAX_HEADER_LIST_SIZE (decoded, RFC 7541 §4.1 sizes); the server
    /// also caps CONTINUATION frames from it.
    pub max_header_list_size: u32,
    /// Response bytes a stream hands the connection beyond what the
    /// client's windows let out (a built-in route's, or pulled from the
    /// proxy): past it, production waits.
    pub max_send_buffer: usize,
    /// Send a PING after this long without input (None: never).
    pub ping_interval: Option<Duration>,
    /// A PING unanswered this long: the peer is gone, reset the connection.
    /// Also bounds a drain whose shutdown PING is never answered.
    pub ping_timeout: Duration,
    /// No open stream for this long: GOAWAY and close (None: never).
    pub idle_timeout: Option<Duration>,
    /// A request head (HEADERS + CONTINUATION, from the first byte of the
    /// HEADERS frame header to the end of the END_HEADERS frame) must
    /// arrive within this.
    pub head_timeout: Duration,
    /// A stream that has response bytes to send but gets no send window
    /// for this long (while the connection's output is not blocked) is
    /// reset (`stalled_streams`).
    pub stall_timeout: Duration,
    /// An `/echo` whose request body stops for this long, with nothing
    /// left to send back, is reset (`progress_timeouts`).
    pub progress_timeout: Duration,
    /// Largest N of `/bytes/N`; beyond it: 400.
    pub max_bytes_route: u64,
    /// Output bytes buffered ahead of `poll_write`; response bodies wait
    /// in their streams beyond it.
    pub write_buffer: usize,
    /// Client PING frames (each costs a PING ACK). Earns a token per DATA
    /// or HEADERS frame sent.
    pub ping_flood: FloodLimit,
    /// Client SETTINGS frames, ACKs excluded (each costs an ACK and a
    /// re-application).
    pub settings_flood: FloodLimit,
    /// WINDOW_UPDATE frames. Earns 8 tokens per DATA frame sent and one
    /// per request.
    pub window_update_flood: FloodLimit,
    /// PRIORITY, PRIORITY_UPDATE and unknown extension frames (work for
    /// nothing). Earns 2 tokens per request.
    pub priority_flood: FloodLimit,
    /// DATA without END_STREAM, HEADERS without END_STREAM and
    /// CONTINUATION that carry no payload. Earns a token per non-empty
    /// DATA or HEADERS frame.
    pub empty_frame_flood: FloodLimit,
    /// RST_STREAM from the client (rapid reset, CVE-2023-44487). Earns a
    /// token per response completed.
    pub reset_flood: FloodLimit,
    /// RST_STREAM we send (MadeYouReset, CVE-2025-8671: the client makes
    /// us reset streams). Earns a token per response completed.
    pub local_reset_flood: FloodLimit,
}

impl Default for H2Config {
    fn default() -> Self {
        H2Config {
            initial_stream_window: 256 * 1024,
            connection_window: 1024 * 1024,
            max_frame_size: 16 * 1024,
            max_concurrent_streams: 100,
            max_header_list_size: 32 * 1024,
            max_send_buffer: 64 * 1024,
            ping_interval: None,
            ping_timeout: Duration::from_secs(20),
            idle_timeout: Some(Duration::from_secs(60)),
            head_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(30),
            progress_timeout: Duration::from_secs(60),
            max_bytes_route: 16 << 30,
            write_buffer: 32 * 1024,
            ping_flood: FloodLimit::new(100, 10),
            settings_flood: FloodLimit::new(32, 2),
            window_update_flood: FloodLimit::new(200, 20),
            priority_flood: FloodLimit::new(200, 20),
            empty_frame_flood: FloodLimit::new(32, 4),
            reset_flood: FloodLimit::new(100, 10),
            local_reset_flood: FloodLimit::new(100, 10),
        }
    }
}

impl H2Config {
    pub(crate) fn write_cap(&self) -> usize {
        // Frame headers are written whole; a few KiB keep it moving.
        self.write_buffer.max(4096)
    }
}
