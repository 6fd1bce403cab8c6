//! Test drivers for the TCP engine: a deterministic simulated link between
//! two endpoints (virtual clock, seeded loss/reordering/duplication/delay/
//! bandwidth), a stream application on each side, and a scripted peer that
//! hand-builds segments and parses what the engine sends.
//!
//! Everything runs on virtual time; every loop is bounded by a step count
//! and a virtual deadline and panics with the state when it runs out.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use sluice_netstack::tcp::{ConnId, Endpoint, EndpointConfig, Event, FourTuple, Handled, State};
use sluice_netstack::time::Time;
use sluice_netstack::wire::{
    IpProtocol, Ipv4Packet, Ipv6Packet, SeqNumber, TcpFlags, TcpOptions, TcpPacket, TcpRepr,
};

// ---- RNG --------------------------------------------------------------------

/// xorshift64* — tiny, deterministic, good enough for link faults.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// True with probability `ppm` parts per million.
    pub fn chance(&mut self, ppm: u32) -> bool {
        ppm > 0 && (self.next_u64() % 1_000_000) < u64::from(ppm)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

// ---- IP packets -------------------------------------------------------------

/// An IP packet the engine wrote, split into addresses and TCP bytes.
pub fn split_ip(pkt: &[u8]) -> (IpAddr, IpAddr, Vec<u8>) {
    match pkt[0] >> 4 {
        4 => {
            let p = Ipv4Packet::new_checked(pkt).expect("valid IPv4 header");
            assert!(p.verify_checksum(), "IPv4 header checksum");
            assert_eq!(p.next_header(), IpProtocol::TCP);
            assert_eq!(usize::from(p.total_len()), pkt.len(), "IPv4 total length");
            (
                IpAddr::V4(p.src_addr()),
                IpAddr::V4(p.dst_addr()),
                p.payload().to_vec(),
            )
        }
        6 => {
            let p = Ipv6Packet::new_checked(pkt).expect("valid IPv6 header");
            assert_eq!(p.next_header(), IpProtocol::TCP);
            (
                IpAddr::V6(p.src_addr()),
                IpAddr::V6(p.dst_addr()),
                p.payload().to_vec(),
            )
        }
        v => panic!("IP version {v}"),
    }
}

/// Deliver a TCP segment to an endpoint as a poll loop would.
pub fn deliver(ep: &mut Endpoint, now: Time, src: IpAddr, dst: IpAddr, tcp: &[u8]) {
    if ep.handle_segment(now, src, dst, tcp) == Handled::NoConnection {
        let _ = ep.handle_unowned(now, src, dst, tcp);
    }
}

// ---- simulated link ---------------------------------------------------------

/// Faults and shape of one direction of a link.
#[derive(Clone, Copy, Debug)]
pub struct LinkParams {
    /// One-way propagation delay.
    pub delay: Duration,
    /// Extra uniform random delay in [0, jitter) for every packet.
    pub jitter: Duration,
    /// Loss, duplication and reordering, parts per million.
    pub loss_ppm: u32,
    pub dup_ppm: u32,
    pub reorder_ppm: u32,
    /// Extra delay a reordered packet gets (uniform in [0, reorder_delay)).
    pub reorder_delay: Duration,
    /// Bytes per second; 0 = unlimited.
    pub bandwidth: u64,
    /// Packets queued at the bottleneck beyond which new ones are dropped.
    pub queue_limit: usize,
}

impl Default for LinkParams {
    fn default() -> Self {
        LinkParams {
            delay: Duration::from_millis(10),
            jitter: Duration::ZERO,
            loss_ppm: 0,
            dup_ppm: 0,
            reorder_ppm: 0,
            reorder_delay: Duration::from_millis(20),
            bandwidth: 0,
            queue_limit: 1000,
        }
    }
}

impl LinkParams {
    pub fn lossy(loss_percent: u32) -> Self {
        LinkParams {
            loss_ppm: loss_percent * 10_000,
            ..Self::default()
        }
    }
}

#[derive(Debug, Default)]
pub struct LinkStats {
    pub sent: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub queue_drops: u64,
    pub delivered: u64,
}

/// One direction: a delay line with a bottleneck in front.
#[derive(Debug)]
pub struct Link {
    pub params: LinkParams,
    rng: Rng,
    /// (arrival, sequence, packet): min-heap on arrival then order sent.
    queue: BinaryHeap<Reverse<(Time, u64, Vec<u8>)>>,
    order: u64,
    busy_until: Time,
    /// Departure times of the packets still in the bottleneck queue.
    backlog: std::collections::VecDeque<Time>,
    pub stats: LinkStats,
}

impl Link {
    pub fn new(params: LinkParams, seed: u64) -> Self {
        Link {
            params,
            rng: Rng::new(seed),
            queue: BinaryHeap::new(),
            order: 0,
            busy_until: Time::ZERO,
            backlog: Default::default(),
            stats: LinkStats::default(),
        }
    }

    pub fn send(&mut self, now: Time, pkt: Vec<u8>) {
        // An Ethernet path: the engines' default MSS (1460) fills it
        // exactly, and options must come out of the payload.
        assert!(
            pkt.len() <= 1500,
            "{}-byte IP packet over a 1500 MTU",
            pkt.len()
        );
        self.stats.sent += 1;
        let p = self.params;
        while matches!(self.backlog.front(), Some(&t) if t <= now) {
            self.backlog.pop_front();
        }
        if self.backlog.len() >= p.queue_limit {
            self.stats.queue_drops += 1;
            return;
        }
        let mut depart = now;
        if let Some(ns) = (pkt.len() as u64 * 1_000_000_000).checked_div(p.bandwidth) {
            let start = self.busy_until.max(now);
            let ser = Duration::from_nanos(ns);
            depart = start + ser;
            self.busy_until = depart;
            self.backlog.push_back(depart);
        }
        if self.rng.chance(p.loss_ppm) {
            self.stats.lost += 1;
            return;
        }
        let copies = if self.rng.chance(p.dup_ppm) {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut at = depart + p.delay;
            if !p.jitter.is_zero() {
                at += Duration::from_nanos(self.rng.below(p.jitter.as_nanos() as u64));
            }
            if self.rng.chance(p.reorder_ppm) {
                self.stats.reordered += 1;
                at += Duration::from_nanos(self.rng.below(p.reorder_delay.as_nanos() as u64 + 1));
            }
            self.order += 1;
            self.queue.push(Reverse((at, self.order, pkt.clone())));
        }
    }

    pub fn next_arrival(&self) -> Option<Time> {
        self.queue.peek().map(|Reverse((t, _, _))| *t)
    }

    pub fn pop_due(&mut self, now: Time) -> Option<Vec<u8>> {
        if self.next_arrival()? <= now {
            self.stats.delivered += 1;
            self.queue.pop().map(|Reverse((_, _, p))| p)
        } else {
            None
        }
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

// ---- stream application -----------------------------------------------------

/// What the application on one side does with each connection.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// Bytes to send.
    pub data: Vec<u8>,
    /// Shut down (FIN) once every byte is written.
    pub shutdown_when_sent: bool,
    /// Hold the data back until the peer's FIN arrived (half-close).
    pub send_after_peer_fin: bool,
    /// Release the handle (`close`) once the peer finished and we shut down.
    pub close_when_done: bool,
}

#[derive(Debug, Default)]
pub struct ConnApp {
    pub plan: Plan,
    /// The connection's 4-tuple as this host sees it.
    pub tuple: Option<FourTuple>,
    pub written: usize,
    pub received: Vec<u8>,
    pub established: bool,
    pub peer_fin: bool,
    pub shut: bool,
    pub closed: bool,
    pub reset: bool,
    pub released: bool,
}

impl ConnApp {
    pub fn done(&self) -> bool {
        self.released && self.closed && !self.reset
    }
}

/// One host: an endpoint and its applications.
pub struct Host {
    pub ep: Endpoint,
    pub ip: IpAddr,
    pub conns: BTreeMap<ConnId, ConnApp>,
    /// Connections that ended and were released, in order.
    pub finished: Vec<ConnApp>,
    /// Plan for accepted connections (accept order, 4-tuple).
    pub accept_plan: Box<dyn FnMut(usize, FourTuple) -> Plan>,
    pub accepted: usize,
    pub max_mem: usize,
    pub read_chunk: usize,
}

impl Host {
    pub fn new(cfg: EndpointConfig, ip: IpAddr, now: Time) -> Self {
        Host {
            ep: Endpoint::new(cfg, now),
            ip,
            conns: BTreeMap::new(),
            finished: Vec::new(),
            accept_plan: Box::new(|_, _| Plan::default()),
            accepted: 0,
            max_mem: 0,
            read_chunk: 64 * 1024,
        }
    }

    /// Serve events and application work until nothing changes.
    pub fn service(&mut self) {
        let mut buf = vec![0u8; self.read_chunk];
        while let Some(ev) = self.ep.poll_event() {
            match ev {
                Event::Accepted(id) => {
                    let tuple = self.ep.info(id).expect("accepted conn").tuple;
                    let plan = (self.accept_plan)(self.accepted, tuple);
                    self.accepted += 1;
                    let app = self.conns.entry(id).or_default();
                    app.plan = plan;
                    app.tuple = Some(tuple);
                    app.established = true;
                }
                Event::Connected(id) => {
                    let tuple = self.ep.info(id).ok().map(|i| i.tuple);
                    let app = self.conns.entry(id).or_default();
                    app.established = true;
                    app.tuple = tuple;
                }
                Event::PeerFinished(id) => {
                    if let Some(a) = self.conns.get_mut(&id) {
                        a.peer_fin = true;
                    }
                }
                Event::Closed(id, _) => {
                    if let Some(a) = self.conns.get_mut(&id) {
                        a.closed = true;
                    }
                }
                Event::Reset(id, _) => {
                    if let Some(a) = self.conns.get_mut(&id) {
                        a.closed = true;
                        a.reset = true;
                    }
                }
                Event::Readable(_) | Event::Writable(_) | Event::TimeWaitEnded(_) => {}
            }
        }
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            let app = self.conns.get_mut(&id).unwrap();
            // Read everything readable.
            loop {
                match self.ep.read(id, &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => app.received.extend_from_slice(&buf[..n]),
                }
            }
            if app.established && !app.shut && !app.reset && !app.closed {
                let may_send = !app.plan.send_after_peer_fin || app.peer_fin;
                if may_send && app.written < app.plan.data.len() {
                    if let Ok(n) = self.ep.write(id, &app.plan.data[app.written..]) {
                        app.written += n;
                    }
                }
                if may_send
                    && app.plan.shutdown_when_sent
                    && app.written == app.plan.data.len()
                    && self.ep.shutdown(id).is_ok()
                {
                    app.shut = true;
                }
            }
            let release = app.closed || (app.plan.close_when_done && app.shut && app.peer_fin);
            if release && !app.released {
                // Everything readable was read above.
                let _ = self.ep.close(id);
                app.released = true;
            }
            if app.released && app.closed {
                let app = self.conns.remove(&id).unwrap();
                self.finished.push(app);
            }
        }
        self.max_mem = self.max_mem.max(self.ep.mem_in_use());
        assert!(
            self.ep.mem_in_use() <= self.ep.config().memory_budget,
            "memory budget exceeded: {} > {}",
            self.ep.mem_in_use(),
            self.ep.config().memory_budget
        );
    }
}

/// Two hosts joined by a link in each direction, on a virtual clock.
pub struct Sim {
    pub now: Time,
    pub a: Host,
    pub b: Host,
    pub ab: Link,
    pub ba: Link,
    pub steps: u64,
    pub max_steps: u64,
    pub deadline: Time,
    /// Print every delivered segment after this time (debugging aid).
    pub trace_after: Option<Time>,
    buf: Vec<u8>,
}

pub const CLIENT_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));
pub const SERVER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));
pub const CLIENT_IP6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 1));
pub const SERVER_IP6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2));
pub const SERVER_PORT: u16 = 443;

