//! Scale-down, drain-back, zone rebalancing, interruptions and overprovisioning,
//! black-box through `Autoscaler::decide`.

use autoscaler_core::fixtures::{group, node, pod};
use autoscaler_core::overprovisioning::Overprovisioning;
use autoscaler_core::*;

mod common;
use common::{removals, scale_ups, snapshot};
use std::collections::BTreeMap;
use std::time::Duration;

const A: &str = "us-east-1a";
const B: &str = "us-east-1b";
const C: &str = "us-east-1c";
const T0: Timestamp = Timestamp::from_secs(1_000_000);
const MIN: u64 = 60;

fn at(mins: u64) -> Timestamp {
    T0 + Duration::from_secs(mins * MIN)
}

/// The defaults without spare nodes: these clusters of two to five nodes have less free
/// room than the two spare nodes kept by default, so every drain would be held. The
/// spare-room rule has its own tests (`a_drain_that_would_leave_less_than_the_spare_nodes_waits`).
fn engine() -> Autoscaler {
    with_scale_down(ScaleDownConfig::default())
}

/// `scale_down` without spare nodes (see [`engine`]).
fn with_scale_down(scale_down: ScaleDownConfig) -> Autoscaler {
    Autoscaler::new(AutoscalerConfig {
        scale_down: ScaleDownConfig {
            spare_nodes: 0,
            ..scale_down
        },
        ..base_config()
    })
    .unwrap()
}

/// The default configuration without spare nodes (see [`engine`]).
fn base_config() -> AutoscalerConfig {
    let mut config = AutoscalerConfig::default();
    config.scale_down.spare_nodes = 0;
    config
}

fn with_target(mut g: NodeGroup, nodes: &[Node]) -> NodeGroup {
    g.target_size = nodes
        .iter()
        .filter(|n| n.group.as_deref() == Some(&g.name))
        .count() as u32;
    g
}

