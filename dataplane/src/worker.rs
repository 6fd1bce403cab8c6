//! The per-queue poll loop.
//!
//! One thread per NIC queue, pinned to its own core, owning its AF_XDP
//! socket, UMEM, service table and counters: nothing on the hot path is
//! shared with another loop. Each iteration:
//!
//! 1. reclaim TX completions into the free list,
//! 2. top the fill ring up from the free list,
//! 3. take a batch off the RX ring; each frame is handled in place and either
//!    queued for TX (same frame, rewritten) or returned to the free list,
//!    TCP segments go to the loop's TCP stack (the frame is recycled),
//! 4. TCP: segments other loops forwarded, timers, events (which drive the
//!    HTTP connections), then the stack's packets built in free frames,
//! 5. push queued frames onto the TX ring, kicking the kernel if it asks,
//! 6. if nothing happened, sleep in ppoll() until a frame, a forwarded
//!    segment or the stack's next timer (or spin with --busy-poll).
//!
//! Time spent in iterations that did work is the loop's busy time, so the
//! cost per packet is known even when the loop spins.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sluice_xsk::{RxAction, Xsk};

use crate::services::{Services, Verdict};
use crate::stats::{Counters, SharedCounters};
use crate::tcp_service::TcpService;

/// How often the loop reads the socket's kernel counters (a syscall).
const KERNEL_STATS_PERIOD: Duration = Duration::from_millis(100);
/// How long a stopping loop waits for its last frames to leave.
const DRAIN_TIMEOUT: Duration = Duration::from_millis(200);

#[derive(Clone, Debug)]
pub struct LoopConfig {
    pub batch: usize,
    pub busy_poll: bool,
    pub poll_timeout: Duration,
    /// On stop, how long open connections get to finish (HTTP/2 GOAWAY,
    /// HTTP/1.1 `Connection: close` after the request in flight); zero:
    /// stop at once.
    pub drain_timeout: Duration,
}

/// Run until `stop` is set; returns the final counters.
pub fn run(
    xsk: &mut Xsk,
    services: &Services,
    mut tcp: Option<&mut TcpService>,
    cfg: &LoopConfig,
    shared: &SharedCounters,
    stop: &AtomicBool,
) -> Counters {
    let mut c = Counters::default();
    let mut last_kernel_read = Instant::now();
    let mut drain_until: Option<Instant> = None;
    loop {
        if stop.load(Ordering::Relaxed) {
            let Some(tcp) = tcp.as_deref_mut() else {
                break;
            };
            let now = tcp.now();
            match drain_until {
                None if !cfg.drain_timeout.is_zero() => {
                    // Stop accepting, ask every app to finish, keep serving.
                    tcp.begin_drain(now);
                    drain_until = Some(Instant::now() + cfg.drain_timeout);
                }
                Some(until) if tcp.live_connections() > 0 && Instant::now() < until => {}
                _ => {
                    // Drained, or out of time: reset what is left so no
                    // peer waits on a connection nobody serves.
                    tcp.abort_all();
                    tcp.run_engine(now);
                    tcp.transmit(now, xsk, &mut c);
                    xsk.flush_tx();
                    break;
                }
            }
        }
        let start = Instant::now();
        let reclaimed = xsk.reclaim();
        xsk.refill(0);
        let mut work = reclaimed;
        match tcp.as_deref_mut() {
            None => {
                work += xsk.receive(cfg.batch, |frame| {
                    match services.handle(frame.bytes_mut(), &mut c) {
                        Verdict::Transmit => RxAction::Transmit,
                        Verdict::Drop => RxAction::Drop,
                        Verdict::Tcp(_) => {
                            c.drop_no_service += 1;
                            RxAction::Drop
                        }
                    }
                });
            }
            Some(tcp) => {
                let now = tcp.now();
                work += xsk.receive(cfg.batch, |frame| {
                    match services.handle(frame.bytes_mut(), &mut c) {
                        Verdict::Transmit => RxAction::Transmit,
                        Verdict::Drop => RxAction::Drop,
                        Verdict::Tcp(cls) => {
                            tcp.on_frame(now, frame.bytes(), &cls, &mut c);
                            RxAction::Drop
                        }
                    }
                });
                work += tcp.handle_mail(now, &mut c);
                work += tcp.run_engine(now);
                work += tcp.transmit(now, xsk, &mut c);
            }
        }
        work += xsk.flush_tx();
        c.iterations += 1;
        if work > 0 {
            c.busy_ns += start.elapsed().as_nanos() as u64;
        } else if cfg.busy_poll {
            std::hint::spin_loop();
        } else {
            sleep(xsk, tcp.as_deref(), cfg.poll_timeout);
        }
        if start.duration_since(last_kernel_read) >= KERNEL_STATS_PERIOD {
            last_kernel_read = start;
            read_kernel_stats(xsk, &mut c);
            if let Some(tcp) = tcp.as_deref_mut() {
                tcp.publish(&mut c);
            }
        }
        merge_socket_stats(xsk, &mut c);
        shared.publish(&c);
    }
    drain(xsk);
    read_kernel_stats(xsk, &mut c);
    if let Some(tcp) = tcp {
        tcp.publish(&mut c);
    }
    merge_socket_stats(xsk, &mut c);
    shared.publish(&c);
    c
}

/// Sleep in ppoll() until a frame arrives, another loop forwards a
/// segment, the TCP stack's next timer, or `timeout`.
fn sleep(xsk: &mut Xsk, tcp: Option<&TcpService>, timeout: Duration) {
    let Some(tcp) = tcp else {
        let _ = xsk.wait(timeout);
        return;
    };
    let timeout = match tcp.next_deadline() {
        Some(at) => at.saturating_duration_since(Instant::now()).min(timeout),
        None => timeout,
    };
    let _ = xsk.wait_with(timeout, tcp.mailbox().bell());
}

/// Let frames already on the TX ring leave before the socket closes.
fn drain(xsk: &mut Xsk) {
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    while xsk.tx_in_flight() > 0 && Instant::now() < deadline {
        xsk.flush_tx();
        if xsk.reclaim() == 0 {
            std::thread::sleep(Duration::from_micros(100));
        }
    }
}

fn merge_socket_stats(xsk: &Xsk, c: &mut Counters) {
    let s = xsk.stats();
    c.rx_packets = s.rx_frames;
    c.rx_bytes = s.rx_bytes;
    c.tx_packets = s.tx_frames;
    c.tx_bytes = s.tx_bytes;
    c.drop_tx_ring_full = s.tx_ring_full;
    c.fill_starved = s.fill_starved;
    c.wakeups_tx = s.tx_kicks;
    c.wakeups_fill = s.fill_kicks;
    c.polls = s.polls;
    c.kick_ns = s.kick_ns;
}

fn read_kernel_stats(xsk: &Xsk, c: &mut Counters) {
    if let Ok(k) = xsk.kernel_stats() {
        c.kernel_rx_dropped = k.rx_dropped;
        c.kernel_rx_ring_full = k.rx_ring_full;
        c.kernel_fill_ring_empty = k.rx_fill_ring_empty;
        c.kernel_rx_invalid_descs = k.rx_invalid_descs;
        c.kernel_tx_invalid_descs = k.tx_invalid_descs;
    }
}
