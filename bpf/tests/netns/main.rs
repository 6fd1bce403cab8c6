//! Attach tests on a real veth pair in `slb-` network namespaces.
//!
//! A custom harness (no libtest): the parent (root namespace) builds a fresh
//! topology for every scenario and runs the scenario in a child process under
//! `ip netns exec`, which also gives the child the sysfs of that namespace
//! and a private mount namespace (where the library mounts its own bpffs).
//! Scenarios that need a second process holding the program spawn this
//! binary again from inside the child, in the same namespaces.
//!
//! Usage: `netns [FILTER...]` runs every scenario whose name contains a
//! filter; `--list` lists them. Needs root; fails (never skips) without it.

#[path = "../common/mod.rs"]
mod common;
mod scenarios;
mod topo;

use std::io::Read;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use sluice_bpf::XdpMode;

const CHILD_TIMEOUT: Duration = Duration::from_secs(90);

fn mode_name(mode: Option<XdpMode>) -> &'static str {
    match mode {
        Some(XdpMode::Native) => "native",
        Some(XdpMode::Skb) => "skb",
        None => "-",
    }
}

fn parse_mode(s: &str) -> Option<XdpMode> {
    match s {
        "native" => Some(XdpMode::Native),
        "skb" => Some(XdpMode::Skb),
        _ => None,
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let arg_after = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1).cloned())
    };

    if let Some(name) = arg_after("--child") {
        common::init_tracing_stderr();
        let mode = arg_after("--mode").and_then(|m| parse_mode(&m));
        return scenarios::run_child(&name, mode);
    }
    if let Some(mode) = arg_after("--holder") {
        common::init_tracing_stderr();
        return scenarios::holder(parse_mode(&mode).expect("--holder native|skb"));
    }
    if let Some(dir) = arg_after("--read-counters") {
        return scenarios::read_counters(&dir);
    }
    if args.iter().any(|a| a == "--try-attach") {
        return scenarios::try_attach();
    }

    let tests: Vec<(String, &'static str, Option<XdpMode>)> = scenarios::SCENARIOS
        .iter()
        .flat_map(|(name, modes)| {
            modes
                .iter()
                .map(move |m| (format!("{name}::{}", mode_name(*m)), *name, *m))
        })
        .collect();
    if args.iter().any(|a| a == "--list") {
        for (full, _, _) in &tests {
            println!("{full}: test");
        }
        return ExitCode::SUCCESS;
    }
    let filters: Vec<&String> = args[1..].iter().filter(|a| !a.starts_with('-')).collect();
    let selected: Vec<_> = tests
        .iter()
        .filter(|(full, _, _)| {
            filters.is_empty() || filters.iter().any(|f| full.contains(f.as_str()))
        })
        .collect();

    common::require_root();
    topo::remove_stale_namespaces();
    println!("\nrunning {} tests", selected.len());
    let (mut passed, mut failed) = (0, Vec::new());
    for (i, (full, name, mode)) in selected.iter().enumerate() {
        let started = Instant::now();
        match run_in_topology(i as u8 + 1, name, *mode) {
            Ok(()) => {
                passed += 1;
                println!(
                    "test {full} ... ok ({:.1}s)",
                    started.elapsed().as_secs_f64()
                );
            }
            Err(e) => {
                println!("test {full} ... FAILED");
                failed.push((full.clone(), e));
            }
        }
    }
    if !failed.is_empty() {
        println!("\nfailures:");
        for (name, e) in &failed {
            println!("\n---- {name} ----\n{e}");
        }
    }
    let result = if failed.is_empty() { "ok" } else { "FAILED" };
    println!(
        "\ntest result: {result}. {passed} passed; {} failed; 0 ignored; 0 measured; {} filtered out\n",
        failed.len(),
        tests.len() - selected.len()
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Builds a topology, runs the scenario in a child inside the gateway
/// namespace, tears the topology down (also on failure).
fn run_in_topology(net: u8, name: &str, mode: Option<XdpMode>) -> Result<(), String> {
    let topo = topo::Topology::create(net)?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Command::new("ip")
        .args(["netns", "exec", &topo.gw])
        .arg(&exe)
        .args(["--child", name, "--mode", mode_name(mode)])
        .env("SLB_PEER_NS", &topo.peer)
        .env("SLB_NET", net.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawning the child: {e}"))?;
    // Drain both pipes on threads so a chatty child cannot block.
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + CHILD_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = format!(
        "{}{}",
        out_t.join().unwrap_or_default(),
        err_t.join().unwrap_or_default()
    );
    drop(topo);
    match status {
        Some(s) if s.success() => Ok(()),
        Some(s) => Err(format!("child exited with {s}; its output:\n{output}")),
        None => Err(format!(
            "child timed out after {CHILD_TIMEOUT:?}; its output:\n{output}"
        )),
    }
}
