//! The receive half: RCV.NXT, the window we advertise and its scale, the
//! reassembly of out-of-order data and the SACK blocks that report it, the
//! receive ring the application reads from, acceptability of arriving
//! segments, and when an ACK is owed (at once, or delayed).

use core::time::Duration;

use super::{Conn, Ctx, EV_READABLE};
use crate::tcp::assembler::Assembler;
use crate::tcp::ring::{ChunkPool, RecvRing};
use crate::tcp::segment::Segment;
use crate::tcp::types::{EndpointConfig, EndpointStats, State, TcpError};
use crate::time::Time;
use crate::wire::tcp_option::MAX_SACK_BLOCKS;
use crate::wire::{SackBlocks, SeqNumber};

/// Out-of-window pure ACKs are answered at most this often per connection
/// (Linux: tcp_invalid_ratelimit), so a flood of them is not reflected.
const OOW_ACK_INTERVAL: Duration = Duration::from_millis(500);

/// The peer's half of the sequence space, and the data received in it.
#[derive(Debug)]
pub(super) struct RecvState {
    /// The peer's ISN.
    pub(super) irs: SeqNumber,
    /// In-order data received (RCV.NXT as a data offset, before the FIN).
    pub(super) nxt_data: u64,
    pub(super) fin_received: bool,
    /// Data offset of a FIN that arrived beyond a gap.
    pub(super) fin_pending: Option<u64>,
    /// The scale of the window we advertise.
    pub(super) wscale: u8,
    /// Right edge of the window last advertised (data offset).
    pub(super) adv: u64,
    pub(super) ring: RecvRing,
    pub(super) asm: Assembler,
    /// An ACK is owed now.
    pub(super) ack_now: bool,
    /// In-order segments received since our last ACK (the second one is
    /// acknowledged at once, the first may wait for the delayed ACK).
    pub(super) segs_unacked: u32,
    /// When we last answered an unacceptable zero-length segment.
    last_oow_ack: Option<Time>,
    /// `EV_READABLE` was raised and the application has not read up to
    /// RCV.NXT since.
    readable_signaled: bool,
    pub(super) bytes_received: u64,
}

/// Where an arriving segment (not a RST or SYN) falls against the window.
pub(super) enum Acceptance {
    /// Acceptable (RFC 9293 §3.10.7.4 first, or a pure ACK at the edge).
    InWindow,
    /// Data at the right edge: its ACK counts, its data is dropped and
    /// answered.
    AckOnly,
    /// Unacceptable: dropped, and answered.
    Outside,
}

impl RecvState {
    pub(super) fn new(cfg: &EndpointConfig) -> Self {
        RecvState {
            irs: SeqNumber(0),
            nxt_data: 0,
            fin_received: false,
            fin_pending: None,
            wscale: 0,
            adv: 0,
            ring: RecvRing::new(cfg.recv_buffer),
            asm: Assembler::new(cfg.max_ooo_ranges),
            ack_now: false,
            segs_unacked: 0,
            last_oow_ack: None,
            readable_signaled: false,
            bytes_received: 0,
        }
    }

    /// RCV.NXT as a rel offset from the peer's ISN.
    fn nxt_rel(&self) -> u64 {
        1 + self.nxt_data + u64::from(self.fin_received)
    }

    /// RCV.NXT.
    pub(super) fn nxt(&self) -> SeqNumber {
        self.irs + self.nxt_rel() as u32
    }

    /// The window we accept segments in: what we last advertised.
    pub(super) fn wnd(&self) -> u32 {
        self.adv
            .saturating_sub(self.nxt_data)
            .min(u64::from(u32::MAX >> 1)) as u32
    }

    /// The receive window we could offer now (before the no-shrink rule).
    pub(super) fn window_estimate(&self, pool: &ChunkPool, mss: u32) -> usize {
        let w = self.ring.window_at(self.nxt_data);
        let avail = pool.available();
        if avail >= w {
            w
        } else {
            // Memory pressure: offer what the pool can still hold.
            let m = mss as usize;
            (avail / m) * m
        }
    }

    /// The window field of an outgoing segment (unscaled on a SYN).
    pub(super) fn window_field(&mut self, pool: &ChunkPool, mss: u32, syn: bool) -> u16 {
        let est = self.window_estimate(pool, mss) as u64;
        let offered = self.adv.saturating_sub(self.nxt_data);
        let shift = if syn { 0 } else { self.wscale };
        // A scaled window rounds down, so the edge it shows can sit up to
        // 2^shift - 1 bytes left of one offered before. The peer may have
        // sent up to that earlier edge already (Linux does, and then its
        // ACKs carry a sequence past RCV.NXT), so `adv` keeps the
        // furthest edge offered and segments are accepted up to it. Each
        // offer rounds down from free space, so that edge never passes
        // what the buffer holds.
        let field = (est.max(offered) >> shift).min(65_535);
        self.adv = self.adv.max(self.nxt_data + (field << shift));
        field as u16
    }

