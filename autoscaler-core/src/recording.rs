//! The recording format: what the controller saw, round by round, as plain data.
//!
//! A recording is a folder of JSON Lines files (`recording-NNNNNN.jsonl`, written by
//! `autoscaler --record-dir`). Every line is one [`RecordLine`]. Each file starts with a
//! [`RecordLine::Header`] and repeats every workload, HPA and group definition still in
//! use, so any single file can be read on its own after older ones were rotated away.
//!
//! Only what the engine models is kept: per workload (owner and pod spec) its pods'
//! scheduling spec (requests, priority, node selector, affinity, tolerations, spread) and
//! the counts of pods and pending pods; per group its shape and its nodes counted by
//! zone, market and instance type; per HorizontalPodAutoscaler its CPU target, bounds and
//! behavior and, each round, what its controller reported (replicas and the current
//! average CPU utilisation); the events and decisions of the round; the priorities
//! ConfigMap and the engine configuration. No pod or node names, no labels or
//! annotations beyond the scheduling spec, nothing from Secrets.
//!
//! Versions: 1 had no HPA lines and one workload id per owner; 2 adds
//! [`RecordLine::Hpa`] and [`RoundRecord::hpas`], and gives each distinct pod spec of an
//! owner its own id (an owner whose pods differ, such as the bare pods of a namespace,
//! no longer rewrites its definition every round). A version-1 file reads as version 2
//! without HPAs ([`reads_version`]).
//!
//! This module builds lines from a snapshot ([`Encoder`]); writing them is the caller's
//! business (the core does no I/O).

use crate::config::AutoscalerConfig;
use crate::decision::Decision;
use crate::events::Event;
use crate::hpa::Behavior;
use crate::model::{CapacityType, GroupOptions, InstanceType, NodeTemplate, Pod, SchedulingSpec};
use crate::snapshot::ClusterSnapshot;
use crate::time::Timestamp;
use rustc_hash::{FxHashMap, FxHasher};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// Version of the format; bumped when a reader of the previous version would misread a
/// line.
pub const RECORDING_VERSION: u32 = 2;

/// Whether a reader of [`RECORDING_VERSION`] reads files of `version` (1 and 2: version
/// 1 lines are version 2 lines without HPAs).
pub fn reads_version(version: u32) -> bool {
    (1..=RECORDING_VERSION).contains(&version)
}

/// One line of a recording file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "line", rename_all = "snake_case", deny_unknown_fields)]
// The header is one line per file, written and read once: boxing it would only add an
// allocation to every reader's match.
#[allow(clippy::large_enum_variant)]
pub enum RecordLine {
    /// First line of every file.
    Header(RecordingHeader),
    /// A workload's definition (first seen, or its spec changed).
    Workload(WorkloadDef),
    /// A node group's definition (first seen, or its shape changed).
    Group(GroupDef),
    /// A HorizontalPodAutoscaler's settings (first seen, or changed).
    Hpa(HpaDef),
    /// The priority-expander ConfigMap's `priorities` (first seen, or changed;
    /// `None`: removed).
    Priorities {
        /// When it was seen, ms since the epoch.
        at_ms: u64,
        /// The text, as in the ConfigMap.
        text: Option<String>,
    },
    /// One decision round.
    Round(RoundRecord),
}

/// What the recording was made with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordingHeader {
    /// [`RECORDING_VERSION`] of the writer.
    pub version: u32,
    /// When this file was started, ms since the epoch.
    pub at_ms: u64,
    /// `--scan-interval`, ms.
    pub scan_interval_ms: u64,
    /// Whether the controller ran with `--dry-run` (decisions recorded, not carried out).
    pub dry_run: bool,
    /// The engine configuration the flags gave.
    pub config: AutoscalerConfig,
}

/// Pods of one owner (a ReplicaSet, StatefulSet, Job, ... or bare pods of a namespace)
/// with one scheduling spec; an owner whose pods differ has one definition per spec.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadDef {
    /// Id used by [`RoundRecord::workloads`], unique within the recording.
    pub id: u32,
    /// Namespace.
    pub namespace: String,
    /// Owner kind (`ReplicaSet`, ...; `Pod` for pods without an owner).
    pub kind: String,
    /// Owner name (empty for pods without an owner).
    pub name: String,
    /// The scheduling spec of its pods (the first pod seen; an owner's pods share it).
    pub spec: SchedulingSpec,
}

