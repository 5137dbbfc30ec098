//! The cluster as plain data: nodes, pods, node groups, DaemonSets, PDBs.
//!
//! Field names follow the Kubernetes API where one exists, so an adapter maps them 1:1.

use crate::resources::Resources;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Pod annotation: `"false"` blocks scale-down, `"true"` overrides the soft blockers.
pub const SAFE_TO_EVICT: &str = "cluster-autoscaler.kubernetes.io/safe-to-evict";
/// Node annotation that excludes a node from scale-down.
pub const SCALE_DOWN_DISABLED: &str = "cluster-autoscaler.kubernetes.io/scale-down-disabled";
/// Pod annotation the ReplicaSet controller reads on scale-in: pods with a lower cost
/// are deleted first (Kubernetes 1.22+, on by default).
pub const POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";
/// Pod annotation holding the deletion cost this autoscaler set: a cost that differs
/// from it (or a cost without it) is the user's and is never changed.
pub const DELETION_COST_SET_BY_US: &str = "spot-autoscaler.io/pod-deletion-cost";

/// Label with a node's zone.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// Label with a node's instance type.
pub const INSTANCE_TYPE_LABEL: &str = "node.kubernetes.io/instance-type";
/// Label with a node's hostname.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";
/// Label that says whether a node is spot or on-demand (Karpenter's key, also set by us).
pub const CAPACITY_TYPE_LABEL: &str = "karpenter.sh/capacity-type";

pub use crate::labels::Labels;

/// How an instance is bought.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CapacityType {
    /// Spot: cheap, can be interrupted, can be unavailable (ICE).
    Spot,
    /// On-demand: the fallback.
    OnDemand,
}

impl fmt::Display for CapacityType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CapacityType::Spot => "spot",
            CapacityType::OnDemand => "on-demand",
        })
    }
}

/// A taint's effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TaintEffect {
    /// New pods without a toleration are not scheduled.
    NoSchedule,
    /// The scheduler avoids the node (does not block placement).
    PreferNoSchedule,
    /// New pods are not scheduled and running ones are evicted.
    NoExecute,
}

/// A node taint.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Taint {
    /// Taint key.
    pub key: String,
    /// Taint value (may be empty).
    #[serde(default)]
    pub value: String,
    /// Effect.
    pub effect: TaintEffect,
}

impl fmt::Display for Taint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}:{:?}", self.key, self.value, self.effect)
    }
}

/// A toleration operator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TolerationOperator {
    /// Key and value must be equal.
    #[default]
    Equal,
    /// Key must exist (value ignored).
    Exists,
}

/// A pod toleration, with Kubernetes semantics.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Toleration {
    /// Key; empty with `Exists` tolerates every taint.
    #[serde(default)]
    pub key: String,
    /// Operator.
    #[serde(default)]
    pub operator: TolerationOperator,
    /// Value for `Equal`.
    #[serde(default)]
    pub value: String,
    /// Effect; `None` matches every effect.
    #[serde(default)]
    pub effect: Option<TaintEffect>,
    /// `tolerationSeconds`: how long a `NoExecute` taint is tolerated once it appears.
    /// It bounds eviction, not placement: kube-scheduler tolerates the taint regardless.
    #[serde(default)]
    pub toleration_seconds: Option<i64>,
}

impl Toleration {
    /// Whether this toleration tolerates `taint`.
    pub fn tolerates(&self, taint: &Taint) -> bool {
        if let Some(effect) = self.effect {
            if effect != taint.effect {
                return false;
            }
        }
        match self.operator {
            TolerationOperator::Exists => self.key.is_empty() || self.key == taint.key,
            TolerationOperator::Equal => self.key == taint.key && self.value == taint.value,
        }
    }
}

/// A selector operator (label selectors use the first four).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SelectorOperator {
    /// Value is one of `values`.
    In,
    /// Value is none of `values` (or the key is absent).
    NotIn,
    /// Key exists.
    Exists,
    /// Key does not exist.
    DoesNotExist,
    /// Value, as an integer, is greater than the single value (node selectors only).
    Gt,
    /// Value, as an integer, is less than the single value (node selectors only).
    Lt,
}

