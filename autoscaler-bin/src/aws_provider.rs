//! [`NodeGroupProvider`] for AWS AutoScalingGroups, over the `autoscaler-aws` adapter.
//!
//! - Discovery: `--nodes=min:max:name` and `--node-group-auto-discovery=asg:tag=...`
//!   become the adapter's [`GroupSpec`]s. [`NodeGroupProvider::groups`] gives the round
//!   a scan (the adapter's caches keep one at one `DescribeAutoScalingGroups` page per
//!   100 groups in steady state): the last one until [`SCAN_REUSE`] after it finished
//!   (until [`SCAN_MAX_AGE`] while the next one is still being read),
//!   with the next one started in the background, else one made now. Rounds that follow
//!   each other closely (a burst of pending pods) so do not wait for the describe, and
//!   a quiet cluster scans once per round as before. [`NodeGroupProvider::instances`]
//!   reuses that scan, so nodes are mapped to groups by `providerID` against the same
//!   view.
//! - Actuation: `ScaleUp` / `RevertScaleUp` go through the adapter's [`Actuator`]
//!   (compare-and-set against the round's own scan until `actuation.max_view_age`,
//!   10 s, after it returned, else a fresh read; conflicts are logged and left to
//!   the next round); node removal is `TerminateInstanceInAutoScalingGroup` with
//!   decrement.
//! - Events: the SQS queue of `--event-queue-url` is long-polled in a background task
//!   ([`NodeGroupProvider::start`]) that keeps what it receives and wakes the loop
//!   ([`AwsProvider::spawn_event_queue`]); each round takes those events with
//!   `DescribeScalingActivities` of groups with a scale-up in flight
//!   ([`NodeGroupProvider::poll_events`]), and the messages are deleted only after the
//!   round succeeded ([`NodeGroupProvider::round_done`]): at-least-once, a message
//!   whose events were not handled (a crash, a lost Lease) comes back after the
//!   visibility timeout, and the engine handles a repeat harmlessly.
//! - Metrics: the adapter's counters as `autoscaler_aws_*` ([`AwsCollector`], through
//!   [`NodeGroupProvider::collectors`]).
//!
//! [`Actuator`]: autoscaler_aws::Actuator

use crate::flags::Flags;
use crate::provider::{Instance, NodeGroupProvider, ProviderContext, ProviderError};
use autoscaler_aws::{
    AwsCloud, AwsConfig, Batch, EventQueue, GroupSpec, Outcome, QueueConfig, Receipt,
    ReceivedEvent, Scan,
};
use autoscaler_core::{Decision, Event, NodeGroup};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch, Notify};

/// How long after it finished a scan may start a round while the next one is read in
/// the background. Below the actuation view's 10 s, and below the 10 s default scan
/// interval, so a quiet cluster still reads AWS at the start of each round.
pub const SCAN_REUSE: Duration = Duration::from_secs(5);

/// How long after it finished a scan may still start a round while the next one, started
/// in the background, has not returned yet. Past it a round waits for that scan.
/// cluster-autoscaler refreshes its ASG cache every minute.
pub const SCAN_MAX_AGE: Duration = Duration::from_secs(30);

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
    load_sdk_config(&flags.aws_region, &flags.aws_endpoint_url).await
}

/// The default chain with a region and an endpoint override when not empty (shared by
/// the controller's flags and `autoscaler event-infra`).
pub async fn load_sdk_config(region: &str, endpoint_url: &str) -> aws_types::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if !region.is_empty() {
        loader = loader.region(aws_types::region::Region::new(region.to_string()));
    }
    if !endpoint_url.is_empty() {
        loader = loader.endpoint_url(endpoint_url);
    }
    loader.load().await
}

