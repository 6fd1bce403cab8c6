//! Exchanges, upstream connections and pools of one loop.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io::Write;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use sluice_app::proxy::{
    BodyLen, ExchangeId, HeaderName, HeaderValue, Headers, Proxy, ProxyError, ProxyRequest,
    ResponsePart, WakeKey,
};
use sluice_app::{Close, Time};
use sluice_http::{BodyFraming, ClientConn, ClientEvent, ClientLimits, ResponseHead};
use sluice_lb::{
    hash_key, Balancer, EligibleSet, GatewayFailure, LeastRequest, LocalBreaker, Outcome,
    OutcomeKind, RoundRobin, SplitMix64,
};

use crate::board::Board;
use crate::record::{AccessRecord, Latency};

use crate::spec::{Balance, ProxySpec};
use crate::trace::{self, TraceParent};
use crate::upstream::UpstreamApp;
use crate::UpstreamId;

/// Request body bytes an exchange buffers on their way upstream.
const REQUEST_BODY_BUFFER: usize = 64 * 1024;
/// Response bytes an exchange buffers on their way downstream; the
/// upstream connection stops reading beyond it (backpressure to the
/// backend through TCP's window).
const RESPONSE_BUFFER: usize = 256 * 1024;
/// An idle connection beyond the cluster's `max_idle` is closed after this
/// long unused (the pool shrinks after a burst, not during one).
const IDLE_TRIM: Duration = Duration::from_secs(2);

/// Counters of one loop's proxy (summed over loops by the reporter).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProxyStats {
    pub requests: u64,
    pub responses_1xx: u64,
    pub responses_2xx: u64,
    pub responses_3xx: u64,
    pub responses_4xx: u64,
    pub responses_5xx: u64,
    /// Requests refused because the cluster's pending queue was full.
    pub overflows: u64,
    pub no_backend: u64,
    pub connect_failures: u64,
    pub upstream_resets: u64,
    pub bad_responses: u64,
    pub timeouts: u64,
    pub retries: u64,
    /// Retries not made because the cluster's retry budget was spent.
    pub retries_refused: u64,
    /// Connections opened to backends.
    pub upstream_connects: u64,
    /// Requests sent on a connection that had served one before.
    pub upstream_reuses: u64,
    /// Upstream connections closed because they idled past the timeout.
    pub upstream_idle_closes: u64,
    /// gRPC responses by their `grpc-status` (in trailers, or in the head
    /// of a trailers-only response): 0, and anything else.
    pub grpc_ok: u64,
    pub grpc_errors: u64,
    /// gRPC requests whose deadline passed: answered grpc-status 4.
    pub grpc_deadline_exceeded: u64,
    /// HTTP/2 streams refused by a backend (REFUSED_STREAM, or above its
    /// GOAWAY's last stream) and sent again.
    pub upstream_refused_streams: u64,
    /// Gauges.
    pub active_exchanges: u64,
    pub upstream_open: u64,
    pub upstream_idle: u64,
}

#[derive(Debug)]
struct Exchange {
    gen: u32,
    wake: WakeKey,
    cluster: usize,
    backend: usize,
    /// The request head as sent upstream (kept for a retry).
    head: Vec<u8>,
    framing: BodyFraming,
    is_head: bool,
    /// Safe to send again on another connection after a failure that
    /// left no response byte.
    idempotent: bool,
    /// No request body (a retry can send the request again whole).
    bodiless: bool,
    body: Vec<u8>,
    body_done: bool,
    /// The client's request trailers, for the backend.
    trailers: Option<Box<Headers>>,
    resp: VecDeque<Result<ResponsePart, ProxyError>>,
    resp_bytes: usize,
    /// End or an error is queued: nothing more comes from upstream.
    finished: bool,
    head_seen: bool,
    up: Option<UpstreamId>,
    tries: u32,
    max_tries: u32,
    deadline: Option<Time>,
    /// Maglev's key (a header's value or the client address), hashed.
    key_hash: Option<u64>,
    /// The backend least request counts this exchange against.
    started_on: Option<usize>,
    /// Holds one of the cluster's `max_requests`.
    request_held: bool,
    /// Holds one of the cluster's retries in flight.
    retry_held: bool,
    /// The backend a delayed retry should avoid.
    retry_avoid: usize,
    retry_connect: bool,
    retry_reset: bool,
    per_try: Option<Duration>,
    route: Option<usize>,
    start: Time,
    /// Set when the response head arrives.
    first_byte: Option<Time>,
    /// The status the client sees, once known.
    status: u16,
    /// The backend and connection that served it last.
    served_by: Option<usize>,
    upstream_conn: Option<WakeKey>,
    upstream_connect: Option<Duration>,
    bytes_out: u64,
    /// Only when the access log is on.
    log: Option<Box<LogInfo>>,
    /// The request for an HTTP/2 backend (instead of `head`).
    h2: Option<Box<h2up::H2Request>>,
    /// The stream carrying it on `up` (HTTP/2 backends).
    stream: Option<u32>,
    /// `content-type: application/grpc...`: a deadline gives grpc-status 4.
    grpc: bool,
}

/// What the access log needs of a request beyond the counters.
#[derive(Debug)]
struct LogInfo {
    method: Vec<u8>,
    path: Vec<u8>,
    authority: Option<Vec<u8>>,
    client: Option<SocketAddr>,
    tls_handshake: Option<Duration>,
    request_id: Option<Vec<u8>>,
    trace_id: [u8; 16],
}

#[derive(Debug, PartialEq, Eq)]
enum UpState {
    Connecting,
    Ready,
}

#[derive(Debug)]
struct Up {
    gen: u32,
    backend: usize,
    state: UpState,
    client: ClientConn,
    ex: Option<ExchangeId>,
    wake: Option<WakeKey>,
    idle_since: Time,
    idle_timeout: Duration,
    opened_at: Time,
    /// How long the connect took, until its first request reads it.
    connect_took: Option<Duration>,
    close: Close,
    /// Has carried a request before (a further one is a reuse).
    used: bool,
    in_idle_list: bool,
    /// The response on this connection was answered by a retry: its
    /// remaining bytes are read and dropped, then the connection is reused.
    discarding: bool,
    /// An HTTP/2 connection: its client and streams (`ex` stays None).
    h2: Option<Box<h2up::H2Up>>,
}

impl Up {
    /// Carries a request now.
    fn busy(&self) -> bool {
        self.ex.is_some() || self.h2.as_ref().is_some_and(|h| !h.streams.is_empty())
    }
}

#[derive(Debug)]
struct Backend {
    cluster: usize,
    addr: SocketAddr,
    /// Idle connections, the most recently used last.
    idle: Vec<UpstreamId>,
    /// Open and opening connections.
    conns: usize,
    connecting: usize,
    /// Exchanges waiting for a connection of this backend.
    pending: VecDeque<ExchangeId>,
    /// HTTP/2: established connections that may take streams.
    h2_conns: Vec<UpstreamId>,
}

/// A timer: (when, what). `Ex` and `Connect` are checked against the
/// current generation when they fire (lazy deletion).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Ex(u32, u32),
    Connect(u32, u32),
    /// A retry's backoff ended.
    Retry(u32, u32),
    /// A try's time is up (exchange index, generation, try number).
    Try(u32, u32, u32),
}

#[derive(Debug)]
struct Core {
    spec: Arc<ProxySpec>,
    exchanges: Vec<Option<Exchange>>,
    free_ex: Vec<u32>,
    ups: Vec<Option<Up>>,
    free_up: Vec<u32>,
    next_gen: u32,
    backends: Vec<Backend>,
    /// First backend index of each cluster, and the round-robin cursor.
    cluster_first: Vec<usize>,
    balancers: Vec<Balancer>,
    /// Each cluster's (eligible, half-open) backends, as last read from
    /// the board (all eligible without one), and a scratch copy for picks.
    health: Vec<(EligibleSet, EligibleSet)>,
    scratch: Vec<EligibleSet>,
    board: Option<Arc<Board>>,
    board_seen: u64,
    /// Outcomes per (cluster, backend of the cluster) since the service
    /// last took them, for the decision component.
    outcomes: Vec<(usize, Outcome)>,
    /// This loop's share of each cluster's limits.
    breakers: Vec<LocalBreaker>,
    rng: SplitMix64,
    connects: Vec<(UpstreamId, SocketAddr)>,
    aborts: Vec<UpstreamId>,
    wakes: Vec<WakeKey>,
    timers: BinaryHeap<Reverse<(Time, Timer)>>,
    stats: ProxyStats,
    /// The loop's time as the service last said.
    now: Time,
    latency: Latency,
    records: Vec<AccessRecord>,
}

/// The loop's proxy. Shared (`Rc`) by the downstream apps and the upstream
/// apps of one loop; never crosses threads.
#[derive(Debug)]
pub struct LoopProxy {
    core: RefCell<Core>,
}

fn idempotent(method: &[u8]) -> bool {
    matches!(
        method,
        b"GET" | b"HEAD" | b"OPTIONS" | b"TRACE" | b"PUT" | b"DELETE"
    )
}

