//! `kernel-echo` in the gateway namespace, driven from the client namespace
//! (root). Byte-exact echoes of many sizes over IPv4 and IPv6, counters,
//! pinning, SIGTERM and --duration.

mod common;

use std::io::{BufRead, Read};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;
use serde_json::Value;
use sluice_bench::netns;
use sluice_bench::topology::addr;

const PORT: u16 = 7000;

/// The core to pin to: the last one this process may use.
fn pin_core() -> usize {
    let set = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).unwrap();
    (0..nix::sched::CpuSet::count())
        .rev()
        .find(|c| set.is_set(*c).unwrap_or(false))
        .unwrap()
}

/// Sizes sent to the echo: every size up to 64, a sweep to the largest
/// single-frame payload, and fragmented ones that still fit the 2048-byte
/// receive buffer.
fn sizes(max_single_frame: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..=64).collect();
    v.extend((65..max_single_frame).step_by(97));
    v.extend([
        max_single_frame - 1,
        max_single_frame,
        max_single_frame + 1,
        2000,
        2048,
    ]);
    v
}

struct Sent {
    datagrams: u64,
    echoed: u64,
    echoed_bytes: u64,
}

/// Sends each size from `sock` to `server` and checks the echo byte for byte.
fn exchange(sock: &UdpSocket, server: SocketAddr, sizes: &[usize], seed: u32) -> Sent {
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut sent = Sent {
        datagrams: 0,
        echoed: 0,
        echoed_bytes: 0,
    };
    let mut buf = vec![0u8; 70_000];
    for (i, &size) in sizes.iter().enumerate() {
        let msg = payload(size, seed + i as u32);
        assert_eq!(sock.send_to(&msg, server).unwrap(), size);
        sent.datagrams += 1;
        let (n, from) = sock
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("no echo for {size} bytes to {server}: {e}"));
        assert_eq!(from, server, "echo from the wrong address");
        assert_eq!(n, size, "echo of {size} bytes came back with {n}");
        assert!(buf[..n] == msg[..], "echo of {size} bytes differs");
        sent.echoed += 1;
        sent.echoed_bytes += size as u64;
    }
    sent
}

fn cpus_allowed(pid: i32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn echoes_v4_and_v6_byte_exact_and_stops_on_sigterm() {
    let t = TopoGuard::up("e", 2);
    let topo = &t.topo;
    let core = pin_core();
    let v4 = SocketAddr::from((addr::GW_V4, PORT));
    let v6 = SocketAddr::from((addr::GW_V6, PORT));
    let (mut echo, first, mut out) = spawn_in_ns(
        &topo.gw_ns(),
        &[
            "kernel-echo",
            "--listen",
            &v4.to_string(),
            "--listen",
            &v6.to_string(),
            "--core",
            &core.to_string(),
            "--batch",
            "16",
            "--json",
        ],
    );
    assert!(first.starts_with("kernel-echo: listening on"), "{first}");
    assert!(
        first.contains(&v4.to_string()) && first.contains(&v6.to_string()),
        "{first}"
    );

    // Warm neighbour caches both ways so no datagram waits on ARP/ND.
    for a in [IpAddr::from(addr::GW_V4), addr::GW_V6.into()] {
        assert!(ping(&topo.client_ns(), a), "client cannot reach {a}");
    }

    // A plain std socket on a thread that entered the client namespace.
    let (s4, s6) = netns::run_in(&topo.client_ns(), || {
        let s4 = UdpSocket::bind((addr::CLIENT_V4, 0)).unwrap();
        let s6 = UdpSocket::bind((addr::CLIENT_V6, 0)).unwrap();
        let a = exchange(&s4, v4, &sizes(1472), 1);
        let b = exchange(&s6, v6, &sizes(1452), 1000);
        (a, b)
    })
    .unwrap();

    // Larger than the 2048-byte buffer: received, counted, not echoed.
    let big = netns::run_in(&topo.client_ns(), || {
        let s = UdpSocket::bind((addr::CLIENT_V4, 0)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        s.send_to(&payload(3000, 7), v4).unwrap();
        let mut buf = [0u8; 4000];
        s.recv_from(&mut buf).is_err()
    })
    .unwrap();
    assert!(
        big,
        "a 3000-byte datagram was echoed despite the 2048-byte buffer"
    );

    let pid = echo.pid().as_raw();
    assert_eq!(
        cpus_allowed(pid),
        core.to_string(),
        "kernel-echo is not pinned"
    );

    echo.signal(Signal::SIGTERM);
    let status = echo.take().wait().unwrap();
    assert!(status.success(), "kernel-echo exited with {status}");
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    let stats: Value = serde_json::from_str(rest.trim()).unwrap_or_else(|e| panic!("{e}: {rest}"));

    let datagrams = s4.datagrams + s6.datagrams + 1;
    let echoed = s4.echoed + s6.echoed;
    let echoed_bytes = s4.echoed_bytes + s6.echoed_bytes;
    assert_eq!(stats["rx_packets"], datagrams, "{stats}");
    assert_eq!(stats["rx_bytes"], echoed_bytes + 3000, "{stats}");
    assert_eq!(stats["tx_packets"], echoed, "{stats}");
    assert_eq!(stats["tx_bytes"], echoed_bytes, "{stats}");
    assert_eq!(stats["truncated"], 1, "{stats}");
    assert_eq!(stats["tx_errors"], 0, "{stats}");
    assert_eq!(stats["core"], core, "{stats}");
    assert_eq!(stats["stop"], "signal", "{stats}");
    assert!(
        stats["cpu_user_s"].as_f64().unwrap() + stats["cpu_sys_s"].as_f64().unwrap() > 0.0,
        "{stats}"
    );
}

#[test]
fn direct_pair_echo_stops_after_duration() {
    let t = TopoGuard::up("d", 1);
    let topo = &t.topo;
    let server = SocketAddr::from((addr::RDUT_V6, PORT));
    let (mut echo, first, mut out) = spawn_in_ns(
        &topo.rdut_ns(),
        &[
            "kernel-echo",
            "--listen",
            &server.to_string(),
            "--duration",
            "1.5",
        ],
    );
    assert!(first.contains(&server.to_string()), "{first}");
    assert!(ping(&topo.rgen_ns(), addr::RDUT_V6.into()));
    let sent = netns::run_in(&topo.rgen_ns(), || {
        let s = UdpSocket::bind((addr::RGEN_V6, 0)).unwrap();
        exchange(&s, server, &[1, 100, 1000, 1452], 99)
    })
    .unwrap();
    // No signal: it must stop on its own and print the text summary.
    let status = echo.take().wait().unwrap();
    assert!(status.success(), "kernel-echo exited with {status}");
    let mut text = String::new();
    for line in out.by_ref().lines() {
        text.push_str(&line.unwrap());
        text.push('\n');
    }
    assert!(text.contains("stopped (Duration)"), "{text}");
    assert!(
        text.contains(&format!(
            "rx {} packets {} bytes",
            sent.datagrams, sent.echoed_bytes
        )),
        "{text}"
    );
    assert!(text.contains("cpu user"), "{text}");
}
