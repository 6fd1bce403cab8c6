//! TCP in a poll loop, and the seam to the applications on top of it: the
//! glue between the rings, the sans-IO TCP engine (`sluice_netstack::tcp`)
//! and the sans-IO applications (`sluice_app::App`: HTTP/1.1, HTTP/2, TLS
//! wrapping either), picked per listener by [`crate::apps::LoopApps`].
//!
//! Per received TCP frame: verify checksums, learn the peer's L2 header,
//! hand the segment to the engine. A segment for a flow this loop does not
//! know goes through the ownership directory: if another loop owns the
//! flow (RSS put it on the wrong queue), a copy goes to that loop's mailbox;
//! otherwise this loop claims it and the engine answers it (a SYN makes a
//! connection, a cookie ACK rebuilds one, anything else gets a RST).
//!
//! After the batch: engine timers, application timers (one timer wheel
//! entry per connection, armed at the app's deadline: idle connections
//! cost no time), engine events drive the apps (bytes from the engine's
//! receive ring into the app, the app's output into the engine's send ring,
//! within the send space so output is produced only as fast as the peer
//! takes it), and the engine's packets go out in free UMEM frames behind
//! the learned L2 header.
//!
//! When an app is done with a connection (an error response,
//! `Connection: close`, a timeout, a GOAWAY) the service closes it the way
//! nginx's lingering close does: FIN after the output (a half-close), then
//! whatever the peer still sends is read and dropped until its FIN, or
//! until [`LINGER_QUIET`] without input or [`LINGER_TOTAL`] in all, and
//! only then is the handle released. Releasing it at once would make the
//! engine answer every later data segment with a RST (as Linux does for a
//! closed socket), and a RST makes the peer's stack drop the response it
//! has not read yet.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::channel::Sender;
use sluice_app::proxy::{Proxy, WakeKey};
use sluice_app::{App, Close, ConnContext};
use sluice_netstack::echo::verify_checksums;
use sluice_netstack::frame::{classify, Classified, L4};
use sluice_netstack::tcp::ports::EphemeralPorts;
use sluice_netstack::tcp::timer_wheel::TimerWheel;
use sluice_netstack::tcp::tuple::FourTuple;
use sluice_netstack::tcp::{ConnId, Endpoint, EndpointConfig, Event, Handled, Unowned};
use sluice_netstack::time::Time;
use sluice_proxy::board::Board;
use sluice_proxy::record::{AccessRecord, Latency};
use sluice_proxy::{LoopProxy, ProxySpec, UpstreamId};
use sluice_xsk::Xsk;

use crate::apps::{AppsSetup, Listener, LoopApps};
use crate::handoff::{Directory, Forwarded, Mail, Mailbox, Postman};
use crate::neigh::{frame_ip_packet, Neighbours, ETH_HEADER};
use crate::stats::Counters;

/// Bytes moved between the engine and an app per call.
const STAGING: usize = 64 * 1024;
/// Send space below which an app is not asked for output while data is
/// still queued: it waits for ACKs to free more (a TLS record would not
/// fit, and small records cost per-record overhead and CPU).
const MIN_SEND_ROOM: usize = 4096;
/// Most peers whose L2 header a loop remembers.
const NEIGHBOURS: usize = 65_536;
/// Most frames the engine may fill per loop iteration.
const TX_BUDGET: usize = 256;
/// Granularity of the application timer wheel: app deadlines are seconds
/// apart, and a deadline never fires early.
const APP_TICK: Duration = Duration::from_millis(10);
/// Bytes one connection may move (in plus out) per visit: a connection
/// with more to do goes on the ready list and gets its next turn after
/// every other connection that was woken, so a bulk transfer (a 1 GB
/// download over TLS, a hundred HTTP/2 streams) cannot hold the loop for
/// the milliseconds its buffers would allow.
const PUMP_BUDGET: usize = 256 * 1024;
/// A keep-alive connection idle this long gives its buffers back (the next
/// request allocates them again): idle connections cost memory only for
/// their state, not for buffers sized for traffic.
const IDLE_RELEASE: Duration = Duration::from_secs(1);
/// How often each loop refreshes its HTTP `Date` value.
const DATE_PERIOD: Duration = Duration::from_secs(1);

/// The process-wide clock of the engines: one epoch for every loop, so a
/// SYN cookie minted by one loop validates on another. The wall-clock time
/// of the epoch lets a loop derive the `Date` header without a syscall.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    epoch: Instant,
    epoch_unix: Duration,
}

impl Clock {
    pub fn new() -> Self {
        let epoch = Instant::now();
        let epoch_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Self { epoch, epoch_unix }
    }

    #[inline]
    pub fn now(&self) -> Time {
        Time::from_nanos(self.epoch.elapsed().as_nanos() as u64)
    }

    /// The Instant a Time stands for (for sleeping until a deadline).
    pub fn instant(&self, t: Time) -> Instant {
        self.epoch + Duration::from_nanos(t.as_nanos())
    }

    /// Seconds since the Unix epoch at `t`.
    pub fn unix_secs(&self, t: Time) -> u64 {
        (self.epoch_unix + Duration::from_nanos(t.as_nanos())).as_secs()
    }

