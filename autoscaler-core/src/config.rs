//! Engine configuration with cluster-autoscaler's defaults.

use crate::cooloff::CoolOffPolicy;
use crate::expander::ExpanderChain;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use thiserror::Error;

pub use crate::time::duration_secs;

/// An inclusive `min:max` range, as in `--cores-total=0:320000`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    /// Lower bound.
    pub min: u64,
    /// Upper bound.
    pub max: u64,
}

/// How many nodes a disruption may take at once: a count (`1`) or a share of the group
/// (`10%`, rounded up, at least 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Budget {
    /// At most this many nodes.
    Count(u32),
    /// At most this percentage of the group's nodes.
    Percent(u32),
}

impl Budget {
    /// The budget for a group of `size` nodes.
    pub fn for_size(&self, size: u32) -> u32 {
        match *self {
            Budget::Count(n) => n,
            Budget::Percent(p) => (size * p).div_ceil(100).max(1),
        }
    }
}

impl std::str::FromStr for Budget {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let parsed = match s.strip_suffix('%') {
            Some(p) => p.trim().parse().map(Budget::Percent),
            None => s.parse().map(Budget::Count),
        };
        parsed.map_err(|_| {
            format!("budget {s:?} is neither a count (\"1\") nor a percentage (\"10%\")")
        })
    }
}

impl TryFrom<String> for Budget {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Budget> for String {
    fn from(b: Budget) -> String {
        match b {
            Budget::Count(n) => n.to_string(),
            Budget::Percent(p) => format!("{p}%"),
        }
    }
}

/// Scale-down, with cluster-autoscaler's flags and defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScaleDownConfig {
    /// `--scale-down-enabled`.
    pub enabled: bool,
    /// `--scale-down-utilization-threshold`: max(cpu, memory) requested share at or below
    /// which a node is a candidate.
    pub utilization_threshold: f64,
    /// `--scale-down-unneeded-time`.
    #[serde(with = "duration_secs")]
    pub unneeded_time: Duration,
    /// `--scale-down-delay-after-add`, per balance set.
    #[serde(with = "duration_secs")]
    pub delay_after_add: Duration,
    /// `--scale-down-delay-after-failure`, per group.
    #[serde(with = "duration_secs")]
    pub delay_after_failure: Duration,
    /// `--max-empty-bulk-delete`: empty nodes removed per round.
    pub max_empty_bulk_delete: u32,
    /// `--max-drain-parallelism`: nodes drained at once.
    pub max_drain_parallelism: u32,
    /// `--skip-nodes-with-local-storage`.
    pub skip_nodes_with_local_storage: bool,
    /// `--skip-nodes-with-system-pods`: kube-system pods without a PDB block removal.
    pub skip_nodes_with_system_pods: bool,
    /// `--skip-nodes-with-custom-controller-pods`: pods owned by anything but a
    /// ReplicaSet, ReplicationController, StatefulSet, Job or DaemonSet block removal.
    pub skip_nodes_with_custom_controller_pods: bool,
    /// `--scale-down-unready-time`: an unready node is removable after this long,
    /// whatever its utilization.
    #[serde(with = "duration_secs")]
    pub unready_time: Duration,
    /// `--scale-down-delay-after-delete`, per balance set (CA's default is one scan).
    #[serde(with = "duration_secs")]
    pub delay_after_delete: Duration,
    /// `--scale-down-workload-settle` (ours): a node is not drained while a pod of the
    /// same workload as one of its pods started less than this long ago (the replacement
    /// of an earlier eviction, or a scale-up), so the next eviction does not take a
    /// sibling that is still carrying the evicted pod's load. Its unneeded time keeps
    /// running. 0 disables.
    #[serde(with = "duration_secs")]
    pub workload_settle: Duration,
    /// `--scale-down-busy-workload-utilization` (ours): a node is not drained while
    /// evicting its pods would leave a workload's other replicas above this CPU
    /// utilization (share of their requests, from the workload's HPA) until the evicted
    /// ones restart. Workloads without an HPA are not judged. 0 disables.
    pub busy_workload_utilization: f64,
    /// `--scale-down-busy-workload-hold` (ours): how long past its unneeded time a node
    /// waits for such a workload to cool down or grow before it is drained anyway.
    #[serde(with = "duration_secs")]
    pub busy_workload_hold: Duration,
    /// `--scale-down-deletion-cost-nodes` (ours): the ReplicaSet pods on this many of the
    /// nodes that would go next (scale-down candidates in removal order, then on-demand
    /// nodes, then the heaviest zone's least utilized) get a negative
    /// `controller.kubernetes.io/pod-deletion-cost`, lowest on the node that goes first,
    /// so an HPA scale-in deletes them before pods elsewhere and empties nodes that would
    /// otherwise be drained. 0 disables (and clears the costs written before).
    pub deletion_cost_nodes: u32,
    /// `--max-bulk-soft-taint-count`: how many nodes per round the controller may give
    /// (or take off) cluster-autoscaler's `DeletionCandidateOfClusterAutoscaler`
    /// `PreferNoSchedule` taint, which follows the unneeded verdicts. CA's default is
    /// 10; ours is 0 (off, and taints left by CA are removed): with deletion costs
    /// steering scale-ins, the taint only packs pods onto the other nodes, so
    /// scale-down drains more of them (simulator scoreboard: 56 ✗ with it, 41
    /// without).
    pub max_bulk_soft_taint_count: u32,
    /// `--scale-down-spare-nodes` (ours): a node that still runs pods is drained only
    /// while the nodes left keep at least this many nodes' worth (the drained node's
    /// size) of free CPU and memory, counting placeholder pods (below
    /// `headroom.demand_priority_floor`) as free. Only nodes with the drained node's
    /// `NoSchedule`/`NoExecute` taints count: a dedicated pool's room is not spare. That room takes a burst, or the pods
    /// of an interrupted spot node, without waiting for a node to boot; evicting pods
    /// to pack the cluster tighter than that is not worth its disruption. Empty nodes
    /// are removed regardless, and drain-back and unready nodes are not held. 0
    /// disables.
    pub spare_nodes: u32,
}

