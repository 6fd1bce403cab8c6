//! `sluice-bench run http`: sluice's HTTP/1.1 server on its userspace TCP
//! stack against nginx on the kernel's TCP, side by side in one run, on the
//! direct veth pair, the server pinned to the same core in both modes, wrk
//! pinned to the other.
//!
//! Workloads:
//! - `keepalive`: wrk with persistent connections, a small response;
//! - `churn`: one request per connection (`Connection: close`): the cost of
//!   the handshake, the teardown and the connection table;
//! - `idle`: memory per idle connection: N connections opened from the
//!   generator namespace and held without a request; the server's resident
//!   memory and the kernel's slab are read before and after. The clients'
//!   kernel sockets are in the slab in both modes, so the difference between
//!   the modes is the server side.
//! - `bulk`: one large download through curl at each `--loss` rate, the
//!   loss made by the chaos XDP program on the generator's interface (it
//!   drops the server's segments): loss recovery, the server's TCP against
//!   the kernel's.
//!
//! CPU is read as in `run echo` (see [`crate::cpu`]): the server core's
//! user/system/softirq time, and the server process's own user/system time.

use std::fs;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Serialize;

use crate::cpu::{self, CoreTime};
use crate::harness::{self, median_by, raise_nofile, us_per, CpuWindow, ServerProc, WorkDir};
use crate::interrupt;
use crate::netns;
use crate::topology::{addr, ifname, Topology};

/// sluice listens on the VIP, nginx on the namespace's kernel address.
const SLUICE_PORT: u16 = 80;
const NGINX_PORT: u16 = 8080;

#[derive(Args, Debug, Clone)]
pub struct HttpBenchArgs {
    /// Topology prefix (brought up with one queue per veth if missing, and
    /// torn down at the end).
    #[arg(long, default_value = "slbench")]
    pub prefix: String,
    /// Core of the server (sluice's loop, nginx's worker).
    #[arg(long, default_value_t = 1)]
    pub dut_core: usize,
    /// Core of wrk.
    #[arg(long, default_value_t = 0)]
    pub gen_core: usize,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Concurrent connections wrk keeps open.
    #[arg(long, default_value_t = 32)]
    pub connections: u32,
    /// Response body size: the path is /bytes/N on both servers.
    #[arg(long, default_value_t = 64)]
    pub body: u64,
    /// Workloads: keepalive, churn, idle, bulk.
    #[arg(long, value_delimiter = ',', default_value = "keepalive,churn,idle")]
    pub workloads: Vec<String>,
    /// `bulk`: megabytes (10^6 bytes) per download.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub bulk_mb: u64,
    /// `bulk`: percentages of the server's packets dropped on their way to
    /// the client, one download each.
    #[arg(long, value_delimiter = ',', default_value = "0,1,5")]
    pub loss: Vec<f64>,
    /// Servers to compare: nginx (kernel TCP), sluice.
    #[arg(long, value_delimiter = ',', default_value = "nginx,sluice")]
    pub modes: Vec<String>,
    /// Idle connections opened by the `idle` workload.
    #[arg(long, default_value_t = 5000)]
    pub idle_connections: u32,
    /// Repetitions of every measurement (the median by req/s is reported).
    #[arg(long, default_value_t = 3)]
    pub repeat: u32,
    /// Write every measurement as JSON here.
    #[arg(long)]
    pub json_out: Option<PathBuf>,
}

/// One measurement.
#[derive(Clone, Debug, Default, Serialize)]
pub struct HttpMeasurement {
    pub mode: String,
    pub workload: String,
    pub requests: u64,
    pub req_per_s: f64,
    pub errors: u64,
    pub non_2xx: u64,
    pub latency_p50_us: f64,
    pub latency_p90_us: f64,
    pub latency_p99_us: f64,
    /// Busy time of the server's core per request (user + system + softirq).
    pub dut_core_us_per_req: f64,
    pub dut_core_pct: f64,
    /// The server process's own CPU time per request, split.
    pub proc_user_us_per_req: f64,
    pub proc_sys_us_per_req: f64,
    /// Busy time of both cores minus wrk's user time, per request.
    pub path_us_per_req: f64,
    pub dut_core: CoreTime,
    pub gen_core: CoreTime,
    /// `idle` only: connections held, and bytes per connection.
    pub idle_connections: u32,
    pub rss_bytes_per_conn: f64,
    pub slab_bytes_per_conn: f64,
    /// `bulk` only: the loss applied, the download's wall time and rate,
    /// and the packets the chaos program dropped.
    pub loss_percent: f64,
    pub bulk_seconds: f64,
    pub bulk_mbytes_per_s: f64,
    pub chaos_dropped: u64,
}

