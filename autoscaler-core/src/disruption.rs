//! Everything that removes or replaces capacity: scale-down (CA semantics, cost- and
//! AZ-aware), on-demand drain-back, zone rebalancing, and balance sets.

use crate::balance::{skew, BalanceSets};
use crate::config::AutoscalerConfig;
use crate::decision::{
    Decision, NodeOutcome, NodeVerdict, PodDeletionCost, RemovalKind, ScaleDownBlocker,
    ScaleUpCause,
};
use crate::expander::{self, OptionScore, PriorityConfig};
use crate::headroom::HeadroomState;
use crate::index::{GroupIdx, NodeIdx, PodIdx};
use crate::model::{
    hpa_scales, CapacityType, NodeGroup, Pod, Taint, TaintEffect, DELETION_COST_SET_BY_US,
    POD_DELETION_COST, SAFE_TO_EVICT,
};
use crate::overprovisioning::Overprovisioning;
use crate::predicates::{full_fit, AffinityState, SimNode, SpreadState, Unfit};
use crate::resources::Resources;
use crate::scaleup::{classify, estimate, GroupPlan, Unavailable, ZoneGuess};
use crate::snapshot::ClusterSnapshot;
use crate::time::{human_duration, Timestamp};
use rustc_hash::FxHashMap;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// A replacement in progress: launch first, drain `node` once the new nodes are ready.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Replacement {
    pub group: String,
    pub kind: RemovalKind,
    pub needed: u32,
    pub started: Timestamp,
    /// The group's nodes when the launch was decided: any other node of the group is a
    /// new one. (Node creation times have whole-second resolution, so "created after
    /// the decision" misses a node that registers within the same second.)
    pub existing: BTreeSet<String>,
}

/// Names of a group's nodes (see [`Replacement::existing`]).
fn node_names(snap: &ClusterSnapshot, group: GroupIdx) -> BTreeSet<String> {
    snap.nodes_of_group(group)
        .iter()
        .map(|&n| snap.nodes()[n].name.clone())
        .collect()
}

/// The pods that must move for a node to go, or why the node cannot go.
pub(crate) fn movable_pods(
    snap: &ClusterSnapshot,
    node: NodeIdx,
    config: &AutoscalerConfig,
    pdb_left: &[u32],
) -> Result<Vec<PodIdx>, ScaleDownBlocker> {
    let n = &snap.nodes()[node];
    if n.scale_down_disabled() {
        return Err(ScaleDownBlocker::ScaleDownDisabled);
    }
    let mut movable = Vec::new();
    // Disruptions this node would take from each PDB: all its pods must fit the budget.
    let mut wanted: BTreeMap<usize, u32> = BTreeMap::new();
    for &p in snap.pods_on_node(node) {
        let pod = &snap.pods()[p];
        if pod.is_daemon_or_mirror() {
            continue;
        }
        let safe = pod.annotations.get(SAFE_TO_EVICT).map(String::as_str);
        if safe == Some("false") {
            return Err(ScaleDownBlocker::NotSafeToEvict { pod: pod.key() });
        }
        let pdbs = matching_pdbs(snap, pod);
        for &b in &pdbs {
            *wanted.entry(b).or_insert(0) += 1;
        }
        if let Some(&b) = pdbs.iter().find(|&&b| wanted[&b] > pdb_left[b]) {
            let pdb = &snap.pdbs()[b];
            return Err(ScaleDownBlocker::PdbExhausted {
                pod: pod.key(),
                pdb: format!("{}/{}", pdb.namespace, pdb.name),
            });
        }
        if safe != Some("true") {
            match &pod.owner {
                None => return Err(ScaleDownBlocker::NoController { pod: pod.key() }),
                Some(o)
                    if config.scale_down.skip_nodes_with_custom_controller_pods
                        && !matches!(
                            o.kind.as_str(),
                            "ReplicaSet" | "ReplicationController" | "StatefulSet" | "Job"
                        ) =>
                {
                    return Err(ScaleDownBlocker::CustomController {
                        pod: pod.key(),
                        kind: o.kind.clone(),
                        name: o.name.clone(),
                    })
                }
                Some(_) => {}
            }
            if pod.has_local_storage && config.scale_down.skip_nodes_with_local_storage {
                return Err(ScaleDownBlocker::LocalStorage { pod: pod.key() });
            }
            if pod.namespace == "kube-system"
                && pdbs.is_empty()
                && config.scale_down.skip_nodes_with_system_pods
            {
                return Err(ScaleDownBlocker::SystemPodWithoutPdb { pod: pod.key() });
            }
        }
        movable.push(p);
    }
    Ok(movable)
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
    pods: &[PodIdx],
    from: NodeIdx,
    nodes: &mut [SimNode<'_>],
    removed: &[bool],
    snap: &ClusterSnapshot,
    cursor: &mut usize,
) -> Result<Vec<(PodIdx, usize)>, ScaleDownBlocker> {
    let mut done: Vec<(PodIdx, usize)> = Vec::with_capacity(pods.len());
    let len = nodes.len();
    for &p in pods {
        let pod = &snap.pods()[p];
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
            if k == from.get()
                || removed.get(k).copied().unwrap_or(false)
                || nodes[k].existing.is_none()
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
                return Err(ScaleDownBlocker::NoRoom {
                    pod: pod.key(),
                    unfit: last
                        .map(|u| u.to_string())
                        .unwrap_or_else(|| "no other node".into()),
                });
            }
        }
    }
    Ok(done)
}

