//! The decision component, rule by rule, on a virtual clock.

mod common;

use std::time::Duration;

use common::*;
use sluice_lb::{
    ActiveHealthConfig, BackendState, ClusterHealth, ConfigError, FailureRateConfig, HealthConfig,
    InitialHealth, LoopView, OutcomeKind, ProbeGrant, ProbeTokens,
};

fn ejected_until(c: &ClusterHealth, b: usize) -> Option<sluice_lb::Time> {
    match c.state(b) {
        Some(BackendState::Ejected { until }) => Some(until),
        _ => None,
    }
}

#[test]
fn ejects_after_n_consecutive_5xx() {
    let mut c = cluster(outlier(), 4);
    let g = c.generation();
    http5xx(&mut c, ms(0), 1, 4);
    ok(&mut c, ms(0), 1, 1); // a success breaks the run
    http5xx(&mut c, ms(500), 1, 4);
    assert_eq!(c.state(1), Some(BackendState::Healthy));
    assert_eq!(c.view(1).unwrap().consecutive_5xx, 4);
    assert_eq!(c.generation(), g);

    http5xx(&mut c, ms(1000), 1, 1);
    assert_eq!(ejected_until(&c, 1), Some(ms(1000) + BASE));
    assert!(!c.eligible().contains(1));
    assert_eq!(c.eligible().count(), 3);
    assert_eq!(c.generation(), g + 1);
    let v = c.view(1).unwrap();
    assert_eq!(
        (v.ejections_total, v.backoff_level, v.consecutive_5xx),
        (1, 1, 0)
    );

    // A batch is a run: five in one outcome eject as well.
    http5xx(&mut c, ms(1000), 2, 5);
    assert!(ejected_until(&c, 2).is_some());
}

#[test]
fn consecutive_gateway_failures() {
    let mut o = outlier();
    o.consecutive_5xx = None;
    o.consecutive_gateway_failure = Some(3);
    let mut c = cluster(o, 2);
    reset(&mut c, ms(0), 0, 2);
    http5xx(&mut c, ms(0), 0, 1); // a plain 5xx breaks a gateway run
    reset(&mut c, ms(0), 0, 2);
    assert_eq!(c.state(0), Some(BackendState::Healthy));
    assert_eq!(c.view(0).unwrap().consecutive_gateway_failures, 2);
    record(
        &mut c,
        ms(0),
        0,
        OutcomeKind::from_status(503), // a gateway status counts too
        1,
    );
    assert!(ejected_until(&c, 0).is_some());

    // Gateway failures are 5xx for the 5xx rule.
    let mut c = cluster(outlier(), 2);
    reset(&mut c, ms(0), 1, 2);
    http5xx(&mut c, ms(0), 1, 3);
    assert!(ejected_until(&c, 1).is_some());
}

#[test]
fn local_origin_outcomes_are_neutral() {
    let mut c = cluster(outlier(), 2);
    http5xx(&mut c, ms(0), 0, 4);
    record(&mut c, ms(0), 0, OutcomeKind::LocalOrigin, 100);
    assert_eq!(c.view(0).unwrap().consecutive_5xx, 4);
    http5xx(&mut c, ms(0), 0, 1);
    assert!(ejected_until(&c, 0).is_some());
}

#[test]
fn returns_after_the_ejection() {
    let mut c = cluster(outlier(), 2);
    http5xx(&mut c, ms(0), 0, 5);
    let g = c.generation();
    assert_eq!(c.next_deadline(), Some(ms(0) + BASE));
    // Late outcomes of requests sent before the ejection change nothing.
    ok(&mut c, ms(5_000), 0, 10);
    c.tick(ms(9_999));
    assert!(ejected_until(&c, 0).is_some());
    assert_eq!(c.generation(), g);
    c.tick(ms(10_000));
    assert_eq!(c.state(0), Some(BackendState::Healthy));
    assert!(c.eligible().contains(0));
    assert_eq!(c.generation(), g + 1);
}

