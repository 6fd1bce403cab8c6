//! Start-up, the reporter, and shutdown.
//!
//! Order matters: signal handlers first (a Ctrl-C during start-up still
//! cleans up), then the XDP program and its maps, then one pinned thread per
//! queue that opens its own socket (so the UMEM is first touched on its own
//! core) and hands a duplicate of the socket's fd back for the XSKMAP. On
//! shutdown the loops stop and close their sockets, then the program is
//! detached and its pins removed, then the final counters are printed.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use crossbeam::channel;
use sluice_bpf::{Gateway, GatewayOptions, IdList, Interface, L4Proto, XdpMode};
use sluice_xsk::{BindMode, Xsk, XskConfig};
use tracing::{info, warn};

use crate::cli::{Args, BindArg, XdpModeArg};
use crate::report;
use crate::services::{Service, Services};
use crate::stats::{Counters, QueueLabel, SharedCounters};
use crate::worker::{self, LoopConfig};

/// How often the reporter wakes to check for a stop or a dead loop.
const REPORTER_TICK: Duration = Duration::from_millis(50);

struct Loop {
    label: QueueLabel,
    shared: Arc<SharedCounters>,
    handle: JoinHandle<Counters>,
}

pub fn run(args: Args) -> Result<()> {
    let iface = Interface::lookup(&args.iface)?;
    let queues = select_queues(&args, &iface)?;
    let cores = select_cores(&args, queues.len())?;
    let xsk_config = XskConfig {
        frame_size: args.frame_size,
        frame_count: args.umem_frames,
        ring_size: args.ring_size,
        bind: match args.bind {
            BindArg::Auto => BindMode::Auto,
            BindArg::Copy => BindMode::Copy,
            BindArg::Zerocopy => BindMode::ZeroCopy,
        },
        need_wakeup: args.need_wakeup,
        busy_poll_budget: args.busy_poll.then_some(args.batch),
    };
    xsk_config.validate()?;
    if args.batch == 0 || args.batch > args.ring_size {
        bail!(
            "--batch must be between 1 and --ring-size ({}), got {}",
            args.ring_size,
            args.batch
        );
    }
    let services = build_services(&args);
    if args.udp_echo.is_empty() {
        warn!("no services configured (--udp-echo): the loops will only count what reaches them");
    }

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal while stopping exits at once (status 1).
        signal_hook::flag::register_conditional_shutdown(sig, 1, Arc::clone(&stop))?;
        signal_hook::flag::register(sig, Arc::clone(&stop))?;
    }

    let gateway = Gateway::attach(&GatewayOptions {
        iface: iface.clone(),
        mode: match args.xdp_mode {
            XdpModeArg::Native => XdpMode::Native,
            XdpModeArg::Skb => XdpMode::Skb,
        },
        pin_dir: args.pin_dir.clone(),
    })?;
    configure_gateway(&gateway, &iface, &args)?;

    let loop_config = LoopConfig {
        batch: args.batch as usize,
        busy_poll: args.busy_poll,
        poll_timeout: args.poll_timeout(),
    };
    let (loops, start_error) = start_loops(
        &gateway,
        &iface,
        &queues,
        &cores,
        &xsk_config,
        &services,
        &loop_config,
        &stop,
    );
    if let Some(e) = start_error {
        stop.store(true, Ordering::Relaxed);
        for l in loops {
            let _ = l.handle.join();
        }
        drop(gateway);
        return Err(e);
    }
    info!(
        iface = %iface.name,
        queues = ?queues,
        cores = ?cores,
        pin_dir = %gateway.pin_dir().display(),
        "serving; SIGINT or SIGTERM to stop"
    );

    let failure = report_until_stopped(&args, &loops, &gateway, &stop);
    stop.store(true, Ordering::Relaxed);

    let labels: Vec<QueueLabel> = loops.iter().map(|l| l.label).collect();
    let mut finals = Vec::with_capacity(loops.len());
    let mut panicked = None;
    for l in loops {
        match l.handle.join() {
            Ok(c) => finals.push(c),
            Err(_) => {
                panicked = Some(l.label.queue);
                finals.push(l.shared.snapshot());
            }
        }
    }
    let xdp = gateway.counters().ok();
    gateway
        .detach()
        .context("detaching the XDP program and removing its pins")?;
    info!("XDP program detached, pins removed");
    report::final_report(args.stats_format, &labels, &finals, xdp.as_ref());

    if let Some(q) = panicked {
        bail!("the poll loop of queue {q} panicked");
    }
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(())
}

fn build_services(args: &Args) -> Services {
    let mut s = Services::default();
    for addr in &args.udp_echo {
        s.add_udp(*addr, Service::UdpEcho);
        if !args.no_icmp_echo {
            s.add_icmp_echo(addr.ip());
        }
    }
    s
}

fn configure_gateway(gateway: &Gateway, iface: &Interface, args: &Args) -> Result<()> {
    gateway.set_config(iface.mac, None)?;
    let mut vip_flags = sluice_bpf::VIP_ANSWER_NEIGH;
    if !args.no_icmp_echo {
        vip_flags |= sluice_bpf::VIP_ICMP_ECHO;
    }
    for (id, at) in args.udp_echo.iter().enumerate() {
        gateway.add_vip(at.ip(), vip_flags)?;
        gateway.add_listener(at.ip(), L4Proto::Udp, at.port(), id as u32)?;
    }
    Ok(())
}

