//! Scenarios: services, node groups, the cloud and the autoscaler configuration, read
//! from YAML (unknown keys are rejected) or taken from the built-ins.

use crate::error::InputError;
use crate::trace::{Columns, Trace};
use autoscaler_core::hpa::{Behavior, HpaSpec};
use autoscaler_core::model::{
    CAPACITY_TYPE_LABEL, HOSTNAME_LABEL, INSTANCE_TYPE_LABEL, ZONE_LABEL,
};
use autoscaler_core::overprovisioning::Overprovisioning;
use autoscaler_core::{AutoscalerConfig, CapacityType, Labels};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// A whole scenario.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name.
    pub name: String,
    /// One line: the story it reproduces.
    #[serde(default)]
    pub description: String,
    /// Simulated length in seconds; default: the trace's length.
    #[serde(default)]
    pub duration_s: Option<u64>,
    /// Traffic.
    pub trace: TraceSpec,
    /// Services (one Deployment + HPA each).
    pub services: Vec<ServiceSpec>,
    /// Node groups (ASGs).
    pub node_groups: Vec<GroupSpec>,
    /// The cloud model.
    #[serde(default)]
    pub cloud: CloudSpec,
    /// The production engine's configuration (`ours`), the same type the binary reads.
    #[serde(default)]
    pub autoscaler: AutoscalerConfig,
    /// The cluster-autoscaler model's settings.
    #[serde(default)]
    pub ca_baseline: CaSpec,
    /// Simulation settings.
    #[serde(default)]
    pub sim: SimSpec,
    /// A placeholder Deployment sized by a cluster-proportional-autoscaler rule (the
    /// chart's `overprovisioning`, e.g. `!Ladder {coresToReplicas: [[1, 1], [64, 3]]}`),
    /// the same for every policy: real pods preempt its pods and start at once, and the
    /// placeholders, pending again, bring the next node. `ours` sizes growth headroom on
    /// top when `autoscaler.headroom.enabled`. Default: none.
    #[serde(default)]
    pub overprovisioning: Option<Overprovisioning>,
}

/// Where the traffic comes from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceSpec {
    /// A CSV file (relative to the scenario file).
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// Column names of the CSV.
    #[serde(default)]
    pub columns: Columns,
    /// `[second, requests/s]` points, linearly interpolated (when there is no file).
    #[serde(default)]
    pub points: Vec<(f64, f64)>,
    /// Multiplier applied to every rate (default 1).
    #[serde(default = "one_f")]
    pub scale: f64,
}

fn one_f() -> f64 {
    1.0
}

/// A latency distribution in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Dist {
    /// Always this.
    Fixed(f64),
    /// Uniform in `[min, max]`.
    Uniform(f64, f64),
    /// Log-normal with this median and sigma (of the underlying normal).
    Lognormal {
        /// Median seconds.
        median: f64,
        /// Sigma.
        sigma: f64,
    },
}

/// One service: a Deployment scaled by an HPA on CPU utilization.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// Name.
    pub name: String,
    /// Requests per second one pod serves at 100% of its CPU request.
    pub requests_per_pod: f64,
    /// CPU request (Kubernetes quantity).
    pub cpu: String,
    /// Memory request (Kubernetes quantity).
    pub memory: String,
    /// CPU limit / request: how far a pod can burst (serving capacity and the highest
    /// utilization the HPA can see). Default 1.
    #[serde(default = "one_f")]
    pub cpu_limit_ratio: f64,
    /// `minReplicas`.
    pub min_replicas: u32,
    /// `maxReplicas`.
    pub max_replicas: u32,
    /// HPA target CPU utilization, percent.
    pub target_utilization: u32,
    /// HPA `behavior`, in Kubernetes' own YAML shape.
    #[serde(default)]
    pub behavior: Behavior,
    /// Pod priority.
    #[serde(default)]
    pub priority: i32,
    /// From bound to node until Ready.
    #[serde(default = "default_pod_start")]
    pub pod_start_s: Dist,
    /// Share of the trace's traffic this service receives.
    pub share: f64,
    /// Extra traffic multipliers over time: `[from_s, to_s, factor]` (outages, returns).
    #[serde(default)]
    pub traffic_factors: Vec<(u64, u64, f64)>,
    /// `nodeSelector`.
    #[serde(default)]
    pub node_selector: Labels,
    /// CPU utilization (of the request) above which a pod serves its requests degraded:
    /// slow answers and timeouts long before 100 % (default 0.85).
    #[serde(default = "default_saturation")]
    pub saturation_utilization: f64,
    /// The service's PodDisruptionBudget `maxUnavailable`: a count (`2`) or a share of
    /// the replicas rounded up (`"10%"`). Every eviction by either policy respects it.
    #[serde(default)]
    pub pdb_max_unavailable: Option<MaxUnavailable>,
    /// Required pod anti-affinity terms (`requiredDuringSchedulingIgnoredDuringExecution`).
    #[serde(default)]
    pub anti_affinity: Vec<AntiAffinitySpec>,
    /// Zones the pods are pinned to: required node affinity
    /// `topology.kubernetes.io/zone In [zones]` (empty: any zone).
    #[serde(default)]
    pub zones: Vec<String>,
}