struct Inner {
    cloud: AwsCloud,
    /// The latest scan (by [`NodeGroupProvider::groups`]), when it started and when it
    /// finished.
    scan: Mutex<Option<(Arc<Scan>, Instant, Instant)>>,
    /// A background scan is under way.
    refreshing: AtomicBool,
    /// Held while scanning: scans never overlap (a slow API answers two describes of
    /// every instance slower than one, and a timed-out call keeps it busy anyway).
    scanning: tokio::sync::Mutex<()>,
    /// The problems the latest scan reported, to log only changes.
    scan_errors: Mutex<Vec<String>>,
    queue: Option<Arc<EventQueue>>,
    /// `--event-queue-url` (empty: none), for the log.
    queue_url: String,
    /// SQS events received and not yet taken by a round, with their messages.
    inbox: Mutex<Inbox>,
}

/// Queue messages between their receipt and their deletion.
#[derive(Default)]
struct Inbox {
    /// Events not yet handed to a round, in arrival order.
    events: Vec<ReceivedEvent>,
    /// Their messages (and dropped malformed ones).
    waiting: Vec<Receipt>,
    /// Messages whose events a round has taken: deleted once a round succeeds.
    taken: Vec<Receipt>,
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

impl AwsProvider {
    /// The provider the flags describe (SDK config from the environment and flags).
    pub async fn from_flags(flags: &Flags) -> Self {
        let sdk = sdk_config(flags).await;
        let queue = (!flags.event_queue_url.is_empty()).then(|| QueueConfig {
            visibility_timeout: flags.event_queue_visibility_timeout,
            ..QueueConfig::new(&flags.event_queue_url)
        });
        let timeouts = autoscaler_aws::TimeoutSettings {
            attempt: flags.aws_attempt_timeout,
            operation: flags.aws_call_timeout,
        };
        Self::new(&sdk, group_specs(flags), queue, timeouts)
    }

    /// A provider over `sdk` managing `specs`, reading the SQS queue the EventBridge
    /// rules feed when `queue` is given, with `timeouts` on every AWS call.
    pub fn new(
        sdk: &aws_types::SdkConfig,
        specs: Vec<GroupSpec>,
        queue: Option<QueueConfig>,
        timeouts: autoscaler_aws::TimeoutSettings,
    ) -> Self {
        let mut config = AwsConfig {
            timeouts,
            ..AwsConfig::default()
        };
        config.scan.specs = specs;
        let cloud = AwsCloud::new(sdk, config);
        let queue_url = queue
            .as_ref()
            .map(|q| q.queue_url.clone())
            .unwrap_or_default();
        let queue = queue.map(|q| Arc::new(cloud.event_queue(q)));
        AwsProvider {
            inner: Arc::new(Inner {
                cloud,
                scan: Mutex::new(None),
                refreshing: AtomicBool::new(false),
                scanning: tokio::sync::Mutex::new(()),
                scan_errors: Mutex::new(Vec::new()),
                queue,
                queue_url,
                inbox: Mutex::new(Inbox::default()),
            }),
        }
    }

    /// The adapter (metrics, event infrastructure).
    pub fn cloud(&self) -> &AwsCloud {
        &self.inner.cloud
    }

    fn last_scan(&self) -> Option<Arc<Scan>> {
        self.last_scan_and_start().map(|(scan, _)| scan)
    }

    fn last_scan_and_start(&self) -> Option<(Arc<Scan>, Instant)> {
        self.last_scan_timed()
            .map(|(scan, started, _)| (scan, started))
    }

    fn last_scan_timed(&self) -> Option<(Arc<Scan>, Instant, Instant)> {
        self.inner
            .scan
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The scan a round starts from: the last one while it is younger than
    /// `reuse` (a fresh one is then read in the background), else one made now.
    pub async fn scan_for_round(&self, reuse: Duration) -> Result<Arc<Scan>, ProviderError> {
        // Counted from the end of the scan: a scan slower than `reuse` (a large
        // cluster, a slow endpoint) would otherwise be stale on arrival, and every round
        // would wait for the next one.
        match self.last_scan_timed() {
            Some((scan, _, finished)) if finished.elapsed() <= reuse => {
                self.refresh_in_background();
                Ok(scan)
            }
            // The next scan is already being read: a round does not wait for a describe
            // that is slower than `reuse` (one page of 5,000 instances took moto 5-10 s on
            // the burst bench) while the last scan is younger than SCAN_MAX_AGE.
            Some((scan, _, finished))
                if finished.elapsed() <= SCAN_MAX_AGE
                    && self.inner.refreshing.load(Ordering::Acquire) =>
            {
                Ok(scan)
            }
            _ => self.rescan().await,
        }
    }

    /// Starts a scan in the background unless one is under way. Its failure is logged;
    /// the next round that finds no young scan scans itself and reports the error.
    fn refresh_in_background(&self) {
        if self.inner.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(e) = this.rescan().await {
                tracing::warn!(error = %e, "AWS: background scan failed");
            }
            this.inner.refreshing.store(false, Ordering::Release);
        });
    }

