//! A validated, indexed view of the cluster at one instant ("parse, don't validate":
//! once built, every index is consistent and lookups cannot fail).

use crate::model::{DaemonSet, Node, NodeGroup, Pod, PodDisruptionBudget, WorkloadLoad};
use crate::resources::Resources;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use thiserror::Error;

pub use crate::index::{GroupIdx, NodeIdx, PodIdx};

/// The raw parts of a snapshot, as an adapter or a fixture provides them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotParts {
    /// Node groups (ASGs).
    #[serde(default)]
    pub groups: Vec<NodeGroup>,
    /// Nodes.
    #[serde(default)]
    pub nodes: Vec<Node>,
    /// All live pods; pending ones have no `node_name`. Shared so that an adapter's
    /// cache and every round's snapshot hold one copy of each pod (a controller at
    /// 100k pods would otherwise keep two).
    #[serde(default)]
    pub pods: Vec<Arc<Pod>>,
    /// DaemonSets.
    #[serde(default)]
    pub daemonsets: Vec<DaemonSet>,
    /// PodDisruptionBudgets.
    #[serde(default)]
    pub pdbs: Vec<PodDisruptionBudget>,
    /// Workload load from HPA status (optional: without it scale-down ranks evictions
    /// by replica count alone).
    #[serde(default)]
    pub workload_loads: Vec<WorkloadLoad>,
}

/// Why a snapshot could not be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SnapshotError {
    /// Two node groups share a name.
    #[error("node group {0:?} appears twice; each ASG must be listed once")]
    DuplicateGroup(String),
    /// Two nodes share a name.
    #[error("node {0:?} appears twice; node names are unique in Kubernetes")]
    DuplicateNode(String),
    /// A group's sizes are inconsistent.
    #[error("node group {group:?}: min size {min} is above max size {max}; fix the ASG's MinSize/MaxSize")]
    MinAboveMax {
        /// Group.
        group: String,
        /// Min.
        min: u32,
        /// Max.
        max: u32,
    },
    /// A group has no instance type to plan with.
    #[error("node group {0:?} has no instance type; give it a launch template or mixed-instances overrides")]
    NoInstanceTypes(String),
    /// A group has no zone to launch into.
    #[error("node group {0:?} has no availability zone")]
    NoZones(String),
}

/// An indexed cluster snapshot. Build it with [`ClusterSnapshot::new`].
#[derive(Clone, Debug)]
pub struct ClusterSnapshot {
    parts: SnapshotParts,
    node_by_name: FxHashMap<String, NodeIdx>,
    group_by_name: BTreeMap<String, GroupIdx>,
    /// Node index of each pod (`None`: pending, or bound to a node not in the snapshot).
    pod_node: Vec<Option<NodeIdx>>,
    /// Pods bound to each node.
    pods_on_node: Vec<Vec<PodIdx>>,
    /// Nodes of each group.
    nodes_of_group: Vec<Vec<NodeIdx>>,
    /// Group index of each node (resolved once, not by name at every use).
    group_of_node: Vec<Option<GroupIdx>>,
    /// Pods bound to a node the snapshot does not know (kept, counted, reported).
    orphaned_pods: usize,
    any_anti_affinity: bool,
    /// Bound pods that declare required anti-affinity.
    bound_anti_affinity: Vec<PodIdx>,
    /// Bound pods grouped by (namespace, labels), so a selector is evaluated once per
    /// distinct label set rather than once per pod.
    label_sets: Vec<(PodIdx, Vec<PodIdx>)>,
    /// Distinct zones of the nodes.
    node_zones: Vec<String>,
    /// Sum of the requests of the pods bound to each node.
    node_requested: Vec<Resources>,
    /// Pods not bound to any node.
    pending: Vec<PodIdx>,
}

