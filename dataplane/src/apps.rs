//! Which application serves a connection, and the per-loop state apps
//! share: the `Date` value and the counters (one loop's, never another's).
//!
//! - `--http` listeners: [`Sniff`] tells HTTP/1.1 from HTTP/2 with prior
//!   knowledge (h2c) by the connection preface.
//! - `--tls` listeners: TLS ([`sluice_tls`]), then HTTP/2 or HTTP/1.1 by
//!   the ALPN protocol agreed in the handshake.

use std::rc::Rc;
use std::sync::Arc;

use sluice_app::proxy::Proxy;
use sluice_app::{App, AppFactory, AppStats, Close, ConnContext, LoopDate, SharedStats, Time};
use sluice_h2::{H2App, H2Config};
use sluice_http::{Http1App, ProxyPeer, ServerConfig, Timeouts};
use sluice_tls::{TlsLoop, TlsServer};
use tracing::warn;

use crate::stats::Counters;

/// What a listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    /// Plaintext: HTTP/1.1, or HTTP/2 with prior knowledge (h2c).
    Http,
    /// TLS, then HTTP/2 or HTTP/1.1 by ALPN.
    Tls,
}

/// What every loop builds its apps from (`Send`: shared by the loops at
/// start-up, then each loop keeps its own copy).
#[derive(Clone, Default)]
pub struct AppsSetup {
    pub http: ServerConfig,
    pub http_timeouts: Timeouts,
    pub h2: H2Config,
    /// Certificates, keys and policy shared by every loop (reloaded on
    /// SIGHUP); None without --tls.
    pub tls: Option<Arc<TlsServer>>,
}

/// The HTTP apps of one loop, behind TLS or not.
struct HttpApps {
    /// The loop's proxy, when routes are configured.
    proxy: Option<Rc<dyn Proxy>>,
    http: ServerConfig,
    http_timeouts: Timeouts,
    h2: Rc<H2Config>,
    date: LoopDate,
    stats: SharedStats,
}

impl HttpApps {
    fn http1(&self, ctx: &ConnContext, now: Time) -> Box<dyn App> {
        let app = Http1App::new(
            &self.http,
            self.http_timeouts,
            self.date.clone(),
            Rc::clone(&self.stats),
            now,
        )
        .with_peer_spiffe_id(ctx.spiffe_id.clone());
        Box::new(match &self.proxy {
            Some(p) => app.with_proxy(
                Rc::clone(p),
                ProxyPeer {
                    wake: ctx.wake,
                    client: ctx.peer,
                    tls: ctx.tls,
                    spiffe_id: ctx.spiffe_id.clone(),
                    tls_handshake: ctx.tls_handshake,
                },
            ),
            None => app,
        })
    }

    fn http2(&self, ctx: &ConnContext, now: Time) -> Box<dyn App> {
        // The app takes the wake key, peer, TLS flag and SPIFFE ID for
        // proxied requests from `ctx`.
        let app = H2App::new(
            Rc::clone(&self.h2),
            self.date.clone(),
            Rc::clone(&self.stats),
            ctx,
            now,
        );
        Box::new(match &self.proxy {
            Some(p) => app.with_proxy(Rc::clone(p)),
            None => app,
        })
    }
}

/// Behind TLS: the ALPN protocol picks (no ALPN: HTTP/1.1).
impl AppFactory for HttpApps {
    fn make(&self, ctx: &ConnContext, now: Time) -> Box<dyn App> {
        if ctx.alpn.as_deref() == Some(b"h2") {
            self.http2(ctx, now)
        } else {
            self.http1(ctx, now)
        }
    }
}

/// One loop's app factory.
pub struct LoopApps {
    http: Rc<HttpApps>,
    tls: Option<TlsLoop>,
}

