//! HPACK (RFC 7541): field compression for HTTP/2 header blocks.
//!
//! Written for the proxied path, where decoding a request's fields and
//! encoding them again is per-request work: the [`Decoder`] hands out
//! borrowed [`Field`]s (no allocation per field), Huffman strings decode
//! through a nibble state machine built at compile time, and the
//! [`Encoder`] finds dynamic entries through hash maps with a cheap
//! hasher instead of scanning the table.
//!
//! - `huffman`: the static Huffman code (§5.2, Appendix B);
//! - `table`: the static table (Appendix A) and the dynamic table (§4);
//! - `decoder`, `encoder`: header block representations (§6).

mod decoder;
mod encoder;
mod huffman;
mod table;

use std::fmt;

pub use decoder::Decoder;
pub use encoder::Encoder;
pub use table::{static_entry, static_name_index};

/// One decoded field. The slices borrow the block, the static table, the
/// dynamic table or the decoder's scratch buffers: valid during `emit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    pub name: &'a [u8],
    pub value: &'a [u8],
    /// Index (1..=61) of a static-table entry whose NAME equals `name`,
    /// when the decoder knows it cheaply: the field referenced a static
    /// name, or a dynamic entry that was inserted with a static name
    /// reference (or with a literal name that is a static one). Always
    /// the first index with that name (`:method` is 2 for POST too), so
    /// the caller can map it to a predefined header-name constant without
    /// parsing the name.
    pub static_name: Option<u8>,
    /// Sent as "never indexed" (RFC 7541 §6.2.3): must be re-encoded the
    /// same way when forwarded.
    pub never_index: bool,
}

/// Why a header block could not be decoded. All are COMPRESSION_ERROR
/// for the caller (a connection error, RFC 9113 §4.3): the dynamic table
/// can no longer be trusted to match the peer's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The block ends inside a representation.
    Truncated,
    /// An integer is larger than 2^32 - 1 or has too many octets (§5.1).
    IntegerOverflow,
    /// Index 0, or past the end of the static + dynamic tables (§2.3.3).
    BadIndex,
    /// A string's length goes past the end of the block.
    StringTooLong,
    /// A Huffman string contains the EOS symbol (§5.2).
    HuffmanEos,
    /// A Huffman string ends with more than 7 bits of padding (§5.2).
    HuffmanPaddingTooLong,
    /// A Huffman string's padding is not the start of EOS (all ones).
    HuffmanPaddingNotOnes,
    /// A dynamic table size update above our SETTINGS_HEADER_TABLE_SIZE
    /// (§6.3).
    SizeUpdateTooLarge,
    /// A dynamic table size update after the first field of the block
    /// (§4.2).
    SizeUpdateNotAtStart,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DecodeError::Truncated => "HPACK: header block truncated",
            DecodeError::IntegerOverflow => "HPACK: integer too large",
            DecodeError::BadIndex => "HPACK: invalid table index",
            DecodeError::StringTooLong => "HPACK: string longer than the header block",
            DecodeError::HuffmanEos => "HPACK: EOS symbol in a Huffman string",
            DecodeError::HuffmanPaddingTooLong => "HPACK: Huffman padding longer than 7 bits",
            DecodeError::HuffmanPaddingNotOnes => "HPACK: Huffman padding is not all ones",
            DecodeError::SizeUpdateTooLarge => "HPACK: table size update above the limit",
            DecodeError::SizeUpdateNotAtStart => "HPACK: table size update after the first field",
        })
    }
}

impl std::error::Error for DecodeError {}

/// The body of the `hpack_decode` cargo-fuzz target: arbitrary blocks
/// through one [`Decoder`] must never panic, and every block it accepts,
/// re-encoded by an [`Encoder`], must decode to the same fields.
///
/// Layout: byte 0 sets the decoder's limit (× 32 bytes), byte 1 the
/// re-encoding peer's table size (× 32); then blocks, each a length byte
/// (low 7 bits: the block's length; top bit: a byte follows that changes
/// the re-encoding peer's table size, × 32, before the block) and that
/// many bytes.
#[doc(hidden)]
pub fn fuzz_hpack(data: &[u8]) {
    fuzz_blocks(data);
}

