//! The discrete-event engine: a one-second clock driving
//! traffic -> HPA -> pods -> scheduler -> policy -> cloud -> nodes -> pods.
//!
//! Modelling choices and their sources (the README has the full table, with the
//! cluster-autoscaler source file of every CA rule):
//! - **HPA**: `autoscaler_core::hpa`, synced every 15 s (kube-controller-manager's
//!   `--horizontal-pod-autoscaler-sync-period` default). CPU usage of a ready pod is its
//!   share of the service's traffic divided by `requests_per_pod`, capped at the limit.
//! - **Pods**: one pod = one replica. Deleting replicas removes unscheduled pods first,
//!   then not-ready ones, then the newest (the ReplicaSet controller's deletion order).
//! - **Scheduler**: kube-scheduler's default profile as far as the scenarios reach
//!   (priority then FIFO across services, LeastAllocated + BalancedAllocation + default
//!   topology spread, `percentageOfNodesToScore`), or the old first fit.
//! - **Drains**: cordon, evictions as PodDisruptionBudgets allow, termination once
//!   empty; the same for every policy and for aws-node-termination-handler.
//! - **Cloud**: an ASG launches while desired > instances; each instance goes to the
//!   zone with the fewest instances of the group (ASG AZ balancing) and the first
//!   instance type with capacity (prioritized allocation); registration and readiness
//!   follow the latency distributions. When no pool has capacity the launch fails, the
//!   ASG retries after `asg_retry_s`, and AWS records a failed scaling activity after
//!   `failed_activity_delay_s`: `ours` gets its EventBridge event exactly as the AWS
//!   adapter parses it (spot: zone, no type); CA reads it at its next ASG cache
//!   regeneration, for the whole group.
//! - **Policies**: `ours` calls the production engine every scan (10 s) with the
//!   scenario's `autoscaler` config and carries out every decision. `ca-1.33` and
//!   `ca-1.30` run the same engine configured like cluster-autoscaler (priority
//!   expander, node group backoff 5 min doubling to 30 min, reset after 3 h, no
//!   pool-wide cool-off) inside a CA loop modelled here: the ASG cache, failed
//!   scale-ups, the 1.30 "skip the iteration" and 1.31+ "same loop" rules, and CA's
//!   scale-down with its parallelism budgets.

pub use crate::aws_messages::AwsLaunchFailure;
use crate::report::{Episode, LogEntry, OnDemandReturn, PolicyReport, SeriesPoint};
use crate::scenario::{Dist, Loaded, MaxUnavailable, Scenario, SchedulerKind};
use autoscaler_core::hpa::{Hpa, ResourceMetrics};
use autoscaler_core::model::{
    NodeSelectorTerm, PodAntiAffinityTerm, Requirement, SelectorOperator, CAPACITY_TYPE_LABEL,
    DELETION_COST_SET_BY_US, HOSTNAME_LABEL, INSTANCE_TYPE_LABEL, POD_DELETION_COST, ZONE_LABEL,
};
use autoscaler_core::{
    Autoscaler, AutoscalerConfig, BalanceConfig, BalanceSets, CapacityType, ClusterSnapshot,
    CoolOffPolicy, Decision, DrainBackConfig, Event, HeadroomConfig, HedgeConfig, InstanceType,
    InterruptionKind, LabelSelector, LaunchFailureReason, Node, NodeGroup, NodeTemplate,
    NodeVerdict, OwnerRef, Pod, PodDisruptionBudget, RemovalKind, Resources, ScaleDownConfig,
    ScaleUpCause, SchedulingSpec, SnapshotParts, Timestamp, WorkloadLoad,
};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

const NONE: u32 = u32::MAX;
/// A removal started this soon after the node's launch counts as flapping.
const YOUNG_REMOVAL_S: u64 = 600;

/// A topology key of an anti-affinity term, with fast paths for the two common ones.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Topology {
    /// `topology.kubernetes.io/zone`: one domain per zone.
    Zone,
    /// `kubernetes.io/hostname`: one domain per node.
    Hostname,
    /// Any other node label: the nodes with the same value.
    Label(String),
}

impl Topology {
    fn of(key: &str) -> Topology {
        match key {
            ZONE_LABEL => Topology::Zone,
            HOSTNAME_LABEL => Topology::Hostname,
            other => Topology::Label(other.to_string()),
        }
    }
}

/// Which autoscaler drives the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PolicyKind {
    /// The production core, unmodified.
    Ours,
    /// cluster-autoscaler 1.33 (what people run today; `ca-baseline` is its alias).
    Ca133,
    /// cluster-autoscaler 1.30 (before the failed-scale-up loop fix of 1.31).
    Ca130,
}

impl PolicyKind {
    /// The current cluster-autoscaler model, what `ca-baseline` names.
    pub const CA_BASELINE: PolicyKind = PolicyKind::Ca133;

    /// The policy's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::Ours => "ours",
            PolicyKind::Ca133 => "ca-1.33",
            PolicyKind::Ca130 => "ca-1.30",
        }
    }

    /// A cluster-autoscaler model (any version).
    pub fn is_ca(self) -> bool {
        self != PolicyKind::Ours
    }
}

impl fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for PolicyKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "ours" => Ok(PolicyKind::Ours),
            "ca-1.33" | "ca-baseline" | "ca" => Ok(PolicyKind::Ca133),
            "ca-1.30" => Ok(PolicyKind::Ca130),
            other => Err(format!(
                "unknown policy {other:?}; use ours, ca-1.33 (alias ca-baseline) or ca-1.30"
            )),
        }
    }
}

/// Common random numbers: every random quantity is drawn from its own stream, keyed by
/// what it is for and by a number both policies share (the k-th instance launched, the
/// k-th pod started, the k-th failed launch). Two policies that launch their k-th node
/// at different moments still wait the same time for it, so the gap between them is
/// their decisions, not a shared stream drifting apart after their first difference.
#[derive(Clone, Copy)]
struct Draws {
    seed: u64,
}

/// What a keyed draw is for.
#[derive(Clone, Copy)]
enum Purpose {
    LaunchLatency = 1,
    NodeReadyLatency = 2,
    PodStart = 3,
    FailedActivityDelay = 4,
    InterruptionPick = 5,
}

impl Draws {
    /// The stream for `purpose` and `key`.
    fn rng(self, purpose: Purpose, key: u64) -> ChaCha8Rng {
        // splitmix64 over the three numbers: well-spread seeds for nearby keys.
        let mut z = self.seed
            ^ (purpose as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ key.wrapping_mul(0xd1b5_4a32_d192_ed03);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ChaCha8Rng::seed_from_u64(z ^ (z >> 31))
    }

    /// One latency for `purpose` and `key`.
    fn sample(self, d: &Dist, purpose: Purpose, key: u64) -> u64 {
        sample(d, &mut self.rng(purpose, key))
    }
}

fn uniform(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// Draws a latency in whole seconds (at least 1).
pub fn sample(d: &Dist, rng: &mut ChaCha8Rng) -> u64 {
    let v = match *d {
        Dist::Fixed(v) => v,
        Dist::Uniform(a, b) => a + (b - a) * uniform(rng),
        Dist::Lognormal { median, sigma } => {
            // Box-Muller.
            let u1 = uniform(rng).max(1e-12);
            let u2 = uniform(rng);
            let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            median * (sigma * z).exp()
        }
    };
    v.round().max(1.0) as u64
}

struct Svc {
    name: String,
    rpp: f64,
    limit: f64,
    req: Resources,
    hpa: Hpa,
    start: Dist,
    share: f64,
    factors: Vec<(u64, u64, f64)>,
    template: Pod,
    pending: BTreeSet<u32>,
    starting: BTreeSet<u32>,
    running: BTreeSet<u32>,
    load: f64,
    /// Utilization (of the CPU request) above which requests are served degraded.
    saturation: f64,
    /// Average CPU utilization of the ready pods, percent of requests, at the HPA's last
    /// sync (its `status.currentMetrics`, which the controller reads).
    hpa_utilization: Option<u32>,
    pdb: Option<MaxUnavailable>,
    /// Bound pods per zone index (default topology spread, zone anti-affinity).
    zone_pods: Vec<u32>,
    /// Zone indexes its pods are pinned to (required node affinity); empty: any zone.
    pinned_zones: Vec<u16>,
    /// Required anti-affinity in both directions (its own terms, and other services'
    /// terms that select it): no pod of the service shares a domain of the topology with
    /// a pod of the other service.
    conflicts: Vec<(Topology, usize)>,
    /// The overprovisioning placeholder Deployment: no traffic, no HPA, preempted by
    /// every real pod; not counted as demand, pending pods or evictions.
    placeholder: bool,
}

impl Svc {
    fn total(&self) -> u32 {
        (self.pending.len() + self.starting.len() + self.running.len()) as u32
    }
    fn capacity_rps(&self) -> f64 {
        self.running.len() as f64 * self.rpp * self.limit
    }
    /// The PDB's `disruptionsAllowed`: ready pods above `replicas - maxUnavailable`.
    fn disruptions_allowed(&self) -> u32 {
        match self.pdb {
            None => u32::MAX,
            Some(m) => {
                let total = self.total();
                let ready = self.running.len() as u32;
                ready.saturating_sub(total.saturating_sub(m.of(total)))
            }
        }
    }
}

/// No time recorded.
const NEVER: u64 = u64::MAX;

/// One scale-down loop's removal simulations in the cluster-autoscaler model: what they
/// have used so far.
struct DrainPlan {
    /// (node, free CPU millis, free memory bytes, free pod slots) of each destination.
    free: Vec<(u32, u64, u64, u64)>,
    /// (node, service) of every pod placed so far.
    moved: Vec<(u32, usize)>,
    /// PDB disruptions left per service (negative once over-spent).
    pdb_left: Vec<i64>,
}

#[derive(Clone, Copy)]
struct PodRec {
    svc: u16,
    node: u32,
    alive: bool,
    /// When the pod this one replaces was evicted (`NEVER`: not a replacement, or
    /// already counted).
    evicted_at: u64,
    /// When it became Ready (`NEVER` before).
    ready_at: u64,
    /// Its `controller.kubernetes.io/pod-deletion-cost` (0 when not annotated).
    deletion_cost: i32,
}

struct Inst {
    group: u16,
    zone: u16,
    registered: bool,
    ready: bool,
    alive: bool,
    /// Cordoned and being drained (by a removal, or by NTH before an interruption).
    draining: bool,
    /// The drain ends in termination with decrement (a removal); `false` for NTH.
    terminate_when_drained: bool,
    /// The drain started with pods on the node (counts against `--max-drain-parallelism`).
    drain_had_pods: bool,
    /// Termination after the drain is scheduled.
    termination_scheduled: bool,
    pods: Vec<u32>,
    /// Bound pods per service (default topology spread, hostname key).
    svc_pods: Vec<u16>,
    used_cpu: u64,
    used_mem: u64,
    alloc: Resources,
    price: f64,
    spot: bool,
    core: Option<Node>,
    unneeded_since: Option<u64>,
    /// CA: until when a failed removal simulation keeps the node out of scale-down.
    unremovable_until: Option<u64>,
    /// Carries the `DeletionCandidateOfClusterAutoscaler` `PreferNoSchedule` taint:
    /// both autoscalers put it on nodes they found unneeded, and kube-scheduler's
    /// TaintToleration score steers pods away from it.
    soft_tainted: bool,
    /// Second the instance was launched (for the "no removal within 10 min" check).
    launched_at: u64,
    /// Why its pods are being evicted, once a removal or an interruption started.
    cause: Cause,
    /// One of the scenario's initial nodes (launched by no policy).
    initial: bool,
    /// A pod was bound to it at some point.
    ever_had_pod: bool,
}

impl Inst {
    /// Requested share of the node, the larger of CPU and memory (CA's utilization).
    fn utilization(&self) -> f64 {
        (self.used_cpu as f64 / self.alloc.cpu_millis.max(1) as f64)
            .max(self.used_mem as f64 / self.alloc.memory_bytes.max(1) as f64)
    }
}

/// Why a pod was evicted: the report counts evictions by cause.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cause {
    /// Scale-down of an unneeded node.
    ScaleDown,
    /// Zone rebalancing (ours).
    Rebalance,
    /// On-demand drain-back (ours).
    DrainBack,
    /// A spot interruption: drained on notice, or lost with the instance.
    Interruption,
}

impl Cause {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Cause::ScaleDown => "scale-down",
            Cause::Rebalance => "rebalance",
            Cause::DrainBack => "drain-back",
            Cause::Interruption => "interruption",
        }
    }
}

struct Asg {
    desired: u32,
    live: Vec<u32>,
    next_attempt: u64,
    cached_target: u32,
    cached_instances: u32,
    /// When AWS records the oldest failed scaling activity not yet seen by CA's cache.
    failed_activity_at: Option<u64>,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Register(u32),
    Ready(u32),
    PodReady(u32),
    Terminate(u32),
    /// A node being removed is drained: terminate it and decrement the ASG.
    Drained(u32),
    /// aws-node-termination-handler received the interruption warning: cordon, drain.
    NthDrain(u32),
}

