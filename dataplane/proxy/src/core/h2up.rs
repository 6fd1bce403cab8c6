//! HTTP/2 backends: one connection carries many exchanges, each on its
//! own stream ([`sluice_h2::H2Client`]).
//!
//! A connection takes streams up to the cluster's
//! `max_streams_per_connection` and the backend's own SETTINGS limit; a new
//! connection is opened only when every connection of the backend is full
//! (and the ones opening would not cover the waiting exchanges). An
//! exchange that ends early (client gone, timeout) resets its stream and
//! leaves the connection to the others. A stream the backend refused
//! (REFUSED_STREAM, or above its GOAWAY's last stream id) never ran and is
//! sent again on another connection.

use std::net::SocketAddr;

use bytes::Bytes;
use sluice_app::proxy::{
    BodyLen, ExchangeId, HeaderValue, Headers, ProxyError, ProxyRequest, ResponsePart,
};
use sluice_app::{Close, Time};
use sluice_h2::{ClientRequest, H2Client, H2ClientConfig, H2Event, SendError, StreamFailure};
use sluice_http::BodyFraming;
use sluice_lb::{GatewayFailure, OutcomeKind};

use super::{parse_u64, Core, UpState, REQUEST_BODY_BUFFER, RESPONSE_BUFFER};
use crate::UpstreamId;

/// A request as an HTTP/2 backend gets it (kept for a retry: sending it
/// again clones the map, not its fields).
#[derive(Debug)]
pub(super) struct H2Request {
    method: Vec<u8>,
    path: Bytes,
    /// `Host` becomes `:authority`; without one, the backend's address.
    authority: Option<Bytes>,
    headers: Headers,
    end_stream: bool,
}

impl H2Request {
    /// `fields` has no `Host` and none of the connection-specific fields
    /// (both downstream codecs removed them).
    pub fn new(req: ProxyRequest, mut fields: Headers, grpc: bool) -> Self {
        fields.remove(http::header::CONTENT_LENGTH);
        if grpc {
            // gRPC servers require it (and it is the one `te` h2 allows).
            fields.insert(http::header::TE, HeaderValue::from_static("trailers"));
        }
        H2Request {
            end_stream: req.body == BodyLen::None,
            method: req.method,
            path: Bytes::from(req.path),
            authority: req.authority.map(Bytes::from),
            headers: fields,
        }
    }
}

/// An HTTP/2 upstream connection's client and the exchanges on its
/// streams.
#[derive(Debug)]
pub(crate) struct H2Up {
    pub client: H2Client,
    pub streams: Vec<(u32, ExchangeId)>,
}

impl H2Up {
    pub fn new(max_streams: u32) -> Self {
        H2Up {
            client: H2Client::new(H2ClientConfig {
                max_streams,
                // As much as an HTTP/1.1 exchange buffers: a slow client
                // holds its stream's window, not the connection.
                stream_window: RESPONSE_BUFFER as u32,
                ..H2ClientConfig::default()
            }),
            streams: Vec::new(),
        }
    }

    fn exchange_of(&self, key: u32) -> Option<ExchangeId> {
        self.streams
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, ex)| *ex)
    }

    fn remove(&mut self, key: u32) {
        self.streams.retain(|(k, _)| *k != key);
    }
}

impl Core {
    fn h2(&mut self, up: UpstreamId) -> Option<&mut H2Up> {
        self.up_mut(up)?.h2.as_deref_mut()
    }

    /// Streams for the waiting exchanges of `backend`, and connections
    /// for those that no open or opening connection can take.
    pub(super) fn h2_dispatch(&mut self, now: Time, backend: usize) {
        while let Some(&ex) = self.backends[backend].pending.front() {
            if self.ex(ex).is_none() {
                self.backends[backend].pending.pop_front();
                continue;
            }
            // The connection with the most streams that still has room:
            // the others drain and age out.
            let conns = &self.backends[backend].h2_conns;
            let best = conns
                .iter()
                .filter_map(|&up| {
                    let u = self.up(up)?;
                    let h = u.h2.as_ref()?;
                    (u.close == Close::No && h.client.available() > 0)
                        .then_some((h.streams.len(), up))
                })
                .max_by_key(|(n, _)| *n);
            let Some((_, up)) = best else {
                break;
            };
            self.backends[backend].pending.pop_front();
            let cluster = self.backends[backend].cluster;
            self.breakers[cluster].release_pending();
            self.h2_assign(now, ex, up);
        }
        let cluster = self.backends[backend].cluster;
        let c = &self.spec.clusters[cluster];
        let (max, timeout, idle_timeout) = (c.max_connections, c.connect_timeout, c.idle_timeout);
        let per_conn = c.max_streams.max(1) as usize;
        while self.backends[backend].pending.len() > self.backends[backend].connecting * per_conn
            && self.backends[backend].conns < max
        {
            if self.breakers[cluster].try_acquire_connection().is_err() {
                break;
            }
            self.open(now, backend, timeout, idle_timeout);
        }
    }

