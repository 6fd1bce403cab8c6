//! The one fixed hash of the crate: XXH64 (xxHash, 64-bit), written out.
//!
//! Maglev needs a hash whose output is the same in every process, on every
//! machine and in every release: the table a core builds must equal the one
//! the control process builds and the one the XDP program reads, and a key
//! (a header value, a client address) must land on the same slot on every
//! core. std's `DefaultHasher`/`RandomState` promise none of that, so the
//! crate carries its own.
//!
//! Why XXH64: it is a published, frozen specification
//! (github.com/Cyan4973/xxHash, doc/xxhash_spec.md) with implementations in
//! every language and in libxxhash, so a table can be checked from outside
//! Rust; Envoy's Maglev uses the same function (seed 0 for the offset, 1
//! for the skip) and so does its hash policy for keys; it is fast on the
//! short inputs hashed here and mixes every input bit into every output
//! bit, which `hash % prime` needs. It is not a keyed MAC: a client who can
//! choose keys can choose which backend it lands on, which consistent
//! hashing allows anyway.
//!
//! Seeds used by the crate:
//! - [`hash_key`]: seed [`KEY_SEED`] (0), for request keys.
//! - Maglev offset: seed [`OFFSET_SEED`] (0); Maglev skip: seed
//!   [`SKIP_SEED`] (1), both over the backend's address string.

/// Seed of [`hash_key`].
pub const KEY_SEED: u64 = 0;
/// Seed of a Maglev backend's offset into the table.
pub const OFFSET_SEED: u64 = 0;
/// Seed of a Maglev backend's skip through the table.
pub const SKIP_SEED: u64 = 1;

const P1: u64 = 0x9E37_79B1_85EB_CA87;
const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const P3: u64 = 0x1656_67B1_9E37_79F9;
const P4: u64 = 0x85EB_CA77_C2B2_AE63;
const P5: u64 = 0x27D4_EB2F_1656_67C5;

/// Hash of a request key (header value, cookie, client address bytes) for
/// [`crate::Maglev::pick`]: XXH64 with seed [`KEY_SEED`]. Every core, and
/// the control process, gets the same value for the same bytes.
pub fn hash_key(bytes: &[u8]) -> u64 {
    xxh64(bytes, KEY_SEED)
}

/// XXH64 of `input` with `seed`, as the specification defines it
/// (little-endian reads on every host).
pub fn xxh64(input: &[u8], seed: u64) -> u64 {
    let len = input.len() as u64;
    let mut rest = input;
    let mut h = if rest.len() >= 32 {
        let mut v = [
            seed.wrapping_add(P1).wrapping_add(P2),
            seed.wrapping_add(P2),
            seed,
            seed.wrapping_sub(P1),
        ];
        while rest.len() >= 32 {
            for (lane, chunk) in v.iter_mut().zip(rest[..32].chunks_exact(8)) {
                *lane = round(*lane, read_u64(chunk));
            }
            rest = &rest[32..];
        }
        let mut h = v[0]
            .rotate_left(1)
            .wrapping_add(v[1].rotate_left(7))
            .wrapping_add(v[2].rotate_left(12))
            .wrapping_add(v[3].rotate_left(18));
        for lane in v {
            h = merge_round(h, lane);
        }
        h
    } else {
        seed.wrapping_add(P5)
    };
    h = h.wrapping_add(len);

    while rest.len() >= 8 {
        h ^= round(0, read_u64(&rest[..8]));
        h = h.rotate_left(27).wrapping_mul(P1).wrapping_add(P4);
        rest = &rest[8..];
    }
    if rest.len() >= 4 {
        h ^= u64::from(read_u32(&rest[..4])).wrapping_mul(P1);
        h = h.rotate_left(23).wrapping_mul(P2).wrapping_add(P3);
        rest = &rest[4..];
    }
    for &b in rest {
        h ^= u64::from(b).wrapping_mul(P5);
        h = h.rotate_left(11).wrapping_mul(P1);
    }

    h ^= h >> 33;
    h = h.wrapping_mul(P2);
    h ^= h >> 29;
    h = h.wrapping_mul(P3);
    h ^ (h >> 32)
}

fn round(acc: u64, input: u64) -> u64 {
    acc.wrapping_add(input.wrapping_mul(P2))
        .rotate_left(31)
        .wrapping_mul(P1)
}

fn merge_round(acc: u64, lane: u64) -> u64 {
    (acc ^ round(0, lane)).wrapping_mul(P1).wrapping_add(P4)
}

fn read_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    u64::from_le_bytes(a)
}

fn read_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(b);
    u32::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference values from libxxhash 0.8.1 (`XXH64`), over the bytes
    /// `(i * 7 + 3) & 0xff` for `i` in `0..len`: every tail path (32-byte
    /// stripes, 8-, 4- and 1-byte steps) is covered, with seeds 0 and 1.
    const VECTORS: [(usize, u64, u64); 18] = [
        (0, 0xef46db3751d8e999, 0xd5afba1336a3be4b),
        (1, 0x1f25c8d0bc1f4bb6, 0x610f93f8c89889fe),
        (3, 0x31d2363f52e564c9, 0x2d80e074130d0176),
        (4, 0x9bb64b7d66ee9fda, 0x5ec9fdd10fcbcb0e),
        (5, 0xc7608efddb7051fe, 0x89c1d7fbeb0222bf),
        (7, 0x9a7b149959ce60d8, 0xd8b4a941715fee31),
        (8, 0xdab99d95c6f90092, 0xf119f5b26c0020ab),
        (9, 0x170bb6bf975b4c02, 0xc35609e49aadbb91),
        (12, 0xd52e407833af5133, 0x37851f0d89d23966),
        (15, 0x1b47cb8243cc8e32, 0x7a94ee016f09b732),
        (16, 0x434850232b787be2, 0xc9681422ce33496d),
        (31, 0xa2aa5f33cc4a6119, 0xaaca4e41ffcae21c),
        (32, 0x23c3c17ef790fd97, 0x7421b79a02b42132),
        (33, 0x50a7cfc7ba588784, 0x17b3df313de9a40e),
        (63, 0x5e3e54b431c7493c, 0xb1abb4a5ad0e2943),
        (64, 0x0eb64b3ef6eeb01f, 0x2d0457940c5a93f4),
        (65, 0xa383b724b2bd12f1, 0x6153dc23fc8bebd8),
        (100, 0xa61f8d4c170fe531, 0x8d8957e68f02c7ce),
    ];

    #[test]
    fn matches_libxxhash() {
        let data: Vec<u8> = (0..100u32).map(|i| ((i * 7 + 3) & 0xff) as u8).collect();
        for (len, seed0, seed1) in VECTORS {
            assert_eq!(xxh64(&data[..len], 0), seed0, "len {len} seed 0");
            assert_eq!(xxh64(&data[..len], 1), seed1, "len {len} seed 1");
        }
        assert_eq!(xxh64(b"abc", 0), 0x44bc2cf5ad770999);
        assert_eq!(hash_key(b"198.18.0.10"), 0x9332babb2e90e910);
        assert_eq!(xxh64(b"10.0.0.1:8080", SKIP_SEED), 0x0dfce9efd349b428);
    }
}
