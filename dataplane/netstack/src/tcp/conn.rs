//! One connection: the RFC 9293 state machine with the RFC 7323, 2018,
//! 6298, 5681/6582/6675 and 5961 rules, over the shared components.
//!
//! Sequence numbers are kept as u64 offsets from the ISN ("rel"): the SYN
//! is rel 0, data byte k is rel 1+k (stream offset k in the rings), the FIN
//! follows the last data byte. Wire numbers are converted at the edges.

use core::net::SocketAddr;
use core::time::Duration;
use std::collections::VecDeque;

use super::assembler::Assembler;
use super::cc::{CongestionControl, Controller};
use super::ratelimit::TokenBucket;
use super::ring::{ChunkPool, RecvRing, SendRing};
use super::rtt::RttEstimator;
use super::scoreboard::Scoreboard;
use super::segment::{self, OutSegment, Segment};
use super::syncookie::CookieOpts;
use super::tuple::FourTuple;
use super::types::{ConnInfo, EndpointConfig, EndpointStats, State, TcpError, Transmit};
use crate::time::Time;
use crate::wire::tcp_option::MAX_SACK_BLOCKS;
use crate::wire::{SackBlocks, SeqNumber, TcpFlags, TcpOptions, TcpTimestamp};

/// Duplicate ACKs (or SACKed segments) that signal a loss.
pub const DUPTHRESH: u32 = 3;
/// Retransmissions in flight watched for being lost again (older ones
/// fall back on the RTO).
const REXMIT_RECORDS: usize = 32;
/// RFC 8985 §7.2 WCDelAckT: a lone segment's ACK may be delayed this long.
const TLP_DELAYED_ACK_ALLOWANCE: Duration = Duration::from_millis(200);
/// Out-of-window pure ACKs are answered at most this often per connection
/// (Linux: tcp_invalid_ratelimit), so a flood of them is not reflected.
const OOW_ACK_INTERVAL: Duration = Duration::from_millis(500);
/// Added to 2·SRTT in the probe timeout: on a LAN 2·SRTT is microseconds,
/// less than a peer's batching and scheduling delays (Linux adds
/// TCP_TIMEOUT_MIN, 2 jiffies).
const TLP_SLACK: Duration = Duration::from_millis(2);
/// Default MSS when the peer sends none (RFC 9293 §3.7.1, RFC 8200 §5).
const DEFAULT_MSS_V4: u32 = 536;
const DEFAULT_MSS_V6: u32 = 1220;
/// TCP timestamp option bytes in every segment once negotiated.
const TS_OPT_LEN: u32 = 12;
/// Largest window scale (RFC 7323 §2.3).
const MAX_WSCALE: u8 = 14;

pub const EV_ACCEPTED: u8 = 1;
pub const EV_CONNECTED: u8 = 2;
pub const EV_READABLE: u8 = 4;
pub const EV_WRITABLE: u8 = 8;
pub const EV_PEER_FIN: u8 = 16;
pub const EV_CLOSED: u8 = 32;
pub const EV_RESET: u8 = 64;

/// What a connection needs from its endpoint during one call.
pub struct Ctx<'a> {
    pub now: Time,
    pub cfg: &'a EndpointConfig,
    pub pool: &'a mut ChunkPool,
    pub stats: &'a mut EndpointStats,
    pub challenge: &'a mut TokenBucket,
}

/// A RST (or other stateless segment) the endpoint sends on the
/// connection's behalf after the connection is gone.
#[derive(Clone, Copy, Debug)]
pub struct RstOut {
    pub seq: SeqNumber,
    pub ack: Option<SeqNumber>,
}

/// The window scale we offer for a receive buffer of `buf` bytes.
pub fn wscale_for(buf: usize) -> u8 {
    let mut s = 0u8;
    while s < MAX_WSCALE && (buf >> s) > 65_535 {
        s += 1;
    }
    s
}

/// The MSS we announce on a connection of this family.
pub fn our_mss(cfg: &EndpointConfig, ipv6: bool) -> u16 {
    if ipv6 {
        cfg.mss.saturating_sub(20).max(536)
    } else {
        cfg.mss.max(536)
    }
}

fn min_opt(a: Option<Time>, b: Option<Time>) -> Option<Time> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

fn due(t: Option<Time>, now: Time) -> bool {
    matches!(t, Some(t) if t <= now)
}

#[derive(Debug)]
pub struct Conn {
    pub tuple: FourTuple,
    pub state: State,
    /// The application released its handle (`close`).
    pub released: bool,
    /// Listener whose backlog counts us while in SYN-RECEIVED.
    pub listener: Option<SocketAddr>,
    passive: bool,
    /// Pending `EV_*` bits for the endpoint to turn into events.
    pub events: u8,
    /// Ended abnormally (RST in or out, timeouts).
    pub reset: bool,
    /// A RST the endpoint should send for us.
    pub rst_out: Option<RstOut>,

    // Send side (rel offsets).
    iss: SeqNumber,
    snd_una: u64,
    snd_nxt: u64,
    snd_max: u64,
    snd_wnd: u32,
    max_snd_wnd: u32,
    snd_wl1: SeqNumber,
    snd_wl2: SeqNumber,
    snd_wscale: u8,
    send: SendRing,
    fin_queued: bool,

    // Receive side.
    irs: SeqNumber,
    rcv_nxt_data: u64,
    fin_received: bool,
    /// Data offset of a FIN that arrived beyond a gap.
    fin_pending: Option<u64>,
    rcv_wscale: u8,
    /// Right edge of the window last advertised (data offset).
    rcv_adv: u64,
    recv: RecvRing,
    asm: Assembler,

    // Options.
    mss: u32,
    announce_mss: u16,
    ts_enabled: bool,
    ts_offset: u32,
    ts_recent: u32,
    last_ack_sent: SeqNumber,
    sack_enabled: bool,
    /// SYN options to offer / answer with.
    offer_ws: bool,
    offer_sack: bool,
    offer_ts: bool,

    // Loss recovery.
    rtt: RttEstimator,
    cc: Controller,
    sb: Scoreboard,
    dupacks: u32,
    in_recovery: bool,
    /// The recovery was entered by an RTO with SACK (RFC 6675 §5.1): every
    /// hole below `recover` is lost, and cwnd grows by slow start.
    loss_recovery: bool,
    recover: u64,
    rexmit_una: bool,
    rtt_timing: Option<(u64, Time)>,
    /// SACK recovery's retransmissions still in flight, oldest first.
    rexmits: VecDeque<RexmitRecord>,
    /// Ordinal of the next retransmission, and of the latest one delivered.
    rexmit_seq: u64,
    rexmit_delivered: u64,
    /// RACK for first transmissions (RFC 8985 §6.2, with sequence order
    /// as send order): every hole below this offset is lost, because data
    /// sent after it was SACKed at least a reordering window ago.
    rack_lost_below: u64,
    /// The highest SACKed offset not yet a reordering window old, and
    /// when it was first seen.
    rack_pending: Option<(u64, Time)>,
    /// A tail loss probe is due to go out (RFC 8985 §7), and whether this
    /// flight had its probe already (one per flight: then the RTO).
    tlp_pending: bool,
    tlp_sent: bool,

    // Timers.
    rto_at: Option<Time>,
    /// When a retransmission that later data overtook may be judged lost.
    reorder_at: Option<Time>,
    /// The probe timeout: no ACK for two SRTTs, send a tail loss probe.
    tlp_at: Option<Time>,
    delack_at: Option<Time>,
    persist_at: Option<Time>,
    keepalive_at: Option<Time>,
    fw2_at: Option<Time>,
    persist_backoff: u32,
    /// Zero-window probes sent since the last acceptable ACK.
    probes_unanswered: u32,
    /// When we last answered an unacceptable zero-length segment.
    last_oow_ack: Option<Time>,
    ka_probes: u32,
    syn_retries: u32,

    // Output.
    ack_now: bool,
    segs_unacked: u32,
    syn_pending: bool,
    probe_pending: bool,
    last_send: Time,

    // App signalling.
    readable_signaled: bool,
    write_blocked: bool,

    // Counters.
    retransmits: u64,
    bytes_sent: u64,
    bytes_acked: u64,
    bytes_received: u64,
}

