//! HTTP/1.1 behind the application seam ([`sluice_app::App`]): a
//! [`ServerConn`] plus the timers the poll loop used to keep for it.
//!
//! Three deadlines, one armed at a time:
//! - a request head must be complete within `head` of its first byte
//!   (nginx's `client_header_timeout`, HAProxy's `timeout http-request`):
//!   a total, so a client that trickles one header line every few seconds
//!   is still cut off (408);
//! - between requests, `idle` (keep-alive);
//! - inside a body or a response, `progress`: nothing read and nothing
//!   written for that long.
//!
//! A connection that is still stuck [`GRACE`] after its timeout was
//! delivered (a 408 the peer does not read) is reset.

use std::time::Duration;

use sluice_app::{App, Close, LoopDate, SharedStats, Time};

use crate::{ServerConfig, ServerConn, Stats};

/// After a timeout was delivered, how long the connection may take to
/// write its answer and finish before it is reset.
pub const GRACE: Duration = Duration::from_secs(1);

/// The HTTP/1.1 timers (None: never).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Keep-alive: between requests.
    pub idle: Option<Duration>,
    /// A whole request head, from its first byte.
    pub head: Option<Duration>,
    /// Inside a request body or a response: no byte either way.
    pub progress: Option<Duration>,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            idle: Some(Duration::from_secs(60)),
            head: Some(Duration::from_secs(10)),
            progress: Some(Duration::from_secs(60)),
        }
    }
}

/// Which timer the deadline belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timer {
    Head,
    Idle,
    Progress,
    Grace,
}

/// One HTTP/1.1 connection as an [`App`].
#[derive(Debug)]
pub struct Http1App {
    conn: ServerConn,
    timeouts: Timeouts,
    stats: SharedStats,
    /// When the pending request head began.
    head_since: Option<Time>,
    /// When bytes last moved either way.
    last_progress: Time,
    /// A timeout was delivered; the next one resets.
    timed_out: bool,
    abort: bool,
    /// The client's verified SPIFFE ID (mTLS), for the requests of this
    /// connection (the proxy forwards it).
    peer_spiffe_id: Option<std::sync::Arc<str>>,
}

impl Http1App {
    pub fn new(
        cfg: &ServerConfig,
        timeouts: Timeouts,
        date: LoopDate,
        stats: SharedStats,
        now: Time,
    ) -> Self {
        Self {
            conn: ServerConn::with_date(cfg, date),
            timeouts,
            stats,
            head_since: None,
            last_progress: now,
            timed_out: false,
            abort: false,
            peer_spiffe_id: None,
        }
    }

    /// The client's verified SPIFFE ID (from TLS), kept for the requests.
    pub fn with_peer_spiffe_id(mut self, id: Option<std::sync::Arc<str>>) -> Self {
        self.peer_spiffe_id = id;
        self
    }

    /// Requests that a proxy route matches go to `proxy`.
    pub fn with_proxy(
        mut self,
        proxy: std::rc::Rc<dyn sluice_app::proxy::Proxy>,
        peer: crate::ProxyPeer,
    ) -> Self {
        self.conn.set_proxy(proxy, peer);
        self
    }

    /// The client's verified SPIFFE ID, if it presented one (mTLS).
    pub fn peer_spiffe_id(&self) -> Option<&str> {
        self.peer_spiffe_id.as_deref()
    }

    /// The HTTP/1.1 connection inside (tests, counters).
    pub fn server(&self) -> &ServerConn {
        &self.conn
    }

    fn timer(&self) -> Option<(Timer, Time)> {
        let after = |since: Time, d: Option<Duration>| d.map(|d| since + d);
        if self.timed_out {
            return Some((Timer::Grace, self.last_progress + GRACE));
        }
        if let Some(since) = self.head_since {
            let head = after(since, self.timeouts.head).map(|t| (Timer::Head, t));
            // A head that stops arriving altogether is also a stall.
            let stall =
                after(self.last_progress, self.timeouts.progress).map(|t| (Timer::Progress, t));
            return match (head, stall) {
                (Some(a), Some(b)) => Some(if a.1 <= b.1 { a } else { b }),
                (a, b) => a.or(b),
            };
        }
        if self.conn.is_idle() {
            return after(self.last_progress, self.timeouts.idle).map(|t| (Timer::Idle, t));
        }
        after(self.last_progress, self.timeouts.progress).map(|t| (Timer::Progress, t))
    }

    /// Moves the connection's counters into the loop's.
    fn flush_stats(&mut self) {
        let s: Stats = self.conn.take_stats();
        if s.requests == 0 && s.responses() == 0 {
            return;
        }
        let mut all = self.stats.borrow_mut();
        all.http.requests += s.requests;
        all.http.status_2xx += s.status_2xx;
        all.http.status_4xx += s.status_4xx;
        all.http.status_5xx += s.status_5xx;
    }

