//! `sluice-bench run tls`: TLS termination and HTTP/2, sluice against
//! HAProxy and nginx (both on OpenSSL and the kernel's TCP), side by side
//! in one run, on the direct veth pair, every server pinned to the same
//! core, the load generators pinned to the other. All three serve the same
//! ECDSA P-256 certificate (made here with the openssl CLI), TLS 1.3 only.
//!
//! Workloads:
//! - `h2`: h2load, TLS + HTTP/2, keep-alive connections, many streams
//!   each, `GET /health` ("ok\n"; HAProxy answers it with `http-request
//!   return`, nginx with `return 200`);
//! - `h1`: h2load `--h1`, TLS + HTTP/1.1 keep-alive, the same request;
//! - `full`: a full TLS handshake per request (`sluice-bench tls-load`,
//!   rustls, no ticket ever offered; `Connection: close`);
//! - `resume`: the same with each connection resuming the session of the
//!   one before from a TLS 1.3 ticket (counted: rustls says whether the
//!   server accepted it);
//! - `download`: one `--download-mb` body through curl over TLS (HTTP/1.1)
//!   from sluice's /bytes/N and from a file in nginx. Not HAProxy: it
//!   serves no files; `http-request return ... file` keeps the file in
//!   memory and needs the whole response to fit one buffer (tune.bufsize,
//!   16 KB by default, every connection's buffers that size).
//! - `idle`: memory per idle connection, TLS with HTTP/1.1 keep-alive and
//!   TLS with HTTP/2, each after one request; and once, for sluice only,
//!   `--max-idle` TLS connections on its one loop within a memory budget
//!   (`--tcp-memory-mib`), spread over several listener ports so the
//!   client has enough source ports.
//!
//! CPU per request is the server process's own user and system time
//! (/proc/PID/stat) over the load; the server core's busy time is given
//! too (it also holds softirq work of the client's receive path on veth).

use std::fs;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Serialize;
use serde_json::Value;

use crate::cpu::{self, CoreTime};
use crate::harness::{self, median_by, us_per, CpuUse, CpuWindow, ServerProc, WorkDir};
use crate::interrupt;
use crate::tls_client::{IdleProto, IdleReport, TlsLoadReport, SERVER_NAME};
use crate::topology::{addr, Topology};

/// sluice listens on the VIP (more ports for `--max-idle`); nginx and
/// HAProxy on the namespace's kernel address.
const SLUICE_PORT: u16 = 443;
const NGINX_PORT: u16 = 8443;
const HAPROXY_PORT: u16 = 9443;
/// Idle connections per listener port in the `--max-idle` run: well under
/// the 28,232 ephemeral ports the client has per destination.
const IDLE_PER_PORT: u32 = 12_000;

pub const MODES: [&str; 3] = ["haproxy", "nginx", "sluice"];
pub const WORKLOADS: [&str; 6] = ["h2", "h1", "full", "resume", "download", "idle"];

#[derive(Args, Debug, Clone)]
pub struct TlsBenchArgs {
    /// Topology prefix (brought up with one queue per veth if missing, and
    /// torn down at the end).
    #[arg(long, default_value = "slbench")]
    pub prefix: String,
    /// Core of the server (sluice's loop, HAProxy's thread, nginx's worker).
    #[arg(long, default_value_t = 1)]
    pub dut_core: usize,
    /// Core of the load generators (h2load, tls-load, curl, the idle client).
    #[arg(long, default_value_t = 0)]
    pub gen_core: usize,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 4.0)]
    pub duration: f64,
    /// Repetitions of every measurement (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub repeat: u32,
    /// Servers to compare: haproxy, nginx, sluice.
    #[arg(long, value_delimiter = ',', default_value = "haproxy,nginx,sluice")]
    pub modes: Vec<String>,
    /// Workloads: h2, h1, full, resume, download, idle.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "h2,h1,full,resume,download,idle"
    )]
    pub workloads: Vec<String>,
    /// h2load connections (h2, h1).
    #[arg(long, default_value_t = 32)]
    pub connections: u32,
    /// h2load streams in flight per connection (h2; h1 sends one at a time).
    #[arg(long, default_value_t = 16)]
    pub streams: u32,
    /// Connections in flight in the handshake workloads (full, resume).
    #[arg(long, default_value_t = 16)]
    pub handshake_concurrency: u32,
    /// `download`: megabytes (10^6 bytes).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub download_mb: u64,
    /// `idle`: connections per server and protocol.
    #[arg(long, default_value_t = 5000)]
    pub idle_connections: u32,
    /// `idle`: TLS connections held on sluice's one loop in a run of their
    /// own (0: skip).
    #[arg(long, default_value_t = 100_000)]
    pub max_idle: u32,
    /// The one TLS 1.3 suite every client offers (h2load, curl and
    /// sluice-bench's own), so all servers use the same one; the default
    /// is what h2load and browsers prefer.
    #[arg(long, default_value = "TLS_AES_128_GCM_SHA256")]
    pub cipher: String,
    /// `--tcp-memory-mib` of sluice in the `--max-idle` run (sluice counts
    /// about 6.8 KB of TLS state per idle connection against it).
    #[arg(long, default_value_t = 1024)]
    pub max_idle_memory_mib: u32,
    /// Before every repetition, wait (up to a minute) until no core is
    /// more than this percent busy: other work on a shared machine skews
    /// everything. 100 turns the wait off.
    #[arg(long, default_value_t = 10.0)]
    pub quiet_pct: f64,
    /// Record `perf record -e cpu-clock -g` of the server core during the
    /// first repetition of every measurement into DIR (MODE-WORKLOAD.data);
    /// the profiled runs' numbers carry perf's overhead.
    #[arg(long, value_name = "DIR")]
    pub perf: Option<PathBuf>,
    /// Write every measurement as JSON here (default:
    /// bench/results/tls-DATE.json when bench/results exists, with -2, -3,
    /// ... added rather than overwrite a file).
    #[arg(long)]
    pub json_out: Option<PathBuf>,
}