/// One requirement of a selector.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requirement {
    /// Label key.
    pub key: String,
    /// Operator.
    pub operator: SelectorOperator,
    /// Values for `In`, `NotIn`, `Gt`, `Lt`.
    #[serde(default)]
    pub values: Vec<String>,
}

impl Requirement {
    /// Whether a label value (or its absence) satisfies the requirement.
    pub fn matches_value(&self, value: Option<&str>) -> bool {
        match self.operator {
            SelectorOperator::In => value.is_some_and(|v| self.values.iter().any(|x| x == v)),
            SelectorOperator::NotIn => !value.is_some_and(|v| self.values.iter().any(|x| x == v)),
            SelectorOperator::Exists => value.is_some(),
            SelectorOperator::DoesNotExist => value.is_none(),
            SelectorOperator::Gt | SelectorOperator::Lt => {
                let (Some(v), Some(bound)) = (value, self.values.first()) else {
                    return false;
                };
                match (v.parse::<i64>(), bound.parse::<i64>()) {
                    (Ok(v), Ok(b)) if self.operator == SelectorOperator::Gt => v > b,
                    (Ok(v), Ok(b)) => v < b,
                    _ => false,
                }
            }
        }
    }
}

/// The only field a node selector's `matchFields` may name (the API server rejects others).
pub const NODE_NAME_FIELD: &str = "metadata.name";

/// A node selector term: all requirements must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSelectorTerm {
    /// Requirements on labels, ANDed.
    #[serde(default)]
    pub match_expressions: Vec<Requirement>,
    /// Requirements on fields (`metadata.name`, the node's name), ANDed with the above.
    #[serde(default)]
    pub match_fields: Vec<Requirement>,
}

/// A label selector (`matchLabels` and `matchExpressions`, ANDed).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelSelector {
    /// Exact labels.
    #[serde(default)]
    pub match_labels: Labels,
    /// Expressions.
    #[serde(default)]
    pub match_expressions: Vec<Requirement>,
}

impl LabelSelector {
    /// A selector matching exactly these labels.
    pub fn labels<const N: usize>(pairs: [(&str, &str); N]) -> Self {
        LabelSelector {
            match_labels: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            match_expressions: Vec::new(),
        }
    }

    /// Whether `labels` satisfy the selector. An empty selector matches everything.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self
                .match_expressions
                .iter()
                .all(|r| r.matches_value(labels.get(&r.key).map(String::as_str)))
    }
}

/// A required pod (anti-)affinity term: pods matching `label_selector` in the same
/// topology domain (the nodes sharing the value of `topology_key`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodAntiAffinityTerm {
    /// The pods the term is about.
    pub label_selector: LabelSelector,
    /// Domain key: any node label (`kubernetes.io/hostname`, `topology.kubernetes.io/zone`,
    /// a custom one). A node without the label is in no domain.
    pub topology_key: String,
    /// Namespaces of the pods to match; empty means the pod's own namespace.
    #[serde(default)]
    pub namespaces: Vec<String>,
}

/// What a spread constraint does when it cannot be satisfied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WhenUnsatisfiable {
    /// Hard constraint.
    DoNotSchedule,
    /// Soft constraint (ignored by the simulation, as by the scheduler's filter).
    ScheduleAnyway,
}

/// A topology spread constraint.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopologySpreadConstraint {
    /// Maximum allowed difference between the most and least loaded domain.
    pub max_skew: u32,
    /// Domain key (`topology.kubernetes.io/zone` or `kubernetes.io/hostname`).
    pub topology_key: String,
    /// Hard or soft.
    pub when_unsatisfiable: WhenUnsatisfiable,
    /// The pods counted.
    pub label_selector: LabelSelector,
}

/// A required pod affinity term has the same shape as an anti-affinity term.
pub type PodAffinityTerm = PodAntiAffinityTerm;

/// A host port a container asks for (`containers[].ports[].hostPort`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostPort {
    /// The port on the node.
    pub port: u16,
    /// `TCP`, `UDP` or `SCTP`.
    #[serde(default = "tcp")]
    pub protocol: String,
    /// The host IP; empty or `0.0.0.0` means every address.
    #[serde(default)]
    pub host_ip: String,
}

