//! `sluice-bench run echo`: sluice's AF_XDP echo, the kernel-socket echo and
//! the XDP_TX ceiling, side by side in one run, on the direct veth pair, with
//! the device under test pinned to the same core in every mode.
//!
//! What is measured and why. On veth the receive path of a frame (XDP, the
//! AF_XDP copy, or the kernel's IP/UDP input) runs in softirq on the CPU of
//! the *sender*. So the generator's core pays for the DUT's receive path,
//! and the DUT's core pays for the generator's receive path of the echo.
//! Process CPU time alone would flatter whichever side hides work in
//! softirq; this benchmark therefore reads every core's user, system and
//! softirq time from /proc/stat around each run and reports:
//!
//! - `dut_core_pct` and `dut_ns_per_pkt`: busy time of the DUT's core;
//! - `path_ns_per_pkt`: busy time of *both* cores, minus the generator's own
//!   user-space time, per echoed packet: the cost of the whole echo path
//!   (both directions, kernel and user space) on this machine;
//! - throughput (echoes/s), loss and round-trip latency from the generator.
//!
//! Fixed offered rates compare cost at equal load; `max` shows where each
//! mode saturates (on two cores, often the generator's core first).

use std::fs;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use serde::Serialize;
use serde_json::Value;

use crate::cpu::{children_user_secs, read_cores, ticks_per_sec, CoreTime};
use crate::exec::Shell;
use crate::harness::TopologyGuard;
use crate::interrupt;
use crate::netns;
use crate::topology::{addr, ifname, Topology};

const PORT: u16 = 7;

#[derive(Args, Debug, Clone)]
pub struct EchoBenchArgs {
    /// Topology prefix (brought up with one queue per veth if missing, and
    /// then torn down at the end). One queue: a kernel socket's replies
    /// leave through a hashed TX queue, and every mode must use one path.
    #[arg(long, default_value = "slbench")]
    pub prefix: String,
    /// Core of the device under test (sluice's loop, kernel-echo).
    #[arg(long, default_value_t = 1)]
    pub dut_core: usize,
    /// Core of the generator.
    #[arg(long, default_value_t = 0)]
    pub gen_core: usize,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Frame sizes (bytes without FCS), one measurement each.
    #[arg(long, value_delimiter = ',', default_value = "60,1514")]
    pub sizes: Vec<u32>,
    /// Offered rates in packets/s, or "max".
    #[arg(long, value_delimiter = ',', default_value = "100000,max")]
    pub rates: Vec<String>,
    /// Modes to compare: kernel (recvmmsg/sendmmsg), sluice (AF_XDP),
    /// xdp-tx (XDP_TX reflector, the in-kernel ceiling).
    #[arg(long, value_delimiter = ',', default_value = "kernel,sluice,xdp-tx")]
    pub modes: Vec<String>,
    /// Repetitions of every measurement (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub repeat: u32,
    /// Busy-poll in both kernel-echo (--spin) and sluice (--busy-poll).
    #[arg(long)]
    pub spin: bool,
    /// Write every measurement as JSON here.
    #[arg(long)]
    pub json_out: Option<PathBuf>,
}

/// One measurement.
#[derive(Clone, Debug, Serialize)]
pub struct Measurement {
    pub mode: String,
    pub size: u32,
    pub rate: String,
    pub sent: u64,
    pub received: u64,
    pub loss_pct: f64,
    /// Echoes dropped on the generator's side (its socket, or no socket on
    /// the receiving queue): a measurement with any is reported as invalid.
    pub sink_drops: u64,
    pub rx_pps: f64,
    pub latency_p50_us: f64,
    pub latency_p99_us: f64,
    pub dut_core: CoreTime,
    pub gen_core: CoreTime,
    pub dut_core_pct: f64,
    pub dut_ns_per_pkt: f64,
    pub path_ns_per_pkt: f64,
    pub gen_user_s: f64,
    /// The DUT's own report (sluice: user-space busy ns per packet).
    pub dut_report: Value,
}

