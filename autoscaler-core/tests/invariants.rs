//! Invariants of scale-up over generated clusters (proptest).

use autoscaler_core::fixtures::{group, node, pod};
use autoscaler_core::model::ZONE_LABEL;
use autoscaler_core::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

const ZONES: [&str; 3] = ["z-a", "z-b", "z-c"];
const TYPES: [&str; 5] = [
    "m5.large",
    "m5.xlarge",
    "m5.2xlarge",
    "c5.xlarge",
    "r5.xlarge",
];

#[derive(Debug, Clone)]
struct GroupSpec {
    spot: bool,
    zones: Vec<usize>,
    types: Vec<usize>,
    min: u32,
    extra_max: u32,
    target_frac: u32,
    registered_frac: u32,
}

#[derive(Debug, Clone)]
struct PodSpec {
    cpu: u64,
    mem_mib: u64,
    count: usize,
    zone: Option<usize>,
    priority: i32,
}

#[derive(Debug, Clone)]
struct FailureSpec {
    group: usize,
    zone: Option<usize>,
    itype: Option<usize>,
    wide: bool,
}

fn group_spec() -> impl Strategy<Value = GroupSpec> {
    (
        any::<bool>(),
        proptest::sample::subsequence(vec![0usize, 1, 2], 1..=3),
        proptest::sample::subsequence(vec![0usize, 1, 2, 3, 4], 1..=3),
        0u32..3,
        0u32..12,
        0u32..=100,
        0u32..=100,
    )
        .prop_map(
            |(spot, zones, types, min, extra_max, target_frac, registered_frac)| GroupSpec {
                spot,
                zones,
                types,
                min,
                extra_max,
                target_frac,
                registered_frac,
            },
        )
}

fn pod_spec() -> impl Strategy<Value = PodSpec> {
    (
        50u64..9000,
        64u64..40_000,
        1usize..12,
        proptest::option::weighted(0.2, 0usize..3),
        prop_oneof![Just(0), Just(100), Just(-20)],
    )
        .prop_map(|(cpu, mem_mib, count, zone, priority)| PodSpec {
            cpu,
            mem_mib,
            count,
            zone,
            priority,
        })
}

fn failure_spec() -> impl Strategy<Value = FailureSpec> {
    (
        0usize..8,
        proptest::option::of(0usize..3),
        proptest::option::of(0usize..5),
        any::<bool>(),
    )
        .prop_map(|(group, zone, itype, wide)| FailureSpec {
            group,
            zone,
            itype,
            wide,
        })
}

struct World {
    snapshot: ClusterSnapshot,
    failures: Vec<Event>,
}