impl ClusterSnapshot {
    /// Validates and indexes the parts.
    pub fn new(parts: SnapshotParts) -> Result<Self, SnapshotError> {
        let mut group_by_name = BTreeMap::new();
        for (i, g) in parts.groups.iter().enumerate() {
            if group_by_name
                .insert(g.name.clone(), GroupIdx::new(i))
                .is_some()
            {
                return Err(SnapshotError::DuplicateGroup(g.name.clone()));
            }
            if g.min_size > g.max_size {
                return Err(SnapshotError::MinAboveMax {
                    group: g.name.clone(),
                    min: g.min_size,
                    max: g.max_size,
                });
            }
            if g.instance_types.is_empty() {
                return Err(SnapshotError::NoInstanceTypes(g.name.clone()));
            }
            if g.zones.is_empty() {
                return Err(SnapshotError::NoZones(g.name.clone()));
            }
        }
        let mut node_by_name =
            FxHashMap::with_capacity_and_hasher(parts.nodes.len(), Default::default());
        let mut nodes_of_group = vec![Vec::new(); parts.groups.len()];
        let mut group_of_node = Vec::with_capacity(parts.nodes.len());
        for (i, n) in parts.nodes.iter().enumerate() {
            if node_by_name
                .insert(n.name.clone(), NodeIdx::new(i))
                .is_some()
            {
                return Err(SnapshotError::DuplicateNode(n.name.clone()));
            }
            let group = n.group.as_ref().and_then(|g| group_by_name.get(g)).copied();
            if let Some(g) = group {
                nodes_of_group[g].push(NodeIdx::new(i));
            }
            group_of_node.push(group);
        }
        let mut pod_node = Vec::with_capacity(parts.pods.len());
        let mut pods_on_node = vec![Vec::new(); parts.nodes.len()];
        let mut node_requested = vec![Resources::default(); parts.nodes.len()];
        let mut pending = Vec::new();
        let mut orphaned_pods = 0;
        let mut any_anti_affinity = false;
        let mut bound_anti_affinity = Vec::new();
        for (i, p) in parts.pods.iter().enumerate() {
            any_anti_affinity |= !p.spec.anti_affinity.is_empty();
            let idx = match &p.node_name {
                None => {
                    pending.push(PodIdx::new(i));
                    None
                }
                Some(name) => match node_by_name.get(name.as_str()) {
                    Some(&n) => {
                        pods_on_node[n].push(PodIdx::new(i));
                        node_requested[n].add(&p.spec.requests);
                        if !p.spec.anti_affinity.is_empty() {
                            bound_anti_affinity.push(PodIdx::new(i));
                        }
                        Some(n)
                    }
                    None => {
                        orphaned_pods += 1;
                        None
                    }
                },
            };
            pod_node.push(idx);
        }
        let label_sets = label_sets(&parts, &pod_node);
        let node_zones: std::collections::BTreeSet<&str> =
            parts.nodes.iter().filter_map(|n| n.zone()).collect();
        let node_zones: Vec<String> = node_zones.into_iter().map(str::to_string).collect();
        Ok(ClusterSnapshot {
            node_requested,
            pending,
            label_sets,
            node_zones,
            parts,
            node_by_name,
            group_by_name,
            pod_node,
            pods_on_node,
            nodes_of_group,
            group_of_node,
            orphaned_pods,
            any_anti_affinity,
            bound_anti_affinity,
        })
    }

    /// The raw parts.
    pub fn parts(&self) -> &SnapshotParts {
        &self.parts
    }

    /// Gives the parts back (to mutate and rebuild).
    pub fn into_parts(self) -> SnapshotParts {
        self.parts
    }

    /// Node groups in input order.
    pub fn groups(&self) -> &[NodeGroup] {
        &self.parts.groups
    }

    /// Nodes in input order.
    pub fn nodes(&self) -> &[Node] {
        &self.parts.nodes
    }

    /// Pods in input order.
    pub fn pods(&self) -> &[Arc<Pod>] {
        &self.parts.pods
    }