fn tcp() -> String {
    "TCP".into()
}

impl HostPort {
    /// Whether two host ports cannot share a node (kube-scheduler's NodePorts filter):
    /// same port and protocol, and the addresses overlap (a wildcard overlaps all).
    pub fn conflicts_with(&self, other: &HostPort) -> bool {
        let wildcard = |ip: &str| ip.is_empty() || ip == "0.0.0.0";
        self.port == other.port
            && self.protocol == other.protocol
            && (wildcard(&self.host_ip)
                || wildcard(&other.host_ip)
                || self.host_ip == other.host_ip)
    }
}

/// A pod's controller.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnerRef {
    /// Kind (`ReplicaSet`, `StatefulSet`, `DaemonSet`, `Job`, ...).
    pub kind: String,
    /// Name.
    pub name: String,
}

impl OwnerRef {
    /// Pods of this owner stay with their node and are never moved or evicted for a
    /// removal: DaemonSet pods, and mirror pods (the kubelet makes their Node the owner).
    pub fn stays_with_node(&self) -> bool {
        self.kind == "DaemonSet" || self.kind == "Node"
    }
}

/// Everything about a pod that decides where it can run. Pods with equal
/// `SchedulingSpec`, namespace and labels are interchangeable for the simulation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulingSpec {
    /// Sum of container requests (max with init containers, plus overhead).
    #[serde(default)]
    pub requests: Resources,
    /// Pod priority.
    #[serde(default)]
    pub priority: i32,
    /// `nodeSelector`.
    #[serde(default)]
    pub node_selector: Labels,
    /// Required node affinity terms, ORed (`requiredDuringSchedulingIgnoredDuringExecution`).
    #[serde(default)]
    pub required_node_affinity: Vec<NodeSelectorTerm>,
    /// Tolerations.
    #[serde(default)]
    pub tolerations: Vec<Toleration>,
    /// Required pod anti-affinity terms.
    #[serde(default)]
    pub anti_affinity: Vec<PodAntiAffinityTerm>,
    /// Topology spread constraints.
    #[serde(default)]
    pub topology_spread: Vec<TopologySpreadConstraint>,
    /// Required pod affinity terms (`podAffinity.requiredDuringScheduling...`), ANDed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub affinity: Vec<PodAffinityTerm>,
    /// Host ports of its containers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_ports: Vec<HostPort>,
    /// Scheduling features the pod uses that the engine does not model (DRA resource
    /// claims, ...), by name. Such a pod is never placed by the simulation and never
    /// triggers a scale-up: its reason names the feature instead of a guess.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unsupported: Vec<String>,
}

/// A pod. `node_name: None` means pending (not yet bound).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pod {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Labels.
    #[serde(default)]
    pub labels: Labels,
    /// Annotations.
    #[serde(default)]
    pub annotations: Labels,
    /// Controller, if any.
    #[serde(default)]
    pub owner: Option<OwnerRef>,
    /// The node it is bound to; `None` while pending.
    #[serde(default)]
    pub node_name: Option<String>,
    /// Scheduling-relevant spec.
    #[serde(default)]
    pub spec: SchedulingSpec,
    /// Whether it mounts local storage (emptyDir not in memory, hostPath).
    #[serde(default)]
    pub has_local_storage: bool,
    /// Creation time.
    #[serde(default)]
    pub created_at: Timestamp,
}

impl Pod {
    /// A DaemonSet or mirror (static) pod: it stays with its node, never moves.
    pub fn is_daemon_or_mirror(&self) -> bool {
        self.owner.as_ref().is_some_and(OwnerRef::stays_with_node)
    }

    /// The pod's controller as `(namespace, kind, name)`: pods with the same key are
    /// replicas of one workload. `None` for a bare pod.
    pub fn controller_key(&self) -> Option<(&str, &str, &str)> {
        self.owner
            .as_ref()
            .map(|o| (self.namespace.as_str(), o.kind.as_str(), o.name.as_str()))
    }

