//! The operators' stories, asserted on the built-in scenarios.

use simulator::scenario::{IceWindow, Loaded, Scenario};
use simulator::{run_policies, PolicyKind, PolicyReport, Report};
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
fn tv_peak_ice_each_ca_version_takes_the_time_its_rules_give_and_ours_minutes() {
    let r = run_policies(
        &load("tv-peak-ice"),
        &[PolicyKind::Ours, PolicyKind::Ca133, PolicyKind::Ca130],
        None,
        &|_| {},
    );
    let (ours, ca133, ca130) = (
        &r.policies["ours"],
        &r.policies["ca-1.33"],
        &r.policies["ca-1.30"],
    );
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
    // CA 1.33 walks the twelve spot ASGs one per loop once each failure is recorded
    // (forced cache refresh after deleting placeholders, same-loop next group); a pod
    // the on-demand fallback strands walks them again (seeds 1-8: 766-1150 s).
    let ttc = ca133.time_to_capacity_s.max;
    assert!((240..=1200).contains(&ttc), "ca-1.33 took {ttc} s");
    let at = |p: &PolicyReport, kind: &str, t: u64| {
        p.decisions.iter().any(|d| d.kind == kind && d.t_s == t)
    };
    let forced_moves = ca133
        .decisions
        .iter()
        .filter(|d| d.kind == "CaFailedScaleUp" && d.reason.contains("forced"))
        .filter(|d| at(ca133, "ScaleUp", d.t_s))
        .count();
    assert!(
        forced_moves >= 3,
        "1.33 fails over in the loop that reads the failure: {forced_moves}"
    );
    // CA 1.30 skips the loop after deleting failed nodes and waits for the next periodic
    // refresh, so the backoffs of the first groups expire before the last fail.
    assert!(
        ca130.time_to_capacity_s.max > 1500,
        "ca-1.30 took only {} s",
        ca130.time_to_capacity_s.max
    );
    let skips: Vec<u64> = ca130
        .decisions
        .iter()
        .filter(|d| d.kind == "CaSkipIteration")
        .map(|d| d.t_s)
        .collect();
    assert!(skips.len() >= 3, "{skips:?}");
    assert!(skips.iter().all(|&t| !at(ca130, "ScaleUp", t)));
    // Both fell back to on-demand because spot had no capacity.
    assert!(ours.on_demand_node_hours > 0.0 && ca133.on_demand_node_hours > 0.0);
    assert!(ours.pending_pod_seconds < ca133.pending_pod_seconds);
}

#[test]
fn tv_peak_ice_harm_shows_in_served_traffic() {
    let r = both(&load("tv-peak-ice"));
    let (ours, ca) = (&r.policies["ours"], &r.policies["ca-1.33"]);
    // Ready pods above 85 % CPU for the minutes CA needs: users see slow answers.
    assert!(
        ca.degraded_request_fraction > 0.02,
        "{}",
        ca.degraded_request_fraction
    );
    assert!(ours.degraded_request_fraction < ca.degraded_request_fraction / 2.0);
    assert!(ca.seconds_over_target > ours.seconds_over_target + 120);
    // Every eviction costs the seconds until its replacement is Ready.
    assert_eq!(ours.disruptions.evictions, ours.evictions);
    assert!(ours.evictions > 0 && ours.disruptions.pod_seconds_lost >= ours.evictions);
}

fn ca133_alone(l: &Loaded) -> PolicyReport {
    run_policies(l, &[PolicyKind::Ca133], None, &|_| {})
        .policies
        .remove("ca-1.33")
        .expect("ran ca-1.33")
}