impl Sim {
    /// Client `a` and server `b` (listening on SERVER_PORT).
    pub fn new(
        cfg_a: EndpointConfig,
        cfg_b: EndpointConfig,
        ab: LinkParams,
        ba: LinkParams,
        seed: u64,
    ) -> Self {
        Self::with_ips(cfg_a, cfg_b, ab, ba, seed, CLIENT_IP, SERVER_IP)
    }

    pub fn with_ips(
        cfg_a: EndpointConfig,
        cfg_b: EndpointConfig,
        ab: LinkParams,
        ba: LinkParams,
        seed: u64,
        a_ip: IpAddr,
        b_ip: IpAddr,
    ) -> Self {
        let now = Time::from_millis(1_000);
        let a = Host::new(cfg_a, a_ip, now);
        let mut b = Host::new(cfg_b, b_ip, now);
        b.ep.listen(SocketAddr::new(b_ip, SERVER_PORT), 0).unwrap();
        Sim {
            now,
            a,
            b,
            ab: Link::new(ab, seed ^ 0xA5A5),
            ba: Link::new(ba, seed ^ 0x5A5A_0000),
            steps: 0,
            max_steps: 5_000_000,
            deadline: now + Duration::from_secs(3600),
            trace_after: None,
            buf: vec![0u8; 2048],
        }
    }

