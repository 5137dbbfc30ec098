//! What a run produces: per-policy metrics, the decision log, time series; JSON and a
//! terminal table.

use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// A demand step: from the first pod no node could take until every pod had a node
/// (episodes closer than `sim.episode_merge_s` are one step).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Episode {
    /// First second with an unschedulable pod.
    pub start_s: u64,
    /// First second after it with none.
    pub end_s: u64,
    /// Most pods pending at once.
    pub max_pending: u32,
}

/// One line of the decision log.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LogEntry {
    /// Simulated second.
    pub t_s: u64,
    /// `ScaleUp`, `RevertScaleUp`, `RemoveNode:<kind>`, `SetOverprovisioning`, and the CA
    /// models' `ScaleDown`, `CaFailedScaleUp`, `CaSkipIteration`, `NthDrain`.
    pub kind: String,
    /// ASG.
    pub group: String,
    /// Nodes added (negative: removed).
    pub delta: i64,
    /// Desired capacity after it.
    pub new_target: u32,
    /// Why, in the policy's words.
    pub reason: String,
}

/// One sample of the time series.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SeriesPoint {
    /// Simulated second.
    pub t_s: u64,
    /// Requests per second offered.
    pub demand_rps: f64,
    /// Requests per second the ready pods can serve.
    pub capacity_rps: f64,
    /// Spot instances (launching or running).
    pub nodes_spot: u32,
    /// On-demand instances.
    pub nodes_on_demand: u32,
    /// Instances per zone, in the report's `zones` order.
    pub nodes_by_zone: Vec<u32>,
    /// Unscheduled pods.
    pub pending_pods: u32,
    /// Largest max-min instances per zone within a balance set.
    pub az_skew: u32,
    /// All pods.
    pub pods: u32,
}

/// Percentiles of time-to-capacity over demand steps.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Ttc {
    /// Median seconds.
    pub p50: u64,
    /// 95th percentile seconds (nearest rank).
    pub p95: u64,
    /// Longest seconds.
    pub max: u64,
    /// Demand steps counted.
    pub steps: usize,
}

/// Evictions and the pod-seconds they cost.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Disruptions {
    /// Pods evicted (same as `evictions`).
    pub evictions: u64,
    /// Seconds from each eviction until the replacement pod was Ready (or the run or
    /// the replacement ended): serving capacity the evictions took away.
    pub pod_seconds_lost: u64,
}

/// How long the on-demand nodes bought while spot was short stayed after spot came back.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct OnDemandReturn {
    /// Second the last spot capacity outage of the scenario ended.
    pub spot_returned_s: u64,
    /// On-demand instances at the start of the run (the base the fallback returns to).
    pub base: u32,
    /// Most on-demand instances at any second of the run.
    pub peak: u32,
    /// Seconds after `spot_returned_s` until on-demand was back at `base` (`None`: not
    /// by the end of the run).
    pub back_after_s: Option<u64>,
    /// Seconds of the run after `spot_returned_s` (how long there was to get back).
    pub observed_s: u64,
}

/// Node-hours by market.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct NodeHours {
    /// Spot.
    pub spot: f64,
    /// On-demand.
    pub on_demand: f64,
}

