//! Everything that removes or replaces capacity: scale-down (CA semantics, cost- and
//! AZ-aware), on-demand drain-back, zone rebalancing, and balance sets.

use crate::config::AutoscalerConfig;
use crate::decision::RemovalKind;
use crate::model::{CapacityType, NodeGroup, Pod, ZONE_LABEL};
use crate::predicates::{full_fit, AffinityState, SimNode, SpreadState, Unfit};
use crate::snapshot::ClusterSnapshot;
use crate::time::Timestamp;
use regex::Regex;
use std::collections::BTreeMap;

/// Pod annotation: `"false"` blocks scale-down, `"true"` overrides the soft blockers.
pub const SAFE_TO_EVICT: &str = "cluster-autoscaler.kubernetes.io/safe-to-evict";
/// Node annotation that excludes a node from scale-down.
pub const SCALE_DOWN_DISABLED: &str = "cluster-autoscaler.kubernetes.io/scale-down-disabled";

/// A replacement in progress: launch first, drain `node` once the new nodes are ready.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Replacement {
    pub group: String,
    pub kind: RemovalKind,
    pub needed: u32,
    pub started: Timestamp,
}

/// Balance sets: groups of the same shape whose zones should hold equal node counts.
#[derive(Clone, Debug)]
pub(crate) struct BalanceSets {
    /// Set index per group.
    pub of_group: Vec<usize>,
    /// Set names.
    pub names: Vec<String>,
}

impl BalanceSets {
    /// Explicit sets (regexes, first match wins) and automatic ones: same market,
    /// instance types, template labels (zone aside) and taints.
    pub fn build(groups: &[NodeGroup], config: &AutoscalerConfig) -> BalanceSets {
        let explicit: Vec<Regex> = config
            .balance
            .explicit_sets
            .iter()
            .filter_map(|p| Regex::new(p).ok())
            .collect();
        let mut names: Vec<String> = Vec::new();
        let mut index: BTreeMap<String, usize> = BTreeMap::new();
        let mut of_group = Vec::with_capacity(groups.len());
        for g in groups {
            let key = match explicit.iter().position(|r| r.is_match(&g.name)) {
                Some(i) => format!("explicit:{}", config.balance.explicit_sets[i]),
                None => {
                    let mut types: Vec<&str> =
                        g.instance_types.iter().map(|t| t.name.as_str()).collect();
                    types.sort();
                    let labels: Vec<String> = g
                        .template
                        .labels
                        .iter()
                        .filter(|(k, _)| k.as_str() != ZONE_LABEL && !k.contains("zone"))
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    let taints: Vec<String> =
                        g.template.taints.iter().map(|t| t.to_string()).collect();
                    format!(
                        "{}:{}:{}:{}",
                        g.capacity_type,
                        types.join("+"),
                        labels.join(","),
                        taints.join(",")
                    )
                }
            };
            let next = index.len();
            let id = *index.entry(key.clone()).or_insert(next);
            if id == names.len() {
                names.push(key);
            }
            of_group.push(id);
        }
        BalanceSets { of_group, names }
    }

    /// Nodes per zone in each set: registered nodes by their zone label, plus in-flight
    /// nodes of single-zone groups.
    pub fn zone_counts(
        &self,
        snap: &ClusterSnapshot,
        targets: &[u32],
        exclude: &dyn Fn(usize) -> bool,
    ) -> Vec<BTreeMap<String, i64>> {
        let mut counts = vec![BTreeMap::new(); self.names.len()];
        for (gi, g) in snap.groups().iter().enumerate() {
            let set = &mut counts[self.of_group[gi]];
            for z in &g.zones {
                set.entry(z.clone()).or_insert(0);
            }
            let mut registered = 0u32;
            for &ni in snap.nodes_of_group(gi) {
                registered += 1;
                if exclude(ni as usize) {
                    continue;
                }
                if let Some(z) = snap.nodes()[ni as usize].zone() {
                    *set.entry(z.to_string()).or_insert(0) += 1;
                }
            }
            if g.zones.len() == 1 {
                let upcoming = i64::from(targets[gi].saturating_sub(registered));
                *set.entry(g.zones[0].clone()).or_insert(0) += upcoming;
            }
        }
        counts
    }
}

/// Max minus min of a zone count map (0 for fewer than two zones).
pub(crate) fn skew(counts: &BTreeMap<String, i64>) -> u32 {
    if counts.len() < 2 {
        return 0;
    }
    let max = counts.values().max().copied().unwrap_or(0);
    let min = counts.values().min().copied().unwrap_or(0);
    (max - min).max(0) as u32
}

/// The pods that must move for a node to go, or why the node cannot go.
pub(crate) fn movable_pods(
    snap: &ClusterSnapshot,
    node: usize,
    config: &AutoscalerConfig,
    pdb_left: &[u32],
) -> Result<Vec<u32>, String> {
    let n = &snap.nodes()[node];
    if n.annotations.get(SCALE_DOWN_DISABLED).map(String::as_str) == Some("true") {
        return Err(format!("node has annotation {SCALE_DOWN_DISABLED}=true"));
    }
    let mut movable = Vec::new();
    // Disruptions this node would take from each PDB: all its pods must fit the budget.
    let mut wanted: BTreeMap<usize, u32> = BTreeMap::new();
    for &p in snap.pods_on_node(node) {
        let pod = &snap.pods()[p as usize];
        if is_daemon_or_mirror(pod) {
            continue;
        }
        let safe = pod.annotations.get(SAFE_TO_EVICT).map(String::as_str);
        if safe == Some("false") {
            return Err(format!("pod {} has {SAFE_TO_EVICT}=false", pod.key()));
        }
        let pdbs = matching_pdbs(snap, pod);
        for &b in &pdbs {
            *wanted.entry(b).or_insert(0) += 1;
        }
        if let Some(&b) = pdbs.iter().find(|&&b| wanted[&b] > pdb_left[b]) {
            let pdb = &snap.pdbs()[b];
            return Err(format!(
                "pod {} is covered by PDB {}/{} with no disruption allowed",
                pod.key(),
                pdb.namespace,
                pdb.name
            ));
        }
        if safe != Some("true") {
            if pod.owner.is_none() {
                return Err(format!(
                    "pod {} has no controller (set {SAFE_TO_EVICT}=true to allow)",
                    pod.key()
                ));
            }
            if pod.has_local_storage && config.scale_down.skip_nodes_with_local_storage {
                return Err(format!("pod {} uses local storage", pod.key()));
            }
            if pod.namespace == "kube-system"
                && pdbs.is_empty()
                && config.scale_down.skip_nodes_with_system_pods
            {
                return Err(format!("kube-system pod {} has no PDB", pod.key()));
            }
        }
        movable.push(p);
    }
    Ok(movable)
}

