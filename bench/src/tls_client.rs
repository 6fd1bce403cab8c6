//! The TLS client of `run tls` for what h2load cannot do: a handshake per
//! request, full or resumed from a session ticket, counted by the kind of
//! handshake that really happened; and idle connections held open after
//! one request (HTTP/1.1 keep-alive or HTTP/2).
//!
//! rustls (aws-lc-rs) on blocking sockets, one thread per concurrent
//! connection. The client offers TLS 1.3 only and the X25519 key share
//! only (what OpenSSL clients such as h2load and curl send), so sluice's
//! rustls and the OpenSSL servers agree on the same group without a
//! HelloRetryRequest; suites in rustls's order (AES-256-GCM first, as
//! OpenSSL's). The server certificate is not verified: that is client
//! work, the same for every server, and would only slow the generator.
//!
//! - Full handshakes: resumption disabled: no ticket is ever offered, so
//!   every connection is a full handshake on both rustls and OpenSSL
//!   servers (each still sends its tickets, which are dropped).
//! - Resumed handshakes: each thread keeps its own ticket store; its
//!   first connection is a full handshake, every later one offers the
//!   newest ticket (TLS 1.3 tickets are single-use; every server sends at
//!   least one new ticket per connection). rustls reports per connection
//!   whether the server accepted the ticket ([`HandshakeKind`]).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use hdrhistogram::Histogram;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, HandshakeKind, SignatureScheme,
};
use serde::{Deserialize, Serialize};

/// The name the client sends in SNI and Host (the bench certificate's).
pub const SERVER_NAME: &str = "bench.sluice.test";

/// Accepts any certificate and signature (see the module comment).
#[derive(Debug)]
struct NoVerify(Vec<SignatureScheme>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.clone()
    }
}

/// The TLS 1.3 suites by their OpenSSL (and IANA) names.
pub const SUITES: [&str; 3] = [
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
];

/// The IANA name of a rustls suite ("TLS_AES_128_GCM_SHA256").
fn suite_name(s: rustls::SupportedCipherSuite) -> String {
    format!("{:?}", s.suite()).replace("TLS13_", "TLS_")
}

/// A client configuration: TLS 1.3 with the one suite `cipher`, X25519,
/// ALPN `alpn`, with or without a ticket store of its own.
pub fn client_config(alpn: &str, resume: bool, cipher: &str) -> Result<Arc<ClientConfig>> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.kx_groups = vec![rustls::crypto::aws_lc_rs::kx_group::X25519];
    provider.cipher_suites.retain(|s| suite_name(*s) == cipher);
    if provider.cipher_suites.is_empty() {
        bail!(
            "unknown TLS 1.3 suite {cipher:?} (one of {})",
            SUITES.join(", ")
        );
    }
    let schemes = provider
        .signature_verification_algorithms
        .supported_schemes();
    let mut cfg = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoVerify(schemes)))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![alpn.as_bytes().to_vec()];
    cfg.resumption = if resume {
        Resumption::in_memory_sessions(16)
    } else {
        Resumption::disabled()
    };
    Ok(Arc::new(cfg))
}

fn server_name() -> ServerName<'static> {
    ServerName::try_from(SERVER_NAME).expect("valid DNS name")
}

/// TCP connect (bounded), Nagle off.
fn connect(target: SocketAddr) -> Result<TcpStream> {
    let sock = TcpStream::connect_timeout(&target, Duration::from_secs(5))
        .with_context(|| format!("connecting to {target}"))?;
    sock.set_nodelay(true)?;
    sock.set_read_timeout(Some(Duration::from_secs(10)))?;
    sock.set_write_timeout(Some(Duration::from_secs(10)))?;
    Ok(sock)
}

/// The status code of an HTTP/1.x response head.
fn status_of(head: &[u8]) -> Option<u16> {
    let line = head.split(|&b| b == b'\n').next()?;
    let code = std::str::from_utf8(line).ok()?.split_whitespace().nth(1)?;
    code.parse().ok()
}

/// The head's length (through the blank line) and its Content-Length.
fn parse_head(buf: &[u8]) -> Option<(usize, Option<usize>)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let len = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse().ok())?
    });
    Some((end, len))
}

