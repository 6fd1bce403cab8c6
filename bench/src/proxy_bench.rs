//! `sluice-bench run proxy`: the reverse proxy, HTTP/1.1 downstream to
//! HTTP/1.1 upstream over pooled keep-alive connections: sluice against
//! HAProxy and nginx (both on the kernel's TCP), side by side in one run,
//! on the one-arm topology (client, gateway and backend namespaces on one
//! bridge), every gateway pinned to the same core, the same backend for
//! all of them.
//!
//! - the backend: nginx in the backend namespace (198.18.0.3:8080), two
//!   workers, static files, `keepalive_requests` and `keepalive_timeout`
//!   as large as the gateways', pinned (`taskset`) to `--backend-core`
//!   (by default the core the gateway does not use: it then shares that
//!   core with wrk). Every response carries `X-Backend: nginx-backend`,
//!   which the bench checks through each gateway before measuring: a
//!   gateway that answered by itself would fail it;
//! - the gateways, each under `taskset -c DUT-CORE` in the gateway
//!   namespace: sluice-dataplane (`--iface gw0 --queues 0 --cores N --http
//!   VIP:80 --proxy /=http://198.18.0.3:8080`, its own TCP over copy-mode
//!   AF_XDP, its default pool: 64 connections per backend per loop, 16 of
//!   them kept idle); HAProxy (`nbthread 1`, `http-reuse always`); nginx
//!   (one worker, `upstream { keepalive 64; }`, `proxy_http_version 1.1`,
//!   `proxy_set_header Connection ""`). HAProxy and nginx add
//!   X-Forwarded-For as sluice does.
//!
//! Workloads (wrk, one thread, pinned to `--gen-core`, in the client
//! namespace):
//! - `keepalive`: `--connections` (64) keep-alive clients, the small file;
//! - `reuse`: `--reuse-connections` (512) clients for `--reuse-duration`
//!   (60 s): more clients than pooled upstream connections;
//! - `bulk`: `--bulk-connections` (16) clients, the 1 MiB file.
//!
//! For every measurement: wrk's req/s, errors and latency; the gateway
//! process's user and system time per request (/proc/PID/stat), and for
//! sluice also its loops' busy time (`busy_ns` of its counters); the
//! upstream connections: ESTABLISHED sockets on the backend's port in the
//! backend namespace, sampled every second during the load, and the
//! connections the backend accepted over the load (`Tcp: PassiveOpens` of
//! the backend namespace's /proc/net/snmp); TIME_WAIT sockets in the
//! client, gateway and backend namespaces a second after the load, those
//! that were already there before it left out (by address pair). sluice's
//! own TCP is not the gateway namespace's: its TIME_WAIT count is its
//! `tcp_time_wait` gauge.

use std::collections::HashSet;
use std::fs;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Serialize;
use serde_json::Value;

use crate::cpu::CoreTime;
use crate::harness::{self, median_by, us_per, CpuWindow, ServerProc, WorkDir};
use crate::http_bench::parse_wrk;
use crate::netns;
use crate::topology::{addr, ifname, Topology};

/// sluice listens on the VIP; nginx and HAProxy on the gateway
/// namespace's kernel address; the backend on its own.
const SLUICE_PORT: u16 = 80;
const NGINX_PORT: u16 = 8080;
const HAPROXY_PORT: u16 = 9080;
const BACKEND_PORT: u16 = 8080;
/// The header the backend adds to every response.
const BACKEND_MARK: &str = "X-Backend: nginx-backend";

pub const MODES: [&str; 3] = ["haproxy", "nginx", "sluice"];
pub const WORKLOADS: [&str; 3] = ["keepalive", "reuse", "bulk"];

