//! `autoscaler-sim replay`: a recording made by `autoscaler --record-dir` (format:
//! [`autoscaler_core::recording`]) turned into a [`Scenario`] with its demand, so the
//! ordinary `run` path replays it through every policy.
//!
//! The conversion, and what it assumes:
//! - **Workloads -> services.** Each recorded owner becomes a service whose replica count
//!   follows the recorded pod count: its demand is `pods x requests_per_pod x target`,
//!   and its HPA (synced every second, no stabilization, no rate limit) turns that back
//!   into the recorded count. Requests, priority and node selector come from the
//!   recorded scheduling spec; affinity, tolerations and spread are not modelled by the
//!   simulator's services (a warning names the workloads that had them).
//! - **`--hpa`: HPAs re-derived.** Each recorded HPA with a CPU utilisation target
//!   becomes one service (the workloads it scales, a Deployment's ReplicaSets, leave the
//!   list above) whose demand is what its controller saw, `utilisation x currentReplicas`
//!   ([`hpa_load`]), and whose HPA has the recorded `minReplicas`, `maxReplicas`, target
//!   and `behavior` (Kubernetes' defaults when unset), synced every 15 s, so changing
//!   them (`tune --vary hpa-scale-down-window=...`) changes the replicas. The pods' CPU
//!   limit lets them reach the highest recorded utilisation. Workloads without such an
//!   HPA replay as recorded (the `hpa-*` knobs reach their mirror HPAs too).
//! - **Groups -> node groups**, sized as at the first replayed round, priorities from the
//!   recorded priority ConfigMap.
//! - **Cloud, calibrated on the recording:** launch and ready latencies are the medians
//!   from a `ScaleUp` to the group's next registered and next Ready node; an ICE event
//!   becomes an outage of that pool from the scale-up it answered until the engine's
//!   first cool-off would end, with the failed activity's delay as observed.
//! - Leading rounds without any pod are skipped (the HPA model starts from one replica).

use crate::error::InputError;
use crate::report::LogEntry;
use crate::scenario::{
    CaSpec, CloudSpec, Dist, GroupSpec, IceWindow, InstanceTypeSpec, Interruption, Loaded,
    Scenario, ServiceSpec, SimSpec, TraceSpec,
};
use crate::trace::Trace;
use autoscaler_core::hpa::{Behavior, ScalingPolicy, ScalingPolicyType, ScalingRules};
use autoscaler_core::recording::{
    hpa_scales, reads_version, GroupDef, HpaDef, HpaSettings, RecordLine, RecordingHeader,
    RoundRecord, WorkloadDef, RECORDING_VERSION,
};
use autoscaler_core::SchedulingSpec;
use autoscaler_core::{CapacityType, Event, InterruptionKind, LaunchFailureReason, PriorityConfig};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Requests per second one replayed pod serves at 100 % of its CPU request.
const REQUESTS_PER_POD: f64 = 10.0;
/// HPA target of replayed services, percent.
const TARGET_UTILIZATION: u32 = 50;
/// `--horizontal-pod-autoscaler-sync-period` (Kubernetes' default), for `--hpa`.
const HPA_SYNC_S: u64 = 15;

/// One replayed service's demand, before it becomes a [`ServiceSpec`].
struct Demand {
    name: String,
    /// The workload whose pod spec the service takes.
    workload: u32,
    /// Requests per second, per second of the replay.
    rps: Vec<f64>,
    /// The HPA it is re-derived through (`--hpa`), and the CPU limit ratio that lets its
    /// pods reach the highest recorded utilisation.
    hpa: Option<(HpaSettings, f64)>,
}

