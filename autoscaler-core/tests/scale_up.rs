//! Scale-up behaviour, black-box through `Autoscaler::decide`: every predicate, every
//! expander, limits, and the ICE failover path.

use autoscaler_core::fixtures::{group, node, pod};
use autoscaler_core::model::{HOSTNAME_LABEL, INSTANCE_TYPE_LABEL, ZONE_LABEL};
use autoscaler_core::*;

mod common;
use common::{scale_ups, snapshot};
use std::time::Duration;

const A: &str = "us-east-1a";
const B: &str = "us-east-1b";
const C: &str = "us-east-1c";

fn engine() -> Autoscaler {
    Autoscaler::new(AutoscalerConfig::default()).unwrap()
}

fn snap(groups: Vec<NodeGroup>, nodes: Vec<Node>, pods: Vec<Pod>) -> ClusterSnapshot {
    snapshot(groups, nodes, pods, vec![])
}

fn pending(n: usize, owner: &str, cpu: u64, mem_mib: u64) -> Vec<Pod> {
    (0..n)
        .map(|i| pod(&format!("{owner}-{i}"), owner, cpu, mem_mib, None))
        .collect()
}

fn reverts(d: &Decisions) -> Vec<(String, u32)> {
    d.actions
        .iter()
        .filter_map(|a| match a {
            Decision::RevertScaleUp {
                group, new_target, ..
            } => Some((group.clone(), *new_target)),
            _ => None,
        })
        .collect()
}

fn verdict<'a>(d: &'a Decisions, pod: &str) -> &'a PodVerdict {
    &d.pods
        .iter()
        .find(|p| p.pod == format!("default/{pod}"))
        .unwrap_or_else(|| panic!("no outcome for {pod}: {:?}", d.pods))
        .verdict
}

fn not_triggered_reason(d: &Decisions, pod: &str) -> String {
    match verdict(d, pod) {
        PodVerdict::NotTriggerScaleUp { reason } => reason.clone(),
        other => panic!("{pod} expected NotTriggerScaleUp, got {other:?}"),
    }
}

const T0: Timestamp = Timestamp::from_secs(100_000);

// ---------------------------------------------------------------- resources

#[test]
fn scales_up_enough_nodes_for_the_pending_pods() {
    let g = group("spot-a", CapacityType::Spot, &[A], &["m5.xlarge"]);
    // m5.xlarge has ~3.92 CPU allocatable: 3 pods of 1 CPU per node -> 10 pods need 4 nodes.
    let s = snap(vec![g], vec![], pending(10, "web", 1000, 1024));
    let d = engine().decide(&s, T0);
    assert_eq!(scale_ups(&d), vec![("spot-a".to_string(), 4)]);
    assert!(matches!(
        verdict(&d, "web-0"),
        PodVerdict::TriggeredScaleUp { group } if group == "spot-a"
    ));
    assert_eq!(d.status.pending_pods, 10);
    assert_eq!(d.status.unhelpable_pods, 0);
}

#[test]
fn a_scale_up_the_adapter_could_not_apply_is_planned_again_next_round() {
    let g = group("spot-a", CapacityType::Spot, &[A], &["m5.xlarge"]);
    // AWS still says 0: the SetDesiredCapacity call failed.
    let s = snap(vec![g], vec![], pending(3, "web", 1000, 1024));
    let mut e = engine();
    assert_eq!(
        scale_ups(&e.decide(&s, T0)),
        vec![("spot-a".to_string(), 1)]
    );
    // Told nothing, the engine waits for the node it decided (the Describe may lag).
    let later = T0 + Duration::from_secs(10);
    assert!(scale_ups(&e.decide(&s, later)).is_empty());
    // Told the call failed, it plans from the real size again.
    e.target_not_applied("spot-a");
    let again = T0 + Duration::from_secs(20);
    assert_eq!(
        scale_ups(&e.decide(&s, again)),
        vec![("spot-a".to_string(), 1)]
    );
}

#[test]
fn a_pod_no_group_can_ever_fit_names_the_predicate_and_the_numbers() {
    let g = group(
        "big",
        CapacityType::OnDemand,
        &[A],
        &["m5.xlarge", "m5.16xlarge"],
    );
    let s = snap(vec![g], vec![], pending(1, "huge", 70_000, 1024));
    let d = engine().decide(&s, T0);
    assert!(scale_ups(&d).is_empty());
    let reason = not_triggered_reason(&d, "huge-0");
    assert!(
        reason.contains("requests 70 CPU, largest type m5.16xlarge has 64"),
        "{reason}"
    );
}

#[test]
fn free_capacity_on_existing_nodes_is_used_before_scaling() {
    let g = group("od", CapacityType::OnDemand, &[A], &["m5.xlarge"]);
    let n = node("n1", &g, A, "m5.xlarge", Timestamp::ZERO);
    let s = snap(vec![g], vec![n], pending(2, "web", 1000, 1024));
    let d = engine().decide(&s, T0);
    assert!(d.actions.is_empty(), "{:?}", d.actions);
    assert_eq!(
        verdict(&d, "web-1"),
        &PodVerdict::FitsExistingNode { node: "n1".into() }
    );
}

#[test]
fn nodes_already_launching_absorb_pods_instead_of_a_second_scale_up() {
    let mut g = group("od", CapacityType::OnDemand, &[A], &["m5.xlarge"]);
    g.target_size = 2; // 2 requested, none registered yet
    let s = snap(vec![g], vec![], pending(5, "web", 1000, 1024));
    let d = engine().decide(&s, T0);
    // 2 upcoming nodes hold 6 pods of 1 CPU: nothing new is needed.
    assert!(scale_ups(&d).is_empty(), "{:?}", d.actions);
    assert_eq!(
        verdict(&d, "web-4"),
        &PodVerdict::WaitsForUpcomingNode { group: "od".into() }
    );
    assert_eq!(d.status.groups[0].in_flight, 2);
}

#[test]
fn pod_slots_limit_packing() {
    let g = group("small", CapacityType::OnDemand, &[A], &["m5.large"]);
    // m5.large: 29 pod slots; 40 tiny pods need 2 nodes.
    let s = snap(vec![g], vec![], pending(40, "tiny", 10, 10));
    let d = engine().decide(&s, T0);
    assert_eq!(scale_ups(&d), vec![("small".to_string(), 2)]);
}

