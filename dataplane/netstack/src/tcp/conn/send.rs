//! The send half: SND.UNA/NXT/MAX/WND over rel offsets, the send ring the
//! application writes into (and its autotuning), processing of the ACKs
//! that move SND.UNA, and choosing and building each outgoing segment.

use super::options::TS_OPT_LEN;
use super::recovery::DUPTHRESH;
use super::{Conn, Ctx, EV_WRITABLE};
use crate::tcp::cc::CongestionControl;
use crate::tcp::ring::{ChunkPool, SendRing};
use crate::tcp::segment::{self, OutSegment, Segment};
use crate::tcp::types::{EndpointConfig, State, TcpError, Transmit};
use crate::time::Time;
use crate::wire::{SeqNumber, TcpFlags};

/// Our half of the sequence space, and the data waiting in it.
#[derive(Debug)]
pub(super) struct SendState {
    /// Our ISN: rel 0.
    pub(super) iss: SeqNumber,
    /// SND.UNA: the oldest offset not acknowledged.
    pub(super) una: u64,
    /// SND.NXT: where the next segment starts (rolled back to SND.UNA
    /// when an RTO goes back over the flight).
    pub(super) nxt: u64,
    /// The highest offset sent so far (SND.MAX).
    pub(super) max: u64,
    /// SND.WND, scaled.
    pub(super) wnd: u32,
    /// The largest window the peer has offered (RFC 5961 §5.2).
    pub(super) max_wnd: u32,
    /// SND.WL1 and SND.WL2: the sequence and ACK numbers of the segment
    /// that last updated the window.
    pub(super) wl1: SeqNumber,
    wl2: SeqNumber,
    /// The peer's window scale.
    pub(super) wscale: u8,
    /// Written data not yet acknowledged.
    pub(super) ring: SendRing,
    /// The application shut down: a FIN follows the data.
    pub(super) fin_queued: bool,
    /// Our SYN (or SYN-ACK) is due to go out.
    pub(super) syn_pending: bool,
    /// A zero-window probe or keepalive probe is due to go out.
    pub(super) probe_pending: bool,
    /// Data at SND.UNA last went out while the peer's window was zero
    /// (an RTO's retransmission into a window the peer shrank): the peer
    /// discarded it, yet SND.NXT or HighRxt moved past it.
    pub(super) una_sent_into_zero_window: bool,
    /// When a SYN, data or a FIN last went out.
    pub(super) last_send: Time,
    /// A write was cut short or filled the buffer: `EV_WRITABLE` once
    /// there is room again.
    write_blocked: bool,
    // Counters.
    pub(super) retransmits: u64,
    pub(super) bytes_sent: u64,
    pub(super) bytes_acked: u64,
}

impl SendState {
    pub(super) fn new(cfg: &EndpointConfig, iss: SeqNumber, now: Time) -> Self {
        SendState {
            iss,
            una: 0,
            nxt: 0,
            max: 0,
            wnd: 0,
            max_wnd: 0,
            wl1: SeqNumber(0),
            wl2: SeqNumber(0),
            wscale: 0,
            ring: SendRing::new(cfg.send_buffer),
            fin_queued: false,
            syn_pending: false,
            probe_pending: false,
            una_sent_into_zero_window: false,
            last_send: now,
            write_blocked: false,
            retransmits: 0,
            bytes_sent: 0,
            bytes_acked: 0,
        }
    }

    /// The wire sequence number of a rel offset.
    pub(super) fn seq_of(&self, rel: u64) -> SeqNumber {
        self.iss + rel as u32
    }

    /// The rel offset of a wire sequence number, taken as the nearest one
    /// to SND.UNA (negative below the ISN).
    pub(super) fn rel_of(&self, seq: SeqNumber) -> i64 {
        self.una as i64 + i64::from(seq.distance(self.seq_of(self.una)))
    }

    /// Rel offset of the end of the data written so far.
    pub(super) fn data_end(&self) -> u64 {
        1 + self.ring.end()
    }

    /// Rel offset of our FIN, once queued.
    pub(super) fn fin_rel(&self) -> Option<u64> {
        self.fin_queued.then(|| self.data_end())
    }