/// One measurement (the median of `--repeat`, for `idle` and `max-idle`
/// one run each).
#[derive(Clone, Debug, Default, Serialize)]
pub struct TlsMeasurement {
    pub mode: String,
    pub workload: String,
    pub requests: u64,
    pub req_per_s: f64,
    pub errors: u64,
    pub non_2xx: u64,
    pub latency_p50_us: f64,
    pub latency_p90_us: f64,
    pub latency_p99_us: f64,
    /// The server process's CPU time per request (user + system), split.
    pub cpu_us_per_req: f64,
    pub proc_user_us_per_req: f64,
    pub proc_sys_us_per_req: f64,
    /// Busy time of the server's core per request, and its share.
    pub dut_core_us_per_req: f64,
    pub dut_core_pct: f64,
    /// Busy time of both cores minus the generator's user time, per request.
    pub path_us_per_req: f64,
    /// Share of the server core busy with neither the server nor
    /// interrupts: another process there (see `--quiet-pct`).
    pub dut_core_other_pct: f64,
    /// The same on the generator's core (against the load generator).
    pub gen_core_other_pct: f64,
    pub dut_core: CoreTime,
    pub gen_core: CoreTime,
    /// What h2load reports was negotiated (h2, h1).
    pub tls_protocol: String,
    pub cipher: String,
    pub server_temp_key: String,
    pub alpn: String,
    /// Handshakes as the client saw them (full, resume).
    pub handshakes_full: u64,
    pub handshakes_full_hrr: u64,
    pub handshakes_resumed: u64,
    /// sluice's own counters over the run (its final report).
    pub server_handshakes_full: Option<u64>,
    pub server_handshakes_resumed: Option<u64>,
    /// `download`.
    pub bytes: u64,
    pub seconds: f64,
    pub mbytes_per_s: f64,
    pub cpu_us_per_mb: f64,
    pub user_us_per_mb: f64,
    pub sys_us_per_mb: f64,
    pub dut_core_us_per_mb: f64,
    /// `idle` / `max-idle`.
    pub idle_requested: u32,
    pub idle_held: u32,
    pub idle_errors: u64,
    pub idle_closed_by_server: u32,
    pub idle_open_s: f64,
    pub idle_first_error: Option<String>,
    pub rss_before: u64,
    pub rss_after: u64,
    pub rss_bytes_per_conn: f64,
    pub slab_bytes_per_conn: f64,
    /// sluice's gauges while the idle connections were held.
    pub sluice_tcp_connections: Option<u64>,
    pub sluice_tcp_mem_bytes: Option<u64>,
    pub sluice_app_mem_bytes: Option<u64>,
    pub sluice_tcp_memory_mib: Option<u32>,
    /// Every repetition's value of the key the median is taken by (req/s,
    /// MB/s, or RSS bytes per idle connection), in run order.
    pub repetitions: Vec<f64>,
}

/// The certificate all three servers present (`run proxy`'s `h2` too).
pub(crate) struct Cert {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    /// Certificate then key, for HAProxy's `crt`.
    pub(crate) pem: PathBuf,
}

/// `openssl req`: a self-signed ECDSA P-256 certificate for SERVER_NAME
/// and the two server addresses.
pub(crate) fn make_cert(work: &Path) -> Result<Cert> {
    let cert = work.join("cert.pem");
    let key = work.join("key.pem");
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "30"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .args(["-subj", &format!("/CN={SERVER_NAME}")])
        .arg("-addext")
        .arg(format!(
            "subjectAltName=DNS:{SERVER_NAME},IP:{},IP:{}",
            addr::RDUT_VIP_V4,
            addr::RDUT_V4
        ))
        .stdin(Stdio::null())
        .output()
        .context("running openssl req")?;
    if !out.status.success() {
        bail!(
            "openssl req failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let pem = work.join("haproxy.pem");
    let mut both = fs::read(&cert)?;
    both.extend(fs::read(&key)?);
    fs::write(&pem, both)?;
    Ok(Cert { cert, key, pem })
}

fn target(mode: &str, port_index: u16) -> SocketAddr {
    match mode {
        "sluice" => SocketAddr::new(IpAddr::V4(addr::RDUT_VIP_V4), SLUICE_PORT + port_index),
        "nginx" => SocketAddr::new(IpAddr::V4(addr::RDUT_V4), NGINX_PORT),
        _ => SocketAddr::new(IpAddr::V4(addr::RDUT_V4), HAPROXY_PORT),
    }
}

fn nginx_conf(root: &Path, a: &TlsBenchArgs, cert: &Cert) -> String {
    let server = format!(
        r#"    server {{
        listen {listen} ssl http2 reuseport backlog=65535;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.3;
        root {root}/www;
        location = /health {{ return 200 "ok\n"; }}
    }}
"#,
        listen = target("nginx", 0),
        cert = cert.cert.display(),
        key = cert.key.display(),
        root = root.display(),
    );
    harness::nginx_conf(root, a.dut_core, &server)
}

fn haproxy_conf(root: &Path, a: &TlsBenchArgs, cert: &Cert) -> String {
    // One thread on the DUT core, no logs; the small response made by
    // HAProxy itself; keep-alive and idle limits as long as nginx's.
    format!(
        r#"global
    nbthread 1
    cpu-map 1/1 {core}
    maxconn {maxconn}
    pidfile {root}/haproxy.pid

defaults
    mode http
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout http-request 300s
    timeout http-keep-alive 300s

frontend tls
    bind {bind} ssl crt {pem} alpn h2,http/1.1 ssl-min-ver TLSv1.3
    http-request return status 200 content-type text/plain string "ok\n" if {{ path /health }}
    http-request deny deny_status 404
"#,
        core = a.dut_core,
        maxconn = haproxy_maxconn(),
        root = root.display(),
        bind = target("haproxy", 0),
        pem = cert.pem.display(),
    )
}

/// HAProxy reserves two descriptors per connection and refuses to start
/// if it cannot raise its limit that far: stay within the hard limit.
fn haproxy_maxconn() -> u64 {
    let hard = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(_, h)| h)
        .unwrap_or(20_000);
    (hard.min(400_000).saturating_sub(200) / 2).max(1000)
}

/// sluice's extra flags for one run.
#[derive(Default)]
struct SluiceOpts {
    /// Listener ports (from SLUICE_PORT on).
    ports: u16,
    memory_mib: Option<u32>,
    max_connections: Option<u32>,
}

