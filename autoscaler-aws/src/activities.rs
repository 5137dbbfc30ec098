//! The second path for launch failures: `DescribeScalingActivities` for groups with a
//! scale-up in flight, failed activities classified like the EventBridge events.

use crate::api::{Api, Op};
use crate::error::AwsError;
use crate::events::launch_failure;
use autoscaler_core::Event;
use aws_sdk_autoscaling::types::{Activity, ScalingActivityStatusCode};
use serde_json::Value;
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use tokio::sync::Mutex;

/// Activities read per group and poll (the newest come first).
pub const ACTIVITIES_PER_CALL: i32 = 20;

/// Remembers the activities already reported.
#[derive(Debug)]
pub struct ActivityPoller {
    api: Arc<Api>,
    seen: Mutex<(HashSet<String>, VecDeque<String>)>,
}

/// Turns one activity into a launch failure, if it is a failed launch.
pub fn activity_failure(group: &str, a: &Activity) -> Option<Event> {
    let failed = matches!(
        a.status_code(),
        Some(ScalingActivityStatusCode::Failed | ScalingActivityStatusCode::Cancelled)
    );
    let launching = a.description().is_some_and(|d| d.starts_with("Launching"));
    if !failed || !launching {
        return None;
    }
    let details: Option<Value> = a.details().and_then(|d| serde_json::from_str(d).ok());
    let message = a
        .status_message()
        .unwrap_or("launch failed without a status message");
    Some(launch_failure(group, message, details.as_ref()))
}

impl ActivityPoller {
    /// A poller over `api`.
    pub fn new(api: Arc<Api>) -> Self {
        ActivityPoller {
            api,
            seen: Mutex::new((HashSet::new(), VecDeque::new())),
        }
    }

    /// Reads the latest activities of `groups` (one call each) and returns the new failed
    /// launches. A group whose call fails is logged and skipped.
    pub async fn poll(&self, groups: &[String]) -> Vec<Event> {
        let mut events = Vec::new();
        for group in groups {
            match self.poll_group(group).await {
                Ok(mut e) => events.append(&mut e),
                Err(e) => tracing::warn!(group, %e, "scaling activities not read"),
            }
        }
        events
    }

    async fn poll_group(&self, group: &str) -> Result<Vec<Event>, AwsError> {
        let out = self
            .api
            .call(
                Op::DescribeScalingActivities,
                self.api
                    .autoscaling
                    .describe_scaling_activities()
                    .auto_scaling_group_name(group)
                    .max_records(ACTIVITIES_PER_CALL)
                    .send(),
            )
            .await?;
        let mut seen = self.seen.lock().await;
        let mut events = Vec::new();
        for a in out.activities() {
            let Some(id) = a.activity_id() else { continue };
            if !seen.0.insert(id.to_string()) {
                continue;
            }
            seen.1.push_back(id.to_string());
            if seen.1.len() > 10_000 {
                if let Some(old) = seen.1.pop_front() {
                    seen.0.remove(&old);
                }
            }
            if let Some(e) = activity_failure(group, a) {
                events.push(e);
            }
        }
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use autoscaler_core::LaunchFailureReason;

    #[test]
    fn classifies_failed_launch_activities() {
        let a = Activity::builder()
            .activity_id("1")
            .auto_scaling_group_name("g")
            .description("Launching a new EC2 instance.  Status Reason: Could not launch Spot Instances. InsufficientInstanceCapacity - There is no Spot capacity available that matches your request. Launching EC2 instance failed.")
            .status_code(ScalingActivityStatusCode::Failed)
            .status_message("Could not launch Spot Instances. InsufficientInstanceCapacity - There is no Spot capacity available that matches your request. Launching EC2 instance failed.")
            .details(r#"{"Subnet ID":"subnet-1","Availability Zone":"eu-west-1b"}"#)
            .cause("c")
            .start_time(aws_smithy_types::DateTime::from_secs(0))
            .build();
        assert_eq!(
            activity_failure("g", &a),
            Some(Event::LaunchFailed {
                group: "g".into(),
                zone: Some("eu-west-1b".into()),
                instance_type: None,
                reason: LaunchFailureReason::InsufficientInstanceCapacity,
            })
        );
        let ok = Activity::builder()
            .activity_id("2")
            .auto_scaling_group_name("g")
            .description("Launching a new EC2 instance: i-1")
            .status_code(ScalingActivityStatusCode::Successful)
            .cause("c")
            .start_time(aws_smithy_types::DateTime::from_secs(0))
            .build();
        assert_eq!(activity_failure("g", &ok), None);
    }
}
