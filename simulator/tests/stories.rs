//! The operators' stories, asserted on the built-in scenarios.

use simulator::scenario::{Loaded, Scenario};
use simulator::{run_policies, PolicyKind, Report};
use std::path::PathBuf;

fn load(name: &str) -> Loaded {
    let (sc, path) = Scenario::load(name).expect("built-in scenario parses");
    sc.resolve(path.as_deref(), None)
        .expect("built-in scenario resolves")
}

fn both(loaded: &Loaded) -> Report {
    run_policies(
        loaded,
        &[PolicyKind::Ours, PolicyKind::Ca133],
        None,
        &|_| {},
    )
}

/// End of the tv-peak-ice peak (the trace returns to base load at 6000 s).
const TV_PEAK_END_S: u64 = 6000;

#[test]
fn tv_peak_ice_ours_reaches_capacity_in_minutes_ca_takes_over_ten() {
    let r = both(&load("tv-peak-ice"));
    let ours = &r.policies["ours"];
    let ca = &r.policies["ca-1.33"];
    assert!(
        ours.time_to_capacity_s.steps >= 1,
        "the spike must leave pods pending"
    );
    assert!(
        ours.time_to_capacity_s.max <= 300,
        "ours took {} s to capacity: {:?}",
        ours.time_to_capacity_s.max,
        ours.episodes
    );
    assert!(
        ca.time_to_capacity_s.max > 600,
        "ca-baseline took only {} s: {:?}",
        ca.time_to_capacity_s.max,
        ca.episodes
    );
    // Both fell back to on-demand because spot had no capacity.
    assert!(ours.on_demand_node_hours > 0.0);
    assert!(ca.launch_failures > ours.launch_failures);
    assert!(ours.pending_pod_seconds < ca.pending_pod_seconds);
}

#[test]
fn tv_peak_ice_ca_baseline_keeps_on_demand_nodes_after_the_peak() {
    let r = both(&load("tv-peak-ice"));
    let ca = &r.policies["ca-1.33"];
    let od = ca
        .on_demand_nodes_at(TV_PEAK_END_S + 7200)
        .expect("series covers it");
    assert!(
        od > 0,
        "cluster-autoscaler has no drain-back: on-demand nodes stay"
    );
}

#[test]
fn tv_peak_ice_ours_returns_on_demand_to_zero_two_hours_after_the_peak() {
    let r = both(&load("tv-peak-ice"));
    let ours = &r.policies["ours"];
    assert_eq!(
        ours.on_demand_nodes_at(TV_PEAK_END_S + 7200),
        Some(0),
        "{:?}",
        ours.decisions
            .iter()
            .filter(|d| d.group.starts_with("od-") && d.t_s > TV_PEAK_END_S)
            .map(|d| (d.t_s, &d.kind, &d.reason))
            .collect::<Vec<_>>()
    );
}

#[test]
fn tv_peak_ice_ours_drains_back_to_spot_and_removes_nodes() {
    let r = both(&load("tv-peak-ice"));
    let ours = &r.policies["ours"];
    let ca = &r.policies["ca-1.33"];
    let kinds = |k: &str| ours.decisions.iter().filter(|d| d.kind == k).count();
    assert!(
        kinds("RemoveNode:ScaleDown") > 0,
        "scale-down after the peak"
    );
    assert!(
        kinds("RemoveNode:DrainBack") > 0,
        "drain-back once spot is back"
    );
    assert!(ours.evictions > 0, "drained nodes evict their pods");
    let (o, c) = (
        ours.on_demand_nodes_at(TV_PEAK_END_S + 7200).unwrap(),
        ca.on_demand_nodes_at(TV_PEAK_END_S + 7200).unwrap(),
    );
    assert!(
        o < c,
        "ours {o} on-demand nodes 2 h after the peak, ca-baseline {c}"
    );
}

#[test]
fn az_imbalance_ours_keeps_zones_within_one_node() {
    let r = both(&load("az-imbalance"));
    let ours = &r.policies["ours"];
    assert!(ours.steady_samples > 500, "{}", ours.steady_samples);
    assert!(ours.max_az_skew <= 1, "{}", ours.max_az_skew);
}

#[test]
fn interruptions_reach_ours_as_events_and_not_ca_baseline() {
    let r = both(&load("az-imbalance"));
    let drained = |p: &str| {
        r.policies[p]
            .decisions
            .iter()
            .filter(|d| d.kind == "RemoveNode:Interruption")
            .count()
    };
    assert_eq!(drained("ours"), 16, "two notices of 8 instances");
    assert_eq!(drained("ca-1.33"), 0);
    assert_eq!(r.policies["ca-1.33"].interruptions, 16);
}

#[test]
fn az_imbalance_skew_builds_up_for_ca_baseline() {
    let r = both(&load("az-imbalance"));
    assert!(r.policies["ca-1.33"].max_az_skew > 1);
    assert!(r.policies["ca-1.33"].steady_samples > 500);
    assert!(
        r.policies["ca-1.33"].evictions > 0,
        "interruptions evict pods"
    );
}

#[test]
fn every_builtin_story_runs_and_scales() {
    for name in ["breaking-news", "onsale", "front-outage-return"] {
        let r = both(&load(name));
        for (policy, p) in &r.policies {
            assert!(p.warnings.is_empty(), "{name}/{policy}: {:?}", p.warnings);
            assert!(
                p.cost_usd > 0.0 && p.node_hours.spot > 0.0,
                "{name}/{policy}"
            );
            assert!(
                p.decisions.iter().any(|d| d.kind == "ScaleUp"),
                "{name}/{policy}: the story needs a scale-up"
            );
            assert!(p.unserved_request_fraction < 0.2, "{name}/{policy}");
        }
    }
}

#[test]
fn same_inputs_and_seed_give_identical_json_bytes() {
    let loaded = load("breaking-news");
    let a = both(&loaded).to_json();
    let b = both(&loaded).to_json();
    assert_eq!(a, b);
    let other = run_policies(&loaded, &[PolicyKind::Ours], Some(999), &|_| {}).to_json();
    assert_ne!(a, other);
}

#[test]
fn replays_the_world_cup_flash_crowd_trace() {
    let trace = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("traces/wc98_1998-05-12_flash_0600-0730utc.csv");
    assert!(
        trace.exists(),
        "trace missing from the repository: {}",
        trace.display()
    );
    let (mut sc, _) = Scenario::load("tv-peak-ice").unwrap();
    sc.duration_s = None;
    sc.trace.scale = 20.0;
    let cols = simulator::trace::Columns::default();
    let loaded = sc.resolve(None, Some((&trace, &cols))).unwrap();
    assert_eq!(loaded.trace.resolution_s, 60);
    assert_eq!(loaded.trace.len_s(), 90 * 60);
    let r = both(&loaded);
    let peak = r.policies["ours"]
        .series
        .iter()
        .map(|p| p.demand_rps)
        .fold(0.0, f64::max);
    // 57.5k requests/min at the flash crowd's top, x20.
    assert!((15_000.0..25_000.0).contains(&peak), "peak {peak}");
    for p in r.policies.values() {
        assert!(
            p.time_to_capacity_s.steps >= 1,
            "{}: the flash crowd needs nodes",
            p.policy
        );
    }
    assert!(
        r.policies["ours"].time_to_capacity_s.max <= r.policies["ca-1.33"].time_to_capacity_s.max
    );
}