/// A node group's shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupDef {
    /// ASG name.
    pub name: String,
    /// Min size.
    pub min_size: u32,
    /// Max size.
    pub max_size: u32,
    /// Zones.
    pub zones: Vec<String>,
    /// Market.
    pub capacity_type: CapacityType,
    /// Split between on-demand and spot of a mixed-instances group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mix: Option<crate::model::CapacityMix>,
    /// Instance types, in launch preference order, with prices.
    pub instance_types: Vec<InstanceType>,
    /// Labels and taints of its nodes (the core matches selectors against them).
    pub template: NodeTemplate,
    /// Per-group autoscaling options.
    pub options: GroupOptions,
}

/// One round: the counts the engine saw, the events it was given, what it decided.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoundRecord {
    /// `now` of the round, ms since the epoch.
    pub at_ms: u64,
    /// Per workload id: its pods and how many of them are pending.
    pub workloads: Vec<WorkloadCount>,
    /// Per group: desired capacity and nodes.
    pub groups: Vec<GroupCount>,
    /// Events handed to the engine before this round's decision.
    pub events: Vec<Event>,
    /// The round's decisions (reasons left out: they name pods and nodes).
    pub decisions: Vec<DecisionRecord>,
    /// What each HPA's controller last reported (absent in version 1).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hpas: Vec<HpaCount>,
}

/// A HorizontalPodAutoscaler (`autoscaling/v2`): what it scales and its settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HpaDef {
    /// Id used by [`RoundRecord::hpas`], unique within the recording.
    pub id: u32,
    /// The settings.
    pub settings: HpaSettings,
}

/// An HPA's identity, target and settings, as in its spec.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HpaSettings {
    /// Namespace.
    pub namespace: String,
    /// The HPA's name.
    pub name: String,
    /// `scaleTargetRef.kind` (`Deployment`, `StatefulSet`, ...).
    pub target_kind: String,
    /// `scaleTargetRef.name`.
    pub target_name: String,
    /// `minReplicas` (Kubernetes' default is 1).
    pub min_replicas: u32,
    /// `maxReplicas`.
    pub max_replicas: u32,
    /// The `Resource` `cpu` metric's `averageUtilization` target, percent of requests
    /// (`None`: the HPA scales on other metrics, which are not recorded).
    pub cpu_target_utilization: Option<u32>,
    /// `behavior`, when set (`None`: Kubernetes' defaults).
    pub behavior: Option<Behavior>,
}

/// An HPA's status in one round, as its controller last wrote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HpaCount {
    /// [`HpaDef::id`].
    pub id: u32,
    /// `status.currentReplicas`.
    pub current_replicas: u32,
    /// `status.desiredReplicas`.
    pub desired_replicas: u32,
    /// `status.currentMetrics[cpu].current.averageUtilization`, percent of requests
    /// (`None` while the controller has no metric).
    pub cpu_utilization: Option<u32>,
}

/// An HPA as the controller sees it in one round: input of [`Encoder::observe_hpas`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedHpa {
    /// Its spec.
    pub settings: HpaSettings,
    /// `status.currentReplicas`.
    pub current_replicas: u32,
    /// `status.desiredReplicas`.
    pub desired_replicas: u32,
    /// The current average CPU utilisation, percent.
    pub cpu_utilization: Option<u32>,
}

pub use crate::model::hpa_scales;

/// A workload's pods in one round.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadCount {
    /// [`WorkloadDef::id`].
    pub id: u32,
    /// Pods (one per replica).
    pub pods: u32,
    /// Of which not bound to a node.
    pub pending: u32,
}

/// A group in one round.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupCount {
    /// ASG name.
    pub name: String,
    /// Desired capacity.
    pub target_size: u32,
    /// Instances AWS has, when known.
    pub instances: Option<u32>,
    /// Registered nodes by zone, market and instance type.
    pub nodes: Vec<NodeCount>,
}

