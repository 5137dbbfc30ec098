//! Invariants of the disruption logic (scale-down, drain-back, rebalance) over generated
//! clusters: placement, PDBs, min size, stabilization, blockers, determinism.

use autoscaler_core::fixtures::{group, node, pod};
use autoscaler_core::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const ZONES: [&str; 3] = ["z-a", "z-b", "z-c"];
const T0: Timestamp = Timestamp::from_secs(10_000_000);

#[derive(Debug, Clone)]
struct NodeSpec {
    pods: Vec<(u64, u64, u8)>, // cpu, mem MiB, flags: 1 no owner, 2 safe=false, 4 safe=true, 8 app=guarded
    old: bool,
}

#[derive(Debug, Clone)]
struct GroupSpec {
    spot: bool,
    zone: usize,
    min: u32,
    nodes: Vec<NodeSpec>,
}

fn node_spec() -> impl Strategy<Value = NodeSpec> {
    (
        proptest::collection::vec((50u64..2500, 64u64..6000, 0u8..16), 0..5),
        any::<bool>(),
    )
        .prop_map(|(pods, old)| NodeSpec { pods, old })
}

fn group_spec() -> impl Strategy<Value = GroupSpec> {
    (
        any::<bool>(),
        0usize..3,
        0u32..3,
        proptest::collection::vec(node_spec(), 0..6),
    )
        .prop_map(|(spot, zone, min, nodes)| GroupSpec {
            spot,
            zone,
            min,
            nodes,
        })
}

fn build(groups: &[GroupSpec], pdb_allowed: u32, pending: usize) -> ClusterSnapshot {
    let mut gs = Vec::new();
    let mut nodes = Vec::new();
    let mut pods = Vec::new();
    for (gi, spec) in groups.iter().enumerate() {
        let market = if spec.spot {
            CapacityType::Spot
        } else {
            CapacityType::OnDemand
        };
        let mut g = group(
            &format!("g{gi}"),
            market,
            &[ZONES[spec.zone]],
            &["m5.xlarge"],
        );
        g.min_size = spec.min.min(spec.nodes.len() as u32);
        g.target_size = spec.nodes.len() as u32;
        for (ni, ns) in spec.nodes.iter().enumerate() {
            let name = format!("g{gi}-n{ni}");
            let created = if ns.old { Timestamp::ZERO } else { T0 };
            nodes.push(node(&name, &g, ZONES[spec.zone], "m5.xlarge", created));
            let mut used = 0;
            for (pi, &(cpu, mem, flags)) in ns.pods.iter().enumerate() {
                if used + cpu > 3800 {
                    continue;
                }
                used += cpu;
                let app = if flags & 8 != 0 { "guarded" } else { "web" };
                let mut p = pod(
                    &format!("{name}-p{pi}"),
                    app,
                    cpu,
                    mem.min(3000),
                    Some(&name),
                );
                if flags & 1 != 0 {
                    p.owner = None;
                }
                if flags & 2 != 0 {
                    p.annotations.insert(
                        "cluster-autoscaler.kubernetes.io/safe-to-evict".into(),
                        "false".into(),
                    );
                }
                if flags & 4 != 0 {
                    p.annotations.insert(
                        "cluster-autoscaler.kubernetes.io/safe-to-evict".into(),
                        "true".into(),
                    );
                }
                pods.push(p);
            }
        }
        gs.push(g);
    }
    for i in 0..pending {
        pods.push(pod(&format!("pending-{i}"), "burst", 1500, 1024, None));
    }
    ClusterSnapshot::new(SnapshotParts {
        groups: gs,
        nodes,
        pods: pods.into_iter().map(std::sync::Arc::new).collect(),
        pdbs: vec![PodDisruptionBudget {
            namespace: "default".into(),
            name: "guarded".into(),
            selector: LabelSelector::labels([("app", "guarded")]),
            disruptions_allowed: pdb_allowed,
        }],
        ..SnapshotParts::default()
    })
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn disruption_invariants(
        groups in proptest::collection::vec(group_spec(), 1..5),
        pdb_allowed in 0u32..2,
        pending in 0usize..3,
        seed in any::<u64>(),
    ) {
        check_disruption(&groups, pdb_allowed, pending, seed)?;
    }
}

