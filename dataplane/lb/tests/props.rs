//! Property tests: WRR proportions, Maglev determinism.

use proptest::prelude::*;
use sluice_lb::{EligibleSet, Maglev, MaglevBackend, RoundRobin};

proptest! {
    /// From a fresh start, any run of W picks (W the total eligible
    /// weight) gives each eligible backend exactly its weight, and every
    /// prefix stays within one pick above its ideal share.
    #[test]
    fn wrr_exact_per_cycle(
        weights in prop::collection::vec(1u32..20, 1..12),
        mask in prop::collection::vec(any::<bool>(), 12),
        cycles in 1usize..4,
    ) {
        let n = weights.len();
        let mut eligible = EligibleSet::none(n);
        for i in (0..n).filter(|&i| mask[i]) {
            eligible.insert(i);
        }
        let mut rr = RoundRobin::new(&weights).unwrap();
        if eligible.is_none() {
            prop_assert_eq!(rr.pick(&eligible), None);
            return Ok(());
        }
        let total: u64 = eligible.iter().map(|i| u64::from(weights[i])).sum();
        let mut count = vec![0u64; n];
        for k in 1..=(total * cycles as u64) {
            let b = rr.pick(&eligible).unwrap();
            prop_assert!(eligible.contains(b));
            count[b] += 1;
            for i in eligible.iter() {
                // count_i <= k * w_i / W + 1
                prop_assert!(count[i] * total <= k * u64::from(weights[i]) + total);
            }
            if k % total == 0 {
                for i in eligible.iter() {
                    prop_assert_eq!(count[i], u64::from(weights[i]) * (k / total));
                }
            }
        }
    }

    /// The same set of (address, weight) gives the same slot → address
    /// mapping whatever the input order, and building twice is identical.
    #[test]
    fn maglev_deterministic(
        backends in prop::collection::btree_map("[a-z0-9.:]{1,12}", 1u32..5, 1..20),
        seed in any::<u64>(),
    ) {
        let list: Vec<(String, u32)> = backends.into_iter().collect();
        let mut shuffled = list.clone();
        // A seeded Fisher-Yates shuffle.
        let mut rng = sluice_lb::SplitMix64::new(seed);
        for i in (1..shuffled.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            shuffled.swap(i, j);
        }
        let build = |l: &[(String, u32)]| {
            let mb: Vec<MaglevBackend<'_>> = l
                .iter()
                .map(|(a, w)| MaglevBackend { address: a, weight: *w })
                .collect();
            Maglev::build(&mb, 251).unwrap()
        };
        let (m1, m2) = (build(&list), build(&shuffled));
        prop_assert_eq!(&m1, &build(&list));
        for (x, y) in m1.table().iter().zip(m2.table()) {
            prop_assert_eq!(&list[usize::from(*x)].0, &shuffled[usize::from(*y)].0);
        }
        // Every backend owns at least one slot.
        let mut owned = vec![false; list.len()];
        for &b in m1.table() {
            owned[usize::from(b)] = true;
        }
        prop_assert!(owned.iter().all(|o| *o));
    }
}