#[derive(Args, Debug, Clone)]
pub struct ProxyBenchArgs {
    /// Topology prefix (brought up with one queue per veth if missing, and
    /// then torn down at the end, also on failure).
    #[arg(long, default_value = "slproxy")]
    pub prefix: String,
    /// Core of the gateway (sluice's loop, HAProxy's thread, nginx's worker).
    #[arg(long, default_value_t = 1)]
    pub dut_core: usize,
    /// Core of wrk.
    #[arg(long, default_value_t = 0)]
    pub gen_core: usize,
    /// Core of the backend nginx (both workers); `none`: unpinned.
    #[arg(long, default_value = "0")]
    pub backend_core: String,
    /// Servers to compare: haproxy, nginx, sluice.
    #[arg(long, value_delimiter = ',', default_value = "haproxy,nginx,sluice")]
    pub modes: Vec<String>,
    /// Workloads: keepalive, reuse, bulk.
    #[arg(long, value_delimiter = ',', default_value = "keepalive,reuse,bulk")]
    pub workloads: Vec<String>,
    /// Seconds per `keepalive` and `bulk` measurement.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Seconds per `reuse` measurement.
    #[arg(long, default_value_t = 60)]
    pub reuse_duration: u64,
    /// wrk connections in `keepalive`.
    #[arg(long, default_value_t = 64)]
    pub connections: u32,
    /// wrk connections in `reuse`.
    #[arg(long, default_value_t = 512)]
    pub reuse_connections: u32,
    /// wrk connections in `bulk`.
    #[arg(long, default_value_t = 16)]
    pub bulk_connections: u32,
    /// The small response's body in bytes (`keepalive`, `reuse`).
    #[arg(long, default_value_t = 64)]
    pub body: u64,
    /// The large response's body in bytes (`bulk`).
    #[arg(long, default_value_t = 1 << 20)]
    pub bulk_body: u64,
    /// Repetitions of every measurement, each with a fresh gateway (the
    /// median by req/s is reported).
    #[arg(long, default_value_t = 3)]
    pub repeat: u32,
    /// Before every repetition, wait (up to --quiet-wait seconds) until no
    /// core is more than this percent busy. 100 turns the wait off.
    #[arg(long, default_value_t = 10.0)]
    pub quiet_pct: f64,
    /// Longest wait for quiet cores, in seconds; the measurement is then
    /// taken anyway and marked (`quiet: false`).
    #[arg(long, default_value_t = 300)]
    pub quiet_wait: u64,
    /// A repetition during which more than this percent of either core
    /// went to processes other than the gateway, wrk and the backend (a
    /// busy machine) is taken again, up to --tries times in all; the last
    /// attempt is kept if none was clean (and marked `quiet: false`).
    #[arg(long, default_value_t = 5.0)]
    pub max_other_pct: f64,
    /// Attempts per repetition (see --max-other-pct).
    #[arg(long, default_value_t = 3)]
    pub tries: u32,
    /// Before every attempt, wait (up to 70 s: TIME_WAIT lasts 60) until
    /// fewer than this many TIME_WAIT sockets are left in the gateway and
    /// backend namespaces: a run that ended in churn would otherwise leave
    /// the next one without ephemeral ports.
    #[arg(long, default_value_t = 1000)]
    pub time_wait_below: usize,
    /// Write every measurement as JSON here.
    #[arg(long)]
    pub json_out: Option<PathBuf>,
}

/// One measurement (the median of `--repeat`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct ProxyMeasurement {
    pub mode: String,
    pub workload: String,
    pub connections: u32,
    pub duration_s: u64,
    pub body_bytes: u64,
    pub requests: u64,
    pub req_per_s: f64,
    /// Response bodies moved, 10^6 bytes per second.
    pub mbytes_per_s: f64,
    /// wrk's socket errors (connect, read, write, timeout).
    pub errors: u64,
    pub non_2xx: u64,
    pub latency_p50_us: f64,
    pub latency_p90_us: f64,
    pub latency_p99_us: f64,
    /// The gateway process's CPU per request, user + system, and split.
    pub cpu_us_per_req: f64,
    pub proc_user_us_per_req: f64,
    pub proc_sys_us_per_req: f64,
    /// sluice: its loops' busy time per request (`busy_ns`), and the part
    /// of it in transmit/fill syscalls (`kick_ns`).
    pub sluice_busy_us_per_req: Option<f64>,
    pub sluice_kick_us_per_req: Option<f64>,
    /// sluice: requests it proxied and upstream connections it opened
    /// over the load, from its counters.
    pub sluice_proxy_requests: Option<u64>,
    pub sluice_upstream_connects: Option<u64>,
    /// How busy the gateway's core and wrk's core were, and the share of
    /// the gateway's core that belonged to neither the gateway nor
    /// interrupts (another process: a busy machine).
    pub dut_core_pct: f64,
    pub gen_core_pct: f64,
    pub dut_core_other_pct: f64,
    /// The same on wrk's core, against wrk, the backend and interrupts.
    pub gen_core_other_pct: f64,
    /// The backend's CPU (all its nginx processes) per request.
    pub backend_cpu_us_per_req: f64,
    pub dut_core: CoreTime,
    pub gen_core: CoreTime,
    /// ESTABLISHED sockets on the backend's port in the backend
    /// namespace, sampled every second during the load.
    pub upstream_estab_samples: Vec<u64>,
    pub upstream_estab_max: u64,
    pub upstream_estab_median: u64,
    /// Connections the backend accepted during the load.
    pub upstream_opened: u64,
    /// TIME_WAIT sockets a second after the load, not counting those that
    /// were there before it: in the client, gateway and backend
    /// namespaces; for sluice the gateway's is its own `tcp_time_wait`.
    pub time_wait_client: u64,
    pub time_wait_gateway: u64,
    pub time_wait_backend: u64,
    /// The 1-minute load average before the repetition, whether the
    /// cores were quiet before it (`--quiet-pct`) and stayed so during it
    /// (`--max-other-pct`), and how many attempts it took.
    pub loadavg_1m: f64,
    pub quiet: bool,
    pub attempts: u32,
    /// Every repetition's req/s, in run order.
    pub repetitions: Vec<f64>,
}

/// The address pairs of `ss -Htan` lines (`state ...` filters drop the
/// State column; the last two fields are the local and the peer address).
pub fn parse_ss_pairs(text: &str) -> HashSet<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f.as_slice() {
                [.., local, peer] if local.contains(':') && peer.contains(':') => {
                    Some((local.to_string(), peer.to_string()))
                }
                _ => None,
            }
        })
        .collect()
}

/// A field of the `Tcp:` lines of /proc/net/snmp (a header line of names,
/// then a line of values).
pub fn parse_snmp_tcp(text: &str, field: &str) -> Option<u64> {
    let mut tcp = text.lines().filter(|l| l.starts_with("Tcp:"));
    let names = tcp.next()?;
    let values = tcp.next()?;
    let i = names.split_whitespace().position(|n| n == field)?;
    values.split_whitespace().nth(i)?.parse().ok()
}

