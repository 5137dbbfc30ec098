//! Events the adapters report to the engine.

use crate::model::CapacityType;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Why AWS could not launch an instance, classified from the scaling activity's status
/// message or the EventBridge "EC2 Instance Launch Unsuccessful" detail.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum LaunchFailureReason {
    /// No capacity for this type in this zone right now (the spot ICE).
    InsufficientInstanceCapacity,
    /// The account's spot instance count limit is reached (all spot pools are affected).
    MaxSpotInstanceCountExceeded,
    /// The account's vCPU quota for the instance family is reached.
    VcpuLimitExceeded,
    /// The account's instance limit for the type is reached.
    InstanceLimitExceeded,
    /// The mixed-instances request could not be fulfilled with any allowed type.
    UnfulfillableCapacity,
    /// The spot price is above the group's max price.
    SpotMaxPriceTooLow,
    /// Anything else (bad launch template, IAM, subnet out of addresses, ...).
    Other(String),
}

impl LaunchFailureReason {
    /// Classifies an AWS error code or a status message containing one.
    pub fn classify(text: &str) -> Self {
        const CODES: [(&str, LaunchFailureReason); 6] = [
            (
                "InsufficientInstanceCapacity",
                LaunchFailureReason::InsufficientInstanceCapacity,
            ),
            (
                "MaxSpotInstanceCountExceeded",
                LaunchFailureReason::MaxSpotInstanceCountExceeded,
            ),
            ("VcpuLimitExceeded", LaunchFailureReason::VcpuLimitExceeded),
            (
                "InstanceLimitExceeded",
                LaunchFailureReason::InstanceLimitExceeded,
            ),
            (
                "UnfulfillableCapacity",
                LaunchFailureReason::UnfulfillableCapacity,
            ),
            (
                "SpotMaxPriceTooLow",
                LaunchFailureReason::SpotMaxPriceTooLow,
            ),
        ];
        for (code, reason) in CODES {
            if text.contains(code) {
                return reason;
            }
        }
        if text.contains("do not have sufficient") && text.contains("capacity") {
            return LaunchFailureReason::InsufficientInstanceCapacity;
        }
        LaunchFailureReason::Other(text.chars().take(120).collect())
    }

    /// Whether the failure says the market ran out of capacity or price room (what
    /// spot requests meet), rather than a setup or quota problem.
    pub fn is_capacity_shortage(&self) -> bool {
        matches!(
            self,
            LaunchFailureReason::InsufficientInstanceCapacity
                | LaunchFailureReason::UnfulfillableCapacity
                | LaunchFailureReason::MaxSpotInstanceCountExceeded
                | LaunchFailureReason::SpotMaxPriceTooLow
        )
    }

    /// Whether the failure says a capacity *pool* (type, zone, market) is empty, so every
    /// group drawing from that pool should avoid it, not just the one that failed.
    pub fn is_pool_wide(&self) -> bool {
        matches!(
            self,
            LaunchFailureReason::InsufficientInstanceCapacity
                | LaunchFailureReason::UnfulfillableCapacity
                | LaunchFailureReason::MaxSpotInstanceCountExceeded
                | LaunchFailureReason::VcpuLimitExceeded
                | LaunchFailureReason::InstanceLimitExceeded
        )
    }
}

impl fmt::Display for LaunchFailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LaunchFailureReason::Other(s) => write!(f, "launch failed: {s}"),
            other => write!(f, "{other:?}"),
        }
    }
}

/// What AWS announced about an instance that is about to go away.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum InterruptionKind {
    /// "EC2 Spot Instance Interruption Warning": two minutes left.
    SpotInterruption,
    /// "EC2 Instance Rebalance Recommendation": elevated interruption risk.
    RebalanceRecommendation,
    /// AWS Health scheduled change (retirement, maintenance).
    ScheduledChange,
    /// "EC2 Instance State-change Notification" to stopping/shutting-down/terminated.
    StateChange,
}

/// Something that happened in the world since the last round.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Event {
    /// AWS failed to launch an instance for a group.
    LaunchFailed {
        /// ASG name.
        group: String,
        /// Zone, when the message names it.
        zone: Option<String>,
        /// Instance type, when the message names it.
        instance_type: Option<String>,
        /// Classified reason.
        reason: LaunchFailureReason,
    },
    /// An instance will be (or is being) taken away by AWS.
    InstanceInterruption {
        /// EC2 instance id (`i-...`), matched to a node through its `providerID`.
        instance_id: String,
        /// What was announced.
        kind: InterruptionKind,
        /// Zone, when known.
        zone: Option<String>,
        /// Instance type, when known.
        instance_type: Option<String>,
        /// When the instance goes away, when announced.
        deadline: Option<crate::time::Timestamp>,
    },
    /// Removing a node failed (eviction blocked past the grace period, termination
    /// refused); the group waits `scale-down-delay-after-failure` before the next try.
    NodeRemovalFailed {
        /// Node name.
        node: String,
        /// Why.
        reason: String,
    },
    /// A pool is known to be out of capacity without a group having failed yet (e.g. an
    /// operator override, or another cluster in the account reporting it).
    PoolUnavailable {
        /// Market.
        capacity_type: CapacityType,
        /// Zone, or every zone.
        zone: Option<String>,
        /// Instance type, or every type.
        instance_type: Option<String>,
        /// Why.
        reason: LaunchFailureReason,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_aws_status_messages() {
        let msg = "Launching a new EC2 instance. Status Reason: We currently do not have sufficient \
                   m5.2xlarge capacity in the Availability Zone you requested (us-east-1a). Our system \
                   will be working on provisioning additional capacity. Launching EC2 instance failed.";
        assert_eq!(
            LaunchFailureReason::classify(msg),
            LaunchFailureReason::InsufficientInstanceCapacity
        );
        assert_eq!(
            LaunchFailureReason::classify(
                "MaxSpotInstanceCountExceeded: Max spot instance count exceeded"
            ),
            LaunchFailureReason::MaxSpotInstanceCountExceeded
        );
        let other = LaunchFailureReason::classify("The security group 'sg-1' does not exist");
        assert!(matches!(other, LaunchFailureReason::Other(_)));
        assert!(!other.is_pool_wide());
        assert!(LaunchFailureReason::VcpuLimitExceeded.is_pool_wide());
    }
}
