//! `sluice-bench gen`: an AF_XDP UDP traffic generator and echo sink.
//!
//! It attaches sluice's own XDP program to its interface so that echoes to
//! its source address and port range land in its AF_XDP sockets, runs one
//! pinned loop per queue that sends at a share of the target rate and counts
//! what comes back, and reports sent/received/lost, rates and round-trip
//! latency percentiles (HdrHistogram) live and at the end.

mod frame;
mod worker;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args as ClapArgs, ValueEnum};
use crossbeam::channel;
use hdrhistogram::Histogram;
use serde::Serialize;
use sluice_bpf::{Gateway, GatewayOptions, IdList, Interface, XdpMode};
use sluice_xsk::{BindMode, Xsk, XskConfig};

pub use frame::{Endpoints, Template};
use worker::{LoopPlan, Tick};

/// Flags of `sluice-bench gen`.
#[derive(ClapArgs, Debug, Clone)]
pub struct GenArgs {
    /// Interface to send from (run inside its namespace, e.g. with `ip netns exec`).
    #[arg(long)]
    pub iface: String,
    /// Where to send: the echo service, ADDR:PORT or [IPv6]:PORT.
    #[arg(long)]
    pub dst: SocketAddr,
    /// Source address. Default: the interface's first address of the
    /// destination's family.
    #[arg(long)]
    pub src: Option<IpAddr>,
    /// Next-hop MAC. Default: resolved through the kernel's neighbour table.
    #[arg(long, value_parser = parse_mac)]
    pub dst_mac: Option<[u8; 6]>,
    /// Queues to send from, e.g. "0" or "0-1". Default: queue 0.
    #[arg(long, default_value = "0")]
    pub queues: IdList,
    /// Cores for the loops, one per queue. Default: the last allowed CPUs.
    #[arg(long)]
    pub cores: Option<IdList>,
    /// Packets per second over all queues; 0 = as fast as possible.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Seconds to send for.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Stop after this many packets (over all queues).
    #[arg(long)]
    pub count: Option<u64>,
    /// Frame sizes in bytes without FCS, cycled per packet: "60" (a 64-byte
    /// frame on the wire) or "60,512,1514". IPv6 needs at least 78.
    #[arg(long, default_value = "60", value_parser = parse_sizes)]
    pub size: Sizes,
    /// Distinct flows (source ports).
    #[arg(long, default_value_t = 16)]
    pub flows: u16,
    /// First source port; flows use [src-port, src-port + flows).
    #[arg(long, default_value_t = 40000)]
    pub src_port: u16,
    /// Frames per ring operation.
    #[arg(long, default_value_t = 64)]
    pub batch: u32,
    /// Do not check echo payloads byte for byte.
    #[arg(long)]
    pub no_verify: bool,
    /// Seconds to wait for late echoes after sending stops.
    #[arg(long, default_value_t = 0.5)]
    pub drain: f64,
    /// Seconds between progress lines on stderr; 0 = none.
    #[arg(long, default_value_t = 1.0)]
    pub progress: f64,
    /// Print the final report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Where the steering program runs (as for sluice-dataplane).
    #[arg(long, value_enum, default_value_t = ModeArg::Native)]
    pub xdp_mode: ModeArg,
    /// AF_XDP bind mode (as for sluice-dataplane).
    #[arg(long, value_enum, default_value_t = BindArg::Auto)]
    pub bind: BindArg,
    /// Ring entries per AF_XDP ring.
    #[arg(long, default_value_t = 2048)]
    pub ring_size: u32,
    /// bpffs directory for the steering program's maps.
    #[arg(long)]
    pub pin_dir: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ModeArg {
    Native,
    Skb,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum BindArg {
    Auto,
    Copy,
    Zerocopy,
}

/// The final result of a run.
#[derive(Clone, Debug, Serialize)]
pub struct GenReport {
    pub duration_s: f64,
    pub queues: usize,
    pub sizes: Vec<u32>,
    pub flows: u16,
    pub target_pps: Option<f64>,
    pub sent: u64,
    pub received: u64,
    pub lost: i64,
    pub loss_pct: f64,
    pub corrupt: u64,
    pub foreign: u64,
    pub tx_ring_full: u64,
    /// Echoes the kernel dropped before the generator's sockets (ring full,
    /// no fill frame): losses on the generator's side, not the gateway's.
    pub sink_kernel_dropped: u64,
    pub sink_fill_ring_empty: u64,
    /// Echoes that reached an RX queue with no generator socket (dropped by
    /// the generator's steering program).
    pub sink_no_socket: u64,
    pub tx_pps: f64,
    pub rx_pps: f64,
    pub tx_gbps: f64,
    pub generator_busy_pct: f64,
    pub latency_us: Latency,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Latency {
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        Self {
            min: us(h.min()),
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
            mean: h.mean() / 1000.0,
        }
    }
}

pub fn run(args: GenArgs) -> Result<GenReport> {
    if args.flows == 0 {
        bail!("--flows must be at least 1");
    }
    if u32::from(args.src_port) + u32::from(args.flows) > 65536 {
        bail!("--src-port + --flows runs past port 65535");
    }
    if !(args.duration > 0.0 && args.duration.is_finite()) {
        bail!("--duration must be a positive number of seconds");
    }
    if args.rate < 0.0 || !args.rate.is_finite() {
        bail!("--rate must be 0 (max) or a positive number of packets per second");
    }
    let iface = Interface::lookup(&args.iface)?;
    if let Some(bad) = args.queues.0.iter().find(|&&q| q >= iface.rx_queues) {
        bail!(
            "queue {bad} does not exist on {} ({} RX queues)",
            iface.name,
            iface.rx_queues
        );
    }
    let cores = pick_cores(&args)?;
    let src = match args.src {
        Some(s) => s,
        None => iface_address(&iface.name, args.dst.ip().is_ipv6())?,
    };
    if src.is_ipv4() != args.dst.is_ipv4() {
        bail!(
            "--src {src} and --dst {} are of different IP families",
            args.dst
        );
    }
    let dst_mac = match args.dst_mac {
        Some(m) => m,
        None => resolve_mac(&iface.name, src, args.dst)?,
    };
    let ep = Endpoints {
        src_mac: iface.mac,
        dst_mac,
        src,
        dst: args.dst.ip(),
        dst_port: args.dst.port(),
    };
    let run_id = run_id();
    let templates = args
        .size
        .0
        .iter()
        .map(|&s| Template::new(&ep, s as usize, run_id).map_err(|e| anyhow!(e)))
        .collect::<Result<Vec<_>>>()?;
    let max_size = *args.size.0.iter().max().unwrap_or(&60);
    let frame_size = (max_size + 256).next_power_of_two().max(2048);

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))?;
    }

    let steering =
        Gateway::attach(&GatewayOptions {
            iface: iface.clone(),
            mode: match args.xdp_mode {
                ModeArg::Native => XdpMode::Native,
                ModeArg::Skb => XdpMode::Skb,
            },
            pin_dir: Some(args.pin_dir.clone().unwrap_or_else(|| {
                PathBuf::from(format!("/sys/fs/bpf/sluice-bench/{}", iface.name))
            })),
        })
        .context("attaching the steering program for echoes")?;
    let port_hi = args.src_port + (args.flows - 1);
    steering.set_config(iface.mac, Some((args.src_port, port_hi)))?;
    steering.add_vip(src, sluice_bpf::VIP_LOCAL_PORTS)?;

    let xsk_config = XskConfig {
        frame_size,
        frame_count: args.ring_size * 4,
        ring_size: args.ring_size,
        bind: match args.bind {
            BindArg::Auto => BindMode::Auto,
            BindArg::Copy => BindMode::Copy,
            BindArg::Zerocopy => BindMode::ZeroCopy,
        },
        need_wakeup: true,
        busy_poll_budget: None,
    };
    let nq = args.queues.0.len();
    let epoch = Instant::now();
    let (tick_tx, tick_rx) = channel::unbounded::<Tick>();
    let per_loop_rate = (args.rate > 0.0).then(|| args.rate / nq as f64);
    let per_loop_count = args.count.map(|c| c.div_ceil(nq as u64));
    let mut handles = Vec::new();
    let mut start_error = None;
    for (i, (&queue, &core)) in args.queues.0.iter().zip(&cores).enumerate() {
        let (ready_tx, ready_rx) = channel::bounded::<Result<OwnedFd>>(1);
        let plan = LoopPlan {
            templates: templates.clone(),
            src_ports: (args.src_port, port_hi),
            rate: per_loop_rate,
            count: per_loop_count,
            batch: args.batch as usize,
            run_id,
            verify: !args.no_verify,
            epoch,
            // Set again below once every loop is ready.
            send_until: epoch,
            drain: Duration::from_secs_f64(args.drain),
            tick: Duration::from_millis(100),
            seq_base: (i as u64) << 28,
        };
        let (iface_name, xsk_config, ticks, stop) = (
            iface.name.clone(),
            xsk_config.clone(),
            tick_tx.clone(),
            Arc::clone(&stop),
        );
        let (go_tx, go_rx) = channel::bounded::<Instant>(1);
        let handle = std::thread::Builder::new()
            .name(format!("gen-q{queue}"))
            .spawn(move || {
                if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
                    let _ = ready_tx.send(Err(anyhow!(
                        "cannot pin the loop of queue {queue} to core {core}"
                    )));
                    return;
                }
                let mut xsk = match Xsk::open(&iface_name, queue, &xsk_config) {
                    Ok(x) => x,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.into()));
                        return;
                    }
                };
                // Frames on the fill ring before the socket is in the XSKMAP:
                // an echo that reaches a socket with an empty fill ring is lost.
                xsk.refill(xsk.free_frames() / 2);
                let _ = ready_tx.send(xsk.fd().try_clone_to_owned().map_err(Into::into));
                let Ok(send_until) = go_rx.recv() else { return };
                let plan = LoopPlan { send_until, ..plan };
                worker::run(&mut xsk, &plan, &ticks, &stop);
            })?;
        handles.push((handle, go_tx));
        match ready_rx
            .recv()
            .map_err(|_| anyhow!("loop of queue {queue} died"))
            .and_then(|r| r)
        {
            Ok(fd) => steering.register_socket(queue, fd.as_fd())?,
            Err(e) => {
                start_error = Some(e);
                break;
            }
        }
    }
    drop(tick_tx);
    if let Some(e) = start_error {
        stop.store(true, Ordering::Relaxed);
        drop(handles);
        return Err(e);
    }
    let started = Instant::now();
    let send_until = started + Duration::from_secs_f64(args.duration);
    for (_, go) in &handles {
        let _ = go.send(send_until);
    }

    let report = collect(&args, tick_rx, started, nq);
    for (h, _) in handles {
        let _ = h.join();
    }
    let steered = steering.counters()?;
    steering.detach()?;
    let mut report = report?;
    report.sink_no_socket = steered[sluice_bpf::XdpCounter::DropNoSocket].packets;
    if report.sink_no_socket > 0 {
        eprintln!(
            "gen: {} echoes arrived on RX queues without a generator socket and were dropped; \
             give --queues covering every RX queue of {} (it has {})",
            report.sink_no_socket, iface.name, iface.rx_queues
        );
    }
    Ok(report)
}

