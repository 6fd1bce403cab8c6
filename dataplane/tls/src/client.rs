//! The client side: TLS to upstream backends. An [`UpstreamTlsConnector`]
//! holds one cluster's `[cluster.tls]` (CA bundle, SNI, client
//! certificate, expected SPIFFE ID) as a rustls `ClientConfig`; each
//! connection to a backend is a [`TlsClientApp`], a sluice [`App`] that
//! runs the handshake and then the application the proxy gave it (its
//! HTTP/1.1 or HTTP/2 client side) on the plaintext.
//!
//! Who the backend must be:
//! - `sni` set: SNI carries it and the certificate must name it;
//! - no `sni`: no SNI is sent and the certificate must name the backend's
//!   IP address (IP SAN);
//! - `spiffe_id` set: instead of either name check, the certificate must
//!   carry exactly one `spiffe://` URI SAN, equal to it. The chain is
//!   verified against the CA bundle in every case.
//!
//! The byte flow is [`crate::TlsApp`]'s (see app.rs): ciphertext goes to
//! rustls only while the application takes the plaintext, and the
//! application writes its plaintext straight into the caller's buffer,
//! which the records then overwrite.
//!
//! Failing: a failed handshake (a certificate refused either way, an
//! alert, the wrong ALPN, a timeout, the backend leaving) drops the
//! application, which is how the proxy learns of it, and resets the
//! connection once the alert rustls queued, if any, is written. A
//! backend's TLS 1.3 refusal of our client certificate only arrives after
//! our side of the handshake completed and the application started: a
//! fatal alert before anything else from the backend counts as a failed
//! handshake too.

use std::io::{BufRead, Write};
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, WebPkiServerVerifier};
use rustls::crypto::aws_lc_rs::default_provider;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::sign::CertifiedKey;
use rustls::{
    AlertDescription, CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct,
    InconsistentKeys, PeerMisbehaved, ProtocolVersion, RootCertStore, SignatureScheme,
};
use sluice_app::{App, Close, Time};
use sluice_config::UpstreamTls;

use crate::{certs, client_auth, TlsError};

/// See app.rs: rustls's send queue limit, the plaintext handed over per
/// round, and the most a record adds to its plaintext.
const SEND_BUFFER_LIMIT: usize = 64 * 1024;
const MAX_PLAINTEXT_ROUND: usize = 32 * 1024;
const RECORD_OVERHEAD: usize = 5 + 16 + 8;
/// Plaintext per record: rustls's default (no max fragment size here).
const RECORD_PLAINTEXT: usize = 16384;

/// What a rustls connection holds beyond its buffers: an estimate for
/// `memory`.
const RUSTLS_CONNECTION_BYTES: usize = std::mem::size_of::<ClientConnection>() + 4096 + 1024;

/// Which application protocol the client offers and requires in ALPN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamAlpn {
    /// Offers `http/1.1`; a backend that selects no protocol is fine too
    /// (HTTP/1.1 is what TLS without ALPN means).
    Http1,
    /// Offers `h2`, which the backend must select: anything else is a
    /// failed handshake (an ALPN mismatch).
    H2,
}

impl UpstreamAlpn {
    fn protocol(self) -> &'static [u8] {
        match self {
            UpstreamAlpn::Http1 => b"http/1.1",
            UpstreamAlpn::H2 => b"h2",
        }
    }
}

/// A snapshot of an [`UpstreamTlsConnector`]'s counters (every connection
/// it made, on every loop).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UpstreamTlsStats {
    /// Handshakes that completed (the application started).
    pub handshakes_completed: u64,
    /// Handshakes that failed, timeouts excepted: refused certificates
    /// either way, alerts, ALPN mismatches, the backend closing. Includes
    /// `certificate_failures` and `alpn_mismatches`; a TLS 1.3 backend's
    /// refusal of our certificate is also in `handshakes_completed`.
    pub handshake_failures: u64,
    /// Backend certificates we refused: chain (unknown CA, expired, ...),
    /// name or SPIFFE ID.
    pub certificate_failures: u64,
    /// `h2` required and not selected, or the backend found no protocol of
    /// ours acceptable.
    pub alpn_mismatches: u64,
    /// Handshakes not complete within the handshake timeout.
    pub handshake_timeouts: u64,
}

#[derive(Debug, Default)]
struct Counters {
    handshakes_completed: AtomicU64,
    handshake_failures: AtomicU64,
    certificate_failures: AtomicU64,
    alpn_mismatches: AtomicU64,
    handshake_timeouts: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    // Independent counters: no ordering with anything else.
    counter.fetch_add(1, Ordering::Relaxed);
}

