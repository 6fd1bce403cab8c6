//! The TLS configuration every loop shares, its reload, and the per-loop
//! handle that turns accepted connections into [`TlsApp`]s.
//!
//! A reload builds a whole new `rustls::ServerConfig` from the files and
//! swaps it in; a failed one changes nothing. Loops never take a lock per
//! connection: they compare a generation counter (one atomic load) and take
//! the mutex only when it moved. Connections keep the configuration they
//! were accepted with until they end.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use aws_lc_rs::digest;
use rustls::crypto::aws_lc_rs::{cipher_suite, default_provider};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::server::{
    NoServerSessionStorage, ProducesTickets, ServerConfig, ServerConnection, WebPkiClientVerifier,
};
use rustls::version::{TLS12, TLS13};
use rustls::RootCertStore;
use sluice_app::{AppFactory, ConnContext, SharedStats, Time};

use crate::app::{TlsApp, TlsAppParams};
use crate::certs::{self, ServerCert, SniResolver};
use crate::client_auth::{self, SpiffeVerifier};
use crate::tickets::{TicketKeys, TICKET_LIFETIME};
use crate::TlsError;

/// What the command line says about TLS (the `--tls-*` flags).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    /// `--tls-cert`/`--tls-key` pairs, PEM; the first is the default
    /// certificate (no SNI, or a name no certificate holds).
    pub certs: Vec<(PathBuf, PathBuf)>,
    /// `--tls12`: also TLS 1.2 (ECDHE with AEAD suites only).
    pub allow_tls12: bool,
    /// `--tls-ticket-keys`: session ticket keys shared by processes and
    /// restarts (see [`crate::tickets`] for the format). Without it, one
    /// random key per process.
    pub ticket_keys_file: Option<PathBuf>,
    /// `--tls-client-ca`: require client certificates issued by these CAs.
    pub client_ca_file: Option<PathBuf>,
    /// `--tls-spiffe-allow`: SPIFFE ID prefixes a client certificate must
    /// match (needs `client_ca_file`).
    pub spiffe_allow: Vec<String>,
    /// `--tls-handshake-timeout`: from accept to handshake complete.
    pub handshake_timeout: Duration,
    /// Largest TLS record sent, header included (32 to 16389); None: 16389.
    pub max_fragment_size: Option<usize>,
}

impl TlsSettings {
    pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

    /// Settings with one certificate and every default.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        TlsSettings {
            certs: vec![(cert.into(), key.into())],
            ..TlsSettings::default()
        }
    }
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            certs: Vec::new(),
            allow_tls12: false,
            ticket_keys_file: None,
            client_ca_file: None,
            spiffe_allow: Vec::new(),
            handshake_timeout: TlsSettings::DEFAULT_HANDSHAKE_TIMEOUT,
            max_fragment_size: None,
        }
    }
}

/// ALPN protocols offered, in our order of preference. rustls picks the
/// first of ours the client also offers (server order, whatever the
/// client's); a client that offers ALPN but none of these gets a
/// `no_application_protocol` alert, one that offers none gets HTTP/1.1.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// TLS 1.3 session tickets sent after each handshake (resumed ones too:
/// tickets are single-use in TLS 1.3): enough for a browser to open a
/// second connection in parallel without a full handshake.
const TLS13_TICKETS: usize = 2;

type ReadFile = fn(&Path) -> std::io::Result<Vec<u8>>;

#[derive(Debug)]
enum TicketSource {
    /// `--tls-ticket-keys`: re-read on reload (never re-created then).
    File(PathBuf),
    /// No key file: one random key for the life of the process, kept
    /// across reloads so that a reload does not end every resumption.
    Process(Arc<TicketKeys>),
}

/// The configuration in force: what a loop caches.
#[derive(Clone, Debug)]
struct Snapshot {
    generation: u64,
    config: Arc<ServerConfig>,
}

/// The TLS configuration shared by every loop (Send + Sync; hold it in an
/// `Arc`). Build it once at startup; call [`TlsServer::reload`] on SIGHUP.
///
/// There is no renegotiation: rustls implements none (TLS 1.2
/// renegotiation requests are refused, TLS 1.3 has none), which removes a
/// whole class of attacks and of CPU floods. No 0-RTT either
/// (`max_early_data_size` 0): early data is replayable.
#[derive(Debug)]
pub struct TlsServer {
    settings: TlsSettings,
    provider: Arc<CryptoProvider>,
    tickets: TicketSource,
    read: ReadFile,
    generation: AtomicU64,
    current: Mutex<Snapshot>,
}

impl TlsServer {
    /// Loads everything the settings name; each problem is one line naming
    /// its file. Creates a missing ticket key file (mode 0600).
    pub fn new(settings: TlsSettings) -> Result<Self, TlsError> {
        Self::with_reader(settings, |p| std::fs::read(p))
    }

