//! Command-line flags: cluster-autoscaler's names, defaults and meanings, plus ours.
//!
//! Values come as `--flag=value` or `--flag value`; booleans also accept a bare `--flag`
//! and `--flag=false`, as Go's pflag does, because the Helm chart writes every flag as
//! `--name=value`. CA flags we do not implement are refused by [`check_unsupported`] with
//! a message saying what to use instead, rather than clap's generic "unexpected argument".

pub use autoscaler_aws::{AutoDiscovery, NodesSpec, SpecError};
use autoscaler_core::{AutoscalerConfig, Budget, HeadroomWindow, Range};
use clap::{ArgAction, Parser, ValueEnum};
use std::time::Duration;
use thiserror::Error;

/// A flag value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FlagError {
    /// A cluster-autoscaler flag that this autoscaler does not implement.
    #[error("--{flag} is a cluster-autoscaler flag this autoscaler does not support: {instead}")]
    Unsupported {
        /// The flag name, without dashes.
        flag: String,
        /// What to do instead.
        instead: &'static str,
    },
    /// A duration that is not Go's `time.Duration` syntax.
    #[error("invalid duration {0:?}: write it like 10s, 15m, 1h30m or 500ms")]
    Duration(String),
    /// A `min:max` range that does not parse.
    #[error("invalid range {0:?}: write it as min:max, e.g. 0:320000")]
    Range(String),
    /// No node group is configured.
    #[error("no node group: pass --nodes=min:max:name (repeatable) or --node-group-auto-discovery=asg:tag=...")]
    NoGroups,
    /// `--cloud-provider=static` with auto-discovery.
    #[error("--node-group-auto-discovery needs --cloud-provider=aws; the static provider only knows the groups given with --nodes")]
    DiscoveryNeedsAws,
    /// The engine refused the configuration.
    #[error("{0}")]
    Config(String),
    /// A `--headroom-window` that does not parse.
    #[error("invalid --headroom-window {value:?}: {why}; write START/DURATION/CPU, e.g. 2026-12-24T20:00:00Z/1h/40")]
    HeadroomWindow {
        /// The value given.
        value: String,
        /// What is wrong with it.
        why: String,
    },
    /// A CPU quantity that does not parse.
    #[error("invalid CPU quantity {0:?}: write it like 1, 500m or 2.5")]
    Cpu(String),
}

/// Parses a CPU quantity (`1`, `500m`) into millicores.
pub fn parse_cpu(input: &str) -> Result<u64, FlagError> {
    autoscaler_core::quantity::parse_cpu_millis(input.trim())
        .ok()
        .filter(|m| *m > 0)
        .ok_or_else(|| FlagError::Cpu(input.to_string()))
}

/// Parses `--headroom-window=START/DURATION/CPU` (START in RFC 3339).
pub fn parse_headroom_window(input: &str) -> Result<HeadroomWindow, FlagError> {
    let bad = |why: String| FlagError::HeadroomWindow {
        value: input.to_string(),
        why,
    };
    let parts: Vec<&str> = input.trim().split('/').collect();
    let [start, duration, cpu] = parts[..] else {
        return Err(bad(format!("{} part(s) instead of 3", parts.len())));
    };
    let start: k8s_openapi::jiff::Timestamp = start
        .parse()
        .map_err(|e| bad(format!("start {start:?} is not RFC 3339 ({e})")))?;
    let start_s =
        u64::try_from(start.as_second()).map_err(|_| bad("start is before 1970".to_string()))?;
    let duration = parse_duration(duration).map_err(|e| bad(e.to_string()))?;
    if duration.is_zero() {
        return Err(bad("the duration is 0".to_string()));
    }
    let cpu_millis = parse_cpu(cpu).map_err(|e| bad(e.to_string()))?;
    Ok(HeadroomWindow {
        start_s,
        end_s: start_s + duration.as_secs(),
        cpu_millis,
    })
}

/// Parses a Go `time.Duration` (`10s`, `15m0s`, `1h30m`, `500ms`, `1.5h`, `0`).
pub fn parse_duration(input: &str) -> Result<Duration, FlagError> {
    let err = || FlagError::Duration(input.to_string());
    let s = input.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(err());
    }
    let mut rest = s;
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        if num_len == 0 {
            return Err(err());
        }
        let value: f64 = rest[..num_len].parse().map_err(|_| err())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(err()),
        };
        rest = &rest[unit_len..];
        total += value * seconds_per_unit;
    }
    Ok(Duration::from_secs_f64(total))
}

/// Parses `min:max`.
pub fn parse_range(input: &str) -> Result<Range, FlagError> {
    let err = || FlagError::Range(input.to_string());
    let (min, max) = input.trim().split_once(':').ok_or_else(err)?;
    Ok(Range {
        min: min.trim().parse().map_err(|_| err())?,
        max: max.trim().parse().map_err(|_| err())?,
    })
}

/// Where node groups come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CloudProvider {
    /// AWS AutoScalingGroups (the `autoscaler-aws` adapter).
    Aws,
    /// Groups given with `--nodes`, kept in memory (tests, demos, shadow runs without AWS).
    Static,
}

fn bool_flag() -> ArgAction {
    ArgAction::Set
}

