//! What both directions share. [`TlsConn`] is a rustls connection (server
//! or client: the code only needs `ConnectionCommon`), where the connection
//! is ([`Phase`]), and the plumbing that moves bytes between rustls, the
//! caller's buffers and the wrapped application. [`TlsSide`] is what
//! [`crate::TlsApp`] and [`crate::TlsClientApp`] add: what the end of the
//! handshake, a TLS error and an early FIN mean, and what they count.
//!
//! Bytes flow like this. Ciphertext goes to rustls only while the
//! application keeps up: rustls holds at most about 32 KiB of decrypted
//! plaintext (it refuses more input beyond 16 KiB), and plaintext the
//! application does not take stays there, so slow applications push back
//! on the peer through TCP. Writing first flushes what rustls has to send
//! (handshake, alerts, tickets, earlier records), then lets the application
//! write plaintext straight into the caller's buffer, hands it to rustls,
//! and writes the records back over it: no staging buffer of our own. The
//! plaintext asked for is sized so that its records fit the buffer; what
//! does not fit waits in rustls.
//!
//! When the application closes gracefully, close_notify is queued once it
//! has nothing more to write; the connection closes only once it is
//! flushed.

use std::io::{BufRead, Write};
use std::ops::DerefMut;

use rustls::ConnectionCommon;
use sluice_app::{App, Close, Time};

/// rustls's limit on the TLS bytes it queues for sending. Plaintext is
/// handed over only when that queue is empty, at most
/// [`MAX_PLAINTEXT_ROUND`] at a time, so it is always taken whole.
pub(crate) const SEND_BUFFER_LIMIT: usize = 64 * 1024;
const MAX_PLAINTEXT_ROUND: usize = 32 * 1024;

/// Most bytes a record adds to its plaintext: 5-byte header, 16-byte AEAD
/// tag, and the larger of TLS 1.3's inner content type (1) and TLS 1.2
/// AES-GCM's explicit nonce (8).
pub(crate) const RECORD_OVERHEAD: usize = 5 + 16 + 8;

/// Where a connection is. `H` is what a side keeps while handshaking, `E`
/// how it ended.
pub(crate) enum Phase<H, E> {
    Handshaking(H),
    /// The application runs behind TLS.
    Open(Box<dyn App>),
    /// rustls no longer runs; input is dropped.
    Ended(E),
}

/// A rustls connection `C` and its plumbing (see the module's doc).
pub(crate) struct TlsConn<C, H, E> {
    pub(crate) conn: C,
    pub(crate) phase: Phase<H, E>,
    /// Plaintext bytes per record.
    record_plaintext: usize,
    /// Plaintext the application wrote that rustls did not take. Should
    /// not happen (see [`SEND_BUFFER_LIMIT`]); kept rather than lost.
    unsent: Vec<u8>,
    /// rustls holds decrypted bytes the application has not taken.
    plaintext_pending: bool,
    peer_close_notify: bool,
    peer_fin: bool,
    eof_delivered: bool,
    pub(crate) close_notify_queued: bool,
    /// Bytes queued in rustls (to send, and received plaintext) at the
    /// last look.
    rustls_buffered: usize,
}

impl<C, H, E> TlsConn<C, H, E> {
    /// What a rustls connection holds beyond its buffers (connection state,
    /// keys, the 4 KiB read buffer it keeps): an estimate for `memory`.
    pub(crate) const CONNECTION_BYTES: usize = std::mem::size_of::<C>() + 4096 + 1024;

    pub(crate) fn is_handshaking(&self) -> bool {
        matches!(self.phase, Phase::Handshaking(_))
    }

    pub(crate) fn is_established(&self) -> bool {
        matches!(self.phase, Phase::Open(_))
    }

    pub(crate) fn discard_buffers(&mut self) {
        self.unsent = Vec::new();
        self.plaintext_pending = false;
        self.rustls_buffered = 0;
    }
}