fn ss(ns: &str, core: usize, args: &[&str]) -> Result<String> {
    let out = harness::pinned(ns, core, "ss")
        .args(args)
        .output()
        .context("running ss")?;
    if !out.status.success() {
        bail!(
            "ss {args:?} in {ns}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn time_wait_pairs(ns: &str, core: usize) -> Result<HashSet<(String, String)>> {
    Ok(parse_ss_pairs(&ss(
        ns,
        core,
        &["-Htan", "state", "time-wait"],
    )?))
}

/// Waits (up to 70 s) until fewer than `below` TIME_WAIT sockets are left
/// in each of `namespaces`; returns how many seconds it waited.
fn drain_time_wait(namespaces: &[String], core: usize, below: usize) -> Result<f64> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(70);
    loop {
        let mut most = 0;
        for ns in namespaces {
            most = most.max(time_wait_pairs(ns, core)?.len());
        }
        if most < below {
            return Ok(started.elapsed().as_secs_f64());
        }
        if Instant::now() > deadline {
            eprintln!("warning: {most} TIME_WAIT sockets still there after 70 s");
            return Ok(started.elapsed().as_secs_f64());
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

fn estab_to_backend(ns: &str, core: usize) -> Result<u64> {
    let filter = format!("( sport = :{BACKEND_PORT} )");
    Ok(parse_ss_pairs(&ss(ns, core, &["-Htn", "state", "established", &filter])?).len() as u64)
}

fn passive_opens(ns: &str) -> Result<u64> {
    let out = netns::command(ns, "cat")
        .arg("/proc/net/snmp")
        .output()
        .context("reading /proc/net/snmp")?;
    parse_snmp_tcp(&String::from_utf8_lossy(&out.stdout), "PassiveOpens")
        .with_context(|| format!("no Tcp: PassiveOpens in {ns}'s /proc/net/snmp"))
}

/// `pid` and its children (nginx's master and workers).
fn process_tree(pid: u32) -> Vec<u32> {
    let mut pids = vec![pid];
    if let Ok(dir) = fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(child) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let stat = fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            if parent_of(&stat) == Some(pid) {
                pids.push(child);
            }
        }
    }
    pids
}

/// The parent PID in a /proc/PID/stat line (field 4, after the name).
fn parent_of(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// User + system seconds of processes (those gone in between count 0).
fn cpu_secs(pids: &[u32]) -> f64 {
    pids.iter()
        .filter_map(|p| crate::cpu::process_times(*p).ok())
        .map(|(u, s)| u + s)
        .sum()
}

fn loadavg_1m() -> f64 {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

fn target(mode: &str) -> SocketAddr {
    match mode {
        "sluice" => SocketAddr::new(IpAddr::V4(addr::GW_VIP_V4), SLUICE_PORT),
        "nginx" => SocketAddr::new(IpAddr::V4(addr::GW_V4), NGINX_PORT),
        _ => SocketAddr::new(IpAddr::V4(addr::GW_V4), HAPROXY_PORT),
    }
}

fn backend_addr() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(addr::BACKEND_V4), BACKEND_PORT)
}

/// The backend: nginx with a master and two workers (they share the
/// pinned core), static files from `root/www`.
fn backend_conf(root: &Path) -> String {
    format!(
        r#"daemon off;
master_process on;
worker_processes 2;
worker_rlimit_nofile 20000;
error_log {root}/backend-error.log warn;
pid {root}/backend.pid;
events {{ worker_connections 10000; multi_accept on; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    open_file_cache max=16;
    default_type application/octet-stream;
    client_body_temp_path {root}/b-body;
    proxy_temp_path {root}/b-proxy;
    fastcgi_temp_path {root}/b-fastcgi;
    uwsgi_temp_path {root}/b-uwsgi;
    scgi_temp_path {root}/b-scgi;
    server {{
        listen {listen} reuseport backlog=65535;
        root {root}/www;
        add_header X-Backend nginx-backend always;
    }}
}}
"#,
        root = root.display(),
        listen = backend_addr(),
    )
}

/// The gateway nginx: one worker on the DUT core (harness::nginx_conf), an
/// upstream with 64 idle keep-alive connections kept. The upstream's own
/// `keepalive_requests` (1000 by default) and `keepalive_timeout` are
/// raised like the backend's, so the only limit on reuse is the cache of
/// 64; responses are not buffered to temporary files.
fn nginx_conf(root: &Path, a: &ProxyBenchArgs) -> String {
    let servers = format!(
        r#"    upstream backend {{
        server {backend};
        keepalive 64;
        keepalive_requests 10000000;
        keepalive_timeout 300s;
    }}
    server {{
        listen {listen} reuseport backlog=65535;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_max_temp_file_size 0;
        }}
    }}
"#,
        backend = backend_addr(),
        listen = target("nginx"),
    );
    harness::nginx_conf(root, a.dut_core, &servers)
}