#[test]
fn backoff_doubles_up_to_the_cap() {
    let mut o = outlier();
    o.max_ejection = Duration::from_secs(35);
    o.half_open_probes = 1;
    let mut c = cluster(o, 2);
    http5xx(&mut c, secs(0), 0, 5);
    let mut now = secs(0);
    let mut lengths = vec![];
    for _ in 0..4 {
        let until = ejected_until(&c, 0).unwrap();
        lengths.push((until - now).as_secs());
        now = until;
        c.tick(now);
        assert_eq!(c.state(0), Some(BackendState::HalfOpen { probes: 1 }));
        http5xx(&mut c, now, 0, 1); // the probe fails
    }
    // 10, 20, then 40 capped at 35.
    assert_eq!(lengths, vec![10, 20, 35, 35]);
    assert_eq!(c.view(0).unwrap().ejections_total, 5);
}

#[test]
fn ejections_are_forgiven_one_per_healthy_base_interval() {
    let mut c = cluster(outlier(), 2);
    http5xx(&mut c, secs(0), 0, 5); // 10 s, level 1
    c.tick(secs(10)); // back; forgiving starts at 20 s
    assert_eq!(c.next_deadline(), Some(secs(20)));
    http5xx(&mut c, secs(15), 0, 5); // not forgiven yet: 20 s
    assert_eq!(ejected_until(&c, 0), Some(secs(35)));
    assert_eq!(c.view(0).unwrap().backoff_level, 2);

    c.tick(secs(35));
    c.tick(ms(44_999));
    assert_eq!(c.view(0).unwrap().backoff_level, 2);
    c.tick(secs(45));
    assert_eq!(c.view(0).unwrap().backoff_level, 1);
    // A late tick forgives every interval that has passed.
    c.tick(secs(70));
    assert_eq!(c.view(0).unwrap().backoff_level, 0);
    assert_eq!(c.next_deadline(), None);
    http5xx(&mut c, secs(70), 0, 5);
    assert_eq!(ejected_until(&c, 0), Some(secs(80)));
}

#[test]
fn jitter_stays_in_bounds_and_follows_the_seed() {
    let mut o = outlier();
    o.ejection_jitter = Duration::from_secs(2);
    let untils = |seed: u64| {
        let mut c = ClusterHealth::new(
            HealthConfig {
                active: None,
                outlier: o,
            },
            50,
            seed,
        )
        .unwrap();
        (0..50)
            .map(|b| {
                http5xx(&mut c, secs(0), b, 5);
                ejected_until(&c, b).unwrap()
            })
            .collect::<Vec<_>>()
    };
    let a = untils(1);
    for u in &a {
        assert!(*u >= secs(10) && *u < secs(12), "{u:?}");
    }
    let mut distinct = a.clone();
    distinct.sort();
    distinct.dedup();
    assert!(distinct.len() > 40, "jitter spreads returns");
    assert_eq!(untils(1), a, "same seed, same jitter");
    assert_ne!(untils(2), a);
}

#[test]
fn max_ejection_percent_holds() {
    let mut o = outlier();
    o.max_ejection_percent = 30;
    let mut c = cluster(o, 10);
    for b in 0..3 {
        http5xx(&mut c, secs(0), b, 5);
        assert!(ejected_until(&c, b).is_some());
    }
    let g = c.generation();
    http5xx(&mut c, secs(1), 3, 5);
    http5xx(&mut c, secs(1), 3, 1);
    assert_eq!(c.state(3), Some(BackendState::Healthy));
    assert_eq!(c.view(3).unwrap().ejections_blocked, 2);
    assert_eq!(c.generation(), g);
    // Once the others are back, the next failure ejects it.
    c.tick(secs(10));
    assert_eq!(c.eligible().count(), 10);
    http5xx(&mut c, secs(11), 3, 1);
    assert!(ejected_until(&c, 3).is_some());
}

#[test]
fn at_least_one_backend_may_be_ejected_and_zero_percent_ejects_none() {
    let mut o = outlier();
    o.max_ejection_percent = 10; // 10 % of 5 rounds down to 0
    let mut c = cluster(o, 5);
    http5xx(&mut c, secs(0), 0, 5);
    http5xx(&mut c, secs(0), 1, 5);
    assert!(ejected_until(&c, 0).is_some());
    assert_eq!(c.state(1), Some(BackendState::Healthy));

    o.max_ejection_percent = 0;
    let mut c = cluster(o, 5);
    http5xx(&mut c, secs(0), 0, 50);
    assert_eq!(c.state(0), Some(BackendState::Healthy));
}

