//! What the engine decides: plain data, each item with a reason a person can read.

use crate::cooloff::{CoolOff, PoolKey};
use crate::resources::Resources;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// One action for the adapters to carry out.
#[must_use = "a decision does nothing until an adapter carries it out"]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decision {
    /// Raise the group's desired capacity.
    ScaleUp {
        /// ASG name.
        group: String,
        /// Nodes added.
        delta: u32,
        /// The new desired capacity.
        new_target: u32,
        /// What caused it, as data (metrics count scale-ups by it).
        cause: ScaleUpCause,
        /// Why, in words (pods helped, expander that chose, alternatives).
        reason: String,
    },
    /// Lower the desired capacity back, cancelling the part of an earlier scale-up that
    /// will not be fulfilled (launch failure, cool-off, provisioning timeout).
    RevertScaleUp {
        /// ASG name.
        group: String,
        /// Nodes cancelled.
        cancelled: u32,
        /// The new desired capacity.
        new_target: u32,
        /// Why.
        reason: String,
    },
    /// Take a node out: taint it `ToBeDeletedByClusterAutoscaler:NoSchedule`, evict its
    /// pods through the Eviction API (PDBs respected), then terminate the instance and
    /// decrement the group's desired capacity.
    RemoveNode {
        /// Node name.
        node: String,
        /// ASG name.
        group: String,
        /// Why the node goes.
        kind: RemovalKind,
        /// False when only DaemonSet/mirror pods run there (no drain needed).
        drain: bool,
        /// Why, in words.
        reason: String,
    },
    /// Set the replica count of the overprovisioning placeholder Deployment.
    SetOverprovisioning {
        /// Desired placeholder replicas.
        replicas: u32,
        /// Why (the ladder step or rule that gave it).
        reason: String,
    },
}

/// Why a node is removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RemovalKind {
    /// Unneeded: low utilization for `scale-down-unneeded-time`, pods fit elsewhere.
    ScaleDown,
    /// An old on-demand node whose spot replacement is ready.
    DrainBack,
    /// A node in an over-full zone whose replacement in a light zone is ready.
    Rebalance,
    /// AWS is taking the instance (spot interruption, rebalance recommendation,
    /// scheduled change): drain now.
    Interruption,
}

/// What caused a scale-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ScaleUpCause {
    /// Pending pods fit on the new nodes.
    PendingPods,
    /// Nodes of a pending-pod scale-up sent to a lighter zone of the balance set.
    ZoneBalance,
    /// A replacement launched before its node is drained (drain-back, rebalance).
    Replacement(RemovalKind),
    /// Nodes of a pending-pod scale-up sent to another spot family or started
    /// on-demand, after a recent spot capacity shortage.
    Hedge,
}

impl ScaleUpCause {
    /// A metric label: `pending_pods`, `zone_balance`, `replacement_drain_back`, ...
    pub fn label(self) -> &'static str {
        match self {
            ScaleUpCause::PendingPods => "pending_pods",
            ScaleUpCause::ZoneBalance => "zone_balance",
            ScaleUpCause::Hedge => "hedge",
            ScaleUpCause::Replacement(RemovalKind::DrainBack) => "replacement_drain_back",
            ScaleUpCause::Replacement(RemovalKind::Rebalance) => "replacement_rebalance",
            ScaleUpCause::Replacement(RemovalKind::ScaleDown) => "replacement_scale_down",
            ScaleUpCause::Replacement(RemovalKind::Interruption) => "replacement_interruption",
        }
    }
}

impl std::fmt::Display for ScaleUpCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScaleUpCause::PendingPods => f.write_str("pending pods"),
            ScaleUpCause::ZoneBalance => f.write_str("zone balance"),
            ScaleUpCause::Hedge => f.write_str("hedge"),
            ScaleUpCause::Replacement(kind) => write!(f, "replacement ({kind:?})"),
        }
    }
}

