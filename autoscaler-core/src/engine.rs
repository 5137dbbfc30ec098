//! The engine: a state machine fed with events and snapshots, returning decisions.
//! It never reads a clock or a random source: `now` and the seed are inputs, so the
//! same history gives the same decisions.

use crate::balance::{skew, BalanceSets};
use crate::config::{AutoscalerConfig, ConfigError};
use crate::cooloff::{CoolOffs, PoolKey};
use crate::decision::RemovalKind;
use crate::decision::{
    Decision, Decisions, GroupStatus, NodeOutcome, PodDeletionCost, PodOutcome, PodVerdict,
    ScaleUpCause, Status,
};
use crate::disruption::{DisruptionState, Work};
use crate::events::InterruptionKind;
use crate::events::{Event, LaunchFailureReason};
use crate::expander::{self, ExpanderError, OptionScore, PriorityConfig};
use crate::hedge::{self, Alternative, Share, ShareKind, SpotShortage};
use crate::index::{GroupIdx, NodeIdx, PodIdx};
use crate::model::CapacityType;
use crate::overprovisioning::Overprovisioning;
use crate::predicates::{full_fit, AffinityState, SimNode, SpreadState};
use crate::scaleup::{
    classify, depends_on_zone, estimate, explain_misfit, place_class, zone_open, Estimate,
    GroupPlan, PodClass, Unavailable, ZoneGuess, DEFAULT_MAX_PODS,
};
use crate::snapshot::ClusterSnapshot;
use crate::time::{human_duration, Timestamp};
use std::collections::BTreeMap;
use std::time::Duration;

/// How long a target we set is trusted over a snapshot that does not show it yet (the
/// adapter's ASG cache may lag one refresh behind).
const TARGET_OVERRIDE_TTL: Duration = Duration::from_secs(300);

/// How long an interruption notice without a deadline waits for its instance's Node.
const PENDING_INTERRUPTION_TTL: Duration = Duration::from_secs(600);

/// Notices kept for instances whose Node has not registered yet, at most.
const MAX_PENDING_INTERRUPTIONS: usize = 10_000;

#[derive(Clone, Debug, Default)]
pub(crate) struct GroupState {
    /// A target we decided that the snapshot may not show yet.
    target_override: Option<(u32, Timestamp)>,
    /// Since when nodes have been awaited without one registering.
    pub(crate) waiting_since: Option<Timestamp>,
    last_registered: u32,
    /// A launch failure asks to cancel what is in flight.
    revert_requested: Option<String>,
    /// The group runs both markets (as of the last round), so a capacity failure is
    /// its spot part's.
    mixed: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct PendingMarketFailure {
    group: String,
    zone: Option<String>,
    instance_type: Option<String>,
    reason: LaunchFailureReason,
    at: Timestamp,
}

/// What the round has decided and concluded so far; each phase adds to it.
#[derive(Default)]
struct Tally {
    actions: Vec<Decision>,
    /// Interrupted nodes (snapshot index) and why, drained this round.
    interrupted: BTreeMap<NodeIdx, String>,
    /// Per group: the target after this round's decisions.
    targets: Vec<u32>,
    /// Per group: registered nodes.
    registered: Vec<u32>,
    /// Per group: the state in words, for the status.
    whys: Vec<String>,
    /// Per pending pod (snapshot index): what the round concluded.
    outcomes: BTreeMap<PodIdx, PodVerdict>,
    node_outcomes: Vec<NodeOutcome>,
    /// Pods considered for scale-up, and those nothing could help.
    considered: usize,
    unhelpable: usize,
    /// Pod deletion-cost changes scale-down asked for.
    deletion_costs: Vec<PodDeletionCost>,
}

/// What the round plans with and does not change once the targets are settled.
struct Groundwork {
    plans: Vec<Result<GroupPlan, Unavailable>>,
    sets: BalanceSets,
}

/// One group's settled target.
struct SettledGroup {
    target: u32,
    registered: u32,
    why: String,
    /// Cooled off just now for a provisioning timeout (its plan must be rebuilt).
    timed_out: bool,
}

/// The simulated cluster and the pods still without a place in it.
struct Simulation<'a> {
    /// Real nodes first (same index as the snapshot), then upcoming and planned ones.
    nodes: Vec<SimNode<'a>>,
    /// Pod classes still unplaced, with the spread state of each.
    remaining: Vec<PodClass>,
    spreads: Vec<SpreadState>,
}

impl<'a> Simulation<'a> {
    /// Takes in a chosen expansion: its nodes join the cluster (keeping their pods for
    /// later anti-affinity checks) and the pods it helps leave `remaining`.
    fn absorb(&mut self, est: Estimate<'a>) {
        let helped: rustc_hash::FxHashSet<PodIdx> = est.helped.iter().copied().collect();
        if self.spreads.iter().any(|s| !s.is_empty()) {
            let class_of: rustc_hash::FxHashMap<PodIdx, usize> = self
                .remaining
                .iter()
                .enumerate()
                .flat_map(|(ri, c)| c.pods.iter().map(move |&p| (p, ri)))
                .collect();
            for node in &est.nodes {
                for p in &node.placed {
                    if let Some(&ri) = class_of.get(p) {
                        self.spreads[ri].record(node);
                    }
                }
            }
        }
        self.nodes.extend(est.nodes);
        let remaining = std::mem::take(&mut self.remaining);
        let spreads = std::mem::take(&mut self.spreads);
        for (c, spread) in remaining.into_iter().zip(spreads) {
            let pods: Vec<PodIdx> = c.pods.into_iter().filter(|p| !helped.contains(p)).collect();
            if !pods.is_empty() {
                self.remaining.push(PodClass { rep: pods[0], pods });
                self.spreads.push(spread);
            }
        }
    }
}

/// The candidates of one expansion.
struct Expansion<'a> {
    iteration: u64,
    candidates: Vec<(GroupIdx, Estimate<'a>)>,
}

/// Free capacity first: pending pods placed on real and upcoming nodes; the rest stay
/// in `sim.remaining`, by class.
fn place_on_free_capacity(
    snap: &ClusterSnapshot,
    pending: &[PodIdx],
    tally: &mut Tally,
    sim: &mut Simulation<'_>,
) {
    let groups = snap.groups();
    for class in &classify(snap, pending) {
        let rep = &snap.pods()[class.rep];
        let mut spread = SpreadState::build(rep, &sim.nodes, snap);
        let mut placed: Vec<(PodIdx, usize)> = Vec::new();
        let left = place_class(class, &mut sim.nodes, snap, &mut spread, |p, k| {
            placed.push((p, k))
        });
        for (p, k) in placed {
            let verdict = match sim.nodes[k].existing {
                Some(ni) => PodVerdict::FitsExistingNode {
                    node: snap.nodes()[ni].name.clone(),
                },
                None => PodVerdict::WaitsForUpcomingNode {
                    group: groups[sim.nodes[k].group.unwrap_or_default()].name.clone(),
                },
            };
            tally.outcomes.insert(p, verdict);
        }
        if !left.is_empty() {
            sim.remaining.push(PodClass {
                rep: left[0],
                pods: left,
            });
            sim.spreads.push(spread);
        }
    }
}

