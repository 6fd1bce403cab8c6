//! sluice's TCP stack and HTTP/1.1 server against the Linux kernel as the
//! peer: curl, wrk and kernel sockets from the client namespace, on 1 and
//! 2 queues, plus the attacks an edge sees (SYN flood, blind injection) and
//! awkward peers (zero window, tiny MSS, killed mid-transfer). Root only;
//! never skips.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::http::*;
use common::*;
use nix::sys::signal::Signal;
use serde_json::Value;
use sluice_bench::netns;
use sluice_bench::topology::{addr, ifname};

const PORT: u16 = 80;

fn vip4() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(addr::GW_VIP_V4), PORT)
}

fn vip6() -> SocketAddr {
    SocketAddr::new(IpAddr::V6(addr::GW_VIP_V6), PORT)
}

fn args(topo: &Topo, queues: u32, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "--iface",
        ifname::GW,
        "--stats-format",
        "json",
        "--stats-interval",
        "0.5",
        "--http",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.push(vip4().to_string());
    a.push("--http".into());
    a.push(vip6().to_string());
    a.push("--queues".into());
    a.push(format!("0-{}", queues - 1));
    a.push("--pin-dir".into());
    a.push(topo.pin_dir().display().to_string());
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a counter: {v}"))
}

/// With more than one queue, every loop terminated connections: the
/// topology spreads flows by hash (its RSS emulation), so a queue that
/// accepted none would mean the multi-queue path went untested.
fn every_queue_accepted(fin: &Value, queues: u32) {
    let per_queue = fin["queues"].as_array().expect("per-queue counters");
    assert_eq!(per_queue.len(), queues as usize, "{fin}");
    if queues > 1 {
        for q in per_queue {
            assert!(
                u(&q["tcp_accepts"]) > 0,
                "queue {} accepted no connection: {q}",
                q["queue"]
            );
        }
    }
}

/// Run `f` on a thread inside the client namespace.
fn in_client<T: Send>(topo: &Topo, f: impl FnOnce() -> T + Send) -> T {
    netns::run_in(&topo.client(), f).expect("entering the client namespace")
}

