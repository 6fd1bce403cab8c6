//! One generator loop per queue: sends at its share of the rate, receives
//! echoes on the same socket, and reports every tick to the main thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam::channel::Sender;
use hdrhistogram::Histogram;
use sluice_xsk::{RxAction, Xsk};

use super::frame::{parse_echo, Template};

/// What a loop did since its last report.
pub struct Tick {
    pub sent: u64,
    pub sent_bytes: u64,
    pub received: u64,
    pub corrupt: u64,
    pub foreign: u64,
    pub tx_ring_full: u64,
    pub busy_ns: u64,
    /// Kernel counters of the loop's socket (final tick only).
    pub kernel_rx_dropped: u64,
    pub kernel_rx_ring_full: u64,
    pub kernel_fill_ring_empty: u64,
    pub latency: Histogram<u64>,
    pub done: bool,
}

impl Tick {
    pub fn empty() -> Self {
        Tick {
            sent: 0,
            sent_bytes: 0,
            received: 0,
            corrupt: 0,
            foreign: 0,
            tx_ring_full: 0,
            busy_ns: 0,
            kernel_rx_dropped: 0,
            kernel_rx_ring_full: 0,
            kernel_fill_ring_empty: 0,
            latency: Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds"),
            done: false,
        }
    }
}

pub struct LoopPlan {
    pub templates: Vec<Template>,
    pub src_ports: (u16, u16),
    /// Packets per second for this loop; None = as fast as possible.
    pub rate: Option<f64>,
    /// Total packets for this loop; None = until `send_until`.
    pub count: Option<u64>,
    pub batch: usize,
    pub run_id: u32,
    pub verify: bool,
    pub epoch: Instant,
    pub send_until: Instant,
    /// After sending stops, how long to wait for the last echoes.
    pub drain: Duration,
    pub tick: Duration,
    /// The loop's sequence numbers are `seq_base + i` (32 bits on the wire:
    /// the loop index sits in the top 4), unique across loops.
    pub seq_base: u64,
}

pub fn run(xsk: &mut Xsk, plan: &LoopPlan, ticks: &Sender<Tick>, stop: &AtomicBool) {
    let mut tick = Tick::empty();
    let (port_lo, port_hi) = plan.src_ports;
    let nports = u64::from(port_hi - port_lo) + 1;
    let mut seq: u64 = 0;
    let start = Instant::now();
    let mut last_tick = start;
    let mut last_ring_full = 0;
    let mut last_tx_bytes = 0;
    // Keep half the UMEM for transmitting: the fill ring has the rest
    // (primed before the socket was registered).
    let keep_free = (xsk.free_frames() + xsk.frames_in_fill()) / 2;
    let mut draining_since: Option<Instant> = None;

    loop {
        let now = Instant::now();
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let sending =
            draining_since.is_none() && now < plan.send_until && plan.count.is_none_or(|c| seq < c);
        if !sending && draining_since.is_none() {
            draining_since = Some(now);
        }
        if let Some(since) = draining_since {
            if now.duration_since(since) >= plan.drain {
                break;
            }
        }

        let reclaimed = xsk.reclaim();
        xsk.refill(keep_free);
        let now_ns = |i: Instant| i.duration_since(plan.epoch).as_nanos() as u64;
        let (received, corrupt, foreign, lat) = (
            &mut tick.received,
            &mut tick.corrupt,
            &mut tick.foreign,
            &mut tick.latency,
        );
        let got = xsk.receive(plan.batch, |frame| {
            match parse_echo(frame.bytes(), plan.run_id, plan.verify) {
                Some(echo) => {
                    *received += 1;
                    if !echo.intact {
                        *corrupt += 1;
                    }
                    // Read the clock per frame: a batch timestamp taken before
                    // the ring is read would predate frames that arrive while
                    // it is being read.
                    let rtt = now_ns(Instant::now()).saturating_sub(echo.sent_ns);
                    let _ = lat.record(rtt.max(1));
                }
                None => *foreign += 1,
            }
            RxAction::Drop
        });

        if sending {
            let allowed = match plan.rate {
                Some(rate) => {
                    let due = (now.duration_since(start).as_secs_f64() * rate) as u64 + 1;
                    due.saturating_sub(seq) as usize
                }
                None => usize::MAX,
            };
            let remaining = plan.count.map_or(usize::MAX, |c| (c - seq) as usize);
            let n = plan.batch.min(allowed).min(remaining);
            if n > 0 {
                let sent_ns = now_ns(now);
                let ntemplates = plan.templates.len() as u64;
                xsk.transmit(n, |frame| {
                    let s = plan.seq_base + seq;
                    let t = &plan.templates[(seq % ntemplates) as usize];
                    let port = port_lo + (seq % nports) as u16;
                    let len = t.write(frame.buffer_mut(), port, s, sent_ns);
                    frame.set_len(len);
                    seq += 1;
                    true
                });
            }
        }
        let placed = xsk.flush_tx();
        tick.sent += placed as u64;
        let stats = xsk.stats();
        tick.tx_ring_full += stats.tx_ring_full - last_ring_full;
        last_ring_full = stats.tx_ring_full;
        tick.sent_bytes += stats.tx_bytes - last_tx_bytes;
        last_tx_bytes = stats.tx_bytes;
        let did = got + reclaimed + placed;
        let end = Instant::now();
        if did > 0 {
            tick.busy_ns += end.duration_since(now).as_nanos() as u64;
        } else if !sending {
            let _ = xsk.wait(Duration::from_micros(200));
        } else if let Some(rate) = plan.rate {
            // Ahead of schedule: sleep (waking early for echoes) until the
            // next packet is due, so that a paced generator's core does
            // only real work and the CPU accounting of a benchmark stays
            // honest. Spinning here would bill the generator for idling.
            let next_due = start + Duration::from_secs_f64(seq as f64 / rate);
            if let Some(ahead) = next_due.checked_duration_since(end) {
                let _ = xsk.wait(ahead.min(Duration::from_micros(500)));
            }
        }
        if end.duration_since(last_tick) >= plan.tick {
            last_tick = end;
            let report = std::mem::replace(&mut tick, Tick::empty());
            let _ = ticks.send(report);
        }
    }
    tick.done = true;
    if let Ok(k) = xsk.kernel_stats() {
        tick.kernel_rx_dropped = k.rx_dropped;
        tick.kernel_rx_ring_full = k.rx_ring_full;
        tick.kernel_fill_ring_empty = k.rx_fill_ring_empty;
    }
    let _ = ticks.send(tick);
}
