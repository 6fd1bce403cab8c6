//! Invariant harness shared by the proptests and the cargo-fuzz target
//! `http_server`: arbitrary bytes, cut arbitrarily, fed to a [`ServerConn`]
//! as a poll loop would, with output drained through buffers of arbitrary
//! size. Panics if an invariant breaks.

use crate::{ServerConfig, ServerConn};

/// Fragments that make fuzzed input look like HTTP (a byte with the high
/// bit set in token mode stands for one of these).
const VOCAB: &[&[u8]] = &[
    b"GET ",
    b"HEAD ",
    b"POST ",
    b"PUT ",
    b"/health",
    b"/echo",
    b"/bytes/",
    b"1000",
    b"7",
    b"0",
    b"99999999999999999999",
    b" HTTP/1.1\r\n",
    b" HTTP/1.0\r\n",
    b" HTTP/2.0\r\n",
    b"Host: a\r\n",
    b"Content-Length: 5\r\n",
    b"Content-Length: 0\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: gzip\r\n",
    b"Connection: close\r\n",
    b"Connection: keep-alive\r\n",
    b"Expect: 100-continue\r\n",
    b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
    b"\r\n",
    b"\n",
    b"5\r\nhello\r\n",
    b"3;ext=\"v\"\r\nabc\r\n",
    b"ffffffffffffffffff\r\n",
    b"0\r\n\r\n",
    b"0\r\nTrailer: x\r\n\r\n",
    b"hello",
    b";",
];

/// Expands fuzz input: in token mode, bytes >= 0x80 become VOCAB entries.
fn expand(data: &[u8], tokens: bool, out: &mut Vec<u8>) {
    if !tokens {
        out.extend_from_slice(data);
        return;
    }
    for &b in data {
        if b >= 0x80 {
            out.extend_from_slice(VOCAB[usize::from(b & 0x7f) % VOCAB.len()]);
        } else {
            out.push(b);
        }
    }
}

/// Runs one connection over `data` (layout: 2 bytes of settings, then
/// pieces, each a length byte followed by that many bytes) and checks the
/// invariants of the API.
pub fn exercise(data: &[u8]) {
    let (settings, mut rest) = match data {
        [a, b, rest @ ..] => ((*a, *b), rest),
        _ => return,
    };
    let tokens = settings.0 & 1 != 0;
    let cfg = ServerConfig {
        max_header_bytes: [64, 300, 16 * 1024, 2000][usize::from(settings.0 >> 1 & 3)],
        max_request_line_bytes: [40, 8192][usize::from(settings.0 >> 3 & 1)],
        max_headers: [2, 64][usize::from(settings.0 >> 4 & 1)],
        max_body_bytes: [None, Some(10)][usize::from(settings.0 >> 5 & 1)],
        max_bytes_route: 100_000,
        pipeline_depth: [1, 32][usize::from(settings.0 >> 6 & 1)],
        out_buffer_bytes: [1, 16 * 1024][usize::from(settings.0 >> 7)],
        echo_buffer_bytes: [1, 3, 100, 32 * 1024][usize::from(settings.1 & 3)],
        fixed_date: Some(*b"Thu, 01 Jan 1970 00:00:00 GMT"),
        ..ServerConfig::default()
    };
    let out_size = [1, 2, 5, 17, 256, 4096, 65536, 3][usize::from(settings.1 >> 2 & 7)];
    let mem_bound = cfg.max_header_bytes
        + cfg.out_buffer_bytes
        + cfg.echo_buffer_bytes
        + 4 * 1024
        + std::mem::size_of::<ServerConn>();

    let mut conn = ServerConn::new(&cfg);
    let mut rx: Vec<u8> = Vec::new();
    let mut piece = Vec::new();
    let mut out = vec![0u8; out_size];
    let mut written: Vec<u8> = Vec::new();
    let mut total_out = 0usize;
    let mut closed = false;
    let mut step = |conn: &mut ServerConn, rx: &mut Vec<u8>, written: &mut Vec<u8>| {
        // One poll loop visit: read what it takes, write what it gives,
        // until neither moves.
        loop {
            let offered = rx.len();
            let took = conn.on_read(rx);
            assert!(took <= offered);
            rx.drain(..took);
            let n = conn.poll_write(&mut out);
            assert!(n <= out.len());
            assert!(
                n > 0 || !conn.wants_write(),
                "wants_write but wrote nothing"
            );
            if written.len() < 16 {
                written.extend_from_slice(&out[..n.min(16 - written.len())]);
            }
            total_out += n;
            assert!(
                conn.memory_usage() <= mem_bound,
                "memory {}",
                conn.memory_usage()
            );
            if took == 0 && n == 0 {
                break;
            }
        }
        // Nothing outside the connection can unblock it (no timers here):
        // input left over would be a deadlock.
        assert!(
            rx.is_empty(),
            "stuck with {} bytes unread: {conn:?}",
            rx.len()
        );
        if conn.should_close() {
            assert!(!conn.wants_write());
            assert_eq!(conn.poll_write(&mut [0u8; 64]), 0);
        }
    };
    while let [len, tail @ ..] = rest {
        let k = usize::from(*len).min(tail.len());
        piece.clear();
        expand(&tail[..k], tokens, &mut piece);
        rest = &tail[k..];
        rx.extend_from_slice(&piece);
        step(&mut conn, &mut rx, &mut written);
        if conn.should_close() {
            closed = true;
        }
    }
    // The FIN.
    conn.on_read_eof();
    step(&mut conn, &mut rx, &mut written);
    assert!(conn.should_close(), "not closing after EOF: {conn:?}");
    assert!(!conn.wants_read());
    if closed {
        assert_eq!(conn.stats().bytes_out, total_out as u64);
    }
    if !written.is_empty() {
        let want = b"HTTP/1.1 ";
        let k = written.len().min(want.len());
        assert_eq!(
            &written[..k],
            &want[..k],
            "output does not start with a status line"
        );
    }
    let st = conn.stats();
    assert_eq!(st.bytes_out, total_out as u64);
    assert!(st.responses() >= st.bad_requests);
}