/// Latency percentiles and totals from wrk's `--latency` output.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WrkResult {
    pub requests: u64,
    pub req_per_s: f64,
    pub errors: u64,
    pub non_2xx: u64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
}

fn duration_us(s: &str) -> Option<f64> {
    let (num, mult) = if let Some(n) = s.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1e6)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60e6)
    } else {
        return None;
    };
    Some(num.parse::<f64>().ok()? * mult)
}

/// Parse wrk 4's human output (with --latency).
pub fn parse_wrk(out: &str) -> Result<WrkResult> {
    let mut r = WrkResult::default();
    for line in out.lines().map(str::trim) {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            ["50%", v] => r.p50_us = duration_us(v).unwrap_or(0.0),
            ["90%", v] => r.p90_us = duration_us(v).unwrap_or(0.0),
            ["99%", v] => r.p99_us = duration_us(v).unwrap_or(0.0),
            ["Requests/sec:", v] => r.req_per_s = v.parse().unwrap_or(0.0),
            [n, "requests", "in", ..] => r.requests = n.parse().unwrap_or(0),
            ["Socket", "errors:", rest @ ..] => {
                r.errors = rest
                    .iter()
                    .filter_map(|x| x.trim_end_matches(',').parse::<u64>().ok())
                    .sum();
            }
            ["Non-2xx", "or", "3xx", "responses:", n] => r.non_2xx = n.parse().unwrap_or(0),
            _ => {}
        }
    }
    if r.requests == 0 && r.req_per_s == 0.0 {
        bail!("wrk reported no requests:\n{out}");
    }
    Ok(r)
}

fn nginx_conf(root: &Path, a: &HttpBenchArgs) -> String {
    // One worker on the DUT core, no logs, files cached: nginx at its best
    // for a small static response.
    let server = format!(
        r#"    server {{
        listen {ip}:{port} reuseport backlog=65535;
        root {root}/www;
        location = /health {{ return 200 "ok\n"; }}
    }}
"#,
        root = root.display(),
        ip = addr::RDUT_V4,
        port = NGINX_PORT,
    );
    harness::nginx_conf(root, a.dut_core, &server)
}

struct Server {
    proc: ServerProc,
    mode: String,
    pid: u32,
}

impl Server {
    fn start(
        a: &HttpBenchArgs,
        topo: &Topology,
        mode: &str,
        bin_dir: &Path,
        work: &Path,
    ) -> Result<Self> {
        let ns = topo.rdut_ns();
        let cmd = match mode {
            "nginx" => {
                let conf = work.join("nginx.conf");
                fs::write(&conf, nginx_conf(work, a))?;
                let mut c = harness::pinned(&ns, a.dut_core, "nginx");
                c.arg("-c").arg(&conf).arg("-e").arg(work.join("error.log"));
                c
            }
            "sluice" => {
                let mut c = harness::sluice_command(topo, bin_dir, a.dut_core);
                c.args(["--stats-interval", "0", "--stats-format", "json"])
                    .arg("--http")
                    .arg(target_addr(mode).to_string());
                c
            }
            other => bail!("unknown mode {other:?} (nginx, sluice)"),
        };
        let proc = ServerProc::start(cmd, mode, work, &topo.rgen_ns(), target_addr(mode))?;
        Ok(Self {
            pid: proc.pid,
            proc,
            mode: mode.to_string(),
        })
    }

    fn stop(self) -> Result<()> {
        self.proc.stop().map(drop)
    }
}

fn target_url(mode: &str, body: u64) -> String {
    match mode {
        "sluice" => format!("http://{}:{SLUICE_PORT}/bytes/{body}", addr::RDUT_VIP_V4),
        _ => format!("http://{}:{NGINX_PORT}/bytes/{body}", addr::RDUT_V4),
    }
}

