//! The static Huffman code of RFC 7541 §5.2 (code table: Appendix B).
//!
//! Decoding runs a nibble-driven state machine instead of walking the code
//! tree one bit at a time: the states are the 256 internal nodes of the
//! tree, and for each state and each 4-bit input the table gives the next
//! state and at most one decoded symbol (every code is at least 5 bits
//! long, so 4 bits can finish at most one code). The table (256 × 16
//! steps of 4 bytes, 16 KiB: stays in L1) is computed by a `const fn` at
//! compile time from the code table below: no start-up cost, no lazy-init
//! check on the hot path. A step holds the next state already multiplied
//! by 16, so the loop's chain of dependent loads is one add per nibble.
//!
//! Encoding packs codes into a `u64` bit buffer and flushes 32 bits at a
//! time.

use super::DecodeError;

/// `(code, bit length)` of symbols 0..=255 and EOS (256), RFC 7541
/// Appendix B. The code is right-aligned (its last bit is bit 0).
pub(crate) const CODES: [(u32, u8); 257] = [
    // 0
    (0x1ff8, 13),
    (0x7fffd8, 23),
    (0xfffffe2, 28),
    (0xfffffe3, 28),
    (0xfffffe4, 28),
    (0xfffffe5, 28),
    (0xfffffe6, 28),
    (0xfffffe7, 28),
    // 8
    (0xfffffe8, 28),
    (0xffffea, 24),
    (0x3ffffffc, 30),
    (0xfffffe9, 28),
    (0xfffffea, 28),
    (0x3ffffffd, 30),
    (0xfffffeb, 28),
    (0xfffffec, 28),
    // 16
    (0xfffffed, 28),
    (0xfffffee, 28),
    (0xfffffef, 28),
    (0xffffff0, 28),
    (0xffffff1, 28),
    (0xffffff2, 28),
    (0x3ffffffe, 30),
    (0xffffff3, 28),
    // 24
    (0xffffff4, 28),
    (0xffffff5, 28),
    (0xffffff6, 28),
    (0xffffff7, 28),
    (0xffffff8, 28),
    (0xffffff9, 28),
    (0xffffffa, 28),
    (0xffffffb, 28),
    // 32 ' ' ! " # $ % & '
    (0x14, 6),
    (0x3f8, 10),
    (0x3f9, 10),
    (0xffa, 12),
    (0x1ff9, 13),
    (0x15, 6),
    (0xf8, 8),
    (0x7fa, 11),
    // 40 ( ) * + , - . /
    (0x3fa, 10),
    (0x3fb, 10),
    (0xf9, 8),
    (0x7fb, 11),
    (0xfa, 8),
    (0x16, 6),
    (0x17, 6),
    (0x18, 6),
    // 48 0 1 2 3 4 5 6 7
    (0x0, 5),
    (0x1, 5),
    (0x2, 5),
    (0x19, 6),
    (0x1a, 6),
    (0x1b, 6),
    (0x1c, 6),
    (0x1d, 6),
    // 56 8 9 : ; < = > ?
    (0x1e, 6),
    (0x1f, 6),
    (0x5c, 7),
    (0xfb, 8),
    (0x7ffc, 15),
    (0x20, 6),
    (0xffb, 12),
    (0x3fc, 10),
    // 64 @ A B C D E F G
    (0x1ffa, 13),
    (0x21, 6),
    (0x5d, 7),
    (0x5e, 7),
    (0x5f, 7),
    (0x60, 7),
    (0x61, 7),
    (0x62, 7),
    // 72 H I J K L M N O
    (0x63, 7),
    (0x64, 7),
    (0x65, 7),
    (0x66, 7),
    (0x67, 7),
    (0x68, 7),
    (0x69, 7),
    (0x6a, 7),
    // 80 P Q R S T U V W
    (0x6b, 7),
    (0x6c, 7),
    (0x6d, 7),
    (0x6e, 7),
    (0x6f, 7),
    (0x70, 7),
    (0x71, 7),
    (0x72, 7),
    // 88 X Y Z [ \ ] ^ _
    (0xfc, 8),
    (0x73, 7),
    (0xfd, 8),
    (0x1ffb, 13),
    (0x7fff0, 19),
    (0x1ffc, 13),
    (0x3ffc, 14),
    (0x22, 6),
    // 96 ` a b c d e f g
    (0x7ffd, 15),
    (0x3, 5),
    (0x23, 6),
    (0x4, 5),
    (0x24, 6),
    (0x5, 5),
    (0x25, 6),
    (0x26, 6),
    // 104 h i j k l m n o
    (0x27, 6),
    (0x6, 5),
    (0x74, 7),
    (0x75, 7),
    (0x28, 6),
    (0x29, 6),
    (0x2a, 6),
    (0x7, 5),
    // 112 p q r s t u v w
    (0x2b, 6),
    (0x76, 7),
    (0x2c, 6),
    (0x8, 5),
    (0x9, 5),
    (0x2d, 6),
    (0x77, 7),
    (0x78, 7),
    // 120 x y z { | } ~ DEL
    (0x79, 7),
    (0x7a, 7),
    (0x7b, 7),
    (0x7ffe, 15),
    (0x7fc, 11),
    (0x3ffd, 14),
    (0x1ffd, 13),
    (0xffffffc, 28),
    // 128
    (0xfffe6, 20),
    (0x3fffd2, 22),
    (0xfffe7, 20),
    (0xfffe8, 20),
    (0x3fffd3, 22),
    (0x3fffd4, 22),
    (0x3fffd5, 22),
    (0x7fffd9, 23),
    // 136
    (0x3fffd6, 22),
    (0x7fffda, 23),
    (0x7fffdb, 23),
    (0x7fffdc, 23),
    (0x7fffdd, 23),
    (0x7fffde, 23),
    (0xffffeb, 24),
    (0x7fffdf, 23),
    // 144
    (0xffffec, 24),
    (0xffffed, 24),
    (0x3fffd7, 22),
    (0x7fffe0, 23),
    (0xffffee, 24),
    (0x7fffe1, 23),
    (0x7fffe2, 23),
    (0x7fffe3, 23),
    // 152
    (0x7fffe4, 23),
    (0x1fffdc, 21),
    (0x3fffd8, 22),
    (0x7fffe5, 23),
    (0x3fffd9, 22),
    (0x7fffe6, 23),
    (0x7fffe7, 23),
    (0xffffef, 24),
    // 160
    (0x3fffda, 22),
    (0x1fffdd, 21),
    (0xfffe9, 20),
    (0x3fffdb, 22),
    (0x3fffdc, 22),
    (0x7fffe8, 23),
    (0x7fffe9, 23),
    (0x1fffde, 21),
    // 168
    (0x7fffea, 23),
    (0x3fffdd, 22),
    (0x3fffde, 22),
    (0xfffff0, 24),
    (0x1fffdf, 21),
    (0x3fffdf, 22),
    (0x7fffeb, 23),
    (0x7fffec, 23),
    // 176
    (0x1fffe0, 21),
    (0x1fffe1, 21),
    (0x3fffe0, 22),
    (0x1fffe2, 21),
    (0x7fffed, 23),
    (0x3fffe1, 22),
    (0x7fffee, 23),
    (0x7fffef, 23),
    // 184
    (0xfffea, 20),
    (0x3fffe2, 22),
    (0x3fffe3, 22),
    (0x3fffe4, 22),
    (0x7ffff0, 23),
    (0x3fffe5, 22),
    (0x3fffe6, 22),
    (0x7ffff1, 23),
    // 192
    (0x3ffffe0, 26),
    (0x3ffffe1, 26),
    (0xfffeb, 20),
    (0x7fff1, 19),
    (0x3fffe7, 22),
    (0x7ffff2, 23),
    (0x3fffe8, 22),
    (0x1ffffec, 25),
    // 200
    (0x3ffffe2, 26),
    (0x3ffffe3, 26),
    (0x3ffffe4, 26),
    (0x7ffffde, 27),
    (0x7ffffdf, 27),
    (0x3ffffe5, 26),
    (0xfffff1, 24),
    (0x1ffffed, 25),
    // 208
    (0x7fff2, 19),
    (0x1fffe3, 21),
    (0x3ffffe6, 26),
    (0x7ffffe0, 27),
    (0x7ffffe1, 27),
    (0x3ffffe7, 26),
    (0x7ffffe2, 27),
    (0xfffff2, 24),
    // 216
    (0x1fffe4, 21),
    (0x1fffe5, 21),
    (0x3ffffe8, 26),
    (0x3ffffe9, 26),
    (0xffffffd, 28),
    (0x7ffffe3, 27),
    (0x7ffffe4, 27),
    (0x7ffffe5, 27),
    // 224
    (0xfffec, 20),
    (0xfffff3, 24),
    (0xfffed, 20),
    (0x1fffe6, 21),
    (0x3fffe9, 22),
    (0x1fffe7, 21),
    (0x1fffe8, 21),
    (0x7ffff3, 23),
    // 232
    (0x3fffea, 22),
    (0x3fffeb, 22),
    (0x1ffffee, 25),
    (0x1ffffef, 25),
    (0xfffff4, 24),
    (0xfffff5, 24),
    (0x3ffffea, 26),
    (0x7ffff4, 23),
    // 240
    (0x3ffffeb, 26),
    (0x7ffffe6, 27),
    (0x3ffffec, 26),
    (0x3ffffed, 26),
    (0x7ffffe7, 27),
    (0x7ffffe8, 27),
    (0x7ffffe9, 27),
    (0x7ffffea, 27),
    // 248
    (0x7ffffeb, 27),
    (0xffffffe, 28),
    (0x7ffffec, 27),
    (0x7ffffed, 27),
    (0x7ffffee, 27),
    (0x7ffffef, 27),
    (0x7fffff0, 27),
    (0x3ffffee, 26),
    // 256 EOS
    (0x3fffffff, 30),
];

