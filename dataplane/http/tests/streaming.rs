//! Pipelining, arbitrary splits, tiny buffers, backpressure and streaming
//! of large bodies in constant memory.

mod common;
use common::*;
use sluice_http::{ServerConfig, ServerConn};

/// A pipeline covering every route and both body framings.
const PIPELINE: &[u8] = b"GET /health HTTP/1.1\r\nHost: a\r\n\r\n\
GET /bytes/700 HTTP/1.1\r\nHost: a\r\n\r\n\
POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\nhello, world\
POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n10;x=\"y\"\r\n0123456789abcdef\r\n0\r\nT: 1\r\n\r\n\
HEAD /bytes/5 HTTP/1.1\r\nHost: a\r\n\r\n\
POST /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nxyz\
GET /health HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbody\
GET /health HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
const PIPELINE_HEAD: &[bool] = &[false, false, false, false, true, false, false, false];

fn check_pipeline(out: &[u8]) {
    let rs = parse_responses(out, PIPELINE_HEAD, false);
    let statuses: Vec<u16> = rs.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 100, 200, 200, 200]);
    assert_eq!(rs[0].body, b"ok\n");
    assert_eq!(rs[1].body, pattern(700));
    assert_eq!(rs[2].body, b"hello, world");
    assert!(!rs[2].chunked);
    assert_eq!(rs[3].body, b"abc0123456789abcdef");
    assert!(rs[3].chunked);
    assert_eq!(rs[4].header("content-length"), Some("5"));
    assert_eq!(rs[6].body, b"xyz");
    assert_eq!(rs[7].body, b"ok\n");
    assert_eq!(rs[8].header("connection"), Some("close"));
}