    /// A pending pod with the given requests, in namespace `default`.
    pub fn pending(name: impl Into<String>, requests: Resources) -> Self {
        Pod {
            namespace: "default".into(),
            name: name.into(),
            spec: SchedulingSpec {
                requests,
                ..SchedulingSpec::default()
            },
            ..Pod::default()
        }
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// A Kubernetes node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// Name (also its hostname).
    pub name: String,
    /// `aws:///<zone>/<instance-id>`.
    #[serde(default)]
    pub provider_id: Option<String>,
    /// Node group (ASG) it belongs to; `None` for nodes we do not manage.
    #[serde(default)]
    pub group: Option<String>,
    /// Spot or on-demand.
    pub capacity_type: CapacityType,
    /// Capacity (for cluster-wide core/memory limits).
    #[serde(default)]
    pub capacity: Resources,
    /// Allocatable (what pods can request).
    pub allocatable: Resources,
    /// Labels (zone and instance type are read from the well-known labels).
    #[serde(default)]
    pub labels: Labels,
    /// Annotations.
    #[serde(default)]
    pub annotations: Labels,
    /// Taints.
    #[serde(default)]
    pub taints: Vec<Taint>,
    /// When the node object was created.
    #[serde(default)]
    pub created_at: Timestamp,
    /// Ready condition.
    #[serde(default = "yes")]
    pub ready: bool,
    /// When the Ready condition last changed (`lastTransitionTime`), when known.
    #[serde(default)]
    pub ready_changed_at: Option<Timestamp>,
    /// `spec.unschedulable` (cordoned).
    #[serde(default)]
    pub unschedulable: bool,
}

fn yes() -> bool {
    true
}

impl Node {
    /// The node's zone label.
    pub fn zone(&self) -> Option<&str> {
        self.labels.get(ZONE_LABEL).map(String::as_str)
    }

    /// The node's instance-type label.
    pub fn instance_type(&self) -> Option<&str> {
        self.labels.get(INSTANCE_TYPE_LABEL).map(String::as_str)
    }

    /// Whether [`SCALE_DOWN_DISABLED`] keeps the node out of scale-down.
    pub fn scale_down_disabled(&self) -> bool {
        self.annotations
            .get(SCALE_DOWN_DISABLED)
            .map(String::as_str)
            == Some("true")
    }
}

/// One instance type of a node group, with what a node of it offers and costs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceType {
    /// `m5.xlarge`.
    pub name: String,
    /// vCPUs (capacity).
    pub vcpus: u32,
    /// Memory in MiB (capacity).
    pub memory_mib: u64,
    /// What pods can request on a fresh node (capacity minus kube/system reserved and
    /// eviction threshold), before DaemonSets.
    pub allocatable: Resources,
    /// Price per hour in USD for this group's capacity type (spot price for spot groups,
    /// and for mixed groups whose part above the base is spot).
    pub price_per_hour: f64,
    /// The on-demand price of a mixed group's type, when it differs from
    /// `price_per_hour`; `None` reads as `price_per_hour`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_demand_price_per_hour: Option<f64>,
}

impl InstanceType {
    /// An instance type with allocatable derived like EKS does: kube-reserved CPU on the
    /// 6%/1%/0.5%/0.25% ladder, kube-reserved memory `255Mi + 11Mi * max_pods`, a
    /// 100Mi eviction threshold, and `max_pods` pods.
    pub fn new(name: impl Into<String>, vcpus: u32, memory_mib: u64, price_per_hour: f64) -> Self {
        let max_pods: u64 = match vcpus {
            0..=2 => 29,
            3..=4 => 58,
            5..=16 => 110,
            _ => 250,
        };
        let cpu_millis = u64::from(vcpus) * 1000;
        let mut reserved_cpu = 0u64;
        for (core, pct_tenths) in [(1u64, 60u64), (2, 10), (3, 5), (4, 5)] {
            if cpu_millis >= core * 1000 {
                reserved_cpu += 1000 * pct_tenths / 1000;
            }
        }
        if vcpus > 4 {
            reserved_cpu += (u64::from(vcpus) - 4) * 1000 * 25 / 10000;
        }
        let reserved_mem_mib = 255 + 11 * max_pods + 100;
        let allocatable = Resources::new(
            cpu_millis.saturating_sub(reserved_cpu),
            memory_mib.saturating_sub(reserved_mem_mib) << 20,
        )
        .with_pods(max_pods);
        InstanceType {
            name: name.into(),
            vcpus,
            memory_mib,
            allocatable,
            price_per_hour,
            on_demand_price_per_hour: None,
        }
    }

