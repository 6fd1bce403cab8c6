//! The endpoint: every TCP connection of one poll loop.
//!
//! # Driving it
//!
//! The endpoint is sans-IO: it never reads a clock or touches a socket.
//! Inputs (`handle_*`) take `now`; outputs (`poll_*`) are pulled. One poll
//! loop iteration:
//!
//! 1. for each received TCP segment, [`Endpoint::handle_segment`]; on
//!    [`Handled::NoConnection`], if another core owns the 4-tuple forward
//!    the segment there, else [`Endpoint::handle_unowned`];
//! 2. if `now >= poll_timeout()`, [`Endpoint::handle_timeout`];
//! 3. drain [`Endpoint::poll_event`] and serve the application
//!    (`read`/`write`/`shutdown`/`close`/`abort`);
//! 4. drain [`Endpoint::poll_transmit`] into TX frames;
//! 5. sleep until [`Endpoint::poll_timeout`] or the next packet.
//!
//! A spurious `handle_timeout` is harmless. `Closed` and `Reset` events carry
//! the 4-tuple so the loop can drop it from its ownership directory.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};

use super::conn::{self, Conn, Ctx, RstOut};
use super::isn;
use super::ports::EphemeralPorts;
use super::ratelimit::TokenBucket;
use super::ring::ChunkPool;
use super::segment::{self, OutSegment, Segment};
use super::syncookie::{CookieOpts, SynCookies, TS_OPT_BITS};
use super::timer_wheel::TimerWheel;
use super::tuple::FourTuple;
use super::types::{
    ConnId, ConnInfo, EndpointConfig, EndpointStats, Event, Handled, LocalAddr, State, TcpError,
    Transmit, Unowned,
};
use crate::time::Time;
use crate::wire::{SeqNumber, TcpFlags, TcpOptions, TcpTimestamp};

#[derive(Debug)]
struct Listener {
    backlog: u32,
    /// Connections in SYN-RECEIVED.
    pending: u32,
}

#[derive(Debug)]
struct Slot {
    gen: u32,
    queued: bool,
    /// State counted in `conns_by_state`.
    counted: Option<State>,
    conn: Option<Conn>,
}

/// A segment sent without a connection (RST, cookie SYN-ACK, TIME_WAIT ACK).
#[derive(Clone, Copy, Debug)]
struct Reply {
    src: SocketAddr,
    dst: SocketAddr,
    seq: SeqNumber,
    ack: SeqNumber,
    flags: TcpFlags,
    window: u16,
    opts: TcpOptions,
}

#[derive(Clone, Copy, Debug)]
struct TimeWait {
    snd_nxt: SeqNumber,
    rcv_nxt: SeqNumber,
    ts_recent: Option<u32>,
    ts_offset: u32,
    window: u16,
    expires: Time,
}

/// All TCP connections, listeners and TIME_WAIT entries of one poll loop.
#[derive(Debug)]
pub struct Endpoint {
    cfg: EndpointConfig,
    pool: ChunkPool,
    stats: EndpointStats,
    challenge: TokenBucket,
    rst_bucket: TokenBucket,
    cookies: SynCookies,
    ports: Option<EphemeralPorts>,
    listeners: HashMap<SocketAddr, Listener>,
    table: HashMap<FourTuple, u32>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    live: usize,
    wheel: TimerWheel,
    expired: Vec<u32>,
    tx_queue: VecDeque<u32>,
    replies: VecDeque<Reply>,
    events: VecDeque<Event>,
    time_wait: HashMap<FourTuple, TimeWait>,
    tw_order: VecDeque<(FourTuple, Time)>,
    ident: u16,
    /// Latest `now` passed in (application calls carry no time).
    now_hint: Time,
}

/// Borrow the pieces of an endpoint a connection needs, next to one slot.
macro_rules! ctx {
    ($self:ident, $now:expr) => {
        Ctx {
            now: $now,
            cfg: &$self.cfg,
            pool: &mut $self.pool,
            stats: &mut $self.stats,
            challenge: &mut $self.challenge,
        }
    };
}

fn rst_for(tuple: &FourTuple, seg: &Segment<'_>) -> Reply {
    let (seq, ack, flags) = if seg.flags.ack() {
        (seg.ack, SeqNumber(0), TcpFlags::RST)
    } else {
        (
            SeqNumber(0),
            seg.seq + seg.len(),
            TcpFlags::RST | TcpFlags::ACK,
        )
    };
    Reply {
        src: tuple.local,
        dst: tuple.remote,
        seq,
        ack,
        flags,
        window: 0,
        opts: TcpOptions::default(),
    }
}

