//! Errors of loading TLS material. Each one names the file and says what is
//! wrong with it in one line: they are printed as-is at startup and on a
//! failed SIGHUP reload.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read (or, for the ticket key file, created).
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },

    /// Malformed PEM, or a PEM block that does not hold what it says.
    #[error("{}: {problem}", path.display())]
    BadPem { path: PathBuf, problem: String },

    #[error("{}: no certificate (no PEM CERTIFICATE block)", path.display())]
    NoCertificate { path: PathBuf },

    #[error("{}: no private key (no PEM PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block)", path.display())]
    NoPrivateKey { path: PathBuf },

    #[error("{}: unsupported or malformed private key (ECDSA P-256/P-384/P-521, RSA 2048 to 8192 bits, or Ed25519 expected)", path.display())]
    UnsupportedKey { path: PathBuf },

    #[error("{}: the key does not match the certificate in {}", key.display(), cert.display())]
    KeyMismatch { cert: PathBuf, key: PathBuf },

    /// The certificate names no DNS name (no DNS SAN, no usable CN).
    #[error("{}: the certificate names no DNS name (no DNS subject alternative name, no usable common name)", path.display())]
    NoDnsName { path: PathBuf },

    #[error("{}: line {line}: {problem}", path.display())]
    TicketKeyLine {
        path: PathBuf,
        line: usize,
        problem: String,
    },

    #[error("{}: no ticket key (one key a line: 64 hex characters, 32 random bytes)", path.display())]
    NoTicketKey { path: PathBuf },

    /// A setting that cannot work (or two that contradict each other).
    #[error("{0}")]
    Setting(String),

    /// The operating system's random number generator failed.
    #[error("random number generator failed")]
    Random,
}

impl TlsError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        TlsError::Io {
            path: path.into(),
            source,
        }
    }
}
