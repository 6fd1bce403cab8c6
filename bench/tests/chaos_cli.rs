//! `sluice-bench chaos` from the outside: bad flags are refused with a clear
//! message before anything is attached, and a short run in a test namespace
//! attaches, prints counters and leaves nothing behind. Root only.

mod common;

use std::process::Command;

use common::*;

/// Runs `sluice-bench chaos ARGS`, expecting failure; returns stderr.
fn refused(args: &[&str]) -> String {
    let mut all = vec!["chaos"];
    all.extend_from_slice(args);
    let out = run_bin(&all);
    assert!(
        !out.status.success(),
        "sluice-bench {all:?} should fail; stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_flags_are_refused_clearly() {
    require_root();
    let e = refused(&["--iface", "lo", "--drop", "101"]);
    assert!(e.contains("out of range") && e.contains("0 to 100"), "{e}");
    let e = refused(&["--iface", "lo", "--rst", "-1"]);
    assert!(
        e.contains("0 to 100") || e.contains("unexpected argument"),
        "{e}"
    );
    let e = refused(&["--iface", "lo", "--corrupt", "lots"]);
    assert!(e.contains("not a number"), "{e}");
    let e = refused(&["--iface", "lo", "--drop-synack", "0"]);
    assert!(e.contains("`all` or a count"), "{e}");
    let e = refused(&["--iface", "lo", "--mss", "0"]);
    assert!(e.contains("--mss"), "{e}");
    let e = refused(&["--iface", "lo", "--addr", "not-an-ip"]);
    assert!(e.contains("--addr"), "{e}");
    let e = refused(&["--iface", "lo", "--xdp-mode", "offload"]);
    assert!(e.contains("--xdp-mode"), "{e}");
    let e = refused(&["--iface", "slt-nonexist0", "--drop", "1"]);
    assert!(e.contains("no such interface 'slt-nonexist0'"), "{e}");
    let e = refused(&["--iface", "lo", "--netns", "slt-no-such-ns"]);
    assert!(
        e.contains("slt-no-such-ns") && e.contains("does not exist"),
        "{e}"
    );
    let e = refused(&["--iface", "lo", "--duration", "-1"]);
    assert!(e.contains("--duration"), "{e}");
    let e = refused(&["--drop", "1"]);
    assert!(e.contains("--iface"), "{e}");
}

/// A namespace holding one veth pair, removed on drop.
struct Ns(String);

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn short_run_attaches_counts_and_detaches() {
    require_root();
    let ns = Ns(test_prefix("chx"));
    let sh = |args: &[&str]| {
        let ok = Command::new("ip")
            .args(args)
            .status()
            .expect("ip")
            .success();
        assert!(ok, "ip {args:?}");
    };
    sh(&["netns", "add", &ns.0]);
    sh(&[
        "-n", &ns.0, "link", "add", "chx0", "type", "veth", "peer", "name", "chx1",
    ]);
    sh(&["-n", &ns.0, "link", "set", "chx0", "up"]);
    sh(&["-n", &ns.0, "link", "set", "chx1", "up"]);
    let out = run_bin_ok(&[
        "chaos",
        "--iface",
        "chx0",
        "--netns",
        &ns.0,
        "--drop",
        "30",
        "--drop-synack",
        "all",
        "--mss",
        "536",
        "--dup",
        "5",
        "--all-ip",
        "--port",
        "80",
        "--addr",
        "198.18.0.1",
        "--duration",
        "1.5",
        "--xdp-mode",
        "skb",
    ]);
    assert!(
        out.contains("seen=") && out.contains("duplicated="),
        "{out}"
    );
    assert!(out.lines().any(|l| l.starts_with("final ")), "{out}");
    let ip = Command::new("ip")
        .args(["-n", &ns.0, "-d", "link", "show", "dev", "chx0"])
        .output()
        .expect("ip link show");
    let ip = String::from_utf8_lossy(&ip.stdout);
    assert!(!ip.contains("xdp"), "XDP left attached: {ip}");
}
