//! The published health of every cluster: which backends the loops may
//! pick, and which are half-open (admitted against probe tokens).
//!
//! One writer (the decision component on the main thread today, the
//! control process later) and many readers (the loops, and the XDP program
//! for the all-ejected flag) share a block of 64-bit words: a BPF array map
//! mapped into the process, or plain memory in tests. The words form a
//! seqlock: word 0 is a sequence counter, odd while the writer is writing;
//! a reader that sees it unchanged and even around its copy has a
//! consistent snapshot. A loop's check when nothing changed is one atomic
//! load.
//!
//! Layout (`sluice_abi.h` defines words 0 and 1 for the XDP program):
//! - word 0: sequence;
//! - word 1: flags, bit 0 = no cluster has an eligible backend;
//! - from word 8, per cluster in configuration order: `n` words of the
//!   eligible bitmap, then `n` words of the half-open bitmap, where
//!   `n = ceil(backends / 64)`.

use std::fmt;
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::sync::Arc;

use sluice_lb::{EligibleSet, ProbeTokens};

use crate::spec::ProxySpec;

/// Word of the sequence counter.
pub const GENERATION_WORD: usize = 0;
/// Word of the flags.
pub const FLAGS_WORD: usize = 1;
/// Flag: every cluster has no eligible backend (the XDP program refuses
/// new connections).
pub const ALL_EJECTED: u64 = 1;
/// First word of the per-cluster bitmaps.
pub const FIRST_CLUSTER_WORD: usize = 8;

/// Shared 64-bit words: a mapped BPF array map, or memory.
pub trait Words: Send + Sync {
    fn len(&self) -> usize;
    fn word(&self, i: usize) -> &AtomicU64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Words in process memory (tests, and a dataplane without XDP maps).
pub struct MemoryWords(Box<[AtomicU64]>);

impl MemoryWords {
    pub fn new(len: usize) -> Self {
        Self((0..len).map(|_| AtomicU64::new(0)).collect())
    }
}

impl Words for MemoryWords {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn word(&self, i: usize) -> &AtomicU64 {
        &self.0[i]
    }
}

#[derive(Clone, Copy, Debug)]
struct ClusterWords {
    base: usize,
    n: usize,
    backends: usize,
}

/// The board: layout, words and the probe tokens of half-open backends.
pub struct Board {
    words: Arc<dyn Words>,
    clusters: Vec<ClusterWords>,
    tokens: Vec<ProbeTokens>,
}

impl fmt::Debug for Board {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Board")
            .field("clusters", &self.clusters)
            .finish()
    }
}

impl Board {
    /// Lays the clusters of `spec` out in `words` and publishes every
    /// backend eligible. Fails if the words are too few.
    pub fn new(spec: &ProxySpec, words: Arc<dyn Words>) -> Result<Self, String> {
        let mut base = FIRST_CLUSTER_WORD;
        let mut clusters = Vec::with_capacity(spec.clusters.len());
        for c in &spec.clusters {
            let n = c.backends.len().div_ceil(64).max(1);
            clusters.push(ClusterWords {
                base,
                n,
                backends: c.backends.len(),
            });
            base += 2 * n;
        }
        if base > words.len() {
            return Err(format!(
                "the health board needs {base} words for these clusters, the map has {}",
                words.len()
            ));
        }
        let tokens = spec
            .clusters
            .iter()
            .map(|c| ProbeTokens::new(c.backends.len()))
            .collect();
        let board = Self {
            words,
            clusters,
            tokens,
        };
        let all: Vec<(EligibleSet, EligibleSet)> = board
            .clusters
            .iter()
            .map(|c| (EligibleSet::all(c.backends), EligibleSet::none(c.backends)))
            .collect();
        let refs: Vec<(&EligibleSet, &EligibleSet)> = all.iter().map(|(a, b)| (a, b)).collect();
        board.publish(&refs);
        Ok(board)
    }

    pub fn tokens(&self, cluster: usize) -> &ProbeTokens {
        &self.tokens[cluster]
    }

    /// Writes every cluster's sets (single writer). `states[c]` is
    /// (eligible, half-open) of cluster `c`.
    pub fn publish(&self, states: &[(&EligibleSet, &EligibleSet)]) {
        let w = &self.words;
        let seq = w.word(GENERATION_WORD).load(Ordering::Relaxed);
        // Odd: readers keep their copy until the write is complete.
        w.word(GENERATION_WORD)
            .store(seq.wrapping_add(1) | 1, Ordering::Relaxed);
        fence(Ordering::Release);
        let mut any = false;
        for (c, (eligible, half_open)) in self.clusters.iter().zip(states) {
            any |= !eligible.is_none();
            for i in 0..c.n {
                let e = eligible.words().get(i).copied().unwrap_or(0);
                let h = half_open.words().get(i).copied().unwrap_or(0);
                w.word(c.base + i).store(e, Ordering::Relaxed);
                w.word(c.base + c.n + i).store(h, Ordering::Relaxed);
            }
        }
        let flags = if any || self.clusters.is_empty() {
            0
        } else {
            ALL_EJECTED
        };
        w.word(FLAGS_WORD).store(flags, Ordering::Relaxed);
        w.word(GENERATION_WORD)
            .store((seq.wrapping_add(1) | 1).wrapping_add(1), Ordering::Release);
    }

    /// The current sequence (even when consistent).
    pub fn sequence(&self) -> u64 {
        self.words.word(GENERATION_WORD).load(Ordering::Acquire)
    }

