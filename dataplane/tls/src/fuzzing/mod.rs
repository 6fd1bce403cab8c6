//! The fuzzing entry: arbitrary bytes from a "client" into one [`TlsApp`](crate::TlsApp)
//! behind a fixed test certificate (a self-signed P-256 one for fuzz.test,
//! embedded here so that the fuzz target needs no files).

use std::io;
use std::path::Path;
use std::rc::Rc;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sluice_app::{App, Close, ConnContext, SharedStats, Time};

use crate::{TlsLoop, TlsServer, TlsSettings};

const CERT: &[u8] = include_bytes!("cert.pem");
const KEY: &[u8] = include_bytes!("key.pem");

fn read_embedded(path: &Path) -> io::Result<Vec<u8>> {
    match path.to_str() {
        Some("cert.pem") => Ok(CERT.to_vec()),
        Some("key.pem") => Ok(KEY.to_vec()),
        _ => Err(io::ErrorKind::NotFound.into()),
    }
}

fn server() -> Option<Arc<TlsServer>> {
    static SERVER: OnceLock<Option<Arc<TlsServer>>> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            let settings = TlsSettings {
                allow_tls12: true,
                ..TlsSettings::new("cert.pem", "key.pem")
            };
            TlsServer::with_reader(settings, read_embedded)
                .ok()
                .map(Arc::new)
        })
        .clone()
}

/// The first byte sets the segment size the rest is fed in (so records
/// split across reads are explored); between segments the connection
/// writes into 1000-byte buffers; at the end come FIN and the timeout.
pub(crate) fn server_bytes(data: &[u8]) {
    let Some(server) = server() else {
        return;
    };
    let Some((&segment, data)) = data.split_first() else {
        return;
    };
    let factory = Rc::new(|_: &ConnContext, _: Time| Box::new(Echo::default()) as Box<dyn App>);
    let mut tls_loop = TlsLoop::new(server, factory, SharedStats::default());
    let Ok(mut app) = tls_loop.accept(Time::ZERO) else {
        return;
    };
    let mut now = Time::ZERO;
    let mut out = [0u8; 1000];
    for mut offered in data.chunks(usize::from(segment).max(1)) {
        while !offered.is_empty() && app.wants_read() {
            let took = app.on_read(now, offered).min(offered.len());
            offered = &offered[took..];
            let wrote = write_all(&mut app, now, &mut out);
            if took == 0 && !wrote {
                break;
            }
        }
        now += Duration::from_millis(1);
        if app.close() != Close::No {
            return;
        }
    }
    app.on_read_eof(now);
    write_all(&mut app, now, &mut out);
    if let Some(deadline) = app.deadline() {
        app.on_timeout(deadline);
    }
    write_all(&mut app, now, &mut out);
    let _ = (app.memory(), app.is_idle(), app.close());
}

fn write_all(app: &mut impl App, now: Time, out: &mut [u8]) -> bool {
    let mut wrote = false;
    // Bounded: an echo writes no more than it read.
    for _ in 0..1000 {
        if !app.wants_write() || app.poll_write(now, out) == 0 {
            break;
        }
        wrote = true;
    }
    wrote
}

/// Echoes what it reads, holding at most 64 KiB.
#[derive(Default)]
struct Echo {
    pending: Vec<u8>,
    eof: bool,
}

impl App for Echo {
    fn on_read(&mut self, _: Time, data: &[u8]) -> usize {
        let take = data.len().min((64 << 10) - self.pending.len());
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
        self.pending.len() < 64 << 10
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
        if self.eof && self.pending.is_empty() {
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

    fn drain(&mut self, _: Time) {}
}
