//! A small HTTP/1.1 client over the kernel's TCP for the interop tests:
//! the point is that the peer is the Linux stack, not another sluice.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use sha2::{Digest, Sha256};

/// What a response carried; the body is hashed as it streams in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub head: String,
    pub body_len: u64,
    pub sha256: [u8; 32],
}

/// sha256 of the /bytes/N body: byte i is i mod 251.
pub fn pattern_sha256(n: u64) -> [u8; 32] {
    let mut h = Sha256::new();
    let block: Vec<u8> = (0..251 * 64).map(|i| (i % 251) as u8).collect();
    let mut left = n;
    while left > 0 {
        let k = left.min(block.len() as u64) as usize;
        h.update(&block[..k]);
        left -= k as u64;
    }
    h.finalize().into()
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

pub fn connect(to: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&to, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connecting to {to}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
    s
}

/// Read one response (Content-Length bodies only, which is all sluice's
/// routes send for Content-Length requests).
pub fn read_response(s: &mut TcpStream) -> Response {
    read_response_slowly(s, None)
}

/// Like [`read_response`], sleeping `pause` before reading the body (the
/// peer's receive window closes meanwhile).
pub fn read_response_slowly(s: &mut TcpStream, pause: Option<Duration>) -> Response {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut byte).expect("reading a response head");
        assert_eq!(n, 1, "connection closed inside a response head: {head:?}");
        head.push(byte[0]);
        assert!(head.len() < 64 * 1024, "response head too long");
    }
    let head = String::from_utf8(head).expect("response head is not UTF-8");
    let status: u16 = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head}"));
    let len: u64 = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or_else(|| panic!("no Content-Length: {head}"));
    if let Some(p) = pause {
        std::thread::sleep(p);
    }
    let mut h = Sha256::new();
    let mut left = len;
    let mut buf = vec![0u8; 256 * 1024];
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        let n = s.read(&mut buf[..want]).expect("reading a response body");
        assert!(
            n > 0,
            "connection closed with {left} of {len} body bytes missing"
        );
        h.update(&buf[..n]);
        left -= n as u64;
    }
    Response {
        status,
        head,
        body_len: len,
        sha256: h.finalize().into(),
    }
}

pub fn get(s: &mut TcpStream, path: &str, close: bool) -> Response {
    let conn = if close { "Connection: close\r\n" } else { "" };
    write!(s, "GET {path} HTTP/1.1\r\nHost: sluice\r\n{conn}\r\n").expect("sending a request");
    read_response(s)
}

/// POST /echo with `body` written while the response is read on another
/// thread (a large echo cannot be written whole before reading).
pub fn post_echo(s: &mut TcpStream, body: &[u8]) -> Response {
    write!(
        s,
        "POST /echo HTTP/1.1\r\nHost: sluice\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .expect("sending a request head");
    let mut writer = s.try_clone().unwrap();
    let body = body.to_vec();
    let w = std::thread::spawn(move || writer.write_all(&body));
    let r = read_response(s);
    w.join().unwrap().expect("sending the request body");
    r
}

/// After `Connection: close`, the server closes: read must see EOF.
pub fn expect_eof(s: &mut TcpStream) {
    let mut b = [0u8; 16];
    match s.read(&mut b) {
        Ok(0) => {}
        Ok(n) => panic!("{n} unexpected bytes after the last response"),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
            panic!("the server reset instead of closing")
        }
        Err(e) => panic!("waiting for EOF: {e}"),
    }
}