/// The autoscaler's flags. Names and defaults are cluster-autoscaler's where CA has the
/// flag; see docs/migration.md.
#[derive(Clone, Debug, Parser)]
#[command(
    name = "autoscaler",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("AUTOSCALER_GIT_COMMIT"), ")"),
    about = "Spot-aware drop-in replacement for cluster-autoscaler on AWS AutoScalingGroups"
)]
pub struct Flags {
    /// Cloud provider: `aws`, or `static` (groups from --nodes, in memory).
    #[arg(long, default_value = "aws", value_parser = parse_cloud_provider)]
    pub cloud_provider: CloudProvider,
    /// Node group `min:max:asg-name`; repeatable. The grammar (and its errors,
    /// [`SpecError`]) is the AWS adapter's, shared with its discovery.
    #[arg(long = "nodes", value_parser = NodesSpec::parse)]
    pub nodes: Vec<NodesSpec>,
    /// ASG auto-discovery, `asg:tag=k8s.io/cluster-autoscaler/enabled,k8s.io/cluster-autoscaler/<cluster>`; repeatable.
    #[arg(long, value_parser = AutoDiscovery::parse)]
    pub node_group_auto_discovery: Vec<AutoDiscovery>,
    /// Expander chain: priority, least-waste, most-pods, price, random (comma-separated).
    #[arg(long, default_value = "random")]
    pub expander: String,
    /// How often the cluster is re-evaluated (besides the watches' triggers).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub scan_interval: Duration,
    /// How long a requested node may take to register before the scale-up is reverted.
    #[arg(long, default_value = "15m", value_parser = parse_duration)]
    pub max_node_provision_time: Duration,
    /// Whether to remove unneeded nodes.
    #[arg(long, default_value_t = true, action = bool_flag(), num_args = 0..=1, default_missing_value = "true")]
    pub scale_down_enabled: bool,
    /// No scale-down in a group for this long after a scale-up.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub scale_down_delay_after_add: Duration,
    /// No scale-down in a group for this long after a failed removal.
    #[arg(long, default_value = "3m", value_parser = parse_duration)]
    pub scale_down_delay_after_failure: Duration,
    /// No scale-down in a balance set for this long after a removal (CA: one scan).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub scale_down_delay_after_delete: Duration,
    /// An unready node is removable after this long, whatever its utilization.
    #[arg(long, default_value = "20m", value_parser = parse_duration)]
    pub scale_down_unready_time: Duration,
    /// A node is not drained while a pod of the same workload as one of its pods started
    /// less than this long ago (its unneeded time keeps running); 0s disables.
    #[arg(long, default_value = "1m", value_parser = parse_duration)]
    pub scale_down_workload_settle: Duration,
    /// A node is not drained while evicting its pods would leave a workload's other
    /// replicas above this CPU utilization (share of requests, from its HPA) until the
    /// evicted ones restart; workloads without an HPA are not judged. 0 disables.
    #[arg(long, default_value_t = 0.85)]
    pub scale_down_busy_workload_utilization: f64,
    /// How long past its unneeded time such a node waits for the workload to cool down
    /// or grow before it is drained anyway.
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    pub scale_down_busy_workload_hold: Duration,
    /// Pods of ReplicaSets on this many of the nodes scale-down would remove next get a
    /// negative `controller.kubernetes.io/pod-deletion-cost`, so an HPA scale-in deletes
    /// them first and those nodes empty without a drain. 0 disables (writes nothing;
    /// costs written before are cleared).
    #[arg(long, default_value_t = 30)]
    pub scale_down_deletion_cost_nodes: u32,
    /// A node that still runs pods is drained only while the nodes left keep this many
    /// nodes' worth (the drained node's size) of free CPU and memory, placeholders
    /// counted as free, on nodes with its NoSchedule/NoExecute taints: room for a burst
    /// or an interrupted spot node's pods before a new node boots. Empty nodes go
    /// regardless. 0 disables.
    #[arg(long, default_value_t = 2)]
    pub scale_down_spare_nodes: u32,
    /// Nodes per round that may get (or lose) cluster-autoscaler's
    /// `DeletionCandidateOfClusterAutoscaler` `PreferNoSchedule` taint on unneeded
    /// nodes. CA's default is 10; ours is 0: off, and taints found are removed.
    #[arg(long, default_value_t = 0)]
    pub max_bulk_soft_taint_count: u32,
    /// Pods younger than this do not trigger scale-up yet.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub new_pod_scale_up_delay: Duration,
    /// Never remove nodes running pods owned by controllers other than ReplicaSet,
    /// ReplicationController, StatefulSet, Job or DaemonSet.
    #[arg(long, default_value_t = true, action = bool_flag(), num_args = 0..=1, default_missing_value = "true")]
    pub skip_nodes_with_custom_controller_pods: bool,
    /// How long a node must be unneeded before it is removed.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub scale_down_unneeded_time: Duration,
    /// Requested share (max of CPU and memory) at or below which a node is a candidate.
    #[arg(long, default_value_t = 0.5)]
    pub scale_down_utilization_threshold: f64,
    /// Empty nodes removed at once.
    #[arg(long, default_value_t = 10)]
    pub max_empty_bulk_delete: u32,
    /// Non-empty nodes drained at once.
    #[arg(long, default_value_t = 1)]
    pub max_drain_parallelism: u32,
    /// Longest graceful termination given to a pod when draining a node, in seconds.
    #[arg(long, default_value_t = 600)]
    pub max_graceful_termination_sec: u64,
    /// How long a pod's eviction is retried (a PDB refusing it) before the node's removal fails.
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    pub max_pod_eviction_time: Duration,
    /// Never remove nodes running pods with local storage (emptyDir, hostPath).
    #[arg(long, default_value_t = true, action = bool_flag(), num_args = 0..=1, default_missing_value = "true")]
    pub skip_nodes_with_local_storage: bool,
    /// Never remove nodes running kube-system pods (other than DaemonSet and mirror pods) without a PDB.
    #[arg(long, default_value_t = true, action = bool_flag(), num_args = 0..=1, default_missing_value = "true")]
    pub skip_nodes_with_system_pods: bool,
    /// Split scale-ups across similar groups (with --balance-zones, across their zones).
    #[arg(long, default_value_t = false, action = bool_flag(), num_args = 0..=1, default_missing_value = "true")]
    pub balance_similar_node_groups: bool,
    /// Pods with a priority below this never trigger scale-up and do not block scale-down.
    #[arg(long, default_value_t = -10, allow_hyphen_values = true)]
    pub expendable_pods_priority_cutoff: i32,
    /// Maximum nodes in the cluster (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub max_nodes_total: u32,
    /// Cluster cores `min:max`.
    #[arg(long, default_value = "0:320000", value_parser = parse_range)]
    pub cores_total: Range,
    /// Cluster memory in GiB `min:max`.
    #[arg(long, default_value = "0:6400000", value_parser = parse_range)]
    pub memory_total: Range,
    /// Maximum nodes added by one scale-up.
    #[arg(long, default_value_t = 1000)]
    pub max_nodes_per_scaleup: u32,
    /// Namespace of the Lease, the status ConfigMap and the ConfigMaps read.
    #[arg(long, default_value = "kube-system")]
    pub namespace: String,
    /// Path to a kubeconfig; in-cluster config (or $KUBECONFIG) when empty.
    #[arg(long, default_value = "")]
    pub kubeconfig: String,
    /// Run only while holding the Lease (two replicas: leader + standby).
    #[arg(long, default_value_t = true, action = bool_flag(), num_args = 0..=1, default_missing_value = "true")]
    pub leader_elect: bool,
    /// Name of the Lease.
    #[arg(long, default_value = "cluster-autoscaler")]
    pub leader_elect_resource_name: String,
    /// Namespace of the Lease (default: --namespace).
    #[arg(long, default_value = "")]
    pub leader_elect_resource_namespace: String,
    /// Lock type; only `leases` is supported.
    #[arg(long, default_value = "leases", value_parser = parse_lock)]
    pub leader_elect_resource_lock: String,
    /// How long a non-renewed Lease stays the leader's.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub leader_elect_lease_duration: Duration,
    /// How long the leader keeps trying to renew before stepping down.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub leader_elect_renew_deadline: Duration,
    /// How often candidates retry.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub leader_elect_retry_period: Duration,
    /// Name of the status ConfigMap.
    #[arg(long, default_value = "cluster-autoscaler-status")]
    pub status_config_map_name: String,
    /// Whether to write the status ConfigMap.
    #[arg(long, default_value_t = true, action = bool_flag(), num_args = 0..=1, default_missing_value = "true")]
    pub write_status_configmap: bool,
    /// Address of /metrics and /healthz (CA's name: --address).
    #[arg(long, alias = "address", default_value = ":8085")]
    pub metrics_address: String,
    /// klog verbosity (0-10); 0-1 logs info, 2-4 debug, 5+ trace. RUST_LOG overrides it.
    #[arg(long = "v", short = 'v', default_value_t = 0)]
    pub verbosity: u8,
    /// Accepted for compatibility: logs always go to stderr, as JSON.
    #[arg(long, default_value_t = true, action = bool_flag(), num_args = 0..=1, default_missing_value = "true")]
    pub logtostderr: bool,
    /// AWS region (else AWS_REGION / the instance metadata).
    #[arg(long, env = "AWS_REGION", default_value = "")]
    pub aws_region: String,
    /// AWS endpoint override (tests against moto); the SDK also reads AWS_ENDPOINT_URL.
    #[arg(long, hide = true, default_value = "")]
    pub aws_endpoint_url: String,
    /// One AWS HTTP attempt gives up after this (a hung endpoint does not stall rounds).
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub aws_attempt_timeout: Duration,
    /// One AWS call, retries and backoff included, gives up after this.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub aws_call_timeout: Duration,