/// One required pod anti-affinity term of a service: none of its pods shares a domain of
/// `topology_key` (the nodes with the same value of that label) with a pod of `services`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AntiAffinitySpec {
    /// A node label: `topology.kubernetes.io/zone`, `kubernetes.io/hostname`, or one of
    /// the groups' `labels`.
    pub topology_key: String,
    /// The services whose pods are kept apart (label `app=<name>`); empty: the service's
    /// own pods.
    #[serde(default)]
    pub services: Vec<String>,
}

fn default_saturation() -> f64 {
    0.85
}

/// A PodDisruptionBudget's `maxUnavailable`, as Kubernetes writes it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "serde_yaml_ng::Value", into = "String")]
pub enum MaxUnavailable {
    /// A number of pods.
    Count(u32),
    /// A percentage of the replicas, rounded up (Kubernetes' rule for maxUnavailable).
    Percent(u32),
}

impl MaxUnavailable {
    /// Pods that may be unavailable out of `replicas`.
    pub fn of(self, replicas: u32) -> u32 {
        match self {
            MaxUnavailable::Count(n) => n,
            MaxUnavailable::Percent(p) => (u64::from(replicas) * u64::from(p)).div_ceil(100) as u32,
        }
    }
}

impl TryFrom<serde_yaml_ng::Value> for MaxUnavailable {
    type Error = String;
    fn try_from(v: serde_yaml_ng::Value) -> Result<Self, String> {
        let bad = || {
            format!("pdb_max_unavailable must be a count (2) or a percentage (\"10%\"), got {v:?}")
        };
        match &v {
            serde_yaml_ng::Value::Number(n) => n
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(MaxUnavailable::Count)
                .ok_or_else(bad),
            serde_yaml_ng::Value::String(s) => {
                let t = s.trim();
                match t.strip_suffix('%') {
                    Some(p) => p
                        .trim()
                        .parse::<u32>()
                        .ok()
                        .filter(|p| *p <= 100)
                        .map(MaxUnavailable::Percent)
                        .ok_or_else(bad),
                    None => t
                        .parse::<u32>()
                        .map(MaxUnavailable::Count)
                        .map_err(|_| bad()),
                }
            }
            _ => Err(bad()),
        }
    }
}

impl From<MaxUnavailable> for String {
    fn from(m: MaxUnavailable) -> String {
        match m {
            MaxUnavailable::Count(n) => n.to_string(),
            MaxUnavailable::Percent(p) => format!("{p}%"),
        }
    }
}

fn default_pod_start() -> Dist {
    Dist::Uniform(10.0, 30.0)
}

impl ServiceSpec {
    /// The HPA spec of the service.
    pub fn hpa(&self) -> HpaSpec {
        HpaSpec {
            min_replicas: self.min_replicas,
            max_replicas: self.max_replicas,
            target_utilization: self.target_utilization,
            behavior: self.behavior.clone(),
            tolerance: autoscaler_core::hpa::DEFAULT_TOLERANCE,
        }
    }
}

/// An instance type with its price in the group's market.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceTypeSpec {
    /// `m5.2xlarge`.
    pub name: String,
    /// vCPUs.
    pub vcpu: u32,
    /// Memory, GiB.
    pub memory_gib: u32,
    /// USD per hour in this group's market (spot for a mixed group).
    pub price_per_hour: f64,
    /// A mixed group's on-demand price (default: `price_per_hour`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_demand_price_per_hour: Option<f64>,
}