/// Nodes of one pool of a group.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeCount {
    /// Zone (empty when the node has no zone label).
    pub zone: String,
    /// Market.
    pub capacity_type: CapacityType,
    /// Instance type (empty when unlabelled).
    pub instance_type: String,
    /// Registered nodes.
    pub total: u32,
    /// Of which Ready.
    pub ready: u32,
}

/// A decision, without its reason text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionRecord {
    /// `ScaleUp`, `RevertScaleUp`, `RemoveNode:<kind>` or `SetOverprovisioning` (the
    /// simulator's decision-log names).
    pub kind: String,
    /// Group (empty for `SetOverprovisioning`).
    pub group: String,
    /// Nodes added (negative: removed or cancelled); placeholder replicas for
    /// `SetOverprovisioning`.
    pub delta: i64,
    /// Desired capacity after it (0 when the decision does not say).
    pub new_target: u32,
}

impl DecisionRecord {
    /// The record of a decision.
    pub fn of(d: &Decision) -> DecisionRecord {
        match d {
            Decision::ScaleUp {
                group,
                delta,
                new_target,
                ..
            } => DecisionRecord {
                kind: "ScaleUp".into(),
                group: group.clone(),
                delta: i64::from(*delta),
                new_target: *new_target,
            },
            Decision::RevertScaleUp {
                group,
                cancelled,
                new_target,
                ..
            } => DecisionRecord {
                kind: "RevertScaleUp".into(),
                group: group.clone(),
                delta: -i64::from(*cancelled),
                new_target: *new_target,
            },
            Decision::RemoveNode { group, kind, .. } => DecisionRecord {
                kind: format!("RemoveNode:{kind:?}"),
                group: group.clone(),
                delta: -1,
                new_target: 0,
            },
            Decision::SetOverprovisioning { replicas, .. } => DecisionRecord {
                kind: "SetOverprovisioning".into(),
                group: String::new(),
                delta: i64::from(*replicas),
                new_target: 0,
            },
        }
    }
}

/// A workload definition and where it was last written.
#[derive(Debug)]
struct WorkloadState {
    def: WorkloadDef,
    /// Written in the current file.
    in_file: bool,
    /// Round it last had pods in.
    last_seen: u64,
}

/// Turns rounds into lines, emitting a definition only when it is new, changed, or not
/// yet in the current file.
///
/// The per-round cost is one pointer comparison per pod: a snapshot shares its pods
/// (`Arc<Pod>`) with the controller's pod cache, so a pod seen in the previous round is
/// the same allocation and keeps its workload id (and its pending state: a pod that
/// changes is a new allocation) without reading the pod at all. At 100,000 pods the
/// pods do not fit in any cache, so touching each one (a reference count, a field)
/// costs a memory load per pod: only pods that changed are touched.
#[derive(Debug)]
pub struct Encoder {
    header: RecordingHeader,
    /// Definitions by id.
    workloads: Vec<WorkloadState>,
    /// Ids by hash of (namespace, kind, name): the candidates to compare a new pod with.
    workload_ids: FxHashMap<u64, Vec<u32>>,
    /// The previous round's pods, their workload ids and whether each was pending, in
    /// snapshot order; the `Arc`s are held so that no address is reused by another pod
    /// while it is remembered.
    prev_pods: Vec<Arc<Pod>>,
    prev_seen: Vec<(u32, bool)>,
    groups: BTreeMap<String, GroupDef>,
    hpas: BTreeMap<(String, String), HpaDef>,
    observed_hpas: Vec<ObservedHpa>,
    priorities: Option<Option<String>>,
    round_no: u64,
}

fn owner_of(pod: &Pod) -> (&str, &str, &str) {
    pod.controller_key().unwrap_or((&pod.namespace, "Pod", ""))
}

fn owner_hash(owner: (&str, &str, &str)) -> u64 {
    let mut h = FxHasher::default();
    owner.hash(&mut h);
    h.finish()
}

impl Encoder {
    /// An encoder for a recording made with this configuration.
    pub fn new(config: AutoscalerConfig, scan_interval_ms: u64, dry_run: bool) -> Encoder {
        Encoder {
            header: RecordingHeader {
                version: RECORDING_VERSION,
                at_ms: 0,
                scan_interval_ms,
                dry_run,
                config,
            },
            workloads: Vec::new(),
            workload_ids: FxHashMap::default(),
            prev_pods: Vec::new(),
            prev_seen: Vec::new(),
            groups: BTreeMap::new(),
            hpas: BTreeMap::new(),
            observed_hpas: Vec::new(),
            priorities: None,
            round_no: 0,
        }
    }

