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
//! The byte flow is [`crate::TlsApp`]'s (see conn.rs): ciphertext goes to
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

use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::client::ClientConnectionData;
use rustls::client::{verify_server_cert_signed_by_trust_anchor, WebPkiServerVerifier};
use rustls::crypto::aws_lc_rs::default_provider;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{
    AlertDescription, ClientConfig, ClientConnection, PeerMisbehaved, ProtocolVersion,
    RootCertStore,
};
use sluice_app::{App, Close, Time};
use sluice_config::UpstreamTls;

use crate::conn::{Phase, TlsConn, TlsSide};
use crate::{certs, client_auth, TlsError};

/// Plaintext per record: rustls's default (no max fragment size here).
const RECORD_PLAINTEXT: usize = 16384;

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
    let (chain, key) = certs::read_pair(cert_path, key_path, read)?;
    certs::certify(
        chain.clone(),
        key.clone_key(),
        cert_path,
        key_path,
        provider,
    )?;
    Ok((chain, key))
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
        client_auth::check_spiffe_id(end_entity, |id| id == self.spiffe_id)?;
        Ok(ServerCertVerified::assertion())
    }

    client_auth::webpki_signature_checks!();
}

/// The application waits for the handshake (it may already have bytes to
/// send: they stay with it).
pub(crate) struct Waiting {
    deadline: Time,
    inner: Box<dyn App>,
}

/// How a connection ended.
pub(crate) enum Ended {
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
    tls: TlsConn<ClientConnection, Waiting, Ended>,
    alpn: UpstreamAlpn,
    handshake_timeout: Duration,
    counters: Arc<Counters>,
    /// Something from the backend came after the handshake: it accepted
    /// our side of it (until then a TLS 1.3 backend may still refuse our
    /// certificate).
    confirmed: bool,
}

impl TlsClientApp {
    fn new(
        conn: ClientConnection,
        now: Time,
        inner: Box<dyn App>,
        alpn: UpstreamAlpn,
        handshake_timeout: Duration,
        counters: Arc<Counters>,
    ) -> Self {
        let waiting = Waiting {
            deadline: now + handshake_timeout,
            inner,
        };
        TlsClientApp {
            tls: TlsConn::new(conn, waiting, RECORD_PLAINTEXT),
            alpn,
            handshake_timeout,
            counters,
            confirmed: false,
        }
    }

    /// The handshake completed and the application runs.
    pub fn is_established(&self) -> bool {
        self.tls.is_established()
    }
}

impl TlsSide for TlsClientApp {
    type Conn = ClientConnection;
    type Data = ClientConnectionData;
    type Handshake = Waiting;
    type Ended = Ended;

    fn tls(&mut self) -> &mut TlsConn<ClientConnection, Waiting, Ended> {
        &mut self.tls
    }

    fn records_processed(&mut self, was_open: bool) {
        self.confirmed |= was_open;
    }

    fn handshake_done(&mut self, _now: Time) {
        let Phase::Handshaking(Waiting { inner, .. }) =
            std::mem::replace(&mut self.tls.phase, Phase::Ended(Ended::Aborted))
        else {
            return;
        };
        // rustls refuses a protocol we did not offer; none selected is
        // what remains to check.
        if self.alpn == UpstreamAlpn::H2 && self.tls.conn.alpn_protocol() != Some(b"h2") {
            bump(&self.counters.handshake_failures);
            bump(&self.counters.alpn_mismatches);
            // rustls has no alert to send for it: reset (the application
            // is dropped here).
            drop(inner);
            self.tls.discard_buffers();
            return;
        }
        bump(&self.counters.handshakes_completed);
        // TLS 1.2 backends check our certificate before their Finished.
        self.confirmed = self.tls.conn.protocol_version() == Some(ProtocolVersion::TLSv1_2);
        self.tls.phase = Phase::Open(inner);
    }

    /// The backend left before the handshake completed.
    fn abandoned(&mut self) {
        bump(&self.counters.handshake_failures);
        self.tls.phase = Phase::Ended(Ended::Aborted);
        self.tls.discard_buffers();
    }