/// DaemonSet and mirror (static) pods stay with their node.
pub(crate) fn is_daemon_or_mirror(pod: &Pod) -> bool {
    pod.owner
        .as_ref()
        .is_some_and(|o| o.kind == "DaemonSet" || o.kind == "Node")
}

/// Indexes of the PDBs covering a pod.
pub(crate) fn matching_pdbs(snap: &ClusterSnapshot, pod: &Pod) -> Vec<usize> {
    snap.pdbs()
        .iter()
        .enumerate()
        .filter(|(_, b)| b.namespace == pod.namespace && b.selector.matches(&pod.labels))
        .map(|(i, _)| i)
        .collect()
}

/// Tries to place `pods` on other nodes than `from` (and than `removed`). On success the
/// placements stay in `nodes` and are returned; on failure everything is undone and the
/// pod that found no room is named.
pub(crate) fn try_move(
    pods: &[u32],
    from: usize,
    nodes: &mut [SimNode<'_>],
    removed: &[bool],
    snap: &ClusterSnapshot,
    cursor: &mut usize,
) -> Result<Vec<(u32, usize)>, String> {
    let mut done: Vec<(u32, usize)> = Vec::with_capacity(pods.len());
    let len = nodes.len();
    for &p in pods {
        let pod = &snap.pods()[p as usize];
        let spread = SpreadState::build(pod, nodes, snap);
        let affinity =
            if pod.spec.anti_affinity.is_empty() && snap.bound_anti_affinity_pods().is_empty() {
                AffinityState::default()
            } else {
                AffinityState::build(pod, snap)
            };
        let mut last: Option<Unfit> = None;
        let mut found = None;
        for step in 0..len {
            let k = (*cursor + step) % len;
            // Only real nodes receive moved pods: upcoming ones may never come.
            if k == from || removed.get(k).copied().unwrap_or(false) || nodes[k].existing.is_none()
            {
                continue;
            }
            match full_fit(pod, &nodes[k], snap, &spread, &affinity) {
                Ok(()) => {
                    found = Some(k);
                    break;
                }
                Err(u) => last = Some(u),
            }
        }
        match found {
            Some(k) => {
                nodes[k].place(p, &pod.spec.requests);
                done.push((p, k));
                *cursor = k;
            }
            None => {
                undo(nodes, &done, snap);
                return Err(format!(
                    "pod {} fits no other node ({})",
                    pod.key(),
                    last.map(|u| u.to_string())
                        .unwrap_or_else(|| "no other node".into())
                ));
            }
        }
    }
    Ok(done)
}

/// Reverses placements made by [`try_move`].
pub(crate) fn undo(nodes: &mut [SimNode<'_>], done: &[(u32, usize)], snap: &ClusterSnapshot) {
    for &(p, k) in done.iter().rev() {
        let node = &mut nodes[k];
        if node.placed.last() == Some(&p) {
            node.placed.pop();
            node.free.add(&snap.pods()[p as usize].spec.requests);
            node.free_pods += 1;
        }
    }
}

/// Requested share of the node: `max(cpu, memory)`.
pub(crate) fn utilization(snap: &ClusterSnapshot, node: usize) -> f64 {
    let n = &snap.nodes()[node];
    let req = snap.requested_on_node(node);
    let share = |r: u64, a: u64| if a == 0 { 1.0 } else { r as f64 / a as f64 };
    share(req.cpu_millis, n.allocatable.cpu_millis)
        .max(share(req.memory_bytes, n.allocatable.memory_bytes))
}

/// Price per vCPU-hour of a node, from its group's instance type (for removal order).
pub(crate) fn price_per_cpu(snap: &ClusterSnapshot, node: usize, group: &NodeGroup) -> f64 {
    let n = &snap.nodes()[node];
    let t = n
        .instance_type()
        .and_then(|name| group.instance_types.iter().find(|t| t.name == name))
        .or_else(|| group.instance_types.first());
    t.map(|t| t.price_per_hour / f64::from(t.vcpus.max(1)))
        .unwrap_or(0.0)
}

/// Removal order: on-demand first, then the heaviest zone of the balance set, then the
/// most expensive per vCPU, then the least utilized, then by name.
pub(crate) fn removal_order(
    a: &(usize, f64, f64, i64, CapacityType, &str),
    b: &(usize, f64, f64, i64, CapacityType, &str),
) -> std::cmp::Ordering {
    let od = |c: CapacityType| if c == CapacityType::OnDemand { 0 } else { 1 };
    od(a.4)
        .cmp(&od(b.4))
        .then(b.3.cmp(&a.3))
        .then(b.2.total_cmp(&a.2))
        .then(a.1.total_cmp(&b.1))
        .then(a.5.cmp(b.5))
}