impl Default for ScaleDownConfig {
    fn default() -> Self {
        ScaleDownConfig {
            enabled: true,
            utilization_threshold: 0.5,
            unneeded_time: Duration::from_secs(600),
            delay_after_add: Duration::from_secs(600),
            delay_after_failure: Duration::from_secs(180),
            max_empty_bulk_delete: 10,
            max_drain_parallelism: 1,
            skip_nodes_with_local_storage: true,
            skip_nodes_with_system_pods: true,
            skip_nodes_with_custom_controller_pods: true,
            unready_time: Duration::from_secs(20 * 60),
            delay_after_delete: Duration::ZERO,
            workload_settle: Duration::from_secs(60),
            busy_workload_utilization: 0.85,
            busy_workload_hold: Duration::from_secs(30 * 60),
            deletion_cost_nodes: 30,
            max_bulk_soft_taint_count: 0,
            spare_nodes: 2,
        }
    }
}

/// On-demand drain-back: replace old on-demand nodes with spot once spot is back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DrainBackConfig {
    /// `--drain-back-after` (0 disables drain-back).
    #[serde(with = "duration_secs")]
    pub after: Duration,
    /// `--drain-back-budget`: on-demand nodes being replaced at once, per group.
    pub budget: Budget,
}

impl Default for DrainBackConfig {
    fn default() -> Self {
        DrainBackConfig {
            after: Duration::from_secs(2 * 3600),
            budget: Budget::Count(1),
        }
    }
}

