//! The process around the protocols: TLS with ALPN, several listeners
//! (IPv6 too), the stats file, and clean exits on SIGTERM/SIGINT.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Backend, H1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("sluice-test-backend-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self, file: &str) -> String {
        self.0.join(file).display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running openssl (scripts/install-deps.sh installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate for `localhost` and a client certificate
/// with the SPIFFE ID [`CLIENT_SPIFFE_ID`], both signed by it.
fn make_pki(dir: &Path) {
    for name in ["ca", "server", "client"] {
        openssl(
            dir,
            &[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                &format!("{name}.key"),
            ],
        );
    }
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "ca.key",
            "-subj",
            "/CN=backend test ca",
            "-days",
            "2",
            "-out",
            "ca.pem",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    issue(
        dir,
        "server",
        "/CN=localhost",
        "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost\n",
    );
    issue(
        dir,
        "client",
        "/CN=gateway",
        &format!("extendedKeyUsage=clientAuth\nsubjectAltName=URI:{CLIENT_SPIFFE_ID}\n"),
    );
}

const CLIENT_SPIFFE_ID: &str = "spiffe://gateway.test/sluice";

/// `NAME.pem` for `NAME.key`, signed by the CA, with `ext` (extensions).
fn issue(dir: &Path, name: &str, subject: &str, ext: &str) {
    let csr = format!("{name}.csr");
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-key",
            &format!("{name}.key"),
            "-subj",
            subject,
            "-out",
            &csr,
        ],
    );
    let ext_file = format!("{name}.ext");
    std::fs::write(
        dir.join(&ext_file),
        format!("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n{ext}"),
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &format!("{name}.pem"),
            "-extfile",
            &ext_file,
        ],
    );
}

fn tls_connector(ca: &str, alpn: &[u8]) -> tokio_rustls::TlsConnector {
    tls_connector_with(ca, alpn, None)
}

