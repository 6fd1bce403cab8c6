//! The HPACK encoder (RFC 7541 §6) and its representation policy.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::huffman;
use super::table::{
    first_with_same_name, static_full_match, static_name_index, DynTable, ENTRY_OVERHEAD,
    STATIC_LEN,
};

/// The largest dynamic table we use, whatever the peer allows: 4096 (the
/// protocol default) holds a proxied request's or response's repeated
/// fields; a larger table costs memory per connection for little gain.
const MAX_TABLE_SIZE: usize = 4096;

/// Encodes an integer with an N-bit prefix (§5.1); `flags` holds the
/// representation's bits above the prefix.
#[inline]
pub(crate) fn encode_int(out: &mut Vec<u8>, flags: u8, prefix_bits: u32, value: usize) {
    let max = (1usize << prefix_bits) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    let mut rest = value - max;
    while rest >= 0x80 {
        out.push((rest as u8 & 0x7f) | 0x80);
        rest >>= 7;
    }
    out.push(rest as u8);
}

/// Encodes a string literal (§5.2), Huffman-coded (`huffman`) only when
/// that is strictly shorter (its length is computed first, in one pass).
#[inline]
pub(crate) fn encode_string(out: &mut Vec<u8>, s: &[u8], huffman: bool) {
    let huffman_len = if huffman {
        huffman::encoded_len(s)
    } else {
        usize::MAX
    };
    if huffman_len < s.len() {
        encode_int(out, 0x80, 7, huffman_len);
        huffman::encode(s, out);
    } else {
        encode_int(out, 0, 7, s.len());
        out.extend_from_slice(s);
    }
}

/// Multiply-rotate hash over 8-byte words (in the style of FxHash): a few
/// cycles per word where SipHash costs tens. Collision resistance is not
/// needed: the maps hold at most 128 entries (4096 / 32), every hit is
/// verified against the table's bytes, and a collision only costs a
/// missed compression opportunity.
#[inline]
fn hash_bytes(mut h: u64, bytes: &[u8]) -> u64 {
    const K: u64 = 0xf135_7aea_2e62_a9c5;
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(a)).wrapping_mul(K);
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut a = [0u8; 8];
        a[..rest.len()].copy_from_slice(rest);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(a)).wrapping_mul(K);
    }
    // The product's high bits are the well-mixed ones; hash maps index
    // buckets with the low bits.
    h.rotate_left(26)
}

#[inline]
fn name_hash(name: &[u8]) -> u64 {
    hash_bytes(name.len() as u64, name)
}

/// Hash of `(name, value)`, from the name's hash: the value's length is
/// mixed in so that the name/value boundary matters.
#[inline]
fn field_hash(name_hash: u64, value: &[u8]) -> u64 {
    hash_bytes(
        name_hash ^ (value.len() as u64).wrapping_mul(0x9e37_79b9),
        value,
    )
}

/// The maps' keys are already hashes: this hasher passes them through.
#[derive(Default)]
struct PassHasher(u64);

impl Hasher for PassHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0 = hash_bytes(self.0, bytes);
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Hash → insertion number of the newest dynamic entry with that hash.
type HashIndex = HashMap<u64, u64, BuildHasherDefault<PassHasher>>;

/// How the policy represents a field that matched no table entry fully.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Policy {
    /// Literal with incremental indexing (if it fits in half the table).
    Index,
    /// Literal without indexing: the value changes per message, indexing
    /// it would only churn the table.
    NoIndex,
    /// Literal never indexed: a secret (§7.1.3).
    Never,
}

// Static indices of the names the policy singles out.
const PATH: u8 = 4;
const AGE: u8 = 21;
const AUTHORIZATION: u8 = 23;
const CONTENT_LENGTH: u8 = 28;
const CONTENT_RANGE: u8 = 30;
const COOKIE: u8 = 32;
const DATE: u8 = 33;
const ETAG: u8 = 34;
const EXPIRES: u8 = 36;
const IF_MODIFIED_SINCE: u8 = 40;
const IF_NONE_MATCH: u8 = 41;
const LAST_MODIFIED: u8 = 44;
const LOCATION: u8 = 46;
const PROXY_AUTHORIZATION: u8 = 49;
const SET_COOKIE: u8 = 55;

/// Cookies shorter than this are small enough to be guessed by probing
/// the table (CRIME-style, §7.1.3): never indexed.
const SHORT_COOKIE: usize = 20;