impl LoopProxy {
    /// The proxy of a process with one loop (tests).
    pub fn new(spec: Arc<ProxySpec>, seed: u64) -> Rc<Self> {
        Self::for_loop(spec, 0, 1, seed)
    }

    /// The proxy of loop `index` of `loops`: each cluster's breaker limits
    /// are split between the loops.
    pub fn for_loop(spec: Arc<ProxySpec>, index: u32, loops: u32, seed: u64) -> Rc<Self> {
        let mut backends = Vec::new();
        let mut cluster_first = Vec::new();
        for (ci, c) in spec.clusters.iter().enumerate() {
            cluster_first.push(backends.len());
            for addr in &c.backends {
                backends.push(Backend {
                    cluster: ci,
                    addr: *addr,
                    idle: Vec::new(),
                    conns: 0,
                    connecting: 0,
                    pending: VecDeque::new(),
                    h2_conns: Vec::new(),
                });
            }
        }
        let (spec_routes, spec_clusters) = (spec.routes.len(), spec.clusters.len());
        let mut rng = SplitMix64::new(seed);
        let mut balancers = Vec::with_capacity(spec.clusters.len());
        for c in &spec.clusters {
            let mut b = match &c.balance {
                Balance::RoundRobin => Balancer::RoundRobin(
                    RoundRobin::new(&c.weights).expect("weights checked by the config"),
                ),
                Balance::LeastRequest => Balancer::LeastRequest(
                    LeastRequest::new(&c.weights, rng.next_u64())
                        .expect("weights checked by the config"),
                ),
                Balance::Maglev { table, .. } => Balancer::Maglev {
                    table: Arc::clone(table),
                    rng: SplitMix64::new(rng.next_u64()),
                },
            };
            // Loops start their round robin at different backends.
            if let Balancer::RoundRobin(_) = b {
                let all = EligibleSet::all(c.backends.len());
                for _ in 0..(seed as usize % c.backends.len().max(1)) {
                    let _ = b.pick(&all, None);
                }
            }
            balancers.push(b);
        }
        let health: Vec<(EligibleSet, EligibleSet)> = spec
            .clusters
            .iter()
            .map(|c| {
                (
                    EligibleSet::all(c.backends.len()),
                    EligibleSet::none(c.backends.len()),
                )
            })
            .collect();
        let breakers = spec
            .clusters
            .iter()
            .map(|c| LocalBreaker::new(c.breaker.per_loop(loops, index)))
            .collect();
        Rc::new(Self {
            core: RefCell::new(Core {
                spec,
                exchanges: Vec::new(),
                free_ex: Vec::new(),
                ups: Vec::new(),
                free_up: Vec::new(),
                next_gen: 1,
                backends,
                cluster_first,
                balancers,
                scratch: health.iter().map(|(e, _)| e.clone()).collect(),
                health,
                board: None,
                board_seen: 0,
                outcomes: Vec::new(),
                breakers,
                rng,
                connects: Vec::new(),
                aborts: Vec::new(),
                wakes: Vec::new(),
                timers: BinaryHeap::new(),
                stats: ProxyStats::default(),
                now: Time::ZERO,
                latency: Latency::new(spec_routes, spec_clusters),
                records: Vec::new(),
            }),
        })
    }

    /// Connections the service is to open: (id, backend address).
    pub fn take_connects(&self, out: &mut Vec<(UpstreamId, SocketAddr)>) {
        out.append(&mut self.core.borrow_mut().connects);
    }

    /// Opening connections the service is to abort (connect timeout).
    pub fn take_aborts(&self, out: &mut Vec<UpstreamId>) {
        out.append(&mut self.core.borrow_mut().aborts);
    }

    /// Connections (downstream or upstream) with work to do.
    pub fn take_wakes(&self, out: &mut Vec<WakeKey>) {
        out.append(&mut self.core.borrow_mut().wakes);
    }

    /// The service could not open, or the peer refused, connection `up`.
    pub fn connect_failed(&self, now: Time, up: UpstreamId) {
        self.core.borrow_mut().connect_failed(now, up);
    }

    /// Connection `up` is established: the app to run on it, woken by
    /// `wake`. None if the proxy gave up on it meanwhile (the service
    /// closes it).
    pub fn connected(
        self: &Rc<Self>,
        now: Time,
        up: UpstreamId,
        wake: WakeKey,
    ) -> Option<UpstreamApp> {
        let ok = self.core.borrow_mut().connected(now, up, wake);
        ok.then(|| UpstreamApp::new(Rc::clone(self), up))
    }

    /// [`LoopProxy::connected`], inside TLS for a `-tls` cluster: the
    /// app the service runs on the connection. None: the service aborts
    /// it (the proxy gave up on it, or TLS could not start; the exchange
    /// waiting for it moves on).
    pub fn connected_app(
        self: &Rc<Self>,
        now: Time,
        up: UpstreamId,
        wake: WakeKey,
    ) -> Option<Box<dyn sluice_app::App>> {
        let (tls, addr) = {
            let c = self.core.borrow();
            let u = c.up(up)?;
            let b = &c.backends[u.backend];
            (c.spec.clusters[b.cluster].tls.clone(), b.addr)
        };
        let app = self.connected(now, up, wake)?;
        let Some(tls) = tls else {
            return Some(Box::new(app));
        };
        match tls.connect(now, addr.ip(), Box::new(app)) {
            Ok(t) => Some(Box::new(t)),
            // The upstream app was dropped with the error: the proxy has
            // failed the connection already.
            Err(_) => None,
        }
    }

    /// Read backend eligibility from `board` from now on.
    pub fn set_board(&self, board: Arc<Board>) {
        let mut c = self.core.borrow_mut();
        c.board = Some(board);
        c.board_seen = 0;
    }

    /// Latency counts since the last call, added into `into`.
    pub fn take_latency(&self, into: &mut Latency) {
        self.core.borrow_mut().latency.drain_into(into);
    }

    /// Access records since the last call (only with the access log on).
    pub fn take_records(&self, out: &mut Vec<AccessRecord>) {
        out.append(&mut self.core.borrow_mut().records);
    }

    /// Outcomes since the last call: (cluster, outcome per backend of the
    /// cluster), for the decision component.
    pub fn take_outcomes(&self, out: &mut Vec<(usize, Outcome)>) {
        out.append(&mut self.core.borrow_mut().outcomes);
    }

    /// The loop's clock, before anything that may start exchanges runs.
    pub fn set_now(&self, now: Time) {
        self.core.borrow_mut().now = now;
    }

    pub fn next_deadline(&self) -> Option<Time> {
        self.core.borrow().timers.peek().map(|Reverse((t, _))| *t)
    }

    pub fn on_timeout(&self, now: Time) {
        self.core.borrow_mut().on_timeout(now);
    }

    /// The upstream TLS clients' counters, summed over the clusters. They
    /// are the clusters' (shared by every loop), not this loop's.
    pub fn upstream_tls_stats(&self) -> sluice_tls::UpstreamTlsStats {
        let c = self.core.borrow();
        let mut sum = sluice_tls::UpstreamTlsStats::default();
        for s in c
            .spec
            .clusters
            .iter()
            .filter_map(|c| c.tls.as_ref())
            .map(|t| t.stats())
        {
            sum.handshakes_completed += s.handshakes_completed;
            sum.handshake_failures += s.handshake_failures;
            sum.certificate_failures += s.certificate_failures;
            sum.alpn_mismatches += s.alpn_mismatches;
            sum.handshake_timeouts += s.handshake_timeouts;
        }
        sum
    }

    pub fn stats(&self) -> ProxyStats {
        let c = self.core.borrow();
        let mut s = c.stats;
        s.active_exchanges = c.exchanges.iter().flatten().count() as u64;
        s.upstream_open = c.ups.iter().flatten().count() as u64;
        s.upstream_idle = c.backends.iter().map(|b| b.idle.len() as u64).sum();
        s
    }

    // ---- for UpstreamApp ---------------------------------------------------

    pub(crate) fn with_core<R>(&self, f: impl FnOnce(&mut CoreRef<'_>) -> R) -> R {
        let mut core = self.core.borrow_mut();
        f(&mut CoreRef(&mut core))
    }
}

/// Access to the core for the upstream app (keeps `Core` private).
pub(crate) struct CoreRef<'a>(&'a mut Core);