/// The device under test; stopped by its PID when dropped (an error, SIGINT
/// or SIGTERM): SIGTERM first, so that sluice and the reflector detach
/// their XDP programs.
struct Dut {
    child: Option<Child>,
    mode: String,
}

impl Dut {
    fn start(
        a: &EchoBenchArgs,
        topo: &Topology,
        mode: &str,
        bin_dir: &std::path::Path,
    ) -> Result<Self> {
        let ns = topo.rdut_ns();
        let core = a.dut_core.to_string();
        let mut cmd = match mode {
            "kernel" => {
                let mut c = netns::command(&ns, bin_dir.join("sluice-bench"));
                c.args(["kernel-echo", "--json", "--core", &core, "--listen"])
                    .arg(SocketAddr::new(IpAddr::V4(addr::RDUT_V4), PORT).to_string());
                if a.spin {
                    c.arg("--spin");
                }
                c
            }
            "sluice" => {
                let mut c = netns::command(&ns, bin_dir.join("sluice-dataplane"));
                c.args(["--iface", ifname::RDUT, "--queues", "0", "--cores", &core])
                    .args([
                        "--stats-interval",
                        "0",
                        "--stats-format",
                        "json",
                        "--udp-echo",
                    ])
                    .arg(SocketAddr::new(IpAddr::V4(addr::RDUT_VIP_V4), PORT).to_string())
                    // Under the topology's directory on the shared bpffs,
                    // which `topo down` removes (as harness::sluice_command).
                    .arg("--pin-dir")
                    .arg(format!(
                        "{}/{}/{}",
                        sluice_bpf::system::SHARED_BPFFS,
                        topo.prefix(),
                        ifname::RDUT
                    ));
                if a.spin {
                    c.arg("--busy-poll");
                }
                c
            }
            "xdp-tx" => {
                let mut c = netns::command(&ns, bin_dir.join("sluice-bench"));
                c.args(["reflect", "--json", "--iface", ifname::RDUT, "--addr"])
                    .arg(SocketAddr::new(IpAddr::V4(addr::RDUT_V4), PORT).to_string());
                c
            }
            other => bail!("unknown mode {other:?} (kernel, sluice, xdp-tx)"),
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting the {mode} DUT"))?;
        let mut dut = Self {
            child: Some(child),
            mode: mode.to_string(),
        };
        // Each DUT says on stderr when it is ready; a fixed settle time is
        // simpler than parsing three formats and costs a second per run.
        interrupt::sleep(Duration::from_millis(1200))?;
        let child = dut.child.as_mut().expect("running");
        if let Some(status) = child.try_wait()? {
            let out = dut.child.take().expect("running").wait_with_output()?;
            bail!(
                "the {mode} DUT exited during start-up ({status}):\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(dut)
    }

    fn stop(mut self) -> Result<Value> {
        let pid = self.child.as_ref().expect("running").id();
        // On an error here the child is still ours and Drop stops it.
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        )?;
        let child = self.child.take().expect("running");
        let out = interrupt::wait_output(child, &format!("the {} DUT", self.mode))?;
        if !out.status.success() {
            bail!(
                "the {} DUT failed ({}):\n{}",
                self.mode,
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        Ok(stdout
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str::<Value>(l).ok())
            .unwrap_or(Value::Null))
    }
}

impl Drop for Dut {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pid = c.id();
            if let Ok(None) = c.try_wait() {
                interrupt::stop_child(&mut c, interrupt::GRACE);
                interrupt::note(format!("stopped the {} DUT (pid {pid})", self.mode));
            }
        }
    }
}

fn mac_of(ns: &str, iface: &str) -> Result<String> {
    let out = Command::new("ip")
        .args(["-n", ns, "-j", "link", "show", "dev", iface])
        .output()?;
    let v: Value = serde_json::from_slice(&out.stdout)?;
    v[0]["address"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("no MAC for {ns}/{iface}"))
}

#[allow(clippy::too_many_arguments)]
fn measure(
    a: &EchoBenchArgs,
    topo: &Topology,
    bin_dir: &std::path::Path,
    mode: &str,
    size: u32,
    rate: &str,
    dst_mac: &str,
) -> Result<Measurement> {
    let dut = Dut::start(a, topo, mode, bin_dir)?;
    let dst = match mode {
        "sluice" => SocketAddr::new(IpAddr::V4(addr::RDUT_VIP_V4), PORT),
        _ => SocketAddr::new(IpAddr::V4(addr::RDUT_V4), PORT),
    };
    let rate_arg = if rate == "max" {
        "0".to_string()
    } else {
        rate.to_string()
    };
    let cores0 = read_cores()?;
    let user0 = children_user_secs();
    let started = Instant::now();
    let mut gen = netns::command(&topo.rgen_ns(), bin_dir.join("sluice-bench"));
    gen.args(["gen", "--json", "--progress", "0", "--iface", ifname::RGEN])
        .args(["--dst", &dst.to_string(), "--dst-mac", dst_mac])
        .args(["--queues", "0", "--cores", &a.gen_core.to_string()])
        .args(["--size", &size.to_string(), "--rate", &rate_arg])
        .args(["--duration", &a.duration.to_string(), "--drain", "0.3"]);
    let out = interrupt::output(&mut gen, "the generator")?;
    let elapsed = started.elapsed().as_secs_f64();
    let cores1 = read_cores()?;
    let gen_user = children_user_secs() - user0;
    let dut_report = dut.stop()?;
    if !out.status.success() {
        bail!(
            "generator failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let g: Value = serde_json::from_slice(&out.stdout).context("generator JSON")?;
    let dut_core = cores1[a.dut_core].delta(&cores0[a.dut_core]);
    let gen_core = cores1[a.gen_core].delta(&cores0[a.gen_core]);
    let hz = ticks_per_sec();
    let received = g["received"].as_u64().unwrap_or(0);
    let per_pkt = |secs: f64| {
        if received > 0 {
            secs * 1e9 / received as f64
        } else {
            0.0
        }
    };
    let dut_busy_s = dut_core.busy() as f64 / hz;
    let path_s = (dut_core.busy() + gen_core.busy()) as f64 / hz - gen_user;
    let _ = elapsed;
    Ok(Measurement {
        mode: mode.to_string(),
        size,
        rate: rate.to_string(),
        sent: g["sent"].as_u64().unwrap_or(0),
        received,
        loss_pct: g["loss_pct"].as_f64().unwrap_or(0.0),
        sink_drops: g["sink_kernel_dropped"].as_u64().unwrap_or(0)
            + g["sink_no_socket"].as_u64().unwrap_or(0),
        rx_pps: g["rx_pps"].as_f64().unwrap_or(0.0),
        latency_p50_us: g["latency_us"]["p50"].as_f64().unwrap_or(0.0),
        latency_p99_us: g["latency_us"]["p99"].as_f64().unwrap_or(0.0),
        dut_core_pct: if dut_core.total() > 0 {
            dut_core.busy() as f64 * 100.0 / dut_core.total() as f64
        } else {
            0.0
        },
        dut_ns_per_pkt: per_pkt(dut_busy_s),
        path_ns_per_pkt: per_pkt(path_s.max(0.0)),
        gen_user_s: gen_user,
        dut_core,
        gen_core,
        dut_report,
    })
}

fn median_by<F: Fn(&Measurement) -> f64>(ms: &mut [Measurement], key: F) -> Measurement {
    ms.sort_by(|x, y| key(x).total_cmp(&key(y)));
    ms[ms.len() / 2].clone()
}

pub fn run(a: &EchoBenchArgs) -> Result<Vec<Measurement>> {
    if a.dut_core == a.gen_core {
        bail!("--dut-core and --gen-core must differ: the comparison is about the DUT's core");
    }
    let ncpu = read_cores()?.len();
    if a.dut_core >= ncpu || a.gen_core >= ncpu {
        bail!("this machine has {ncpu} CPUs");
    }
    let bin_dir = std::env::current_exe()?
        .parent()
        .ok_or_else(|| anyhow!("no directory for the current executable"))?
        .to_path_buf();
    for b in ["sluice-dataplane", "sluice-bench"] {
        if !bin_dir.join(b).exists() {
            bail!(
                "{} is missing: cargo build --release --workspace --bins",
                bin_dir.join(b).display()
            );
        }
    }
    // Brought up unless it exists, deleted at the end if it was (an error
    // or SIGINT/SIGTERM included).
    let guard = TopologyGuard::up(&a.prefix, 1)?;
    let topo = guard.topology();
    let rdut_queues = |st: &crate::topology::Status| {
        st.link(crate::topology::Role::Rdut, ifname::RDUT)
            .and_then(|l| l.rx_queues)
    };
    if !guard.owned() && rdut_queues(&topo.status(&Shell::default())?) != Some(1) {
        bail!(
            "topology `{}` exists with more than one queue per veth; the echo benchmark \
             needs one (give another --prefix, or `topo down` it)",
            a.prefix
        );
    }
    let result = (|| {
        let mac = mac_of(&topo.rdut_ns(), ifname::RDUT)?;
        let mut all = Vec::new();
        for &size in &a.sizes {
            for rate in &a.rates {
                for mode in &a.modes {
                    let mut reps = Vec::new();
                    for _ in 0..a.repeat.max(1) {
                        interrupt::check()?;
                        reps.push(
                            measure(a, topo, &bin_dir, mode, size, rate, &mac)
                                .with_context(|| format!("{mode} size {size} rate {rate}"))?,
                        );
                    }
                    let m = median_by(&mut reps, |m| m.rx_pps);
                    eprintln!(
                        "{mode:>7} size {size:>5} rate {rate:>7}: {:>9.0} echoes/s  loss {:>6.2}%  dut core {:>5.1}%  dut {:>7.0} ns/pkt  path {:>7.0} ns/pkt",
                        m.rx_pps, m.loss_pct, m.dut_core_pct, m.dut_ns_per_pkt, m.path_ns_per_pkt
                    );
                    all.push(m);
                }
            }
        }
        Ok::<_, anyhow::Error>(all)
    })();
    drop(guard);
    let all = result?;
    if let Some(p) = &a.json_out {
        fs::write(p, serde_json::to_string_pretty(&all)?)?;
    }
    Ok(all)
}

/// A markdown table: one block per (size, rate), one row per mode, ratios
/// against the kernel-socket echo of the same block.
pub fn markdown(ms: &[Measurement]) -> String {
    let mut out = String::from(
        "| size B | offered | mode | echoes/s | loss % | gen-side drops | DUT core % | DUT ns/pkt | path ns/pkt | p50 us | p99 us | echoes/s vs kernel | path cost vs kernel |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for m in ms {
        let base = ms
            .iter()
            .find(|b| b.mode == "kernel" && b.size == m.size && b.rate == m.rate);
        let ratio = |f: fn(&Measurement) -> f64| match base {
            Some(b) if f(b) > 0.0 => format!("{:.2}x", f(m) / f(b)),
            _ => "-".into(),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {:.0} | {:.2} | {} | {:.1} | {:.0} | {:.0} | {:.1} | {:.1} | {} | {} |\n",
            m.size,
            m.rate,
            m.mode,
            m.rx_pps,
            m.loss_pct,
            m.sink_drops,
            m.dut_core_pct,
            m.dut_ns_per_pkt,
            m.path_ns_per_pkt,
            m.latency_p50_us,
            m.latency_p99_us,
            ratio(|x| x.rx_pps),
            ratio(|x| x.path_ns_per_pkt),
        ));
    }
    out
}