    /// Scans now and keeps the result for [`NodeGroupProvider::instances`] and the
    /// activity poll.
    /// A scan that finished while this one waited for its turn is taken instead.
    pub async fn rescan(&self) -> Result<Arc<Scan>, ProviderError> {
        let seen = self.last_scan_and_start().map(|(_, at)| at);
        let _turn = self.inner.scanning.lock().await;
        if let Some((scan, at)) = self.last_scan_and_start() {
            if seen.is_none_or(|seen| at > seen) {
                return Ok(scan);
            }
        }
        let started = Instant::now();
        let scan = Arc::new(self.inner.cloud.scan().await.map_err(ProviderError::Aws)?);
        let problems: Vec<String> = scan.errors.iter().map(|e| e.to_string()).collect();
        {
            let mut last = self
                .inner
                .scan_errors
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if *last != problems {
                for e in &scan.errors {
                    let action = match &e.problem {
                        autoscaler_aws::GroupProblem::Aws(a) => a.action(),
                        autoscaler_aws::GroupProblem::Setup(_) => None,
                    };
                    tracing::warn!(
                        group = %e.group,
                        kind = e.problem.kind(),
                        action,
                        problem = %e.problem,
                        "AWS node group not usable"
                    );
                }
                *last = problems;
            }
        }
        if let Some(q) = &self.inner.queue {
            q.learn(&scan);
        }
        {
            // A slow scan that started before the one kept is older: not kept.
            let mut kept = self.inner.scan.lock().unwrap_or_else(|e| e.into_inner());
            if kept.as_ref().is_none_or(|(_, at, _)| *at <= started) {
                *kept = Some((scan.clone(), started, Instant::now()));
            }
        }
        Ok(scan)
    }

    /// Starts the SQS consumer (when `--event-queue-url` is set): each batch's events
    /// wait in the inbox for the next round ([`NodeGroupProvider::poll_events`]), and
    /// `wake` starts that round. The queue is read only while `leader` is true: SQS gives
    /// each message to one reader, and a standby reading it would take ICE events from
    /// the leader. Returns whether a consumer was started.
    pub fn spawn_event_queue(&self, wake: Arc<Notify>, mut leader: watch::Receiver<bool>) -> bool {
        let Some(queue) = self.inner.queue.clone() else {
            return false;
        };
        let (tx, mut rx) = mpsc::channel::<Batch>(16);
        let inner = self.inner.clone();
        tokio::spawn(async move {
            loop {
                if leader.wait_for(|l| *l).await.is_err() {
                    return;
                }
                tracing::info!("AWS: leading: reading the event queue");
                let reader = tokio::spawn(queue.clone().run(tx.clone()));
                let lost = leader.wait_for(|l| !*l).await.is_ok();
                reader.abort();
                // Messages received but not deleted come back after their visibility
                // timeout, to whoever leads then; nothing of them is kept here.
                *inner.inbox.lock().unwrap_or_else(|e| e.into_inner()) = Inbox::default();
                if !lost {
                    return;
                }
                tracing::info!("AWS: not leading: the event queue is left to the leader");
            }
        });
        let inner = self.inner.clone();
        tokio::spawn(async move {
            while let Some(batch) = rx.recv().await {
                for e in &batch.events {
                    tracing::info!(
                        event = ?e.event,
                        message_id = %e.message_id,
                        "event from the SQS queue"
                    );
                }
                let mut inbox = inner.inbox.lock().unwrap_or_else(|e| e.into_inner());
                inbox.events.extend(batch.events);
                inbox.waiting.extend(batch.receipts);
                drop(inbox);
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
                    return Err(ProviderError::Unsupported {
                        provider: "AWS adapter",
                        decision,
                    })
                }
                Outcome::Failed { target, error } => {
                    return Err(ProviderError::AwsTarget { target, error })
                }
                // Not an answer to a capacity change: nothing to log.
                Outcome::Terminated { .. } | Outcome::AlreadyTerminated { .. } => {}
            }
        }
        Ok(())
    }
}

