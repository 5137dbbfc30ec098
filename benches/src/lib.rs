//! Generators of large, realistic clusters for the benchmarks.

use autoscaler_core::fixtures::{group, node, pod};
use autoscaler_core::model::{HOSTNAME_LABEL, ZONE_LABEL};
use autoscaler_core::{
    CapacityType, ClusterSnapshot, DaemonSet, LabelSelector, NodeGroup, Pod, PodAntiAffinityTerm,
    Resources, SchedulingSpec, SnapshotParts, Timestamp, TopologySpreadConstraint,
    WhenUnsatisfiable,
};

/// Zones used by the generated clusters.
pub const ZONES: [&str; 3] = ["eu-west-1a", "eu-west-1b", "eu-west-1c"];

/// Size of a generated cluster.
#[derive(Clone, Copy, Debug)]
pub struct Scale {
    /// Node groups (ASGs).
    pub groups: usize,
    /// Registered nodes.
    pub nodes: usize,
    /// Running pods.
    pub running_pods: usize,
    /// Pending pods.
    pub pending_pods: usize,
}

/// The target scale: 50 groups, 5,000 nodes, 150,000 running pods, 1,000 pending.
pub const PRODUCTION: Scale = Scale {
    groups: 50,
    nodes: 5_000,
    running_pods: 150_000,
    pending_pods: 1_000,
};

/// A cluster of the given scale: 40 spot groups over diversified types and 10 on-demand
/// groups, one zone per group (the usual CA layout), nodes filled to ~80%, pending pods
/// from 40 workloads, some with zone spread or hostname anti-affinity.
pub fn cluster(scale: Scale) -> ClusterSnapshot {
    let spot_types: [&[&str]; 4] = [
        &["m5.xlarge", "m5a.xlarge", "m4.xlarge"],
        &["m5.2xlarge"],
        &["c5.2xlarge"],
        &["r5.xlarge"],
    ];
    let groups: Vec<NodeGroup> = (0..scale.groups)
        .map(|i| {
            let zone = ZONES[i % 3];
            let mut g = if i % 5 == 4 {
                group(
                    &format!("eks-on-demand-{i:02}"),
                    CapacityType::OnDemand,
                    &[zone],
                    &["m5.2xlarge"],
                )
            } else {
                group(
                    &format!("eks-spot-{i:02}"),
                    CapacityType::Spot,
                    &[zone],
                    spot_types[i % 4],
                )
            };
            g.max_size = 1000;
            g
        })
        .collect();
    let mut nodes = Vec::with_capacity(scale.nodes);
    let mut targets = vec![0u32; groups.len()];
    for n in 0..scale.nodes {
        let gi = n % groups.len();
        let g = &groups[gi];
        let itype = g.instance_types[n % g.instance_types.len()].name.clone();
        nodes.push(node(
            &format!("ip-10-{}-{}-{}", n / 65536, (n / 256) % 256, n % 256),
            g,
            &g.zones[0],
            &itype,
            Timestamp::ZERO,
        ));
        targets[gi] += 1;
    }
    let groups: Vec<NodeGroup> = groups
        .into_iter()
        .zip(targets)
        .map(|(mut g, t)| {
            g.target_size = t;
            g
        })
        .collect();
    let mut pods: Vec<Pod> = Vec::with_capacity(scale.running_pods + scale.pending_pods);
    let per_node = scale.running_pods / scale.nodes.max(1);
    for (ni, n) in nodes.iter().enumerate() {
        // Fill ~80% of CPU with pods of a few sizes.
        let budget = n.allocatable.cpu_millis * 8 / 10;
        let cpu = (budget / per_node.max(1) as u64).max(10);
        for k in 0..per_node {
            let owner = format!("svc-{}", (ni * 7 + k) % 300);
            pods.push(pod(
                &format!("{}-{k}", n.name),
                &owner,
                cpu,
                cpu * 2,
                Some(&n.name),
            ));
        }
    }
    for i in 0..scale.pending_pods {
        let w = i % 40;
        let mut p = pod(
            &format!("pending-{w}-{i}"),
            &format!("burst-{w}"),
            250 + (w as u64 % 8) * 250,
            512 + (w as u64 % 5) * 512,
            None,
        );
        if w % 10 == 3 {
            p.spec.topology_spread.push(TopologySpreadConstraint {
                max_skew: 1,
                topology_key: ZONE_LABEL.into(),
                when_unsatisfiable: WhenUnsatisfiable::DoNotSchedule,
                label_selector: LabelSelector::labels([("app", &format!("burst-{w}"))]),
            });
        }
        if w % 10 == 7 {
            p.spec.anti_affinity.push(PodAntiAffinityTerm {
                label_selector: LabelSelector::labels([("app", &format!("burst-{w}"))]),
                topology_key: HOSTNAME_LABEL.into(),
                namespaces: vec![],
            });
        }
        pods.push(p);
    }
    let daemonsets = vec![DaemonSet {
        namespace: "kube-system".into(),
        name: "aws-node".into(),
        spec: SchedulingSpec {
            requests: Resources::new(25, 64 << 20),
            ..SchedulingSpec::default()
        },
    }];
    ClusterSnapshot::new(SnapshotParts {
        groups,
        nodes,
        pods: pods.into_iter().map(std::sync::Arc::new).collect(),
        daemonsets,
        pdbs: vec![],
        workload_loads: vec![],
    })
    .expect("generated cluster is valid")
}

/// A cluster for the scale-down benchmark: `scale.nodes` nodes carrying
/// `scale.running_pods` pods, one node in ten lightly loaded (candidates), no pending pods,
/// HPA-measured load for two workloads in three.
pub fn scale_down_cluster(scale: Scale) -> ClusterSnapshot {
    let mut parts = cluster(Scale {
        pending_pods: 0,
        ..scale
    })
    .into_parts();
    let per_node = scale.running_pods / scale.nodes.max(1);
    // Every tenth node keeps only a fifth of its pods: under 50% utilization.
    let light: std::collections::BTreeSet<String> = parts
        .nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 10 == 0)
        .map(|(_, n)| n.name.clone())
        .collect();
    let mut kept_per_node: std::collections::BTreeMap<String, usize> = Default::default();
    parts.pods.retain(|p| match &p.node_name {
        Some(n) if light.contains(n) => {
            let k = kept_per_node.entry(n.clone()).or_insert(0);
            *k += 1;
            *k <= per_node / 5
        }
        _ => true,
    });
    // Two workloads in three have an HPA that reported 40-89 % CPU (the eviction-pressure
    // tie-break reads both kinds).
    parts.workload_loads = (0..300u32)
        .filter(|i| i % 3 != 0)
        .map(|i| autoscaler_core::WorkloadLoad {
            namespace: "default".into(),
            target_kind: "ReplicaSet".into(),
            target_name: format!("svc-{i}"),
            cpu_utilization_percent: 40 + (i * 13) % 50,
        })
        .collect();
    ClusterSnapshot::new(parts).expect("generated cluster is valid")
}