    pub(super) fn fin_acked(&self) -> bool {
        matches!(self.fin_rel(), Some(f) if self.una > f)
    }

    pub(super) fn in_flight(&self) -> u32 {
        self.max.saturating_sub(self.una).min(u64::from(u32::MAX)) as u32
    }

    fn fin_to_send(&self) -> bool {
        match self.fin_rel() {
            Some(f) => self.nxt == f && self.una <= f,
            None => false,
        }
    }

    /// The ACK of our SYN: SND.UNA moves past it, and the segment that
    /// carried the ACK gives the first window.
    pub(super) fn on_syn_acked(&mut self, seg: &Segment<'_>) {
        self.una = 1;
        if self.nxt < 1 {
            self.nxt = 1;
        }
        self.set_window(seg);
    }

    /// Take the (scaled) window of a segment that completes the handshake.
    pub(super) fn set_window(&mut self, seg: &Segment<'_>) {
        self.wnd = u32::from(seg.window) << self.wscale;
        self.max_wnd = self.wnd;
        self.wl1 = seg.seq;
        self.wl2 = seg.ack;
    }

    /// Window update (RFC 9293 §3.10.7.4, fifth): only from a segment no
    /// older than the one that set the window last.
    fn update_window(&mut self, seg: &Segment<'_>, new_wnd: u32) {
        if self.wl1.distance(seg.seq) < 0
            || (self.wl1 == seg.seq && self.wl2.distance(seg.ack) <= 0)
        {
            self.wnd = new_wnd;
            self.max_wnd = self.max_wnd.max(new_wnd);
            self.wl1 = seg.seq;
            self.wl2 = seg.ack;
        }
    }

    /// SND.UNA moves up to `ack_rel`: the data below it leaves the ring.
    fn advance_una(&mut self, pool: &mut ChunkPool, ack_rel: u64) {
        let data_upto = ack_rel.saturating_sub(1).min(self.ring.end());
        let released_before = self.ring.start();
        self.ring.release(pool, data_upto);
        self.bytes_acked += data_upto.saturating_sub(released_before);
        self.una = ack_rel;
        self.una_sent_into_zero_window = false;
        if self.nxt < self.una {
            self.nxt = self.una;
        }
    }

    /// Send-buffer autotuning (Linux: tcp_sndbuf_expand): when the writer
    /// was held back by the buffer — everything it held was sent and the
    /// flight did not fill cwnd — the buffer grows to two congestion
    /// windows, up to `send_buffer_max`, and not while send buffers have
    /// used half of their share of the memory budget. Without it, a whole
    /// buffer in flight waits for a receiver's delayed ACK every round.
    fn expand_buffer(&mut self, pool: &ChunkPool, max: usize, cwnd: u32, in_flight_before: u32) {
        let limit = self.ring.limit();
        if !self.write_blocked
            || limit >= max
            || self.nxt < self.data_end()
            || in_flight_before >= cwnd
        {
            return;
        }
        let send_share = pool.max_bytes() - pool.receive_reserve();
        if pool.available_for_send() < send_share / 2 {
            return;
        }
        let want = (2 * cwnd as usize).min(max);
        if want > limit {
            self.ring.set_limit(want);
        }
    }
}

impl Conn {
    /// The writer waits for room: raise EV_WRITABLE when ACKs free some.
    pub fn wait_writable(&mut self) {
        self.snd.write_blocked = true;
    }

    pub fn write(&mut self, ctx: &mut Ctx<'_>, data: &[u8]) -> Result<usize, TcpError> {
        match self.state {
            State::SynSent | State::SynReceived | State::Established | State::CloseWait => {}
            State::Closed if self.reset => return Err(TcpError::Reset),
            _ => return Err(TcpError::InvalidState),
        }
        if self.snd.fin_queued {
            return Err(TcpError::InvalidState);
        }
        let n = self.snd.ring.write(ctx.pool, data);
        // A write that exactly fills the buffer blocks too: the writer may
        // wait for room without ever seeing a short write.
        if n < data.len() || self.snd.ring.free_space() == 0 {
            self.snd.write_blocked = true;
        }
        if n > 0 && self.snd.max == self.snd.una {
            // Idle restart (RFC 5681 §4.1) when nothing was sent for an RTO.
            if self.is_synchronized()
                && ctx.now.saturating_since(self.snd.last_send) > self.rec.rtt.rto()
            {
                self.rec.cc.on_idle_restart(ctx.now);
            }
        }
        self.update_persist(ctx.now);
        Ok(n)
    }