#[test]
fn half_open_backends_count_against_the_cap() {
    let mut o = outlier();
    o.max_ejection_percent = 10; // one of 10
    o.half_open_probes = 1;
    let mut c = cluster(o, 10);
    http5xx(&mut c, secs(0), 0, 5);
    c.tick(secs(10));
    assert!(matches!(c.state(0), Some(BackendState::HalfOpen { .. })));
    http5xx(&mut c, secs(10), 1, 5);
    assert_eq!(c.state(1), Some(BackendState::Healthy), "blocked");
    ok(&mut c, secs(10), 0, 1); // probe heals 0
    http5xx(&mut c, secs(11), 1, 1);
    assert!(ejected_until(&c, 1).is_some());
}

#[test]
fn probe_budget_is_shared_by_loops_and_success_heals() {
    let mut o = outlier();
    o.half_open_probes = 2;
    let mut c = cluster(o, 3);
    http5xx(&mut c, secs(0), 0, 4);
    ok(&mut c, secs(0), 0, 1);
    http5xx(&mut c, secs(0), 0, 5);
    c.tick(secs(10));
    assert_eq!(c.state(0), Some(BackendState::HalfOpen { probes: 2 }));
    assert!(c.eligible().contains(0) && c.half_open().contains(0));
    let grant = c.grants()[0];
    assert_eq!(grant.tokens, 2);
    assert_ne!(grant.seq, 0);
    assert_eq!(c.grants()[1], ProbeGrant::NONE);

    let tokens = ProbeTokens::new(3);
    tokens.sync(c.grants());
    let (mut loop_a, mut loop_b) = (LoopView::new(3), LoopView::new(3));
    assert!(loop_a.refresh_from(&c) && loop_b.refresh_from(&c));
    assert!(loop_a.admit(0, &tokens));
    assert!(loop_b.admit(0, &tokens));
    assert!(!loop_a.admit(0, &tokens), "two probes in all");
    assert!(!loop_a.eligible().contains(0), "dropped from loop a's copy");
    assert!(!loop_b.admit(0, &tokens));
    assert!(loop_a.admit(1, &tokens) && loop_b.admit(2, &tokens));
    tokens.sync(c.grants()); // republishing does not refill
    assert_eq!(tokens.remaining(0), 0);

    // The first probe answer heals it; counters start over.
    ok(&mut c, secs(10), 0, 1);
    assert_eq!(c.state(0), Some(BackendState::Healthy));
    assert!(c.half_open().is_none());
    assert_eq!(c.grants()[0], ProbeGrant::NONE);
    assert_eq!(c.view(0).unwrap().consecutive_5xx, 0);
    assert!(loop_a.refresh_from(&c));
    assert!(loop_a.admit(0, &tokens), "healthy needs no token");
}

#[test]
fn failed_probe_re_ejects_with_a_longer_backoff() {
    let mut o = outlier();
    o.half_open_probes = 3;
    let mut c = cluster(o, 2);
    http5xx(&mut c, secs(0), 1, 5);
    c.tick(secs(10));
    reset(&mut c, secs(11), 1, 1);
    assert_eq!(ejected_until(&c, 1), Some(secs(31)));
    assert!(!c.eligible().contains(1) && c.half_open().is_none());
    assert_eq!(c.grants()[1], ProbeGrant::NONE);
}

#[test]
fn lost_probes_are_regranted_after_the_probe_timeout() {
    let mut o = outlier();
    o.half_open_probes = 1;
    let mut c = cluster(o, 2);
    http5xx(&mut c, secs(0), 0, 5);
    c.tick(secs(10));
    let first = c.grants()[0];
    let tokens = ProbeTokens::new(2);
    tokens.sync(c.grants());
    assert!(tokens.try_take(0));
    // The probe's client went away: no verdict.
    record(&mut c, secs(11), 0, OutcomeKind::LocalOrigin, 1);
    let g = c.generation();
    assert_eq!(c.next_deadline(), Some(secs(15)));
    c.tick(ms(14_999));
    assert_eq!(c.generation(), g);
    c.tick(secs(15));
    assert_eq!(c.generation(), g + 1);
    assert_ne!(c.grants()[0].seq, first.seq);
    tokens.sync(c.grants());
    assert_eq!(tokens.remaining(0), 1);
}

