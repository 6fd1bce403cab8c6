//! `sluice-bench chaos`: attaches sluice's chaos program (XDP ingress, TCX
//! egress) to an interface, prints its counters every second, and detaches
//! on SIGINT/SIGTERM or when --duration ends.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use sluice_bpf::{ppm_from_percent, Chaos, ChaosConfig, ChaosOptions, SynackDrop, XdpMode};

#[derive(Args, Debug)]
pub struct ChaosArgs {
    /// Interface to attach to (ingress: XDP; egress: TCX, for --dup).
    #[arg(long)]
    iface: String,
    /// Network namespace of the interface (`ip netns` name).
    #[arg(long)]
    netns: Option<String>,
    /// Drop this percentage (0-100) of matching incoming packets.
    #[arg(long, value_name = "PCT", value_parser = parse_percent, allow_negative_numbers = true)]
    drop: Option<u32>,
    /// Drop incoming SYN-ACKs: `all`, or the first N.
    #[arg(long, value_name = "all|N", value_parser = parse_synack)]
    drop_synack: Option<SynackDrop>,
    /// Rewrite the MSS option of incoming SYNs and SYN-ACKs to N.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    mss: Option<u16>,
    /// Turn this percentage of incoming TCP segments (not SYN/RST) into RSTs.
    #[arg(long, value_name = "PCT", value_parser = parse_percent, allow_negative_numbers = true)]
    rst: Option<u32>,
    /// Add N to the sequence number of forged RSTs.
    #[arg(long, value_name = "N", default_value_t = 0)]
    rst_seq_offset: u32,
    /// Flip a byte in this percentage of incoming segments (stale checksum).
    #[arg(long, value_name = "PCT", value_parser = parse_percent, allow_negative_numbers = true)]
    corrupt: Option<u32>,
    /// Send this percentage of outgoing packets twice.
    #[arg(long, value_name = "PCT", value_parser = parse_percent, allow_negative_numbers = true)]
    dup: Option<u32>,
    /// Act on every IPv4/IPv6 packet (ICMP, UDP, ...), not only TCP.
    #[arg(long)]
    all_ip: bool,
    /// Only TCP/UDP with this source or destination port.
    #[arg(long, value_name = "P")]
    port: Option<u16>,
    /// Only packets with this source or destination address.
    #[arg(long, value_name = "A")]
    addr: Option<IpAddr>,
    /// Detach after this many seconds (default: until SIGINT/SIGTERM).
    #[arg(long, value_name = "SECS", allow_negative_numbers = true)]
    duration: Option<f64>,
    #[arg(long, value_enum, default_value_t = Mode::Native)]
    xdp_mode: Mode,
    /// Do not attach the egress (TCX) program; --dup then has no effect.
    #[arg(long)]
    no_egress: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Mode {
    Native,
    Skb,
}

fn parse_percent(s: &str) -> Result<u32, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number (a percentage from 0 to 100)"))?;
    ppm_from_percent(v).map_err(|e| e.to_string())
}

fn parse_synack(s: &str) -> Result<SynackDrop, String> {
    if s == "all" {
        return Ok(SynackDrop::All);
    }
    match s.parse::<u32>() {
        Ok(n) if (1..u32::MAX).contains(&n) => Ok(SynackDrop::First(n)),
        _ => Err(format!("{s:?}: give `all` or a count from 1")),
    }
}

impl ChaosArgs {
    fn config(&self) -> ChaosConfig {
        ChaosConfig {
            drop_ppm: self.drop.unwrap_or(0),
            drop_synack: self.drop_synack,
            mss: self.mss,
            rst_ppm: self.rst.unwrap_or(0),
            rst_seq_offset: self.rst_seq_offset,
            corrupt_ppm: self.corrupt.unwrap_or(0),
            dup_ppm: self.dup.unwrap_or(0),
            all_ip: self.all_ip,
            port: self.port,
            addr: self.addr,
        }
    }
}

pub fn run(args: ChaosArgs) -> anyhow::Result<()> {
    let duration = match args.duration {
        Some(d) if !(d.is_finite() && d > 0.0) => {
            bail!("--duration {d}: give a positive number of seconds")
        }
        Some(d) => Some(Duration::from_secs_f64(d)),
        None => None,
    };
    if args.no_egress && args.dup.unwrap_or(0) > 0 {
        bail!("--dup needs the egress program: drop --no-egress");
    }
    if let Some(ns) = &args.netns {
        if !sluice_bench::netns::exists(ns) {
            bail!("network namespace `{ns}` does not exist (see `ip netns list`)");
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))?;
    }
    let opts = ChaosOptions {
        mode: match args.xdp_mode {
            Mode::Native => XdpMode::Native,
            Mode::Skb => XdpMode::Skb,
        },
        dup_hook: !args.no_egress,
        netns: args.netns.clone(),
    };
    let where_ = match &args.netns {
        Some(ns) => format!("{ns}/{}", args.iface),
        None => args.iface.clone(),
    };
    let chaos = Chaos::attach_with(&args.iface, &args.config(), &opts)
        .with_context(|| format!("attaching chaos to {where_}"))?;
    eprintln!("chaos: attached to {where_} ({:?})", args.config());

    let started = Instant::now();
    let mut next = started + Duration::from_secs(1);
    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        if duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        if Instant::now() >= next {
            println!(
                "{:6.1}s {}",
                started.elapsed().as_secs_f64(),
                chaos.counters()?
            );
            next += Duration::from_secs(1);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let c = chaos.counters()?;
    chaos.detach()?;
    println!("final {c}");
    eprintln!("chaos: detached from {where_}");
    Ok(())
}
