//! The discrete-event engine: a one-second clock driving
//! traffic -> HPA -> pods -> scheduler -> policy -> cloud -> nodes -> pods.
//!
//! Modelling choices and their sources (see also the README):
//! - **HPA**: `autoscaler_core::hpa`, synced every 15 s (kube-controller-manager's
//!   `--horizontal-pod-autoscaler-sync-period` default). CPU usage of a ready pod is its
//!   share of the service's traffic divided by `requests_per_pod`, capped at the limit.
//! - **Pods**: one pod = one replica. Deleting replicas removes unscheduled pods first,
//!   then not-ready ones, then the newest (the ReplicaSet controller's deletion order).
//! - **Scheduler**: first fit over Ready, schedulable nodes in creation order, checking
//!   the core's resource fit (CPU, memory, pod slots) and `nodeSelector`; pods start
//!   after `pod_start_s`. Spread and affinity are not modelled (no scenario uses them).
//! - **Cloud**: an ASG launches while desired > instances; each instance goes to the
//!   zone with the fewest instances of the group (ASG AZ balancing) and the first
//!   instance type with capacity (prioritized allocation); registration and readiness
//!   follow the latency distributions. When no pool has capacity the launch fails,
//!   the ASG retries after `asg_retry_s`, and the failure is reported: to `ours` as
//!   EventBridge "EC2 Instance Launch Unsuccessful" events naming zone and type after
//!   `failure_event_delay_s`; to `ca-baseline` only as a failed scaling activity seen at
//!   its next ASG cache refresh, for the whole group (CA's AWS provider, placeholder
//!   instances with `OutOfResources` errors).
//! - **Policies**: both call the production engine every scan (10 s). `ours` uses the
//!   scenario's `autoscaler` config and forwards every decision. `ca-baseline` runs the
//!   same engine configured like cluster-autoscaler 1.3x (priority expander with random
//!   tie-break, per-group backoff 5 min doubling to 30 min, reset after 3 h, no pool-wide
//!   cool-off, max-node-provision-time 15 min, targets from a 60 s ASG cache) plus a
//!   scale-down modelled here: nodes below 50% requested CPU and memory for 10 min,
//!   not within 10 min of a scale-up, whose pods fit elsewhere, whatever their capacity
//!   type; empty ones up to 10 at a time, others one per scan.

use crate::report::{Episode, LogEntry, PolicyReport, SeriesPoint};
use crate::scenario::{Dist, Loaded, Scenario};
use autoscaler_core::hpa::{Hpa, ResourceMetrics};
use autoscaler_core::model::{
    CAPACITY_TYPE_LABEL, HOSTNAME_LABEL, INSTANCE_TYPE_LABEL, ZONE_LABEL,
};
use autoscaler_core::{
    Autoscaler, AutoscalerConfig, BalanceConfig, CapacityType, ClusterSnapshot, CoolOffPolicy,
    Decision, DrainBackConfig, Event, InstanceType, InterruptionKind, LaunchFailureReason, Node,
    NodeGroup, NodeTemplate, OwnerRef, Pod, Resources, ScaleDownConfig, SchedulingSpec,
    SnapshotParts, Timestamp,
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

/// Which autoscaler drives the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PolicyKind {
    /// The production core, unmodified.
    Ours,
    /// The cluster-autoscaler 1.3x model.
    CaBaseline,
}

impl PolicyKind {
    /// The policy's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::Ours => "ours",
            PolicyKind::CaBaseline => "ca-baseline",
        }
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
            "ca-baseline" | "ca" => Ok(PolicyKind::CaBaseline),
            other => Err(format!("unknown policy {other:?}; use ours or ca-baseline")),
        }
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
}

impl Svc {
    fn total(&self) -> u32 {
        (self.pending.len() + self.starting.len() + self.running.len()) as u32
    }
    fn capacity_rps(&self) -> f64 {
        self.running.len() as f64 * self.rpp * self.limit
    }
}

#[derive(Clone, Copy)]
struct PodRec {
    svc: u16,
    node: u32,
    alive: bool,
}

struct Inst {
    group: u16,
    zone: u16,
    registered: bool,
    ready: bool,
    alive: bool,
    draining: bool,
    pods: Vec<u32>,
    used_cpu: u64,
    used_mem: u64,
    alloc: Resources,
    price: f64,
    spot: bool,
    core: Option<Node>,
    unneeded_since: Option<u64>,
}