    /// ACK processing for synchronized states. False: drop the segment.
    pub(super) fn on_ack(&mut self, ctx: &mut Ctx<'_>, seg: &Segment<'_>) -> bool {
        let now = ctx.now;
        let ack_rel = self.snd.rel_of(seg.ack);
        if ack_rel > self.snd.max as i64 {
            ctx.stats.bad_acks += 1;
            self.challenge_ack(ctx);
            return false;
        }
        if ack_rel < self.snd.una as i64 - i64::from(self.snd.max_wnd) {
            ctx.stats.bad_acks += 1;
            self.challenge_ack(ctx);
            return false;
        }
        if ack_rel < self.snd.una as i64 {
            // Old ACK: ignore it, keep the data.
            return true;
        }
        let ack_rel = ack_rel as u64;
        // An acceptable ACK: the peer is alive.
        self.timers.probes_unanswered = 0;
        let new_wnd = u32::from(seg.window) << self.snd.wscale;
        let old_wnd = self.snd.wnd;
        self.snd.update_window(seg, new_wnd);

        let sack_changed = self.update_scoreboard(seg, ack_rel);

        let new_ack = ack_rel > self.snd.una;
        if new_ack {
            self.on_new_ack(ctx, seg, ack_rel);
        }
        let dupack = !new_ack
            && self.snd.max > self.snd.una
            && seg.payload.is_empty()
            && !seg.flags.fin()
            && (new_wnd == old_wnd || sack_changed);
        if dupack {
            // Duplicate ACK (RFC 5681 §2, RFC 6675 §2).
            self.rec.dupacks = self.rec.dupacks.saturating_add(1);
        }
        self.rack_step(ctx);
        if dupack && self.rec.dupacks >= DUPTHRESH {
            self.maybe_enter_recovery(ctx, true);
        }
        if !new_ack && self.snd.una_sent_into_zero_window && self.snd.wnd > 0 {
            self.resend_what_a_zero_window_discarded(now);
        }
        self.update_persist(now);
        true
    }

    /// An acceptable ACK that moves SND.UNA up to `ack_rel`.
    fn on_new_ack(&mut self, ctx: &mut Ctx<'_>, seg: &Segment<'_>, ack_rel: u64) {
        let now = ctx.now;
        let acked = ack_rel - self.snd.una;
        let in_flight_before = self.snd.in_flight();
        let sample = self.rtt_sample(now, seg, ack_rel);
        self.snd.advance_una(ctx.pool, ack_rel);
        self.recovery_on_new_ack(now, acked, in_flight_before, sample);
        if self.snd.max > self.snd.una {
            self.arm_rto(now);
        } else {
            self.timers.rto_at = None;
        }
        // A new flight: it gets its own probe.
        self.rec.tlp_sent = false;
        self.rec.tlp_pending = false;
        self.arm_tlp(now);
        let cwnd = self.rec.cc.window();
        self.snd
            .expand_buffer(ctx.pool, ctx.cfg.send_buffer_max, cwnd, in_flight_before);
        if self.snd.write_blocked && self.snd.ring.free_space() > 0 {
            self.snd.write_blocked = false;
            self.events |= EV_WRITABLE;
        }
        self.check_fin_acked(ctx);
    }

    // ---- output -----------------------------------------------------------