struct Sim<'a> {
    sc: &'a Scenario,
    loaded: &'a Loaded,
    /// Seconds simulated.
    duration: u64,
    kind: PolicyKind,
    draws: Draws,
    engine: Autoscaler,
    svcs: Vec<Svc>,
    pods: Vec<PodRec>,
    /// The core's view of the live pods, one per replica, kept up to date as pods are
    /// created, bound and deleted; lent to the snapshot each scan and taken back, so a
    /// scan neither copies nor allocates pods.
    core_pods: Vec<Arc<Pod>>,
    /// Position in `core_pods` of each pod id (`NONE`: dead).
    pod_pos: Vec<u32>,
    /// Pod id at each position of `core_pods`.
    pos_pod: Vec<u32>,
    /// Node ids in snapshot order (reused between scans).
    snap_nodes: Vec<u32>,
    /// Balance sets (as the core forms them): group indexes and zone indexes per set.
    balance_sets: Vec<(Vec<usize>, Vec<u16>)>,
    /// Nodes being drained, in start order.
    draining_list: Vec<u32>,
    /// Rotating start of the scheduler's node scan (`percentageOfNodesToScore`).
    sched_start: usize,
    /// Scratch: feasible nodes of one pod with their scores.
    feasible: Vec<(u32, f64, f64)>,
    /// CA: placeholders were deleted last loop, so this loop regenerates the ASG cache.
    force_refresh: bool,
    /// CA: when the ASG cache was last regenerated.
    last_refresh: u64,
    /// Balance-set skew at the last 10 s sample.
    last_skew: u32,
    /// Recent 10 s skew samples (for the sustained skew).
    skew_window: std::collections::VecDeque<u32>,
    /// Last spot interruption notice (a capacity event, like an ICE window).
    last_interruption: Option<u64>,
    insts: Vec<Inst>,
    asgs: Vec<Asg>,
    core_groups: Vec<NodeGroup>,
    zones: Vec<String>,
    zone_counts: Vec<u32>,
    ready_nodes: Vec<u32>,
    heap: BinaryHeap<Reverse<(u64, u64, Ev)>>,
    seq: u64,
    dirty: bool,
    ours_events: Vec<(u64, Event)>,
    last_scale_up: Option<u64>,
    // metrics
    report: PolicyReport,
    open_episode: Option<Episode>,
    price_rate: f64,
    /// $/h of the node shares that bound placeholders hold (headroom's cost).
    placeholder_rate: f64,
    /// Per group: when replacements (drain-back, rebalance) were asked for.
    replacement_asked: Vec<Vec<u64>>,
    spot_live: u32,
    od_live: u32,
    total_requests: f64,
    unserved: f64,
    degraded: f64,
}

/// The pod every replica of service `name` is made from (label `app=name`, owned by
/// the ReplicaSet `name`).
fn replica_template(
    name: &str,
    requests: &Resources,
    priority: i32,
    node_selector: autoscaler_core::Labels,
) -> Pod {
    let mut labels = autoscaler_core::Labels::new();
    labels.insert("app".into(), name.into());
    Pod {
        namespace: "default".into(),
        name: String::new(),
        labels,
        owner: Some(OwnerRef {
            kind: "ReplicaSet".into(),
            name: name.into(),
        }),
        spec: SchedulingSpec {
            requests: requests.clone(),
            priority,
            node_selector,
            ..SchedulingSpec::default()
        },
        ..Pod::default()
    }
}

/// The placeholder Deployment `ours` sizes (`SetOverprovisioning`): pods of the size
/// the engine's headroom assumes (2 GiB per CPU, the chart's default), priority -1 (below
/// every workload, above the expendable cutoff so they still bring nodes).
fn placeholder_svc(sc: &Scenario, like: &crate::scenario::ServiceSpec, zones: usize) -> Svc {
    let cpu = sc.autoscaler.headroom.placeholder_cpu_millis.max(1);
    let req = Resources {
        cpu_millis: cpu,
        memory_bytes: cpu * 2 * 1024 * 1024 * 1024 / 1000,
        ..Resources::default()
    };
    let template = replica_template("overprovisioning", &req, -1, Default::default());
    Svc {
        name: "overprovisioning".into(),
        rpp: 0.0,
        limit: 1.0,
        req,
        // Never synced: the engine sets the replicas.
        hpa: Hpa::new(like.hpa()).expect("validated with the scenario"),
        start: Dist::Uniform(1.0, 2.0),
        share: 0.0,
        factors: Vec::new(),
        template,
        pending: BTreeSet::new(),
        starting: BTreeSet::new(),
        running: BTreeSet::new(),
        load: 0.0,
        saturation: 1.0,
        hpa_utilization: None,
        pdb: None,
        zone_pods: vec![0; zones],
        pinned_zones: Vec::new(),
        conflicts: Vec::new(),
        placeholder: true,
    }
}

/// The scenario's placement constraints, on both sides: the pod template the core sees
/// (required node affinity on the zone, required anti-affinity terms selecting
/// `app=<service>`) and the simulated scheduler's conflict lists (each term in both
/// directions, as kube-scheduler's InterPodAffinity filter checks existing pods' terms).
fn apply_placement(sc: &Scenario, svcs: &mut [Svc]) {
    for (i, spec) in sc.services.iter().enumerate() {
        if !spec.zones.is_empty() {
            svcs[i].template.spec.required_node_affinity = vec![NodeSelectorTerm {
                match_expressions: vec![Requirement {
                    key: ZONE_LABEL.into(),
                    operator: SelectorOperator::In,
                    values: spec.zones.clone(),
                }],
                match_fields: Vec::new(),
            }];
        }
        for term in &spec.anti_affinity {
            let names: Vec<String> = if term.services.is_empty() {
                vec![spec.name.clone()]
            } else {
                term.services.clone()
            };
            let mut selector = LabelSelector::default();
            selector.match_expressions.push(Requirement {
                key: "app".into(),
                operator: SelectorOperator::In,
                values: names.clone(),
            });
            svcs[i]
                .template
                .spec
                .anti_affinity
                .push(PodAntiAffinityTerm {
                    label_selector: selector,
                    topology_key: term.topology_key.clone(),
                    namespaces: Vec::new(),
                });
            let topology = Topology::of(&term.topology_key);
            for j in names
                .iter()
                .filter_map(|n| sc.services.iter().position(|x| &x.name == n))
            {
                for (a, b) in [(i, j), (j, i)] {
                    let conflict = (topology.clone(), b);
                    if !svcs[a].conflicts.contains(&conflict) {
                        svcs[a].conflicts.push(conflict);
                    }
                }
            }
        }
    }
}

fn priorities_yaml(sc: &Scenario) -> String {
    let mut by: std::collections::BTreeMap<i64, Vec<String>> = Default::default();
    for g in &sc.node_groups {
        let escaped: String = g
            .name
            .chars()
            .flat_map(|c| {
                let meta = "\\.+*?()|[]{}^$#&-~".contains(c);
                meta.then_some('\\').into_iter().chain(std::iter::once(c))
            })
            .collect();
        by.entry(g.priority)
            .or_default()
            .push(format!("'^{escaped}$'"));
    }
    by.iter()
        .map(|(p, names)| format!("{p}: [{}]\n", names.join(", ")))
        .collect()
}

fn engine_for(sc: &Scenario, kind: PolicyKind, seed: u64) -> Autoscaler {
    let config = match kind {
        PolicyKind::Ours => AutoscalerConfig {
            seed,
            ..sc.autoscaler.clone()
        },
        PolicyKind::Ca133 | PolicyKind::Ca130 => {
            let ca = &sc.ca_baseline;
            AutoscalerConfig {
                expander: ca.expander.parse().unwrap_or_default(),
                max_node_provision_time: Duration::from_secs(ca.max_node_provision_time_s),
                cool_off: CoolOffPolicy {
                    initial: Duration::from_secs(ca.backoff_initial_s),
                    max: Duration::from_secs(ca.backoff_max_s),
                    reset_after: Duration::from_secs(ca.backoff_reset_s),
                },
                pool_wide_cool_off: false,
                // One expansion option per loop (core/scaleup/orchestrator/orchestrator.go).
                max_expansions_per_round: 1,
                seed,
                // Scale-down is modelled in `ca_scale_down`; CA has no drain-back.
                // `--balance-similar-node-groups` (off by default) splits scale-ups
                // across similar groups not in backoff; CA never rebalances.
                scale_down: ScaleDownConfig {
                    enabled: false,
                    // CA never writes pod deletion costs, nor keeps spare nodes.
                    deletion_cost_nodes: 0,
                    spare_nodes: 0,
                    ..ScaleDownConfig::default()
                },
                drain_back: DrainBackConfig {
                    after: Duration::ZERO,
                    ..DrainBackConfig::default()
                },
                balance: BalanceConfig {
                    enabled: ca.balance_similar_node_groups,
                    rebalance: false,
                    ..BalanceConfig::default()
                },
                // CA sizes no growth headroom. The scenario's overprovisioning rule,
                // when set, serves every policy (cluster-proportional-autoscaler beside
                // CA, see `engine_for`).
                headroom: HeadroomConfig {
                    enabled: false,
                    ..HeadroomConfig::default()
                },
                // CA launches for one expansion option at a time; it never hedges.
                hedge: HedgeConfig {
                    enabled: false,
                    ..HedgeConfig::default()
                },
                // CA's estimator scales up for exactly what its binpacking found.
                bulk_slack: 0.0,
                ..AutoscalerConfig::default()
            }
        }
    };
    let mut e = Autoscaler::new(config).unwrap_or_else(|_| {
        Autoscaler::new(AutoscalerConfig::default()).expect("default config is valid")
    });
    // Validated with the scenario's groups; a failure here leaves every group passing.
    let _ = e.set_priorities(&priorities_yaml(sc));
    e.set_overprovisioning(sc.overprovisioning.clone());
    e
}

impl<'a> Sim<'a> {
    fn new(loaded: &'a Loaded, kind: PolicyKind, seed: u64) -> Sim<'a> {
        let sc = &loaded.scenario;
        let mut zones: Vec<String> = sc
            .node_groups
            .iter()
            .flat_map(|g| g.zones.clone())
            .collect();
        zones.sort();
        zones.dedup();
        let svcs = sc
            .services
            .iter()
            .map(|s| {
                let req = Resources::parse(&s.cpu, &s.memory).unwrap_or_default();
                let template = replica_template(&s.name, &req, s.priority, s.node_selector.clone());
                Svc {
                    name: s.name.clone(),
                    rpp: s.requests_per_pod,
                    limit: s.cpu_limit_ratio.max(0.01),
                    req,
                    hpa: Hpa::new(s.hpa()).expect("validated with the scenario"),
                    start: s.pod_start_s,
                    share: s.share,
                    factors: s.traffic_factors.clone(),
                    template,
                    pending: BTreeSet::new(),
                    starting: BTreeSet::new(),
                    running: BTreeSet::new(),
                    load: 0.0,
                    saturation: s.saturation_utilization,
                    hpa_utilization: None,
                    pdb: s.pdb_max_unavailable,
                    zone_pods: vec![0; zones.len()],
                    pinned_zones: s
                        .zones
                        .iter()
                        .filter_map(|z| zones.iter().position(|x| x == z))
                        .map(|zi| zi as u16)
                        .collect(),
                    conflicts: Vec::new(),
                    placeholder: false,
                }
            })
            .collect();
        let mut svcs: Vec<Svc> = svcs;
        apply_placement(sc, &mut svcs);
        if let Some(first) = sc.services.first() {
            svcs.push(placeholder_svc(sc, first, zones.len()));
        }
        let core_groups: Vec<NodeGroup> = sc
            .node_groups
            .iter()
            .map(|g| {
                let mut labels = g.labels.clone();
                // A mixed group's nodes carry their own market's label.
                if g.mix.is_none_or(|m| !m.is_mixed()) {
                    labels.insert(CAPACITY_TYPE_LABEL.into(), g.capacity_type.to_string());
                }
                NodeGroup {
                    name: g.name.clone(),
                    min_size: g.min,
                    max_size: g.max,
                    target_size: g.initial,
                    current_instances: Some(g.initial),
                    zones: g.zones.clone(),
                    capacity_type: g.capacity_type,
                    mix: g.mix,
                    instance_types: g
                        .instance_types
                        .iter()
                        .map(|t| InstanceType {
                            on_demand_price_per_hour: t.on_demand_price_per_hour,
                            ..InstanceType::new(
                                t.name.clone(),
                                t.vcpu,
                                u64::from(t.memory_gib) * 1024,
                                t.price_per_hour,
                            )
                        })
                        .collect(),
                    template: NodeTemplate {
                        labels,
                        taints: Vec::new(),
                    },
                    options: Default::default(),
                }
            })
            .collect();
        let asgs = sc
            .node_groups
            .iter()
            .map(|g| Asg {
                desired: g.initial,
                live: Vec::new(),
                next_attempt: 0,
                cached_target: g.initial,
                cached_instances: g.initial,
                failed_activity_at: None,
            })
            .collect();
        let mut report = PolicyReport::new(kind.name());
        report.zones = zones.clone();
        let balance_sets = balance_sets(sc, &core_groups, &zones);
        Sim {
            sc,
            loaded,
            duration: loaded.duration_s(),
            kind,
            draws: Draws { seed },
            engine: engine_for(sc, kind, seed),
            svcs,
            pods: Vec::new(),
            core_pods: Vec::new(),
            pod_pos: Vec::new(),
            pos_pod: Vec::new(),
            snap_nodes: Vec::new(),
            balance_sets,
            draining_list: Vec::new(),
            sched_start: 0,
            feasible: Vec::new(),
            force_refresh: false,
            last_refresh: 0,
            last_skew: 0,
            skew_window: Default::default(),
            last_interruption: None,
            insts: Vec::new(),
            asgs,
            core_groups,
            zone_counts: vec![0; zones.len()],
            zones,
            ready_nodes: Vec::new(),
            heap: BinaryHeap::new(),
            seq: 0,
            dirty: true,
            ours_events: Vec::new(),
            last_scale_up: None,
            report,
            open_episode: None,
            price_rate: 0.0,
            placeholder_rate: 0.0,
            replacement_asked: vec![Vec::new(); sc.node_groups.len()],
            spot_live: 0,
            od_live: 0,
            total_requests: 0.0,
            unserved: 0.0,
            degraded: 0.0,
        }
    }

    fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.heap.push(Reverse((at, self.seq, ev)));
    }

    fn zone_index(&self, z: &str) -> u16 {
        self.zones.iter().position(|x| x == z).unwrap_or(0) as u16
    }