#[test]
fn extended_resources_pick_the_gpu_group() {
    let cpu = group("cpu", CapacityType::OnDemand, &[A], &["m5.xlarge"]);
    let gpu = group("gpu", CapacityType::OnDemand, &[A], &["g4dn.xlarge"]);
    let mut p = pod("train-0", "train", 1000, 1024, None);
    p.spec.requests = p.spec.requests.clone().with_extended("nvidia.com/gpu", 1);
    let s = snap(vec![cpu, gpu], vec![], vec![p]);
    let d = engine().decide(&s, T0);
    assert_eq!(scale_ups(&d), vec![("gpu".to_string(), 1)]);
}

#[test]
fn daemonset_overhead_is_reserved_on_new_nodes() {
    let g = group("od", CapacityType::OnDemand, &[A], &["m5.xlarge"]);
    let ds = DaemonSet {
        namespace: "kube-system".into(),
        name: "agent".into(),
        spec: SchedulingSpec {
            requests: Resources::new(1000, 512 << 20),
            ..SchedulingSpec::default()
        },
    };
    // 3.5 CPU fits 3.92 allocatable, but not 2.92 after the DaemonSet.
    let s = ClusterSnapshot::new(SnapshotParts {
        groups: vec![g],
        pods: pending(1, "fat", 3500, 1024)
            .into_iter()
            .map(std::sync::Arc::new)
            .collect(),
        daemonsets: vec![ds],
        ..SnapshotParts::default()
    })
    .unwrap();
    let d = engine().decide(&s, T0);
    assert!(scale_ups(&d).is_empty());
    let reason = not_triggered_reason(&d, "fat-0");
    assert!(reason.contains("after DaemonSets"), "{reason}");
}

// ---------------------------------------------------------------- labels, affinity, taints

#[test]
fn node_selector_on_zone_picks_the_group_in_that_zone() {
    let ga = group("spot-a", CapacityType::Spot, &[A], &["m5.xlarge"]);
    let gb = group("spot-b", CapacityType::Spot, &[B], &["m5.xlarge"]);
    let mut p = pod("zonal-0", "zonal", 500, 512, None);
    p.spec.node_selector.insert(ZONE_LABEL.into(), B.into());
    let s = snap(vec![ga, gb], vec![], vec![p]);
    let d = engine().decide(&s, T0);
    assert_eq!(scale_ups(&d), vec![("spot-b".to_string(), 1)]);
}

#[test]
fn a_multi_zone_group_cannot_promise_a_zone_so_it_is_a_guess_of_last_resort() {
    // AWS picks the zone of an empty group spanning a and b: a pod pinned to b gets a
    // node assumed in b only because nothing else serves it.
    let ab = group("spot-ab", CapacityType::Spot, &[A, B], &["m5.xlarge"]);
    let mut p = pod("zonal-0", "zonal", 500, 512, None);
    p.spec.node_selector.insert(ZONE_LABEL.into(), B.into());
    let s = snap(vec![ab.clone()], vec![], vec![p.clone()]);
    assert_eq!(
        scale_ups(&engine().decide(&s, T0)),
        vec![("spot-ab".to_string(), 1)]
    );
    // A group that guarantees b comes first, whatever the expander thinks of the other.
    let b = group("spot-b", CapacityType::Spot, &[B], &["m5.xlarge"]);
    for groups in [vec![ab.clone(), b.clone()], vec![b, ab.clone()]] {
        let s = snap(groups, vec![], vec![p.clone()]);
        assert_eq!(
            scale_ups(&engine().decide(&s, T0)),
            vec![("spot-b".to_string(), 1)]
        );
    }
    // A zone the group does not span is never guessed.
    p.spec.node_selector.insert(ZONE_LABEL.into(), C.into());
    let s = snap(vec![ab], vec![], vec![p]);
    let d = engine().decide(&s, T0);
    assert!(scale_ups(&d).is_empty());
    let reason = not_triggered_reason(&d, "zonal-0");
    assert!(
        reason.contains("nodeSelector topology.kubernetes.io/zone=us-east-1c"),
        "{reason}"
    );
}

#[test]
fn required_node_affinity_in_and_not_in() {
    let m5 = group("m5", CapacityType::OnDemand, &[A], &["m5.xlarge"]);
    let c5 = group("c5", CapacityType::OnDemand, &[A], &["c5.xlarge"]);
    let mut p = pod("aff-0", "aff", 500, 512, None);
    p.spec.required_node_affinity = vec![NodeSelectorTerm {
        match_expressions: vec![Requirement {
            key: INSTANCE_TYPE_LABEL.into(),
            operator: SelectorOperator::NotIn,
            values: vec!["m5.xlarge".into()],
        }],
        ..NodeSelectorTerm::default()
    }];
    let s = snap(vec![m5.clone(), c5.clone()], vec![], vec![p.clone()]);
    assert_eq!(
        scale_ups(&engine().decide(&s, T0)),
        vec![("c5".to_string(), 1)]
    );
    p.spec.required_node_affinity[0].match_expressions[0].operator = SelectorOperator::In;
    let s = snap(vec![m5, c5], vec![], vec![p]);
    assert_eq!(
        scale_ups(&engine().decide(&s, T0)),
        vec![("m5".to_string(), 1)]
    );
}

#[test]
fn taints_keep_pods_without_tolerations_away() {
    let mut gpu = group("gpu", CapacityType::OnDemand, &[A], &["g4dn.xlarge"]);
    gpu.template.taints.push(Taint {
        key: "nvidia.com/gpu".into(),
        value: "true".into(),
        effect: TaintEffect::NoSchedule,
    });
    let s = snap(vec![gpu.clone()], vec![], pending(1, "web", 500, 512));
    let d = engine().decide(&s, T0);
    assert!(scale_ups(&d).is_empty());
    assert!(not_triggered_reason(&d, "web-0").contains("untolerated taint nvidia.com/gpu"));

    let mut tolerant = pod("web-0", "web", 500, 512, None);
    tolerant.spec.tolerations.push(Toleration {
        key: "nvidia.com/gpu".into(),
        operator: TolerationOperator::Exists,
        ..Toleration::default()
    });
    let s = snap(vec![gpu], vec![], vec![tolerant]);
    assert_eq!(
        scale_ups(&engine().decide(&s, T0)),
        vec![("gpu".to_string(), 1)]
    );
}

