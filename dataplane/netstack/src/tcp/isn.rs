//! Initial sequence numbers (RFC 6528) and timestamp offsets (RFC 7323
//! §7.1): keyed SipHash-2-4 of the 4-tuple plus a 4 µs clock.

use super::tuple::FourTuple;
use crate::time::Time;

/// SipHash-2-4 of `data` under `key`.
pub fn siphash24(key: &[u8; 16], data: &[u8]) -> u64 {
    let k0 = u64::from_le_bytes(first8(&key[..8]));
    let k1 = u64::from_le_bytes(first8(&key[8..]));
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let m = u64::from_le_bytes(first8(c));
        v[3] ^= m;
        round(&mut v);
        round(&mut v);
        v[0] ^= m;
    }
    let rest = chunks.remainder();
    let mut last = [0u8; 8];
    last[..rest.len()].copy_from_slice(rest);
    let m = u64::from_le_bytes(last) | ((data.len() as u64 & 0xff) << 56);
    v[3] ^= m;
    round(&mut v);
    round(&mut v);
    v[0] ^= m;
    v[2] ^= 0xff;
    for _ in 0..4 {
        round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

fn first8(b: &[u8]) -> [u8; 8] {
    let mut out = [0u8; 8];
    let n = b.len().min(8);
    out[..n].copy_from_slice(&b[..n]);
    out
}

#[inline]
fn round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13);
    v[1] ^= v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16);
    v[3] ^= v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21);
    v[3] ^= v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17);
    v[1] ^= v[2];
    v[2] = v[2].rotate_left(32);
}

fn keyed(key: &[u8; 16], tuple: &FourTuple, domain: u8) -> u64 {
    let mut b = [0u8; 37];
    b[..36].copy_from_slice(&tuple.key_bytes());
    b[36] = domain;
    siphash24(key, &b)
}

/// RFC 6528: ISN = M + F(4-tuple, key), M a 4 µs timer.
pub fn isn(key: &[u8; 16], tuple: &FourTuple, now: Time) -> u32 {
    let m = (now.as_nanos() / 4_000) as u32;
    m.wrapping_add(keyed(key, tuple, 0) as u32)
}

/// Per-connection random offset of our TSval (RFC 7323 §7.1).
pub fn ts_offset(key: &[u8; 16], tuple: &FourTuple) -> u32 {
    keyed(key, tuple, 1) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn siphash_reference_vector() {
        // The reference implementation's vector: key 00..0f, message 00..0e.
        let key: [u8; 16] = core::array::from_fn(|i| i as u8);
        let msg: Vec<u8> = (0u8..15).collect();
        assert_eq!(siphash24(&key, &msg), 0xa129_ca61_49be_45e5);
        assert_eq!(siphash24(&key, &[]), 0x726f_db47_dd0e_0e31);
    }

    #[test]
    fn isn_advances_with_time_and_differs_per_tuple() {
        let key = [7u8; 16];
        let t = FourTuple::new(
            "10.0.0.1:80".parse().unwrap(),
            "10.0.0.2:1234".parse().unwrap(),
        );
        let a = isn(&key, &t, Time::ZERO);
        let b = isn(&key, &t, Time::from_micros(400));
        assert_eq!(b.wrapping_sub(a), 100);
        assert_ne!(a, isn(&key, &t.reversed(), Time::ZERO));
    }
}