impl CoreRef<'_> {
    pub fn up_read(&mut self, now: Time, up: UpstreamId, data: &[u8]) -> usize {
        self.0.up_read(now, up, data)
    }
    pub fn up_eof(&mut self, now: Time, up: UpstreamId) {
        self.0.up_eof(now, up)
    }
    pub fn up_write(&mut self, up: UpstreamId, buf: &mut [u8]) -> usize {
        self.0.up_write(up, buf)
    }
    pub fn up_wants_read(&self, up: UpstreamId) -> bool {
        self.0.up_wants_read(up)
    }
    pub fn up_wants_write(&self, up: UpstreamId) -> bool {
        self.0.up_wants_write(up)
    }
    pub fn up_deadline(&self, up: UpstreamId) -> Option<Time> {
        let u = self.0.up(up)?;
        if u.busy() || u.close != Close::No {
            return None;
        }
        Some(if self.0.over_max_idle(u.backend) {
            u.idle_since + IDLE_TRIM.min(u.idle_timeout)
        } else {
            u.idle_since + u.idle_timeout
        })
    }
    pub fn up_timeout(&mut self, now: Time, up: UpstreamId) {
        self.0.up_timeout(now, up)
    }
    pub fn up_close(&self, up: UpstreamId) -> Close {
        self.0.up(up).map_or(Close::Abort, |u| match &u.h2 {
            // The backend ended the connection (GOAWAY and close, or an
            // error): nothing more to do on it.
            Some(h) if h.client.ended().is_some() && u.close == Close::No => Close::Graceful,
            _ => u.close,
        })
    }
    pub fn up_idle(&self, up: UpstreamId) -> bool {
        self.0.up(up).is_some_and(|u| !u.busy())
    }
    pub fn up_memory(&self, up: UpstreamId) -> usize {
        self.0.up(up).map_or(0, |u| match &u.h2 {
            Some(h) => h.client.memory(),
            None => u.client.memory(),
        })
    }
    pub fn up_release_memory(&mut self, up: UpstreamId) {
        if let Some(u) = self.0.up_mut(up) {
            match &mut u.h2 {
                Some(h) => h.client.release_memory(),
                None => u.client.release_memory(),
            }
        }
    }
    pub fn up_drain(&mut self, up: UpstreamId) {
        if let Some(u) = self.0.up_mut(up) {
            if !u.busy() && u.close == Close::No {
                u.close = Close::Graceful;
            }
        }
        self.0.unlist_idle(up);
    }
    pub fn up_gone(&mut self, now: Time, up: UpstreamId) {
        self.0.up_gone(now, up)
    }
}

impl Core {
    fn gen(&mut self) -> u32 {
        let g = self.next_gen;
        self.next_gen = self.next_gen.wrapping_add(1).max(1);
        g
    }

    fn ex(&self, id: ExchangeId) -> Option<&Exchange> {
        self.exchanges
            .get(id.index as usize)?
            .as_ref()
            .filter(|e| e.gen == id.gen)
    }

    fn ex_mut(&mut self, id: ExchangeId) -> Option<&mut Exchange> {
        self.exchanges
            .get_mut(id.index as usize)?
            .as_mut()
            .filter(|e| e.gen == id.gen)
    }

    fn up(&self, id: UpstreamId) -> Option<&Up> {
        self.ups
            .get(id.index as usize)?
            .as_ref()
            .filter(|u| u.gen == id.gen)
    }

    fn up_mut(&mut self, id: UpstreamId) -> Option<&mut Up> {
        self.ups
            .get_mut(id.index as usize)?
            .as_mut()
            .filter(|u| u.gen == id.gen)
    }

    fn wake_up(&mut self, up: UpstreamId) {
        if let Some(w) = self.up(up).and_then(|u| u.wake) {
            self.wakes.push(w);
        }
    }

    fn wake_ex(&mut self, ex: ExchangeId) {
        if let Some(w) = self.ex(ex).map(|e| e.wake) {
            self.wakes.push(w);
        }
    }

    // ---- downstream ----------------------------------------------------------

