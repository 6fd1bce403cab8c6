//! `sluice-bench reflect`: the in-kernel ceiling of the echo path. Attaches
//! sluice's XDP_TX reflector for one UDP address until SIGINT/SIGTERM, then
//! prints its counters and detaches.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};
use sluice_bpf::{Interface, Reflector, ReflectorCounter, XdpMode};

#[derive(Args, Debug)]
pub struct ReflectArgs {
    /// Interface to attach to.
    #[arg(long)]
    iface: String,
    /// UDP address to reflect (swap MACs, addresses and ports; XDP_TX).
    #[arg(long)]
    addr: SocketAddr,
    #[arg(long, value_enum, default_value_t = Mode::Native)]
    xdp_mode: Mode,
    /// Print the final counters as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Mode {
    Native,
    Skb,
}

pub fn run(args: ReflectArgs) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))?;
    }
    let iface = Interface::lookup(&args.iface)?;
    let mode = match args.xdp_mode {
        Mode::Native => XdpMode::Native,
        Mode::Skb => XdpMode::Skb,
    };
    let reflector = Reflector::attach(&iface, mode, args.addr)?;
    eprintln!(
        "reflect: XDP_TX reflector on {} for {}",
        iface.name, args.addr
    );
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let c = reflector.counters()?;
    reflector.detach()?;
    let (refl, passed) = (
        c.get(ReflectorCounter::Reflected),
        c.get(ReflectorCounter::Passed),
    );
    if args.json {
        println!(
            "{}",
            serde_json::json!({ "reflected": refl.packets, "passed": passed.packets })
        );
    } else {
        println!(
            "reflected {} packets, passed {}",
            refl.packets, passed.packets
        );
    }
    Ok(())
}