/// Why an underutilized node cannot be removed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScaleDownBlocker {
    /// The node has `cluster-autoscaler.kubernetes.io/scale-down-disabled=true`.
    ScaleDownDisabled,
    /// A pod has `cluster-autoscaler.kubernetes.io/safe-to-evict=false`.
    NotSafeToEvict {
        /// `namespace/name`.
        pod: String,
    },
    /// A PodDisruptionBudget covering a pod allows no (more) disruption.
    PdbExhausted {
        /// `namespace/name` of the pod.
        pod: String,
        /// `namespace/name` of the PDB.
        pdb: String,
    },
    /// A pod has no controller to recreate it.
    NoController {
        /// `namespace/name`.
        pod: String,
    },
    /// A pod is owned by a custom controller (`--skip-nodes-with-custom-controller-pods`).
    CustomController {
        /// `namespace/name`.
        pod: String,
        /// Owner kind.
        kind: String,
        /// Owner name.
        name: String,
    },
    /// A pod uses local storage (`--skip-nodes-with-local-storage`).
    LocalStorage {
        /// `namespace/name`.
        pod: String,
    },
    /// A kube-system pod without a PDB (`--skip-nodes-with-system-pods`).
    SystemPodWithoutPdb {
        /// `namespace/name`.
        pod: String,
    },
    /// A pod fits no other node.
    NoRoom {
        /// `namespace/name`.
        pod: String,
        /// The last predicate that refused it, in words.
        unfit: String,
    },
    /// A replacement's new nodes are ready but the old node cannot be drained yet.
    ReplacementNotDrained(Box<ScaleDownBlocker>),
    /// Draining the node would leave its zone so light that the balance set's skew
    /// goes over what it may keep; rebalancing would then evict again to fix it.
    ZoneBalance {
        /// The node's zone.
        zone: String,
        /// The set's skew after the removal.
        skew_after: u32,
        /// The skew the set may keep.
        threshold: u32,
    },
    /// A pod of the same workload as one of the node's pods started moments ago
    /// (`workload_settle`); the node waits, its unneeded time running.
    WorkloadSettling {
        /// `namespace/name` of the node's pod.
        pod: String,
        /// `kind/name` of its workload.
        workload: String,
    },
    /// Evicting the node's pods would leave a workload's other replicas, by its HPA's
    /// measured CPU, above a comfortable utilization while the evicted ones restart.
    WorkloadBusy {
        /// `kind/name` of the workload.
        workload: String,
        /// The utilization its remaining replicas would run at, percent of requests.
        utilization_percent: u32,
        /// `--scale-down-busy-workload-utilization`, percent of requests.
        limit_percent: u32,
    },
    /// Draining the node would leave less free room than `--scale-down-spare-nodes`
    /// nodes of its size.
    SpareRoom {
        /// The spare nodes kept.
        spare_nodes: u32,
        /// Free room left after the drain.
        free: Resources,
        /// Free room the spare nodes need.
        needed: Resources,
    },
}

impl std::fmt::Display for ScaleDownBlocker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::model::{SAFE_TO_EVICT, SCALE_DOWN_DISABLED};
        match self {
            ScaleDownBlocker::ScaleDownDisabled => {
                write!(f, "node has annotation {SCALE_DOWN_DISABLED}=true")
            }
            ScaleDownBlocker::NotSafeToEvict { pod } => {
                write!(f, "pod {pod} has {SAFE_TO_EVICT}=false")
            }
            ScaleDownBlocker::PdbExhausted { pod, pdb } => write!(
                f,
                "pod {pod} is covered by PDB {pdb} with no disruption allowed"
            ),
            ScaleDownBlocker::NoController { pod } => write!(
                f,
                "pod {pod} has no controller (set {SAFE_TO_EVICT}=true to allow)"
            ),
            ScaleDownBlocker::CustomController { pod, kind, name } => write!(
                f,
                "pod {pod} is owned by a custom controller ({kind} {name})"
            ),
            ScaleDownBlocker::LocalStorage { pod } => write!(f, "pod {pod} uses local storage"),
            ScaleDownBlocker::SystemPodWithoutPdb { pod } => {
                write!(f, "kube-system pod {pod} has no PDB")
            }
            ScaleDownBlocker::NoRoom { pod, unfit } => {
                write!(f, "pod {pod} fits no other node ({unfit})")
            }
            ScaleDownBlocker::ReplacementNotDrained(why) => {
                write!(f, "replacement ready but not drained yet: {why}")
            }
            ScaleDownBlocker::ZoneBalance {
                zone,
                skew_after,
                threshold,
            } => write!(
                f,
                "draining it would skew its balance set's zones to {skew_after} > {threshold} ({zone} is the lightest)"
            ),
            ScaleDownBlocker::WorkloadSettling { pod, workload } => write!(
                f,
                "pod {pod}'s workload {workload} started a pod moments ago: waiting for it to settle"
            ),
            // The utilization moves every round; like the spare room, it stays out of
            // the text (one Event per change of text).
            ScaleDownBlocker::WorkloadBusy {
                workload,
                limit_percent,
                ..
            } => write!(
                f,
                "evicting would run {workload}'s other replicas above {limit_percent}% of their CPU requests until the evicted ones restart (--scale-down-busy-workload-utilization)"
            ),
            // The free room left moves every round; the text must not, or each round
            // would send the node another Event (it is in the blocker's data).
            ScaleDownBlocker::SpareRoom {
                spare_nodes,
                needed,
                ..
            } => write!(
                f,
                "draining it would leave less free room than the {spare_nodes} spare node(s) of its size kept ({needed}; --scale-down-spare-nodes)"
            ),
        }
    }
}