    // ---- ours ----
    /// Shadow mode: compute and report every decision (logs, Events, metrics, status) but change nothing.
    #[arg(long, default_value_t = false, action = bool_flag(), num_args = 0..=1, default_missing_value = "true")]
    pub dry_run: bool,
    /// First cool-off of a capacity pool after InsufficientInstanceCapacity.
    #[arg(long, default_value = "3m", value_parser = parse_duration)]
    pub ice_cooloff: Duration,
    /// Ceiling of the cool-off's exponential growth.
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    pub ice_cooloff_max: Duration,
    /// Replace on-demand nodes older than this with spot once spot is back (0: never).
    #[arg(long, default_value = "2h", value_parser = parse_duration)]
    pub drain_back_after: Duration,
    /// On-demand nodes replaced at once per group: a count or a percentage (`10%`).
    #[arg(long, default_value = "1")]
    pub drain_back_budget: Budget,
    /// Keep the zones of each balance set at equal node counts (split scale-ups, rebalance).
    #[arg(long, default_value_t = true, action = bool_flag(), num_args = 0..=1, default_missing_value = "true")]
    pub balance_zones: bool,
    /// Tolerated difference in nodes between the fullest and emptiest zone.
    #[arg(long, default_value_t = 1)]
    pub zone_skew_threshold: u32,
    /// The tolerated skew grows with the balance set: at least this share of the mean
    /// nodes per zone (0.2: 3 zones x 20 nodes tolerate a skew of 4).
    #[arg(long, default_value_t = 0.2)]
    pub zone_skew_fraction: f64,
    /// Rebalance a set only after this long without a scale-up for pending pods or a
    /// scale-down in it (skew that appears while load moves heals for free).
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    pub rebalance_rest_after: Duration,
    /// Pods rebalancing and drain-back together may evict per balance set per hour.
    #[arg(long, default_value_t = 30)]
    pub disruption_evictions_per_hour: u32,
    /// Size the placeholder Deployment (--overprovisioning-name, which must exist) from
    /// demand growth x measured node boot time, on top of its ladder: pods arriving
    /// during a peak preempt placeholders instead of waiting for a node.
    #[arg(long, default_value_t = false, action = bool_flag(), num_args = 0..=1, default_missing_value = "true")]
    pub headroom: bool,
    /// CPU request of one placeholder pod (a Kubernetes quantity: `1`, `500m`).
    #[arg(long, default_value = "1", value_parser = parse_cpu)]
    pub headroom_placeholder_cpu: u64,
    /// Headroom never exceeds this share of the schedulable CPU.
    #[arg(long, default_value_t = 0.1)]
    pub headroom_max_fraction: f64,
    /// How long the room stays after demand stops growing.
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    pub headroom_hold: Duration,
    /// A known event: `START/DURATION/CPU`, e.g. `2026-12-24T20:00:00Z/1h/40` adds 40
    /// CPUs of room from one boot time before 20:00 UTC until 21:00; pods that arrive
    /// meanwhile use it up (it is not renewed); repeatable.
    #[arg(long, value_parser = parse_headroom_window)]
    pub headroom_window: Vec<HeadroomWindow>,
    /// After a spot capacity failure, spread each spot scale-up over every spot family
    /// (balance set) at the same priority and price, so one round finds which still
    /// have capacity instead of one round per family.
    #[arg(long, default_value_t = true, action = bool_flag(), num_args = 0..=1, default_missing_value = "true")]
    pub hedge_launches: bool,
    /// How long after a spot capacity failure scale-ups stay hedged.
    #[arg(long, default_value = "15m", value_parser = parse_duration)]
    pub hedge_window: Duration,
    /// Share of a hedged scale-up started on-demand in the same round (drained back
    /// later); 0 keeps hedging at the same node count and price.
    #[arg(long, default_value_t = 0.0)]
    pub hedge_on_demand_fraction: f64,
    /// Once this many spot families have failed for capacity within the hedge window
    /// and no spot node joined since, a spot scale-up starts on-demand at once, even a
    /// single node (drained back once spot returns); 0 disables.
    #[arg(long, default_value_t = 3)]
    pub hedge_broad_shortage_families: u32,
    /// Extra nodes, as a share, for a scale-up of 8 nodes or more whose pods differ in
    /// size: the scheduler spreads pods and strands one or two that would otherwise
    /// wait a whole node boot (0 disables).
    #[arg(long, default_value_t = 0.05)]
    pub bulk_scale_up_slack: f64,
    /// SQS queue URL with EventBridge ICE / interruption events.
    #[arg(long, default_value = "")]
    pub event_queue_url: String,
    /// How long a received SQS message stays hidden: a message whose events no
    /// successful round handled (a crash, failing rounds, a lost Lease) comes back to
    /// the leader after this long.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub event_queue_visibility_timeout: Duration,
    /// Quiet time after a watch event before a round runs (debounce).
    #[arg(long, default_value = "200ms", value_parser = parse_duration)]
    pub debounce: Duration,
    /// Name of the priority-expander ConfigMap (key `priorities`).
    #[arg(long, default_value = "cluster-autoscaler-priority-expander")]
    pub priority_config_map_name: String,
    /// Name of the overprovisioning ConfigMap (key `ladder` or `linear`) and placeholder Deployment.
    #[arg(long, default_value = "autoscaler-overprovisioning")]
    pub overprovisioning_name: String,
    /// Static provider: instance type of every group, `name:vcpus:memory-MiB:price`.
    #[arg(long, default_value = "m5.large:2:8192:0.096")]
    pub static_instance_type: String,
    /// Static provider: zones of every group (comma-separated).
    #[arg(long, default_value = "us-east-1a")]
    pub static_zones: String,
    /// Static provider: when a group grows, create a Node object for each new instance
    /// (annotated `kwok.x-k8s.io/node: fake`, so KWOK makes it Ready); for e2e tests.
    #[arg(long, default_value_t = false, action = bool_flag(), num_args = 0..=1, default_missing_value = "true")]
    pub static_create_kwok_nodes: bool,
    /// Record what the engine sees each round (workloads' pod counts and scheduling
    /// specs, nodes per group, events, decisions) to rotating JSON Lines files in this
    /// folder, for `autoscaler-sim replay` and `tune` (empty: off). Works with --dry-run.
    #[arg(long, default_value = "")]
    pub record_dir: String,
    /// Most bytes the recording files may take in --record-dir; the oldest go first.
    #[arg(long, default_value_t = 256 * 1024 * 1024)]
    pub record_max_bytes: u64,
}