    /// Unix time of `t` with microseconds (the access log).
    pub fn unix_secs_f64(&self, t: Time) -> f64 {
        (self.epoch_unix + Duration::from_nanos(t.as_nanos())).as_secs_f64()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// What every loop's TCP service is made from.
#[derive(Clone)]
pub struct TcpSetup {
    /// Engine configuration; `core` and `cores` are set per loop.
    pub engine: EndpointConfig,
    /// Listeners and the application each one serves.
    pub listeners: Vec<(SocketAddr, Listener)>,
    /// What the loops build their apps from.
    pub apps: AppsSetup,
    pub clock: Clock,
    pub directory: Arc<Directory>,
    pub postman: Postman,
    /// The interface's MTU: no IP packet the engine builds is longer,
    /// whatever the MSS (the link would drop it without a word).
    pub mtu: usize,
    /// An app with output that could write none for this long is reset:
    /// the peer stopped reading (None: never).
    pub send_timeout: Option<Duration>,
    /// Where upstream connections come from (None: no active opens).
    pub upstream: Option<UpstreamSource>,
    /// Routes and clusters of the reverse proxy (None: built-in routes only).
    pub proxy: Option<Arc<ProxySpec>>,
    /// The health board the loops pick from, and where their outcomes go
    /// (the decision component).
    pub health: Option<(Arc<Board>, Sender<crate::health::Batch>)>,
    /// The access log's queue (None: off).
    pub access_log: Option<Sender<String>>,
    /// One latency slot per loop, drained by the reporter.
    pub latency: Vec<Arc<std::sync::Mutex<Latency>>>,
}

/// The addresses and ports the loops' active opens use. Replies to them
/// are steered by XDP (the VIP flag `LOCAL_PORTS`) into whatever queue the
/// NIC picks; port p belongs to loop p % loops, which is where a reply that
/// lands elsewhere is handed off (no directory lookup: the port says it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamSource {
    /// Source addresses, at most one per family is used by default.
    pub addrs: Vec<IpAddr>,
    pub ports: std::ops::RangeInclusive<u16>,
}

impl UpstreamSource {
    /// Whether a segment to `dst`:`port` is for one of our active opens.
    #[inline]
    fn owns(&self, dst: IpAddr, port: u16) -> bool {
        self.ports.contains(&port) && self.addrs.contains(&dst)
    }

    /// The source address for a connection to `remote`.
    pub fn source_for(&self, remote: IpAddr) -> Option<IpAddr> {
        self.addrs
            .iter()
            .copied()
            .find(|a| a.is_ipv4() == remote.is_ipv4())
    }
}

/// A lingering close ends when the peer sent nothing for this long (nginx's
/// `lingering_timeout`).
pub const LINGER_QUIET: Duration = Duration::from_secs(5);
/// ... or this long after it began, whatever the peer sends (nginx's
/// `lingering_time`).
pub const LINGER_TOTAL: Duration = Duration::from_secs(30);

/// A connection whose write side is shut: its input is read and dropped
/// until the peer's FIN or the linger limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Linger {
    since: Time,
    last_input: Time,
}

impl Linger {
    fn new(now: Time) -> Self {
        Self {
            since: now,
            last_input: now,
        }
    }

    /// Input arrived (and was dropped).
    fn on_input(&mut self, now: Time) {
        self.last_input = now;
    }

    /// When the linger ends if nothing more arrives.
    fn deadline(&self) -> Time {
        (self.last_input + LINGER_QUIET).min(self.since + LINGER_TOTAL)
    }

    /// Quiet for [`LINGER_QUIET`], or lingering for [`LINGER_TOTAL`]:
    /// release the connection (the engine resets it if more data comes).
    fn expired(&self, now: Time) -> bool {
        now >= self.deadline()
    }
}

/// One accepted connection and the app serving it.
struct AppConn {
    id: ConnId,
    app: Box<dyn App>,
    /// Bytes read from the engine that the app did not take yet.
    pending_in: Vec<u8>,
    /// App output the engine did not take yet (its memory budget ran out
    /// between asking for space and writing).
    pending_out: Vec<u8>,
    peer_finished: bool,
    eof_delivered: bool,
    /// close() or abort() was called: the engine finishes on its own.
    closing: bool,
    /// The app is done and our FIN is queued; input is dropped until the
    /// peer's FIN (see [`Linger`]).
    linger: Option<Linger>,
    /// Bytes this connection holds outside the engine (app and pending
    /// buffers), as last added to [`TcpService::app_mem`].
    mem: usize,
    /// Buffers were given back since bytes last moved (see [`IDLE_RELEASE`]).
    released: bool,
    /// On the ready list (it used its [`PUMP_BUDGET`] and has more to do).
    ready: bool,
    /// When the engine last took output from this connection, or when it
    /// last had none to give (the send timeout runs from then).
    last_output: Time,
    /// The connection's retransmit count when its last request was logged.
    retx_mark: u64,
}

impl AppConn {
    fn memory(&self) -> usize {
        self.app.memory() + self.pending_in.capacity() + self.pending_out.capacity()
    }
}