/// One node group (ASG).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    /// ASG name.
    pub name: String,
    /// Zones.
    pub zones: Vec<String>,
    /// Spot or on-demand (for a mixed group: the market of the part above the base).
    pub capacity_type: CapacityType,
    /// A mixed-instances group's on-demand base and percentage above it; launches
    /// follow AWS's split (`autoscaler_core::CapacityMix`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mix: Option<autoscaler_core::CapacityMix>,
    /// Instance types, in the ASG's launch preference order.
    pub instance_types: Vec<InstanceTypeSpec>,
    /// Min size.
    #[serde(default)]
    pub min: u32,
    /// Max size.
    pub max: u32,
    /// Nodes ready at the start.
    #[serde(default)]
    pub initial: u32,
    /// Priority-expander priority (higher wins).
    #[serde(default)]
    pub priority: i64,
    /// Extra node labels.
    #[serde(default)]
    pub labels: Labels,
}

/// A window in which a pool has no capacity (launches fail with
/// `InsufficientInstanceCapacity`). Empty filters match everything.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IceWindow {
    /// Start second.
    pub from_s: u64,
    /// End second (exclusive).
    pub to_s: u64,
    /// Market.
    #[serde(default)]
    pub capacity_type: Option<CapacityType>,
    /// Zones.
    #[serde(default)]
    pub zones: Vec<String>,
    /// Instance types.
    #[serde(default)]
    pub instance_types: Vec<String>,
}

impl IceWindow {
    /// Whether the pool is out of capacity at `t`.
    pub fn blocks(&self, t: u64, ct: CapacityType, zone: &str, itype: &str) -> bool {
        t >= self.from_s
            && t < self.to_s
            && self.capacity_type.is_none_or(|c| c == ct)
            && (self.zones.is_empty() || self.zones.iter().any(|z| z == zone))
            && (self.instance_types.is_empty() || self.instance_types.iter().any(|x| x == itype))
    }
}

/// Spot interruptions: `count` spot instances (matching `zone` if given) get the
/// two-minute notice at `at_s` and are terminated `notice_s` later.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interruption {
    /// When the notices arrive.
    pub at_s: u64,
    /// How many instances.
    pub count: u32,
    /// Zone filter.
    #[serde(default)]
    pub zone: Option<String>,
    /// Notice length (default 120 s).
    #[serde(default = "default_notice")]
    pub notice_s: u64,
}

fn default_notice() -> u64 {
    120
}

/// The cloud model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CloudSpec {
    /// Seed of every random draw (latencies, tie-breaks).
    pub seed: u64,
    /// From the ASG's launch to the node registering in Kubernetes.
    pub launch_latency_s: Dist,
    /// From registration to `Ready`.
    pub node_ready_latency_s: Dist,
    /// An ASG retries a failed launch after this long.
    pub asg_retry_s: u64,
    /// From a failed launch attempt until AWS records the failed scaling activity (the
    /// moment both `DescribeScalingActivities` and the EventBridge "EC2 Instance Launch
    /// Unsuccessful" event know of it). Drawn per attempt from the cloud's seed.
    pub failed_activity_delay_s: Dist,
    /// Delivery of an EventBridge event through SQS to its reader (`ours`, or
    /// aws-node-termination-handler beside cluster-autoscaler).
    pub failure_event_delay_s: u64,
    /// From a `RemoveNode` decision (`ours`) to the instance's termination: taint,
    /// evictions and the pods' graceful shutdown (Kubernetes' default
    /// `terminationGracePeriodSeconds` is 30 s), then `TerminateInstanceInAutoScalingGroup`
    /// with `ShouldDecrementDesiredCapacity`. Default 45 s.
    pub removal_drain_s: u64,
    /// Capacity outages.
    pub ice: Vec<IceWindow>,
    /// Spot interruptions.
    pub interruptions: Vec<Interruption>,
}

impl Default for CloudSpec {
    fn default() -> Self {
        CloudSpec {
            seed: 1,
            launch_latency_s: Dist::Uniform(40.0, 90.0),
            node_ready_latency_s: Dist::Uniform(20.0, 45.0),
            asg_retry_s: 30,
            // Spot ICE comes back synchronously from the fleet request the ASG makes
            // seconds after the desired capacity changes: a few seconds, rarely 20+.
            failed_activity_delay_s: Dist::Lognormal {
                median: 8.0,
                sigma: 0.5,
            },
            failure_event_delay_s: 5,
            removal_drain_s: 45,
            ice: Vec::new(),
            interruptions: Vec::new(),
        }
    }
}

