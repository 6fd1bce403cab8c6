//! `sluice-bench run ...`: benchmarks that compare sluice with its baselines
//! in one run, on one topology, on the same pinned cores.

use clap::{Args, Subcommand};
use sluice_bench::echo_bench::{self, EchoBenchArgs};

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand, Debug)]
enum Bench {
    /// UDP echo: kernel sockets vs sluice (AF_XDP) vs the XDP_TX ceiling.
    Echo(EchoBenchArgs),
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    match args.bench {
        Bench::Echo(a) => {
            let ms = echo_bench::run(&a)?;
            print!("{}", echo_bench::markdown(&ms));
            Ok(())
        }
    }
}