/// One upstream cluster's TLS client configuration, shared by every loop
/// (Send + Sync; hold it in an `Arc`). Session tickets the backends issue
/// are kept (rustls's in-memory cache, keyed by server name or IP) so
/// that new connections resume.
#[derive(Debug)]
pub struct UpstreamTlsConnector {
    config: Arc<ClientConfig>,
    /// The configured SNI; None: the peer's IP is the name checked.
    sni: Option<ServerName<'static>>,
    alpn: UpstreamAlpn,
    handshake_timeout: Duration,
    counters: Arc<Counters>,
}

impl UpstreamTlsConnector {
    /// Loads the CA bundle and the client certificate the section names;
    /// each problem is one line naming its file.
    pub fn new(
        tls: &UpstreamTls,
        alpn: UpstreamAlpn,
        handshake_timeout: Duration,
    ) -> Result<Self, TlsError> {
        Self::with_reader(tls, alpn, handshake_timeout, &|p| std::fs::read(p))
    }

    fn with_reader(
        tls: &UpstreamTls,
        alpn: UpstreamAlpn,
        handshake_timeout: Duration,
        read: &dyn Fn(&Path) -> std::io::Result<Vec<u8>>,
    ) -> Result<Self, TlsError> {
        if handshake_timeout.is_zero() {
            return Err(TlsError::Setting(
                "upstream TLS handshake timeout must be more than zero".to_owned(),
            ));
        }
        let sni = match &tls.sni {
            None => None,
            Some(name) => Some(ServerName::try_from(name.clone()).map_err(|_| {
                TlsError::Setting(format!("upstream TLS sni {name:?}: not a DNS name"))
            })?),
        };
        let provider = Arc::new(default_provider());
        let roots = Arc::new(load_roots(&tls.ca, read)?);
        let webpki = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| TlsError::BadPem {
                path: tls.ca.clone(),
                problem: format!("no usable CA certificate ({e})"),
            })?;
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Setting(format!("upstream TLS configuration: {e}")))?;
        let builder = match &tls.spiffe_id {
            None => builder.with_webpki_verifier(webpki),
            Some(id) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(SpiffeServerVerifier {
                    roots,
                    webpki,
                    provider: provider.clone(),
                    spiffe_id: id.clone(),
                })),
        };
        let mut config = match (&tls.client_cert, &tls.client_key) {
            (None, None) => builder.with_no_client_auth(),
            (Some(cert), Some(key)) => {
                let (chain, key_der) = load_client_pair(cert, key, &provider, read)?;
                builder
                    .with_client_auth_cert(chain, key_der)
                    .map_err(|e| TlsError::BadPem {
                        path: cert.clone(),
                        problem: format!("not a usable client certificate ({e})"),
                    })?
            }
            _ => {
                return Err(TlsError::Setting(
                    "upstream TLS: client_cert and client_key go together (both or neither)"
                        .to_owned(),
                ))
            }
        };
        config.alpn_protocols = vec![alpn.protocol().to_vec()];
        Ok(UpstreamTlsConnector {
            config: Arc::new(config),
            sni,
            alpn,
            handshake_timeout,
            counters: Arc::new(Counters::default()),
        })
    }

    /// A client connection to backend `peer` (its IP is used for
    /// certificate name checks when no SNI is configured). `inner` runs on
    /// the plaintext once the handshake is complete; it is dropped if the
    /// handshake fails. The ClientHello is ready for the first
    /// `poll_write`.
    pub fn connect(
        &self,
        now: Time,
        peer: IpAddr,
        inner: Box<dyn App>,
    ) -> Result<TlsClientApp, TlsError> {
        // An IP address as the name: rustls sends no SNI for it.
        let name = self
            .sni
            .clone()
            .unwrap_or(ServerName::IpAddress(peer.into()));
        let conn = ClientConnection::new(self.config.clone(), name)
            .map_err(|e| TlsError::Setting(format!("upstream TLS connection setup: {e}")))?;
        Ok(TlsClientApp::new(
            conn,
            now,
            inner,
            self.alpn,
            self.handshake_timeout,
            self.counters.clone(),
        ))
    }

    pub fn stats(&self) -> UpstreamTlsStats {
        let c = &*self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        UpstreamTlsStats {
            handshakes_completed: get(&c.handshakes_completed),
            handshake_failures: get(&c.handshake_failures),
            certificate_failures: get(&c.certificate_failures),
            alpn_mismatches: get(&c.alpn_mismatches),
            handshake_timeouts: get(&c.handshake_timeouts),
        }
    }
}

