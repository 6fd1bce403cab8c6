//! The chaos program on a real veth pair between two `chx-<pid>-<tag>`
//! network namespaces (one pair per test, removed on drop, panic or not).
//! Needs root; fails (never skips) without it.

#[path = "common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::time::Duration;

use sluice_bpf::{Chaos, ChaosConfig, ChaosCounter, ChaosOptions, SynackDrop, XdpMode};

const A_IF: &str = "chxa0";
const B_IF: &str = "chxb0";
const A_V4: &str = "198.18.100.1";
const B_V4: &str = "198.18.100.2";

fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("running {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Namespaces `a` (chxa0, .1) and `b` (chxb0, .2) joined by a veth pair,
/// tx checksumming off on both ends so that checksums are complete.
struct Pair {
    a: String,
    b: String,
}

impl Pair {
    fn new(tag: &str) -> Self {
        common::require_root();
        common::init_tracing();
        let pid = std::process::id();
        let p = Pair {
            a: format!("chx-{pid}-{tag}a"),
            b: format!("chx-{pid}-{tag}b"),
        };
        for ns in [&p.a, &p.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
            sh(&["ip", "netns", "add", ns]);
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        sh(&[
            "ip", "-n", &p.a, "link", "add", A_IF, "type", "veth", "peer", "name", B_IF, "netns",
            &p.b,
        ]);
        for (ns, ifname, v4, v6) in [
            (&p.a, A_IF, A_V4, "2001:2:0:100::1"),
            (&p.b, B_IF, B_V4, "2001:2:0:100::2"),
        ] {
            sh(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{v4}/24"),
                "dev",
                ifname,
            ]);
            sh(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{v6}/64"),
                "dev",
                ifname,
                "nodad",
            ]);
            sh(&["ip", "-n", ns, "link", "set", ifname, "up"]);
            sh(&[
                "ip", "netns", "exec", ns, "ethtool", "-K", ifname, "tx", "off",
            ]);
        }
        p
    }

    /// Chaos on `ifname` of namespace `ns`, attached through the netns option.
    fn chaos(&self, ns: &str, ifname: &str, cfg: &ChaosConfig) -> Chaos {
        let opts = ChaosOptions {
            mode: XdpMode::Native,
            dup_hook: true,
            netns: Some(ns.to_string()),
        };
        Chaos::attach_with(ifname, cfg, &opts).expect("attaching chaos")
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Runs `f` on a thread inside namespace `ns`.
fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    let file = std::fs::File::open(format!("/run/netns/{ns}")).expect("netns handle");
    std::thread::scope(|s| {
        s.spawn(move || {
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// `ping -c count` from `ns` to `addr`; returns the replies received.
fn ping(ns: &str, addr: &str, count: u32) -> u32 {
    let out = Command::new("ip")
        .args([
            "netns", "exec", ns, "ping", "-n", "-q", "-W", "1", "-i", "0.01",
        ])
        .args(["-c", &count.to_string(), addr])
        .output()
        .expect("running ping");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_else(|| panic!("no summary in ping output: {text}"));
    let received: u32 = line
        .split(',')
        .nth(1)
        .and_then(|p| p.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot parse {line:?}"));
    received
}

fn all_ip_to_b() -> ChaosConfig {
    ChaosConfig {
        all_ip: true,
        addr: Some(B_V4.parse().unwrap()),
        ..Default::default()
    }
}

#[test]
fn drop_all_fails_every_ping_and_counts() {
    let p = Pair::new("d100");
    let chaos = p.chaos(
        &p.b,
        B_IF,
        &ChaosConfig {
            drop_ppm: 1_000_000,
            ..all_ip_to_b()
        },
    );
    assert_eq!(ping(&p.a, B_V4, 5), 0);
    let c = chaos.counters().unwrap();
    assert_eq!(c.packets(ChaosCounter::Dropped), 5, "{c}");
    assert_eq!(c.packets(ChaosCounter::Seen), 5, "{c}");
}

#[test]
fn drop_zero_passes_every_ping() {
    let p = Pair::new("d0");
    let chaos = p.chaos(&p.b, B_IF, &all_ip_to_b());
    assert_eq!(ping(&p.a, B_V4, 10), 10);
    let c = chaos.counters().unwrap();
    assert_eq!(c.packets(ChaosCounter::Seen), 10, "{c}");
    assert_eq!(c.packets(ChaosCounter::Dropped), 0, "{c}");
}

#[test]
fn drop_thirty_percent_loses_some_not_all() {
    let p = Pair::new("d30");
    let chaos = p.chaos(
        &p.b,
        B_IF,
        &ChaosConfig {
            drop_ppm: sluice_bpf::ppm_from_percent(30.0).unwrap(),
            ..all_ip_to_b()
        },
    );
    // P(no loss) = 0.7^100, P(all lost) = 0.3^100.
    let n = 100;
    let received = ping(&p.a, B_V4, n);
    let lost = n - received;
    assert!(lost > 0 && lost < n, "lost {lost} of {n}");
    let c = chaos.counters().unwrap();
    assert_eq!(c.packets(ChaosCounter::Dropped), lost as u64, "{c}");
    assert_eq!(c.packets(ChaosCounter::Seen), n as u64, "{c}");
}

fn listen(p: &Pair, port: u16) -> TcpListener {
    in_ns(&p.b, || TcpListener::bind((B_V4, port)).expect("listen"))
}

fn connect(p: &Pair, port: u16) -> std::io::Result<TcpStream> {
    let to: SocketAddr = format!("{B_V4}:{port}").parse().unwrap();
    in_ns(&p.a, || {
        TcpStream::connect_timeout(&to, Duration::from_secs(10))
    })
}

#[test]
fn first_synack_dropped_connect_still_succeeds() {
    let p = Pair::new("syn");
    let listener = listen(&p, 7001);
    let chaos = p.chaos(
        &p.a,
        A_IF,
        &ChaosConfig {
            drop_synack: Some(SynackDrop::First(1)),
            port: Some(7001),
            ..Default::default()
        },
    );
    let _client = connect(&p, 7001).expect("connect succeeds after a retransmission");
    let _server = listener.accept().expect("accept");
    let c = chaos.counters().unwrap();
    assert_eq!(c.packets(ChaosCounter::SynackDropped), 1, "{c}");
}

#[test]
fn mss_rewrite_is_seen_by_the_peer() {
    let p = Pair::new("mss");
    let listener = listen(&p, 7002);
    let chaos = p.chaos(
        &p.b,
        B_IF,
        &ChaosConfig {
            mss: Some(1000),
            port: Some(7002),
            ..Default::default()
        },
    );
    let _client = connect(&p, 7002).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    let mss = nix::sys::socket::getsockopt(&server, nix::sys::socket::sockopt::TcpMaxSeg)
        .expect("TCP_MAXSEG");
    // 1000 less the timestamp option; 1448 without the rewrite.
    assert!((900..=1000).contains(&mss), "TCP_MAXSEG {mss}");
    let c = chaos.counters().unwrap();
    assert_eq!(c.packets(ChaosCounter::MssRewritten), 1, "{c}");
}

#[test]
fn forged_rst_resets_a_kernel_connection() {
    let p = Pair::new("rst");
    let listener = listen(&p, 7003);
    let mut client = connect(&p, 7003).expect("connect");
    let (mut server, _) = listener.accept().expect("accept");
    // The connection works before chaos.
    client.write_all(b"ping").unwrap();
    let mut buf = [0u8; 16];
    server
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(server.read(&mut buf).unwrap(), 4);

    let chaos = p.chaos(
        &p.b,
        B_IF,
        &ChaosConfig {
            rst_ppm: 1_000_000,
            port: Some(7003),
            ..Default::default()
        },
    );
    client.write_all(b"data").unwrap();
    let err = server.read(&mut buf).expect_err("the server sees a reset");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
    let c = chaos.counters().unwrap();
    assert!(c.packets(ChaosCounter::RstForged) >= 1, "{c}");
}

/// Sends `n` datagrams from a to b:port; returns how many b received.
fn udp_count(p: &Pair, port: u16, n: u64) -> u64 {
    let rx = in_ns(&p.b, || UdpSocket::bind((B_V4, port)).expect("bind"));
    rx.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let tx = in_ns(&p.a, || UdpSocket::bind((A_V4, 0)).expect("bind"));
    for i in 0..n {
        tx.send_to(&i.to_be_bytes(), (B_V4, port)).unwrap();
    }
    let mut got = 0;
    let mut buf = [0u8; 64];
    // Bounded: ends at the first 500 ms without a datagram.
    while got < 10 * n && rx.recv(&mut buf).is_ok() {
        got += 1;
    }
    got
}

#[test]
fn duplicated_datagrams_arrive_twice() {
    let p = Pair::new("dup");
    let chaos = p.chaos(
        &p.a,
        A_IF,
        &ChaosConfig {
            dup_ppm: 1_000_000,
            all_ip: true,
            port: Some(7004),
            ..Default::default()
        },
    );
    assert!(chaos.has_egress_hook());
    assert_eq!(udp_count(&p, 7004, 20), 40);
    let c = chaos.counters().unwrap();
    assert_eq!(c.packets(ChaosCounter::Duplicated), 20, "{c}");
    assert_eq!(c.packets(ChaosCounter::EgressSeen), 20, "{c}");
}

#[test]
fn corrupted_datagrams_are_dropped_by_the_receiver() {
    let p = Pair::new("cor");
    let chaos = p.chaos(
        &p.b,
        B_IF,
        &ChaosConfig {
            corrupt_ppm: 1_000_000,
            all_ip: true,
            port: Some(7005),
            ..Default::default()
        },
    );
    assert_eq!(udp_count(&p, 7005, 10), 0);
    let c = chaos.counters().unwrap();
    assert_eq!(c.packets(ChaosCounter::Corrupted), 10, "{c}");
}

/// Kinds of the live BPF links that hold program `prog_id` ("xdp", "tcx").
fn links_of(prog_id: u32) -> Vec<&'static str> {
    use libbpf_rs::query::{LinkInfoIter, LinkTypeInfo};
    LinkInfoIter::default()
        .filter(|l| l.prog_id == prog_id)
        .map(|l| match l.info {
            LinkTypeInfo::Xdp(_) => "xdp",
            LinkTypeInfo::Tcx(_) => "tcx",
            _ => "other",
        })
        .collect()
}

/// Ids of the XDP and tc programs of an attached chaos.
fn prog_ids(chaos: &Chaos) -> (u32, u32) {
    let id = |fd| libbpf_rs::Program::id_from_fd(fd).expect("program id");
    (
        id(chaos.program().prog_fd()),
        id(chaos.program().tc_prog_fd()),
    )
}

/// `ip -d link show` of the interface says nothing about XDP, and no tc
/// qdisc (hence no filter) was ever added.
fn assert_clean(ns: &str, ifname: &str) {
    let ip = sh(&["ip", "-n", ns, "-d", "link", "show", "dev", ifname]);
    assert!(!ip.contains("xdp"), "{ip}");
    let qdisc = sh(&["tc", "-n", ns, "qdisc", "show", "dev", ifname]);
    assert!(
        !qdisc.contains("clsact") && !qdisc.contains("ingress"),
        "{qdisc}"
    );
}

#[test]
fn nothing_stays_attached_after_drop_or_panic() {
    let p = Pair::new("clean");
    assert_clean(&p.b, B_IF);
    let chaos = p.chaos(&p.b, B_IF, &all_ip_to_b());
    let (xdp, tc) = prog_ids(&chaos);
    assert_eq!(links_of(xdp), ["xdp"]);
    assert_eq!(links_of(tc), ["tcx"]);
    let ip = sh(&["ip", "-n", &p.b, "-d", "link", "show", "dev", B_IF]);
    assert!(ip.contains("sluice_chaos"), "{ip}");
    drop(chaos);
    assert!(links_of(xdp).is_empty() && links_of(tc).is_empty());
    assert_clean(&p.b, B_IF);

    // Unwinding drops it too.
    let b = p.b.clone();
    let ids = std::sync::Mutex::new((0, 0));
    let r = std::panic::catch_unwind(|| {
        let chaos = Chaos::attach_with(
            B_IF,
            &ChaosConfig::default(),
            &ChaosOptions {
                netns: Some(b),
                ..Default::default()
            },
        )
        .unwrap();
        *ids.lock().unwrap() = prog_ids(&chaos);
        panic!("test panic with chaos attached");
    });
    assert!(r.is_err());
    let (xdp, tc) = *ids.lock().unwrap();
    assert!(xdp != 0 && links_of(xdp).is_empty() && links_of(tc).is_empty());
    assert_clean(&p.b, B_IF);
}

#[test]
fn the_topology_placeholder_is_put_back_after_chaos() {
    const PLACEHOLDER: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/sluice_peer.bpf.o"));
    let p = Pair::new("peer");
    let path = std::env::temp_dir().join(format!("chx-peer-{}.bpf.o", std::process::id()));
    std::fs::write(&path, PLACEHOLDER).unwrap();
    sh(&[
        "ip",
        "-n",
        &p.b,
        "link",
        "set",
        "dev",
        B_IF,
        "xdpdrv",
        "obj",
        path.to_str().unwrap(),
        "sec",
        "xdp",
    ]);
    let _ = std::fs::remove_file(&path);
    let show = || sh(&["ip", "-n", &p.b, "-d", "link", "show", "dev", B_IF]);
    assert!(show().contains("sluice_peer"), "{}", show());
    let chaos = p.chaos(&p.b, B_IF, &all_ip_to_b());
    let ip = show();
    assert!(
        ip.contains("sluice_chaos") && !ip.contains("sluice_peer"),
        "{ip}"
    );
    drop(chaos);
    // Back as it was: the placeholder in native mode, through netlink.
    let ip = show();
    assert!(
        ip.contains("sluice_peer") && !ip.contains("xdpgeneric") && !ip.contains("sluice_chaos"),
        "{ip}"
    );
}

#[test]
fn unknown_interface_and_namespace_are_named() {
    common::require_root();
    let e = Chaos::attach("chx-nope0", &ChaosConfig::default())
        .err()
        .expect("no such interface");
    assert!(e.to_string().contains("chx-nope0"), "{e}");
    let e = Chaos::attach_with(
        "lo",
        &ChaosConfig::default(),
        &ChaosOptions {
            netns: Some("chx-no-such-ns".into()),
            ..Default::default()
        },
    )
    .err()
    .expect("no such netns");
    assert!(e.to_string().contains("chx-no-such-ns"), "{e}");
}