/// A client trusting `ca`, offering `alpn`, presenting `client` (cert and
/// key files) if given.
fn tls_connector_with(
    ca: &str,
    alpn: &[u8],
    client: Option<(&str, &str)>,
) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(ca).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_file(cert).unwrap()],
                PrivateKeyDer::from_pem_file(key).unwrap(),
            )
            .unwrap(),
    };
    config.alpn_protocols = vec![alpn.to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// GET /headers over HTTP/1.1 through `connector`: the JSON document, or
/// the error that ended the exchange (a refused handshake shows here in
/// TLS 1.3: the server's alert comes after the client's side completed).
async fn tls_headers(
    connector: &tokio_rustls::TlsConnector,
    addr: std::net::SocketAddr,
) -> std::io::Result<serde_json::Value> {
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let mut tls = connector.connect(name, tcp).await?;
    tls.write_all(b"GET /headers HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
        .await?;
    let mut raw = Vec::new();
    tls.read_to_end(&mut raw).await?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no response head"))?;
    assert!(raw.starts_with(b"HTTP/1.1 200 OK\r\n"));
    Ok(serde_json::from_slice(&raw[split + 4..]).unwrap())
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn tls_with_alpn_h2_and_http11() {
    let dir = TempDir::new("tls");
    make_pki(&dir.0);
    let b = Backend::start(&[
        "--tls-cert",
        &dir.path("server.pem"),
        "--tls-key",
        &dir.path("server.key"),
    ]);
    let ca = dir.path("ca.pem");
    rt().block_on(async {
        tokio::time::timeout(Duration::from_secs(30), async {
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();

            // ALPN h2.
            let tcp = tokio::net::TcpStream::connect(b.addr()).await.unwrap();
            let tls = tls_connector(&ca, b"h2")
                .connect(name.clone(), tcp)
                .await
                .unwrap();
            let (mut c, conn) = h2::client::handshake(tls).await.unwrap();
            tokio::spawn(conn);
            let r = common::h2c::get(&mut c, "/headers").await;
            let j: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(j["version"], "h2");
            assert_eq!(j["tls"], true);
            assert_eq!(j["alpn"], "h2");

            // ALPN http/1.1.
            let tcp = tokio::net::TcpStream::connect(b.addr()).await.unwrap();
            let mut tls = tls_connector(&ca, b"http/1.1")
                .connect(name, tcp)
                .await
                .unwrap();
            tls.write_all(b"GET /headers HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut raw = Vec::new();
            tls.read_to_end(&mut raw).await.unwrap();
            let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
            assert!(raw.starts_with(b"HTTP/1.1 200 OK\r\n"));
            let j: serde_json::Value = serde_json::from_slice(&raw[split + 4..]).unwrap();
            assert_eq!(j["version"], "http/1.1");
            assert_eq!(j["alpn"], "http/1.1");
        })
        .await
        .expect("TLS test timed out");
    });
}

#[test]
fn tls_client_certificates() {
    let dir = TempDir::new("mtls");
    make_pki(&dir.0);
    let (ca, cert, key) = (
        dir.path("ca.pem"),
        dir.path("server.pem"),
        dir.path("server.key"),
    );
    let tls_args = [
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--tls-client-ca",
        &ca,
    ];
    let required = Backend::start(&tls_args);
    let optional = Backend::start(&[&tls_args[..], &["--tls-client-optional"]].concat());
    let (client_cert, client_key) = (dir.path("client.pem"), dir.path("client.key"));
    let with_cert = tls_connector_with(&ca, b"http/1.1", Some((&client_cert, &client_key)));
    let without = tls_connector(&ca, b"http/1.1");
    rt().block_on(async {
        tokio::time::timeout(Duration::from_secs(30), async {
            for b in [&required, &optional] {
                let j = tls_headers(&with_cert, b.addr()).await.unwrap();
                assert_eq!(j["client_cert"], true);
                assert_eq!(j["client_spiffe_id"], CLIENT_SPIFFE_ID);
            }
            assert!(tls_headers(&without, required.addr()).await.is_err());
            let j = tls_headers(&without, optional.addr()).await.unwrap();
            assert_eq!(j["client_cert"], false);
            assert_eq!(j["client_spiffe_id"], serde_json::Value::Null);
        })
        .await
        .expect("mTLS test timed out");
    });
    // A certificate from another CA is refused even when optional.
    let other = TempDir::new("mtls-other");
    make_pki(&other.0);
    let stranger = tls_connector_with(
        &ca,
        b"http/1.1",
        Some((&other.path("client.pem"), &other.path("client.key"))),
    );
    rt().block_on(async {
        let refused = tokio::time::timeout(Duration::from_secs(30), async {
            tls_headers(&stranger, optional.addr()).await
        });
        assert!(refused.await.expect("timed out").is_err());
    });
}

#[test]
fn tls_alpn_flag() {
    let dir = TempDir::new("alpn");
    make_pki(&dir.0);
    let (ca, cert, key) = (
        dir.path("ca.pem"),
        dir.path("server.pem"),
        dir.path("server.key"),
    );
    let http1_only = Backend::start(&[
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--tls-alpn",
        "http/1.1",
    ]);
    let no_alpn = Backend::start(&["--tls-cert", &cert, "--tls-key", &key, "--tls-alpn", "none"]);
    rt().block_on(async {
        tokio::time::timeout(Duration::from_secs(30), async {
            // h2 only, against http/1.1 only: no_application_protocol.
            let h2 = tls_connector(&ca, b"h2");
            assert!(tls_headers(&h2, http1_only.addr()).await.is_err());
            let j = tls_headers(&tls_connector(&ca, b"http/1.1"), http1_only.addr())
                .await
                .unwrap();
            assert_eq!(j["alpn"], "http/1.1");
            // No ALPN: the offer is ignored, HTTP/1.1 still served.
            let j = tls_headers(&h2, no_alpn.addr()).await.unwrap();
            assert_eq!(j["alpn"], serde_json::Value::Null);
            assert_eq!(j["version"], "http/1.1");
        })
        .await
        .expect("ALPN test timed out");
    });
}

fn read_stats(path: &str) -> Option<serde_json::Value> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

#[test]
fn stats_file_and_sigterm() {
    let dir = TempDir::new("stats");
    let stats = dir.path("stats.json");
    let mut b = Backend::start(&["--stats-file", &stats, "--stats-interval-ms", "50"]);

    let mut c = H1::connect(b.addr());
    c.get("/");
    c.get("/");
    drop(c);
    rt().block_on(async {
        let (mut c, _conn) = common::h2c::connect(b.addr()).await;
        common::h2c::get(&mut c, "/").await;
    });
    // A stalled request whose client leaves: the backend must notice and
    // close, or connections_open would never get back to 0.
    let mut c = H1::connect(b.addr());
    c.send("GET", "/stall", &[], b"");
    std::thread::sleep(Duration::from_millis(200));
    drop(c);

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = read_stats(&stats);
        if s.as_ref()
            .is_some_and(|s| s["requests"] == 4 && s["connections_open"] == 0)
        {
            break;
        }
        assert!(Instant::now() < deadline, "stats never settled: {s:?}");
        std::thread::sleep(Duration::from_millis(50));
    }

    std::fs::remove_file(&stats).unwrap();
    let status = b.signal_and_wait("TERM");
    assert!(status.success(), "{status:?}");
    // Written once more on the way out.
    let s = read_stats(&stats).expect("stats written at SIGTERM");
    assert_eq!(s["backend"], "test");
    assert_eq!(s["connections_accepted"], 3);
    assert_eq!(s["connections_http1"], 2);
    assert_eq!(s["connections_h2"], 1);
    assert_eq!(s["requests_http1"], 3);
    assert_eq!(s["requests_h2"], 1);
    assert_eq!(s["connections_open"], 0);
}

#[test]
fn sigint_exits_cleanly() {
    let mut b = Backend::start(&[]);
    assert_eq!(H1::connect(b.addr()).get("/").status, 200);
    assert!(b.signal_and_wait("INT").success());
}

#[test]
fn several_listeners_ipv4_and_ipv6() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here: IPv6 part not run");
        return;
    }
    let b = Backend::start_raw(&[
        "--listen",
        "127.0.0.1:0",
        "--listen",
        "[::1]:0",
        "--name",
        "dual",
    ]);
    assert!(b.addrs[0].is_ipv4() && b.addrs[1].is_ipv6());
    for addr in &b.addrs {
        let r = H1::connect(*addr).get("/headers");
        assert_eq!(r.header("x-backend"), Some("dual"));
        assert_eq!(r.json()["local"], addr.to_string());
    }
}

#[test]
fn bad_flags_fail_fast() {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-test-backend"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            "/nonexistent.pem",
            "--tls-key",
            "/nonexistent.key",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        out.stdout.is_empty(),
        "printed 'listening' without a usable TLS setup"
    );
    for args in [
        &["--tls-client-optional"][..],
        &["--tls-client-ca", "/nonexistent.pem"],
        &["--tls-alpn", "h2"],
    ] {
        // Each needs --tls-cert (or --tls-client-ca).
        let out = Command::new(env!("CARGO_BIN_EXE_sluice-test-backend"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}