    /// The SACK blocks of the out-of-order data we hold, at most `max`
    /// (RFC 2018 §4 order, the assembler's).
    pub(super) fn sack_blocks(&self, max: usize) -> SackBlocks {
        let mut blocks = [(0u64, 0u64); MAX_SACK_BLOCKS];
        let n = self.asm.sack_blocks(&mut blocks[..max]);
        let mut sb = SackBlocks::EMPTY;
        for &(s, e) in blocks.iter().take(n.min(max)) {
            let l = self.irs + (1 + s) as u32;
            let r = self.irs + (1 + e) as u32;
            let _ = sb.push((l, r));
        }
        sb
    }

    /// RFC 9293 §3.10.7.4 first: acceptability.
    pub(super) fn acceptance(&self, seg: &Segment<'_>) -> Acceptance {
        let rcv_nxt = self.nxt();
        let wnd = self.wnd();
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
        if acceptable || (seg_len == 0 && at_edge) {
            Acceptance::InWindow
        } else if at_edge {
            Acceptance::AckOnly
        } else {
            Acceptance::Outside
        }
    }

    /// An unacceptable segment: dropped, and answered with an ACK.
    pub(super) fn on_outside(&mut self, seg: &Segment<'_>, now: Time, stats: &mut EndpointStats) {
        let seg_len = seg.len();
        if seg_len > 0 && seg.seq.distance(self.nxt()) < 0 {
            stats.dup_segments += 1;
        }
        if seg_len == 0 {
            // Answered, but rate-limited: a segment carrying data is
            // always answered (the peer may have missed our ACK).
            if self
                .last_oow_ack
                .is_some_and(|t| now.saturating_since(t) < OOW_ACK_INTERVAL)
            {
                stats.oow_acks_suppressed += 1;
                return;
            }
            self.last_oow_ack = Some(now);
        }
        self.ack_now = true;
    }
}

impl Conn {
    pub fn read(&mut self, ctx: &mut Ctx<'_>, out: &mut [u8]) -> Result<usize, TcpError> {
        let before = self.rcv.wnd();
        let n = self.rcv.ring.read(ctx.pool, self.rcv.nxt_data, out);
        if self.rcv.ring.read_offset() >= self.rcv.nxt_data {
            self.rcv.readable_signaled = false;
        }
        if n == 0 && self.state == State::Closed && self.reset {
            return Err(TcpError::Reset);
        }
        if n > 0 && self.is_synchronized() && !self.rcv.fin_received {
            // Window update when it opened by a useful amount.
            let now_wnd = self.rcv.window_estimate(ctx.pool, self.opts.mss) as u64;
            let grow = now_wnd.saturating_sub(u64::from(before));
            let m = u64::from(self.opts.mss);
            if grow >= 2 * m
                || grow >= (ctx.cfg.recv_buffer as u64) / 2
                || (before == 0 && grow > 0)
            {
                self.rcv.ack_now = true;
            }
        }
        Ok(n)
    }

    /// Bytes readable now.
    pub fn readable(&self) -> usize {
        self.rcv
            .nxt_data
            .saturating_sub(self.rcv.ring.read_offset()) as usize
    }

    /// Data of an acceptable segment: into the ring, in order or into the
    /// assembler, and the ACK it calls for (at once, or delayed).
    pub(super) fn on_data(&mut self, ctx: &mut Ctx<'_>, seg: &Segment<'_>) {
        let rcv_nxt = self.rcv.nxt();
        let d = i64::from(seg.seq.distance(rcv_nxt));
        let mut start = self.rcv.nxt_data as i64 + d;
        let mut data = seg.payload;
        if start < self.rcv.nxt_data as i64 {
            let skip = (self.rcv.nxt_data as i64 - start) as usize;
            if skip >= data.len() {
                ctx.stats.dup_segments += 1;
                self.rcv.ack_now = true;
                return;
            }
            data = &data[skip..];
            start = self.rcv.nxt_data as i64;
        }
        let start = start as u64;
        // Clip to the advertised window.
        let room = self.rcv.adv.saturating_sub(start) as usize;
        if data.len() > room {
            data = &data[..room];
        }
        if data.is_empty() {
            self.rcv.ack_now = true;
            return;
        }
        let stored = self.rcv.ring.write_at(ctx.pool, start, data);
        if stored == 0 {
            // Out of memory: drop, the peer will retransmit.
            self.rcv.ack_now = true;
            return;
        }
        let end = start + stored as u64;
        if start == self.rcv.nxt_data {
            let had_gap = !self.rcv.asm.is_empty();
            self.rcv.nxt_data = end;
            if had_gap {
                self.rcv.nxt_data = self.rcv.asm.advance(end).max(end);
                self.rcv.ack_now = true;
            }
            self.rcv.bytes_received += self.rcv.nxt_data - start;
            if !self.rcv.readable_signaled {
                self.rcv.readable_signaled = true;
                self.events |= EV_READABLE;
            }
            self.rcv.segs_unacked += 1;
            if self.rcv.segs_unacked >= 2 || stored < seg.payload.len() {
                self.rcv.ack_now = true;
            } else if self.timers.delack_at.is_none() && !self.rcv.ack_now {
                self.timers.delack_at = Some(ctx.now + ctx.cfg.delayed_ack);
            }
        } else {
            ctx.stats.ooo_segments += 1;
            if self.rcv.asm.insert(start, end).is_err() {
                ctx.stats.ooo_dropped += 1;
            }
            self.rcv.ack_now = true;
        }
    }
}
