//! Shared by the integration tests: a guard that runs the backend binary and
//! kills it (by PID) when dropped, panics included, and a hand-written
//! HTTP/1.1 client over std's TcpStream.

#![allow(dead_code)] // each test binary uses its own part of this

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Backend {
    child: Child,
    /// One per --listen, in order, as printed.
    pub addrs: Vec<SocketAddr>,
}

impl Backend {
    /// `--listen 127.0.0.1:0` (and `--name test` unless named) plus `args`.
    pub fn start(args: &[&str]) -> Backend {
        let mut all = vec!["--listen", "127.0.0.1:0"];
        if !args.contains(&"--name") {
            all.extend(["--name", "test"]);
        }
        all.extend_from_slice(args);
        Backend::start_raw(&all)
    }

    /// Exactly `args`; waits for one "listening on" line per --listen.
    pub fn start_raw(args: &[&str]) -> Backend {
        let listeners = args.iter().filter(|a| **a == "--listen").count();
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice-test-backend"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn sluice-test-backend");
        let stdout = child.stdout.take().unwrap();
        // The guard exists before anything can panic.
        let mut backend = Backend {
            child,
            addrs: Vec::new(),
        };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = io::BufRead::lines(io::BufReader::new(stdout));
            while let Some(Ok(line)) = lines.next() {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(15);
        while backend.addrs.len() < listeners {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .expect("backend did not print 'listening on' in time");
            if let Some(a) = line.strip_prefix("listening on ") {
                backend
                    .addrs
                    .push(a.trim().parse().expect("listen address"));
            }
        }
        backend
    }

    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `sig` (e.g. "TERM") and waits up to 10 s for the exit.
    pub fn signal_and_wait(&mut self, sig: &str) -> ExitStatus {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(ok.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "backend did not exit on SIG{sig}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        // Child::kill signals this child's PID only.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `/bytes`' pattern.
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n as u64).map(|i| ((i * 31 + 7) % 251) as u8).collect()
}

/// Arbitrary but reproducible bytes (xorshift), so echo tests see every
/// byte value.
pub fn noise(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub trailers: Vec<(String, String)>,
    pub chunked: bool,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

/// One HTTP/1.1 connection, with the bytes read past the last response kept.
pub struct H1 {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl H1 {
    pub fn connect(addr: SocketAddr) -> H1 {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        H1 {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn head_bytes(
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body_len: Option<usize>,
    ) -> Vec<u8> {
        let mut h = format!("{method} {path} HTTP/1.1\r\nhost: test\r\n");
        for (n, v) in headers {
            h.push_str(&format!("{n}: {v}\r\n"));
        }
        if let Some(n) = body_len {
            h.push_str(&format!("content-length: {n}\r\n"));
        }
        h.push_str("\r\n");
        h.into_bytes()
    }

    pub fn send(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) {
        let len = (!body.is_empty() || method == "POST").then_some(body.len());
        let mut req = Self::head_bytes(method, path, headers, len);
        req.extend_from_slice(body);
        self.stream.write_all(&req).unwrap();
    }

    pub fn get(&mut self, path: &str) -> Resp {
        self.request("GET", path, &[], b"")
    }

    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Resp {
        self.send(method, path, headers, body);
        self.read_response(method == "HEAD").expect("response")
    }

    fn fill(&mut self) -> io::Result<usize> {
        let mut tmp = [0u8; 64 * 1024];
        let n = self.stream.read(&mut tmp)?;
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(n)
    }

    fn line(&mut self) -> io::Result<String> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.drain(..i + 2);
                return Ok(line);
            }
            if self.fill()? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    fn exact(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() < n {
            if self.fill()? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// Status line and headers (1xx included: the caller decides).
    pub fn read_head(&mut self) -> io::Result<(u16, Vec<(String, String)>)> {
        let status_line = self.line()?;
        let mut parts = status_line.splitn(3, ' ');
        assert_eq!(
            parts.next(),
            Some("HTTP/1.1"),
            "status line {status_line:?}"
        );
        let status = parts
            .next()
            .and_then(|s| s.parse().ok())
            .expect("status code");
        let mut headers = Vec::new();
        loop {
            let line = self.line()?;
            if line.is_empty() {
                return Ok((status, headers));
            }
            let (n, v) = line.split_once(':').expect("header line");
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }

    /// Reads what is left until EOF (or an error such as a reset).
    pub fn read_to_end(&mut self) -> (Vec<u8>, io::Result<()>) {
        loop {
            match self.fill() {
                Ok(0) => return (std::mem::take(&mut self.buf), Ok(())),
                Ok(_) => {}
                Err(e) => return (std::mem::take(&mut self.buf), Err(e)),
            }
        }
    }

    pub fn read_response(&mut self, head_request: bool) -> io::Result<Resp> {
        let (status, headers) = self.read_head()?;
        let mut resp = Resp {
            status,
            headers,
            body: Vec::new(),
            trailers: Vec::new(),
            chunked: false,
        };
        if head_request || status == 204 || status == 304 {
            return Ok(resp);
        }
        if resp
            .header("transfer-encoding")
            .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
        {
            resp.chunked = true;
            loop {
                let size_line = self.line()?;
                let size = usize::from_str_radix(size_line.split(';').next().unwrap().trim(), 16)
                    .expect("chunk size");
                if size == 0 {
                    break;
                }
                resp.body.extend(self.exact(size)?);
                assert_eq!(self.exact(2)?, b"\r\n");
            }
            loop {
                let line = self.line()?;
                if line.is_empty() {
                    break;
                }
                let (n, v) = line.split_once(':').expect("trailer line");
                resp.trailers
                    .push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        } else if let Some(n) = resp.header("content-length") {
            let n = n.parse().expect("content-length");
            resp.body = self.exact(n)?;
        } else {
            let (body, res) = self.read_to_end();
            res?;
            resp.body = body;
        }
        Ok(resp)
    }

    /// True if the server closed the connection (EOF) within `wait`.
    pub fn closed_within(&mut self, wait: Duration) -> bool {
        self.stream.set_read_timeout(Some(wait)).unwrap();
        let r = self.fill();
        self.stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        matches!(r, Ok(0))
    }
}

/// Minimal h2 client plumbing over tokio.
pub mod h2c {
    use std::net::SocketAddr;

    use bytes::Bytes;
    use h2::client::SendRequest;
    use h2::RecvStream;
    use http::{HeaderMap, Request, Response};
    use tokio::net::TcpStream;
    use tokio::task::JoinHandle;

    pub async fn connect(
        addr: SocketAddr,
    ) -> (SendRequest<Bytes>, JoinHandle<Result<(), h2::Error>>) {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let (client, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
        (client, tokio::spawn(conn))
    }

    pub fn req(method: &str, path: &str) -> http::request::Builder {
        Request::builder()
            .method(method)
            .uri(format!("http://test{path}"))
    }

    /// Reads a whole body, handing window back as it goes.
    pub async fn body(body: &mut RecvStream) -> Result<Vec<u8>, h2::Error> {
        let mut out = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk?;
            let _ = body.flow_control().release_capacity(chunk.len());
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    pub struct Full {
        pub head: Response<()>,
        pub body: Vec<u8>,
        pub trailers: Option<HeaderMap>,
    }

    impl Full {
        pub fn header(&self, name: &str) -> Option<&str> {
            self.head.headers().get(name).map(|v| v.to_str().unwrap())
        }
    }

    /// Sends a request with `body` (none if empty) and reads the whole
    /// response.
    pub async fn exchange(
        client: &mut SendRequest<Bytes>,
        req: Request<()>,
        body: Bytes,
    ) -> Result<Full, h2::Error> {
        *client = client.clone().ready().await?;
        let (resp, mut send) = client.send_request(req, body.is_empty())?;
        if !body.is_empty() {
            // h2 buffers it and sends as the window opens.
            send.send_data(body, true)?;
        }
        let resp = resp.await?;
        let (head, mut recv) = resp.into_parts();
        let body = self::body(&mut recv).await?;
        let trailers = recv.trailers().await?;
        Ok(Full {
            head: Response::from_parts(head, ()),
            body,
            trailers,
        })
    }

    pub async fn get(client: &mut SendRequest<Bytes>, path: &str) -> Full {
        exchange(client, req("GET", path).body(()).unwrap(), Bytes::new())
            .await
            .expect("h2 GET")
    }
}