/// Last resort for pods nothing guaranteed could take: a node on its way whose zone AWS
/// has not shown yet may be assumed in a zone where it serves them
/// ([`ZoneGuess::LastResort`]), so they wait for it instead of ordering another.
fn wait_on_upcoming_guessing_zone<'a>(
    snap: &ClusterSnapshot,
    tally: &mut Tally,
    sim: &mut Simulation<'a>,
) {
    let groups = snap.groups();
    let pods = snap.pods();
    let remaining = std::mem::take(&mut sim.remaining);
    let spreads = std::mem::take(&mut sim.spreads);
    // Nodes this pass has guessed a zone for: a later pod of that zone counts on the
    // same node while it has room, rather than claiming (and narrowing) another one.
    let mut guessed: Vec<usize> = Vec::new();
    for (class, mut spread) in remaining.into_iter().zip(spreads) {
        let rep = &pods[class.rep];
        let mut left = Vec::new();
        if depends_on_zone(rep) {
            let mut affinity = AffinityState::build_with_placed(rep, snap, &sim.nodes);
            for (i, &p) in class.pods.iter().enumerate() {
                let pod = &pods[p];
                let fits = |n: &SimNode<'a>| full_fit(pod, n, snap, &spread, &affinity).is_ok();
                // Nodes guessed for earlier pods first, then those whose zone is open;
                // the others were tried without guessing.
                let found = guessed
                    .iter()
                    .copied()
                    .find(|&k| fits(&sim.nodes[k]))
                    .or_else(|| {
                        (0..sim.nodes.len()).find(|&k| {
                            sim.nodes[k].existing.is_none()
                                && zone_open(sim.nodes[k].variants)
                                && ZoneGuess::LastResort.fits(&mut sim.nodes[k], fits)
                        })
                    });
                match found {
                    Some(k) => {
                        if !guessed.contains(&k) && !zone_open(sim.nodes[k].variants) {
                            guessed.push(k);
                        }
                        sim.nodes[k].place(p, &pod.spec.requests);
                        spread.record(&sim.nodes[k]);
                        affinity.record(rep, pod, p, &sim.nodes[k]);
                        let group = groups[sim.nodes[k].group.unwrap_or_default()].name.clone();
                        tally
                            .outcomes
                            .insert(p, PodVerdict::WaitsForUpcomingNode { group });
                    }
                    // Nothing changed, so the identical pods left cannot fit either.
                    None => {
                        left = class.pods[i..].to_vec();
                        break;
                    }
                }
            }
        } else {
            left = class.pods;
        }
        if !left.is_empty() {
            sim.remaining.push(PodClass {
                rep: left[0],
                pods: left,
            });
            sim.spreads.push(spread);
        }
    }
}

/// The decision engine. Feed it events with [`Autoscaler::handle_event`], then call
/// [`Autoscaler::decide`] with a snapshot once per round.
#[derive(Clone, Debug)]
pub struct Autoscaler {
    pub(crate) config: AutoscalerConfig,
    pub(crate) priorities: Option<PriorityConfig>,
    pub(crate) priority_error: Option<String>,
    pub(crate) groups: BTreeMap<String, GroupState>,
    pub(crate) cool_offs: CoolOffs,
    pub(crate) market_failures: Vec<PendingMarketFailure>,
    pub(crate) interruptions: Vec<(Event, Timestamp)>,
    /// Nodes an interruption notice asked to drain, with the reason and until when the
    /// notice holds: a drain that fails (the API server down, a pod slow to go) is
    /// started again, since the notice is given once.
    pub(crate) interrupted_nodes: BTreeMap<String, (String, Timestamp)>,
    /// Last scale-up per group (for `scale-down-delay-after-add`).
    pub(crate) last_scale_up: BTreeMap<String, Timestamp>,
    /// What disruption planning remembers between rounds.
    pub(crate) disruption: DisruptionState,
    /// Capacity failures (group, zone, when) whose market the next round resolves.
    pub(crate) capacity_shortages: Vec<(String, Option<String>, Timestamp)>,
    /// The latest spot capacity failure: scale-ups are hedged for a while after it.
    pub(crate) spot_shortage: Option<SpotShortage>,
    /// Spot capacity failures (group, when) within the hedge window: how many spot
    /// families are short at once.
    pub(crate) spot_failures: Vec<(String, Timestamp)>,
}