    /// Copies every cluster's sets if the board changed since `*seen`;
    /// false (and nothing copied) if it did not, or a write is under way
    /// (the caller keeps its copy and looks again later).
    pub fn read(&self, seen: &mut u64, out: &mut [(EligibleSet, EligibleSet)]) -> bool {
        let w = &self.words;
        let s1 = w.word(GENERATION_WORD).load(Ordering::Acquire);
        if s1 == *seen || s1 & 1 == 1 {
            return false;
        }
        let mut buf = [0u64; 4];
        for (c, (eligible, half_open)) in self.clusters.iter().zip(out.iter_mut()) {
            for (set, off) in [(eligible, 0), (half_open, c.n)] {
                if c.n <= buf.len() {
                    for (i, b) in buf[..c.n].iter_mut().enumerate() {
                        *b = w.word(c.base + off + i).load(Ordering::Relaxed);
                    }
                    set.copy_from_words(&buf[..c.n]);
                } else {
                    let v: Vec<u64> = (0..c.n)
                        .map(|i| w.word(c.base + off + i).load(Ordering::Relaxed))
                        .collect();
                    set.copy_from_words(&v);
                }
            }
        }
        fence(Ordering::Acquire);
        if w.word(GENERATION_WORD).load(Ordering::Relaxed) != s1 {
            return false;
        }
        *seen = s1;
        true
    }

    /// Whether the XDP program is told to refuse new connections.
    pub fn all_ejected(&self) -> bool {
        self.words.word(FLAGS_WORD).load(Ordering::Relaxed) & ALL_EJECTED != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_config::Config;

    fn spec() -> ProxySpec {
        let c = Config::from_toml_str(
            r#"
            [[route]]
            prefix = "/"
            cluster = "a"
            [[cluster]]
            name = "a"
            endpoints = ["198.18.0.3:80", "198.18.0.4:80", "198.18.0.5:80"]
            [[cluster]]
            name = "b"
            endpoints = ["198.18.0.6:80"]
            "#,
            "t.toml",
        )
        .unwrap();
        ProxySpec::from_config(&c).unwrap()
    }

    fn sets(spec: &ProxySpec) -> Vec<(EligibleSet, EligibleSet)> {
        spec.clusters
            .iter()
            .map(|c| {
                (
                    EligibleSet::none(c.backends.len()),
                    EligibleSet::none(c.backends.len()),
                )
            })
            .collect()
    }

    #[test]
    fn publishes_and_reads_consistent_snapshots() {
        let spec = spec();
        let words: Arc<dyn Words> = Arc::new(MemoryWords::new(64));
        let board = Board::new(&spec, Arc::clone(&words)).unwrap();
        let mut seen = 0;
        let mut out = sets(&spec);
        assert!(board.read(&mut seen, &mut out));
        assert_eq!(out[0].0.count(), 3);
        assert_eq!(out[1].0.count(), 1);
        assert!(!board.read(&mut seen, &mut out), "nothing changed");
        assert!(!board.all_ejected());

        let mut a = EligibleSet::all(3);
        a.remove(1);
        let mut ah = EligibleSet::none(3);
        ah.insert(2);
        let b = EligibleSet::none(1);
        board.publish(&[(&a, &ah), (&b, &EligibleSet::none(1))]);
        assert!(board.read(&mut seen, &mut out));
        assert!(!out[0].0.contains(1) && out[0].0.contains(2));
        assert!(out[0].1.contains(2));
        assert!(out[1].0.is_none());
        assert!(!board.all_ejected(), "cluster a still has backends");

        let none3 = EligibleSet::none(3);
        board.publish(&[(&none3, &none3), (&b, &b)]);
        assert!(board.all_ejected());
        assert_eq!(words.word(FLAGS_WORD).load(Ordering::Relaxed), ALL_EJECTED);
    }

    #[test]
    fn a_write_under_way_is_not_read() {
        let spec = spec();
        let words: Arc<dyn Words> = Arc::new(MemoryWords::new(64));
        let board = Board::new(&spec, Arc::clone(&words)).unwrap();
        let mut seen = 0;
        let mut out = sets(&spec);
        assert!(board.read(&mut seen, &mut out));
        // A writer stopped half way (odd sequence).
        words.word(GENERATION_WORD).fetch_add(1, Ordering::Relaxed);
        assert!(!board.read(&mut seen, &mut out));
    }

    #[test]
    fn too_few_words_is_an_error() {
        let words: Arc<dyn Words> = Arc::new(MemoryWords::new(9));
        assert!(Board::new(&spec(), words).unwrap_err().contains("needs"));
    }

    #[test]
    fn readers_on_other_threads_see_whole_snapshots() {
        let spec = spec();
        let words: Arc<dyn Words> = Arc::new(MemoryWords::new(64));
        let board = Arc::new(Board::new(&spec, words).unwrap());
        let reader = {
            let board = Arc::clone(&board);
            let spec = spec.clone();
            std::thread::spawn(move || {
                let mut seen = 0;
                let mut out = sets(&spec);
                for _ in 0..200_000 {
                    if board.read(&mut seen, &mut out) {
                        // The writer only publishes "all of a" or "none of a"
                        // together with the same for b.
                        let a = out[0].0.count();
                        let b = out[1].0.count();
                        assert!((a, b) == (3, 1) || (a, b) == (0, 0), "torn: {a} {b}");
                    }
                }
            })
        };
        let (all3, all1) = (EligibleSet::all(3), EligibleSet::all(1));
        let (none3, none1) = (EligibleSet::none(3), EligibleSet::none(1));
        for i in 0..20_000 {
            if i % 2 == 0 {
                board.publish(&[(&none3, &none3), (&none1, &none1)]);
            } else {
                board.publish(&[(&all3, &none3), (&all1, &none1)]);
            }
        }
        reader.join().unwrap();
    }
}