    /// What one instance of this type costs per hour in `market`.
    pub fn price_in(&self, market: CapacityType) -> f64 {
        match market {
            CapacityType::OnDemand => self.on_demand_price_per_hour.unwrap_or(self.price_per_hour),
            CapacityType::Spot => self.price_per_hour,
        }
    }

    /// Adds an extended resource (GPUs) to both capacity and allocatable.
    pub fn with_extended(mut self, name: &str, amount: u64) -> Self {
        self.allocatable.extended.insert(name.to_string(), amount);
        self
    }

    /// Capacity as resources (for cluster-wide limits).
    pub fn capacity(&self) -> Resources {
        Resources::new(u64::from(self.vcpus) * 1000, self.memory_mib << 20)
    }
}

/// What a new node of a group looks like before it exists (scale-from-zero template).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeTemplate {
    /// Labels every new node gets.
    #[serde(default)]
    pub labels: Labels,
    /// Taints every new node gets.
    #[serde(default)]
    pub taints: Vec<Taint>,
}

/// A node group: one AutoScalingGroup.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeGroup {
    /// ASG name.
    pub name: String,
    /// Minimum size.
    pub min_size: u32,
    /// Maximum size.
    pub max_size: u32,
    /// Desired capacity as AWS reports it.
    pub target_size: u32,
    /// Instances AWS has for the group (pending or in service), when known. Reverting an
    /// unfulfilled scale-up never goes below it, so booting instances are kept.
    #[serde(default)]
    pub current_instances: Option<u32>,
    /// Zones the group launches into.
    pub zones: Vec<String>,
    /// Spot or on-demand; for a mixed group (`mix` set), the market of the part above
    /// the base that is not on-demand (spot unless the percentage is 100).
    pub capacity_type: CapacityType,
    /// How a mixed-instances policy splits the group between on-demand and spot;
    /// `None`: every instance is `capacity_type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mix: Option<CapacityMix>,
    /// Instance types (one for a plain launch template, several for a mixed-instances policy).
    pub instance_types: Vec<InstanceType>,
    /// Template for new nodes.
    #[serde(default)]
    pub template: NodeTemplate,
    /// This group's own scale-down and provisioning settings (cluster-autoscaler's
    /// per-ASG `autoscaling-options` tags); unset ones follow the cluster-wide flags.
    #[serde(default, skip_serializing_if = "GroupOptions::is_empty")]
    pub options: GroupOptions,
}

/// A mixed-instances ASG's split between on-demand and spot (its `InstancesDistribution`).
///
/// AWS's rule: the first `on_demand_base` instances are on-demand; of the instances
/// above the base, `on_demand_percentage_above_base` percent are on-demand, a fraction
/// rounded up in favour of on-demand; the rest are spot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapacityMix {
    /// `OnDemandBaseCapacity`: the first instances, always on-demand.
    #[serde(default)]
    pub on_demand_base: u32,
    /// `OnDemandPercentageAboveBaseCapacity` (0..=100): the on-demand share above the base.
    #[serde(default)]
    pub on_demand_percentage_above_base: u8,
}

/// How many of a group's new instances AWS launches in each market.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LaunchSplit {
    /// On-demand launches.
    pub on_demand: u32,
    /// Spot launches.
    pub spot: u32,
}

impl CapacityMix {
    /// How many of `size` instances AWS keeps on-demand.
    pub fn on_demand_at(&self, size: u32) -> u32 {
        let base = size.min(self.on_demand_base);
        let above = u64::from(size - base);
        let pct = u64::from(self.on_demand_percentage_above_base.min(100));
        // Rounded up: AWS resolves a fractional instance in favour of on-demand.
        base + (above * pct).div_ceil(100) as u32
    }