pub struct TcpService {
    core: u16,
    cores: u16,
    endpoint: Endpoint,
    /// Connections by the engine's slot index.
    conns: Vec<Option<AppConn>>,
    /// Which app each listener serves.
    listeners: Vec<(SocketAddr, Listener)>,
    apps: LoopApps,
    /// One entry per connection slot, armed at its app's (or linger's)
    /// deadline. Armed lazily: an entry may fire early (the app's deadline
    /// moved later) and is then re-armed; never late.
    timers: TimerWheel,
    neigh: Neighbours,
    staging: Box<[u8]>,
    clock: Clock,
    directory: Arc<Directory>,
    postman: Postman,
    mailbox: Mailbox,
    mtu: usize,
    send_timeout: Option<Duration>,
    upstream: Option<UpstreamSource>,
    /// Segments for an upstream port owned by another loop, sent there.
    upstream_handoffs: u64,
    proxy: Option<Rc<LoopProxy>>,
    /// Active opens not yet established, by handle and by the proxy's name.
    opening: HashMap<ConnId, UpstreamId>,
    opening_by_up: HashMap<UpstreamId, ConnId>,
    /// Scratch for the proxy's requests.
    proxy_connects: Vec<(UpstreamId, SocketAddr)>,
    proxy_aborts: Vec<UpstreamId>,
    proxy_wakes: Vec<WakeKey>,
    /// Where this loop's outcomes go, and batches lost to a full queue.
    outcomes_tx: Option<Sender<crate::health::Batch>>,
    outcome_batches_dropped: u64,
    access_log: Option<Sender<String>>,
    access_log_dropped: u64,
    records: Vec<AccessRecord>,
    latency: Option<Arc<std::sync::Mutex<Latency>>>,
    next_date: Time,
    /// Bytes every app of this loop holds (the gauge `app_mem_bytes`).
    app_mem: usize,
    http_lingering_closes: u64,
    http_linger_timeouts: u64,
    app_aborts: u64,
    /// Connections reset by the send timeout.
    send_timeouts: u64,
    /// Connections with an app.
    live: usize,
    /// Connections that used their budget and have more to do, in turn.
    ready: Vec<ConnId>,
    /// Scratch for the ready list being served.
    serving: Vec<ConnId>,
    /// Scratch for the timer wheel (kept to avoid an allocation).
    expired: Vec<u32>,
}