impl Endpoint {
    pub fn new(cfg: EndpointConfig, now: Time) -> Self {
        let seed = isn::siphash24(&cfg.isn_key, &u64::from(cfg.core).to_le_bytes());
        let ports = EphemeralPorts::new(cfg.ephemeral_ports.clone(), cfg.core, cfg.cores, seed);
        Endpoint {
            pool: ChunkPool::new(cfg.chunk_size, cfg.memory_budget),
            stats: EndpointStats::default(),
            challenge: TokenBucket::new(cfg.challenge_ack_rate, cfg.challenge_ack_burst, now),
            rst_bucket: TokenBucket::new(cfg.rst_rate, cfg.rst_burst, now),
            cookies: SynCookies::new(cfg.cookie_key),
            ports,
            listeners: HashMap::new(),
            table: HashMap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            wheel: TimerWheel::new(now, cfg.timer_tick),
            expired: Vec::new(),
            tx_queue: VecDeque::new(),
            replies: VecDeque::new(),
            events: VecDeque::new(),
            time_wait: HashMap::new(),
            tw_order: VecDeque::new(),
            ident: 0,
            now_hint: now,
            cfg,
        }
    }

    pub fn config(&self) -> &EndpointConfig {
        &self.cfg
    }

    // ---- listeners --------------------------------------------------------

    /// Accept connections to `addr` (an unspecified IP listens on every
    /// address of its family). `backlog` 0 takes the configured default.
    pub fn listen(&mut self, addr: SocketAddr, backlog: u32) -> Result<(), TcpError> {
        if addr.port() == 0 {
            return Err(TcpError::InvalidAddr);
        }
        if self.listeners.contains_key(&addr) {
            return Err(TcpError::AddrInUse);
        }
        let backlog = if backlog == 0 {
            self.cfg.backlog
        } else {
            backlog
        };
        self.listeners.insert(
            addr,
            Listener {
                backlog,
                pending: 0,
            },
        );
        Ok(())
    }

    /// Stop accepting on `addr`. Existing connections are not affected.
    pub fn unlisten(&mut self, addr: SocketAddr) -> Result<(), TcpError> {
        self.listeners
            .remove(&addr)
            .map(|_| ())
            .ok_or(TcpError::NotListening)
    }

