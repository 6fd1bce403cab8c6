//! HTTP/2 abuse against the real dataplane: every protection of
//! docs/http2.md ("Protections") attacked over the kernel's TCP from the
//! client namespace by tests/h2_attacks.py (python-hyper's h2 and hpack,
//! Debian's python3-h2, run by /usr/bin/python3), h2c on the `--http`
//! listener and once h2 over TLS (ALPN) on the `--tls` one. Each attack
//! must end its connection (GOAWAY with the documented code, then the
//! server's FIN; the script checks both) and raise exactly its own counter;
//! meanwhile curl downloads over h2c and h2 keep succeeding byte for byte,
//! memory stays bounded, and everything is released afterwards.
//!
//! One dataplane serves all attacks in sequence (a topology and a start
//! cost seconds). The stalled stream needs the default `stall_timeout`
//! (30 s, not behind a flag), so it runs in the background from the start
//! while the other attacks take their turns. Root only; never skips.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::http::{pattern_sha256, sha256};
use common::pki::{Pki, SERVER_NAME};
use common::*;
use nix::sys::signal::Signal;
use serde_json::Value;
use sluice_bench::netns;
use sluice_bench::topology::{addr, ifname};

const HTTP_PORT: u16 = 80;
const TLS_PORT: u16 = 443;
/// The server's `--h2-stream-window`.
const STREAM_WINDOW: &str = "4096";
/// Downloads of the bystanders.
const BYSTANDER_BYTES: u64 = 100_000;

/// Bounds on the gauges while the attacks run. One loop, a handful of
/// connections at a time (an attacker, the stalled stream, a curl): per
/// docs/http2.md an HTTP/2 connection holds at most 16 KiB of input and
/// 32 KiB of output (64 KiB in capacity) plus request bodies within its
/// 1 MiB window, and no attack here uploads bodies; TCP holds at most a
/// 256 KiB receive and a send buffer per connection (256 KiB, growing
/// only for bulk senders). Far above what an honest run needs, far below
/// what an unbounded queue reaches in seconds of flooding.
const APP_MEM_BOUND: u64 = 1 << 20;
const TCP_MEM_BOUND: u64 = 8 << 20;

/// Flood and error counters: each attack must raise its own by exactly
/// one and leave the others alone.
const GUARDS: &[&str] = &[
    "h2_ping_floods",
    "h2_settings_floods",
    "h2_window_update_floods",
    "h2_priority_floods",
    "h2_empty_frame_floods",
    "h2_reset_floods",
    "h2_crate_floods",
    "h2_protocol_errors",
    "h2_ping_timeouts",
    "app_send_timeouts",
];

struct Case {
    attack: &'static str,
    tls: bool,
    /// The counter that must rise by one; several when the docs say
    /// either bound may catch it first.
    counter: &'static [&'static str],
    /// GOAWAYs the server sends (the script checks their codes): one for
    /// each attack it ends, one in answer to the honest client's goodbye.
    goaway: bool,
    /// Connections reset by the server (app_aborts).
    aborts: u64,
}