    /// A new connection is established: it takes streams at once (h2
    /// queues them behind the preface and SETTINGS).
    pub(super) fn h2_connected(&mut self, now: Time, up: UpstreamId) {
        let Some(u) = self.up(up) else {
            return;
        };
        let backend = u.backend;
        self.backends[backend].h2_conns.push(up);
        self.dispatch(now, backend);
        self.wake_up(up);
    }

    fn h2_assign(&mut self, now: Time, ex: ExchangeId, up: UpstreamId) {
        let Some(u) = self.up_mut(up) else {
            return;
        };
        let (used, backend, wake, took) = (u.used, u.backend, u.wake, u.connect_took.take());
        u.used = true;
        if used {
            self.stats.upstream_reuses += 1;
        }
        let addr = self.backends[backend].addr;
        let Some(e) = self.ex_mut(ex) else {
            return;
        };
        e.served_by = Some(backend);
        e.upstream_conn = wake;
        e.upstream_connect = if used { None } else { took };
        if e.started_on.is_none() {
            e.started_on = Some(backend);
            let c = e.cluster;
            let first = self.cluster_first[c];
            self.balancers[c].start(backend - first);
        }
        let Some(e) = self.ex_mut(ex) else {
            return;
        };
        let Some(r) = e.h2.take() else {
            return;
        };
        let own_authority: Vec<u8>;
        let authority: &[u8] = match &r.authority {
            Some(a) => a,
            None => {
                own_authority = authority_of(addr);
                &own_authority
            }
        };
        let scheme = if self.spec.clusters[self.backends[backend].cluster]
            .tls
            .is_some()
        {
            "https"
        } else {
            "http"
        };
        let request = ClientRequest {
            method: &r.method,
            scheme,
            authority,
            path: &r.path,
            headers: &r.headers,
            end_stream: r.end_stream,
        };
        let sent = match self.h2(up) {
            Some(h) => h.client.send_request(request),
            None => Err(SendError::NotReady),
        };
        if let Some(e) = self.ex_mut(ex) {
            e.h2 = Some(r);
        }
        match sent {
            Ok(key) => {
                if let Some(h) = self.h2(up) {
                    h.streams.push((key, ex));
                }
                if let Some(e) = self.ex_mut(ex) {
                    e.up = Some(up);
                    e.stream = Some(key);
                    if e.framing == BodyFraming::None {
                        e.body_done = true;
                    }
                }
                if let Some((per_try, tries)) =
                    self.ex(ex).and_then(|e| Some((e.per_try?, e.tries)))
                {
                    self.timers.push(std::cmp::Reverse((
                        now + per_try,
                        super::Timer::Try(ex.index, ex.gen, tries),
                    )));
                }
                self.wake_up(up);
            }
            Err(SendError::NotReady) => {
                // GOAWAY came in meanwhile: this connection is done for new
                // streams; the exchange waits for another.
                self.backends[backend].h2_conns.retain(|x| *x != up);
                self.backends[backend].pending.push_front(ex);
                let cluster = self.backends[backend].cluster;
                if self.breakers[cluster].try_acquire_pending().is_err() {
                    self.backends[backend].pending.pop_front();
                    self.finish_ex(ex, Err(ProxyError::Overflow));
                    return;
                }
                self.wake_up(up);
                self.dispatch(now, backend);
            }
            Err(SendError::Invalid) => {
                // A field the client sent that HTTP/2 cannot carry.
                if let Some(e) = self.ex_mut(ex) {
                    e.up = None;
                }
                self.finish_ex(ex, Err(ProxyError::BadRequest));
            }
        }
    }

    /// Takes `ex` off its stream (RST_STREAM CANCEL); the connection
    /// carries on with the others.
    pub(super) fn h2_detach(&mut self, now: Time, ex: ExchangeId) {
        let Some(e) = self.ex_mut(ex) else {
            return;
        };
        let (Some(up), Some(key)) = (e.up.take(), e.stream.take()) else {
            return;
        };
        if let Some(h) = self.h2(up) {
            h.client.reset(key);
            h.remove(key);
        }
        self.h2_stream_freed(now, up);
    }

    /// A stream of `up` ended: its slot goes to a waiting exchange, and
    /// an idle connection starts its idle time.
    fn h2_stream_freed(&mut self, now: Time, up: UpstreamId) {
        let Some(u) = self.up_mut(up) else {
            return;
        };
        let backend = u.backend;
        if !u.busy() {
            u.idle_since = now;
        }
        self.wake_up(up);
        self.dispatch(now, backend);
    }