    fn start(&mut self, now: Time, mut req: ProxyRequest, wake: WakeKey) -> ExchangeId {
        self.stats.requests += 1;
        let route = self
            .spec
            .route(req.authority.as_deref(), &req.method, &req.path);
        let gen = self.gen();
        let index = match self.free_ex.pop() {
            Some(i) => i,
            None => {
                self.exchanges.push(None);
                (self.exchanges.len() - 1) as u32
            }
        };
        let id = ExchangeId { index, gen };
        let (cluster, timeout, retries, retry_connect, retry_reset, per_try) = match route {
            Some(r) => {
                let r = &self.spec.routes[r];
                (
                    r.cluster,
                    r.timeout,
                    r.retries,
                    r.retry_connect,
                    r.retry_reset,
                    r.per_try_timeout,
                )
            }
            None => (usize::MAX, None, 0, false, false, None),
        };
        let framing = match req.body {
            BodyLen::None => BodyFraming::None,
            BodyLen::Length(n) => BodyFraming::Length(n),
            BodyLen::Streamed => BodyFraming::Chunked,
        };
        let mut ex = Exchange {
            gen,
            wake,
            cluster,
            backend: usize::MAX,
            head: Vec::new(),
            framing,
            is_head: req.method == b"HEAD",
            idempotent: idempotent(&req.method) && req.body == BodyLen::None,
            bodiless: req.body == BodyLen::None,
            body: Vec::new(),
            body_done: req.body == BodyLen::None,
            trailers: None,
            resp: VecDeque::new(),
            resp_bytes: 0,
            finished: false,
            head_seen: false,
            up: None,
            tries: 0,
            max_tries: 1 + retries,
            // The sooner of the route's timeout and the client's own
            // deadline (gRPC's `grpc-timeout`).
            deadline: [timeout, grpc_timeout(&req.headers)]
                .into_iter()
                .flatten()
                .min()
                .map(|t| now + t),
            key_hash: None,
            started_on: None,
            request_held: false,
            retry_held: false,
            retry_avoid: usize::MAX,
            retry_connect,
            retry_reset,
            per_try,
            route,
            start: now,
            first_byte: None,
            status: 0,
            served_by: None,
            upstream_conn: None,
            upstream_connect: None,
            bytes_out: 0,
            log: None,
            h2: None,
            stream: None,
            grpc: req
                .headers
                .get(http::header::CONTENT_TYPE)
                .is_some_and(|v| {
                    let v = v.as_bytes();
                    v.len() >= 16 && v[..16].eq_ignore_ascii_case(b"application/grpc")
                }),
        };
        let error = if cluster == usize::MAX || self.spec.clusters[cluster].backends.is_empty() {
            self.stats.no_backend += 1;
            Some(ProxyError::NoHealthyBackend)
        } else if self.breakers[cluster].try_acquire_request().is_err() {
            self.stats.overflows += 1;
            Some(ProxyError::Overflow)
        } else {
            ex.request_held = true;
            None
        };
        if let Some(e) = error {
            ex.resp.push_back(Err(e));
            ex.finished = true;
            self.exchanges[index as usize] = Some(ex);
            self.wakes.push(wake);
            return id;
        }
        let budget = ex.deadline.map(|d| d.saturating_since(now));
        if let Balance::Maglev { hash_on, .. } = &self.spec.clusters[cluster].balance {
            ex.key_hash = maglev_key(hash_on, &req);
        }
        let fields = upstream_fields(&mut req, &self.spec, &mut self.rng, budget);
        if self.spec.access_log {
            let find = |name: &HeaderName| fields.get(name).map(|v| v.as_bytes().to_vec());
            ex.log = Some(Box::new(LogInfo {
                method: req.method.clone(),
                path: req.path.clone(),
                authority: req.authority.clone(),
                client: req.client,
                tls_handshake: req.tls_handshake,
                request_id: find(&X_REQUEST_ID),
                trace_id: find(&TRACEPARENT)
                    .and_then(|v| TraceParent::parse(&v))
                    .map_or([0; 16], |t| t.trace_id),
            }));
        }
        if self.spec.clusters[cluster].h2 {
            ex.h2 = Some(Box::new(h2up::H2Request::new(req, fields, ex.grpc)));
        } else {
            ex.head = Vec::with_capacity(256);
            let host = req.authority.as_deref().map(|a| (&b"host"[..], a));
            sluice_http::write_request_head(
                &mut ex.head,
                &req.method,
                &req.path,
                host.into_iter().chain(
                    fields
                        .iter()
                        .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes())),
                ),
                &framing,
            );
        }
        if let Some(d) = ex.deadline {
            self.timers.push(Reverse((d, Timer::Ex(index, gen))));
        }
        let key = ex.key_hash;
        self.exchanges[index as usize] = Some(ex);
        match self.pick(cluster, None, key) {
            Some(backend) => self.enqueue(now, id, backend),
            None => {
                self.stats.no_backend += 1;
                self.finish_ex(id, Err(ProxyError::NoHealthyBackend));
            }
        }
        id
    }

    /// The cluster's balancer over its eligible backends, without `avoid`
    /// when another is eligible. A global backend index.
    fn pick(&mut self, cluster: usize, avoid: Option<usize>, key: Option<u64>) -> Option<usize> {
        if let Some(board) = &self.board {
            // One atomic load when nothing changed.
            board.read(&mut self.board_seen, &mut self.health);
        }
        let first = self.cluster_first[cluster];
        let set = &mut self.scratch[cluster];
        set.copy_from_words(self.health[cluster].0.words());
        if let Some(a) = avoid.and_then(|a| a.checked_sub(first)) {
            if set.count() > 1 && set.contains(a) {
                set.remove(a);
            }
        }
        // A half-open backend takes a request only against a probe token
        // (shared by every loop); without one it is out of this pick.
        loop {
            let k = self.balancers[cluster].pick(&self.scratch[cluster], key)?;
            let half_open = self.health[cluster].1.contains(k);
            let admitted = !half_open
                || self
                    .board
                    .as_ref()
                    .is_some_and(|b| b.tokens(cluster).try_take(k));
            if admitted {
                return Some(first + k);
            }
            self.scratch[cluster].remove(k);
        }
    }

    /// An outcome for the decision component (outlier detection).
    fn record(&mut self, backend: usize, kind: OutcomeKind) {
        let cluster = self.backends[backend].cluster;
        let local = backend - self.cluster_first[cluster];
        if let Some((c, last)) = self.outcomes.last_mut() {
            if *c == cluster && last.backend == local && last.kind == kind {
                last.count += 1;
                return;
            }
        }
        // Bounded: a loop that is never asked keeps the newest.
        if self.outcomes.len() >= 65_536 {
            self.outcomes.remove(0);
        }
        self.outcomes.push((cluster, Outcome::new(local, kind, 1)));
    }

    /// Queue `ex` for a connection of `backend` (a fast 503 when the
    /// cluster's pending queue is full).
    fn enqueue(&mut self, now: Time, ex: ExchangeId, backend: usize) {
        let Some(e) = self.ex_mut(ex) else {
            return;
        };
        let cluster = e.cluster;
        if self.breakers[cluster].try_acquire_pending().is_err() {
            self.stats.overflows += 1;
            if let Some(e) = self.ex_mut(ex) {
                e.backend = usize::MAX;
            }
            self.finish_ex(ex, Err(ProxyError::Overflow));
            return;
        }
        let e = self.ex_mut(ex).expect("checked above");
        e.backend = backend;
        e.tries += 1;
        self.backends[backend].pending.push_back(ex);
        self.dispatch(now, backend);
    }

    /// The exchange leaves its backend (done, or about to be retried).
    fn unstart(&mut self, ex: ExchangeId) {
        let Some(e) = self.ex_mut(ex) else {
            return;
        };
        if let Some(b) = e.started_on.take() {
            let c = e.cluster;
            let first = self.cluster_first[c];
            self.balancers[c].finish(b - first);
        }
    }

    /// Try `ex` again, on another backend if there is one: at once when
    /// the backend never saw it, else after the cluster's backoff. False
    /// when the retry budget is spent (the caller fails the exchange).
    fn retry(&mut self, now: Time, ex: ExchangeId, avoid: usize, immediate: bool) -> bool {
        let Some(e) = self.ex(ex) else {
            return true;
        };
        let (c, held, tries) = (e.cluster, e.retry_held, e.tries);
        if !held {
            if self.breakers[c].try_acquire_retry().is_err() {
                self.stats.retries_refused += 1;
                return false;
            }
            if let Some(e) = self.ex_mut(ex) {
                e.retry_held = true;
            }
        }
        self.unstart(ex);
        self.stats.retries += 1;
        if immediate {
            let key = self.ex(ex).and_then(|e| e.key_hash);
            match self.pick(c, Some(avoid), key) {
                Some(b) => self.enqueue(now, ex, b),
                None => self.finish_ex(ex, Err(ProxyError::NoHealthyBackend)),
            }
            return true;
        }
        let delay = self.spec.clusters[c]
            .backoff
            .delay(tries.saturating_sub(1), &mut self.rng);
        if let Some(e) = self.ex_mut(ex) {
            e.backend = usize::MAX;
            e.retry_avoid = avoid;
        }
        self.timers
            .push(Reverse((now + delay, Timer::Retry(ex.index, ex.gen))));
        true
    }

    /// Give waiting exchanges of `backend` its idle connections, and open
    /// connections for the rest within the pool limit.
    fn dispatch(&mut self, now: Time, backend: usize) {
        if self.spec.clusters[self.backends[backend].cluster].h2 {
            return self.h2_dispatch(now, backend);
        }
        loop {
            let Some(&ex) = self.backends[backend].pending.front() else {
                return;
            };
            if self.ex(ex).is_none() {
                self.backends[backend].pending.pop_front();
                continue;
            }
            if let Some(up) = self.backends[backend].idle.pop() {
                let usable = match self.up_mut(up) {
                    Some(u) => {
                        u.in_idle_list = false;
                        u.close == Close::No && u.client.reusable()
                    }
                    None => false,
                };
                if !usable {
                    continue;
                }
                self.backends[backend].pending.pop_front();
                let cluster = self.backends[backend].cluster;
                self.breakers[cluster].release_pending();
                self.assign(ex, up);
                continue;
            }
            break;
        }
        let cluster = self.backends[backend].cluster;
        let c = &self.spec.clusters[cluster];
        let (max, timeout) = (c.max_connections, c.connect_timeout);
        let idle_timeout = c.idle_timeout;
        while self.backends[backend].pending.len() > self.backends[backend].connecting
            && self.backends[backend].conns < max
        {
            // The cluster-wide connection limit: past it, requests wait
            // for a connection to free up.
            if self.breakers[cluster].try_acquire_connection().is_err() {
                break;
            }
            self.open(now, backend, timeout, idle_timeout);
        }
    }

    fn open(&mut self, now: Time, backend: usize, timeout: Duration, idle_timeout: Duration) {
        let c = &self.spec.clusters[self.backends[backend].cluster];
        let (c_h2, max_streams) = (c.h2, c.max_streams);
        let gen = self.gen();
        let index = match self.free_up.pop() {
            Some(i) => i,
            None => {
                self.ups.push(None);
                (self.ups.len() - 1) as u32
            }
        };
        self.ups[index as usize] = Some(Up {
            gen,
            backend,
            state: UpState::Connecting,
            client: ClientConn::new(ClientLimits::default()),
            ex: None,
            wake: None,
            idle_since: now,
            idle_timeout,
            opened_at: now,
            connect_took: None,
            close: Close::No,
            used: false,
            in_idle_list: false,
            discarding: false,
            h2: c_h2.then(|| Box::new(h2up::H2Up::new(max_streams))),
        });
        let id = UpstreamId { index, gen };
        let b = &mut self.backends[backend];
        b.conns += 1;
        b.connecting += 1;
        self.stats.upstream_connects += 1;
        self.connects.push((id, b.addr));
        self.timers
            .push(Reverse((now + timeout, Timer::Connect(index, gen))));
    }

    fn assign(&mut self, ex: ExchangeId, up: UpstreamId) {
        let Some(e) = self.ex_mut(ex) else {
            return;
        };
        e.up = Some(up);
        let (head, framing, is_head) = (std::mem::take(&mut e.head), e.framing, e.is_head);
        let Some(u) = self.up_mut(up) else {
            return;
        };
        let (used, backend, wake, took) = (u.used, u.backend, u.wake, u.connect_took.take());
        if used {
            self.stats.upstream_reuses += 1;
        }
        if let Some(e) = self.ex_mut(ex) {
            e.served_by = Some(backend);
            e.upstream_conn = wake;
            e.upstream_connect = if used { None } else { took };
        }
        if let Some(e) = self.ex_mut(ex) {
            if e.started_on.is_none() {
                e.started_on = Some(backend);
                let c = e.cluster;
                let first = self.cluster_first[c];
                self.balancers[c].start(backend - first);
            }
        }
        let u = self.up_mut(up).expect("checked above");
        u.used = true;
        u.ex = Some(ex);
        let sent = u.client.send_request(&head, framing, is_head);
        // Keep the head for a retry.
        if let Some(e) = self.ex_mut(ex) {
            e.head = head;
        }
        if sent.is_err() {
            self.fail_up(up, ProxyError::UpstreamReset);
            return;
        }
        if let Some((per_try, tries)) = self.ex(ex).and_then(|e| Some((e.per_try?, e.tries))) {
            let at = self.now + per_try;
            self.timers
                .push(Reverse((at, Timer::Try(ex.index, ex.gen, tries))));
        }
        self.wake_up(up);
    }

    fn send_body(&mut self, ex: ExchangeId, data: &[u8]) -> usize {
        let Some(e) = self.ex_mut(ex) else {
            return data.len();
        };
        if e.finished && e.up.is_none() {
            // Answered already (an error): drop the body.
            return data.len();
        }
        let room = REQUEST_BODY_BUFFER.saturating_sub(e.body.len());
        let n = room.min(data.len());
        e.body.extend_from_slice(&data[..n]);
        if let Some(up) = e.up {
            self.wake_up(up);
        }
        n
    }

    fn end_body(&mut self, ex: ExchangeId, trailers: Option<Headers>) {
        if let Some(e) = self.ex_mut(ex) {
            e.body_done = true;
            e.trailers = trailers.map(|t| Box::new(request_trailers(t)));
            if let Some(up) = e.up {
                self.wake_up(up);
            }
        }
    }

    fn poll_response(&mut self, ex: ExchangeId) -> Option<Result<ResponsePart, ProxyError>> {
        let e = self.ex_mut(ex)?;
        let part = e.resp.pop_front()?;
        match &part {
            Ok(ResponsePart::Head { status, .. }) => e.status = *status,
            Ok(ResponsePart::Data(d)) => e.bytes_out += d.len() as u64,
            Err(err) if e.status == 0 => e.status = err.status(),
            _ => {}
        }
        if let Ok(ResponsePart::Data(d)) = &part {
            if e.stream.is_some() {
                let n = d.len();
                e.resp_bytes -= n;
                self.h2_release(ex, n);
                return self.poll_response_end(ex, part);
            }
            let before = e.resp_bytes;
            e.resp_bytes -= d.len();
            // Below half: let the upstream connection read again.
            if before >= RESPONSE_BUFFER / 2 && e.resp_bytes < RESPONSE_BUFFER / 2 {
                if let Some(up) = e.up {
                    self.wake_up(up);
                }
            }
        }
        self.poll_response_end(ex, part)
    }

    fn poll_response_end(
        &mut self,
        ex: ExchangeId,
        part: Result<ResponsePart, ProxyError>,
    ) -> Option<Result<ResponsePart, ProxyError>> {
        if matches!(part, Ok(ResponsePart::End) | Err(_)) {
            let error = part.as_ref().err().copied();
            self.finish_record(ex, error);
            self.free_ex(ex);
        }
        Some(part)
    }

    /// The request is over for the client: its latency, and its access
    /// record when the log is on.
    fn finish_record(&mut self, ex: ExchangeId, error: Option<ProxyError>) {
        let now = self.now;
        let Some(e) = self.exchanges[ex.index as usize]
            .as_mut()
            .filter(|e| e.gen == ex.gen)
        else {
            return;
        };
        let cluster = (e.cluster != usize::MAX).then_some(e.cluster);
        self.latency
            .record(e.route, cluster, now.saturating_since(e.start));
        let Some(log) = e.log.take() else {
            return;
        };
        if self.records.len() >= MAX_RECORDS {
            // The service drains every iteration; a backlog this deep
            // means the writer is stuck: keep the newest.
            self.records.remove(0);
        }
        self.records.push(AccessRecord {
            start: e.start,
            end: now,
            method: log.method,
            path: log.path,
            authority: log.authority,
            client: log.client,
            status: e.status,
            error: error.map(error_name),
            route: e.route,
            cluster,
            upstream: e.served_by.map(|b| self.backends[b].addr),
            retries: e.tries.saturating_sub(1),
            bytes_out: e.bytes_out,
            tls_handshake: log.tls_handshake,
            upstream_connect: e.upstream_connect,
            first_byte: e.first_byte.map(|t| t.saturating_since(e.start)),
            request_id: log.request_id,
            trace_id: log.trace_id,
            downstream: e.wake,
            upstream_conn: e.upstream_conn,
        });
    }

    fn cancel(&mut self, ex: ExchangeId) {
        let Some(e) = self.ex(ex) else {
            return;
        };
        if e.stream.is_some() {
            // HTTP/2: only the stream goes.
            let now = self.now;
            self.h2_detach(now, ex);
        } else if let Some(up) = e.up {
            if !e.finished {
                // The response is still coming: the connection cannot be
                // reused mid-response.
                if let Some(u) = self.up_mut(up) {
                    u.ex = None;
                    u.close = Close::Abort;
                }
                self.wake_up(up);
            }
        }
        // The client went away first (nginx logs these as 499).
        if let Some(e) = self.ex_mut(ex) {
            if e.status == 0 {
                e.status = 499;
            }
        }
        self.finish_record(ex, None);
        self.free_ex(ex);
    }

    fn free_ex(&mut self, ex: ExchangeId) {
        if self.ex(ex).is_none() {
            return;
        }
        self.unstart(ex);
        let e = self.exchanges[ex.index as usize]
            .take()
            .expect("checked above");
        if e.up.is_none() && e.backend != usize::MAX && !e.finished {
            // Still waiting in a queue (a finished exchange never is: the
            // paths that end a waiting one take it out first, and a scan of
            // a long queue per completed request is what this avoids).
            if let Some(pos) = self.backends[e.backend]
                .pending
                .iter()
                .position(|p| *p == ex)
            {
                self.backends[e.backend].pending.remove(pos);
                self.breakers[e.cluster].release_pending();
            }
        }
        if e.request_held {
            self.breakers[e.cluster].release_request();
        }
        if e.retry_held {
            self.breakers[e.cluster].release_retry();
        }
        self.free_ex.push(ex.index);
    }

    fn finish_ex(&mut self, ex: ExchangeId, result: Result<ResponsePart, ProxyError>) {
        let mut count = None;
        if let Some(e) = self.ex_mut(ex) {
            if e.finished {
                return;
            }
            e.finished = true;
            if let Err(err) = result {
                count = Some(err);
            }
            e.resp.push_back(result);
        }
        match count {
            Some(ProxyError::ConnectFailed) => self.stats.connect_failures += 1,
            Some(ProxyError::UpstreamReset) => self.stats.upstream_resets += 1,
            Some(ProxyError::BadResponse) => self.stats.bad_responses += 1,
            Some(ProxyError::Timeout) => self.stats.timeouts += 1,
            _ => {}
        }
        self.wake_ex(ex);
    }

    /// Answers `ex` with a bodiless response of `status` (a retried
    /// status whose retry the budget refused).
    fn give_status(&mut self, ex: ExchangeId, status: u16) {
        let Some(e) = self.ex_mut(ex) else {
            return;
        };
        if e.finished {
            return;
        }
        e.finished = true;
        e.head_seen = true;
        e.resp.push_back(Ok(ResponsePart::Head {
            status,
            headers: Headers::new(),
            body: BodyLen::Length(0),
        }));
        e.resp.push_back(Ok(ResponsePart::End));
        self.wake_ex(ex);
    }

    /// The exchange's deadline passed: a 504, or for gRPC the status its
    /// client expects, DEADLINE_EXCEEDED (4), as trailers after a head
    /// already sent or as a trailers-only response.
    fn expire(&mut self, ex: ExchangeId) {
        let Some(e) = self.ex_mut(ex) else {
            return;
        };
        if !e.grpc {
            self.finish_ex(ex, Err(ProxyError::Timeout));
            return;
        }
        if e.finished {
            return;
        }
        e.finished = true;
        let mut status = Headers::with_capacity(3);
        status.insert(GRPC_STATUS, HeaderValue::from_static("4"));
        status.insert(GRPC_MESSAGE, HeaderValue::from_static("deadline exceeded"));
        if e.head_seen {
            e.resp.push_back(Ok(ResponsePart::Trailers(status)));
        } else {
            let mut headers = Headers::with_capacity(3);
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );
            headers.extend(status);
            e.resp.push_back(Ok(ResponsePart::Head {
                status: 200,
                headers,
                body: BodyLen::None,
            }));
        }
        e.resp.push_back(Ok(ResponsePart::End));
        self.stats.timeouts += 1;
        self.stats.grpc_deadline_exceeded += 1;
        self.wake_ex(ex);
    }

    // ---- upstream ----------------------------------------------------------

    fn connected(&mut self, now: Time, up: UpstreamId, wake: WakeKey) -> bool {
        let Some(u) = self.up_mut(up) else {
            return false;
        };
        u.state = UpState::Ready;
        u.wake = Some(wake);
        u.idle_since = now;
        u.connect_took = Some(now.saturating_since(u.opened_at));
        let (backend, h2) = (u.backend, u.h2.is_some());
        self.backends[backend].connecting -= 1;
        if h2 {
            self.h2_connected(now, up);
        } else {
            self.make_idle(now, up);
        }
        true
    }

    /// `up` has no exchange: give it the next waiting one, or list it idle.
    fn make_idle(&mut self, now: Time, up: UpstreamId) {
        let Some(u) = self.up_mut(up) else {
            return;
        };
        u.ex = None;
        u.idle_since = now;
        if u.close != Close::No || !u.client.reusable() {
            if u.close == Close::No {
                u.close = Close::Graceful;
            }
            self.wake_up(up);
            return;
        }
        let backend = u.backend;
        u.in_idle_list = true;
        self.backends[backend].idle.push(up);
        self.dispatch(now, backend);
        // Idle connections beyond `max_idle` are not closed here: under
        // load, connections go idle and busy all the time, and closing
        // them on a count is the churn (TIME_WAIT, connects) a pool is
        // there to avoid. The least recently used ones age out instead
        // (see `up_deadline`): wake them so their apps re-read it.
        self.wake_up(up);
        let max_idle = self.spec.clusters[self.backends[backend].cluster].max_idle;
        let excess = self.backends[backend].idle.len().saturating_sub(max_idle);
        for i in 0..excess {
            let old = self.backends[backend].idle[i];
            self.wake_up(old);
        }
    }

    fn unlist_idle(&mut self, up: UpstreamId) {
        let Some(u) = self.up_mut(up) else {
            return;
        };
        if u.h2.is_some() {
            let b = u.backend;
            self.backends[b].h2_conns.retain(|x| *x != up);
            return;
        }
        if !u.in_idle_list {
            return;
        }
        u.in_idle_list = false;
        let b = u.backend;
        self.backends[b].idle.retain(|x| *x != up);
    }

    fn connect_failed(&mut self, now: Time, up: UpstreamId) {
        let Some(u) = self.ups.get_mut(up.index as usize).and_then(Option::take) else {
            return;
        };
        if u.gen != up.gen {
            self.ups[up.index as usize] = Some(u);
            return;
        }
        self.free_up.push(up.index);
        let backend = u.backend;
        let b = &mut self.backends[backend];
        b.conns -= 1;
        if u.state == UpState::Connecting {
            b.connecting -= 1;
        }
        let cluster = b.cluster;
        self.breakers[cluster].release_connection();
        self.stats.connect_failures += 1;
        self.record(
            backend,
            OutcomeKind::GatewayFailure(GatewayFailure::ConnectFailure),
        );
        // The exchanges that waited for this backend beyond what its other
        // opening connections cover try another backend, or fail.
        let per_conn = if self.spec.clusters[cluster].h2 {
            self.spec.clusters[cluster].max_streams.max(1) as usize
        } else {
            1
        };
        let surplus = self.backends[backend]
            .pending
            .len()
            .saturating_sub(self.backends[backend].connecting * per_conn);
        if surplus == 0 {
            return;
        }
        let moved: Vec<ExchangeId> = {
            let b = &mut self.backends[backend];
            let keep = b.pending.len() - surplus;
            b.pending.drain(keep..).collect()
        };
        for ex in moved {
            let Some(e) = self.ex(ex) else {
                continue;
            };
            let (cluster, retry) = (e.cluster, e.retry_connect && e.tries < e.max_tries);
            self.breakers[cluster].release_pending();
            if retry && self.retry(now, ex, backend, false) {
                // Retried after the backoff.
            } else {
                if let Some(e) = self.ex_mut(ex) {
                    e.backend = usize::MAX;
                }
                self.finish_ex(ex, Err(ProxyError::ConnectFailed));
                self.stats.connect_failures -= 1;
            }
        }
    }

    /// The upstream app is gone (the TCP connection closed or was reset).
    fn up_gone(&mut self, now: Time, up: UpstreamId) {
        let Some(u) = self.up(up) else {
            return;
        };
        let (ex, backend) = (u.ex, u.backend);
        self.unlist_idle(up);
        if let Some(ex) = ex {
            self.fail_exchange_of(now, up, ex);
        }
        self.h2_gone(now, up);
        let u = self.ups[up.index as usize].take().expect("checked above");
        if u.state == UpState::Connecting {
            self.backends[backend].connecting -= 1;
        }
        self.backends[backend].conns -= 1;
        let cluster = self.backends[backend].cluster;
        self.breakers[cluster].release_connection();
        self.free_up.push(up.index);
        self.dispatch(now, backend);
    }

    /// The connection carrying `ex` failed: retry the request elsewhere if
    /// that is safe, else fail it.
    fn fail_exchange_of(&mut self, now: Time, up: UpstreamId, ex: ExchangeId) {
        let written = self.up(up).map_or(0, |u| u.client.request_bytes_written());
        let started = self.up(up).is_some_and(|u| u.client.response_started());
        if written > 0 && !self.ex(ex).is_some_and(|e| e.finished) {
            // The backend took the request and broke the connection.
            if let Some(b) = self.up(up).map(|u| u.backend) {
                self.record(b, OutcomeKind::GatewayFailure(GatewayFailure::Reset));
            }
        }
        if let Some(u) = self.up_mut(up) {
            u.ex = None;
        }
        let Some(e) = self.ex_mut(ex) else {
            return;
        };
        if e.finished {
            return;
        }
        e.up = None;
        // Never sent (the backend closed a connection we thought idle), or
        // idempotent with no response byte: safe to send again.
        // A request the backend never saw (it closed a connection we
        // thought idle) is sent again with one try to spare (a backend
        // that closes every connection at once must not make a loop of
        // it); one it may have seen only if idempotent and `reset` allows.
        let unseen = written == 0;
        let safe = !e.head_seen
            && !started
            && ((unseen && e.tries <= e.max_tries)
                || (e.idempotent && e.retry_reset && e.tries < e.max_tries));
        if safe {
            let backend = e.backend;
            if self.retry(now, ex, backend, written == 0) {
                return;
            }
        }
        self.finish_ex(ex, Err(ProxyError::UpstreamReset));
    }

    fn fail_up(&mut self, up: UpstreamId, err: ProxyError) {
        self.unlist_idle(up);
        let ex = self.up_mut(up).and_then(|u| {
            u.close = Close::Abort;
            u.ex.take()
        });
        if let Some(ex) = ex {
            if let Some(e) = self.ex_mut(ex) {
                e.up = None;
            }
            self.finish_ex(ex, Err(err));
        }
        self.wake_up(up);
    }

    fn up_wants_read(&self, up: UpstreamId) -> bool {
        let Some(u) = self.up(up) else {
            return false;
        };
        if let Some(h) = &u.h2 {
            // Streams' windows bound what the backend sends.
            return h.client.wants_read();
        }
        match u.ex.and_then(|ex| self.ex(ex)) {
            Some(e) => e.resp_bytes < RESPONSE_BUFFER,
            None => true,
        }
    }

    fn up_wants_write(&self, up: UpstreamId) -> bool {
        let Some(u) = self.up(up) else {
            return false;
        };
        if u.h2.is_some() {
            return self.h2_wants_write(up);
        }
        if u.ex.is_none() && u.close != Close::No {
            // A request moved off this closing connection must not go out
            // on it too (the backend would run it twice).
            return false;
        }
        u.client.wants_write()
            || u.ex.and_then(|ex| self.ex(ex)).is_some_and(|e| {
                !e.body.is_empty() || (e.body_done && e.framing != BodyFraming::None)
            })
    }

    fn up_write(&mut self, up: UpstreamId, buf: &mut [u8]) -> usize {
        let Some(u) = self.ups.get_mut(up.index as usize).and_then(Option::as_mut) else {
            return 0;
        };
        if u.gen != up.gen {
            return 0;
        }
        if u.h2.is_some() {
            let now = self.now;
            return self.h2_write(now, up, buf);
        }
        if let Some(ex) = u.ex {
            if let Some(e) = self.exchanges[ex.index as usize]
                .as_mut()
                .filter(|e| e.gen == ex.gen)
            {
                let before = e.body.len();
                if !e.body.is_empty() {
                    let n = u.client.write_body(&e.body);
                    e.body.drain(..n);
                }
                let mut failed = false;
                if e.body_done && e.body.is_empty() && e.framing != BodyFraming::None {
                    let trailers: Vec<(&[u8], &[u8])> = e
                        .trailers
                        .iter()
                        .flat_map(|t| t.iter())
                        .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()))
                        .collect();
                    failed = u.client.finish_body(&trailers).is_err();
                    e.framing = BodyFraming::None;
                }
                let freed = before >= REQUEST_BODY_BUFFER && e.body.len() < REQUEST_BODY_BUFFER;
                let wake = e.wake;
                if freed {
                    self.wakes.push(wake);
                }
                if failed {
                    // The downstream body ended short of its Content-Length.
                    self.fail_up(up, ProxyError::BadRequest);
                    return 0;
                }
            }
        }
        let u = self.ups[up.index as usize].as_mut().expect("checked above");
        if u.ex.is_none() && u.close != Close::No {
            return 0;
        }
        u.client.poll_write(buf)
    }

    fn up_read(&mut self, now: Time, up: UpstreamId, data: &[u8]) -> usize {
        let Some(u) = self.ups.get_mut(up.index as usize).and_then(Option::as_mut) else {
            return data.len();
        };
        if u.gen != up.gen || u.close == Close::Abort {
            return data.len();
        }
        if u.h2.is_some() {
            return self.h2_read(now, up, data);
        }
        let ex_id = u.ex;
        let mut ex = ex_id.and_then(|id| {
            self.exchanges[id.index as usize]
                .as_mut()
                .filter(|e| e.gen == id.gen)
        });
        if ex.as_ref().is_some_and(|e| e.resp_bytes >= RESPONSE_BUFFER) {
            return 0;
        }
        let mut ended = false;
        let mut head_status = None;
        let mut keep_alive: Option<u32> = None;
        // A status the route retries: the response goes nowhere, and the
        // request to another try once this read is done.
        let route = ex
            .as_ref()
            .and_then(|e| e.route)
            .map(|r| &self.spec.routes[r]);
        let mut retry_status = None;
        let mut discarding = u.discarding;
        let result = u.client.on_read(data, &mut |ev| {
            if discarding {
                if let ClientEvent::End = ev {
                    ended = true;
                }
                return;
            }
            let Some(e) = ex.as_deref_mut() else {
                return;
            };
            match ev {
                ClientEvent::Informational(_) => {}
                ClientEvent::Head(h)
                    if e.tries < e.max_tries
                        && route.is_some_and(|r| {
                            r.retries_status(h.status, e.idempotent, e.bodiless)
                        }) =>
                {
                    head_status = Some(h.status);
                    keep_alive = h.keep_alive_timeout;
                    retry_status = Some(h.status);
                    discarding = true;
                }
                ClientEvent::Head(h) => {
                    head_status = Some(h.status);
                    keep_alive = h.keep_alive_timeout;
                    e.first_byte = Some(now);
                    e.head_seen = true;
                    e.resp.push_back(Ok(response_head(h, e.is_head)));
                }
                ClientEvent::Body(b) => {
                    e.resp_bytes += b.len();
                    match e.resp.back_mut() {
                        // Coalesce small reads into one part.
                        Some(Ok(ResponsePart::Data(d))) if d.len() < 16 * 1024 => {
                            d.extend_from_slice(b)
                        }
                        _ => e.resp.push_back(Ok(ResponsePart::Data(b.to_vec()))),
                    }
                }
                ClientEvent::Trailers(t) => {
                    let mut fields = Headers::with_capacity(t.len());
                    for (n, v) in t.iter() {
                        sluice_app::proxy::append(&mut fields, n, v);
                    }
                    let t = fields;
                    e.resp.push_back(Ok(ResponsePart::Trailers(t)));
                }
                ClientEvent::End => {
                    ended = true;
                    e.finished = true;
                    e.resp.push_back(Ok(ResponsePart::End));
                }
            }
        });
        if let Some(s) = head_status {
            self.count_status(s);
            if let Some(b) = self.up(up).map(|u| u.backend) {
                self.record(b, OutcomeKind::from_status(s));
            }
        }
        if let (Some(secs), Some(u)) = (keep_alive, self.up_mut(up)) {
            // The backend says how long it keeps an idle connection: stay
            // a second below, so a request never meets its close.
            let theirs = Duration::from_secs(u64::from(secs));
            let ours = theirs
                .saturating_sub(Duration::from_secs(1))
                .max(Duration::from_millis(500));
            if ours < u.idle_timeout {
                u.idle_timeout = ours;
            }
        }
        let took = match result {
            Ok(n) => n,
            Err(_) => {
                if ex_id.is_none() {
                    // Bytes on an idle connection (say a 408 before it
                    // closes): no exchange to count it against.
                    self.stats.bad_responses += 1;
                }
                match ex_id {
                    Some(ex) if !self.ex(ex).is_some_and(|e| e.head_seen) => {
                        self.fail_up(up, ProxyError::BadResponse)
                    }
                    Some(ex) => {
                        // Mid-body: the client sees the response cut.
                        self.fail_up(up, ProxyError::UpstreamReset);
                        let _ = ex;
                    }
                    None => self.fail_up(up, ProxyError::BadResponse),
                }
                return data.len();
            }
        };
        if let (Some(ex), Some(status)) = (ex_id, retry_status) {
            // The exchange leaves the connection now; the connection reads
            // the rest of this response and is reused after it.
            if let Some(e) = self.ex_mut(ex) {
                e.up = None;
            }
            let backend = self.up(up).map_or(usize::MAX, |u| u.backend);
            if let Some(u) = self.up_mut(up) {
                u.ex = None;
                u.discarding = !ended;
            }
            if ended {
                self.make_idle(now, up);
            }
            if !self.retry(now, ex, backend, false) {
                // The budget is spent: the client gets the backend's
                // status (its body was not kept).
                self.give_status(ex, status);
            }
            return took;
        }
        if let Some(ex) = ex_id {
            self.wake_ex(ex);
            if ended {
                if let Some(e) = self.ex_mut(ex) {
                    e.up = None;
                }
                self.make_idle(now, up);
            }
        } else if ended && self.up(up).is_some_and(|u| u.discarding) {
            if let Some(u) = self.up_mut(up) {
                u.discarding = false;
            }
            self.make_idle(now, up);
        }
        took
    }

    fn count_status(&mut self, s: u16) {
        let st = &mut self.stats;
        match s {
            100..=199 => st.responses_1xx += 1,
            200..=299 => st.responses_2xx += 1,
            300..=399 => st.responses_3xx += 1,
            400..=499 => st.responses_4xx += 1,
            _ => st.responses_5xx += 1,
        }
    }

    fn up_eof(&mut self, now: Time, up: UpstreamId) {
        let Some(u) = self.ups.get_mut(up.index as usize).and_then(Option::as_mut) else {
            return;
        };
        if u.gen != up.gen {
            return;
        }
        if u.h2.is_some() {
            return self.h2_eof(now, up);
        }
        let ex_id = u.ex;
        let mut ex = ex_id.and_then(|id| {
            self.exchanges[id.index as usize]
                .as_mut()
                .filter(|e| e.gen == id.gen)
        });
        let mut ended = false;
        let r = u.client.on_read_eof(&mut |ev| {
            if let (ClientEvent::End, Some(e)) = (ev, ex.as_deref_mut()) {
                ended = true;
                e.finished = true;
                e.resp.push_back(Ok(ResponsePart::End));
            }
        });
        // The backend closed: this connection takes no further request.
        u.close = Close::Graceful;
        self.unlist_idle(up);
        match ex_id {
            Some(ex) if ended => {
                if let Some(e) = self.ex_mut(ex) {
                    e.up = None;
                }
                if let Some(u) = self.up_mut(up) {
                    u.ex = None;
                }
                self.wake_ex(ex);
            }
            Some(ex) => {
                let _ = r;
                self.fail_exchange_of(now, up, ex);
            }
            None => {}
        }
        self.wake_up(up);
    }

    /// More idle connections than the cluster keeps.
    fn over_max_idle(&self, backend: usize) -> bool {
        let b = &self.backends[backend];
        b.idle.len() > self.spec.clusters[b.cluster].max_idle
    }

    fn up_timeout(&mut self, now: Time, up: UpstreamId) {
        let Some(u) = self.up(up) else {
            return;
        };
        let limit = if self.over_max_idle(u.backend) {
            IDLE_TRIM.min(u.idle_timeout)
        } else {
            u.idle_timeout
        };
        if !u.busy() && u.close == Close::No && now >= u.idle_since + limit {
            self.stats.upstream_idle_closes += 1;
            self.unlist_idle(up);
            if let Some(u) = self.up_mut(up) {
                u.close = Close::Graceful;
            }
        }
    }

    fn on_timeout(&mut self, now: Time) {
        while let Some(Reverse((t, timer))) = self.timers.peek().copied() {
            if t > now {
                break;
            }
            self.timers.pop();
            match timer {
                Timer::Ex(index, gen) => {
                    let ex = ExchangeId { index, gen };
                    let Some(e) = self.ex(ex) else {
                        continue;
                    };
                    if e.finished {
                        continue;
                    }
                    match e.up {
                        Some(up) if e.stream.is_some() => {
                            if let Some(b) = self.up(up).map(|u| u.backend) {
                                self.record(
                                    b,
                                    OutcomeKind::GatewayFailure(GatewayFailure::Timeout),
                                );
                            }
                            self.h2_detach(now, ex);
                        }
                        Some(up) => {
                            if let Some(b) = self.up(up).map(|u| u.backend) {
                                self.record(
                                    b,
                                    OutcomeKind::GatewayFailure(GatewayFailure::Timeout),
                                );
                            }
                            if let Some(u) = self.up_mut(up) {
                                u.ex = None;
                                u.close = Close::Abort;
                            }
                            self.wake_up(up);
                            if let Some(e) = self.ex_mut(ex) {
                                e.up = None;
                            }
                        }
                        None if e.backend != usize::MAX => {
                            let (b, c) = (e.backend, e.cluster);
                            if let Some(pos) =
                                self.backends[b].pending.iter().position(|p| *p == ex)
                            {
                                self.backends[b].pending.remove(pos);
                                self.breakers[c].release_pending();
                            }
                            if let Some(e) = self.ex_mut(ex) {
                                e.backend = usize::MAX;
                            }
                        }
                        // Waiting out a retry's backoff.
                        None => {}
                    }
                    self.expire(ex);
                }
                Timer::Try(index, gen, attempt) => {
                    let ex = ExchangeId { index, gen };
                    let Some(e) = self.ex(ex) else {
                        continue;
                    };
                    let Some(up) = e.up else {
                        continue;
                    };
                    if e.finished || e.head_seen || e.tries != attempt {
                        continue;
                    }
                    // This try took too long: its connection cannot be
                    // reused (a response may still come), and the request
                    // goes elsewhere if that is safe.
                    let (retry, backend) = (
                        e.idempotent && e.retry_reset && e.tries < e.max_tries,
                        e.backend,
                    );
                    let on_stream = e.stream.is_some();
                    if let Some(b) = self.up(up).map(|u| u.backend) {
                        self.record(b, OutcomeKind::GatewayFailure(GatewayFailure::Timeout));
                    }
                    if on_stream {
                        self.h2_detach(now, ex);
                    } else {
                        if let Some(u) = self.up_mut(up) {
                            u.ex = None;
                            u.close = Close::Abort;
                        }
                        self.wake_up(up);
                    }
                    if let Some(e) = self.ex_mut(ex) {
                        e.up = None;
                    }
                    if !(retry && self.retry(now, ex, backend, false)) {
                        self.finish_ex(ex, Err(ProxyError::Timeout));
                    }
                }
                Timer::Retry(index, gen) => {
                    let ex = ExchangeId { index, gen };
                    let Some(e) = self.ex(ex) else {
                        continue;
                    };
                    if e.finished || e.up.is_some() || e.backend != usize::MAX {
                        continue;
                    }
                    let (c, avoid, key) = (e.cluster, e.retry_avoid, e.key_hash);
                    match self.pick(c, Some(avoid), key) {
                        Some(b) => self.enqueue(now, ex, b),
                        None => self.finish_ex(ex, Err(ProxyError::NoHealthyBackend)),
                    }
                }
                Timer::Connect(index, gen) => {
                    let up = UpstreamId { index, gen };
                    if self.up(up).is_some_and(|u| u.state == UpState::Connecting) {
                        self.aborts.push(up);
                        self.connect_failed(now, up);
                    }
                }
            }
        }
    }
}

