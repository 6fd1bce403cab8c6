//! One connection: the RFC 9293 state machine with the RFC 7323, 2018,
//! 6298, 5681/6582/6675 and 5961 rules, over the shared components.
//!
//! Sequence numbers are kept as u64 offsets from the ISN ("rel"): the SYN
//! is rel 0, data byte k is rel 1+k (stream offset k in the rings), the FIN
//! follows the last data byte. Wire numbers are converted at the edges.
//!
//! `Conn` holds the state machine and dispatches arriving segments; the
//! rest of its state sits in sub-structs, each in its own file with the
//! methods that work on it:
//!
//! - `send`: `SendState` (SND.UNA/NXT/MAX/WND, the send ring and its
//!   autotuning), ACK processing, choosing and building outgoing segments;
//! - `recv`: `RecvState` (RCV.NXT, the advertised window and its scale,
//!   reassembly, the receive ring, when an ACK is owed), acceptability and
//!   incoming data;
//! - `recovery`: `Recovery` (RTT estimator, congestion controller, SACK
//!   scoreboard, fast retransmit, RACK-TLP, the RTO's recovery);
//! - `timers`: `Timers` (RTO, reordering, TLP, delayed ACK, persist,
//!   keepalive, FIN-WAIT-2 deadlines) and what each does when it fires;
//! - `options`: `Negotiated` (MSS, window scaling, SACK and timestamps as
//!   the SYN exchange agreed, TS.Recent) and the options we send.

mod options;
mod recovery;
mod recv;
mod send;
mod timers;

use core::net::SocketAddr;

use super::assembler::Assembler;
use super::cc::CongestionControl;
use super::ratelimit::TokenBucket;
use super::ring::ChunkPool;
use super::segment::Segment;
use super::syncookie::CookieOpts;
use super::tuple::FourTuple;
use super::types::{ConnInfo, EndpointConfig, EndpointStats, State};
use crate::time::Time;
use crate::wire::SeqNumber;

use options::Negotiated;
pub use options::{our_mss, wscale_for};
use recovery::Recovery;
use recv::{Acceptance, RecvState};
use send::SendState;
use timers::Timers;

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

    /// Options the SYN exchange agreed on, and the timestamp state.
    opts: Negotiated,
    /// Send side (rel offsets).
    snd: SendState,
    /// Receive side.
    rcv: RecvState,
    /// Loss recovery, with the RTT estimator and congestion controller.
    rec: Recovery,
    /// Per-connection deadlines.
    timers: Timers,
}

impl Conn {
    fn blank(ctx: &Ctx<'_>, tuple: FourTuple, iss: SeqNumber, ts_offset: u32) -> Self {
        let cfg = ctx.cfg;
        let opts = Negotiated::new(cfg, tuple.is_ipv6(), ts_offset);
        Conn {
            tuple,
            state: State::Closed,
            released: false,
            listener: None,
            passive: false,
            events: 0,
            reset: false,
            rst_out: None,
            snd: SendState::new(cfg, iss, ctx.now),
            rcv: RecvState::new(cfg),
            rec: Recovery::new(cfg, opts.mss, ctx.now),
            timers: Timers::default(),
            opts,
        }
    }

    /// An active open: SYN-SENT, the SYN waiting in the output.
    pub fn new_active(ctx: &Ctx<'_>, tuple: FourTuple, iss: SeqNumber, ts_offset: u32) -> Self {
        let mut c = Self::blank(ctx, tuple, iss, ts_offset);
        c.state = State::SynSent;
        c.snd.syn_pending = true;
        c.rcv.wscale = if c.opts.offer_ws {
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
        c.snd.syn_pending = true;
        c.rcv.irs = syn.seq;
        c.apply_syn_options(ctx.cfg, syn);
        c.snd.wnd = u32::from(syn.window);
        c.snd.max_wnd = c.snd.wnd;
        c.snd.wl1 = syn.seq;
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
        c.rcv.irs = seg.seq - 1;
        c.apply_cookie_options(ctx, seg, opts);
        c.snd.una = 1;
        c.snd.nxt = 1;
        c.snd.max = 1;
        c.snd.set_window(seg);
        c.opts.last_ack_sent = seg.seq;
        c.rcv.adv = c.rcv.window_estimate(ctx.pool, c.opts.mss) as u64;
        c.arm_keepalive(ctx);
        c
    }

    pub fn is_synchronized(&self) -> bool {
        self.state.is_synchronized()
    }

    /// Queue a RST from SND.NXT that acknowledges RCV.NXT, for the
    /// endpoint to send.
    fn queue_rst(&mut self) {
        self.rst_out = Some(RstOut {
            seq: self.snd.seq_of(self.snd.nxt),
            ack: Some(self.rcv.nxt()),
        });
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
            self.timers.clear();
            return;
        }
        self.reset = reset;
        self.set_state(State::Closed);
        self.events |= if reset { EV_RESET } else { EV_CLOSED };
        self.timers.clear();
    }

