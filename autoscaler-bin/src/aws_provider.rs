//! [`NodeGroupProvider`] for AWS AutoScalingGroups, over the `autoscaler-aws` adapter.
//!
//! - Discovery: `--nodes=min:max:name` and `--node-group-auto-discovery=asg:tag=...`
//!   become the adapter's [`GroupSpec`]s. [`NodeGroupProvider::groups`] runs one scan
//!   per round (the adapter's caches keep it at one `DescribeAutoScalingGroups` page per
//!   100 groups in steady state); [`NodeGroupProvider::instances`] reuses that scan, so
//!   nodes are mapped to groups by `providerID` against the same view.
//! - Actuation: `ScaleUp` / `RevertScaleUp` go through the adapter's [`Actuator`]
//!   (compare-and-set against a fresh read; conflicts are logged and left to the next
//!   round); node removal is `TerminateInstanceInAutoScalingGroup` with decrement.
//! - Events: the SQS queue of `--event-queue-url` is long-polled in a background task
//!   that feeds the controller's event channel and wakes the loop
//!   ([`AwsProvider::spawn_event_queue`]); `DescribeScalingActivities` of groups with a
//!   scale-up in flight is polled each round ([`NodeGroupProvider::poll_events`]).
//!
//! [`Actuator`]: autoscaler_aws::Actuator

use crate::flags::Flags;
use crate::provider::{Instance, NodeGroupProvider, ProviderError};
use autoscaler_aws::{
    AwsCloud, AwsConfig, EventQueue, GroupSpec, Outcome, QueueConfig, ReceivedEvent, Scan,
};
use autoscaler_core::{Decision, Event, NodeGroup};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch, Notify};

/// The adapter's group specs for the flags (`--nodes`, then `--node-group-auto-discovery`).
pub fn group_specs(flags: &Flags) -> Vec<GroupSpec> {
    let explicit = flags.nodes.iter().cloned().map(GroupSpec::from);
    let tagged = flags
        .node_group_auto_discovery
        .iter()
        .cloned()
        .map(GroupSpec::from);
    explicit.chain(tagged).collect()
}

/// The AWS SDK configuration: the default chain (env, profile, IRSA, instance metadata),
/// with `--aws-region` and `--aws-endpoint-url` when given (the SDK also reads
/// `AWS_REGION` and `AWS_ENDPOINT_URL` itself).
pub async fn sdk_config(flags: &Flags) -> aws_types::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if !flags.aws_region.is_empty() {
        loader = loader.region(aws_types::region::Region::new(flags.aws_region.clone()));
    }
    if !flags.aws_endpoint_url.is_empty() {
        loader = loader.endpoint_url(&flags.aws_endpoint_url);
    }
    loader.load().await
}

struct Inner {
    cloud: AwsCloud,
    /// The latest scan (by [`NodeGroupProvider::groups`]).
    scan: Mutex<Option<Arc<Scan>>>,
    /// The problems the latest scan reported, to log only changes.
    scan_errors: Mutex<Vec<String>>,
    queue: Option<Arc<EventQueue>>,
}

/// AutoScalingGroups as node groups. A clone shares the clients, caches and last scan.
#[derive(Clone)]
pub struct AwsProvider {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AwsProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsProvider").finish_non_exhaustive()
    }
}

fn cloud_err(e: impl std::fmt::Display) -> ProviderError {
    ProviderError::Cloud(e.to_string())
}

impl AwsProvider {
    /// The provider the flags describe (SDK config from the environment and flags).
    pub async fn from_flags(flags: &Flags) -> Self {
        let sdk = sdk_config(flags).await;
        Self::new(&sdk, group_specs(flags), &flags.event_queue_url)
    }

