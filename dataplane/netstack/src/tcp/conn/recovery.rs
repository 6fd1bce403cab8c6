//! Loss recovery: the SACK scoreboard as the ACKs fill it, fast
//! retransmit and recovery (RFC 5681, RFC 6582 NewReno, RFC 6675 SACK),
//! RACK-TLP (RFC 8985), what an RTO does to the flight, RTT sampling, and
//! the calls into the congestion controller.

use core::time::Duration;
use std::collections::VecDeque;

use super::timers::min_opt;
use super::{Conn, Ctx};
use crate::tcp::cc::{CongestionControl, Controller};
use crate::tcp::rtt::RttEstimator;
use crate::tcp::scoreboard::Scoreboard;
use crate::tcp::segment::Segment;
use crate::tcp::types::{EndpointConfig, EndpointStats, State};
use crate::time::Time;
use crate::wire::tcp_option::MAX_SACK_BLOCKS;

/// Duplicate ACKs (or SACKed segments) that signal a loss.
pub const DUPTHRESH: u32 = 3;
/// Retransmissions in flight watched for being lost again (older ones
/// fall back on the RTO).
const REXMIT_RECORDS: usize = 32;

/// Loss detection and recovery, with the RTT estimator and the congestion
/// controller they drive.
#[derive(Debug)]
pub(super) struct Recovery {
    pub(super) rtt: RttEstimator,
    pub(super) cc: Controller,
    /// The SACK scoreboard (RFC 6675).
    sb: Scoreboard,
    /// Duplicate ACKs since the last new ACK.
    pub(super) dupacks: u32,
    pub(super) in_recovery: bool,
    /// The recovery was entered by an RTO with SACK (RFC 6675 §5.1): every
    /// hole below `recover` is lost, and cwnd grows by slow start.
    loss_recovery: bool,
    /// SND.MAX when the recovery began (RFC 6582 `recover`).
    recover: u64,
    /// SND.UNA is due to be retransmitted.
    pub(super) rexmit_una: bool,
    /// Without timestamps, the segment timed for an RTT sample (Karn's
    /// rule): the offset whose ACK ends the timing, and when it went out.
    pub(super) rtt_timing: Option<(u64, Time)>,
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
    pub(super) tlp_pending: bool,
    pub(super) tlp_sent: bool,
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

impl Recovery {
    pub(super) fn new(cfg: &EndpointConfig, mss: u32, now: Time) -> Self {
        Recovery {
            rtt: RttEstimator::new(cfg.rtt),
            cc: Controller::new(cfg.congestion, mss, now),
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
        }
    }

    /// Watch a retransmission sent in SACK recovery.
    fn record_retransmission(&mut self, now: Time, start: u64, end: u64, snd_max: u64) {
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
            snd_max_at: snd_max,
            seq: self.rexmit_seq,
        });
    }

    /// RACK's rule (RFC 8985 §6.2) for retransmissions: one is lost when
    /// data sent after it was delivered and it was not, once it has had
    /// a quarter of the minimum RTT more than that data to arrive. RFC
    /// 6675 alone cannot see these losses (the range is below HighRxt),
    /// so each of them cost an RTO.
    fn detect_lost_retransmissions(
        &mut self,
        now: Time,
        una: u64,
        stats: &mut EndpointStats,
    ) -> Option<Time> {
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
        stats.lost_retransmits += lost;
        wait
    }
}

impl Conn {
    /// The SACK scoreboard takes an acceptable ACK: its cumulative point
    /// and the SACK blocks that fall in the flight. Whether what is SACKed
    /// changed.
    pub(super) fn update_scoreboard(&mut self, seg: &Segment<'_>, ack_rel: u64) -> bool {
        if !(self.opts.sack_enabled && self.snd.max > self.snd.una) {
            return false;
        }
        let mut blocks = [(0u64, 0u64); MAX_SACK_BLOCKS];
        let mut n = 0;
        for &(l, r) in seg.opts.sack_blocks.as_slice() {
            let ld = self.snd.rel_of(l);
            let rd = self.snd.rel_of(r);
            if ld < 0 || rd <= ld || rd > self.snd.max as i64 {
                continue;
            }
            if let Some(b) = blocks.get_mut(n) {
                *b = (ld as u64, rd as u64);
                n += 1;
            }
        }
        let upd = self.rec.sb.on_ack(ack_rel, &blocks[..n], self.snd.max);
        upd.sack_changed
    }

