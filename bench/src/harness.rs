//! What `run http` and `run tls` share: the direct veth pair brought up
//! and torn down around a run, servers started pinned in the DUT namespace
//! and stopped by PID, nginx's common configuration, the sluice-dataplane
//! command line, CPU windows around a load, and small helpers (the body
//! pattern, medians, the file-descriptor limit).

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;

use crate::cpu::{self, read_cores, ticks_per_sec, CoreTime};
use crate::exec::Shell;
use crate::interrupt;
use crate::netns;
use crate::topology::{ifname, Topology};

/// Checks that the two cores differ and exist.
pub fn check_cores(dut_core: usize, gen_core: usize) -> Result<()> {
    if dut_core == gen_core {
        bail!("--dut-core and --gen-core must differ");
    }
    let ncpu = read_cores()?.len();
    if dut_core >= ncpu || gen_core >= ncpu {
        bail!("this machine has {ncpu} CPUs");
    }
    Ok(())
}

/// The directory of the running sluice-bench: sluice-dataplane is looked
/// up next to it (`cargo build --release --workspace --bins` puts both in
/// the same target directory).
pub fn bin_dir() -> Result<PathBuf> {
    Ok(std::env::current_exe()?
        .parent()
        .ok_or_else(|| anyhow!("no directory for the current executable"))?
        .to_path_buf())
}

/// Fails unless `bin_dir/name` exists.
pub fn require_bin(bin_dir: &Path, name: &str) -> Result<()> {
    if !bin_dir.join(name).exists() {
        bail!(
            "{} is missing: cargo build --release --workspace --bins",
            bin_dir.join(name).display()
        );
    }
    Ok(())
}

/// Fails unless `program` can be started.
pub fn require_tool(program: &str, version_arg: &str) -> Result<()> {
    Shell::default()
        .require_tool(program, version_arg)
        .map_err(Into::into)
}

/// Runs `f` on the direct pair of topology `prefix`, one queue per veth:
/// brought up first if it does not exist and torn down afterwards (also
/// when `f` fails, is interrupted or panics, and when bringing it up fails
/// half-way); left as it was if it existed.
pub fn with_direct_pair<T>(prefix: &str, f: impl FnOnce(&Topology) -> Result<T>) -> Result<T> {
    let guard = TopologyGuard::up(prefix, 1)?;
    f(guard.topology())
}

/// A topology brought up for a run and torn down when dropped (an error
/// and a panic included) if this guard brought it up; left as it was if
/// it existed.
pub struct TopologyGuard {
    topo: Topology,
    owned: bool,
}

impl TopologyGuard {
    /// Brings up topology `prefix` with `queues` queues per veth unless
    /// all of its namespaces exist.
    pub fn up(prefix: &str, queues: u32) -> Result<Self> {
        let topo = Topology::new(prefix, queues)?;
        let existed = topo.existing_namespaces()?.len() == topo.namespaces().len();
        if !existed {
            // A guard first: a half-made topology is removed too.
            let guard = Self { topo, owned: true };
            guard.topo.up(&Shell::default())?;
            return Ok(guard);
        }
        Ok(Self { topo, owned: false })
    }

    pub fn topology(&self) -> &Topology {
        &self.topo
    }

    /// Whether this guard brought the topology up (and deletes it).
    pub fn owned(&self) -> bool {
        self.owned
    }
}