    /// The lines that start a new file at `now`: the header and every definition still
    /// in use (workloads with pods in the last round), so the file stands alone.
    pub fn preamble(&mut self, now: Timestamp) -> Vec<RecordLine> {
        self.header.at_ms = now.as_millis();
        let mut lines = vec![RecordLine::Header(self.header.clone())];
        if let Some(text) = &self.priorities {
            lines.push(RecordLine::Priorities {
                at_ms: now.as_millis(),
                text: text.clone(),
            });
        }
        lines.extend(self.groups.values().cloned().map(RecordLine::Group));
        lines.extend(self.hpas.values().cloned().map(RecordLine::Hpa));
        for w in &mut self.workloads {
            // A workload gone before this file is written again if it comes back.
            w.in_file = self.round_no > 0 && w.last_seen == self.round_no;
            if w.in_file {
                lines.push(RecordLine::Workload(w.def.clone()));
            }
        }
        lines
    }

    /// The HPAs of the next round (kept until replaced).
    pub fn observe_hpas(&mut self, hpas: Vec<ObservedHpa>) {
        self.observed_hpas = hpas;
    }

    /// The lines of one round: new or changed definitions, then the round itself.
    pub fn round(
        &mut self,
        now: Timestamp,
        priorities: Option<&str>,
        snap: &ClusterSnapshot,
        events: &[Event],
        decisions: &[Decision],
    ) -> Vec<RecordLine> {
        self.round_no += 1;
        let mut lines = Vec::new();
        let priorities = priorities.map(str::to_string);
        if self.priorities.as_ref() != Some(&priorities) {
            lines.push(RecordLine::Priorities {
                at_ms: now.as_millis(),
                text: priorities.clone(),
            });
            self.priorities = Some(priorities);
        }
        let groups = self.group_counts(snap, &mut lines);
        let hpas = self.hpa_counts(&mut lines);
        let workloads = self.workload_counts(snap, &mut lines);
        lines.push(RecordLine::Round(RoundRecord {
            at_ms: now.as_millis(),
            workloads,
            groups,
            events: events.to_vec(),
            decisions: decisions.iter().map(DecisionRecord::of).collect(),
            hpas,
        }));
        lines
    }

    fn group_counts(
        &mut self,
        snap: &ClusterSnapshot,
        lines: &mut Vec<RecordLine>,
    ) -> Vec<GroupCount> {
        let mut groups = Vec::with_capacity(snap.groups().len());
        for gi in snap.group_indexes() {
            let g = &snap.groups()[gi];
            let known = self.groups.get(&g.name).is_some_and(|d| {
                d.min_size == g.min_size
                    && d.max_size == g.max_size
                    && d.zones == g.zones
                    && d.capacity_type == g.capacity_type
                    && d.mix == g.mix
                    && d.instance_types == g.instance_types
                    && d.template == g.template
                    && d.options == g.options
            });
            if !known {
                let def = GroupDef {
                    name: g.name.clone(),
                    min_size: g.min_size,
                    max_size: g.max_size,
                    zones: g.zones.clone(),
                    capacity_type: g.capacity_type,
                    mix: g.mix,
                    instance_types: g.instance_types.clone(),
                    template: g.template.clone(),
                    options: g.options.clone(),
                };
                self.groups.insert(g.name.clone(), def.clone());
                lines.push(RecordLine::Group(def));
            }
            // Borrowed keys: no allocation per node.
            let mut pools: BTreeMap<(&str, CapacityType, &str), (u32, u32)> = BTreeMap::new();
            for &ni in snap.nodes_of_group(gi) {
                let n = &snap.nodes()[ni];
                let key = (
                    n.zone().unwrap_or_default(),
                    n.capacity_type,
                    n.instance_type().unwrap_or_default(),
                );
                let e = pools.entry(key).or_default();
                e.0 += 1;
                e.1 += u32::from(n.ready);
            }
            groups.push(GroupCount {
                name: g.name.clone(),
                target_size: g.target_size,
                instances: g.current_instances,
                nodes: pools
                    .into_iter()
                    .map(
                        |((zone, capacity_type, instance_type), (total, ready))| NodeCount {
                            zone: zone.to_string(),
                            capacity_type,
                            instance_type: instance_type.to_string(),
                            total,
                            ready,
                        },
                    )
                    .collect(),
            });
        }
        groups
    }

