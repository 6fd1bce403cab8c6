//! sluice-test-backend: the origin server the proxy tests put behind the
//! gateway. One port serves HTTP/1.1 and h2c (prior knowledge, told apart by
//! the HTTP/2 connection preface), optionally inside TLS (ALPN h2 and
//! http/1.1 unless --tls-alpn says otherwise; client certificates with
//! --tls-client-ca). What it does for a request is chosen by the request's
//! path, so any client can drive it: see README.md.

mod conn;
mod h1;
mod h2srv;
mod routes;
mod stats;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

use crate::stats::Stats;

#[derive(Parser, Debug)]
#[command(
    name = "sluice-test-backend",
    about = "HTTP/1.1 + h2c (+ TLS) test origin: echo, headers, bytes, status, delay, reset, stall, close, gRPC echo"
)]
struct Args {
    /// Address to listen on (repeatable; IPv4 or [IPv6]:port; port 0 picks one).
    #[arg(long = "listen", required = true, value_name = "ADDR:PORT")]
    listen: Vec<SocketAddr>,
    /// Returned in the `x-backend` header of every response.
    #[arg(long, default_value = "backend")]
    name: String,
    /// Close an idle HTTP/1.1 connection after N seconds (and advertise it in `Keep-Alive: timeout=N`).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    keepalive_timeout_secs: Option<u64>,
    /// Close a connection after N requests (HTTP/1.1: `Connection: close` on the Nth; h2: GOAWAY after the Nth stream).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    max_requests_per_conn: Option<u64>,
    /// SETTINGS_MAX_CONCURRENT_STREAMS announced on h2 connections.
    #[arg(long, value_name = "N")]
    h2_max_streams: Option<u32>,
    /// h2 initial stream and connection window (default: the RFC's 65535).
    #[arg(long, value_name = "BYTES")]
    h2_window: Option<u32>,
    /// PEM certificate chain: serve TLS (ALPN per --tls-alpn) instead of cleartext.
    #[arg(long, requires = "tls_key", value_name = "PATH")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert", value_name = "PATH")]
    tls_key: Option<PathBuf>,
    /// PEM CA bundle: require a client certificate issued by one of these CAs (mTLS); /headers reports it (`client_cert`, `client_spiffe_id`).
    #[arg(long, requires = "tls_cert", value_name = "PATH")]
    tls_client_ca: Option<PathBuf>,
    /// With --tls-client-ca: also accept clients that present no certificate (one that is presented is still verified).
    #[arg(long, requires = "tls_client_ca")]
    tls_client_optional: bool,
    /// ALPN protocols offered with --tls-cert, in order of preference, comma-separated; `none`: no ALPN (the client's offer is ignored).
    #[arg(
        long,
        default_value = "h2,http/1.1",
        value_name = "LIST",
        requires = "tls_cert"
    )]
    tls_alpn: String,
    /// Write JSON counters here periodically and on SIGTERM/SIGINT.
    #[arg(long, value_name = "PATH")]
    stats_file: Option<PathBuf>,
    /// Period of the --stats-file writes.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    stats_interval_ms: u64,
    /// Percentage (0-100, fractions allowed) of requests answered with --fail-status.
    #[arg(long, default_value_t = 0.0, value_name = "PERCENT")]
    fail_rate: f64,
    /// Status of the injected failures.
    #[arg(long, default_value_t = 503, value_name = "CODE", value_parser = clap::value_parser!(u16).range(200..=999))]
    fail_status: u16,
    /// Seed of the failure draw, so a run's failures repeat.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Log each request to stderr.
    #[arg(short, long)]
    verbose: bool,
}

