//! `sluice-bench`: topologies, baselines and benchmarks for sluice.
//! Each subcommand lives in its own module under `cmd/`.
#![forbid(unsafe_code)]

mod cmd;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "sluice-bench",
    version,
    about = "sluice benchmark kit: namespace topologies, AF_XDP generator, kernel baselines"
)]
struct Cli {
    /// Print every external command (ip, ethtool, sysctl, clang) before running it.
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create, delete or show the namespace topology.
    Topo(cmd::topo::TopoArgs),
    /// UDP echo on kernel sockets (recvmmsg/sendmmsg), the baseline for the AF_XDP echo.
    KernelEcho(cmd::kernel_echo::KernelEchoArgs),
    /// AF_XDP UDP generator and echo sink: rate, loss, round-trip latency.
    Gen(sluice_bench::gen::GenArgs),
    /// XDP_TX reflector for one UDP address: the in-kernel ceiling of the echo path.
    Reflect(cmd::reflect::ReflectArgs),
    /// Fault injection on an interface: drop, drop SYN-ACKs, rewrite MSS, forge RSTs, corrupt, duplicate.
    Chaos(cmd::chaos::ChaosArgs),
    /// Side-by-side benchmarks with their baselines (writes a markdown table).
    Run(cmd::run::RunArgs),
    /// TLS connection load: a full or resumed handshake per request (rustls);
    /// prints one JSON report. The client of `run tls`'s handshake workloads.
    TlsLoad(sluice_bench::tls_client::TlsLoadArgs),
    /// Idle TLS connections after one request (HTTP/1.1 or h2), held until
    /// stdin closes. The idle-memory client of `run tls`.
    TlsIdle(sluice_bench::tls_client::TlsIdleArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let sh = sluice_bench::exec::Shell::new(cli.verbose);
    let result = match cli.cmd {
        Command::Topo(args) => cmd::topo::run(&sh, args),
        Command::KernelEcho(args) => cmd::kernel_echo::run(args),
        Command::Gen(args) => cmd::gen::run(args),
        Command::Reflect(args) => cmd::reflect::run(args),
        Command::Chaos(args) => cmd::chaos::run(args),
        Command::Run(args) => cmd::run::run(args),
        Command::TlsLoad(args) => cmd::tls_load::run(args),
        Command::TlsIdle(args) => sluice_bench::tls_client::tls_idle(&args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            // `run ...` after SIGINT/SIGTERM: what was cleaned up, and the
            // status a shell gives a process the signal ended (130, 143).
            if let Some(i) = err.downcast_ref::<sluice_bench::interrupt::InterruptedRun>() {
                eprintln!("sluice-bench: {i}");
                return std::process::ExitCode::from(i.exit_code());
            }
            eprintln!("sluice-bench: error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