/// A recorded HPA's load, per second from the first round: `utilisation / 100 x
/// currentReplicas` as its controller reported them, i.e. pods' worth of CPU at 100 % of
/// their request (what the HPA divides by its target to get its replicas). A round
/// without a utilisation (metrics unavailable) keeps the last one; seconds before the
/// first known one take it. `None` when the HPA never had a utilisation.
pub fn hpa_load(rounds: &[RoundRecord], hpa: u32, duration_s: u64) -> Option<Vec<f64>> {
    let status = |r: &RoundRecord| r.hpas.iter().find(|c| c.id == hpa).copied();
    let mut utilization = rounds
        .iter()
        .filter_map(|r| status(r)?.cpu_utilization)
        .next()?;
    let t0 = rounds.first()?.at_ms;
    let second_of = |at_ms: u64| (((at_ms - t0) / 1000) as usize).min(duration_s as usize);
    let mut load = vec![0.0; duration_s as usize];
    for (i, r) in rounds.iter().enumerate() {
        let from = second_of(r.at_ms);
        let to = rounds
            .get(i + 1)
            .map_or(duration_s as usize, |n| second_of(n.at_ms));
        let value = status(r).map_or(0.0, |c| {
            utilization = c.cpu_utilization.unwrap_or(utilization);
            f64::from(utilization) / 100.0 * f64::from(c.current_replicas)
        });
        for v in &mut load[from..to.max(from)] {
            *v = value;
        }
    }
    Some(load)
}

/// The service replaying `d`: its share of `total` as traffic factors where it changes,
/// and either a 1 s unstabilized HPA that follows the recorded count, or the recorded
/// HPA's settings.
fn service(d: &Demand, spec: &SchedulingSpec, total: &[f64]) -> ServiceSpec {
    let mut factors: Vec<(u64, u64, f64)> = Vec::new();
    for (t, &all) in total.iter().enumerate() {
        let k = if all > 0.0 { d.rps[t] / all } else { 0.0 };
        match factors.last_mut() {
            Some(f) if f.2 == k && f.1 == t as u64 => f.1 += 1,
            _ => factors.push((t as u64, t as u64 + 1, k)),
        }
    }
    if factors.iter().all(|f| f.2 == 1.0) {
        factors.clear();
    }
    let fast = |policy_type, value| ScalingRules {
        stabilization_window_seconds: Some(0),
        policies: vec![ScalingPolicy {
            policy_type,
            value,
            period_seconds: 1,
        }],
        ..ScalingRules::default()
    };
    let per_pod = REQUESTS_PER_POD * f64::from(TARGET_UTILIZATION) / 100.0;
    let most_pods = d.rps.iter().fold(0.0f64, |a, &b| a.max(b)) / per_pod;
    let (min_replicas, max_replicas, target_utilization, behavior, cpu_limit_ratio) = match &d.hpa {
        Some((h, limit)) => (
            h.min_replicas,
            h.max_replicas.max(h.min_replicas).max(1),
            h.cpu_target_utilization.unwrap_or(TARGET_UTILIZATION),
            h.behavior.clone().unwrap_or_default(),
            *limit,
        ),
        None => (
            0,
            (most_pods.round() as u32).max(1),
            TARGET_UTILIZATION,
            Behavior {
                scale_up: fast(ScalingPolicyType::Pods, 10_000),
                scale_down: fast(ScalingPolicyType::Percent, 100),
            },
            1.0,
        ),
    };
    ServiceSpec {
        name: d.name.clone(),
        requests_per_pod: REQUESTS_PER_POD,
        cpu: format!("{}m", spec.requests.cpu_millis.max(1)),
        memory: format!("{}", spec.requests.memory_bytes.max(1)),
        cpu_limit_ratio,
        min_replicas,
        max_replicas,
        target_utilization,
        behavior,
        priority: spec.priority,
        pod_start_s: Dist::Fixed(1.0),
        share: 1.0,
        traffic_factors: factors,
        node_selector: spec.node_selector.clone(),
        saturation_utilization: 0.85,
        pdb_max_unavailable: None,
        anti_affinity: Vec::new(),
        zones: Vec::new(),
    }
}

/// A recording, read and merged across its files.
#[derive(Clone, Debug)]
pub struct Recording {
    /// Where it was read from.
    pub source: String,
    /// The first header (the configuration the controller ran with).
    pub header: RecordingHeader,
    /// Priority ConfigMap texts by time (ms since the epoch).
    pub priorities: Vec<(u64, Option<String>)>,
    /// Group definitions (the last seen).
    pub groups: BTreeMap<String, GroupDef>,
    /// Workload definitions by id (the last seen).
    pub workloads: BTreeMap<u32, WorkloadDef>,
    /// HPA definitions by id (the last seen).
    pub hpas: BTreeMap<u32, HpaDef>,
    /// Rounds in time order.
    pub rounds: Vec<RoundRecord>,
}

