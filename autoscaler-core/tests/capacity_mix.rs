//! Mixed-instances groups (issue 14): AWS's on-demand/spot split, and how scale-up,
//! ICE and scale-down treat the two parts of one group.

use autoscaler_core::{CapacityMix, CapacityType};
use proptest::prelude::*;

fn mix(base: u32, pct: u8) -> CapacityMix {
    CapacityMix {
        on_demand_base: base,
        on_demand_percentage_above_base: pct,
    }
}

#[test]
fn aws_split_base_first_then_the_percentage_rounded_up_to_on_demand() {
    // Base 2, 50 % above it: sizes 0..=6 hold 0,1,2,3,3,4,4 on-demand instances.
    let m = mix(2, 50);
    let on_demand: Vec<u32> = (0..=6).map(|n| m.on_demand_at(n)).collect();
    assert_eq!(on_demand, vec![0, 1, 2, 3, 3, 4, 4]);
    // Growing 2 -> 6: two on-demand, two spot.
    let split = m.launches(2, 4);
    assert_eq!((split.on_demand, split.spot), (2, 2));
    // 20 % above a base of 0: the first instance above the base rounds up to on-demand,
    // the next four are spot.
    let m = mix(0, 20);
    let markets: Vec<CapacityType> = (0..6).map(|n| m.market_of_launch(n)).collect();
    use CapacityType::{OnDemand as O, Spot as S};
    assert_eq!(markets, vec![O, S, S, S, S, O]);
    assert!(m.is_mixed());
    assert!(
        !mix(3, 100).is_mixed(),
        "100 % above the base is all on-demand"
    );
    assert!(!mix(0, 0).is_mixed(), "no base and 0 % is all spot");
}

proptest! {
    #[test]
    fn split_is_total_monotone_and_keeps_the_base(
        base in 0u32..50,
        pct in 0u8..=100,
        size in 0u32..500,
        grow in 0u32..500,
    ) {
        let m = mix(base, pct);
        let split = m.launches(size, grow);
        prop_assert_eq!(split.on_demand + split.spot, grow);
        // Both markets only grow with the group.
        prop_assert!(m.on_demand_at(size + grow) >= m.on_demand_at(size));
        prop_assert!(size + grow - m.on_demand_at(size + grow) >= size - m.on_demand_at(size));
        // The base is on-demand: no spot until it is full.
        let below_base = base.saturating_sub(size).min(grow);
        prop_assert!(split.on_demand >= below_base);
        prop_assert_eq!(m.launches(0, size.min(base)).spot, 0);
        // Above the base, the on-demand share is the percentage, rounded up.
        let above = (size + grow).saturating_sub(base);
        let od_above = m.on_demand_at(size + grow) - (size + grow).min(base);
        prop_assert!(u64::from(od_above) * 100 >= u64::from(above) * u64::from(pct));
        prop_assert!(u64::from(od_above) * 100 < u64::from(above) * u64::from(pct) + 100);
    }
}

// ------------------------------------------------------- the engine on a mixed group

use autoscaler_core::fixtures::{group, mixed_group, node, pod};
use autoscaler_core::{
    Autoscaler, AutoscalerConfig, ClusterSnapshot, Decision, Decisions, Event, LaunchFailureReason,
    NodeGroup, Pod, RemovalKind, SnapshotParts, Timestamp,
};

const A: &str = "us-east-1a";
const T0: u64 = 1_700_000_000;

fn at(secs: u64) -> Timestamp {
    Timestamp::from_secs(T0 + secs)
}

fn snap(
    groups: Vec<NodeGroup>,
    nodes: Vec<autoscaler_core::Node>,
    pods: Vec<Pod>,
) -> ClusterSnapshot {
    ClusterSnapshot::new(SnapshotParts {
        groups,
        nodes,
        pods: pods.into_iter().map(std::sync::Arc::new).collect(),
        ..SnapshotParts::default()
    })
    .unwrap()
}