/// Zone balance across the groups of a balance set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BalanceConfig {
    /// `--balance-similar-node-groups`/`--balance-zones`: split scale-ups and order
    /// scale-downs so every zone of a balance set keeps the same node count.
    pub enabled: bool,
    /// Explicit balance sets, each a regex over group names; groups matching none are
    /// grouped automatically (same market, instance types, template labels and taints).
    pub explicit_sets: Vec<String>,
    /// Replace nodes (launch first) when skew stays above the threshold.
    pub rebalance: bool,
    /// `--zone-skew-threshold`: tolerated max-min nodes per zone.
    pub skew_threshold: u32,
    /// How long skew must last before replacing nodes.
    #[serde(with = "duration_secs")]
    pub rebalance_after: Duration,
    /// Replace nodes only at rest: no scale-up for pending pods and no scale-down in
    /// the balance set for this long (a skew that appears while load moves is healed
    /// for free by the next scale-up or scale-down).
    #[serde(with = "duration_secs")]
    pub rest_after: Duration,
    /// The tolerated skew grows with the set: at least this share of the mean nodes per
    /// zone (0.2: a set of 3 × 20 nodes tolerates a skew of 4), so small sets are left
    /// alone and big ones are not churned for a node or two.
    pub skew_fraction: f64,
    /// Disruption budget per balance set, shared by rebalancing and drain-back: pods
    /// those replacements may evict in any hour (scale-down is not counted: it only
    /// removes what is unneeded).
    pub evictions_per_hour: u32,
    /// Rebalancing drains a heavy-zone node without launching a replacement when its
    /// pods fit on the set's other nodes and the set's CPU requests stay under this
    /// share of what remains: the room a replacement would add is room scale-down
    /// would evict again later.
    pub consolidate_below: f64,
}

impl Default for BalanceConfig {
    fn default() -> Self {
        BalanceConfig {
            enabled: true,
            explicit_sets: Vec::new(),
            rebalance: true,
            skew_threshold: 1,
            rebalance_after: Duration::from_secs(600),
            rest_after: Duration::from_secs(1800),
            skew_fraction: 0.2,
            evictions_per_hour: 30,
            consolidate_below: 0.75,
        }
    }
}

/// Hedged launches: while a spot capacity shortage is recent, one scale-up is spread over
/// every spot family (balance set) that could take it, so a single round finds which
/// families still have capacity instead of one round per family.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HedgeConfig {
    /// `--hedge-launches`: spread spot scale-ups after a spot capacity shortage.
    pub enabled: bool,
    /// `--hedge-window`: how long after a spot capacity failure scale-ups stay hedged.
    #[serde(with = "duration_secs")]
    pub window: Duration,
    /// `--hedge-on-demand-fraction`: the share of a hedged scale-up started on-demand in
    /// the same round (drained back once spot returns). 0 keeps hedging free: the same
    /// node count, only spread.
    pub on_demand_fraction: f64,
    /// Families priced above the chosen group's by more than this share are left out.
    pub price_tolerance: f64,
    /// `--hedge-broad-shortage-families`: once this many spot families (balance sets)
    /// have failed for capacity within the window and no spot node has joined since the
    /// latest failure, spot is short everywhere: a spot scale-up starts on-demand at
    /// once, whatever its size (drained back once spot returns). 0 disables.
    pub broad_shortage_families: u32,
}

impl Default for HedgeConfig {
    fn default() -> Self {
        HedgeConfig {
            enabled: true,
            window: Duration::from_secs(900),
            on_demand_fraction: 0.0,
            price_tolerance: 0.10,
            broad_shortage_families: 3,
        }
    }
}

/// Engine configuration. `Default` gives cluster-autoscaler's defaults plus ours.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AutoscalerConfig {
    /// `--expander`, e.g. `priority,least-waste`.
    pub expander: ExpanderChain,
    /// `--expendable-pods-priority-cutoff`: pods below it never trigger scale-up.
    pub expendable_pods_priority_cutoff: i32,
    /// `--max-node-provision-time`: the safety net for failures nobody reported.
    #[serde(with = "duration_secs")]
    pub max_node_provision_time: Duration,
    /// `--ice-cooloff` and its growth.
    pub cool_off: CoolOffPolicy,
    /// When a launch fails for lack of capacity in a named pool (type, zone, market), cool
    /// that pool off for every group that draws from it, not only the failing group.
    /// cluster-autoscaler backs off the failing group only (`false`).
    pub pool_wide_cool_off: bool,
    /// `--max-nodes-total` (0: no limit).
    pub max_nodes_total: u32,
    /// `--cores-total`.
    pub cores_total: Range,
    /// `--memory-total` in GiB.
    pub memory_total_gib: Range,
    /// `--max-nodes-per-scaleup`.
    pub max_nodes_per_scale_up: u32,
    /// `--new-pod-scale-up-delay`: pods younger than this do not trigger scale-up yet.
    #[serde(with = "duration_secs")]
    pub new_pod_scale_up_delay: Duration,
    /// Expansion options (a chosen group, with its balance-set split) per round; 0 means
    /// as many as the pending pods need. cluster-autoscaler takes one per loop (1).
    pub max_expansions_per_round: u32,
    /// Seed for the `random` expander and final tie-breaks.
    pub seed: u64,
    /// Scale-down.
    pub scale_down: ScaleDownConfig,
    /// On-demand drain-back.
    pub drain_back: DrainBackConfig,
    /// Zone balancing.
    pub balance: BalanceConfig,
    /// Placeholder headroom sized from demand growth and boot time.
    pub headroom: crate::headroom::HeadroomConfig,
    /// Hedged launches after a spot capacity shortage.
    pub hedge: HedgeConfig,
    /// Extra nodes, as a share of a bulk scale-up (8 nodes or more) of pods of several
    /// sizes: the estimate packs them tightly (first-fit decreasing), the scheduler
    /// spreads them as they come, and the holes it leaves strand a pod or two that
    /// then wait a whole boot for one more node.
    pub bulk_slack: f64,
}

