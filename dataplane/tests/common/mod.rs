//! Harness for the end-to-end tests: the real `sluice-dataplane` and
//! `sluice-bench` binaries on a namespace topology of their own.
#![allow(dead_code)]

pub mod http;
pub mod pki;

use std::io::{BufRead, BufReader, Read};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use sluice_bench::exec::Shell;
use sluice_bench::netns;
use sluice_bench::topology::{ifname, Topology};

/// These tests attach XDP programs and create namespaces: they fail, loudly,
/// rather than skip, when not run as root.
pub fn require_root() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "sluice-dataplane's end-to-end tests attach XDP programs and create network namespaces: \
         run them as root (scripts/test.sh does); they do not skip"
    );
}

pub fn dataplane_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sluice-dataplane"))
}

/// `sluice-bench` from the same target directory; scripts/test.sh builds
/// every binary before the tests run.
pub fn bench_bin() -> PathBuf {
    let p = dataplane_bin().with_file_name("sluice-bench");
    assert!(
        p.exists(),
        "{} is missing: build it first (`cargo build --workspace --bins`, as scripts/test.sh does)",
        p.display()
    );
    p
}

/// A topology torn down when dropped, panic or not.
pub struct Topo {
    pub topo: Topology,
}

impl Topo {
    pub fn up(tag: &str, queues: u32) -> Self {
        require_root();
        let prefix = format!("sle{}{tag}", std::process::id() % 100_000);
        let topo = Topology::new(&prefix, queues).expect("topology");
        let t = Self { topo };
        t.topo.up(&Shell::default()).expect("topo up");
        t
    }

    pub fn gw(&self) -> String {
        self.topo.gw_ns()
    }

    pub fn client(&self) -> String {
        self.topo.client_ns()
    }

    /// Pin directory on the shared bpffs, visible from this process.
    pub fn pin_dir(&self) -> PathBuf {
        Path::new(sluice_bpf::system::SHARED_BPFFS)
            .join(self.topo.prefix())
            .join(ifname::GW)
    }
}

impl Drop for Topo {
    fn drop(&mut self) {
        if let Err(e) = self.topo.down(&Shell::default()) {
            eprintln!("cleanup: topo down {}: {e:#}", self.topo.prefix());
        }
    }
}

/// A running `sluice-dataplane`, its stdout (JSON lines) and stderr kept.
pub struct Dataplane {
    child: Option<Child>,
    pub stdout: Arc<Mutex<Vec<String>>>,
    pub stderr: Arc<Mutex<Vec<String>>>,
}

impl Dataplane {
    /// Start in namespace `ns` with `args` and wait until it serves.
    pub fn start(ns: &str, args: &[String]) -> Self {
        let mut child = netns::command(ns, dataplane_bin())
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning sluice-dataplane");
        let stdout = collect(child.stdout.take().unwrap());
        let stderr = collect(child.stderr.take().unwrap());
        let mut dp = Self {
            child: Some(child),
            stdout,
            stderr,
        };
        dp.wait_for_stderr("serving", Duration::from_secs(30));
        dp
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().unwrap().id() as i32)
    }

    pub fn wait_for_stderr(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self
                .stderr
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains(needle))
            {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "sluice-dataplane exited ({status}) before printing {needle:?}:\n{}",
                    self.stderr_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "sluice-dataplane did not print {needle:?} within {timeout:?}:\n{}",
                self.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Send `sig` and wait (bounded) for the exit status.
    pub fn stop(&mut self, sig: Signal) -> ExitStatus {
        let mut child = self.child.take().expect("already stopped");
        kill(Pid::from_raw(child.id() as i32), sig).expect("signalling sluice-dataplane");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                // Let the reader threads see EOF.
                std::thread::sleep(Duration::from_millis(50));
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "sluice-dataplane did not exit within 15 s of {sig:?}:\n{}",
                    self.stderr_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The last JSON report of type `kind` ("interval" or "final").
    pub fn last_report(&self, kind: &str) -> Option<Value> {
        self.stdout
            .lock()
            .unwrap()
            .iter()
            .rev()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["type"] == kind)
    }
}

/// Until a running dataplane's live counters' totals satisfy `done` (bounded by `within`);
/// the report is refreshed every --stats-interval (0.5 s).
pub fn wait_for_totals(
    dp: &Dataplane,
    within: Duration,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        std::thread::sleep(Duration::from_millis(600));
        let r = dp.last_report("interval").expect("no interval report");
        if done(&r["total"]) {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "{what} after {within:?}: {}",
            r["total"]
        );
    }
}