/// `n` pending pods, each filling most of an m5.xlarge (one per node).
fn whole_node_pods(n: usize) -> Vec<Pod> {
    (0..n)
        .map(|i| pod(&format!("big-{i}"), "big", 3000, 8192, None))
        .collect()
}

fn scale_ups(d: &Decisions) -> Vec<(String, u32)> {
    d.actions
        .iter()
        .filter_map(|a| match a {
            Decision::ScaleUp { group, delta, .. } => Some((group.clone(), *delta)),
            _ => None,
        })
        .collect()
}

fn ice(group: &str) -> Event {
    Event::LaunchFailed {
        group: group.into(),
        zone: Some(A.into()),
        instance_type: None,
        reason: LaunchFailureReason::classify("InsufficientInstanceCapacity"),
    }
}

#[test]
fn price_expander_sees_a_mixed_group_at_its_blend_not_at_the_spot_price() {
    // Half of the mixed group's launches are on-demand: 0.675 of the on-demand price
    // per node. A spot group at 0.6 of it is cheaper; at 0.7 it is not.
    for (spot_share, expected) in [(0.6, "other-spot"), (0.7, "mixed")] {
        let mixed = mixed_group("mixed", &[A], &["m5.xlarge"], 0, 50);
        let mut other = group("other-spot", CapacityType::Spot, &[A], &["m5.xlarge"]);
        other.instance_types[0].price_per_hour = 0.192 * spot_share;
        let config = AutoscalerConfig {
            expander: "price".parse().unwrap(),
            ..AutoscalerConfig::default()
        };
        let mut e = Autoscaler::new(config).unwrap();
        let d = e.decide(&snap(vec![mixed, other], vec![], whole_node_pods(4)), at(0));
        assert_eq!(scale_ups(&d)[0].0, expected, "spot share {spot_share}");
    }
}

#[test]
fn spot_ice_on_a_mixed_group_still_launches_its_on_demand_part() {
    // Base 0, 50 % above: from size 0 the launches go on-demand, spot, on-demand, ...
    let mixed = mixed_group("mixed", &[A], &["m5.xlarge"], 0, 50);
    let s = snap(vec![mixed], vec![], whole_node_pods(3));
    let mut e = Autoscaler::new(AutoscalerConfig::default()).unwrap();
    assert_eq!(scale_ups(&e.decide(&s, at(0))), vec![("mixed".into(), 3)]);

    e.handle_event(ice("mixed"), at(10));
    let active: Vec<_> = e
        .cool_offs()
        .active(at(10))
        .map(|(k, _)| k.clone())
        .collect();
    assert!(!active.is_empty());
    assert!(
        active
            .iter()
            .all(|k| k.capacity_type == Some(CapacityType::Spot)),
        "only the spot part cools off: {active:?}"
    );
    // Three on-demand nodes need five launches (the two spot slots between them will
    // not come and hold nothing), and the group is not given up.
    let d = e.decide(&s, at(10));
    assert_eq!(scale_ups(&d), vec![("mixed".into(), 5)], "{:?}", d.actions);

    // A plain spot group under the same failure is out entirely.
    let spot = group("spot", CapacityType::Spot, &[A], &["m5.xlarge"]);
    let s = snap(vec![spot], vec![], whole_node_pods(3));
    let mut e = Autoscaler::new(AutoscalerConfig::default()).unwrap();
    let _ = e.decide(&s, at(0));
    e.handle_event(ice("spot"), at(10));
    assert!(scale_ups(&e.decide(&s, at(10))).is_empty());
}

#[test]
fn a_second_capacity_failure_after_the_spot_outage_began_cools_off_the_whole_mixed_group() {
    let mixed = mixed_group("mixed", &[A], &["m5.xlarge"], 0, 50);
    let s = snap(vec![mixed], vec![], whole_node_pods(1));
    let mut e = Autoscaler::new(AutoscalerConfig::default()).unwrap();
    let _ = e.decide(&s, at(0));
    e.handle_event(ice("mixed"), at(10));
    // Within the same outage (a burst of reports): still the spot part only.
    e.handle_event(ice("mixed"), at(20));
    assert!(e
        .cool_offs()
        .active(at(20))
        .all(|(k, _)| k.capacity_type == Some(CapacityType::Spot)));
    // Two minutes later, with spot already out, the on-demand part failed too.
    e.handle_event(ice("mixed"), at(130));
    assert!(e
        .cool_offs()
        .active(at(130))
        .any(|(k, _)| k.capacity_type.is_none()));
    assert!(scale_ups(&e.decide(&s, at(130))).is_empty());
}