impl Conn {
    fn blank(ctx: &Ctx<'_>, tuple: FourTuple, iss: SeqNumber, ts_offset: u32) -> Self {
        let cfg = ctx.cfg;
        let ipv6 = tuple.is_ipv6();
        let mss = u32::from(our_mss(cfg, ipv6));
        Conn {
            tuple,
            state: State::Closed,
            released: false,
            listener: None,
            passive: false,
            events: 0,
            reset: false,
            rst_out: None,
            iss,
            snd_una: 0,
            snd_nxt: 0,
            snd_max: 0,
            snd_wnd: 0,
            max_snd_wnd: 0,
            snd_wl1: SeqNumber(0),
            snd_wl2: SeqNumber(0),
            snd_wscale: 0,
            send: SendRing::new(cfg.send_buffer),
            fin_queued: false,
            irs: SeqNumber(0),
            rcv_nxt_data: 0,
            fin_received: false,
            fin_pending: None,
            rcv_wscale: 0,
            rcv_adv: 0,
            recv: RecvRing::new(cfg.recv_buffer),
            asm: Assembler::new(cfg.max_ooo_ranges),
            mss,
            announce_mss: our_mss(cfg, ipv6),
            ts_enabled: false,
            ts_offset,
            ts_recent: 0,
            last_ack_sent: SeqNumber(0),
            sack_enabled: false,
            offer_ws: cfg.window_scaling,
            offer_sack: cfg.sack,
            offer_ts: cfg.timestamps,
            rtt: RttEstimator::new(cfg.rtt),
            cc: Controller::new(cfg.congestion, mss, ctx.now),
            sb: Scoreboard::new(cfg.max_sack_ranges),
            dupacks: 0,
            in_recovery: false,
            loss_recovery: false,
            recover: 0,
            rexmit_una: false,
            rtt_timing: None,
            rexmits: VecDeque::new(),
            rexmit_seq: 0,
            rexmit_delivered: 0,
            rack_lost_below: 0,
            rack_pending: None,
            tlp_pending: false,
            tlp_sent: false,
            rto_at: None,
            reorder_at: None,
            tlp_at: None,
            delack_at: None,
            persist_at: None,
            keepalive_at: None,
            fw2_at: None,
            persist_backoff: 0,
            probes_unanswered: 0,
            last_oow_ack: None,
            ka_probes: 0,
            syn_retries: 0,
            ack_now: false,
            segs_unacked: 0,
            syn_pending: false,
            probe_pending: false,
            last_send: ctx.now,
            readable_signaled: false,
            write_blocked: false,
            retransmits: 0,
            bytes_sent: 0,
            bytes_acked: 0,
            bytes_received: 0,
        }
    }

    /// An active open: SYN-SENT, the SYN waiting in the output.
    pub fn new_active(ctx: &Ctx<'_>, tuple: FourTuple, iss: SeqNumber, ts_offset: u32) -> Self {
        let mut c = Self::blank(ctx, tuple, iss, ts_offset);
        c.state = State::SynSent;
        c.syn_pending = true;
        c.rcv_wscale = if c.offer_ws {
            wscale_for(ctx.cfg.recv_buffer)
        } else {
            0
        };
        c
    }

    /// A passive open from a SYN: SYN-RECEIVED, the SYN-ACK waiting.
    pub fn new_passive(
        ctx: &Ctx<'_>,
        tuple: FourTuple,
        iss: SeqNumber,
        ts_offset: u32,
        syn: &Segment<'_>,
        listener: SocketAddr,
    ) -> Self {
        let mut c = Self::blank(ctx, tuple, iss, ts_offset);
        c.state = State::SynReceived;
        c.passive = true;
        c.listener = Some(listener);
        c.syn_pending = true;
        c.irs = syn.seq;
        c.apply_syn_options(ctx.cfg, syn);
        c.snd_wnd = u32::from(syn.window);
        c.max_snd_wnd = c.snd_wnd;
        c.snd_wl1 = syn.seq;
        c
    }

    /// A connection rebuilt from a valid SYN-cookie ACK: ESTABLISHED.
    pub fn new_from_cookie(
        ctx: &Ctx<'_>,
        tuple: FourTuple,
        seg: &Segment<'_>,
        opts: &CookieOpts,
    ) -> Self {
        let iss = seg.ack - 1;
        let mut c = Self::blank(ctx, tuple, iss, 0);
        c.state = State::Established;
        c.passive = true;
        c.irs = seg.seq - 1;
        let cfg = ctx.cfg;
        let ipv6 = tuple.is_ipv6();
        c.ts_enabled = opts.timestamps && cfg.timestamps;
        if c.ts_enabled {
            if let Some(ts) = seg.opts.timestamp {
                c.ts_recent = ts.tsval;
                // Continue from the TSval the SYN-ACK carried.
                c.ts_offset = ts.tsecr.wrapping_sub(ctx.now.as_millis() as u32);
            } else {
                c.ts_enabled = false;
            }
        }
        match opts.wscale {
            Some(ws) if cfg.window_scaling => {
                c.snd_wscale = ws.min(MAX_WSCALE);
                c.rcv_wscale = wscale_for(cfg.recv_buffer);
            }
            _ => {}
        }
        c.sack_enabled = opts.sack_permitted && cfg.sack;
        let peer_mss = u32::from(opts.mss).max(64);
        c.set_mss(cfg, peer_mss, ipv6);
        c.snd_una = 1;
        c.snd_nxt = 1;
        c.snd_max = 1;
        c.snd_wnd = u32::from(seg.window) << c.snd_wscale;
        c.max_snd_wnd = c.snd_wnd;
        c.snd_wl1 = seg.seq;
        c.snd_wl2 = seg.ack;
        c.last_ack_sent = seg.seq;
        c.rcv_adv = c.recv_window_estimate(ctx) as u64;
        c.arm_keepalive(ctx);
        c
    }

    fn set_mss(&mut self, cfg: &EndpointConfig, peer_mss: u32, ipv6: bool) {
        let ours = u32::from(our_mss(cfg, ipv6));
        let mut mss = peer_mss.min(ours).max(64);
        if self.ts_enabled {
            mss -= TS_OPT_LEN;
        }
        self.mss = mss;
        self.cc = Controller::new(cfg.congestion, mss, self.last_send);
    }

    fn apply_syn_options(&mut self, cfg: &EndpointConfig, syn: &Segment<'_>) {
        let ipv6 = self.tuple.is_ipv6();
        self.offer_ts = cfg.timestamps && syn.opts.timestamp.is_some();
        self.ts_enabled = self.offer_ts;
        if let Some(ts) = syn.opts.timestamp {
            self.ts_recent = ts.tsval;
        }
        self.offer_sack = cfg.sack && syn.opts.sack_permitted;
        self.sack_enabled = self.offer_sack;
        match syn.opts.window_scale {
            Some(ws) if cfg.window_scaling => {
                self.offer_ws = true;
                self.snd_wscale = ws.min(MAX_WSCALE);
                self.rcv_wscale = wscale_for(cfg.recv_buffer);
            }
            _ => {
                self.offer_ws = false;
                self.snd_wscale = 0;
                self.rcv_wscale = 0;
            }
        }
        let default = if ipv6 { DEFAULT_MSS_V6 } else { DEFAULT_MSS_V4 };
        let peer = syn.opts.mss.map(u32::from).unwrap_or(default);
        self.set_mss(cfg, peer, ipv6);
    }

    // ---- sequence helpers -------------------------------------------------

    fn seq_of(&self, rel: u64) -> SeqNumber {
        self.iss + rel as u32
    }

    fn rcv_nxt_rel(&self) -> u64 {
        1 + self.rcv_nxt_data + u64::from(self.fin_received)
    }

    fn rcv_nxt(&self) -> SeqNumber {
        self.irs + self.rcv_nxt_rel() as u32
    }

    /// Rel offset of the end of the data written so far.
    fn data_end(&self) -> u64 {
        1 + self.send.end()
    }

    /// Rel offset of our FIN, once queued.
    fn fin_rel(&self) -> Option<u64> {
        self.fin_queued.then(|| self.data_end())
    }

    fn fin_acked(&self) -> bool {
        matches!(self.fin_rel(), Some(f) if self.snd_una > f)
    }

    fn tsval(&self, now: Time) -> u32 {
        (now.as_millis() as u32).wrapping_add(self.ts_offset)
    }

    /// The receive window we could offer now (before the no-shrink rule).
    fn recv_window_estimate(&self, ctx: &Ctx<'_>) -> usize {
        let w = self.recv.window_at(self.rcv_nxt_data);
        let avail = ctx.pool.available();
        if avail >= w {
            w
        } else {
            // Memory pressure: offer what the pool can still hold.
            let m = self.mss as usize;
            (avail / m) * m
        }
    }