    /// The markets of `count` launches into a group of `size` instances.
    pub fn launches(&self, size: u32, count: u32) -> LaunchSplit {
        let to = size.saturating_add(count);
        let on_demand = self.on_demand_at(to) - self.on_demand_at(size);
        LaunchSplit {
            on_demand,
            spot: (to - size) - on_demand,
        }
    }

    /// The market of the instance that takes a group of `size` to `size + 1`.
    pub fn market_of_launch(&self, size: u32) -> CapacityType {
        if self.launches(size, 1).on_demand == 1 {
            CapacityType::OnDemand
        } else {
            CapacityType::Spot
        }
    }

    /// Whether the group runs both markets at some size (a base or a share of each).
    pub fn is_mixed(&self) -> bool {
        let pct = self.on_demand_percentage_above_base;
        pct < 100 && (self.on_demand_base > 0 || pct > 0)
    }
}

impl NodeGroup {
    /// The market of the instance that takes this group from `size` to `size + 1`.
    pub fn market_of_launch(&self, size: u32) -> CapacityType {
        self.mix
            .map_or(self.capacity_type, |m| m.market_of_launch(size))
    }

    /// The mix, when the group really runs both markets.
    pub fn mixed(&self) -> Option<&CapacityMix> {
        self.mix.as_ref().filter(|m| m.is_mixed())
    }

    /// Whether AWS's distribution still wants every one of the `in_market` nodes of
    /// `market` once this mixed group of `size` shrinks by one, so removing one of them
    /// would leave the group off its mix (AWS scales in the other market first).
    /// `false` for a group that is not mixed.
    pub fn distribution_keeps(&self, market: CapacityType, in_market: u32, size: u32) -> bool {
        let Some(m) = self.mixed() else {
            return false;
        };
        let smaller = size.saturating_sub(1);
        let wanted = match market {
            CapacityType::OnDemand => m.on_demand_at(smaller),
            CapacityType::Spot => smaller - m.on_demand_at(smaller),
        };
        in_market <= wanted
    }
}

/// Per-group overrides of cluster-wide settings, as cluster-autoscaler reads them from
/// `k8s.io/cluster-autoscaler/node-template/autoscaling-options/<option>` ASG tags.
/// `None` keeps the cluster-wide value.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GroupOptions {
    /// `scaledownutilizationthreshold`: overrides `--scale-down-utilization-threshold`.
    pub scale_down_utilization_threshold: Option<f64>,
    /// `scaledownunneededtime`: overrides `--scale-down-unneeded-time`.
    pub scale_down_unneeded_time: Option<std::time::Duration>,
    /// `scaledownunreadytime`: overrides `--scale-down-unready-time`.
    pub scale_down_unready_time: Option<std::time::Duration>,
    /// `maxnodeprovisiontime`: overrides `--max-node-provision-time`.
    pub max_node_provision_time: Option<std::time::Duration>,
}

impl GroupOptions {
    /// Whether no option is set (the group follows the cluster-wide flags).
    pub fn is_empty(&self) -> bool {
        *self == GroupOptions::default()
    }
}

/// A DaemonSet: its pod lands on every new node it tolerates and selects.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonSet {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The pod template's scheduling spec.
    pub spec: SchedulingSpec,
}

/// A PodDisruptionBudget, reduced to what the autoscaler needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodDisruptionBudget {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Pods it covers.
    pub selector: LabelSelector,
    /// `status.disruptionsAllowed`.
    pub disruptions_allowed: u32,
}

/// Whether the workload (pod owner) `kind`/`name` belongs to an HPA's scale target:
/// the target itself, or for a `Deployment` one of its ReplicaSets, named
/// `<deployment>-<pod-template-hash>` by the Deployment controller.
pub fn hpa_scales(target_kind: &str, target_name: &str, kind: &str, name: &str) -> bool {
    if target_kind == "Deployment" && kind == "ReplicaSet" {
        return name
            .strip_prefix(target_name)
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|hash| {
                !hash.is_empty() && hash.bytes().all(|b| b.is_ascii_alphanumeric())
            });
    }
    target_kind == kind && target_name == name
}