const EOS: u16 = 256;

/// A step of the decoding machine: taken on one nibble of input.
#[derive(Clone, Copy)]
struct Step {
    /// The state (internal tree node) after the nibble, times 16: the
    /// index of its first step in [`Machine::steps`].
    next: u16,
    /// The symbol completed within the nibble, when `flags & EMIT`.
    sym: u8,
    flags: u8,
}

/// A symbol was completed within the nibble.
const EMIT: u8 = 1;
/// The nibble completed the EOS code: an error inside a string (§5.2).
const FAIL: u8 = 2;

/// How a string may end in a given state: the bits since the last whole
/// symbol are the padding, which must be a prefix of EOS (all ones) no
/// longer than 7 bits (§5.2).
const END_OK: u8 = 0;
const END_TOO_LONG: u8 = 1;
const END_NOT_ONES: u8 = 2;

struct Machine {
    /// Step of state `s` on nibble `n` at `16 * s + n`.
    steps: [Step; 256 * 16],
    end: [u8; 256],
}

/// Marks a child link of the tree that points at a leaf (symbol) rather
/// than at an internal node.
const LEAF: u16 = 0x8000;

/// Builds the decoding machine from [`CODES`]: first the code tree (257
/// leaves, hence exactly 256 internal nodes, numbered from the root = 0),
/// then, for every node and nibble, the walk of those 4 bits.
const fn build_machine() -> Machine {
    // child[node][bit]: 0 = no child yet (the root is never a child),
    // LEAF | symbol, or an internal node number.
    let mut child = [[0u16; 2]; 256];
    let mut depth = [0u8; 256];
    let mut all_ones = [true; 256];
    let mut nodes = 1usize;
    let mut sym = 0usize;
    while sym < 257 {
        let (code, len) = CODES[sym];
        let mut node = 0usize;
        let mut i = len;
        while i > 1 {
            i -= 1;
            let bit = ((code >> i) & 1) as usize;
            if child[node][bit] == 0 {
                assert!(nodes < 256, "the code has 257 symbols: 256 inner nodes");
                child[node][bit] = nodes as u16;
                depth[nodes] = depth[node] + 1;
                all_ones[nodes] = all_ones[node] && bit == 1;
                nodes += 1;
            }
            assert!(child[node][bit] & LEAF == 0, "the code is prefix-free");
            node = child[node][bit] as usize;
        }
        let bit = (code & 1) as usize;
        assert!(child[node][bit] == 0, "the code is prefix-free");
        child[node][bit] = LEAF | sym as u16;
        sym += 1;
    }
    assert!(nodes == 256, "the code is complete");

    let mut steps = [Step {
        next: 0,
        sym: 0,
        flags: 0,
    }; 256 * 16];
    let mut end = [END_OK; 256];
    let mut state = 0usize;
    while state < 256 {
        end[state] = if !all_ones[state] {
            END_NOT_ONES
        } else if depth[state] > 7 {
            END_TOO_LONG
        } else {
            END_OK
        };
        let mut nibble = 0usize;
        while nibble < 16 {
            let mut node = state;
            let mut out = 0u8;
            let mut flags = 0u8;
            let mut b = 4;
            while b > 0 {
                b -= 1;
                let link = child[node][(nibble >> b) & 1];
                if link & LEAF != 0 {
                    if link & !LEAF == EOS {
                        flags |= FAIL;
                    } else {
                        out = (link & !LEAF) as u8;
                        flags |= EMIT;
                    }
                    node = 0;
                } else {
                    node = link as usize;
                }
            }
            steps[state * 16 + nibble] = Step {
                next: (node * 16) as u16,
                sym: out,
                flags,
            };
            nibble += 1;
        }
        state += 1;
    }
    Machine { steps, end }
}