fn parse_cloud_provider(s: &str) -> Result<CloudProvider, String> {
    match s {
        "aws" => Ok(CloudProvider::Aws),
        "static" => Ok(CloudProvider::Static),
        other => Err(format!(
            "cloud provider {other:?} is not supported: only aws (AutoScalingGroups) and static \
             (groups from --nodes, for tests) are; for {other} keep cluster-autoscaler"
        )),
    }
}

fn parse_lock(s: &str) -> Result<String, String> {
    if s == "leases" {
        Ok(s.to_string())
    } else {
        Err(format!(
            "lock type {s:?} is not supported: only leases (coordination.k8s.io/v1), the default since Kubernetes 1.14"
        ))
    }
}

/// CA flags we refuse, with what to do instead.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("estimator", "not needed: the engine always bin-packs pending pods onto simulated nodes; remove the flag"),
    ("cloud-config", "not needed on AWS: credentials come from IRSA / the instance profile and the region from --aws-region or AWS_REGION"),
    ("scale-down-gpu-utilization-threshold", "not supported: --scale-down-utilization-threshold applies to every node"),
    ("scale-down-non-empty-candidates-count", "not needed: every node is evaluated each round; remove the flag"),
    ("scale-down-candidates-pool-ratio", "not needed: every node is evaluated each round; remove the flag"),
    ("scale-down-candidates-pool-min-count", "not needed: every node is evaluated each round; remove the flag"),
    ("unremovable-node-recheck-timeout", "not needed: every node is re-evaluated each round; remove the flag"),
    ("max-scale-down-parallelism", "use --max-drain-parallelism (non-empty nodes) and --max-empty-bulk-delete (empty nodes)"),
    ("balancing-ignore-label", "not supported: groups are balanced by market, instance types, template labels and taints, or --balance-zones"),
    ("balancing-label", "not supported: groups are balanced by market, instance types, template labels and taints, or --balance-zones"),
    ("max-node-group-backoff-duration", "use --ice-cooloff-max (capacity failures cool off the pool, not the whole group)"),
    ("initial-node-group-backoff-duration", "use --ice-cooloff"),
    ("node-group-backoff-reset-timeout", "not configurable: a pool that has not failed for 1h starts again from --ice-cooloff"),
    ("ignore-daemonsets-utilization", "not supported: utilization always counts every pod's requests"),
    ("ignore-mirror-pods-utilization", "not supported: utilization always counts every pod's requests"),
    ("ok-total-unready-count", "not supported: unready nodes do not stop the autoscaler"),
    ("max-total-unready-percentage", "not supported: unready nodes do not stop the autoscaler"),
    ("max-inactivity", "not needed: /healthz fails when the decision loop stalls"),
    ("max-failing-time", "not needed: /healthz fails when the decision loop stalls"),
    ("gce-concurrent-refreshes", "GCE is not supported; only --cloud-provider=aws"),
    ("gpu-total", "not supported: GPUs are planned as extended resources per node group"),
    ("node-autoprovisioning-enabled", "not supported: node groups are ASGs that exist"),
    ("max-autoprovisioned-node-group-count", "not supported: node groups are ASGs that exist"),
    ("kube-client-qps", "not needed: Kubernetes is watched, not polled"),
    ("kube-client-burst", "not needed: Kubernetes is watched, not polled"),
    ("daemonset-eviction-for-empty-nodes", "not supported: DaemonSet pods are left for the node's termination"),
    ("daemonset-eviction-for-occupied-nodes", "not supported: DaemonSet pods are left for the node's termination"),
    ("regional", "not supported (GCE only)"),
    ("aws-use-static-instance-list", "not needed: instance types are described through the EC2 API"),
    ("enforce-node-group-min-size", "not supported yet: groups below min size are raised by the ASG itself"),
    ("scale-up-from-zero", "always on: groups scale from zero using their launch template"),
    ("parallel-drain", "always on: use --max-drain-parallelism"),
    ("emit-per-nodegroup-metrics", "always on: per-group metrics carry a node_group label"),
    ("profiling", "not supported"),
    ("leader-elect-resource-name-prefix", "use --leader-elect-resource-name"),
];