fn target_addr(mode: &str) -> SocketAddr {
    match mode {
        "sluice" => SocketAddr::new(IpAddr::V4(addr::RDUT_VIP_V4), SLUICE_PORT),
        _ => SocketAddr::new(IpAddr::V4(addr::RDUT_V4), NGINX_PORT),
    }
}

fn measure_wrk(
    a: &HttpBenchArgs,
    topo: &Topology,
    server: &Server,
    workload: &str,
) -> Result<HttpMeasurement> {
    let url = target_url(&server.mode, a.body);
    let mut wrk = netns::command(&topo.rgen_ns(), "taskset");
    wrk.args(["-c", &a.gen_core.to_string(), "wrk", "-t1", "--latency"])
        .args(["-c", &a.connections.to_string()])
        .args(["-d", &format!("{}s", a.duration.max(1.0).round() as u64)]);
    if workload == "churn" {
        wrk.args(["-H", "Connection: close"]);
    }
    wrk.arg(&url);
    let window = CpuWindow::start(a.dut_core, a.gen_core, server.pid)?;
    let out = interrupt::output(&mut wrk, "wrk")?;
    let cpu = window.finish()?;
    if !out.status.success() {
        bail!("wrk failed:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    let w = parse_wrk(&String::from_utf8_lossy(&out.stdout))?;
    let per_req = |secs: f64| us_per(secs, w.requests as f64);
    Ok(HttpMeasurement {
        mode: server.mode.clone(),
        workload: workload.to_string(),
        requests: w.requests,
        req_per_s: w.req_per_s,
        errors: w.errors,
        non_2xx: w.non_2xx,
        latency_p50_us: w.p50_us,
        latency_p90_us: w.p90_us,
        latency_p99_us: w.p99_us,
        dut_core_us_per_req: per_req(cpu.dut_core_secs()),
        dut_core_pct: cpu.dut_core_pct(),
        proc_user_us_per_req: per_req(cpu.proc_user_s),
        proc_sys_us_per_req: per_req(cpu.proc_sys_s),
        path_us_per_req: per_req(cpu.path_secs()),
        dut_core: cpu.dut_core,
        gen_core: cpu.gen_core,
        ..Default::default()
    })
}

/// One download of `--bulk-mb` through curl (pinned to the generator core)
/// with `loss` percent of the server's packets dropped by the chaos XDP
/// program on the generator's interface.
fn measure_bulk(
    a: &HttpBenchArgs,
    topo: &Topology,
    server: &Server,
    loss: f64,
) -> Result<HttpMeasurement> {
    use sluice_bpf::{ppm_from_percent, Chaos, ChaosConfig, ChaosCounter, ChaosOptions, XdpMode};
    let bytes = a.bulk_mb * 1_000_000;
    let chaos = if loss > 0.0 {
        let cfg = ChaosConfig {
            drop_ppm: ppm_from_percent(loss)?,
            port: Some(target_addr(&server.mode).port()),
            ..ChaosConfig::default()
        };
        let opts = ChaosOptions {
            mode: XdpMode::Native,
            dup_hook: false,
            netns: Some(topo.rgen_ns()),
        };
        Some(Chaos::attach_with(ifname::RGEN, &cfg, &opts).context("attaching chaos to rgen0")?)
    } else {
        None
    };
    let url = target_url(&server.mode, bytes);
    let mut curl = netns::command(&topo.rgen_ns(), "taskset");
    curl.args(["-c", &a.gen_core.to_string(), "curl", "-sS", "--fail"])
        .args([
            "--max-time",
            "600",
            "-o",
            "/dev/null",
            "-w",
            "%{size_download}",
        ])
        .arg(&url);
    let window = CpuWindow::start(a.dut_core, a.gen_core, server.pid)?;
    let started = Instant::now();
    let out = interrupt::output(&mut curl, "curl")?;
    let secs = started.elapsed().as_secs_f64();
    let cpu = window.finish()?;
    let dropped = match &chaos {
        Some(c) => c.counters()?.packets(ChaosCounter::Dropped),
        None => 0,
    };
    drop(chaos);
    if !out.status.success() {
        bail!(
            "curl {url} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let got: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    if got != bytes {
        bail!("curl {url}: {got} bytes, expected {bytes}");
    }
    Ok(HttpMeasurement {
        mode: server.mode.clone(),
        workload: format!("bulk {loss}%"),
        requests: 1,
        req_per_s: 1.0 / secs,
        dut_core_us_per_req: cpu.dut_core_secs() * 1e6,
        dut_core_pct: cpu.dut_core_pct(),
        proc_user_us_per_req: cpu.proc_user_s * 1e6,
        proc_sys_us_per_req: cpu.proc_sys_s * 1e6,
        dut_core: cpu.dut_core,
        gen_core: cpu.gen_core,
        loss_percent: loss,
        bulk_seconds: secs,
        bulk_mbytes_per_s: bytes as f64 / 1e6 / secs,
        chaos_dropped: dropped,
        ..Default::default()
    })
}

/// Open `n` connections from the generator namespace and hold them while
/// the server's RSS and the kernel's slab are read.
fn measure_idle(a: &HttpBenchArgs, topo: &Topology, server: &Server) -> Result<HttpMeasurement> {
    let n = a.idle_connections;
    raise_nofile(u64::from(n) + 1024)?;
    let settle = || interrupt::sleep(Duration::from_millis(500));
    settle()?;
    let rss0 = cpu::process_rss(server.pid)?;
    let slab0 = cpu::slab_bytes()?;
    let target = target_addr(&server.mode);
    let conns = netns::run_in(&topo.rgen_ns(), || -> Result<Vec<TcpStream>> {
        let mut v = Vec::with_capacity(n as usize);
        for i in 0..n {
            interrupt::check()?;
            let s = TcpStream::connect_timeout(&target, Duration::from_secs(3))
                .with_context(|| format!("idle connection {i} of {n} to {target}"))?;
            v.push(s);
        }
        Ok(v)
    })??;
    settle()?;
    let rss1 = cpu::process_rss(server.pid)?;
    let slab1 = cpu::slab_bytes()?;
    // Every connection must still be open: a server that dropped them
    // would look cheap.
    let mut buf = [0u8; 1];
    let mut closed = 0;
    for c in &conns {
        c.set_nonblocking(true)?;
        if let Ok(0) = std::io::Read::read(&mut &*c, &mut buf) {
            closed += 1;
        }
    }
    drop(conns);
    if closed > 0 {
        bail!(
            "{}: {closed} of {n} idle connections were closed by the server",
            server.mode
        );
    }
    Ok(HttpMeasurement {
        mode: server.mode.clone(),
        workload: "idle".into(),
        idle_connections: n,
        rss_bytes_per_conn: (rss1 as f64 - rss0 as f64) / f64::from(n),
        slab_bytes_per_conn: (slab1 as f64 - slab0 as f64) / f64::from(n),
        ..Default::default()
    })
}

pub fn run(a: &HttpBenchArgs) -> Result<Vec<HttpMeasurement>> {
    harness::check_cores(a.dut_core, a.gen_core)?;
    for w in &a.workloads {
        if !["keepalive", "churn", "idle", "bulk"].contains(&w.as_str()) {
            bail!("unknown workload {w:?} (keepalive, churn, idle, bulk)");
        }
    }
    for &l in &a.loss {
        sluice_bpf::ppm_from_percent(l).context("--loss")?;
    }
    let bulk = a.workloads.iter().any(|w| w == "bulk");
    if bulk && Command::new("curl").arg("--version").output().is_err() {
        bail!("curl is missing: scripts/install-deps.sh installs it");
    }
    if Command::new("wrk").arg("--version").output().is_err() {
        bail!("wrk is missing: scripts/install-deps.sh installs it");
    }
    let bin_dir = harness::bin_dir()?;
    if a.modes.iter().any(|m| m == "sluice") {
        harness::require_bin(&bin_dir, "sluice-dataplane")?;
    }
    // Static files for nginx: the same bytes sluice's /bytes/N generates.
    let work_dir = WorkDir::new("http-bench")?;
    let work = work_dir.path();
    fs::create_dir_all(work.join("www/bytes"))?;
    harness::write_pattern(&work.join(format!("www/bytes/{}", a.body)), a.body)?;
    if bulk {
        let n = a.bulk_mb * 1_000_000;
        harness::write_pattern(&work.join(format!("www/bytes/{n}")), n)?;
    }

    let all = harness::with_direct_pair(&a.prefix, |topo| {
        let mut all = Vec::new();
        // `bulk` runs once per loss rate.
        let runs: Vec<(&str, f64)> = a
            .workloads
            .iter()
            .flat_map(|w| {
                if w == "bulk" {
                    a.loss.iter().map(|&l| ("bulk", l)).collect()
                } else {
                    vec![(w.as_str(), 0.0)]
                }
            })
            .collect();
        for (workload, loss) in runs {
            for mode in &a.modes {
                let mut reps = Vec::new();
                for _ in 0..a.repeat.max(1) {
                    interrupt::check()?;
                    let server = Server::start(a, topo, mode, &bin_dir, work)?;
                    let m = match workload {
                        "idle" => measure_idle(a, topo, &server),
                        "bulk" => measure_bulk(a, topo, &server, loss),
                        _ => measure_wrk(a, topo, &server, workload),
                    };
                    let stopped = server.stop();
                    let m = m.with_context(|| format!("{mode} {workload}"))?;
                    stopped?;
                    reps.push(m);
                }
                let m = median_by(&mut reps, |m| m.req_per_s + m.rss_bytes_per_conn);
                if workload == "bulk" {
                    eprintln!(
                        "{mode:>6} bulk {loss:>4}%: {:>7.2} s  {:>8.1} MB/s  core {:>5.1}%  chaos dropped {}",
                        m.bulk_seconds, m.bulk_mbytes_per_s, m.dut_core_pct, m.chaos_dropped
                    );
                    all.push(m);
                    continue;
                }
                eprintln!(
                    "{mode:>6} {workload:>9}: {:>9.0} req/s  core {:>5.1}%  {:>6.1} us/req on the server core  p99 {:>8.1} us  idle {:>7.0} B/conn rss + {:>6.0} B/conn slab",
                    m.req_per_s, m.dut_core_pct, m.dut_core_us_per_req, m.latency_p99_us,
                    m.rss_bytes_per_conn, m.slab_bytes_per_conn
                );
                all.push(m);
            }
        }
        Ok::<_, anyhow::Error>(all)
    })?;
    if let Some(p) = &a.json_out {
        fs::write(p, serde_json::to_string_pretty(&all)?)?;
    }
    Ok(all)
}

/// Markdown tables: throughput workloads, then idle memory; ratios against
/// nginx in the same run.
pub fn markdown(ms: &[HttpMeasurement]) -> String {
    let base = |m: &HttpMeasurement| {
        ms.iter()
            .find(|b| b.mode == "nginx" && b.workload == m.workload)
    };
    let ratio = |m: &HttpMeasurement, f: fn(&HttpMeasurement) -> f64| match base(m) {
        Some(b) if f(b) != 0.0 => format!("{:.2}x", f(m) / f(b)),
        _ => "-".into(),
    };
    let mut out = String::from(
        "| workload | server | req/s | errors | server core % | server-core us/req | process user us/req | process sys us/req | path us/req | p50 us | p90 us | p99 us | req/s vs nginx | core us/req vs nginx |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for m in ms
        .iter()
        .filter(|m| m.workload != "idle" && !m.workload.starts_with("bulk"))
    {
        out.push_str(&format!(
            "| {} | {} | {:.0} | {} | {:.1} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} | {:.0} | {:.0} | {} | {} |\n",
            m.workload,
            m.mode,
            m.req_per_s,
            m.errors + m.non_2xx,
            m.dut_core_pct,
            m.dut_core_us_per_req,
            m.proc_user_us_per_req,
            m.proc_sys_us_per_req,
            m.path_us_per_req,
            m.latency_p50_us,
            m.latency_p90_us,
            m.latency_p99_us,
            ratio(m, |x| x.req_per_s),
            ratio(m, |x| x.dut_core_us_per_req),
        ));
    }
    let bulk: Vec<_> = ms
        .iter()
        .filter(|m| m.workload.starts_with("bulk"))
        .collect();
    if !bulk.is_empty() {
        out.push_str(
            "\n| download | loss | server | seconds | MB/s | chaos dropped | server core % | server-core s | MB/s vs nginx |\n|---|---|---|---|---|---|---|---|---|\n",
        );
        for m in bulk {
            out.push_str(&format!(
                "| {:.0} MB | {}% | {} | {:.2} | {:.1} | {} | {:.1} | {:.2} | {} |\n",
                m.bulk_mbytes_per_s * m.bulk_seconds,
                m.loss_percent,
                m.mode,
                m.bulk_seconds,
                m.bulk_mbytes_per_s,
                m.chaos_dropped,
                m.dut_core_pct,
                m.dut_core_us_per_req / 1e6,
                ratio(m, |x| x.bulk_mbytes_per_s),
            ));
        }
    }
    let idle: Vec<_> = ms.iter().filter(|m| m.workload == "idle").collect();
    if !idle.is_empty() {
        out.push_str(
            "\n| idle connections | server | server RSS B/conn | kernel slab B/conn (clients' sockets included) | total B/conn |\n|---|---|---|---|---|\n",
        );
        for m in idle {
            out.push_str(&format!(
                "| {} | {} | {:.0} | {:.0} | {:.0} |\n",
                m.idle_connections,
                m.mode,
                m.rss_bytes_per_conn,
                m.slab_bytes_per_conn,
                m.rss_bytes_per_conn + m.slab_bytes_per_conn
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRK: &str = "Running 5s test @ http://198.19.0.2:8080/bytes/64
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   512.00us  100.00us   5.00ms   90.00%
    Req/Sec    60.00k     1.00k   62.00k    80.00%
  Latency Distribution
     50%  500.00us
     75%  600.00us
     90%    1.20ms
     99%    2.50ms
  300000 requests in 5.00s, 60.00MB read
  Socket errors: connect 1, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 4
Requests/sec:  60000.50
Transfer/sec:     12.00MB
";

    #[test]
    fn bulk_rows_get_their_own_table_with_ratios_per_loss_rate() {
        let row = |mode: &str, loss: f64, mbps: f64| HttpMeasurement {
            mode: mode.into(),
            workload: format!("bulk {loss}%"),
            loss_percent: loss,
            bulk_seconds: 100.0 / mbps,
            bulk_mbytes_per_s: mbps,
            ..Default::default()
        };
        let md = markdown(&[
            row("nginx", 1.0, 400.0),
            row("sluice", 1.0, 200.0),
            row("nginx", 5.0, 100.0),
            row("sluice", 5.0, 100.0),
        ]);
        assert!(
            md.contains("| 100 MB | 1% | sluice | 0.50 | 200.0 |"),
            "{md}"
        );
        assert!(md.contains("| 0.50x |"), "{md}");
        assert!(md.contains("| 5% | sluice | 1.00 | 100.0 |"), "{md}");
        // Not in the request table.
        assert!(!md.contains("| bulk"), "{md}");
    }

    #[test]
    fn wrk_output_parses() {
        let r = parse_wrk(WRK).unwrap();
        assert_eq!(
            r,
            WrkResult {
                requests: 300000,
                req_per_s: 60000.5,
                errors: 6,
                non_2xx: 4,
                p50_us: 500.0,
                p90_us: 1200.0,
                p99_us: 2500.0,
            }
        );
        assert!(parse_wrk("connection refused").is_err());
    }

    #[test]
    fn nginx_config_pins_the_worker() {
        let a = HttpBenchArgs {
            prefix: "x".into(),
            dut_core: 1,
            gen_core: 0,
            duration: 1.0,
            connections: 1,
            body: 64,
            workloads: vec![],
            bulk_mb: 1,
            loss: vec![],
            modes: vec![],
            idle_connections: 1,
            repeat: 1,
            json_out: None,
        };
        let conf = nginx_conf(Path::new("/tmp/w"), &a);
        assert!(conf.contains("worker_cpu_affinity 10;"), "{conf}");
        assert!(conf.contains("listen 198.19.0.2:8080"));
    }
}