/// Everything measured for one policy.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PolicyReport {
    /// `ours`, `ca-1.33` or `ca-1.30`.
    pub policy: String,
    /// Time from the first unschedulable pod of a demand step until every pod has a node.
    pub time_to_capacity_s: Ttc,
    /// Sum over seconds of unscheduled pods.
    pub pending_pod_seconds: u64,
    /// Requests above what ready pods could serve, over all requests.
    pub unserved_request_fraction: f64,
    /// Instance cost, USD (launch to termination).
    pub cost_usd: f64,
    /// Instance hours by market.
    pub node_hours: NodeHours,
    /// Same as `node_hours.on_demand`.
    pub on_demand_node_hours: f64,
    /// Largest max-min of instances per zone within a balance set, sampled every 10 s
    /// at steady state (see the README).
    pub max_az_skew: u32,
    /// The same over every 10 s sample, transients included.
    pub max_az_skew_any: u32,
    /// 10 s samples taken at steady state.
    pub steady_samples: u64,
    /// Requests served by pods above their service's saturation utilization (default
    /// 85 % of the CPU request), over all requests: served, but slowly.
    pub degraded_request_fraction: f64,
    /// Seconds in which some service's ready pods ran above its HPA target by more than
    /// the HPA tolerance (or it had traffic and no ready pod).
    pub seconds_over_target: u64,
    /// Evictions and what they cost.
    pub disruptions: Disruptions,
    /// Pods evicted (scale-down drains, interruptions, ASG scale-in).
    pub evictions: u64,
    /// `evictions` by cause: `scale-down`, `rebalance`, `drain-back`, `interruption`.
    pub evictions_by_cause: BTreeMap<String, u64>,
    /// Nodes a policy started to remove (scale-down, rebalance, drain-back) less than
    /// 10 min after their launch: flapping.
    pub young_removals: u64,
    /// Requests served (by ready pods, slowly or not), for cost per served request.
    pub served_requests: f64,
    /// Balance sets of the cluster (`ours`' grouping), for the disruption budget.
    pub balance_sets: usize,
    /// The on-demand fallback's way back (`None` when the scenario has no spot outage).
    pub on_demand_return: Option<OnDemandReturn>,
    /// Spot interruption notices.
    pub interruptions: u64,
    /// Scale-ups for pending pods decided while no pod was pending (must stay 0).
    pub scale_ups_without_pending: u64,
    /// Drain-back or rebalance removals started before a node of their replacement was
    /// Ready (must stay 0: replacement first, then drain).
    pub drains_before_replacement_ready: u64,
    /// Pod deletion-cost annotations written or cleared (`ours`' scale-in steering):
    /// the API writes it costs.
    pub deletion_cost_patches: u64,
    /// Placeholder pods (`ours`' headroom) preempted to make room for real pods at once.
    pub preemptions: u64,
    /// What the room placeholders held cost (their share of their nodes' price): part of
    /// `cost_usd`, shown apart.
    pub headroom_cost_usd: f64,
    /// Failed ASG launch attempts.
    pub launch_failures: u64,
    /// Nodes a policy launched that registered and never held a pod, from launch to
    /// termination or the end of the run: scale-ups that bought nothing (initial nodes
    /// not counted).
    pub always_empty_nodes: u64,
    /// Problems with the scenario noticed during the run.
    pub warnings: Vec<String>,
    /// Zones, the order of `series[].nodes_by_zone`.
    pub zones: Vec<String>,
    /// Demand steps.
    pub episodes: Vec<Episode>,
    /// Decision log.
    pub decisions: Vec<LogEntry>,
    /// Time series.
    pub series: Vec<SeriesPoint>,
    /// Every failed launch as AWS recorded it, with the event `ours` received for it
    /// (not in the JSON; for the tests that hold the simulator to what AWS reports).
    #[serde(skip)]
    pub aws_launch_failures: Vec<crate::aws_messages::AwsLaunchFailure>,
    #[serde(skip)]
    pub(crate) pod_seconds_lost: u64,
    #[serde(skip)]
    pub(crate) node_seconds_spot: u64,
    #[serde(skip)]
    pub(crate) node_seconds_on_demand: u64,
}

fn round(v: f64, digits: i32) -> f64 {
    let k = 10f64.powi(digits);
    (v * k).round() / k
}