/// A mixed group (base 2, 50 % above) of `od` on-demand and `spot` spot nodes, each
/// running one small pod, created 3 h ago.
fn mixed_cluster(od: u32, spot: u32) -> (NodeGroup, Vec<autoscaler_core::Node>, Vec<Pod>) {
    let mut g = mixed_group("mixed", &[A], &["m5.xlarge"], 2, 50);
    g.target_size = od + spot;
    let mut nodes = Vec::new();
    for i in 0..od + spot {
        let mut n = node(&format!("n{i}"), &g, A, "m5.xlarge", at(0));
        if i >= od {
            n.capacity_type = CapacityType::Spot;
        } else {
            n.capacity_type = CapacityType::OnDemand;
        }
        nodes.push(n);
    }
    let pods = (0..od + spot)
        .map(|i| pod(&format!("p{i}"), "w", 200, 256, Some(&format!("n{i}"))))
        .collect();
    (g, nodes, pods)
}

#[test]
fn scale_down_removes_the_market_aws_would_shed_first() {
    // 5 nodes at base 2 / 50 %: 4 on-demand, 1 spot (AWS's split). At 4 nodes AWS wants
    // 3 on-demand and 1 spot, so an on-demand node goes; at 3 on-demand + 1 spot
    // (AWS's split for 4) the group at 3 wants 3 on-demand and 0 spot: the spot goes.
    for (od, spot, removed_market) in [(4, 1, CapacityType::OnDemand), (3, 1, CapacityType::Spot)] {
        let (g, nodes, pods) = mixed_cluster(od, spot);
        let market_of = |name: &str| nodes.iter().find(|n| n.name == name).unwrap().capacity_type;
        let s = snap(vec![g.clone()], nodes.clone(), pods);
        let mut e = Autoscaler::new(AutoscalerConfig::default()).unwrap();
        let _ = e.decide(&s, at(3 * 3600));
        let d = e.decide(&s, at(3 * 3600 + 601));
        let first = d.actions.iter().find_map(|a| match a {
            Decision::RemoveNode { node, .. } => Some(node.clone()),
            _ => None,
        });
        let first =
            first.unwrap_or_else(|| panic!("{od}+{spot}: nothing removed: {:?}", d.actions));
        assert_eq!(
            market_of(&first),
            removed_market,
            "{od}+{spot}: removed {first}"
        );
    }
}

#[test]
fn on_demand_nodes_of_a_mixed_group_are_never_drained_back() {
    // Two busy on-demand nodes inside the base, 3 h old, a preferred spot group with
    // room: a plain on-demand group would be drained back; the mixed base is by design.
    let (g, nodes, _) = mixed_cluster(2, 0);
    let pods: Vec<Pod> = (0..2)
        .map(|i| pod(&format!("p{i}"), "w", 3000, 8192, Some(&format!("n{i}"))))
        .collect();
    let spot = group("web-spot", CapacityType::Spot, &[A], &["m5.xlarge"]);
    let mut e = Autoscaler::new(AutoscalerConfig::default()).unwrap();
    e.set_priorities("50: ['web-spot']\n10: ['mixed']\n")
        .unwrap();
    let s = snap(vec![g, spot], nodes, pods);
    for t in [3 * 3600, 3 * 3600 + 60, 3 * 3600 + 120] {
        let d = e.decide(&s, at(t));
        assert!(
            d.actions.iter().all(|a| !matches!(
                a,
                Decision::ScaleUp { .. }
                    | Decision::RemoveNode {
                        kind: RemovalKind::DrainBack,
                        ..
                    }
            )),
            "{:?}",
            d.actions
        );
    }
}