impl NodeGroupProvider for AwsProvider {
    async fn groups(&self) -> Result<Vec<NodeGroup>, ProviderError> {
        Ok(self.scan_for_round(SCAN_REUSE).await?.node_groups())
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

    async fn apply(&self, decision: &Decision) -> Result<(), ProviderError> {
        self.actuate(decision).await
    }

    async fn terminate_instance(&self, instance_id: &str) -> Result<(), ProviderError> {
        match self.inner.cloud.terminate_instance(instance_id, true).await {
            Outcome::Terminated { .. } | Outcome::AlreadyTerminated { .. } => Ok(()),
            Outcome::Failed { error, .. } => Err(ProviderError::Aws(error)),
            other @ (Outcome::Applied { .. }
            | Outcome::Clamped { .. }
            | Outcome::AlreadyApplied { .. }
            | Outcome::Conflict { .. }
            | Outcome::Unsupported { .. }) => Err(ProviderError::UnexpectedOutcome(other)),
        }
    }

    async fn poll_events(&self) -> Result<Vec<Event>, ProviderError> {
        // Queue events first (they came first); their messages wait for the round.
        let mut events: Vec<Event> = {
            let mut inbox = self.inner.inbox.lock().unwrap_or_else(|e| e.into_inner());
            let waiting = std::mem::take(&mut inbox.waiting);
            inbox.taken.extend(waiting);
            std::mem::take(&mut inbox.events)
                .into_iter()
                .map(|e| e.event)
                .collect()
        };
        let Some(scan) = self.last_scan() else {
            return Ok(events);
        };
        // Bounded so a slow API never stalls a round for long.
        match tokio::time::timeout(
            Duration::from_secs(5),
            self.inner.cloud.poll_activities(&scan),
        )
        .await
        {
            Ok(activities) => {
                events.extend(activities);
                Ok(events)
            }
            Err(_) => {
                tracing::warn!("DescribeScalingActivities took over 5 s; skipped this round");
                Ok(events)
            }
        }
    }

    /// Deletes the queue messages whose events the rounds took, now that a round
    /// succeeded. A failed delete is logged; the message comes back and its events are
    /// handled again (the engine is idempotent for them).
    async fn round_done(&self) {
        let Some(queue) = &self.inner.queue else {
            return;
        };
        let taken = {
            let mut inbox = self.inner.inbox.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::take(&mut inbox.taken)
        };
        if taken.is_empty() {
            return;
        }
        if let Err(e) = queue.ack(&taken).await {
            tracing::warn!(%e, "could not delete handled SQS messages; they will come back");
        }
    }

    /// AWS's node lifecycle controller (cloud-controller-manager) deletes the Node
    /// of a terminated instance.
    fn deletes_node_objects(&self) -> bool {
        true
    }

    /// The SQS consumer, when `--event-queue-url` is set ([`AwsProvider::spawn_event_queue`]).
    fn start(&self, context: &ProviderContext) {
        if self.spawn_event_queue(context.wake.clone(), context.leader.clone()) {
            tracing::info!(queue = %self.inner.queue_url, "AWS: consuming the event queue");
        } else {
            tracing::info!("AWS: no --event-queue-url; launch failures come from DescribeScalingActivities only");
        }
    }

    /// The adapter's counters as `autoscaler_aws_*` families ([`AwsCollector`]).
    fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![Box::new(AwsCollector(self.inner.cloud.metrics().clone()))]
    }

    /// The latest scan's on-demand prices with their sources (api, table, override,
    /// estimate).
    fn on_demand_prices(&self) -> Vec<autoscaler_aws::PriceQuote> {
        self.inner.cloud.metrics().on_demand_prices()
    }
}

