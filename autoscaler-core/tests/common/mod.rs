//! Helpers shared by the integration tests.

#![allow(dead_code)]

use autoscaler_core::*;

/// A snapshot from its parts (panics on invalid input: fixtures are valid).
pub fn snapshot(
    groups: Vec<NodeGroup>,
    nodes: Vec<Node>,
    pods: Vec<Pod>,
    pdbs: Vec<PodDisruptionBudget>,
) -> ClusterSnapshot {
    ClusterSnapshot::new(SnapshotParts {
        groups,
        nodes,
        pods: pods.into_iter().map(std::sync::Arc::new).collect(),
        pdbs,
        ..SnapshotParts::default()
    })
    .unwrap()
}

/// `(group, delta)` of every scale-up.
pub fn scale_ups(d: &Decisions) -> Vec<(String, u32)> {
    d.actions
        .iter()
        .filter_map(|a| match a {
            Decision::ScaleUp { group, delta, .. } => Some((group.clone(), *delta)),
            _ => None,
        })
        .collect()
}

/// `(node, kind)` of every removal.
pub fn removals(d: &Decisions) -> Vec<(String, RemovalKind)> {
    d.actions
        .iter()
        .filter_map(|a| match a {
            Decision::RemoveNode { node, kind, .. } => Some((node.clone(), *kind)),
            _ => None,
        })
        .collect()
}
