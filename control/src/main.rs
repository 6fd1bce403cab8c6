//! The control process. Not built yet: the dataplane runs on CLI flags until
//! the control issue lands (see docs/architecture.md).
#![forbid(unsafe_code)]

use clap::Parser;

/// sluice control process (placeholder: no control plane yet).
#[derive(Parser)]
#[command(version, about)]
struct Args {}

fn main() {
    let _ = Args::parse();
    eprintln!("sluice-control: no control plane yet; configure sluice-dataplane with flags");
    std::process::exit(2);
}