/// The CA bundle. Certificates webpki cannot use are skipped rather than
/// fatal (a system bundle such as the default one may hold some), as long
/// as one is usable.
fn load_roots(
    path: &Path,
    read: &dyn Fn(&Path) -> std::io::Result<Vec<u8>>,
) -> Result<RootCertStore, TlsError> {
    let pem = read(path).map_err(|e| TlsError::io(path, e))?;
    let ca_certs = certs::parse_certificates(&pem, path)?;
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(ca_certs);
    if added == 0 {
        return Err(TlsError::BadPem {
            path: path.to_owned(),
            problem: "no usable CA certificate (none parses as an X.509 trust anchor)".to_owned(),
        });
    }
    Ok(roots)
}

/// The client certificate chain and its key, checked to belong together.
/// Unlike a server certificate it needs no DNS name (an X.509-SVID has
/// none).
fn load_client_pair(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
    read: &dyn Fn(&Path) -> std::io::Result<Vec<u8>>,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let cert_pem = read(cert_path).map_err(|e| TlsError::io(cert_path, e))?;
    let key_pem = read(key_path).map_err(|e| TlsError::io(key_path, e))?;
    let chain = certs::parse_certificates(&cert_pem, cert_path)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::NoPrivateKey {
            path: key_path.to_owned(),
        },
        e => TlsError::BadPem {
            path: key_path.to_owned(),
            problem: pem_problem(&e),
        },
    })?;
    let signing_key = provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|_| TlsError::UnsupportedKey {
            path: key_path.to_owned(),
        })?;
    match CertifiedKey::new(chain.clone(), signing_key).keys_match() {
        // Unknown: the key type cannot tell its public key; rustls accepts it.
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            return Err(TlsError::KeyMismatch {
                cert: cert_path.to_owned(),
                key: key_path.to_owned(),
            })
        }
        Err(e) => {
            return Err(TlsError::BadPem {
                path: cert_path.to_owned(),
                problem: format!("not a usable certificate ({e})"),
            })
        }
    }
    Ok((chain, key))
}

/// pem::Error's own text quotes raw bytes; say it in words (as certs.rs).
fn pem_problem(e: &pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { .. } => "a PEM block has no END line".to_owned(),
        pem::Error::IllegalSectionStart { .. } => "a malformed PEM BEGIN line".to_owned(),
        pem::Error::Base64Decode(_) => "bad base64 inside a PEM block".to_owned(),
        e => format!("unreadable PEM: {e}"),
    }
}

/// The chain checks of rustls's WebPKI verifier (CA bundle, validity,
/// server-auth EKU), then the SPIFFE ID in place of the name check: the
/// backends of a SPIFFE trust domain are named by their workload, not by
/// DNS or address.
#[derive(Debug)]
struct SpiffeServerVerifier {
    roots: Arc<RootCertStore>,
    /// For the handshake signatures and the schemes offered.
    webpki: Arc<WebPkiServerVerifier>,
    provider: Arc<CryptoProvider>,
    spiffe_id: String,
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        // None for zero or several spiffe:// URIs: both refused.
        if client_auth::spiffe_id(end_entity).as_deref() == Some(self.spiffe_id.as_str()) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

enum Phase {
    /// The application waits for the handshake (it may already have
    /// bytes to send: they stay with it).
    Handshaking { deadline: Time, inner: Box<dyn App> },
    /// The application runs behind TLS.
    Open(Box<dyn App>),
    /// A TLS error with an alert to flush before the reset; the deadline
    /// bounds the wait for room to write it.
    Failed { deadline: Time },
    /// Reset now.
    Aborted,
}

/// One TLS connection to a backend: a sluice [`App`] around a rustls
/// client and the application that runs on it. Made by
/// [`UpstreamTlsConnector::connect`].
pub struct TlsClientApp {
    conn: ClientConnection,
    phase: Phase,
    alpn: UpstreamAlpn,
    handshake_timeout: Duration,
    counters: Arc<Counters>,
    /// Something from the backend came after the handshake: it accepted
    /// our side of it (until then a TLS 1.3 backend may still refuse our
    /// certificate).
    confirmed: bool,
    /// Plaintext the application wrote that rustls did not take. Should
    /// not happen (see [`SEND_BUFFER_LIMIT`]); kept rather than lost.
    unsent: Vec<u8>,
    /// rustls holds decrypted bytes the application has not taken.
    plaintext_pending: bool,
    peer_close_notify: bool,
    peer_fin: bool,
    eof_delivered: bool,
    close_notify_queued: bool,
    /// Bytes queued in rustls (to send, and received plaintext) at the
    /// last look.
    rustls_buffered: usize,
}

impl TlsClientApp {
    fn new(
        mut conn: ClientConnection,
        now: Time,
        inner: Box<dyn App>,
        alpn: UpstreamAlpn,
        handshake_timeout: Duration,
        counters: Arc<Counters>,
    ) -> Self {
        conn.set_buffer_limit(Some(SEND_BUFFER_LIMIT));
        TlsClientApp {
            conn,
            phase: Phase::Handshaking {
                deadline: now + handshake_timeout,
                inner,
            },
            alpn,
            handshake_timeout,
            counters,
            confirmed: false,
            unsent: Vec::new(),
            plaintext_pending: false,
            peer_close_notify: false,
            peer_fin: false,
            eof_delivered: false,
            close_notify_queued: false,
            rustls_buffered: 0,
        }
    }