impl Autoscaler {
    /// An engine with a validated configuration.
    pub fn new(config: AutoscalerConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Autoscaler {
            config,
            priorities: None,
            priority_error: None,
            groups: BTreeMap::new(),
            cool_offs: CoolOffs::default(),
            market_failures: Vec::new(),
            interruptions: Vec::new(),
            interrupted_nodes: BTreeMap::new(),
            last_scale_up: BTreeMap::new(),
            disruption: DisruptionState::default(),
            capacity_shortages: Vec::new(),
            spot_shortage: None,
            spot_failures: Vec::new(),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &AutoscalerConfig {
        &self.config
    }

    /// Replaces the configuration; an invalid one is refused and the current one stays.
    pub fn set_config(&mut self, config: AutoscalerConfig) -> Result<(), ConfigError> {
        config.validate()?;
        self.config = config;
        Ok(())
    }

    /// Loads the priority expander's `priorities` YAML. On error the last good
    /// configuration stays in force and the error shows in the status until fixed.
    pub fn set_priorities(&mut self, yaml: &str) -> Result<(), ExpanderError> {
        match PriorityConfig::parse(yaml) {
            Ok(cfg) => {
                self.priorities = Some(cfg);
                self.priority_error = None;
                Ok(())
            }
            Err(e) => {
                self.priority_error = Some(e.to_string());
                Err(e)
            }
        }
    }

    /// Forgets the priority configuration (the ConfigMap was deleted): every group passes.
    pub fn clear_priorities(&mut self) {
        self.priorities = None;
        self.priority_error = None;
    }

    /// Sets (or clears, with `None`) the overprovisioning rule.
    pub fn set_overprovisioning(&mut self, rule: Option<Overprovisioning>) {
        self.disruption.overprovisioning = rule;
    }

    /// The cool-offs, active or not.
    pub fn cool_offs(&self) -> &CoolOffs {
        &self.cool_offs
    }

    /// The adapter could not carry out a `ScaleUp`/`RevertScaleUp` of `group` (the call
    /// failed). The engine stops expecting the target it decided, so the next round plans
    /// from the group's real size instead of waiting up to 5 min for nodes never asked for.
    pub fn target_not_applied(&mut self, group: &str) {
        if let Some(st) = self.groups.get_mut(group) {
            st.target_override = None;
            st.waiting_since = None;
        }
    }

    /// Takes in one event. Its effects (cool-offs, reverts, re-planning) show in the next
    /// [`Autoscaler::decide`], so handle every event of a round before deciding.
    pub fn handle_event(&mut self, event: Event, now: Timestamp) {
        match event {
            Event::LaunchFailed {
                group,
                zone,
                instance_type,
                reason,
            } => {
                let mut key = PoolKey {
                    group: Some(group.clone()),
                    capacity_type: None,
                    zone: zone.clone(),
                    instance_type: instance_type.clone(),
                };
                if self.groups.get(&group).is_some_and(|s| s.mixed) {
                    key.capacity_type = self.failed_market_of_mixed(&key, &reason, now);
                }
                let until = self.cool_offs.record_failure(
                    key.clone(),
                    reason.clone(),
                    now,
                    &self.config.cool_off,
                );
                if reason.is_capacity_shortage() {
                    self.capacity_shortages
                        .push((group.clone(), zone.clone(), now));
                }
                if reason.is_pool_wide() && self.config.pool_wide_cool_off {
                    // The market is only known with the group's definition: resolved in decide.
                    self.market_failures.push(PendingMarketFailure {
                        group: group.clone(),
                        zone,
                        instance_type,
                        reason: reason.clone(),
                        at: now,
                    });
                }
                self.groups.entry(group).or_default().revert_requested = Some(format!(
                    "{reason} for pool {key}; pool cooled off for {} (until {until})",
                    human_duration(until.since(now))
                ));
            }
            interruption @ Event::InstanceInterruption { .. } => {
                // Recorded for the round; acted on by the disruption logic.
                self.interruptions.push((interruption, now));
            }
            Event::NodeRemovalFailed { node, .. } => {
                self.disruption.removing.remove(&node);
                self.disruption.removal_failures.push((node, now));
            }
            Event::PoolUnavailable {
                capacity_type,
                zone,
                instance_type,
                reason,
            } => {
                let key = PoolKey {
                    group: None,
                    capacity_type: Some(capacity_type),
                    zone,
                    instance_type,
                };
                self.cool_offs
                    .record_failure(key, reason, now, &self.config.cool_off);
            }
        }
    }

    /// The market a mixed group's launch failure cools off. The event does not say;
    /// AWS's capacity errors are the spot part's (the on-demand part still launches),
    /// unless the spot part is already out from an earlier outage: then on-demand failed
    /// too and the whole group cools off. Other failures (template, IAM) hit both.
    fn failed_market_of_mixed(
        &self,
        key: &PoolKey,
        reason: &LaunchFailureReason,
        now: Timestamp,
    ) -> Option<CapacityType> {
        if !reason.is_capacity_shortage() {
            return None;
        }
        let spot = PoolKey {
            capacity_type: Some(CapacityType::Spot),
            ..key.clone()
        };
        let spot_already_out = self.cool_offs.active(now).any(|(k, c)| {
            *k == spot && now.since(c.last_failure) >= self.config.cool_off.initial / 2
        });
        (!spot_already_out).then_some(CapacityType::Spot)
    }

    fn resolve_market_failures(&mut self, snap: &ClusterSnapshot) {
        for (group, zone, at) in std::mem::take(&mut self.capacity_shortages) {
            let spot = snap
                .group(&group)
                .is_some_and(|g| g.capacity_type == CapacityType::Spot || g.mixed().is_some());
            if spot {
                self.spot_failures.push((group.clone(), at));
            }
            if spot && self.spot_shortage.as_ref().is_none_or(|s| s.at <= at) {
                self.spot_shortage = Some(SpotShortage { at, group, zone });
            }
        }
        if let Some(latest) = self.spot_failures.iter().map(|(_, at)| *at).max() {
            let window = self.config.hedge.window;
            self.spot_failures
                .retain(|(_, at)| latest.since(*at) <= window);
        }
        for f in std::mem::take(&mut self.market_failures) {
            let Some(group) = snap.group(&f.group) else {
                continue;
            };
            let key = match f.reason {
                LaunchFailureReason::MaxSpotInstanceCountExceeded => PoolKey {
                    group: None,
                    capacity_type: Some(CapacityType::Spot),
                    zone: None,
                    instance_type: None,
                },
                LaunchFailureReason::VcpuLimitExceeded
                | LaunchFailureReason::InstanceLimitExceeded
                    if f.instance_type.is_some() =>
                {
                    PoolKey {
                        group: None,
                        capacity_type: Some(group.capacity_type),
                        zone: None,
                        instance_type: f.instance_type,
                    }
                }
                LaunchFailureReason::InsufficientInstanceCapacity
                | LaunchFailureReason::UnfulfillableCapacity
                    if f.instance_type.is_some() =>
                {
                    PoolKey {
                        group: None,
                        capacity_type: Some(group.capacity_type),
                        zone: f.zone,
                        instance_type: f.instance_type,
                    }
                }
                LaunchFailureReason::InsufficientInstanceCapacity
                | LaunchFailureReason::UnfulfillableCapacity => {
                    // AWS's spot capacity errors name the zone (the activity's details)
                    // but no type: the request covered every type the group launches, so
                    // each of those pools in that zone is short, for every group.
                    let zone = f.zone.or_else(|| match group.zones.as_slice() {
                        [only] => Some(only.clone()),
                        _ => None,
                    });
                    let Some(zone) = zone else { continue };
                    let capacity_type = group.capacity_type;
                    let types: Vec<String> = group
                        .instance_types
                        .iter()
                        .map(|t| t.name.clone())
                        .collect();
                    for instance_type in types {
                        self.cool_offs.record_failure(
                            PoolKey {
                                group: None,
                                capacity_type: Some(capacity_type),
                                zone: Some(zone.clone()),
                                instance_type: Some(instance_type),
                            },
                            f.reason.clone(),
                            f.at,
                            &self.config.cool_off,
                        );
                    }
                    continue;
                }
                _ => continue,
            };
            self.cool_offs
                .record_failure(key, f.reason, f.at, &self.config.cool_off);
        }
    }

    /// One decision round over `snap` at `now`, phase by phase (each phase a method
    /// below, in this order).
    pub fn decide(&mut self, snap: &ClusterSnapshot, now: Timestamp) -> Decisions {
        let mut tally = self.begin_round(snap, now);
        let ground = self.settle_targets(snap, now, &mut tally);
        let mut sim = Simulation {
            nodes: self.simulated_cluster(snap, now, &ground, &tally),
            remaining: Vec::new(),
            spreads: Vec::new(),
        };
        let pending = self.pending_pods(snap, now, &mut tally);
        tally.considered = pending.len();
        place_on_free_capacity(snap, &pending, &mut tally, &mut sim);
        let limits = self.scale_up(snap, now, &ground, &mut tally, &mut sim);
        self.explain_unhelped(snap, &ground, &mut tally, &sim, &limits);
        self.disrupt(snap, now, &ground, &mut tally, &mut sim);
        self.finish_round(snap, now, &ground, tally)
    }

    /// Housekeeping and interruptions: pending failures resolved, stale removals and
    /// replacements dropped, interrupted nodes drained now (their pods re-planned).
    fn begin_round(&mut self, snap: &ClusterSnapshot, now: Timestamp) -> Tally {
        self.resolve_market_failures(snap);
        self.cool_offs.prune(now, &self.config.cool_off);
        let d = &mut self.disruption;
        let mut failed = Vec::new();
        for (node, at) in std::mem::take(&mut d.removal_failures) {
            failed.push(node.clone());
            if let Some(g) = snap
                .node_index(&node)
                .and_then(|ni| snap.nodes()[ni].group.clone())
            {
                d.last_removal_failure.insert(g, at);
            }
        }
        d.removing.retain(|name, f| {
            snap.node_index(name).is_some() && now.since(f.at) < Duration::from_secs(3600)
        });
        d.replacements
            .retain(|name, _| snap.node_index(name).is_some());
        let interrupted = self.take_interruptions(snap, now, &failed);
        let mut actions = Vec::new();
        let d = &mut self.disruption;
        for (&ni, reason) in &interrupted {
            let n = &snap.nodes()[ni];
            if d.removing.contains_key(&n.name) {
                continue;
            }
            let drain = snap
                .pods_on_node(ni)
                .iter()
                .any(|&p| !snap.pods()[p].is_daemon_or_mirror());
            let group = n.group.clone().unwrap_or_default();
            let kind = RemovalKind::Interruption;
            actions.push(d.decide_removal(&n.name, group, kind, drain, reason.clone(), now));
            d.replacements.remove(&n.name);
        }
        Tally {
            actions,
            interrupted,
            ..Tally::default()
        }
    }

    /// Plans (what a new node of each group looks like given the cool-offs) and
    /// targets: in-flight nodes, reverts after launch failures, provisioning timeouts.
    fn settle_targets(
        &mut self,
        snap: &ClusterSnapshot,
        now: Timestamp,
        tally: &mut Tally,
    ) -> Groundwork {
        let groups = snap.groups();
        let plans: Vec<Result<GroupPlan, Unavailable>> = snap
            .group_indexes()
            .zip(groups)
            .map(|(gi, g)| GroupPlan::build(gi, g, snap, &self.cool_offs, now))
            .collect();
        // Groups cooled off just now for a provisioning timeout need a fresh plan.
        let mut timed_out = vec![false; groups.len()];
        for gi in snap.group_indexes() {
            let settled = self.settle_group(snap, now, gi, &plans[gi], tally);
            timed_out[gi] = settled.timed_out;
            tally.targets.push(settled.target);
            tally.registered.push(settled.registered);
            tally.whys.push(settled.why);
        }
        let plans = plans
            .into_iter()
            .zip(snap.group_indexes())
            .map(|(p, gi)| {
                let mut p = if timed_out[gi] {
                    GroupPlan::build(gi, &groups[gi], snap, &self.cool_offs, now)
                } else {
                    p
                };
                if let Ok(plan) = &mut p {
                    plan.launch_from(tally.targets[gi]);
                }
                p
            })
            .collect();
        Groundwork {
            plans,
            sets: BalanceSets::build(groups, &self.config),
        }
    }

    /// One group's target this round, reverting what a failure or a timeout cancelled.
    fn settle_group(
        &mut self,
        snap: &ClusterSnapshot,
        now: Timestamp,
        gi: GroupIdx,
        plan: &Result<GroupPlan, Unavailable>,
        tally: &mut Tally,
    ) -> SettledGroup {
        let g = &snap.groups()[gi];
        let registered = snap.nodes_of_group(gi).len() as u32;
        let st = self.groups.entry(g.name.clone()).or_default();
        st.mixed = g.mixed().is_some();
        if let Some((t, at)) = st.target_override {
            if g.target_size == t || now.since(at) > TARGET_OVERRIDE_TTL {
                st.target_override = None;
            }
        }
        let mut target = st.target_override.map_or(g.target_size, |(t, _)| t);
        if registered > st.last_registered {
            st.waiting_since = Some(now);
        }
        st.last_registered = registered;
        let in_flight = target.saturating_sub(registered);
        if in_flight == 0 {
            st.waiting_since = None;
        } else if st.waiting_since.is_none() {
            st.waiting_since = Some(now);
        }
        let mut why = String::from("healthy");
        let mut revert: Option<(u32, String)> = None;
        let mut timed_out = false;
        let keep = g.min_size.max(registered);
        if let Some(reason) = st.revert_requested.take() {
            let launched = g.current_instances.unwrap_or(registered).max(registered);
            revert = Some((g.min_size.max(launched), reason));
        } else if in_flight > 0 {
            if let Err(u) = plan {
                revert = Some((
                    keep,
                    format!("every pool of the group is blocked: {}", u.why),
                ));
            } else if st
                .waiting_since
                .is_some_and(|since| now.since(since) > self.config.max_node_provision_time_for(g))
            {
                let reason = LaunchFailureReason::Other(format!(
                    "no node registered within max-node-provision-time {}",
                    human_duration(self.config.max_node_provision_time_for(g))
                ));
                let until = self.cool_offs.record_failure(
                    PoolKey {
                        group: Some(g.name.clone()),
                        capacity_type: None,
                        zone: None,
                        instance_type: None,
                    },
                    reason.clone(),
                    now,
                    &self.config.cool_off,
                );
                timed_out = true;
                revert = Some((keep, format!("{reason}; group cooled off until {until}")));
            }
        }
        if let Some((new_target, reason)) = revert {
            let st = self.groups.entry(g.name.clone()).or_default();
            if new_target < target {
                tally.actions.push(Decision::RevertScaleUp {
                    group: g.name.clone(),
                    cancelled: target - new_target,
                    new_target,
                    reason: reason.clone(),
                });
                target = new_target;
                st.target_override = Some((new_target, now));
                st.waiting_since = None;
            }
            why = reason;
        }
        SettledGroup {
            target,
            registered,
            why,
            timed_out,
        }
    }

    /// The simulated cluster: real nodes, then the nodes already being launched.
    fn simulated_cluster<'a>(
        &self,
        snap: &'a ClusterSnapshot,
        now: Timestamp,
        ground: &'a Groundwork,
        tally: &Tally,
    ) -> Vec<SimNode<'a>> {
        let mut nodes: Vec<SimNode<'a>> = Vec::with_capacity(snap.nodes().len() + 16);
        for (ni, n) in snap.node_indexes().zip(snap.nodes()) {
            let mut free = n.allocatable.clone();
            let pod_slots = if n.allocatable.pods == 0 {
                DEFAULT_MAX_PODS
            } else {
                n.allocatable.pods
            };
            let on_node = snap.pods_on_node(ni);
            free.saturating_sub(snap.requested_on_node(ni));
            let provision_time = snap
                .group_of_node(ni)
                .map_or(self.config.max_node_provision_time, |gi| {
                    self.config.max_node_provision_time_for(&snap.groups()[gi])
                });
            let fresh_enough = n.ready || now.since(n.created_at) <= provision_time;
            nodes.push(SimNode {
                existing: Some(ni),
                group: snap.group_of_node(ni),
                labels: &n.labels,
                variants: &[],
                taints: &n.taints,
                free,
                free_pods: pod_slots.saturating_sub(on_node.len() as u64),
                pod_slots,
                schedulable: !n.unschedulable
                    && fresh_enough
                    && !self.disruption.removing.contains_key(&n.name),
                bound: on_node,
                placed: Vec::new(),
                hostname: n.name.as_str().into(),
            });
        }
        for (gi, g) in snap.group_indexes().zip(snap.groups()) {
            if let Ok(plan) = &ground.plans[gi] {
                let registered = tally.registered[gi];
                for i in 0..tally.targets[gi].saturating_sub(registered) {
                    // A mixed group's launches into a market out of capacity never come.
                    if plan.slot_comes(registered + i) {
                        nodes.push(plan.fresh_node(g, format!("upcoming-{}-{i}", g.name)));
                    }
                }
            }
        }
        nodes
    }

