//! A [`TlsClientApp`] against an in-memory rustls server (the backend),
//! with certificates made by rcgen at test time and virtual time.

use std::cell::RefCell;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::rc::Rc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::server::{ServerConfig, ServerConnection, WebPkiClientVerifier};
use tempfile::TempDir;

use super::*;
use crate::conn::{plaintext_room, RECORD_OVERHEAD, SEND_BUFFER_LIMIT};

const TIMEOUT: Duration = Duration::from_secs(5);
const BACKEND: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 10));
const BACKEND_SPIFFE: &str = "spiffe://backends.test/ns/prod/sa/api";
const GATEWAY_SPIFFE: &str = "spiffe://gateway.test/sluice";

/// A CA, and a directory for the files of what it issues.
struct Pki {
    dir: TempDir,
    ca: Issuer<'static, KeyPair>,
    ca_path: PathBuf,
}

/// A certificate and its key, in memory and as PEM files.
struct Leaf {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    cert_path: PathBuf,
    key_path: PathBuf,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, cert.pem()).unwrap();
        Pki {
            ca: Issuer::new(params, key),
            ca_path,
            dir,
        }
    }

    fn leaf(&self, file: &str, sans: Vec<SanType>, usage: ExtendedKeyUsagePurpose) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = sans;
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &self.ca).unwrap();
        let leaf = Leaf {
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
            cert_path: self.dir.path().join(format!("{file}.crt")),
            key_path: self.dir.path().join(format!("{file}.key")),
        };
        std::fs::write(&leaf.cert_path, cert.pem()).unwrap();
        std::fs::write(&leaf.key_path, key.serialize_pem()).unwrap();
        leaf
    }

    fn server(&self, sans: Vec<SanType>) -> Leaf {
        self.leaf("server", sans, ExtendedKeyUsagePurpose::ServerAuth)
    }

    fn roots(&self) -> RootCertStore {
        let pem = std::fs::read(&self.ca_path).unwrap();
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            roots.add(cert.unwrap()).unwrap();
        }
        roots
    }

    /// `[cluster.tls]` trusting this CA, nothing else set.
    fn upstream(&self) -> UpstreamTls {
        UpstreamTls {
            ca: self.ca_path.clone(),
            ..UpstreamTls::default()
        }
    }
}

fn dns(name: &str) -> SanType {
    SanType::DnsName(name.try_into().unwrap())
}

fn uri(uri: &str) -> SanType {
    SanType::URI(uri.try_into().unwrap())
}

/// How the in-memory backend is set up.
struct BackendOpts<'a> {
    alpn: &'a [&'a [u8]],
    /// Require client certificates issued by this CA.
    client_ca: Option<&'a Pki>,
    tls12_only: bool,
}

impl Default for BackendOpts<'_> {
    fn default() -> Self {
        BackendOpts {
            alpn: &[b"h2", b"http/1.1"],
            client_ca: None,
            tls12_only: false,
        }
    }
}