#[test]
fn pipeline_in_one_read() {
    let mut conn = ServerConn::new(&cfg());
    let out = drive(&mut conn, PIPELINE, &[], 65536, false);
    check_pipeline(&out);
    assert!(conn.should_close());
    assert_eq!(conn.stats().requests, 8);
    // Without chunked echo, the output does not depend on how input and
    // output are cut: compare bytes with requests answered one by one.
    let reqs: [&[u8]; 3] = [
        b"GET /health HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /bytes/3000 HTTP/1.1\r\nHost: a\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    ];
    let mut want = Vec::new();
    for r in reqs {
        want.extend_from_slice(&exchange(r).0);
    }
    let all = reqs.concat();
    for out_size in [1, 3, 100, 65536] {
        let mut conn = ServerConn::new(&cfg());
        assert_eq!(drive(&mut conn, &all, &[], out_size, false), want);
    }
}

#[test]
fn pipeline_split_at_every_byte() {
    for split in 0..=PIPELINE.len() {
        for out_size in [5, 4096] {
            let mut conn = ServerConn::new(&cfg());
            let out = drive(&mut conn, PIPELINE, &[split], out_size, false);
            check_pipeline(&out);
            assert!(conn.should_close(), "split {split}");
        }
    }
}

#[test]
fn pipeline_byte_at_a_time() {
    let every: Vec<usize> = (1..PIPELINE.len()).collect();
    for out_size in [1, 2, 7, 4096] {
        let mut conn = ServerConn::new(&cfg());
        let out = drive(&mut conn, PIPELINE, &every, out_size, false);
        check_pipeline(&out);
    }
}

#[test]
fn pipeline_three_way_splits() {
    let n = PIPELINE.len();
    for a in (0..n).step_by(7) {
        for b in (a..n).step_by(11) {
            let mut conn = ServerConn::new(&cfg());
            let out = drive(&mut conn, PIPELINE, &[a, b], 3, false);
            check_pipeline(&out);
        }
    }
}

#[test]
fn chunked_echo_tiny_output_buffers() {
    let mut req = b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    let mut body = Vec::new();
    for i in 0..40usize {
        let chunk: Vec<u8> = (0..i * 3 + 1).map(|j| (i * 7 + j) as u8).collect();
        req.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        req.extend_from_slice(&chunk);
        req.extend_from_slice(b"\r\n");
        body.extend_from_slice(&chunk);
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let splits: Vec<usize> = (0..req.len()).step_by(13).collect();
    for out_size in 1..=9 {
        for echo_buf in [1, 2, 5, 64, 32768] {
            let c = ServerConfig {
                echo_buffer_bytes: echo_buf,
                ..cfg()
            };
            let mut conn = ServerConn::new(&c);
            let out = drive(&mut conn, &req, &splits, out_size, false);
            let rs = parse_responses(&out, &[false], false);
            assert_eq!(rs.len(), 1);
            assert!(rs[0].chunked);
            assert_eq!(rs[0].body, body, "out {out_size} echo {echo_buf}");
            assert!(conn.is_idle());
        }
    }
}

#[test]
fn backpressure_while_streaming_bytes() {
    let mut conn = ServerConn::new(&cfg());
    let first = b"GET /bytes/100000 HTTP/1.1\r\nHost: a\r\n\r\n";
    let input = [&first[..], b"GET /health HTTP/1.1\r\nHost: a\r\n\r\n"].concat();
    assert_eq!(conn.on_read(&input), first.len());
    assert!(!conn.wants_read());
    assert!(conn.wants_write());
    assert_eq!(conn.on_read(&input[first.len()..]), 0);
    let mut buf = [0u8; 1000];
    let mut total = 0;
    while conn.wants_write() {
        total += conn.poll_write(&mut buf);
    }
    assert!(total > 100000);
    assert!(conn.wants_read());
    assert_eq!(
        conn.on_read(&input[first.len()..]),
        input.len() - first.len()
    );
}

#[test]
fn pipeline_depth_limits_buffered_responses() {
    let one = b"GET /health HTTP/1.1\r\nHost: a\r\n\r\n";
    let input = one.repeat(100);
    let c = ServerConfig {
        pipeline_depth: 4,
        ..cfg()
    };
    let mut conn = ServerConn::new(&c);
    assert_eq!(conn.on_read(&input), 4 * one.len());
    assert!(!conn.wants_read());
    let out = drive(&mut conn, &input[4 * one.len()..], &[], 100, false);
    assert_eq!(parse_responses(&out, &[], false).len(), 100);
    // The output buffer limit also stops parsing.
    let c = ServerConfig {
        out_buffer_bytes: 1000,
        ..cfg()
    };
    let mut conn = ServerConn::new(&c);
    let took = conn.on_read(&input);
    assert!(took < 20 * one.len() && took > 0, "{took}");
    assert!(conn.memory_usage() < 4096);
}

#[test]
fn echo_backpressure_and_constant_memory() {
    let body_len: usize = 8 << 20;
    let c = cfg();
    let mut conn = ServerConn::new(&c);
    let head = format!("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: {body_len}\r\n\r\n");
    assert_eq!(conn.on_read(head.as_bytes()), head.len());
    let piece: Vec<u8> = (0..65536u32).map(|i| (i * 31 % 256) as u8).collect();
    let mut sent = 0;
    let mut got = 0;
    let mut out = vec![0u8; 16384];
    let mut seen_head = false;
    let mut peak = 0;
    while sent < body_len || got < body_len {
        if sent < body_len {
            let off = sent % piece.len();
            let k = conn.on_read(&piece[off..(off + body_len - sent).min(piece.len())]);
            assert!(k <= c.echo_buffer_bytes);
            sent += k;
        }
        let n = conn.poll_write(&mut out);
        let mut data = &out[..n];
        if !seen_head {
            let end = data.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
            data = &data[end..];
            seen_head = true;
        }
        for (j, &b) in data.iter().enumerate() {
            assert_eq!(b, piece[(got + j) % 65536]);
        }
        got += data.len();
        peak = peak.max(conn.memory_usage());
    }
    assert!(conn.is_idle());
    assert!(peak < c.echo_buffer_bytes + 8192, "peak {peak}");
}

/// `GET /bytes/N` with a large N through a 64 KiB buffer: the pattern is
/// right everywhere and memory does not grow.
#[test]
fn bytes_one_gib_streamed_in_constant_memory() {
    let n: u64 = if cfg!(debug_assertions) {
        256 << 20
    } else {
        1 << 30
    };
    let mut conn = ServerConn::new(&cfg());
    let req = format!("GET /bytes/{n} HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(conn.on_read(req.as_bytes()), req.len());
    let mut buf = vec![0u8; 65536];
    // Reference computed independently of the server's table.
    let reference: Vec<u8> = (0..65536 + 251).map(|i: usize| (i % 251) as u8).collect();
    let first = conn.poll_write(&mut buf);
    let head_len = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(s(&buf[..head_len]).contains(&format!("Content-Length: {n}\r\n")));
    let mut pos: u64 = (first - head_len) as u64;
    assert_eq!(&buf[head_len..first], &reference[..first - head_len]);
    let mem = conn.memory_usage();
    loop {
        let k = conn.poll_write(&mut buf);
        if k == 0 {
            break;
        }
        let off = (pos % 251) as usize;
        assert!(
            buf[..k] == reference[off..off + k],
            "mismatch in [{pos}, {})",
            pos + k as u64
        );
        pos += k as u64;
        assert_eq!(conn.memory_usage(), mem);
    }
    assert_eq!(pos, n);
    assert!(conn.is_idle());
    assert!(mem < 4096, "{mem}");
}

#[test]
fn release_memory_when_idle() {
    let mut conn = ServerConn::new(&cfg());
    let base = conn.memory_usage();
    drive(
        &mut conn,
        b"GET /health HTTP/1.1\r\nHost: a\r\n\r\nGET /hea",
        &[20],
        4096,
        false,
    );
    assert!(conn.memory_usage() > base);
    conn.release_memory(); // not idle: a head is half read
    drive(
        &mut conn,
        b"lth HTTP/1.1\r\nHost: a\r\n\r\n",
        &[],
        4096,
        false,
    );
    assert!(conn.is_idle());
    conn.release_memory();
    assert_eq!(conn.memory_usage(), base);
}