#[inline]
fn policy(static_name: Option<u8>, name: &[u8], value_len: usize) -> Policy {
    match static_name {
        Some(AUTHORIZATION | PROXY_AUTHORIZATION | SET_COOKIE) => Policy::Never,
        Some(COOKIE) if value_len < SHORT_COOKIE => Policy::Never,
        Some(
            PATH | CONTENT_LENGTH | DATE | ETAG | LAST_MODIFIED | AGE | EXPIRES | IF_MODIFIED_SINCE
            | IF_NONE_MATCH | CONTENT_RANGE | LOCATION,
        ) => Policy::NoIndex,
        Some(_) => Policy::Index,
        None => match name {
            b"x-request-id" | b"traceparent" | b"tracestate" | b"grpc-timeout" => Policy::NoIndex,
            _ => Policy::Index,
        },
    }
}

/// Whether [`Encoder::encode`] sends `(name, value)` as never indexed:
/// lets the fuzz check tell the policy's choice from a decoding bug.
pub(crate) fn policy_never_indexes(name: &[u8], value: &[u8]) -> bool {
    let static_name = static_name_index(name);
    if let Some(first) = static_name {
        if static_full_match(first, value).is_some() {
            return false;
        }
    }
    policy(static_name, name, value.len()) == Policy::Never
}

/// Encodes header blocks for one connection direction.
///
/// Representation policy, in order: a full static match is Indexed; a
/// full dynamic match is Indexed; secrets are never indexed; fields whose
/// value changes per message are literals without indexing; everything
/// else is a literal with incremental indexing, unless it would take more
/// than half the table. The dynamic table is found by two hash maps
/// ((name, value) and name → newest entry) kept in sync with evictions.
/// In steady state nothing is allocated per field.
#[derive(Debug)]
pub struct Encoder {
    table: DynTable,
    by_field: HashIndex,
    by_name: HashIndex,
    /// The smallest and the latest table size since the last block, when
    /// the peer's setting changed: to be signaled by `begin_block`.
    pending: Option<(usize, usize)>,
    /// Huffman-code string literals when shorter (see `set_huffman`).
    huffman: bool,
}

impl Default for Encoder {
    fn default() -> Encoder {
        Encoder::new()
    }
}

impl Encoder {
    /// An encoder for a peer with the default table size (4096).
    pub fn new() -> Encoder {
        let entries = MAX_TABLE_SIZE / ENTRY_OVERHEAD;
        Encoder {
            table: DynTable::new(MAX_TABLE_SIZE),
            by_field: HashIndex::with_capacity_and_hasher(entries, Default::default()),
            by_name: HashIndex::with_capacity_and_hasher(entries, Default::default()),
            pending: None,
            huffman: true,
        }
    }

    /// Whether string literals are Huffman-coded when that is shorter (the
    /// default). Off, literals go raw: about a quarter more bytes on the
    /// wire and no coding cost, for a peer on a fast link (a backend in
    /// the same network).
    pub fn set_huffman(&mut self, on: bool) {
        self.huffman = on;
    }

    /// The peer's SETTINGS_HEADER_TABLE_SIZE. We use min(n, 4096) and emit
    /// a Dynamic Table Size Update at the start of the next block (if it
    /// shrank then grew before a block, the minimum first then the final
    /// value, as §4.2 requires).
    pub fn set_peer_max_table_size(&mut self, n: usize) {
        let n = n.min(MAX_TABLE_SIZE);
        self.pending = Some(match self.pending {
            Some((min, _)) => (min.min(n), n),
            None => (n, n),
        });
    }

    /// Current size of our dynamic table (the peer decoder's table has the
    /// same size once it has decoded what we wrote).
    pub fn table_size(&self) -> usize {
        self.table.size()
    }

    /// Must be called before the first field of each header block: writes
    /// pending size updates.
    pub fn begin_block(&mut self, out: &mut Vec<u8>) {
        let Some((min, last)) = self.pending.take() else {
            return;
        };
        if min < self.table.max_size() {
            encode_int(out, 0x20, 5, min);
            self.set_table_max(min);
        }
        if last != self.table.max_size() {
            encode_int(out, 0x20, 5, last);
            self.set_table_max(last);
        }
    }

    fn set_table_max(&mut self, n: usize) {
        let Encoder {
            table,
            by_field,
            by_name,
            ..
        } = self;
        table.set_max_size(n, |num, name, value| {
            forget(by_field, by_name, num, name, value)
        });
    }

