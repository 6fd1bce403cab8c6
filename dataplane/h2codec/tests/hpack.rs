//! HPACK against RFC 7541 Appendix C, its error cases, and encoder →
//! decoder round trips of random header blocks (proptest).

use proptest::prelude::*;
use sluice_h2codec::hpack::{static_entry, static_name_index, DecodeError, Decoder, Encoder};

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Owned {
    name: Vec<u8>,
    value: Vec<u8>,
    static_name: Option<u8>,
    never_index: bool,
}

fn decode(d: &mut Decoder, block: &[u8]) -> Result<Vec<Owned>, DecodeError> {
    let mut fields = Vec::new();
    d.decode(block, |f| {
        fields.push(Owned {
            name: f.name.to_vec(),
            value: f.value.to_vec(),
            static_name: f.static_name,
            never_index: f.never_index,
        })
    })?;
    Ok(fields)
}

fn pairs(fields: &[Owned]) -> Vec<(String, String)> {
    fields
        .iter()
        .map(|f| {
            (
                String::from_utf8(f.name.clone()).unwrap(),
                String::from_utf8(f.value.clone()).unwrap(),
            )
        })
        .collect()
}

fn want(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

// ---- C.2: single representations ----

#[test]
fn c2_1_literal_with_indexing() {
    let mut d = Decoder::new(4096);
    let f = decode(
        &mut d,
        &hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572"),
    )
    .unwrap();
    assert_eq!(pairs(&f), want(&[("custom-key", "custom-header")]));
    assert_eq!(d.table_size(), 55);
    // Now at index 62.
    let f = decode(&mut d, &[0xbe]).unwrap();
    assert_eq!(pairs(&f), want(&[("custom-key", "custom-header")]));
    assert_eq!(f[0].static_name, None);
}

#[test]
fn c2_2_literal_without_indexing() {
    let mut d = Decoder::new(4096);
    let f = decode(&mut d, &hex("040c 2f73 616d 706c 652f 7061 7468")).unwrap();
    assert_eq!(pairs(&f), want(&[(":path", "/sample/path")]));
    assert_eq!(f[0].static_name, Some(4));
    assert!(!f[0].never_index);
    assert_eq!(d.table_size(), 0);
}

#[test]
fn c2_3_literal_never_indexed() {
    let mut d = Decoder::new(4096);
    let block = hex("1008 7061 7373 776f 7264 0673 6563 7265 74");
    let f = decode(&mut d, &block).unwrap();
    assert_eq!(pairs(&f), want(&[("password", "secret")]));
    assert!(f[0].never_index);
    assert_eq!(f[0].static_name, None);
    assert_eq!(d.table_size(), 0);

    // Forwarded as never indexed (with Huffman strings, so not the same
    // bytes): decodes to the same field.
    let mut e = Encoder::new();
    let mut out = Vec::new();
    e.begin_block(&mut out);
    e.encode_never_indexed(b"password", b"secret", &mut out);
    let again = decode(&mut Decoder::new(4096), &out).unwrap();
    assert_eq!(again, f);
    assert_eq!(e.table_size(), 0);
}

#[test]
fn c2_4_indexed() {
    let mut d = Decoder::new(4096);
    let f = decode(&mut d, &[0x82]).unwrap();
    assert_eq!(pairs(&f), want(&[(":method", "GET")]));
    assert_eq!(f[0].static_name, Some(2));
    assert_eq!(d.table_size(), 0);
    // :method POST reports the first :method index too.
    let f = decode(&mut d, &[0x83]).unwrap();
    assert_eq!(f[0].static_name, Some(2));
}

// ---- C.3 / C.4: requests on one connection ----

const REQ1: &[(&str, &str)] = &[
    (":method", "GET"),
    (":scheme", "http"),
    (":path", "/"),
    (":authority", "www.example.com"),
];
const REQ2: &[(&str, &str)] = &[
    (":method", "GET"),
    (":scheme", "http"),
    (":path", "/"),
    (":authority", "www.example.com"),
    ("cache-control", "no-cache"),
];
const REQ3: &[(&str, &str)] = &[
    (":method", "GET"),
    (":scheme", "https"),
    (":path", "/index.html"),
    (":authority", "www.example.com"),
    ("custom-key", "custom-value"),
];

const C3: [&str; 3] = [
    "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
    "8286 84be 5808 6e6f 2d63 6163 6865",
    "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
];
const C4: [&str; 3] = [
    "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
    "8286 84be 5886 a8eb 1064 9cbf",
    "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
];

fn check_requests(blocks: [&str; 3]) {
    let mut d = Decoder::new(4096);
    for (block, (fields, size)) in blocks.iter().zip([(REQ1, 57), (REQ2, 110), (REQ3, 164)]) {
        let f = decode(&mut d, &hex(block)).unwrap();
        assert_eq!(pairs(&f), want(fields));
        assert_eq!(d.table_size(), size);
        // :authority comes from a dynamic entry inserted with a static
        // name reference in requests 2 and 3.
        assert_eq!(f[3].static_name, Some(1));
        assert!(f.iter().all(|f| !f.never_index));
    }
}

#[test]
fn c3_requests_without_huffman() {
    check_requests(C3);
}

#[test]
fn c4_requests_with_huffman() {
    check_requests(C4);
}

/// Our policy makes exactly the RFC's choices for these requests.
#[test]
fn c4_encoder_is_byte_exact() {
    let mut e = Encoder::new();
    let mut d = Decoder::new(4096);
    for (block, fields) in C4.iter().zip([REQ1, REQ2, REQ3]) {
        let mut out = Vec::new();
        e.begin_block(&mut out);
        for (n, v) in fields {
            e.encode(n.as_bytes(), v.as_bytes(), &mut out);
        }
        assert_eq!(out, hex(block));
        let f = decode(&mut d, &out).unwrap();
        assert_eq!(pairs(&f), want(fields));
        assert_eq!(e.table_size(), d.table_size());
    }
}

// ---- C.5 / C.6: responses with a 256-byte table, with evictions ----

const DATE1: &str = "Mon, 21 Oct 2013 20:13:21 GMT";
const DATE2: &str = "Mon, 21 Oct 2013 20:13:22 GMT";
const COOKIE: &str = "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1";

fn responses() -> [Vec<(String, String)>; 3] {
    [
        want(&[
            (":status", "302"),
            ("cache-control", "private"),
            ("date", DATE1),
            ("location", "https://www.example.com"),
        ]),
        want(&[
            (":status", "307"),
            ("cache-control", "private"),
            ("date", DATE1),
            ("location", "https://www.example.com"),
        ]),
        want(&[
            (":status", "200"),
            ("cache-control", "private"),
            ("date", DATE2),
            ("location", "https://www.example.com"),
            ("content-encoding", "gzip"),
            ("set-cookie", COOKIE),
        ]),
    ]
}

const C5: [&str; 3] = [
    "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 \
     2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 \
     6c65 2e63 6f6d",
    "4803 3330 37c1 c0bf",
    "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d \
     54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049 \
     5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e \
     3d31",
];
const C6: [&str; 3] = [
    "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 \
     2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
    "4883 640e ffc1 c0bf",
    "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab \
     77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f \
     9587 3160 65c0 03ed 4ee5 b106 3d50 07",
];

fn check_responses(blocks: [&str; 3]) {
    let mut d = Decoder::new(256);
    for (block, (fields, size)) in blocks
        .iter()
        .zip(responses().into_iter().zip([222, 222, 215]))
    {
        let f = decode(&mut d, &hex(block)).unwrap();
        assert_eq!(pairs(&f), fields);
        assert_eq!(d.table_size(), size);
    }
}

#[test]
fn c5_responses_without_huffman() {
    check_responses(C5);
}

#[test]
fn c6_responses_with_huffman() {
    check_responses(C6);
}

#[test]
fn c6_encoder_round_trip_with_256_byte_table() {
    let mut e = Encoder::new();
    e.set_peer_max_table_size(256);
    let mut d = Decoder::new(256);
    for (i, fields) in responses().iter().enumerate() {
        let mut out = Vec::new();
        e.begin_block(&mut out);
        if i == 0 {
            // Size update to 256: 001 11111, then 225.
            assert_eq!(out, [0x3f, 0xe1, 0x01]);
        } else {
            assert!(out.is_empty());
        }
        for (n, v) in fields {
            e.encode(n.as_bytes(), v.as_bytes(), &mut out);
        }
        let f = decode(&mut d, &out).unwrap();
        assert_eq!(&pairs(&f), fields);
        assert_eq!(e.table_size(), d.table_size());
        assert!(d.table_size() <= 256);
        // set-cookie is never indexed.
        for g in &f {
            assert_eq!(g.never_index, g.name == b"set-cookie");
        }
    }
    // :status 302 went in at the start (rule 5, 0x48), Huffman-coded.
    let mut e = Encoder::new();
    let mut out = Vec::new();
    e.encode(b":status", b"302", &mut out);
    assert_eq!(out, hex("4882 6402"));
}

// ---- Encoder policy ----

fn encode_one(e: &mut Encoder, name: &str, value: &str) -> Vec<u8> {
    let mut out = Vec::new();
    e.begin_block(&mut out);
    e.encode(name.as_bytes(), value.as_bytes(), &mut out);
    out
}

#[test]
fn encoder_static_matches() {
    let mut e = Encoder::new();
    assert_eq!(encode_one(&mut e, ":method", "GET"), [0x82]);
    assert_eq!(encode_one(&mut e, ":method", "POST"), [0x83]);
    assert_eq!(encode_one(&mut e, ":status", "200"), [0x88]);
    assert_eq!(encode_one(&mut e, ":status", "500"), [0x8e]);
    assert_eq!(encode_one(&mut e, ":path", "/"), [0x84]);
    assert_eq!(
        encode_one(&mut e, "accept-encoding", "gzip, deflate"),
        [0x90]
    );
    assert_eq!(encode_one(&mut e, "www-authenticate", ""), [0xbd]);
    let mut out = Vec::new();
    e.encode_with_static_name(3, b":method", b"GET", &mut out);
    e.encode_with_static_name(14, b":status", b"204", &mut out);
    assert_eq!(out, [0x82, 0x89]);
    assert_eq!(e.table_size(), 0);
}

#[test]
fn encoder_policy() {
    let mut e = Encoder::new();
    // Secrets: never indexed (0001 prefix), name by static index.
    let out = encode_one(&mut e, "authorization", "Bearer abc");
    assert_eq!(&out[..2], [0x1f, 0x08]);
    let out = encode_one(&mut e, "set-cookie", "a=b");
    assert_eq!(&out[..2], [0x1f, 0x28]);
    let out = encode_one(&mut e, "cookie", "session=short");
    assert_eq!(&out[..2], [0x1f, 0x11]);
    assert_eq!(e.table_size(), 0);
    // A long cookie is indexed (0x40 | 32).
    let long = "session=0123456789abcdef0123456789";
    assert_eq!(encode_one(&mut e, "cookie", long)[0], 0x60);
    assert_eq!(encode_one(&mut e, "cookie", long), [0xbe]);
    let after_cookie = e.table_size();
    // Per-message values: without indexing, name by static index.
    assert_eq!(encode_one(&mut e, ":path", "/a/b")[0], 0x04);
    assert_eq!(encode_one(&mut e, "content-length", "42")[0], 0x0f);
    assert_eq!(encode_one(&mut e, "date", DATE1)[..2], [0x0f, 0x12]);
    // ... or by literal name.
    let out = encode_one(&mut e, "x-request-id", "abc");
    assert_eq!(out[0], 0x00);
    assert_eq!(e.table_size(), after_cookie);
    // Everything else: incremental indexing, then indexed.
    let out = encode_one(&mut e, "x-custom", "1");
    assert_eq!(out[0], 0x40);
    assert_eq!(encode_one(&mut e, "x-custom", "1"), [0xbe]);
    // Same name, other value: name by dynamic index (62).
    assert_eq!(encode_one(&mut e, "x-custom", "2")[0], 0x40 | 62);
    assert_eq!(encode_one(&mut e, "x-custom", "1"), [0xbf]);
    // Larger than half the table: literal without indexing.
    let big = "x".repeat(2100);
    let size = e.table_size();
    assert_eq!(encode_one(&mut e, "x-big", &big)[0], 0x00);
    assert_eq!(e.table_size(), size);
    // Forwarded never-indexed field that the table has: still literal.
    let mut out = Vec::new();
    e.encode_never_indexed(b"x-custom", b"1", &mut out);
    assert_eq!(out[0], 0x1f);
    let mut out = Vec::new();
    e.encode_never_indexed(b":method", b"GET", &mut out);
    assert_eq!(out, [0x12, 0x03, b'G', b'E', b'T']);
}

#[test]
fn encoder_size_updates() {
    let mut e = Encoder::new();
    // Same as the default, or above our cap: nothing to signal.
    e.set_peer_max_table_size(4096);
    assert!(encode_one(&mut e, ":method", "GET") == [0x82]);
    e.set_peer_max_table_size(65536);
    assert!(encode_one(&mut e, ":method", "GET") == [0x82]);
    // Shrunk then grown before a block: the minimum, then the final.
    e.set_peer_max_table_size(100);
    e.set_peer_max_table_size(0);
    e.set_peer_max_table_size(3000);
    let mut out = Vec::new();
    e.begin_block(&mut out);
    let mut want = vec![0x20];
    want.extend_from_slice(&[0x3f, 0x99, 0x17]); // 3000 = 31 + 2969
    assert_eq!(out, want);
    // Table size 0: nothing is indexed.
    e.set_peer_max_table_size(0);
    let out = encode_one(&mut e, "x-custom", "1");
    assert_eq!(out[..2], [0x20, 0x00]);
    assert_eq!(e.table_size(), 0);
    let mut d = Decoder::new(0);
    let f = decode(&mut d, &out).unwrap();
    assert_eq!(pairs(&f), want_pairs("x-custom", "1"));
}

fn want_pairs(n: &str, v: &str) -> Vec<(String, String)> {
    vec![(n.to_string(), v.to_string())]
}

#[test]
fn shrinking_the_peer_table_evicts_on_both_sides() {
    let mut e = Encoder::new();
    let mut d = Decoder::new(4096);
    let mut out = Vec::new();
    e.begin_block(&mut out);
    for i in 0..20 {
        e.encode(format!("x-h{i:02}").as_bytes(), b"value", &mut out);
    }
    decode(&mut d, &out).unwrap();
    assert_eq!(d.table_size(), 20 * (5 + 5 + 32));
    e.set_peer_max_table_size(100);
    d.set_max_table_size(100);
    assert!(d.table_size() <= 100);
    let mut out = Vec::new();
    e.begin_block(&mut out);
    e.encode(b"x-h19", b"value", &mut out);
    assert_eq!(out[0], 0x3f); // size update first
    let f = decode(&mut d, &out).unwrap();
    assert_eq!(pairs(&f), want_pairs("x-h19", "value"));
    assert_eq!(e.table_size(), d.table_size());
}

// ---- Decoder errors ----

#[test]
fn decoder_errors() {
    let err = |limit: usize, block: &[u8]| decode(&mut Decoder::new(limit), block).unwrap_err();
    // Truncated integer (indexed, 7-bit prefix full, no continuation).
    assert_eq!(err(4096, &[0xff]), DecodeError::Truncated);
    assert_eq!(err(4096, &[0xff, 0x80]), DecodeError::Truncated);
    // Integer overflow.
    assert_eq!(
        err(4096, &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]),
        DecodeError::IntegerOverflow
    );
    // Index 0, and beyond the (empty) dynamic table.
    assert_eq!(err(4096, &[0x80]), DecodeError::BadIndex);
    assert_eq!(err(4096, &[0xbe]), DecodeError::BadIndex);
    assert_eq!(err(4096, &[0x7e, 0x01, b'a']), DecodeError::BadIndex);
    assert_eq!(err(4096, &[0x0f, 0x2f, 0x01, b'a']), DecodeError::BadIndex);
    // Size update above the limit (257 > 256), and after a field.
    assert_eq!(
        err(256, &[0x3f, 0xe2, 0x01]),
        DecodeError::SizeUpdateTooLarge
    );
    assert_eq!(err(4096, &[0x82, 0x20]), DecodeError::SizeUpdateNotAtStart);
    assert_eq!(
        err(4096, &[0x82, 0x3f, 0xe1, 0x01]),
        DecodeError::SizeUpdateNotAtStart
    );
    // Strings longer than the block, or missing.
    assert_eq!(err(4096, &[0x40, 0x05, b'a']), DecodeError::StringTooLong);
    assert_eq!(err(4096, &[0x04, 0x02, b'a']), DecodeError::StringTooLong);
    assert_eq!(err(4096, &[0x40]), DecodeError::Truncated);
    assert_eq!(err(4096, &[0x04]), DecodeError::Truncated);
    assert_eq!(err(4096, &[0x40, 0x01, b'a']), DecodeError::Truncated);
    // Bad Huffman strings.
    assert_eq!(
        err(4096, &[0x04, 0x81, 0xff]),
        DecodeError::HuffmanPaddingTooLong
    );
    assert_eq!(
        err(4096, &[0x04, 0x81, 0x1e]),
        DecodeError::HuffmanPaddingNotOnes
    );
    assert_eq!(
        err(4096, &[0x04, 0x84, 0xff, 0xff, 0xff, 0xff]),
        DecodeError::HuffmanEos
    );
    // Displayed.
    assert!(DecodeError::BadIndex.to_string().contains("index"));
}

