//! Per-connection deadlines and what each does when it fires: the RTO
//! (RFC 6298; what it does to the flight is in `recovery`), RACK's
//! reordering window, the tail loss probe (RFC 8985 §7), the delayed ACK,
//! the zero-window probe (persist), keepalive and the FIN-WAIT-2 timeout.
//! TIME_WAIT is the endpoint's: the connection only enters the state, and
//! the endpoint moves it to its TIME_WAIT table.

use core::time::Duration;

use super::{Conn, Ctx};
use crate::tcp::cc::CongestionControl;
use crate::tcp::types::State;
use crate::time::Time;

/// RFC 8985 §7.2 WCDelAckT: a lone segment's ACK may be delayed this long.
const TLP_DELAYED_ACK_ALLOWANCE: Duration = Duration::from_millis(200);
/// Added to 2·SRTT in the probe timeout: on a LAN 2·SRTT is microseconds,
/// less than a peer's batching and scheduling delays (Linux adds
/// TCP_TIMEOUT_MIN, 2 jiffies).
const TLP_SLACK: Duration = Duration::from_millis(2);

/// The earlier of two optional deadlines.
pub(super) fn min_opt(a: Option<Time>, b: Option<Time>) -> Option<Time> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// Whether the deadline in `slot` has come; one that has is cleared (it
/// fires once).
fn take_due(slot: &mut Option<Time>, now: Time) -> bool {
    let due = matches!(*slot, Some(t) if t <= now);
    if due {
        *slot = None;
    }
    due
}

/// The deadlines of one connection (the endpoint's timer wheel holds
/// the earliest), and the retry counts that go with them.
#[derive(Debug, Default)]
pub(super) struct Timers {
    /// The retransmission timeout (of the SYN too).
    pub(super) rto_at: Option<Time>,
    /// When a retransmission that later data overtook may be judged lost.
    /// (Also when a SACKed range's reordering window ends: `rack_step`.)
    pub(super) reorder_at: Option<Time>,
    /// The probe timeout: no ACK for two SRTTs, send a tail loss probe.
    pub(super) tlp_at: Option<Time>,
    /// The delayed ACK.
    pub(super) delack_at: Option<Time>,
    /// The next zero-window probe.
    pub(super) persist_at: Option<Time>,
    /// The next keepalive probe, or giving up after the last.
    pub(super) keepalive_at: Option<Time>,
    /// A released connection in FIN-WAIT-2 gives up.
    pub(super) fw2_at: Option<Time>,
    /// Doublings of the persist interval (reset when no probe is wanted).
    persist_backoff: u32,
    /// Zero-window probes sent since the last acceptable ACK.
    pub(super) probes_unanswered: u32,
    /// Keepalive probes sent since the peer was last heard from.
    ka_probes: u32,
    /// Retransmissions of our SYN or SYN-ACK.
    pub(super) syn_retries: u32,
}

impl Timers {
    /// The earliest deadline.
    fn next(&self) -> Option<Time> {
        let mut t = min_opt(self.rto_at, self.delack_at);
        t = min_opt(t, self.reorder_at);
        t = min_opt(t, self.tlp_at);
        t = min_opt(t, self.persist_at);
        t = min_opt(t, self.keepalive_at);
        min_opt(t, self.fw2_at)
    }

    /// Stop every timer (the retry counts stay).
    pub(super) fn clear(&mut self) {
        self.rto_at = None;
        self.reorder_at = None;
        self.tlp_at = None;
        self.delack_at = None;
        self.persist_at = None;
        self.keepalive_at = None;
        self.fw2_at = None;
    }
}

impl Conn {
    pub fn next_deadline(&self) -> Option<Time> {
        self.timers.next()
    }

    pub(super) fn arm_keepalive(&mut self, ctx: &Ctx<'_>) {
        if let Some(ka) = ctx.cfg.keepalive {
            if matches!(self.state, State::Established | State::CloseWait) {
                self.timers.keepalive_at = Some(ctx.now + ka.idle);
                self.timers.ka_probes = 0;
            } else {
                self.timers.keepalive_at = None;
            }
        }
    }

    pub(super) fn arm_rto(&mut self, now: Time) {
        self.timers.rto_at = Some(now + self.rec.rtt.rto());
    }

