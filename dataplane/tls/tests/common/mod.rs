//! Test fixtures: certificates made with rcgen at test time, a rustls
//! client driven against a `TlsApp` in memory, and a small echo app that
//! records the `ConnContext` it was made with.
#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    SanType, SignatureAlgorithm,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{aws_lc_rs, verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use sluice_app::{App, AppStats, Close, ConnContext, SharedStats, Time};
use sluice_tls::{TlsApp, TlsLoop, TlsServer, TlsSettings};
use tempfile::TempDir;

pub const SPIFFE_GOOD: &str = "spiffe://good.test/ns/web/sa/x";
pub const SPIFFE_OTHER: &str = "spiffe://other.test/x";

/// A CA and the files of the certificates it issues, in a temporary
/// directory.
pub struct Pki {
    pub dir: TempDir,
    ca: Issuer<'static, KeyPair>,
    pub ca_path: PathBuf,
}

/// A server certificate written as PEM files.
pub struct ServerFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub der: CertificateDer<'static>,
}

pub struct ClientCert {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Pki {
    pub fn new() -> Pki {
        Pki::with_ca_name("sluice test CA")
    }

    pub fn with_ca_name(ca_name: &str) -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, ca_name);
        let cert = params.self_signed(&key).unwrap();
        let ca_path = dir.path().join("ca.pem");
        fs::write(&ca_path, cert.pem()).unwrap();
        Pki {
            ca: Issuer::new(params, key),
            ca_path,
            dir,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// An ECDSA P-256 server certificate for `sans` (DNS names).
    pub fn server(&self, file: &str, sans: &[&str]) -> ServerFiles {
        self.server_with(file, sans, None, &rcgen::PKCS_ECDSA_P256_SHA256)
    }

    /// A server certificate with `sans` (may be empty), a common name, and
    /// a key of `alg`.
    pub fn server_with(
        &self,
        file: &str,
        sans: &[&str],
        common_name: Option<&str>,
        alg: &'static SignatureAlgorithm,
    ) -> ServerFiles {
        let key = if *alg == rcgen::PKCS_RSA_SHA256 {
            KeyPair::generate_rsa_for(alg, rcgen::RsaKeySize::_2048).unwrap()
        } else {
            KeyPair::generate_for(alg).unwrap()
        };
        let names: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        if let Some(cn) = common_name {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.ca).unwrap();
        let files = ServerFiles {
            cert: self.path(&format!("{file}.crt")),
            key: self.path(&format!("{file}.key")),
            der: cert.der().clone(),
        };
        fs::write(&files.cert, cert.pem()).unwrap();
        fs::write(&files.key, key.serialize_pem()).unwrap();
        files
    }

    /// A client certificate with one URI SAN.
    pub fn client(&self, uri: &str) -> ClientCert {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .subject_alt_names
            .push(SanType::URI(uri.try_into().unwrap()));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.ca).unwrap();
        ClientCert {
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
        }
    }

    pub fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        let pem = fs::read(&self.ca_path).unwrap();
        for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
            roots.add(cert.unwrap()).unwrap();
        }
        roots
    }
}

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(aws_lc_rs::default_provider())
}

/// Client settings for a test.
pub struct ClientOptions<'a> {
    pub alpn: &'a [&'a [u8]],
    pub tls12_only: bool,
    pub cert: Option<&'a ClientCert>,
    /// Accept any server certificate (for looking at which one was sent).
    pub accept_any: bool,
    /// With `accept_any`: offer ECDSA signature schemes only.
    pub ecdsa_only: bool,
}

impl Default for ClientOptions<'_> {
    fn default() -> Self {
        ClientOptions {
            alpn: &[b"h2", b"http/1.1"],
            tls12_only: false,
            cert: None,
            accept_any: false,
            ecdsa_only: false,
        }
    }
}

pub fn client_config(pki: &Pki, opts: ClientOptions<'_>) -> Arc<ClientConfig> {
    let versions: &[&'static rustls::SupportedProtocolVersion] = if opts.tls12_only {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(pki.roots());
    let mut config = match opts.cert {
        Some(c) => builder
            .with_client_auth_cert(c.chain.clone(), c.key.clone_key())
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = opts.alpn.iter().map(|p| p.to_vec()).collect();
    if opts.accept_any {
        config
            .dangerous()
            .set_certificate_verifier(Arc::new(AcceptAnyServerCert {
                provider: provider(),
                ecdsa_only: opts.ecdsa_only,
            }));
    }
    Arc::new(config)
}

#[derive(Debug)]
struct AcceptAnyServerCert {
    provider: Arc<CryptoProvider>,
    ecdsa_only: bool,
}

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        let mut schemes = self
            .provider
            .signature_verification_algorithms
            .supported_schemes();
        if self.ecdsa_only {
            schemes.retain(|s| format!("{s:?}").starts_with("ECDSA"));
        }
        schemes
    }
}