#[test]
fn failure_rate_needs_the_minimum_request_count() {
    let mut o = outlier();
    o.consecutive_5xx = None;
    o.failure_rate = Some(FailureRateConfig {
        window: Duration::from_secs(10),
        buckets: 10,
        threshold_percent: 50,
        min_requests: 10,
    });
    let mut c = cluster(o, 3);
    // 9 failures of 9: over the threshold but under the minimum.
    http5xx(&mut c, secs(0), 0, 9);
    assert_eq!(c.state(0), Some(BackendState::Healthy));
    assert_eq!(c.view(0).unwrap().window_requests, 9);
    http5xx(&mut c, secs(1), 0, 1);
    assert!(ejected_until(&c, 0).is_some());

    // 40 %, 45 %, then 50 % (the threshold is inclusive).
    ok(&mut c, secs(1), 1, 6);
    http5xx(&mut c, secs(1), 1, 4);
    http5xx(&mut c, secs(1), 1, 1);
    assert_eq!(c.state(1), Some(BackendState::Healthy));
    http5xx(&mut c, secs(1), 1, 1);
    assert!(ejected_until(&c, 1).is_some());

    // Failures older than the window no longer count: the 1..2 s bucket
    // leaves the window at 11 s.
    http5xx(&mut c, secs(1), 2, 5);
    http5xx(&mut c, secs(11), 2, 5);
    assert_eq!(c.state(2), Some(BackendState::Healthy));
    assert_eq!(c.view(2).unwrap().window_requests, 5);
    http5xx(&mut c, ms(11_500), 2, 5);
    assert!(ejected_until(&c, 2).is_some());
}

#[test]
fn active_health_thresholds() {
    let config = HealthConfig {
        active: Some(ActiveHealthConfig {
            healthy_threshold: 2,
            unhealthy_threshold: 3,
            initial: InitialHealth::Unhealthy,
        }),
        outlier: outlier(),
    };
    let mut c = ClusterHealth::new(config, 2, 1).unwrap();
    assert!(c.all_ineligible());
    assert_eq!(c.state(0), Some(BackendState::Unhealthy));
    check(&mut c, ms(0), 0, true);
    check(&mut c, ms(1), 0, false); // breaks the run of passes
    check(&mut c, ms(2), 0, true);
    assert_eq!(c.state(0), Some(BackendState::Unhealthy));
    check(&mut c, ms(3), 0, true);
    assert_eq!(c.state(0), Some(BackendState::Healthy));
    assert!(!c.all_ineligible());

    check(&mut c, ms(4), 0, false);
    check(&mut c, ms(5), 0, false);
    check(&mut c, ms(6), 0, true); // breaks the run of failures
    check(&mut c, ms(7), 0, false);
    check(&mut c, ms(8), 0, false);
    assert!(c.eligible().contains(0));
    check(&mut c, ms(9), 0, false);
    assert_eq!(c.state(0), Some(BackendState::Unhealthy));
    assert!(c.all_ineligible());
}

#[test]
fn unhealthy_wins_over_ejected_for_display() {
    let config = HealthConfig {
        active: Some(ActiveHealthConfig {
            healthy_threshold: 1,
            unhealthy_threshold: 1,
            initial: InitialHealth::Healthy,
        }),
        outlier: outlier(),
    };
    let mut c = ClusterHealth::new(config, 2, 1).unwrap();
    http5xx(&mut c, secs(0), 0, 5);
    let g = c.generation();
    check(&mut c, secs(1), 0, false);
    let v = c.view(0).unwrap();
    assert_eq!(v.state, BackendState::Unhealthy);
    assert_eq!(v.ejected_until, Some(secs(10)));
    assert_eq!(c.generation(), g, "it was already ineligible");
    c.tick(secs(10)); // ejection over, still failing checks
    assert!(!c.eligible().contains(0));
    check(&mut c, secs(11), 0, true);
    assert!(c.eligible().contains(0));
}