/// The cluster-autoscaler models' flags and companions (defaults: cluster-autoscaler 1.33).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaSpec {
    /// `--scan-interval`.
    pub scan_interval_s: u64,
    /// AWS provider's ASG cache refresh.
    pub asg_refresh_s: u64,
    /// `--initial-node-group-backoff-duration`.
    pub backoff_initial_s: u64,
    /// `--max-node-group-backoff-duration`.
    pub backoff_max_s: u64,
    /// `--node-group-backoff-reset-timeout`.
    pub backoff_reset_s: u64,
    /// `--max-node-provision-time`.
    pub max_node_provision_time_s: u64,
    /// `--scale-down-utilization-threshold`.
    pub scale_down_utilization_threshold: f64,
    /// `--scale-down-unneeded-time`.
    pub scale_down_unneeded_time_s: u64,
    /// `--scale-down-delay-after-add`.
    pub scale_down_delay_after_add_s: u64,
    /// `--unremovable-node-recheck-timeout`: a candidate whose removal simulation failed
    /// (pods fit nowhere else, a PDB at 0) is not simulated again for this long.
    pub unremovable_node_recheck_timeout_s: u64,
    /// `--max-empty-bulk-delete` (1.30 only: empty nodes deleted per loop; the flag is
    /// gone in 1.33, where `--max-scale-down-parallelism` bounds them).
    pub max_empty_bulk_delete: u32,
    /// `--max-scale-down-parallelism` (1.33): nodes being deleted at once.
    pub max_scale_down_parallelism: u32,
    /// `--max-drain-parallelism` (1.33): non-empty nodes being drained at once.
    pub max_drain_parallelism: u32,
    /// `--max-bulk-soft-taint-count` (10): nodes whose `DeletionCandidateOfClusterAutoscaler`
    /// `PreferNoSchedule` taint is put or taken off per loop; 0 turns it off.
    pub max_bulk_soft_taint_count: u32,
    /// `--expander`.
    pub expander: String,
    /// `--balance-similar-node-groups` (off by default; CA's AWS docs recommend it for
    /// one ASG per zone): scale-ups are split across similar groups not in backoff.
    pub balance_similar_node_groups: bool,
    /// aws-node-termination-handler (queue processor) runs beside cluster-autoscaler: a
    /// spot interruption warning cordons and drains the node (respecting PDBs) before
    /// AWS takes it.
    pub node_termination_handler: bool,
}

impl Default for CaSpec {
    fn default() -> Self {
        CaSpec {
            scan_interval_s: 10,
            asg_refresh_s: 60,
            backoff_initial_s: 300,
            backoff_max_s: 1800,
            backoff_reset_s: 3 * 3600,
            max_node_provision_time_s: 900,
            scale_down_utilization_threshold: 0.5,
            scale_down_unneeded_time_s: 600,
            scale_down_delay_after_add_s: 600,
            unremovable_node_recheck_timeout_s: 300,
            max_empty_bulk_delete: 10,
            max_scale_down_parallelism: 10,
            max_drain_parallelism: 1,
            max_bulk_soft_taint_count: 10,
            expander: "priority,least-waste".into(),
            balance_similar_node_groups: false,
            node_termination_handler: false,
        }
    }
}

/// Simulation settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimSpec {
    /// How often `ours` decides.
    pub scan_interval_s: u64,
    /// HPA sync period (`--horizontal-pod-autoscaler-sync-period`).
    pub hpa_sync_s: u64,
    /// Resolution of the time series in the report.
    pub sample_s: u64,
    /// Pending episodes closer than this merge into one demand step.
    pub episode_merge_s: u64,
    /// Steady state (for `max_az_skew`) starts this long after a capacity outage ends
    /// (the engine's cool-offs must expire and rebalancing must finish).
    pub settle_s: u64,
    /// How pending pods are placed on nodes.
    pub scheduler: SchedulerKind,
}

/// The scheduler model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SchedulerKind {
    /// kube-scheduler's default profile, reduced to what the scenarios use: pods in
    /// priority then arrival order across services; feasible nodes scored by
    /// NodeResourcesFit (LeastAllocated, weight 1), NodeResourcesBalancedAllocation
    /// (weight 1) and the default PodTopologySpread constraints (zone maxSkew 5,
    /// hostname maxSkew 3, ScheduleAnyway; weight 2); `percentageOfNodesToScore`.
    #[default]
    KubeDefault,
    /// The earlier model: first fit in node-creation order, one service at a time.
    FirstFit,
}

impl Default for SimSpec {
    fn default() -> Self {
        SimSpec {
            scan_interval_s: 10,
            hpa_sync_s: 15,
            sample_s: 60,
            episode_merge_s: 60,
            settle_s: 3600,
            scheduler: SchedulerKind::KubeDefault,
        }
    }
}

