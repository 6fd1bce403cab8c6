//! The proxy core driven the way the loop's TCP service drives it, on a
//! virtual clock: the test plays the service (it opens, fails, feeds and
//! drops upstream connections) and the backends (it answers with bytes).

use super::*;

use sluice_app::App;
use sluice_config::Config;

mod h2;

/// Upstream connections are named `WakeKey(UP_KEY + n)` (n: the order
/// they were opened in); downstream exchanges use small keys.
const UP_KEY: u64 = 1000;

/// One fake upstream TCP connection.
struct Conn {
    /// The backend it goes to.
    addr: SocketAddr,
    key: WakeKey,
    /// None once the connection is gone (the app was dropped).
    app: Option<UpstreamApp>,
    /// Every byte the app wrote.
    out: Vec<u8>,
    /// The connection's timer, as the service armed it: `deadline()` read
    /// after each call into the app and after each wake of its key.
    armed: Option<Time>,
}

/// The TCP service's bookkeeping around one loop's proxy.
struct Harness {
    proxy: Rc<LoopProxy>,
    now: Time,
    /// Connections the proxy asked for and the test has not handled yet.
    connects: Vec<(UpstreamId, SocketAddr)>,
    connects_seen: usize,
    conns: Vec<Conn>,
    aborts: Vec<UpstreamId>,
    wakes: Vec<WakeKey>,
}

impl Harness {
    fn new(toml: &str) -> Self {
        let config = Config::from_toml_str(toml, "test.toml").expect("valid configuration");
        let spec = ProxySpec::from_config(&config).expect("supported configuration");
        Harness {
            proxy: LoopProxy::new(Arc::new(spec), 0),
            now: Time::ZERO,
            connects: Vec::new(),
            connects_seen: 0,
            conns: Vec::new(),
            aborts: Vec::new(),
            wakes: Vec::new(),
        }
    }

    /// Moves the clock to `t` without firing any timer.
    fn set(&mut self, t: Time) {
        assert!(t >= self.now, "time runs forwards");
        self.now = t;
        self.proxy.set_now(t);
    }

    /// What the service does after anything ran: take the connects,
    /// aborts and wakes, and re-arm the timers of woken connections.
    fn collect(&mut self) {
        let mut connects = Vec::new();
        self.proxy.take_connects(&mut connects);
        self.connects_seen += connects.len();
        self.connects.extend(connects);
        self.proxy.take_aborts(&mut self.aborts);
        let mut wakes = Vec::new();
        self.proxy.take_wakes(&mut wakes);
        for k in &wakes {
            if let Some(i) = self.conns.iter().position(|c| c.key == *k) {
                self.rearm(i);
            }
        }
        self.wakes.extend(wakes);
    }

    fn rearm(&mut self, i: usize) {
        let c = &mut self.conns[i];
        c.armed = c.app.as_ref().and_then(App::deadline);
    }