    /// Whether `poll_transmit` has something to send now.
    pub fn wants_transmit(&self) -> bool {
        match self.state {
            State::Closed => false,
            State::TimeWait => self.rcv.ack_now,
            State::SynSent | State::SynReceived => self.snd.syn_pending || self.rcv.ack_now,
            _ => {
                self.rcv.ack_now
                    || self.snd.probe_pending
                    || self.rec.rexmit_una
                    || self.pick_data(usize::MAX).is_some()
                    || self.snd.fin_to_send()
            }
        }
    }

    /// The next range of data to send: (start rel, len, retransmission).
    fn pick_data(&self, cap: usize) -> Option<(u64, u32, bool)> {
        let mss = (self.opts.mss as usize).min(cap) as u64;
        if mss == 0 {
            return None;
        }
        let data_end = self.snd.data_end();
        let cwnd = u64::from(self.rec.cc.window());
        let wnd_edge = self.snd.una + u64::from(self.snd.wnd);
        if self.rec.tlp_pending {
            if let Some(probe) = self.pick_tlp_probe(mss, data_end, wnd_edge) {
                return Some(probe);
            }
        }
        if self.rec.rexmit_una && self.snd.max > self.snd.una && self.snd.una < data_end {
            // Within the peer's window when it has room (as Linux's
            // __tcp_retransmit_skb): a window that just reopened after
            // shrinking may be smaller than a segment, and a receiver short
            // of buffer drops what lies beyond it.
            let room = wnd_edge.saturating_sub(self.snd.una);
            let mut len = mss.min(data_end - self.snd.una);
            if room > 0 {
                len = len.min(room);
            }
            return Some((self.snd.una, len as u32, true));
        }
        if self.rec.in_recovery && self.opts.sack_enabled {
            return self.pick_sack_recovery(mss, data_end, cwnd, wnd_edge);
        }
        // Flight: in NewReno recovery each duplicate ACK is a segment gone.
        let mut flight = self.snd.nxt.saturating_sub(self.snd.una);
        if self.rec.in_recovery {
            flight = flight.saturating_sub(u64::from(self.rec.dupacks) * u64::from(self.opts.mss));
        }
        if flight >= cwnd {
            return None;
        }
        let room = (cwnd - flight).min(wnd_edge.saturating_sub(self.snd.nxt));
        if self.snd.nxt < self.snd.max && self.snd.nxt < data_end {
            // Going back after an RTO.
            let len = mss
                .min(self.snd.max - self.snd.nxt)
                .min(data_end - self.snd.nxt)
                .min(room.max(if self.snd.nxt == self.snd.una { 1 } else { 0 }));
            return (len > 0).then_some((self.snd.nxt, len as u32, true));
        }
        if self.snd.nxt >= data_end {
            return None;
        }
        let len = mss.min(data_end - self.snd.nxt).min(room);
        (len > 0).then_some((self.snd.nxt, len as u32, false))
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
            State::SynSent | State::SynReceived if self.snd.syn_pending => {
                return self.transmit_syn(ctx, buf, ident);
            }
            _ => {}
        }
        if !self.is_synchronized() && !self.rcv.ack_now {
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
        let ts_room = if self.opts.ts_enabled {
            TS_OPT_LEN as usize
        } else {
            0
        };
        let cap = buf
            .len()
            .saturating_sub(ip_hlen + 20 + opts_len)
            .min((self.opts.mss as usize + ts_room).saturating_sub(opts_len));

        let mut seq_rel = self.snd.nxt;
        let mut payload: Option<(u64, u32, bool)> = None;
        let mut fin = false;
        let mut probe = false;
        if self.is_synchronized() {
            if let Some(p) = self.pick_data(cap) {
                self.rec.tlp_pending = false;
                payload = Some(p);
                seq_rel = p.0;
                if let Some(f) = self.snd.fin_rel() {
                    fin = p.0 + u64::from(p.1) == f;
                }
            } else if self.snd.fin_to_send() {
                fin = true;
                seq_rel = self.snd.nxt;
            } else if self.snd.probe_pending {
                probe = true;
            } else if !self.rcv.ack_now {
                self.rec.rexmit_una = false;
                return None;
            } else {
                // A pure ACK carries the highest sequence number sent (the
                // RFC's SND.NXT): after an RTO our `snd.nxt` is rolled back
                // to SND.UNA, and the peer, which may hold data up to
                // SND.MAX, would find the lower number unacceptable, drop
                // the ACK and answer with its own (an ACK loop).
                seq_rel = self.snd.max;
            }
        }
        let window = self.rcv.window_field(ctx.pool, self.opts.mss, false);
        let mut flags = TcpFlags::ACK;
        if fin {
            flags |= TcpFlags::FIN;
        }
        let (plen, rexmit) = payload.map(|p| (p.1 as usize, p.2)).unwrap_or((0, false));
        if plen > 0 {
            flags |= TcpFlags::PSH;
        }
        let seq = if probe {
            self.snd.seq_of(self.snd.una) - 1
        } else {
            self.snd.seq_of(seq_rel)
        };
        let out = OutSegment {
            src: self.tuple.local,
            dst: self.tuple.remote,
            seq,
            ack: self.rcv.nxt(),
            flags,
            window,
            opts,
            payload_len: plen,
        };
        let send = &self.snd.ring;
        let data_off = seq_rel.saturating_sub(1);
        let tx = segment::emit(buf, &out, ident, |p| {
            let n = send.read_at(data_off, p);
            if n < p.len() {
                p[n..].fill(0);
            }
        })?;
        ctx.stats.segments_out += 1;
        self.opts.last_ack_sent = out.ack;
        self.rcv.ack_now = false;
        self.rcv.segs_unacked = 0;
        self.timers.delack_at = None;
        if probe {
            self.snd.probe_pending = false;
            return Some(tx);
        }
        let seg_end = seq_rel + plen as u64 + u64::from(fin);
        let is_rexmit = rexmit || (fin && seq_rel < self.snd.max && plen == 0);
        if plen > 0 || fin {
            if self.rec.rexmit_una && seq_rel == self.snd.una {
                self.rec.rexmit_una = false;
            }
            if plen > 0 && seq_rel == self.snd.una {
                self.snd.una_sent_into_zero_window = self.snd.wnd == 0;
            }
            if is_rexmit {
                self.snd.retransmits += 1;
                ctx.stats.retransmits += 1;
                self.on_retransmission_sent(now, seq_rel, seg_end);
            } else {
                self.snd.bytes_sent += plen as u64;
                if !self.opts.ts_enabled && self.rec.rtt_timing.is_none() {
                    self.rec.rtt_timing = Some((seg_end, now));
                }
            }
            if seq_rel <= self.snd.nxt && seg_end > self.snd.nxt {
                self.snd.nxt = seg_end;
            }
            self.snd.max = self.snd.max.max(self.snd.nxt).max(seg_end);
            if self.timers.rto_at.is_none() {
                self.arm_rto(now);
            }
            self.arm_tlp(now);
            self.snd.last_send = now;
            self.timers.persist_at = None;
        }
        self.update_persist(now);
        Some(tx)
    }

    /// Our SYN, or the SYN-ACK in SYN-RECEIVED.
    fn transmit_syn(&mut self, ctx: &mut Ctx<'_>, buf: &mut [u8], ident: u16) -> Option<Transmit> {
        let now = ctx.now;
        self.snd.syn_pending = false;
        let synack = self.state == State::SynReceived;
        let opts = self.syn_options(now);
        let window = self.rcv.window_field(ctx.pool, self.opts.mss, true);
        let out = OutSegment {
            src: self.tuple.local,
            dst: self.tuple.remote,
            seq: self.snd.iss,
            ack: if synack { self.rcv.nxt() } else { SeqNumber(0) },
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
        if self.timers.syn_retries > 0 {
            self.snd.retransmits += 1;
            ctx.stats.retransmits += 1;
        }
        if synack {
            self.opts.last_ack_sent = out.ack;
        }
        self.snd.nxt = self.snd.nxt.max(1);
        self.snd.max = self.snd.max.max(1);
        if self.timers.rto_at.is_none() {
            self.arm_rto(now);
        }
        self.snd.last_send = now;
        self.rcv.ack_now = false;
        ctx.stats.segments_out += 1;
        Some(tx)
    }
}