/// Aggregate ticks until every loop is done; print progress.
fn collect(
    args: &GenArgs,
    ticks: channel::Receiver<Tick>,
    started: Instant,
    nloops: usize,
) -> Result<GenReport> {
    let mut total = Tick::empty();
    let mut window = Tick::empty();
    let mut done = 0;
    let progress = (args.progress > 0.0).then(|| Duration::from_secs_f64(args.progress));
    let mut last_print = started;
    while done < nloops {
        let Ok(t) = ticks.recv_timeout(Duration::from_millis(100)) else {
            continue;
        };
        if t.done {
            done += 1;
        }
        window.merge(&t)?;
        total.merge(&t)?;
        if let Some(p) = progress {
            let now = Instant::now();
            if now.duration_since(last_print) >= p {
                let secs = now.duration_since(last_print).as_secs_f64();
                eprintln!(
                    "[{:>6.1}s] sent {:>9} pps  recv {:>9} pps  lost {:>7}  p50 {:>8.1} us  p99 {:>8.1} us",
                    now.duration_since(started).as_secs_f64(),
                    fmt_rate(window.sent as f64 / secs),
                    fmt_rate(window.received as f64 / secs),
                    window.sent as i64 - window.received as i64,
                    Latency::of(&window.latency).p50,
                    Latency::of(&window.latency).p99,
                );
                window = Tick::empty();
                last_print = now;
            }
        }
    }
    let secs = args.duration.min(started.elapsed().as_secs_f64()).max(1e-9);
    let lost = total.sent as i64 - total.received as i64;
    Ok(GenReport {
        duration_s: secs,
        queues: nloops,
        sizes: args.size.0.clone(),
        flows: args.flows,
        target_pps: (args.rate > 0.0).then_some(args.rate),
        sent: total.sent,
        received: total.received,
        lost,
        loss_pct: if total.sent > 0 {
            lost as f64 * 100.0 / total.sent as f64
        } else {
            0.0
        },
        corrupt: total.corrupt,
        foreign: total.foreign,
        tx_ring_full: total.tx_ring_full,
        // Disjoint in XDP_STATISTICS (full struct): both are frames lost.
        sink_kernel_dropped: total.kernel_rx_dropped + total.kernel_rx_ring_full,
        sink_fill_ring_empty: total.kernel_fill_ring_empty,
        sink_no_socket: 0,
        tx_pps: total.sent as f64 / secs,
        rx_pps: total.received as f64 / secs,
        tx_gbps: total.sent_bytes as f64 * 8.0 / secs / 1e9,
        generator_busy_pct: total.busy_ns as f64 / (secs * 1e9 * nloops as f64) * 100.0,
        latency_us: Latency::of(&total.latency),
    })
}