    /// The RTT sample of an ACK that moves SND.UNA to `ack_rel` (RFC 7323
    /// §4.1 with timestamps, else Karn's rule).
    pub(super) fn rtt_sample(
        &mut self,
        now: Time,
        seg: &Segment<'_>,
        ack_rel: u64,
    ) -> Option<Duration> {
        let mut sample = None;
        if self.opts.ts_enabled {
            if let Some(ts) = seg.opts.timestamp {
                let ms = self.opts.tsval(now).wrapping_sub(ts.tsecr);
                if ts.tsecr != 0 && ms < 60_000 {
                    sample = Some(Duration::from_millis(u64::from(ms)));
                }
            }
        } else if let Some((at, t)) = self.rec.rtt_timing {
            if ack_rel >= at {
                sample = Some(now.saturating_since(t));
                self.rec.rtt_timing = None;
            }
        }
        sample
    }

    /// What a new ACK (SND.UNA has moved) does to the RTT estimator, to
    /// the recovery and to the congestion window.
    pub(super) fn recovery_on_new_ack(
        &mut self,
        now: Time,
        acked: u64,
        in_flight_before: u32,
        sample: Option<Duration>,
    ) {
        self.rec.rtt.reset_backoff();
        if let Some(s) = sample {
            self.rec.rtt.on_sample(s);
        }
        self.rec.dupacks = 0;
        let was_loss_recovery = self.rec.loss_recovery;
        if self.rec.in_recovery {
            if self.snd.una >= self.rec.recover {
                self.rec.in_recovery = false;
                self.rec.loss_recovery = false;
                self.rec.rexmit_una = false;
                if !was_loss_recovery {
                    self.rec.cc.on_recovery_end(now);
                }
            } else if !self.opts.sack_enabled {
                // NewReno partial ACK (RFC 6582 §3.2 step 3).
                self.rec.rexmit_una = true;
            }
        }
        if !self.rec.in_recovery || was_loss_recovery {
            // After an RTO the window grows by slow start while the holes
            // are refilled (the controller left recovery at the RTO).
            let acked32 = acked.min(u64::from(u32::MAX)) as u32;
            self.rec.cc.on_ack(now, acked32, in_flight_before, sample);
        }
    }

    /// A retransmission of `[start, end)` went out: SACK recovery watches
    /// it, and a timing for an RTT sample that it overlaps is dropped
    /// (Karn's rule).
    pub(super) fn on_retransmission_sent(&mut self, now: Time, start: u64, end: u64) {
        if self.opts.sack_enabled && self.rec.in_recovery {
            self.rec.sb.mark_retransmitted(start, end);
            self.rec
                .record_retransmission(now, start, end, self.snd.max);
        }
        if matches!(self.rec.rtt_timing, Some((at, _)) if at > start) {
            self.rec.rtt_timing = None;
        }
    }