/// HAProxy reserves two descriptors per connection and refuses to start
/// if it cannot raise its limit that far: stay within the hard limit.
fn haproxy_maxconn() -> u64 {
    let hard = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(_, h)| h)
        .unwrap_or(20_000);
    (hard.min(400_000).saturating_sub(200) / 2).max(1000)
}

fn haproxy_conf(root: &Path, a: &ProxyBenchArgs) -> String {
    format!(
        r#"global
    nbthread 1
    cpu-map 1/1 {core}
    maxconn {maxconn}
    pidfile {root}/haproxy.pid

defaults
    mode http
    option forwardfor
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout http-request 300s
    timeout http-keep-alive 300s

frontend fe
    bind {bind}
    default_backend be

backend be
    http-reuse always
    server b1 {backend}
"#,
        core = a.dut_core,
        maxconn = haproxy_maxconn(),
        root = root.display(),
        bind = target("haproxy"),
        backend = backend_addr(),
    )
}

/// sluice-dataplane on `gw0`, queue 0, its loop on the DUT core (and under
/// taskset), the pins under the topology's directory on the shared bpffs.
fn sluice_command(a: &ProxyBenchArgs, topo: &Topology, bin_dir: &Path) -> Command {
    let mut c = harness::pinned(&topo.gw_ns(), a.dut_core, bin_dir.join("sluice-dataplane"));
    c.args(["--iface", ifname::GW, "--queues", "0"])
        .args(["--cores", &a.dut_core.to_string()])
        .arg("--pin-dir")
        .arg(format!(
            "{}/{}/{}",
            sluice_bpf::system::SHARED_BPFFS,
            topo.prefix(),
            ifname::GW
        ))
        .args(["--stats-interval", "0.5", "--stats-format", "json"])
        .args(["--http-idle-timeout-secs", "300"])
        .arg("--http")
        .arg(target("sluice").to_string())
        .arg("--proxy")
        .arg(format!("/=http://{}", backend_addr()));
    c
}

fn start_gateway(
    a: &ProxyBenchArgs,
    topo: &Topology,
    mode: &str,
    bin_dir: &Path,
    work: &Path,
) -> Result<ServerProc> {
    let ns = topo.gw_ns();
    let cmd = match mode {
        "nginx" => {
            let conf = work.join("nginx.conf");
            fs::write(&conf, nginx_conf(work, a))?;
            let mut c = harness::pinned(&ns, a.dut_core, "nginx");
            c.arg("-c").arg(&conf).arg("-e").arg(work.join("error.log"));
            c
        }
        "haproxy" => {
            let conf = work.join("haproxy.cfg");
            fs::write(&conf, haproxy_conf(work, a))?;
            let mut c = harness::pinned(&ns, a.dut_core, "haproxy");
            c.arg("-db").arg("-f").arg(&conf);
            c
        }
        "sluice" => sluice_command(a, topo, bin_dir),
        other => bail!("unknown mode {other:?} (haproxy, nginx, sluice)"),
    };
    ServerProc::start(cmd, mode, work, &topo.client_ns(), target(mode))
}

fn start_backend(a: &ProxyBenchArgs, topo: &Topology, work: &Path) -> Result<ServerProc> {
    let conf = work.join("backend.conf");
    fs::write(&conf, backend_conf(work))?;
    let ns = topo.backend_ns();
    let mut c = match a.backend_core.as_str() {
        "none" => netns::command(&ns, "nginx"),
        core => harness::pinned(&ns, core.parse().context("--backend-core")?, "nginx"),
    };
    c.arg("-c")
        .arg(&conf)
        .arg("-e")
        .arg(work.join("backend-error.log"));
    ServerProc::start(c, "backend", work, &topo.client_ns(), backend_addr())
}

fn url(mode: &str, body: u64) -> String {
    format!("http://{}/bytes/{body}", target(mode))
}

/// One request through the gateway with curl: the status, the size and the
/// backend's header must be right.
fn check_path(a: &ProxyBenchArgs, topo: &Topology, mode: &str, body: u64) -> Result<()> {
    let out = harness::pinned(&topo.client_ns(), a.gen_core, "curl")
        .args([
            "-sS",
            "--fail",
            "--max-time",
            "10",
            "-D",
            "-",
            "-o",
            "/dev/null",
        ])
        .args(["-w", "size=%{size_download}\n"])
        .arg(url(mode, body))
        .output()
        .context("running curl")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "{mode}: curl {} failed: {}",
            url(mode, body),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let marked = text
        .lines()
        .any(|l| l.trim().eq_ignore_ascii_case(BACKEND_MARK));
    if !marked || !text.contains(&format!("size={body}\n")) {
        bail!(
            "{mode}: {} did not come from the backend whole:\n{text}",
            url(mode, body)
        );
    }
    Ok(())
}

