//! testssl.sh against the dataplane's `--tls` listener: Debian's testssl.sh
//! 3.0.8 (`/usr/bin/testssl`; it needs `hexdump` from bsdextrautils) run in
//! the client namespace against the IPv4 VIP on port 443, with a
//! certificate the test makes with the openssl CLI (ECDSA P-256 CA, a leaf
//! for DNS:sluice.test). Nothing may be rated HIGH or CRITICAL (nor FATAL,
//! a scan that could not run) in its JSON findings; the findings are
//! printed when one is.
//!
//! Which checks: testssl's default run, everything but `-E` (ciphers per
//! protocol) and `-g` (GREASE and size limits): protocols, cipher
//! categories, forward secrecy, server preferences, server defaults and
//! the certificate, HTTP headers, every vulnerability check (Heartbleed,
//! CCS, Ticketbleed, ROBOT, renegotiation, CRIME, BREACH, POODLE,
//! TLS_FALLBACK_SCSV, SWEET32, FREAK, DROWN, LOGJAM, BEAST, LUCKY13, RC4)
//! and the client simulations. It takes about 50 s here (30 s with
//! `--ssl-native`), well under the 3 minutes that would call for `--fast`
//! or a subset; each run is killed (and the test failed) after 4 minutes.
//! DNS lookups are off (`--nodns none`: the namespaces have no resolver,
//! and `--ip` names the VIP). Root only; never skips.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;
use serde_json::Value;
use sluice_bench::netns;
use sluice_bench::topology::{addr, ifname};

const PORT: u16 = 443;
const NAME: &str = "sluice.test";
/// A full scan takes about 50 s here.
const SCAN_LIMIT: Duration = Duration::from_secs(240);

fn vip() -> IpAddr {
    IpAddr::V4(addr::GW_VIP_V4)
}

/// A CA and a server certificate for the scan, in a directory removed on
/// drop. As a real deployment's would, the certificate names a CRL
/// distribution point and is valid for 90 days: testssl rates a
/// certificate without CRL or OCSP URI HIGH, and one that expires within
/// 30 days HIGH (60: MEDIUM); those are findings about the certificate,
/// not about the server (no `--phone-out`: the CRL is never fetched).
struct Certs {
    dir: PathBuf,
}