    /// The window we accept segments in: what we last advertised.
    fn rcv_wnd(&self) -> u32 {
        self.rcv_adv
            .saturating_sub(self.rcv_nxt_data)
            .min(u64::from(u32::MAX >> 1)) as u32
    }

    fn in_flight(&self) -> u32 {
        self.snd_max
            .saturating_sub(self.snd_una)
            .min(u64::from(u32::MAX)) as u32
    }

    pub fn is_synchronized(&self) -> bool {
        self.state.is_synchronized()
    }

    // ---- timers -----------------------------------------------------------

    pub fn next_deadline(&self) -> Option<Time> {
        let mut t = min_opt(self.rto_at, self.delack_at);
        t = min_opt(t, self.reorder_at);
        t = min_opt(t, self.tlp_at);
        t = min_opt(t, self.persist_at);
        t = min_opt(t, self.keepalive_at);
        min_opt(t, self.fw2_at)
    }

    fn arm_keepalive(&mut self, ctx: &Ctx<'_>) {
        if let Some(ka) = ctx.cfg.keepalive {
            if matches!(self.state, State::Established | State::CloseWait) {
                self.keepalive_at = Some(ctx.now + ka.idle);
                self.ka_probes = 0;
            } else {
                self.keepalive_at = None;
            }
        }
    }

    fn arm_rto(&mut self, now: Time) {
        self.rto_at = Some(now + self.rtt.rto());
    }

    /// (Re)arm the probe timeout while data is in flight outside recovery
    /// (RFC 8985 §7.2): 2·SRTT, plus the peer's delayed-ACK allowance for
    /// a lone segment, never later than the RTO. Without SACK a probe
    /// would not show which segment was lost, and the RTO handles it.
    /// Nor while data waits that cwnd would let out: then the peer's
    /// window holds it back, and a receiver that stopped reading delays
    /// its ACKs (its window does not grow), so a probe would only resend
    /// what it has (Linux: tcp_schedule_loss_probe).
    fn arm_tlp(&mut self, now: Time) {
        self.tlp_at = None;
        let Some(srtt) = self.rtt.srtt() else { return };
        let in_flight = self.snd_max - self.snd_una;
        let window_limited =
            self.snd_nxt < self.data_end() && u64::from(self.cc.window()) > in_flight;
        if !self.sack_enabled
            || self.in_recovery
            || self.tlp_sent
            || in_flight == 0
            || window_limited
            || !self.is_synchronized()
        {
            return;
        }
        let mut pto = srtt * 2 + TLP_SLACK;
        if in_flight <= u64::from(self.mss) {
            pto += TLP_DELAYED_ACK_ALLOWANCE;
        }
        let at = now + pto;
        if self.rto_at.is_none_or(|rto| at < rto) {
            self.tlp_at = Some(at);
        }
    }

    /// Send-buffer autotuning (Linux: tcp_sndbuf_expand): when the writer
    /// was held back by the buffer — everything it held was sent and the
    /// flight did not fill cwnd — the buffer grows to two congestion
    /// windows, up to `send_buffer_max`, and not while send buffers have
    /// used half of their share of the memory budget. Without it, a whole
    /// buffer in flight waits for a receiver's delayed ACK every round.
    fn expand_send_buffer(&mut self, ctx: &mut Ctx<'_>, in_flight_before: u32) {
        let max = ctx.cfg.send_buffer_max;
        let limit = self.send.limit();
        if !self.write_blocked
            || limit >= max
            || self.snd_nxt < self.data_end()
            || in_flight_before >= self.cc.window()
        {
            return;
        }
        let send_share = ctx.pool.max_bytes() - ctx.pool.receive_reserve();
        if ctx.pool.available_for_send() < send_share / 2 {
            return;
        }
        let want = (2 * self.cc.window() as usize).min(max);
        if want > limit {
            self.send.set_limit(want);
        }
    }

    /// Keep the persist timer consistent with the send state.
    fn update_persist(&mut self, now: Time) {
        let wants = self.is_synchronized()
            && self.snd_wnd == 0
            && self.snd_max == self.snd_una
            && self.snd_nxt < self.data_end();
        if !wants {
            self.persist_at = None;
            self.persist_backoff = 0;
        } else if self.persist_at.is_none() {
            let base = self.rtt.rto();
            let d = base
                .checked_mul(1u32 << self.persist_backoff.min(10))
                .unwrap_or(Duration::from_secs(60))
                .min(Duration::from_secs(60));
            self.persist_at = Some(now + d);
        }
    }

    pub fn on_timeout(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now;
        if due(self.delack_at, now) {
            self.delack_at = None;
            self.ack_now = true;
        }
        if due(self.fw2_at, now) {
            self.fw2_at = None;
            if self.state == State::FinWait2 {
                self.enter_closed(false);
                return;
            }
        }
        if due(self.tlp_at, now) {
            self.tlp_at = None;
            if self.is_synchronized() && !self.in_recovery && self.snd_max > self.snd_una {
                self.tlp_pending = true;
                self.tlp_sent = true;
                ctx.stats.tail_loss_probes += 1;
            }
        }
        if due(self.reorder_at, now) {
            self.reorder_at = None;
            if self.is_synchronized() {
                self.rack_step(ctx);
            }
        }
        if due(self.rto_at, now) {
            self.rto_at = None;
            self.on_rto(ctx);
            if self.state == State::Closed {
                return;
            }
        }
        if due(self.persist_at, now) {
            self.persist_at = None;
            if self.probes_unanswered >= ctx.cfg.max_retries {
                // The peer stopped answering its zero window (Linux: the
                // probe timer's tcp_retries2 limit). Without this an
                // orphaned connection probed forever.
                self.rst_out = Some(RstOut {
                    seq: self.seq_of(self.snd_nxt),
                    ack: Some(self.rcv_nxt()),
                });
                self.enter_closed(true);
                return;
            }
            self.probes_unanswered += 1;
            self.probe_pending = true;
            self.persist_backoff = self.persist_backoff.saturating_add(1);
            ctx.stats.zero_window_probes += 1;
            self.update_persist(now);
        }
        if due(self.keepalive_at, now) {
            self.keepalive_at = None;
            if let Some(ka) = ctx.cfg.keepalive {
                if self.snd_max > self.snd_una {
                    // Retransmissions are watching the peer already.
                    self.keepalive_at = Some(now + ka.interval);
                } else if self.ka_probes >= ka.count {
                    ctx.stats.keepalive_timeouts += 1;
                    self.rst_out = Some(RstOut {
                        seq: self.seq_of(self.snd_nxt),
                        ack: Some(self.rcv_nxt()),
                    });
                    self.enter_closed(true);
                } else {
                    self.ka_probes += 1;
                    self.probe_pending = true;
                    self.keepalive_at = Some(now + ka.interval);
                }
            }
        }
    }

    fn on_rto(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now;
        match self.state {
            State::SynSent | State::SynReceived => {
                self.syn_retries += 1;
                if self.syn_retries > ctx.cfg.syn_retries {
                    self.enter_closed(true);
                    return;
                }
                ctx.stats.rto += 1;
                self.rtt.backoff();
                self.syn_pending = true;
                self.arm_rto(now);
            }
            State::Closed | State::TimeWait => {}
            _ => {
                if self.snd_max <= self.snd_una {
                    return;
                }
                if self.rtt.backoffs() >= ctx.cfg.max_retries {
                    self.rst_out = Some(RstOut {
                        seq: self.seq_of(self.snd_nxt),
                        ack: Some(self.rcv_nxt()),
                    });
                    self.enter_closed(true);
                    return;
                }
                ctx.stats.rto += 1;
                if self.rtt.backoffs() == 0 {
                    self.cc.on_rto(now, self.in_flight());
                }
                self.sb.on_rto();
                self.rexmits.clear();
                self.reorder_at = None;
                self.tlp_at = None;
                self.tlp_pending = false;
                // No probes while the RTO's recovery runs (until new ACKs).
                self.tlp_sent = true;
                self.rack_pending = None;
                self.recover = self.snd_max;
                self.dupacks = 0;
                self.rexmit_una = false;
                self.rtt_timing = None;
                // With SACK, refill only the holes (and keep detecting lost
                // retransmissions) instead of going back to SND.UNA: at a
                // few percent loss, going back over the whole window loses
                // one of its segments nearly every time, and each of those
                // waited for another RTO. A second timeout in a row goes
                // back to SND.UNA over everything, SACKed or not, in case
                // the peer discarded what it SACKed (RFC 2018 §8). A sent
                // FIN is left to the go-back path, which resends it.
                let fin_sent = self.fin_rel().is_some_and(|f| self.snd_max > f);
                self.loss_recovery = self.sack_enabled && !fin_sent && self.rtt.backoffs() == 0;
                self.in_recovery = self.loss_recovery;
                if !self.loss_recovery {
                    self.snd_nxt = self.snd_una;
                }
                self.rtt.backoff();
                self.arm_rto(now);
            }
        }
    }

