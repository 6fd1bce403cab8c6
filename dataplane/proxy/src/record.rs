//! What the proxy remembers of a finished request: the access log record
//! and the latency histograms.

use std::net::SocketAddr;
use std::time::Duration;

use hdrhistogram::Histogram;
use sluice_app::proxy::WakeKey;
use sluice_app::Time;

/// One finished request, for the access log. The TCP service adds what
/// only it knows (the connections' retransmits and smoothed RTT).
#[derive(Clone, Debug)]
pub struct AccessRecord {
    pub start: Time,
    pub end: Time,
    pub method: Vec<u8>,
    pub path: Vec<u8>,
    pub authority: Option<Vec<u8>>,
    pub client: Option<SocketAddr>,
    /// The status the client saw (the backend's, or 502/503/504).
    pub status: u16,
    /// What went wrong, if the proxy answered itself.
    pub error: Option<&'static str>,
    pub route: Option<usize>,
    pub cluster: Option<usize>,
    pub upstream: Option<SocketAddr>,
    pub retries: u32,
    /// Response body bytes handed to the client's connection.
    pub bytes_out: u64,
    pub tls_handshake: Option<Duration>,
    /// Time to connect the upstream connection that carried the request;
    /// None when it was reused.
    pub upstream_connect: Option<Duration>,
    /// From the request's start to the response head from the backend.
    pub first_byte: Option<Duration>,
    pub request_id: Option<Vec<u8>>,
    pub trace_id: [u8; 16],
    /// The downstream and upstream connections, for the service's lookup.
    pub downstream: WakeKey,
    pub upstream_conn: Option<WakeKey>,
}

/// Latency of finished requests per route and per cluster, in
/// microseconds (1 µs to 60 s, two significant digits).
#[derive(Clone, Debug)]
pub struct Latency {
    pub routes: Vec<Histogram<u64>>,
    pub clusters: Vec<Histogram<u64>>,
}

const MAX_US: u64 = 60_000_000;

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 2).expect("valid histogram bounds")
}

impl Latency {
    pub fn new(routes: usize, clusters: usize) -> Self {
        Self {
            routes: (0..routes).map(|_| histogram()).collect(),
            clusters: (0..clusters).map(|_| histogram()).collect(),
        }
    }

    pub fn record(&mut self, route: Option<usize>, cluster: Option<usize>, took: Duration) {
        let us = (took.as_micros() as u64).clamp(1, MAX_US);
        if let Some(h) = route.and_then(|r| self.routes.get_mut(r)) {
            h.saturating_record(us);
        }
        if let Some(h) = cluster.and_then(|c| self.clusters.get_mut(c)) {
            h.saturating_record(us);
        }
    }

    /// Adds `other` into `self` and empties `other` (a loop hands its
    /// counts to the reporter).
    pub fn drain_into(&mut self, into: &mut Latency) {
        for (a, b) in self.routes.iter_mut().zip(into.routes.iter_mut()) {
            let _ = b.add(&*a);
            a.reset();
        }
        for (a, b) in self.clusters.iter_mut().zip(into.clusters.iter_mut()) {
            let _ = b.add(&*a);
            a.reset();
        }
    }

    pub fn is_empty(&self) -> bool {
        self.routes.iter().all(|h| h.is_empty()) && self.clusters.iter().all(|h| h.is_empty())
    }
}