    /// Creates an instance of group `gi` in `zone` with type `ti`, market `ct` (a mixed
    /// group runs both); `ready_now` for the initial nodes.
    fn launch(
        &mut self,
        gi: usize,
        at: (&str, usize, CapacityType),
        now: u64,
        ready_now: bool,
    ) -> u32 {
        let (zone, ti, ct) = at;
        let id = self.insts.len() as u32;
        let g = &self.sc.node_groups[gi];
        let cg = &self.core_groups[gi];
        let it = &cg.instance_types[ti];
        let price = it.price_in(ct);
        let mut labels = cg.template.labels.clone();
        labels.insert(CAPACITY_TYPE_LABEL.into(), ct.to_string());
        labels.insert(ZONE_LABEL.into(), zone.to_string());
        labels.insert(INSTANCE_TYPE_LABEL.into(), it.name.clone());
        let name = format!("node-{id}");
        labels.insert(HOSTNAME_LABEL.into(), name.clone());
        let node = Node {
            name: name.clone(),
            provider_id: Some(format!("aws:///{zone}/i-{id:08x}")),
            group: Some(g.name.clone()),
            capacity_type: ct,
            capacity: it.capacity(),
            allocatable: it.allocatable.clone(),
            labels,
            annotations: Default::default(),
            taints: Vec::new(),
            created_at: Timestamp::from_secs(now),
            ready: ready_now,
            ready_changed_at: Some(Timestamp::from_secs(now)),
            unschedulable: false,
        };
        let zi = self.zone_index(zone);
        let spot = ct == CapacityType::Spot;
        self.insts.push(Inst {
            group: gi as u16,
            zone: zi,
            registered: ready_now,
            ready: ready_now,
            alive: true,
            draining: false,
            terminate_when_drained: false,
            drain_had_pods: false,
            termination_scheduled: false,
            pods: Vec::new(),
            svc_pods: vec![0; self.svcs.len()],
            used_cpu: 0,
            used_mem: 0,
            alloc: it.allocatable.clone(),
            price,
            spot,
            core: Some(node),
            unneeded_since: None,
            unremovable_until: None,
            soft_tainted: false,
            launched_at: now,
            cause: Cause::ScaleDown,
            initial: ready_now,
            ever_had_pod: false,
        });
        self.asgs[gi].live.push(id);
        self.zone_counts[zi as usize] += 1;
        self.price_rate += price;
        if spot {
            self.spot_live += 1;
        } else {
            self.od_live += 1;
        }
        if ready_now {
            self.ready_nodes.push(id);
        } else {
            let latency = &self.sc.cloud.launch_latency_s;
            let reg = now
                + self
                    .draws
                    .sample(latency, Purpose::LaunchLatency, id.into());
            self.push(reg, Ev::Register(id));
        }
        id
    }

    fn terminate(&mut self, id: u32, decrement: bool, now: u64) {
        let inst = &mut self.insts[id as usize];
        if !inst.alive {
            return;
        }
        inst.alive = false;
        inst.ready = false;
        inst.draining = false;
        let gi = inst.group as usize;
        let zi = inst.zone as usize;
        let pods = inst.pods.clone();
        let cause = inst.cause;
        let (price, spot) = (inst.price, inst.spot);
        if inst.registered && !inst.initial && !inst.ever_had_pod {
            self.report.always_empty_nodes += 1;
        }
        self.ready_nodes.retain(|&n| n != id);
        self.asgs[gi].live.retain(|&n| n != id);
        if decrement {
            let a = &mut self.asgs[gi];
            a.desired = a.desired.saturating_sub(1);
            a.cached_target = a.cached_target.saturating_sub(1);
        }
        self.zone_counts[zi] -= 1;
        self.price_rate -= price;
        if spot {
            self.spot_live -= 1;
        } else {
            self.od_live -= 1;
        }
        // The instance is gone: its pods die whatever their PDB says.
        for p in pods {
            self.evict(p, now, cause);
        }
        self.dirty = true;
    }

    /// Evicts one pod from its node (drained or gone): the ReplicaSet creates its
    /// replacement at once, and the time until that one is Ready is lost.
    fn evict(&mut self, p: u32, now: u64, cause: Cause) {
        let svc = self.pods[p as usize].svc as usize;
        if self.svcs[svc].placeholder {
            self.preempt(p, now);
            return;
        }
        *self
            .report
            .evictions_by_cause
            .entry(cause.name().to_string())
            .or_default() += 1;
        self.settle_eviction(p, now);
        self.unbind(p);
        self.svcs[svc].starting.remove(&p);
        self.svcs[svc].running.remove(&p);
        self.report.evictions += 1;
        let replacement = self.new_pod(svc, now);
        self.pods[replacement as usize].evicted_at = now;
    }

    /// Whether the replacement a drain-back or rebalance removal names (`... replacement
    /// node(s) of GROUP are ready ...`) has a Ready node launched since it was asked for
    /// (within the last hour).
    fn replacement_ready(&self, reason: &str, t: u64) -> bool {
        let Some(group) = reason
            .split_once("replacement node(s) of ")
            .and_then(|(_, rest)| rest.split_once(" are ready"))
            .map(|(g, _)| g)
        else {
            return false;
        };
        let Some(gi) = self.group_index(group) else {
            return false;
        };
        let Some(&asked) = self.replacement_asked[gi]
            .iter()
            .find(|&&at| at + 3600 >= t)
        else {
            return false;
        };
        self.asgs[gi].live.iter().any(|&id| {
            let inst = &self.insts[id as usize];
            inst.ready && inst.launched_at >= asked
        })
    }

    /// A placeholder leaves its node (preempted or drained): its Deployment creates a
    /// pending one at once, which is what asks for the next node.
    fn preempt(&mut self, p: u32, now: u64) {
        let svc = self.pods[p as usize].svc as usize;
        self.unbind(p);
        self.svcs[svc].starting.remove(&p);
        self.svcs[svc].running.remove(&p);
        self.new_pod(svc, now);
    }

    /// kube-scheduler's preemption for a pod of `svc` that fits nowhere: the node where
    /// the fewest placeholders (the only lower-priority pods here) make room; those are
    /// preempted. Returns the node.
    fn preempt_for(&mut self, svc: usize, now: u64) -> Option<u32> {
        let ph = self.svcs.iter().position(|s| s.placeholder)?;
        if self.svcs[ph].running.is_empty() && self.svcs[ph].starting.is_empty() {
            return None;
        }
        let (ph_cpu, ph_mem) = (self.svcs[ph].req.cpu_millis, self.svcs[ph].req.memory_bytes);
        let req = self.svcs[svc].req.clone();
        let mut best: Option<(u64, u32)> = None;
        for &node in &self.ready_nodes {
            let inst = &self.insts[node as usize];
            let have = u64::from(inst.svc_pods[ph]);
            // Placeholders are in no anti-affinity term: preempting them changes no
            // placement filter, so the pod must pass those as things stand.
            if inst.draining || have == 0 || !self.placement_allows(node, svc, NONE, &[]) {
                continue;
            }
            // Placeholders to preempt for the pod's shortfall of one resource.
            let need = |used: u64, alloc: u64, want: u64, per: u64| {
                (used + want).saturating_sub(alloc).div_ceil(per.max(1))
            };
            let k = need(inst.used_cpu, inst.alloc.cpu_millis, req.cpu_millis, ph_cpu)
                .max(need(
                    inst.used_mem,
                    inst.alloc.memory_bytes,
                    req.memory_bytes,
                    ph_mem,
                ))
                .max(u64::from(inst.pods.len() as u64 >= inst.alloc.pods));
            if k == 0 || k > have {
                continue;
            }
            if best.is_none_or(|(b, _)| k < b) {
                best = Some((k, node));
            }
        }
        let (k, node) = best?;
        let victims: Vec<u32> = self.insts[node as usize]
            .pods
            .iter()
            .copied()
            .filter(|&p| self.pods[p as usize].svc as usize == ph)
            .take(k as usize)
            .collect();
        for v in victims {
            self.preempt(v, now);
        }
        self.report.preemptions += k;
        Some(node)
    }

    /// Starts removing node `id`: cordon now, evict its pods as their PDBs allow
    /// (now and every second after), and `removal_drain_s` after the last pod left
    /// (taint, evictions, the pods' graceful shutdown) terminate the instance with
    /// decrement when `terminate`. The same model for every policy (and for
    /// aws-node-termination-handler, with `terminate` false: AWS takes the instance).
    fn start_removal(&mut self, id: u32, now: u64, terminate: bool, cause: Cause) -> bool {
        let inst = &mut self.insts[id as usize];
        if !inst.alive || inst.draining {
            return false;
        }
        if cause != Cause::Interruption && now < inst.launched_at + YOUNG_REMOVAL_S {
            self.report.young_removals += 1;
        }
        inst.draining = true;
        inst.cause = cause;
        inst.terminate_when_drained = terminate;
        inst.drain_had_pods = !inst.pods.is_empty();
        self.draining_list.push(id);
        self.drain_node(id, now);
        self.dirty = true;
        true
    }

    /// One drain pass over node `id`: evict what the PDBs allow; once empty, schedule
    /// the termination.
    fn drain_node(&mut self, id: u32, now: u64) {
        let pods = self.insts[id as usize].pods.clone();
        let cause = self.insts[id as usize].cause;
        for p in pods {
            let svc = self.pods[p as usize].svc as usize;
            if self.svcs[svc].disruptions_allowed() > 0 {
                self.evict(p, now, cause);
            }
        }
        let inst = &mut self.insts[id as usize];
        if inst.pods.is_empty() && inst.terminate_when_drained && !inst.termination_scheduled {
            inst.termination_scheduled = true;
            self.push(now + self.sc.cloud.removal_drain_s, Ev::Drained(id));
        }
    }

    /// Every second: retry the evictions PDBs refused. A removal stays listed (in
    /// flight, for CA's parallelism budgets) until its instance is gone.
    fn drain_step(&mut self, now: u64) {
        if self.draining_list.is_empty() {
            return;
        }
        let list = std::mem::take(&mut self.draining_list);
        let mut keep = Vec::with_capacity(list.len());
        for id in list {
            if self.insts[id as usize].alive && !self.insts[id as usize].pods.is_empty() {
                self.drain_node(id, now);
            }
            let inst = &self.insts[id as usize];
            if inst.alive && (inst.terminate_when_drained || !inst.pods.is_empty()) {
                keep.push(id);
            }
        }
        self.draining_list = keep;
    }

    fn new_pod(&mut self, svc: usize, now: u64) -> u32 {
        let id = self.pods.len() as u32;
        self.pods.push(PodRec {
            svc: svc as u16,
            node: NONE,
            alive: true,
            evicted_at: NEVER,
            ready_at: NEVER,
            deletion_cost: 0,
        });
        let s = &self.svcs[svc];
        let mut pod = s.template.clone();
        pod.name = format!("{}-{id}", s.name);
        pod.created_at = Timestamp::from_secs(now);
        self.pod_pos.push(self.core_pods.len() as u32);
        self.pos_pod.push(id);
        self.core_pods.push(Arc::new(pod));
        self.svcs[svc].pending.insert(id);
        self.dirty = true;
        id
    }

    /// Takes pod `p` off its node and out of the core's view, counting the seconds an
    /// evicted pod's replacement never made up.
    fn unbind(&mut self, p: u32) {
        let rec = self.pods[p as usize];
        if rec.node != NONE {
            let svc = rec.svc as usize;
            let req = &self.svcs[svc].req;
            let inst = &mut self.insts[rec.node as usize];
            if self.svcs[svc].placeholder {
                self.placeholder_rate -=
                    inst.price * req.cpu_millis as f64 / inst.alloc.cpu_millis.max(1) as f64;
            }
            inst.pods.retain(|&x| x != p);
            inst.used_cpu -= req.cpu_millis;
            inst.used_mem -= req.memory_bytes;
            inst.svc_pods[svc] -= 1;
            let zi = inst.zone as usize;
            self.svcs[svc].zone_pods[zi] -= 1;
        }
        self.pods[p as usize].alive = false;
        self.pods[p as usize].node = NONE;
        self.drop_core_pod(p);
    }

    /// Counts the seconds between an eviction and its replacement's readiness (or the
    /// replacement's own end).
    fn settle_eviction(&mut self, p: u32, now: u64) {
        let at = std::mem::replace(&mut self.pods[p as usize].evicted_at, NEVER);
        if at != NEVER {
            self.report.pod_seconds_lost += now.saturating_sub(at);
        }
    }

    fn drop_core_pod(&mut self, p: u32) {
        let pos = std::mem::replace(&mut self.pod_pos[p as usize], NONE);
        if pos == NONE {
            return;
        }
        self.core_pods.swap_remove(pos as usize);
        self.pos_pod.swap_remove(pos as usize);
        if let Some(&moved) = self.pos_pod.get(pos as usize) {
            self.pod_pos[moved as usize] = pos;
        }
    }

    fn set_replicas(&mut self, svc: usize, n: u32, now: u64) {
        let cur = self.svcs[svc].total();
        if n > cur {
            for _ in cur..n {
                self.new_pod(svc, now);
            }
        } else {
            let victims = self.scale_in_victims(svc, (cur - n) as usize, now);
            for p in victims {
                let s = &mut self.svcs[svc];
                s.pending.remove(&p);
                s.starting.remove(&p);
                s.running.remove(&p);
                self.settle_eviction(p, now);
                self.unbind(p);
            }
            self.dirty = true;
        }
    }

    /// The `count` pods a ReplicaSet scale-in deletes, in the ReplicaSet controller's
    /// order (kubernetes `pkg/controller/controller_utils.go`, `ActivePodsWithRanks.Less`,
    /// ranked by `getPodsRankedByRelatedPodsOnSameNode` in `replica_set.go`): unbound
    /// before bound, not ready before ready, lower `pod-deletion-cost` first, then pods
    /// on nodes with more of the service's pods, then the shortest time Ready and the
    /// newest, both compared on a log2 scale (`LogarithmicScaleDown`, on by default
    /// since 1.22); ties by newest.
    fn scale_in_victims(&self, svc: usize, count: usize, now: u64) -> Vec<u32> {
        let s = &self.svcs[svc];
        let mut victims: Vec<u32> = s.pending.iter().rev().copied().take(count).collect();
        victims.extend(s.starting.iter().rev().copied().take(count - victims.len()));
        if victims.len() < count {
            let log2 = |since: u64| (now.saturating_sub(since).max(1)).ilog2();
            let mut ready: Vec<u32> = s.running.iter().copied().collect();
            ready.sort_by_key(|&p| {
                let rec = &self.pods[p as usize];
                let colocated = self.insts[rec.node as usize].svc_pods[svc];
                (
                    rec.deletion_cost,
                    Reverse(colocated),
                    log2(rec.ready_at),
                    Reverse(p),
                )
            });
            victims.extend(ready.into_iter().take(count - victims.len()));
        }
        victims
    }

    fn fits(&self, node: u32, svc: usize) -> bool {
        let inst = &self.insts[node as usize];
        let s = &self.svcs[svc];
        if inst.draining
            || inst.alloc.cpu_millis < inst.used_cpu + s.req.cpu_millis
            || inst.alloc.memory_bytes < inst.used_mem + s.req.memory_bytes
            || inst.pods.len() as u64 >= inst.alloc.pods
        {
            return false;
        }
        self.placement_allows(node, svc, NONE, &[])
    }