impl<C, D, H, E> TlsConn<C, H, E>
where
    C: DerefMut<Target = ConnectionCommon<D>>,
{
    pub(crate) fn new(mut conn: C, handshake: H, record_plaintext: usize) -> Self {
        conn.set_buffer_limit(Some(SEND_BUFFER_LIMIT));
        TlsConn {
            conn,
            phase: Phase::Handshaking(handshake),
            record_plaintext,
            unsent: Vec::new(),
            plaintext_pending: false,
            peer_close_notify: false,
            peer_fin: false,
            eof_delivered: false,
            close_notify_queued: false,
            rustls_buffered: 0,
        }
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

    /// Queues close_notify once the application closes gracefully with
    /// nothing more to write, and notes rustls's buffers.
    fn settle(&mut self) -> Result<(), rustls::Error> {
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
        if matches!(self.phase, Phase::Handshaking(_) | Phase::Open(_)) {
            // Nothing new to process here: this only reads the counts.
            let io = self.conn.process_new_packets()?;
            self.rustls_buffered = io.tls_bytes_to_write() + io.plaintext_bytes_to_read();
        }
        Ok(())
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

    /// Fills `buf` with what rustls has queued and the records of what the
    /// application writes.
    fn write_records(&mut self, now: Time, buf: &mut [u8]) -> usize {
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
                let room = plaintext_room(buf.len() - written, self.record_plaintext);
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
        written
    }

    /// Nothing waits to be written, in rustls or here.
    pub(crate) fn flushed(&self) -> bool {
        !self.conn.wants_write() && self.unsent.is_empty()
    }

    pub(crate) fn wants_read(&self) -> bool {
        match &self.phase {
            Phase::Open(inner) => self.peer_close_notify || inner.wants_read(),
            // Handshaking: always; otherwise input is dropped.
            _ => true,
        }
    }

    pub(crate) fn wants_write(&self) -> bool {
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

    /// Ours and, once open, the application's.
    pub(crate) fn memory(&self) -> usize {
        let own = Self::CONNECTION_BYTES + self.rustls_buffered + self.unsent.capacity();
        match &self.phase {
            Phase::Open(inner) => own + inner.memory(),
            _ => own,
        }
    }

    /// `close` while open: graceful only once close_notify is out.
    pub(crate) fn open_close(&self, inner: &dyn App) -> Close {
        match inner.close() {
            Close::Abort => Close::Abort,
            Close::Graceful if self.close_notify_queued && self.flushed() => Close::Graceful,
            _ => Close::No,
        }
    }

    pub(crate) fn is_idle(&self) -> bool {
        match &self.phase {
            Phase::Open(inner) => inner.is_idle() && !self.plaintext_pending && self.flushed(),
            _ => false,
        }
    }

    pub(crate) fn release_idle_memory(&mut self) {
        // rustls offers no way to shrink its buffers (its read buffer goes
        // back to 4 KiB by itself); ours and the application's can.
        if self.unsent.is_empty() {
            self.unsent = Vec::new();
        }
        if let Phase::Open(inner) = &mut self.phase {
            inner.release_idle_memory();
        }
    }
}

/// One side of TLS around a [`TlsConn`]. The provided methods are the
/// parts of [`App`] both sides share; the rest is each side's.
pub(crate) trait TlsSide {
    type Conn: DerefMut<Target = ConnectionCommon<Self::Data>>;
    type Data;
    type Handshake;
    type Ended;

    fn tls(&mut self) -> &mut TlsConn<Self::Conn, Self::Handshake, Self::Ended>;

    /// rustls completed the handshake: open the application, or end the
    /// connection.
    fn handshake_done(&mut self, now: Time);

    /// Counts a TLS error and ends the connection.
    fn fail(&mut self, now: Time, err: &rustls::Error);

    /// The peer sent FIN before the handshake completed.
    fn abandoned(&mut self);

    /// rustls processed records; `was_open`: the application ran before
    /// they came.
    fn records_processed(&mut self, _was_open: bool) {}

    /// [`App::on_read`].
    fn read_ciphertext(&mut self, now: Time, data: &[u8]) -> usize {
        let tls = self.tls();
        if matches!(tls.phase, Phase::Ended(_)) || tls.peer_close_notify {
            // Dropped: nothing more is read, but the service must get to
            // the peer's FIN.
            return data.len();
        }
        let taken = self.take_ciphertext(now, data);
        self.settle(now);
        taken
    }

    /// [`App::on_read_eof`].
    fn read_eof(&mut self, now: Time) {
        let tls = self.tls();
        tls.peer_fin = true;
        match tls.phase {
            Phase::Handshaking(_) => self.abandoned(),
            // A FIN without close_notify (truncation) ends the input all
            // the same; HTTP framing tells whether anything is missing.
            Phase::Open(_) => tls.deliver_plaintext(now),
            Phase::Ended(_) => {}
        }
        self.settle(now);
    }

    /// [`App::poll_write`].
    fn write_ciphertext(&mut self, now: Time, buf: &mut [u8]) -> usize {
        let written = self.tls().write_records(now, buf);
        self.settle(now);
        // A close_notify settle just queued.
        written + self.tls().flush_tls(&mut buf[written..])
    }

    /// After every call.
    fn settle(&mut self, now: Time) {
        if let Err(err) = self.tls().settle() {
            self.fail(now, &err);
        }
    }

    fn take_ciphertext(&mut self, now: Time, data: &[u8]) -> usize {
        let tls = self.tls();
        tls.deliver_plaintext(now);
        if tls.plaintext_pending {
            return 0;
        }
        let mut taken = 0;
        while taken < data.len() {
            let tls = self.tls();
            let was_open = tls.is_established();
            let mut rest = &data[taken..];
            match tls.conn.read_tls(&mut rest) {
                Ok(n) if n > 0 => taken += n,
                // 0: a close_notify came before; Err: rustls's buffers are
                // full (it wants its plaintext taken first).
                _ => break,
            }
            match tls.conn.process_new_packets() {
                Ok(io) => tls.peer_close_notify |= io.peer_has_closed(),
                Err(err) => {
                    self.fail(now, &err);
                    return data.len();
                }
            }
            self.records_processed(was_open);
            let tls = self.tls();
            if tls.is_handshaking() && !tls.conn.is_handshaking() {
                self.handshake_done(now);
                // The side refused what was negotiated.
                if !self.tls().is_established() {
                    return data.len();
                }
            }
            let tls = self.tls();
            tls.deliver_plaintext(now);
            if tls.peer_close_notify {
                // Nothing after a close_notify is read.
                return data.len();
            }
            if tls.plaintext_pending {
                break;
            }
        }
        taken
    }
}

/// Plaintext bytes whose records fit in `room` bytes.
pub(crate) fn plaintext_room(room: usize, record_plaintext: usize) -> usize {
    let record = record_plaintext + RECORD_OVERHEAD;
    let whole = room / record * record_plaintext;
    let partial = (room % record).saturating_sub(RECORD_OVERHEAD);
    (whole + partial).min(MAX_PLAINTEXT_ROUND)
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