    /// The retransmission timeout fired: the SYN (or SYN-ACK) goes again,
    /// or the flight is recovered; after `syn_retries` or `max_retries`
    /// the connection gives up.
    pub(super) fn on_rto(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now;
        match self.state {
            State::SynSent | State::SynReceived => {
                self.timers.syn_retries += 1;
                if self.timers.syn_retries > ctx.cfg.syn_retries {
                    self.enter_closed(true);
                    return;
                }
                ctx.stats.rto += 1;
                self.rec.rtt.backoff();
                self.snd.syn_pending = true;
                self.arm_rto(now);
            }
            State::Closed | State::TimeWait => {}
            _ => {
                if self.snd.max <= self.snd.una {
                    return;
                }
                if self.rec.rtt.backoffs() >= ctx.cfg.max_retries {
                    self.queue_rst();
                    self.enter_closed(true);
                    return;
                }
                ctx.stats.rto += 1;
                if self.rec.rtt.backoffs() == 0 {
                    self.rec.cc.on_rto(now, self.snd.in_flight());
                }
                self.rec.sb.on_rto();
                self.rec.rexmits.clear();
                self.timers.reorder_at = None;
                self.timers.tlp_at = None;
                self.rec.tlp_pending = false;
                // No probes while the RTO's recovery runs (until new ACKs).
                self.rec.tlp_sent = true;
                self.rec.rack_pending = None;
                self.rec.recover = self.snd.max;
                self.rec.dupacks = 0;
                self.rec.rexmit_una = false;
                self.rec.rtt_timing = None;
                // With SACK, refill only the holes (and keep detecting lost
                // retransmissions) instead of going back to SND.UNA: at a
                // few percent loss, going back over the whole window loses
                // one of its segments nearly every time, and each of those
                // waited for another RTO. A second timeout in a row goes
                // back to SND.UNA over everything, SACKed or not, in case
                // the peer discarded what it SACKed (RFC 2018 §8). A sent
                // FIN is left to the go-back path, which resends it.
                let fin_sent = self.snd.fin_rel().is_some_and(|f| self.snd.max > f);
                self.rec.loss_recovery =
                    self.opts.sack_enabled && !fin_sent && self.rec.rtt.backoffs() == 0;
                self.rec.in_recovery = self.rec.loss_recovery;
                if !self.rec.loss_recovery {
                    self.snd.nxt = self.snd.una;
                }
                self.rec.rtt.backoff();
                self.arm_rto(now);
            }
        }
    }

    /// The peer opened a window it had shrunk to zero while data was in
    /// flight, and SND.UNA is still not acknowledged: what the RTOs sent
    /// from SND.UNA meanwhile lay outside the window and was discarded,
    /// but counted as sent (the go-back had moved SND.NXT past the byte
    /// it sent, SACK recovery HighRxt past the segment). Nothing resent
    /// it before the backed-off RTO, seconds later by then, and RACK
    /// could not see it either (no recovery starts below the RTO's
    /// recovery point, and go-back retransmissions are not watched). It
    /// goes again now, and the RTO restarts from its base: the timeouts
    /// were the closed window's, not losses (Linux resets its backoff
    /// when the window opens too).
    pub(super) fn resend_what_a_zero_window_discarded(&mut self, now: Time) {
        self.snd.una_sent_into_zero_window = false;
        if self.snd.max <= self.snd.una || self.snd.una >= self.snd.data_end() {
            return;
        }
        if self.rec.in_recovery && self.opts.sack_enabled {
            // Forget what was retransmitted (HighRxt, the watched
            // retransmissions): the holes go again from SND.UNA.
            self.rec.sb.on_rto();
            self.rec.rexmits.clear();
            self.rec.rexmit_una = true;
        } else {
            self.snd.nxt = self.snd.una;
        }
        self.rec.rtt.reset_backoff();
        self.arm_rto(now);
    }

    /// RACK's loss detection (RFC 8985 §6.2) after an ACK or when the
    /// reordering window of an earlier one has passed: mark holes and
    /// retransmissions lost, start recovery, and time the next look.
    pub(super) fn rack_step(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now;
        let mut wait = None;
        if let (true, Some(min_rtt)) = (self.opts.sack_enabled, self.rec.rtt.min_rtt()) {
            let reo_wnd = min_rtt / 4;
            if let Some((hs, seen)) = self.rec.rack_pending {
                if now >= seen + reo_wnd {
                    self.rec.rack_lost_below = self.rec.rack_lost_below.max(hs);
                    self.rec.rack_pending = None;
                }
            }
            if let Some(hs) = self.rec.sb.highest_sacked() {
                if hs > self.rec.rack_lost_below && self.rec.rack_pending.is_none() {
                    if reo_wnd.is_zero() {
                        self.rec.rack_lost_below = hs;
                    } else {
                        self.rec.rack_pending = Some((hs, now));
                    }
                }
            }
            wait = self.rec.rack_pending.map(|(_, seen)| seen + reo_wnd);
        }
        if !self.rec.rexmits.is_empty() {
            wait = min_opt(
                wait,
                self.rec
                    .detect_lost_retransmissions(now, self.snd.una, ctx.stats),
            );
        }
        self.timers.reorder_at = wait;
        self.maybe_enter_recovery(ctx, false);
    }