#[test]
fn size_updates_at_the_start() {
    let mut d = Decoder::new(256);
    // Two updates (min then final), then a field.
    let f = decode(&mut d, &[0x20, 0x3f, 0xe1, 0x01, 0x82]).unwrap();
    assert_eq!(pairs(&f), want_pairs(":method", "GET"));
    // An update alone is a valid block.
    decode(&mut d, &[0x3f, 0x01]).unwrap();
    // Updating to 0 empties the table.
    decode(
        &mut d,
        &hex("3fe101 400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572"),
    )
    .unwrap();
    assert_eq!(d.table_size(), 55);
    decode(&mut d, &[0x20]).unwrap();
    assert_eq!(d.table_size(), 0);
    // After our limit shrinks, larger updates are refused.
    d.set_max_table_size(16);
    assert_eq!(
        decode(&mut d, &[0x3f, 0x02]).unwrap_err(),
        DecodeError::SizeUpdateTooLarge
    );
}

#[test]
fn entry_larger_than_the_table_empties_it() {
    let mut d = Decoder::new(64);
    // "a: b" (34) is inserted, then a field named after it (index 62)
    // whose size 1 + 40 + 32 > 64: the table is emptied, the field still
    // comes out with the name.
    let mut block = vec![0x40, 0x01, b'a', 0x01, b'b', 0x7e, 40];
    block.extend_from_slice(&[b'v'; 40]);
    let f = decode(&mut d, &block).unwrap();
    assert_eq!(f.len(), 2);
    assert_eq!(f[1].name, b"a");
    assert_eq!(f[1].value, vec![b'v'; 40]);
    assert_eq!(d.table_size(), 0);
}