#[test]
fn generation_changes_exactly_when_the_published_state_does() {
    let mut o = outlier();
    o.half_open_probes = 1;
    o.max_ejection_percent = 50; // one of two
    let config = HealthConfig {
        active: Some(ActiveHealthConfig {
            healthy_threshold: 1,
            unhealthy_threshold: 2,
            initial: InitialHealth::Healthy,
        }),
        outlier: o,
    };
    let mut c = ClusterHealth::new(config, 2, 7).unwrap();
    assert_eq!(c.generation(), 1);
    let mut last = c.generation();
    let mut step = |c: &ClusterHealth, expect_bump: bool, what: &str| {
        assert_eq!(c.generation() != last, expect_bump, "{what}");
        assert!(c.generation() >= last);
        last = c.generation();
    };
    http5xx(&mut c, secs(0), 0, 4);
    step(&c, false, "failures under the threshold");
    record(&mut c, secs(0), 0, OutcomeKind::LocalOrigin, 3);
    step(&c, false, "local outcomes");
    http5xx(&mut c, secs(0), 0, 1);
    step(&c, true, "ejection");
    c.tick(secs(5));
    step(&c, false, "time passing inside the ejection");
    http5xx(&mut c, secs(5), 1, 5);
    step(&c, false, "ejection refused by the cap");
    check(&mut c, secs(6), 1, false);
    step(&c, false, "one failed check of two");
    check(&mut c, secs(6), 1, true);
    step(&c, false, "passed check while healthy");
    c.tick(secs(10));
    step(&c, true, "half-open");
    c.tick(secs(12));
    step(&c, false, "half-open, waiting");
    ok(&mut c, secs(12), 0, 1);
    step(&c, true, "probe success");
    c.tick(secs(22));
    step(&c, false, "ejection forgiven");
    c.set_backends(secs(22), &[Some(0), Some(1)]).unwrap();
    step(&c, false, "same membership");
    c.set_backends(secs(22), &[Some(0), Some(1), None]).unwrap();
    step(&c, true, "backend added");
    check(&mut c, secs(23), 2, false);
    check(&mut c, secs(23), 2, false);
    step(&c, true, "active check failed twice");
}

#[test]
fn all_ineligible_flag() {
    let mut c = cluster(outlier(), 2);
    assert!(!c.all_ineligible());
    http5xx(&mut c, secs(0), 0, 5);
    assert!(!c.all_ineligible());
    http5xx(&mut c, secs(1), 1, 5);
    assert!(c.all_ineligible());
    assert!(c.eligible().is_none());
    c.tick(secs(10));
    assert!(!c.all_ineligible());
    assert!(cluster(outlier(), 0).all_ineligible());
}

#[test]
fn membership_change_carries_state() {
    let mut c = cluster(outlier(), 3);
    http5xx(&mut c, secs(0), 1, 5);
    http5xx(&mut c, secs(0), 2, 3);
    c.set_backends(secs(1), &[Some(1), None, Some(2)]).unwrap();
    assert_eq!(c.backends(), 3);
    assert_eq!(ejected_until(&c, 0), Some(secs(10)));
    assert_eq!(c.state(1), Some(BackendState::Healthy));
    assert_eq!(c.view(2).unwrap().consecutive_5xx, 3);
    assert_eq!(c.eligible().iter().collect::<Vec<_>>(), vec![1, 2]);
}

#[test]
fn invalid_configs_are_refused() {
    let bad = |f: fn(&mut HealthConfig)| {
        let mut h = HealthConfig {
            active: Some(ActiveHealthConfig::default()),
            outlier: outlier(),
        };
        f(&mut h);
        matches!(ClusterHealth::new(h, 1, 0), Err(ConfigError::Invalid(_)))
    };
    assert!(bad(|h| h.outlier.consecutive_5xx = Some(0)));
    assert!(bad(|h| h.outlier.base_ejection = Duration::ZERO));
    assert!(bad(|h| h.outlier.max_ejection = Duration::from_secs(1)));
    assert!(bad(|h| h.outlier.max_ejection_percent = 101));
    assert!(bad(|h| h.active.as_mut().unwrap().healthy_threshold = 0));
    assert!(bad(|h| {
        h.outlier.failure_rate = Some(FailureRateConfig {
            buckets: 0,
            ..FailureRateConfig::default()
        })
    }));
    assert!(bad(|h| {
        h.outlier.failure_rate = Some(FailureRateConfig {
            threshold_percent: 0,
            ..FailureRateConfig::default()
        })
    }));
    assert!(!bad(|_| {}));
    assert!(HealthConfig::default().validate().is_ok());
}