    /// Fast retransmit and recovery when the loss of SND.UNA shows: three
    /// duplicate ACKs, or with SACK (on any ACK: a peer that is sending
    /// too piggybacks its ACKs on data, and those are never duplicate
    /// ACKs) RFC 6675's IsLost, or RACK's rule: data sent after SND.UNA
    /// was SACKed a reordering window ago. At a few percent loss the
    /// window is a handful of segments, too few for IsLost, and without
    /// RACK's rule each such loss waited for the RTO.
    pub(super) fn maybe_enter_recovery(&mut self, ctx: &mut Ctx<'_>, three_dupacks: bool) {
        if self.rec.in_recovery || self.snd.max <= self.snd.una || self.snd.una < self.rec.recover {
            return;
        }
        let now = ctx.now;
        let lost = self.opts.sack_enabled
            && (self.rec.rack_lost_below > self.snd.una
                || self.rec.sb.is_lost(self.snd.una, self.opts.mss, DUPTHRESH));
        if three_dupacks || lost {
            self.rec.in_recovery = true;
            self.timers.tlp_at = None;
            self.rec.tlp_pending = false;
            self.rec.recover = self.snd.max;
            self.rec.cc.on_congestion_event(now, self.snd.in_flight());
            self.rec.rexmit_una = true;
            self.rec.rtt_timing = None;
            ctx.stats.fast_retransmits += 1;
        }
    }

    /// The tail loss probe (RFC 8985 §7.3): new data if the peer's window
    /// takes it, else the last segment again; cwnd does not apply.
    pub(super) fn pick_tlp_probe(
        &self,
        mss: u64,
        data_end: u64,
        wnd_edge: u64,
    ) -> Option<(u64, u32, bool)> {
        let room = wnd_edge
            .saturating_sub(self.snd.nxt)
            .min(data_end.saturating_sub(self.snd.nxt));
        if self.snd.nxt == self.snd.max && room > 0 {
            return Some((self.snd.nxt, room.min(mss) as u32, false));
        }
        let end = self.snd.max.min(data_end);
        let start = end.saturating_sub(mss).max(self.snd.una).max(1);
        if start < end {
            return Some((start, (end - start) as u32, true));
        }
        None
    }

    /// What SACK recovery sends next (RFC 6675 NextSeg, while the pipe is
    /// below cwnd): a lost range again, or new data.
    pub(super) fn pick_sack_recovery(
        &self,
        mss: u64,
        data_end: u64,
        cwnd: u64,
        wnd_edge: u64,
    ) -> Option<(u64, u32, bool)> {
        let lost_below = if self.rec.loss_recovery {
            self.rec.recover.max(self.rec.rack_lost_below)
        } else {
            self.rec.rack_lost_below
        };
        let pipe = self.rec.sb.pipe(
            self.snd.una,
            self.snd.max,
            self.opts.mss,
            DUPTHRESH,
            lost_below,
        );
        if pipe >= cwnd {
            return None;
        }
        let (start, len) = self.rec.sb.next_seg(
            self.snd.una,
            self.snd.max,
            data_end,
            self.opts.mss,
            DUPTHRESH,
            lost_below,
        )?;
        let len = u64::from(len).min(mss);
        if start < self.snd.max {
            // Within the peer's window, as Linux's __tcp_retransmit_skb:
            // after the peer shrank it, what lies beyond is discarded
            // (SND.UNA still goes, as the probe of a zero window).
            if start >= wnd_edge && start != self.snd.una {
                return None;
            }
            let room = wnd_edge.saturating_sub(start);
            let len = len.min(data_end.saturating_sub(start));
            let len = if room > 0 { len.min(room) } else { len };
            return (len > 0).then_some((start, len as u32, true));
        }
        let len = len
            .min(wnd_edge.saturating_sub(self.snd.nxt))
            .min(data_end.saturating_sub(self.snd.nxt));
        (len > 0).then_some((self.snd.nxt, len as u32, false))
    }
}