fn bad(file: &Path, line: u64, message: String) -> InputError {
    InputError::Field {
        file: file.display().to_string(),
        line,
        field: "(recording line)".into(),
        message,
    }
}

impl Recording {
    /// Reads every `recording-*.jsonl` of `dir` (or one file), oldest first.
    pub fn load(dir: &Path) -> Result<Recording, InputError> {
        let files: Vec<PathBuf> = if dir.is_file() {
            vec![dir.to_path_buf()]
        } else {
            let entries = std::fs::read_dir(dir).map_err(|source| InputError::Read {
                file: dir.display().to_string(),
                source,
            })?;
            let mut v: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("recording-") && n.ends_with(".jsonl"))
                })
                .collect();
            v.sort();
            v
        };
        if files.is_empty() {
            return Err(InputError::File {
                file: dir.display().to_string(),
                message:
                    "no recording-*.jsonl files: pass the folder given to `autoscaler --record-dir`"
                        .into(),
            });
        }
        let mut header = None;
        let mut rec = Recording {
            source: dir.display().to_string(),
            header: RecordingHeader {
                version: RECORDING_VERSION,
                at_ms: 0,
                scan_interval_ms: 10_000,
                dry_run: false,
                config: Default::default(),
            },
            priorities: Vec::new(),
            groups: BTreeMap::new(),
            workloads: BTreeMap::new(),
            hpas: BTreeMap::new(),
            rounds: Vec::new(),
        };
        for f in &files {
            let text = std::fs::read_to_string(f).map_err(|source| InputError::Read {
                file: f.display().to_string(),
                source,
            })?;
            for (i, line) in text.lines().enumerate() {
                let n = i as u64 + 1;
                if line.trim().is_empty() {
                    continue;
                }
                let parsed: RecordLine = serde_json::from_str(line).map_err(|e| {
                    bad(
                        f,
                        n,
                        format!("{e}; is this a recording of format version {RECORDING_VERSION}?"),
                    )
                })?;
                match parsed {
                    RecordLine::Header(h) => {
                        if !reads_version(h.version) {
                            return Err(bad(f, n, format!("format version {} but this simulator reads versions 1 to {RECORDING_VERSION}; use the autoscaler-sim of the same release as the controller", h.version)));
                        }
                        header.get_or_insert(h);
                    }
                    RecordLine::Workload(w) => {
                        rec.workloads.insert(w.id, w);
                    }
                    RecordLine::Group(g) => {
                        rec.groups.insert(g.name.clone(), g);
                    }
                    RecordLine::Hpa(h) => {
                        rec.hpas.insert(h.id, h);
                    }
                    RecordLine::Priorities { at_ms, text } => rec.priorities.push((at_ms, text)),
                    RecordLine::Round(r) => {
                        if rec.rounds.last().is_some_and(|l| l.at_ms >= r.at_ms) {
                            return Err(bad(f, n, "rounds go back in time: mixing two clusters' recordings in one folder?".into()));
                        }
                        rec.rounds.push(r);
                    }
                }
            }
        }
        rec.header = header.ok_or_else(|| InputError::File {
            file: rec.source.clone(),
            message: "no header line: not a recording".into(),
        })?;
        if rec.rounds.is_empty() {
            return Err(InputError::File {
                file: rec.source.clone(),
                message: "no rounds recorded".into(),
            });
        }
        Ok(rec)
    }

    /// Keeps the rounds from `from_s` to `to_s`, seconds after the first round.
    pub fn window(
        mut self,
        from_s: Option<u64>,
        to_s: Option<u64>,
    ) -> Result<Recording, InputError> {
        let t0 = self.rounds[0].at_ms;
        let from = t0 + from_s.unwrap_or(0) * 1000;
        let to = to_s.map_or(u64::MAX, |t| t0 + t * 1000);
        self.rounds.retain(|r| r.at_ms >= from && r.at_ms <= to);
        // The HPA model starts a service from one replica: begin where pods exist.
        let first = self
            .rounds
            .iter()
            .position(|r| r.workloads.iter().any(|w| w.pods > 0));
        match first {
            Some(i) => {
                self.rounds.drain(..i);
                Ok(self)
            }
            None => Err(InputError::Usage(format!(
                "--from/--to leave no round with pods in {} (it spans {} s)",
                self.source,
                self.rounds.last().map_or(0, |r| r.at_ms - t0) / 1000
            ))),
        }
    }

    /// Seconds from the first round (ms precision kept as a fraction).
    fn offset_s(&self, at_ms: u64) -> f64 {
        at_ms.saturating_sub(self.rounds[0].at_ms) as f64 / 1000.0
    }

    /// The decisions the live controller took, as a decision log (seconds from the first
    /// replayed round, rounded down).
    pub fn live_decisions(&self) -> Vec<LogEntry> {
        self.rounds
            .iter()
            .flat_map(|r| {
                let t_s = self.offset_s(r.at_ms) as u64;
                r.decisions.iter().map(move |d| LogEntry {
                    t_s,
                    kind: d.kind.clone(),
                    group: d.group.clone(),
                    delta: d.delta,
                    new_target: d.new_target,
                    reason: "recorded".into(),
                })
            })
            .collect()
    }

    fn nodes_at(&self, group: &str, at_ms: u64) -> (u32, u32) {
        self.rounds
            .iter()
            .rev()
            .find(|r| r.at_ms <= at_ms)
            .and_then(|r| r.groups.iter().find(|g| g.name == group))
            .map_or((0, 0), |g| {
                g.nodes
                    .iter()
                    .fold((0, 0), |a, n| (a.0 + n.total, a.1 + n.ready))
            })
    }

    /// Median seconds from a scale-up to the group's next registered node, and from
    /// there to its next Ready node.
    fn latencies(&self) -> (Option<f64>, Option<f64>) {
        let mut launch = Vec::new();
        let mut ready = Vec::new();
        for r in &self.rounds {
            for d in r.decisions.iter().filter(|d| d.kind == "ScaleUp") {
                let (total0, ready0) = self.nodes_at(&d.group, r.at_ms);
                let later = self.rounds.iter().filter(|x| x.at_ms > r.at_ms);
                let mut registered = None;
                for x in later {
                    let (t, rd) = self.nodes_at(&d.group, x.at_ms);
                    if registered.is_none() && t > total0 {
                        registered = Some(x.at_ms);
                    }
                    if rd > ready0 {
                        let reg = registered.unwrap_or(x.at_ms);
                        launch.push((reg - r.at_ms) as f64 / 1000.0);
                        ready.push((x.at_ms - reg) as f64 / 1000.0);
                        break;
                    }
                }
            }
        }
        (median(&mut launch), median(&mut ready))
    }

    /// A value per second of the replay: `of` the last round at or before it (`absent`
    /// when it gives none).
    fn per_second(
        &self,
        duration_s: u64,
        of: impl Fn(&RoundRecord) -> Option<f64>,
        absent: f64,
    ) -> Vec<f64> {
        let t0 = self.rounds[0].at_ms;
        let second_of = |at_ms: u64| (((at_ms - t0) / 1000) as usize).min(duration_s as usize);
        let mut series = vec![absent; duration_s as usize];
        for (i, r) in self.rounds.iter().enumerate() {
            let from = second_of(r.at_ms);
            let to = self
                .rounds
                .get(i + 1)
                .map_or(duration_s as usize, |n| second_of(n.at_ms));
            let v = of(r).unwrap_or(absent);
            for x in &mut series[from..to.max(from)] {
                *x = v;
            }
        }
        series
    }

    /// `--hpa`: one service per recorded HPA with a CPU target, its demand the recorded
    /// utilisation x replicas ([`hpa_load`]); the workloads it scales leave `pods`.
    fn hpa_demands(
        &self,
        pods: &mut BTreeMap<u32, Vec<f64>>,
        duration_s: u64,
        warnings: &mut Vec<String>,
    ) -> Result<Vec<Demand>, InputError> {
        let mut demands = Vec::new();
        for h in self.hpas.values() {
            let s = &h.settings;
            let who = format!("HPA {}/{}", s.namespace, s.name);
            if s.cpu_target_utilization.is_none() {
                warnings.push(format!(
                    "{who}: no CPU utilisation target; its workload replays as recorded"
                ));
                continue;
            }
            let scaled: Vec<u32> = pods
                .keys()
                .copied()
                .filter(|id| {
                    let w = &self.workloads[id];
                    w.namespace == s.namespace
                        && hpa_scales(&s.target_kind, &s.target_name, &w.kind, &w.name)
                })
                .collect();
            let Some(&main) = scaled
                .iter()
                .max_by_key(|id| pods[id].iter().sum::<f64>() as u64)
            else {
                warnings.push(format!(
                    "{who}: no recorded pods of its {} {}",
                    s.target_kind, s.target_name
                ));
                continue;
            };
            let Some(load) = hpa_load(&self.rounds, h.id, duration_s) else {
                warnings.push(format!("{who}: no CPU utilisation recorded (no metrics yet?); its workload replays as recorded"));
                continue;
            };
            let most = self
                .rounds
                .iter()
                .flat_map(|r| &r.hpas)
                .filter(|c| c.id == h.id)
                .filter_map(|c| c.cpu_utilization)
                .max()
                .unwrap_or(100);
            for id in &scaled {
                pods.remove(id);
            }
            demands.push(Demand {
                name: format!("{}/{}", s.namespace, s.name),
                workload: main,
                rps: load.iter().map(|l| l * REQUESTS_PER_POD).collect(),
                hpa: Some((s.clone(), (f64::from(most) / 100.0).max(1.0))),
            });
        }
        if demands.is_empty() {
            return Err(InputError::Usage(format!(
                "--hpa: {} holds no HPA with a CPU utilisation target and recorded utilisation (recorded by an autoscaler older than format 2, or without list/watch on horizontalpodautoscalers); replay without --hpa",
                self.source
            )));
        }
        Ok(demands)
    }

    /// The scenario (and its demand) that replays this recording, with the recorded
    /// replica counts.
    pub fn to_loaded(&self) -> Result<(Loaded, Vec<String>), InputError> {
        self.to_loaded_with(false)
    }

    /// The scenario that replays this recording; with `hpa`, every workload scaled by a
    /// recorded HPA with a CPU target is re-derived through the HPA model (see the module
    /// documentation).
    pub fn to_loaded_with(&self, hpa: bool) -> Result<(Loaded, Vec<String>), InputError> {
        let mut warnings = Vec::new();
        let t0 = self.rounds[0].at_ms;
        let last = self.rounds.last().map_or(t0, |r| r.at_ms);
        let scan_s = (self.header.scan_interval_ms / 1000).max(1);
        // One more scan after the last round, so its decisions play out.
        let duration_s = (last - t0) / 1000 + 1 + scan_s;

        // Pods per workload per second (the last round at or before that second).
        let mut pods: BTreeMap<u32, Vec<f64>> = self
            .workloads
            .keys()
            .map(|&id| {
                (
                    id,
                    self.per_second(
                        duration_s,
                        |r| {
                            r.workloads
                                .iter()
                                .find(|c| c.id == id)
                                .map(|c| f64::from(c.pods))
                        },
                        0.0,
                    ),
                )
            })
            .collect();
        pods.retain(|_, s| s.iter().any(|&v| v > 0.0));

        let mut demands: Vec<Demand> = Vec::new();
        if hpa {
            demands = self.hpa_demands(&mut pods, duration_s, &mut warnings)?;
        }
        let per_pod = REQUESTS_PER_POD * f64::from(TARGET_UTILIZATION) / 100.0;
        for (&id, series) in &pods {
            let w = &self.workloads[&id];
            demands.push(Demand {
                name: if w.name.is_empty() {
                    format!("{}/pods", w.namespace)
                } else {
                    format!("{}/{}", w.namespace, w.name)
                },
                workload: id,
                rps: series.iter().map(|p| p * per_pod).collect(),
                hpa: None,
            });
        }
        // An owner recorded with several pod specs gives several services.
        let mut seen = BTreeMap::new();
        for d in &mut demands {
            let n = seen.entry(d.name.clone()).or_insert(0u32);
            *n += 1;
            if *n > 1 {
                d.name = format!("{}#{}", d.name, d.workload);
            }
        }
        let total: Vec<f64> = (0..duration_s as usize)
            .map(|t| demands.iter().map(|d| d.rps[t]).sum::<f64>())
            .collect();
        let mut services = Vec::new();
        for d in &demands {
            let w = &self.workloads[&d.workload];
            let spec = &w.spec;
            if !(spec.tolerations.is_empty()
                && spec.required_node_affinity.is_empty()
                && spec.anti_affinity.is_empty()
                && spec.topology_spread.is_empty())
            {
                warnings.push(format!("{}: tolerations, affinity and topology spread are not replayed (the simulator's services have none)", d.name));
            }
            services.push(service(d, spec, &total));
        }

        let priorities = self
            .priorities
            .iter()
            .rev()
            .find(|p| p.0 <= t0)
            .or(self.priorities.first())
            .and_then(|p| p.1.as_deref())
            .and_then(|text| PriorityConfig::parse(text).ok());
        let node_groups: Vec<GroupSpec> = self
            .groups
            .values()
            .map(|g| GroupSpec {
                name: g.name.clone(),
                zones: g.zones.clone(),
                capacity_type: g.capacity_type,
                mix: g.mix,
                instance_types: g
                    .instance_types
                    .iter()
                    .map(|t| InstanceTypeSpec {
                        name: t.name.clone(),
                        vcpu: t.vcpus,
                        memory_gib: (t.memory_mib / 1024) as u32,
                        price_per_hour: t.price_per_hour,
                        on_demand_price_per_hour: t.on_demand_price_per_hour,
                    })
                    .collect(),
                min: g.min_size,
                max: g.max_size,
                initial: self.nodes_at(&g.name, t0).0.max(g.min_size),
                priority: priorities
                    .as_ref()
                    .and_then(|p| p.priority_of(&g.name))
                    .unwrap_or(0),
                labels: g.template.labels.clone(),
            })
            .collect();

        let (launch, ready) = self.latencies();
        let mut cloud = CloudSpec {
            failure_event_delay_s: 0,
            ..CloudSpec::default()
        };
        if let Some(l) = launch {
            cloud.launch_latency_s = Dist::Fixed(l.max(1.0));
        }
        if let Some(r) = ready {
            cloud.node_ready_latency_s = Dist::Fixed(r.max(1.0));
        }
        let cool_off = self.header.config.cool_off.initial.as_secs();
        let mut failure_delays = Vec::new();
        for r in &self.rounds {
            let at = self.offset_s(r.at_ms);
            for e in &r.events {
                match e {
                    Event::LaunchFailed {
                        group,
                        zone,
                        instance_type,
                        reason: LaunchFailureReason::InsufficientInstanceCapacity,
                    } => {
                        // The scale-up this failure answers: the group's last before it.
                        let from = self
                            .rounds
                            .iter()
                            .filter(|x| x.at_ms <= r.at_ms)
                            .filter(|x| x.decisions.iter().any(|d| d.kind == "ScaleUp" && &d.group == group))
                            .map(|x| self.offset_s(x.at_ms))
                            .next_back()
                            .unwrap_or(at);
                        failure_delays.push(at - from);
                        cloud.ice.push(IceWindow {
                            from_s: from as u64,
                            to_s: at as u64 + cool_off,
                            capacity_type: self.groups.get(group).map(|g| g.capacity_type),
                            zones: zone.iter().cloned().collect(),
                            instance_types: instance_type.iter().cloned().collect(),
                        });
                    }
                    Event::LaunchFailed { group, reason, .. } => warnings.push(format!(
                        "{group}: launch failure {reason} at {at:.0} s is not replayed (only capacity outages are)"
                    )),
                    Event::InstanceInterruption {
                        kind: InterruptionKind::SpotInterruption,
                        zone,
                        deadline,
                        ..
                    } => cloud.interruptions.push(Interruption {
                        at_s: at as u64,
                        count: 1,
                        zone: zone.clone(),
                        notice_s: deadline.map_or(120, |d| d.as_millis().saturating_sub(r.at_ms) / 1000),
                    }),
                    _ => {}
                }
            }
        }
        if let Some(d) = median(&mut failure_delays) {
            cloud.failed_activity_delay_s = Dist::Fixed(d.max(1.0));
        }
        let scenario = Scenario {
            name: format!("replay of {}", self.source),
            description: format!(
                "{} rounds recorded{} with --scan-interval={} s",
                self.rounds.len(),
                if self.header.dry_run {
                    " in --dry-run"
                } else {
                    ""
                },
                scan_s
            ),
            duration_s: Some(duration_s),
            trace: TraceSpec {
                points: vec![(0.0, 0.0)],
                ..TraceSpec::default()
            },
            services,
            node_groups,
            cloud,
            overprovisioning: None,
            autoscaler: self.header.config.clone(),
            ca_baseline: CaSpec::default(),
            sim: SimSpec {
                scan_interval_s: scan_s,
                // The recorded counts are mirrored every second; re-derived HPAs sync at
                // Kubernetes' default period.
                hpa_sync_s: if hpa { HPA_SYNC_S } else { 1 },
                sample_s: 10,
                ..SimSpec::default()
            },
        };
        let scenario = Scenario::from_yaml(
            &serde_yaml_ng::to_string(&scenario).map_err(|e| InputError::File {
                file: self.source.clone(),
                message: format!("building the scenario: {e}"),
            })?,
            &self.source,
        )?;
        let trace = Trace {
            rps: total,
            resolution_s: 1,
            source: self.source.clone(),
        };
        Ok((Loaded { scenario, trace }, warnings))
    }
}

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