    /// The earliest timer: the proxy's or a live connection's.
    fn next_timer(&self) -> Option<Time> {
        let conn = self
            .conns
            .iter()
            .filter(|c| c.app.is_some())
            .filter_map(|c| c.armed)
            .min();
        match (self.proxy.next_deadline(), conn) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Fires what is due at `t` (the clock moves there if it is later).
    fn fire(&mut self, t: Time) {
        let t = t.max(self.now);
        self.set(t);
        if self.proxy.next_deadline().is_some_and(|d| d <= t) {
            self.proxy.on_timeout(t);
        }
        for i in 0..self.conns.len() {
            let due = self.conns[i].armed.is_some_and(|a| a <= t);
            if let (true, Some(app)) = (due, self.conns[i].app.as_mut()) {
                app.on_timeout(t);
                self.rearm(i);
                assert!(
                    self.conns[i].armed.is_none_or(|a| a > t),
                    "connection {i}: deadline {:?} did not move past {t:?}",
                    self.conns[i].armed
                );
            }
        }
        self.collect();
    }

    /// Fires every timer up to `t`, in time order; the clock ends at `t`.
    fn advance(&mut self, t: Time) {
        for _ in 0..10_000 {
            match self.next_timer() {
                Some(d) if d <= t => self.fire(d),
                _ => {
                    self.set(t);
                    self.collect();
                    return;
                }
            }
        }
        panic!("timers keep firing before {t:?}");
    }

    /// Runs the proxy's timers (a retry's backoff, say) until it asks for
    /// a connection, at most `max` from now.
    fn advance_until_connect(&mut self, max: Duration) -> (UpstreamId, SocketAddr) {
        let limit = self.now + max;
        for _ in 0..10_000 {
            if !self.connects.is_empty() {
                return self.take_connect();
            }
            match self.next_timer() {
                Some(d) if d <= limit => self.fire(d),
                _ => panic!("no connect within {max:?}"),
            }
        }
        panic!("timers keep firing");
    }

    fn start(&mut self, req: ProxyRequest, key: u64) -> ExchangeId {
        self.proxy.set_now(self.now);
        let ex = self.proxy.start(req, WakeKey(key));
        self.collect();
        ex
    }

    /// The one connection the proxy asked for.
    fn take_connect(&mut self) -> (UpstreamId, SocketAddr) {
        assert_eq!(self.connects.len(), 1, "connects: {:?}", self.connects);
        self.connects.remove(0)
    }

    /// Connection `up` is established; returns its index.
    fn open(&mut self, up: UpstreamId, addr: SocketAddr) -> usize {
        let i = self.conns.len();
        let key = WakeKey(UP_KEY + i as u64);
        let app = self
            .proxy
            .connected(self.now, up, key)
            .expect("the proxy wants the connection");
        assert_eq!(app.id(), up);
        self.conns.push(Conn {
            addr,
            key,
            app: Some(app),
            out: Vec::new(),
            armed: None,
        });
        self.rearm(i);
        self.collect();
        i
    }

    /// Takes the one pending connect and establishes it.
    fn connect(&mut self) -> usize {
        let (up, addr) = self.take_connect();
        self.open(up, addr)
    }

    fn app(&self, i: usize) -> &UpstreamApp {
        self.conns[i].app.as_ref().expect("connection is gone")
    }

    fn app_mut(&mut self, i: usize) -> &mut UpstreamApp {
        self.conns[i].app.as_mut().expect("connection is gone")
    }

    /// Everything the connection's app writes now.
    fn write(&mut self, i: usize) -> Vec<u8> {
        let now = self.now;
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = self.app_mut(i).poll_write(now, &mut buf);
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        self.conns[i].out.extend_from_slice(&got);
        self.rearm(i);
        self.collect();
        got
    }

    /// The backend sent `data`; returns how many bytes the app took.
    fn read(&mut self, i: usize, data: &[u8]) -> usize {
        let now = self.now;
        let took = self.app_mut(i).on_read(now, data);
        self.rearm(i);
        self.collect();
        took
    }

    /// The backend's FIN.
    fn eof(&mut self, i: usize) {
        let now = self.now;
        self.app_mut(i).on_read_eof(now);
        self.rearm(i);
        self.collect();
    }

    /// The connection went away (reset, or closed after a close()).
    fn gone(&mut self, i: usize) {
        drop(
            self.conns[i]
                .app
                .take()
                .expect("connection is gone already"),
        );
        self.collect();
    }

    fn send_body(&mut self, ex: ExchangeId, data: &[u8]) -> usize {
        let n = self.proxy.send_body(ex, data);
        self.collect();
        n
    }

    fn end_body(&mut self, ex: ExchangeId) {
        self.proxy.end_body(ex, None);
        self.collect();
    }

    fn end_body_with(&mut self, ex: ExchangeId, trailers: Headers) {
        self.proxy.end_body(ex, Some(trailers));
        self.collect();
    }

    fn close(&self, i: usize) -> Close {
        self.app(i).close()
    }

    /// Every response part ready now.
    fn poll(&self, ex: ExchangeId) -> Vec<Result<ResponsePart, ProxyError>> {
        let mut parts = Vec::new();
        while let Some(p) = self.proxy.poll_response(ex) {
            parts.push(p);
        }
        parts
    }

    /// The keys woken since the last call, sorted, once each.
    fn take_wakes(&mut self) -> Vec<WakeKey> {
        let mut w = std::mem::take(&mut self.wakes);
        w.sort_unstable();
        w.dedup();
        w
    }

    fn key(&self, i: usize) -> WakeKey {
        self.conns[i].key
    }
}

// ---- requests, responses and configurations -------------------------------

const BACKEND_A: &str = "198.18.0.10:8080";
const BACKEND_B: &str = "198.18.0.11:8080";

fn ms(n: u64) -> Time {
    Time::from_millis(n)
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

/// One route for everything, to cluster "app" with one backend; `cluster`
/// adds keys (then tables) to the cluster.
fn one_backend(cluster: &str) -> String {
    format!(
        "[proxy]\nrequest_id = false\n\n\
         [[route]]\nprefix = \"/\"\ncluster = \"app\"\n\n\
         [[cluster]]\nname = \"app\"\nendpoints = [\"{BACKEND_A}\"]\n{cluster}\n"
    )
}

/// Like [`one_backend`], with two backends.
fn two_backends(cluster: &str) -> String {
    format!(
        "[proxy]\nrequest_id = false\n\n\
         [[route]]\nprefix = \"/\"\ncluster = \"app\"\n\n\
         [[cluster]]\nname = \"app\"\nendpoints = [\"{BACKEND_A}\", \"{BACKEND_B}\"]\n{cluster}\n"
    )
}

fn request(method: &str, path: &str, body: BodyLen) -> ProxyRequest {
    ProxyRequest {
        method: method.as_bytes().to_vec(),
        path: path.as_bytes().to_vec(),
        authority: Some(b"app.example".to_vec()),
        headers: fields(&[("user-agent", "t/1"), ("traceparent", TRACEPARENT)]),
        body,
        client: Some(addr("203.0.113.7:40000")),
        tls: false,
        version: 11,
        spiffe_id: None,
        tls_handshake: None,
    }
}

/// The client's trace context: the proxy continues the trace with a span
/// of its own (random; [`text`] shows it as `SPAN`).
const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
const TRACE_PREFIX: &str = "\r\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-";

fn get(path: &str) -> ProxyRequest {
    request("GET", path, BodyLen::None)
}

/// The head the proxy sends upstream for [`request`]; `framing` is the
/// Content-Length or Transfer-Encoding line, or "".
fn sent_head(method: &str, path: &str, framing: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nhost: app.example\r\nuser-agent: t/1\r\n\
         x-forwarded-for: 203.0.113.7\r\nx-forwarded-proto: http\r\n\
         traceparent: 00-0af7651916cd43dd8448eb211c80319c-SPAN-01\r\n{framing}\r\n"
    )
}

/// A 200 with a Content-Length body and one end-to-end header.
fn ok(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

type Part = Result<ResponsePart, ProxyError>;

fn fields(pairs: &[(&str, &str)]) -> Headers {
    let mut map = Headers::new();
    for (n, v) in pairs {
        sluice_app::proxy::append(&mut map, n.as_bytes(), v.as_bytes());
    }
    map
}

fn head(status: u16, headers: &[(&str, &str)], body: BodyLen) -> Part {
    Ok(ResponsePart::Head {
        status,
        headers: fields(headers),
        body,
    })
}

fn data(d: &str) -> Part {
    Ok(ResponsePart::Data(d.as_bytes().to_vec()))
}

fn end() -> Part {
    Ok(ResponsePart::End)
}

/// The parts of [`ok`]`(body)`.
fn ok_parts(body: &str) -> Vec<Part> {
    vec![
        head(
            200,
            &[("Content-Type", "text/plain")],
            BodyLen::Length(body.len() as u64),
        ),
        data(body),
        end(),
    ]
}

/// Bytes as text, for readable comparisons; the proxy's span id in the
/// client's trace (checked: 16 lowercase hex digits, not zero, not the
/// client's) reads `SPAN`.
fn text(b: &[u8]) -> String {
    let mut s = String::from_utf8_lossy(b).into_owned();
    if let Some(at) = s.find(TRACE_PREFIX) {
        let from = at + TRACE_PREFIX.len();
        let span = s.get(from..from + 16).unwrap_or_default().to_string();
        let hex = span
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c));
        assert!(
            span.len() == 16 && hex && span != "0000000000000000" && span != "b7ad6b7169203331",
            "a new span id: {span:?}"
        );
        s.replace_range(from..from + 16, "SPAN");
    }
    s
}

/// Decodes a chunked body (strictly: lowercase hex sizes, CRLFs): the
/// data, and whether the last chunk and the final CRLF ended it.
fn dechunk(mut b: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    while !b.is_empty() {
        let eol = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("a chunk size line");
        let size = std::str::from_utf8(&b[..eol]).expect("ascii size");
        assert!(
            !size.is_empty()
                && size
                    .bytes()
                    .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)),
            "chunk size {size:?}"
        );
        let size = usize::from_str_radix(size, 16).expect("hex size");
        b = &b[eol + 2..];
        if size == 0 {
            assert_eq!(text(b), "\r\n", "the last chunk ends the body");
            return (out, true);
        }
        out.extend_from_slice(&b[..size]);
        assert_eq!(text(&b[size..size + 2]), "\r\n", "CRLF after chunk data");
        b = &b[size + 2..];
    }
    (out, false)
}

