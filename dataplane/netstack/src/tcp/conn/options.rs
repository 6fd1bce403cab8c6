//! What the SYN exchange negotiated (MSS, RFC 7323 window scaling and
//! timestamps, RFC 2018 SACK-permitted), the timestamp state every segment
//! carries once it did, and the options we put on our segments.

use super::{Conn, Ctx};
use crate::tcp::cc::Controller;
use crate::tcp::segment::Segment;
use crate::tcp::syncookie::CookieOpts;
use crate::tcp::types::{EndpointConfig, State};
use crate::time::Time;
use crate::wire::tcp_option::MAX_SACK_BLOCKS;
use crate::wire::{SeqNumber, TcpOptions, TcpTimestamp};

/// Default MSS when the peer sends none (RFC 9293 §3.7.1, RFC 8200 §5).
const DEFAULT_MSS_V4: u32 = 536;
const DEFAULT_MSS_V6: u32 = 1220;
/// TCP timestamp option bytes in every segment once negotiated.
pub(super) const TS_OPT_LEN: u32 = 12;
/// Largest window scale (RFC 7323 §2.3).
const MAX_WSCALE: u8 = 14;

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

/// The options in force on a connection.
#[derive(Debug)]
pub(super) struct Negotiated {
    /// The most data we put in a segment: the peer's MSS (no more than
    /// ours), less the timestamp option when it is on.
    pub(super) mss: u32,
    /// The MSS option we send: what we can receive, whatever the peer's.
    announce_mss: u16,
    pub(super) ts_enabled: bool,
    /// Added to the clock in our TSvals.
    pub(super) ts_offset: u32,
    /// TS.Recent (RFC 7323 §4.3): the TSval we echo.
    pub(super) ts_recent: u32,
    /// Last.ACK.sent (RFC 7323 §4.3).
    pub(super) last_ack_sent: SeqNumber,
    pub(super) sack_enabled: bool,
    /// SYN options to offer / answer with.
    pub(super) offer_ws: bool,
    offer_sack: bool,
    offer_ts: bool,
}

impl Negotiated {
    pub(super) fn new(cfg: &EndpointConfig, ipv6: bool, ts_offset: u32) -> Self {
        let announce_mss = our_mss(cfg, ipv6);
        Negotiated {
            mss: u32::from(announce_mss),
            announce_mss,
            ts_enabled: false,
            ts_offset,
            ts_recent: 0,
            last_ack_sent: SeqNumber(0),
            sack_enabled: false,
            offer_ws: cfg.window_scaling,
            offer_sack: cfg.sack,
            offer_ts: cfg.timestamps,
        }
    }

    pub(super) fn tsval(&self, now: Time) -> u32 {
        (now.as_millis() as u32).wrapping_add(self.ts_offset)
    }

    /// RFC 7323 §5: PAWS. The segment's TSval is older than TS.Recent.
    pub(super) fn paws_rejects(&self, seg: &Segment<'_>) -> bool {
        self.ts_enabled
            && seg
                .opts
                .timestamp
                .is_some_and(|ts| (ts.tsval.wrapping_sub(self.ts_recent) as i32) < 0)
    }

    /// Timestamps: TS.Recent (RFC 7323 §4.3).
    pub(super) fn update_ts_recent(&mut self, seg: &Segment<'_>) {
        if self.ts_enabled {
            if let Some(ts) = seg.opts.timestamp {
                if seg.seq.distance(self.last_ack_sent) <= 0
                    && (ts.tsval.wrapping_sub(self.ts_recent) as i32) >= 0
                {
                    self.ts_recent = ts.tsval;
                }
            }
        }
    }
}

impl Conn {
    fn set_mss(&mut self, cfg: &EndpointConfig, peer_mss: u32, ipv6: bool) {
        let ours = u32::from(our_mss(cfg, ipv6));
        let mut mss = peer_mss.min(ours).max(64);
        if self.opts.ts_enabled {
            mss -= TS_OPT_LEN;
        }
        self.opts.mss = mss;
        self.rec.cc = Controller::new(cfg.congestion, mss, self.snd.last_send);
    }