/// Reverses placements made by [`try_move`].
pub(crate) fn undo(nodes: &mut [SimNode<'_>], done: &[(PodIdx, usize)], snap: &ClusterSnapshot) {
    for &(p, k) in done.iter().rev() {
        let node = &mut nodes[k];
        if node.placed.last() == Some(&p) {
            node.placed.pop();
            node.free.add(&snap.pods()[p].spec.requests);
            node.free_pods += 1;
        }
    }
}

/// Requested share of the node: `max(cpu, memory)`.
pub(crate) fn utilization(snap: &ClusterSnapshot, node: NodeIdx) -> f64 {
    let n = &snap.nodes()[node];
    let req = snap.requested_on_node(node);
    let share = |r: u64, a: u64| if a == 0 { 1.0 } else { r as f64 / a as f64 };
    share(req.cpu_millis, n.allocatable.cpu_millis)
        .max(share(req.memory_bytes, n.allocatable.memory_bytes))
}

/// Price per vCPU-hour of a node, from its group's instance type (for removal order).
pub(crate) fn price_per_cpu(snap: &ClusterSnapshot, node: NodeIdx, group: &NodeGroup) -> f64 {
    let n = &snap.nodes()[node];
    let t = n
        .instance_type()
        .and_then(|name| group.instance_types.iter().find(|t| t.name == name))
        .or_else(|| group.instance_types.first());
    // Per node: a mixed group runs both markets.
    t.map(|t| t.price_in(n.capacity_type) / f64::from(t.vcpus.max(1)))
        .unwrap_or(0.0)
}

/// Replicas and measured load per pod controller, to judge what evicting a node's pods
/// does to the replicas left behind.
struct WorkloadReplicas<'s> {
    /// Bound replicas per controller `(namespace, kind, name)`.
    replicas: FxHashMap<(&'s str, &'s str, &'s str), usize>,
    /// CPU utilization (share of requests) per HPA target.
    measured: FxHashMap<(&'s str, &'s str, &'s str), f64>,
}

/// What evicting a node's pods does to the workloads' remaining replicas.
struct EvictionLoad {
    /// The highest utilization a workload's remaining replicas would run at (an
    /// unmeasured workload counts as fully used; evicting every replica: infinite; a
    /// bare pod: infinite).
    worst: f64,
    /// The measured workload (`kind/name`) left above the busy limit, and its load.
    overloads: Option<(String, f64)>,
}

impl<'s> WorkloadReplicas<'s> {
    fn new(snap: &'s ClusterSnapshot) -> Self {
        // Bound replicas per controller, one label set at a time: walking every pod costs
        // a cache miss per pod (40 ms at 150k pods). Pods with the same namespace and
        // labels count for the first one's controller (a ReplicaSet's pods share its
        // pod-template-hash label; a StatefulSet's each have their own set).
        let mut replicas: FxHashMap<(&str, &str, &str), usize> = FxHashMap::default();
        for (_, _, pods) in snap.label_sets() {
            if let Some(key) = pods
                .first()
                .and_then(|&pi| snap.pods()[pi].controller_key())
            {
                *replicas.entry(key).or_insert(0) += pods.len();
            }
        }
        let measured = snap
            .workload_loads()
            .iter()
            .map(|w| {
                let key = (
                    w.namespace.as_str(),
                    w.target_kind.as_str(),
                    w.target_name.as_str(),
                );
                (key, f64::from(w.cpu_utilization_percent) / 100.0)
            })
            .collect();
        WorkloadReplicas { replicas, measured }
    }

    /// The load evicting `pods` leaves on their workloads' other replicas. Pods below
    /// `filler_below` (placeholders) do not count; `busy_above` is the limit past which
    /// a measured workload is named.
    fn eviction_load(
        &self,
        snap: &'s ClusterSnapshot,
        pods: &[PodIdx],
        filler_below: i32,
        busy_above: Option<f64>,
    ) -> EvictionLoad {
        let mut on_node: FxHashMap<(&str, &str, &str), usize> = FxHashMap::default();
        let mut bare = false;
        // Placeholders and other filler below the demand floor cost nothing to evict.
        let pods = pods
            .iter()
            .map(|&pi| &snap.pods()[pi])
            .filter(|p| p.spec.priority >= filler_below);
        for pod in pods {
            match pod.controller_key() {
                Some(key) => *on_node.entry(key).or_insert(0) += 1,
                None => bare = true,
            }
        }
        let mut out = EvictionLoad {
            worst: if bare { f64::INFINITY } else { 0.0 },
            overloads: None,
        };
        for (key, &evicted) in &on_node {
            let running = self.replicas.get(key).copied().unwrap_or(evicted);
            let left = running.saturating_sub(evicted);
            let known = measured_load(&self.measured, *key);
            let after = if left == 0 {
                f64::INFINITY
            } else {
                known.unwrap_or(1.0) * running as f64 / left as f64
            };
            out.worst = out.worst.max(after);
            // Judged only from a measurement, and only for siblings left to overload.
            let busy = busy_above.is_some_and(|limit| after > limit);
            let busiest = out.overloads.as_ref().is_none_or(|(_, b)| after > *b);
            if known.is_some() && left > 0 && busy && busiest {
                out.overloads = Some((format!("{}/{}", key.1, key.2), after));
            }
        }
        out
    }
}

/// Sets each candidate's `eviction_pressure` ([`Candidate::eviction_pressure`]) and,
/// with `busy_above` set, the measured workload it `overloads` past that utilization.
/// The pressure only breaks ties between nodes with pods to evict, so without
/// `busy_above` the pods are counted only when two such candidates exist (not on every
/// round of a quiet cluster). Pods below `filler_below` (placeholders) do not count.
fn fill_eviction_pressure(
    snap: &ClusterSnapshot,
    cands: &mut [Candidate<'_>],
    filler_below: i32,
    busy_above: Option<f64>,
) {
    let with_pods = cands.iter().filter(|c| !c.pods.is_empty()).count();
    if with_pods < if busy_above.is_some() { 1 } else { 2 } {
        return;
    }
    let workloads = WorkloadReplicas::new(snap);
    for c in cands {
        let load = workloads.eviction_load(snap, &c.pods, filler_below, busy_above);
        // Siblings that stay under the mark serve as well either way: price decides.
        c.eviction_pressure = if load.worst <= COMFORTABLE_UTILIZATION {
            0.0
        } else {
            load.worst
        };
        c.overloads = load.overloads;
    }
}

/// The measured load of a pod controller `(namespace, kind, name)`: its own HPA's, or
/// for a ReplicaSet `<deployment>-<hash>` its Deployment's (as
/// [`crate::model::WorkloadLoad::covers`]).
fn measured_load(
    measured: &FxHashMap<(&str, &str, &str), f64>,
    key: (&str, &str, &str),
) -> Option<f64> {
    let (namespace, kind, name) = key;
    if let Some(&u) = measured.get(&key) {
        return Some(u);
    }
    let (deployment, _hash) = name.rsplit_once('-')?;
    let &u = measured.get(&(namespace, "Deployment", deployment))?;
    hpa_scales("Deployment", deployment, kind, name).then_some(u)
}

/// CPU utilization (share of requests) up to which the replicas left by an eviction
/// still serve normally: above typical HPA targets (50-80 %), below saturation.
const COMFORTABLE_UTILIZATION: f64 = 0.85;

/// Per group: its registered nodes and how many of them are on-demand (for mixes).
fn market_counts(snap: &ClusterSnapshot) -> Vec<(u32, u32)> {
    let mut counts = vec![(0u32, 0u32); snap.groups().len()];
    for (ni, n) in snap.node_indexes().zip(snap.nodes()) {
        if let Some(gi) = snap.group_of_node(ni) {
            counts[gi].0 += 1;
            counts[gi].1 += u32::from(n.capacity_type == CapacityType::OnDemand);
        }
    }
    counts
}

/// Whether a mixed group's distribution keeps this node's market at one node fewer
/// (see [`NodeGroup::distribution_keeps`]).
fn mix_keeps(group: &NodeGroup, market: CapacityType, (size, on_demand): (u32, u32)) -> bool {
    let in_market = match market {
        CapacityType::OnDemand => on_demand,
        CapacityType::Spot => size - on_demand,
    };
    group.distribution_keeps(market, in_market, size)
}

/// An on-demand node outside its group's designed mix (a mixed group's base and share):
/// bought because spot ran short, so drain-back returns its pods to spot.
fn fallback_on_demand(snap: &ClusterSnapshot, markets: &[(u32, u32)], ni: NodeIdx) -> bool {
    let by_design = snap.group_of_node(ni).is_some_and(|gi| {
        let (size, on_demand) = markets[gi];
        snap.groups()[gi]
            .mixed()
            .is_some_and(|m| on_demand <= m.on_demand_at(size))
    });
    snap.nodes()[ni].capacity_type == CapacityType::OnDemand && !by_design
}

/// [`try_move`] onto running spot nodes only: where drain-back may send a node's pods
/// without launching a replacement.
fn try_move_to_spot(
    pods: &[PodIdx],
    from: NodeIdx,
    w: &mut Work<'_, '_>,
    snap: &ClusterSnapshot,
) -> Result<Vec<(PodIdx, usize)>, ScaleDownBlocker> {
    let mut closed = w.removed.clone();
    for (ni, n) in snap.node_indexes().zip(snap.nodes()) {
        if n.capacity_type == CapacityType::OnDemand {
            closed[ni] = true;
        }
    }
    try_move(pods, from, w.nodes, &closed, snap, &mut w.cursor)
}

/// Disruption budget window.
const BUDGET_WINDOW: Duration = Duration::from_secs(3600);

/// Removal order: on-demand first, then the heaviest zone of the balance set, then the
/// most expensive per vCPU, then the least utilized, then by name.
pub(crate) fn removal_order(
    a: &(NodeIdx, f64, f64, i64, CapacityType, &str),
    b: &(NodeIdx, f64, f64, i64, CapacityType, &str),
) -> std::cmp::Ordering {
    let od = |c: CapacityType| if c == CapacityType::OnDemand { 0 } else { 1 };
    od(a.4)
        .cmp(&od(b.4))
        .then(b.3.cmp(&a.3))
        .then(b.2.total_cmp(&a.2))
        .then(a.1.total_cmp(&b.1))
        .then(a.5.cmp(b.5))
}

/// What the disruption planning reads of the round and of the engine.
pub(crate) struct Round<'a> {
    pub(crate) snap: &'a ClusterSnapshot,
    pub(crate) now: Timestamp,
    pub(crate) config: &'a AutoscalerConfig,
    pub(crate) priorities: Option<&'a PriorityConfig>,
    pub(crate) plans: &'a [Result<GroupPlan, Unavailable>],
    pub(crate) registered: &'a [u32],
    pub(crate) sets: &'a BalanceSets,
    /// Pods are pending or a scale-up was needed: no voluntary disruption this round.
    pub(crate) unmet_demand: bool,
}

impl Round<'_> {
    fn priority(&self, group: &str) -> Option<i64> {
        self.priorities.and_then(|p| p.priority_of(group))
    }
}

/// The round's working state, shared by every step in turn.
pub(crate) struct Work<'w, 'n> {
    pub(crate) nodes: &'w mut [SimNode<'n>],
    pub(crate) targets: &'w mut [u32],
    pub(crate) actions: &'w mut Vec<Decision>,
    pub(crate) outcomes: &'w mut Vec<NodeOutcome>,
    /// Last scale-up per group, the engine's (replacements add to it; scale-down reads it).
    pub(crate) last_scale_up: &'w mut BTreeMap<String, Timestamp>,
    /// Scale-ups started by replacements, `(group, new target)`, for the engine to note.
    pub(crate) scale_ups: Vec<(String, u32)>,
    /// Snapshot nodes removed (or being removed) by now.
    removed: Vec<bool>,
    /// Disruptions each PDB still allows this round.
    pdb_left: Vec<u32>,
    /// Where the search for room for moved pods resumes.
    cursor: usize,
    /// Balance sets scale-down takes nodes from this round.
    sets_shrinking: BTreeSet<usize>,
}