    // ---- state changes ----------------------------------------------------

    fn set_state(&mut self, s: State) {
        self.state = s;
    }

    fn enter_closed(&mut self, reset: bool) {
        if self.passive && self.state == State::SynReceived {
            // A passive open the application never saw (no Accepted yet):
            // nobody will `close` it, so it is released now and the
            // endpoint frees the slot. The `Reset` event still goes out: it
            // carries the 4-tuple the poll loop claimed in its ownership
            // directory (its ConnId is already stale).
            self.reset = true;
            self.released = true;
            self.set_state(State::Closed);
            self.events |= EV_RESET;
            self.clear_timers();
            return;
        }
        self.reset = reset;
        self.set_state(State::Closed);
        self.events |= if reset { EV_RESET } else { EV_CLOSED };
        self.clear_timers();
    }

    fn enter_time_wait(&mut self) {
        self.set_state(State::TimeWait);
        self.events |= EV_CLOSED;
        self.clear_timers();
        // The ACK of the peer's FIN goes out before the entry moves.
        self.ack_now = true;
    }

    fn clear_timers(&mut self) {
        self.rto_at = None;
        self.reorder_at = None;
        self.tlp_at = None;
        self.delack_at = None;
        self.persist_at = None;
        self.keepalive_at = None;
        self.fw2_at = None;
    }

    fn enter_established(&mut self, ctx: &Ctx<'_>) {
        self.set_state(State::Established);
        self.events |= if self.passive {
            EV_ACCEPTED
        } else {
            EV_CONNECTED
        };
        self.arm_keepalive(ctx);
    }

    /// Free the stream buffers (the connection is gone).
    pub fn release_buffers(&mut self, pool: &mut ChunkPool) {
        self.send.clear(pool);
        self.recv.clear(pool);
        self.asm = Assembler::new(1);
    }

    /// Free the send buffer only (TIME_WAIT with unread data).
    pub fn release_send(&mut self, pool: &mut ChunkPool) {
        self.send.clear(pool);
    }

    /// Leave the connection inert (no output, no timers): it left the
    /// connection table and waits for the application's `close`.
    pub fn quiesce(&mut self) {
        self.clear_timers();
        self.ack_now = false;
        self.syn_pending = false;
        self.probe_pending = false;
        self.rexmit_una = false;
    }

    // ---- application calls ------------------------------------------------

    pub fn write(&mut self, ctx: &mut Ctx<'_>, data: &[u8]) -> Result<usize, TcpError> {
        match self.state {
            State::SynSent | State::SynReceived | State::Established | State::CloseWait => {}
            State::Closed if self.reset => return Err(TcpError::Reset),
            _ => return Err(TcpError::InvalidState),
        }
        if self.fin_queued {
            return Err(TcpError::InvalidState);
        }
        let n = self.send.write(ctx.pool, data);
        // A write that exactly fills the buffer blocks too: the writer may
        // wait for room without ever seeing a short write.
        if n < data.len() || self.send.free_space() == 0 {
            self.write_blocked = true;
        }
        if n > 0 && self.snd_max == self.snd_una {
            // Idle restart (RFC 5681 §4.1) when nothing was sent for an RTO.
            if self.is_synchronized() && ctx.now.saturating_since(self.last_send) > self.rtt.rto() {
                self.cc.on_idle_restart(ctx.now);
            }
        }
        self.update_persist(ctx.now);
        Ok(n)
    }

    pub fn read(&mut self, ctx: &mut Ctx<'_>, out: &mut [u8]) -> Result<usize, TcpError> {
        let before = self.rcv_wnd();
        let n = self.recv.read(ctx.pool, self.rcv_nxt_data, out);
        if self.recv.read_offset() >= self.rcv_nxt_data {
            self.readable_signaled = false;
        }
        if n == 0 && self.state == State::Closed && self.reset {
            return Err(TcpError::Reset);
        }
        if n > 0 && self.is_synchronized() && !self.fin_received {
            // Window update when it opened by a useful amount.
            let now_wnd = self.recv_window_estimate(ctx) as u64;
            let grow = now_wnd.saturating_sub(u64::from(before));
            let m = u64::from(self.mss);
            if grow >= 2 * m
                || grow >= (ctx.cfg.recv_buffer as u64) / 2
                || (before == 0 && grow > 0)
            {
                self.ack_now = true;
            }
        }
        Ok(n)
    }

    /// Bytes readable now.
    pub fn readable(&self) -> usize {
        self.rcv_nxt_data.saturating_sub(self.recv.read_offset()) as usize
    }

    pub fn shutdown(&mut self, now: Time) {
        match self.state {
            State::SynSent => self.enter_closed(false),
            State::SynReceived | State::Established => {
                self.fin_queued = true;
                self.set_state(State::FinWait1);
            }
            State::CloseWait => {
                self.fin_queued = true;
                self.set_state(State::LastAck);
            }
            _ => {}
        }
        self.keepalive_at = None;
        self.update_persist(now);
    }

    /// The application dropped its handle.
    pub fn release(&mut self, ctx: &mut Ctx<'_>) {
        self.released = true;
        if self.readable() > 0 {
            // Unread data: abort, like Linux (RFC 2525 §2.17).
            self.abort();
            return;
        }
        self.shutdown(ctx.now);
        if self.state == State::FinWait2 {
            self.fw2_at = Some(ctx.now + ctx.cfg.fin_wait2_timeout);
        }
    }

    pub fn abort(&mut self) {
        if self.state != State::SynSent && self.state != State::Closed {
            self.rst_out = Some(RstOut {
                seq: self.seq_of(self.snd_nxt),
                ack: Some(self.rcv_nxt()),
            });
        }
        if self.state != State::Closed {
            self.enter_closed(true);
        }
    }

    pub fn info(&self) -> ConnInfo {
        ConnInfo {
            tuple: self.tuple,
            state: self.state,
            cwnd: self.cc.window(),
            ssthresh: self.cc.ssthresh(),
            srtt: self.rtt.srtt(),
            rto: self.rtt.rto(),
            mss: self.mss,
            snd_wnd: self.snd_wnd,
            rcv_wnd: self.rcv_wnd(),
            retransmits: self.retransmits,
            bytes_sent: self.bytes_sent,
            bytes_acked: self.bytes_acked,
            bytes_received: self.bytes_received,
            timestamps: self.ts_enabled,
            sack: self.sack_enabled,
            snd_wscale: self.snd_wscale,
            rcv_wscale: self.rcv_wscale,
            send_queued: self.send.len(),
            send_buffer: self.send.limit(),
            recv_queued: self.readable(),
        }
    }

    /// State a TIME_WAIT entry keeps.
    pub fn time_wait_state(&self) -> (SeqNumber, SeqNumber, Option<u32>, u32, u8) {
        (
            self.seq_of(self.snd_max),
            self.rcv_nxt(),
            self.ts_enabled.then_some(self.ts_recent),
            self.ts_offset,
            self.rcv_wscale,
        )
    }

    // ---- input ------------------------------------------------------------

    fn challenge_ack(&mut self, ctx: &mut Ctx<'_>) {
        if ctx.challenge.try_take(ctx.now) {
            ctx.stats.challenge_acks_sent += 1;
            self.ack_now = true;
        } else {
            ctx.stats.challenge_acks_suppressed += 1;
        }
    }

    pub fn on_segment(&mut self, ctx: &mut Ctx<'_>, seg: &Segment<'_>) {
        match self.state {
            State::SynSent => self.on_segment_syn_sent(ctx, seg),
            State::Closed | State::TimeWait => {}
            _ => self.on_segment_other(ctx, seg),
        }
    }