    fn fail(&mut self, now: Time, err: &rustls::Error) {
        let in_handshake = match self.tls.phase {
            Phase::Handshaking(_) => true,
            // The backend refused what ended our handshake (TLS 1.3).
            Phase::Open(_) => !self.confirmed && matches!(err, rustls::Error::AlertReceived(_)),
            Phase::Ended(_) => false,
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
        self.tls.phase = Phase::Ended(if self.tls.conn.wants_write() {
            Ended::Failed {
                deadline: now + self.handshake_timeout,
            }
        } else {
            Ended::Aborted
        });
        self.tls.discard_buffers();
    }
}

impl App for TlsClientApp {
    fn on_read(&mut self, now: Time, data: &[u8]) -> usize {
        self.read_ciphertext(now, data)
    }

    fn on_read_eof(&mut self, now: Time) {
        self.read_eof(now);
    }

    fn poll_write(&mut self, now: Time, buf: &mut [u8]) -> usize {
        let written = self.write_ciphertext(now, buf);
        if matches!(self.tls.phase, Phase::Ended(Ended::Failed { .. })) && self.tls.flushed() {
            // The alert is out: nothing left to wait for.
            self.tls.phase = Phase::Ended(Ended::Aborted);
        }
        written
    }

    fn wants_read(&self) -> bool {
        self.tls.wants_read()
    }

    fn wants_write(&self) -> bool {
        // A graceful close still to turn into close_notify counts too.
        self.tls.wants_write()
            || matches!(&self.tls.phase, Phase::Open(inner)
                if !self.tls.close_notify_queued && inner.close() == Close::Graceful)
    }

    fn deadline(&self) -> Option<Time> {
        match &self.tls.phase {
            // The application's own deadlines wait for the handshake.
            Phase::Handshaking(Waiting { deadline, .. })
            | Phase::Ended(Ended::Failed { deadline }) => Some(*deadline),
            Phase::Open(inner) => inner.deadline(),
            Phase::Ended(Ended::Aborted) => None,
        }
    }

    fn on_timeout(&mut self, now: Time) {
        match &mut self.tls.phase {
            Phase::Handshaking(Waiting { deadline, .. }) if now >= *deadline => {
                bump(&self.counters.handshake_timeouts);
                self.tls.phase = Phase::Ended(Ended::Aborted);
                self.tls.discard_buffers();
            }
            Phase::Ended(Ended::Failed { deadline }) if now >= *deadline => {
                self.tls.phase = Phase::Ended(Ended::Aborted);
            }
            Phase::Open(inner) => inner.on_timeout(now),
            _ => {}
        }
        self.settle(now);
    }

    fn memory(&self) -> usize {
        match &self.tls.phase {
            Phase::Handshaking(waiting) => self.tls.memory() + waiting.inner.memory(),
            _ => self.tls.memory(),
        }
    }

    fn close(&self) -> Close {
        match &self.tls.phase {
            // An application given up on before it started.
            Phase::Handshaking(waiting) if waiting.inner.close() == Close::Abort => Close::Abort,
            Phase::Handshaking(_) => Close::No,
            Phase::Open(inner) => self.tls.open_close(inner.as_ref()),
            // A reset, not a FIN: the connection failed, and the gateway
            // keeps no TIME_WAIT for it.
            Phase::Ended(Ended::Failed { .. }) if !self.tls.flushed() => Close::No,
            Phase::Ended(_) => Close::Abort,
        }
    }

    fn is_idle(&self) -> bool {
        self.tls.is_idle()
    }

    fn release_idle_memory(&mut self) {
        self.tls.release_idle_memory();
    }

    fn drain(&mut self, now: Time) {
        if let Phase::Handshaking(Waiting { inner, .. }) | Phase::Open(inner) = &mut self.tls.phase
        {
            inner.drain(now);
        }
        self.settle(now);
    }
}

#[cfg(test)]
mod tests;
