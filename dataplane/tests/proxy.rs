//! The reverse proxy end to end: curl and wrk in the client namespace,
//! sluice's own test backend (bench/backend) in the backend namespace,
//! every upstream connection opened, kept and reused by the loops on their
//! own TCP over AF_XDP. Root only; never skips.
//!
//! What holds: byte-exact bodies both ways on IPv4 and IPv6; the headers
//! the backend sees (forwarding fields added, hop-by-hop ones removed);
//! replies that land on the other queue reach the loop that owns their
//! port; connections are reused within the pool with no TIME_WAIT at the
//! backend; 502 and 504 on time; the kernel's managed neighbour entries are
//! gone after exit; config errors name file, line and column.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use sha2::{Digest, Sha256};
use sluice_bench::netns;
use sluice_bench::topology::{addr, ifname};

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a counter: {v}"))
}

/// sluice's test backend, in a namespace, stopped by PID when dropped.
struct Backend {
    child: Option<Child>,
}

impl Backend {
    fn start(ns: &str, args: &[&str]) -> Self {
        let bin = dataplane_bin().with_file_name("sluice-test-backend");
        assert!(
            bin.exists(),
            "{} is missing: build it first (`cargo build --workspace --bins`, as scripts/test.sh does)",
            bin.display()
        );
        let listeners = args.iter().filter(|a| **a == "--listen").count();
        Self::spawn(ns, &bin, args, listeners)
    }

    /// tests/grpc_echo.py's grpcio server on `addr`.
    fn grpc(ns: &str, addr: &str) -> Self {
        let script =
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/grpc_echo.py");
        let script = script.display().to_string();
        Self::spawn(
            ns,
            std::path::Path::new("/usr/bin/python3"),
            &[&script, "server", addr],
            1,
        )
    }

