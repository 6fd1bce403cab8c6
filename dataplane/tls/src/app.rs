//! [`TlsApp`]: one TLS connection as a sluice [`App`], wrapping the
//! application that the handshake's outcome selects.
//!
//! Bytes flow like this. `on_read` hands ciphertext to rustls only while
//! the application keeps up: rustls holds at most about 32 KiB of
//! decrypted plaintext (it refuses more input beyond 16 KiB), and
//! plaintext the application does not take stays there, so slow
//! applications push back on the peer through TCP. `poll_write` first
//! flushes what rustls has to send (handshake, alerts, tickets, earlier
//! records), then lets the application write plaintext straight into the
//! caller's buffer, hands it to rustls, and writes the records back over
//! it: no staging buffer of our own. The plaintext asked for is sized so
//! that its records fit the buffer; what does not fit waits in rustls.
//!
//! Closing: a TLS error ends the connection after the alert rustls queued
//! is flushed (`Graceful`), or at once (`Abort`) when there is none. When
//! the application closes gracefully, `close_notify` goes out first and
//! `close` says `Graceful` only once it is flushed.

use std::io::{BufRead, Write};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use rustls::server::ServerConnection;
use rustls::{AlertDescription, HandshakeKind, PeerIncompatible};
use sluice_app::{App, AppFactory, Close, ConnContext, SharedStats, Time, TlsStats};

use crate::client_auth;

/// rustls's limit on the TLS bytes it queues for sending. Plaintext is
/// handed over only when that queue is empty, at most
/// [`MAX_PLAINTEXT_ROUND`] at a time, so it is always taken whole.
const SEND_BUFFER_LIMIT: usize = 64 * 1024;
const MAX_PLAINTEXT_ROUND: usize = 32 * 1024;

/// Most bytes a record adds to its plaintext: 5-byte header, 16-byte AEAD
/// tag, and the larger of TLS 1.3's inner content type (1) and TLS 1.2
/// AES-GCM's explicit nonce (8).
const RECORD_OVERHEAD: usize = 5 + 16 + 8;

/// What a rustls connection holds beyond its buffers (connection state,
/// keys, the 4 KiB read buffer it keeps): an estimate for `memory`.
const RUSTLS_CONNECTION_BYTES: usize = std::mem::size_of::<ServerConnection>() + 4096 + 1024;

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

enum Phase {
    Handshaking {
        deadline: Time,
    },
    /// The application runs behind TLS.
    Open(Box<dyn App>),
    /// A TLS error; `alert`: there was something (the alert) to flush.
    /// The deadline bounds the wait for the peer to take it.
    Failed {
        deadline: Time,
        alert: bool,
    },
    /// The peer sent FIN before the handshake completed.
    Abandoned,
    /// Reset (handshake timeout, or a failure that left nothing to flush).
    Aborted,
}