    /// The handshake completed and the application runs.
    pub fn is_established(&self) -> bool {
        matches!(self.phase, Phase::Open(_))
    }

    fn take_ciphertext(&mut self, now: Time, data: &[u8]) -> usize {
        self.deliver_plaintext(now);
        if self.plaintext_pending {
            return 0;
        }
        let mut taken = 0;
        while taken < data.len() {
            let was_open = self.is_established();
            let mut rest = &data[taken..];
            match self.conn.read_tls(&mut rest) {
                Ok(n) if n > 0 => taken += n,
                // 0: a close_notify came before; Err: rustls's buffers are
                // full (it wants its plaintext taken first).
                _ => break,
            }
            match self.conn.process_new_packets() {
                Ok(io) => {
                    self.peer_close_notify |= io.peer_has_closed();
                    self.confirmed |= was_open;
                }
                Err(err) => {
                    self.fail(now, &err);
                    return data.len();
                }
            }
            if matches!(self.phase, Phase::Handshaking { .. }) && !self.conn.is_handshaking() {
                self.handshake_done();
                if !self.is_established() {
                    return data.len();
                }
            }
            self.deliver_plaintext(now);
            if self.peer_close_notify {
                // Nothing after a close_notify is read.
                return data.len();
            }
            if self.plaintext_pending {
                break;
            }
        }
        taken
    }

    /// Moves decrypted bytes to the application while it takes them; then
    /// the end of input, once everything before it was taken.
    fn deliver_plaintext(&mut self, now: Time) {
        let Phase::Open(inner) = &mut self.phase else {
            return;
        };
        let mut reader = self.conn.reader();
        // fill_buf fails when nothing is buffered (WouldBlock).
        while let Ok(chunk) = reader.fill_buf() {
            if chunk.is_empty() || !inner.wants_read() {
                break;
            }
            let len = chunk.len();
            let took = inner.on_read(now, chunk).min(len);
            reader.consume(took);
            if took < len {
                break;
            }
        }
        self.plaintext_pending = matches!(reader.fill_buf(), Ok(chunk) if !chunk.is_empty());
        if !self.plaintext_pending
            && (self.peer_close_notify || self.peer_fin)
            && !self.eof_delivered
        {
            self.eof_delivered = true;
            inner.on_read_eof(now);
        }
    }

    fn handshake_done(&mut self) {
        let Phase::Handshaking { inner, .. } = std::mem::replace(&mut self.phase, Phase::Aborted)
        else {
            return;
        };
        // rustls refuses a protocol we did not offer; none selected is
        // what remains to check.
        if self.alpn == UpstreamAlpn::H2 && self.conn.alpn_protocol() != Some(b"h2") {
            bump(&self.counters.handshake_failures);
            bump(&self.counters.alpn_mismatches);
            // rustls has no alert to send for it: reset (the application
            // is dropped here).
            drop(inner);
            self.discard_buffers();
            return;
        }
        bump(&self.counters.handshakes_completed);
        // TLS 1.2 backends check our certificate before their Finished.
        self.confirmed = self.conn.protocol_version() == Some(ProtocolVersion::TLSv1_2);
        self.phase = Phase::Open(inner);
    }