fn backend(leaf: &Leaf, opts: BackendOpts<'_>) -> ServerConnection {
    let provider = Arc::new(default_provider());
    let versions: &[&'static rustls::SupportedProtocolVersion] = if opts.tls12_only {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .unwrap();
    let builder = match opts.client_ca {
        Some(pki) => builder.with_client_cert_verifier(
            WebPkiClientVerifier::builder_with_provider(Arc::new(pki.roots()), provider)
                .build()
                .unwrap(),
        ),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(leaf.chain.clone(), leaf.key.clone_key())
        .unwrap();
    config.alpn_protocols = opts.alpn.iter().map(|p| p.to_vec()).collect();
    ServerConnection::new(Arc::new(config)).unwrap()
}

/// What the inner application saw and is told to do.
struct Shared {
    to_send: Vec<u8>,
    received: Vec<u8>,
    /// Echo what is read.
    echo: bool,
    /// Most bytes taken per `on_read` (0: all).
    take_max: usize,
    eof: bool,
    close: Close,
    deadline: Option<Time>,
    timeouts: Vec<Time>,
    drained: bool,
    dropped: bool,
}

/// The inner application: a tiny echo that records everything.
struct Probe(Rc<RefCell<Shared>>);

fn probe() -> (Box<dyn App>, Rc<RefCell<Shared>>) {
    let shared = Rc::new(RefCell::new(Shared {
        to_send: Vec::new(),
        received: Vec::new(),
        echo: false,
        take_max: 0,
        eof: false,
        close: Close::No,
        deadline: None,
        timeouts: Vec::new(),
        drained: false,
        dropped: false,
    }));
    (Box::new(Probe(shared.clone())), shared)
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.0.borrow_mut().dropped = true;
    }
}

impl App for Probe {
    fn on_read(&mut self, _: Time, data: &[u8]) -> usize {
        let mut s = self.0.borrow_mut();
        let take = match s.take_max {
            0 => data.len(),
            max => data.len().min(max),
        };
        s.received.extend_from_slice(&data[..take]);
        if s.echo {
            s.to_send.extend_from_slice(&data[..take]);
        }
        take
    }

    fn on_read_eof(&mut self, _: Time) {
        self.0.borrow_mut().eof = true;
    }

    fn poll_write(&mut self, _: Time, buf: &mut [u8]) -> usize {
        let mut s = self.0.borrow_mut();
        let n = buf.len().min(s.to_send.len());
        buf[..n].copy_from_slice(&s.to_send[..n]);
        s.to_send.drain(..n);
        n
    }

    fn wants_read(&self) -> bool {
        !self.0.borrow().eof
    }

    fn wants_write(&self) -> bool {
        !self.0.borrow().to_send.is_empty()
    }

    fn deadline(&self) -> Option<Time> {
        self.0.borrow().deadline
    }

    fn on_timeout(&mut self, now: Time) {
        self.0.borrow_mut().timeouts.push(now);
    }

    fn memory(&self) -> usize {
        0
    }

    fn close(&self) -> Close {
        self.0.borrow().close
    }

    fn is_idle(&self) -> bool {
        self.0.borrow().to_send.is_empty()
    }

    fn release_idle_memory(&mut self) {}

    fn drain(&mut self, _: Time) {
        self.0.borrow_mut().drained = true;
    }
}

/// The client app and the backend joined by two in-memory byte queues.
struct Pipe {
    client: TlsClientApp,
    server: ServerConnection,
    inner: Rc<RefCell<Shared>>,
    now: Time,
    to_server: Vec<u8>,
    to_client: Vec<u8>,
    /// Plaintext the backend received.
    server_received: Vec<u8>,
    server_plain_out: Vec<u8>,
    server_error: Option<rustls::Error>,
    server_saw_close_notify: bool,
    peak_client_memory: usize,
}

impl Pipe {
    fn new(connector: &UpstreamTlsConnector, peer: IpAddr, server: ServerConnection) -> Pipe {
        let (inner_app, inner) = probe();
        let client = connector.connect(Time::ZERO, peer, inner_app).unwrap();
        Pipe {
            client,
            server,
            inner,
            now: Time::ZERO,
            to_server: Vec::new(),
            to_client: Vec::new(),
            server_received: Vec::new(),
            server_plain_out: Vec::new(),
            server_error: None,
            server_saw_close_notify: false,
            peak_client_memory: 0,
        }
    }

    /// Moves bytes both ways (like the TCP service, in 16 KiB segments)
    /// until nothing moves.
    fn run(&mut self) {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let before = self.fingerprint();
            // The client side, as the service drives it: nothing once it
            // says Abort.
            if self.client.close() != Close::Abort {
                while self.client.wants_write() {
                    let n = self.client.poll_write(self.now, &mut buf);
                    if n == 0 {
                        break;
                    }
                    self.to_server.extend_from_slice(&buf[..n]);
                }
                while !self.to_client.is_empty() && self.client.wants_read() {
                    let seg = self.to_client.len().min(buf.len());
                    let took = self.client.on_read(self.now, &self.to_client[..seg]);
                    if took == 0 {
                        break;
                    }
                    self.to_client.drain(..took);
                }
            }
            self.peak_client_memory = self.peak_client_memory.max(self.client.memory());
            // The backend.
            if self.server_error.is_none() {
                if !self.server_plain_out.is_empty() {
                    let n = self.server.writer().write(&self.server_plain_out).unwrap();
                    self.server_plain_out.drain(..n);
                }
                if !self.to_server.is_empty() {
                    let mut rd = &self.to_server[..];
                    if let Ok(n) = self.server.read_tls(&mut rd) {
                        self.to_server.drain(..n);
                    }
                    if let Err(e) = self.server.process_new_packets() {
                        self.server_error = Some(e);
                    }
                    self.read_server_plaintext();
                }
            }
            while self.server.wants_write() {
                if self.server.write_tls(&mut self.to_client).unwrap_or(0) == 0 {
                    break;
                }
            }
            if self.fingerprint() == before {
                break;
            }
        }
    }

    fn fingerprint(&self) -> [usize; 6] {
        let inner = self.inner.borrow();
        [
            self.to_server.len(),
            self.to_client.len(),
            self.server_received.len(),
            self.server_plain_out.len(),
            inner.received.len(),
            inner.to_send.len(),
        ]
    }

    fn read_server_plaintext(&mut self) {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match self.server.reader().read(&mut buf) {
                Ok(0) => {
                    self.server_saw_close_notify = true;
                    return;
                }
                Ok(n) => self.server_received.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(_) => return,
            }
        }
    }

    fn server_sends(&mut self, data: &[u8]) {
        self.server_plain_out.extend_from_slice(data);
    }

    fn inner_sends(&mut self, data: &[u8]) {
        self.inner.borrow_mut().to_send.extend_from_slice(data);
    }

    fn inner_received(&self) -> Vec<u8> {
        self.inner.borrow().received.clone()
    }

    fn inner_dropped(&self) -> bool {
        self.inner.borrow().dropped
    }

    /// The handshake failed: the inner app is gone and the connection
    /// resets (after any alert went out).
    fn assert_refused(&self) {
        assert!(!self.client.is_established());
        assert!(self.inner_dropped(), "the inner app must be dropped");
        assert_eq!(self.client.close(), Close::Abort);
        assert!(self.to_server.is_empty() || self.server_error.is_some());
    }
}

