//! Test driver and a small independent HTTP/1.1 response parser.
#![allow(dead_code)]

use sluice_http::{ServerConfig, ServerConn};

pub const DATE: &str = "Thu, 01 Jan 1970 00:00:00 GMT";

pub fn cfg() -> ServerConfig {
    ServerConfig {
        fixed_date: Some(*b"Thu, 01 Jan 1970 00:00:00 GMT"),
        ..ServerConfig::default()
    }
}

/// Feeds `input` in pieces at `splits` (offsets), draining output through a
/// buffer of `out_size` bytes after every call, as a poll loop would. Calls
/// `on_read_eof` at the end if `eof`. Returns everything written.
pub fn drive(
    conn: &mut ServerConn,
    input: &[u8],
    splits: &[usize],
    out_size: usize,
    eof: bool,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; out_size];
    let mut bounds: Vec<usize> = splits
        .iter()
        .copied()
        .filter(|&s| s > 0 && s < input.len())
        .collect();
    bounds.sort_unstable();
    bounds.push(input.len());
    let mut pos = 0;
    for &end in &bounds {
        // The caller's receive buffer holds input[pos..end] (and whatever
        // the connection did not take before).
        loop {
            let took = conn.on_read(&input[pos..end]);
            assert!(took <= end - pos);
            pos += took;
            let n = conn.poll_write(&mut buf);
            out.extend_from_slice(&buf[..n]);
            assert!(
                n > 0 || !conn.wants_write(),
                "wants_write but wrote nothing: {conn:?}"
            );
            if took == 0 && n == 0 {
                break;
            }
        }
        if pos < end {
            // Blocked with unread input: nothing else can unblock it.
            assert!(
                !conn.wants_read() || conn.should_close(),
                "stuck with wants_read at {pos}..{end}: {conn:?}"
            );
        }
    }
    if eof {
        if pos == input.len() {
            conn.on_read_eof();
        }
        loop {
            let n = conn.poll_write(&mut buf);
            out.extend_from_slice(&buf[..n]);
            if n == 0 {
                break;
            }
        }
    }
    out
}

/// One request sent in one piece, output drained through 64 KiB.
pub fn exchange(input: &[u8]) -> (Vec<u8>, ServerConn) {
    let mut conn = ServerConn::new(&cfg());
    let out = drive(&mut conn, input, &[], 65536, false);
    (out, conn)
}

pub fn s(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub chunked: bool,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn line(b: &[u8], pos: &mut usize) -> Option<String> {
    let rest = &b[*pos..];
    let i = rest.windows(2).position(|w| w == b"\r\n")?;
    *pos += i + 2;
    Some(String::from_utf8(rest[..i].to_vec()).expect("ascii"))
}

/// Parses consecutive responses; `head_only[i]` says the i-th final response
/// answers a HEAD (no body). Panics on anything malformed or truncated
/// unless `allow_truncated` (then returns what was complete).
pub fn parse_responses(b: &[u8], head_only: &[bool], allow_truncated: bool) -> Vec<Response> {
    let mut pos = 0;
    let mut out = Vec::new();
    let mut finals = 0;
    while pos < b.len() {
        let start = pos;
        let r = (|| {
            let status_line = line(b, &mut pos)?;
            assert!(status_line.starts_with("HTTP/1.1 "), "{status_line:?}");
            let status: u16 = status_line[9..12].parse().unwrap();
            let mut headers = Vec::new();
            loop {
                let l = line(b, &mut pos)?;
                if l.is_empty() {
                    break;
                }
                let (n, v) = l.split_once(": ").expect("header");
                headers.push((n.to_string(), v.to_string()));
            }
            let mut r = Response {
                status,
                headers,
                body: Vec::new(),
                chunked: false,
            };
            if status < 200 {
                return Some(r);
            }
            if head_only.get(finals).copied().unwrap_or(false) {
                return Some(r);
            }
            if let Some(cl) = r.header("content-length") {
                let cl: usize = cl.parse().unwrap();
                if b.len() - pos < cl {
                    return None;
                }
                r.body = b[pos..pos + cl].to_vec();
                pos += cl;
            } else {
                assert_eq!(r.header("transfer-encoding"), Some("chunked"));
                r.chunked = true;
                loop {
                    let size = usize::from_str_radix(&line(b, &mut pos)?, 16).unwrap();
                    if size == 0 {
                        assert_eq!(line(b, &mut pos)?, "");
                        break;
                    }
                    assert!(size > 0);
                    if b.len() - pos < size + 2 {
                        return None;
                    }
                    r.body.extend_from_slice(&b[pos..pos + size]);
                    pos += size;
                    assert_eq!(&b[pos..pos + 2], b"\r\n");
                    pos += 2;
                }
            }
            Some(r)
        })();
        match r {
            Some(r) => {
                if r.status >= 200 {
                    finals += 1;
                }
                out.push(r);
            }
            None => {
                assert!(
                    allow_truncated,
                    "truncated response at {start}: {:?}",
                    s(&b[start..])
                );
                break;
            }
        }
    }
    out
}

/// The expected `/bytes/N` body.
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}
