//! `sluice-bench topo up|down|status`.

use clap::{Args, Subcommand};
use sluice_bench::exec::Shell;
use sluice_bench::topology::{Topology, DEFAULT_PREFIX, DEFAULT_QUEUES};

#[derive(Args, Debug)]
pub struct TopoArgs {
    #[command(subcommand)]
    action: Action,
}

#[derive(Args, Debug)]
struct PrefixArg {
    /// Namespace prefix: namespaces are PREFIX-client, -backend, -gw, -br, -rgen, -rdut.
    #[arg(long, default_value = DEFAULT_PREFIX)]
    prefix: String,
}

#[derive(Subcommand, Debug)]
enum Action {
    /// Create the topology, or complete and re-apply it (idempotent).
    Up {
        #[command(flatten)]
        prefix: PrefixArg,
        /// RX and TX queues of every veth.
        #[arg(long, default_value_t = DEFAULT_QUEUES)]
        queues: u32,
        /// Do not attach the XDP_PASS placeholder to p-gw and rgen0 (then
        /// XDP_TX from gw0/rdut0 never reaches the other side on kernel 6.18).
        #[arg(long)]
        no_peer_xdp: bool,
    },
    /// Delete the topology's namespaces (nothing there is fine).
    Down {
        #[command(flatten)]
        prefix: PrefixArg,
    },
    /// Show namespaces, links, queues, offloads, XDP programs and addresses.
    Status {
        #[command(flatten)]
        prefix: PrefixArg,
    },
}

pub fn run(sh: &Shell, args: TopoArgs) -> anyhow::Result<()> {
    match args.action {
        Action::Up {
            prefix,
            queues,
            no_peer_xdp,
        } => {
            let topo = Topology::new(&prefix.prefix, queues)?.with_peer_xdp(!no_peer_xdp);
            topo.up(sh)?;
            println!(
                "topology `{}` is up ({} queues per veth); `sluice-bench topo status --prefix {}` shows it",
                topo.prefix(),
                topo.queues(),
                topo.prefix()
            );
        }
        Action::Down { prefix } => {
            let topo = Topology::new(&prefix.prefix, DEFAULT_QUEUES)?;
            let report = topo.down(sh)?;
            print!("topology `{}`: {report}", topo.prefix());
        }
        Action::Status { prefix } => {
            let topo = Topology::new(&prefix.prefix, DEFAULT_QUEUES)?;
            print!("{}", topo.status(sh)?);
        }
    }
    Ok(())
}
