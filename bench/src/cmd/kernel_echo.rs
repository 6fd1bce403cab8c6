//! `sluice-bench kernel-echo`.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use sluice_bench::kernel_echo::{EchoConfig, EchoServer};

#[derive(Args, Debug)]
pub struct KernelEchoArgs {
    /// Address to echo on, e.g. 198.18.0.2:7000 or [2001:2::2]:7000 (repeatable).
    #[arg(long, required = true)]
    listen: Vec<SocketAddr>,
    /// Pin the echo thread to this core.
    #[arg(long)]
    core: Option<usize>,
    /// Datagrams per recvmmsg/sendmmsg call.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1024))]
    batch: u32,
    /// Receive buffer per datagram in bytes; larger datagrams are counted as truncated and not echoed.
    #[arg(long, default_value_t = 2048, value_parser = clap::value_parser!(u32).range(1..=65536))]
    buf_size: u32,
    /// Stop after this many seconds (default: run until SIGINT/SIGTERM).
    #[arg(long)]
    duration: Option<f64>,
    /// Busy-poll the sockets instead of sleeping in poll(2).
    #[arg(long)]
    spin: bool,
    /// SO_RCVBUF/SO_SNDBUF in bytes.
    #[arg(long)]
    sock_buf: Option<usize>,
    /// Print the final counters as one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: KernelEchoArgs) -> anyhow::Result<()> {
    let duration = match args.duration {
        Some(s) if !(s.is_finite() && s > 0.0) => {
            anyhow::bail!("--duration must be a positive number of seconds")
        }
        Some(s) => Some(Duration::from_secs_f64(s)),
        None => None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    let cfg = EchoConfig {
        listen: args.listen,
        core: args.core,
        batch: args.batch as usize,
        buf_size: args.buf_size as usize,
        spin: args.spin,
        sock_buf: args.sock_buf,
        duration,
    };
    let mut server = EchoServer::bind(cfg.clone())?;
    let addrs: Vec<String> = server.local_addrs().iter().map(|a| a.to_string()).collect();
    // Tests and scripts wait for this line before sending.
    println!(
        "kernel-echo: listening on {} (core {}, batch {}, buf {} bytes, {})",
        addrs.join(", "),
        cfg.core
            .map_or_else(|| "any".to_string(), |c| c.to_string()),
        cfg.batch,
        cfg.buf_size,
        if cfg.spin { "spinning" } else { "poll" }
    );
    std::io::stdout().flush().ok();
    let stats = server.run(&stop)?;
    if args.json {
        println!("{}", stats.to_json());
    } else {
        println!(
            "kernel-echo: stopped ({:?})\n{stats}",
            stats.stop.expect("run sets a stop reason")
        );
    }
    Ok(())
}