#[test]
fn cordoned_and_long_unready_nodes_take_no_pods() {
    let g = group("od", CapacityType::OnDemand, &[A], &["m5.xlarge"]);
    let mut cordoned = node("n1", &g, A, "m5.xlarge", Timestamp::ZERO);
    cordoned.unschedulable = true;
    let mut dead = node("n2", &g, A, "m5.xlarge", Timestamp::ZERO);
    dead.ready = false;
    let mut mut_g = g.clone();
    mut_g.target_size = 2;
    let s = snap(
        vec![mut_g],
        vec![cordoned, dead],
        pending(1, "web", 500, 512),
    );
    let d = engine().decide(&s, T0);
    assert_eq!(scale_ups(&d), vec![("od".to_string(), 1)]);
}

#[test]
fn hostname_anti_affinity_puts_one_replica_per_node() {
    let g = group("od", CapacityType::OnDemand, &[A], &["m5.4xlarge"]);
    let pods: Vec<Pod> = (0..5)
        .map(|i| {
            let mut p = pod(&format!("db-{i}"), "db", 500, 512, None);
            p.spec.anti_affinity.push(PodAntiAffinityTerm {
                label_selector: LabelSelector::labels([("app", "db")]),
                topology_key: HOSTNAME_LABEL.into(),
                namespaces: vec![],
            });
            p
        })
        .collect();
    let s = snap(vec![g], vec![], pods);
    let d = engine().decide(&s, T0);
    assert_eq!(scale_ups(&d), vec![("od".to_string(), 5)]);
}

#[test]
fn anti_affinity_of_pods_already_running_is_respected() {
    let g = group("od", CapacityType::OnDemand, &[A], &["m5.4xlarge"]);
    let n = node("n1", &g, A, "m5.4xlarge", Timestamp::ZERO);
    let mut guard = pod("guard", "guard", 100, 100, Some("n1"));
    guard.spec.anti_affinity.push(PodAntiAffinityTerm {
        label_selector: LabelSelector::labels([("app", "web")]),
        topology_key: HOSTNAME_LABEL.into(),
        namespaces: vec![],
    });
    let mut pods = pending(1, "web", 100, 100);
    pods.push(guard);
    let s = snap(vec![g], vec![n], pods);
    let d = engine().decide(&s, T0);
    assert_eq!(scale_ups(&d), vec![("od".to_string(), 1)]);
}

#[test]
fn zone_topology_spread_scales_the_zone_that_lowers_skew() {
    let ga = group("od-a", CapacityType::OnDemand, &[A], &["m5.large"]);
    let gb = group("od-b", CapacityType::OnDemand, &[B], &["m5.large"]);
    // Zone a already runs 2 api pods on full nodes, zone b runs 1: maxSkew 1 forbids a.
    let na = node("na", &ga, A, "m5.large", Timestamp::ZERO);
    let nb = node("nb", &gb, B, "m5.large", Timestamp::ZERO);
    let spread = TopologySpreadConstraint {
        max_skew: 1,
        topology_key: ZONE_LABEL.into(),
        when_unsatisfiable: WhenUnsatisfiable::DoNotSchedule,
        label_selector: LabelSelector::labels([("app", "api")]),
    };
    let mut pods = Vec::new();
    for (name, on) in [("api-r0", "na"), ("api-r1", "na"), ("api-r2", "nb")] {
        let mut p = pod(name, "api", 900, 3000, Some(on));
        p.spec.topology_spread.push(spread.clone());
        pods.push(p);
    }
    // Zone b's node is full too, so a new node is needed.
    pods.push(pod("filler", "filler", 900, 3000, Some("nb")));
    let mut p = pod("api-new", "api", 900, 3000, None);
    p.spec.topology_spread.push(spread);
    pods.push(p);
    let mut ga2 = ga.clone();
    ga2.target_size = 1;
    let mut gb2 = gb.clone();
    gb2.target_size = 1;
    let s = snap(vec![ga2, gb2], vec![na, nb], pods);
    let mut e = engine();
    // Without the spread constraint, zone a would win.
    e.set_priorities("50: [od-a]\n10: [od-b]\n").unwrap();
    let d = e.decide(&s, T0);
    assert_eq!(scale_ups(&d), vec![("od-b".to_string(), 1)]);
}

// ---------------------------------------------------------------- priority cutoff, limits

#[test]
fn expendable_pods_never_trigger_scale_up() {
    let g = group("od", CapacityType::OnDemand, &[A], &["m5.xlarge"]);
    let mut p = pod("overprov-0", "overprov", 1000, 1024, None);
    p.spec.priority = -20;
    let s = snap(vec![g], vec![], vec![p]);
    let d = engine().decide(&s, T0);
    assert!(d.actions.is_empty());
    assert_eq!(
        verdict(&d, "overprov-0"),
        &PodVerdict::Expendable { priority: -20 }
    );
}