impl Tick {
    fn merge(&mut self, o: &Tick) -> Result<()> {
        self.sent += o.sent;
        self.sent_bytes += o.sent_bytes;
        self.received += o.received;
        self.corrupt += o.corrupt;
        self.foreign += o.foreign;
        self.tx_ring_full += o.tx_ring_full;
        self.busy_ns += o.busy_ns;
        self.kernel_rx_dropped += o.kernel_rx_dropped;
        self.kernel_rx_ring_full += o.kernel_rx_ring_full;
        self.kernel_fill_ring_empty += o.kernel_fill_ring_empty;
        self.latency
            .add(&o.latency)
            .map_err(|e| anyhow!("merging latency histograms: {e:?}"))
    }
}

/// The human form of a report.
pub fn human(r: &GenReport) -> String {
    let l = &r.latency_us;
    format!(
        "duration      {:.2} s, {} queue(s), sizes {:?} B, {} flows, rate {}\n\
         sent          {} ({} pps, {:.3} Gb/s)\n\
         received      {} ({} pps)\n\
         lost          {} ({:.4}%)\n\
         corrupt       {}\n\
         tx ring full  {}\n\
         sink drops    {} (kernel, generator side; fill ring empty {}), {} on queues without a socket\n\
         latency (us)  min {:.1}  p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  mean {:.1}\n\
         generator     {:.1}% busy\n",
        r.duration_s,
        r.queues,
        r.sizes,
        r.flows,
        r.target_pps.map_or("max".to_string(), |p| format!("{} pps", fmt_rate(p))),
        r.sent,
        fmt_rate(r.tx_pps),
        r.tx_gbps,
        r.received,
        fmt_rate(r.rx_pps),
        r.lost,
        r.loss_pct,
        r.corrupt,
        r.tx_ring_full,
        r.sink_kernel_dropped,
        r.sink_fill_ring_empty,
        r.sink_no_socket,
        l.min,
        l.p50,
        l.p90,
        l.p99,
        l.p999,
        l.max,
        l.mean,
        r.generator_busy_pct,
    )
}