/// Runs `cmd`, killed with its process group (and the test failed) if it
/// outlives `limit`; stdout and stderr are drained while it runs.
pub fn run_bounded(mut cmd: Command, limit: Duration, what: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    // Drained on threads, so that a full pipe cannot stall the child.
    let (mut so, mut se) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut so, &mut v).map(|_| v)
    });
    let err = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut se, &mut v).map(|_| v)
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            // A child that runs children of its own (testssl runs openssl)
            // is started in its own process group: kill all of it.
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(child.id() as i32),
                Signal::SIGKILL,
            );
            let _ = child.kill();
            let _ = child.wait();
            let text =
                String::from_utf8_lossy(&out.join().unwrap().unwrap_or_default()).into_owned();
            panic!("{what} still running after {limit:?}: killed\n{text}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Output {
        status,
        stdout: out.join().unwrap().unwrap_or_default(),
        stderr: err.join().unwrap().unwrap_or_default(),
    }
}

impl Drop for Dataplane {
    /// A test that failed: SIGTERM first, so the dataplane detaches and
    /// unpins itself; SIGKILL if it has not exited within 3 s (topo down
    /// then removes what it left on the shared bpffs).
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn collect(r: impl Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&lines);
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

/// One ping from `ns` to `addr`; true if answered.
pub fn ping(ns: &str, addr: IpAddr, count: u32) -> bool {
    let mut cmd = netns::command(ns, "ping");
    if addr.is_ipv6() {
        cmd.arg("-6");
    }
    cmd.args([
        "-c",
        &count.to_string(),
        "-i",
        "0.2",
        "-W",
        "2",
        &addr.to_string(),
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .status()
    .map(|s| s.success())
    .unwrap_or(false)
}

/// Send datagrams of every size in `sizes` from `flows` kernel sockets in
/// namespace `ns` to `dst`; every echo must come back byte for byte.
pub fn kernel_udp_echo_check(ns: &str, dst: SocketAddr, sizes: &[usize], flows: usize) {
    let sizes = sizes.to_vec();
    netns::run_in(ns, move || {
        let bind: SocketAddr = if dst.is_ipv4() {
            "0.0.0.0:0".parse().unwrap()
        } else {
            "[::]:0".parse().unwrap()
        };
        let socks: Vec<UdpSocket> = (0..flows)
            .map(|_| {
                let s = UdpSocket::bind(bind).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                s.connect(dst).unwrap();
                s
            })
            .collect();
        let mut buf = vec![0u8; 65536];
        for (i, &n) in sizes.iter().enumerate() {
            let s = &socks[i % socks.len()];
            let data: Vec<u8> = (0..n).map(|j| ((i * 7 + j * 13) % 256) as u8).collect();
            s.send(&data).unwrap();
            let got = s
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("no echo of a {n}-byte datagram to {dst}: {e}"));
            assert_eq!(&buf[..got], &data[..], "echo of {n} bytes to {dst} differs");
        }
    })
    .expect("running in the client namespace");
}

/// Run `sluice-bench gen ARGS --json` in `ns`; returns its report.
pub fn gen(ns: &str, args: &[String]) -> Value {
    let out = netns::command(ns, bench_bin())
        .arg("gen")
        .args(args)
        .args(["--json", "--progress", "0"])
        .output()
        .expect("running sluice-bench gen");
    assert!(
        out.status.success(),
        "sluice-bench gen {args:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "gen printed no JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Whether `ip -d link show IF` in `ns` shows an XDP program.
pub fn xdp_attached(ns: &str, iface: &str) -> bool {
    let out = Command::new("ip")
        .args(["-n", ns, "-d", "link", "show", "dev", iface])
        .output()
        .expect("ip link show");
    String::from_utf8_lossy(&out.stdout).contains("prog/xdp")
}

/// Run a scapy snippet (Debian's python3-scapy) in `ns`.
pub fn scapy(ns: &str, script: &str) {
    let out = netns::command(ns, "/usr/bin/python3")
        .args([
            "-c",
            &format!("from scapy.all import *\nconf.verb = 0\n{script}"),
        ])
        .output()
        .expect("running python3 (is python3-scapy installed? scripts/install-deps.sh)");
    assert!(
        out.status.success(),
        "scapy script failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