    /// (Re)arm the probe timeout while data is in flight outside recovery
    /// (RFC 8985 §7.2): 2·SRTT, plus the peer's delayed-ACK allowance for
    /// a lone segment, never later than the RTO. Without SACK a probe
    /// would not show which segment was lost, and the RTO handles it.
    /// Nor while data waits that cwnd would let out: then the peer's
    /// window holds it back, and a receiver that stopped reading delays
    /// its ACKs (its window does not grow), so a probe would only resend
    /// what it has (Linux: tcp_schedule_loss_probe).
    pub(super) fn arm_tlp(&mut self, now: Time) {
        self.timers.tlp_at = None;
        let Some(srtt) = self.rec.rtt.srtt() else {
            return;
        };
        let in_flight = self.snd.max - self.snd.una;
        let window_limited =
            self.snd.nxt < self.snd.data_end() && u64::from(self.rec.cc.window()) > in_flight;
        if !self.opts.sack_enabled
            || self.rec.in_recovery
            || self.rec.tlp_sent
            || in_flight == 0
            || window_limited
            || !self.is_synchronized()
        {
            return;
        }
        let mut pto = srtt * 2 + TLP_SLACK;
        if in_flight <= u64::from(self.opts.mss) {
            pto += TLP_DELAYED_ACK_ALLOWANCE;
        }
        let at = now + pto;
        if self.timers.rto_at.is_none_or(|rto| at < rto) {
            self.timers.tlp_at = Some(at);
        }
    }

    /// Keep the persist timer consistent with the send state.
    pub(super) fn update_persist(&mut self, now: Time) {
        let wants = self.is_synchronized()
            && self.snd.wnd == 0
            && self.snd.max == self.snd.una
            && self.snd.nxt < self.snd.data_end();
        if !wants {
            self.timers.persist_at = None;
            self.timers.persist_backoff = 0;
        } else if self.timers.persist_at.is_none() {
            let base = self.rec.rtt.rto();
            let d = base
                .checked_mul(1u32 << self.timers.persist_backoff.min(10))
                .unwrap_or(Duration::from_secs(60))
                .min(Duration::from_secs(60));
            self.timers.persist_at = Some(now + d);
        }
    }

    pub fn on_timeout(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now;
        if take_due(&mut self.timers.delack_at, now) {
            self.rcv.ack_now = true;
        }
        // `take_due` clears a due timer whether or not it then acts.
        if take_due(&mut self.timers.fw2_at, now) && self.state == State::FinWait2 {
            self.enter_closed(false);
            return;
        }
        if take_due(&mut self.timers.tlp_at, now)
            && self.is_synchronized()
            && !self.rec.in_recovery
            && self.snd.max > self.snd.una
        {
            self.rec.tlp_pending = true;
            self.rec.tlp_sent = true;
            ctx.stats.tail_loss_probes += 1;
        }
        if take_due(&mut self.timers.reorder_at, now) && self.is_synchronized() {
            self.rack_step(ctx);
        }
        if take_due(&mut self.timers.rto_at, now) {
            self.on_rto(ctx);
            if self.state == State::Closed {
                return;
            }
        }
        if take_due(&mut self.timers.persist_at, now) {
            if self.timers.probes_unanswered >= ctx.cfg.max_retries {
                // The peer stopped answering its zero window (Linux: the
                // probe timer's tcp_retries2 limit). Without this an
                // orphaned connection probed forever.
                self.queue_rst();
                self.enter_closed(true);
                return;
            }
            self.timers.probes_unanswered += 1;
            self.snd.probe_pending = true;
            self.timers.persist_backoff = self.timers.persist_backoff.saturating_add(1);
            ctx.stats.zero_window_probes += 1;
            self.update_persist(now);
        }
        if take_due(&mut self.timers.keepalive_at, now) {
            if let Some(ka) = ctx.cfg.keepalive {
                if self.snd.max > self.snd.una {
                    // Retransmissions are watching the peer already.
                    self.timers.keepalive_at = Some(now + ka.interval);
                } else if self.timers.ka_probes >= ka.count {
                    ctx.stats.keepalive_timeouts += 1;
                    self.queue_rst();
                    self.enter_closed(true);
                } else {
                    self.timers.ka_probes += 1;
                    self.snd.probe_pending = true;
                    self.timers.keepalive_at = Some(now + ka.interval);
                }
            }
        }
    }
}