fn fmt_rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn pick_cores(args: &GenArgs) -> Result<Vec<usize>> {
    let allowed: Vec<usize> = core_affinity::get_core_ids()
        .ok_or_else(|| anyhow!("cannot read CPU affinity"))?
        .into_iter()
        .map(|c| c.id)
        .collect();
    match &args.cores {
        Some(IdList(c)) if c.len() != args.queues.0.len() => {
            bail!(
                "--cores needs one core per queue ({} queues)",
                args.queues.0.len()
            )
        }
        Some(IdList(c)) => {
            let c: Vec<usize> = c.iter().map(|&x| x as usize).collect();
            if let Some(bad) = c.iter().find(|x| !allowed.contains(x)) {
                bail!("core {bad} is not allowed (allowed: {allowed:?})");
            }
            Ok(c)
        }
        None => Ok((0..args.queues.0.len())
            .map(|i| allowed[allowed.len() - 1 - (i % allowed.len())])
            .collect()),
    }
}

/// First address of `family` on the interface.
fn iface_address(iface: &str, ipv6: bool) -> Result<IpAddr> {
    for ifa in nix::ifaddrs::getifaddrs()? {
        if ifa.interface_name != iface {
            continue;
        }
        let Some(addr) = ifa.address else { continue };
        if let (false, Some(v4)) = (ipv6, addr.as_sockaddr_in()) {
            return Ok(IpAddr::V4(v4.ip()));
        }
        if let (true, Some(v6)) = (ipv6, addr.as_sockaddr_in6()) {
            let ip = v6.ip();
            if (ip.segments()[0] & 0xffc0) != 0xfe80 {
                return Ok(IpAddr::V6(ip));
            }
        }
    }
    bail!(
        "{iface} has no {} address: give --src",
        if ipv6 { "global IPv6" } else { "IPv4" }
    )
}