    /// kube-scheduler's label filters for a pod of `svc` on `node`: `nodeSelector`, the
    /// pinned zones (NodeAffinity) and required anti-affinity (InterPodAffinity), counting
    /// the bound pods except those on `skip` (a node being drained) plus the pods of
    /// `moved` (node, service) a drain simulation has placed so far.
    fn placement_allows(&self, node: u32, svc: usize, skip: u32, moved: &[(u32, usize)]) -> bool {
        let inst = &self.insts[node as usize];
        let s = &self.svcs[svc];
        if !s.pinned_zones.is_empty() && !s.pinned_zones.contains(&inst.zone) {
            return false;
        }
        let sel = &s.template.spec.node_selector;
        if !sel.is_empty()
            && !inst
                .core
                .as_ref()
                .is_some_and(|n| sel.iter().all(|(k, v)| n.labels.get(k) == Some(v)))
        {
            return false;
        }
        s.conflicts.iter().all(|(topology, other)| {
            self.pods_in_domain(node, topology, *other, skip) == 0
                && !moved
                    .iter()
                    .any(|&(m, o)| o == *other && self.same_domain(m, node, topology))
        })
    }

    /// Bound pods of service `other` in the domain of `topology` that holds `node`,
    /// leaving out those on `skip`.
    fn pods_in_domain(&self, node: u32, topology: &Topology, other: usize, skip: u32) -> u32 {
        let inst = &self.insts[node as usize];
        let on = |id: u32| {
            if id == skip {
                0
            } else {
                u32::from(self.insts[id as usize].svc_pods[other])
            }
        };
        match topology {
            Topology::Hostname => on(node),
            Topology::Zone => {
                let skipped = if skip != NONE && self.insts[skip as usize].zone == inst.zone {
                    u32::from(self.insts[skip as usize].svc_pods[other])
                } else {
                    0
                };
                self.svcs[other].zone_pods[inst.zone as usize] - skipped
            }
            Topology::Label(_) => (0..self.insts.len() as u32)
                .filter(|&id| self.insts[id as usize].alive && self.same_domain(id, node, topology))
                .map(on)
                .sum(),
        }
    }

    /// Whether two nodes share a domain of `topology` (a node without the label is in
    /// none).
    fn same_domain(&self, a: u32, b: u32, topology: &Topology) -> bool {
        let (x, y) = (&self.insts[a as usize], &self.insts[b as usize]);
        match topology {
            Topology::Hostname => a == b,
            Topology::Zone => x.zone == y.zone,
            Topology::Label(key) => {
                let value = |i: &Inst| i.core.as_ref().and_then(|n| n.labels.get(key).cloned());
                value(x).is_some_and(|v| Some(v) == value(y))
            }
        }
    }

    fn bind(&mut self, p: u32, node: u32, now: u64, immediate: bool) {
        let svc = self.pods[p as usize].svc as usize;
        let (cpu, mem) = (
            self.svcs[svc].req.cpu_millis,
            self.svcs[svc].req.memory_bytes,
        );
        let inst = &mut self.insts[node as usize];
        if self.svcs[svc].placeholder {
            self.placeholder_rate += inst.price * cpu as f64 / inst.alloc.cpu_millis.max(1) as f64;
        }
        inst.pods.push(p);
        inst.ever_had_pod = true;
        inst.used_cpu += cpu;
        inst.used_mem += mem;
        inst.svc_pods[svc] += 1;
        let zi = inst.zone as usize;
        self.svcs[svc].zone_pods[zi] += 1;
        self.pods[p as usize].node = node;
        let pos = self.pod_pos[p as usize] as usize;
        // Lent pods are back by now, so this is the only reference: no copy.
        Arc::make_mut(&mut self.core_pods[pos]).node_name = Some(format!("node-{node}"));
        self.svcs[svc].pending.remove(&p);
        if immediate {
            self.svcs[svc].running.insert(p);
            self.pods[p as usize].ready_at = now;
        } else {
            self.svcs[svc].starting.insert(p);
            let at = now
                + self
                    .draws
                    .sample(&self.svcs[svc].start, Purpose::PodStart, p.into());
            self.push(at, Ev::PodReady(p));
        }
    }

    fn schedule(&mut self, now: u64, immediate: bool) {
        if !self.dirty {
            return;
        }
        self.dirty = false;
        match self.sc.sim.scheduler {
            SchedulerKind::KubeDefault => self.schedule_kube_default(now, immediate),
            SchedulerKind::FirstFit => self.schedule_first_fit(now, immediate),
        }
    }

    /// The earlier model: first fit in node-creation order, one service at a time.
    fn schedule_first_fit(&mut self, now: u64, immediate: bool) {
        for svc in 0..self.svcs.len() {
            let mut cursor = 0;
            while let Some(&p) = self.svcs[svc].pending.first() {
                while cursor < self.ready_nodes.len() && !self.fits(self.ready_nodes[cursor], svc) {
                    cursor += 1;
                }
                let Some(&node) = self.ready_nodes.get(cursor) else {
                    break;
                };
                self.bind(p, node, now, immediate);
            }
        }
    }

    /// kube-scheduler's default profile as far as the scenarios reach: the queue in
    /// priority then arrival order across services; feasible nodes (resources, pod
    /// slots, nodeSelector, not cordoned) searched from a rotating start until
    /// `percentageOfNodesToScore` of them are found; scored by LeastAllocated (weight
    /// 1), BalancedAllocation (weight 1), the default topology spread (zone maxSkew
    /// 5, hostname maxSkew 3, ScheduleAnyway; weight 2) and TaintToleration on the
    /// autoscalers' `PreferNoSchedule` taint (weight 3); the best score wins, ties to
    /// the first found.
    fn schedule_kube_default(&mut self, now: u64, immediate: bool) {
        let mut queue: Vec<(Reverse<i32>, u32)> = self
            .svcs
            .iter()
            .flat_map(|s| {
                let priority = s.template.spec.priority;
                s.pending.iter().map(move |&p| (Reverse(priority), p))
            })
            .collect();
        if queue.is_empty() || self.ready_nodes.is_empty() {
            return;
        }
        queue.sort_unstable();
        let n = self.ready_nodes.len();
        // kube-scheduler's adaptive percentageOfNodesToScore (default 0).
        let to_find = if n < 100 {
            n
        } else {
            let pct = 50usize.saturating_sub(n / 125).max(5);
            (n * pct / 100).max(100)
        };
        let zones_with_nodes = self.zone_counts.iter().filter(|&&c| c > 0).count();
        let w_zone = ((zones_with_nodes + 2) as f64).ln();
        let w_host = ((n + 2) as f64).ln();
        // A service whose pod fit nowhere: its other pods (same requests) skip the search.
        let mut unfit = vec![false; self.svcs.len()];
        for (_, p) in queue {
            let svc = self.pods[p as usize].svc as usize;
            if unfit[svc] {
                continue;
            }
            let mut feasible = std::mem::take(&mut self.feasible);
            feasible.clear();
            let start = self.sched_start % n;
            let mut scanned = 0;
            while scanned < n && feasible.len() < to_find {
                let node = self.ready_nodes[(start + scanned) % n];
                scanned += 1;
                if !self.fits(node, svc) {
                    continue;
                }
                let inst = &self.insts[node as usize];
                let req = &self.svcs[svc].req;
                let cpu =
                    (inst.used_cpu + req.cpu_millis) as f64 / inst.alloc.cpu_millis.max(1) as f64;
                let mem = (inst.used_mem + req.memory_bytes) as f64
                    / inst.alloc.memory_bytes.max(1) as f64;
                let least_allocated = ((1.0 - cpu) + (1.0 - mem)) * 50.0;
                let balanced = (1.0 - (cpu - mem).abs() / 2.0) * 100.0;
                let spread = f64::from(inst.svc_pods[svc]) * w_host
                    + 2.0
                    + f64::from(self.svcs[svc].zone_pods[inst.zone as usize]) * w_zone
                    + 4.0;
                // TaintToleration (weight 3): an intolerable PreferNoSchedule taint
                // scores 0 against 100 (the same offset for all when every node has it).
                let taint = if inst.soft_tainted { -300.0 } else { 0.0 };
                feasible.push((node, least_allocated + balanced + taint, spread));
            }
            self.sched_start = (start + scanned) % n;
            let (min_s, max_s) = feasible
                .iter()
                .fold((f64::MAX, 0.0f64), |(lo, hi), f| (lo.min(f.2), hi.max(f.2)));
            let best = feasible
                .iter()
                .map(|&(node, res, spread)| {
                    let spread_score = if max_s > 0.0 {
                        100.0 * (max_s + min_s - spread) / max_s
                    } else {
                        100.0
                    };
                    (node, res + 2.0 * spread_score)
                })
                .fold(None::<(u32, f64)>, |best, (node, score)| match best {
                    Some((_, b)) if b >= score => best,
                    _ => Some((node, score)),
                });
            self.feasible = feasible;
            match best {
                Some((node, _)) => self.bind(p, node, now, immediate),
                None if !self.svcs[svc].placeholder => match self.preempt_for(svc, now) {
                    Some(node) => self.bind(p, node, now, immediate),
                    None => unfit[svc] = true,
                },
                None => unfit[svc] = true,
            }
        }
    }

    fn demand(&self, svc: usize, t: u64) -> f64 {
        let s = &self.svcs[svc];
        let mut v = self.loaded.trace.at(t) * s.share;
        for &(from, to, k) in &s.factors {
            if t >= from && t < to {
                v *= k;
            }
        }
        v
    }

    fn hpa_sync(&mut self, t: u64) {
        for svc in 0..self.svcs.len() {
            let s = &self.svcs[svc];
            if s.placeholder {
                continue;
            }
            let ready = s.running.len() as u32;
            let per_pod_max = s.rpp * s.limit;
            let served = s.load.min(f64::from(ready) * per_pod_max);
            let cpu = s.req.cpu_millis;
            let m = ResourceMetrics {
                ready,
                ready_usage: (served / s.rpp * cpu as f64).round() as u64,
                ready_requests: u64::from(ready) * cpu,
                unready: (s.pending.len() + s.starting.len()) as u32,
                missing: 0,
                pod_request: cpu,
            };
            let cur = s.total();
            let utilization = (m.ready_requests > 0)
                .then(|| u32::try_from(m.ready_usage * 100 / m.ready_requests).unwrap_or(u32::MAX));
            self.svcs[svc].hpa_utilization = utilization;
            let rec = self.svcs[svc]
                .hpa
                .reconcile(Timestamp::from_secs(t), cur, &m);
            if rec.replicas != cur {
                self.set_replicas(svc, rec.replicas, t);
            }
        }
    }

    fn pool_has_capacity(&self, t: u64, ct: CapacityType, zone: &str, itype: &str) -> bool {
        !self
            .sc
            .cloud
            .ice
            .iter()
            .any(|w| w.blocks(t, ct, zone, itype))
    }

    fn asg_step(&mut self, t: u64) {
        for gi in 0..self.asgs.len() {
            let live = self.asgs[gi].live.len() as u32;
            let desired = self.asgs[gi].desired;
            if desired > live && t >= self.asgs[gi].next_attempt {
                let g = &self.sc.node_groups[gi];
                let mixed = self.core_groups[gi].mixed().is_some();
                let mut failed_market = None;
                for ct in self.launch_markets(gi, live, desired) {
                    // AWS launches a mixed group's markets apart: a spot shortage
                    // leaves its on-demand part launching.
                    if failed_market == Some(ct) {
                        continue;
                    }
                    // Zone with the fewest instances of the group, among those with capacity.
                    let mut counts: Vec<(u32, usize, usize)> = Vec::new();
                    for (zo, z) in g.zones.iter().enumerate() {
                        let zi = self.zone_index(z);
                        let n = self.asgs[gi]
                            .live
                            .iter()
                            .filter(|&&i| self.insts[i as usize].zone == zi)
                            .count() as u32;
                        if let Some(ti) = g
                            .instance_types
                            .iter()
                            .position(|it| self.pool_has_capacity(t, ct, z, &it.name))
                        {
                            counts.push((n, zo, ti));
                        }
                    }
                    counts.sort();
                    match counts.first() {
                        Some(&(_, zo, ti)) => {
                            let zone = g.zones[zo].clone();
                            self.launch(gi, (&zone, ti, ct), t, false);
                        }
                        None => {
                            self.launch_failed(gi, t, ct);
                            if !mixed {
                                break;
                            }
                            failed_market = Some(ct);
                        }
                    }
                }
            } else if desired < live {
                // Scale-in: instances not registered yet go first, newest first.
                let mut victims: Vec<u32> = self.asgs[gi].live.clone();
                victims.sort_by_key(|&i| (self.insts[i as usize].registered, Reverse(i)));
                for v in victims.into_iter().take((live - desired) as usize) {
                    self.terminate(v, false, t);
                }
            }
        }
    }

    /// No pool of group `gi` has capacity: the ASG retries after `asg_retry_s`, and AWS
    /// records a failed scaling activity per zone tried after `failed_activity_delay_s`.
    /// `ours` gets each as the EventBridge "EC2 Instance Launch Unsuccessful" event the
    /// AWS adapter parses (spot: the zone, no type; on-demand: the type and zone the
    /// message names); CA reads the failed activity at its next ASG cache refresh.
    /// The markets of the launches that take group `gi` from `live` to `desired`
    /// instances: a mixed group fills each market up to AWS's split of `desired`,
    /// on-demand first; any other group launches in its one market.
    fn launch_markets(&self, gi: usize, live: u32, desired: u32) -> Vec<CapacityType> {
        let cg = &self.core_groups[gi];
        let count = desired.saturating_sub(live) as usize;
        let Some(mix) = cg.mixed() else {
            return vec![cg.capacity_type; count];
        };
        let on_demand_live = self.asgs[gi]
            .live
            .iter()
            .filter(|&&i| !self.insts[i as usize].spot)
            .count() as u32;
        let on_demand =
            (mix.on_demand_at(desired).saturating_sub(on_demand_live) as usize).min(count);
        let mut markets = vec![CapacityType::OnDemand; on_demand];
        markets.resize(count, CapacityType::Spot);
        markets
    }