/// How one connection of the handshake load went.
struct Exchange {
    kind: HandshakeKind,
    status: u16,
    cipher: Option<String>,
}

/// Connect, handshake, `GET path` with `Connection: close`, read to the
/// end (the server closes: the server side keeps the TIME_WAIT, the
/// client's ports are free again at once).
fn close_exchange(cfg: &Arc<ClientConfig>, target: SocketAddr, req: &[u8]) -> Result<Exchange> {
    let mut sock = connect(target)?;
    let mut conn = ClientConnection::new(cfg.clone(), server_name())?;
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    tls.write_all(req).context("handshake and request")?;
    let mut resp = Vec::with_capacity(512);
    match tls.read_to_end(&mut resp) {
        Ok(_) => {}
        // A FIN without close_notify after a complete response is fine.
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => {}
        Err(e) => return Err(anyhow!(e).context("reading the response")),
    }
    let (head_len, body_len) = parse_head(&resp).ok_or_else(|| {
        anyhow!(
            "incomplete response ({} bytes): {:?}",
            resp.len(),
            String::from_utf8_lossy(&resp[..resp.len().min(200)])
        )
    })?;
    if let Some(n) = body_len {
        if resp.len() < head_len + n {
            bail!("short body: {} of {n} bytes", resp.len() - head_len);
        }
    }
    let kind = conn.handshake_kind().unwrap_or(HandshakeKind::Full);
    Ok(Exchange {
        kind,
        status: status_of(&resp).unwrap_or(0),
        cipher: conn.negotiated_cipher_suite().map(suite_name),
    })
}

/// `sluice-bench tls-load`: connections per second with a TLS handshake
/// each, one request per connection.
#[derive(Args, Debug, Clone)]
pub struct TlsLoadArgs {
    /// Server address.
    #[arg(long)]
    pub connect: SocketAddr,
    /// Request path.
    #[arg(long, default_value = "/health")]
    pub path: String,
    /// Connections in flight (one thread each).
    #[arg(long, default_value_t = 16)]
    pub concurrency: u32,
    /// Seconds of load.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Resume from session tickets (each thread's first connection is a
    /// full handshake); without it every handshake is a full one.
    #[arg(long)]
    pub resume: bool,
    /// ALPN protocol offered.
    #[arg(long, default_value = "http/1.1")]
    pub alpn: String,
    /// The one TLS 1.3 suite offered.
    #[arg(long, default_value = "TLS_AES_128_GCM_SHA256")]
    pub cipher: String,
}

/// What `tls-load` prints (one JSON object).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TlsLoadReport {
    pub requests: u64,
    pub errors: u64,
    pub non_2xx: u64,
    pub elapsed_s: f64,
    pub req_per_s: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub handshakes_full: u64,
    pub handshakes_full_hrr: u64,
    pub handshakes_resumed: u64,
    /// The suite the connections negotiated (the last one's).
    pub cipher: Option<String>,
    pub first_error: Option<String>,
}