impl LoopApps {
    pub fn new(setup: &AppsSetup, proxy: Option<Rc<dyn Proxy>>) -> Self {
        let http = Rc::new(HttpApps {
            proxy,
            http: setup.http.clone(),
            http_timeouts: setup.http_timeouts,
            h2: Rc::new(setup.h2.clone()),
            date: LoopDate::new(),
            stats: SharedStats::default(),
        });
        let tls = setup.tls.as_ref().map(|server| {
            let factory: Rc<dyn AppFactory> = http.clone();
            TlsLoop::new(Arc::clone(server), factory, Rc::clone(&http.stats))
        });
        Self { http, tls }
    }

    /// The loop's `Date` header value (the loop refreshes it).
    pub fn date(&self) -> &LoopDate {
        &self.http.date
    }

    /// The app of a connection accepted on a `listener`, described by
    /// `ctx` (its peer and wake key).
    pub fn make(&mut self, listener: Listener, now: Time, ctx: ConnContext) -> Box<dyn App> {
        match listener {
            Listener::Http => {
                let (h1, h2) = (Rc::clone(&self.http), Rc::clone(&self.http));
                let ctx2 = ctx.clone();
                Box::new(Sniff::new(
                    now,
                    self.http.http_timeouts.idle,
                    Box::new(move |now| h1.http1(&ctx, now)),
                    Box::new(move |now| h2.http2(&ctx2, now)),
                ))
            }
            Listener::Tls => match self.tls.as_mut().map(|t| t.accept_with(now, ctx)) {
                Some(Ok(app)) => Box::new(app),
                Some(Err(e)) => {
                    warn!("refusing a TLS connection: {e}");
                    Box::new(Refused)
                }
                None => Box::new(Refused),
            },
        }
    }

    /// Copies the apps' counters into `c`.
    pub fn publish(&self, c: &mut Counters) {
        let s: AppStats = *self.http.stats.borrow();
        c.http_requests = s.http.requests;
        c.http_2xx = s.http.status_2xx;
        c.http_4xx = s.http.status_4xx;
        c.http_5xx = s.http.status_5xx;
        c.http_timeouts = s.http.head_timeouts + s.http.idle_timeouts + s.http.progress_timeouts;
        c.http_head_timeouts = s.http.head_timeouts;
        c.http_idle_timeouts = s.http.idle_timeouts;
        c.http_progress_timeouts = s.http.progress_timeouts;
        c.publish_tls(&s.tls);
        c.publish_h2(&s.h2);
    }
}

/// A connection that cannot be served (a TLS setup that failed): reset.
struct Refused;

impl App for Refused {
    fn on_read(&mut self, _: Time, _: &[u8]) -> usize {
        0
    }
    fn on_read_eof(&mut self, _: Time) {}
    fn poll_write(&mut self, _: Time, _: &mut [u8]) -> usize {
        0
    }
    fn wants_read(&self) -> bool {
        false
    }
    fn wants_write(&self) -> bool {
        false
    }
    fn deadline(&self) -> Option<Time> {
        None
    }
    fn on_timeout(&mut self, _: Time) {}
    fn memory(&self) -> usize {
        0
    }
    fn close(&self) -> Close {
        Close::Abort
    }
    fn is_idle(&self) -> bool {
        false
    }
    fn release_idle_memory(&mut self) {}
    fn drain(&mut self, _: Time) {}
}

/// The HTTP/2 connection preface (RFC 9113 §3.4).
pub use sluice_h2::PREFACE as H2_PREFACE;

/// A plaintext connection before it is known to be HTTP/1.1 or HTTP/2 with
/// prior knowledge (h2c): told apart by the connection preface, which no
/// HTTP/1.1 request begins with. Bytes read while deciding are handed to
/// the chosen app.
pub struct Sniff {
    seen: Vec<u8>,
    inner: Option<Box<dyn App>>,
    make_h1: Box<dyn Fn(Time) -> Box<dyn App>>,
    make_h2: Box<dyn Fn(Time) -> Box<dyn App>>,
    /// A connection that sends nothing is closed like an idle one.
    deadline: Option<Time>,
    timed_out: bool,
}