fn start_server(
    a: &TlsBenchArgs,
    topo: &Topology,
    mode: &str,
    bin_dir: &Path,
    work: &Path,
    cert: &Cert,
    opts: &SluiceOpts,
) -> Result<ServerProc> {
    let ns = topo.rdut_ns();
    let cmd = match mode {
        "nginx" => {
            let conf = work.join("nginx.conf");
            fs::write(&conf, nginx_conf(work, a, cert))?;
            let mut c = harness::pinned(&ns, a.dut_core, "nginx");
            c.arg("-c").arg(&conf).arg("-e").arg(work.join("error.log"));
            c
        }
        "haproxy" => {
            let conf = work.join("haproxy.cfg");
            fs::write(&conf, haproxy_conf(work, a, cert))?;
            let mut c = harness::pinned(&ns, a.dut_core, "haproxy");
            c.arg("-db").arg("-f").arg(&conf);
            c
        }
        "sluice" => {
            let mut c = harness::sluice_command(topo, bin_dir, a.dut_core);
            c.args(["--stats-interval", "1", "--stats-format", "json"])
                .arg("--tls-cert")
                .arg(&cert.cert)
                .arg("--tls-key")
                .arg(&cert.key)
                .args(["--http-idle-timeout-secs", "300"])
                .args(["--h2-idle-timeout-secs", "300"]);
            for i in 0..opts.ports.max(1) {
                c.arg("--tls").arg(target("sluice", i).to_string());
            }
            if let Some(m) = opts.memory_mib {
                c.arg("--tcp-memory-mib").arg(m.to_string());
            }
            if let Some(n) = opts.max_connections {
                c.arg("--tcp-max-connections").arg(n.to_string());
            }
            c
        }
        other => bail!("unknown mode {other:?} (haproxy, nginx, sluice)"),
    };
    ServerProc::start(cmd, mode, work, &topo.rgen_ns(), target(mode, 0))
}

/// The last JSON report of `kind` ("interval" or "final") in sluice's
/// stdout, its "total" object.
fn sluice_total(stdout: &str, kind: &str) -> Option<Value> {
    stdout
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["type"] == kind)
        .map(|v| v["total"].clone())
}

/// h2load's summary.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct H2loadResult {
    pub req_per_s: f64,
    pub done: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub status_2xx: u64,
    pub tls_protocol: String,
    pub cipher: String,
    pub server_temp_key: String,
    pub alpn: String,
}

pub fn parse_h2load(out: &str) -> Result<H2loadResult> {
    let mut r = H2loadResult::default();
    let num = |s: &str| s.trim_end_matches(',').parse::<u64>().unwrap_or(0);
    for line in out.lines().map(str::trim) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if let Some(rest) = line.strip_prefix("TLS Protocol:") {
            r.tls_protocol = rest.trim().into();
        } else if let Some(rest) = line.strip_prefix("Cipher:") {
            r.cipher = rest.trim().into();
        } else if let Some(rest) = line.strip_prefix("Server Temp Key:") {
            r.server_temp_key = rest.trim().into();
        } else if let Some(rest) = line.strip_prefix("Application protocol:") {
            r.alpn = rest.trim().into();
        }
        match f.as_slice() {
            ["finished", "in", _, rps, "req/s,", ..] => {
                r.req_per_s = rps.parse().unwrap_or(0.0);
            }
            ["requests:", _, "total,", _, "started,", done, "done,", ok, "succeeded,", failed, "failed,", errored, "errored,", timeout, "timeout"] =>
            {
                r.done = num(done);
                r.succeeded = num(ok);
                r.failed = num(failed) + num(errored) + num(timeout);
            }
            ["status", "codes:", n2xx, "2xx,", ..] => r.status_2xx = num(n2xx),
            _ => {}
        }
    }
    if r.done == 0 {
        bail!("h2load reported no requests done:\n{out}");
    }
    Ok(r)
}

/// Percentiles (µs) of the third column of h2load's --log-file.
pub(crate) fn log_percentiles(path: &Path) -> Result<(f64, f64, f64)> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut v: Vec<u64> = text
        .lines()
        .filter_map(|l| l.split('\t').nth(2)?.trim().parse().ok())
        .collect();
    if v.is_empty() {
        return Ok((0.0, 0.0, 0.0));
    }
    v.sort_unstable();
    let q = |p: f64| v[((v.len() as f64 * p) as usize).min(v.len() - 1)] as f64;
    Ok((q(0.50), q(0.90), q(0.99)))
}

/// `perf record` of the server core while a load runs (see `--perf`).
struct Perf(Option<Child>);

impl Perf {
    fn start(a: &TlsBenchArgs, mode: &str, workload: &str, rep: u32) -> Result<Self> {
        let Some(dir) = a.perf.as_ref().filter(|_| rep == 0) else {
            return Ok(Self(None));
        };
        fs::create_dir_all(dir)?;
        let child = Command::new("taskset")
            .args([
                "-c",
                &a.gen_core.to_string(),
                "perf",
                "record",
                "-e",
                "cpu-clock",
            ])
            .args(["-g", "-C", &a.dut_core.to_string(), "-o"])
            .arg(dir.join(format!("{mode}-{workload}.data")))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting perf record")?;
        // Owned first: an interrupted settle stops it (Drop).
        let perf = Self(Some(child));
        interrupt::sleep(Duration::from_millis(500))?;
        Ok(perf)
    }