/// What every connection task reads: the flags, the counters, the TLS setup.
pub struct Ctx {
    pub name: String,
    pub keepalive_secs: Option<u64>,
    pub max_requests: Option<u64>,
    pub h2_max_streams: Option<u32>,
    pub h2_window: Option<u32>,
    pub fail_rate: f64,
    pub fail_status: u16,
    pub verbose: bool,
    pub stats: Stats,
    pub conn_ids: AtomicU64,
    rng: AtomicU64,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Ctx {
    pub fn keepalive_timeout(&self) -> Option<Duration> {
        self.keepalive_secs.map(Duration::from_secs)
    }

    /// One draw of the seeded failure lottery. SplitMix64 over an atomic
    /// counter: lock-free, and the same seed gives the same sequence of
    /// draws (which request gets which draw depends on arrival order).
    pub fn roll_failure(&self) -> bool {
        if self.fail_rate <= 0.0 {
            return false;
        }
        let mut z = self
            .rng
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let unit = (z >> 11) as f64 / (1u64 << 53) as f64;
        unit * 100.0 < self.fail_rate
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if http::HeaderValue::from_str(&args.name).is_err() {
        eprintln!("--name must be a valid header value");
        return ExitCode::from(2);
    }
    if !(0.0..=100.0).contains(&args.fail_rate) {
        eprintln!("--fail-rate must be within 0..=100");
        return ExitCode::from(2);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = rt.block_on(run(args));
    // Open connections (stalled ones included) are simply dropped.
    rt.shutdown_timeout(Duration::from_millis(200));
    code
}

async fn run(args: Args) -> ExitCode {
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => match conn::tls_acceptor(&conn::TlsFiles {
            cert,
            key,
            client_ca: args.tls_client_ca.as_deref(),
            client_optional: args.tls_client_optional,
            alpn: &args.tls_alpn,
        }) {
            Ok(a) => Some(a),
            Err(e) => {
                eprintln!("TLS setup: {e}");
                return ExitCode::FAILURE;
            }
        },
        _ => None,
    };
    let ctx = Arc::new(Ctx {
        name: args.name.clone(),
        keepalive_secs: args.keepalive_timeout_secs,
        max_requests: args.max_requests_per_conn,
        h2_max_streams: args.h2_max_streams,
        h2_window: args.h2_window,
        fail_rate: args.fail_rate,
        fail_status: args.fail_status,
        verbose: args.verbose,
        stats: Stats::default(),
        conn_ids: AtomicU64::new(0),
        rng: AtomicU64::new(args.seed),
        tls,
    });

    let mut listeners = Vec::new();
    for addr in &args.listen {
        match bind(*addr) {
            Ok(l) => listeners.push(l),
            Err(e) => {
                eprintln!("listen {addr}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    // Handlers go in before the "listening" lines: a test may signal as soon
    // as it has read them.
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        _ => {
            eprintln!("cannot install signal handlers");
            return ExitCode::FAILURE;
        }
    };
    for l in listeners {
        match l.local_addr() {
            // println! flushes at the newline (stdout is line-buffered).
            Ok(a) => println!("listening on {a}"),
            Err(e) => {
                eprintln!("local_addr: {e}");
                return ExitCode::FAILURE;
            }
        }
        tokio::spawn(accept_loop(l, ctx.clone()));
    }
    if let Some(path) = args.stats_file.clone() {
        let ctx = ctx.clone();
        let period = Duration::from_millis(args.stats_interval_ms.max(10));
        tokio::spawn(async move {
            loop {
                if let Err(e) = ctx.stats.write(&path, &ctx.name) {
                    eprintln!("stats file {}: {e}", path.display());
                }
                tokio::time::sleep(period).await;
            }
        });
    }
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    if let Some(path) = &args.stats_file {
        if let Err(e) = ctx.stats.write(path, &ctx.name) {
            eprintln!("stats file {}: {e}", path.display());
        }
    }
    ExitCode::SUCCESS
}

/// A listener with IPV6_V6ONLY on v6 sockets, so `[::]:P` and `0.0.0.0:P`
/// can both be given.
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sock.set_reuse_address(true)?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    sock.listen(1024)?;
    TcpListener::from_std(sock.into())
}

async fn accept_loop(listener: TcpListener, ctx: Arc<Ctx>) {
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => {
                tokio::spawn(conn::serve(tcp, peer, ctx.clone()));
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                eprintln!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}
