//! [`TlsApp`]: one TLS connection as a sluice [`App`], wrapping the
//! application that the handshake's outcome selects. The byte flow and
//! close_notify are conn.rs's, shared with the client side.
//!
//! Closing: a TLS error ends the connection after the alert rustls queued
//! is flushed (`Graceful`), or at once (`Abort`) when there is none. When
//! the application closes gracefully, `close` says `Graceful` only once
//! close_notify is flushed.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use rustls::server::{ServerConnection, ServerConnectionData};
use rustls::{AlertDescription, HandshakeKind, PeerIncompatible};
use sluice_app::{App, AppFactory, Close, ConnContext, SharedStats, Time, TlsStats};

use crate::client_auth;
use crate::conn::{Phase, TlsConn, TlsSide};

/// What a loop's [`crate::TlsLoop`] passes to each of its connections.
pub(crate) struct TlsAppParams {
    pub(crate) factory: Rc<dyn AppFactory>,
    pub(crate) stats: SharedStats,
    pub(crate) handshake_timeout: Duration,
    /// Client certificates are required (`--tls-client-ca`).
    pub(crate) client_auth: bool,
    /// Plaintext bytes per record (from the max fragment size).
    pub(crate) record_plaintext: usize,
    /// What the service knows of the connection (peer, wake key); TLS
    /// adds ALPN, SNI and the client's identity.
    pub(crate) base: ConnContext,
}

/// How a connection ended.
pub(crate) enum Ended {
    /// A TLS error; `alert`: there was something (the alert) to flush.
    /// The deadline bounds the wait for the peer to take it.
    Failed { deadline: Time, alert: bool },
    /// The peer sent FIN before the handshake completed.
    Abandoned,
    /// Reset (handshake timeout, or a failure that left nothing to flush).
    Aborted,
}

/// One TLS connection: a sluice [`App`] around rustls and the application
/// made once the handshake is complete. Made by [`crate::TlsLoop::accept`].
pub struct TlsApp {
    /// Handshaking: until the deadline it holds.
    tls: TlsConn<ServerConnection, Time, Ended>,
    params: TlsAppParams,
    /// When the connection was accepted (the handshake's length is logged).
    accepted_at: Time,
    /// SIGTERM arrived during the handshake: the application starts draining.
    draining: bool,
}

impl TlsApp {
    pub(crate) fn new(conn: ServerConnection, now: Time, params: TlsAppParams) -> Self {
        TlsApp {
            tls: TlsConn::new(
                conn,
                now + params.handshake_timeout,
                params.record_plaintext,
            ),
            params,
            accepted_at: now,
            draining: false,
        }
    }

    /// The handshake completed and the application runs.
    pub fn is_established(&self) -> bool {
        self.tls.is_established()
    }
}

impl TlsSide for TlsApp {
    type Conn = ServerConnection;
    type Data = ServerConnectionData;
    type Handshake = Time;
    type Ended = Ended;

    fn tls(&mut self) -> &mut TlsConn<ServerConnection, Time, Ended> {
        &mut self.tls
    }

    fn handshake_done(&mut self, now: Time) {
        let conn = &self.tls.conn;
        let spiffe_id = if self.params.client_auth {
            conn.peer_certificates()
                .and_then(<[_]>::first)
                .and_then(client_auth::spiffe_id)
                .map(Arc::<str>::from)
        } else {
            None
        };
        let ctx = ConnContext {
            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
            sni: conn.server_name().map(str::to_owned),
            spiffe_id,
            tls: true,
            tls_handshake: Some(now.saturating_since(self.accepted_at)),
            ..self.params.base.clone()
        };
        {
            let mut stats = self.params.stats.borrow_mut();
            let tls = &mut stats.tls;
            if conn.handshake_kind() == Some(HandshakeKind::Resumed) {
                tls.handshakes_resumed += 1;
            } else {
                tls.handshakes_full += 1;
                // Resumptions verify no certificate: counted when it was.
                if self.params.client_auth {
                    tls.client_certs_accepted += 1;
                }
            }
            match ctx.alpn.as_deref() {
                Some(b"h2") => tls.alpn_h2 += 1,
                Some(b"http/1.1") => tls.alpn_http11 += 1,
                _ => tls.alpn_none += 1,
            }
        }
        let mut inner = self.params.factory.make(&ctx, now);
        if self.draining {
            inner.drain(now);
        }
        self.tls.phase = Phase::Open(inner);
    }

    fn fail(&mut self, now: Time, err: &rustls::Error) {
        {
            let mut stats = self.params.stats.borrow_mut();
            let tls = &mut stats.tls;
            if self.tls.is_handshaking() {
                tls.handshake_failures += 1;
            }
            if let Some(alert) = alert_sent_for(err) {
                *alert_counter(tls, alert) += 1;
            }
            if self.params.client_auth
                && matches!(
                    err,
                    rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented
                )
            {
                tls.client_certs_refused += 1;
            }
        }
        self.tls.phase = Phase::Ended(Ended::Failed {
            deadline: now + self.params.handshake_timeout,
            alert: self.tls.conn.wants_write(),
        });
        self.tls.discard_buffers();
    }