    /// DaemonSets.
    pub fn daemonsets(&self) -> &[DaemonSet] {
        &self.parts.daemonsets
    }

    /// PDBs.
    pub fn pdbs(&self) -> &[PodDisruptionBudget] {
        &self.parts.pdbs
    }

    /// Workload load as HPAs measured it.
    pub fn workload_loads(&self) -> &[WorkloadLoad] {
        &self.parts.workload_loads
    }

    /// Index of a group by name.
    pub fn group_index(&self, name: &str) -> Option<GroupIdx> {
        self.group_by_name.get(name).copied()
    }

    /// A group by name.
    pub fn group(&self, name: &str) -> Option<&NodeGroup> {
        self.group_index(name).map(|i| &self.parts.groups[i])
    }

    /// Index of a node by name.
    pub fn node_index(&self, name: &str) -> Option<NodeIdx> {
        self.node_by_name.get(name).copied()
    }

    /// Every node index, in input order.
    pub fn node_indexes(&self) -> impl Iterator<Item = NodeIdx> {
        (0..self.parts.nodes.len()).map(NodeIdx::new)
    }

    /// Every group index, in input order.
    pub fn group_indexes(&self) -> impl Iterator<Item = GroupIdx> {
        (0..self.parts.groups.len()).map(GroupIdx::new)
    }

    /// The node a pod is bound to, if it is in the snapshot.
    pub fn node_of_pod(&self, pod: PodIdx) -> Option<NodeIdx> {
        self.pod_node[pod]
    }

    /// Pods bound to a node.
    pub fn pods_on_node(&self, node: NodeIdx) -> &[PodIdx] {
        &self.pods_on_node[node]
    }

    /// The group a node belongs to, if it is in a known group.
    pub fn group_of_node(&self, node: NodeIdx) -> Option<GroupIdx> {
        self.group_of_node[node]
    }

    /// Nodes registered for a group.
    pub fn nodes_of_group(&self, group: GroupIdx) -> &[NodeIdx] {
        &self.nodes_of_group[group]
    }

    /// Indexes of pending pods (not bound to any node).
    pub fn pending_pods(&self) -> impl Iterator<Item = PodIdx> + '_ {
        self.pending.iter().copied()
    }

    /// Sum of the requests of the pods bound to a node.
    pub fn requested_on_node(&self, node: NodeIdx) -> &Resources {
        &self.node_requested[node]
    }

    /// Pods bound to nodes the snapshot does not contain (a cache race in the adapter).
    pub fn orphaned_pods(&self) -> usize {
        self.orphaned_pods
    }

    /// Bound pods grouped by namespace and labels: `(namespace, labels, pod indexes)`.
    pub fn label_sets(&self) -> impl Iterator<Item = (&str, &crate::model::Labels, &[PodIdx])> {
        self.label_sets.iter().map(|(rep, pods)| {
            let p = &self.parts.pods[*rep];
            (p.namespace.as_str(), &p.labels, pods.as_slice())
        })
    }

    /// Distinct zones of the snapshot's nodes, sorted.
    pub fn node_zones(&self) -> &[String] {
        &self.node_zones
    }

    /// Whether any pod declares required anti-affinity (lets the simulation skip the
    /// symmetric check when none does).
    pub fn any_anti_affinity(&self) -> bool {
        self.any_anti_affinity
    }

    /// Bound pods that declare required anti-affinity.
    pub fn bound_anti_affinity_pods(&self) -> &[PodIdx] {
        &self.bound_anti_affinity
    }
}

