//! Properties of `ours` over generated runs (scenario, seed, headroom on or off), checked
//! in the simulated world as each decision is carried out: no flapping, the disruption
//! budget is never exceeded, a replacement is Ready before its drain starts, and every
//! scale-up for pending pods had a pending pod. The issue-12 property tests.

use proptest::prelude::*;
use simulator::scenario::{Loaded, Scenario};
use simulator::{run_policies, PolicyKind};

fn load(name: &str) -> Loaded {
    let (sc, path) = Scenario::load(name).expect("built-in scenario parses");
    sc.resolve(path.as_deref(), None)
        .expect("built-in scenario resolves")
}

/// Pods a drain-back or rebalance removal planned to evict, read from its reason
/// (`...; its N pod(s) fit elsewhere`).
fn planned_evictions(reason: &str) -> u64 {
    reason
        .split_once("; its ")
        .and_then(|(_, rest)| rest.split_once(' '))
        .and_then(|(n, _)| n.parse().ok())
        .expect("a replacement removal names its pods")
}

proptest! {
    // Each case is a full replay (seconds in a debug build): few cases, many properties.
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    #[test]
    fn ours_never_flaps_keeps_its_budget_replaces_before_draining_and_scales_for_pods(
        scenario in prop::sample::select(vec!["front-outage-return", "onsale", "az-imbalance", "tv-peak-ice"]),
        seed in 0u64..10_000,
        headroom in any::<bool>(),
    ) {
        let mut loaded = load(scenario);
        loaded.scenario.autoscaler.headroom.enabled = headroom;
        let budget = u64::from(loaded.scenario.autoscaler.balance.evictions_per_hour);
        let mut r = run_policies(&loaded, &[PolicyKind::Ours], Some(seed), &|_| {});
        let ours = r.policies.remove("ours").expect("ours ran");
        prop_assert_eq!(ours.young_removals, 0, "a node removed within 10 min of its launch");
        prop_assert_eq!(ours.scale_ups_without_pending, 0, "a scale-up with no pending pod");
        prop_assert_eq!(
            ours.drains_before_replacement_ready, 0,
            "a drain started before its replacement was Ready"
        );
        // Rebalancing and drain-back share `evictions_per_hour` per balance set.
        let voluntary: Vec<(u64, u64)> = ours
            .decisions
            .iter()
            .filter(|d| d.kind == "RemoveNode:Rebalance" || d.kind == "RemoveNode:DrainBack")
            .map(|d| (d.t_s, planned_evictions(&d.reason)))
            .collect();
        let sets = ours.balance_sets.max(1) as u64;
        for &(t, _) in &voluntary {
            let in_hour: u64 = voluntary
                .iter()
                .filter(|(at, _)| *at <= t && t < at + 3600)
                .map(|(_, n)| n)
                .sum();
            prop_assert!(
                in_hour <= budget * sets,
                "{} pods evicted by replacements in the hour to {} s; budget {} x {} sets",
                in_hour, t, budget, sets
            );
        }
    }
}