    pub(super) fn h2_wants_write(&self, up: UpstreamId) -> bool {
        let Some(u) = self.up(up) else {
            return false;
        };
        let Some(h) = &u.h2 else {
            return false;
        };
        h.client.wants_write()
            || h.streams.iter().any(|(_, ex)| {
                self.ex(*ex).is_some_and(|e| {
                    !e.body.is_empty() || (e.body_done && e.framing != BodyFraming::None)
                })
            })
    }

    pub(super) fn h2_write(&mut self, now: Time, up: UpstreamId, buf: &mut [u8]) -> usize {
        // By index: no copy of the stream list on every write.
        let mut i = 0;
        while let Some(&(key, ex)) = self.h2(up).and_then(|h| h.streams.get(i)) {
            i += 1;
            let Some(slot) = self.exchanges.get_mut(ex.index as usize) else {
                continue;
            };
            let Some(e) = slot.as_mut().filter(|e| e.gen == ex.gen) else {
                continue;
            };
            let Some(h) = self.ups[up.index as usize]
                .as_mut()
                .and_then(|u| u.h2.as_deref_mut())
            else {
                return 0;
            };
            let before = e.body.len();
            if !e.body.is_empty() && h.client.unsent(key) < REQUEST_BODY_BUFFER {
                h.client.send_data(key, &e.body);
                e.body.clear();
            }
            if e.body_done && e.body.is_empty() && e.framing != BodyFraming::None {
                h.client.end_request(key, e.trailers.as_deref().cloned());
                e.framing = BodyFraming::None;
            }
            if before >= REQUEST_BODY_BUFFER && e.body.len() < REQUEST_BODY_BUFFER {
                self.wakes.push(e.wake);
            }
        }
        let n = match self.h2(up) {
            Some(h) => h.client.poll_write(buf),
            None => 0,
        };
        self.h2_events(now, up);
        n
    }

    pub(super) fn h2_read(&mut self, now: Time, up: UpstreamId, data: &[u8]) -> usize {
        let n = match self.h2(up) {
            Some(h) => h.client.on_read(data),
            None => return data.len(),
        };
        self.h2_events(now, up);
        n
    }

    pub(super) fn h2_eof(&mut self, now: Time, up: UpstreamId) {
        if let Some(h) = self.h2(up) {
            h.client.on_read_eof();
        }
        self.h2_events(now, up);
        self.unlist_idle(up);
        if let Some(u) = self.up_mut(up) {
            u.close = Close::Graceful;
        }
        self.wake_up(up);
    }

    /// The client's events, to the exchanges on their streams.
    fn h2_events(&mut self, now: Time, up: UpstreamId) {
        let mut freed = false;
        loop {
            let Some(h) = self.h2(up) else {
                return;
            };
            let Some((key, ev)) = h.client.poll_event() else {
                break;
            };
            let Some(ex) = h.exchange_of(key) else {
                continue;
            };
            let last = matches!(ev, H2Event::End | H2Event::Failed(_));
            if last {
                h.remove(key);
                freed = true;
            }
            self.h2_event(now, up, ex, ev);
            self.wake_ex(ex);
        }
        if self.h2(up).is_some_and(|h| h.client.going_away()) {
            // No new streams here (GOAWAY, or the connection ended).
            self.unlist_idle(up);
            if let Some(u) = self.up_mut(up) {
                if !u.busy() && u.close == Close::No {
                    u.close = Close::Graceful;
                }
            }
            self.wake_up(up);
        }
        if freed {
            self.h2_stream_freed(now, up);
        }
    }