impl<'w, 'n> Work<'w, 'n> {
    /// Lends the round's outputs to the disruption steps.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        r: &Round<'_>,
        state: &DisruptionState,
        nodes: &'w mut [SimNode<'n>],
        targets: &'w mut [u32],
        actions: &'w mut Vec<Decision>,
        outcomes: &'w mut Vec<NodeOutcome>,
        last_scale_up: &'w mut BTreeMap<String, Timestamp>,
        interrupted: &[NodeIdx],
    ) -> Self {
        let mut removed = vec![false; nodes.len()];
        for (ni, n) in r.snap.node_indexes().zip(r.snap.nodes()) {
            removed[ni] = state.removing.contains_key(&n.name);
        }
        for &ni in interrupted {
            removed[ni] = true;
        }
        Work {
            nodes,
            targets,
            actions,
            outcomes,
            last_scale_up,
            scale_ups: Vec::new(),
            removed,
            pdb_left: r
                .snap
                .pdbs()
                .iter()
                .map(|b| b.disruptions_allowed)
                .collect(),
            cursor: 0,
            sets_shrinking: BTreeSet::new(),
        }
    }

    /// Counts the evictions of `pods` against their PDBs.
    fn spend_pdbs(&mut self, snap: &ClusterSnapshot, pods: &[PodIdx]) {
        for &p in pods {
            for b in matching_pdbs(snap, &snap.pods()[p]) {
                self.pdb_left[b] = self.pdb_left[b].saturating_sub(1);
            }
        }
    }

    fn blocked(&mut self, node: &str, blocker: ScaleDownBlocker) {
        self.outcomes.push(NodeOutcome {
            node: node.to_string(),
            verdict: NodeVerdict::ScaleDownBlocked { blocker },
        });
    }
}

/// Free CPU and memory among the nodes that stay, for `--scale-down-spare-nodes`:
/// counted once per round, then reduced as removals are accepted (counting it again
/// for every candidate cost O(candidates x pods)). Placeholder pods (below the
/// headroom's demand floor) count as free room. Room is kept per taint class: an idle
/// dedicated pool (a GPU or batch group behind a `NoSchedule` taint) is no spare room
/// for the general nodes' pods.
struct SpareRoom {
    spare: u32,
    free: BTreeMap<String, Resources>,
}

/// Room taken from one taint class.
type ClassRoom = (String, Resources);

impl SpareRoom {
    /// Counted from the simulation as it stands (removals and moves made so far).
    fn new(r: &Round<'_>, w: &Work<'_, '_>) -> SpareRoom {
        let mut free: BTreeMap<String, Resources> = BTreeMap::new();
        for ni in r.snap.node_indexes() {
            let n = &w.nodes[ni.get()];
            if !w.removed[ni] && n.schedulable {
                free.entry(taint_class(n.taints))
                    .or_default()
                    .add(&Self::on(r, w, ni));
            }
        }
        SpareRoom {
            spare: r.config.scale_down.spare_nodes,
            free,
        }
    }

    /// CPU and memory only: the room is judged in those two.
    fn cpu_and_memory(res: &Resources) -> Resources {
        Resources::new(res.cpu_millis, res.memory_bytes)
    }

    /// The room node `ni` holds (its free room and its placeholders' requests).
    fn on(r: &Round<'_>, w: &Work<'_, '_>, ni: NodeIdx) -> Resources {
        let n = &w.nodes[ni.get()];
        let mut room = Self::cpu_and_memory(&n.free);
        let floor = r.config.headroom.demand_priority_floor;
        for &p in n.bound {
            let pod = &r.snap.pods()[p];
            if pod.spec.priority < floor {
                room.add(&Self::cpu_and_memory(&pod.spec.requests));
            }
        }
        room
    }

    /// The room removing `ni` takes away, by taint class: its own (first, under its
    /// class), and what its pods (`done`, already moved in `w`) took on the nodes that
    /// stay.
    fn leaving(
        r: &Round<'_>,
        w: &Work<'_, '_>,
        ni: NodeIdx,
        done: &[(PodIdx, usize)],
    ) -> Vec<ClassRoom> {
        let mut gone = vec![(taint_class(w.nodes[ni.get()].taints), Self::on(r, w, ni))];
        for &(p, k) in done {
            let requests = Self::cpu_and_memory(&r.snap.pods()[p].spec.requests);
            gone.push((taint_class(w.nodes[k].taints), requests));
        }
        gone
    }

    /// Whether the nodes of `ni`'s taint class left after removing it keep `spare`
    /// nodes of its size (`leaving` as [`SpareRoom::leaving`] gives it: `ni`'s first).
    fn check(
        &self,
        r: &Round<'_>,
        ni: NodeIdx,
        leaving: &[ClassRoom],
    ) -> Result<(), ScaleDownBlocker> {
        let class = &leaving[0].0;
        let mut free = self.free.get(class).cloned().unwrap_or_default();
        for (c, room) in leaving {
            if c == class {
                free.saturating_sub(room);
            }
        }
        let size = &r.snap.nodes()[ni].allocatable;
        let needed = Resources::new(
            size.cpu_millis.saturating_mul(u64::from(self.spare)),
            size.memory_bytes.saturating_mul(u64::from(self.spare)),
        );
        if free.cpu_millis >= needed.cpu_millis && free.memory_bytes >= needed.memory_bytes {
            return Ok(());
        }
        Err(ScaleDownBlocker::SpareRoom {
            spare_nodes: self.spare,
            free,
            needed,
        })
    }

    /// A removal was accepted: its room is gone.
    fn take(&mut self, leaving: &[ClassRoom]) {
        for (class, room) in leaving {
            if let Some(free) = self.free.get_mut(class) {
                free.saturating_sub(room);
            }
        }
    }
}

/// The scheduling taints (`NoSchedule`, `NoExecute`) of a node, as one key: nodes with
/// the same key take the same pods. `PreferNoSchedule` only steers the scheduler.
fn taint_class(taints: &[Taint]) -> String {
    let mut hard: Vec<String> = taints
        .iter()
        .filter(|t| t.effect != TaintEffect::PreferNoSchedule)
        .map(Taint::to_string)
        .collect();
    hard.sort_unstable();
    hard.join(",")
}

/// Workloads (namespace, kind, name) with a pod that started less than `settle` ago.
fn settling_workloads(
    snap: &ClusterSnapshot,
    now: Timestamp,
    settle: Duration,
) -> BTreeSet<(&str, &str, &str)> {
    if settle.is_zero() {
        return BTreeSet::new();
    }
    snap.pods()
        .iter()
        .filter(|p| now.since(p.created_at) < settle)
        .filter_map(|p| p.controller_key())
        .collect()
}

/// The first of `pods` whose workload is settling: (`namespace/name`, `kind/name`).
fn settling_pod(
    snap: &ClusterSnapshot,
    pods: &[PodIdx],
    settling: &BTreeSet<(&str, &str, &str)>,
) -> Option<(String, String)> {
    pods.iter().find_map(|&p| {
        let pod = &snap.pods()[p];
        let key = pod.controller_key()?;
        settling
            .contains(&key)
            .then(|| (pod.key(), format!("{}/{}", key.1, key.2)))
    })
}

/// The disruption steps, in the order each round runs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Replacements whose new nodes are ready: drain the old node.
    FinishReplacements,
    /// Old on-demand nodes go back to spot once spot is available.
    DrainBack,
    /// Underutilized nodes whose pods fit elsewhere.
    ScaleDown,
    /// Lasting zone skew that scale-down cannot heal: replace a node.
    Rebalance,
    /// Placeholder replicas for headroom.
    Overprovisioning,
}

impl Step {
    /// Every step, in order.
    pub(crate) const ORDER: [Step; 5] = [
        Step::FinishReplacements,
        Step::DrainBack,
        Step::ScaleDown,
        Step::Rebalance,
        Step::Overprovisioning,
    ];
}

/// A scale-down candidate: a node under the threshold whose pods could move.
struct Candidate<'a> {
    node: NodeIdx,
    group: GroupIdx,
    utilization: f64,
    price_per_cpu: f64,
    /// Nodes in its zone of its balance set.
    zone_count: i64,
    capacity_type: CapacityType,
    name: &'a str,
    pods: Vec<PodIdx>,
    /// Unready for longer than `scale-down-unready-time`.
    long_unready: bool,
    /// In a mixed group, AWS's distribution would remove a node of the other market
    /// first: removing this one leaves the group off its mix, so it goes last.
    mix_keeps: bool,
    /// An on-demand node outside its group's designed mix ([`fallback_on_demand`]).
    fallback_on_demand: bool,
    /// The utilization the busiest workload among its pods would run at on its
    /// remaining replicas while the evicted ones restart ([`fill_eviction_pressure`]):
    /// its HPA's measured CPU utilization times running / remaining replicas (an
    /// unmeasured workload counts as fully used, so evicting one of two replicas rates
    /// 2.0 and one of twenty 1.05). Up to [`COMFORTABLE_UTILIZATION`] it is 0: a
    /// workload at 25 % losing one of two replicas does not order the removals.
    eviction_pressure: f64,
    /// A measured workload (`kind/name`) whose remaining replicas would run above
    /// [`COMFORTABLE_UTILIZATION`] while the evicted ones restart, and that utilization.
    overloads: Option<(String, f64)>,
}