    /// A provider over `sdk` managing `specs`; `queue_url` (may be empty) is the SQS
    /// queue the EventBridge rules feed.
    pub fn new(sdk: &aws_types::SdkConfig, specs: Vec<GroupSpec>, queue_url: &str) -> Self {
        let mut config = AwsConfig::default();
        config.scan.specs = specs;
        let cloud = AwsCloud::new(sdk, config);
        let queue = (!queue_url.is_empty())
            .then(|| Arc::new(cloud.event_queue(QueueConfig::new(queue_url))));
        AwsProvider {
            inner: Arc::new(Inner {
                cloud,
                scan: Mutex::new(None),
                scan_errors: Mutex::new(Vec::new()),
                queue,
            }),
        }
    }

    /// The adapter (metrics, event infrastructure).
    pub fn cloud(&self) -> &AwsCloud {
        &self.inner.cloud
    }

    fn last_scan(&self) -> Option<Arc<Scan>> {
        self.inner
            .scan
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Scans now and keeps the result for [`NodeGroupProvider::instances`] and the
    /// activity poll.
    pub async fn rescan(&self) -> Result<Arc<Scan>, ProviderError> {
        let scan = Arc::new(self.inner.cloud.scan().await.map_err(cloud_err)?);
        let problems: Vec<String> = scan.errors.iter().map(|e| e.to_string()).collect();
        {
            let mut last = self
                .inner
                .scan_errors
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if *last != problems {
                for p in &problems {
                    tracing::warn!(problem = %p, "AWS node group not usable");
                }
                *last = problems;
            }
        }
        if let Some(q) = &self.inner.queue {
            q.learn(&scan);
        }
        *self.inner.scan.lock().unwrap_or_else(|e| e.into_inner()) = Some(scan.clone());
        Ok(scan)
    }

    /// Starts the SQS consumer (when `--event-queue-url` is set): each event goes to
    /// `sink` (the controller's event channel) and wakes the loop through `wake`.
    /// The queue is read only while `leader` is true: SQS gives each message to one
    /// reader, and a standby reading it would take ICE events from the leader.
    /// Returns whether a consumer was started.
    pub fn spawn_event_queue(
        &self,
        sink: mpsc::UnboundedSender<Event>,
        wake: Arc<Notify>,
        mut leader: watch::Receiver<bool>,
    ) -> bool {
        let Some(queue) = self.inner.queue.clone() else {
            return false;
        };
        let (tx, mut rx) = mpsc::channel::<ReceivedEvent>(64);
        tokio::spawn(async move {
            loop {
                if leader.wait_for(|l| *l).await.is_err() {
                    return;
                }
                tracing::info!("AWS: leading: reading the event queue");
                let reader = tokio::spawn(queue.clone().run(tx.clone()));
                let lost = leader.wait_for(|l| !*l).await.is_ok();
                // A message received but not yet deleted is delivered again after its
                // visibility timeout, to whoever leads then.
                reader.abort();
                if !lost {
                    return;
                }
                tracing::info!("AWS: not leading: the event queue is left to the leader");
            }
        });
        tokio::spawn(async move {
            while let Some(e) = rx.recv().await {
                tracing::info!(
                    event = ?e.event,
                    message_id = %e.message_id,
                    "event from the SQS queue"
                );
                if sink.send(e.event).is_err() {
                    return;
                }
                wake.notify_one();
            }
        });
        true
    }

    /// Carries out one `ScaleUp` / `RevertScaleUp` with the adapter's checked
    /// compare-and-set, logging what happened.
    async fn actuate(&self, decision: &Decision) -> Result<(), ProviderError> {
        let outcomes = self.inner.cloud.apply(std::slice::from_ref(decision)).await;
        for o in outcomes {
            match o {
                Outcome::Applied { group, from, to } => {
                    tracing::info!(group, from, to, "AWS: desired capacity set")
                }
                Outcome::Clamped {
                    group,
                    from,
                    requested,
                    to,
                    why,
                } => tracing::info!(group, from, requested, to, why, "AWS: desired capacity clamped"),
                Outcome::AlreadyApplied { group, desired } => {
                    tracing::debug!(group, desired, "AWS: desired capacity already set")
                }
                Outcome::Conflict {
                    group,
                    expected,
                    actual,
                } => tracing::warn!(
                    group,
                    expected,
                    actual,
                    "AWS: desired capacity changed by someone else; nothing written, the next round decides again"
                ),
                Outcome::Unsupported { decision } => {
                    return Err(ProviderError::Cloud(format!(
                        "the AWS adapter does not carry out {decision}"
                    )))
                }
                Outcome::Failed { target, error } => {
                    return Err(ProviderError::Cloud(format!("{target}: {error}")))
                }
                Outcome::Terminated { .. } | Outcome::AlreadyTerminated { .. } => {}
            }
        }
        Ok(())
    }
}

impl NodeGroupProvider for AwsProvider {
    async fn groups(&self) -> Result<Vec<NodeGroup>, ProviderError> {
        Ok(self.rescan().await?.node_groups())
    }

