//! `sluice-bench run ...` interrupted: SIGINT stops it promptly and
//! everything it set up is gone, also when it was started with SIGINT
//! ignored (as a shell without job control starts `cmd &`). Root only;
//! needs nginx, wrk and curl (scripts/install-deps.sh).

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use sluice_bench::exec::Shell;
use sluice_bench::topology::Topology;

/// Whatever the test leaves if it fails half-way: the bench killed, its
/// topology deleted.
struct Leftovers {
    child: Option<Child>,
    prefix: String,
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Ok(t) = Topology::new(&self.prefix, 1) {
            let _ = t.down(&Shell::default());
        }
    }
}

/// Whether signal `sig` is in the mask of `field` (SigIgn, SigCgt) of
/// /proc/PID/status.
fn in_sig_mask(pid: u32, field: &str, sig: Signal) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap()
        .trim();
    u64::from_str_radix(hex, 16).unwrap() & (1 << (sig as u64 - 1)) != 0
}

#[test]
fn sigint_in_the_quiet_wait_cleans_up_even_if_started_ignoring_it() {
    require_root();
    let prefix = test_prefix("int");
    // `--quiet-pct 0`: no core is ever that quiet, so the run waits for
    // quiet cores (up to 120 s) before its first measurement.
    let child = Command::new("sh")
        .args(["-c", "trap '' INT; exec \"$0\" \"$@\"", bin()])
        .args(["run", "proxy", "--prefix", &prefix, "--modes", "nginx"])
        .args([
            "--workloads",
            "keepalive",
            "--repeat",
            "1",
            "--duration",
            "1",
        ])
        .args(["--quiet-pct", "0", "--quiet-wait", "120"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting sluice-bench run proxy");
    // sh execs sluice-bench: the same PID.
    let pid = child.id();
    let mut left = Leftovers {
        child: Some(child),
        prefix: prefix.clone(),
    };
    let work = std::env::temp_dir().join(format!("sluice-proxy-bench-{pid}"));
    let pid_file = work.join("backend.pid");

    // Until the backend nginx runs (bounded): the topology is up by then.
    let deadline = Instant::now() + Duration::from_secs(60);
    let backend: i32 = loop {
        let c = left.child.as_mut().unwrap();
        if let Some(status) = c.try_wait().unwrap() {
            let mut err = String::new();
            c.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            panic!("sluice-bench ended before its backend started ({status}): {err}");
        }
        if let Some(p) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            break p;
        }
        assert!(Instant::now() < deadline, "no backend after 60 s");
        std::thread::sleep(Duration::from_millis(100));
    };
    // Into the quiet wait: the bench says so on stderr (read on a thread,
    // kept whole for the assertions below).
    let mut stderr = left.child.as_mut().unwrap().stderr.take().unwrap();
    let (line_tx, line_rx) = std::sync::mpsc::channel::<()>();
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        let mut told = false;
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
            if !told && String::from_utf8_lossy(&all).contains("waiting for quiet cores (") {
                told = true;
                let _ = line_tx.send(());
            }
        }
        String::from_utf8_lossy(&all).into_owned()
    });
    line_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the bench announces its quiet wait within 60 s");
    assert!(
        !in_sig_mask(pid, "SigIgn", Signal::SIGINT) && in_sig_mask(pid, "SigCgt", Signal::SIGINT),
        "the inherited SIG_IGN must be replaced by a handler"
    );

    let sent = Instant::now();
    kill(Pid::from_raw(pid as i32), Signal::SIGINT).unwrap();
    let c = left.child.as_mut().unwrap();
    let status = loop {
        if let Some(s) = c.try_wait().unwrap() {
            break s;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(30),
            "still running 30 s after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let err = reader.join().unwrap();
    let mut out = String::new();
    c.stdout.take().unwrap().read_to_string(&mut out).unwrap();

    assert_eq!(status.code(), Some(130), "{err}");
    assert!(
        err.contains("sluice-bench: interrupted by SIGINT: cleaned up: ")
            && err.contains(&format!("stopped backend (pid {backend})"))
            && err.contains(&format!("deleted topology `{prefix}`"))
            && err.contains("waiting for quiet cores"),
        "{err}"
    );
    assert!(out.is_empty(), "no table after an interruption: {out}");
    let topo = Topology::new(&prefix, 1).unwrap();
    assert!(
        topo.existing_namespaces().unwrap().is_empty(),
        "namespaces left: {:?}",
        topo.existing_namespaces()
    );
    assert!(!Path::new(&work).exists(), "{} left", work.display());
    // The backend nginx (a child of sluice-bench, reaped by it) is gone,
    // its workers with it: nothing runs from the work directory.
    let ours = Command::new("pgrep")
        .args(["-f", &work.display().to_string()])
        .output()
        .unwrap();
    assert!(
        ours.stdout.is_empty(),
        "processes left: {}",
        String::from_utf8_lossy(&ours.stdout)
    );
}