    /// Encodes one field. `name` is lowercase already. Chooses the
    /// representation by the policy of [`Encoder`].
    pub fn encode(&mut self, name: &[u8], value: &[u8], out: &mut Vec<u8>) {
        let static_name = static_name_index(name);
        self.encode_field(static_name, name, value, out);
    }

    /// Same, for a field that must not be indexed by anyone (RFC 7541
    /// §6.2.3), e.g. forwarded never-indexed fields: always a literal
    /// never indexed, even if the table has it.
    pub fn encode_never_indexed(&mut self, name: &[u8], value: &[u8], out: &mut Vec<u8>) {
        let name_index = match static_name_index(name) {
            Some(s) => Some(usize::from(s)),
            None => self.find_name(name_hash(name), name),
        };
        literal(out, 0x10, 4, name_index, name, value, self.huffman);
    }

    /// Same as [`Encoder::encode`] with the static index of the name known
    /// (from `Field::static_name`): skips the name lookup.
    pub fn encode_with_static_name(
        &mut self,
        static_name: u8,
        name: &[u8],
        value: &[u8],
        out: &mut Vec<u8>,
    ) {
        debug_assert_eq!(
            super::static_entry(static_name).map(|e| e.0),
            Some(name),
            "static_name is not the index of name"
        );
        self.encode_field(Some(first_with_same_name(static_name)), name, value, out);
    }

    /// `static_name`: the first static index of the name, if any.
    #[inline]
    fn encode_field(
        &mut self,
        static_name: Option<u8>,
        name: &[u8],
        value: &[u8],
        out: &mut Vec<u8>,
    ) {
        if let Some(s) = static_name {
            if let Some(i) = static_full_match(s, value) {
                encode_int(out, 0x80, 7, usize::from(i));
                return;
            }
        }
        let static_index = static_name.map(usize::from);
        match policy(static_name, name, value.len()) {
            // These names are never inserted: no dynamic lookup.
            Policy::Never => literal(out, 0x10, 4, static_index, name, value, self.huffman),
            Policy::NoIndex => literal(out, 0x00, 4, static_index, name, value, self.huffman),
            Policy::Index => self.encode_indexable(static_index, name, value, out),
        }
    }

    fn encode_indexable(
        &mut self,
        static_index: Option<usize>,
        name: &[u8],
        value: &[u8],
        out: &mut Vec<u8>,
    ) {
        let nh = name_hash(name);
        let fh = field_hash(nh, value);
        if self.table.len() > 0 {
            if let Some(&n) = self.by_field.get(&fh) {
                if self.table.get_abs(n) == Some((name, value)) {
                    encode_int(out, 0x80, 7, self.dynamic_index(n));
                    return;
                }
            }
        }
        let size = name.len() + value.len() + ENTRY_OVERHEAD;
        if size.saturating_mul(2) > self.table.max_size() {
            // Not worth a place in the table: it would evict at least
            // half of it (or not fit at all).
            let name_index = static_index.or_else(|| self.find_name(nh, name));
            literal(out, 0x00, 4, name_index, name, value, self.huffman);
            return;
        }
        // The name index is taken before the insertion, as the decoder
        // resolves it (the named entry may be evicted by the insertion).
        let name_index = static_index.or_else(|| self.find_name(nh, name));
        literal(out, 0x40, 6, name_index, name, value, self.huffman);

        let Encoder {
            table,
            by_field,
            by_name,
            ..
        } = self;
        let inserted = table.insert(name, value, static_index.map(|s| s as u8), |n, nm, v| {
            forget(by_field, by_name, n, nm, v)
        });
        debug_assert!(inserted);
        let n = table.inserted() - 1;
        by_field.insert(fh, n);
        by_name.insert(nh, n);
    }

    /// HPACK index of the entry with insertion number `n`.
    #[inline]
    fn dynamic_index(&self, n: u64) -> usize {
        STATIC_LEN + (self.table.inserted() - n) as usize
    }

    /// HPACK index of the newest dynamic entry named `name`.
    #[inline]
    fn find_name(&self, nh: u64, name: &[u8]) -> Option<usize> {
        let &n = self.by_name.get(&nh)?;
        match self.table.get_abs(n) {
            Some((entry_name, _)) if entry_name == name => Some(self.dynamic_index(n)),
            _ => None,
        }
    }
}

