//! The set of backends a balancer may pick: a bitmap in `u64` words.
//!
//! The decision component ([`crate::ClusterHealth`]) produces one; the main
//! thread publishes its words (into a BPF array map or shared memory); each
//! loop copies them into its own set when the generation changes
//! ([`EligibleSet::copy_from_words`], no allocation) and balances over that
//! copy. Bit `i` is backend `i` of the cluster, in the cluster's own order.

/// A fixed-size bitmap of backend indices.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EligibleSet {
    words: Vec<u64>,
    backends: usize,
}

impl EligibleSet {
    /// Every one of `backends` backends eligible.
    pub fn all(backends: usize) -> Self {
        let mut s = Self::none(backends);
        for i in 0..backends {
            s.insert(i);
        }
        s
    }

    /// `backends` backends, none eligible.
    pub fn none(backends: usize) -> Self {
        EligibleSet {
            words: vec![0; backends.div_ceil(64)],
            backends,
        }
    }

    /// From a `[bool]` per backend.
    pub fn from_bools(bits: &[bool]) -> Self {
        let mut s = Self::none(bits.len());
        for (i, _) in bits.iter().enumerate().filter(|(_, b)| **b) {
            s.insert(i);
        }
        s
    }

    /// How many backends the set describes (eligible or not).
    pub fn backends(&self) -> usize {
        self.backends
    }

    /// The bitmap: bit `i % 64` of word `i / 64` is backend `i`; bits past
    /// [`Self::backends`] are zero. This is the layout to publish.
    pub fn words(&self) -> &[u64] {
        &self.words
    }

    /// Overwrites the set with published words (the layout of
    /// [`Self::words`]); bits past [`Self::backends`] are ignored and words
    /// missing from `words` read as zero. Never allocates.
    pub fn copy_from_words(&mut self, words: &[u64]) {
        for (i, w) in self.words.iter_mut().enumerate() {
            *w = words.get(i).copied().unwrap_or(0);
        }
        self.clear_tail();
    }

    pub fn contains(&self, backend: usize) -> bool {
        backend < self.backends && self.words[backend / 64] & (1 << (backend % 64)) != 0
    }

    /// Marks `backend` eligible; out-of-range indices are ignored.
    pub fn insert(&mut self, backend: usize) {
        if backend < self.backends {
            self.words[backend / 64] |= 1 << (backend % 64);
        }
    }

    /// Marks `backend` ineligible; out-of-range indices are ignored.
    pub fn remove(&mut self, backend: usize) {
        if backend < self.backends {
            self.words[backend / 64] &= !(1 << (backend % 64));
        }
    }

    /// Sets the bit of `backend` to `on`.
    pub fn set(&mut self, backend: usize, on: bool) {
        if on {
            self.insert(backend)
        } else {
            self.remove(backend)
        }
    }

    /// Number of eligible backends.
    pub fn count(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// True when no backend is eligible.
    pub fn is_none(&self) -> bool {
        self.words.iter().all(|w| *w == 0)
    }

    /// The `n`-th eligible backend (0-based, in index order), if there are
    /// more than `n`. O(words + 64): one popcount per word.
    pub fn nth(&self, mut n: usize) -> Option<usize> {
        for (wi, &w) in self.words.iter().enumerate() {
            let ones = w.count_ones() as usize;
            if n < ones {
                let mut w = w;
                for _ in 0..n {
                    w &= w - 1; // clear the lowest set bit
                }
                return Some(wi * 64 + w.trailing_zeros() as usize);
            }
            n -= ones;
        }
        None
    }

    /// The eligible backends in index order.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.backends).filter(|&i| self.contains(i))
    }

    fn clear_tail(&mut self) {
        let r = self.backends % 64;
        if r != 0 {
            if let Some(last) = self.words.last_mut() {
                *last &= (1u64 << r) - 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_count_and_nth() {
        let mut s = EligibleSet::none(130);
        assert!(s.is_none());
        for i in [0, 63, 64, 100, 129] {
            s.insert(i);
        }
        s.insert(130); // out of range: ignored
        assert_eq!(s.count(), 5);
        assert_eq!(s.nth(0), Some(0));
        assert_eq!(s.nth(1), Some(63));
        assert_eq!(s.nth(2), Some(64));
        assert_eq!(s.nth(4), Some(129));
        assert_eq!(s.nth(5), None);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![0, 63, 64, 100, 129]);
        s.remove(63);
        assert!(!s.contains(63) && s.contains(64));
        assert_eq!(EligibleSet::all(130).count(), 130);
        assert_eq!(
            EligibleSet::from_bools(&[true, false, true]),
            EligibleSet::from_bools(&[true, false, true])
        );
    }

    #[test]
    fn copy_from_words_masks_the_tail() {
        let mut s = EligibleSet::none(70);
        s.copy_from_words(&[u64::MAX, u64::MAX, u64::MAX]);
        assert_eq!(s.count(), 70);
        assert_eq!(s.words()[1], (1 << 6) - 1);
        s.copy_from_words(&[1]);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![0]);
    }
}