    fn track_head(&mut self, now: Time) {
        if self.conn.head_pending() {
            self.head_since.get_or_insert(now);
        } else {
            self.head_since = None;
        }
    }
}

impl App for Http1App {
    fn on_read(&mut self, now: Time, data: &[u8]) -> usize {
        let took = self.conn.on_read(data);
        if took > 0 {
            self.last_progress = now;
            self.track_head(now);
            self.flush_stats();
        }
        took
    }

    fn on_read_eof(&mut self, now: Time) {
        self.conn.on_read_eof();
        self.track_head(now);
    }

    fn poll_write(&mut self, now: Time, buf: &mut [u8]) -> usize {
        let n = self.conn.poll_write(buf);
        if n > 0 {
            self.last_progress = now;
            self.flush_stats();
        }
        n
    }

    fn wants_read(&self) -> bool {
        self.conn.wants_read()
    }

    fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    fn deadline(&self) -> Option<Time> {
        if self.abort || self.conn.should_close() {
            return None;
        }
        self.timer().map(|(_, t)| t)
    }

    fn on_timeout(&mut self, now: Time) {
        let Some((timer, at)) = self.timer() else {
            return;
        };
        if now < at {
            return;
        }
        match timer {
            Timer::Grace => {
                self.abort = true;
                return;
            }
            Timer::Head => self.stats.borrow_mut().http.head_timeouts += 1,
            Timer::Idle => self.stats.borrow_mut().http.idle_timeouts += 1,
            Timer::Progress => self.stats.borrow_mut().http.progress_timeouts += 1,
        }
        // 408 for half a head, close when idle, cut a stalled body short.
        self.conn.on_timeout();
        self.head_since = None;
        self.timed_out = true;
        self.last_progress = now;
        self.flush_stats();
    }

    fn memory(&self) -> usize {
        self.conn.memory_usage()
    }

    fn close(&self) -> Close {
        if self.abort {
            Close::Abort
        } else if self.conn.should_close() {
            Close::Graceful
        } else {
            Close::No
        }
    }

    fn is_idle(&self) -> bool {
        self.conn.is_idle()
    }

    fn release_idle_memory(&mut self) {
        self.conn.release_memory();
    }

