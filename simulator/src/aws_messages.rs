//! Failures as AWS reports them: what the simulator's cloud emits, and the core event
//! `ours` gets from it (exactly what the AWS adapter reads from the same message).

use autoscaler_core::{CapacityType, Event, LaunchFailureReason};

/// A failed launch as AWS records it (the scaling activity's status message and the
/// zone of its details), with the event the simulator hands `ours` for it.
#[derive(Clone, Debug, PartialEq)]
pub struct AwsLaunchFailure {
    /// ASG name.
    pub group: String,
    /// The activity's `StatusMessage` (the EventBridge event's `StatusMessage` too).
    pub status_message: String,
    /// `Details."Availability Zone"`.
    pub zone: String,
    /// What `ours` receives: only what the message and details say.
    pub event: Event,
}

impl AwsLaunchFailure {
    /// The failure AWS reports when no pool of the group has capacity in `zone`: spot
    /// requests get a message without the type; on-demand ones name the type tried.
    pub fn new(group: &str, capacity_type: CapacityType, zone: &str, first_type: &str) -> Self {
        let (status_message, instance_type) = match capacity_type {
            CapacityType::Spot => (
                "Could not launch Spot Instances. InsufficientInstanceCapacity - There is no Spot capacity available that matches your request. Launching EC2 instance failed.".to_string(),
                None,
            ),
            CapacityType::OnDemand => (
                format!("We currently do not have sufficient {first_type} capacity in the Availability Zone you requested ({zone}). Our system will be working on provisioning additional capacity. Launching EC2 instance failed."),
                Some(first_type.to_string()),
            ),
        };
        let event = Event::LaunchFailed {
            group: group.to_string(),
            zone: Some(zone.to_string()),
            instance_type,
            reason: LaunchFailureReason::classify(&status_message),
        };
        AwsLaunchFailure {
            group: group.to_string(),
            status_message,
            zone: zone.to_string(),
            event,
        }
    }
}