/// Serves one GET on connection `c`: writes the request (checked) and
/// answers `body`; the exchange's parts are checked.
fn serve(h: &mut Harness, c: usize, ex: ExchangeId, path: &str, body: &str) {
    assert_eq!(text(&h.write(c)), sent_head("GET", path, ""));
    let resp = ok(body);
    assert_eq!(h.read(c, &resp), resp.len());
    assert_eq!(h.poll(ex), ok_parts(body));
}

// ---- 1. a GET, and a second on the same connection -------------------------

#[test]
fn get_is_proxied_and_the_connection_reused() {
    let mut h = Harness::new(&one_backend(""));
    let mut req = get("/x?y=1");
    req.headers = fields(&[
        ("user-agent", "t/1"),
        ("X-Forwarded-For", "198.51.100.1"),
        // A client must not set it: the proxy says what the client used.
        ("X-Forwarded-Proto", "https"),
        ("traceparent", TRACEPARENT),
        ("accept", "*/*"),
    ]);
    let ex = h.start(req, 1);
    assert_eq!(h.proxy.poll_response(ex), None);
    assert!(!h.proxy.response_ready(ex));

    let (up, to) = h.take_connect();
    assert_eq!(to, addr(BACKEND_A));
    let c = h.open(up, to);
    assert!(
        h.take_wakes().contains(&h.key(c)),
        "the new connection is pumped"
    );
    assert!(h.app(c).wants_write());
    assert_eq!(
        text(&h.write(c)),
        "GET /x?y=1 HTTP/1.1\r\nhost: app.example\r\nuser-agent: t/1\r\naccept: */*\r\n\
         x-forwarded-for: 198.51.100.1, 203.0.113.7\r\nx-forwarded-proto: http\r\n\
         traceparent: 00-0af7651916cd43dd8448eb211c80319c-SPAN-01\r\n\r\n"
    );
    assert!(h.app(c).wants_read());
    assert!(!h.app(c).is_idle());
    assert_eq!(
        h.app(c).deadline(),
        None,
        "a busy connection has no idle deadline"
    );

    h.set(ms(3));
    let resp = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello";
    assert_eq!(h.read(c, resp), resp.len());
    assert!(
        h.take_wakes().contains(&WakeKey(1)),
        "the downstream is woken"
    );
    assert!(h.proxy.response_ready(ex));
    assert_eq!(h.poll(ex), ok_parts("hello"));
    assert_eq!(h.proxy.poll_response(ex), None, "the exchange is over");

    assert!(h.app(c).is_idle());
    assert_eq!(h.close(c), Close::No);
    let s = h.proxy.stats();
    assert_eq!(
        (s.upstream_idle, s.upstream_open, s.active_exchanges),
        (1, 1, 0)
    );

    h.set(ms(10));
    let ex2 = h.start(get("/second"), 2);
    assert!(h.connects.is_empty(), "no second connect: {:?}", h.connects);
    assert!(h.take_wakes().contains(&h.key(c)));
    serve(&mut h, c, ex2, "/second", "again");

    let s = h.proxy.stats();
    assert_eq!(s.requests, 2);
    assert_eq!(s.responses_2xx, 2);
    assert_eq!(s.upstream_connects, 1);
    assert_eq!(s.upstream_reuses, 1);
    assert_eq!(h.connects_seen, 1);
    assert_eq!(s.upstream_idle, 1);
}

// ---- 2. pool limit ---------------------------------------------------------

#[test]
fn pool_limit_queues_requests_and_serves_them_in_order() {
    let mut h = Harness::new(&one_backend("[cluster.pool]\nmax_connections = 2\n"));
    let ex: Vec<ExchangeId> = (0..5)
        .map(|i| h.start(get(&format!("/{i}")), i + 1))
        .collect();
    assert_eq!(h.connects.len(), 2, "{:?}", h.connects);
    let (u0, a0) = h.connects.remove(0);
    let (u1, a1) = h.connects.remove(0);
    let c0 = h.open(u0, a0);
    let c1 = h.open(u1, a1);
    assert_eq!(text(&h.write(c0)), sent_head("GET", "/0", ""));
    assert_eq!(text(&h.write(c1)), sent_head("GET", "/1", ""));
    for e in &ex[2..] {
        assert!(!h.proxy.response_ready(*e), "waits for a connection");
    }
    assert_eq!(h.proxy.stats().active_exchanges, 5);

    // Each response frees its connection for the next waiting request.
    let order = [(c0, 0), (c1, 1), (c0, 2), (c1, 3), (c0, 4)];
    for (k, &(c, i)) in order.iter().enumerate() {
        let body = format!("r{i}");
        let resp = ok(&body);
        assert_eq!(h.read(c, &resp), resp.len());
        assert_eq!(h.poll(ex[i]), ok_parts(&body));
        if let Some(&(next_c, next_i)) = order.get(k + 2) {
            assert_eq!(next_c, c);
            assert_eq!(
                text(&h.write(c)),
                sent_head("GET", &format!("/{next_i}"), ""),
                "request {next_i} goes out on the freed connection"
            );
        } else {
            assert!(h.write(c).is_empty());
        }
    }
    assert!(h.connects.is_empty());
    let s = h.proxy.stats();
    assert_eq!(s.upstream_connects, 2);
    assert_eq!(s.upstream_reuses, 3);
    assert_eq!(s.responses_2xx, 5);
    assert_eq!((s.upstream_idle, s.active_exchanges), (2, 0));
}

// ---- 3. pending overflow ---------------------------------------------------

#[test]
fn pending_overflow_is_a_fast_503() {
    let mut h = Harness::new(&one_backend(
        "[cluster.breaker]\nmax_pending_requests = 1\n",
    ));
    let first = h.start(get("/a"), 1);
    let (up, to) = h.take_connect();
    let second = h.start(get("/b"), 2);
    assert!(h.take_wakes().contains(&WakeKey(2)));
    assert_eq!(h.poll(second), vec![Err(ProxyError::Overflow)]);
    assert_eq!(ProxyError::Overflow.status(), 503);
    assert!(h.connects.is_empty(), "no connect for the refused request");
    assert_eq!(h.proxy.stats().overflows, 1);

    // The first one goes on; once it left the queue, there is room again.
    let c = h.open(up, to);
    serve(&mut h, c, first, "/a", "a");
    let third = h.start(get("/c"), 3);
    serve(&mut h, c, third, "/c", "c");
    assert_eq!(h.proxy.stats().overflows, 1);
}

// ---- 4. connect failures ---------------------------------------------------

