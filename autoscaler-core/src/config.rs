//! Engine configuration with cluster-autoscaler's defaults.

use crate::cooloff::CoolOffPolicy;
use crate::expander::ExpanderChain;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use thiserror::Error;

/// Serde helper: durations as whole seconds.
pub mod duration_secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    /// Serializes as seconds.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    /// Deserializes from seconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_secs(u64::deserialize(d)?))
    }
}

/// An inclusive `min:max` range, as in `--cores-total=0:320000`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    /// Lower bound.
    pub min: u64,
    /// Upper bound.
    pub max: u64,
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
    /// Seed for the `random` expander and final tie-breaks.
    pub seed: u64,
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
            seed: 0,
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
}

impl AutoscalerConfig {
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
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let e = serde_json::from_str::<AutoscalerConfig>(r#"{"expandr":"price"}"#).unwrap_err();
        assert!(e.to_string().contains("expandr"), "{e}");
    }
}