    pub(crate) fn with_reader(settings: TlsSettings, read: ReadFile) -> Result<Self, TlsError> {
        check_settings(&settings)?;
        let provider = Arc::new(provider(settings.allow_tls12));
        let (tickets, ticket_keys) = match &settings.ticket_keys_file {
            Some(path) => (
                TicketSource::File(path.clone()),
                Arc::new(TicketKeys::load_or_create(path)?),
            ),
            None => {
                let keys = Arc::new(TicketKeys::generate()?);
                (TicketSource::Process(keys.clone()), keys)
            }
        };
        let config = build_config(&settings, &provider, ticket_keys, read)?;
        // The only per-connection setting rustls checks late; check it now
        // so that accepting can not fail on it later.
        ServerConnection::new(config.clone())
            .map_err(|e| TlsError::Setting(format!("TLS configuration: {e}")))?;
        Ok(TlsServer {
            settings,
            provider,
            tickets,
            read,
            generation: AtomicU64::new(0),
            current: Mutex::new(Snapshot {
                generation: 0,
                config,
            }),
        })
    }

    /// Re-reads certificates, keys, the client CA and the ticket keys from
    /// the same paths. On any error nothing changes (the last good material
    /// stays in force) and the error names the file. New connections get
    /// the new material; open ones keep theirs.
    pub fn reload(&self) -> Result<(), TlsError> {
        let ticket_keys = match &self.tickets {
            TicketSource::File(path) => Arc::new(TicketKeys::load(path)?),
            TicketSource::Process(keys) => keys.clone(),
        };
        let config = build_config(&self.settings, &self.provider, ticket_keys, self.read)?;
        let mut current = self.lock();
        current.generation += 1;
        current.config = config;
        self.generation.store(current.generation, Ordering::Release);
        Ok(())
    }

    pub fn settings(&self) -> &TlsSettings {
        &self.settings
    }

    /// How many reloads succeeded (0 after startup).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn snapshot(&self) -> Snapshot {
        self.lock().clone()
    }

    fn lock(&self) -> MutexGuard<'_, Snapshot> {
        // A panic while holding the lock left a complete Snapshot behind
        // (it is replaced whole), so a poisoned lock is still good.
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One loop's handle on the shared [`TlsServer`]: caches the configuration
/// and makes the [`TlsApp`] of each accepted connection. Not `Send`: it
/// lives on its loop, like the apps it makes.
pub struct TlsLoop {
    server: Arc<TlsServer>,
    snapshot: Snapshot,
    factory: Rc<dyn AppFactory>,
    stats: SharedStats,
}

impl TlsLoop {
    /// `factory` makes the application behind TLS once the handshake is
    /// done (it sees the ALPN, SNI and SPIFFE ID); `stats` is the loop's.
    pub fn new(server: Arc<TlsServer>, factory: Rc<dyn AppFactory>, stats: SharedStats) -> Self {
        let snapshot = server.snapshot();
        TlsLoop {
            server,
            snapshot,
            factory,
            stats,
        }
    }

    /// The app of a connection accepted at `now`, under the configuration
    /// in force (picked up here, after a reload, without a lock otherwise).
    /// Fails only if rustls refuses a connection it accepted at startup.
    pub fn accept(&mut self, now: Time) -> Result<TlsApp, TlsError> {
        self.accept_with(now, ConnContext::default())
    }

    /// [`TlsLoop::accept`] for a connection the service describes in
    /// `base` (its peer address and wake key reach the inner app).
    pub fn accept_with(&mut self, now: Time, base: ConnContext) -> Result<TlsApp, TlsError> {
        if self.server.generation.load(Ordering::Acquire) != self.snapshot.generation {
            self.snapshot = self.server.snapshot();
        }
        let conn = ServerConnection::new(self.snapshot.config.clone())
            .map_err(|e| TlsError::Setting(format!("TLS connection setup: {e}")))?;
        let settings = &self.server.settings;
        Ok(TlsApp::new(
            conn,
            now,
            TlsAppParams {
                factory: self.factory.clone(),
                stats: self.stats.clone(),
                handshake_timeout: settings.handshake_timeout,
                client_auth: settings.client_ca_file.is_some(),
                record_plaintext: settings
                    .max_fragment_size
                    .map_or(MAX_RECORD_PLAINTEXT, |size| size - RECORD_HEADER),
                base,
            },
        ))
    }
}

/// rustls's `max_fragment_size` counts the 5-byte record header; its
/// default record carries 16 KiB of plaintext.
const RECORD_HEADER: usize = 5;
const MAX_RECORD_PLAINTEXT: usize = 16384;
const MAX_FRAGMENT_SIZE: usize = MAX_RECORD_PLAINTEXT + RECORD_HEADER;

fn check_settings(settings: &TlsSettings) -> Result<(), TlsError> {
    if settings.certs.is_empty() {
        return Err(TlsError::Setting(
            "TLS needs at least one --tls-cert/--tls-key pair".to_owned(),
        ));
    }
    if !settings.spiffe_allow.is_empty() && settings.client_ca_file.is_none() {
        return Err(TlsError::Setting(
            "--tls-spiffe-allow needs --tls-client-ca (the CA that issues the client certificates)"
                .to_owned(),
        ));
    }
    for prefix in &settings.spiffe_allow {
        client_auth::check_spiffe_prefix(prefix)?;
    }
    if settings.handshake_timeout.is_zero() {
        return Err(TlsError::Setting(
            "--tls-handshake-timeout must be more than zero".to_owned(),
        ));
    }
    if let Some(size) = settings.max_fragment_size {
        if !(32..=MAX_FRAGMENT_SIZE).contains(&size) {
            return Err(TlsError::Setting(format!(
                "TLS max fragment size {size}: must be 32 to {MAX_FRAGMENT_SIZE}"
            )));
        }
    }
    Ok(())
}