    /// `program` in `ns`, ready once it printed `listeners` lines starting
    /// "listening on".
    fn spawn(ns: &str, program: &std::path::Path, args: &[&str], listeners: usize) -> Self {
        let mut child = netns::command(ns, program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", program.display()));
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut ready = 0;
        while ready < listeners {
            match lines.next() {
                Some(Ok(l)) if l.starts_with("listening on") => ready += 1,
                Some(Ok(_)) => {}
                _ => panic!("{} exited before listening", program.display()),
            }
        }
        Self { child: Some(child) }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn dataplane_args(topo: &Topo, queues: u32, extra: &[String]) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "--iface".into(),
        ifname::GW.into(),
        "--stats-format".into(),
        "json".into(),
        "--stats-interval".into(),
        "0.5".into(),
        "--queues".into(),
        format!("0-{}", queues - 1),
        "--pin-dir".into(),
        topo.pin_dir().display().to_string(),
        "--http".into(),
        format!("{}:80", addr::GW_VIP_V4),
        "--http".into(),
        format!("[{}]:80", addr::GW_VIP_V6),
    ];
    a.extend(extra.iter().cloned());
    a
}

fn curl(ns: &str, args: &[&str]) -> Output {
    let mut cmd = netns::command(ns, "curl");
    cmd.args(["-sS", "--max-time", "30"]).args(args);
    run_bounded(cmd, Duration::from_secs(40), "curl")
}

fn curl_ok(ns: &str, args: &[&str]) -> Vec<u8> {
    let out = curl(ns, args);
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `-w '%{http_code}'` of a request whose body is thrown away.
fn status_of(ns: &str, url: &str) -> (u16, Duration) {
    let t = Instant::now();
    let out = curl(ns, &["-o", "/dev/null", "-w", "%{http_code}", url]);
    let code = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    (code, t.elapsed())
}

/// The test backend's `/bytes?n=N`: byte i is (31 i + 7) mod 251.
fn backend_pattern_sha256(n: usize) -> [u8; 32] {
    let mut h = Sha256::new();
    let body: Vec<u8> = (0..n).map(|i| ((i * 31 + 7) % 251) as u8).collect();
    h.update(&body);
    h.finalize().into()
}

fn headers_json(ns: &str, url: &str, extra: &[&str]) -> Value {
    let mut args: Vec<&str> = Vec::new();
    for h in extra {
        args.extend(["-H", h]);
    }
    args.push(url);
    let body = curl_ok(ns, &args);
    serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{url}: not JSON ({e}): {}", String::from_utf8_lossy(&body)))
}

fn managed_neighbours(ns: &str) -> String {
    let out = netns::command(ns, "ip")
        .args(["neigh", "show"])
        .output()
        .expect("ip neigh");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("managed"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn proxies_http1_byte_exact_reused_and_replies_cross_queues() {
    let topo = Topo::up("px", 2);
    let client = topo.client();
    let backend_ns = topo.topo.backend_ns();
    let b4 = format!("{}:8080", addr::BACKEND_V4);
    let b6 = format!("[{}]:8080", addr::BACKEND_V6);
    let _backend = Backend::start(
        &backend_ns,
        &["--listen", &b4, "--listen", &b6, "--name", "b1"],
    );
    let mut dp = Dataplane::start(
        &topo.gw(),
        &dataplane_args(
            &topo,
            2,
            &[
                "--proxy".into(),
                format!("/=http://{b4}"),
                "--proxy".into(),
                format!("/v6/=http://{b6}"),
            ],
        ),
    );
    let vip4 = format!("http://{}", addr::GW_VIP_V4);
    let vip6 = format!("http://[{}]", addr::GW_VIP_V6);

    // Large bodies, both directions, byte for byte.
    let n = 10_000_000;
    let body = curl_ok(&client, &[&format!("{vip4}/bytes?n={n}")]);
    assert_eq!(body.len(), n);
    assert!(
        Sha256::digest(&body).as_slice() == backend_pattern_sha256(n),
        "/bytes body differs"
    );
    let upload: Vec<u8> = (0..8_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let file = std::env::temp_dir().join(format!("sluice-proxy-upload-{}", std::process::id()));
    std::fs::write(&file, &upload).unwrap();
    for (url, chunked) in [
        (format!("{vip4}/echo"), false),
        (format!("{vip6}/v6/echo"), true),
    ] {
        let data = format!("@{}", file.display());
        let mut args = vec![
            "--data-binary",
            &data,
            "-H",
            "Content-Type: application/octet-stream",
        ];
        if chunked {
            args.extend(["-H", "Transfer-Encoding: chunked"]);
        }
        args.push(&url);
        let echoed = curl_ok(&client, &args);
        assert_eq!(echoed.len(), upload.len(), "{url}");
        assert!(echoed == upload, "{url}: echoed body differs");
    }
    let _ = std::fs::remove_file(&file);

    // What the backend saw: forwarding fields added, hop-by-hop fields
    // (and the ones Connection names) removed, end-to-end ones kept.
    let h = headers_json(
        &client,
        &format!("{vip4}/headers"),
        &[
            "Connection: x-drop-me",
            "X-Drop-Me: 1",
            "Keep-Alive: timeout=5",
            "X-Keep: yes",
            "X-Forwarded-For: 203.0.113.9",
            "X-Forwarded-Proto: https",
        ],
    );
    let hd = &h["headers"];
    assert_eq!(
        hd["x-forwarded-for"][0],
        format!("203.0.113.9, {}", addr::CLIENT_V4),
        "{h}"
    );
    assert_eq!(hd["x-forwarded-proto"], serde_json::json!(["http"]), "{h}");
    assert_eq!(hd["x-keep"][0], "yes", "{h}");
    assert_eq!(hd["host"][0], addr::GW_VIP_V4.to_string(), "{h}");
    for gone in ["x-drop-me", "keep-alive", "connection", "te"] {
        assert!(hd.get(gone).is_none(), "{gone} reached the backend: {h}");
    }
    assert_eq!(h["version"], "http/1.1", "{h}");
    // No trace from the client: one is started; a request id is added.
    let tp = hd["traceparent"][0]
        .as_str()
        .unwrap_or_else(|| panic!("no traceparent: {h}"));
    assert!(
        tp.len() == 55 && tp.starts_with("00-") && tp.ends_with("-01"),
        "{tp}"
    );
    assert_eq!(
        hd["x-request-id"][0].as_str().map(str::len),
        Some(36),
        "{h}"
    );
    // The client's trace continues: same trace id and flags, a new span;
    // tracestate and the client's request id go through as they are.
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
    let t = headers_json(
        &client,
        &format!("{vip4}/headers"),
        &[
            &format!("traceparent: {parent}"),
            "tracestate: congo=t61rcWkgMzE",
            "X-Request-Id: client-chosen-id",
        ],
    );
    let th = &t["headers"];
    let tp = th["traceparent"][0].as_str().unwrap();
    assert!(
        tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{t}"
    );
    assert!(
        tp.ends_with("-00") && !tp.contains("00f067aa0ba902b7"),
        "{t}"
    );
    assert_eq!(th["tracestate"][0], "congo=t61rcWkgMzE", "{t}");
    assert_eq!(
        th["x-request-id"],
        serde_json::json!(["client-chosen-id"]),
        "{t}"
    );
    // A client's deadline goes upstream as what is left of it.
    let g = headers_json(&client, &format!("{vip4}/headers"), &["grpc-timeout: 2S"]);
    let left = g["headers"]["grpc-timeout"][0]
        .as_str()
        .unwrap_or_else(|| panic!("{g}"));
    let (n, unit) = left.split_at(left.len() - 1);
    let left_us: u64 = n.parse::<u64>().unwrap()
        * match unit {
            "u" => 1,
            "m" => 1000,
            _ => panic!("unexpected unit in {left}"),
        };
    assert!(left_us > 0 && left_us <= 2_000_000, "{left}");
    let h6 = headers_json(&client, &format!("{vip6}/v6/headers"), &[]);
    assert_eq!(
        h6["headers"]["x-forwarded-for"][0],
        addr::CLIENT_V6.to_string(),
        "{h6}"
    );
    assert!(
        h6["local"].as_str().unwrap_or("").starts_with('['),
        "the IPv6 route reached the backend over IPv4: {h6}"
    );

    // Load: every request answered, connections reused within the pool,
    // and with two queues, replies landing on the other loop's queue
    // handed to the loop that owns their port.
    let before = wait_for_totals(&dp, Duration::from_secs(5), "report", |_| true);
    let mut wrk = netns::command(&client, "wrk");
    wrk.args(["-t2", "-c32", "-d3s", &format!("{vip4}/")]);
    let out = run_bounded(wrk, Duration::from_secs(30), "wrk");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "wrk: {text}");
    assert!(!text.contains("Non-2xx"), "wrk saw errors: {text}");
    assert!(!text.contains("Socket errors"), "wrk saw errors: {text}");
    let after = wait_for_totals(&dp, Duration::from_secs(5), "proxy idle", |t| {
        u(&t["proxy_active"]) == 0
    });
    let (b, a) = (&before["total"], &after["total"]);
    let requests = u(&a["proxy_requests"]) - u(&b["proxy_requests"]);
    let connects = u(&a["proxy_upstream_connects"]) - u(&b["proxy_upstream_connects"]);
    assert!(requests > 1000, "only {requests} requests proxied: {text}");
    // 32 clients over 2 loops: at most 32 connections opened, however
    // many requests.
    assert!(
        connects <= 32,
        "{connects} upstream connections for {requests} requests"
    );
    assert_eq!(u(&a["proxy_connect_failures"]), 0, "{a}");
    assert_eq!(u(&a["proxy_upstream_resets"]), 0, "{a}");
    assert!(
        u(&a["tcp_upstream_handoffs"]) > 0,
        "no reply landed on the other queue: {a}"
    );
    let tw = netns::command(&backend_ns, "ss")
        .args(["-Htan", "state", "time-wait"])
        .output()
        .expect("ss");
    assert!(
        String::from_utf8_lossy(&tw.stdout).trim().is_empty(),
        "TIME_WAIT at the backend: {}",
        String::from_utf8_lossy(&tw.stdout)
    );

    // Nothing stays behind: the managed neighbour entries go with the
    // dataplane.
    assert!(
        !managed_neighbours(&topo.gw()).is_empty(),
        "no managed neighbour entry while running"
    );
    assert!(dp.stop(Signal::SIGTERM).success(), "{}", dp.stderr_text());
    assert_eq!(
        managed_neighbours(&topo.gw()),
        "",
        "managed neighbour entries left behind"
    );
}

#[test]
fn proxy_answers_502_and_504_on_time() {
    let topo = Topo::up("pe", 1);
    let client = topo.client();
    let b4 = format!("{}:8080", addr::BACKEND_V4);
    let _backend = Backend::start(&topo.topo.backend_ns(), &["--listen", &b4]);
    let config = std::env::temp_dir().join(format!("sluice-proxy-{}.toml", std::process::id()));
    let log = std::env::temp_dir().join(format!("sluice-access-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    std::fs::write(
        &config,
        format!(
            r#"
[proxy]
access_log = "{}"

[[route]]
prefix = "/slow/"
cluster = "app"
timeout = "500ms"

[[route]]
prefix = "/down/"
cluster = "down"

[[route]]
prefix = "/"
cluster = "app"

[[cluster]]
name = "app"
endpoints = ["{b4}"]

[[cluster]]
name = "down"
# Nothing listens there: the backend's kernel answers RST.
endpoints = ["{}:9"]
"#,
            log.display(),
            addr::BACKEND_V4
        ),
    )
    .unwrap();
    let mut dp = Dataplane::start(
        &topo.gw(),
        &dataplane_args(&topo, 1, &["--config".into(), config.display().to_string()]),
    );
    let vip = format!("http://{}", addr::GW_VIP_V4);

    let (code, took) = status_of(&client, &format!("{vip}/slow/delay?ms=5000"));
    assert_eq!(code, 504, "slow backend");
    assert!(took < Duration::from_secs(4), "504 came after {took:?}");

    // The client's own deadline (grpc-timeout) is honoured too.
    let t0 = Instant::now();
    let out = curl(
        &client,
        &[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "grpc-timeout: 300m",
            &format!("{vip}/delay?ms=5000"),
        ],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "504");
    assert!(
        t0.elapsed() < Duration::from_secs(4),
        "504 came after {:?}",
        t0.elapsed()
    );

    let (code, took) = status_of(&client, &format!("{vip}/down/x"));
    assert_eq!(code, 502, "refused connection");
    assert!(took < Duration::from_secs(4), "502 came after {took:?}");

    // A backend that resets an idempotent request before answering: one
    // retry (the route's default), then 502.
    let (code, _) = status_of(&client, &format!("{vip}/reset"));
    assert_eq!(code, 502, "reset before the response");
    // The pool still works afterwards.
    assert_eq!(status_of(&client, &format!("{vip}/status?code=201")).0, 201);

    let t = wait_for_totals(&dp, Duration::from_secs(5), "counters", |t| {
        u(&t["proxy_timeouts"]) >= 1 && u(&t["proxy_connect_failures"]) >= 1
    });
    let t = &t["total"];
    assert!(u(&t["proxy_upstream_resets"]) >= 1, "{t}");
    assert!(u(&t["proxy_retries"]) >= 1, "{t}");

    // Latency per route and per cluster in the interval reports.
    let lat = wait_for_totals(&dp, Duration::from_secs(5), "latency", |_| true);
    let _ = lat;
    let reports: Vec<Value> = dp
        .stdout
        .lock()
        .unwrap()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["type"] == "interval")
        .collect();
    let routes: Vec<String> = reports
        .iter()
        .flat_map(|r| {
            r["latency"]["routes"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|r| r["name"].as_str().map(str::to_string))
        .collect();
    for want in ["/slow/", "/down/", "/"] {
        assert!(
            routes.iter().any(|r| r == want),
            "no latency for route {want}: {routes:?}"
        );
    }

    // The access log: one JSON line per request, written by then.
    assert!(dp.stop(Signal::SIGTERM).success(), "{}", dp.stderr_text());
    let text = std::fs::read_to_string(&log).expect("the access log");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(lines.len(), 5, "{text}");
    let by_path = |p: &str| {
        lines
            .iter()
            .find(|l| l["path"].as_str().is_some_and(|x| x.starts_with(p)))
            .unwrap_or_else(|| panic!("no line for {p}: {text}"))
    };
    let slow = by_path("/slow/");
    let deadline = by_path("/delay");
    assert_eq!(deadline["status"], 504, "{deadline}");
    assert_eq!(
        (slow["status"].as_u64(), slow["error"].as_str()),
        (Some(504), Some("timeout")),
        "{slow}"
    );
    let down = by_path("/down/");
    assert_eq!(
        (down["status"].as_u64(), down["error"].as_str()),
        (Some(502), Some("connect_failed")),
        "{down}"
    );
    let reset = by_path("/reset");
    assert!(reset["retries"].as_u64().unwrap() >= 1, "{reset}");
    let ok = by_path("/status");
    assert_eq!(ok["status"], 201, "{ok}");
    assert_eq!(ok["upstream"], b4, "{ok}");
    assert_eq!(ok["method"], "GET", "{ok}");
    assert_eq!(
        ok["client"]
            .as_str()
            .map(|c| c.starts_with(&addr::CLIENT_V4.to_string())),
        Some(true),
        "{ok}"
    );
    assert_eq!(ok["trace_id"].as_str().map(str::len), Some(32), "{ok}");
    assert_eq!(ok["request_id"].as_str().map(str::len), Some(36), "{ok}");
    assert!(
        ok["us"]["total"].as_u64().unwrap() >= ok["us"]["first_byte"].as_u64().unwrap(),
        "{ok}"
    );
    assert!(ok["tcp"]["client"]["srtt_us"].is_u64(), "{ok}");
    assert!(ok["tcp"]["upstream"]["retransmits"].is_u64(), "{ok}");
    let _ = std::fs::remove_file(&config);
    let _ = std::fs::remove_file(&log);
}

#[test]
fn config_errors_name_the_file_line_and_column() {
    let dir = std::env::temp_dir();
    let path = dir.join(format!("sluice-bad-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        "[[route]]\nprefix = \"/\"\ncluster = \"api\"\n\n[[cluster]]\nname = \"api\"\nendpoints = [\"198.18.0.3:80\"]\nlb = \"rr\"\n",
    )
    .unwrap();
    let out = Command::new(dataplane_bin())
        .args(["--iface", "lo", "--http", "198.18.0.100:80", "--config"])
        .arg(&path)
        .output()
        .expect("running sluice-dataplane");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let want = format!("{}:8:6: ", path.display());
    assert!(err.contains(&want), "{err}");
    assert!(
        err.contains("expected one of round_robin, least_request, maglev"),
        "{err}"
    );

    let out = Command::new(dataplane_bin())
        .args([
            "--iface",
            "lo",
            "--http",
            "198.18.0.100:80",
            "--proxy",
            "/api=ftp://198.18.0.3:21",
        ])
        .output()
        .expect("running sluice-dataplane");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("--proxy"), "{err}");
    let _ = std::fs::remove_file(&path);
}

/// `x-backend` of one response (the test backend names itself).
fn backend_of(ns: &str, url: &str) -> (u16, String) {
    let out = curl(ns, &["-s", "-D", "-", "-o", "/dev/null", url]);
    let head = String::from_utf8_lossy(&out.stdout).to_string();
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let name = head
        .lines()
        .find_map(|l| l.strip_prefix("x-backend: "))
        .unwrap_or("")
        .trim()
        .to_string();
    (code, name)
}

#[test]
fn outlier_ejection_and_return_and_breaker_overflow() {
    let topo = Topo::up("po", 1);
    let client = topo.client();
    let backend_ns = topo.topo.backend_ns();
    let good = format!("{}:8080", addr::BACKEND_V4);
    let bad = format!("{}:8081", addr::BACKEND_V4);
    let _good = Backend::start(&backend_ns, &["--listen", &good, "--name", "good"]);
    let failing = Backend::start(
        &backend_ns,
        &[
            "--listen",
            &bad,
            "--name",
            "bad",
            "--fail-rate",
            "100",
            "--fail-status",
            "500",
        ],
    );
    let config = std::env::temp_dir().join(format!("sluice-outlier-{}.toml", std::process::id()));
    std::fs::write(
        &config,
        format!(
            r#"
[[route]]
prefix = "/slow/"
cluster = "narrow"

[[route]]
prefix = "/"
cluster = "app"

[[cluster]]
name = "app"
endpoints = ["{good}", "{bad}"]
[cluster.outlier]
consecutive_5xx = 3
base_ejection = "2s"
ejection_jitter = "0s"
max_ejection_percent = 50

[[cluster]]
name = "narrow"
endpoints = ["{good}"]
[cluster.breaker]
max_requests = 2
"#
        ),
    )
    .unwrap();
    let mut dp = Dataplane::start(
        &topo.gw(),
        &dataplane_args(&topo, 1, &["--config".into(), config.display().to_string()]),
    );
    let url = format!("http://{}/x", addr::GW_VIP_V4);

    // Round robin sends every other request to the failing backend until
    // three 500s in a row eject it; then only the good one answers.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut good_run = 0;
    let mut saw_bad = false;
    while good_run < 20 {
        assert!(
            Instant::now() < deadline,
            "the failing backend was never ejected"
        );
        let (code, name) = backend_of(&client, &url);
        if name == "bad" {
            assert_eq!(code, 500);
            saw_bad = true;
            good_run = 0;
        } else {
            assert_eq!((code, name.as_str()), (200, "good"));
            good_run += 1;
        }
    }
    assert!(saw_bad, "round robin never reached the failing backend");
    dp.wait_for_stderr("backend ejected", Duration::from_secs(5));
    // Each backend's state shows in the reports.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = dp.last_report("interval").expect("an interval report");
        let rows = r["backends"].as_array().cloned().unwrap_or_default();
        let bad_row = rows.iter().find(|b| b["backend"] == bad.as_str());
        // Ejected, or already half-open again on a slow machine: the
        // report shows the ejection either way.
        if bad_row.is_some_and(|b| {
            b["ejections"].as_u64() >= Some(1)
                && (b["state"] == "ejected" || b["state"] == "half_open")
        }) {
            let b = bad_row.unwrap();
            assert!(b["ejections"].as_u64() >= Some(1), "{b}");
            assert!(
                rows.iter()
                    .any(|g| g["backend"] == good.as_str() && g["state"] == "healthy"),
                "{rows:?}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no report shows the ejection: {rows:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // It recovers: once its ejection ends, a probe request reaches it and
    // its success brings it back into the rotation.
    drop(failing);
    let _recovered = Backend::start(&backend_ns, &["--listen", &bad, "--name", "bad"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            Instant::now() < deadline,
            "the recovered backend never returned"
        );
        let (code, name) = backend_of(&client, &url);
        assert!(code == 200 || code == 500, "{code}");
        if name == "bad" && code == 200 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    dp.wait_for_stderr("backend healthy", Duration::from_secs(5));

    // Breaker: two requests in flight at most; the rest get a fast 503.
    let slow = format!("http://{}/slow/delay?ms=2000", addr::GW_VIP_V4);
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (client, slow) = (client.clone(), slow.clone());
            std::thread::spawn(move || status_of(&client, &slow))
        })
        .collect();
    let results: Vec<(u16, Duration)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let ok = results.iter().filter(|(c, _)| *c == 200).count();
    let refused: Vec<&(u16, Duration)> = results.iter().filter(|(c, _)| *c == 503).collect();
    assert!(ok >= 2 && ok + refused.len() == 8, "{results:?}");
    assert!(!refused.is_empty(), "no request overflowed: {results:?}");
    assert!(
        refused
            .iter()
            .all(|(_, t)| *t < Duration::from_millis(1500)),
        "a refused request waited for the slow ones: {results:?}"
    );
    let t = wait_for_totals(&dp, Duration::from_secs(5), "overflow counted", |t| {
        u(&t["proxy_overflows"]) >= 1
    });
    assert_eq!(u(&t["total"]["proxy_overflows"]) as usize, refused.len());
    let _ = std::fs::remove_file(&config);
}

#[test]
fn active_health_checks_take_a_failing_backend_out_before_any_client_sees_it() {
    let topo = Topo::up("ph", 1);
    let client = topo.client();
    let backend_ns = topo.topo.backend_ns();
    let good = format!("{}:8080", addr::BACKEND_V4);
    let bad = format!("{}:8081", addr::BACKEND_V4);
    let _good = Backend::start(&backend_ns, &["--listen", &good, "--name", "good"]);
    let _bad = Backend::start(
        &backend_ns,
        &["--listen", &bad, "--name", "bad", "--fail-rate", "100"],
    );
    let config = std::env::temp_dir().join(format!("sluice-hc-{}.toml", std::process::id()));
    std::fs::write(
        &config,
        format!(
            r#"
[[route]]
prefix = "/"
cluster = "app"

[[cluster]]
name = "app"
endpoints = ["{good}", "{bad}"]
[cluster.outlier]
enabled = false
[cluster.health_check]
path = "/healthz"
interval = "200ms"
timeout = "150ms"
unhealthy_threshold = 2
healthy_threshold = 1
"#
        ),
    )
    .unwrap();
    let mut dp = Dataplane::start(
        &topo.gw(),
        &dataplane_args(&topo, 1, &["--config".into(), config.display().to_string()]),
    );
    dp.wait_for_stderr("backend unhealthy", Duration::from_secs(10));
    let url = format!("http://{}/x", addr::GW_VIP_V4);
    for _ in 0..20 {
        assert_eq!(backend_of(&client, &url), (200, "good".to_string()));
    }
    let _ = std::fs::remove_file(&config);
}

/// The classic failure of connection churn (a proxy that opens more
/// upstream connections than it keeps, leaving TIME_WAIT everywhere) does
/// not happen: 512 concurrent clients, zero errors, upstream connections
/// within the pool, no TIME_WAIT at the backend.
#[test]
fn five_hundred_twelve_clients_stay_within_the_pool_without_time_wait() {
    let topo = Topo::up("pr", 1);
    let client = topo.client();
    let backend_ns = topo.topo.backend_ns();
    let b4 = format!("{}:8080", addr::BACKEND_V4);
    let _backend = Backend::start(&backend_ns, &["--listen", &b4]);
    let dp = Dataplane::start(
        &topo.gw(),
        &dataplane_args(&topo, 1, &["--proxy".into(), format!("/=http://{b4}")]),
    );
    let mut wrk = netns::command(&client, "wrk");
    wrk.args([
        "-t2",
        "-c512",
        "-d10s",
        "--timeout",
        "10s",
        &format!("http://{}/", addr::GW_VIP_V4),
    ]);
    let out = run_bounded(wrk, Duration::from_secs(60), "wrk");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "wrk: {text}");
    assert!(!text.contains("Non-2xx"), "{text}");
    assert!(!text.contains("Socket errors"), "{text}");
    let t = wait_for_totals(&dp, Duration::from_secs(10), "drained", |t| {
        u(&t["proxy_active"]) == 0
    });
    let t = &t["total"];
    assert!(u(&t["proxy_requests"]) > 10_000, "{t}");
    // The default pool: 64 connections per backend per loop.
    assert!(u(&t["proxy_upstream_connects"]) <= 64, "{t}");
    assert!(u(&t["proxy_upstream_open"]) <= 64, "{t}");
    assert_eq!(u(&t["proxy_connect_failures"]), 0, "{t}");
    for ns in [backend_ns.as_str(), topo.gw().as_str()] {
        let tw = netns::command(ns, "ss")
            .args(["-Htan", "state", "time-wait"])
            .output()
            .expect("ss");
        assert!(
            String::from_utf8_lossy(&tw.stdout).trim().is_empty(),
            "TIME_WAIT in {ns}: {}",
            String::from_utf8_lossy(&tw.stdout)
        );
    }
}

/// The backend link misbehaves: 2% loss both ways while large bodies cross
/// it (byte-exact through the stack's retransmissions), then forged RSTs
/// on 2% of the requests' segments (each reset idempotent GET is retried:
/// every response arrives whole), then a backend killed under load and
/// restarted (no errors, and it comes back).
#[test]
fn loss_resets_and_a_killed_backend_on_the_backend_link() {
    use sluice_bpf::{ppm_from_percent, Chaos, ChaosConfig, ChaosCounter, ChaosOptions, XdpMode};
    let topo = Topo::up("pc", 1);
    let client = topo.client();
    let backend_ns = topo.topo.backend_ns();
    let bridge_ns = topo.topo.bridge_ns();
    let b1 = format!("{}:8080", addr::BACKEND_V4);
    let b2 = format!("{}:8081", addr::BACKEND_V4);
    let _one = Backend::start(&backend_ns, &["--listen", &b1, "--name", "one"]);
    let two = Backend::start(&backend_ns, &["--listen", &b2, "--name", "two"]);
    let config = std::env::temp_dir().join(format!("sluice-chaos-{}.toml", std::process::id()));
    std::fs::write(
        &config,
        format!(
            r#"
[[route]]
prefix = "/"
cluster = "app"
retries = 2

[[cluster]]
name = "app"
endpoints = ["{b1}", "{b2}"]
[cluster.outlier]
consecutive_gateway_failures = 3
base_ejection = "1s"
ejection_jitter = "0s"
# Sized for this test: every request in flight on the killed backend may
# need a retry at the same moment.
[cluster.retry_budget]
percent = 100.0
min_retries_concurrency = 64
"#
        ),
    )
    .unwrap();
    let dp = Dataplane::start(
        &topo.gw(),
        &dataplane_args(&topo, 1, &["--config".into(), config.display().to_string()]),
    );
    let vip = format!("http://{}", addr::GW_VIP_V4);
    let attach = |cfg: &ChaosConfig, iface: &str, ns: &str| {
        let opts = ChaosOptions {
            mode: XdpMode::Native,
            dup_hook: false,
            netns: Some(ns.to_string()),
        };
        Chaos::attach_with(iface, cfg, &opts).expect("attaching chaos")
    };

    // 2% loss each way on the backend ports.
    let mut loss = ChaosConfig {
        drop_ppm: ppm_from_percent(2.0).unwrap(),
        port: Some(8080),
        ..ChaosConfig::default()
    };
    let to_backend = attach(&loss, ifname::BACKEND, &backend_ns);
    loss.port = Some(8080);
    let from_backend = attach(&loss, ifname::BR_BACKEND, &bridge_ns);
    let n = 6_000_000;
    let url = format!("{vip}/bytes?n={n}");
    for _ in 0..2 {
        let body = curl_ok(&client, &[&url]);
        assert_eq!(body.len(), n);
        assert!(
            Sha256::digest(&body).as_slice() == backend_pattern_sha256(n),
            "body differs under loss"
        );
    }
    let upload: Vec<u8> = (0..4_000_000u32)
        .map(|i| (i.wrapping_mul(40_503) >> 7) as u8)
        .collect();
    let file = std::env::temp_dir().join(format!("sluice-chaos-up-{}", std::process::id()));
    std::fs::write(&file, &upload).unwrap();
    let data = format!("@{}", file.display());
    for _ in 0..2 {
        let echoed = curl_ok(&client, &["--data-binary", &data, &format!("{vip}/echo")]);
        assert!(echoed == upload, "echo differs under loss");
    }
    let _ = std::fs::remove_file(&file);
    let dropped = to_backend
        .counters()
        .unwrap()
        .packets(ChaosCounter::Dropped)
        + from_backend
            .counters()
            .unwrap()
            .packets(ChaosCounter::Dropped);
    assert!(dropped > 0, "chaos dropped nothing");
    drop(to_backend);
    drop(from_backend);

    // Forged RSTs on 2% of the segments reaching the backends: the backend
    // drops the connection; the proxy's request is reset and retried.
    let rst = ChaosConfig {
        rst_ppm: ppm_from_percent(2.0).unwrap(),
        ..ChaosConfig::default()
    };
    let resets = attach(&rst, ifname::BACKEND, &backend_ns);
    let urls: Vec<String> = (0..300)
        .map(|i| format!("{vip}/bytes?n={}", 1000 + i))
        .collect();
    for (i, u) in urls.iter().enumerate() {
        let body = curl_ok(&client, &["--fail", u]);
        assert_eq!(body.len(), 1000 + i, "{u}");
        assert!(
            Sha256::digest(&body).as_slice() == backend_pattern_sha256(1000 + i),
            "{u}"
        );
    }
    let forged = resets.counters().unwrap().packets(ChaosCounter::RstForged);
    drop(resets);
    assert!(forged > 0, "chaos forged no RST");
    let t = wait_for_totals(&dp, Duration::from_secs(5), "resets seen", |t| {
        u(&t["proxy_upstream_resets"]) + u(&t["proxy_retries"]) > 0
    });
    eprintln!("{forged} RSTs forged: {}", t["total"]);

    // A backend killed under load, then restarted.
    let mut wrk = netns::command(&client, "wrk");
    wrk.args([
        "-t2",
        "-c16",
        "-d6s",
        "--timeout",
        "5s",
        &format!("{vip}/x"),
    ]);
    let load = std::thread::spawn(move || run_bounded(wrk, Duration::from_secs(30), "wrk"));
    std::thread::sleep(Duration::from_secs(2));
    drop(two);
    let out = load.join().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "wrk: {text}");
    assert!(
        !text.contains("Non-2xx"),
        "errors while a backend died: {text}"
    );
    assert!(
        !text.contains("Socket errors"),
        "errors while a backend died: {text}"
    );
    let _two = Backend::start(&backend_ns, &["--listen", &b2, "--name", "two"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            Instant::now() < deadline,
            "the restarted backend never came back"
        );
        if backend_of(&client, &format!("{vip}/x")) == (200, "two".to_string()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = std::fs::remove_file(&config);
}

/// HTTP/2 downstream (h2c with prior knowledge, curl and h2load) to an
/// HTTP/1.1 backend: bodies byte-exact both ways, forwarding fields, many
/// concurrent streams on few upstream connections.
#[test]
fn http2_clients_are_proxied_to_http1_backends() {
    let topo = Topo::up("p2", 2);
    let client = topo.client();
    let backend_ns = topo.topo.backend_ns();
    let b4 = format!("{}:8080", addr::BACKEND_V4);
    let _backend = Backend::start(&backend_ns, &["--listen", &b4]);
    let dp = Dataplane::start(
        &topo.gw(),
        &dataplane_args(&topo, 2, &["--proxy".into(), format!("/=http://{b4}")]),
    );
    let vip = format!("http://{}", addr::GW_VIP_V4);
    let h2 = "--http2-prior-knowledge";

    let n = 8_000_000;
    let body = curl_ok(&client, &[h2, &format!("{vip}/bytes?n={n}")]);
    assert_eq!(body.len(), n);
    assert!(
        Sha256::digest(&body).as_slice() == backend_pattern_sha256(n),
        "h2 download differs"
    );

    let upload: Vec<u8> = (0..6_000_000u32)
        .map(|i| (i.wrapping_mul(2_246_822_519) >> 11) as u8)
        .collect();
    let file = std::env::temp_dir().join(format!("sluice-h2-up-{}", std::process::id()));
    std::fs::write(&file, &upload).unwrap();
    let data = format!("@{}", file.display());
    let echoed = curl_ok(
        &client,
        &[
            h2,
            "-H",
            "Expect:",
            "--data-binary",
            &data,
            &format!("{vip}/echo"),
        ],
    );
    let _ = std::fs::remove_file(&file);
    assert!(
        echoed == upload,
        "h2 upload differs ({} bytes back)",
        echoed.len()
    );

    let raw = curl_ok(
        &client,
        &[h2, "-H", "X-Keep: yes", &format!("{vip}/headers")],
    );
    let h: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(h["headers"]["x-keep"][0], "yes", "{h}");
    assert_eq!(h["headers"]["host"][0], addr::GW_VIP_V4.to_string(), "{h}");
    assert_eq!(
        h["headers"]["x-forwarded-for"][0],
        addr::CLIENT_V4.to_string(),
        "{h}"
    );
    assert!(
        h["headers"]
            .as_object()
            .unwrap()
            .keys()
            .all(|k| !k.starts_with(':')),
        "a pseudo-header went upstream: {h}"
    );
    assert_eq!(h["version"], "http/1.1", "upstream is HTTP/1.1: {h}");

    // Many streams over few connections: h2load, 4 connections x 32 streams.
    let mut load = netns::command(&client, "h2load");
    load.args(["-n", "20000", "-c", "4", "-m", "32", &format!("{vip}/")]);
    let out = run_bounded(load, Duration::from_secs(120), "h2load");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "h2load: {text}");
    assert!(
        text.contains("20000 succeeded, 0 failed, 0 errored"),
        "{text}"
    );
    let t = wait_for_totals(&dp, Duration::from_secs(10), "drained", |t| {
        u(&t["proxy_active"]) == 0
    });
    let t = &t["total"];
    // 128 streams in flight at most, the default pool of 64 per loop.
    assert!(u(&t["proxy_upstream_connects"]) <= 128, "{t}");
    assert_eq!(
        u(&t["proxy_connect_failures"]) + u(&t["proxy_upstream_resets"]),
        0,
        "{t}"
    );
}

/// HTTP/2 backends (h2c): HTTP/1.1 and HTTP/2 clients multiplexed onto a
/// few upstream connections, bodies byte-exact both ways; then gRPC
/// through the gateway between a grpcio client and a grpcio server:
/// messages and trailers pass, a server's error status reaches the
/// client, a route timeout answers DEADLINE_EXCEEDED (grpc-status 4)
/// on time, and a server stream arrives whole. Last, request trailers
/// (tests/trailers.py) from HTTP/2 and HTTP/1.1 clients reach an h2c and an
/// HTTP/1.1 cluster (the same backend, `/h1/`) without the fields that frame
/// or route a message, and an HTTP/2 client's `Expect: 100-continue` gets
/// its 100 from the gateway.
#[test]
fn h2c_backends_and_grpc_pass_through() {
    let topo = Topo::up("pg", 2);
    let client = topo.client();
    let backend_ns = topo.topo.backend_ns();
    let b4 = format!("{}:8080", addr::BACKEND_V4);
    let g4 = format!("{}:50051", addr::BACKEND_V4);
    let _backend = Backend::start(&backend_ns, &["--listen", &b4]);
    let _grpc = Backend::grpc(&backend_ns, &g4);
    let config = std::env::temp_dir().join(format!("sluice-h2c-{}.toml", std::process::id()));
    std::fs::write(
        &config,
        format!(
            "[[route]]\nprefix = \"/echo.Echo/\"\ncluster = \"grpc\"\ntimeout = \"400ms\"\n\n\
             [[route]]\nprefix = \"/status\"\ncluster = \"web\"\nretries = 1\nretry_on = [\"retriable-503\"]\n\n\
             [[route]]\nprefix = \"/h1/\"\ncluster = \"web1\"\n\n\
             [[route]]\nprefix = \"/\"\ncluster = \"web\"\n\n\
             [[cluster]]\nname = \"grpc\"\nprotocol = \"h2c\"\nendpoints = [\"{g4}\"]\n\n\
             [[cluster]]\nname = \"web\"\nprotocol = \"h2c\"\nendpoints = [\"{b4}\"]\n\n\
             [[cluster]]\nname = \"web1\"\nprotocol = \"http1\"\nendpoints = [\"{b4}\"]\n"
        ),
    )
    .unwrap();
    let dp = Dataplane::start(
        &topo.gw(),
        &dataplane_args(&topo, 2, &["--config".into(), config.display().to_string()]),
    );
    let vip = format!("http://{}", addr::GW_VIP_V4);
    let h2 = "--http2-prior-knowledge";

    // HTTP/1.1 and HTTP/2 clients, HTTP/2 upstream.
    let n = 8_000_000;
    for proto in ["--http1.1", h2] {
        let body = curl_ok(&client, &[proto, &format!("{vip}/bytes?n={n}")]);
        assert_eq!(body.len(), n, "{proto}");
        assert!(
            Sha256::digest(&body).as_slice() == backend_pattern_sha256(n),
            "{proto}: download differs"
        );
    }
    let upload: Vec<u8> = (0..6_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let file = std::env::temp_dir().join(format!("sluice-h2c-up-{}", std::process::id()));
    std::fs::write(&file, &upload).unwrap();
    let data = format!("@{}", file.display());
    for proto in ["--http1.1", h2] {
        let o = curl(
            &client,
            &[
                proto,
                "-H",
                "Expect:",
                "--data-binary",
                &data,
                &format!("{vip}/echo"),
            ],
        );
        if !o.status.success() {
            panic!(
                "{proto} upload: {} (totals: {})",
                String::from_utf8_lossy(&o.stderr),
                dp.last_report("interval")
                    .map(|v| v["total"].to_string())
                    .unwrap_or_default()
            );
        }
        let echoed = o.stdout;
        assert!(
            echoed == upload,
            "{proto}: upload differs ({} bytes back)",
            echoed.len()
        );
    }
    let _ = std::fs::remove_file(&file);
    let h = headers_json(&client, &format!("{vip}/headers"), &["X-Keep: yes"]);
    assert_eq!(h["version"], "h2", "upstream is HTTP/2: {h}");
    // A retriable 503 is tried again (its stream reset, the connection
    // kept); the second 503, the last try's, reaches the client.
    let retries = wait_for_totals(&dp, Duration::from_secs(10), "settled", |t| {
        u(&t["proxy_active"]) == 0
    })["total"]["proxy_retries"]
        .as_u64()
        .unwrap();
    let (code, _) = status_of(&client, &format!("{vip}/status?code=503"));
    assert_eq!(code, 503);
    let t = wait_for_totals(&dp, Duration::from_secs(10), "retried", |t| {
        u(&t["proxy_active"]) == 0
    });
    assert_eq!(
        u(&t["total"]["proxy_retries"]),
        retries + 1,
        "{}",
        t["total"]
    );
    assert_eq!(h["headers"]["x-keep"][0], "yes", "{h}");
    assert_eq!(
        h["headers"]["x-forwarded-for"][0],
        addr::CLIENT_V4.to_string(),
        "{h}"
    );
    assert!(h["headers"]["traceparent"][0].is_string(), "{h}");

    let before = wait_for_totals(&dp, Duration::from_secs(10), "settled", |t| {
        u(&t["proxy_active"]) == 0
    })["total"]["proxy_upstream_connects"]
        .as_u64()
        .unwrap();
    // 128 streams in flight: a connection per loop takes them all (100
    // streams each by default; 2 loops).
    let mut load = netns::command(&client, "h2load");
    load.args(["-n", "20000", "-c", "4", "-m", "32", &format!("{vip}/")]);
    let out = run_bounded(load, Duration::from_secs(120), "h2load");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "h2load: {text}");
    assert!(
        text.contains("20000 succeeded, 0 failed, 0 errored"),
        "{text}"
    );
    let t = wait_for_totals(&dp, Duration::from_secs(10), "drained", |t| {
        u(&t["proxy_active"]) == 0
    });
    let t = &t["total"];
    let opened = u(&t["proxy_upstream_connects"]) - before;
    assert!(
        opened <= 4,
        "{opened} upstream connections for 128 streams: {t}"
    );
    assert_eq!(
        u(&t["proxy_connect_failures"]) + u(&t["proxy_upstream_resets"]),
        0,
        "{t}"
    );

    // gRPC, grpcio on both ends.
    let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/grpc_echo.py");
    let mut cmd = netns::command(&client, "/usr/bin/python3");
    cmd.arg(&script)
        .arg("client")
        .arg(format!("{}:80", addr::GW_VIP_V4));
    let out = run_bounded(cmd, Duration::from_secs(60), "grpc client");
    assert!(
        out.status.success(),
        "grpc client: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let g: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "grpc client output ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    assert_eq!(g["say_ok"], 50, "echo with trailers: {g}");
    assert_eq!(g["fail"], "NOT_FOUND", "{g}");
    assert_eq!(g["fail_details"], "no such thing", "{g}");
    assert_eq!(g["slow"], "DEADLINE_EXCEEDED", "{g}");
    let slow_ms = u(&g["slow_ms"]);
    assert!(
        (350..1900).contains(&slow_ms),
        "answered after {slow_ms} ms, route timeout 400 ms: {g}"
    );
    assert_eq!(g["count"], 100, "{g}");
    assert_eq!(g["count_ok"], true, "{g}");
    // The Slow call's DEADLINE_EXCEEDED comes from the gateway's own timer
    // or from the backend: the remaining budget (400 ms) went upstream as
    // grpc-timeout, and the two deadlines race.
    let t = wait_for_totals(&dp, Duration::from_secs(10), "grpc counted", |t| {
        u(&t["proxy_grpc_deadline_exceeded"]) + u(&t["proxy_grpc_errors"]) >= 2
            && u(&t["proxy_active"]) == 0
    });
    let t = &t["total"];
    assert!(u(&t["proxy_grpc_ok"]) >= 51, "{t}");
    assert!(u(&t["proxy_grpc_errors"]) >= 1, "{t}");

    request_trailers_and_expect_continue(&client, &vip);
    let _ = std::fs::remove_file(&config);
}

/// Request trailers through the gateway to the test backend, whose `/echo`
/// sends each request trailer back as a response trailer `x-echo-NAME`
/// (it echoes every one it receives, `content-length` and `host`
/// included): `/echo` goes to an h2c cluster, `/h1/echo` to an HTTP/1.1
/// one. Then curl's `Expect: 100-continue` over HTTP/2.
fn request_trailers_and_expect_continue(client: &str, vip: &str) {
    let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/trailers.py");
    // HTTP/2 without a length (upstream HTTP/1.1: chunked, so trailers can
    // follow), HTTP/2 with one (HTTP/1.1 upstream: Content-Length, no place
    // for them), HTTP/1.1 chunked.
    let carried = [
        "h2:/echo",
        "h2-cl:/echo",
        "h1:/echo",
        "h2:/h1/echo",
        "h1:/h1/echo",
    ];
    let dropped = "h2-cl:/h1/echo";
    let mut cmd = netns::command(client, "/usr/bin/python3");
    cmd.arg(&script)
        .arg(format!("{}:80", addr::GW_VIP_V4))
        .args(carried)
        .arg(dropped);
    let out = run_bounded(cmd, Duration::from_secs(90), "trailers.py");
    assert!(
        out.status.success(),
        "trailers.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "trailers.py output ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    let sum = r["x-sum"].as_str().expect("x-sum").to_string();
    // Every case is judged before failing, so one run says which paths
    // lost what.
    let mut wrong = Vec::new();
    for case in carried.iter().chain([&dropped]) {
        let c = &r[*case];
        let echoed: Vec<(&str, &str)> = c["trailers"]
            .as_array()
            .map(|t| {
                t.iter()
                    .filter_map(|p| Some((p[0].as_str()?, p[1].as_str()?)))
                    .filter(|(n, _)| n.starts_with("x-echo-"))
                    .collect()
            })
            .unwrap_or_default();
        // x-sum reached the backend; content-length and host did not. A
        // Content-Length body upstream has no place for trailers.
        let want: &[(&str, &str)] = if *case == dropped {
            &[]
        } else {
            &[("x-echo-x-sum", &sum)]
        };
        // A response without a length goes to an HTTP/1.1 client chunked,
        // the backend's trailers after the last chunk.
        let framing_ok = !case.starts_with("h1:") || c["chunked"] == true;
        if !c["error"].is_null()
            || c["status"] != 200
            || c["body_ok"] != true
            || !framing_ok
            || echoed != want
        {
            wrong.push(format!(
                "{case}: echoed request trailers {echoed:?}, want {want:?}: {c}"
            ));
        }
    }
    assert!(wrong.is_empty(), "request trailers:\n{}", wrong.join("\n"));

    // Expect: 100-continue over HTTP/2: the gateway answers 100 at once
    // (curl waits for it up to a second, then sends anyway), to either
    // kind of cluster; the echo is byte-exact.
    let upload: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_246_822_519) >> 7) as u8)
        .collect();
    let file = std::env::temp_dir().join(format!("sluice-expect-{}", std::process::id()));
    std::fs::write(&file, &upload).unwrap();
    let data = format!("@{}", file.display());
    for path in ["/echo", "/h1/echo"] {
        let o = curl(
            client,
            &[
                "--http2-prior-knowledge",
                "-v",
                "-H",
                "Expect: 100-continue",
                "--data-binary",
                &data,
                &format!("{vip}{path}"),
            ],
        );
        let verbose = String::from_utf8_lossy(&o.stderr);
        let interim = verbose.find("< HTTP/2 100");
        let last = verbose.find("< HTTP/2 200");
        if !o.status.success() || interim.is_none() || last.is_none() || interim > last {
            wrong.push(format!("{path}: no HTTP/2 100 before the 200:\n{verbose}"));
        } else if o.stdout != upload {
            wrong.push(format!(
                "{path}: echo differs ({} bytes back)",
                o.stdout.len()
            ));
        }
    }
    let _ = std::fs::remove_file(&file);
    assert!(
        wrong.is_empty(),
        "Expect: 100-continue:\n{}",
        wrong.join("\n")
    );
}

/// When every backend is ejected, the XDP program refuses new connections
/// (a RST from the NIC's driver path, before any user-space cost); when one
/// comes back, connections are accepted again.
#[test]
fn xdp_refuses_new_connections_while_every_backend_is_ejected() {
    let topo = Topo::up("pz", 1);
    let client = topo.client();
    let b4 = format!("{}:8080", addr::BACKEND_V4);
    let _bad = Backend::start(
        &topo.topo.backend_ns(),
        &[
            "--listen",
            &b4,
            "--fail-rate",
            "100",
            "--fail-status",
            "500",
        ],
    );
    let config = std::env::temp_dir().join(format!("sluice-refuse-{}.toml", std::process::id()));
    std::fs::write(
        &config,
        format!(
            r#"
[[route]]
prefix = "/"
cluster = "app"

[[cluster]]
name = "app"
endpoints = ["{b4}"]
[cluster.outlier]
consecutive_5xx = 2
base_ejection = "3s"
ejection_jitter = "0s"
"#
        ),
    )
    .unwrap();
    let mut dp = Dataplane::start(
        &topo.gw(),
        &dataplane_args(&topo, 1, &["--config".into(), config.display().to_string()]),
    );
    let url = format!("http://{}/x", addr::GW_VIP_V4);
    assert_eq!(status_of(&client, &url).0, 500);
    assert_eq!(status_of(&client, &url).0, 500);
    dp.wait_for_stderr("backend ejected", Duration::from_secs(5));
    // curl's exit status 7: the connection was refused.
    let refused = |ns: &str| {
        let out = curl(ns, &["-o", "/dev/null", &url]);
        out.status.code() == Some(7)
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !refused(&client) {
        assert!(
            Instant::now() < deadline,
            "new connections were never refused"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = wait_for_totals(&dp, Duration::from_secs(5), "refusals counted", |_| true);
    let rst = &r["xdp"]["tx_rst_no_backend"]["packets"];
    assert!(u(rst) >= 1, "{}", r["xdp"]);
    // The ejection ends; the backend is half-open and takes a probe again.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        assert!(
            Instant::now() < deadline,
            "connections were never accepted again"
        );
        if status_of(&client, &url).0 == 500 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = std::fs::remove_file(&config);
}

/// nginx (Debian's) as the backend: a static file byte-exact, HEAD, a 404
/// passed through, and one upstream connection reused for every request.
#[test]
fn nginx_backend_is_proxied_over_one_reused_connection() {
    let topo = Topo::up("pn", 1);
    let client = topo.client();
    let dir = std::env::temp_dir().join(format!("sluice-nginx-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("www")).unwrap();
    let file: Vec<u8> = (0..1_500_000u32)
        .map(|i| (i.wrapping_mul(97) >> 3) as u8)
        .collect();
    std::fs::write(dir.join("www/file.bin"), &file).unwrap();
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 1024; }}\n\
             http {{ access_log off; keepalive_requests 10000; keepalive_timeout 75s;\n\
               server {{ listen {b}:8081; root {d}/www; }} }}\n",
            d = dir.display(),
            b = addr::BACKEND_V4
        ),
    )
    .unwrap();
    let mut nginx = netns::command(&topo.topo.backend_ns(), "nginx")
        .args(["-c", &conf.display().to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting nginx");
    struct StopNginx(u32);
    impl Drop for StopNginx {
        fn drop(&mut self) {
            let _ = kill(Pid::from_raw(self.0 as i32), Signal::SIGTERM);
        }
    }
    let _stop = StopNginx(nginx.id());
    let dp = Dataplane::start(
        &topo.gw(),
        &dataplane_args(
            &topo,
            1,
            &[
                "--proxy".into(),
                format!("/=http://{}:8081", addr::BACKEND_V4),
            ],
        ),
    );
    let vip = format!("http://{}", addr::GW_VIP_V4);
    // nginx may take a moment to listen: the first request may see 502.
    let deadline = Instant::now() + Duration::from_secs(10);
    while status_of(&client, &format!("{vip}/file.bin")).0 != 200 {
        assert!(
            Instant::now() < deadline,
            "nginx never answered through the proxy"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let before = wait_for_totals(&dp, Duration::from_secs(5), "report", |_| true);
    for _ in 0..10 {
        let body = curl_ok(&client, &["--fail", &format!("{vip}/file.bin")]);
        assert!(body == file, "nginx's file differs ({} bytes)", body.len());
    }
    let head = curl_ok(&client, &["-sI", &format!("{vip}/file.bin")]);
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains(&format!("content-length: {}", file.len())),
        "{head}"
    );
    assert!(head.contains("server: nginx"), "{head}");
    assert_eq!(status_of(&client, &format!("{vip}/nope")).0, 404);
    let after = wait_for_totals(&dp, Duration::from_secs(5), "report", |_| true);
    let connects = u(&after["total"]["proxy_upstream_connects"])
        - u(&before["total"]["proxy_upstream_connects"]);
    assert_eq!(
        connects, 0,
        "12 sequential requests opened new upstream connections"
    );
    drop(_stop);
    let _ = nginx.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

/// TLS with client certificates in front of the proxy, over HTTP/2 and
/// HTTP/1.1: the backend sees the verified SPIFFE ID in the configured
/// header (a client's own value of it is dropped) and `https`.
#[test]
fn mtls_clients_spiffe_id_reaches_the_backend() {
    use common::pki::{Pki, SERVER_NAME};
    let topo = Topo::up("ps", 1);
    let client = topo.client();
    let pki = Pki::new("ps");
    pki.client("good", "ca", "spiffe://good.test/ns/web/sa/client");
    let b4 = format!("{}:8080", addr::BACKEND_V4);
    let _backend = Backend::start(&topo.topo.backend_ns(), &["--listen", &b4]);
    let config = std::env::temp_dir().join(format!("sluice-mtls-{}.toml", std::process::id()));
    std::fs::write(
        &config,
        format!(
            r#"
[proxy]
spiffe_header = "x-client-spiffe-id"

[[listener]]
address = "{}:443"
protocol = "tls"

[[route]]
prefix = "/"
cluster = "app"

[[cluster]]
name = "app"
endpoints = ["{b4}"]
"#,
            addr::GW_VIP_V4
        ),
    )
    .unwrap();
    let _dp = Dataplane::start(
        &topo.gw(),
        &dataplane_args(
            &topo,
            1,
            &[
                "--config".into(),
                config.display().to_string(),
                "--tls-cert".into(),
                pki.path("server.pem"),
                "--tls-key".into(),
                pki.path("server.key"),
                "--tls-client-ca".into(),
                pki.path("ca.pem"),
                "--tls-spiffe-allow".into(),
                "spiffe://good.test/".into(),
            ],
        ),
    );
    let resolve = format!("{SERVER_NAME}:443:{}", addr::GW_VIP_V4);
    let url = format!("https://{SERVER_NAME}/headers");
    for http in ["--http2", "--http1.1"] {
        let body = curl_ok(
            &client,
            &[
                http,
                "--resolve",
                &resolve,
                "--cacert",
                &pki.path("ca.pem"),
                "--cert",
                &pki.path("good.pem"),
                "--key",
                &pki.path("good.key"),
                "-H",
                "X-Client-Spiffe-Id: spiffe://forged.test/evil",
                &url,
            ],
        );
        let h: Value = serde_json::from_slice(&body).unwrap();
        let hd = &h["headers"];
        assert_eq!(
            hd["x-client-spiffe-id"],
            serde_json::json!(["spiffe://good.test/ns/web/sa/client"]),
            "{http}: {h}"
        );
        assert_eq!(
            hd["x-forwarded-proto"],
            serde_json::json!(["https"]),
            "{http}: {h}"
        );
        assert_eq!(hd["host"][0], SERVER_NAME, "{http}: {h}");
    }
    let _ = std::fs::remove_file(&config);
}

/// TLS backends (`http1-tls`, `h2-tls`), the backend requiring client
/// certificates: verified by SNI name, by IP address, and by SPIFFE ID;
/// the backend sees our certificate and its SPIFFE ID; bodies byte-exact
/// both ways; a backend whose SPIFFE ID is not the configured one, and
/// a cluster without a client certificate, get 502.
#[test]
fn tls_backends_are_verified_and_see_our_client_certificate() {
    use common::pki::Pki;
    let topo = Topo::up("pt", 1);
    let client = topo.client();
    let pki = Pki::new("pt");
    let backend_id = "spiffe://backend.test/ns/app/sa/server";
    let gateway_id = "spiffe://gw.test/ns/edge/sa/gateway";
    pki.server_with_sans(
        "backend",
        "ca",
        &[
            "DNS:backend.sluice.test",
            &format!("IP:{}", addr::BACKEND_V4),
            &format!("URI:{backend_id}"),
        ],
    );
    pki.client("gw", "ca", gateway_id);
    let b = format!("{}:8443", addr::BACKEND_V4);
    let _backend = Backend::start(
        &topo.topo.backend_ns(),
        &[
            "--listen",
            &b,
            "--tls-cert",
            &pki.path("backend.pem"),
            "--tls-key",
            &pki.path("backend.key"),
            "--tls-client-ca",
            &pki.path("ca.pem"),
        ],
    );
    let (ca, cert, key) = (pki.path("ca.pem"), pki.path("gw.pem"), pki.path("gw.key"));
    let mtls = format!("ca = \"{ca}\"\nclient_cert = \"{cert}\"\nclient_key = \"{key}\"\n");
    let cluster = |name: &str, protocol: &str, tls: &str| {
        format!(
            "[[route]]\nhost = \"{name}.test\"\nprefix = \"/\"\ncluster = \"{name}\"\n\n\
             [[cluster]]\nname = \"{name}\"\nprotocol = \"{protocol}\"\nendpoints = [\"{b}\"]\n\
             [cluster.tls]\n{tls}\n"
        )
    };
    let config = std::env::temp_dir().join(format!("sluice-tls-up-{}.toml", std::process::id()));
    std::fs::write(
        &config,
        [
            cluster(
                "h1",
                "http1-tls",
                &format!("{mtls}sni = \"backend.sluice.test\""),
            ),
            cluster("h2", "h2-tls", &mtls),
            cluster(
                "sp",
                "h2-tls",
                &format!("{mtls}spiffe_id = \"{backend_id}\""),
            ),
            cluster(
                "bad",
                "http1-tls",
                &format!("{mtls}spiffe_id = \"spiffe://other.test/x\""),
            ),
            cluster(
                "anon",
                "http1-tls",
                &format!("ca = \"{ca}\"\nsni = \"backend.sluice.test\""),
            ),
        ]
        .concat(),
    )
    .unwrap();
    let dp = Dataplane::start(
        &topo.gw(),
        &dataplane_args(&topo, 1, &["--config".into(), config.display().to_string()]),
    );
    let vip = format!("http://{}", addr::GW_VIP_V4);
    for (host, version) in [("h1", "http/1.1"), ("h2", "h2"), ("sp", "h2")] {
        let h = headers_json(
            &client,
            &format!("{vip}/headers"),
            &[&format!("Host: {host}.test")],
        );
        assert_eq!(h["version"], version, "{host}: {h}");
        assert_eq!(h["tls"], true, "{host}: {h}");
        assert_eq!(h["client_cert"], true, "{host}: {h}");
        assert_eq!(h["client_spiffe_id"], gateway_id, "{host}: {h}");
    }
    let n = 8_000_000;
    let body = curl_ok(
        &client,
        &["-H", "Host: h2.test", &format!("{vip}/bytes?n={n}")],
    );
    assert!(
        body.len() == n && Sha256::digest(&body).as_slice() == backend_pattern_sha256(n),
        "h2-tls download differs ({} bytes)",
        body.len()
    );
    let upload: Vec<u8> = (0..6_000_000u32)
        .map(|i| (i.wrapping_mul(2_246_822_519) >> 9) as u8)
        .collect();
    let file = std::env::temp_dir().join(format!("sluice-tls-up-{}.bin", std::process::id()));
    std::fs::write(&file, &upload).unwrap();
    let data = format!("@{}", file.display());
    for host in ["h1", "h2"] {
        let echoed = curl_ok(
            &client,
            &[
                "-H",
                &format!("Host: {host}.test"),
                "-H",
                "Expect:",
                "--data-binary",
                &data,
                &format!("{vip}/echo"),
            ],
        );
        assert!(
            echoed == upload,
            "{host}: upload differs ({} bytes back)",
            echoed.len()
        );
    }
    let _ = std::fs::remove_file(&file);
    for host in ["bad", "anon"] {
        let out = curl(
            &client,
            &[
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-H",
                &format!("Host: {host}.test"),
                &format!("{vip}/headers"),
            ],
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "502", "{host}");
    }
    let t = wait_for_totals(&dp, Duration::from_secs(10), "drained", |t| {
        u(&t["proxy_active"]) == 0
    });
    let t = &t["total"];
    assert!(u(&t["proxy_responses_2xx"]) >= 6, "{t}");
    // A new TLS connection per cluster at least; the wrong SPIFFE ID is
    // ours to refuse; the missing client certificate, the backend's.
    assert!(u(&t["proxy_upstream_tls_handshakes"]) >= 3, "{t}");
    assert!(u(&t["proxy_upstream_tls_cert_failures"]) >= 1, "{t}");
    assert!(u(&t["proxy_upstream_tls_failures"]) >= 2, "{t}");
    let _ = std::fs::remove_file(&config);
}