#[test]
fn static_lookups() {
    assert_eq!(static_entry(2), Some((&b":method"[..], &b"GET"[..])));
    assert_eq!(static_entry(61), Some((&b"www-authenticate"[..], &b""[..])));
    assert_eq!(static_entry(0), None);
    assert_eq!(static_entry(62), None);
    assert_eq!(static_name_index(b":status"), Some(8));
    assert_eq!(static_name_index(b"user-agent"), Some(58));
    assert_eq!(static_name_index(b"x-user-agent"), None);
}

// ---- Round trips ----

fn name_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (1u8..=61).prop_map(|i| static_entry(i).unwrap().0.to_vec()),
        prop::sample::select(vec![
            "x-request-id",
            "traceparent",
            "authorization",
            "cookie",
            "set-cookie",
            ":path",
            "date",
            "x-custom",
            "x-forwarded-for",
            "",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        "[a-z][a-z0-9-]{0,24}".prop_map(String::into_bytes),
    ]
}

fn value_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        // A small pool, so that values repeat and hit the dynamic table.
        prop::sample::select(vec![
            "GET",
            "200",
            "/",
            "gzip",
            "no-cache",
            "1",
            "text/html"
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        "[ -~]{0,60}".prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..80),
        prop::collection::vec(any::<u8>(), 1500..2600),
    ]
}

