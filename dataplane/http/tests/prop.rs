//! Property tests: random request sequences against a model, and random
//! bytes against the API invariants.

mod common;
use common::*;
use proptest::prelude::*;
use sluice_http::{ServerConfig, ServerConn};

#[derive(Debug, Clone)]
enum Req {
    Health { head: bool },
    Bytes { n: u32, head: bool },
    EchoLen { body: Vec<u8>, expect: bool },
    EchoChunked { chunks: Vec<Vec<u8>>, expect: bool },
    HealthWithBody { body: Vec<u8> },
}

#[derive(Debug, Clone)]
enum Last {
    KeepAlive,
    Close,
    NotFound,
    BadMethod,
    Malformed,
}

fn req() -> impl Strategy<Value = Req> {
    let body = proptest::collection::vec(any::<u8>(), 0..300);
    prop_oneof![
        any::<bool>().prop_map(|head| Req::Health { head }),
        (0u32..5000, any::<bool>()).prop_map(|(n, head)| Req::Bytes { n, head }),
        (body.clone(), any::<bool>()).prop_map(|(body, expect)| Req::EchoLen { body, expect }),
        (
            proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..100), 0..6),
            any::<bool>()
        )
            .prop_map(|(chunks, expect)| Req::EchoChunked { chunks, expect }),
        body.prop_map(|body| Req::HealthWithBody { body }),
    ]
}

fn last() -> impl Strategy<Value = Last> {
    prop_oneof![
        Just(Last::KeepAlive),
        Just(Last::Close),
        Just(Last::NotFound),
        Just(Last::BadMethod),
        Just(Last::Malformed),
    ]
}

/// Serializes the requests; returns the bytes and the expected final
/// responses (status, body, answers HEAD) and the number of 100s.
/// An expected final response: status, body, answers a HEAD.
type Want = (u16, Vec<u8>, bool);

fn build(reqs: &[Req], last: &Last) -> (Vec<u8>, Vec<Want>, usize) {
    let mut b = Vec::new();
    let mut want = Vec::new();
    let mut continues = 0;
    for r in reqs {
        match r {
            Req::Health { head } => {
                b.extend_from_slice(if *head { b"HEAD" } else { b"GET" });
                b.extend_from_slice(b" /health HTTP/1.1\r\nHost: h\r\n\r\n");
                want.push((200, if *head { vec![] } else { b"ok\n".to_vec() }, *head));
            }
            Req::Bytes { n, head } => {
                b.extend_from_slice(if *head { b"HEAD" } else { b"GET" });
                b.extend_from_slice(format!(" /bytes/{n} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes());
                want.push((
                    200,
                    if *head { vec![] } else { pattern(*n as usize) },
                    *head,
                ));
            }
            Req::EchoLen { body, expect } => {
                b.extend_from_slice(
                    format!(
                        "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n",
                        body.len()
                    )
                    .as_bytes(),
                );
                if *expect {
                    b.extend_from_slice(b"Expect: 100-continue\r\n");
                    continues += usize::from(!body.is_empty());
                }
                b.extend_from_slice(b"\r\n");
                b.extend_from_slice(body);
                want.push((200, body.clone(), false));
            }
            Req::EchoChunked { chunks, expect } => {
                b.extend_from_slice(
                    b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n",
                );
                if *expect {
                    b.extend_from_slice(b"Expect: 100-continue\r\n");
                    continues += 1;
                }
                b.extend_from_slice(b"\r\n");
                for c in chunks {
                    b.extend_from_slice(format!("{:X};e=1\r\n", c.len()).as_bytes());
                    b.extend_from_slice(c);
                    b.extend_from_slice(b"\r\n");
                }
                b.extend_from_slice(b"0\r\nT: x\r\n\r\n");
                want.push((200, chunks.concat(), false));
            }
            Req::HealthWithBody { body } => {
                b.extend_from_slice(
                    format!(
                        "GET /health HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    )
                    .as_bytes(),
                );
                b.extend_from_slice(body);
                want.push((200, b"ok\n".to_vec(), false));
            }
        }
    }
    match last {
        Last::KeepAlive => {}
        Last::Close => {
            b.extend_from_slice(b"GET /health HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
            want.push((200, b"ok\n".to_vec(), false));
        }
        Last::NotFound => {
            b.extend_from_slice(b"GET /nope HTTP/1.1\r\nHost: h\r\n\r\n");
            want.push((404, b"404 Not Found\n".to_vec(), false));
        }
        Last::BadMethod => {
            b.extend_from_slice(b"PUT /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc");
            want.push((405, b"405 Method Not Allowed\n".to_vec(), false));
        }
        Last::Malformed => {
            b.extend_from_slice(b"GET /health HTTP/1.1\r\nHost: h\r\nBad Header\r\n\r\n");
            want.push((400, b"400 Bad Request\n".to_vec(), false));
        }
    }
    (b, want, continues)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_request_sequences(
        reqs in proptest::collection::vec(req(), 0..8),
        last in last(),
        splits in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
        out_size in prop_oneof![1usize..8, 8usize..300, Just(65536usize)],
        echo_buf in prop_oneof![1usize..10, Just(32768usize)],
        depth in 1usize..4,
    ) {
        let (input, want, continues) = build(&reqs, &last);
        let splits: Vec<usize> = splits.iter().map(|i| i.index(input.len() + 1)).collect();
        let c = ServerConfig { echo_buffer_bytes: echo_buf, pipeline_depth: depth, ..cfg() };
        let mut conn = ServerConn::new(&c);
        let out = drive(&mut conn, &input, &splits, out_size, false);
        let heads: Vec<bool> = want.iter().map(|w| w.2).collect();
        let got = parse_responses(&out, &heads, false);
        let finals: Vec<_> = got.iter().filter(|r| r.status >= 200).collect();
        prop_assert_eq!(got.len() - finals.len(), continues);
        prop_assert_eq!(finals.len(), want.len());
        for (r, w) in finals.iter().zip(&want) {
            prop_assert_eq!(r.status, w.0);
            prop_assert_eq!(&r.body, &w.1);
            if w.0 >= 400 {
                prop_assert_eq!(r.header("connection"), Some("close"));
            }
        }
        let closes = !matches!(last, Last::KeepAlive);
        prop_assert_eq!(conn.should_close(), closes);
        prop_assert_eq!(conn.is_idle(), !closes);
        prop_assert_eq!(conn.stats().requests as usize, want.len());
        prop_assert_eq!(conn.stats().bytes_in as usize, input.len());
    }

    #[test]
    fn random_bytes_keep_invariants(data in proptest::collection::vec(any::<u8>(), 0..2000)) {
        sluice_http::testing::exercise(&data);
    }

    #[test]
    fn random_tokens_keep_invariants(
        settings in any::<u8>(),
        rest in proptest::collection::vec(prop_oneof![any::<u8>(), 0x80u8..=0xff], 0..600),
    ) {
        let mut data = vec![settings | 1];
        data.extend_from_slice(&rest);
        sluice_http::testing::exercise(&data);
    }
}

/// The committed fuzz seeds pass the harness (and keep it honest: they must
/// produce responses).
#[test]
fn fuzz_seeds_keep_invariants() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let data = std::fs::read(e.unwrap().path()).unwrap();
        sluice_http::testing::exercise(&data);
        n += 1;
    }
    assert!(n >= 10);
}