    fn hpa_counts(&mut self, lines: &mut Vec<RecordLine>) -> Vec<HpaCount> {
        let mut counts = Vec::with_capacity(self.observed_hpas.len());
        for o in &self.observed_hpas {
            let key = (o.settings.namespace.clone(), o.settings.name.clone());
            let next_id = u32::try_from(self.hpas.len()).unwrap_or(u32::MAX);
            let id = match self.hpas.get_mut(&key) {
                Some(def) if def.settings == o.settings => def.id,
                Some(def) => {
                    def.settings = o.settings.clone();
                    lines.push(RecordLine::Hpa(def.clone()));
                    def.id
                }
                None => {
                    let def = HpaDef {
                        id: next_id,
                        settings: o.settings.clone(),
                    };
                    lines.push(RecordLine::Hpa(def.clone()));
                    self.hpas.insert(key, def);
                    next_id
                }
            };
            counts.push(HpaCount {
                id,
                current_replicas: o.current_replicas,
                desired_replicas: o.desired_replicas,
                cpu_utilization: o.cpu_utilization,
            });
        }
        counts.sort_by_key(|c| c.id);
        counts
    }

    /// The id of a pod not seen in the last round: an existing definition with the same
    /// owner and spec, or a new one.
    fn workload_id(&mut self, pod: &Pod) -> u32 {
        let owner = owner_of(pod);
        let candidates = self.workload_ids.entry(owner_hash(owner)).or_default();
        for &id in candidates.iter() {
            let d = &self.workloads[id as usize].def;
            if (d.namespace.as_str(), d.kind.as_str(), d.name.as_str()) == owner
                && d.spec == pod.spec
            {
                return id;
            }
        }
        let id = u32::try_from(self.workloads.len()).unwrap_or(u32::MAX);
        candidates.push(id);
        self.workloads.push(WorkloadState {
            def: WorkloadDef {
                id,
                namespace: owner.0.to_string(),
                kind: owner.1.to_string(),
                name: owner.2.to_string(),
                spec: pod.spec.clone(),
            },
            in_file: false,
            last_seen: 0,
        });
        id
    }