impl Candidate<'_> {
    /// Long-unready nodes first, then empty ones (no drain needed), then
    /// [`removal_order`].
    fn order(&self, other: &Self) -> std::cmp::Ordering {
        let od = |c: CapacityType| c == CapacityType::OnDemand;
        self.long_unready
            .cmp(&other.long_unready)
            .then(self.pods.is_empty().cmp(&other.pods.is_empty()))
            .then(other.mix_keeps.cmp(&self.mix_keeps))
            .then(od(self.capacity_type).cmp(&od(other.capacity_type)))
            .reverse()
            // Fewest evictions next (as cluster-autoscaler), then the evictions whose
            // siblings absorb the load best, then removal_order.
            .then(self.pods.len().cmp(&other.pods.len()))
            .then(self.eviction_pressure.total_cmp(&other.eviction_pressure))
            .then_with(|| removal_order(&self.key(), &other.key()))
    }

    fn key(&self) -> (NodeIdx, f64, f64, i64, CapacityType, &str) {
        (
            self.node,
            self.utilization,
            self.price_per_cpu,
            self.zone_count,
            self.capacity_type,
            self.name,
        )
    }
}

/// A removal decided and not yet done (the node is still in the snapshot).
#[derive(Clone, Copy, Debug)]
pub(crate) struct InFlight {
    /// When it was decided.
    pub(crate) at: Timestamp,
    /// Why.
    pub(crate) kind: RemovalKind,
    /// Whether it had pods to evict: only such removals count against
    /// `max_drain_parallelism` (an empty node is not drained, as in CA).
    pub(crate) drains: bool,
}

/// What disruption planning remembers between rounds.
#[derive(Clone, Debug, Default)]
pub(crate) struct DisruptionState {
    /// Node -> since when it has been unneeded.
    pub(crate) unneeded_since: BTreeMap<String, Timestamp>,
    /// Nodes we decided to remove, until they leave the snapshot.
    pub(crate) removing: BTreeMap<String, InFlight>,
    /// Replacements in progress, by the node to drain.
    pub(crate) replacements: BTreeMap<String, Replacement>,
    /// No new drain-back before then (a replacement just failed).
    pub(crate) drain_back_paused_until: Option<Timestamp>,
    /// Last scale-down per group (for `scale-down-delay-after-delete`).
    pub(crate) last_scale_down: BTreeMap<String, Timestamp>,
    /// Node removals reported failed, resolved to groups in the next round.
    pub(crate) removal_failures: Vec<(String, Timestamp)>,
    /// Last removal failure per group.
    pub(crate) last_removal_failure: BTreeMap<String, Timestamp>,
    /// Since when each balance set has been skewed above the threshold.
    pub(crate) skew_since: BTreeMap<String, Timestamp>,
    /// Last scale-up for pending pods per group (rebalancing waits for rest).
    pub(crate) last_demand_scale_up: BTreeMap<String, Timestamp>,
    /// Pods evicted (or to be) by rebalancing and drain-back per balance set, with
    /// when: the disruption budget's last hour.
    pub(crate) voluntary_evictions: BTreeMap<String, Vec<(Timestamp, u32)>>,
    pub(crate) overprovisioning: Option<Overprovisioning>,
    pub(crate) last_overprovisioning: Option<u32>,
    /// Headroom sizing from demand growth and measured boot time.
    pub(crate) headroom: HeadroomState,
    /// This round's pod deletion-cost changes ([`deletion_costs`]).
    pub(crate) deletion_costs: Vec<PodDeletionCost>,
}

impl DisruptionState {
    /// A removal of `node` decided now: remembered as in flight until the node leaves
    /// the snapshot, and returned as the decision to carry out.
    pub(crate) fn decide_removal(
        &mut self,
        node: &str,
        group: String,
        kind: RemovalKind,
        drain: bool,
        reason: String,
        now: Timestamp,
    ) -> Decision {
        self.removing.insert(
            node.to_string(),
            InFlight {
                at: now,
                kind,
                drains: drain,
            },
        );
        Decision::RemoveNode {
            node: node.to_string(),
            group,
            kind,
            drain,
            reason,
        }
    }

    /// Runs every step of [`Step::ORDER`] against the round.
    pub(crate) fn plan(&mut self, r: &Round<'_>, w: &mut Work<'_, '_>) {
        for a in w.actions.iter() {
            if let Decision::ScaleUp {
                group,
                cause: ScaleUpCause::PendingPods | ScaleUpCause::ZoneBalance,
                ..
            } = a
            {
                self.last_demand_scale_up.insert(group.clone(), r.now);
            }
        }
        self.headroom.note_scale_ups(w.actions, r.now);
        for spent in self.voluntary_evictions.values_mut() {
            spent.retain(|(at, _)| r.now.since(*at) < BUDGET_WINDOW);
        }
        self.voluntary_evictions
            .retain(|_, spent| !spent.is_empty());
        for step in Step::ORDER {
            match step {
                Step::FinishReplacements => self.finish_replacements(r, w),
                Step::DrainBack => {
                    let paused = self.drain_back_paused_until.is_some_and(|t| r.now < t);
                    if !r.config.drain_back.after.is_zero() && !r.unmet_demand && !paused {
                        self.start_drain_backs(r, w);
                    }
                }
                Step::ScaleDown => {
                    if r.config.scale_down.enabled {
                        self.scale_down(r, w);
                    }
                }
                Step::Rebalance => {
                    let b = &r.config.balance;
                    if b.enabled && b.rebalance && !r.unmet_demand {
                        self.start_rebalances(r, w);
                    }
                }
                Step::Overprovisioning => self.overprovision(r, w),
            }
        }
    }

    /// Replacements in progress: drain once the new nodes are ready.
    fn finish_replacements(&mut self, r: &Round<'_>, w: &mut Work<'_, '_>) {
        let (snap, now) = (r.snap, r.now);
        let groups = snap.groups();
        let reverted: BTreeSet<String> = w
            .actions
            .iter()
            .filter_map(|a| match a {
                Decision::RevertScaleUp { group, .. } => Some(group.clone()),
                _ => None,
            })
            .collect();
        let names: Vec<String> = self.replacements.keys().cloned().collect();
        for name in names {
            let rep = self.replacements[&name].clone();
            let (Some(ni), Some(gi)) = (snap.node_index(&name), snap.group_index(&rep.group))
            else {
                self.replacements.remove(&name);
                continue;
            };
            if reverted.contains(&rep.group)
                || r.plans[gi].is_err()
                || now.since(rep.started)
                    > r.config.max_node_provision_time_for(&snap.groups()[gi]) * 2
            {
                // The replacement failed: keep the node, try again after the cool-off.
                // Drain-backs pause cluster-wide meanwhile, so a spot shortage does not
                // turn into a launch/revert cycle across every spot group.
                if rep.kind == RemovalKind::DrainBack {
                    self.drain_back_paused_until = Some(now + r.config.cool_off.initial);
                }
                self.replacements.remove(&name);
                continue;
            }
            let ready_new = snap
                .nodes_of_group(gi)
                .iter()
                .filter(|&&n| {
                    let n = &snap.nodes()[n];
                    n.ready && !rep.existing.contains(&n.name)
                })
                .count() as u32;
            if ready_new < rep.needed {
                continue;
            }
            let node_group = snap.group_of_node(ni);
            if node_group.is_some_and(|ngi| w.targets[ngi] <= groups[ngi].min_size) {
                // Its group is at its minimum: removing would be refused by AWS.
                self.replacements.remove(&name);
                continue;
            }
            let moved = movable_pods(snap, ni, r.config, &w.pdb_left).and_then(|pods| {
                try_move(&pods, ni, w.nodes, &w.removed, snap, &mut w.cursor).map(|_| pods)
            });
            match moved {
                Ok(pods) => {
                    w.spend_pdbs(snap, &pods);
                    let n = &snap.nodes()[ni];
                    let reason = format!(
                        "{:?}: {} replacement node(s) of {} are ready; its {} pod(s) fit elsewhere",
                        rep.kind,
                        rep.needed,
                        rep.group,
                        pods.len()
                    );
                    let group = n.group.clone().unwrap_or_default();
                    let drain = !pods.is_empty();
                    let decision = self.decide_removal(&name, group, rep.kind, drain, reason, now);
                    w.actions.push(decision);
                    w.removed[ni] = true;
                    if let Some(ngi) = node_group {
                        w.targets[ngi] -= 1;
                    }
                    self.replacements.remove(&name);
                }
                Err(why) => w.blocked(
                    &name,
                    ScaleDownBlocker::ReplacementNotDrained(Box::new(why)),
                ),
            }
        }
    }

