//! The fuzz target's body over a few thousand deterministic pseudo-random
//! inputs: random bytes, and random but well-framed frames of every type
//! (the cargo-fuzz target explores further).

mod common;

use common::*;

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

#[test]
fn random_bytes() {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..2000 {
        let n = r.below(300) as usize;
        let data = r.bytes(n);
        sluice_h2::fuzz_frames(&data);
    }
}

/// Mostly valid client traffic with a few broken frames: reaches the
/// routes, flow control and resets, not just the first protocol error.
#[test]
fn random_frames() {
    let mut r = Rng(0x1234_5678_9abc_def1);
    let paths = [
        "/health",
        "/echo",
        "/bytes/100000",
        "/bytes/0",
        "/x",
        "/bytes/7",
    ];
    let methods = ["GET", "POST", "HEAD", "PUT"];
    for _ in 0..3000 {
        let mut data = vec![r.next() as u8];
        data.extend(settings(&[(
            SETTINGS_INITIAL_WINDOW_SIZE,
            r.below(70_000) as u32,
        )]));
        let mut next_id = 1u32;
        let frames = r.below(60);
        for _ in 0..frames {
            let open = next_id.saturating_sub(2).max(1);
            let some_stream = 1 + 2 * r.below(u64::from(next_id / 2 + 1)) as u32;
            let f = match r.below(20) {
                0..=5 => {
                    let id = next_id;
                    next_id += 2;
                    let flags = END_HEADERS | if r.below(2) == 0 { END_STREAM } else { 0 };
                    let m = methods[r.below(4) as usize];
                    frame(
                        HEADERS,
                        flags,
                        id,
                        &request_block(m, paths[r.below(6) as usize]),
                    )
                }
                6..=9 => {
                    let n = r.below(200) as usize;
                    let flags = if r.below(3) == 0 { END_STREAM } else { 0 };
                    frame(DATA, flags, open, &r.bytes(n))
                }
                10 | 11 => window_update(
                    if r.below(2) == 0 { 0 } else { some_stream },
                    1 + r.below(100_000) as u32,
                ),
                12 => ping(r.next().to_be_bytes()),
                13 => settings(&[(SETTINGS_INITIAL_WINDOW_SIZE, r.below(100_000) as u32)]),
                14 => rst(some_stream, r.below(14) as u32),
                15 => frame(PRIORITY, 0, some_stream, &[0, 0, 0, 0, 9]),
                16 => frame(CONTINUATION, END_HEADERS, open, &r.bytes(3)),
                17 => frame(DATA, PADDED, open, &[r.below(4) as u8, 1, 2]),
                // Anything.
                _ => {
                    let n = r.below(40) as usize;
                    frame(r.next() as u8, r.next() as u8, r.next() as u32, &r.bytes(n))
                }
            };
            data.extend(f);
        }
        sluice_h2::fuzz_frames(&data);
    }
}
