//! End-to-end: `sluice-dataplane` on the namespace topology, exercised with
//! ordinary tools from the client namespace (ping, kernel UDP sockets,
//! scapy) and with the AF_XDP generator. Root only; never skips.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;
use serde_json::Value;
use sluice_bench::topology::{addr, ifname};

const PORT: u16 = 7;

fn vip4() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(addr::GW_VIP_V4), PORT)
}

fn vip6() -> SocketAddr {
    SocketAddr::new(IpAddr::V6(addr::GW_VIP_V6), PORT)
}

fn dataplane_args(topo: &Topo, queues: u32) -> Vec<String> {
    let mut a: Vec<String> = [
        "--iface",
        ifname::GW,
        "--stats-format",
        "json",
        "--stats-interval",
        "0.5",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.push("--queues".into());
    a.push(format!("0-{}", queues - 1));
    a.push("--pin-dir".into());
    a.push(topo.pin_dir().display().to_string());
    for v in [vip4(), vip6()] {
        a.push("--udp-echo".into());
        a.push(v.to_string());
    }
    a
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a counter: {v}"))
}

/// The whole user story on `queues` queues.
fn serve_and_stop(queues: u32) {
    let topo = Topo::up(&format!("q{queues}"), queues);
    let (gw, client) = (topo.gw(), topo.client());
    let mut dp = Dataplane::start(&gw, &dataplane_args(&topo, queues));

    // The maps are pinned where a second process can read them.
    for map in ["counters", "xsks", "vips", "listeners", "config"] {
        assert!(
            topo.pin_dir().join(map).exists(),
            "map {map} is not pinned under {}",
            topo.pin_dir().display()
        );
    }
    sluice_bpf::read_pinned_counters(&topo.pin_dir()).expect("reading pinned counters");
    assert!(xdp_attached(&gw, ifname::GW));

    // ARP/ND and ICMP echo for VIPs the kernel does not own.
    assert!(
        ping(&client, vip4().ip(), 3),
        "no ping reply from {}",
        vip4().ip()
    );
    assert!(
        ping(&client, vip6().ip(), 3),
        "no ping reply from {}",
        vip6().ip()
    );

    // The Linux stack as a UDP peer: every size, several flows, byte for byte.
    let v4_sizes: Vec<usize> = (0..=1472).step_by(7).chain([1, 2, 3, 1471, 1472]).collect();
    let v6_sizes: Vec<usize> = (0..=1452).step_by(7).chain([1, 1452]).collect();
    kernel_udp_echo_check(&client, vip4(), &v4_sizes, 8);
    kernel_udp_echo_check(&client, vip6(), &v6_sizes, 8);

    // The AF_XDP generator: many sizes and flows, payload verified per packet.
    for (dst, sizes) in [
        (vip4(), "60,61,64,100,128,256,511,512,1000,1499,1514"),
        (vip6(), "78,79,100,128,256,511,512,1000,1499,1514"),
    ] {
        let r = gen(
            &client,
            &s(&[
                "--iface",
                ifname::CLIENT,
                "--dst",
                &dst.to_string(),
                "--queues",
                &format!("0-{}", queues - 1),
                "--size",
                sizes,
                "--flows",
                "64",
                "--rate",
                "20000",
                "--count",
                "20000",
                "--duration",
                "10",
                "--drain",
                "1",
            ]),
        );
        assert_eq!(u(&r["corrupt"]), 0, "corrupted echoes: {r}");
        assert!(u(&r["sent"]) >= 20000, "sent too few: {r}");
        assert_eq!(r["received"], r["sent"], "lost echoes to {dst}: {r}");
    }

    // Malformed and unwanted traffic is dropped and counted, not echoed.
    let vip = addr::GW_VIP_V4;
    scapy(
        &client,
        &format!(
            "iface = '{c}'
dst = '{vip}'
eth = Ether(dst=getmacbyip(dst))
bad_udp = eth/IP(dst=dst)/UDP(sport=5000, dport={PORT}, chksum=0x1234)/Raw(b'x'*32)
bad_ip = eth/IP(dst=dst, chksum=0x1234)/UDP(sport=5000, dport={PORT})/Raw(b'x'*32)
frag = eth/IP(dst=dst, flags='MF', frag=0)/UDP(sport=5000, dport={PORT})/Raw(b'x'*32)
long_len = eth/IP(dst=dst, len=400)/UDP(sport=5000, dport={PORT})/Raw(b'x'*32)
short_udp = eth/IP(dst=dst, proto=17)/Raw(b'\\x13\\x88')
other_port = eth/IP(dst=dst)/UDP(sport=5000, dport=9)/Raw(b'x')
for p in [bad_udp, bad_ip, frag, long_len, short_udp, other_port]:
    sendp(p, iface=iface, count=5)
",
            c = ifname::CLIENT
        ),
    );
    // Still serving after all that.
    kernel_udp_echo_check(&client, vip4(), &[10, 1000], 1);
    std::thread::sleep(Duration::from_millis(700));

    let status = dp.stop(Signal::SIGTERM);
    assert!(
        status.success(),
        "SIGTERM exit: {status}\n{}",
        dp.stderr_text()
    );
    let fin = dp.last_report("final").expect("no final JSON report");
    let total = &fin["total"];
    assert_eq!(fin["balanced"], true, "rx != tx + drops: {fin}");
    assert!(u(&total["rx_packets"]) >= 40000, "{fin}");
    assert!(
        u(&total["drop_bad_checksum"]) >= 10,
        "bad checksums not counted: {total}"
    );
    let xdp = &fin["xdp"];
    assert!(u(&xdp["drop_fragment"]["packets"]) >= 5, "{xdp}");
    assert!(u(&xdp["drop_malformed_ip"]["packets"]) >= 5, "{xdp}");
    assert!(u(&xdp["drop_malformed_l4"]["packets"]) >= 5, "{xdp}");
    assert!(u(&xdp["pass_vip_unbound"]["packets"]) >= 5, "{xdp}");
    assert!(u(&xdp["tx_arp_reply"]["packets"]) >= 1, "{xdp}");
    assert!(u(&xdp["tx_neigh_advert"]["packets"]) >= 1, "{xdp}");
    // Every frame the program redirected reached a loop or one of the two
    // kernel drop counters: XDP_STATISTICS reports RX-ring-full drops in
    // rx_ring_full, not in rx_dropped (given the full struct, as we ask).
    let redirected =
        u(&xdp["redirect_listener"]["packets"]) + u(&xdp["redirect_icmp_echo"]["packets"]);
    let reached =
        u(&total["rx_packets"]) + u(&total["kernel_rx_dropped"]) + u(&total["kernel_rx_ring_full"]);
    assert_eq!(
        redirected, reached,
        "redirected frames unaccounted for: {fin}"
    );
    if queues > 1 {
        for q in fin["queues"].as_array().unwrap() {
            assert!(u(&q["rx_packets"]) > 0, "queue got no traffic: {q}");
            assert_eq!(
                u(&q["rx_packets"]),
                u(&q["tx_packets"]) + {
                    [
                        "drop_malformed",
                        "drop_bad_checksum",
                        "drop_unsupported",
                        "drop_no_service",
                        "drop_tx_ring_full",
                    ]
                    .iter()
                    .map(|k| u(&q[*k]))
                    .sum::<u64>()
                }
            );
        }
    }

    // Nothing left attached or pinned.
    assert!(
        !xdp_attached(&gw, ifname::GW),
        "XDP program still attached after exit"
    );
    assert!(
        !topo.pin_dir().exists(),
        "pins left behind in {}",
        topo.pin_dir().display()
    );
}

#[test]
fn one_queue() {
    serve_and_stop(1);
}

#[test]
fn two_queues() {
    serve_and_stop(2);
}

/// SIGKILL in the middle of load leaves nothing attached (the BPF link dies
/// with the process); a restart replaces the stale pins and serves again.
#[test]
fn killed_under_load_then_restarted() {
    let topo = Topo::up("kill", 1);
    let (gw, client) = (topo.gw(), topo.client());
    let args = dataplane_args(&topo, 1);
    let mut dp = Dataplane::start(&gw, &args);
    let load = {
        let client = client.clone();
        std::thread::spawn(move || {
            let out = sluice_bench::netns::command(&client, bench_bin())
                .args([
                    "gen",
                    "--iface",
                    ifname::CLIENT,
                    "--dst",
                    &vip4().to_string(),
                ])
                .args([
                    "--rate",
                    "50000",
                    "--duration",
                    "3",
                    "--json",
                    "--progress",
                    "0",
                ])
                .output()
                .expect("gen");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        })
    };
    std::thread::sleep(Duration::from_millis(1500));
    let status = dp.stop(Signal::SIGKILL);
    assert!(!status.success());
    assert!(
        !xdp_attached(&gw, ifname::GW),
        "program outlived a SIGKILLed dataplane"
    );
    load.join().unwrap();

    let mut dp = Dataplane::start(&gw, &args);
    assert!(
        dp.stderr_text().contains("stale") || dp.stderr_text().contains("removed"),
        "restart did not report stale pins:\n{}",
        dp.stderr_text()
    );
    assert!(ping(&client, vip4().ip(), 2));
    kernel_udp_echo_check(&client, vip4(), &[0, 100, 1472], 2);
    assert!(dp.stop(Signal::SIGINT).success());
    assert!(!topo.pin_dir().exists());
}

/// Setup errors are one line and exit status 1; malformed flags get
/// clap's message (what was wrong, what is expected) and exit status 2;
/// neither leaves anything attached.
#[test]
fn clear_errors() {
    let topo = Topo::up("err", 2);
    let gw = topo.gw();
    let run = |args: &[&str]| {
        let out = sluice_bench::netns::command(&gw, dataplane_bin())
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let pin = topo.pin_dir().display().to_string();
    // Setup errors (found by sluice): exit 1, one line.
    let setup: &[(&[&str], &str)] = &[
        (&["--iface", "nope0"], "no such interface"),
        (
            &["--iface", ifname::GW, "--queues", "5", "--pin-dir", &pin],
            "queue 5 does not exist",
        ),
        (
            &["--iface", ifname::GW, "--cores", "0", "--pin-dir", &pin],
            "one core per queue",
        ),
        (
            &[
                "--iface",
                ifname::GW,
                "--bind",
                "zerocopy",
                "--pin-dir",
                &pin,
            ],
            "zero-copy",
        ),
        (
            &[
                "--iface",
                ifname::GW,
                "--ring-size",
                "1000",
                "--pin-dir",
                &pin,
            ],
            "power of two",
        ),
        (&["--iface", "lo", "--pin-dir", &pin], "use --xdp-mode skb"),
    ];
    // Usage errors (found by the flag parser, clap): exit 2, the message
    // then a pointer to --help.
    let usage: &[(&[&str], &str)] = &[
        (
            &["--iface", ifname::GW, "--udp-echo", "198.18.0.100"],
            "missing port; expected ADDR:PORT or [IPv6]:PORT, e.g. 198.18.0.100:80 or [2001:2::100]:80",
        ),
        (&["--iface", ifname::GW, "--http", "1.2.3.4"], "missing port"),
        (
            &["--iface", ifname::GW, "--http", "[::1:80"],
            "no ']' closes the IPv6 address",
        ),
        (
            &["--iface", ifname::GW, "--http", "198.18.0.100:99999"],
            "port 99999 out of range",
        ),
        (
            &["--iface", ifname::GW, "--http", "[fe80::1%2]:80"],
            "scope id '%2' not allowed",
        ),
        (&["--iface", ifname::GW, "--frobnicate"], "unexpected argument"),
    ];
    let cases = setup
        .iter()
        .map(|c| (c, 1))
        .chain(usage.iter().map(|c| (c, 2)));
    for ((args, needle), want) in cases {
        let (code, err) = run(args);
        assert_eq!(code, Some(want), "{args:?} exited {code:?}:\n{err}");
        assert!(
            err.to_lowercase().contains(&needle.to_lowercase()),
            "{args:?}: error does not mention {needle:?}:\n{err}"
        );
        assert!(!err.contains("panicked"), "{args:?} panicked:\n{err}");
        let errors: Vec<&str> = err.lines().filter(|l| l.contains("error:")).collect();
        assert_eq!(errors.len(), 1, "{args:?}: not one error line:\n{err}");
        if want == 1 {
            assert!(
                errors[0].starts_with("sluice-dataplane: error: "),
                "{args:?}:\n{err}"
            );
        } else {
            assert!(errors[0].starts_with("error: "), "{args:?}:\n{err}");
            assert!(err.contains("--help"), "{args:?}:\n{err}");
        }
        // No cause is said twice (the lo case printed the EOPNOTSUPP text twice).
        if let Some(i) = errors[0].find("(os error") {
            assert!(
                !errors[0][i + 1..].contains("(os error"),
                "{args:?}: a cause repeated:\n{err}"
            );
        }
        assert!(
            !xdp_attached(&gw, ifname::GW),
            "{args:?} left a program attached"
        );
    }
}