/// sluice's cumulative counters from the next interval report it prints
/// (at most 3 s away).
fn next_sluice_total(server: &ServerProc) -> Result<Value> {
    let count = |s: &str| s.lines().filter(|l| l.contains("\"interval\"")).count();
    let n0 = count(&server.stdout_text());
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let text = server.stdout_text();
        if count(&text) > n0 {
            if let Some(v) = text
                .lines()
                .rev()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|v| v["type"] == "interval")
            {
                return Ok(v["total"].clone());
            }
        }
        if Instant::now() > deadline {
            bail!("sluice printed no counter report within 3 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn counter(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or(0)
}

/// Samples the ESTABLISHED upstream sockets in the backend namespace
/// every second until stopped (or `max` has passed).
struct EstabSampler {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<Vec<u64>>,
}

impl EstabSampler {
    fn start(ns: String, core: usize, max: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let deadline = Instant::now() + max;
            let mut samples = Vec::new();
            let mut next = Instant::now() + Duration::from_secs(1);
            while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
                if Instant::now() >= next {
                    if let Ok(n) = estab_to_backend(&ns, core) {
                        samples.push(n);
                    }
                    next += Duration::from_secs(1);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            samples
        });
        Self { stop, handle }
    }

    fn finish(self) -> Vec<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or_default()
    }
}

struct Load {
    connections: u32,
    secs: u64,
    body: u64,
}

fn load_of(a: &ProxyBenchArgs, workload: &str) -> Load {
    match workload {
        "reuse" => Load {
            connections: a.reuse_connections,
            secs: a.reuse_duration,
            body: a.body,
        },
        "bulk" => Load {
            connections: a.bulk_connections,
            secs: a.duration,
            body: a.bulk_body,
        },
        _ => Load {
            connections: a.connections,
            secs: a.duration,
            body: a.body,
        },
    }
}

fn measure(
    a: &ProxyBenchArgs,
    topo: &Topology,
    server: &ServerProc,
    backend: &[u32],
    workload: &str,
) -> Result<ProxyMeasurement> {
    let mode = server.name.as_str();
    let load = load_of(a, workload);
    check_path(a, topo, mode, load.body)?;
    let (client_ns, gw_ns, backend_ns) = (topo.client_ns(), topo.gw_ns(), topo.backend_ns());
    let sluice0 = (mode == "sluice")
        .then(|| next_sluice_total(server))
        .transpose()?;
    let tw0 = [
        time_wait_pairs(&client_ns, a.gen_core)?,
        time_wait_pairs(&gw_ns, a.gen_core)?,
        time_wait_pairs(&backend_ns, a.gen_core)?,
    ];
    let opens0 = passive_opens(&backend_ns)?;

    let mut wrk = harness::pinned(&client_ns, a.gen_core, "timeout");
    wrk.args(["-k", "5", &(load.secs + 60).to_string()])
        .args(["wrk", "-t1", "--latency"])
        .args(["-c", &load.connections.to_string()])
        .args(["-d", &format!("{}s", load.secs)])
        .arg(url(mode, load.body));
    let sampler = EstabSampler::start(
        backend_ns.clone(),
        a.gen_core,
        Duration::from_secs(load.secs + 5),
    );
    let backend0 = cpu_secs(backend);
    let window = CpuWindow::start(a.dut_core, a.gen_core, server.pid)?;
    let out = wrk.output().context("running wrk");
    let cpu = window.finish()?;
    let backend_s = cpu_secs(backend) - backend0;
    let samples = sampler.finish();
    let out = out?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "wrk against {mode} failed ({}):\n{text}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let w = parse_wrk(&text)?;
    // Let the closes settle (wrk closes its connections at exit).
    std::thread::sleep(Duration::from_secs(1));
    let opened = passive_opens(&backend_ns)?.saturating_sub(opens0);
    let new_tw = |before: &HashSet<(String, String)>, ns: &str| -> Result<u64> {
        Ok(time_wait_pairs(ns, a.gen_core)?.difference(before).count() as u64)
    };
    let tw_client = new_tw(&tw0[0], &client_ns)?;
    let mut tw_gw = new_tw(&tw0[1], &gw_ns)?;
    let tw_backend = new_tw(&tw0[2], &backend_ns)?;

    let n = w.requests as f64;
    let mut m = ProxyMeasurement {
        mode: mode.into(),
        workload: workload.into(),
        connections: load.connections,
        duration_s: load.secs,
        body_bytes: load.body,
        requests: w.requests,
        req_per_s: w.req_per_s,
        mbytes_per_s: w.req_per_s * load.body as f64 / 1e6,
        errors: w.errors,
        non_2xx: w.non_2xx,
        latency_p50_us: w.p50_us,
        latency_p90_us: w.p90_us,
        latency_p99_us: w.p99_us,
        proc_user_us_per_req: us_per(cpu.proc_user_s, n),
        proc_sys_us_per_req: us_per(cpu.proc_sys_s, n),
        cpu_us_per_req: us_per(cpu.proc_user_s + cpu.proc_sys_s, n),
        dut_core_pct: cpu.dut_core_pct(),
        gen_core_pct: pct(&cpu.gen_core),
        dut_core_other_pct: cpu.dut_core_other_pct(),
        gen_core_other_pct: other_pct(&cpu.gen_core, cpu.gen_user_s + cpu.gen_sys_s + backend_s),
        backend_cpu_us_per_req: us_per(backend_s, n),
        dut_core: cpu.dut_core,
        gen_core: cpu.gen_core,
        upstream_estab_max: samples.iter().copied().max().unwrap_or(0),
        upstream_estab_median: median_u64(&samples),
        upstream_estab_samples: samples,
        upstream_opened: opened,
        time_wait_client: tw_client,
        time_wait_backend: tw_backend,
        ..Default::default()
    };
    if let Some(t0) = sluice0 {
        let t1 = next_sluice_total(server)?;
        let d = |k: &str| counter(&t1, k).saturating_sub(counter(&t0, k));
        m.sluice_busy_us_per_req = Some(us_per(d("busy_ns") as f64 / 1e9, n));
        m.sluice_kick_us_per_req = Some(us_per(d("kick_ns") as f64 / 1e9, n));
        m.sluice_proxy_requests = Some(d("proxy_requests"));
        m.sluice_upstream_connects = Some(d("proxy_upstream_connects"));
        // Its own stack's TIME_WAIT, not the namespace's kernel's.
        tw_gw = counter(&t1, "tcp_time_wait");
    }
    m.time_wait_gateway = tw_gw;
    Ok(m)
}