/// Bound pods grouped by (namespace, labels): `(representative, members)`.
fn label_sets(parts: &SnapshotParts, pod_node: &[Option<NodeIdx>]) -> Vec<(PodIdx, Vec<PodIdx>)> {
    let mut set_index: FxHashMap<(&str, &crate::model::Labels), usize> = FxHashMap::default();
    let mut label_sets: Vec<(PodIdx, Vec<PodIdx>)> = Vec::new();
    // Replicas of one workload usually sit next to each other: compare with the
    // previous pod's set before hashing.
    let mut previous: Option<usize> = None;
    for (i, p) in parts.pods.iter().enumerate() {
        if pod_node[i].is_none() {
            continue;
        }
        if let Some(k) = previous {
            let rep = &parts.pods[label_sets[k].0];
            if rep.namespace == p.namespace && rep.labels == p.labels {
                label_sets[k].1.push(PodIdx::new(i));
                continue;
            }
        }
        let k = match set_index.get(&(p.namespace.as_str(), &p.labels)) {
            Some(&k) => {
                label_sets[k].1.push(PodIdx::new(i));
                k
            }
            None => {
                set_index.insert((p.namespace.as_str(), &p.labels), label_sets.len());
                label_sets.push((PodIdx::new(i), vec![PodIdx::new(i)]));
                label_sets.len() - 1
            }
        };
        previous = Some(k);
    }
    label_sets
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CapacityType, InstanceType, NodeTemplate};
    use crate::resources::Resources;

    fn group(name: &str, min: u32, max: u32) -> NodeGroup {
        NodeGroup {
            name: name.into(),
            min_size: min,
            max_size: max,
            target_size: min,
            current_instances: None,
            zones: vec!["us-east-1a".into()],
            capacity_type: CapacityType::Spot,
            mix: None,
            instance_types: vec![InstanceType::new("m5.large", 2, 8192, 0.04)],
            template: NodeTemplate::default(),
            options: Default::default(),
        }
    }

    #[test]
    fn rejects_inconsistent_groups_with_a_fix() {
        let parts = SnapshotParts {
            groups: vec![group("a", 3, 1)],
            ..Default::default()
        };
        let e = ClusterSnapshot::new(parts).unwrap_err();
        assert!(e.to_string().contains("MinSize/MaxSize"), "{e}");
        let parts = SnapshotParts {
            groups: vec![group("a", 0, 1), group("a", 0, 1)],
            ..Default::default()
        };
        assert_eq!(
            ClusterSnapshot::new(parts).unwrap_err(),
            SnapshotError::DuplicateGroup("a".into())
        );
    }

    #[test]
    fn indexes_pods_and_counts_orphans() {
        let node = Node {
            name: "n1".into(),
            provider_id: None,
            group: Some("a".into()),
            capacity_type: CapacityType::Spot,
            capacity: Resources::default(),
            allocatable: Resources::new(2000, 1 << 30).with_pods(10),
            labels: Default::default(),
            annotations: Default::default(),
            taints: vec![],
            created_at: Default::default(),
            ready: true,
            ready_changed_at: None,
            unschedulable: false,
        };
        let mut bound = Pod::pending("p1", Resources::new(100, 100));
        bound.node_name = Some("n1".into());
        let mut orphan = Pod::pending("p2", Resources::new(100, 100));
        orphan.node_name = Some("gone".into());
        let pending = Pod::pending("p3", Resources::new(100, 100));
        let snap = ClusterSnapshot::new(SnapshotParts {
            groups: vec![group("a", 0, 3)],
            nodes: vec![node],
            pods: vec![bound.into(), orphan.into(), pending.into()],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(snap.pods_on_node(NodeIdx(0)), &[PodIdx(0)]);
        assert_eq!(snap.orphaned_pods(), 1);
        assert_eq!(snap.pending_pods().collect::<Vec<_>>(), vec![PodIdx(2)]);
        assert_eq!(snap.nodes_of_group(GroupIdx(0)), &[NodeIdx(0)]);
        assert_eq!(snap.group_of_node(NodeIdx(0)), Some(GroupIdx(0)));
        assert_eq!(snap.node_of_pod(PodIdx(0)), Some(NodeIdx(0)));
        assert_eq!(snap.node_of_pod(PodIdx(1)), None, "orphaned");
    }
}