fn nearest_rank(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

impl PolicyReport {
    pub(crate) fn new(policy: &str) -> Self {
        PolicyReport {
            policy: policy.into(),
            ..PolicyReport::default()
        }
    }

    pub(crate) fn finish(
        &mut self,
        total_requests: f64,
        unserved: f64,
        degraded: f64,
        _duration: u64,
    ) {
        let mut d: Vec<u64> = self.episodes.iter().map(|e| e.end_s - e.start_s).collect();
        d.sort_unstable();
        self.time_to_capacity_s = Ttc {
            p50: nearest_rank(&d, 0.5),
            p95: nearest_rank(&d, 0.95),
            max: d.last().copied().unwrap_or(0),
            steps: d.len(),
        };
        self.served_requests = (total_requests - unserved).max(0.0).round();
        self.unserved_request_fraction = if total_requests > 0.0 {
            round(unserved / total_requests, 6)
        } else {
            0.0
        };
        self.degraded_request_fraction = if total_requests > 0.0 {
            round(degraded / total_requests, 6)
        } else {
            0.0
        };
        self.disruptions = Disruptions {
            evictions: self.evictions,
            pod_seconds_lost: self.pod_seconds_lost,
        };
        self.cost_usd = round(self.cost_usd, 2);
        self.headroom_cost_usd = round(self.headroom_cost_usd, 2);
        self.node_hours = NodeHours {
            spot: round(self.node_seconds_spot as f64 / 3600.0, 3),
            on_demand: round(self.node_seconds_on_demand as f64 / 3600.0, 3),
        };
        self.on_demand_node_hours = self.node_hours.on_demand;
        for p in &mut self.series {
            p.demand_rps = round(p.demand_rps, 3);
            p.capacity_rps = round(p.capacity_rps, 3);
        }
    }

    /// On-demand instances at second `t` (from the series; the sample at or before `t`).
    pub fn on_demand_nodes_at(&self, t: u64) -> Option<u32> {
        self.series
            .iter()
            .take_while(|p| p.t_s <= t)
            .last()
            .map(|p| p.nodes_on_demand)
    }
}

/// The whole output of `run`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Its story.
    pub description: String,
    /// Seed used.
    pub seed: u64,
    /// Simulated seconds.
    pub duration_s: u64,
    /// Where the traffic came from.
    pub trace: String,
    /// Per policy, by name.
    pub policies: BTreeMap<String, PolicyReport>,
}

impl Report {
    /// Pretty JSON (same inputs and seed give the same bytes).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("reports serialize") + "\n"
    }

    /// The comparison table for the terminal.
    pub fn table(&self) -> String {
        let names: Vec<&String> = self.policies.keys().collect();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "scenario {} ({} s simulated, seed {}, trace {})",
            self.scenario, self.duration_s, self.seed, self.trace
        );
        let _ = write!(out, "{:<34}", "metric");
        for n in &names {
            let _ = write!(out, "{n:>16}");
        }
        out.push('\n');
        type Row = (&'static str, fn(&PolicyReport) -> String);
        let rows: [Row; 17] = [
            ("time to capacity p50 (s)", |r| {
                r.time_to_capacity_s.p50.to_string()
            }),
            ("time to capacity p95 (s)", |r| {
                r.time_to_capacity_s.p95.to_string()
            }),
            ("time to capacity max (s)", |r| {
                r.time_to_capacity_s.max.to_string()
            }),
            ("demand steps", |r| r.time_to_capacity_s.steps.to_string()),
            ("pending pod-seconds", |r| r.pending_pod_seconds.to_string()),
            ("unserved requests (%)", |r| {
                format!("{:.3}", r.unserved_request_fraction * 100.0)
            }),
            ("degraded requests (%)", |r| {
                format!("{:.3}", r.degraded_request_fraction * 100.0)
            }),
            ("seconds over HPA target", |r| {
                r.seconds_over_target.to_string()
            }),
            ("cost (USD)", |r| format!("{:.2}", r.cost_usd)),
            ("spot node-hours", |r| format!("{:.1}", r.node_hours.spot)),
            ("on-demand node-hours", |r| {
                format!("{:.1}", r.node_hours.on_demand)
            }),
            ("max AZ skew, steady (nodes)", |r| r.max_az_skew.to_string()),
            ("max AZ skew, any sample (nodes)", |r| {
                r.max_az_skew_any.to_string()
            }),
            ("evictions", |r| r.evictions.to_string()),
            ("pod-seconds lost to evictions", |r| {
                r.disruptions.pod_seconds_lost.to_string()
            }),
            ("failed launches", |r| r.launch_failures.to_string()),
            ("pod deletion-cost patches", |r| {
                r.deletion_cost_patches.to_string()
            }),
        ];
        for (label, f) in rows {
            let _ = write!(out, "{label:<34}");
            for n in &names {
                let _ = write!(out, "{:>16}", f(&self.policies[*n]));
            }
            out.push('\n');
        }
        for (n, r) in &self.policies {
            for w in &r.warnings {
                let _ = writeln!(out, "warning ({n}): {w}");
            }
        }
        out
    }
}
