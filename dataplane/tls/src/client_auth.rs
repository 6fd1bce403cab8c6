//! Client certificates (mTLS) and SPIFFE IDs (also the SPIFFE check and
//! verifier plumbing the upstream side uses for backend certificates).
//!
//! With `--tls-client-ca`, every client must present a certificate that
//! chains to one of the CA certificates (rustls's WebPKI verifier: validity
//! dates, client-auth EKU, name constraints; no revocation lists). With
//! `--tls-spiffe-allow`, the certificate must also carry exactly one
//! `spiffe://` URI SAN (an X.509-SVID has exactly one) starting with one of
//! the allowed prefixes; anything else is refused during the handshake with
//! an `access_denied` alert. Prefixes are compared byte for byte, so they
//! must end the trust domain with `/` (checked at startup): otherwise
//! `spiffe://example.org` would also admit `spiffe://example.org.evil/`.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DistinguishedName};

use crate::TlsError;

const SPIFFE_SCHEME: &str = "spiffe://";

/// The SPIFFE ID of a certificate: its one `spiffe://` URI SAN. None when
/// there is none, or more than one (ambiguous, and invalid for an SVID).
pub(crate) fn spiffe_id(cert: &CertificateDer<'_>) -> Option<String> {
    let parsed = webpki::EndEntityCert::try_from(cert).ok()?;
    let mut ids = parsed
        .valid_uri_names()
        .filter(|uri| uri.starts_with(SPIFFE_SCHEME));
    let id = ids.next()?;
    match ids.next() {
        Some(_) => None,
        None => Some(id.to_owned()),
    }
}

/// Checks a `--tls-spiffe-allow` prefix: `spiffe://`, a trust domain, `/`.
pub(crate) fn check_spiffe_prefix(prefix: &str) -> Result<(), TlsError> {
    let Some(rest) = prefix.strip_prefix(SPIFFE_SCHEME) else {
        return Err(TlsError::Setting(format!(
            "--tls-spiffe-allow {prefix}: must start with {SPIFFE_SCHEME}"
        )));
    };
    match rest.find('/') {
        Some(end) if end > 0 => Ok(()),
        _ => Err(TlsError::Setting(format!(
            "--tls-spiffe-allow {prefix}: end the trust domain with '/' \
             ({SPIFFE_SCHEME}{}/), or it also admits longer trust domains",
            rest.trim_end_matches('/')
        ))),
    }
}

/// Refuses `cert` unless it has a SPIFFE ID and `accept` takes it: what
/// the downstream (client certificate) and upstream (backend certificate)
/// verifiers share. rustls answers the error with an access_denied alert.
pub(crate) fn check_spiffe_id(
    cert: &CertificateDer<'_>,
    accept: impl FnOnce(&str) -> bool,
) -> Result<(), rustls::Error> {
    // None for zero or several spiffe:// URIs: both refused.
    if spiffe_id(cert).is_some_and(|id| accept(&id)) {
        Ok(())
    } else {
        Err(rustls::Error::InvalidCertificate(
            CertificateError::ApplicationVerificationFailure,
        ))
    }
}

/// The handshake-signature methods of a SPIFFE verifier, handed to its
/// `webpki` field: `ServerCertVerifier` and `ClientCertVerifier` both
/// declare them, and only the certificate check differs.
macro_rules! webpki_signature_checks {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &::rustls::pki_types::CertificateDer<'_>,
            dss: &::rustls::DigitallySignedStruct,
        ) -> Result<::rustls::client::danger::HandshakeSignatureValid, ::rustls::Error> {
            self.webpki.verify_tls12_signature(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &::rustls::pki_types::CertificateDer<'_>,
            dss: &::rustls::DigitallySignedStruct,
        ) -> Result<::rustls::client::danger::HandshakeSignatureValid, ::rustls::Error> {
            self.webpki.verify_tls13_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<::rustls::SignatureScheme> {
            self.webpki.supported_verify_schemes()
        }
    };
}
pub(crate) use webpki_signature_checks;

/// The WebPKI verifier, then the SPIFFE allow list.
#[derive(Debug)]
pub(crate) struct SpiffeVerifier {
    pub(crate) webpki: Arc<dyn ClientCertVerifier>,
    pub(crate) allow: Vec<String>,
}

impl ClientCertVerifier for SpiffeVerifier {
    fn offer_client_auth(&self) -> bool {
        self.webpki.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.webpki.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.webpki.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .webpki
            .verify_client_cert(end_entity, intermediates, now)?;
        check_spiffe_id(end_entity, |id| {
            self.allow
                .iter()
                .any(|prefix| id.starts_with(prefix.as_str()))
        })?;
        Ok(verified)
    }

    webpki_signature_checks!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_must_close_the_trust_domain() {
        assert!(check_spiffe_prefix("spiffe://example.org/").is_ok());
        assert!(check_spiffe_prefix("spiffe://example.org/ns/web/").is_ok());
        let err = check_spiffe_prefix("spiffe://example.org")
            .unwrap_err()
            .to_string();
        assert!(err.contains("(spiffe://example.org/)"), "{err}");
        assert!(check_spiffe_prefix("spiffe:///").is_err());
        assert!(check_spiffe_prefix("https://example.org/").is_err());
    }
}