fn connector(tls: &UpstreamTls, alpn: UpstreamAlpn) -> UpstreamTlsConnector {
    UpstreamTlsConnector::new(tls, alpn, TIMEOUT).unwrap()
}

fn stats(completed: u64, failures: u64, certs: u64, alpn: u64, timeouts: u64) -> UpstreamTlsStats {
    UpstreamTlsStats {
        handshakes_completed: completed,
        handshake_failures: failures,
        certificate_failures: certs,
        alpn_mismatches: alpn,
        handshake_timeouts: timeouts,
    }
}

#[test]
fn sni_and_http11_carry_plaintext_both_ways() {
    let pki = Pki::new("ca");
    let leaf = pki.server(vec![dns("backend.test")]);
    let tls = UpstreamTls {
        sni: Some("backend.test".to_owned()),
        ..pki.upstream()
    };
    let up = connector(&tls, UpstreamAlpn::Http1);
    let mut pipe = Pipe::new(&up, BACKEND, backend(&leaf, BackendOpts::default()));
    // The ClientHello is there at once; the request waits for the handshake.
    assert!(pipe.client.wants_write());
    pipe.inner_sends(b"GET / HTTP/1.1\r\n\r\n");
    pipe.inner.borrow_mut().echo = true;
    pipe.run();
    assert!(pipe.client.is_established());
    assert_eq!(pipe.server.server_name(), Some("backend.test"));
    assert_eq!(pipe.server.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(pipe.server_received, b"GET / HTTP/1.1\r\n\r\n");

    pipe.server_sends(b"HTTP/1.1 200 OK\r\n\r\n");
    pipe.run();
    assert_eq!(pipe.inner_received(), b"HTTP/1.1 200 OK\r\n\r\n");
    // Echoed back through TLS.
    assert!(pipe.server_received.ends_with(b"HTTP/1.1 200 OK\r\n\r\n"));
    assert!(pipe.client.is_idle());
    assert_eq!(pipe.client.close(), Close::No);
    assert_eq!(up.stats(), stats(1, 0, 0, 0, 0));
}

#[test]
fn without_sni_the_certificate_must_name_the_ip() {
    let pki = Pki::new("ca");
    let leaf = pki.server(vec![SanType::IpAddress(BACKEND), dns("backend.test")]);
    let up = connector(&pki.upstream(), UpstreamAlpn::Http1);
    let mut pipe = Pipe::new(&up, BACKEND, backend(&leaf, BackendOpts::default()));
    pipe.run();
    assert!(pipe.client.is_established());
    assert_eq!(pipe.server.server_name(), None, "no SNI without sni");

    // The same certificate from another address.
    let other = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 11));
    let mut pipe = Pipe::new(&up, other, backend(&leaf, BackendOpts::default()));
    pipe.run();
    pipe.assert_refused();
    assert!(matches!(
        pipe.server_error,
        Some(rustls::Error::AlertReceived(
            AlertDescription::BadCertificate
        ))
    ));
    assert_eq!(up.stats(), stats(1, 1, 1, 0, 0));
}