/// Refuses known cluster-autoscaler flags that are not implemented, naming the flag and
/// what to use instead. Run before clap, whose own error would only say "unexpected".
pub fn check_unsupported<S: AsRef<str>>(args: &[S]) -> Result<(), FlagError> {
    for arg in args.iter().skip(1) {
        let arg = arg.as_ref();
        if arg == "--" {
            break;
        }
        let Some(name) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            continue;
        };
        let name = name.split_once('=').map_or(name, |(n, _)| n);
        if let Some((flag, instead)) = UNSUPPORTED.iter().find(|(f, _)| *f == name) {
            return Err(FlagError::Unsupported {
                flag: flag.to_string(),
                instead,
            });
        }
    }
    Ok(())
}

/// Parses the process arguments (first element: the program name): unsupported CA
/// flags first, then clap, then cross-flag checks and the engine's validation.
pub fn parse<S: AsRef<str>>(args: &[S]) -> anyhow::Result<Flags> {
    check_unsupported(args)?;
    let flags = Flags::try_parse_from(args.iter().map(|a| a.as_ref().to_string()))?;
    flags.validate()?;
    Ok(flags)
}

impl Flags {
    /// Cross-flag checks that clap cannot express.
    pub fn validate(&self) -> Result<(), FlagError> {
        if self.nodes.is_empty() && self.node_group_auto_discovery.is_empty() {
            return Err(FlagError::NoGroups);
        }
        if self.cloud_provider == CloudProvider::Static
            && !self.node_group_auto_discovery.is_empty()
        {
            return Err(FlagError::DiscoveryNeedsAws);
        }
        self.to_config()?;
        Ok(())
    }

