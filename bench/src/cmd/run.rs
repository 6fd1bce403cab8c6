//! `sluice-bench run ...`: benchmarks that compare sluice with its baselines
//! in one run, on one topology, on the same pinned cores.

use anyhow::Context;
use clap::{Args, Subcommand};
use sluice_bench::echo_bench::{self, EchoBenchArgs};
use sluice_bench::http_bench::{self, HttpBenchArgs};
use sluice_bench::interrupt;
use sluice_bench::proxy_bench::{self, ProxyBenchArgs};
use sluice_bench::tls_bench::{self, TlsBenchArgs};

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand, Debug)]
enum Bench {
    /// UDP echo: kernel sockets vs sluice (AF_XDP) vs the XDP_TX ceiling.
    Echo(EchoBenchArgs),
    /// HTTP/1.1: nginx on kernel TCP vs sluice on its own stack (keep-alive,
    /// one request per connection, memory per idle connection).
    Http(HttpBenchArgs),
    /// TLS 1.3 and HTTP/2: HAProxy and nginx (OpenSSL, kernel TCP) vs sluice
    /// (h2 and HTTP/1.1 keep-alive, full and resumed handshakes, a download,
    /// memory per idle connection).
    Tls(TlsBenchArgs),
    /// Reverse proxy, HTTP/1.1 to HTTP/1.1 over pooled keep-alive upstream
    /// connections and TLS h2 to h2c: HAProxy and nginx (kernel TCP) vs
    /// sluice, one gateway core, one nginx backend (keep-alive, many clients
    /// over few upstream connections, a 1 MiB response, h2load over TLS).
    Proxy(ProxyBenchArgs),
}

/// Runs one benchmark and prints its table. SIGINT and SIGTERM stop it
/// promptly: every wait in it is cut short, what it started is stopped and
/// removed as on an error (see [`interrupt`]), and the run ends with an
/// [`interrupt::InterruptedRun`] saying what was cleaned up.
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    interrupt::install().context("installing the SIGINT/SIGTERM handlers")?;
    // Everything the benchmark set up is dropped when `run_bench` returns.
    let result = run_bench(args);
    interrupt::outcome(result)
}

fn run_bench(args: RunArgs) -> anyhow::Result<()> {
    match args.bench {
        Bench::Echo(a) => {
            let ms = echo_bench::run(&a)?;
            print!("{}", echo_bench::markdown(&ms));
            Ok(())
        }
        Bench::Http(a) => {
            let ms = http_bench::run(&a)?;
            print!("{}", http_bench::markdown(&ms));
            Ok(())
        }
        Bench::Tls(a) => {
            let ms = tls_bench::run(&a)?;
            print!("{}", tls_bench::markdown(&ms));
            Ok(())
        }
        Bench::Proxy(a) => {
            let ms = proxy_bench::run(&a)?;
            print!("{}", proxy_bench::markdown(&ms));
            Ok(())
        }
    }
}