impl Proxy for LoopProxy {
    fn matches(&self, authority: Option<&[u8]>, method: &[u8], path: &[u8]) -> bool {
        self.core
            .borrow()
            .spec
            .route(authority, method, path)
            .is_some()
    }

    fn start(&self, req: ProxyRequest, wake: WakeKey) -> ExchangeId {
        let mut core = self.core.borrow_mut();
        let now = core.now;
        core.start(now, req, wake)
    }

    fn send_body(&self, ex: ExchangeId, data: &[u8]) -> usize {
        self.core.borrow_mut().send_body(ex, data)
    }

    fn end_body(&self, ex: ExchangeId, trailers: Option<Headers>) {
        self.core.borrow_mut().end_body(ex, trailers)
    }

    fn poll_response(&self, ex: ExchangeId) -> Option<Result<ResponsePart, ProxyError>> {
        self.core.borrow_mut().poll_response(ex)
    }

    fn response_ready(&self, ex: ExchangeId) -> bool {
        self.core.borrow().ex(ex).is_none_or(|e| !e.resp.is_empty())
    }

    fn cancel(&self, ex: ExchangeId) {
        self.core.borrow_mut().cancel(ex)
    }
}

/// The response head as the downstream sees it: hop-by-hop fields off.
fn response_head(h: &ResponseHead, is_head: bool) -> ResponsePart {
    let connection: Vec<Vec<u8>> = h
        .headers()
        .filter(|(n, _)| n.eq_ignore_ascii_case(b"connection"))
        .flat_map(|(_, v)| sluice_http::connection_tokens(v).map(<[u8]>::to_ascii_lowercase))
        .collect();
    let mut headers = Headers::with_capacity(h.headers().count());
    for (n, v) in h.headers() {
        if !sluice_http::is_hop_by_hop(n)
            && !n.eq_ignore_ascii_case(b"content-length")
            && !connection.iter().any(|c| n.eq_ignore_ascii_case(c))
        {
            sluice_app::proxy::append(&mut headers, n, v);
        }
    }
    let body = match h.framing {
        _ if is_head => match h.header(b"content-length").and_then(parse_u64) {
            Some(n) => BodyLen::Length(n),
            None => BodyLen::None,
        },
        BodyFraming::None => BodyLen::None,
        BodyFraming::Length(n) => BodyLen::Length(n),
        BodyFraming::Chunked | BodyFraming::UntilClose => BodyLen::Streamed,
    };
    ResponsePart::Head {
        status: h.status,
        headers,
        body,
    }
}