static MACHINE: Machine = build_machine();

/// Appends the Huffman decoding of `src` to `dst`.
pub(crate) fn decode(src: &[u8], dst: &mut Vec<u8>) -> Result<(), DecodeError> {
    // The shortest code is 5 bits: at most 8/5 output bytes per input
    // byte, so one reservation covers the whole string.
    dst.reserve(src.len() * 8 / 5 + 1);
    let steps = &MACHINE.steps;
    // 16 × the current state.
    let mut at = 0usize;
    for &byte in src {
        for nibble in [byte >> 4, byte & 0x0f] {
            let step = steps[at | usize::from(nibble)];
            if step.flags != 0 {
                if step.flags & FAIL != 0 {
                    return Err(DecodeError::HuffmanEos);
                }
                dst.push(step.sym);
            }
            at = usize::from(step.next);
        }
    }
    match MACHINE.end[at / 16] {
        END_OK => Ok(()),
        END_TOO_LONG => Err(DecodeError::HuffmanPaddingTooLong),
        _ => Err(DecodeError::HuffmanPaddingNotOnes),
    }
}

/// Length in bytes of the Huffman encoding of `src` (with its padding):
/// lets the encoder pick the shorter form before writing anything.
#[inline]
pub(crate) fn encoded_len(src: &[u8]) -> usize {
    let bits: usize = src.iter().map(|&b| CODES[b as usize].1 as usize).sum();
    bits.div_ceil(8)
}

