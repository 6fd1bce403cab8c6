//! Maglev consistent hashing (Eisenbud et al., NSDI 2016, §3.4), weighted.
//!
//! The table is a `Vec<u16>` of `M` slots (`M` prime, default 65537), each
//! the index of a backend; a key goes to slot `hash_key(key) % M`.
//!
//! Deterministic for a configuration, whatever the process, machine or
//! input order:
//! - backends are filled in the order of their address string (byte-wise),
//!   so the input order does not matter (the values stored are still the
//!   caller's indices, so they line up with the eligibility bitmap);
//! - a backend's permutation is `offset + j * skip (mod M)` with
//!   `offset = xxh64(address, 0) % M` and `skip = xxh64(address, 1) %
//!   (M - 1) + 1` (XXH64, [`crate::hash`]; Envoy uses the same two seeds);
//! - weights: in every round of the fill, each backend earns its weight in
//!   credit and takes one turn per `max_weight` of credit, so the heaviest
//!   backend takes a turn every round and one of half its weight every
//!   other round; its share of slots follows its weight.
//!
//! Ineligible backends (ejected, unhealthy) are handled at lookup by walking
//! forward from the key's slot to the first slot whose backend is eligible,
//! instead of rebuilding the table without them. Why: an ejection is
//! transient (tens of seconds) and decided at the rate failures happen;
//! a rebuild costs `O(M log M)` on the main thread and a 128 KiB republish
//! to every loop and the BPF map each time, and even Maglev's minimal
//! disruption moves a few keys between *healthy* backends on each rebuild
//! and back when the backend returns. Walking moves only the keys of the
//! ineligible backend, which land on the backend of the next slot: slots
//! are filled from independent permutations, so that spreads them about in
//! proportion to weight. The table is rebuilt when membership or weights
//! change (config, discovery), as Envoy rebuilds on a host-set change.
//! The walk is bounded by `M` and by the eligible count: with no backend
//! eligible [`Maglev::pick`] returns `None` at once.

use crate::eligible::EligibleSet;
use crate::error::ConfigError;
use crate::hash::{xxh64, OFFSET_SEED, SKIP_SEED};

/// One backend of a Maglev table: its stable key and weight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaglevBackend<'a> {
    /// The key the table is built from, normally "address:port"; unique in
    /// the cluster.
    pub address: &'a str,
    /// At least 1.
    pub weight: u32,
}

/// A built Maglev lookup table. Build once (main thread or control
/// process), share read-only with every loop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Maglev {
    table: Vec<u16>,
    backends: usize,
}

impl Maglev {
    /// Google's and Envoy's default: prime, about 650 slots per backend for
    /// 100 backends.
    pub const DEFAULT_TABLE_SIZE: usize = 65537;

    /// Builds the table for `backends` (index `i` in the table is
    /// `backends[i]`). `table_size` must be prime and at least the backend
    /// count; use [`Self::DEFAULT_TABLE_SIZE`] outside tests.
    pub fn build(backends: &[MaglevBackend<'_>], table_size: usize) -> Result<Self, ConfigError> {
        let weights: Vec<u32> = backends.iter().map(|b| b.weight).collect();
        crate::error::check_weights(&weights)?;
        if !is_prime(table_size) {
            return Err(ConfigError::NotPrime(table_size));
        }
        if table_size < backends.len() {
            return Err(ConfigError::TableTooSmall {
                table_size,
                backends: backends.len(),
            });
        }
        let mut order: Vec<usize> = (0..backends.len()).collect();
        order.sort_by(|&a, &b| backends[a].address.cmp(backends[b].address));
        if let Some(w) = order
            .windows(2)
            .find(|w| backends[w[0]].address == backends[w[1]].address)
        {
            return Err(ConfigError::DuplicateAddress(
                backends[w[0]].address.to_string(),
            ));
        }

        struct Fill {
            index: u16,
            pos: u64,
            skip: u64,
            weight: u64,
            credit: u64,
        }
        let m = table_size as u64;
        let mut fills: Vec<Fill> = order
            .iter()
            .map(|&i| {
                let a = backends[i].address.as_bytes();
                Fill {
                    index: i as u16, // < u16::MAX: checked by check_weights
                    pos: xxh64(a, OFFSET_SEED) % m,
                    skip: xxh64(a, SKIP_SEED) % (m - 1) + 1,
                    weight: u64::from(backends[i].weight),
                    credit: 0,
                }
            })
            .collect();
        let max_weight = fills.iter().map(|f| f.weight).max().unwrap_or(1);

        let mut table = vec![0u16; table_size];
        let mut taken = vec![false; table_size];
        let mut filled = 0;
        'rounds: loop {
            for f in &mut fills {
                f.credit += f.weight;
                if f.credit < max_weight {
                    continue;
                }
                f.credit -= max_weight;
                // The next free slot of this backend's permutation; one
                // exists because the permutation visits every slot and
                // the table is not full.
                while taken[f.pos as usize] {
                    f.pos = (f.pos + f.skip) % m;
                }
                table[f.pos as usize] = f.index;
                taken[f.pos as usize] = true;
                f.pos = (f.pos + f.skip) % m;
                filled += 1;
                if filled == table_size {
                    break 'rounds;
                }
            }
        }
        Ok(Maglev {
            table,
            backends: backends.len(),
        })
    }