#[test]
fn balance_similar_node_groups_splits_ca_scale_ups_and_fails_over_faster() {
    let plain = load("tv-peak-ice");
    let mut balanced = plain.clone();
    balanced.scenario.ca_baseline.balance_similar_node_groups = true;
    let (off, on) = (ca133_alone(&plain), ca133_alone(&balanced));
    let splits = |p: &PolicyReport| {
        p.decisions
            .iter()
            .filter(|d| d.kind == "ScaleUp" && d.reason.starts_with("zone balance"))
            .count()
    };
    assert_eq!(splits(&off), 0);
    assert!(splits(&on) > 0);
    // Three similar groups per loop: the twelve spot ASGs are tried in fewer loops.
    assert!(
        on.time_to_capacity_s.max < off.time_to_capacity_s.max,
        "{} vs {}",
        on.time_to_capacity_s.max,
        off.time_to_capacity_s.max
    );
    assert!(on.max_az_skew_any < off.max_az_skew_any);
}

#[test]
fn node_termination_handler_drains_interrupted_nodes_for_ca() {
    let plain = load("az-imbalance");
    let mut nth = plain.clone();
    nth.scenario.ca_baseline.node_termination_handler = true;
    let (off, on) = (ca133_alone(&plain), ca133_alone(&nth));
    let drains = |p: &PolicyReport| p.decisions.iter().filter(|d| d.kind == "NthDrain").count();
    assert_eq!(drains(&off), 0);
    assert_eq!(drains(&on), 16, "two notices of 8 instances");
    // Pods move during the two-minute notice instead of dying with the instance.
    assert!(
        on.disruptions.pod_seconds_lost < off.disruptions.pod_seconds_lost,
        "{} vs {}",
        on.disruptions.pod_seconds_lost,
        off.disruptions.pod_seconds_lost
    );
}