pub fn tls_load(a: &TlsLoadArgs) -> Result<TlsLoadReport> {
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {SERVER_NAME}\r\nConnection: close\r\n\r\n",
        a.path
    )
    .into_bytes();
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(a.duration);
    let first_error = Mutex::new(None::<String>);
    let threads: Vec<_> = (0..a.concurrency.max(1))
        .map(|_| -> Result<_> {
            let cfg = client_config(&a.alpn, a.resume, &a.cipher)?;
            let req = req.clone();
            let target = a.connect;
            let first_error = &first_error;
            Ok(move || {
                let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
                let mut r = TlsLoadReport::default();
                while Instant::now() < deadline {
                    let t0 = Instant::now();
                    match close_exchange(&cfg, target, &req) {
                        Ok(x) => {
                            r.requests += 1;
                            if !(200..300).contains(&x.status) {
                                r.non_2xx += 1;
                            }
                            match x.kind {
                                HandshakeKind::Full => r.handshakes_full += 1,
                                HandshakeKind::FullWithHelloRetryRequest => {
                                    r.handshakes_full_hrr += 1
                                }
                                HandshakeKind::Resumed => r.handshakes_resumed += 1,
                            }
                            r.cipher = x.cipher;
                            let _ = h.record(t0.elapsed().as_micros().max(1) as u64);
                        }
                        Err(e) => {
                            r.errors += 1;
                            first_error
                                .lock()
                                .expect("lock")
                                .get_or_insert_with(|| format!("{e:#}"));
                            std::thread::sleep(Duration::from_millis(10));
                        }
                    }
                }
                (r, h)
            })
        })
        .collect::<Result<_>>()?;
    let (mut total, mut hist) = std::thread::scope(|s| {
        let handles: Vec<_> = threads.into_iter().map(|f| s.spawn(f)).collect();
        let mut total = TlsLoadReport::default();
        let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
        for h in handles {
            let (r, th) = h.join().expect("load thread panicked");
            total.requests += r.requests;
            total.errors += r.errors;
            total.non_2xx += r.non_2xx;
            total.handshakes_full += r.handshakes_full;
            total.handshakes_full_hrr += r.handshakes_full_hrr;
            total.handshakes_resumed += r.handshakes_resumed;
            total.cipher = total.cipher.or(r.cipher);
            hist.add(&th).expect("same bounds");
        }
        (total, hist)
    });
    total.elapsed_s = started.elapsed().as_secs_f64();
    total.req_per_s = total.requests as f64 / total.elapsed_s;
    if !hist.is_empty() {
        total.p50_us = hist.value_at_quantile(0.50) as f64;
        total.p90_us = hist.value_at_quantile(0.90) as f64;
        total.p99_us = hist.value_at_quantile(0.99) as f64;
    }
    hist.reset();
    total.first_error = first_error.into_inner().expect("lock");
    Ok(total)
}

/// Idle connections: which protocol the one request used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
pub enum IdleProto {
    /// HTTP/1.1 keep-alive (ALPN http/1.1).
    Http1,
    /// HTTP/2 (ALPN h2): preface, SETTINGS, one GET, SETTINGS ACK.
    H2,
}