    /// Backend index per slot: what the control process writes into the
    /// BPF map.
    pub fn table(&self) -> &[u16] {
        &self.table
    }

    pub fn table_size(&self) -> usize {
        self.table.len()
    }

    pub fn backends(&self) -> usize {
        self.backends
    }

    /// The slot of a key hash ([`crate::hash_key`]).
    pub fn slot(&self, key_hash: u64) -> usize {
        (key_hash % self.table.len() as u64) as usize
    }

    /// The key's backend, eligible or not.
    pub fn lookup(&self, key_hash: u64) -> usize {
        usize::from(self.table[self.slot(key_hash)])
    }

    /// The key's backend if eligible, else the backend of the first later
    /// slot (wrapping) that is; `None` if no backend is eligible. No
    /// allocation; see the module doc for why this walks.
    pub fn pick(&self, key_hash: u64, eligible: &EligibleSet) -> Option<usize> {
        if eligible.is_none() {
            return None;
        }
        let start = self.slot(key_hash);
        let (wrapped, from_start) = self.table.split_at(start);
        from_start
            .iter()
            .chain(wrapped)
            .map(|&b| usize::from(b))
            .find(|&b| eligible.contains(b))
    }
}

fn is_prime(n: usize) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backends(names: &[&'static str]) -> Vec<MaglevBackend<'static>> {
        names
            .iter()
            .map(|a| MaglevBackend {
                address: a,
                weight: 1,
            })
            .collect()
    }

    #[test]
    fn primes() {
        let p: Vec<usize> = (0..30).filter(|&n| is_prime(n)).collect();
        assert_eq!(p, vec![2, 3, 5, 7, 11, 13, 17, 19, 23, 29]);
        assert!(is_prime(65537));
        assert!(!is_prime(65535));
    }

    #[test]
    fn refuses_bad_configs() {
        let b = backends(&["a", "b"]);
        assert_eq!(Maglev::build(&b, 12), Err(ConfigError::NotPrime(12)));
        assert_eq!(
            Maglev::build(&b, 1),
            Err(ConfigError::NotPrime(1)),
            "1 is not prime"
        );
        assert_eq!(
            Maglev::build(&backends(&["a", "b", "c"]), 2),
            Err(ConfigError::TableTooSmall {
                table_size: 2,
                backends: 3
            })
        );
        assert_eq!(
            Maglev::build(&backends(&["a", "b", "a"]), 13),
            Err(ConfigError::DuplicateAddress("a".into()))
        );
        assert_eq!(Maglev::build(&[], 13), Err(ConfigError::NoBackends));
    }

    #[test]
    fn walks_past_ineligible() {
        let b = backends(&["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]);
        let m = Maglev::build(&b, 101).unwrap();
        let mut e = EligibleSet::all(3);
        e.remove(1);
        for h in 0..1000u64 {
            let home = m.lookup(h);
            let got = m.pick(h, &e).unwrap();
            if home == 1 {
                assert_ne!(got, 1);
                // The first eligible slot after the key's.
                let s = m.slot(h);
                let next = (1..101)
                    .map(|k| usize::from(m.table()[(s + k) % 101]))
                    .find(|&x| x != 1)
                    .unwrap();
                assert_eq!(got, next);
            } else {
                assert_eq!(got, home, "keys of eligible backends never move");
            }
        }
        assert_eq!(m.pick(7, &EligibleSet::none(3)), None);
    }
}