    /// The engine configuration these flags describe.
    pub fn to_config(&self) -> Result<AutoscalerConfig, FlagError> {
        let mut c = AutoscalerConfig {
            expander: self
                .expander
                .parse()
                .map_err(|e: autoscaler_core::ExpanderError| FlagError::Config(e.to_string()))?,
            expendable_pods_priority_cutoff: self.expendable_pods_priority_cutoff,
            max_node_provision_time: self.max_node_provision_time,
            max_nodes_total: self.max_nodes_total,
            cores_total: self.cores_total,
            memory_total_gib: self.memory_total,
            max_nodes_per_scale_up: self.max_nodes_per_scaleup,
            new_pod_scale_up_delay: self.new_pod_scale_up_delay,
            ..AutoscalerConfig::default()
        };
        c.cool_off.initial = self.ice_cooloff;
        c.cool_off.max = self.ice_cooloff_max;
        let sd = &mut c.scale_down;
        sd.enabled = self.scale_down_enabled;
        sd.utilization_threshold = self.scale_down_utilization_threshold;
        sd.unneeded_time = self.scale_down_unneeded_time;
        sd.delay_after_add = self.scale_down_delay_after_add;
        sd.delay_after_failure = self.scale_down_delay_after_failure;
        sd.max_empty_bulk_delete = self.max_empty_bulk_delete;
        sd.max_drain_parallelism = self.max_drain_parallelism;
        sd.skip_nodes_with_local_storage = self.skip_nodes_with_local_storage;
        sd.skip_nodes_with_system_pods = self.skip_nodes_with_system_pods;
        sd.skip_nodes_with_custom_controller_pods = self.skip_nodes_with_custom_controller_pods;
        sd.unready_time = self.scale_down_unready_time;
        sd.delay_after_delete = self.scale_down_delay_after_delete;
        sd.workload_settle = self.scale_down_workload_settle;
        sd.busy_workload_utilization = self.scale_down_busy_workload_utilization;
        sd.busy_workload_hold = self.scale_down_busy_workload_hold;
        sd.deletion_cost_nodes = self.scale_down_deletion_cost_nodes;
        sd.spare_nodes = self.scale_down_spare_nodes;
        sd.max_bulk_soft_taint_count = self.max_bulk_soft_taint_count;
        c.drain_back.after = self.drain_back_after;
        c.drain_back.budget = self.drain_back_budget;
        c.balance.enabled = self.balance_zones || self.balance_similar_node_groups;
        c.balance.rebalance = self.balance_zones;
        c.balance.skew_threshold = self.zone_skew_threshold;
        c.balance.skew_fraction = self.zone_skew_fraction;
        c.balance.rest_after = self.rebalance_rest_after;
        c.balance.evictions_per_hour = self.disruption_evictions_per_hour;
        let h = &mut c.headroom;
        h.enabled = self.headroom;
        h.placeholder_cpu_millis = self.headroom_placeholder_cpu;
        h.max_fraction = self.headroom_max_fraction;
        h.hold = self.headroom_hold;
        h.windows = self.headroom_window.clone();
        c.hedge.enabled = self.hedge_launches;
        c.hedge.window = self.hedge_window;
        c.hedge.on_demand_fraction = self.hedge_on_demand_fraction;
        c.hedge.broad_shortage_families = self.hedge_broad_shortage_families;
        c.bulk_slack = self.bulk_scale_up_slack;
        c.validate().map_err(|e| FlagError::Config(e.to_string()))?;
        Ok(c)
    }

    /// Namespace of the Lease.
    pub fn lease_namespace(&self) -> &str {
        if self.leader_elect_resource_namespace.is_empty() {
            &self.namespace
        } else {
            &self.leader_elect_resource_namespace
        }
    }

    /// The socket address of --metrics-address (`:8085` means every interface).
    pub fn metrics_socket(&self) -> anyhow::Result<std::net::SocketAddr> {
        let a = &self.metrics_address;
        let full = if a.starts_with(':') {
            format!("0.0.0.0{a}")
        } else {
            a.clone()
        };
        full.parse().map_err(|e| {
            anyhow::anyhow!("--metrics-address {a:?}: {e}; write it as :8085 or 127.0.0.1:8085")
        })
    }

