//! # autoscaler-aws
//!
//! Everything between the sans-IO core ([`autoscaler_core`]) and AWS:
//!
//! - [`discovery`]: AutoScalingGroups -> [`autoscaler_core::NodeGroup`]s, found by name
//!   (`--nodes=min:max:name`) or by tags (`--node-group-auto-discovery=asg:tag=...`),
//!   with every mixed-instances override's vCPUs, memory, GPUs and price, CA's
//!   scale-from-zero template tags, and node <-> instance mapping by `providerID`.
//! - [`actuate`]: `SetDesiredCapacity` as a checked compare-and-set, and
//!   `TerminateInstanceInAutoScalingGroup`, idempotent and safe to retry.
//! - [`queue`] and [`events`]: ICE and interruption events from EventBridge via SQS, in
//!   seconds; [`activities`]: the same from `DescribeScalingActivities`.
//! - [`setup`]: optional creation/verification of the rules and queue.
//! - [`api`]: token buckets per API family, the SDK's retries, [`metrics`].
//!
//! ```no_run
//! # async fn run() -> Result<(), autoscaler_aws::AwsError> {
//! use autoscaler_aws::{AwsCloud, AwsConfig, GroupSpec};
//! let sdk = aws_config::load_from_env().await;
//! let mut config = AwsConfig::default();
//! config.scan.specs.push(GroupSpec::for_cluster("prod"));
//! let cloud = AwsCloud::new(&sdk, config);
//! let scan = cloud.scan().await?;
//! for problem in &scan.errors {
//!     eprintln!("{problem}");
//! }
//! let groups = scan.node_groups();
//! # let _ = groups; Ok(()) }
//! ```

#![deny(clippy::disallowed_methods)]

pub mod activities;
pub mod actuate;
pub mod api;
pub mod discovery;
pub mod error;
pub mod events;
pub mod instance_requirements;
pub mod metrics;
pub mod op;
pub mod price_quote;
pub mod prices;
pub mod queue;
pub mod setup;
pub mod template;

pub use activities::ActivityPoller;
pub use actuate::{ActuationConfig, Actuator, Outcome, DEFAULT_MAX_VIEW_AGE};
pub use api::{Api, ApiFamily, Bucket, Op, RateLimitConfig, RetrySettings, TimeoutSettings};
pub use discovery::{
    parse_provider_id, AutoDiscovery, DiscoveredGroup, GroupSpec, Instance, NodesSpec, Scan,
    ScanConfig, Scanner, SpecError,
};
pub use error::{AwsError, GroupError, GroupProblem};
pub use instance_requirements::RequirementsResolver;
pub use metrics::{EventStats, Metrics, OpStats};
pub use prices::{OnDemandPrices, PriceQuote, PriceSource};
pub use queue::{Batch, EventQueue, QueueConfig, Receipt, ReceivedEvent};
pub use setup::{EventInfra, EventInfraState};

use autoscaler_core::{Decision, Event};
use std::sync::Arc;

/// Settings of the adapter.
#[derive(Clone, Debug, Default)]
pub struct AwsConfig {
    /// Discovery.
    pub scan: ScanConfig,
    /// Client-side rate limits.
    pub limits: RateLimitConfig,
    /// Time limits of every AWS call.
    pub timeouts: TimeoutSettings,
    /// SDK retries.
    pub retry: RetrySettings,
    /// Actuation (how long a scan stands in for a fresh read).
    pub actuation: ActuationConfig,
}

/// The adapter: scans, actuates, and reads events, over one set of clients.
pub struct AwsCloud {
    api: Arc<Api>,
    scanner: Scanner,
    /// Shares its Price List cache with the scanner's copy.
    on_demand_prices: OnDemandPrices,
    actuator: Actuator,
    activities: ActivityPoller,
}

impl std::fmt::Debug for AwsCloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsCloud").finish_non_exhaustive()
    }
}

impl AwsCloud {
    /// An adapter using the region, credentials and endpoint of `sdk`.
    pub fn new(sdk: &aws_types::SdkConfig, config: AwsConfig) -> Self {
        let api = Arc::new(Api::with_timeouts(
            sdk,
            config.limits,
            config.retry,
            config.timeouts,
            Arc::new(Metrics::default()),
        ));
        AwsCloud {
            on_demand_prices: config.scan.on_demand_prices.clone(),
            scanner: Scanner::new(api.clone(), config.scan),
            actuator: Actuator::new(api.clone()).with_max_view_age(config.actuation.max_view_age),
            activities: ActivityPoller::new(api.clone()),
            api,
        }
    }

    /// The clients (for [`EventInfra`] and [`EventQueue`]).
    pub fn api(&self) -> &Arc<Api> {
        &self.api
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        self.api.metrics()
    }

    /// Reads every managed group (see [`Scanner::scan`]), and records the on-demand
    /// price and source of each of their instance types ([`Metrics::on_demand_prices`]).
    pub async fn scan(&self) -> Result<Scan, AwsError> {
        let started = std::time::Instant::now();
        let scan = self.scanner.scan().await?;
        // The round's decisions come from this scan: actuation checks against it.
        self.actuator.remember_scan(&scan, started);
        let mut quotes: Vec<PriceQuote> = scan
            .groups
            .iter()
            .flat_map(|g| g.group.instance_types.iter())
            .map(|t| {
                let gpus = t
                    .allocatable
                    .extended
                    .iter()
                    .filter(|(name, _)| name.ends_with("/gpu"))
                    .map(|(_, n)| n)
                    .sum();
                self.on_demand_prices
                    .quote(&t.name, t.vcpus, t.memory_mib, gpus)
            })
            .collect();
        quotes.sort_by(|a, b| a.instance_type.cmp(&b.instance_type));
        quotes.dedup_by(|a, b| a.instance_type == b.instance_type);
        self.api.metrics().record_on_demand_prices(quotes);
        Ok(scan)
    }

    /// Forgets cached spot prices and moving launch template versions.
    pub async fn refresh(&self) {
        self.scanner.refresh().await;
    }

    /// Carries out a round's decisions (see [`Actuator::apply`]).
    pub async fn apply(&self, decisions: &[Decision]) -> Vec<Outcome> {
        self.actuator.apply(decisions).await
    }

    /// Terminates one instance (see [`Actuator::terminate`]).
    pub async fn terminate_instance(&self, instance_id: &str, decrement: bool) -> Outcome {
        self.actuator.terminate(instance_id, decrement).await
    }

    /// Launch failures from `DescribeScalingActivities` of the groups with a scale-up in
    /// flight (desired capacity above the instances AWS has).
    pub async fn poll_activities(&self, scan: &Scan) -> Vec<Event> {
        let in_flight: Vec<String> = scan
            .groups
            .iter()
            .filter(|g| g.group.current_instances.unwrap_or(0) < g.group.target_size)
            .map(|g| g.group.name.clone())
            .collect();
        self.activities.poll(&in_flight).await
    }

    /// A consumer of the event queue.
    pub fn event_queue(&self, config: QueueConfig) -> EventQueue {
        EventQueue::new(self.api.clone(), config)
    }
}