    /// The options of the peer's SYN (or SYN-ACK): what we answer with and
    /// what holds from then on.
    pub(super) fn apply_syn_options(&mut self, cfg: &EndpointConfig, syn: &Segment<'_>) {
        let ipv6 = self.tuple.is_ipv6();
        self.opts.offer_ts = cfg.timestamps && syn.opts.timestamp.is_some();
        self.opts.ts_enabled = self.opts.offer_ts;
        if let Some(ts) = syn.opts.timestamp {
            self.opts.ts_recent = ts.tsval;
        }
        self.opts.offer_sack = cfg.sack && syn.opts.sack_permitted;
        self.opts.sack_enabled = self.opts.offer_sack;
        match syn.opts.window_scale {
            Some(ws) if cfg.window_scaling => {
                self.opts.offer_ws = true;
                self.snd.wscale = ws.min(MAX_WSCALE);
                self.rcv.wscale = wscale_for(cfg.recv_buffer);
            }
            _ => {
                self.opts.offer_ws = false;
                self.snd.wscale = 0;
                self.rcv.wscale = 0;
            }
        }
        let default = if ipv6 { DEFAULT_MSS_V6 } else { DEFAULT_MSS_V4 };
        let peer = syn.opts.mss.map(u32::from).unwrap_or(default);
        self.set_mss(cfg, peer, ipv6);
    }

    /// The options a valid SYN-cookie ACK restores (what the cookie kept
    /// of the SYN, and the timestamps of the ACK itself).
    pub(super) fn apply_cookie_options(
        &mut self,
        ctx: &Ctx<'_>,
        seg: &Segment<'_>,
        opts: &CookieOpts,
    ) {
        let cfg = ctx.cfg;
        let ipv6 = self.tuple.is_ipv6();
        self.opts.ts_enabled = opts.timestamps && cfg.timestamps;
        if self.opts.ts_enabled {
            if let Some(ts) = seg.opts.timestamp {
                self.opts.ts_recent = ts.tsval;
                // Continue from the TSval the SYN-ACK carried.
                self.opts.ts_offset = ts.tsecr.wrapping_sub(ctx.now.as_millis() as u32);
            } else {
                self.opts.ts_enabled = false;
            }
        }
        match opts.wscale {
            Some(ws) if cfg.window_scaling => {
                self.snd.wscale = ws.min(MAX_WSCALE);
                self.rcv.wscale = wscale_for(cfg.recv_buffer);
            }
            _ => {}
        }
        self.opts.sack_enabled = opts.sack_permitted && cfg.sack;
        let peer_mss = u32::from(opts.mss).max(64);
        self.set_mss(cfg, peer_mss, ipv6);
    }

    /// The options of every segment after the SYNs: the timestamp, and
    /// SACK blocks while we hold out-of-order data.
    pub(super) fn base_options(&self, now: Time) -> TcpOptions {
        let mut o = TcpOptions::default();
        if self.opts.ts_enabled {
            o.timestamp = Some(TcpTimestamp {
                tsval: self.opts.tsval(now),
                tsecr: self.opts.ts_recent,
            });
        }
        if self.opts.sack_enabled && !self.rcv.asm.is_empty() {
            let max = if self.opts.ts_enabled {
                3
            } else {
                MAX_SACK_BLOCKS
            };
            o.sack_blocks = self.rcv.sack_blocks(max);
        }
        o
    }

    pub(super) fn syn_options(&self, now: Time) -> TcpOptions {
        let mut o = TcpOptions {
            // The MSS option carries what we can receive, independent of
            // the peer.
            mss: Some(self.opts.announce_mss),
            ..TcpOptions::default()
        };
        if self.opts.offer_ws {
            o.window_scale = Some(self.rcv.wscale);
        }
        o.sack_permitted = self.opts.offer_sack;
        if self.opts.offer_ts {
            o.timestamp = Some(TcpTimestamp {
                tsval: self.opts.tsval(now),
                tsecr: if self.state == State::SynSent {
                    0
                } else {
                    self.opts.ts_recent
                },
            });
        }
        o
    }
}
