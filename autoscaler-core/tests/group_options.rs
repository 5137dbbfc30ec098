//! Per-group `autoscaling-options` (cluster-autoscaler's ASG tags) change the engine's
//! decisions for that group only, and the engine reports its next deadline
//! (`Autoscaler::poll_timeout`) so a caller can sleep until then.

use autoscaler_core::fixtures::{group, node, pod};
use autoscaler_core::*;

mod common;
use common::{removals, scale_ups, snapshot};
use std::time::Duration;

const A: &str = "us-east-1a";
const T0: Timestamp = Timestamp::from_secs(1_000_000);

fn at(secs: u64) -> Timestamp {
    T0 + Duration::from_secs(secs)
}

/// The defaults without spare nodes: these two-node clusters have less free room than
/// the two spare nodes kept by default, which would hold every drain.
fn engine() -> Autoscaler {
    let mut config = AutoscalerConfig::default();
    config.scale_down.spare_nodes = 0;
    Autoscaler::new(config).unwrap()
}

/// Two groups, each with a busy node (70% CPU) and a node at 30% (one 1200m pod on 4
/// vCPUs) whose pod fits on the busy one.
fn two_groups(fast: GroupOptions) -> ClusterSnapshot {
    let mut fast_g = group("fast", CapacityType::OnDemand, &[A], &["m5.xlarge"]);
    fast_g.options = fast;
    let slow_g = group("slow", CapacityType::OnDemand, &[A], &["m5.xlarge"]);
    let mut nodes = Vec::new();
    let mut pods = Vec::new();
    for g in [&fast_g, &slow_g] {
        let busy = format!("{}-busy", g.name);
        let light = format!("{}-light", g.name);
        nodes.push(node(&busy, g, A, "m5.xlarge", Timestamp::ZERO));
        nodes.push(node(&light, g, A, "m5.xlarge", Timestamp::ZERO));
        pods.push(pod(&format!("{}-a", g.name), "a", 2800, 1024, Some(&busy)));
        pods.push(pod(&format!("{}-b", g.name), "b", 1200, 1024, Some(&light)));
    }
    let groups = [fast_g, slow_g]
        .into_iter()
        .map(|mut g| {
            g.target_size = 2;
            g
        })
        .collect();
    snapshot(groups, nodes, pods, vec![])
}

fn unneeded(d: &Decisions) -> Vec<String> {
    let mut v: Vec<String> = d
        .nodes
        .iter()
        .filter(|o| matches!(o.verdict, NodeVerdict::Unneeded { .. }))
        .map(|o| o.node.clone())
        .collect();
    v.sort();
    v
}

#[test]
fn a_groups_unneeded_time_applies_to_its_nodes_only() {
    let s = two_groups(GroupOptions {
        scale_down_unneeded_time: Some(Duration::from_secs(60)),
        ..GroupOptions::default()
    });
    let mut e = engine();
    let d = e.decide(&s, at(0));
    assert_eq!(unneeded(&d), vec!["fast-light", "slow-light"]);
    assert!(removals(&d).is_empty());
    // After the group's 1 minute, only its node goes; the other waits for the flag's 10.
    let d = e.decide(&s, at(61));
    assert_eq!(
        removals(&d),
        vec![("fast-light".to_string(), RemovalKind::ScaleDown)]
    );
}

#[test]
fn a_groups_utilization_threshold_applies_to_its_nodes_only() {
    // 30% is under the flag's 50% but over this group's 20%.
    let s = two_groups(GroupOptions {
        scale_down_utilization_threshold: Some(0.2),
        ..GroupOptions::default()
    });
    let mut e = engine();
    let d = e.decide(&s, at(0));
    assert_eq!(unneeded(&d), vec!["slow-light"]);
    let d = e.decide(&s, at(11 * 60));
    assert_eq!(
        removals(&d),
        vec![("slow-light".to_string(), RemovalKind::ScaleDown)]
    );
}