    fn abandoned(&mut self) {
        self.tls.phase = Phase::Ended(Ended::Abandoned);
    }
}

impl App for TlsApp {
    fn on_read(&mut self, now: Time, data: &[u8]) -> usize {
        self.read_ciphertext(now, data)
    }

    fn on_read_eof(&mut self, now: Time) {
        self.read_eof(now);
    }

    fn poll_write(&mut self, now: Time, buf: &mut [u8]) -> usize {
        self.write_ciphertext(now, buf)
    }

    fn wants_read(&self) -> bool {
        self.tls.wants_read()
    }

    fn wants_write(&self) -> bool {
        self.tls.wants_write()
    }

    fn deadline(&self) -> Option<Time> {
        match &self.tls.phase {
            Phase::Handshaking(deadline) | Phase::Ended(Ended::Failed { deadline, .. }) => {
                Some(*deadline)
            }
            Phase::Open(inner) => inner.deadline(),
            Phase::Ended(Ended::Abandoned | Ended::Aborted) => None,
        }
    }

    fn on_timeout(&mut self, now: Time) {
        match &mut self.tls.phase {
            Phase::Handshaking(deadline) if now >= *deadline => {
                self.params.stats.borrow_mut().tls.handshake_timeouts += 1;
                self.tls.phase = Phase::Ended(Ended::Aborted);
            }
            Phase::Ended(Ended::Failed { deadline, .. }) if now >= *deadline => {
                self.tls.phase = Phase::Ended(Ended::Aborted);
            }
            Phase::Open(inner) => inner.on_timeout(now),
            _ => {}
        }
        self.settle(now);
    }

    fn memory(&self) -> usize {
        self.tls.memory()
    }

    fn close(&self) -> Close {
        let flushed = self.tls.flushed();
        match &self.tls.phase {
            Phase::Handshaking(_) => Close::No,
            Phase::Open(inner) => self.tls.open_close(inner.as_ref()),
            Phase::Ended(Ended::Failed { alert: true, .. }) if !flushed => Close::No,
            Phase::Ended(Ended::Failed { alert: true, .. } | Ended::Abandoned) => Close::Graceful,
            Phase::Ended(Ended::Failed { alert: false, .. } | Ended::Aborted) => Close::Abort,
        }
    }

    fn is_idle(&self) -> bool {
        self.tls.is_idle()
    }

    fn release_idle_memory(&mut self) {
        self.tls.release_idle_memory();
    }

    fn drain(&mut self, now: Time) {
        self.draining = true;
        if let Phase::Open(inner) = &mut self.tls.phase {
            inner.drain(now);
        }
        self.settle(now);
    }
}

/// The alert rustls sent with `err`. rustls does not report it, so this
/// follows where rustls raises each error (its `send_fatal_alert` calls);
/// the kinds counted separately are exact, the rest approximate.
fn alert_sent_for(err: &rustls::Error) -> Option<AlertDescription> {
    use rustls::Error as E;
    Some(match err {
        // The peer's alert: we send none.
        E::AlertReceived(_) => return None,
        E::InvalidCertificate(e) => AlertDescription::from(e.clone()),
        E::InvalidMessage(e) => AlertDescription::from(*e),
        E::NoCertificatesPresented => AlertDescription::CertificateRequired,
        E::NoApplicationProtocol => AlertDescription::NoApplicationProtocol,
        E::PeerIncompatible(
            PeerIncompatible::Tls12NotOffered
            | PeerIncompatible::Tls12NotOfferedOrEnabled
            | PeerIncompatible::SupportedVersionsExtensionRequired,
        ) => AlertDescription::ProtocolVersion,
        E::PeerIncompatible(_) => AlertDescription::HandshakeFailure,
        E::PeerMisbehaved(_) => AlertDescription::IllegalParameter,
        E::DecryptError => AlertDescription::BadRecordMac,
        E::InappropriateMessage { .. } | E::InappropriateHandshakeMessage { .. } => {
            AlertDescription::UnexpectedMessage
        }
        _ => AlertDescription::InternalError,
    })
}

fn alert_counter(tls: &mut TlsStats, alert: AlertDescription) -> &mut u64 {
    match alert {
        AlertDescription::HandshakeFailure => &mut tls.alert_handshake_failure,
        AlertDescription::BadCertificate => &mut tls.alert_bad_certificate,
        AlertDescription::UnknownCA => &mut tls.alert_unknown_ca,
        AlertDescription::CertificateRequired => &mut tls.alert_certificate_required,
        AlertDescription::ProtocolVersion => &mut tls.alert_protocol_version,
        AlertDescription::NoApplicationProtocol => &mut tls.alert_no_application_protocol,
        AlertDescription::DecodeError => &mut tls.alert_decode_error,
        AlertDescription::AccessDenied => &mut tls.alert_access_denied,
        _ => &mut tls.alert_other,
    }
}