#[test]
fn group_max_size_caps_the_scale_up_and_is_reported() {
    let mut g = group("od", CapacityType::OnDemand, &[A], &["m5.xlarge"]);
    g.max_size = 2;
    let s = snap(vec![g], vec![], pending(12, "web", 1000, 1024));
    let d = engine().decide(&s, T0);
    assert_eq!(scale_ups(&d), vec![("od".to_string(), 2)]);
    let unhelped: Vec<_> = d
        .pods
        .iter()
        .filter_map(|p| match &p.verdict {
            PodVerdict::NotTriggerScaleUp { reason } => Some(reason.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(unhelped.len(), 12 - 6);
    assert!(
        unhelped[0].contains("max node group size reached (2)"),
        "{}",
        unhelped[0]
    );
}

#[test]
fn cluster_wide_limits_cap_the_scale_up() {
    let g = group("od", CapacityType::OnDemand, &[A], &["m5.xlarge"]);
    let pods = pending(30, "web", 1000, 1024);
    let cases = [
        (
            AutoscalerConfig {
                max_nodes_total: 3,
                ..Default::default()
            },
            3,
            "max-nodes-total 3 reached",
        ),
        (
            AutoscalerConfig {
                cores_total: Range { min: 0, max: 16 },
                ..Default::default()
            },
            4,
            "cores-total limit",
        ),
        (
            AutoscalerConfig {
                memory_total_gib: Range { min: 0, max: 40 },
                ..Default::default()
            },
            2,
            "memory-total limit",
        ),
        (
            AutoscalerConfig {
                max_nodes_per_scale_up: 5,
                ..Default::default()
            },
            5,
            "",
        ),
    ];
    for (config, expected, reason) in cases {
        let s = snap(vec![g.clone()], vec![], pods.clone());
        let d = Autoscaler::new(config).unwrap().decide(&s, T0);
        assert_eq!(
            scale_ups(&d),
            vec![("od".to_string(), expected)],
            "{reason}"
        );
        if !reason.is_empty() {
            assert!(not_triggered_reason(&d, "web-29").contains(reason));
        }
    }
}

// ---------------------------------------------------------------- expanders

fn spot_and_on_demand() -> Vec<NodeGroup> {
    vec![
        group(
            "eks-on-demand",
            CapacityType::OnDemand,
            &[A],
            &["m5.xlarge"],
        ),
        group("eks-spot-m5", CapacityType::Spot, &[A], &["m5.xlarge"]),
    ]
}

#[test]
fn priority_expander_prefers_the_highest_matching_regex() {
    let mut e = engine();
    e.set_priorities("10:\n  - on-demand\n50:\n  - .*spot.*\n")
        .unwrap();
    let s = snap(spot_and_on_demand(), vec![], pending(3, "web", 1000, 1024));
    assert_eq!(
        scale_ups(&e.decide(&s, T0)),
        vec![("eks-spot-m5".to_string(), 1)]
    );
    // A new engine: the first one is now waiting for its spot node.
    let mut e = engine();
    e.set_priorities("90:\n  - on-demand\n50:\n  - .*spot.*\n")
        .unwrap();
    assert_eq!(
        scale_ups(&e.decide(&s, T0)),
        vec![("eks-on-demand".to_string(), 1)]
    );
}

#[test]
fn an_invalid_priority_config_keeps_the_last_good_one_and_is_reported() {
    let mut e = engine();
    e.set_priorities("50: [spot]\n").unwrap();
    let err = e.set_priorities("50: ['spot(']\n").unwrap_err();
    assert!(err.to_string().contains("spot("));
    let s = snap(spot_and_on_demand(), vec![], pending(3, "web", 1000, 1024));
    let d = e.decide(&s, T0);
    assert_eq!(scale_ups(&d), vec![("eks-spot-m5".to_string(), 1)]);
    assert_eq!(d.status.config_errors.len(), 1);
    assert!(d.status.config_errors[0].contains("spot("));
}

#[test]
fn least_waste_prefers_the_tighter_shape() {
    let config = AutoscalerConfig {
        expander: "least-waste".parse().unwrap(),
        ..Default::default()
    };
    let groups = vec![
        group("big", CapacityType::OnDemand, &[A], &["m5.4xlarge"]),
        group("small", CapacityType::OnDemand, &[A], &["m5.xlarge"]),
    ];
    let s = snap(groups, vec![], pending(3, "web", 1200, 2048));
    let d = Autoscaler::new(config).unwrap().decide(&s, T0);
    assert_eq!(scale_ups(&d), vec![("small".to_string(), 1)]);
}

#[test]
fn price_expander_prefers_spot_when_it_fits() {
    let config = AutoscalerConfig {
        expander: "price".parse().unwrap(),
        ..Default::default()
    };
    let s = snap(spot_and_on_demand(), vec![], pending(3, "web", 1000, 1024));
    let d = Autoscaler::new(config).unwrap().decide(&s, T0);
    assert_eq!(scale_ups(&d), vec![("eks-spot-m5".to_string(), 1)]);
}

#[test]
fn most_pods_prefers_the_group_that_helps_more_pods() {
    let config = AutoscalerConfig {
        expander: "most-pods".parse().unwrap(),
        max_nodes_per_scale_up: 1,
        ..Default::default()
    };
    let groups = vec![
        group("small", CapacityType::OnDemand, &[A], &["m5.xlarge"]),
        group("big", CapacityType::OnDemand, &[A], &["m5.4xlarge"]),
    ];
    let s = snap(groups, vec![], pending(10, "web", 1000, 1024));
    let d = Autoscaler::new(config).unwrap().decide(&s, T0);
    assert_eq!(scale_ups(&d)[0], ("big".to_string(), 1));
}

#[test]
fn random_expander_is_reproducible_for_a_seed_and_varies_across_seeds() {
    let groups: Vec<NodeGroup> = (0..8)
        .map(|i| group(&format!("g{i}"), CapacityType::Spot, &[A], &["m5.xlarge"]))
        .collect();
    let s = snap(groups, vec![], pending(2, "web", 1000, 1024));
    let pick = |seed| {
        let config = AutoscalerConfig {
            expander: "random".parse().unwrap(),
            seed,
            ..Default::default()
        };
        scale_ups(&Autoscaler::new(config).unwrap().decide(&s, T0))[0]
            .0
            .clone()
    };
    assert_eq!(pick(7), pick(7));
    let distinct: std::collections::BTreeSet<String> = (0..16).map(pick).collect();
    assert!(distinct.len() > 2, "{distinct:?}");
}

// ---------------------------------------------------------------- ICE failover

const SPOT_TYPES: [&str; 3] = ["m5.xlarge", "m5a.xlarge", "m4.xlarge"];

/// 12 spot ASGs over the same pools (3 types x 3 zones, like a diversified spot fleet
/// split by team) and one on-demand fallback, with CA-style priorities.
fn twelve_spot_one_on_demand() -> (Autoscaler, Vec<NodeGroup>) {
    let mut groups: Vec<NodeGroup> = (1..=12)
        .map(|i| {
            group(
                &format!("eks-spot-{i:02}"),
                CapacityType::Spot,
                &[A, B, C],
                &SPOT_TYPES,
            )
        })
        .collect();
    groups.push(group(
        "eks-on-demand",
        CapacityType::OnDemand,
        &[A, B, C],
        &["m5.xlarge"],
    ));
    let mut e = engine();
    e.set_priorities("50: ['spot']\n10: ['on-demand']\n")
        .unwrap();
    (e, groups)
}

fn ice(group: &str, zone: Option<&str>, itype: Option<&str>) -> Event {
    Event::LaunchFailed {
        group: group.into(),
        zone: zone.map(str::to_string),
        instance_type: itype.map(str::to_string),
        reason: LaunchFailureReason::InsufficientInstanceCapacity,
    }
}

#[test]
fn twelve_starved_spot_groups_fall_back_to_on_demand_in_the_same_round() {
    let (mut e, groups) = twelve_spot_one_on_demand();
    let s = snap(groups.clone(), vec![], pending(6, "web", 1000, 1024));
    let first = e.decide(&s, T0);
    let ups = scale_ups(&first);
    assert_eq!(ups.len(), 1);
    let spot = ups[0].0.clone();
    assert!(spot.starts_with("eks-spot-"), "{ups:?}");

    // AWS tries every pool of that group and reports each failure.
    let t1 = T0 + Duration::from_secs(20);
    for zone in [A, B, C] {
        for t in SPOT_TYPES {
            e.handle_event(ice(&spot, Some(zone), Some(t)), t1);
        }
    }
    // The snapshot now shows the raised target (the adapter applied it).
    let mut groups2 = groups.clone();
    groups2
        .iter_mut()
        .find(|g| g.name == spot)
        .unwrap()
        .target_size = ups[0].1;
    let s = snap(groups2, vec![], pending(6, "web", 1000, 1024));
    let second = e.decide(&s, t1);
    assert_eq!(reverts(&second), vec![(spot.clone(), 0)]);
    assert_eq!(scale_ups(&second), vec![("eks-on-demand".to_string(), 2)]);
    // Every spot group shows the cool-off, because they share the starved pools.
    for g in second
        .status
        .groups
        .iter()
        .filter(|g| g.name.contains("spot"))
    {
        assert!(g.cool_off_until.is_some(), "{g:?}");
    }
}

#[test]
fn a_batch_of_failures_from_twelve_unrelated_groups_is_handled_in_one_round() {
    let mut groups: Vec<NodeGroup> = (1..=12)
        .map(|i| {
            let t = ["m5.xlarge", "c5.2xlarge", "r5.xlarge"][i % 3];
            group(&format!("spot-{i:02}"), CapacityType::Spot, &[A], &[t])
        })
        .collect();
    groups.push(group(
        "on-demand",
        CapacityType::OnDemand,
        &[A],
        &["m5.xlarge"],
    ));
    let mut e = engine();
    e.set_priorities("50: ['spot']\n10: ['on-demand']\n")
        .unwrap();
    for g in groups.iter().filter(|g| g.name.starts_with("spot")) {
        // No zone or type in the message: each group is cooled off as a whole.
        e.handle_event(ice(&g.name, None, None), T0);
    }
    let s = snap(groups, vec![], pending(4, "web", 1000, 1024));
    let d = e.decide(&s, T0);
    assert_eq!(scale_ups(&d), vec![("on-demand".to_string(), 2)]);
}

#[test]
fn a_spot_ice_naming_only_the_zone_cools_that_zone_for_every_group_with_those_types() {
    // What AWS really sends for spot: "Could not launch Spot Instances.
    // InsufficientInstanceCapacity ..." with the AZ in the activity's details, no type.
    let mut groups: Vec<NodeGroup> = ["x-1a", "y-1a"]
        .iter()
        .map(|n| group(n, CapacityType::Spot, &[A], &SPOT_TYPES))
        .collect();
    groups.push(group("z-1b", CapacityType::Spot, &[B], &SPOT_TYPES));
    groups.push(group("od-1a", CapacityType::OnDemand, &[A], &["m5.xlarge"]));
    let mut e = engine();
    e.set_priorities("50: ['^x', '^y']\n40: ['^z']\n10: ['^od']\n")
        .unwrap();
    e.handle_event(ice("x-1a", Some(A), None), T0);
    let s = snap(groups.clone(), vec![], pending(2, "web", 1000, 1024));
    let d = e.clone().decide(&s, T0);
    // y-1a draws from the same (spot, zone a, type) pools: skipped in the same round;
    // zone b's pools are not starved.
    assert_eq!(
        scale_ups(&d),
        vec![("z-1b".to_string(), 1)],
        "{:?}",
        d.actions
    );
    // A multi-zone group's message without a zone says too little to blame other groups.
    let mut e2 = engine();
    e2.set_priorities("50: ['^x', '^y']\n10: ['^od']\n")
        .unwrap();
    let wide = vec![
        group("x-1a", CapacityType::Spot, &[A, B], &SPOT_TYPES),
        group("y-1a", CapacityType::Spot, &[A], &SPOT_TYPES),
    ];
    e2.handle_event(ice("x-1a", None, None), T0);
    let d2 = e2.decide(&snap(wide, vec![], pending(2, "web", 1000, 1024)), T0);
    assert_eq!(
        scale_ups(&d2),
        vec![("y-1a".to_string(), 1)],
        "{:?}",
        d2.actions
    );
}

#[test]
fn a_starved_pool_is_not_retried_inside_its_cool_off_and_is_after() {
    let (mut e, groups) = twelve_spot_one_on_demand();
    for zone in [A, B, C] {
        for t in SPOT_TYPES {
            e.handle_event(ice("eks-spot-01", Some(zone), Some(t)), T0);
        }
    }
    let s = snap(groups, vec![], pending(3, "web", 1000, 1024));
    for secs in [1, 60, 179] {
        // A clone per probe: a real round would start on-demand nodes and wait for them.
        let d = e.clone().decide(&s, T0 + Duration::from_secs(secs));
        assert!(
            scale_ups(&d).iter().all(|(g, _)| !g.contains("spot")),
            "at +{secs}s: {:?}",
            d.actions
        );
    }
    let mut fresh = e.clone();
    let d = fresh.decide(&s, T0 + Duration::from_secs(181));
    assert!(scale_ups(&d)[0].0.contains("spot"), "{:?}", d.actions);
}

#[test]
fn a_failure_in_one_zone_keeps_the_other_zones_of_the_group() {
    let g = group("spot", CapacityType::Spot, &[A, B], &["m5.xlarge"]);
    let od = group("od", CapacityType::OnDemand, &[A], &["m5.xlarge"]);
    let mut e = engine();
    e.set_priorities("50: [spot]\n10: [od]\n").unwrap();
    e.handle_event(ice("spot", Some(A), Some("m5.xlarge")), T0);
    let s = snap(vec![g, od], vec![], pending(2, "web", 1000, 1024));
    let d = e.decide(&s, T0);
    assert_eq!(scale_ups(&d), vec![("spot".to_string(), 1)]);
    let status = d.status.groups.iter().find(|g| g.name == "spot").unwrap();
    assert_eq!(status.cool_off_until, None, "zone b is still usable");
}

#[test]
fn max_spot_instance_count_blocks_every_spot_group() {
    let (mut e, groups) = twelve_spot_one_on_demand();
    e.handle_event(
        Event::LaunchFailed {
            group: "eks-spot-03".into(),
            zone: None,
            instance_type: None,
            reason: LaunchFailureReason::MaxSpotInstanceCountExceeded,
        },
        T0,
    );
    let s = snap(groups, vec![], pending(2, "web", 1000, 1024));
    let d = e.decide(&s, T0);
    assert_eq!(scale_ups(&d), vec![("eks-on-demand".to_string(), 1)]);
}

#[test]
fn ca_style_group_backoff_does_not_spread_to_other_groups() {
    let (_, groups) = twelve_spot_one_on_demand();
    let mut e = Autoscaler::new(AutoscalerConfig {
        pool_wide_cool_off: false,
        ..Default::default()
    })
    .unwrap();
    e.set_priorities("50: ['spot']\n10: ['on-demand']\n")
        .unwrap();
    for zone in [A, B, C] {
        for t in SPOT_TYPES {
            e.handle_event(ice("eks-spot-01", Some(zone), Some(t)), T0);
        }
    }
    let s = snap(groups, vec![], pending(2, "web", 1000, 1024));
    let d = e.decide(&s, T0);
    let ups = scale_ups(&d);
    assert!(
        ups[0].0.starts_with("eks-spot-") && ups[0].0 != "eks-spot-01",
        "{ups:?}"
    );
}

#[test]
fn revert_keeps_instances_that_did_launch_and_never_goes_below_min() {
    let mut g = group("spot", CapacityType::Spot, &[A], &["m5.xlarge"]);
    g.min_size = 1;
    g.target_size = 10;
    g.current_instances = Some(4);
    let mut e = engine();
    e.handle_event(ice("spot", Some(A), Some("m5.xlarge")), T0);
    let s = snap(vec![g.clone()], vec![], vec![]);
    let d = e.decide(&s, T0);
    assert_eq!(reverts(&d), vec![("spot".to_string(), 4)]);

    g.current_instances = Some(0);
    let mut e = engine();
    e.handle_event(ice("spot", Some(A), Some("m5.xlarge")), T0);
    let d = e.decide(&snap(vec![g], vec![], vec![]), T0);
    assert_eq!(reverts(&d), vec![("spot".to_string(), 1)]);
}

#[test]
fn cool_off_grows_exponentially_on_repeated_failures() {
    let mut e = engine();
    let g = group("spot", CapacityType::Spot, &[A], &["m5.xlarge"]);
    let s = snap(vec![g], vec![], vec![]);
    e.handle_event(ice("spot", None, None), T0);
    let d1 = e.decide(&s, T0);
    let until1 = d1.status.groups[0].cool_off_until.unwrap();
    assert_eq!(until1.since(T0), Duration::from_secs(180));
    let t2 = until1 + Duration::from_secs(30);
    e.handle_event(ice("spot", None, None), t2);
    let d2 = e.decide(&s, t2);
    assert_eq!(
        d2.status.groups[0].cool_off_until.unwrap().since(t2),
        Duration::from_secs(360)
    );
}

#[test]
fn max_node_provision_time_is_the_safety_net_for_silent_failures() {
    let g = group("spot", CapacityType::Spot, &[A], &["m5.xlarge"]);
    let od = group("od", CapacityType::OnDemand, &[A], &["m5.xlarge"]);
    let mut e = engine();
    e.set_priorities("50: [spot]\n10: [od]\n").unwrap();
    let pods = pending(2, "web", 1000, 1024);
    let d = e.decide(&snap(vec![g.clone(), od.clone()], vec![], pods.clone()), T0);
    assert_eq!(scale_ups(&d), vec![("spot".to_string(), 1)]);
    let mut g2 = g.clone();
    g2.target_size = 1;
    let s = snap(vec![g2, od], vec![], pods);
    // Nobody reports a failure; nothing registers.
    let d = e.decide(&s, T0 + Duration::from_secs(14 * 60));
    assert!(d.actions.is_empty(), "still inside 15m: {:?}", d.actions);
    let d = e.decide(&s, T0 + Duration::from_secs(15 * 60 + 10));
    assert_eq!(reverts(&d), vec![("spot".to_string(), 0)]);
    assert_eq!(scale_ups(&d), vec![("od".to_string(), 1)]);
    assert!(d.actions[0].reason().contains("max-node-provision-time"));
}

#[test]
fn decisions_are_deterministic_for_the_same_inputs() {
    let run = || {
        let (mut e, groups) = twelve_spot_one_on_demand();
        let s = snap(groups, vec![], pending(20, "web", 700, 900));
        let a = e.decide(&s, T0);
        e.handle_event(ice("eks-spot-02", Some(B), Some("m5a.xlarge")), T0);
        let b = e.decide(&s, T0 + Duration::from_secs(10));
        serde_json::to_string(&(a, b)).unwrap()
    };
    assert_eq!(run(), run());
}

#[test]
fn new_pods_wait_for_the_new_pod_scale_up_delay() {
    let g = group("od", CapacityType::OnDemand, &[A], &["m5.xlarge"]);
    let mut p = pod("fresh", "web", 1000, 1024, None);
    p.created_at = T0;
    let s = snap(vec![g], vec![], vec![p]);
    let config = AutoscalerConfig {
        new_pod_scale_up_delay: Duration::from_secs(30),
        ..Default::default()
    };
    let mut e = Autoscaler::new(config).unwrap();
    let d = e.decide(&s, T0 + Duration::from_secs(10));
    assert!(d.actions.is_empty());
    assert!(not_triggered_reason(&d, "fresh").contains("new-pod-scale-up-delay"));
    let d = e.decide(&s, T0 + Duration::from_secs(31));
    assert_eq!(scale_ups(&d), vec![("od".to_string(), 1)]);
}

#[test]
fn one_expansion_per_round_when_configured_like_cluster_autoscaler() {
    // Two pod classes that need different groups (pinned to different zones).
    let groups = vec![
        group("a", CapacityType::OnDemand, &[A], &["m5.xlarge"]),
        group("b", CapacityType::OnDemand, &[B], &["m5.xlarge"]),
    ];
    let mut pods = pending(2, "in-a", 1000, 1024);
    for p in &mut pods {
        p.spec.node_selector.insert(ZONE_LABEL.into(), A.into());
    }
    for mut p in pending(2, "in-b", 1000, 1024) {
        p.spec.node_selector.insert(ZONE_LABEL.into(), B.into());
        pods.push(p);
    }
    let s = snap(groups, vec![], pods);
    let all = engine().decide(&s, T0);
    assert_eq!(scale_ups(&all).len(), 2, "{:?}", all.actions);
    let mut ca_like = Autoscaler::new(AutoscalerConfig {
        max_expansions_per_round: 1,
        ..AutoscalerConfig::default()
    })
    .unwrap();
    let one = ca_like.decide(&s, T0);
    assert_eq!(scale_ups(&one).len(), 1, "{:?}", one.actions);
}

// ---------------------------------------------------------------- hedged launches, slack

fn scale_up_causes(d: &Decisions) -> Vec<(String, ScaleUpCause, String)> {
    d.actions
        .iter()
        .filter_map(|a| match a {
            Decision::ScaleUp {
                group,
                cause,
                reason,
                ..
            } => Some((group.clone(), *cause, reason.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn after_a_spot_shortage_a_scale_up_is_hedged_over_the_spot_families_at_the_same_node_count() {
    let groups = vec![
        group("spot-a", CapacityType::Spot, &[A], &["m5.xlarge"]),
        group("spot-b", CapacityType::Spot, &[A], &["m4.xlarge"]),
        // The same pods on as many nodes, but 30 % dearer: not a family worth hedging on.
        group("spot-r", CapacityType::Spot, &[A], &["r5.xlarge"]),
        group("spot-z", CapacityType::Spot, &[B], &["c5.xlarge"]),
        group("od", CapacityType::OnDemand, &[A], &["m5.xlarge"]),
    ];
    let mut e = engine();
    e.set_priorities("50: ['spot']\n10: ['^od$']\n").unwrap();
    let s = snap(groups, vec![], pending(9, "web", 1000, 1024));

    let calm = e.clone().decide(&s, T0);
    let ups = scale_ups(&calm);
    assert_eq!(ups.len(), 1, "no shortage: one group takes it all: {ups:?}");
    let planned = ups[0].1;
    assert!(planned >= 2, "{ups:?}");

    // Spot ran short in another zone (spot-z is now cooled off).
    e.handle_event(ice("spot-z", Some(B), None), T0);
    let hedged = e.clone().decide(&s, T0 + Duration::from_secs(10));
    let ups = scale_ups(&hedged);
    let mut groups_used: Vec<&str> = ups.iter().map(|(g, _)| g.as_str()).collect();
    groups_used.sort();
    assert_eq!(groups_used, ["spot-a", "spot-b"], "{:?}", hedged.actions);
    assert_eq!(
        ups.iter().map(|(_, n)| n).sum::<u32>(),
        planned,
        "hedging spreads the nodes, it does not add any"
    );
    let causes = scale_up_causes(&hedged);
    let hedge: Vec<_> = causes
        .iter()
        .filter(|(_, c, _)| *c == ScaleUpCause::Hedge)
        .collect();
    assert_eq!(hedge.len(), 1, "{causes:?}");
    assert!(
        hedge[0].2.contains("another spot family") && hedge[0].2.contains("spot-z in us-east-1b"),
        "{}",
        hedge[0].2
    );

    // Past the window, or turned off: back to one group.
    let late = e.clone().decide(&s, T0 + Duration::from_secs(16 * 60));
    assert_eq!(scale_ups(&late).len(), 1, "{:?}", late.actions);
    let mut off = Autoscaler::new(AutoscalerConfig {
        hedge: HedgeConfig {
            enabled: false,
            ..HedgeConfig::default()
        },
        ..AutoscalerConfig::default()
    })
    .unwrap();
    off.set_priorities("50: ['spot']\n10: ['^od$']\n").unwrap();
    off.handle_event(ice("spot-z", Some(B), None), T0);
    let d = off.decide(&s, T0 + Duration::from_secs(10));
    assert_eq!(scale_ups(&d).len(), 1, "{:?}", d.actions);
}

#[test]
fn when_three_spot_families_are_short_even_a_one_node_scale_up_starts_on_demand_at_once() {
    // Four spot families (balance sets: their instance types differ) and on-demand.
    let groups = vec![
        group("spot-a", CapacityType::Spot, &[A], &["m5.xlarge"]),
        group("spot-b", CapacityType::Spot, &[A], &["m5a.xlarge"]),
        group("spot-c", CapacityType::Spot, &[A], &["m6i.xlarge"]),
        group("spot-d", CapacityType::Spot, &[A], &["m4.xlarge"]),
        group("od", CapacityType::OnDemand, &[A], &["m5.xlarge"]),
    ];
    let priorities = "50: ['spot']\n10: ['^od$']\n";
    let engine_with = |families: u32| {
        let mut e = Autoscaler::new(AutoscalerConfig {
            hedge: HedgeConfig {
                broad_shortage_families: families,
                ..HedgeConfig::default()
            },
            ..AutoscalerConfig::default()
        })
        .unwrap();
        e.set_priorities(priorities).unwrap();
        e
    };
    let one_pod = pending(1, "web", 1000, 1024);
    let s = snap(groups.clone(), vec![], one_pod.clone());
    let t1 = T0 + Duration::from_secs(10);

    // Three families failed one after the other (one round each, as a walk finds them).
    let mut broad = engine_with(3);
    for (i, g) in ["spot-a", "spot-b", "spot-c"].iter().enumerate() {
        broad.handle_event(ice(g, Some(A), None), T0 + Duration::from_secs(i as u64));
    }
    let d = broad.clone().decide(&s, t1);
    let causes = scale_up_causes(&d);
    assert_eq!(scale_ups(&d), [("od".to_string(), 1)], "{:?}", d.actions);
    assert_eq!(causes[0].1, ScaleUpCause::Hedge, "{causes:?}");
    assert!(
        causes[0].2.contains("start on-demand")
            && causes[0].2.contains("3 spot families failed within 15m"),
        "{}",
        causes[0].2
    );
    // The pod's verdict (its TriggeredScaleUp Event) names the group that got the node.
    assert!(
        d.pods
            .iter()
            .all(|o| o.verdict == PodVerdict::TriggeredScaleUp { group: "od".into() }),
        "{:?}",
        d.pods
    );

    // A bulk scale-up of mixed pod sizes: its slack does not go to the spot group the
    // expander chose, which a broad shortage leaves empty (it would not launch).
    let mut mixed = pending(24, "worker", 2000, 1024);
    mixed.extend(pending(16, "front", 1000, 1024));
    let d = broad
        .clone()
        .decide(&snap(groups.clone(), vec![], mixed), t1);
    let ups = scale_ups(&d);
    assert!(
        ups.len() == 1 && ups[0].0 == "od" && ups[0].1 >= 8,
        "{:?}",
        d.actions
    );

    // Off, or two families only, the walk goes on to the fourth family.
    let mut off = engine_with(0);
    let mut two = engine_with(3);
    for (i, g) in ["spot-a", "spot-b", "spot-c"].iter().enumerate() {
        off.handle_event(ice(g, Some(A), None), T0 + Duration::from_secs(i as u64));
    }
    for (i, g) in ["spot-a", "spot-b"].iter().enumerate() {
        two.handle_event(ice(g, Some(A), None), T0 + Duration::from_secs(i as u64));
    }
    for (mut e, untried) in [(off, &["spot-d"][..]), (two, &["spot-c", "spot-d"][..])] {
        let d = e.decide(&s, t1);
        let ups = scale_ups(&d);
        assert!(
            ups.len() == 1 && untried.contains(&ups[0].0.as_str()),
            "{:?}",
            d.actions
        );
    }

    // A spot node that joined after the latest failure: spot still has capacity somewhere.
    let joined = node(
        "spot-d-1",
        &groups[3],
        A,
        "m4.xlarge",
        T0 + Duration::from_secs(5),
    );
    let mut filled = snap(groups.clone(), vec![joined], vec![]);
    filled = snapshot(
        filled.groups().to_vec(),
        filled.nodes().to_vec(),
        pending(9, "web", 1000, 1024),
        vec![],
    );
    let d = broad.clone().decide(&filled, t1);
    assert!(
        scale_ups(&d).iter().all(|(g, _)| g.starts_with("spot-")),
        "{:?}",
        d.actions
    );

    // Past the window, spot is tried again.
    let d = broad.decide(&s, T0 + Duration::from_secs(16 * 60));
    assert!(
        scale_ups(&d).iter().all(|(g, _)| g.starts_with("spot-")),
        "{:?}",
        d.actions
    );
}

#[test]
fn a_one_node_scale_up_goes_to_the_lightest_zone_of_its_balance_set() {
    // cluster-autoscaler's balancing processor (BalanceScaleUpBetweenGroups) gives a single
    // new node to the smallest similar group, too.
    let groups = vec![
        group("spot-1a", CapacityType::Spot, &[A], &["m5.xlarge"]),
        group("spot-1b", CapacityType::Spot, &[B], &["m5.xlarge"]),
        group("spot-1c", CapacityType::Spot, &[C], &["m5.xlarge"]),
    ];
    let nodes = vec![
        node("a1", &groups[0], A, "m5.xlarge", T0),
        node("a2", &groups[0], A, "m5.xlarge", T0),
        node("c1", &groups[2], C, "m5.xlarge", T0),
        node("c2", &groups[2], C, "m5.xlarge", T0),
        node("b1", &groups[1], B, "m5.xlarge", T0),
    ];
    let mut groups = groups;
    for (g, size) in groups.iter_mut().zip([2, 1, 2]) {
        g.target_size = size;
    }
    // Pods that fill every node, so the new one is needed.
    let mut pods = Vec::new();
    for n in ["a1", "a2", "c1", "c2", "b1"] {
        for i in 0..4 {
            pods.push(pod(&format!("{n}-{i}"), "fill", 900, 1024, Some(n)));
        }
    }
    pods.push(pod("new-0", "web", 1000, 1024, None));
    let d = engine().decide(&snapshot(groups, nodes, pods, vec![]), T0);
    assert_eq!(
        scale_ups(&d),
        [("spot-1b".to_string(), 1)],
        "{:?}",
        d.actions
    );
}

#[test]
fn a_bulk_scale_up_of_mixed_pod_sizes_gets_slack_and_a_uniform_or_small_one_does_not() {
    let groups = vec![group("od", CapacityType::OnDemand, &[A], &["m5.2xlarge"])];
    let total = |config: AutoscalerConfig, pods: Vec<Pod>| -> u32 {
        let mut e = Autoscaler::new(config).unwrap();
        let d = e.decide(&snap(groups.clone(), vec![], pods), T0);
        scale_ups(&d).iter().map(|(_, n)| n).sum()
    };
    let exact = AutoscalerConfig {
        bulk_slack: 0.0,
        ..AutoscalerConfig::default()
    };
    let mut mixed = pending(24, "worker", 2000, 1024);
    mixed.extend(pending(16, "front", 1000, 1024));
    let packed = total(exact.clone(), mixed.clone());
    assert!(packed >= 8, "a bulk scale-up: {packed}");
    assert_eq!(
        total(AutoscalerConfig::default(), mixed),
        packed + (f64::from(packed) * 0.05).ceil() as u32,
        "mixed sizes leave holes the scheduler strands a pod in"
    );
    let uniform = pending(40, "front", 1000, 1024);
    assert_eq!(
        total(AutoscalerConfig::default(), uniform.clone()),
        total(exact.clone(), uniform),
        "pods of one size pack as estimated"
    );
    let mut small = pending(4, "worker", 2000, 1024);
    small.extend(pending(4, "front", 1000, 1024));
    assert_eq!(
        total(AutoscalerConfig::default(), small.clone()),
        total(exact, small),
        "a small scale-up gets none"
    );
}