impl Decision {
    /// The group the decision is about (none for the overprovisioning Deployment).
    pub fn group(&self) -> Option<&str> {
        match self {
            Decision::ScaleUp { group, .. }
            | Decision::RevertScaleUp { group, .. }
            | Decision::RemoveNode { group, .. } => Some(group),
            Decision::SetOverprovisioning { .. } => None,
        }
    }

    /// The human reason.
    pub fn reason(&self) -> &str {
        match self {
            Decision::ScaleUp { reason, .. }
            | Decision::RevertScaleUp { reason, .. }
            | Decision::RemoveNode { reason, .. }
            | Decision::SetOverprovisioning { reason, .. } => reason,
        }
    }
}

/// What the engine concluded about one pending pod (the basis of the
/// `TriggeredScaleUp` / `NotTriggerScaleUp` Kubernetes Events).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PodVerdict {
    /// Fits free capacity on an existing node; the scheduler will place it.
    FitsExistingNode {
        /// The node found.
        node: String,
    },
    /// Will fit on a node that is already being launched.
    WaitsForUpcomingNode {
        /// The group launching it.
        group: String,
    },
    /// A scale-up of this group was decided for it this round.
    TriggeredScaleUp {
        /// The group.
        group: String,
    },
    /// Nothing can be done for it now.
    NotTriggerScaleUp {
        /// Why, naming the predicate and the numbers.
        reason: String,
    },
    /// Its priority is below the expendable cutoff.
    Expendable {
        /// Its priority.
        priority: i32,
    },
}

/// The engine's conclusion about one pending pod.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodOutcome {
    /// `namespace/name`.
    pub pod: String,
    /// Verdict.
    pub verdict: PodVerdict,
}

/// What the engine concluded about a node it considered for removal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeVerdict {
    /// Unneeded since then; removed once `scale-down-unneeded-time` has passed.
    Unneeded {
        /// Since when.
        since: Timestamp,
    },
    /// Underutilized but cannot be removed.
    ScaleDownBlocked {
        /// Why (its `Display` is the Event message).
        blocker: ScaleDownBlocker,
    },
}

/// The engine's conclusion about one node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeOutcome {
    /// Node name.
    pub node: String,
    /// Verdict.
    pub verdict: NodeVerdict,
}

/// Per-group status, as shown in the status ConfigMap.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupStatus {
    /// ASG name.
    pub name: String,
    /// Min size.
    pub min_size: u32,
    /// Max size.
    pub max_size: u32,
    /// Desired capacity after this round's decisions.
    pub target: u32,
    /// Nodes registered in Kubernetes.
    pub registered: u32,
    /// Nodes requested but not registered yet.
    pub in_flight: u32,
    /// End of the latest cool-off that blocks every pool of the group, if any.
    pub cool_off_until: Option<Timestamp>,
    /// Health in words.
    pub why: String,
}

/// The status summary of one round.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The round's time.
    pub now: Timestamp,
    /// Per group, sorted by name.
    pub groups: Vec<GroupStatus>,
    /// Active cool-offs.
    pub cool_offs: Vec<(PoolKey, CoolOff)>,
    /// Pending pods considered (expendable ones excluded).
    pub pending_pods: usize,
    /// Pending pods nothing could help.
    pub unhelpable_pods: usize,
    /// Configuration problems in force (the last good configuration is used meanwhile).
    pub config_errors: Vec<String>,
    /// Pods bound to nodes the snapshot does not know.
    pub orphaned_pods: usize,
    /// Node replacements in progress (drain-back, rebalance): `(node, replacement group)`.
    pub replacements: Vec<(String, String)>,
    /// Max minus min nodes per zone, per balance set (sets with one zone omitted).
    pub zone_skew: Vec<(String, u32)>,
}

/// A change to a pod's `controller.kubernetes.io/pod-deletion-cost` (and to
/// [`crate::model::DELETION_COST_SET_BY_US`], which records that the value is ours).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodDeletionCost {
    /// `namespace/name`.
    pub pod: String,
    /// The cost to write; `None` removes both annotations (the node is no longer a
    /// scale-down candidate).
    pub cost: Option<i32>,
}

/// The output of one decision round.
#[must_use = "decisions do nothing until an adapter carries them out"]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Decisions {
    /// Actions, in the order they must be carried out (reverts first).
    pub actions: Vec<Decision>,
    /// One outcome per pending pod.
    pub pods: Vec<PodOutcome>,
    /// Outcomes for underutilized nodes.
    pub nodes: Vec<NodeOutcome>,
    /// Pod deletion costs to write or clear (only changes; empty when nothing changed).
    #[serde(default)]
    pub deletion_costs: Vec<PodDeletionCost>,
    /// Status summary.
    pub status: Status,
}