impl Certs {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("sluice-scan-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let c = Self { dir };
        for key in ["ca.key", "server.key"] {
            c.openssl(&[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                key,
            ]);
        }
        c.openssl(&[
            "req",
            "-x509",
            "-new",
            "-key",
            "ca.key",
            "-subj",
            "/CN=sluice scan test CA",
            "-days",
            "365",
            "-out",
            "ca.pem",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        c.openssl(&[
            "req",
            "-new",
            "-key",
            "server.key",
            "-subj",
            &format!("/CN={NAME}"),
            "-out",
            "server.csr",
        ]);
        std::fs::write(
            c.dir.join("server.ext"),
            format!(
                "subjectAltName=DNS:{NAME}\nbasicConstraints=CA:FALSE\n\
                 keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n\
                 crlDistributionPoints=URI:http://pki.{NAME}/ca.crl\n"
            ),
        )
        .unwrap();
        c.openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "90",
            "-out",
            "server.pem",
            "-extfile",
            "server.ext",
        ]);
        c
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&self.dir)
            .output()
            .expect("running openssl (scripts/install-deps.sh installs it)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn args(topo: &Topo, certs: &Certs, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "--iface",
        ifname::GW,
        "--queues",
        "0",
        "--stats-format",
        "json",
        "--stats-interval",
        "1",
        "--tls-cert",
        &certs.path("server.pem"),
        "--tls-key",
        &certs.path("server.key"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.push("--tls".into());
    a.push(SocketAddr::new(vip(), PORT).to_string());
    a.push("--pin-dir".into());
    a.push(topo.pin_dir().display().to_string());
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// testssl's findings (its flat JSON) and its text report.
struct Scan {
    findings: Vec<Value>,
    text: String,
    secs: f64,
}

impl Scan {
    fn finding(&self, id: &str) -> &str {
        self.findings
            .iter()
            .find(|f| f["id"] == id)
            .and_then(|f| f["finding"].as_str())
            .unwrap_or_else(|| panic!("no {id} in the findings:\n{}", self.text))
    }
}

fn testssl(ns: &str, certs: &Certs, label: &str, extra: &[&str]) -> Scan {
    let json = certs.dir.join(format!("{label}.json"));
    let mut cmd = netns::command(ns, "/usr/bin/testssl");
    cmd.args(["--quiet", "--color", "0", "--warnings", "off"])
        .args(["--nodns", "none", "--ip", &vip().to_string()])
        .args(["--connect-timeout", "10", "--openssl-timeout", "10"])
        .args(["--add-ca", &certs.path("ca.pem")])
        .arg("--jsonfile")
        .arg(&json)
        .args(extra)
        .arg(format!("{NAME}:{PORT}"));
    // Its own process group, so that a timeout kills its openssl children.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let t = Instant::now();
    let out = run_bounded(cmd, SCAN_LIMIT, &format!("testssl ({label})"));
    let secs = t.elapsed().as_secs_f64();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Its exit status is a sum of check results; 242 and above are its
    // own errors (command line, files, connection).
    assert!(
        out.status.code().is_some_and(|c| c < 242),
        "testssl ({label}) failed ({}):\n{text}",
        out.status
    );
    let findings: Vec<Value> = read_json(&json, &text);
    assert!(
        findings.len() > 50,
        "testssl ({label}) reported only {} findings:\n{text}",
        findings.len()
    );
    Scan {
        findings,
        text,
        secs,
    }
}

fn read_json(path: &Path, text: &str) -> Vec<Value> {
    let raw = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("no JSON from testssl at {}: {e}\n{text}", path.display()));
    serde_json::from_str(&raw)
        .unwrap_or_else(|e| panic!("testssl's JSON does not parse ({e}):\n{raw}"))
}

/// Nothing HIGH or CRITICAL, and no FATAL (a check that could not run).
fn assert_nothing_high(scan: &Scan, label: &str) {
    let bad: Vec<String> = scan
        .findings
        .iter()
        .filter(|f| matches!(f["severity"].as_str(), Some("HIGH" | "CRITICAL" | "FATAL")))
        .map(|f| format!("{} {}: {}", f["severity"], f["id"], f["finding"]))
        .collect();
    assert!(
        bad.is_empty(),
        "testssl ({label}) rated {} finding(s) HIGH or worse:\n{}\n\nits report:\n{}",
        bad.len(),
        bad.join("\n"),
        scan.text
    );
    let mut by_severity = std::collections::BTreeMap::<String, usize>::new();
    for f in &scan.findings {
        *by_severity
            .entry(f["severity"].as_str().unwrap_or("?").to_string())
            .or_default() += 1;
    }
    eprintln!(
        "testssl ({label}): {:.0} s, {} findings {by_severity:?}",
        scan.secs,
        scan.findings.len()
    );
    for f in &scan.findings {
        if matches!(f["severity"].as_str(), Some("MEDIUM" | "LOW" | "WARN")) {
            eprintln!("  {} {}: {}", f["severity"], f["id"], f["finding"]);
        }
    }
}

/// A dataplane with `extra` flags, scanned with testssl `scan_args`; the
/// scan and the final report.
fn scan_dataplane(tag: &str, extra: &[&str], scan_args: &[&str]) -> (Scan, Value) {
    let topo = Topo::up(tag, 1);
    let certs = Certs::new(tag);
    let mut dp = Dataplane::start(&topo.gw(), &args(&topo, &certs, extra));
    let scan = testssl(&topo.client(), &certs, tag, scan_args);
    let status = dp.stop(Signal::SIGTERM);
    assert!(status.success(), "exit {status}:\n{}", dp.stderr_text());
    let fin = dp.last_report("final").expect("no final JSON report");
    assert_eq!(fin["balanced"], true, "books do not balance: {fin}");
    assert!(
        !dp.stderr_text().contains("panicked"),
        "{}",
        dp.stderr_text()
    );
    (scan, fin)
}

/// TLS 1.3 only (the default).
#[test]
fn testssl_rates_nothing_high_on_tls13() {
    let (scan, fin) = scan_dataplane("scan13", &[], &[]);
    assert_nothing_high(&scan, "TLS 1.3");
    // The scan reached the server and saw what it serves.
    assert!(
        scan.finding("TLS1_3").starts_with("offered"),
        "{}",
        scan.text
    );
    for old in ["SSLv2", "SSLv3", "TLS1", "TLS1_1", "TLS1_2"] {
        assert_eq!(scan.finding(old), "not offered", "{}", scan.text);
    }
    assert_eq!(scan.finding("ALPN_HTTP2"), "h2", "{}", scan.text);
    assert_eq!(
        scan.finding("cert_chain_of_trust"),
        "passed.",
        "{}",
        scan.text
    );
    let t = &fin["total"];
    assert!(t["tls_handshakes_full"].as_u64().unwrap() > 10, "{t}");
}

/// With `--tls12`. testssl's own ClientHellos (its "sockets" checks: the
/// protocol probes, cipher categories, server preferences and several
/// vulnerability checks) carry no extended_master_secret extension, which
/// sluice requires for TLS 1.2 (docs/tls.md, RFC 7627): sluice answers them
/// with handshake_failure, and testssl, concluding "TLS 1.2 not offered",
/// skips its TLS 1.2 checks. `--ssl-native` has openssl (which offers EMS)
/// make those connections instead, so TLS 1.2 is found and its ciphers and
/// preferences are judged; testssl warns that its client simulations are
/// less exact that way (a WARN, not a finding).
#[test]
fn testssl_rates_nothing_high_with_tls12() {
    let (scan, fin) = scan_dataplane("scan12", &["--tls12"], &["--ssl-native"]);
    assert_nothing_high(&scan, "TLS 1.2 and 1.3, --ssl-native");
    assert!(
        scan.finding("TLS1_3").starts_with("offered"),
        "{}",
        scan.text
    );
    assert!(
        scan.finding("TLS1_2").starts_with("offered"),
        "the scan did not reach TLS 1.2:\n{}",
        scan.text
    );
    for old in ["TLS1", "TLS1_1"] {
        assert_eq!(scan.finding(old), "not offered", "{}", scan.text);
    }
    assert_eq!(
        scan.finding("cert_chain_of_trust"),
        "passed.",
        "{}",
        scan.text
    );
    let t = &fin["total"];
    assert!(t["tls_handshakes_full"].as_u64().unwrap() > 10, "{t}");
}