    fn launch_failed(&mut self, gi: usize, t: u64, ct: CapacityType) {
        self.report.launch_failures += 1;
        self.asgs[gi].next_attempt = t + self.sc.cloud.asg_retry_s;
        let delay = &self.sc.cloud.failed_activity_delay_s;
        let nth = self.report.launch_failures;
        let recorded = t + self.draws.sample(delay, Purpose::FailedActivityDelay, nth);
        let a = &mut self.asgs[gi];
        a.failed_activity_at = Some(a.failed_activity_at.map_or(recorded, |f| f.min(recorded)));
        if self.kind != PolicyKind::Ours {
            return;
        }
        let g = &self.sc.node_groups[gi];
        for zone in &g.zones {
            let failure = AwsLaunchFailure::new(&g.name, ct, zone, &g.instance_types[0].name);
            self.ours_events.push((
                recorded + self.sc.cloud.failure_event_delay_s,
                failure.event.clone(),
            ));
            self.report.aws_launch_failures.push(failure);
        }
    }

    fn events_until(&mut self, t: u64) {
        while let Some(Reverse((at, _, ev))) = self.heap.peek().copied() {
            if at > t {
                break;
            }
            self.heap.pop();
            match ev {
                Ev::Register(id) => {
                    let inst = &mut self.insts[id as usize];
                    if inst.alive {
                        inst.registered = true;
                        if let Some(n) = inst.core.as_mut() {
                            n.created_at = Timestamp::from_secs(t);
                            n.ready_changed_at = Some(Timestamp::from_secs(t));
                        }
                        let latency = &self.sc.cloud.node_ready_latency_s;
                        let at =
                            t + self
                                .draws
                                .sample(latency, Purpose::NodeReadyLatency, id.into());
                        self.push(at, Ev::Ready(id));
                    }
                }
                Ev::Ready(id) => {
                    let inst = &mut self.insts[id as usize];
                    if inst.alive {
                        inst.ready = true;
                        if let Some(n) = inst.core.as_mut() {
                            n.ready = true;
                            n.ready_changed_at = Some(Timestamp::from_secs(t));
                        }
                        let pos = self.ready_nodes.partition_point(|&x| x < id);
                        self.ready_nodes.insert(pos, id);
                        self.dirty = true;
                    }
                }
                Ev::PodReady(p) => {
                    let rec = self.pods[p as usize];
                    if rec.alive && rec.node != NONE {
                        let s = &mut self.svcs[rec.svc as usize];
                        if s.starting.remove(&p) {
                            s.running.insert(p);
                            self.pods[p as usize].ready_at = t;
                            self.settle_eviction(p, t);
                        }
                    }
                }
                Ev::Terminate(id) => self.terminate(id, false, t),
                Ev::Drained(id) => self.terminate(id, true, t),
                Ev::NthDrain(id) => {
                    if self.start_removal(id, t, false, Cause::Interruption) {
                        let gi = self.insts[id as usize].group as usize;
                        let group = self.sc.node_groups[gi].name.clone();
                        let target = self.asgs[gi].desired;
                        self.log(
                            t,
                            "NthDrain",
                            &group,
                            0,
                            target,
                            format!("aws-node-termination-handler: spot interruption warning for node-{id}: cordon and drain (PDBs respected) before AWS takes it"),
                        );
                    }
                }
            }
        }
    }

    fn interruptions(&mut self, t: u64) {
        for k in 0..self.sc.cloud.interruptions.len() {
            let it = &self.sc.cloud.interruptions[k];
            if it.at_s != t {
                continue;
            }
            let zone = it.zone.as_deref().map(|z| self.zone_index(z));
            let mut cands: Vec<u32> = (0..self.insts.len() as u32)
                .filter(|&i| {
                    let n = &self.insts[i as usize];
                    n.alive && n.spot && zone.is_none_or(|z| z == n.zone)
                })
                .collect();
            let (count, notice) = (it.count, it.notice_s);
            let mut rng = self.draws.rng(Purpose::InterruptionPick, k as u64);
            for _ in 0..count {
                if cands.is_empty() {
                    break;
                }
                let pick = (rng.next_u64() % cands.len() as u64) as usize;
                let id = cands.swap_remove(pick);
                self.insts[id as usize].cause = Cause::Interruption;
                self.report.interruptions += 1;
                self.last_interruption = Some(t);
                self.push(t + notice, Ev::Terminate(id));
                // EventBridge "EC2 Spot Instance Interruption Warning": to `ours` as the
                // adapter parses it (instance id and deadline; zone and type come from
                // the Node); cluster-autoscaler ignores it, and the instance just dies
                // unless aws-node-termination-handler runs beside it.
                let delivered = t + self.sc.cloud.failure_event_delay_s;
                if self.kind == PolicyKind::Ours {
                    self.ours_events.push((
                        delivered,
                        Event::InstanceInterruption {
                            instance_id: format!("i-{id:08x}"),
                            kind: InterruptionKind::SpotInterruption,
                            zone: None,
                            instance_type: None,
                            deadline: Some(Timestamp::from_secs(t + notice)),
                        },
                    ));
                } else if self.sc.ca_baseline.node_termination_handler {
                    self.push(delivered, Ev::NthDrain(id));
                }
            }
        }
    }

    /// Builds the engine's snapshot: every registered node and one core `Pod` per
    /// replica. Nodes and pods are lent and taken back by [`Sim::restore`], so a scan
    /// allocates little.
    fn snapshot(&mut self, without_pods: bool) -> ClusterSnapshot {
        let ca = self.kind.is_ca();
        let template_zones: Vec<Option<String>> = (0..self.core_groups.len())
            .map(|gi| self.ca_template_zone(gi))
            .collect();
        for (gi, g) in self.core_groups.iter_mut().enumerate() {
            let a = &self.asgs[gi];
            if ca {
                g.target_size = a.cached_target;
                g.current_instances = Some(a.cached_instances);
                if let Some(zone) = &template_zones[gi] {
                    g.zones = vec![zone.clone()];
                }
            } else {
                g.target_size = a.desired;
                g.current_instances = Some(a.live.len() as u32);
            }
        }
        self.snap_nodes.clear();
        let mut nodes = Vec::with_capacity(self.insts.len().min(4096));
        for (id, inst) in self.insts.iter_mut().enumerate() {
            if !inst.alive || !inst.registered {
                continue;
            }
            let Some(mut n) = inst.core.take() else {
                continue;
            };
            n.unschedulable = inst.draining;
            n.ready = inst.ready;
            nodes.push(n);
            self.snap_nodes.push(id as u32);
        }
        // The CA model's engine has scale-down, drain-back and balancing off: with no
        // pod pending, bound pods change none of its decisions, so they are not lent
        // (the 24 h bench spends most of its time indexing pods).
        let idle = ca && self.svcs.iter().all(|s| s.pending.is_empty()) || without_pods;
        let parts = SnapshotParts {
            groups: std::mem::take(&mut self.core_groups),
            nodes,
            pods: if idle {
                Vec::new()
            } else {
                std::mem::take(&mut self.core_pods)
            },
            pdbs: self
                .svcs
                .iter()
                .filter(|s| s.pdb.is_some())
                .map(|s| PodDisruptionBudget {
                    namespace: "default".into(),
                    name: s.name.clone(),
                    selector: LabelSelector::labels([("app", s.name.as_str())]),
                    disruptions_allowed: s.disruptions_allowed(),
                })
                .collect(),
            // The pods' owner is a ReplicaSet named after the service (see `template`).
            workload_loads: self
                .svcs
                .iter()
                .filter(|s| !s.placeholder)
                .filter_map(|s| {
                    Some(WorkloadLoad {
                        namespace: "default".into(),
                        target_kind: "ReplicaSet".into(),
                        target_name: s.name.clone(),
                        cpu_utilization_percent: s.hpa_utilization?,
                    })
                })
                .collect(),
            ..SnapshotParts::default()
        };
        ClusterSnapshot::new(parts).expect("the simulator builds consistent snapshots")
    }

    /// The zone cluster-autoscaler believes a new node of a multi-zone group lands in
    /// (`None` for `ours` and single-zone groups): the zone of a Ready node of the group,
    /// which CA sanitizes into the group's template (mixed_nodeinfos_processor.go), else
    /// the ASG's first zone (aws_manager.go `getAsgTemplate`). The ASG then launches into
    /// the zone with the fewest instances, which may be another.
    fn ca_template_zone(&self, gi: usize) -> Option<String> {
        let zones = &self.sc.node_groups[gi].zones;
        if !self.kind.is_ca() || zones.len() < 2 {
            return None;
        }
        let from_node = self.asgs[gi]
            .live
            .iter()
            .map(|&id| &self.insts[id as usize])
            .find(|i| i.ready && !i.draining)
            .map(|i| self.zones[i.zone as usize].clone());
        Some(from_node.unwrap_or_else(|| zones[0].clone()))
    }

    fn restore(&mut self, snap: ClusterSnapshot) {
        let parts = snap.into_parts();
        self.core_groups = parts.groups;
        for (n, &id) in parts.nodes.into_iter().zip(&self.snap_nodes) {
            self.insts[id as usize].core = Some(n);
        }
        if !parts.pods.is_empty() || self.core_pods.is_empty() {
            self.core_pods = parts.pods;
        }
    }

    fn group_index(&self, name: &str) -> Option<usize> {
        self.sc.node_groups.iter().position(|g| g.name == name)
    }

    fn log(
        &mut self,
        t: u64,
        kind: &str,
        group: &str,
        delta: i64,
        new_target: u32,
        reason: String,
    ) {
        self.report.decisions.push(LogEntry {
            t_s: t,
            kind: kind.into(),
            group: group.into(),
            delta,
            new_target,
            reason,
        });
    }