fn ip_of(addr: &[u8; 16], ipv6: bool) -> IpAddr {
    if ipv6 {
        IpAddr::V6(Ipv6Addr::from(*addr))
    } else {
        IpAddr::V4(Ipv4Addr::new(addr[12], addr[13], addr[14], addr[15]))
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn mapped(ip: IpAddr) -> [u8; 16] {
    crate::services::mapped(ip)
}

impl TcpService {
    pub fn new(setup: &TcpSetup, core: u16, cores: u16, mailbox: Mailbox) -> anyhow::Result<Self> {
        let mut cfg = setup.engine.clone();
        cfg.core = core;
        cfg.cores = cores;
        let now = setup.clock.now();
        let mut endpoint = Endpoint::new(cfg, now);
        for (at, _) in &setup.listeners {
            endpoint
                .listen(*at, 0)
                .map_err(|e| anyhow::anyhow!("listening on {at}: {e}"))?;
        }
        let proxy = setup.proxy.as_ref().map(|spec| {
            LoopProxy::for_loop(
                Arc::clone(spec),
                u32::from(core),
                u32::from(cores),
                // Random per run: trace and request ids must not repeat
                // after a restart.
                u64::from_le_bytes(setup.engine.isn_key[..8].try_into().unwrap_or_default())
                    ^ u64::from(core),
            )
        });
        if let (Some(p), Some((board, _))) = (&proxy, &setup.health) {
            p.set_board(Arc::clone(board));
        }
        let apps = LoopApps::new(&setup.apps, proxy.clone().map(|p| p as Rc<dyn Proxy>));
        apps.date().set_unix_time(setup.clock.unix_secs(now));
        Ok(Self {
            core,
            cores,
            endpoint,
            conns: Vec::new(),
            listeners: setup.listeners.clone(),
            apps,
            timers: TimerWheel::new(now, APP_TICK),
            neigh: Neighbours::new(NEIGHBOURS),
            staging: vec![0u8; STAGING].into_boxed_slice(),
            clock: setup.clock,
            directory: Arc::clone(&setup.directory),
            postman: setup.postman.clone(),
            mailbox,
            mtu: setup.mtu,
            send_timeout: setup.send_timeout,
            upstream: setup.upstream.clone(),
            upstream_handoffs: 0,
            proxy,
            opening: HashMap::new(),
            opening_by_up: HashMap::new(),
            proxy_connects: Vec::new(),
            proxy_aborts: Vec::new(),
            proxy_wakes: Vec::new(),
            outcomes_tx: setup.health.as_ref().map(|(_, tx)| tx.clone()),
            outcome_batches_dropped: 0,
            access_log: setup.access_log.clone(),
            access_log_dropped: 0,
            records: Vec::new(),
            latency: setup.latency.get(usize::from(core)).cloned(),
            next_date: now + DATE_PERIOD,
            app_mem: 0,
            http_lingering_closes: 0,
            http_linger_timeouts: 0,
            app_aborts: 0,
            send_timeouts: 0,
            live: 0,
            ready: Vec::new(),
            serving: Vec::new(),
            expired: Vec::new(),
        })
    }

    pub fn now(&self) -> Time {
        self.clock.now()
    }

    pub fn mailbox(&self) -> &Mailbox {
        &self.mailbox
    }

    /// The next timer (the engine's or an app's), as an Instant; now if a
    /// connection waits on the ready list.
    pub fn next_deadline(&self) -> Option<Instant> {
        if !self.ready.is_empty() {
            return Some(Instant::now());
        }
        let t = [
            self.endpoint.poll_timeout(),
            self.timers.next_deadline(),
            self.proxy.as_ref().and_then(|p| p.next_deadline()),
        ]
        .into_iter()
        .flatten()
        .min();
        t.map(|t| self.clock.instant(t))
    }

    /// A received TCP frame (already classified).
    #[inline]
    pub fn on_frame(&mut self, now: Time, frame: &[u8], cls: &Classified, c: &mut Counters) {
        if verify_checksums(frame, cls).is_err() {
            c.drop_bad_checksum += 1;
            return;
        }
        c.tcp_segments_in += 1;
        self.segment(now, frame, cls, false, c);
    }

    fn segment(
        &mut self,
        now: Time,
        frame: &[u8],
        cls: &Classified,
        forwarded: bool,
        c: &mut Counters,
    ) {
        let L4::Tcp { src_port, dst_port } = cls.l4 else {
            return;
        };
        let Some(seg) = cls.l4_bytes(frame) else {
            c.drop_malformed += 1;
            return;
        };
        let src = ip_of(&cls.src_addr, cls.ipv6);
        let dst = ip_of(&cls.dst_addr, cls.ipv6);
        let validated = self.endpoint.stats().segments_validated;
        if self.endpoint.handle_segment(now, src, dst, seg) == Handled::Consumed {
            // Only a segment the engine validated may move a peer's entry.
            if self.endpoint.stats().segments_validated != validated {
                self.neigh.confirm(now, frame, cls);
            } else {
                // Known peers keep their entry; an unknown one (its entry
                // was evicted) is remembered so the ACK or RST can go out.
                self.neigh.learn_new(now, frame, cls);
            }
            return;
        }
        let tuple = FourTuple::new(
            SocketAddr::new(dst, dst_port),
            SocketAddr::new(src, src_port),
        );
        let shared = self.cores > 1;
        let upstream = self
            .upstream
            .as_ref()
            .is_some_and(|u| u.owns(dst, dst_port));
        if shared && !forwarded {
            // An upstream port names its loop; any other flow is claimed
            // before it is created, so two loops that see the same SYN at
            // once do not both make a connection.
            let owner = if upstream {
                EphemeralPorts::owner(dst_port, self.cores)
            } else {
                self.directory.claim(tuple, self.core)
            };
            if owner != self.core {
                let mail = Forwarded {
                    frame: frame.to_vec(),
                    from: self.core,
                };
                if self.postman.send(owner, mail) {
                    c.tcp_handoff_out += 1;
                    self.upstream_handoffs += u64::from(upstream);
                } else {
                    c.tcp_handoff_overflow += 1;
                }
                return;
            }
        }
        let outcome = self.endpoint.handle_unowned(now, src, dst, seg);
        if outcome != Unowned::Dropped {
            // The SYN-ACK, cookie or RST needs the sender's header; a new
            // address is remembered, a known one is not repointed.
            self.neigh.learn_new(now, frame, cls);
        }
        match outcome {
            Unowned::Created(_) | Unowned::CookieAccepted(_) => {}
            Unowned::Reset | Unowned::CookieSent | Unowned::Dropped => {
                if shared && !upstream {
                    self.directory.release(&tuple, self.core);
                }
            }
        }
    }

    /// Segments other loops forwarded here.
    pub fn handle_mail(&mut self, now: Time, c: &mut Counters) -> usize {
        let mut n = 0;
        while let Some(mail) = self.mailbox.try_recv() {
            n += 1;
            match mail {
                Mail::Frame(mail) => {
                    c.tcp_handoff_in += 1;
                    match classify(&mail.frame) {
                        Ok(cls) => self.segment(now, &mail.frame, &cls, true, c),
                        Err(_) => c.drop_malformed += 1,
                    }
                }
                Mail::Neighbour(addr, header) => self.neigh.set_resolved(addr, header),
            }
        }
        if n > 0 {
            self.mailbox.reset_bell();
        }
        n
    }

    /// Connections with an app (not yet released).
    pub fn live_connections(&self) -> usize {
        self.live
    }

    /// SIGTERM: refuse new connections (the listeners close, so SYNs get a
    /// RST) and ask every app to finish what is in flight.
    pub fn begin_drain(&mut self, now: Time) {
        for (at, _) in &self.listeners {
            let _ = self.endpoint.unlisten(*at);
        }
        let ids: Vec<ConnId> = self.conns.iter().flatten().map(|c| c.id).collect();
        for id in ids {
            if let Some(conn) = self.conn_mut(id) {
                conn.app.drain(now);
            }
            self.pump(id, now);
        }
    }

    /// Reset every connection still open (the end of a drain).
    pub fn abort_all(&mut self) {
        let ids: Vec<ConnId> = self.conns.iter().flatten().map(|c| c.id).collect();
        for id in ids {
            let _ = self.endpoint.abort(id);
            self.forget(id);
        }
    }

    /// Timers, events and the apps they wake.
    pub fn run_engine(&mut self, now: Time) -> usize {
        if let Some(p) = &self.proxy {
            p.set_now(now);
        }
        if self
            .endpoint
            .poll_timeout()
            .is_some_and(|deadline| deadline <= now)
        {
            self.endpoint.handle_timeout(now);
        }
        if now >= self.next_date {
            self.next_date = now + DATE_PERIOD;
            self.apps.date().set_unix_time(self.clock.unix_secs(now));
        }
        let mut work = self.fire_app_timers(now);
        work += self.serve_ready(now);
        while let Some(ev) = self.endpoint.poll_event() {
            work += 1;
            match ev {
                Event::Accepted(id) => self.accept(id, now),
                Event::Connected(id) => self.connected(id, now),
                Event::Readable(id) | Event::Writable(id) => self.pump(id, now),
                Event::PeerFinished(id) => {
                    if let Some(conn) = self.conn_mut(id) {
                        conn.peer_finished = true;
                    }
                    self.pump(id, now);
                }
                Event::Closed(id, tuple) | Event::Reset(id, tuple) => {
                    if let Some(up) = self.opening.remove(&id) {
                        self.opening_by_up.remove(&up);
                        if let Some(p) = &self.proxy {
                            p.connect_failed(now, up);
                        }
                        let _ = self.endpoint.close(id);
                    }
                    self.forget(id);
                    // A connection in TIME_WAIT stays claimed until the
                    // entry ends: a FIN retransmitted onto another queue
                    // must reach it and be ACKed, not reset.
                    if self.cores > 1 && !self.endpoint.in_time_wait(&tuple) {
                        self.directory.release(&tuple, self.core);
                    }
                }
                Event::TimeWaitEnded(tuple) => {
                    if self.cores > 1 {
                        self.directory.release(&tuple, self.core);
                    }
                }
            }
        }
        work += self.run_proxy(now);
        work
    }

    fn accept(&mut self, id: ConnId, now: Time) {
        let tuple = self.endpoint.info(id).map(|i| i.tuple).ok();
        let listener = tuple
            .and_then(|t| self.listeners.iter().find(|(l, _)| *l == t.local))
            .map_or(Listener::Http, |(_, kind)| *kind);
        let ctx = ConnContext {
            peer: tuple.map(|t| t.remote),
            wake: WakeKey(id.to_bits()),
            ..ConnContext::default()
        };
        let app = self.apps.make(listener, now, ctx);
        self.attach(id, app, now);
    }

    /// An active open completed: the proxy's app runs on it.
    fn connected(&mut self, id: ConnId, now: Time) {
        let Some(up) = self.opening.remove(&id) else {
            return;
        };
        self.opening_by_up.remove(&up);
        let app = self
            .proxy
            .as_ref()
            .and_then(|p| p.connected_app(now, up, WakeKey(id.to_bits())));
        match app {
            Some(app) => {
                self.attach(id, app, now);
                self.pump(id, now);
            }
            None => {
                let _ = self.endpoint.abort(id);
            }
        }
    }

    /// The proxy's requests: connections to open or abort, connections to
    /// pump because an exchange moved. A pump may wake others; a few
    /// rounds here, the rest next iteration.
    fn run_proxy(&mut self, now: Time) -> usize {
        let Some(proxy) = self.proxy.clone() else {
            return 0;
        };
        let mut work = 0;
        if proxy.next_deadline().is_some_and(|d| d <= now) {
            proxy.on_timeout(now);
            work += 1;
        }
        for _ in 0..8 {
            let mut connects = std::mem::take(&mut self.proxy_connects);
            proxy.take_connects(&mut connects);
            for (up, remote) in connects.drain(..) {
                work += 1;
                let source = self
                    .upstream
                    .as_ref()
                    .and_then(|u| u.source_for(remote.ip()));
                match source.map(|s| self.endpoint.connect(now, s, remote)) {
                    Some(Ok(id)) => {
                        self.opening.insert(id, up);
                        self.opening_by_up.insert(up, id);
                    }
                    Some(Err(e)) => {
                        tracing::debug!(%remote, "upstream connect: {e}");
                        proxy.connect_failed(now, up);
                    }
                    None => {
                        tracing::debug!(%remote, "upstream connect: no source address of its family");
                        proxy.connect_failed(now, up);
                    }
                }
            }
            self.proxy_connects = connects;
            let mut aborts = std::mem::take(&mut self.proxy_aborts);
            proxy.take_aborts(&mut aborts);
            for up in aborts.drain(..) {
                if let Some(id) = self.opening_by_up.remove(&up) {
                    self.opening.remove(&id);
                    let _ = self.endpoint.abort(id);
                    let _ = self.endpoint.close(id);
                }
            }
            self.proxy_aborts = aborts;
            let mut wakes = std::mem::take(&mut self.proxy_wakes);
            proxy.take_wakes(&mut wakes);
            if wakes.is_empty() {
                self.proxy_wakes = wakes;
                break;
            }
            wakes.sort_unstable();
            wakes.dedup();
            for w in wakes.drain(..) {
                work += 1;
                let id = ConnId::from_bits(w.0);
                self.pump(id, now);
            }
            self.proxy_wakes = wakes;
        }
        if self.access_log.is_some() {
            self.log_records(&proxy, now);
        }
        work
    }

    /// Access log lines for the requests that finished: the proxy's record
    /// plus what only TCP knows (retransmits during the request, smoothed
    /// RTT) of both connections.
    fn log_records(&mut self, proxy: &LoopProxy, now: Time) {
        let mut records = std::mem::take(&mut self.records);
        proxy.take_records(&mut records);
        for r in records.drain(..) {
            let down = self.tcp_during(r.downstream);
            let up = r.upstream_conn.map(|w| self.tcp_during(w));
            let us = |d: Option<Duration>| d.map(|d| d.as_micros() as u64);
            let start_unix = self.clock.unix_secs_f64(r.start);
            let line = serde_json::json!({
                "time": start_unix,
                "loop": self.core,
                "client": r.client.map(|c| c.to_string()),
                "method": String::from_utf8_lossy(&r.method),
                "path": String::from_utf8_lossy(&r.path),
                "authority": r.authority.as_deref().map(String::from_utf8_lossy),
                "status": r.status,
                "error": r.error,
                "route": r.route,
                "cluster": r.cluster,
                "upstream": r.upstream.map(|a| a.to_string()),
                "retries": r.retries,
                "bytes_out": r.bytes_out,
                "request_id": r.request_id.as_deref().map(String::from_utf8_lossy),
                "trace_id": hex(&r.trace_id),
                "us": {
                    "tls_handshake": us(r.tls_handshake),
                    "upstream_connect": us(r.upstream_connect),
                    "first_byte": us(r.first_byte),
                    "total": r.end.saturating_since(r.start).as_micros() as u64,
                },
                "tcp": {
                    "client": down,
                    "upstream": up,
                },
            });
            let mut text = line.to_string();
            text.push('\n');
            if let Some(tx) = &self.access_log {
                if tx.try_send(text).is_err() {
                    self.access_log_dropped += 1;
                }
            }
        }
        let _ = now;
        self.records = records;
    }

    /// A connection's retransmits since the last logged request on it, and
    /// its smoothed RTT (null when it is gone).
    fn tcp_during(&mut self, w: WakeKey) -> serde_json::Value {
        let id = ConnId::from_bits(w.0);
        let Ok(info) = self.endpoint.info(id) else {
            return serde_json::Value::Null;
        };
        let slot = id.slot() as usize;
        let mark = match self.conns.get_mut(slot) {
            Some(Some(c)) if c.id == id => {
                let m = c.retx_mark;
                c.retx_mark = info.retransmits;
                m
            }
            _ => 0,
        };
        serde_json::json!({
            "retransmits": info.retransmits.saturating_sub(mark),
            "srtt_us": info.srtt.map(|d| d.as_micros() as u64),
        })
    }

    fn attach(&mut self, id: ConnId, app: Box<dyn App>, now: Time) {
        let slot = id.slot() as usize;
        if self.conns.len() <= slot {
            self.conns.resize_with(slot + 1, || None);
        }
        self.live += 1;
        self.conns[slot] = Some(AppConn {
            id,
            app,
            pending_in: Vec::new(),
            pending_out: Vec::new(),
            peer_finished: false,
            eof_delivered: false,
            closing: false,
            linger: None,
            mem: 0,
            released: false,
            ready: false,
            last_output: now,
            retx_mark: 0,
        });
        self.pump(id, now);
    }

    fn conn_mut(&mut self, id: ConnId) -> Option<&mut AppConn> {
        self.conns
            .get_mut(id.slot() as usize)
            .and_then(Option::as_mut)
            .filter(|c| c.id == id)
    }

    /// Drops the app of a connection the engine finished (or that the
    /// service released), and its timer and memory.
    fn forget(&mut self, id: ConnId) {
        let slot = id.slot() as usize;
        let Some(entry) = self.conns.get_mut(slot) else {
            return;
        };
        if entry.as_ref().is_some_and(|c| c.id == id) {
            let conn = entry.take().expect("checked above");
            self.live -= 1;
            self.app_mem -= conn.mem;
            self.endpoint.set_app_memory(self.app_mem);
            self.timers.cancel(slot as u32);
            if !conn.closing {
                // Releases the handle; the engine already finished.
                let _ = self.endpoint.close(id);
            }
        }
    }

    /// One more turn for each connection that used its budget last time.
    fn serve_ready(&mut self, now: Time) -> usize {
        let mut serving = std::mem::replace(&mut self.ready, std::mem::take(&mut self.serving));
        for &id in &serving {
            if let Some(conn) = self.conn_mut(id) {
                conn.ready = false;
                self.pump(id, now);
            }
        }
        let n = serving.len();
        serving.clear();
        self.serving = serving;
        n
    }

    /// Deliver expired app and linger timers. An entry that fires before
    /// the app's current deadline (it moved later since it was armed) is
    /// re-armed instead.
    fn fire_app_timers(&mut self, now: Time) -> usize {
        let mut expired = std::mem::take(&mut self.expired);
        expired.clear();
        self.timers.advance(now, &mut expired);
        let n = expired.len();
        for &slot in &expired {
            let Some(Some(conn)) = self.conns.get_mut(slot as usize) else {
                continue;
            };
            let id = conn.id;
            if conn.closing {
                continue;
            }
            if let Some(linger) = conn.linger {
                if linger.expired(now) {
                    self.http_linger_timeouts += 1;
                    self.drain_lingering(id, now, true);
                } else {
                    self.timers.set(slot, linger.deadline());
                }
                continue;
            }
            let output_waits = !conn.pending_out.is_empty() || conn.app.wants_write();
            if output_waits
                && self
                    .send_timeout
                    .is_some_and(|limit| now >= conn.last_output + limit)
            {
                // The peer has not taken a byte for the whole send
                // timeout: nothing left to do but reset.
                conn.closing = true;
                self.send_timeouts += 1;
                self.app_aborts += 1;
                let _ = self.endpoint.abort(id);
                continue;
            }
            if conn.app.deadline().is_some_and(|d| d <= now) {
                conn.app.on_timeout(now);
            }
            if conn.app.is_idle() && !conn.released {
                conn.app.release_idle_memory();
                conn.pending_in = Vec::new();
                conn.pending_out = Vec::new();
                conn.released = true;
            }
            self.pump(id, now);
        }
        self.expired = expired;
        n
    }

    /// Move bytes both ways between the engine and one app until neither
    /// side can make progress, then act on what the app wants (close,
    /// timer, memory).
    fn pump(&mut self, id: ConnId, now: Time) {
        let slot = id.slot() as usize;
        let Some(Some(conn)) = self.conns.get_mut(slot) else {
            return;
        };
        if conn.id != id || conn.closing {
            return;
        }
        if conn.linger.is_some() {
            self.drain_lingering(id, now, false);
            return;
        }
        let ep = &mut self.endpoint;
        let staging = &mut self.staging;
        let mut moved = false;
        let mut budget = PUMP_BUDGET;
        loop {
            if conn.app.close() == Close::Abort {
                break;
            }
            if budget < MIN_SEND_ROOM {
                // More next turn, after the others (see PUMP_BUDGET); less
                // than MIN_SEND_ROOM would not fit a TLS record.
                if !conn.ready {
                    conn.ready = true;
                    self.ready.push(id);
                }
                break;
            }
            let mut progress = false;
            // Output first: it frees the app to take more input.
            if !conn.pending_out.is_empty() {
                match ep.write(id, &conn.pending_out) {
                    Ok(n) if n > 0 => {
                        conn.pending_out.drain(..n);
                        conn.last_output = now;
                        progress = true;
                    }
                    Ok(_) => {}
                    Err(_) => {
                        conn.pending_out.clear();
                        conn.closing = true;
                        let _ = ep.abort(id);
                        break;
                    }
                }
            }
            if conn.pending_out.is_empty() && conn.app.wants_write() {
                let (room, queued) = ep
                    .info(id)
                    .map(|i| (i.send_buffer.saturating_sub(i.send_queued), i.send_queued))
                    .unwrap_or((0, 0));
                let room = room.min(staging.len());
                if room < MIN_SEND_ROOM && queued > 0 {
                    let _ = ep.wait_writable(id);
                } else if room > 0 {
                    let n = conn.app.poll_write(now, &mut staging[..room.min(budget)]);
                    if n > 0 {
                        progress = true;
                        budget = budget.saturating_sub(n);
                        let w = ep.write(id, &staging[..n]).unwrap_or(0);
                        if w > 0 {
                            conn.last_output = now;
                        }
                        if w < n {
                            conn.pending_out.extend_from_slice(&staging[w..n]);
                        }
                    }
                }
            }
            // Input.
            if !conn.pending_in.is_empty() {
                let took = conn.app.on_read(now, &conn.pending_in);
                if took > 0 {
                    conn.pending_in.drain(..took);
                    progress = true;
                }
            }
            if conn.pending_in.is_empty() && conn.app.wants_read() {
                let cap = staging.len().min(budget);
                match ep.read(id, &mut staging[..cap]) {
                    Ok(n) if n > 0 => {
                        progress = true;
                        budget = budget.saturating_sub(n);
                        let took = conn.app.on_read(now, &staging[..n]);
                        if took < n {
                            conn.pending_in.extend_from_slice(&staging[took..n]);
                        }
                    }
                    _ => {
                        if conn.peer_finished && !conn.eof_delivered {
                            conn.app.on_read_eof(now);
                            conn.eof_delivered = true;
                            progress = true;
                        }
                    }
                }
            }
            if !progress {
                break;
            }
            moved = true;
        }
        if moved {
            conn.released = false;
        }
        match conn.app.close() {
            Close::No => {}
            Close::Abort if !conn.closing => {
                conn.closing = true;
                self.app_aborts += 1;
                let _ = ep.abort(id);
            }
            Close::Abort => {}
            Close::Graceful if conn.pending_out.is_empty() && !conn.app.wants_write() => {
                // FIN after what is queued, and linger: the peer may still
                // be sending (the rest of a request we answered early,
                // requests pipelined behind a `Connection: close`).
                conn.app.release_idle_memory();
                conn.pending_in = Vec::new();
                conn.linger = Some(Linger::new(now));
                if !conn.peer_finished {
                    self.http_lingering_closes += 1;
                }
                let _ = ep.shutdown(id);
                self.account(slot);
                self.drain_lingering(id, now, false);
                return;
            }
            Close::Graceful => {}
        }
        if conn.app.is_idle() && conn.pending_in.is_empty() && conn.pending_out.is_empty() {
            // Keep-alive between requests: hold no buffers of our own.
            conn.pending_in = Vec::new();
            conn.pending_out = Vec::new();
        }
        let output_waits = !conn.pending_out.is_empty() || conn.app.wants_write();
        if !output_waits {
            conn.last_output = now;
        }
        if !conn.closing {
            let mut next = conn.app.deadline();
            if let Some(limit) = self.send_timeout.filter(|_| output_waits) {
                let stuck = conn.last_output + limit;
                next = Some(next.map_or(stuck, |d| d.min(stuck)));
            }
            if conn.app.is_idle() && !conn.released {
                let release = now + IDLE_RELEASE;
                next = Some(next.map_or(release, |d| d.min(release)));
            }
            if let Some(d) = next {
                // Lazily: only move an armed entry earlier (see `timers`).
                if self
                    .timers
                    .deadline(slot as u32)
                    .is_none_or(|armed| d < armed)
                {
                    self.timers.set(slot as u32, d);
                }
            }
        }
        self.account(slot);
    }

    /// Brings the loop's app memory gauge up to date for one connection.
    fn account(&mut self, slot: usize) {
        if let Some(Some(conn)) = self.conns.get_mut(slot) {
            let now = conn.memory();
            if now != conn.mem {
                self.app_mem = self.app_mem - conn.mem + now;
                conn.mem = now;
                self.endpoint.set_app_memory(self.app_mem);
            }
        }
    }

    /// Read and drop a lingering connection's input; release the handle
    /// once the peer's FIN is reached, or when `expired` (the engine then
    /// finishes the close on its own and resets the connection if more
    /// data comes).
    fn drain_lingering(&mut self, id: ConnId, now: Time, expired: bool) {
        let slot = id.slot() as usize;
        let Some(Some(conn)) = self.conns.get_mut(slot) else {
            return;
        };
        let Some(linger) = conn.linger.as_mut() else {
            return;
        };
        let ep = &mut self.endpoint;
        while let Ok(n) = ep.read(id, &mut self.staging) {
            if n == 0 {
                break;
            }
            linger.on_input(now);
        }
        if conn.peer_finished || expired {
            conn.closing = true;
            let _ = ep.close(id);
            self.app_mem -= conn.mem;
            self.endpoint.set_app_memory(self.app_mem);
            self.live -= 1;
            self.conns[slot] = None;
            self.timers.cancel(slot as u32);
        } else {
            let d = linger.deadline();
            if self
                .timers
                .deadline(slot as u32)
                .is_none_or(|armed| d < armed)
            {
                self.timers.set(slot as u32, d);
            }
        }
    }

    /// Let the engine fill free frames with packets. Returns how many were
    /// queued for transmission.
    pub fn transmit(&mut self, now: Time, xsk: &mut Xsk, c: &mut Counters) -> usize {
        let ep = &mut self.endpoint;
        let neigh = &self.neigh;
        let mtu = self.mtu;
        let mut no_neighbour = 0u64;
        let queued = xsk.transmit(TX_BUDGET, |frame| {
            let buf = frame.buffer_mut();
            let ip_end = (ETH_HEADER + mtu).min(buf.len());
            loop {
                let Some(t) = ep.poll_transmit(now, &mut buf[ETH_HEADER..ip_end]) else {
                    return false;
                };
                let framed = neigh
                    .get(&mapped(t.dst))
                    .and_then(|l2| frame_ip_packet(buf, l2, t.len));
                match framed {
                    Some(len) => {
                        frame.set_len(len);
                        return true;
                    }
                    // The peer never sent us a frame (or the table was
                    // flushed): the engine retransmits later.
                    None => no_neighbour += 1,
                }
            }
        });
        c.tcp_tx_no_neighbour += no_neighbour;
        c.tcp_segments_out += queued as u64;
        queued
    }

    /// Copy the engine's and the apps' counters into `c`.
    pub fn publish(&mut self, c: &mut Counters) {
        let s = self.endpoint.stats();
        c.tcp_accepts = s.accepts;
        c.tcp_retransmits = s.retransmits;
        c.tcp_rto = s.rto;
        c.tcp_fast_retransmits = s.fast_retransmits;
        c.tcp_lost_retransmits = s.lost_retransmits;
        c.tcp_tail_loss_probes = s.tail_loss_probes;
        c.tcp_oow_acks_suppressed = s.oow_acks_suppressed;
        c.tcp_cookies_sent = s.cookies_sent;
        c.tcp_cookies_accepted = s.cookies_accepted;
        c.tcp_challenge_acks = s.challenge_acks_sent;
        c.tcp_rst_in = s.rst_in;
        c.tcp_rst_ignored = s.rst_ignored;
        c.tcp_rst_out = s.rst_out;
        c.tcp_paws_drops = s.paws_drops;
        c.tcp_bad_acks = s.bad_acks;
        c.tcp_ooo_segments = s.ooo_segments;
        c.tcp_backlog_drops = s.backlog_drops;
        c.tcp_zero_window_probes = s.zero_window_probes;
        c.tcp_timeouts = s.keepalive_timeouts;
        c.tcp_connections = self.endpoint.conn_count() as u64;
        c.tcp_time_wait = s.time_wait_entries;
        c.tcp_mem_bytes = s.mem_in_use;
        c.app_mem_bytes = self.app_mem as u64;
        c.app_aborts = self.app_aborts;
        c.app_send_timeouts = self.send_timeouts;
        c.http_lingering_closes = self.http_lingering_closes;
        c.http_linger_timeouts = self.http_linger_timeouts;
        c.tcp_upstream_handoffs = self.upstream_handoffs;
        c.neigh_evictions = self.neigh.evictions;
        c.neigh_moves = self.neigh.moves;
        c.neigh_refused = self.neigh.refused;
        if let Some(p) = &self.proxy {
            c.publish_proxy(&p.stats());
            if self.core == 0 {
                // Cluster-wide counters: one loop reports them, so the
                // reporter's sum counts each once.
                c.publish_upstream_tls(&p.upstream_tls_stats());
            }
            // Every report tick: the outcomes since the last one go to the
            // decision component (never blocking the loop).
            if let Some(tx) = &self.outcomes_tx {
                let mut batch = Vec::new();
                p.take_outcomes(&mut batch);
                if !batch.is_empty() && tx.try_send(batch).is_err() {
                    self.outcome_batches_dropped += 1;
                }
            }
            c.proxy_outcome_batches_dropped = self.outcome_batches_dropped;
            c.proxy_access_log_dropped = self.access_log_dropped;
            if let Some(slot) = &self.latency {
                if let Ok(mut l) = slot.lock() {
                    p.take_latency(&mut l);
                }
            }
        }
        self.apps.publish(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: f64) -> Time {
        Time::from_nanos((secs * 1e9) as u64)
    }

    #[test]
    fn linger_ends_after_quiet_time_without_input() {
        let l = Linger::new(at(10.0));
        assert!(!l.expired(at(10.0)));
        assert!(!l.expired(at(14.9)));
        assert!(l.expired(at(15.0)));
    }

    #[test]
    fn input_restarts_the_quiet_time_but_not_the_total() {
        let mut l = Linger::new(at(10.0));
        for t in [14.0, 18.0, 22.0, 26.0, 30.0, 34.0, 38.0] {
            assert!(!l.expired(at(t)), "at {t}");
            l.on_input(at(t));
        }
        assert!(!l.expired(at(39.9)));
        assert!(l.expired(at(40.0)));
    }
}
