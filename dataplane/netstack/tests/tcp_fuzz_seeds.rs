//! The `tcp_segment` fuzz target's harness (sluice_netstack::tcp::testing)
//! as a normal test: the committed seeds, and random inputs via proptest.

use proptest::collection::vec;
use proptest::prelude::{any, proptest, ProptestConfig};
use sluice_netstack::tcp::testing::exercise;

#[test]
fn fuzz_seeds_keep_invariants() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("tcpseg-")
        {
            exercise(&std::fs::read(&p).unwrap());
            n += 1;
        }
    }
    assert!(n >= 5, "tcp_segment seeds present");
}

#[test]
fn empty_input_winds_down() {
    exercise(&[]);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        rng_seed: proptest::test_runner::RngSeed::Fixed(7),
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_inputs_keep_invariants(data in vec(any::<u8>(), 0..2048)) {
        exercise(&data);
    }
}
