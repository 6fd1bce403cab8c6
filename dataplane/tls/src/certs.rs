//! Server certificates: loading PEM pairs and choosing one by SNI.
//!
//! Each certificate serves the DNS names it holds (its DNS subject
//! alternative names; its common name only when it has none, as old
//! certificates do). `*.example.org` serves one label below example.org,
//! not example.org itself nor a.b.example.org. A name held by several
//! certificates (an ECDSA and an RSA one, say) goes to the first whose key
//! can sign with a scheme the client offers. A client that sends no SNI, or
//! a name no certificate holds, gets the first certificate.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, DnsName, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{InconsistentKeys, SignatureScheme};

use crate::TlsError;

/// A certificate chain with its key and the names it serves.
#[derive(Debug)]
pub(crate) struct ServerCert {
    pub(crate) key: Arc<CertifiedKey>,
    /// Lowercase DNS names; wildcards as `*.example.org`.
    pub(crate) names: Vec<String>,
}

/// Reads and checks one `--tls-cert`/`--tls-key` pair.
pub(crate) fn load_pair(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
    read: &dyn Fn(&Path) -> std::io::Result<Vec<u8>>,
) -> Result<ServerCert, TlsError> {
    let (chain, key) = read_pair(cert_path, key_path, read)?;
    let names = dns_names(&chain[0], cert_path)?;
    let certified = certify(chain, key, cert_path, key_path, provider)?;
    Ok(ServerCert {
        key: Arc::new(certified),
        names,
    })
}

/// A certificate chain and its private key, parsed (not yet checked to
/// belong together: see [`certify`]).
pub(crate) fn read_pair(
    cert_path: &Path,
    key_path: &Path,
    read: &dyn Fn(&Path) -> std::io::Result<Vec<u8>>,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let cert_pem = read(cert_path).map_err(|e| TlsError::io(cert_path, e))?;
    let key_pem = read(key_path).map_err(|e| TlsError::io(key_path, e))?;
    let chain = parse_certificates(&cert_pem, cert_path)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::NoPrivateKey {
            path: key_path.to_owned(),
        },
        e => bad_pem(key_path, &e),
    })?;
    Ok((chain, key))
}

/// The chain with its signing key, checked to belong together.
pub(crate) fn certify(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let signing_key =
        provider
            .key_provider
            .load_private_key(key)
            .map_err(|_| TlsError::UnsupportedKey {
                path: key_path.to_owned(),
            })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
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
    Ok(certified)
}

