//! The recording format: what the controller saw, round by round, as plain data.
//!
//! A recording is a folder of JSON Lines files (`recording-NNNNNN.jsonl`, written by
//! `autoscaler --record-dir`). Every line is one [`RecordLine`]. Each file starts with a
//! [`RecordLine::Header`] and repeats every workload and group definition still in use,
//! so any single file can be read on its own after older ones were rotated away.
//!
//! Only what the engine models is kept: per workload (owner) its pods' scheduling spec
//! (requests, priority, node selector, affinity, tolerations, spread) and the counts of
//! pods and pending pods; per group its shape and its nodes counted by zone, market and
//! instance type; the events and decisions of the round; the priorities ConfigMap and
//! the engine configuration. No pod or node names, no labels or annotations beyond the
//! scheduling spec, nothing from Secrets.
//!
//! This module builds lines from a snapshot ([`Encoder`]); writing them is the caller's
//! business (the core does no I/O).

use crate::config::AutoscalerConfig;
use crate::decision::Decision;
use crate::events::Event;
use crate::model::{CapacityType, GroupOptions, InstanceType, NodeTemplate, SchedulingSpec};
use crate::snapshot::ClusterSnapshot;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Version of the format; bumped when a reader of the previous version would misread a
/// line.
pub const RECORDING_VERSION: u32 = 1;

/// One line of a recording file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "line", rename_all = "snake_case", deny_unknown_fields)]
pub enum RecordLine {
    /// First line of every file.
    Header(RecordingHeader),
    /// A workload's definition (first seen, or its spec changed).
    Workload(WorkloadDef),
    /// A node group's definition (first seen, or its shape changed).
    Group(GroupDef),
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

/// Pods of one owner (a ReplicaSet, StatefulSet, Job, ... or bare pods of a namespace).
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
}

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

/// Turns rounds into lines, emitting a definition only when it is new or changed.
#[derive(Debug)]
pub struct Encoder {
    header: RecordingHeader,
    workloads: BTreeMap<(String, String, String), WorkloadDef>,
    groups: BTreeMap<String, GroupDef>,
    priorities: Option<Option<String>>,
    next_id: u32,
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
            workloads: BTreeMap::new(),
            groups: BTreeMap::new(),
            priorities: None,
            next_id: 0,
        }
    }

    /// The lines that start a new file at `now`: the header and every definition known
    /// so far, so the file stands alone.
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
        lines.extend(self.workloads.values().cloned().map(RecordLine::Workload));
        lines
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
        let mut lines = Vec::new();
        let priorities = priorities.map(str::to_string);
        if self.priorities.as_ref() != Some(&priorities) {
            lines.push(RecordLine::Priorities {
                at_ms: now.as_millis(),
                text: priorities.clone(),
            });
            self.priorities = Some(priorities);
        }
        let mut groups = Vec::with_capacity(snap.groups().len());
        for gi in snap.group_indexes() {
            let g = &snap.groups()[gi];
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
            if self.groups.get(&g.name) != Some(&def) {
                self.groups.insert(g.name.clone(), def.clone());
                lines.push(RecordLine::Group(def));
            }
            let mut pools: BTreeMap<(String, CapacityType, String), (u32, u32)> = BTreeMap::new();
            for &ni in snap.nodes_of_group(gi) {
                let n = &snap.nodes()[ni];
                let key = (
                    n.zone().unwrap_or_default().to_string(),
                    n.capacity_type,
                    n.instance_type().unwrap_or_default().to_string(),
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
                            zone,
                            capacity_type,
                            instance_type,
                            total,
                            ready,
                        },
                    )
                    .collect(),
            });
        }
        let mut counts: BTreeMap<u32, WorkloadCount> = BTreeMap::new();
        for pod in snap.pods() {
            let (kind, name) = match &pod.owner {
                Some(o) => (o.kind.clone(), o.name.clone()),
                None => ("Pod".to_string(), String::new()),
            };
            let key = (pod.namespace.clone(), kind, name);
            let id = match self.workloads.get(&key) {
                Some(def) if def.spec == pod.spec => def.id,
                known => {
                    let id = known.map_or_else(
                        || {
                            self.next_id += 1;
                            self.next_id - 1
                        },
                        |d| d.id,
                    );
                    let def = WorkloadDef {
                        id,
                        namespace: key.0.clone(),
                        kind: key.1.clone(),
                        name: key.2.clone(),
                        spec: pod.spec.clone(),
                    };
                    self.workloads.insert(key, def.clone());
                    lines.push(RecordLine::Workload(def));
                    id
                }
            };
            let c = counts.entry(id).or_insert(WorkloadCount {
                id,
                pods: 0,
                pending: 0,
            });
            c.pods += 1;
            c.pending += u32::from(pod.node_name.is_none());
        }
        lines.push(RecordLine::Round(RoundRecord {
            at_ms: now.as_millis(),
            workloads: counts.into_values().collect(),
            groups,
            events: events.to_vec(),
            decisions: decisions.iter().map(DecisionRecord::of).collect(),
        }));
        lines
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
}