#[test]
fn connect_failure_moves_to_the_other_backend_or_fails() {
    let mut h = Harness::new(&two_backends(""));
    let ex = h.start(get("/x"), 1);
    let (up, first) = h.take_connect();
    h.proxy.connect_failed(h.now, up);
    h.collect();
    assert_eq!(
        h.proxy.poll_response(ex),
        None,
        "not failed: there is another backend"
    );
    let (up2, second) = h.advance_until_connect(Duration::from_millis(300));
    assert_ne!(first, second, "the retry goes to the other backend");
    assert!([addr(BACKEND_A), addr(BACKEND_B)].contains(&second));
    let c = h.open(up2, second);
    assert_eq!(h.conns[c].addr, second);
    serve(&mut h, c, ex, "/x", "ok");
    let s = h.proxy.stats();
    assert_eq!(s.retries, 1);
    assert_eq!(s.connect_failures, 1);
    assert_eq!(s.upstream_connects, 2);

    // One backend: nowhere else to go.
    let mut h = Harness::new(&one_backend(""));
    let ex = h.start(get("/x"), 1);
    let mut failed = 0;
    let mut next = h.take_connect();
    let result = loop {
        let (up, to) = next;
        assert_eq!(to, addr(BACKEND_A));
        h.proxy.connect_failed(h.now, up);
        h.collect();
        failed += 1;
        if let Some(r) = h.proxy.poll_response(ex) {
            break r;
        }
        // Only the same backend to try again (after a backoff).
        assert!(failed < 2, "route retries = 1: at most two tries");
        next = h.advance_until_connect(Duration::from_millis(300));
    };
    assert_eq!(result, Err(ProxyError::ConnectFailed));
    assert_eq!(ProxyError::ConnectFailed.status(), 502);
    assert_eq!(h.proxy.poll_response(ex), None);
    assert_eq!(h.proxy.stats().connect_failures, failed);
    assert!(h.connects.is_empty());
}

// ---- 5. connect timeout ----------------------------------------------------

#[test]
fn connect_timeout_aborts_the_connect_and_moves_on() {
    let mut h = Harness::new(&two_backends("connect_timeout = \"250ms\""));
    let ex = h.start(get("/x"), 1);
    let (up, first) = h.take_connect();
    h.advance(ms(249));
    assert!(h.aborts.is_empty(), "not before the connect timeout");
    assert_eq!(h.proxy.poll_response(ex), None);
    h.advance(ms(250));
    assert_eq!(std::mem::take(&mut h.aborts), vec![up]);
    assert!(
        h.proxy.connected(h.now, up, WakeKey(999)).is_none(),
        "the proxy gave up on it: a late SYN-ACK gets no app"
    );
    assert_eq!(
        h.proxy.poll_response(ex),
        None,
        "the other backend is tried"
    );

    let (up2, second) = h.advance_until_connect(Duration::from_millis(300));
    assert_ne!(second, first);
    let t = h.now;
    h.advance(t + Duration::from_millis(249));
    assert!(h.aborts.is_empty());
    h.advance(t + Duration::from_millis(250));
    assert_eq!(std::mem::take(&mut h.aborts), vec![up2]);
    assert!(h.take_wakes().contains(&WakeKey(1)));
    assert_eq!(h.poll(ex), vec![Err(ProxyError::ConnectFailed)]);
    let s = h.proxy.stats();
    assert_eq!((s.connect_failures, s.retries), (2, 1));
    assert_eq!((s.upstream_open, s.active_exchanges), (0, 0));
}

// ---- 6. route timeout ------------------------------------------------------

#[test]
fn route_timeout_fails_the_exchange_and_aborts_its_connection() {
    let toml = format!(
        "[proxy]\nrequest_id = false\n\n\
         [[route]]\nprefix = \"/\"\ncluster = \"app\"\ntimeout = \"500ms\"\n\n\
         [[cluster]]\nname = \"app\"\nendpoints = [\"{BACKEND_A}\"]\n"
    );
    let mut h = Harness::new(&toml);
    let ex = h.start(get("/slow"), 1);
    let c = h.connect();
    assert_eq!(text(&h.write(c)), sent_head("GET", "/slow", ""));
    assert_eq!(h.proxy.next_deadline(), Some(ms(500)));

    h.advance(ms(499));
    assert_eq!(h.proxy.poll_response(ex), None, "not before 500 ms");
    assert_eq!(h.close(c), Close::No);
    h.take_wakes();

    h.advance(ms(500));
    let w = h.take_wakes();
    assert!(w.contains(&WakeKey(1)) && w.contains(&h.key(c)), "{w:?}");
    assert_eq!(h.poll(ex), vec![Err(ProxyError::Timeout)]);
    assert_eq!(ProxyError::Timeout.status(), 504);
    assert_eq!(h.close(c), Close::Abort);
    assert_eq!(h.proxy.stats().timeouts, 1);

    // A late answer goes nowhere.
    let late = ok("late");
    assert_eq!(h.read(c, &late), late.len());
    assert_eq!(h.proxy.poll_response(ex), None);
    h.gone(c);
    assert_eq!(h.proxy.stats().upstream_open, 0);
}

// ---- 7. requests the backend never saw ------------------------------------

#[test]
fn requests_never_sent_go_to_a_new_connection() {
    let mut h = Harness::new(&one_backend(""));
    let ex = h.start(get("/1"), 1);
    let c0 = h.connect();
    serve(&mut h, c0, ex, "/1", "one");

    // The backend closes the idle connection: it leaves the pool.
    h.set(ms(100));
    h.eof(c0);
    assert_eq!(h.close(c0), Close::Graceful);
    assert_eq!(h.proxy.stats().upstream_idle, 0);
    assert!(h.write(c0).is_empty());
    let ex = h.start(get("/2"), 2);
    let c1 = h.connect();
    assert_eq!(h.connects_seen, 2);
    h.gone(c0);
    serve(&mut h, c1, ex, "/2", "two");
    assert_eq!(h.proxy.stats().upstream_reuses, 0);

    // A request handed to an idle connection whose FIN arrives before a
    // byte of the request was written goes to a new connection.
    h.set(ms(200));
    let ex = h.start(get("/3"), 3);
    assert!(h.connects.is_empty(), "given the idle connection");
    h.eof(c1);
    assert_eq!(h.proxy.poll_response(ex), None, "not failed: never sent");
    let (up, to) = h.advance_until_connect(Duration::from_millis(300));
    let c2 = h.open(up, to);
    serve(&mut h, c2, ex, "/3", "three");
    assert_eq!(h.proxy.stats().upstream_resets, 0);
    assert_eq!(h.close(c1), Close::Graceful);

    // It went out on the new connection only: the closed one, which the
    // service still flushes before its FIN, must not send it as well.
    let late = h.write(c1);
    assert!(
        late.is_empty(),
        "the moved request also goes out on the closed connection: {:?}",
        text(&late)
    );
    assert!(!h.app(c1).wants_write());
}

// ---- 8. reset after the request was written --------------------------------