/// The AWS adapter's counters (API calls per action, errors, throttling, rate limiter
/// waits, SQS events), exposed as `autoscaler_aws_*` families, read at each scrape. The
/// one renderer of [`autoscaler_aws::Metrics`].
#[derive(Debug)]
pub struct AwsCollector(pub Arc<autoscaler_aws::Metrics>);

impl Collector for AwsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use autoscaler_aws::{Op, OpStats};
        let m = &self.0;
        type Series = (&'static str, &'static str, fn(&OpStats) -> f64);
        let per_action: [Series; 5] = [
            (
                "autoscaler_aws_api_calls",
                "AWS API calls (each may take several attempts), by action.",
                |s| s.calls as f64,
            ),
            (
                "autoscaler_aws_api_errors",
                "AWS API calls that ended in an error, by action.",
                |s| s.errors as f64,
            ),
            (
                "autoscaler_aws_api_throttled",
                "HTTP attempts AWS answered with a throttling error, by action.",
                |s| s.throttled_attempts as f64,
            ),
            (
                "autoscaler_aws_api_call_seconds",
                "Time spent in AWS API calls, retries included, by action.",
                |s| s.latency_micros_sum as f64 / 1e6,
            ),
            (
                "autoscaler_aws_rate_limit_wait_seconds",
                "Time calls waited for the client-side token bucket, by action.",
                |s| s.rate_limit_wait_micros as f64 / 1e6,
            ),
        ];
        for (name, help, value) in per_action {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for &op in Op::ALL {
                let labels = [("action", op.action())];
                ConstCounter::new(value(&m.op(op))).encode(family.encode_family(&labels)?)?;
            }
        }
        let e = m.events();
        for (name, help, v) in [
            (
                "autoscaler_aws_events_received",
                "SQS messages received from the event queue.",
                e.received,
            ),
            (
                "autoscaler_aws_events_delivered",
                "Events handed to the engine.",
                e.delivered,
            ),
            (
                "autoscaler_aws_events_malformed",
                "Messages that could not be read (deleted, logged).",
                e.malformed,
            ),
            (
                "autoscaler_aws_events_ignored",
                "Well-formed messages with nothing for the engine.",
                e.ignored,
            ),
            (
                "autoscaler_aws_external_desired_capacity_changes",
                "Times a group's desired capacity was changed by someone else.",
                m.external_changes(),
            ),
        ] {
            let family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(v).encode(family)?;
        }
        let mut family = encoder.encode_descriptor(
            "autoscaler_aws_on_demand_price_usd_per_hour",
            "On-demand price of each instance type in use, by where it comes from \
             (api: Price List API, table: built-in, override, estimate).",
            None,
            MetricType::Gauge,
        )?;
        for q in m.on_demand_prices() {
            let labels = [
                ("instance_type", q.instance_type.as_str()),
                ("source", q.source.as_str()),
            ];
            ConstGauge::new(q.usd_per_hour).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_the_aws_adapter_counters() {
        let aws = Arc::new(autoscaler_aws::Metrics::default());
        aws.record_on_demand_prices(vec![autoscaler_aws::PriceQuote {
            instance_type: "c5.xlarge".into(),
            usd_per_hour: 0.17,
            source: autoscaler_aws::PriceSource::Table,
        }]);
        let mut m = crate::metrics::Metrics::new();
        m.register_collector(Box::new(AwsCollector(aws)));
        let text = m.encode();
        for name in [
            "autoscaler_aws_api_calls_total{action=\"autoscaling:SetDesiredCapacity\"} 0",
            "autoscaler_aws_api_throttled_total{action=\"autoscaling:DescribeAutoScalingGroups\"} 0",
            "autoscaler_aws_events_received_total 0",
            "autoscaler_aws_on_demand_price_usd_per_hour{instance_type=\"c5.xlarge\",source=\"table\"} 0.17",
        ] {
            assert!(text.contains(name), "{name} missing in\n{text}");
        }
        assert!(
            text.trim_end().ends_with("# EOF"),
            "one OpenMetrics document"
        );
    }

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