/// A server, one loop, its stats and the contexts its apps were made with.
pub struct Harness {
    pub server: Arc<TlsServer>,
    pub tls_loop: TlsLoop,
    pub stats: SharedStats,
    pub contexts: Rc<RefCell<Vec<ConnContext>>>,
    /// While set, every echo app takes no input ("not now": it still says
    /// it wants to read, as an app about to free space may).
    pub paused: Rc<Cell<bool>>,
}

impl Harness {
    pub fn new(settings: TlsSettings) -> Harness {
        Harness::with_server(Arc::new(TlsServer::new(settings).unwrap()))
    }

    pub fn with_server(server: Arc<TlsServer>) -> Harness {
        let stats = SharedStats::default();
        let contexts = Rc::new(RefCell::new(Vec::new()));
        let recorded = contexts.clone();
        let paused = Rc::new(Cell::new(false));
        let pause = paused.clone();
        let factory = Rc::new(move |ctx: &ConnContext, _: sluice_app::Time| {
            recorded.borrow_mut().push(ctx.clone());
            Box::new(Echo {
                paused: pause.clone(),
                ..Echo::default()
            }) as Box<dyn App>
        });
        let tls_loop = TlsLoop::new(server.clone(), factory, stats.clone());
        Harness {
            server,
            tls_loop,
            stats,
            contexts,
            paused,
        }
    }

    /// A connection to `name` ("1.2.3.4" sends no SNI), handshake run.
    pub fn connect(&mut self, config: &Arc<ClientConfig>, name: &str) -> Pipe {
        let mut pipe = self.open(config, name);
        pipe.run();
        pipe
    }

    /// A connection to `name`, nothing sent yet.
    pub fn open(&mut self, config: &Arc<ClientConfig>, name: &str) -> Pipe {
        let name = ServerName::try_from(name.to_owned()).unwrap();
        let client = ClientConnection::new(config.clone(), name).unwrap();
        let server = self.tls_loop.accept(Time::ZERO).unwrap();
        Pipe::new(client, server)
    }

    pub fn stats(&self) -> AppStats {
        *self.stats.borrow()
    }

    pub fn last_context(&self) -> ConnContext {
        self.contexts.borrow().last().cloned().unwrap()
    }
}

/// A client and a server connection joined by two in-memory byte queues
/// (the network, with TCP's buffering).
pub struct Pipe {
    pub client: ClientConnection,
    pub server: TlsApp,
    pub now: Time,
    /// Size of the server's poll_write buffers and read segments.
    pub segment: usize,
    to_server: Vec<u8>,
    to_client: Vec<u8>,
    client_plain_out: Vec<u8>,
    client_plain_sent: usize,
    /// Plaintext the client received.
    pub received: Vec<u8>,
    pub client_error: Option<rustls::Error>,
    /// The client read the server's close_notify.
    pub client_saw_close_notify: bool,
    /// Most memory the server reported.
    pub peak_server_memory: usize,
}

impl Pipe {
    pub fn new(client: ClientConnection, server: TlsApp) -> Pipe {
        Pipe {
            client,
            server,
            now: Time::ZERO,
            segment: 16 * 1024,
            to_server: Vec::new(),
            to_client: Vec::new(),
            client_plain_out: Vec::new(),
            client_plain_sent: 0,
            received: Vec::new(),
            client_error: None,
            client_saw_close_notify: false,
            peak_server_memory: 0,
        }
    }

    /// Queues plaintext for the client to send.
    pub fn client_sends(&mut self, data: &[u8]) {
        self.client_plain_out.extend_from_slice(data);
    }