#[test]
fn reset_before_any_response_byte_retries_idempotent_requests_once() {
    let mut h = Harness::new(&one_backend(""));
    let ex = h.start(get("/idem"), 1);
    let c0 = h.connect();
    assert_eq!(text(&h.write(c0)), sent_head("GET", "/idem", ""));
    h.set(ms(5));
    h.gone(c0);
    assert_eq!(h.proxy.poll_response(ex), None, "retried");
    let (up, to) = h.advance_until_connect(Duration::from_millis(300));
    let c1 = h.open(up, to);
    assert_eq!(text(&h.write(c1)), sent_head("GET", "/idem", ""));
    assert_eq!(h.proxy.stats().retries, 1);
    h.gone(c1);
    assert_eq!(h.poll(ex), vec![Err(ProxyError::UpstreamReset)]);
    h.advance(ms(1000));
    assert!(h.connects.is_empty(), "route retries = 1: one retry only");
    let s = h.proxy.stats();
    assert_eq!((s.retries, s.upstream_resets), (1, 1));

    // A POST with a body may have been processed: never retried.
    let mut h = Harness::new(&one_backend(""));
    let ex = h.start(request("POST", "/submit", BodyLen::Length(3)), 1);
    assert_eq!(h.send_body(ex, b"abc"), 3);
    h.end_body(ex);
    let c0 = h.connect();
    assert_eq!(
        text(&h.write(c0)),
        sent_head("POST", "/submit", "Content-Length: 3\r\n") + "abc"
    );
    h.set(ms(5));
    h.gone(c0);
    assert_eq!(h.poll(ex), vec![Err(ProxyError::UpstreamReset)]);
    h.advance(ms(1000));
    assert!(h.connects.is_empty(), "not retried");
    let s = h.proxy.stats();
    assert_eq!((s.retries, s.upstream_resets), (0, 1));
}

// ---- 9. response cut ---------------------------------------------------------

#[test]
fn response_cut_after_the_head_is_an_upstream_reset() {
    let mut h = Harness::new(&one_backend(""));
    let ex = h.start(get("/cut"), 1);
    let c = h.connect();
    h.write(c);
    let part = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello";
    assert_eq!(h.read(c, part), part.len());
    assert_eq!(
        h.poll(ex),
        vec![head(200, &[], BodyLen::Length(10)), data("hello")]
    );
    h.take_wakes();
    h.eof(c);
    assert!(h.take_wakes().contains(&WakeKey(1)));
    assert_eq!(h.poll(ex), vec![Err(ProxyError::UpstreamReset)]);
    assert_eq!(h.proxy.poll_response(ex), None);
    assert_ne!(h.close(c), Close::No);
    h.advance(ms(1000));
    assert!(h.connects.is_empty(), "a started response is never retried");
    let s = h.proxy.stats();
    assert_eq!((s.upstream_resets, s.retries), (1, 0));
}

// ---- 10. response backpressure ----------------------------------------------

#[test]
fn response_backpressure_stops_reading_until_the_downstream_polls() {
    const READ: usize = 16 * 1024;
    let mut h = Harness::new(&one_backend(""));
    let ex = h.start(get("/big"), 1);
    let c = h.connect();
    h.write(c);
    let up_key = h.key(c);
    let body: Vec<u8> = (0..RESPONSE_BUFFER + 100_000)
        .map(|i| (i % 251) as u8)
        .collect();
    let resp_head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
    h.take_wakes();
    assert_eq!(h.read(c, resp_head.as_bytes()), resp_head.len());
    let mut fed = 0;
    loop {
        let chunk = &body[fed..(fed + READ).min(body.len())];
        let took = h.read(c, chunk);
        fed += took;
        if took < chunk.len() {
            break;
        }
        assert!(fed < body.len(), "took the whole response: no backpressure");
    }
    assert!(
        (RESPONSE_BUFFER..RESPONSE_BUFFER + READ).contains(&fed),
        "took {fed}"
    );
    assert!(!h.app(c).wants_read());
    assert_eq!(h.read(c, &body[fed..fed + 1]), 0);
    assert!(!h.take_wakes().contains(&up_key));

    assert_eq!(
        h.proxy.poll_response(ex),
        Some(head(200, &[], BodyLen::Length(body.len() as u64)))
    );
    let mut got = Vec::new();
    let mut buffered = fed;
    loop {
        let Some(Ok(ResponsePart::Data(d))) = h.proxy.poll_response(ex) else {
            panic!("a data part");
        };
        buffered -= d.len();
        got.extend_from_slice(&d);
        h.collect();
        let woken = h.take_wakes().contains(&up_key);
        if buffered < RESPONSE_BUFFER / 2 {
            assert!(woken, "below half the buffer: the upstream is woken");
            break;
        }
        assert!(!woken, "woken with {buffered} bytes still buffered");
    }
    assert!(h.app(c).wants_read());

    // The rest flows, the downstream polling along.
    let mut done = false;
    while !done {
        if fed < body.len() {
            fed += h.read(c, &body[fed..(fed + READ).min(body.len())]);
        }
        while let Some(p) = h.proxy.poll_response(ex) {
            match p {
                Ok(ResponsePart::Data(d)) => got.extend_from_slice(&d),
                Ok(ResponsePart::End) => done = true,
                other => panic!("{other:?}"),
            }
        }
    }
    assert_eq!(fed, body.len());
    assert_eq!(got.len(), body.len());
    assert!(got == body, "the body arrives byte for byte");
    assert!(h.app(c).is_idle());
}

// ---- 11. request body streaming -----------------------------------------------

#[test]
fn request_body_streams_with_backpressure_and_chunked_framing() {
    let mut h = Harness::new(&one_backend(""));
    let ex = h.start(request("POST", "/upload", BodyLen::Streamed), 1);
    let c = h.connect();
    assert_eq!(
        text(&h.write(c)),
        sent_head("POST", "/upload", "Transfer-Encoding: chunked\r\n")
    );
    h.take_wakes();
    assert_eq!(h.send_body(ex, b"hello"), 5);
    assert!(h.take_wakes().contains(&h.key(c)), "the upstream is pumped");
    assert_eq!(text(&h.write(c)), "5\r\nhello\r\n");

    let big: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    assert_eq!(h.send_body(ex, &big), REQUEST_BODY_BUFFER);
    assert_eq!(
        h.send_body(ex, &big[REQUEST_BODY_BUFFER..]),
        0,
        "the exchange's buffer is full"
    );
    assert!(!h.take_wakes().contains(&WakeKey(1)));
    let out = h.write(c);
    assert!(
        h.take_wakes().contains(&WakeKey(1)),
        "room again: the downstream is woken"
    );
    let (sent, ended) = dechunk(&out);
    assert!(!ended);
    assert!(
        sent == big[..REQUEST_BODY_BUFFER],
        "first part, byte for byte"
    );

    assert_eq!(
        h.send_body(ex, &big[REQUEST_BODY_BUFFER..]),
        big.len() - REQUEST_BODY_BUFFER
    );
    let out = h.write(c);
    let (sent, ended) = dechunk(&out);
    assert!(!ended, "no last chunk before end_body");
    assert!(
        sent == big[REQUEST_BODY_BUFFER..],
        "second part, byte for byte"
    );
    h.end_body(ex);
    assert!(h.take_wakes().contains(&h.key(c)));
    assert_eq!(text(&h.write(c)), "0\r\n\r\n");
    assert!(h.write(c).is_empty());

    let resp = b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(h.read(c, resp), resp.len());
    assert_eq!(h.poll(ex), vec![head(201, &[], BodyLen::Length(0)), end()]);
    assert!(h.app(c).is_idle());
    assert_eq!(h.proxy.stats().upstream_idle, 1);
}