const fn case(attack: &'static str, counter: &'static [&'static str]) -> Case {
    Case {
        attack,
        tls: false,
        counter,
        goaway: true,
        aborts: 0,
    }
}

const CASES: &[Case] = &[
    // A chatty honest client first: nothing may fire for it (its own
    // GOAWAY at the end is answered with GOAWAY NO_ERROR).
    case("busy_client", &[]),
    case("ping_flood", &["h2_ping_floods"]),
    case("settings_flood", &["h2_settings_floods"]),
    case("window_update_flood", &["h2_window_update_floods"]),
    case("priority_flood", &["h2_priority_floods"]),
    case("unknown_frame_flood", &["h2_priority_floods"]),
    case("empty_data_flood", &["h2_empty_frame_floods"]),
    case("empty_headers_flood", &["h2_empty_frame_floods"]),
    // Sent in one write, so sluice's scanner sees them before h2 does; but
    // The connection bounds CONTINUATION frames per header block itself
    // (32; docs/http2.md): whichever bound catches it first counts.
    case(
        "empty_continuation_flood",
        &["h2_empty_frame_floods", "h2_crate_floods"],
    ),
    // Non-empty CONTINUATION frames: the connection's own count (32 per
    // header block) ends it.
    case("continuation_flood", &["h2_crate_floods"]),
    // Each request answered, then cancelled: only the reset rate can see
    // it.
    case("rapid_reset", &["h2_reset_floods"]),
    // The published form, pairs in one write: the reset rate (the
    // counter list still admits the connection's own bounds, which caught
    // it first when the h2 crate served).
    case("rapid_reset_burst", &["h2_reset_floods", "h2_crate_floods"]),
    case("made_you_reset_window", &["h2_reset_floods"]),
    case("made_you_reset_length", &["h2_reset_floods"]),
    case("made_you_reset_data", &["h2_reset_floods"]),
    case("bad_frame_size", &["h2_protocol_errors"]),
    Case {
        tls: true,
        ..case("rapid_reset", &["h2_reset_floods"])
    },
    Case {
        tls: true,
        ..case("busy_client", &[])
    },
    // Keepalive PING every 2 s of silence, 2 s to answer (the flags
    // below): the silent client is reset, without a GOAWAY.
    Case {
        goaway: false,
        aborts: 1,
        ..case("ping_timeout", &["h2_ping_timeouts"])
    },
];

fn vip() -> IpAddr {
    IpAddr::V4(addr::GW_VIP_V4)
}

fn args(topo: &Topo, pki: &Pki) -> Vec<String> {
    let mut a: Vec<String> = [
        "--iface",
        ifname::GW,
        "--queues",
        "0",
        "--stats-format",
        "json",
        "--stats-interval",
        "0.5",
        "--tls-cert",
        &pki.path("server.pem"),
        "--tls-key",
        &pki.path("server.key"),
        // Small enough that an upload can overrun it in one frame
        // (made_you_reset_data); nothing else here uploads.
        "--h2-stream-window",
        STREAM_WINDOW,
        "--h2-ping-interval-secs",
        "2",
        "--h2-ping-timeout-secs",
        "2",
        "--h2-stall-timeout-secs",
        "5",
        "--send-timeout-secs",
        "3",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.push("--http".into());
    a.push(SocketAddr::new(vip(), HTTP_PORT).to_string());
    a.push("--tls".into());
    a.push(SocketAddr::new(vip(), TLS_PORT).to_string());
    a.push("--pin-dir".into());
    a.push(topo.pin_dir().display().to_string());
    a
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a counter: {v}"))
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/h2_attacks.py")
}

/// One run of tests/h2_attacks.py in the client namespace; its summary.
fn attack(ns: &str, ca: &str, name: &str, tls: bool, extra: &[&str], limit: Duration) -> Value {
    let mut cmd = netns::command(ns, "/usr/bin/python3");
    cmd.arg(script())
        .arg(name)
        .args(["--host", &vip().to_string()])
        .args(["--stream-window", STREAM_WINDOW])
        .args(extra);
    if tls {
        cmd.args(["--port", &TLS_PORT.to_string(), "--tls"]).args([
            "--ca",
            ca,
            "--sni",
            SERVER_NAME,
        ]);
    } else {
        cmd.args(["--port", &HTTP_PORT.to_string()]);
    }
    let what = format!("h2_attacks.py {name}{}", if tls { " (TLS)" } else { "" });
    let out = run_bounded(cmd, limit, &what);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary: Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "{what} printed no JSON summary ({}):\n{stdout}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        });
    assert!(
        out.status.success() && summary["ok"] == true,
        "{what} failed ({}): {summary}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    summary
}

/// curl downloads of /bytes/100000 in a loop, alternately h2c (prior
/// knowledge) and h2 over TLS, until stopped: each must succeed, over
/// HTTP/2, byte for byte.
struct Bystanders {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<(u64, Vec<String>)>,
}

impl Bystanders {
    fn start(ns: String, ca: String) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let want = pattern_sha256(BYSTANDER_BYTES);
        let handle = std::thread::spawn(move || {
            let (mut ok, mut failures) = (0u64, Vec::new());
            let (mut i, started) = (0u64, Instant::now());
            // Bounded: the test stops it, and in any case after 120 s.
            while !flag.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(120) {
                let mut cmd = netns::command(&ns, "curl");
                cmd.args([
                    "-sS",
                    "--fail",
                    "--max-time",
                    "10",
                    "-w",
                    "%{stderr}%{http_version}",
                ]);
                if i % 2 == 0 {
                    cmd.arg("--http2-prior-knowledge").arg(format!(
                        "http://{}/bytes/{BYSTANDER_BYTES}",
                        SocketAddr::new(vip(), HTTP_PORT)
                    ));
                } else {
                    cmd.args(["--http2", "--cacert", &ca, "--resolve"])
                        .arg(format!("{SERVER_NAME}:{TLS_PORT}:{}", vip()))
                        .arg(format!(
                            "https://{SERVER_NAME}:{TLS_PORT}/bytes/{BYSTANDER_BYTES}"
                        ));
                }
                let out = cmd.output().expect("running curl");
                let version = String::from_utf8_lossy(&out.stderr);
                if out.status.success() && version.trim() == "2" && sha256(&out.stdout) == want {
                    ok += 1;
                } else {
                    failures.push(format!(
                        "download {i} ({}): {}, {} bytes, stderr {version:?}",
                        if i % 2 == 0 { "h2c" } else { "h2" },
                        out.status,
                        out.stdout.len()
                    ));
                }
                i += 1;
            }
            (ok, failures)
        });
        Self { stop, handle }
    }

    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let (ok, failures) = self.handle.join().expect("bystander thread");
        assert!(
            failures.is_empty(),
            "bystanders failed during the attacks ({ok} succeeded):\n{}",
            failures.join("\n")
        );
        ok
    }
}

/// An interval report whose counters were all read after this call: the
/// second one printed from now on (the loops publish their counters every
/// 100 ms, the reports come every 0.5 s), within 10 s.
fn fresh_report(dp: &Dataplane) -> Value {
    let count = || interval_reports(dp).len();
    let (start, deadline) = (count(), Instant::now() + Duration::from_secs(10));
    while count() < start + 2 {
        assert!(Instant::now() < deadline, "no interval report");
        std::thread::sleep(Duration::from_millis(50));
    }
    dp.last_report("interval").expect("no interval report")
}

/// Every interval report printed so far.
fn interval_reports(dp: &Dataplane) -> Vec<Value> {
    dp.stdout
        .lock()
        .unwrap()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["type"] == "interval")
        .collect()
}

