//! Process-wide counters, written as JSON by --stats-file.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::routes::Proto;

#[derive(Default)]
pub struct Stats {
    pub connections_accepted: AtomicU64,
    pub connections_open: AtomicU64,
    pub connections_http1: AtomicU64,
    pub connections_h2: AtomicU64,
    pub connections_tls: AtomicU64,
    pub tls_handshake_failures: AtomicU64,
    pub requests: AtomicU64,
    pub requests_http1: AtomicU64,
    pub requests_h2: AtomicU64,
    pub requests_grpc: AtomicU64,
    pub injected_failures: AtomicU64,
    pub resets: AtomicU64,
}

pub fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Counts a connection as open for as long as it lives.
pub struct OpenGuard<'a>(&'a Stats);

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.connections_open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Stats {
    pub fn open(&self) -> OpenGuard<'_> {
        inc(&self.connections_accepted);
        inc(&self.connections_open);
        OpenGuard(self)
    }

    pub fn request(&self, proto: Proto) {
        inc(&self.requests);
        match proto {
            Proto::Http10 | Proto::Http11 => inc(&self.requests_http1),
            Proto::H2 => inc(&self.requests_h2),
        }
    }

    pub fn to_json(&self, name: &str) -> serde_json::Value {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        serde_json::json!({
            "backend": name,
            "connections_accepted": g(&self.connections_accepted),
            "connections_open": g(&self.connections_open),
            "connections_http1": g(&self.connections_http1),
            "connections_h2": g(&self.connections_h2),
            "connections_tls": g(&self.connections_tls),
            "tls_handshake_failures": g(&self.tls_handshake_failures),
            "requests": g(&self.requests),
            "requests_http1": g(&self.requests_http1),
            "requests_h2": g(&self.requests_h2),
            "requests_grpc": g(&self.requests_grpc),
            "injected_failures": g(&self.injected_failures),
            "resets": g(&self.resets),
        })
    }

    /// Write-then-rename, so a reader never sees half a file.
    pub fn write(&self, path: &Path, name: &str) -> std::io::Result<()> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let mut body = self.to_json(name).to_string();
        body.push('\n');
        std::fs::write(&tmp, body)?;
        std::fs::rename(&tmp, path)
    }
}