    /// Open a connection from `a` (port `port`, 0 = ephemeral) with `plan`.
    pub fn connect(&mut self, port: u16, plan: Plan) -> ConnId {
        let local = SocketAddr::new(self.a.ip, port);
        let remote = SocketAddr::new(self.b.ip, SERVER_PORT);
        let id = self.a.ep.connect(self.now, local, remote).unwrap();
        self.a.conns.insert(
            id,
            ConnApp {
                plan,
                ..Default::default()
            },
        );
        id
    }

    /// One event: run applications, flush output, then advance the clock to
    /// the next arrival or timer and process it. False when nothing is left
    /// to happen.
    pub fn step(&mut self) -> bool {
        self.steps += 1;
        assert!(
            self.steps <= self.max_steps,
            "step limit {} reached at {:?}",
            self.max_steps,
            self.now
        );
        assert!(self.now <= self.deadline, "virtual deadline reached");
        self.a.service();
        self.b.service();
        while let Some(tx) = self.a.ep.poll_transmit(self.now, &mut self.buf) {
            assert!(tx.len <= self.buf.len());
            self.ab.send(self.now, self.buf[..tx.len].to_vec());
        }
        while let Some(tx) = self.b.ep.poll_transmit(self.now, &mut self.buf) {
            self.ba.send(self.now, self.buf[..tx.len].to_vec());
        }
        let next = [
            self.ab.next_arrival(),
            self.ba.next_arrival(),
            self.a.ep.poll_timeout(),
            self.b.ep.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(next) = next else { return false };
        if next > self.now {
            self.now = next;
        }
        let now = self.now;
        while let Some(p) = self.ab.pop_due(now) {
            let (src, dst, tcp) = split_ip(&p);
            check_tcp(&tcp, src, dst);
            self.trace("a->b", &tcp);
            deliver(&mut self.b.ep, now, src, dst, &tcp);
        }
        while let Some(p) = self.ba.pop_due(now) {
            let (src, dst, tcp) = split_ip(&p);
            check_tcp(&tcp, src, dst);
            self.trace("b->a", &tcp);
            deliver(&mut self.a.ep, now, src, dst, &tcp);
        }
        if matches!(self.a.ep.poll_timeout(), Some(t) if t <= now) {
            self.a.ep.handle_timeout(now);
        }
        if matches!(self.b.ep.poll_timeout(), Some(t) if t <= now) {
            self.b.ep.handle_timeout(now);
        }
        true
    }

    fn trace(&self, dir: &str, tcp: &[u8]) {
        if matches!(self.trace_after, Some(t) if self.now >= t) {
            let p = TcpPacket::new_checked(tcp).unwrap();
            eprintln!(
                "{:>10.3}ms {dir} flags={:#05x} seq={} ack={} win={} len={} opts={:?}",
                self.now.as_micros() as f64 / 1000.0,
                p.flags().0,
                p.seq_number().0,
                p.ack_number().0,
                p.window_len(),
                p.payload().len(),
                TcpOptions::parse(p.options()).unwrap()
            );
        }
    }

    /// Step until `done` holds (checked between steps).
    pub fn run_until(&mut self, what: &str, mut done: impl FnMut(&Sim) -> bool) {
        while !done(self) {
            if !self.step() {
                self.a.service();
                self.b.service();
                assert!(done(self), "simulation went idle before: {what}");
                return;
            }
        }
    }

    /// Step until nothing is left: no packets, no timers (TIME_WAIT expired).
    pub fn run_to_quiescence(&mut self) {
        while self.step() {}
        self.a.service();
        self.b.service();
    }

    /// Every connection closed in order, handles released, TIME_WAIT expired,
    /// no memory held.
    pub fn assert_all_clean(&self) {
        for h in [&self.a, &self.b] {
            assert!(h.conns.is_empty(), "open handles: {:?}", h.conns.keys());
            assert_eq!(h.ep.conn_count(), 0, "conn_count");
            assert_eq!(h.ep.time_wait_count(), 0, "time_wait_count");
            assert_eq!(h.ep.mem_in_use(), 0, "mem_in_use");
        }
    }
}

/// Every segment on the wire parses and has a valid checksum.
pub fn check_tcp(tcp: &[u8], src: IpAddr, dst: IpAddr) {
    let p = TcpPacket::new_checked(tcp).expect("engine output parses");
    assert!(p.verify_checksum(&src, &dst), "TCP checksum");
    TcpRepr::parse(&p, &src, &dst).expect("engine options parse");
}

/// A sim-friendly config: short TIME_WAIT so runs end soon in virtual time.
pub fn sim_config() -> EndpointConfig {
    EndpointConfig {
        time_wait: Duration::from_secs(2),
        ..EndpointConfig::default()
    }
}

// ---- scripted peer ----------------------------------------------------------

/// A segment the engine sent, parsed.
#[derive(Clone, Debug)]
pub struct Out {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub seq: SeqNumber,
    pub ack: SeqNumber,
    pub flags: TcpFlags,
    pub window: u16,
    pub opts: TcpOptions,
    /// The raw options area.
    pub opt_bytes: Vec<u8>,
    pub payload: Vec<u8>,
}

impl Out {
    pub fn parse(pkt: &[u8]) -> Out {
        let (src, dst, tcp) = split_ip(pkt);
        check_tcp(&tcp, src, dst);
        let p = TcpPacket::new_checked(&tcp[..]).unwrap();
        Out {
            src: SocketAddr::new(src, p.src_port()),
            dst: SocketAddr::new(dst, p.dst_port()),
            seq: p.seq_number(),
            ack: p.ack_number(),
            flags: p.flags(),
            window: p.window_len(),
            opts: TcpOptions::parse(p.options()).unwrap(),
            opt_bytes: p.options().to_vec(),
            payload: p.payload().to_vec(),
        }
    }
}

/// A segment the scripted peer sends.
#[derive(Clone, Debug)]
pub struct Seg {
    pub seq: u32,
    pub ack: u32,
    pub flags: TcpFlags,
    pub window: u16,
    pub opts: TcpOptions,
    pub payload: Vec<u8>,
}

impl Seg {
    pub fn new(flags: TcpFlags, seq: u32, ack: u32) -> Self {
        Seg {
            seq,
            ack,
            flags,
            window: 65_535,
            opts: TcpOptions::default(),
            payload: Vec::new(),
        }
    }
    pub fn window(mut self, w: u16) -> Self {
        self.window = w;
        self
    }
    pub fn opts(mut self, o: TcpOptions) -> Self {
        self.opts = o;
        self
    }
    pub fn data(mut self, d: &[u8]) -> Self {
        self.payload = d.to_vec();
        self
    }
}

/// The engine under test and a peer played by the test.
pub struct Scripted {
    pub ep: Endpoint,
    pub now: Time,
    /// The engine's address.
    pub local: SocketAddr,
    /// The scripted peer's address.
    pub peer: SocketAddr,
    pub events: Vec<Event>,
}

impl Scripted {
    pub fn new(cfg: EndpointConfig) -> Self {
        let now = Time::from_millis(1_000_000);
        Scripted {
            ep: Endpoint::new(cfg, now),
            now,
            local: SocketAddr::new(SERVER_IP, SERVER_PORT),
            peer: SocketAddr::new(CLIENT_IP, 40_000),
            events: Vec::new(),
        }
    }