    /// The backend left before the handshake completed.
    fn abandoned(&mut self) {
        bump(&self.counters.handshake_failures);
        self.phase = Phase::Aborted;
        self.discard_buffers();
    }

    fn fail(&mut self, now: Time, err: &rustls::Error) {
        let in_handshake = match self.phase {
            Phase::Handshaking { .. } => true,
            // The backend refused what ended our handshake (TLS 1.3).
            Phase::Open(_) => !self.confirmed && matches!(err, rustls::Error::AlertReceived(_)),
            Phase::Failed { .. } | Phase::Aborted => false,
        };
        if in_handshake {
            bump(&self.counters.handshake_failures);
            match err {
                rustls::Error::InvalidCertificate(_) => bump(&self.counters.certificate_failures),
                rustls::Error::AlertReceived(AlertDescription::NoApplicationProtocol)
                | rustls::Error::PeerMisbehaved(
                    PeerMisbehaved::SelectedUnofferedApplicationProtocol,
                ) => bump(&self.counters.alpn_mismatches),
                _ => {}
            }
        }
        // The application is dropped here.
        self.phase = if self.conn.wants_write() {
            Phase::Failed {
                deadline: now + self.handshake_timeout,
            }
        } else {
            Phase::Aborted
        };
        self.discard_buffers();
    }

    fn discard_buffers(&mut self) {
        self.unsent = Vec::new();
        self.plaintext_pending = false;
        self.rustls_buffered = 0;
    }

    /// After every call: queue close_notify once the application closes
    /// gracefully with nothing more to write, and note rustls's buffers.
    fn settle(&mut self, now: Time) {
        if let Phase::Open(inner) = &self.phase {
            if !self.close_notify_queued
                && inner.close() == Close::Graceful
                && !inner.wants_write()
                && self.unsent.is_empty()
            {
                self.conn.send_close_notify();
                self.close_notify_queued = true;
            }
        }
        if matches!(self.phase, Phase::Handshaking { .. } | Phase::Open(_)) {
            // Nothing new to process here: this only reads the counts.
            match self.conn.process_new_packets() {
                Ok(io) => {
                    self.rustls_buffered = io.tls_bytes_to_write() + io.plaintext_bytes_to_read()
                }
                Err(err) => self.fail(now, &err),
            }
        }
    }

    /// Writes what rustls has queued into `buf`.
    fn flush_tls(&mut self, buf: &mut [u8]) -> usize {
        let mut written = 0;
        while written < buf.len() && self.conn.wants_write() {
            let mut out = &mut buf[written..];
            match self.conn.write_tls(&mut out) {
                Ok(n) if n > 0 => written += n,
                _ => break,
            }
        }
        written
    }

    /// Hands plaintext to rustls; keeps what it does not take.
    fn encrypt(&mut self, plain: &[u8]) {
        let taken = match self.conn.writer().write(plain) {
            Ok(n) => n.min(plain.len()),
            Err(_) => 0,
        };
        self.unsent.extend_from_slice(&plain[taken..]);
    }

    fn flushed(&self) -> bool {
        !self.conn.wants_write() && self.unsent.is_empty()
    }
}

impl App for TlsClientApp {
    fn on_read(&mut self, now: Time, data: &[u8]) -> usize {
        let reading = matches!(self.phase, Phase::Handshaking { .. } | Phase::Open(_))
            && !self.peer_close_notify;
        if !reading {
            // Dropped: nothing more is read, but the service must get to
            // the peer's FIN.
            return data.len();
        }
        let taken = self.take_ciphertext(now, data);
        self.settle(now);
        taken
    }

    fn on_read_eof(&mut self, now: Time) {
        self.peer_fin = true;
        match self.phase {
            Phase::Handshaking { .. } => self.abandoned(),
            // A FIN without close_notify (truncation) ends the input all
            // the same; HTTP framing tells whether anything is missing.
            Phase::Open(_) => self.deliver_plaintext(now),
            _ => {}
        }
        self.settle(now);
    }

