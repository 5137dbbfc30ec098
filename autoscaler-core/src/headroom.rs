//! Headroom that beats node boot time.
//!
//! Pods wait for a node's boot (one to four minutes) when a scale-up starts only once
//! they are pending. Operators keep spare room with low-priority placeholder pods
//! (kube-scheduler preempts them for real pods in seconds, and the placeholders, pending
//! again, bring the next node). A fixed placeholder count is paid for all day; this sizes
//! it from how fast demand grows: the CPU requested by real pods over the last
//! `growth_window`, times the boot time measured on this cluster's own scale-ups, held
//! for `hold` after the growth stops, plus scheduled windows for known events, capped at
//! a share of the cluster. At rest (no growth, no window) it is zero and costs nothing.

use crate::decision::{Decision, ScaleUpCause};
use crate::snapshot::ClusterSnapshot;
use crate::time::duration_secs;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

/// A known event (a kick-off, an ad break): extra headroom from `start` to `end`, over
/// the demand of when it was asked for (one boot time before `start`). Real pods that
/// arrive during the window use the room up; it is not renewed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadroomWindow {
    /// Seconds since the engine's epoch (Unix time in the controller, the replay's
    /// start in the simulator) when the extra room must be ready.
    pub start_s: u64,
    /// Seconds since the epoch when it is no longer needed.
    pub end_s: u64,
    /// Extra CPU to keep free, in millicores.
    pub cpu_millis: u64,
}

/// How much spare room to keep ahead of demand.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeadroomConfig {
    /// Size placeholder replicas from demand growth. Off by default: it needs the
    /// placeholder Deployment, and it trades cost for time (see the simulator README).
    pub enabled: bool,
    /// Growth is measured over this window.
    #[serde(with = "duration_secs")]
    pub growth_window: Duration,
    /// After growth stops, the room stays this long (the next wave of a peak).
    #[serde(with = "duration_secs")]
    pub hold: Duration,
    /// Boot time assumed until this cluster's own scale-ups have been measured: from the
    /// scale-up decision to the node Ready.
    #[serde(with = "duration_secs")]
    pub initial_boot_time: Duration,
    /// CPU request of one placeholder pod, millicores (the Deployment's own request).
    pub placeholder_cpu_millis: u64,
    /// Headroom never exceeds this share of the schedulable CPU.
    pub max_fraction: f64,
    /// Pods below this priority are placeholders (or other expendable filler), not demand.
    pub demand_priority_floor: i32,
    /// Known events.
    pub windows: Vec<HeadroomWindow>,
}

impl Default for HeadroomConfig {
    fn default() -> Self {
        HeadroomConfig {
            enabled: false,
            growth_window: Duration::from_secs(120),
            hold: Duration::from_secs(120),
            initial_boot_time: Duration::from_secs(120),
            placeholder_cpu_millis: 1000,
            max_fraction: 0.1,
            demand_priority_floor: 0,
            windows: Vec::new(),
        }
    }
}

/// Boot samples kept (the estimate is their 90th percentile).
const BOOT_SAMPLES: usize = 20;
/// Scale-ups remembered per group while their nodes boot.
const LAUNCHES_PER_GROUP: usize = 256;

/// What headroom sizing remembers between rounds.
#[derive(Clone, Debug, Default)]
pub(crate) struct HeadroomState {
    /// Requested CPU of real pods (millicores), sampled every round within `growth_window`.
    demand: VecDeque<(Timestamp, u64)>,
    /// Headroom sized each round within `hold` (millicores).
    recent: VecDeque<(Timestamp, u64)>,
    /// Scale-up decisions per group whose nodes are not Ready yet, oldest first.
    launches: BTreeMap<String, VecDeque<Timestamp>>,
    /// Ready nodes seen so far (`None` until the first round: those are not measured).
    seen_ready: Option<BTreeSet<String>>,
    /// Measured boot times, newest last.
    boots: VecDeque<Duration>,
    /// Real demand (millicores) when each active window's room was first asked for.
    window_base: BTreeMap<usize, u64>,
}

/// The headroom of one round, with the numbers behind it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Sized {
    /// Placeholder replicas.
    pub(crate) replicas: u32,
    /// Why, in words.
    pub(crate) reason: String,
}

impl HeadroomState {
    /// Remembers this round's scale-ups for pending pods (their nodes' boot is measured).
    pub(crate) fn note_scale_ups(&mut self, actions: &[Decision], now: Timestamp) {
        for a in actions {
            if let Decision::ScaleUp {
                group,
                delta,
                cause: ScaleUpCause::PendingPods | ScaleUpCause::ZoneBalance,
                ..
            } = a
            {
                let q = self.launches.entry(group.clone()).or_default();
                for _ in 0..*delta {
                    if q.len() == LAUNCHES_PER_GROUP {
                        q.pop_front();
                    }
                    q.push_back(now);
                }
            }
        }
    }