    /// Pods that may trigger a scale-up (expendable and too-young ones get a verdict
    /// instead), plus the pods of interrupted nodes, which need a new home now.
    fn pending_pods(
        &self,
        snap: &ClusterSnapshot,
        now: Timestamp,
        tally: &mut Tally,
    ) -> Vec<PodIdx> {
        let mut pending = Vec::new();
        for p in snap.pending_pods() {
            let pod = &snap.pods()[p];
            if pod.spec.priority < self.config.expendable_pods_priority_cutoff {
                tally.outcomes.insert(
                    p,
                    PodVerdict::Expendable {
                        priority: pod.spec.priority,
                    },
                );
            } else if now.since(pod.created_at) < self.config.new_pod_scale_up_delay {
                tally.outcomes.insert(
                    p,
                    PodVerdict::NotTriggerScaleUp {
                        reason: format!(
                            "pod is younger than new-pod-scale-up-delay {}",
                            human_duration(self.config.new_pod_scale_up_delay)
                        ),
                    },
                );
            } else {
                pending.push(p);
            }
        }
        for &ni in tally.interrupted.keys() {
            for &p in snap.pods_on_node(ni) {
                if !snap.pods()[p].is_daemon_or_mirror() {
                    pending.push(p);
                }
            }
        }
        pending
    }