#[test]
fn a_wrong_name_is_refused() {
    let pki = Pki::new("ca");
    let leaf = pki.server(vec![dns("backend.test")]);
    let tls = UpstreamTls {
        sni: Some("other.test".to_owned()),
        ..pki.upstream()
    };
    let up = connector(&tls, UpstreamAlpn::Http1);
    let mut pipe = Pipe::new(&up, BACKEND, backend(&leaf, BackendOpts::default()));
    pipe.inner_sends(b"never sent");
    pipe.run();
    pipe.assert_refused();
    // The alert went out before the reset.
    assert!(matches!(
        pipe.server_error,
        Some(rustls::Error::AlertReceived(
            AlertDescription::BadCertificate
        ))
    ));
    assert!(pipe.server_received.is_empty());
    assert_eq!(pipe.client.deadline(), None);
    assert_eq!(up.stats(), stats(0, 1, 1, 0, 0));
}

#[test]
fn an_unknown_ca_is_refused() {
    let pki = Pki::new("ca");
    let stranger = Pki::new("another ca");
    let leaf = stranger.server(vec![dns("backend.test")]);
    let tls = UpstreamTls {
        sni: Some("backend.test".to_owned()),
        ..pki.upstream()
    };
    let up = connector(&tls, UpstreamAlpn::Http1);
    let mut pipe = Pipe::new(&up, BACKEND, backend(&leaf, BackendOpts::default()));
    pipe.run();
    pipe.assert_refused();
    assert!(matches!(
        pipe.server_error,
        Some(rustls::Error::AlertReceived(AlertDescription::UnknownCA))
    ));
    assert_eq!(up.stats(), stats(0, 1, 1, 0, 0));
}

