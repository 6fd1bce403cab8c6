//! `sluice-bench run proxy`: the reverse proxy, HTTP/1.1 downstream to
//! HTTP/1.1 upstream over pooled keep-alive connections, and TLS HTTP/2
//! downstream to cleartext HTTP/2 (h2c) upstream: sluice against
//! HAProxy and nginx (both on the kernel's TCP), side by side in one run,
//! on the one-arm topology (client, gateway and backend namespaces on one
//! bridge), every gateway pinned to the same core, the same backend for
//! all of them.
//!
//! - the backend: nginx in the backend namespace (198.18.0.3:8080 for
//!   HTTP/1.1, 198.18.0.3:8081 for h2c: `listen ... http2` on a plaintext
//!   port is HTTP/2 with prior knowledge in nginx 1.22), two workers, static files, `keepalive_requests` and `keepalive_timeout`
//!   as large as the gateways', pinned (`taskset`) to `--backend-core`
//!   (by default the core the gateway does not use: it then shares that
//!   core with wrk). Every response carries `X-Backend: nginx-backend`,
//!   which the bench checks through each gateway before measuring: a
//!   gateway that answered by itself would fail it;
//! - the gateways, each under `taskset -c DUT-CORE` in the gateway
//!   namespace: sluice-dataplane (`--iface gw0 --queues 0 --cores N --http
//!   VIP:80 --proxy /=http://198.18.0.3:8080`, its own TCP over copy-mode
//!   AF_XDP, its default pool: 64 connections per backend per loop, 16 of
//!   them kept idle); HAProxy (`nbthread 1`, `http-reuse always`;
//!   `--haproxy-server-maxconn N` adds `maxconn N` to its server line: a
//!   pool like sluice's, the rest queued); nginx (one worker,
//!   `upstream { keepalive 64; }`, `proxy_http_version 1.1`,
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
//! and `h2` (h2load instead of wrk, one thread, pinned the same way):
//! `--h2-clients` (64) TLS 1.3 connections with ALPN h2, `--h2-streams` (10)
//! streams in flight on each, the small file for `--duration`. The gateways
//! terminate TLS (the certificate of `run tls`) and talk h2c to the
//! backend's port 8081: sluice `--tls VIP:443 --proxy /=h2c://...:8081`,
//! HAProxy `bind ... ssl crt ... alpn h2` and `server ... proto h2`. nginx
//! cannot talk HTTP/2 to an upstream (`proxy_pass` is HTTP/1.x,
//! `grpc_pass` gRPC only): its row is TLS h2 downstream to HTTP/1.1
//! keep-alive upstream on port 8080, its cache `keepalive` as large as the
//! streams in flight (clients x streams), so that it needs one upstream
//! connection per stream in flight but does not churn. The check before
//! the load is `curl -k --http2` over TLS (it must negotiate HTTP/2); the
//! latency percentiles come from a separate 2 s h2load run with
//! `--log-file` after the measured one (writing the log slows h2load),
//! h2load's own mean and max of the measured run are kept too.
//!
//! For every measurement: wrk's (h2load's) req/s, errors and latency; the
//! gateway process's user and system time per request (/proc/PID/stat), and for
//! sluice also its loops' busy time (`busy_ns` of its counters); the
//! upstream connections: ESTABLISHED sockets on the backend's port the
//! gateway uses (8080 or 8081) in the backend namespace, sampled every second during the load, and the
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
use crate::interrupt::{self, parent_of};
use crate::netns;
use crate::tls_bench::{log_percentiles, make_cert, parse_h2load, Cert};
use crate::tls_client::SERVER_NAME;
use crate::topology::{addr, ifname, Topology};

/// sluice listens on the VIP; nginx and HAProxy on the gateway
/// namespace's kernel address; the backend on its own.
const SLUICE_PORT: u16 = 80;
const NGINX_PORT: u16 = 8080;
const HAPROXY_PORT: u16 = 9080;
const BACKEND_PORT: u16 = 8080;
/// `h2`: the gateways' TLS listeners and the backend's h2c port.
const SLUICE_TLS_PORT: u16 = 443;
const NGINX_TLS_PORT: u16 = 8443;
const HAPROXY_TLS_PORT: u16 = 9443;
const BACKEND_H2C_PORT: u16 = 8081;
/// The one TLS 1.3 suite h2load offers in `h2` (as in `run tls`), so that
/// every gateway uses the same one.
const H2_CIPHER: &str = "TLS_AES_128_GCM_SHA256";
/// Seconds of the extra h2load run with `--log-file` (latency percentiles).
const H2_LOG_SECS: u64 = 2;
/// The header the backend adds to every response.
const BACKEND_MARK: &str = "X-Backend: nginx-backend";

pub const MODES: [&str; 3] = ["haproxy", "nginx", "sluice"];
pub const WORKLOADS: [&str; 4] = ["keepalive", "reuse", "bulk", "h2"];