    /// Balance sets in which a group scaled up (or down) too recently to scale down.
    fn scale_down_blocked_sets(&self, r: &Round<'_>, w: &Work<'_, '_>) -> BTreeSet<usize> {
        let sd = &r.config.scale_down;
        let recent = |map: &BTreeMap<String, Timestamp>, name: &str, delay| {
            map.get(name).is_some_and(|t| r.now.since(*t) < delay)
        };
        let groups = r.snap.groups();
        let after_add = r
            .snap
            .group_indexes()
            .zip(groups)
            .filter(|(_, g)| recent(w.last_scale_up, &g.name, sd.delay_after_add))
            .map(|(gi, _)| r.sets.of_group[gi]);
        let after_delete = r
            .snap
            .group_indexes()
            .zip(groups)
            .filter(|(_, g)| recent(&self.last_scale_down, &g.name, sd.delay_after_delete))
            .map(|(gi, _)| r.sets.of_group[gi]);
        after_add.chain(after_delete).collect()
    }

    /// Nodes under the utilization threshold (or unready too long) whose pods could
    /// move, in removal order; forgets the unneeded-since of every other node.
    /// Also returns the balance sets' zone counts it ordered them by.
    fn scale_down_candidates<'s>(
        &mut self,
        r: &Round<'s>,
        w: &mut Work<'_, '_>,
    ) -> (Vec<Candidate<'s>>, Vec<BTreeMap<String, i64>>) {
        let (snap, now) = (r.snap, r.now);
        let counts = r.sets.zone_counts(snap, w.targets, &|ni| w.removed[ni]);
        let markets = market_counts(snap);
        let mut cands = Vec::new();
        let mut seen = BTreeSet::new();
        // Read from every pod: built on the first candidate with pods to evict.
        let mut settling: Option<BTreeSet<(&str, &str, &str)>> = None;
        for (ni, n) in snap.node_indexes().zip(snap.nodes()) {
            let Some(gi) = snap.group_of_node(ni) else {
                continue;
            };
            let sd = &r.config.scale_down.for_group(&snap.groups()[gi]);
            let unready_for =
                (!n.ready).then(|| now.since(n.ready_changed_at.unwrap_or(n.created_at)));
            let long_unready = unready_for.is_some_and(|d| d >= sd.unready_time);
            if !w.nodes[ni].placed.is_empty() {
                // Pending pods (often the ones a drain just evicted) go here this round:
                // not a candidate now, but its unneeded time keeps running, as in
                // cluster-autoscaler, or every drain would restart its neighbours' clocks.
                seen.insert(n.name.clone());
                continue;
            }
            if (!n.ready && !long_unready)
                || n.unschedulable
                || w.removed[ni]
                || self.replacements.contains_key(&n.name)
            {
                continue;
            }
            seen.insert(n.name.clone());
            if utilization(snap, ni) > sd.utilization_threshold && !long_unready {
                self.unneeded_since.remove(&n.name);
                continue;
            }
            match movable_pods(snap, ni, r.config, &w.pdb_left) {
                Err(reason) => {
                    // A PDB at zero is transient (a drain elsewhere is under way): the
                    // node stays unneeded and waits its turn rather than starting over.
                    if !matches!(reason, ScaleDownBlocker::PdbExhausted { .. }) {
                        self.unneeded_since.remove(&n.name);
                    }
                    w.blocked(&n.name, reason);
                }
                Ok(pods) => {
                    let waiting = if pods.is_empty() {
                        None
                    } else {
                        let set = settling.get_or_insert_with(|| {
                            settling_workloads(snap, now, r.config.scale_down.workload_settle)
                        });
                        settling_pod(snap, &pods, set)
                    };
                    if let Some((pod, workload)) = waiting {
                        // Transient, like a PDB at zero: the unneeded time keeps running.
                        w.blocked(
                            &n.name,
                            ScaleDownBlocker::WorkloadSettling { pod, workload },
                        );
                    } else {
                        cands.push(Candidate {
                            eviction_pressure: f64::INFINITY,
                            overloads: None,
                            node: ni,
                            group: gi,
                            utilization: utilization(snap, ni),
                            price_per_cpu: price_per_cpu(snap, ni, &snap.groups()[gi]),
                            zone_count: n
                                .zone()
                                .and_then(|z| counts[r.sets.of_group[gi]].get(z))
                                .copied()
                                .unwrap_or(0),
                            capacity_type: n.capacity_type,
                            name: n.name.as_str(),
                            pods,
                            long_unready,
                            mix_keeps: mix_keeps(&snap.groups()[gi], n.capacity_type, markets[gi]),
                            fallback_on_demand: fallback_on_demand(snap, &markets, ni),
                        });
                    }
                }
            }
        }
        self.unneeded_since.retain(|name, _| seen.contains(name));
        let busy = r.config.scale_down.busy_workload_utilization;
        fill_eviction_pressure(
            snap,
            &mut cands,
            r.config.headroom.demand_priority_floor,
            (busy > 0.0).then_some(busy),
        );
        cands.sort_by(|a, b| a.order(b));
        (cands, counts)
    }

    /// Scale-down: removes the candidates unneeded long enough, within the bounds.
    fn scale_down(&mut self, r: &Round<'_>, w: &mut Work<'_, '_>) {
        let (snap, now, sd) = (r.snap, r.now, &r.config.scale_down);
        let blocked_sets = self.scale_down_blocked_sets(r, w);
        let (cands, mut counts) = self.scale_down_candidates(r, w);
        let order = deletion_order(r, &cands, &counts, &w.removed);
        // Free room among the nodes that stay, counted when a drain first needs it.
        let mut spare: Option<SpareRoom> = None;
        let mut empty_removed = 0u32;
        let mut drains = self.scale_down_drains_running();
        for c in cands {
            let (ni, gi) = (c.node, c.group);
            if !w.nodes[ni].placed.is_empty() {
                // Pods of a node removed earlier this round were moved here.
                continue;
            }
            let set = r.sets.of_group[gi];
            let zone = snap.nodes()[ni].zone();
            let unbalances = (!c.pods.is_empty() && !c.long_unready && r.config.balance.enabled)
                .then(|| removal_unbalances(r, &counts[set], zone))
                .flatten();
            // A workload too busy to lose these pods: wait (bounded) for its load to fall
            // or its HPA to add replicas; the unneeded time keeps running.
            if let (Some((workload, utilization)), false) = (&c.overloads, c.long_unready) {
                let hold = sd.for_group(&snap.groups()[gi]).unneeded_time + sd.busy_workload_hold;
                let since = *self.unneeded_since.entry(c.name.to_string()).or_insert(now);
                if now.since(since) < hold {
                    w.blocked(
                        c.name,
                        ScaleDownBlocker::WorkloadBusy {
                            workload: workload.clone(),
                            utilization_percent: (utilization * 100.0).round() as u32,
                            limit_percent: (sd.busy_workload_utilization * 100.0).round() as u32,
                        },
                    );
                    continue;
                }
            }
            if let Some(why) = unbalances {
                // Evicting to skew the zones only to evict again to rebalance them. The
                // node stays unneeded: once the zones even out it goes without waiting.
                self.unneeded_since.entry(c.name.to_string()).or_insert(now);
                w.blocked(c.name, why);
                continue;
            }
            let checked = sd.spare_nodes > 0 && !c.pods.is_empty() && !c.long_unready;
            if checked && spare.is_none() {
                // Counted before this candidate's pods move (most rounds drain nothing).
                spare = Some(SpareRoom::new(r, w));
            }
            let (kind, moved) = self.move_pods(r, w, &c, set);
            let done = match moved {
                Err(why) => {
                    self.unneeded_since.remove(c.name);
                    w.blocked(c.name, why);
                    continue;
                }
                Ok(done) => done,
            };
            let leaving = spare.as_ref().map(|_| SpareRoom::leaving(r, w, ni, &done));
            if let (Some(room), Some(gone), RemovalKind::ScaleDown, true) =
                (&spare, &leaving, kind, checked)
            {
                if let Err(why) = room.check(r, ni, gone) {
                    // Held, not refused: its unneeded time keeps running, and it goes as
                    // soon as demand fills the room elsewhere or drops.
                    undo(w.nodes, &done, snap);
                    self.unneeded_since.entry(c.name.to_string()).or_insert(now);
                    w.blocked(c.name, why);
                    continue;
                }
            }
            w.sets_shrinking.insert(r.sets.of_group[gi]);
            let since = *self.unneeded_since.entry(c.name.to_string()).or_insert(now);
            w.outcomes.push(NodeOutcome {
                node: c.name.to_string(),
                verdict: NodeVerdict::Unneeded { since },
            });
            let g = &snap.groups()[gi];
            let unneeded_time = sd.for_group(g).unneeded_time;
            let bounded = if c.pods.is_empty() {
                empty_removed < sd.max_empty_bulk_delete
            } else {
                drains < sd.max_drain_parallelism
            };
            let failure_wait = self
                .last_removal_failure
                .get(&g.name)
                .is_some_and(|t| now.since(*t) < sd.delay_after_failure);
            // Earlier removals this round may have used up a PDB this node needs.
            let pdb_ok = movable_pods(snap, ni, r.config, &w.pdb_left).is_ok();
            if (now.since(since) >= unneeded_time || c.long_unready)
                && pdb_ok
                && w.targets[gi] > g.min_size
                && !blocked_sets.contains(&r.sets.of_group[gi])
                && !failure_wait
                && bounded
            {
                if kind == RemovalKind::DrainBack {
                    self.spend_budget(r, set, c.pods.len());
                }
                self.remove_unneeded(r, w, &c, since, kind);
                if let (Some(room), Some(gone)) = (&mut spare, &leaving) {
                    room.take(gone);
                }
                if let Some(n) = zone.and_then(|z| counts[set].get_mut(z)) {
                    *n -= 1;
                }
                if c.pods.is_empty() {
                    empty_removed += 1;
                } else {
                    drains += 1;
                }
            } else {
                undo(w.nodes, &done, snap);
            }
        }
        self.deletion_costs = deletion_costs(snap, &order, &w.removed, sd.deletion_cost_nodes);
    }

    /// Scale-down drains under way (of nodes that had pods).
    fn scale_down_drains_running(&self) -> u32 {
        self.removing
            .values()
            .filter(|f| f.kind == RemovalKind::ScaleDown && f.drains)
            .count() as u32
    }

    /// Moves a candidate's pods in the simulation, as its removal would: onto running
    /// spot nodes when the node is an on-demand fallback, since removing it ends the
    /// fallback, which is drain-back's work and spends its budget while the budget lasts
    /// (past it, an ordinary scale-down); otherwise anywhere they fit.
    fn move_pods(
        &self,
        r: &Round<'_>,
        w: &mut Work<'_, '_>,
        c: &Candidate<'_>,
        set: usize,
    ) -> (RemovalKind, Result<Vec<(PodIdx, usize)>, ScaleDownBlocker>) {
        let back_to_spot = !c.pods.is_empty()
            && !c.long_unready
            && !r.unmet_demand
            && !r.config.drain_back.after.is_zero()
            && c.fallback_on_demand
            && self.budget_allows(r, set, c.pods.len());
        if back_to_spot {
            if let Ok(done) = try_move_to_spot(&c.pods, c.node, w, r.snap) {
                return (RemovalKind::DrainBack, Ok(done));
            }
        }
        let moved = try_move(&c.pods, c.node, w.nodes, &w.removed, r.snap, &mut w.cursor);
        (RemovalKind::ScaleDown, moved)
    }

    /// Removes one scale-down candidate (its pods were moved in the simulation).
    fn remove_unneeded(
        &mut self,
        r: &Round<'_>,
        w: &mut Work<'_, '_>,
        c: &Candidate<'_>,
        since: Timestamp,
        kind: RemovalKind,
    ) {
        let (snap, now) = (r.snap, r.now);
        let (ni, gi) = (c.node, c.group);
        let n = &snap.nodes()[ni];
        let g = &snap.groups()[gi];
        let sd = &r.config.scale_down.for_group(g);
        let reason = if kind == RemovalKind::DrainBack {
            format!(
                "drain-back: on-demand node unneeded for {} at {:.0}% utilization ({}); its {} pod(s) fit on running spot nodes: drained without a replacement",
                human_duration(now.since(since)),
                c.utilization * 100.0,
                n.zone().unwrap_or("?"),
                c.pods.len()
            )
        } else if c.long_unready {
            format!(
                "unready for more than scale-down-unready-time {}; its {} pod(s) fit elsewhere",
                human_duration(sd.unready_time),
                c.pods.len()
            )
        } else {
            format!(
                "unneeded for {} at {:.0}% utilization ({} {}, {:.4} $/vCPU-h); its {} pod(s) fit elsewhere",
                human_duration(now.since(since)),
                c.utilization * 100.0,
                n.capacity_type,
                n.zone().unwrap_or("?"),
                price_per_cpu(snap, ni, g),
                c.pods.len()
            )
        };
        self.last_scale_down.insert(g.name.clone(), now);
        self.remove_now(r, w, ni, gi, &c.pods, kind, reason);
    }

    /// Decides the removal of node `ni` of group `gi` now. Its `pods` were moved in the
    /// simulation: they spend their PDBs, and the node counts as gone from here on.
    #[allow(clippy::too_many_arguments)]
    fn remove_now(
        &mut self,
        r: &Round<'_>,
        w: &mut Work<'_, '_>,
        ni: NodeIdx,
        gi: GroupIdx,
        pods: &[PodIdx],
        kind: RemovalKind,
        reason: String,
    ) {
        let snap = r.snap;
        w.spend_pdbs(snap, pods);
        let n = &snap.nodes()[ni];
        let group = snap.groups()[gi].name.clone();
        let decision = self.decide_removal(&n.name, group, kind, !pods.is_empty(), reason, r.now);
        w.actions.push(decision);
        w.removed[ni] = true;
        w.targets[gi] -= 1;
        self.unneeded_since.remove(&n.name);
    }

    /// Placeholder replicas: the overprovisioning rule's (sized from the schedulable
    /// nodes) plus the headroom that demand growth and boot time call for.
    fn overprovision(&mut self, r: &Round<'_>, w: &mut Work<'_, '_>) {
        let headroom = &r.config.headroom;
        if self.overprovisioning.is_none() && !headroom.enabled {
            return;
        }
        let schedulable = r
            .snap
            .nodes()
            .iter()
            .filter(|n| n.ready && !n.unschedulable && !self.removing.contains_key(&n.name));
        let (mut millis, mut count) = (0u64, 0u64);
        for n in schedulable {
            let c = if n.capacity.is_zero() {
                &n.allocatable
            } else {
                &n.capacity
            };
            millis += c.cpu_millis;
            count += 1;
        }
        let mut replicas = 0u32;
        let mut why = Vec::new();
        if let Some(rule) = &self.overprovisioning {
            let (n, text) = rule.replicas(millis / 1000, count);
            replicas += n;
            why.push(text);
        }
        if headroom.enabled {
            let sized = self.headroom.size(headroom, r.snap, r.now, millis);
            replicas = replicas.saturating_add(sized.replicas);
            why.push(sized.reason);
        }
        if self.last_overprovisioning != Some(replicas) {
            w.actions.push(Decision::SetOverprovisioning {
                replicas,
                reason: why.join("; "),
            });
            self.last_overprovisioning = Some(replicas);
        }
    }

    /// Old on-demand nodes that drain-back may replace, oldest first.
    fn drain_back_nodes(&self, r: &Round<'_>, w: &Work<'_, '_>) -> Vec<NodeIdx> {
        let snap = r.snap;
        let markets = market_counts(snap);
        let mut od_nodes: Vec<NodeIdx> = snap
            .node_indexes()
            .filter(|&ni| {
                let n = &snap.nodes()[ni];
                fallback_on_demand(snap, &markets, ni)
                    && n.ready
                    && !n.unschedulable
                    && !w.removed[ni]
                    && !self.replacements.contains_key(&n.name)
                    && r.now.since(n.created_at) >= r.config.drain_back.after
            })
            .collect();
        od_nodes.sort_by_key(|&ni| (snap.nodes()[ni].created_at, ni));
        od_nodes
    }

    /// Starts replacing old on-demand nodes with spot, within the disruption budget.
    fn start_drain_backs(&mut self, r: &Round<'_>, w: &mut Work<'_, '_>) {
        let snap = r.snap;
        let groups = snap.groups();
        for ni in self.drain_back_nodes(r, w) {
            let n = &snap.nodes()[ni];
            let Some(od_gi) = snap.group_of_node(ni) else {
                continue;
            };
            let od_group = &groups[od_gi];
            let in_flight = self
                .replacements
                .iter()
                .filter(|(name, rep)| {
                    rep.kind == RemovalKind::DrainBack
                        && snap.node_index(name).and_then(|i| snap.group_of_node(i)) == Some(od_gi)
                })
                .count() as u32;
            if in_flight >= r.config.drain_back.budget.for_size(r.registered[od_gi])
                || w.targets[od_gi] <= od_group.min_size + in_flight
            {
                continue;
            }
            let Ok(pods) = movable_pods(snap, ni, r.config, &w.pdb_left) else {
                continue;
            };
            if pods.is_empty() {
                continue; // an empty node is scale-down's job
            }
            let set = r.sets.of_group[od_gi];
            if !self.budget_allows(r, set, pods.len()) {
                continue;
            }
            // Consolidate first: pods that fit on the spot nodes already running need
            // no replacement launched.
            if try_move_to_spot(&pods, ni, w, snap).is_ok() {
                self.spend_budget(r, set, pods.len());
                let reason = format!(
                    "drain-back: on-demand node {} (age {}); its {} pod(s) fit on running spot nodes: drained without a replacement",
                    n.name,
                    human_duration(r.now.since(n.created_at)),
                    pods.len()
                );
                self.remove_now(r, w, ni, od_gi, &pods, RemovalKind::DrainBack, reason);
                continue;
            }
            let Some((gi, count, by)) = spot_home(r, w, ni, od_gi, &pods) else {
                continue;
            };
            self.spend_budget(r, set, pods.len());
            let reason = format!(
                "drain-back: replace on-demand node {} (age {}) with {count} spot node(s) of {} (chosen by {by}); the node is drained once they are ready",
                n.name,
                human_duration(r.now.since(n.created_at)),
                groups[gi].name
            );
            let replacement = Replacement {
                group: groups[gi].name.clone(),
                kind: RemovalKind::DrainBack,
                needed: count,
                started: r.now,
                existing: node_names(snap, gi),
            };
            self.begin_replacement(&n.name, gi, replacement, reason, w);
        }
    }

    /// Whether balance set `set` can still take `pods` evictions within the hour's
    /// disruption budget.
    fn budget_allows(&self, r: &Round<'_>, set: usize, pods: usize) -> bool {
        let spent: u32 = self
            .voluntary_evictions
            .get(&r.sets.names[set])
            .map_or(0, |v| v.iter().map(|(_, n)| n).sum());
        spent as usize + pods <= r.config.balance.evictions_per_hour as usize
    }

    fn spend_budget(&mut self, r: &Round<'_>, set: usize, pods: usize) {
        self.voluntary_evictions
            .entry(r.sets.names[set].clone())
            .or_default()
            .push((r.now, pods as u32));
    }

    /// Whether balance set `set` has been at rest (no scale-up for pending pods, no
    /// scale-down) for `balance.rest_after`.
    fn at_rest(&self, r: &Round<'_>, set: usize) -> bool {
        let groups = r.snap.groups();
        let rest = r.config.balance.rest_after;
        r.snap.group_indexes().all(|gi| {
            let name = &groups[gi].name;
            r.sets.of_group[gi] != set
                || [&self.last_demand_scale_up, &self.last_scale_down]
                    .iter()
                    .all(|m| m.get(name).is_none_or(|&t| r.now.since(t) >= rest))
        })
    }

    /// Replaces a node of the heaviest zone by one in the lightest, when skew lasts.
    fn start_rebalances(&mut self, r: &Round<'_>, w: &mut Work<'_, '_>) {
        let snap = r.snap;
        let groups = snap.groups();
        let counts = r.sets.zone_counts(snap, w.targets, &|ni| w.removed[ni]);
        for (set, name) in r.sets.names.iter().enumerate() {
            if w.sets_shrinking.contains(&set) {
                // Scale-down removes from the heaviest zone first: let it heal the skew.
                continue;
            }
            let on_demand_set = snap.group_indexes().any(|gi| {
                r.sets.of_group[gi] == set && groups[gi].capacity_type == CapacityType::OnDemand
            });
            if on_demand_set && !r.config.drain_back.after.is_zero() {
                // A new on-demand node would restart the drain-back clock; drain-back
                // and scale-down empty on-demand sets instead.
                continue;
            }
            let c = &counts[set];
            let total: i64 = c.values().sum();
            let threshold = skew_threshold(r, c);
            if skew(c) <= threshold || total < 2 * c.len() as i64 {
                self.skew_since.remove(name);
                continue;
            }
            let since = *self.skew_since.entry(name.clone()).or_insert(r.now);
            if r.now.since(since) < r.config.balance.rebalance_after || !self.at_rest(r, set) {
                continue;
            }
            let busy = self.replacements.values().any(|rep| {
                rep.kind == RemovalKind::Rebalance
                    && snap
                        .group_index(&rep.group)
                        .is_some_and(|gi| r.sets.of_group[gi] == set)
            });
            if busy {
                continue;
            }
            let Some((heavy, _)) = c.iter().max_by_key(|(z, n)| (**n, std::cmp::Reverse(*z)))
            else {
                continue;
            };
            let Some((light, _)) = c.iter().min_by_key(|(z, n)| (**n, *z)) else {
                continue;
            };
            let light_group = snap.group_indexes().find(|&gi| {
                r.sets.of_group[gi] == set
                    && groups[gi].zones == [light.clone()]
                    && r.plans[gi].is_ok()
                    && w.targets[gi] < groups[gi].max_size
            });
            let Some(lgi) = light_group else { continue };
            let Some(vi) = self.rebalance_victim(r, w, set, heavy) else {
                continue;
            };
            let pods = movable_pods(snap, vi, r.config, &w.pdb_left).map_or(0, |p| p.len());
            if !self.budget_allows(r, set, pods) {
                continue;
            }
            self.spend_budget(r, set, pods);
            if self.consolidate_for_balance(r, w, set, vi, (skew(c), threshold)) {
                continue;
            }
            let reason = format!(
                "zone rebalance: balance set skew {} > {} for {}; launch in {light} first, then drain {} in {heavy}",
                skew(c),
                threshold,
                human_duration(r.now.since(since)),
                snap.nodes()[vi].name
            );
            let replacement = Replacement {
                group: groups[lgi].name.clone(),
                kind: RemovalKind::Rebalance,
                needed: 1,
                started: r.now,
                existing: node_names(snap, lgi),
            };
            let victim = snap.nodes()[vi].name.clone();
            self.begin_replacement(&victim, lgi, replacement, reason, w);
        }
    }

    /// Heals skew without buying a node: when the set has room to spare (it stays under
    /// the scale-down utilization threshold without `victim`) and the victim's pods fit
    /// on the set's other nodes, the victim is just drained. A replacement would leave
    /// that spare room in place, for scale-down to evict again later.
    fn consolidate_for_balance(
        &mut self,
        r: &Round<'_>,
        w: &mut Work<'_, '_>,
        set: usize,
        victim: NodeIdx,
        (skew_now, threshold): (u32, u32),
    ) -> bool {
        let snap = r.snap;
        let Some(gi) = snap.group_of_node(victim) else {
            return false;
        };
        let (mut requested, mut allocatable) = (0u64, 0u64);
        for ni in snap.node_indexes() {
            let in_set = snap
                .group_of_node(ni)
                .is_some_and(|g| r.sets.of_group[g] == set);
            if !in_set || w.removed[ni] {
                continue;
            }
            // Pods moved here earlier this round count where they now are.
            requested += snap.requested_on_node(ni).cpu_millis
                + w.nodes[ni]
                    .placed
                    .iter()
                    .map(|&p| snap.pods()[p].spec.requests.cpu_millis)
                    .sum::<u64>();
            if ni != victim {
                allocatable += snap.nodes()[ni].allocatable.cpu_millis;
            }
        }
        let below = r.config.balance.consolidate_below;
        if allocatable == 0 || requested as f64 > below * allocatable as f64 {
            return false;
        }
        let Ok(pods) = movable_pods(snap, victim, r.config, &w.pdb_left) else {
            return false;
        };
        if try_move(&pods, victim, w.nodes, &w.removed, snap, &mut w.cursor).is_err() {
            return false;
        }
        let reason = format!(
            "zone rebalance: balance set skew {skew_now} > {threshold} in {}; its {} pod(s) fit on the set's other nodes, which stay under {:.0}% CPU requested: drained without a replacement",
            snap.nodes()[victim].zone().unwrap_or("?"),
            pods.len(),
            below * 100.0
        );
        self.remove_now(r, w, victim, gi, &pods, RemovalKind::Rebalance, reason);
        true
    }

    /// The least utilized movable node of balance set `set` in zone `heavy`.
    fn rebalance_victim(
        &self,
        r: &Round<'_>,
        w: &Work<'_, '_>,
        set: usize,
        heavy: &str,
    ) -> Option<NodeIdx> {
        let snap = r.snap;
        let groups = snap.groups();
        snap.node_indexes()
            .filter(|&ni| {
                let n = &snap.nodes()[ni];
                n.zone() == Some(heavy)
                    && n.ready
                    && !n.unschedulable
                    && !w.removed[ni]
                    // Pods moved here earlier this round (drain-back) need it.
                    && w.nodes[ni].placed.is_empty()
                    && !self.replacements.contains_key(&n.name)
                    && snap.group_of_node(ni).is_some_and(|gi| {
                        r.sets.of_group[gi] == set && w.targets[gi] > groups[gi].min_size
                    })
                    && movable_pods(snap, ni, r.config, &w.pdb_left).is_ok()
            })
            .min_by(|&a, &b| {
                utilization(snap, a)
                    .total_cmp(&utilization(snap, b))
                    .then(a.cmp(&b))
            })
    }

    /// Launches the replacement of `node` (scale-up first); the node is drained in a
    /// later round, once the new nodes are ready.
    fn begin_replacement(
        &mut self,
        node: &str,
        group: GroupIdx,
        replacement: Replacement,
        reason: String,
        w: &mut Work<'_, '_>,
    ) {
        let new_target = w.targets[group] + replacement.needed;
        w.actions.push(Decision::ScaleUp {
            group: replacement.group.clone(),
            delta: replacement.needed,
            new_target,
            cause: ScaleUpCause::Replacement(replacement.kind),
            reason,
        });
        w.targets[group] = new_target;
        w.last_scale_up
            .insert(replacement.group.clone(), replacement.started);
        w.scale_ups.push((replacement.group.clone(), new_target));
        self.replacements.insert(node.to_string(), replacement);
    }
}