    /// Measures the nodes that became Ready since the last round against the oldest
    /// scale-up of their group.
    fn measure_boots(&mut self, snap: &ClusterSnapshot, now: Timestamp) {
        let ready: BTreeSet<&str> = snap
            .nodes()
            .iter()
            .filter(|n| n.ready)
            .map(|n| n.name.as_str())
            .collect();
        let Some(seen) = self.seen_ready.as_mut() else {
            self.seen_ready = Some(ready.iter().map(|n| n.to_string()).collect());
            return;
        };
        for n in snap.nodes().iter().filter(|n| n.ready) {
            if seen.contains(&n.name) {
                continue;
            }
            seen.insert(n.name.clone());
            let Some(q) = n.group.as_ref().and_then(|g| self.launches.get_mut(g)) else {
                continue;
            };
            // A node created before the decision is not its launch.
            if let Some(at) = q.front().copied().filter(|at| *at <= n.created_at + SKEW) {
                q.pop_front();
                if self.boots.len() == BOOT_SAMPLES {
                    self.boots.pop_front();
                }
                self.boots.push_back(now.since(at));
            }
        }
        seen.retain(|n| ready.contains(n.as_str()));
        // Launches that never became nodes (failed, reverted) stop counting after an hour.
        for q in self.launches.values_mut() {
            while q.front().is_some_and(|at| now.since(*at) > STALE_LAUNCH) {
                q.pop_front();
            }
        }
        self.launches.retain(|_, q| !q.is_empty());
    }

    /// The boot time to plan with: the 90th percentile of the measured ones.
    pub(crate) fn boot_time(&self, config: &HeadroomConfig) -> Duration {
        if self.boots.is_empty() {
            return config.initial_boot_time;
        }
        let mut b: Vec<Duration> = self.boots.iter().copied().collect();
        b.sort_unstable();
        b[(b.len() * 9).div_ceil(10) - 1]
    }

    /// Sizes this round's headroom. `schedulable_cpu_millis` is the CPU of the nodes
    /// pods can land on.
    pub(crate) fn size(
        &mut self,
        config: &HeadroomConfig,
        snap: &ClusterSnapshot,
        now: Timestamp,
        schedulable_cpu_millis: u64,
    ) -> Sized {
        self.measure_boots(snap, now);
        let demand: u64 = snap
            .pods()
            .iter()
            .filter(|p| p.spec.priority >= config.demand_priority_floor)
            .map(|p| p.spec.requests.cpu_millis)
            .sum();
        self.demand.push_back((now, demand));
        while self
            .demand
            .front()
            .is_some_and(|(at, _)| now.since(*at) > config.growth_window)
        {
            self.demand.pop_front();
        }
        let (first_at, first) = self.demand.front().copied().unwrap_or((now, demand));
        let span = now.since(first_at).as_secs_f64();
        // Growth per second over the window; a window shorter than 10 s says nothing yet.
        let rate = if span >= 10.0 {
            demand.saturating_sub(first) as f64 / span
        } else {
            0.0
        };
        let boot = self.boot_time(config);
        let from_growth = (rate * boot.as_secs_f64()).ceil() as u64;
        self.recent.push_back((now, from_growth));
        while self
            .recent
            .front()
            .is_some_and(|(at, _)| now.since(*at) > config.hold)
        {
            self.recent.pop_front();
        }
        let held = self.recent.iter().map(|(_, c)| *c).max().unwrap_or(0);
        let now_s = now.as_millis() / 1000;
        // A window's room must be there when it starts: begin one boot time earlier.
        let lead = boot.as_secs();
        let mut scheduled = 0u64;
        for (i, w) in config.windows.iter().enumerate() {
            if now_s + lead >= w.start_s && now_s < w.end_s {
                // Real pods that arrived since the room was asked for use it up: it is not
                // renewed, since a preempted placeholder would bring yet another node that
                // the event did not need.
                let base = *self.window_base.entry(i).or_insert(demand);
                scheduled += w.cpu_millis.saturating_sub(demand.saturating_sub(base));
            } else {
                self.window_base.remove(&i);
            }
        }
        let cap = (schedulable_cpu_millis as f64 * config.max_fraction.clamp(0.0, 1.0)) as u64;
        let cpu = (held + scheduled).min(cap);
        let per = config.placeholder_cpu_millis.max(1);
        let replicas = u32::try_from(cpu.div_ceil(per)).unwrap_or(u32::MAX);
        Sized {
            replicas,
            reason: format!(
                "headroom {} CPU: demand grew {:.1} CPU/min over {}s, boot {}s{}{}",
                cpu as f64 / 1000.0,
                rate * 60.0 / 1000.0,
                span as u64,
                boot.as_secs(),
                if scheduled > 0 {
                    format!(", scheduled window +{} CPU", scheduled as f64 / 1000.0)
                } else {
                    String::new()
                },
                if held + scheduled > cap {
                    format!(
                        ", capped at {:.0}% of the cluster",
                        config.max_fraction * 100.0
                    )
                } else {
                    String::new()
                },
            ),
        }
    }
}

/// Clock skew tolerated between the engine's `now` and a node's creation time.
const SKEW: Duration = Duration::from_secs(5);
/// A scale-up whose node has not appeared after this long is not waited for.
const STALE_LAUNCH: Duration = Duration::from_secs(3600);