    /// The tracing filter for `--v`.
    pub fn log_filter(&self) -> &'static str {
        match self.verbosity {
            0..=1 => "info",
            2..=4 => "info,autoscaler_bin=debug",
            _ => "debug,autoscaler_bin=trace",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> anyhow::Result<Flags> {
        let mut all = vec!["autoscaler"];
        all.extend_from_slice(args);
        parse(&all)
    }

    #[test]
    fn aws_timeouts_have_defaults_and_parse_durations() {
        let f = p(&["--nodes=0:10:web"]).unwrap();
        assert_eq!(f.aws_attempt_timeout, Duration::from_secs(20));
        assert_eq!(f.aws_call_timeout, Duration::from_secs(60));
        let f = p(&[
            "--nodes=0:10:web",
            "--aws-attempt-timeout=2m",
            "--aws-call-timeout=5m",
        ])
        .unwrap();
        assert_eq!(f.aws_attempt_timeout, Duration::from_secs(120));
        assert_eq!(f.aws_call_timeout, Duration::from_secs(300));
        assert!(p(&["--nodes=0:10:web", "--aws-call-timeout=soon"]).is_err());
    }

    #[test]
    fn hedge_and_slack_flags_reach_the_engine_and_bad_shares_are_refused() {
        let c = p(&["--nodes=0:10:web"]).unwrap().to_config().unwrap();
        assert!(c.hedge.enabled, "hedging is on by default");
        assert_eq!(c.hedge.window, Duration::from_secs(900));
        assert_eq!(c.hedge.on_demand_fraction, 0.0);
        assert_eq!(c.hedge.broad_shortage_families, 3);
        assert_eq!(c.bulk_slack, 0.05);
        let c = p(&[
            "--nodes=0:10:web",
            "--hedge-launches=false",
            "--hedge-window=5m",
            "--hedge-on-demand-fraction=0.25",
            "--hedge-broad-shortage-families=0",
            "--bulk-scale-up-slack=0",
        ])
        .unwrap()
        .to_config()
        .unwrap();
        assert!(!c.hedge.enabled);
        assert_eq!(c.hedge.window, Duration::from_secs(300));
        assert_eq!(c.hedge.on_demand_fraction, 0.25);
        assert_eq!(c.hedge.broad_shortage_families, 0);
        assert_eq!(c.bulk_slack, 0.0);
        // Refused when the flags are read, naming the flag.
        let err = p(&["--nodes=0:10:web", "--hedge-on-demand-fraction=1.5"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("hedge-on-demand-fraction 1.5"), "{err}");
    }

    #[test]
    fn headroom_and_balance_flags_reach_the_engine() {
        let f = p(&[
            "--nodes=0:10:web",
            "--headroom",
            "--headroom-placeholder-cpu=500m",
            "--headroom-max-fraction=0.2",
            "--headroom-hold=5m",
            "--headroom-window=2026-12-24T20:00:00Z/1h/40",
            "--headroom-window=2026-12-31T23:00:00+01:00/30m/2.5",
            "--zone-skew-fraction=0.3",
            "--rebalance-rest-after=1h",
            "--disruption-evictions-per-hour=12",
        ])
        .unwrap();
        let c = f.to_config().unwrap();
        assert!(c.headroom.enabled);
        assert_eq!(c.headroom.placeholder_cpu_millis, 500);
        assert_eq!(c.headroom.max_fraction, 0.2);
        assert_eq!(c.headroom.hold, Duration::from_secs(300));
        // 2026-12-24T20:00:00Z is 1798142400 s after the Unix epoch.
        assert_eq!(
            c.headroom.windows[0],
            HeadroomWindow {
                start_s: 1_798_142_400,
                end_s: 1_798_146_000,
                cpu_millis: 40_000
            }
        );
        assert_eq!(c.headroom.windows[1].start_s, 1_798_754_400);
        assert_eq!(c.headroom.windows[1].cpu_millis, 2_500);
        assert_eq!(c.balance.skew_fraction, 0.3);
        assert_eq!(c.balance.rest_after, Duration::from_secs(3600));
        assert_eq!(c.balance.evictions_per_hour, 12);
        // Off by default: it needs the placeholder Deployment.
        assert!(
            !p(&["--nodes=0:10:web"])
                .unwrap()
                .to_config()
                .unwrap()
                .headroom
                .enabled
        );
    }

    #[test]
    fn bad_headroom_windows_say_what_to_write() {
        for (value, says) in [
            ("2026-12-24T20:00:00Z/1h", "2 part(s)"),
            ("tomorrow/1h/4", "not RFC 3339"),
            ("2026-12-24T20:00:00Z/soon/4", "invalid duration"),
            ("2026-12-24T20:00:00Z/0/4", "duration is 0"),
            ("2026-12-24T20:00:00Z/1h/lots", "invalid CPU quantity"),
        ] {
            let e = parse_headroom_window(value).unwrap_err().to_string();
            assert!(e.contains(says), "{value}: {e}");
            assert!(e.contains("START/DURATION/CPU"), "{e}");
        }
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("15m0s").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        for bad in ["", "10", "10x", "m", "1h30", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ranges_and_nodes() {
        assert_eq!(
            parse_range("0:320000").unwrap(),
            Range {
                min: 0,
                max: 320_000
            }
        );
        assert!(parse_range("5").is_err());
        let n = NodesSpec::parse("0:10:static-spot").unwrap();
        assert_eq!((n.min, n.max, n.name.as_str()), (0, 10, "static-spot"));
        assert!(NodesSpec::parse("10:1:x").is_err());
        assert!(NodesSpec::parse("1:2:").is_err());
        let d = AutoDiscovery::parse(
            "asg:tag=k8s.io/cluster-autoscaler/enabled,k8s.io/cluster-autoscaler/prod=owned",
        )
        .unwrap();
        assert_eq!(
            d.tags[0],
            ("k8s.io/cluster-autoscaler/enabled".into(), None)
        );
        assert_eq!(d.tags[1].1.as_deref(), Some("owned"));
        assert!(AutoDiscovery::parse("mig:namePrefix=x").is_err());
    }

    #[test]
    fn defaults_are_cluster_autoscalers() {
        let f = p(&["--nodes=1:10:web"]).unwrap();
        assert_eq!(f.cloud_provider, CloudProvider::Aws);
        assert_eq!(f.expander, "random");
        assert_eq!(f.scan_interval, Duration::from_secs(10));
        assert!(f.leader_elect && f.scale_down_enabled && f.skip_nodes_with_local_storage);
        assert!(!f.balance_similar_node_groups && !f.dry_run);
        assert_eq!(f.namespace, "kube-system");
        assert_eq!(f.leader_elect_resource_name, "cluster-autoscaler");
        assert_eq!(f.status_config_map_name, "cluster-autoscaler-status");
        assert_eq!(f.metrics_socket().unwrap().port(), 8085);
        let c = f.to_config().unwrap();
        assert_eq!(c.expendable_pods_priority_cutoff, -10);
        assert_eq!(c.max_node_provision_time, Duration::from_secs(900));
        assert_eq!(c.scale_down.unneeded_time, Duration::from_secs(600));
        assert_eq!(c.scale_down.delay_after_failure, Duration::from_secs(180));
        assert_eq!(
            c.cores_total,
            Range {
                min: 0,
                max: 320_000
            }
        );
        assert_eq!(
            c.memory_total_gib,
            Range {
                min: 0,
                max: 6_400_000
            }
        );
        assert_eq!(c.cool_off.initial, Duration::from_secs(180));
        assert_eq!(c.drain_back.after, Duration::from_secs(7200));
        assert_eq!(f.max_pod_eviction_time, Duration::from_secs(120));
        assert_eq!(f.max_graceful_termination_sec, 600);
    }

    #[test]
    fn chart_style_arguments_parse() {
        // What charts/autoscaler renders: every flag as --name=value, booleans included.
        let f = p(&[
            "--balance-zones=true",
            "--cloud-provider=static",
            "--drain-back-after=2h",
            "--drain-back-budget=10%",
            "--dry-run=true",
            "--expander=priority,least-waste",
            "--ice-cooloff=3m",
            "--ice-cooloff-max=30m",
            "--leader-elect=false",
            "--logtostderr=true",
            "--metrics-address=:9000",
            "--namespace=autoscaler-shadow",
            "--status-config-map-name=cluster-autoscaler-status",
            "--v=4",
            "--zone-skew-threshold=2",
            "--nodes=0:10:static-spot",
            "--nodes=0:5:static-od",
            "--scale-down-utilization-threshold=0.6",
            "--expendable-pods-priority-cutoff=-5",
            "--max-node-provision-time=15m0s",
            "--skip-nodes-with-system-pods=false",
            "--scale-down-enabled",
            "--scale-down-unready-time=30m",
            "--scale-down-delay-after-delete=10s",
            "--scale-down-workload-settle=0s",
            "--scale-down-busy-workload-utilization=0",
            "--scale-down-busy-workload-hold=1h",
            "--scale-down-deletion-cost-nodes=0",
            "--scale-down-spare-nodes=0",
            "--max-bulk-soft-taint-count=10",
            "--new-pod-scale-up-delay=5s",
            "--skip-nodes-with-custom-controller-pods=false",
        ])
        .unwrap();
        assert!(f.dry_run && !f.leader_elect && f.scale_down_enabled);
        assert!(!f.skip_nodes_with_system_pods);
        assert_eq!(f.nodes.len(), 2);
        assert_eq!(f.verbosity, 4);
        assert_eq!(f.drain_back_budget, Budget::Percent(10));
        let c = f.to_config().unwrap();
        assert_eq!(c.expendable_pods_priority_cutoff, -5);
        assert_eq!(c.balance.skew_threshold, 2);
        assert_eq!(c.scale_down.utilization_threshold, 0.6);
        assert!(!c.scale_down.skip_nodes_with_system_pods);
        assert!(!c.scale_down.skip_nodes_with_custom_controller_pods);
        assert_eq!(c.scale_down.unready_time, Duration::from_secs(1800));
        assert_eq!(c.scale_down.delay_after_delete, Duration::from_secs(10));
        assert_eq!(c.scale_down.workload_settle, Duration::ZERO);
        assert_eq!(c.scale_down.busy_workload_utilization, 0.0);
        assert_eq!(c.scale_down.busy_workload_hold, Duration::from_secs(3600));
        assert_eq!(c.scale_down.deletion_cost_nodes, 0);
        assert_eq!(c.scale_down.spare_nodes, 0);
        assert_eq!(c.scale_down.max_bulk_soft_taint_count, 10);
        assert_eq!(c.new_pod_scale_up_delay, Duration::from_secs(5));
        // CA's name for the metrics address.
        assert_eq!(
            p(&["--nodes=0:1:a", "--address=:9999"])
                .unwrap()
                .metrics_socket()
                .unwrap()
                .port(),
            9999
        );
    }

    #[test]
    fn unsupported_flags_say_what_to_use_instead() {
        let e = p(&["--nodes=0:1:a", "--estimator=binpacking"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--estimator") && e.contains("not needed"), "{e}");
        let e = p(&["--nodes=0:1:a", "--max-node-group-backoff-duration", "30m"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--ice-cooloff-max"), "{e}");
        let e = p(&["--nodes=0:1:a", "--cloud-provider=gce"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("only aws") && e.contains("static"), "{e}");
        let e = p(&["--nodes=0:1:a", "--leader-elect-resource-lock=endpoints"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("only leases"), "{e}");
        // A flag nobody knows: clap's error names it.
        let e = p(&["--nodes=0:1:a", "--no-such-flag"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--no-such-flag"), "{e}");
    }

    #[test]
    fn bad_values_are_refused_with_the_flag() {
        let e = p(&["--nodes=0:1:a", "--scan-interval=10"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("scan-interval") && e.contains("10s"), "{e}");
        let e = p(&["--nodes=0:1:a", "--expander=cheapest"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("cheapest"), "{e}");
        let e = p(&["--nodes=0:1:a", "--cores-total=10:1"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("cores-total"), "{e}");
        let e = p(&[]).unwrap_err().to_string();
        assert!(e.contains("--nodes"), "{e}");
        let e = p(&["--nodes=10:1:web"]).unwrap_err().to_string();
        assert!(
            e.contains("--nodes") && e.contains("min 10 is above max 1") && e.contains("1:10:"),
            "{e}"
        );
        let e = p(&["--node-group-auto-discovery=mig:x"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("asg:tag=key1,key2"), "{e}");
        let e = p(&[
            "--cloud-provider=static",
            "--node-group-auto-discovery=asg:tag=a",
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("--cloud-provider=aws"), "{e}");
    }
}