fn field_strategy() -> impl Strategy<Value = (Vec<u8>, Vec<u8>, bool, bool)> {
    // (name, value, sent never-indexed, encoded with its static index)
    (
        name_strategy(),
        value_strategy(),
        prop::bool::weighted(0.1),
        any::<bool>(),
    )
}

fn size_strategy() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(0usize),
        0usize..400,
        Just(4096usize),
        1000usize..10_000
    ]
}

fn sensitive(name: &[u8], value: &[u8]) -> bool {
    matches!(
        name,
        b"authorization" | b"proxy-authorization" | b"set-cookie"
    ) || (name == b"cookie" && value.len() < 20)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn encoder_output_decodes_to_the_same_fields(
        blocks in prop::collection::vec(
            (prop::collection::vec(size_strategy(), 0..3), prop::collection::vec(field_strategy(), 0..14)),
            1..12,
        ),
    ) {
        let mut e = Encoder::new();
        let mut d = Decoder::new(4096);
        let mut limit = 4096;
        let mut out = Vec::new();
        for (sizes, fields) in &blocks {
            for &n in sizes {
                e.set_peer_max_table_size(n);
                d.set_max_table_size(n);
                limit = n;
            }
            out.clear();
            e.begin_block(&mut out);
            for (name, value, never, by_static) in fields {
                match (never, static_name_index(name)) {
                    (true, _) => e.encode_never_indexed(name, value, &mut out),
                    (false, Some(s)) if *by_static => e.encode_with_static_name(s, name, value, &mut out),
                    _ => e.encode(name, value, &mut out),
                }
            }
            let got = decode(&mut d, &out).unwrap();
            prop_assert_eq!(got.len(), fields.len());
            for (g, (name, value, never, _)) in got.iter().zip(fields) {
                prop_assert_eq!(&g.name, name);
                prop_assert_eq!(&g.value, value);
                if *never {
                    prop_assert!(g.never_index);
                } else if g.never_index {
                    prop_assert!(sensitive(name, value));
                }
                if let Some(s) = g.static_name {
                    prop_assert_eq!(static_entry(s).unwrap().0, &name[..]);
                }
            }
            prop_assert!(d.table_size() <= limit);
            prop_assert!(d.table_size() <= 4096);
            prop_assert_eq!(d.table_size(), e.table_size());
        }
    }

    #[test]
    fn decoder_never_panics_on_arbitrary_blocks(
        blocks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 1..6),
        limit in 0usize..5000,
    ) {
        let mut d = Decoder::new(limit);
        for b in &blocks {
            if decode(&mut d, b).is_err() {
                break;
            }
            prop_assert!(d.table_size() <= limit);
        }
    }
}

#[test]
fn without_huffman_literals_go_raw_and_still_decode() {
    let mut enc = Encoder::new();
    enc.set_huffman(false);
    let mut out = Vec::new();
    enc.begin_block(&mut out);
    // `user-agent` (static name 58), literal with incremental indexing,
    // value raw: H bit clear, length 4.
    enc.encode(b"user-agent", b"curl", &mut out);
    assert_eq!(out, [0x40 | 58, 0x04, b'c', b'u', b'r', b'l']);
    let mut dec = Decoder::new(4096);
    let mut got = Vec::new();
    dec.decode(&out, |f| got.push((f.name.to_vec(), f.value.to_vec())))
        .unwrap();
    assert_eq!(got, vec![(b"user-agent".to_vec(), b"curl".to_vec())]);
}