struct Asg {
    desired: u32,
    live: Vec<u32>,
    next_attempt: u64,
    cached_target: u32,
    cached_instances: u32,
    failed_since_refresh: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Register(u32),
    Ready(u32),
    PodReady(u32),
    Terminate(u32),
    /// A node `ours` removes: drained, now terminate it and decrement the ASG.
    Drained(u32),
}

struct Sim<'a> {
    sc: &'a Scenario,
    loaded: &'a Loaded,
    kind: PolicyKind,
    rng: ChaCha8Rng,
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
    /// Nodes cordoned by a `RemoveNode` and not terminated yet.
    draining_nodes: u32,
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
    spot_live: u32,
    od_live: u32,
    total_requests: f64,
    unserved: f64,
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
        PolicyKind::CaBaseline => {
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
                seed,
                // Scale-down is modelled in `ca_scale_down`; CA has no drain-back, and
                // `--balance-similar-node-groups` is off by default (no rebalancing ever).
                scale_down: ScaleDownConfig {
                    enabled: false,
                    ..ScaleDownConfig::default()
                },
                drain_back: DrainBackConfig {
                    after: Duration::ZERO,
                    ..DrainBackConfig::default()
                },
                balance: BalanceConfig {
                    enabled: false,
                    rebalance: false,
                    ..BalanceConfig::default()
                },
                ..AutoscalerConfig::default()
            }
        }
    };
    let mut e = Autoscaler::new(config).unwrap_or_else(|_| {
        Autoscaler::new(AutoscalerConfig::default()).expect("default config is valid")
    });
    // Validated with the scenario's groups; a failure here leaves every group passing.
    let _ = e.set_priorities(&priorities_yaml(sc));
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
                let mut labels = autoscaler_core::Labels::new();
                labels.insert("app".into(), s.name.clone());
                let template = Pod {
                    namespace: "default".into(),
                    name: String::new(),
                    labels,
                    owner: Some(OwnerRef {
                        kind: "ReplicaSet".into(),
                        name: s.name.clone(),
                    }),
                    spec: SchedulingSpec {
                        requests: req.clone(),
                        priority: s.priority,
                        node_selector: s.node_selector.clone(),
                        ..SchedulingSpec::default()
                    },
                    ..Pod::default()
                };
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
                }
            })
            .collect();
        let core_groups = sc
            .node_groups
            .iter()
            .map(|g| {
                let mut labels = g.labels.clone();
                labels.insert(CAPACITY_TYPE_LABEL.into(), g.capacity_type.to_string());
                NodeGroup {
                    name: g.name.clone(),
                    min_size: g.min,
                    max_size: g.max,
                    target_size: g.initial,
                    current_instances: Some(g.initial),
                    zones: g.zones.clone(),
                    capacity_type: g.capacity_type,
                    instance_types: g
                        .instance_types
                        .iter()
                        .map(|t| {
                            InstanceType::new(
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
                failed_since_refresh: false,
            })
            .collect();
        let mut report = PolicyReport::new(kind.name());
        report.zones = zones.clone();
        let balance_sets = balance_sets(sc, &zones);
        Sim {
            sc,
            loaded,
            kind,
            rng: ChaCha8Rng::seed_from_u64(seed),
            engine: engine_for(sc, kind, seed),
            svcs,
            pods: Vec::new(),
            core_pods: Vec::new(),
            pod_pos: Vec::new(),
            pos_pod: Vec::new(),
            snap_nodes: Vec::new(),
            balance_sets,
            draining_nodes: 0,
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
            spot_live: 0,
            od_live: 0,
            total_requests: 0.0,
            unserved: 0.0,
        }
    }

    fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.heap.push(Reverse((at, self.seq, ev)));
    }

    fn zone_index(&self, z: &str) -> u16 {
        self.zones.iter().position(|x| x == z).unwrap_or(0) as u16
    }

    /// Creates an instance of group `gi` in `zone` with type `ti`; `ready_now` for the
    /// initial nodes.
    fn launch(&mut self, gi: usize, zone: &str, ti: usize, now: u64, ready_now: bool) -> u32 {
        let id = self.insts.len() as u32;
        let g = &self.sc.node_groups[gi];
        let cg = &self.core_groups[gi];
        let it = &cg.instance_types[ti];
        let mut labels = cg.template.labels.clone();
        labels.insert(ZONE_LABEL.into(), zone.to_string());
        labels.insert(INSTANCE_TYPE_LABEL.into(), it.name.clone());
        let name = format!("node-{id}");
        labels.insert(HOSTNAME_LABEL.into(), name.clone());
        let node = Node {
            name: name.clone(),
            provider_id: Some(format!("aws:///{zone}/i-{id:08x}")),
            group: Some(g.name.clone()),
            capacity_type: g.capacity_type,
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
        let spot = g.capacity_type == CapacityType::Spot;
        self.insts.push(Inst {
            group: gi as u16,
            zone: zi,
            registered: ready_now,
            ready: ready_now,
            alive: true,
            draining: false,
            pods: Vec::new(),
            used_cpu: 0,
            used_mem: 0,
            alloc: it.allocatable.clone(),
            price: it.price_per_hour,
            spot,
            core: Some(node),
            unneeded_since: None,
        });
        self.asgs[gi].live.push(id);
        self.zone_counts[zi as usize] += 1;
        self.price_rate += it.price_per_hour;
        if spot {
            self.spot_live += 1;
        } else {
            self.od_live += 1;
        }
        if ready_now {
            self.ready_nodes.push(id);
        } else {
            let reg = now + sample(&self.sc.cloud.launch_latency_s, &mut self.rng);
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
        if std::mem::take(&mut inst.draining) {
            self.draining_nodes -= 1;
        }
        let gi = inst.group as usize;
        let zi = inst.zone as usize;
        let pods = std::mem::take(&mut inst.pods);
        inst.used_cpu = 0;
        inst.used_mem = 0;
        let (price, spot) = (inst.price, inst.spot);
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
        self.evict(pods, now);
        self.dirty = true;
    }

    /// Evicts pods (their node is drained or gone): the ReplicaSet creates replacements.
    fn evict(&mut self, pods: Vec<u32>, now: u64) {
        for p in pods {
            let svc = self.pods[p as usize].svc as usize;
            self.pods[p as usize].alive = false;
            self.pods[p as usize].node = NONE;
            self.drop_core_pod(p);
            self.svcs[svc].starting.remove(&p);
            self.svcs[svc].running.remove(&p);
            self.report.evictions += 1;
            self.new_pod(svc, now);
        }
    }

    /// `RemoveNode`: cordon now, evict the pods now (PDBs aside, the simulator's pods
    /// have none), terminate the instance and decrement the ASG after `removal_drain_s`.
    fn start_removal(&mut self, id: u32, now: u64) -> bool {
        let inst = &mut self.insts[id as usize];
        if !inst.alive || inst.draining {
            return false;
        }
        inst.draining = true;
        self.draining_nodes += 1;
        let pods = std::mem::take(&mut inst.pods);
        inst.used_cpu = 0;
        inst.used_mem = 0;
        self.evict(pods, now);
        self.push(now + self.sc.cloud.removal_drain_s, Ev::Drained(id));
        self.dirty = true;
        true
    }

    fn new_pod(&mut self, svc: usize, now: u64) {
        let id = self.pods.len() as u32;
        self.pods.push(PodRec {
            svc: svc as u16,
            node: NONE,
            alive: true,
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
    }

    fn unbind(&mut self, p: u32) {
        let rec = self.pods[p as usize];
        if rec.node != NONE {
            let req = &self.svcs[rec.svc as usize].req;
            let inst = &mut self.insts[rec.node as usize];
            inst.pods.retain(|&x| x != p);
            inst.used_cpu -= req.cpu_millis;
            inst.used_mem -= req.memory_bytes;
        }
        self.pods[p as usize].alive = false;
        self.pods[p as usize].node = NONE;
        self.drop_core_pod(p);
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
            for _ in n..cur {
                let s = &mut self.svcs[svc];
                let p = s
                    .pending
                    .pop_last()
                    .or_else(|| s.starting.pop_last())
                    .or_else(|| s.running.pop_last());
                if let Some(p) = p {
                    self.unbind(p);
                }
            }
            self.dirty = true;
        }
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
        let sel = &s.template.spec.node_selector;
        sel.is_empty()
            || inst
                .core
                .as_ref()
                .is_some_and(|n| sel.iter().all(|(k, v)| n.labels.get(k) == Some(v)))
    }

    fn bind(&mut self, p: u32, node: u32, now: u64, immediate: bool) {
        let svc = self.pods[p as usize].svc as usize;
        let (cpu, mem) = (
            self.svcs[svc].req.cpu_millis,
            self.svcs[svc].req.memory_bytes,
        );
        let inst = &mut self.insts[node as usize];
        inst.pods.push(p);
        inst.used_cpu += cpu;
        inst.used_mem += mem;
        self.pods[p as usize].node = node;
        let pos = self.pod_pos[p as usize] as usize;
        // Lent pods are back by now, so this is the only reference: no copy.
        Arc::make_mut(&mut self.core_pods[pos]).node_name = Some(format!("node-{node}"));
        self.svcs[svc].pending.remove(&p);
        if immediate {
            self.svcs[svc].running.insert(p);
        } else {
            self.svcs[svc].starting.insert(p);
            let at = now + sample(&self.svcs[svc].start, &mut self.rng);
            self.push(at, Ev::PodReady(p));
        }
    }

    fn schedule(&mut self, now: u64, immediate: bool) {
        if !self.dirty {
            return;
        }
        self.dirty = false;
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
                let ct = g.capacity_type;
                for _ in live..desired {
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
                            self.launch(gi, &zone, ti, t, false);
                        }
                        None => {
                            self.report.launch_failures += 1;
                            self.asgs[gi].next_attempt = t + self.sc.cloud.asg_retry_s;
                            self.asgs[gi].failed_since_refresh = true;
                            for z in &g.zones {
                                for it in &g.instance_types {
                                    self.ours_events.push((
                                        t + self.sc.cloud.failure_event_delay_s,
                                        Event::LaunchFailed {
                                            group: g.name.clone(),
                                            zone: Some(z.clone()),
                                            instance_type: Some(it.name.clone()),
                                            reason:
                                                LaunchFailureReason::InsufficientInstanceCapacity,
                                        },
                                    ));
                                }
                            }
                            break;
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
                        let at = t + sample(&self.sc.cloud.node_ready_latency_s, &mut self.rng);
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
                        }
                    }
                }
                Ev::Terminate(id) => self.terminate(id, false, t),
                Ev::Drained(id) => self.terminate(id, true, t),
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
            for _ in 0..count {
                if cands.is_empty() {
                    break;
                }
                let pick = (self.rng.next_u64() % cands.len() as u64) as usize;
                let id = cands.swap_remove(pick);
                self.report.interruptions += 1;
                self.last_interruption = Some(t);
                self.push(t + notice, Ev::Terminate(id));
                // EventBridge "EC2 Spot Instance Interruption Warning" to `ours` only:
                // cluster-autoscaler ignores it and the instance just dies.
                if self.kind == PolicyKind::Ours {
                    let inst = &self.insts[id as usize];
                    let itype = inst
                        .core
                        .as_ref()
                        .and_then(|n| n.instance_type())
                        .map(str::to_string);
                    self.ours_events.push((
                        t + self.sc.cloud.failure_event_delay_s,
                        Event::InstanceInterruption {
                            instance_id: format!("i-{id:08x}"),
                            kind: InterruptionKind::SpotInterruption,
                            zone: Some(self.zones[inst.zone as usize].clone()),
                            instance_type: itype,
                            deadline: Some(Timestamp::from_secs(t + notice)),
                        },
                    ));
                }
            }
        }
    }

    /// Builds the engine's snapshot: every registered node and one core `Pod` per
    /// replica. Nodes and pods are lent and taken back by [`Sim::restore`], so a scan
    /// allocates little.
    fn snapshot(&mut self) -> ClusterSnapshot {
        let ca = self.kind == PolicyKind::CaBaseline;
        for (gi, g) in self.core_groups.iter_mut().enumerate() {
            let a = &self.asgs[gi];
            if ca {
                g.target_size = a.cached_target;
                g.current_instances = Some(a.cached_instances);
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
        let idle = ca && self.svcs.iter().all(|s| s.pending.is_empty());
        let parts = SnapshotParts {
            groups: std::mem::take(&mut self.core_groups),
            nodes,
            pods: if idle {
                Vec::new()
            } else {
                std::mem::take(&mut self.core_pods)
            },
            ..SnapshotParts::default()
        };
        ClusterSnapshot::new(parts).expect("the simulator builds consistent snapshots")
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

    #[allow(unreachable_patterns)]
    fn policy_round(&mut self, t: u64) {
        let now = Timestamp::from_secs(t);
        if self.kind == PolicyKind::Ours {
            let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.ours_events)
                .into_iter()
                .partition(|(at, _)| *at <= t);
            self.ours_events = later;
            for (_, e) in due {
                self.engine.handle_event(e, now);
            }
        }
        let snap = self.snapshot();
        let decisions = self.engine.decide(&snap, now);
        self.restore(snap);
        for d in decisions.actions {
            match d {
                Decision::ScaleUp {
                    group,
                    delta,
                    new_target,
                    reason,
                } => {
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
                    }
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
                    let id = node
                        .strip_prefix("node-")
                        .and_then(|n| n.parse::<u32>().ok())
                        .filter(|&id| (id as usize) < self.insts.len());
                    let started = id.is_some_and(|id| self.start_removal(id, t));
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
                    // No placeholder pods are modelled; logged only.
                    self.log(t, "SetOverprovisioning", "", 0, replicas, reason);
                }
                other => {
                    let text = format!("{other:?}");
                    let kind = text
                        .split([' ', '{', '('])
                        .next()
                        .unwrap_or("Unknown")
                        .to_string();
                    self.log(t, &format!("Unhandled:{kind}"), "", 0, 0, text);
                }
            }
        }
    }

    fn ca_refresh(&mut self, t: u64) {
        let now = Timestamp::from_secs(t);
        for gi in 0..self.asgs.len() {
            let a = &mut self.asgs[gi];
            a.cached_target = a.desired;
            a.cached_instances = a.live.len() as u32;
            if std::mem::take(&mut a.failed_since_refresh) && a.desired > a.live.len() as u32 {
                let group = self.sc.node_groups[gi].name.clone();
                self.engine.handle_event(
                    Event::LaunchFailed {
                        group,
                        zone: None,
                        instance_type: None,
                        reason: LaunchFailureReason::InsufficientInstanceCapacity,
                    },
                    now,
                );
            }
        }
    }

    fn ca_scale_down(&mut self, t: u64) {
        let ca = &self.sc.ca_baseline;
        let thr = ca.scale_down_utilization_threshold;
        let unneeded_time = ca.scale_down_unneeded_time_s;
        for &id in &self.ready_nodes {
            let inst = &mut self.insts[id as usize];
            let util = (inst.used_cpu as f64 / inst.alloc.cpu_millis.max(1) as f64)
                .max(inst.used_mem as f64 / inst.alloc.memory_bytes.max(1) as f64);
            if util < thr {
                inst.unneeded_since.get_or_insert(t);
            } else {
                inst.unneeded_since = None;
            }
        }
        if self
            .last_scale_up
            .is_some_and(|s| t < s + ca.scale_down_delay_after_add_s)
        {
            return;
        }
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
        let mut empty_deleted = 0;
        let mut drained_one = false;
        for (npods, _, id) in cands {
            let gi = self.insts[id as usize].group as usize;
            if headroom[gi] == 0 {
                continue;
            }
            if npods == 0 {
                if empty_deleted >= ca.max_empty_bulk_delete {
                    continue;
                }
                empty_deleted += 1;
            } else {
                if drained_one || !self.pods_fit_elsewhere(id) {
                    continue;
                }
                drained_one = true;
            }
            headroom[gi] -= 1;
            let group = self.sc.node_groups[gi].name.clone();
            self.terminate(id, true, t);
            let target = self.asgs[gi].desired;
            self.log(
                t,
                "ScaleDown",
                &group,
                -1,
                target,
                format!(
                    "ca-baseline: node-{id} unneeded for {}s (utilization < {thr}), {npods} pod(s) evicted",
                    unneeded_time
                ),
            );
        }
    }

    fn pods_fit_elsewhere(&self, id: u32) -> bool {
        let mut free: Vec<(u32, u64, u64, u64)> = self
            .ready_nodes
            .iter()
            .filter(|&&n| n != id && !self.insts[n as usize].draining)
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
        for &p in &self.insts[id as usize].pods {
            let req = &self.svcs[self.pods[p as usize].svc as usize].req;
            let Some(slot) = free
                .iter_mut()
                .find(|f| f.1 >= req.cpu_millis && f.2 >= req.memory_bytes && f.3 >= 1)
            else {
                return false;
            };
            slot.1 -= req.cpu_millis;
            slot.2 -= req.memory_bytes;
            slot.3 -= 1;
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
                self.launch(gi, &zone, 0, 0, true);
            }
        }
        // Initial replicas: what the HPA would want for the first second, running.
        for svc in 0..self.svcs.len() {
            let load = self.demand(svc, 0);
            let s = &self.svcs[svc];
            let spec = s.hpa.spec();
            let want = (load / (s.rpp * f64::from(spec.target_utilization) / 100.0)).ceil() as u32;
            let n = want.clamp(spec.min_replicas, spec.max_replicas);
            self.svcs[svc].load = load;
            self.set_replicas(svc, n, 0);
        }
        self.schedule(0, true);
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
        for s in &self.svcs {
            pending += s.pending.len();
            let cap = s.capacity_rps();
            demand += s.load;
            capacity += cap;
            self.total_requests += s.load;
            self.unserved += (s.load - cap).max(0.0);
        }
        self.report.pending_pod_seconds += pending as u64;
        self.report.node_seconds_spot += u64::from(self.spot_live);
        self.report.node_seconds_on_demand += u64::from(self.od_live);
        self.report.cost_usd += self.price_rate / 3600.0;
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
            && self.draining_nodes == 0
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
        self.schedule(t, false);
        let scan = match self.kind {
            PolicyKind::Ours => self.sc.sim.scan_interval_s,
            PolicyKind::CaBaseline => {
                if t.is_multiple_of(self.sc.ca_baseline.asg_refresh_s) {
                    self.ca_refresh(t);
                }
                self.sc.ca_baseline.scan_interval_s
            }
        };
        if t.is_multiple_of(scan) {
            self.policy_round(t);
            if self.kind == PolicyKind::CaBaseline {
                self.ca_scale_down(t);
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
    let duration = loaded
        .scenario
        .duration_s
        .unwrap_or(loaded.trace.len_s())
        .max(1);
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
    let total = sim.total_requests;
    sim.report.finish(total, sim.unserved, duration);
    sim.report
}

/// Balance sets as the core forms them (`BalanceSets::build`): explicit regexes first,
/// else same market, instance types, template labels (zone labels aside) and taints.
/// Each set: its group indexes and the indexes (into `zones`) of its zones.
fn balance_sets(sc: &Scenario, zones: &[String]) -> Vec<(Vec<usize>, Vec<u16>)> {
    let explicit: Vec<regex::Regex> = sc
        .autoscaler
        .balance
        .explicit_sets
        .iter()
        .filter_map(|p| regex::Regex::new(p).ok())
        .collect();
    let mut keys: Vec<String> = Vec::new();
    let mut sets: Vec<(Vec<usize>, Vec<u16>)> = Vec::new();
    for (gi, g) in sc.node_groups.iter().enumerate() {
        let key = match explicit.iter().position(|r| r.is_match(&g.name)) {
            Some(i) => format!("explicit:{i}"),
            None => {
                let mut types: Vec<&str> =
                    g.instance_types.iter().map(|t| t.name.as_str()).collect();
                types.sort();
                let labels: Vec<String> = g
                    .labels
                    .iter()
                    .filter(|(k, _)| !k.contains("zone"))
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                format!(
                    "{}:{}:{}",
                    g.capacity_type,
                    types.join("+"),
                    labels.join(",")
                )
            }
        };
        let si = match keys.iter().position(|k| *k == key) {
            Some(si) => si,
            None => {
                keys.push(key);
                sets.push((Vec::new(), Vec::new()));
                sets.len() - 1
            }
        };
        sets[si].0.push(gi);
        for z in &g.zones {
            let zi = zones.iter().position(|x| x == z).unwrap_or(0) as u16;
            if !sets[si].1.contains(&zi) {
                sets[si].1.push(zi);
            }
        }
    }
    sets
}
