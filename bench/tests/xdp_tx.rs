//! What the gateway relies on from the topology (root, clang): an XDP program
//! on `gw0`/`rdut0` that answers with XDP_TX reaches the sender, over IPv4
//! and IPv6, with valid checksums. This needs the XDP_PASS placeholder on the
//! peers (p-gw, rgen0) and TX checksum offload off on the senders.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use common::*;
use sluice_bench::exec::Shell;
use sluice_bench::netns;
use sluice_bench::topology::{addr, ifname, Role, Topology};

const REFLECT_SRC: &str = include_str!("xdp/udp_reflect.bpf.c");
const REFLECT_PORT: u16 = 7777;

/// Builds the reflector into a fresh directory; returns (dir, object path).
fn build_reflector() -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "sluice-bench-xdp-tx-{}-{}",
        std::process::id(),
        next_id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("udp_reflect.bpf.c");
    let obj = dir.join("udp_reflect.bpf.o");
    std::fs::write(&src, REFLECT_SRC).unwrap();
    let out = Command::new("clang")
        .args(["-O2", "-g", "-target", "bpf", "-c"])
        .arg(&src)
        .arg("-o")
        .arg(&obj)
        .output()
        .unwrap_or_else(|e| {
            panic!("this test needs clang (scripts/install-deps.sh installs it): {e}")
        });
    assert!(
        out.status.success(),
        "clang: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (dir, obj)
}

fn attach(topo: &Topology, role: Role, dev: &str, obj: &std::path::Path) {
    Shell::default()
        .run(
            sluice_bench::exec::ip_command(
                Some(&topo.ns(role)),
                ["link", "set", "dev", dev, "xdpdrv", "obj"],
            )
            .arg(obj)
            .args(["sec", "xdp"]),
        )
        .expect("attach the reflector");
}

/// Sum of `rx_queue_*_xdp_tx` in `ethtool -S` of `dev`.
fn xdp_tx_count(ns: &str, dev: &str) -> u64 {
    let out = Shell::default()
        .in_netns(ns, "ethtool", ["-S", dev])
        .unwrap();
    out.lines()
        .filter_map(|l| l.trim().split_once(':'))
        .filter(|(k, _)| k.starts_with("rx_queue_") && k.ends_with("_xdp_tx"))
        .map(|(_, v)| v.trim().parse::<u64>().unwrap())
        .sum()
}

/// Sends datagrams of several sizes from `from` (in `ns`) to `to` and expects
/// each one back, reflected by XDP, from `to`. Returns how many.
fn reflect(ns: &str, from: SocketAddr, to: SocketAddr) -> u64 {
    netns::run_in(ns, || {
        let s = UdpSocket::bind(from).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = [0u8; 2048];
        let mut n = 0;
        for (i, size) in [1usize, 18, 100, 512, 1000, 1400].into_iter().enumerate() {
            let msg = payload(size, i as u32);
            s.send_to(&msg, to).unwrap();
            let (len, src) = s.recv_from(&mut buf).unwrap_or_else(|e| {
                panic!("{size} bytes {from} -> {to}: no XDP_TX reflection: {e}")
            });
            assert_eq!(src, to);
            assert!(buf[..len] == msg[..], "{size} bytes: reflection differs");
            n += 1;
        }
        n
    })
    .unwrap()
}

#[test]
fn xdp_tx_from_gw0_and_rdut0_reaches_the_sender() {
    let t = TopoGuard::up("x", 2);
    let topo = &t.topo;
    let (dir, obj) = build_reflector();

    // Warm ARP/ND first (the reflector passes ARP, ND and ICMP to the kernel).
    let client = topo.client_ns();
    let rgen = topo.rgen_ns();
    for (ns, a) in [
        (&client, addr::GW_V4.into()),
        (&client, addr::GW_V6.into()),
        (&rgen, addr::RDUT_V4.into()),
        (&rgen, addr::RDUT_V6.into()),
    ] {
        assert!(ping(ns, a), "{ns} cannot ping {a}");
    }
    attach(topo, Role::Gateway, ifname::GW, &obj);
    attach(topo, Role::Rdut, ifname::RDUT, &obj);

    let mut n = 0;
    n += reflect(
        &client,
        (addr::CLIENT_V4, 0).into(),
        (addr::GW_V4, REFLECT_PORT).into(),
    );
    n += reflect(
        &client,
        (addr::CLIENT_V6, 0).into(),
        (addr::GW_V6, REFLECT_PORT).into(),
    );
    assert!(
        xdp_tx_count(&topo.gw_ns(), ifname::GW) >= n,
        "gw0 did not count its XDP_TX"
    );
    let mut m = 0;
    m += reflect(
        &rgen,
        (addr::RGEN_V4, 0).into(),
        (addr::RDUT_V4, REFLECT_PORT).into(),
    );
    m += reflect(
        &rgen,
        (addr::RGEN_V6, 0).into(),
        (addr::RDUT_V6, REFLECT_PORT).into(),
    );
    assert!(
        xdp_tx_count(&topo.rdut_ns(), ifname::RDUT) >= m,
        "rdut0 did not count its XDP_TX"
    );

    std::fs::remove_dir_all(dir).ok();
}