/// Maglev's key for a request: the header's value, or (without it, or
/// when so configured) the client's address.
fn maglev_key(hash_on: &sluice_config::HashOn, req: &ProxyRequest) -> Option<u64> {
    if let sluice_config::HashOn::Header(name) = hash_on {
        if let Some(v) = req.headers.get(name.as_str()) {
            return Some(hash_key(v.as_bytes()));
        }
    }
    req.client.map(|c| match c.ip() {
        std::net::IpAddr::V4(a) => hash_key(&a.octets()),
        std::net::IpAddr::V6(a) => hash_key(&a.octets()),
    })
}

/// gRPC's `grpc-timeout`: up to 8 digits and a unit (H, M, S, m, u, n).
pub(crate) fn grpc_timeout(headers: &Headers) -> Option<Duration> {
    let v = headers.get(GRPC_TIMEOUT)?.as_bytes().trim_ascii();
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b"H" => Duration::from_secs(n.saturating_mul(3600)),
        b"M" => Duration::from_secs(n.saturating_mul(60)),
        b"S" => Duration::from_secs(n),
        b"m" => Duration::from_millis(n),
        b"u" => Duration::from_micros(n),
        b"n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The largest unit that keeps `d` within 8 digits (rounded down, never
/// to zero: a budget that small is sent as 1n... and expires at once).
pub(crate) fn format_grpc_timeout(d: Duration) -> Vec<u8> {
    const MAX: u128 = 99_999_999;
    let ns = d.as_nanos().max(1);
    let (v, unit) = if ns <= MAX {
        (ns, "n")
    } else if ns / 1_000 <= MAX {
        (ns / 1_000, "u")
    } else if ns / 1_000_000 <= MAX {
        (ns / 1_000_000, "m")
    } else if ns / 1_000_000_000 <= MAX {
        (ns / 1_000_000_000, "S")
    } else {
        ((ns / 60_000_000_000).min(MAX), "M")
    };
    format!("{v}{unit}").into_bytes()
}

/// Access records kept per loop before the oldest is dropped.
const MAX_RECORDS: usize = 65_536;

fn error_name(e: ProxyError) -> &'static str {
    match e {
        ProxyError::Overflow => "overflow",
        ProxyError::NoHealthyBackend => "no_healthy_backend",
        ProxyError::ConnectFailed => "connect_failed",
        ProxyError::UpstreamReset => "upstream_reset",
        ProxyError::BadResponse => "bad_response",
        ProxyError::Timeout => "timeout",
        ProxyError::BadRequest => "bad_request",
    }
}