/// Make the kernel resolve `dst` (one datagram), then read its neighbour entry.
fn resolve_mac(iface: &str, src: IpAddr, dst: SocketAddr) -> Result<[u8; 6]> {
    let sock = UdpSocket::bind(SocketAddr::new(src, 0))
        .with_context(|| format!("binding a probe socket to {src}"))?;
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let _ = sock.send_to(b"sluice-bench neighbour probe", dst);
        std::thread::sleep(Duration::from_millis(100));
        let out = Command::new("ip")
            .args([
                "-j",
                "neigh",
                "show",
                "to",
                &dst.ip().to_string(),
                "dev",
                iface,
            ])
            .output()
            .context("running `ip neigh` (is iproute2 installed?)")?;
        let entries: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
        if let Some(mac) = entries.as_array().and_then(|a| {
            a.iter()
                .find_map(|e| e.get("lladdr")?.as_str().map(str::to_owned))
        }) {
            return parse_mac(&mac).map_err(|e| anyhow!(e));
        }
        if Instant::now() > deadline {
            bail!(
                "no neighbour entry for {} on {iface} after 3 s: is the gateway answering \
                 ARP/ND for it? (or give --dst-mac)",
                dst.ip()
            );
        }
    }
}

fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return Err(format!("{s:?} is not a MAC address (aa:bb:cc:dd:ee:ff)"));
    }
    let mut mac = [0u8; 6];
    for (m, p) in mac.iter_mut().zip(parts) {
        *m = u8::from_str_radix(p, 16).map_err(|_| format!("{s:?} is not a MAC address"))?;
    }
    Ok(mac)
}

/// Frame sizes, in the order they are cycled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Sizes(pub Vec<u32>);

fn parse_sizes(s: &str) -> Result<Sizes, String> {
    let sizes = s
        .split(',')
        .map(|x| {
            x.trim()
                .parse::<u32>()
                .map_err(|_| format!("{x:?} is not a frame size in bytes"))
        })
        .collect::<Result<Vec<u32>, String>>()?;
    if let Some(bad) = sizes.iter().find(|&&n| n > 9000) {
        return Err(format!("frame size {bad} is larger than 9000 bytes"));
    }
    Ok(Sizes(sizes))
}

fn run_id() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (t ^ std::process::id().rotate_left(16)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            gen: GenArgs,
        }
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let c = Cli::try_parse_from([
            "gen",
            "--iface",
            "client0",
            "--dst",
            "[2001:2::100]:7",
            "--queues",
            "0-1",
            "--size",
            "64,1514",
        ])
        .unwrap();
        assert_eq!(c.gen.queues, IdList(vec![0, 1]));
        assert_eq!(c.gen.size, Sizes(vec![64, 1514]));
        assert!(Cli::try_parse_from([
            "gen",
            "--iface",
            "x",
            "--dst",
            "1.2.3.4:5",
            "--size",
            "99999"
        ])
        .is_err());
    }

    #[test]
    fn macs_parse() {
        assert_eq!(
            parse_mac("02:00:0a:ff:00:01").unwrap(),
            [2, 0, 10, 255, 0, 1]
        );
        assert!(parse_mac("02:00:0a:ff:00").is_err());
        assert!(parse_mac("zz:00:0a:ff:00:01").is_err());
    }
}