    /// Scale-ups, one expansion (a chosen group and its balance-set split) at a time
    /// until no option helps the pods left or the round's expansions are used up.
    fn scale_up<'a>(
        &mut self,
        snap: &'a ClusterSnapshot,
        now: Timestamp,
        ground: &'a Groundwork,
        tally: &mut Tally,
        sim: &mut Simulation<'a>,
    ) -> Limits {
        let groups = snap.groups();
        let mut limits = Limits::new(
            snap,
            &self.config,
            &ground.plans,
            &tally.targets,
            &tally.registered,
        );
        let max_iterations = match self.config.max_expansions_per_round {
            0 => groups.len() as u64,
            n => u64::from(n).min(groups.len() as u64),
        };
        // Shared by both phases: the round's expansions stay within the limit.
        let mut iteration = 0u64;
        for guess in [ZoneGuess::Never, ZoneGuess::LastResort] {
            if guess == ZoneGuess::LastResort {
                // Pods a node of unknown zone would serve only in some of its zones,
                // once every guaranteed option is taken: a node on its way may land in
                // theirs, else new nodes are planned for them the same way.
                if !sim
                    .remaining
                    .iter()
                    .any(|c| depends_on_zone(&snap.pods()[c.rep]))
                {
                    break;
                }
                wait_on_upcoming_guessing_zone(snap, tally, sim);
            }
            self.expand_until_done(
                snap,
                now,
                ground,
                tally,
                sim,
                &mut limits,
                (&mut iteration, max_iterations),
                guess,
            );
        }
        limits
    }

    /// The expansions of one [`ZoneGuess`] phase of [`Self::scale_up`].
    #[allow(clippy::too_many_arguments)]
    fn expand_until_done<'a>(
        &mut self,
        snap: &'a ClusterSnapshot,
        now: Timestamp,
        ground: &'a Groundwork,
        tally: &mut Tally,
        sim: &mut Simulation<'a>,
        limits: &mut Limits,
        (iteration, max_iterations): (&mut u64, u64),
        guess: ZoneGuess,
    ) {
        let groups = snap.groups();
        while !sim.remaining.is_empty() && *iteration < max_iterations {
            let mut candidates: Vec<(GroupIdx, Estimate<'a>)> = Vec::new();
            for (gi, g) in snap.group_indexes().zip(groups) {
                let Ok(plan) = &ground.plans[gi] else {
                    continue;
                };
                if guess == ZoneGuess::LastResort && g.zones.len() < 2 {
                    continue; // its zone is known: estimated without guessing already
                }
                let headroom = g.max_size.saturating_sub(tally.targets[gi]);
                let max_new = headroom
                    .min(self.config.max_nodes_per_scale_up)
                    .min(limits.nodes_allowed(plan));
                if max_new == 0 {
                    continue;
                }
                let est = estimate(plan, g, &sim.remaining, &sim.spreads, max_new, snap, guess);
                if !est.helped.is_empty() {
                    candidates.push((gi, est));
                }
            }
            if candidates.is_empty() {
                break;
            }
            // Counted when it expands: a phase that finds nothing leaves the budget.
            *iteration += 1;
            let expansion = Expansion {
                iteration: *iteration,
                candidates,
            };
            self.expand(snap, now, ground, tally, sim, limits, expansion);
        }
    }

    /// Carries out one expansion: the expander picks among the candidates, the nodes
    /// are split across the balance set, and the helped pods leave the remaining ones.
    #[allow(clippy::too_many_arguments)]
    fn expand<'a>(
        &mut self,
        snap: &'a ClusterSnapshot,
        now: Timestamp,
        ground: &'a Groundwork,
        tally: &mut Tally,
        sim: &mut Simulation<'a>,
        limits: &mut Limits,
        expansion: Expansion<'a>,
    ) {
        let groups = snap.groups();
        let Expansion {
            iteration,
            mut candidates,
        } = expansion;
        let (pick, decided_by) = self.pick(snap, now, ground, &candidates, iteration);
        let (gi, est) = candidates.swap_remove(pick);
        let g = &groups[gi];
        let plan = ground.plans[gi].as_ref().expect("candidates have plans");
        let others: Vec<&str> = candidates
            .iter()
            .filter(|(o, _)| *o != gi)
            .map(|(o, _)| groups[*o].name.as_str())
            .take(5)
            .collect();
        // Hedge (after a recent spot shortage): share the nodes with the other spot
        // families. Zone balance: each share is split over its balance set's groups
        // that help the same pods, lightest zone first.
        let (mut shares, broad) = self.hedge_shares(snap, ground, gi, &est, &candidates, now);
        // Slack within the group's max, the cluster limits and the step limit; not onto
        // a chosen group a broad shortage left empty (it would not launch).
        if shares[0].nodes > 0 {
            let room = self.step_room(g, tally.targets[gi], est.node_count(), limits, plan);
            shares[0].nodes += bulk_slack(snap, &est, self.config.bulk_slack).min(room);
        }
        let hedged: Vec<&str> = shares
            .iter()
            .filter(|s| s.kind != ShareKind::Chosen)
            .map(|s| groups[s.group].name.as_str())
            .collect();
        let shortage = self.describe_shortage(&shares, broad, now);
        let mut shortfall = 0;
        // The pods' verdict names the chosen group, or if it got no node (a broad
        // shortage sends them on-demand) the one that got the most.
        let (mut chosen_got_nodes, mut most): (bool, Option<(u32, GroupIdx)>) = (false, None);
        // Other families first: what their groups cannot take goes back to the chosen one.
        for share in shares.iter().rev() {
            let nodes = share.nodes
                + if share.kind == ShareKind::Chosen {
                    shortfall
                } else {
                    0
                };
            let split = self.balance_split(
                snap,
                &ground.sets,
                &tally.targets,
                Share { nodes, ..*share },
                &est,
                &candidates,
            );
            if share.kind != ShareKind::Chosen {
                shortfall += nodes.saturating_sub(split.iter().map(|(_, d)| d).sum());
            }
            for (member, delta) in split {
                let mg = &groups[member];
                let mplan = ground.plans[member]
                    .as_ref()
                    .expect("candidates have plans");
                let new_target = tally.targets[member] + delta;
                let (cause, reason) = if member == gi {
                    (
                        ScaleUpCause::PendingPods,
                        format!(
                            "{} pending pod(s) fit on {} new node(s) of {} ({} zone/type option(s), {:.3} $/h each); chosen by {decided_by}{}{}",
                            est.helped.len(),
                            est.node_count(),
                            g.name,
                            plan.variants.len(),
                            plan.price_per_hour,
                            if others.is_empty() {
                                String::new()
                            } else {
                                format!(" over {}", others.join(", "))
                            },
                            if hedged.is_empty() {
                                String::new()
                            } else {
                                format!("; hedged with {} as {shortage}", hedged.join(", "))
                            }
                        ),
                    )
                } else {
                    hedge_or_balance_reason(share, delta, &est, g, mg, &shortage)
                };
                tally.actions.push(Decision::ScaleUp {
                    group: mg.name.clone(),
                    delta,
                    new_target,
                    cause,
                    reason,
                });
                limits.consume(mplan, delta);
                self.note_scale_up(&mg.name, new_target, now);
                tally.targets[member] = new_target;
                chosen_got_nodes |= member == gi && delta > 0;
                if delta > 0 && most.is_none_or(|(m, _)| delta > m) {
                    most = Some((delta, member));
                }
            }
        }
        let named = most.filter(|_| !chosen_got_nodes).map_or(gi, |(_, m)| m);
        let group = groups[named].name.clone();
        let verdict = PodVerdict::TriggeredScaleUp { group };
        tally
            .outcomes
            .extend(est.helped.iter().map(|&p| (p, verdict.clone())));
        sim.absorb(est);
    }

    /// How many nodes a scale-up of `n` nodes of `g` (now at `target`) may add within
    /// the group's max size, the cluster-wide limits and the step limit.
    fn step_room(
        &self,
        g: &crate::model::NodeGroup,
        target: u32,
        n: u32,
        limits: &Limits,
        plan: &GroupPlan,
    ) -> u32 {
        (g.max_size.saturating_sub(target + n))
            .min(limits.nodes_allowed(plan).saturating_sub(n))
            .min(self.config.max_nodes_per_scale_up.saturating_sub(n))
    }

    /// The expander's choice among the candidates: index and what decided.
    fn pick(
        &self,
        snap: &ClusterSnapshot,
        now: Timestamp,
        ground: &Groundwork,
        candidates: &[(GroupIdx, Estimate<'_>)],
        iteration: u64,
    ) -> (usize, String) {
        let groups = snap.groups();
        let scores: Vec<OptionScore<'_>> = candidates
            .iter()
            .map(|(gi, est)| {
                let plan = ground.plans[*gi].as_ref().expect("candidates have plans");
                OptionScore {
                    group: &groups[*gi].name,
                    pods_helped: est.helped.len(),
                    requested_cpu_millis: est.requested.cpu_millis,
                    requested_memory_bytes: est.requested.memory_bytes,
                    offered_cpu_millis: plan.allocatable.cpu_millis * u64::from(est.node_count()),
                    offered_memory_bytes: plan.allocatable.memory_bytes
                        * u64::from(est.node_count()),
                    cost_per_hour: plan.cost_of(est.node_count()),
                }
            })
            .collect();
        let seed = self.config.seed
            ^ now.as_millis().rotate_left(17)
            ^ iteration.wrapping_mul(0x2545_f491_4f6c_dd1d);
        expander::choose(
            &self.config.expander,
            self.priorities.as_ref(),
            &scores,
            seed,
        )
    }

    /// Pods nothing helps: explain, per group, why.
    fn explain_unhelped(
        &self,
        snap: &ClusterSnapshot,
        ground: &Groundwork,
        tally: &mut Tally,
        sim: &Simulation<'_>,
        limits: &Limits,
    ) {
        for (class, spread) in sim.remaining.iter().zip(&sim.spreads) {
            let reason = self.explain(snap, &ground.plans, &tally.targets, limits, class, spread);
            for &p in &class.pods {
                tally.unhelpable += 1;
                tally.outcomes.insert(
                    p,
                    PodVerdict::NotTriggerScaleUp {
                        reason: reason.clone(),
                    },
                );
            }
        }
    }

    /// Replacements, drain-back, scale-down, rebalancing and overprovisioning
    /// ([`crate::disruption::Step::ORDER`]), against what the scale-ups left.
    fn disrupt(
        &mut self,
        snap: &ClusterSnapshot,
        now: Timestamp,
        ground: &Groundwork,
        tally: &mut Tally,
        sim: &mut Simulation<'_>,
    ) {
        let scaled_for_pods = tally
            .actions
            .iter()
            .any(|a| matches!(a, Decision::ScaleUp { .. }));
        let round = crate::disruption::Round {
            snap,
            now,
            config: &self.config,
            priorities: self.priorities.as_ref(),
            plans: &ground.plans,
            registered: &tally.registered,
            sets: &ground.sets,
            unmet_demand: tally.unhelpable > 0 || scaled_for_pods,
        };
        let interrupted: Vec<NodeIdx> = tally.interrupted.keys().copied().collect();
        let mut work = Work::new(
            &round,
            &self.disruption,
            &mut sim.nodes,
            &mut tally.targets,
            &mut tally.actions,
            &mut tally.node_outcomes,
            &mut self.last_scale_up,
            &interrupted,
        );
        self.disruption.plan(&round, &mut work);
        let started = std::mem::take(&mut work.scale_ups);
        drop(work);
        tally.deletion_costs = std::mem::take(&mut self.disruption.deletion_costs);
        for (group, new_target) in started {
            self.note_target(&group, new_target, now);
        }
    }

    /// The decisions, with the per-pod verdicts and the status.
    fn finish_round(
        &self,
        snap: &ClusterSnapshot,
        now: Timestamp,
        ground: &Groundwork,
        tally: Tally,
    ) -> Decisions {
        let mut status = self.status(
            snap,
            now,
            &tally.targets,
            &tally.registered,
            &ground.plans,
            tally.whys,
            tally.considered,
            tally.unhelpable,
        );
        let counts = ground.sets.zone_counts(snap, &tally.targets, &|_| false);
        status.zone_skew = ground
            .sets
            .names
            .iter()
            .zip(&counts)
            .filter(|(_, c)| c.len() > 1)
            .map(|(name, c)| (name.clone(), skew(c)))
            .collect();
        Decisions {
            nodes: tally.node_outcomes,
            deletion_costs: tally.deletion_costs,
            actions: tally.actions,
            pods: tally
                .outcomes
                .into_iter()
                .map(|(p, verdict)| PodOutcome {
                    pod: snap.pods()[p].key(),
                    verdict,
                })
                .collect(),
            status,
        }
    }

    /// A target we set that the snapshot may not show yet, and the wait for its nodes.
    fn note_target(&mut self, group: &str, new_target: u32, now: Timestamp) {
        let st = self.groups.entry(group.to_string()).or_default();
        st.target_override = Some((new_target, now));
        if st.waiting_since.is_none() {
            st.waiting_since = Some(now);
        }
    }

    pub(crate) fn note_scale_up(&mut self, group: &str, new_target: u32, now: Timestamp) {
        self.note_target(group, new_target, now);
        self.last_scale_up.insert(group.to_string(), now);
    }

    /// The priority expander's priority of a group (none without a ConfigMap or match).
    fn priority_of(&self, group: &str) -> Option<i64> {
        self.priorities.as_ref().and_then(|p| p.priority_of(group))
    }

    /// The hedge's shares of the chosen scale-up (see [`hedge`]): everything to the
    /// chosen group unless a spot shortage is recent. Also how many spot families are
    /// short at once, when that makes the shortage broad.
    fn hedge_shares(
        &self,
        snap: &ClusterSnapshot,
        ground: &Groundwork,
        chosen: GroupIdx,
        est: &crate::scaleup::Estimate<'_>,
        others: &[(GroupIdx, crate::scaleup::Estimate<'_>)],
        now: Timestamp,
    ) -> (Vec<Share>, Option<usize>) {
        let alternative = |gi: GroupIdx, est: &crate::scaleup::Estimate<'_>| Alternative {
            group: gi,
            set: ground.sets.of_group[gi],
            price_per_hour: ground.plans[gi]
                .as_ref()
                .map_or(f64::INFINITY, |p| p.price_per_hour),
            helped: est.helped.len(),
            nodes: est.node_count(),
            priority: self.priority_of(&snap.groups()[gi].name),
        };
        let chosen = alternative(chosen, est);
        if !hedge::active(&self.config.hedge, self.spot_shortage.as_ref(), now) {
            let all = Share {
                group: chosen.group,
                nodes: chosen.nodes,
                kind: ShareKind::Chosen,
            };
            return (vec![all], None);
        }
        // Only groups that help these very pods can take a share of their nodes.
        let alternatives: Vec<Alternative> = others
            .iter()
            .filter(|(_, e)| e.helps_same_pods(est))
            .map(|(o, e)| alternative(*o, e))
            .collect();
        let broad = self.broad_spot_shortage(snap, ground, now);
        let shares = hedge::shares(
            &self.config.hedge,
            snap.groups(),
            &chosen,
            &alternatives,
            broad.is_some(),
        );
        (shares, broad)
    }

    /// The spot shortage behind a hedged scale-up, for its reasons.
    fn describe_shortage(&self, shares: &[Share], broad: Option<usize>, now: Timestamp) -> String {
        let mut shortage = self
            .spot_shortage
            .as_ref()
            .map(|s| hedge::describe(s, now))
            .unwrap_or_default();
        if shares.iter().any(|s| s.kind == ShareKind::OnDemand) {
            if let Some(families) = broad {
                shortage.push_str(&format!(
                    ", and {families} spot families failed within {} with no spot node joining since",
                    human_duration(self.config.hedge.window)
                ));
            }
        }
        shortage
    }

    /// How many spot families are short at once (see [`hedge::broad_families`]).
    fn broad_spot_shortage(
        &self,
        snap: &ClusterSnapshot,
        ground: &Groundwork,
        now: Timestamp,
    ) -> Option<usize> {
        let failures = self.spot_failures.iter().filter_map(|(group, at)| {
            let gi = snap.group_index(group)?;
            Some((ground.sets.of_group[gi], *at))
        });
        let latest_spot_join = snap
            .nodes()
            .iter()
            .filter(|n| n.capacity_type == CapacityType::Spot)
            .map(|n| n.created_at)
            .max();
        hedge::broad_families(&self.config.hedge, failures, latest_spot_join, now)
    }

    /// How to split a chosen scale-up across its balance set: `(group, delta)` pairs.
    fn balance_split(
        &self,
        snap: &ClusterSnapshot,
        sets: &BalanceSets,
        targets: &[u32],
        share: Share,
        chosen_estimate: &crate::scaleup::Estimate<'_>,
        others: &[(GroupIdx, crate::scaleup::Estimate<'_>)],
    ) -> Vec<(GroupIdx, u32)> {
        let (chosen, n) = (share.group, share.nodes);
        if n == 0 {
            return Vec::new(); // the chosen group's empty share in a broad shortage
        }
        let groups = snap.groups();
        let g = &groups[chosen];
        if !self.config.balance.enabled || g.zones.len() != 1 {
            return vec![(chosen, n)];
        }
        let set = sets.of_group[chosen];
        let prio = |gi: GroupIdx| self.priority_of(&groups[gi].name);
        let mut members = vec![chosen];
        for (o, oest) in others {
            if *o != chosen
                && sets.of_group[*o] == set
                && groups[*o].zones.len() == 1
                && oest.helps_same_pods(chosen_estimate)
                && prio(*o) == prio(chosen)
            {
                members.push(*o);
            }
        }
        if members.len() == 1 {
            return vec![(chosen, n)];
        }
        let mut counts = sets.zone_counts_of_set(snap, targets, set);
        let mut alloc = vec![0u32; members.len()];
        for _ in 0..n {
            let pick = members
                .iter()
                .enumerate()
                .filter(|(i, &m)| targets[m] + alloc[*i] < groups[m].max_size)
                .min_by_key(|(i, &m)| (counts.get(&groups[m].zones[0]).copied().unwrap_or(0), *i))
                .map(|(i, _)| i);
            let Some(i) = pick else { break };
            alloc[i] += 1;
            *counts
                .entry(groups[members[i]].zones[0].clone())
                .or_insert(0) += 1;
        }
        members
            .into_iter()
            .zip(alloc)
            .filter(|(_, a)| *a > 0)
            .collect()
    }

    /// Turns this round's interruption notices into cool-offs and the set of nodes to
    /// drain now, with the reason.
    fn take_interruptions(
        &mut self,
        snap: &ClusterSnapshot,
        now: Timestamp,
        failed_removals: &[String],
    ) -> BTreeMap<NodeIdx, String> {
        let mut out = BTreeMap::new();
        self.interrupted_nodes
            .retain(|node, (_, until)| now < *until && snap.node_index(node).is_some());
        for node in failed_removals {
            if let (Some((reason, _)), Some(ni)) =
                (self.interrupted_nodes.get(node), snap.node_index(node))
            {
                out.insert(ni, format!("{reason} (the last drain failed: again)"));
            }
        }
        let mut unmatched = Vec::new();
        for (event, at) in std::mem::take(&mut self.interruptions) {
            let Event::InstanceInterruption {
                instance_id,
                deadline,
                ..
            } = &event
            else {
                continue;
            };
            let suffix = format!("/{instance_id}");
            let Some(ni) = snap.node_indexes().find(|&ni| {
                snap.nodes()[ni]
                    .provider_id
                    .as_deref()
                    .is_some_and(|p| p.ends_with(&suffix))
            }) else {
                // The instance has no Node yet (the notice came before registration):
                // keep the notice until its deadline (or for PENDING_INTERRUPTION_TTL).
                if now < deadline.unwrap_or(at + PENDING_INTERRUPTION_TTL) {
                    unmatched.push((event, at));
                }
                continue;
            };
            let Event::InstanceInterruption {
                instance_id,
                kind,
                zone,
                instance_type,
                deadline,
            } = event
            else {
                continue;
            };
            let n = &snap.nodes()[ni];
            let zone = zone.or_else(|| n.zone().map(str::to_string));
            let itype = instance_type.or_else(|| n.instance_type().map(str::to_string));
            if matches!(
                kind,
                InterruptionKind::SpotInterruption | InterruptionKind::RebalanceRecommendation
            ) && n.capacity_type == CapacityType::Spot
            {
                // The pool is short of spot capacity: every group avoids it for a while.
                self.cool_offs.record_failure(
                    PoolKey {
                        group: None,
                        capacity_type: Some(CapacityType::Spot),
                        zone: zone.clone(),
                        instance_type: itype.clone(),
                    },
                    LaunchFailureReason::Other(format!("{kind:?} for {instance_id}")),
                    at,
                    &self.config.cool_off,
                );
            }
            let left = deadline
                .map(|d| format!(", {} left", human_duration(d.since(now))))
                .unwrap_or_default();
            let reason = format!(
                "{kind:?} for {instance_id} ({} in {}){left}: drain now, replacement planned this round",
                itype.as_deref().unwrap_or("?"),
                zone.as_deref().unwrap_or("?")
            );
            let until = deadline.unwrap_or(at + PENDING_INTERRUPTION_TTL);
            self.interrupted_nodes
                .insert(n.name.clone(), (reason.clone(), until));
            out.insert(ni, reason);
        }
        // Bounded: the oldest notices go first.
        let excess = unmatched.len().saturating_sub(MAX_PENDING_INTERRUPTIONS);
        self.interruptions = unmatched.split_off(excess);
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn status(
        &self,
        snap: &ClusterSnapshot,
        now: Timestamp,
        targets: &[u32],
        registered: &[u32],
        plans: &[Result<GroupPlan, Unavailable>],
        whys: Vec<String>,
        pending: usize,
        unhelpable: usize,
    ) -> Status {
        let mut groups: Vec<GroupStatus> = snap
            .group_indexes()
            .zip(snap.groups())
            .zip(whys)
            .map(|((gi, g), why)| {
                let (cool_off_until, why) = match &plans[gi] {
                    Err(u) => (Some(u.until), u.why.clone()),
                    Ok(_) => (None, why),
                };
                GroupStatus {
                    name: g.name.clone(),
                    min_size: g.min_size,
                    max_size: g.max_size,
                    target: targets[gi],
                    registered: registered[gi],
                    in_flight: targets[gi].saturating_sub(registered[gi]),
                    cool_off_until,
                    why,
                }
            })
            .collect();
        groups.sort_by(|a, b| a.name.cmp(&b.name));
        Status {
            now,
            groups,
            cool_offs: self
                .cool_offs
                .active(now)
                .map(|(k, c)| (k.clone(), c.clone()))
                .collect(),
            pending_pods: pending,
            unhelpable_pods: unhelpable,
            config_errors: self.priority_error.iter().cloned().collect(),
            orphaned_pods: snap.orphaned_pods(),
            replacements: self
                .disruption
                .replacements
                .iter()
                .map(|(n, r)| (n.clone(), r.group.clone()))
                .collect(),
            zone_skew: Vec::new(),
        }
    }

    fn explain(
        &self,
        snap: &ClusterSnapshot,
        plans: &[Result<GroupPlan, Unavailable>],
        targets: &[u32],
        limits: &Limits,
        class: &PodClass,
        spread: &SpreadState,
    ) -> String {
        let pod = &snap.pods()[class.rep];
        if snap.groups().is_empty() {
            return "no node groups are configured".into();
        }
        // Same reason text -> one line listing the groups.
        let mut by_reason: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        for (gi, g) in snap.group_indexes().zip(snap.groups()) {
            let reason = match &plans[gi] {
                Err(u) => format!("in cool-off until {} ({})", u.until, u.why),
                Ok(plan) => {
                    if let Some(misfit) = explain_misfit(pod, plan, g, snap, spread) {
                        misfit
                    } else if targets[gi] >= g.max_size {
                        format!("max node group size reached ({})", g.max_size)
                    } else if let Some(limit) = limits.blocking(plan) {
                        limit
                    } else {
                        "would fit, but the pods it shares nodes with used the room allowed".into()
                    }
                }
            };
            by_reason.entry(reason).or_default().push(&g.name);
        }
        let parts: Vec<String> = by_reason
            .into_iter()
            .map(|(reason, names)| {
                let shown: Vec<&str> = names.iter().copied().take(4).collect();
                let more = names.len().saturating_sub(shown.len());
                let list = if more > 0 {
                    format!("{} and {more} more", shown.join(", "))
                } else {
                    shown.join(", ")
                };
                format!("{} group(s) [{list}]: {reason}", names.len())
            })
            .collect();
        format!("pod didn't trigger scale-up: {}", parts.join("; "))
    }
}

/// Cluster-wide limits: `--max-nodes-total`, `--cores-total`, `--memory-total`.
#[derive(Clone, Debug)]
struct Limits {
    nodes: u64,
    cores: u64,
    memory_gib: u64,
    max_nodes: u64,
    max_cores: u64,
    max_memory_gib: u64,
}

impl Limits {
    fn new(
        snap: &ClusterSnapshot,
        config: &AutoscalerConfig,
        plans: &[Result<GroupPlan, Unavailable>],
        targets: &[u32],
        registered: &[u32],
    ) -> Limits {
        let mut cpu_millis = 0u64;
        let mut memory = 0u64;
        for n in snap.nodes() {
            let c = if n.capacity.is_zero() {
                &n.allocatable
            } else {
                &n.capacity
            };
            cpu_millis += c.cpu_millis;
            memory += c.memory_bytes;
        }
        let mut nodes = snap.nodes().len() as u64;
        for (gi, plan) in snap.group_indexes().zip(plans) {
            let upcoming = u64::from(targets[gi].saturating_sub(registered[gi]));
            nodes += upcoming;
            if let Ok(plan) = plan {
                cpu_millis += plan.capacity.cpu_millis * upcoming;
                memory += plan.capacity.memory_bytes * upcoming;
            }
        }
        Limits {
            nodes,
            cores: cpu_millis.div_ceil(1000),
            memory_gib: memory.div_ceil(1 << 30),
            max_nodes: if config.max_nodes_total == 0 {
                u64::MAX
            } else {
                u64::from(config.max_nodes_total)
            },
            max_cores: config.cores_total.max,
            max_memory_gib: config.memory_total_gib.max,
        }
    }

    fn per_node(plan: &GroupPlan) -> (u64, u64) {
        (
            plan.capacity.cpu_millis.div_ceil(1000).max(1),
            plan.capacity.memory_bytes.div_ceil(1 << 30).max(1),
        )
    }

    fn nodes_allowed(&self, plan: &GroupPlan) -> u32 {
        let (cores, mem) = Self::per_node(plan);
        let by_nodes = self.max_nodes.saturating_sub(self.nodes);
        let by_cores = self.max_cores.saturating_sub(self.cores) / cores;
        let by_mem = self.max_memory_gib.saturating_sub(self.memory_gib) / mem;
        by_nodes.min(by_cores).min(by_mem).min(u64::from(u32::MAX)) as u32
    }

    fn consume(&mut self, plan: &GroupPlan, count: u32) {
        let (cores, mem) = Self::per_node(plan);
        self.nodes += u64::from(count);
        self.cores += cores * u64::from(count);
        self.memory_gib += mem * u64::from(count);
    }

    fn blocking(&self, plan: &GroupPlan) -> Option<String> {
        if self.nodes_allowed(plan) > 0 {
            return None;
        }
        let (cores, mem) = Self::per_node(plan);
        Some(if self.nodes >= self.max_nodes {
            format!("max-nodes-total {} reached", self.max_nodes)
        } else if self.cores + cores > self.max_cores {
            format!(
                "cores-total limit: {} cores in use, a node adds {cores}, max {}",
                self.cores, self.max_cores
            )
        } else {
            format!(
                "memory-total limit: {} GiB in use, a node adds {mem}, max {}",
                self.memory_gib, self.max_memory_gib
            )
        })
    }
}

/// Extra nodes for a bulk scale-up of pods of several sizes (see
/// [`AutoscalerConfig::bulk_slack`]).
fn bulk_slack(snap: &ClusterSnapshot, est: &crate::scaleup::Estimate<'_>, share: f64) -> u32 {
    const BULK: u32 = 8;
    let n = est.node_count();
    if share <= 0.0 || n < BULK {
        return 0;
    }
    let pods = snap.pods();
    let mut sizes = est.helped.iter().map(|&p| pods[p].spec.requests.cpu_millis);
    let first = sizes.next();
    if sizes.all(|s| Some(s) == first) {
        return 0;
    }
    (f64::from(n) * share).ceil() as u32
}

/// The reason of a hedged or zone-balance share of a scale-up.
fn hedge_or_balance_reason(
    share: &Share,
    delta: u32,
    est: &crate::scaleup::Estimate<'_>,
    chosen: &crate::model::NodeGroup,
    member: &crate::model::NodeGroup,
    shortage: &str,
) -> (ScaleUpCause, String) {
    let planned = est.node_count();
    let zones = member.zones.join(",");
    match share.kind {
        ShareKind::Chosen => (
            ScaleUpCause::ZoneBalance,
            format!(
                "zone balance: {delta} of the {planned} node(s) planned for {} go to {} in {zones}, the lighter zone of the balance set",
                chosen.name, member.name
            ),
        ),
        ShareKind::Family => (
            ScaleUpCause::Hedge,
            format!(
                "hedge: {delta} of the {planned} node(s) planned for {} go to {} in {zones}, another spot family, as {shortage}",
                chosen.name, member.name
            ),
        ),
        ShareKind::OnDemand => (
            ScaleUpCause::Hedge,
            format!(
                "hedge: {delta} of the {planned} node(s) planned for {} start on-demand in {} ({zones}) at once, as {shortage}; drained back once spot returns",
                chosen.name, member.name
            ),
        ),
    }
}