/// Built-in scenarios: name, YAML.
pub const BUILTINS: [(&str, &str); 7] = [
    ("tv-peak-ice", include_str!("../scenarios/tv-peak-ice.yaml")),
    (
        "breaking-news",
        include_str!("../scenarios/breaking-news.yaml"),
    ),
    ("onsale", include_str!("../scenarios/onsale.yaml")),
    (
        "front-outage-return",
        include_str!("../scenarios/front-outage-return.yaml"),
    ),
    (
        "az-imbalance",
        include_str!("../scenarios/az-imbalance.yaml"),
    ),
    ("bench-24h", include_str!("../scenarios/bench-24h.yaml")),
    (
        "zonal-placement",
        include_str!("../scenarios/zonal-placement.yaml"),
    ),
];

/// A scenario with its traffic, ready to run.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The scenario.
    pub scenario: Scenario,
    /// Its traffic, scaled, cut or padded to the duration.
    pub trace: Trace,
}

impl Loaded {
    /// Seconds simulated: the scenario's `duration_s`, else the trace's length.
    pub fn duration_s(&self) -> u64 {
        self.scenario
            .duration_s
            .unwrap_or(self.trace.len_s())
            .max(1)
    }
}

impl Scenario {
    /// Parses YAML; `file` is used in errors.
    pub fn from_yaml(text: &str, file: &str) -> Result<Scenario, InputError> {
        let s: Scenario = serde_yaml_ng::from_str(text).map_err(|e| {
            let (line, col) = e
                .location()
                .map_or((0, 0), |l| (l.line() as u64, l.column()));
            let msg = e.to_string();
            let field = msg
                .split('`')
                .nth(1)
                .filter(|_| msg.contains("field"))
                .unwrap_or("(value)")
                .to_string();
            InputError::Field {
                file: file.into(),
                line,
                field,
                message: format!("{msg} (column {col})"),
            }
        })?;
        s.validate(file)?;
        Ok(s)
    }

    fn validate(&self, file: &str) -> Result<(), InputError> {
        let bad = |field: &str, message: String| InputError::Field {
            file: file.into(),
            line: 0,
            field: field.into(),
            message,
        };
        if self.services.is_empty() {
            return Err(bad("services", "at least one service is needed".into()));
        }
        for s in &self.services {
            s.hpa()
                .validate()
                .map_err(|e| bad(&format!("services.{}", s.name), e.to_string()))?;
            autoscaler_core::Resources::parse(&s.cpu, &s.memory)
                .map_err(|e| bad(&format!("services.{}.cpu/memory", s.name), e.to_string()))?;
            if !(s.saturation_utilization > 0.0 && s.saturation_utilization <= 2.0) {
                return Err(bad(
                    &format!("services.{}.saturation_utilization", s.name),
                    "must be a fraction of the CPU request in (0, 2], e.g. 0.85".into(),
                ));
            }
            if s.requests_per_pod <= 0.0 || s.share < 0.0 {
                return Err(bad(
                    &format!("services.{}", s.name),
                    "requests_per_pod must be > 0 and share >= 0".into(),
                ));
            }
            self.validate_placement(s).map_err(|(field, message)| {
                bad(&format!("services.{}.{field}", s.name), message)
            })?;
        }
        if self.node_groups.is_empty() {
            return Err(bad(
                "node_groups",
                "at least one node group is needed".into(),
            ));
        }
        for g in &self.node_groups {
            if g.zones.is_empty()
                || g.instance_types.is_empty()
                || g.min > g.max
                || g.initial > g.max
            {
                return Err(bad(
                    &format!("node_groups.{}", g.name),
                    "needs zones, instance types, and min <= initial <= max".into(),
                ));
            }
        }
        if self.trace.file.is_none() && self.trace.points.is_empty() {
            return Err(bad("trace", "give `file` or `points`".into()));
        }
        for (name, v) in [
            ("sim.scan_interval_s", self.sim.scan_interval_s),
            ("sim.hpa_sync_s", self.sim.hpa_sync_s),
            ("sim.sample_s", self.sim.sample_s),
            (
                "ca_baseline.scan_interval_s",
                self.ca_baseline.scan_interval_s,
            ),
            ("ca_baseline.asg_refresh_s", self.ca_baseline.asg_refresh_s),
        ] {
            if v == 0 {
                return Err(bad(name, "must be > 0".into()));
            }
        }
        self.autoscaler
            .validate()
            .map_err(|e| bad("autoscaler", e.to_string()))?;
        Ok(())
    }

