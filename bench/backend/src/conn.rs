//! One accepted connection: optional TLS handshake, then HTTP/1.1 or h2
//! depending on whether the client opens with the HTTP/2 preface.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::stats::inc;
use crate::Ctx;

pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the request handlers may want to know about their connection.
pub struct ConnInfo {
    pub id: u64,
    pub peer: SocketAddr,
    pub local: Option<SocketAddr>,
    pub tls: bool,
    pub alpn: Option<String>,
    /// The client presented a certificate (it was verified: --tls-client-ca).
    pub client_cert: bool,
    /// Its one `spiffe://` URI SAN, if it has exactly one.
    pub client_spiffe_id: Option<String>,
}

/// The byte stream under HTTP: plain TCP or TLS over TCP. An enum rather
/// than a trait object because /reset needs the TCP socket underneath.
pub enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Io {
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Io::Plain(s) => s,
            Io::Tls(s) => s.get_ref().0,
        }
    }
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// Gives h2 back the bytes the preface sniffing already read.
pub struct Rewind<T> {
    pre: Bytes,
    inner: T,
}

impl<T: AsyncRead + Unpin> AsyncRead for Rewind<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.pre.is_empty() {
            let n = this.pre.len().min(buf.remaining());
            buf.put_slice(&this.pre[..n]);
            this.pre.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Rewind<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The TLS flags.
pub struct TlsFiles<'a> {
    pub cert: &'a Path,
    pub key: &'a Path,
    /// `--tls-client-ca`: verify client certificates against these CAs.
    pub client_ca: Option<&'a Path>,
    /// `--tls-client-optional`: a client may also present none.
    pub client_optional: bool,
    /// `--tls-alpn`: comma-separated, or `none`.
    pub alpn: &'a str,
}

pub fn tls_acceptor(files: &TlsFiles<'_>) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (cert, key) = (files.cert, files.key);
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let alpn = parse_alpn(files.alpn)?;
    // The provider is named rather than taken from the process default, so
    // the build does not depend on which rustls features got unified in.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            let ca_certs = CertificateDer::pem_file_iter(ca)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("{}: {e}", ca.display()))?;
            let (added, _) = roots.add_parsable_certificates(ca_certs);
            if added == 0 {
                return Err(format!("{}: no usable CA certificate", ca.display()));
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            );
            let verifier = if files.client_optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|e| format!("{}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())?;
    config.alpn_protocols = alpn;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// `h2,http/1.1` → the protocols in order; `none` → no ALPN.
fn parse_alpn(list: &str) -> Result<Vec<Vec<u8>>, String> {
    if list == "none" {
        return Ok(Vec::new());
    }
    list.split(',')
        .map(|p| match p.trim() {
            "" => Err(format!("--tls-alpn {list:?}: empty protocol name")),
            p if p.len() > 255 => Err(format!("--tls-alpn: {p:?} is too long")),
            p => Ok(p.as_bytes().to_vec()),
        })
        .collect()
}

/// The one `spiffe://` URI SAN of a certificate; None for none or several.
fn spiffe_id(cert: &rustls::pki_types::CertificateDer<'_>) -> Option<String> {
    let parsed = webpki::EndEntityCert::try_from(cert).ok()?;
    let mut ids = parsed
        .valid_uri_names()
        .filter(|uri| uri.starts_with("spiffe://"));
    let id = ids.next()?;
    ids.next().is_none().then(|| id.to_owned())
}

pub async fn serve(tcp: TcpStream, peer: SocketAddr, ctx: Arc<Ctx>) {
    let id = ctx.conn_ids.fetch_add(1, Ordering::Relaxed) + 1;
    let _open = ctx.stats.open();
    // Responses are written in pieces; don't let Nagle hold the last one.
    let _ = tcp.set_nodelay(true);
    let local = tcp.local_addr().ok();
    let (mut io, alpn, (client_cert, client_spiffe_id)) = match &ctx.tls {
        None => (Io::Plain(tcp), None, (false, None)),
        Some(acceptor) => {
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => {
                    inc(&ctx.stats.connections_tls);
                    let alpn = s
                        .get_ref()
                        .1
                        .alpn_protocol()
                        .map(|p| String::from_utf8_lossy(p).into_owned());
                    // Present only when verified (--tls-client-ca).
                    let certs = s.get_ref().1.peer_certificates();
                    let client = (
                        certs.is_some(),
                        certs.and_then(<[_]>::first).and_then(spiffe_id),
                    );
                    (Io::Tls(Box::new(s)), alpn, client)
                }
                _ => {
                    inc(&ctx.stats.tls_handshake_failures);
                    return;
                }
            }
        }
    };
    let info = Arc::new(ConnInfo {
        id,
        peer,
        local,
        tls: ctx.tls.is_some(),
        alpn,
        client_cert,
        client_spiffe_id,
    });
    let mut buf = BytesMut::with_capacity(16 * 1024);
    // ALPN h2 still goes through the sniffing: it reads the same preface.
    match sniff(&mut io, &mut buf, ctx.keepalive_timeout()).await {
        Some(true) => {
            let io = Rewind {
                pre: buf.freeze(),
                inner: io,
            };
            crate::h2srv::serve(io, info, ctx.clone()).await
        }
        Some(false) => crate::h1::serve(io, buf, info, ctx.clone()).await,
        None => {}
    }
}

/// Reads until the bytes either are the HTTP/2 preface (`Some(true)`) or
/// stop matching it (`Some(false)`, HTTP/1.x); `None` if the client left or
/// stayed silent past the idle timeout.
async fn sniff(io: &mut Io, buf: &mut BytesMut, idle: Option<Duration>) -> Option<bool> {
    loop {
        let n = buf.len().min(H2_PREFACE.len());
        if buf[..n] != H2_PREFACE[..n] {
            return Some(false);
        }
        if n == H2_PREFACE.len() {
            return Some(true);
        }
        let waiting = buf.is_empty();
        let read = io.read_buf(buf);
        let got = match idle {
            Some(t) if waiting => tokio::time::timeout(t, read).await.ok()?,
            _ => read.await,
        };
        match got {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}
