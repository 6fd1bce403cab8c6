//! Helpers shared by the root-only integration tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use sluice_bench::exec::Shell;
use sluice_bench::netns;
use sluice_bench::topology::Topology;

/// Fails the test (never skips) unless it runs as root.
pub fn require_root() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "sluice-bench integration tests create network namespaces and veths and must run as root \
         (e.g. `sudo -E cargo test -p sluice-bench`); they do not skip"
    );
}

/// A prefix no other test run or running topology uses: `slt<pid><tag>`.
pub fn test_prefix(tag: &str) -> String {
    format!("slt{}{tag}", std::process::id())
}

/// The `sluice-bench` binary built for this test run.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_sluice-bench")
}

/// Runs `sluice-bench ARGS` and returns its output.
pub fn run_bin(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .output()
        .expect("running sluice-bench")
}

/// Like [`run_bin`], failing the test with the output if it exits non-zero.
pub fn run_bin_ok(args: &[&str]) -> String {
    let out = run_bin(args);
    assert!(
        out.status.success(),
        "sluice-bench {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A topology that is torn down when the guard drops, panic or not.
pub struct TopoGuard {
    pub topo: Topology,
}

impl TopoGuard {
    /// `topo up` through the library.
    pub fn up(tag: &str, queues: u32) -> Self {
        require_root();
        let topo = Topology::new(&test_prefix(tag), queues).unwrap();
        let guard = Self { topo };
        guard.topo.up(&Shell::default()).expect("topo up");
        guard
    }
}

impl Drop for TopoGuard {
    fn drop(&mut self) {
        if let Err(e) = self.topo.down(&Shell::default()) {
            eprintln!("cleanup: topo down {}: {e:#}", self.topo.prefix());
        }
    }
}

/// One ICMP echo from namespace `ns` to `addr`, 2 s timeout.
pub fn ping(ns: &str, addr: IpAddr) -> bool {
    netns::command(ns, "ping")
        .args(["-c", "1", "-W", "2", "-q", &addr.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("running ping (iputils-ping)")
        .success()
}

/// A child process stopped with SIGKILL on drop if it is still running.
pub struct ChildGuard {
    pub child: Option<Child>,
}

impl ChildGuard {
    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().unwrap().id() as i32)
    }

    pub fn signal(&self, sig: Signal) {
        kill(self.pid(), sig).expect("kill");
    }

    pub fn take(&mut self) -> Child {
        self.child.take().unwrap()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGKILL);
            let _ = c.wait();
        }
    }
}

/// Starts `sluice-bench ARGS` inside namespace `ns` (`ip netns exec` execs,
/// so the PID is sluice-bench's) and waits for its first stdout line.
pub fn spawn_in_ns(ns: &str, args: &[&str]) -> (ChildGuard, String, BufReader<ChildStdout>) {
    let mut child = netns::command(ns, bin())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawning sluice-bench in a namespace");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let guard = ChildGuard { child: Some(child) };
    let mut first = String::new();
    out.read_line(&mut first).expect("reading the first line");
    (guard, first, out)
}

/// Deterministic payload of `len` bytes, different for each `seed`.
pub fn payload(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(len as u32) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// A counter for unique names inside one test binary.
pub fn next_id() -> u32 {
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}