    fn workload_counts(
        &mut self,
        snap: &ClusterSnapshot,
        lines: &mut Vec<RecordLine>,
    ) -> Vec<WorkloadCount> {
        let mut counts: Vec<(u32, u32)> = vec![(0, 0); self.workloads.len()];
        let pods = snap.pods();
        // Built only when a pod is not where it was (the cache's order is stable, so a
        // quiet round compares pointers and never hashes).
        let mut by_addr: Option<FxHashMap<*const Pod, (u32, bool)>> = None;
        let mut seen_now = Vec::with_capacity(pods.len());
        let mut changed = pods.len() != self.prev_pods.len();
        for (i, pod) in pods.iter().enumerate() {
            let seen = if self.prev_pods.get(i).is_some_and(|p| Arc::ptr_eq(p, pod)) {
                self.prev_seen[i]
            } else {
                changed = true;
                let map = by_addr.get_or_insert_with(|| {
                    self.prev_pods
                        .iter()
                        .map(Arc::as_ptr)
                        .zip(self.prev_seen.iter().copied())
                        .collect()
                });
                match map.get(&Arc::as_ptr(pod)) {
                    Some(&seen) => seen,
                    None => (self.workload_id(pod), pod.node_name.is_none()),
                }
            };
            seen_now.push(seen);
            let (id, pending) = (seen.0 as usize, seen.1);
            if id >= counts.len() {
                counts.resize(id + 1, (0, 0));
            }
            counts[id].0 += 1;
            counts[id].1 += u32::from(pending);
        }
        if changed {
            // In place: an unchanged pod's reference count is not touched.
            self.prev_pods.truncate(pods.len());
            for (i, pod) in pods.iter().enumerate() {
                match self.prev_pods.get_mut(i) {
                    Some(p) if Arc::ptr_eq(p, pod) => {}
                    Some(p) => *p = Arc::clone(pod),
                    None => self.prev_pods.push(Arc::clone(pod)),
                }
            }
            self.prev_seen = seen_now;
        }
        let mut out = Vec::new();
        for (i, &(pods, pending)) in counts.iter().enumerate() {
            if pods == 0 {
                continue;
            }
            let w = &mut self.workloads[i];
            w.last_seen = self.round_no;
            if !w.in_file {
                w.in_file = true;
                lines.push(RecordLine::Workload(w.def.clone()));
            }
            out.push(WorkloadCount {
                id: w.def.id,
                pods,
                pending,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{group, pod};
    use crate::snapshot::SnapshotParts;

    fn snapshot(pods: usize) -> ClusterSnapshot {
        ClusterSnapshot::new(SnapshotParts {
            groups: vec![group("spot", CapacityType::Spot, &["a"], &["m5.large"])],
            pods: (0..pods)
                .map(|i| pod(&format!("web-{i}"), "web", 500, 1024, None).into())
                .collect(),
            ..SnapshotParts::default()
        })
        .unwrap()
    }

    #[test]
    fn definitions_are_written_once_and_repeated_in_each_preamble() {
        let mut enc = Encoder::new(AutoscalerConfig::default(), 10_000, true);
        let first = enc.round(
            Timestamp::from_secs(1),
            Some("10: [spot]"),
            &snapshot(3),
            &[],
            &[],
        );
        let kinds: Vec<&str> = first
            .iter()
            .map(|l| match l {
                RecordLine::Header(_) => "header",
                RecordLine::Workload(_) => "workload",
                RecordLine::Group(_) => "group",
                RecordLine::Priorities { .. } => "priorities",
                RecordLine::Round(_) => "round",
                RecordLine::Hpa(_) => "hpa",
            })
            .collect();
        assert_eq!(kinds, ["priorities", "group", "workload", "round"]);
        let RecordLine::Round(r) = &first[3] else {
            panic!("round last")
        };
        assert_eq!(
            r.workloads,
            [WorkloadCount {
                id: 0,
                pods: 3,
                pending: 3
            }]
        );
        let second = enc.round(
            Timestamp::from_secs(2),
            Some("10: [spot]"),
            &snapshot(5),
            &[],
            &[],
        );
        assert_eq!(
            second.len(),
            1,
            "nothing changed but the counts: {second:?}"
        );
        let pre = enc.preamble(Timestamp::from_secs(3));
        assert!(
            matches!(&pre[0], RecordLine::Header(h) if h.version == RECORDING_VERSION && h.at_ms == 3000)
        );
        assert_eq!(pre.len(), 4, "header, priorities, group, workload: {pre:?}");
        // Every line goes through JSON and back unchanged.
        for l in first.iter().chain(&pre) {
            let text = serde_json::to_string(l).unwrap();
            assert_eq!(&serde_json::from_str::<RecordLine>(&text).unwrap(), l);
        }
    }

    fn workload_lines(lines: &[RecordLine]) -> Vec<&WorkloadDef> {
        lines
            .iter()
            .filter_map(|l| match l {
                RecordLine::Workload(w) => Some(w),
                _ => None,
            })
            .collect()
    }

    fn round_of(lines: &[RecordLine]) -> &RoundRecord {
        match lines.last() {
            Some(RecordLine::Round(r)) => r,
            other => panic!("a round line last, got {other:?}"),
        }
    }

    #[test]
    fn an_owner_with_two_specs_gets_two_ids_written_once() {
        let mut parts = snapshot(2).into_parts();
        let mut bigger = Pod::clone(&parts.pods[1]);
        bigger.spec.requests.cpu_millis = 900;
        parts.pods[1] = Arc::new(bigger);
        let snap = ClusterSnapshot::new(parts).unwrap();
        let mut enc = Encoder::new(AutoscalerConfig::default(), 10_000, false);
        let first = enc.round(Timestamp::from_secs(1), None, &snap, &[], &[]);
        let defs = workload_lines(&first);
        assert_eq!(defs.len(), 2, "{first:?}");
        assert_eq!((defs[0].id, defs[1].id), (0, 1));
        assert_eq!(defs[1].spec.requests.cpu_millis, 900);
        let second = enc.round(Timestamp::from_secs(2), None, &snap, &[], &[]);
        assert_eq!(second.len(), 1, "no definition rewritten: {second:?}");
        assert_eq!(round_of(&second).workloads.len(), 2);
    }

    #[test]
    fn relisted_pods_keep_their_ids_and_gone_workloads_leave_the_preamble() {
        let mut enc = Encoder::new(AutoscalerConfig::default(), 10_000, false);
        enc.round(Timestamp::from_secs(1), None, &snapshot(3), &[], &[]);
        // New allocations of the same pods (a re-list): same workload, no new line.
        let relisted = enc.round(Timestamp::from_secs(2), None, &snapshot(3), &[], &[]);
        assert_eq!(relisted.len(), 1, "{relisted:?}");
        assert_eq!(round_of(&relisted).workloads[0].id, 0);
        // The workload goes away; a new file does not define it.
        enc.round(Timestamp::from_secs(3), None, &snapshot(0), &[], &[]);
        let pre = enc.preamble(Timestamp::from_secs(4));
        assert!(workload_lines(&pre).is_empty(), "{pre:?}");
        // It comes back: defined again in this file, under its old id.
        let back = enc.round(Timestamp::from_secs(5), None, &snapshot(1), &[], &[]);
        let defs = workload_lines(&back);
        assert_eq!(defs.len(), 1, "{back:?}");
        assert_eq!(defs[0].id, 0);
    }

    #[test]
    fn a_pod_that_was_bound_stops_counting_as_pending_and_quiet_rounds_repeat() {
        let mut parts = snapshot(3).into_parts();
        let mut enc = Encoder::new(AutoscalerConfig::default(), 10_000, false);
        let snap = ClusterSnapshot::new(parts.clone()).unwrap();
        let first = enc.round(Timestamp::from_secs(1), None, &snap, &[], &[]);
        assert_eq!(round_of(&first).workloads[0].pending, 3);
        // The cache replaces a pod's allocation when it changes: bind the middle one.
        let mut bound = Pod::clone(&parts.pods[1]);
        bound.node_name = Some("n1".into());
        parts.pods[1] = Arc::new(bound);
        let snap = ClusterSnapshot::new(parts).unwrap();
        let second = enc.round(Timestamp::from_secs(2), None, &snap, &[], &[]);
        let w = &round_of(&second).workloads[0];
        assert_eq!((w.pods, w.pending), (3, 2), "{second:?}");
        // The same snapshot again: nothing is re-read, the counts stay.
        let third = enc.round(Timestamp::from_secs(3), None, &snap, &[], &[]);
        assert_eq!(round_of(&third).workloads, round_of(&second).workloads);
    }

    #[test]
    fn pods_that_moved_in_the_snapshot_keep_their_ids() {
        let mut parts = snapshot(2).into_parts();
        let mut other = Pod::clone(&parts.pods[1]);
        other.spec.requests.cpu_millis = 900;
        parts.pods[1] = Arc::new(other);
        let snap = ClusterSnapshot::new(parts.clone()).unwrap();
        let mut enc = Encoder::new(AutoscalerConfig::default(), 10_000, false);
        let first = enc.round(Timestamp::from_secs(1), None, &snap, &[], &[]);
        assert_eq!(workload_lines(&first).len(), 2);
        // The same pods, reversed, behind a new one of the first spec.
        parts.pods.reverse();
        parts.pods.insert(0, Arc::new(Pod::clone(&parts.pods[1])));
        let snap = ClusterSnapshot::new(parts).unwrap();
        let moved = enc.round(Timestamp::from_secs(2), None, &snap, &[], &[]);
        assert_eq!(moved.len(), 1, "{moved:?}");
        let counts: Vec<(u32, u32)> = round_of(&moved)
            .workloads
            .iter()
            .map(|c| (c.id, c.pods))
            .collect();
        assert_eq!(counts, [(0, 2), (1, 1)]);
    }

    fn observed(window: Option<u32>, utilization: Option<u32>) -> ObservedHpa {
        ObservedHpa {
            settings: HpaSettings {
                namespace: "shop".into(),
                name: "web".into(),
                target_kind: "Deployment".into(),
                target_name: "web".into(),
                min_replicas: 2,
                max_replicas: 40,
                cpu_target_utilization: Some(60),
                behavior: window.map(|w| Behavior {
                    scale_down: crate::hpa::ScalingRules {
                        stabilization_window_seconds: Some(w),
                        ..Default::default()
                    },
                    ..Default::default()
                }),
            },
            current_replicas: 3,
            desired_replicas: 5,
            cpu_utilization: utilization,
        }
    }

    #[test]
    fn hpas_are_defined_once_and_reported_every_round() {
        let mut enc = Encoder::new(AutoscalerConfig::default(), 10_000, false);
        enc.observe_hpas(vec![observed(None, Some(95))]);
        let first = enc.round(Timestamp::from_secs(1), None, &snapshot(1), &[], &[]);
        let hpa_defs: Vec<&HpaDef> = first
            .iter()
            .filter_map(|l| match l {
                RecordLine::Hpa(h) => Some(h),
                _ => None,
            })
            .collect();
        assert_eq!(hpa_defs.len(), 1);
        assert_eq!(hpa_defs[0].settings.cpu_target_utilization, Some(60));
        let counts = &round_of(&first).hpas;
        assert_eq!(
            counts,
            &[HpaCount {
                id: 0,
                current_replicas: 3,
                desired_replicas: 5,
                cpu_utilization: Some(95)
            }]
        );
        let second = enc.round(Timestamp::from_secs(2), None, &snapshot(1), &[], &[]);
        assert_eq!(second.len(), 1, "{second:?}");
        assert_eq!(round_of(&second).hpas.len(), 1, "still reported");
        // A changed behavior is written again under the same id.
        enc.observe_hpas(vec![observed(Some(600), None)]);
        let third = enc.round(Timestamp::from_secs(3), None, &snapshot(1), &[], &[]);
        assert!(
            matches!(&third[0], RecordLine::Hpa(h) if h.id == 0 && h.settings.behavior.is_some()),
            "{third:?}"
        );
        assert_eq!(round_of(&third).hpas[0].cpu_utilization, None);
        let pre = enc.preamble(Timestamp::from_secs(4));
        assert!(pre
            .iter()
            .any(|l| matches!(l, RecordLine::Hpa(h) if h.id == 0)));
        for l in first.iter().chain(&third) {
            let text = serde_json::to_string(l).unwrap();
            assert_eq!(&serde_json::from_str::<RecordLine>(&text).unwrap(), l);
        }
    }

    #[test]
    fn version_1_lines_read_as_version_2_without_hpas() {
        assert!(reads_version(1) && reads_version(RECORDING_VERSION));
        assert!(!reads_version(0) && !reads_version(RECORDING_VERSION + 1));
        // A round line as a version-1 writer wrote it (no `hpas` field).
        let v1 = r#"{"line":"round","at_ms":5000,"workloads":[{"id":0,"pods":3,"pending":1}],"groups":[],"events":[],"decisions":[]}"#;
        let RecordLine::Round(r) = serde_json::from_str::<RecordLine>(v1).unwrap() else {
            panic!("a round")
        };
        assert_eq!(r.workloads[0].pending, 1);
        assert!(r.hpas.is_empty());
        // And a round without HPAs is written without the field, as version 1 did.
        let text = serde_json::to_string(&RecordLine::Round(r)).unwrap();
        assert!(!text.contains("hpas"), "{text}");
    }

    #[test]
    fn a_deployment_hpa_scales_its_replicasets_only() {
        assert!(hpa_scales(
            "Deployment",
            "web",
            "ReplicaSet",
            "web-5d8f7c9b4"
        ));
        assert!(!hpa_scales(
            "Deployment",
            "web",
            "ReplicaSet",
            "web-api-5d8f7c9b4"
        ));
        assert!(!hpa_scales("Deployment", "web", "ReplicaSet", "web-"));
        assert!(!hpa_scales("Deployment", "web", "ReplicaSet", "webx-5d8f"));
        assert!(hpa_scales("StatefulSet", "db", "StatefulSet", "db"));
        assert!(!hpa_scales("StatefulSet", "db", "ReplicaSet", "db-abc"));
    }
}