/// The zone skew a balance set may keep: the configured floor, or a share of its mean
/// zone size for large sets (small sets are left alone).
fn skew_threshold(r: &Round<'_>, counts: &BTreeMap<String, i64>) -> u32 {
    let total: i64 = counts.values().sum();
    let mean = total as f64 / counts.len().max(1) as f64;
    // Truncation: the share of the mean, rounded down.
    let grown = (r.config.balance.skew_fraction * mean) as u32;
    r.config.balance.skew_threshold.max(grown)
}

/// At most this many pod deletion costs are written or cleared per round (2 a second
/// at the 10 s scan interval), so a reshuffle of the list never floods the API server.
const DELETION_COST_PATCHES_PER_ROUND: usize = 5;

/// The nodes in the order they would go: the scale-down candidates in their removal
/// order, then the other nodes that could still become candidates, on-demand first
/// (drain-back removes them once spot is back) and then the least utilized. Pods of
/// the first ones get the lowest [`deletion_costs`].
fn deletion_order(
    r: &Round<'_>,
    cands: &[Candidate<'_>],
    counts: &[BTreeMap<String, i64>],
    removed: &[bool],
) -> Vec<NodeIdx> {
    if r.config.scale_down.deletion_cost_nodes == 0 {
        // Nothing to steer: `deletion_costs` only clears what was written before.
        return Vec::new();
    }
    let snap = r.snap;
    let mut order: Vec<NodeIdx> = cands.iter().map(|c| c.node).collect();
    let listed: BTreeSet<NodeIdx> = order.iter().copied().collect();
    // (spot, fewer nodes in its zone, utilization): on-demand first, then the heaviest
    // zone of its balance set (emptying it heals skew), then the least utilized.
    let mut rest: Vec<((bool, i64, f64), NodeIdx)> = snap
        .node_indexes()
        .zip(snap.nodes())
        .filter(|&(ni, n)| {
            !listed.contains(&ni) && !removed[ni] && !n.unschedulable && !n.scale_down_disabled()
        })
        .filter_map(|(ni, n)| {
            let gi = snap.group_of_node(ni)?;
            let zone_count = n
                .zone()
                .and_then(|z| counts[r.sets.of_group[gi]].get(z))
                .copied()
                .unwrap_or(0);
            let spot = n.capacity_type != CapacityType::OnDemand;
            Some(((spot, -zone_count, utilization(snap, ni)), ni))
        })
        .collect();
    rest.sort_by(|a, b| {
        a.0.partial_cmp(&b.0)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.1.cmp(&b.1))
    });
    order.extend(rest.into_iter().map(|(_, ni)| ni));
    order
}