    async fn instances(&self) -> Result<Vec<Instance>, ProviderError> {
        let scan = match self.last_scan() {
            Some(s) => s,
            None => self.rescan().await?,
        };
        Ok(scan
            .groups
            .iter()
            .flat_map(|g| g.instances.iter().cloned())
            .collect())
    }

    async fn set_desired_capacity(&self, group: &str, desired: u32) -> Result<(), ProviderError> {
        // As a decision against the last scan's desired capacity, so the adapter's
        // compare-and-set applies.
        let scan = match self.last_scan() {
            Some(s) => s,
            None => self.rescan().await?,
        };
        let current = scan
            .group(group)
            .ok_or_else(|| ProviderError::UnknownGroup(group.to_string()))?
            .group
            .target_size;
        let reason = "set_desired_capacity".to_string();
        let decision = if desired >= current {
            Decision::ScaleUp {
                group: group.to_string(),
                delta: desired - current,
                new_target: desired,
                reason,
            }
        } else {
            Decision::RevertScaleUp {
                group: group.to_string(),
                cancelled: current - desired,
                new_target: desired,
                reason,
            }
        };
        self.actuate(&decision).await
    }

    async fn apply_decision(&self, decision: &Decision) -> Result<(), ProviderError> {
        self.actuate(decision).await
    }

    async fn terminate_instance(&self, instance_id: &str) -> Result<(), ProviderError> {
        match self.inner.cloud.terminate_instance(instance_id, true).await {
            Outcome::Terminated { .. } | Outcome::AlreadyTerminated { .. } => Ok(()),
            Outcome::Failed { error, .. } => Err(cloud_err(error)),
            other => Err(ProviderError::Cloud(format!("{other:?}"))),
        }
    }

    async fn poll_events(&self) -> Result<Vec<Event>, ProviderError> {
        let Some(scan) = self.last_scan() else {
            return Ok(Vec::new());
        };
        // Bounded so a slow API never stalls a round for long.
        match tokio::time::timeout(
            Duration::from_secs(5),
            self.inner.cloud.poll_activities(&scan),
        )
        .await
        {
            Ok(events) => Ok(events),
            Err(_) => {
                tracing::warn!("DescribeScalingActivities took over 5 s; skipped this round");
                Ok(Vec::new())
            }
        }
    }

    /// AWS's node lifecycle controller (cloud-controller-manager) deletes the Node
    /// of a terminated instance.
    fn deletes_node_objects(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_from_flags() {
        let f = crate::flags::parse(&[
            "autoscaler",
            "--nodes=1:5:web-spot",
            "--node-group-auto-discovery=asg:tag=k8s.io/cluster-autoscaler/enabled,k8s.io/cluster-autoscaler/prod=owned",
        ])
        .unwrap();
        assert_eq!(
            group_specs(&f),
            vec![
                GroupSpec::Explicit {
                    min: 1,
                    max: 5,
                    name: "web-spot".into()
                },
                GroupSpec::Tags(vec![
                    ("k8s.io/cluster-autoscaler/enabled".into(), None),
                    (
                        "k8s.io/cluster-autoscaler/prod".into(),
                        Some("owned".into())
                    ),
                ]),
            ]
        );
    }
}