    pub fn key(&self) -> [u8; 16] {
        self.ep.config().isn_key
    }

    /// The engine's view of the connection.
    pub fn tuple(&self) -> FourTuple {
        FourTuple::new(self.local, self.peer)
    }

    pub fn tcp_bytes(&self, s: &Seg) -> Vec<u8> {
        tcp_bytes(self.peer, self.local, s)
    }

    /// Send a segment from the peer to the engine.
    pub fn send(&mut self, s: Seg) {
        let b = self.tcp_bytes(&s);
        deliver(&mut self.ep, self.now, self.peer.ip(), self.local.ip(), &b);
        self.drain_events();
    }

    pub fn drain_events(&mut self) {
        while let Some(e) = self.ep.poll_event() {
            self.events.push(e);
        }
    }

    pub fn take_events(&mut self) -> Vec<Event> {
        self.drain_events();
        std::mem::take(&mut self.events)
    }

    /// Everything the engine wants to send now.
    pub fn out(&mut self) -> Vec<Out> {
        let mut buf = [0u8; 2048];
        let mut v = Vec::new();
        while let Some(tx) = self.ep.poll_transmit(self.now, &mut buf) {
            v.push(Out::parse(&buf[..tx.len]));
            assert!(v.len() < 10_000, "runaway output");
        }
        self.drain_events();
        v
    }