impl Drop for TopologyGuard {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        let prefix = self.topo.prefix();
        match self.topo.down(&Shell::default()) {
            Ok(report) if report.busy.is_empty() => {
                interrupt::note(format!("deleted topology `{prefix}`"));
            }
            Ok(report) => interrupt::cleanup_failed(format!(
                "topo down {prefix}: processes were still inside: {}",
                report
                    .busy
                    .iter()
                    .map(|(ns, pids)| format!("{ns} {pids:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Err(e) => interrupt::cleanup_failed(format!("topo down {prefix}: {e:#}")),
        }
    }
}

/// Runs `f` on the whole topology `prefix` (client, gateway, backend and
/// the direct pair), one queue per veth, inside a [`TopologyGuard`].
pub fn with_topology<T>(prefix: &str, f: impl FnOnce(&Topology) -> Result<T>) -> Result<T> {
    let guard = TopologyGuard::up(prefix, 1)?;
    f(guard.topology())
}

/// `ip netns exec NS taskset -c CORE PROGRAM`: ip and taskset exec the
/// program, so the child's PID is the program's.
pub fn pinned(ns: &str, core: usize, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = netns::command(ns, "taskset");
    c.args(["-c", &core.to_string()]).arg(program);
    c
}

/// sluice-dataplane on `rdut0`, queue 0, its loop on `core` (and under
/// taskset, so its other threads stay on that core too, as the other
/// servers' do), with the pins in the shared bpffs; the caller adds
/// services and flags.
pub fn sluice_command(topo: &Topology, bin_dir: &Path, core: usize) -> Command {
    let ns = topo.rdut_ns();
    let mut c = pinned(&ns, core, bin_dir.join("sluice-dataplane"));
    c.args([
        "--iface",
        ifname::RDUT,
        "--queues",
        "0",
        "--cores",
        &core.to_string(),
    ])
    // Under the topology's directory on the shared bpffs, which `topo down`
    // removes (with the pins of a dataplane that was killed).
    .arg("--pin-dir")
    .arg(format!(
        "{}/{}/{}",
        sluice_bpf::system::SHARED_BPFFS,
        topo.prefix(),
        ifname::RDUT
    ));
    c
}

/// nginx's configuration for the benchmarks: one worker (no master) on
/// `dut_core`, no access log, long keep-alive, temp paths under `root`,
/// and the `server { }` blocks given.
pub fn nginx_conf(root: &Path, dut_core: usize, servers: &str) -> String {
    format!(
        r#"daemon off;
master_process off;
worker_processes 1;
worker_cpu_affinity {mask};
worker_rlimit_nofile 200000;
error_log {root}/error.log warn;
pid {root}/nginx.pid;
events {{ worker_connections 100000; multi_accept on; }}
http {{
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    client_header_timeout 300s;
    open_file_cache max=16;
    default_type application/octet-stream;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
{servers}}}
"#,
        mask = format_args!("{:b}", 1u64 << dut_core),
        root = root.display(),
    )
}

/// A server under test: started (pinned by the caller's command), ready
/// when a TCP connect from the generator namespace succeeds, stopped with
/// SIGTERM by its PID (also when dropped: an error or an interruption;
/// SIGKILL to it and its descendants if it does not exit in time). Its
/// stdout and stderr go to files under the work directory (a pipe nobody
/// reads would block a chatty server).
pub struct ServerProc {
    child: Child,
    pub name: String,
    pub pid: u32,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl ServerProc {
    /// Spawns `cmd`, its output in `work/NAME.stdout|stderr`, and waits
    /// until `target` accepts a connection from `gen_ns`.
    pub fn start(
        mut cmd: Command,
        name: &str,
        work: &Path,
        gen_ns: &str,
        target: SocketAddr,
    ) -> Result<Self> {
        let stdout = work.join(format!("{name}.stdout"));
        let stderr = work.join(format!("{name}.stderr"));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(fs::File::create(&stdout)?)
            .stderr(fs::File::create(&stderr)?)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let pid = child.id();
        let mut server = Self {
            child,
            name: name.to_string(),
            pid,
            stdout,
            stderr,
        };
        if let Err(e) = server.wait_ready(gen_ns, target) {
            // nginx's master may have started its workers already.
            interrupt::stop_child(&mut server.child, interrupt::GRACE);
            interrupt::note(format!("stopped {name} (pid {pid})"));
            return Err(e.context(format!("starting {name}")));
        }
        Ok(server)
    }

    /// What the server wrote to stdout so far.
    pub fn stdout_text(&self) -> String {
        fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// What the server wrote to stderr so far.
    pub fn stderr_text(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Until a TCP connect from the generator namespace succeeds (bounded,
    /// and cut short by SIGINT/SIGTERM).
    fn wait_ready(&mut self, gen_ns: &str, target: SocketAddr) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            interrupt::check()?;
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited during start-up ({status}):\n{}",
                    self.name,
                    self.stderr_text()
                );
            }
            let ok = netns::run_in(gen_ns, || {
                TcpStream::connect_timeout(&target, Duration::from_millis(200)).is_ok()
            })?;
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not accept connections on {target} within 10 s:\n{}",
                    self.name,
                    self.stderr_text()
                );
            }
            interrupt::sleep(Duration::from_millis(100))?;
        }
    }

    /// SIGTERM, then up to 10 s for a successful exit (killed after
    /// that); returns what the server wrote to stdout.
    pub fn stop(mut self) -> Result<String> {
        let pid = nix::unistd::Pid::from_raw(self.pid as i32);
        // nginx: SIGQUIT is a graceful stop, SIGTERM a fast one (exit 0);
        // HAProxy: SIGTERM is a hard stop; sluice drains (exit 0).
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait()? {
                // HAProxy in the foreground (-db) dies of the SIGTERM itself.
                let by_our_signal = std::os::unix::process::ExitStatusExt::signal(&status)
                    == Some(nix::sys::signal::Signal::SIGTERM as i32);
                interrupt::note(format!("stopped {} (pid {})", self.name, self.pid));
                if !status.success() && !by_our_signal {
                    bail!("{} failed ({status}):\n{}", self.name, self.stderr_text());
                }
                return Ok(self.stdout_text());
            }
            if Instant::now() > deadline {
                interrupt::kill_tree(&mut self.child);
                interrupt::note(format!("killed {} (pid {})", self.name, self.pid));
                bail!("{} did not stop within 10 s of SIGTERM", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServerProc {
    /// A server left running by an early return (an error, SIGINT or
    /// SIGTERM) is stopped by its PID: SIGTERM first, so that nginx's
    /// master takes its workers along and sluice detaches its XDP program.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            match interrupt::stop_child(&mut self.child, interrupt::GRACE) {
                Some(_) => interrupt::note(format!("stopped {} (pid {})", self.name, self.pid)),
                None => interrupt::cleanup_failed(format!(
                    "{} (pid {}) could not be stopped",
                    self.name, self.pid
                )),
            }
        }
    }
}

/// CPU time around a load: both cores, the server process, and the
/// children of this process (the load generator, once waited for).
pub struct CpuWindow {
    dut_core: usize,
    gen_core: usize,
    pid: u32,
    cores0: Vec<CoreTime>,
    user0: f64,
    sys0: f64,
    proc0: (f64, f64),
    proc_ns0: u64,
    started: Instant,
}

/// What a [`CpuWindow`] measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CpuUse {
    pub dut_core: CoreTime,
    pub gen_core: CoreTime,
    /// The server process's own user and system seconds.
    pub proc_user_s: f64,
    pub proc_sys_s: f64,
    /// The server process's CPU seconds from the scheduler (user and
    /// system together, nanosecond resolution).
    pub proc_cpu_s: f64,
    /// User and system seconds of the waited-for load generator.
    pub gen_user_s: f64,
    pub gen_sys_s: f64,
    pub wall_s: f64,
}

impl CpuWindow {
    pub fn start(dut_core: usize, gen_core: usize, pid: u32) -> Result<Self> {
        Ok(Self {
            dut_core,
            gen_core,
            pid,
            cores0: read_cores()?,
            user0: cpu::children_user_secs(),
            sys0: cpu::children_sys_secs(),
            proc0: cpu::process_times(pid)?,
            proc_ns0: cpu::process_cpu_ns(pid)?,
            started: Instant::now(),
        })
    }

    pub fn finish(self) -> Result<CpuUse> {
        let (pu1, ps1) = cpu::process_times(self.pid)?;
        let ns1 = cpu::process_cpu_ns(self.pid)?;
        let cores1 = read_cores()?;
        Ok(CpuUse {
            dut_core: cores1[self.dut_core].delta(&self.cores0[self.dut_core]),
            gen_core: cores1[self.gen_core].delta(&self.cores0[self.gen_core]),
            proc_user_s: pu1 - self.proc0.0,
            proc_sys_s: ps1 - self.proc0.1,
            proc_cpu_s: ns1.saturating_sub(self.proc_ns0) as f64 / 1e9,
            gen_user_s: cpu::children_user_secs() - self.user0,
            gen_sys_s: cpu::children_sys_secs() - self.sys0,
            wall_s: self.started.elapsed().as_secs_f64(),
        })
    }
}

impl CpuUse {
    /// Busy seconds of the server's core (user + system + softirq + irq).
    pub fn dut_core_secs(&self) -> f64 {
        self.dut_core.busy() as f64 / ticks_per_sec()
    }

    pub fn dut_core_pct(&self) -> f64 {
        if self.dut_core.total() > 0 {
            self.dut_core.busy() as f64 * 100.0 / self.dut_core.total() as f64
        } else {
            0.0
        }
    }

    /// Busy seconds of both cores minus the load generator's user time.
    pub fn path_secs(&self) -> f64 {
        ((self.dut_core.busy() + self.gen_core.busy()) as f64 / ticks_per_sec() - self.gen_user_s)
            .max(0.0)
    }
}

impl CpuUse {
    /// The share of the server core's time that was busy but neither the
    /// server process's own time nor interrupt work: another process on
    /// that core (a shared machine). A few percent of noise is normal.
    pub fn dut_core_other_pct(&self) -> f64 {
        let hz = ticks_per_sec();
        let total = self.dut_core.total() as f64;
        if total == 0.0 {
            return 0.0;
        }
        let accounted = (self.proc_user_s + self.proc_sys_s) * hz
            + (self.dut_core.softirq + self.dut_core.irq) as f64;
        ((self.dut_core.busy() as f64 - accounted) * 100.0 / total).max(0.0)
    }

    /// The same for the generator's core, against the load generator's
    /// own time (it must have been waited for).
    pub fn gen_core_other_pct(&self) -> f64 {
        let hz = ticks_per_sec();
        let total = self.gen_core.total() as f64;
        if total == 0.0 {
            return 0.0;
        }
        let accounted = (self.gen_user_s + self.gen_sys_s) * hz
            + (self.gen_core.softirq + self.gen_core.irq) as f64;
        ((self.gen_core.busy() as f64 - accounted) * 100.0 / total).max(0.0)
    }
}

/// Waits (up to `max`) until every core was less than `pct` percent busy
/// over half a second; returns false if it never was. On a shared
/// machine, a benchmark started next to a build measures the build.
/// SIGINT/SIGTERM end the wait with an [`interrupt::Interrupted`] error.
pub fn wait_for_quiet(pct: f64, max: Duration) -> Result<bool> {
    let deadline = Instant::now() + max;
    let mut told = false;
    loop {
        let a = read_cores()?;
        interrupt::sleep(Duration::from_millis(500))?;
        let b = read_cores()?;
        let busiest = a
            .iter()
            .zip(&b)
            .map(|(a, b)| {
                let d = b.delta(a);
                if d.total() == 0 {
                    0.0
                } else {
                    d.busy() as f64 * 100.0 / d.total() as f64
                }
            })
            .fold(0.0, f64::max);
        if busiest < pct {
            return Ok(true);
        }
        if !told {
            // Said once: a bench silent for minutes looks hung.
            eprintln!(
                "  waiting for quiet cores (busiest {busiest:.0}% >= {pct}%, up to {} s)",
                max.as_secs()
            );
            told = true;
        }
        if Instant::now() > deadline {
            return Ok(false);
        }
    }
}

/// `secs` per unit in microseconds (0 when there are no units).
pub fn us_per(secs: f64, units: f64) -> f64 {
    if units > 0.0 {
        secs * 1e6 / units
    } else {
        0.0
    }
}

/// Raises this process's RLIMIT_NOFILE to at least `want`.
pub fn raise_nofile(want: u64) -> Result<()> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < want {
        let hard = hard.max(want);
        setrlimit(Resource::RLIMIT_NOFILE, want, hard)
            .with_context(|| format!("raising RLIMIT_NOFILE to {want}"))?;
    }
    Ok(())
}

/// The median of `ms` by `key` (the upper one of an even count).
pub fn median_by<T: Clone, F: Fn(&T) -> f64>(ms: &mut [T], key: F) -> T {
    ms.sort_by(|x, y| key(x).total_cmp(&key(y)));
    ms[ms.len() / 2].clone()
}

/// The byte pattern of sluice's /bytes/N: byte i is i mod 251.
pub fn pattern(n: u64) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// Writes the /bytes/N pattern to `path` in chunks (100 MB and more
/// without holding it in memory).
pub fn write_pattern(path: &Path, n: u64) -> Result<()> {
    use std::io::Write;
    let chunk = pattern(251 * 4096);
    let mut f = std::io::BufWriter::new(fs::File::create(path)?);
    let mut left = n;
    while left > 0 {
        // Whole multiples of 251 keep the pattern continuous across chunks.
        let take = left.min(chunk.len() as u64) as usize;
        f.write_all(&chunk[..take])?;
        left -= take as u64;
    }
    f.flush()?;
    Ok(())
}

/// A fresh work directory under the system's temp dir, removed on drop.
pub struct WorkDir(pub PathBuf);

impl WorkDir {
    pub fn new(what: &str) -> Result<Self> {
        let p = std::env::temp_dir().join(format!("sluice-{what}-{}", std::process::id()));
        fs::create_dir_all(&p)?;
        Ok(Self(p))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        match fs::remove_dir_all(&self.0) {
            Ok(()) => interrupt::note(format!("removed {}", self.0.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => interrupt::cleanup_failed(format!("removing {}: {e}", self.0.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_pattern_wraps_at_251() {
        let p = pattern(600);
        assert_eq!(
            (p[0], p[250], p[251], p[599]),
            (0, 250, 0, (599 % 251) as u8)
        );
    }

    #[test]
    fn pattern_file_is_the_pattern() {
        let dir = WorkDir::new("harness-test").unwrap();
        let f = dir.path().join("p");
        let n = 251 * 4096 * 2 + 77;
        write_pattern(&f, n).unwrap();
        assert_eq!(fs::read(&f).unwrap(), pattern(n));
    }

    #[test]
    fn median_takes_the_middle() {
        let mut v = vec![3.0, 1.0, 2.0];
        assert_eq!(median_by(&mut v, |x| *x), 2.0);
    }

    #[test]
    fn nginx_config_pins_the_worker_and_embeds_servers() {
        let conf = nginx_conf(Path::new("/tmp/w"), 1, "    server { listen 1.2.3.4:5; }\n");
        assert!(conf.contains("worker_cpu_affinity 10;"), "{conf}");
        assert!(conf.contains("server { listen 1.2.3.4:5; }\n}"), "{conf}");
    }

    #[test]
    fn pinned_wraps_taskset_in_the_namespace() {
        let c = pinned("x-rgen", 0, "h2load");
        assert_eq!(
            crate::exec::CmdLine(&c).to_string(),
            "ip netns exec x-rgen taskset -c 0 h2load"
        );
    }
}
