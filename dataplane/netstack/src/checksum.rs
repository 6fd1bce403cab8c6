//! The internet checksum (RFC 1071): full sums, pseudo-header sums and
//! incremental updates (RFC 1624).
//!
//! Values are kept as 16-bit ones'-complement *sums* (not yet complemented)
//! so partial results combine with [`add`]. A checksum field holds `!sum`.
//! Sums of several pieces combine correctly only when every piece but the last
//! has an even length.
//!
//! [`sum`] adds the data as native-endian 32-bit words into a 64-bit
//! accumulator (no carries to handle, and the compiler vectorises the loop),
//! folds once at the end and swaps bytes on little-endian hosts: the
//! ones'-complement sum does not depend on byte order (RFC 1071 §2(B)).
//! Inputs of 64 bytes or more take [`sum_long`]'s four-accumulator loop
//! instead (benches/checksum.rs compares the loops).
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Fold a 64-bit accumulator of 16-bit quantities to a 16-bit ones'-complement sum.
#[inline]
pub const fn fold(acc: u64) -> u16 {
    let mut s = (acc >> 32) + (acc & 0xffff_ffff);
    s = (s >> 16) + (s & 0xffff);
    s = (s >> 16) + (s & 0xffff);
    s = (s >> 16) + (s & 0xffff);
    s as u16
}

/// Ones'-complement sum of `data` as big-endian 16-bit words; an odd last byte
/// is padded with a zero byte.
#[inline]
pub fn sum(data: &[u8]) -> u16 {
    // Long inputs go through one out-of-line copy of the loop: inlined into
    // its callers it was measured 40% slower on 1480 bytes.
    if data.len() >= 64 {
        sum_long(data)
    } else {
        sum_words(data)
    }
}

/// 32-byte blocks into four independent accumulators of 32-bit halves, so
/// the adds do not wait on each other; the rest through [`sum_words`].
/// (Compared in benches/checksum.rs: the fastest or tied on 1480 bytes in
/// every run here, where the loop's speed otherwise varied with inlining.)
#[inline(never)]
fn sum_long(data: &[u8]) -> u16 {
    let (blocks, rest) = data.as_chunks::<32>();
    let mut acc = [0u64; 4];
    for block in blocks {
        let (words, _) = block.as_chunks::<8>();
        for (a, w) in acc.iter_mut().zip(words) {
            let w = u64::from_ne_bytes(*w);
            // At most 2^33 per block: no overflow below 2^31 blocks (64 GiB).
            *a += (w & 0xffff_ffff) + (w >> 32);
        }
    }
    let head = u16::from_be(fold(acc[0] + acc[1] + acc[2] + acc[3]));
    // Blocks are 32 bytes (even), so the rest's sum combines directly.
    add(head, sum_words(rest))
}

#[inline(always)]
fn sum_words(data: &[u8]) -> u16 {
    let (words, rest) = data.as_chunks::<4>();
    let mut acc: u64 = 0;
    for w in words {
        acc += u64::from(u32::from_ne_bytes(*w));
    }
    // Built from registers: a byte-wise copy into a stack array read back
    // as a u32 stalls store-to-load forwarding (measured: a third of the
    // time of a 64-byte frame's checks).
    let tail = match *rest {
        [a] => [a, 0, 0, 0],
        [a, b] => [a, b, 0, 0],
        [a, b, c] => [a, b, c, 0],
        _ => [0; 4],
    };
    acc += u64::from(u32::from_ne_bytes(tail));
    u16::from_be(fold(acc))
}

/// Ones'-complement addition of two sums.
#[inline]
pub const fn add(a: u16, b: u16) -> u16 {
    fold(a as u64 + b as u64)
}

/// The checksum field value for `data` (whose checksum field must be zero).
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !sum(data)
}

/// Turn a sum into the value to store in a checksum field.
#[inline]
pub const fn finish(sum: u16) -> u16 {
    !sum
}

/// True when a sum taken over data that includes its checksum field verifies.
#[inline]
pub const fn is_valid(sum: u16) -> bool {
    sum == 0xffff
}

/// Sum of the IPv4 pseudo-header (RFC 768 / RFC 9293 §3.1).
#[inline]
pub fn pseudo_header_v4(src: &Ipv4Addr, dst: &Ipv4Addr, protocol: u8, len: u16) -> u16 {
    let s = sum(&src.octets()) as u64
        + sum(&dst.octets()) as u64
        + u64::from(protocol)
        + u64::from(len);
    fold(s)
}