/// How hard a workload's pods work, as its HorizontalPodAutoscaler last measured it
/// (`status.currentMetrics`, CPU resource metric). Scale-down reads it to evict where
/// the remaining replicas have room for the evicted pod's share while it restarts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadLoad {
    /// Namespace of the HPA and its target.
    pub namespace: String,
    /// `spec.scaleTargetRef.kind` (`Deployment`, `StatefulSet`, ...).
    pub target_kind: String,
    /// `spec.scaleTargetRef.name`.
    pub target_name: String,
    /// Average CPU use of the ready pods, percent of their requests.
    pub cpu_utilization_percent: u32,
}

impl WorkloadLoad {
    /// Whether `pod` is one of the target's replicas (for a Deployment: owned by one of
    /// its ReplicaSets).
    pub fn covers(&self, pod: &Pod) -> bool {
        pod.namespace == self.namespace
            && pod
                .owner
                .as_ref()
                .is_some_and(|o| hpa_scales(&self.target_kind, &self.target_name, &o.kind, &o.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str, value: &str, effect: TaintEffect) -> Taint {
        Taint {
            key: key.into(),
            value: value.into(),
            effect,
        }
    }

    #[test]
    fn toleration_semantics_match_kubernetes() {
        let t = taint("dedicated", "gpu", TaintEffect::NoSchedule);
        let equal = Toleration {
            key: "dedicated".into(),
            value: "gpu".into(),
            ..Toleration::default()
        };
        assert!(equal.tolerates(&t));
        let wrong_value = Toleration {
            value: "cpu".into(),
            ..equal.clone()
        };
        assert!(!wrong_value.tolerates(&t));
        let exists_all = Toleration {
            operator: TolerationOperator::Exists,
            ..Toleration::default()
        };
        assert!(exists_all.tolerates(&t));
        let wrong_effect = Toleration {
            effect: Some(TaintEffect::NoExecute),
            ..equal
        };
        assert!(!wrong_effect.tolerates(&t));
    }

    #[test]
    fn selector_operators() {
        let r = |op, values: &[&str]| Requirement {
            key: "k".into(),
            operator: op,
            values: values.iter().map(|s| s.to_string()).collect(),
        };
        assert!(r(SelectorOperator::In, &["a", "b"]).matches_value(Some("b")));
        assert!(!r(SelectorOperator::In, &["a"]).matches_value(None));
        assert!(r(SelectorOperator::NotIn, &["a"]).matches_value(None));
        assert!(!r(SelectorOperator::NotIn, &["a"]).matches_value(Some("a")));
        assert!(r(SelectorOperator::Exists, &[]).matches_value(Some("")));
        assert!(r(SelectorOperator::DoesNotExist, &[]).matches_value(None));
        assert!(r(SelectorOperator::Gt, &["4"]).matches_value(Some("8")));
        assert!(!r(SelectorOperator::Gt, &["4"]).matches_value(Some("4")));
        assert!(r(SelectorOperator::Lt, &["4"]).matches_value(Some("3")));
        assert!(!r(SelectorOperator::Lt, &["x"]).matches_value(Some("3")));
    }

    #[test]
    fn label_selector_ands_labels_and_expressions() {
        let mut sel = LabelSelector::labels([("app", "web")]);
        let mut labels = Labels::new();
        labels.insert("app".into(), "web".into());
        assert!(sel.matches(&labels));
        sel.match_expressions.push(Requirement {
            key: "tier".into(),
            operator: SelectorOperator::Exists,
            values: vec![],
        });
        assert!(!sel.matches(&labels));
        assert!(LabelSelector::default().matches(&Labels::new()));
    }

    #[test]
    fn eks_like_allocatable_is_below_capacity() {
        let m5 = InstanceType::new("m5.xlarge", 4, 16384, 0.192);
        assert!(m5.allocatable.cpu_millis < 4000 && m5.allocatable.cpu_millis > 3800);
        assert!(m5.allocatable.memory_bytes < 16384 << 20);
        assert_eq!(m5.allocatable.pods, 58);
    }
}
