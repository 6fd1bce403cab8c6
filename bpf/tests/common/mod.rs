//! Helpers shared by the integration tests.

#![allow(dead_code)]

pub mod frames;

use sluice_xsk::{Xsk, XskConfig};

/// These tests load BPF programs: without the privileges they fail, loudly,
/// rather than skip.
pub fn require_root() {
    if !nix::unistd::geteuid().is_root() {
        panic!(
            "sluice-bpf's integration tests load and attach XDP programs and need root \
             (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN for network namespaces): run them as root, \
             e.g. `sudo -E cargo test -p sluice-bpf`"
        );
    }
}

/// Logs of the library (and libbpf's, through it) to the test output.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,libbpf=warn")),
        )
        .with_test_writer()
        .try_init();
}

/// Same, to stderr (for helper processes whose stdout is read).
pub fn init_tracing_stderr() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,libbpf=warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}

/// An AF_XDP socket bound to queue 0 of `lo` in a private, anonymous network
/// namespace (unshared by a short-lived thread), so that nothing in the
/// host's namespaces is touched. Good for an XSKMAP entry; it sees no traffic.
pub fn private_probe_socket() -> Xsk {
    std::thread::spawn(|| {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .expect("unshare(CLONE_NEWNET) for the probe socket");
        Xsk::open("lo", 0, &XskConfig::small())
            .expect("binding an AF_XDP socket to lo in a private netns")
    })
    .join()
    .expect("probe socket thread")
}