    fn enter_time_wait(&mut self) {
        self.set_state(State::TimeWait);
        self.events |= EV_CLOSED;
        self.timers.clear();
        // The ACK of the peer's FIN goes out before the entry moves.
        self.rcv.ack_now = true;
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
        self.snd.ring.clear(pool);
        self.rcv.ring.clear(pool);
        self.rcv.asm = Assembler::new(1);
    }

    /// Free the send buffer only (TIME_WAIT with unread data).
    pub fn release_send(&mut self, pool: &mut ChunkPool) {
        self.snd.ring.clear(pool);
    }

    /// Leave the connection inert (no output, no timers): it left the
    /// connection table and waits for the application's `close`.
    pub fn quiesce(&mut self) {
        self.timers.clear();
        self.rcv.ack_now = false;
        self.snd.syn_pending = false;
        self.snd.probe_pending = false;
        self.rec.rexmit_una = false;
    }

    // ---- application calls ------------------------------------------------

    pub fn shutdown(&mut self, now: Time) {
        match self.state {
            State::SynSent => self.enter_closed(false),
            State::SynReceived | State::Established => {
                self.snd.fin_queued = true;
                self.set_state(State::FinWait1);
            }
            State::CloseWait => {
                self.snd.fin_queued = true;
                self.set_state(State::LastAck);
            }
            _ => {}
        }
        self.timers.keepalive_at = None;
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
            self.timers.fw2_at = Some(ctx.now + ctx.cfg.fin_wait2_timeout);
        }
    }

    pub fn abort(&mut self) {
        if self.state != State::SynSent && self.state != State::Closed {
            self.queue_rst();
        }
        if self.state != State::Closed {
            self.enter_closed(true);
        }
    }

    pub fn info(&self) -> ConnInfo {
        ConnInfo {
            tuple: self.tuple,
            state: self.state,
            cwnd: self.rec.cc.window(),
            ssthresh: self.rec.cc.ssthresh(),
            srtt: self.rec.rtt.srtt(),
            rto: self.rec.rtt.rto(),
            mss: self.opts.mss,
            snd_wnd: self.snd.wnd,
            rcv_wnd: self.rcv.wnd(),
            retransmits: self.snd.retransmits,
            bytes_sent: self.snd.bytes_sent,
            bytes_acked: self.snd.bytes_acked,
            bytes_received: self.rcv.bytes_received,
            timestamps: self.opts.ts_enabled,
            sack: self.opts.sack_enabled,
            snd_wscale: self.snd.wscale,
            rcv_wscale: self.rcv.wscale,
            send_queued: self.snd.ring.len(),
            send_buffer: self.snd.ring.limit(),
            recv_queued: self.readable(),
        }
    }

    /// State a TIME_WAIT entry keeps.
    pub fn time_wait_state(&self) -> (SeqNumber, SeqNumber, Option<u32>, u32, u8) {
        (
            self.snd.seq_of(self.snd.max),
            self.rcv.nxt(),
            self.opts.ts_enabled.then_some(self.opts.ts_recent),
            self.opts.ts_offset,
            self.rcv.wscale,
        )
    }

    // ---- input ------------------------------------------------------------

    /// An unacceptable ACK of our SYN is answered with
    /// <SEQ=SEG.ACK><CTL=RST> (RFC 9293 §3.10.7.3 and §3.10.7.4).
    fn reset_bad_ack(&mut self, ctx: &mut Ctx<'_>, seg: &Segment<'_>) {
        ctx.stats.bad_acks += 1;
        self.rst_out = Some(RstOut {
            seq: seg.ack,
            ack: None,
        });
    }

    fn challenge_ack(&mut self, ctx: &mut Ctx<'_>) {
        if ctx.challenge.try_take(ctx.now) {
            ctx.stats.challenge_acks_sent += 1;
            self.rcv.ack_now = true;
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
            && (seg.ack.distance(self.snd.iss) <= 0
                || seg.ack.distance(self.snd.seq_of(self.snd.max)) > 0)
        {
            if f.rst() {
                ctx.stats.rst_ignored += 1;
            } else {
                self.reset_bad_ack(ctx, seg);
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
        self.rcv.irs = seg.seq;
        self.apply_syn_options(ctx.cfg, seg);
        self.opts.last_ack_sent = seg.seq + 1;
        if f.ack() {
            // SYN-ACK.
            let sample = if self.timers.syn_retries == 0 {
                Some(ctx.now.saturating_since(self.snd.last_send))
            } else {
                None
            };
            self.snd.on_syn_acked(seg);
            ctx.stats.segments_validated += 1;
            self.timers.rto_at = None;
            self.rec.rtt.reset_backoff();
            if let Some(s) = sample {
                self.rec.rtt.on_sample(s);
            }
            self.enter_established(ctx);
            self.rcv.ack_now = true;
            self.update_persist(ctx.now);
        } else {
            // Simultaneous open: SYN-RECEIVED, answer with SYN-ACK.
            self.set_state(State::SynReceived);
            self.snd.wnd = u32::from(seg.window);
            self.snd.wl1 = seg.seq;
            self.snd.syn_pending = true;
        }
    }

    fn on_segment_other(&mut self, ctx: &mut Ctx<'_>, seg: &Segment<'_>) {
        let f = seg.flags;
        let now = ctx.now;
        let rcv_nxt = self.rcv.nxt();
        // The in-order data offset that `rcv_nxt` stands for (data below
        // moves it; the FIN's offset is computed from this one).
        let rcv_nxt_data = self.rcv.nxt_data;
        let wnd = self.rcv.wnd();

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
        if self.opts.paws_rejects(seg) {
            ctx.stats.paws_drops += 1;
            self.rcv.ack_now = true;
            return;
        }

        // SYN.
        if f.syn() {
            if self.state == State::SynReceived && seg.seq == self.rcv.irs && !f.ack() {
                // The peer retransmitted its SYN: so do we.
                self.snd.syn_pending = true;
                return;
            }
            // RFC 5961 §4: challenge ACK, whatever the sequence number.
            self.challenge_ack(ctx);
            return;
        }

        let ack_only = match self.rcv.acceptance(seg) {
            Acceptance::InWindow => false,
            Acceptance::AckOnly => true,
            Acceptance::Outside => {
                self.rcv.on_outside(seg, now, ctx.stats);
                return;
            }
        };

        if !f.ack() {
            return;
        }

        self.opts.update_ts_recent(seg);

        if ctx.cfg.keepalive.is_some() {
            self.arm_keepalive(ctx);
        }

        // ACK.
        if self.state == State::SynReceived {
            if seg.ack == self.snd.seq_of(1) {
                self.snd.on_syn_acked(seg);
                self.timers.rto_at = None;
                if self.timers.syn_retries == 0 {
                    self.rec
                        .rtt
                        .on_sample(now.saturating_since(self.snd.last_send));
                }
                self.rec.rtt.reset_backoff();
                if self.snd.fin_queued {
                    self.set_state(State::FinWait1);
                    self.events |= EV_ACCEPTED;
                } else {
                    self.enter_established(ctx);
                }
            } else {
                self.reset_bad_ack(ctx, seg);
                return;
            }
        } else if !self.on_ack(ctx, seg) {
            return;
        }
        ctx.stats.segments_validated += 1;
        if self.state == State::Closed || self.state == State::TimeWait {
            return;
        }
        if ack_only {
            self.rcv.ack_now = true;
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
                self.queue_rst();
                self.enter_closed(true);
                return;
            }
            if data_ok {
                self.on_data(ctx, seg);
            } else {
                self.rcv.ack_now = true;
            }
        }

        // FIN.
        if f.fin() && data_ok && !self.rcv.fin_received {
            let fin_off = rcv_nxt_data as i64
                + i64::from(seg.seq.distance(rcv_nxt))
                + seg.payload.len() as i64;
            if fin_off >= 0 {
                self.rcv.fin_pending = Some(fin_off as u64);
            }
            self.rcv.ack_now = true;
        }
        self.check_fin();
    }

    /// Move on once our FIN is acknowledged.
    fn check_fin_acked(&mut self, ctx: &Ctx<'_>) {
        if !self.snd.fin_acked() {
            return;
        }
        match self.state {
            State::FinWait1 => {
                self.set_state(State::FinWait2);
                if self.released {
                    self.timers.fw2_at = Some(ctx.now + ctx.cfg.fin_wait2_timeout);
                }
            }
            State::Closing => self.enter_time_wait(),
            State::LastAck => self.enter_closed(false),
            _ => {}
        }
    }

    /// Consume a FIN that the in-order point reached.
    fn check_fin(&mut self) {
        if self.rcv.fin_received {
            return;
        }
        let Some(off) = self.rcv.fin_pending else {
            return;
        };
        if off != self.rcv.nxt_data {
            return;
        }
        self.rcv.fin_pending = None;
        self.rcv.fin_received = true;
        self.rcv.ack_now = true;
        self.events |= EV_PEER_FIN;
        match self.state {
            State::Established => self.set_state(State::CloseWait),
            State::FinWait1 => {
                if self.snd.fin_acked() {
                    self.enter_time_wait();
                } else {
                    self.set_state(State::Closing);
                }
            }
            State::FinWait2 => self.enter_time_wait(),
            _ => {}
        }
    }
}
