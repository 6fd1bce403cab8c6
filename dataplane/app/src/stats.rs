//! Application counters of one loop. Apps add to them as things happen
//! (through a [`SharedStats`] their factory hands them), so the loop reads
//! one struct to publish, never every connection.

use std::cell::RefCell;
use std::ops::AddAssign;
use std::rc::Rc;

/// The counters of one loop's apps, shared by every app of the loop (never
/// across loops: no lock, no atomic).
pub type SharedStats = Rc<RefCell<AppStats>>;

/// HTTP semantics, whatever the version (HTTP/1.1 or HTTP/2 streams).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HttpStats {
    pub requests: u64,
    pub status_2xx: u64,
    pub status_4xx: u64,
    pub status_5xx: u64,
    /// A request head (HTTP/1.1 head, HTTP/2 HEADERS + CONTINUATION) not
    /// complete within its deadline.
    pub head_timeouts: u64,
    /// Keep-alive connections closed for idleness.
    pub idle_timeouts: u64,
    /// Inside a body or a response, nothing moved for too long.
    pub progress_timeouts: u64,
}

/// HTTP/2 connections and the protections sluice adds to h2.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct H2Stats {
    pub connections: u64,
    pub streams: u64,
    pub goaway_sent: u64,
    /// GOAWAY ENHANCE_YOUR_CALM for each flood kind.
    pub ping_floods: u64,
    pub settings_floods: u64,
    pub window_update_floods: u64,
    pub priority_floods: u64,
    pub empty_frame_floods: u64,
    pub reset_floods: u64,
    /// Streams reset because they stalled behind a zero window too long.
    pub stalled_streams: u64,
    /// Connections closed after a PING got no answer.
    pub ping_timeouts: u64,
    /// Connections ended by a protocol error (h2's).
    pub protocol_errors: u64,
    /// GOAWAY ENHANCE_YOUR_CALM from the HTTP/2 connection's own bounds
    /// (a header block too large, or in too many CONTINUATION frames).
    pub h2_floods: u64,
}

/// TLS handshakes and their outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TlsStats {
    pub handshakes_full: u64,
    pub handshakes_resumed: u64,
    pub handshake_failures: u64,
    pub handshake_timeouts: u64,
    /// Failures by the alert we sent.
    pub alert_handshake_failure: u64,
    pub alert_bad_certificate: u64,
    pub alert_unknown_ca: u64,
    pub alert_certificate_required: u64,
    pub alert_protocol_version: u64,
    pub alert_no_application_protocol: u64,
    pub alert_decode_error: u64,
    /// A client certificate outside the SPIFFE allow list.
    pub alert_access_denied: u64,
    pub alert_other: u64,
    pub alpn_h2: u64,
    pub alpn_http11: u64,
    /// No ALPN offered: HTTP/1.1.
    pub alpn_none: u64,
    pub client_certs_accepted: u64,
    pub client_certs_refused: u64,
}

/// Everything one loop's apps count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AppStats {
    pub http: HttpStats,
    pub h2: H2Stats,
    pub tls: TlsStats,
}

macro_rules! add_fields {
    ($t:ty { $($f:ident),* $(,)? }) => {
        impl AddAssign<&$t> for $t {
            fn add_assign(&mut self, o: &$t) {
                $(self.$f += o.$f;)*
            }
        }
    };
}

add_fields!(HttpStats {
    requests,
    status_2xx,
    status_4xx,
    status_5xx,
    head_timeouts,
    idle_timeouts,
    progress_timeouts
});
add_fields!(H2Stats {
    connections,
    streams,
    goaway_sent,
    ping_floods,
    settings_floods,
    window_update_floods,
    priority_floods,
    empty_frame_floods,
    reset_floods,
    stalled_streams,
    ping_timeouts,
    protocol_errors,
    h2_floods,
});
add_fields!(TlsStats {
    handshakes_full,
    handshakes_resumed,
    handshake_failures,
    handshake_timeouts,
    alert_handshake_failure,
    alert_bad_certificate,
    alert_unknown_ca,
    alert_certificate_required,
    alert_protocol_version,
    alert_no_application_protocol,
    alert_decode_error,
    alert_access_denied,
    alert_other,
    alpn_h2,
    alpn_http11,
    alpn_none,
    client_certs_accepted,
    client_certs_refused,
});

impl AddAssign<&AppStats> for AppStats {
    fn add_assign(&mut self, o: &AppStats) {
        self.http += &o.http;
        self.h2 += &o.h2;
        self.tls += &o.tls;
    }
}