impl Sniff {
    pub fn new(
        now: Time,
        idle: Option<std::time::Duration>,
        make_h1: Box<dyn Fn(Time) -> Box<dyn App>>,
        make_h2: Box<dyn Fn(Time) -> Box<dyn App>>,
    ) -> Self {
        Self {
            seen: Vec::new(),
            inner: None,
            make_h1,
            make_h2,
            deadline: idle.map(|d| now + d),
            timed_out: false,
        }
    }

    /// Hands the bytes read while deciding to the chosen app, as far as it
    /// takes them.
    fn replay(&mut self, now: Time) {
        let Some(inner) = self.inner.as_mut() else {
            return;
        };
        while !self.seen.is_empty() {
            let took = inner.on_read(now, &self.seen);
            if took == 0 {
                return;
            }
            self.seen.drain(..took);
        }
        self.seen = Vec::new();
    }
}

impl App for Sniff {
    fn on_read(&mut self, now: Time, data: &[u8]) -> usize {
        let mut used = 0;
        if self.inner.is_none() {
            used = (H2_PREFACE.len() - self.seen.len()).min(data.len());
            self.seen.extend_from_slice(&data[..used]);
            if !H2_PREFACE.starts_with(&self.seen) {
                self.inner = Some((self.make_h1)(now));
            } else if self.seen.len() == H2_PREFACE.len() {
                self.inner = Some((self.make_h2)(now));
            } else {
                return used;
            }
        }
        self.replay(now);
        if !self.seen.is_empty() {
            return used;
        }
        let inner = self.inner.as_mut().expect("decided above");
        used + inner.on_read(now, &data[used..])
    }

    fn on_read_eof(&mut self, now: Time) {
        if self.inner.is_none() {
            self.inner = Some((self.make_h1)(now));
        }
        self.replay(now);
        if let Some(inner) = self.inner.as_mut() {
            inner.on_read_eof(now);
        }
    }

    fn poll_write(&mut self, now: Time, buf: &mut [u8]) -> usize {
        self.replay(now);
        self.inner.as_mut().map_or(0, |i| i.poll_write(now, buf))
    }

    fn wants_read(&self) -> bool {
        match &self.inner {
            None => !self.timed_out,
            Some(i) => i.wants_read(),
        }
    }

    fn wants_write(&self) -> bool {
        self.inner
            .as_ref()
            .is_some_and(|i| i.wants_write() || (!self.seen.is_empty() && i.wants_read()))
    }

    fn deadline(&self) -> Option<Time> {
        match &self.inner {
            None if !self.timed_out => self.deadline,
            None => None,
            Some(i) => i.deadline(),
        }
    }

    fn on_timeout(&mut self, now: Time) {
        match self.inner.as_mut() {
            None => self.timed_out = self.deadline.is_some_and(|d| now >= d),
            Some(i) => i.on_timeout(now),
        }
    }

    fn memory(&self) -> usize {
        self.seen.capacity() + self.inner.as_ref().map_or(0, |i| i.memory())
    }

    fn close(&self) -> Close {
        match &self.inner {
            None if self.timed_out => Close::Graceful,
            None => Close::No,
            Some(i) => i.close(),
        }
    }

    fn is_idle(&self) -> bool {
        self.inner.as_ref().is_none_or(|i| i.is_idle())
    }

    fn release_idle_memory(&mut self) {
        if let Some(i) = self.inner.as_mut() {
            i.release_idle_memory();
        }
    }