/// The pod deletion costs that make a ReplicaSet scale-in delete the pods of the first
/// `nodes` nodes of [`deletion_order`] still standing before any other: `-(nodes - i)`
/// on the i-th, so the node that would go first empties first and goes without a drain.
/// Returns only changes: new costs, and clears on pods whose node left the list. A cost the user set (one [`DELETION_COST_SET_BY_US`] does not match)
/// is left alone, and only ReplicaSet pods are touched (no other controller reads it).
fn deletion_costs(
    snap: &ClusterSnapshot,
    order: &[NodeIdx],
    removed: &[bool],
    nodes: u32,
) -> Vec<PodDeletionCost> {
    let ours = |p: &Pod| {
        let set = p.annotations.get(DELETION_COST_SET_BY_US);
        set.is_some() && set == p.annotations.get(POD_DELETION_COST)
    };
    let current = |p: &Pod| {
        ours(p)
            .then(|| p.annotations.get(POD_DELETION_COST))
            .flatten()
            .and_then(|v| v.parse::<i32>().ok())
    };
    let mut changes = Vec::new();
    let mut wanted: BTreeSet<PodIdx> = BTreeSet::new();
    let standing = order.iter().filter(|&&ni| !removed[ni]);
    // Head of the list first: with the cap, the nodes that go soonest are steered first.
    for (i, &ni) in standing.take(nodes as usize).enumerate() {
        let cost = i as i32 - nodes as i32;
        for &p in snap.pods_on_node(ni) {
            let pod = &snap.pods()[p];
            let replica_set = pod.owner.as_ref().is_some_and(|o| o.kind == "ReplicaSet");
            if replica_set && (ours(pod) || !pod.annotations.contains_key(POD_DELETION_COST)) {
                wanted.insert(p);
                if current(pod) != Some(cost) {
                    changes.push(PodDeletionCost {
                        pod: pod.key(),
                        cost: Some(cost),
                    });
                }
            }
        }
    }
    for (p, pod) in snap.pods().iter().enumerate() {
        if ours(pod) && !wanted.contains(&PodIdx::new(p)) {
            changes.push(PodDeletionCost {
                pod: pod.key(),
                cost: None,
            });
        }
    }
    // The rest waits for the next rounds: changes are read back from the pods.
    changes.truncate(DELETION_COST_PATCHES_PER_ROUND);
    changes
}