    fn listener_key(&self, local: SocketAddr) -> Option<SocketAddr> {
        if self.listeners.contains_key(&local) {
            return Some(local);
        }
        let any = match local.ip() {
            IpAddr::V4(_) => IpAddr::V4(core::net::Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(core::net::Ipv6Addr::UNSPECIFIED),
        };
        let k = SocketAddr::new(any, local.port());
        self.listeners.contains_key(&k).then_some(k)
    }

    // ---- active open ------------------------------------------------------

    /// Open a connection to `remote` from `local` (an address, or an
    /// address and port; port 0 picks one of this core's ephemeral ports).
    pub fn connect(
        &mut self,
        now: Time,
        local: impl Into<LocalAddr>,
        remote: SocketAddr,
    ) -> Result<ConnId, TcpError> {
        self.tick(now);
        let local = local.into().0;
        if local.is_ipv4() != remote.is_ipv4()
            || local.ip().is_unspecified()
            || remote.ip().is_unspecified()
            || remote.port() == 0
        {
            return Err(TcpError::InvalidAddr);
        }
        if self.live >= self.cfg.max_connections {
            return Err(TcpError::TooManyConnections);
        }
        let port = if local.port() != 0 {
            let t = FourTuple::new(local, remote);
            if self.table.contains_key(&t) || self.time_wait.contains_key(&t) {
                return Err(TcpError::AddrInUse);
            }
            local.port()
        } else {
            let (table, tw) = (&self.table, &self.time_wait);
            let ports = self.ports.as_mut().ok_or(TcpError::NoPorts)?;
            ports
                .allocate(|p| {
                    let t = FourTuple::new(SocketAddr::new(local.ip(), p), remote);
                    table.contains_key(&t) || tw.contains_key(&t)
                })
                .ok_or(TcpError::NoPorts)?
        };
        let tuple = FourTuple::new(SocketAddr::new(local.ip(), port), remote);
        let iss = SeqNumber(isn::isn(&self.cfg.isn_key, &tuple, now));
        let ts_off = isn::ts_offset(&self.cfg.isn_key, &tuple);
        let c = {
            let ctx = ctx!(self, now);
            Conn::new_active(&ctx, tuple, iss, ts_off)
        };
        self.stats.connects += 1;
        let id = self.insert(tuple, c);
        self.after(id.slot, now);
        self.sync();
        Ok(id)
    }

    fn insert(&mut self, tuple: FourTuple, c: Conn) -> ConnId {
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(Slot {
                    gen: 0,
                    queued: false,
                    counted: None,
                    conn: None,
                });
                (self.slots.len() - 1) as u32
            }
        };
        let s = &mut self.slots[slot as usize];
        s.gen = s.gen.wrapping_add(1);
        s.queued = false;
        s.counted = None;
        s.conn = Some(c);
        self.live += 1;
        self.table.insert(tuple, slot);
        ConnId { slot, gen: s.gen }
    }

    fn id_of(&self, slot: u32) -> ConnId {
        let gen = self.slots.get(slot as usize).map(|s| s.gen).unwrap_or(0);
        ConnId { slot, gen }
    }

    fn conn_mut(&mut self, id: ConnId) -> Result<&mut Conn, TcpError> {
        match self.slots.get_mut(id.slot as usize) {
            Some(s) if s.gen == id.gen => match s.conn.as_mut() {
                Some(c) if !c.released => Ok(c),
                _ => Err(TcpError::InvalidConn),
            },
            _ => Err(TcpError::InvalidConn),
        }
    }

    fn conn_ref(&self, id: ConnId) -> Result<&Conn, TcpError> {
        match self.slots.get(id.slot as usize) {
            Some(s) if s.gen == id.gen => match s.conn.as_ref() {
                Some(c) if !c.released => Ok(c),
                _ => Err(TcpError::InvalidConn),
            },
            _ => Err(TcpError::InvalidConn),
        }
    }

    /// Bookkeeping after anything touched the connection in `slot`: events,
    /// RSTs, state counters, listener backlog, table exit, timers, output.
    fn after(&mut self, slot: u32, now: Time) {
        let id = self.id_of(slot);
        let Some(s) = self.slots.get_mut(slot as usize) else {
            return;
        };
        let Some(c) = s.conn.as_mut() else { return };
        // State gauge.
        if s.counted != Some(c.state) {
            if let Some(old) = s.counted {
                let g = &mut self.stats.conns_by_state[old.index()];
                *g = g.saturating_sub(1);
            }
            self.stats.conns_by_state[c.state.index()] += 1;
            s.counted = Some(c.state);
        }
        // Listener backlog.
        if c.state != State::SynReceived {
            if let Some(l) = c.listener.take() {
                if let Some(l) = self.listeners.get_mut(&l) {
                    l.pending = l.pending.saturating_sub(1);
                }
            }
        }
        // RST on the connection's behalf.
        if let Some(RstOut { seq, ack }) = c.rst_out.take() {
            let (flags, ack) = match ack {
                Some(a) => (TcpFlags::RST | TcpFlags::ACK, a),
                None => (TcpFlags::RST, SeqNumber(0)),
            };
            let r = Reply {
                src: c.tuple.local,
                dst: c.tuple.remote,
                seq,
                ack,
                flags,
                window: 0,
                opts: TcpOptions::default(),
            };
            if self.replies.len() < self.cfg.max_pending_replies {
                self.replies.push_back(r);
            } else {
                self.stats.replies_dropped += 1;
            }
        }
        // Events.
        let ev = core::mem::take(&mut c.events);
        let tuple = c.tuple;
        let app = !c.released;
        if ev != 0 {
            if ev & conn::EV_ACCEPTED != 0 {
                self.stats.accepts += 1;
                self.events.push_back(Event::Accepted(id));
            }
            if ev & conn::EV_CONNECTED != 0 {
                self.events.push_back(Event::Connected(id));
            }
            if app && ev & conn::EV_READABLE != 0 {
                self.events.push_back(Event::Readable(id));
            }
            if app && ev & conn::EV_WRITABLE != 0 {
                self.events.push_back(Event::Writable(id));
            }
            if app && ev & conn::EV_PEER_FIN != 0 {
                self.events.push_back(Event::PeerFinished(id));
            }
            if ev & conn::EV_RESET != 0 {
                self.events.push_back(Event::Reset(id, tuple));
            } else if ev & conn::EV_CLOSED != 0 {
                self.events.push_back(Event::Closed(id, tuple));
            }
        }
        if matches!(c.state, State::Closed | State::TimeWait) {
            let leaving = self.table.get(&tuple) == Some(&slot);
            let tw_state = (c.state == State::TimeWait && leaving).then(|| c.time_wait_state());
            let released = c.released;
            c.quiesce();
            c.release_send(&mut self.pool);
            if leaving {
                self.table.remove(&tuple);
            }
            self.wheel.cancel(slot);
            if let Some((snd, rcv, ts_recent, ts_offset, wscale)) = tw_state {
                let window = (self.cfg.recv_buffer >> wscale).min(65_535) as u16;
                let tw = TimeWait {
                    snd_nxt: snd,
                    rcv_nxt: rcv,
                    ts_recent,
                    ts_offset,
                    window,
                    expires: now + self.cfg.time_wait,
                };
                let ack = tw_ack(&tw, &tuple, now);
                self.push_reply(ack);
                self.insert_time_wait(tuple, tw);
            }
            if released {
                self.free_slot(slot);
            }
            // Otherwise unread data stays readable until `close`.
            return;
        }
        // Timers.
        match c.next_deadline() {
            Some(t) => self.wheel.set(slot, t),
            None => self.wheel.cancel(slot),
        }
        // Output.
        if !s.queued && c.wants_transmit() {
            s.queued = true;
            self.tx_queue.push_back(slot);
        }
    }

    fn free_slot(&mut self, slot: u32) {
        let Some(s) = self.slots.get_mut(slot as usize) else {
            return;
        };
        if let Some(mut c) = s.conn.take() {
            c.release_buffers(&mut self.pool);
            if self.table.get(&c.tuple) == Some(&slot) {
                self.table.remove(&c.tuple);
            }
            if let Some(l) = c.listener.take() {
                if let Some(l) = self.listeners.get_mut(&l) {
                    l.pending = l.pending.saturating_sub(1);
                }
            }
            self.live = self.live.saturating_sub(1);
        }
        if let Some(old) = s.counted.take() {
            let g = &mut self.stats.conns_by_state[old.index()];
            *g = g.saturating_sub(1);
        }
        s.gen = s.gen.wrapping_add(1);
        s.queued = false;
        self.wheel.cancel(slot);
        self.free.push(slot);
    }

    fn sync(&mut self) {
        self.stats.mem_in_use = self.pool.in_use() as u64;
        self.stats.time_wait_entries = self.time_wait.len() as u64;
    }

    // ---- TIME_WAIT --------------------------------------------------------

    /// Whether `tuple` is in TIME_WAIT here.
    pub fn in_time_wait(&self, tuple: &FourTuple) -> bool {
        self.time_wait.contains_key(tuple)
    }

    fn insert_time_wait(&mut self, tuple: FourTuple, tw: TimeWait) {
        while self.time_wait.len() >= self.cfg.time_wait_max.max(1) {
            match self.tw_order.pop_front() {
                Some((t, exp)) => {
                    if matches!(self.time_wait.get(&t), Some(e) if e.expires == exp) {
                        self.time_wait.remove(&t);
                        self.stats.time_wait_evicted += 1;
                        self.events.push_back(Event::TimeWaitEnded(t));
                    }
                }
                None => break,
            }
        }
        if self.tw_order.len() > 2 * self.cfg.time_wait_max.max(1) {
            let tw_map = &self.time_wait;
            self.tw_order
                .retain(|(t, exp)| matches!(tw_map.get(t), Some(e) if e.expires == *exp));
        }
        self.tw_order.push_back((tuple, tw.expires));
        self.time_wait.insert(tuple, tw);
    }

    /// Whether a SYN may take over the TIME_WAIT entry (RFC 6191 with
    /// timestamps; a higher sequence number without).
    fn tw_reusable(tw: &TimeWait, seg: &Segment<'_>) -> bool {
        match (tw.ts_recent, seg.tsval()) {
            (Some(recent), Some(v)) => (v.wrapping_sub(recent) as i32) > 0,
            (None, _) => seg.seq.distance(tw.rcv_nxt) > 0,
            (Some(_), None) => false,
        }
    }

    fn time_wait_segment(&mut self, now: Time, tuple: FourTuple, seg: &Segment<'_>) {
        let Some(tw) = self.time_wait.get(&tuple).copied() else {
            return;
        };
        if seg.flags.rst() {
            // RFC 1337: a RST does not end TIME_WAIT early (counted as
            // ignored, not in `rst_in`).
            self.stats.rst_ignored += 1;
            return;
        }
        let mut paws = false;
        if let (Some(recent), Some(v)) = (tw.ts_recent, seg.tsval()) {
            if (v.wrapping_sub(recent) as i32) < 0 {
                // PAWS drops it; the ACK still goes out (as Linux does).
                self.stats.paws_drops += 1;
                paws = true;
            }
        }
        if (seg.flags.fin() && !paws) || self.challenge.try_take(now) {
            let r = tw_ack(&tw, &tuple, now);
            self.push_reply(r);
        } else {
            self.stats.challenge_acks_suppressed += 1;
        }
    }

    fn push_reply(&mut self, r: Reply) {
        if self.replies.len() < self.cfg.max_pending_replies {
            self.replies.push_back(r);
        } else {
            self.stats.replies_dropped += 1;
        }
    }

    fn push_rst(&mut self, now: Time, tuple: &FourTuple, seg: &Segment<'_>) -> Unowned {
        if seg.flags.rst() {
            return Unowned::Dropped;
        }
        if !self.rst_bucket.try_take(now) {
            self.stats.rst_suppressed += 1;
            return Unowned::Dropped;
        }
        self.push_reply(rst_for(tuple, seg));
        Unowned::Reset
    }

    // ---- input ------------------------------------------------------------

    fn parse_tuple(src: IpAddr, dst: IpAddr, segment: &[u8]) -> Option<FourTuple> {
        if src.is_ipv4() != dst.is_ipv4() {
            return None;
        }
        let sp = u16::from_be_bytes([*segment.first()?, *segment.get(1)?]);
        let dp = u16::from_be_bytes([*segment.get(2)?, *segment.get(3)?]);
        Some(FourTuple::new(
            SocketAddr::new(dst, dp),
            SocketAddr::new(src, sp),
        ))
    }

    /// A TCP segment (header + payload; checksum verified by the caller)
    /// from `src` to `dst`. `NoConnection` leaves the endpoint unchanged.
    pub fn handle_segment(
        &mut self,
        now: Time,
        src: IpAddr,
        dst: IpAddr,
        segment: &[u8],
    ) -> Handled {
        self.tick(now);
        let Some(tuple) = Self::parse_tuple(src, dst, segment) else {
            return Handled::NoConnection;
        };
        let slot = self.table.get(&tuple).copied();
        let in_tw = slot.is_none() && self.time_wait.contains_key(&tuple);
        if slot.is_none() && !in_tw {
            return Handled::NoConnection;
        }
        let Some(seg) = Segment::parse(segment) else {
            self.stats.segments_in += 1;
            self.stats.malformed += 1;
            return Handled::Consumed;
        };
        if let Some(slot) = slot {
            self.stats.segments_in += 1;
            if let Some(Some(c)) = self.slots.get_mut(slot as usize).map(|s| s.conn.as_mut()) {
                let mut ctx = ctx!(self, now);
                c.on_segment(&mut ctx, &seg);
            }
            self.after(slot, now);
            self.sync();
            return Handled::Consumed;
        }
        // TIME_WAIT.
        if seg.flags.syn() && !seg.flags.ack() {
            if let Some(tw) = self.time_wait.get(&tuple) {
                if Self::tw_reusable(tw, &seg) && self.listener_key(tuple.local).is_some() {
                    // handle_unowned takes it over.
                    return Handled::NoConnection;
                }
            }
        }
        self.stats.segments_in += 1;
        self.time_wait_segment(now, tuple, &seg);
        self.sync();
        Handled::Consumed
    }

    /// A segment no connection here claims (after `handle_segment` said
    /// `NoConnection` and no other core owns the flow): listeners, SYN
    /// cookies, TIME_WAIT reuse, or a RST.
    pub fn handle_unowned(
        &mut self,
        now: Time,
        src: IpAddr,
        dst: IpAddr,
        segment: &[u8],
    ) -> Unowned {
        self.tick(now);
        let Some(tuple) = Self::parse_tuple(src, dst, segment) else {
            self.stats.malformed += 1;
            return Unowned::Dropped;
        };
        let Some(seg) = Segment::parse(segment) else {
            self.stats.malformed += 1;
            return Unowned::Dropped;
        };
        if self.table.contains_key(&tuple) {
            let _ = self.handle_segment(now, src, dst, segment);
            return Unowned::Dropped;
        }
        self.stats.segments_in += 1;
        let r = self.unowned(now, tuple, &seg);
        self.sync();
        r
    }

    fn unowned(&mut self, now: Time, tuple: FourTuple, seg: &Segment<'_>) -> Unowned {
        let f = seg.flags;
        if f.rst() {
            // No connection to reset: ignored, not in `rst_in`.
            self.stats.rst_ignored += 1;
            return Unowned::Dropped;
        }
        if let Some(tw) = self.time_wait.get(&tuple).copied() {
            let reuse = f.syn()
                && !f.ack()
                && Self::tw_reusable(&tw, seg)
                && self.listener_key(tuple.local).is_some();
            if !reuse {
                self.time_wait_segment(now, tuple, seg);
                return Unowned::Dropped;
            }
            self.time_wait.remove(&tuple);
            self.stats.time_wait_reuse += 1;
        }
        let Some(lkey) = self.listener_key(tuple.local) else {
            return self.push_rst(now, &tuple, seg);
        };
        if f.syn() && !f.ack() {
            if seg.src_port == 0 || tuple.remote.ip().is_unspecified() {
                return Unowned::Dropped;
            }
            let full = self
                .listeners
                .get(&lkey)
                .map(|l| l.pending >= l.backlog)
                .unwrap_or(true);
            if full || self.live >= self.cfg.max_connections {
                if self.cfg.syn_cookies {
                    return self.send_cookie(now, &tuple, seg);
                }
                self.stats.backlog_drops += 1;
                return Unowned::Dropped;
            }
            let iss = SeqNumber(isn::isn(&self.cfg.isn_key, &tuple, now));
            let ts_off = isn::ts_offset(&self.cfg.isn_key, &tuple);
            let c = {
                let ctx = ctx!(self, now);
                Conn::new_passive(&ctx, tuple, iss, ts_off, seg, lkey)
            };
            if let Some(l) = self.listeners.get_mut(&lkey) {
                l.pending += 1;
            }
            let id = self.insert(tuple, c);
            self.after(id.slot, now);
            return Unowned::Created(tuple);
        }
        if f.ack() && !f.syn() && self.cfg.syn_cookies {
            let tsecr = seg.opts.timestamp.map(|t| t.tsecr);
            let opts = self
                .cookies
                .validate(now, &tuple, (seg.seq - 1).0, (seg.ack - 1).0, tsecr);
            match opts {
                Some(opts) if self.live < self.cfg.max_connections => {
                    self.stats.cookies_accepted += 1;
                    let c = {
                        let ctx = ctx!(self, now);
                        Conn::new_from_cookie(&ctx, tuple, seg, &opts)
                    };
                    let id = self.insert(tuple, c);
                    if let Some(c) = self.slots[id.slot as usize].conn.as_mut() {
                        c.events |= conn::EV_ACCEPTED;
                        if !seg.payload.is_empty() || f.fin() {
                            let mut ctx = ctx!(self, now);
                            c.on_segment(&mut ctx, seg);
                        }
                    }
                    self.after(id.slot, now);
                    return Unowned::CookieAccepted(tuple);
                }
                Some(_) => {
                    self.stats.backlog_drops += 1;
                    return Unowned::Dropped;
                }
                None => self.stats.cookies_rejected += 1,
            }
        }
        self.push_rst(now, &tuple, seg)
    }

    fn send_cookie(&mut self, now: Time, tuple: &FourTuple, seg: &Segment<'_>) -> Unowned {
        let cfg = &self.cfg;
        let ts = cfg.timestamps && seg.opts.timestamp.is_some();
        let ipv6 = tuple.is_ipv6();
        let co = CookieOpts {
            mss: seg.opts.mss.unwrap_or(if ipv6 { 1220 } else { 536 }),
            wscale: if ts && cfg.window_scaling {
                seg.opts.window_scale
            } else {
                None
            },
            sack_permitted: ts && cfg.sack && seg.opts.sack_permitted,
            timestamps: ts,
        };
        let cookie = self.cookies.generate(now, tuple, seg.seq.0, &co);
        let mut opts = TcpOptions {
            mss: Some(conn::our_mss(cfg, ipv6)),
            ..TcpOptions::default()
        };
        if co.wscale.is_some() {
            opts.window_scale = Some(conn::wscale_for(cfg.recv_buffer));
        }
        opts.sack_permitted = co.sack_permitted;
        if let (true, Some(t)) = (ts, seg.opts.timestamp) {
            let base = (now.as_millis() as u32).wrapping_add(isn::ts_offset(&cfg.isn_key, tuple));
            let mask = (1u32 << TS_OPT_BITS) - 1;
            opts.timestamp = Some(TcpTimestamp {
                tsval: (base & !mask) | (cookie.ts_bits & mask),
                tsecr: t.tsval,
            });
        }
        let r = Reply {
            src: tuple.local,
            dst: tuple.remote,
            seq: SeqNumber(cookie.isn),
            ack: seg.seq + 1,
            flags: TcpFlags::SYN | TcpFlags::ACK,
            window: cfg.recv_buffer.min(65_535) as u16,
            opts,
        };
        self.stats.cookies_sent += 1;
        self.push_reply(r);
        Unowned::CookieSent
    }

    // ---- output -----------------------------------------------------------

    /// Write the next IP packet (IPv4 or IPv6 header + TCP, checksums
    /// filled) into `buf`. `buf` should hold at least 1500 bytes; nothing
    /// longer than `buf` is ever written.
    #[must_use]
    pub fn poll_transmit(&mut self, now: Time, buf: &mut [u8]) -> Option<Transmit> {
        self.tick(now);
        while let Some(r) = self.replies.pop_front() {
            self.ident = self.ident.wrapping_add(1);
            let out = OutSegment {
                src: r.src,
                dst: r.dst,
                seq: r.seq,
                ack: r.ack,
                flags: r.flags,
                window: r.window,
                opts: r.opts,
                payload_len: 0,
            };
            if let Some(tx) = segment::emit(buf, &out, self.ident, |_| {}) {
                self.stats.segments_out += 1;
                if r.flags.rst() {
                    self.stats.rst_out += 1;
                }
                return Some(tx);
            }
        }
        while let Some(&slot) = self.tx_queue.front() {
            self.tx_queue.pop_front();
            let Some(s) = self.slots.get_mut(slot as usize) else {
                continue;
            };
            s.queued = false;
            let Some(c) = s.conn.as_mut() else { continue };
            self.ident = self.ident.wrapping_add(1);
            let tx = {
                let mut ctx = ctx!(self, now);
                c.poll_transmit(&mut ctx, buf, self.ident)
            };
            if c.wants_transmit() && tx.is_some() {
                s.queued = true;
                self.tx_queue.push_back(slot);
            }
            match c.next_deadline() {
                Some(t) => self.wheel.set(slot, t),
                None => self.wheel.cancel(slot),
            }
            if tx.is_some() {
                return tx;
            }
        }
        None
    }

    /// The earliest time `handle_timeout` has work.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        let tw = self.tw_order.front().map(|&(_, t)| t);
        match (self.wheel.next_deadline(), tw) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, None) => a,
            (None, b) => b,
        }
    }

    /// Run every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Time) {
        self.tick(now);
        let mut expired = core::mem::take(&mut self.expired);
        self.wheel.advance(now, &mut expired);
        for &slot in &expired {
            if let Some(Some(c)) = self.slots.get_mut(slot as usize).map(|s| s.conn.as_mut()) {
                let mut ctx = ctx!(self, now);
                c.on_timeout(&mut ctx);
            }
            self.after(slot, now);
        }
        expired.clear();
        self.expired = expired;
        while let Some(&(t, exp)) = self.tw_order.front() {
            if exp > now {
                break;
            }
            self.tw_order.pop_front();
            if matches!(self.time_wait.get(&t), Some(e) if e.expires == exp) {
                self.time_wait.remove(&t);
                self.events.push_back(Event::TimeWaitEnded(t));
            }
        }
        self.sync();
    }

    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // ---- application ------------------------------------------------------

    /// Copy received in-order bytes into `out`; 0 when none are ready (use
    /// `PeerFinished`/`Closed` events for end of stream).
    pub fn read(&mut self, id: ConnId, out: &mut [u8]) -> Result<usize, TcpError> {
        let now = self.last_now();
        let n = {
            let (cfg, pool, stats, challenge) = (
                &self.cfg,
                &mut self.pool,
                &mut self.stats,
                &mut self.challenge,
            );
            let c = match self.slots.get_mut(id.slot as usize) {
                Some(s) if s.gen == id.gen => match s.conn.as_mut() {
                    Some(c) if !c.released => c,
                    _ => return Err(TcpError::InvalidConn),
                },
                _ => return Err(TcpError::InvalidConn),
            };
            let mut ctx = Ctx {
                now,
                cfg,
                pool,
                stats,
                challenge,
            };
            c.read(&mut ctx, out)?
        };
        self.after(id.slot, now);
        self.sync();
        Ok(n)
    }

    /// Queue up to `data.len()` bytes for sending (as many as the send
    /// buffer and the memory budget take); returns how many.
    pub fn write(&mut self, id: ConnId, data: &[u8]) -> Result<usize, TcpError> {
        let now = self.last_now();
        self.conn_mut(id)?;
        let n = {
            let c = self.slots[id.slot as usize]
                .conn
                .as_mut()
                .ok_or(TcpError::InvalidConn)?;
            let mut ctx = ctx!(self, now);
            c.write(&mut ctx, data)?
        };
        self.after(id.slot, now);
        self.sync();
        Ok(n)
    }

    /// Ask for [`Event::Writable`] once acknowledged data frees send space,
    /// as after a short write: for a writer that will not use the little
    /// room left now (a TLS record does not fit it).
    pub fn wait_writable(&mut self, id: ConnId) -> Result<(), TcpError> {
        self.conn_mut(id)?.wait_writable();
        Ok(())
    }

    /// Send FIN after the queued data (half-close); reading continues.
    pub fn shutdown(&mut self, id: ConnId) -> Result<(), TcpError> {
        let now = self.last_now();
        self.conn_mut(id)?.shutdown(now);
        self.after(id.slot, now);
        Ok(())
    }

    /// Shut down and release the handle: the endpoint finishes the close
    /// on its own; data arriving afterwards is answered with RST (as is
    /// closing with unread data). The handle is invalid afterwards.
    pub fn close(&mut self, id: ConnId) -> Result<(), TcpError> {
        let now = self.last_now();
        {
            let s = match self.slots.get_mut(id.slot as usize) {
                Some(s) if s.gen == id.gen => s,
                _ => return Err(TcpError::InvalidConn),
            };
            let c = match s.conn.as_mut() {
                Some(c) if !c.released => c,
                _ => return Err(TcpError::InvalidConn),
            };
            if matches!(c.state, State::Closed | State::TimeWait)
                && self.table.get(&c.tuple) != Some(&id.slot)
            {
                self.free_slot(id.slot);
                self.sync();
                return Ok(());
            }
            let mut ctx = ctx!(self, now);
            c.release(&mut ctx);
        }
        self.after(id.slot, now);
        self.sync();
        Ok(())
    }

    /// Reset the connection (RST to the peer) and release the handle.
    pub fn abort(&mut self, id: ConnId) -> Result<(), TcpError> {
        let now = self.last_now();
        let c = self.conn_mut(id)?;
        c.abort();
        c.released = true;
        self.after(id.slot, now);
        if let Some(s) = self.slots.get(id.slot as usize) {
            if s.gen == id.gen && s.conn.is_some() {
                self.free_slot(id.slot);
            }
        }
        self.sync();
        Ok(())
    }

    pub fn info(&self, id: ConnId) -> Result<ConnInfo, TcpError> {
        Ok(self.conn_ref(id)?.info())
    }

    pub fn stats(&self) -> &EndpointStats {
        &self.stats
    }

    /// Connections (all states but TIME_WAIT, including closed ones whose
    /// handle is not released yet).
    pub fn conn_count(&self) -> usize {
        self.live
    }

    pub fn time_wait_count(&self) -> usize {
        self.time_wait.len()
    }

    /// Tells the engine how many bytes the applications above hold in
    /// buffers of their own: they count in the memory budget, so stream
    /// buffers get that much less (and apps are told to hold back by the
    /// send space they see shrinking).
    pub fn set_app_memory(&mut self, bytes: usize) {
        self.pool.set_external(bytes);
    }

    /// Bytes of stream buffers in use (the global memory budget's gauge).
    pub fn mem_in_use(&self) -> usize {
        self.pool.in_use()
    }

    /// The time of the latest input (application calls carry no time).
    fn last_now(&self) -> Time {
        self.now_hint
    }

    fn tick(&mut self, now: Time) {
        if now > self.now_hint {
            self.now_hint = now;
        }
    }
}

fn tw_ack(tw: &TimeWait, tuple: &FourTuple, now: Time) -> Reply {
    let mut opts = TcpOptions::default();
    if let Some(recent) = tw.ts_recent {
        opts.timestamp = Some(TcpTimestamp {
            tsval: (now.as_millis() as u32).wrapping_add(tw.ts_offset),
            tsecr: recent,
        });
    }
    Reply {
        src: tuple.local,
        dst: tuple.remote,
        seq: tw.snd_nxt,
        ack: tw.rcv_nxt,
        flags: TcpFlags::ACK,
        window: tw.window,
        opts,
    }
}