    fn on_segment_syn_sent(&mut self, ctx: &mut Ctx<'_>, seg: &Segment<'_>) {
        let f = seg.flags;
        if f.ack()
            && (seg.ack.distance(self.iss) <= 0 || seg.ack.distance(self.seq_of(self.snd_max)) > 0)
        {
            if f.rst() {
                ctx.stats.rst_ignored += 1;
            } else {
                ctx.stats.bad_acks += 1;
                self.rst_out = Some(RstOut {
                    seq: seg.ack,
                    ack: None,
                });
            }
            return;
        }
        if f.rst() {
            // Without an ACK it is ignored (RFC 9293 §3.10.7.3); with one,
            // the ACK was checked above.
            if f.ack() {
                ctx.stats.rst_in += 1;
                self.enter_closed(true);
            } else {
                ctx.stats.rst_ignored += 1;
            }
            return;
        }
        if !f.syn() {
            return;
        }
        self.irs = seg.seq;
        self.apply_syn_options(ctx.cfg, seg);
        self.last_ack_sent = seg.seq + 1;
        if f.ack() {
            // SYN-ACK.
            let sample = if self.syn_retries == 0 {
                Some(ctx.now.saturating_since(self.last_send))
            } else {
                None
            };
            self.snd_una = 1;
            if self.snd_nxt < 1 {
                self.snd_nxt = 1;
            }
            self.rto_at = None;
            self.rtt.reset_backoff();
            if let Some(s) = sample {
                self.rtt.on_sample(s);
            }
            self.snd_wnd = u32::from(seg.window) << self.snd_wscale;
            self.max_snd_wnd = self.snd_wnd;
            self.snd_wl1 = seg.seq;
            self.snd_wl2 = seg.ack;
            self.enter_established(ctx);
            self.ack_now = true;
            self.update_persist(ctx.now);
        } else {
            // Simultaneous open: SYN-RECEIVED, answer with SYN-ACK.
            self.set_state(State::SynReceived);
            self.snd_wnd = u32::from(seg.window);
            self.snd_wl1 = seg.seq;
            self.syn_pending = true;
        }
    }

    fn on_segment_other(&mut self, ctx: &mut Ctx<'_>, seg: &Segment<'_>) {
        let f = seg.flags;
        let now = ctx.now;
        let rcv_nxt = self.rcv_nxt();
        // The in-order data offset that `rcv_nxt` stands for (data below
        // moves it; the FIN's offset is computed from this one).
        let rcv_nxt_data = self.rcv_nxt_data;
        let wnd = self.rcv_wnd();

        // RFC 5961 §3: RST.
        if f.rst() {
            if seg.seq == rcv_nxt {
                ctx.stats.rst_in += 1;
                // Exact match: the connection is reset (a passive open in
                // SYN-RECEIVED just goes away; the handle was never seen).
                self.enter_closed(true);
            } else if seg.seq.in_window(rcv_nxt, rcv_nxt + wnd.max(1)) {
                ctx.stats.rst_ignored += 1;
                self.challenge_ack(ctx);
            } else {
                ctx.stats.rst_ignored += 1;
            }
            return;
        }

        // RFC 7323 §5: PAWS.
        if self.ts_enabled {
            if let Some(ts) = seg.opts.timestamp {
                if (ts.tsval.wrapping_sub(self.ts_recent) as i32) < 0 {
                    ctx.stats.paws_drops += 1;
                    self.ack_now = true;
                    return;
                }
            }
        }

        // SYN.
        if f.syn() {
            if self.state == State::SynReceived && seg.seq == self.irs && !f.ack() {
                // The peer retransmitted its SYN: so do we.
                self.syn_pending = true;
                return;
            }
            // RFC 5961 §4: challenge ACK, whatever the sequence number.
            self.challenge_ack(ctx);
            return;
        }

        // RFC 9293 §3.10.7.4 first: acceptability.
        let seg_len = seg.len();
        let acceptable = match (seg_len, wnd) {
            (0, 0) => seg.seq == rcv_nxt,
            (0, _) => seg.seq.in_window(rcv_nxt, rcv_nxt + wnd),
            (_, 0) => false,
            _ => {
                seg.seq.in_window(rcv_nxt, rcv_nxt + wnd)
                    || (seg.seq + (seg_len - 1)).in_window(rcv_nxt, rcv_nxt + wnd)
            }
        };
        // A segment that starts exactly at the right edge carries a valid
        // ACK, as Linux's tcp_sequence has it (SEG.SEQ up to RCV.NXT +
        // RCV.WND inclusive): a peer that filled our window and lost some
        // of it sends its pure ACKs with that sequence number, and dropping
        // them dropped every ACK of our data until the holes were filled,
        // so our own retransmissions timed out. A zero-length one is
        // acceptable; one with data (also at RCV.NXT into a zero window)
        // gives its ACK, and its data is dropped and answered.
        let at_edge = seg.seq == rcv_nxt + wnd;
        let acceptable = acceptable || (seg_len == 0 && at_edge);
        let ack_only = !acceptable && at_edge;
        if !acceptable && !ack_only {
            if seg_len > 0 && seg.seq.distance(rcv_nxt) < 0 {
                ctx.stats.dup_segments += 1;
            }
            if seg_len == 0 {
                // Answered, but rate-limited: a segment carrying data is
                // always answered (the peer may have missed our ACK).
                if self
                    .last_oow_ack
                    .is_some_and(|t| now.saturating_since(t) < OOW_ACK_INTERVAL)
                {
                    ctx.stats.oow_acks_suppressed += 1;
                    return;
                }
                self.last_oow_ack = Some(now);
            }
            self.ack_now = true;
            return;
        }

        if !f.ack() {
            return;
        }

        // Timestamps: TS.Recent (RFC 7323 §4.3).
        if self.ts_enabled {
            if let Some(ts) = seg.opts.timestamp {
                if seg.seq.distance(self.last_ack_sent) <= 0
                    && (ts.tsval.wrapping_sub(self.ts_recent) as i32) >= 0
                {
                    self.ts_recent = ts.tsval;
                }
            }
        }

        if ctx.cfg.keepalive.is_some() {
            self.arm_keepalive(ctx);
        }

        // ACK.
        if self.state == State::SynReceived {
            if seg.ack == self.seq_of(1) {
                self.snd_una = 1;
                if self.snd_nxt < 1 {
                    self.snd_nxt = 1;
                }
                self.rto_at = None;
                if self.syn_retries == 0 {
                    self.rtt.on_sample(now.saturating_since(self.last_send));
                }
                self.rtt.reset_backoff();
                self.snd_wnd = u32::from(seg.window) << self.snd_wscale;
                self.max_snd_wnd = self.snd_wnd;
                self.snd_wl1 = seg.seq;
                self.snd_wl2 = seg.ack;
                if self.fin_queued {
                    self.set_state(State::FinWait1);
                    self.events |= EV_ACCEPTED;
                } else {
                    self.enter_established(ctx);
                }
            } else {
                ctx.stats.bad_acks += 1;
                self.rst_out = Some(RstOut {
                    seq: seg.ack,
                    ack: None,
                });
                return;
            }
        } else if !self.on_ack(ctx, seg) {
            return;
        }
        if self.state == State::Closed || self.state == State::TimeWait {
            return;
        }
        if ack_only {
            self.ack_now = true;
            return;
        }

        // Data.
        let data_ok = matches!(
            self.state,
            State::Established | State::FinWait1 | State::FinWait2
        );
        if !seg.payload.is_empty() {
            if self.released && data_ok {
                // Nobody will read it (RFC 9293 §3.10.7.4 / Linux).
                self.rst_out = Some(RstOut {
                    seq: self.seq_of(self.snd_nxt),
                    ack: Some(self.rcv_nxt()),
                });
                self.enter_closed(true);
                return;
            }
            if data_ok {
                self.on_data(ctx, seg);
            } else {
                self.ack_now = true;
            }
        }

        // FIN.
        if f.fin() && data_ok && !self.fin_received {
            let fin_off = rcv_nxt_data as i64
                + i64::from(seg.seq.distance(rcv_nxt))
                + seg.payload.len() as i64;
            if fin_off >= 0 {
                self.fin_pending = Some(fin_off as u64);
            }
            self.ack_now = true;
        }
        self.check_fin();
    }

    /// Consume a FIN that the in-order point reached.
    fn check_fin(&mut self) {
        if self.fin_received {
            return;
        }
        let Some(off) = self.fin_pending else { return };
        if off != self.rcv_nxt_data {
            return;
        }
        self.fin_pending = None;
        self.fin_received = true;
        self.ack_now = true;
        self.events |= EV_PEER_FIN;
        match self.state {
            State::Established => self.set_state(State::CloseWait),
            State::FinWait1 => {
                if self.fin_acked() {
                    self.enter_time_wait();
                } else {
                    self.set_state(State::Closing);
                }
            }
            State::FinWait2 => self.enter_time_wait(),
            _ => {}
        }
    }