/// One idle connection: handshake, one request, the whole response read;
/// then the TLS state is dropped and only the socket kept (the server
/// cannot tell: nothing more is sent).
fn open_idle_one(
    cfg: &Arc<ClientConfig>,
    target: SocketAddr,
    proto: IdleProto,
) -> Result<TcpStream> {
    let mut sock = connect(target)?;
    let mut conn = ClientConnection::new(cfg.clone(), server_name())?;
    {
        let mut tls = rustls::Stream::new(&mut conn, &mut sock);
        match proto {
            IdleProto::Http1 => {
                let req = format!("GET /health HTTP/1.1\r\nHost: {SERVER_NAME}\r\n\r\n");
                tls.write_all(req.as_bytes())?;
                let mut buf = Vec::with_capacity(512);
                let mut chunk = [0u8; 4096];
                loop {
                    if let Some((head, Some(len))) = parse_head(&buf) {
                        if buf.len() >= head + len {
                            break;
                        }
                    }
                    let n = tls.read(&mut chunk)?;
                    if n == 0 {
                        bail!("connection closed before the response was complete");
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let status = status_of(&buf).unwrap_or(0);
                if status != 200 {
                    bail!("status {status}");
                }
            }
            IdleProto::H2 => h2_one_request(&mut tls)?,
        }
    }
    if proto == IdleProto::H2 && conn.alpn_protocol() != Some(b"h2") {
        bail!("the server did not agree on h2");
    }
    sock.set_read_timeout(None)?;
    Ok(sock)
}

/// A frame header: length, type, flags, stream.
fn h2_frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, ty, flags];
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// The request block of `GET https://SERVER_NAME/health` in HPACK with
/// static-table names and no Huffman coding.
fn h2_request_block() -> Vec<u8> {
    let mut b = vec![0x82, 0x87]; // :method GET, :scheme https
    for (idx, v) in [(4u8, "/health"), (1u8, SERVER_NAME)] {
        // Literal without indexing, indexed name (4-bit prefix).
        b.push(idx);
        b.push(v.len() as u8);
        b.extend_from_slice(v.as_bytes());
    }
    b
}

/// Preface, SETTINGS, one GET on stream 1; reads frames (acknowledging
/// the server's SETTINGS) until stream 1 ends. The response must start
/// with `:status 200` from the static table (0x88), after any dynamic
/// table size update.
fn h2_one_request(tls: &mut impl ReadWrite) -> Result<()> {
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(h2_frame(4, 0, 0, &[]));
    out.extend(h2_frame(1, 0x5, 1, &h2_request_block()));
    tls.write_all(&out)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut status_ok = None;
    let mut ended = false;
    while !ended {
        let n = tls.read(&mut chunk)?;
        if n == 0 {
            bail!("connection closed before the h2 response ended");
        }
        buf.extend_from_slice(&chunk[..n]);
        // Every whole frame in the buffer.
        while buf.len() >= 9 {
            let len =
                (usize::from(buf[0]) << 16) | (usize::from(buf[1]) << 8) | usize::from(buf[2]);
            if buf.len() < 9 + len {
                break;
            }
            let (ty, flags) = (buf[3], buf[4]);
            let stream = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
            let payload: Vec<u8> = buf.drain(..9 + len).skip(9).collect();
            match ty {
                // SETTINGS without ACK: acknowledge.
                4 if flags & 1 == 0 => tls.write_all(&h2_frame(4, 1, 0, &[]))?,
                // HEADERS on stream 1: the first field, after any dynamic
                // table size update (001xxxxx), must be 0x88.
                1 if stream == 1 => {
                    if status_ok.is_none() {
                        let mut p: &[u8] = &payload;
                        if flags & 0x8 != 0 {
                            p = &p[1.min(p.len())..]; // PADDED: pad length
                        }
                        if flags & 0x20 != 0 {
                            p = &p[5.min(p.len())..]; // PRIORITY
                        }
                        let first = p.iter().find(|&&b| b & 0xe0 != 0x20).copied();
                        status_ok = Some(first == Some(0x88));
                    }
                    ended |= flags & 1 != 0;
                }
                0 if stream == 1 => ended |= flags & 1 != 0,
                3 if stream == 1 => bail!("stream reset by the server"),
                7 => bail!("GOAWAY from the server"),
                _ => {}
            }
        }
    }
    match status_ok {
        Some(true) => Ok(()),
        _ => bail!("h2 response without :status 200"),
    }
}

/// Read + Write, for the h2 exchange over a rustls stream.
pub trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// Connections opened by [`open_idle`] and how it went.
pub struct IdleSet {
    pub conns: Vec<TcpStream>,
    pub errors: u64,
    pub first_error: Option<String>,
    pub elapsed_s: f64,
}

impl IdleSet {
    /// Connections the server closed (FIN or RST seen); data the server
    /// sent without closing is drained and does not count.
    pub fn closed_by_server(&self) -> Result<usize> {
        let mut closed = 0;
        let mut buf = [0u8; 4096];
        for c in &self.conns {
            c.set_nonblocking(true)?;
            loop {
                match (&*c).read(&mut buf) {
                    Ok(0) => {
                        closed += 1;
                        break;
                    }
                    Ok(_) => continue,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => {
                        closed += 1;
                        break;
                    }
                }
            }
        }
        Ok(closed)
    }
}

/// Opens `n` idle TLS connections from this process's namespace, spread
/// over `targets` in turn (several listener ports give the client more
/// source ports than one), with `threads` threads, full handshakes. Stops
/// early after `max_errors` failures (the set says how many it holds).
pub fn open_idle_here(
    targets: &[SocketAddr],
    n: u32,
    proto: IdleProto,
    threads: u32,
    max_errors: u64,
    cipher: &str,
) -> Result<IdleSet> {
    let alpn = match proto {
        IdleProto::Http1 => "http/1.1",
        IdleProto::H2 => "h2",
    };
    let cfg = client_config(alpn, false, cipher)?;
    let next = AtomicU64::new(0);
    let errors = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let first_error = Mutex::new(None::<String>);
    let started = Instant::now();
    let conns = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads.max(1))
            .map(|_| {
                s.spawn(|| {
                    let mut held = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= u64::from(n) {
                            break;
                        }
                        let target = targets[i as usize % targets.len()];
                        match open_idle_one(&cfg, target, proto) {
                            Ok(s) => held.push(s),
                            Err(e) => {
                                first_error
                                    .lock()
                                    .expect("lock")
                                    .get_or_insert_with(|| format!("{target}: {e:#}"));
                                if errors.fetch_add(1, Ordering::Relaxed) + 1 >= max_errors {
                                    stop.store(true, Ordering::Relaxed);
                                }
                            }
                        }
                    }
                    held
                })
            })
            .collect();
        let mut conns = Vec::with_capacity(n as usize);
        for h in handles {
            conns.extend(h.join().expect("idle-connection thread panicked"));
        }
        conns
    });
    Ok(IdleSet {
        conns,
        errors: errors.into_inner(),
        first_error: first_error.into_inner().expect("lock"),
        elapsed_s: started.elapsed().as_secs_f64(),
    })
}

