#![forbid(unsafe_code)]

use clap::Parser;
use sluice_dataplane::{app, cli::Args};

/// The h2 path allocates and frees dozens of small blocks per request on
/// the loop's thread; glibc's malloc spent 17% of the loop there
/// (docs/benchmarks.md). mimalloc's per-thread free lists cost a fraction.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Err(e) = app::run(args) {
        eprintln!("sluice-dataplane: error: {}", app::error_line(&e));
        std::process::exit(1);
    }
}