/// Sum of the IPv6 pseudo-header (RFC 8200 §8.1).
#[inline]
pub fn pseudo_header_v6(src: &Ipv6Addr, dst: &Ipv6Addr, next_header: u8, len: u32) -> u16 {
    let s = sum(&src.octets()) as u64
        + sum(&dst.octets()) as u64
        + u64::from(next_header)
        + u64::from(len >> 16)
        + u64::from(len & 0xffff);
    fold(s)
}

/// Sum of the pseudo-header for either family. Both pseudo-headers reduce to
/// the same ones'-complement sum (addresses, protocol, length), so a mixed
/// pair is summed the same way rather than rejected.
#[inline]
pub fn pseudo_header(src: &IpAddr, dst: &IpAddr, protocol: u8, len: u32) -> u16 {
    let addr_sum = |a: &IpAddr| match a {
        IpAddr::V4(a) => sum(&a.octets()),
        IpAddr::V6(a) => sum(&a.octets()),
    };
    fold(
        addr_sum(src) as u64
            + addr_sum(dst) as u64
            + u64::from(protocol)
            + u64::from(len >> 16)
            + u64::from(len & 0xffff),
    )
}

/// Pseudo-header sum from raw address bytes (4 or 16 bytes each, as found in
/// the IP header); used by the in-place fast paths.
#[inline]
pub fn pseudo_header_raw(src: &[u8], dst: &[u8], protocol: u8, len: u32) -> u16 {
    fold(
        sum(src) as u64
            + sum(dst) as u64
            + u64::from(protocol)
            + u64::from(len >> 16)
            + u64::from(len & 0xffff),
    )
}

/// Incremental update of checksum field `check` when a 16-bit word changes
/// from `old` to `new` (RFC 1624 eqn. 3: `HC' = ~(~HC + ~m + m')`).
///
/// Equal to a full recompute except when the covered data becomes all
/// zeros: then this gives 0x0000 and a recompute 0xffff, and only 0xffff
/// verifies. Headers with a non-zero constant (IPv4 version, a pseudo-header
/// with a protocol number) never get there; an ICMPv4 message can, and
/// [`crate::echo::icmp_echo_in_place`] handles it.
#[inline]
pub const fn update_u16(check: u16, old: u16, new: u16) -> u16 {
    !add(add(!check, !old), new)
}

/// Incremental update for a 32-bit field (two adjacent aligned 16-bit words).
#[inline]
pub const fn update_u32(check: u16, old: u32, new: u32) -> u16 {
    let c = update_u16(check, (old >> 16) as u16, (new >> 16) as u16);
    update_u16(c, old as u16, new as u16)
}

/// Incremental update for a 16-byte field (an IPv6 address) at an even offset.
#[inline]
pub fn update_bytes16(check: u16, old: &[u8; 16], new: &[u8; 16]) -> u16 {
    update_slice(check, old, new)
}