/// The share of a core's time that was busy but neither `known_s` seconds
/// of known processes nor interrupt work.
fn other_pct(c: &CoreTime, known_s: f64) -> f64 {
    let total = c.total() as f64;
    if total == 0.0 {
        return 0.0;
    }
    let accounted = known_s * crate::cpu::ticks_per_sec() + (c.softirq + c.irq) as f64;
    ((c.busy() as f64 - accounted) * 100.0 / total).max(0.0)
}

fn pct(c: &CoreTime) -> f64 {
    if c.total() > 0 {
        c.busy() as f64 * 100.0 / c.total() as f64
    } else {
        0.0
    }
}

fn median_u64(v: &[u64]) -> u64 {
    let mut s = v.to_vec();
    s.sort_unstable();
    s.get(s.len() / 2).copied().unwrap_or(0)
}

fn validate(a: &ProxyBenchArgs) -> Result<()> {
    harness::check_cores(a.dut_core, a.gen_core)?;
    if a.backend_core != "none" {
        let c: usize = a
            .backend_core
            .parse()
            .context("--backend-core: a core number or `none`")?;
        if c == a.dut_core {
            bail!("--backend-core must not be the gateway's core");
        }
    }
    for m in &a.modes {
        if !MODES.contains(&m.as_str()) {
            bail!("unknown mode {m:?} (haproxy, nginx, sluice)");
        }
    }
    for w in &a.workloads {
        if !WORKLOADS.contains(&w.as_str()) {
            bail!("unknown workload {w:?} (keepalive, reuse, bulk)");
        }
    }
    if a.repeat == 0 || a.duration == 0 || a.reuse_duration == 0 {
        bail!("--repeat, --duration and --reuse-duration must be positive");
    }
    for t in ["wrk", "curl", "ss"] {
        harness::require_tool(t, "--version")?;
    }
    harness::require_tool("nginx", "-v")?;
    if a.modes.iter().any(|m| m == "haproxy") {
        harness::require_tool("haproxy", "-v")?;
    }
    Ok(())
}

pub fn run(a: &ProxyBenchArgs) -> Result<Vec<ProxyMeasurement>> {
    validate(a)?;
    let bin_dir = harness::bin_dir()?;
    if a.modes.iter().any(|m| m == "sluice") {
        harness::require_bin(&bin_dir, "sluice-dataplane")?;
    }
    harness::raise_nofile(u64::from(a.reuse_connections) + 1024)?;
    let work_dir = WorkDir::new("proxy-bench")?;
    let work = work_dir.path();
    fs::create_dir_all(work.join("www/bytes"))?;
    for n in [a.body, a.bulk_body] {
        harness::write_pattern(&work.join(format!("www/bytes/{n}")), n)?;
    }
    let all = harness::with_topology(&a.prefix, |topo| {
        let backend = start_backend(a, topo, work)?;
        let backend_pids = process_tree(backend.pid);
        let mut all = Vec::new();
        let result = (|| -> Result<()> {
            for workload in &a.workloads {
                for mode in &a.modes {
                    let mut reps = Vec::new();
                    for rep in 0..a.repeat {
                        let mut attempt = 0;
                        let m = loop {
                            attempt += 1;
                            let waited = drain_time_wait(
                                &[topo.gw_ns(), topo.backend_ns()],
                                a.gen_core,
                                a.time_wait_below,
                            )?;
                            if waited > 3.0 {
                                eprintln!("  waited {waited:.0} s for TIME_WAIT sockets to expire");
                            }
                            let quiet = a.quiet_pct >= 100.0
                                || harness::wait_for_quiet(
                                    a.quiet_pct,
                                    Duration::from_secs(a.quiet_wait),
                                )?;
                            let load = loadavg_1m();
                            if !quiet {
                                eprintln!(
                                    "warning: cores still more than {}% busy after {} s (load {load:.2}); measuring anyway",
                                    a.quiet_pct, a.quiet_wait
                                );
                            }
                            let server = start_gateway(a, topo, mode, &bin_dir, work)?;
                            let m = measure(a, topo, &server, &backend_pids, workload);
                            let stopped = server.stop();
                            let mut m =
                                m.with_context(|| format!("{mode} {workload} rep {rep}"))?;
                            stopped?;
                            let clean = m.dut_core_other_pct <= a.max_other_pct
                                && m.gen_core_other_pct <= a.max_other_pct;
                            m.quiet = quiet && clean;
                            m.loadavg_1m = load;
                            m.attempts = attempt;
                            eprintln!("  rep {rep} attempt {attempt}: {}", summary_line(&m));
                            if clean || attempt >= a.tries.max(1) {
                                break m;
                            }
                            eprintln!(
                                "  other processes took {:.0}% of the gateway core, {:.0}% of wrk's: again",
                                m.dut_core_other_pct, m.gen_core_other_pct
                            );
                        };
                        reps.push(m);
                    }
                    let values: Vec<f64> = reps.iter().map(|m| m.req_per_s).collect();
                    let mut m = median_by(&mut reps, |m| m.req_per_s);
                    m.repetitions = values;
                    eprintln!("{}", summary_line(&m));
                    all.push(m);
                }
            }
            Ok(())
        })();
        let stopped = backend.stop();
        result?;
        stopped?;
        Ok(all)
    })?;
    if let Some(p) = &a.json_out {
        fs::write(p, serde_json::to_string_pretty(&all)?)?;
        eprintln!("results: {}", p.display());
    }
    Ok(all)
}