/// Appends the Huffman encoding of `src` to `dst`, padded with the most
/// significant bits of EOS (ones).
pub(crate) fn encode(src: &[u8], dst: &mut Vec<u8>) {
    dst.reserve(encoded_len(src));
    // The low `n` bits of `acc` are pending output; `n` stays below 32
    // between symbols and codes are at most 30 bits, so `acc` never
    // loses a pending bit (bits shifted out at the top were written).
    let mut acc = 0u64;
    let mut n = 0u32;
    for &b in src {
        let (code, len) = CODES[b as usize];
        acc = (acc << len) | u64::from(code);
        n += u32::from(len);
        if n >= 32 {
            n -= 32;
            dst.extend_from_slice(&((acc >> n) as u32).to_be_bytes());
        }
    }
    if n > 0 {
        let pad = (8 - n % 8) % 8;
        acc = (acc << pad) | ((1u64 << pad) - 1);
        n += pad;
        while n > 0 {
            n -= 8;
            dst.push((acc >> n) as u8);
        }
    }
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

    /// The Appendix B code is canonical: sorted by (length, symbol), each
    /// code is the previous one plus one, shifted to its length. Checking
    /// that catches a typo in any code or length of the table.
    #[test]
    fn code_table_is_canonical_and_complete() {
        let mut order: Vec<usize> = (0..257).collect();
        order.sort_by_key(|&s| (CODES[s].1, s));
        let mut expect = 0u64;
        let mut prev_len = CODES[order[0]].1;
        for &s in &order {
            let (code, len) = CODES[s];
            expect <<= len - prev_len;
            prev_len = len;
            assert_eq!(u64::from(code), expect, "symbol {s}");
            expect += 1;
        }
        // Complete (Kraft sum of 1): the last code is all ones.
        assert_eq!(expect, 1 << prev_len);
        assert_eq!(CODES[256], (0x3fff_ffff, 30));
    }

    /// RFC 7541 Appendix C.4 and C.6 strings.
    const VECTORS: &[(&str, &str)] = &[
        ("www.example.com", "f1e3 c2e5 f23a 6ba0 ab90 f4ff"),
        ("no-cache", "a8eb 1064 9cbf"),
        ("custom-key", "25a8 49e9 5ba9 7d7f"),
        ("custom-value", "25a8 49e9 5bb8 e8b4 bf"),
        ("302", "6402"),
        ("307", "640e ff"),
        ("private", "aec3 771a 4b"),
        (
            "Mon, 21 Oct 2013 20:13:21 GMT",
            "d07a be94 1054 d444 a820 0595 040b 8166 e082 a62d 1bff",
        ),
        (
            "https://www.example.com",
            "9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3",
        ),
        ("gzip", "9bd9 ab"),
        (
            "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1",
            "94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 \
             ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07",
        ),
    ];

    #[test]
    fn rfc_vectors() {
        for &(plain, coded) in VECTORS {
            let coded = hex(coded);
            let mut out = Vec::new();
            encode(plain.as_bytes(), &mut out);
            assert_eq!(out, coded, "{plain}");
            assert_eq!(encoded_len(plain.as_bytes()), coded.len());
            let mut back = Vec::new();
            decode(&coded, &mut back).unwrap();
            assert_eq!(back, plain.as_bytes());
        }
    }

    #[test]
    fn every_byte_round_trips() {
        for b in 0..=255u8 {
            for s in [vec![b], vec![b; 7], vec![b'a', b, b'z', b, b]] {
                let mut out = Vec::new();
                encode(&s, &mut out);
                assert_eq!(out.len(), encoded_len(&s));
                let mut back = Vec::new();
                decode(&out, &mut back).unwrap();
                assert_eq!(back, s, "byte {b}");
            }
        }
        let all: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
        let mut out = Vec::new();
        encode(&all, &mut out);
        let mut back = Vec::new();
        decode(&out, &mut back).unwrap();
        assert_eq!(back, all);
        let mut back = Vec::new();
        decode(&[], &mut back).unwrap();
        assert!(back.is_empty());
    }

    #[test]
    fn eos_in_string_is_an_error() {
        // EOS alone: 30 ones, then 2 bits of padding.
        assert_eq!(
            decode(&[0xff, 0xff, 0xff, 0xff], &mut Vec::new()),
            Err(DecodeError::HuffmanEos)
        );
        // 'a' (00011) then EOS then padding: 5 + 30 + 5 bits.
        let mut bits = String::from("00011");
        bits.push_str(&"1".repeat(35));
        let bytes: Vec<u8> = (0..5)
            .map(|i| u8::from_str_radix(&bits[i * 8..i * 8 + 8], 2).unwrap())
            .collect();
        assert_eq!(
            decode(&bytes, &mut Vec::new()),
            Err(DecodeError::HuffmanEos)
        );
    }

    #[test]
    fn padding_errors() {
        // 8 bits of padding (a whole byte of ones) after nothing.
        assert_eq!(
            decode(&[0xff], &mut Vec::new()),
            Err(DecodeError::HuffmanPaddingTooLong)
        );
        // "a" = 00011 + padding 111, then another 0xff: 11 bits of padding.
        assert_eq!(
            decode(&[0x1f, 0xff], &mut Vec::new()),
            Err(DecodeError::HuffmanPaddingTooLong)
        );
        // "a" then padding 110: not a prefix of EOS.
        assert_eq!(
            decode(&[0x1e], &mut Vec::new()),
            Err(DecodeError::HuffmanPaddingNotOnes)
        );
        // "a" then padding 011.
        assert_eq!(
            decode(&[0x1b], &mut Vec::new()),
            Err(DecodeError::HuffmanPaddingNotOnes)
        );
        // "a" with valid padding 111.
        let mut out = Vec::new();
        decode(&[0x1f], &mut out).unwrap();
        assert_eq!(out, b"a");
        // "000" (15 bits) + 1 bit of padding.
        let mut out = Vec::new();
        decode(&[0x00, 0x01], &mut out).unwrap();
        assert_eq!(out, b"000");
        // "00000" (25 bits) + 7 bits of padding: the longest allowed.
        let mut out = Vec::new();
        decode(&[0x00, 0x00, 0x00, 0x7f], &mut out).unwrap();
        assert_eq!(out, b"00000");
    }
}