    /// One decision round; `reverts_only` shows the engine no pods, so that it only
    /// reverts failed scale-ups (CA 1.30's loop that removed failed nodes and skipped
    /// the rest of the iteration). Returns whether a scale-up was reverted
    /// (placeholders deleted).
    fn policy_round(&mut self, t: u64, reverts_only: bool) -> bool {
        let now = Timestamp::from_secs(t);
        let mut reverted = false;
        if self.kind == PolicyKind::Ours {
            let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.ours_events)
                .into_iter()
                .partition(|(at, _)| *at <= t);
            self.ours_events = later;
            for (_, e) in due {
                self.engine.handle_event(e, now);
            }
        }
        let snap = self.snapshot(reverts_only);
        let decisions = self.engine.decide(&snap, now);
        self.restore(snap);
        for d in decisions.actions {
            match d {
                Decision::ScaleUp {
                    group,
                    delta,
                    new_target,
                    reason,
                    cause,
                } => {
                    // Checked here, against the world the decision was made in.
                    match cause {
                        ScaleUpCause::PendingPods
                        | ScaleUpCause::ZoneBalance
                        | ScaleUpCause::Hedge => {
                            if self.svcs.iter().all(|s| s.pending.is_empty()) {
                                self.report.scale_ups_without_pending += 1;
                            }
                        }
                        ScaleUpCause::Replacement(_) => {
                            if let Some(gi) = self.group_index(&group) {
                                self.replacement_asked[gi].push(t);
                            }
                        }
                    }
                    if let Some(gi) = self.group_index(&group) {
                        let target = new_target.min(self.sc.node_groups[gi].max);
                        self.asgs[gi].desired = target;
                        self.asgs[gi].cached_target = target;
                        self.last_scale_up = Some(t);
                    }
                    self.log(t, "ScaleUp", &group, i64::from(delta), new_target, reason);
                }
                Decision::RevertScaleUp {
                    group,
                    cancelled,
                    new_target,
                    reason,
                } => {
                    if let Some(gi) = self.group_index(&group) {
                        let target = new_target.max(self.sc.node_groups[gi].min);
                        self.asgs[gi].desired = target;
                        self.asgs[gi].cached_target = target;
                        if target <= self.asgs[gi].live.len() as u32 {
                            self.asgs[gi].failed_activity_at = None;
                        }
                    }
                    reverted = true;
                    self.log(
                        t,
                        "RevertScaleUp",
                        &group,
                        -i64::from(cancelled),
                        new_target,
                        reason,
                    );
                }
                Decision::RemoveNode {
                    node,
                    group,
                    kind,
                    drain,
                    reason,
                } => {
                    let id = self.node_id(&node);
                    // A consolidation (rebalancing onto the nodes already there) has no
                    // replacement to wait for.
                    let consolidation = reason.contains("drained without a replacement");
                    if matches!(kind, RemovalKind::Rebalance | RemovalKind::DrainBack)
                        && !consolidation
                        && !self.replacement_ready(&reason, t)
                    {
                        self.report.drains_before_replacement_ready += 1;
                    }
                    let cause = match kind {
                        RemovalKind::ScaleDown => Cause::ScaleDown,
                        RemovalKind::Rebalance => Cause::Rebalance,
                        RemovalKind::DrainBack => Cause::DrainBack,
                        RemovalKind::Interruption => Cause::Interruption,
                    };
                    let started = id.is_some_and(|id| self.start_removal(id, t, true, cause));
                    // Desired capacity once every node of the group being drained is gone.
                    let target = self.group_index(&group).map_or(0, |gi| {
                        let a = &self.asgs[gi];
                        let draining = a
                            .live
                            .iter()
                            .filter(|&&i| self.insts[i as usize].draining)
                            .count() as u32;
                        a.desired.saturating_sub(draining)
                    });
                    let reason = if started {
                        format!(
                            "{reason} [drain={drain}, terminate in {} s]",
                            self.sc.cloud.removal_drain_s
                        )
                    } else {
                        format!("{reason} [node already gone or draining: ignored]")
                    };
                    self.log(
                        t,
                        &format!("RemoveNode:{kind:?}"),
                        &group,
                        -1,
                        target,
                        reason,
                    );
                }
                Decision::SetOverprovisioning { replicas, reason } => {
                    if let Some(ph) = self.svcs.iter().position(|s| s.placeholder) {
                        self.set_replicas(ph, replicas, t);
                    }
                    self.log(t, "SetOverprovisioning", "", 0, replicas, reason);
                }
            }
        }
        // The controller's `PreferNoSchedule` taint follows the unneeded verdicts
        // (controller.rs `report_nodes`), within `max_bulk_soft_taint_count`.
        if self.kind == PolicyKind::Ours {
            let mut unneeded = vec![false; self.insts.len()];
            for o in &decisions.nodes {
                if let (NodeVerdict::Unneeded { .. }, Some(id)) =
                    (&o.verdict, self.node_id(&o.node))
                {
                    unneeded[id as usize] = true;
                }
            }
            let budget = self.sc.autoscaler.scale_down.max_bulk_soft_taint_count;
            self.soft_taint(&unneeded, budget);
        }
        for change in decisions.deletion_costs {
            self.report.deletion_cost_patches += 1;
            self.set_deletion_cost(&change.pod, change.cost);
        }
        reverted
    }

    /// The instance behind a core node name (`node-{id}`), if it exists.
    fn node_id(&self, name: &str) -> Option<u32> {
        name.strip_prefix("node-")
            .and_then(|n| n.parse::<u32>().ok())
            .filter(|&id| (id as usize) < self.insts.len())
    }

    /// Writes (or clears) a pod's deletion cost the way the controller patches it:
    /// both annotations on the pod the core sees, and the value the ReplicaSet
    /// scale-in order reads.
    fn set_deletion_cost(&mut self, key: &str, cost: Option<i32>) {
        let Some(p) = key
            .rsplit_once('-')
            .and_then(|(_, id)| id.parse::<u32>().ok())
            .filter(|&p| (p as usize) < self.pods.len() && self.pods[p as usize].alive)
        else {
            return;
        };
        self.pods[p as usize].deletion_cost = cost.unwrap_or(0);
        let pos = self.pod_pos[p as usize];
        if pos == NONE {
            return;
        }
        let pod = Arc::make_mut(&mut self.core_pods[pos as usize]);
        match cost {
            Some(c) => {
                pod.annotations
                    .insert(POD_DELETION_COST.into(), c.to_string());
                pod.annotations
                    .insert(DELETION_COST_SET_BY_US.into(), c.to_string());
            }
            None => {
                pod.annotations.remove(POD_DELETION_COST);
                pod.annotations.remove(DELETION_COST_SET_BY_US);
            }
        }
        self.dirty = true;
    }

    /// One cluster-autoscaler loop (`RunOnce`, every `--scan-interval`).
    fn ca_loop(&mut self, t: u64) {
        // The AWS provider regenerates its ASG cache once `asg_refresh_s` (1 min) has
        // passed since the last time, and on the loop after any DeleteInstances
        // (aws_manager.go: Refresh, DeleteInstances resets lastRefresh). A group with a
        // scale-up in flight has its instances re-read every loop (clusterstate.go:
        // getCloudProviderNodeInstances), so the cache is the only delay.
        let due = t >= self.last_refresh + self.sc.ca_baseline.asg_refresh_s;
        let forced = std::mem::take(&mut self.force_refresh);
        let failed = if due || forced {
            self.last_refresh = t;
            self.ca_refresh(t, forced && !due)
        } else {
            false
        };
        if failed && self.kind == PolicyKind::Ca130 {
            // 1.30: deleteCreatedNodesWithErrors removed the placeholders, and RunOnce
            // returns ("skipping iteration"): no scale-up or scale-down in this loop.
            self.policy_round(t, true);
            self.force_refresh = true;
            self.log(
                t,
                "CaSkipIteration",
                "",
                0,
                0,
                "ca-1.30: nodes that failed to create were removed, skipping iteration (core/static_autoscaler.go before 1.31); the next group is tried next loop".into(),
            );
            return;
        }
        // 1.31+ (core/static_autoscaler.go, "Do not break the loop after removing
        // failed scale up nodes"): the same loop goes on to scale up another group.
        if self.policy_round(t, false) {
            self.force_refresh = true;
        }
        self.ca_scale_down(t);
    }

    /// The ASG cache refresh: targets and instances as AWS has them; an ASG short of its
    /// desired capacity whose latest scaling activity failed gets placeholder instances
    /// with an OutOfResources error, which registers a failed scale-up (node group
    /// backoff) and has the placeholders deleted (desired capacity decremented) in the
    /// same loop. Returns whether any group failed.
    fn ca_refresh(&mut self, t: u64, forced: bool) -> bool {
        let now = Timestamp::from_secs(t);
        let mut failed = false;
        for gi in 0..self.asgs.len() {
            let a = &mut self.asgs[gi];
            a.cached_target = a.desired;
            let live = a.live.len() as u32;
            a.cached_instances = live;
            if a.desired <= live {
                a.failed_activity_at = None;
                continue;
            }
            let Some(at) = a.failed_activity_at.filter(|&at| at <= t) else {
                continue;
            };
            a.failed_activity_at = None;
            let missing = a.desired - live;
            let desired = a.desired;
            let group = self.sc.node_groups[gi].name.clone();
            self.engine.handle_event(
                Event::LaunchFailed {
                    group: group.clone(),
                    zone: None,
                    instance_type: None,
                    reason: LaunchFailureReason::InsufficientInstanceCapacity,
                },
                now,
            );
            failed = true;
            self.log(
                t,
                "CaFailedScaleUp",
                &group,
                0,
                desired,
                format!(
                    "{}: {} ASG cache refresh found {missing} placeholder instance(s) and a failed scaling activity recorded at {at} s: OutOfResources, failed scale-up, node group backoff (cloudprovider/aws/auto_scaling_groups.go, clusterstate/clusterstate.go)",
                    self.kind,
                    if forced { "forced" } else { "periodic" }
                ),
            );
        }
        failed
    }

    /// cluster-autoscaler's scale-down: nodes below the utilization threshold (requests)
    /// for `--scale-down-unneeded-time`, none within `--scale-down-delay-after-add` of a
    /// scale-up, whose pods fit elsewhere and whose PDBs allow the evictions; empty nodes
    /// first. 1.33 bounds deletions in flight by `--max-scale-down-parallelism` and
    /// non-empty drains by `--max-drain-parallelism`; 1.30 deletes at most
    /// `--max-empty-bulk-delete` empty nodes per loop with the same drain bound.
    fn ca_scale_down(&mut self, t: u64) {
        let ca = &self.sc.ca_baseline;
        let thr = ca.scale_down_utilization_threshold;
        let unneeded_time = ca.scale_down_unneeded_time_s;
        let recheck = ca.unremovable_node_recheck_timeout_s;
        // The unneeded set is rebuilt every loop (core/scaledown/unneeded/nodes.go
        // `Update`): a node is in it only while it is under the threshold, not recently
        // unremovable, and its removal simulation passes (pods fit elsewhere, PDBs allow:
        // core/scaledown/planner/planner.go `categorizeNodes`, simulator/drainability/
        // rules/pdb). A node that drops out loses its unneeded time, and a failed
        // simulation is not repeated for `--unremovable-node-recheck-timeout`
        // (core/scaledown/eligibility/eligibility.go, RecentlyUnremovable).
        //
        // The loop's simulations share one snapshot (planner.go `UpdateClusterState`
        // forks it once; the RemovalSimulator persists each passing simulation): pods
        // still on draining nodes and evicted pods not yet bound are placed first
        // (`injectOngoingActuation`; if they fit nowhere the unneeded set is cleared), a
        // node found removable stops being a destination and its pods stay where the
        // simulation put them, and its pods use up their PDBs' remaining disruptions
        // (utils/pdb RemainingPdbTracker), so a later candidate whose PDB is used up is
        // unremovable. Nodes unneeded in the previous loop are simulated first
        // (processors/scaledowncandidates ScaleDownCandidatesSortingProcessor).
        let mut plan = self.drain_plan();
        if !self.inject_ongoing_drains(&mut plan) {
            for &id in &self.ready_nodes {
                self.insts[id as usize].unneeded_since = None;
            }
            self.ca_soft_taints();
            return;
        }
        let mut order: Vec<(bool, u64, u32)> = self
            .ready_nodes
            .iter()
            .map(|&id| {
                let since = self.insts[id as usize].unneeded_since;
                (since.is_none(), since.unwrap_or(0), id)
            })
            .collect();
        order.sort_unstable();
        let mut verdicts: Vec<(u32, Option<bool>)> = Vec::with_capacity(order.len());
        for (_, _, id) in order {
            let inst = &self.insts[id as usize];
            let verdict = if inst.draining
                || inst.utilization() >= thr
                || inst.unremovable_until.is_some_and(|until| t < until)
            {
                None
            } else {
                Some(self.plan_removal(id, &mut plan))
            };
            verdicts.push((id, verdict));
        }
        for (id, verdict) in verdicts {
            let inst = &mut self.insts[id as usize];
            match verdict {
                Some(true) => {
                    inst.unneeded_since.get_or_insert(t);
                }
                Some(false) => {
                    inst.unneeded_since = None;
                    inst.unremovable_until = Some(t + recheck);
                }
                None => inst.unneeded_since = None,
            }
        }
        self.ca_soft_taints();
        if self
            .last_scale_up
            .is_some_and(|s| t < s + ca.scale_down_delay_after_add_s)
        {
            return;
        }
        let deleting = self.removals_in_flight();
        let draining = self
            .draining_list
            .iter()
            .filter(|&&id| {
                let n = &self.insts[id as usize];
                n.alive && n.terminate_when_drained && n.drain_had_pods
            })
            .count() as u32;
        let (mut empty_budget, mut drain_budget) = match self.kind {
            PolicyKind::Ca130 => (
                ca.max_empty_bulk_delete,
                ca.max_drain_parallelism.saturating_sub(draining),
            ),
            _ => {
                let room = ca.max_scale_down_parallelism.saturating_sub(deleting);
                (
                    room,
                    ca.max_drain_parallelism.saturating_sub(draining).min(room),
                )
            }
        };
        let mut headroom: Vec<u32> = self
            .asgs
            .iter()
            .enumerate()
            .map(|(gi, a)| a.desired.saturating_sub(self.sc.node_groups[gi].min))
            .collect();
        let mut cands: Vec<(usize, u64, u32)> = self
            .ready_nodes
            .iter()
            .filter_map(|&id| {
                let n = &self.insts[id as usize];
                let since = n.unneeded_since?;
                (t >= since + unneeded_time).then_some((n.pods.len(), n.used_cpu, id))
            })
            .collect();
        cands.sort();
        for (npods, _, id) in cands {
            let gi = self.insts[id as usize].group as usize;
            if headroom[gi] == 0 {
                continue;
            }
            if npods == 0 {
                if empty_budget == 0 {
                    continue;
                }
                empty_budget -= 1;
            } else {
                if drain_budget == 0
                    || !self.pdbs_allow_drain(id)
                    || !self.removal_simulation_passes(id)
                {
                    continue;
                }
                drain_budget -= 1;
                if self.kind != PolicyKind::Ca130 {
                    empty_budget = empty_budget.saturating_sub(1);
                }
            }
            headroom[gi] -= 1;
            let group = self.sc.node_groups[gi].name.clone();
            self.start_removal(id, t, true, Cause::ScaleDown);
            let target = self.asgs[gi].desired.saturating_sub(1);
            self.log(
                t,
                "ScaleDown",
                &group,
                -1,
                target,
                format!(
                    "{}: node-{id} unneeded for {}s (utilization < {thr}), {npods} pod(s) to evict, terminate in {} s after the drain",
                    self.kind, unneeded_time, self.sc.cloud.removal_drain_s
                ),
            );
        }
    }

    /// CA's `PreferNoSchedule` taint on unneeded nodes, every loop
    /// (core/static_autoscaler.go `updateSoftDeletionTaints`,
    /// core/scaledown/actuation/softtaint.go `UpdateSoftDeletionTaints`).
    fn ca_soft_taints(&mut self) {
        let wanted: Vec<bool> = self
            .insts
            .iter()
            .map(|inst| inst.unneeded_since.is_some())
            .collect();
        self.soft_taint(&wanted, self.sc.ca_baseline.max_bulk_soft_taint_count);
    }

    /// Puts the `PreferNoSchedule` taint where `wanted` says, as CA and the controller
    /// do: first taken off nodes that should not have it, then put on those that
    /// should, at most `budget` changes (0: the taint is off and taken off everywhere);
    /// draining nodes keep theirs.
    fn soft_taint(&mut self, wanted: &[bool], budget: u32) {
        let off = budget == 0;
        let mut left = if off { u32::MAX } else { budget };
        for put in [false, true] {
            for (inst, &want) in self.insts.iter_mut().zip(wanted) {
                let want = want && !off;
                if left == 0 || !inst.alive || inst.draining || want != put {
                    continue;
                }
                if inst.soft_tainted != want {
                    inst.soft_tainted = want;
                    left -= 1;
                    self.dirty = true;
                }
            }
        }
    }

    /// Removals (drains that end in termination) whose instance is not gone yet.
    fn removals_in_flight(&self) -> u32 {
        self.draining_list
            .iter()
            .filter(|&&id| {
                let n = &self.insts[id as usize];
                n.alive && n.terminate_when_drained
            })
            .count() as u32
    }

    /// Whether every pod on the node may be evicted now under its service's PDB.
    fn pdbs_allow_drain(&self, id: u32) -> bool {
        let inst = &self.insts[id as usize];
        inst.svc_pods
            .iter()
            .enumerate()
            .all(|(svc, &n)| n == 0 || self.svcs[svc].disruptions_allowed() >= u32::from(n))
    }

    /// Whether cluster-autoscaler's removal simulation of node `id` passes now, simulated
    /// on its own: no PDB of its pods at 0 and every pod fits on another ready node.
    fn removal_simulation_passes(&self, id: u32) -> bool {
        self.plan_removal(id, &mut self.drain_plan())
    }

    /// The free room of every ready node not being drained, and each service's PDB
    /// disruptions allowed: the start of a scale-down loop's removal simulations.
    fn drain_plan(&self) -> DrainPlan {
        let free = self
            .ready_nodes
            .iter()
            .filter(|&&n| !self.insts[n as usize].draining)
            .map(|&n| {
                let i = &self.insts[n as usize];
                (
                    n,
                    i.alloc.cpu_millis - i.used_cpu.min(i.alloc.cpu_millis),
                    i.alloc.memory_bytes - i.used_mem.min(i.alloc.memory_bytes),
                    i.alloc.pods - (i.pods.len() as u64).min(i.alloc.pods),
                )
            })
            .collect();
        let pdb_left = self
            .svcs
            .iter()
            .map(|s| i64::from(s.disruptions_allowed().min(u32::MAX / 2)))
            .collect();
        DrainPlan {
            free,
            moved: Vec::new(),
            pdb_left,
        }
    }

    /// Places the pods of draining nodes and the evicted pods not yet bound, as
    /// cluster-autoscaler injects them before its removal simulations; false when one
    /// fits nowhere.
    fn inject_ongoing_drains(&self, plan: &mut DrainPlan) -> bool {
        let on_draining = self
            .draining_list
            .iter()
            .filter(|&&id| self.insts[id as usize].alive)
            .flat_map(|&id| self.insts[id as usize].pods.iter().copied());
        let evicted = self
            .svcs
            .iter()
            .flat_map(|s| s.pending.iter().copied())
            .filter(|&p| self.pods[p as usize].evicted_at != NEVER);
        let pods: Vec<u32> = on_draining.chain(evicted).collect();
        self.place(&pods, NONE, plan)
    }

    /// Simulates removing node `id` on `plan`: its PDBs must allow a disruption
    /// (cluster-autoscaler's drainability rule: blocked only at 0 left) and its pods must
    /// fit on the plan's other nodes. On success the plan keeps the placements, drops
    /// the node as a destination and spends the PDBs; on failure it is unchanged.
    fn plan_removal(&self, id: u32, plan: &mut DrainPlan) -> bool {
        let inst = &self.insts[id as usize];
        let pdbs_allow = inst
            .svc_pods
            .iter()
            .enumerate()
            .all(|(svc, &n)| n == 0 || plan.pdb_left[svc] >= 1);
        if !pdbs_allow {
            return false;
        }
        let mut trial = DrainPlan {
            free: plan.free.iter().copied().filter(|f| f.0 != id).collect(),
            moved: plan.moved.clone(),
            pdb_left: Vec::new(),
        };
        if !self.place(&inst.pods, id, &mut trial) {
            return false;
        }
        plan.free = trial.free;
        plan.moved = trial.moved;
        for (svc, &n) in inst.svc_pods.iter().enumerate() {
            plan.pdb_left[svc] -= i64::from(n);
        }
        true
    }

    /// First-fit of `pods` (leaving node `from`) onto `plan`'s free room, with the
    /// scheduler's filters: the moved pods leave their domains and count in their new
    /// ones.
    fn place(&self, pods: &[u32], from: u32, plan: &mut DrainPlan) -> bool {
        for &p in pods {
            let svc = self.pods[p as usize].svc as usize;
            let req = &self.svcs[svc].req;
            let moved = &plan.moved;
            let Some(slot) = plan.free.iter_mut().find(|f| {
                f.1 >= req.cpu_millis
                    && f.2 >= req.memory_bytes
                    && f.3 >= 1
                    && self.placement_allows(f.0, svc, from, moved)
            }) else {
                return false;
            };
            slot.1 -= req.cpu_millis;
            slot.2 -= req.memory_bytes;
            slot.3 -= 1;
            let node = slot.0;
            plan.moved.push((node, svc));
        }
        true
    }

    fn init(&mut self) {
        // Initial nodes, ready at 0, each in the zone with the fewest nodes cluster-wide.
        for gi in 0..self.sc.node_groups.len() {
            for _ in 0..self.sc.node_groups[gi].initial {
                let g = &self.sc.node_groups[gi];
                let zone = g
                    .zones
                    .iter()
                    .min_by_key(|z| self.zone_counts[self.zone_index(z) as usize])
                    .cloned()
                    .unwrap_or_default();
                let size = self.asgs[gi].live.len() as u32;
                let ct = self.core_groups[gi].market_of_launch(size);
                self.launch(gi, (&zone, 0, ct), 0, true);
            }
        }
        // Initial replicas: what the HPA would want for the first second, running.
        for svc in 0..self.svcs.len() {
            let load = self.demand(svc, 0);
            let s = &self.svcs[svc];
            if s.placeholder {
                continue;
            }
            let spec = s.hpa.spec();
            let want = (load / (s.rpp * f64::from(spec.target_utilization) / 100.0)).ceil() as u32;
            let n = want.clamp(spec.min_replicas, spec.max_replicas);
            self.svcs[svc].load = load;
            self.set_replicas(svc, n, 0);
        }
        self.schedule(0, true);
        // Spot comes back when the scenario's last spot outage ends.
        let duration = self.duration;
        let spot_returned = self
            .sc
            .cloud
            .ice
            .iter()
            .filter(|w| w.capacity_type != Some(CapacityType::OnDemand) && w.from_s < duration)
            .map(|w| w.to_s)
            .max();
        self.report.balance_sets = self.balance_sets.len();
        self.report.on_demand_return = spot_returned.map(|at| OnDemandReturn {
            spot_returned_s: at,
            base: self.od_live,
            peak: self.od_live,
            back_after_s: None,
            observed_s: duration.saturating_sub(at),
        });
        let unplaced: usize = self.svcs.iter().map(|s| s.pending.len()).sum();
        if unplaced > 0 {
            self.report.warnings.push(format!(
                "{unplaced} pod(s) did not fit the initial nodes; raise node_groups[].initial"
            ));
        }
    }

    fn account(&mut self, t: u64) {
        let mut pending = 0usize;
        let mut demand = 0.0;
        let mut capacity = 0.0;
        let mut over_target = false;
        for s in self.svcs.iter().filter(|s| !s.placeholder) {
            pending += s.pending.len();
            let cap = s.capacity_rps();
            demand += s.load;
            capacity += cap;
            self.total_requests += s.load;
            self.unserved += (s.load - cap).max(0.0);
            // Utilization of the ready pods' CPU requests by what they serve.
            let ready = s.running.len() as f64;
            if ready > 0.0 && s.load > 0.0 {
                let served = s.load.min(cap);
                let util = served / (ready * s.rpp);
                if util > s.saturation {
                    self.degraded += served;
                }
                let hpa = s.hpa.spec();
                let target = f64::from(hpa.target_utilization) / 100.0;
                over_target |= util > target * (1.0 + hpa.tolerance);
            } else if s.load > 0.0 {
                over_target = true;
            }
        }
        self.report.seconds_over_target += u64::from(over_target);
        self.report.pending_pod_seconds += pending as u64;
        self.report.node_seconds_spot += u64::from(self.spot_live);
        self.report.node_seconds_on_demand += u64::from(self.od_live);
        if let Some(r) = self.report.on_demand_return.as_mut() {
            r.peak = r.peak.max(self.od_live);
            if t >= r.spot_returned_s && r.back_after_s.is_none() && self.od_live <= r.base {
                r.back_after_s = Some(t - r.spot_returned_s);
            }
        }
        self.report.cost_usd += self.price_rate / 3600.0;
        self.report.headroom_cost_usd += self.placeholder_rate.max(0.0) / 3600.0;
        let merge = self.sc.sim.episode_merge_s;
        if pending > 0 {
            if self.open_episode.is_none() {
                let reopen = self
                    .report
                    .episodes
                    .last()
                    .is_some_and(|e| t <= e.end_s + merge);
                self.open_episode = Some(if reopen {
                    self.report.episodes.pop().expect("checked")
                } else {
                    Episode {
                        start_s: t,
                        end_s: t,
                        max_pending: 0,
                    }
                });
            }
            if let Some(e) = self.open_episode.as_mut() {
                e.max_pending = e.max_pending.max(pending as u32);
                e.end_s = t + 1;
            }
        } else if let Some(e) = self.open_episode.take() {
            self.report.episodes.push(e);
        }
        if t.is_multiple_of(10) {
            let skew = self.set_skew();
            self.last_skew = skew;
            self.report.max_az_skew_any = self.report.max_az_skew_any.max(skew);
            // Sustained skew: the smallest over the window the engine is given to act
            // (`balance.rebalance_after`) plus 5 min for one replacement.
            let window = (self.sc.autoscaler.balance.rebalance_after.as_secs() + 300) / 10;
            self.skew_window.push_back(skew);
            while self.skew_window.len() as u64 > window.max(1) {
                self.skew_window.pop_front();
            }
            if self.steady(t, pending) {
                let sustained = self.skew_window.iter().min().copied().unwrap_or(0);
                self.report.max_az_skew = self.report.max_az_skew.max(sustained);
                self.report.steady_samples += 1;
            }
        }
        if t.is_multiple_of(self.sc.sim.sample_s) {
            self.report.series.push(SeriesPoint {
                t_s: t,
                demand_rps: demand,
                capacity_rps: capacity,
                nodes_spot: self.spot_live,
                nodes_on_demand: self.od_live,
                nodes_by_zone: self.zone_counts.clone(),
                az_skew: self.last_skew,
                pending_pods: pending as u32,
                pods: self.svcs.iter().map(Svc::total).sum(),
            });
        }
    }

    /// Largest max-min of live, not draining instances per zone within a balance set.
    fn set_skew(&self) -> u32 {
        let mut worst = 0;
        let mut counts = vec![0u32; self.zones.len()];
        for (groups, zones) in &self.balance_sets {
            if zones.len() < 2 {
                continue;
            }
            counts.iter_mut().for_each(|c| *c = 0);
            for &gi in groups {
                for &id in &self.asgs[gi].live {
                    let inst = &self.insts[id as usize];
                    if !inst.draining {
                        counts[inst.zone as usize] += 1;
                    }
                }
            }
            let it = zones.iter().map(|&z| counts[z as usize]);
            let (max, min) = (it.clone().max().unwrap_or(0), it.min().unwrap_or(0));
            worst = worst.max(max - min);
        }
        worst
    }

    /// Steady state: no pod pending, every ASG at its desired capacity with every
    /// instance Ready, no node draining, and no capacity event (ICE window, spot
    /// interruption) for `sim.settle_s`: skew the autoscaler could have fixed.
    fn steady(&self, t: u64, pending: usize) -> bool {
        pending == 0
            && self.removals_in_flight() == 0
            && !self
                .sc
                .cloud
                .ice
                .iter()
                .any(|w| t >= w.from_s && t < w.to_s + self.sc.sim.settle_s)
            && self
                .last_interruption
                .is_none_or(|i| t >= i + self.sc.sim.settle_s)
            && self.asgs.iter().all(|a| {
                a.live.len() as u32 == a.desired
                    && a.live.iter().all(|&id| self.insts[id as usize].ready)
            })
    }

    fn step(&mut self, t: u64) {
        self.events_until(t);
        self.interruptions(t);
        for svc in 0..self.svcs.len() {
            self.svcs[svc].load = self.demand(svc, t);
        }
        if t > 0 && t.is_multiple_of(self.sc.sim.hpa_sync_s) {
            self.hpa_sync(t);
        }
        self.drain_step(t);
        self.schedule(t, false);
        match self.kind {
            PolicyKind::Ours => {
                if t.is_multiple_of(self.sc.sim.scan_interval_s) {
                    self.policy_round(t, false);
                }
            }
            PolicyKind::Ca133 | PolicyKind::Ca130 => {
                if t.is_multiple_of(self.sc.ca_baseline.scan_interval_s) {
                    self.ca_loop(t);
                }
            }
        }
        self.asg_step(t);
        self.schedule(t, false);
        self.account(t);
    }
}