#[test]
fn a_groups_unready_time_applies_to_its_nodes_only() {
    let mut s_fast = group("fast", CapacityType::OnDemand, &[A], &["m5.xlarge"]);
    s_fast.options.scale_down_unready_time = Some(Duration::from_secs(120));
    let slow = group("slow", CapacityType::OnDemand, &[A], &["m5.xlarge"]);
    let mut nodes = Vec::new();
    let mut pods = Vec::new();
    for g in [&s_fast, &slow] {
        let busy = format!("{}-busy", g.name);
        let sick = format!("{}-sick", g.name);
        nodes.push(node(&busy, g, A, "m5.xlarge", Timestamp::ZERO));
        let mut n = node(&sick, g, A, "m5.xlarge", Timestamp::ZERO);
        n.ready = false;
        n.ready_changed_at = Some(at(0));
        nodes.push(n);
        // Busy enough that the sick node is not removable for its utilization.
        pods.push(pod(&format!("{}-a", g.name), "a", 3000, 1024, Some(&busy)));
    }
    let groups = [s_fast, slow]
        .into_iter()
        .map(|mut g| {
            g.target_size = 2;
            g
        })
        .collect();
    let s = snapshot(groups, nodes, pods, vec![]);
    let mut e = engine();
    assert!(removals(&e.decide(&s, at(60))).is_empty());
    let d = e.decide(&s, at(121));
    assert_eq!(
        removals(&d),
        vec![("fast-sick".to_string(), RemovalKind::ScaleDown)]
    );
    assert!(
        d.actions[0].reason().contains("2m"),
        "{}",
        d.actions[0].reason()
    );
}

#[test]
fn a_groups_max_node_provision_time_reverts_its_scale_up_sooner() {
    let mut spot = group("spot", CapacityType::Spot, &[A], &["m5.xlarge"]);
    spot.options.max_node_provision_time = Some(Duration::from_secs(120));
    let od = group("od", CapacityType::OnDemand, &[A], &["m5.xlarge"]);
    let mut e = engine();
    e.set_priorities("50: [spot]\n10: [od]\n").unwrap();
    let pods = vec![pod("web-0", "web", 1000, 1024, None)];
    let d = e.decide(
        &snapshot(vec![spot.clone(), od.clone()], vec![], pods.clone(), vec![]),
        T0,
    );
    assert_eq!(scale_ups(&d), vec![("spot".to_string(), 1)]);
    spot.target_size = 1;
    let s = snapshot(vec![spot.clone(), od.clone()], vec![], pods, vec![]);
    assert!(e.decide(&s, at(60)).actions.is_empty());
    // The engine says when to look again: the group's 2 minutes, not the flag's 15.
    let wake = e.poll_timeout(at(60), s.groups()).expect("a deadline");
    assert!(wake > at(120) && wake <= at(121), "{wake}");
    let d = e.decide(&s, wake);
    assert!(
        d.actions[0].reason().contains("max-node-provision-time 2m"),
        "{:?}",
        d.actions
    );
    assert_eq!(scale_ups(&d), vec![("od".to_string(), 1)]);
}

#[test]
fn poll_timeout_is_the_earliest_running_timer() {
    let s = two_groups(GroupOptions::default());
    let mut e = engine();
    assert_eq!(
        e.poll_timeout(at(0), s.groups()),
        None,
        "no timer before a round"
    );
    let _ = e.decide(&s, at(0));
    // Two unneeded nodes since t=0: wake at the 10-minute unneeded time.
    assert_eq!(e.poll_timeout(at(0), s.groups()), Some(at(600)));
    // An ICE cool-off ending sooner comes first.
    e.handle_event(
        Event::LaunchFailed {
            group: "slow".into(),
            zone: None,
            instance_type: None,
            reason: LaunchFailureReason::InsufficientInstanceCapacity,
        },
        at(10),
    );
    let cool = e
        .cool_offs()
        .active(at(10))
        .map(|(_, c)| c.until)
        .min()
        .unwrap();
    assert!(cool < at(600));
    assert_eq!(e.poll_timeout(at(10), s.groups()), Some(cool));
    // Deadlines in the past are never reported (no busy loop).
    assert_eq!(e.poll_timeout(cool, s.groups()), Some(at(600)));
    assert_eq!(e.poll_timeout(at(600), s.groups()), None);
    // A group's shorter unneeded time moves the wake-up earlier.
    let s = two_groups(GroupOptions {
        scale_down_unneeded_time: Some(Duration::from_secs(60)),
        ..GroupOptions::default()
    });
    assert_eq!(e.poll_timeout(at(10), s.groups()), Some(at(60)));
}

#[test]
fn options_stay_out_of_the_json_when_unset() {
    let g = group("g", CapacityType::Spot, &[A], &["m5.xlarge"]);
    let text = serde_json::to_string(&g).unwrap();
    assert!(!text.contains("options"), "{text}");
    let mut g2 = g.clone();
    g2.options.scale_down_utilization_threshold = Some(0.3);
    let back: NodeGroup = serde_json::from_str(&serde_json::to_string(&g2).unwrap()).unwrap();
    assert_eq!(back, g2);
}