#[derive(Args, Debug, Clone)]
pub struct ProxyBenchArgs {
    /// Topology prefix (brought up with one queue per veth if missing, and
    /// then torn down at the end, also on failure).
    #[arg(long, default_value = "slproxy")]
    pub prefix: String,
    /// Core of the gateway (sluice's loop, HAProxy's thread, nginx's worker).
    #[arg(long, default_value_t = 1)]
    pub dut_core: usize,
    /// Core of wrk and h2load.
    #[arg(long, default_value_t = 0)]
    pub gen_core: usize,
    /// Core of the backend nginx (both workers); `none`: unpinned.
    #[arg(long, default_value = "0")]
    pub backend_core: String,
    /// Servers to compare: haproxy, nginx, sluice.
    #[arg(long, value_delimiter = ',', default_value = "haproxy,nginx,sluice")]
    pub modes: Vec<String>,
    /// Workloads: keepalive, reuse, bulk, h2.
    #[arg(long, value_delimiter = ',', default_value = "keepalive,reuse,bulk,h2")]
    pub workloads: Vec<String>,
    /// Seconds per `keepalive`, `bulk` and `h2` measurement.
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
    /// h2load clients (TLS connections) in `h2`.
    #[arg(long, default_value_t = 64)]
    pub h2_clients: u32,
    /// h2load streams in flight per client in `h2` (`-m`).
    #[arg(long, default_value_t = 10)]
    pub h2_streams: u32,
    /// The small response's body in bytes (`keepalive`, `reuse`, `h2`).
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
    /// HAProxy's `maxconn` on its server line: at most this many upstream
    /// connections, the other requests wait in HAProxy's queue (as sluice's
    /// do in its pool of 64). Unset: one upstream connection per client
    /// connection when none is idle.
    #[arg(long)]
    pub haproxy_server_maxconn: Option<u32>,
}

/// One measurement (the median of `--repeat`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct ProxyMeasurement {
    pub mode: String,
    pub workload: String,
    pub connections: u32,
    /// `h2`: streams in flight per connection (h2load's `-m`); 0 for wrk.
    pub streams: u32,
    /// What the gateway spoke to the backend: `http/1.1` or `h2c`.
    pub upstream_protocol: String,
    /// HAProxy's server `maxconn` (`--haproxy-server-maxconn`), if set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub haproxy_server_maxconn: Option<u32>,
    pub duration_s: u64,
    pub body_bytes: u64,
    pub requests: u64,
    pub req_per_s: f64,
    /// Response bodies moved, 10^6 bytes per second.
    pub mbytes_per_s: f64,
    /// wrk's socket errors (connect, read, write, timeout); h2load's
    /// failed, errored and timed-out requests.
    pub errors: u64,
    pub non_2xx: u64,
    pub latency_p50_us: f64,
    pub latency_p90_us: f64,
    pub latency_p99_us: f64,
    /// `h2`: h2load's mean and max "time for request" of the measured run
    /// (the percentiles above come from the shorter `--log-file` run).
    pub latency_mean_us: Option<f64>,
    pub latency_max_us: Option<f64>,
    /// `h2`: what h2load negotiated.
    pub alpn: Option<String>,
    pub cipher: Option<String>,
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
    /// ESTABLISHED sockets on the backend's port the gateway uses in the
    /// backend namespace, sampled every second during the load.
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

/// Waits (up to 70 s, cut short by SIGINT/SIGTERM) until fewer than
/// `below` TIME_WAIT sockets are left in each of `namespaces`; returns how
/// many seconds it waited.
fn drain_time_wait(namespaces: &[String], core: usize, below: usize) -> Result<f64> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(70);
    loop {
        interrupt::check()?;
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
        interrupt::sleep(Duration::from_secs(2))?;
    }
}

fn estab_to_backend(ns: &str, core: usize, port: u16) -> Result<u64> {
    let filter = format!("( sport = :{port} )");
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

/// The gateway's TLS listener (`h2`).
fn tls_target(mode: &str) -> SocketAddr {
    match mode {
        "sluice" => SocketAddr::new(IpAddr::V4(addr::GW_VIP_V4), SLUICE_TLS_PORT),
        "nginx" => SocketAddr::new(IpAddr::V4(addr::GW_V4), NGINX_TLS_PORT),
        _ => SocketAddr::new(IpAddr::V4(addr::GW_V4), HAPROXY_TLS_PORT),
    }
}

/// Where the gateway listens in `workload`.
fn gateway_addr(mode: &str, workload: &str) -> SocketAddr {
    if workload == "h2" {
        tls_target(mode)
    } else {
        target(mode)
    }
}

fn backend_addr() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(addr::BACKEND_V4), BACKEND_PORT)
}

/// The backend's h2c listener (HTTP/2 with prior knowledge).
fn backend_h2c_addr() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(addr::BACKEND_V4), BACKEND_H2C_PORT)
}

/// h2c for HAProxy and sluice in `h2`; HTTP/1.1 otherwise (nginx's
/// `proxy_pass` has no HTTP/2).
fn upstream_h2c(mode: &str, workload: &str) -> bool {
    workload == "h2" && mode != "nginx"
}