fn blocker(d: &Decisions, node: &str) -> ScaleDownBlocker {
    d.nodes
        .iter()
        .find_map(|o| match &o.verdict {
            NodeVerdict::ScaleDownBlocked { blocker } if o.node == node => Some(blocker.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{node} not blocked: {:?}", d.nodes))
}

/// Group `od` in zone a with a busy node `busy` (60% CPU) and a light node `light`
/// holding one small pod.
fn busy_and_light() -> (NodeGroup, Vec<Node>, Vec<Pod>) {
    let g = group("od", CapacityType::OnDemand, &[A], &["m5.xlarge"]);
    let nodes = vec![
        node("busy", &g, A, "m5.xlarge", Timestamp::ZERO),
        node("light", &g, A, "m5.xlarge", Timestamp::ZERO),
    ];
    let mut pods: Vec<Pod> = (0..3)
        .map(|i| pod(&format!("api-{i}"), "api", 800, 1024, Some("busy")))
        .collect();
    pods.push(pod("small-0", "small", 300, 512, Some("light")));
    (with_target(g, &nodes), nodes, pods)
}

// ---------------------------------------------------------------- scale-down rules

#[test]
fn an_underutilized_node_goes_after_the_unneeded_time() {
    let (g, nodes, pods) = busy_and_light();
    let s = snapshot(vec![g], nodes, pods, vec![]);
    let mut e = engine();
    let d = e.decide(&s, at(0));
    assert!(removals(&d).is_empty(), "not before 10 minutes");
    assert!(d
        .nodes
        .iter()
        .any(|o| o.node == "light" && o.verdict == NodeVerdict::Unneeded { since: at(0) }));
    assert!(removals(&e.decide(&s, at(9))).is_empty());
    let d = e.decide(&s, at(11));
    assert_eq!(removals(&d), vec![("light".into(), RemovalKind::ScaleDown)]);
    assert!(matches!(
        &d.actions[0],
        Decision::RemoveNode { drain: true, .. }
    ));
}

/// Nodes `half-1..3` of `g` just under half full (`api-N`, 1800m each) and `light`
/// with one 300m pod (`small-0`), all m5.xlarge in zone a.
fn half_full_and_light(g: &NodeGroup) -> (Vec<Node>, Vec<Pod>) {
    let nodes: Vec<Node> = ["half-1", "half-2", "half-3", "light"]
        .iter()
        .map(|n| node(n, g, A, "m5.xlarge", Timestamp::ZERO))
        .collect();
    let mut pods: Vec<Pod> = (1..=3)
        .map(|i| {
            pod(
                &format!("api-{i}"),
                "api",
                1800,
                256,
                Some(&format!("half-{i}")),
            )
        })
        .collect();
    pods.push(pod("small-0", "small", 300, 256, Some("light")));
    (nodes, pods)
}

/// Three nodes just under half full, one light node and one empty node, all m5.xlarge:
/// draining the light node leaves about 1.5 nodes of free CPU on the half-full ones.
fn half_full_light_and_idle(extra_nodes: &[(&str, Pod)]) -> ClusterSnapshot {
    let g = group("od", CapacityType::OnDemand, &[A], &["m5.xlarge"]);
    let (mut nodes, mut pods) = half_full_and_light(&g);
    nodes.push(node("idle", &g, A, "m5.xlarge", Timestamp::ZERO));
    for (name, p) in extra_nodes {
        nodes.push(node(name, &g, A, "m5.xlarge", Timestamp::ZERO));
        pods.push(p.clone());
    }
    snapshot(vec![with_target(g, &nodes)], nodes, pods, vec![])
}

#[test]
fn a_drain_that_would_leave_less_than_the_spare_nodes_waits() {
    let spare = |n: u32| {
        Autoscaler::new(AutoscalerConfig {
            scale_down: ScaleDownConfig {
                spare_nodes: n,
                ..ScaleDownConfig::default()
            },
            ..AutoscalerConfig::default()
        })
        .unwrap()
    };
    let decide = |mut e: Autoscaler, s: &ClusterSnapshot| {
        let _ = e.decide(s, at(0));
        e.decide(s, at(11))
    };
    let s = half_full_light_and_idle(&[]);
    // The default keeps two spare nodes: the empty node goes regardless, the light one
    // waits (its pod would leave ~1.5 nodes of room).
    assert_eq!(ScaleDownConfig::default().spare_nodes, 2);
    let d = decide(spare(2), &s);
    assert_eq!(removals(&d), vec![("idle".into(), RemovalKind::ScaleDown)]);
    match blocker(&d, "light") {
        ScaleDownBlocker::SpareRoom {
            spare_nodes,
            free,
            needed,
        } => {
            assert_eq!(spare_nodes, 2);
            assert!(
                free.cpu_millis < needed.cpu_millis,
                "{free:?} vs {needed:?}"
            );
            assert!(
                free.cpu_millis > needed.cpu_millis / 2,
                "{free:?} vs {needed:?}"
            );
            // The reason (an Event when it changes) does not move with the free room.
            let text = |free_cpu: u64| {
                ScaleDownBlocker::SpareRoom {
                    spare_nodes,
                    free: Resources {
                        cpu_millis: free_cpu,
                        ..free.clone()
                    },
                    needed: needed.clone(),
                }
                .to_string()
            };
            assert_eq!(text(1), text(2));
            assert!(text(1).contains("--scale-down-spare-nodes"), "{}", text(1));
        }
        other => panic!("light blocked by {other:?}"),
    }
    // One spare node fits in that room: a node with pods is drained (one at a time).
    let drained = |d: &Decisions| {
        removals(d)
            .into_iter()
            .filter(|(n, k)| n != "idle" && *k == RemovalKind::ScaleDown)
            .count()
    };
    assert_eq!(drained(&decide(spare(1), &s)), 1);
    // A placeholder's room is spare room: a node held by one placeholder pod (below
    // the demand floor) makes up the second spare node.
    let mut placeholder = pod("placeholder-0", "placeholder", 3600, 256, Some("reserve"));
    placeholder.spec.priority = -1;
    let s = half_full_light_and_idle(&[("reserve", placeholder.clone())]);
    assert_eq!(drained(&decide(spare(2), &s)), 1);
    // The same pod as real demand is not.
    placeholder.spec.priority = 0;
    let s = half_full_light_and_idle(&[("reserve", placeholder)]);
    let d = decide(spare(2), &s);
    assert_eq!(drained(&d), 0);
    assert!(matches!(
        blocker(&d, "light"),
        ScaleDownBlocker::SpareRoom { .. }
    ));
}

#[test]
fn room_on_a_dedicated_pool_is_no_spare_room_for_general_pods() {
    // The cluster of the test above, plus a dedicated batch node (its own group, a
    // `NoSchedule` taint) that is nearly idle: its room would make up the spare nodes
    // if counted, but the general pods cannot use it.
    let build = |taint: bool| {
        let g = group("od", CapacityType::OnDemand, &[A], &["m5.xlarge"]);
        let batch = group("batch", CapacityType::OnDemand, &[A], &["m5.xlarge"]);
        let (mut nodes, mut pods) = half_full_and_light(&g);
        let mut dedicated = node("batch-0", &batch, A, "m5.xlarge", Timestamp::ZERO);
        let mut job = pod("job-0", "job", 100, 128, Some("batch-0"));
        if taint {
            dedicated.taints.push(Taint {
                key: "dedicated".into(),
                value: "batch".into(),
                effect: TaintEffect::NoSchedule,
            });
            // A soft taint does not split the room.
            dedicated.taints.push(Taint {
                key: "prefer-not".into(),
                value: String::new(),
                effect: TaintEffect::PreferNoSchedule,
            });
            job.spec.tolerations.push(Toleration {
                key: "dedicated".into(),
                operator: TolerationOperator::Exists,
                ..Toleration::default()
            });
        }
        pods.push(job);
        let groups = vec![
            with_target(g, &nodes[..4]),
            with_target(batch, std::slice::from_ref(&dedicated)),
        ];
        nodes.push(dedicated);
        snapshot(groups, nodes, pods, vec![])
    };
    let decide = |s: &ClusterSnapshot| {
        let mut e = Autoscaler::new(AutoscalerConfig::default()).unwrap();
        let _ = e.decide(s, at(0));
        e.decide(s, at(11))
    };
    // Untainted, the batch node's room counts: a node with pods is drained.
    let d = decide(&build(false));
    assert_eq!(removals(&d).len(), 1, "{:?}", d.actions);
    assert_eq!(removals(&d)[0].1, RemovalKind::ScaleDown);
    // Tainted, it does not: the light node waits for its spare room, and the batch
    // node's job has nowhere else to go.
    let d = decide(&build(true));
    assert!(removals(&d).is_empty(), "{:?}", d.actions);
    assert!(matches!(
        blocker(&d, "light"),
        ScaleDownBlocker::SpareRoom { .. }
    ));
}

/// One on-demand group in zone a: `empty` empty nodes, `light` nodes with one small pod
/// each (`light-N`, pod `p-N`), and a big `anchor` node whose room takes those pods.
fn empties_lights_and_anchor(empty: usize, light: usize) -> (NodeGroup, Vec<Node>, Vec<Pod>) {
    let g = group("od", CapacityType::OnDemand, &[A], &["m5.xlarge"]);
    let mut nodes: Vec<Node> = (0..empty)
        .map(|i| {
            node(
                &format!("empty-{i:02}"),
                &g,
                A,
                "m5.xlarge",
                Timestamp::ZERO,
            )
        })
        .collect();
    let mut pods = Vec::new();
    for i in 0..light {
        let name = format!("light-{i}");
        nodes.push(node(&name, &g, A, "m5.xlarge", Timestamp::ZERO));
        pods.push(pod(&format!("p-{i}"), "web", 200, 256, Some(&name)));
    }
    nodes.push(node("anchor", &g, A, "m5.4xlarge", Timestamp::ZERO));
    pods.push(pod("anchor-pod", "db", 10_000, 40_000, Some("anchor")));
    (with_target(g, &nodes), nodes, pods)
}

#[test]
fn empty_nodes_go_in_bounded_bulk_and_drains_one_at_a_time() {
    let (g, nodes, pods) = empties_lights_and_anchor(15, 3);
    let s = snapshot(vec![g], nodes, pods, vec![]);
    let mut e = engine();
    let _ = e.decide(&s, at(0));
    let d = e.decide(&s, at(11));
    let r = removals(&d);
    let empty = r.iter().filter(|(n, _)| n.starts_with("empty")).count();
    let drained = r.iter().filter(|(n, _)| n.starts_with("light")).count();
    assert_eq!(empty, 10, "max-empty-bulk-delete: {r:?}");
    assert_eq!(drained, 1, "max-drain-parallelism: {r:?}");
}

#[test]
fn empty_nodes_still_terminating_do_not_hold_back_the_next_drain() {
    // CA's max-drain-parallelism counts nodes being drained; an empty node has nothing
    // to drain. Counting the empties of a bulk removal kept the one drain waiting until
    // every one of them had left the cluster.
    let (mut g, mut nodes, mut pods) = empties_lights_and_anchor(10, 2);
    let s = snapshot(vec![g.clone()], nodes.clone(), pods.clone(), vec![]);
    let mut e = engine();
    let _ = e.decide(&s, at(0));
    let r = removals(&e.decide(&s, at(11)));
    assert_eq!(r.len(), 11, "ten empty nodes and one drain: {r:?}");
    let first = r
        .iter()
        .find(|(n, _)| n.starts_with("light"))
        .unwrap()
        .0
        .clone();
    let other = if first == "light-0" {
        "light-1"
    } else {
        "light-0"
    };
    // The drained node is gone, its pod now on the anchor; the empty ones are still
    // terminating.
    nodes.retain(|n| n.name != first);
    for p in &mut pods {
        if p.node_name.as_deref() == Some(first.as_str()) {
            p.node_name = Some("anchor".into());
        }
    }
    g.target_size -= 11;
    let s = snapshot(vec![g], nodes, pods, vec![]);
    let r = removals(&e.decide(&s, at(12)));
    assert_eq!(r, vec![(other.to_string(), RemovalKind::ScaleDown)]);
}

fn single_light_node_with(p: Pod) -> (Decisions, String) {
    let (g, nodes, mut pods) = busy_and_light();
    pods.retain(|p| p.name != "small-0");
    pods.push(p);
    let s = snapshot(vec![g], nodes, pods, vec![]);
    let mut e = engine();
    let _ = e.decide(&s, at(0));
    (e.decide(&s, at(11)), "light".into())
}

#[test]
fn each_blocker_keeps_the_node_and_says_why() {
    let base = || pod("victim", "victim", 300, 512, Some("light"));
    let mut no_evict = base();
    no_evict.annotations.insert(
        "cluster-autoscaler.kubernetes.io/safe-to-evict".into(),
        "false".into(),
    );
    let mut bare = base();
    bare.owner = None;
    let mut local = base();
    local.has_local_storage = true;
    let mut system = base();
    system.namespace = "kube-system".into();
    let victim = |ns: &str| format!("{ns}/victim");
    let cases = [
        (
            no_evict,
            ScaleDownBlocker::NotSafeToEvict {
                pod: victim("default"),
            },
        ),
        (
            bare,
            ScaleDownBlocker::NoController {
                pod: victim("default"),
            },
        ),
        (
            local,
            ScaleDownBlocker::LocalStorage {
                pod: victim("default"),
            },
        ),
        (
            system,
            ScaleDownBlocker::SystemPodWithoutPdb {
                pod: victim("kube-system"),
            },
        ),
    ];
    for (p, expected) in cases {
        let (d, n) = single_light_node_with(p);
        assert!(removals(&d).is_empty(), "{expected}: {:?}", d.actions);
        assert_eq!(blocker(&d, &n), expected);
    }
    // The Event text names the annotation to change.
    assert!(ScaleDownBlocker::NotSafeToEvict { pod: "a/b".into() }
        .to_string()
        .contains("safe-to-evict=false"));
}

#[test]
fn safe_to_evict_true_overrides_the_soft_blockers() {
    let mut p = pod("victim", "victim", 300, 512, Some("light"));
    p.owner = None;
    p.has_local_storage = true;
    p.annotations.insert(
        "cluster-autoscaler.kubernetes.io/safe-to-evict".into(),
        "true".into(),
    );
    let (d, _) = single_light_node_with(p);
    assert_eq!(removals(&d), vec![("light".into(), RemovalKind::ScaleDown)]);
}

#[test]
fn the_scale_down_disabled_annotation_and_an_exhausted_pdb_block() {
    let (g, mut nodes, pods) = busy_and_light();
    nodes[1].annotations.insert(
        "cluster-autoscaler.kubernetes.io/scale-down-disabled".into(),
        "true".into(),
    );
    let s = snapshot(vec![g.clone()], nodes, pods.clone(), vec![]);
    let mut e = engine();
    let _ = e.decide(&s, at(0));
    let d = e.decide(&s, at(11));
    assert!(removals(&d).is_empty());
    assert_eq!(blocker(&d, "light"), ScaleDownBlocker::ScaleDownDisabled);

    let (g, nodes, pods) = busy_and_light();
    let pdb = PodDisruptionBudget {
        namespace: "default".into(),
        name: "small".into(),
        selector: LabelSelector::labels([("app", "small")]),
        disruptions_allowed: 0,
    };
    let s = snapshot(vec![g], nodes, pods, vec![pdb]);
    let mut e = engine();
    let _ = e.decide(&s, at(0));
    let d = e.decide(&s, at(11));
    assert!(removals(&d).is_empty());
    assert!(matches!(
        blocker(&d, "light"),
        ScaleDownBlocker::PdbExhausted { pdb, .. } if pdb == "default/small"
    ));
}

#[test]
fn a_drain_waits_while_a_sibling_of_its_pods_has_just_started() {
    // `small` got a new replica 30 s before the light node's ten minutes are up (the
    // replacement of an eviction elsewhere, or a scale-up): evicting the other one now
    // would leave the new one carrying both while it warms up.
    let (g, nodes, pods) = busy_and_light();
    let before = snapshot(vec![g.clone()], nodes.clone(), pods.clone(), vec![]);
    let mut fresh = pod("small-1", "small", 300, 512, Some("busy"));
    fresh.created_at = at(11) - Duration::from_secs(30);
    let s = snapshot(vec![g], nodes, [pods, vec![fresh]].concat(), vec![]);
    let run = |settle: Duration| {
        let mut e = Autoscaler::new(AutoscalerConfig {
            scale_down: ScaleDownConfig {
                workload_settle: settle,
                ..base_config().scale_down
            },
            ..base_config()
        })
        .unwrap();
        let _ = e.decide(&before, at(0));
        let waited = e.decide(&s, at(11));
        let later = e.decide(&s, at(11) + Duration::from_secs(40));
        (waited, later)
    };
    let (waited, later) = run(Duration::from_secs(60));
    assert!(removals(&waited).is_empty(), "{:?}", waited.actions);
    assert!(matches!(
        blocker(&waited, "light"),
        ScaleDownBlocker::WorkloadSettling { pod, workload }
            if pod == "default/small-0" && workload == "ReplicaSet/small"
    ));
    // Settled 60 s after the sibling started; the unneeded time kept running, so the
    // node goes at once.
    assert_eq!(
        removals(&later),
        vec![("light".into(), RemovalKind::ScaleDown)],
        "{:?}",
        later.nodes
    );
    // Off: drained as soon as its ten minutes are up.
    let (waited, _) = run(Duration::ZERO);
    assert_eq!(
        removals(&waited),
        vec![("light".into(), RemovalKind::ScaleDown)]
    );
}

#[test]
fn of_two_equal_drains_the_one_whose_pod_has_more_siblings_goes_first() {
    // Evicting one of two replicas doubles the load on the other while it restarts;
    // one of ten barely shows. Same group, price and pod count: only that differs, and
    // the pair's node comes first in every other order (index, name).
    let g = group("spot", CapacityType::Spot, &[A], &["m5.xlarge"]);
    let nodes = vec![
        node("anchor", &g, A, "m5.4xlarge", Timestamp::ZERO),
        node("a-pair-light", &g, A, "m5.xlarge", Timestamp::ZERO),
        node("b-crowd-light", &g, A, "m5.xlarge", Timestamp::ZERO),
    ];
    let mut pods = vec![
        pod("db-0", "db", 10_000, 20_000, Some("anchor")),
        pod("pair-0", "pair", 300, 256, Some("anchor")),
        pod("pair-1", "pair", 300, 256, Some("a-pair-light")),
        pod("crowd-9", "crowd", 300, 256, Some("b-crowd-light")),
    ];
    for i in 0..9 {
        pods.push(pod(
            &format!("crowd-{i}"),
            "crowd",
            100,
            128,
            Some("anchor"),
        ));
    }
    let s = snapshot(vec![with_target(g, &nodes)], nodes, pods, vec![]);
    let mut e = engine();
    let _ = e.decide(&s, at(0));
    let d = e.decide(&s, at(11));
    assert_eq!(
        removals(&d),
        vec![("b-crowd-light".into(), RemovalKind::ScaleDown)],
        "one drain at a time, the crowd's first"
    );
}

/// The HPA reading of ReplicaSet `name` in `default`.
fn replica_set_load(name: &str, percent: u32) -> WorkloadLoad {
    WorkloadLoad {
        namespace: "default".into(),
        target_kind: "ReplicaSet".into(),
        target_name: name.into(),
        cpu_utilization_percent: percent,
    }
}

/// A one-group snapshot with these HPA readings.
fn snapshot_with_loads(
    g: &NodeGroup,
    nodes: &[Node],
    pods: &[Pod],
    loads: Vec<WorkloadLoad>,
) -> ClusterSnapshot {
    let parts = SnapshotParts {
        groups: vec![with_target(g.clone(), nodes)],
        nodes: nodes.to_vec(),
        pods: pods.iter().cloned().map(std::sync::Arc::new).collect(),
        workload_loads: loads,
        ..SnapshotParts::default()
    };
    ClusterSnapshot::new(parts).unwrap()
}

#[test]
fn of_two_equal_drains_the_one_whose_workload_has_slack_goes_first() {
    // Both light nodes hold one of two replicas. Without load figures they tie and the
    // first by name goes; with the HPAs' utilization, the pod whose sibling would run at
    // 50 % goes before the one whose sibling would run at 120 %.
    let g = group("spot", CapacityType::Spot, &[A], &["m5.xlarge"]);
    let nodes = vec![
        node("anchor", &g, A, "m5.4xlarge", Timestamp::ZERO),
        node("a-hot-light", &g, A, "m5.xlarge", Timestamp::ZERO),
        node("b-cool-light", &g, A, "m5.xlarge", Timestamp::ZERO),
    ];
    let pods = [
        pod("db-0", "db", 10_000, 20_000, Some("anchor")),
        pod("hot-0", "hot", 300, 256, Some("anchor")),
        pod("hot-1", "hot", 300, 256, Some("a-hot-light")),
        // A Deployment's pods: their ReplicaSet is `<deployment>-<pod-template-hash>`.
        pod("cool-0", "cool-5d8f9", 300, 256, Some("anchor")),
        pod("cool-1", "cool-5d8f9", 300, 256, Some("b-cool-light")),
    ];
    let load = replica_set_load;
    let first_removal = |loads: Vec<WorkloadLoad>| {
        let s = snapshot_with_loads(&g, &nodes, &pods, loads);
        let mut e = engine();
        let _ = e.decide(&s, at(0));
        removals(&e.decide(&s, at(11)))
    };
    assert_eq!(
        first_removal(vec![]),
        vec![("a-hot-light".into(), RemovalKind::ScaleDown)],
        "unmeasured: a tie, broken by name"
    );
    assert_eq!(
        first_removal(vec![
            load("hot", 60),
            WorkloadLoad {
                target_kind: "Deployment".into(),
                ..load("cool", 25)
            }
        ]),
        vec![("b-cool-light".into(), RemovalKind::ScaleDown)],
        "measured: the replica whose sibling has room goes first"
    );
    // A Deployment's HPA covers the pods of its ReplicaSets (`<name>-<hash>`).
    let mut p = pod("web-1", "web-7d9f8c", 100, 128, None);
    let deployment = WorkloadLoad {
        target_kind: "Deployment".into(),
        target_name: "web".into(),
        ..load("web", 50)
    };
    assert!(deployment.covers(&p));
    p.namespace = "other".into();
    assert!(!deployment.covers(&p));
}

#[test]
fn a_drain_waits_while_the_workloads_other_replicas_would_run_too_hot() {
    // `light` holds one of `hot`'s two replicas. At 60 % CPU by its HPA, evicting it
    // leaves the other at 120 % until the evicted one restarts: the node waits (its
    // unneeded time running) for the load to fall or the HPA to add a replica, at most
    // `busy_workload_hold` past its unneeded time.
    let g = group("spot", CapacityType::Spot, &[A], &["m5.xlarge"]);
    let nodes = vec![
        node("anchor", &g, A, "m5.4xlarge", Timestamp::ZERO),
        node("light", &g, A, "m5.xlarge", Timestamp::ZERO),
    ];
    let pods = [
        pod("db-0", "db", 10_000, 20_000, Some("anchor")),
        pod("hot-0", "hot", 300, 256, Some("anchor")),
        pod("hot-1", "hot", 300, 256, Some("light")),
    ];
    let snap = |percent: Option<u32>| {
        let loads = percent.map(|p| replica_set_load("hot", p));
        snapshot_with_loads(&g, &nodes, &pods, loads.into_iter().collect())
    };
    let with_limit = |limit: f64| {
        with_scale_down(ScaleDownConfig {
            busy_workload_utilization: limit,
            ..ScaleDownConfig::default()
        })
    };
    let light = || vec![("light".to_string(), RemovalKind::ScaleDown)];
    let (hot, cooler) = (snap(Some(60)), snap(Some(40)));

    let mut e = engine();
    let _ = e.decide(&hot, at(0));
    let d = e.decide(&hot, at(11));
    assert!(removals(&d).is_empty(), "{:?}", d.actions);
    let busy = blocker(&d, "light");
    assert!(matches!(
        &busy,
        ScaleDownBlocker::WorkloadBusy { workload, utilization_percent: 120, limit_percent: 85 }
            if workload == "ReplicaSet/hot"
    ));
    // The reason (an Event when it changes) names the limit, not the moving load.
    let hotter = e.decide(&snap(Some(70)), at(11));
    assert!(matches!(
        blocker(&hotter, "light"),
        ScaleDownBlocker::WorkloadBusy {
            utilization_percent: 140,
            ..
        }
    ));
    assert_eq!(blocker(&hotter, "light").to_string(), busy.to_string());
    assert!(busy.to_string().contains("85%"), "{busy}");
    // The load falls (the survivor would run at 80 %): it goes at once, its ten
    // minutes long since up.
    assert_eq!(removals(&e.decide(&cooler, at(12))), light());

    // The load stays: it waits the 30 minute hold past its unneeded time, not longer.
    let mut e = engine();
    let _ = e.decide(&hot, at(0));
    assert!(removals(&e.decide(&hot, at(39))).is_empty());
    assert_eq!(removals(&e.decide(&hot, at(40))), light());

    // Without a measurement the workload is not judged; with the rule off, the busy
    // one goes after its unneeded time as in cluster-autoscaler.
    for (mut e, s) in [(engine(), snap(None)), (with_limit(0.0), hot.clone())] {
        let _ = e.decide(&s, at(0));
        assert_eq!(removals(&e.decide(&s, at(11))), light());
    }
    // A higher limit lets a 120 % survivor pass.
    let mut e = with_limit(1.25);
    let _ = e.decide(&hot, at(0));
    assert_eq!(removals(&e.decide(&hot, at(11))), light());
}

#[test]
fn evicting_a_placeholder_counts_as_no_pressure() {
    // Placeholders (priority under the demand floor) exist to be evicted: the node that
    // holds one of two goes before the one holding one of ten real replicas.
    let g = group("spot", CapacityType::Spot, &[A], &["m5.xlarge"]);
    let nodes = vec![
        node("anchor", &g, A, "m5.4xlarge", Timestamp::ZERO),
        node("a-crowd-light", &g, A, "m5.xlarge", Timestamp::ZERO),
        node("b-filler-light", &g, A, "m5.xlarge", Timestamp::ZERO),
    ];
    let mut pods = vec![
        pod("db-0", "db", 10_000, 20_000, Some("anchor")),
        pod("crowd-9", "crowd", 300, 256, Some("a-crowd-light")),
        pod("ph-0", "overprovisioning", 300, 256, Some("anchor")),
        pod("ph-1", "overprovisioning", 300, 256, Some("b-filler-light")),
    ];
    for i in 0..9 {
        pods.push(pod(
            &format!("crowd-{i}"),
            "crowd",
            100,
            128,
            Some("anchor"),
        ));
    }
    for p in pods.iter_mut().filter(|p| p.name.starts_with("ph-")) {
        p.spec.priority = -1;
    }
    let s = snapshot(vec![with_target(g, &nodes)], nodes, pods, vec![]);
    let mut e = engine();
    let _ = e.decide(&s, at(0));
    let d = e.decide(&s, at(11));
    assert_eq!(
        removals(&d),
        vec![("b-filler-light".into(), RemovalKind::ScaleDown)]
    );
}

#[test]
fn a_node_whose_pods_fit_nowhere_else_stays() {
    let g = group("od", CapacityType::OnDemand, &[A], &["m5.xlarge"]);
    let nodes = vec![
        node("full", &g, A, "m5.xlarge", Timestamp::ZERO),
        node("light", &g, A, "m5.xlarge", Timestamp::ZERO),
    ];
    let pods = vec![
        pod("big", "big", 3500, 2048, Some("full")),
        pod("mid", "mid", 1900, 1024, Some("light")),
    ];
    let s = snapshot(vec![with_target(g, &nodes)], nodes, pods, vec![]);
    let mut e = engine();
    let _ = e.decide(&s, at(0));
    let d = e.decide(&s, at(11));
    assert!(removals(&d).is_empty());
    assert!(matches!(
        blocker(&d, "light"),
        ScaleDownBlocker::NoRoom { pod, .. } if pod == "default/mid"
    ));
}

#[test]
fn never_below_min_size() {
    let (mut g, nodes, pods) = busy_and_light();
    g.min_size = 2;
    let s = snapshot(vec![g], nodes, pods, vec![]);
    let mut e = engine();
    let _ = e.decide(&s, at(0));
    assert!(removals(&e.decide(&s, at(30))).is_empty());
}

#[test]
fn no_scale_down_within_the_delay_after_a_scale_up_of_the_family() {
    let (g, nodes, mut pods) = busy_and_light();
    let mut e = engine();
    // A scale-up of the group at t0 (a pending pod too big for the free room).
    pods.push(pod("burst", "burst", 3700, 1024, None));
    let s = snapshot(vec![g.clone()], nodes.clone(), pods.clone(), vec![]);
    let d = e.decide(&s, at(0));
    assert_eq!(scale_ups(&d), vec![("od".to_string(), 1)]);
    // The new node arrived and took the pod; the light node is unneeded again.
    let mut nodes2 = nodes.clone();
    nodes2.push(node("new", &g, A, "m5.xlarge", at(2)));
    let mut pods2 = pods.clone();
    pods2.last_mut().unwrap().node_name = Some("new".into());
    let s2 = snapshot(vec![with_target(g, &nodes2)], nodes2, pods2, vec![]);
    let _ = e.decide(&s2, at(1));
    // Unneeded for 10 minutes at t=11, but the scale-up was 11 minutes ago... and at t=9 too early.
    assert!(
        removals(&e.decide(&s2, at(9))).is_empty(),
        "delay after add"
    );
    let d = e.decide(&s2, at(12));
    assert_eq!(removals(&d).len(), 1, "{:?}", d.actions);
}

#[test]
fn a_failed_removal_pauses_the_group() {
    let (g, nodes, pods) = busy_and_light();
    let s = snapshot(vec![g], nodes, pods, vec![]);
    let mut e = engine();
    let _ = e.decide(&s, at(0));
    assert_eq!(removals(&e.decide(&s, at(11))).len(), 1);
    e.handle_event(
        Event::NodeRemovalFailed {
            node: "light".into(),
            reason: "eviction blocked".into(),
        },
        at(12),
    );
    assert!(
        removals(&e.decide(&s, at(13))).is_empty(),
        "delay after failure"
    );
    let d = e.decide(&s, at(26));
    assert_eq!(removals(&d).len(), 1, "{:?}", d.actions);
}

#[test]
fn on_demand_goes_before_spot_and_the_heaviest_zone_first() {
    let od = group("od", CapacityType::OnDemand, &[A], &["m5.xlarge"]);
    let spot = group("spot", CapacityType::Spot, &[A], &["m5.xlarge"]);
    // Young nodes: on-demand drain-back (2 h) does not apply yet.
    let nodes = vec![
        node("anchor", &spot, A, "m5.4xlarge", at(0)),
        node("spot-light", &spot, A, "m5.xlarge", at(0)),
        node("od-light", &od, A, "m5.xlarge", at(0)),
    ];
    let pods = vec![
        pod("anchor-pod", "db", 12_000, 40_000, Some("anchor")),
        pod("s", "s", 300, 300, Some("spot-light")),
        pod("o", "o", 300, 300, Some("od-light")),
    ];
    let s = snapshot(
        vec![with_target(od, &nodes), with_target(spot, &nodes)],
        nodes,
        pods,
        vec![],
    );
    let mut e = engine();
    let _ = e.decide(&s, at(0));
    let d = e.decide(&s, at(11));
    // Its pod moves to the spot anchor: the end of an on-demand stay is drain-back's.
    assert_eq!(
        removals(&d),
        vec![("od-light".into(), RemovalKind::DrainBack)]
    );

    // Same market, zones a (3 nodes) and b (1 node) of one balance set: a goes first.
    let ga = group("spot-a", CapacityType::Spot, &[A], &["m5.xlarge"]);
    let gb = group("spot-b", CapacityType::Spot, &[B], &["m5.xlarge"]);
    let nodes = vec![
        node("a1", &ga, A, "m5.xlarge", Timestamp::ZERO),
        node("a2", &ga, A, "m5.xlarge", Timestamp::ZERO),
        node("a3", &ga, A, "m5.xlarge", Timestamp::ZERO),
        node("b1", &gb, B, "m5.xlarge", Timestamp::ZERO),
    ];
    let pods = vec![
        pod("pa1", "w", 1500, 512, Some("a1")),
        pod("pa2", "w", 2500, 512, Some("a2")),
        pod("pa3", "w", 1000, 512, Some("a3")),
        pod("pb1", "w", 1000, 512, Some("b1")),
    ];
    let s = snapshot(
        vec![with_target(ga, &nodes), with_target(gb, &nodes)],
        nodes,
        pods,
        vec![],
    );
    let mut e = engine();
    let _ = e.decide(&s, at(0));
    let d = e.decide(&s, at(11));
    assert_eq!(
        removals(&d),
        vec![("a3".into(), RemovalKind::ScaleDown)],
        "b1 is as light but alone in its zone"
    );
}

/// A light on-demand node `od-light` of group `od` (young: drain-back's 2 h do not
/// apply) beside a big node `anchor` with room to spare, in zone a: `anchor` is in group
/// `spot` (spot) or, with `anchor_market` on-demand, in `od` too.
fn light_on_demand_beside_room(anchor_market: CapacityType) -> ClusterSnapshot {
    let od = group(
        "od",
        CapacityType::OnDemand,
        &[A],
        &["m5.xlarge", "m5.4xlarge"],
    );
    let spot = group("spot", CapacityType::Spot, &[A], &["m5.4xlarge"]);
    let anchor_group = if anchor_market == CapacityType::Spot {
        &spot
    } else {
        &od
    };
    let nodes = vec![
        node("anchor", anchor_group, A, "m5.4xlarge", at(0)),
        node("od-light", &od, A, "m5.xlarge", at(0)),
    ];
    let pods = vec![
        pod("anchor-pod", "db", 8_000, 20_000, Some("anchor")),
        pod("o", "o", 300, 300, Some("od-light")),
    ];
    let mut groups = vec![with_target(od, &nodes)];
    if anchor_market == CapacityType::Spot {
        groups.push(with_target(spot, &nodes));
    }
    snapshot(groups, nodes, pods, vec![])
}

#[test]
fn an_unneeded_on_demand_node_whose_pods_fit_on_spot_is_drain_back_within_its_budget() {
    let s = light_on_demand_beside_room(CapacityType::Spot);
    let mut e = engine();
    let _ = e.decide(&s, at(0));
    let d = e.decide(&s, at(11));
    assert_eq!(
        removals(&d),
        vec![("od-light".into(), RemovalKind::DrainBack)]
    );
    assert!(scale_ups(&d).is_empty(), "no replacement: {:?}", d.actions);
    assert!(
        d.actions[0].reason().contains("fit on running spot nodes"),
        "{}",
        d.actions[0].reason()
    );

    // No budget left: an ordinary scale-down, as before (and as cluster-autoscaler).
    let mut config = base_config();
    config.balance.evictions_per_hour = 0;
    let mut e = Autoscaler::new(config).unwrap();
    let _ = e.decide(&s, at(0));
    assert_eq!(
        removals(&e.decide(&s, at(11))),
        vec![("od-light".into(), RemovalKind::ScaleDown)]
    );

    // Drain-back off: scale-down.
    let mut config = base_config();
    config.drain_back.after = Duration::ZERO;
    let mut e = Autoscaler::new(config).unwrap();
    let _ = e.decide(&s, at(0));
    assert_eq!(
        removals(&e.decide(&s, at(11))),
        vec![("od-light".into(), RemovalKind::ScaleDown)]
    );
}

#[test]
fn an_unneeded_on_demand_node_whose_pods_only_fit_on_demand_is_a_scale_down() {
    // The anchor is on-demand too: the pod stays on on-demand, so it is no drain-back.
    let s = light_on_demand_beside_room(CapacityType::OnDemand);
    let mut e = engine();
    let _ = e.decide(&s, at(0));
    assert_eq!(
        removals(&e.decide(&s, at(11))),
        vec![("od-light".into(), RemovalKind::ScaleDown)]
    );
}

// ---------------------------------------------------------------- drain-back

/// A cluster after an ICE fallback: one on-demand node (3 h old) running web pods, a
/// spot group preferred by priority, currently empty.
fn after_fallback() -> (Vec<NodeGroup>, Vec<Node>, Vec<Pod>) {
    let od = group(
        "web-on-demand",
        CapacityType::OnDemand,
        &[A],
        &["m5.xlarge"],
    );
    let spot = group(
        "web-spot",
        CapacityType::Spot,
        &[A],
        &["m5.xlarge", "m5a.xlarge"],
    );
    let nodes = vec![node("od-1", &od, A, "m5.xlarge", at(0))];
    let pods = (0..3)
        .map(|i| pod(&format!("web-{i}"), "web", 1000, 2048, Some("od-1")))
        .collect();
    (vec![with_target(od, &nodes), spot], nodes, pods)
}

fn drain_back_engine() -> Autoscaler {
    let mut e = engine();
    e.set_priorities("50: ['spot']\n10: ['on-demand']\n")
        .unwrap();
    e
}

#[test]
fn drain_back_launches_spot_first_then_drains_the_on_demand_node() {
    let (groups, nodes, pods) = after_fallback();
    let mut e = drain_back_engine();
    let s = snapshot(groups.clone(), nodes.clone(), pods.clone(), vec![]);
    assert!(
        scale_ups(&e.decide(&s, at(60))).is_empty(),
        "younger than 2 h: kept"
    );
    let d = e.decide(&s, at(181));
    assert_eq!(scale_ups(&d), vec![("web-spot".to_string(), 1)]);
    assert!(
        removals(&d).is_empty(),
        "never drain before the replacement is ready"
    );
    assert!(matches!(
        &d.actions[0],
        Decision::ScaleUp {
            cause: ScaleUpCause::Replacement(RemovalKind::DrainBack),
            ..
        }
    ));
    assert_eq!(
        d.status.replacements,
        vec![("od-1".to_string(), "web-spot".to_string())]
    );

    // The spot node registered but is not ready yet: still waiting.
    let mut groups2 = groups.clone();
    groups2[1].target_size = 1;
    let mut nodes2 = nodes.clone();
    let mut spot_node = node("spot-1", &groups2[1], A, "m5a.xlarge", at(183));
    spot_node.ready = false;
    nodes2.push(spot_node);
    let s2 = snapshot(groups2.clone(), nodes2.clone(), pods.clone(), vec![]);
    assert!(removals(&e.decide(&s2, at(183))).is_empty());

    nodes2[1].ready = true;
    let s3 = snapshot(groups2, nodes2, pods, vec![]);
    let d = e.decide(&s3, at(184));
    assert_eq!(removals(&d), vec![("od-1".into(), RemovalKind::DrainBack)]);
}

#[test]
fn a_replacement_registering_within_the_decision_second_counts() {
    // Kubernetes stamps creation in whole seconds: a node that registers 300 ms after
    // the decision can carry a creation time before it. Regression: the drain used to
    // wait for a node "created after the decision" forever.
    let (groups, nodes, pods) = after_fallback();
    let mut e = drain_back_engine();
    let decided = Timestamp::from_millis(at(181).as_millis() + 700);
    let d = e.decide(
        &snapshot(groups.clone(), nodes.clone(), pods.clone(), vec![]),
        decided,
    );
    assert_eq!(scale_ups(&d), vec![("web-spot".to_string(), 1)]);
    let mut groups2 = groups;
    groups2[1].target_size = 1;
    let mut nodes2 = nodes;
    nodes2.push(node("spot-1", &groups2[1], A, "m5a.xlarge", at(181)));
    let s = snapshot(groups2, nodes2, pods, vec![]);
    let d = e.decide(&s, Timestamp::from_millis(decided.as_millis() + 1_000));
    assert_eq!(removals(&d), vec![("od-1".into(), RemovalKind::DrainBack)]);
}

#[test]
fn drain_back_is_cancelled_by_ice_and_retried_after_the_cool_off() {
    let (groups, nodes, pods) = after_fallback();
    let mut e = drain_back_engine();
    let s = snapshot(groups.clone(), nodes.clone(), pods.clone(), vec![]);
    assert_eq!(
        scale_ups(&e.decide(&s, at(181))),
        vec![("web-spot".to_string(), 1)]
    );
    e.handle_event(
        Event::LaunchFailed {
            group: "web-spot".into(),
            zone: Some(A.into()),
            instance_type: None,
            reason: LaunchFailureReason::InsufficientInstanceCapacity,
        },
        at(182),
    );
    let mut groups2 = groups.clone();
    groups2[1].target_size = 1;
    let s2 = snapshot(groups2, nodes.clone(), pods.clone(), vec![]);
    let d = e.decide(&s2, at(182));
    assert!(d
        .actions
        .iter()
        .any(|a| matches!(a, Decision::RevertScaleUp { group, .. } if group == "web-spot")));
    assert!(removals(&d).is_empty(), "the on-demand node stays");
    assert!(d.status.replacements.is_empty());
    // Inside the cool-off: no retry.
    assert!(scale_ups(&e.decide(&s, at(184))).is_empty());
    // After it: drain-back starts again.
    assert_eq!(
        scale_ups(&e.decide(&s, at(186))),
        vec![("web-spot".to_string(), 1)]
    );
}

#[test]
fn drain_back_respects_its_budget() {
    let od = group(
        "web-on-demand",
        CapacityType::OnDemand,
        &[A],
        &["m5.xlarge"],
    );
    let spot = group("web-spot", CapacityType::Spot, &[A], &["m5.xlarge"]);
    let nodes: Vec<Node> = (0..4)
        .map(|i| node(&format!("od-{i}"), &od, A, "m5.xlarge", at(0)))
        .collect();
    let pods: Vec<Pod> = (0..4)
        .map(|i| {
            pod(
                &format!("web-{i}"),
                "web",
                3000,
                2048,
                Some(&format!("od-{i}")),
            )
        })
        .collect();
    let s = snapshot(vec![with_target(od, &nodes), spot], nodes, pods, vec![]);
    let mut e = drain_back_engine();
    let d = e.decide(&s, at(181));
    assert_eq!(scale_ups(&d).len(), 1, "budget 1: {:?}", d.actions);
    let mut config = base_config();
    config.drain_back.budget = "50%".parse().unwrap();
    let mut e = Autoscaler::new(config).unwrap();
    e.set_priorities("50: ['spot']\n10: ['on-demand']\n")
        .unwrap();
    assert_eq!(scale_ups(&e.decide(&s, at(181))).len(), 2, "50% of 4");
}

#[test]
fn drain_back_consolidates_onto_running_spot_nodes_before_launching() {
    // The fallback node's 3 CPU fit on a spot node already running: it is drained in
    // this round, without a replacement launch.
    let (mut groups, mut nodes, pods) = after_fallback();
    groups[1].target_size = 1;
    nodes.push(node("spot-1", &groups[1], A, "m5.xlarge", at(170)));
    let s = snapshot(groups, nodes, pods, vec![]);
    let mut e = drain_back_engine();
    let d = e.decide(&s, at(181));
    assert!(scale_ups(&d).is_empty(), "{:?}", d.actions);
    assert_eq!(removals(&d), vec![("od-1".into(), RemovalKind::DrainBack)]);
    assert!(d.actions[0]
        .reason()
        .contains("drained without a replacement"));
}

// ---------------------------------------------------------------- interruptions

#[test]
fn a_spot_interruption_drains_now_and_replaces_in_the_same_round_outside_the_pool() {
    let spot = group("spot", CapacityType::Spot, &[A], &["m5.xlarge"]);
    let od = group("od", CapacityType::OnDemand, &[A], &["m5.xlarge"]);
    let nodes = vec![node("spot-1", &spot, A, "m5.xlarge", at(0))];
    let instance = nodes[0].provider_id.clone().unwrap();
    let instance_id = instance.rsplit('/').next().unwrap().to_string();
    let pods: Vec<Pod> = (0..3)
        .map(|i| pod(&format!("web-{i}"), "web", 1000, 2048, Some("spot-1")))
        .collect();
    let s = snapshot(vec![with_target(spot, &nodes), od], nodes, pods, vec![]);
    let mut e = engine();
    e.set_priorities("50: ['spot']\n10: ['od']\n").unwrap();
    e.handle_event(
        Event::InstanceInterruption {
            instance_id,
            kind: InterruptionKind::SpotInterruption,
            zone: None,
            instance_type: None,
            deadline: Some(at(62)),
        },
        at(60),
    );
    let d = e.decide(&s, at(60));
    assert_eq!(
        removals(&d),
        vec![("spot-1".into(), RemovalKind::Interruption)]
    );
    // The spot pool (m5.xlarge, zone a) is cooled off, so the replacement is on-demand.
    assert_eq!(scale_ups(&d), vec![("od".to_string(), 1)]);
    assert!(d.actions.iter().any(|a| a.reason().contains("2m left")));
}

#[test]
fn a_failed_interruption_drain_is_started_again_while_the_notice_holds() {
    let spot = group("spot", CapacityType::Spot, &[A], &["m5.xlarge"]);
    let nodes = vec![node("spot-1", &spot, A, "m5.xlarge", at(0))];
    let instance = nodes[0].provider_id.clone().unwrap();
    let instance_id = instance.rsplit('/').next().unwrap().to_string();
    let pods = vec![pod("web-0", "web", 1000, 2048, Some("spot-1"))];
    let s = snapshot(vec![with_target(spot, &nodes)], nodes, pods, vec![]);
    let mut e = engine();
    e.handle_event(
        Event::InstanceInterruption {
            instance_id,
            kind: InterruptionKind::ScheduledChange,
            zone: None,
            instance_type: None,
            deadline: Some(at(70)),
        },
        at(60),
    );
    let drained = |d: &Decisions| removals(d) == vec![("spot-1".into(), RemovalKind::Interruption)];
    assert!(drained(&e.decide(&s, at(60))));
    // Still draining: nothing new.
    assert!(removals(&e.decide(&s, at(61))).is_empty());
    // The drain failed (the API server was down, a pod was slow to go): drain again.
    let failed = Event::NodeRemovalFailed {
        node: "spot-1".into(),
        reason: "evicted pods still on the node after 35s".into(),
    };
    e.handle_event(failed.clone(), at(62));
    let d = e.decide(&s, at(62));
    assert!(drained(&d), "{:?}", d.actions);
    assert!(d
        .actions
        .iter()
        .any(|a| a.reason().contains("last drain failed")));
    // Past the notice's deadline a failure is left to scale-down's own rules.
    e.handle_event(failed, at(71));
    assert!(removals(&e.decide(&s, at(71))).is_empty());
}

#[test]
fn a_notice_before_the_node_registers_is_applied_when_it_appears_until_its_deadline() {
    let spot = group("spot", CapacityType::Spot, &[A], &["m5.xlarge"]);
    let registered = vec![node("spot-1", &spot, A, "m5.xlarge", at(0))];
    let instance_id = registered[0]
        .provider_id
        .clone()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let notice = |deadline| Event::InstanceInterruption {
        instance_id: instance_id.clone(),
        kind: InterruptionKind::SpotInterruption,
        zone: None,
        instance_type: None,
        deadline: Some(deadline),
    };
    let mut g = spot.clone();
    g.target_size = 1;
    let before = snapshot(vec![g.clone()], vec![], vec![], vec![]);
    let after = snapshot(vec![g], registered, vec![], vec![]);

    let mut e = engine();
    e.handle_event(notice(at(62)), at(60));
    let d = e.decide(&before, at(60));
    assert!(removals(&d).is_empty(), "no Node yet: {:?}", d.actions);
    let d = e.decide(&after, at(61));
    assert_eq!(
        removals(&d),
        vec![("spot-1".into(), RemovalKind::Interruption)],
        "applied once the Node registers"
    );
    let d = e.decide(&after, at(61) + Duration::from_secs(10));
    assert!(removals(&d).is_empty(), "applied once: {:?}", d.actions);

    // Still no Node at the deadline: the instance is gone, the notice is dropped.
    let mut late = engine();
    late.handle_event(notice(at(62)), at(60));
    let _ = late.decide(&before, at(60));
    let _ = late.decide(&before, at(62));
    let d = late.decide(&after, at(63));
    assert!(removals(&d).is_empty(), "{:?}", d.actions);
}

// ---------------------------------------------------------------- zone balance

fn zonal_set() -> Vec<NodeGroup> {
    [("spot-a", A), ("spot-b", B), ("spot-c", C)]
        .iter()
        .map(|(n, z)| group(n, CapacityType::Spot, &[z], &["m5.xlarge"]))
        .collect()
}

#[test]
fn scale_ups_are_split_toward_the_lightest_zones() {
    let groups = zonal_set();
    let nodes = vec![
        node("a1", &groups[0], A, "m5.xlarge", at(0)),
        node("a2", &groups[0], A, "m5.xlarge", at(0)),
        node("a3", &groups[0], A, "m5.xlarge", at(0)),
        node("b1", &groups[1], B, "m5.xlarge", at(0)),
    ];
    let mut pods: Vec<Pod> = nodes
        .iter()
        .map(|n| {
            pod(
                &format!("{}-busy", n.name),
                "busy",
                3000,
                1024,
                Some(&n.name),
            )
        })
        .collect();
    pods.extend((0..9).map(|i| pod(&format!("new-{i}"), "web", 1000, 1024, None)));
    let groups: Vec<NodeGroup> = groups.into_iter().map(|g| with_target(g, &nodes)).collect();
    let s = snapshot(groups, nodes, pods, vec![]);
    let d = engine().decide(&s, at(1));
    let mut ups: BTreeMap<String, u32> = BTreeMap::new();
    for (g, n) in scale_ups(&d) {
        *ups.entry(g).or_default() += n;
    }
    // 3 new nodes: zone c (0 nodes) gets 2, zone b (1) gets 1, zone a (3) none -> 3/2/2.
    assert_eq!(ups.get("spot-c"), Some(&2), "{ups:?}");
    assert_eq!(ups.get("spot-b"), Some(&1), "{ups:?}");
    assert_eq!(ups.get("spot-a"), None, "{ups:?}");
    // The expander chose one group; its nodes went to the lighter zones' groups, so
    // each scale-up is a zone-balance share of the chosen one.
    let causes: Vec<(String, ScaleUpCause)> = d
        .actions
        .iter()
        .filter_map(|a| match a {
            Decision::ScaleUp { group, cause, .. } => Some((group.clone(), *cause)),
            _ => None,
        })
        .collect();
    assert_eq!(causes.len(), 2, "{causes:?}");
    assert!(
        causes
            .iter()
            .all(|(g, c)| g != "spot-a" && *c == ScaleUpCause::ZoneBalance),
        "{causes:?}"
    );
}

/// Plays a round at each of `minutes`, applying the decisions as the adapters would:
/// new nodes are ready at once, a removed node's pods move to the newest node. Returns
/// the removals with their minute.
fn play(
    e: &mut Autoscaler,
    groups: &[NodeGroup],
    nodes: &mut Vec<Node>,
    pods: &mut [Pod],
    minutes: impl Iterator<Item = u64>,
) -> Vec<(u64, RemovalKind)> {
    let mut removed = Vec::new();
    let mut launched = 0;
    for now in minutes {
        let gs: Vec<NodeGroup> = groups
            .iter()
            .cloned()
            .map(|g| with_target(g, nodes))
            .collect();
        let s = snapshot(gs.clone(), nodes.clone(), pods.to_vec(), vec![]);
        let d = e.decide(&s, at(now));
        for a in &d.actions {
            match a {
                Decision::ScaleUp { group, delta, .. } => {
                    let g = gs.iter().find(|g| &g.name == group).unwrap();
                    for _ in 0..*delta {
                        launched += 1;
                        let name = format!("new{launched}");
                        nodes.push(node(&name, g, &g.zones[0], "m5.xlarge", at(now)));
                    }
                }
                Decision::RemoveNode {
                    node: victim, kind, ..
                } => {
                    removed.push((now, *kind));
                    let target = nodes.last().unwrap().name.clone();
                    for p in pods
                        .iter_mut()
                        .filter(|p| p.node_name.as_deref() == Some(victim))
                    {
                        p.node_name = Some(target.clone());
                    }
                    nodes.retain(|n| &n.name != victim);
                }
                _ => {}
            }
        }
    }
    removed
}

#[test]
fn zone_skew_after_a_spike_in_one_zone_is_healed_by_replacement() {
    let groups = zonal_set();
    // A spike landed 5 nodes in zone a; zones b and c have 1 each; all busy.
    let mut nodes: Vec<Node> = (0..5)
        .map(|i| node(&format!("a{i}"), &groups[0], A, "m5.xlarge", at(0)))
        .collect();
    nodes.push(node("b0", &groups[1], B, "m5.xlarge", at(0)));
    nodes.push(node("c0", &groups[2], C, "m5.xlarge", at(0)));
    let mut pods: Vec<Pod> = nodes
        .iter()
        .map(|n| {
            pod(
                &format!("{}-busy", n.name),
                "busy",
                2500,
                1024,
                Some(&n.name),
            )
        })
        .collect();
    let mut e = engine();
    let skew_of = |nodes: &[Node]| {
        let mut c: BTreeMap<&str, i64> = BTreeMap::from([(A, 0), (B, 0), (C, 0)]);
        for n in nodes {
            *c.get_mut(n.zone().unwrap()).unwrap() += 1;
        }
        c.values().max().unwrap() - c.values().min().unwrap()
    };
    assert_eq!(skew_of(&nodes), 4);
    // Play rounds: apply each decision as the adapters would (new nodes ready at once).
    let _ = play(
        &mut e,
        &groups,
        &mut nodes,
        &mut pods,
        (0..40).map(|i| 30 + 2 * i),
    );
    assert!(
        skew_of(&nodes) <= 1,
        "skew {} with {:?}",
        skew_of(&nodes),
        nodes
            .iter()
            .map(|n| (&n.name, n.zone()))
            .collect::<Vec<_>>()
    );
    assert_eq!(nodes.len(), 7, "rebalancing keeps the capacity");
}

// ---------------------------------------------------------------- overprovisioning

#[test]
fn overprovisioning_follows_the_ladder_and_is_only_sent_on_change() {
    let (g, nodes, pods) = busy_and_light();
    let s = snapshot(vec![g], nodes, pods, vec![]);
    let mut e = engine();
    let data = BTreeMap::from([(
        "ladder".to_string(),
        r#"{"coresToReplicas":[[1,1],[8,2]],"nodesToReplicas":[[1,1],[3,3]]}"#.to_string(),
    )]);
    e.set_overprovisioning(Some(Overprovisioning::from_configmap_data(&data).unwrap()));
    let d = e.decide(&s, at(0));
    let set: Vec<u32> = d
        .actions
        .iter()
        .filter_map(|a| match a {
            Decision::SetOverprovisioning { replicas, .. } => Some(*replicas),
            _ => None,
        })
        .collect();
    assert_eq!(set, vec![2], "8 cores on 2 nodes -> 2");
    let d = e.decide(&s, at(1));
    assert!(!d
        .actions
        .iter()
        .any(|a| matches!(a, Decision::SetOverprovisioning { .. })));
}

// ---------------------------------------------------------------- more CA flags

#[test]
fn custom_controller_pods_block_unless_allowed() {
    let mut p = pod("victim", "victim", 300, 512, Some("light"));
    p.owner = Some(OwnerRef {
        kind: "SparkApplication".into(),
        name: "etl".into(),
    });
    let (d, n) = single_light_node_with(p.clone());
    assert_eq!(
        blocker(&d, &n),
        ScaleDownBlocker::CustomController {
            pod: "default/victim".into(),
            kind: "SparkApplication".into(),
            name: "etl".into()
        }
    );

    let (g, nodes, mut pods) = busy_and_light();
    pods.retain(|p| p.name != "small-0");
    pods.push(p);
    let s = snapshot(vec![g], nodes, pods, vec![]);
    let mut config = base_config();
    config.scale_down.skip_nodes_with_custom_controller_pods = false;
    let mut e = Autoscaler::new(config).unwrap();
    let _ = e.decide(&s, at(0));
    assert_eq!(removals(&e.decide(&s, at(11))).len(), 1);
}

#[test]
fn a_long_unready_node_goes_whatever_its_utilization() {
    let (g, mut nodes, mut pods) = busy_and_light();
    // The light node is now 77% busy and NotReady since t=0; a spare node can take its pods.
    pods.retain(|p| p.node_name.as_deref() != Some("light"));
    pods.push(pod("filler", "filler", 3000, 1024, Some("light")));
    nodes[1].ready = false;
    nodes[1].ready_changed_at = Some(at(0));
    nodes.push(node("spare", &g, A, "m5.4xlarge", at(0)));
    pods.push(pod("spare-load", "keep", 9000, 1024, Some("spare")));
    let s = snapshot(vec![with_target(g, &nodes)], nodes, pods, vec![]);
    let mut e = engine();
    assert!(
        removals(&e.decide(&s, at(10))).is_empty(),
        "not before 20 minutes"
    );
    let d = e.decide(&s, at(21));
    assert_eq!(removals(&d), vec![("light".into(), RemovalKind::ScaleDown)]);
    assert!(d.actions[0].reason().contains("unready"));
}

#[test]
fn delay_after_delete_spaces_removals_in_a_set() {
    let g = group("od", CapacityType::OnDemand, &[A], &["m5.xlarge"]);
    let nodes: Vec<Node> = (0..3)
        .map(|i| node(&format!("empty-{i}"), &g, A, "m5.xlarge", at(0)))
        .collect();
    let s = snapshot(vec![with_target(g, &nodes)], nodes, vec![], vec![]);
    let mut config = base_config();
    config.scale_down.max_empty_bulk_delete = 1;
    config.scale_down.delay_after_delete = Duration::from_secs(300);
    let mut e = Autoscaler::new(config).unwrap();
    let _ = e.decide(&s, at(0));
    assert_eq!(removals(&e.decide(&s, at(11))).len(), 1);
    assert!(
        removals(&e.decide(&s, at(13))).is_empty(),
        "inside the delay"
    );
    assert_eq!(removals(&e.decide(&s, at(17))).len(), 1);
}

#[test]
fn a_failed_drain_back_pauses_drain_backs_instead_of_cycling_through_spot_groups() {
    let (mut groups, nodes, pods) = after_fallback();
    groups.push(group(
        "web-spot-2",
        CapacityType::Spot,
        &[A],
        &["c5.2xlarge"],
    ));
    let mut e = drain_back_engine();
    let s = snapshot(groups.clone(), nodes.clone(), pods.clone(), vec![]);
    let first = scale_ups(&e.decide(&s, at(181)));
    assert_eq!(first.len(), 1);
    e.handle_event(
        Event::LaunchFailed {
            group: first[0].0.clone(),
            zone: None,
            instance_type: None,
            reason: LaunchFailureReason::InsufficientInstanceCapacity,
        },
        at(182),
    );
    let d = e.decide(&s, at(182));
    assert!(
        scale_ups(&d).is_empty(),
        "no second spot group tried at once: {:?}",
        d.actions
    );
    assert!(
        scale_ups(&e.decide(&s, at(184))).is_empty(),
        "paused for the cool-off"
    );
    let after = scale_ups(&e.decide(&s, at(186)));
    assert_eq!(after.len(), 1, "resumes after the pause");
}

#[test]
fn on_demand_sets_are_left_to_drain_back_not_rebalanced_with_new_on_demand_nodes() {
    let groups: Vec<NodeGroup> = [("od-a", A), ("od-b", B), ("od-c", C)]
        .iter()
        .map(|(n, z)| group(n, CapacityType::OnDemand, &[z], &["m5.xlarge"]))
        .collect();
    // Six nodes, all in zone a: big enough a set to be rebalanced.
    let nodes: Vec<Node> = (0..6)
        .map(|i| node(&format!("a{i}"), &groups[0], A, "m5.xlarge", at(0)))
        .collect();
    let pods: Vec<Pod> = nodes
        .iter()
        .map(|n| {
            pod(
                &format!("{}-busy", n.name),
                "busy",
                2500,
                1024,
                Some(&n.name),
            )
        })
        .collect();
    let gs: Vec<NodeGroup> = groups
        .iter()
        .cloned()
        .map(|g| with_target(g, &nodes))
        .collect();
    let s = snapshot(gs, nodes, pods, vec![]);
    let mut e = engine();
    let _ = e.decide(&s, at(1));
    let d = e.decide(&s, at(15));
    assert!(scale_ups(&d).is_empty(), "{:?}", d.actions);
    // With drain-back off, the on-demand set is rebalanced like any other.
    let mut config = base_config();
    config.drain_back.after = Duration::ZERO;
    let mut e = Autoscaler::new(config).unwrap();
    let _ = e.decide(&s, at(1));
    assert_eq!(scale_ups(&e.decide(&s, at(15))).len(), 1);
}

// ------------------------------------------------- rebalancing at rest, within a budget

/// `per_zone` busy nodes (one 2.5-CPU pod each) in zones a, b, c of [`zonal_set`].
fn skewed(per_zone: [usize; 3]) -> (Vec<NodeGroup>, Vec<Node>, Vec<Pod>) {
    let groups = zonal_set();
    let mut nodes = Vec::new();
    for (zi, (count, zone)) in per_zone.iter().zip([A, B, C]).enumerate() {
        for i in 0..*count {
            nodes.push(node(
                &format!("{}{i}", &zone[zone.len() - 1..]),
                &groups[zi],
                zone,
                "m5.xlarge",
                at(0),
            ));
        }
    }
    let pods = nodes
        .iter()
        .map(|n| {
            pod(
                &format!("{}-busy", n.name),
                "busy",
                2500,
                1024,
                Some(&n.name),
            )
        })
        .collect();
    let groups = groups.into_iter().map(|g| with_target(g, &nodes)).collect();
    (groups, nodes, pods)
}

fn rebalance_ups(d: &Decisions) -> usize {
    d.actions
        .iter()
        .filter(|a| {
            matches!(
                a,
                Decision::ScaleUp {
                    cause: ScaleUpCause::Replacement(RemovalKind::Rebalance),
                    ..
                }
            )
        })
        .count()
}

#[test]
fn rebalancing_waits_until_the_set_has_been_at_rest() {
    let (groups, mut nodes, mut pods) = skewed([5, 1, 1]);
    pods.push(pod("new-0", "web", 2000, 1024, None));
    let busy = snapshot(groups.clone(), nodes.clone(), pods.clone(), vec![]);
    let mut e = engine();
    // Load moves at minute 1: a scale-up for a pending pod in the set...
    let ups = scale_ups(&e.decide(&busy, at(1)));
    assert_eq!(ups.len(), 1);
    // ...whose node arrives and takes the pod.
    let g = groups.iter().find(|g| g.name == ups[0].0).unwrap();
    nodes.push(node("up0", g, &g.zones[0], "m5.xlarge", at(2)));
    pods.last_mut().unwrap().node_name = Some("up0".into());
    let groups: Vec<NodeGroup> = groups.into_iter().map(|g| with_target(g, &nodes)).collect();
    let calm = snapshot(groups, nodes, pods, vec![]);
    // Skew has lasted long enough (rebalance_after, 10 min), but the set is not at rest.
    for m in [12, 20, 30] {
        let d = e.decide(&calm, at(m));
        assert_eq!(rebalance_ups(&d), 0, "minute {m}: {:?}", d.actions);
    }
    // 30 min of rest (balance.rest_after) after the last scale-up: now it replaces.
    assert_eq!(rebalance_ups(&e.decide(&calm, at(32))), 1);
}

#[test]
fn the_tolerated_skew_grows_with_the_set_and_small_sets_are_left_alone() {
    let rebalances = |per_zone: [usize; 3], config: AutoscalerConfig| {
        let (groups, nodes, pods) = skewed(per_zone);
        let s = snapshot(groups, nodes, pods, vec![]);
        let mut e = Autoscaler::new(config).unwrap();
        let _ = e.decide(&s, at(1));
        rebalance_ups(&e.decide(&s, at(45)))
    };
    let fixed = || {
        let mut c = base_config();
        c.balance.skew_fraction = 0.0;
        c
    };
    // 21/21/18: skew 3 is within a fifth of the mean (20 nodes per zone).
    assert_eq!(rebalances([21, 21, 18], base_config()), 0);
    assert_eq!(rebalances([21, 21, 18], fixed()), 1, "threshold 1 alone");
    // Three nodes over three zones (2/1/0) are not worth a replacement.
    assert_eq!(rebalances([2, 1, 0], fixed()), 0);
    assert_eq!(rebalances([4, 1, 1], fixed()), 1);
}

#[test]
fn rebalancing_and_drain_back_share_an_hourly_eviction_budget() {
    let (groups, mut nodes, mut pods) = skewed([9, 1, 1]);
    let mut config = base_config();
    config.balance.evictions_per_hour = 1;
    let mut e = Autoscaler::new(config).unwrap();
    // Rounds every 2 min for 100 min.
    let drained_at: Vec<u64> = play(
        &mut e,
        &groups,
        &mut nodes,
        &mut pods,
        (0..50).map(|i| 12 + 2 * i),
    )
    .into_iter()
    .filter(|(_, kind)| *kind == RemovalKind::Rebalance)
    .map(|(at, _)| at)
    .collect();
    // One pod per node, one eviction an hour: two replacements in 100 minutes, an
    // hour apart, though the skew (8) asked for more.
    assert_eq!(drained_at.len(), 2, "{drained_at:?}");
    assert!(drained_at[1] - drained_at[0] >= 60, "{drained_at:?}");
}

#[test]
fn a_pdb_at_zero_pauses_a_removal_without_restarting_its_unneeded_time() {
    let (g, nodes, pods) = busy_and_light();
    let pdb = |allowed| PodDisruptionBudget {
        namespace: "default".into(),
        name: "small".into(),
        selector: LabelSelector::labels([("app", "small")]),
        disruptions_allowed: allowed,
    };
    let mut e = engine();
    let free = snapshot(vec![g.clone()], nodes.clone(), pods.clone(), vec![pdb(1)]);
    let held = snapshot(vec![g], nodes, pods, vec![pdb(0)]);
    let _ = e.decide(&free, at(0));
    // Another drain holds the PDB at zero for a while.
    for m in [3, 6, 9] {
        assert!(removals(&e.decide(&held, at(m))).is_empty());
    }
    // Free again at minute 11: unneeded since minute 0, so it goes now.
    assert_eq!(
        removals(&e.decide(&free, at(11))),
        vec![("light".into(), RemovalKind::ScaleDown)]
    );
}

#[test]
fn scale_down_takes_the_node_with_fewer_pods_to_evict_first() {
    let g = group("spot", CapacityType::Spot, &[A], &["m5.xlarge"]);
    let nodes = vec![
        node("many", &g, A, "m5.xlarge", Timestamp::ZERO),
        node("one", &g, A, "m5.xlarge", Timestamp::ZERO),
        node("busy", &g, A, "m5.xlarge", Timestamp::ZERO),
    ];
    // "many" holds 3 small pods (less CPU in all than "one"'s single pod).
    let mut pods: Vec<Pod> = (0..3)
        .map(|i| pod(&format!("m-{i}"), "m", 100, 256, Some("many")))
        .collect();
    pods.push(pod("o-0", "o", 500, 256, Some("one")));
    pods.push(pod("b-0", "b", 2000, 1024, Some("busy")));
    let s = snapshot(vec![with_target(g, &nodes)], nodes, pods, vec![]);
    let mut e = engine();
    let _ = e.decide(&s, at(0));
    let d = e.decide(&s, at(11));
    assert_eq!(
        removals(&d)[0],
        ("one".into(), RemovalKind::ScaleDown),
        "{:?}",
        d.actions
    );
}

// ------------------------------------------- scale-down and rebalancing heal, not skew

#[test]
fn a_drain_that_would_skew_the_zones_waits() {
    // Zones a/b/c hold 3/3/2 busy nodes; c1 also holds one small pod only: unneeded.
    let (groups, mut nodes, mut pods) = skewed([3, 3, 1]);
    let c = groups.iter().find(|g| g.name == "spot-c").unwrap().clone();
    nodes.push(node("c-light", &c, C, "m5.xlarge", at(0)));
    pods.push(pod("small-0", "small", 300, 512, Some("c-light")));
    let groups: Vec<NodeGroup> = groups.into_iter().map(|g| with_target(g, &nodes)).collect();
    let s = snapshot(groups, nodes, pods, vec![]);
    let removed_by = |config: AutoscalerConfig| {
        let mut e = Autoscaler::new(config).unwrap();
        let _ = e.decide(&s, at(0));
        let d = e.decide(&s, at(11));
        (removals(&d), d)
    };
    // Draining c-light leaves zone c with 1 node against 3/3: skew 2 > 1, and
    // rebalancing would evict again to undo it.
    let (gone, d) = removed_by(base_config());
    assert!(gone.is_empty(), "{:?}", d.actions);
    assert!(
        matches!(
            blocker(&d, "c-light"),
            ScaleDownBlocker::ZoneBalance { ref zone, skew_after: 2, threshold: 1 } if zone == C
        ),
        "{:?}",
        d.nodes
    );
    // Without rebalancing, cluster-autoscaler's rule alone: the node goes.
    let mut no_rebalance = base_config();
    no_rebalance.balance.rebalance = false;
    let (gone, d) = removed_by(no_rebalance);
    assert_eq!(gone.len(), 1, "{:?}", d.actions);
}

#[test]
fn a_middle_zone_may_shrink_when_the_skew_stays_what_it_was() {
    // Zones a/b/c hold 4/3/1 nodes (skew 3); b's third node holds one small pod only.
    let (groups, mut nodes, mut pods) = skewed([4, 2, 1]);
    let b = groups.iter().find(|g| g.name == "spot-b").unwrap().clone();
    nodes.push(node("b-light", &b, B, "m5.xlarge", at(0)));
    pods.push(pod("small-0", "small", 300, 512, Some("b-light")));
    let groups: Vec<NodeGroup> = groups.into_iter().map(|g| with_target(g, &nodes)).collect();
    let s = snapshot(groups, nodes, pods, vec![]);
    let mut e = engine();
    let _ = e.decide(&s, at(0));
    let d = e.decide(&s, at(11));
    // 4/2/1 keeps skew 3 (a against c): rebalancing has the same moves to make whether
    // b-light stays or goes, so keeping it only pays for idle room.
    assert!(
        removals(&d).contains(&("b-light".into(), RemovalKind::ScaleDown)),
        "{:?}\n{:?}",
        d.actions,
        d.nodes
    );
}

/// `per_zone` nodes, each with two 1.1-CPU pods (56 % of an m5.xlarge: above the
/// scale-down threshold, but two nodes' pods fit on three).
fn skewed_with_room(per_zone: [usize; 3]) -> ClusterSnapshot {
    let (groups, nodes, _) = skewed(per_zone);
    let pods = nodes
        .iter()
        .flat_map(|n| {
            (0..2).map(|i| {
                pod(
                    &format!("{}-web-{i}", n.name),
                    "web",
                    1100,
                    1024,
                    Some(&n.name),
                )
            })
        })
        .collect();
    snapshot(groups, nodes, pods, vec![])
}

#[test]
fn rebalancing_drains_without_a_replacement_when_the_set_has_room() {
    let s = skewed_with_room([5, 1, 1]);
    let rebalance = |config: AutoscalerConfig| {
        let mut e = Autoscaler::new(config).unwrap();
        let _ = e.decide(&s, at(1));
        e.decide(&s, at(45))
    };
    let d = rebalance(base_config());
    let drained: Vec<&Decision> = d
        .actions
        .iter()
        .filter(|a| {
            matches!(
                a,
                Decision::RemoveNode {
                    kind: RemovalKind::Rebalance,
                    ..
                }
            )
        })
        .collect();
    assert_eq!(drained.len(), 1, "{:?}", d.actions);
    assert!(
        matches!(drained[0], Decision::RemoveNode { node, reason, .. }
            if node.starts_with('a') && reason.contains("without a replacement")),
        "{drained:?}"
    );
    assert_eq!(rebalance_ups(&d), 0, "{:?}", d.actions);
    // A set with no room to spare gets a replacement first, as before.
    let mut full = base_config();
    full.balance.consolidate_below = 0.5;
    let d = rebalance(full);
    assert_eq!(rebalance_ups(&d), 1, "{:?}", d.actions);
    assert!(
        !d.actions
            .iter()
            .any(|a| matches!(a, Decision::RemoveNode { .. })),
        "{:?}",
        d.actions
    );
}

// ---------------------------------------------------------------- pod deletion cost

fn costs(d: &Decisions) -> BTreeMap<String, Option<i32>> {
    d.deletion_costs
        .iter()
        .map(|c| (c.pod.clone(), c.cost))
        .collect()
}

/// The pod as the controller leaves it after writing `cost` (both annotations).
fn with_cost(mut p: Pod, cost: i32, ours: bool) -> Pod {
    p.annotations
        .insert(model::POD_DELETION_COST.into(), cost.to_string());
    if ours {
        p.annotations
            .insert(model::DELETION_COST_SET_BY_US.into(), cost.to_string());
    }
    p
}

#[test]
fn pods_of_the_node_that_goes_first_get_the_lowest_deletion_cost() {
    // `light` is the scale-down candidate: its pod is the one an HPA scale-in should
    // delete, so the node empties instead of being drained. `busy` comes next (a node
    // that is not a candidate yet): a cost too, higher. With one node allowed only
    // `light`'s pod is steered; with 0 nothing is written.
    let (g, nodes, pods) = busy_and_light();
    let s = snapshot(vec![g.clone()], nodes.clone(), pods.clone(), vec![]);
    let d = engine().decide(&s, at(0));
    let got = costs(&d);
    let light = got["default/small-0"].expect("the candidate's pod gets a cost");
    let busy = got["default/api-0"].expect("the next node's pods get one too");
    assert!(light < busy && busy < 0, "{got:?}");
    assert_eq!(got["default/api-1"], Some(busy));

    let with_nodes = |n: u32| {
        with_scale_down(ScaleDownConfig {
            deletion_cost_nodes: n,
            ..ScaleDownConfig::default()
        })
    };
    let one = costs(&with_nodes(1).decide(&s, at(0)));
    assert_eq!(one.keys().collect::<Vec<_>>(), ["default/small-0"]);
    assert!(with_nodes(0).decide(&s, at(0)).deletion_costs.is_empty());

    // Written costs are not written again; a user's own cost is never touched; ours
    // is cleared once its node leaves the list (here: the feature turned off).
    let mut written: Vec<Pod> = pods
        .iter()
        .map(|p| with_cost(p.clone(), got[&p.key()].unwrap(), true))
        .collect();
    let s = snapshot(vec![g.clone()], nodes.clone(), written.clone(), vec![]);
    assert!(engine().decide(&s, at(0)).deletion_costs.is_empty());
    written[0] = with_cost(pods[0].clone(), 7, false);
    let s = snapshot(vec![g], nodes, written, vec![]);
    assert!(!costs(&engine().decide(&s, at(0))).contains_key("default/api-0"));
    let cleared = costs(&with_nodes(0).decide(&s, at(0)));
    assert_eq!(cleared.len(), 3, "{cleared:?}");
    assert!(cleared.values().all(Option::is_none));
    assert!(
        !cleared.contains_key("default/api-0"),
        "the user's cost stays"
    );
}
