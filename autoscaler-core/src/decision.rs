//! What the engine decides: plain data, each item with a reason a person can read.

use crate::cooloff::{CoolOff, PoolKey};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// One action for the adapters to carry out.
#[must_use = "a decision does nothing until an adapter carries it out"]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Decision {
    /// Raise the group's desired capacity.
    ScaleUp {
        /// ASG name.
        group: String,
        /// Nodes added.
        delta: u32,
        /// The new desired capacity.
        new_target: u32,
        /// Why (pods helped, expander that chose, alternatives).
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
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

impl Decision {
    /// The group the decision is about.
    pub fn group(&self) -> &str {
        match self {
            Decision::ScaleUp { group, .. }
            | Decision::RevertScaleUp { group, .. }
            | Decision::RemoveNode { group, .. } => group,
            Decision::SetOverprovisioning { .. } => "",
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
        /// Why.
        reason: String,
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
    /// Status summary.
    pub status: Status,
}