/// Drops the maps' references to evicted entry `n`. A map keeps the
/// newest entry per key, and eviction goes oldest first, so a reference
/// to `n` means no newer entry has the key: the key goes.
fn forget(by_field: &mut HashIndex, by_name: &mut HashIndex, n: u64, name: &[u8], value: &[u8]) {
    let nh = name_hash(name);
    if by_name.get(&nh) == Some(&n) {
        by_name.remove(&nh);
    }
    let fh = field_hash(nh, value);
    if by_field.get(&fh) == Some(&n) {
        by_field.remove(&fh);
    }
}

/// A literal field representation (§6.2): `flags` and `prefix_bits`
/// select the kind, the name is by index when there is one.
#[inline]
fn literal(
    out: &mut Vec<u8>,
    flags: u8,
    prefix_bits: u32,
    name_index: Option<usize>,
    name: &[u8],
    value: &[u8],
    huffman: bool,
) {
    match name_index {
        Some(i) => encode_int(out, flags, prefix_bits, i),
        None => {
            out.push(flags);
            encode_string(out, name, huffman);
        }
    }
    encode_string(out, value, huffman);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc_int(prefix: u32, v: usize) -> Vec<u8> {
        let mut out = Vec::new();
        encode_int(&mut out, 0, prefix, v);
        out
    }

    /// RFC 7541 C.1.
    #[test]
    fn integer_examples() {
        assert_eq!(enc_int(5, 10), [0x0a]);
        assert_eq!(enc_int(5, 1337), [0x1f, 0x9a, 0x0a]);
        assert_eq!(enc_int(8, 42), [0x2a]);
        assert_eq!(enc_int(5, 31), [0x1f, 0x00]);
        assert_eq!(enc_int(7, 126), [0x7e]);
        assert_eq!(enc_int(7, 127), [0x7f, 0x00]);
        for prefix in 1..=8 {
            for v in [0, 1, 30, 31, 127, 128, 255, 1337, 65_535, u32::MAX as usize] {
                let out = enc_int(prefix, v);
                assert_eq!(
                    super::super::decoder::decode_int(&out, 0, prefix),
                    Ok((v, out.len()))
                );
            }
        }
    }

    #[test]
    fn policy_names_are_static_indices() {
        for (name, index) in [
            (&b":path"[..], PATH),
            (b"age", AGE),
            (b"authorization", AUTHORIZATION),
            (b"content-length", CONTENT_LENGTH),
            (b"content-range", CONTENT_RANGE),
            (b"cookie", COOKIE),
            (b"date", DATE),
            (b"etag", ETAG),
            (b"expires", EXPIRES),
            (b"if-modified-since", IF_MODIFIED_SINCE),
            (b"if-none-match", IF_NONE_MATCH),
            (b"last-modified", LAST_MODIFIED),
            (b"location", LOCATION),
            (b"proxy-authorization", PROXY_AUTHORIZATION),
            (b"set-cookie", SET_COOKIE),
        ] {
            assert_eq!(static_name_index(name), Some(index));
        }
        for name in [
            &b"x-request-id"[..],
            b"traceparent",
            b"tracestate",
            b"grpc-timeout",
        ] {
            assert_eq!(static_name_index(name), None);
            assert_eq!(policy(None, name, 5), Policy::NoIndex);
        }
        assert_eq!(policy(Some(COOKIE), b"cookie", 19), Policy::Never);
        assert_eq!(policy(Some(COOKIE), b"cookie", 20), Policy::Index);
        assert_eq!(policy(None, b"x-custom", 5), Policy::Index);
    }

    #[test]
    fn maps_follow_evictions() {
        let mut e = Encoder::new();
        e.set_peer_max_table_size(200);
        let mut out = Vec::new();
        e.begin_block(&mut out);
        for i in 0..100 {
            let v = format!("v{}", i % 7);
            e.encode(b"x-a", v.as_bytes(), &mut out);
            e.encode(b"x-b", v.as_bytes(), &mut out);
            assert!(e.table.size() <= 200);
            assert!(e.by_field.len() <= e.table.len());
            assert!(e.by_name.len() <= e.table.len());
            for (&h, &n) in e.by_field.iter() {
                let (name, value) = e.table.get_abs(n).expect("live entry");
                assert_eq!(field_hash(name_hash(name), value), h);
            }
        }
    }
}