#[test]
fn h2_protections_end_abusers_and_keep_serving_the_others() {
    let started = Instant::now();
    let topo = Topo::up("h2atk", 1);
    let pki = Pki::new("h2atk");
    let client = topo.client();
    let mut dp = Dataplane::start(&topo.gw(), &args(&topo, &pki));

    let before_all = fresh_report(&dp);
    let bystanders = Bystanders::start(client.clone(), pki.path("ca.pem"));

    // The stalled stream, in the background for its 5 s.
    let ca = pki.path("ca.pem");
    let stall = {
        let (ns, ca) = (client.clone(), ca.clone());
        std::thread::spawn(move || {
            let t = Instant::now();
            // --h2-stall-timeout-secs 5: the reset must come neither
            // before nor long after.
            let window = ["--stall-min", "4.5", "--stall-max", "15"];
            let s = attack(&ns, &ca, "stall", false, &window, Duration::from_secs(30));
            (s, t.elapsed())
        })
    };

    let mut log = Vec::new();
    let mut before = before_all.clone();
    for c in CASES {
        let t = Instant::now();
        let summary = attack(&client, &ca, c.attack, c.tls, &[], Duration::from_secs(40));
        let took = t.elapsed();
        // The script returned once the server had closed (or answered the
        // honest client's goodbye): a report read after that has it all.
        let after = fresh_report(&dp);
        let (b, a) = (&before["total"], &after["total"]);
        let delta = |k: &str| u(&a[k]) - u(&b[k]);
        let label = format!("{}{}", c.attack, if c.tls { " (TLS)" } else { "" });
        for k in GUARDS {
            // Of several documented counters, exactly one rises (below).
            if c.counter.len() > 1 && c.counter.contains(k) {
                continue;
            }
            let (got, want) = (delta(k), u64::from(c.counter.contains(k)));
            assert_eq!(
                got, want,
                "{label}: {k} rose by {got}: {a}\nscript: {summary}"
            );
        }
        if c.counter.len() > 1 {
            let sum: u64 = c.counter.iter().map(|k| delta(k)).sum();
            assert_eq!(sum, 1, "{label}: {:?} rose by {sum}: {a}", c.counter);
        }
        assert_eq!(
            delta("h2_goaway_sent"),
            u64::from(c.goaway),
            "{label}: GOAWAYs sent: {a}\nscript: {summary}"
        );
        assert_eq!(
            delta("app_aborts"),
            c.aborts,
            "{label}: connections reset: {a}\nscript: {summary}"
        );
        log.push(format!(
            "{label}: {took:.1?}, {} +1; {summary}",
            c.counter
                .iter()
                .find(|k| delta(k) == 1)
                .unwrap_or(&"no counter")
        ));
        if c.attack == "ping_timeout" {
            // PING after 2 s without input, reset 2 s later.
            let (ping, reset) = (
                summary["ping_after_s"].as_f64().unwrap(),
                summary["closed_after_ping_s"].as_f64().unwrap(),
            );
            assert!(
                (1.5..3.5).contains(&ping) && (1.5..3.5).contains(&reset),
                "keepalive PING after {ping} s, reset {reset} s later: {summary}"
            );
        }
        before = after;
    }

    // A client that opens every window, asks for 10 GB and never reads:
    // with default flags nothing else would end it (HTTP/2's stall timer
    // is for flow control, keepalive is off); the send timeout (3 s here)
    // resets it.
    let summary = attack(
        &client,
        &ca,
        "no_read",
        false,
        &["--stall-min", "2.5", "--stall-max", "15"],
        Duration::from_secs(30),
    );
    let after = fresh_report(&dp);
    let (b, a) = (&before["total"], &after["total"]);
    let delta = |k: &str| u(&a[k]) - u(&b[k]);
    assert_eq!(
        (delta("app_send_timeouts"), delta("app_aborts")),
        (1, 1),
        "no_read: {a}\nscript: {summary}"
    );
    log.push(format!("no_read: {summary}"));

    let (stalled, stall_took) = stall.join().expect("stall thread");
    let r = fresh_report(&dp);
    assert_eq!(
        u(&r["total"]["h2_stalled_streams"]),
        1,
        "stalled stream: {}\nscript: {stalled}",
        r["total"]
    );
    log.push(format!("stall: {stall_took:.1?}; {stalled}"));
    let downloads = bystanders.finish();
    assert!(
        downloads >= 20,
        "only {downloads} bystander downloads during the attacks"
    );

    // Bounded while it lasted...
    let reports = interval_reports(&dp);
    let peak = |k: &str| reports.iter().map(|r| u(&r["total"][k])).max().unwrap();
    let (app_peak, tcp_peak) = (peak("app_mem_bytes"), peak("tcp_mem_bytes"));
    assert!(
        app_peak < APP_MEM_BOUND && tcp_peak < TCP_MEM_BOUND,
        "memory under attack: app {app_peak}, tcp {tcp_peak} bytes at the peak"
    );
    // ...and all of it released after.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = fresh_report(&dp);
        let t = &r["total"];
        if u(&t["tcp_connections"]) == 0
            && u(&t["tcp_mem_bytes"]) == 0
            && u(&t["app_mem_bytes"]) == 0
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still held after the attacks: {t}"
        );
    }

    let status = dp.stop(Signal::SIGTERM);
    assert!(status.success(), "exit {status}:\n{}", dp.stderr_text());
    let fin = dp.last_report("final").expect("no final JSON report");
    assert_eq!(fin["balanced"], true, "books do not balance: {fin}");
    assert!(
        !dp.stderr_text().contains("panicked"),
        "{}",
        dp.stderr_text()
    );
    let t = &fin["total"];
    assert_eq!(u(&t["http_5xx"]), 0, "{t}");
    assert!(u(&t["tls_alpn_h2"]) >= 3, "{t}");
    let floods: u64 = GUARDS
        .iter()
        .map(|k| u(&t[*k]) - u(&before_all["total"][*k]))
        .sum();
    // One per case with a counter, and no_read's send timeout.
    let expected = CASES.iter().filter(|c| !c.counter.is_empty()).count() as u64 + 1;
    assert_eq!(floods, expected, "{t}");
    eprintln!(
        "h2 attacks, {:.1?} in all; {downloads} bystander downloads; peaks: app_mem {app_peak} B, tcp_mem {tcp_peak} B",
        started.elapsed()
    );
    for l in &log {
        eprintln!("  {l}");
    }
}