/// Runs one policy over a loaded scenario. `progress` is called with the simulated
/// second every simulated hour.
pub fn run(
    loaded: &Loaded,
    kind: PolicyKind,
    seed: u64,
    progress: &(dyn Fn(u64) + Sync),
) -> PolicyReport {
    let duration = loaded.duration_s();
    let mut sim = Sim::new(loaded, kind, seed);
    sim.init();
    for t in 0..duration {
        sim.step(t);
        if t % 3600 == 3599 {
            progress(3600);
        }
    }
    progress(duration % 3600);
    if let Some(e) = sim.open_episode.take() {
        sim.report.episodes.push(e);
    }
    sim.report.always_empty_nodes += sim
        .insts
        .iter()
        .filter(|i| i.alive && i.registered && !i.initial && !i.ever_had_pod)
        .count() as u64;
    // Replacements of evicted pods still not Ready at the end lose the rest of the run.
    for p in 0..sim.pods.len() as u32 {
        if sim.pods[p as usize].alive {
            sim.settle_eviction(p, duration);
        }
    }
    let total = sim.total_requests;
    sim.report
        .finish(total, sim.unserved, sim.degraded, duration);
    sim.report
}

/// The core's balance sets ([`BalanceSets::build`], with `ours`' configuration): per
/// set, its group indexes and the indexes (into `zones`) of its zones.
fn balance_sets(
    sc: &Scenario,
    groups: &[NodeGroup],
    zones: &[String],
) -> Vec<(Vec<usize>, Vec<u16>)> {
    let built = BalanceSets::build(groups, &sc.autoscaler);
    let mut sets: Vec<(Vec<usize>, Vec<u16>)> = vec![(Vec::new(), Vec::new()); built.names.len()];
    for (gi, g) in groups.iter().enumerate() {
        let set = &mut sets[built.of_group[gi]];
        set.0.push(gi);
        for z in &g.zones {
            let zi = zones.iter().position(|x| x == z).unwrap_or(0) as u16;
            if !set.1.contains(&zi) {
                set.1.push(zi);
            }
        }
    }
    sets
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;

    fn zonal_placement(scheduler: SchedulerKind) -> Loaded {
        let (mut sc, _) = Scenario::load("zonal-placement").expect("built-in parses");
        sc.sim.scheduler = scheduler;
        sc.resolve(None, None).expect("built-in resolves")
    }

    #[test]
    fn a_keyed_draw_does_not_depend_on_the_draws_before_it() {
        // Common random numbers: policy A draws pod starts between its launches, policy B
        // does not; their third launches must still take the same time.
        let d = Dist::Uniform(40.0, 90.0);
        let draws = Draws { seed: 7 };
        let a: Vec<u64> = (0..5u64)
            .map(|k| {
                let _ = draws.sample(&Dist::Uniform(1.0, 2.0), Purpose::PodStart, k);
                draws.sample(&d, Purpose::LaunchLatency, k)
            })
            .collect();
        let b: Vec<u64> = (0..5u64)
            .map(|k| draws.sample(&d, Purpose::LaunchLatency, k))
            .collect();
        assert_eq!(a, b);
        // Keys and purposes give different streams (5 equal draws in a 51-wide range
        // would be a broken key mix), and another seed another run.
        assert!(b.windows(2).any(|w| w[0] != w[1]), "{b:?}");
        let ready: Vec<u64> = (0..5u64)
            .map(|k| draws.sample(&d, Purpose::NodeReadyLatency, k))
            .collect();
        assert_ne!(ready, b);
        let other: Vec<u64> = (0..5u64)
            .map(|k| Draws { seed: 8 }.sample(&d, Purpose::LaunchLatency, k))
            .collect();
        assert_ne!(other, b);
    }

    /// The built-in `breaking-news`.
    fn breaking_news() -> Loaded {
        let (sc, _) = Scenario::load("breaking-news").expect("built-in parses");
        sc.resolve(None, None).expect("built-in resolves")
    }

    /// `loaded` (seed 1) run for its first 300 s by `policy`.
    fn after_300_s(loaded: &Loaded, policy: PolicyKind) -> Sim<'_> {
        let mut sim = Sim::new(loaded, policy, 1);
        sim.init();
        for t in 0..300 {
            sim.step(t);
        }
        sim
    }

    /// One loop's removal simulations share a snapshot, as cluster-autoscaler's planner:
    /// a node found removable spends its pods' PDB disruptions (a later node holding a pod
    /// of the same PDB is unremovable in that loop) and stops being a destination, while
    /// each node simulated on its own passes.
    #[test]
    fn ca_removal_simulations_in_one_loop_share_pdbs_and_destinations() {
        let loaded = breaking_news();
        let mut sim = after_300_s(&loaded, PolicyKind::Ca133);
        // A PDB that allows one disruption, every replica ready.
        let article = sim.svcs.iter().position(|s| s.name == "article").unwrap();
        sim.svcs[article].pdb = Some(crate::scenario::MaxUnavailable::Count(1));
        assert_eq!(sim.svcs[article].disruptions_allowed(), 1);
        let holders: Vec<u32> = sim
            .ready_nodes
            .iter()
            .copied()
            .filter(|&id| sim.insts[id as usize].svc_pods[article] > 0)
            .collect();
        assert!(holders.len() >= 2, "article pods on {holders:?}");
        let (first, second) = (holders[0], holders[1]);
        assert!(sim.removal_simulation_passes(first));
        assert!(sim.removal_simulation_passes(second));
        let mut plan = sim.drain_plan();
        assert!(sim.plan_removal(first, &mut plan));
        assert!(
            plan.free.iter().all(|f| f.0 != first),
            "still a destination"
        );
        assert!(
            !sim.plan_removal(second, &mut plan),
            "the first removal used up the article PDB"
        );
        // Without PDBs the second passes on the same plan, placed around the first.
        for s in &mut sim.svcs {
            s.pdb = None;
        }
        let mut plan = sim.drain_plan();
        assert!(sim.plan_removal(first, &mut plan));
        let before = plan.moved.len();
        assert!(sim.plan_removal(second, &mut plan));
        assert!(plan.moved[before..].iter().all(|&(node, _)| node != first));
    }

    /// A ReplicaSet scale-in takes the pod with the lowest deletion cost first and, at
    /// equal cost, the one on the node holding the most pods of the service.
    #[test]
    fn scale_in_takes_the_lowest_cost_then_the_most_crowded_node() {
        let loaded = breaking_news();
        let mut sim = after_300_s(&loaded, PolicyKind::Ours);
        let (svc, crowded) = (0..sim.svcs.len())
            .find_map(|svc| {
                let running = &sim.svcs[svc].running;
                let crowded = running
                    .iter()
                    .copied()
                    .max_by_key(|&p| sim.insts[sim.pods[p as usize].node as usize].svc_pods[svc])?;
                let most = sim.insts[sim.pods[crowded as usize].node as usize].svc_pods[svc];
                let fewer = running
                    .iter()
                    .any(|&p| sim.insts[sim.pods[p as usize].node as usize].svc_pods[svc] < most);
                (sim.svcs[svc].pending.is_empty() && sim.svcs[svc].starting.is_empty() && fewer)
                    .then_some((svc, crowded))
            })
            .expect("a service with pods on nodes holding more and fewer of them");
        // Costs as the ReplicaSet sees them without ours' steering.
        for p in sim.svcs[svc].running.clone() {
            sim.pods[p as usize].deletion_cost = 0;
        }
        let node = sim.pods[crowded as usize].node;
        let first = sim.scale_in_victims(svc, 1, 300)[0];
        assert_eq!(
            sim.pods[first as usize].node, node,
            "the most crowded node first"
        );
        // A pod elsewhere with a lower deletion cost goes before it.
        let cheap = sim.svcs[svc]
            .running
            .iter()
            .copied()
            .find(|&p| sim.pods[p as usize].node != node)
            .unwrap();
        sim.pods[cheap as usize].deletion_cost = -1;
        assert_eq!(sim.scale_in_victims(svc, 1, 300), vec![cheap]);
    }

    /// At equal cost and crowding, the pod Ready for the shortest time goes first, compared
    /// on a log2 scale (`LogarithmicScaleDown`): within one power of two the newest pod
    /// goes, even if it has been Ready longer.
    #[test]
    fn scale_in_compares_time_ready_on_a_log2_scale() {
        let loaded = breaking_news();
        let mut sim = after_300_s(&loaded, PolicyKind::Ours);
        // Two running pods of one service on one node (same crowding).
        let (svc, a, b) = (0..sim.svcs.len())
            .find_map(|svc| {
                let running = &sim.svcs[svc].running;
                running.iter().copied().find_map(|a| {
                    let node = sim.pods[a as usize].node;
                    let b = running
                        .iter()
                        .copied()
                        .find(|&b| b != a && sim.pods[b as usize].node == node)?;
                    Some((svc, a.min(b), a.max(b)))
                })
            })
            .expect("a node with two pods of one service");
        // Only these two are cheap: the choice is between them.
        for p in sim.svcs[svc].running.clone() {
            sim.pods[p as usize].deletion_cost = 0;
        }
        sim.pods[a as usize].deletion_cost = -1;
        sim.pods[b as usize].deletion_cost = -1;
        let now = 5000;
        // Ready 10 s against 1000 s: the newer one goes, whichever index it has.
        sim.pods[a as usize].ready_at = now - 10;
        sim.pods[b as usize].ready_at = now - 1000;
        assert_eq!(sim.scale_in_victims(svc, 1, now), vec![a]);
        // Ready 600 s against 700 s, one power of two: a tie, the newest pod goes (the
        // higher index), though it has been Ready longer.
        sim.pods[a as usize].ready_at = now - 600;
        sim.pods[b as usize].ready_at = now - 700;
        assert_eq!(sim.scale_in_victims(svc, 1, now), vec![b]);
    }

    /// `breaking-news` with the Azure trace: 24 nodes at the start for a handful of pods.
    fn breaking_news_with_azure_trace() -> Loaded {
        let (sc, _) = Scenario::load("breaking-news").expect("built-in parses");
        let trace = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/traces/azure_llm_code_2023-11-16_per_second.csv"
        );
        let columns = crate::trace::Columns::default();
        let loaded = sc
            .resolve(None, Some((std::path::Path::new(trace), &columns)))
            .expect("built-in resolves with the trace");
        loaded
    }

    /// cluster-autoscaler's `PreferNoSchedule` taint: every loop it goes on unneeded
    /// nodes and off the others, at most `--max-bulk-soft-taint-count` changes, and
    /// kube-scheduler then places a pod on an untainted node that fits. Ours leaves it
    /// off by default and takes it off where it finds it.
    #[test]
    fn unneeded_nodes_get_the_soft_taint_within_the_budget_and_pods_avoid_it() {
        let loaded = breaking_news_with_azure_trace();
        let mut sim = Sim::new(&loaded, PolicyKind::Ca133, 1);
        sim.init();
        for t in 0..120 {
            sim.step(t);
        }
        let tainted = |sim: &Sim<'_>| {
            sim.ready_nodes
                .iter()
                .filter(|&&id| sim.insts[id as usize].soft_tainted)
                .count()
        };
        let unneeded: Vec<u32> = sim
            .ready_nodes
            .iter()
            .copied()
            .filter(|&id| sim.insts[id as usize].unneeded_since.is_some())
            .collect();
        assert!(unneeded.len() > 10, "{} unneeded", unneeded.len());
        // Two loops (one every 10 s since the start): at most 10 changes each.
        assert!(tainted(&sim) <= 120 / 10 * 10);
        let budget = sim.sc.ca_baseline.max_bulk_soft_taint_count as usize;
        let before = tainted(&sim);
        sim.ca_soft_taints();
        assert!(tainted(&sim) - before <= budget);
        for _ in 0..unneeded.len() {
            sim.ca_soft_taints();
        }
        assert!(unneeded
            .iter()
            .all(|&id| sim.insts[id as usize].soft_tainted));
        // A node no longer unneeded loses it first.
        sim.insts[unneeded[0] as usize].unneeded_since = None;
        sim.ca_soft_taints();
        assert!(!sim.insts[unneeded[0] as usize].soft_tainted);

        // kube-scheduler: the same pod goes to an untainted node while one fits.
        let svc = sim.svcs.iter().position(|s| !s.placeholder).unwrap();
        let free: Vec<u32> = sim
            .ready_nodes
            .iter()
            .copied()
            .filter(|&id| sim.fits(id, svc))
            .collect();
        assert!(free.len() >= 2);
        for &id in &free[1..] {
            sim.insts[id as usize].soft_tainted = true;
        }
        sim.insts[free[0] as usize].soft_tainted = false;
        let p = sim.new_pod(svc, 200);
        sim.schedule(200, true);
        assert_eq!(sim.pods[p as usize].node, free[0], "the untainted node");

        // Ours with the default budget (0): nothing tainted, leftovers removed.
        let mut ours = Sim::new(&loaded, PolicyKind::Ours, 1);
        ours.init();
        ours.insts[ours.ready_nodes[0] as usize].soft_tainted = true;
        for t in 0..120 {
            ours.step(t);
        }
        assert_eq!(tainted(&ours), 0);
    }

    /// cluster-autoscaler removes a node with pods only after it has been removable (under
    /// the threshold, pods fit elsewhere, PDBs allow) at every loop for the whole unneeded
    /// time, and a failed removal simulation is not repeated for the recheck timeout.
    /// Checked against the loop-by-loop state of a run where small nodes' pods often fit
    /// nowhere else (breaking-news with the Azure trace).
    #[test]
    fn ca_removes_only_nodes_removable_for_the_whole_unneeded_time() {
        let loaded = breaking_news_with_azure_trace();
        let mut sim = Sim::new(&loaded, PolicyKind::Ca133, 1);
        let ca = loaded.scenario.ca_baseline.clone();
        let mut removable_since: std::collections::BTreeMap<u32, u64> = Default::default();
        let (mut drains, mut rechecks) = (0, 0);
        sim.init();
        for t in 0..loaded.duration_s() {
            let logged = sim.report.decisions.len();
            sim.step(t);
            for e in &sim.report.decisions[logged..] {
                if e.kind != "ScaleDown" || e.reason.contains(" 0 pod(s) to evict") {
                    continue;
                }
                let id: u32 = e
                    .reason
                    .split("node-")
                    .nth(1)
                    .and_then(|r| r.split_whitespace().next().and_then(|n| n.parse().ok()))
                    .expect("the reason names the node");
                let since = removable_since.get(&id).copied();
                // One loop of slack: the test judges after the loop's drains.
                assert!(
                    since.is_some_and(
                        |s| t + ca.scan_interval_s >= s + ca.scale_down_unneeded_time_s
                    ),
                    "node-{id} drained at {t} s, removable since {since:?}"
                );
                drains += 1;
            }
            if t % ca.scan_interval_s != 0 {
                continue;
            }
            // Removable now, judged here from the cluster state, not from the model's timer.
            let ready = sim.ready_nodes.clone();
            for id in ready {
                let inst = &sim.insts[id as usize];
                if inst.unremovable_until == Some(t + ca.unremovable_node_recheck_timeout_s) {
                    rechecks += 1;
                }
                let removable = !inst.draining
                    && inst.utilization() < ca.scale_down_utilization_threshold
                    && sim.removal_simulation_passes(id);
                if removable {
                    removable_since.entry(id).or_insert(t);
                } else {
                    removable_since.remove(&id);
                }
            }
        }
        // Not vacuous: nodes with pods were drained, and some simulations failed.
        assert!(drains >= 3, "{drains} drains");
        assert!(rechecks >= 1, "{rechecks} failed removal simulations");
    }

    /// Every binding of both scheduler models, and of CA's drain simulation, keeps the
    /// scenario's constraints: ingest-1a only in eu-west-1a, at most one cache pod per
    /// zone, at most one queue pod per node; checked every 10 s of the run.
    #[test]
    fn every_scheduler_model_keeps_zone_pinning_and_anti_affinity() {
        for scheduler in [SchedulerKind::KubeDefault, SchedulerKind::FirstFit] {
            for kind in [PolicyKind::Ours, PolicyKind::Ca133] {
                let loaded = zonal_placement(scheduler);
                let mut sim = Sim::new(&loaded, kind, 1);
                let svc = |name: &str| sim.svcs.iter().position(|s| s.name == name).unwrap();
                let (ingest, cache, queue) = (svc("ingest-1a"), svc("cache"), svc("queue"));
                let zone_a = sim.zone_index("eu-west-1a") as usize;
                let (mut most_cache, mut most_ingest) = (0, 0);
                sim.init();
                for t in 0..loaded.duration_s() {
                    sim.step(t);
                    if t % 10 != 0 {
                        continue;
                    }
                    let at = format!("{scheduler:?}/{kind} at {t} s");
                    for (zi, &n) in sim.svcs[ingest].zone_pods.iter().enumerate() {
                        assert!(zi == zone_a || n == 0, "{at}: ingest-1a outside its zone");
                    }
                    assert!(
                        sim.svcs[cache].zone_pods.iter().all(|&n| n <= 1),
                        "{at}: two cache pods in a zone {:?}",
                        sim.svcs[cache].zone_pods
                    );
                    assert!(
                        sim.insts.iter().all(|i| !i.alive || i.svc_pods[queue] <= 1),
                        "{at}: two queue pods on a node"
                    );
                    most_cache = most_cache.max(sim.svcs[cache].zone_pods.iter().sum::<u32>());
                    most_ingest = most_ingest.max(sim.svcs[ingest].zone_pods[zone_a]);
                }
                // Not vacuous: the peak spread the cache over several zones and grew the
                // pinned service well past what its zone held at the start.
                assert!(most_cache >= 2, "{scheduler:?}/{kind}: {most_cache}");
                assert!(most_ingest > 30, "{scheduler:?}/{kind}: {most_ingest}");
            }
        }
    }
}