fn summary_line(m: &ProxyMeasurement) -> String {
    format!(
        "{:>7} {:>9}: {:>9.0} req/s {:>8.1} MB/s  cpu {:>6.2} us/req ({:.2} user + {:.2} sys){}  core {:>5.1}% (other {:.0}%) gen core {:>5.1}% (other {:.0}%, backend {:.1} us/req)  p50 {:.0} us p99 {:.0} us  errors {} non-2xx {}  upstream estab max {} opened {}  TIME_WAIT client {} gw {} backend {}  load {:.2}{}",
        m.mode,
        m.workload,
        m.req_per_s,
        m.mbytes_per_s,
        m.cpu_us_per_req,
        m.proc_user_us_per_req,
        m.proc_sys_us_per_req,
        m.sluice_busy_us_per_req
            .map_or(String::new(), |b| format!(" busy {b:.2}")),
        m.dut_core_pct,
        m.dut_core_other_pct,
        m.gen_core_pct,
        m.gen_core_other_pct,
        m.backend_cpu_us_per_req,
        m.latency_p50_us,
        m.latency_p99_us,
        m.errors,
        m.non_2xx,
        m.upstream_estab_max,
        m.upstream_opened,
        m.time_wait_client,
        m.time_wait_gateway,
        m.time_wait_backend,
        m.loadavg_1m,
        if m.quiet { "" } else { " (NOT QUIET)" }
    )
}

fn workload_label(m: &ProxyMeasurement) -> String {
    match m.workload.as_str() {
        "keepalive" => format!("keep-alive, {} B, -c{}", m.body_bytes, m.connections),
        "reuse" => format!(
            "reuse, {} B, -c{}, {} s",
            m.body_bytes, m.connections, m.duration_s
        ),
        "bulk" => format!("1 MiB, keep-alive, -c{}", m.connections),
        w => w.to_string(),
    }
}