    /// Exactly one segment.
    pub fn out1(&mut self) -> Out {
        let mut v = self.out();
        assert_eq!(v.len(), 1, "expected one segment, got {v:#?}");
        v.pop().unwrap()
    }

    pub fn assert_silent(&mut self) {
        let v = self.out();
        assert!(v.is_empty(), "expected no output, got {v:#?}");
    }

    /// Advance the clock by `d`, running every timer due on the way.
    pub fn advance(&mut self, d: Duration) {
        let target = self.now + d;
        let mut guard = 0;
        while let Some(t) = self.ep.poll_timeout() {
            if t > target {
                break;
            }
            guard += 1;
            assert!(guard < 100_000, "timer storm");
            self.now = self.now.max(t);
            self.ep.handle_timeout(self.now);
        }
        self.now = target;
        self.drain_events();
    }

    /// Advance to the next timer, run it; returns how far the clock moved.
    pub fn next_timer(&mut self) -> Duration {
        let t = self.ep.poll_timeout().expect("a timer is armed");
        let d = t.saturating_since(self.now);
        self.now = self.now.max(t);
        self.ep.handle_timeout(self.now);
        self.drain_events();
        d
    }

    pub fn state(&self, id: ConnId) -> State {
        self.ep.info(id).unwrap().state
    }
}

/// TCP bytes of `s` from `src` to `dst` with a valid checksum.
pub fn tcp_bytes(src: SocketAddr, dst: SocketAddr, s: &Seg) -> Vec<u8> {
    let repr = TcpRepr {
        src_port: src.port(),
        dst_port: dst.port(),
        seq_number: SeqNumber(s.seq),
        ack_number: SeqNumber(s.ack),
        flags: s.flags,
        window_len: s.window,
        urgent_pointer: 0,
        options: s.opts,
        payload_len: s.payload.len(),
    };
    let mut b = vec![0u8; repr.buffer_len()];
    repr.emit(&mut b, &src.ip(), &dst.ip(), |p| {
        p.copy_from_slice(&s.payload)
    })
    .unwrap();
    b
}
