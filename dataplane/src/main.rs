#![forbid(unsafe_code)]

use clap::Parser;
use sluice_dataplane::{app, cli::Args};

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