fn curl(ns: &str, extra: &[&str]) -> Vec<u8> {
    let out = netns::command(ns, "curl")
        .args(["-sS", "--fail", "--max-time", "60"])
        .args(extra)
        .output()
        .expect("running curl (scripts/install-deps.sh installs it)");
    assert!(
        out.status.success(),
        "curl {extra:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Stop with SIGTERM; the final report, checked for books that balance and
/// a stack that let go of every connection and buffer.
fn stop_clean(dp: &mut Dataplane) -> Value {
    let status = dp.stop(Signal::SIGTERM);
    assert!(status.success(), "exit {status}:\n{}", dp.stderr_text());
    let fin = dp.last_report("final").expect("no final JSON report");
    assert_eq!(fin["balanced"], true, "books do not balance: {fin}");
    assert!(
        !dp.stderr_text().contains("panicked"),
        "{}",
        dp.stderr_text()
    );
    fin
}

/// Until the live counters show no connection and no buffer held (bounded).
fn wait_until_idle(dp: &Dataplane, within: Duration) -> Value {
    wait_for_totals(dp, within, "connections or buffers still held", |t| {
        u(&t["tcp_connections"]) == 0 && u(&t["tcp_mem_bytes"]) == 0
    })
}

fn serve_http(queues: u32) {
    let topo = Topo::up(&format!("h{queues}"), queues);
    let client = topo.client();
    let mut dp = Dataplane::start(&topo.gw(), &args(&topo, queues, &[]));

    // curl over IPv4 and IPv6.
    assert_eq!(
        curl(&client, &["http://198.18.0.100/health"]),
        b"ok\n".to_vec()
    );
    assert_eq!(
        curl(&client, &["-6", "http://[2001:2::100]/health"]),
        b"ok\n".to_vec()
    );
    for n in [0u64, 1, 250, 251, 252, 1460, 65_536, 1_000_003] {
        let body = curl(&client, &[&format!("http://198.18.0.100/bytes/{n}")]);
        assert_eq!(body.len() as u64, n);
        assert_eq!(sha256(&body), pattern_sha256(n), "/bytes/{n} differs");
    }
    let upload: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let file = std::env::temp_dir().join(format!("sluice-upload-{}", std::process::id()));
    std::fs::write(&file, &upload).unwrap();
    let echoed = curl(
        &client,
        &[
            "-X",
            "POST",
            "--data-binary",
            &format!("@{}", file.display()),
            "http://[2001:2::100]/echo",
        ],
    );
    std::fs::remove_file(&file).unwrap();
    assert_eq!(sha256(&echoed), sha256(&upload), "POST /echo differs");

    // Kernel sockets: keep-alive, pipelining, 20 MB each way, both families.
    in_client(&topo, || {
        for to in [vip4(), vip6()] {
            let mut s = connect(to);
            for i in 0..100u64 {
                let r = get(&mut s, &format!("/bytes/{i}"), false);
                assert_eq!((r.status, r.sha256), (200, pattern_sha256(i)));
            }
            let mut burst = String::new();
            for i in 0..10 {
                burst.push_str(&format!(
                    "GET /bytes/{} HTTP/1.1\r\nHost: x\r\n\r\n",
                    i * 1000
                ));
            }
            s.write_all(burst.as_bytes()).unwrap();
            for i in 0..10u64 {
                let r = read_response(&mut s);
                assert_eq!(r.sha256, pattern_sha256(i * 1000), "pipelined response {i}");
            }
            let r = get(&mut s, "/bytes/20000000", false);
            assert_eq!(r.sha256, pattern_sha256(20_000_000));
            let body: Vec<u8> = (0..20_000_000u32).map(|i| (i % 253) as u8).collect();
            let r = post_echo(&mut s, &body);
            assert_eq!((r.status, r.sha256), (200, sha256(&body)));
            let r = get(&mut s, "/health", true);
            assert_eq!(r.status, 200);
            expect_eof(&mut s);
        }
    });

    // wrk: many connections at once, no errors.
    let out = netns::command(&client, "wrk")
        .args([
            "-t1",
            "-c64",
            "-d2s",
            "--latency",
            "http://198.18.0.100/bytes/64",
        ])
        .output()
        .expect("running wrk (scripts/install-deps.sh installs it)");
    let w = sluice_bench::http_bench::parse_wrk(&String::from_utf8_lossy(&out.stdout))
        .expect("wrk output");
    assert!(w.requests > 100, "wrk: {w:?}");
    assert_eq!((w.errors, w.non_2xx), (0, 0), "wrk: {w:?}");

    let live = wait_until_idle(&dp, Duration::from_secs(10));
    let fin = stop_clean(&mut dp);
    let t = &fin["total"];
    assert!(u(&t["http_requests"]) >= w.requests, "{t}");
    assert_eq!(u(&t["http_4xx"]) + u(&t["http_5xx"]), 0, "{t}");
    assert_eq!(u(&t["tcp_tx_no_neighbour"]), 0, "{t}");
    assert_eq!(u(&t["tcp_handoff_overflow"]), 0, "{t}");
    assert_eq!(u(&t["tcp_handoff_out"]), u(&t["tcp_handoff_in"]), "{t}");
    every_queue_accepted(&fin, queues);
    let _ = live;
    assert!(!xdp_attached(&topo.gw(), ifname::GW));
}

#[test]
fn http_on_one_queue() {
    serve_http(1);
}

#[test]
fn http_on_two_queues() {
    serve_http(2);
}

#[test]
fn ten_thousand_sequential_connections() {
    let topo = Topo::up("seq", 1);
    let mut dp = Dataplane::start(&topo.gw(), &args(&topo, 1, &[]));
    in_client(&topo, || {
        for i in 0..10_000 {
            let to = if i % 2 == 0 { vip4() } else { vip6() };
            let mut s = connect(to);
            let r = get(&mut s, "/health", true);
            assert_eq!(r.status, 200, "connection {i}");
            expect_eof(&mut s);
        }
    });
    wait_until_idle(&dp, Duration::from_secs(10));
    let fin = stop_clean(&mut dp);
    let t = &fin["total"];
    assert!(u(&t["tcp_accepts"]) >= 10_000, "{t}");
    assert!(u(&t["http_2xx"]) >= 10_000, "{t}");
}

#[test]
fn thousand_concurrent_connections() {
    let topo = Topo::up("conc", 2);
    let mut dp = Dataplane::start(&topo.gw(), &args(&topo, 2, &[]));
    in_client(&topo, || {
        let mut conns: Vec<TcpStream> = (0..1000)
            .map(|i| connect(if i % 2 == 0 { vip4() } else { vip6() }))
            .collect();
        for (i, s) in conns.iter_mut().enumerate() {
            write!(s, "GET /bytes/{i} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        }
        for (i, s) in conns.iter_mut().enumerate() {
            let r = read_response(s);
            assert_eq!(r.sha256, pattern_sha256(i as u64), "connection {i}");
        }
        // All still open: a second round on every connection.
        for s in conns.iter_mut() {
            assert_eq!(get(s, "/health", false).status, 200);
        }
    });
    wait_until_idle(&dp, Duration::from_secs(10));
    let fin = stop_clean(&mut dp);
    assert!(u(&fin["total"]["tcp_accepts"]) >= 1000, "{fin}");
    every_queue_accepted(&fin, 2);
}

/// Map CPU n to TX queue n on `iface` (XPS), so the queue a frame leaves on
/// is the CPU that sent it.
fn xps_one_queue_per_cpu(ns: &str, iface: &str, queues: u32) {
    let script: Vec<String> = (0..queues)
        .map(|q| {
            format!(
                "echo {:x} > /sys/class/net/{iface}/queues/tx-{q}/xps_cpus",
                1u64 << q
            )
        })
        .collect();
    sh_in(ns, &script.join(" && "));
}

/// A flow that moves to another queue mid-connection (the peer rehashed,
/// RSS moved it) stays one connection: the loop that does not own it hands
/// its segments to the owner. Instead of the topology's RSS emulation
/// (flow hash), XPS on the bridge port toward the gateway makes the
/// gateway's RX queue the client's CPU (veth delivers TX queue n to RX
/// queue n, and the bridge forwards on the sending CPU), so a client that
/// migrates between CPUs moves its flow between the queues.
#[test]
fn a_flow_that_moves_between_queues_stays_one_connection() {
    let topo = Topo::up("move", 2);
    let br = topo.topo.bridge_ns();
    sluice_bench::topology::rss::detach(&sluice_bench::exec::Shell::default(), &br, ifname::BR_GW)
        .expect("removing the RSS emulation");
    xps_one_queue_per_cpu(&br, ifname::BR_GW, 2);
    let mut dp = Dataplane::start(&topo.gw(), &args(&topo, 2, &[]));
    let upload: Vec<u8> = (0..1_000_000u32).map(|i| (i % 239) as u8).collect();
    in_client(&topo, || {
        for to in [vip4(), vip6()] {
            let on_cpu = |n: usize| {
                assert!(core_affinity::set_for_current(core_affinity::CoreId {
                    id: n
                }))
            };
            on_cpu(0);
            let mut s = connect(to);
            for i in 0..20 {
                on_cpu(i % 2);
                let r = get(&mut s, "/bytes/100000", false);
                assert_eq!(
                    (r.status, r.sha256),
                    (200, pattern_sha256(100_000)),
                    "request {i} to {to}"
                );
            }
            on_cpu(1);
            let r = post_echo(&mut s, &upload);
            assert_eq!(r.sha256, sha256(&upload), "echo to {to}");
            on_cpu(0);
            assert_eq!(get(&mut s, "/health", true).status, 200);
            expect_eof(&mut s);
        }
    });
    wait_until_idle(&dp, Duration::from_secs(10));
    let fin = stop_clean(&mut dp);
    let t = &fin["total"];
    assert_eq!(u(&t["tcp_accepts"]), 2, "one connection per family: {t}");
    assert!(
        u(&t["tcp_handoff_in"]) > 0,
        "the flows never changed queues: {t}"
    );
    assert_eq!(u(&t["tcp_handoff_out"]), u(&t["tcp_handoff_in"]), "{t}");
    assert_eq!(u(&t["tcp_handoff_overflow"]), 0, "{t}");
    assert_eq!(u(&t["tcp_rst_out"]) + u(&t["tcp_rst_in"]), 0, "{t}");
}

/// A child process that prints JSON lines and reads commands on stdin,
/// killed (by its PID) if the test fails first. `ip netns exec` execs the
/// program, so the PID is the program's.
struct LineChild {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl LineChild {
    fn spawn(mut cmd: std::process::Command) -> Self {
        use std::io::BufRead;
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning /usr/bin/python3 (Debian's, with python3-scapy)");
        let out = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        Self {
            child,
            lines,
            stderr: Some(stderr),
        }
    }

    fn stderr_text(&mut self) -> String {
        self.stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default()
    }

    /// The next line, parsed; the child's stderr in the panic if it
    /// exits or stays silent for `within`.
    fn json_line(&mut self, within: Duration, what: &str) -> Value {
        match self.lines.recv_timeout(within) {
            Ok(line) => serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {line}")),
            Err(_) => {
                let _ = self.child.kill();
                let status = self.child.wait().unwrap();
                panic!(
                    "{what}: nothing within {within:?} (exit {status}):\n{}",
                    self.stderr_text()
                );
            }
        }
    }

    fn say(&mut self, line: &str) {
        if let Err(e) = writeln!(self.child.stdin.as_mut().unwrap(), "{line}") {
            panic!("writing to the child: {e}\n{}", self.stderr_text());
        }
    }

    /// Waits (bounded) for a successful exit.
    fn finish(mut self, within: Duration) {
        let deadline = Instant::now() + within;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "still running after {within:?}");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "exit {status}:\n{}", self.stderr_text());
    }
}

impl Drop for LineChild {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The per-queue counters of queue `q` in a report.
fn queue_counters(report: &Value, q: usize) -> &Value {
    report["queues"]
        .as_array()
        .expect("per-queue counters")
        .iter()
        .find(|c| c["queue"] == q)
        .unwrap_or_else(|| panic!("no queue {q} in {report}"))
}

/// A FIN retransmitted after the gateway entered TIME_WAIT, arriving on
/// another queue, gets its ACK, not a RST: with more than one loop a
/// connection in TIME_WAIT stays claimed in the ownership directory until
/// its TIME_WAIT entry ends, so the loop the FIN lands on hands it to the
/// owner, whose entry ACKs it. (Released at close, the other loop would
/// claim the tuple and reset the FIN as a segment of no connection: a peer
/// whose ACK of our FIN was lost would see a RST instead of a clean close.)
/// As in the test above, XPS on the bridge port makes the client's CPU the
/// gateway's RX queue. The client is scapy (tests/fin_in_time_wait.py), so
/// that the FIN can be sent again, byte for byte, after the close: one
/// connection per family opened and closed from CPU 0 (the gateway closes
/// first, `Connection: close`), then each FIN again from CPU 1, well within
/// the 30 s of TIME_WAIT. The per-queue counters prove where each segment
/// landed.
#[test]
fn a_fin_retransmitted_onto_another_queue_in_time_wait_is_acked_not_reset() {
    const FIRST: usize = 0; // the CPU, hence the queue, of the connections
    const AGAIN: usize = 1; // of the retransmitted FINs
    let topo = Topo::up("twfin", 2);
    let br = topo.topo.bridge_ns();
    sluice_bench::topology::rss::detach(&sluice_bench::exec::Shell::default(), &br, ifname::BR_GW)
        .expect("removing the RSS emulation");
    xps_one_queue_per_cpu(&br, ifname::BR_GW, 2);
    let mut dp = Dataplane::start(&topo.gw(), &args(&topo, 2, &[]));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fin_in_time_wait.py");
    // Client addresses no interface holds: the client's kernel drops the
    // gateway's segments to them instead of resetting them.
    let flows = [
        ("198.18.0.60", addr::GW_VIP_V4.to_string()),
        ("2001:2::60", addr::GW_VIP_V6.to_string()),
    ];
    let mut clients: Vec<(String, LineChild, Value)> = flows
        .into_iter()
        .map(|(src, dst)| {
            let (port, first, again) = (PORT.to_string(), FIRST.to_string(), AGAIN.to_string());
            let mut cmd = netns::command(&topo.client(), "/usr/bin/python3");
            cmd.args([script, ifname::CLIENT, src, &dst, &port, &first, &again]);
            let mut client = LineChild::spawn(cmd);
            let what = format!("scapy client {src} -> {dst}");
            let closed = client.json_line(Duration::from_secs(60), &what)["closed"].clone();
            assert!(closed.is_object(), "{what}: {closed}");
            (what, client, closed)
        })
        .collect();

    // Both connections are in TIME_WAIT on queue FIRST, and no segment of
    // them has changed queues yet.
    let r = wait_for_totals(
        &dp,
        Duration::from_secs(10),
        "the connections never reached TIME_WAIT",
        |t| u(&t["tcp_time_wait"]) == 2 && u(&t["tcp_connections"]) == 0,
    );
    let (owner, other) = (queue_counters(&r, FIRST), queue_counters(&r, AGAIN));
    assert_eq!(u(&owner["tcp_accepts"]), 2, "{r}");
    assert_eq!(u(&owner["tcp_time_wait"]), 2, "{r}");
    assert_eq!(u(&other["tcp_accepts"]), 0, "{r}");
    for q in [owner, other] {
        assert_eq!(
            u(&q["tcp_handoff_out"]) + u(&q["tcp_handoff_in"]),
            0,
            "a segment changed queues before the retransmitted FINs: {r}"
        );
    }

    // Each FIN again from CPU AGAIN: one reply, the ACK of that FIN.
    for (k, (what, mut client, closed)) in clients.drain(..).enumerate() {
        let k = k as u64 + 1; // FINs sent again so far
        client.say("go");
        let got = client.json_line(Duration::from_secs(30), &what);
        client.finish(Duration::from_secs(10));
        assert_eq!(got["early"], serde_json::json!([]), "{what}: {got}");
        let replies = got["replies"].as_array().expect("replies");
        assert_eq!(replies.len(), 1, "{what}: one reply expected: {got}");
        let reply = &replies[0];
        assert_eq!(
            reply["flags"], "A",
            "{what}: the retransmitted FIN was not answered with a pure ACK: {got}"
        );
        let next = |v: &Value| (u(v) + 1) % (1 << 32);
        assert_eq!(u(&reply["ack"]), next(&closed["fin_seq"]), "{what}: {got}");
        assert_eq!(
            u(&reply["seq"]),
            next(&closed["gw_fin_seq"]),
            "{what}: {got}"
        );

        // It landed on queue AGAIN and went to queue FIRST, which answered.
        let r = wait_for_totals(
            &dp,
            Duration::from_secs(10),
            "the FIN never reached the owning loop",
            |t| u(&t["tcp_handoff_in"]) == k,
        );
        let (owner, other) = (queue_counters(&r, FIRST), queue_counters(&r, AGAIN));
        assert_eq!(u(&other["tcp_handoff_out"]), k, "{what}: {r}");
        assert_eq!(u(&owner["tcp_handoff_in"]), k, "{what}: {r}");
        assert_eq!(u(&other["tcp_accepts"]), 0, "{what}: {r}");
    }
    let fin = stop_clean(&mut dp);
    let t = &fin["total"];
    assert_eq!(u(&t["tcp_accepts"]), 2, "{t}");
    assert_eq!(u(&t["http_2xx"]), 2, "{t}");
    assert_eq!(u(&t["tcp_rst_out"]), 0, "{t}");
    assert_eq!(u(&t["tcp_handoff_overflow"]), 0, "{t}");
}

/// A TCP socket in the current namespace with options set before connect().
fn socket_with(to: SocketAddr, set: impl FnOnce(std::os::fd::BorrowedFd<'_>)) -> TcpStream {
    use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, SockaddrStorage};
    use std::os::fd::AsFd;
    let family = if to.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).unwrap();
    set(fd.as_fd());
    connect(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrStorage::from(to),
    )
    .unwrap_or_else(|e| panic!("connecting to {to}: {e}"));
    let s = TcpStream::from(fd);
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s
}

#[test]
fn zero_window_peer_and_tiny_mss() {
    let topo = Topo::up("zw", 1);
    let mut dp = Dataplane::start(&topo.gw(), &args(&topo, 1, &[]));
    in_client(&topo, || {
        // A receiver that stops reading: its window closes, the stack
        // probes, and when it reads again everything arrives intact.
        let mut s = socket_with(vip4(), |fd| {
            nix::sys::socket::setsockopt(&fd, nix::sys::socket::sockopt::RcvBuf, &4096).unwrap();
        });
        write!(s, "GET /bytes/3000000 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let r = read_response_slowly(&mut s, Some(Duration::from_secs(3)));
        assert_eq!(r.sha256, pattern_sha256(3_000_000));

        // MSS 100 on both families: many small segments, both directions.
        for to in [vip4(), vip6()] {
            let mut s = socket_with(to, |fd| {
                nix::sys::socket::setsockopt(&fd, nix::sys::socket::sockopt::TcpMaxSeg, &100)
                    .unwrap();
            });
            let r = get(&mut s, "/bytes/300000", false);
            assert_eq!(r.sha256, pattern_sha256(300_000));
            let body: Vec<u8> = (0..200_000u32).map(|i| (i % 241) as u8).collect();
            let r = post_echo(&mut s, &body);
            assert_eq!(r.sha256, sha256(&body));
        }
    });
    wait_until_idle(&dp, Duration::from_secs(10));
    let fin = stop_clean(&mut dp);
    assert!(u(&fin["total"]["tcp_zero_window_probes"]) > 0, "{fin}");
}

#[test]
fn killed_transfers_leave_no_state() {
    let topo = Topo::up("kill", 2);
    let mut dp = Dataplane::start(&topo.gw(), &args(&topo, 2, &[]));
    // A socket closed with unread data (the kernel answers with RST)...
    in_client(&topo, || {
        let mut s = connect(vip4());
        write!(s, "GET /bytes/1000000000 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0;
        while got < 20_000_000 {
            got += s.read(&mut buf).unwrap();
        }
    });
    // ...and curl killed with SIGKILL halfway through a 1 GB download.
    let mut child = netns::command(&topo.client(), "curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "http://[2001:2::100]/bytes/1000000000",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "curl finished 1 GB too soon"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    wait_until_idle(&dp, Duration::from_secs(20));
    let fin = stop_clean(&mut dp);
    assert!(u(&fin["total"]["tcp_rst_in"]) >= 2, "{fin}");
}

#[test]
fn syn_flood_does_not_stop_service() {
    let topo = Topo::up("syn", 1);
    let mut dp = Dataplane::start(&topo.gw(), &args(&topo, 1, &["--tcp-backlog", "64"]));
    let client = topo.client();
    // An unused address of the topology as the spoofed source: its SYN-ACKs
    // reach the client's MAC and its kernel drops them.
    let mut flood = netns::command(&client, "hping3")
        .args([
            "--flood",
            "-S",
            "-p",
            "80",
            "-a",
            "198.18.0.77",
            "198.18.0.100",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("running hping3 (scripts/install-deps.sh installs it)");
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let mut ok = 0;
    for _ in 0..20 {
        let body = curl(&client, &["--max-time", "10", "http://198.18.0.100/health"]);
        assert_eq!(body, b"ok\n".to_vec());
        ok += 1;
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(flood.id() as i32),
        Signal::SIGINT,
    );
    let _ = flood.wait();
    assert_eq!(ok, 20);
    eprintln!("20 requests under the flood took {:?}", started.elapsed());
    let fin = stop_clean(&mut dp);
    let t = &fin["total"];
    assert!(
        u(&t["tcp_cookies_sent"]) > 100,
        "no SYN cookies under a flood: {t}"
    );
    assert!(
        u(&t["tcp_connections"]) <= 64 + 20,
        "the flood made state: {t}"
    );
}

#[test]
fn blind_injection_does_not_tear_down_a_connection() {
    let topo = Topo::up("inj", 1);
    let mut dp = Dataplane::start(&topo.gw(), &args(&topo, 1, &[]));
    let client = topo.client();
    // A live connection; scapy learns its sequence numbers from one request
    // and then forges, from the client's address and port: a RST in the
    // window but not at RCV.NXT, a RST far outside it, a SYN, data with an
    // ACK for bytes never sent, and data outside the window.
    let mut s = in_client(&topo, || connect(vip4()));
    let lport = s.local_addr().unwrap().port();
    let script = format!(
        r#"
import threading, time
flt = 'tcp and src port {lport} and dst port 80 and (tcp[13] & 8 != 0)'
sn = AsyncSniffer(iface='{iface}', filter=flt, count=1, timeout=15)
sn.start()
time.sleep(1)
open('/tmp/sluice-inj-{lport}', 'w').write('go')
sn.join()
p = sn.results[0]
seq = p[TCP].seq + len(p[TCP].payload)
ack = p[TCP].ack
base = Ether(src=p[Ether].src, dst=p[Ether].dst)/IP(src=p[IP].src, dst=p[IP].dst)
w = lambda v: v % 2**32
t = lambda **kw: TCP(sport={lport}, dport=80, **kw)
time.sleep(0.5)
pkts = [
  base/t(flags='R', seq=w(seq + 5000)),
  base/t(flags='R', seq=w(seq + 2**30)),
  base/t(flags='S', seq=12345),
  base/t(flags='PA', seq=seq, ack=w(ack + 2**30))/Raw(b'GET /bytes/1 HTTP/1.1\r\n\r\n'),
  base/t(flags='PA', seq=w(seq + 2**30), ack=ack)/Raw(b'GET /bytes/2 HTTP/1.1\r\n\r\n'),
]
for x in pkts:
    sendp(x, iface='{iface}')
    time.sleep(0.05)
"#,
        iface = ifname::CLIENT
    );
    let marker = format!("/tmp/sluice-inj-{lport}");
    let _ = std::fs::remove_file(&marker);
    let sniffer = std::thread::spawn({
        let client = client.clone();
        move || scapy(&client, &script)
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::path::Path::new(&marker).exists() {
        assert!(Instant::now() < deadline, "scapy did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = get(&mut s, "/bytes/1000", false);
    assert_eq!(r.sha256, pattern_sha256(1000));
    sniffer.join().expect("scapy");
    std::fs::remove_file(&marker).unwrap();
    // The connection survived every forgery, and no forged request was
    // answered: the next response is the next one asked for.
    let r = get(&mut s, "/bytes/4321", false);
    assert_eq!((r.status, r.sha256), (200, pattern_sha256(4321)));
    drop(s);
    let fin = stop_clean(&mut dp);
    let t = &fin["total"];
    assert!(u(&t["tcp_challenge_acks"]) >= 2, "no challenge ACKs: {t}");
    // Both forged RSTs were rejected (one challenged, one out of window):
    // tcp_rst_in counts accepted RSTs only.
    assert_eq!(u(&t["tcp_rst_in"]), 0, "a rejected RST was counted: {t}");
    assert!(u(&t["tcp_rst_ignored"]) >= 2, "forged RSTs not seen: {t}");
    assert_eq!(
        u(&t["http_requests"]),
        2,
        "a forged request was served: {t}"
    );
}

#[test]
fn http_timeouts_close_idle_and_stalled_connections() {
    let topo = Topo::up("tmo", 1);
    let mut dp = Dataplane::start(
        &topo.gw(),
        &args(
            &topo,
            1,
            &[
                "--http-idle-timeout-secs",
                "1",
                "--http-request-timeout-secs",
                "2",
                "--http-head-timeout-secs",
                "3",
            ],
        ),
    );
    // A download whose client stops reading (as kill -STOP would): no byte
    // moves once its receive buffer is full, so the first expiry closes
    // it gently and the second aborts it. Held open across the waits below.
    let stalled = in_client(&topo, || {
        let mut s = connect(vip4());
        write!(s, "GET /bytes/1000000000 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0;
        while got < 100_000 {
            got += s.read(&mut buf).unwrap();
        }
        s
    });
    in_client(&topo, || {
        // Idle after a request: the server closes it.
        let mut idle = connect(vip4());
        let r = get(&mut idle, "/health", false);
        assert_eq!(r.status, 200);
        // Half a request head (slowloris): 408, then EOF.
        let mut slow = connect(vip4());
        slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        for s in [&mut idle, &mut slow] {
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        }
        expect_eof(&mut idle);
        let mut got = Vec::new();
        slow.read_to_end(&mut got).expect("reading the 408");
        assert!(
            got.starts_with(b"HTTP/1.1 408 "),
            "{:?}",
            String::from_utf8_lossy(&got)
        );
        // A head that trickles in, one line a second: it always makes
        // progress, so only the head's total deadline (3 s) ends it.
        let mut trickle = connect(vip4());
        trickle.write_all(b"GET /health HTTP/1.1\r\n").unwrap();
        trickle
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        let mut got = Vec::new();
        let mut eof = false;
        for line in 0..12 {
            if trickle
                .write_all(format!("X-Line-{line}: 1\r\n").as_bytes())
                .is_err()
            {
                break;
            }
            let mut buf = [0u8; 4096];
            match trickle.read(&mut buf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(_) => {} // a second without an answer: next line
            }
        }
        assert!(
            got.starts_with(b"HTTP/1.1 408 ") && eof,
            "a trickled head must be cut off by its deadline: eof {eof}, {:?}",
            String::from_utf8_lossy(&got)
        );
    });
    wait_until_idle(&dp, Duration::from_secs(15));
    drop(stalled);
    let fin = stop_clean(&mut dp);
    let t = &fin["total"];
    // Idle, slowloris, trickled head, stalled download: one each, though
    // the stalled one expired twice (closed, then aborted).
    assert_eq!(u(&t["http_timeouts"]), 4, "{t}");
    assert_eq!(u(&t["http_head_timeouts"]), 1, "{t}");
    assert_eq!(u(&t["http_idle_timeouts"]), 1, "{t}");
    assert_eq!(u(&t["http_4xx"]), 2, "{t}");
}

/// An error answered while the request is still arriving (a 431 for a
/// 100 KB head, a 404 for a POST of megabytes): the server sends the
/// response and its FIN but keeps reading and dropping what the client
/// still sends until the client's FIN (a lingering close, like nginx's), so
/// the client's writes succeed, it reads the whole response and then EOF,
/// and no RST is sent. `Connection: close`, also with a request pipelined
/// behind it, ends the same way. Without the lingering close the server
/// answered every segment after its FIN with a RST: the client's writes
/// failed (EPIPE, ECONNRESET) and on a lossy path the response was lost.
#[test]
fn error_responses_while_the_request_streams_in_end_without_a_reset() {
    let topo = Topo::up("linger", 1);
    let mut dp = Dataplane::start(&topo.gw(), &args(&topo, 1, &[]));
    let more: Vec<u8> = (0..4_000_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let mut big_head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    big_head.extend(std::iter::repeat_n(b'h', 100_000));
    let post = format!(
        "POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        more.len()
    );
    in_client(&topo, || {
        // (to, request (`more` follows it), status, the client half-closes
        // before reading)
        let cases = [
            (vip4(), &big_head[..], 431, false),
            (vip6(), &big_head[..], 431, true),
            (vip4(), post.as_bytes(), 404, false),
            (vip6(), post.as_bytes(), 404, true),
        ];
        for (i, (to, request, status, half_close)) in cases.into_iter().enumerate() {
            let mut s = connect(to);
            s.write_all(request)
                .and_then(|()| s.write_all(&more))
                .unwrap_or_else(|e| panic!("case {i}: sending after the response: {e}"));
            if half_close {
                s.shutdown(std::net::Shutdown::Write).unwrap();
            }
            let r = read_response(&mut s);
            assert_eq!(r.status, status, "case {i}: {}", r.head);
            assert!(r.head.contains("Connection: close"), "case {i}: {}", r.head);
            expect_eof(&mut s);
        }
        // Connection: close, alone and with a request pipelined behind it.
        let mut s = connect(vip4());
        assert_eq!(get(&mut s, "/health", true).status, 200);
        expect_eof(&mut s);
        let mut s = connect(vip4());
        s.write_all(
            b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n\
              GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .unwrap();
        assert_eq!(read_response(&mut s).status, 200);
        expect_eof(&mut s);
    });
    // A client that neither sends nor closes after the response: the
    // linger ends (LINGER_QUIET) and the server lets go of the handle.
    let quiet = in_client(&topo, || {
        let mut s = connect(vip4());
        s.write_all(&big_head[..20_000]).unwrap();
        assert_eq!(read_response(&mut s).status, 431);
        expect_eof(&mut s);
        s
    });
    wait_for_totals(
        &dp,
        Duration::from_secs(30),
        "the linger never ended",
        |t| u(&t["http_linger_timeouts"]) == 1,
    );
    drop(quiet);
    wait_until_idle(&dp, Duration::from_secs(10));
    let fin = stop_clean(&mut dp);
    let t = &fin["total"];
    assert_eq!(u(&t["http_4xx"]), 5, "{t}");
    assert_eq!(u(&t["http_lingering_closes"]), 7, "{t}");
    assert_eq!(u(&t["http_linger_timeouts"]), 1, "{t}");
    assert_eq!(u(&t["tcp_rst_out"]), 0, "{t}");
    assert_eq!(u(&t["tcp_rst_in"]), 0, "{t}");
    assert_eq!(u(&t["tcp_connections"]), 0, "{t}");
    assert_eq!(u(&t["tcp_mem_bytes"]), 0, "{t}");
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `bash -o pipefail -c script` in namespace `ns`: its stdout, or a panic
/// with stderr. pipefail: `curl | sha256sum` must fail when curl does (a
/// timed-out transfer once passed for a corrupted one, hashing a prefix).
fn sh_in(ns: &str, script: &str) -> String {
    let out = netns::command(ns, "bash")
        .args(["-o", "pipefail", "-c", script])
        .output()
        .expect("running sh");
    assert!(
        out.status.success(),
        "`{script}` failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// 100 MB down and 100 MB up through curl, hashed on the fly, at each
/// random loss rate in each direction: the chaos XDP program drops on the
/// client's ingress (our segments) and on the bridge port's ingress (the
/// client's segments), port 80 only so ARP/ND are spared.
fn hundred_megabytes_each_way_at_loss(tag: &str, rates: &[f64]) {
    use sluice_bpf::{ppm_from_percent, Chaos, ChaosConfig, ChaosCounter, ChaosOptions, XdpMode};
    const SIZE: u64 = 100_000_000;
    let topo = Topo::up(tag, 1);
    let client = topo.client();
    let br = topo.topo.bridge_ns();
    let upload = std::env::temp_dir().join(format!("sluice-{tag}-{}", std::process::id()));
    let data: Vec<u8> = (0..SIZE).map(|i| (i * 31 % 255) as u8).collect();
    std::fs::write(&upload, &data).unwrap();
    let upload_sha = hex(&sha256(&data));
    drop(data);
    let download_sha = hex(&pattern_sha256(SIZE));

    for &percent in rates {
        let mut dp = Dataplane::start(&topo.gw(), &args(&topo, 1, &[]));
        let cfg = ChaosConfig {
            drop_ppm: ppm_from_percent(percent).unwrap(),
            port: Some(80),
            ..ChaosConfig::default()
        };
        let on = |iface: &str, ns: &str| {
            let opts = ChaosOptions {
                mode: XdpMode::Native,
                dup_hook: false,
                netns: Some(ns.to_string()),
            };
            Chaos::attach_with(iface, &cfg, &opts).expect("attaching chaos")
        };
        let down_loss = on(ifname::CLIENT, &client);
        let up_loss = on(ifname::BR_CLIENT, &br);

        let got = sh_in(
            &client,
            &format!("curl -sS --fail --max-time 300 http://198.18.0.100/bytes/{SIZE} | sha256sum"),
        );
        assert!(
            got.starts_with(&download_sha),
            "download at {percent}%: {got}"
        );
        let got = sh_in(
            &client,
            &format!(
                "curl -sS --fail --max-time 300 -H 'Expect:' --data-binary @{} \
                 http://[2001:2::100]/echo | sha256sum",
                upload.display()
            ),
        );
        assert!(got.starts_with(&upload_sha), "upload at {percent}%: {got}");

        let dropped_down = down_loss.counters().unwrap().packets(ChaosCounter::Dropped);
        let dropped_up = up_loss.counters().unwrap().packets(ChaosCounter::Dropped);
        drop(down_loss);
        drop(up_loss);
        wait_until_idle(&dp, Duration::from_secs(10));
        let fin = stop_clean(&mut dp);
        let t = &fin["total"];
        eprintln!(
            "{percent}% loss: chaos dropped {dropped_down} of ours, {dropped_up} of the client's; \
             retransmits {}, rto {}, fast {}, ooo {}",
            t["tcp_retransmits"], t["tcp_rto"], t["tcp_fast_retransmits"], t["tcp_ooo_segments"]
        );
        if percent == 0.0 {
            assert_eq!((dropped_down, dropped_up), (0, 0));
        } else {
            assert!(dropped_down > 0 && dropped_up > 0, "chaos dropped nothing");
            assert!(u(&t["tcp_retransmits"]) > 0, "{t}");
            assert!(u(&t["tcp_ooo_segments"]) > 0, "{t}");
        }
        assert_eq!(u(&t["http_2xx"]), 2, "{t}");
    }
    std::fs::remove_file(&upload).unwrap();
}

/// A client on a 9000-byte MTU announces an MSS of 8960; with `--tcp-mss
/// 4000` we would send 4000-byte segments, but gw0's MTU is 1500: the
/// segments must be cut to it (the veth drops longer frames silently,
/// counted only as TX dropped on gw0).
#[test]
fn segments_fit_the_interface_mtu_whatever_the_mss() {
    const SIZE: u64 = 2_000_000;
    let topo = Topo::up("mtu", 1);
    let client = topo.client();
    let br = topo.topo.bridge_ns();
    sh_in(
        &client,
        &format!("ip link set dev {} mtu 9000", ifname::CLIENT),
    );
    sh_in(
        &br,
        &format!("ip link set dev {} mtu 9000", ifname::BR_CLIENT),
    );
    let mut dp = Dataplane::start(&topo.gw(), &args(&topo, 1, &["--tcp-mss", "4000"]));
    let got = sh_in(
        &client,
        &format!("curl -sS --fail --max-time 60 http://198.18.0.100/bytes/{SIZE} | sha256sum"),
    );
    assert!(got.starts_with(&hex(&pattern_sha256(SIZE))), "{got}");
    let fin = stop_clean(&mut dp);
    assert_eq!(u(&fin["total"]["http_2xx"]), 1, "{fin}");
    // Nothing was dropped on the way out of gw0.
    let stats = sh_in(
        &topo.gw(),
        &format!("cat /sys/class/net/{}/statistics/tx_dropped", ifname::GW),
    );
    assert_eq!(stats.trim(), "0", "gw0 dropped frames on transmit");
}

#[test]
fn hundred_megabytes_each_way_at_zero_and_one_percent_loss() {
    hundred_megabytes_each_way_at_loss("loss01", &[0.0, 1.0]);
}

#[test]
fn hundred_megabytes_each_way_at_five_percent_loss() {
    hundred_megabytes_each_way_at_loss("loss5", &[5.0]);
}

/// SIGTERM drains: the listener closes, a download in flight runs to its
/// last byte, then the process exits (well before the drain deadline) and
/// leaves no connection behind.
#[test]
fn sigterm_lets_a_download_in_flight_finish() {
    let topo = Topo::up("drain", 1);
    let mut dp = Dataplane::start(&topo.gw(), &args(&topo, 1, &["--drain-timeout-secs", "20"]));
    let ns = topo.client();
    let url = format!("http://{}/bytes/16000000", vip4());
    // About 2 s at 8 MB/s: SIGTERM once the response has started.
    let download = std::thread::spawn(move || curl(&ns, &["--limit-rate", "8M", &url]));
    wait_for_totals(&dp, Duration::from_secs(10), "no download started", |t| {
        u(&t["http_requests"]) >= 1
    });
    let fin = stop_clean(&mut dp);
    let body = download.join().expect("curl thread");
    assert_eq!(
        body.len(),
        16_000_000,
        "the download in flight was cut short"
    );
    assert!(body.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
    let t = &fin["total"];
    assert_eq!(u(&t["app_aborts"]), 0, "{t}");
    assert_eq!(u(&t["tcp_rst_out"]), 0, "{t}");
}