/// [`fuzz_hpack`], returning how many blocks decoded and round-tripped.
fn fuzz_blocks(data: &[u8]) -> usize {
    type Owned = (Vec<u8>, Vec<u8>, Option<u8>, bool);
    let (Some(&a), Some(&b)) = (data.first(), data.get(1)) else {
        return 0;
    };
    let limit = usize::from(a) * 32;
    let mut decoder = Decoder::new(limit);
    let peer_size = usize::from(b) * 32;
    let mut encoder = Encoder::new();
    encoder.set_peer_max_table_size(peer_size);
    let mut redecoder = Decoder::new(peer_size);

    let mut rest = &data[2..];
    let mut fields: Vec<Owned> = Vec::new();
    let mut again: Vec<Owned> = Vec::new();
    let mut out = Vec::new();
    let mut done = 0;
    while let Some((&head, mut tail)) = rest.split_first() {
        let mut resize = None;
        if head & 0x80 != 0 {
            let Some((&size, t)) = tail.split_first() else {
                return done;
            };
            resize = Some(usize::from(size) * 32);
            tail = t;
        }
        let len = usize::from(head & 0x7f).min(tail.len());
        let (block, after) = tail.split_at(len);
        rest = after;

        fields.clear();
        let result = decoder.decode(block, |f| {
            if let Some(s) = f.static_name {
                assert_eq!(static_entry(s).map(|e| e.0), Some(f.name));
            }
            fields.push((
                f.name.to_vec(),
                f.value.to_vec(),
                f.static_name,
                f.never_index,
            ));
        });
        assert!(decoder.table_size() <= limit);
        if result.is_err() {
            // A connection error: the table is out of sync from now on.
            return done;
        }

        if let Some(size) = resize {
            // The peer's setting changed between blocks.
            encoder.set_peer_max_table_size(size);
            redecoder.set_max_table_size(size);
        }
        out.clear();
        encoder.begin_block(&mut out);
        for (name, value, static_name, never_index) in &fields {
            match (*never_index, *static_name) {
                (true, _) => encoder.encode_never_indexed(name, value, &mut out),
                (false, Some(s)) => encoder.encode_with_static_name(s, name, value, &mut out),
                (false, None) => encoder.encode(name, value, &mut out),
            }
        }
        again.clear();
        redecoder
            .decode(&out, |f| {
                again.push((
                    f.name.to_vec(),
                    f.value.to_vec(),
                    f.static_name,
                    f.never_index,
                ));
            })
            .expect("the encoder's output decodes");
        assert_eq!(again.len(), fields.len());
        for (x, y) in fields.iter().zip(&again) {
            assert_eq!((&x.0, &x.1), (&y.0, &y.1));
            // Never-indexed stays so; the policy adds it for secrets.
            assert_eq!(y.3, x.3 || encoder::policy_never_indexes(&x.0, &x.1));
            if x.2.is_some() {
                assert_eq!(x.2, y.2);
            }
        }
        assert_eq!(encoder.table_size(), redecoder.table_size());
        done += 1;
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn fuzz_body_runs_on_samples() {
        fuzz_hpack(&[]);
        fuzz_hpack(&[128]);
        // C.4 requests, then C.6 responses (with a table size of 256).
        let mut data = vec![128, 128];
        for b in [
            "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
            "8286 84be 5886 a8eb 1064 9cbf",
            "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
        ] {
            let b = hex(b);
            data.push(b.len() as u8);
            data.extend_from_slice(&b);
        }
        assert_eq!(fuzz_blocks(&data), 3);
        let mut data = vec![8, 0];
        for (i, b) in [
            "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 \
             2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
            "4883 640e ffc1 c0bf",
            // A size update, never-indexed, then a garbage block.
            "3f61 1008 7061 7373 776f 7264 0673 6563 7265 74",
            "ffff ffff ffff",
        ]
        .iter()
        .enumerate()
        {
            let b = hex(b);
            data.push(b.len() as u8 | 0x80);
            data.push([8, 2, 0, 128][i]);
            data.extend_from_slice(&b);
        }
        // The garbage block is an error.
        assert_eq!(fuzz_blocks(&data), 3);
        // The seeds of the fuzz target decode whole.
        for seed in [
            &include_bytes!("../../fuzz/seeds/rfc7541-c4-requests")[..],
            include_bytes!("../../fuzz/seeds/rfc7541-c6-responses"),
            include_bytes!("../../fuzz/seeds/rfc7541-c6-resized"),
        ] {
            assert_eq!(fuzz_blocks(seed), 3);
        }
        // Arbitrary bytes.
        let mut x = 0x1234_5678_u32;
        for _ in 0..200 {
            let data: Vec<u8> = (0..64)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            fuzz_hpack(&data);
        }
    }
}