/// aws-lc-rs with an explicit suite list: TLS 1.3's three AEAD suites and,
/// with `--tls12`, TLS 1.2's ECDHE + AEAD suites only (no CBC, no static
/// RSA key exchange, no finite-field DH).
fn provider(allow_tls12: bool) -> CryptoProvider {
    let mut cipher_suites = vec![
        cipher_suite::TLS13_AES_256_GCM_SHA384,
        cipher_suite::TLS13_AES_128_GCM_SHA256,
        cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
    ];
    if allow_tls12 {
        cipher_suites.extend([
            cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            cipher_suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ]);
    }
    CryptoProvider {
        cipher_suites,
        ..default_provider()
    }
}

fn build_config(
    settings: &TlsSettings,
    provider: &Arc<CryptoProvider>,
    ticket_keys: Arc<TicketKeys>,
    read: ReadFile,
) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = settings
        .certs
        .iter()
        .map(|(cert, key)| certs::load_pair(cert, key, provider, &read))
        .collect::<Result<Vec<ServerCert>, _>>()?;
    let resolver = SniResolver::new(&certs)
        .ok_or_else(|| TlsError::Setting("no TLS certificate".to_owned()))?;

    let versions: &[&'static rustls::SupportedProtocolVersion] = if settings.allow_tls12 {
        &[&TLS13, &TLS12]
    } else {
        &[&TLS13]
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| TlsError::Setting(format!("TLS configuration: {e}")))?;

    let mut policy = digest::Context::new(&digest::SHA256);
    policy.update(b"sluice-tls ticket policy v1");
    let builder = match &settings.client_ca_file {
        None => {
            policy.update(b"no client auth");
            builder.with_no_client_auth()
        }
        Some(ca_path) => {
            let pem = read(ca_path).map_err(|e| TlsError::io(ca_path, e))?;
            let ca_certs = certs::parse_certificates(&pem, ca_path)?;
            policy.update(b"client auth");
            let verifier = client_verifier(ca_path, &ca_certs, settings, provider)?;
            for der in &ca_certs {
                update_framed(&mut policy, der);
            }
            for prefix in &settings.spiffe_allow {
                update_framed(&mut policy, prefix.as_bytes());
            }
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut policy_digest = [0u8; 32];
    policy_digest.copy_from_slice(policy.finish().as_ref());

    let mut config = builder.with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    // Cipher suites in the client's order: it knows whether it has AES
    // hardware (ChaCha20 first) or not.
    config.ignore_client_order = false;
    config.max_fragment_size = settings.max_fragment_size;
    config.max_early_data_size = 0;
    config.send_half_rtt_data = false;
    config.send_tls13_tickets = TLS13_TICKETS;
    // Stateless tickets only: any loop or process holding the keys resumes
    // a session, and no per-session state is kept. TLS 1.2 clients without
    // ticket support do full handshakes.
    config.ticketer = Arc::new(PolicyTicketer {
        keys: ticket_keys,
        policy: policy_digest,
    });
    config.session_storage = Arc::new(NoServerSessionStorage {});
    // TLS 1.2 only with the extended master secret (RFC 7627): every
    // client of the last decade sends it, and it closes the triple
    // handshake attack on resumption.
    config.require_ems = true;
    Ok(Arc::new(config))
}

fn client_verifier(
    ca_path: &Path,
    ca_certs: &[CertificateDer<'static>],
    settings: &TlsSettings,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    for (i, der) in ca_certs.iter().enumerate() {
        roots.add(der.clone()).map_err(|e| TlsError::BadPem {
            path: ca_path.to_owned(),
            problem: format!("certificate {} is not a usable CA certificate ({e})", i + 1),
        })?;
    }
    let webpki = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| TlsError::BadPem {
            path: ca_path.to_owned(),
            problem: format!("no usable CA certificate ({e})"),
        })?;
    if settings.spiffe_allow.is_empty() {
        return Ok(webpki);
    }
    Ok(Arc::new(SpiffeVerifier {
        webpki,
        allow: settings.spiffe_allow.clone(),
    }))
}

/// Length-prefixed, so that no two lists of items hash alike.
fn update_framed(ctx: &mut digest::Context, item: &[u8]) {
    ctx.update(&(item.len() as u64).to_be_bytes());
    ctx.update(item);
}

/// The ticket keys bound to one client-authentication policy (see
/// [`crate::tickets`]).
#[derive(Debug)]
struct PolicyTicketer {
    keys: Arc<TicketKeys>,
    policy: [u8; 32],
}

impl ProducesTickets for PolicyTicketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        TICKET_LIFETIME.as_secs() as u32
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.keys.seal(&self.policy, plain)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.keys.open(&self.policy, cipher)
    }
}