#[test]
fn request_trailers_end_a_chunked_body_upstream() {
    let mut h = Harness::new(&one_backend(""));
    let ex = h.start(request("POST", "/upload", BodyLen::Streamed), 1);
    assert_eq!(h.send_body(ex, b"abc"), 3);
    // Fields that frame or route a message never travel as trailers.
    h.end_body_with(
        ex,
        fields(&[
            ("x-checksum", "abc"),
            ("content-length", "9"),
            ("host", "b"),
        ]),
    );
    let c = h.connect();
    assert_eq!(
        text(&h.write(c)),
        sent_head("POST", "/upload", "Transfer-Encoding: chunked\r\n")
            + "3\r\nabc\r\n0\r\nx-checksum: abc\r\n\r\n"
    );

    // With a Content-Length there is no place for them in HTTP/1.1.
    let mut h = Harness::new(&one_backend(""));
    let ex = h.start(request("POST", "/upload", BodyLen::Length(3)), 1);
    assert_eq!(h.send_body(ex, b"abc"), 3);
    h.end_body_with(ex, fields(&[("x-checksum", "abc")]));
    let c = h.connect();
    assert_eq!(
        text(&h.write(c)),
        sent_head("POST", "/upload", "Content-Length: 3\r\n") + "abc"
    );
}

// ---- 12. keep-alive and Connection: close from the backend ------------------

#[test]
fn connection_close_from_the_backend_ends_reuse() {
    let mut h = Harness::new(&one_backend(""));
    let ex = h.start(get("/1"), 1);
    let c0 = h.connect();
    h.write(c0);
    let resp = b"HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5, max=100\r\nServer: b\r\nContent-Length: 2\r\n\r\nok";
    assert_eq!(h.read(c0, resp), resp.len());
    assert_eq!(
        h.poll(ex),
        vec![
            head(200, &[("Server", "b")], BodyLen::Length(2)),
            data("ok"),
            end()
        ]
    );
    assert_eq!(h.close(c0), Close::No, "keep-alive: reusable");

    let ex = h.start(get("/2"), 2);
    assert!(h.connects.is_empty(), "reused");
    assert_eq!(text(&h.write(c0)), sent_head("GET", "/2", ""));
    let resp = b"HTTP/1.1 200 OK\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\nServer: b\r\nContent-Length: 2\r\n\r\nok";
    assert_eq!(h.read(c0, resp), resp.len());
    assert_eq!(
        h.poll(ex),
        vec![
            head(200, &[("Server", "b")], BodyLen::Length(2)),
            data("ok"),
            end()
        ]
    );
    assert_eq!(h.close(c0), Close::Graceful);
    assert!(!h.app(c0).wants_write());
    assert_eq!(h.proxy.stats().upstream_idle, 0);

    let ex = h.start(get("/3"), 3);
    let c1 = h.connect();
    serve(&mut h, c1, ex, "/3", "three");
    let s = h.proxy.stats();
    assert_eq!((s.upstream_connects, s.upstream_reuses), (2, 1));
}

// ---- 13. cancel -----------------------------------------------------------------

#[test]
fn cancel_mid_response_aborts_the_connection() {
    let mut h = Harness::new(&one_backend(""));
    let ex = h.start(get("/long"), 1);
    let c = h.connect();
    h.write(c);
    let part = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial";
    assert_eq!(h.read(c, part), part.len());
    assert_eq!(
        h.poll(ex),
        vec![head(200, &[], BodyLen::Length(100)), data("partial")]
    );
    h.take_wakes();
    h.proxy.cancel(ex);
    h.collect();
    assert_eq!(h.close(c), Close::Abort);
    assert!(h.take_wakes().contains(&h.key(c)));
    assert_eq!(h.proxy.poll_response(ex), None, "the exchange is gone");
    assert_eq!(h.proxy.stats().active_exchanges, 0);
    let rest = [b'x'; 93];
    assert_eq!(h.read(c, &rest), rest.len(), "the rest is dropped");
    assert_eq!(h.proxy.poll_response(ex), None);

    // The aborted connection is not offered again.
    let ex = h.start(get("/next"), 2);
    let c1 = h.connect();
    serve(&mut h, c1, ex, "/next", "n");
    h.gone(c);
    assert_eq!(h.proxy.stats().upstream_open, 1);
}

// ---- 14. idle timeouts --------------------------------------------------------------

#[test]
fn idle_connection_closes_at_its_idle_timeout() {
    let mut h = Harness::new(&one_backend("idle_timeout = \"10s\""));
    let ex = h.start(get("/1"), 1);
    let c = h.connect();
    h.set(ms(100));
    serve(&mut h, c, ex, "/1", "one");
    assert_eq!(h.app(c).deadline(), Some(ms(10_100)));

    h.set(ms(10_099));
    h.app_mut(c).on_timeout(ms(10_099));
    assert_eq!(h.close(c), Close::No, "not before the idle timeout");
    assert_eq!(h.app(c).deadline(), Some(ms(10_100)));

    h.advance(ms(10_100));
    assert_eq!(h.close(c), Close::Graceful);
    assert_eq!(h.app(c).deadline(), None);
    let s = h.proxy.stats();
    assert_eq!((s.upstream_idle_closes, s.upstream_idle), (1, 0));

    let ex = h.start(get("/2"), 2);
    let c1 = h.connect();
    h.gone(c);
    serve(&mut h, c1, ex, "/2", "two");
    assert_eq!(h.proxy.stats().upstream_reuses, 0);
}

