//! Per-queue counters: kept as plain integers by the loop that owns the
//! queue, published with relaxed stores (single writer), read by the
//! reporter thread.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

macro_rules! counters {
    ($( $(#[doc = $doc:literal])+ $name:ident ),* $(,)?) => {
        /// Counters of one queue (or a sum over queues).
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
        pub struct Counters {
            $( $(#[doc = $doc])+ pub $name: u64, )*
        }

        /// The published copy of a queue's [`Counters`]. One writer.
        #[derive(Debug, Default)]
        #[repr(align(64))]
        pub struct SharedCounters {
            $( $name: AtomicU64, )*
        }

        impl SharedCounters {
            #[inline]
            pub fn publish(&self, c: &Counters) {
                $( self.$name.store(c.$name, Ordering::Relaxed); )*
            }

            pub fn snapshot(&self) -> Counters {
                Counters { $( $name: self.$name.load(Ordering::Relaxed), )* }
            }
        }

        impl Counters {
            /// Every counter as (name, one-line meaning, value), in declaration order.
            pub fn fields(&self) -> Vec<(&'static str, &'static str, u64)> {
                vec![ $( (stringify!($name), concat!($($doc),+).trim_ascii(), self.$name), )* ]
            }

            pub fn add(&mut self, o: &Counters) {
                $( self.$name += o.$name; )*
            }

            /// What changed since `before`.
            pub fn delta(&self, before: &Counters) -> Counters {
                Counters { $( $name: self.$name.saturating_sub(before.$name), )* }
            }
        }
    };
}

counters! {
    /// Frames taken off the RX ring.
    rx_packets,
    /// Bytes of those frames.
    rx_bytes,
    /// Frames placed on the TX ring.
    tx_packets,
    /// Bytes of those frames.
    tx_bytes,
    /// Frames answered by a service (UDP or ICMP echo).
    echoed,
    /// Dropped: truncated or malformed headers.
    drop_malformed,
    /// Dropped: an IPv4 header or transport checksum did not verify.
    drop_bad_checksum,
    /// Dropped: well-formed but unsupported (non-IP, IP fragment).
    drop_unsupported,
    /// Dropped: no service on that address, protocol and port.
    drop_no_service,
    /// Dropped: the TX ring had no room for a reply.
    drop_tx_ring_full,
    /// Refills that found no free frame while the fill ring had room.
    fill_starved,
    /// sendto() calls that made the kernel transmit (TX wakeups).
    wakeups_tx,
    /// Syscalls made because the fill ring asked for a wakeup.
    wakeups_fill,
    /// Idle sleeps in ppoll().
    polls,
    /// Loop iterations.
    iterations,
    /// Nanoseconds spent in iterations that did work.
    busy_ns,
    /// Of busy_ns, nanoseconds inside TX/fill wakeup syscalls (in copy mode
    /// the kernel's transmit path runs there).
    kick_ns,
    /// Kernel: frames dropped before reaching the socket, too large or no
    /// fill frame (XDP_STATISTICS rx_dropped; ring-full drops not included).
    kernel_rx_dropped,
    /// Kernel: frames dropped because the RX ring was full (rx_ring_full).
    kernel_rx_ring_full,
    /// Kernel: times the kernel found the fill ring empty (events, not frames).
    kernel_fill_ring_empty,
    /// Kernel: invalid RX descriptors.
    kernel_rx_invalid_descs,
    /// Kernel: invalid TX descriptors.
    kernel_tx_invalid_descs,
    /// TCP: frames handed to the stack (checksums verified).
    tcp_segments_in,
    /// TCP: frames the stack filled (data, ACKs, SYN-ACKs, RSTs).
    tcp_segments_out,
    /// TCP: segments for a flow another loop owns, forwarded to it.
    tcp_handoff_out,
    /// TCP: segments received from other loops.
    tcp_handoff_in,
    /// TCP: segments lost because the owner's mailbox was full.
    tcp_handoff_overflow,
    /// TCP: packets not sent because the peer's MAC was unknown.
    tcp_tx_no_neighbour,
    /// TCP: connections accepted (handshake completed).
    tcp_accepts,
    /// TCP: segments retransmitted (all causes).
    tcp_retransmits,
    /// TCP: retransmission timeouts.
    tcp_rto,
    /// TCP: fast retransmits (duplicate ACKs or SACK).
    tcp_fast_retransmits,
    /// TCP: retransmissions found lost again and resent before the RTO.
    tcp_lost_retransmits,
    /// TCP: tail loss probes (no ACK for two smoothed RTTs).
    tcp_tail_loss_probes,
    /// TCP: out-of-window pure ACKs left unanswered (rate limit).
    tcp_oow_acks_suppressed,
    /// TCP: SYN-ACKs carrying a SYN cookie.
    tcp_cookies_sent,
    /// TCP: connections rebuilt from a valid cookie.
    tcp_cookies_accepted,
    /// TCP: RFC 5961 challenge ACKs sent.
    tcp_challenge_acks,
    /// TCP: RSTs received and accepted (they reset a connection).
    tcp_rst_in,
    /// TCP: RSTs received that reset nothing (out of window, inexact, in
    /// TIME_WAIT, for no connection): blind injection shows up here.
    tcp_rst_ignored,
    /// TCP: RSTs sent.
    tcp_rst_out,
    /// TCP: segments dropped by PAWS (old timestamps).
    tcp_paws_drops,
    /// TCP: ACKs for data never sent, or too old.
    tcp_bad_acks,
    /// TCP: out-of-order segments queued for reassembly.
    tcp_ooo_segments,
    /// TCP: SYNs dropped with the backlog full and cookies off.
    tcp_backlog_drops,
    /// TCP: probes sent into a peer's zero window.
    tcp_zero_window_probes,
    /// TCP: connections reset after unanswered keepalives or retransmissions.
    tcp_timeouts,
    /// TCP gauge: connections (all states but TIME_WAIT).
    tcp_connections,
    /// TCP gauge: TIME_WAIT entries.
    tcp_time_wait,
    /// TCP gauge: bytes of stream buffers in use.
    tcp_mem_bytes,
    /// HTTP: request heads parsed.
    http_requests,
    /// HTTP: 2xx responses.
    http_2xx,
    /// HTTP: 4xx responses (malformed requests, limits, unknown paths).
    http_4xx,
    /// HTTP: 5xx responses.
    http_5xx,
    /// HTTP: connections that hit a timeout (head, idle or progress),
    /// counted once each at the first expiry (closed or answered 408; a
    /// later abort is not counted again).
    http_timeouts,
    /// HTTP: request heads not complete within --http-head-timeout-secs of
    /// their first byte (answered 408).
    http_head_timeouts,
    /// HTTP: keep-alive connections closed after --http-idle-timeout-secs.
    http_idle_timeouts,
    /// HTTP: requests or responses that moved no byte for
    /// --http-request-timeout-secs.
    http_progress_timeouts,
    /// HTTP: connections the server closed before the peer's FIN: FIN
    /// after the response, then input read and dropped until the peer's
    /// FIN (lingering close).
    http_lingering_closes,
    /// HTTP: lingering closes ended by the linger limits instead of the
    /// peer's FIN.
    http_linger_timeouts,
    /// Apps: connections reset because their app asked (a flood, a
    /// protocol violation, a timeout the peer ignored).
    app_aborts,
    /// Apps: connections reset because their output could not be written
    /// for --send-timeout-secs (the peer stopped reading; also in
    /// app_aborts).
    app_send_timeouts,
    /// Apps gauge: bytes held by the applications' buffers (HTTP, TLS,
    /// HTTP/2), outside the TCP stream buffers.
    app_mem_bytes,
    /// TLS: full handshakes completed.
    tls_handshakes_full,
    /// TLS: handshakes resumed from a session ticket.
    tls_handshakes_resumed,
    /// TLS: handshakes that failed (by alert below).
    tls_handshake_failures,
    /// TLS: handshakes not finished within --tls-handshake-timeout-secs.
    tls_handshake_timeouts,
    /// TLS: handshake_failure alerts sent (no common version, suite or group).
    tls_alert_handshake_failure,
    /// TLS: bad_certificate alerts sent (a client certificate that does not verify).
    tls_alert_bad_certificate,
    /// TLS: unknown_ca alerts sent (a client certificate from another CA).
    tls_alert_unknown_ca,
    /// TLS: certificate_required alerts sent (mTLS without a client certificate).
    tls_alert_certificate_required,
    /// TLS: access_denied alerts sent (a SPIFFE ID outside --tls-spiffe-allow).
    tls_alert_access_denied,
    /// TLS: protocol_version alerts sent (TLS 1.2 without --tls12, or older).
    tls_alert_protocol_version,
    /// TLS: no_application_protocol alerts sent (ALPN without h2 or http/1.1).
    tls_alert_no_application_protocol,
    /// TLS: decode_error alerts sent (malformed records or messages).
    tls_alert_decode_error,
    /// TLS: other alerts sent.
    tls_alert_other,
    /// TLS: handshakes that agreed on h2.
    tls_alpn_h2,
    /// TLS: handshakes that agreed on http/1.1.
    tls_alpn_http11,
    /// TLS: handshakes without ALPN (served as HTTP/1.1).
    tls_alpn_none,
    /// TLS: client certificates verified and allowed.
    tls_client_certs_accepted,
    /// TLS: client certificates refused (CA, SPIFFE ID, or missing).
    tls_client_certs_refused,
    /// HTTP/2: connections (h2 by ALPN and h2c).
    h2_connections,
    /// HTTP/2: streams accepted.
    h2_streams,
    /// HTTP/2: GOAWAY frames sent (drain, idle, floods, errors).
    h2_goaway_sent,
    /// HTTP/2: connections ended for a PING flood (GOAWAY ENHANCE_YOUR_CALM).
    h2_ping_floods,
    /// HTTP/2: connections ended for a SETTINGS flood.
    h2_settings_floods,
    /// HTTP/2: connections ended for a WINDOW_UPDATE flood.
    h2_window_update_floods,
    /// HTTP/2: connections ended for a PRIORITY flood.
    h2_priority_floods,
    /// HTTP/2: connections ended for empty DATA/HEADERS/CONTINUATION frames.
    h2_empty_frame_floods,
    /// HTTP/2: connections ended for client resets (rapid reset) or resets they made the server send (MadeYouReset).
    h2_reset_floods,
    /// HTTP/2: connections ended by h2's own bounds (pending resets, CONTINUATION, error resets).
    h2_crate_floods,
    /// HTTP/2: streams reset after waiting behind a zero window too long.
    h2_stalled_streams,
    /// HTTP/2: connections closed after an unanswered keepalive PING.
    h2_ping_timeouts,
    /// HTTP/2: connections ended by a protocol error.
    h2_protocol_errors,
    /// Proxy: requests a route sent to a cluster.
    proxy_requests,
    /// Proxy: 2xx responses from backends.
    proxy_responses_2xx,
    /// Proxy: 3xx responses from backends.
    proxy_responses_3xx,
    /// Proxy: 4xx responses from backends.
    proxy_responses_4xx,
    /// Proxy: 5xx responses from backends (the proxy's own 502/503/504 are counted by cause).
    proxy_responses_5xx,
    /// Proxy: requests refused with 503 because the cluster's pending queue was full.
    proxy_overflows,
    /// Proxy: requests refused with 503 for lack of a backend.
    proxy_no_backend,
    /// Proxy: connections to backends that failed (refused, timed out, no route).
    proxy_connect_failures,
    /// Proxy: exchanges cut by a backend reset or close mid-request (502, or a cut response).
    proxy_upstream_resets,
    /// Proxy: backend responses that were not valid HTTP (502).
    proxy_bad_responses,
    /// Proxy: requests past their route's timeout (504).
    proxy_timeouts,
    /// Proxy: requests sent again on another connection or backend.
    proxy_retries,
    /// Proxy: retries not made because the cluster's retry budget (20% of active requests by default) was spent.
    proxy_retries_refused,
    /// Proxy: connections opened to backends.
    proxy_upstream_connects,
    /// Proxy: requests sent on a connection that had carried one before.
    proxy_upstream_reuses,
    /// Proxy: upstream connections closed after idling past the idle timeout.
    proxy_upstream_idle_closes,
    /// Proxy: gRPC responses with grpc-status 0 (in trailers, or a trailers-only head).
    proxy_grpc_ok,
    /// Proxy: gRPC responses with any other grpc-status.
    proxy_grpc_errors,
    /// Proxy: gRPC requests whose deadline (route timeout or grpc-timeout) passed, answered grpc-status 4.
    proxy_grpc_deadline_exceeded,
    /// Proxy: HTTP/2 streams a backend refused unprocessed (REFUSED_STREAM, or above its GOAWAY), sent again.
    proxy_upstream_refused_streams,
    /// Proxy: TLS handshakes with backends completed.
    proxy_upstream_tls_handshakes,
    /// Proxy: TLS handshakes with backends failed (certificate, ALPN, alerts; timeouts apart).
    proxy_upstream_tls_failures,
    /// Proxy: of those, backends whose certificate we refused (chain, name or SPIFFE ID).
    proxy_upstream_tls_cert_failures,
    /// Proxy: of those, backends that did not select the ALPN protocol the cluster needs (h2).
    proxy_upstream_tls_alpn_mismatches,
    /// Proxy: TLS handshakes with backends that timed out (the cluster's connect_timeout).
    proxy_upstream_tls_timeouts,
    /// Proxy gauge: requests in flight.
    proxy_active,
    /// Proxy gauge: upstream connections (opening, busy, idle).
    proxy_upstream_open,
    /// Proxy gauge: idle upstream connections in the pools.
    proxy_upstream_idle,
    /// Proxy: outcome batches the decision component's queue had no room for (outlier detection saw less).
    proxy_outcome_batches_dropped,
    /// Proxy: access log lines dropped because the writer's queue was full (the disk is slower than the requests).
    proxy_access_log_dropped,
    /// TCP: segments for an upstream port that landed on another loop's queue and were handed to it.
    tcp_upstream_handoffs,
    /// Neighbours: learned entries pushed out by newer ones (the table is full).
    neigh_evictions,
    /// Neighbours: peers that moved (new MAC or VLAN tags), followed on a validated segment.
    neigh_moves,
    /// Neighbours: frames that would have changed an entry without proving they come from the peer.
    neigh_refused,
}

impl Counters {
    /// The upstream TLS counters (cluster-wide: one loop publishes them).
    pub fn publish_upstream_tls(&mut self, t: &sluice_tls::UpstreamTlsStats) {
        self.proxy_upstream_tls_handshakes = t.handshakes_completed;
        self.proxy_upstream_tls_failures = t.handshake_failures;
        self.proxy_upstream_tls_cert_failures = t.certificate_failures;
        self.proxy_upstream_tls_alpn_mismatches = t.alpn_mismatches;
        self.proxy_upstream_tls_timeouts = t.handshake_timeouts;
    }

    /// The proxy counters of one loop.
    pub fn publish_proxy(&mut self, p: &sluice_proxy::ProxyStats) {
        self.proxy_requests = p.requests;
        self.proxy_responses_2xx = p.responses_2xx;
        self.proxy_responses_3xx = p.responses_3xx;
        self.proxy_responses_4xx = p.responses_4xx;
        self.proxy_responses_5xx = p.responses_5xx;
        self.proxy_overflows = p.overflows;
        self.proxy_no_backend = p.no_backend;
        self.proxy_connect_failures = p.connect_failures;
        self.proxy_upstream_resets = p.upstream_resets;
        self.proxy_bad_responses = p.bad_responses;
        self.proxy_timeouts = p.timeouts;
        self.proxy_retries = p.retries;
        self.proxy_retries_refused = p.retries_refused;
        self.proxy_upstream_connects = p.upstream_connects;
        self.proxy_upstream_reuses = p.upstream_reuses;
        self.proxy_upstream_idle_closes = p.upstream_idle_closes;
        self.proxy_grpc_ok = p.grpc_ok;
        self.proxy_grpc_errors = p.grpc_errors;
        self.proxy_grpc_deadline_exceeded = p.grpc_deadline_exceeded;
        self.proxy_upstream_refused_streams = p.upstream_refused_streams;
        self.proxy_active = p.active_exchanges;
        self.proxy_upstream_open = p.upstream_open;
        self.proxy_upstream_idle = p.upstream_idle;
    }

    /// The TLS counters of one loop.
    pub fn publish_tls(&mut self, t: &sluice_app::TlsStats) {
        self.tls_handshakes_full = t.handshakes_full;
        self.tls_handshakes_resumed = t.handshakes_resumed;
        self.tls_handshake_failures = t.handshake_failures;
        self.tls_handshake_timeouts = t.handshake_timeouts;
        self.tls_alert_handshake_failure = t.alert_handshake_failure;
        self.tls_alert_bad_certificate = t.alert_bad_certificate;
        self.tls_alert_unknown_ca = t.alert_unknown_ca;
        self.tls_alert_certificate_required = t.alert_certificate_required;
        self.tls_alert_access_denied = t.alert_access_denied;
        self.tls_alert_protocol_version = t.alert_protocol_version;
        self.tls_alert_no_application_protocol = t.alert_no_application_protocol;
        self.tls_alert_decode_error = t.alert_decode_error;
        self.tls_alert_other = t.alert_other;
        self.tls_alpn_h2 = t.alpn_h2;
        self.tls_alpn_http11 = t.alpn_http11;
        self.tls_alpn_none = t.alpn_none;
        self.tls_client_certs_accepted = t.client_certs_accepted;
        self.tls_client_certs_refused = t.client_certs_refused;
    }

    /// The HTTP/2 counters of one loop.
    pub fn publish_h2(&mut self, h: &sluice_app::H2Stats) {
        self.h2_connections = h.connections;
        self.h2_streams = h.streams;
        self.h2_goaway_sent = h.goaway_sent;
        self.h2_ping_floods = h.ping_floods;
        self.h2_settings_floods = h.settings_floods;
        self.h2_window_update_floods = h.window_update_floods;
        self.h2_priority_floods = h.priority_floods;
        self.h2_empty_frame_floods = h.empty_frame_floods;
        self.h2_reset_floods = h.reset_floods;
        self.h2_crate_floods = h.h2_floods;
        self.h2_stalled_streams = h.stalled_streams;
        self.h2_ping_timeouts = h.ping_timeouts;
        self.h2_protocol_errors = h.protocol_errors;
    }

    /// All drops counted by the loop. With the packet counters it closes
    /// the books (see [`Counters::balanced`]).
    pub fn drops(&self) -> u64 {
        self.drop_malformed
            + self.drop_bad_checksum
            + self.drop_unsupported
            + self.drop_no_service
            + self.drop_tx_ring_full
    }

    /// Whether every frame is accounted for: each received frame was
    /// echoed (and sent), dropped, or taken by the TCP stack, and each sent
    /// frame is an echo or a frame the stack filled:
    /// rx + tcp_segments_out = tx + drops + tcp_segments_in.
    pub fn balanced(&self) -> bool {
        self.rx_packets + self.tcp_segments_out
            == self.tx_packets + self.drops() + self.tcp_segments_in
    }

    /// Cost per received packet, in nanoseconds of busy time (user space
    /// and the syscalls the loop makes).
    pub fn ns_per_packet(&self) -> Option<f64> {
        (self.rx_packets > 0).then(|| self.busy_ns as f64 / self.rx_packets as f64)
    }

    /// User-space cost per received packet: busy time outside syscalls.
    pub fn user_ns_per_packet(&self) -> Option<f64> {
        (self.rx_packets > 0)
            .then(|| self.busy_ns.saturating_sub(self.kick_ns) as f64 / self.rx_packets as f64)
    }
}

/// The equation [`Counters::balanced`] checks, with every term, and its
/// verdict.
pub fn accounting_line(c: &Counters) -> String {
    format!(
        "accounting: rx {} + tcp_out {} = tx {} + drops {} + tcp_in {}: {}",
        c.rx_packets,
        c.tcp_segments_out,
        c.tx_packets,
        c.drops(),
        c.tcp_segments_in,
        if c.balanced() { "ok" } else { "MISMATCH" }
    )
}

/// A queue as the report shows it.
#[derive(Clone, Copy, Debug)]
pub struct QueueLabel {
    pub queue: u32,
    pub core: usize,
}

/// Human-readable rate: 1234567 -> "1.23M".
pub fn si(v: f64) -> String {
    let (div, suffix) = if v >= 1e9 {
        (1e9, "G")
    } else if v >= 1e6 {
        (1e6, "M")
    } else if v >= 1e3 {
        (1e3, "k")
    } else {
        (1.0, "")
    };
    format!("{:.2}{}", v / div, suffix)
}

/// Human-readable bytes: 1536 -> "1.5KiB".
pub fn bytes(v: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if v < 1024 {
        return format!("{v}B");
    }
    let mut x = v as f64 / 1024.0;
    let mut unit = 0;
    while x >= 1024.0 && unit + 1 < UNITS.len() {
        x /= 1024.0;
        unit += 1;
    }
    format!("{x:.1}{}", UNITS[unit])
}

/// One interval line per queue (and a total when there are several).
/// With the TCP stack running (`tcp`), each is followed by an indented
/// line of what it is doing: the gauges and the rates of accepts, HTTP
/// requests and retransmissions.
pub fn interval_lines(
    elapsed: Duration,
    period: Duration,
    labels: &[QueueLabel],
    now: &[Counters],
    before: &[Counters],
    tcp: bool,
) -> String {
    let secs = period.as_secs_f64().max(1e-9);
    let mut out = String::new();
    let mut total_now = Counters::default();
    let mut total_before = Counters::default();
    for ((label, n), b) in labels.iter().zip(now).zip(before) {
        total_now.add(n);
        total_before.add(b);
        let d = n.delta(b);
        let _ = writeln!(
            out,
            "[{:>7.1}s] q{}@cpu{:<3} {}",
            elapsed.as_secs_f64(),
            label.queue,
            label.core,
            rate_line(&d, secs)
        );
        if tcp {
            let _ = writeln!(out, "{:21}{}", "", tcp_line(n, &d, secs));
        }
    }
    if labels.len() > 1 {
        let d = total_now.delta(&total_before);
        let _ = writeln!(
            out,
            "[{:>7.1}s] total     {}",
            elapsed.as_secs_f64(),
            rate_line(&d, secs)
        );
        if tcp {
            let _ = writeln!(out, "{:21}{}", "", tcp_line(&total_now, &d, secs));
        }
    }
    out
}

/// The TCP/HTTP half of an interval: gauges from `now`, rates from `d`.
fn tcp_line(now: &Counters, d: &Counters, secs: f64) -> String {
    format!(
        "tcp conns {:>7}  time_wait {:>7}  mem {:>9}  accepts {:>7}/s  http {:>7}req/s  retx {:>7}/s",
        now.tcp_connections,
        now.tcp_time_wait,
        bytes(now.tcp_mem_bytes),
        si(d.tcp_accepts as f64 / secs),
        si(d.http_requests as f64 / secs),
        si(d.tcp_retransmits as f64 / secs),
    )
}

fn rate_line(d: &Counters, secs: f64) -> String {
    let busy_pct = d.busy_ns as f64 / (secs * 1e9) * 100.0;
    let ns_pp = match (d.ns_per_packet(), d.user_ns_per_packet()) {
        (Some(all), Some(user)) => format!("{all:.0} ns/pkt ({user:.0} user)"),
        _ => "- ns/pkt".into(),
    };
    format!(
        "rx {:>8}pps {:>8}b/s  tx {:>8}pps  drop {:>6}  busy {:>5.1}% {:>22}  wakeups {:>7}/s",
        si(d.rx_packets as f64 / secs),
        si(d.rx_bytes as f64 * 8.0 / secs),
        si(d.tx_packets as f64 / secs),
        d.drops(),
        busy_pct,
        ns_pp,
        si((d.wakeups_tx + d.wakeups_fill) as f64 / secs),
    )
}

/// The exit report: every counter per queue and in total.
pub fn final_table(labels: &[QueueLabel], counters: &[Counters]) -> String {
    let mut total = Counters::default();
    for c in counters {
        total.add(c);
    }
    let mut out = String::new();
    let _ = write!(out, "{:<26}", "counter");
    for l in labels {
        let _ = write!(out, " {:>16}", format!("q{}@cpu{}", l.queue, l.core));
    }
    if labels.len() > 1 {
        let _ = write!(out, " {:>16}", "total");
    }
    out.push('\n');
    let rows: Vec<Vec<(&str, &str, u64)>> = counters.iter().map(|c| c.fields()).collect();
    let total_fields = total.fields();
    for (i, (name, _, tv)) in total_fields.iter().enumerate() {
        let _ = write!(out, "{name:<26}");
        for r in &rows {
            let _ = write!(out, " {:>16}", r[i].2);
        }
        if labels.len() > 1 {
            let _ = write!(out, " {tv:>16}");
        }
        out.push('\n');
    }
    let ns = total
        .ns_per_packet()
        .map(|v| format!("{v:.1}"))
        .unwrap_or_else(|| "-".into());
    let _ = writeln!(out, "{:<26} {:>16}", "ns_per_packet", ns);
    let user = total
        .user_ns_per_packet()
        .map(|v| format!("{v:.1}"))
        .unwrap_or_else(|| "-".into());
    let _ = writeln!(out, "{:<26} {:>16}", "user_ns_per_packet", user);
    let _ = writeln!(out, "{}", accounting_line(&total));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_follow_declaration_and_delta_subtracts() {
        let a = Counters {
            rx_packets: 10,
            tx_packets: 7,
            drop_no_service: 3,
            kernel_tx_invalid_descs: 5,
            ..Default::default()
        };
        let b = Counters {
            rx_packets: 4,
            tx_packets: 4,
            kernel_tx_invalid_descs: 1,
            ..Default::default()
        };
        let f = a.fields();
        assert_eq!(f[0].0, "rx_packets");
        assert_eq!(f.last().unwrap().0, "neigh_refused");
        assert!(f.iter().all(|(_, help, _)| !help.is_empty()));
        let d = a.delta(&b);
        assert_eq!(d.rx_packets, 6);
        assert_eq!(d.tx_packets, 3);
        assert_eq!(d.drop_no_service, 3);
        assert_eq!(d.kernel_tx_invalid_descs, 4);
        assert!(a.balanced());
    }

    #[test]
    fn shared_round_trip() {
        let s = SharedCounters::default();
        let c = Counters {
            busy_ns: 42,
            polls: 3,
            ..Default::default()
        };
        s.publish(&c);
        assert_eq!(s.snapshot(), c);
    }

    fn two_queues() -> (Vec<QueueLabel>, Vec<Counters>, Vec<Counters>) {
        let labels = vec![
            QueueLabel { queue: 0, core: 1 },
            QueueLabel { queue: 1, core: 2 },
        ];
        let before = vec![
            Counters {
                rx_packets: 100,
                tcp_accepts: 10,
                http_requests: 20,
                tcp_retransmits: 1,
                ..Default::default()
            };
            2
        ];
        let mut now = before.clone();
        for (i, c) in now.iter_mut().enumerate() {
            let i = i as u64;
            c.rx_packets += 1000;
            c.tx_packets += 2000;
            c.tcp_accepts += 30 + i;
            c.http_requests += 500;
            c.tcp_retransmits += 4;
            c.tcp_connections = 40 + i;
            c.tcp_time_wait = 7;
            c.tcp_mem_bytes = 3 << 20;
        }
        (labels, now, before)
    }

    #[test]
    fn interval_lines_show_tcp_only_when_it_runs() {
        let (labels, now, before) = two_queues();
        let period = Duration::from_secs(2);
        let elapsed = Duration::from_secs(10);
        let udp = interval_lines(elapsed, period, &labels, &now, &before, false);
        assert_eq!(udp.lines().count(), 3, "{udp}");
        assert!(!udp.contains("tcp"), "{udp}");
        let t = interval_lines(elapsed, period, &labels, &now, &before, true);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 6, "{t}");
        // Each rate line is followed by its TCP line, indented under it.
        assert!(lines[0].starts_with("[   10.0s] q0@cpu1"), "{t}");
        assert!(lines[1].starts_with(&" ".repeat(21)), "{t}");
        let q1 = lines[3].split_whitespace().collect::<Vec<_>>().join(" ");
        assert_eq!(
            q1,
            "tcp conns 41 time_wait 7 mem 3.0MiB accepts 15.50/s http 250.00req/s retx 2.00/s"
        );
        // The total sums the gauges and the rates.
        assert!(lines[4].contains("total"), "{t}");
        let total = lines[5].split_whitespace().collect::<Vec<_>>().join(" ");
        assert_eq!(
            total,
            "tcp conns 81 time_wait 14 mem 6.0MiB accepts 30.50/s http 500.00req/s retx 4.00/s"
        );
    }

    #[test]
    fn bytes_are_binary_units() {
        assert_eq!(bytes(0), "0B");
        assert_eq!(bytes(1023), "1023B");
        assert_eq!(bytes(1536), "1.5KiB");
        assert_eq!(bytes(3 << 20), "3.0MiB");
        assert_eq!(bytes(5 << 30), "5.0GiB");
    }

    #[test]
    fn final_table_reports_balance() {
        let c = Counters {
            rx_packets: 3,
            tx_packets: 2,
            drop_malformed: 1,
            ..Default::default()
        };
        let t = final_table(&[QueueLabel { queue: 0, core: 1 }], &[c]);
        assert!(
            t.contains("accounting: rx 3 + tcp_out 0 = tx 2 + drops 1 + tcp_in 0: ok"),
            "{t}"
        );
    }

    #[test]
    fn accounting_line_shows_every_term_of_the_check() {
        // A TCP-serving run: most frames go to the stack, and most frames
        // sent are ones it filled.
        let mut c = Counters {
            rx_packets: 34_306,
            tcp_segments_in: 34_300,
            tcp_segments_out: 168_279,
            tx_packets: 168_285,
            echoed: 6,
            ..Default::default()
        };
        assert!(c.balanced());
        assert_eq!(
            accounting_line(&c),
            "accounting: rx 34306 + tcp_out 168279 = tx 168285 + drops 0 + tcp_in 34300: ok"
        );
        c.drop_no_service = 1;
        assert!(!c.balanced());
        assert_eq!(
            accounting_line(&c),
            "accounting: rx 34306 + tcp_out 168279 = tx 168285 + drops 1 + tcp_in 34300: MISMATCH"
        );
    }
}
