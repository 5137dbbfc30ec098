//! Where node groups live and how they are changed: the seam between the controller and
//! a cloud. [`crate::aws_provider::AwsProvider`] implements [`NodeGroupProvider`] for ASGs;
//! [`crate::static_provider::StaticProvider`] keeps groups in memory for tests and
//! `--cloud-provider=static`.
//!
//! Actuation runs one way: the controller hands a provider a capacity decision
//! ([`NodeGroupProvider::apply`]) and the provider carries it out as its cloud does
//! (AWS: a checked compare-and-set; static: resize in memory). Whatever else a provider
//! needs goes through the seam too: background tasks ([`NodeGroupProvider::start`]),
//! taking over on leadership ([`NodeGroupProvider::became_leader`]) and its own
//! `/metrics` families ([`NodeGroupProvider::collectors`]).

use autoscaler_aws::{AwsError, Outcome};
use autoscaler_core::{Decision, Event, NodeGroup};
use k8s_openapi::api::core::v1::Node;
use kube::runtime::reflector::Store;
use prometheus_client::collector::Collector;
use std::future::Future;
use std::sync::Arc;
use thiserror::Error;
use tokio::sync::{watch, Notify};

/// An instance a provider launched for a group (so nodes can be matched to groups): the
/// AWS adapter's, which every provider uses.
pub use autoscaler_aws::Instance;

/// A provider call that failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProviderError {
    /// The group is not known to the provider.
    #[error("node group {0:?} is not known to the provider")]
    UnknownGroup(String),
    /// The instance is not in any known group.
    #[error("instance {0:?} is not in any known node group")]
    UnknownInstance(String),
    /// The requested size is outside `min..=max`.
    #[error("node group {group:?}: desired capacity {desired} is outside {min}..={max}")]
    OutOfRange {
        /// Group.
        group: String,
        /// Requested size.
        desired: u32,
        /// Min.
        min: u32,
        /// Max.
        max: u32,
    },
    /// A decision the provider does not carry out ([`NodeGroupProvider::apply`] takes
    /// `ScaleUp` and `RevertScaleUp`; node removals go through the drain).
    #[error("cloud call failed: the {provider} does not carry out {decision}")]
    Unsupported {
        /// Which provider (`AWS adapter`, `static provider`).
        provider: &'static str,
        /// The decision, for the log.
        decision: String,
    },
    /// An AWS call failed.
    #[error("cloud call failed: {0}")]
    Aws(AwsError),
    /// An AWS call about one group or instance failed.
    #[error("cloud call failed: {target}: {error}")]
    AwsTarget {
        /// ASG name or instance id.
        target: String,
        /// The adapter's error.
        error: AwsError,
    },
    /// The AWS adapter answered with an outcome that does not fit the call.
    #[error("cloud call failed: {0:?}")]
    UnexpectedOutcome(Outcome),
}

impl ProviderError {
    /// The kind, as a metric label: the AWS error's kind (`throttled`, `access_denied`
    /// with [`ProviderError::action`] naming the missing permission, `validation`, `api`,
    /// `transport`, ...), or `unknown_group`, `unknown_instance`, `out_of_range`,
    /// `unsupported`, `unexpected_outcome`.
    pub fn kind(&self) -> &'static str {
        match self {
            ProviderError::Aws(e) | ProviderError::AwsTarget { error: e, .. } => e.kind(),
            ProviderError::UnknownGroup(_) => "unknown_group",
            ProviderError::UnknownInstance(_) => "unknown_instance",
            ProviderError::OutOfRange { .. } => "out_of_range",
            ProviderError::Unsupported { .. } => "unsupported",
            ProviderError::UnexpectedOutcome(_) => "unexpected_outcome",
        }
    }

    /// The IAM action of the failed AWS call, when there was one.
    pub fn action(&self) -> Option<&'static str> {
        match self {
            ProviderError::Aws(e) | ProviderError::AwsTarget { error: e, .. } => e.action(),
            ProviderError::UnknownGroup(_)
            | ProviderError::UnknownInstance(_)
            | ProviderError::OutOfRange { .. }
            | ProviderError::Unsupported { .. }
            | ProviderError::UnexpectedOutcome(_) => None,
        }
    }
}

/// What a provider's background tasks get from the controller ([`NodeGroupProvider::start`]).
#[derive(Clone)]
pub struct ProviderContext {
    /// The Kubernetes client.
    pub client: kube::Client,
    /// The controller's Node cache.
    pub nodes: Store<Node>,
    /// Wakes the decision loop (when events wait for [`NodeGroupProvider::poll_events`]).
    pub wake: Arc<Notify>,
    /// Whether this replica holds the Lease.
    pub leader: watch::Receiver<bool>,
}

/// Node groups in a cloud. Implementations are cheap to share (`Arc` inside) and safe to
/// call from several tasks.
#[allow(async_fn_in_trait)]
pub trait NodeGroupProvider: Send + Sync + 'static {
    /// The groups as the core models them, with current sizes.
    fn groups(&self) -> impl Future<Output = Result<Vec<NodeGroup>, ProviderError>> + Send;
    /// Instance id -> group, for matching nodes (by providerID) to groups.
    fn instances(&self) -> impl Future<Output = Result<Vec<Instance>, ProviderError>> + Send;
    /// Carries out a capacity decision (`ScaleUp` or `RevertScaleUp`): the group's desired
    /// capacity goes to the decision's `new_target`. A cloud may check the decision's base
    /// first (compare-and-set against someone else's change). Any other decision is
    /// [`ProviderError::Unsupported`].
    fn apply(&self, decision: &Decision) -> impl Future<Output = Result<(), ProviderError>> + Send;
    /// Terminates one instance and decrements its group's desired capacity.
    fn terminate_instance(
        &self,
        instance_id: &str,
    ) -> impl Future<Output = Result<(), ProviderError>> + Send;
    /// Events since the last poll (launch failures, interruptions).
    fn poll_events(&self) -> impl Future<Output = Result<Vec<Event>, ProviderError>> + Send;
    /// Called after a round succeeded: the events it polled are handled, so a provider
    /// with an at-least-once source acknowledges them now. The default does nothing.
    fn round_done(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
    /// Whether the Node object of a terminated instance goes away by itself (a cloud
    /// node-lifecycle controller deletes it). When `false` (the default), the drain
    /// deletes it right after the termination.
    fn deletes_node_objects(&self) -> bool {
        false
    }
    /// Starts the provider's background tasks (event sources, node launchers), once, when
    /// the controller starts. The default starts nothing.
    fn start(&self, context: &ProviderContext) {
        let _ = context;
    }
    /// Called each time this replica becomes the leader, before its first round as
    /// leader (to take over state a previous leader left). The default does nothing.
    fn became_leader(&self, client: &kube::Client) -> impl Future<Output = ()> + Send {
        let _ = client;
        async {}
    }
    /// Prometheus collectors the provider adds to `/metrics` (read at each scrape). The
    /// default adds none.
    fn collectors(&self) -> Vec<Box<dyn Collector>> {
        Vec::new()
    }
    /// The on-demand price and its source for each instance type of the latest scan,
    /// for the status ConfigMap. The default has none.
    fn on_demand_prices(&self) -> Vec<autoscaler_aws::PriceQuote> {
        Vec::new()
    }
}