/// A backend that says `Keep-Alive: timeout=5` closes idle connections
/// after 5 s: the pool stays a second below, never above its own setting.
#[test]
fn the_backends_keep_alive_timeout_shortens_the_idle_timeout() {
    let mut h = Harness::new(&one_backend("idle_timeout = \"10s\""));
    let ex = h.start(get("/1"), 1);
    let c = h.connect();
    h.set(ms(100));
    assert_eq!(text(&h.write(c)), sent_head("GET", "/1", ""));
    let resp = b"HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5, max=100\r\nContent-Length: 2\r\n\r\nok";
    assert_eq!(h.read(c, resp), resp.len());
    let parts = h.poll(ex);
    assert!(
        matches!(parts.last(), Some(Ok(ResponsePart::End))),
        "{parts:?}"
    );
    assert_eq!(h.app(c).deadline(), Some(ms(4_100)));
    // A longer announcement does not stretch our own setting.
    let ex = h.start(get("/2"), 2);
    assert_eq!(text(&h.write(c)), sent_head("GET", "/2", ""));
    let resp = b"HTTP/1.1 200 OK\r\nKeep-Alive: timeout=600\r\nContent-Length: 2\r\n\r\nok";
    assert_eq!(h.read(c, resp), resp.len());
    let _ = h.poll(ex);
    assert_eq!(h.app(c).deadline(), Some(ms(4_100)));
}

#[test]
fn idle_connections_beyond_max_idle_are_trimmed_least_recently_used_first() {
    let mut h = Harness::new(&one_backend(
        "idle_timeout = \"10s\"\n[cluster.pool]\nmax_connections = 3\nmax_idle = 1",
    ));
    let ex: Vec<ExchangeId> = (0..3)
        .map(|i| h.start(get(&format!("/{i}")), i + 1))
        .collect();
    assert_eq!(h.connects.len(), 3);
    let cs: Vec<usize> = (0..3)
        .map(|_| {
            let (up, to) = h.connects.remove(0);
            h.open(up, to)
        })
        .collect();
    for (i, &c) in cs.iter().enumerate() {
        assert_eq!(text(&h.write(c)), sent_head("GET", &format!("/{i}"), ""));
    }
    // They go idle at 1 s, 1.5 s and 2 s (within IDLE_TRIM of each other:
    // a connection idle beyond max_idle for IDLE_TRIM is closed).
    for (i, &c) in cs.iter().enumerate() {
        h.advance(ms(1000 + 500 * i as u64));
        let resp = ok("x");
        assert_eq!(h.read(c, &resp), resp.len());
        assert_eq!(h.poll(ex[i]), ok_parts("x"));
    }
    assert_eq!(h.proxy.stats().upstream_idle, 3);
    assert_eq!(
        h.app(cs[0]).deadline(),
        Some(ms(1000) + IDLE_TRIM),
        "beyond max_idle: the short trim deadline"
    );
    assert!(IDLE_TRIM < Duration::from_secs(10));

    // The service re-reads a connection's deadline when it calls its app
    // or when the proxy wakes it.
    h.advance(ms(2000) + IDLE_TRIM);
    let closes: Vec<Close> = cs.iter().map(|&c| h.close(c)).collect();
    assert_eq!(
        closes,
        vec![Close::Graceful, Close::Graceful, Close::No],
        "the two least recently used are trimmed, the warmest one is kept"
    );
    let s = h.proxy.stats();
    assert_eq!((s.upstream_idle_closes, s.upstream_idle), (2, 1));
    assert_eq!(
        h.app(cs[2]).deadline(),
        Some(ms(2000) + Duration::from_secs(10)),
        "within max_idle: the idle timeout"
    );
    let ex = h.start(get("/again"), 9);
    assert!(h.connects.is_empty());
    serve(&mut h, cs[2], ex, "/again", "y");
}

// ---- 15. no route ---------------------------------------------------------------------

#[test]
fn request_matching_no_route_gets_no_healthy_backend() {
    let toml = format!(
        "[proxy]\nrequest_id = false\n\n\
         [[route]]\nprefix = \"/api\"\ncluster = \"app\"\n\n\
         [[cluster]]\nname = \"app\"\nendpoints = [\"{BACKEND_A}\"]\n"
    );
    let mut h = Harness::new(&toml);
    assert!(h.proxy.matches(Some(b"app.example"), b"GET", b"/api/x"));
    assert!(!h.proxy.matches(Some(b"app.example"), b"GET", b"/other"));
    let ex = h.start(get("/other"), 1);
    assert!(h.take_wakes().contains(&WakeKey(1)));
    assert!(h.proxy.response_ready(ex));
    assert_eq!(h.poll(ex), vec![Err(ProxyError::NoHealthyBackend)]);
    assert_eq!(ProxyError::NoHealthyBackend.status(), 503);
    assert!(h.connects.is_empty());
    let s = h.proxy.stats();
    assert_eq!((s.no_backend, s.active_exchanges), (1, 0));
}

// ---- further findings ------------------------------------------------------------

/// `wants_write` is "poll_write has bytes (or may produce some) now": once
/// the whole request is out, nothing more will come until the next one.
/// (The TCP service counts a connection whose app wants to write but
/// writes nothing towards its send timeout, and does not FIN it.)
#[test]
fn wants_write_is_false_once_the_request_is_out() {
    let mut h = Harness::new(&one_backend(""));
    let ex = h.start(get("/x"), 1);
    let c = h.connect();
    assert!(h.app(c).wants_write());
    assert_eq!(text(&h.write(c)), sent_head("GET", "/x", ""));
    assert!(
        !h.app(c).wants_write(),
        "a GET that is written has nothing more to write"
    );

    let ex2 = h.start(request("POST", "/p", BodyLen::Length(2)), 2);
    serve_body(&mut h, c, ex, ex2);
    assert!(
        !h.app(c).wants_write(),
        "a POST whose body is written has nothing more to write"
    );
}

/// Finishes `ex` on `c` and writes `post` (a 2-byte POST) after it.
fn serve_body(h: &mut Harness, c: usize, ex: ExchangeId, post: ExchangeId) {
    let resp = ok("x");
    assert_eq!(h.read(c, &resp), resp.len());
    assert_eq!(h.poll(ex), ok_parts("x"));
    assert_eq!(h.send_body(post, b"hi"), 2);
    h.end_body(post);
    assert_eq!(
        text(&h.write(c)),
        sent_head("POST", "/p", "Content-Length: 2\r\n") + "hi"
    );
}

#[test]
fn malformed_response_is_a_502_counted_once() {
    let mut h = Harness::new(&one_backend(""));
    let ex = h.start(get("/x"), 1);
    let c = h.connect();
    h.write(c);
    let bad = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
    assert_eq!(h.read(c, bad), bad.len());
    assert_eq!(h.poll(ex), vec![Err(ProxyError::BadResponse)]);
    assert_eq!(ProxyError::BadResponse.status(), 502);
    assert_eq!(h.close(c), Close::Abort);
    assert_eq!(h.proxy.stats().bad_responses, 1, "one bad response");
}