#[test]
fn ours_receives_only_what_the_aws_adapter_reads_from_each_failure() {
    // tv-peak-ice starves spot; the variant also starves on-demand in one zone.
    let mut both_markets = load("tv-peak-ice");
    both_markets.scenario.cloud.ice.push(IceWindow {
        from_s: 1500,
        to_s: 2400,
        capacity_type: Some(autoscaler_core::CapacityType::OnDemand),
        zones: vec!["eu-west-1a".into()],
        instance_types: Vec::new(),
    });
    let mut typed = 0;
    for (name, loaded) in [
        ("tv-peak-ice", load("tv-peak-ice")),
        ("+on-demand", both_markets),
    ] {
        let r = run_policies(&loaded, &[PolicyKind::Ours], None, &|_| {});
        let failures = &r.policies["ours"].aws_launch_failures;
        assert!(!failures.is_empty(), "{name}: no launch failed");
        for f in failures {
            let details = serde_json::json!({ "Availability Zone": f.zone });
            let adapter =
                autoscaler_aws::events::launch_failure(&f.group, &f.status_message, Some(&details));
            assert_eq!(adapter, f.event, "{name}: {}", f.status_message);
        }
        // Spot messages name no instance type; on-demand ones do.
        for f in failures {
            let autoscaler_core::Event::LaunchFailed { instance_type, .. } = &f.event else {
                panic!("{:?}", f.event)
            };
            assert_eq!(instance_type.is_some(), !f.status_message.contains("Spot"));
            typed += usize::from(instance_type.is_some());
        }
    }
    assert!(
        typed > 0,
        "the on-demand variant must fail on-demand launches"
    );
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
fn az_imbalance_ours_keeps_zones_within_its_tolerance() {
    let r = both(&load("az-imbalance"));
    let ours = &r.policies["ours"];
    let ca = &r.policies["ca-1.33"];
    assert!(ours.steady_samples > 500, "{}", ours.steady_samples);
    // Rebalancing waits for rest and tolerates a fifth of the mean nodes per zone
    // (balance.skew_fraction), so a set of ~10 nodes per zone may sit at 2.
    assert!(ours.max_az_skew <= 2, "{}", ours.max_az_skew);
    assert!(
        ours.max_az_skew * 4 <= ca.max_az_skew,
        "ours {} vs ca {}",
        ours.max_az_skew,
        ca.max_az_skew
    );
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
    let r = run_policies(
        &loaded,
        &[PolicyKind::Ours, PolicyKind::Ca133, PolicyKind::Ca130],
        None,
        &|_| {},
    );
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
    // Served at least as much as CA 1.30 (unserved + degraded), which walks the spot
    // groups one provision timeout at a time. Not CA 1.33 here: since the CA model
    // simulates a loop's removals on one snapshot (PDB budget spent across candidates,
    // as cluster-autoscaler's planner does) it keeps ~9 more nodes from before the crowd
    // and serves 0.06 pp more; the scoreboard's flash rows report that as ✗. Time to
    // capacity is not compared: ours' faster nodes let the HPA see the crowd and ask for
    // more pods, so its demand step is larger (a 6-minute crowd, gone before most nodes
    // boot).
    let harm = |p: &PolicyReport| p.unserved_request_fraction + p.degraded_request_fraction;
    assert!(
        harm(&r.policies["ours"]) <= harm(&r.policies["ca-1.30"]) + 0.000_05,
        "ours {} vs ca-1.30 {}",
        harm(&r.policies["ours"]),
        harm(&r.policies["ca-1.30"])
    );
    // Ours does not walk the starved pools: fewer failed launches than either CA.
    for ca in ["ca-1.33", "ca-1.30"] {
        assert!(
            r.policies["ours"].launch_failures < r.policies[ca].launch_failures,
            "ours {} vs {ca} {}",
            r.policies["ours"].launch_failures,
            r.policies[ca].launch_failures
        );
    }
}

/// A scenario's placeholder ladder (cluster-proportional-autoscaler's rule, the chart's
/// `overprovisioning`) runs for CA as for ours: CA's users keep spare room that way, and
/// a comparison that gave it only to ours would flatter ours.
#[test]
fn a_placeholder_ladder_serves_every_policy() {
    let both = |l: &Loaded| run_policies(l, &[PolicyKind::Ours, PolicyKind::Ca133], None, &|_| {});
    let mut loaded = load("tv-peak-ice");
    for p in both(&loaded).policies.values() {
        assert_eq!(p.headroom_cost_usd, 0.0, "{}: no ladder, no room", p.policy);
    }
    let yaml = "{coresToReplicas: [[64, 3], [1, 1]], nodesToReplicas: [[1, 1]]}";
    let ladder: autoscaler_core::overprovisioning::Ladder = serde_yaml_ng::from_str(yaml).unwrap();
    loaded.scenario.overprovisioning = Some(
        autoscaler_core::overprovisioning::Overprovisioning::Ladder(ladder),
    );
    for p in both(&loaded).policies.values() {
        assert!(
            p.headroom_cost_usd > 0.0 && p.preemptions > 0,
            "{}: the ladder's placeholders hold room (${}) that the peak takes ({} preemptions)",
            p.policy,
            p.headroom_cost_usd,
            p.preemptions
        );
        // Steps given out of order still count: 672 cores at the start are past 64.
        let first = p
            .decisions
            .iter()
            .find(|d| d.kind == "SetOverprovisioning")
            .expect("the ladder sets the placeholders");
        assert_eq!(first.new_target, 3, "{}: {}", p.policy, first.reason);
    }
}

/// Headroom (off by default): placeholders sized from demand growth and the measured boot
/// time are preempted by the peak's pods, so those wait for a node less; a scheduled
/// window for a known event (the ad break) has the room there before it starts.
#[test]
fn tv_peak_ice_headroom_beats_node_boot_time_and_shows_its_cost() {
    let base = load("tv-peak-ice");
    let run = |loaded: &Loaded| {
        run_policies(loaded, &[PolicyKind::Ours], None, &|_| {})
            .policies
            .remove("ours")
            .expect("ours ran")
    };
    let without = run(&base);
    let mut growth = load("tv-peak-ice");
    growth.scenario.autoscaler.headroom.enabled = true;
    let with_growth = run(&growth);
    let mut known = load("tv-peak-ice");
    known.scenario.autoscaler.headroom.enabled = true;
    known.scenario.autoscaler.headroom.max_fraction = 1.0;
    // The ad break at 1800 s is on the broadcaster's schedule: 300 CPU for 10 minutes.
    known.scenario.autoscaler.headroom.windows = vec![autoscaler_core::HeadroomWindow {
        start_s: 1800,
        end_s: 2400,
        cpu_millis: 300_000,
    }];
    let with_window = run(&known);
    assert_eq!(without.preemptions, 0);
    assert_eq!(without.headroom_cost_usd, 0.0);
    assert!(with_growth.preemptions > 0 && with_growth.headroom_cost_usd > 0.0);
    // Hedged launches and bulk slack already took most of the wait out of the default
    // run (163 s); growth headroom still shortens it and degrades fewer requests.
    assert!(
        with_growth.time_to_capacity_s.p95 < without.time_to_capacity_s.p95
            && with_growth.degraded_request_fraction < without.degraded_request_fraction,
        "growth headroom: {} s, {} degraded vs {} s, {} without",
        with_growth.time_to_capacity_s.p95,
        with_growth.degraded_request_fraction,
        without.time_to_capacity_s.p95,
        without.degraded_request_fraction
    );
    assert!(
        with_growth.cost_usd < without.cost_usd * 1.05,
        "growth headroom costs ${} vs ${}",
        with_growth.cost_usd,
        without.cost_usd
    );
    // Launch latency alone is 40-90 s: pods served from the window's room wait less.
    assert!(
        with_window.time_to_capacity_s.p95 < 40,
        "window: {} s",
        with_window.time_to_capacity_s.p95
    );
    assert!(with_window.degraded_request_fraction < with_growth.degraded_request_fraction);
    // The peak's pods use the window's room up instead of renewing it (a renewed room
    // cost +13 %: each placeholder a real pod preempted brought another node).
    assert!(
        with_window.cost_usd < without.cost_usd * 1.05,
        "window costs ${} vs ${}",
        with_window.cost_usd,
        without.cost_usd
    );
    // At rest the room is gone: the last placeholder decision sets zero.
    for r in [&with_growth, &with_window] {
        let last = r
            .decisions
            .iter()
            .rev()
            .find(|d| d.kind == "SetOverprovisioning")
            .expect("placeholders were sized");
        assert_eq!(last.new_target, 0, "{}", last.reason);
    }
}

/// Deletion-cost steering: when the HPA scales `breaking-news`'s services in after the
/// spike, the ReplicaSet controller deletes the pods on the nodes ours would remove
/// next, so those nodes empty and go without a drain. Without it (0) the deletions land
/// where the ReplicaSet's own ranking puts them (nodes crowded with the service) and
/// scale-down has to evict the pods left scattered on half-empty nodes.
#[test]
fn deletion_costs_let_scale_in_empty_the_nodes_scale_down_removes() {
    let run = |nodes: u32| {
        let mut loaded = load("breaking-news");
        loaded.scenario.autoscaler.scale_down.deletion_cost_nodes = nodes;
        let report = run_policies(&loaded, &[PolicyKind::Ours], None, &|_| {});
        report.policies["ours"].clone()
    };
    let (off, on) = (run(0), run(30));
    assert_eq!(off.deletion_cost_patches, 0, "0 writes nothing");
    assert!(on.deletion_cost_patches > 0);
    let scale_down =
        |p: &PolicyReport| p.evictions_by_cause.get("scale-down").copied().unwrap_or(0);
    assert!(
        scale_down(&on) * 2 < scale_down(&off),
        "scale-down evictions: {} with the costs, {} without",
        scale_down(&on),
        scale_down(&off)
    );
    assert!(
        on.cost_usd < off.cost_usd,
        "${} vs ${}",
        on.cost_usd,
        off.cost_usd
    );
    assert!(
        on.unserved_request_fraction <= off.unserved_request_fraction
            && on.degraded_request_fraction <= off.degraded_request_fraction
    );
}