    fn on_data(&mut self, ctx: &mut Ctx<'_>, seg: &Segment<'_>) {
        let rcv_nxt = self.rcv_nxt();
        let d = i64::from(seg.seq.distance(rcv_nxt));
        let mut start = self.rcv_nxt_data as i64 + d;
        let mut data = seg.payload;
        if start < self.rcv_nxt_data as i64 {
            let skip = (self.rcv_nxt_data as i64 - start) as usize;
            if skip >= data.len() {
                ctx.stats.dup_segments += 1;
                self.ack_now = true;
                return;
            }
            data = &data[skip..];
            start = self.rcv_nxt_data as i64;
        }
        let start = start as u64;
        // Clip to the advertised window.
        let room = self.rcv_adv.saturating_sub(start) as usize;
        if data.len() > room {
            data = &data[..room];
        }
        if data.is_empty() {
            self.ack_now = true;
            return;
        }
        let stored = self.recv.write_at(ctx.pool, start, data);
        if stored == 0 {
            // Out of memory: drop, the peer will retransmit.
            self.ack_now = true;
            return;
        }
        let end = start + stored as u64;
        if start == self.rcv_nxt_data {
            let had_gap = !self.asm.is_empty();
            self.rcv_nxt_data = end;
            if had_gap {
                self.rcv_nxt_data = self.asm.advance(end).max(end);
                self.ack_now = true;
            }
            self.bytes_received += self.rcv_nxt_data - start;
            if !self.readable_signaled {
                self.readable_signaled = true;
                self.events |= EV_READABLE;
            }
            self.segs_unacked += 1;
            if self.segs_unacked >= 2 || stored < seg.payload.len() {
                self.ack_now = true;
            } else if self.delack_at.is_none() && !self.ack_now {
                self.delack_at = Some(ctx.now + ctx.cfg.delayed_ack);
            }
        } else {
            ctx.stats.ooo_segments += 1;
            if self.asm.insert(start, end).is_err() {
                ctx.stats.ooo_dropped += 1;
            }
            self.ack_now = true;
        }
    }

    /// ACK processing for synchronized states. False: drop the segment.
    fn on_ack(&mut self, ctx: &mut Ctx<'_>, seg: &Segment<'_>) -> bool {
        let now = ctx.now;
        let una_seq = self.seq_of(self.snd_una);
        let d = i64::from(seg.ack.distance(una_seq));
        let ack_rel = self.snd_una as i64 + d;
        if ack_rel > self.snd_max as i64 {
            ctx.stats.bad_acks += 1;
            self.challenge_ack(ctx);
            return false;
        }
        if ack_rel < self.snd_una as i64 - i64::from(self.max_snd_wnd) {
            ctx.stats.bad_acks += 1;
            self.challenge_ack(ctx);
            return false;
        }
        if ack_rel < self.snd_una as i64 {
            // Old ACK: ignore it, keep the data.
            return true;
        }
        let ack_rel = ack_rel as u64;
        // An acceptable ACK: the peer is alive.
        self.probes_unanswered = 0;
        let new_wnd = u32::from(seg.window) << self.snd_wscale;
        let old_wnd = self.snd_wnd;
        // Window update (RFC 9293 §3.10.7.4, fifth).
        if self.snd_wl1.distance(seg.seq) < 0
            || (self.snd_wl1 == seg.seq && self.snd_wl2.distance(seg.ack) <= 0)
        {
            self.snd_wnd = new_wnd;
            self.max_snd_wnd = self.max_snd_wnd.max(new_wnd);
            self.snd_wl1 = seg.seq;
            self.snd_wl2 = seg.ack;
        }

        // SACK scoreboard.
        let mut sack_changed = false;
        if self.sack_enabled && self.snd_max > self.snd_una {
            let mut blocks = [(0u64, 0u64); MAX_SACK_BLOCKS];
            let mut n = 0;
            for &(l, r) in seg.opts.sack_blocks.as_slice() {
                let ld = self.snd_una as i64 + i64::from(l.distance(una_seq));
                let rd = self.snd_una as i64 + i64::from(r.distance(una_seq));
                if ld < 0 || rd <= ld || rd > self.snd_max as i64 {
                    continue;
                }
                if let Some(b) = blocks.get_mut(n) {
                    *b = (ld as u64, rd as u64);
                    n += 1;
                }
            }
            let upd = self.sb.on_ack(ack_rel, &blocks[..n], self.snd_max);
            sack_changed = upd.sack_changed;
        }

        let new_ack = ack_rel > self.snd_una;
        if new_ack {
            self.on_new_ack(ctx, seg, ack_rel);
        }
        let dupack = !new_ack
            && self.snd_max > self.snd_una
            && seg.payload.is_empty()
            && !seg.flags.fin()
            && (new_wnd == old_wnd || sack_changed);
        if dupack {
            // Duplicate ACK (RFC 5681 §2, RFC 6675 §2).
            self.dupacks = self.dupacks.saturating_add(1);
        }
        self.rack_step(ctx);
        if dupack && self.dupacks >= DUPTHRESH {
            self.maybe_enter_recovery(ctx, true);
        }
        self.update_persist(now);
        true
    }

    /// RACK's loss detection (RFC 8985 §6.2) after an ACK or when the
    /// reordering window of an earlier one has passed: mark holes and
    /// retransmissions lost, start recovery, and time the next look.
    fn rack_step(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now;
        let mut wait = None;
        if let (true, Some(min_rtt)) = (self.sack_enabled, self.rtt.min_rtt()) {
            let reo_wnd = min_rtt / 4;
            if let Some((hs, seen)) = self.rack_pending {
                if now >= seen + reo_wnd {
                    self.rack_lost_below = self.rack_lost_below.max(hs);
                    self.rack_pending = None;
                }
            }
            if let Some(hs) = self.sb.highest_sacked() {
                if hs > self.rack_lost_below && self.rack_pending.is_none() {
                    if reo_wnd.is_zero() {
                        self.rack_lost_below = hs;
                    } else {
                        self.rack_pending = Some((hs, now));
                    }
                }
            }
            wait = self.rack_pending.map(|(_, seen)| seen + reo_wnd);
        }
        if !self.rexmits.is_empty() {
            wait = min_opt(wait, self.detect_lost_retransmissions(ctx));
        }
        self.reorder_at = wait;
        self.maybe_enter_recovery(ctx, false);
    }

    /// Fast retransmit and recovery when the loss of SND.UNA shows: three
    /// duplicate ACKs, or with SACK (on any ACK: a peer that is sending
    /// too piggybacks its ACKs on data, and those are never duplicate
    /// ACKs) RFC 6675's IsLost, or RACK's rule: data sent after SND.UNA
    /// was SACKed a reordering window ago. At a few percent loss the
    /// window is a handful of segments, too few for IsLost, and without
    /// RACK's rule each such loss waited for the RTO.
    fn maybe_enter_recovery(&mut self, ctx: &mut Ctx<'_>, three_dupacks: bool) {
        if self.in_recovery || self.snd_max <= self.snd_una || self.snd_una < self.recover {
            return;
        }
        let now = ctx.now;
        let lost = self.sack_enabled
            && (self.rack_lost_below > self.snd_una
                || self.sb.is_lost(self.snd_una, self.mss, DUPTHRESH));
        if three_dupacks || lost {
            self.in_recovery = true;
            self.tlp_at = None;
            self.tlp_pending = false;
            self.recover = self.snd_max;
            self.cc.on_congestion_event(now, self.in_flight());
            self.rexmit_una = true;
            self.rtt_timing = None;
            ctx.stats.fast_retransmits += 1;
        }
    }

    /// Watch a retransmission sent in SACK recovery.
    fn record_retransmission(&mut self, now: Time, start: u64, end: u64) {
        // A range sent again replaces its older record.
        self.rexmits.retain(|r| r.end <= start || r.start >= end);
        if self.rexmits.len() >= REXMIT_RECORDS {
            self.rexmits.pop_front();
        }
        if self.rexmits.capacity() == 0 {
            // First retransmission: sized once, never grows after this.
            self.rexmits.reserve_exact(REXMIT_RECORDS);
        }
        self.rexmit_seq += 1;
        self.rexmits.push_back(RexmitRecord {
            start,
            end,
            sent_at: now,
            snd_max_at: self.snd_max,
            seq: self.rexmit_seq,
        });
    }