/// A live decision and the replay's nearest one of the same kind and group.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DecisionMatch {
    /// `ScaleUp`, `RevertScaleUp`, `RemoveNode:<kind>`.
    pub kind: String,
    /// Group.
    pub group: String,
    /// Second of the live decision.
    pub live_s: u64,
    /// Second of the replay's, if it took one.
    pub replay_s: Option<u64>,
}

impl DecisionMatch {
    /// Whether the replay's decision is within `tolerance_s` of the live one.
    pub fn within(&self, tolerance_s: u64) -> bool {
        self.replay_s
            .is_some_and(|r| r.abs_diff(self.live_s) <= tolerance_s)
    }
}

/// Pairs each live group decision with the replay's nearest unpaired decision of the
/// same kind and group (`SetOverprovisioning` is left out: it has no group).
pub fn match_decisions(live: &[LogEntry], replay: &[LogEntry]) -> Vec<DecisionMatch> {
    let mut used = vec![false; replay.len()];
    live.iter()
        .filter(|l| !l.group.is_empty())
        .map(|l| {
            let best = replay
                .iter()
                .enumerate()
                .filter(|(i, r)| !used[*i] && r.kind == l.kind && r.group == l.group)
                .min_by_key(|(_, r)| r.t_s.abs_diff(l.t_s))
                .map(|(i, r)| (i, r.t_s));
            if let Some((i, _)) = best {
                used[i] = true;
            }
            DecisionMatch {
                kind: l.kind.clone(),
                group: l.group.clone(),
                live_s: l.t_s,
                replay_s: best.map(|b| b.1),
            }
        })
        .collect()
}

/// The lines of the live-vs-replay table the `replay` command prints.
pub fn match_table(matches: &[DecisionMatch], tolerance_s: u64) -> String {
    let mut out = format!(
        "{:<22} {:<24} {:>7} {:>9}  within {tolerance_s} s\n",
        "live decision", "group", "live s", "replay s"
    );
    for m in matches {
        out.push_str(&format!(
            "{:<22} {:<24} {:>7} {:>9}  {}\n",
            m.kind,
            m.group,
            m.live_s,
            m.replay_s.map_or("-".into(), |r| r.to_string()),
            if m.within(tolerance_s) { "yes" } else { "NO" }
        ));
    }
    out
}

/// Capacity type of a group in the recording, for callers that label output.
pub fn capacity_type_of(rec: &Recording, group: &str) -> Option<CapacityType> {
    rec.groups.get(group).map(|g| g.capacity_type)
}