fn select_queues(args: &Args, iface: &Interface) -> Result<Vec<u32>> {
    let available = iface.rx_queues;
    let queues = match &args.queues {
        Some(q) => q.0.clone(),
        None => (0..available).collect(),
    };
    if queues.is_empty() {
        bail!("{} reports no RX queues", iface.name);
    }
    if let Some(bad) = queues.iter().find(|&&q| q >= available) {
        bail!(
            "queue {bad} does not exist on {} (it has {available} RX queue{}: 0-{})",
            iface.name,
            if available == 1 { "" } else { "s" },
            available.saturating_sub(1)
        );
    }
    Ok(queues)
}

fn select_cores(args: &Args, nqueues: usize) -> Result<Vec<usize>> {
    let allowed: Vec<usize> = core_affinity::get_core_ids()
        .ok_or_else(|| anyhow!("cannot read this process's CPU affinity"))?
        .into_iter()
        .map(|c| c.id)
        .collect();
    match &args.cores {
        Some(IdList(cores)) => {
            if cores.len() != nqueues {
                bail!(
                    "--cores names {} core{} for {nqueues} queue{}: give one core per queue",
                    cores.len(),
                    if cores.len() == 1 { "" } else { "s" },
                    if nqueues == 1 { "" } else { "s" },
                );
            }
            let cores: Vec<usize> = cores.iter().map(|&c| c as usize).collect();
            if let Some(bad) = cores.iter().find(|c| !allowed.contains(c)) {
                bail!("core {bad} is not one this process may run on (allowed: {allowed:?})");
            }
            Ok(cores)
        }
        None => {
            if allowed.is_empty() {
                bail!("no CPU is available to this process");
            }
            if nqueues > allowed.len() {
                warn!(
                    "{nqueues} queues but only {} CPUs: some poll loops share a core",
                    allowed.len()
                );
            }
            Ok((0..nqueues).map(|i| allowed[i % allowed.len()]).collect())
        }
    }
}

type Ready = Result<(OwnedFd, BindMode)>;

#[allow(clippy::too_many_arguments)]
fn start_loops(
    gateway: &Gateway,
    iface: &Interface,
    queues: &[u32],
    cores: &[usize],
    xsk_config: &XskConfig,
    services: &Services,
    loop_config: &LoopConfig,
    stop: &Arc<AtomicBool>,
) -> (Vec<Loop>, Option<anyhow::Error>) {
    let mut loops = Vec::with_capacity(queues.len());
    let mut first_error = None;
    for (&queue, &core) in queues.iter().zip(cores) {
        let (ready_tx, ready_rx) = channel::bounded::<Ready>(1);
        let shared = Arc::new(SharedCounters::default());
        let handle = {
            let (iface, xsk_config, services, loop_config) = (
                iface.name.clone(),
                xsk_config.clone(),
                services.clone(),
                loop_config.clone(),
            );
            let (shared, stop) = (Arc::clone(&shared), Arc::clone(stop));
            std::thread::Builder::new()
                .name(format!("sluice-q{queue}"))
                .spawn(move || {
                    if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
                        let _ = ready_tx.send(Err(anyhow!(
                            "cannot pin queue {queue}'s loop to core {core}"
                        )));
                        return Counters::default();
                    }
                    let mut xsk = match Xsk::open(&iface, queue, &xsk_config) {
                        Ok(x) => x,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.into()));
                            return Counters::default();
                        }
                    };
                    // Frames on the fill ring before the socket is in the
                    // XSKMAP, or the first packets find none and are dropped.
                    xsk.refill(0);
                    let fd = xsk.fd().try_clone_to_owned().map_err(anyhow::Error::from);
                    let _ = ready_tx.send(fd.map(|fd| (fd, xsk.bind_mode())));
                    worker::run(&mut xsk, &services, &loop_config, &shared, &stop)
                })
                .expect("spawning a poll-loop thread")
        };
        loops.push(Loop {
            label: QueueLabel { queue, core },
            shared,
            handle,
        });
        let ready = ready_rx
            .recv()
            .map_err(|_| anyhow!("the poll loop of queue {queue} died during start-up"))
            .and_then(|r| r);
        match ready {
            Ok((fd, mode)) => {
                if let Err(e) = gateway.register_socket(queue, fd.as_fd()) {
                    first_error = Some(e.into());
                    break;
                }
                info!(queue, core, bind = ?mode, "AF_XDP socket bound");
            }
            Err(e) => {
                first_error = Some(e);
                break;
            }
        }
    }
    (loops, first_error)
}

/// Print counters every interval until a signal arrives or a loop dies.
/// Returns the error that ended the run early, if any.
fn report_until_stopped(
    args: &Args,
    loops: &[Loop],
    gateway: &Gateway,
    stop: &AtomicBool,
) -> Option<anyhow::Error> {
    let started = Instant::now();
    let labels: Vec<QueueLabel> = loops.iter().map(|l| l.label).collect();
    let mut before: Vec<Counters> = vec![Counters::default(); loops.len()];
    let mut last = started;
    let interval = args.stats_interval();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(REPORTER_TICK);
        if stop.load(Ordering::Relaxed) {
            // Loops finishing now are obeying the stop, not dying.
            break;
        }
        if let Some(dead) = loops.iter().find(|l| l.handle.is_finished()) {
            return Some(anyhow!(
                "the poll loop of queue {} stopped unexpectedly",
                dead.label.queue
            ));
        }
        let Some(interval) = interval else { continue };
        let now = Instant::now();
        if now.duration_since(last) < interval {
            continue;
        }
        let snapshot: Vec<Counters> = loops.iter().map(|l| l.shared.snapshot()).collect();
        let xdp = gateway.counters().ok();
        report::interval_report(
            args.stats_format,
            now.duration_since(started),
            now.duration_since(last),
            &labels,
            &snapshot,
            &before,
            xdp.as_ref(),
        );
        before = snapshot;
        last = now;
    }
    None
}
