//! The request path against the decision component: balancers follow the
//! published eligibility and the probe budget holds across loops.

mod common;

use std::sync::Arc;

use common::*;
use sluice_lb::{
    hash_key, Balancer, LeastRequest, LoopView, Maglev, MaglevBackend, ProbeTokens, RoundRobin,
    SplitMix64,
};

fn balancers(n: usize) -> Vec<Balancer> {
    let addrs: Vec<String> = (0..n).map(|i| format!("198.18.2.{i}:80")).collect();
    let mb: Vec<MaglevBackend<'_>> = addrs
        .iter()
        .map(|a| MaglevBackend {
            address: a,
            weight: 1,
        })
        .collect();
    vec![
        Balancer::RoundRobin(RoundRobin::new(&vec![1; n]).unwrap()),
        Balancer::LeastRequest(LeastRequest::new(&vec![1; n], 9).unwrap()),
        Balancer::Maglev {
            table: Arc::new(Maglev::build(&mb, 1009).unwrap()),
            rng: SplitMix64::new(3),
        },
    ]
}

#[test]
fn every_balancer_skips_ejected_backends() {
    let mut c = cluster(outlier(), 5);
    http5xx(&mut c, secs(0), 1, 5);
    http5xx(&mut c, secs(0), 3, 5);
    let mut view = LoopView::new(5);
    view.refresh_from(&c);
    for mut b in balancers(5) {
        let mut seen = [0u32; 5];
        for k in 0..3000u32 {
            let key = (k % 2 == 0).then(|| hash_key(&k.to_le_bytes()));
            let i = b.pick(view.eligible(), key).unwrap();
            seen[i] += 1;
            b.start(i);
            b.finish(i);
        }
        assert_eq!((seen[1], seen[3]), (0, 0), "{b:?}");
        for i in [0, 2, 4] {
            assert!(seen[i] > 500, "{seen:?} {b:?}");
        }
    }
    // Everything ejected: no pick at all.
    let mut o = outlier();
    o.max_ejection_percent = 100;
    let mut c = cluster(o, 2);
    http5xx(&mut c, secs(0), 0, 5);
    http5xx(&mut c, secs(0), 1, 5);
    let mut view = LoopView::new(2);
    view.refresh_from(&c);
    for mut b in balancers(2) {
        assert_eq!(b.pick(view.eligible(), Some(1)), None);
    }
}

#[test]
fn probe_budget_holds_across_loops_and_balancers() {
    let mut o = outlier();
    o.half_open_probes = 3;
    let mut c = cluster(o, 4);
    http5xx(&mut c, secs(0), 2, 5);
    c.tick(secs(10));
    let tokens = ProbeTokens::new(4);
    tokens.sync(c.grants());

    // Four loops, each with its own balancer and copy of the sets.
    let mut loops: Vec<(LoopView, Balancer)> = (0..4)
        .map(|i| {
            let mut v = LoopView::new(4);
            v.refresh_from(&c);
            let b = balancers(4).swap_remove(i % 3);
            (v, b)
        })
        .collect();
    let mut to_2 = 0;
    let mut picks = 0;
    for round in 0..500u32 {
        for (view, bal) in &mut loops {
            let key = hash_key(&round.to_le_bytes());
            let b = view.pick_admitted(&tokens, |e| bal.pick(e, Some(key)));
            let b = b.expect("three backends are healthy");
            picks += 1;
            if b == 2 {
                to_2 += 1;
            }
        }
    }
    assert_eq!(picks, 2000);
    assert_eq!(
        to_2, 3,
        "exactly the granted probes reach the half-open backend"
    );
    for (view, _) in &loops {
        assert!(!view.eligible().contains(2));
    }
    // A probe succeeds: the backend is healthy and every loop uses it again.
    ok(&mut c, secs(11), 2, 1);
    for (view, bal) in &mut loops {
        assert!(view.refresh_from(&c));
        let n = (0..300u32)
            .filter(|k| {
                let key = hash_key(&k.to_be_bytes());
                view.pick_admitted(&tokens, |e| bal.pick(e, Some(key))) == Some(2)
            })
            .count();
        assert!(n > 30, "{n}");
    }
}