impl Default for AutoscalerConfig {
    fn default() -> Self {
        AutoscalerConfig {
            expander: ExpanderChain::default(),
            expendable_pods_priority_cutoff: -10,
            max_node_provision_time: Duration::from_secs(15 * 60),
            cool_off: CoolOffPolicy::default(),
            pool_wide_cool_off: true,
            max_nodes_total: 0,
            cores_total: Range {
                min: 0,
                max: 320_000,
            },
            memory_total_gib: Range {
                min: 0,
                max: 6_400_000,
            },
            max_nodes_per_scale_up: 1000,
            new_pod_scale_up_delay: Duration::ZERO,
            max_expansions_per_round: 0,
            seed: 0,
            scale_down: ScaleDownConfig::default(),
            drain_back: DrainBackConfig::default(),
            balance: BalanceConfig::default(),
            headroom: crate::headroom::HeadroomConfig::default(),
            hedge: HedgeConfig::default(),
            bulk_slack: 0.05,
        }
    }
}

/// A configuration value that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// A bound is inverted.
    #[error("{name}: min {min} is above max {max}; write it as min:max")]
    InvertedRange {
        /// Flag name.
        name: &'static str,
        /// Min.
        min: u64,
        /// Max.
        max: u64,
    },
    /// A duration that must be positive is zero.
    #[error("{0} must be longer than 0s")]
    ZeroDuration(&'static str),
    /// The cool-off ceiling is below the first cool-off.
    #[error("ice cool-off max ({max}s) is below the initial cool-off ({initial}s); raise the max")]
    CoolOffMaxBelowInitial {
        /// Initial seconds.
        initial: u64,
        /// Max seconds.
        max: u64,
    },
    /// `--max-nodes-per-scaleup` is zero.
    #[error("max-nodes-per-scaleup must be at least 1")]
    ZeroScaleUpStep,
    /// The utilization threshold is not a share.
    #[error("scale-down-utilization-threshold {0} must be between 0 and 1")]
    Threshold(String),
    /// The busy-workload utilization is negative, not a number or absurdly high.
    #[error(
        "scale-down-busy-workload-utilization {0} must be a share of CPU requests between 0 (off) and 10, e.g. 0.85"
    )]
    BusyUtilization(String),
    /// A share that must lie in 0..=1 does not.
    #[error("{name} {value} must be between 0 and 1")]
    Share {
        /// Flag name.
        name: &'static str,
        /// The value given.
        value: String,
    },
    /// An explicit balance set is not a valid regex.
    #[error("balance set regex {pattern:?} is invalid: {error}")]
    BalanceRegex {
        /// Pattern.
        pattern: String,
        /// Compiler message.
        error: String,
    },
}

impl ScaleDownConfig {
    /// The scale-down settings for one group: the group's own `autoscaling-options`
    /// (utilization threshold, unneeded time, unready time) over these cluster-wide ones.
    pub fn for_group(&self, group: &crate::model::NodeGroup) -> ScaleDownConfig {
        let o = &group.options;
        ScaleDownConfig {
            utilization_threshold: o
                .scale_down_utilization_threshold
                .unwrap_or(self.utilization_threshold),
            unneeded_time: o.scale_down_unneeded_time.unwrap_or(self.unneeded_time),
            unready_time: o.scale_down_unready_time.unwrap_or(self.unready_time),
            ..self.clone()
        }
    }
}