/// Whether removing a node of `zone` would widen the set's skew past what it may keep:
/// a drain there would undo what scale-up balancing or a rebalance paid for, and the
/// skew would come back as rebalancing evictions. Only a drain from a lightest zone
/// widens it; a middle zone may shrink even while the set is skewed, as rebalancing
/// has the same moves to make with that node or without it.
fn removal_unbalances(
    r: &Round<'_>,
    counts: &BTreeMap<String, i64>,
    zone: Option<&str>,
) -> Option<ScaleDownBlocker> {
    let zone = zone?;
    let zones = counts.len() as i64;
    if !r.config.balance.rebalance || counts.values().sum::<i64>() - 1 < 2 * zones {
        // Rebalancing leaves this set alone: so does this rule.
        return None;
    }
    let mut after = counts.clone();
    *after.get_mut(zone)? -= 1;
    let (skew_after, threshold) = (skew(&after), skew_threshold(r, &after));
    (skew_after > threshold && skew_after > skew(counts)).then(|| ScaleDownBlocker::ZoneBalance {
        zone: zone.to_string(),
        skew_after,
        threshold,
    })
}

/// The spot group (of higher priority than the on-demand node's) that can take all of
/// `pods`: `(group, nodes needed, what decided)`.
fn spot_home(
    r: &Round<'_>,
    w: &Work<'_, '_>,
    ni: NodeIdx,
    od_gi: GroupIdx,
    pods: &[PodIdx],
) -> Option<(GroupIdx, u32, String)> {
    let snap = r.snap;
    let groups = snap.groups();
    let od_prio = r.priority(&groups[od_gi].name);
    let classes = classify(snap, pods);
    let spreads: Vec<SpreadState> = classes.iter().map(|_| SpreadState::default()).collect();
    let mut options = Vec::new();
    for (gi, g) in snap.group_indexes().zip(groups) {
        let Ok(plan) = &r.plans[gi] else { continue };
        let better = match (r.priorities.is_some(), r.priority(&g.name), od_prio) {
            (false, _, _) => true,
            (true, Some(p), Some(o)) => p > o,
            (true, Some(_), None) => true,
            (true, None, _) => false,
        };
        // A mixed group's replacement may come on-demand: not a way back to spot.
        if g.capacity_type != CapacityType::Spot || g.mixed().is_some() || !better {
            continue;
        }
        let headroom = g.max_size.saturating_sub(w.targets[gi]);
        if headroom == 0 {
            continue;
        }
        let est = estimate(
            plan,
            g,
            &classes,
            &spreads,
            headroom,
            snap,
            ZoneGuess::Never,
        );
        if est.helped.len() == pods.len() {
            options.push((gi, est.node_count(), est.requested.clone(), plan.clone()));
        }
    }
    if options.is_empty() {
        return None;
    }
    let scores: Vec<OptionScore<'_>> = options
        .iter()
        .map(|(gi, count, req, plan)| OptionScore {
            group: &groups[*gi].name,
            pods_helped: pods.len(),
            requested_cpu_millis: req.cpu_millis,
            requested_memory_bytes: req.memory_bytes,
            offered_cpu_millis: plan.allocatable.cpu_millis * u64::from(*count),
            offered_memory_bytes: plan.allocatable.memory_bytes * u64::from(*count),
            cost_per_hour: plan.price_per_hour * f64::from(*count),
        })
        .collect();
    let (pick, by) = expander::choose(
        &r.config.expander,
        r.priorities,
        &scores,
        r.config.seed ^ r.now.as_millis() ^ u64::from(ni.0),
    );
    Some((options[pick].0, options[pick].1, by))
}