/// The markdown table: one row per gateway and workload, ratios of sluice
/// against HAProxy and nginx in the same run, and the row still to come.
pub fn markdown(ms: &[ProxyMeasurement]) -> String {
    let find = |mode: &str, w: &str| ms.iter().find(|b| b.mode == mode && b.workload == w);
    let ratio = |m: &ProxyMeasurement, base: &str, f: fn(&ProxyMeasurement) -> f64| {
        if m.mode != "sluice" {
            return String::new();
        }
        match find(base, &m.workload) {
            Some(b) if f(b) != 0.0 => format!("{:.2}x", f(m) / f(b)),
            _ => "-".into(),
        }
    };
    let mut out = String::from(
        "| workload | gateway | req/s | MB/s | errors (socket / non-2xx) | CPU µs/req (user + sys) | sluice busy µs/req | gateway core % | p50 / p99 µs | upstream ESTAB max (median) | upstream connections opened | new TIME_WAIT gateway / backend | req/s vs HAProxy | req/s vs nginx | CPU/req vs HAProxy | CPU/req vs nginx |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for m in ms {
        out.push_str(&format!(
            "| {} | {} | {:.0} | {:.1} | {} / {} | {:.2} ({:.2} + {:.2}) | {} | {:.1} | {:.0} / {:.0} | {} ({}) | {} | {} / {} | {} | {} | {} | {} |\n",
            workload_label(m),
            m.mode,
            m.req_per_s,
            m.mbytes_per_s,
            m.errors,
            m.non_2xx,
            m.cpu_us_per_req,
            m.proc_user_us_per_req,
            m.proc_sys_us_per_req,
            m.sluice_busy_us_per_req
                .map_or("-".into(), |b| format!("{b:.2}")),
            m.dut_core_pct,
            m.latency_p50_us,
            m.latency_p99_us,
            m.upstream_estab_max,
            m.upstream_estab_median,
            m.upstream_opened,
            m.time_wait_gateway,
            m.time_wait_backend,
            ratio(m, "haproxy", |x| x.req_per_s),
            ratio(m, "nginx", |x| x.req_per_s),
            ratio(m, "haproxy", |x| x.cpu_us_per_req),
            ratio(m, "nginx", |x| x.cpu_us_per_req),
        ));
    }
    out.push_str(
        "| TLS h2 downstream → h2c upstream | all | not yet: h2c upstream lands next | | | | | | | | | | | | | |\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ss_lines_give_address_pairs() {
        let text = "0      0        198.18.0.2:8080    198.18.0.1:40312\n\
                    0      0        198.18.0.2:8080    198.18.0.1:40314\n\
                    0      0   [2001:2::2]:80   [2001:2::1]:5000\n\
                    \n";
        let p = parse_ss_pairs(text);
        assert_eq!(p.len(), 3);
        assert!(p.contains(&("198.18.0.2:8080".into(), "198.18.0.1:40314".into())));
        assert!(p.contains(&("[2001:2::2]:80".into(), "[2001:2::1]:5000".into())));
        // Without -H the header line carries no addresses.
        let with_header =
            "Recv-Q Send-Q Local Address:Port Peer Address:Port\n0 0 1.2.3.4:1 5.6.7.8:2\n";
        assert_eq!(parse_ss_pairs(with_header).len(), 1);
        assert!(parse_ss_pairs("").is_empty());
    }

    #[test]
    fn snmp_tcp_fields_parse() {
        let text = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
                    Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails\n\
                    Tcp: 1 200 120000 -1 17 4242 3\n\
                    Udp: InDatagrams\nUdp: 5\n";
        assert_eq!(parse_snmp_tcp(text, "PassiveOpens"), Some(4242));
        assert_eq!(parse_snmp_tcp(text, "ActiveOpens"), Some(17));
        assert_eq!(parse_snmp_tcp(text, "Nope"), None);
        assert_eq!(parse_snmp_tcp("Ip: 1\n", "PassiveOpens"), None);
    }

    #[test]
    fn parent_pid_and_other_share_are_read() {
        assert_eq!(parent_of("77 (nginx: worker (x)) S 42 77 77 0"), Some(42));
        assert_eq!(parent_of("garbage"), None);
        let hz = crate::cpu::ticks_per_sec();
        // 1000 ticks: 600 busy, of which the known processes and softirq
        // account for 550.
        let c = CoreTime {
            user: 400,
            system: 150,
            softirq: 50,
            irq: 0,
            idle: 400,
        };
        let known = 500.0 / hz;
        assert!((other_pct(&c, known) - 5.0).abs() < 1e-9);
        assert_eq!(other_pct(&c, 10_000.0 / hz), 0.0);
        assert_eq!(other_pct(&CoreTime::default(), 0.0), 0.0);
    }

    fn args() -> ProxyBenchArgs {
        ProxyBenchArgs {
            prefix: "x".into(),
            dut_core: 1,
            gen_core: 0,
            backend_core: "0".into(),
            modes: vec![],
            workloads: vec![],
            duration: 1,
            reuse_duration: 1,
            connections: 1,
            reuse_connections: 1,
            bulk_connections: 1,
            body: 64,
            bulk_body: 1 << 20,
            repeat: 1,
            quiet_pct: 100.0,
            quiet_wait: 1,
            max_other_pct: 5.0,
            tries: 1,
            time_wait_below: 1000,
            json_out: None,
        }
    }

    #[test]
    fn configs_pin_the_gateways_and_keep_upstream_connections() {
        let w = Path::new("/w");
        let n = nginx_conf(w, &args());
        assert!(n.contains("worker_cpu_affinity 10;"), "{n}");
        assert!(
            n.contains("server 198.18.0.3:8080;\n        keepalive 64;"),
            "{n}"
        );
        assert!(n.contains("proxy_http_version 1.1;"), "{n}");
        assert!(n.contains(r#"proxy_set_header Connection "";"#), "{n}");
        assert!(n.contains("listen 198.18.0.2:8080"), "{n}");
        let h = haproxy_conf(w, &args());
        assert!(h.contains("nbthread 1\n    cpu-map 1/1 1\n"), "{h}");
        assert!(
            h.contains("http-reuse always\n    server b1 198.18.0.3:8080"),
            "{h}"
        );
        assert!(h.contains("bind 198.18.0.2:9080"), "{h}");
        let b = backend_conf(w);
        assert!(b.contains("worker_processes 2;"), "{b}");
        assert!(
            b.contains("add_header X-Backend nginx-backend always;"),
            "{b}"
        );
        assert!(b.contains("listen 198.18.0.3:8080"), "{b}");
    }

    #[test]
    fn sluice_proxies_from_the_vip_on_one_queue() {
        let topo = Topology::new("slproxy", 1).unwrap();
        let c = sluice_command(&args(), &topo, Path::new("/bin"));
        let line = crate::exec::CmdLine(&c).to_string();
        assert!(
            line.starts_with("ip netns exec slproxy-gw taskset -c 1 /bin/sluice-dataplane --iface gw0 --queues 0 --cores 1 "),
            "{line}"
        );
        assert!(
            line.ends_with("--http 198.18.0.100:80 --proxy /=http://198.18.0.3:8080"),
            "{line}"
        );
    }

    #[test]
    fn table_has_ratios_on_sluice_rows_and_the_h2c_placeholder() {
        let row = |mode: &str, rps: f64, cpu: f64| ProxyMeasurement {
            mode: mode.into(),
            workload: "keepalive".into(),
            connections: 64,
            body_bytes: 64,
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
        assert!(md.contains("not yet: h2c upstream lands next"), "{md}");
        assert!(
            md.contains("| keep-alive, 64 B, -c64 | haproxy | 100 |"),
            "{md}"
        );
    }
}