    fn stop(mut self) {
        if let Some(mut c) = self.0.take() {
            let pid = nix::unistd::Pid::from_raw(c.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
            let _ = c.wait();
        }
    }
}

impl Drop for Perf {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Fills the CPU columns of a request-based measurement.
fn cpu_per_request(m: &mut TlsMeasurement, cpu: &CpuUse) {
    let n = m.requests as f64;
    m.proc_user_us_per_req = us_per(cpu.proc_user_s, n);
    m.proc_sys_us_per_req = us_per(cpu.proc_sys_s, n);
    m.cpu_us_per_req = m.proc_user_us_per_req + m.proc_sys_us_per_req;
    m.dut_core_us_per_req = us_per(cpu.dut_core_secs(), n);
    m.dut_core_pct = cpu.dut_core_pct();
    m.path_us_per_req = us_per(cpu.path_secs(), n);
    m.dut_core = cpu.dut_core;
    m.gen_core = cpu.gen_core;
    m.dut_core_other_pct = cpu.dut_core_other_pct();
    m.gen_core_other_pct = cpu.gen_core_other_pct();
}

fn h2load_command(
    a: &TlsBenchArgs,
    topo: &Topology,
    mode: &str,
    workload: &str,
    secs: u64,
    log: Option<&Path>,
) -> Command {
    let to = target(mode, 0);
    let mut c = harness::pinned(&topo.rgen_ns(), a.gen_core, "h2load");
    c.args(["-t", "1", "-c", &a.connections.to_string()])
        .args(["-D", &secs.to_string()])
        .arg(format!("--tls13-ciphers={}", a.cipher))
        .arg(format!("--connect-to={to}"));
    if let Some(log) = log {
        c.arg(format!("--log-file={}", log.display()));
    }
    if workload == "h1" {
        c.args(["--h1", "-m", "1"]);
    } else {
        c.args(["-m", &a.streams.to_string()]);
    }
    c.arg(format!("https://{SERVER_NAME}:{}/health", to.port()));
    c
}

/// h2load for `--duration` (req/s, CPU), then 2 s more with `--log-file`
/// for the latency percentiles: writing the log costs h2load about a fifth
/// of its rate, so it stays out of the measured run.
fn measure_h2load(
    a: &TlsBenchArgs,
    topo: &Topology,
    server: &ServerProc,
    workload: &str,
    work: &Path,
) -> Result<TlsMeasurement> {
    let run = |c: &mut Command| -> Result<H2loadResult> {
        let out = interrupt::output(c, "h2load")?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!(
                "h2load failed ({}):\n{text}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        parse_h2load(&text)
    };
    let secs = a.duration.max(1.0).round() as u64;
    let mut c = h2load_command(a, topo, &server.name, workload, secs, None);
    let window = CpuWindow::start(a.dut_core, a.gen_core, server.pid)?;
    let h = run(&mut c)?;
    let cpu = window.finish()?;
    if h.cipher != a.cipher || h.server_temp_key.split_whitespace().next() != Some("X25519") {
        bail!(
            "{}: h2load negotiated {} with {}, expected {} with X25519",
            server.name,
            h.cipher,
            h.server_temp_key,
            a.cipher
        );
    }
    let log = work.join("h2load.log");
    run(&mut h2load_command(
        a,
        topo,
        &server.name,
        workload,
        2,
        Some(&log),
    ))?;
    let (p50, p90, p99) = log_percentiles(&log)?;
    let _ = fs::remove_file(&log);
    let mut m = TlsMeasurement {
        mode: server.name.clone(),
        workload: workload.into(),
        requests: h.succeeded,
        req_per_s: h.req_per_s,
        errors: h.failed,
        non_2xx: h.done.saturating_sub(h.status_2xx),
        latency_p50_us: p50,
        latency_p90_us: p90,
        latency_p99_us: p99,
        tls_protocol: h.tls_protocol,
        cipher: h.cipher,
        server_temp_key: h.server_temp_key,
        alpn: h.alpn,
        ..Default::default()
    };
    cpu_per_request(&mut m, &cpu);
    Ok(m)
}

fn measure_handshakes(
    a: &TlsBenchArgs,
    topo: &Topology,
    server: &ServerProc,
    workload: &str,
    bin_dir: &Path,
) -> Result<TlsMeasurement> {
    let mut c = harness::pinned(&topo.rgen_ns(), a.gen_core, bin_dir.join("sluice-bench"));
    c.arg("tls-load")
        .arg("--connect")
        .arg(target(&server.name, 0).to_string())
        .args(["--concurrency", &a.handshake_concurrency.to_string()])
        .args(["--cipher", &a.cipher])
        .args(["--duration", &a.duration.to_string()]);
    if workload == "resume" {
        c.arg("--resume");
    }
    let window = CpuWindow::start(a.dut_core, a.gen_core, server.pid)?;
    let out = interrupt::output(&mut c, "sluice-bench tls-load")?;
    let cpu = window.finish()?;
    if !out.status.success() {
        bail!(
            "tls-load failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let r: TlsLoadReport = serde_json::from_slice(&out.stdout).context("tls-load's report")?;
    if r.requests == 0 {
        bail!(
            "tls-load against {}: no request completed ({})",
            server.name,
            r.first_error.unwrap_or_default()
        );
    }
    if r.cipher.as_deref() != Some(a.cipher.as_str()) {
        bail!(
            "{}: tls-load negotiated {:?}, expected {}",
            server.name,
            r.cipher,
            a.cipher
        );
    }
    let mut m = TlsMeasurement {
        mode: server.name.clone(),
        workload: workload.into(),
        requests: r.requests,
        req_per_s: r.req_per_s,
        errors: r.errors,
        non_2xx: r.non_2xx,
        latency_p50_us: r.p50_us,
        latency_p90_us: r.p90_us,
        latency_p99_us: r.p99_us,
        tls_protocol: "TLSv1.3".into(),
        alpn: "http/1.1".into(),
        handshakes_full: r.handshakes_full,
        handshakes_full_hrr: r.handshakes_full_hrr,
        handshakes_resumed: r.handshakes_resumed,
        cipher: r.cipher.clone().unwrap_or_default(),
        ..Default::default()
    };
    if let Some(e) = r.first_error {
        eprintln!(
            "{:>7} {workload}: {} errors, first: {e}",
            server.name, r.errors
        );
    }
    cpu_per_request(&mut m, &cpu);
    Ok(m)
}

fn measure_download(
    a: &TlsBenchArgs,
    topo: &Topology,
    server: &ServerProc,
) -> Result<TlsMeasurement> {
    let bytes = a.download_mb * 1_000_000;
    let to = target(&server.name, 0);
    let mut c = harness::pinned(&topo.rgen_ns(), a.gen_core, "curl");
    c.args(["-sS", "--fail", "-k", "--http1.1", "--max-time", "600"])
        .args(["--tls13-ciphers", &a.cipher])
        .args([
            "--resolve",
            &format!("{SERVER_NAME}:{}:{}", to.port(), to.ip()),
        ])
        .args(["-o", "/dev/null", "-w", "%{size_download}"])
        .arg(format!("https://{SERVER_NAME}:{}/bytes/{bytes}", to.port()));
    let window = CpuWindow::start(a.dut_core, a.gen_core, server.pid)?;
    let started = Instant::now();
    let out = interrupt::output(&mut c, "curl")?;
    let secs = started.elapsed().as_secs_f64();
    let cpu = window.finish()?;
    if !out.status.success() {
        bail!(
            "curl from {} failed ({}): {}",
            server.name,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let got: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    if got != bytes {
        bail!("curl from {}: {got} bytes, expected {bytes}", server.name);
    }
    let mb = bytes as f64 / 1e6;
    Ok(TlsMeasurement {
        mode: server.name.clone(),
        workload: "download".into(),
        requests: 1,
        bytes,
        seconds: secs,
        mbytes_per_s: mb / secs,
        user_us_per_mb: us_per(cpu.proc_user_s, mb),
        sys_us_per_mb: us_per(cpu.proc_sys_s, mb),
        // The total from the scheduler: a download is a fifth of a
        // second, 20 ticks of /proc/PID/stat.
        cpu_us_per_mb: us_per(cpu.proc_cpu_s, mb),
        dut_core_us_per_mb: us_per(cpu.dut_core_secs(), mb),
        dut_core_pct: cpu.dut_core_pct(),
        dut_core_other_pct: cpu.dut_core_other_pct(),
        gen_core_other_pct: cpu.gen_core_other_pct(),
        dut_core: cpu.dut_core,
        gen_core: cpu.gen_core,
        tls_protocol: "TLSv1.3".into(),
        cipher: a.cipher.clone(),
        alpn: "http/1.1".into(),
        ..Default::default()
    })
}

/// Most connections one `tls-idle` process holds: under the hard
/// file-descriptor limit of this machine (20,000 here; raising it needs
/// CAP_SYS_RESOURCE), so larger counts are spread over processes.
const IDLE_PER_PROCESS: u32 = 18_000;

/// Opens `n` idle connections (`tls-idle` processes on the generator
/// core), reads the server's RSS and the kernel's slab before and after
/// (and sluice's gauges while they are held), then closes them.
#[allow(clippy::too_many_arguments)]
fn measure_idle(
    a: &TlsBenchArgs,
    topo: &Topology,
    server: &ServerProc,
    workload: &str,
    proto: IdleProto,
    n: u32,
    ports: u16,
    bin_dir: &Path,
    tolerate_errors: bool,
) -> Result<TlsMeasurement> {
    let settle = |ms| interrupt::sleep(Duration::from_millis(ms));
    settle(500)?;
    let rss0 = cpu::process_rss(server.pid)?;
    let slab0 = cpu::slab_bytes()?;
    let procs = n.div_ceil(IDLE_PER_PROCESS).max(1);
    let threads = (32 / procs).clamp(4, 16);
    let started = Instant::now();
    let mut children = Vec::new();
    for p in 0..procs {
        let share = n / procs + u32::from(p < n % procs);
        let mut c = harness::pinned(&topo.rgen_ns(), a.gen_core, bin_dir.join("sluice-bench"));
        c.arg("tls-idle")
            .args(["--connections", &share.to_string()])
            .args(["--threads", &threads.to_string()])
            .args(["--cipher", &a.cipher])
            .args(["--max-errors", if tolerate_errors { "200" } else { "1" }])
            .args([
                "--proto",
                match proto {
                    IdleProto::Http1 => "http1",
                    IdleProto::H2 => "h2",
                },
            ]);
        for i in 0..ports.max(1) {
            c.arg("--connect").arg(target(&server.name, i).to_string());
        }
        children.push(IdleChild::spawn(c)?);
    }
    let mut opened = Vec::new();
    for c in &mut children {
        let line = c.first_line()?;
        let r: IdleReport = serde_json::from_str(&line)
            .with_context(|| format!("tls-idle said {line:?}; stderr: {}", c.stderr_text()))?;
        opened.push(r);
    }
    let open_s = started.elapsed().as_secs_f64();
    // Longer than sluice's stats interval, so a report shows them held.
    settle(2500)?;
    let rss1 = cpu::process_rss(server.pid)?;
    let slab1 = cpu::slab_bytes()?;
    let gauges = (server.name == "sluice")
        .then(|| sluice_total(&server.stdout_text(), "interval"))
        .flatten();
    let mut closed = 0;
    for c in &mut children {
        closed += c.finish()?;
    }
    let held: u64 = opened.iter().map(|r| r.held).sum();
    let errors: u64 = opened.iter().map(|r| r.errors).sum();
    let first_error = opened.iter().find_map(|r| r.first_error.clone());
    if !tolerate_errors && (errors > 0 || closed > 0) {
        bail!(
            "{} {workload}: {errors} of {n} connections failed, {closed} closed by the server; first error: {}",
            server.name,
            first_error.as_deref().unwrap_or("-")
        );
    }
    let gauge = |k: &str| gauges.as_ref().and_then(|g| g[k].as_u64());
    Ok(TlsMeasurement {
        mode: server.name.clone(),
        workload: workload.into(),
        idle_requested: n,
        idle_held: held as u32,
        idle_errors: errors,
        idle_closed_by_server: closed as u32,
        idle_open_s: open_s,
        idle_first_error: first_error,
        rss_before: rss0,
        rss_after: rss1,
        rss_bytes_per_conn: (rss1 as f64 - rss0 as f64) / held.max(1) as f64,
        slab_bytes_per_conn: (slab1 as f64 - slab0 as f64) / held.max(1) as f64,
        sluice_tcp_connections: gauge("tcp_connections"),
        sluice_tcp_mem_bytes: gauge("tcp_mem_bytes"),
        sluice_app_mem_bytes: gauge("app_mem_bytes"),
        tls_protocol: "TLSv1.3".into(),
        cipher: a.cipher.clone(),
        alpn: match proto {
            IdleProto::Http1 => "http/1.1".into(),
            IdleProto::H2 => "h2".into(),
        },
        ..Default::default()
    })
}

/// A `tls-idle` process: told to finish by closing its stdin; killed if
/// dropped before that (an error, SIGINT/SIGTERM). Its stdout lines and
/// its stderr are read on threads, so that waiting for its first line can
/// be interrupted.
struct IdleChild {
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl IdleChild {
    fn spawn(mut c: Command) -> Result<Self> {
        use std::io::{BufRead, BufReader, Read};
        let mut child = c
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting sluice-bench tls-idle")?;
        let stdout = child.stdout.take().expect("piped");
        let mut stderr = child.stderr.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Ok(Self {
            child: Some(child),
            lines,
            stderr: Some(stderr),
        })
    }

    /// Its first stdout line: the report of the connections it opened.
    fn first_line(&mut self) -> Result<String> {
        loop {
            match self.lines.recv_timeout(Duration::from_millis(50)) {
                Ok(line) => return Ok(line),
                Err(RecvTimeoutError::Disconnected) => {
                    bail!("tls-idle ended without a report: {}", self.stderr_text())
                }
                Err(RecvTimeoutError::Timeout) => interrupt::check()?,
            }
        }
    }

    /// Kills it and returns what it wrote to stderr (for errors).
    fn stderr_text(&mut self) -> String {
        if let Some(mut c) = self.child.take() {
            interrupt::kill_tree(&mut c);
        }
        self.stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }

    /// Closes its stdin and returns how many connections the server had
    /// closed while they were held.
    fn finish(&mut self) -> Result<u64> {
        let Some(mut child) = self.child.take() else {
            return Ok(0);
        };
        drop(child.stdin.take());
        let status = interrupt::wait_output(child, "sluice-bench tls-idle")?.status;
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        if !status.success() {
            bail!("tls-idle failed ({status}): {stderr}");
        }
        // The reader thread ends at its end of file: the child has exited.
        let last = self.lines.iter().last().unwrap_or_default();
        let r: IdleReport = serde_json::from_str(&last).context("tls-idle's last line")?;
        Ok(r.closed.unwrap_or(0))
    }
}

impl Drop for IdleChild {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pid = c.id();
            if let Ok(None) = c.try_wait() {
                interrupt::kill_tree(&mut c);
                interrupt::note(format!("stopped sluice-bench tls-idle (pid {pid})"));
            }
            let _ = c.wait();
        }
    }
}

fn validate(a: &TlsBenchArgs) -> Result<()> {
    harness::check_cores(a.dut_core, a.gen_core)?;
    for m in &a.modes {
        if !MODES.contains(&m.as_str()) {
            bail!("unknown mode {m:?} (haproxy, nginx, sluice)");
        }
    }
    for w in &a.workloads {
        if !WORKLOADS.contains(&w.as_str()) {
            bail!("unknown workload {w:?} (h2, h1, full, resume, download, idle)");
        }
    }
    if !crate::tls_client::SUITES.contains(&a.cipher.as_str()) {
        bail!(
            "--cipher {:?}: one of {}",
            a.cipher,
            crate::tls_client::SUITES.join(", ")
        );
    }
    if a.repeat == 0 || a.duration <= 0.0 {
        bail!("--repeat and --duration must be positive");
    }
    harness::require_tool("openssl", "version")?;
    let wants = |w: &str| a.workloads.iter().any(|x| x == w);
    if wants("h2") || wants("h1") {
        harness::require_tool("h2load", "--version")?;
    }
    if wants("download") {
        harness::require_tool("curl", "--version")?;
    }
    for m in ["nginx", "haproxy"] {
        if a.modes.iter().any(|x| x == m) {
            harness::require_tool(m, "-v")?;
        }
    }
    Ok(())
}

/// Today's date (UTC) as YYYY-MM-DD.
fn today() -> String {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0) as i64;
    civil_date(days)
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's
/// civil_from_days).
fn civil_date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

pub fn run(a: &TlsBenchArgs) -> Result<Vec<TlsMeasurement>> {
    validate(a)?;
    let bin_dir = harness::bin_dir()?;
    harness::require_bin(&bin_dir, "sluice-bench")?;
    if a.modes.iter().any(|m| m == "sluice") {
        harness::require_bin(&bin_dir, "sluice-dataplane")?;
    }
    let work_dir = WorkDir::new("tls-bench")?;
    let work = work_dir.path();
    let cert = make_cert(work)?;
    fs::create_dir_all(work.join("www/bytes"))?;
    let wants = |w: &str| a.workloads.iter().any(|x| x == w);
    if wants("download") && a.modes.iter().any(|m| m == "nginx") {
        let n = a.download_mb * 1_000_000;
        harness::write_pattern(&work.join(format!("www/bytes/{n}")), n)?;
    }

    let all = harness::with_direct_pair(&a.prefix, |topo| {
        let mut all = Vec::new();
        let mut runs: Vec<(String, Option<IdleProto>)> = Vec::new();
        for w in &a.workloads {
            if w == "idle" {
                runs.push(("idle-h1".into(), Some(IdleProto::Http1)));
                runs.push(("idle-h2".into(), Some(IdleProto::H2)));
            } else {
                runs.push((w.clone(), None));
            }
        }
        for (workload, idle) in &runs {
            for mode in &a.modes {
                if workload == "download" && mode == "haproxy" {
                    eprintln!(
                        "haproxy download: skipped (HAProxy serves no files; `http-request return file` must fit one buffer)"
                    );
                    continue;
                }
                let mut reps = Vec::new();
                for rep in 0..a.repeat {
                    interrupt::check()?;
                    if a.quiet_pct < 100.0
                        && !harness::wait_for_quiet(a.quiet_pct, Duration::from_secs(60))
                            .with_context(|| {
                                format!("{mode} {workload} rep {rep}: waiting for quiet cores")
                            })?
                    {
                        eprintln!(
                            "warning: cores still more than {}% busy after a minute; measuring anyway",
                            a.quiet_pct
                        );
                    }
                    let server =
                        start_server(a, topo, mode, &bin_dir, work, &cert, &SluiceOpts::default())?;
                    let perf = Perf::start(a, mode, workload, rep)?;
                    let m = match (workload.as_str(), idle) {
                        (_, Some(proto)) => measure_idle(
                            a,
                            topo,
                            &server,
                            workload,
                            *proto,
                            a.idle_connections,
                            1,
                            &bin_dir,
                            false,
                        ),
                        ("h2" | "h1", _) => measure_h2load(a, topo, &server, workload, work),
                        ("full" | "resume", _) => {
                            measure_handshakes(a, topo, &server, workload, &bin_dir)
                        }
                        _ => measure_download(a, topo, &server),
                    };
                    perf.stop();
                    let stdout = server.stop();
                    let mut m = m.with_context(|| format!("{mode} {workload} rep {rep}"))?;
                    let stdout = stdout?;
                    if mode == "sluice" {
                        if let Some(t) = sluice_total(&stdout, "final") {
                            m.server_handshakes_full = t["tls_handshakes_full"].as_u64();
                            m.server_handshakes_resumed = t["tls_handshakes_resumed"].as_u64();
                        }
                    }
                    reps.push(m);
                }
                let key: fn(&TlsMeasurement) -> f64 = if idle.is_some() {
                    |m| m.rss_bytes_per_conn
                } else if workload == "download" {
                    |m| m.mbytes_per_s
                } else {
                    |m| m.req_per_s
                };
                let values: Vec<f64> = reps.iter().map(key).collect();
                let mut m = median_by(&mut reps, key);
                m.repetitions = values;
                eprintln!("{}", summary_line(&m));
                all.push(m);
            }
        }
        if wants("idle") && a.max_idle > 0 && a.modes.iter().any(|m| m == "sluice") {
            let ports = a.max_idle.div_ceil(IDLE_PER_PORT) as u16;
            let opts = SluiceOpts {
                ports,
                memory_mib: Some(a.max_idle_memory_mib),
                max_connections: Some(a.max_idle + 1000),
            };
            let server = start_server(a, topo, "sluice", &bin_dir, work, &cert, &opts)?;
            let m = measure_idle(
                a,
                topo,
                &server,
                "max-idle",
                IdleProto::Http1,
                a.max_idle,
                ports,
                &bin_dir,
                true,
            );
            let stopped = server.stop();
            let mut m = m.context("sluice max-idle")?;
            stopped?;
            m.sluice_tcp_memory_mib = Some(a.max_idle_memory_mib);
            eprintln!("{}", summary_line(&m));
            all.push(m);
        }
        Ok(all)
    })?;
    let out = match &a.json_out {
        Some(p) => Some(p.clone()),
        None => Path::new("bench/results")
            .is_dir()
            .then(|| default_json_path(Path::new("bench/results"), &today())),
    };
    if let Some(p) = out {
        fs::write(&p, serde_json::to_string_pretty(&all)?)?;
        eprintln!("results: {}", p.display());
    }
    Ok(all)
}

/// `DIR/tls-DATE.json`, or `tls-DATE-2.json`, `-3`, ... if taken: a
/// default never overwrites an earlier result.
fn default_json_path(dir: &Path, date: &str) -> PathBuf {
    let first = dir.join(format!("tls-{date}.json"));
    if !first.exists() {
        return first;
    }
    (2..)
        .map(|n| dir.join(format!("tls-{date}-{n}.json")))
        .find(|p| !p.exists())
        .expect("a free name")
}

fn summary_line(m: &TlsMeasurement) -> String {
    match m.workload.as_str() {
        "download" => format!(
            "{:>7} download: {:>7.1} MB/s  {:>7.0} CPU us/MB  core {:>5.1}%",
            m.mode, m.mbytes_per_s, m.cpu_us_per_mb, m.dut_core_pct
        ),
        w if w.contains("idle") => format!(
            "{:>7} {w}: {} of {} held in {:.1} s, {:.0} B/conn RSS + {:.0} B/conn slab, {} closed, {} errors",
            m.mode,
            m.idle_held,
            m.idle_requested,
            m.idle_open_s,
            m.rss_bytes_per_conn,
            m.slab_bytes_per_conn,
            m.idle_closed_by_server,
            m.idle_errors
        ),
        w => format!(
            "{:>7} {w:>6}: {:>9.0} req/s  {:>7.2} CPU us/req ({:.2} user + {:.2} sys)  core {:>5.1}% (other load: {:.0}% server core, {:.0}% generator core)  p50 {:>7.0} us  p99 {:>7.0} us  errors {}",
            m.mode,
            m.req_per_s,
            m.cpu_us_per_req,
            m.proc_user_us_per_req,
            m.proc_sys_us_per_req,
            m.dut_core_pct,
            m.dut_core_other_pct,
            m.gen_core_other_pct,
            m.latency_p50_us,
            m.latency_p99_us,
            m.errors + m.non_2xx
        ),
    }
}

fn workload_label(w: &str) -> &str {
    match w {
        "h2" => "TLS + h2 keep-alive",
        "h1" => "TLS + HTTP/1.1 keep-alive",
        "full" => "full handshake per request",
        "resume" => "resumed handshake per request",
        "idle-h1" => "TLS + HTTP/1.1",
        "idle-h2" => "TLS + h2",
        other => other,
    }
}

/// Markdown tables: requests, the download, idle memory; ratios of
/// sluice against HAProxy and nginx in the same run.
pub fn markdown(ms: &[TlsMeasurement]) -> String {
    let find = |mode: &str, w: &str| ms.iter().find(|b| b.mode == mode && b.workload == w);
    let ratio = |m: &TlsMeasurement, base: &str, f: fn(&TlsMeasurement) -> f64| {
        if m.mode != "sluice" {
            return "-".to_string();
        }
        match find(base, &m.workload) {
            Some(b) if f(b) != 0.0 => format!("{:.2}x", f(m) / f(b)),
            _ => "-".into(),
        }
    };
    let mut out = String::from(
        "| workload | server | req/s | errors | CPU µs/req | user µs/req | sys µs/req | core % | core µs/req | p50 µs | p99 µs | req/s vs haproxy | req/s vs nginx | CPU/req vs haproxy | CPU/req vs nginx |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for m in ms
        .iter()
        .filter(|m| ["h2", "h1", "full", "resume"].contains(&m.workload.as_str()))
    {
        out.push_str(&format!(
            "| {} | {} | {:.0} | {} | {:.2} | {:.2} | {:.2} | {:.1} | {:.2} | {:.0} | {:.0} | {} | {} | {} | {} |\n",
            workload_label(&m.workload),
            m.mode,
            m.req_per_s,
            m.errors + m.non_2xx,
            m.cpu_us_per_req,
            m.proc_user_us_per_req,
            m.proc_sys_us_per_req,
            m.dut_core_pct,
            m.dut_core_us_per_req,
            m.latency_p50_us,
            m.latency_p99_us,
            ratio(m, "haproxy", |x| x.req_per_s),
            ratio(m, "nginx", |x| x.req_per_s),
            ratio(m, "haproxy", |x| x.cpu_us_per_req),
            ratio(m, "nginx", |x| x.cpu_us_per_req),
        ));
    }
    let dl: Vec<_> = ms.iter().filter(|m| m.workload == "download").collect();
    if !dl.is_empty() {
        out.push_str(
            "\n| download | server | MB/s | seconds | CPU µs/MB | user µs/MB | sys µs/MB | core % | core µs/MB | MB/s vs nginx | CPU/MB vs nginx |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
        );
        for m in dl {
            out.push_str(&format!(
                "| {:.0} MB | {} | {:.1} | {:.2} | {:.0} | {:.0} | {:.0} | {:.1} | {:.0} | {} | {} |\n",
                m.bytes as f64 / 1e6,
                m.mode,
                m.mbytes_per_s,
                m.seconds,
                m.cpu_us_per_mb,
                m.user_us_per_mb,
                m.sys_us_per_mb,
                m.dut_core_pct,
                m.dut_core_us_per_mb,
                ratio(m, "nginx", |x| x.mbytes_per_s),
                ratio(m, "nginx", |x| x.cpu_us_per_mb),
            ));
        }
    }
    let idle: Vec<_> = ms
        .iter()
        .filter(|m| m.workload.starts_with("idle"))
        .collect();
    if !idle.is_empty() {
        out.push_str(
            "\n| idle connections | server | held | server RSS B/conn | kernel slab B/conn (client sockets included) | RSS vs haproxy | RSS vs nginx |\n|---|---|---|---|---|---|---|\n",
        );
        for m in idle {
            out.push_str(&format!(
                "| {} | {} | {} | {:.0} | {:.0} | {} | {} |\n",
                workload_label(&m.workload),
                m.mode,
                m.idle_held,
                m.rss_bytes_per_conn,
                m.slab_bytes_per_conn,
                ratio(m, "haproxy", |x| x.rss_bytes_per_conn),
                ratio(m, "nginx", |x| x.rss_bytes_per_conn),
            ));
        }
    }
    for m in ms.iter().filter(|m| m.workload == "max-idle") {
        let mib = |b: Option<u64>| b.map_or("-".into(), |b| format!("{:.1}", b as f64 / 1048576.0));
        out.push_str(&format!(
            "\n| sluice, one loop | requested | held | opened in s | closed by server | RSS growth MiB | RSS B/conn | tcp_connections | tcp_mem MiB | app_mem MiB | --tcp-memory-mib |\n|---|---|---|---|---|---|---|---|---|---|---|\n\
             | TLS + HTTP/1.1 idle | {} | {} | {:.1} | {} | {:.1} | {:.0} | {} | {} | {} | {} |\n",
            m.idle_requested,
            m.idle_held,
            m.idle_open_s,
            m.idle_closed_by_server,
            (m.rss_after as f64 - m.rss_before as f64) / 1048576.0,
            m.rss_bytes_per_conn,
            m.sluice_tcp_connections.map_or("-".into(), |v| v.to_string()),
            mib(m.sluice_tcp_mem_bytes),
            mib(m.sluice_app_mem_bytes),
            m.sluice_tcp_memory_mib.map_or("-".into(), |v| v.to_string()),
        ));
        if let Some(e) = &m.idle_first_error {
            out.push_str(&format!(
                "\n{} connections failed; first error: {e}\n",
                m.idle_errors
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const H2LOAD: &str = "starting benchmark...
spawning thread #0: 32 total client(s). Timing-based test with 0s of warm-up time and 5s of main duration for measurements.
TLS Protocol: TLSv1.3
Cipher: TLS_AES_256_GCM_SHA384
Server Temp Key: X25519 253 bits
Application protocol: h2
Main benchmark duration is over for thread #0. Stopping all clients.
Stopped all clients for thread #0

finished in 5.00s, 271234.40 req/s, 8.53MB/s
requests: 1356172 total, 1356684 started, 1356172 done, 1356170 succeeded, 2 failed, 0 errored, 0 timeout
status codes: 1356170 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 42.65MB (44721904) total, 3.88MB (4068516) headers (space savings 95.12%), 3.88MB (4068510) data
";

    #[test]
    fn h2load_output_parses() {
        let r = parse_h2load(H2LOAD).unwrap();
        assert_eq!(r.req_per_s, 271234.4);
        assert_eq!((r.done, r.succeeded, r.failed), (1356172, 1356170, 2));
        assert_eq!(r.status_2xx, 1356170);
        assert_eq!(r.tls_protocol, "TLSv1.3");
        assert_eq!(r.cipher, "TLS_AES_256_GCM_SHA384");
        assert_eq!(r.server_temp_key, "X25519 253 bits");
        assert_eq!(r.alpn, "h2");
        assert!(parse_h2load("connect failed").is_err());
    }

    #[test]
    fn default_json_path_never_overwrites() {
        let dir = WorkDir::new("tls-bench-test").unwrap();
        let p = default_json_path(dir.path(), "2026-12-07");
        assert!(p.ends_with("tls-2026-12-07.json"));
        fs::write(&p, "[]").unwrap();
        let q = default_json_path(dir.path(), "2026-12-07");
        assert!(q.ends_with("tls-2026-12-07-2.json"), "{}", q.display());
    }

    #[test]
    fn dates_are_civil() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(19_723), "2024-01-01");
        assert_eq!(civil_date(20_794), "2026-12-07");
    }

    #[test]
    fn sluice_reports_are_found_by_type() {
        let out = "{\"type\":\"interval\",\"total\":{\"tcp_connections\":5}}\n\
                   {\"type\":\"interval\",\"total\":{\"tcp_connections\":7}}\n\
                   {\"type\":\"final\",\"total\":{\"tls_handshakes_full\":3}}\n";
        assert_eq!(sluice_total(out, "interval").unwrap()["tcp_connections"], 7);
        assert_eq!(
            sluice_total(out, "final").unwrap()["tls_handshakes_full"],
            3
        );
        assert!(sluice_total("", "final").is_none());
    }

    fn args() -> TlsBenchArgs {
        TlsBenchArgs {
            prefix: "x".into(),
            dut_core: 1,
            gen_core: 0,
            duration: 1.0,
            repeat: 1,
            modes: vec![],
            workloads: vec![],
            connections: 1,
            streams: 1,
            handshake_concurrency: 1,
            download_mb: 1,
            idle_connections: 1,
            max_idle: 0,
            max_idle_memory_mib: 1,
            cipher: "TLS_AES_128_GCM_SHA256".into(),
            quiet_pct: 100.0,
            perf: None,
            json_out: None,
        }
    }

    #[test]
    fn server_configs_pin_and_serve_health() {
        let cert = Cert {
            cert: "/w/cert.pem".into(),
            key: "/w/key.pem".into(),
            pem: "/w/haproxy.pem".into(),
        };
        let h = haproxy_conf(Path::new("/w"), &args(), &cert);
        assert!(
            h.contains("nbthread 1\n    cpu-map 1/1 1\n    maxconn "),
            "{h}"
        );
        assert!(h.contains("bind 198.19.0.2:9443 ssl crt /w/haproxy.pem alpn h2,http/1.1"));
        assert!(h.contains(r#"string "ok\n" if { path /health }"#), "{h}");
        let n = nginx_conf(Path::new("/w"), &args(), &cert);
        assert!(n.contains("listen 198.19.0.2:8443 ssl http2"), "{n}");
        assert!(n.contains("ssl_protocols TLSv1.3;"));
        assert!(n.contains(r#"return 200 "ok\n";"#));
    }

    #[test]
    fn ratios_are_on_sluice_rows() {
        let row = |mode: &str, rps: f64, cpu: f64| TlsMeasurement {
            mode: mode.into(),
            workload: "h2".into(),
            req_per_s: rps,
            cpu_us_per_req: cpu,
            ..Default::default()
        };
        let md = markdown(&[
            row("haproxy", 100.0, 4.0),
            row("nginx", 50.0, 8.0),
            row("sluice", 200.0, 2.0),
        ]);
        assert!(md.contains("| 2.00x | 4.00x | 0.50x | 0.25x |"), "{md}");
        assert!(
            md.contains("| TLS + h2 keep-alive | haproxy | 100 |"),
            "{md}"
        );
    }
}