    /// RACK's rule (RFC 8985 §6.2) for retransmissions: one is lost when
    /// data sent after it was delivered and it was not, once it has had
    /// a quarter of the minimum RTT more than that data to arrive. RFC
    /// 6675 alone cannot see these losses (the range is below HighRxt),
    /// so each of them cost an RTO.
    fn detect_lost_retransmissions(&mut self, ctx: &mut Ctx<'_>) -> Option<Time> {
        let una = self.snd_una;
        // Delivered: cumulatively ACKed or SACKed whole.
        let mut delivered = self.rexmit_delivered;
        let sb = &self.sb;
        self.rexmits.retain(|r| {
            let from = r.start.max(una);
            let done = from >= r.end || sb.sacked_in(from, r.end) == r.end - from;
            if done {
                delivered = delivered.max(r.seq);
            }
            !done
        });
        self.rexmit_delivered = delivered;
        let highest_sacked = self.sb.highest_sacked().unwrap_or(0);
        let now = ctx.now;
        let min_rtt = self.rtt.min_rtt().unwrap_or(Duration::ZERO);
        let reo_wnd = min_rtt / 4;
        let sb = &mut self.sb;
        let mut lost = 0;
        let mut wait = None;
        self.rexmits.retain(|r| {
            if delivered <= r.seq && highest_sacked <= r.snd_max_at {
                return true;
            }
            let at = r.sent_at + min_rtt + reo_wnd;
            if now < at {
                // Overtaken, but it may only be reordered: look again then.
                wait = min_opt(wait, Some(at));
                return true;
            }
            sb.mark_relost(r.start.max(una), r.end);
            lost += 1;
            false
        });
        ctx.stats.lost_retransmits += lost;
        wait
    }

    fn on_new_ack(&mut self, ctx: &mut Ctx<'_>, seg: &Segment<'_>, ack_rel: u64) {
        let now = ctx.now;
        let acked = ack_rel - self.snd_una;
        let in_flight_before = self.in_flight();
        // RTT sample (RFC 7323 §4.1 with timestamps, else Karn's rule).
        let mut sample = None;
        if self.ts_enabled {
            if let Some(ts) = seg.opts.timestamp {
                let ms = self.tsval(now).wrapping_sub(ts.tsecr);
                if ts.tsecr != 0 && ms < 60_000 {
                    sample = Some(Duration::from_millis(u64::from(ms)));
                }
            }
        } else if let Some((at, t)) = self.rtt_timing {
            if ack_rel >= at {
                sample = Some(now.saturating_since(t));
                self.rtt_timing = None;
            }
        }
        let data_upto = ack_rel.saturating_sub(1).min(self.send.end());
        let released_before = self.send.start();
        self.send.release(ctx.pool, data_upto);
        self.bytes_acked += data_upto.saturating_sub(released_before);
        self.snd_una = ack_rel;
        if self.snd_nxt < self.snd_una {
            self.snd_nxt = self.snd_una;
        }
        self.rtt.reset_backoff();
        if let Some(s) = sample {
            self.rtt.on_sample(s);
        }
        self.dupacks = 0;
        let was_loss_recovery = self.loss_recovery;
        if self.in_recovery {
            if self.snd_una >= self.recover {
                self.in_recovery = false;
                self.loss_recovery = false;
                self.rexmit_una = false;
                if !was_loss_recovery {
                    self.cc.on_recovery_end(now);
                }
            } else if !self.sack_enabled {
                // NewReno partial ACK (RFC 6582 §3.2 step 3).
                self.rexmit_una = true;
            }
        }
        if !self.in_recovery || was_loss_recovery {
            // After an RTO the window grows by slow start while the holes
            // are refilled (the controller left recovery at the RTO).
            let acked32 = acked.min(u64::from(u32::MAX)) as u32;
            self.cc.on_ack(now, acked32, in_flight_before, sample);
        }
        if self.snd_max > self.snd_una {
            self.arm_rto(now);
        } else {
            self.rto_at = None;
        }
        // A new flight: it gets its own probe.
        self.tlp_sent = false;
        self.tlp_pending = false;
        self.arm_tlp(now);
        self.expand_send_buffer(ctx, in_flight_before);
        if self.write_blocked && self.send.free_space() > 0 {
            self.write_blocked = false;
            self.events |= EV_WRITABLE;
        }
        // Our FIN acknowledged?
        if self.fin_acked() {
            match self.state {
                State::FinWait1 => {
                    self.set_state(State::FinWait2);
                    if self.released {
                        self.fw2_at = Some(now + ctx.cfg.fin_wait2_timeout);
                    }
                }
                State::Closing => self.enter_time_wait(),
                State::LastAck => self.enter_closed(false),
                _ => {}
            }
        }
    }

    // ---- output -----------------------------------------------------------

    /// Whether `poll_transmit` has something to send now.
    pub fn wants_transmit(&self) -> bool {
        match self.state {
            State::Closed => false,
            State::TimeWait => self.ack_now,
            State::SynSent | State::SynReceived => self.syn_pending || self.ack_now,
            _ => {
                self.ack_now
                    || self.probe_pending
                    || self.rexmit_una
                    || self.pick_data(usize::MAX).is_some()
                    || self.fin_to_send()
            }
        }
    }

    fn fin_to_send(&self) -> bool {
        match self.fin_rel() {
            Some(f) => self.snd_nxt == f && self.snd_una <= f,
            None => false,
        }
    }

    /// The next range of data to send: (start rel, len, retransmission).
    fn pick_data(&self, cap: usize) -> Option<(u64, u32, bool)> {
        let mss = (self.mss as usize).min(cap) as u64;
        if mss == 0 {
            return None;
        }
        let data_end = self.data_end();
        let cwnd = u64::from(self.cc.window());
        let wnd_edge = self.snd_una + u64::from(self.snd_wnd);
        if self.tlp_pending {
            // The probe (RFC 8985 §7.3): new data if the peer's window
            // takes it, else the last segment again; cwnd does not apply.
            let room = wnd_edge
                .saturating_sub(self.snd_nxt)
                .min(data_end.saturating_sub(self.snd_nxt));
            if self.snd_nxt == self.snd_max && room > 0 {
                return Some((self.snd_nxt, room.min(mss) as u32, false));
            }
            let end = self.snd_max.min(data_end);
            let start = end.saturating_sub(mss).max(self.snd_una).max(1);
            if start < end {
                return Some((start, (end - start) as u32, true));
            }
        }
        if self.rexmit_una && self.snd_max > self.snd_una && self.snd_una < data_end {
            let len = mss.min(data_end - self.snd_una);
            return Some((self.snd_una, len as u32, true));
        }
        if self.in_recovery && self.sack_enabled {
            let lost_below = if self.loss_recovery {
                self.recover.max(self.rack_lost_below)
            } else {
                self.rack_lost_below
            };
            let pipe = self
                .sb
                .pipe(self.snd_una, self.snd_max, self.mss, DUPTHRESH, lost_below);
            if pipe >= cwnd {
                return None;
            }
            let (start, len) = self.sb.next_seg(
                self.snd_una,
                self.snd_max,
                data_end,
                self.mss,
                DUPTHRESH,
                lost_below,
            )?;
            let len = u64::from(len).min(mss);
            if start < self.snd_max {
                let len = len.min(data_end.saturating_sub(start));
                return (len > 0).then_some((start, len as u32, true));
            }
            let len = len
                .min(wnd_edge.saturating_sub(self.snd_nxt))
                .min(data_end.saturating_sub(self.snd_nxt));
            return (len > 0).then_some((self.snd_nxt, len as u32, false));
        }
        // Flight: in NewReno recovery each duplicate ACK is a segment gone.
        let mut flight = self.snd_nxt.saturating_sub(self.snd_una);
        if self.in_recovery {
            flight = flight.saturating_sub(u64::from(self.dupacks) * u64::from(self.mss));
        }
        if flight >= cwnd {
            return None;
        }
        let room = (cwnd - flight).min(wnd_edge.saturating_sub(self.snd_nxt));
        if self.snd_nxt < self.snd_max && self.snd_nxt < data_end {
            // Going back after an RTO.
            let len = mss
                .min(self.snd_max - self.snd_nxt)
                .min(data_end - self.snd_nxt)
                .min(room.max(if self.snd_nxt == self.snd_una { 1 } else { 0 }));
            return (len > 0).then_some((self.snd_nxt, len as u32, true));
        }
        if self.snd_nxt >= data_end {
            return None;
        }
        let len = mss.min(data_end - self.snd_nxt).min(room);
        (len > 0).then_some((self.snd_nxt, len as u32, false))
    }