#[test]
fn spiffe_id_replaces_the_name_check() {
    let pki = Pki::new("ca");
    let leaf = pki.server(vec![uri(BACKEND_SPIFFE), dns("backend.test")]);
    // Neither the SNI nor the address is in the certificate: the SPIFFE ID
    // is what counts.
    let tls = UpstreamTls {
        sni: Some("elsewhere.test".to_owned()),
        spiffe_id: Some(BACKEND_SPIFFE.to_owned()),
        ..pki.upstream()
    };
    let up = connector(&tls, UpstreamAlpn::Http1);
    let mut pipe = Pipe::new(&up, BACKEND, backend(&leaf, BackendOpts::default()));
    pipe.run();
    assert!(pipe.client.is_established());
    assert_eq!(pipe.server.server_name(), Some("elsewhere.test"));
    let tls = UpstreamTls {
        spiffe_id: Some(BACKEND_SPIFFE.to_owned()),
        ..pki.upstream()
    };
    let up_no_sni = connector(&tls, UpstreamAlpn::Http1);
    let mut pipe = Pipe::new(&up_no_sni, BACKEND, backend(&leaf, BackendOpts::default()));
    pipe.run();
    assert!(pipe.client.is_established());
    assert_eq!(pipe.server.server_name(), None);
    assert_eq!(up.stats(), stats(1, 0, 0, 0, 0));
}

#[test]
fn spiffe_mismatches_are_refused() {
    let pki = Pki::new("ca");
    let tls = UpstreamTls {
        spiffe_id: Some(BACKEND_SPIFFE.to_owned()),
        ..pki.upstream()
    };
    let up = connector(&tls, UpstreamAlpn::Http1);
    let other_id = pki.server(vec![uri("spiffe://backends.test/ns/prod/sa/web")]);
    // A longer ID is not the same ID.
    let longer = pki.server(vec![uri(&format!("{BACKEND_SPIFFE}/x"))]);
    // Two IDs: ambiguous, not an SVID.
    let two = pki.server(vec![
        uri(BACKEND_SPIFFE),
        uri("spiffe://backends.test/other"),
    ]);
    let none = pki.server(vec![dns("backend.test"), SanType::IpAddress(BACKEND)]);
    // The right ID from a CA we do not trust: the chain still counts.
    let stranger = Pki::new("another ca").server(vec![uri(BACKEND_SPIFFE)]);
    for leaf in [&other_id, &longer, &two, &none, &stranger] {
        let mut pipe = Pipe::new(&up, BACKEND, backend(leaf, BackendOpts::default()));
        pipe.run();
        pipe.assert_refused();
    }
    assert_eq!(up.stats(), stats(0, 5, 5, 0, 0));
}

fn mtls_upstream(pki: &Pki, client: Option<&Leaf>) -> UpstreamTls {
    UpstreamTls {
        sni: Some("backend.test".to_owned()),
        client_cert: client.map(|c| c.cert_path.clone()),
        client_key: client.map(|c| c.key_path.clone()),
        ..pki.upstream()
    }
}