    fn poll_write(&mut self, now: Time, buf: &mut [u8]) -> usize {
        if self.plaintext_pending {
            self.deliver_plaintext(now);
        }
        let mut written = self.flush_tls(buf);
        while written < buf.len() && !self.conn.wants_write() {
            if !self.unsent.is_empty() {
                let unsent = std::mem::take(&mut self.unsent);
                self.encrypt(&unsent);
                if self.unsent.len() == unsent.len() {
                    break;
                }
            } else {
                let Phase::Open(inner) = &mut self.phase else {
                    break;
                };
                if self.close_notify_queued || !inner.wants_write() {
                    break;
                }
                let room = plaintext_room(buf.len() - written);
                if room == 0 {
                    break;
                }
                let region = &mut buf[written..written + room];
                let produced = inner.poll_write(now, region).min(room);
                if produced == 0 {
                    break;
                }
                // rustls copies the plaintext; its records then overwrite it.
                self.encrypt(&buf[written..written + produced]);
            }
            written += self.flush_tls(&mut buf[written..]);
        }
        self.settle(now);
        // A close_notify settle just queued.
        written += self.flush_tls(&mut buf[written..]);
        if matches!(self.phase, Phase::Failed { .. }) && self.flushed() {
            // The alert is out: nothing left to wait for.
            self.phase = Phase::Aborted;
        }
        written
    }

    fn wants_read(&self) -> bool {
        match &self.phase {
            Phase::Open(inner) => self.peer_close_notify || inner.wants_read(),
            // Handshaking: always; otherwise input is dropped.
            _ => true,
        }
    }

    fn wants_write(&self) -> bool {
        if self.conn.wants_write() || !self.unsent.is_empty() {
            return true;
        }
        match &self.phase {
            // A graceful close still to turn into close_notify counts too.
            Phase::Open(inner) => {
                !self.close_notify_queued
                    && (inner.wants_write()
                        || (self.plaintext_pending && inner.wants_read())
                        || inner.close() == Close::Graceful)
            }
            _ => false,
        }
    }

    fn deadline(&self) -> Option<Time> {
        match &self.phase {
            // The application's own deadlines wait for the handshake.
            Phase::Handshaking { deadline, .. } | Phase::Failed { deadline } => Some(*deadline),
            Phase::Open(inner) => inner.deadline(),
            Phase::Aborted => None,
        }
    }

    fn on_timeout(&mut self, now: Time) {
        match &mut self.phase {
            Phase::Handshaking { deadline, .. } if now >= *deadline => {
                bump(&self.counters.handshake_timeouts);
                self.phase = Phase::Aborted;
                self.discard_buffers();
            }
            Phase::Failed { deadline } if now >= *deadline => self.phase = Phase::Aborted,
            Phase::Open(inner) => inner.on_timeout(now),
            _ => {}
        }
        self.settle(now);
    }

    fn memory(&self) -> usize {
        let own = RUSTLS_CONNECTION_BYTES + self.rustls_buffered + self.unsent.capacity();
        match &self.phase {
            Phase::Handshaking { inner, .. } | Phase::Open(inner) => own + inner.memory(),
            _ => own,
        }
    }

    fn close(&self) -> Close {
        match &self.phase {
            // An application given up on before it started.
            Phase::Handshaking { inner, .. } if inner.close() == Close::Abort => Close::Abort,
            Phase::Handshaking { .. } => Close::No,
            Phase::Open(inner) => match inner.close() {
                Close::Abort => Close::Abort,
                Close::Graceful if self.close_notify_queued && self.flushed() => Close::Graceful,
                _ => Close::No,
            },
            // A reset, not a FIN: the connection failed, and the gateway
            // keeps no TIME_WAIT for it.
            Phase::Failed { .. } if !self.flushed() => Close::No,
            Phase::Failed { .. } | Phase::Aborted => Close::Abort,
        }
    }

    fn is_idle(&self) -> bool {
        match &self.phase {
            Phase::Open(inner) => inner.is_idle() && !self.plaintext_pending && self.flushed(),
            _ => false,
        }
    }

    fn release_idle_memory(&mut self) {
        // rustls offers no way to shrink its buffers; ours and the
        // application's can.
        if self.unsent.is_empty() {
            self.unsent = Vec::new();
        }
        if let Phase::Open(inner) = &mut self.phase {
            inner.release_idle_memory();
        }
    }

    fn drain(&mut self, now: Time) {
        if let Phase::Handshaking { inner, .. } | Phase::Open(inner) = &mut self.phase {
            inner.drain(now);
        }
        self.settle(now);
    }
}

/// Plaintext bytes whose records fit in `room` bytes.
fn plaintext_room(room: usize) -> usize {
    let record = RECORD_PLAINTEXT + RECORD_OVERHEAD;
    let whole = room / record * RECORD_PLAINTEXT;
    let partial = (room % record).saturating_sub(RECORD_OVERHEAD);
    (whole + partial).min(MAX_PLAINTEXT_ROUND)
}

#[cfg(test)]
mod tests;