/// Every certificate of a PEM file, in order; at least one.
pub(crate) fn parse_certificates(
    pem_bytes: &[u8],
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem_bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_pem(path, &e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

fn bad_pem(path: &Path, e: &pem::Error) -> TlsError {
    // pem::Error's own text quotes raw bytes; say it in words.
    let problem = match e {
        pem::Error::MissingSectionEnd { .. } => "a PEM block has no END line".to_owned(),
        pem::Error::IllegalSectionStart { .. } => "a malformed PEM BEGIN line".to_owned(),
        pem::Error::Base64Decode(_) => "bad base64 inside a PEM block".to_owned(),
        e => format!("unreadable PEM: {e}"),
    };
    TlsError::BadPem {
        path: path.to_owned(),
        problem,
    }
}

/// The DNS names a server certificate serves.
fn dns_names(cert: &CertificateDer<'_>, path: &Path) -> Result<Vec<String>, TlsError> {
    let parsed = webpki::EndEntityCert::try_from(cert).map_err(|e| TlsError::BadPem {
        path: path.to_owned(),
        problem: format!("not a usable X.509 certificate ({e})"),
    })?;
    let mut names: Vec<String> = parsed
        .valid_dns_names()
        .map(|n| n.trim_end_matches('.').to_ascii_lowercase())
        .collect();
    if names.is_empty() {
        names.extend(
            common_name(parsed.subject())
                .map(|cn| cn.trim_end_matches('.').to_ascii_lowercase())
                .filter(|cn| is_dns_name_or_wildcard(cn)),
        );
    }
    if names.is_empty() {
        return Err(TlsError::NoDnsName {
            path: path.to_owned(),
        });
    }
    Ok(names)
}

fn is_dns_name_or_wildcard(name: &str) -> bool {
    let base = name.strip_prefix("*.").unwrap_or(name);
    DnsName::try_from(base).is_ok() && !base.contains('*')
}

/// The subject's common name (OID 2.5.4.3), from the DER contents of the
/// subject Name. Our own certificates only, and a fallback: anything
/// unexpected is simply no name.
fn common_name(subject: &[u8]) -> Option<&str> {
    const CN_OID: &[u8] = &[0x55, 0x04, 0x03];
    const SET: u8 = 0x31;
    const SEQUENCE: u8 = 0x30;
    const OID: u8 = 0x06;
    const STRING_TAGS: [u8; 3] = [0x0c, 0x13, 0x16]; // UTF8, Printable, IA5

    let mut rdns = subject;
    while !rdns.is_empty() {
        let (tag, rdn, rest) = der_next(rdns)?;
        rdns = rest;
        if tag != SET {
            return None;
        }
        let mut attrs = rdn;
        while !attrs.is_empty() {
            let (tag, attr, rest) = der_next(attrs)?;
            attrs = rest;
            if tag != SEQUENCE {
                return None;
            }
            let (tag, oid, value) = der_next(attr)?;
            if tag != OID || oid != CN_OID {
                continue;
            }
            let (tag, text, _) = der_next(value)?;
            if STRING_TAGS.contains(&tag) {
                return std::str::from_utf8(text).ok();
            }
        }
    }
    None
}

/// Splits one DER element off `input`: (tag, contents, rest).
fn der_next(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (digits, rest) = rest.split_at(count);
        let len = digits
            .iter()
            .fold(0usize, |n, &d| (n << 8) | usize::from(d));
        (len, rest)
    };
    if rest.len() < len {
        return None;
    }
    let (contents, rest) = rest.split_at(len);
    Some((tag, contents, rest))
}

/// Picks the certificate for a ClientHello by SNI.
#[derive(Debug)]
pub(crate) struct SniResolver {
    default: Arc<CertifiedKey>,
    exact: HashMap<String, Vec<Arc<CertifiedKey>>>,
    /// `*.example.org` stored under `example.org`.
    wildcard: HashMap<String, Vec<Arc<CertifiedKey>>>,
}

impl SniResolver {
    /// `certs` must not be empty: its first entry is the default.
    pub(crate) fn new(certs: &[ServerCert]) -> Option<Self> {
        let default = certs.first()?.key.clone();
        let mut exact: HashMap<String, Vec<Arc<CertifiedKey>>> = HashMap::new();
        let mut wildcard: HashMap<String, Vec<Arc<CertifiedKey>>> = HashMap::new();
        for cert in certs {
            for name in &cert.names {
                let (map, key) = match name.strip_prefix("*.") {
                    Some(parent) => (&mut wildcard, parent),
                    None => (&mut exact, name.as_str()),
                };
                map.entry(key.to_owned())
                    .or_default()
                    .push(cert.key.clone());
            }
        }
        Some(SniResolver {
            default,
            exact,
            wildcard,
        })
    }

    fn candidates(&self, sni: &str) -> Option<&[Arc<CertifiedKey>]> {
        if let Some(keys) = self.exact.get(sni) {
            return Some(keys);
        }
        let (_, parent) = sni.split_once('.')?;
        self.wildcard.get(parent).map(Vec::as_slice)
    }

    fn choose(&self, sni: Option<&str>, schemes: &[SignatureScheme]) -> Arc<CertifiedKey> {
        let Some(sni) = sni else {
            return self.default.clone();
        };
        let sni = sni.trim_end_matches('.');
        let lowered;
        let sni = if sni.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = sni.to_ascii_lowercase();
            lowered.as_str()
        } else {
            sni
        };
        match self.candidates(sni) {
            Some([only]) => only.clone(),
            Some(keys) => keys
                .iter()
                .find(|k| k.key.choose_scheme(schemes).is_some())
                .or(keys.first())
                .unwrap_or(&self.default)
                .clone(),
            None => self.default.clone(),
        }
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.choose(client_hello.server_name(), client_hello.signature_schemes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_name_walks_the_subject() {
        // SET { SEQ { OID 2.5.4.6 (C), PrintableString "DE" } },
        // SET { SEQ { OID 2.5.4.3 (CN), UTF8String "cn.test" } }
        let subject = [
            0x31, 0x0b, 0x30, 0x09, 0x06, 0x03, 0x55, 0x04, 0x06, 0x13, 0x02, b'D', b'E', //
            0x31, 0x10, 0x30, 0x0e, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x07, b'c', b'n', b'.',
            b't', b'e', b's', b't',
        ];
        assert_eq!(common_name(&subject), Some("cn.test"));
        for cut in 0..subject.len() {
            // Truncated input is no name (or an earlier one), never a panic.
            let _ = common_name(&subject[..cut]);
        }
        assert_eq!(common_name(&[0x31, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
    }

    #[test]
    fn wildcard_names_are_checked() {
        assert!(is_dns_name_or_wildcard("*.b.test"));
        assert!(is_dns_name_or_wildcard("a.test"));
        assert!(!is_dns_name_or_wildcard("*"));
        assert!(!is_dns_name_or_wildcard("a.*.test"));
        assert!(!is_dns_name_or_wildcard("not a name"));
    }
}