#[test]
fn mtls_backend_accepts_our_certificate() {
    let pki = Pki::new("ca");
    let leaf = pki.server(vec![dns("backend.test")]);
    let ours = pki.leaf(
        "gateway",
        vec![uri(GATEWAY_SPIFFE)],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    for tls12_only in [false, true] {
        let up = connector(&mtls_upstream(&pki, Some(&ours)), UpstreamAlpn::Http1);
        let opts = BackendOpts {
            client_ca: Some(&pki),
            tls12_only,
            ..BackendOpts::default()
        };
        let mut pipe = Pipe::new(&up, BACKEND, backend(&leaf, opts));
        pipe.inner_sends(b"hello");
        pipe.run();
        assert!(pipe.client.is_established(), "tls12_only {tls12_only}");
        assert!(pipe.server_error.is_none());
        assert_eq!(pipe.server_received, b"hello");
        let presented = pipe.server.peer_certificates().unwrap();
        assert_eq!(
            client_auth::spiffe_id(&presented[0]).as_deref(),
            Some(GATEWAY_SPIFFE)
        );
        assert_eq!(up.stats(), stats(1, 0, 0, 0, 0));
    }
}

#[test]
fn mtls_backend_refuses_a_connector_without_certificate() {
    let pki = Pki::new("ca");
    let leaf = pki.server(vec![dns("backend.test")]);
    // TLS 1.3: our side completes, then the backend's alert arrives.
    let up = connector(&mtls_upstream(&pki, None), UpstreamAlpn::Http1);
    let opts = BackendOpts {
        client_ca: Some(&pki),
        ..BackendOpts::default()
    };
    let mut pipe = Pipe::new(&up, BACKEND, backend(&leaf, opts));
    pipe.inner_sends(b"hello");
    pipe.run();
    assert!(matches!(
        pipe.server_error,
        Some(rustls::Error::NoCertificatesPresented)
    ));
    pipe.assert_refused();
    assert_eq!(up.stats(), stats(1, 1, 0, 0, 0));

    // TLS 1.2: the refusal comes within the handshake.
    let up = connector(&mtls_upstream(&pki, None), UpstreamAlpn::Http1);
    let opts = BackendOpts {
        client_ca: Some(&pki),
        tls12_only: true,
        ..BackendOpts::default()
    };
    let mut pipe = Pipe::new(&up, BACKEND, backend(&leaf, opts));
    pipe.run();
    pipe.assert_refused();
    assert_eq!(up.stats(), stats(0, 1, 0, 0, 0));
}

#[test]
fn h2_must_be_selected() {
    let pki = Pki::new("ca");
    let leaf = pki.server(vec![dns("backend.test")]);
    let tls = UpstreamTls {
        sni: Some("backend.test".to_owned()),
        ..pki.upstream()
    };
    let up = connector(&tls, UpstreamAlpn::H2);

    let mut pipe = Pipe::new(&up, BACKEND, backend(&leaf, BackendOpts::default()));
    pipe.run();
    assert!(pipe.client.is_established());
    assert_eq!(pipe.server.alpn_protocol(), Some(&b"h2"[..]));

    // A backend without ALPN: the handshake completes without a protocol.
    let mut pipe = Pipe::new(&up, BACKEND, backend(&leaf, no_alpn_opts()));
    pipe.inner_sends(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    pipe.run();
    pipe.assert_refused();
    assert!(pipe.server_received.is_empty());

    // A backend with only HTTP/1.1 answers no_application_protocol.
    let http1 = BackendOpts {
        alpn: &[b"http/1.1"],
        ..BackendOpts::default()
    };
    let mut pipe = Pipe::new(&up, BACKEND, backend(&leaf, http1));
    pipe.run();
    pipe.assert_refused();
    assert_eq!(up.stats(), stats(1, 2, 0, 2, 0));

    // HTTP/1.1 without ALPN is fine.
    let up = connector(&tls, UpstreamAlpn::Http1);
    let mut pipe = Pipe::new(&up, BACKEND, backend(&leaf, no_alpn_opts()));
    pipe.run();
    assert!(pipe.client.is_established());
    assert_eq!(up.stats(), stats(1, 0, 0, 0, 0));
}

fn no_alpn_opts() -> BackendOpts<'static> {
    BackendOpts {
        alpn: &[],
        ..BackendOpts::default()
    }
}

fn established(pki: &Pki, up: &UpstreamTlsConnector) -> Pipe {
    let leaf = pki.server(vec![SanType::IpAddress(BACKEND)]);
    let mut pipe = Pipe::new(up, BACKEND, backend(&leaf, BackendOpts::default()));
    pipe.run();
    assert!(pipe.client.is_established());
    pipe
}

#[test]
fn backend_close_notify_reaches_the_inner_app_as_eof() {
    let pki = Pki::new("ca");
    let up = connector(&pki.upstream(), UpstreamAlpn::Http1);
    let mut pipe = established(&pki, &up);
    pipe.server_sends(b"last words");
    pipe.run();
    pipe.server.send_close_notify();
    pipe.run();
    assert_eq!(pipe.inner_received(), b"last words");
    assert!(pipe.inner.borrow().eof);
    // The inner app decides when to close; then our close_notify goes out
    // before the FIN.
    assert_eq!(pipe.client.close(), Close::No);
    pipe.inner.borrow_mut().close = Close::Graceful;
    pipe.run();
    assert!(pipe.server_saw_close_notify);
    assert_eq!(pipe.client.close(), Close::Graceful);
    assert!(!pipe.inner_dropped());
}

#[test]
fn backend_fin_reaches_the_inner_app_as_eof() {
    let pki = Pki::new("ca");
    let up = connector(&pki.upstream(), UpstreamAlpn::Http1);
    let mut pipe = established(&pki, &up);
    pipe.server_sends(b"truncated");
    pipe.inner.borrow_mut().take_max = 4;
    pipe.run();
    pipe.client.on_read_eof(pipe.now);
    // The EOF comes after the plaintext, all of it.
    pipe.run();
    assert_eq!(pipe.inner_received(), b"truncated");
    assert!(pipe.inner.borrow().eof);

    // Before the handshake completes, a FIN is a failed handshake.
    let leaf = pki.server(vec![SanType::IpAddress(BACKEND)]);
    let mut pipe = Pipe::new(&up, BACKEND, backend(&leaf, BackendOpts::default()));
    pipe.client.on_read_eof(Time::ZERO);
    pipe.assert_refused();
    assert_eq!(up.stats(), stats(1, 1, 0, 0, 0));
}

#[test]
fn inner_abort_propagates_and_graceful_close_sends_close_notify() {
    let pki = Pki::new("ca");
    let up = connector(&pki.upstream(), UpstreamAlpn::Http1);
    let pipe = established(&pki, &up);
    pipe.inner.borrow_mut().close = Close::Abort;
    assert_eq!(pipe.client.close(), Close::Abort);

    let mut pipe = established(&pki, &up);
    pipe.inner_sends(b"bye");
    pipe.inner.borrow_mut().close = Close::Graceful;
    pipe.run();
    assert_eq!(pipe.server_received, b"bye");
    assert!(pipe.server_saw_close_notify);
    assert_eq!(pipe.client.close(), Close::Graceful);
}

#[test]
fn handshake_timeout_aborts() {
    let pki = Pki::new("ca");
    let up = connector(&pki.upstream(), UpstreamAlpn::Http1);
    let (inner_app, inner) = probe();
    inner.borrow_mut().deadline = Some(Time::from_millis(1));
    let mut client = up.connect(Time::ZERO, BACKEND, inner_app).unwrap();
    let mut buf = vec![0u8; 16 * 1024];
    let n = client.poll_write(Time::ZERO, &mut buf);
    assert!(n > 0 && buf[0] == 0x16, "a handshake record first");
    // The inner app's own deadline waits for the handshake.
    let deadline = Time::ZERO + TIMEOUT;
    assert_eq!(client.deadline(), Some(deadline));
    client.on_timeout(Time::from_millis(1));
    assert_eq!(client.close(), Close::No);
    assert!(inner.borrow().timeouts.is_empty());
    client.on_timeout(deadline);
    assert_eq!(client.close(), Close::Abort);
    assert!(inner.borrow().dropped);
    assert_eq!(client.deadline(), None);
    assert_eq!(up.stats(), stats(0, 0, 0, 0, 1));
}

#[test]
fn the_inner_deadline_applies_once_established() {
    let pki = Pki::new("ca");
    let up = connector(&pki.upstream(), UpstreamAlpn::Http1);
    let leaf = pki.server(vec![SanType::IpAddress(BACKEND)]);
    let mut pipe = Pipe::new(&up, BACKEND, backend(&leaf, BackendOpts::default()));
    let inner_deadline = Time::from_millis(30_000);
    pipe.inner.borrow_mut().deadline = Some(inner_deadline);
    pipe.client.drain(Time::ZERO);
    assert!(pipe.inner.borrow().drained, "drain reaches the waiting app");
    assert_eq!(pipe.client.deadline(), Some(Time::ZERO + TIMEOUT));
    pipe.run();
    assert!(pipe.client.is_established());
    assert_eq!(pipe.client.deadline(), Some(inner_deadline));
    pipe.client.on_timeout(inner_deadline);
    assert_eq!(pipe.inner.borrow().timeouts, [inner_deadline]);
    assert_eq!(pipe.client.close(), Close::No);
}

#[test]
fn a_slow_inner_app_holds_back_the_ciphertext() {
    let pki = Pki::new("ca");
    let up = connector(&pki.upstream(), UpstreamAlpn::Http1);
    let mut pipe = established(&pki, &up);
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 31 % 251) as u8).collect();
    pipe.inner.borrow_mut().take_max = 1000;
    pipe.server_sends(&data);
    pipe.run();
    assert_eq!(pipe.inner_received(), data);
    // rustls never held more than its limits: the rest waited in "TCP".
    assert!(
        pipe.peak_client_memory
            < TlsConn::<ClientConnection, Waiting, Ended>::CONNECTION_BYTES + 2 * SEND_BUFFER_LIMIT,
        "{}",
        pipe.peak_client_memory
    );
}