fn parse_u64(v: &[u8]) -> Option<u64> {
    std::str::from_utf8(v).ok()?.trim().parse().ok()
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");
const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");

/// The fields the backend gets (all but `Host`): the client's, with the
/// forwarding, trace and deadline fields made ours. The request's own map
/// is reused, so a field that passes through is not copied.
fn upstream_fields(
    req: &mut ProxyRequest,
    spec: &ProxySpec,
    rng: &mut SplitMix64,
    budget: Option<Duration>,
) -> Headers {
    let mut h = std::mem::take(&mut req.headers);
    // Room for the fields added below: one growth, not one per insert.
    h.reserve(6);
    let mut xff = Vec::new();
    for v in h.get_all(&X_FORWARDED_FOR) {
        if !xff.is_empty() {
            xff.extend_from_slice(b", ");
        }
        xff.extend_from_slice(v.as_bytes());
    }
    h.remove(&X_FORWARDED_FOR);
    // Replaced by our span; without a valid one a new trace starts, and
    // the tracestate goes with the invalid parent (as the spec says).
    let parent = h
        .get_all(&TRACEPARENT)
        .iter()
        .find_map(|v| TraceParent::parse(v.as_bytes()));
    h.remove(&TRACEPARENT);
    if parent.is_none() {
        h.remove(&TRACESTATE);
    }
    // Replaced by what is left of the deadline.
    let grpc_timeout = h.remove(&GRPC_TIMEOUT).is_some();
    // Ours to set: a client must not forge them.
    h.remove(&X_FORWARDED_PROTO);
    if let Some(name) = &spec.spiffe_header {
        h.remove(name);
    }
    if let Some(client) = req.client {
        if !xff.is_empty() {
            xff.extend_from_slice(b", ");
        }
        let _ = write!(xff, "{}", client.ip());
    }
    if !xff.is_empty() {
        insert_bytes(&mut h, X_FORWARDED_FOR, xff);
    }
    let proto = if req.tls { "https" } else { "http" };
    h.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    if let (Some(name), Some(id)) = (&spec.spiffe_header, &req.spiffe_id) {
        insert_bytes(&mut h, name.clone(), id.as_bytes().to_vec());
    }
    if let Some(b) = budget.filter(|_| grpc_timeout) {
        insert_bytes(&mut h, GRPC_TIMEOUT, format_grpc_timeout(b));
    }
    let trace = parent.unwrap_or_else(|| trace::new_trace(rng));
    insert_bytes(&mut h, TRACEPARENT, trace.child(trace::span_id(rng)));
    if spec.request_id && !h.contains_key(&X_REQUEST_ID) {
        insert_bytes(&mut h, X_REQUEST_ID, trace::request_id(rng));
    }
    h
}

/// Trailers a backend may get: none of the fields that frame or route a
/// message (RFC 9110 §6.5.1), none of the connection-specific ones.
fn request_trailers(mut t: Headers) -> Headers {
    use http::header::{CONNECTION, CONTENT_LENGTH, HOST, TE, TRAILER, TRANSFER_ENCODING, UPGRADE};
    for name in [
        CONNECTION,
        CONTENT_LENGTH,
        HOST,
        TE,
        TRAILER,
        TRANSFER_ENCODING,
        UPGRADE,
    ] {
        t.remove(name);
    }
    for name in ["keep-alive", "proxy-connection"] {
        t.remove(name);
    }
    t
}

/// Sets a field whose value the proxy made (moved, not copied); one that
/// is not a valid value (never for the values made here) is left out.
fn insert_bytes(h: &mut Headers, name: HeaderName, value: Vec<u8>) {
    if let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(value)) {
        h.insert(name, v);
    }
}

mod h2up;
#[cfg(test)]
mod tests;