/// The invariants every round of disruption decisions keeps, over one generated world.
fn check_disruption(
    groups: &[GroupSpec],
    pdb_allowed: u32,
    pending: usize,
    seed: u64,
) -> Result<(), TestCaseError> {
    let snap = build(groups, pdb_allowed, pending);
    let mut config = AutoscalerConfig {
        seed,
        ..AutoscalerConfig::default()
    };
    config.scale_down.max_drain_parallelism = 3;
    let mut engine = Autoscaler::new(config).unwrap();
    engine
        .set_priorities("50: ['g[0-1]']\n10: ['.*']\n")
        .unwrap();
    let mut ups_at: BTreeMap<String, Vec<Timestamp>> = BTreeMap::new();
    let mut all = Vec::new();
    for minutes in [0u64, 11, 25] {
        let now = T0 + Duration::from_secs(minutes * 60);
        let twin = engine.clone();
        let d = engine.decide(&snap, now);
        prop_assert_eq!(&d, &twin.clone().decide(&snap, now), "determinism");
        for a in &d.actions {
            if let Decision::ScaleUp { group, .. } = a {
                ups_at.entry(group.clone()).or_default().push(now);
            }
        }
        all.push((now, d));
    }

    // Check each round's removals against the snapshot.
    for (now, d) in &all {
        let removed: BTreeSet<&str> = d
            .actions
            .iter()
            .filter_map(|a| match a {
                Decision::RemoveNode { node, .. } => Some(node.as_str()),
                _ => None,
            })
            .collect();
        if removed.is_empty() {
            continue;
        }
        let mut per_group: BTreeMap<&str, u32> = BTreeMap::new();
        let mut pdb_used = 0u32;
        // Free room on the nodes that stay.
        let mut free: Vec<(i64, i64)> = Vec::new();
        for (ni, n) in snap.node_indexes().zip(snap.nodes()) {
            if removed.contains(n.name.as_str()) {
                continue;
            }
            let req = snap.requested_on_node(ni);
            free.push((
                n.allocatable.cpu_millis as i64 - req.cpu_millis as i64,
                n.allocatable.memory_bytes as i64 - req.memory_bytes as i64,
            ));
        }
        for a in &d.actions {
            let Decision::RemoveNode {
                node: name,
                group,
                kind,
                ..
            } = a
            else {
                continue;
            };
            *per_group.entry(group.as_str()).or_default() += 1;
            let ni = snap.node_index(name).unwrap();
            if *kind == RemovalKind::ScaleDown {
                let recent = ups_at
                    .get(group)
                    .is_some_and(|ts| ts.iter().any(|t| now.since(*t) < Duration::from_secs(600)));
                prop_assert!(
                    !recent,
                    "{} removed within the delay after a scale-up of its group",
                    name
                );
            }
            for &p in snap.pods_on_node(ni) {
                let pod = &snap.pods()[p];
                prop_assert!(
                    pod.annotations
                        .get("cluster-autoscaler.kubernetes.io/safe-to-evict")
                        .map(String::as_str)
                        != Some("false"),
                    "{} removed with a safe-to-evict=false pod",
                    name
                );
                if pod.owner.is_none() {
                    prop_assert!(
                        pod.annotations
                            .get("cluster-autoscaler.kubernetes.io/safe-to-evict")
                            .map(String::as_str)
                            == Some("true")
                    );
                }
                if pod.labels.get("app").map(String::as_str) == Some("guarded") {
                    pdb_used += 1;
                }
                // Every moved pod fits somewhere that stays (first fit, consuming room).
                let cpu = pod.spec.requests.cpu_millis as i64;
                let mem = pod.spec.requests.memory_bytes as i64;
                let slot = free.iter_mut().find(|(c, m)| *c >= cpu && *m >= mem);
                prop_assert!(
                    slot.is_some(),
                    "pod {} of removed {} has nowhere to go: {:#?}",
                    pod.key(),
                    name,
                    d.actions
                );
                let slot = slot.unwrap();
                slot.0 -= cpu;
                slot.1 -= mem;
            }
        }
        prop_assert!(
            pdb_used <= pdb_allowed,
            "PDB allows {} but {} guarded pods evicted",
            pdb_allowed,
            pdb_used
        );
        for (g, n) in per_group {
            let group = snap.group(g).unwrap();
            prop_assert!(
                group.target_size.saturating_sub(n) >= group.min_size,
                "{} below min",
                g
            );
        }
    }
    Ok(())
}

/// A node spec with these pods `(cpu, mem MiB, flags)`, old or new, whatever its market.
fn node_with(pods: &[(u64, u64, u8)], old: bool) -> NodeSpec {
    NodeSpec {
        pods: pods.to_vec(),
        old,
    }
}

/// Found by `disruption_invariants`: two old on-demand nodes drained back onto spot nodes
/// with room for their pods only if the small pod does not take the big free slot.
#[test]
fn drained_pods_fit_where_they_go() {
    let groups = [
        GroupSpec {
            spot: true,
            zone: 0,
            min: 0,
            nodes: vec![
                node_with(&[], false),
                node_with(&[(762, 64, 0), (1462, 64, 0)], false),
                node_with(&[(728, 64, 0), (1496, 64, 0)], false),
                node_with(&[(225, 64, 0), (1999, 64, 0)], false),
            ],
        },
        GroupSpec {
            spot: false,
            zone: 0,
            min: 0,
            nodes: vec![
                node_with(&[(513, 64, 4)], true),
                node_with(&[(1711, 64, 4), (1697, 64, 4)], true),
            ],
        },
        GroupSpec {
            spot: true,
            zone: 1,
            min: 0,
            nodes: vec![],
        },
    ];
    check_disruption(&groups, 0, 0, 0).unwrap();
}
