//! Internet checksum loops, measured side by side: why `checksum::sum` adds
//! native-endian u32 words into a u64.
//!
//! - `own`: `sluice_netstack::checksum::sum` as shipped.
//! - `u32_in_u64`: the same loop, out of line (what `sum` calls for ≥ 64 bytes).
//! - `u16_in_u32`: u16 words into u32 lanes in 64 KiB blocks (smoltcp's loop).
//! - `adc`: u64 words with an end-around carry after each add (a serial chain).
//! - `u64_halves_x4`: 32-byte blocks, four accumulators of u64 halves.
//! - `smoltcp`: `smoltcp::wire::checksum::data`.
//! - `etherparse`: `etherparse::checksum::Sum16BitWords`.
//!
//! Run with `cargo bench -p sluice-netstack --bench checksum`.
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sluice_netstack::checksum;

type SumFn = fn(&[u8]) -> u16;

#[inline(never)]
fn u32_in_u64(data: &[u8]) -> u16 {
    let (words, rest) = data.as_chunks::<4>();
    let mut acc: u64 = 0;
    for w in words {
        acc += u64::from(u32::from_ne_bytes(*w));
    }
    let tail = match *rest {
        [a] => [a, 0, 0, 0],
        [a, b] => [a, b, 0, 0],
        [a, b, c] => [a, b, c, 0],
        _ => [0; 4],
    };
    acc += u64::from(u32::from_ne_bytes(tail));
    u16::from_be(checksum::fold(acc))
}

#[inline(never)]
fn u16_in_u32(data: &[u8]) -> u16 {
    let mut acc: u64 = 0;
    for block in data.chunks(1 << 16) {
        let (words, rest) = block.as_chunks::<2>();
        let mut s: u32 = 0;
        for w in words {
            s += u32::from(u16::from_ne_bytes(*w));
        }
        if let [b] = *rest {
            s += u32::from(u16::from_ne_bytes([b, 0]));
        }
        acc += u64::from(s);
    }
    u16::from_be(checksum::fold(acc))
}

#[inline(never)]
fn adc(data: &[u8]) -> u16 {
    let (words, rest) = data.as_chunks::<8>();
    let mut acc: u64 = 0;
    for w in words {
        let (s, c) = acc.overflowing_add(u64::from_ne_bytes(*w));
        acc = s + u64::from(c);
    }
    let mut tail = [0u8; 8];
    tail[..rest.len()].copy_from_slice(rest);
    let (s, c) = acc.overflowing_add(u64::from_ne_bytes(tail));
    acc = s + u64::from(c);
    u16::from_be(checksum::fold(acc))
}

#[inline(never)]
fn u64_halves_x4(data: &[u8]) -> u16 {
    let (blocks, rest) = data.as_chunks::<32>();
    let mut a = [0u64; 4];
    for b in blocks {
        let (words, _) = b.as_chunks::<8>();
        for (acc, w) in a.iter_mut().zip(words) {
            let w = u64::from_ne_bytes(*w);
            *acc += (w & 0xffff_ffff) + (w >> 32);
        }
    }
    let head = u16::from_be(checksum::fold(a.iter().sum()));
    checksum::add(head, checksum::sum(rest))
}

#[inline(never)]
fn smoltcp(data: &[u8]) -> u16 {
    smoltcp::wire::checksum::data(data)
}

#[inline(never)]
fn etherparse(data: &[u8]) -> u16 {
    // Its result is in the other byte order from ours.
    (!etherparse::checksum::Sum16BitWords::new()
        .add_slice(data)
        .ones_complement())
    .swap_bytes()
}

fn bench(c: &mut Criterion) {
    let data: Vec<u8> = (0..1480u32).map(|i| (i * 7) as u8).collect();
    let variants: [(&str, SumFn); 7] = [
        ("own", checksum::sum),
        ("u32_in_u64", u32_in_u64),
        ("u16_in_u32", u16_in_u32),
        ("adc", adc),
        ("u64_halves_x4", u64_halves_x4),
        ("smoltcp", smoltcp),
        ("etherparse", etherparse),
    ];
    for (name, f) in variants {
        for len in [20, 21, 1480] {
            assert_eq!(f(&data[..len]), checksum::sum(&data[..len]), "{name}/{len}");
        }
    }
    for len in [20usize, 1480] {
        let mut g = c.benchmark_group(format!("checksum_sum/{len}"));
        g.throughput(Throughput::Bytes(len as u64));
        for (name, f) in variants {
            g.bench_function(name, |b| b.iter(|| f(black_box(&data[..len]))));
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