    fn drain(&mut self, now: Time) {
        match self.inner.as_mut() {
            None => self.timed_out = true,
            Some(i) => i.drain(now),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    /// Records what it is given; `kind` says which maker built it.
    struct Recorder {
        kind: &'static str,
        log: Log,
        eof: bool,
    }

    impl App for Recorder {
        fn on_read(&mut self, _: Time, data: &[u8]) -> usize {
            self.log.borrow_mut().push((self.kind, data.to_vec()));
            data.len()
        }
        fn on_read_eof(&mut self, _: Time) {
            self.eof = true;
            self.log.borrow_mut().push((self.kind, b"<eof>".to_vec()));
        }
        fn poll_write(&mut self, _: Time, _: &mut [u8]) -> usize {
            0
        }
        fn wants_read(&self) -> bool {
            !self.eof
        }
        fn wants_write(&self) -> bool {
            false
        }
        fn deadline(&self) -> Option<Time> {
            None
        }
        fn on_timeout(&mut self, _: Time) {}
        fn memory(&self) -> usize {
            0
        }
        fn close(&self) -> Close {
            Close::No
        }
        fn is_idle(&self) -> bool {
            true
        }
        fn release_idle_memory(&mut self) {}
        fn drain(&mut self, _: Time) {}
    }

    type Log = Rc<RefCell<Vec<(&'static str, Vec<u8>)>>>;

    fn sniff() -> (Sniff, Log) {
        let log: Log = Rc::default();
        let maker = |kind: &'static str, log: &Log| -> Box<dyn Fn(Time) -> Box<dyn App>> {
            let log = Rc::clone(log);
            Box::new(move |_| {
                Box::new(Recorder {
                    kind,
                    log: Rc::clone(&log),
                    eof: false,
                })
            })
        };
        let s = Sniff::new(
            Time::ZERO,
            Some(std::time::Duration::from_secs(5)),
            maker("h1", &log),
            maker("h2", &log),
        );
        (s, log)
    }

    /// What the chosen app got, joined.
    fn received(log: &Log) -> (Vec<&'static str>, Vec<u8>) {
        let mut kinds: Vec<_> = log.borrow().iter().map(|(k, _)| *k).collect();
        kinds.dedup();
        (
            kinds,
            log.borrow().iter().flat_map(|(_, b)| b.clone()).collect(),
        )
    }

    #[test]
    fn the_preface_in_pieces_picks_http2_and_every_byte_reaches_it() {
        let (mut s, log) = sniff();
        let mut input = H2_PREFACE.to_vec();
        input.extend_from_slice(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00");
        for piece in input.chunks(5) {
            assert_eq!(s.on_read(Time::ZERO, piece), piece.len());
        }
        assert_eq!(received(&log), (vec!["h2"], input));
    }

    #[test]
    fn a_request_picks_http1_at_the_first_byte_that_differs() {
        let (mut s, log) = sniff();
        // "P" and "PR" could still be the preface; "PRO" cannot.
        let input = b"PROPFIND / HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(s.on_read(Time::ZERO, &input[..2]), 2);
        assert!(log.borrow().is_empty(), "undecided");
        assert_eq!(s.on_read(Time::ZERO, &input[2..]), input.len() - 2);
        assert_eq!(received(&log), (vec!["h1"], input.to_vec()));
    }

    #[test]
    fn eof_before_the_decision_goes_to_http1_with_the_bytes_seen() {
        let (mut s, log) = sniff();
        s.on_read(Time::ZERO, b"PRI * ");
        s.on_read_eof(Time::ZERO);
        assert_eq!(received(&log), (vec!["h1"], b"PRI * <eof>".to_vec()));
    }

    #[test]
    fn a_connection_that_never_speaks_is_closed_at_the_idle_deadline() {
        let (mut s, _) = sniff();
        assert_eq!(s.deadline(), Some(Time::from_millis(5000)));
        s.on_timeout(Time::from_millis(4999));
        assert_eq!(s.close(), Close::No);
        s.on_timeout(Time::from_millis(5000));
        assert_eq!(s.close(), Close::Graceful);
        assert_eq!(s.deadline(), None);
    }
}