    /// A service's zones and anti-affinity terms name zones, labels and services that
    /// exist: else the field and what to write instead.
    fn validate_placement(&self, s: &ServiceSpec) -> Result<(), (&'static str, String)> {
        let zones: BTreeSet<&str> = self
            .node_groups
            .iter()
            .flat_map(|g| g.zones.iter().map(String::as_str))
            .collect();
        if let Some(z) = s.zones.iter().find(|z| !zones.contains(z.as_str())) {
            return Err((
                "zones",
                format!("no node group has zone {z:?}; use one of {zones:?}"),
            ));
        }
        for term in &s.anti_affinity {
            let key = term.topology_key.as_str();
            let known = [
                ZONE_LABEL,
                HOSTNAME_LABEL,
                INSTANCE_TYPE_LABEL,
                CAPACITY_TYPE_LABEL,
            ]
            .contains(&key)
                || self.node_groups.iter().any(|g| g.labels.contains_key(key));
            if !known {
                return Err((
                    "anti_affinity",
                    format!(
                        "no node carries the label {key:?}: use {ZONE_LABEL}, {HOSTNAME_LABEL} \
                         or a key of node_groups[].labels"
                    ),
                ));
            }
            if let Some(other) = term
                .services
                .iter()
                .find(|o| !self.services.iter().any(|x| &x.name == *o))
            {
                return Err((
                    "anti_affinity",
                    format!("no service is named {other:?}; name services of this scenario"),
                ));
            }
        }
        Ok(())
    }

    /// A built-in by name, or a YAML file by path.
    pub fn load(name_or_file: &str) -> Result<(Scenario, Option<PathBuf>), InputError> {
        if let Some((_, yaml)) = BUILTINS.iter().find(|(n, _)| *n == name_or_file) {
            return Ok((
                Scenario::from_yaml(yaml, &format!("built-in {name_or_file}"))?,
                None,
            ));
        }
        let path = Path::new(name_or_file);
        if !path.exists() {
            return Err(InputError::UnknownScenario(name_or_file.into()));
        }
        let text = std::fs::read_to_string(path).map_err(|source| InputError::Read {
            file: name_or_file.into(),
            source,
        })?;
        Ok((
            Scenario::from_yaml(&text, name_or_file)?,
            Some(path.to_path_buf()),
        ))
    }

    /// Resolves the traffic: `trace_override` (from `--trace`) replaces the scenario's.
    pub fn resolve(
        self,
        scenario_path: Option<&Path>,
        trace_override: Option<(&Path, &Columns)>,
    ) -> Result<Loaded, InputError> {
        let trace = match (trace_override, &self.trace.file) {
            (Some((p, cols)), _) => Trace::from_csv(p, cols)?,
            (None, Some(f)) => {
                let p = match scenario_path.and_then(Path::parent) {
                    Some(dir) if f.is_relative() => dir.join(f),
                    _ => f.clone(),
                };
                Trace::from_csv(&p, &self.trace.columns)?
            }
            (None, None) => {
                let end = self.trace.points.last().map_or(0.0, |p| p.0) as u64 + 1;
                Trace::from_points(&self.trace.points, self.duration_s.unwrap_or(end))
            }
        }
        .scaled(self.trace.scale);
        Ok(Loaded {
            scenario: self,
            trace,
        })
    }
}

/// One line per built-in: name and description.
pub fn list_builtins() -> Vec<(String, String)> {
    BUILTINS
        .iter()
        .map(|(n, y)| {
            let d = Scenario::from_yaml(y, n)
                .map(|s| s.description)
                .unwrap_or_default();
            (n.to_string(), d)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_unavailable_reads_counts_and_percentages_rounded_up() {
        let yaml = |v: &str| serde_yaml_ng::from_str::<MaxUnavailable>(v);
        assert_eq!(yaml("2").unwrap(), MaxUnavailable::Count(2));
        assert_eq!(yaml("\"10%\"").unwrap().of(15), 2);
        assert_eq!(yaml("10%").unwrap().of(20), 2);
        assert_eq!(MaxUnavailable::Percent(10).of(0), 0);
        let err = yaml("\"ten\"").unwrap_err().to_string();
        assert!(err.contains("pdb_max_unavailable"), "{err}");
        assert!(yaml("\"150%\"").is_err());
    }
}