#[test]
fn new_names_the_file_and_the_problem() {
    let pki = Pki::new("ca");
    let ours = pki.leaf(
        "gateway",
        vec![uri(GATEWAY_SPIFFE)],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let other = pki.leaf(
        "other",
        vec![uri(GATEWAY_SPIFFE)],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let err = |tls: UpstreamTls| {
        UpstreamTlsConnector::new(&tls, UpstreamAlpn::H2, TIMEOUT)
            .unwrap_err()
            .to_string()
    };

    let missing = pki.dir.path().join("missing.pem");
    let text = err(UpstreamTls {
        ca: missing.clone(),
        ..pki.upstream()
    });
    assert!(text.starts_with(&missing.display().to_string()), "{text}");

    let empty = pki.dir.path().join("empty.pem");
    std::fs::write(&empty, "no PEM here\n").unwrap();
    let text = err(UpstreamTls {
        ca: empty.clone(),
        ..pki.upstream()
    });
    assert_eq!(
        text,
        format!(
            "{}: no certificate (no PEM CERTIFICATE block)",
            empty.display()
        )
    );

    let text = err(UpstreamTls {
        client_cert: Some(ours.cert_path.clone()),
        client_key: Some(other.key_path.clone()),
        ..pki.upstream()
    });
    assert_eq!(
        text,
        format!(
            "{}: the key does not match the certificate in {}",
            other.key_path.display(),
            ours.cert_path.display()
        )
    );

    let text = err(UpstreamTls {
        client_cert: Some(ours.cert_path.clone()),
        client_key: Some(ours.cert_path.clone()),
        ..pki.upstream()
    });
    assert!(text.contains("no private key"), "{text}");

    let text = err(UpstreamTls {
        client_cert: Some(ours.cert_path.clone()),
        ..pki.upstream()
    });
    assert!(text.contains("both or neither"), "{text}");

    assert!(UpstreamTlsConnector::new(&pki.upstream(), UpstreamAlpn::H2, Duration::ZERO).is_err());
    // A client certificate without DNS names (an SVID) is fine.
    let tls = mtls_upstream(&pki, Some(&ours));
    assert!(UpstreamTlsConnector::new(&tls, UpstreamAlpn::H2, TIMEOUT).is_ok());
}

#[test]
fn records_of_the_plaintext_fit_the_room() {
    for room in (0..100_000).step_by(7) {
        let plain = plaintext_room(room, RECORD_PLAINTEXT);
        let records = plain.div_ceil(RECORD_PLAINTEXT);
        assert!(plain + records * RECORD_OVERHEAD <= room, "{room}");
    }
}