/// `sluice-bench tls-idle`: opens idle TLS connections, prints one JSON
/// line ([`IdleReport`]) once they are open, holds them until its stdin
/// closes, then prints a second line with how many the server closed in
/// the meantime. `run tls` starts several (each process may hold only as
/// many sockets as its file-descriptor limit allows).
#[derive(Args, Debug, Clone)]
pub struct TlsIdleArgs {
    /// Server addresses, used in turn (repeatable).
    #[arg(long, required = true)]
    pub connect: Vec<SocketAddr>,
    /// Connections to open.
    #[arg(long)]
    pub connections: u32,
    /// The one request before idling: HTTP/1.1 keep-alive or HTTP/2.
    #[arg(long, value_enum, default_value_t = IdleProto::Http1)]
    pub proto: IdleProto,
    /// Threads opening connections (each one at a time).
    #[arg(long, default_value_t = 16)]
    pub threads: u32,
    /// Give up after this many failed connections.
    #[arg(long, default_value_t = 1)]
    pub max_errors: u64,
    /// The one TLS 1.3 suite offered.
    #[arg(long, default_value = "TLS_AES_128_GCM_SHA256")]
    pub cipher: String,
}

/// The lines `tls-idle` prints.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct IdleReport {
    pub held: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub elapsed_s: f64,
    /// Second line only: connections the server closed while held.
    pub closed: Option<u64>,
}

pub fn tls_idle(a: &TlsIdleArgs) -> Result<()> {
    crate::harness::raise_nofile(u64::from(a.connections) + 256)?;
    let set = open_idle_here(
        &a.connect,
        a.connections,
        a.proto,
        a.threads,
        a.max_errors,
        &a.cipher,
    )?;
    let mut report = IdleReport {
        held: set.conns.len() as u64,
        errors: set.errors,
        first_error: set.first_error.clone(),
        elapsed_s: set.elapsed_s,
        closed: None,
    };
    println!("{}", serde_json::to_string(&report)?);
    std::io::stdout().flush()?;
    // Hold until told to stop (stdin closed).
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    report.closed = Some(set.closed_by_server()? as u64);
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_heads_parse() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\ncontent-length: 3\r\n\r\nok\n";
        assert_eq!(status_of(r), Some(200));
        assert_eq!(parse_head(r), Some((r.len() - 3, Some(3))));
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\n"), None);
        assert_eq!(status_of(b"HTTP/1.1 503 Busy\r\n"), Some(503));
    }

    #[test]
    fn h2_frames_and_request_block() {
        let f = h2_frame(4, 1, 0, &[]);
        assert_eq!(f, [0, 0, 0, 4, 1, 0, 0, 0, 0]);
        let b = h2_request_block();
        assert_eq!(&b[..3], &[0x82, 0x87, 0x04]);
        assert_eq!(b[3] as usize, "/health".len());
    }

    #[test]
    fn client_config_offers_tls13_x25519_only() {
        let cfg = client_config("h2", true, "TLS_AES_256_GCM_SHA384").unwrap();
        assert_eq!(cfg.alpn_protocols, vec![b"h2".to_vec()]);
        let suites = &cfg.crypto_provider().cipher_suites;
        assert_eq!(suites.len(), 1);
        assert_eq!(suite_name(suites[0]), "TLS_AES_256_GCM_SHA384");
        assert!(client_config("h2", true, "TLS_NULL").is_err());
        assert_eq!(cfg.crypto_provider().kx_groups.len(), 1);
        assert_eq!(
            cfg.crypto_provider().kx_groups[0].name(),
            rustls::NamedGroup::X25519
        );
    }
}