    fn window_field(&mut self, ctx: &Ctx<'_>, syn: bool) -> u16 {
        let est = self.recv_window_estimate(ctx) as u64;
        let offered = self.rcv_adv.saturating_sub(self.rcv_nxt_data);
        let shift = if syn { 0 } else { self.rcv_wscale };
        // A scaled window rounds down, so the edge it shows can sit up to
        // 2^shift - 1 bytes left of one offered before. The peer may have
        // sent up to that earlier edge already (Linux does, and then its
        // ACKs carry a sequence past RCV.NXT), so `rcv_adv` keeps the
        // furthest edge offered and segments are accepted up to it. Each
        // offer rounds down from free space, so that edge never passes
        // what the buffer holds.
        let field = (est.max(offered) >> shift).min(65_535);
        self.rcv_adv = self.rcv_adv.max(self.rcv_nxt_data + (field << shift));
        field as u16
    }

    fn base_options(&self, now: Time) -> TcpOptions {
        let mut o = TcpOptions::default();
        if self.ts_enabled {
            o.timestamp = Some(TcpTimestamp {
                tsval: self.tsval(now),
                tsecr: self.ts_recent,
            });
        }
        if self.sack_enabled && !self.asm.is_empty() {
            let max = if self.ts_enabled { 3 } else { MAX_SACK_BLOCKS };
            let mut blocks = [(0u64, 0u64); MAX_SACK_BLOCKS];
            let n = self.asm.sack_blocks(&mut blocks[..max]);
            let mut sb = SackBlocks::EMPTY;
            for &(s, e) in blocks.iter().take(n.min(max)) {
                let l = self.irs + (1 + s) as u32;
                let r = self.irs + (1 + e) as u32;
                let _ = sb.push((l, r));
            }
            o.sack_blocks = sb;
        }
        o
    }

    fn syn_options(&self, now: Time) -> TcpOptions {
        let mut o = TcpOptions {
            mss: Some(our_mss_for(self)),
            ..TcpOptions::default()
        };
        if self.offer_ws {
            o.window_scale = Some(self.rcv_wscale);
        }
        o.sack_permitted = self.offer_sack;
        if self.offer_ts {
            o.timestamp = Some(TcpTimestamp {
                tsval: self.tsval(now),
                tsecr: if self.state == State::SynSent {
                    0
                } else {
                    self.ts_recent
                },
            });
        }
        o
    }

    /// Write the next segment into `buf` (IP header included).
    pub fn poll_transmit(
        &mut self,
        ctx: &mut Ctx<'_>,
        buf: &mut [u8],
        ident: u16,
    ) -> Option<Transmit> {
        let now = ctx.now;
        let ip_hlen = segment::ip_header_len(self.tuple.is_ipv6());
        match self.state {
            State::Closed => return None,
            State::SynSent | State::SynReceived if self.syn_pending => {
                self.syn_pending = false;
                let synack = self.state == State::SynReceived;
                let opts = self.syn_options(now);
                let window = self.window_field(ctx, true);
                let out = OutSegment {
                    src: self.tuple.local,
                    dst: self.tuple.remote,
                    seq: self.iss,
                    ack: if synack { self.rcv_nxt() } else { SeqNumber(0) },
                    flags: if synack {
                        TcpFlags::SYN | TcpFlags::ACK
                    } else {
                        TcpFlags::SYN
                    },
                    window,
                    opts,
                    payload_len: 0,
                };
                let tx = segment::emit(buf, &out, ident, |_| {})?;
                if self.syn_retries > 0 {
                    self.retransmits += 1;
                    ctx.stats.retransmits += 1;
                }
                if synack {
                    self.last_ack_sent = out.ack;
                }
                self.snd_nxt = self.snd_nxt.max(1);
                self.snd_max = self.snd_max.max(1);
                if self.rto_at.is_none() {
                    self.arm_rto(now);
                }
                self.last_send = now;
                self.ack_now = false;
                ctx.stats.segments_out += 1;
                return Some(tx);
            }
            _ => {}
        }
        if !self.is_synchronized() && !self.ack_now {
            return None;
        }
        let opts = self.base_options(now);
        let opts_len = opts.buffer_len();
        // The peer's MSS bounds data plus options (RFC 6691, RFC 9293
        // §3.7.1): `mss` already leaves room for the timestamp, so SACK
        // blocks come out of the payload. Without this a full segment with
        // three SACK blocks was 28 bytes over the path MTU, and the link
        // dropped it: every full segment we sent while holding the peer's
        // out-of-order data.
        let ts_room = if self.ts_enabled {
            TS_OPT_LEN as usize
        } else {
            0
        };
        let cap = buf
            .len()
            .saturating_sub(ip_hlen + 20 + opts_len)
            .min((self.mss as usize + ts_room).saturating_sub(opts_len));

        let mut seq_rel = self.snd_nxt;
        let mut payload: Option<(u64, u32, bool)> = None;
        let mut fin = false;
        let mut probe = false;
        if self.is_synchronized() {
            if let Some(p) = self.pick_data(cap) {
                self.tlp_pending = false;
                payload = Some(p);
                seq_rel = p.0;
                if let Some(f) = self.fin_rel() {
                    fin = p.0 + u64::from(p.1) == f;
                }
            } else if self.fin_to_send() {
                fin = true;
                seq_rel = self.snd_nxt;
            } else if self.probe_pending {
                probe = true;
            } else if !self.ack_now {
                self.rexmit_una = false;
                return None;
            } else {
                // A pure ACK carries the highest sequence number sent (the
                // RFC's SND.NXT): after an RTO our `snd_nxt` is rolled back
                // to SND.UNA, and the peer, which may hold data up to
                // SND.MAX, would find the lower number unacceptable, drop
                // the ACK and answer with its own (an ACK loop).
                seq_rel = self.snd_max;
            }
        }
        let window = self.window_field(ctx, false);
        let mut flags = TcpFlags::ACK;
        if fin {
            flags |= TcpFlags::FIN;
        }
        let (plen, rexmit) = payload.map(|p| (p.1 as usize, p.2)).unwrap_or((0, false));
        if plen > 0 {
            flags |= TcpFlags::PSH;
        }
        let seq = if probe {
            self.seq_of(self.snd_una) - 1
        } else {
            self.seq_of(seq_rel)
        };
        let out = OutSegment {
            src: self.tuple.local,
            dst: self.tuple.remote,
            seq,
            ack: self.rcv_nxt(),
            flags,
            window,
            opts,
            payload_len: plen,
        };
        let send = &self.send;
        let data_off = seq_rel.saturating_sub(1);
        let tx = segment::emit(buf, &out, ident, |p| {
            let n = send.read_at(data_off, p);
            if n < p.len() {
                p[n..].fill(0);
            }
        })?;
        ctx.stats.segments_out += 1;
        self.last_ack_sent = out.ack;
        self.ack_now = false;
        self.segs_unacked = 0;
        self.delack_at = None;
        if probe {
            self.probe_pending = false;
            return Some(tx);
        }
        let seg_end = seq_rel + plen as u64 + u64::from(fin);
        let is_rexmit = rexmit || (fin && seq_rel < self.snd_max && plen == 0);
        if plen > 0 || fin {
            if rexmit_una_done(self, seq_rel) {
                self.rexmit_una = false;
            }
            if is_rexmit {
                self.retransmits += 1;
                ctx.stats.retransmits += 1;
                if self.sack_enabled && self.in_recovery {
                    self.sb.mark_retransmitted(seq_rel, seg_end);
                    self.record_retransmission(now, seq_rel, seg_end);
                }
                if matches!(self.rtt_timing, Some((at, _)) if at > seq_rel) {
                    self.rtt_timing = None;
                }
            } else {
                self.bytes_sent += plen as u64;
                if !self.ts_enabled && self.rtt_timing.is_none() {
                    self.rtt_timing = Some((seg_end, now));
                }
            }
            if seq_rel <= self.snd_nxt && seg_end > self.snd_nxt {
                self.snd_nxt = seg_end;
            }
            self.snd_max = self.snd_max.max(self.snd_nxt).max(seg_end);
            if self.rto_at.is_none() {
                self.arm_rto(now);
            }
            self.arm_tlp(now);
            self.last_send = now;
            self.persist_at = None;
        }
        self.update_persist(now);
        Some(tx)
    }
}

/// One retransmission sent in SACK recovery, watched for being lost too.
#[derive(Clone, Copy, Debug)]
struct RexmitRecord {
    start: u64,
    end: u64,
    sent_at: Time,
    /// SND.MAX when it was sent: data at or above was first sent later.
    snd_max_at: u64,
    /// Ordinal among retransmissions.
    seq: u64,
}

fn rexmit_una_done(c: &Conn, seq_rel: u64) -> bool {
    c.rexmit_una && seq_rel == c.snd_una
}

/// The MSS option carries what we can receive, independent of the peer.
fn our_mss_for(c: &Conn) -> u16 {
    c.announce_mss
}