/// A backend answers an idle keep-alive connection with a 408 and closes
/// it. The connection is aborted; until the service has dropped its app,
/// a new request must not be handed to it.
#[test]
fn idle_connection_that_sent_unsolicited_bytes_is_not_reused() {
    let mut h = Harness::new(&one_backend(""));
    let ex = h.start(get("/1"), 1);
    let c0 = h.connect();
    serve(&mut h, c0, ex, "/1", "one");
    h.set(ms(50));
    let unsolicited =
        b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(h.read(c0, unsolicited), unsolicited.len());
    assert_ne!(h.close(c0), Close::No);
    assert_eq!(
        h.proxy.stats().upstream_idle,
        0,
        "a closing connection is not idle in the pool"
    );
    let ex = h.start(get("/2"), 2);
    assert_eq!(h.proxy.poll_response(ex), None, "not failed");
    let c1 = h.connect();
    serve(&mut h, c1, ex, "/2", "two");
}

#[test]
fn grpc_timeouts_parse_and_format() {
    let h = |v: &str| fields(&[("grpc-timeout", v)]);
    assert_eq!(grpc_timeout(&h("1S")), Some(Duration::from_secs(1)));
    assert_eq!(grpc_timeout(&h("250m")), Some(Duration::from_millis(250)));
    assert_eq!(grpc_timeout(&h("2H")), Some(Duration::from_secs(7200)));
    assert_eq!(grpc_timeout(&h("123456789S")), None, "9 digits");
    assert_eq!(grpc_timeout(&h("S")), None);
    assert_eq!(grpc_timeout(&h("10x")), None);
    assert_eq!(grpc_timeout(&Headers::new()), None);
    assert_eq!(
        format_grpc_timeout(Duration::from_millis(250)),
        b"250000u".to_vec()
    );
    assert_eq!(
        format_grpc_timeout(Duration::from_secs(100)),
        b"100000m".to_vec()
    );
    assert_eq!(
        format_grpc_timeout(Duration::from_secs(1_000_000)),
        b"1000000S".to_vec()
    );
    assert_eq!(format_grpc_timeout(Duration::ZERO), b"1n".to_vec());
    for d in [1u64, 999, 123_456_789, 3_600_000_000_000] {
        let d = Duration::from_nanos(d);
        let back = grpc_timeout(&h(std::str::from_utf8(&format_grpc_timeout(d)).unwrap())).unwrap();
        assert!(
            back <= d && d - back < d / 1000 + Duration::from_nanos(1),
            "{d:?} {back:?}"
        );
    }
}

/// `per_try_timeout`: a try with no response head in time is abandoned
/// (its connection reset) and an idempotent request tries again.
#[test]
fn a_slow_try_is_abandoned_and_retried() {
    let toml = format!(
        "[proxy]\nrequest_id = false\n\n\
         [[route]]\nprefix = \"/\"\ncluster = \"app\"\ntimeout = \"5s\"\nper_try_timeout = \"200ms\"\n\n\
         [[cluster]]\nname = \"app\"\nendpoints = [\"{BACKEND_A}\", \"{BACKEND_B}\"]\n"
    );
    let mut h = Harness::new(&toml);
    let ex = h.start(get("/slow"), 1);
    let c0 = h.connect();
    assert_eq!(text(&h.write(c0)), sent_head("GET", "/slow", ""));
    h.advance(ms(199));
    assert_eq!(h.close(c0), Close::No, "not before the per-try timeout");
    h.advance(ms(200));
    assert_eq!(h.close(c0), Close::Abort);
    let (up, to) = h.advance_until_connect(Duration::from_millis(300));
    let c1 = h.open(up, to);
    serve(&mut h, c1, ex, "/slow", "late but fine");
    assert_eq!(h.proxy.stats().retries, 1);
}

// ---- retried statuses ----------------------------------------------------

/// One backend; the route retries on `retry_on`.
fn retrying(retry_on: &str) -> String {
    format!(
        "[proxy]\nrequest_id = false\n\n\
         [[route]]\nprefix = \"/\"\ncluster = \"app\"\nretries = 1\nretry_on = [{retry_on}]\n\n\
         [[cluster]]\nname = \"app\"\nendpoints = [\"{BACKEND_A}\"]\n"
    )
}

#[test]
fn a_retriable_503_goes_to_another_try_and_the_connection_is_kept() {
    let mut h = Harness::new(&retrying("\"retriable-503\""));
    // Even a POST: a 503 says the backend did not take it (no body here).
    let ex = h.start(request("POST", "/busy", BodyLen::None), 1);
    let c0 = h.connect();
    assert_eq!(text(&h.write(c0)), sent_head("POST", "/busy", ""));
    let busy = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 8\r\n\r\nbusy";
    assert_eq!(h.read(c0, busy), busy.len());
    assert_eq!(h.proxy.poll_response(ex), None, "the 503 goes nowhere");
    // The rest of its body arrives later: read and dropped.
    assert_eq!(h.read(c0, b"... "), 4);
    assert_eq!(h.close(c0), Close::No, "the connection is kept");
    // The retry waits out its backoff, then takes the idle connection.
    h.advance(ms(300));
    assert_eq!(text(&h.write(c0)), sent_head("POST", "/busy", ""));
    let resp = ok("done");
    assert_eq!(h.read(c0, &resp), resp.len());
    assert_eq!(h.poll(ex), ok_parts("done"));
    let s = h.proxy.stats();
    assert_eq!((s.retries, s.upstream_connects, s.responses_5xx), (1, 1, 1));
}

#[test]
fn retries_spent_give_the_client_the_backends_status() {
    let mut h = Harness::new(&retrying("\"retriable-503\""));
    let ex = h.start(get("/busy"), 1);
    let c0 = h.connect();
    let busy = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n";
    h.write(c0);
    assert_eq!(h.read(c0, busy), busy.len());
    h.advance(ms(300));
    h.write(c0);
    // The second 503 is the last try's: it reaches the client.
    assert_eq!(h.read(c0, busy), busy.len());
    assert_eq!(h.poll(ex), vec![head(503, &[], BodyLen::Length(0)), end()]);
}

#[test]
fn a_5xx_is_retried_only_for_idempotent_requests() {
    let mut h = Harness::new(&retrying("\"5xx\""));
    let ex = h.start(request("POST", "/x", BodyLen::None), 1);
    let c0 = h.connect();
    h.write(c0);
    let err = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(h.read(c0, err), err.len());
    assert_eq!(h.poll(ex), vec![head(500, &[], BodyLen::Length(0)), end()]);
    let ex = h.start(get("/x"), 2);
    h.write(c0);
    assert_eq!(h.read(c0, err), err.len());
    assert_eq!(h.proxy.poll_response(ex), None, "a GET is retried");
    assert_eq!(h.proxy.stats().retries, 1);
}