/// Incremental update when the bytes `old` at an even offset become `new`.
/// Both slices should have the same length; the sums are taken as they are.
#[inline]
pub fn update_slice(check: u16, old: &[u8], new: &[u8]) -> u16 {
    !add(add(!check, !sum(old)), sum(new))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bit-by-bit reference: big-endian words, end-around carry after each add.
    fn reference_sum(data: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        for pair in data.chunks(2) {
            let w = u32::from(pair[0]) << 8 | u32::from(*pair.get(1).unwrap_or(&0));
            acc += w;
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to 0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(sum(&data), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn empty_and_odd() {
        assert_eq!(sum(&[]), 0);
        assert_eq!(sum(&[0xab]), 0xab00);
        assert_eq!(sum(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
        assert_eq!(sum(&[0xff; 7]), reference_sum(&[0xff; 7]));
    }

    #[test]
    fn fold_edges() {
        assert_eq!(fold(0), 0);
        assert_eq!(fold(0xffff), 0xffff);
        assert_eq!(fold(0x1_0000), 1);
        assert_eq!(fold(u64::MAX), 0xffff);
        assert_eq!(add(0xffff, 0xffff), 0xffff);
        assert_eq!(add(0xffff, 1), 1);
    }

    #[test]
    fn ipv4_header_known() {
        // Kernel ping request header from tests/fixtures/ping4.pcap.
        let hdr = [
            0x45, 0x00, 0x00, 0x3c, 0xeb, 0x1f, 0x40, 0x00, 0x40, 0x01, 0x00, 0x00, 0xc6, 0x12,
            0x00, 0x01, 0xc6, 0x12, 0x00, 0x02,
        ];
        let c = checksum(&hdr);
        let mut full = hdr;
        full[10..12].copy_from_slice(&c.to_be_bytes());
        assert!(is_valid(sum(&full)));
        assert_eq!(c, 0xc379); // as captured
    }

    #[test]
    fn pseudo_headers_agree() {
        let a = Ipv4Addr::new(198, 18, 0, 1);
        let b = Ipv4Addr::new(198, 18, 0, 2);
        assert_eq!(
            pseudo_header_v4(&a, &b, 17, 27),
            pseudo_header(&IpAddr::V4(a), &IpAddr::V4(b), 17, 27)
        );
        assert_eq!(
            pseudo_header_v4(&a, &b, 17, 27),
            pseudo_header_raw(&a.octets(), &b.octets(), 17, 27)
        );
        let c: Ipv6Addr = "2001:2::1".parse().unwrap();
        let d: Ipv6Addr = "2001:2::2".parse().unwrap();
        assert_eq!(
            pseudo_header_v6(&c, &d, 6, 70000),
            pseudo_header(&IpAddr::V6(c), &IpAddr::V6(d), 6, 70000)
        );
    }

    #[test]
    fn update_matches_recompute_simple() {
        let mut data = [0x45u8, 0, 0, 60, 1, 2, 0, 0, 17, 1, 0, 0, 10, 0, 0, 1];
        let c = checksum(&data);
        let old = u16::from_be_bytes([data[8], data[9]]);
        data[8] = 64;
        let new = u16::from_be_bytes([data[8], data[9]]);
        assert_eq!(update_u16(c, old, new), checksum(&data));
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn sum_matches_reference(data in proptest::collection::vec(any::<u8>(), 0..2000)) {
                prop_assert_eq!(sum(&data), reference_sum(&data));
            }

            #[test]
            fn split_sums_combine(data in proptest::collection::vec(any::<u8>(), 0..600), cut in 0usize..300) {
                let cut = (cut * 2).min(data.len() & !1);
                prop_assert_eq!(add(sum(&data[..cut]), sum(&data[cut..])), sum(&data));
            }

            // A header whose checksum is filled, one aligned word / u32 / 16 bytes
            // replaced: the incremental update verifies and equals a recompute.
            #[test]
            fn incremental_u16_equals_recompute(
                mut data in proptest::collection::vec(any::<u8>(), 4..200),
                at in 0usize..100, new in any::<u16>(),
            ) {
                data.truncate(data.len() & !1);
                let at = 2 + (at * 2) % (data.len() - 2);
                data[..2].fill(0);
                let c = checksum(&data);
                data[..2].copy_from_slice(&c.to_be_bytes());
                let old = u16::from_be_bytes([data[at], data[at + 1]]);
                data[at..at + 2].copy_from_slice(&new.to_be_bytes());
                let inc = update_u16(c, old, new);
                data[..2].fill(0);
                // All-zero data is the one case where a recompute yields 0xffff
                // ("-0") and the update 0x0000; both verify, neither is sent.
                prop_assume!(data.iter().any(|&b| b != 0));
                let full = checksum(&data);
                prop_assert_eq!(inc, full);
            }

            #[test]
            fn incremental_u32_and_16_bytes(
                mut data in proptest::collection::vec(any::<u8>(), 40..200),
                new4 in any::<u32>(), new16 in any::<[u8; 16]>(),
            ) {
                data.truncate(data.len() & !1);
                data[2] |= 1;
                data[..2].fill(0);
                let c = checksum(&data);
                let old4 = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
                data[4..8].copy_from_slice(&new4.to_be_bytes());
                let c1 = update_u32(c, old4, new4);
                prop_assert_eq!(c1, checksum(&data));
                let mut old16 = [0u8; 16];
                old16.copy_from_slice(&data[8..24]);
                data[8..24].copy_from_slice(&new16);
                let c2 = update_bytes16(c1, &old16, &new16);
                prop_assert_eq!(c2, checksum(&data));
            }
        }
    }
}