/// The backend port the gateway's upstream connections go to.
fn upstream_port(mode: &str, workload: &str) -> u16 {
    if upstream_h2c(mode, workload) {
        BACKEND_H2C_PORT
    } else {
        BACKEND_PORT
    }
}

/// The backend: nginx with a master and two workers (they share the
/// pinned core), static files from `root/www`, HTTP/1.1 on one port and
/// h2c on another (`http2` on a plaintext listener: prior knowledge only;
/// its streams per connection are nginx's default 128, its requests per
/// connection `keepalive_requests`).
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
    server {{
        listen {listen_h2c} http2 reuseport backlog=65535;
        root {root}/www;
        add_header X-Backend nginx-backend always;
    }}
}}
"#,
        root = root.display(),
        listen = backend_addr(),
        listen_h2c = backend_h2c_addr(),
    )
}

/// The gateway nginx: one worker on the DUT core (harness::nginx_conf), an
/// upstream with 64 idle keep-alive connections kept. The upstream's own
/// `keepalive_requests` (1000 by default) and `keepalive_timeout` are
/// raised like the backend's, so the only limit on reuse is the cache of
/// 64; responses are not buffered to temporary files.
fn nginx_conf(root: &Path, a: &ProxyBenchArgs) -> String {
    let listen = format!("listen {} reuseport backlog=65535;", target("nginx"));
    harness::nginx_conf(root, a.dut_core, &nginx_servers(&listen, 64))
}

/// `h2`: the same upstream over HTTP/1.1 behind a TLS + h2 listener, its
/// idle cache as large as the streams in flight (h2load's clients x
/// streams): HTTP/1.1 carries one request per connection at a time.
fn nginx_h2_conf(root: &Path, a: &ProxyBenchArgs, cert: &Cert) -> String {
    let listen = format!(
        "listen {} ssl http2 reuseport backlog=65535;
        ssl_certificate {};
        ssl_certificate_key {};
        ssl_protocols TLSv1.3;",
        tls_target("nginx"),
        cert.cert.display(),
        cert.key.display(),
    );
    let cache = a.h2_clients.saturating_mul(a.h2_streams).max(64);
    harness::nginx_conf(root, a.dut_core, &nginx_servers(&listen, cache))
}