impl AutoscalerConfig {
    /// `--max-node-provision-time`, or the group's own `maxnodeprovisiontime` option.
    pub fn max_node_provision_time_for(&self, group: &crate::model::NodeGroup) -> Duration {
        group
            .options
            .max_node_provision_time
            .unwrap_or(self.max_node_provision_time)
    }

    /// Checks the values that cannot work together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (name, r) in [
            ("cores-total", self.cores_total),
            ("memory-total", self.memory_total_gib),
        ] {
            if r.min > r.max {
                return Err(ConfigError::InvertedRange {
                    name,
                    min: r.min,
                    max: r.max,
                });
            }
        }
        if self.max_node_provision_time.is_zero() {
            return Err(ConfigError::ZeroDuration("max-node-provision-time"));
        }
        if self.cool_off.initial.is_zero() {
            return Err(ConfigError::ZeroDuration("ice-cooloff"));
        }
        if self.cool_off.max < self.cool_off.initial {
            return Err(ConfigError::CoolOffMaxBelowInitial {
                initial: self.cool_off.initial.as_secs(),
                max: self.cool_off.max.as_secs(),
            });
        }
        if self.max_nodes_per_scale_up == 0 {
            return Err(ConfigError::ZeroScaleUpStep);
        }
        let t = self.scale_down.utilization_threshold;
        if !(0.0..=1.0).contains(&t) {
            return Err(ConfigError::Threshold(t.to_string()));
        }
        let busy = self.scale_down.busy_workload_utilization;
        if !(0.0..=10.0).contains(&busy) {
            return Err(ConfigError::BusyUtilization(busy.to_string()));
        }
        for (name, value) in [
            ("hedge-on-demand-fraction", self.hedge.on_demand_fraction),
            ("hedge.price_tolerance", self.hedge.price_tolerance),
            ("bulk-scale-up-slack", self.bulk_slack),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(ConfigError::Share {
                    name,
                    value: value.to_string(),
                });
            }
        }
        for pattern in &self.balance.explicit_sets {
            if let Err(e) = regex::Regex::new(pattern) {
                return Err(ConfigError::BalanceRegex {
                    pattern: pattern.clone(),
                    error: e.to_string(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_cluster_autoscalers_and_valid() {
        let c = AutoscalerConfig::default();
        assert_eq!(c.expendable_pods_priority_cutoff, -10);
        assert_eq!(c.max_node_provision_time, Duration::from_secs(900));
        assert_eq!(c.cool_off.initial, Duration::from_secs(180));
        c.validate().unwrap();
    }

    #[test]
    fn rejects_unworkable_values_with_the_flag_name() {
        let c = AutoscalerConfig {
            cores_total: Range { min: 10, max: 1 },
            ..Default::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("cores-total"));
        let mut c = AutoscalerConfig::default();
        c.cool_off.max = Duration::from_secs(1);
        assert!(matches!(
            c.validate(),
            Err(ConfigError::CoolOffMaxBelowInitial { .. })
        ));
        for busy in [-0.1, f64::NAN, 85.0] {
            let mut c = AutoscalerConfig::default();
            c.scale_down.busy_workload_utilization = busy;
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains("scale-down-busy-workload-utilization"), "{e}");
        }
    }

    #[test]
    fn budgets_parse_counts_and_percentages() {
        assert_eq!("1".parse::<Budget>().unwrap(), Budget::Count(1));
        assert_eq!("10%".parse::<Budget>().unwrap(), Budget::Percent(10));
        assert_eq!(Budget::Percent(10).for_size(25), 3);
        assert_eq!(Budget::Percent(10).for_size(3), 1);
        assert!("ten".parse::<Budget>().unwrap_err().contains("ten"));
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let e = serde_json::from_str::<AutoscalerConfig>(r#"{"expandr":"price"}"#).unwrap_err();
        assert!(e.to_string().contains("expandr"), "{e}");
    }
}