    /// Moves bytes both ways until nothing moves.
    pub fn run(&mut self) {
        let mut buf = vec![0u8; self.segment];
        loop {
            let mut progress = false;
            if self.client_error.is_none() && self.client_plain_sent < self.client_plain_out.len() {
                let rest = &self.client_plain_out[self.client_plain_sent..];
                let n = self.client.writer().write(rest).unwrap_or(0);
                self.client_plain_sent += n;
                progress |= n > 0;
            }
            while self.client.wants_write() {
                let before = self.to_server.len();
                if self.client.write_tls(&mut self.to_server).is_err()
                    || self.to_server.len() == before
                {
                    break;
                }
            }
            while !self.to_server.is_empty() && self.server.wants_read() {
                let seg = self.to_server.len().min(self.segment);
                let took = self.server.on_read(self.now, &self.to_server[..seg]);
                if took == 0 {
                    break;
                }
                self.to_server.drain(..took);
                progress = true;
            }
            while self.server.wants_write() {
                let n = self.server.poll_write(self.now, &mut buf);
                if n == 0 {
                    break;
                }
                self.to_client.extend_from_slice(&buf[..n]);
                progress = true;
            }
            self.peak_server_memory = self.peak_server_memory.max(self.server.memory());
            if self.client_error.is_none() && !self.to_client.is_empty() {
                let mut rd = &self.to_client[..];
                if let Ok(n) = self.client.read_tls(&mut rd) {
                    self.to_client.drain(..n);
                    progress |= n > 0;
                }
                if let Err(e) = self.client.process_new_packets() {
                    self.client_error = Some(e);
                }
                progress |= self.read_client_plaintext();
            }
            if !progress {
                break;
            }
        }
    }

    fn read_client_plaintext(&mut self) -> bool {
        let mut buf = [0u8; 16 * 1024];
        let mut any = false;
        loop {
            match self.client.reader().read(&mut buf) {
                Ok(0) => {
                    self.client_saw_close_notify = true;
                    return any;
                }
                Ok(n) => {
                    self.received.extend_from_slice(&buf[..n]);
                    any = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return any,
                Err(_) => return any,
            }
        }
    }

    pub fn handshake_ok(&self) -> bool {
        self.client_error.is_none() && !self.client.is_handshaking() && self.server.is_established()
    }

    /// Sends `data` and runs until it is echoed back.
    pub fn echo(&mut self, data: &[u8]) {
        let start = self.received.len();
        self.client_sends(data);
        self.run();
        assert_eq!(&self.received[start..], data, "echoed bytes differ");
    }

    pub fn server_close(&self) -> Close {
        self.server.close()
    }

    /// Bytes the server wrote that the client has not read.
    pub fn unread_by_client(&self) -> usize {
        self.to_client.len()
    }

    /// Bytes the client sent that the server has not taken.
    pub fn untaken_by_server(&self) -> usize {
        self.to_server.len()
    }
}

/// Echoes what it reads, holding at most 16 KiB (so a fast sender meets
/// backpressure); closes gracefully after the peer's end (or a drain) and
/// the echo.
#[derive(Default)]
pub struct Echo {
    pending: Vec<u8>,
    eof: bool,
    draining: bool,
    paused: Rc<Cell<bool>>,
}

const ECHO_CAP: usize = 16 * 1024;

impl App for Echo {
    fn on_read(&mut self, _: Time, data: &[u8]) -> usize {
        if self.paused.get() {
            return 0;
        }
        let take = data.len().min(ECHO_CAP - self.pending.len());
        self.pending.extend_from_slice(&data[..take]);
        take
    }

    fn on_read_eof(&mut self, _: Time) {
        self.eof = true;
    }

    fn poll_write(&mut self, _: Time, buf: &mut [u8]) -> usize {
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending[..n]);
        self.pending.drain(..n);
        n
    }

    fn wants_read(&self) -> bool {
        !self.eof && self.pending.len() < ECHO_CAP
    }

    fn wants_write(&self) -> bool {
        !self.pending.is_empty()
    }

    fn deadline(&self) -> Option<Time> {
        None
    }

    fn on_timeout(&mut self, _: Time) {}

    fn memory(&self) -> usize {
        self.pending.capacity()
    }

    fn close(&self) -> Close {
        if (self.eof || self.draining) && self.pending.is_empty() {
            Close::Graceful
        } else {
            Close::No
        }
    }

    fn is_idle(&self) -> bool {
        self.pending.is_empty()
    }

    fn release_idle_memory(&mut self) {
        self.pending = Vec::new();
    }

    fn drain(&mut self, _: Time) {
        self.draining = true;
    }
}

/// Settings for `files` (first pair the default).
pub fn settings(files: &[&ServerFiles]) -> TlsSettings {
    TlsSettings {
        certs: files
            .iter()
            .map(|f| (f.cert.clone(), f.key.clone()))
            .collect(),
        ..TlsSettings::default()
    }
}

pub fn write(path: &Path, text: &str) {
    fs::write(path, text).unwrap();
}