/// The upstream with `keepalive` idle connections kept, and a server with
/// the `listen` directives given proxying everything to it.
fn nginx_servers(listen: &str, keepalive: u32) -> String {
    format!(
        r#"    upstream backend {{
        server {backend};
        keepalive {keepalive};
        keepalive_requests 10000000;
        keepalive_timeout 300s;
    }}
    server {{
        {listen}
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

fn haproxy_conf(root: &Path, a: &ProxyBenchArgs) -> String {
    haproxy_conf_with(
        root,
        a,
        &target("haproxy").to_string(),
        &backend_addr().to_string(),
    )
}

/// `h2`: TLS 1.3 with ALPN h2 on the frontend, h2c (`proto h2`) to the
/// backend's h2c port; `http-reuse always` shares its connections'
/// streams among all clients.
fn haproxy_h2_conf(root: &Path, a: &ProxyBenchArgs, cert: &Cert) -> String {
    haproxy_conf_with(
        root,
        a,
        &format!(
            "{} ssl crt {} alpn h2 ssl-min-ver TLSv1.3",
            tls_target("haproxy"),
            cert.pem.display()
        ),
        &format!("{} proto h2", backend_h2c_addr()),
    )
}

fn haproxy_conf_with(root: &Path, a: &ProxyBenchArgs, bind: &str, server: &str) -> String {
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
    server b1 {server}{server_maxconn}
"#,
        server_maxconn = a
            .haproxy_server_maxconn
            .map_or(String::new(), |n| format!(" maxconn {n}")),
        core = a.dut_core,
        maxconn = haproxy_maxconn(),
        root = root.display(),
    )
}

/// sluice-dataplane on `gw0`, queue 0, its loop on the DUT core (and under
/// taskset), the pins under the topology's directory on the shared bpffs.
fn sluice_command(a: &ProxyBenchArgs, topo: &Topology, bin_dir: &Path) -> Command {
    let mut c = sluice_base(a, topo, bin_dir);
    c.arg("--http")
        .arg(target("sluice").to_string())
        .arg("--proxy")
        .arg(format!("/=http://{}", backend_addr()));
    c
}

/// `h2`: a TLS listener on the VIP (ALPN h2) proxying to the backend's
/// h2c port.
fn sluice_h2_command(a: &ProxyBenchArgs, topo: &Topology, bin_dir: &Path, cert: &Cert) -> Command {
    let mut c = sluice_base(a, topo, bin_dir);
    c.args(["--h2-idle-timeout-secs", "300"])
        .arg("--tls-cert")
        .arg(&cert.cert)
        .arg("--tls-key")
        .arg(&cert.key)
        .arg("--tls")
        .arg(tls_target("sluice").to_string())
        .arg("--proxy")
        .arg(format!("/=h2c://{}", backend_h2c_addr()));
    c
}

/// What both sluice command lines share.
fn sluice_base(a: &ProxyBenchArgs, topo: &Topology, bin_dir: &Path) -> Command {
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
        .args(["--http-idle-timeout-secs", "300"]);
    c
}

/// The gateway for `workload`; `cert` is needed for `h2`.
fn start_gateway(
    a: &ProxyBenchArgs,
    topo: &Topology,
    mode: &str,
    workload: &str,
    bin_dir: &Path,
    work: &Path,
    cert: Option<&Cert>,
) -> Result<ServerProc> {
    let ns = topo.gw_ns();
    let h2 = match (workload, cert) {
        ("h2", Some(cert)) => Some(cert),
        ("h2", None) => bail!("the h2 workload needs a certificate"),
        _ => None,
    };
    let cmd = match mode {
        "nginx" => {
            let conf = work.join("nginx.conf");
            let text = match h2 {
                Some(cert) => nginx_h2_conf(work, a, cert),
                None => nginx_conf(work, a),
            };
            fs::write(&conf, text)?;
            let mut c = harness::pinned(&ns, a.dut_core, "nginx");
            c.arg("-c").arg(&conf).arg("-e").arg(work.join("error.log"));
            c
        }
        "haproxy" => {
            let conf = work.join("haproxy.cfg");
            let text = match h2 {
                Some(cert) => haproxy_h2_conf(work, a, cert),
                None => haproxy_conf(work, a),
            };
            fs::write(&conf, text)?;
            let mut c = harness::pinned(&ns, a.dut_core, "haproxy");
            c.arg("-db").arg("-f").arg(&conf);
            c
        }
        "sluice" => match h2 {
            Some(cert) => sluice_h2_command(a, topo, bin_dir, cert),
            None => sluice_command(a, topo, bin_dir),
        },
        other => bail!("unknown mode {other:?} (haproxy, nginx, sluice)"),
    };
    ServerProc::start(
        cmd,
        mode,
        work,
        &topo.client_ns(),
        gateway_addr(mode, workload),
    )
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

fn url(mode: &str, workload: &str, body: u64) -> String {
    if workload == "h2" {
        format!("https://{}/bytes/{body}", tls_target(mode))
    } else {
        format!("http://{}/bytes/{body}", target(mode))
    }
}

/// One request through the gateway with curl: the status, the size and the
/// backend's header must be right; in `h2` over TLS with HTTP/2
/// negotiated (`-k`: the certificate is self-signed).
fn check_path(
    a: &ProxyBenchArgs,
    topo: &Topology,
    mode: &str,
    workload: &str,
    body: u64,
) -> Result<()> {
    let url = url(mode, workload, body);
    let h2 = workload == "h2";
    let mut curl = harness::pinned(&topo.client_ns(), a.gen_core, "curl");
    if h2 {
        curl.args(["-k", "--http2"]);
    }
    let out = curl
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
        .args(["-w", "size=%{size_download}\nversion=%{http_version}\n"])
        .arg(&url)
        .output()
        .context("running curl")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "{mode}: curl {url} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let marked = text
        .lines()
        .any(|l| l.trim().eq_ignore_ascii_case(BACKEND_MARK));
    if !marked || !text.contains(&format!("size={body}\n")) {
        bail!("{mode}: {url} did not come from the backend whole:\n{text}");
    }
    if h2 && !text.contains("version=2\n") {
        bail!("{mode}: {url} was not served over HTTP/2:\n{text}");
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
        interrupt::sleep(Duration::from_millis(50))?;
    }
}

fn counter(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or(0)
}

/// Samples the ESTABLISHED upstream sockets in the backend namespace
/// every second until stopped (or `max` has passed, or it is dropped).
struct EstabSampler {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<Vec<u64>>>,
}

impl EstabSampler {
    fn start(ns: String, core: usize, port: u16, max: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let deadline = Instant::now() + max;
            let mut samples = Vec::new();
            let mut next = Instant::now() + Duration::from_secs(1);
            while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
                if Instant::now() >= next {
                    if let Ok(n) = estab_to_backend(&ns, core, port) {
                        samples.push(n);
                    }
                    next += Duration::from_secs(1);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            samples
        });
        Self {
            stop,
            handle: Some(handle),
        }
    }

    fn finish(mut self) -> Vec<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for EstabSampler {
    /// An early return (an error, an interruption) stops the thread too.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

struct Load {
    connections: u32,
    /// h2load's streams per connection (`h2`); 0: wrk.
    streams: u32,
    secs: u64,
    body: u64,
}

fn load_of(a: &ProxyBenchArgs, workload: &str) -> Load {
    match workload {
        "reuse" => Load {
            connections: a.reuse_connections,
            streams: 0,
            secs: a.reuse_duration,
            body: a.body,
        },
        "bulk" => Load {
            connections: a.bulk_connections,
            streams: 0,
            secs: a.duration,
            body: a.bulk_body,
        },
        "h2" => Load {
            connections: a.h2_clients,
            streams: a.h2_streams,
            secs: a.duration,
            body: a.body,
        },
        _ => Load {
            connections: a.connections,
            streams: 0,
            secs: a.duration,
            body: a.body,
        },
    }
}

/// What the load generator reported, wrk's or h2load's.
#[derive(Debug, Default, PartialEq)]
struct LoadResult {
    requests: u64,
    req_per_s: f64,
    errors: u64,
    non_2xx: u64,
    p50_us: f64,
    p90_us: f64,
    p99_us: f64,
    mean_us: Option<f64>,
    max_us: Option<f64>,
    alpn: Option<String>,
    cipher: Option<String>,
}

/// A time of h2load's table ("101us", "19.47ms", "1.02s") in µs.
fn h2load_time_us(s: &str) -> Option<f64> {
    let (v, scale) = if let Some(v) = s.strip_suffix("us") {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix("ms") {
        (v, 1e3)
    } else {
        (s.strip_suffix('s')?, 1e6)
    };
    Some(v.parse::<f64>().ok()? * scale)
}

/// h2load's "time for request:" line: min, max, mean, sd, +/- sd; the
/// mean and max in µs.
fn parse_h2load_request_time(out: &str) -> Option<(f64, f64)> {
    let line = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("time for request:"))?;
    let f: Vec<&str> = line.split_whitespace().collect();
    Some((h2load_time_us(f.get(2)?)?, h2load_time_us(f.get(1)?)?))
}

/// h2load in the client namespace on the gen core: `--h2-clients` TLS
/// connections (the one suite H2_CIPHER, ALPN h2), `--h2-streams` each,
/// for `secs`, to the gateway's TLS listener under SERVER_NAME; with
/// `log`, every request's time into it. Under `timeout` like wrk.
fn h2load_command(
    a: &ProxyBenchArgs,
    topo: &Topology,
    mode: &str,
    load: &Load,
    secs: u64,
    log: Option<&Path>,
) -> Command {
    let to = tls_target(mode);
    let mut c = harness::pinned(&topo.client_ns(), a.gen_core, "timeout");
    c.args(["-k", "5", &(secs + 60).to_string()])
        .args(["h2load", "-t", "1"])
        .args(["-c", &load.connections.to_string()])
        .args(["-m", &load.streams.to_string()])
        .args(["-D", &secs.to_string()])
        .arg(format!("--tls13-ciphers={H2_CIPHER}"))
        .arg(format!("--connect-to={to}"));
    if let Some(log) = log {
        c.arg(format!("--log-file={}", log.display()));
    }
    c.arg(format!(
        "https://{SERVER_NAME}:{}/bytes/{}",
        to.port(),
        load.body
    ));
    c
}

fn wrk_command(
    a: &ProxyBenchArgs,
    topo: &Topology,
    mode: &str,
    workload: &str,
    load: &Load,
) -> Command {
    let mut wrk = harness::pinned(&topo.client_ns(), a.gen_core, "timeout");
    wrk.args(["-k", "5", &(load.secs + 60).to_string()])
        .args(["wrk", "-t1", "--latency"])
        .args(["-c", &load.connections.to_string()])
        .args(["-d", &format!("{}s", load.secs)])
        .arg(url(mode, workload, load.body));
    wrk
}

/// Runs the load generator (already set up) and parses what it printed;
/// SIGINT/SIGTERM stop it by its PID (see [`interrupt::output`]).
fn run_load(mut c: Command, what: &str, mode: &str) -> Result<LoadResult> {
    let out = interrupt::output(&mut c, what)?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "{what} against {mode} failed ({}):\n{text}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    if what == "wrk" {
        let w = parse_wrk(&text)?;
        return Ok(LoadResult {
            requests: w.requests,
            req_per_s: w.req_per_s,
            errors: w.errors,
            non_2xx: w.non_2xx,
            p50_us: w.p50_us,
            p90_us: w.p90_us,
            p99_us: w.p99_us,
            ..Default::default()
        });
    }
    let h = parse_h2load(&text)?;
    if h.alpn != "h2" || h.cipher != H2_CIPHER {
        bail!(
            "{mode}: h2load negotiated {:?} with {:?}, expected h2 with {H2_CIPHER}",
            h.alpn,
            h.cipher
        );
    }
    let time = parse_h2load_request_time(&text);
    Ok(LoadResult {
        requests: h.succeeded,
        req_per_s: h.req_per_s,
        errors: h.failed,
        non_2xx: h.done.saturating_sub(h.status_2xx),
        mean_us: time.map(|t| t.0),
        max_us: time.map(|t| t.1),
        alpn: Some(h.alpn),
        cipher: Some(h.cipher),
        ..Default::default()
    })
}

fn measure(
    a: &ProxyBenchArgs,
    topo: &Topology,
    server: &ServerProc,
    backend: &[u32],
    workload: &str,
    work: &Path,
) -> Result<ProxyMeasurement> {
    let mode = server.name.as_str();
    let load = load_of(a, workload);
    let h2 = workload == "h2";
    check_path(a, topo, mode, workload, load.body)?;
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

    let (client, what) = if h2 {
        (
            h2load_command(a, topo, mode, &load, load.secs, None),
            "h2load",
        )
    } else {
        (wrk_command(a, topo, mode, workload, &load), "wrk")
    };
    let sampler = EstabSampler::start(
        backend_ns.clone(),
        a.gen_core,
        upstream_port(mode, workload),
        Duration::from_secs(load.secs + 5),
    );
    let backend0 = cpu_secs(backend);
    let window = CpuWindow::start(a.dut_core, a.gen_core, server.pid)?;
    let r = run_load(client, what, mode);
    let cpu = window.finish()?;
    let backend_s = cpu_secs(backend) - backend0;
    let samples = sampler.finish();
    let mut r = r?;
    // Let the closes settle (wrk and h2load close their connections at exit).
    interrupt::sleep(Duration::from_secs(1))?;
    let opened = passive_opens(&backend_ns)?.saturating_sub(opens0);
    let new_tw = |before: &HashSet<(String, String)>, ns: &str| -> Result<u64> {
        Ok(time_wait_pairs(ns, a.gen_core)?.difference(before).count() as u64)
    };
    let tw_client = new_tw(&tw0[0], &client_ns)?;
    let mut tw_gw = new_tw(&tw0[1], &gw_ns)?;
    let tw_backend = new_tw(&tw0[2], &backend_ns)?;

    let n = r.requests as f64;
    let mut m = ProxyMeasurement {
        mode: mode.into(),
        workload: workload.into(),
        connections: load.connections,
        streams: load.streams,
        upstream_protocol: if upstream_h2c(mode, workload) {
            "h2c"
        } else {
            "http/1.1"
        }
        .into(),
        haproxy_server_maxconn: a.haproxy_server_maxconn.filter(|_| mode == "haproxy"),
        duration_s: load.secs,
        body_bytes: load.body,
        requests: r.requests,
        req_per_s: r.req_per_s,
        mbytes_per_s: r.req_per_s * load.body as f64 / 1e6,
        errors: r.errors,
        non_2xx: r.non_2xx,
        latency_mean_us: r.mean_us,
        latency_max_us: r.max_us,
        alpn: r.alpn.take(),
        cipher: r.cipher.take(),
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
    if h2 {
        // The percentiles, from a short run with every request logged,
        // after everything above was counted (it opens connections of its
        // own): the log costs h2load rate, so it is not the measured run.
        let log = work.join("h2load.log");
        let c = h2load_command(a, topo, mode, &load, H2_LOG_SECS, Some(&log));
        run_load(c, "h2load", mode)?;
        let (p50, p90, p99) = log_percentiles(&log)?;
        let _ = fs::remove_file(&log);
        (m.latency_p50_us, m.latency_p90_us, m.latency_p99_us) = (p50, p90, p99);
    } else {
        (m.latency_p50_us, m.latency_p90_us, m.latency_p99_us) = (r.p50_us, r.p90_us, r.p99_us);
    }
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
            bail!("unknown workload {w:?} (keepalive, reuse, bulk, h2)");
        }
    }
    if a.repeat == 0 || a.duration == 0 || a.reuse_duration == 0 {
        bail!("--repeat, --duration and --reuse-duration must be positive");
    }
    if wants_h2(a) {
        if a.h2_clients == 0 || a.h2_streams == 0 {
            bail!("--h2-clients and --h2-streams must be positive");
        }
        harness::require_tool("h2load", "--version")?;
        harness::require_tool("openssl", "version")?;
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

fn wants_h2(a: &ProxyBenchArgs) -> bool {
    a.workloads.iter().any(|w| w == "h2")
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
    // `h2`: the certificate of `run tls` (the clients do not verify it).
    let cert = wants_h2(a).then(|| make_cert(work)).transpose()?;
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
                            interrupt::check()?;
                            let waited = drain_time_wait(
                                &[topo.gw_ns(), topo.backend_ns()],
                                a.gen_core,
                                a.time_wait_below,
                            )
                            .with_context(|| {
                                format!(
                                    "{mode} {workload} rep {rep}: waiting for TIME_WAIT sockets"
                                )
                            })?;
                            if waited > 3.0 {
                                eprintln!("  waited {waited:.0} s for TIME_WAIT sockets to expire");
                            }
                            let quiet = a.quiet_pct >= 100.0
                                || harness::wait_for_quiet(
                                    a.quiet_pct,
                                    Duration::from_secs(a.quiet_wait),
                                )
                                .with_context(|| {
                                    format!("{mode} {workload} rep {rep}: waiting for quiet cores")
                                })?;
                            let load = loadavg_1m();
                            if !quiet {
                                eprintln!(
                                    "warning: cores still more than {}% busy after {} s (load {load:.2}); measuring anyway",
                                    a.quiet_pct, a.quiet_wait
                                );
                            }
                            let server = start_gateway(
                                a,
                                topo,
                                mode,
                                workload,
                                &bin_dir,
                                work,
                                cert.as_ref(),
                            )?;
                            let m = measure(a, topo, &server, &backend_pids, workload, work);
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
                                "  other processes took {:.0}% of the gateway core, {:.0}% of the client's: again",
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
        "{:>7} {:>9}: {:>9.0} req/s {:>8.1} MB/s  cpu {:>6.2} us/req ({:.2} user + {:.2} sys){}  core {:>5.1}% (other {:.0}%) gen core {:>5.1}% (other {:.0}%, backend {:.1} us/req)  p50 {:.0} us p99 {:.0} us  errors {} non-2xx {}  upstream {} estab max {} opened {}  TIME_WAIT client {} gw {} backend {}  load {:.2}{}",
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
        m.upstream_protocol,
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
        "h2" if m.upstream_protocol == "h2c" => format!(
            "TLS h2 → h2c, {} B, -c{} -m{}",
            m.body_bytes, m.connections, m.streams
        ),
        "h2" => format!(
            "TLS h2 → {} (no h2c upstream in nginx), {} B, -c{} -m{}",
            m.upstream_protocol, m.body_bytes, m.connections, m.streams
        ),
        w => w.to_string(),
    }
}

/// The markdown table: one row per gateway and workload, ratios of sluice
/// against HAProxy and nginx in the same run; a note on how `h2` was
/// measured when it ran.
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
            match m.haproxy_server_maxconn {
                Some(n) => format!("{} (server maxconn {n})", m.mode),
                None => m.mode.clone(),
            },
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
    if ms.iter().any(|m| m.workload == "h2") {
        out.push_str(
            "\nh2: h2load (TLS 1.3, ALPN h2, one thread), the gateways speak h2c to the backend \
             (nginx: HTTP/1.1 keep-alive, it has no HTTP/2 upstream); \
             errors are h2load's failed + errored + timed-out requests; p50 / p99 come from a \
             separate 2 s h2load run with --log-file after the measured one \
             (h2load's own mean / max of the measured run are in the JSON).\n",
        );
    }
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
            h2_clients: 64,
            h2_streams: 10,
            body: 64,
            bulk_body: 1 << 20,
            repeat: 1,
            quiet_pct: 100.0,
            quiet_wait: 1,
            max_other_pct: 5.0,
            tries: 1,
            time_wait_below: 1000,
            json_out: None,
            haproxy_server_maxconn: None,
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
        let h = haproxy_conf(
            w,
            &ProxyBenchArgs {
                haproxy_server_maxconn: Some(64),
                ..args()
            },
        );
        assert!(h.contains("server b1 198.18.0.3:8080 maxconn 64\n"), "{h}");
        let b = backend_conf(w);
        assert!(b.contains("worker_processes 2;"), "{b}");
        assert!(
            b.contains("add_header X-Backend nginx-backend always;"),
            "{b}"
        );
        assert!(b.contains("listen 198.18.0.3:8080 reuseport"), "{b}");
        assert!(b.contains("listen 198.18.0.3:8081 http2 reuseport"), "{b}");
        assert_eq!(b.matches("add_header X-Backend").count(), 2, "{b}");
    }

    fn cert() -> Cert {
        Cert {
            cert: "/w/cert.pem".into(),
            key: "/w/key.pem".into(),
            pem: "/w/haproxy.pem".into(),
        }
    }

    #[test]
    fn h2_configs_terminate_tls_and_speak_h2c_upstream() {
        let w = Path::new("/w");
        let h = haproxy_h2_conf(w, &args(), &cert());
        assert!(h.contains("nbthread 1\n    cpu-map 1/1 1\n"), "{h}");
        assert!(
            h.contains("bind 198.18.0.2:9443 ssl crt /w/haproxy.pem alpn h2 ssl-min-ver TLSv1.3\n"),
            "{h}"
        );
        assert!(
            h.contains("http-reuse always\n    server b1 198.18.0.3:8081 proto h2\n"),
            "{h}"
        );
        assert!(h.contains("option forwardfor"), "{h}");
        // nginx: TLS + h2 in front, HTTP/1.1 to the backend's HTTP/1.1 port,
        // one idle upstream connection per stream in flight (64 x 10).
        let n = nginx_h2_conf(w, &args(), &cert());
        assert!(n.contains("worker_cpu_affinity 10;"), "{n}");
        assert!(
            n.contains("listen 198.18.0.2:8443 ssl http2 reuseport backlog=65535;"),
            "{n}"
        );
        assert!(n.contains("ssl_certificate /w/cert.pem;"), "{n}");
        assert!(n.contains("ssl_certificate_key /w/key.pem;"), "{n}");
        assert!(
            n.contains("server 198.18.0.3:8080;\n        keepalive 640;"),
            "{n}"
        );
        assert!(n.contains("proxy_http_version 1.1;"), "{n}");
        assert!(n.contains(r#"proxy_set_header Connection "";"#), "{n}");
        assert_eq!(upstream_port("nginx", "h2"), 8080);
        assert_eq!(upstream_port("haproxy", "h2"), 8081);
        assert_eq!(upstream_port("sluice", "h2"), 8081);
        assert_eq!(upstream_port("sluice", "keepalive"), 8080);
        assert_eq!(gateway_addr("sluice", "h2").to_string(), "198.18.0.100:443");
        assert_eq!(gateway_addr("nginx", "bulk").to_string(), "198.18.0.2:8080");
    }

    #[test]
    fn sluice_h2_listens_with_tls_and_proxies_to_h2c() {
        let topo = Topology::new("slproxy", 1).unwrap();
        let c = sluice_h2_command(&args(), &topo, Path::new("/bin"), &cert());
        let line = crate::exec::CmdLine(&c).to_string();
        assert!(
            line.starts_with("ip netns exec slproxy-gw taskset -c 1 /bin/sluice-dataplane --iface gw0 --queues 0 --cores 1 "),
            "{line}"
        );
        assert!(
            line.ends_with("--h2-idle-timeout-secs 300 --tls-cert /w/cert.pem --tls-key /w/key.pem --tls 198.18.0.100:443 --proxy /=h2c://198.18.0.3:8081"),
            "{line}"
        );
        assert!(!line.contains("--http "), "{line}");
    }

    #[test]
    fn h2load_runs_pinned_in_the_client_namespace() {
        let topo = Topology::new("slproxy", 1).unwrap();
        let load = load_of(&args(), "h2");
        let c = h2load_command(&args(), &topo, "haproxy", &load, 10, None);
        assert_eq!(
            crate::exec::CmdLine(&c).to_string(),
            "ip netns exec slproxy-client taskset -c 0 timeout -k 5 70 h2load -t 1 -c 64 -m 10 -D 10 \
             --tls13-ciphers=TLS_AES_128_GCM_SHA256 --connect-to=198.18.0.2:9443 \
             https://bench.sluice.test:9443/bytes/64"
        );
        let c = h2load_command(&args(), &topo, "sluice", &load, 2, Some(Path::new("/w/l")));
        let line = crate::exec::CmdLine(&c).to_string();
        assert!(
            line.contains(
                "--connect-to=198.18.0.100:443 --log-file=/w/l https://bench.sluice.test:443/"
            ),
            "{line}"
        );
        assert_eq!(url("nginx", "h2", 64), "https://198.18.0.2:8443/bytes/64");
        assert_eq!(url("nginx", "reuse", 64), "http://198.18.0.2:8080/bytes/64");
    }

    #[test]
    fn h2load_request_times_parse() {
        let out = "finished in 5.00s, 271234.40 req/s, 8.53MB/s\n\
                                        min         max         mean         sd        +/- sd\n\
                   time for request:      101us     19.47ms      1.52ms      1.07ms    79.47%\n\
                   time for connect:     2.1ms      3.3ms      2.7ms       0.2ms    60.00%\n";
        let (mean, max) = parse_h2load_request_time(out).unwrap();
        assert!((mean - 1520.0).abs() < 1e-6, "{mean}");
        assert!((max - 19470.0).abs() < 1e-6, "{max}");
        assert_eq!(h2load_time_us("1.5s"), Some(1.5e6));
        assert_eq!(h2load_time_us("7us"), Some(7.0));
        assert_eq!(h2load_time_us("x"), None);
        assert_eq!(parse_h2load_request_time("nothing"), None);
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
    fn table_has_ratios_on_sluice_rows_and_h2_rows() {
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
        assert!(!md.contains("not yet"), "{md}");
        assert!(!md.contains("\nh2: "), "{md}");
        assert!(
            md.contains("| keep-alive, 64 B, -c64 | haproxy | 100 |"),
            "{md}"
        );
        let h2 = |mode: &str, proto: &str, rps: f64, cpu: f64| ProxyMeasurement {
            workload: "h2".into(),
            streams: 10,
            upstream_protocol: proto.into(),
            ..row(mode, rps, cpu)
        };
        let md = markdown(&[
            h2("haproxy", "h2c", 100.0, 4.0),
            h2("nginx", "http/1.1", 50.0, 8.0),
            h2("sluice", "h2c", 300.0, 2.0),
        ]);
        assert!(
            md.contains("| TLS h2 → h2c, 64 B, -c64 -m10 | haproxy | 100 |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| TLS h2 → http/1.1 (no h2c upstream in nginx), 64 B, -c64 -m10 | nginx | 50 |"
            ),
            "{md}"
        );
        assert!(md.contains("| 3.00x | 6.00x | 0.50x | 0.25x |"), "{md}");
        assert!(md.contains("\nh2: h2load"), "{md}");
    }
}