    fn h2_event(&mut self, now: Time, up: UpstreamId, ex: ExchangeId, ev: H2Event) {
        let backend = self.up(up).map(|u| u.backend);
        let Some(e) = self.ex_mut(ex) else {
            return;
        };
        match ev {
            H2Event::Head {
                status,
                headers,
                end_stream,
            } => {
                if (100..200).contains(&status) {
                    return;
                }
                let (tries, max, route, idem, bodiless) =
                    (e.tries, e.max_tries, e.route, e.idempotent, e.bodiless);
                let retried = tries < max
                    && route.is_some_and(|r| {
                        self.spec.routes[r].retries_status(status, idem, bodiless)
                    });
                if retried {
                    // The response goes nowhere: its stream is reset and
                    // the request goes to another try.
                    self.count_status(status);
                    if let Some(b) = backend {
                        self.record(b, OutcomeKind::from_status(status));
                    }
                    let b = self.ex(ex).map_or(usize::MAX, |e| e.backend);
                    self.h2_detach(now, ex);
                    if !self.retry(now, ex, b, false) {
                        self.give_status(ex, status);
                    }
                    return;
                }
                let Some(e) = self.ex_mut(ex) else {
                    return;
                };
                e.first_byte = Some(now);
                e.head_seen = true;
                let mut headers = headers;
                let length = headers
                    .remove(http::header::CONTENT_LENGTH)
                    .and_then(|v| parse_u64(v.as_bytes()));
                let body = if e.is_head {
                    length.map_or(BodyLen::None, BodyLen::Length)
                } else if end_stream {
                    BodyLen::None
                } else {
                    length.map_or(BodyLen::Streamed, BodyLen::Length)
                };
                let grpc_status = end_stream.then(|| grpc_status(&headers)).flatten();
                e.resp.push_back(Ok(ResponsePart::Head {
                    status,
                    headers,
                    body,
                }));
                self.count_status(status);
                if let Some(b) = backend {
                    self.record(b, OutcomeKind::from_status(status));
                }
                if let Some(g) = grpc_status {
                    self.count_grpc(g);
                }
            }
            H2Event::Data(d) => {
                e.resp_bytes += d.len();
                match e.resp.back_mut() {
                    Some(Ok(ResponsePart::Data(buf))) if buf.len() < 16 * 1024 => {
                        buf.extend_from_slice(&d)
                    }
                    _ => e.resp.push_back(Ok(ResponsePart::Data(d.to_vec()))),
                }
                // The window comes back as the client takes the bytes
                // (`poll_response`).
            }
            H2Event::Trailers(t) => {
                let g = grpc_status(&t);
                e.resp.push_back(Ok(ResponsePart::Trailers(t)));
                if let Some(g) = g {
                    self.count_grpc(g);
                }
            }
            H2Event::End => {
                e.finished = true;
                e.up = None;
                e.stream = None;
                e.resp.push_back(Ok(ResponsePart::End));
            }
            H2Event::Failed(f) => {
                e.up = None;
                e.stream = None;
                if e.finished {
                    return;
                }
                let refused = f == StreamFailure::Refused;
                if let (Some(b), false) = (backend, refused) {
                    self.record(b, OutcomeKind::GatewayFailure(GatewayFailure::Reset));
                }
                let Some(e) = self.ex(ex) else {
                    return;
                };
                let safe = !e.head_seen
                    && ((refused && e.tries <= e.max_tries)
                        || (e.idempotent && e.retry_reset && e.tries < e.max_tries));
                let err = match f {
                    StreamFailure::Protocol if !e.head_seen => ProxyError::BadResponse,
                    _ => ProxyError::UpstreamReset,
                };
                let backend = e.backend;
                if refused {
                    self.stats.upstream_refused_streams += 1;
                }
                if safe && self.retry(now, ex, backend, refused) {
                    return;
                }
                self.finish_ex(ex, Err(err));
            }
        }
    }

    fn count_grpc(&mut self, status: u32) {
        if status == 0 {
            self.stats.grpc_ok += 1;
        } else {
            self.stats.grpc_errors += 1;
        }
    }

    /// The connection is gone: every exchange on it is retried (if safe)
    /// or failed.
    pub(super) fn h2_gone(&mut self, now: Time, up: UpstreamId) {
        let streams = match self.h2(up) {
            Some(h) => std::mem::take(&mut h.streams),
            None => return,
        };
        if let Some(b) = self.up(up).map(|u| u.backend) {
            self.backends[b].h2_conns.retain(|x| *x != up);
        }
        let connecting = self.up(up).is_some_and(|u| u.state == UpState::Connecting);
        for (_, ex) in streams {
            let failure = if connecting {
                StreamFailure::Refused
            } else {
                StreamFailure::Reset
            };
            self.h2_event(now, up, ex, H2Event::Failed(failure));
            self.wake_ex(ex);
        }
    }

    /// The client took `n` response bytes of `ex`: the backend may send
    /// as much more on its stream.
    pub(super) fn h2_release(&mut self, ex: ExchangeId, n: usize) {
        let Some((up, key)) = self.ex(ex).and_then(|e| Some((e.up?, e.stream?))) else {
            return;
        };
        if let Some(h) = self.h2(up) {
            h.client.release(key, n);
        }
        self.wake_up(up);
    }
}

fn grpc_status(fields: &Headers) -> Option<u32> {
    fields
        .get("grpc-status")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// `:authority` for a request that had no `Host`: the backend's address.
fn authority_of(addr: SocketAddr) -> Vec<u8> {
    addr.to_string().into_bytes()
}