fn build(groups: &[GroupSpec], pods: &[PodSpec], failures: &[FailureSpec]) -> World {
    let mut gs = Vec::new();
    let mut nodes = Vec::new();
    let mut all_pods = Vec::new();
    for (gi, spec) in groups.iter().enumerate() {
        let zones: Vec<&str> = spec.zones.iter().map(|&z| ZONES[z]).collect();
        let types: Vec<&str> = spec.types.iter().map(|&t| TYPES[t]).collect();
        let market = if spec.spot {
            CapacityType::Spot
        } else {
            CapacityType::OnDemand
        };
        let mut g = group(&format!("g{gi}"), market, &zones, &types);
        g.min_size = spec.min;
        g.max_size = spec.min + spec.extra_max;
        g.target_size = g.min_size + (g.max_size - g.min_size) * spec.target_frac / 100;
        let registered = g.target_size * spec.registered_frac / 100;
        for n in 0..registered {
            let name = format!("g{gi}-n{n}");
            let zone = zones[n as usize % zones.len()];
            let itype = types[n as usize % types.len()];
            nodes.push(node(&name, &g, zone, itype, Timestamp::ZERO));
            // Half-fill each node.
            all_pods.push(pod(&format!("{name}-busy"), "busy", 900, 3000, Some(&name)));
        }
        gs.push(g);
    }
    for (ci, spec) in pods.iter().enumerate() {
        for i in 0..spec.count {
            let mut p = pod(
                &format!("c{ci}-{i}"),
                &format!("c{ci}"),
                spec.cpu,
                spec.mem_mib,
                None,
            );
            p.spec.priority = spec.priority;
            if let Some(z) = spec.zone {
                p.spec
                    .node_selector
                    .insert(ZONE_LABEL.into(), ZONES[z].into());
            }
            all_pods.push(p);
        }
    }
    let failures = failures
        .iter()
        .filter(|f| f.group < gs.len())
        .map(|f| Event::LaunchFailed {
            group: format!("g{}", f.group),
            zone: f.zone.map(|z| ZONES[z].to_string()),
            instance_type: f.itype.map(|t| TYPES[t].to_string()),
            reason: if f.wide {
                LaunchFailureReason::InsufficientInstanceCapacity
            } else {
                LaunchFailureReason::Other("bad launch template".into())
            },
        })
        .collect();
    World {
        snapshot: ClusterSnapshot::new(SnapshotParts {
            groups: gs,
            nodes,
            pods: all_pods.into_iter().map(std::sync::Arc::new).collect(),
            ..SnapshotParts::default()
        })
        .unwrap(),
        failures,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn scale_up_invariants(
        groups in proptest::collection::vec(group_spec(), 1..8),
        pods in proptest::collection::vec(pod_spec(), 0..6),
        failures in proptest::collection::vec(failure_spec(), 0..6),
        seed in any::<u64>(),
        expander in prop_oneof![
            Just("priority,least-waste"), Just("random"), Just("price"), Just("most-pods,least-waste")
        ],
    ) {
        check_scale_up(&groups, &pods, &failures, seed, expander)?;
    }
}

/// The invariants every scale-up decision keeps, over one generated world.
fn check_scale_up(
    groups: &[GroupSpec],
    pods: &[PodSpec],
    failures: &[FailureSpec],
    seed: u64,
    expander: &str,
) -> Result<(), TestCaseError> {
    let world = build(groups, pods, failures);
    let snap = &world.snapshot;
    let now = Timestamp::from_secs(50_000);
    let config = AutoscalerConfig {
        expander: expander.parse().unwrap(),
        seed,
        ..AutoscalerConfig::default()
    };
    let mut engine = Autoscaler::new(config).unwrap();
    engine
        .set_priorities("20: ['g[0-3]']\n10: ['.*']\n")
        .unwrap();
    for e in &world.failures {
        engine.handle_event(e.clone(), now);
    }
    let twin = engine.clone();
    let d = engine.decide(snap, now);

    // Determinism: the same state and inputs give the same decisions.
    let d2 = twin.clone().decide(snap, now);
    prop_assert_eq!(&d, &d2);

    // Groups cooled off as a whole (failure without zone and type) are never scaled.
    let whole_group_blocked: Vec<String> = world
        .failures
        .iter()
        .filter_map(|e| match e {
            Event::LaunchFailed {
                group,
                zone: None,
                instance_type: None,
                ..
            } => Some(group.clone()),
            _ => None,
        })
        .collect();

    // Nodes by the group they were planned for: a hedge or zone-balance share of a
    // scale-up goes to another group but serves the pods credited to the chosen one.
    let mut nodes_for: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    let mut partners: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for a in &d.actions {
        let g = a
            .group()
            .and_then(|name| snap.group(name))
            .expect("decisions name known groups");
        match a {
            Decision::ScaleUp {
                group,
                delta,
                new_target,
                ..
            } => {
                prop_assert!(*delta > 0);
                prop_assert!(
                    *new_target <= g.max_size,
                    "{} above max {}",
                    new_target,
                    g.max_size
                );
                prop_assert!(
                    !whole_group_blocked.contains(group),
                    "{} scaled inside its cool-off",
                    group
                );
                let st = d.status.groups.iter().find(|s| &s.name == group).unwrap();
                prop_assert!(
                    st.cool_off_until.is_none(),
                    "{} fully cooled off but scaled",
                    group
                );
                let planned_for = match a {
                    Decision::ScaleUp {
                        cause: ScaleUpCause::PendingPods,
                        ..
                    } => group.clone(),
                    Decision::ScaleUp {
                        cause: ScaleUpCause::Hedge | ScaleUpCause::ZoneBalance,
                        reason,
                        ..
                    } => planned_for(reason)
                        .unwrap_or_else(|| panic!("share without its chosen group: {reason}")),
                    // Replacements serve the pods of the node they replace.
                    _ => group.clone(),
                };
                if &planned_for != group {
                    partners
                        .entry(planned_for.clone())
                        .or_default()
                        .insert(group.clone());
                }
                let largest = |f: fn(&InstanceType) -> u64| {
                    g.instance_types.iter().map(f).max().unwrap() * u64::from(*delta)
                };
                let n = nodes_for.entry(planned_for).or_default();
                n.0 += largest(|t| t.allocatable.cpu_millis);
                n.1 += largest(|t| t.allocatable.memory_bytes);
                n.2 += largest(|t| t.allocatable.pods);
            }
            Decision::RevertScaleUp { new_target, .. } => {
                prop_assert!(*new_target >= g.min_size, "revert below min");
            }
            _ => {}
        }
    }

    // Every pod counted as helped fits the planned node, and the planned nodes hold
    // all the pods credited to them.
    let mut credited: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    for outcome in &d.pods {
        let PodVerdict::TriggeredScaleUp { group } = &outcome.verdict else {
            continue;
        };
        let g = snap.group(group).unwrap();
        let p = snap.pods().iter().find(|p| p.key() == outcome.pod).unwrap();
        prop_assert!(p.spec.priority >= -10, "expendable pod triggered scale-up");
        // Types in cool-off in every zone are not launched: the guarantee is over the rest.
        let launchable: Vec<&InstanceType> = g
            .instance_types
            .iter()
            .filter(|t| {
                g.zones.iter().any(|z| {
                    engine
                        .cool_offs()
                        .blocking(&g.name, g.capacity_type, z, &t.name, now)
                        .is_none()
                })
            })
            .collect();
        prop_assert!(!launchable.is_empty());
        let min_cpu = launchable
            .iter()
            .map(|t| t.allocatable.cpu_millis)
            .min()
            .unwrap();
        let min_mem = launchable
            .iter()
            .map(|t| t.allocatable.memory_bytes)
            .min()
            .unwrap();
        prop_assert!(p.spec.requests.cpu_millis <= min_cpu);
        prop_assert!(p.spec.requests.memory_bytes <= min_mem);
        if let Some(z) = p.spec.node_selector.get(ZONE_LABEL) {
            prop_assert!(
                g.zones.contains(z),
                "pod for zone {} credited to {:?}",
                z,
                g.zones
            );
        }
        // A share sent to another group is of no use unless that group fits the pod.
        for partner in partners.get(group).into_iter().flatten() {
            let pg = snap.group(partner).unwrap();
            prop_assert!(
                pg.instance_types.iter().any(|t| {
                    p.spec.requests.cpu_millis <= t.allocatable.cpu_millis
                        && p.spec.requests.memory_bytes <= t.allocatable.memory_bytes
                }),
                "{} credited to {} but a share went to {}, which cannot fit it",
                p.key(),
                group,
                partner
            );
        }
        let c = credited.entry(group.clone()).or_default();
        c.0 += p.spec.requests.cpu_millis;
        c.1 += p.spec.requests.memory_bytes;
        c.2 += 1;
    }
    for (group, (cpu, mem, count)) in credited {
        let (max_cpu, max_mem, max_pods) = nodes_for.get(&group).copied().unwrap_or_default();
        prop_assert!(
            cpu <= max_cpu,
            "{group}: {cpu}m credited to nodes of {max_cpu}m: {:#?}",
            d.actions
        );
        prop_assert!(
            mem <= max_mem,
            "{group}: {mem} bytes credited to nodes of {max_mem}: {:#?}",
            d.actions
        );
        prop_assert!(count <= max_pods);
    }
    Ok(())
}

/// The group a hedge or zone-balance share was planned for, from its reason
/// ("... of the N node(s) planned for G go to ...").
fn planned_for(reason: &str) -> Option<String> {
    let rest = reason.split_once(" planned for ")?.1;
    Some(rest.split_once(" go to ")?.0.to_string())
}

/// Found by `scale_up_invariants`: two spot groups, the memory-sized one's only type short of
/// capacity; the pods credited to a group must fit on the nodes it is given.
#[test]
fn pods_credited_to_a_group_fit_the_nodes_it_gets() {
    // (zone, type, min, extra_max, target_frac, registered_frac), all spot.
    let groups = [(1, 4, 0, 4, 50, 50), (2, 1, 1, 3, 0, 0)].map(
        |(zone, itype, min, extra_max, target_frac, registered_frac)| GroupSpec {
            spot: true,
            zones: vec![zone],
            types: vec![itype],
            min,
            extra_max,
            target_frac,
            registered_frac,
        },
    );
    let pods = [
        PodSpec {
            cpu: 50,
            mem_mib: 7696,
            count: 4,
            zone: None,
            priority: 0,
        },
        PodSpec {
            cpu: 50,
            mem_mib: 24080,
            count: 4,
            zone: None,
            priority: 0,
        },
    ];
    let failures = [FailureSpec {
        group: 0,
        zone: None,
        itype: Some(0),
        wide: true,
    }];
    check_scale_up(
        &groups,
        &pods,
        &failures,
        5761763623588843079,
        "priority,least-waste",
    )
    .unwrap();
}