    fn drain(&mut self, _now: Time) {
        self.conn.stop_taking_requests();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> Time {
        Time::from_millis(secs * 1000)
    }

    fn app(now: Time) -> (Http1App, SharedStats) {
        let stats = SharedStats::default();
        let t = Timeouts {
            idle: Some(Duration::from_secs(60)),
            head: Some(Duration::from_secs(10)),
            progress: Some(Duration::from_secs(30)),
        };
        let a = Http1App::new(
            &ServerConfig::default(),
            t,
            LoopDate::new(),
            stats.clone(),
            now,
        );
        (a, stats)
    }

    fn drain_output(a: &mut Http1App, now: Time) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = a.poll_write(now, &mut buf);
            if n == 0 {
                return out;
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    #[test]
    fn a_head_that_trickles_in_is_cut_off_at_its_total_deadline() {
        let (mut a, stats) = app(at(0));
        assert_eq!(a.deadline(), Some(at(60)), "idle keep-alive");
        a.on_read(at(1), b"GET /health HTTP/1.1\r\n");
        assert_eq!(
            a.deadline(),
            Some(at(11)),
            "head deadline from its first byte"
        );
        // One header line every 2 s: progress never stops, the head does
        // not finish.
        for t in [3, 5, 7, 9] {
            a.on_read(at(t), b"X-Slow: 1\r\n");
            assert_eq!(a.deadline(), Some(at(11)), "at {t}");
        }
        a.on_timeout(at(10));
        assert_eq!(a.close(), Close::No, "not due yet");
        a.on_timeout(at(11));
        let out = drain_output(&mut a, at(11));
        assert!(
            out.starts_with(b"HTTP/1.1 408 "),
            "{}",
            String::from_utf8_lossy(&out)
        );
        assert_eq!(a.close(), Close::Graceful);
        assert_eq!(stats.borrow().http.head_timeouts, 1);
        assert_eq!(stats.borrow().http.status_4xx, 1);
    }

    #[test]
    fn a_complete_head_clears_the_head_deadline_and_idle_takes_over() {
        let (mut a, stats) = app(at(0));
        a.on_read(at(1), b"GET /health HTTP/1.1\r\nHost: a");
        assert_eq!(a.deadline(), Some(at(11)));
        a.on_read(at(5), b"\r\n\r\n");
        let out = drain_output(&mut a, at(5));
        assert!(out.starts_with(b"HTTP/1.1 200 OK"));
        assert!(a.is_idle());
        assert_eq!(a.deadline(), Some(at(65)));
        a.on_timeout(at(65));
        assert_eq!(a.close(), Close::Graceful);
        let s = stats.borrow();
        assert_eq!(
            (s.http.requests, s.http.status_2xx, s.http.idle_timeouts),
            (1, 1, 1)
        );
    }

    #[test]
    fn a_timeout_the_peer_never_reads_ends_in_a_reset() {
        let (mut a, _) = app(at(0));
        a.on_read(at(0), b"GET /bytes/100000000 HTTP/1.1\r\nHost: a\r\n\r\n");
        let mut buf = [0u8; 1000];
        assert_eq!(a.poll_write(at(0), &mut buf), 1000);
        assert_eq!(a.deadline(), Some(at(30)), "stalled response");
        a.on_timeout(at(30));
        assert_eq!(a.deadline(), Some(at(31)), "grace");
        a.on_timeout(at(31));
        assert_eq!(a.close(), Close::Abort);
    }

    #[test]
    fn the_verified_spiffe_id_stays_with_the_connection() {
        let (a, _) = app(at(0));
        assert_eq!(a.peer_spiffe_id(), None);
        let a = a.with_peer_spiffe_id(Some("spiffe://good.test/ns/web/sa/x".into()));
        assert_eq!(a.peer_spiffe_id(), Some("spiffe://good.test/ns/web/sa/x"));
    }

    #[test]
    fn drain_closes_after_the_request_in_flight() {
        let (mut a, _) = app(at(0));
        a.on_read(at(0), b"GET /bytes/10 HTTP/1.1\r\nHost: a\r\n\r\n");
        a.drain(at(0));
        assert_eq!(a.close(), Close::No);
        let out = drain_output(&mut a, at(0));
        assert!(out.starts_with(b"HTTP/1.1 200 OK"));
        assert_eq!(a.close(), Close::Graceful);
    }

    /// Takes every request under `/api` and records what it was given.
    #[derive(Default)]
    struct Recorder {
        body: std::cell::RefCell<Vec<u8>>,
        ended: std::cell::Cell<u32>,
        trailers: std::cell::RefCell<Option<sluice_app::proxy::Headers>>,
    }

    impl sluice_app::proxy::Proxy for Recorder {
        fn matches(&self, _: Option<&[u8]>, _: &[u8], path: &[u8]) -> bool {
            path.starts_with(b"/api")
        }
        fn start(
            &self,
            _: sluice_app::proxy::ProxyRequest,
            _: sluice_app::proxy::WakeKey,
        ) -> sluice_app::proxy::ExchangeId {
            sluice_app::proxy::ExchangeId { index: 0, gen: 0 }
        }
        fn send_body(&self, _: sluice_app::proxy::ExchangeId, data: &[u8]) -> usize {
            self.body.borrow_mut().extend_from_slice(data);
            data.len()
        }
        fn end_body(
            &self,
            _: sluice_app::proxy::ExchangeId,
            trailers: Option<sluice_app::proxy::Headers>,
        ) {
            self.ended.set(self.ended.get() + 1);
            *self.trailers.borrow_mut() = trailers;
        }
        fn poll_response(
            &self,
            _: sluice_app::proxy::ExchangeId,
        ) -> Option<Result<sluice_app::proxy::ResponsePart, sluice_app::proxy::ProxyError>>
        {
            None
        }
        fn response_ready(&self, _: sluice_app::proxy::ExchangeId) -> bool {
            false
        }
        fn cancel(&self, _: sluice_app::proxy::ExchangeId) {}
    }

    #[test]
    fn a_chunked_request_bodys_trailers_reach_the_proxy() {
        let rec = std::rc::Rc::new(Recorder::default());
        let (a, _) = app(at(0));
        let mut a = a.with_proxy(rec.clone(), crate::ProxyPeer::default());
        let req = b"POST /api/up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
            3\r\nabc\r\n0002\r\nde\r\n0\r\nX-Sum: 5\r\nX-Count:  2 \r\n\r\n";
        // Byte by byte: the trailer section arrives in pieces.
        for b in req.chunks(1) {
            assert_eq!(a.on_read(at(0), b), 1);
        }
        assert_eq!(&rec.body.borrow()[..], b"abcde");
        assert_eq!(rec.ended.get(), 1);
        let t = rec.trailers.borrow();
        let t = t.as_ref().expect("trailers");
        assert_eq!(t.len(), 2);
        assert_eq!(t["x-sum"], "5");
        assert_eq!(t["x-count"], "2");
    }
}