/// One TLS connection: a sluice [`App`] around rustls and the application
/// made once the handshake is complete. Made by [`crate::TlsLoop::accept`].
pub struct TlsApp {
    conn: ServerConnection,
    phase: Phase,
    params: TlsAppParams,
    /// When the connection was accepted (the handshake's length is logged).
    accepted_at: Time,
    /// SIGTERM arrived during the handshake: the application starts draining.
    draining: bool,
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

impl TlsApp {
    pub(crate) fn new(mut conn: ServerConnection, now: Time, params: TlsAppParams) -> Self {
        conn.set_buffer_limit(Some(SEND_BUFFER_LIMIT));
        TlsApp {
            conn,
            phase: Phase::Handshaking {
                deadline: now + params.handshake_timeout,
            },
            params,
            accepted_at: now,
            draining: false,
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
            let mut rest = &data[taken..];
            match self.conn.read_tls(&mut rest) {
                Ok(n) if n > 0 => taken += n,
                // 0: a close_notify came before; Err: rustls's buffers are
                // full (it wants its plaintext taken first).
                _ => break,
            }
            match self.conn.process_new_packets() {
                Ok(io) => self.peer_close_notify |= io.peer_has_closed(),
                Err(err) => {
                    self.fail(now, &err);
                    return data.len();
                }
            }
            if matches!(self.phase, Phase::Handshaking { .. }) && !self.conn.is_handshaking() {
                self.handshake_done(now);
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

    fn handshake_done(&mut self, now: Time) {
        let spiffe_id = if self.params.client_auth {
            self.conn
                .peer_certificates()
                .and_then(<[_]>::first)
                .and_then(client_auth::spiffe_id)
                .map(Arc::<str>::from)
        } else {
            None
        };
        let ctx = ConnContext {
            alpn: self.conn.alpn_protocol().map(<[u8]>::to_vec),
            sni: self.conn.server_name().map(str::to_owned),
            spiffe_id,
            tls: true,
            tls_handshake: Some(now.saturating_since(self.accepted_at)),
            ..self.params.base.clone()
        };
        {
            let mut stats = self.params.stats.borrow_mut();
            let tls = &mut stats.tls;
            if self.conn.handshake_kind() == Some(HandshakeKind::Resumed) {
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
        self.phase = Phase::Open(inner);
    }

    fn fail(&mut self, now: Time, err: &rustls::Error) {
        {
            let mut stats = self.params.stats.borrow_mut();
            let tls = &mut stats.tls;
            if matches!(self.phase, Phase::Handshaking { .. }) {
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
        self.phase = Phase::Failed {
            deadline: now + self.params.handshake_timeout,
            alert: self.conn.wants_write(),
        };
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
}

impl App for TlsApp {
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
            Phase::Handshaking { .. } => self.phase = Phase::Abandoned,
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
                let room = plaintext_room(buf.len() - written, self.params.record_plaintext);
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
            Phase::Open(inner) => {
                !self.close_notify_queued
                    && (inner.wants_write() || (self.plaintext_pending && inner.wants_read()))
            }
            _ => false,
        }
    }

    fn deadline(&self) -> Option<Time> {
        match &self.phase {
            Phase::Handshaking { deadline } | Phase::Failed { deadline, .. } => Some(*deadline),
            Phase::Open(inner) => inner.deadline(),
            Phase::Abandoned | Phase::Aborted => None,
        }
    }

    fn on_timeout(&mut self, now: Time) {
        match &mut self.phase {
            Phase::Handshaking { deadline } if now >= *deadline => {
                self.params.stats.borrow_mut().tls.handshake_timeouts += 1;
                self.phase = Phase::Aborted;
            }
            Phase::Failed { deadline, .. } if now >= *deadline => self.phase = Phase::Aborted,
            Phase::Open(inner) => inner.on_timeout(now),
            _ => {}
        }
        self.settle(now);
    }

    fn memory(&self) -> usize {
        let own = RUSTLS_CONNECTION_BYTES + self.rustls_buffered + self.unsent.capacity();
        match &self.phase {
            Phase::Open(inner) => own + inner.memory(),
            _ => own,
        }
    }

    fn close(&self) -> Close {
        let flushed = !self.conn.wants_write() && self.unsent.is_empty();
        match &self.phase {
            Phase::Handshaking { .. } => Close::No,
            Phase::Open(inner) => match inner.close() {
                Close::Abort => Close::Abort,
                Close::Graceful if self.close_notify_queued && flushed => Close::Graceful,
                _ => Close::No,
            },
            Phase::Failed { alert: true, .. } if !flushed => Close::No,
            Phase::Failed { alert: true, .. } | Phase::Abandoned => Close::Graceful,
            Phase::Failed { alert: false, .. } | Phase::Aborted => Close::Abort,
        }
    }

    fn is_idle(&self) -> bool {
        match &self.phase {
            Phase::Open(inner) => {
                inner.is_idle()
                    && !self.plaintext_pending
                    && !self.conn.wants_write()
                    && self.unsent.is_empty()
            }
            _ => false,
        }
    }

    fn release_idle_memory(&mut self) {
        // rustls offers no way to shrink its buffers (its read buffer goes
        // back to 4 KiB by itself); ours and the application's can.
        if self.unsent.is_empty() {
            self.unsent = Vec::new();
        }
        if let Phase::Open(inner) = &mut self.phase {
            inner.release_idle_memory();
        }
    }

    fn drain(&mut self, now: Time) {
        self.draining = true;
        if let Phase::Open(inner) = &mut self.phase {
            inner.drain(now);
        }
        self.settle(now);
    }
}

/// Plaintext bytes whose records fit in `room` bytes.
fn plaintext_room(room: usize, record_plaintext: usize) -> usize {
    let record = record_plaintext + RECORD_OVERHEAD;
    let whole = room / record * record_plaintext;
    let partial = (room % record).saturating_sub(RECORD_OVERHEAD);
    (whole + partial).min(MAX_PLAINTEXT_ROUND)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_of_the_plaintext_fit_the_room() {
        for per_record in [100, 1000, 16384] {
            for room in 0..40_000 {
                let plain = plaintext_room(room, per_record);
                let records = plain.div_ceil(per_record);
                assert!(
                    plain + records * RECORD_OVERHEAD <= room,
                    "{room} {per_record}"
                );
            }
        }
        assert_eq!(plaintext_room(1000, 16384), 1000 - RECORD_OVERHEAD);
        assert_eq!(plaintext_room(1 << 20, 16384), MAX_PLAINTEXT_ROUND);
        assert_eq!(plaintext_room(RECORD_OVERHEAD, 16384), 0);
    }
}
