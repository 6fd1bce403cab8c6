//! Arbitrary response bytes, cut into arbitrary pieces, through one
//! upstream ClientConn after a request (GET or HEAD): no panic, on_read
//! never takes more than offered, End comes at most once per request, and
//! a connection that failed is never reusable.
//!
//! Input layout: 1 byte of settings (bit 0: HEAD, bit 1: EOF at the end,
//! bits 2-3: how many requests to try in a row), then pieces, each a length
//! byte and that many bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_http::{BodyFraming, ClientConn, ClientEvent, ClientLimits};

fuzz_target!(|data: &[u8]| {
    let Some((&settings, mut rest)) = data.split_first() else {
        return;
    };
    let head = settings & 1 != 0;
    let eof = settings & 2 != 0;
    let requests = 1 + ((settings >> 2) & 3);
    let mut c = ClientConn::new(ClientLimits {
        max_head_bytes: 4096,
        max_trailer_bytes: 1024,
        ..ClientLimits::default()
    });
    let method: &[u8] = if head { b"HEAD" } else { b"GET" };
    let mut out = [0u8; 512];
    let mut failed = false;
    for _ in 0..requests {
        if !c.reusable() {
            break;
        }
        let mut req = Vec::new();
        req.extend_from_slice(method);
        req.extend_from_slice(b" / HTTP/1.1\r\nHost: f\r\n\r\n");
        if c.send_request(&req, BodyFraming::None, head).is_err() {
            break;
        }
        while c.poll_write(&mut out) > 0 {}
        let mut ends = 0;
        while let Some((&len, tail)) = rest.split_first() {
            let n = (len as usize).min(tail.len());
            let (piece, tail) = tail.split_at(n);
            rest = tail;
            let mut off = 0;
            while off < piece.len() {
                match c.on_read(&piece[off..], &mut |ev| {
                    if let ClientEvent::End = ev {
                        ends += 1;
                    }
                }) {
                    Ok(0) => break,
                    Ok(took) => {
                        assert!(took <= piece.len() - off);
                        off += took;
                    }
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
            }
            if failed || ends > 0 {
                break;
            }
        }
        assert!(ends <= 1, "End {ends} times for one request");
        if failed || ends == 0 {
            break;
        }
    }
    if eof && !failed {
        let _ = c.on_read_eof(&mut |_| {});
    }
    if failed {
        assert!(!c.reusable(), "a failed connection claims to be reusable");
    }
});
